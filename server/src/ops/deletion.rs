//! Deleting a post with everything it owns: its media rows and their files and posters, its
//! uploads, chat and viewers. Rows go in one transaction, with the `post.deleted` webhook;
//! files only after the commit, so a crash leaves at worst files without rows, which the
//! start-up check removes.
//!
//! A live still recording is ended by its deletion: the PATCH being written finishes first
//! (its upload's lock is awaited), later ones find no upload (404), its viewers' streams end,
//! and nothing is finalized (the bytes are deleted with the rest).

use crate::{
    accounts::Caller,
    db,
    domain::PostId,
    locks::{self, LockGuard},
    state::AppState,
    webhooks::{self, Change},
};

/// Why a post was not deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeletionError {
    /// No such post.
    #[error("post {0} does not exist")]
    NotFound(PostId),
    /// The caller is neither the post's author nor an admin.
    #[error("post {0} belongs to another user")]
    Forbidden(PostId),
    /// The database, the storage or a lock failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for DeletionError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(err.into())
    }
}

/// What a deletion removed.
#[derive(Debug, Clone, Default)]
pub struct Deleted {
    /// Stored files removed (recordings and posters).
    pub files: usize,
    /// Upload files removed.
    pub uploads: usize,
}

/// Deletes post `post_id` for `caller` (`DELETE /api/posts/{id}/`): its author, or a host
/// token with the admin role.
pub async fn delete_post_as(
    state: &AppState,
    caller: &Caller,
    post_id: PostId,
) -> Result<Deleted, DeletionError> {
    // The author of a post never changes, so checking before the deletion locks is enough.
    let post = db::posts::get(&state.db, post_id)
        .await?
        .ok_or(DeletionError::NotFound(post_id))?;
    if post.author_id != caller.user.id && !caller.admin {
        return Err(DeletionError::Forbidden(post_id));
    }
    delete_post(state, post_id).await
}

/// Deletes post `post_id` and what it owns.
pub async fn delete_post(state: &AppState, post_id: PostId) -> Result<Deleted, DeletionError> {
    // A live in progress has its uploads' writers locked under it.
    let _live = state.locks.lock(&locks::live_key(post_id)).await?;
    let post = db::posts::get(&state.db, post_id)
        .await?
        .ok_or(DeletionError::NotFound(post_id))?;
    let recording = post.is_in_progress();
    let mut writers: Vec<LockGuard> = Vec::new();
    if recording {
        for upload in db::uploads::open_ids_for_post(&state.db, post_id).await? {
            writers.push(state.locks.lock(&locks::upload_key(&upload)).await?);
        }
    }
    let mut tx = db::begin_write(&state.db).await?;
    let mut keys = db::media::delete_for_post(&mut tx, post_id).await?;
    keys.extend(post.poster_key);
    let uploads = db::posts::delete(&mut tx, post_id)
        .await?
        .ok_or(DeletionError::NotFound(post_id))?;
    webhooks::record(&mut tx, &state.webhooks, Change::PostDeleted(post_id)).await?;
    tx.commit().await?;
    state.media_cache.forget_keys(&keys);
    state.webhooks.wake();
    drop(writers);
    let deleted = Deleted {
        files: keys.len(),
        uploads: uploads.len(),
    };
    state
        .with_media(move |media| {
            for key in keys {
                media.delete(&key)?;
            }
            Ok(())
        })
        .await?;
    state
        .with_uploads(move |store| {
            for id in uploads {
                store.delete(&id)?;
            }
            Ok(())
        })
        .await?;
    if recording {
        // Viewers on every node see the stream end; the room finds no post, so no `ended`.
        crate::live::announce_end(state, post_id).await;
    }
    tracing::info!(
        post = %post_id,
        files = deleted.files,
        uploads = deleted.uploads,
        "post deleted"
    );
    Ok(deleted)
}
