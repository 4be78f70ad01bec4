//! Where bytes live: uploads in progress and finished media, behind a small trait.
//!
//! The trait is synchronous on purpose: file I/O is blocking anyway, and callers run it in
//! `spawn_blocking` (`AppState::with_storage`), batching a PATCH body into large writes. The
//! object-store backend blocks on the runtime from those same blocking threads.

mod local;
mod object;
pub mod range;

use std::{
    io::{self, Read, Seek, Write},
    path::PathBuf,
    sync::Arc,
    time::SystemTime,
};

pub use local::LocalStorage;
pub use object::ObjectStorage;

use crate::domain::UploadId;

/// Default size of the objects an upload's small pieces are compacted into, and of the parts
/// of a finalized media's multipart upload (S3's minimum part size).
pub const DEFAULT_PART_SIZE: u64 = 5 << 20;

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
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}

/// Appends to one upload; bytes are durable only after [`UploadWriter::sync`].
pub trait UploadWriter: Send {
    /// Appends bytes at the current end.
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
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
    /// A local file: served with the file fast paths.
    Local(PathBuf),
    /// An object: served with ranged gets.
    Object {
        /// The store.
        store: Arc<dyn object_store::ObjectStore>,
        /// The object's key.
        location: object_store::path::Path,
    },
}

/// A place for uploads and media.
pub trait Storage: Send + Sync + 'static {
    /// Prepares a new, empty upload.
    fn create_upload(&self, id: &UploadId) -> Result<(), StorageError>;
    /// The number of contiguous bytes held for an upload, `None` if it has no file.
    fn upload_len(&self, id: &UploadId) -> Result<Option<u64>, StorageError>;
    /// Cuts an upload back to `len` bytes durably, dropping bytes never acknowledged.
    fn truncate_upload(&self, id: &UploadId, len: u64) -> Result<(), StorageError>;
    /// Opens an upload for appending at `offset` (its current, committed length).
    fn upload_writer(
        &self,
        id: &UploadId,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>, StorageError>;
    /// Whether committing the bytes `before..after` of an upload makes
    /// [`Storage::compact_upload`] worth running (never, where an upload is one file).
    fn compaction_due(&self, _before: u64, _after: u64) -> bool {
        false
    }
    /// Merges an upload's small pieces that lie wholly below `committed` into larger objects.
    ///
    /// Safe beside a writer appending at the committed offset (and cutting back bytes past
    /// it) and beside readers; not beside [`Storage::delete_upload`], which callers exclude
    /// (`compaction.rs`).
    fn compact_upload(&self, _id: &UploadId, _committed: u64) -> Result<(), StorageError> {
        Ok(())
    }
    /// Opens an upload for reading; only bytes below the committed offset are meaningful.
    fn open_upload(&self, id: &UploadId) -> Result<Box<dyn ReadSeek>, StorageError>;
    /// Deletes an upload's bytes; a missing upload is not an error.
    fn delete_upload(&self, id: &UploadId) -> Result<(), StorageError>;
    /// Starts writing a media under `key`; dropped without a commit, it leaves nothing.
    fn media_writer(&self, key: &str) -> Result<Box<dyn MediaWriter>, StorageError>;
    /// Stores a small file (a poster) durably under `key`.
    fn write_media(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Deletes a media (committed or staged); a missing one is not an error.
    fn delete_media(&self, key: &str) -> Result<(), StorageError>;
    /// Opens a committed media for reading; `None` if it is missing.
    fn open_media(&self, key: &str) -> Result<Option<Box<dyn ReadSeek>>, StorageError>;
    /// Where a committed media is, for serving with Range support.
    fn media_source(&self, key: &str) -> MediaSource;
    /// Names of the committed media (recordings and posters).
    fn list_media(&self) -> Result<Vec<String>, StorageError>;
    /// Names of the media left half-written in staging.
    fn list_staged(&self) -> Result<Vec<String>, StorageError>;
    /// Names of the uploads held, as `<upload id>.part` (anything else is foreign).
    fn list_upload_files(&self) -> Result<Vec<String>, StorageError>;
    /// When a media (committed or staged) was last written; `None` if it is missing.
    fn media_modified(&self, key: &str) -> Result<Option<SystemTime>, StorageError>;
    /// When an upload last received bytes; `None` if it holds none.
    fn upload_modified(&self, id: &UploadId) -> Result<Option<SystemTime>, StorageError>;
    /// Checks that the storage answers (for `/healthz`).
    fn check(&self) -> Result<(), StorageError>;
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
pub fn open(url: &str, part_size: u64) -> Result<Box<dyn Storage>, StorageError> {
    match url.strip_prefix("file://") {
        Some(path) if !path.is_empty() => Ok(Box::new(LocalStorage::open(PathBuf::from(path))?)),
        Some(_) => Err(StorageError::UnsupportedUrl(url.to_owned())),
        None => Ok(Box::new(ObjectStorage::open(url, part_size)?)),
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
                open(url, DEFAULT_PART_SIZE),
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
            let err = open(url, DEFAULT_PART_SIZE).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.starts_with("unsupported storage URL")),
                "{url}: {err:?}"
            );
        }
    }
}
