//! The tus upload state machine: creation, recovery, streaming PATCH bodies to disk.
//!
//! Invariant: the committed offset in the database never exceeds the bytes synced in the file.
//! Bytes are synced first, the offset committed second; on every access the file is cut back
//! to the committed offset, so a crash between the two loses only unacknowledged bytes.

use anyhow::Context;
use axum::body::Body;
use futures_util::StreamExt;

use crate::{
    compaction,
    db::{self, uploads::UploadRow, users::UserRow},
    domain::{now_millis, UploadChecksum, UploadId},
    error::ApiError,
    finalize::looks_like_video,
    locks,
    state::AppState,
    storage::UploadWriter,
};

/// Bytes gathered from the body before one write to disk: few syscalls, bounded memory.
const WRITE_BATCH: usize = 1 << 20;

/// How long a PATCH waits for another one on the same upload before answering 423.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// An upload the caller may act on, with its file reconciled to the committed offset.
#[derive(Debug, Clone)]
pub struct OpenUpload {
    /// Its id.
    pub id: UploadId,
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

fn expiry_from(state: &AppState, now: i64) -> i64 {
    let expiry = i64::try_from(state.settings.upload_expiry.as_millis()).unwrap_or(i64::MAX);
    now.saturating_add(expiry)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Creates an upload for the caller's live; `length` is `None` when deferred.
pub async fn create(
    state: &AppState,
    user: &UserRow,
    post_id: i64,
    length: Option<u64>,
) -> Result<UploadRow, ApiError> {
    if length.is_some_and(|len| len > state.settings.max_upload_size) {
        return Err(ApiError::TooLarge(format!(
            "Upload-Length exceeds the maximum of {} bytes",
            state.settings.max_upload_size
        )));
    }
    let post = db::posts::get(&state.db, post_id)
        .await?
        .filter(|post| post.is_live)
        .ok_or(ApiError::NotFound)?;
    if post.author_id != user.id {
        return Err(ApiError::Forbidden);
    }
    if post.live_status.as_deref() != Some("live") {
        return Err(ApiError::gone("live_ended", "this live has ended"));
    }
    let id = UploadId::generate();
    let now = now_millis();
    let storage_id = id.clone();
    state
        .with_storage(move |s| Ok(s.create_upload(&storage_id)?))
        .await?;
    let expires_at = expiry_from(state, now);
    let inserted = db::uploads::insert(
        &state.db,
        id.as_str(),
        user.id,
        post_id,
        length.map(to_i64),
        now,
        expires_at,
    )
    .await;
    if let Err(err) = inserted {
        let storage_id = id.clone();
        // No row, so the empty file would be an orphan.
        let _ = state
            .with_storage(move |s| Ok(s.delete_upload(&storage_id)?))
            .await;
        return Err(err.into());
    }
    tracing::info!(upload = %id, post = post_id, length, "upload created");
    db::uploads::get(&state.db, id.as_str())
        .await?
        .context("reading back a new upload")
        .map_err(ApiError::from)
}

/// Loads an upload for `user`, refusing others' (403), ended ones (410) and unknown ones (404),
/// and reconciles its file with the committed offset.
///
/// The caller must hold the upload's lock: reconciling cuts bytes a writer may be adding.
pub async fn open(state: &AppState, user: &UserRow, raw_id: &str) -> Result<OpenUpload, ApiError> {
    let (id, row) = check(state, user, raw_id).await?;
    let offset = reconcile(state, &id, &row).await?;
    Ok(OpenUpload { id, row, offset })
}

/// The upload's state for HEAD: reconciled when no PATCH is running, else the committed offset.
pub async fn status(
    state: &AppState,
    user: &UserRow,
    raw_id: &str,
) -> Result<OpenUpload, ApiError> {
    let id = UploadId::parse(raw_id).map_err(|_| ApiError::NotFound)?;
    match state
        .locks
        .try_lock(&locks::upload_key(id.as_str()))
        .await?
    {
        Some(_guard) => open(state, user, raw_id).await,
        None => {
            let (id, row) = check(state, user, raw_id).await?;
            let offset = to_u64(row.offset);
            Ok(OpenUpload { id, row, offset })
        }
    }
}

/// Finds an upload and checks that `user` may use it now.
async fn check(
    state: &AppState,
    user: &UserRow,
    raw_id: &str,
) -> Result<(UploadId, UploadRow), ApiError> {
    let id = UploadId::parse(raw_id).map_err(|_| ApiError::NotFound)?;
    let row = db::uploads::get(&state.db, id.as_str())
        .await?
        .ok_or(ApiError::NotFound)?;
    if row.owner_id != user.id {
        return Err(ApiError::Forbidden);
    }
    match row.state.as_str() {
        "open" if row.expires_at < now_millis() => {
            return Err(ApiError::gone("upload_expired", "this upload has expired"))
        }
        "open" => {}
        "terminated" => return Err(ApiError::NotFound),
        "expired" => return Err(ApiError::gone("upload_expired", "this upload has expired")),
        _ => {
            return Err(ApiError::gone(
                "upload_closed",
                "this live has ended; its upload accepts no more bytes",
            ))
        }
    }
    Ok((id, row))
}

/// Reconciles every open upload with its file, at start-up, before any request is served.
pub async fn recover_all(state: &AppState) -> anyhow::Result<()> {
    for row in db::uploads::open_uploads(&state.db).await? {
        let Ok(id) = UploadId::parse(&row.id) else {
            continue;
        };
        // Another node writing it now reconciles it itself; cutting its file here would race.
        let Some(_guard) = state.locks.try_lock(&locks::upload_key(&row.id)).await? else {
            continue;
        };
        // Re-read under the lock: the offset may have moved since the list was read.
        let Some(row) = db::uploads::get(&state.db, &row.id)
            .await?
            .filter(|row| row.state == "open")
        else {
            continue;
        };
        let offset = reconcile(state, &id, &row)
            .await
            .map_err(|err| anyhow::anyhow!("recovering upload {id}: {err:?}"))?;
        if to_u64(row.offset) != offset {
            tracing::warn!(upload = %id, committed = row.offset, offset, "recovered an upload");
        }
    }
    Ok(())
}

/// Makes the file and the committed offset agree, and returns that offset.
///
/// A file longer than the offset holds bytes never acknowledged: they are cut off. A file
/// shorter than the offset (lost writes) lowers the offset, so the client resends.
pub async fn reconcile(state: &AppState, id: &UploadId, row: &UploadRow) -> Result<u64, ApiError> {
    let committed = to_u64(row.offset);
    let storage_id = id.clone();
    let file_len = state
        .with_storage(move |s| {
            match s.upload_len(&storage_id)? {
                Some(len) if len > committed => {
                    s.truncate_upload(&storage_id, committed)?;
                    Ok(committed)
                }
                Some(len) => Ok(len),
                None => {
                    // The file vanished; start over rather than point past nothing.
                    s.create_upload(&storage_id)?;
                    Ok(0)
                }
            }
        })
        .await?;
    if file_len < committed {
        tracing::warn!(upload = %id, committed, file_len, "upload file shorter than its offset");
        db::uploads::lower_offset(&state.db, id.as_str(), to_i64(file_len)).await?;
    }
    Ok(file_len)
}

/// Cuts the file back to the committed offset after a failed PATCH.
async fn rollback_to(state: &AppState, id: &UploadId, offset: u64) {
    let storage_id = id.clone();
    let result = state
        .with_storage(move |s| Ok(s.truncate_upload(&storage_id, offset)?))
        .await;
    if let Err(err) = result {
        // Not fatal: the next access reconciles the file with the committed offset again.
        tracing::error!(upload = %id, error = ?err, "could not roll back a failed PATCH");
    }
}

/// Appends a batch (and optionally syncs) off the async workers, handing the writer back.
async fn write_batch(
    writer: Box<dyn UploadWriter>,
    batch: Vec<u8>,
    sync: bool,
) -> anyhow::Result<Box<dyn UploadWriter>> {
    tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        if !batch.is_empty() {
            writer.write(&batch)?;
        }
        if sync {
            writer.sync()?;
        }
        Ok::<_, anyhow::Error>(writer)
    })
    .await?
}

/// Applies one PATCH: checks, streams the body to disk, syncs, commits the new offset.
///
/// Returns the new offset and expiry. On any failure the file is cut back to where it was.
pub async fn append(
    state: &AppState,
    user: &UserRow,
    raw_id: &str,
    patch: Patch,
    body: Body,
) -> Result<(u64, i64), ApiError> {
    let id = UploadId::parse(raw_id).map_err(|_| ApiError::NotFound)?;
    // A client that just lost a connection may resume before the server has noticed the old
    // PATCH is dead: wait a little for its rollback rather than fail at once.
    let mut guard = state
        .locks
        .lock_timeout(&locks::upload_key(id.as_str()), LOCK_WAIT)
        .await?
        .ok_or(ApiError::Locked)?;
    let upload = open(state, user, raw_id).await?;
    let start = upload.offset;
    if patch.offset != start {
        return Err(ApiError::conflict(
            "offset_mismatch",
            format!(
                "Upload-Offset is {}, the upload holds {start} bytes",
                patch.offset
            ),
        ));
    }
    let known_length = upload.row.length.map(to_u64);
    if let Some(new_length) = patch.length {
        if known_length.is_some() {
            return Err(ApiError::bad_request(
                "length_already_set",
                "Upload-Length was already set and cannot be set again",
            ));
        }
        if new_length < start {
            return Err(ApiError::bad_request(
                "invalid_length",
                "Upload-Length is smaller than the bytes already received",
            ));
        }
    }
    let length = known_length.or(patch.length);
    let limit = length
        .unwrap_or(u64::MAX)
        .min(state.settings.max_upload_size);
    let too_large = |received: u64| -> Option<ApiError> {
        if received > state.settings.max_patch_size {
            Some(ApiError::TooLarge(format!(
                "a PATCH body may hold at most {} bytes",
                state.settings.max_patch_size
            )))
        } else if start.saturating_add(received) > limit {
            Some(ApiError::TooLarge(format!(
                "the upload may hold at most {limit} bytes"
            )))
        } else {
            None
        }
    };
    if let Some(err) = patch.content_length.and_then(too_large) {
        return Err(err);
    }
    if let Some(new_length) = patch.length {
        if new_length > state.settings.max_upload_size {
            return Err(ApiError::TooLarge(format!(
                "Upload-Length exceeds the maximum of {} bytes",
                state.settings.max_upload_size
            )));
        }
    }

    let written = match stream_body(state, &upload.id, start, &patch, body, &too_large).await {
        Ok(written) => written,
        Err(err) => {
            rollback_to(state, &upload.id, start).await;
            return Err(err);
        }
    };

    // Not committed if the lock went with its connection: another node may write now (the
    // bytes are not rolled back either, that node's reconciliation owns the upload).
    guard.ensure_held().await?;
    let new_offset = start + written;
    let now = now_millis();
    let expires_at = expiry_from(state, now);
    let committed = async {
        let mut tx = state.db.begin().await?;
        if let Some(new_length) = patch.length {
            db::uploads::set_length(&mut *tx, id.as_str(), to_i64(new_length)).await?;
        }
        db::uploads::commit_offset(&mut *tx, id.as_str(), to_i64(new_offset), now, expires_at)
            .await?;
        tx.commit().await
    }
    .await;
    if let Err(err) = committed {
        rollback_to(state, &upload.id, start).await;
        return Err(err.into());
    }
    state.metrics.ingested(written);
    tracing::info!(upload = %id, offset = start, bytes = written, "chunk stored");
    // Still under the upload's lock: the live cannot have ended since.
    crate::live::committed(state, upload.row.post_id, &upload.id, new_offset).await;
    compaction::schedule(state, &upload.id, start, new_offset);
    Ok((new_offset, expires_at))
}

/// Streams the body into the upload file in batches; returns the bytes written and synced.
async fn stream_body(
    state: &AppState,
    id: &UploadId,
    start: u64,
    patch: &Patch,
    body: Body,
    too_large: &(dyn Fn(u64) -> Option<ApiError> + Sync),
) -> Result<u64, ApiError> {
    let storage_id = id.clone();
    let mut writer = state
        .with_storage(move |s| Ok(s.upload_writer(&storage_id, start)?))
        .await?;
    let mut hasher = patch.checksum.as_ref().map(UploadChecksum::hasher);
    let mut head: Vec<u8> = Vec::new();
    let mut sniffed = start > 0;
    let mut received: u64 = 0;
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    let mut stream = body.into_data_stream();
    loop {
        // A stalled body must not hold the upload's lock forever; its bytes are rolled back
        // and the client resumes with HEAD like after any network failure.
        let next = tokio::time::timeout(state.settings.patch_idle_timeout, stream.next())
            .await
            .map_err(|_| {
                ApiError::bad_request("body_timeout", "the body stalled; resume with HEAD")
            })?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|err| {
            ApiError::bad_request(
                "body_interrupted",
                format!("reading the body failed: {err}"),
            )
        })?;
        received += chunk.len() as u64;
        if let Some(err) = too_large(received) {
            return Err(err);
        }
        if !sniffed {
            head.extend(chunk.iter().take(8 - head.len().min(8)));
            match looks_like_video(&head) {
                Some(true) => sniffed = true,
                Some(false) => return Err(not_video()),
                None => {}
            }
        }
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(&chunk);
        }
        batch.extend_from_slice(&chunk);
        if batch.len() >= WRITE_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BATCH));
            writer = write_batch(writer, full, false).await?;
        }
    }
    if !sniffed && received > 0 && looks_like_video(&head) != Some(true) {
        return Err(not_video());
    }
    if let (Some(checksum), Some(hasher)) = (patch.checksum.as_ref(), hasher) {
        if !checksum.matches(hasher) {
            return Err(ApiError::ChecksumMismatch);
        }
    }
    // The 204 promises durability: sync before the offset is committed.
    write_batch(writer, batch, true).await?;
    Ok(received)
}

fn not_video() -> ApiError {
    ApiError::UnsupportedMediaType(
        "the recording must be WebM (EBML) or MP4 (ftyp); these bytes are neither".to_owned(),
    )
}

/// Terminates an upload (tus `termination`): its bytes are deleted.
pub async fn terminate(state: &AppState, user: &UserRow, raw_id: &str) -> Result<(), ApiError> {
    let id = UploadId::parse(raw_id).map_err(|_| ApiError::NotFound)?;
    let _guard = state.locks.lock(&locks::upload_key(id.as_str())).await?;
    let upload = open(state, user, raw_id).await?;
    db::uploads::set_state(&state.db, upload.id.as_str(), "terminated").await?;
    let storage_id = upload.id.clone();
    state
        .with_storage(move |s| Ok(s.delete_upload(&storage_id)?))
        .await?;
    Ok(())
}
