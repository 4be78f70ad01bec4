//! Where bytes live, behind two small traits: the [`UploadStore`] of recordings in progress
//! (appended to, synced, cut back, read while they grow) and the [`MediaStore`] of finished
//! media and posters (written once under a fresh key, committed whole, served with ranges).
//! Each backend (the local disk, an object store) implements both.
//!
//! The traits are synchronous on purpose: file I/O is blocking anyway, and callers run them in
//! `spawn_blocking` (`AppState::with_uploads`, `AppState::with_media`), batching a PATCH body
//! into large writes. The object-store backend blocks on the runtime from those same blocking
//! threads; only serving a media reads an object asynchronously ([`StoredObject`]).

pub mod layout;
mod local;
pub mod mapped;
mod object;
pub mod range;
pub mod requests;
mod s3_copy;

use std::{
    io::{self, Read, Seek, Write},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

pub use layout::{Piece, Source, StoredLayout};
pub use local::LocalStorage;
pub use object::{ObjectStorage, StoredMeta, StoredObject};
pub use requests::RequestCounts;

use bytes::Bytes;

use crate::domain::UploadId;

/// Default size of the objects an upload's small pieces are compacted into, and of the parts
/// of a finalized media's multipart upload (S3's minimum part size).
pub const DEFAULT_PART_SIZE: u64 = 5 << 20;

/// Default bound of one upload operation on an object store (`--object-store-timeout`).
pub const DEFAULT_OBJECT_STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a backend is opened, besides its URL.
#[derive(Debug, Clone, Copy)]
pub struct StorageSettings {
    /// On an object store, the size pieces are compacted into and of a media's multipart parts.
    pub part_size: u64,
    /// On an object store, the longest an upload operation (a reconciliation, a piece's put)
    /// may take, retries included, before it fails as unavailable.
    pub timeout: Duration,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            part_size: DEFAULT_PART_SIZE,
            timeout: DEFAULT_OBJECT_STORE_TIMEOUT,
        }
    }
}

/// A storage failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage URL names a backend this build does not have.
    #[error("unsupported storage URL {0:?}: use file://, s3://{extra}", extra = EXTRA_SCHEMES)]
    UnsupportedUrl(String),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// An object store request failed.
    #[error("{context}: {source}")]
    Object {
        /// What was being done, with the key.
        context: String,
        /// The underlying error.
        source: object_store::Error,
    },
    /// The object store did not answer in time (retries included); nothing is known of what
    /// the operation did.
    #[error("{context}: the object store did not answer within {after:?}")]
    TimedOut {
        /// What was being done.
        context: String,
        /// The bound that passed.
        after: Duration,
    },
}

impl StorageError {
    /// Whether the store could not be reached or did not answer in time (asking again later
    /// may succeed), rather than refusing the request.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::TimedOut { .. } => true,
            Self::Object { source, .. } => object::is_transport_failure(source),
            Self::Io { .. } | Self::UnsupportedUrl(_) => false,
        }
    }
}

/// The object-store schemes compiled in besides s3://, for the error message.
const EXTRA_SCHEMES: &str = match (cfg!(feature = "gcs"), cfg!(feature = "azure")) {
    (true, true) => ", gs://, az://",
    (true, false) => ", gs://",
    (false, true) => ", az://",
    (false, false) => " (gs:// and az:// need the gcs / azure features)",
};

impl From<StorageError> for io::Error {
    /// Keeps the kind (a full disk must stay a full disk: it answers 507).
    fn from(err: StorageError) -> Self {
        let kind = match &err {
            StorageError::Io { source, .. } => source.kind(),
            StorageError::Object {
                source: object_store::Error::NotFound { .. },
                ..
            } => io::ErrorKind::NotFound,
            StorageError::TimedOut { .. } => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}

/// Appends to one upload; bytes are durable only after [`UploadWriter::sync`].
pub trait UploadWriter: Send {
    /// Appends bytes at the current end.
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
    /// Appends several buffers in order, as they came off the network (no gathering copy
    /// where the backend can write them as they are).
    fn write_chunks(&mut self, chunks: &[Bytes]) -> Result<(), StorageError> {
        chunks.iter().try_for_each(|chunk| self.write(chunk))
    }
    /// Makes the appended bytes durable (`sync_data`, or the put of one piece object).
    fn sync(&mut self) -> Result<(), StorageError>;
}

/// A byte source that can seek: an upload or a stored media.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// A media being written; it exists under its key only after [`MediaWriter::commit`].
pub trait MediaWriter: Write + Send {
    /// Makes the written bytes durable under the key (rename, or completing a multipart upload).
    fn commit(self: Box<Self>) -> Result<(), StorageError>;
}

/// Where a committed media's bytes are, for serving them.
#[derive(Debug, Clone)]
pub enum MediaSource {
    /// A file on the local disk: the HTTP layer serves it with its file fast paths.
    File(PathBuf),
    /// An object, read with ranged gets.
    Object(StoredObject),
    /// A layout (`layout.rs`), read through [`MediaStore::open`] under its key.
    Layout(String),
}

/// Where a layout was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutLayout {
    /// The media's key.
    pub key: String,
    /// The media holds the upload's bytes where they are (its objects): they must not be
    /// deleted with the upload, the media's deletion takes them.
    pub holds_upload: bool,
}

/// A local media, open and mapped for zero-copy sends: a layout's pieces over its head file and
/// its data file; a plain file (a poster, a refinalized recording) is one piece of `data`.
#[derive(Debug)]
pub struct MappedMedia {
    /// The media's bytes, in order.
    pub pieces: Vec<Piece>,
    /// The head file (the pieces of [`Source::Head`]); a plain file's is the file itself.
    pub head: Arc<mapped::MappedFile>,
    /// The upload's bytes (the pieces of [`Source::Upload`]); a plain file's are its own.
    pub data: Arc<mapped::MappedFile>,
    /// The media's length.
    pub total: u64,
    /// When the media was stored.
    pub modified: Option<SystemTime>,
}

/// Who wrote an upload before the PATCH that appends to it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousWriter {
    /// This node: it claimed the upload before.
    ThisNode,
    /// No node: none ever claimed it, so nothing of it is stored (a node claims an upload
    /// before it stores any of its bytes).
    Nobody,
    /// Another node: it may have left a piece past the offset, or have one still on its way.
    Another,
}

/// The recordings in progress: one append-only byte sequence per upload, durable up to the
/// offset the database committed.
pub trait UploadStore: Send + Sync + 'static {
    /// Prepares a new, empty upload.
    fn create(&self, id: &UploadId) -> Result<(), StorageError>;
    /// The number of contiguous bytes held for an upload, `None` if it has no file.
    fn len(&self, id: &UploadId) -> Result<Option<u64>, StorageError>;
    /// Cuts an upload back to `len` bytes durably, dropping bytes never acknowledged.
    fn truncate(&self, id: &UploadId, len: u64) -> Result<(), StorageError>;
    /// Makes an upload's bytes agree with its committed offset and returns the length it now
    /// holds: bytes past `committed` were never acknowledged and are dropped; fewer bytes than
    /// `committed` (lost writes) are reported as they are, for the caller to lower the offset.
    /// A missing upload is created empty. The caller holds the upload's lock.
    fn reconcile(&self, id: &UploadId, committed: u64) -> Result<u64, StorageError> {
        match self.len(id)? {
            Some(len) if len > committed => {
                self.truncate(id, committed)?;
                Ok(committed)
            }
            Some(len) => Ok(len),
            None => {
                self.create(id)?;
                Ok(0)
            }
        }
    }
    /// [`UploadStore::reconcile`] before an append, which a backend may skip when it knows
    /// the upload's bytes end at `committed`: it listed them or put the last piece itself,
    /// and nothing failed since; or nobody ever wrote the upload. `previous` says who wrote it
    /// before this PATCH. The caller holds the upload's lock.
    fn reconcile_for_append(
        &self,
        id: &UploadId,
        committed: u64,
        previous: PreviousWriter,
    ) -> Result<u64, StorageError> {
        let _ = previous;
        self.reconcile(id, committed)
    }
    /// Opens an upload for appending at `offset`, the length [`UploadStore::reconcile`] (or
    /// [`UploadStore::reconcile_for_append`]) has just returned under the same lock.
    fn writer(&self, id: &UploadId, offset: u64) -> Result<Box<dyn UploadWriter>, StorageError>;
    /// Makes an upload agree with its `committed` offset ([`UploadStore::reconcile_for_append`])
    /// and opens it for appending, in one call: a PATCH pays for this on every request. Returns
    /// the length it holds then (below `committed` if bytes were lost) with its writer.
    fn reopen(
        &self,
        id: &UploadId,
        committed: u64,
        previous: PreviousWriter,
    ) -> Result<(u64, Box<dyn UploadWriter>), StorageError> {
        let len = self.reconcile_for_append(id, committed, previous)?;
        Ok((len, self.writer(id, len)?))
    }
    /// Whether committing the bytes `before..after` of an upload makes
    /// [`UploadStore::compact`] worth running (never, where an upload is one file).
    fn compaction_due(&self, _before: u64, _after: u64) -> bool {
        false
    }
    /// Merges an upload's small pieces that lie wholly below `committed` into larger objects.
    ///
    /// Safe beside a writer appending at the committed offset (and cutting back bytes past
    /// it) and beside readers; not beside [`UploadStore::delete`], which callers exclude
    /// (`uploads/compaction.rs`).
    fn compact(&self, _id: &UploadId, _committed: u64) -> Result<(), StorageError> {
        Ok(())
    }
    /// Opens an upload for reading; only bytes below the committed offset are meaningful.
    fn open(&self, id: &UploadId) -> Result<Box<dyn ReadSeek>, StorageError>;
    /// Deletes an upload's bytes; a missing upload is not an error.
    fn delete(&self, id: &UploadId) -> Result<(), StorageError>;
    /// Names of the uploads held, as `<upload id>.part` (anything else is foreign).
    fn list(&self) -> Result<Vec<String>, StorageError>;
    /// When an upload last received bytes; `None` if it holds none.
    fn modified(&self, id: &UploadId) -> Result<Option<SystemTime>, StorageError>;
    /// Checks that the uploads' storage answers (for `/healthz`).
    fn check(&self) -> Result<(), StorageError>;
}

/// The finished media (recordings and posters): each written once under a fresh key, and
/// visible under it only once committed whole.
pub trait MediaStore: Send + Sync + 'static {
    /// Starts writing a media under `key`; dropped without a commit, it leaves nothing.
    fn writer(&self, key: &str) -> Result<Box<dyn MediaWriter>, StorageError>;
    /// Stores a small file (a poster) durably under `key`.
    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Stores a media as a layout of new bytes (`head`, as `layout`'s head pieces say) and the
    /// committed bytes of `upload`, without copying them; it exists under the returned key
    /// (`<stem>.layout`) only once complete.
    fn put_layout(
        &self,
        stem: &str,
        upload: &UploadId,
        head: &[u8],
        layout: &StoredLayout,
    ) -> Result<PutLayout, StorageError>;
    /// Turns a layout media into one file of the same stem and returns its key, where a layout
    /// is not meant to last (object stores); `None` where it is (the local disk).
    fn assemble(&self, _key: &str) -> Result<Option<String>, StorageError> {
        Ok(None)
    }
    /// A media's files, open and mapped, where they are local files (what serving its ranges
    /// with `sendfile` needs), kept open for the next range; `None` for other stores.
    fn mapped_media(&self, _key: &str) -> Result<Option<Arc<MappedMedia>>, StorageError> {
        Ok(None)
    }
    /// The upload whose own bytes a layout media holds, if it holds some (object stores).
    fn layout_upload(&self, _key: &str) -> Result<Option<UploadId>, StorageError> {
        Ok(None)
    }
    /// Whether layouts are assembled into one file after the stop ([`MediaStore::assemble`]).
    fn assembles_layouts(&self) -> bool {
        false
    }
    /// Deletes a media no row names (a stop that failed or crashed before its commit): a
    /// layout's upload bytes stay with their upload, which may still be recording.
    fn discard(&self, key: &str) -> Result<(), StorageError> {
        self.delete(key)
    }
    /// Deletes a media (committed or staged) with what it holds (a layout's head, data and, on
    /// an object store, its upload's objects); a missing one is not an error.
    fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Opens a committed media for reading (a layout as one byte sequence); `None` if it is
    /// missing.
    fn open(&self, key: &str) -> Result<Option<Box<dyn ReadSeek>>, StorageError>;
    /// Where a committed media is, for serving with Range support.
    fn source(&self, key: &str) -> MediaSource;
    /// Names of the committed media: a layout's companions (`layout.rs`) are not listed while
    /// their layout is there, and are, as orphans, once it is not.
    fn list(&self) -> Result<Vec<String>, StorageError>;
    /// Names of the media left half-written in staging.
    fn list_staged(&self) -> Result<Vec<String>, StorageError>;
    /// When a media (committed or staged) was last written; `None` if it is missing.
    fn modified(&self, key: &str) -> Result<Option<SystemTime>, StorageError>;
    /// Checks that the media's storage answers (for `/healthz`).
    fn check(&self) -> Result<(), StorageError>;
}

/// The two stores of one backend.
#[derive(Clone)]
pub struct Stores {
    /// Recordings in progress.
    pub uploads: Arc<dyn UploadStore>,
    /// Finished media and posters.
    pub media: Arc<dyn MediaStore>,
    /// The requests made to the object store, when the backend is one.
    pub requests: Option<Arc<RequestCounts>>,
}

impl Stores {
    /// Both stores of `backend`.
    pub fn of<B: UploadStore + MediaStore>(backend: B) -> Self {
        let backend = Arc::new(backend);
        Self {
            uploads: Arc::clone(&backend) as Arc<dyn UploadStore>,
            media: backend,
            requests: None,
        }
    }
}

/// Hides the companions of the layouts listed among `names` (they are part of their media).
pub fn without_companions(mut names: Vec<String>) -> Vec<String> {
    let listed: std::collections::HashSet<String> = names.iter().cloned().collect();
    names.retain(|name| layout::companion_of(name).is_none_or(|key| !listed.contains(&key)));
    names
}

/// Whether a name has the shape of the keys the server generates (32 hex digits, then maybe
/// an extension), so that a file so named may be deleted as an orphan.
pub fn is_storage_key(name: &str) -> bool {
    let (stem, extension) = name.split_once('.').unwrap_or((name, "a"));
    stem.len() == 32
        && stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && !extension.is_empty()
        && extension.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Opens the storage named by a URL: `file:///dir` on the local disk, `s3://bucket/prefix`
/// (and `gs://`, `az://` when built with the `gcs` / `azure` features) on an object store
/// configured from the environment. Object stores need a running Tokio runtime.
pub fn open(url: &str, settings: &StorageSettings) -> Result<Stores, StorageError> {
    match url.strip_prefix("file://") {
        Some(path) if !path.is_empty() => Ok(Stores::of(LocalStorage::open(PathBuf::from(path))?)),
        Some(_) => Err(StorageError::UnsupportedUrl(url.to_owned())),
        None => {
            let storage = ObjectStorage::open(url, settings)?;
            let requests = Some(storage.requests());
            Ok(Stores {
                requests,
                ..Stores::of(storage)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_generated_names_are_storage_keys() {
        let stem = "0123456789abcdef0123456789abcdef";
        for good in [
            stem.to_owned(),
            format!("{stem}.webm"),
            format!("{stem}.jpg"),
        ] {
            assert!(is_storage_key(&good), "{good}");
        }
        for bad in [
            "README.txt",
            "",
            &format!("{stem}."),
            &format!("{stem}.a.b"),
            "../x",
        ] {
            assert!(!is_storage_key(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_object_store_schemes_built_in_are_recognised() {
        let unsupported = |url: &str| {
            matches!(
                open(url, &StorageSettings::default()),
                Err(StorageError::UnsupportedUrl(_))
            )
        };
        assert!(!unsupported("s3://bucket/prefix"));
        assert_eq!(unsupported("gs://bucket/prefix"), !cfg!(feature = "gcs"));
        assert_eq!(
            unsupported("az://account/container"),
            !cfg!(feature = "azure")
        );
        assert!(unsupported("s3:///prefix"), "a bucket is required");
    }

    #[test]
    fn an_unknown_scheme_is_refused_with_a_clear_error() {
        for url in ["ftp://host/dir", "file://", "/just/a/path"] {
            let err = open(url, &StorageSettings::default())
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.starts_with("unsupported storage URL")),
                "{url}: {err:?}"
            );
        }
    }
}
