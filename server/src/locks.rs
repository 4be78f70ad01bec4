//! Per-resource locks: one writer per upload, one finalizer per live.
//!
//! In one process (SQLite) they are async mutexes. When several nodes share a PostgreSQL
//! database, a lock is also a PostgreSQL session advisory lock on `hashtextextended(key, 0)`,
//! held on a connection of the coordination pool for the guard's lifetime. A node that dies
//! loses its connections, and PostgreSQL releases their session locks with them; a connection
//! whose state is unknown (an error, a cancelled acquisition) is closed, never pooled again.
//!
//! A stop holds its live's lock while it takes its upload's: two connections of the pool. If
//! every connection were held by such an outer lock, each holder would wait for a second one
//! until the pool's acquire timeout. So outer locks are taken with [`Locks::lock_nesting`],
//! whose holders get at most all connections but two (one is the notification listener's), and
//! an inner lock always finds a connection once PATCHes, which nest nothing, return theirs.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use sqlx::{pool::PoolConnection, PgPool, Postgres};
use tokio::sync::{
    Mutex as AsyncMutex, OwnedMutexGuard, OwnedRwLockReadGuard, OwnedSemaphorePermit, RwLock,
    Semaphore,
};

/// Longest wait at shutdown for the unlocks still running.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// First pause between two tries of an advisory lock another node holds.
const RETRY_FIRST: Duration = Duration::from_millis(5);
/// Longest pause between two tries (the wait of a stop behind a finalization).
const RETRY_MAX: Duration = Duration::from_millis(100);

/// A held lock; dropping it releases the resource (on PostgreSQL, shortly after).
pub struct LockGuard {
    local: Option<OwnedMutexGuard<()>>,
    advisory: Option<Advisory>,
    /// For a lock taken with [`Locks::lock_nesting`], its place among the outer locks.
    nesting: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("advisory", &self.advisory.as_ref().map(|a| &a.key))
            .finish()
    }
}

impl LockGuard {
    /// Checks that the lock is still held: on PostgreSQL, a lock goes with its connection
    /// (a database restart, a cut), and another node may then take it. Called before
    /// committing what the lock protects.
    pub async fn ensure_held(&mut self) -> anyhow::Result<()> {
        let Some(advisory) = self.advisory.as_mut() else {
            return Ok(());
        };
        let Some(conn) = advisory.conn.as_mut() else {
            anyhow::bail!("the lock {:?} has no connection", advisory.key);
        };
        // Unknown state until the answer: cancelled or failed, the connection is closed.
        advisory.clean = false;
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks \
             WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted)",
        )
        .fetch_one(&mut **conn)
        .await
        .with_context(|| format!("checking the lock {:?}", advisory.key))?;
        advisory.clean = true;
        anyhow::ensure!(held, "the lock {:?} was lost", advisory.key);
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let local = self.local.take();
        if let Some(advisory) = self.advisory.take() {
            // The local mutex goes with the unlock, so this node's next waiter finds it free.
            advisory.release(local);
        }
    }
}

/// A connection holding the advisory lock `key`.
struct Advisory {
    key: String,
    conn: Option<PoolConnection<Postgres>>,
    /// Read-held while the unlock runs, so [`Locks::close`] can wait for it.
    releases: Arc<RwLock<()>>,
    /// False while a query on the connection may be unfinished.
    clean: bool,
}

impl Advisory {
    /// Unlocks in the background and pools the connection again; closes it if that fails.
    fn release(mut self, local: Option<OwnedMutexGuard<()>>) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|_| self.clean);
        let Some(runtime) = runtime else {
            // No runtime to unlock on, or a query cut short: closing the connection releases it.
            drop(conn.detach());
            return;
        };
        let key = std::mem::take(&mut self.key);
        let releasing: Option<OwnedRwLockReadGuard<()>> =
            Arc::clone(&self.releases).try_read_owned().ok();
        runtime.spawn(async move {
            let unlocked: Result<bool, _> =
                sqlx::query_scalar("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
                    .bind(&key)
                    .fetch_one(&mut *conn)
                    .await;
            if !matches!(unlocked, Ok(true)) {
                tracing::warn!(key, result = ?unlocked, "advisory unlock failed; closing its connection");
                drop(conn.detach());
            }
            drop(local);
            drop(releasing);
        });
    }
}

impl Drop for Advisory {
    fn drop(&mut self) {
        // Still holding a connection here means `release` never ran (a panic, a cancelled
        // acquisition): its lock state is unknown, so the session ends rather than be pooled.
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

/// Named locks created on demand; cluster-wide when backed by PostgreSQL.
#[derive(Default)]
pub struct Locks {
    map: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    postgres: Option<PgPool>,
    /// Places for holders of outer locks, on PostgreSQL.
    nesting: Option<Arc<Semaphore>>,
    /// Unlocks still running in the background.
    releases: Arc<RwLock<()>>,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locks")
            .field("postgres", &self.postgres.is_some())
            .finish()
    }
}

impl Locks {
    /// Above this many entries, idle ones are dropped so the map does not grow forever.
    const PRUNE_ABOVE: usize = 1024;

    /// In-process locks only (a single node).
    pub fn local() -> Self {
        Self::default()
    }

    /// Locks shared by every node on `pool`'s database.
    pub fn postgres(pool: PgPool) -> Self {
        // The listener's connection and one for an inner lock stay out of the outer locks' reach.
        let outer = usize::try_from(pool.options().get_max_connections())
            .unwrap_or(usize::MAX)
            .saturating_sub(2)
            .max(1);
        Self {
            postgres: Some(pool),
            nesting: Some(Arc::new(Semaphore::new(outer))),
            ..Self::default()
        }
    }

    /// Waits for the lock named `key`, under which the holder will take another lock.
    pub async fn lock_nesting(&self, key: &str) -> anyhow::Result<LockGuard> {
        let nesting = match &self.nesting {
            Some(places) => Some(Arc::clone(places).acquire_owned().await?),
            None => None,
        };
        let mut guard = self.lock(key).await?;
        guard.nesting = nesting;
        Ok(guard)
    }

    /// Takes the lock named `key` if free, to take another lock under it; `None` also when
    /// the outer locks have all their places.
    pub async fn try_lock_nesting(&self, key: &str) -> anyhow::Result<Option<LockGuard>> {
        let nesting = match &self.nesting {
            Some(places) => match Arc::clone(places).try_acquire_owned() {
                Ok(place) => Some(place),
                Err(_) => return Ok(None),
            },
            None => None,
        };
        Ok(self.try_lock(key).await?.map(|mut guard| {
            guard.nesting = nesting;
            guard
        }))
    }

    /// Waits for the unlocks of dropped guards, then closes the coordination connections
    /// (at shutdown: another process may want the locks right after).
    pub async fn close(&self) {
        if let Some(pool) = &self.postgres {
            // Bounded: an unreachable database must not hold the shutdown (closing the
            // connections releases their locks anyway).
            let _ = tokio::time::timeout(CLOSE_WAIT, self.releases.write()).await;
            let _ = tokio::time::timeout(CLOSE_WAIT, pool.close()).await;
        }
    }

    fn entry(&self, key: &str) -> Arc<AsyncMutex<()>> {
        // A poisoned map only means another thread panicked mid-insert; the map is still valid.
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > Self::PRUNE_ABOVE {
            map.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        Arc::clone(map.entry(key.to_owned()).or_default())
    }

    /// Waits for the lock named `key`.
    ///
    /// Cancel-safe: dropping the future never leaves the lock held.
    pub async fn lock(&self, key: &str) -> anyhow::Result<LockGuard> {
        // Waiters of this node queue on the mutex; only its holder asks PostgreSQL.
        let local = self.entry(key).lock_owned().await;
        let Some(pool) = &self.postgres else {
            return Ok(LockGuard {
                local: Some(local),
                advisory: None,
                nesting: None,
            });
        };
        let mut pause = RETRY_FIRST;
        loop {
            if let Some(advisory) = try_advisory(pool, key, &self.releases).await? {
                return Ok(LockGuard {
                    local: Some(local),
                    advisory: Some(advisory),
                    nesting: None,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// Waits at most `wait` for the lock named `key`; `None` when it stayed taken.
    pub async fn lock_timeout(
        &self,
        key: &str,
        wait: Duration,
    ) -> anyhow::Result<Option<LockGuard>> {
        match tokio::time::timeout(wait, self.lock(key)).await {
            Ok(guard) => guard.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Takes the lock named `key` if no one (on any node) holds it.
    pub async fn try_lock(&self, key: &str) -> anyhow::Result<Option<LockGuard>> {
        let Ok(local) = self.entry(key).try_lock_owned() else {
            return Ok(None);
        };
        let Some(pool) = &self.postgres else {
            return Ok(Some(LockGuard {
                local: Some(local),
                advisory: None,
                nesting: None,
            }));
        };
        Ok(try_advisory(pool, key, &self.releases)
            .await?
            .map(|advisory| LockGuard {
                local: Some(local),
                advisory: Some(advisory),
                nesting: None,
            }))
    }
}

/// One `pg_try_advisory_lock` on a pooled connection, kept when it succeeds.
async fn try_advisory(
    pool: &PgPool,
    key: &str,
    releases: &Arc<RwLock<()>>,
) -> anyhow::Result<Option<Advisory>> {
    let conn = pool
        .acquire()
        .await
        .context("a coordination connection for a lock")?;
    // From here until the answer, a drop (error or cancellation) closes the connection.
    let mut advisory = Advisory {
        key: key.to_owned(),
        conn: Some(conn),
        releases: Arc::clone(releases),
        clean: true,
    };
    let conn = advisory.conn.as_mut().expect("just set");
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(key)
        .fetch_one(&mut **conn)
        .await
        .with_context(|| format!("trying the advisory lock {key:?}"))?;
    if taken {
        Ok(Some(advisory))
    } else {
        // Not held: the connection is clean and goes back to the pool.
        drop(advisory.conn.take());
        Ok(None)
    }
}

/// The lock key of an upload's writer.
pub fn upload_key(upload_id: &str) -> String {
    format!("upload:{upload_id}")
}

/// The lock key of an upload's compaction (only compactions take it, and only try it).
pub fn compaction_key(upload_id: &str) -> String {
    format!("compaction:{upload_id}")
}

/// The lock key of a live's finalization.
pub fn live_key(post_id: i64) -> String {
    format!("live:{post_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_lock_cannot_be_taken_twice_until_released() {
        let locks = Locks::local();
        let guard = locks.lock("a").await.unwrap();
        assert!(locks.try_lock("a").await.unwrap().is_none());
        assert!(locks.try_lock("b").await.unwrap().is_some());
        assert!(locks
            .lock_timeout("a", Duration::from_millis(20))
            .await
            .unwrap()
            .is_none());
        drop(guard);
        assert!(locks.try_lock("a").await.unwrap().is_some());
    }
}
