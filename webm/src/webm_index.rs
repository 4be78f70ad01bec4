//! The cluster index of a MediaRecorder WebM, learnt from its bytes in order, resumable from a
//! saved state: the WebM side of what [`crate::mp4::Mp4Index`] is for MP4.
//!
//! [`WebmIndex`] is fed the upload's bytes as they arrive ([`WebmIndex::push`]). It keeps the
//! EBML header, Info and Tracks, and walks each Cluster child by child: the bytes that decide
//! what a child is (a block's header, a Timestamp, a whole BlockGroup) are held until they are
//! in, the rest only counted. A child counts once all its bytes have arrived. It learns what the
//! finalizer needs: per cluster where it is and what of it is kept, a cue per video keyframe
//! (or per cluster without video), the timeline (for the Duration), and whether the clusters
//! can be kept verbatim. [`crate::finalize_webm`]'s first pass is this index run over the file.
//!
//! Cluster children are classified by [`ChildRules`], the rules the pull-based
//! [`crate::reader::ClusterWalker`] applies too.

use crate::cues::{Cue, Cues};
use crate::ebml::{self, read_header, read_uint, Children, Header, Vint, MAX_HEADER_LEN};
use crate::reader::{data_to_classify, is_cluster_child, is_top_level, ChildKind, ChildRules};
use crate::timing::{Timeline, TrackInfo};
use crate::wire::{Reader, Writer};
use crate::Error;

/// Largest EBML header accepted; real ones are under 64 bytes.
const MAX_EBML_HEADER: u64 = 64 << 10;
/// Largest Info or Tracks element kept in memory; CodecPrivate is the only big child.
pub(crate) const MAX_METADATA: u64 = 16 << 20;
/// Most Tags/Chapters/Attachments elements carried over; more are dropped.
pub(crate) const MAX_EXTRAS: usize = 16;
/// Bytes of Tags/Chapters/Attachments the index keeps, so a verbatim head can carry them;
/// beyond, the finalizer copies them from the upload (the rewrite path).
const MAX_KEPT_EXTRAS: u64 = 64 << 10;
/// Tracks whose timing is followed; blocks of further tracks are copied but not timed,
/// so a hostile Tracks element cannot make every block cost a long search.
const MAX_TIMED_TRACKS: usize = 64;
/// Most clusters, cue points and kept-child runs in one file: the index keeps ~64 bytes per
/// cluster and ~52 per cue point (with its encoded CuePoint), so this bounds memory against files made of tiny clusters
/// or keyframes. A recording with a cluster and a keyframe per second reaches it after 12
/// days; beyond it the file is refused and kept as uploaded.
pub const MAX_INDEX_ENTRIES: usize = 1 << 20;
/// Largest cluster child held whole to classify it (a BlockGroup); a larger one ends what is used.
const MAX_HELD_CHILD: u64 = 16 << 20;
/// TimestampScale when Info does not say: one millisecond.
const DEFAULT_TIMESTAMP_SCALE: u64 = 1_000_000;
/// Bytes of `Timestamp 0`, put in front of clusters whose blocks come before any Timestamp.
pub(crate) const ZERO_TIMESTAMP_LEN: u64 = 3;
/// Bytes taken from a push before the index looks at them, while it holds a partial element.
const PUSH_CHUNK: usize = 256 << 10;
/// Version of the saved state and entries encoding.
const STATE_VERSION: u8 = 2;
/// First bytes of a saved state.
const STATE_MAGIC: &[u8; 4] = b"LKWM";

/// One output cluster of the rewrite, described by where its kept children are in the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterEntry {
    /// Upload offset of the Cluster element (its id).
    pub start: u64,
    /// Upload offset of the cluster's data.
    pub data_start: u64,
    /// Upload offset where the cluster ended.
    pub data_end: u64,
    /// Whether the upload declared a size.
    pub known_size: bool,
    /// First kept child's start and last kept child's end.
    pub copy_start: u64,
    /// End of the last kept child.
    pub copy_end: u64,
    /// Blocks came before any Timestamp: the rewrite writes `Timestamp 0` first.
    pub zero_timestamp: bool,
    /// Size of the rewritten cluster's data.
    pub out_len: u64,
    /// The cluster's Timestamp as the upload wrote it (0 when it has none), in timestamp units.
    pub timestamp: i64,
    /// Its first block of the video track is a keyframe (without a video track: always), so a
    /// player may start there: where a live's late viewer joins.
    pub keyframe: bool,
    /// Kept children are not one run: they are `runs[first_run..first_run + run_count]`.
    first_run: u32,
    run_count: u32,
}

impl ClusterEntry {
    /// Kept children are exactly `copy_start..copy_end`.
    pub fn contiguous(&self) -> bool {
        self.run_count == 0
    }

    /// Length of the rewritten cluster, header included.
    pub fn rewritten_len(&self) -> u64 {
        ebml::header_len(ebml::ID_CLUSTER, self.out_len) as u64 + self.out_len
    }
}

/// A cue point with where its block is in the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CueEntry {
    /// The cue as the rewrite lays it out (relative to the rewritten cluster's data).
    pub cue: Cue,
    /// Offset of the block from its cluster's data start in the upload (for verbatim clusters).
    pub upload_relative: u64,
}

/// A Tags, Chapters or Attachments element carried over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extra {
    /// Upload offset.
    pub start: u64,
    /// Whole element length.
    pub len: u64,
}

/// The cue points as a verbatim finished file encodes them, after its clusters (see
/// [`crate::plan_webm`]), extended as the index learns them: a stop copies them instead of
/// encoding every one. Not saved: a restored index encodes them again.
#[derive(Debug, Clone, Default, PartialEq)]
struct EncodedCuePoints {
    /// Where the clusters start, from the Segment's data, in the file they were encoded for.
    clusters_pos: u64,
    /// Cue points encoded, from the first.
    count: usize,
    /// The CuePoint elements, one after the other.
    bytes: Vec<u8>,
}

/// How many entries a save held; see [`WebmIndex::mark`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntriesMark {
    clusters: usize,
    cues: usize,
}

/// How far the index got, and whether it can go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebmStatus {
    /// Reading the EBML header, the Segment's start, Info and Tracks.
    Head,
    /// Reading clusters.
    Clusters,
    /// The usable bytes end at this offset (the Segment's end, a broken element, the upload's
    /// end once [`WebmIndex::finish`]ed): what follows is not used.
    Ended(u64),
    /// Not a WebM this crate can finalize.
    Refused(&'static str),
}

/// Where the index is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    EbmlHeader,
    SegmentHeader,
    /// At an element boundary inside the Segment.
    Level1,
    /// Inside an unknown-size level-1 element that is skipped, at a child boundary.
    UnknownElement {
        start: u64,
    },
    /// Inside a cluster ([`WebmIndex::cluster`]), at a child boundary.
    Cluster,
    /// Nothing from `at` on is used.
    Ended {
        at: u64,
    },
    Refused(&'static str),
}

/// What is skipped, and what happens when its bytes are all in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Bytes of a level-1 element (or of a child of an unknown-size one) starting at `start`.
    Element { start: u64 },
    /// The rest of a cluster child already classified (its held part was enough).
    Child,
}

/// The cluster being read.
#[derive(Debug, Clone, PartialEq)]
struct OpenCluster {
    entry: ClusterEntry,
    /// Where the cluster must end: its size, or the Segment's.
    limit: Option<u64>,
    /// Where its size says it ends.
    declared_end: Option<u64>,
    rules: ChildRules,
    timestamp: Option<i64>,
    /// Whether its first video block was a keyframe, once one was seen.
    first_video: Option<bool>,
    blocks: usize,
    kept: u64,
    /// Start of the current run of kept children once they stopped being contiguous.
    run_start: u64,
    /// A child classified but not all in yet: its start, length and kind.
    child: Option<(u64, u64, ChildKind)>,
}

/// The incremental, resumable index of a MediaRecorder WebM; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct WebmIndex {
    /// Bytes received.
    position: u64,
    /// Received bytes not handled yet (a partial element), ending at `position`.
    pending: Vec<u8>,
    phase: Phase,
    skip_left: u64,
    skip: Skip,
    ebml_header: Vec<u8>,
    segment_data_start: u64,
    segment_end: Option<u64>,
    info: Option<(Vec<u8>, u64)>,
    tracks: Option<(Vec<u8>, Vec<TrackInfo>)>,
    extras: Vec<Extra>,
    /// The extras' bytes, while they fit in [`MAX_KEPT_EXTRAS`].
    extra_bytes: Vec<u8>,
    extras_kept: bool,
    timeline: Option<Timeline>,
    video_track: Option<u64>,
    cluster: Option<OpenCluster>,
    clusters: Vec<ClusterEntry>,
    runs: Vec<(u64, u64)>,
    cues: Vec<CueEntry>,
    /// First Cluster with blocks, and the end of the last one.
    region: Option<(u64, u64)>,
    /// A cluster of the region has an unknown size.
    unknown_size_in_region: bool,
    /// Since the region's end: something verbatim cannot carry (an element other than a
    /// Cluster, an empty cluster the rewrite would drop).
    gap_unclean: bool,
    /// The clusters can be served as uploaded.
    verbatim: bool,
    entries_len: u64,
    encoded_cues: EncodedCuePoints,
}

impl Default for WebmIndex {
    fn default() -> Self {
        Self::new()
    }
}

/// An element header read from the bytes at hand.
enum HeadAt {
    Head(Header, usize),
    NeedMore,
    Invalid,
}

/// What handling the bytes at hand did.
enum Step {
    /// Consumed this many bytes; go on.
    Consumed(usize),
    /// More bytes are needed.
    Wait,
}

impl WebmIndex {
    /// An index of nothing yet: the next byte pushed is the upload's first.
    pub fn new() -> Self {
        Self {
            position: 0,
            pending: Vec::new(),
            phase: Phase::EbmlHeader,
            skip_left: 0,
            skip: Skip::Child,
            ebml_header: Vec::new(),
            segment_data_start: 0,
            segment_end: None,
            info: None,
            tracks: None,
            extras: Vec::new(),
            extra_bytes: Vec::new(),
            extras_kept: true,
            timeline: None,
            video_track: None,
            cluster: None,
            clusters: Vec::new(),
            runs: Vec::new(),
            cues: Vec::new(),
            region: None,
            unknown_size_in_region: false,
            gap_unclean: false,
            verbatim: true,
            entries_len: 0,
            encoded_cues: EncodedCuePoints::default(),
        }
    }

    /// Feeds the next bytes of the upload (they start at [`WebmIndex::position`]).
    ///
    /// Fails once the bytes are known not to be a WebM this crate finalizes
    /// ([`WebmStatus::Refused`]); a broken or cut-off element ends what is used instead.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            if self.ignores_rest() {
                self.position += bytes.len() as u64;
                break;
            }
            if self.skip_left > 0 {
                let n = self.skip_left.min(bytes.len() as u64);
                self.skip_left -= n;
                self.position += n;
                bytes = &bytes[n as usize..];
                if self.skip_left == 0 {
                    self.skipped();
                }
                continue;
            }
            if self.pending.is_empty() {
                // Elements complete in this push are handled in place, without a copy.
                let start = self.position;
                let used = self.handle(bytes, start, false);
                self.position += used as u64;
                bytes = &bytes[used..];
                if self.skip_left > 0 || self.ignores_rest() {
                    continue;
                }
                let take = bytes.len().min(PUSH_CHUNK);
                self.pending.extend_from_slice(&bytes[..take]);
                self.position += take as u64;
                bytes = &bytes[take..];
            } else {
                let take = bytes.len().min(PUSH_CHUNK);
                self.pending.extend_from_slice(&bytes[..take]);
                self.position += take as u64;
                bytes = &bytes[take..];
            }
            self.handle_pending(false);
        }
        self.encode_new_cue_points();
        match self.phase {
            Phase::Refused(reason) => Err(refusal(reason)),
            _ => Ok(()),
        }
    }

    /// Marks the end of the upload: a partial element at the end is cut off, the last cluster
    /// ends where the upload does.
    pub fn finish(&mut self) -> Result<(), Error> {
        if !self.ignores_rest() {
            if self.skip_left > 0 {
                // What is being skipped never ends: it is cut off where it starts.
                match self.skip {
                    Skip::Element { start } => self.end_at(start),
                    Skip::Child => {
                        let start = self
                            .cluster
                            .as_ref()
                            .and_then(|c| c.child.map(|(start, _, _)| start))
                            .unwrap_or(self.position);
                        self.close_cluster(start, true);
                    }
                }
            } else {
                self.handle_pending(true);
            }
        }
        if !self.ignores_rest() {
            // handle_pending(true) consumes everything it can; what is left is cut off.
            let at = self.position - self.pending.len() as u64;
            match self.phase {
                Phase::EbmlHeader => self.refuse(NOT_WEBM),
                Phase::SegmentHeader => self.refuse("no Segment after the EBML header"),
                Phase::Cluster => self.close_cluster(at, !self.pending.is_empty()),
                Phase::UnknownElement { start } => self.end_at(start),
                _ => self.end_at(at),
            }
        }
        self.pending = Vec::new();
        self.encode_new_cue_points();
        match self.phase {
            Phase::Refused(reason) => Err(refusal(reason)),
            _ => Ok(()),
        }
    }

    /// Encodes the cue points learnt since the last call whose cluster has ended (its place in
    /// the finished file is known then), against where the clusters start in it now.
    fn encode_new_cue_points(&mut self) {
        let Some(first) = self.clusters.first().map(|c| c.start) else {
            return;
        };
        if self.encoded_cues.count == self.cues.len() {
            return;
        }
        if self.encoded_cues.count == 0 {
            let Some(position) = crate::finalize::verbatim_clusters_position(self) else {
                return;
            };
            self.encoded_cues.clusters_pos = position;
        }
        let encoded = &mut self.encoded_cues;
        while let Some(entry) = self.cues.get(encoded.count) {
            let Some(cluster) = self.clusters.get(entry.cue.cluster) else {
                break;
            };
            let cue = Cue {
                relative: entry.upload_relative,
                ..entry.cue
            };
            crate::cues::encode_cue_point(
                &mut encoded.bytes,
                &cue,
                encoded.clusters_pos + cluster.start.saturating_sub(first),
            );
            encoded.count += 1;
        }
    }

    /// Every cue point encoded as [`crate::plan_webm`] lays them out, when they were encoded
    /// for clusters at `clusters_pos` (from the Segment's data): `None` when what they assumed
    /// has changed since (extras after the clusters) or some are not encoded yet.
    pub(crate) fn encoded_cue_points(&self, clusters_pos: u64) -> Option<&[u8]> {
        let encoded = &self.encoded_cues;
        (encoded.count == self.cues.len() && encoded.clusters_pos == clusters_pos)
            .then_some(encoded.bytes.as_slice())
    }

    /// Bytes of the upload received so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Where a resumed index continues: [`WebmIndex::encode_state`] saves the index as it was
    /// before the element it has only part of, so after [`WebmIndex::restore`] push the upload
    /// from here (at most one cluster child, or Info/Tracks, before the saved position).
    pub fn resume_at(&self) -> u64 {
        self.position - self.pending.len() as u64
    }

    /// How far the index got.
    pub fn status(&self) -> WebmStatus {
        match self.phase {
            Phase::EbmlHeader | Phase::SegmentHeader => WebmStatus::Head,
            Phase::Level1 | Phase::UnknownElement { .. } if self.timeline.is_none() => {
                WebmStatus::Head
            }
            Phase::Level1 | Phase::UnknownElement { .. } | Phase::Cluster => WebmStatus::Clusters,
            Phase::Ended { at } => WebmStatus::Ended(at),
            Phase::Refused(reason) => WebmStatus::Refused(reason),
        }
    }

    /// The EBML header element.
    pub fn ebml_header(&self) -> &[u8] {
        &self.ebml_header
    }

    /// Info's children as the finished file keeps them (no Duration, Void or CRC-32).
    pub fn info_body(&self) -> Option<&[u8]> {
        self.info.as_ref().map(|(body, _)| body.as_slice())
    }

    /// Tracks' children as the finished file keeps them.
    pub fn tracks_body(&self) -> Option<&[u8]> {
        self.tracks.as_ref().map(|(body, _)| body.as_slice())
    }

    /// Tags, Chapters and Attachments carried over, in upload order.
    pub fn extras(&self) -> &[Extra] {
        &self.extras
    }

    /// Clusters with blocks, in upload order (the one being read is not listed yet).
    pub fn clusters(&self) -> &[ClusterEntry] {
        &self.clusters
    }

    /// Cue points, in upload order.
    pub fn cues(&self) -> &[CueEntry] {
        &self.cues
    }

    /// From the first block's timestamp to the end of the last frame, in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.timeline.as_ref().map_or(0.0, Timeline::duration_secs)
    }

    /// Bytes at the end of the upload that are not used (a cut-off block, garbage), once
    /// [`WebmIndex::finish`]ed.
    pub fn dropped_tail_bytes(&self) -> u64 {
        match self.phase {
            Phase::Ended { at } => self.position.saturating_sub(at),
            _ => 0,
        }
    }

    /// Whether the clusters can be kept exactly as uploaded, the finished file being then the
    /// same as the rewrite's but for the clusters' sizes: no block before a cluster's Timestamp,
    /// no child the rewrite drops (Void, CRC-32, Position, PrevSize, a broken block), nothing
    /// but clusters with blocks from the first to the last, no known size that is cut off,
    /// extras small enough to be held. MediaRecorder's files are all that.
    pub fn verbatim(&self) -> bool {
        self.verbatim && self.extras_kept
    }

    /// The upload's range holding the clusters, as kept verbatim: from the first Cluster with
    /// blocks to the end of the last one.
    pub fn cluster_region(&self) -> Option<(u64, u64)> {
        self.region
    }

    /// Whether a cluster of [`WebmIndex::cluster_region`] has an unknown size (MediaRecorder's).
    pub fn has_unknown_size_clusters(&self) -> bool {
        self.unknown_size_in_region
    }

    /// The Timestamp of the latest cluster with a Timestamp, the one being read included: how
    /// far the committed media reaches, to a cluster (timestamp units).
    pub fn latest_cluster_timestamp(&self) -> Option<i64> {
        self.cluster
            .as_ref()
            .and_then(|open| open.timestamp)
            .or_else(|| self.clusters.last().map(|c| c.timestamp))
    }

    /// The latest complete cluster that opens on a keyframe (see [`ClusterEntry::keyframe`]).
    pub fn latest_keyframe_cluster(&self) -> Option<&ClusterEntry> {
        self.clusters.iter().rev().find(|c| c.keyframe)
    }

    /// The extras' bytes, when held ([`WebmIndex::verbatim`]).
    pub(crate) fn extra_bytes(&self) -> &[u8] {
        &self.extra_bytes
    }

    /// The kept runs of a non-contiguous cluster.
    pub(crate) fn runs(&self, cluster: &ClusterEntry) -> &[(u64, u64)] {
        let start = cluster.first_run as usize;
        self.runs
            .get(start..start + cluster.run_count as usize)
            .unwrap_or(&[])
    }

    /// The timeline (for the Duration).
    pub(crate) fn timeline(&self) -> Option<&Timeline> {
        self.timeline.as_ref()
    }

    /// Info's TimestampScale: nanoseconds per timestamp unit.
    pub fn timestamp_scale(&self) -> u64 {
        self.info
            .as_ref()
            .map_or(DEFAULT_TIMESTAMP_SCALE, |(_, scale)| *scale)
    }

    /// The cues as the rewrite lays them out.
    pub(crate) fn rewrite_cues(&self) -> Cues {
        Cues {
            points: self.cues.iter().map(|entry| entry.cue).collect(),
        }
    }

    fn ignores_rest(&self) -> bool {
        matches!(self.phase, Phase::Ended { .. } | Phase::Refused(_))
    }

    fn handle_pending(&mut self, eof: bool) {
        if self.pending.is_empty() && !eof {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let start = self.position - pending.len() as u64;
        let used = self.handle(&pending, start, eof);
        self.pending = pending;
        if self.ignores_rest() {
            self.pending.clear();
        } else if self.skip_left > 0 {
            // `handle` consumed everything and skips the rest as it arrives.
            self.pending.clear();
        } else {
            self.pending.drain(..used);
        }
    }

    /// Handles the bytes `data` (upload offset `start`) element by element; returns how many
    /// were consumed. Stops at an element not all there, or having set a skip beyond them.
    fn handle(&mut self, data: &[u8], start: u64, eof: bool) -> usize {
        let mut used = 0usize;
        while !self.ignores_rest() && self.skip_left == 0 {
            let at = start + used as u64;
            let rest = &data[used..];
            let before = self.phase;
            let step = match self.phase {
                Phase::EbmlHeader => self.read_ebml_header(rest, eof),
                Phase::SegmentHeader => self.read_segment_header(rest, at, eof),
                Phase::Level1 => self.read_level1(rest, at, eof),
                Phase::UnknownElement { start } => self.read_unknown_child(rest, at, start, eof),
                Phase::Cluster => self.read_cluster_child(rest, at, eof),
                Phase::Ended { .. } | Phase::Refused(_) => Step::Wait,
            };
            match step {
                Step::Consumed(0) if self.phase == before && self.skip_left == 0 => break,
                Step::Consumed(n) => used += n,
                Step::Wait => break,
            }
        }
        used
    }

    /// Starts skipping `len` bytes of which `rest` holds the first: consumes what is there.
    fn skip_bytes(&mut self, rest: &[u8], len: u64, skip: Skip) -> Step {
        if (rest.len() as u64) >= len {
            if skip == Skip::Child {
                self.skip = skip;
                self.skipped();
            }
            return Step::Consumed(len as usize);
        }
        self.skip_left = len - rest.len() as u64;
        self.skip = skip;
        Step::Consumed(rest.len())
    }

    /// The skipped bytes are all in.
    fn skipped(&mut self) {
        let skip = std::mem::replace(&mut self.skip, Skip::Child);
        if skip == Skip::Child {
            self.child_complete();
        }
    }

    fn read_ebml_header(&mut self, rest: &[u8], eof: bool) -> Step {
        let header = match head_at(rest, u64::MAX) {
            HeadAt::Head(header, _) => header,
            HeadAt::NeedMore if !eof && (rest.len() as u64) < MAX_EBML_HEADER => return Step::Wait,
            _ => return self.refused(NOT_WEBM),
        };
        let end = header
            .size
            .and_then(|size| size.checked_add(header.len as u64))
            .filter(|&end| header.id == ebml::ID_EBML && end <= MAX_EBML_HEADER);
        let Some(end) = end else {
            return self.refused(NOT_WEBM);
        };
        let Some(bytes) = rest.get(..end as usize) else {
            return if eof {
                self.refused(NOT_WEBM)
            } else {
                Step::Wait
            };
        };
        if !is_webm_header(bytes) {
            return self.refused(NOT_WEBM);
        }
        self.ebml_header = bytes.to_vec();
        self.phase = Phase::SegmentHeader;
        Step::Consumed(end as usize)
    }

    fn read_segment_header(&mut self, rest: &[u8], at: u64, eof: bool) -> Step {
        match head_at(rest, u64::MAX) {
            HeadAt::Head(header, len) if header.id == ebml::ID_SEGMENT => {
                self.segment_data_start = at + len as u64;
                self.segment_end = header
                    .size
                    .and_then(|s| self.segment_data_start.checked_add(s));
                self.phase = Phase::Level1;
                Step::Consumed(len)
            }
            HeadAt::NeedMore if !eof => Step::Wait,
            _ => self.refused("no Segment after the EBML header"),
        }
    }

    /// The limit elements must fit in: the Segment's end, or the upload's end once known.
    fn limit(&self, at: u64, rest: &[u8], eof: bool) -> u64 {
        let upload = if eof {
            at + rest.len() as u64
        } else {
            u64::MAX
        };
        self.segment_end.map_or(upload, |end| end.min(upload))
    }

    fn read_level1(&mut self, rest: &[u8], at: u64, eof: bool) -> Step {
        let limit = self.limit(at, rest, eof);
        if at >= limit {
            self.end_at(at);
            return Step::Consumed(0);
        }
        let (header, len) = match head_at(rest, limit - at) {
            HeadAt::Head(header, len) => (header, len),
            HeadAt::NeedMore if !eof && at + (rest.len() as u64) < limit => return Step::Wait,
            HeadAt::NeedMore | HeadAt::Invalid => {
                self.end_at(at);
                return Step::Consumed(0);
            }
        };
        let data_start = at + len as u64;
        let end = header.size.and_then(|size| data_start.checked_add(size));
        let before_clusters = self.clusters.is_empty() && self.timeline.is_none();
        match header.id {
            ebml::ID_CLUSTER => self.open_cluster(at, data_start, end, limit),
            ebml::ID_INFO | ebml::ID_TRACKS if before_clusters => {
                self.read_metadata(rest, &header, len, end, limit, eof)
            }
            ebml::ID_EBML | ebml::ID_SEGMENT => {
                // A second stream appended to the first: not ours to merge.
                self.end_at(at);
                Step::Consumed(0)
            }
            id => {
                if self.region.is_some() {
                    self.gap_unclean = true;
                }
                match end {
                    Some(end) if end <= limit => {
                        let extra =
                            matches!(id, ebml::ID_TAGS | ebml::ID_CHAPTERS | ebml::ID_ATTACHMENTS)
                                && self.extras.len() < MAX_EXTRAS;
                        if extra {
                            self.read_extra(rest, at, end, eof)
                        } else {
                            self.skip_bytes(rest, end - at, Skip::Element { start: at })
                        }
                    }
                    Some(_) => {
                        self.end_at(at);
                        Step::Consumed(0)
                    }
                    None => {
                        self.phase = Phase::UnknownElement { start: at };
                        Step::Consumed(len)
                    }
                }
            }
        }
    }

    /// A Tags, Chapters or Attachments element: noted, and held while the extras are small.
    fn read_extra(&mut self, rest: &[u8], at: u64, end: u64, eof: bool) -> Step {
        let len = end - at;
        if self.extras_kept && self.extra_bytes.len() as u64 + len <= MAX_KEPT_EXTRAS {
            let Some(bytes) = rest.get(..len as usize) else {
                if eof {
                    self.end_at(at);
                    return Step::Consumed(0);
                }
                return Step::Wait;
            };
            self.extra_bytes.extend_from_slice(bytes);
            self.extras.push(Extra { start: at, len });
            return Step::Consumed(len as usize);
        }
        self.extras_kept = false;
        self.extra_bytes = Vec::new();
        self.extras.push(Extra { start: at, len });
        self.skip_bytes(rest, len, Skip::Element { start: at })
    }

    /// Info or Tracks before the first cluster, read whole.
    fn read_metadata(
        &mut self,
        rest: &[u8],
        header: &Header,
        len: usize,
        end: Option<u64>,
        limit: u64,
        eof: bool,
    ) -> Step {
        const BROKEN: &str = "Info or Tracks is truncated or malformed";
        let body_len = match end {
            Some(end) => {
                let size = header.size.unwrap_or(0);
                if end > limit || size > MAX_METADATA {
                    return self.refused(BROKEN);
                }
                if (rest.len() as u64) < len as u64 + size {
                    return if eof {
                        self.refused(BROKEN)
                    } else {
                        Step::Wait
                    };
                }
                size as usize
            }
            // Unknown size: the element ends at the next level-1 id.
            None => {
                let mut pos = len;
                loop {
                    if (pos - len) as u64 > MAX_METADATA {
                        return self.refused(BROKEN);
                    }
                    match head_at(&rest[pos..], u64::MAX) {
                        HeadAt::Head(child, _) if is_top_level(child.id) => break,
                        HeadAt::Head(child, child_len) => {
                            let Some(size) = child.size else {
                                return self.refused(BROKEN);
                            };
                            let child_end = (pos + child_len) as u64 + size;
                            if child_end > rest.len() as u64 {
                                return if eof {
                                    self.refused(BROKEN)
                                } else {
                                    Step::Wait
                                };
                            }
                            pos = child_end as usize;
                        }
                        HeadAt::NeedMore if eof && pos == rest.len() => break,
                        HeadAt::NeedMore if !eof => return Step::Wait,
                        HeadAt::NeedMore | HeadAt::Invalid => return self.refused(BROKEN),
                    }
                }
                pos - len
            }
        };
        let body = &rest[len..len + body_len];
        if header.id == ebml::ID_INFO {
            if self.info.is_none() {
                self.info = Some(rewrite_info(body));
            }
        } else if self.tracks.is_none() {
            self.tracks = Some(read_tracks(body));
        }
        Step::Consumed(len + body_len)
    }

    /// A child of an unknown-size level-1 element being skipped: it ends at the next level-1 id.
    fn read_unknown_child(&mut self, rest: &[u8], at: u64, start: u64, eof: bool) -> Step {
        let limit = self.limit(at, rest, eof);
        if at >= limit {
            self.phase = Phase::Level1;
            return Step::Consumed(0);
        }
        match head_at(rest, limit - at) {
            HeadAt::Head(child, _) if is_top_level(child.id) => {
                self.phase = Phase::Level1;
                Step::Consumed(0)
            }
            HeadAt::Head(child, len) => {
                match child.size.and_then(|s| (at + len as u64).checked_add(s)) {
                    Some(end) if end <= limit => {
                        self.skip_bytes(rest, end - at, Skip::Element { start })
                    }
                    _ => {
                        self.end_at(start);
                        Step::Consumed(0)
                    }
                }
            }
            HeadAt::NeedMore if !eof && at + (rest.len() as u64) < limit => Step::Wait,
            HeadAt::NeedMore | HeadAt::Invalid => {
                self.end_at(start);
                Step::Consumed(0)
            }
        }
    }

    fn open_cluster(&mut self, at: u64, data_start: u64, end: Option<u64>, limit: u64) -> Step {
        if self.timeline.is_none() {
            let scale = self
                .info
                .get_or_insert_with(|| rewrite_info(&default_info()))
                .1;
            let Some((_, entries)) = &self.tracks else {
                return self.refused("no Tracks before the first Cluster");
            };
            if entries.is_empty() {
                return self.refused("Tracks declares no track");
            }
            self.video_track = entries.iter().find(|t| t.is_video()).map(|t| t.number);
            self.timeline = Some(Timeline::new(scale, entries));
        }
        let limit = match (end, limit) {
            (Some(end), u64::MAX) => Some(end),
            (Some(end), limit) => Some(end.min(limit)),
            (None, u64::MAX) => None,
            (None, limit) => Some(limit),
        };
        self.cluster = Some(OpenCluster {
            entry: ClusterEntry {
                start: at,
                data_start,
                data_end: data_start,
                known_size: end.is_some(),
                copy_start: 0,
                copy_end: 0,
                zero_timestamp: false,
                out_len: 0,
                timestamp: 0,
                keyframe: false,
                first_run: self.runs.len() as u32,
                run_count: 0,
            },
            limit,
            declared_end: end,
            rules: ChildRules::default(),
            timestamp: None,
            first_video: None,
            blocks: 0,
            kept: 0,
            run_start: 0,
            child: None,
        });
        self.phase = Phase::Cluster;
        Step::Consumed((data_start - at) as usize)
    }

    fn read_cluster_child(&mut self, rest: &[u8], at: u64, eof: bool) -> Step {
        let upload_end = if eof {
            at + rest.len() as u64
        } else {
            u64::MAX
        };
        let Some(cluster) = &self.cluster else {
            self.phase = Phase::Level1;
            return Step::Consumed(0);
        };
        let known_size = cluster.entry.known_size;
        // The cluster's own end, the Segment's, or (at the end of the upload) the upload's.
        let limit = cluster.limit.unwrap_or(u64::MAX).min(upload_end);
        if at >= limit {
            self.close_cluster(at, false);
            return Step::Consumed(0);
        }
        let (header, len) = match head_at(rest, limit - at) {
            HeadAt::Head(header, len) => (header, len),
            HeadAt::NeedMore if at + (rest.len() as u64) < limit => return Step::Wait,
            HeadAt::NeedMore | HeadAt::Invalid => {
                self.close_cluster(at, true);
                return Step::Consumed(0);
            }
        };
        if !known_size && !is_cluster_child(header.id) {
            self.close_cluster(at, false);
            return Step::Consumed(0);
        }
        let data_start = at + len as u64;
        // A child of unknown size, or past the cluster's (or the Segment's) end, is broken.
        let Some(end) = header
            .size
            .and_then(|size| data_start.checked_add(size))
            .filter(|&end| end <= limit)
        else {
            self.close_cluster(at, true);
            return Step::Consumed(0);
        };
        let size = end - data_start;
        let need = data_to_classify(header.id, size);
        if header.id == ebml::ID_BLOCKGROUP && need > MAX_HELD_CHILD {
            self.close_cluster(at, true);
            return Step::Consumed(0);
        }
        let Some(data) = rest.get(len..len + need as usize) else {
            return if eof || (at + rest.len() as u64) >= limit {
                self.close_cluster(at, true);
                Step::Consumed(0)
            } else {
                Step::Wait
            };
        };
        let Some(cluster) = &mut self.cluster else {
            return Step::Wait;
        };
        let kind = cluster.rules.classify(header.id, size, data);
        if matches!(kind, ChildKind::Dropped) {
            // The rewrite leaves it out (even a Void or CRC-32, harmless as they are): the
            // finished file is the same whichever way it is made.
            self.verbatim = false;
        }
        cluster.child = Some((at, end - at, kind));
        self.skip_bytes(rest, end - at, Skip::Child)
    }

    /// The classified child's bytes are all in: it counts.
    fn child_complete(&mut self) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let Some((start, len, kind)) = cluster.child.take() else {
            return;
        };
        let end = start + len;
        let keep = !matches!(kind, ChildKind::Dropped);
        if keep {
            if cluster.kept == 0 {
                cluster.entry.copy_start = start;
            } else if cluster.entry.copy_end != start {
                // A dropped child split the kept ones: the run so far ends here.
                let run_start = if cluster.entry.run_count == 0 {
                    cluster.entry.copy_start
                } else {
                    cluster.run_start
                };
                self.runs.push((run_start, cluster.entry.copy_end));
                cluster.entry.run_count += 1;
                cluster.run_start = start;
            }
        }
        match kind {
            ChildKind::Timestamp(ts) => {
                cluster.timestamp = Some(i64::try_from(ts).unwrap_or(i64::MAX));
            }
            ChildKind::Block(block) => {
                if cluster.timestamp.is_none() {
                    cluster.entry.zero_timestamp = true;
                    cluster.timestamp = Some(0);
                    self.verbatim = false;
                }
                let ts = cluster
                    .timestamp
                    .unwrap_or(0)
                    .saturating_add(i64::from(block.header.relative_ts));
                if let Some(timeline) = &mut self.timeline {
                    timeline.add(ts, &block);
                }
                // The synthesized Timestamp goes first, before every kept child.
                let relative = if cluster.entry.zero_timestamp {
                    ZERO_TIMESTAMP_LEN + cluster.kept
                } else {
                    cluster.kept
                };
                if self.video_track == Some(block.header.track) && cluster.first_video.is_none() {
                    cluster.first_video = Some(block.keyframe);
                }
                let seek_point = match self.video_track {
                    Some(video) => block.header.track == video && block.keyframe,
                    None => cluster.blocks == 0,
                };
                if seek_point {
                    if self.cues.len() >= MAX_INDEX_ENTRIES {
                        return self.refuse("too many keyframes to index");
                    }
                    let entry = CueEntry {
                        cue: Cue {
                            time: u64::try_from(ts).unwrap_or(0),
                            track: block.header.track,
                            cluster: self.clusters.len(),
                            relative,
                        },
                        upload_relative: start - cluster.entry.data_start,
                    };
                    self.entries_len += record_len(|w| write_cue(w, &entry));
                    self.cues.push(entry);
                }
                cluster.blocks += 1;
            }
            ChildKind::Opaque | ChildKind::Dropped => {}
        }
        if keep {
            cluster.kept += len;
            cluster.entry.copy_end = end;
        }
        if self.runs.len() > MAX_INDEX_ENTRIES {
            self.refuse("too many dropped elements to index");
        }
    }

    /// Ends the open cluster at `at`; `broken` when what is there cannot be read (nothing
    /// from `at` on is used then).
    fn close_cluster(&mut self, at: u64, broken: bool) {
        let Some(mut cluster) = self.cluster.take() else {
            return;
        };
        cluster.entry.data_end = at;
        if cluster.entry.run_count > 0 {
            // The last run, so the runs cover every kept child.
            self.runs.push((cluster.run_start, cluster.entry.copy_end));
            cluster.entry.run_count += 1;
        }
        if cluster.declared_end.is_some_and(|end| end != at) {
            // Its size claims bytes that are cut off or past the Segment: only the rewrite
            // writes the right one.
            self.verbatim = false;
        }
        if cluster.blocks > 0 {
            if self.gap_unclean {
                // Something between this cluster and the previous cannot ride along verbatim.
                self.verbatim = false;
            }
            let first = self.region.map_or(cluster.entry.start, |(first, _)| first);
            self.region = Some((first, at));
            self.gap_unclean = false;
            self.unknown_size_in_region |= !cluster.entry.known_size;
            let zero = if cluster.entry.zero_timestamp {
                ZERO_TIMESTAMP_LEN
            } else {
                0
            };
            cluster.entry.out_len = cluster.kept + zero;
            cluster.entry.timestamp = cluster.timestamp.unwrap_or(0);
            cluster.entry.keyframe = match self.video_track {
                Some(_) => cluster.first_video == Some(true),
                None => true,
            };
            let entry = cluster.entry;
            let previous = self.clusters.last().map_or(0, |c| c.start);
            self.entries_len += record_len(|w| write_cluster(w, previous, &entry, &self.runs));
            self.clusters.push(entry);
            if self.clusters.len() > MAX_INDEX_ENTRIES {
                return self.refuse("too many clusters to index");
            }
        } else {
            // An empty cluster adds no cue, and its runs are not needed. The rewrite drops it:
            // between two kept clusters it would stay, so verbatim is off then.
            self.runs.truncate(cluster.entry.first_run as usize);
            if self.region.is_some() {
                self.gap_unclean = true;
            }
        }
        if broken {
            self.end_at(at);
        } else {
            self.phase = Phase::Level1;
        }
    }

    fn end_at(&mut self, at: u64) {
        if self.cluster.is_some() {
            self.close_cluster(at, false);
        }
        self.skip_left = 0;
        self.skip = Skip::Child;
        self.phase = Phase::Ended { at };
    }

    fn refuse(&mut self, reason: &'static str) {
        self.skip_left = 0;
        self.skip = Skip::Child;
        self.phase = Phase::Refused(reason);
    }

    fn refused(&mut self, reason: &'static str) -> Step {
        self.refuse(reason);
        Step::Consumed(0)
    }
}

/// The reason given when the bytes do not start a WebM.
const NOT_WEBM: &str = "not a WebM file";

fn refusal(reason: &'static str) -> Error {
    if reason == NOT_WEBM {
        Error::NotWebM
    } else {
        Error::Invalid(reason)
    }
}

/// The element header at the start of `rest`, looking at no more than `window` bytes.
fn head_at(rest: &[u8], window: u64) -> HeadAt {
    let window = usize::try_from(window)
        .unwrap_or(usize::MAX)
        .min(MAX_HEADER_LEN);
    match read_header(&rest[..rest.len().min(window)]) {
        Vint::Done(header, len) => HeadAt::Head(header, len),
        Vint::NeedMore => HeadAt::NeedMore,
        Vint::Invalid => HeadAt::Invalid,
    }
}

/// Whether `bytes` start with an EBML header whose DocType is `webm`.
pub fn is_webm_header(bytes: &[u8]) -> bool {
    let Vint::Done(header, len) = read_header(bytes) else {
        return false;
    };
    if header.id != ebml::ID_EBML {
        return false;
    }
    let rest = &bytes[len..];
    let body = match header.size {
        Some(size) => &rest[..usize::try_from(size).unwrap_or(usize::MAX).min(rest.len())],
        None => return false,
    };
    Children::new(body)
        .find(|child| child.id == ebml::ID_DOCTYPE)
        .is_some_and(|doctype| trim_nul(doctype.data) == b"webm")
}

/// EBML strings may be padded with NUL bytes.
fn trim_nul(data: &[u8]) -> &[u8] {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    &data[..end]
}

/// Info children kept in the output (Duration is recomputed; Void and CRC-32 go) and the TimestampScale.
fn rewrite_info(body: &[u8]) -> (Vec<u8>, u64) {
    let mut kept = Vec::with_capacity(body.len());
    let mut scale = DEFAULT_TIMESTAMP_SCALE;
    for child in Children::new(body) {
        match child.id {
            ebml::ID_DURATION | ebml::ID_VOID | ebml::ID_CRC32 => {}
            ebml::ID_TIMESTAMPSCALE => {
                match read_uint(child.data) {
                    Some(value) if value > 0 => {
                        scale = value;
                        kept.extend_from_slice(child.raw);
                    }
                    // A zero or oversized scale is unusable: let the default apply.
                    _ => {}
                }
            }
            _ => kept.extend_from_slice(child.raw),
        }
    }
    (kept, scale)
}

/// Tracks children kept in the output, and what each TrackEntry says.
fn read_tracks(body: &[u8]) -> (Vec<u8>, Vec<TrackInfo>) {
    let mut kept = Vec::with_capacity(body.len());
    let mut tracks = Vec::new();
    for child in Children::new(body) {
        if matches!(child.id, ebml::ID_VOID | ebml::ID_CRC32) {
            continue;
        }
        kept.extend_from_slice(child.raw);
        if child.id != ebml::ID_TRACKENTRY {
            continue;
        }
        let mut track = TrackInfo {
            number: 0,
            kind: 0,
            codec: String::new(),
            default_duration_ns: None,
        };
        for field in Children::new(child.data) {
            match field.id {
                ebml::ID_TRACKNUMBER => track.number = read_uint(field.data).unwrap_or(0),
                ebml::ID_TRACKTYPE => track.kind = read_uint(field.data).unwrap_or(0),
                ebml::ID_CODECID => {
                    track.codec = String::from_utf8_lossy(trim_nul(field.data)).into_owned();
                }
                ebml::ID_DEFAULTDURATION => track.default_duration_ns = read_uint(field.data),
                _ => {}
            }
        }
        if track.number > 0 && tracks.len() < MAX_TIMED_TRACKS {
            tracks.push(track);
        }
    }
    (kept, tracks)
}

/// Info body used when the input has none: the default TimestampScale, said explicitly.
fn default_info() -> Vec<u8> {
    let mut body = Vec::new();
    ebml::write_uint(&mut body, ebml::ID_TIMESTAMPSCALE, DEFAULT_TIMESTAMP_SCALE);
    body
}

/// Entry records: a cue, or a cluster with its runs.
const RECORD_CUE: u8 = 1;
const RECORD_CLUSTER: u8 = 2;

fn record_len(write: impl FnOnce(&mut Writer)) -> u64 {
    let mut w = Writer::default();
    write(&mut w);
    w.out.len() as u64
}

fn write_cue(w: &mut Writer, entry: &CueEntry) {
    w.u8(RECORD_CUE);
    w.varint(entry.cue.time);
    w.varint(entry.cue.track);
    w.varint(entry.cue.relative);
    w.varint(entry.upload_relative);
}

fn write_cluster(w: &mut Writer, previous_start: u64, entry: &ClusterEntry, runs: &[(u64, u64)]) {
    w.u8(RECORD_CLUSTER);
    w.varint(entry.start - previous_start);
    w.varint(entry.data_start - entry.start);
    w.varint(entry.data_end - entry.data_start);
    w.bool(entry.known_size);
    w.varint(entry.copy_start - entry.data_start);
    w.varint(entry.copy_end - entry.copy_start);
    w.bool(entry.zero_timestamp);
    w.varint(entry.out_len);
    w.signed(entry.timestamp);
    w.bool(entry.keyframe);
    w.varint(u64::from(entry.run_count));
    let first = entry.first_run as usize;
    for &(start, end) in runs
        .get(first..first + entry.run_count as usize)
        .unwrap_or(&[])
    {
        w.varint(start - entry.data_start);
        w.varint(end - start);
    }
}

impl WebmIndex {
    /// The fixed part of the saved state, rewritten at every save: small (the EBML header,
    /// Info, Tracks, held extras, the timeline, the cluster being read), saved as of
    /// [`WebmIndex::resume_at`].
    ///
    /// Save [`WebmIndex::encode_entries`] first (appended to what was saved), then this;
    /// [`WebmIndex::restore`] takes both.
    pub fn encode_state(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(STATE_MAGIC);
        w.u8(STATE_VERSION);
        w.varint(self.resume_at());
        match self.phase {
            Phase::EbmlHeader => w.u8(0),
            Phase::SegmentHeader => w.u8(1),
            Phase::Level1 => w.u8(2),
            Phase::UnknownElement { start } => {
                w.u8(3);
                w.varint(start);
            }
            Phase::Cluster => w.u8(4),
            Phase::Ended { at } => {
                w.u8(5);
                w.varint(at);
            }
            Phase::Refused(reason) => {
                w.u8(6);
                let code = REASONS.iter().position(|r| *r == reason).unwrap_or(0);
                w.u8(code as u8);
            }
        }
        w.varint(self.skip_left);
        match self.skip {
            Skip::Element { start } => {
                w.u8(0);
                w.varint(start);
            }
            Skip::Child => w.u8(1),
        }
        w.bytes(&self.ebml_header);
        w.varint(self.segment_data_start);
        w.option(self.segment_end);
        match &self.info {
            Some((body, scale)) => {
                w.u8(1);
                w.bytes(body);
                w.varint(*scale);
            }
            None => w.u8(0),
        }
        match &self.tracks {
            Some((body, _)) => {
                w.u8(1);
                w.bytes(body);
            }
            None => w.u8(0),
        }
        w.varint(self.extras.len() as u64);
        for extra in &self.extras {
            w.varint(extra.start);
            w.varint(extra.len);
        }
        w.bytes(&self.extra_bytes);
        w.bool(self.extras_kept);
        match &self.timeline {
            Some(timeline) => {
                w.u8(1);
                timeline.encode(&mut w);
            }
            None => w.u8(0),
        }
        w.option(self.video_track);
        match &self.cluster {
            Some(cluster) => {
                w.u8(1);
                let e = &cluster.entry;
                w.varint(e.start);
                w.varint(e.data_start);
                w.bool(e.known_size);
                w.varint(e.copy_start);
                w.varint(e.copy_end);
                w.bool(e.zero_timestamp);
                w.varint(u64::from(e.first_run));
                w.varint(u64::from(e.run_count));
                w.option(cluster.limit);
                w.option(cluster.declared_end);
                w.bool(cluster.rules.seen_block);
                w.bool(cluster.rules.seen_timestamp);
                w.signed_option(cluster.timestamp);
                w.option(cluster.first_video.map(u64::from));
                w.varint(cluster.blocks as u64);
                w.varint(cluster.kept);
                w.varint(cluster.run_start);
                match cluster.child {
                    Some((start, len, kind)) => {
                        w.u8(1);
                        w.varint(start);
                        w.varint(len);
                        write_kind(&mut w, &kind);
                    }
                    None => w.u8(0),
                }
            }
            None => w.u8(0),
        }
        // Runs of the open cluster are not yet in a cluster record: they ride here.
        let open_runs = self
            .cluster
            .as_ref()
            .map_or(&[][..], |c| &self.runs[c.entry.first_run as usize..]);
        w.varint(open_runs.len() as u64);
        for &(start, end) in open_runs {
            w.varint(start);
            w.varint(end);
        }
        match self.region {
            Some((first, end)) => {
                w.u8(1);
                w.varint(first);
                w.varint(end);
            }
            None => w.u8(0),
        }
        w.bool(self.unknown_size_in_region);
        w.bool(self.gap_unclean);
        w.bool(self.verbatim);
        w.varint(self.clusters.len() as u64);
        w.varint(self.cues.len() as u64);
        w.varint(self.entries_len);
        w.out
    }

    /// How many entries there are: give it back to [`WebmIndex::encode_entries`] at the next
    /// save (a restored index's mark is what its saved entries hold).
    pub fn mark(&self) -> EntriesMark {
        EntriesMark {
            clusters: self.clusters.len(),
            cues: self.cues.len(),
        }
    }

    /// The entries (cue points and clusters, in the order they were learnt) after `saved`:
    /// what to append to the entries saved so far.
    pub fn encode_entries(&self, saved: EntriesMark) -> Vec<u8> {
        let mut w = Writer::default();
        let mut cue = saved.cues.min(self.cues.len());
        let from = saved.clusters.min(self.clusters.len());
        let mut previous = from.checked_sub(1).map_or(0, |i| self.clusters[i].start);
        for (i, cluster) in self.clusters.iter().enumerate().skip(from) {
            // A cluster's cue points are learnt before the cluster ends.
            while cue < self.cues.len() && self.cues[cue].cue.cluster <= i {
                write_cue(&mut w, &self.cues[cue]);
                cue += 1;
            }
            write_cluster(&mut w, previous, cluster, &self.runs);
            previous = cluster.start;
        }
        for entry in &self.cues[cue..] {
            write_cue(&mut w, entry);
        }
        w.out
    }

    /// Bytes of all entries: where a saved entries log must end for this state (bytes past it
    /// were appended by a save whose state was never written: cut them).
    pub fn entries_len(&self) -> u64 {
        self.entries_len
    }

    /// Resumes from a state saved by [`WebmIndex::encode_state`] and the entries saved with it
    /// (`entries` may run past the state's [`WebmIndex::entries_len`]: the excess is ignored).
    /// Push the upload from [`WebmIndex::resume_at`] on.
    pub fn restore(state: &[u8], entries: &[u8]) -> Result<Self, Error> {
        let corrupt = Error::CorruptState;
        let mut r = Reader::new(state);
        if r.raw(4)? != &STATE_MAGIC[..] {
            return Err(corrupt("not a saved WebM index"));
        }
        if r.u8()? != STATE_VERSION {
            return Err(corrupt("a WebM index saved by another version"));
        }
        let mut index = Self::new();
        index.position = r.varint()?;
        index.phase = match r.u8()? {
            0 => Phase::EbmlHeader,
            1 => Phase::SegmentHeader,
            2 => Phase::Level1,
            3 => Phase::UnknownElement { start: r.varint()? },
            4 => Phase::Cluster,
            5 => Phase::Ended { at: r.varint()? },
            6 => Phase::Refused(
                REASONS
                    .get(usize::from(r.u8()?))
                    .copied()
                    .ok_or(corrupt("reason"))?,
            ),
            _ => return Err(corrupt("phase")),
        };
        index.skip_left = r.varint()?;
        index.skip = match r.u8()? {
            0 => Skip::Element { start: r.varint()? },
            1 => Skip::Child,
            _ => return Err(corrupt("skip")),
        };
        index.ebml_header = r.bytes(MAX_EBML_HEADER as usize)?.to_vec();
        index.segment_data_start = r.varint()?;
        index.segment_end = r.option()?;
        if r.bool()? {
            let body = r.bytes(MAX_METADATA as usize)?.to_vec();
            index.info = Some((body, r.varint()?.max(1)));
        }
        if r.bool()? {
            index.tracks = Some(read_tracks(r.bytes(MAX_METADATA as usize)?));
        }
        let extras = r.varint()?;
        if extras > MAX_EXTRAS as u64 {
            return Err(corrupt("extras"));
        }
        for _ in 0..extras {
            index.extras.push(Extra {
                start: r.varint()?,
                len: r.varint()?,
            });
        }
        index.extra_bytes = r.bytes(MAX_KEPT_EXTRAS as usize)?.to_vec();
        index.extras_kept = r.bool()?;
        if r.bool()? {
            index.timeline = Some(Timeline::decode(&mut r)?);
        }
        index.video_track = r.option()?;
        let open = if r.bool()? {
            let start = r.varint()?;
            let data_start = r.varint()?;
            let known_size = r.bool()?;
            let copy_start = r.varint()?;
            let copy_end = r.varint()?;
            let zero_timestamp = r.bool()?;
            let first_run = r.u32()?;
            let run_count = r.u32()?;
            let limit = r.option()?;
            let declared_end = r.option()?;
            let rules = ChildRules {
                seen_block: r.bool()?,
                seen_timestamp: r.bool()?,
            };
            let timestamp = r.signed_option()?;
            let first_video = match r.option()? {
                None => None,
                Some(0) => Some(false),
                Some(1) => Some(true),
                Some(_) => return Err(corrupt("the cluster being read")),
            };
            let blocks = usize::try_from(r.varint()?).map_err(|_| corrupt("blocks"))?;
            let kept = r.varint()?;
            let run_start = r.varint()?;
            let child = if r.bool()? {
                Some((r.varint()?, r.varint()?, read_kind(&mut r)?))
            } else {
                None
            };
            Some(OpenCluster {
                entry: ClusterEntry {
                    start,
                    data_start,
                    data_end: data_start,
                    known_size,
                    copy_start,
                    copy_end,
                    zero_timestamp,
                    out_len: 0,
                    timestamp: 0,
                    keyframe: false,
                    first_run,
                    run_count,
                },
                limit,
                declared_end,
                rules,
                timestamp,
                first_video,
                blocks,
                kept,
                run_start,
                child,
            })
        } else {
            None
        };
        let open_runs = usize::try_from(r.varint()?).map_err(|_| corrupt("runs"))?;
        if open_runs > MAX_INDEX_ENTRIES {
            return Err(corrupt("runs"));
        }
        let mut pending_runs = Vec::with_capacity(open_runs.min(1024));
        for _ in 0..open_runs {
            pending_runs.push((r.varint()?, r.varint()?));
        }
        index.region = if r.bool()? {
            Some((r.varint()?, r.varint()?))
        } else {
            None
        };
        index.unknown_size_in_region = r.bool()?;
        index.gap_unclean = r.bool()?;
        index.verbatim = r.bool()?;
        let clusters = usize::try_from(r.varint()?).map_err(|_| corrupt("clusters"))?;
        let cues = usize::try_from(r.varint()?).map_err(|_| corrupt("cues"))?;
        let entries_len = r.varint()?;
        if !r.is_empty() {
            return Err(corrupt("bytes after the state"));
        }
        let entries = usize::try_from(entries_len)
            .ok()
            .and_then(|len| entries.get(..len))
            .ok_or(corrupt("the entries are shorter than the state says"))?;
        index.read_entries(entries, clusters, cues)?;
        index.entries_len = entries_len;
        if let Some(mut cluster) = open {
            if cluster.entry.first_run as usize != index.runs.len()
                || cluster.entry.run_count as usize != open_runs
                || cluster.entry.data_start < cluster.entry.start
                || cluster.child.is_some_and(|(start, len, _)| {
                    start < cluster.entry.data_start || start.checked_add(len).is_none()
                })
            {
                return Err(corrupt("the cluster being read"));
            }
            cluster.entry.first_run = index.runs.len() as u32;
            index.runs.extend(pending_runs);
            index.cluster = Some(cluster);
        } else if open_runs > 0 {
            return Err(corrupt("runs without a cluster"));
        }
        let consistent = (index.phase == Phase::Cluster) == index.cluster.is_some()
            && (index.skip_left == 0 || index.skip != Skip::Child || index.cluster.is_some())
            && (index.timeline.is_some() || index.clusters.is_empty())
            && index
                .clusters
                .last()
                .is_none_or(|c| c.data_end <= index.position);
        if !consistent {
            return Err(corrupt("positions out of order"));
        }
        index.encode_new_cue_points();
        Ok(index)
    }

    fn read_entries(&mut self, entries: &[u8], clusters: usize, cues: usize) -> Result<(), Error> {
        let corrupt = Error::CorruptState;
        if clusters > MAX_INDEX_ENTRIES || cues > MAX_INDEX_ENTRIES {
            return Err(corrupt("too many entries"));
        }
        let mut r = Reader::new(entries);
        let mut previous = 0u64;
        while !r.is_empty() {
            match r.u8()? {
                RECORD_CUE => {
                    let time = r.varint()?;
                    let track = r.varint()?;
                    let relative = r.varint()?;
                    let upload_relative = r.varint()?;
                    if self.cues.len() >= MAX_INDEX_ENTRIES {
                        return Err(corrupt("too many cues"));
                    }
                    self.cues.push(CueEntry {
                        cue: Cue {
                            time,
                            track,
                            cluster: self.clusters.len(),
                            relative,
                        },
                        upload_relative,
                    });
                }
                RECORD_CLUSTER => {
                    let add = |a: u64, b: u64| a.checked_add(b).ok_or(corrupt("cluster"));
                    let start = add(previous, r.varint()?)?;
                    let data_start = add(start, r.varint()?)?;
                    let data_end = add(data_start, r.varint()?)?;
                    let known_size = r.bool()?;
                    let copy_start = add(data_start, r.varint()?)?;
                    let copy_end = add(copy_start, r.varint()?)?;
                    let zero_timestamp = r.bool()?;
                    let out_len = r.varint()?;
                    let timestamp = r.signed()?;
                    let keyframe = r.bool()?;
                    let run_count = r.u32()?;
                    if self.runs.len() + run_count as usize > MAX_INDEX_ENTRIES
                        || self.clusters.len() >= MAX_INDEX_ENTRIES
                    {
                        return Err(corrupt("too many clusters"));
                    }
                    let first_run = self.runs.len() as u32;
                    for _ in 0..run_count {
                        let run_start = add(data_start, r.varint()?)?;
                        let run_end = add(run_start, r.varint()?)?;
                        self.runs.push((run_start, run_end));
                    }
                    self.clusters.push(ClusterEntry {
                        start,
                        data_start,
                        data_end,
                        known_size,
                        copy_start,
                        copy_end,
                        zero_timestamp,
                        out_len,
                        timestamp,
                        keyframe,
                        first_run,
                        run_count,
                    });
                    previous = start;
                }
                _ => return Err(corrupt("entry record")),
            }
        }
        if self.clusters.len() != clusters || self.cues.len() != cues {
            return Err(corrupt("the entries do not match the state"));
        }
        Ok(())
    }
}

/// Reasons the index gives, in the order their codes are saved.
const REASONS: &[&str] = &[
    NOT_WEBM,
    "no Segment after the EBML header",
    "Info or Tracks is truncated or malformed",
    "no Tracks before the first Cluster",
    "Tracks declares no track",
    "too many clusters to index",
    "too many keyframes to index",
    "too many dropped elements to index",
];

fn write_kind(w: &mut Writer, kind: &ChildKind) {
    match kind {
        ChildKind::Timestamp(ts) => {
            w.u8(0);
            w.varint(*ts);
        }
        ChildKind::Block(block) => {
            w.u8(1);
            let h = &block.header;
            w.varint(h.track);
            w.signed(i64::from(h.relative_ts));
            w.bool(h.keyframe);
            w.varint(u64::from(h.frames));
            w.option(h.first_byte.map(u64::from));
            w.option(h.second_byte.map(u64::from));
            w.bool(block.keyframe);
            w.option(block.duration);
        }
        ChildKind::Opaque => w.u8(2),
        ChildKind::Dropped => w.u8(3),
    }
}

fn read_kind(r: &mut Reader) -> Result<ChildKind, Error> {
    let corrupt = || Error::CorruptState("a cluster child");
    let byte = |value: Option<u64>| -> Result<Option<u8>, Error> {
        value
            .map(|v| u8::try_from(v).map_err(|_| corrupt()))
            .transpose()
    };
    Ok(match r.u8()? {
        0 => ChildKind::Timestamp(r.varint()?),
        1 => {
            let header = crate::block::BlockHeader {
                track: r.varint()?,
                relative_ts: i16::try_from(r.signed()?).map_err(|_| corrupt())?,
                keyframe: r.bool()?,
                frames: r.u32()?,
                first_byte: byte(r.option()?)?,
                second_byte: byte(r.option()?)?,
            };
            ChildKind::Block(crate::reader::BlockInfo {
                header,
                keyframe: r.bool()?,
                duration: r.option()?,
            })
        }
        2 => ChildKind::Opaque,
        3 => ChildKind::Dropped,
        _ => return Err(corrupt()),
    })
}
