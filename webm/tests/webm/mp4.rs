//! Fragmented MP4: Chromium's `video/mp4` recording (checked in) and H.264 + AAC made here by ffmpeg.
//!
//! Each finalized file is judged by others: ffprobe reads its duration, ffmpeg's `framemd5` of
//! every stream equals the upload's, and `tests/mp4_boxes.py` (an independent box walker)
//! finds the durations in mvhd, tkhd, mdhd and mehd, and checks that every sidx reference
//! points at a moof and every run of samples lies inside an mdat.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Cursor};
use std::path::Path;

use livekeep_webm::mp4::{plan_mp4, Mp4Index, Mp4Status};
use livekeep_webm::{finalize, finalize_mp4, Container, Error, FinalizePath, Finalized};

use crate::tools::{ffmpeg_make, ffprobe_duration, fixture, framemd5, scratch, Scratch};

/// One frame of the slowest stream in these files (Chromium's fake camera: 20 fps).
const ONE_FRAME_SECS: f64 = 0.05;

/// H.264 (with B-frames) + AAC, fragmented at each keyframe, a keyframe every second, as
/// Safari's one-second timeslice gives. `movflags` adds to `frag_keyframe+empty_moov`.
fn ffmpeg_fragmented(seconds: u32, movflags: &str) -> Scratch {
    let output = scratch("ffmpeg-fragmented.mp4");
    let line = format!(
        "-v error -y -f lavfi -i testsrc2=size=320x240:rate=30 \
         -f lavfi -i sine=frequency=440:sample_rate=48000 -t {seconds} \
         -c:v libx264 -preset veryfast -g 30 -c:a aac \
         -movflags frag_keyframe+empty_moov{movflags} -frag_duration 1000000 {{out}}"
    );
    ffmpeg_make(&line, None, &output);
    output
}

/// What `tests/mp4_boxes.py` finds, as `key -> value`.
fn walk_boxes(path: &Path) -> HashMap<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mp4_boxes.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(path)
        .output()
        .expect("python3 runs tests/mp4_boxes.py");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "mp4_boxes.py: {text}");
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

fn secs(report: &HashMap<String, String>, key: &str) -> f64 {
    report
        .get(key)
        .unwrap_or_else(|| panic!("mp4_boxes.py found no {key}: {report:?}"))
        .parse()
        .expect("a number")
}

/// Finalizes `input` with `finalize_mp4` into a scratch file.
fn finalize_file(input: &Path) -> Result<(Finalized, Scratch), Error> {
    let output = scratch("finalized.mp4");
    let done = finalize_mp4(
        File::open(input).expect("input"),
        BufWriter::new(File::create(&output).expect("output")),
    )?;
    Ok((done, output))
}

/// Finalizes `input` and checks the result as players, ffmpeg and the box walker see it.
fn finalize_and_check(input: &Path) -> (Finalized, HashMap<String, String>, Scratch) {
    let (done, output) = finalize_file(input).expect("finalizes");
    assert_eq!(done.container, Container::Mp4);
    assert_eq!(done.path, FinalizePath::Verbatim);

    // ffprobe reads every fragment of the local upload to learn its length: the truth.
    let truth = ffprobe_duration(input);
    let probed = ffprobe_duration(&output);
    assert!(
        (probed - truth).abs() < ONE_FRAME_SECS,
        "{}: ffprobe says {probed} s finalized, {truth} s uploaded",
        input.display()
    );
    assert!((done.duration_secs - truth).abs() < ONE_FRAME_SECS);
    assert_eq!(framemd5(input), framemd5(&output), "frames changed");

    let report = walk_boxes(&output);
    let movie = secs(&report, "mvhd_secs");
    // Durations are written in the movie timescale (ms here), rounded up.
    assert!((movie - done.duration_secs).abs() < 0.002, "{report:?}");
    assert_eq!(secs(&report, "mehd_secs"), movie);
    for key in report.keys().filter(|k| k.starts_with("track.")) {
        let track = secs(&report, key);
        assert!(
            track > 0.0 && track <= movie + 0.001,
            "{key}: {track} of {movie}"
        );
    }
    let sidx: Vec<&String> = report
        .keys()
        .filter(|k| k.starts_with("sidx.") && k.ends_with(".reaches"))
        .collect();
    assert!(!sidx.is_empty(), "a sidx: {report:?}");
    for key in sidx {
        assert_eq!(report[key], "eof", "{key}");
    }
    assert_eq!(report["mfra"], "no");
    assert!(done.cue_points > 0);

    // A finalized file finalizes to itself.
    let (again, twice) = finalize_file(&output).expect("finalizes again");
    assert_eq!(fs::read(&twice).unwrap(), fs::read(&output).unwrap());
    assert_eq!(again.dropped_tail_bytes, 0);
    (done, report, output)
}

/// Top-level boxes of a file as (type, start): a walk of 8-byte headers, independent of the crate.
fn top_level_boxes(bytes: &[u8]) -> Vec<([u8; 4], usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((bytes[pos + 4..pos + 8].try_into().unwrap(), pos));
        if size < 8 {
            break;
        }
        pos += size;
    }
    out
}

fn moof_starts(bytes: &[u8]) -> Vec<usize> {
    top_level_boxes(bytes)
        .into_iter()
        .filter(|(kind, _)| kind == b"moof")
        .map(|(_, at)| at)
        .collect()
}

#[test]
fn chromium_vp9_opus_recording_gets_durations_and_a_sidx() {
    let input = fixture("chromium-fmp4.mp4");
    let (done, report, _) = finalize_and_check(&input);
    assert_eq!(done.dropped_tail_bytes, 0);
    let moofs = moof_starts(&fs::read(&input).unwrap()).len();
    // Chromium puts both tracks in every moof: a reference per fragment.
    assert_eq!(done.cue_points, moofs);
    assert_eq!(
        report["sidx.2.references"],
        moofs.to_string(),
        "video is track 2"
    );
}

#[test]
fn ffmpeg_h264_aac_with_default_base_moof_is_finalized() {
    let input = ffmpeg_fragmented(4, "+default_base_moof");
    let (done, report, _) = finalize_and_check(&input);
    assert_eq!(
        done.cue_points, 4,
        "a keyframe, so a fragment, every second"
    );
    // ffmpeg's own mfra at the end is replaced, not counted as lost.
    assert_eq!(done.dropped_tail_bytes, 0);
    let video = secs(&report, "sidx.1.end_secs");
    assert!((video - 4.0).abs() < ONE_FRAME_SECS, "{report:?}");
}

#[test]
fn absolute_base_data_offsets_move_with_the_fragments() {
    let input = ffmpeg_fragmented(4, "");
    let bytes = fs::read(&input).unwrap();
    // Without default-base-is-moof ffmpeg writes each tfhd's base_data_offset: the moof's position.
    let mut index = Mp4Index::new();
    index.push(&bytes).unwrap();
    let with_offsets = index
        .fragments()
        .iter()
        .filter(|f| !index.base_offsets(f).is_empty())
        .count();
    assert_eq!(with_offsets, index.fragments().len());
    let layout = plan_mp4(&index).unwrap();
    assert!(!layout.patches.is_empty());
    // The box walker checks every run's samples are inside an mdat of the finalized file.
    finalize_and_check(&input);
}

#[test]
fn a_recording_cut_inside_a_moof_or_an_mdat_keeps_every_complete_fragment() {
    let input = ffmpeg_fragmented(5, "+default_base_moof");
    let bytes = fs::read(&input).unwrap();
    let moofs = moof_starts(&bytes);
    let third = moofs[2];
    for cut in [third + 30, third + 2000] {
        let truncated = scratch("truncated.mp4");
        fs::write(&truncated, &bytes[..cut]).unwrap();
        let (done, output) = finalize_file(&truncated).expect("finalizes");
        assert_eq!(
            done.dropped_tail_bytes,
            (cut - third) as u64,
            "cut at {cut}"
        );
        assert_eq!(done.cue_points, 2);
        // ffmpeg decodes the same prefix, up to the last complete fragment, into the same frames.
        let prefix = scratch("prefix.mp4");
        fs::write(&prefix, &bytes[..third]).unwrap();
        assert_eq!(framemd5(&prefix), framemd5(&output), "cut at {cut}");
        let report = walk_boxes(&output);
        assert_eq!(report["sidx.1.reaches"], "eof");
    }
}

#[test]
fn a_chromium_recording_cut_mid_fragment_is_finalized_up_to_the_cut_fragment() {
    let bytes = fs::read(fixture("chromium-fmp4.mp4")).unwrap();
    let moofs = moof_starts(&bytes);
    let last = *moofs.last().unwrap();
    let truncated = scratch("chromium-cut.mp4");
    fs::write(&truncated, &bytes[..last + 500]).unwrap();
    let (done, output) = finalize_file(&truncated).expect("finalizes");
    assert_eq!(done.dropped_tail_bytes, 500);
    let prefix = scratch("chromium-prefix.mp4");
    fs::write(&prefix, &bytes[..last]).unwrap();
    assert_eq!(framemd5(&prefix), framemd5(&output));
}

#[test]
fn what_is_not_a_fragmented_mp4_is_refused_clearly() {
    let fragmented = fs::read(fixture("chromium-fmp4.mp4")).unwrap();
    let boxes = top_level_boxes(&fragmented);
    let moov_end = boxes[2].1;
    let refuse = |bytes: &[u8]| -> Error {
        finalize_mp4(Cursor::new(bytes), Vec::new()).expect_err("refused")
    };
    assert!(matches!(
        refuse(b"not a video at all, just text"),
        Error::NotMp4
    ));
    let webm = fs::read(fixture("chromium-vp9.webm")).unwrap();
    assert!(matches!(refuse(&webm), Error::NotMp4));
    assert!(matches!(
        refuse(&fragmented[..moov_end]),
        Error::Invalid("no complete fragment")
    ));
    let mut moov_after = fragmented.clone();
    moov_after.extend_from_slice(&fragmented[boxes[1].1..moov_end]);
    assert!(matches!(
        refuse(&moov_after),
        Error::Invalid("a moov box comes after the fragments")
    ));
    let mut no_moov = fragmented[..boxes[1].1].to_vec();
    no_moov.extend_from_slice(&fragmented[moov_end..]);
    assert!(matches!(
        refuse(&no_moov),
        Error::Invalid("a fragment comes before the moov")
    ));
    let mut nonsense = fragmented[..boxes[1].1].to_vec();
    nonsense.extend_from_slice(b"\0\0\0\x03moov");
    assert!(matches!(
        refuse(&nonsense),
        Error::Invalid("a box has an impossible size")
    ));
}

#[test]
fn a_progressive_mp4_is_already_seekable_and_kept_as_uploaded() {
    let input = scratch("faststart.mp4");
    ffmpeg_make(
        "-v error -y -f lavfi -i testsrc2=size=160x120:rate=25 -t 3 -c:v libx264 \
         -preset veryfast -movflags +faststart {out}",
        None,
        &input,
    );
    let (done, output) = finalize_file(&input).expect("kept");
    assert_eq!(done.path, FinalizePath::AsUploaded);
    assert_eq!(fs::read(&output).unwrap(), fs::read(&input).unwrap());
    assert!((done.duration_secs - ffprobe_duration(&input)).abs() < ONE_FRAME_SECS);
}

#[test]
fn the_one_entry_point_picks_the_container_by_its_first_bytes() {
    for (name, container) in [
        ("chromium-fmp4.mp4", Container::Mp4),
        ("chromium-vp9.webm", Container::WebM),
    ] {
        let bytes = fs::read(fixture(name)).unwrap();
        let done = finalize(Cursor::new(&bytes), Vec::new()).expect("finalizes");
        assert_eq!(done.container, container, "{name}");
    }
}

/// Splits `bytes` into pushes of 1..=max bytes drawn from `seed` (xorshift).
fn random_pushes(bytes: &[u8], seed: u64, max: usize) -> Vec<&[u8]> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut pieces = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let n = 1 + (state.wrapping_mul(0x2545_F491_4F6C_DD1D) % max as u64) as usize;
        let end = (pos + n).min(bytes.len());
        pieces.push(&bytes[pos..end]);
        pos = end;
    }
    pieces
}

#[test]
fn the_index_fed_in_random_pushes_and_saved_between_them_is_the_finalizers_index() {
    let ffmpeg = ffmpeg_fragmented(3, "");
    for input in [fixture("chromium-fmp4.mp4"), ffmpeg.to_path_buf()] {
        let bytes = fs::read(&input).unwrap();
        let mut whole = Mp4Index::new();
        whole.push(&bytes).unwrap();
        assert_eq!(whole.status(), Mp4Status::Fragments);
        for seed in 1..=5 {
            // PATCH-sized and header-sized pushes alike.
            let max = if seed % 2 == 0 { 64 << 10 } else { 97 };
            let mut index = Mp4Index::new();
            let mut entries = Vec::new();
            let mut saved = 0;
            for piece in random_pushes(&bytes, seed, max) {
                index.push(piece).unwrap();
                entries.extend(index.encode_fragments(saved));
                saved = index.fragments().len();
                index = Mp4Index::restore(&index.encode_state(), &entries).unwrap();
            }
            assert_eq!(index, whole, "{}: seed {seed}", input.display());
        }
        // What the server would serve without copying is what the finalizer writes.
        let mut served = Vec::new();
        plan_mp4(&whole)
            .unwrap()
            .write_to(&mut Cursor::new(&bytes), &mut served)
            .unwrap();
        let mut finalized = Vec::new();
        finalize_mp4(Cursor::new(&bytes), &mut finalized).unwrap();
        assert_eq!(served, finalized, "{}", input.display());
    }
}
