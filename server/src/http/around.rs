//! Middleware that looks at a request on its way in and at its answer on its way out, as a
//! plain tower layer. axum's `from_fn` boxes a clone of the inner service and the future of
//! every request it sees, and every request (each media range among them) crosses the app's
//! edge: these wrappers are static types, and a request costs a clone of the middleware's state
//! (bench/findings.md, finding 15).

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use axum::{extract::Request, response::Response};
use tower::{Layer, Service};

/// What a middleware does around the inner service.
pub trait Around: Clone {
    /// What [`before`](Around::before) learns that [`after`](Around::after) needs.
    type Noted;

    /// Looks at (or amends) the request before the inner service gets it.
    fn before(&self, request: &mut Request) -> Self::Noted;

    /// Amends the inner service's answer.
    fn after(&self, noted: Self::Noted, response: &mut Response);
}

/// The layer of an [`Around`].
#[derive(Debug, Clone)]
pub struct AroundLayer<A>(pub A);

impl<A: Around, S> Layer<S> for AroundLayer<A> {
    type Service = AroundService<A, S>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundService {
            around: self.0.clone(),
            inner,
        }
    }
}

/// `inner` with an [`Around`] on each request.
#[derive(Debug, Clone)]
pub struct AroundService<A, S> {
    around: A,
    inner: S,
}

impl<A, S> Service<Request> for AroundService<A, S>
where
    A: Around,
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AroundFuture<A, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let noted = self.around.before(&mut request);
        AroundFuture {
            inner: self.inner.call(request),
            pending: Some((self.around.clone(), noted)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future; its answer goes through [`Around::after`].
    pub struct AroundFuture<A: Around, F> {
        #[pin]
        inner: F,
        pending: Option<(A, A::Noted)>,
    }
}

impl<A, F, E> Future for AroundFuture<A, F>
where
    A: Around,
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some((around, noted)) = this.pending.take() {
            around.after(noted, &mut response);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{Arc, Mutex},
    };

    use axum::{body::Body, http::HeaderValue};
    use tower::ServiceExt;

    use super::*;

    /// Notes each request's path, and stamps it on the answer.
    #[derive(Clone, Default)]
    struct Echo(Arc<Mutex<Vec<String>>>);

    impl Around for Echo {
        type Noted = String;

        fn before(&self, request: &mut Request) -> String {
            request
                .headers_mut()
                .insert("x-seen", HeaderValue::from_static("yes"));
            request.uri().path().to_owned()
        }

        fn after(&self, path: String, response: &mut Response) {
            self.0.lock().unwrap().push(path.clone());
            response
                .headers_mut()
                .insert("x-path", HeaderValue::from_str(&path).unwrap());
        }
    }

    #[tokio::test]
    async fn the_inner_service_sees_the_amended_request_and_the_answer_is_amended_after_it() {
        let echo = Echo::default();
        let inner = tower::service_fn(|request: Request| async move {
            let seen = request.headers().get("x-seen").cloned();
            let mut response = Response::new(Body::empty());
            if let Some(seen) = seen {
                response.headers_mut().insert("x-inner-saw", seen);
            }
            Ok::<_, Infallible>(response)
        });
        let service = AroundLayer(echo.clone()).layer(inner);
        let response = service
            .oneshot(Request::get("/a/b").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.headers()["x-inner-saw"], "yes");
        assert_eq!(response.headers()["x-path"], "/a/b");
        assert_eq!(*echo.0.lock().unwrap(), ["/a/b"]);
    }

    #[tokio::test]
    async fn an_error_of_the_inner_service_passes_through_untouched() {
        let echo = Echo::default();
        let inner = tower::service_fn(|_: Request| async { Err::<Response, _>("refused") });
        let result = AroundLayer(echo.clone())
            .layer(inner)
            .oneshot(Request::get("/x").body(Body::empty()).unwrap())
            .await;
        assert_eq!(result.unwrap_err(), "refused");
        assert!(
            echo.0.lock().unwrap().is_empty(),
            "no answer, nothing after"
        );
    }
}
