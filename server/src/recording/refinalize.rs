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

/// Tries of a refinalization whose media moved to another file while it read the old one.
const TRIES: usize = 3;

/// Re-runs the finalizer over a stored recording and swaps the Media to the new file.
pub async fn refinalize(
    state: &AppState,
    media_id: MediaId,
) -> Result<Refinalized, RefinalizeError> {
    // An object store assembles a stopped live's layout into one object in the background
    // and then deletes the layout: the file read here must not be swapped under it. The lock
    // keeps this node's assembly away; another process's (an admin command beside a server
    // on SQLite, whose locks are its own) can still move the media, which the swap's check
    // finds, and the file that moved is read again.
    let _assembly = state
        .locks
        .lock(&crate::locks::assembly_key(media_id))
        .await
        .context("waiting for the media's assembly")?;
    for _ in 0..TRIES {
        if let Some(done) = refinalize_file(state, media_id).await? {
            return Ok(done);
        }
    }
    Err(anyhow::anyhow!(
        "media {media_id} moved to another file {TRIES} times while it was refinalized; try again"
    )
    .into())
}

/// Refinalizes the file media `media_id` names now; `None` if it moved to another meanwhile.
async fn refinalize_file(
    state: &AppState,
    media_id: MediaId,
) -> Result<Option<Refinalized>, RefinalizeError> {
    let media = db::media::get(&state.db, media_id)
        .await
        .context("reading the media")?
        .ok_or(RefinalizeError::NotFound(media_id))?;
    let key = media.storage_key;
    crate::fault::hold("refinalize_read");
    let read = key.clone();
    let present = state
        .with_media(move |media| Ok(media.open(&read)?.is_some()))
        .await?;
    if !present {
        if moved(state, media_id, &key).await? {
            return Ok(None);
        }
        return Err(anyhow::anyhow!("the file of media {media_id} is missing").into());
    }
    let (stored_key, outcome) = match finalize_into_storage(state, Raw::Media(key.clone())).await {
        Ok(finalized) => finalized,
        // A file deleted while it was read: gone for good, or moved (an assembly).
        Err(err) if !err.is_bad_recording() && moved(state, media_id, &key).await? => {
            tracing::info!(media = %media_id, error = %err, "the media moved while it was refinalized; reading it again");
            return Ok(None);
        }
        Err(err) => return Err(err.into()),
    };
    let replaced = async {
        let mut tx = db::begin_write(&state.db).await?;
        if !db::media::replace_file(
            &mut *tx,
            media_id,
            &key,
            &stored_key,
            outcome.duration_secs,
            outcome.size,
        )
        .await?
        {
            return anyhow::Ok(false);
        }
        webhooks::record(
            &mut tx,
            &state.webhooks,
            Change::RecordingRefinalized(media_id),
        )
        .await?;
        tx.commit().await?;
        state.media_cache.forget(media_id);
        anyhow::Ok(true)
    }
    .await;
    let swapped = match replaced {
        Ok(swapped) => swapped,
        Err(err) => {
            discard(state, &stored_key).await;
            return Err(err.context("recording a refinalized file").into());
        }
    };
    if !swapped {
        // Made from a file the media no longer names: nobody's.
        discard(state, &stored_key).await;
        return Ok(None);
    }
    state.webhooks.wake();
    state
        .with_media(move |media| Ok(media.delete(&key)?))
        .await
        .context("deleting the replaced file")?;
    tracing::info!(
        media = %media_id,
        bytes = outcome.size,
        duration = outcome.duration_secs,
        cues = outcome.cue_points,
        "recording refinalized"
    );
    Ok(Some(Refinalized {
        storage_key: stored_key,
        duration_secs: outcome.duration_secs,
        size: outcome.size,
        cue_points: outcome.cue_points,
    }))
}

/// Whether media `media_id` no longer names `key` (moved to another file, or deleted: the next
/// read says which).
async fn moved(state: &AppState, media_id: MediaId, key: &str) -> anyhow::Result<bool> {
    let media = db::media::get(&state.db, media_id)
        .await
        .context("reading the media again")?;
    Ok(media.is_none_or(|media| media.storage_key != key))
}

/// Discards a file this refinalization made and no media names.
async fn discard(state: &AppState, key: &str) {
    let orphan = key.to_owned();
    if let Err(err) = state
        .with_media(move |media| Ok(media.discard(&orphan)?))
        .await
    {
        tracing::warn!(key, error = ?err, "could not delete a refinalized file no media names");
    }
}
