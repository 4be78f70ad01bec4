//! Turns a raw upload into the file the feed serves, a seekable WebM or MP4, stored under a
//! fresh key of the media storage.
//!
//! At a stop the upload's index (`indexing/`) already knows everything the finalizer's first
//! pass would learn, so [`finalize_from_index`] only plans the new head and stores the media
//! as a layout: that head, then the upload's own bytes (`storage/layout.rs`), which nothing
//! reads or copies. What the index cannot plan (WebM clusters that must be rewritten, a
//! progressive MP4, bytes it refused) goes through [`finalize_into_storage`], the full
//! two-pass finalizer that writes a new file.

use std::{
    io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write},
    sync::Arc,
};

pub use livekeep_webm::Container;
use rand_core::{OsRng, RngCore};

use livekeep_webm::{
    layout::{Layout, Part},
    mp4::{plan_mp4_with, IndexBoxes, Mp4Status},
    plan_webm,
};

use crate::{
    domain::UploadId,
    indexing::{self, ContainerIndex, Shared},
    state::AppState,
    storage::{MediaWriter, Piece, PutLayout, ReadSeek, Source, StoredLayout},
};

/// What finalization produced.
#[derive(Debug, Clone, Copy)]
pub struct FinalizeOutcome {
    /// The container of the recording.
    pub container: Container,
    /// Duration read from the file's own timestamps, in seconds.
    pub duration_secs: f64,
    /// Bytes of the finalized file.
    pub size: u64,
    /// Bytes at the end of the raw upload that could not be kept (a cut-off block).
    pub dropped_tail_bytes: u64,
    /// Seek points written: CuePoints (WebM) or sidx references (MP4).
    pub cue_points: usize,
}

/// Why a recording could not be finalized; the raw upload is kept either way.
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    /// The bytes are neither WebM nor MP4.
    #[error("the recording is neither WebM nor MP4")]
    UnsupportedContainer,
    /// The container is recognised but its structure is broken.
    #[error("the recording cannot be finalized: {0}")]
    Format(livekeep_webm::Error),
    /// Reading or writing files failed.
    #[error("finalizing the recording: {0}")]
    Io(#[from] io::Error),
}

impl FinalizeError {
    /// Whether the bytes themselves are at fault (as opposed to the server's disk).
    pub fn is_bad_recording(&self) -> bool {
        !matches!(self, Self::Io(_))
    }
}

impl From<livekeep_webm::Error> for FinalizeError {
    fn from(err: livekeep_webm::Error) -> Self {
        match err {
            livekeep_webm::Error::Io(io) => Self::Io(io),
            other => Self::Format(other),
        }
    }
}

/// Standard MIME type of a container.
pub fn container_mime(container: Container) -> &'static str {
    match container {
        Container::WebM => "video/webm",
        Container::Mp4 => "video/mp4",
    }
}

/// File extension of a container.
pub fn container_extension(container: Container) -> &'static str {
    match container {
        Container::WebM => "webm",
        Container::Mp4 => "mp4",
    }
}

/// A fresh random storage key (128 bits, hex): no user input ever names a file.
pub fn media_key() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What a finalizer reads: an upload (reconciled to its committed bytes), or a stored media.
pub enum Raw {
    /// An upload, holding exactly its committed bytes (reconciled under its lock).
    Upload(UploadId),
    /// A committed media, by key.
    Media(String),
}

/// Finalizes a raw recording into a new stored file; returns its key.
///
/// The file is written under a fresh random key named with its container's extension, and
/// committed (renamed and fsynced, or its multipart upload completed) only once whole; on
/// any failure nothing is left behind.
pub async fn finalize_into_storage(
    state: &AppState,
    raw: Raw,
) -> Result<(String, FinalizeOutcome), FinalizeError> {
    let key = media_key();
    let (uploads, media) = (Arc::clone(&state.uploads), Arc::clone(&state.media));
    let finalize_started = std::time::Instant::now();
    let finalized = tokio::task::spawn_blocking(move || {
        let source: Box<dyn ReadSeek> = match &raw {
            Raw::Upload(id) => uploads.open(id).map_err(io::Error::from)?,
            Raw::Media(key) => media
                .open(key)
                .map_err(io::Error::from)?
                .ok_or_else(|| io::Error::other(format!("the file {key} is missing")))?,
        };
        let mut stored_key = String::new();
        let (outcome, writer) = finalize_recording(source, |container| {
            stored_key = format!("{key}.{}", container_extension(container));
            media.writer(&stored_key).map_err(io::Error::from)
        })?;
        MediaWriter::commit(writer).map_err(io::Error::from)?;
        Ok::<_, FinalizeError>((stored_key, outcome))
    })
    .await
    .map_err(|err| io::Error::other(format!("finalizing task: {err}")))?;
    state.metrics.finalized(finalize_started.elapsed());
    finalized
}

/// What the index says the finished file is, when it can say.
struct Planned {
    layout: Layout,
    outcome: FinalizeOutcome,
}

/// Plans the finished file from the index of an upload of `held` bytes: the head, the upload's
/// ranges, patches and tail, and what finalizing gives; `None` when the full finalizer must
/// run (clusters that cannot stay as uploaded, a progressive MP4, bytes the index refused).
///
/// A WebM index is finished in place (the upload ends here): the caller drops it should the
/// stop not complete, and the next one restores it from what was saved.
fn plan(index: &mut ContainerIndex, held: u64) -> Option<Planned> {
    let (container, layout, duration_secs, cue_points, dropped_tail_bytes) = match index {
        ContainerIndex::WebM(webm) => {
            webm.finish().ok()?;
            if !webm.verbatim() {
                return None;
            }
            let layout = plan_webm(webm).ok()?;
            let dropped = webm.dropped_tail_bytes();
            (
                Container::WebM,
                layout,
                webm.duration_secs(),
                webm.cues().len(),
                dropped,
            )
        }
        ContainerIndex::Mp4(mp4) => {
            let fragmented = matches!(mp4.status(), Mp4Status::Fragments | Mp4Status::Stopped(_));
            if !fragmented || mp4.fragments().is_empty() {
                return None;
            }
            let plan = plan_mp4_with(mp4, IndexBoxes::DEFAULT).ok()?;
            let dropped = held.saturating_sub(mp4.used_end());
            (
                Container::Mp4,
                plan.layout,
                mp4.duration_secs(),
                plan.sidx_references,
                dropped,
            )
        }
        ContainerIndex::Sniffing(_) | ContainerIndex::Refused(_) => return None,
    };
    let outcome = FinalizeOutcome {
        container,
        duration_secs,
        size: layout.len(),
        dropped_tail_bytes,
        cue_points,
    };
    Some(Planned { layout, outcome })
}

/// The finalizer's layout as stored: one head file holding its own bytes (head, patches,
/// tail) in order, and the pieces that interleave it with the upload's ranges.
pub fn stored_layout(
    layout: &Layout,
    container: Container,
) -> Result<(Vec<u8>, StoredLayout), livekeep_webm::Error> {
    let parts = layout.parts()?;
    let mut head = Vec::with_capacity(layout.head.len() + layout.tail.len());
    let pieces = parts
        .into_iter()
        .map(|part| match part {
            Part::Own(bytes) => {
                let offset = head.len() as u64;
                head.extend_from_slice(bytes);
                Piece {
                    source: Source::Head,
                    offset,
                    len: bytes.len() as u64,
                }
            }
            Part::Input { start, len } => Piece {
                source: Source::Upload,
                offset: start,
                len,
            },
        })
        .collect();
    let stored = StoredLayout {
        extension: container_extension(container).to_owned(),
        upload: None,
        pieces,
    };
    Ok((head, stored))
}

/// Finalizes an upload of `held` bytes from its index, without reading it: the planned head
/// stored with the upload's bytes as a layout. `None` when the index cannot plan it (the
/// caller runs [`finalize_into_storage`]). Unless the stop then completes, the caller drops
/// this node's index (a WebM index was finished).
pub async fn finalize_from_index(
    state: &AppState,
    upload: &UploadId,
    index: &Shared,
    held: u64,
) -> Result<Option<(PutLayout, FinalizeOutcome)>, FinalizeError> {
    let started = std::time::Instant::now();
    let (index, media, upload) = (Arc::clone(index), Arc::clone(&state.media), upload.clone());
    let stored = tokio::task::spawn_blocking(move || {
        let Some(planned) = plan(indexing::lock(&index).index_mut(), held) else {
            return Ok(None);
        };
        let (head, layout) = stored_layout(&planned.layout, planned.outcome.container)
            .map_err(FinalizeError::Format)?;
        let planned_in = started.elapsed();
        let put = media
            .put_layout(&media_key(), &upload, &head, &layout)
            .map_err(io::Error::from)?;
        tracing::debug!(
            upload = %upload,
            head_bytes = head.len(),
            plan_ms = planned_in.as_secs_f64() * 1e3,
            put_ms = (started.elapsed() - planned_in).as_secs_f64() * 1e3,
            "finalized from the index"
        );
        Ok::<_, FinalizeError>(Some((put, planned.outcome)))
    })
    .await
    .map_err(|err| io::Error::other(format!("finalizing task: {err}")))??;
    if stored.is_some() {
        state.metrics.finalized(started.elapsed());
    }
    Ok(stored)
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Finalizes the raw recording read from `raw` into the writer `open_out` returns for its
/// container (blocking: run it in `spawn_blocking`); hands the writer back, flushed, for
/// the caller to commit.
///
/// WebM gets Duration and SeekHead before its clusters and Cues after them; a fragmented MP4 gets durations
/// in its moov and a sidx per track before its fragments (a progressive one is already
/// seekable and is copied). Frames are copied byte for byte, and memory stays bounded
/// whatever the recording's size. What the finalizers refuse is a [`FinalizeError::Format`]
/// with their reason.
pub fn finalize_recording<R, W>(
    mut raw: R,
    open_out: impl FnOnce(Container) -> io::Result<W>,
) -> Result<(FinalizeOutcome, W), FinalizeError>
where
    R: Read + Seek,
    W: Write,
{
    let mut head = Vec::with_capacity(4096);
    (&mut raw).take(4096).read_to_end(&mut head)?;
    let container = livekeep_webm::sniff(&head).ok_or(FinalizeError::UnsupportedContainer)?;
    raw.seek(SeekFrom::Start(0))?;
    let mut output = Counting {
        inner: open_out(container)?,
        written: 0,
    };
    let mut buffered = BufWriter::with_capacity(1 << 20, &mut output);
    let finalized = match container {
        Container::WebM => {
            livekeep_webm::finalize_webm(BufReader::with_capacity(1 << 20, raw), &mut buffered)?
        }
        // Its own small reads, one per fragment, jumping over the samples: no read-ahead.
        Container::Mp4 => livekeep_webm::finalize_mp4(raw, &mut buffered)?,
    };
    buffered.flush()?;
    drop(buffered);
    output.flush()?;
    Ok((
        FinalizeOutcome {
            container,
            duration_secs: finalized.duration_secs,
            size: output.written,
            dropped_tail_bytes: finalized.dropped_tail_bytes,
            cue_points: finalized.cue_points,
        },
        output.inner,
    ))
}

#[cfg(test)]
mod tests {
    use std::{fs::File, path::Path};

    use super::*;

    #[test]
    fn the_fixture_webm_is_finalized_with_a_duration() {
        let dir = tempfile::tempdir().unwrap();
        let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live.webm");
        let out = dir.path().join("out.webm");
        let (outcome, _) =
            finalize_recording(File::open(&raw).unwrap(), |_| File::create(&out)).unwrap();
        assert_eq!(outcome.container, Container::WebM);
        assert!(
            (outcome.duration_secs - 3.0).abs() < 0.2,
            "{}",
            outcome.duration_secs
        );
        assert_eq!(outcome.size, std::fs::metadata(&out).unwrap().len());
    }

    #[test]
    fn a_fragmented_mp4_gets_its_duration_and_an_index_before_its_fragments() {
        let dir = tempfile::tempdir().unwrap();
        let raw =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../webm/tests/fixtures/chromium-fmp4.mp4");
        let out = dir.path().join("out.mp4");
        let (outcome, _) =
            finalize_recording(File::open(&raw).unwrap(), |_| File::create(&out)).unwrap();
        assert_eq!(outcome.container, Container::Mp4);
        assert!(outcome.duration_secs > 4.0, "{}", outcome.duration_secs);
        assert!(outcome.cue_points > 0, "sidx references");
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(outcome.size, bytes.len() as u64);
        let sidx = bytes.windows(4).position(|w| w == b"sidx").unwrap();
        let moof = bytes.windows(4).position(|w| w == b"moof").unwrap();
        assert!(sidx < moof, "the index comes before the first fragment");
    }

    #[test]
    fn an_mp4_whose_fragment_comes_before_its_moov_is_a_bad_recording_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut raw = b"\0\0\0\x10ftypiso5\0\0\0\0".to_vec();
        raw.extend_from_slice(b"\0\0\0\x08moof");
        let err = finalize_recording(io::Cursor::new(raw), |_| File::create(&out)).unwrap_err();
        assert!(err.is_bad_recording());
        assert!(
            err.to_string().contains("a fragment comes before the moov"),
            "{err}"
        );
    }

    #[test]
    fn text_is_refused_as_an_unsupported_container() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let raw = io::Cursor::new(b"definitely not a video".to_vec());
        let err = finalize_recording(raw, |_| File::create(&out)).unwrap_err();
        assert!(!out.exists(), "nothing is written for a refused recording");
        assert!(matches!(err, FinalizeError::UnsupportedContainer));
        assert!(err.is_bad_recording());
    }
}
