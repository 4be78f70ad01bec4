//! Background compaction of uploads kept as pieces on an object store.
//!
//! A PATCH on an object store puts its body as one small piece (a second of video is ~300 KB,
//! an S3 part at least 5 MiB). Runs of committed pieces used to be merged at the start of the
//! next PATCH, under the upload's lock: that PATCH waited for a dozen gets, a 5 MiB put and a
//! dozen deletes, and when many recorders reached their first part together their PATCHes
//! held their locks (on PostgreSQL, coordination connections) for seconds, and others got
//! `423 locked` (BENCHMARKS.md, finding 5). Now the PATCH whose commit completes a run only
//! schedules it, and compaction runs here, off the acknowledgment path, a few at a time per
//! node.
//!
//! It takes no upload lock: it touches only objects wholly below the committed offset, which
//! a writer never touches (it appends at the offset and cuts back only bytes past it), and a
//! reader lists again when an object it chose was merged away. What it must not overlap is
//! the deletion of the whole upload (finalize, terminate, expiry, a deleted post): a part put
//! after it would outlive the upload. Both take the upload's compaction lock, and compaction
//! runs only while the upload is still open.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Semaphore;

use crate::{db, domain::UploadId, locks, state::AppState};

/// Compactions one node runs at once: each holds up to a part in memory and loads the store.
pub const CONCURRENT: usize = 2;

/// The slots compactions wait for.
pub fn slots() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(CONCURRENT))
}

/// Compacts the upload in the background if committing `before..after` made it worthwhile.
pub fn schedule(state: &AppState, id: &UploadId, before: u64, after: u64) {
    if !state.storage.compaction_due(before, after) {
        return;
    }
    let (state, id) = (state.clone(), id.clone());
    tokio::spawn(async move {
        // Nothing is lost when it fails: the pieces stay readable, and the next one retries.
        if let Err(err) = compact(&state, &id).await {
            tracing::warn!(upload = %id, error = ?err, "compaction failed");
        }
    });
}

/// Compacts the upload's committed pieces, unless it ended or another compaction runs.
pub async fn compact(state: &AppState, id: &UploadId) -> anyhow::Result<()> {
    let _slot = state
        .compactions
        .acquire()
        .await
        .context("compaction slots closed")?;
    let Some(_guard) = state
        .locks
        .try_lock(&locks::compaction_key(id.as_str()))
        .await?
    else {
        return Ok(()); // Another compaction (maybe on another node) does the work.
    };
    let Some(row) = db::uploads::get(&state.db, id.as_str())
        .await?
        .filter(|row| row.state == "open")
    else {
        return Ok(());
    };
    let committed = u64::try_from(row.offset).unwrap_or(0);
    let id = id.clone();
    state
        .with_storage(move |s| Ok(s.compact_upload(&id, committed)?))
        .await
}

/// Deletes an upload's bytes once no compaction of it runs; the caller has made it not open.
pub async fn delete_upload(state: &AppState, id: &UploadId) -> anyhow::Result<()> {
    let _guard = state
        .locks
        .lock(&locks::compaction_key(id.as_str()))
        .await?;
    let id = id.clone();
    state.with_storage(move |s| Ok(s.delete_upload(&id)?)).await
}
