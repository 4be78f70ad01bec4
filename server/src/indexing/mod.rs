//! What each upload's bytes are, learnt as they arrive: its container index (WebM clusters, MP4
//! fragments) and its SHA-256, one [`UploadIndex`] per upload, held by this node's
//! [`Indexes`].
//!
//! The same index serves the live stream (where whole clusters or fragments are, which open on
//! a keyframe, their times) and the stop (the SHA-256 to check, the head to plan). It is fed in
//! upload order; a node that missed bytes (another node took the PATCH, or it restarted)
//! brings its index forward from the upload's storage before using it ([`advance`]).

pub mod upload_index;

use std::{
    collections::HashMap,
    io::{Read, Seek, SeekFrom},
    sync::{Arc, Mutex, MutexGuard},
};

use anyhow::Context;

use crate::{
    db::{self, Db},
    domain::UploadId,
    storage::UploadStore,
};
pub use upload_index::{ContainerIndex, UploadIndex};

/// Bytes read from the upload per step while an index catches up: bounded memory.
const CATCH_UP_READ: usize = 1 << 20;

/// The index of one upload on this node.
pub type Shared = Arc<Mutex<UploadIndex>>;

/// This node's upload indexes, by upload.
#[derive(Debug, Default)]
pub struct Indexes {
    by_upload: Mutex<HashMap<UploadId, Shared>>,
}

/// A poisoned lock means a thread panicked while feeding the index: it starts over (and is
/// brought forward from the upload's bytes when next needed).
pub fn lock(shared: &Shared) -> MutexGuard<'_, UploadIndex> {
    shared.lock().unwrap_or_else(|poisoned| {
        shared.clear_poison();
        let mut guard = poisoned.into_inner();
        *guard = UploadIndex::new();
        guard
    })
}

impl Indexes {
    /// The index of `upload`, empty when this node has none yet.
    pub fn get(&self, upload: &UploadId) -> Shared {
        let mut map = self.by_upload.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(upload.clone()).or_default())
    }

    /// Forgets the index of `upload` (it ended, or its index can no longer be trusted).
    pub fn forget(&self, upload: &UploadId) {
        let mut map = self.by_upload.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(upload);
    }

    /// Number of uploads indexed (for tests of the bookkeeping).
    pub fn len(&self) -> usize {
        self.by_upload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether no upload is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Brings `index` forward to the upload's first `committed` bytes, reading what it has not
/// seen from the store (blocking). An index already there or past it is left as it is.
pub fn advance(
    index: &mut UploadIndex,
    uploads: &dyn UploadStore,
    upload: &UploadId,
    committed: u64,
) -> anyhow::Result<()> {
    let mut at = index.resume_at();
    if at >= committed {
        return Ok(());
    }
    let mut file = uploads
        .open(upload)
        .with_context(|| format!("opening upload {upload} to index it"))?;
    file.seek(SeekFrom::Start(at))?;
    let mut buffer = vec![0; CATCH_UP_READ];
    while at < committed {
        let want = usize::try_from(committed - at)
            .unwrap_or(usize::MAX)
            .min(CATCH_UP_READ);
        file.read_exact(&mut buffer[..want])
            .with_context(|| format!("reading upload {upload} at {at} to index it"))?;
        index.feed(at, &buffer[..want])?;
        at += want as u64;
    }
    Ok(())
}

/// What the caller of [`ready`] does with the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Feeds it a PATCH's bytes and saves it with the new offset: its save counters must
    /// follow the database's log ([`UploadIndex::saves_at`]).
    Append,
    /// Reads it (a stop): what it says of the bytes is all that matters.
    Read,
}

/// This node's index of `upload` at exactly its `committed` offset, for the holder of the
/// upload's lock (a PATCH, a stop): the one in memory when it is there (and, to append, was
/// saved or restored there: a live stream may have brought it forward from the store while
/// another node appended to the saved log); else the one saved with that offset, restored,
/// fed the few bytes after where it resumes (at most one cluster child of a WebM; none for
/// MP4); else, without a usable saved state, rebuilt from the bytes, its saved log cleared
/// first when it is to be appended to.
pub async fn ready(
    db: &Db,
    uploads: Arc<dyn UploadStore>,
    indexes: &Indexes,
    upload: &UploadId,
    committed: u64,
    usage: Use,
) -> anyhow::Result<Shared> {
    let shared = indexes.get(upload);
    let current = {
        let index = lock(&shared);
        index.resume_at() == committed
            && match usage {
                Use::Append => index.saves_at(committed),
                Use::Read => index.position() == committed,
            }
    };
    if current {
        return Ok(shared);
    }
    let saved = db::uploads::load_index(db, upload)
        .await
        .context("loading an upload's saved index")?;
    let restored = match saved {
        Some(saved) if saved.offset == committed => match &saved.states {
            Some((state, sha256)) => match UploadIndex::restore(state, sha256, &saved.entries) {
                Ok(index) if index.position() == committed => Some(index),
                Ok(index) => {
                    tracing::warn!(upload = %upload, saved = index.position(), committed,
                        "a saved upload index is not at its offset; rebuilding it");
                    None
                }
                Err(err) => {
                    tracing::warn!(upload = %upload, error = %err, "rebuilding an upload index");
                    None
                }
            },
            None => None,
        },
        _ => None,
    };
    if restored.is_none() && usage == Use::Append {
        // The rebuilt index saves its entries from the start of the log.
        db::uploads::clear_index(db, upload)
            .await
            .context("clearing an upload's unusable saved index")?;
    }
    let upload = upload.clone();
    let filled = Arc::clone(&shared);
    tokio::task::spawn_blocking(move || {
        let mut index = restored.unwrap_or_default();
        advance(&mut index, uploads.as_ref(), &upload, committed)?;
        *lock(&filled) = index;
        anyhow::Ok(())
    })
    .await
    .context("indexing task")??;
    Ok(shared)
}
