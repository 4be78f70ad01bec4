use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::{MediaSource, MediaWriter, ReadSeek, Storage, StorageError, UploadWriter};
use crate::domain::UploadId;

/// Files on the local disk: `uploads/<id>.part`, `files/<key>`, and `staging/` for media being written.
#[derive(Debug)]
pub struct LocalStorage {
    uploads: PathBuf,
    files: PathBuf,
    staging: PathBuf,
}

fn io_err(context: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> StorageError {
    move |source| StorageError::Io {
        context: context(),
        source,
    }
}

/// Fsyncs a directory so a rename or create inside it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(|| format!("syncing directory {}", dir.display())))
}

/// The names of the entries of a directory, sorted.
fn list(dir: &Path) -> Result<Vec<String>, StorageError> {
    let context = || format!("listing {}", dir.display());
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(context))? {
        let entry = entry.map_err(io_err(context))?;
        // A name that is not UTF-8 was not written by us; callers report what they cannot name.
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// A file's modification time; `None` if it is missing.
fn modified(path: &Path) -> Result<Option<SystemTime>, StorageError> {
    match fs::metadata(path).and_then(|meta| meta.modified()) {
        Ok(time) => Ok(Some(time)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_err(|| format!("reading the time of {}", path.display()))(err)),
    }
}

impl LocalStorage {
    /// Opens (creating if needed) a storage rooted at `root`.
    pub fn open(root: PathBuf) -> Result<Self, StorageError> {
        let storage = Self {
            uploads: root.join("uploads"),
            files: root.join("files"),
            staging: root.join("staging"),
        };
        for dir in [&storage.uploads, &storage.files, &storage.staging] {
            fs::create_dir_all(dir).map_err(io_err(|| format!("creating {}", dir.display())))?;
        }
        Ok(storage)
    }

    fn upload_path(&self, id: &UploadId) -> PathBuf {
        self.uploads.join(format!("{id}.part"))
    }

    fn media_staging_path(&self, key: &str) -> PathBuf {
        Self::key_path(&self.staging, key)
    }

    fn media_path(&self, key: &str) -> PathBuf {
        Self::key_path(&self.files, key)
    }

    /// Makes a staged media file durable under `key` (fsync, rename, fsync of the directory).
    fn commit_media(staged: &Path, target: &Path, files: &Path) -> Result<(), StorageError> {
        File::open(staged)
            .and_then(|f| f.sync_all())
            .map_err(io_err(|| format!("syncing {}", staged.display())))?;
        crate::fault::point("before_rename");
        fs::rename(staged, target).map_err(io_err(|| {
            format!("moving {} to {}", staged.display(), target.display())
        }))?;
        sync_dir(files)?;
        crate::fault::point("after_rename");
        Ok(())
    }

    /// Refuses keys that could escape the storage directory; keys are server-generated.
    fn key_path(dir: &Path, key: &str) -> PathBuf {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
        dir.join(key.replace(['/', '\\'], "_"))
    }
}

struct LocalUploadWriter {
    file: File,
    path: PathBuf,
}

impl UploadWriter for LocalUploadWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let path = &self.path;
        self.file
            .write_all(bytes)
            .map_err(io_err(|| format!("appending to {}", path.display())))
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let path = &self.path;
        self.file
            .sync_data()
            .map_err(io_err(|| format!("syncing {}", path.display())))
    }
}

/// A media file being written in staging; removed if dropped before its commit.
struct LocalMediaWriter {
    file: Option<io::BufWriter<File>>,
    staged: PathBuf,
    target: PathBuf,
    files: PathBuf,
}

impl Write for LocalMediaWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("media writer closed"))?
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl MediaWriter for LocalMediaWriter {
    fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        let staged = self.staged.clone();
        if let Some(file) = self.file.take() {
            file.into_inner()
                .map_err(|err| err.into_error())
                .map_err(io_err(|| format!("writing {}", staged.display())))?;
        }
        LocalStorage::commit_media(&staged, &self.target, &self.files)
    }
}

impl Drop for LocalMediaWriter {
    fn drop(&mut self) {
        // Not committed (or the commit failed): nothing must stay behind in staging.
        let _ = fs::remove_file(&self.staged);
    }
}

impl Storage for LocalStorage {
    fn create_upload(&self, id: &UploadId) -> Result<(), StorageError> {
        let path = self.upload_path(id);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io_err(|| format!("creating {}", path.display())))?;
        sync_dir(&self.uploads)
    }

    fn upload_len(&self, id: &UploadId) -> Result<Option<u64>, StorageError> {
        let path = self.upload_path(id);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_err(|| format!("reading size of {}", path.display()))(
                err,
            )),
        }
    }

    fn truncate_upload(&self, id: &UploadId, len: u64) -> Result<(), StorageError> {
        let path = self.upload_path(id);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| {
                f.set_len(len)?;
                f.sync_all()
            })
            .map_err(io_err(|| format!("truncating {} to {len}", path.display())))
    }

    fn upload_writer(
        &self,
        id: &UploadId,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>, StorageError> {
        let path = self.upload_path(id);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(|| format!("opening {}", path.display())))?;
        // The caller reconciled the file with the committed offset; check rather than trust.
        let len = file
            .metadata()
            .map_err(io_err(|| format!("reading size of {}", path.display())))?
            .len();
        if len != offset {
            return Err(StorageError::Io {
                context: format!("{} holds {len} bytes, expected {offset}", path.display()),
                source: io::Error::other("upload file and offset disagree"),
            });
        }
        Ok(Box::new(LocalUploadWriter { file, path }))
    }

    fn open_upload(&self, id: &UploadId) -> Result<Box<dyn ReadSeek>, StorageError> {
        let path = self.upload_path(id);
        let file = File::open(&path).map_err(io_err(|| format!("opening {}", path.display())))?;
        Ok(Box::new(file))
    }

    fn delete_upload(&self, id: &UploadId) -> Result<(), StorageError> {
        let path = self.upload_path(id);
        match fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                Err(io_err(|| format!("deleting {}", path.display()))(err))
            }
            _ => Ok(()),
        }
    }

    fn media_writer(&self, key: &str) -> Result<Box<dyn MediaWriter>, StorageError> {
        let staged = self.media_staging_path(key);
        let file =
            File::create(&staged).map_err(io_err(|| format!("creating {}", staged.display())))?;
        Ok(Box::new(LocalMediaWriter {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            staged,
            target: self.media_path(key),
            files: self.files.clone(),
        }))
    }

    fn write_media(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let staged = self.media_staging_path(key);
        fs::write(&staged, bytes).map_err(io_err(|| format!("writing {}", staged.display())))?;
        let committed = Self::commit_media(&staged, &self.media_path(key), &self.files);
        if committed.is_err() {
            let _ = fs::remove_file(&staged);
        }
        committed
    }

    fn delete_media(&self, key: &str) -> Result<(), StorageError> {
        for path in [self.media_staging_path(key), self.media_path(key)] {
            match fs::remove_file(&path) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err(|| format!("deleting {}", path.display()))(err));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn open_media(&self, key: &str) -> Result<Option<Box<dyn ReadSeek>>, StorageError> {
        let path = self.media_path(key);
        match File::open(&path) {
            Ok(file) => Ok(Some(Box::new(file))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_err(|| format!("opening {}", path.display()))(err)),
        }
    }

    fn media_source(&self, key: &str) -> MediaSource {
        MediaSource::Local(self.media_path(key))
    }

    fn list_media(&self) -> Result<Vec<String>, StorageError> {
        list(&self.files)
    }

    fn list_staged(&self) -> Result<Vec<String>, StorageError> {
        list(&self.staging)
    }

    fn list_upload_files(&self) -> Result<Vec<String>, StorageError> {
        list(&self.uploads)
    }

    fn media_modified(&self, key: &str) -> Result<Option<SystemTime>, StorageError> {
        let paths = [self.media_path(key), self.media_staging_path(key)];
        let times = paths
            .iter()
            .map(|path| modified(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(times.into_iter().flatten().max())
    }

    fn upload_modified(&self, id: &UploadId) -> Result<Option<SystemTime>, StorageError> {
        modified(&self.upload_path(id))
    }

    fn check(&self) -> Result<(), StorageError> {
        for dir in [&self.uploads, &self.files, &self.staging] {
            let meta =
                fs::metadata(dir).map_err(io_err(|| format!("checking {}", dir.display())))?;
            if !meta.is_dir() {
                return Err(StorageError::Io {
                    context: format!("checking {}", dir.display()),
                    source: io::Error::other("not a directory"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_bytes_are_read_back_and_truncation_drops_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::open(dir.path().to_path_buf()).unwrap();
        let id = UploadId::generate();
        storage.create_upload(&id).unwrap();
        let mut writer = storage.upload_writer(&id, 0).unwrap();
        writer.write(b"hello ").unwrap();
        writer.write(b"world").unwrap();
        writer.sync().unwrap();
        assert_eq!(fs::read(storage.upload_path(&id)).unwrap(), b"hello world");
        storage.truncate_upload(&id, 5).unwrap();
        assert_eq!(storage.upload_len(&id).unwrap(), Some(5));
        assert!(storage.upload_writer(&id, 11).is_err());
    }

    #[test]
    fn a_committed_media_moves_out_of_staging() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::open(dir.path().to_path_buf()).unwrap();
        let mut writer = storage.media_writer("abc.webm").unwrap();
        writer.write_all(b"video").unwrap();
        assert!(storage.media_staging_path("abc.webm").exists());
        writer.commit().unwrap();
        assert!(!storage.media_staging_path("abc.webm").exists());
        assert_eq!(fs::read(storage.media_path("abc.webm")).unwrap(), b"video");
        storage.delete_media("abc.webm").unwrap();
        assert!(!storage.media_path("abc.webm").exists());
    }

    #[test]
    fn a_media_writer_dropped_without_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::open(dir.path().to_path_buf()).unwrap();
        let mut writer = storage.media_writer("abc.webm").unwrap();
        writer.write_all(b"half").unwrap();
        drop(writer);
        assert!(storage.list_staged().unwrap().is_empty());
        assert!(storage.open_media("abc.webm").unwrap().is_none());
    }
}
