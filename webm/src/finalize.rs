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
    let cues = Cues {
        points: index
            .cues()
            .iter()
            .map(|entry| Cue {
                relative: entry.upload_relative,
                ..entry.cue
            })
            .collect(),
    };
    let offsets: Vec<u64> = index.clusters().iter().map(|c| c.start - first).collect();
    let head = Head::lay_out(
        index,
        index.extra_bytes().len() as u64,
        &cues,
        &offsets,
        end - first,
        !index.has_unknown_size_clusters(),
    )?;
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
    /// Lays out the head for clusters at `cluster_offsets` (from the first), `clusters_len`
    /// long, and the Cues that follow them; the Segment's size is written when `sized`, else
    /// unknown (an unknown-size last Cluster then ends at the Cues, a level-1 element).
    ///
    /// The Cues come after the clusters, where `ffmpeg -c copy` puts them: the head stays a
    /// few kilobytes however many keyframes there are (a stop that plans it does constant
    /// work), and no position depends on the Cues' own size.
    fn lay_out(
        index: &WebmIndex,
        extras_len: u64,
        cues: &Cues,
        cluster_offsets: &[u64],
        clusters_len: u64,
        sized: bool,
    ) -> Result<Self, Error> {
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
        let has_cues = !cues.points.is_empty();
        let seekhead_body = SEEK_ENTRY_LEN * if has_cues { 3 } else { 2 };
        let seekhead_len =
            ebml::header_len(ebml::ID_SEEKHEAD, seekhead_body) as u64 + seekhead_body;

        let info_pos = seekhead_len;
        let tracks_pos = info_pos + info_len;
        let clusters_pos = tracks_pos + tracks_len + extras_len;
        let offset = |cluster: usize| cluster_offsets.get(cluster).copied().unwrap_or(0);
        let encoded_cues = cues.encode_pointing(|cluster| clusters_pos + offset(cluster));
        let cues_pos = clusters_pos + clusters_len;
        let segment_len = cues_pos + encoded_cues.len() as u64;

        let mut head = Vec::with_capacity(4096);
        head.extend_from_slice(index.ebml_header());
        ebml::write_id(&mut head, ebml::ID_SEGMENT);
        if sized {
            ebml::write_size_with_len(&mut head, segment_len, 8);
        } else {
            head.extend_from_slice(&UNKNOWN_SIZE);
        }
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
        ebml::write_header(&mut head, ebml::ID_TRACKS, tracks_body.len() as u64);
        head.extend_from_slice(tracks_body);
        let segment_data_start = index.ebml_header().len() as u64 + SEGMENT_HEADER_LEN;
        Ok(Self {
            before_extras: head,
            cues: encoded_cues,
            clusters_at: segment_data_start + clusters_pos,
        })
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
    let head = Head::lay_out(
        index,
        extras_len,
        &cues,
        &cluster_offsets,
        clusters_len,
        true,
    )?;

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
