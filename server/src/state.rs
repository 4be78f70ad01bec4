//! The state every handler shares.

use std::{sync::Arc, time::Duration};

use crate::db::{offsets::OffsetWriter, Db};

use crate::{
    accounts::Authenticator,
    domain::PublicUrl,
    indexing::Indexes,
    locks::Locks,
    media_cache::MediaCache,
    metrics::Metrics,
    rooms::hub::Hub,
    storage::{MediaStore, UploadStore},
    webhooks::Webhooks,
};

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

/// Cloneable handle on the database, storage, per-resource locks and settings: one pointer,
/// since every request clones it several times (middleware, extractors) and a clone of each
/// field was one contended atomic increment each.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// The handle on `services`.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What every handler shares, behind an [`AppState`].
pub struct Services {
    /// The database (SQLite or PostgreSQL).
    pub db: Db,
    /// Commits upload offsets (one batching writer on SQLite).
    pub offsets: OffsetWriter,
    /// What serving each media lately served needs, so its ranges cost no query.
    pub media_cache: Arc<MediaCache>,
    /// Recordings in progress.
    pub uploads: Arc<dyn UploadStore>,
    /// Finished media and posters.
    pub media: Arc<dyn MediaStore>,
    /// Serializes writers of one upload and finalizers of one live.
    pub locks: Arc<Locks>,
    /// This process's name among the nodes, drawn at start: the writer an upload's row names
    /// once one of its PATCHes went through this node (`uploads/tus.rs`).
    pub node: Arc<str>,
    /// Limits and windows.
    pub settings: Arc<Settings>,
    /// The rooms of lives in progress: viewers, chat, stream progress.
    pub hub: Arc<Hub>,
    /// What each upload's bytes are (container index, SHA-256), as far as this node saw them.
    pub indexes: Arc<Indexes>,
    /// Counters served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The webhook receivers, secret and delivery task's wake-up.
    pub webhooks: Arc<Webhooks>,
    /// Slots of the background compactions of this node (`uploads/compaction.rs`).
    pub compactions: Arc<tokio::sync::Semaphore>,
    /// Turns bearer tokens into users: sessions and/or the host app's JWTs (`--auth`).
    pub auth: Arc<Authenticator>,
    /// Where clients reach the server (`--public-url`): `public_url.resolve("/media/7")` is
    /// the URL to hand out for a path.
    pub public_url: Arc<PublicUrl>,
}

impl Services {
    /// Runs a blocking operation on the uploads off the async workers.
    pub async fn with_uploads<T, F>(&self, op: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn UploadStore) -> anyhow::Result<T> + Send + 'static,
    {
        let uploads = Arc::clone(&self.uploads);
        tokio::task::spawn_blocking(move || op(uploads.as_ref())).await?
    }

    /// Runs a blocking operation on the media off the async workers.
    pub async fn with_media<T, F>(&self, op: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn MediaStore) -> anyhow::Result<T> + Send + 'static,
    {
        let media = Arc::clone(&self.media);
        tokio::task::spawn_blocking(move || op(media.as_ref())).await?
    }
}
