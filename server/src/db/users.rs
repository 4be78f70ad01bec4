//! Users and their sessions.

use sqlx::{any::AnyExecutor, FromRow};

/// A user as other tables show it.
#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    /// Primary key.
    pub id: i64,
    /// Login name.
    pub username: String,
}

/// A user with the password hash, for login only.
#[derive(Debug, FromRow)]
pub struct Credentials {
    /// Primary key.
    pub id: i64,
    /// Login name as stored.
    pub username: String,
    /// Argon2 PHC string.
    pub password_hash: String,
}

/// Inserts a user; a taken name fails with a unique violation on `users.username`.
pub async fn insert(
    db: impl AnyExecutor<'_>,
    username: &str,
    password_hash: &str,
    now: i64,
) -> Result<UserRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3)
         RETURNING id, username",
    )
    .bind(username)
    .bind(password_hash)
    .bind(now)
    .fetch_one(db)
    .await
}

/// Finds a user's credentials by name (case-insensitive).
pub async fn credentials(
    db: impl AnyExecutor<'_>,
    username: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    // lower() on both sides: the unique index is on lower(username) in both databases.
    sqlx::query_as(
        "SELECT id, username, password_hash FROM users WHERE lower(username) = lower($1)",
    )
    .bind(username)
    .fetch_optional(db)
    .await
}

/// Locks the user's row until the transaction ends, so that transactions checking then
/// adding to what the user did (the chat limit) run one at a time on every node. A write that
/// changes nothing: the portable `SELECT … FOR UPDATE` (on SQLite it takes the write lock).
pub async fn lock(db: impl AnyExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET created_at = created_at WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Records a session by the SHA-256 of its token.
pub async fn insert_session(
    db: impl AnyExecutor<'_>,
    token_hash: &[u8],
    user_id: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at) VALUES ($1, $2, $3)")
        .bind(token_hash)
        .bind(user_id)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

/// The user owning the session whose token hashes to `token_hash`.
pub async fn by_session(
    db: impl AnyExecutor<'_>,
    token_hash: &[u8],
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT users.id, users.username FROM sessions
         JOIN users ON users.id = sessions.user_id WHERE sessions.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(db)
    .await
}

/// Deletes the session whose token hashes to `token_hash`; whether there was one.
pub async fn delete_session(
    db: impl AnyExecutor<'_>,
    token_hash: &[u8],
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}
