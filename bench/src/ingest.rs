//! `ingest`: one upload of large PATCHes against `dd` writing the same blocks with a sync each.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use tokio::{process::Command, time::Instant};

use crate::{
    rustus::{self, Rustus},
    server::{first_chunk, noise, Api, Scratch, Server},
    stage_metrics::Counters,
    stats::{cell, ratio, Spread},
    Common,
};

/// Options of `ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// MiB per PATCH (and per `dd` block).
    #[arg(long, default_value_t = 8)]
    pub patch_mib: usize,
    /// PATCHes per run (and `dd` blocks).
    #[arg(long, default_value_t = 128)]
    pub patches: usize,
    /// Runs of each side, alternated; figures are the median with min and max.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// The rustus binary (`scripts/bench.sh` installs 0.5.10 there when it is missing);
    /// default `$LIVEKEEP_TOOLS_DIR/rustus-0.5.10/bin/rustus`, the tools dir defaulting to
    /// `~/.cache/livekeep/tools`.
    #[arg(long)]
    pub rustus: Option<PathBuf>,
}

/// What each run measures, in an order that changes from run to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Livekeep,
    Dd,
    Rustus,
}

/// The rustus binary the bench script installs.
fn default_rustus() -> PathBuf {
    let tools = std::env::var_os("LIVEKEEP_TOOLS_DIR").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/livekeep/tools")
        },
        PathBuf::from,
    );
    tools.join("rustus-0.5.10/bin/rustus")
}

/// Runs the ingest benchmark and prints its markdown section.
pub async fn run(common: &Common, args: IngestArgs) -> Result<()> {
    let rustus_bin = args.rustus.clone().unwrap_or_else(default_rustus);
    if !rustus_bin.is_file() {
        bail!(
            "rustus is not at {} (scripts/bench.sh installs it; or pass --rustus)",
            rustus_bin.display()
        );
    }
    let scratch = Scratch::new(&common.work_dir, "ingest")?;
    let server = Server::start(&common.server_bin, &scratch.path().join("data"), &[]).await?;
    let api = Api::new(&server.base, Duration::from_secs(120))?;
    let token = api.register("ingest").await?;
    let block = args.patch_mib << 20;
    let rustus_dir = scratch.path().join("rustus");
    let rustus = Rustus::start(&rustus_bin, &rustus_dir, block).await?;
    let fixture = std::fs::read(&common.fixture)
        .with_context(|| format!("reading {}", common.fixture.display()))?;
    let body = noise(block);
    let header = first_chunk(&fixture, &body, block);
    let total = (block * args.patches) as f64;

    let (mut ours, mut dsync, mut theirs, mut fdatasync) = (vec![], vec![], vec![], vec![]);
    let (mut patch_ms, mut rustus_patch_ms) = (vec![], vec![]);
    // The server's stages of each livekeep run, and its mean PATCH as the client saw it (ms).
    let (mut stages, mut mean_patch_ms) = (vec![], vec![]);
    let sides = [Side::Dd, Side::Livekeep, Side::Rustus];
    for run in 0..args.runs {
        // Each side goes first, second and third in turn, so none always meets a warmer disk.
        for k in 0..sides.len() {
            match sides[(run + k) % sides.len()] {
                Side::Dd => {
                    dsync.push(total / dd(scratch.path(), &args, "oflag=dsync").await? / 1e6);
                }
                Side::Livekeep => {
                    let live = api.start_live(&token, &format!("ingest {run}")).await?;
                    let metrics_before = Counters::parse(&api.metrics().await?);
                    let began = Instant::now();
                    let mut offset = 0u64;
                    for i in 0..args.patches {
                        let chunk = if i == 0 { header.clone() } else { body.clone() };
                        let sent = Instant::now();
                        offset = api.patch(&token, &live.upload_url, offset, chunk).await?;
                        patch_ms.push(sent.elapsed().as_secs_f64() * 1e3);
                    }
                    let elapsed = began.elapsed().as_secs_f64();
                    let held = api.head(&token, &live.upload_url).await?;
                    if held != total as u64 {
                        bail!("the server holds {held} bytes, {total} were acknowledged");
                    }
                    ours.push(total / elapsed / 1e6);
                    stages.push(Counters::parse(&api.metrics().await?).minus(&metrics_before));
                    mean_patch_ms.push(elapsed * 1e3 / args.patches as f64);
                    api.terminate(&token, &live.upload_url).await?;
                }
                Side::Rustus => {
                    let url = rustus.create(&api.http, total as u64).await?;
                    let began = Instant::now();
                    let mut offset = 0u64;
                    for i in 0..args.patches {
                        let chunk = if i == 0 { header.clone() } else { body.clone() };
                        let sent = Instant::now();
                        offset = rustus::patch(&api.http, &url, offset, chunk).await?;
                        rustus_patch_ms.push(sent.elapsed().as_secs_f64() * 1e3);
                    }
                    theirs.push(total / began.elapsed().as_secs_f64() / 1e6);
                    if offset != total as u64 {
                        bail!("rustus acknowledged {offset} bytes of {total}");
                    }
                    // Frees the disk between runs, as the tus termination does for Livekeep.
                    let _ = std::fs::remove_dir_all(rustus_dir.join("data"));
                    std::fs::create_dir_all(rustus_dir.join("data"))?;
                }
            }
        }
        fdatasync.push(total / dd(scratch.path(), &args, "conv=fdatasync").await? / 1e6);
        eprintln!(
            "ingest run {}: livekeep {:.0} MB/s, dd oflag=dsync {:.0} MB/s, rustus {:.0} MB/s, \
             dd conv=fdatasync {:.0} MB/s",
            run + 1,
            ours[run],
            dsync[run],
            theirs[run],
            fdatasync[run]
        );
    }
    rustus.stop().await;
    server.stop().await;

    let mib = args.patch_mib;
    let n = args.patches;
    println!("## Ingest: one upload, large PATCHes, fsync on\n");
    println!(
        "One live's upload receives {n} PATCHes of {mib} MiB in sequence ({} MiB); the server \
         writes each body to the file as it arrives and syncs it (`fdatasync`) before its \
         `204`, after committing the offset to SQLite (WAL, `synchronous=FULL`). Two baselines \
         on the same disk, in the same run: `dd bs={mib}M count={n} oflag=dsync`, where every \
         {mib} MiB write returns only once it is durable (one sync per PATCH-sized block, as \
         the server does), and rustus {} (the Rust tus server: `--force-fsync true`, its file \
         info storage, on loopback), driven by the same client with the same PATCHes (tus \
         creation with `Upload-Length`, then PATCHes). `conv=fdatasync` syncs once at the very \
         end, a bound no per-PATCH durability can reach; it is shown for context only. \
         Throughput is bytes over wall time; median of {} runs with min–max, the three sides \
         taking turns to go first.\n",
        mib * n,
        tool_version(&rustus_bin).await,
        args.runs
    );
    println!(
        "| figure | livekeep (MB/s) | `dd oflag=dsync` (MB/s) | livekeep / dd | goal ≥ 0.90× | \
         rustus (MB/s) | livekeep / rustus | goal ≥ 1.5× | `dd conv=fdatasync` (MB/s, context) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let judged = |a: &[f64], b: &[f64], goal: f64| {
        let met = Spread::of(a)
            .zip(Spread::of(b))
            .is_some_and(|(a, b)| a.median >= goal * b.median);
        if met {
            "**met**"
        } else {
            "**not met**"
        }
    };
    println!(
        "| {n} × {mib} MiB PATCH | {} | {} | {} | {} | {} | {} | {} | {} |",
        cell(&ours, 0),
        cell(&dsync, 0),
        ratio(&ours, &dsync),
        judged(&ours, &dsync, 0.9),
        cell(&theirs, 0),
        ratio(&ours, &theirs),
        judged(&ours, &theirs, 1.5),
        cell(&fdatasync, 0)
    );
    print_stages(&stages, &mean_patch_ms);
    for (who, samples) in [
        ("livekeep", &mut patch_ms),
        ("rustus", &mut rustus_patch_ms),
    ] {
        crate::stats::sort(samples);
        println!(
            "\nPATCH latency of {who} over all runs: p50 {:.1} ms, p99 {:.1} ms ({} PATCHes).",
            crate::stats::percentile(samples, 50.0).unwrap_or(f64::NAN),
            crate::stats::percentile(samples, 99.0).unwrap_or(f64::NAN),
            samples.len()
        );
    }
    Ok(())
}

/// The first line `bin --version` prints (e.g. `rustus 0.5.10`), or the file name.
async fn tool_version(bin: &Path) -> String {
    let output = Command::new(bin).arg("--version").output().await;
    output
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| bin.display().to_string())
}

/// Runs `dd` writing the same blocks to `dir` with `sync_flag`; returns its wall seconds.
/// Where a livekeep PATCH's time went, from the server's stage timings: what separates it from
/// `dd`'s one sync per block is everything but receiving the body.
fn print_stages(stages: &[Counters], mean_patch_ms: &[f64]) {
    const SHOWN: [(&str, &str); 3] = [
        ("body", "body (received, written, written back)"),
        ("store", "last batch written + `fdatasync`"),
        ("commit", "offset committed (SQLite, WAL `fsync`)"),
    ];
    let median = |f: &dyn Fn(usize) -> f64| {
        let runs: Vec<f64> = (0..stages.len()).map(f).collect();
        Spread::of(&runs).map_or(f64::NAN, |s| s.median)
    };
    let mut cells: Vec<String> = SHOWN
        .iter()
        .map(|(stage, title)| format!("{title} {:.2}", median(&|r| stages[r].ms_per_patch(stage))))
        .collect();
    // The stages the embedded path times and the table does not name (the lock, the row
    // check, the announcement; the S3-only ones are absent, NaN): one cell, so the cells add
    // up to the mean PATCH.
    let timed = |r: usize, shown: bool| -> f64 {
        crate::stage_metrics::STAGES
            .iter()
            .filter(|(stage, _)| SHOWN.iter().any(|(named, _)| named == stage) == shown)
            .map(|(stage, _)| stages[r].ms_per_patch(stage))
            .filter(|ms| ms.is_finite())
            .sum()
    };
    cells.push(format!(
        "the other server stages (lock, row check, announcement) {:.2}",
        median(&|r| timed(r, false))
    ));
    let rest = median(&|r| mean_patch_ms[r] - timed(r, true) - timed(r, false));
    cells.push(format!(
        "the rest (HTTP both ways, authentication, the client's turn) {rest:.2}"
    ));
    println!(
        "\nWhere a livekeep PATCH's time goes (server stage timings, ms per PATCH, median of the \
         runs; mean PATCH {:.2} ms): {}.",
        median(&|r| mean_patch_ms[r]),
        cells.join("; ")
    );
}

async fn dd(dir: &Path, args: &IngestArgs, sync_flag: &str) -> Result<f64> {
    let target = dir.join("dd-baseline.bin");
    let began = Instant::now();
    let status = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", target.display()))
        .arg(format!("bs={}M", args.patch_mib))
        .arg(format!("count={}", args.patches))
        .arg(sync_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .context("running dd")?;
    let elapsed = began.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&target);
    if !status.success() {
        bail!("dd {sync_flag} failed: {status}");
    }
    Ok(elapsed)
}
