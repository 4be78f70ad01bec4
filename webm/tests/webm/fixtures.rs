//! Real files: ffmpeg's live WebM made here, and Chromium MediaRecorder recordings checked in.
//!
//! Each finalized file is judged by ffmpeg itself: duration, decoding
//! without errors, identical frames, a cue per keyframe, and seeking through
//! the Cues.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::Path;

use livekeep_webm::{finalize_webm, probe_mp4, sniff, Container, Error, Finalized};

use crate::support::{parse_finalized, Parsed};
use crate::tools::{
    ffmpeg_make, ffprobe_duration, ffprobe_duration_or_none, fixture, framemd5, path_str, run_line,
    scratch, Scratch,
};

/// The tolerance issue 4 sets for the duration.
const DURATION_TOLERANCE_SECS: f64 = 0.05;

/// Video keyframes ffprobe finds, `None` when there is no video stream.
fn video_keyframes(path: &Path) -> Option<usize> {
    let line = "-v error -select_streams v -show_entries packet=flags -of csv=p=0 {in}";
    let out = run_line("ffprobe", line, &[("{in}", path_str(path))]);
    let flags = String::from_utf8_lossy(&out.stdout).into_owned();
    let packets: Vec<&str> = flags.lines().collect();
    (!packets.is_empty()).then(|| packets.iter().filter(|f| f.starts_with('K')).count())
}

/// What ffmpeg itself says the length is, after its own `-c copy` remux.
fn truth_duration(input: &Path, extension: &str) -> f64 {
    let remux = scratch(&format!("remux.{extension}"));
    ffmpeg_make("-v error -y -i {in} -c copy {out}", Some(input), &remux);
    ffprobe_duration(&remux)
}

/// (bytes read, seeks) ffmpeg reports when it seeks to `at` seconds and decodes one video frame.
fn seek_statistics(path: &Path, at: f64) -> (u64, u64) {
    let at = format!("{at:.3}");
    let line = "-v debug -ss {at} -i {in} -frames:v 1 -f null -";
    let out = run_line("ffmpeg", line, &[("{at}", &at), ("{in}", path_str(path))]);
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("Statistics:") && l.contains("bytes read"))
        .unwrap_or_else(|| panic!("no I/O statistics in ffmpeg's log:\n{log}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let number_before = |word: &str| -> u64 {
        let at = words
            .iter()
            .position(|w| w.starts_with(word))
            .expect("statistics word");
        words[at - 1].parse().expect("statistics number")
    };
    (number_before("bytes"), number_before("seeks"))
}

/// Finalizes `input` and checks the result the way players and ffmpeg see it.
fn finalize_and_check(input: &Path) -> (Finalized, Parsed, Scratch) {
    let output = scratch("finalized.webm");
    let done = finalize_webm(
        File::open(input).expect("fixture"),
        BufWriter::new(File::create(&output).expect("output")),
    )
    .expect("finalizes");
    let parsed = parse_finalized(&fs::read(&output).expect("output"));
    assert!((parsed.duration_secs - done.duration_secs).abs() < 1e-6);

    let truth = truth_duration(input, "webm");
    let probed = ffprobe_duration(&output);
    assert!(
        (probed - truth).abs() < DURATION_TOLERANCE_SECS,
        "{}: ffprobe says {probed} s, ffmpeg's remux says {truth} s",
        input.display()
    );

    let line = "-v error -i {in} -f null -";
    let decode = run_line("ffmpeg", line, &[("{in}", path_str(&output))]);
    assert!(
        decode.stderr.is_empty(),
        "ffmpeg reports errors decoding the finalized file: {}",
        String::from_utf8_lossy(&decode.stderr)
    );
    assert_eq!(framemd5(input), framemd5(&output), "frames changed");

    // A cue per video keyframe, or per cluster without video.
    assert_eq!(parsed.cues.len(), done.cue_points);
    let expected_cues = video_keyframes(&output).unwrap_or(parsed.clusters);
    assert_eq!(done.cue_points, expected_cues, "cue points");
    assert!(done.cue_points > 0, "no cue points");
    (done, parsed, output)
}

#[test]
fn ffmpeg_live_webm_is_finalized() {
    let input = scratch("ffmpeg-live.webm");
    // Noise keeps the bitrate up: ~1 MB, far more than ffmpeg's read-ahead.
    ffmpeg_make(
        "-v error -y \
         -f lavfi -i testsrc=size=320x240:rate=25,noise=alls=30:allf=t \
         -f lavfi -i sine=frequency=440:sample_rate=48000 \
         -t 4 -c:v libvpx -b:v 2M -g 25 -deadline realtime -cpu-used 8 -c:a libopus \
         -f webm -live 1 {out}",
        None,
        &input,
    );
    assert!(
        ffprobe_duration_or_none(&input).is_none(),
        "the live file should have no duration before finalizing"
    );

    let (done, _, finalized) = finalize_and_check(&input);

    assert_eq!(done.dropped_tail_bytes, 0);
    assert!((done.duration_secs - 4.0).abs() < DURATION_TOLERANCE_SECS);
    assert_eq!(
        done.cue_points, 4,
        "a keyframe every 25 frames, 4 s at 25 fps"
    );
    // ffmpeg reads ahead in 32 KiB blocks, so only a file much larger than
    // that shows whether a seek jumped through the Cues or scanned clusters:
    // the live input is read up to the target, the finalized file is not.
    let size = fs::metadata(&finalized).expect("output").len();
    let (scanned, _) = seek_statistics(&input, 2.8);
    let (jumped, seeks) = seek_statistics(&finalized, 2.8);
    assert!(
        scanned > size * 6 / 10,
        "without Cues ffmpeg should scan ({scanned} of {size} bytes)"
    );
    assert!(
        seeks >= 1 && jumped < size / 2,
        "with Cues ffmpeg should jump ({jumped} of {size} bytes)"
    );
}

#[test]
fn chromium_vp8_with_a_keyframe_every_second_gets_a_cue_every_second() {
    let (done, parsed, _) = finalize_and_check(&fixture("chromium-vp8-kf1s.webm"));
    assert_eq!(done.dropped_tail_bytes, 0);
    assert_eq!(done.cue_points, 5, "5 s with a keyframe every second");
    let cue_times: Vec<u64> = parsed.cues.iter().map(|&(time, _)| time).collect();
    assert!(
        cue_times
            .windows(2)
            .all(|w| (900..=1100).contains(&(w[1] - w[0]))),
        "cues a second apart: {cue_times:?}"
    );
}

#[test]
fn chromium_vp9_is_finalized() {
    let (done, _, _) = finalize_and_check(&fixture("chromium-vp9.webm"));
    assert_eq!(done.dropped_tail_bytes, 0);
}

#[test]
fn chromium_vp8_with_sparse_keyframes_is_finalized() {
    let (done, _, _) = finalize_and_check(&fixture("chromium-vp8-sparse.webm"));
    assert_eq!(done.cue_points, 1, "only the first frame is a keyframe");
}

#[test]
fn chromium_audio_only_gets_a_cue_per_cluster() {
    let (done, parsed, _) = finalize_and_check(&fixture("chromium-opus-only.webm"));
    assert_eq!(done.cue_points, parsed.clusters);
    assert!(parsed.clusters >= 4, "one cluster per 1 s chunk");
}

#[test]
fn chromium_recording_cut_mid_block_keeps_every_complete_block() {
    let (done, _, _) = finalize_and_check(&fixture("chromium-vp8-truncated.webm"));
    assert!(
        done.dropped_tail_bytes > 0,
        "the fixture ends inside a block"
    );
}

#[test]
fn chromium_fragmented_mp4_is_probed_not_finalized() {
    let input = fixture("chromium-fmp4.mp4");
    let bytes = fs::read(&input).expect("fixture");
    assert_eq!(sniff(&bytes[..64]), Some(Container::Mp4));
    assert!(matches!(
        finalize_webm(File::open(&input).expect("fixture"), Vec::new()),
        Err(Error::NotWebM)
    ));

    let info = probe_mp4(File::open(&input).expect("fixture")).expect("valid MP4");

    let truth = truth_duration(&input, "mp4");
    assert!(
        (info.duration_secs - truth).abs() < DURATION_TOLERANCE_SECS,
        "probe_mp4 says {} s, ffmpeg says {truth} s",
        info.duration_secs
    );
}

#[test]
fn webm_is_not_an_mp4() {
    let err = probe_mp4(File::open(fixture("chromium-vp9.webm")).expect("fixture"));
    assert!(matches!(err, Err(Error::NotMp4)));
}

/// Makes an MP4 with ffmpeg and `movflags`; `probe_mp4` must agree with ffprobe on its duration.
fn probe_agrees_with_ffprobe(movflags: &str) {
    let input = scratch("ffmpeg.mp4");
    let line = format!(
        "-v error -y -f lavfi -i testsrc=size=160x120:rate=25 \
         -f lavfi -i sine=frequency=440:sample_rate=48000 \
         -t 3 -c:v mpeg4 -g 25 -c:a aac -movflags {movflags} {{out}}"
    );
    ffmpeg_make(&line, None, &input);

    let info = probe_mp4(File::open(&input).expect("mp4")).expect("valid MP4");

    let truth = ffprobe_duration(&input);
    assert!(
        (info.duration_secs - truth).abs() < DURATION_TOLERANCE_SECS,
        "{movflags}: probe_mp4 says {} s, ffprobe says {truth} s",
        info.duration_secs
    );
}

#[test]
fn a_progressive_mp4_takes_its_duration_from_the_movie_header() {
    probe_agrees_with_ffprobe("+faststart");
}

#[test]
fn a_fragmented_mp4_takes_its_duration_from_the_fragments() {
    probe_agrees_with_ffprobe("frag_keyframe+empty_moov+default_base_moof");
}

#[test]
fn an_mp4_without_moov_is_invalid() {
    let mut bytes = b"\0\0\0\x18ftypisom\0\0\0\0isomiso2".to_vec();
    bytes.extend_from_slice(b"\0\0\0\x10mdat\0\0\0\0\0\0\0\0");
    assert!(matches!(
        probe_mp4(std::io::Cursor::new(bytes)),
        Err(Error::Invalid(_))
    ));
}
