//! The two passes: index the input, then write the finalized file.
//!
//! Pass 1 walks every element header once, decides what is kept, and
//! computes the output layout (cluster sizes, cue positions, duration).
//! Pass 2 writes the header elements from memory and copies the clusters
//! from the input, whole when nothing inside them is dropped.

use std::io::{self, BufWriter, Read, Seek, Write};

use crate::cues::{Cue, Cues};
use crate::ebml::{self, read_header, read_uint, Children, Vint};
use crate::reader::{
    read_head, read_master_body, skip_unknown_size, ChildKind, ClusterStep, ClusterWalker, HeadRead,
};
use crate::source::{Source, BUFFER_SIZE};
use crate::timing::{Timeline, TrackInfo};
use crate::Error;

/// Largest EBML header accepted; real ones are under 64 bytes.
const MAX_EBML_HEADER: u64 = 64 << 10;
/// Largest Info or Tracks element kept in memory; CodecPrivate is the only big child.
const MAX_METADATA: u64 = 16 << 20;
/// Most Tags/Chapters/Attachments elements carried over; more are dropped.
const MAX_EXTRAS: usize = 16;
/// Tracks whose timing is followed; blocks of further tracks are copied but not timed,
/// so a hostile Tracks element cannot make every block cost a long search.
const MAX_TIMED_TRACKS: usize = 64;
/// Most clusters, and most cue points, in one file: the plan keeps ~56 bytes per
/// cluster and 32 per cue point, so this bounds memory against files made of tiny
/// clusters or keyframes. A recording with a cluster and a keyframe per second
/// reaches it after 12 days; beyond it the file is refused and kept as uploaded.
const MAX_INDEX_ENTRIES: usize = 1 << 20;
/// TimestampScale when Info does not say: one millisecond.
const DEFAULT_TIMESTAMP_SCALE: u64 = 1_000_000;
/// `Timestamp 0`, put in front of clusters whose blocks come before any Timestamp.
const ZERO_TIMESTAMP: [u8; 3] = [0xE7, 0x81, 0x00];
/// Bytes of one SeekHead entry: Seek(SeekID of 4 bytes, SeekPosition as 8-byte uint).
const SEEK_ENTRY_LEN: u64 = 2 + 1 + (2 + 1 + 4) + (2 + 1 + 8);

/// What finalizing produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finalized {
    /// From the first block's timestamp to the end of the last frame, in seconds.
    pub duration_secs: f64,
    /// CuePoints written (seekable positions).
    pub cue_points: usize,
    /// Bytes at the end of the input that could not be kept (a block cut off, garbage).
    pub dropped_tail_bytes: u64,
}

/// One output cluster, described by where its kept children are in the input.
#[derive(Debug, Clone, Copy)]
struct ClusterPlan {
    /// Input offset of the cluster's data.
    data_start: u64,
    /// Input offset where the cluster ended.
    data_end: u64,
    /// Whether the input declared a size (changes what ends it).
    known_size: bool,
    /// First kept child's start and last kept child's end.
    copy_start: u64,
    copy_end: u64,
    /// Kept children are exactly `copy_start..copy_end`: one contiguous copy.
    contiguous: bool,
    /// Blocks came before any Timestamp: write `Timestamp 0` first.
    zero_timestamp: bool,
    /// Size of the output cluster's data.
    out_len: u64,
}

impl ClusterPlan {
    fn total_len(&self) -> u64 {
        ebml::header_len(ebml::ID_CLUSTER, self.out_len) as u64 + self.out_len
    }
}

/// A level-1 element copied as is (Tags, Chapters, Attachments).
#[derive(Debug, Clone, Copy)]
struct Extra {
    start: u64,
    len: u64,
}

/// Everything pass 1 learns.
struct Plan {
    ebml_header: Vec<u8>,
    info_body: Vec<u8>,
    tracks_body: Vec<u8>,
    extras: Vec<Extra>,
    clusters: Vec<ClusterPlan>,
    cues: Cues,
    timeline: Timeline,
    dropped_tail_bytes: u64,
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

/// Finalizes `input` into `output`; see [`crate::finalize_webm`].
pub fn finalize<R: Read + Seek, W: Write>(input: R, output: W) -> Result<Finalized, Error> {
    let mut src = Source::new(input, BUFFER_SIZE)?;
    let plan = scan(&mut src)?;
    write(&mut src, &plan, output)?;
    Ok(Finalized {
        duration_secs: plan.timeline.duration_secs(),
        cue_points: plan.cues.points.len(),
        dropped_tail_bytes: plan.dropped_tail_bytes,
    })
}

/// Reads the EBML header element, which must declare DocType `webm`.
fn read_ebml_header<R: Read + Seek>(src: &mut Source<R>) -> Result<Vec<u8>, Error> {
    let HeadRead::Head(head) = read_head(src, src.input_len())? else {
        return Err(Error::NotWebM);
    };
    let end = head
        .end()
        .filter(|&end| head.id == ebml::ID_EBML && end <= src.input_len().min(MAX_EBML_HEADER))
        .ok_or(Error::NotWebM)?;
    src.seek_to(0)?;
    let bytes = src.read_vec(end as usize)?;
    if !is_webm_header(&bytes) {
        return Err(Error::NotWebM);
    }
    Ok(bytes)
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

/// Pass 1: index the whole input.
fn scan<R: Read + Seek>(src: &mut Source<R>) -> Result<Plan, Error> {
    let ebml_header = read_ebml_header(src)?;
    let file_len = src.input_len();
    src.seek_to(ebml_header.len() as u64)?;
    let segment = match read_head(src, file_len)? {
        HeadRead::Head(head) if head.id == ebml::ID_SEGMENT => head,
        _ => return Err(Error::Invalid("no Segment after the EBML header")),
    };
    let limit = segment.end().map_or(file_len, |end| end.min(file_len));

    let mut info: Option<(Vec<u8>, u64)> = None;
    let mut tracks: Option<(Vec<u8>, Vec<TrackInfo>)> = None;
    let mut timeline: Option<Timeline> = None;
    let mut video_track = None;
    let mut extras = Vec::new();
    let mut clusters = Vec::new();
    let mut cues = Cues::default();
    let mut pos = segment.data_start();
    let mut stop = None;

    while pos < limit {
        src.seek_to(pos)?;
        let head = match read_head(src, limit)? {
            HeadRead::Head(head) => head,
            HeadRead::End | HeadRead::Invalid => {
                stop = Some(pos);
                break;
            }
        };
        let before_clusters = clusters.is_empty() && timeline.is_none();
        match head.id {
            ebml::ID_CLUSTER => {
                let timeline = match &mut timeline {
                    Some(timeline) => timeline,
                    None => {
                        let scale = info.get_or_insert_with(|| rewrite_info(&default_info())).1;
                        let (_, entries) = tracks
                            .as_ref()
                            .ok_or(Error::Invalid("no Tracks before the first Cluster"))?;
                        if entries.is_empty() {
                            return Err(Error::Invalid("Tracks declares no track"));
                        }
                        video_track = entries.iter().find(|t| t.is_video()).map(|t| t.number);
                        timeline.insert(Timeline::new(scale, entries))
                    }
                };
                let (known_size, cluster_limit) = match head.end() {
                    Some(end) => (true, end.min(limit)),
                    None => (false, limit),
                };
                let mut scanner = ClusterScan {
                    index: clusters.len(),
                    video_track,
                    timeline,
                    cues: &mut cues,
                };
                let (plan, end) =
                    scanner.scan(src, head.data_start(), cluster_limit, known_size)?;
                clusters.extend(plan);
                if clusters.len() > MAX_INDEX_ENTRIES {
                    return Err(Error::Invalid("too many clusters to index"));
                }
                match end {
                    ClusterEnd::Cleanly(end) => pos = end,
                    ClusterEnd::Broken(at) => {
                        stop = Some(at);
                        break;
                    }
                }
            }
            ebml::ID_INFO | ebml::ID_TRACKS if before_clusters => {
                let Some((body, end)) = read_master_body(src, &head, limit, MAX_METADATA)? else {
                    return Err(Error::Invalid("Info or Tracks is truncated or malformed"));
                };
                if head.id == ebml::ID_INFO {
                    info.get_or_insert_with(|| rewrite_info(&body));
                } else if tracks.is_none() {
                    tracks = Some(read_tracks(&body));
                }
                pos = end;
            }
            ebml::ID_EBML | ebml::ID_SEGMENT => {
                // A second stream appended to the first: not ours to merge.
                stop = Some(pos);
                break;
            }
            id => {
                let end = match head.end() {
                    Some(end) if end <= limit => Some(end),
                    Some(_) => None,
                    None => skip_unknown_size(src, &head, limit)?,
                };
                let Some(end) = end else {
                    stop = Some(pos);
                    break;
                };
                let copyable =
                    matches!(id, ebml::ID_TAGS | ebml::ID_CHAPTERS | ebml::ID_ATTACHMENTS)
                        && head.size.is_some();
                if copyable && extras.len() < MAX_EXTRAS {
                    extras.push(Extra {
                        start: head.start,
                        len: end - head.start,
                    });
                }
                pos = end;
            }
        }
    }

    let (info_body, scale) = info.unwrap_or_else(|| rewrite_info(&default_info()));
    let (tracks_body, entries) = tracks.ok_or(Error::Invalid("no Tracks in the Segment"))?;
    let timeline = timeline.unwrap_or_else(|| Timeline::new(scale, &entries));
    Ok(Plan {
        ebml_header,
        info_body,
        tracks_body,
        extras,
        clusters,
        cues,
        timeline,
        dropped_tail_bytes: file_len - stop.unwrap_or(pos).min(file_len),
    })
}

/// Info body used when the input has none: the default TimestampScale, said explicitly.
fn default_info() -> Vec<u8> {
    let mut body = Vec::new();
    ebml::write_uint(&mut body, ebml::ID_TIMESTAMPSCALE, DEFAULT_TIMESTAMP_SCALE);
    body
}

/// How a cluster walk ended, at which absolute position.
enum ClusterEnd {
    /// At the cluster's end: the segment continues there.
    Cleanly(u64),
    /// At truncated or corrupt data: nothing from there on is kept.
    Broken(u64),
}

/// Pass-1 state for one cluster.
struct ClusterScan<'a> {
    index: usize,
    video_track: Option<u64>,
    timeline: &'a mut Timeline,
    cues: &'a mut Cues,
}

impl ClusterScan<'_> {
    /// Walks one cluster; returns its plan (`None` when it holds no block) and how it ended.
    fn scan<R: Read + Seek>(
        &mut self,
        src: &mut Source<R>,
        data_start: u64,
        limit: u64,
        known_size: bool,
    ) -> Result<(Option<ClusterPlan>, ClusterEnd), Error> {
        let mut walker = ClusterWalker::new(data_start, limit, known_size);
        let mut plan = ClusterPlan {
            data_start,
            data_end: data_start,
            known_size,
            copy_start: 0,
            copy_end: 0,
            contiguous: true,
            zero_timestamp: false,
            out_len: 0,
        };
        let mut cluster_ts: Option<i64> = None;
        let mut blocks = 0usize;
        let mut kept = 0u64;
        let end = loop {
            let child = match walker.next(src)? {
                ClusterStep::Child(child) => child,
                ClusterStep::End(at) => break ClusterEnd::Cleanly(at),
                ClusterStep::Broken(at) => break ClusterEnd::Broken(at),
            };
            if !child.keep() {
                continue;
            }
            if kept == 0 {
                plan.copy_start = child.start;
            } else if plan.copy_end != child.start {
                plan.contiguous = false;
            }
            match child.kind {
                ChildKind::Timestamp(ts) => {
                    cluster_ts = Some(i64::try_from(ts).unwrap_or(i64::MAX));
                }
                ChildKind::Block(block) => {
                    if cluster_ts.is_none() {
                        plan.zero_timestamp = true;
                        cluster_ts = Some(0);
                    }
                    let ts = cluster_ts
                        .unwrap_or(0)
                        .saturating_add(i64::from(block.header.relative_ts));
                    self.timeline.add(ts, &block);
                    // The synthesized Timestamp goes first, before every kept child.
                    let relative = if plan.zero_timestamp {
                        ZERO_TIMESTAMP.len() as u64 + kept
                    } else {
                        kept
                    };
                    let seek_point = match self.video_track {
                        Some(video) => block.header.track == video && block.keyframe,
                        None => blocks == 0,
                    };
                    if seek_point {
                        if self.cues.points.len() >= MAX_INDEX_ENTRIES {
                            return Err(Error::Invalid("too many keyframes to index"));
                        }
                        self.cues.points.push(Cue {
                            time: u64::try_from(ts).unwrap_or(0),
                            track: block.header.track,
                            cluster: self.index,
                            relative,
                        });
                    }
                    blocks += 1;
                }
                ChildKind::Opaque | ChildKind::Dropped => {}
            }
            kept += child.len;
            plan.copy_end = child.start + child.len;
        };
        plan.data_end = match end {
            ClusterEnd::Cleanly(at) | ClusterEnd::Broken(at) => at,
        };
        // Cue points come only from blocks, so a cluster without blocks added none.
        if blocks == 0 {
            return Ok((None, end));
        }
        let zero_timestamp_len = if plan.zero_timestamp {
            ZERO_TIMESTAMP.len()
        } else {
            0
        };
        plan.out_len = kept + zero_timestamp_len as u64;
        Ok((Some(plan), end))
    }
}

/// Counts bytes written, to check pass 2 against the plan.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.count += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Pass 2: write the finalized file.
fn write<R: Read + Seek, W: Write>(
    src: &mut Source<R>,
    plan: &Plan,
    output: W,
) -> Result<(), Error> {
    let mut info = plan.info_body.clone();
    ebml::write_float(&mut info, ebml::ID_DURATION, plan.timeline.duration_units());
    let info_len = ebml::header_len(ebml::ID_INFO, info.len() as u64) as u64 + info.len() as u64;
    let tracks_len = ebml::header_len(ebml::ID_TRACKS, plan.tracks_body.len() as u64) as u64
        + plan.tracks_body.len() as u64;
    let extras_len: u64 = plan.extras.iter().map(|extra| extra.len).sum();
    let has_cues = !plan.cues.points.is_empty();
    let seek_entries = if has_cues { 3 } else { 2 };
    let seekhead_body = SEEK_ENTRY_LEN * seek_entries;
    let seekhead_len = ebml::header_len(ebml::ID_SEEKHEAD, seekhead_body) as u64 + seekhead_body;

    let info_pos = seekhead_len;
    let tracks_pos = info_pos + info_len;
    let cues_pos = tracks_pos + tracks_len + extras_len;
    let mut cluster_offsets = Vec::with_capacity(plan.clusters.len());
    let mut clusters_len = 0u64;
    for cluster in &plan.clusters {
        cluster_offsets.push(clusters_len);
        clusters_len += cluster.total_len();
    }
    let cues_len = plan.cues.layout(cues_pos, &cluster_offsets);
    let segment_len = cues_pos + cues_len + clusters_len;

    let mut head = Vec::with_capacity(4096);
    head.extend_from_slice(&plan.ebml_header);
    ebml::write_id(&mut head, ebml::ID_SEGMENT);
    ebml::write_size_with_len(&mut head, segment_len, 8);
    ebml::write_header(&mut head, ebml::ID_SEEKHEAD, seekhead_body);
    let mut targets = vec![(ebml::ID_INFO, info_pos), (ebml::ID_TRACKS, tracks_pos)];
    if has_cues {
        targets.push((ebml::ID_CUES, cues_pos));
    }
    for (id, position) in targets {
        ebml::write_header(&mut head, ebml::ID_SEEK, SEEK_ENTRY_LEN - 3);
        ebml::write_binary(&mut head, ebml::ID_SEEKID, &id.to_be_bytes());
        ebml::write_header(&mut head, ebml::ID_SEEKPOSITION, 8);
        head.extend_from_slice(&position.to_be_bytes());
    }
    ebml::write_header(&mut head, ebml::ID_INFO, info.len() as u64);
    head.extend_from_slice(&info);
    ebml::write_header(&mut head, ebml::ID_TRACKS, plan.tracks_body.len() as u64);
    head.extend_from_slice(&plan.tracks_body);

    let mut out = Counting {
        inner: BufWriter::with_capacity(BUFFER_SIZE, output),
        count: 0,
    };
    out.write_all(&head)?;
    for extra in &plan.extras {
        src.seek_to(extra.start)?;
        src.copy_to(extra.len, &mut out)?;
    }
    out.write_all(&plan.cues.encode(cues_pos, cues_len, &cluster_offsets))?;
    let segment_data_start = (plan.ebml_header.len() + 12) as u64;
    if out.count != segment_data_start + cues_pos + cues_len {
        return Err(Error::Invalid("input changed while finalizing"));
    }

    let mut header = Vec::with_capacity(16);
    for cluster in &plan.clusters {
        let expected_end = out.count + cluster.total_len();
        header.clear();
        ebml::write_header(&mut header, ebml::ID_CLUSTER, cluster.out_len);
        if cluster.zero_timestamp {
            header.extend_from_slice(&ZERO_TIMESTAMP);
        }
        out.write_all(&header)?;
        if cluster.contiguous {
            src.seek_to(cluster.copy_start)?;
            src.copy_to(cluster.copy_end - cluster.copy_start, &mut out)?;
        } else {
            copy_kept_children(src, cluster, &mut out)?;
        }
        if out.count != expected_end {
            return Err(Error::Invalid("input changed while finalizing"));
        }
    }
    out.flush()?;
    Ok(())
}

/// Copies a cluster's kept children one by one, walking it exactly as pass 1 did.
fn copy_kept_children<R: Read + Seek, W: Write>(
    src: &mut Source<R>,
    cluster: &ClusterPlan,
    out: &mut W,
) -> Result<(), Error> {
    let mut walker = ClusterWalker::new(cluster.data_start, cluster.data_end, cluster.known_size);
    loop {
        match walker.next(src)? {
            ClusterStep::Child(child) => {
                if child.keep() {
                    src.seek_to(child.start)?;
                    src.copy_to(child.len, out)?;
                }
            }
            ClusterStep::End(_) => return Ok(()),
            ClusterStep::Broken(_) => return Err(Error::Invalid("input changed while finalizing")),
        }
    }
}
