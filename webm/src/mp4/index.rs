//! The fragment index of a fragmented MP4, learnt from its bytes in order, resumable from a saved state.
//!
//! [`Mp4Index`] is fed the upload's bytes as they arrive ([`Mp4Index::push`]);
//! it keeps the ftyp and moov (a few KiB), reads each `moof` whole, and only
//! counts the bytes of `mdat`s. A reader that can seek asks [`Mp4Index::skippable`]
//! and jumps over them instead ([`Mp4Index::skip`]), so the finalizer's first
//! pass reads box headers and moofs, never sample data.
//!
//! A fragment is complete once its moof is in and every byte of sample data its
//! truns point at has arrived, at the end of the box holding the last of it
//! (the `mdat`). Only complete fragments are indexed: a recording cut off
//! mid-fragment keeps everything before that fragment.
//!
//! The state saves in two parts (see [`Mp4Index::encode_state`]): a small
//! fixed part rewritten at every save, and the fragment entries, append-only.

use std::ops::Range;

use super::boxes::{read_header, FourCC, HeaderRead, LARGE_HEADER_LEN};
use super::fragment::{parse_moof, BaseOffset, ParsedMoof, TrackSpan};
use super::movie::{parse_movie, Movie, MAX_TRACKS};
use crate::wire::{Reader, Writer};
use crate::Error;

/// Most fragments indexed: one entry (32 bytes) each, plus its track spans.
/// A recording with a fragment per second reaches it after six days; beyond,
/// the file is refused as too long to index, as WebM's MAX_INDEX_ENTRIES does.
pub const MAX_FRAGMENTS: usize = 1 << 19;
/// Most track spans (32 bytes each) over all fragments.
pub const MAX_SPANS: usize = 1 << 20;
/// Largest ftyp kept; real ones are under 64 bytes.
const MAX_FTYP: u64 = 64 << 10;
/// Largest moov kept. A fragmented file's moov holds no samples (a few KiB);
/// a larger one is a progressive MP4's sample tables.
pub const MAX_MOOV: u64 = 4 << 20;
/// Largest moof read; one second of samples takes a few KiB.
pub const MAX_MOOF: u64 = 4 << 20;
/// Largest fragment: a sidx reference holds its size in 31 bits.
const MAX_FRAGMENT_LEN: u64 = (1 << 31) - 1;
/// Version of the saved state and entries encoding.
const STATE_VERSION: u8 = 1;
/// First bytes of a saved state.
const STATE_MAGIC: &[u8; 4] = b"LKM4";

/// The reason given when the first box is not an `ftyp`.
const NOT_MP4: &str = "not an MP4 file";

/// Reasons the index itself gives, in the order their codes are saved.
/// Reasons from the moov and moof parsers are saved as code 0.
const REASONS: &[&str] = &[
    NOT_MP4,
    "the ftyp box is too large",
    "a box has an impossible size",
    "a box runs to the end of the file",
    "a fragment comes before the moov",
    "the file has two moov boxes",
    "the file has two ftyp boxes",
    "a moov box comes after the fragments",
    "another file starts after the fragments",
    "a fragment's sample data is missing",
    "a moof box is too large",
    "the moov of a fragmented file holds samples",
    "a fragment is larger than 2 GiB",
    "too many fragments to index",
    "not a fragmented MP4: the moov has neither mvex nor samples",
];
/// What a reason saved as code 0 reads as once restored.
const PARSER_REASON: &str = "a moov or moof box is malformed";

/// One complete fragment: where its bytes are and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// First byte: the end of the previous fragment (boxes such as styp or prft before the moof
    /// belong to the fragment they precede), or the moof for the first fragment.
    pub start: u64,
    /// The fragment's moof.
    pub moof: u64,
    /// End of the box that holds its last sample byte (its mdat).
    pub end: u64,
    /// The reference track (video if any) starts this fragment with a sync sample.
    pub keyframe: bool,
    first_span: u32,
    span_count: u8,
    first_base: u32,
    base_count: u8,
}

impl Fragment {
    /// The fragment's byte range in the upload.
    pub fn range(&self) -> Range<u64> {
        self.start..self.end
    }
}

/// How far the index got, and whether it can go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mp4Status {
    /// Reading the ftyp and moov.
    Head,
    /// Reading fragments.
    Fragments,
    /// The moov describes a movie that does not continue in fragments (a progressive MP4):
    /// nothing more is indexed.
    NotFragmented,
    /// Data that cannot continue the fragments was met: what follows the last complete
    /// fragment is not used.
    Stopped(&'static str),
    /// Not a fragmented MP4 this crate can finalize.
    Refused(&'static str),
}

/// Running timing of one track over the complete fragments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TrackTimes {
    /// Decode time the next fragment starts at when it has no tfdt.
    next_decode: u64,
    first_decode: Option<u64>,
    decode_end: u64,
    first_presentation: Option<i64>,
    presentation_end: i64,
}

/// The top-level box being read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BoxCursor {
    start: u64,
    end: u64,
    kind: FourCC,
    /// The box's bytes so far, header included, when it is kept (ftyp, moov, moof).
    buffer: Option<Vec<u8>>,
}

/// A moof read whose sample data has not all arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    start: u64,
    moof: u64,
    parsed: ParsedMoof,
}

/// The incremental, resumable index of a fragmented MP4; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mp4Index {
    position: u64,
    phase: Phase,
    /// A box header being read at a box boundary (at most 16 bytes).
    header: Vec<u8>,
    cursor: Option<BoxCursor>,
    ftyp: Vec<u8>,
    moov: Vec<u8>,
    init_end: u64,
    movie: Option<Movie>,
    times: Vec<TrackTimes>,
    fragments: Vec<Fragment>,
    spans: Vec<TrackSpan>,
    base_offsets: Vec<BaseOffset>,
    pending: Option<Pending>,
    /// Bytes of [`Mp4Index::encode_fragments`]`(0)`.
    entries_len: u64,
    /// End of the boxes without media (mfra, free, skip) right after the last fragment.
    trailer_end: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Head,
    Fragments,
    NotFragmented,
    Stopped(&'static str),
    Refused(&'static str),
}

impl Default for Mp4Index {
    fn default() -> Self {
        Self::new()
    }
}

impl Mp4Index {
    /// An index of nothing yet: the next byte pushed is the upload's first.
    pub fn new() -> Self {
        Self {
            position: 0,
            phase: Phase::Start,
            header: Vec::with_capacity(LARGE_HEADER_LEN),
            cursor: None,
            ftyp: Vec::new(),
            moov: Vec::new(),
            init_end: 0,
            movie: None,
            times: Vec::new(),
            fragments: Vec::new(),
            spans: Vec::new(),
            base_offsets: Vec::new(),
            pending: None,
            entries_len: 0,
            trailer_end: 0,
        }
    }

    /// Feeds the next bytes of the upload (they start at [`Mp4Index::position`]).
    ///
    /// Fails once the bytes are known not to be a fragmented MP4 ([`Mp4Status::Refused`]);
    /// everything else, including a corrupt or cut-off fragment, is reported by [`Mp4Index::status`].
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            if self.ignores_rest() {
                self.position += bytes.len() as u64;
                break;
            }
            let taken = match &mut self.cursor {
                Some(cursor) => {
                    let left = usize::try_from(cursor.end - self.position).unwrap_or(usize::MAX);
                    let take = left.min(bytes.len());
                    if let Some(buffer) = &mut cursor.buffer {
                        buffer.extend_from_slice(&bytes[..take]);
                    }
                    take
                }
                None => {
                    let need = header_need(&self.header);
                    let take = (need - self.header.len()).min(bytes.len());
                    self.header.extend_from_slice(&bytes[..take]);
                    take
                }
            };
            self.position += taken as u64;
            bytes = &bytes[taken..];
            self.step();
        }
        match self.phase {
            Phase::Refused(reason) => Err(refusal(reason)),
            _ => Ok(()),
        }
    }

    /// Bytes from [`Mp4Index::position`] on that the index does not need to see
    /// (inside an mdat, or everything once it stopped); see [`Mp4Index::skip`].
    pub fn skippable(&self) -> u64 {
        if self.ignores_rest() {
            return u64::MAX;
        }
        match &self.cursor {
            Some(cursor) if cursor.buffer.is_none() => cursor.end - self.position,
            _ => 0,
        }
    }

    /// Bytes the index needs to see before it can skip again (0 while it can skip).
    pub fn needed(&self) -> u64 {
        if self.ignores_rest() {
            return 0;
        }
        match &self.cursor {
            Some(cursor) if cursor.buffer.is_some() => cursor.end - self.position,
            Some(_) => 0,
            None => (header_need(&self.header) - self.header.len()) as u64,
        }
    }

    /// Passes over up to `n` bytes without reading them, as many as [`Mp4Index::skippable`]
    /// allows; returns how many.
    pub fn skip(&mut self, n: u64) -> u64 {
        let n = n.min(self.skippable());
        self.position = self.position.saturating_add(n);
        self.step();
        n
    }

    /// Bytes of the upload seen (pushed or skipped) so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Where a restored index continues: the upload is pushed from here after
    /// [`Mp4Index::restore`]. The saved state holds a partly read box, so this is
    /// [`Mp4Index::position`] (the contract is [`crate::webm_index::WebmIndex::resume_at`]'s).
    pub fn resume_at(&self) -> u64 {
        self.position
    }

    /// How far the index got.
    pub fn status(&self) -> Mp4Status {
        match self.phase {
            Phase::Start | Phase::Head => Mp4Status::Head,
            Phase::Fragments => Mp4Status::Fragments,
            Phase::NotFragmented => Mp4Status::NotFragmented,
            Phase::Stopped(reason) => Mp4Status::Stopped(reason),
            Phase::Refused(reason) => Mp4Status::Refused(reason),
        }
    }

    /// The init segment's range in the upload (ftyp up to the end of the moov), once read.
    pub fn init_segment(&self) -> Option<Range<u64>> {
        self.movie.as_ref().map(|_| 0..self.init_end)
    }

    /// The upload's ftyp box, once read.
    pub fn ftyp(&self) -> &[u8] {
        &self.ftyp
    }

    /// The upload's moov box, once read (a fragmented file's: no samples).
    pub fn moov(&self) -> &[u8] {
        &self.moov
    }

    /// What the moov says, once read.
    pub fn movie(&self) -> Option<&Movie> {
        self.movie.as_ref()
    }

    /// The complete fragments, in upload order.
    pub fn fragments(&self) -> &[Fragment] {
        &self.fragments
    }

    /// What each track contributes to `fragment`, in traf order.
    pub fn spans(&self, fragment: &Fragment) -> &[TrackSpan] {
        let start = fragment.first_span as usize;
        self.spans
            .get(start..start + usize::from(fragment.span_count))
            .unwrap_or(&[])
    }

    /// The absolute base offsets in `fragment`'s tfhds, which move with it.
    pub fn base_offsets(&self, fragment: &Fragment) -> &[BaseOffset] {
        let start = fragment.first_base as usize;
        self.base_offsets
            .get(start..start + usize::from(fragment.base_count))
            .unwrap_or(&[])
    }

    /// End of the last complete fragment (0 before the first).
    pub fn complete_end(&self) -> u64 {
        self.fragments.last().map_or(0, |fragment| fragment.end)
    }

    /// End of what the upload's bytes are used up to: the last complete fragment, and the
    /// boxes without media after it (an mfra, padding). Bytes past it are a cut-off tail.
    pub fn used_end(&self) -> u64 {
        self.complete_end().max(self.trailer_end)
    }

    /// The latest complete fragment that starts with a keyframe: where a late viewer joins.
    pub fn latest_keyframe_fragment(&self) -> Option<&Fragment> {
        self.fragments
            .iter()
            .rev()
            .find(|fragment| fragment.keyframe)
    }

    /// From the earliest presented sample to the end of the last one, over all tracks, in seconds.
    pub fn duration_secs(&self) -> f64 {
        let Some(movie) = &self.movie else {
            return 0.0;
        };
        let mut start = f64::INFINITY;
        let mut end = f64::NEG_INFINITY;
        for (track, times) in movie.tracks.iter().zip(&self.times) {
            if let Some(first) = times.first_presentation {
                let scale = f64::from(track.timescale);
                start = start.min(first as f64 / scale);
                end = end.max(times.presentation_end as f64 / scale);
            }
        }
        if end.is_finite() && start.is_finite() {
            (end - start).max(0.0)
        } else {
            0.0
        }
    }

    /// Per track (in moov order): first and last presentation time, first and last decode
    /// time, in its timescale; `None` for a track without samples.
    pub(crate) fn track_extents(&self) -> impl Iterator<Item = Option<TrackExtent>> + '_ {
        self.times.iter().map(|times| {
            Some(TrackExtent {
                presentation: times.first_presentation?..times.presentation_end,
                decode: times.first_decode?..times.decode_end,
            })
        })
    }

    fn ignores_rest(&self) -> bool {
        matches!(
            self.phase,
            Phase::NotFragmented | Phase::Stopped(_) | Phase::Refused(_)
        )
    }

    /// Acts on what the bytes just consumed completed: a header, a box.
    fn step(&mut self) {
        loop {
            if self.ignores_rest() {
                return;
            }
            match &self.cursor {
                Some(cursor) if self.position == cursor.end => {
                    if let Some(cursor) = self.cursor.take() {
                        self.finish_box(cursor);
                    }
                }
                Some(_) => return,
                None => match read_header(&self.header) {
                    HeaderRead::NeedMore(_) => return,
                    HeaderRead::Header { kind, len, size } => self.begin_box(kind, len, size),
                },
            }
        }
    }

    fn begin_box(&mut self, kind: FourCC, header_len: usize, size: Option<u64>) {
        let start = self.position - header_len as u64;
        let header = std::mem::take(&mut self.header);
        let Some(size) = size else {
            return self.bad(NOT_MP4, "a box runs to the end of the file");
        };
        let Some(end) = start
            .checked_add(size)
            .filter(|_| size >= header_len as u64)
        else {
            return self.bad(NOT_MP4, "a box has an impossible size");
        };
        let keep = match (self.phase, &kind) {
            (Phase::Start, b"ftyp") if size <= MAX_FTYP => true,
            (Phase::Start, b"ftyp") => return self.refuse("the ftyp box is too large"),
            (Phase::Start, _) => return self.refuse(NOT_MP4),
            (Phase::Head, b"moov") if !self.moov.is_empty() => {
                return self.refuse("the file has two moov boxes")
            }
            (Phase::Head, b"moov") if size > MAX_MOOV => {
                self.phase = Phase::NotFragmented;
                return;
            }
            (Phase::Head, b"moov") => true,
            (Phase::Head, b"ftyp") => return self.refuse("the file has two ftyp boxes"),
            (Phase::Head, b"moof") if self.movie.is_none() => {
                return self.refuse("a fragment comes before the moov")
            }
            (Phase::Head | Phase::Fragments, b"moof") => {
                self.phase = Phase::Fragments;
                if self.pending.is_some() {
                    return self.stop("a fragment's sample data is missing");
                }
                if size > MAX_MOOF {
                    return self.stop("a moof box is too large");
                }
                true
            }
            (Phase::Fragments, b"moov") => {
                return self.refuse("a moov box comes after the fragments")
            }
            (Phase::Fragments, b"ftyp") => {
                return self.stop("another file starts after the fragments")
            }
            _ => false,
        };
        let buffer = keep.then(|| {
            // Reserve what is there, not what the header claims: it may never come.
            let mut buffer = Vec::with_capacity(header.len().max(64));
            buffer.extend_from_slice(&header);
            buffer
        });
        self.cursor = Some(BoxCursor {
            start,
            end,
            kind,
            buffer,
        });
    }

    fn finish_box(&mut self, cursor: BoxCursor) {
        match (&cursor.kind, cursor.buffer) {
            (b"ftyp", Some(buffer)) => {
                self.ftyp = buffer;
                self.phase = Phase::Head;
            }
            (b"moov", Some(buffer)) => match parse_movie(&buffer) {
                Err(reason) => self.refuse(reason),
                Ok(movie) if !movie.fragmented && !movie.has_samples => {
                    self.refuse("not a fragmented MP4: the moov has neither mvex nor samples")
                }
                Ok(movie) if !movie.fragmented => self.phase = Phase::NotFragmented,
                Ok(movie) if movie.has_samples => {
                    self.refuse("the moov of a fragmented file holds samples")
                }
                Ok(movie) => {
                    self.times = vec![TrackTimes::default(); movie.tracks.len()];
                    self.movie = Some(movie);
                    self.moov = buffer;
                    self.init_end = cursor.end;
                }
            },
            (b"moof", Some(buffer)) => {
                let Some(movie) = &self.movie else {
                    return self.refuse("a fragment comes before the moov");
                };
                let next: Vec<u64> = self.times.iter().map(|t| t.next_decode).collect();
                match parse_moof(&buffer, cursor.start, movie, &next) {
                    Ok(parsed) => {
                        let start = self
                            .fragments
                            .last()
                            .map_or(cursor.start, |previous| previous.end);
                        self.pending = Some(Pending {
                            start,
                            moof: cursor.start,
                            parsed,
                        });
                    }
                    Err(reason) => return self.stop(reason),
                }
            }
            (b"mfra" | b"free" | b"skip", None)
                if self.pending.is_none() && cursor.start == self.used_end() =>
            {
                self.trailer_end = cursor.end;
            }
            _ => {}
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|pending| self.position >= pending.parsed.data_end)
        {
            self.complete_fragment();
        }
    }

    fn complete_fragment(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let end = self.position;
        if end - pending.start > MAX_FRAGMENT_LEN {
            return self.refuse("a fragment is larger than 2 GiB");
        }
        let spans = &pending.parsed.spans;
        let bases = &pending.parsed.base_offsets;
        if self.fragments.len() >= MAX_FRAGMENTS
            || self.spans.len() + spans.len() > MAX_SPANS
            || spans.len() > usize::from(u8::MAX)
            || bases.len() > usize::from(u8::MAX)
        {
            return self.refuse("too many fragments to index");
        }
        let Some(movie) = &self.movie else {
            return;
        };
        let reference = movie.tracks[movie.reference()].id;
        let keyframe = spans
            .iter()
            .find(|span| span.track_id == reference)
            .is_some_and(TrackSpan::starts_with_sync);
        for span in spans {
            if let Some(index) = movie.track_index(span.track_id) {
                let times = &mut self.times[index];
                times.next_decode = span.decode_end();
                times.first_decode = Some(
                    times
                        .first_decode
                        .map_or(span.decode_time, |t| t.min(span.decode_time)),
                );
                times.decode_end = times.decode_end.max(span.decode_end());
                let first = span.earliest_presentation();
                times.first_presentation =
                    Some(times.first_presentation.map_or(first, |t| t.min(first)));
                times.presentation_end = times.presentation_end.max(span.presentation_end());
            }
        }
        let fragment = Fragment {
            start: pending.start,
            moof: pending.moof,
            end,
            keyframe,
            first_span: self.spans.len() as u32,
            span_count: spans.len() as u8,
            first_base: self.base_offsets.len() as u32,
            base_count: bases.len() as u8,
        };
        let mut record = Writer::default();
        write_fragment(&mut record, self.complete_end(), &fragment, spans, bases);
        self.entries_len += record.out.len() as u64;
        self.spans.extend_from_slice(spans);
        self.base_offsets.extend_from_slice(bases);
        self.fragments.push(fragment);
    }

    /// Malformed data: a refusal before the fragments, the end of what is used after.
    fn bad(&mut self, before_mp4: &'static str, reason: &'static str) {
        match self.phase {
            Phase::Start => self.refuse(before_mp4),
            Phase::Head if self.movie.is_none() => self.refuse(reason),
            _ => self.stop(reason),
        }
    }

    fn stop(&mut self, reason: &'static str) {
        self.pending = None;
        self.cursor = None;
        self.phase = Phase::Stopped(reason);
    }

    fn refuse(&mut self, reason: &'static str) {
        self.pending = None;
        self.cursor = None;
        self.phase = Phase::Refused(reason);
    }

    /// The fixed part of the saved state: small (the ftyp and moov, a partly read box of at
    /// most a moof, running per-track times), rewritten at every save.
    ///
    /// Save [`Mp4Index::encode_fragments`] first (appended to what was saved), then this;
    /// [`Mp4Index::restore`] takes both.
    pub fn encode_state(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(STATE_MAGIC);
        w.u8(STATE_VERSION);
        w.varint(self.position);
        let (code, reason) = match self.phase {
            Phase::Start => (0, None),
            Phase::Head => (1, None),
            Phase::Fragments => (2, None),
            Phase::NotFragmented => (3, None),
            Phase::Stopped(reason) => (4, Some(reason)),
            Phase::Refused(reason) => (5, Some(reason)),
        };
        w.u8(code);
        if let Some(reason) = reason {
            let code = REASONS
                .iter()
                .position(|r| *r == reason)
                .map_or(0, |i| i + 1);
            w.u8(code as u8);
        }
        w.bytes(&self.header);
        match &self.cursor {
            Some(cursor) => {
                w.u8(1);
                w.varint(cursor.start);
                w.varint(cursor.end);
                w.raw(&cursor.kind);
                match &cursor.buffer {
                    Some(buffer) => {
                        w.u8(1);
                        w.bytes(buffer);
                    }
                    None => w.u8(0),
                }
            }
            None => w.u8(0),
        }
        w.bytes(&self.ftyp);
        w.bytes(&self.moov);
        w.varint(self.init_end);
        w.varint(self.times.len() as u64);
        for times in &self.times {
            w.varint(times.next_decode);
            w.option(times.first_decode);
            w.varint(times.decode_end);
            w.signed_option(times.first_presentation);
            w.signed(times.presentation_end);
        }
        match &self.pending {
            Some(pending) => {
                w.u8(1);
                w.varint(pending.start);
                w.varint(pending.moof);
                w.varint(pending.parsed.data_end);
                write_spans_and_bases(
                    &mut w,
                    pending.moof,
                    &pending.parsed.spans,
                    &pending.parsed.base_offsets,
                );
            }
            None => w.u8(0),
        }
        w.varint(self.fragments.len() as u64);
        w.varint(self.entries_len);
        w.varint(self.trailer_end);
        w.out
    }

    /// The entries of fragments `from..`, to append to those already saved (`from` is how
    /// many were saved). Their concatenation from 0 is [`Mp4Index::entries_len`] bytes.
    pub fn encode_fragments(&self, from: usize) -> Vec<u8> {
        let mut w = Writer::default();
        let from = from.min(self.fragments.len());
        let mut previous_end = from.checked_sub(1).map_or(0, |i| self.fragments[i].end);
        for fragment in &self.fragments[from..] {
            write_fragment(
                &mut w,
                previous_end,
                fragment,
                self.spans(fragment),
                self.base_offsets(fragment),
            );
            previous_end = fragment.end;
        }
        w.out
    }

    /// Bytes of all fragment entries: where a saved entries log must end for this state
    /// (bytes past it were appended by a save whose state was never written: cut them).
    pub fn entries_len(&self) -> u64 {
        self.entries_len
    }

    /// Resumes from a state saved by [`Mp4Index::encode_state`] and the entries saved with it
    /// (`entries` may run past the state's [`Mp4Index::entries_len`]: the excess is ignored).
    pub fn restore(state: &[u8], entries: &[u8]) -> Result<Self, Error> {
        let corrupt = Error::CorruptState;
        let mut r = Reader::new(state);
        if r.raw(4)? != &STATE_MAGIC[..] {
            return Err(corrupt("not a saved MP4 index"));
        }
        if r.u8()? != STATE_VERSION {
            return Err(corrupt("an MP4 index saved by another version"));
        }
        let mut index = Self::new();
        index.position = r.varint()?;
        let reason = |r: &mut Reader| -> Result<&'static str, Error> {
            let code = usize::from(r.u8()?);
            Ok(match code {
                0 => PARSER_REASON,
                _ => REASONS.get(code - 1).copied().ok_or(corrupt("reason"))?,
            })
        };
        index.phase = match r.u8()? {
            0 => Phase::Start,
            1 => Phase::Head,
            2 => Phase::Fragments,
            3 => Phase::NotFragmented,
            4 => Phase::Stopped(reason(&mut r)?),
            5 => Phase::Refused(reason(&mut r)?),
            _ => return Err(corrupt("phase")),
        };
        index.header = r.bytes(LARGE_HEADER_LEN - 1)?.to_vec();
        if r.bool()? {
            let start = r.varint()?;
            let end = r.varint()?;
            let kind: FourCC = r.raw(4)?.try_into().map_err(|_| corrupt("kind"))?;
            let buffer = if r.bool()? {
                Some(r.bytes(MAX_MOOV as usize)?.to_vec())
            } else {
                None
            };
            let consistent = start <= index.position
                && index.position <= end
                && index.header.is_empty()
                && buffer
                    .as_ref()
                    .is_none_or(|b| b.len() as u64 == index.position - start);
            if !consistent {
                return Err(corrupt("the box being read"));
            }
            index.cursor = Some(BoxCursor {
                start,
                end,
                kind,
                buffer,
            });
        }
        index.ftyp = r.bytes(MAX_FTYP as usize)?.to_vec();
        index.moov = r.bytes(MAX_MOOV as usize)?.to_vec();
        index.init_end = r.varint()?;
        if !index.moov.is_empty() {
            index.movie = Some(parse_movie(&index.moov).map_err(|_| corrupt("the saved moov"))?);
        }
        let tracks = index.movie.as_ref().map_or(0, |m| m.tracks.len());
        let count = usize::try_from(r.varint()?).map_err(|_| corrupt("tracks"))?;
        if count != tracks || count > MAX_TRACKS {
            return Err(corrupt("tracks"));
        }
        for _ in 0..count {
            index.times.push(TrackTimes {
                next_decode: r.varint()?,
                first_decode: r.option()?,
                decode_end: r.varint()?,
                first_presentation: r.signed_option()?,
                presentation_end: r.signed()?,
            });
        }
        if r.bool()? {
            let start = r.varint()?;
            let moof = r.varint()?;
            let data_end = r.varint()?;
            let (spans, base_offsets) = read_spans_and_bases(&mut r, moof)?;
            if start > moof || moof > index.position {
                return Err(corrupt("the pending fragment"));
            }
            index.pending = Some(Pending {
                start,
                moof,
                parsed: ParsedMoof {
                    spans,
                    base_offsets,
                    data_end,
                },
            });
        }
        let fragments = usize::try_from(r.varint()?).map_err(|_| corrupt("fragments"))?;
        let entries_len = r.varint()?;
        index.trailer_end = r.varint()?;
        if !r.is_empty() {
            return Err(corrupt("bytes after the state"));
        }
        if index.movie.is_none() && (fragments > 0 || index.phase == Phase::Fragments) {
            return Err(corrupt("fragments without a moov"));
        }
        let entries = usize::try_from(entries_len)
            .ok()
            .and_then(|len| entries.get(..len))
            .ok_or(corrupt(
                "the fragment entries are shorter than the state says",
            ))?;
        index.read_fragments(entries, fragments)?;
        index.entries_len = entries_len;
        // What the index will compute from next must not run backwards.
        let complete_end = index.complete_end();
        let consistent = complete_end <= index.position
            && index.trailer_end <= index.position
            && index
                .cursor
                .as_ref()
                .is_none_or(|c| c.start >= complete_end)
            && index
                .pending
                .as_ref()
                .is_none_or(|p| p.start == index.fragments.last().map_or(p.moof, |f| f.end));
        if !consistent {
            return Err(corrupt("positions out of order"));
        }
        Ok(index)
    }

    fn read_fragments(&mut self, entries: &[u8], count: usize) -> Result<(), Error> {
        let corrupt = Error::CorruptState;
        if count > MAX_FRAGMENTS {
            return Err(corrupt("too many fragments"));
        }
        let mut r = Reader::new(entries);
        let mut previous_end = 0u64;
        for _ in 0..count {
            let start = previous_end
                .checked_add(r.varint()?)
                .ok_or(corrupt("fragment"))?;
            let moof = start.checked_add(r.varint()?).ok_or(corrupt("fragment"))?;
            let end = moof.checked_add(r.varint()?).ok_or(corrupt("fragment"))?;
            let keyframe = r.bool()?;
            let (spans, bases) = read_spans_and_bases(&mut r, moof)?;
            if self.spans.len() + spans.len() > MAX_SPANS {
                return Err(corrupt("too many spans"));
            }
            self.fragments.push(Fragment {
                start,
                moof,
                end,
                keyframe,
                first_span: self.spans.len() as u32,
                span_count: spans.len() as u8,
                first_base: self.base_offsets.len() as u32,
                base_count: bases.len() as u8,
            });
            self.spans.extend(spans);
            self.base_offsets.extend(bases);
            previous_end = end;
        }
        if !r.is_empty() {
            return Err(corrupt(
                "the fragment entries are longer than the state says",
            ));
        }
        Ok(())
    }
}

/// A track's times over the complete fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrackExtent {
    /// Earliest presentation to the end of the last presented sample.
    pub presentation: Range<i64>,
    /// First decode time to the end of the last sample.
    pub decode: Range<u64>,
}

fn refusal(reason: &'static str) -> Error {
    if reason == NOT_MP4 {
        Error::NotMp4
    } else {
        Error::Invalid(reason)
    }
}

/// Header bytes needed in all for the partial header `header` (8, or 16 for a large size).
fn header_need(header: &[u8]) -> usize {
    match read_header(header) {
        HeaderRead::NeedMore(need) => need,
        HeaderRead::Header { len, .. } => len,
    }
}

fn write_fragment(
    w: &mut Writer,
    previous_end: u64,
    fragment: &Fragment,
    spans: &[TrackSpan],
    bases: &[BaseOffset],
) {
    w.varint(fragment.start - previous_end);
    w.varint(fragment.moof - fragment.start);
    w.varint(fragment.end - fragment.moof);
    w.bool(fragment.keyframe);
    write_spans_and_bases(w, fragment.moof, spans, bases);
}

fn write_spans_and_bases(w: &mut Writer, moof: u64, spans: &[TrackSpan], bases: &[BaseOffset]) {
    w.u8(spans.len() as u8);
    for span in spans {
        w.varint(u64::from(span.track_id));
        w.u8(span.traf_number);
        w.varint(span.decode_time);
        w.varint(u64::from(span.duration));
        w.signed(i64::from(span.first_cts));
        w.signed(i64::from(span.earliest));
        w.signed(i64::from(span.end_extra));
        w.varint(u64::from(span.first_flags));
    }
    w.u8(bases.len() as u8);
    for base in bases {
        w.varint(base.at - moof);
        w.varint(base.value);
    }
}

fn read_spans_and_bases(
    r: &mut Reader,
    moof: u64,
) -> Result<(Vec<TrackSpan>, Vec<BaseOffset>), Error> {
    let corrupt = || Error::CorruptState("fragment entry");
    let count = r.u8()?;
    let mut spans = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        spans.push(TrackSpan {
            track_id: r.u32()?,
            traf_number: r.u8()?,
            decode_time: r.varint()?,
            duration: r.u32()?,
            first_cts: r.i32()?,
            earliest: r.i32()?,
            end_extra: r.i32()?,
            first_flags: r.u32()?,
        });
    }
    let count = r.u8()?;
    let mut bases = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        bases.push(BaseOffset {
            at: moof.checked_add(r.varint()?).ok_or_else(corrupt)?,
            value: r.varint()?,
        });
    }
    Ok((spans, bases))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::fragment::tests::fragment;
    use crate::mp4::movie::tests::{bx, moov};

    /// xorshift64*: deterministic splits, so a failure names its seed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1) as u64) as usize
        }
    }

    /// ftyp, moov (video 1 at 90 kHz, audio 2 at 48 kHz), then `count` one-second fragments
    /// (a keyframe every other one). Returns the file and where each fragment starts.
    fn recording(count: u64) -> (Vec<u8>, Vec<u64>) {
        let mut file = bx(b"ftyp", b"isom\0\0\0\0isomiso6");
        file.extend(moov(&[(1, 90000, b"vide"), (2, 48000, b"soun")], true));
        let mut starts = Vec::new();
        for i in 0..count {
            let (mut moof, mdat) = fragment(&[
                (
                    1,
                    i * 90000,
                    &[45000, 45000],
                    &[300 + i as u32, 40],
                    &[0, 0],
                ),
                (2, i * 48000, &[24000, 24000], &[11, 12], &[0, 0]),
            ]);
            if i % 2 == 1 {
                // First-sample flags of the video trun: not a sync sample.
                let trun = moof.windows(4).position(|w| w == b"trun").unwrap();
                moof[trun + 16..trun + 20].copy_from_slice(&0x0101_0000u32.to_be_bytes());
            }
            starts.push(file.len() as u64);
            file.extend(moof);
            file.extend(mdat);
        }
        (file, starts)
    }

    fn one_pass(file: &[u8]) -> Mp4Index {
        let mut index = Mp4Index::new();
        index.push(file).unwrap();
        index
    }

    #[test]
    fn fragments_are_indexed_with_their_times_and_keyframes() {
        let (file, starts) = recording(4);
        let index = one_pass(&file);
        assert_eq!(index.status(), Mp4Status::Fragments);
        let fragments = index.fragments();
        assert_eq!(fragments.len(), 4);
        assert_eq!(fragments.iter().map(|f| f.moof).collect::<Vec<_>>(), starts);
        assert_eq!(fragments[1].start, fragments[0].end);
        assert_eq!(index.complete_end(), file.len() as u64);
        assert_eq!(
            fragments.iter().map(|f| f.keyframe).collect::<Vec<_>>(),
            [true, false, true, false]
        );
        assert_eq!(index.latest_keyframe_fragment(), Some(&fragments[2]));
        let spans = index.spans(&fragments[3]);
        assert_eq!(spans.len(), 2);
        assert_eq!((spans[0].decode_time, spans[0].duration), (270_000, 90_000));
        assert_eq!(spans[1].decode_end(), 4 * 48000);
        assert!((index.duration_secs() - 4.0).abs() < 1e-9);
        assert_eq!(index.init_segment(), Some(0..starts[0]));
    }

    #[test]
    fn a_fragment_counts_only_once_all_its_sample_data_is_in() {
        let (file, starts) = recording(2);
        let mut index = Mp4Index::new();
        let second = starts[1] as usize;
        // The second moof and all but the last byte of its mdat.
        index.push(&file[..file.len() - 1]).unwrap();
        assert_eq!(index.fragments().len(), 1);
        assert_eq!(index.complete_end(), starts[1]);
        index.push(&file[file.len() - 1..]).unwrap();
        assert_eq!(index.fragments().len(), 2);
        // Cut inside the moof: the same first fragment only.
        let cut = one_pass(&file[..second + 20]);
        assert_eq!(cut.fragments(), &index.fragments()[..1]);
        assert_eq!(cut.used_end(), starts[1]);
    }

    #[test]
    fn any_split_of_the_pushes_gives_the_same_index() {
        let (file, _) = recording(6);
        let whole = one_pass(&file);
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut index = Mp4Index::new();
            let mut pos = 0;
            while pos < file.len() {
                let n = 1 + rng.below(if seed % 2 == 0 { 16 } else { 700 });
                let end = (pos + n).min(file.len());
                index.push(&file[pos..end]).unwrap();
                pos = end;
            }
            assert_eq!(index, whole, "seed {seed}");
        }
    }

    #[test]
    fn skipping_what_it_does_not_need_gives_the_same_index() {
        let (file, _) = recording(6);
        let mut index = Mp4Index::new();
        let mut pos = 0u64;
        let mut read = 0u64;
        while pos < file.len() as u64 {
            let skip = index.skippable().min(file.len() as u64 - pos);
            if skip > 0 {
                pos += index.skip(skip);
                continue;
            }
            let n = index.needed().max(1).min(file.len() as u64 - pos);
            index.push(&file[pos as usize..(pos + n) as usize]).unwrap();
            pos += n;
            read += n;
        }
        assert_eq!(index, one_pass(&file));
        let sample_data: u64 = (0..6).map(|i| 300 + i + 40 + 11 + 12).sum();
        assert_eq!(
            read,
            file.len() as u64 - sample_data,
            "all but the sample data is read"
        );
    }

    #[test]
    fn a_state_saved_anywhere_resumes_to_the_same_index() {
        let (file, _) = recording(5);
        let whole = one_pass(&file);
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03));
            let mut index = Mp4Index::new();
            let mut entries = Vec::new();
            let mut saved = 0;
            let mut pos = 0;
            while pos < file.len() {
                let end = (pos + 1 + rng.below(400)).min(file.len());
                index.push(&file[pos..end]).unwrap();
                pos = end;
                // Save as a server does after a PATCH: append the new entries, then the state.
                entries.extend(index.encode_fragments(saved));
                saved = index.fragments().len();
                let state = index.encode_state();
                assert_eq!(entries.len() as u64, index.entries_len());
                index = Mp4Index::restore(&state, &entries).unwrap();
            }
            assert_eq!(index, whole, "seed {seed}");
        }
        assert_eq!(whole.encode_fragments(0).len() as u64, whole.entries_len());
    }

    #[test]
    fn entries_appended_by_a_save_whose_state_was_lost_are_ignored() {
        let (file, starts) = recording(3);
        let mut index = Mp4Index::new();
        index.push(&file[..starts[2] as usize]).unwrap();
        let state = index.encode_state();
        let mut entries = index.encode_fragments(0);
        index.push(&file[starts[2] as usize..]).unwrap();
        // The crash: the third entry is appended, the state that counts it never written.
        entries.extend(index.encode_fragments(2));
        let mut resumed = Mp4Index::restore(&state, &entries).unwrap();
        assert_eq!(resumed.fragments().len(), 2);
        resumed.push(&file[starts[2] as usize..]).unwrap();
        assert_eq!(resumed, index);
    }

    #[test]
    fn damaged_states_are_refused_without_panicking() {
        let (file, _) = recording(2);
        let mut index = Mp4Index::new();
        index.push(&file[..file.len() - 5]).unwrap();
        let state = index.encode_state();
        let entries = index.encode_fragments(0);
        for at in 0..state.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut damaged = state.clone();
                damaged[at] ^= flip;
                // Either refused, or a state that can keep going without panicking.
                if let Ok(mut resumed) = Mp4Index::restore(&damaged, &entries) {
                    let _ = resumed.push(&file[file.len() - 5..]);
                    let _ = resumed.encode_state();
                }
            }
        }
        assert!(matches!(
            Mp4Index::restore(&state[..state.len() - 1], &entries),
            Err(Error::CorruptState(_))
        ));
        assert!(matches!(
            Mp4Index::restore(&state, &entries[..entries.len() - 1]),
            Err(Error::CorruptState(_))
        ));
    }

    #[test]
    fn what_is_not_a_fragmented_mp4_is_refused_with_a_reason() {
        let ftyp = bx(b"ftyp", b"isom\0\0\0\0");
        let fragmented = moov(&[(1, 90000, b"vide")], true);
        let (moof, mdat) = fragment(&[(1, 0, &[3000], &[10], &[0])]);
        let refused = |parts: &[&[u8]]| {
            let mut index = Mp4Index::new();
            let result = index.push(&parts.concat());
            match (result, index.status()) {
                (Err(Error::NotMp4), Mp4Status::Refused(_)) => "not mp4",
                (Err(Error::Invalid(reason)), Mp4Status::Refused(same)) => {
                    assert_eq!(reason, same);
                    reason
                }
                other => panic!("not refused: {other:?}"),
            }
        };
        assert_eq!(refused(&[b"\x1A\x45\xDF\xA3webm"]), "not mp4");
        assert_eq!(refused(&[&ftyp, &moof]), "a fragment comes before the moov");
        assert_eq!(
            refused(&[&ftyp, &fragmented, &moof, &mdat, &fragmented]),
            "a moov box comes after the fragments"
        );
        assert_eq!(
            refused(&[&ftyp, &moov(&[(1, 90000, b"vide")], false)]),
            "not a fragmented MP4: the moov has neither mvex nor samples"
        );
        assert_eq!(
            refused(&[&ftyp, b"\0\0\0\x04free"]),
            "a box has an impossible size"
        );
    }

    #[test]
    fn a_broken_fragment_ends_what_is_used() {
        let (file, starts) = recording(3);
        let mut broken = file.clone();
        // The second moof's traf claims more bytes than the moof holds.
        let traf = starts[1] as usize + 8 + 16;
        broken[traf..traf + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let index = one_pass(&broken);
        assert!(matches!(index.status(), Mp4Status::Stopped(_)));
        assert_eq!(index.fragments().len(), 1);
        assert_eq!(index.used_end(), starts[1]);
    }
}
