//! The `moov` box: what the fragments need from it, and its rewrite with real durations.
//!
//! A recorder writes the moov before it knows how long the recording will be,
//! so its durations are 0. The rewrite walks moov, trak, mdia and mvex, sets
//! the durations of mvhd, tkhd and mdhd (widening a box to version 1 only when
//! a duration needs 64 bits), puts an mehd first in mvex, and copies every
//! other box byte for byte.

use super::boxes::{be_u32, begin_box, begin_full_box, children, end_box, find, Fields, FourCC};

/// Most tracks followed; recordings have one or two.
pub const MAX_TRACKS: usize = 16;

/// Defaults a track's fragments fall back on (`trex`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackDefaults {
    /// default_sample_duration.
    pub duration: u32,
    /// default_sample_size.
    pub size: u32,
    /// default_sample_flags.
    pub flags: u32,
}

/// One `trak`, as far as fragments are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// track_ID from tkhd.
    pub id: u32,
    /// Media timescale from mdhd (ticks per second).
    pub timescale: u32,
    /// Handler type from hdlr (`vide`, `soun`, …).
    pub handler: FourCC,
    /// Defaults from the matching trex.
    pub defaults: TrackDefaults,
}

impl Track {
    /// Whether this is a video track.
    pub fn is_video(&self) -> bool {
        &self.handler == b"vide"
    }
}

/// What the moov says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movie {
    /// Movie timescale from mvhd.
    pub timescale: u32,
    /// The tracks, in moov order.
    pub tracks: Vec<Track>,
    /// An mvex is present: the movie continues in fragments.
    pub fragmented: bool,
    /// Some sample table lists samples: media lives outside fragments.
    pub has_samples: bool,
}

impl Movie {
    /// Index of the track whose fragments the sidx references: the first video track, else the first.
    pub fn reference(&self) -> usize {
        self.tracks.iter().position(Track::is_video).unwrap_or(0)
    }

    /// Index of the track with this id.
    pub fn track_index(&self, id: u32) -> Option<usize> {
        self.tracks.iter().position(|track| track.id == id)
    }
}

/// Parses a whole `moov` box (header included).
pub fn parse_movie(moov: &[u8]) -> Result<Movie, &'static str> {
    let data = box_data(moov)?;
    let mvhd = find(data, b"mvhd")?.ok_or("the moov has no mvhd")?;
    let mut fields = Fields::new(mvhd.data, "the mvhd is cut short");
    let (version, _) = fields.version_flags()?;
    fields.skip(if version == 0 { 8 } else { 16 })?;
    let timescale = fields.u32()?;
    if timescale == 0 {
        return Err("the mvhd has a zero timescale");
    }
    let mut movie = Movie {
        timescale,
        tracks: Vec::new(),
        fragmented: false,
        has_samples: false,
    };
    let mut trex = Vec::new();
    for child in children(data) {
        let child = child?;
        match &child.kind {
            b"trak" => {
                if movie.tracks.len() == MAX_TRACKS {
                    return Err("the moov declares too many tracks");
                }
                let (track, has_samples) = parse_track(child.data)?;
                if movie.tracks.iter().any(|t| t.id == track.id) {
                    return Err("two tracks share an id");
                }
                movie.has_samples |= has_samples;
                movie.tracks.push(track);
            }
            b"mvex" => {
                movie.fragmented = true;
                for grandchild in children(child.data) {
                    let grandchild = grandchild?;
                    if &grandchild.kind == b"trex" {
                        let mut fields = Fields::new(grandchild.data, "a trex is cut short");
                        fields.version_flags()?;
                        let id = fields.u32()?;
                        fields.u32()?; // default_sample_description_index
                        let defaults = TrackDefaults {
                            duration: fields.u32()?,
                            size: fields.u32()?,
                            flags: fields.u32()?,
                        };
                        trex.push((id, defaults));
                    }
                }
            }
            _ => {}
        }
    }
    if movie.tracks.is_empty() {
        return Err("the moov has no track");
    }
    for track in &mut movie.tracks {
        if let Some(&(_, defaults)) = trex.iter().find(|(id, _)| *id == track.id) {
            track.defaults = defaults;
        }
    }
    Ok(movie)
}

/// The data of a whole box held in memory.
fn box_data(whole: &[u8]) -> Result<&[u8], &'static str> {
    let mut iter = children(whole);
    let first = iter.next().ok_or("an empty box")??;
    Ok(first.data)
}

/// Reads a trak: its track and whether its sample table lists samples.
fn parse_track(trak: &[u8]) -> Result<(Track, bool), &'static str> {
    let tkhd = find(trak, b"tkhd")?.ok_or("a trak has no tkhd")?;
    let mut fields = Fields::new(tkhd.data, "a tkhd is cut short");
    let (version, _) = fields.version_flags()?;
    fields.skip(if version == 0 { 8 } else { 16 })?;
    let id = fields.u32()?;
    let mdia = find(trak, b"mdia")?.ok_or("a trak has no mdia")?;
    let mdhd = find(mdia.data, b"mdhd")?.ok_or("a trak has no mdhd")?;
    let mut fields = Fields::new(mdhd.data, "an mdhd is cut short");
    let (version, _) = fields.version_flags()?;
    fields.skip(if version == 0 { 8 } else { 16 })?;
    let timescale = fields.u32()?;
    if timescale == 0 {
        return Err("a track has a zero timescale");
    }
    let hdlr = find(mdia.data, b"hdlr")?.ok_or("a trak has no hdlr")?;
    let handler = be_u32(hdlr.data, 8)
        .ok_or("an hdlr is cut short")?
        .to_be_bytes();
    let stbl = match find(mdia.data, b"minf")? {
        Some(minf) => find(minf.data, b"stbl")?,
        None => None,
    };
    let mut has_samples = false;
    if let Some(stbl) = stbl {
        for table in children(stbl.data) {
            let table = table?;
            // The entry count sits after version and flags (and sample_size for stsz, field_size for stz2).
            let count_at = match &table.kind {
                b"stts" | b"stco" | b"co64" | b"stsc" => 4,
                b"stsz" | b"stz2" => 8,
                _ => continue,
            };
            has_samples |= be_u32(table.data, count_at).is_some_and(|count| count > 0);
        }
    }
    let track = Track {
        id,
        timescale,
        handler,
        defaults: TrackDefaults::default(),
    };
    Ok((track, has_samples))
}

/// Durations to write, each in the timescale its box uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durations {
    /// mvhd and mehd, in the movie timescale.
    pub movie: u64,
    /// Per track id: tkhd (movie timescale) and mdhd (media timescale).
    pub tracks: Vec<(u32, u64, u64)>,
}

/// Rewrites a whole `moov` box with `durations` and an `mehd`.
pub fn rewrite_moov(moov: &[u8], durations: &Durations) -> Result<Vec<u8>, &'static str> {
    let data = box_data(moov)?;
    let mut out = Vec::with_capacity(moov.len() + 32);
    let at = begin_box(&mut out, b"moov");
    for child in children(data) {
        let child = child?;
        match &child.kind {
            b"mvhd" => write_with_duration(&mut out, &child.kind, child.data, durations.movie)?,
            b"trak" => rewrite_trak(&mut out, child.data, durations)?,
            b"mvex" => {
                let mvex = begin_box(&mut out, b"mvex");
                // mehd must come first in mvex.
                let version = u8::from(durations.movie > u64::from(u32::MAX));
                let mehd = begin_full_box(&mut out, b"mehd", version, 0);
                if version == 0 {
                    out.extend_from_slice(&(durations.movie as u32).to_be_bytes());
                } else {
                    out.extend_from_slice(&durations.movie.to_be_bytes());
                }
                end_box(&mut out, mehd);
                for grandchild in children(child.data) {
                    let grandchild = grandchild?;
                    if &grandchild.kind != b"mehd" {
                        out.extend_from_slice(grandchild.raw);
                    }
                }
                end_box(&mut out, mvex);
            }
            _ => out.extend_from_slice(child.raw),
        }
    }
    end_box(&mut out, at);
    Ok(out)
}

fn rewrite_trak(out: &mut Vec<u8>, trak: &[u8], durations: &Durations) -> Result<(), &'static str> {
    let (track, _) = parse_track(trak)?;
    let (_, presented, media) = durations
        .tracks
        .iter()
        .copied()
        .find(|(id, _, _)| *id == track.id)
        .unwrap_or((track.id, 0, 0));
    let at = begin_box(out, b"trak");
    for child in children(trak) {
        let child = child?;
        match &child.kind {
            b"tkhd" => write_with_duration(out, &child.kind, child.data, presented)?,
            b"mdia" => {
                let mdia = begin_box(out, b"mdia");
                for grandchild in children(child.data) {
                    let grandchild = grandchild?;
                    if &grandchild.kind == b"mdhd" {
                        write_with_duration(out, b"mdhd", grandchild.data, media)?;
                    } else {
                        out.extend_from_slice(grandchild.raw);
                    }
                }
                end_box(out, mdia);
            }
            _ => out.extend_from_slice(child.raw),
        }
    }
    end_box(out, at);
    Ok(())
}

/// Writes mvhd, tkhd or mdhd with a new duration, widened to version 1 only if needed.
fn write_with_duration(
    out: &mut Vec<u8>,
    kind: &FourCC,
    data: &[u8],
    duration: u64,
) -> Result<(), &'static str> {
    let mut fields = Fields::new(data, "a header box is cut short");
    let (version, flags) = fields.version_flags()?;
    let creation = fields.versioned(version)?;
    let modification = fields.versioned(version)?;
    // mvhd, mdhd: timescale. tkhd: track_ID and a reserved word.
    let middle_len = if kind == b"tkhd" { 8 } else { 4 };
    let middle_at = fields.position();
    fields.skip(middle_len)?;
    fields.versioned(version)?;
    let rest = &data[fields.position()..];
    let middle = &data[middle_at..middle_at + middle_len];
    let wide = version != 0 || duration >= u64::from(u32::MAX);
    let at = begin_full_box(out, kind, u8::from(wide), flags);
    if wide {
        out.extend_from_slice(&creation.to_be_bytes());
        out.extend_from_slice(&modification.to_be_bytes());
        out.extend_from_slice(middle);
        out.extend_from_slice(&duration.to_be_bytes());
    } else {
        // Version 0 fields were read from 32 bits, so they fit back.
        out.extend_from_slice(&(creation as u32).to_be_bytes());
        out.extend_from_slice(&(modification as u32).to_be_bytes());
        out.extend_from_slice(middle);
        out.extend_from_slice(&(duration as u32).to_be_bytes());
    }
    out.extend_from_slice(rest);
    end_box(out, at);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mp4::boxes::be_u64;

    /// A box from its type and data.
    pub(crate) fn bx(kind: &FourCC, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let at = begin_box(&mut out, kind);
        out.extend_from_slice(data);
        end_box(&mut out, at);
        out
    }

    /// A version 0 full box.
    pub(crate) fn full(kind: &FourCC, version: u8, flags: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let at = begin_full_box(&mut out, kind, version, flags);
        out.extend_from_slice(data);
        end_box(&mut out, at);
        out
    }

    /// A moov with the given (track id, timescale, handler) and a trex each; `mvex` adds mvex.
    pub(crate) fn moov(tracks: &[(u32, u32, &FourCC)], mvex: bool) -> Vec<u8> {
        let mvhd_data = [
            &[0u8; 8][..],
            &1000u32.to_be_bytes(),
            &0u32.to_be_bytes(),
            &[0x55; 80],
        ]
        .concat();
        let mut body = full(b"mvhd", 0, 0, &mvhd_data);
        for &(id, timescale, handler) in tracks {
            let tkhd = full(
                b"tkhd",
                0,
                3,
                &[&[0u8; 8][..], &id.to_be_bytes(), &[0; 8], &[0x66; 60]].concat(),
            );
            let mdhd = full(
                b"mdhd",
                0,
                0,
                &[
                    &[0u8; 8][..],
                    &timescale.to_be_bytes(),
                    &[0; 4],
                    &[0x15, 0xC7, 0, 0],
                ]
                .concat(),
            );
            let hdlr = full(b"hdlr", 0, 0, &[&[0u8; 4][..], handler, &[0; 13]].concat());
            let stbl = bx(b"stbl", &full(b"stts", 0, 0, &[0; 4]));
            let minf = bx(b"minf", &stbl);
            let mdia = bx(b"mdia", &[mdhd, hdlr, minf].concat());
            body.extend(bx(b"trak", &[tkhd, mdia].concat()));
        }
        if mvex {
            let trex: Vec<u8> = tracks
                .iter()
                .flat_map(|&(id, _, _)| {
                    full(
                        b"trex",
                        0,
                        0,
                        &[
                            &id.to_be_bytes()[..],
                            &1u32.to_be_bytes(),
                            &[0; 4],
                            &[0; 4],
                            &[0; 4],
                        ]
                        .concat(),
                    )
                })
                .collect();
            body.extend(bx(b"mvex", &trex));
        }
        bx(b"moov", &body)
    }

    fn durations_in(moov: &[u8]) -> (u64, Vec<u64>, Vec<u64>, Option<u64>) {
        let data = box_data(moov).unwrap();
        let read = |data: &[u8], tkhd: bool| {
            let version = data[0];
            let at = match (version, tkhd) {
                (0, false) => 16,
                (0, true) => 20,
                (_, false) => 24,
                (_, true) => 28,
            };
            if version == 0 {
                u64::from(be_u32(data, at).unwrap())
            } else {
                be_u64(data, at).unwrap()
            }
        };
        let mvhd = read(find(data, b"mvhd").unwrap().unwrap().data, false);
        let mut tkhd = Vec::new();
        let mut mdhd = Vec::new();
        for child in children(data) {
            let child = child.unwrap();
            if &child.kind == b"trak" {
                tkhd.push(read(find(child.data, b"tkhd").unwrap().unwrap().data, true));
                let mdia = find(child.data, b"mdia").unwrap().unwrap();
                mdhd.push(read(find(mdia.data, b"mdhd").unwrap().unwrap().data, false));
            }
        }
        let mehd = find(data, b"mvex").unwrap().map(|mvex| {
            let first = children(mvex.data).next().unwrap().unwrap();
            assert_eq!(&first.kind, b"mehd", "mehd comes first in mvex");
            if first.data[0] == 0 {
                u64::from(be_u32(first.data, 4).unwrap())
            } else {
                be_u64(first.data, 4).unwrap()
            }
        });
        (mvhd, tkhd, mdhd, mehd)
    }

    #[test]
    fn a_fragmented_moov_is_read_with_its_defaults() {
        let movie = parse_movie(&moov(&[(1, 48000, b"soun"), (2, 90000, b"vide")], true)).unwrap();
        assert!(movie.fragmented && !movie.has_samples);
        assert_eq!(movie.timescale, 1000);
        assert_eq!(movie.reference(), 1, "the video track is the reference");
        assert_eq!(movie.tracks[0].timescale, 48000);
        assert_eq!(movie.tracks[1].defaults.duration, 0);
        assert!(
            !parse_movie(&moov(&[(1, 48000, b"soun")], false))
                .unwrap()
                .fragmented
        );
    }

    #[test]
    fn durations_are_written_everywhere_and_widen_only_when_needed() {
        let original = moov(&[(1, 48000, b"soun"), (2, 90000, b"vide")], true);
        let durations = Durations {
            movie: 5067,
            tracks: vec![(1, 5067, 243_200), (2, 5000, 450_000)],
        };
        let rewritten = rewrite_moov(&original, &durations).unwrap();
        assert_eq!(
            durations_in(&rewritten),
            (5067, vec![5067, 5000], vec![243_200, 450_000], Some(5067))
        );
        assert_eq!(
            parse_movie(&rewritten).unwrap(),
            parse_movie(&original).unwrap()
        );
        // Rewriting twice replaces the mehd rather than adding a second one.
        let twice = rewrite_moov(&rewritten, &durations).unwrap();
        assert_eq!(twice, rewritten);

        let long = Durations {
            movie: 1 << 33,
            tracks: vec![(1, 1 << 33, 1 << 40), (2, 7, 8)],
        };
        let wide = rewrite_moov(&original, &long).unwrap();
        assert_eq!(
            durations_in(&wide),
            (1 << 33, vec![1 << 33, 7], vec![1 << 40, 8], Some(1 << 33))
        );
        assert_eq!(parse_movie(&wide).unwrap(), parse_movie(&original).unwrap());
    }

    #[test]
    fn a_moov_cut_inside_a_box_is_a_reason_not_a_panic() {
        let good = moov(&[(1, 48000, b"soun")], true);
        // Cutting between two children leaves a well-formed (if smaller) moov.
        let mut boundaries = vec![8];
        for child in children(&good[8..]) {
            boundaries.push(8 + child.unwrap().offset + child.unwrap().raw.len());
        }
        for cut in 0..good.len() {
            let mut broken = good[..cut].to_vec();
            if broken.len() >= 4 {
                broken[..4].copy_from_slice(&(cut as u32).to_be_bytes());
            }
            let parsed = parse_movie(&broken);
            if !boundaries.contains(&cut) {
                assert!(parsed.is_err(), "cut at {cut}");
            }
        }
    }
}
