//! The state every handler shares.

use std::{sync::Arc, time::Duration};

use crate::db::Db;

use crate::{live::hub::Hub, locks::Locks, metrics::Metrics, storage::Storage};

/// Limits and windows handlers need, copied from the configuration at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest recording, in bytes (`Tus-Max-Size`).
    pub max_upload_size: u64,
    /// Largest body of one PATCH, in bytes.
    pub max_patch_size: u64,
    /// How long an upload stays resumable after its last activity.
    pub upload_expiry: Duration,
    /// How long a live may stay silent before it is finalized as interrupted.
    pub interrupt_after: Duration,
    /// How long a PATCH body may send nothing before it is abandoned (bytes rolled back).
    pub patch_idle_timeout: Duration,
    /// How old a file without a row must be before the start-up check deletes it.
    pub orphan_grace: Duration,
}

/// Cloneable handle on the database, storage, per-resource locks and settings.
#[derive(Clone)]
pub struct AppState {
    /// The database (SQLite or PostgreSQL).
    pub db: Db,
    /// Uploads and media files.
    pub storage: Arc<dyn Storage>,
    /// Serializes writers of one upload and finalizers of one live.
    pub locks: Arc<Locks>,
    /// Limits and windows.
    pub settings: Arc<Settings>,
    /// The rooms of lives in progress: viewers, chat, stream progress.
    pub hub: Arc<Hub>,
    /// Counters served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Slots of the background compactions of this node (`compaction.rs`).
    pub compactions: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// Runs a blocking storage operation off the async workers.
    pub async fn with_storage<T, F>(&self, op: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Storage) -> anyhow::Result<T> + Send + 'static,
    {
        let storage = Arc::clone(&self.storage);
        tokio::task::spawn_blocking(move || op(storage.as_ref())).await?
    }
}
