//! Test-only fault points, to prove a crash at any step of a stop or a commit loses nothing.
//!
//! `LIVEKEEP_FAULT_POINT=<name>` (read once, at the first point reached) makes the process
//! abort — no destructors, no flush, like a SIGKILL — when it reaches the point of that name;
//! `<name>@<n>` aborts the n-th time it is reached (after n − 1 passes). Points:
//! `before_rename` and `after_rename` around the move of a finalized file (or a layout) into
//! `files/`, `before_commit` just before the transaction that records the Media (and its
//! webhook) commits, `after_commit` just after (before the webhook is sent),
//! `before_offsets_commit` / `after_offsets_commit` around the commit of a batch of upload
//! offsets (their bytes synced; no PATCH of the batch answered yet), `upload_synced` between a
//! PATCH's fsync and its commit, and `index_entries_appended` after the index entries' append
//! and before the offset and states are written.
//!
//! `LIVEKEEP_FAULT_HOLD=<name>:<dir>` holds the process instead, the first time it reaches the
//! [`hold`] point of that name, until the test lets it go: a barrier that makes a race between
//! two processes happen in one order. Point: `refinalize_read`, after a refinalization read the
//! media's row and before it opens the file the row names. Both unset in production.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        OnceLock,
    },
    time::{Duration, Instant},
};

/// The armed point and the pass at which it aborts.
struct Armed {
    name: String,
    at_pass: u64,
    passes: AtomicU64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

/// Parses `<name>` or `<name>@<n>` (n ≥ 1).
fn parse(value: &str) -> Option<(String, u64)> {
    match value.split_once('@') {
        Some((name, n)) => Some((name.to_owned(), n.parse().ok().filter(|n| *n >= 1)?)),
        None => Some((value.to_owned(), 1)),
    }
}

/// Aborts the process if `LIVEKEEP_FAULT_POINT` names this point and this is its pass.
pub fn point(name: &str) {
    let armed = ARMED.get_or_init(|| {
        let value = std::env::var("LIVEKEEP_FAULT_POINT").ok()?;
        let Some((name, at_pass)) = parse(&value) else {
            panic!("LIVEKEEP_FAULT_POINT={value:?}: expected <name> or <name>@<n>, n ≥ 1");
        };
        Some(Armed {
            name,
            at_pass,
            passes: AtomicU64::new(0),
        })
    });
    let Some(armed) = armed.as_ref().filter(|armed| armed.name == name) else {
        return;
    };
    if armed.passes.fetch_add(1, Ordering::SeqCst) + 1 == armed.at_pass {
        eprintln!(
            "LIVEKEEP_FAULT_POINT={name}@{} reached: aborting",
            armed.at_pass
        );
        std::process::abort();
    }
}

/// The point a process is held at, and where it says so.
struct Hold {
    name: String,
    dir: PathBuf,
    passed: AtomicBool,
}

static HOLD: OnceLock<Option<Hold>> = OnceLock::new();

/// Longest hold: a test that never lets go fails on what follows, not by hanging.
const HOLD_MAX: Duration = Duration::from_secs(60);

/// Holds the process, the first time only, if `LIVEKEEP_FAULT_HOLD` names this point: creates
/// `<dir>/<name>.reached`, then waits until `<dir>/<name>.release` exists.
pub fn hold(name: &str) {
    let hold = HOLD.get_or_init(|| {
        let value = std::env::var("LIVEKEEP_FAULT_HOLD").ok()?;
        let Some((name, dir)) = value.split_once(':') else {
            panic!("LIVEKEEP_FAULT_HOLD={value:?}: expected <name>:<dir>");
        };
        Some(Hold {
            name: name.to_owned(),
            dir: PathBuf::from(dir),
            passed: AtomicBool::new(false),
        })
    });
    let Some(hold) = hold.as_ref().filter(|hold| hold.name == name) else {
        return;
    };
    if hold.passed.swap(true, Ordering::SeqCst) {
        return;
    }
    let release = hold.dir.join(format!("{name}.release"));
    if let Err(err) = std::fs::write(hold.dir.join(format!("{name}.reached")), b"") {
        panic!("LIVEKEEP_FAULT_HOLD: cannot say {name} is reached: {err}");
    }
    let until = Instant::now() + HOLD_MAX;
    while !release.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_is_named_alone_or_with_the_pass_that_aborts() {
        assert_eq!(
            parse("before_commit"),
            Some(("before_commit".to_owned(), 1))
        );
        assert_eq!(
            parse("after_offsets_commit@3"),
            Some(("after_offsets_commit".to_owned(), 3))
        );
        assert_eq!(parse("x@0"), None);
        assert_eq!(parse("x@two"), None);
    }
}
