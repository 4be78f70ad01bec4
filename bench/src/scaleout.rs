//! `scaleout`: the simulated recorders of `load` on the scale-out configuration (PostgreSQL and
//! an S3 store, named by the environment the server inherits), each run followed by the object
//! store alone doing the same PUTs; where a PATCH's time goes and what it asks of the store,
//! read from the server's `/metrics`.

use anyhow::Result;

use crate::{
    load::{Bench, LoadArgs, Step},
    proc_stat,
    server::{noise, Scratch, Server},
    stage_metrics::{Counters, STAGES},
    stats::{self, cell, percentile},
    store_alone::{StoreAlone, StoreStep},
    Common,
};

/// Options of `scaleout`.
#[derive(Debug, clap::Args)]
pub struct ScaleoutArgs {
    /// Recorder counts measured `--runs` times each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "64,256")]
    pub recorders: Vec<usize>,
    /// Runs of each recorder count; figures are the median with min and max.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Seconds each simulated live records (one PATCH per second).
    #[arg(long, default_value_t = 15)]
    pub duration: u32,
    /// Bits per second of each recording.
    #[arg(long, default_value_t = 2_500_000)]
    pub bitrate: u64,
    /// Lives per registered user (see `load`).
    #[arg(long, default_value_t = 4)]
    pub recorders_per_user: usize,
    /// Where the baseline puts its objects, `s3://bucket/prefix` on the server's store.
    #[arg(long)]
    pub baseline_url: String,
    /// The store's process id, to report the cores it used beside the server's.
    #[arg(long)]
    pub store_pid: Option<u32>,
    /// What the store is, for the report (`Garage 2.5.0`).
    #[arg(long, default_value = "the object store")]
    pub store_name: String,
    /// What the server runs on, for the report's heading.
    #[arg(long)]
    pub configuration: String,
}

/// Object store operations counted by the server (`livekeep_object_store_requests_total`).
const OPERATIONS: [&str; 5] = ["list", "put", "get", "delete", "head"];

/// One run: the recorders through the server, then the store alone.
struct Run {
    load: Step,
    store: StoreStep,
    /// The store alone doing a PATCH's requests: a listing, then the put.
    listing: StoreStep,
    store_cpu: Option<f64>,
    server: Counters,
}

/// Runs the section and prints its markdown.
pub async fn run(common: &Common, args: ScaleoutArgs) -> Result<()> {
    let scratch = Scratch::new(&common.work_dir, "scaleout")?;
    let server = Server::start(
        &common.server_bin,
        &scratch.path().join("data"),
        &["--interrupt-after", "3600"],
    )
    .await?;
    let load_args = LoadArgs {
        recorders: args.recorders.clone(),
        runs: args.runs,
        duration: args.duration,
        bitrate: args.bitrate,
        recorders_per_user: args.recorders_per_user,
        search_max: 0,
        search_p99_ms: 0.0,
        search_refine: 0,
        search_goal: 0,
        trace: None,
        configuration: Some(args.configuration.clone()),
    };
    let mut bench = Bench::new(common, load_args, &server, scratch.path().join("unused"))?;
    bench.scrape_metrics = true;
    let store = StoreAlone::open(&args.baseline_url)?;
    let chunk = noise(usize::try_from(args.bitrate / 8)?);

    let mut steps: Vec<Vec<Run>> = Vec::new();
    for &n in &args.recorders {
        let mut runs = Vec::new();
        for run in 0..args.runs {
            settle(args.store_pid).await;
            let cpu_before = args.store_pid.and_then(proc_stat::cpu_seconds);
            let started = std::time::Instant::now();
            let load = bench.step(n).await?;
            let store_cpu = match (cpu_before, args.store_pid.and_then(proc_stat::cpu_seconds)) {
                (Some(before), Some(after)) => {
                    Some((after - before) / started.elapsed().as_secs_f64())
                }
                _ => None,
            };
            let tag = format!("n{n}-run{run}-{}", std::process::id());
            settle(args.store_pid).await;
            let alone = store.step(&tag, n, args.duration, &chunk, false).await?;
            settle(args.store_pid).await;
            let listing = store
                .step(&format!("{tag}-list"), n, args.duration, &chunk, true)
                .await?;
            let server = load
                .metrics
                .as_ref()
                .map(|(before, after)| Counters::parse(after).minus(&Counters::parse(before)))
                .unwrap_or_default();
            eprintln!(
                "scaleout: {n} recorders, run {}: PATCH p50 {:.1} ms p99 {:.1} ms errors {}; \
                 {} alone: PUT p50 {:.1} ms p99 {:.1} ms errors {}; LIST + PUT p50 {:.1} ms \
                 p99 {:.1} ms errors {}",
                run + 1,
                load.p(50.0),
                load.p(99.0),
                load.errors,
                args.store_name,
                percentile(&alone.latencies_ms, 50.0).unwrap_or(f64::NAN),
                percentile(&alone.latencies_ms, 99.0).unwrap_or(f64::NAN),
                alone.errors,
                percentile(&listing.latencies_ms, 50.0).unwrap_or(f64::NAN),
                percentile(&listing.latencies_ms, 99.0).unwrap_or(f64::NAN),
                listing.errors,
            );
            runs.push(Run {
                load,
                store: alone,
                listing,
                store_cpu,
                server,
            });
        }
        steps.push(runs);
    }
    server.stop().await;
    print_report(&args, &steps);
    Ok(())
}

/// Waits (at most a minute) until the store's process is nearly idle: deleting the previous
/// step's objects keeps a store busy for seconds after the step, which would weigh on the next.
async fn settle(store_pid: Option<u32>) {
    let Some(pid) = store_pid else { return };
    for _ in 0..60 {
        let before = proc_stat::cpu_seconds(pid);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        match (before, proc_stat::cpu_seconds(pid)) {
            (Some(before), Some(after)) if after - before < 0.05 => return,
            (Some(_), Some(_)) => {}
            _ => return,
        }
    }
    eprintln!("scaleout: the store stayed busy for a minute; measuring anyway");
}

fn mean(samples: &[f64]) -> f64 {
    samples.iter().sum::<f64>() / samples.len() as f64
}

fn print_report(args: &ScaleoutArgs, steps: &[Vec<Run>]) {
    let store = &args.store_name;
    println!(
        "## Load on the scale-out configuration: {}\n",
        args.configuration
    );
    println!(
        "The load section's simulated recorders (one live each, a {:.0} KiB chunk PATCHed every \
         second, {:.1} Mbit/s, for {} s, spread over the first second; latency from sending a \
         PATCH to its `204`; every upload checked by `HEAD` afterwards), against one node on \
         {}. A PATCH is acknowledged once its bytes are an object in the store and its offset \
         is committed in PostgreSQL. The baseline, after each run: {store} alone doing the same \
         PUTs: N writers, each putting one object of the same size every second with the same \
         start spread and waiting for each answer, through the same client library (object_store) \
         and the same variables, no Livekeep in between; then the same writers each listing \
         their objects before each PUT, as a PATCH's reconciliation does (*LIST + PUT*: the \
         store's own cost of the requests a PATCH makes). Before each, the bench waits for the store to \
         be idle again (under 5 % of a core), as deleting the previous step's objects keeps it \
         busy for a while. Each cell is the median of {} runs with min–max. Goals (issue 17): \
         64 recorders with PATCH p99 < 100 ms, 256 with zero errors.\n",
        args.bitrate as f64 / 8.0 / 1024.0,
        args.bitrate as f64 / 1e6,
        args.duration,
        args.configuration,
        args.runs
    );
    println!(
        "| recorders | PATCH ack p50 (ms) | p99 (ms) | max (ms) | errors | durable by HEAD / acknowledged | server CPU (cores) | {store} CPU (cores) | baseline: {store} alone, PUT p50 (ms) | PUT p99 (ms) | ratio p99 / alone p99 | {store} alone, LIST + PUT p50 (ms) | LIST + PUT p99 (ms) | goal |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for runs in steps {
        let Some(first) = runs.first() else { continue };
        let n = first.load.recorders;
        let col = |f: &dyn Fn(&Run) -> f64, d| cell(&runs.iter().map(f).collect::<Vec<_>>(), d);
        let p99: Vec<f64> = runs.iter().map(|r| r.load.p(99.0)).collect();
        let alone_p99: Vec<f64> = runs
            .iter()
            .map(|r| percentile(&r.store.latencies_ms, 99.0).unwrap_or(f64::NAN))
            .collect();
        let errors: u64 = runs.iter().map(|r| r.load.errors).sum();
        let durable_ok = runs.iter().all(|r| r.load.durable == r.load.acked);
        let durable: u64 = runs.iter().map(|r| r.load.durable).sum();
        let acked: u64 = runs.iter().map(|r| r.load.acked).sum();
        let store_errors: u64 = runs.iter().map(|r| r.store.errors + r.listing.errors).sum();
        let tail = |step: &StoreStep, p| percentile(&step.latencies_ms, p).unwrap_or(f64::NAN);
        let met = |ok: bool| if ok { "**met**" } else { "**not met**" };
        let goal = match n {
            64 => {
                let median = stats::Spread::of(&p99).map_or(f64::NAN, |s| s.median);
                format!("p99 < 100 ms: {}", met(median < 100.0))
            }
            256 => format!("zero errors: {}", met(errors == 0 && durable_ok)),
            _ => "—".to_owned(),
        };
        println!(
            "| {n} | {} | {} | {} | {errors} (all runs) | {:.1} / {:.1} MiB{} | {} | {} | {} | {}{} | {} | {} | {} | {goal} |",
            col(&|r| r.load.p(50.0), 1),
            col(&|r| r.load.p(99.0), 1),
            col(&|r| r.load.p(100.0), 1),
            durable as f64 / 1048576.0,
            acked as f64 / 1048576.0,
            if durable_ok { "" } else { " **mismatch**" },
            col(&|r| r.load.server_cpu, 2),
            col(&|r| r.store_cpu.unwrap_or(f64::NAN), 2),
            col(&|r| tail(&r.store, 50.0), 1),
            cell(&alone_p99, 1),
            if store_errors > 0 {
                format!(" ({store_errors} failed requests)")
            } else {
                String::new()
            },
            stats::ratio(&p99, &alone_p99),
            col(&|r| tail(&r.listing, 50.0), 1),
            col(&|r| tail(&r.listing, 99.0), 1),
        );
    }
    if let Some(err) = steps
        .iter()
        .flatten()
        .find_map(|r| r.load.first_error.clone())
    {
        println!("\nFirst error seen: `{}`", err.replace('`', "'"));
    }

    println!(
        "\nWhere a PATCH's time goes, from the server's `livekeep_patch_stage_seconds` \
         (milliseconds per PATCH, medians of the runs): *lock* is the upload's lock (on \
         PostgreSQL), *row check* reads the upload's row (and claims it for the node on its \
         first PATCH there), *reconcile* makes the stored objects agree with the committed \
         offset, *body* receives the body, *lock check* checks the lock is still held, *store \
         PUT* puts it as an object, *commit* commits the offset, \
         *announce* tells the live's viewers; *rest* is the client's mean latency minus \
         these (HTTP, authentication, queueing before the handler). The *(p99)* rows give the \
         histogram bucket under which 99 % of each stage's times fell.\n"
    );
    let header: Vec<&str> = STAGES.iter().map(|(_, title)| *title).collect();
    println!(
        "| recorders | {} | rest | mean ack (ms) |",
        header.join(" | ")
    );
    println!("|---|{}---|---|", "---|".repeat(STAGES.len()));
    for runs in steps {
        let Some(first) = runs.first() else { continue };
        let median = |f: &dyn Fn(&Run) -> f64| {
            stats::Spread::of(&runs.iter().map(f).collect::<Vec<_>>())
                .map_or(f64::NAN, |s| s.median)
        };
        let cells: Vec<String> = STAGES
            .iter()
            .map(|(stage, _)| format!("{:.1}", median(&|r| r.server.ms_per_patch(stage))))
            .collect();
        let rest = median(&|r| {
            let stages: f64 = STAGES.iter().map(|(s, _)| r.server.ms_per_patch(s)).sum();
            mean(&r.load.latencies_ms) - stages
        });
        println!(
            "| {} | {} | {rest:.1} | {:.1} |",
            first.load.recorders,
            cells.join(" | "),
            median(&|r| mean(&r.load.latencies_ms)),
        );
        let tails: Vec<String> = STAGES
            .iter()
            .map(|(stage, _)| {
                let bound = median(&|r| r.server.p99_bound_ms(stage));
                if bound.is_finite() {
                    format!("≤ {bound}")
                } else {
                    "> 5000".to_owned()
                }
            })
            .collect();
        println!(
            "| {} (p99) | {} | | {:.1} (p99) |",
            first.load.recorders,
            tails.join(" | "),
            median(&|r| r.load.p(99.0)),
        );
    }

    println!(
        "\nRequests the server made to {store} per PATCH (`livekeep_object_store_requests_total` \
         over the PATCHes of the run, medians of the runs; background compaction included: it \
         reads pieces back and puts them as one part every 5 MiB of an upload).\n"
    );
    println!(
        "| recorders | {} |",
        OPERATIONS.map(str::to_uppercase).join(" | ")
    );
    println!("|---|{}", "---|".repeat(OPERATIONS.len()));
    for runs in steps {
        let Some(first) = runs.first() else { continue };
        let cells: Vec<String> = OPERATIONS
            .iter()
            .map(|op| {
                let per: Vec<f64> = runs.iter().map(|r| r.server.per_patch(op)).collect();
                format!(
                    "{:.2}",
                    stats::Spread::of(&per).map_or(f64::NAN, |s| s.median)
                )
            })
            .collect();
        println!("| {} | {} |", first.load.recorders, cells.join(" | "));
    }
}
