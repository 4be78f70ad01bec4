//! Running ffmpeg, ffprobe and scratch files for the tests on real recordings.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A checked-in fixture.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A file path in the temp directory, removed when dropped.
pub struct Scratch(PathBuf);

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
pub fn scratch(name: &str) -> Scratch {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Scratch(std::env::temp_dir().join(format!(
        "livekeep-webm-test-{}-{n}-{name}",
        std::process::id()
    )))
}

/// Runs an ffmpeg tool, failing the test with instructions when it is missing.
pub fn run(tool: &str, args: &[&str]) -> Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{tool}` ({e}): install ffmpeg (apt-get install ffmpeg) to run these tests"
        )
    })
}

/// Runs `tool` with whitespace-separated arguments; `{in}`, `{out}`, `{at}` are replaced whole.
pub fn run_line(tool: &str, line: &str, vars: &[(&str, &str)]) -> Output {
    let args: Vec<&str> = line
        .split_whitespace()
        .map(|arg| {
            vars.iter()
                .find(|(name, _)| *name == arg)
                .map_or(arg, |(_, value)| value)
        })
        .collect();
    run(tool, &args)
}

/// The path as the UTF-8 string a command line takes.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Runs ffmpeg to make `output`, failing with ffmpeg's message when it did not.
pub fn ffmpeg_make(line: &str, input: Option<&Path>, output: &Path) {
    let mut vars = vec![("{out}", path_str(output))];
    if let Some(input) = input {
        vars.push(("{in}", path_str(input)));
    }
    let out = run_line("ffmpeg", line, &vars);
    assert!(
        output.exists(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The container duration ffprobe reports, `None` when it reports none (N/A).
pub fn ffprobe_duration_or_none(path: &Path) -> Option<f64> {
    let line = "-v error -show_entries format=duration -of csv=p=0 {in}";
    let out = run_line("ffprobe", line, &[("{in}", path_str(path))]);
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The container duration ffprobe reports.
pub fn ffprobe_duration(path: &Path) -> f64 {
    ffprobe_duration_or_none(path)
        .unwrap_or_else(|| panic!("ffprobe gave no duration for {}", path.display()))
}

/// ffmpeg's `framemd5` of every stream: timestamps, sizes and a hash of each frame.
pub fn framemd5(path: &Path) -> String {
    let line = "-v quiet -i {in} -map 0 -f framemd5 -";
    let out = run_line("ffmpeg", line, &[("{in}", path_str(path))]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.lines().any(|l| !l.starts_with('#')),
        "no frames decoded from {}",
        path.display()
    );
    text
}
