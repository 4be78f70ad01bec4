//! The progressive WebM of a live in progress, cut from the recorder's upload.
//!
//! Header (EBML, Segment of unknown size, Info, Tracks), then the upload's bytes from the
//! latest complete cluster that opens on a video keyframe, then each cluster as it becomes
//! complete and durable, until the live ends. Chromium plays it as a live `<video>`:
//! `currentTime` advances, `duration` stays Infinity.

use std::{
    io::{Read, Seek, SeekFrom},
    sync::Arc,
};

use axum::body::Bytes;
use futures_util::{stream, Stream};
use tokio::sync::watch;

use super::{advance_index, hub::Progress, hub::Room};
use crate::{db, domain::UploadId, error::ApiError, state::AppState};

/// Largest piece read from the upload and sent at once: bounds memory per viewer.
const SEND_PIECE: u64 = 256 << 10;

/// One viewer's position in the live.
struct Follower {
    state: AppState,
    room: Arc<Room>,
    progress: watch::Receiver<Progress>,
    upload: UploadId,
    committed: u64,
    /// Next upload offset to send; `None` until the header went out.
    pos: Option<u64>,
}

impl Follower {
    /// Takes in the latest progress; false when the stream must end: the live ended, or the
    /// recorder moved to another upload (the viewer reconnects and follows that one).
    fn refresh(&mut self) -> bool {
        let progress = self.progress.borrow_and_update();
        match &progress.upload {
            Some(upload) if *upload == self.upload => {
                self.committed = self.committed.max(progress.committed);
            }
            Some(_) => return false,
            None => {}
        }
        !progress.ended
    }

    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            if !self.refresh() {
                return None;
            }
            let index = advance_index(
                &self.state,
                &self.room,
                &self.upload,
                self.committed,
                self.pos.is_none(),
            )
            .await;
            let index = match index {
                Ok(index) if !index.unusable => index,
                Ok(_) => return None,
                Err(err) => {
                    // The upload's file went away (the live was finalized) or the disk failed.
                    tracing::info!(error = ?err, "a live stream stops");
                    return None;
                }
            };
            match (self.pos, index.header, index.start) {
                (None, Some(header), Some(start)) => {
                    self.pos = Some(start);
                    return Some(Ok(Bytes::from(header)));
                }
                (Some(pos), _, _) if pos < index.complete_end => {
                    let len = (index.complete_end - pos).min(SEND_PIECE);
                    let piece = self.read(pos, len).await;
                    self.pos = Some(pos + len);
                    return Some(piece);
                }
                _ => {}
            }
            // Nothing new to send: wait for the next commit (or the end).
            if self.progress.changed().await.is_err() {
                return None;
            }
        }
    }

    async fn read(&self, pos: u64, len: u64) -> Result<Bytes, std::io::Error> {
        let upload = self.upload.clone();
        self.state
            .with_storage(move |storage| {
                let mut file = storage.open_upload(&upload)?;
                file.seek(SeekFrom::Start(pos))?;
                let mut bytes = Vec::with_capacity(len as usize);
                file.take(len).read_to_end(&mut bytes)?;
                anyhow::ensure!(
                    bytes.len() as u64 == len,
                    "the upload shrank under a stream"
                );
                Ok(Bytes::from(bytes))
            })
            .await
            .map_err(std::io::Error::other)
    }
}

/// Opens the progressive stream of live `post_id`.
pub async fn open(
    state: &AppState,
    post_id: i64,
) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + Send, ApiError> {
    let live = |post: &db::posts::PostRow| post.live_status.as_deref() == Some("live");
    let post = db::posts::get(&state.db, post_id)
        .await?
        .filter(|post| post.is_live)
        .ok_or(ApiError::NotFound)?;
    if !live(&post) {
        return Err(live_ended());
    }
    let room = state.hub.room(post_id);
    let progress = room.progress();
    // Re-read after taking the room: a live that ended meanwhile would never end this room.
    let post_now = db::posts::get(&state.db, post_id).await?;
    let upload = db::uploads::latest_for_post(&state.db, post_id).await?;
    let (Some(upload), true) = (upload, post_now.as_ref().is_some_and(live)) else {
        super::announce_end_here(state, post_id).await;
        return Err(live_ended());
    };
    let id = UploadId::parse(&upload.id).map_err(|err| anyhow::anyhow!("upload row: {err}"))?;
    let committed = u64::try_from(upload.offset).unwrap_or(0);
    let index = advance_index(state, &room, &id, committed, false).await?;
    if index.unusable {
        return Err(ApiError::conflict(
            "not_streamable",
            "this live is recorded as MP4, which cannot be watched while it records; \
             its replay will play once it ends",
        ));
    }
    let follower = Follower {
        state: state.clone(),
        room,
        progress,
        upload: id,
        committed,
        pos: None,
    };
    Ok(stream::unfold(follower, |mut follower| async move {
        let piece = follower.next().await?;
        Some((piece, follower))
    }))
}

fn live_ended() -> ApiError {
    ApiError::conflict("live_ended", "this live has ended; watch its replay")
}
