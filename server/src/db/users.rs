//! Users and their sessions.

use sqlx::{any::AnyExecutor, FromRow};

/// A user as other tables show it.
#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    /// Primary key.
    pub id: i64,
    /// The name shown: a built-in account's login name, a host user's display name (queries
    /// read it as `COALESCE(users.display_name, users.username)`).
    pub username: String,
    /// A host user's `sub` in the host app; `None` for a built-in account.
    pub external_id: Option<String>,
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
         RETURNING id, username, external_id",
    )
    .bind(username)
    .bind(password_hash)
    .bind(now)
    .fetch_one(db)
    .await
}

/// Whether `err` is the unique violation of a taken name (from [`insert`]).
///
/// PostgreSQL names the violated index; SQLite names the columns (or the index, for an index
/// on an expression).
pub fn is_name_taken(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    let on_username = db
        .constraint()
        .is_some_and(|name| name.starts_with("users_username"))
        || db.message().contains("users.username")
        || db.message().contains("users_username_lower");
    db.is_unique_violation() && on_username
}

/// Finds a built-in account's credentials by name (case-insensitive); host users have none.
pub async fn credentials(
    db: impl AnyExecutor<'_>,
    username: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    // lower() on both sides: the unique index is on lower(username) in both databases.
    sqlx::query_as(
        "SELECT id, username, password_hash FROM users
         WHERE lower(username) = lower($1) AND external_id IS NULL",
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
        "SELECT users.id, COALESCE(users.display_name, users.username) AS username,
            users.external_id
         FROM sessions JOIN users ON users.id = sessions.user_id WHERE sessions.token_hash = $1",
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

/// A host user's row, if one was seen before: its id and display name.
pub async fn by_external_id(
    db: impl AnyExecutor<'_>,
    issuer: &str,
    subject: &str,
) -> Result<Option<(i64, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, display_name FROM users WHERE external_issuer = $1 AND external_id = $2",
    )
    .bind(issuer)
    .bind(subject)
    .fetch_optional(db)
    .await
}

/// Creates the host user `(issuer, subject)` under the internal login `handle`, or renames it
/// when another request created it first; returns its id.
pub async fn upsert_external(
    db: impl AnyExecutor<'_>,
    issuer: &str,
    subject: &str,
    handle: &str,
    display_name: &str,
    now: i64,
) -> Result<i64, sqlx::Error> {
    // `password_hash` is not a PHC string, so no password ever matches it.
    sqlx::query_scalar(
        "INSERT INTO users (username, password_hash, created_at, external_issuer, external_id,
                            display_name)
         VALUES ($1, '!', $2, $3, $4, $5)
         ON CONFLICT (external_issuer, external_id)
         DO UPDATE SET display_name = excluded.display_name
         RETURNING id",
    )
    .bind(handle)
    .bind(now)
    .bind(issuer)
    .bind(subject)
    .bind(display_name)
    .fetch_one(db)
    .await
}

/// Sets a host user's display name.
pub async fn rename_external(
    db: impl AnyExecutor<'_>,
    id: i64,
    display_name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
        .bind(display_name)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}
