//! The tus upload loop: one PATCH in flight, in order, retried until the server has every
//! byte. Transport (fetch) and owner (the live session, or a resumed journal) are traits,
//! so the loop's decisions are tested natively against a scripted server.

use std::cell::{Cell, RefCell};

use crate::backoff::Backoff;
use crate::error::RecorderError;
use crate::signal::Signal;
use crate::token::StopPatience;
use crate::tus::{PatchPlan, UploadQueue};

/// Largest PATCH body: after a long outage the backlog goes out in pieces of this size.
pub const MAX_PATCH_BODY: usize = 8 * 1024 * 1024;
/// Smallest PATCH body the loop shrinks to when big ones time out or exceed the server's limit.
pub const MIN_PATCH_BODY: usize = 64 * 1024;

/// What a HEAD says about the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOffset {
    /// `Upload-Offset`: bytes the server holds.
    pub offset: u64,
    /// `Upload-Length`, if it was declared already.
    pub length: Option<u64>,
}

/// How the server answered a PATCH that did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchReply {
    /// 204, with the new `Upload-Offset` if the server sent one.
    Accepted(Option<u64>),
    /// 409: the offset we sent is not the server's.
    Conflict,
}

/// The server side of one tus upload, as the loop needs it.
#[allow(async_fn_in_trait)] // Used with generics only, never as `dyn`, on one thread.
pub trait TusTransport {
    /// `HEAD` the upload.
    async fn head(&self) -> Result<ServerOffset, RecorderError>;
    /// `PATCH` the upload; HTTP errors other than 409 come back as `Err`.
    async fn patch(&self, plan: &PatchPlan) -> Result<PatchReply, RecorderError>;
    /// Waits `ms` milliseconds before a retry.
    async fn sleep(&self, ms: f64);
    /// A uniform random number in `[0, 1)` for the backoff jitter.
    fn random(&self) -> f64;
}

/// The owner of the bytes being uploaded.
pub trait UploadOwner {
    /// The bytes not acknowledged yet.
    fn queue(&self) -> &RefCell<UploadQueue>;
    /// Notified when bytes become ready, when the recording finishes, or on failure.
    fn changed(&self) -> &Signal;
    /// An error that happened elsewhere (e.g. the recorder failed) and ends the upload.
    fn failure(&self) -> Option<RecorderError>;
    /// Whether to try again after the retryable `err`, the last of `failures` failures in a
    /// row (without limit while live).
    fn keep_retrying(&self, err: &RecorderError, failures: u32) -> bool;
    /// A retryable error happened; the loop waits and tries again.
    fn retrying(&self, err: &RecorderError);
    /// The server acknowledged more bytes.
    fn acknowledged(&self);
}

/// Sends every byte of `owner`'s queue, returning once the queue is complete (all bytes
/// acknowledged and the length declared) or with the error that made it give up.
pub async fn upload<T: TusTransport, O: UploadOwner>(
    transport: &T,
    owner: &O,
) -> Result<(), RecorderError> {
    let mut backoff = Backoff::default();
    // After a conflict, an error or a timeout we do not know what the server holds: ask.
    let mut in_doubt = false;
    let mut conflicts = 0u32;
    // A slow uplink cannot push 8 MiB within the request timeout, and a server may cap a
    // PATCH body (413): halve the body after either, grow it back after each success.
    let mut max_body = MAX_PATCH_BODY;
    loop {
        if let Some(err) = owner.failure() {
            return Err(err);
        }
        if in_doubt {
            match transport.head().await {
                Ok(server) => {
                    owner
                        .queue()
                        .borrow_mut()
                        .resync(server.offset, server.length)?;
                    in_doubt = false;
                    owner.acknowledged();
                }
                Err(err) => {
                    wait_or_give_up(transport, owner, &mut backoff, err).await?;
                    continue;
                }
            }
        }
        let plan = {
            let queue = owner.queue().borrow();
            if queue.is_complete() {
                return Ok(());
            }
            queue.next_patch(max_body)
        };
        let Some(plan) = plan else {
            owner.changed().notified().await;
            continue;
        };
        match transport.patch(&plan).await {
            Ok(PatchReply::Accepted(offset)) => {
                owner.queue().borrow_mut().accepted(&plan, offset)?;
                backoff.reset();
                conflicts = 0;
                max_body = max_body.saturating_mul(2).min(MAX_PATCH_BODY);
                owner.acknowledged();
            }
            Ok(PatchReply::Conflict) => {
                conflicts += 1;
                in_doubt = true;
                // One conflict is a lost answer; repeated ones must not spin without a pause.
                if conflicts > 1 {
                    let err = RecorderError::Http {
                        status: 409,
                        message: "offset conflict".into(),
                    };
                    owner.retrying(&err);
                    transport
                        .sleep(backoff.next_delay_ms(transport.random()))
                        .await;
                }
            }
            Err(RecorderError::Http { status: 413, .. }) if plan.body.len() > MIN_PATCH_BODY => {
                max_body = (plan.body.len() / 2).max(MIN_PATCH_BODY);
            }
            Err(err) => {
                if err == RecorderError::Timeout {
                    max_body = (plan.body.len() / 2).max(MIN_PATCH_BODY);
                }
                wait_or_give_up(transport, owner, &mut backoff, err).await?;
                in_doubt = true;
            }
        }
    }
}

async fn wait_or_give_up<T: TusTransport, O: UploadOwner>(
    transport: &T,
    owner: &O,
    backoff: &mut Backoff,
    err: RecorderError,
) -> Result<(), RecorderError> {
    if !err.is_retryable() || !owner.keep_retrying(&err, backoff.failures() + 1) {
        return Err(err);
    }
    owner.retrying(&err);
    transport
        .sleep(backoff.next_delay_ms(transport.random()))
        .await;
    Ok(())
}

/// An upload whose bytes are all known (a resumed journal): no live session behind it, a
/// bounded number of retries (fewer for a failing `getToken`, see [`StopPatience`]), and
/// counters of what happened.
#[derive(Debug)]
pub struct FinishedUpload {
    queue: RefCell<UploadQueue>,
    changed: Signal,
    max_failures: u32,
    patience: StopPatience,
    retries: Cell<u32>,
    acks: Cell<u32>,
}

impl FinishedUpload {
    /// Uploads the rest of `queue` (which is finished here), giving up after `max_failures`
    /// failures in a row, or as [`StopPatience`] says for `getToken` failures.
    pub fn new(mut queue: UploadQueue, max_failures: u32) -> Self {
        queue.finish();
        Self {
            queue: RefCell::new(queue),
            changed: Signal::new(),
            max_failures,
            patience: StopPatience::default(),
            retries: Cell::new(0),
            acks: Cell::new(0),
        }
    }

    /// Retryable errors met so far.
    pub fn retries(&self) -> u32 {
        self.retries.get()
    }

    /// Acknowledgements received so far.
    pub fn acks(&self) -> u32 {
        self.acks.get()
    }
}

impl UploadOwner for FinishedUpload {
    fn queue(&self) -> &RefCell<UploadQueue> {
        &self.queue
    }

    fn changed(&self) -> &Signal {
        &self.changed
    }

    fn failure(&self) -> Option<RecorderError> {
        None
    }

    fn keep_retrying(&self, err: &RecorderError, failures: u32) -> bool {
        failures <= self.max_failures && self.patience.try_again_after(err)
    }

    fn retrying(&self, _err: &RecorderError) {
        self.retries.set(self.retries.get() + 1);
    }

    fn acknowledged(&self) {
        self.patience.reset();
        self.acks.set(self.acks.get() + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// A tus server in memory, with scripted failures injected before requests.
    #[derive(Default)]
    struct FakeServer {
        data: RefCell<Vec<u8>>,
        length: Cell<Option<u64>>,
        /// Each entry is consumed by one request: `Some(err)` fails it before the server acts,
        /// `None` lets it through.
        script: RefCell<VecDeque<Option<Injected>>>,
        requests: RefCell<Vec<String>>,
        slept: RefCell<Vec<f64>>,
        /// Bodies larger than this get 413, as from a server with a PATCH size limit.
        body_limit: Cell<Option<usize>>,
    }

    #[derive(Clone, Copy)]
    enum Injected {
        /// The request fails without reaching the server.
        Lost(u16),
        /// The server applies the PATCH but the answer is lost (a timeout).
        AnswerLost,
        /// The request times out before reaching the server.
        TimedOut,
        /// `getToken()` fails, so the request is never sent.
        NoToken,
        /// The server's offset jumps back (it lost data).
        Rewind(u64),
    }

    impl FakeServer {
        fn next_injection(&self) -> Option<Injected> {
            self.script.borrow_mut().pop_front().flatten()
        }
        fn apply(&self, plan: &PatchPlan) -> PatchReply {
            let mut data = self.data.borrow_mut();
            if plan.offset != data.len() as u64 {
                return PatchReply::Conflict;
            }
            data.extend_from_slice(&plan.body);
            if let Some(length) = plan.upload_length {
                self.length.set(Some(length));
            }
            PatchReply::Accepted(Some(data.len() as u64))
        }
    }

    impl TusTransport for FakeServer {
        async fn head(&self) -> Result<ServerOffset, RecorderError> {
            self.requests.borrow_mut().push("HEAD".into());
            match self.next_injection() {
                Some(Injected::NoToken) => return Err(no_token()),
                Some(Injected::Lost(0)) => return Err(RecorderError::Network("offline".into())),
                Some(Injected::Lost(status)) => {
                    return Err(RecorderError::Http {
                        status,
                        message: String::new(),
                    })
                }
                Some(Injected::Rewind(offset)) => self.data.borrow_mut().truncate(offset as usize),
                _ => {}
            }
            Ok(ServerOffset {
                offset: self.data.borrow().len() as u64,
                length: self.length.get(),
            })
        }
        async fn patch(&self, plan: &PatchPlan) -> Result<PatchReply, RecorderError> {
            self.requests
                .borrow_mut()
                .push(format!("PATCH {} +{}", plan.offset, plan.body.len()));
            if self
                .body_limit
                .get()
                .is_some_and(|limit| plan.body.len() > limit)
            {
                return Err(RecorderError::Http {
                    status: 413,
                    message: String::new(),
                });
            }
            match self.next_injection() {
                Some(Injected::NoToken) => Err(no_token()),
                Some(Injected::Lost(0)) => Err(RecorderError::Network("offline".into())),
                Some(Injected::Lost(status)) => Err(RecorderError::Http {
                    status,
                    message: String::new(),
                }),
                Some(Injected::AnswerLost) => {
                    self.apply(plan);
                    Err(RecorderError::Timeout)
                }
                Some(Injected::TimedOut) => Err(RecorderError::Timeout),
                Some(Injected::Rewind(_)) | None => Ok(self.apply(plan)),
            }
        }
        async fn sleep(&self, ms: f64) {
            self.slept.borrow_mut().push(ms);
        }
        fn random(&self) -> f64 {
            0.5
        }
    }

    fn no_token() -> RecorderError {
        RecorderError::TokenUnavailable("getToken() rejected: endpoint down".into())
    }

    fn finished_with(chunks: &[&[u8]], max_failures: u32) -> FinishedUpload {
        let mut queue = UploadQueue::new();
        for chunk in chunks {
            queue.push_ready(chunk.to_vec());
        }
        FinishedUpload::new(queue, max_failures)
    }

    /// Runs a future whose every await is immediately ready (the fake server never blocks).
    fn run<F: Future>(fut: F) -> F::Output {
        let mut fut = pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..10_000 {
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
        }
        panic!("the upload loop waited for something that never comes");
    }

    fn server_with(script: &[Option<Injected>]) -> FakeServer {
        let server = FakeServer::default();
        server.script.borrow_mut().extend(script.iter().copied());
        server
    }

    #[test]
    fn a_clean_upload_sends_everything_once_with_its_length() {
        let server = server_with(&[]);
        let owner = finished_with(&[b"abc", b"def"], u32::MAX);
        run(upload(&server, &owner)).expect("uploaded");
        assert_eq!(server.data.borrow().as_slice(), b"abcdef");
        assert_eq!(server.length.get(), Some(6));
        assert_eq!(*server.requests.borrow(), ["PATCH 0 +6"]);
        assert_eq!(owner.acks(), 1);
    }

    #[test]
    fn network_errors_and_5xx_are_retried_with_growing_delays() {
        let server = server_with(&[
            Some(Injected::Lost(0)),
            Some(Injected::Lost(0)),
            Some(Injected::Lost(503)),
            None,
        ]);
        let owner = finished_with(&[b"abc"], u32::MAX);
        run(upload(&server, &owner)).expect("uploaded after the outage");
        assert_eq!(server.data.borrow().as_slice(), b"abc");
        assert_eq!(owner.retries(), 3);
        let slept = server.slept.borrow();
        assert_eq!(slept.len(), 3);
        assert!(
            slept.windows(2).all(|w| w[1] > w[0]),
            "backoff grows: {slept:?}"
        );
    }

    #[test]
    fn a_lost_answer_is_resolved_by_head_without_sending_a_byte_twice() {
        // The first PATCH lands but its answer times out; the HEAD tells the truth.
        let server = server_with(&[Some(Injected::AnswerLost)]);
        let owner = finished_with(&[b"abc"], u32::MAX);
        run(upload(&server, &owner)).expect("uploaded");
        assert_eq!(server.data.borrow().as_slice(), b"abc", "no byte twice");
        assert_eq!(
            *server.requests.borrow(),
            ["PATCH 0 +3", "HEAD"],
            "the length rode on the first PATCH"
        );
        assert_eq!(server.length.get(), Some(3));
    }

    #[test]
    fn a_conflict_resends_from_the_server_offset() {
        let server = server_with(&[]);
        server.data.borrow_mut().extend_from_slice(b"ab"); // an earlier PATCH we never heard of
        let owner = finished_with(&[b"abcdef"], u32::MAX);
        run(upload(&server, &owner)).expect("uploaded");
        assert_eq!(
            server.data.borrow().as_slice(),
            b"abcdef",
            "nothing skipped, nothing doubled"
        );
        assert_eq!(
            *server.requests.borrow(),
            ["PATCH 0 +6", "HEAD", "PATCH 2 +4"]
        );
        assert!(
            server.slept.borrow().is_empty(),
            "a single conflict is resolved at once"
        );
    }

    #[test]
    fn a_body_over_the_server_limit_is_split_until_it_fits() {
        let server = server_with(&[]);
        server.body_limit.set(Some(300_000));
        let backlog = vec![7u8; 1_000_000];
        let owner = finished_with(&[&backlog], u32::MAX);
        run(upload(&server, &owner)).expect("uploaded in smaller PATCHes");
        assert_eq!(server.data.borrow().as_slice(), backlog.as_slice());
        let requests = server.requests.borrow();
        assert_eq!(
            requests[..3],
            ["PATCH 0 +1000000", "PATCH 0 +500000", "PATCH 0 +250000"]
        );
        assert!(server.slept.borrow().is_empty(), "a 413 is not an outage");
        assert_eq!(owner.retries(), 0);
    }

    #[test]
    fn a_timed_out_body_is_resent_smaller_from_the_server_offset() {
        // The first PATCH times out before reaching the server; the next one is half as big.
        let server = server_with(&[Some(Injected::TimedOut)]);
        let backlog = vec![1u8; 200_000];
        let owner = finished_with(&[&backlog], u32::MAX);
        run(upload(&server, &owner)).expect("uploaded");
        assert_eq!(server.data.borrow().as_slice(), backlog.as_slice());
        assert_eq!(
            *server.requests.borrow(),
            [
                "PATCH 0 +200000",
                "HEAD",
                "PATCH 0 +100000",
                "PATCH 100000 +100000"
            ]
        );
    }

    #[test]
    fn a_small_body_refused_as_too_large_is_fatal() {
        let server = server_with(&[]);
        server.body_limit.set(Some(10));
        let owner = finished_with(&[b"0123456789abcdef"], u32::MAX);
        let err = run(upload(&server, &owner)).expect_err("cannot shrink below the minimum");
        assert_eq!(err.code(), "http_413");
    }

    #[test]
    fn client_errors_are_fatal_at_once() {
        let server = server_with(&[Some(Injected::Lost(403))]);
        let owner = finished_with(&[b"abc"], u32::MAX);
        let err = run(upload(&server, &owner)).expect_err("forbidden");
        assert_eq!(err.code(), "http_403");
        assert_eq!(owner.retries(), 0);
    }

    #[test]
    fn a_server_that_lost_acknowledged_bytes_is_a_protocol_error() {
        // "abc" is acknowledged; then a PATCH fails and the HEAD finds the server rewound to 1.
        let server = server_with(&[Some(Injected::Lost(0)), Some(Injected::Rewind(1))]);
        server.data.borrow_mut().extend_from_slice(b"abc");
        let mut acked = crate::hash::ResumableSha256::new();
        acked.update(b"abc");
        let mut queue = UploadQueue::resuming(acked);
        queue.push_ready(b"def".to_vec());
        queue.finish();
        let owner = FinishedUpload::new(queue, u32::MAX);
        let err = run(upload(&server, &owner)).expect_err("rewound");
        assert_eq!(err.code(), "upload_protocol");
        assert_eq!(*server.requests.borrow(), ["PATCH 3 +3", "HEAD"]);
    }

    #[test]
    fn a_bounded_owner_gives_up_after_its_retry_limit() {
        let server = server_with(&[Some(Injected::Lost(0)); 10]);
        let owner = finished_with(&[b"abc"], 3);
        let err = run(upload(&server, &owner)).expect_err("gave up");
        assert_eq!(err.code(), "network");
        assert_eq!(owner.retries(), 3);
    }

    #[test]
    fn a_failing_get_token_is_retried_with_the_backoff_and_the_upload_catches_up() {
        let server = server_with(&[Some(Injected::NoToken), Some(Injected::NoToken), None]);
        let owner = finished_with(&[b"abc"], u32::MAX);
        run(upload(&server, &owner)).expect("uploaded once getToken works");
        assert_eq!(server.data.borrow().as_slice(), b"abc");
        assert_eq!(owner.retries(), 2);
        let slept = server.slept.borrow();
        assert!(
            slept.len() == 2 && slept[1] > slept[0],
            "backoff grows: {slept:?}"
        );
    }

    #[test]
    fn a_finished_upload_gives_up_at_the_third_get_token_failure_in_a_row_not_before() {
        let server = server_with(&[Some(Injected::NoToken); 10]);
        let owner = finished_with(&[b"abc"], 5);
        let err = run(upload(&server, &owner)).expect_err("no token");
        assert_eq!(err.code(), "token_unavailable");
        assert_eq!(
            owner.retries(),
            2,
            "waited through two, gave up at the third"
        );
        assert!(server.data.borrow().is_empty());

        // An acknowledgement (here the HEAD that resyncs) shows getToken works: the count
        // starts again.
        let server = server_with(&[
            Some(Injected::NoToken), // PATCH
            Some(Injected::NoToken), // HEAD
            None,                    // HEAD: acknowledged
            Some(Injected::NoToken), // PATCH
            Some(Injected::NoToken), // HEAD
        ]);
        let owner = finished_with(&[b"abc"], 5);
        run(upload(&server, &owner)).expect("uploaded: never three in a row");
        assert_eq!(server.data.borrow().as_slice(), b"abc");
        assert_eq!(owner.retries(), 4);
    }
}
