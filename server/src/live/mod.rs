//! The live room: viewers counted over Server-Sent Events, chat, and the progressive stream
//! of a live in progress, all fed by one [`hub::Hub`] of per-live rooms.
//!
//! The stream is the recorder's own upload: when a PATCH commits (`tus.rs` calls
//! [`committed`]), the live's room learns the new offset and wakes its streams, which send
//! every cluster that became complete (`index.rs` knows where they are).
//!
//! With several nodes on one PostgreSQL database, `bus.rs` carries these events (commits,
//! chat, counts, the end) to the rooms of the other nodes, whose streams then read the
//! committed bytes from the shared storage.

pub mod bus;
pub mod chat;
pub mod events;
pub mod hub;
pub mod index;
pub mod stream;

use std::sync::Arc;

use anyhow::Context;

use crate::{db, domain::now_millis, domain::UploadId, state::AppState, views};
use hub::Room;

/// What a stream or a timing needs to know of the index after an advance.
#[derive(Debug, Clone, Default)]
pub struct IndexSnapshot {
    /// The stream's header, when asked for and known.
    pub header: Option<Vec<u8>>,
    /// Where a joining viewer starts.
    pub start: Option<u64>,
    /// End of the last complete cluster.
    pub complete_end: u64,
    /// The upload is not a streamable WebM.
    pub unusable: bool,
    /// Media time covered by the committed blocks, in milliseconds.
    pub media_span_ms: Option<f64>,
}

/// Advances the room's index over `upload` up to `committed` (off the async workers).
pub async fn advance_index(
    state: &AppState,
    room: &Arc<Room>,
    upload: &UploadId,
    committed: u64,
    with_header: bool,
) -> anyhow::Result<IndexSnapshot> {
    let room = Arc::clone(room);
    let upload = upload.clone();
    state
        .with_storage(move |storage| {
            let mut index = room.index.lock().unwrap_or_else(|e| e.into_inner());
            index.follow(&upload);
            let file = storage.open_upload(&upload)?;
            index
                .advance(std::io::BufReader::new(file), committed)
                .with_context(|| format!("indexing the clusters of upload {upload}"))?;
            Ok(IndexSnapshot {
                header: index.header().filter(|_| with_header).map(<[u8]>::to_vec),
                start: index.start(),
                complete_end: index.complete_end(),
                unusable: index.unusable(),
                media_span_ms: index.media_span_ms(),
            })
        })
        .await
}

/// A PATCH of a live's upload committed: wake the streams, and date the recording if needed.
///
/// Called with the upload's lock held, so it never runs after the live's end.
pub async fn committed(state: &AppState, post_id: i64, upload: &UploadId, offset: u64) {
    let arrival = now_millis();
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
        tracing::warn!(post = post_id, error = ?err, "could not date the recording's start");
    }
}

/// Estimates when the recording's media time 0 happened on the server's clock.
///
/// The recorder creates the live, then starts MediaRecorder; its first chunk arrives about a
/// timeslice later. Media time 0 is the first chunk's arrival minus the media time it covers
/// (first to last block), never earlier than the live's creation. Arrival lags by the upload
/// latency, so chat offsets err a little early, by well under a second on a working network.
async fn date_recording(
    state: &AppState,
    room: &Arc<Room>,
    post_id: i64,
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
    let index = advance_index(state, room, upload, offset, false).await?;
    if index.unusable {
        // Not a WebM (an MP4 live): offsets are measured from the live's start.
        room.mark_recording_dated();
        return Ok(());
    }
    let Some(span) = index.media_span_ms.map(|span| span.round() as i64) else {
        return Ok(());
    };
    let started = post.started_at.unwrap_or(post.created_at);
    let start = arrival.saturating_sub(span).max(started);
    db::posts::set_recording_start(&state.db, post_id, start).await?;
    room.mark_recording_dated();
    Ok(())
}

/// A live ended (stop or interruption): tell its viewers, on every node, and close its streams.
pub async fn announce_end(state: &AppState, post_id: i64) {
    announce_end_here(state, post_id).await;
    if let Some(bus) = state.hub.bus() {
        bus.publish(bus::Notice::Ended { post: post_id });
    }
}

/// Ends the live's room on this node only (another node announced the end, or a room
/// was created just after it).
pub async fn announce_end_here(state: &AppState, post_id: i64) {
    let post = match views::post(&state.db, post_id).await {
        Ok(post) => post,
        Err(err) => {
            tracing::error!(post = post_id, error = ?err, "could not load an ended live");
            None
        }
    };
    state.hub.end(post_id, post);
}
