//! Deleting a post with everything it owns: its media rows and their files and posters, its
//! uploads, chat and viewers. Rows go in one transaction; files only after the commit, so a
//! crash leaves at worst files without rows, which the start-up check removes.

use crate::{db, domain::UploadId, error::ApiError, locks, state::AppState};

/// What a deletion removed.
#[derive(Debug, Clone, Default)]
pub struct Deleted {
    /// Stored files removed (recordings and posters).
    pub files: usize,
    /// Upload files removed.
    pub uploads: usize,
}

/// Deletes post `post_id` and what it owns; 404 when there is no such post.
pub async fn delete_post(state: &AppState, post_id: i64) -> Result<Deleted, ApiError> {
    let _live = state.locks.lock(&locks::live_key(post_id)).await?;
    let post = db::posts::get(&state.db, post_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut tx = state.db.begin().await?;
    let mut keys = db::media::delete_for_post(&mut tx, post_id).await?;
    keys.extend(post.poster_key);
    let uploads = db::posts::delete(&mut tx, post_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    let deleted = Deleted {
        files: keys.len(),
        uploads: uploads.len(),
    };
    state
        .with_storage(move |s| {
            for key in keys {
                s.delete_media(&key)?;
            }
            for raw in uploads {
                if let Ok(id) = UploadId::parse(&raw) {
                    s.delete_upload(&id)?;
                }
            }
            Ok(())
        })
        .await?;
    tracing::info!(
        post = post_id,
        files = deleted.files,
        uploads = deleted.uploads,
        "post deleted"
    );
    Ok(deleted)
}
