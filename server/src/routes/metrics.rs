//! `GET /metrics` in the Prometheus text format, and the layer that counts every request.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

use crate::{db, error::ApiError, state::AppState};

/// The metrics route.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(scrape))]
pub(super) struct Doc;

/// Prometheus metrics: requests by method, matched route and status; bytes ingested; active
/// lives; PATCH acknowledgment and finalize durations (histograms).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let active = db::posts::count_live(&state.db).await?;
    let text = state.metrics.render(u64::try_from(active).unwrap_or(0));
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Counts each request under its matched route (raw paths would make one series per id) and
/// times the acknowledgment of tus PATCHes.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if method == Method::PATCH && status == StatusCode::NO_CONTENT {
        state.metrics.patch_acknowledged(started.elapsed());
    }
    state
        .metrics
        .request(method.as_str(), &route, status.as_u16());
    response
}
