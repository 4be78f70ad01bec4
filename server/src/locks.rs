//! Per-resource async locks: one writer per upload, one finalizer per live.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// A held lock; dropping it releases the resource.
pub type LockGuard = OwnedMutexGuard<()>;

/// Named async mutexes created on demand.
#[derive(Debug, Default)]
pub struct Locks {
    map: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

impl Locks {
    /// Above this many entries, idle ones are dropped so the map does not grow forever.
    const PRUNE_ABOVE: usize = 1024;

    fn entry(&self, key: &str) -> Arc<AsyncMutex<()>> {
        // A poisoned map only means another thread panicked mid-insert; the map is still valid.
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > Self::PRUNE_ABOVE {
            map.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        Arc::clone(map.entry(key.to_owned()).or_default())
    }

    /// Waits for the lock named `key`.
    pub async fn lock(&self, key: &str) -> LockGuard {
        self.entry(key).lock_owned().await
    }

    /// Takes the lock named `key` if it is free.
    pub fn try_lock(&self, key: &str) -> Option<LockGuard> {
        self.entry(key).try_lock_owned().ok()
    }
}

/// The lock key of an upload's writer.
pub fn upload_key(upload_id: &str) -> String {
    format!("upload:{upload_id}")
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
        let locks = Locks::default();
        let guard = locks.lock("a").await;
        assert!(locks.try_lock("a").is_none());
        assert!(locks.try_lock("b").is_some());
        drop(guard);
        assert!(locks.try_lock("a").is_some());
    }
}
