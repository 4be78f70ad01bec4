//! MP4 structure check and duration, for recordings stored as they are.
//!
//! Boxes are walked by their headers; only small leaf boxes that carry
//! timing (mvhd, mehd, tkhd, mdhd, trex, tfhd, tfdt, trun) are read, so a
//! large file costs a few reads, not a load.

use std::io::{Read, Seek};

use crate::source::Source;
use crate::Error;

/// Largest leaf box read into memory; trun of one fragment is a few KiB.
const MAX_LEAF: u64 = 16 << 20;
/// Deepest box nesting followed (moof/traf/trun is 3, moov/trak/mdia/mdhd is 4).
const MAX_DEPTH: u32 = 6;
/// Read buffer for box headers and leaves.
const BUFFER: usize = 256 << 10;

/// What probing an MP4 found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mp4Info {
    /// Length of the longest track, in seconds.
    pub duration_secs: f64,
}

/// A box header at an absolute position.
#[derive(Debug, Clone, Copy)]
struct BoxHead {
    kind: [u8; 4],
    data_start: u64,
    end: u64,
}

/// Timing of one track, gathered from moov and every fragment.
#[derive(Debug, Clone, Default)]
struct Track {
    id: u32,
    timescale: u32,
    /// mdhd duration, in the track's timescale.
    media_duration: u64,
    /// Earliest fragment start and latest fragment end, in the track's timescale.
    fragment_start: Option<u64>,
    fragment_end: u64,
}

#[derive(Debug, Default)]
struct Probe {
    movie_timescale: u32,
    movie_duration: Option<u64>,
    fragment_duration: Option<u64>,
    tracks: Vec<Track>,
    /// trex default sample durations by track id (mvex may come before the traks).
    trex: Vec<(u32, u32)>,
    fragments: usize,
}

/// Reads the box header at `pos`; `None` when it is malformed or does not fit in `limit`.
fn read_box<R: Read + Seek>(
    src: &mut Source<R>,
    pos: u64,
    limit: u64,
) -> std::io::Result<Option<BoxHead>> {
    src.seek_to(pos)?;
    let bytes = src.peek(16)?;
    let (Some(size), Some(kind)) = (be_u32(bytes, 0), bytes.get(4..8)) else {
        return Ok(None);
    };
    let kind: [u8; 4] = [kind[0], kind[1], kind[2], kind[3]];
    let (header, end) = match size {
        0 => (8, Some(limit)),
        1 => match be_u64(bytes, 8) {
            Some(large) => (16, pos.checked_add(large)),
            None => return Ok(None),
        },
        size => (8, pos.checked_add(u64::from(size))),
    };
    Ok(end
        .filter(|&end| end >= pos + header && end <= limit)
        .map(|end| BoxHead {
            kind,
            data_start: pos + header,
            end,
        }))
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// A full box's version-dependent field: 32 bits in version 0, 64 in version 1.
fn versioned(data: &[u8], at_v0: usize, at_v1: usize) -> Option<u64> {
    match data.first()? {
        0 => be_u32(data, at_v0).map(u64::from),
        _ => be_u64(data, at_v1),
    }
}

/// Checks the structure and computes the duration; see [`crate::probe_mp4`].
pub fn probe<R: Read + Seek>(input: R) -> Result<Mp4Info, Error> {
    let mut src = Source::new(input, BUFFER)?;
    let len = src.input_len();
    let mut probe = Probe::default();
    let mut pos = 0;
    let mut seen_moov = false;
    while pos < len {
        let Some(head) = read_box(&mut src, pos, len)? else {
            if pos == 0 {
                return Err(Error::NotMp4);
            }
            // A recording cut off mid-box: what came before still counts.
            break;
        };
        match &head.kind {
            b"ftyp" => {}
            _ if pos == 0 => return Err(Error::NotMp4),
            b"moov" => {
                seen_moov = true;
                walk(&mut src, &head, 1, &mut probe, None)?;
            }
            b"moof" if seen_moov => {
                probe.fragments += 1;
                walk(&mut src, &head, 1, &mut probe, None)?;
            }
            _ => {}
        }
        pos = head.end;
    }
    if pos == 0 {
        return Err(Error::NotMp4);
    }
    if !seen_moov {
        return Err(Error::Invalid("no moov box"));
    }
    Ok(Mp4Info {
        duration_secs: probe.duration_secs(),
    })
}

/// Walks a container box, reading the timing leaves.
fn walk<R: Read + Seek>(
    src: &mut Source<R>,
    parent: &BoxHead,
    depth: u32,
    probe: &mut Probe,
    track: Option<usize>,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    // Fragment state: which track this traf is for and its defaults.
    let mut traf_track: Option<usize> = None;
    let mut traf_default_duration: Option<u32> = None;
    let mut traf_time: Option<u64> = None;
    let mut pos = parent.data_start;
    while pos < parent.end {
        let Some(head) = read_box(src, pos, parent.end)? else {
            return Err(Error::Invalid("malformed box"));
        };
        match &head.kind {
            b"trak" => {
                probe.tracks.push(Track::default());
                let index = probe.tracks.len() - 1;
                walk(src, &head, depth + 1, probe, Some(index))?;
            }
            b"mdia" | b"mvex" => walk(src, &head, depth + 1, probe, track)?,
            b"traf" => walk(src, &head, depth + 1, probe, None)?,
            b"mvhd" => {
                let data = read_leaf(src, &head)?;
                probe.movie_timescale = versioned_timescale(&data).unwrap_or(0);
                probe.movie_duration =
                    versioned(&data, 16, 24).filter(|&d| d != u64::from(u32::MAX) && d != u64::MAX);
            }
            b"mehd" => {
                let data = read_leaf(src, &head)?;
                probe.fragment_duration = versioned(&data, 4, 4);
            }
            b"tkhd" => {
                let data = read_leaf(src, &head)?;
                if let (Some(index), Some(id)) = (track, versioned_u32(&data, 12, 20)) {
                    probe.tracks[index].id = id;
                }
            }
            b"mdhd" => {
                let data = read_leaf(src, &head)?;
                if let Some(index) = track {
                    probe.tracks[index].timescale = versioned_timescale(&data).unwrap_or(0);
                    probe.tracks[index].media_duration = versioned(&data, 16, 24).unwrap_or(0);
                }
            }
            b"trex" => {
                let data = read_leaf(src, &head)?;
                if let (Some(id), Some(duration)) = (be_u32(&data, 4), be_u32(&data, 12)) {
                    probe.trex.push((id, duration));
                }
            }
            b"tfhd" => {
                let data = read_leaf(src, &head)?;
                let flags = be_u32(&data, 0).unwrap_or(0) & 0x00FF_FFFF;
                let id = be_u32(&data, 4).unwrap_or(0);
                traf_track = probe.tracks.iter().position(|t| t.id == id);
                // Optional fields in order: base-data-offset (8), sample-description-index (4).
                let mut at = 8;
                if flags & 0x01 != 0 {
                    at += 8;
                }
                if flags & 0x02 != 0 {
                    at += 4;
                }
                traf_default_duration = if flags & 0x08 != 0 {
                    be_u32(&data, at)
                } else {
                    None
                };
            }
            b"tfdt" => {
                let data = read_leaf(src, &head)?;
                traf_time = versioned(&data, 4, 4);
            }
            b"trun" => {
                let data = read_leaf(src, &head)?;
                if let Some(index) = traf_track {
                    let id = probe.tracks[index].id;
                    let trex = probe
                        .trex
                        .iter()
                        .find(|(t, _)| *t == id)
                        .map_or(0, |&(_, d)| d);
                    let default = traf_default_duration.unwrap_or(trex);
                    let t = &mut probe.tracks[index];
                    let run =
                        trun_duration(&data, default).ok_or(Error::Invalid("malformed trun"))?;
                    let start = traf_time.unwrap_or(t.fragment_end);
                    t.fragment_start = Some(t.fragment_start.map_or(start, |s| s.min(start)));
                    let end = start.saturating_add(run);
                    t.fragment_end = t.fragment_end.max(end);
                    // A second trun in the same traf continues where this one ended.
                    traf_time = Some(end);
                }
            }
            _ => {}
        }
        pos = head.end;
    }
    Ok(())
}

/// Timescale of mvhd/mdhd (after creation and modification times).
fn versioned_timescale(data: &[u8]) -> Option<u32> {
    match data.first()? {
        0 => be_u32(data, 12),
        _ => be_u32(data, 20),
    }
}

/// A 32-bit field whose offset depends on the full box version.
fn versioned_u32(data: &[u8], at_v0: usize, at_v1: usize) -> Option<u32> {
    match data.first()? {
        0 => be_u32(data, at_v0),
        _ => be_u32(data, at_v1),
    }
}

/// Sum of a trun's sample durations, in the track's timescale.
fn trun_duration(data: &[u8], default: u32) -> Option<u64> {
    let flags = be_u32(data, 0)? & 0x00FF_FFFF;
    let count = be_u32(data, 4)?;
    let mut at = 8;
    if flags & 0x001 != 0 {
        at += 4;
    }
    if flags & 0x004 != 0 {
        at += 4;
    }
    if flags & 0x100 == 0 {
        return Some(u64::from(count) * u64::from(default));
    }
    let entry = 4 * [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|&&bit| flags & bit != 0)
        .count();
    let needed = (count as usize).checked_mul(entry)?.checked_add(at)?;
    if needed > data.len() {
        return None;
    }
    Some(
        (0..count as usize)
            .filter_map(|i| be_u32(data, at + i * entry))
            .map(u64::from)
            .sum(),
    )
}

/// Reads a leaf box's data, bounded by [`MAX_LEAF`].
fn read_leaf<R: Read + Seek>(src: &mut Source<R>, head: &BoxHead) -> Result<Vec<u8>, Error> {
    let len = head.end - head.data_start;
    if len > MAX_LEAF {
        return Err(Error::Invalid("box too large"));
    }
    src.seek_to(head.data_start)?;
    Ok(src.read_vec(len as usize)?)
}

impl Probe {
    /// The real length: fragments when there are any, else the declared durations.
    fn duration_secs(&self) -> f64 {
        let fragments = self
            .tracks
            .iter()
            .filter(|t| t.timescale > 0)
            .filter_map(|t| {
                let start = t.fragment_start?;
                Some(t.fragment_end.saturating_sub(start) as f64 / f64::from(t.timescale))
            })
            .fold(0.0, f64::max);
        if self.fragments > 0 && fragments > 0.0 {
            return fragments;
        }
        if self.movie_timescale > 0 {
            for declared in [self.fragment_duration, self.movie_duration]
                .into_iter()
                .flatten()
            {
                if declared > 0 {
                    return declared as f64 / f64::from(self.movie_timescale);
                }
            }
        }
        self.tracks
            .iter()
            .filter(|t| t.timescale > 0)
            .map(|t| t.media_duration as f64 / f64::from(t.timescale))
            .fold(0.0, f64::max)
    }
}
