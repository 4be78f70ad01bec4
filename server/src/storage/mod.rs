//! Where bytes live: uploads in progress and finished media, behind a small trait.
//!
//! The trait is synchronous on purpose: file I/O is blocking anyway, and callers run it in
//! `spawn_blocking`, batching a PATCH body into large writes.

mod local;
pub mod range;

use std::{fs::File, io, path::PathBuf};

pub use local::LocalStorage;

use crate::domain::UploadId;

/// A storage failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage URL names a backend this build does not have.
    #[error("unsupported storage URL {0:?}: only file:// is supported")]
    UnsupportedUrl(String),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// Appends to one upload; bytes are durable only after [`UploadWriter::sync`].
pub trait UploadWriter: Send {
    /// Appends bytes at the current end.
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
    /// Flushes the appended bytes to stable storage (`sync_data`).
    fn sync(&mut self) -> Result<(), StorageError>;
}

/// A place for uploads and media.
pub trait Storage: Send + Sync + 'static {
    /// Creates the empty file of a new upload.
    fn create_upload(&self, id: &UploadId) -> Result<(), StorageError>;
    /// The number of bytes in an upload's file, `None` if it has no file.
    fn upload_len(&self, id: &UploadId) -> Result<Option<u64>, StorageError>;
    /// Cuts an upload back to `len` bytes and syncs, dropping bytes never acknowledged.
    fn truncate_upload(&self, id: &UploadId, len: u64) -> Result<(), StorageError>;
    /// Opens an upload for appending at `offset` (its current, committed length).
    fn upload_writer(
        &self,
        id: &UploadId,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>, StorageError>;
    /// Opens an upload's file for reading; only bytes below the committed offset are meaningful.
    fn open_upload(&self, id: &UploadId) -> Result<File, StorageError>;
    /// The local file holding an upload's bytes, for hashing and finalizing.
    fn upload_path(&self, id: &UploadId) -> PathBuf;
    /// Deletes an upload's file; a missing file is not an error.
    fn delete_upload(&self, id: &UploadId) -> Result<(), StorageError>;
    /// A fresh local path where a finalizer may write a media file before it is committed.
    fn media_staging_path(&self, key: &str) -> PathBuf;
    /// Stores a small file (a poster) durably under `key`, through staging like a media file.
    fn write_media(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Makes a staged media file durable under `key` (fsync, rename, fsync of the directory).
    fn commit_media(&self, key: &str) -> Result<(), StorageError>;
    /// Deletes a media file (committed or staged); a missing file is not an error.
    fn delete_media(&self, key: &str) -> Result<(), StorageError>;
    /// The local file of a committed media, for serving with Range support.
    fn media_path(&self, key: &str) -> PathBuf;
    /// Names of the committed media files (recordings and posters).
    fn list_media(&self) -> Result<Vec<String>, StorageError>;
    /// Names of the files left in staging.
    fn list_staged(&self) -> Result<Vec<String>, StorageError>;
    /// Names of the files in the uploads area (`<upload id>.part`).
    fn list_upload_files(&self) -> Result<Vec<String>, StorageError>;
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

/// Opens the storage named by a URL.
pub fn open(url: &str) -> Result<Box<dyn Storage>, StorageError> {
    match url.strip_prefix("file://") {
        Some(path) if !path.is_empty() => Ok(Box::new(LocalStorage::open(PathBuf::from(path))?)),
        _ => Err(StorageError::UnsupportedUrl(url.to_owned())),
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

    #[test]
    fn an_s3_url_is_refused_with_a_clear_error() {
        let err = open("s3://bucket/prefix").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unsupported storage URL \"s3://bucket/prefix\": only file:// is supported")
        );
    }
}
