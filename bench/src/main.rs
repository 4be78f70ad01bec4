//! `livekeep-bench`: Livekeep's benchmarks, each printing a markdown section for `BENCHMARKS.md`.
//!
//! `scripts/bench.sh` (`make bench`) runs them all and writes the file; each subcommand also
//! runs alone, e.g. `livekeep-bench load --recorders 64 --runs 1`.

mod feed;
mod ingest;
mod load;
mod proc_stat;
mod range;
mod rustus;
mod scaleout;
mod server;
mod stage_metrics;
mod stats;
mod stop;
mod store_alone;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Command line of `livekeep-bench`.
#[derive(Debug, Parser)]
#[command(
    name = "livekeep-bench",
    about = "Benchmarks of Livekeep; each prints a markdown section"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Bench,
}

/// Options every benchmark shares.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The `livekeep` binary to benchmark (a release build).
    #[arg(long, global = true, default_value = "target/release/livekeep")]
    pub server_bin: PathBuf,
    /// Where scratch data directories go (the disk under test).
    #[arg(long, global = true, default_value_os_t = std::env::temp_dir())]
    pub work_dir: PathBuf,
    /// A real Chromium WebM whose first bytes start every simulated recording.
    #[arg(
        long,
        global = true,
        default_value = "webm/tests/fixtures/chromium-vp8-kf1s.webm"
    )]
    pub fixture: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// N simulated recorders PATCHing a chunk per second: ack latency, errors, durable bytes.
    Load(load::LoadArgs),
    /// One upload of large PATCHes versus `dd` with a sync per block and rustus on the same disk.
    Ingest(ingest::IngestArgs),
    /// 1 MiB Range requests on a finalized recording versus nginx serving the same file.
    Range(range::RangeArgs),
    /// Feed page latency with 1 000 and 10 000 posts, first page and deep cursor pages.
    Feed(feed::FeedArgs),
    /// `load` on PostgreSQL + an S3 store beside the store alone; where a PATCH's time goes.
    Scaleout(scaleout::ScaleoutArgs),
    /// From stop to the Media, for recordings of several sizes, versus `ffmpeg -c copy`.
    Stop(stop::StopArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Bench::Load(args) => load::run(&cli.common, args).await,
        Bench::Ingest(args) => ingest::run(&cli.common, args).await,
        Bench::Range(args) => range::run(&cli.common, args).await,
        Bench::Feed(args) => feed::run(&cli.common, args).await,
        Bench::Scaleout(args) => scaleout::run(&cli.common, args).await,
        Bench::Stop(args) => stop::run(&cli.common, args).await,
    }
}
