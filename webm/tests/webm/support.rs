//! Builders for hand-made EBML, and a strict in-memory parser of finalized output.

use std::io::Cursor;

use livekeep_webm::ebml::{self, read_float, read_header, read_uint, Children, Vint};
use livekeep_webm::{finalize_webm, Error, Finalized};

/// A known-size element.
pub fn el(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ebml::write_header(&mut out, id, body.len() as u64);
    out.extend_from_slice(body);
    out
}

/// An unknown-size element, as live writers emit for Segment and Cluster.
pub fn el_unknown(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ebml::write_id(&mut out, id);
    out.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    out.extend_from_slice(body);
    out
}

/// An unsigned integer element.
pub fn uint(id: u32, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    ebml::write_uint(&mut out, id, value);
    out
}

/// A string element.
pub fn string(id: u32, value: &str) -> Vec<u8> {
    el(id, value.as_bytes())
}

/// The EBML header for a given DocType.
pub fn ebml_header(doctype: &str) -> Vec<u8> {
    el(
        ebml::ID_EBML,
        &[
            uint(0x4286, 1),
            uint(0x42F7, 1),
            uint(0x42F2, 4),
            uint(0x42F3, 8),
            string(ebml::ID_DOCTYPE, doctype),
            uint(0x4287, 4),
            uint(0x4285, 2),
        ]
        .concat(),
    )
}

/// Info as MediaRecorder writes it: TimestampScale 1 ms and the app names, no Duration.
pub fn info() -> Vec<u8> {
    el(
        ebml::ID_INFO,
        &[
            uint(ebml::ID_TIMESTAMPSCALE, 1_000_000),
            string(0x4D80, "test"),
            string(0x5741, "test"),
        ]
        .concat(),
    )
}

/// One TrackEntry.
pub fn track(number: u64, kind: u64, codec: &str, default_duration_ns: Option<u64>) -> Vec<u8> {
    let mut body = [
        uint(ebml::ID_TRACKNUMBER, number),
        uint(0x73C5, number),
        uint(ebml::ID_TRACKTYPE, kind),
        string(ebml::ID_CODECID, codec),
    ]
    .concat();
    if let Some(ns) = default_duration_ns {
        body.extend(uint(ebml::ID_DEFAULTDURATION, ns));
    }
    el(ebml::ID_TRACKENTRY, &body)
}

/// Tracks with a VP8 video track 1 and an Opus audio track 2.
pub fn av_tracks() -> Vec<u8> {
    el(
        ebml::ID_TRACKS,
        &[track(1, 1, "V_VP8", None), track(2, 2, "A_OPUS", None)].concat(),
    )
}

/// Block header bytes: track vint, relative timestamp, flags.
fn block_header(track: u64, relative_ts: i16, flags: u8) -> Vec<u8> {
    assert!(track < 127, "test tracks fit in one byte");
    let mut out = vec![0x80 | track as u8];
    out.extend_from_slice(&relative_ts.to_be_bytes());
    out.push(flags);
    out
}

/// An unlaced SimpleBlock.
pub fn simple_block(track: u64, relative_ts: i16, keyframe: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = block_header(track, relative_ts, if keyframe { 0x80 } else { 0 });
    body.extend_from_slice(payload);
    el(ebml::ID_SIMPLEBLOCK, &body)
}

/// A 20 ms Opus packet (TOC config 31, one frame) followed by filler.
pub fn opus_packet(filler: u8) -> Vec<u8> {
    vec![0xF8, filler, filler, filler]
}

/// Lacing kinds for [`laced_block`].
#[derive(Clone, Copy)]
pub enum Lacing {
    Xiph,
    Ebml,
    Fixed,
}

/// A laced SimpleBlock holding `frames` (all frames the same length for `Fixed`).
pub fn laced_block(track: u64, relative_ts: i16, lacing: Lacing, frames: &[Vec<u8>]) -> Vec<u8> {
    let bits = match lacing {
        Lacing::Xiph => 0b010,
        Lacing::Fixed => 0b100,
        Lacing::Ebml => 0b110,
    };
    let mut body = block_header(track, relative_ts, 0x80 | bits);
    body.push((frames.len() - 1) as u8);
    let sizes: Vec<usize> = frames.iter().map(Vec::len).collect();
    match lacing {
        Lacing::Xiph => {
            for &size in &sizes[..sizes.len() - 1] {
                body.extend(std::iter::repeat_n(255u8, size / 255));
                body.push((size % 255) as u8);
            }
        }
        Lacing::Ebml => {
            ebml::write_size(&mut body, sizes[0] as u64);
            for pair in sizes[..sizes.len() - 1].windows(2) {
                // Signed vint of 2 bytes: value + 8191.
                let delta = pair[1] as i64 - pair[0] as i64 + 8191;
                body.extend_from_slice(&(0x4000u16 | delta as u16).to_be_bytes());
            }
        }
        Lacing::Fixed => {}
    }
    for frame in frames {
        body.extend_from_slice(frame);
    }
    el(ebml::ID_SIMPLEBLOCK, &body)
}

/// A BlockGroup with a Block, an optional BlockDuration, and a ReferenceBlock unless a keyframe.
pub fn block_group(
    track: u64,
    relative_ts: i16,
    keyframe: bool,
    duration: Option<u64>,
    payload: &[u8],
) -> Vec<u8> {
    let mut block = block_header(track, relative_ts, 0);
    block.extend_from_slice(payload);
    let mut body = el(ebml::ID_BLOCK, &block);
    if let Some(duration) = duration {
        body.extend(uint(ebml::ID_BLOCKDURATION, duration));
    }
    if !keyframe {
        body.extend(el(ebml::ID_REFERENCEBLOCK, &[0xFF]));
    }
    el(ebml::ID_BLOCKGROUP, &body)
}

/// A whole file: EBML header and an unknown-size Segment with Info, `tracks` and `rest`.
pub fn live_file(tracks: &[u8], rest: &[Vec<u8>]) -> Vec<u8> {
    let mut segment = info();
    segment.extend_from_slice(tracks);
    for part in rest {
        segment.extend_from_slice(part);
    }
    [ebml_header("webm"), el_unknown(ebml::ID_SEGMENT, &segment)].concat()
}

/// Finalizes in memory.
pub fn finalize(input: &[u8]) -> Result<(Finalized, Vec<u8>), Error> {
    let mut out = Vec::new();
    let done = finalize_webm(Cursor::new(input), &mut out)?;
    Ok((done, out))
}

/// A block as seen in the finalized output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Track number.
    pub track: u64,
    /// Absolute timestamp in timestamp units.
    pub time: i64,
    /// Keyframe flag.
    pub keyframe: bool,
    /// The whole SimpleBlock/BlockGroup element, header included.
    pub raw: Vec<u8>,
}

/// What a strict parse of finalized output found.
#[derive(Debug)]
pub struct Parsed {
    /// Info Duration converted to seconds.
    pub duration_secs: f64,
    /// (CueTime, track) of every CuePoint.
    pub cues: Vec<(u64, u64)>,
    /// Number of clusters.
    pub clusters: usize,
    /// Clusters whose size is unknown (kept as MediaRecorder wrote them).
    pub unknown_size_clusters: usize,
    /// Every block in order.
    pub frames: Vec<Frame>,
}

fn element(bytes: &[u8]) -> (u32, usize, Option<u64>) {
    match read_header(bytes) {
        Vint::Done(h, len) => (h.id, len, h.size),
        other => panic!("no element header: {other:?}"),
    }
}

fn child(data: &[u8], id: u32) -> Option<&[u8]> {
    Children::new(data).find(|c| c.id == id).map(|c| c.data)
}

/// Block fields from a Block/SimpleBlock payload: (track, relative ts, flags).
fn block_fields(data: &[u8]) -> (u64, i16, u8) {
    let Vint::Done((track, _), len) = ebml::read_vint(data) else {
        panic!("block without a track number");
    };
    let fixed = &data[len..len + 3];
    (track, i16::from_be_bytes([fixed[0], fixed[1]]), fixed[2])
}

/// Parses finalized output, asserting everything a seeking player relies on.
pub fn parse_finalized(file: &[u8]) -> Parsed {
    let (id, len, size) = element(file);
    assert_eq!(id, ebml::ID_EBML);
    let header_end = len + size.expect("EBML header size") as usize;
    let doctype = child(&file[len..header_end], ebml::ID_DOCTYPE).expect("DocType");
    assert_eq!(doctype, b"webm");

    let segment = &file[header_end..];
    let (id, len, size) = element(segment);
    assert_eq!(id, ebml::ID_SEGMENT);
    let data = &segment[len..];
    // The Segment's size covers the rest of the file exactly; it is unknown (the rest of the
    // file) only around Clusters kept with unknown sizes, checked below.
    let segment_size_known = size.is_some();
    if let Some(size) = size {
        assert_eq!(
            size,
            data.len() as u64,
            "Segment size covers the rest of the file exactly"
        );
    }

    // Every level-1 element has a known size, except Clusters kept as MediaRecorder wrote
    // them, which end where the next level-1 element (or the Segment) does; they tile the
    // Segment.
    let mut level1 = Vec::new();
    let mut pos = 0usize;
    let mut unknown_size_clusters = 0;
    while pos < data.len() {
        let (id, len, size) = element(&data[pos..]);
        let size = match size {
            Some(size) => size as usize,
            None => {
                assert_eq!(
                    id,
                    ebml::ID_CLUSTER,
                    "only Clusters may have an unknown size"
                );
                unknown_size_clusters += 1;
                unknown_cluster_len(&data[pos + len..])
            }
        };
        assert!(
            pos + len + size <= data.len(),
            "element at {pos} overruns the Segment"
        );
        level1.push((id, pos, &data[pos + len..pos + len + size]));
        pos += len + size;
    }
    assert_eq!(
        segment_size_known,
        unknown_size_clusters == 0,
        "an unknown-size Segment exactly around unknown-size Clusters (FFmpeg refuses an \
         unknown-size element inside a known-size one)"
    );
    let find = |id: u32| level1.iter().find(|(i, _, _)| *i == id).copied();
    let (_, seekhead_pos, seekhead) = find(ebml::ID_SEEKHEAD).expect("SeekHead");
    assert_eq!(seekhead_pos, 0, "SeekHead comes first");
    for seek in Children::new(seekhead) {
        let target = child(seek.data, ebml::ID_SEEKID).expect("SeekID");
        let position = read_uint(child(seek.data, ebml::ID_SEEKPOSITION).expect("SeekPosition"))
            .expect("position") as usize;
        let (id, _, _) = element(&data[position..]);
        assert_eq!(
            id.to_be_bytes().as_slice(),
            target,
            "SeekHead entry points at its element"
        );
    }

    let (_, _, info) = find(ebml::ID_INFO).expect("Info");
    let scale = child(info, ebml::ID_TIMESTAMPSCALE)
        .and_then(read_uint)
        .unwrap_or(1_000_000);
    let duration = read_float(child(info, ebml::ID_DURATION).expect("Duration")).expect("float");
    assert!(find(ebml::ID_TRACKS).is_some(), "Tracks");

    let first_cluster = level1.iter().position(|(id, _, _)| *id == ebml::ID_CLUSTER);
    let mut frames = Vec::new();
    let mut blocks_at = std::collections::HashMap::new();
    let mut clusters = 0;
    for &(id, pos, body) in &level1 {
        if id != ebml::ID_CLUSTER {
            continue;
        }
        clusters += 1;
        let mut cluster_ts = None;
        let mut offset = 0usize;
        for c in Children::new(body) {
            match c.id {
                ebml::ID_TIMESTAMP => cluster_ts = read_uint(c.data),
                ebml::ID_SIMPLEBLOCK | ebml::ID_BLOCKGROUP => {
                    let ts = cluster_ts.expect("Timestamp before blocks") as i64;
                    let (track, rel, keyframe) = if c.id == ebml::ID_SIMPLEBLOCK {
                        let (track, rel, flags) = block_fields(c.data);
                        (track, rel, flags & 0x80 != 0)
                    } else {
                        let block = child(c.data, ebml::ID_BLOCK).expect("Block");
                        let (track, rel, _) = block_fields(block);
                        (track, rel, child(c.data, ebml::ID_REFERENCEBLOCK).is_none())
                    };
                    let frame = Frame {
                        track,
                        time: ts + i64::from(rel),
                        keyframe,
                        raw: c.raw.to_vec(),
                    };
                    blocks_at.insert((pos, offset), frame.clone());
                    frames.push(frame);
                }
                ebml::ID_SILENTTRACKS | ebml::ID_ENCRYPTEDBLOCK => {}
                other => panic!("unexpected cluster child {other:#x}"),
            }
            offset += c.raw.len();
        }
        assert_eq!(offset, body.len(), "cluster children fill the cluster");
    }

    let mut cues = Vec::new();
    if let Some((_, cues_pos, cues_body)) = find(ebml::ID_CUES) {
        let first = first_cluster.expect("Cues imply clusters");
        let last = level1
            .iter()
            .rposition(|(id, _, _)| *id == ebml::ID_CLUSTER)
            .expect("Cues imply clusters");
        assert!(
            cues_pos < level1[first].1 || cues_pos > level1[last].1,
            "Cues come before the first Cluster or after the last, not between Clusters"
        );
        for point in Children::new(cues_body) {
            let time =
                read_uint(child(point.data, ebml::ID_CUETIME).expect("CueTime")).expect("uint");
            let positions = child(point.data, ebml::ID_CUETRACKPOSITIONS).expect("positions");
            let track =
                read_uint(child(positions, ebml::ID_CUETRACK).expect("CueTrack")).expect("uint");
            let cluster = read_uint(child(positions, ebml::ID_CUECLUSTERPOSITION).expect("cluster"))
                .expect("uint") as usize;
            let relative =
                read_uint(child(positions, ebml::ID_CUERELATIVEPOSITION).expect("relative"))
                    .expect("uint") as usize;
            let (id, _, _) = element(&data[cluster..]);
            assert_eq!(
                id,
                ebml::ID_CLUSTER,
                "CueClusterPosition points at a Cluster"
            );
            let frame = blocks_at
                .get(&(cluster, relative))
                .expect("CueRelativePosition points at a block");
            assert_eq!(frame.track, track, "cue track");
            assert_eq!(
                frame.time.max(0) as u64,
                time,
                "cue time is the block's time"
            );
            cues.push((time, track));
        }
        assert!(!cues.is_empty(), "an empty Cues is invalid");
    }
    Parsed {
        duration_secs: duration * scale as f64 / 1e9,
        cues,
        clusters,
        unknown_size_clusters,
        frames,
    }
}

/// Level-1 ids: any of them ends an unknown-size Cluster (Matroska's rule for unknown sizes).
const LEVEL1_IDS: [u32; 8] = [
    ebml::ID_SEEKHEAD,
    ebml::ID_INFO,
    ebml::ID_TRACKS,
    ebml::ID_CUES,
    ebml::ID_CLUSTER,
    ebml::ID_CHAPTERS,
    ebml::ID_TAGS,
    ebml::ID_ATTACHMENTS,
];

/// Length of an unknown-size Cluster's data: its children, each of known size, up to the next
/// level-1 element or the end of `rest`.
fn unknown_cluster_len(rest: &[u8]) -> usize {
    let mut pos = 0;
    while pos < rest.len() {
        let (id, len, size) = element(&rest[pos..]);
        if LEVEL1_IDS.contains(&id) {
            break;
        }
        let size = size.expect("cluster children have known sizes") as usize;
        assert!(pos + len + size <= rest.len(), "a cluster child overruns");
        pos += len + size;
    }
    pos
}
