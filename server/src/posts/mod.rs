//! Posts and lives as the API shows them, and who may act on a live.

pub mod views;

use crate::{
    db::{self, posts::PostRow, users::UserRow, Db},
    domain::PostId,
};

/// Why the caller may not act on a live as its streamer.
#[derive(Debug, thiserror::Error)]
pub enum LiveAccessError {
    /// No such post, or it is not a live.
    #[error("live {0} does not exist")]
    NotFound(PostId),
    /// The live is another user's.
    #[error("live {0} belongs to another user")]
    Forbidden(PostId),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The live `id` if `user` streams it: the check before any change to a live (its uploads,
/// its stop, its poster).
pub async fn owned_live(db: &Db, user: &UserRow, id: PostId) -> Result<PostRow, LiveAccessError> {
    let post = db::posts::get_live(db, id)
        .await?
        .ok_or(LiveAccessError::NotFound(id))?;
    if post.author_id != user.id {
        return Err(LiveAccessError::Forbidden(id));
    }
    Ok(post)
}
