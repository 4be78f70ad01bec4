//! A live as its viewers follow it: viewers counted over Server-Sent Events, chat, and the
//! progressive stream of a live in progress, all fed by the per-live rooms of
//! [`crate::rooms::hub::Hub`].
//!
//! The stream is the recorder's own upload: when a PATCH commits (`uploads/tus.rs` calls
//! [`committed`]), the live's room learns the new offset and wakes its streams, which send
//! every cluster or fragment that became whole (the upload's index, `indexing/`, knows where
//! they are; `view.rs` reads it for the stream).
//!
//! With several nodes on one PostgreSQL database, `rooms/bus.rs` carries these events
//! (commits, chat, counts, the end) to the rooms of the other nodes, whose streams then read
//! the committed bytes from the shared storage.

pub mod chat;
pub mod events;
pub mod listener;
pub mod stream;
pub mod view;

use std::sync::Arc;

use anyhow::Context;

use view::StreamView;

use crate::{
    accounts::rate_limit::RateLimitError,
    db,
    domain::{PostId, UploadId},
    indexing,
    posts::views,
    rooms::{bus, hub::Room},
    state::AppState,
};

/// Why a viewer's or a chatter's request was refused.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// No such live.
    #[error("not found")]
    NotFound,
    /// The live has ended: its chat takes no more messages.
    #[error("this live has ended; its chat is closed")]
    ChatClosed,
    /// The live has ended: its replay is what there is to watch.
    #[error("this live has ended; watch its replay")]
    Ended,
    /// The recording cannot be played before it is whole (a progressive MP4, or bytes the
    /// index cannot read).
    #[error(
        "this live's recording cannot be watched while it records; \
         its replay will play once it ends"
    )]
    NotStreamable,
    /// Too many messages; retry after this many seconds.
    #[error("too many requests; retry in {0} s")]
    RateLimited(u64),
    /// The database or the storage failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for LiveError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(err.into())
    }
}

impl From<RateLimitError> for LiveError {
    fn from(err: RateLimitError) -> Self {
        match err {
            RateLimitError::Exceeded(seconds) => Self::RateLimited(seconds),
            RateLimitError::Database(err) => err.into(),
        }
    }
}

/// Brings this node's index of `upload` up to `committed` bytes (off the async workers) and
/// returns the stream's view of it at position `at`, with the header when asked.
pub async fn advance_index(
    state: &AppState,
    upload: &UploadId,
    committed: u64,
    with_header: bool,
    at: u64,
) -> anyhow::Result<StreamView> {
    let shared = state.indexes.get(upload);
    let upload = upload.clone();
    state
        .with_uploads(move |uploads| {
            indexing::catch_up(&shared, uploads, &upload, committed)
                .with_context(|| format!("indexing upload {upload}"))?;
            let index = indexing::lock(&shared);
            Ok(view::view(&index, committed, at, with_header))
        })
        .await
}

/// A PATCH of a live's upload committed: wake the streams, and date the recording if needed
/// (`arrival`: when the PATCH reached the server, in Unix milliseconds).
///
/// Called with the upload's lock held, so it never runs after the live's end.
pub async fn committed(
    state: &AppState,
    post_id: PostId,
    upload: &UploadId,
    offset: u64,
    arrival: i64,
) {
    let room = state.hub.room(post_id);
    room.committed(upload, offset);
    if let Some(bus) = state.hub.bus() {
        bus.publish(bus::Notice::Progress {
            post: post_id,
            upload: upload.as_str().to_owned(),
            offset,
        });
    }
    if room.recording_dated() {
        return;
    }
    if let Err(err) = date_recording(state, &room, post_id, upload, offset, arrival).await {
        tracing::warn!(post = %post_id, error = ?err, "could not date the recording's start");
    }
}

/// Estimates when the recording's media time 0 happened on the server's clock.
///
/// The recorder creates the live, then starts MediaRecorder; its first chunk arrives about a
/// timeslice later. Media time 0 is the first chunk's arrival minus the media time it covers
/// (first to last block), never earlier than the live's creation. Arrival is the PATCH's, not
/// its commit's: it lags by the network's latency but not by the server's sync and commit, so
/// chat offsets err a little early, by well under a second on a working network.
async fn date_recording(
    state: &AppState,
    room: &Arc<Room>,
    post_id: PostId,
    upload: &UploadId,
    offset: u64,
    arrival: i64,
) -> anyhow::Result<()> {
    let post = db::posts::get(&state.db, post_id)
        .await?
        .context("the live of a committed upload is gone")?;
    if post.recording_started_at.is_some() {
        room.mark_recording_dated();
        return Ok(());
    }
    let index = advance_index(state, upload, offset, false, 0).await?;
    if index.unusable {
        // Nothing the index can read: offsets are measured from the live's start.
        room.mark_recording_dated();
        return Ok(());
    }
    let Some(span) = index.media_span_ms.map(|span| span.round() as i64) else {
        return Ok(());
    };
    let started = post.started_at.unwrap_or(post.created_at);
    let start = arrival.saturating_sub(span).max(started);
    state.offsets.date_recording(post_id, start).await?;
    room.mark_recording_dated();
    Ok(())
}

/// A live ended (stop or interruption): tell its viewers, on every node, and close its streams.
pub async fn announce_end(state: &AppState, post_id: PostId) {
    announce_end_here(state, post_id).await;
    if let Some(bus) = state.hub.bus() {
        bus.publish(bus::Notice::Ended { post: post_id });
    }
}

/// Ends the live's room on this node only (another node announced the end, or a room
/// was created just after it).
pub async fn announce_end_here(state: &AppState, post_id: PostId) {
    let post = match views::post(&state.db, &state.public_url, post_id).await {
        Ok(post) => post,
        Err(err) => {
            tracing::error!(post = %post_id, error = ?err, "could not load an ended live");
            None
        }
    };
    let room = state.hub.get(post_id);
    state.hub.end(post_id, post);
    // The upload's index goes once this node's streams have sent their last bytes.
    let Some(room) = room else {
        return;
    };
    let Some(upload) = room.progress().borrow().upload.clone() else {
        return;
    };
    let indexes = std::sync::Arc::clone(&state.indexes);
    tokio::spawn(async move {
        room.streams_finished(STREAM_DRAIN).await;
        indexes.forget(&upload);
    });
}

/// How long an ended live's streams may take to send their last bytes before what they read
/// (the upload's files, its index) goes.
pub const STREAM_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);
