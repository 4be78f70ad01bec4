//! `GET /metrics` in the Prometheus text format, and the layer that counts every request.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

use crate::{
    db,
    domain::now_millis,
    http::{around::Around, error::ApiError},
    metrics::{Gauges, Metrics},
    state::AppState,
};

/// The metrics route.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(scrape))]
pub struct Doc;

/// Prometheus metrics: requests by method, matched route and status; bytes ingested; active
/// lives; webhook attempts by event type and outcome, the outbox's size and oldest age; PATCH
/// acknowledgment and finalize durations (histograms).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let backlog = db::webhooks::backlog(&state.db).await?;
    let oldest = backlog
        .oldest_pending_at
        .map_or(0.0, |at| (now_millis() - at).max(0) as f64 / 1000.0);
    let gauges = Gauges {
        active_lives: db::posts::count_live(&state.db).await?,
        webhooks_pending: backlog.pending,
        webhooks_failed: backlog.failed,
        webhooks_oldest_seconds: oldest,
    };
    let text = state.metrics.render(&gauges);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// The layer that counts each request under its matched route (raw paths would make one
/// series per id) and times the acknowledgment of tus PATCHes: `AroundLayer(Track(metrics))`,
/// inside the router, where the matched route is known.
#[derive(Debug, Clone)]
pub struct Track(pub Arc<Metrics>);

impl Around for Track {
    /// When the request came in, its method and its route (a reference count, not a copy).
    type Noted = (Instant, Method, Option<MatchedPath>);

    fn before(&self, request: &mut Request) -> Self::Noted {
        let route = request.extensions().get::<MatchedPath>().cloned();
        (Instant::now(), request.method().clone(), route)
    }

    fn after(&self, (started, method, route): Self::Noted, response: &mut Response) {
        let status = response.status();
        if method == Method::PATCH && status == StatusCode::NO_CONTENT {
            self.0.patch_acknowledged(started.elapsed());
        }
        let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
        self.0.request(method.as_str(), route, status.as_u16());
    }
}
