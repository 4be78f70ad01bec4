//! The app under `--public-url`'s path prefix, for a proxy that forwards `/livekeep/…` as it
//! is: `/livekeep/api/posts` is routed as `/api/posts`, and `/livekeep` redirects to
//! `/livekeep/` (the page's relative links need the slash). Paths without the prefix are
//! served too, as they are: behind a proxy that strips it, and for a load balancer's health
//! check on the node itself.

use std::{
    convert::Infallible,
    future::{ready, Ready},
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    http::{header, uri::PathAndQuery, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use futures_util::future::Either;
use tower::Service;

/// `inner`, reached with or without the path prefix.
#[derive(Debug, Clone)]
pub struct Mounted<S> {
    prefix: Arc<str>,
    inner: S,
}

impl<S> Mounted<S> {
    /// `inner` under `prefix` (like `/livekeep`; empty: at the root only).
    pub fn new(prefix: &str, inner: S) -> Self {
        Self {
            prefix: Arc::from(prefix.trim_end_matches('/')),
            inner,
        }
    }

    /// What to do with `uri`: route it as this one, or redirect (to add the slash).
    fn route(&self, uri: &Uri) -> Option<Result<Uri, String>> {
        if self.prefix.is_empty() {
            return None;
        }
        let rest = uri.path().strip_prefix(&*self.prefix)?;
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        if rest.is_empty() {
            return Some(Err(format!("{}/{query}", self.prefix)));
        }
        if !rest.starts_with('/') {
            return None; // `/livekeeper` is not under `/livekeep`.
        }
        let path: PathAndQuery = format!("{rest}{query}").parse().ok()?;
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(path);
        Uri::from_parts(parts).ok().map(Ok)
    }
}

impl<S> Service<Request> for Mounted<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.route(request.uri()) {
            Some(Ok(uri)) => *request.uri_mut() = uri,
            Some(Err(location)) => {
                let response = match HeaderValue::from_str(&location) {
                    Ok(location) => (
                        StatusCode::PERMANENT_REDIRECT,
                        [(header::LOCATION, location)],
                    )
                        .into_response(),
                    Err(_) => StatusCode::NOT_FOUND.into_response(),
                };
                return Either::Right(ready(Ok(response)));
            }
            None => {}
        }
        Either::Left(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, uri: &str) -> Option<Result<String, String>> {
        Mounted::new(prefix, ())
            .route(&uri.parse().unwrap())
            .map(|r| r.map(|uri| uri.to_string()))
    }

    #[test]
    fn the_prefix_is_taken_off_and_the_bare_prefix_gets_its_slash() {
        assert_eq!(
            route("/livekeep", "/livekeep/api/posts/?limit=2"),
            Some(Ok("/api/posts/?limit=2".to_owned()))
        );
        assert_eq!(route("/livekeep", "/livekeep/"), Some(Ok("/".to_owned())));
        assert_eq!(
            route("/livekeep", "/livekeep?x=1"),
            Some(Err("/livekeep/?x=1".to_owned()))
        );
        assert_eq!(route("/livekeep", "/livekeeper/api"), None);
        assert_eq!(route("/livekeep", "/api/posts"), None);
        assert_eq!(route("", "/api/posts"), None);
    }
}
