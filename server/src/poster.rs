//! A live's poster: a JPEG the recorder grabs a second into the live.
//!
//! Uploaded while the live runs, it waits on the Post and moves to the Media when the live
//! ends (stop or interruption); uploaded after, it replaces the Media's. Each poster file is
//! stored under a fresh random key and has exactly one owner row; a replaced one is deleted.

use axum::body::Bytes;

use crate::{
    db::{self, users::UserRow},
    error::ApiError,
    locks,
    recording::media_key,
    state::AppState,
};

/// Largest poster accepted.
pub const MAX_POSTER_BYTES: usize = 1 << 20;

/// JPEG's start-of-image marker followed by the first marker's prefix.
const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// Stores `jpeg` as the poster of `live_id`, durably, for its owner.
pub async fn put(
    state: &AppState,
    user: &UserRow,
    live_id: i64,
    jpeg: Bytes,
) -> Result<(), ApiError> {
    if !jpeg.starts_with(&JPEG_MAGIC) {
        return Err(ApiError::UnsupportedMediaType(
            "a poster must be a JPEG image".to_owned(),
        ));
    }
    let post = db::posts::get(&state.db, live_id)
        .await?
        .filter(|post| post.is_live)
        .ok_or(ApiError::NotFound)?;
    if post.author_id != user.id {
        return Err(ApiError::Forbidden);
    }
    let key = format!("{}.jpg", media_key());
    let stored = key.clone();
    state
        .with_storage(move |s| Ok(s.write_media(&stored, &jpeg)?))
        .await?;
    // Under the live's lock, a stop either already moved the poster to the Media or will.
    let attached = {
        match state.locks.lock(&locks::live_key(live_id)).await {
            Ok(_live) => attach(state, live_id, &key).await,
            Err(err) => Err(err.into()),
        }
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
async fn attach(state: &AppState, live_id: i64, key: &str) -> Result<Option<String>, ApiError> {
    let post = db::posts::get(&state.db, live_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut tx = state.db.begin().await?;
    let replaced = if post.live_status.as_deref() == Some("live") {
        db::posts::swap_poster(&mut tx, live_id, key).await?
    } else {
        let media = db::media::for_live(&mut *tx, live_id)
            .await?
            .ok_or_else(|| {
                ApiError::conflict("no_recording", "this live ended without a recording")
            })?;
        db::media::swap_poster(&mut tx, media.id, key).await?
    };
    tx.commit().await?;
    Ok(replaced)
}

/// Deletes a poster file nobody points to; a failure only leaves garbage, so it is logged.
async fn delete(state: &AppState, key: String) {
    let result = state.with_storage(move |s| Ok(s.delete_media(&key)?)).await;
    if let Err(err) = result {
        tracing::warn!(error = ?err, "could not delete a replaced poster");
    }
}
