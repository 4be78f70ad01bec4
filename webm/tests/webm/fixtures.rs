//! Real files: ffmpeg's live WebM made here, and Chromium MediaRecorder recordings checked in.
//!
//! Each finalized file is judged by ffmpeg itself: duration, decoding
//! without errors, identical frames, and seeking through the Cues.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use livekeep_webm::{finalize_webm, probe_mp4, sniff, Container, Error, Finalized};

use crate::support::parse_finalized;

/// The tolerance issue 4 sets for the duration.
const DURATION_TOLERANCE_SECS: f64 = 0.05;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A file path in the temp directory, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover temp file is not worth failing a test over.
        let _ = fs::remove_file(&self.0);
    }
}

/// A fresh, unique scratch path.
fn scratch(name: &str) -> Scratch {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Scratch(std::env::temp_dir().join(format!(
        "livekeep-webm-test-{}-{n}-{name}",
        std::process::id()
    )))
}

/// Runs an ffmpeg tool, failing the test with instructions when it is missing.
fn run(tool: &str, args: &[&str]) -> Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{tool}` ({e}): install ffmpeg (apt-get install ffmpeg) to run these tests"
        )
    })
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn ffprobe_duration(path: &Path) -> f64 {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            path_str(path),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe gave no duration for {}: {text:?}", path.display()))
}

/// What ffmpeg itself says the length is, after its own remux.
fn truth_duration(input: &Path) -> f64 {
    let remux = scratch("remux.webm");
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-y",
            "-i",
            path_str(input),
            "-c",
            "copy",
            path_str(&remux),
        ],
    );
    assert!(
        remux.exists(),
        "ffmpeg -c copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ffprobe_duration(&remux)
}

fn framemd5(path: &Path) -> String {
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "quiet",
            "-i",
            path_str(path),
            "-map",
            "0",
            "-f",
            "framemd5",
            "-",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.lines().filter(|l| !l.starts_with('#')).count() > 0,
        "no frames decoded"
    );
    text
}

/// (bytes read, seeks) ffmpeg reports when it seeks to `at` seconds and decodes one video frame.
fn seek_statistics(path: &Path, at: f64) -> (u64, u64) {
    let at = format!("{at:.3}");
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "debug",
            "-ss",
            &at,
            "-i",
            path_str(path),
            "-frames:v",
            "1",
            "-f",
            "null",
            "-",
        ],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("Statistics:") && l.contains("bytes read"))
        .unwrap_or_else(|| panic!("no I/O statistics in ffmpeg's log:\n{log}"));
    let number_before = |word: &str| -> u64 {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| w.starts_with(word))
            .expect("statistics word");
        words[at - 1].parse().expect("statistics number")
    };
    (number_before("bytes"), number_before("seeks"))
}

/// Finalizes `input` and checks the result the way players and ffmpeg see it.
fn finalize_and_check(input: &Path) -> Finalized {
    let output = scratch("finalized.webm");
    let done = finalize_webm(
        File::open(input).expect("fixture"),
        BufWriter::new(File::create(&output).expect("output")),
    )
    .expect("finalizes");
    let bytes = fs::read(&output).expect("output");
    let parsed = parse_finalized(&bytes);
    assert!((parsed.duration_secs - done.duration_secs).abs() < 1e-6);

    let truth = truth_duration(input);
    let probed = ffprobe_duration(&output);
    assert!(
        (probed - truth).abs() < DURATION_TOLERANCE_SECS,
        "{}: ffprobe says {probed} s, ffmpeg's remux says {truth} s",
        input.display()
    );

    let decode = run(
        "ffmpeg",
        &["-v", "error", "-i", path_str(&output), "-f", "null", "-"],
    );
    assert!(
        decode.stderr.is_empty(),
        "ffmpeg reports errors decoding the finalized file: {}",
        String::from_utf8_lossy(&decode.stderr)
    );
    assert_eq!(framemd5(input), framemd5(&output), "frames changed");

    assert_eq!(parsed.cues.len(), done.cue_points);
    assert!(done.cue_points > 0, "no cue points");
    done
}

#[test]
fn ffmpeg_live_webm_is_finalized() {
    let input = scratch("ffmpeg-live.webm");
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-y",
            // Noise keeps the bitrate up: ~1 MB, far more than ffmpeg's read-ahead.
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25,noise=alls=30:allf=t",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "4",
            "-c:v",
            "libvpx",
            "-b:v",
            "2M",
            "-g",
            "25",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-c:a",
            "libopus",
            "-f",
            "webm",
            "-live",
            "1",
            path_str(&input),
        ],
    );
    assert!(
        input.exists(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ffprobe_duration_or_none(&input).is_none(),
        "the live file should have no duration before finalizing"
    );

    let done = finalize_and_check(&input);

    // ffmpeg reads ahead in 32 KiB blocks, so only a file much larger than
    // that shows whether a seek jumped through the Cues or scanned clusters:
    // the live input is read to the target, the finalized file is not.
    let finalized = scratch("seek.webm");
    finalize_webm(
        File::open(&input).expect("input"),
        BufWriter::new(File::create(&finalized).expect("output")),
    )
    .expect("finalizes");
    let size = fs::metadata(&finalized).expect("output").len();
    let (scanned, _) = seek_statistics(&input, 2.8);
    let (jumped, seeks) = seek_statistics(&finalized, 2.8);
    assert!(
        scanned > size * 6 / 10,
        "without Cues ffmpeg should scan ({scanned} of {size})"
    );
    assert!(
        seeks >= 1 && jumped < size / 2,
        "with Cues ffmpeg should jump ({jumped} of {size})"
    );
    assert_eq!(done.dropped_tail_bytes, 0);
    assert!((done.duration_secs - 4.0).abs() < DURATION_TOLERANCE_SECS);
    assert_eq!(
        done.cue_points, 4,
        "a keyframe every 25 frames of 4 s at 25 fps"
    );
}

fn ffprobe_duration_or_none(path: &Path) -> Option<f64> {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            path_str(path),
        ],
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[test]
fn chromium_vp8_with_a_keyframe_every_second_gets_a_cue_every_second() {
    let done = finalize_and_check(&fixture("chromium-vp8-kf1s.webm"));
    assert_eq!(done.dropped_tail_bytes, 0);
    assert!(
        done.cue_points >= 4,
        "only {} cue points in ~5 s",
        done.cue_points
    );
}

#[test]
fn chromium_vp9_is_finalized() {
    let done = finalize_and_check(&fixture("chromium-vp9.webm"));
    assert_eq!(done.dropped_tail_bytes, 0);
}

#[test]
fn chromium_vp8_with_sparse_keyframes_is_finalized() {
    let done = finalize_and_check(&fixture("chromium-vp8-sparse.webm"));
    assert!(done.cue_points >= 1);
}

#[test]
fn chromium_audio_only_gets_a_cue_per_cluster() {
    let input = fixture("chromium-opus-only.webm");
    let done = finalize_and_check(&input);
    assert!(
        done.cue_points >= 4,
        "one cluster per 1 s chunk, got {} cues",
        done.cue_points
    );
}

#[test]
fn chromium_recording_cut_mid_block_keeps_every_complete_block() {
    let done = finalize_and_check(&fixture("chromium-vp8-truncated.webm"));
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

    let truth = truth_duration_mp4(&input);
    assert!(
        (info.duration_secs - truth).abs() < DURATION_TOLERANCE_SECS,
        "probe_mp4 says {} s, ffmpeg says {truth} s",
        info.duration_secs
    );
}

fn truth_duration_mp4(input: &Path) -> f64 {
    let remux = scratch("remux.mp4");
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-y",
            "-i",
            path_str(input),
            "-c",
            "copy",
            path_str(&remux),
        ],
    );
    ffprobe_duration(&remux)
}

#[test]
fn webm_is_not_an_mp4() {
    let err = probe_mp4(File::open(fixture("chromium-vp9.webm")).expect("fixture"));
    assert!(matches!(err, Err(Error::NotMp4)));
}

/// An MP4 made by ffmpeg with `extra` muxer flags, and what ffprobe says its duration is.
fn ffmpeg_mp4(extra: &[&str]) -> (Scratch, f64) {
    let output = scratch("ffmpeg.mp4");
    let mut args = vec![
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "3",
        "-c:v",
        "mpeg4",
        "-g",
        "25",
        "-c:a",
        "aac",
    ];
    args.extend_from_slice(extra);
    args.push(path_str(&output));
    let out = run("ffmpeg", &args);
    assert!(
        output.exists(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duration = ffprobe_duration(&output);
    (output, duration)
}

#[test]
fn a_progressive_mp4_takes_its_duration_from_the_movie_header() {
    let (input, truth) = ffmpeg_mp4(&[]);
    let info = probe_mp4(File::open(&input).expect("mp4")).expect("valid MP4");
    assert!(
        (info.duration_secs - truth).abs() < DURATION_TOLERANCE_SECS,
        "probe_mp4 says {} s, ffprobe says {truth} s",
        info.duration_secs
    );
}

#[test]
fn a_fragmented_mp4_takes_its_duration_from_the_fragments() {
    let (input, truth) = ffmpeg_mp4(&["-movflags", "frag_keyframe+empty_moov+default_base_moof"]);
    let info = probe_mp4(File::open(&input).expect("mp4")).expect("valid MP4");
    assert!(
        (info.duration_secs - truth).abs() < DURATION_TOLERANCE_SECS,
        "probe_mp4 says {} s, ffprobe says {truth} s",
        info.duration_secs
    );
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
