//! The bearer token: the page's fixed `token`, or its `getToken()`, called before the first
//! request and again after a 401, so a live outlasts tokens that expire while it records.
//!
//! A `getToken()` that fails (throws, rejects, times out, gives no string) is a passing
//! problem, `TokenUnavailable`: the host app's token endpoint may be down for a moment, and
//! callers retry it like a network error, calling `getToken()` again on the next attempt.
//! Only a 401 for the token `getToken()` had just given is final (`Unauthenticated`): the host
//! app itself says no. [`StopPatience`] bounds how long a stop waits for a token.
//!
//! The token is only ever put in the `Authorization` header: never in a message, a log, the
//! journal, or this module's `Debug` output.

use std::cell::{Cell, RefCell};

use crate::error::RecorderError;
use crate::signal::Signal;

/// How the page authenticates the recorder: exactly one of `token` and `getToken`.
#[derive(Clone, PartialEq)]
pub enum Credentials<F> {
    /// A token that stays valid for the whole live.
    Token(String),
    /// A function that gives a current token (`getToken`).
    GetToken(F),
}

impl<F> std::fmt::Debug for Credentials<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Token(_) => "Token(<redacted>)",
            Self::GetToken(_) => "GetToken(<function>)",
        })
    }
}

/// Checks that the page gave exactly one of `token` (not blank) and `getToken`.
pub fn credentials<F>(
    token: Option<String>,
    get_token: Option<F>,
) -> Result<Credentials<F>, RecorderError> {
    match (token, get_token) {
        (Some(_), Some(_)) => Err(RecorderError::InvalidOptions(
            "give either `token` or `getToken`, not both".into(),
        )),
        (None, Some(get_token)) => Ok(Credentials::GetToken(get_token)),
        (Some(token), None) if !token.trim().is_empty() => Ok(Credentials::Token(token)),
        (Some(_), None) => Err(RecorderError::InvalidOptions(
            "`token` (the Bearer token) must not be blank".into(),
        )),
        (None, None) => Err(RecorderError::InvalidOptions(
            "`token` (the Bearer token) or `getToken` (a function resolving to one) is required"
                .into(),
        )),
    }
}

/// Where fresh tokens come from (the page's `getToken`).
#[allow(async_fn_in_trait)] // Used with generics only, never as `dyn`, on one thread.
pub trait TokenProvider {
    /// A current token, or why there is none this time (`getToken() rejected: …`).
    async fn get_token(&self) -> Result<String, String>;
}

/// The token requests carry, shared by every request of one recorder.
pub struct Tokens<P> {
    credentials: Credentials<P>,
    /// The last token `getToken` gave.
    current: RefCell<Option<String>>,
    /// Bumped each time `getToken` gives a token, so a request knows whether the token it was
    /// refused with is still the current one.
    generation: Cell<u64>,
    /// A `getToken` call is under way: others wait for it instead of calling again.
    fetching: Cell<bool>,
    fetched: Signal,
}

impl<P> std::fmt::Debug for Tokens<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("credentials", &self.credentials)
            .field("generation", &self.generation.get())
            .finish_non_exhaustive()
    }
}

impl<P: TokenProvider> Tokens<P> {
    /// Tokens from `credentials`; `getToken` is first called by the first request.
    pub fn new(credentials: Credentials<P>) -> Self {
        Self {
            credentials,
            current: RefCell::new(None),
            generation: Cell::new(0),
            fetching: Cell::new(false),
            fetched: Signal::new(),
        }
    }

    /// Sends a request with the current token (`send(token)`). When `is_unauthorized` says the
    /// answer is a 401 and the token comes from `getToken`, forgets that token, gets a fresh
    /// one and sends again, once: a second 401 is `Unauthenticated`. A `getToken` that fails is
    /// `TokenUnavailable`, and the next request calls it again. With a fixed token the 401 is
    /// the answer.
    pub async fn authorized<R>(
        &self,
        send: impl AsyncFn(&str) -> Result<R, RecorderError>,
        is_unauthorized: impl Fn(&R) -> bool,
    ) -> Result<R, RecorderError> {
        let (token, generation) = self.current().await?;
        let reply = send(&token).await?;
        if !is_unauthorized(&reply) || matches!(self.credentials, Credentials::Token(_)) {
            return Ok(reply);
        }
        self.refused(generation);
        let fresh = self.newer_than(generation).await?;
        let reply = send(&fresh).await?;
        if is_unauthorized(&reply) {
            return Err(RecorderError::Unauthenticated(
                "the server refused the token getToken() had just given".into(),
            ));
        }
        Ok(reply)
    }

    /// The token of `generation` got a 401: if it is still the current one, no request sends
    /// it again, so that after a failed refresh the next attempt asks `getToken` first.
    fn refused(&self, generation: u64) {
        if self.generation.get() == generation {
            self.current.borrow_mut().take();
        }
    }

    /// The token to send and its generation, calling `getToken` if there is none.
    async fn current(&self) -> Result<(String, u64), RecorderError> {
        let provider = match &self.credentials {
            Credentials::Token(token) => return Ok((token.clone(), 0)),
            Credentials::GetToken(provider) => provider,
        };
        loop {
            if let Some(token) = self.current.borrow().clone() {
                return Ok((token, self.generation.get()));
            }
            self.fetch_or_wait(provider).await?;
        }
    }

    /// A token newer than generation `stale`: another request's refresh if one happened or is
    /// under way, else a `getToken` call of our own.
    async fn newer_than(&self, stale: u64) -> Result<String, RecorderError> {
        let provider = match &self.credentials {
            Credentials::Token(token) => return Ok(token.clone()),
            Credentials::GetToken(provider) => provider,
        };
        loop {
            if self.generation.get() != stale {
                if let Some(token) = self.current.borrow().clone() {
                    return Ok(token);
                }
            }
            self.fetch_or_wait(provider).await?;
        }
    }

    /// Calls `getToken` unless a call is under way, in which case waits for it to end. A
    /// failed call of our own is our `TokenUnavailable`; a failed call of another request's
    /// makes the caller's loop try once more itself.
    async fn fetch_or_wait(&self, provider: &P) -> Result<(), RecorderError> {
        if self.fetching.get() {
            self.fetched.notified().await;
            return Ok(());
        }
        self.fetching.set(true);
        let result = provider.get_token().await;
        self.fetching.set(false);
        let outcome = result
            .map(|token| {
                *self.current.borrow_mut() = Some(token);
                self.generation.set(self.generation.get() + 1);
            })
            .map_err(RecorderError::TokenUnavailable);
        self.fetched.notify();
        outcome
    }
}

/// The `getToken()` failure in a row at which a stop gives up (it retries after those before).
pub const STOP_TOKEN_FAILURES: u32 = 3;

/// Counts a stop's `getToken()` failures in a row. While a live records, a failing `getToken`
/// is retried without limit: ending the live would stop MediaRecorder and lose what comes
/// next. Once every byte is recorded and journaled, a stop gives up at the
/// [`STOP_TOKEN_FAILURES`]th rather than wait for the host app indefinitely: the journal keeps
/// the live for `resumePending`.
#[derive(Debug, Default)]
pub struct StopPatience {
    failures: Cell<u32>,
}

impl StopPatience {
    /// Whether to try again after the retryable `err`: each `TokenUnavailable` counts, and the
    /// [`STOP_TOKEN_FAILURES`]th in a row says no; other errors leave the count alone.
    pub fn try_again_after(&self, err: &RecorderError) -> bool {
        if !matches!(err, RecorderError::TokenUnavailable(_)) {
            return true;
        }
        self.failures.set(self.failures.get() + 1);
        self.failures.get() < STOP_TOKEN_FAILURES
    }

    /// A request went through, so `getToken()` works: the count starts again.
    pub fn reset(&self) {
        self.failures.set(0);
    }
}

/// The page's `getToken` function, called with a timeout so a hung call cannot stall the live.
#[cfg(target_arch = "wasm32")]
pub struct JsTokenProvider(pub js_sys::Function);

/// How long a `getToken()` call may take before it counts as failed.
#[cfg(target_arch = "wasm32")]
pub const GET_TOKEN_TIMEOUT_MS: i32 = 20_000;

#[cfg(target_arch = "wasm32")]
impl TokenProvider for JsTokenProvider {
    async fn get_token(&self) -> Result<String, String> {
        use wasm_bindgen::{JsCast, JsValue};

        // Says why, never what came back: a value that is not a token may still hold one.
        let failed = |why: &str, detail: &str| {
            let mut message = String::from("getToken() ");
            message.push_str(why);
            if !detail.is_empty() {
                message.push_str(": ");
                message.push_str(detail);
            }
            message
        };
        let returned = self
            .0
            .call0(&JsValue::UNDEFINED)
            .map_err(|e| failed("threw", &crate::error::js_message(&e)))?;
        // A sentinel the timeout resolves with, which no getToken can return.
        let timed_out: JsValue = js_sys::Object::new().into();
        let timeout = {
            let timed_out = timed_out.clone();
            js_sys::Promise::new(&mut |resolve, _reject| {
                let window: Option<web_sys::Window> = web_sys::window();
                if let Some(window) = window {
                    let _ = window.set_timeout_with_callback_and_timeout_and_arguments_1(
                        &resolve,
                        GET_TOKEN_TIMEOUT_MS,
                        &timed_out,
                    );
                }
            })
        };
        let race = js_sys::Promise::race(&js_sys::Array::of2(
            &js_sys::Promise::resolve(&returned),
            &timeout,
        ));
        let value = wasm_bindgen_futures::JsFuture::from(race)
            .await
            .map_err(|e| failed("rejected", &crate::error::js_message(&e)))?;
        if value == timed_out {
            return Err(failed("did not settle within 20 s", ""));
        }
        match value.dyn_into::<js_sys::JsString>() {
            Ok(token) if !String::from(&token).trim().is_empty() => Ok(token.into()),
            _ => Err(failed(
                "resolved to something other than a non-empty string",
                "",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::{pin, Pin};
    use std::task::{Context, Poll, Waker};

    /// Gives "t1", "t2", … (or fails when told to), pausing once per call so that two requests
    /// can overlap; counts its calls.
    #[derive(Default)]
    struct Provider {
        calls: Cell<u32>,
        fail: Cell<bool>,
    }

    /// Pending at its first poll, ready at the next: a call that takes a moment.
    struct YieldOnce(bool);

    impl Future for YieldOnce {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    impl TokenProvider for Provider {
        async fn get_token(&self) -> Result<String, String> {
            self.calls.set(self.calls.get() + 1);
            YieldOnce(false).await;
            if self.fail.get() {
                return Err("getToken() rejected: signed out".into());
            }
            Ok(format!("t{}", self.calls.get()))
        }
    }

    fn provider_of(tokens: &Tokens<Provider>) -> &Provider {
        match &tokens.credentials {
            Credentials::GetToken(provider) => provider,
            Credentials::Token(_) => unreachable!("the tests' tokens come from getToken"),
        }
    }

    /// A server that accepts one token at a time and logs the tokens it was sent.
    struct Server {
        valid: RefCell<String>,
        seen: RefCell<Vec<String>>,
    }

    impl Server {
        fn accepting(token: &str) -> Self {
            Self {
                valid: RefCell::new(token.into()),
                seen: RefCell::new(Vec::new()),
            }
        }
        /// The status the server answers a request bearing `token` with.
        async fn answer(&self, token: &str) -> Result<u16, RecorderError> {
            self.seen.borrow_mut().push(token.into());
            Ok(if *self.valid.borrow() == token {
                204
            } else {
                401
            })
        }
    }

    fn run<F: Future>(fut: F) -> F::Output {
        let mut fut = pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100 {
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
        }
        panic!("never finished");
    }

    async fn request(tokens: &Tokens<Provider>, server: &Server) -> Result<u16, RecorderError> {
        tokens
            .authorized(async |token| server.answer(token).await, |s| *s == 401)
            .await
    }

    #[test]
    fn exactly_one_of_token_and_get_token_is_accepted() {
        let code = |r: Result<Credentials<()>, RecorderError>| r.map_err(|e| e.code());
        assert_eq!(
            code(credentials(Some("t".into()), None)),
            Ok(Credentials::Token("t".into()))
        );
        assert_eq!(
            code(credentials(None, Some(()))),
            Ok(Credentials::GetToken(()))
        );
        for (token, get_token) in [
            (Some("t".to_owned()), Some(())),
            (None, None),
            (Some("  ".into()), None),
        ] {
            let err = credentials(token, get_token).expect_err("refused");
            assert_eq!(err.code(), "invalid_options");
            assert!(err.to_string().contains("token"), "{err}");
        }
    }

    #[test]
    fn a_fixed_token_is_sent_as_is_and_its_401_is_the_answer() {
        let tokens: Tokens<Provider> = Tokens::new(Credentials::Token("old".into()));
        let server = Server::accepting("new");
        assert_eq!(run(request(&tokens, &server)), Ok(401));
        assert_eq!(*server.seen.borrow(), ["old"], "sent once, no refresh");
    }

    #[test]
    fn get_token_is_called_before_the_first_request_and_reused_after() {
        let tokens = Tokens::new(Credentials::GetToken(Provider::default()));
        let server = Server::accepting("t1");
        assert_eq!(run(request(&tokens, &server)), Ok(204));
        assert_eq!(run(request(&tokens, &server)), Ok(204));
        assert_eq!(*server.seen.borrow(), ["t1", "t1"]);
        assert_eq!(provider_of(&tokens).calls.get(), 1);
    }

    #[test]
    fn a_401_gets_a_fresh_token_and_the_request_is_sent_again_once() {
        let tokens = Tokens::new(Credentials::GetToken(Provider::default()));
        let server = Server::accepting("t1");
        assert_eq!(run(request(&tokens, &server)), Ok(204));
        *server.valid.borrow_mut() = "t2".into(); // t1 expired
        assert_eq!(run(request(&tokens, &server)), Ok(204));
        assert_eq!(*server.seen.borrow(), ["t1", "t1", "t2"]);
    }

    #[test]
    fn a_second_401_right_after_a_fresh_token_is_unauthenticated() {
        let tokens = Tokens::new(Credentials::GetToken(Provider::default()));
        let server = Server::accepting("never");
        let err = run(request(&tokens, &server)).expect_err("refused twice");
        assert_eq!(err.code(), "unauthenticated");
        assert!(!err.is_retryable(), "the host app says no: final");
        assert_eq!(*server.seen.borrow(), ["t1", "t2"], "one retry, not a loop");
        assert!(
            !err.to_string().contains("t2"),
            "the token is not in the message"
        );
    }

    #[test]
    fn a_failed_get_token_is_a_retryable_token_unavailable_and_nothing_is_sent() {
        let provider = Provider::default();
        provider.fail.set(true);
        let tokens = Tokens::new(Credentials::GetToken(provider));
        let server = Server::accepting("t1");
        let err = run(request(&tokens, &server)).expect_err("no token");
        assert_eq!(err.code(), "token_unavailable");
        assert!(err.is_retryable(), "retried like a network error");
        assert!(
            err.to_string().contains("getToken() rejected: signed out"),
            "{err}"
        );
        assert!(
            server.seen.borrow().is_empty(),
            "nothing sent without a token"
        );
    }

    #[test]
    fn the_request_after_a_failed_get_token_calls_it_again_and_goes_through() {
        let provider = Provider::default();
        provider.fail.set(true);
        let tokens = Tokens::new(Credentials::GetToken(provider));
        let server = Server::accepting("t2");
        let err = run(request(&tokens, &server)).expect_err("no token yet");
        assert_eq!(err.code(), "token_unavailable");
        provider_of(&tokens).fail.set(false);
        assert_eq!(run(request(&tokens, &server)), Ok(204));
        assert_eq!(*server.seen.borrow(), ["t2"]);
        assert_eq!(provider_of(&tokens).calls.get(), 2);
    }

    #[test]
    fn a_refresh_that_fails_is_token_unavailable_and_the_refused_token_is_not_sent_again() {
        let tokens = Tokens::new(Credentials::GetToken(Provider::default()));
        let server = Server::accepting("t1");
        assert_eq!(run(request(&tokens, &server)), Ok(204));
        *server.valid.borrow_mut() = "t3".into(); // t1 expired
        provider_of(&tokens).fail.set(true);
        let err = run(request(&tokens, &server)).expect_err("no fresh token");
        assert_eq!(err.code(), "token_unavailable");
        provider_of(&tokens).fail.set(false);
        assert_eq!(run(request(&tokens, &server)), Ok(204));
        assert_eq!(
            *server.seen.borrow(),
            ["t1", "t1", "t3"],
            "the next attempt asks getToken first instead of sending t1 again"
        );
    }

    #[test]
    fn a_stop_gives_up_at_the_third_get_token_failure_in_a_row_and_never_for_other_errors() {
        let patience = StopPatience::default();
        let no_token = RecorderError::TokenUnavailable("getToken() rejected".into());
        for _ in 0..10 {
            assert!(patience.try_again_after(&RecorderError::Network("offline".into())));
        }
        assert!(patience.try_again_after(&no_token));
        assert!(patience.try_again_after(&no_token));
        patience.reset();
        for _ in 1..STOP_TOKEN_FAILURES {
            assert!(patience.try_again_after(&no_token));
        }
        assert!(!patience.try_again_after(&no_token), "the third in a row");
        assert_eq!(STOP_TOKEN_FAILURES, 3);
    }

    #[test]
    fn requests_refused_with_the_same_token_share_one_get_token_call() {
        let tokens = Tokens::new(Credentials::GetToken(Provider::default()));
        let server = Server::accepting("t1");
        assert_eq!(run(request(&tokens, &server)), Ok(204));
        *server.valid.borrow_mut() = "t2".into();
        let mut first = pin!(request(&tokens, &server));
        let mut second = pin!(request(&tokens, &server));
        let mut cx = Context::from_waker(Waker::noop());
        let (mut a, mut b) = (None, None);
        for _ in 0..100 {
            if a.is_none() {
                a = match first.as_mut().poll(&mut cx) {
                    Poll::Ready(out) => Some(out),
                    Poll::Pending => None,
                };
            }
            if b.is_none() {
                b = match second.as_mut().poll(&mut cx) {
                    Poll::Ready(out) => Some(out),
                    Poll::Pending => None,
                };
            }
        }
        assert_eq!((a, b), (Some(Ok(204)), Some(Ok(204))));
        assert_eq!(
            provider_of(&tokens).calls.get(),
            2,
            "the first token, then one refresh for both"
        );
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let tokens: Tokens<Provider> = Tokens::new(Credentials::Token("s3cret".into()));
        assert!(!format!("{tokens:?}").contains("s3cret"));
    }
}
