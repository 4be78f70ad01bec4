//! Benchmark: `finalize_webm` against `ffmpeg -c copy` on a generated ~1 GiB MediaRecorder-shaped WebM.
//!
//! `cargo run --release -p livekeep-webm --bin finalize-bench -- [--size-mib 1024] [--runs 3] [--dir /tmp]`
//! (`finalize-bench generate OUT.webm MIB` only writes the input; `finalize-bench finalize IN OUT` only finalizes.)
//!
//! The input repeats the clusters of a real Chromium recording (unknown-size
//! Segment and Clusters, as MediaRecorder writes) with timestamps shifted so
//! the timeline keeps going. Each tool runs as its own process under
//! `/usr/bin/time` so peak RSS is measured the same way for both; wall times
//! are the median of the runs. Prints a markdown table.

use std::fs::{self, File};
use std::io::{self, BufWriter, Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use livekeep_webm::ebml::{self, ID_CLUSTER, ID_TIMESTAMP};
use livekeep_webm::reader::{read_head, ChildKind, ClusterStep, ClusterWalker, HeadRead};
use livekeep_webm::source::Source;

/// A real recording: VP8 + Opus, a keyframe and a Cluster every second.
const SEED: &[u8] = include_bytes!("../../tests/fixtures/chromium-vp8-kf1s.webm");

struct Options {
    size_mib: u64,
    runs: usize,
    dir: PathBuf,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        size_mib: 1024,
        runs: 3,
        dir: std::env::temp_dir(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--size-mib" => options.size_mib = value.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--runs" => options.runs = value.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--dir" => options.dir = PathBuf::from(value),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if options.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // Child mode: finalize one file, so /usr/bin/time sees only the finalizer.
    if let [_, mode, input, output] = args.as_slice() {
        if mode == "finalize" {
            return finalize_child(Path::new(input), Path::new(output));
        }
    }
    // Generate only, to look at the input with other tools.
    if let [_, mode, output, size_mib] = args.as_slice() {
        if mode == "generate" {
            let result = size_mib
                .parse::<u64>()
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|mib| generate(Path::new(output), mib << 20));
            return match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("generate: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    match parse_options().and_then(|options| run(&options).map_err(|e| e.to_string())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("finalize-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn finalize_child(input: &Path, output: &Path) -> ExitCode {
    let result = File::open(input)
        .and_then(|input| Ok((input, File::create(output)?)))
        .map_err(livekeep_webm::Error::from)
        .and_then(|(input, output)| livekeep_webm::finalize_webm(input, output));
    match result {
        Ok(done) => {
            println!(
                "{:.3} s, {} cue points, {} tail bytes dropped",
                done.duration_secs, done.cue_points, done.dropped_tail_bytes
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("finalize: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The seed split into what precedes the first Cluster and each Cluster's (timestamp, children).
struct Seed {
    head: Vec<u8>,
    clusters: Vec<(u64, Vec<u8>)>,
    /// Timestamp shift between repetitions: past the seed's last frame, so every track keeps increasing.
    period: u64,
}

fn split_seed() -> io::Result<Seed> {
    let mut src = Source::new(Cursor::new(SEED), 1 << 20)?;
    let len = src.input_len();
    let mut pos = 0;
    let mut head_end = None;
    let mut clusters = Vec::new();
    // EBML header, then the Segment header, then level-1 elements.
    let mut level = 0;
    while pos < len {
        src.seek_to(pos)?;
        let HeadRead::Head(head) = read_head(&mut src, len)? else {
            break;
        };
        if level < 2 && head.id != ID_CLUSTER {
            level += 1;
            pos = if head.id == ebml::ID_SEGMENT {
                head.data_start()
            } else {
                head.end().unwrap_or(len)
            };
            continue;
        }
        if head.id != ID_CLUSTER {
            pos = head.end().unwrap_or(len);
            continue;
        }
        head_end.get_or_insert(pos);
        let mut walker = ClusterWalker::new(head.data_start(), len, head.size.is_some());
        let mut timestamp = 0;
        let mut body = Vec::new();
        pos = loop {
            match walker.next(&mut src)? {
                ClusterStep::Child(child) => {
                    src.seek_to(child.start)?;
                    match child.kind {
                        ChildKind::Timestamp(ts) => timestamp = ts,
                        ChildKind::Dropped => {}
                        _ => src.copy_to(child.len, &mut body)?,
                    }
                }
                ClusterStep::End(end) | ClusterStep::Broken(end) => break end,
            }
        };
        clusters.push((timestamp, body));
    }
    let head_end = head_end.ok_or_else(|| io::Error::other("seed has no Cluster"))?;
    let seed = livekeep_webm::finalize_webm(Cursor::new(SEED), io::sink())
        .map_err(|e| io::Error::other(e.to_string()))?;
    // The seed's TimestampScale is 1 ms; one more frame interval keeps a gap.
    let period = (seed.duration_secs * 1000.0).ceil() as u64 + 50;
    Ok(Seed {
        head: SEED[..head_end as usize].to_vec(),
        clusters,
        period,
    })
}

/// Writes a MediaRecorder-shaped WebM of about `size` bytes.
fn generate(path: &Path, size: u64) -> io::Result<()> {
    let seed = split_seed()?;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    out.write_all(&seed.head)?;
    let mut written = seed.head.len() as u64;
    let mut repetition = 0u64;
    let mut header = Vec::with_capacity(32);
    while written < size {
        for (ts, body) in &seed.clusters {
            header.clear();
            ebml::write_id(&mut header, ID_CLUSTER);
            // Unknown size, as MediaRecorder writes.
            header.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
            ebml::write_uint(&mut header, ID_TIMESTAMP, ts + repetition * seed.period);
            out.write_all(&header)?;
            out.write_all(body)?;
            written += (header.len() + body.len()) as u64;
        }
        repetition += 1;
    }
    // Flush to disk now, so writeback of the input does not slow the first timed run.
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()
}

/// Wall seconds and peak RSS (KiB) of one command run under `/usr/bin/time`.
fn measure(program: &str, args: &[&str], scratch: &Path) -> io::Result<(f64, u64)> {
    let rss_file = scratch.join("rss.txt");
    let start = Instant::now();
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(program)
        .args(args)
        .output()?;
    let wall = start.elapsed().as_secs_f64();
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let rss = fs::read_to_string(&rss_file)?
        .lines()
        .last()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no RSS from /usr/bin/time"))?;
    Ok((wall, rss))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn run(options: &Options) -> io::Result<()> {
    let scratch = options
        .dir
        .join(format!("livekeep-bench-{}", std::process::id()));
    fs::create_dir_all(&scratch)?;
    let result = bench(options, &scratch);
    // Best effort: the generated gigabyte must not outlive the run.
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn bench(options: &Options, scratch: &Path) -> io::Result<()> {
    let input = scratch.join("live.webm");
    let ours_out = scratch.join("finalized.webm");
    let ffmpeg_out = scratch.join("ffmpeg.webm");
    let started = Instant::now();
    generate(&input, options.size_mib << 20)?;
    let input_size = fs::metadata(&input)?.len();
    eprintln!(
        "generated {} ({:.0} MiB) in {:.1} s",
        input.display(),
        input_size as f64 / f64::from(1 << 20),
        started.elapsed().as_secs_f64()
    );

    let me = std::env::current_exe()?;
    let me = me
        .to_str()
        .ok_or_else(|| io::Error::other("non UTF-8 path"))?;
    let path = |p: &Path| {
        p.to_str()
            .map(str::to_owned)
            .ok_or_else(|| io::Error::other("non UTF-8 path"))
    };
    let (input_s, ours_s, ffmpeg_s) = (path(&input)?, path(&ours_out)?, path(&ffmpeg_out)?);

    let mut ours = (Vec::new(), 0u64);
    let mut ffmpeg = (Vec::new(), 0u64);
    for run in 0..options.runs {
        let (wall, rss) = measure(me, &["finalize", &input_s, &ours_s], scratch)?;
        eprintln!("run {run}: livekeep-webm {wall:.2} s, {} MiB", rss / 1024);
        ours.0.push(wall);
        ours.1 = ours.1.max(rss);
        fs::remove_file(&ours_out)?;
        let (wall, rss) = measure(
            "ffmpeg",
            &[
                "-v", "error", "-y", "-i", &input_s, "-map", "0", "-c", "copy", &ffmpeg_s,
            ],
            scratch,
        )?;
        eprintln!("run {run}: ffmpeg -c copy {wall:.2} s, {} MiB", rss / 1024);
        ffmpeg.0.push(wall);
        ffmpeg.1 = ffmpeg.1.max(rss);
        fs::remove_file(&ffmpeg_out)?;
    }
    let ours_median = median(&mut ours.0);
    let ffmpeg_median = median(&mut ffmpeg.0);
    println!(
        "Input: {:.0} MiB MediaRecorder-shaped WebM (VP8 + Opus, unknown-size Segment and Clusters), median of {} runs.\n",
        input_size as f64 / f64::from(1 << 20),
        options.runs
    );
    println!("| tool | median wall time | throughput | peak RSS |");
    println!("|---|---|---|---|");
    for (name, wall, rss) in [
        ("livekeep-webm `finalize_webm`", ours_median, ours.1),
        ("`ffmpeg -c copy`", ffmpeg_median, ffmpeg.1),
    ] {
        println!(
            "| {name} | {wall:.2} s | {:.0} MiB/s | {:.1} MiB |",
            input_size as f64 / f64::from(1 << 20) / wall,
            rss as f64 / 1024.0
        );
    }
    println!(
        "\nffmpeg / livekeep-webm wall-time ratio: {:.2}× (above 1 means livekeep-webm is faster)",
        ffmpeg_median / ours_median
    );
    Ok(())
}
