//! Uploads and media on the local disk: `uploads/<id>.part` appended and `sync_data`-ed,
//! `files/<key>` written in `staging/` first, then fsynced, renamed and the directory fsynced.
//!
//! A layout media (`layout.rs`) is `files/<stem>.layout`, `files/<stem>.head` and
//! `files/<stem>.data`, a hard link to the upload's file made at the stop: no byte of the
//! upload is copied, and the upload's own name can be deleted as for any ended upload.

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io::{self, IoSlice, Read, Write},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;

use super::{
    layout::{self, LayoutReader, StoredLayout, DATA_EXTENSION, HEAD_EXTENSION},
    mapped::MappedFile,
    without_companions, MappedMedia, MediaSource, MediaStore, MediaWriter, Piece, PreviousWriter,
    PutLayout, ReadSeek, Source, StorageError, UploadStore, UploadWriter,
};
use crate::domain::UploadId;

/// Files on the local disk: `uploads/<id>.part`, `files/<key>`, and `staging/` for media being written.
#[derive(Debug)]
pub struct LocalStorage {
    uploads: PathBuf,
    files: PathBuf,
    staging: PathBuf,
    /// Media mapped lately, by key: a range of one then costs no open, no read and no `mmap`.
    mapped: Mutex<HashMap<String, OpenMedia>>,
    /// How long an open media is served before its file is looked for again.
    recheck_after: Duration,
}

/// A media kept open and mapped, and when its file was last seen on disk.
#[derive(Debug)]
struct OpenMedia {
    files: Arc<MappedMedia>,
    seen: Instant,
}

/// Media kept open at most; beyond, the map starts over.
const OPEN_MEDIA: usize = 1024;

/// An admin command (another process) may delete a media this server holds open: its open
/// files would be served for good. Its file (a layout's: the layout file) is looked for once a
/// second at most (a stat, not an open and a read), so a deleted media stops being served within
/// a second.
const RECHECK_OPEN_AFTER: Duration = Duration::from_secs(1);

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

/// Checks that each directory exists and is a directory.
fn check_dirs(dirs: &[&Path]) -> Result<(), StorageError> {
    for dir in dirs {
        let meta = fs::metadata(dir).map_err(io_err(|| format!("checking {}", dir.display())))?;
        if !meta.is_dir() {
            return Err(StorageError::Io {
                context: format!("checking {}", dir.display()),
                source: io::Error::other("not a directory"),
            });
        }
    }
    Ok(())
}

impl LocalStorage {
    /// Opens (creating if needed) a storage rooted at `root`.
    pub fn open(root: PathBuf) -> Result<Self, StorageError> {
        let storage = Self {
            uploads: root.join("uploads"),
            files: root.join("files"),
            staging: root.join("staging"),
            mapped: Mutex::default(),
            recheck_after: RECHECK_OPEN_AFTER,
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

    /// Writes `bytes` to `files/<name>` through staging (fsync, rename), without the fault points
    /// of a media's own commit; the caller syncs the directory.
    fn put_file(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let staged = self.media_staging_path(name);
        let target = self.media_path(name);
        let written = File::create(&staged)
            .and_then(|mut file| {
                file.write_all(bytes)?;
                file.sync_all()
            })
            .and_then(|()| fs::rename(&staged, &target));
        if written.is_err() {
            let _ = fs::remove_file(&staged);
        }
        written.map_err(io_err(|| format!("writing {}", target.display())))
    }

    /// Makes `files/<name>` a hard link to the upload's file (a copy where the filesystem has
    /// no hard links).
    fn link_upload(&self, id: &UploadId, name: &str) -> Result<(), StorageError> {
        let (upload, target) = (self.upload_path(id), self.media_path(name));
        let context = || format!("linking {} to {}", upload.display(), target.display());
        match fs::remove_file(&target) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(io_err(context)(err));
            }
            _ => {}
        }
        if let Err(err) = fs::hard_link(&upload, &target) {
            tracing::warn!(error = %err, "no hard link for a layout's data: copying the upload");
            let staged = self.media_staging_path(name);
            let copied = fs::copy(&upload, &staged)
                .and_then(|_| File::open(&staged)?.sync_all())
                .and_then(|()| fs::rename(&staged, &target));
            if copied.is_err() {
                let _ = fs::remove_file(&staged);
            }
            copied.map_err(io_err(context))?;
        }
        Ok(())
    }

    fn open_media(&self) -> std::sync::MutexGuard<'_, HashMap<String, OpenMedia>> {
        self.mapped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens and maps a media's files; `None` if it is missing.
    fn map_media(&self, key: &str) -> Result<Option<MappedMedia>, StorageError> {
        let map = |path: &Path| {
            File::open(path).and_then(|file| {
                let len = file.metadata()?.len();
                MappedFile::new(Arc::new(file), len).map(Arc::new)
            })
        };
        if !layout::is_layout(key) {
            // A plain file (a poster, a refinalized recording): one piece, all its own bytes.
            let path = self.media_path(key);
            let file = match map(&path) {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(io_err(|| format!("opening {}", path.display()))(err)),
            };
            let total = file.len();
            return Ok(Some(MappedMedia {
                pieces: vec![Piece {
                    source: Source::Upload,
                    offset: 0,
                    len: total,
                }],
                head: Arc::clone(&file),
                data: file,
                total,
                modified: modified(&path)?,
            }));
        }
        let Some(stored) = self.read_layout(key)? else {
            return Ok(None);
        };
        let stem = layout::stem(key);
        let open = |extension: &str| {
            let path = self.media_path(&format!("{stem}.{extension}"));
            map(&path).map_err(io_err(|| format!("opening {}", path.display())))
        };
        let (head, data) = (open(HEAD_EXTENSION)?, open(DATA_EXTENSION)?);
        Ok(Some(MappedMedia {
            total: stored.len(),
            pieces: stored.pieces,
            head,
            data,
            modified: modified(&self.media_path(key))?,
        }))
    }

    /// Reads a layout file.
    fn read_layout(&self, key: &str) -> Result<Option<StoredLayout>, StorageError> {
        let path = self.media_path(key);
        let bytes = match File::open(&path) {
            Ok(file) => {
                let mut bytes = Vec::new();
                file.take(layout::MAX_LAYOUT_BYTES)
                    .read_to_end(&mut bytes)
                    .map_err(io_err(|| format!("reading {}", path.display())))?;
                bytes
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_err(|| format!("opening {}", path.display()))(err)),
        };
        StoredLayout::parse(&bytes)
            .map(Some)
            .map_err(|why| layout::unreadable(key, why))
    }

    /// Refuses keys that could escape the storage directory; keys are server-generated.
    fn key_path(dir: &Path, key: &str) -> PathBuf {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
        dir.join(key.replace(['/', '\\'], "_"))
    }
}

/// The end of an upload kept in the page cache once synced: what its live's viewers are about
/// to read (25 s at 2.5 Mbit/s).
const CACHED_TAIL: u64 = 8 << 20;

struct LocalUploadWriter {
    file: File,
    path: PathBuf,
    /// The file's length when this writer opened it.
    opened_at: u64,
    /// The file's length: where the next bytes go.
    end: u64,
}

impl LocalUploadWriter {
    /// Appends `slices` in order with as few `writev`s as the kernel allows, then starts the
    /// disk writing them back without waiting: the sync before the acknowledgment then waits
    /// only for what arrived last, and the disk works while the body is still coming in.
    fn append(&mut self, mut slices: &mut [IoSlice<'_>]) -> Result<(), StorageError> {
        let path = &self.path;
        let context = || format!("appending to {}", path.display());
        let start = self.end;
        while !slices.is_empty() {
            let written = self.file.write_vectored(slices).map_err(io_err(context))?;
            if written == 0 {
                return Err(io_err(context)(io::ErrorKind::WriteZero.into()));
            }
            self.end += written as u64;
            IoSlice::advance_slices(&mut slices, written);
        }
        if let (Ok(offset), Ok(len)) = (
            libc::off64_t::try_from(start),
            libc::off64_t::try_from(self.end - start),
        ) {
            // SAFETY: a plain syscall on an open descriptor; a failure only forgoes the head
            // start (the sync still writes everything).
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    offset,
                    len,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        Ok(())
    }
}

impl UploadWriter for LocalUploadWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.append(&mut [IoSlice::new(bytes)])
    }

    fn write_chunks(&mut self, chunks: &[Bytes]) -> Result<(), StorageError> {
        let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
        self.append(&mut slices)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let path = &self.path;
        self.file
            .sync_data()
            .map_err(io_err(|| format!("syncing {}", path.display())))?;
        self.release_synced();
        Ok(())
    }
}

impl LocalUploadWriter {
    /// Drops the synced bytes behind the tail from the page cache (each writer the ones its
    /// predecessor kept). A recording is read again at its live tail, or much later: kept
    /// cached, every byte ever ingested would pile up in memory and push out what is read
    /// (the media being served), and each new page costs a fresh allocation (bench/findings.md,
    /// finding 11). The pages are clean after the sync, so they go at once.
    fn release_synced(&self) {
        let (from, to) = (
            self.opened_at.saturating_sub(CACHED_TAIL),
            self.end.saturating_sub(CACHED_TAIL),
        );
        if let (true, Ok(offset), Ok(len)) = (
            from < to,
            libc::off64_t::try_from(from),
            libc::off64_t::try_from(to - from),
        ) {
            // SAFETY: a plain syscall on an open descriptor; it is advice, a failure only
            // leaves the pages cached.
            unsafe {
                libc::posix_fadvise(
                    self.file.as_raw_fd(),
                    offset,
                    len,
                    libc::POSIX_FADV_DONTNEED,
                );
            }
        }
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

impl UploadStore for LocalStorage {
    fn create(&self, id: &UploadId) -> Result<(), StorageError> {
        let path = self.upload_path(id);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io_err(|| format!("creating {}", path.display())))?;
        sync_dir(&self.uploads)
    }

    fn len(&self, id: &UploadId) -> Result<Option<u64>, StorageError> {
        let path = self.upload_path(id);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_err(|| format!("reading size of {}", path.display()))(
                err,
            )),
        }
    }

    fn truncate(&self, id: &UploadId, len: u64) -> Result<(), StorageError> {
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

    fn writer(&self, id: &UploadId, offset: u64) -> Result<Box<dyn UploadWriter>, StorageError> {
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
        Ok(Box::new(LocalUploadWriter {
            file,
            path,
            opened_at: offset,
            end: offset,
        }))
    }

    fn reopen(
        &self,
        id: &UploadId,
        committed: u64,
        _previous: PreviousWriter,
    ) -> Result<(u64, Box<dyn UploadWriter>), StorageError> {
        // A local disk has one node, always the writer. One open and one stat where the default takes a stat, an open and another stat: a
        // PATCH pays for this on every request.
        let path = self.upload_path(id);
        let opened = OpenOptions::new().append(true).open(&path);
        let file = match opened {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                UploadStore::create(self, id)?;
                return Ok((0, UploadStore::writer(self, id, 0)?));
            }
            Err(err) => return Err(io_err(|| format!("opening {}", path.display()))(err)),
        };
        let mut len = file
            .metadata()
            .map_err(io_err(|| format!("reading size of {}", path.display())))?
            .len();
        if len > committed {
            file.set_len(committed)
                .and_then(|()| file.sync_all())
                .map_err(io_err(|| {
                    format!("truncating {} to {committed}", path.display())
                }))?;
            len = committed;
        }
        Ok((
            len,
            Box::new(LocalUploadWriter {
                file,
                path,
                opened_at: len,
                end: len,
            }),
        ))
    }

    fn open(&self, id: &UploadId) -> Result<Box<dyn ReadSeek>, StorageError> {
        let path = self.upload_path(id);
        let file = File::open(&path).map_err(io_err(|| format!("opening {}", path.display())))?;
        Ok(Box::new(file))
    }

    fn delete(&self, id: &UploadId) -> Result<(), StorageError> {
        let path = self.upload_path(id);
        match fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                Err(io_err(|| format!("deleting {}", path.display()))(err))
            }
            _ => Ok(()),
        }
    }

    fn list(&self) -> Result<Vec<String>, StorageError> {
        list(&self.uploads)
    }

    fn modified(&self, id: &UploadId) -> Result<Option<SystemTime>, StorageError> {
        modified(&self.upload_path(id))
    }

    fn check(&self) -> Result<(), StorageError> {
        check_dirs(&[&self.uploads])
    }
}

impl MediaStore for LocalStorage {
    fn writer(&self, key: &str) -> Result<Box<dyn MediaWriter>, StorageError> {
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

    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let staged = self.media_staging_path(key);
        fs::write(&staged, bytes).map_err(io_err(|| format!("writing {}", staged.display())))?;
        let committed = Self::commit_media(&staged, &self.media_path(key), &self.files);
        if committed.is_err() {
            let _ = fs::remove_file(&staged);
        }
        committed
    }

    fn put_layout(
        &self,
        stem: &str,
        upload: &UploadId,
        head: &[u8],
        layout: &StoredLayout,
    ) -> Result<PutLayout, StorageError> {
        let key = format!("{stem}.{}", layout::LAYOUT_EXTENSION);
        let stored = (|| {
            self.put_file(&format!("{stem}.{HEAD_EXTENSION}"), head)?;
            self.link_upload(upload, &format!("{stem}.{DATA_EXTENSION}"))?;
            // Its companions reach the disk before the layout names them.
            sync_dir(&self.files)?;
            let staged = self.media_staging_path(&key);
            fs::write(&staged, layout.encode())
                .map_err(io_err(|| format!("writing {}", staged.display())))?;
            Self::commit_media(&staged, &self.media_path(&key), &self.files)
        })();
        if let Err(err) = stored {
            let _ = MediaStore::delete(self, &key);
            return Err(err);
        }
        Ok(PutLayout {
            key,
            holds_upload: false,
        })
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.open_media().remove(key);
        // The layout first: once it is gone, its companions are orphans, never a broken media.
        let companions = layout::companions(key);
        let paths = [self.media_staging_path(key), self.media_path(key)]
            .into_iter()
            .chain(companions.iter().map(|name| self.media_path(name)));
        for path in paths {
            match fs::remove_file(&path) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err(|| format!("deleting {}", path.display()))(err));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn open(&self, key: &str) -> Result<Option<Box<dyn ReadSeek>>, StorageError> {
        if layout::is_layout(key) {
            let Some(stored) = self.read_layout(key)? else {
                return Ok(None);
            };
            let stem = layout::stem(key);
            let open = |extension: &str| {
                let path = self.media_path(&format!("{stem}.{extension}"));
                File::open(&path).map_err(io_err(|| format!("opening {}", path.display())))
            };
            let (head, data) = (open(HEAD_EXTENSION)?, open(DATA_EXTENSION)?);
            return Ok(Some(Box::new(LayoutReader::new(
                &stored,
                Box::new(head),
                Box::new(data),
            ))));
        }
        let path = self.media_path(key);
        match File::open(&path) {
            Ok(file) => Ok(Some(Box::new(file))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_err(|| format!("opening {}", path.display()))(err)),
        }
    }

    fn mapped_media(&self, key: &str) -> Result<Option<Arc<MappedMedia>>, StorageError> {
        let cached = self.open_media().get(key).map(|open| {
            (
                Arc::clone(&open.files),
                open.seen.elapsed() < self.recheck_after,
            )
        });
        match cached {
            Some((files, true)) => return Ok(Some(files)),
            Some((files, false)) => {
                let path = self.media_path(key);
                return match fs::symlink_metadata(&path) {
                    Ok(_) => {
                        if let Some(open) = self.open_media().get_mut(key) {
                            open.seen = Instant::now();
                        }
                        Ok(Some(files))
                    }
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {
                        self.open_media().remove(key);
                        Ok(None)
                    }
                    Err(err) => Err(io_err(|| format!("looking for {}", path.display()))(err)),
                };
            }
            None => {}
        }
        let Some(files) = self.map_media(key)? else {
            return Ok(None);
        };
        let files = Arc::new(files);
        let mut open = self.open_media();
        if open.len() >= OPEN_MEDIA {
            open.clear();
        }
        open.insert(
            key.to_owned(),
            OpenMedia {
                files: Arc::clone(&files),
                seen: Instant::now(),
            },
        );
        Ok(Some(files))
    }

    fn source(&self, key: &str) -> MediaSource {
        if layout::is_layout(key) {
            return MediaSource::Layout(key.to_owned());
        }
        MediaSource::File(self.media_path(key))
    }

    fn list(&self) -> Result<Vec<String>, StorageError> {
        Ok(without_companions(list(&self.files)?))
    }

    fn list_staged(&self) -> Result<Vec<String>, StorageError> {
        list(&self.staging)
    }

    fn modified(&self, key: &str) -> Result<Option<SystemTime>, StorageError> {
        let paths = [self.media_path(key), self.media_staging_path(key)];
        let times = paths
            .iter()
            .map(|path| modified(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(times.into_iter().flatten().max())
    }

    fn check(&self) -> Result<(), StorageError> {
        check_dirs(&[&self.files, &self.staging])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many of the pages of `path` are in the page cache.
    fn cached_pages(path: &Path) -> usize {
        let file = File::open(path).unwrap();
        let len = usize::try_from(file.metadata().unwrap().len()).unwrap();
        // SAFETY: a read-only shared mapping of an open file, unmapped below; mincore writes
        // one byte per page into a vector of that many.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(base, libc::MAP_FAILED);
            let page = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)).unwrap();
            let mut pages = vec![0u8; len.div_ceil(page)];
            assert_eq!(libc::mincore(base, len, pages.as_mut_ptr()), 0);
            libc::munmap(base, len);
            pages.iter().filter(|p| *p & 1 == 1).count()
        }
    }

    #[test]
    fn synced_bytes_behind_the_live_tail_leave_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::open(dir.path().to_path_buf()).unwrap();
        let id = UploadId::generate();
        UploadStore::create(&storage, &id).unwrap();
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap();
        let tail_pages = usize::try_from(CACHED_TAIL).unwrap() / page;
        let mib = vec![7u8; 1 << 20];
        // Three PATCHes of 4 MiB, each through its own writer, as the server opens them.
        for patch in 0..3u64 {
            let (held, mut writer) = storage
                .reopen(&id, patch * (4 << 20), PreviousWriter::ThisNode)
                .unwrap();
            assert_eq!(held, patch * (4 << 20));
            for _ in 0..4 {
                writer.write(&mib).unwrap();
            }
            writer.sync().unwrap();
        }
        let path = storage.upload_path(&id);
        let cached = cached_pages(&path);
        assert!(
            cached <= tail_pages,
            "{cached} pages of 12 MiB cached, more than the {tail_pages} of the tail"
        );
        assert!(
            cached >= tail_pages / 2,
            "the tail stays cached: {cached} pages"
        );
        let mut read = Vec::new();
        UploadStore::open(&storage, &id)
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read.len(), 12 << 20);
        assert!(
            read.iter().all(|b| *b == 7),
            "dropped pages read back from disk"
        );
    }

    #[test]
    fn appended_bytes_are_read_back_and_truncation_drops_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::open(dir.path().to_path_buf()).unwrap();
        let uploads: &dyn UploadStore = &storage;
        let id = UploadId::generate();
        uploads.create(&id).unwrap();
        let mut writer = uploads.writer(&id, 0).unwrap();
        writer.write(b"hello ").unwrap();
        writer.write(b"world").unwrap();
        writer.sync().unwrap();
        assert_eq!(fs::read(storage.upload_path(&id)).unwrap(), b"hello world");
        uploads.truncate(&id, 5).unwrap();
        assert_eq!(uploads.len(&id).unwrap(), Some(5));
        assert!(uploads.writer(&id, 11).is_err());
    }

    #[test]
    fn reopening_cuts_unacknowledged_bytes_recreates_a_lost_file_and_reports_a_short_one() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::open(dir.path().to_path_buf()).unwrap();
        let uploads: &dyn UploadStore = &storage;
        let id = UploadId::generate();
        uploads.create(&id).unwrap();
        let mut writer = uploads.writer(&id, 0).unwrap();
        writer
            .write_chunks(&[Bytes::from_static(b"abc"), Bytes::from_static(b"defgh")])
            .unwrap();
        writer.sync().unwrap();
        drop(writer);
        // Committed at 5: the 3 bytes past it were never acknowledged.
        let (len, mut writer) = uploads.reopen(&id, 5, PreviousWriter::ThisNode).unwrap();
        assert_eq!(len, 5);
        writer.write(b"XY").unwrap();
        assert_eq!(fs::read(storage.upload_path(&id)).unwrap(), b"abcdeXY");
        drop(writer);
        // Committed at 10, but only 7 bytes are there.
        assert_eq!(
            uploads.reopen(&id, 10, PreviousWriter::ThisNode).unwrap().0,
            7
        );
        fs::remove_file(storage.upload_path(&id)).unwrap();
        assert_eq!(
            uploads.reopen(&id, 7, PreviousWriter::ThisNode).unwrap().0,
            0
        );
        assert_eq!(uploads.len(&id).unwrap(), Some(0));
    }

    #[test]
    fn a_committed_media_moves_out_of_staging() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::open(dir.path().to_path_buf()).unwrap();
        let media: &dyn MediaStore = &storage;
        let mut writer = media.writer("abc.webm").unwrap();
        writer.write_all(b"video").unwrap();
        assert!(storage.media_staging_path("abc.webm").exists());
        writer.commit().unwrap();
        assert!(!storage.media_staging_path("abc.webm").exists());
        assert_eq!(fs::read(storage.media_path("abc.webm")).unwrap(), b"video");
        media.delete("abc.webm").unwrap();
        assert!(!storage.media_path("abc.webm").exists());
    }

    /// A store in a temporary directory holding one upload of `bytes`, synced.
    fn with_upload(bytes: &[u8]) -> (tempfile::TempDir, LocalStorage, UploadId) {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::open(dir.path().to_path_buf()).unwrap();
        let id = UploadId::generate();
        UploadStore::create(&storage, &id).unwrap();
        let mut writer = UploadStore::writer(&storage, &id, 0).unwrap();
        writer.write(bytes).unwrap();
        writer.sync().unwrap();
        drop(writer);
        (dir, storage, id)
    }

    #[test]
    fn a_layout_reads_the_uploads_own_file_and_outlives_its_name() {
        use crate::storage::{Piece, Source};
        let (_dir, storage, id) = with_upload(b"0123456789");
        let layout = StoredLayout {
            extension: "webm".to_owned(),
            upload: None,
            pieces: vec![
                Piece {
                    source: Source::Head,
                    offset: 0,
                    len: 4,
                },
                Piece {
                    source: Source::Upload,
                    offset: 2,
                    len: 6,
                },
            ],
        };
        let media: &dyn MediaStore = &storage;
        let put = media.put_layout("abc", &id, b"HEAD", &layout).unwrap();
        assert_eq!(put.key, "abc.layout");
        assert!(!put.holds_upload, "a hard link: the upload's name can go");
        assert_eq!(media.list().unwrap(), ["abc.layout"]);
        UploadStore::delete(&storage, &id).unwrap();
        let mut bytes = Vec::new();
        media
            .open("abc.layout")
            .unwrap()
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        assert_eq!(bytes, b"HEAD234567");
        assert!(matches!(media.source("abc.layout"), MediaSource::Layout(_)));
        media.delete("abc.layout").unwrap();
        assert!(fs::read_dir(&storage.files).unwrap().next().is_none());
    }

    #[test]
    fn an_open_layout_deleted_by_another_process_is_no_longer_served() {
        use crate::storage::{Piece, Source};
        let (_dir, mut storage, id) = with_upload(b"0123456789");
        let layout = StoredLayout {
            extension: "webm".to_owned(),
            upload: None,
            pieces: vec![Piece {
                source: Source::Upload,
                offset: 0,
                len: 10,
            }],
        };
        let put = MediaStore::put_layout(&storage, "abc", &id, b"", &layout).unwrap();
        let opened = storage.mapped_media(&put.key).unwrap().unwrap();
        assert_eq!(opened.total, 10);
        // Another process's deletion: the files go, this storage's map is not told.
        for name in fs::read_dir(&storage.files).unwrap() {
            fs::remove_file(name.unwrap().path()).unwrap();
        }
        assert!(
            storage.mapped_media(&put.key).unwrap().is_some(),
            "served from the open files until it is looked for again"
        );
        storage.recheck_after = Duration::ZERO;
        assert!(storage.mapped_media(&put.key).unwrap().is_none());
        assert!(storage.open_media().is_empty(), "the open files are let go");
    }

    #[test]
    fn a_plain_media_is_mapped_once_as_one_piece_until_it_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = LocalStorage::open(dir.path().to_path_buf()).unwrap();
        MediaStore::write(&storage, "abc.jpg", b"0123456789").unwrap();
        let mapped = storage.mapped_media("abc.jpg").unwrap().unwrap();
        assert_eq!(mapped.total, 10);
        assert_eq!(
            mapped.pieces,
            [Piece {
                source: Source::Upload,
                offset: 0,
                len: 10
            }]
        );
        assert_eq!(mapped.data.slice(0, 10), Some(&b"0123456789"[..]));
        assert!(mapped.modified.is_some());
        let again = storage.mapped_media("abc.jpg").unwrap().unwrap();
        assert!(Arc::ptr_eq(&mapped, &again), "the next range maps nothing");
        assert!(storage.mapped_media("missing.jpg").unwrap().is_none());
        // Deleted by another process: served until looked for again, then let go.
        fs::remove_file(dir.path().join("files/abc.jpg")).unwrap();
        assert!(storage.mapped_media("abc.jpg").unwrap().is_some());
        storage.recheck_after = Duration::ZERO;
        assert!(storage.mapped_media("abc.jpg").unwrap().is_none());
        assert!(storage.open_media().is_empty());
        // Deleted by this process: let go at once.
        storage.recheck_after = RECHECK_OPEN_AFTER;
        MediaStore::write(&storage, "def.jpg", b"x").unwrap();
        assert!(storage.mapped_media("def.jpg").unwrap().is_some());
        MediaStore::delete(&storage, "def.jpg").unwrap();
        assert!(storage.mapped_media("def.jpg").unwrap().is_none());
    }

    #[test]
    fn a_media_writer_dropped_without_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::open(dir.path().to_path_buf()).unwrap();
        let media: &dyn MediaStore = &storage;
        let mut writer = media.writer("abc.webm").unwrap();
        writer.write_all(b"half").unwrap();
        drop(writer);
        assert!(media.list_staged().unwrap().is_empty());
        assert!(media.open("abc.webm").unwrap().is_none());
    }
}
