//! Streaming finalizer for MediaRecorder WebM files, and MP4 structure checks.
//!
//! Browsers write WebM live: unknown sizes, no Duration, no Cues, so players
//! cannot seek. [`finalize_webm`] rewrites such a file in two sequential
//! passes with constant memory (plus one entry per cluster) into a WebM with
//! known sizes, a Duration, a SeekHead and Cues placed before the Clusters.
//! Frames are copied byte for byte.

#![deny(missing_docs)]

pub mod block;
pub mod cues;
pub mod ebml;
mod finalize;
pub mod mp4;
pub mod reader;
pub mod source;
pub mod timing;

use std::io::{Read, Seek, Write};

pub use finalize::Finalized;
pub use mp4::Mp4Info;

/// Container formats the recorder may upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// WebM (EBML with DocType `webm`).
    WebM,
    /// ISO base media file (MP4), as Safari and Chromium's `video/mp4` write.
    Mp4,
}

/// Why a file could not be finalized or probed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input does not start with an EBML header whose DocType is `webm`.
    #[error("not a WebM file")]
    NotWebM,
    /// The input does not start with an `ftyp` box followed by a `moov` box.
    #[error("not an MP4 file")]
    NotMp4,
    /// The input has the right signature but its structure is unusable.
    #[error("invalid file: {0}")]
    Invalid(&'static str),
    /// Reading the input or writing the output failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Recognises the container from the first bytes (EBML magic with DocType webm; `ftyp` box at offset 4).
///
/// The DocType sits inside the EBML header, so pass the whole header: 64 bytes
/// cover what browsers and ffmpeg write, 4 KiB covers anything sane.
pub fn sniff(first_bytes: &[u8]) -> Option<Container> {
    if first_bytes.get(4..8) == Some(b"ftyp") {
        return Some(Container::Mp4);
    }
    finalize::is_webm_header(first_bytes).then_some(Container::WebM)
}

/// Two passes over `input` at most (it seeks back to 0), writes a complete finalized WebM sequentially to `output`.
pub fn finalize_webm<R: Read + Seek, W: Write>(input: R, output: W) -> Result<Finalized, Error> {
    finalize::finalize(input, output)
}

/// Checks ftyp + moov (+ moof fragments, as Chromium's fragmented MP4 writes) and computes the duration.
pub fn probe_mp4<R: Read + Seek>(input: R) -> Result<Mp4Info, Error> {
    mp4::probe(input)
}
