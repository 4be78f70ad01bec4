//! Chat messages of lives.

use sqlx::{any::AnyExecutor, FromRow};

use crate::domain::PostId;

/// A chat message with its author's name.
#[derive(Debug, Clone, FromRow)]
pub struct ChatRow {
    /// Primary key.
    pub id: i64,
    /// The live it was posted in.
    pub post_id: PostId,
    /// Author's user id.
    pub author_id: i64,
    /// Author's name.
    pub author_username: String,
    /// Author's `sub` in the host app, for a host user.
    pub author_external_id: Option<String>,
    /// The text.
    pub body: String,
    /// Seconds since the recording started.
    pub offset_secs: f64,
    /// Creation time (Unix ms).
    pub created_at: i64,
}

/// A post's messages, oldest first.
pub async fn for_post(
    db: impl AnyExecutor<'_>,
    post_id: PostId,
) -> Result<Vec<ChatRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT chat_messages.id, chat_messages.post_id, chat_messages.author_id,
            COALESCE(users.display_name, users.username) AS author_username,
            users.external_id AS author_external_id, chat_messages.body, chat_messages.offset_secs,
            chat_messages.created_at
         FROM chat_messages JOIN users ON users.id = chat_messages.author_id
         WHERE chat_messages.post_id = $1 ORDER BY chat_messages.id",
    )
    .bind(post_id.get())
    .fetch_all(db)
    .await
}

/// Counts a new message of a live that is still live, returning the time its offsets are
/// measured from (the recording's start, else the live's); `None` when it is not live.
pub async fn count_live_message(
    db: impl AnyExecutor<'_>,
    post_id: PostId,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE posts SET chat_message_count = chat_message_count + 1
         WHERE id = $1 AND live_status = 'live'
         RETURNING COALESCE(recording_started_at, started_at, created_at)",
    )
    .bind(post_id.get())
    .fetch_optional(db)
    .await
}

/// Inserts a message; returns its id.
pub async fn insert(
    db: impl AnyExecutor<'_>,
    post_id: PostId,
    author_id: i64,
    body: &str,
    offset_secs: f64,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO chat_messages (post_id, author_id, body, offset_secs, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(post_id.get())
    .bind(author_id)
    .bind(body)
    .bind(offset_secs)
    .bind(now)
    .fetch_one(db)
    .await
}

/// The latest `limit` messages of a post, oldest first (what a joining viewer is shown).
pub async fn latest(
    db: impl AnyExecutor<'_>,
    post_id: PostId,
    limit: i64,
) -> Result<Vec<ChatRow>, sqlx::Error> {
    let mut rows: Vec<ChatRow> = sqlx::query_as(
        "SELECT chat_messages.id, chat_messages.post_id, chat_messages.author_id,
            COALESCE(users.display_name, users.username) AS author_username,
            users.external_id AS author_external_id, chat_messages.body, chat_messages.offset_secs,
            chat_messages.created_at
         FROM chat_messages JOIN users ON users.id = chat_messages.author_id
         WHERE chat_messages.post_id = $1 ORDER BY chat_messages.id DESC LIMIT $2",
    )
    .bind(post_id.get())
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.reverse();
    Ok(rows)
}

/// Times of `author_id`'s latest `limit` messages after `since`, newest first.
pub async fn latest_times_by(
    db: impl AnyExecutor<'_>,
    author_id: i64,
    since: i64,
    limit: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT created_at FROM chat_messages WHERE author_id = $1 AND created_at > $2
         ORDER BY created_at DESC LIMIT $3",
    )
    .bind(author_id)
    .bind(since)
    .bind(limit)
    .fetch_all(db)
    .await
}
