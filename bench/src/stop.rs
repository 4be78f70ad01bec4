//! `stop`: from `PUT …/stop/` to its answer (the Media in the feed), for recordings of several
//! sizes uploaded in large PATCHes, against `ffmpeg -c copy` remuxing the same file.
//!
//! The stop's goal (issue 17) is a constant time: the SHA-256 and the index were learnt as the
//! bytes arrived, so it only plans a head and stores it beside the upload's bytes. It runs on
//! whatever storage the environment gives the server (`LIVEKEEP_STORAGE_URL`, `DATABASE_URL`);
//! on an object store the layout is then assembled into one object in the background, whose
//! time the server's log gives and is reported beside.

use std::{
    io::Read,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::{process::Command, time::Instant};

use crate::{
    server::{Api, Live, Scratch, Server},
    stats::{cell, Spread},
    Common,
};

/// Options of `stop`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Recording sizes, in MiB.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1024")]
    pub sizes: Vec<u64>,
    /// MiB per PATCH.
    #[arg(long, default_value_t = 8)]
    pub patch_mib: usize,
    /// Stops per size (each of a freshly uploaded live); figures are the median with min–max.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// `finalize-bench` from livekeep-webm, which generates a MediaRecorder-shaped WebM.
    #[arg(long, default_value = "target/release/finalize-bench")]
    pub generator: PathBuf,
    /// What the environment configures, for the heading (e.g. "local disk + SQLite").
    #[arg(long, default_value = "SQLite + local disk (embedded)")]
    pub configuration: String,
    /// The recordings: `fixture` (the Chromium fixture repeated, as `finalize-bench generate`
    /// makes for the other benchmarks: ~130 kbit/s, 66 000 clusters per GiB) or `2.5mbps` (a
    /// cluster and a keyframe per second at 2.5 Mbit/s, as a camera live records).
    #[arg(long, value_delimiter = ',', default_value = "fixture,2.5mbps")]
    pub shapes: Vec<String>,
}

/// One size's figures.
struct Row {
    shape: String,
    mib: u64,
    /// The recording, on disk between its runs.
    input: PathBuf,
    /// Its SHA-256 (hex), what the stop is sent with.
    sha256: String,
    ffmpeg_s: Vec<f64>,
    stop_ms: Vec<f64>,
    assembly_s: Vec<f64>,
}

/// Runs the stop benchmark and prints its markdown section.
pub async fn run(common: &Common, args: StopArgs) -> Result<()> {
    let scratch = Scratch::new(&common.work_dir, "stop")?;
    let data_dir = scratch.path().join("data");
    let server = Server::start(&common.server_bin, &data_dir, &[]).await?;
    let log = data_dir.with_extension("log");
    let api = Api::new(&server.base, Duration::from_secs(1800))?;
    let token = api.register("stop").await?;
    let mut rows = Vec::new();
    for shape in &args.shapes {
        let first = rows.len();
        for &mib in &args.sizes {
            let input = scratch.path().join(format!("input-{shape}-{mib}.webm"));
            write_recording(&args.generator, shape, mib, &input).await?;
            let sha256 = hex::encode(Sha256::digest(std::fs::read(&input)?));
            rows.push(Row {
                shape: shape.clone(),
                mib,
                input,
                sha256,
                ffmpeg_s: Vec::new(),
                stop_ms: Vec::new(),
                assembly_s: Vec::new(),
            });
        }
        let shape_rows = &mut rows[first..];
        // The sizes take turns within each run, starting one further each time: a stop is a few
        // milliseconds, and the machine's drift over the minutes of one size's runs (the disk's
        // modes, a page-cache drop) would otherwise land on that size alone.
        for run in 0..args.runs {
            let count = shape_rows.len();
            for turn in 0..count {
                let row = &mut shape_rows[(run + turn) % count];
                measure_once(&api, &token, &log, scratch.path(), row, run, args.patch_mib).await?;
            }
        }
        for row in shape_rows.iter() {
            std::fs::remove_file(&row.input)?;
        }
    }
    server.stop().await;
    print(&args, &rows);
    Ok(())
}

/// Writes a recording of `mib` MiB in `shape` to `path`.
async fn write_recording(generator: &Path, shape: &str, mib: u64, path: &Path) -> Result<()> {
    match shape {
        "fixture" => {
            let status = Command::new(generator)
                .arg("generate")
                .arg(path)
                .arg(mib.to_string())
                .status()
                .await
                .with_context(|| format!("running {}", generator.display()))?;
            if !status.success() {
                bail!("generating the recording failed: {status}");
            }
        }
        "2.5mbps" => std::fs::write(path, camera_webm(mib << 20))?,
        other => bail!("unknown shape {other}: fixture or 2.5mbps"),
    }
    Ok(())
}

/// One run of one size: a live uploaded and stopped (timed), its assembly awaited on an object
/// store, the post deleted; and `ffmpeg -c copy` of the same file, before or after it in turn.
async fn measure_once(
    api: &Api,
    token: &str,
    log: &Path,
    scratch: &Path,
    row: &mut Row,
    run: usize,
    patch_mib: usize,
) -> Result<()> {
    let bytes = Bytes::from(std::fs::read(&row.input)?);
    let mib = row.mib;
    // Alternate who goes first, so neither always meets a warmer machine.
    if run.is_multiple_of(2) {
        row.ffmpeg_s.push(ffmpeg_remux(&row.input, scratch).await?);
    }
    let live = api
        .start_live(token, &format!("stop {mib} MiB {run}"))
        .await?;
    upload(api, token, &live, &bytes, patch_mib << 20).await?;
    let assembled_before = assembly_times(log)?.len();
    let began = Instant::now();
    stop(api, token, &live, bytes.len() as u64, &row.sha256).await?;
    row.stop_ms.push(began.elapsed().as_secs_f64() * 1e3);
    if let Some(seconds) = wait_for_assembly(log, assembled_before).await? {
        row.assembly_s.push(seconds);
    }
    // Its gigabyte goes now: the disk (and moto's memory) holds one recording at a time.
    delete_post(api, token, live.id).await?;
    if run % 2 == 1 {
        row.ffmpeg_s.push(ffmpeg_remux(&row.input, scratch).await?);
    }
    eprintln!(
        "stop {} {mib} MiB run {}: {:.1} ms (ffmpeg -c copy {:.2} s)",
        row.shape,
        run + 1,
        row.stop_ms[run],
        row.ffmpeg_s[run]
    );
    Ok(())
}

/// An EBML element: its id bytes, an 8-byte size (or unknown), then its body.
fn element(out: &mut Vec<u8>, id: &[u8], body: Option<&[u8]>) {
    out.extend_from_slice(id);
    match body {
        Some(body) => {
            out.push(0x01);
            out.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
            out.extend_from_slice(body);
        }
        None => out.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
    }
}

/// A live WebM of about `size` bytes shaped as MediaRecorder writes a camera at 2.5 Mbit/s:
/// unknown-size Segment and Clusters, a cluster per second opening on a VP8 keyframe, then
/// fifty 20 ms Opus packets. Payloads are noise after their headers: a remux does not decode.
fn camera_webm(size: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size as usize + (1 << 20));
    let mut header = Vec::new();
    element(&mut header, &[0x42, 0x82], Some(b"webm"));
    element(&mut out, &[0x1A, 0x45, 0xDF, 0xA3], Some(&header));
    element(&mut out, &[0x18, 0x53, 0x80, 0x67], None);
    let mut info = Vec::new();
    element(
        &mut info,
        &[0x2A, 0xD7, 0xB1],
        Some(&1_000_000u32.to_be_bytes()),
    );
    element(&mut out, &[0x15, 0x49, 0xA9, 0x66], Some(&info));
    let mut video = Vec::new();
    element(&mut video, &[0xD7], Some(&[1]));
    element(&mut video, &[0x83], Some(&[1]));
    element(&mut video, &[0x86], Some(b"V_VP8"));
    let mut picture = Vec::new();
    element(&mut picture, &[0xB0], Some(&640u16.to_be_bytes()));
    element(&mut picture, &[0xBA], Some(&480u16.to_be_bytes()));
    element(&mut video, &[0xE0], Some(&picture));
    let mut audio = Vec::new();
    element(&mut audio, &[0xD7], Some(&[2]));
    element(&mut audio, &[0x83], Some(&[2]));
    element(&mut audio, &[0x86], Some(b"A_OPUS"));
    let opus_head = [
        b"OpusHead".as_slice(),
        &[1, 1, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0],
    ]
    .concat();
    element(&mut audio, &[0x63, 0xA2], Some(&opus_head));
    let mut tracks = Vec::new();
    element(&mut tracks, &[0xAE], Some(&video));
    element(&mut tracks, &[0xAE], Some(&audio));
    element(&mut out, &[0x16, 0x54, 0xAE, 0x6B], Some(&tracks));
    // A VP8 keyframe's header (shown, first partition of 1000 bytes, 640×480), then noise.
    let frame = [
        &[0x10, 0x7D, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01][..],
        &noise(2_500_000 / 8 - 50 * 100),
    ]
    .concat();
    let packet = [&[0xFC][..], &noise(99)].concat();
    let mut second = 0u32;
    while (out.len() as u64) < size {
        element(&mut out, &[0x1F, 0x43, 0xB6, 0x75], None);
        element(&mut out, &[0xE7], Some(&(second * 1000).to_be_bytes()));
        let keyframe = [&[0x81, 0x00, 0x00, 0x80][..], &frame].concat();
        element(&mut out, &[0xA3], Some(&keyframe));
        for n in 0..50u16 {
            let at = (n * 20).to_be_bytes();
            let block = [&[0x82, at[0], at[1], 0x80][..], &packet].concat();
            element(&mut out, &[0xA3], Some(&block));
        }
        second += 1;
    }
    out
}

/// Bytes that do not compress.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// PATCHes `bytes` to the live's upload in pieces of `piece` bytes.
async fn upload(api: &Api, token: &str, live: &Live, bytes: &Bytes, piece: usize) -> Result<()> {
    let mut offset = 0;
    while (offset as usize) < bytes.len() {
        let end = (offset as usize + piece).min(bytes.len());
        offset = api
            .patch(
                token,
                &live.upload_url,
                offset,
                bytes.slice(offset as usize..end),
            )
            .await?;
    }
    Ok(())
}

/// The stop an honest recorder sends: size and SHA-256 checked by the server.
async fn stop(api: &Api, token: &str, live: &Live, size: u64, sha256: &str) -> Result<()> {
    let response = api
        .http
        .put(format!("{}/api/posts/live/{}/stop/", api.base, live.id))
        .bearer_auth(token)
        .json(&serde_json::json!({ "video_data": {
            "upload_url": live.upload_url.strip_prefix(&api.base).unwrap_or(&live.upload_url),
            "size": size,
            "sha256": sha256,
            "mime_type": "video/webm;codecs=vp8,opus",
            "live_id": live.id,
        }}))
        .send()
        .await?;
    let status = response.status();
    if status != StatusCode::OK {
        bail!("stop live {}: {status} {}", live.id, response.text().await?);
    }
    Ok(())
}

/// Deletes the live's post with its Media.
async fn delete_post(api: &Api, token: &str, id: i64) -> Result<()> {
    let response = api
        .http
        .delete(format!("{}/api/posts/{id}", api.base))
        .bearer_auth(token)
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        bail!("delete post {id}: {status} {}", response.text().await?);
    }
    Ok(())
}

/// Seconds `ffmpeg -c copy` takes to remux `input` (into a file it then deletes).
async fn ffmpeg_remux(input: &Path, scratch: &Path) -> Result<f64> {
    let output = scratch.join("remuxed.webm");
    let began = Instant::now();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(input)
        .args(["-c", "copy"])
        .arg(&output)
        .status()
        .await
        .context("running ffmpeg")?;
    let seconds = began.elapsed().as_secs_f64();
    if !status.success() {
        bail!("ffmpeg -c copy failed: {status}");
    }
    std::fs::remove_file(&output)?;
    Ok(seconds)
}

/// The `seconds` of each "media assembled" line the server logged so far.
fn assembly_times(log: &Path) -> Result<Vec<f64>> {
    let mut text = String::new();
    std::fs::File::open(log)?.read_to_string(&mut text)?;
    Ok(text
        .lines()
        .filter(|line| line.contains("media assembled into one object"))
        .filter_map(|line| {
            let after = line.split("seconds=").nth(1)?;
            after.split_whitespace().next()?.parse().ok()
        })
        .collect())
}

/// Waits for the next assembly (object stores) and returns its seconds; `None` on a store
/// that keeps layouts (local disk), seen as no assembly within a moment.
async fn wait_for_assembly(log: &Path, before: usize) -> Result<Option<f64>> {
    let quiet = Duration::from_millis(500);
    let patience = Duration::from_secs(600);
    let began = Instant::now();
    loop {
        let times = assembly_times(log)?;
        if times.len() > before {
            return Ok(times.last().copied());
        }
        let waited = began.elapsed();
        if waited > patience || (waited > quiet && !log_mentions_layouts_assembling(log)?) {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the server assembles layouts (it logs its storage at start).
fn log_mentions_layouts_assembling(log: &Path) -> Result<bool> {
    let mut text = String::new();
    std::fs::File::open(log)?.read_to_string(&mut text)?;
    Ok(text.contains("layouts are assembled"))
}

fn print(args: &StopArgs, rows: &[Row]) {
    let largest = args.sizes.iter().copied().max().unwrap_or(0);
    println!(
        "## Stop: from `PUT …/stop/` to the Media in the feed, on {}\n",
        args.configuration
    );
    println!(
        "A MediaRecorder-shaped WebM of each size is uploaded with tus in {} \
         MiB PATCHes, then the live is stopped with its size and SHA-256; the time is from the \
         request to its `200` (the Post with its Media). Two shapes: `fixture`, the Chromium \
         fixture repeated (`finalize-bench generate`, as the other benchmarks; ~130 kbit/s, so \
         1 GiB is ~18 hours and 66 000 clusters and keyframes), and `2.5mbps`, a cluster and a \
         keyframe per second at 2.5 Mbit/s (1 GiB is ~55 minutes). Baseline: `ffmpeg -c copy` \
         remuxing the same file (what a tusd/rustus + ffmpeg pipeline would do at the end), in \
         the same run. The SHA-256 and the cluster index were computed as the bytes arrived, so \
         the stop reads nothing back: it writes a head of a few KiB and the Cues (their points \
         encoded as the keyframes arrived; they follow the clusters) beside the upload's own \
         bytes. Median of {} stops per size with min–max, the sizes taking turns within each \
         run; the 5 % goal is for the largest recording.\n",
        args.patch_mib, args.runs
    );
    let assembled = rows.iter().any(|row| !row.assembly_s.is_empty());
    let extra = if assembled {
        (" assembly into one object, after the answer (s) |", "---|")
    } else {
        ("", "")
    };
    println!(
        "| shape | recording | stop (ms) | `ffmpeg -c copy` (s) | stop / ffmpeg | goal < 5 % |{}",
        extra.0
    );
    println!("|---|---|---|---|---|---|{}", extra.1);
    for row in rows {
        let stop = Spread::of(&row.stop_ms).map_or(f64::NAN, |s| s.median);
        let ffmpeg = Spread::of(&row.ffmpeg_s).map_or(f64::NAN, |s| s.median);
        let share = stop / 1e3 / ffmpeg;
        let met = match (row.mib == largest, share < 0.05) {
            (false, _) => "—",
            (true, true) => "**met**",
            (true, false) => "**not met**",
        };
        let assembly = if assembled {
            format!(" {} |", cell(&row.assembly_s, 2))
        } else {
            String::new()
        };
        println!(
            "| {} | {} MiB | {} | {} | {:.1} % | {met} |{assembly}",
            row.shape,
            row.mib,
            cell(&row.stop_ms, 1),
            cell(&row.ffmpeg_s, 2),
            share * 100.0
        );
    }
    println!();
    if assembled {
        println!(
            "On an object store the stop answers once the head is stored and the media recorded \
             as a layout over the upload's objects (served as one file meanwhile); the layout is \
             then assembled into one object in the background (S3: `UploadPartCopy` of the \
             upload's objects behind a first part holding the head), whose time the server logs \
             (`media assembled into one object`): the last column, measured from its start to \
             its end, not included in the stop.\n"
        );
    }
    for shape in &args.shapes {
        let medians: Vec<f64> = rows
            .iter()
            .filter(|row| &row.shape == shape)
            .filter_map(|row| Spread::of(&row.stop_ms).map(|s| s.median))
            .collect();
        let (low, high) = medians
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), &m| {
                (lo.min(m), hi.max(m))
            });
        let spread = high / low;
        println!(
            "- `{shape}`: the slowest size's median stop is {spread:.2}× the fastest's: goal \
             within 2×, **{}**.",
            if spread <= 2.0 { "met" } else { "not met" }
        );
    }
    println!();
}
