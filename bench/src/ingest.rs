//! `ingest`: one upload of large PATCHes against `dd` writing the same blocks with a sync each.

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{bail, Context, Result};
use tokio::{process::Command, time::Instant};

use crate::{
    server::{first_chunk, noise, Api, Scratch, Server},
    stats::{cell, ratio},
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
}

/// Runs the ingest benchmark and prints its markdown section.
pub async fn run(common: &Common, args: IngestArgs) -> Result<()> {
    let scratch = Scratch::new(&common.work_dir, "ingest")?;
    let server = Server::start(&common.server_bin, &scratch.path().join("data"), &[]).await?;
    let api = Api::new(&server.base, Duration::from_secs(120))?;
    let token = api.register("ingest").await?;
    let fixture = std::fs::read(&common.fixture)
        .with_context(|| format!("reading {}", common.fixture.display()))?;
    let block = args.patch_mib << 20;
    let body = noise(block);
    let header = first_chunk(&fixture, &body, block);
    let total = (block * args.patches) as f64;

    let (mut ours, mut dsync, mut fdatasync, mut patch_ms) = (vec![], vec![], vec![], vec![]);
    for run in 0..args.runs {
        // dd first in odd runs, second in even ones, so neither always meets a warmer disk.
        let dd_first = run % 2 == 0;
        if dd_first {
            dsync.push(total / dd(scratch.path(), &args, "oflag=dsync").await? / 1e6);
        }
        let live = api.start_live(&token, &format!("ingest {run}")).await?;
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
        api.terminate(&token, &live.upload_url).await?;
        if !dd_first {
            dsync.push(total / dd(scratch.path(), &args, "oflag=dsync").await? / 1e6);
        }
        fdatasync.push(total / dd(scratch.path(), &args, "conv=fdatasync").await? / 1e6);
        eprintln!(
            "ingest run {}: livekeep {:.0} MB/s, dd oflag=dsync {:.0} MB/s, dd conv=fdatasync {:.0} MB/s",
            run + 1,
            ours[run],
            dsync[run],
            fdatasync[run]
        );
    }
    server.stop().await;

    let mib = args.patch_mib;
    let n = args.patches;
    println!("## Ingest: one upload, large PATCHes, fsync on\n");
    println!(
        "One live's upload receives {n} PATCHes of {mib} MiB in sequence ({} MiB); the server \
         streams each body to the file and calls `fdatasync` once before its `204`, then commits \
         the offset to SQLite (WAL, `synchronous=FULL`). The fair baseline is `dd bs={mib}M \
         count={n} oflag=dsync` on the same disk: every {mib} MiB write returns only once it is \
         durable, i.e. one sync per PATCH-sized block, as the server does. `conv=fdatasync` \
         syncs once at the very end, a bound no per-PATCH durability can reach; it is shown for \
         context only. Throughput is bytes over wall time; median of {} alternated runs with \
         min–max.\n",
        mib * n,
        args.runs
    );
    println!("| figure | livekeep (MB/s) | baseline `dd oflag=dsync` (MB/s) | ratio | goal ≥ 0.90 | `dd conv=fdatasync` (MB/s, context) |");
    println!("|---|---|---|---|---|---|");
    let r = ratio(&ours, &dsync);
    let met = crate::stats::Spread::of(&ours)
        .zip(crate::stats::Spread::of(&dsync))
        .is_some_and(|(a, b)| a.median >= 0.9 * b.median);
    println!(
        "| {n} × {mib} MiB PATCH | {} | {} | {r} | {} | {} |",
        cell(&ours, 0),
        cell(&dsync, 0),
        if met { "**met**" } else { "**not met**" },
        cell(&fdatasync, 0)
    );
    let mut sorted = patch_ms.clone();
    crate::stats::sort(&mut sorted);
    println!(
        "\nPATCH latency over all runs: p50 {:.1} ms, p99 {:.1} ms ({} PATCHes).",
        crate::stats::percentile(&sorted, 50.0).unwrap_or(f64::NAN),
        crate::stats::percentile(&sorted, 99.0).unwrap_or(f64::NAN),
        sorted.len()
    );
    Ok(())
}

/// Runs `dd` writing the same blocks to `dir` with `sync_flag`; returns its wall seconds.
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
