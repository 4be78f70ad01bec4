//! Ending a live: its upload becomes a Media, by an explicit stop or by the sweeper.
//!
//! Order matters for "no Media row without a file, no file without a Media row": the finalized
//! file is written to staging and committed (fsync, rename, fsync dir) first, then one database
//! transaction creates the Media, links it and ends the live; if that transaction fails the
//! file is deleted. The raw upload is deleted only after the commit.

use std::{io::Read, sync::Arc};

use anyhow::Context;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::{
    db::{self, media::NewMedia, posts::PostRow, uploads::UploadRow, users::UserRow},
    domain::{now_millis, Sha256Hex, UploadId},
    error::ApiError,
    finalize::{
        container_extension, container_mime, finalize_recording, FinalizeError, FinalizeOutcome,
    },
    locks,
    state::AppState,
    storage::{MediaWriter, ReadSeek},
    tus,
    views::{self, PostView},
};

/// How a live ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The streamer pressed stop.
    Stopped,
    /// The browser went away; the server finalizes what it holds.
    Interrupted,
}

impl Ending {
    fn live_status(self) -> &'static str {
        match self {
            Self::Stopped => "ended",
            Self::Interrupted => "interrupted",
        }
    }
}

/// What the recorder claims about its recording at stop, checked against the bytes held.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// Bytes the recorder produced.
    pub size: Option<u64>,
    /// SHA-256 of every byte the recorder produced.
    pub sha256: Option<Sha256Hex>,
    /// Duration the recorder measured, in seconds.
    pub duration: Option<f64>,
    /// MIME type the recorder used.
    pub mime_type: Option<String>,
    /// Title for the Media.
    pub title: Option<String>,
}

/// Default Media title of a live recording, as in the original design.
pub fn default_title(content: &str) -> String {
    format!("Vidéo du live - {content}")
}

/// Default Media description of a live recording, as in the original design.
pub fn default_description(content: &str) -> String {
    format!("Vidéo enregistrée du live '{content}'")
}

/// SHA-256 of the first `len` bytes of a source, streamed (blocking).
fn sha256_of(source: Box<dyn ReadSeek>, len: u64) -> std::io::Result<[u8; 32]> {
    let mut reader = std::io::BufReader::with_capacity(1 << 20, source.take(len));
    let mut hasher = Sha256::new();
    std::io::copy(&mut reader, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// What a finalizer reads: an upload (reconciled to its committed bytes), or a stored media.
enum Raw {
    Upload(UploadId),
    Media(String),
}

/// A fresh random storage key (128 bits, hex): no user input ever names a file.
pub fn media_key() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Keeps the recorder's MIME type (with its codecs) when it agrees with the container.
fn recorded_mime(claimed: Option<&str>, outcome: &FinalizeOutcome) -> String {
    let base = container_mime(outcome.container);
    match claimed.map(str::trim) {
        Some(mime)
            if mime.len() <= 200
                && mime.to_ascii_lowercase().starts_with(base)
                && axum::http::HeaderValue::from_str(mime).is_ok() =>
        {
            mime.to_owned()
        }
        _ => base.to_owned(),
    }
}

/// Ends `post` with the bytes of `upload`, checking `claims` first.
///
/// The caller holds the live's and the upload's locks and has checked that the live is live.
pub async fn finalize_live(
    state: &AppState,
    post: &PostRow,
    upload: &UploadRow,
    ending: Ending,
    claims: &Claims,
) -> Result<(), ApiError> {
    let id = UploadId::parse(&upload.id).context("an upload row has a malformed id")?;
    let held = tus::reconcile(state, &id, upload).await?;
    if held == 0 {
        return match ending {
            Ending::Stopped => Err(ApiError::bad_request(
                "empty_recording",
                "the server holds no bytes of this recording; upload them, then stop again",
            )),
            Ending::Interrupted => end_without_media(state, post.id, ending).await,
        };
    }
    if ending == Ending::Stopped {
        if let Some(length) = upload.length {
            if held < u64::try_from(length).unwrap_or(0) {
                return Err(ApiError::conflict(
                    "upload_incomplete",
                    format!("the upload holds {held} of its {length} bytes"),
                ));
            }
        }
        if let Some(size) = claims.size {
            if size != held {
                return Err(ApiError::conflict(
                    "size_mismatch",
                    format!("video_data.size is {size}, the server holds {held} bytes"),
                ));
            }
        }
    }

    let hashed = id.clone();
    let digest = state
        .with_storage(move |s| Ok(sha256_of(s.open_upload(&hashed)?, held)?))
        .await
        .context("hashing the upload")?;
    let original_sha256 = Sha256Hex::from_digest(&digest);
    if let Some(claimed) = &claims.sha256 {
        if *claimed != original_sha256 {
            return Err(ApiError::conflict(
                "checksum_mismatch",
                "video_data.sha256 differs from the SHA-256 of the bytes the server holds",
            ));
        }
    }

    let (stored_key, outcome) = finalize_into_storage(state, Raw::Upload(id)).await?;
    if outcome.dropped_tail_bytes > 0 {
        tracing::info!(
            post = post.id,
            dropped = outcome.dropped_tail_bytes,
            "dropped a cut-off tail"
        );
    }
    if let Some(client) = claims.duration {
        if (client - outcome.duration_secs).abs() > 1.0 {
            tracing::info!(
                post = post.id,
                client,
                file = outcome.duration_secs,
                "client and file durations disagree by more than 1 s; keeping the file's"
            );
        }
    }

    let title = claims
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().take(500).collect())
        .unwrap_or_else(|| default_title(&post.content));
    let description = default_description(&post.content);
    let mime_type = recorded_mime(claims.mime_type.as_deref(), &outcome);
    let now = now_millis();
    let new = NewMedia {
        user_id: post.author_id,
        title: &title,
        description: &description,
        storage_key: &stored_key,
        mime_type: &mime_type,
        duration: outcome.duration_secs,
        size: i64::try_from(outcome.size).unwrap_or(i64::MAX),
        original_sha256: original_sha256.as_str(),
        live_post_id: post.id,
        poster_key: post.poster_key.as_deref(),
        created_at: now,
    };
    let committed = async {
        let mut tx = state.db.begin().await?;
        db::media::insert_live_recording(&mut tx, &new).await?;
        // The poster now belongs to the Media (one owner per stored file).
        db::posts::clear_poster(&mut *tx, post.id).await?;
        if !db::posts::finish_live(&mut *tx, post.id, ending.live_status(), now).await? {
            anyhow::bail!(
                "live {} was no longer live when its recording was committed",
                post.id
            );
        }
        db::uploads::set_state(&mut *tx, &upload.id, "finalized").await?;
        let others = db::uploads::close_for_post(&mut *tx, post.id, "finalized").await?;
        crate::fault::point("before_commit");
        tx.commit().await?;
        Ok(others)
    }
    .await;
    let others = match committed {
        Ok(others) => others,
        Err(err) => {
            let orphan = stored_key.clone();
            let _ = state
                .with_storage(move |s| Ok(s.delete_media(&orphan)?))
                .await;
            return Err(err.context("recording a live's media").into());
        }
    };
    tracing::info!(
        post = post.id,
        upload = %upload.id,
        status = ending.live_status(),
        bytes = outcome.size,
        duration = outcome.duration_secs,
        cues = outcome.cue_points,
        "recording finalized"
    );
    crate::live::announce_end(state, post.id).await;
    let mut done = vec![upload.id.clone()];
    done.extend(others);
    delete_upload_files(state, done).await;
    Ok(())
}

/// Finalizes a raw recording into a new stored file; returns its key.
///
/// The file is written under a fresh random key named with its container's extension, and
/// committed (renamed and fsynced, or its multipart upload completed) only once whole; on
/// any failure nothing is left behind.
async fn finalize_into_storage(
    state: &AppState,
    raw: Raw,
) -> Result<(String, FinalizeOutcome), ApiError> {
    let key = media_key();
    let storage = Arc::clone(&state.storage);
    let finalize_started = std::time::Instant::now();
    let finalized = tokio::task::spawn_blocking(move || {
        let source: Box<dyn ReadSeek> = match &raw {
            // Reconciled under the upload's lock: it holds exactly the committed bytes.
            Raw::Upload(id) => storage.open_upload(id).map_err(std::io::Error::from)?,
            Raw::Media(key) => storage
                .open_media(key)
                .map_err(std::io::Error::from)?
                .ok_or_else(|| std::io::Error::other(format!("the file {key} is missing")))?,
        };
        let mut stored_key = String::new();
        let (outcome, writer) = finalize_recording(source, |container| {
            stored_key = format!("{key}.{}", container_extension(container));
            storage
                .media_writer(&stored_key)
                .map_err(std::io::Error::from)
        })?;
        MediaWriter::commit(writer).map_err(std::io::Error::from)?;
        Ok::<_, FinalizeError>((stored_key, outcome))
    })
    .await
    .context("finalizing task")?;
    state.metrics.finalized(finalize_started.elapsed());
    match finalized {
        Ok(done) => Ok(done),
        Err(err) if err.is_bad_recording() => {
            Err(ApiError::bad_request("invalid_recording", err.to_string()))
        }
        Err(err) => Err(anyhow::Error::new(err).into()),
    }
}

/// What re-running the finalizer over a stored recording changed.
#[derive(Debug, Clone)]
pub struct Refinalized {
    /// The new file's key (a new key: stored files are never rewritten in place).
    pub storage_key: String,
    /// Duration read from the new file, in seconds.
    pub duration_secs: f64,
    /// Bytes of the new file.
    pub size: u64,
    /// Cue points written.
    pub cue_points: usize,
}

/// Re-runs the finalizer over a stored recording and swaps the Media to the new file in one
/// update; the old file is deleted after the commit, so a reader sees one file or the other.
pub async fn refinalize(state: &AppState, media_id: i64) -> Result<Refinalized, ApiError> {
    let media = db::media::get(&state.db, media_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let key = media.storage_key.clone();
    let present = state
        .with_storage(move |s| Ok(s.open_media(&key)?.is_some()))
        .await?;
    if !present {
        return Err(anyhow::anyhow!("the file of media {media_id} is missing").into());
    }
    let (stored_key, outcome) =
        finalize_into_storage(state, Raw::Media(media.storage_key.clone())).await?;
    let replaced = async {
        let mut tx = state.db.begin().await?;
        let size = i64::try_from(outcome.size).unwrap_or(i64::MAX);
        let old =
            db::media::replace_file(&mut tx, media_id, &stored_key, outcome.duration_secs, size)
                .await?;
        tx.commit().await?;
        anyhow::Ok(old)
    }
    .await;
    let old = match replaced {
        Ok(old) => old,
        Err(err) => {
            let orphan = stored_key.clone();
            let _ = state
                .with_storage(move |s| Ok(s.delete_media(&orphan)?))
                .await;
            return Err(err.context("recording a refinalized file").into());
        }
    };
    if let Some(old) = old {
        state
            .with_storage(move |s| Ok(s.delete_media(&old)?))
            .await
            .context("deleting the replaced file")?;
    }
    tracing::info!(
        media = media_id,
        bytes = outcome.size,
        duration = outcome.duration_secs,
        cues = outcome.cue_points,
        "recording refinalized"
    );
    Ok(Refinalized {
        storage_key: stored_key,
        duration_secs: outcome.duration_secs,
        size: outcome.size,
        cue_points: outcome.cue_points,
    })
}

/// Ends a live that holds no bytes: no Media, its uploads closed.
async fn end_without_media(state: &AppState, post_id: i64, ending: Ending) -> Result<(), ApiError> {
    let mut tx = state.db.begin().await?;
    db::posts::finish_live(&mut *tx, post_id, ending.live_status(), now_millis()).await?;
    let closed = db::uploads::close_for_post(&mut *tx, post_id, "finalized").await?;
    tx.commit().await?;
    crate::live::announce_end(state, post_id).await;
    delete_upload_files(state, closed).await;
    Ok(())
}

/// Deletes the files of uploads that ended; a failure only leaves garbage, so it is logged.
async fn delete_upload_files(state: &AppState, ids: Vec<String>) {
    let result = state
        .with_storage(move |s| {
            for raw in ids {
                if let Ok(id) = UploadId::parse(&raw) {
                    s.delete_upload(&id)?;
                }
            }
            Ok(())
        })
        .await;
    if let Err(err) = result {
        tracing::warn!(error = ?err, "could not delete the files of finished uploads");
    }
}

/// Ends a live that went silent, if it is still live and still silent once locked.
///
/// Locks are only tried: a live being stopped or written to right now is not silent, and the
/// sweeper must never wait behind a stalled request.
pub async fn interrupt(state: &AppState, post_id: i64, cutoff: i64) -> Result<(), ApiError> {
    let Some(_live) = state
        .locks
        .try_lock_nesting(&locks::live_key(post_id))
        .await?
    else {
        return Ok(());
    };
    let Some(post) = db::posts::get(&state.db, post_id).await? else {
        return Ok(());
    };
    if post.live_status.as_deref() != Some("live") {
        return Ok(());
    }
    let Some(upload) = db::uploads::latest_for_post(&state.db, post_id).await? else {
        return end_without_media(state, post_id, Ending::Interrupted).await;
    };
    let Some(_writer) = state.locks.try_lock(&locks::upload_key(&upload.id)).await? else {
        return Ok(());
    };
    // Re-read under the lock: a PATCH may have landed since the sweep's query.
    let Some(upload) = db::uploads::get(&state.db, &upload.id).await? else {
        return Ok(());
    };
    if upload.last_activity_at.max(post.started_at.unwrap_or(0)) >= cutoff {
        return Ok(());
    }
    match finalize_live(
        state,
        &post,
        &upload,
        Ending::Interrupted,
        &Claims::default(),
    )
    .await
    {
        Ok(()) => {
            tracing::info!(post = post_id, "finalized an interrupted live");
            Ok(())
        }
        Err(err) => {
            // Keep the raw bytes for a human, but stop retrying every sweep.
            tracing::error!(post = post_id, error = ?err, "could not finalize an interrupted live");
            let mut tx = state.db.begin().await?;
            db::posts::finish_live(&mut *tx, post_id, "interrupted", now_millis()).await?;
            db::uploads::close_for_post(&mut *tx, post_id, "failed").await?;
            tx.commit().await?;
            crate::live::announce_end(state, post_id).await;
            Ok(())
        }
    }
}

/// A validated stop: which upload holds the recording, and what the recorder claims.
#[derive(Debug, Clone)]
pub struct StopRequest {
    /// The upload named by `upload_id`/`upload_url`; the live's latest upload when absent.
    pub upload: Option<UploadId>,
    /// The recorder's claims to check.
    pub claims: Claims,
}

/// Stops a live (idempotent): the first stop creates the Media, later ones return the same Post.
pub async fn stop(
    state: &AppState,
    user: &UserRow,
    live_id: i64,
    request: StopRequest,
) -> Result<PostView, ApiError> {
    let post = db::posts::get(&state.db, live_id)
        .await?
        .filter(|post| post.is_live)
        .ok_or(ApiError::NotFound)?;
    if post.author_id != user.id {
        return Err(ApiError::Forbidden);
    }
    if post.live_status.as_deref() == Some("live") {
        let _live = state.locks.lock_nesting(&locks::live_key(live_id)).await?;
        // Re-read under the lock: a concurrent stop or the sweeper may have ended it.
        let post = db::posts::get(&state.db, live_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        if post.live_status.as_deref() == Some("live") {
            stop_locked(state, &post, request).await?;
        }
    }
    views::post(&state.db, live_id)
        .await?
        .ok_or(ApiError::NotFound)
}

async fn stop_locked(
    state: &AppState,
    post: &PostRow,
    request: StopRequest,
) -> Result<(), ApiError> {
    let upload = match &request.upload {
        Some(id) => db::uploads::get(&state.db, id.as_str())
            .await?
            .filter(|upload| upload.post_id == post.id)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "upload_mismatch",
                    "this upload does not belong to this live",
                )
            })?,
        None => db::uploads::latest_for_post(&state.db, post.id)
            .await?
            .ok_or_else(|| {
                ApiError::bad_request("empty_recording", "this live has no upload to stop with")
            })?,
    };
    let _writer = state.locks.lock(&locks::upload_key(&upload.id)).await?;
    let upload = db::uploads::get(&state.db, &upload.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if upload.state != "open" {
        return Err(ApiError::gone(
            "upload_closed",
            format!(
                "this upload is {}; it cannot become the recording",
                upload.state
            ),
        ));
    }
    finalize_live(state, post, &upload, Ending::Stopped, &request.claims).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finalize::Container;

    fn outcome(container: Container) -> FinalizeOutcome {
        FinalizeOutcome {
            container,
            duration_secs: 1.0,
            size: 1,
            dropped_tail_bytes: 0,
            cue_points: 0,
        }
    }

    #[test]
    fn the_recorders_mime_type_is_kept_when_it_matches_the_container() {
        let webm = outcome(Container::WebM);
        assert_eq!(
            recorded_mime(Some("video/webm;codecs=vp9,opus"), &webm),
            "video/webm;codecs=vp9,opus"
        );
        assert_eq!(recorded_mime(Some("video/mp4"), &webm), "video/webm");
        assert_eq!(recorded_mime(Some("text/html"), &webm), "video/webm");
        assert_eq!(recorded_mime(None, &outcome(Container::Mp4)), "video/mp4");
    }

    #[test]
    fn default_texts_follow_the_original_design() {
        assert_eq!(default_title("Concert"), "Vidéo du live - Concert");
        assert_eq!(
            default_description("Concert"),
            "Vidéo enregistrée du live 'Concert'"
        );
    }
}
