//! Logging setup: `RUST_LOG` filters, one line per request from the trace layer, written to
//! stderr in batches ([`batched`]).

pub mod batched;

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

pub use batched::FlushGuard;

/// Installs the global subscriber (logs to stderr so stdout carries only the URL line). Hold
/// the guard until the process ends: dropping it writes out the lines still buffered.
pub fn init() -> FlushGuard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let (writer, guard) = batched::BatchedWriter::new(std::io::stderr());
    // A second init (tests in one process) is harmless, so its error is ignored.
    let _ = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer)
        .try_init();
    guard
}
