//! A wake-up call between the single-threaded tasks of the recorder (event listeners, the
//! chunk reader, the uploader, `stop()`), without an async runtime.
//!
//! Waiters check their condition, then await [`Signal::notified`]; because wasm is
//! single-threaded nothing can run between the check and the first poll, so no wake-up is lost.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every task waiting on it.
#[derive(Debug, Default)]
pub struct Signal {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Signal {
    /// A signal nobody waits on yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes every current waiter.
    pub fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        for waker in self.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Completes at the next [`notify`](Self::notify) after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            signal: self,
            generation: self.generation.get(),
        }
    }
}

/// The future returned by [`Signal::notified`].
#[derive(Debug)]
pub struct Notified<'a> {
    signal: &'a Signal,
    generation: u64,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut wakers = self.signal.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll_with(fut: &mut Notified<'_>, waker: &Waker) -> Poll<()> {
        Pin::new(fut).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_waiter_completes_only_after_a_later_notify() {
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let signal = Signal::new();
        signal.notify();
        let mut first = signal.notified();
        let mut second = signal.notified();
        assert_eq!(
            poll_with(&mut first, &waker),
            Poll::Pending,
            "earlier notifications do not count"
        );
        assert_eq!(poll_with(&mut first, &waker), Poll::Pending);
        assert_eq!(
            signal.wakers.borrow().len(),
            1,
            "one waker per task, not per poll"
        );
        signal.notify();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "the waiting task was woken"
        );
        assert_eq!(poll_with(&mut first, &waker), Poll::Ready(()));
        assert_eq!(
            poll_with(&mut second, &waker),
            Poll::Ready(()),
            "every waiter completes"
        );
        assert!(signal.wakers.borrow().is_empty());
    }
}
