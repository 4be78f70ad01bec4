//! Duration from the real block timestamps, up to the end of the last frame.
//!
//! A block's timestamp is when its frame starts; the file lasts until the
//! last frame ends. Its length comes, in order of trust, from the BlockGroup's
//! BlockDuration, the track's DefaultDuration, the Opus packet's TOC, or the
//! median interval between the track's recent frames.

use crate::block::opus_packet_duration_ns;
use crate::reader::BlockInfo;
use crate::wire::{Reader, Writer};
use crate::Error;

/// Intervals kept per track for the median; enough to ignore a few irregular frames.
const INTERVALS: usize = 63;

/// What the Tracks element says about one track.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackInfo {
    /// TrackNumber used by blocks.
    pub number: u64,
    /// TrackType (1 video, 2 audio).
    pub kind: u64,
    /// CodecID such as `V_VP8` or `A_OPUS`.
    pub codec: String,
    /// DefaultDuration in nanoseconds.
    pub default_duration_ns: Option<u64>,
}

impl TrackInfo {
    /// Whether this is a video track.
    pub fn is_video(&self) -> bool {
        self.kind == 1
    }
}

/// Running timing state of one track.
#[derive(Debug, Clone, PartialEq)]
struct TrackTiming {
    number: u64,
    default_duration_ns: Option<u64>,
    opus: bool,
    /// Latest end among blocks whose length is known, in timestamp units.
    known_end: Option<f64>,
    /// Latest-starting block whose length is unknown: (timestamp, frames).
    open_block: Option<(i64, u32)>,
    last_ts: Option<i64>,
    intervals: [i64; INTERVALS],
    interval_count: usize,
    interval_next: usize,
}

impl TrackTiming {
    fn median_interval(&self) -> Option<f64> {
        let mut sorted = self.intervals;
        let recent = &mut sorted[..self.interval_count];
        recent.sort_unstable();
        recent.get(recent.len() / 2).map(|&i| i as f64)
    }

    fn end(&self) -> Option<f64> {
        let open_end = self.open_block.map(|(ts, frames)| {
            ts as f64 + self.median_interval().unwrap_or(0.0) * f64::from(frames)
        });
        match (self.known_end, open_end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Collects block timings over a whole file; memory is constant per track.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Nanoseconds per timestamp unit.
    scale_ns: u64,
    tracks: Vec<TrackTiming>,
    first: Option<i64>,
}

impl Timeline {
    /// Starts a timeline for these tracks.
    pub fn new(scale_ns: u64, tracks: &[TrackInfo]) -> Self {
        let tracks = tracks
            .iter()
            .map(|track| TrackTiming {
                number: track.number,
                default_duration_ns: track.default_duration_ns.filter(|&d| d > 0),
                opus: track.codec == "A_OPUS",
                known_end: None,
                open_block: None,
                last_ts: None,
                intervals: [0; INTERVALS],
                interval_count: 0,
                interval_next: 0,
            })
            .collect();
        Self {
            scale_ns: scale_ns.max(1),
            tracks,
            first: None,
        }
    }

    /// Accounts for a block starting at `ts` (absolute, timestamp units); blocks of unknown tracks are ignored.
    pub fn add(&mut self, ts: i64, block: &BlockInfo) {
        let scale = self.scale_ns as f64;
        let Some(track) = self
            .tracks
            .iter_mut()
            .find(|t| t.number == block.header.track)
        else {
            return;
        };
        self.first = Some(self.first.map_or(ts, |first| first.min(ts)));
        let frames = block.header.frames;
        let length = if let Some(units) = block.duration {
            Some(units as f64)
        } else if let Some(ns) = track.default_duration_ns {
            Some(ns as f64 * f64::from(frames) / scale)
        } else if track.opus {
            block
                .header
                .first_byte
                .and_then(|toc| opus_packet_duration_ns(toc, block.header.second_byte))
                .map(|ns| ns as f64 * f64::from(frames) / scale)
        } else {
            None
        };
        match length {
            Some(length) => {
                let end = ts as f64 + length;
                track.known_end = Some(track.known_end.map_or(end, |e| e.max(end)));
            }
            None => {
                if track.open_block.is_none_or(|(open, _)| ts >= open) {
                    track.open_block = Some((ts, frames));
                }
            }
        }
        if let Some(last) = track.last_ts {
            let interval = ts.saturating_sub(last);
            if interval > 0 {
                track.intervals[track.interval_next] = interval / i64::from(frames.max(1));
                track.interval_next = (track.interval_next + 1) % INTERVALS;
                track.interval_count = (track.interval_count + 1).min(INTERVALS);
            }
        }
        track.last_ts = Some(ts);
    }

    /// Timestamp of the earliest block, in timestamp units.
    pub fn first(&self) -> Option<i64> {
        self.first
    }

    /// Length from the first block's start to the last frame's end, in timestamp units.
    pub fn duration_units(&self) -> f64 {
        let Some(first) = self.first else {
            return 0.0;
        };
        let end = self
            .tracks
            .iter()
            .filter_map(TrackTiming::end)
            .fold(f64::NEG_INFINITY, f64::max);
        if end.is_finite() {
            (end - first as f64).max(0.0)
        } else {
            0.0
        }
    }

    /// The same length in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.duration_units() * self.scale_ns as f64 / 1e9
    }
}

impl Timeline {
    /// Appends the running state to a saved index state.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.varint(self.scale_ns);
        w.signed_option(self.first);
        w.varint(self.tracks.len() as u64);
        for track in &self.tracks {
            w.varint(track.number);
            w.option(track.default_duration_ns);
            w.bool(track.opus);
            w.option(track.known_end.map(f64::to_bits));
            match track.open_block {
                Some((ts, frames)) => {
                    w.u8(1);
                    w.signed(ts);
                    w.varint(u64::from(frames));
                }
                None => w.u8(0),
            }
            w.signed_option(track.last_ts);
            w.varint(track.interval_count as u64);
            w.varint(track.interval_next as u64);
            for &interval in &track.intervals[..track.interval_count] {
                w.signed(interval);
            }
        }
    }

    /// Reads what [`Timeline::encode`] wrote.
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, Error> {
        let corrupt = Error::CorruptState("timeline");
        let scale_ns = r.varint()?.max(1);
        let first = r.signed_option()?;
        let count = r.varint()?;
        if count > 1024 {
            return Err(corrupt);
        }
        let mut tracks = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let number = r.varint()?;
            let default_duration_ns = r.option()?;
            let opus = r.bool()?;
            let known_end = r.option()?.map(f64::from_bits);
            let open_block = if r.bool()? {
                Some((r.signed()?, r.u32()?))
            } else {
                None
            };
            let last_ts = r.signed_option()?;
            let interval_count = r.varint()? as usize;
            let interval_next = r.varint()? as usize;
            if interval_count > INTERVALS || interval_next >= INTERVALS {
                return Err(Error::CorruptState("timeline"));
            }
            let mut intervals = [0; INTERVALS];
            for interval in &mut intervals[..interval_count] {
                *interval = r.signed()?;
            }
            tracks.push(TrackTiming {
                number,
                default_duration_ns,
                opus,
                known_end,
                open_block,
                last_ts,
                intervals,
                interval_count,
                interval_next,
            });
        }
        Ok(Self {
            scale_ns,
            tracks,
            first,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockHeader;

    fn track(number: u64, codec: &str, default_duration_ns: Option<u64>) -> TrackInfo {
        TrackInfo {
            number,
            kind: if codec.starts_with('V') { 1 } else { 2 },
            codec: codec.to_owned(),
            default_duration_ns,
        }
    }

    fn block(track: u64, first_byte: Option<u8>) -> BlockInfo {
        BlockInfo {
            header: BlockHeader {
                track,
                relative_ts: 0,
                keyframe: true,
                frames: 1,
                first_byte,
                second_byte: None,
            },
            keyframe: true,
            duration: None,
        }
    }

    #[test]
    fn the_last_video_frame_lasts_the_median_interval() {
        let mut timeline = Timeline::new(1_000_000, &[track(1, "V_VP8", None)]);
        for ts in [1000, 1050, 1100, 1160, 1200] {
            timeline.add(ts, &block(1, None));
        }
        // Intervals 50, 50, 60, 40: median 50; end = 1200 + 50; start = 1000.
        assert_eq!(timeline.duration_units(), 250.0);
        assert_eq!(timeline.first(), Some(1000));
    }

    #[test]
    fn opus_packets_end_after_their_toc_duration() {
        let mut timeline = Timeline::new(1_000_000, &[track(2, "A_OPUS", None)]);
        timeline.add(0, &block(2, Some(0xF8)));
        timeline.add(20, &block(2, Some(0xF8)));
        assert_eq!(timeline.duration_units(), 40.0);
    }

    #[test]
    fn default_duration_and_block_duration_win_over_guesses() {
        let mut timeline = Timeline::new(
            1_000_000,
            &[
                track(1, "V_VP8", Some(40_000_000)),
                track(2, "A_VORBIS", None),
            ],
        );
        timeline.add(0, &block(1, None));
        let mut long = block(2, None);
        long.duration = Some(500);
        timeline.add(10, &long);
        assert_eq!(timeline.duration_units(), 510.0);
        assert!((timeline.duration_secs() - 0.51).abs() < 1e-9);
    }

    #[test]
    fn blocks_of_undeclared_tracks_do_not_count() {
        let mut timeline = Timeline::new(1_000_000, &[track(1, "V_VP8", Some(40_000_000))]);
        timeline.add(100, &block(1, None));
        timeline.add(5000, &block(9, None));
        assert_eq!(timeline.duration_units(), 40.0);
    }
}
