//! Background compaction of uploads kept as pieces on an object store.
//!
//! A PATCH on an object store puts its body as one small piece (a second of video is ~300 KB,
//! an S3 part at least 5 MiB). Runs of committed pieces used to be merged at the start of the
//! next PATCH, under the upload's lock: that PATCH waited for a dozen gets, a 5 MiB put and a
//! dozen deletes before its own put, holding its lock (on PostgreSQL, a coordination
//! connection) all along, and recorders that started together reached their parts together.
//! Now the PATCH whose commit may complete a run only schedules it, and compaction runs here,
//! off the acknowledgment path, a few at a time per node.
//!
//! It takes no lock a request waits for: it touches only objects wholly below the committed
//! offset, which a writer never touches (it appends at the offset and cuts back only bytes
//! past it), and a reader lists again when an object it chose was merged away. What it must
//! not do is leave a part behind when the upload is deleted meanwhile (finalize, terminate,
//! expiry, a deleted post). A deletion first makes the upload not open, then lists and deletes
//! its objects; compaction puts its parts, then reads the upload's state again, and deletes the
//! upload's objects itself when it ended and nothing holds them (a layout media holds its
//! finalized upload's objects until it is assembled). If that read still saw it open, the
//! deletion lists after the parts were put, and deletes them. Either way nothing outlives it,
//! without a lock nested in the stop's locks (each a connection of the coordination pool).

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Semaphore;

use crate::{
    db,
    domain::{UploadId, UploadState},
    locks,
    state::AppState,
};

/// Compactions one node runs at once: each holds up to a part in memory and loads the store.
const CONCURRENT: usize = 2;

/// The slots compactions wait for.
pub fn slots() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(CONCURRENT))
}

/// Compacts the upload in the background if committing `before..after` made it worthwhile.
pub fn schedule(state: &AppState, id: &UploadId, before: u64, after: u64) {
    if !state.uploads.compaction_due(before, after) {
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
    // Held by no request: waiting for it here nests in nothing.
    let Some(_guard) = state.locks.try_lock(&locks::compaction_key(id)).await? else {
        return Ok(()); // Another compaction (maybe on another node) does the work.
    };
    let Some(committed) = open_offset(state, id).await? else {
        return Ok(());
    };
    compact_below(state, id, committed).await
}

/// Compacts the upload's pieces below `committed`, read while it was open: the upload may
/// have ended since (a stop, a deletion), which is checked after the parts are put.
pub async fn compact_below(state: &AppState, id: &UploadId, committed: u64) -> anyhow::Result<()> {
    let storage_id = id.clone();
    state
        .with_uploads(move |uploads| Ok(uploads.compact(&storage_id, committed)?))
        .await?;
    if ended_unheld(state, id).await? {
        // Deleted meanwhile: its deletion may have listed the objects before our parts.
        let storage_id = id.clone();
        state
            .with_uploads(move |uploads| Ok(uploads.delete(&storage_id)?))
            .await?;
        tracing::info!(upload = %id, "the upload ended during its compaction; its objects deleted");
    }
    Ok(())
}

/// Whether the upload ended and nothing keeps its objects: it is gone, terminated or expired,
/// or finalized into a media that does not hold them. A layout media holds its finalized
/// upload's objects (its bytes are the media's) and a failed upload's are kept for a human:
/// their new parts are theirs, and whatever deletes them later lists them.
async fn ended_unheld(state: &AppState, id: &UploadId) -> anyhow::Result<bool> {
    let Some(row) = db::uploads::get(&state.db, id).await? else {
        return Ok(true);
    };
    match row.state {
        UploadState::Open | UploadState::Failed => Ok(false),
        UploadState::Terminated | UploadState::Expired => Ok(true),
        UploadState::Finalized => {
            let layouts = db::media::layouts_of_post(&state.db, row.post_id).await?;
            let id = id.clone();
            let held = state
                .with_media(move |media| {
                    for key in layouts {
                        if media.layout_upload(&key)?.as_ref() == Some(&id) {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                })
                .await?;
            Ok(!held)
        }
    }
}

/// The committed offset of the upload while it is open.
async fn open_offset(state: &AppState, id: &UploadId) -> anyhow::Result<Option<u64>> {
    Ok(db::uploads::get(&state.db, id)
        .await?
        .filter(|row| row.state == UploadState::Open)
        .map(|row| row.offset))
}
