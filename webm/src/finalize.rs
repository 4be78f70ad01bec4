//! Finishing a WebM from its index: the new head, then the clusters kept verbatim or rewritten.
//!
//! Pass 1 is [`WebmIndex`] run over the file. When the clusters can stay as uploaded
//! ([`WebmIndex::verbatim`], the MediaRecorder case) the finished file is [`plan_webm`]'s
//! layout: EBML header, Segment, SeekHead, Info with Duration, Tracks, then the upload's
//! cluster bytes as they are, then the Cues (where `ffmpeg -c copy` puts them: the head before
//! the clusters stays a few kilobytes however many keyframes there are, so a stop that plans
//! it does constant work). Unknown-size Clusters stay unknown-size (each ends at the next
//! Cluster, the last at the Cues or the end of the file), and the Segment is then of unknown
//! size too:
//! FFmpeg's demuxer (Chromium's) refuses an unknown-size element inside a known-size one
//! ("Unknown-sized element inside parent with finite size") and resynchronises, while an
//! unknown-size Segment is what every live WebM has; its SeekHead and Cues positions count
//! from its data start either way. Otherwise pass 2 rewrites the clusters as before: known
//! sizes, `Timestamp 0` where blocks came first, dropped children left out, the Cues after them.

use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

use crate::cues::{Cue, Cues};
use crate::ebml;
use crate::layout::{Extent, Layout};
use crate::source::{Source, BUFFER_SIZE};
use crate::webm_index::WebmIndex;
use crate::{Container, Error, FinalizePath, Finalized};

/// `Timestamp 0`, put in front of clusters whose blocks come before any Timestamp.
const ZERO_TIMESTAMP: [u8; 3] = [0xE7, 0x81, 0x00];
/// Bytes of one SeekHead entry: Seek(SeekID of 4 bytes, SeekPosition as 8-byte uint).
const SEEK_ENTRY_LEN: u64 = 2 + 1 + (2 + 1 + 4) + (2 + 1 + 8);
/// Bytes of the Segment header written: 4-byte id and an 8-byte size.
const SEGMENT_HEADER_LEN: u64 = 12;
/// An 8-byte size vint meaning "unknown".
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// Finalizes `input` into `output`; see [`crate::finalize_webm`].
pub fn finalize<R: Read + Seek, W: Write>(mut input: R, output: W) -> Result<Finalized, Error> {
    let index = index_file(&mut input)?;
    let path = if index.verbatim() {
        let layout = plan_webm(&index)?;
        let mut out = BufWriter::with_capacity(BUFFER_SIZE, output);
        let written = layout.write_to(&mut input, &mut out)?;
        out.flush()?;
        if written != layout.len() {
            return Err(Error::Invalid("input changed while finalizing"));
        }
        FinalizePath::Verbatim
    } else {
        let mut src = Source::new(input, BUFFER_SIZE)?;
        rewrite(&mut src, &index, output)?;
        FinalizePath::Rewritten
    };
    Ok(Finalized {
        container: Container::WebM,
        path,
        duration_secs: index.duration_secs(),
        cue_points: index.cues().len(),
        dropped_tail_bytes: index.dropped_tail_bytes(),
    })
}

/// Pass 1: the index, fed the whole file in large reads.
fn index_file<R: Read + Seek>(input: &mut R) -> Result<WebmIndex, Error> {
    input.seek(SeekFrom::Start(0))?;
    let mut index = WebmIndex::new();
    let mut buffer = vec![0; BUFFER_SIZE];
    loop {
        let read = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        index.push(&buffer[..read])?;
    }
    index.finish()?;
    Ok(index)
}

/// Plans the finished WebM from a complete index (the upload ends at [`WebmIndex::position`]):
/// a new head, then the upload's clusters as they are, then the Cues. Fails when the clusters cannot be kept
/// verbatim ([`WebmIndex::verbatim`]): [`crate::finalize_webm`] rewrites those.
pub fn plan_webm(index: &WebmIndex) -> Result<Layout, Error> {
    let finished;
    let index = if matches!(index.status(), crate::webm_index::WebmStatus::Ended(_)) {
        index
    } else {
        finished = {
            let mut copy = index.clone();
            copy.finish()?;
            copy
        };
        &finished
    };
    if !index.verbatim() {
        return Err(Error::Invalid("the clusters cannot be kept verbatim"));
    }
    let (first, end) = index.cluster_region().unwrap_or((0, 0));
    let extras_len = index.extra_bytes().len() as u64;
    let parts = HeadParts::new(index, extras_len, !index.cues().is_empty())?;
    // The index encodes each CuePoint as it learns it: a stop copies them, however many.
    let cues = match index.encoded_cue_points(parts.clusters_pos) {
        Some(points) => {
            let mut element = Vec::with_capacity(points.len() + 12);
            if !points.is_empty() {
                ebml::write_header(&mut element, ebml::ID_CUES, points.len() as u64);
                element.extend_from_slice(points);
            }
            element
        }
        None => verbatim_cues(index).encode_pointing(|cluster| {
            let start = index.clusters().get(cluster).map_or(first, |c| c.start);
            parts.clusters_pos + start.saturating_sub(first)
        }),
    };
    let head = Head::lay_out(
        index,
        parts,
        cues,
        end - first,
        !index.has_unknown_size_clusters(),
    );
    let mut bytes = head.before_extras;
    bytes.extend_from_slice(index.extra_bytes());
    Ok(Layout {
        head: bytes,
        extents: if end > first {
            vec![Extent {
                start: first,
                len: end - first,
            }]
        } else {
            Vec::new()
        },
        patches: Vec::new(),
        tail: head.cues,
    })
}

/// The cue points of clusters kept verbatim: each block where the upload has it.
fn verbatim_cues(index: &WebmIndex) -> Cues {
    Cues {
        points: index
            .cues()
            .iter()
            .map(|entry| Cue {
                relative: entry.upload_relative,
                ..entry.cue
            })
            .collect(),
    }
}

/// Where the clusters of a verbatim finished file start, from its Segment's data start, when
/// the index knows its head (Tracks seen): what the index encodes its cue points against.
pub(crate) fn verbatim_clusters_position(index: &WebmIndex) -> Option<u64> {
    HeadParts::new(index, index.extra_bytes().len() as u64, true)
        .ok()
        .map(|parts| parts.clusters_pos)
}

/// The head's elements before the clusters, and where each goes (from the Segment's data).
struct HeadParts {
    /// Info's body, with the Duration.
    info: Vec<u8>,
    seekhead_body: u64,
    info_pos: u64,
    tracks_pos: u64,
    /// Where the clusters start: after the SeekHead, Info, Tracks and the extras.
    clusters_pos: u64,
    has_cues: bool,
}

impl HeadParts {
    fn new(index: &WebmIndex, extras_len: u64, has_cues: bool) -> Result<Self, Error> {
        let tracks_body = index
            .tracks_body()
            .ok_or(Error::Invalid("no Tracks in the Segment"))?;
        let mut info = index.info_body().map(<[u8]>::to_vec).unwrap_or_else(|| {
            let mut body = Vec::new();
            ebml::write_uint(&mut body, ebml::ID_TIMESTAMPSCALE, index.timestamp_scale());
            body
        });
        let duration = index.timeline().map_or(0.0, |t| t.duration_units());
        ebml::write_float(&mut info, ebml::ID_DURATION, duration);
        let info_len =
            ebml::header_len(ebml::ID_INFO, info.len() as u64) as u64 + info.len() as u64;
        let tracks_len = ebml::header_len(ebml::ID_TRACKS, tracks_body.len() as u64) as u64
            + tracks_body.len() as u64;
        let seekhead_body = SEEK_ENTRY_LEN * if has_cues { 3 } else { 2 };
        let info_pos = ebml::header_len(ebml::ID_SEEKHEAD, seekhead_body) as u64 + seekhead_body;
        let tracks_pos = info_pos + info_len;
        Ok(Self {
            info,
            seekhead_body,
            info_pos,
            tracks_pos,
            clusters_pos: tracks_pos + tracks_len + extras_len,
            has_cues,
        })
    }
}

/// The head of a finished WebM, around the extras (copied from the upload or held).
struct Head {
    /// EBML header, Segment header, SeekHead, Info with Duration, Tracks.
    before_extras: Vec<u8>,
    /// The Cues element, written after the clusters (empty without cue points).
    cues: Vec<u8>,
    /// Where the clusters start in the finished file.
    clusters_at: u64,
}

impl Head {
    /// Lays out the head for `parts`, clusters `clusters_len` long, and the encoded `cues`
    /// that follow them; the Segment's size is written when `sized`, else unknown (an
    /// unknown-size last Cluster then ends at the Cues, a level-1 element).
    ///
    /// The Cues come after the clusters, where `ffmpeg -c copy` puts them: the head stays a
    /// few kilobytes however many keyframes there are (a stop that plans it does constant
    /// work), and no position depends on the Cues' own size.
    fn lay_out(
        index: &WebmIndex,
        parts: HeadParts,
        cues: Vec<u8>,
        clusters_len: u64,
        sized: bool,
    ) -> Self {
        let cues_pos = parts.clusters_pos + clusters_len;
        let segment_len = cues_pos + cues.len() as u64;
        let tracks_body = index.tracks_body().unwrap_or_default();

        let mut head = Vec::with_capacity(4096);
        head.extend_from_slice(index.ebml_header());
        ebml::write_id(&mut head, ebml::ID_SEGMENT);
        if sized {
            ebml::write_size_with_len(&mut head, segment_len, 8);
        } else {
            head.extend_from_slice(&UNKNOWN_SIZE);
        }
        ebml::write_header(&mut head, ebml::ID_SEEKHEAD, parts.seekhead_body);
        let mut targets = vec![
            (ebml::ID_INFO, parts.info_pos),
            (ebml::ID_TRACKS, parts.tracks_pos),
        ];
        if parts.has_cues {
            targets.push((ebml::ID_CUES, cues_pos));
        }
        for (id, position) in targets {
            ebml::write_header(&mut head, ebml::ID_SEEK, SEEK_ENTRY_LEN - 3);
            ebml::write_binary(&mut head, ebml::ID_SEEKID, &id.to_be_bytes());
            ebml::write_header(&mut head, ebml::ID_SEEKPOSITION, 8);
            head.extend_from_slice(&position.to_be_bytes());
        }
        ebml::write_header(&mut head, ebml::ID_INFO, parts.info.len() as u64);
        head.extend_from_slice(&parts.info);
        ebml::write_header(&mut head, ebml::ID_TRACKS, tracks_body.len() as u64);
        head.extend_from_slice(tracks_body);
        let segment_data_start = index.ebml_header().len() as u64 + SEGMENT_HEADER_LEN;
        Self {
            before_extras: head,
            cues,
            clusters_at: segment_data_start + parts.clusters_pos,
        }
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

/// Pass 2 when the clusters cannot stay as uploaded: rewrite them with known sizes.
fn rewrite<R: Read + Seek, W: Write>(
    src: &mut Source<R>,
    index: &WebmIndex,
    output: W,
) -> Result<(), Error> {
    let extras_len: u64 = index.extras().iter().map(|extra| extra.len).sum();
    let mut cluster_offsets = Vec::with_capacity(index.clusters().len());
    let mut clusters_len = 0u64;
    for cluster in index.clusters() {
        cluster_offsets.push(clusters_len);
        clusters_len += cluster.rewritten_len();
    }
    let cues = index.rewrite_cues();
    let parts = HeadParts::new(index, extras_len, !cues.points.is_empty())?;
    let encoded = cues.encode_pointing(|cluster| {
        parts.clusters_pos + cluster_offsets.get(cluster).copied().unwrap_or(0)
    });
    let head = Head::lay_out(index, parts, encoded, clusters_len, true);

    let mut out = Counting {
        inner: BufWriter::with_capacity(BUFFER_SIZE, output),
        count: 0,
    };
    out.write_all(&head.before_extras)?;
    for extra in index.extras() {
        src.seek_to(extra.start)?;
        src.copy_to(extra.len, &mut out)?;
    }
    if out.count != head.clusters_at {
        return Err(Error::Invalid("input changed while finalizing"));
    }

    let mut header = Vec::with_capacity(16);
    for cluster in index.clusters() {
        let expected_end = out.count + cluster.rewritten_len();
        header.clear();
        ebml::write_header(&mut header, ebml::ID_CLUSTER, cluster.out_len);
        if cluster.zero_timestamp {
            header.extend_from_slice(&ZERO_TIMESTAMP);
        }
        out.write_all(&header)?;
        if cluster.contiguous() {
            src.seek_to(cluster.copy_start)?;
            src.copy_to(cluster.copy_end - cluster.copy_start, &mut out)?;
        } else {
            for &(start, end) in index.runs(cluster) {
                src.seek_to(start)?;
                src.copy_to(end - start, &mut out)?;
            }
        }
        if out.count != expected_end {
            return Err(Error::Invalid("input changed while finalizing"));
        }
    }
    out.write_all(&head.cues)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: [&[u8]; 4] = [
        include_bytes!("../tests/fixtures/chromium-vp8-kf1s.webm"),
        include_bytes!("../tests/fixtures/chromium-vp9.webm"),
        include_bytes!("../tests/fixtures/chromium-opus-only.webm"),
        include_bytes!("../tests/fixtures/chromium-vp8-truncated.webm"),
    ];

    /// The index fed `bytes` in pieces of `piece`, finished.
    fn indexed(bytes: &[u8], piece: usize) -> WebmIndex {
        let mut index = WebmIndex::new();
        for chunk in bytes.chunks(piece) {
            index.push(chunk).expect("a WebM");
        }
        index.finish().expect("a WebM");
        index
    }

    /// The Cues as encoded from the index's entries at plan time, without its encoded points.
    fn cues_encoded_afresh(index: &WebmIndex) -> Vec<u8> {
        let (first, _) = index.cluster_region().expect("clusters");
        let parts = HeadParts::new(index, index.extra_bytes().len() as u64, true).unwrap();
        verbatim_cues(index).encode_pointing(|cluster| {
            parts.clusters_pos + (index.clusters()[cluster].start - first)
        })
    }

    #[test]
    fn cue_points_encoded_as_they_arrive_are_the_ones_a_plan_would_encode() {
        for (i, bytes) in FIXTURES.iter().enumerate() {
            for piece in [1, 7, 4096, bytes.len()] {
                let index = indexed(bytes, piece);
                let clusters_pos = verbatim_clusters_position(&index).expect("a head");
                let points = index
                    .encoded_cue_points(clusters_pos)
                    .expect("every cue point encoded");
                assert!(!points.is_empty(), "fixture {i}");
                let layout = plan_webm(&index).expect("plans");
                let fresh = cues_encoded_afresh(&index);
                assert_eq!(layout.tail, fresh, "fixture {i}, pieces of {piece}");
                assert!(fresh.ends_with(points), "fixture {i}, pieces of {piece}");
            }
        }
    }

    #[test]
    fn a_restored_index_encodes_its_cue_points_again() {
        let bytes = FIXTURES[0];
        let mut index = WebmIndex::new();
        index.push(&bytes[..bytes.len() / 2]).unwrap();
        let mut restored = WebmIndex::restore(
            &index.encode_state(),
            &index.encode_entries(Default::default()),
        )
        .expect("restores");
        restored
            .push(&bytes[restored.resume_at() as usize..])
            .unwrap();
        restored.finish().unwrap();
        let whole = indexed(bytes, bytes.len());
        let clusters_pos = verbatim_clusters_position(&whole).expect("a head");
        let points = whole.encoded_cue_points(clusters_pos).expect("encoded");
        assert_eq!(restored.encoded_cue_points(clusters_pos), Some(points));
    }

    #[test]
    fn extras_after_the_clusters_move_them_and_the_plan_encodes_the_cues_afresh() {
        let bytes = FIXTURES[0];
        let mut index = WebmIndex::new();
        index.push(bytes).unwrap();
        let before = verbatim_clusters_position(&index).expect("a head");
        // Tags after the last cluster: carried in the head, so the clusters start later.
        let mut tags = Vec::new();
        ebml::write_header(&mut tags, ebml::ID_TAGS, 0);
        index.push(&tags).unwrap();
        index.finish().unwrap();
        let after = verbatim_clusters_position(&index).expect("a head");
        assert_eq!(after, before + tags.len() as u64);
        assert!(
            index.encoded_cue_points(after).is_none(),
            "encoded for {before}"
        );
        let layout = plan_webm(&index).expect("plans");
        assert_eq!(layout.tail, cues_encoded_afresh(&index));
    }
}
