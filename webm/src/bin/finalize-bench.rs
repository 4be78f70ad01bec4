//! Benchmark: the finalizer against ffmpeg's remux on a generated ~1 GiB recording, WebM or MP4.
//!
//! `cargo run --release -p livekeep-webm --bin finalize-bench -- [--container webm|mp4] [--size-mib 1024] [--runs 3] [--dir /tmp]`
//! (`finalize-bench generate OUT.webm MIB` and `generate-mp4 OUT.mp4 MIB` only write the input;
//! `finalize-bench finalize IN OUT` only finalizes, either container.)
//!
//! `finalize-bench plan [--sizes 10,100,1024] [--dir /tmp]`: for recordings of those sizes in
//! MiB, the time to index them once (what the server spreads over the PATCHes as bytes
//! arrive) and the time to plan the finished file's head from the complete index (what is
//! left for the stop): `plan_webm` and `plan_mp4`; then the upload's SHA-256 (also fed as
//! bytes arrive) against `openssl speed`'s.
//!
//! WebM: the input repeats the clusters of a real Chromium recording (unknown-size Segment and
//! Clusters, as MediaRecorder writes) with timestamps shifted so the timeline keeps going; the
//! baseline is `ffmpeg -c copy`. MP4: the input repeats the fragments of Chromium's `video/mp4`
//! recording (VP9 + Opus, a moof + mdat per keyframe) with their decode times and sequence
//! numbers shifted; the baseline is `ffmpeg -c copy -movflags +faststart`, which gives a
//! seekable MP4 too. Each tool runs as its own process under `/usr/bin/time` so peak RSS is
//! measured the same way for both; wall times are the median of the runs. Prints a markdown table.

use std::fs::{self, File};
use std::io::{self, BufWriter, Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use livekeep_webm::ebml::{self, ID_CLUSTER, ID_TIMESTAMP};
use livekeep_webm::mp4::boxes::{children, Child};
use livekeep_webm::mp4::{plan_mp4, Mp4Index};
use livekeep_webm::reader::{read_head, ChildKind, ClusterStep, ClusterWalker, HeadRead};
use livekeep_webm::sha256::Sha256State;
use livekeep_webm::source::Source;
use livekeep_webm::webm_index::WebmIndex;
use livekeep_webm::Container;

/// A real recording: VP8 + Opus, a keyframe and a Cluster every second.
const SEED: &[u8] = include_bytes!("../../tests/fixtures/chromium-vp8-kf1s.webm");
/// A real recording: Chromium's `video/mp4`, VP9 + Opus, a fragment per keyframe.
const MP4_SEED: &[u8] = include_bytes!("../../tests/fixtures/chromium-fmp4.mp4");

struct Options {
    container: Container,
    size_mib: u64,
    runs: usize,
    dir: PathBuf,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        container: Container::WebM,
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
            "--container" => {
                options.container = match value.as_str() {
                    "webm" => Container::WebM,
                    "mp4" => Container::Mp4,
                    _ => return Err(format!("{flag}: webm or mp4")),
                }
            }
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
        if mode == "generate" || mode == "generate-mp4" {
            let generator = if mode == "generate" {
                generate
            } else {
                generate_mp4
            };
            let result = size_mib
                .parse::<u64>()
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|mib| generator(Path::new(output), mib << 20));
            return match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("generate: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    if args.get(1).map(String::as_str) == Some("plan") {
        return match plan_bench(&args[2..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("finalize-bench plan: {e}");
                ExitCode::FAILURE
            }
        };
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
        .and_then(|(input, output)| livekeep_webm::finalize(input, output));
    match result {
        Ok(done) => {
            println!(
                "{:?} {:?}: {:.3} s, {} seek points, {} tail bytes dropped",
                done.container,
                done.path,
                done.duration_secs,
                done.cue_points,
                done.dropped_tail_bytes
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

/// Writes a Chromium-shaped fragmented MP4 of about `size` bytes: the seed's ftyp and moov, then
/// its fragments over and over, each repetition shifted by the same whole number of seconds.
fn generate_mp4(path: &Path, size: u64) -> io::Result<()> {
    let invalid = |e: &str| io::Error::other(e.to_owned());
    let mut index = Mp4Index::new();
    index
        .push(MP4_SEED)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let movie = index
        .movie()
        .ok_or_else(|| invalid("seed has no moov"))?
        .clone();
    let fragments = index.fragments();
    let first = fragments
        .first()
        .ok_or_else(|| invalid("seed has no fragment"))?;
    // Whole seconds past the seed's last sample, so every track's timeline keeps increasing.
    let mut period_secs = 1u64;
    for fragment in fragments {
        for span in index.spans(fragment) {
            let track = movie
                .tracks
                .iter()
                .find(|t| t.id == span.track_id)
                .ok_or_else(|| invalid("unknown track"))?;
            period_secs = period_secs.max(span.decode_end().div_ceil(u64::from(track.timescale)));
        }
    }
    let body = &MP4_SEED[first.start as usize..index.complete_end() as usize];
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    out.write_all(&MP4_SEED[..first.start as usize])?;
    let mut written = first.start;
    let mut repetition = 0u64;
    let mut sequence = 0u32;
    let mut piece = body.to_vec();
    while written < size {
        piece.copy_from_slice(body);
        let mut pos = 0;
        for top in children(body) {
            let top = top.map_err(invalid)?;
            if &top.kind == b"moof" {
                sequence += 1;
                shift_moof(
                    &mut piece,
                    pos,
                    &top,
                    &movie,
                    repetition * period_secs,
                    sequence,
                )
                .map_err(invalid)?;
            }
            pos += top.raw.len();
        }
        out.write_all(&piece)?;
        written += piece.len() as u64;
        repetition += 1;
    }
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()
}

/// Rewrites, in `piece`, the moof `moof` found at `at`: its sequence number, and each traf's
/// tfdt moved `secs` seconds later.
fn shift_moof(
    piece: &mut [u8],
    at: usize,
    moof: &Child,
    movie: &livekeep_webm::mp4::Movie,
    secs: u64,
    sequence: u32,
) -> Result<(), &'static str> {
    let data_at = at + moof.header_len;
    for child in children(moof.data) {
        let child = child?;
        let child_data = data_at + child.offset + child.header_len;
        match &child.kind {
            b"mfhd" => {
                piece[child_data + 4..child_data + 8].copy_from_slice(&sequence.to_be_bytes())
            }
            b"traf" => {
                let mut track = None;
                for leaf in children(child.data) {
                    let leaf = leaf?;
                    let leaf_data = child_data + leaf.offset + leaf.header_len;
                    match &leaf.kind {
                        b"tfhd" => {
                            let id = u32::from_be_bytes(
                                leaf.data
                                    .get(4..8)
                                    .ok_or("tfhd")?
                                    .try_into()
                                    .map_err(|_| "tfhd")?,
                            );
                            track = movie.tracks.iter().find(|t| t.id == id);
                        }
                        b"tfdt" if leaf.data.first() == Some(&1) => {
                            let track = track.ok_or("tfdt before tfhd")?;
                            let field = &mut piece[leaf_data + 4..leaf_data + 12];
                            let time =
                                u64::from_be_bytes((&*field).try_into().map_err(|_| "tfdt")?);
                            let shifted = time + secs * u64::from(track.timescale);
                            field.copy_from_slice(&shifted.to_be_bytes());
                        }
                        b"tfdt" => {
                            return Err("a version 0 tfdt: the seed should have 64-bit ones")
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
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
    let extension = match options.container {
        Container::WebM => "webm",
        Container::Mp4 => "mp4",
    };
    let input = scratch.join(format!("live.{extension}"));
    let ours_out = scratch.join(format!("finalized.{extension}"));
    let ffmpeg_out = scratch.join(format!("ffmpeg.{extension}"));
    let started = Instant::now();
    match options.container {
        Container::WebM => generate(&input, options.size_mib << 20)?,
        Container::Mp4 => generate_mp4(&input, options.size_mib << 20)?,
    }
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

    let baseline = match options.container {
        Container::WebM => "ffmpeg -c copy",
        Container::Mp4 => "ffmpeg -c copy -movflags +faststart",
    };
    let mut ours = (Vec::new(), 0u64);
    let mut ffmpeg = (Vec::new(), 0u64);
    for run in 0..options.runs {
        let (wall, rss) = measure(me, &["finalize", &input_s, &ours_s], scratch)?;
        eprintln!("run {run}: livekeep-webm {wall:.2} s, {} MiB", rss / 1024);
        if run == 0 {
            check_same_frames(&input_s, &ours_s)?;
        }
        ours.0.push(wall);
        ours.1 = ours.1.max(rss);
        fs::remove_file(&ours_out)?;
        let mut ffmpeg_args = vec![
            "-v", "error", "-y", "-i", &input_s, "-map", "0", "-c", "copy",
        ];
        if options.container == Container::Mp4 {
            ffmpeg_args.extend(["-movflags", "+faststart"]);
        }
        ffmpeg_args.push(&ffmpeg_s);
        let (wall, rss) = measure("ffmpeg", &ffmpeg_args, scratch)?;
        eprintln!("run {run}: {baseline} {wall:.2} s, {} MiB", rss / 1024);
        ffmpeg.0.push(wall);
        ffmpeg.1 = ffmpeg.1.max(rss);
        fs::remove_file(&ffmpeg_out)?;
    }
    let ours_median = median(&mut ours.0);
    let ffmpeg_median = median(&mut ffmpeg.0);
    let (shape, ours_name) = match options.container {
        Container::WebM => (
            "MediaRecorder-shaped WebM (VP8 + Opus, unknown-size Segment and Clusters)",
            "livekeep-webm `finalize_webm`",
        ),
        Container::Mp4 => (
            "Chromium-shaped fragmented MP4 (VP9 + Opus, a moof + mdat per keyframe, no duration, no index)",
            "livekeep-webm `finalize_mp4`",
        ),
    };
    println!(
        "Input: {:.0} MiB {shape}, median of {} runs.\n",
        input_size as f64 / f64::from(1 << 20),
        options.runs
    );
    println!("| tool | median wall time | throughput | peak RSS |");
    println!("|---|---|---|---|");
    let baseline_name = format!("`{baseline}`");
    for (name, wall, rss) in [
        (ours_name, ours_median, ours.1),
        (baseline_name.as_str(), ffmpeg_median, ffmpeg.1),
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

/// Checks, once, that the finalized file holds the input's packets: ffmpeg's framemd5 of both
/// without decoding (stream, timestamps, size, hash; not the duration column, which ffmpeg
/// guesses for the first packets from the stream's length when it does not decode).
fn check_same_frames(input: &str, output: &str) -> io::Result<()> {
    let frames = |path: &str| -> io::Result<Vec<String>> {
        let out = Command::new("ffmpeg")
            .args([
                "-v", "quiet", "-i", path, "-map", "0", "-c", "copy", "-f", "framemd5", "-",
            ])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| {
                let mut fields: Vec<&str> = line.split(',').collect();
                if fields.len() > 3 {
                    fields.remove(3);
                }
                fields.join(",")
            })
            .collect())
    };
    if frames(input)? != frames(output)? {
        return Err(io::Error::other(
            "the finalized file's packets differ from the input's",
        ));
    }
    Ok(())
}

/// `plan` mode: index time and head-planning time for recordings of several sizes.
fn plan_bench(args: &[String]) -> io::Result<()> {
    let mut sizes = vec![10u64, 100, 1024];
    let mut dir = std::env::temp_dir();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| io::Error::other(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--sizes" => {
                sizes = value
                    .split(',')
                    .map(|v| {
                        v.trim()
                            .parse()
                            .map_err(|e| io::Error::other(format!("--sizes: {e}")))
                    })
                    .collect::<io::Result<_>>()?;
            }
            "--dir" => dir = PathBuf::from(value),
            _ => return Err(io::Error::other(format!("unknown flag {flag}"))),
        }
    }
    let scratch = dir.join(format!("livekeep-plan-bench-{}", std::process::id()));
    fs::create_dir_all(&scratch)?;
    let result = plan_rows(&sizes, &scratch);
    // Best effort: the generated files must not outlive the run.
    let _ = fs::remove_dir_all(&scratch);
    let (rows, hash) = result?;
    println!(
        "Recordings generated as in the finalize benchmarks (MediaRecorder-shaped WebM, Chromium-shaped MP4). \
         Index: one pass over the file, as the server's PATCHes would feed it. Plan: `plan_webm` / \
         `plan_mp4` on the complete index, median of 101 runs: what a stop still has to do. \
         A WebM's Cues are its tail, their points encoded by the index as it learnt them.\n"
    );
    println!(
        "| recording | size | clusters or fragments | index once | plan the head | head (before the media bytes) | tail (after them) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!("\n{hash}");
    Ok(())
}

/// The table's rows, and a line on the SHA-256 of the largest WebM against OpenSSL's.
fn plan_rows(sizes: &[u64], scratch: &Path) -> io::Result<(Vec<String>, String)> {
    let invalid = |e: livekeep_webm::Error| io::Error::other(e.to_string());
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let (mut rows, mut hash) = (Vec::new(), String::new());
    for &mib in sizes {
        let webm = scratch.join("plan.webm");
        generate(&webm, mib << 20)?;
        if mib == largest {
            hash = hash_line(&webm)?;
        }
        let started = Instant::now();
        let mut index = WebmIndex::new();
        for_each_chunk(&webm, |chunk| index.push(chunk).map_err(invalid))?;
        index.finish().map_err(invalid)?;
        let indexed = started.elapsed().as_secs_f64();
        let (plan, head) = median_time(|| {
            livekeep_webm::plan_webm(&index)
                .map(|layout| (layout.head.len(), layout.tail.len()))
                .map_err(invalid)
        })?;
        rows.push(format!(
            "| WebM | {mib} MiB | {} | {:.0} ms | {} | {:.1} KiB | {:.1} KiB |",
            index.clusters().len(),
            indexed * 1000.0,
            duration_cell(plan),
            head.0 as f64 / 1024.0,
            head.1 as f64 / 1024.0
        ));
        fs::remove_file(&webm)?;

        let mp4 = scratch.join("plan.mp4");
        generate_mp4(&mp4, mib << 20)?;
        let started = Instant::now();
        let mut index = Mp4Index::new();
        for_each_chunk(&mp4, |chunk| index.push(chunk).map_err(invalid))?;
        let indexed = started.elapsed().as_secs_f64();
        let (plan, head) = median_time(|| {
            plan_mp4(&index)
                .map(|layout| (layout.head.len(), layout.tail.len()))
                .map_err(invalid)
        })?;
        rows.push(format!(
            "| MP4 | {mib} MiB | {} | {:.0} ms | {} | {:.1} KiB | {:.1} KiB |",
            index.fragments().len(),
            indexed * 1000.0,
            duration_cell(plan),
            head.0 as f64 / 1024.0,
            head.1 as f64 / 1024.0
        ));
        fs::remove_file(&mp4)?;
    }
    Ok((rows, hash))
}

/// The upload's SHA-256 as the server computes it while the bytes arrive ([`Sha256State`], fed
/// 1 MiB pieces in memory), against OpenSSL's own SHA-NI code hashing 1 MiB buffers (`openssl
/// speed`), in turns, median of 3 each. `path`'s first MiB is the data.
fn hash_line(path: &Path) -> io::Result<String> {
    const PIECE: usize = 1 << 20;
    const PIECES: usize = 512;
    let mut piece = Vec::with_capacity(PIECE);
    io::Read::read_to_end(
        &mut io::Read::take(File::open(path)?, PIECE as u64),
        &mut piece,
    )?;
    let (mut ours, mut openssl) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let started = Instant::now();
        let mut hash = Sha256State::new();
        for _ in 0..PIECES {
            hash.update(&piece);
        }
        let secs = started.elapsed().as_secs_f64();
        std::hint::black_box(hash.digest());
        ours.push((PIECE * PIECES) as f64 / secs / 1e6);
        openssl.push(openssl_sha256_mb_per_s()?);
    }
    let (ours, openssl) = (median(&mut ours), median(&mut openssl));
    Ok(format!(
        "SHA-256 as the server hashes an upload (`Sha256State`, 1 MiB pieces, in memory): \
         **{ours:.0} MB/s**; baseline `openssl speed -evp sha256 -bytes 1048576` (OpenSSL's \
         SHA-NI code) in turns: {openssl:.0} MB/s; ratio **{:.2}×**. At this pace an 8 MiB \
         PATCH's hash takes {:.1} ms of one core.",
        ours / openssl,
        8.0 * 1048576.0 / (ours * 1e6) * 1e3
    ))
}

/// OpenSSL's SHA-256 throughput on 1 MiB buffers for 2 s, in MB/s.
fn openssl_sha256_mb_per_s() -> io::Result<f64> {
    let out = Command::new("openssl")
        .args([
            "speed", "-seconds", "2", "-bytes", "1048576", "-evp", "sha256",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The last line: "sha256   1425343.75k" (thousands of bytes per second).
    text.lines()
        .last()
        .and_then(|line| line.split_whitespace().last())
        .and_then(|rate| rate.strip_suffix('k'))
        .and_then(|rate| rate.parse::<f64>().ok())
        .filter(|_| out.status.success())
        .map(|thousands| thousands / 1e3)
        .ok_or_else(|| io::Error::other(format!("openssl speed: {} {text}", out.status)))
}

/// Feeds `path` to `f` in 1 MiB pieces.
fn for_each_chunk(path: &Path, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        f(&buffer[..read])?;
    }
}

/// Median wall time of 101 runs of `f`, and its last result.
fn median_time<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<(f64, T)> {
    let mut times = Vec::with_capacity(101);
    let mut last = None;
    for _ in 0..101 {
        let started = Instant::now();
        let result = f()?;
        times.push(started.elapsed().as_secs_f64());
        last = Some(result);
    }
    let result = last.ok_or_else(|| io::Error::other("no run"))?;
    Ok((median(&mut times), result))
}

fn duration_cell(secs: f64) -> String {
    if secs < 1e-3 {
        format!("{:.0} µs", secs * 1e6)
    } else {
        format!("{:.2} ms", secs * 1e3)
    }
}
