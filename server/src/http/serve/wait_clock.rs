//! When a connection waiting for a request is closed.
//!
//! hyper has one timer for this, its header-read timeout, and starts it as soon as a kept-alive
//! connection waits for its next request. One short timeout would then also close idle
//! connections after seconds, racing every client that reuses them for longer: reqwest pools
//! them for 90 s, browsers for minutes, load balancers for 60 s (AWS ALB, nginx upstreams). A
//! request written into a connection the server is closing fails ("connection closed before
//! message completed"; a 502 behind a proxy). So the wait gets two deadlines, as in nginx
//! (`keepalive_timeout` and `client_header_timeout`):
//! - a new connection has `header_read` from its accept to finish its first request's headers;
//! - a kept-alive connection may idle for `keep_alive`, and has `header_read` from the first
//!   byte of its next request to finish that request's headers.
//!
//! [`WaitClock`] is the timer hyper is given; the connection's reads go through [`Watched`],
//! which tells the clock when a byte arrives while a request is awaited. hyper drops the sleep
//! once a request's headers are parsed, which ends the wait.
//!
//! Bytes of the next request that arrive in one read with the end of the previous body are
//! already buffered when the next wait begins, so that request gets `keep_alive` rather than
//! `header_read` for its headers: still bounded, and the connection cap holds either way.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The deadlines of one connection's waits for a request.
#[derive(Clone)]
pub struct WaitClock {
    shared: Arc<Shared>,
}

struct Shared {
    header_read: Duration,
    keep_alive: Duration,
    accepted: Instant,
    /// Whether a wait is under way and its first byte has not come yet: the one thing every
    /// read (PATCH bodies included) looks at, so the mutex is taken once per wait, not per read.
    expecting_first_byte: AtomicBool,
    wait: Mutex<Wait>,
}

#[derive(Default)]
struct Wait {
    /// Requests whose wait began, this one included.
    count: u64,
    /// When the current wait began; `None` while a request is being served.
    since: Option<Instant>,
    /// When the first byte of the awaited request arrived.
    first_byte: Option<Instant>,
}

impl WaitClock {
    pub fn new(header_read: Duration, keep_alive: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                header_read,
                keep_alive,
                accepted: Instant::now(),
                expecting_first_byte: AtomicBool::new(false),
                wait: Mutex::new(Wait::default()),
            }),
        }
    }

    fn wait(&self) -> std::sync::MutexGuard<'_, Wait> {
        // The guarded state is three plain values, always consistent: a panic cannot tear it.
        self.shared
            .wait
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn begin_wait(&self) {
        let mut wait = self.wait();
        wait.count += 1;
        wait.since = Some(Instant::now());
        wait.first_byte = None;
        self.shared
            .expecting_first_byte
            .store(true, Ordering::Relaxed);
    }

    fn end_wait(&self) {
        let mut wait = self.wait();
        wait.since = None;
        wait.first_byte = None;
        self.shared
            .expecting_first_byte
            .store(false, Ordering::Relaxed);
    }

    fn bytes_arrived(&self) {
        // Reads and waits run on the connection's one task: the flag and the state agree.
        if self
            .shared
            .expecting_first_byte
            .swap(false, Ordering::Relaxed)
        {
            self.wait().first_byte = Some(Instant::now());
        }
    }

    /// When the current wait times out.
    fn deadline(&self) -> Instant {
        let shared = &self.shared;
        let wait = self.wait();
        match (wait.count, wait.first_byte, wait.since) {
            (0 | 1, _, _) => shared.accepted + shared.header_read,
            (_, Some(first_byte), _) => first_byte + shared.header_read,
            (_, None, Some(since)) => since + shared.keep_alive,
            // No wait under way: hyper does not poll a sleep then.
            (_, None, None) => Instant::now() + shared.keep_alive,
        }
    }
}

impl hyper::rt::Timer for WaitClock {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    /// hyper asks for a sleep only when a connection begins to wait for a request; its own
    /// deadline (the header-read timeout from now) is replaced by the clock's.
    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.begin_wait();
        Box::pin(WaitSleep {
            sleep: Box::pin(tokio::time::sleep_until(self.deadline().into())),
            clock: self.clone(),
        })
    }
}

/// A wait for a request: ready at the clock's deadline, which moves when the first byte arrives.
struct WaitSleep {
    sleep: Pin<Box<tokio::time::Sleep>>,
    clock: WaitClock,
}

impl Future for WaitSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this each time its read of the headers is pending, so right after the
        // read that brought a first byte.
        let deadline = tokio::time::Instant::from(self.clock.deadline());
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for WaitSleep {}

impl Drop for WaitSleep {
    fn drop(&mut self) {
        self.clock.end_wait();
    }
}

/// A connection's byte stream, telling the clock when bytes arrive.
pub struct Watched<T> {
    inner: T,
    clock: WaitClock,
}

impl<T> Watched<T> {
    pub fn new(inner: T, clock: WaitClock) -> Self {
        Self { inner, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    const HEADER_READ: Duration = Duration::from_secs(10);
    const KEEP_ALIVE: Duration = Duration::from_secs(75);

    fn close_to(actual: Instant, expected: Instant) -> bool {
        let gap = if actual > expected {
            actual - expected
        } else {
            expected - actual
        };
        gap < Duration::from_secs(1)
    }

    #[tokio::test]
    async fn a_new_connection_has_the_header_timeout_from_its_accept() {
        let clock = WaitClock::new(HEADER_READ, KEEP_ALIVE);
        let _sleep = clock.sleep_until(Instant::now());
        assert!(close_to(
            clock.deadline(),
            clock.shared.accepted + HEADER_READ
        ));
        clock.bytes_arrived();
        assert!(close_to(
            clock.deadline(),
            clock.shared.accepted + HEADER_READ
        ));
    }

    #[tokio::test]
    async fn a_kept_alive_connection_idles_for_the_keep_alive_then_has_the_header_timeout() {
        let clock = WaitClock::new(HEADER_READ, KEEP_ALIVE);
        drop(clock.sleep_until(Instant::now())); // The first request's headers arrived.
        clock.bytes_arrived(); // Its body: no wait under way.
        assert!(clock.wait().first_byte.is_none());

        let _next = clock.sleep_until(Instant::now());
        assert!(close_to(clock.deadline(), Instant::now() + KEEP_ALIVE));
        clock.bytes_arrived();
        assert!(close_to(clock.deadline(), Instant::now() + HEADER_READ));
        // Later bytes do not push the deadline back.
        let first = clock.wait().first_byte;
        clock.bytes_arrived();
        assert_eq!(clock.wait().first_byte, first);
    }

    #[tokio::test]
    async fn the_sleep_moves_to_the_header_deadline_when_the_first_byte_arrives() {
        let clock = WaitClock::new(Duration::from_secs(1), Duration::from_secs(600));
        drop(clock.sleep_until(Instant::now()));
        let mut next = clock.sleep_until(Instant::now());
        let idle = tokio::time::timeout(Duration::from_millis(100), &mut next).await;
        assert!(idle.is_err(), "a kept-alive connection waits");
        clock.bytes_arrived();
        tokio::time::timeout(Duration::from_secs(60), next)
            .await
            .expect("the wait ends at the header deadline, not the keep-alive one");
    }
}
