//! Starting a live, and ending it: its upload becomes a Media, by an explicit stop or by the
//! sweeper. Each writes its webhook (`live.started`, `live.ended`, `live.interrupted`) in its
//! own transaction.
//!
//! Order matters for "no Media row without a file, no file without a Media row": the finalized
//! file is written to staging and committed (fsync, rename, fsync dir) first, then one database
//! transaction creates the Media, links it and ends the live; if that transaction fails the
//! file is deleted. The raw upload is deleted only after the commit.
//!
//! Nothing is read back at a stop: the SHA-256 and the container index were computed as the
//! bytes arrived (`indexing/`), so the stop checks the hash from the saved state and stores the
//! media as the planned head over the upload's own bytes (`finalize::finalize_from_index`).
//! On an object store that layout is then assembled into one object in the background
//! (`assembly.rs`).

pub mod assembly;
pub mod finalize;
pub mod poster;
pub mod refinalize;

use std::sync::Arc;

use anyhow::Context;

use crate::{
    db::{self, media::NewMedia, posts::PostRow, uploads::UploadRow, users::UserRow},
    domain::{now_millis, LiveContent, LiveStatus, PostId, Sha256Hex, UploadId, UploadState},
    indexing, locks,
    posts::{
        self,
        views::{self, PostView},
        LiveAccessError,
    },
    rooms::hub::Room,
    state::AppState,
    uploads::tus,
    webhooks::{self, Change},
};
use finalize::{
    container_mime, finalize_from_index, finalize_into_storage, FinalizeError, FinalizeOutcome, Raw,
};

/// Why a stop did not end the live with a recording.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The live is missing or another user's.
    #[error(transparent)]
    Live(#[from] LiveAccessError),
    /// The upload named in `video_data` records another live.
    #[error("this upload does not belong to this live")]
    UploadMismatch,
    /// The upload or the live vanished meanwhile.
    #[error("not found")]
    NotFound,
    /// The upload is not open anymore.
    #[error("this upload is {0}; it cannot become the recording")]
    UploadClosed(UploadState),
    /// The upload holds fewer bytes than its declared length.
    #[error("the upload holds {held} of its {length} bytes")]
    Incomplete {
        /// Bytes held.
        held: u64,
        /// `Upload-Length`.
        length: u64,
    },
    /// The recorder produced another number of bytes than the server holds.
    #[error("video_data.size is {claimed}, the server holds {held} bytes")]
    SizeMismatch {
        /// `video_data.size`.
        claimed: u64,
        /// Bytes held.
        held: u64,
    },
    /// The recorder's SHA-256 is not the one of the bytes held.
    #[error("video_data.sha256 differs from the SHA-256 of the bytes the server holds")]
    ChecksumMismatch,
    /// The bytes are not a recording the finalizer can read (they are kept).
    #[error(transparent)]
    InvalidRecording(FinalizeError),
    /// The database, the storage or a lock failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StopError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(err.into())
    }
}

impl From<FinalizeError> for StopError {
    fn from(err: FinalizeError) -> Self {
        if err.is_bad_recording() {
            Self::InvalidRecording(err)
        } else {
            Self::Internal(err.into())
        }
    }
}

/// How a live ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The streamer pressed stop.
    Stopped,
    /// The browser went away; the server finalizes what it holds.
    Interrupted,
}

impl Ending {
    fn live_status(self) -> LiveStatus {
        match self {
            Self::Stopped => LiveStatus::Ended,
            Self::Interrupted => LiveStatus::Interrupted,
        }
    }

    /// What the host app hears of it.
    fn change(self, post: PostId) -> Change {
        match self {
            Self::Stopped => Change::LiveEnded(post),
            Self::Interrupted => Change::LiveInterrupted(post),
        }
    }
}

/// Starts a live of `author_id` now: its Post and its `live.started` webhook, in one
/// transaction.
pub async fn start_live(
    state: &AppState,
    author_id: i64,
    content: &LiveContent,
) -> anyhow::Result<PostId> {
    let mut tx = db::begin_write(&state.db).await?;
    let live_id =
        db::posts::insert_live(&mut *tx, author_id, content.as_str(), now_millis()).await?;
    webhooks::record(&mut tx, &state.webhooks, Change::LiveStarted(live_id)).await?;
    tx.commit().await?;
    state.webhooks.wake();
    Ok(live_id)
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

/// Whether a header may carry `value` as it is: tab, visible ASCII and bytes past ASCII, as
/// HTTP field values allow (RFC 9110, 5.5).
fn is_field_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7F))
}

/// Keeps the recorder's MIME type (with its codecs) when it agrees with the container.
fn recorded_mime(claimed: Option<&str>, outcome: &FinalizeOutcome) -> String {
    let base = container_mime(outcome.container);
    match claimed.map(str::trim) {
        Some(mime)
            if mime.len() <= 200
                && mime.to_ascii_lowercase().starts_with(base)
                && is_field_value(mime) =>
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
) -> Result<(), StopError> {
    let mut stages = Stages::start();
    let held = tus::reconcile_to_stop(state, upload).await?;
    stages.mark("reconcile");
    if ending == Ending::Stopped {
        if let Some(length) = upload.length {
            if held < length {
                return Err(StopError::Incomplete { held, length });
            }
        }
        match claims.size {
            // Bytes the recorder sent may still be on their way: the stop is retried.
            Some(claimed) if held == 0 && claimed > 0 => {
                return Err(StopError::Incomplete {
                    held,
                    length: claimed,
                })
            }
            Some(claimed) if claimed != held => {
                return Err(StopError::SizeMismatch { claimed, held })
            }
            _ => {}
        }
    }
    if held == 0 {
        // Nothing was recorded: the live ends at once, without a Media, as in the original
        // design (whose stop ended the live whatever became of the video).
        return Ok(end_without_media(state, post.id, ending).await?);
    }

    // The hash and the index of the bytes held, computed as they arrived.
    let index = indexing::ready(
        &state.db,
        Arc::clone(&state.uploads),
        &state.indexes,
        &upload.id,
        held,
        indexing::Use::Read,
    )
    .await
    .context("the upload's index")?;
    stages.mark("index");
    let digest = indexing::lock(&index).sha256();
    let original_sha256 = Sha256Hex::from_digest(&digest);
    if claims
        .sha256
        .as_ref()
        .is_some_and(|claimed| *claimed != original_sha256)
    {
        return Err(StopError::ChecksumMismatch);
    }

    // Planning finishes the index in place: unless this stop completes (an error, or the
    // request dropped midway), this node forgets it and the next user restores what was saved.
    let mut finished_index = ForgetUnlessKept {
        indexes: &state.indexes,
        upload: &upload.id,
        keep: false,
    };
    let (stored_key, outcome, holds_upload) =
        match finalize_from_index(state, &upload.id, &index, held).await? {
            Some((put, outcome)) => (put.key, outcome, put.holds_upload),
            None => {
                let (key, outcome) =
                    finalize_into_storage(state, Raw::Upload(upload.id.clone())).await?;
                (key, outcome, false)
            }
        };
    stages.mark("store");
    if outcome.dropped_tail_bytes > 0 {
        tracing::info!(
            post = %post.id,
            dropped = outcome.dropped_tail_bytes,
            "dropped a cut-off tail"
        );
    }
    if let Some(client) = claims.duration {
        if (client - outcome.duration_secs).abs() > 1.0 {
            tracing::info!(
                post = %post.id,
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
        size: outcome.size,
        original_sha256: original_sha256.as_str(),
        live_post_id: post.id,
        poster_key: post.poster_key.as_deref(),
        created_at: now,
    };
    let committed = async {
        let mut tx = db::begin_write(&state.db).await?;
        db::media::insert_live_recording(&mut tx, &new).await?;
        // The poster now belongs to the Media (one owner per stored file).
        db::posts::clear_poster(&mut *tx, post.id).await?;
        if !db::posts::finish_live(&mut *tx, post.id, ending.live_status(), now).await? {
            anyhow::bail!(
                "live {} was no longer live when its recording was committed",
                post.id
            );
        }
        db::uploads::set_state(&mut *tx, &upload.id, UploadState::Finalized).await?;
        let others = db::uploads::close_for_post(&mut *tx, post.id, UploadState::Finalized).await?;
        webhooks::record(&mut tx, &state.webhooks, ending.change(post.id)).await?;
        // The upload's saved index stays for the sweeper (`drop_closed_indexes`): deleting its
        // megabytes of rows here made a 1 GiB stop's commit 2–3 ms longer than a small one's.
        crate::fault::point("before_commit");
        tx.commit().await?;
        crate::fault::point("after_commit");
        Ok(others)
    }
    .await;
    let others = match committed {
        Ok(others) => {
            // The live's streams still read it to send their last bytes (`announce_end`).
            finished_index.keep = true;
            others
        }
        Err(err) => {
            let orphan = stored_key.clone();
            let _ = state
                .with_media(move |media| Ok(media.discard(&orphan)?))
                .await;
            return Err(err.context("recording a live's media").into());
        }
    };
    stages.mark("commit");
    state.webhooks.wake();
    tracing::info!(
        post = %post.id,
        upload = %upload.id,
        status = %ending.live_status(),
        bytes = outcome.size,
        duration = outcome.duration_secs,
        cues = outcome.cue_points,
        "recording finalized"
    );
    let room = state.hub.get(post.id);
    crate::live::announce_end(state, post.id).await;
    // The media holds its upload's objects until it is assembled: they are not deleted here.
    let mut done = Vec::new();
    if !holds_upload {
        done.push(upload.id.clone());
    }
    done.extend(others);
    delete_upload_files(state, room, done).await;
    if holds_upload {
        assembly::spawn(state, &stored_key);
    }
    stages.mark("end");
    tracing::debug!(post = %post.id, stages = %stages, "stop stages (ms)");
    Ok(())
}

/// How long each stage of a finalization took, for the debug log.
struct Stages {
    last: std::time::Instant,
    done: Vec<(&'static str, std::time::Duration)>,
}

impl Stages {
    fn start() -> Self {
        Self {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }

    fn mark(&mut self, stage: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((stage, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (stage, took)) in self.done.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{stage}={:.2}", took.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

/// Drops this node's index of `upload` when it goes, unless told to `keep` it.
struct ForgetUnlessKept<'a> {
    indexes: &'a indexing::Indexes,
    upload: &'a UploadId,
    keep: bool,
}

impl Drop for ForgetUnlessKept<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.indexes.forget(self.upload);
        }
    }
}

/// Ends a live that holds no bytes: no Media, its uploads closed.
async fn end_without_media(
    state: &AppState,
    post_id: PostId,
    ending: Ending,
) -> anyhow::Result<()> {
    let mut tx = db::begin_write(&state.db).await?;
    let ended =
        db::posts::finish_live(&mut *tx, post_id, ending.live_status(), now_millis()).await?;
    let closed = db::uploads::close_for_post(&mut *tx, post_id, UploadState::Finalized).await?;
    if ended {
        webhooks::record(&mut tx, &state.webhooks, ending.change(post_id)).await?;
    }
    tx.commit().await?;
    state.webhooks.wake();
    let room = state.hub.get(post_id);
    crate::live::announce_end(state, post_id).await;
    delete_upload_files(state, room, closed).await;
    Ok(())
}

/// Deletes the files of uploads that ended; a failure only leaves garbage, so it is logged.
///
/// While progressive streams of the live's `room` still send its last cluster, the deletion
/// waits for them (at most [`crate::live::STREAM_DRAIN`]) in the background; a crash meanwhile leaves the
/// files to the start-up consistency check, which deletes those of ended uploads.
async fn delete_upload_files(state: &AppState, room: Option<Arc<Room>>, ids: Vec<UploadId>) {
    let delete = {
        let state = state.clone();
        move || async move {
            for id in &ids {
                state.indexes.forget(id);
            }
            let result = state
                .with_uploads(move |uploads| {
                    for id in ids {
                        uploads.delete(&id)?;
                    }
                    Ok(())
                })
                .await;
            if let Err(err) = result {
                tracing::warn!(error = ?err, "could not delete the files of finished uploads");
            }
        }
    };
    match room.filter(|room| room.has_streams()) {
        Some(room) => {
            tokio::spawn(async move {
                room.streams_finished(crate::live::STREAM_DRAIN).await;
                delete().await;
            });
        }
        None => delete().await,
    }
}

/// Ends a live that went silent, if it is still live and still silent once locked.
///
/// Locks are only tried: a live being stopped or written to right now is not silent, and the
/// sweeper must never wait behind a stalled request.
pub async fn interrupt(state: &AppState, post_id: PostId, cutoff: i64) -> anyhow::Result<()> {
    let Some(_live) = state.locks.try_lock(&locks::live_key(post_id)).await? else {
        return Ok(());
    };
    let Some(post) = db::posts::get(&state.db, post_id).await? else {
        return Ok(());
    };
    if !post.is_in_progress() {
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
            tracing::info!(post = %post_id, "finalized an interrupted live");
            Ok(())
        }
        Err(err) => {
            // Keep the raw bytes for a human, but stop retrying every sweep.
            tracing::error!(post = %post_id, error = ?err, "could not finalize an interrupted live");
            let mut tx = db::begin_write(&state.db).await?;
            let ended =
                db::posts::finish_live(&mut *tx, post_id, LiveStatus::Interrupted, now_millis())
                    .await?;
            db::uploads::close_for_post(&mut *tx, post_id, UploadState::Failed).await?;
            if ended {
                let change = Change::LiveInterrupted(post_id);
                webhooks::record(&mut tx, &state.webhooks, change).await?;
            }
            tx.commit().await?;
            state.webhooks.wake();
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
    live_id: PostId,
    request: StopRequest,
) -> Result<PostView, StopError> {
    let post = posts::owned_live(&state.db, user, live_id).await?;
    if post.is_in_progress() {
        let _live = state.locks.lock(&locks::live_key(live_id)).await?;
        // Re-read under the lock: a concurrent stop or the sweeper may have ended it.
        let post = db::posts::get(&state.db, live_id)
            .await?
            .ok_or(StopError::NotFound)?;
        if post.is_in_progress() {
            stop_locked(state, &post, request).await?;
        }
    }
    views::post(&state.db, &state.public_url, live_id)
        .await?
        .ok_or(StopError::NotFound)
}

async fn stop_locked(
    state: &AppState,
    post: &PostRow,
    request: StopRequest,
) -> Result<(), StopError> {
    let upload = match &request.upload {
        Some(id) => db::uploads::get(&state.db, id)
            .await?
            .filter(|upload| upload.post_id == post.id)
            .ok_or(StopError::UploadMismatch)?,
        None => match db::uploads::latest_for_post(&state.db, post.id).await? {
            Some(upload) => upload,
            None => return Ok(end_without_media(state, post.id, Ending::Stopped).await?),
        },
    };
    let _writer = state.locks.lock(&locks::upload_key(&upload.id)).await?;
    let upload = db::uploads::get(&state.db, &upload.id)
        .await?
        .ok_or(StopError::NotFound)?;
    if upload.state != UploadState::Open {
        return Err(StopError::UploadClosed(upload.state));
    }
    finalize_live(state, post, &upload, Ending::Stopped, &request.claims).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use finalize::Container;

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
    fn a_mime_type_that_no_header_could_carry_is_replaced() {
        let webm = outcome(Container::WebM);
        assert_eq!(
            recorded_mime(Some("video/webm\r\nx: y"), &webm),
            "video/webm"
        );
        assert_eq!(
            recorded_mime(Some("video/webm;\u{7f}"), &webm),
            "video/webm"
        );
        assert_eq!(
            recorded_mime(Some("video/webm;\tcodecs=vp8"), &webm),
            "video/webm;\tcodecs=vp8"
        );
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
