//! Re-running the finalizer over a stored recording (`livekeep admin refinalize`), after a
//! finalizer fix: the Media moves to a new file in one update, so a reader sees one file or
//! the other, and the old file is deleted after the commit.

use anyhow::Context;

use super::finalize::{finalize_into_storage, FinalizeError, Raw};
use crate::{
    db,
    domain::MediaId,
    state::AppState,
    webhooks::{self, Change},
};

/// Why a recording was not refinalized.
#[derive(Debug, thiserror::Error)]
pub enum RefinalizeError {
    /// No such media.
    #[error("media {0} does not exist")]
    NotFound(MediaId),
    /// The stored file is not a recording the finalizer can read (it is kept).
    #[error(transparent)]
    InvalidRecording(FinalizeError),
    /// The database or the storage failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<FinalizeError> for RefinalizeError {
    fn from(err: FinalizeError) -> Self {
        if err.is_bad_recording() {
            Self::InvalidRecording(err)
        } else {
            Self::Internal(err.into())
        }
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

/// Re-runs the finalizer over a stored recording and swaps the Media to the new file.
pub async fn refinalize(
    state: &AppState,
    media_id: MediaId,
) -> Result<Refinalized, RefinalizeError> {
    // An object store assembles a stopped live's layout into one object in the background
    // and then deletes the layout: the file read here must not be swapped under it. Taken
    // before the media is read, so the key read is the one that stays.
    let _assembly = state
        .locks
        .lock(&crate::locks::assembly_key(media_id))
        .await
        .context("waiting for the media's assembly")?;
    let media = db::media::get(&state.db, media_id)
        .await
        .context("reading the media")?
        .ok_or(RefinalizeError::NotFound(media_id))?;
    let key = media.storage_key.clone();
    let present = state
        .with_media(move |media| Ok(media.open(&key)?.is_some()))
        .await?;
    if !present {
        return Err(anyhow::anyhow!("the file of media {media_id} is missing").into());
    }
    let (stored_key, outcome) =
        finalize_into_storage(state, Raw::Media(media.storage_key.clone())).await?;
    let replaced = async {
        let mut tx = db::begin_write(&state.db).await?;
        let old = db::media::replace_file(
            &mut tx,
            media_id,
            &stored_key,
            outcome.duration_secs,
            outcome.size,
        )
        .await?;
        webhooks::record(
            &mut tx,
            &state.webhooks,
            Change::RecordingRefinalized(media_id),
        )
        .await?;
        tx.commit().await?;
        state.media_cache.forget(media_id);
        anyhow::Ok(old)
    }
    .await;
    let old = match replaced {
        Ok(old) => old,
        Err(err) => {
            let orphan = stored_key.clone();
            let _ = state
                .with_media(move |media| Ok(media.delete(&orphan)?))
                .await;
            return Err(err.context("recording a refinalized file").into());
        }
    };
    state.webhooks.wake();
    if let Some(old) = old {
        state
            .with_media(move |media| Ok(media.delete(&old)?))
            .await
            .context("deleting the replaced file")?;
    }
    tracing::info!(
        media = %media_id,
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
