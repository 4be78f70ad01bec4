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

/// Brings `shared` forward to the upload's first `committed` bytes, reading what it has not seen
/// from the store on a copy, its lock released meanwhile: a request on an async worker may wait
/// for that lock, and on S3 the read needs those workers to drive its socket and its timeout
/// (holding the lock across the read hung a node: bench/findings.md, finding 13). The copy is
/// installed unless a PATCH of this node fed the index further meanwhile.
pub fn catch_up(
    shared: &Shared,
    uploads: &dyn UploadStore,
    upload: &UploadId,
    committed: u64,
) -> anyhow::Result<()> {
    let behind = {
        let index = lock(shared);
        (index.resume_at() < committed).then(|| index.clone())
    };
    let Some(mut caught_up) = behind else {
        return Ok(());
    };
    advance(&mut caught_up, uploads, upload, committed)?;
    let mut index = lock(shared);
    if index.resume_at() < caught_up.resume_at() {
        *index = caught_up;
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

#[cfg(test)]
mod tests {
    use std::{
        io::{self, Seek},
        sync::atomic::{AtomicUsize, Ordering},
        time::SystemTime,
    };

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::storage::{LocalStorage, ReadSeek, StorageError, UploadWriter};

    /// Local uploads whose readers count the reads made while `index`'s lock was held.
    struct Probed {
        inner: LocalStorage,
        index: Shared,
        reads_under_lock: Arc<AtomicUsize>,
    }

    struct ProbeReader {
        inner: Box<dyn ReadSeek>,
        index: Shared,
        reads_under_lock: Arc<AtomicUsize>,
    }

    impl Read for ProbeReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.index.try_lock().is_err() {
                self.reads_under_lock.fetch_add(1, Ordering::Relaxed);
            }
            self.inner.read(buf)
        }
    }

    impl Seek for ProbeReader {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    impl UploadStore for Probed {
        fn create(&self, id: &UploadId) -> Result<(), StorageError> {
            self.inner.create(id)
        }
        fn len(&self, id: &UploadId) -> Result<Option<u64>, StorageError> {
            self.inner.len(id)
        }
        fn truncate(&self, id: &UploadId, len: u64) -> Result<(), StorageError> {
            self.inner.truncate(id, len)
        }
        fn writer(
            &self,
            id: &UploadId,
            offset: u64,
        ) -> Result<Box<dyn UploadWriter>, StorageError> {
            self.inner.writer(id, offset)
        }
        fn open(&self, id: &UploadId) -> Result<Box<dyn ReadSeek>, StorageError> {
            Ok(Box::new(ProbeReader {
                inner: self.inner.open(id)?,
                index: Arc::clone(&self.index),
                reads_under_lock: Arc::clone(&self.reads_under_lock),
            }))
        }
        fn delete(&self, id: &UploadId) -> Result<(), StorageError> {
            self.inner.delete(id)
        }
        fn list(&self) -> Result<Vec<String>, StorageError> {
            self.inner.list()
        }
        fn modified(&self, id: &UploadId) -> Result<Option<SystemTime>, StorageError> {
            self.inner.modified(id)
        }
        fn check(&self) -> Result<(), StorageError> {
            self.inner.check()
        }
    }

    /// An empty index and local uploads in `dir` that watch its lock.
    fn probed(dir: &tempfile::TempDir) -> (Shared, Probed) {
        let index: Shared = Arc::default();
        let store = Probed {
            inner: LocalStorage::open(dir.path().to_owned()).unwrap(),
            index: Arc::clone(&index),
            reads_under_lock: Arc::default(),
        };
        (index, store)
    }

    #[test]
    fn catching_up_reads_the_store_with_the_index_unlocked_and_installs_what_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let (index, store) = probed(&dir);
        let upload = UploadId::generate();
        // More than one read step, so the reads are many.
        let bytes: Vec<u8> = (0..3 * CATCH_UP_READ + 17)
            .map(|i| (i % 253) as u8)
            .collect();
        store.create(&upload).unwrap();
        let mut writer = store.writer(&upload, 0).unwrap();
        writer.write(&bytes).unwrap();
        writer.sync().unwrap();

        catch_up(&index, &store, &upload, bytes.len() as u64).unwrap();
        assert_eq!(store.reads_under_lock.load(Ordering::Relaxed), 0);
        let caught_up = lock(&index);
        assert_eq!(caught_up.position(), bytes.len() as u64);
        assert_eq!(caught_up.sha256()[..], Sha256::digest(&bytes)[..]);
    }

    #[test]
    fn an_index_already_further_is_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let (index, store) = probed(&dir);
        let upload = UploadId::generate();
        lock(&index).feed(0, b"already fed").unwrap();
        // The store holds nothing: catching up to fewer bytes must not read it.
        catch_up(&index, &store, &upload, 5).unwrap();
        assert_eq!(lock(&index).position(), 11);
    }
}
