//! Turns a raw upload into the file the feed serves: a seekable WebM, or a checked MP4.

use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

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
/// WebM is rewritten with Duration, SeekHead and Cues (frames copied byte for byte); MP4 is
/// probed for its structure and duration, then copied unchanged. Both stream: memory stays
/// bounded whatever the recording's size.
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
    let (duration_secs, dropped_tail_bytes, cue_points) = match container {
        Container::WebM => {
            let input = BufReader::with_capacity(1 << 20, raw);
            let mut buffered = BufWriter::with_capacity(1 << 20, &mut output);
            let finalized = livekeep_webm::finalize_webm(input, &mut buffered)?;
            buffered.flush()?;
            (
                finalized.duration_secs,
                finalized.dropped_tail_bytes,
                finalized.cue_points,
            )
        }
        Container::Mp4 => {
            let info = livekeep_webm::probe_mp4(BufReader::new(&mut raw))?;
            raw.seek(SeekFrom::Start(0))?;
            let mut buffered = BufWriter::with_capacity(1 << 20, &mut output);
            io::copy(&mut BufReader::with_capacity(1 << 20, raw), &mut buffered)?;
            buffered.flush()?;
            (info.duration_secs, 0, 0)
        }
    };
    output.flush()?;
    Ok((
        FinalizeOutcome {
            container,
            duration_secs,
            size: output.written,
            dropped_tail_bytes,
            cue_points,
        },
        output.inner,
    ))
}

#[cfg(test)]
mod tests {
    use std::{fs::File, path::Path};

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
