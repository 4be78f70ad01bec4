//! One `moof` box: per track, when its samples start and how long they last, and where their data is.
//!
//! Sample tables are walked only for what they say about time (durations,
//! composition offsets) and where the data lies (sizes, data offsets); the
//! samples themselves are never read.

use super::boxes::{children, Fields};
use super::movie::{Movie, TrackDefaults};

/// tfhd: base-data-offset present.
const TFHD_BASE_DATA_OFFSET: u32 = 0x01;
/// tfhd: sample-description-index present.
const TFHD_DESCRIPTION_INDEX: u32 = 0x02;
/// tfhd: default-sample-duration present.
const TFHD_DEFAULT_DURATION: u32 = 0x08;
/// tfhd: default-sample-size present.
const TFHD_DEFAULT_SIZE: u32 = 0x10;
/// tfhd: default-sample-flags present.
const TFHD_DEFAULT_FLAGS: u32 = 0x20;
/// tfhd: default-base-is-moof.
const TFHD_BASE_IS_MOOF: u32 = 0x02_0000;
/// trun: data-offset present.
const TRUN_DATA_OFFSET: u32 = 0x001;
/// trun: first-sample-flags present.
const TRUN_FIRST_FLAGS: u32 = 0x004;
/// trun: per-sample duration, size, flags, composition offset.
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTS: u32 = 0x800;
/// sample_is_non_sync_sample in sample flags.
pub const SAMPLE_NON_SYNC: u32 = 0x0001_0000;

/// What one track contributes to one fragment (its `traf`s in a `moof`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackSpan {
    /// track_ID.
    pub track_id: u32,
    /// 1-based position of the track's first traf in the moof (for `tfra`).
    pub traf_number: u8,
    /// Decode time of the first sample (tfdt, or where the previous fragment ended), media timescale.
    pub decode_time: u64,
    /// Sum of the sample durations, media timescale.
    pub duration: u32,
    /// Composition offset of the first sample in decode order.
    pub first_cts: i32,
    /// Earliest presentation time minus `decode_time`.
    pub earliest: i32,
    /// Latest presentation end minus (`decode_time` + `duration`).
    pub end_extra: i32,
    /// Flags of the first sample (sync or not, SAP hints).
    pub first_flags: u32,
}

impl TrackSpan {
    /// Whether the first sample is a sync sample (a keyframe).
    pub fn starts_with_sync(&self) -> bool {
        self.first_flags & SAMPLE_NON_SYNC == 0
    }

    /// Earliest presentation time, media timescale.
    pub fn earliest_presentation(&self) -> i64 {
        self.decode_start().saturating_add(i64::from(self.earliest))
    }

    /// Presentation time of the first sample in decode order, media timescale.
    pub fn first_presentation(&self) -> i64 {
        self.decode_start()
            .saturating_add(i64::from(self.first_cts))
    }

    /// End of the last presented sample, media timescale.
    pub fn presentation_end(&self) -> i64 {
        i64::try_from(self.decode_end())
            .unwrap_or(i64::MAX)
            .saturating_add(i64::from(self.end_extra))
    }

    /// Decode time after the last sample, media timescale.
    pub fn decode_end(&self) -> u64 {
        self.decode_time.saturating_add(u64::from(self.duration))
    }

    /// Decode time as a signed value (parsed ones are below 2^63).
    fn decode_start(&self) -> i64 {
        i64::try_from(self.decode_time).unwrap_or(i64::MAX)
    }
}

/// A tfhd's absolute base_data_offset, which moves with the fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseOffset {
    /// Absolute position of the 8-byte field in the upload.
    pub at: u64,
    /// Its value.
    pub value: u64,
}

/// What a parsed moof says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMoof {
    /// One span per track with samples, in traf order.
    pub spans: Vec<TrackSpan>,
    /// Absolute base offsets to patch when the fragment moves.
    pub base_offsets: Vec<BaseOffset>,
    /// End of the sample data (absolute); the fragment is complete once this is in.
    pub data_end: u64,
}

/// Parses a whole moof box (header included) found at `moof_start`.
///
/// `next_decode[i]` is where track `i`'s previous fragment ended, for trafs without tfdt.
pub fn parse_moof(
    moof: &[u8],
    moof_start: u64,
    movie: &Movie,
    next_decode: &[u64],
) -> Result<ParsedMoof, &'static str> {
    let moof_box = children(moof).next().ok_or("an empty moof")??;
    let moof_end = moof_start + moof.len() as u64;
    let mut parsed = ParsedMoof {
        spans: Vec::new(),
        base_offsets: Vec::new(),
        data_end: moof_end,
    };
    // Without a base offset or default-base-is-moof, a traf's data follows the previous traf's.
    let mut implicit_base = moof_start;
    let mut traf_number = 0u8;
    for child in children(moof_box.data) {
        let child = child?;
        if &child.kind != b"traf" {
            continue;
        }
        traf_number = traf_number.checked_add(1).ok_or("too many trafs")?;
        let traf_at = moof_start + (moof_box.header_len + child.offset + child.header_len) as u64;
        let traf = parse_traf(child.data, traf_at, moof_start, implicit_base, movie)?;
        if let Some(base) = traf.base_offset {
            parsed.base_offsets.push(base);
        }
        if let Some((start, end)) = traf.data {
            if start < moof_end {
                return Err("sample data before the end of its moof");
            }
            parsed.data_end = parsed.data_end.max(end);
            implicit_base = end;
        }
        let Some((index, run)) = traf.run else {
            continue;
        };
        let track_id = movie.tracks[index].id;
        match parsed.spans.iter_mut().find(|s| s.track_id == track_id) {
            // A second traf of the same track continues the first.
            Some(span) => extend(span, &run)?,
            None => {
                let decode_time = run
                    .decode_time
                    .unwrap_or(next_decode.get(index).copied().unwrap_or(0));
                parsed
                    .spans
                    .push(span_of(track_id, traf_number, decode_time, &run)?);
            }
        }
    }
    Ok(parsed)
}

/// Timing gathered from one traf's truns.
#[derive(Debug, Default)]
struct Run {
    /// tfdt, if the traf has one.
    decode_time: Option<u64>,
    samples: u64,
    duration: u64,
    first_cts: i64,
    /// Presentation extremes relative to the traf's decode start.
    earliest: i64,
    latest_end: i64,
    first_flags: u32,
}

struct Traf {
    base_offset: Option<BaseOffset>,
    /// Where its sample data starts and ends, when it has any.
    data: Option<(u64, u64)>,
    /// The track index and its timing, when the traf has samples of a known track.
    run: Option<(usize, Run)>,
}

fn parse_traf(
    traf: &[u8],
    traf_at: u64,
    moof_start: u64,
    implicit_base: u64,
    movie: &Movie,
) -> Result<Traf, &'static str> {
    let mut tfhd = None;
    let mut decode_time = None;
    for child in children(traf) {
        let child = child?;
        match &child.kind {
            b"tfhd" if tfhd.is_none() => {
                let at = traf_at + (child.offset + child.header_len) as u64;
                tfhd = Some(parse_tfhd(child.data, at)?);
            }
            b"tfdt" => {
                let mut fields = Fields::new(child.data, "a tfdt is cut short");
                let (version, _) = fields.version_flags()?;
                decode_time = Some(fields.versioned(version)?);
            }
            _ => {}
        }
    }
    let tfhd = tfhd.ok_or("a traf has no tfhd")?;
    let index = movie.track_index(tfhd.track_id);
    let trex = index.map_or(TrackDefaults::default(), |i| movie.tracks[i].defaults);
    let defaults = TrackDefaults {
        duration: tfhd.duration.unwrap_or(trex.duration),
        size: tfhd.size.unwrap_or(trex.size),
        flags: tfhd.flags.unwrap_or(trex.flags),
    };
    let base = match tfhd.base_offset {
        Some(base) => base.value,
        None if tfhd.base_is_moof => moof_start,
        None => implicit_base,
    };
    let mut run = Run {
        decode_time,
        ..Run::default()
    };
    let mut data: Option<(u64, u64)> = None;
    let mut next_data = base;
    for child in children(traf) {
        let child = child?;
        if &child.kind != b"trun" {
            continue;
        }
        let (start, len) = parse_trun(child.data, base, next_data, &defaults, &mut run)?;
        let end = start.checked_add(len).ok_or("sample data past 2^64")?;
        if len > 0 {
            data = Some(data.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
        }
        next_data = end;
    }
    let run = index.filter(|_| run.samples > 0).map(|index| (index, run));
    Ok(Traf {
        base_offset: tfhd.base_offset,
        data,
        run,
    })
}

struct Tfhd {
    track_id: u32,
    base_offset: Option<BaseOffset>,
    base_is_moof: bool,
    duration: Option<u32>,
    size: Option<u32>,
    flags: Option<u32>,
}

fn parse_tfhd(data: &[u8], data_at: u64) -> Result<Tfhd, &'static str> {
    let mut fields = Fields::new(data, "a tfhd is cut short");
    let (_, flags) = fields.version_flags()?;
    let track_id = fields.u32()?;
    let base_offset = if flags & TFHD_BASE_DATA_OFFSET != 0 {
        let at = data_at + fields.position() as u64;
        Some(BaseOffset {
            at,
            value: fields.u64()?,
        })
    } else {
        None
    };
    if flags & TFHD_DESCRIPTION_INDEX != 0 {
        fields.u32()?;
    }
    let mut optional = |bit: u32| -> Result<Option<u32>, &'static str> {
        if flags & bit != 0 {
            fields.u32().map(Some)
        } else {
            Ok(None)
        }
    };
    Ok(Tfhd {
        track_id,
        base_offset,
        base_is_moof: flags & TFHD_BASE_IS_MOOF != 0,
        duration: optional(TFHD_DEFAULT_DURATION)?,
        size: optional(TFHD_DEFAULT_SIZE)?,
        flags: optional(TFHD_DEFAULT_FLAGS)?,
    })
}

/// Reads one trun into `run`; returns where its data starts and how long it is.
fn parse_trun(
    data: &[u8],
    base: u64,
    next_data: u64,
    defaults: &TrackDefaults,
    run: &mut Run,
) -> Result<(u64, u64), &'static str> {
    let mut fields = Fields::new(data, "a trun is cut short");
    let (version, flags) = fields.version_flags()?;
    let count = u64::from(fields.u32()?);
    let start = if flags & TRUN_DATA_OFFSET != 0 {
        let offset = i64::from(fields.u32()? as i32);
        base.checked_add_signed(offset)
            .ok_or("a data offset before the file")?
    } else {
        next_data
    };
    let first_flags = if flags & TRUN_FIRST_FLAGS != 0 {
        Some(fields.u32()?)
    } else {
        None
    };
    let per_sample = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTS]
        .iter()
        .filter(|&&bit| flags & bit != 0)
        .count()
        * 4;
    let first_in_traf = run.samples == 0;
    let decode_start = i64::try_from(run.duration).map_err(|_| "a fragment too long")?;
    let mut size = 0u64;
    if per_sample == 0 {
        // Every sample takes the defaults: no table to walk, whatever the count.
        size = count * u64::from(defaults.size);
        let duration = count * u64::from(defaults.duration);
        if count > 0 {
            if first_in_traf {
                run.first_flags = first_flags.unwrap_or(defaults.flags);
                run.first_cts = 0;
                run.earliest = decode_start;
            }
            run.earliest = run.earliest.min(decode_start);
            let end = i64::try_from(duration)
                .ok()
                .and_then(|d| decode_start.checked_add(d))
                .ok_or("a fragment too long")?;
            run.latest_end = run.latest_end.max(end);
        }
        run.duration = run
            .duration
            .checked_add(duration)
            .ok_or("a fragment too long")?;
    } else {
        if count > fields.remaining().checked_div(per_sample).unwrap_or(0) as u64 {
            return Err("a trun lists more samples than it holds");
        }
        let mut dts = decode_start;
        for i in 0..count {
            let duration = if flags & TRUN_DURATION != 0 {
                fields.u32()?
            } else {
                defaults.duration
            };
            size += u64::from(if flags & TRUN_SIZE != 0 {
                fields.u32()?
            } else {
                defaults.size
            });
            let sample_flags = if flags & TRUN_FLAGS != 0 {
                fields.u32()?
            } else {
                defaults.flags
            };
            let cts = if flags & TRUN_CTS != 0 {
                let raw = fields.u32()?;
                if version == 0 {
                    i64::from(raw)
                } else {
                    i64::from(raw as i32)
                }
            } else {
                0
            };
            let pts = dts + cts;
            let end = pts + i64::from(duration);
            if first_in_traf && i == 0 {
                run.first_flags = first_flags.unwrap_or(sample_flags);
                run.first_cts = cts;
                run.earliest = pts;
                run.latest_end = end;
            }
            run.earliest = run.earliest.min(pts);
            run.latest_end = run.latest_end.max(end);
            dts += i64::from(duration);
        }
        run.duration = u64::try_from(dts).map_err(|_| "a fragment too long")?;
    }
    run.samples += count;
    Ok((start, size))
}

fn span_of(
    track_id: u32,
    traf_number: u8,
    decode_time: u64,
    run: &Run,
) -> Result<TrackSpan, &'static str> {
    const LONG: &str = "a fragment lasts longer than 2^32 ticks";
    if i64::try_from(decode_time).is_err() {
        return Err("a decode time past 2^63");
    }
    let duration = u32::try_from(run.duration).map_err(|_| LONG)?;
    Ok(TrackSpan {
        track_id,
        traf_number,
        decode_time,
        duration,
        first_cts: i32::try_from(run.first_cts).map_err(|_| LONG)?,
        earliest: i32::try_from(run.earliest).map_err(|_| LONG)?,
        end_extra: i32::try_from(run.latest_end - i64::from(duration)).map_err(|_| LONG)?,
        first_flags: run.first_flags,
    })
}

/// Adds a later traf of the same track to its span.
fn extend(span: &mut TrackSpan, run: &Run) -> Result<(), &'static str> {
    const LONG: &str = "a fragment lasts longer than 2^32 ticks";
    let start = run.decode_time.unwrap_or(span.decode_end());
    let offset = i64::try_from(start)
        .map_err(|_| "a decode time past 2^63")?
        .saturating_sub(span.decode_time as i64);
    let run_duration = i64::try_from(run.duration).map_err(|_| LONG)?;
    let earliest = i64::from(span.earliest).min(offset.saturating_add(run.earliest));
    let latest = (i64::from(span.end_extra) + i64::from(span.duration))
        .max(offset.saturating_add(run.latest_end));
    let duration = offset
        .saturating_add(run_duration)
        .max(i64::from(span.duration));
    span.duration = u32::try_from(duration).map_err(|_| LONG)?;
    span.earliest = i32::try_from(earliest).map_err(|_| LONG)?;
    span.end_extra = i32::try_from(latest - duration).map_err(|_| LONG)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mp4::movie::parse_movie;
    use crate::mp4::movie::tests::{bx, full, moov};

    /// One traf of a test fragment: track id, tfdt, sample durations, sizes, composition offsets.
    pub(crate) type TestTraf<'a> = (u32, u64, &'a [u32], &'a [u32], &'a [i32]);

    /// A moof with one traf per [`TestTraf`], default-base-is-moof, data offsets pointing into
    /// an mdat right after it. Returns moof and mdat.
    pub(crate) fn fragment(trafs: &[TestTraf]) -> (Vec<u8>, Vec<u8>) {
        let build = |data_offsets: &[u32]| {
            let mut body = full(b"mfhd", 0, 0, &1u32.to_be_bytes());
            for (i, &(id, tfdt, durations, sizes, cts)) in trafs.iter().enumerate() {
                let tfhd = full(b"tfhd", 0, TFHD_BASE_IS_MOOF, &id.to_be_bytes());
                let tfdt = full(b"tfdt", 1, 0, &tfdt.to_be_bytes());
                let mut trun = Vec::new();
                trun.extend_from_slice(&(durations.len() as u32).to_be_bytes());
                trun.extend_from_slice(&data_offsets[i].to_be_bytes());
                trun.extend_from_slice(&0x0200_0000u32.to_be_bytes());
                for ((d, s), c) in durations.iter().zip(sizes.iter()).zip(cts.iter()) {
                    trun.extend_from_slice(&d.to_be_bytes());
                    trun.extend_from_slice(&s.to_be_bytes());
                    trun.extend_from_slice(&c.to_be_bytes());
                }
                let flags =
                    TRUN_DATA_OFFSET | TRUN_FIRST_FLAGS | TRUN_DURATION | TRUN_SIZE | TRUN_CTS;
                let trun = full(b"trun", 1, flags, &trun);
                body.extend(bx(b"traf", &[tfhd, tfdt, trun].concat()));
            }
            bx(b"moof", &body)
        };
        let moof_len = build(&vec![0; trafs.len()]).len() as u32;
        let mut offsets = Vec::new();
        let mut at = moof_len + 8;
        for &(_, _, _, sizes, _) in trafs {
            offsets.push(at);
            at += sizes.iter().sum::<u32>();
        }
        let data: Vec<u8> = (0..at - moof_len - 8).map(|i| i as u8).collect();
        (build(&offsets), bx(b"mdat", &data))
    }

    #[test]
    fn spans_follow_durations_and_composition_offsets() {
        let movie = parse_movie(&moov(&[(1, 90000, b"vide"), (2, 48000, b"soun")], true)).unwrap();
        let (moof, mdat) = fragment(&[
            (
                1,
                9000,
                &[3000, 3000, 3000],
                &[100, 20, 30],
                &[6000, 0, 3000],
            ),
            (2, 4800, &[1024, 1024], &[7, 7], &[0, 0]),
        ]);
        let parsed = parse_moof(&moof, 1000, &movie, &[0, 0]).unwrap();
        assert_eq!(parsed.data_end, 1000 + (moof.len() + mdat.len()) as u64);
        let video = parsed.spans[0];
        assert_eq!((video.decode_time, video.duration), (9000, 9000));
        // Presentation: 15000, 12000, 18000 (+3000 each): earliest 12000, end 21000.
        assert_eq!(video.earliest_presentation(), 12000);
        assert_eq!(video.first_presentation(), 15000);
        assert_eq!(video.presentation_end(), 21000);
        assert!(video.starts_with_sync());
        let audio = parsed.spans[1];
        assert_eq!((audio.track_id, audio.traf_number), (2, 2));
        assert_eq!((audio.decode_time, audio.decode_end()), (4800, 6848));
        assert!(parsed.base_offsets.is_empty());
    }

    #[test]
    fn a_trun_claiming_more_samples_than_it_holds_is_refused() {
        let movie = parse_movie(&moov(&[(1, 90000, b"vide")], true)).unwrap();
        let (mut moof, _) = fragment(&[(1, 0, &[3000], &[10], &[0])]);
        let trun = moof.windows(4).position(|w| w == b"trun").unwrap();
        moof[trun + 8..trun + 12].copy_from_slice(&1000u32.to_be_bytes());
        assert!(parse_moof(&moof, 0, &movie, &[0]).is_err());
    }
}
