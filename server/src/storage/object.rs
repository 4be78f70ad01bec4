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
//! - `files/<stem>.layout` and `files/<stem>.head`: a media stored at a stop as a layout
//!   (`layout.rs`) of new bytes and the upload's own objects, which it then holds; until
//!   [`MediaStore::assemble`] copies it into `files/<stem>.<ext>` with server-side copies.
//!
//! The [`UploadStore`] and [`MediaStore`] traits are synchronous and called from blocking
//! threads, so each operation blocks on the runtime that opened the store; serving a media reads
//! it asynchronously through a [`StoredObject`].
//!
//! Every upload operation, retries included, is bounded by the store timeout
//! (`--object-store-timeout`): a PATCH holds its upload's lock while it waits, so a store that
//! stopped answering must fail it promptly (as unavailable) rather than after object_store's
//! default minutes of retries. A put cut short may still land: reconciliation treats whatever
//! lies past the committed offset as garbage, so either way is safe.

use std::{
    collections::HashMap,
    future::Future,
    io::{self, Read, Seek, SeekFrom, Write},
    ops::Range,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use futures_util::{stream::BoxStream, StreamExt, TryStreamExt};
use object_store::{
    buffered::BufWriter,
    client::{HttpError, HttpErrorKind},
    path::Path,
    ClientConfigKey, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use tokio::{io::AsyncWriteExt, runtime::Handle};

use super::{
    layout::{self, LayoutReader, StoredLayout, HEAD_EXTENSION},
    requests::{CountedStore, RequestCounts},
    s3_copy::{S3Copier, UploadObject},
    without_companions, MediaSource, MediaStore, MediaWriter, PreviousWriter, PutLayout, ReadSeek,
    StorageError, StorageSettings, UploadStore, UploadWriter,
};
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
    timeout: Duration,
    requests: Arc<RequestCounts>,
    known_ends: Arc<KnownEnds>,
    runtime: Handle,
    /// Server-side copies of ranges (S3's `UploadPartCopy`), where the store has them.
    copier: Option<Arc<S3Copier>>,
}

/// Per upload, the offset at which this node knows its objects end, with nothing past it:
/// learnt by listing them (a reconciliation) and moved on by the pieces this node puts. A
/// PATCH at that offset needs no listing: on a loaded store a LIST costs far more than the PUT
/// (`bench/findings.md`, finding 6).
///
/// Only the upload's writer (`uploads/tus.rs`) appends this way, and a node that becomes the
/// writer lists again: another node's piece past the offset (its PATCH failed after its put,
/// or it died) is then found and deleted. A put this node cannot see yet (one whose answer
/// never came, ours or the previous writer's, that the store may still be writing) makes the
/// upload *unsettled* for a while: listings that start before that time is up teach nothing, so
/// the PATCHes meanwhile list again, and the first listing after it sees what landed.
#[derive(Debug, Default)]
struct KnownEnds(Mutex<Known>);

#[derive(Debug, Default)]
struct Known {
    ends: HashMap<UploadId, u64>,
    /// Until when a put this node does not know of may still land in the upload.
    unsettled: HashMap<UploadId, Instant>,
}

impl KnownEnds {
    /// Beyond this many uploads a map starts over (each forgotten one costs one listing).
    const MAX: usize = 100_000;

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        // Poisoned only by a panic mid-insert; the maps are still valid.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: &UploadId) -> Option<u64> {
        self.known().ends.get(id).copied()
    }

    /// A listing begun at `listed_at` found the upload's objects ending at `end` (after
    /// deleting what lay past it): known from now on, unless a put may have landed after it.
    fn listed(&self, id: &UploadId, end: u64, listed_at: Instant) {
        let mut known = self.known();
        if let Some(until) = known.unsettled.get(id) {
            if listed_at < *until {
                known.ends.remove(id);
                return;
            }
            known.unsettled.remove(id);
        }
        if known.ends.len() >= Self::MAX {
            known.ends.clear();
        }
        known.ends.insert(id.clone(), end);
    }

    /// This node put the piece ending at `end`, after the ones it knew of.
    fn appended(&self, id: &UploadId, end: u64) {
        if let Some(known) = self.known().ends.get_mut(id) {
            *known = end;
        }
    }

    fn forget(&self, id: &UploadId) {
        self.known().ends.remove(id);
    }

    /// A put may still land in the upload until `until`: forget where it ends, and learn
    /// nothing from listings begun before then.
    fn unsettle(&self, id: &UploadId, until: Instant) {
        let mut known = self.known();
        known.ends.remove(id);
        if known.unsettled.len() >= Self::MAX {
            let now = Instant::now();
            known.unsettled.retain(|_, until| *until > now);
        }
        let entry = known.unsettled.entry(id.clone()).or_insert(until);
        *entry = (*entry).max(until);
    }
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

/// Whether `err` comes from the connection to the store (refused, reset, closed mid-request,
/// timed out) rather than from an answer of the store: every HTTP-level failure but a body
/// that could not be decoded (an answer's status is not an [`HttpError`]).
pub(super) fn is_transport_failure(err: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = cause {
        if let Some(http) = current.downcast_ref::<HttpError>() {
            return http.kind() != HttpErrorKind::Decode;
        }
        cause = current.source();
    }
    false
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
    pub fn open(url: &str, settings: &StorageSettings) -> Result<Self, StorageError> {
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
        // Connecting and retrying give up after the timeout too, so that work off the
        // acknowledgment path (a stop's finalization) also fails in bounded time when the
        // store is away, instead of retrying for object_store's default three minutes.
        let connect_timeout = format!("{}ms", settings.timeout.as_millis().max(1));
        let retry = RetryConfig {
            retry_timeout: settings.timeout,
            ..RetryConfig::default()
        };
        let mut copier = None;
        let store: Arc<dyn ObjectStore> = match scheme {
            "s3" | "s3a" => {
                use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
                let key = AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout);
                let builder = AmazonS3Builder::from_env()
                    .with_url(url)
                    .with_config(key, connect_timeout)
                    .with_retry(retry);
                let s3 = builder.clone().build().map_err(built)?;
                copier = Some(Arc::new(S3Copier::new(&builder, s3.clone(), bucket)?));
                Arc::new(s3)
            }
            #[cfg(feature = "gcs")]
            "gs" => {
                use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
                let key = GoogleConfigKey::Client(ClientConfigKey::ConnectTimeout);
                Arc::new(
                    GoogleCloudStorageBuilder::from_env()
                        .with_url(url)
                        .with_config(key, connect_timeout)
                        .with_retry(retry)
                        .build()
                        .map_err(built)?,
                )
            }
            #[cfg(feature = "azure")]
            "az" | "azure" | "abfs" | "abfss" => {
                use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
                let key = AzureConfigKey::Client(ClientConfigKey::ConnectTimeout);
                Arc::new(
                    MicrosoftAzureBuilder::from_env()
                        .with_url(url)
                        .with_config(key, connect_timeout)
                        .with_retry(retry)
                        .build()
                        .map_err(built)?,
                )
            }
            _ => return Err(unsupported()),
        };
        let prefix = Path::parse(prefix.trim_matches('/')).map_err(|err| StorageError::Io {
            context: format!("parsing the prefix of {url}"),
            source: io::Error::other(err),
        })?;
        let mut storage = Self::with_store(store, prefix, settings, runtime);
        storage.copier = copier;
        Ok(storage)
    }

    /// A storage over an already built store (tests, other backends).
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        settings: &StorageSettings,
        runtime: Handle,
    ) -> Self {
        let requests = Arc::new(RequestCounts::default());
        Self {
            store: Arc::new(CountedStore::new(store, Arc::clone(&requests))),
            prefix,
            part_size: settings.part_size.max(1),
            timeout: settings.timeout,
            requests,
            known_ends: Arc::default(),
            runtime,
            copier: None,
        }
    }

    /// When a put sent now, that its sender gave up on, can be taken to have landed or to
    /// never land: the sender waits at most the store timeout, and the store is given as long
    /// again to finish what it received.
    fn settled_after(&self) -> Instant {
        Instant::now() + 2 * self.timeout
    }

    /// The requests made to the store so far.
    pub fn requests(&self) -> Arc<RequestCounts> {
        Arc::clone(&self.requests)
    }

    /// Runs one operation to its end on the runtime, with no bound of its own (a media's
    /// multipart upload, whose parts take as long as they take; retries stay bounded).
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Runs one operation on the runtime, failing it as [`StorageError::TimedOut`] when it
    /// takes longer than the store timeout, retries included.
    fn bounded<T>(
        &self,
        what: impl FnOnce() -> String,
        future: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        self.runtime
            .block_on(tokio::time::timeout(self.timeout, future))
            .unwrap_or_else(|_| {
                Err(StorageError::TimedOut {
                    context: what(),
                    after: self.timeout,
                })
            })
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

    /// Reads a layout file; `None` if it is missing.
    fn read_layout(&self, key: &str) -> Result<Option<StoredLayout>, StorageError> {
        let location = self.media_location(key);
        let got = self.block_on(async {
            match self.store.get(&location).await {
                Ok(result) => result.bytes().await.map(Some),
                Err(err) if is_not_found(&err) => Ok(None),
                Err(err) => Err(err),
            }
        });
        let bytes = got.map_err(object_err(|| format!("reading {location}")))?;
        bytes
            .map(|bytes| StoredLayout::parse(&bytes).map_err(|why| layout::unreadable(key, why)))
            .transpose()
    }

    /// A reader over one whole object of `files/`; `None` if it is missing.
    fn open_object(&self, location: Path) -> Result<Option<Box<dyn ReadSeek>>, StorageError> {
        let meta = self.bounded(|| format!("reading {location}"), self.head_media(&location))?;
        let Some(meta) = meta else {
            return Ok(None);
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

    /// Assembles a layout by reading it and writing it out again (stores without server-side
    /// copies of ranges).
    fn assemble_by_copy(&self, key: &str, target: &str) -> Result<(), StorageError> {
        let context = || format!("assembling {key} into {target}");
        let mut reader = MediaStore::open(self, key)?.ok_or_else(|| StorageError::Io {
            context: context(),
            source: io::Error::new(io::ErrorKind::NotFound, "the layout is gone"),
        })?;
        let mut writer = MediaStore::writer(self, target)?;
        io::copy(&mut reader, &mut writer).map_err(|source| StorageError::Io {
            context: context(),
            source,
        })?;
        writer.commit()
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

    async fn delete_object(&self, location: &Path) -> Result<(), StorageError> {
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

    /// Cuts an upload's listed objects back to `len` bytes: objects starting at or past it are
    /// deleted, one straddling it keeps its bytes below `len` under a new name.
    async fn cut(&self, id: &UploadId, segments: &[Segment], len: u64) -> Result<(), StorageError> {
        for segment in segments {
            if segment.start >= len {
                self.delete_object(&segment.location).await?;
            } else if segment.end > len {
                let kept = self
                    .store
                    .get_range(&segment.location, 0..len - segment.start)
                    .await
                    .map_err(object_err(|| format!("reading {}", segment.location)))?;
                let location = self.upload_dir(id).join(segment_name(segment.start, len));
                self.put(&location, kept).await?;
                self.delete_object(&segment.location).await?;
            }
        }
        Ok(())
    }

    /// Merges runs of small pieces wholly below `committed` into part-sized objects, and
    /// deletes objects a chain object covers (left by an interrupted compaction).
    ///
    /// Touches nothing that reaches past `committed`: a writer may be putting the next piece
    /// there, or cutting back one that straddles it.
    async fn compact_pieces(&self, id: &UploadId, committed: u64) -> Result<(), StorageError> {
        let mut segments = self.segments(id).await?;
        segments.retain(|s| s.end <= committed);
        let (chain, _) = covering_chain(&segments);
        for stale in segments.iter().filter(|s| !chain.contains(s)) {
            if chain
                .iter()
                .any(|c| c.start <= stale.start && stale.end <= c.end)
            {
                self.delete_object(&stale.location).await?;
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
                self.delete_object(&piece.location).await?;
            }
            tracing::debug!(upload = %id, start, end, pieces = run.len(), "pieces compacted");
        }
        Ok(())
    }
}

/// What serving needs to know of a stored media.
#[derive(Debug, Clone, Copy)]
pub struct StoredMeta {
    /// Its length in bytes.
    pub size: u64,
    /// When it was written.
    pub modified: SystemTime,
}

/// A committed media on an object store, read asynchronously for serving.
#[derive(Debug, Clone)]
pub struct StoredObject {
    store: Arc<dyn ObjectStore>,
    location: Path,
    timeout: Duration,
}

impl StoredObject {
    /// Its size and modification time; `None` if it is missing.
    pub async fn head(&self) -> Result<Option<StoredMeta>, StorageError> {
        let head = tokio::time::timeout(self.timeout, self.store.head(&self.location));
        let answer = head.await.map_err(|_| StorageError::TimedOut {
            context: format!("reading {}", self.location),
            after: self.timeout,
        })?;
        match answer {
            Ok(meta) => Ok(Some(StoredMeta {
                size: meta.size,
                modified: meta.last_modified.into(),
            })),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(object_err(|| format!("reading {}", self.location))(err)),
        }
    }

    /// The bytes `range` as they arrive, by one ranged get (memory stays bounded whatever the
    /// size); `None` if the object is missing.
    pub async fn read(
        &self,
        range: Range<u64>,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, StorageError>>>, StorageError> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        // Bounded until the answer starts; the body then streams at the client's pace.
        let get = tokio::time::timeout(self.timeout, self.store.get_opts(&self.location, options));
        let answer = get.await.map_err(|_| StorageError::TimedOut {
            context: format!("reading {}", self.location),
            after: self.timeout,
        })?;
        match answer {
            Ok(result) => {
                let location = self.location.clone();
                let read = move |err| object_err(|| format!("reading {location}"))(err);
                Ok(Some(result.into_stream().map_err(read).boxed()))
            }
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(object_err(|| format!("reading {}", self.location))(err)),
        }
    }
}

/// Buffers one PATCH body and puts it as one piece object at `sync`.
struct ObjectUploadWriter {
    storage: ObjectStorage,
    id: UploadId,
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
        let storage = &self.storage;
        let put = storage.bounded(
            || format!("writing {location}"),
            storage.put(&location, bytes),
        );
        if let Err(err) = put {
            // It may have landed or not, and may still land: only a later listing can tell.
            storage
                .known_ends
                .unsettle(&self.id, storage.settled_after());
            return Err(err);
        }
        storage.known_ends.appended(&self.id, end);
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
        let storage = &self.storage;
        storage.bounded(|| format!("reading {}", segment.location), async {
            let got = storage.store.get_range(&segment.location, range).await;
            match (got, &self.upload) {
                (Ok(bytes), _) => Ok((bytes, None)),
                // Compacted away since we listed: list again, once.
                (Err(err), Some(id)) if is_not_found(&err) => {
                    let segments = storage.segments(id).await?;
                    let (chain, _) = covering_chain(&segments);
                    let Some(fresh) = chain.iter().find(|s| s.start <= pos && pos < s.end) else {
                        return Err(object_err(|| format!("reading {}", segment.location))(err));
                    };
                    let range = pos - fresh.start..(pos + self.ahead).min(fresh.end) - fresh.start;
                    let bytes = storage
                        .store
                        .get_range(&fresh.location, range)
                        .await
                        .map_err(object_err(|| format!("reading {}", fresh.location)))?;
                    Ok((bytes, Some(chain)))
                }
                (Err(err), _) => Err(object_err(|| format!("reading {}", segment.location))(err)),
            }
        })
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

/// A layout read while it may be assembled: once the assembly has moved the media to one
/// object of the same bytes and deleted the layout's objects under this reader (a download
/// begun just before), the rest is read from that object.
struct AssemblingLayout {
    layout: Box<dyn ReadSeek>,
    storage: ObjectStorage,
    assembled: Path,
    moved: Option<Box<dyn ReadSeek>>,
    pos: u64,
}

impl Read for AssemblingLayout {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.moved.is_none() {
            match self.layout.read(out) {
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(err) => match self.storage.open_object(self.assembled.clone()) {
                    Ok(Some(object)) => self.moved = Some(object),
                    _ => return Err(err),
                },
            }
        }
        let Some(moved) = self.moved.as_mut() else {
            return Ok(0);
        };
        moved.seek(SeekFrom::Start(self.pos))?;
        let n = moved.read(out)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for AssemblingLayout {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = match self.moved.as_mut() {
            Some(moved) => moved.seek(to)?,
            None => self.layout.seek(to)?,
        };
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

impl UploadStore for ObjectStorage {
    fn create(&self, _id: &UploadId) -> Result<(), StorageError> {
        // An upload with no objects is an empty upload: nothing to create.
        Ok(())
    }

    fn len(&self, id: &UploadId) -> Result<Option<u64>, StorageError> {
        let segments = self.bounded(|| format!("listing upload {id}"), self.segments(id))?;
        Ok(Some(covering_chain(&segments).1))
    }

    fn truncate(&self, id: &UploadId, len: u64) -> Result<(), StorageError> {
        self.known_ends.forget(id);
        let what = || format!("cutting upload {id} back to {len} bytes");
        self.bounded(what, async {
            let segments = self.segments(id).await?;
            self.cut(id, &segments, len).await
        })
    }

    /// One listing (the PATCH's only one). Every acknowledged byte normally lies in objects
    /// that end at or below the committed offset (a piece is committed at its end, compaction
    /// merges only below it): when they reach the offset, every object reaching past it is
    /// garbage, deleted whole: a put whose commit failed or never came (it timed out but
    /// landed, its node died), or a stray past a gap. Otherwise (a database restored to an
    /// earlier point than the store, lost objects) the longest chain is kept up to the offset.
    fn reconcile(&self, id: &UploadId, committed: u64) -> Result<u64, StorageError> {
        self.known_ends.forget(id);
        let listed_at = Instant::now();
        let what = || format!("reconciling upload {id} with its offset {committed}");
        let held = self.bounded(what, async {
            let segments = self.segments(id).await?;
            let below: Vec<Segment> = segments
                .iter()
                .filter(|s| s.end <= committed)
                .cloned()
                .collect();
            if covering_chain(&below).1 == committed {
                for garbage in segments.iter().filter(|s| s.end > committed) {
                    tracing::info!(upload = %id, start = garbage.start, end = garbage.end, committed, "deleting an object past the committed offset");
                    self.delete_object(&garbage.location).await?;
                }
                return Ok(committed);
            }
            let held = covering_chain(&segments).1.min(committed);
            self.cut(id, &segments, held).await?;
            Ok(held)
        })?;
        self.known_ends.listed(id, held, listed_at);
        Ok(held)
    }

    fn reconcile_for_append(
        &self,
        id: &UploadId,
        committed: u64,
        previous: PreviousWriter,
    ) -> Result<u64, StorageError> {
        match previous {
            PreviousWriter::Another => {
                // The previous writer's last put may still be on its way to the store.
                self.known_ends.unsettle(id, self.settled_after());
            }
            // Nothing was ever stored: nothing to list (a live's first PATCH; 256 recorders
            // starting at once would otherwise list 256 uploads in one second).
            PreviousWriter::Nobody if committed == 0 => {
                self.known_ends.listed(id, 0, Instant::now());
                return Ok(0);
            }
            PreviousWriter::ThisNode | PreviousWriter::Nobody => {
                if self.known_ends.get(id) == Some(committed) {
                    return Ok(committed);
                }
            }
        }
        self.reconcile(id, committed)
    }

    fn writer(&self, id: &UploadId, offset: u64) -> Result<Box<dyn UploadWriter>, StorageError> {
        // No listing: a reconciliation has just cleared everything at or past `offset` under
        // the same lock (or this node knows nothing lies there), so the piece put at `sync` is
        // the only object starting there.
        Ok(Box::new(ObjectUploadWriter {
            storage: self.clone(),
            id: id.clone(),
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

    fn compact(&self, id: &UploadId, committed: u64) -> Result<(), StorageError> {
        // Background work: no request waits for it, so a loaded store only slows it down.
        self.block_on(self.compact_pieces(id, committed))
    }

    fn open(&self, id: &UploadId) -> Result<Box<dyn ReadSeek>, StorageError> {
        let segments = self.bounded(|| format!("listing upload {id}"), self.segments(id))?;
        let (chain, len) = covering_chain(&segments);
        Ok(Box::new(ChainReader::new(
            self.clone(),
            Some(id.clone()),
            chain,
            len,
        )))
    }

    fn delete(&self, id: &UploadId) -> Result<(), StorageError> {
        self.known_ends.forget(id);
        let dir = self.upload_dir(id);
        self.bounded(|| format!("deleting {dir}"), async {
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

    fn list(&self) -> Result<Vec<String>, StorageError> {
        // Maintenance (the start-up check): as long as the bucket's listing takes.
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

    fn modified(&self, id: &UploadId) -> Result<Option<SystemTime>, StorageError> {
        let dir = self.upload_dir(id);
        let listed: Vec<_> = self.bounded(|| format!("listing {dir}"), async {
            self.store
                .list(Some(&dir))
                .try_collect()
                .await
                .map_err(object_err(|| format!("listing {dir}")))
        })?;
        Ok(listed
            .into_iter()
            .map(|meta| meta.last_modified.into())
            .max())
    }

    fn check(&self) -> Result<(), StorageError> {
        let dir = self.child(&["uploads"]);
        self.bounded(|| format!("listing {dir}"), self.list_one_page(&dir))
    }
}

impl ObjectStorage {
    /// One listing request under `dir`, to see that the store answers.
    async fn list_one_page(&self, dir: &Path) -> Result<(), StorageError> {
        self.store
            .list_with_delimiter(Some(dir))
            .await
            .map_err(object_err(|| format!("listing {dir}")))?;
        Ok(())
    }

    async fn head_media(
        &self,
        location: &Path,
    ) -> Result<Option<object_store::ObjectMeta>, StorageError> {
        match self.store.head(location).await {
            Ok(meta) => Ok(Some(meta)),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(object_err(|| format!("reading {location}"))(err)),
        }
    }
}

impl MediaStore for ObjectStorage {
    fn writer(&self, key: &str) -> Result<Box<dyn MediaWriter>, StorageError> {
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

    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let location = self.media_location(key);
        self.bounded(
            || format!("writing {location}"),
            self.put(&location, Bytes::copy_from_slice(bytes)),
        )
    }

    fn put_layout(
        &self,
        stem: &str,
        upload: &UploadId,
        head: &[u8],
        layout: &StoredLayout,
    ) -> Result<PutLayout, StorageError> {
        let key = format!("{stem}.{}", layout::LAYOUT_EXTENSION);
        let mut layout = layout.clone();
        layout.upload = Some(upload.clone());
        let head_location = self.media_location(&format!("{stem}.{HEAD_EXTENSION}"));
        let stored = self.block_on(async {
            self.put(&head_location, Bytes::copy_from_slice(head))
                .await?;
            // Put last: the media exists once its layout does.
            self.put(&self.media_location(&key), Bytes::from(layout.encode()))
                .await
        });
        if let Err(err) = stored {
            let _ = self.block_on(self.delete_object(&head_location));
            return Err(err);
        }
        Ok(PutLayout {
            key,
            holds_upload: true,
        })
    }

    fn assemble(&self, key: &str) -> Result<Option<String>, StorageError> {
        let Some(stored) = self.read_layout(key)? else {
            return Ok(None);
        };
        let target = format!("{}.{}", layout::stem(key), stored.extension);
        match &self.copier {
            Some(copier) => {
                let head = self.media_location(&format!("{}.{HEAD_EXTENSION}", layout::stem(key)));
                let upload = stored.upload.clone().ok_or_else(|| {
                    layout::unreadable(key, "a layout without its upload".to_owned())
                })?;
                let segments = self.block_on(self.segments(&upload))?;
                let (chain, _) = covering_chain(&segments);
                let chain: Vec<UploadObject> = chain
                    .into_iter()
                    .map(|s| UploadObject {
                        start: s.start,
                        end: s.end,
                        location: s.location,
                    })
                    .collect();
                let target_location = self.media_location(&target);
                self.block_on(copier.assemble(
                    &self.store,
                    &stored,
                    &head,
                    &chain,
                    &target_location,
                ))?;
            }
            None => self.assemble_by_copy(key, &target)?,
        }
        Ok(Some(target))
    }

    fn assembles_layouts(&self) -> bool {
        true
    }

    fn discard(&self, key: &str) -> Result<(), StorageError> {
        self.block_on(async {
            self.delete_object(&self.media_location(key)).await?;
            for name in layout::companions(key) {
                self.delete_object(&self.media_location(&name)).await?;
            }
            Ok(())
        })
    }

    fn layout_upload(&self, key: &str) -> Result<Option<UploadId>, StorageError> {
        if !layout::is_layout(key) {
            return Ok(None);
        }
        Ok(self.read_layout(key)?.and_then(|stored| stored.upload))
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        if !layout::is_layout(key) {
            let location = self.media_location(key);
            return self.bounded(
                || format!("deleting {location}"),
                self.delete_object(&location),
            );
        }
        // The layout first (the media is gone), then what it held.
        let stored = self.read_layout(key).ok().flatten();
        self.block_on(self.delete_object(&self.media_location(key)))?;
        for name in layout::companions(key) {
            self.block_on(self.delete_object(&self.media_location(&name)))?;
        }
        if let Some(upload) = stored.and_then(|stored| stored.upload) {
            UploadStore::delete(self, &upload)?;
        }
        Ok(())
    }

    fn open(&self, key: &str) -> Result<Option<Box<dyn ReadSeek>>, StorageError> {
        if !layout::is_layout(key) {
            return self.open_object(self.media_location(key));
        }
        let Some(stored) = self.read_layout(key)? else {
            return Ok(None);
        };
        let head_name = format!("{}.{HEAD_EXTENSION}", layout::stem(key));
        let missing = |what: &str| layout::unreadable(key, format!("its {what} is missing"));
        let head = self
            .open_object(self.media_location(&head_name))?
            .ok_or_else(|| missing("head"))?;
        let upload = stored.upload.as_ref().ok_or_else(|| missing("upload"))?;
        let bytes = UploadStore::open(self, upload)?;
        let assembled = format!("{}.{}", layout::stem(key), stored.extension);
        Ok(Some(Box::new(AssemblingLayout {
            layout: Box::new(LayoutReader::new(&stored, head, bytes)),
            storage: self.clone(),
            assembled: self.media_location(&assembled),
            moved: None,
            pos: 0,
        })))
    }

    fn source(&self, key: &str) -> MediaSource {
        if layout::is_layout(key) {
            return MediaSource::Layout(key.to_owned());
        }
        MediaSource::Object(StoredObject {
            store: Arc::clone(&self.store),
            location: self.media_location(key),
            timeout: self.timeout,
        })
    }

    fn list(&self) -> Result<Vec<String>, StorageError> {
        // Maintenance (the start-up check): as long as the bucket's listing takes.
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
        Ok(without_companions(names))
    }

    fn list_staged(&self) -> Result<Vec<String>, StorageError> {
        // A media object appears only once complete: nothing is ever staged.
        Ok(Vec::new())
    }

    fn modified(&self, key: &str) -> Result<Option<SystemTime>, StorageError> {
        let location = self.media_location(key);
        let meta = self.bounded(|| format!("reading {location}"), self.head_media(&location))?;
        Ok(meta.map(|meta| meta.last_modified.into()))
    }

    fn check(&self) -> Result<(), StorageError> {
        let dir = self.child(&["files"]);
        self.bounded(|| format!("listing {dir}"), self.list_one_page(&dir))
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
    fn a_listing_begun_before_a_put_in_doubt_can_have_landed_teaches_nothing() {
        let known = KnownEnds::default();
        let id = UploadId::generate();
        let now = Instant::now();
        known.listed(&id, 100, now);
        known.appended(&id, 150);
        assert_eq!(known.get(&id), Some(150));
        let settled = now + Duration::from_secs(10);
        known.unsettle(&id, settled);
        assert_eq!(known.get(&id), None);
        known.appended(&id, 200);
        assert_eq!(known.get(&id), None, "only a listing teaches where it ends");
        known.listed(&id, 150, settled - Duration::from_millis(1));
        assert_eq!(known.get(&id), None);
        // A later, shorter doubt does not shorten the first.
        known.unsettle(&id, now + Duration::from_secs(1));
        known.listed(&id, 150, now + Duration::from_secs(2));
        assert_eq!(known.get(&id), None);
        known.listed(&id, 150, settled);
        assert_eq!(known.get(&id), Some(150));
        // Settled for good: the next listings teach again.
        known.listed(&id, 150, now);
        assert_eq!(known.get(&id), Some(150));
    }

    #[test]
    fn a_failed_connection_is_unavailability_and_an_answer_is_not() {
        let generic = |kind| object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(kind, io::Error::other("canceled"))),
        };
        for kind in [
            HttpErrorKind::Connect,
            HttpErrorKind::Request,
            HttpErrorKind::Timeout,
            HttpErrorKind::Interrupted,
            HttpErrorKind::Unknown,
        ] {
            assert!(is_transport_failure(&generic(kind)), "{kind:?}");
        }
        assert!(!is_transport_failure(&generic(HttpErrorKind::Decode)));
        let missing = object_store::Error::NotFound {
            path: "x".into(),
            source: Box::new(io::Error::other("404")),
        };
        assert!(!is_transport_failure(&missing));
        let timed_out = StorageError::TimedOut {
            context: "writing".into(),
            after: Duration::from_secs(1),
        };
        assert!(timed_out.is_unavailable());
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
