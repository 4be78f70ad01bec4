//! Uploads left silent past their expiry stop being resumable: their bytes are deleted.

use crate::{
    db,
    domain::{now_millis, UploadState},
    locks,
    state::AppState,
};

/// Expires every open upload whose expiry has passed, unless a PATCH holds it right now.
pub async fn expire_stale(state: &AppState) -> anyhow::Result<()> {
    for upload in db::uploads::expired(&state.db, now_millis()).await? {
        let Some(_guard) = state.locks.try_lock(&locks::upload_key(&upload.id)).await? else {
            continue; // A PATCH is running; it will extend the expiry.
        };
        let still_expired = db::uploads::get(&state.db, &upload.id)
            .await?
            .is_some_and(|row| row.state == UploadState::Open && row.expires_at < now_millis());
        if !still_expired {
            continue;
        }
        db::uploads::set_state(&state.db, &upload.id, UploadState::Expired).await?;
        let id = upload.id.clone();
        state
            .with_uploads(move |uploads| Ok(uploads.delete(&id)?))
            .await?;
        tracing::info!(upload = %upload.id, "expired an upload");
    }
    Ok(())
}
