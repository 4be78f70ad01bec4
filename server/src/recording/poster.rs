//! A live's poster: a JPEG the recorder grabs a second into the live.
//!
//! Uploaded while the live runs, it waits on the Post and moves to the Media when the live
//! ends (stop or interruption); uploaded after, it replaces the Media's. Each poster file is
//! stored under a fresh random key and has exactly one owner row; a replaced one is deleted.

use bytes::Bytes;

use super::finalize::media_key;
use crate::{
    db::{self, users::UserRow},
    domain::PostId,
    locks,
    posts::{self, LiveAccessError},
    state::AppState,
};

/// Largest poster accepted.
pub const MAX_POSTER_BYTES: usize = 1 << 20;

/// JPEG's start-of-image marker followed by the first marker's prefix.
const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// Why a poster was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PosterError {
    /// The bytes do not start like a JPEG.
    #[error("a poster must be a JPEG image")]
    NotJpeg,
    /// The live is missing or another user's.
    #[error(transparent)]
    Live(#[from] LiveAccessError),
    /// The live vanished while the poster was stored.
    #[error("not found")]
    NotFound,
    /// The live ended without a recording to show the poster on.
    #[error("this live ended without a recording")]
    NoRecording,
    /// The database, the storage or a lock failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for PosterError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(err.into())
    }
}

/// Stores `jpeg` as the poster of `live_id`, durably, for its owner.
pub async fn put(
    state: &AppState,
    user: &UserRow,
    live_id: PostId,
    jpeg: Bytes,
) -> Result<(), PosterError> {
    if !jpeg.starts_with(&JPEG_MAGIC) {
        return Err(PosterError::NotJpeg);
    }
    posts::owned_live(&state.db, user, live_id).await?;
    let key = format!("{}.jpg", media_key());
    let stored = key.clone();
    state
        .with_media(move |media| Ok(media.write(&stored, &jpeg)?))
        .await?;
    // Under the live's lock, a stop either already moved the poster to the Media or will.
    let attached = match state.locks.lock(&locks::live_key(live_id)).await {
        Ok(_live) => attach(state, live_id, &key).await,
        Err(err) => Err(err.into()),
    };
    let replaced = match attached {
        Ok(replaced) => replaced,
        Err(err) => {
            delete(state, key).await;
            return Err(err);
        }
    };
    if let Some(old) = replaced {
        delete(state, old).await;
    }
    Ok(())
}

/// Points the live (or its Media, once it ended) at `key`; returns the key replaced.
async fn attach(
    state: &AppState,
    live_id: PostId,
    key: &str,
) -> Result<Option<String>, PosterError> {
    let post = db::posts::get(&state.db, live_id)
        .await?
        .ok_or(PosterError::NotFound)?;
    let mut tx = db::begin_write(&state.db).await?;
    let replaced = if post.is_in_progress() {
        db::posts::swap_poster(&mut tx, live_id, key).await?
    } else {
        let media = db::media::for_live(&mut *tx, live_id)
            .await?
            .ok_or(PosterError::NoRecording)?;
        let replaced = db::media::swap_poster(&mut tx, media.id, key).await?;
        tx.commit().await?;
        state.media_cache.forget(media.id);
        return Ok(replaced);
    };
    tx.commit().await?;
    Ok(replaced)
}

/// Deletes a poster file nobody points to; a failure only leaves garbage, so it is logged.
async fn delete(state: &AppState, key: String) {
    let result = state.with_media(move |media| Ok(media.delete(&key)?)).await;
    if let Err(err) = result {
        tracing::warn!(error = ?err, "could not delete a replaced poster");
    }
}
