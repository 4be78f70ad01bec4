//! A layout media on an object store becomes one object, after the stop has answered.
//!
//! At the stop the media is stored as a layout: its new head and the upload's own objects,
//! served at once as one byte range (`storage/layout.rs`). Here the store assembles it into
//! one object of the same stem (S3: a multipart upload of `UploadPartCopy`s, so the bytes
//! move inside the store; other stores: a streamed copy), the Media row moves to it in one
//! update that checks it still names the layout (as `refinalize.rs` swaps files), and the
//! layout goes with the upload objects it held. Same stem, same bytes: the ETag does not
//! change.
//!
//! A crash or a failure leaves the layout, which keeps serving; [`assemble_pending`] (at
//! start and in each sweep, on every node, one assembler per media by its lock) tries again.

use anyhow::Context;

use crate::{db, domain::MediaId, locks, state::AppState, storage::layout};

/// Assembles the layout `key` in the background, once its Media row is committed.
pub fn spawn(state: &AppState, key: &str) {
    let (state, key) = (state.clone(), key.to_owned());
    tokio::spawn(async move {
        let media = match db::media::id_for_key(&state.db, &key).await {
            Ok(Some(media)) => media,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(error = ?err, "could not find a media to assemble");
                return;
            }
        };
        if let Err(err) = assemble(&state, media, &key).await {
            tracing::warn!(media = %media, error = ?err, "could not assemble a media; it is retried");
        }
    });
}

/// Assembles the layouts still waiting (a crash or a failure left them).
pub async fn assemble_pending(state: &AppState) -> anyhow::Result<()> {
    if !state.media.assembles_layouts() {
        return Ok(());
    }
    for (media, key) in db::media::layouts(&state.db).await? {
        if let Err(err) = assemble(state, media, &key).await {
            tracing::warn!(media = %media, error = ?err, "could not assemble a media; it is retried");
        }
    }
    Ok(())
}

/// Assembles media `media`'s layout `key` and moves the Media to the result.
pub async fn assemble(state: &AppState, media: MediaId, key: &str) -> anyhow::Result<()> {
    if !layout::is_layout(key) {
        return Ok(());
    }
    let Some(_assembling) = state.locks.try_lock(&locks::assembly_key(media)).await? else {
        return Ok(());
    };
    let layout_key = key.to_owned();
    let upload = state
        .with_media(move |store| Ok(store.layout_upload(&layout_key)?))
        .await?;
    // A compaction would replace the objects being copied under the copy.
    let _compaction = match &upload {
        Some(upload) => Some(state.locks.lock(&locks::compaction_key(upload)).await?),
        None => None,
    };
    let started = std::time::Instant::now();
    let layout_key = key.to_owned();
    let Some(assembled) = state
        .with_media(move |store| Ok(store.assemble(&layout_key)?))
        .await?
    else {
        return Ok(());
    };
    let moved = db::media::move_file(&state.db, media, key, &assembled)
        .await
        .context("moving a media to its assembled file")?;
    if !moved {
        // The media was deleted or refinalized meanwhile: the new object is nobody's.
        let orphan = assembled.clone();
        state
            .with_media(move |store| Ok(store.discard(&orphan)?))
            .await?;
        return Ok(());
    }
    // Served from now on as the object the row names, not from the layout about to go.
    state.media_cache.forget_keys(&[key.to_owned()]);
    let old = key.to_owned();
    state
        .with_media(move |store| Ok(store.delete(&old)?))
        .await
        .context("deleting an assembled layout")?;
    tracing::info!(
        media = %media,
        key = %assembled,
        seconds = started.elapsed().as_secs_f64(),
        "media assembled into one object"
    );
    Ok(())
}
