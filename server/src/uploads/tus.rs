//! The tus upload state machine: creation, recovery, streaming PATCH bodies to disk.
//!
//! Invariant: the committed offset in the database never exceeds the bytes synced in the file.
//! Bytes are synced first, the offset committed second; on every access the file is cut back
//! to the committed offset, so a crash between the two loses only unacknowledged bytes.
//!
//! Each batch of a body is also fed to the upload's index and SHA-256 (`indexing/`), in the
//! blocking call that writes it, right after the write has started the disk writing back, so
//! hashing and indexing overlap the disk instead of following it (and the body's next batch
//! is received meanwhile). Their state is saved in the transaction that commits the
//! offset; a PATCH that fails after feeding any of its bytes drops this node's index, which
//! the next user restores from what was saved.

use std::{fmt::Display, future::Future, pin::pin, sync::Arc, time::Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tracing::Instrument;

use super::{compaction, sniff::looks_like_video};
use crate::{
    db::{
        self,
        offsets::OffsetCommit,
        uploads::{IndexSave, UploadRow},
        users::UserRow,
    },
    domain::{now_millis, PostId, UploadChecksum, UploadId, UploadState},
    indexing::{self, Shared},
    locks::{self, LockError, LockGuard},
    metrics::{Metrics, PatchStage},
    posts::{self, LiveAccessError},
    state::AppState,
    storage::{PreviousWriter, StorageError, UploadStore, UploadWriter},
};

/// Bytes received from the body before they are handed to disk in one write: few syscalls,
/// bounded memory (a batch being written, the next being received).
const WRITE_BATCH: usize = 1 << 20;

/// How long a PATCH waits for another one on the same upload before answering 423.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why an upload cannot be created or used by the caller.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The live to upload for is missing or another user's.
    #[error(transparent)]
    Live(#[from] LiveAccessError),
    /// The live to upload for has ended.
    #[error("this live has ended")]
    LiveEnded,
    /// `Upload-Length` is over the server's maximum.
    #[error("Upload-Length exceeds the maximum of {0} bytes")]
    LengthOverMax(u64),
    /// No such upload (or it was terminated).
    #[error("not found")]
    NotFound,
    /// The upload is another user's.
    #[error("this belongs to another user")]
    Forbidden,
    /// The upload stayed silent past its expiry.
    #[error("this upload has expired")]
    Expired,
    /// The upload's live has ended: it accepts no more bytes.
    #[error("this live has ended; its upload accepts no more bytes")]
    Closed,
    /// The database, the storage or a lock failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for UploadError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(err.into())
    }
}

/// Why a PATCH stored nothing (its bytes, if any arrived, were cut off again).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The upload cannot be used.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// Another PATCH of this upload is running.
    #[error("another request is writing this upload")]
    Locked,
    /// `Upload-Offset` is not the offset the server holds.
    #[error("Upload-Offset is {sent}, the upload holds {held} bytes")]
    OffsetMismatch {
        /// The client's `Upload-Offset`.
        sent: u64,
        /// The committed offset.
        held: u64,
    },
    /// `Upload-Length` was set before.
    #[error("Upload-Length was already set and cannot be set again")]
    LengthAlreadySet,
    /// `Upload-Length` is below the bytes already held.
    #[error("Upload-Length is smaller than the bytes already received")]
    LengthBelowOffset,
    /// The body is over the per-PATCH maximum.
    #[error("a PATCH body may hold at most {0} bytes")]
    BodyOverMax(u64),
    /// The body would take the upload past its length or the server's maximum.
    #[error("the upload may hold at most {0} bytes")]
    UploadFull(u64),
    /// The body sent nothing for the idle timeout.
    #[error("the body stalled; resume with HEAD")]
    BodyStalled,
    /// Reading the body failed (the connection broke).
    #[error("reading the body failed: {0}")]
    BodyInterrupted(String),
    /// The first bytes are neither WebM nor MP4.
    #[error("the recording must be WebM (EBML) or MP4 (ftyp); these bytes are neither")]
    NotVideo,
    /// The body does not match its `Upload-Checksum`.
    #[error("the chunk does not match its Upload-Checksum; it was discarded")]
    ChecksumMismatch,
}

impl From<anyhow::Error> for PatchError {
    fn from(err: anyhow::Error) -> Self {
        Self::Upload(UploadError::Internal(err))
    }
}

impl From<sqlx::Error> for PatchError {
    fn from(err: sqlx::Error) -> Self {
        Self::Upload(err.into())
    }
}

/// An upload the caller may act on, with its file reconciled to the committed offset.
#[derive(Debug, Clone)]
pub struct OpenUpload {
    /// Its row.
    pub row: UploadRow,
    /// Committed offset, equal to the file length.
    pub offset: u64,
}

/// What a PATCH asks for, parsed from its headers.
#[derive(Debug, Clone)]
pub struct Patch {
    /// `Upload-Offset`.
    pub offset: u64,
    /// `Upload-Length`, when the length was deferred until now.
    pub length: Option<u64>,
    /// `Upload-Checksum` of this body.
    pub checksum: Option<UploadChecksum>,
    /// `Content-Length`, when the client sent one.
    pub content_length: Option<u64>,
}

/// What a stored PATCH leaves.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    /// The new committed offset.
    pub offset: u64,
    /// When the upload now expires (Unix ms).
    pub expires_at: i64,
}

fn expiry_from(state: &AppState, now: i64) -> i64 {
    let expiry = i64::try_from(state.settings.upload_expiry.as_millis()).unwrap_or(i64::MAX);
    now.saturating_add(expiry)
}

/// Creates an upload for the caller's live; `length` is `None` when deferred.
pub async fn create(
    state: &AppState,
    user: &UserRow,
    post_id: PostId,
    length: Option<u64>,
) -> Result<UploadRow, UploadError> {
    let max = state.settings.max_upload_size;
    if length.is_some_and(|len| len > max) {
        return Err(UploadError::LengthOverMax(max));
    }
    let post = posts::owned_live(&state.db, user, post_id).await?;
    if !post.is_in_progress() {
        return Err(UploadError::LiveEnded);
    }
    let id = UploadId::generate();
    let now = now_millis();
    let storage_id = id.clone();
    state
        .with_uploads(move |uploads| Ok(uploads.create(&storage_id)?))
        .await?;
    let expires_at = expiry_from(state, now);
    let inserted =
        db::uploads::insert(&state.db, &id, user.id, post_id, length, now, expires_at).await;
    if let Err(err) = inserted {
        let storage_id = id.clone();
        // No row, so the empty file would be an orphan.
        let _ = state
            .with_uploads(move |uploads| Ok(uploads.delete(&storage_id)?))
            .await;
        return Err(err.into());
    }
    tracing::info!(upload = %id, post = %post_id, length, "upload created");
    let row = db::uploads::get(&state.db, &id)
        .await?
        .context("reading back a new upload")?;
    Ok(row)
}

/// Loads an upload for `user`, refusing others' (403), ended ones (410) and unknown ones (404),
/// and reconciles its file with the committed offset.
///
/// The caller must hold the upload's lock: reconciling cuts bytes a writer may be adding.
pub async fn open(
    state: &AppState,
    user: &UserRow,
    id: &UploadId,
) -> Result<OpenUpload, UploadError> {
    let row = check(state, user, id).await?;
    let offset = reconcile(state, &row).await?;
    Ok(OpenUpload { row, offset })
}

/// The upload's state for HEAD: reconciled when no PATCH is running, else the committed offset.
pub async fn status(
    state: &AppState,
    user: &UserRow,
    id: &UploadId,
) -> Result<OpenUpload, UploadError> {
    match state.locks.try_lock(&locks::upload_key(id)).await? {
        Some(_guard) => open(state, user, id).await,
        None => {
            let row = check(state, user, id).await?;
            let offset = row.offset;
            Ok(OpenUpload { row, offset })
        }
    }
}

/// Finds an upload and checks that `user` may use it now.
async fn check(state: &AppState, user: &UserRow, id: &UploadId) -> Result<UploadRow, UploadError> {
    let row = db::uploads::get(&state.db, id)
        .await?
        .ok_or(UploadError::NotFound)?;
    admit(user, row)
}

/// Checks that `user` may use the upload of `row` now.
fn admit(user: &UserRow, row: UploadRow) -> Result<UploadRow, UploadError> {
    if row.owner_id != user.id {
        return Err(UploadError::Forbidden);
    }
    match row.state {
        UploadState::Open if row.expires_at < now_millis() => Err(UploadError::Expired),
        UploadState::Open => Ok(row),
        UploadState::Terminated => Err(UploadError::NotFound),
        UploadState::Expired => Err(UploadError::Expired),
        UploadState::Finalized | UploadState::Failed => Err(UploadError::Closed),
    }
}

/// Reconciles every open upload with its file, at start-up, before any request is served.
pub async fn recover_all(state: &AppState) -> anyhow::Result<()> {
    for row in db::uploads::open_uploads(&state.db).await? {
        // Another node writing it now reconciles it itself; cutting its file here would race.
        let Some(_guard) = state.locks.try_lock(&locks::upload_key(&row.id)).await? else {
            continue;
        };
        // Re-read under the lock: the offset may have moved since the list was read.
        let Some(row) = db::uploads::get(&state.db, &row.id)
            .await?
            .filter(|row| row.state == UploadState::Open)
        else {
            continue;
        };
        let offset = reconcile(state, &row)
            .await
            .with_context(|| format!("recovering upload {}", row.id))?;
        if row.offset != offset {
            tracing::warn!(upload = %row.id, committed = row.offset, offset, "recovered an upload");
        }
    }
    Ok(())
}

/// Makes the file and the committed offset agree, and returns that offset.
///
/// A file longer than the offset holds bytes never acknowledged: they are cut off. A file
/// shorter than the offset (lost writes) lowers the offset, so the client resends.
pub async fn reconcile(state: &AppState, row: &UploadRow) -> anyhow::Result<u64> {
    reconcile_with(state, row, None).await
}

/// [`reconcile`] for a stop, under the upload's lock: an object store lists the upload's
/// objects only when this node does not know where they end, as for a PATCH (the node that
/// put the last piece knows, and nothing lies past it), instead of always.
pub async fn reconcile_to_stop(state: &AppState, row: &UploadRow) -> anyhow::Result<u64> {
    let previous = match row.writer.as_deref() {
        Some(writer) if writer == &*state.node => PreviousWriter::ThisNode,
        None if row.offset == 0 => PreviousWriter::Nobody,
        _ => PreviousWriter::Another,
    };
    reconcile_with(state, row, Some(previous)).await
}

async fn reconcile_with(
    state: &AppState,
    row: &UploadRow,
    previous: Option<PreviousWriter>,
) -> anyhow::Result<u64> {
    let committed = row.offset;
    let storage_id = row.id.clone();
    let held = state
        .with_uploads(move |uploads| {
            Ok(match previous {
                Some(previous) => uploads.reconcile_for_append(&storage_id, committed, previous)?,
                None => uploads.reconcile(&storage_id, committed)?,
            })
        })
        .await?;
    if held < committed {
        tracing::warn!(upload = %row.id, committed, held, "upload file shorter than its offset");
        db::uploads::lower_offset(&state.db, &row.id, held).await?;
        // The saved index describes bytes that are gone: it is rebuilt from those held.
        db::uploads::clear_index(&state.db, &row.id).await?;
        state.indexes.forget(&row.id);
    }
    Ok(held)
}

/// Makes this node the upload's writer if another node wrote it last (or none yet), before
/// anything is stored; returns the row as it now is and who wrote it before. The caller
/// holds the upload's lock.
async fn claim_writing(
    state: &AppState,
    user: &UserRow,
    row: UploadRow,
) -> Result<(UploadRow, PreviousWriter), UploadError> {
    if row.writer.as_deref() == Some(&*state.node) {
        return Ok((row, PreviousWriter::ThisNode));
    }
    // No writer and nothing committed: no node ever stored any of it, and none can have a put
    // on its way (`storage/object.rs` then lists nothing). Bytes committed without a writer
    // (an upload from before writers were recorded) count as another node's.
    let previous = if row.writer.is_none() && row.offset == 0 {
        PreviousWriter::Nobody
    } else {
        PreviousWriter::Another
    };
    let claimed = state
        .offsets
        .claim(row, &state.node)
        .await?
        .ok_or(UploadError::NotFound)?;
    Ok((admit(user, claimed)?, previous))
}

/// Cuts the file back to the committed offset after a failed PATCH, if the upload is still
/// this PATCH's: once its lock went with its database session, another node may be writing the
/// upload, and cutting would delete that node's pieces. What is left past the offset then
/// goes at the next reconciliation.
async fn rollback_to(state: &AppState, guard: &mut LockGuard, id: &UploadId, offset: u64) {
    if let Err(err) = guard.ensure_held().await {
        tracing::warn!(upload = %id, error = %err, "a failed PATCH is not rolled back: its lock is gone");
        return;
    }
    let storage_id = id.clone();
    let result = state
        .with_uploads(move |uploads| Ok(uploads.truncate(&storage_id, offset)?))
        .await;
    if let Err(err) = result {
        // Not fatal: the next access reconciles the file with the committed offset again.
        tracing::error!(upload = %id, error = ?err, "could not roll back a failed PATCH");
    }
}

/// Whether a PATCH failed because the object store did not answer.
fn store_unavailable(err: &PatchError) -> bool {
    let PatchError::Upload(UploadError::Internal(err)) = err else {
        return false;
    };
    err.chain().any(|cause| {
        cause
            .downcast_ref::<StorageError>()
            .is_some_and(StorageError::is_unavailable)
    })
}

/// Runs one step of a PATCH in a span of its own and records how long it took
/// (`livekeep_patch_stage_seconds`), to show where acknowledgment time goes.
async fn stage<T>(state: &AppState, stage: PatchStage, step: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let span = tracing::debug_span!("patch_stage", stage = stage.name());
    let out = step.instrument(span).await;
    state.metrics.patch_stage(stage, started.elapsed());
    out
}

/// An upload file holds fewer bytes than its committed offset (some were lost in a crash):
/// nothing was written, the offset must come down to `held`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the upload holds {held} bytes, fewer than its committed offset")]
struct FileShorter {
    held: u64,
}

/// The upload to open at the first append.
struct Unopened {
    uploads: Arc<dyn UploadStore>,
    id: UploadId,
    /// Who wrote the upload before this PATCH (`UploadStore::reopen`).
    previous: PreviousWriter,
    metrics: Arc<Metrics>,
}

/// A PATCH body on its way to storage: batches of received chunks are appended off the async
/// workers, one at a time and in order, while the next batch is being received. The first
/// append reconciles the upload with the committed offset and opens it in the same call: one
/// hand-off to the blocking pool for a small PATCH.
struct BodyWriter {
    /// The upload, until the first append opens it.
    unopened: Option<Unopened>,
    /// Where the body starts: the committed offset.
    start: u64,
    /// The writer, when no append holds it.
    idle: Option<Box<dyn UploadWriter>>,
    /// The append under way, which hands the writer back.
    running: Option<tokio::task::JoinHandle<anyhow::Result<Box<dyn UploadWriter>>>>,
    /// The upload's index and SHA-256, fed each batch after its write.
    index: Shared,
    /// Where the next batch starts in the upload.
    fed_to: u64,
}

impl BodyWriter {
    fn new(
        state: &AppState,
        id: UploadId,
        start: u64,
        previous: PreviousWriter,
        index: Shared,
    ) -> Self {
        Self {
            unopened: Some(Unopened {
                uploads: Arc::clone(&state.uploads),
                id,
                previous,
                metrics: Arc::clone(&state.metrics),
            }),
            start,
            idle: None,
            running: None,
            index,
            fed_to: start,
        }
    }

    /// Whether an append may have written bytes (which a failure must cut back).
    fn touched(&self) -> bool {
        self.unopened.is_none()
    }

    /// Waits for the append under way; the writer is idle after it, unless it failed.
    async fn settle(&mut self) -> anyhow::Result<()> {
        if let Some(running) = self.running.take() {
            self.idle = Some(running.await.context("an append task")??);
        }
        Ok(())
    }

    /// Starts appending `chunks`, feeding them to the index, and syncing them when `sync`, once
    /// the previous append is done.
    ///
    /// One blocking call does all three: a hand-off to another thread per PATCH costs more
    /// than it overlaps once the cores are busy (bench/findings.md, finding 11). The index is
    /// fed after the write, which has started the disk writing back, and before the sync.
    async fn append(&mut self, chunks: Vec<Bytes>, sync: bool) -> anyhow::Result<()> {
        self.settle().await?;
        let opened = self.idle.take();
        let unopened = self.unopened.take();
        let start = self.start;
        let (index, fed_at) = (Arc::clone(&self.index), self.fed_to);
        self.fed_to += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
        self.running = Some(tokio::task::spawn_blocking(move || {
            let mut writer = match (opened, unopened) {
                (Some(writer), _) => writer,
                (None, Some(upload)) => {
                    let began = Instant::now();
                    let (held, writer) =
                        upload.uploads.reopen(&upload.id, start, upload.previous)?;
                    upload
                        .metrics
                        .patch_stage(PatchStage::Reconcile, began.elapsed());
                    if held != start {
                        return Err(FileShorter { held }.into());
                    }
                    writer
                }
                (None, None) => anyhow::bail!("the upload writer was lost"),
            };
            if !chunks.is_empty() {
                writer.write_chunks(&chunks)?;
                let mut index = indexing::lock(&index);
                let mut at = fed_at;
                for chunk in &chunks {
                    index.feed(at, chunk)?;
                    at += chunk.len() as u64;
                }
            }
            if sync {
                writer.sync()?;
            }
            Ok(writer)
        }));
        Ok(())
    }

    /// Appends the last `chunks` and syncs them (or puts the piece): the bytes are durable.
    async fn finish(&mut self, chunks: Vec<Bytes>) -> anyhow::Result<()> {
        self.append(chunks, true).await?;
        self.settle().await
    }
}

/// Applies one PATCH: checks, streams the body to storage, syncs, commits the new offset.
///
/// On any failure the upload is cut back to where it was (while this PATCH holds its lock).
pub async fn append<E: Display>(
    state: &AppState,
    user: &UserRow,
    id: &UploadId,
    patch: Patch,
    body: impl Stream<Item = Result<Bytes, E>>,
) -> Result<Appended, PatchError> {
    // When the chunk reached the server, before its body, sync and commit: what dates a live's
    // recording (its media time 0) if this is the first chunk.
    let arrived_at = now_millis();
    // A client that just lost a connection may resume before the server has noticed the old
    // PATCH is dead: wait a little for its rollback rather than fail at once.
    let key = locks::upload_key(id);
    let mut guard = stage(
        state,
        PatchStage::Lock,
        state.locks.lock_timeout(&key, LOCK_WAIT),
    )
    .await?
    .ok_or(PatchError::Locked)?;
    let checked = async {
        let row = check(state, user, id).await?;
        claim_writing(state, user, row).await
    };
    let (row, previous) = stage(state, PatchStage::Check, checked).await?;
    // The upload is reconciled with this offset when the first bytes are written, in the same
    // blocking call (`BodyWriter`).
    let start = row.offset;
    let upload = OpenUpload { row, offset: start };
    if patch.offset != start {
        return Err(PatchError::OffsetMismatch {
            sent: patch.offset,
            held: start,
        });
    }
    let known_length = upload.row.length;
    if let Some(new_length) = patch.length {
        if known_length.is_some() {
            return Err(PatchError::LengthAlreadySet);
        }
        if new_length < start {
            return Err(PatchError::LengthBelowOffset);
        }
    }
    let length = known_length.or(patch.length);
    let limit = length
        .unwrap_or(u64::MAX)
        .min(state.settings.max_upload_size);
    let too_large = |received: u64| -> Option<PatchError> {
        if received > state.settings.max_patch_size {
            Some(PatchError::BodyOverMax(state.settings.max_patch_size))
        } else if start.saturating_add(received) > limit {
            Some(PatchError::UploadFull(limit))
        } else {
            None
        }
    };
    if let Some(err) = patch.content_length.and_then(too_large) {
        return Err(err);
    }
    if let Some(new_length) = patch.length {
        let max = state.settings.max_upload_size;
        if new_length > max {
            return Err(UploadError::LengthOverMax(max).into());
        }
    }

    let index = indexing::ready(
        &state.db,
        Arc::clone(&state.uploads),
        &state.indexes,
        id,
        start,
        indexing::Use::Append,
    )
    .await?;
    let mut writer = BodyWriter::new(state, id.clone(), start, previous, Arc::clone(&index));
    let stored = async {
        let (written, last) =
            receive_body(state, start, &patch, body, &too_large, &mut writer).await?;
        // Nothing may still be writing when the lock is checked, or the upload cut back.
        writer.settle().await?;
        // Nothing is stored once the lock went with its database session: another node may
        // be writing the upload (what this PATCH wrote, if anything, is left to that node's
        // reconciliation).
        stage(state, PatchStage::LockCheck, guard.ensure_held()).await?;
        // The 204 promises durability: sync (or put the piece) before the offset is committed.
        stage(state, PatchStage::Store, writer.finish(last)).await?;
        Ok::<_, PatchError>(written)
    };
    let written = match stored.await {
        Ok(written) => written,
        Err(err) => return Err(fail_stored(state, &mut guard, &mut writer, id, &patch, err).await),
    };
    crate::fault::point("upload_synced");
    let save = indexing::lock(&index).save();

    let new_offset = start + written;
    let now = now_millis();
    let expires_at = expiry_from(state, now);
    let commit = OffsetCommit {
        id: id.clone(),
        writer: Arc::clone(&state.node),
        from: start,
        offset: new_offset,
        length: patch.length,
        now,
        expires_at,
        index: IndexSave {
            state: save.state,
            sha256: save.sha256,
            entries_start: save.entries_start,
            entries: save.entries,
        },
    };
    // Once queued, the commit lands even if this PATCH is dropped (its client gone): the lock
    // stays held until it has, so no other PATCH reads the offset it is about to replace.
    let task_state = state.clone();
    let (committed, guard) = stage(
        state,
        PatchStage::Commit,
        tokio::spawn(async move {
            let upload = commit.id.clone();
            let committed = task_state.offsets.commit(commit).await;
            if !matches!(committed, Ok(true)) {
                task_state.indexes.forget(&upload);
            }
            if committed.is_err() {
                rollback_to(&task_state, &mut guard, &upload, start).await;
            }
            (committed, guard)
        }),
    )
    .await
    .context("waiting for the offset's commit")?;
    let _guard = guard;
    // Not moved: another node claimed the upload since this PATCH began (its lock went with
    // its session). The upload is that node's now; nothing here is committed or rolled back.
    if !committed.context("committing the upload's offset")? {
        return Err(UploadError::Internal(LockError::Lost(key).into()).into());
    }
    state.metrics.ingested(written);
    tracing::info!(upload = %id, offset = start, bytes = written, "chunk stored");
    // Still under the upload's lock: the live cannot have ended since.
    let announced = crate::live::committed(state, upload.row.post_id, id, new_offset, arrived_at);
    stage(state, PatchStage::Announce, announced).await;
    compaction::schedule(state, id, start, new_offset);
    Ok(Appended {
        offset: new_offset,
        expires_at,
    })
}

/// What a PATCH whose body was not stored answers, once the upload is left as it was: bytes
/// lost below the committed offset lower it (409, the client resends them); bytes written
/// are cut back, unless the store did not answer (the next access reconciles the upload).
async fn fail_stored(
    state: &AppState,
    guard: &mut LockGuard,
    writer: &mut BodyWriter,
    id: &UploadId,
    patch: &Patch,
    err: PatchError,
) -> PatchError {
    let start = patch.offset;
    // Nothing may still be writing when the upload is cut back.
    let settled = writer.settle().await;
    // The index may have been fed bytes that are not committed: the next user restores it.
    state.indexes.forget(id);
    let shorter = match &err {
        PatchError::Upload(UploadError::Internal(err)) => {
            err.downcast_ref::<FileShorter>().copied()
        }
        _ => None,
    };
    if let Some(FileShorter { held }) = shorter {
        // Bytes were lost below the committed offset (a crash): the client resends them.
        tracing::warn!(upload = %id, committed = start, file_len = held, "upload file shorter than its offset");
        let lowered = async {
            db::uploads::lower_offset(&state.db, id, held).await?;
            // The saved index describes bytes that are gone: it is rebuilt from those held.
            db::uploads::clear_index(&state.db, id).await
        };
        if let Err(lowering) = lowered.await {
            return lowering.into();
        }
        return PatchError::OffsetMismatch {
            sent: patch.offset,
            held,
        };
    }
    if writer.touched() && (settled.is_err() || !store_unavailable(&err)) {
        rollback_to(state, guard, id, start).await;
    }
    err
}

/// Receives the body, handing all but its last batch to `writer`; returns the body's length
/// and that last batch, which is stored with the sync once the lock is checked.
async fn receive_body<E: Display>(
    state: &AppState,
    start: u64,
    patch: &Patch,
    body: impl Stream<Item = Result<Bytes, E>>,
    too_large: &(dyn Fn(u64) -> Option<PatchError> + Sync),
    writer: &mut BodyWriter,
) -> Result<(u64, Vec<Bytes>), PatchError> {
    let body_started = Instant::now();
    let mut hasher = patch.checksum.as_ref().map(UploadChecksum::hasher);
    let mut head: Vec<u8> = Vec::new();
    let mut sniffed = start > 0;
    let mut received: u64 = 0;
    // The chunks as they came off the network: written as they are, never gathered by a copy.
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;
    let mut body = pin!(body);
    loop {
        // A stalled body must not hold the upload's lock forever; its bytes are rolled back
        // and the client resumes with HEAD like after any network failure.
        let next = tokio::time::timeout(state.settings.patch_idle_timeout, body.next())
            .await
            .map_err(|_| PatchError::BodyStalled)?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|err| PatchError::BodyInterrupted(err.to_string()))?;
        received += chunk.len() as u64;
        if let Some(err) = too_large(received) {
            return Err(err);
        }
        if !sniffed {
            head.extend(chunk.iter().take(8 - head.len().min(8)));
            match looks_like_video(&head) {
                Some(true) => sniffed = true,
                Some(false) => return Err(PatchError::NotVideo),
                None => {}
            }
        }
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(&chunk);
        }
        batched += chunk.len();
        batch.push(chunk);
        if batched >= WRITE_BATCH {
            // The checksum is not known yet: these bytes are cut back if it fails.
            writer.append(std::mem::take(&mut batch), false).await?;
            batched = 0;
        }
    }
    if !sniffed && received > 0 && looks_like_video(&head) != Some(true) {
        return Err(PatchError::NotVideo);
    }
    if let (Some(checksum), Some(hasher)) = (patch.checksum.as_ref(), hasher) {
        if !checksum.matches(hasher) {
            return Err(PatchError::ChecksumMismatch);
        }
    }
    state
        .metrics
        .patch_stage(PatchStage::Body, body_started.elapsed());
    Ok((received, batch))
}

/// Terminates an upload (tus `termination`): its bytes are deleted.
pub async fn terminate(state: &AppState, user: &UserRow, id: &UploadId) -> Result<(), UploadError> {
    let _guard = state.locks.lock(&locks::upload_key(id)).await?;
    open(state, user, id).await?;
    db::uploads::set_state(&state.db, id, UploadState::Terminated).await?;
    let storage_id = id.clone();
    state
        .with_uploads(move |uploads| Ok(uploads.delete(&storage_id)?))
        .await?;
    Ok(())
}
