//! Group commit: one writer task applies the commits that callers queue, every commit pending
//! at once in one batch, and answers each caller only once its batch is applied.
//!
//! While a batch commits (on SQLite, a WAL sync), the next callers queue up; the writer then
//! takes them all together, so under load a sync serves many commits instead of one each, and
//! concurrent commits never meet on the database's write lock. No delay is added to gather a
//! batch: a lone commit goes at once.

use std::{fmt, future::Future, panic::AssertUnwindSafe, sync::Arc};

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

/// Why a queued commit was not applied: its batch failed (every commit in it failed with it),
/// or the writer is gone.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    /// Applying the batch failed; nothing of it was committed.
    #[error("a batch of {size} commits failed: {source:#}")]
    Failed {
        /// How many commits the batch held.
        size: usize,
        /// The failure, shared by every commit of the batch.
        source: Arc<anyhow::Error>,
    },
    /// The writer task has stopped (the server is shutting down).
    #[error("the commit writer has stopped")]
    Stopped,
}

type Reply = oneshot::Sender<Result<(), BatchError>>;

/// The queue of one writer task; cloning it shares the writer.
pub struct GroupCommit<T> {
    queue: mpsc::UnboundedSender<(T, Reply)>,
}

impl<T> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for GroupCommit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl<T: Send + 'static> GroupCommit<T> {
    /// Starts the writer task: it calls `apply` with each batch (in queue order, at most
    /// `max_batch` commits) and stops once every handle is dropped. A batch whose `apply`
    /// panics fails like one that returns an error; the writer goes on with the next.
    pub fn spawn<F, Fut>(max_batch: usize, mut apply: F) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send,
    {
        let (queue, mut pending) = mpsc::unbounded_channel::<(T, Reply)>();
        let max_batch = max_batch.max(1);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max_batch);
            while pending.recv_many(&mut batch, max_batch).await > 0 {
                let (items, replies): (Vec<T>, Vec<Reply>) = batch.drain(..).unzip();
                let size = items.len();
                // A panic must not take the writer down: every later commit would fail with it.
                let applied = AssertUnwindSafe(apply(items))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        Err(anyhow::anyhow!(
                            "the batch panicked: {}",
                            panic_message(&*panic)
                        ))
                    });
                let outcome = applied.map_err(|err| BatchError::Failed {
                    size,
                    source: Arc::new(err),
                });
                for reply in replies {
                    // A caller that went away needs no answer: its commit stands or fails alike.
                    let _ = reply.send(outcome.clone());
                }
            }
        });
        Self { queue }
    }

    /// Queues `item` and waits until its batch is applied.
    ///
    /// Once queued, the commit is applied even if this future is dropped: callers that must not
    /// let go of what the commit protects before it lands keep awaiting it.
    pub async fn commit(&self, item: T) -> Result<(), BatchError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .map_err(|_| BatchError::Stopped)?;
        answer.await.map_err(|_| BatchError::Stopped)?
    }
}

/// The message a panic was raised with, when it is a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    };

    use tokio::sync::Semaphore;

    use super::*;

    /// A writer that records its batches and waits for a permit of `gate` before each one.
    struct Recorded {
        writer: GroupCommit<u32>,
        gate: Arc<Semaphore>,
        /// Batches begun (waiting for their permit or done).
        begun: Arc<AtomicUsize>,
        /// The batches applied, in order.
        seen: Arc<Mutex<Vec<Vec<u32>>>>,
    }

    impl Recorded {
        fn new(fail_when: impl Fn(&[u32]) -> bool + Send + 'static) -> Self {
            let gate = Arc::new(Semaphore::new(0));
            let begun = Arc::new(AtomicUsize::new(0));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (g, b, log) = (Arc::clone(&gate), Arc::clone(&begun), Arc::clone(&seen));
            let writer = GroupCommit::spawn(64, move |items: Vec<u32>| {
                let (gate, log) = (Arc::clone(&g), Arc::clone(&log));
                b.fetch_add(1, Ordering::SeqCst);
                let fail = fail_when(&items);
                async move {
                    gate.acquire().await?.forget();
                    log.lock().unwrap().push(items);
                    anyhow::ensure!(!fail, "the database refused the batch");
                    Ok(())
                }
            });
            Self {
                writer,
                gate,
                begun,
                seen,
            }
        }

        /// Queues each item from its own task, in order, without waiting for the answers.
        async fn queue(
            &self,
            items: impl IntoIterator<Item = u32>,
        ) -> Vec<tokio::task::JoinHandle<Result<(), BatchError>>> {
            let mut waiting = Vec::new();
            for item in items {
                let writer = self.writer.clone();
                waiting.push(tokio::spawn(async move { writer.commit(item).await }));
                // The task queues its commit before the next one is spawned.
                tokio::task::yield_now().await;
            }
            waiting
        }

        /// Waits until the writer has begun `n` batches.
        async fn begun(&self, n: usize) {
            while self.begun.load(Ordering::SeqCst) < n {
                tokio::task::yield_now().await;
            }
        }
    }

    #[tokio::test]
    async fn commits_queued_during_a_batch_go_together_in_queue_order() {
        let recorded = Recorded::new(|_| false);
        let mut waiting = recorded.queue([1]).await;
        // The writer holds the first commit alone while the others queue behind it.
        recorded.begun(1).await;
        waiting.extend(recorded.queue(2..=6).await);
        recorded.gate.add_permits(2);
        for waiter in waiting {
            waiter.await.unwrap().unwrap();
        }
        assert_eq!(
            *recorded.seen.lock().unwrap(),
            vec![vec![1], vec![2, 3, 4, 5, 6]]
        );
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_commit_in_it_and_the_next_batch_still_lands() {
        let recorded = Recorded::new(|items| items.contains(&3));
        let first = recorded.queue([1]).await;
        recorded.begun(1).await;
        let doomed = recorded.queue(2..=4).await;
        recorded.gate.add_permits(1);
        for waiter in first {
            waiter.await.unwrap().unwrap();
        }
        recorded.gate.add_permits(1);
        for waiter in doomed {
            match waiter.await.unwrap() {
                Err(BatchError::Failed { size, source }) => {
                    assert_eq!(size, 3);
                    assert!(source.to_string().contains("refused"), "{source}");
                }
                other => panic!("a commit of the failed batch answered {other:?}"),
            }
        }
        let after = recorded.queue([5]).await;
        recorded.gate.add_permits(1);
        for waiter in after {
            waiter.await.unwrap().unwrap();
        }
        assert_eq!(
            *recorded.seen.lock().unwrap(),
            vec![vec![1], vec![2, 3, 4], vec![5]]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_waiters_are_each_answered_once_their_own_commit_is_applied() {
        let applied = Arc::new(Mutex::new(Vec::new()));
        let batches = Arc::new(Mutex::new(0usize));
        let (log, count) = (Arc::clone(&applied), Arc::clone(&batches));
        let writer = GroupCommit::spawn(64, move |items: Vec<u32>| {
            let (log, count) = (Arc::clone(&log), Arc::clone(&count));
            async move {
                // A commit takes a while, as a sync does, so callers pile up meanwhile.
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                log.lock().unwrap().extend(items);
                *count.lock().unwrap() += 1;
                Ok(())
            }
        });
        let mut waiting = tokio::task::JoinSet::new();
        for item in 0..1000u32 {
            let writer = writer.clone();
            let applied = Arc::clone(&applied);
            waiting.spawn(async move {
                writer.commit(item).await?;
                // Answered only after the batch holding it was applied.
                anyhow::ensure!(
                    applied.lock().unwrap().contains(&item),
                    "{item} answered early"
                );
                anyhow::Ok(())
            });
        }
        while let Some(done) = waiting.join_next().await {
            done.unwrap().unwrap();
        }
        let mut applied = applied.lock().unwrap().clone();
        applied.sort_unstable();
        assert_eq!(applied, (0..1000).collect::<Vec<_>>());
        let batches = *batches.lock().unwrap();
        assert!(
            (1000 / 64..1000).contains(&batches),
            "{batches} batches for 1000 commits of at most 64"
        );
    }

    #[tokio::test]
    async fn a_batch_that_panics_fails_its_commits_and_the_writer_goes_on() {
        let writer = GroupCommit::spawn(8, |items: Vec<u32>| async move {
            assert!(!items.contains(&13), "the writer trips on 13");
            Ok(())
        });
        match writer.commit(13).await {
            Err(BatchError::Failed { size: 1, source }) => {
                assert!(source.to_string().contains("trips on 13"), "{source}");
            }
            other => panic!("a panicking batch answered {other:?}"),
        }
        writer.commit(14).await.unwrap();
    }

    #[test]
    fn a_commit_after_the_writer_stopped_fails_instead_of_hanging() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
        };
        // The writer task dies with its runtime (a server shutting down).
        let first = runtime();
        let writer =
            first.block_on(async { GroupCommit::spawn(8, |_: Vec<u32>| async { Ok(()) }) });
        drop(first);
        let answer = runtime().block_on(writer.commit(1));
        assert!(matches!(answer, Err(BatchError::Stopped)), "{answer:?}");
    }
}
