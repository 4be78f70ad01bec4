//! `load`: N simulated recorders, each PATCHing one chunk per second like the browser does.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use bytes::Bytes;
use tokio::{
    sync::Semaphore,
    task::JoinSet,
    time::{interval_at, Instant, MissedTickBehavior},
};

use crate::{
    proc_stat,
    server::{first_chunk, noise, Api, Live, Scratch, Server},
    stats::{self, cell, percentile},
    Common,
};

/// Options of `load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Recorder counts measured `--runs` times each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "64,256")]
    pub recorders: Vec<usize>,
    /// Runs of each recorder count; figures are the median with min and max.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Seconds each simulated live records (one PATCH per second).
    #[arg(long, default_value_t = 20)]
    pub duration: u32,
    /// Bits per second of each recording.
    #[arg(long, default_value_t = 2_500_000)]
    pub bitrate: u64,
    /// Lives per registered user: registration hashes a password (argon2), so fewer users keep
    /// the set-up short; the server authenticates every PATCH the same way whatever the user.
    #[arg(long, default_value_t = 4)]
    pub recorders_per_user: usize,
    /// Search for the largest N with PATCH p99 below `--search-p99-ms` (0 = no search).
    #[arg(long, default_value_t = 2048)]
    pub search_max: usize,
    /// The p99 the search must stay below, in milliseconds.
    #[arg(long, default_value_t = 250.0)]
    pub search_p99_ms: f64,
    /// Bisection steps after the doubling steps of the search found a failing N.
    #[arg(long, default_value_t = 2)]
    pub search_refine: u32,
    /// The largest N the search must reach (issue 17: twice the 768 measured before the
    /// offsets' group commit).
    #[arg(long, default_value_t = 1536)]
    pub search_goal: usize,
    /// Appends `recorders,chunk,sent_ms,latency_ms` per PATCH to this CSV (to see where the tail is).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Names the deployment the server runs on when it is not the embedded default (the
    /// server takes it from its environment, e.g. `DATABASE_URL`); the goals, set for the
    /// embedded default, are then not judged.
    #[arg(long)]
    pub configuration: Option<String>,
}

/// What one recorder saw.
#[derive(Default)]
struct RecorderOutcome {
    latencies_ms: Vec<f64>,
    /// (chunk index, ms since the step began when sent, latency ms) of every acknowledged PATCH.
    trace: Vec<(u32, f64, f64)>,
    errors: u64,
    first_error: Option<String>,
    acked: u64,
}

/// One step: N recorders for the duration.
pub(crate) struct Step {
    pub(crate) recorders: usize,
    /// p99 of the same appends + `fdatasync` made straight to files by N threads (the disk alone).
    disk_p99_ms: f64,
    /// Every acknowledged PATCH's latency, sorted.
    pub(crate) latencies_ms: Vec<f64>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// Bytes the recorders saw acknowledged.
    pub(crate) acked: u64,
    /// Bytes the server holds by HEAD afterwards.
    pub(crate) durable: u64,
    /// Cores the server used during the step.
    pub(crate) server_cpu: f64,
    /// The server's `/metrics` just before the recorders started and just after they ended
    /// (before the HEAD checks), when [`Bench::scrape_metrics`] asked for them.
    pub(crate) metrics: Option<(String, String)>,
}

impl Step {
    /// The `p`-th percentile of the PATCH latencies (NaN without any).
    pub(crate) fn p(&self, p: f64) -> f64 {
        percentile(&self.latencies_ms, p).unwrap_or(f64::NAN)
    }

    fn passes(&self, p99_ms: f64) -> bool {
        self.errors == 0 && self.acked == self.durable && self.p(99.0) < p99_ms
    }
}

/// The simulated recorders of one server, and what they need between steps.
pub(crate) struct Bench {
    api: Api,
    tokens: Vec<String>,
    args: LoadArgs,
    header: Bytes,
    body: Bytes,
    server_pid: Option<u32>,
    disk_dir: PathBuf,
    /// Read `/metrics` around each step's recording (see [`Step::metrics`]).
    pub(crate) scrape_metrics: bool,
}

/// Runs the load benchmark and prints its markdown section.
pub async fn run(common: &Common, args: LoadArgs) -> Result<()> {
    let scratch = Scratch::new(&common.work_dir, "load")?;
    let data_dir = scratch.path().join("data");
    // A long interrupt window: the sweeper must not finalize earlier steps' lives during later ones.
    let server = Server::start(
        &common.server_bin,
        &data_dir,
        &["--interrupt-after", "3600"],
    )
    .await?;
    let mut bench = Bench::new(common, args, &server, scratch.path().join("disk-baseline"))?;

    let counts = bench.args.recorders.clone();
    let mut fixed: Vec<Vec<Step>> = Vec::new();
    for &n in &counts {
        let mut runs = Vec::new();
        for run in 0..bench.args.runs {
            let mut step = bench.step(n).await?;
            let mut disk = disk_step(&bench.disk_dir, n, bench.args.duration, &bench.body).await?;
            stats::sort(&mut disk);
            step.disk_p99_ms = percentile(&disk, 99.0).unwrap_or(f64::NAN);
            eprintln!(
                "load: {n} writers straight to disk, run {}: p50 {:.1} ms p99 {:.1} ms",
                run + 1,
                percentile(&disk, 50.0).unwrap_or(f64::NAN),
                step.disk_p99_ms
            );
            eprintln!(
                "load: {n} recorders, run {}: p50 {:.1} ms p99 {:.1} ms max {:.1} ms errors {}",
                run + 1,
                step.p(50.0),
                step.p(99.0),
                step.p(100.0),
                step.errors
            );
            runs.push(step);
        }
        fixed.push(runs);
    }
    let search = if bench.args.search_max > 0 {
        bench.search().await?
    } else {
        Vec::new()
    };
    server.stop().await;
    print_report(&bench.args, &fixed, &search);
    Ok(())
}

impl Bench {
    /// Recorders shaped by `args` for `server`; `disk_dir` is where the disk baseline writes.
    pub(crate) fn new(
        common: &Common,
        args: LoadArgs,
        server: &Server,
        disk_dir: PathBuf,
    ) -> Result<Self> {
        let fixture = std::fs::read(&common.fixture)
            .with_context(|| format!("reading {}", common.fixture.display()))?;
        let chunk_len = usize::try_from(args.bitrate / 8).context("bitrate")?;
        let body = noise(chunk_len);
        Ok(Self {
            api: Api::new(&server.base, Duration::from_secs(30))?,
            tokens: Vec::new(),
            header: first_chunk(&fixture, &body, chunk_len),
            body,
            server_pid: server.pid(),
            disk_dir,
            scrape_metrics: false,
            args,
        })
    }

    async fn ensure_users(&mut self, recorders: usize) -> Result<()> {
        let want = recorders.div_ceil(self.args.recorders_per_user.max(1));
        while self.tokens.len() < want {
            let name = format!("bench{}", self.tokens.len());
            self.tokens.push(self.api.register(&name).await?);
        }
        Ok(())
    }

    /// Starts `n` lives, runs `n` recorders for the duration, verifies by HEAD, terminates.
    pub(crate) async fn step(&mut self, n: usize) -> Result<Step> {
        self.ensure_users(n).await?;
        let per_user = self.args.recorders_per_user.max(1);
        let gate = Arc::new(Semaphore::new(16));
        let mut starts = JoinSet::new();
        for i in 0..n {
            let api = self.api.clone();
            let token = self.tokens[i / per_user].clone();
            let gate = gate.clone();
            starts.spawn(async move {
                let _permit = gate.acquire_owned().await?;
                let live = api.start_live(&token, &format!("load {i}")).await?;
                Ok::<_, anyhow::Error>((i, token, live))
            });
        }
        let mut lives: Vec<(usize, String, Live)> = Vec::with_capacity(n);
        while let Some(started) = starts.join_next().await {
            lives.push(started??);
        }
        lives.sort_by_key(|(i, _, _)| *i);

        let metrics_before = self.metrics_if_asked().await?;
        let cpu_before = self.server_pid.and_then(proc_stat::cpu_seconds);
        let began = Instant::now();
        let mut recorders = JoinSet::new();
        for (i, token, live) in &lives {
            // Spread the recorders' seconds evenly: real ones never start in the same millisecond.
            let start = began + Duration::from_secs_f64(*i as f64 / n as f64);
            recorders.spawn(record(
                self.api.clone(),
                token.clone(),
                live.upload_url.clone(),
                (began, start),
                self.args.duration,
                self.header.clone(),
                self.body.clone(),
            ));
        }
        let mut step = Step {
            recorders: n,
            disk_p99_ms: f64::NAN,
            latencies_ms: Vec::new(),
            errors: 0,
            first_error: None,
            acked: 0,
            durable: 0,
            server_cpu: 0.0,
            metrics: None,
        };
        while let Some(outcome) = recorders.join_next().await {
            let outcome = outcome?;
            step.latencies_ms.extend(outcome.latencies_ms);
            if let Some(path) = &self.args.trace {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                for (k, at, ms) in outcome.trace {
                    writeln!(file, "{n},{k},{at:.1},{ms:.2}")?;
                }
            }
            step.errors += outcome.errors;
            step.acked += outcome.acked;
            if step.first_error.is_none() {
                step.first_error = outcome.first_error;
            }
        }
        let elapsed = began.elapsed().as_secs_f64();
        if let (Some(before), Some(after)) =
            (cpu_before, self.server_pid.and_then(proc_stat::cpu_seconds))
        {
            step.server_cpu = (after - before) / elapsed;
        }
        stats::sort(&mut step.latencies_ms);
        if let (Some(before), Some(after)) = (metrics_before, self.metrics_if_asked().await?) {
            step.metrics = Some((before, after));
        }
        if let Some(err) = &step.first_error {
            eprintln!("load: {n} recorders, first error: {err}");
        }

        // Bytes durable: what the server says it holds, after every recorder finished.
        for (_, token, live) in &lives {
            match self.api.head(token, &live.upload_url).await {
                Ok(offset) => step.durable += offset,
                Err(err) => {
                    step.errors += 1;
                    step.first_error.get_or_insert(err.to_string());
                }
            }
        }
        for (_, token, live) in &lives {
            self.api.terminate(token, &live.upload_url).await?;
        }
        Ok(step)
    }

    /// One step of the search, followed by the disk alone doing the same writes.
    async fn searched_step(&mut self, n: usize) -> Result<Step> {
        let mut step = self.step(n).await?;
        let mut disk = disk_step(&self.disk_dir, n, self.args.duration, &self.body).await?;
        stats::sort(&mut disk);
        step.disk_p99_ms = percentile(&disk, 99.0).unwrap_or(f64::NAN);
        Ok(step)
    }

    async fn metrics_if_asked(&self) -> Result<Option<String>> {
        if !self.scrape_metrics {
            return Ok(None);
        }
        Ok(Some(self.api.metrics().await?))
    }

    /// Doubles N until p99 fails (bounded by `search_max`), then bisects a few times.
    async fn search(&mut self) -> Result<Vec<Step>> {
        let limit = self.args.search_p99_ms;
        let mut steps = Vec::new();
        let mut good = 0usize;
        let mut bad = None;
        let mut n = self.args.recorders.first().copied().unwrap_or(64).max(1);
        while n <= self.args.search_max {
            let step = self.searched_step(n).await?;
            eprintln!(
                "load search: {n} recorders: p99 {:.1} ms, errors {}",
                step.p(99.0),
                step.errors
            );
            let ok = step.passes(limit);
            steps.push(step);
            if ok {
                good = n;
                n *= 2;
            } else {
                bad = Some(n);
                break;
            }
        }
        if let Some(mut high) = bad {
            let mut low = good;
            for _ in 0..self.args.search_refine {
                let mid = (low + high) / 2;
                if mid <= low || mid >= high {
                    break;
                }
                let step = self.searched_step(mid).await?;
                eprintln!(
                    "load search: {mid} recorders: p99 {:.1} ms, errors {}",
                    step.p(99.0),
                    step.errors
                );
                if step.passes(limit) {
                    low = mid;
                } else {
                    high = mid;
                }
                steps.push(step);
            }
        }
        Ok(steps)
    }
}

/// One simulated recorder: a chunk becomes available every second and is PATCHed as soon as
/// the previous PATCH was acknowledged (chunks queue up behind a slow one, as in the browser).
async fn record(
    api: Api,
    token: String,
    url: String,
    (began, start): (Instant, Instant),
    chunks: u32,
    header: Bytes,
    body: Bytes,
) -> RecorderOutcome {
    let mut outcome = RecorderOutcome::default();
    let mut ticker = interval_at(start, Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut offset = 0u64;
    for k in 0..chunks {
        ticker.tick().await;
        let chunk = if offset == 0 {
            header.clone()
        } else {
            body.clone()
        };
        let sent = Instant::now();
        match api.patch(&token, &url, offset, chunk).await {
            Ok(new_offset) => {
                let ms = sent.elapsed().as_secs_f64() * 1e3;
                outcome.latencies_ms.push(ms);
                let at = (sent - began).as_secs_f64() * 1e3;
                outcome.trace.push((k, at, ms));
                offset = new_offset;
            }
            Err(err) => {
                outcome.errors += 1;
                outcome.first_error.get_or_insert(format!("{err:#}"));
                // Like the recorder: ask the server where to resume.
                if let Ok(held) = api.head(&token, &url).await {
                    offset = held;
                }
            }
        }
    }
    outcome.acked = offset;
    outcome
}

/// The baseline of a load step: `n` threads append the same chunk to their own file once a
/// second and `fdatasync` it, with the same start spread, and no HTTP, database or server.
/// Returns each append's latency in ms.
async fn disk_step(dir: &Path, n: usize, chunks: u32, chunk: &Bytes) -> Result<Vec<f64>> {
    std::fs::create_dir_all(dir)?;
    let began = Instant::now();
    let mut writers = JoinSet::new();
    for i in 0..n {
        let path = dir.join(format!("{i}.bin"));
        let chunk = chunk.clone();
        let start = began + Duration::from_secs_f64(i as f64 / n as f64);
        writers.spawn(async move {
            let mut file = Some(std::fs::File::create(&path)?);
            let mut ticker = interval_at(start, Duration::from_secs(1));
            ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let mut latencies = Vec::with_capacity(chunks as usize);
            for _ in 0..chunks {
                ticker.tick().await;
                let sent = Instant::now();
                let mut f = file.take().context("file")?;
                let chunk = chunk.clone();
                f = tokio::task::spawn_blocking(move || {
                    f.write_all(&chunk)?;
                    f.sync_data()?;
                    Ok::<_, std::io::Error>(f)
                })
                .await??;
                latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                file = Some(f);
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(latencies) = writers.join_next().await {
        all.extend(latencies??);
    }
    std::fs::remove_dir_all(dir)?;
    Ok(all)
}

fn print_report(args: &LoadArgs, fixed: &[Vec<Step>], search: &[Step]) {
    let chunk_kib = args.bitrate as f64 / 8.0 / 1024.0;
    match &args.configuration {
        None => println!("## Load: simulated recorders\n"),
        Some(configuration) => println!("## Load: simulated recorders on {configuration}\n"),
    }
    println!(
        "Each recorder owns a live (`POST /api/posts/live/`) and PATCHes a {chunk_kib:.0} KiB chunk \
         every second ({:.1} Mbit/s) for {} s; the first chunk starts with a real Chromium WebM \
         header. Recorders start spread evenly over the first second. Latency is from sending a \
         PATCH to its `204` (the server fsyncs before answering). At the end every upload is \
         checked with `HEAD` (`Upload-Offset`). {} recorders share a user. The issue sets \
         absolute goals; as a baseline each run is followed by the disk alone doing the same \
         writes: N threads, each appending the same chunk to its own file once a second and \
         `fdatasync`ing it, with the same start spread (no HTTP, no database). Each cell is the \
         median of {} runs with min–max.\n",
        args.bitrate as f64 / 1e6,
        args.duration,
        args.recorders_per_user,
        args.runs
    );
    if let Some(configuration) = &args.configuration {
        println!(
            "Here the server runs on {configuration}: an acknowledgment waits for the object \
             store's PUT and the database's commit instead of a local `fdatasync`. Compare with \
             the embedded table above, measured in the same run; its goals are the embedded \
             default's and are not judged here.\n"
        );
    }
    println!("| recorders | PATCH ack p50 (ms) | p99 (ms) | max (ms) | errors | durable by HEAD / acknowledged | server CPU (cores) | baseline: disk alone p99 (ms) | ratio p99 / disk p99 | goal |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for runs in fixed {
        let Some(first) = runs.first() else { continue };
        let n = first.recorders;
        let col = |f: &dyn Fn(&Step) -> f64, d| cell(&runs.iter().map(f).collect::<Vec<_>>(), d);
        let p99 = runs.iter().map(|s| s.p(99.0)).collect::<Vec<_>>();
        let errors: u64 = runs.iter().map(|s| s.errors).sum();
        let durable_ok = runs.iter().all(|s| s.durable == s.acked);
        let durable: u64 = runs.iter().map(|s| s.durable).sum();
        let acked: u64 = runs.iter().map(|s| s.acked).sum();
        let goal = match n {
            _ if args.configuration.is_some() => "—".to_owned(),
            64 => {
                let m = stats::Spread::of(&p99).map_or(f64::NAN, |s| s.median);
                format!(
                    "p99 < 50 ms: {}",
                    if m < 50.0 { "**met**" } else { "**not met**" }
                )
            }
            256 => format!(
                "zero errors: {}",
                if errors == 0 {
                    "**met**"
                } else {
                    "**not met**"
                }
            ),
            _ => "—".to_owned(),
        };
        println!(
            "| {n} | {} | {} | {} | {} (all runs) | {:.1} / {:.1} MiB{} | {} | {} | {} | {goal} |",
            col(&|s| s.p(50.0), 1),
            col(&|s| s.p(99.0), 1),
            col(&|s| s.p(100.0), 1),
            errors,
            durable as f64 / 1048576.0,
            acked as f64 / 1048576.0,
            if durable_ok { "" } else { " **mismatch**" },
            col(&|s| s.server_cpu, 2),
            col(&|s| s.disk_p99_ms, 1),
            stats::ratio(
                &p99,
                &runs.iter().map(|s| s.disk_p99_ms).collect::<Vec<_>>()
            ),
        );
    }
    if let Some(err) = fixed.iter().flatten().find_map(|s| s.first_error.clone()) {
        println!("\nFirst error seen: `{}`", err.replace('`', "'"));
    }
    if search.is_empty() {
        return;
    }
    println!(
        "\n### Largest N with p99 < {} ms\n\nOne run per step: doubling, then {} bisection steps, \
         at most {} recorders; each step is followed by the disk alone doing the same writes \
         (the baseline). Offsets are committed by one writer that groups the commits pending \
         at once into one SQLite transaction. Goal: at least {} recorders.\n",
        args.search_p99_ms, args.search_refine, args.search_max, args.search_goal
    );
    println!("| recorders | p50 (ms) | p99 (ms) | max (ms) | errors | durable by HEAD / acknowledged | server CPU (cores) | baseline: disk alone p99 (ms) | p99 < {} ms and no error |", args.search_p99_ms);
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in search {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {:.1} / {:.1} MiB | {:.2} | {:.1} | {} |",
            s.recorders,
            s.p(50.0),
            s.p(99.0),
            s.p(100.0),
            s.errors,
            s.durable as f64 / 1048576.0,
            s.acked as f64 / 1048576.0,
            s.server_cpu,
            s.disk_p99_ms,
            if s.passes(args.search_p99_ms) {
                "yes"
            } else {
                "no"
            }
        );
    }
    let best = search
        .iter()
        .filter(|s| s.passes(args.search_p99_ms))
        .map(|s| s.recorders)
        .max();
    let capped = search.iter().all(|s| s.passes(args.search_p99_ms));
    let goal = |n: usize| {
        if n >= args.search_goal {
            "**met**"
        } else {
            "**not met**"
        }
    };
    match best {
        Some(n) if capped => println!(
            "\n**Largest N found: ≥ {n}** (every step passed; the search stops at --search-max \
             {}). Goal ≥ {}: {}.",
            args.search_max,
            args.search_goal,
            goal(n)
        ),
        Some(n) => println!(
            "\n**Largest N found: {n}** (between it and the next failing step). Goal ≥ {}: {}.",
            args.search_goal,
            goal(n)
        ),
        None => println!(
            "\n**No N passed** (the first step already failed). Goal ≥ {}: **not met**.",
            args.search_goal
        ),
    }
}
