//! Streaming finalizers for browser recordings: MediaRecorder WebM and fragmented MP4.
//!
//! Browsers record live: a WebM without Duration or Cues, or a fragmented MP4
//! whose moov declares no duration and which has no index, so players cannot
//! seek. [`finalize`] recognises the container and hands it to
//! [`finalize_webm`] (a new head with Duration, the clusters kept as uploaded
//! or rewritten, the Cues after them) or [`finalize_mp4`] (durations
//! in the moov, a sidx per track before the fragments, the fragments copied as
//! they are). Memory is bounded whatever the length (a small entry per cluster
//! or fragment); media bytes are copied byte for byte.
//!
//! Both are built on an index fed the upload's bytes as they arrive and
//! resumable from a saved state ([`webm_index::WebmIndex`], [`mp4::Mp4Index`]);
//! [`plan_webm`] and [`mp4::plan_mp4`] turn a complete one into the finished
//! file's [`layout::Layout`] (new head, upload extents, tail) without reading
//! the upload again. [`sha256::Sha256State`] hashes the upload the same way.

#![deny(missing_docs)]

pub mod block;
pub mod cues;
pub mod ebml;
mod finalize;
pub mod layout;
pub mod mp4;
pub mod reader;
pub mod sha256;
pub mod source;
pub mod timing;
pub mod webm_index;
mod wire;

use std::io::{Read, Seek, SeekFrom, Write};

pub use finalize::plan_webm;
pub use mp4::Mp4Info;

/// Container formats the recorder may upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// WebM (EBML with DocType `webm`).
    WebM,
    /// ISO base media file (MP4), as Safari and Chromium's `video/mp4` write.
    Mp4,
}

/// How the finished file was made from the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalizePath {
    /// A new head written from the index, then the upload's media bytes (fragments) as they are.
    Verbatim,
    /// The media were rewritten (WebM clusters re-sized, cleaned of Void and CRC-32).
    Rewritten,
    /// Already seekable (an MP4 with sample tables): copied unchanged.
    AsUploaded,
}

/// What finalizing produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finalized {
    /// The container of the recording.
    pub container: Container,
    /// How the finished file was made.
    pub path: FinalizePath,
    /// From the first frame's start to the end of the last frame, in seconds.
    pub duration_secs: f64,
    /// Seek points written: CuePoints (WebM) or sidx references (MP4).
    pub cue_points: usize,
    /// Bytes at the end of the input that could not be kept (a block or fragment cut off, garbage).
    pub dropped_tail_bytes: u64,
}

/// Why a file could not be finalized or probed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input does not start with an EBML header whose DocType is `webm`.
    #[error("not a WebM file")]
    NotWebM,
    /// The input does not start with an `ftyp` box.
    #[error("not an MP4 file")]
    NotMp4,
    /// The input has the right signature but its structure is unusable.
    #[error("invalid file: {0}")]
    Invalid(&'static str),
    /// A saved index state cannot be read back (not the recording's fault: rebuild the index).
    #[error("saved index state is unusable: {0}")]
    CorruptState(&'static str),
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
    webm_index::is_webm_header(first_bytes).then_some(Container::WebM)
}

/// Finalizes a recording of either container, recognised by [`sniff`] on its first 4 KiB.
///
/// Neither WebM nor MP4: [`Error::NotWebM`].
pub fn finalize<R: Read + Seek, W: Write>(mut input: R, output: W) -> Result<Finalized, Error> {
    let mut head = Vec::with_capacity(4096);
    (&mut input).take(4096).read_to_end(&mut head)?;
    input.seek(SeekFrom::Start(0))?;
    match sniff(&head) {
        Some(Container::Mp4) => finalize_mp4(input, output),
        Some(Container::WebM) | None => finalize_webm(input, output),
    }
}

/// Two passes over `input` at most (it seeks back to 0), writes a complete finalized WebM sequentially to `output`.
pub fn finalize_webm<R: Read + Seek, W: Write>(input: R, output: W) -> Result<Finalized, Error> {
    finalize::finalize(input, output)
}

/// Finalizes a fragmented MP4: real durations in mvhd, tkhd, mdhd and an mehd, a sidx
/// before the first fragment, then the fragments byte for byte; a fragment cut off at
/// the end is dropped. A progressive MP4 (sample tables in its moov) is already seekable
/// and is copied unchanged.
///
/// Pass 1 reads only box headers and moofs (pass an unbuffered reader: it makes one small
/// read per fragment and jumps over sample data), pass 2 copies the fragments.
pub fn finalize_mp4<R: Read + Seek, W: Write>(input: R, output: W) -> Result<Finalized, Error> {
    mp4::finalize(input, output)
}

/// Checks ftyp + moov (+ moof fragments, as Chromium's fragmented MP4 writes) and computes the duration.
pub fn probe_mp4<R: Read + Seek>(input: R) -> Result<Mp4Info, Error> {
    mp4::probe(input)
}
