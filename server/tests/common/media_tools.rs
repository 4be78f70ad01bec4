//! Recordings made by ffmpeg for the tests, judged by ffprobe and ffmpeg, and a small MP4 box
//! walker of our own, shared by the test binaries
//! (`#[path = "../common/media_tools.rs"] mod media_tools;` in each).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A file in a temporary directory, removed with it.
pub struct Made {
    /// The directory (removed on drop).
    _dir: tempfile::TempDir,
    /// The file.
    pub path: PathBuf,
}

impl Made {
    /// Its bytes.
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).expect("reading what ffmpeg made")
    }
}

/// Writes `bytes` to a temporary file (to give ffprobe or ffmpeg).
pub fn file_of(bytes: &[u8], name: &str) -> Made {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("writing a temporary file");
    Made { _dir: dir, path }
}

/// Runs ffmpeg with `args` then the output path, failing with its message.
pub fn ffmpeg_make(args: &[&str], name: &str) -> Made {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(name);
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(&path)
        .output()
        .expect("ffmpeg on PATH (apt-get install ffmpeg)");
    assert!(
        out.status.success() && path.exists(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Made { _dir: dir, path }
}

/// Fragmented H.264 + AAC as Safari records it: a fragment per second, each opening on a
/// keyframe, `frag_keyframe+empty_moov` plus `movflags` (`+default_base_moof` as Safari and
/// Chromium write, or nothing for absolute base offsets). `noise` makes every frame costly
/// (a few Mbit/s), for tests that need more bytes than socket buffers hold.
pub fn fragmented_mp4(seconds: u32, movflags: &str, noise: bool) -> Made {
    let video = if noise {
        "nullsrc=size=320x240:rate=30,geq=random(1)*255:128:128"
    } else {
        "testsrc2=size=320x240:rate=30"
    };
    let seconds = seconds.to_string();
    let flags = format!("frag_keyframe+empty_moov{movflags}");
    ffmpeg_make(
        &[
            "-f",
            "lavfi",
            "-i",
            video,
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            &seconds,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "30",
            "-c:a",
            "aac",
            "-movflags",
            &flags,
            "-frag_duration",
            "1000000",
            "-f",
            "mp4",
        ],
        "fragmented.mp4",
    )
}

/// The container duration ffprobe reports.
pub fn ffprobe_duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe on PATH");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe gave no duration for {}: {text}", path.display()))
}

/// ffmpeg's `framemd5` of every stream: timestamps, sizes and a hash of each frame.
pub fn framemd5(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "quiet", "-i"])
        .arg(path)
        .args(["-map", "0", "-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg on PATH");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.lines().any(|l| !l.starts_with('#')),
        "no frames decoded from {}",
        path.display()
    );
    text
}

/// What ffmpeg says while decoding `bytes` whole (empty: not a single error).
pub fn decode_errors(bytes: &[u8], format: &str) -> String {
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-v", "error", "-f", format, "-i", "-", "-f", "null", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ffmpeg on PATH");
    let mut stdin = ffmpeg.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = ffmpeg.wait_with_output().unwrap();
    let _ = writer.join();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A top-level box: its type, offset and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopBox {
    /// Its type.
    pub kind: [u8; 4],
    /// Offset of its header.
    pub offset: usize,
    /// Its size, header included.
    pub size: usize,
}

/// The top-level boxes laid end to end in `bytes`, up to the first that does not fit.
pub fn top_boxes(bytes: &[u8]) -> Vec<TopBox> {
    let mut boxes = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let size = match size {
            1 if at + 16 <= bytes.len() => {
                u64::from_be_bytes(bytes[at + 8..at + 16].try_into().unwrap()) as usize
            }
            0 => bytes.len() - at,
            size => size,
        };
        if size < 8 || at + size > bytes.len() {
            break;
        }
        let kind = bytes[at + 4..at + 8].try_into().unwrap();
        boxes.push(TopBox {
            kind,
            offset: at,
            size,
        });
        at += size;
    }
    boxes
}

/// What one moof says: its `mfhd` sequence number and each traf's (track_ID, tfdt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moof {
    /// `mfhd` sequence_number.
    pub sequence: u32,
    /// (track_ID, base media decode time) per traf.
    pub decode_times: Vec<(u32, u64)>,
}

/// Reads a whole moof box.
pub fn read_moof(moof: &[u8]) -> Moof {
    let mut sequence = 0;
    let mut decode_times = Vec::new();
    for child in top_boxes(&moof[8..]) {
        let data = &moof[8 + child.offset + 8..8 + child.offset + child.size];
        match &child.kind {
            b"mfhd" => sequence = u32::from_be_bytes(data[4..8].try_into().unwrap()),
            b"traf" => {
                let mut track = 0;
                let mut time = 0;
                for field in top_boxes(data) {
                    let body = &data[field.offset + 8..field.offset + field.size];
                    match &field.kind {
                        b"tfhd" => track = u32::from_be_bytes(body[4..8].try_into().unwrap()),
                        b"tfdt" if body[0] == 1 => {
                            time = u64::from_be_bytes(body[4..12].try_into().unwrap())
                        }
                        b"tfdt" => {
                            time = u64::from(u32::from_be_bytes(body[4..8].try_into().unwrap()))
                        }
                        _ => {}
                    }
                }
                decode_times.push((track, time));
            }
            _ => {}
        }
    }
    Moof {
        sequence,
        decode_times,
    }
}

/// The moofs of an MP4 byte stream, in order.
pub fn moofs(bytes: &[u8]) -> Vec<Moof> {
    top_boxes(bytes)
        .into_iter()
        .filter(|b| &b.kind == b"moof")
        .map(|b| read_moof(&bytes[b.offset..b.offset + b.size]))
        .collect()
}
