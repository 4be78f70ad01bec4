//! Test-only fault points, to prove a crash at any step of a stop loses nothing.
//!
//! `LIVEKEEP_FAULT_POINT=<name>` (read once, at the first point reached) makes the process
//! abort — no destructors, no flush, like a SIGKILL — when it reaches the point of that name:
//! `before_rename` and `after_rename` around the move of a finalized file into `files/`,
//! `before_commit` just before the transaction that records the Media. Unset in production.

use std::sync::OnceLock;

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Aborts the process if `LIVEKEEP_FAULT_POINT` names this point.
pub fn point(name: &str) {
    let armed = ARMED.get_or_init(|| std::env::var("LIVEKEEP_FAULT_POINT").ok());
    if armed.as_deref() == Some(name) {
        eprintln!("LIVEKEEP_FAULT_POINT={name} reached: aborting");
        std::process::abort();
    }
}
