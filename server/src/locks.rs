//! Per-resource locks: one writer per upload, one finalizer per live.
//!
//! In one process (SQLite) they are async mutexes. When several nodes share a PostgreSQL
//! database, a lock is also a PostgreSQL session advisory lock on `hashtextextended(key, 0)`.
//! A node's advisory locks live on a few connections of its own, its lock sessions, each
//! holding many locks at once (a key always goes to the same session); the node's waiters for
//! one key queue on the local mutex, so only its holder ever asks PostgreSQL. A lock costs a
//! statement to take and one to release, never a connection for as long as it is held: a PATCH
//! holds its upload's lock while its body arrives and its piece is stored, and holding a pooled
//! connection all that time made the pool, not the work, the limit (`bench/findings.md`,
//! finding 6). Nesting locks (a stop takes its live's, then its upload's) needs no reservation.
//!
//! Advisory locks are re-entrant within a session: the local mutex alone keeps two holders on
//! one node apart, so it is let go only once the unlock ran.
//!
//! A node that dies loses its sessions, and PostgreSQL releases their locks with them. A
//! session whose state is unknown (an error, a statement cut short) is closed, which releases
//! every lock it held, and reopened for the next one: [`LockGuard::ensure_held`], called before
//! storing what a lock protects, tells a holder that its lock went with its session (what it
//! then commits is fenced in the database too: `uploads/tus.rs`). Statements run in tasks of
//! their own, so a caller that stops waiting (a client gone) never leaves a session
//! mid-statement, and a lock taken for a caller gone meanwhile is unlocked, never leaked.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::{postgres::PgConnectOptions, Connection, PgConnection, PgPool};
use tokio::sync::{oneshot, Mutex as AsyncMutex, OwnedMutexGuard, OwnedRwLockReadGuard, RwLock};

use crate::domain::{PostId, UploadId};

/// Longest wait at shutdown for the unlocks still running.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// First pause between two tries of an advisory lock another node holds.
const RETRY_FIRST: Duration = Duration::from_millis(5);
/// Longest pause between two tries (the wait of a stop behind a finalization).
const RETRY_MAX: Duration = Duration::from_millis(100);

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))";
const UNLOCK: &str = "SELECT pg_advisory_unlock(hashtextextended($1, 0))";
/// Whether this session holds the lock: a bigint advisory lock shows in `pg_locks` as its high
/// and low 32 bits in `classid` and `objid`, with `objsubid` 1.
const HOLDS: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks, \
     (SELECT hashtextextended($1, 0) AS h) AS k \
     WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
     AND classid = ((k.h >> 32) & 4294967295)::oid AND objid = (k.h & 4294967295)::oid)";

/// Why a lock could not be taken or kept: its database, not another holder.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// PostgreSQL refused, failed or did not answer in time.
    #[error("the locks' database connection failed: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// PostgreSQL did not answer within the database timeout.
    #[error("the locks' database did not answer within {0:?}")]
    TimedOut(Duration),
    /// The lock went with its session (a database restart, a cut): another node may hold it.
    #[error("the lock {0:?} was lost with its database session")]
    Lost(String),
}

/// A held lock; dropping it releases the resource (on PostgreSQL, shortly after).
pub struct LockGuard {
    /// The local mutex, when there is no advisory lock to hold it (held for its drop).
    _local: Option<OwnedMutexGuard<()>>,
    advisory: Option<Advisory>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("advisory", &self.advisory.as_ref().map(|a| &a.key))
            .finish()
    }
}

impl LockGuard {
    /// Checks that the lock is still held: on PostgreSQL, a lock goes with its session (a
    /// database restart, a cut), and another node may then take it. Called before storing or
    /// committing what the lock protects. Fails with a [`LockError`].
    pub async fn ensure_held(&mut self) -> anyhow::Result<()> {
        let Some(advisory) = &self.advisory else {
            return Ok(());
        };
        let session = Arc::clone(&advisory.session);
        Ok(session
            .holds(advisory.key.clone(), advisory.generation)
            .await?)
    }
}

/// An advisory lock held by a session, as it was when it was taken. Dropping it unlocks in the
/// background, then lets this node's waiters in: whoever drops it, a guard or an answer its
/// caller stopped waiting for, the lock is never left held.
struct Advisory {
    key: String,
    session: Arc<Session>,
    /// The session's connection when the lock was taken.
    generation: u64,
    /// This node's mutex for the key, once the lock is handed to its caller.
    local: Option<OwnedMutexGuard<()>>,
}

impl Drop for Advisory {
    fn drop(&mut self) {
        let local = self.local.take();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Nothing can run the unlock: closing the session releases it (and its others).
            self.session.forget_connection();
            return;
        };
        let (key, generation) = (std::mem::take(&mut self.key), self.generation);
        let session = Arc::clone(&self.session);
        // Read-held while the unlock runs, so [`Locks::close`] can wait for it.
        let releasing: Option<OwnedRwLockReadGuard<()>> =
            Arc::clone(&session.releases).try_read_owned().ok();
        runtime.spawn(async move {
            session.unlock(key, generation).await;
            drop(local);
            drop(releasing);
        });
    }
}

/// One connection holding advisory locks, reopened when it fails; statements on it take turns.
struct Session {
    options: PgConnectOptions,
    timeout: Duration,
    state: AsyncMutex<SessionState>,
    /// The node's unlocks in flight (shared by its sessions).
    releases: Arc<RwLock<()>>,
}

#[derive(Default)]
struct SessionState {
    conn: Option<PgConnection>,
    /// Counts the connections opened: a lock taken on an earlier one is gone.
    generation: u64,
}

impl Session {
    /// Runs one statement answering a boolean about `key`, connecting first if needed; any
    /// failure closes the connection, whose locks are then gone.
    async fn ask(
        &self,
        state: &mut SessionState,
        sql: &'static str,
        key: &str,
    ) -> Result<bool, LockError> {
        let conn = match state.conn.as_mut() {
            Some(conn) => conn,
            None => {
                let connecting = PgConnection::connect_with(&self.options);
                let conn = tokio::time::timeout(self.timeout, connecting)
                    .await
                    .map_err(|_| LockError::TimedOut(self.timeout))?
                    .map_err(LockError::Unavailable)?;
                state.generation += 1;
                state.conn.insert(conn)
            }
        };
        let query = sqlx::query_scalar::<_, bool>(sql).bind(key).fetch_one(conn);
        match tokio::time::timeout(self.timeout, query).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(err)) => {
                state.conn = None;
                Err(LockError::Unavailable(err))
            }
            Err(_) => {
                state.conn = None;
                Err(LockError::TimedOut(self.timeout))
            }
        }
    }

    /// Tries the lock once; the lock when taken.
    async fn try_lock(self: &Arc<Self>, key: &str) -> Result<Option<Advisory>, LockError> {
        let (session, key) = (Arc::clone(self), key.to_owned());
        let (answer, answered) = oneshot::channel();
        tokio::spawn(async move {
            let mut state = session.state.lock().await;
            let taken = session.ask(&mut state, TRY_LOCK, &key).await;
            let generation = state.generation;
            drop(state);
            let result = taken.map(|taken| {
                taken.then(|| Advisory {
                    key,
                    session,
                    generation,
                    local: None,
                })
            });
            // A caller that stopped waiting drops the answer, lock included, which unlocks it.
            let _ = answer.send(result);
        });
        answered
            .await
            .unwrap_or_else(|_| Err(LockError::Lost(String::new())))
    }

    /// Whether the lock taken on connection `generation` is still held.
    async fn holds(self: &Arc<Self>, key: String, generation: u64) -> Result<(), LockError> {
        let session = Arc::clone(self);
        let (answer, answered) = oneshot::channel();
        tokio::spawn(async move {
            let mut state = session.state.lock().await;
            let result = if state.generation != generation || state.conn.is_none() {
                Err(LockError::Lost(key))
            } else {
                match session.ask(&mut state, HOLDS, &key).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(LockError::Lost(key)),
                    Err(err) => Err(err),
                }
            };
            let _ = answer.send(result);
        });
        answered
            .await
            .unwrap_or_else(|_| Err(LockError::Lost(String::new())))
    }

    /// Releases the lock taken on connection `generation` (gone already if the connection is).
    async fn unlock(&self, key: String, generation: u64) {
        let mut state = self.state.lock().await;
        if state.generation != generation || state.conn.is_none() {
            return;
        }
        match self.ask(&mut state, UNLOCK, &key).await {
            Ok(true) => {}
            // Not held: the session must not be trusted any more; closing it is safe.
            Ok(false) => {
                tracing::warn!(
                    key,
                    "an advisory lock was not held at its release; closing its session"
                );
                state.conn = None;
            }
            Err(err) => {
                tracing::warn!(key, error = %err, "advisory unlock failed; its session was closed")
            }
        }
    }

    /// Drops the connection without waiting (outside a runtime), which releases its locks.
    fn forget_connection(&self) {
        if let Ok(mut state) = self.state.try_lock() {
            state.conn = None;
        }
    }

    async fn close(&self) {
        if let Some(conn) = self.state.lock().await.conn.take() {
            let _ = tokio::time::timeout(CLOSE_WAIT, conn.close()).await;
        }
    }
}

/// Named locks created on demand; cluster-wide when backed by PostgreSQL.
#[derive(Default)]
pub struct Locks {
    map: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    /// The lock sessions, on PostgreSQL; a key's session is picked by its hash.
    sessions: Vec<Arc<Session>>,
    /// The coordination pool (the notification listener's), closed with the locks.
    postgres: Option<PgPool>,
    /// Unlocks still running in the background (the sessions share it).
    releases: Arc<RwLock<()>>,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locks")
            .field("sessions", &self.sessions.len())
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

    /// Locks shared by every node on `pool`'s database, held by as many sessions as the pool
    /// has connections but one (the notification listener's, which stays in the pool), each
    /// opened with the pool's options and bounded by its acquire timeout.
    pub fn postgres(pool: PgPool) -> Self {
        let count = usize::try_from(pool.options().get_max_connections())
            .unwrap_or(1)
            .saturating_sub(1)
            .max(1);
        let timeout = pool.options().get_acquire_timeout();
        let options = pool.connect_options().as_ref().clone();
        let releases = Arc::new(RwLock::new(()));
        let sessions = (0..count)
            .map(|_| {
                Arc::new(Session {
                    options: options.clone(),
                    timeout,
                    state: AsyncMutex::default(),
                    releases: Arc::clone(&releases),
                })
            })
            .collect();
        Self {
            sessions,
            postgres: Some(pool),
            releases,
            ..Self::default()
        }
    }

    /// Waits for the unlocks of dropped guards, then closes the coordination connections
    /// (at shutdown: another process may want the locks right after).
    pub async fn close(&self) {
        if let Some(pool) = &self.postgres {
            // Bounded: an unreachable database must not hold the shutdown (closing the
            // connections releases their locks anyway).
            let _ = tokio::time::timeout(CLOSE_WAIT, self.releases.write()).await;
            for session in &self.sessions {
                session.close().await;
            }
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

    /// The session that holds `key`'s advisory lock, on PostgreSQL.
    fn session(&self, key: &str) -> Option<&Arc<Session>> {
        if self.sessions.is_empty() {
            return None;
        }
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let index = usize::try_from(hasher.finish() % self.sessions.len() as u64).unwrap_or(0);
        self.sessions.get(index)
    }

    /// Tries the advisory lock of `key` once, for the holder of its local mutex.
    async fn try_advisory(
        &self,
        key: &str,
        local: OwnedMutexGuard<()>,
    ) -> Result<Result<LockGuard, OwnedMutexGuard<()>>, LockError> {
        let Some(session) = self.session(key) else {
            return Ok(Ok(LockGuard {
                _local: Some(local),
                advisory: None,
            }));
        };
        Ok(match session.try_lock(key).await? {
            Some(mut advisory) => {
                advisory.local = Some(local);
                Ok(LockGuard {
                    _local: None,
                    advisory: Some(advisory),
                })
            }
            None => Err(local),
        })
    }

    /// Waits for the lock named `key`; fails at once (with a [`LockError`]) when its database
    /// cannot be asked.
    ///
    /// Cancel-safe: dropping the future never leaves the lock held.
    pub async fn lock(&self, key: &str) -> anyhow::Result<LockGuard> {
        // Waiters of this node queue on the mutex; only its holder asks PostgreSQL.
        let mut local = self.entry(key).lock_owned().await;
        let mut pause = RETRY_FIRST;
        loop {
            match self.try_advisory(key, local).await? {
                Ok(guard) => return Ok(guard),
                Err(kept) => local = kept,
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
        Ok(self.try_advisory(key, local).await?.ok())
    }
}

/// The lock key of an upload's writer.
pub fn upload_key(upload_id: &UploadId) -> String {
    format!("upload:{upload_id}")
}

/// The lock key of an upload's compaction (only compactions take it, and only try it).
pub fn compaction_key(upload_id: &UploadId) -> String {
    format!("compaction:{upload_id}")
}

/// The lock key of the assembly of a media's layout into one object (`recording/assembly.rs`).
pub fn assembly_key(media_id: crate::domain::MediaId) -> String {
    format!("assembly:{media_id}")
}

/// The lock key of a live's finalization.
pub fn live_key(post_id: PostId) -> String {
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
