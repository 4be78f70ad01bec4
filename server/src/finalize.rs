//! Turns a raw upload into the file the feed serves: a seekable WebM, or a checked MP4.

use std::{
    fs::File,
    io::{self, BufReader, BufWriter, Read, Write},
    path::Path,
};

pub use livekeep_webm::Container;

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
    /// Cue points written (0 for MP4, whose index is its own).
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

/// Whether the first bytes of an upload start like WebM (EBML magic) or MP4 (`ftyp` at byte 4).
///
/// `None` while too few bytes are known to decide.
pub fn looks_like_video(first: &[u8]) -> Option<bool> {
    const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];
    if first.len() >= 4 && first[..4] == EBML_MAGIC {
        return Some(true);
    }
    if first.len() >= 8 {
        return Some(&first[4..8] == b"ftyp");
    }
    None
}

/// Finalizes the raw recording at `raw` into `out` (blocking: run it in `spawn_blocking`).
///
/// WebM is rewritten with Duration, SeekHead and Cues (frames copied byte for byte); MP4 is
/// probed for its structure and duration, then copied unchanged.
pub fn finalize_recording(raw: &Path, out: &Path) -> Result<FinalizeOutcome, FinalizeError> {
    let mut head = Vec::with_capacity(4096);
    File::open(raw)?.take(4096).read_to_end(&mut head)?;
    let container = livekeep_webm::sniff(&head).ok_or(FinalizeError::UnsupportedContainer)?;
    let (duration_secs, dropped_tail_bytes, cue_points) = match container {
        Container::WebM => {
            let input = BufReader::with_capacity(1 << 20, File::open(raw)?);
            let mut output = BufWriter::with_capacity(1 << 20, File::create(out)?);
            let finalized = livekeep_webm::finalize_webm(input, &mut output)?;
            output.flush()?;
            (
                finalized.duration_secs,
                finalized.dropped_tail_bytes,
                finalized.cue_points,
            )
        }
        Container::Mp4 => {
            let info = livekeep_webm::probe_mp4(BufReader::new(File::open(raw)?))?;
            std::fs::copy(raw, out)?;
            (info.duration_secs, 0, 0)
        }
    };
    let size = std::fs::metadata(out)?.len();
    Ok(FinalizeOutcome {
        container,
        duration_secs,
        size,
        dropped_tail_bytes,
        cue_points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webm_and_mp4_signatures_are_recognised_and_text_is_not() {
        assert_eq!(looks_like_video(&[0x1A, 0x45, 0xDF, 0xA3]), Some(true));
        assert_eq!(looks_like_video(b"\0\0\0\x20ftypisom"), Some(true));
        assert_eq!(looks_like_video(b"hello world"), Some(false));
        assert_eq!(looks_like_video(b"hel"), None);
    }

    #[test]
    fn the_fixture_webm_is_finalized_with_a_duration() {
        let dir = tempfile::tempdir().unwrap();
        let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live.webm");
        let out = dir.path().join("out.webm");
        let outcome = finalize_recording(&raw, &out).unwrap();
        assert_eq!(outcome.container, Container::WebM);
        assert!(
            (outcome.duration_secs - 3.0).abs() < 0.2,
            "{}",
            outcome.duration_secs
        );
        assert_eq!(outcome.size, std::fs::metadata(&out).unwrap().len());
    }

    #[test]
    fn text_is_refused_as_an_unsupported_container() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, b"definitely not a video").unwrap();
        let err = finalize_recording(&raw, &dir.path().join("out")).unwrap_err();
        assert!(matches!(err, FinalizeError::UnsupportedContainer));
        assert!(err.is_bad_recording());
    }
}
