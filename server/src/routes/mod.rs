//! HTTP routes, one module per resource, merged here.

mod auth;
mod extract;
mod health;
mod lives;
mod media;
mod metrics;
mod openapi;
mod posts;
mod room;
mod uploads;

use std::{path::Path, time::Duration};

use axum::{
    extract::Request,
    http::{header, HeaderName, HeaderValue, Method},
    Router,
};
use tower::ServiceBuilder;
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    services::{ServeDir, ServeFile},
    trace::{DefaultOnResponse, TraceLayer},
    LatencyUnit,
};
use tracing::Level;

use crate::{error::ApiError, state::AppState};

async fn api_not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The whole application: API under `/api`, media, health, and the `www` page at `/`.
pub fn router(state: AppState, www_dir: &Path, cors_origins: &[String]) -> anyhow::Result<Router> {
    let api = Router::new()
        .merge(auth::router())
        .merge(lives::router())
        .merge(posts::router())
        .merge(room::router())
        .merge(uploads::router())
        .merge(openapi::router())
        .fallback(api_not_found)
        .method_not_allowed_fallback(method_not_allowed);

    let mut app = Router::new()
        .nest("/api", api)
        .merge(media::router())
        .merge(health::router())
        .merge(metrics::router())
        .method_not_allowed_fallback(method_not_allowed);
    app = if www_dir.join("index.html").is_file() {
        let index = www_dir.join("index.html");
        // Unknown paths get the page, so client-side routes survive a reload.
        app.fallback_service(ServeDir::new(www_dir).fallback(ServeFile::new(index)))
    } else {
        tracing::info!(dir = %www_dir.display(), "no www page found; serving the API only");
        app.fallback(api_not_found)
    };

    let request_id = HeaderName::from_static("x-request-id");
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %id,
                    )
                })
                .on_response(
                    DefaultOnResponse::new()
                        .level(Level::INFO)
                        .latency_unit(LatencyUnit::Millis),
                ),
        )
        .layer(PropagateRequestIdLayer::new(request_id));
    // Inside the router's layers, so the matched route is known when a request is counted.
    let app = app
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
        .layer(layers);
    let app = match cors(cors_origins)? {
        Some(cors) => app.layer(cors),
        None => app,
    };
    let security = std::sync::Arc::new(crate::security::SecurityHeaders::new(cors_origins)?);
    Ok(app.layer(axum::middleware::from_fn_with_state(
        security,
        crate::security::stamp,
    )))
}

/// An allow-list CORS layer, or none (same origin only) when no origin is configured.
fn cors(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .map(|o| o.trim().trim_end_matches('/'))
        .filter(|o| !o.is_empty())
        .map(|o| {
            anyhow::ensure!(o != "*", "--cors-origin must list origins, not '*'");
            HeaderValue::from_str(o).map_err(|_| anyhow::anyhow!("invalid CORS origin {o:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    if origins.is_empty() {
        return Ok(None);
    }
    let tus_headers = [
        "tus-resumable",
        "tus-version",
        "tus-extension",
        "tus-max-size",
        "tus-checksum-algorithm",
        "upload-offset",
        "upload-length",
        "upload-defer-length",
        "upload-metadata",
        "upload-checksum",
        "upload-expires",
        "x-request-id",
        "x-http-method-override",
    ]
    .map(HeaderName::from_static);
    let mut allow = tus_headers.to_vec();
    allow.extend([header::AUTHORIZATION, header::CONTENT_TYPE, header::RANGE]);
    let mut expose = tus_headers.to_vec();
    expose.extend([header::LOCATION, header::CONTENT_RANGE, header::ETAG]);
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers(allow)
            .expose_headers(expose)
            .max_age(Duration::from_secs(600)),
    ))
}
