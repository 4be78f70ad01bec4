//! Uploads and media on an object store (S3, and GCS / Azure with their features).
//!
//! Layout under the URL's prefix:
//! - `uploads/<id>/<start:020>-<end:020>`: the bytes `start..end` of an upload. Each PATCH body
//!   is put as one such piece before its offset is committed; once committed pieces add up to
//!   the part size they are compacted into one object covering their range (put first, pieces
//!   deleted after), so readers pick a covering chain and tolerate overlaps. Objects at or past
//!   the committed offset (kept in the database, the only truth) are garbage from a crash.
//! - `files/<key>`: committed media and posters, written by a (multipart) put, so an object
//!   exists only once complete: there is no staging area.
//!
//! The [`Storage`] trait is synchronous and called from blocking threads, so each operation
//! blocks on the runtime that opened the store.

use std::{
    future::Future,
    io::{self, Read, Seek, SeekFrom, Write},
    ops::Range,
    sync::Arc,
    time::SystemTime,
};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::{buffered::BufWriter, path::Path, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::{io::AsyncWriteExt, runtime::Handle};

use super::{MediaSource, MediaWriter, ReadSeek, Storage, StorageError, UploadWriter};
use crate::domain::UploadId;

/// Bytes fetched by the first ranged get of a read, and after a seek elsewhere.
const READ_AHEAD: u64 = 1 << 20;

/// The most fetched by one ranged get: a long sequential read (hashing, finalizing) doubles
/// its gets up to this, so a large recording costs few requests in bounded memory.
const MAX_READ_AHEAD: u64 = 8 << 20;

/// Parts of a media's multipart upload in flight at once (memory: this many parts).
const UPLOAD_CONCURRENCY: usize = 2;

/// An object store with a key prefix.
#[derive(Debug, Clone)]
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    part_size: u64,
    runtime: Handle,
}

/// One object holding the bytes `start..end` of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    start: u64,
    end: u64,
    location: Path,
}

impl Segment {
    fn len(&self) -> u64 {
        self.end - self.start
    }
}

fn object_err(
    context: impl FnOnce() -> String,
) -> impl FnOnce(object_store::Error) -> StorageError {
    move |source| StorageError::Object {
        context: context(),
        source,
    }
}

fn is_not_found(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::NotFound { .. })
}

/// The name of the object holding bytes `start..end`.
fn segment_name(start: u64, end: u64) -> String {
    format!("{start:020}-{end:020}")
}

/// Parses a segment name; `None` for anything we did not write.
fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let (start, end) = name.split_once('-')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(start) || !digits(end) {
        return None;
    }
    let (start, end) = (start.parse().ok()?, end.parse().ok()?);
    (start < end).then_some((start, end))
}

/// The objects that cover `0..` contiguously, each starting within the previous one and
/// reaching furthest; returns them and the length covered. Others are left out.
fn covering_chain(segments: &[Segment]) -> (Vec<Segment>, u64) {
    let mut chain = Vec::new();
    let mut pos = 0;
    loop {
        let next = segments
            .iter()
            .filter(|s| s.start <= pos && s.end > pos)
            .max_by_key(|s| (s.end, std::cmp::Reverse(s.start)));
        match next {
            Some(segment) => {
                pos = segment.end;
                chain.push(segment.clone());
            }
            None => return (chain, pos),
        }
    }
}

/// Runs of consecutive small chain objects that together reach `part_size`: what compaction
/// merges. A run stops at an object that is already part-sized.
fn compaction_runs(chain: &[Segment], part_size: u64) -> Vec<Vec<Segment>> {
    let mut runs = Vec::new();
    let mut run: Vec<Segment> = Vec::new();
    for segment in chain {
        if segment.len() >= part_size {
            run.clear();
            continue;
        }
        // Chain objects may overlap (a crash mid-compaction): a run must be contiguous.
        if run.last().is_some_and(|last| last.end != segment.start) {
            run.clear();
        }
        run.push(segment.clone());
        if run.iter().map(Segment::len).sum::<u64>() >= part_size {
            runs.push(std::mem::take(&mut run));
        }
    }
    runs
}

impl ObjectStorage {
    /// Opens the store named by `url` (`s3://bucket/prefix`, …), configured from the
    /// environment (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, …).
    pub fn open(url: &str, part_size: u64) -> Result<Self, StorageError> {
        let unsupported = || StorageError::UnsupportedUrl(url.to_owned());
        let (scheme, rest) = url.split_once("://").ok_or_else(unsupported)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let compiled_in = matches!(scheme, "s3" | "s3a")
            || (cfg!(feature = "gcs") && scheme == "gs")
            || (cfg!(feature = "azure") && matches!(scheme, "az" | "azure" | "abfs" | "abfss"));
        if bucket.is_empty() || !compiled_in {
            return Err(unsupported());
        }
        let runtime = Handle::try_current().map_err(|err| StorageError::Io {
            context: format!("opening {url}"),
            source: io::Error::other(err),
        })?;
        // reqwest is built without a default TLS provider: use ring, as object_store signs with.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let built = |err| object_err(|| format!("configuring {url}"))(err);
        let store: Arc<dyn ObjectStore> = match scheme {
            "s3" | "s3a" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(built)?,
            ),
            #[cfg(feature = "gcs")]
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(built)?,
            ),
            #[cfg(feature = "azure")]
            "az" | "azure" | "abfs" | "abfss" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(built)?,
            ),
            _ => return Err(unsupported()),
        };
        let prefix = Path::parse(prefix.trim_matches('/')).map_err(|err| StorageError::Io {
            context: format!("parsing the prefix of {url}"),
            source: io::Error::other(err),
        })?;
        Ok(Self::with_store(store, prefix, part_size, runtime))
    }

    /// A storage over an already built store (tests, other backends).
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        part_size: u64,
        runtime: Handle,
    ) -> Self {
        Self {
            store,
            prefix,
            part_size: part_size.max(1),
            runtime,
        }
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn child(&self, parts: &[&str]) -> Path {
        parts
            .iter()
            .fold(self.prefix.clone(), |path, part| path.clone().join(*part))
    }

    fn upload_dir(&self, id: &UploadId) -> Path {
        self.child(&["uploads", id.as_str()])
    }

    fn media_location(&self, key: &str) -> Path {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
        self.child(&["files", key])
    }

    /// The objects of an upload, sorted by start; foreign names are ignored.
    async fn segments(&self, id: &UploadId) -> Result<Vec<Segment>, StorageError> {
        let dir = self.upload_dir(id);
        let listed: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(object_err(|| format!("listing {dir}")))?;
        let mut segments: Vec<Segment> = listed
            .into_iter()
            .filter_map(|meta| {
                let (start, end) = parse_segment_name(meta.location.filename()?)?;
                // A truncated put would be caught here: the size must match the name.
                (meta.size == end - start).then_some(Segment {
                    start,
                    end,
                    location: meta.location,
                })
            })
            .collect();
        segments.sort_by_key(|s| (s.start, s.end));
        Ok(segments)
    }

    async fn delete(&self, location: &Path) -> Result<(), StorageError> {
        match self.store.delete(location).await {
            Err(err) if !is_not_found(&err) => {
                Err(object_err(|| format!("deleting {location}"))(err))
            }
            _ => Ok(()),
        }
    }

    async fn put(&self, location: &Path, bytes: Bytes) -> Result<(), StorageError> {
        self.store
            .put(location, PutPayload::from(bytes))
            .await
            .map_err(object_err(|| format!("writing {location}")))?;
        Ok(())
    }

    /// Deletes objects at or past the committed offset: never acknowledged, whatever left
    /// them (a crash between a piece's put and its commit, a stray object past a gap).
    async fn delete_uncommitted(
        &self,
        segments: &[Segment],
        committed: u64,
    ) -> Result<(), StorageError> {
        for object in segments.iter().filter(|s| s.start >= committed) {
            self.delete(&object.location).await?;
        }
        Ok(())
    }

    /// Merges runs of small pieces wholly below `committed` into part-sized objects, and
    /// deletes objects a chain object covers (left by an interrupted compaction).
    ///
    /// Touches nothing that reaches past `committed`: a writer may be putting the next piece
    /// there, or cutting back one that straddles it.
    async fn compact(&self, id: &UploadId, committed: u64) -> Result<(), StorageError> {
        let mut segments = self.segments(id).await?;
        segments.retain(|s| s.end <= committed);
        let (chain, _) = covering_chain(&segments);
        for stale in segments.iter().filter(|s| !chain.contains(s)) {
            if chain
                .iter()
                .any(|c| c.start <= stale.start && stale.end <= c.end)
            {
                self.delete(&stale.location).await?;
            }
        }
        for run in compaction_runs(&chain, self.part_size) {
            let (start, end) = (run[0].start, run[run.len() - 1].end);
            let mut bytes = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
            for piece in &run {
                let got = self
                    .store
                    .get(&piece.location)
                    .await
                    .map_err(object_err(|| format!("reading {}", piece.location)))?
                    .bytes()
                    .await
                    .map_err(object_err(|| format!("reading {}", piece.location)))?;
                bytes.extend_from_slice(&got);
            }
            // Put before the pieces go: at every moment some chain covers the bytes.
            let part = self.upload_dir(id).join(segment_name(start, end));
            self.put(&part, Bytes::from(bytes)).await?;
            for piece in &run {
                self.delete(&piece.location).await?;
            }
            tracing::debug!(upload = %id, start, end, pieces = run.len(), "pieces compacted");
        }
        Ok(())
    }
}

/// Buffers one PATCH body and puts it as one piece object at `sync`.
struct ObjectUploadWriter {
    storage: ObjectStorage,
    dir: Path,
    start: u64,
    buffer: Vec<u8>,
}

impl UploadWriter for ObjectUploadWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let end = self.start + self.buffer.len() as u64;
        let location = self.dir.clone().join(segment_name(self.start, end));
        let bytes = Bytes::from(std::mem::take(&mut self.buffer));
        self.storage.block_on(self.storage.put(&location, bytes))?;
        self.start = end;
        Ok(())
    }
}

/// Reads a chain of objects as one byte sequence, by ranged gets of [`READ_AHEAD`] bytes up
/// to [`MAX_READ_AHEAD`] while the reads stay sequential.
struct ChainReader {
    storage: ObjectStorage,
    /// The upload, to list its objects again if compaction removed one under us.
    upload: Option<UploadId>,
    chain: Vec<Segment>,
    len: u64,
    pos: u64,
    buffer: Bytes,
    buffer_start: u64,
    ahead: u64,
}

impl ChainReader {
    fn new(
        storage: ObjectStorage,
        upload: Option<UploadId>,
        chain: Vec<Segment>,
        len: u64,
    ) -> Self {
        Self {
            storage,
            upload,
            chain,
            len,
            pos: 0,
            buffer: Bytes::new(),
            buffer_start: 0,
            ahead: READ_AHEAD,
        }
    }

    fn fetch(&self, pos: u64) -> Result<(Bytes, Option<Vec<Segment>>), StorageError> {
        let Some(segment) = self.chain.iter().find(|s| s.start <= pos && pos < s.end) else {
            return Err(StorageError::Io {
                context: format!("reading byte {pos}"),
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "no object holds it"),
            });
        };
        let range: Range<u64> =
            pos - segment.start..(pos + self.ahead).min(segment.end) - segment.start;
        let got = self
            .storage
            .block_on(self.storage.store.get_range(&segment.location, range));
        match (got, &self.upload) {
            (Ok(bytes), _) => Ok((bytes, None)),
            // Compacted away since we listed: list again, once.
            (Err(err), Some(id)) if is_not_found(&err) => {
                let segments = self.storage.block_on(self.storage.segments(id))?;
                let (chain, _) = covering_chain(&segments);
                let Some(fresh) = chain.iter().find(|s| s.start <= pos && pos < s.end) else {
                    return Err(object_err(|| format!("reading {}", segment.location))(err));
                };
                let range = pos - fresh.start..(pos + self.ahead).min(fresh.end) - fresh.start;
                let bytes = self
                    .storage
                    .block_on(self.storage.store.get_range(&fresh.location, range))
                    .map_err(object_err(|| format!("reading {}", fresh.location)))?;
                Ok((bytes, Some(chain)))
            }
            (Err(err), _) => Err(object_err(|| format!("reading {}", segment.location))(err)),
        }
    }
}

impl Read for ChainReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || out.is_empty() {
            return Ok(0);
        }
        let buffered = self.buffer_start..self.buffer_start + self.buffer.len() as u64;
        if !buffered.contains(&self.pos) {
            self.ahead = if self.pos == buffered.end && !self.buffer.is_empty() {
                (self.ahead * 2).min(MAX_READ_AHEAD)
            } else {
                READ_AHEAD
            };
            let (bytes, chain) = self.fetch(self.pos)?;
            if bytes.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "an object ended early",
                ));
            }
            if let Some(chain) = chain {
                self.chain = chain;
            }
            self.buffer = bytes;
            self.buffer_start = self.pos;
        }
        let from = usize::try_from(self.pos - self.buffer_start).map_err(io::Error::other)?;
        let available = (self.buffer.len() - from)
            .min(usize::try_from(self.len - self.pos).unwrap_or(usize::MAX));
        let n = available.min(out.len());
        out[..n].copy_from_slice(&self.buffer[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ChainReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// A media streamed to the store as a multipart upload (a single put if small); it exists
/// only once [`MediaWriter::commit`] completed it, and is aborted if dropped before.
struct ObjectMediaWriter {
    writer: Option<BufWriter>,
    location: Path,
    runtime: Handle,
}

impl Write for ObjectMediaWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("media writer closed"))?;
        self.runtime
            .block_on(writer.put(Bytes::copy_from_slice(buf)))
            .map_err(|err| {
                io::Error::from(object_err(|| format!("writing {}", self.location))(err))
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Parts are uploaded as they fill; the last one only at the commit.
        Ok(())
    }
}

impl MediaWriter for ObjectMediaWriter {
    fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        let location = self.location.clone();
        let done = self.runtime.block_on(writer.shutdown());
        done.map_err(|err| StorageError::Io {
            context: format!("completing {location}"),
            source: err,
        })
    }
}

impl Drop for ObjectMediaWriter {
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            // Parts already sent would otherwise linger (and be billed) until a lifecycle rule.
            self.runtime.spawn(async move {
                let _ = writer.abort().await;
            });
        }
    }
}

impl Storage for ObjectStorage {
    fn create_upload(&self, _id: &UploadId) -> Result<(), StorageError> {
        // An upload with no objects is an empty upload: nothing to create.
        Ok(())
    }

    fn upload_len(&self, id: &UploadId) -> Result<Option<u64>, StorageError> {
        let segments = self.block_on(self.segments(id))?;
        Ok(Some(covering_chain(&segments).1))
    }

    fn truncate_upload(&self, id: &UploadId, len: u64) -> Result<(), StorageError> {
        self.block_on(async {
            for segment in self.segments(id).await? {
                if segment.start >= len {
                    self.delete(&segment.location).await?;
                } else if segment.end > len {
                    // Keep what is below `len` under a new name, then drop the old object.
                    let kept = self
                        .store
                        .get_range(&segment.location, 0..len - segment.start)
                        .await
                        .map_err(object_err(|| format!("reading {}", segment.location)))?;
                    let location = self.upload_dir(id).join(segment_name(segment.start, len));
                    self.put(&location, kept).await?;
                    self.delete(&segment.location).await?;
                }
            }
            Ok(())
        })
    }

    fn upload_writer(
        &self,
        id: &UploadId,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>, StorageError> {
        let segments = self.block_on(self.segments(id))?;
        let (_, held) = covering_chain(&segments);
        // The caller reconciled the objects with the committed offset; check rather than trust.
        if held != offset {
            return Err(StorageError::Io {
                context: format!("upload {id} holds {held} bytes, expected {offset}"),
                source: io::Error::other("upload objects and offset disagree"),
            });
        }
        // Past the chain's end (after a gap) may lie stray objects a longer chain would take
        // in once this piece fills the gap.
        self.block_on(self.delete_uncommitted(&segments, offset))?;
        Ok(Box::new(ObjectUploadWriter {
            storage: self.clone(),
            dir: self.upload_dir(id),
            start: offset,
            buffer: Vec::new(),
        }))
    }

    /// Due each time the committed bytes cross a multiple of half a part: a run is then
    /// likely complete, and pieces wait at most about one and a half parts for it.
    fn compaction_due(&self, before: u64, after: u64) -> bool {
        let step = (self.part_size / 2).max(1);
        after / step > before / step
    }

    fn compact_upload(&self, id: &UploadId, committed: u64) -> Result<(), StorageError> {
        self.block_on(self.compact(id, committed))
    }

    fn open_upload(&self, id: &UploadId) -> Result<Box<dyn ReadSeek>, StorageError> {
        let segments = self.block_on(self.segments(id))?;
        let (chain, len) = covering_chain(&segments);
        Ok(Box::new(ChainReader::new(
            self.clone(),
            Some(id.clone()),
            chain,
            len,
        )))
    }

    fn delete_upload(&self, id: &UploadId) -> Result<(), StorageError> {
        self.block_on(async {
            let dir = self.upload_dir(id);
            let locations = self
                .store
                .list(Some(&dir))
                .map_ok(|meta| meta.location)
                .boxed();
            let deleted: Vec<_> = self.store.delete_stream(locations).collect().await;
            for result in deleted {
                match result {
                    Err(err) if !is_not_found(&err) => {
                        return Err(object_err(|| format!("deleting {dir}"))(err))
                    }
                    _ => {}
                }
            }
            Ok(())
        })
    }

    fn media_writer(&self, key: &str) -> Result<Box<dyn MediaWriter>, StorageError> {
        let location = self.media_location(key);
        // Parts of at least S3's minimum, so a finalized media needs few requests.
        let capacity =
            usize::try_from(self.part_size.max(super::DEFAULT_PART_SIZE)).unwrap_or(usize::MAX);
        let writer = BufWriter::with_capacity(Arc::clone(&self.store), location.clone(), capacity)
            .with_max_concurrency(UPLOAD_CONCURRENCY);
        Ok(Box::new(ObjectMediaWriter {
            writer: Some(writer),
            location,
            runtime: self.runtime.clone(),
        }))
    }

    fn write_media(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let location = self.media_location(key);
        self.block_on(self.put(&location, Bytes::copy_from_slice(bytes)))
    }

    fn delete_media(&self, key: &str) -> Result<(), StorageError> {
        self.block_on(self.delete(&self.media_location(key)))
    }

    fn open_media(&self, key: &str) -> Result<Option<Box<dyn ReadSeek>>, StorageError> {
        let location = self.media_location(key);
        let meta = match self.block_on(self.store.head(&location)) {
            Ok(meta) => meta,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => return Err(object_err(|| format!("reading {location}"))(err)),
        };
        if meta.size == 0 {
            return Ok(Some(Box::new(io::Cursor::new(Vec::new()))));
        }
        let whole = Segment {
            start: 0,
            end: meta.size,
            location,
        };
        Ok(Some(Box::new(ChainReader::new(
            self.clone(),
            None,
            vec![whole],
            meta.size,
        ))))
    }

    fn media_source(&self, key: &str) -> MediaSource {
        MediaSource::Object {
            store: Arc::clone(&self.store),
            location: self.media_location(key),
        }
    }

    fn list_media(&self) -> Result<Vec<String>, StorageError> {
        let dir = self.child(&["files"]);
        let listed = self
            .block_on(self.store.list_with_delimiter(Some(&dir)))
            .map_err(object_err(|| format!("listing {dir}")))?;
        let mut names: Vec<String> = listed
            .objects
            .into_iter()
            .filter_map(|meta| meta.location.filename().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    fn list_staged(&self) -> Result<Vec<String>, StorageError> {
        // A media object appears only once complete: nothing is ever staged.
        Ok(Vec::new())
    }

    fn list_upload_files(&self) -> Result<Vec<String>, StorageError> {
        let dir = self.child(&["uploads"]);
        let listed = self
            .block_on(self.store.list_with_delimiter(Some(&dir)))
            .map_err(object_err(|| format!("listing {dir}")))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|prefix| prefix.filename())
            .map(|id| format!("{id}.part"))
            .chain(
                // Loose objects directly under uploads/ are not ours: report them as they are.
                listed
                    .objects
                    .iter()
                    .filter_map(|meta| meta.location.filename().map(str::to_owned)),
            )
            .collect();
        names.sort();
        Ok(names)
    }

    fn media_modified(&self, key: &str) -> Result<Option<SystemTime>, StorageError> {
        let location = self.media_location(key);
        match self.block_on(self.store.head(&location)) {
            Ok(meta) => Ok(Some(meta.last_modified.into())),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(object_err(|| format!("reading {location}"))(err)),
        }
    }

    fn upload_modified(&self, id: &UploadId) -> Result<Option<SystemTime>, StorageError> {
        let dir = self.upload_dir(id);
        let listed: Vec<_> = self
            .block_on(self.store.list(Some(&dir)).try_collect())
            .map_err(object_err(|| format!("listing {dir}")))?;
        Ok(listed
            .into_iter()
            .map(|meta| meta.last_modified.into())
            .max())
    }

    fn check(&self) -> Result<(), StorageError> {
        let dir = self.child(&["files"]);
        self.block_on(self.store.list_with_delimiter(Some(&dir)))
            .map_err(object_err(|| format!("listing {dir}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(start: u64, end: u64) -> Segment {
        Segment {
            start,
            end,
            location: Path::from(segment_name(start, end)),
        }
    }

    #[test]
    fn segment_names_round_trip_and_foreign_names_are_ignored() {
        assert_eq!(
            segment_name(5, 17),
            "00000000000000000005-00000000000000000017"
        );
        assert_eq!(parse_segment_name(&segment_name(5, 17)), Some((5, 17)));
        for foreign in [
            "notes.txt",
            "5-17",
            &segment_name(17, 5),
            &segment_name(3, 3),
        ] {
            assert_eq!(parse_segment_name(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn the_chain_prefers_parts_over_their_pieces_and_stops_at_a_gap() {
        let segments = vec![
            segment(0, 10),
            segment(0, 30),
            segment(10, 20),
            segment(20, 30),
            segment(30, 35),
            segment(40, 50),
        ];
        let (chain, len) = covering_chain(&segments);
        assert_eq!(chain, vec![segment(0, 30), segment(30, 35)]);
        assert_eq!(len, 35);
        assert_eq!(covering_chain(&[segment(5, 10)]).1, 0);
    }

    #[test]
    fn runs_of_small_pieces_reaching_the_part_size_are_compacted() {
        let chain = vec![
            segment(0, 4),
            segment(4, 8),
            segment(8, 12),
            segment(12, 30),
            segment(30, 33),
        ];
        let runs = compaction_runs(&chain, 10);
        assert_eq!(
            runs,
            vec![vec![segment(0, 4), segment(4, 8), segment(8, 12)]]
        );
    }
}
