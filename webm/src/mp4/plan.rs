//! The finished MP4 planned from its index: a new head (ftyp, moov with durations, sidx),
//! the upload's fragments as they are, and an optional mfra.

use super::boxes::{begin_box, begin_full_box, end_box};
use super::fragment::TrackSpan;
use super::index::{Fragment, Mp4Index, Mp4Status};
use super::movie::{rewrite_moov, Durations, Movie};
use crate::layout::{Extent, Layout, Patch};
use crate::Error;

/// References one sidx box can hold (reference_count is 16 bits); more take several boxes.
const MAX_SIDX_REFERENCES: usize = u16::MAX as usize;

/// Which tracks get a `sidx` between the moov and the first fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sidx {
    /// No sidx.
    None,
    /// One sidx, for the reference track (video if any).
    ReferenceTrack,
    /// One sidx per track with samples, the reference track's first.
    EveryTrack,
}

/// The index boxes a finished MP4 gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexBoxes {
    /// The sidx boxes: one reference per fragment holding samples of their track.
    pub sidx: Sidx,
    /// An `mfra` (`tfra` per track + `mfro`) at the end.
    pub mfra: bool,
}

impl IndexBoxes {
    /// What [`plan_mp4`] writes: a sidx per track, no mfra (README, "Which index Chromium uses").
    pub const DEFAULT: Self = Self {
        sidx: Sidx::EveryTrack,
        mfra: false,
    };
}

/// A planned MP4 and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mp4Plan {
    /// The finished file.
    pub layout: Layout,
    /// Subsegments referenced by the sidx (0 without one): the seek points.
    pub sidx_references: usize,
}

/// Plans the finished file from a complete index (the upload ends at [`Mp4Index::position`]).
pub fn plan_mp4(index: &Mp4Index) -> Result<Layout, Error> {
    plan_mp4_with(index, IndexBoxes::DEFAULT).map(|plan| plan.layout)
}

/// [`plan_mp4`] with a choice of index boxes (to measure what players use).
pub fn plan_mp4_with(index: &Mp4Index, boxes: IndexBoxes) -> Result<Mp4Plan, Error> {
    match index.status() {
        Mp4Status::Refused(reason) => return Err(Error::Invalid(reason)),
        Mp4Status::NotFragmented => return Err(Error::Invalid("not a fragmented MP4")),
        Mp4Status::Head | Mp4Status::Fragments | Mp4Status::Stopped(_) => {}
    }
    let movie = index.movie().ok_or(Error::Invalid("no moov box"))?;
    let fragments = index.fragments();
    let (Some(first), Some(last)) = (fragments.first(), fragments.last()) else {
        return Err(Error::Invalid("no complete fragment"));
    };
    let moov = rewrite_moov(index.moov(), &durations(index, movie)).map_err(Error::Invalid)?;
    let mut head = Vec::with_capacity(index.ftyp().len() + moov.len() + 64);
    head.extend_from_slice(index.ftyp());
    head.extend_from_slice(&moov);

    let mut indexes = match boxes.sidx {
        Sidx::None => Vec::new(),
        Sidx::ReferenceTrack | Sidx::EveryTrack => sidx_tracks(index, movie),
    };
    if boxes.sidx == Sidx::ReferenceTrack {
        indexes.truncate(1);
    }
    write_sidx(&mut head, &indexes, MAX_SIDX_REFERENCES);
    // Every upload offset in the fragments moves by the same amount.
    let delta = i128::from(head.len() as u64) - i128::from(first.start);
    let moved = |offset: u64| -> Result<u64, Error> {
        u64::try_from(i128::from(offset) + delta)
            .map_err(|_| Error::Invalid("a base data offset cannot move"))
    };
    let mut patches = Vec::new();
    for fragment in fragments {
        for base in index.base_offsets(fragment) {
            patches.push(Patch {
                at: moved(base.at)?,
                bytes: moved(base.value)?.to_be_bytes(),
            });
        }
    }
    let tail = if boxes.mfra {
        mfra(index, movie, &moved)?
    } else {
        Vec::new()
    };
    Ok(Mp4Plan {
        layout: Layout {
            head,
            extents: vec![Extent {
                start: first.start,
                len: last.end - first.start,
            }],
            patches,
            tail,
        },
        sidx_references: indexes.first().map_or(0, |track| track.references.len()),
    })
}

/// Durations for mvhd/mehd (the span of all tracks), tkhd and mdhd.
fn durations(index: &Mp4Index, movie: &Movie) -> Durations {
    let scale = |ticks: i64, from: u32, up: bool| -> i64 {
        // i128: ticks * timescale overflows i64 for long recordings at 90 kHz.
        let num = i128::from(ticks) * i128::from(movie.timescale);
        let den = i128::from(from.max(1));
        let q = num.div_euclid(den);
        let q = if up && num.rem_euclid(den) != 0 {
            q + 1
        } else {
            q
        };
        i64::try_from(q).unwrap_or(if q < 0 { i64::MIN } else { i64::MAX })
    };
    let mut start = i64::MAX;
    let mut end = i64::MIN;
    let mut tracks = Vec::new();
    for (track, extent) in movie.tracks.iter().zip(index.track_extents()) {
        let Some(extent) = extent else {
            tracks.push((track.id, 0, 0));
            continue;
        };
        let first = scale(extent.presentation.start, track.timescale, false);
        let last = scale(extent.presentation.end, track.timescale, true);
        start = start.min(first);
        end = end.max(last);
        let presented = u64::try_from(last.saturating_sub(first)).unwrap_or(0);
        let media = extent.decode.end.saturating_sub(extent.decode.start);
        tracks.push((track.id, presented, media));
    }
    let movie_duration = if end >= start {
        u64::try_from(end.saturating_sub(start)).unwrap_or(0)
    } else {
        0
    };
    Durations {
        movie: movie_duration,
        tracks,
    }
}

/// One sidx: a track's subsegments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TrackIndex {
    track: u32,
    timescale: u32,
    references: Vec<Subsegment>,
}

/// A sidx for every track with samples, the reference track (video if any) first.
///
/// One sidx per track, as ffmpeg's muxer writes them: with only the video track's,
/// Chromium seeks the video through it but finds the audio position by reading every
/// fragment from the start (README, "Which index Chromium uses").
fn sidx_tracks(index: &Mp4Index, movie: &Movie) -> Vec<TrackIndex> {
    let extents: Vec<_> = index.track_extents().collect();
    let mut order: Vec<usize> = (0..movie.tracks.len())
        .filter(|&i| extents.get(i).is_some_and(Option::is_some))
        .collect();
    let reference = movie.reference();
    order.sort_by_key(|&i| i != reference);
    order
        .into_iter()
        .map(|i| {
            let track = &movie.tracks[i];
            let delay = extents[i].as_ref().map_or(0, |extent| {
                (extent.presentation.start - extent.decode.start as i64).max(0)
            });
            TrackIndex {
                track: track.id,
                timescale: track.timescale,
                references: subsegments(index, track.id, delay),
            }
        })
        .collect()
}

/// One sidx reference: a run of fragments starting with one of the reference track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subsegment {
    size: u64,
    earliest: u64,
    duration: u32,
    starts_with_sap: bool,
    sap_type: u8,
}

/// Groups the fragments into subsegments of `track`: each starts at a fragment holding
/// samples of it and runs up to the next one.
///
/// Earliest presentation times are counted from the track's first composition offset
/// (`delay`), as ffmpeg's muxer writes them: FFmpeg's demuxer (Chromium's too) takes the
/// first one plus the durations as the track's end, so B-frames' initial delay would
/// otherwise lengthen the reported duration by that delay.
fn subsegments(index: &Mp4Index, track: u32, delay: i64) -> Vec<Subsegment> {
    let fragments = index.fragments();
    let span_of = |fragment: &Fragment| -> Option<TrackSpan> {
        index
            .spans(fragment)
            .iter()
            .copied()
            .find(|span| span.track_id == track)
    };
    // (first fragment, its reference span, latest presentation end seen).
    let mut groups: Vec<(usize, TrackSpan, i64)> = Vec::new();
    for (i, fragment) in fragments.iter().enumerate() {
        let Some(span) = span_of(fragment) else {
            continue;
        };
        // The first subsegment starts at the first fragment, whatever it holds.
        let first = if groups.is_empty() { 0 } else { i };
        groups.push((first, span, span.presentation_end()));
    }
    let last_end = fragments.last().map_or(0, |f| f.end);
    let mut out = Vec::with_capacity(groups.len());
    for (g, &(first, span, end)) in groups.iter().enumerate() {
        let next = groups.get(g + 1);
        let start = fragments[first].start;
        let stop = next.map_or(last_end, |&(i, _, _)| fragments[i].start);
        let earliest = (span.earliest_presentation() - delay).max(0);
        let until = match next {
            Some(&(_, next_span, _)) => next_span.earliest_presentation(),
            None => end,
        } - delay;
        let sap = span.starts_with_sync();
        out.push(Subsegment {
            size: stop - start,
            earliest: earliest as u64,
            duration: u32::try_from((until - earliest).max(0)).unwrap_or(u32::MAX),
            starts_with_sap: sap,
            // Type 1: the sync sample is presented first; type 2: samples after it in decode
            // order are presented before it (B-frames of a closed GOP).
            sap_type: match (
                sap,
                span.first_presentation() == span.earliest_presentation(),
            ) {
                (false, _) => 0,
                (true, true) => 1,
                (true, false) => 2,
            },
        });
    }
    out
}

/// Bytes of a sidx box holding `references` references.
fn sidx_len(references: usize, wide: bool) -> u64 {
    (12 + 8 + if wide { 16 } else { 8 } + 4 + 12 * references) as u64
}

/// Appends the sidx boxes of `tracks`, each track's split into boxes of `per_box` references
/// at most; the subsegments follow the last box directly. Each box's first_offset skips the
/// boxes after it and the subsegments its track's earlier boxes reference.
fn write_sidx(out: &mut Vec<u8>, tracks: &[TrackIndex], per_box: usize) {
    struct Planned<'a> {
        track: &'a TrackIndex,
        references: &'a [Subsegment],
        covered_before: u64,
        wide: bool,
    }
    let mut boxes = Vec::new();
    for track in tracks {
        // Offsets depend on the widths of the boxes after, widths on offsets: decide from the
        // largest possible offset (all the subsegments), which is always safe.
        let total: u64 = track.references.iter().map(|r| r.size).sum();
        let mut covered_before = 0;
        for references in track.references.chunks(per_box.max(1)) {
            let earliest = references.first().map_or(0, |r| r.earliest);
            boxes.push(Planned {
                track,
                references,
                covered_before,
                wide: earliest > u64::from(u32::MAX) || total > u64::from(u32::MAX),
            });
            covered_before += references.iter().map(|r| r.size).sum::<u64>();
        }
    }
    let lens: Vec<u64> = boxes
        .iter()
        .map(|b| sidx_len(b.references.len(), b.wide))
        .collect();
    for (k, planned) in boxes.iter().enumerate() {
        let first_offset = lens[k + 1..].iter().sum::<u64>() + planned.covered_before;
        let at = begin_full_box(out, b"sidx", u8::from(planned.wide), 0);
        out.extend_from_slice(&planned.track.track.to_be_bytes());
        out.extend_from_slice(&planned.track.timescale.to_be_bytes());
        let earliest = planned.references.first().map_or(0, |r| r.earliest);
        if planned.wide {
            out.extend_from_slice(&earliest.to_be_bytes());
            out.extend_from_slice(&first_offset.to_be_bytes());
        } else {
            // Both fit: `wide` is set whenever either could exceed 32 bits.
            out.extend_from_slice(&(earliest as u32).to_be_bytes());
            out.extend_from_slice(&(first_offset as u32).to_be_bytes());
        }
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&(planned.references.len() as u16).to_be_bytes());
        for reference in planned.references {
            // Fragments are below 2^31 bytes (the index refuses larger ones).
            out.extend_from_slice(&((reference.size as u32) & 0x7FFF_FFFF).to_be_bytes());
            out.extend_from_slice(&reference.duration.to_be_bytes());
            let sap = (u32::from(reference.starts_with_sap) << 31)
                | (u32::from(reference.sap_type) << 28);
            out.extend_from_slice(&sap.to_be_bytes());
        }
        end_box(out, at);
    }
}

/// The mfra: a tfra per track listing the fragments that start with one of its sync samples.
fn mfra(
    index: &Mp4Index,
    movie: &Movie,
    moved: &dyn Fn(u64) -> Result<u64, Error>,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let at = begin_box(&mut out, b"mfra");
    for track in &movie.tracks {
        let tfra = begin_full_box(&mut out, b"tfra", 1, 0);
        out.extend_from_slice(&track.id.to_be_bytes());
        // Traf, trun and sample numbers take one byte each.
        out.extend_from_slice(&0u32.to_be_bytes());
        let count_at = out.len();
        out.extend_from_slice(&0u32.to_be_bytes());
        let mut count = 0u32;
        for fragment in index.fragments() {
            let Some(span) = index
                .spans(fragment)
                .iter()
                .find(|span| span.track_id == track.id && span.starts_with_sync())
            else {
                continue;
            };
            let time = u64::try_from(span.first_presentation().max(0)).unwrap_or(0);
            out.extend_from_slice(&time.to_be_bytes());
            out.extend_from_slice(&moved(fragment.moof)?.to_be_bytes());
            out.extend_from_slice(&[span.traf_number, 1, 1]);
            count += 1;
        }
        out[count_at..count_at + 4].copy_from_slice(&count.to_be_bytes());
        end_box(&mut out, tfra);
    }
    let mfro = begin_full_box(&mut out, b"mfro", 0, 0);
    let mfra_len = (out.len() - at + 4) as u32;
    out.extend_from_slice(&mfra_len.to_be_bytes());
    end_box(&mut out, mfro);
    end_box(&mut out, at);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::boxes::{be_u16, be_u32, be_u64, children};

    fn reference(size: u64, earliest: u64) -> Subsegment {
        Subsegment {
            size,
            earliest,
            duration: 1000,
            starts_with_sap: true,
            sap_type: 1,
        }
    }

    /// (first_offset, reference count, sizes) of each sidx in `bytes`, read back independently.
    fn read_sidx(bytes: &[u8]) -> Vec<(u64, u16, Vec<u32>)> {
        children(bytes)
            .map(|child| {
                let child = child.unwrap();
                assert_eq!(&child.kind, b"sidx");
                let data = child.data;
                let wide = data[0] == 1;
                let (offset, at) = if wide {
                    (be_u64(data, 20).unwrap(), 28)
                } else {
                    (u64::from(be_u32(data, 16).unwrap()), 20)
                };
                let count = be_u16(data, at + 2).unwrap();
                let sizes = (0..usize::from(count))
                    .map(|i| be_u32(data, at + 4 + 12 * i).unwrap() & 0x7FFF_FFFF)
                    .collect();
                (offset, count, sizes)
            })
            .collect()
    }

    #[test]
    fn chained_sidx_boxes_each_point_at_their_first_subsegment() {
        let references: Vec<Subsegment> = (0..7).map(|i| reference(100 + i, i * 1000)).collect();
        let audio: Vec<Subsegment> = (0..7).map(|i| reference(100 + i, i * 960)).collect();
        let tracks = [
            TrackIndex {
                track: 1,
                timescale: 90000,
                references: references.clone(),
            },
            TrackIndex {
                track: 2,
                timescale: 48000,
                references: audio,
            },
        ];
        let mut out = Vec::new();
        write_sidx(&mut out, &tracks, 3);
        let boxes = read_sidx(&out);
        assert_eq!(boxes.len(), 6, "three boxes per track");
        // Where each box ends, plus its first_offset, is where its first subsegment starts.
        let mut ends = Vec::new();
        let mut pos = 0;
        for child in children(&out) {
            pos += child.unwrap().raw.len() as u64;
            ends.push(pos);
        }
        let media_start = out.len() as u64;
        let mut subsegment_starts = vec![media_start];
        for r in &references {
            subsegment_starts.push(subsegment_starts.last().unwrap() + r.size);
        }
        for (k, (offset, count, sizes)) in boxes.iter().enumerate() {
            let chunk = k % 3;
            assert_eq!(ends[k] + offset, subsegment_starts[chunk * 3], "box {k}");
            assert_eq!(usize::from(*count), references[chunk * 3..].len().min(3));
            assert_eq!(u64::from(sizes[0]), references[chunk * 3].size);
        }
    }
}
