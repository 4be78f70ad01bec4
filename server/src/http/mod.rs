//! The HTTP layer, the only module that knows HTTP: one router per resource (`routes/`)
//! merged here with the OpenAPI document, the extractors, the mapping of every service error to
//! its answer (`error.rs`), the security headers and the accept loop (`serve/`).

mod around;
pub mod client_addr;
pub mod error;
pub mod extract;
pub mod mount;
mod openapi;
mod routes;
mod schemas;
pub mod security;
pub mod serve;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::Request,
    http::{header, HeaderName, HeaderValue, Method},
    response::{IntoResponse, Response},
    Router,
};
use tower::{
    util::{Either, MapResponse},
    Layer, ServiceExt,
};
use tower_http::{
    classify::{
        NeverClassifyEos, ServerErrorsAsFailures, ServerErrorsFailureClass, SharedClassifier,
    },
    cors::{AllowOrigin, Cors, CorsLayer},
    normalize_path::{NormalizePath, NormalizePathLayer},
    request_id::{
        MakeRequestId, PropagateRequestId, PropagateRequestIdLayer, RequestId, SetRequestId,
        SetRequestIdLayer,
    },
    services::{ServeDir, ServeFile},
    trace::{
        DefaultOnBodyChunk, DefaultOnEos, DefaultOnFailure, DefaultOnResponse, MakeSpan, Trace,
        TraceLayer,
    },
    LatencyUnit,
};
use tracing::Level;

use crate::{
    config::Config,
    http::{
        around::{AroundLayer, AroundService},
        client_addr::{ClientAddr, TrustedProxies},
        error::ApiError,
        mount::Mounted,
        security::SecurityHeaders,
    },
    state::AppState,
};
use routes::{auth, health, lives, media, metrics, posts, room, uploads};

async fn api_not_found() -> ApiError {
    ApiError::NotFound
}

/// Whether a path is the API's or the media's: such a path never gets the page, whatever its
/// shape (a client that does not normalize `..` must not be answered with `index.html`).
fn is_api_path(path: &str) -> bool {
    ["/api", "/media"].iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The router with the request log around it; its answers' bodies back in axum's type.
type Logged = MapResponse<
    Trace<PropagateRequestId<Router>, SharedClassifier<ServerErrorsAsFailures>, RequestSpan>,
    fn(axum::http::Response<LoggedBody>) -> Response,
>;
type LoggedBody = tower_http::trace::ResponseBody<
    axum::body::Body,
    NeverClassifyEos<ServerErrorsFailureClass>,
    DefaultOnBodyChunk,
    DefaultOnEos,
    DefaultOnFailure,
>;
type WithClient = AroundService<Arc<TrustedProxies>, SetRequestId<Logged, RequestIds>>;
/// The app's edge, outermost first: security headers, CORS (when origins are configured), the
/// client's address, the request id, the request log, then the router. Static types all the
/// way: a request crosses them with no boxing (bench/findings.md, finding 15).
type Edge = AroundService<SecurityHeaders, Either<Cors<WithClient>, WithClient>>;

/// The application as the accept loop serves it: the public URL's path prefix taken off,
/// trailing slashes trimmed, then the edge and the router.
pub type App = Mounted<NormalizePath<Edge>>;

/// The application under the public URL's prefix, with trailing slashes optional on every
/// route (they are stripped before routing).
pub fn app(state: AppState, config: &Config) -> anyhow::Result<App> {
    let prefix = state.public_url.prefix().to_owned();
    let cors_origins = config.cors_origins.as_slice();
    let request_id = HeaderName::from_static("x-request-id");
    let logged: Logged = MapResponse::new(
        TraceLayer::new_for_http()
            .make_span_with(RequestSpan)
            .on_response(
                DefaultOnResponse::new()
                    .level(Level::INFO)
                    .latency_unit(LatencyUnit::Millis),
            )
            .layer(PropagateRequestIdLayer::new(request_id.clone()).layer(router(state, config)?)),
        |response| response.map(axum::body::Body::new),
    );
    // Outside the request's span, which logs the client address and the request id.
    let with_client = AroundLayer(Arc::new(TrustedProxies::new(&config.trusted_proxies)))
        .layer(SetRequestIdLayer::new(request_id, RequestIds::new()).layer(logged));
    let with_cors = match cors(cors_origins)? {
        Some(cors) => Either::Left(cors.layer(with_client)),
        None => Either::Right(with_client),
    };
    let edge = AroundLayer(SecurityHeaders::new(cors_origins)?).layer(with_cors);
    Ok(Mounted::new(
        &prefix,
        NormalizePathLayer::trim_trailing_slash().layer(edge),
    ))
}

/// Each request's span: method, path, client and request id, which every line logged while
/// the request is served carries.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> tracing::Span {
        let id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        // Formatted only if the span is recorded.
        let client = request
            .extensions()
            .get::<ClientAddr>()
            .map(|client| client.0);
        tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.uri().path(),
            client = %OrDash(client),
            request_id = %id,
        )
    }
}

/// A value, or `-` without one.
struct OrDash<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The whole application: API under `/api`, media, health, and the `www` page at `/`.
pub fn router(state: AppState, config: &Config) -> anyhow::Result<Router> {
    let www_dir = config.www_dir.as_path();
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
        // Unknown paths get the page, so client-side routes survive a reload; the API's and
        // the media's paths get the JSON 404.
        let page = ServeDir::new(www_dir).fallback(ServeFile::new(index));
        app.fallback_service(tower::service_fn(move |request: Request| {
            let page = page.clone();
            async move {
                if is_api_path(request.uri().path()) {
                    return Ok::<_, std::convert::Infallible>(ApiError::NotFound.into_response());
                }
                let response = page.oneshot(request).await?;
                Ok(response.map(axum::body::Body::new))
            }
        }))
    } else {
        tracing::info!(dir = %www_dir.display(), "no www page found; serving the API only");
        app.fallback(api_not_found)
    };

    // Inside the router, where the matched route is known when a request is counted.
    Ok(app
        .layer(AroundLayer(metrics::Track(Arc::clone(&state.metrics))))
        .with_state(state))
}

/// Request ids unique across processes without a system call each (tower-http's UUIDs ask the
/// kernel for randomness per request): this process's random prefix, then a counter.
#[derive(Debug, Clone)]
pub struct RequestIds {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        use rand_core::RngCore;
        Self {
            prefix: format!("{:016x}", rand_core::OsRng.next_u64()).into(),
            next: Arc::default(),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_and_media_paths_are_recognised_whatever_follows() {
        for path in [
            "/api",
            "/api/x",
            "/media",
            "/media/../../etc/passwd",
            "/api/..%2f..",
        ] {
            assert!(is_api_path(path), "{path}");
        }
        for path in ["/", "/apis", "/mediaX/1", "/index.html", "/assets/app.js"] {
            assert!(!is_api_path(path), "{path}");
        }
    }

    #[test]
    fn request_ids_differ_within_a_process_and_between_processes() {
        let request = axum::http::Request::new(());
        let id = |ids: &mut RequestIds| {
            let id = ids.make_request_id(&request).unwrap();
            id.header_value().to_str().unwrap().to_owned()
        };
        let (mut one, mut other) = (RequestIds::new(), RequestIds::new());
        let mut clone = one.clone();
        let seen = [id(&mut one), id(&mut clone), id(&mut one), id(&mut other)];
        let distinct: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(distinct.len(), seen.len(), "{seen:?}");
    }
}
