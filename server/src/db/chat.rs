//! Chat messages of lives.

use sqlx::{FromRow, SqliteExecutor};

/// A chat message with its author's name.
#[derive(Debug, Clone, FromRow)]
pub struct ChatRow {
    /// Primary key.
    pub id: i64,
    /// The live it was posted in.
    pub post_id: i64,
    /// Author's user id.
    pub author_id: i64,
    /// Author's name.
    pub author_username: String,
    /// The text.
    pub body: String,
    /// Seconds since the recording started.
    pub offset_secs: f64,
    /// Creation time (Unix ms).
    pub created_at: i64,
}

/// A post's messages, oldest first.
pub async fn for_post(
    db: impl SqliteExecutor<'_>,
    post_id: i64,
) -> Result<Vec<ChatRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT chat_messages.id, chat_messages.post_id, chat_messages.author_id,
            users.username AS author_username, chat_messages.body, chat_messages.offset_secs,
            chat_messages.created_at
         FROM chat_messages JOIN users ON users.id = chat_messages.author_id
         WHERE chat_messages.post_id = ? ORDER BY chat_messages.id",
    )
    .bind(post_id)
    .fetch_all(db)
    .await
}
