//! tus uploads.

use sqlx::{any::AnyExecutor, FromRow};

/// An upload's row.
#[derive(Debug, Clone, FromRow)]
pub struct UploadRow {
    /// 32 hex characters.
    pub id: String,
    /// The user who may write it.
    pub owner_id: i64,
    /// The live it records.
    pub post_id: i64,
    /// Committed offset: every byte below it was synced before it was written.
    pub offset: i64,
    /// Final length, once known.
    pub length: Option<i64>,
    /// `open`, `finalized`, `terminated`, `expired` or `failed`.
    pub state: String,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// When it stops being resumable (Unix ms).
    pub expires_at: i64,
    /// Last creation or PATCH (Unix ms).
    pub last_activity_at: i64,
}

const SELECT_UPLOAD: &str = r#"SELECT id, owner_id, post_id, "offset", length, state,
    created_at, expires_at, last_activity_at FROM uploads"#;

/// Creates an upload row.
pub async fn insert(
    db: impl AnyExecutor<'_>,
    id: &str,
    owner_id: i64,
    post_id: i64,
    length: Option<i64>,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO uploads (id, owner_id, post_id, length, created_at, expires_at, last_activity_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(owner_id)
    .bind(post_id)
    .bind(length)
    .bind(now)
    .bind(expires_at)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// One upload by id.
pub async fn get(db: impl AnyExecutor<'_>, id: &str) -> Result<Option<UploadRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT_UPLOAD} WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The upload of a live that most recently received bytes (the one to finalize).
pub async fn latest_for_post(
    db: impl AnyExecutor<'_>,
    post_id: i64,
) -> Result<Option<UploadRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        r#"{SELECT_UPLOAD} WHERE post_id = $1 AND state = 'open'
           ORDER BY "offset" > 0 DESC, last_activity_at DESC, created_at DESC LIMIT 1"#
    ))
    .bind(post_id)
    .fetch_optional(db)
    .await
}

/// Records a new committed offset after its bytes were synced, extending the expiry.
pub async fn commit_offset(
    db: impl AnyExecutor<'_>,
    id: &str,
    offset: i64,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"UPDATE uploads SET "offset" = $1, last_activity_at = $2, expires_at = $3 WHERE id = $4"#,
    )
    .bind(offset)
    .bind(now)
    .bind(expires_at)
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Lowers the committed offset to what the file really holds (crash recovery).
pub async fn lower_offset(
    db: impl AnyExecutor<'_>,
    id: &str,
    offset: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(r#"UPDATE uploads SET "offset" = $1 WHERE id = $2 AND "offset" > $3"#)
        .bind(offset)
        .bind(id)
        .bind(offset)
        .execute(db)
        .await?;
    Ok(())
}

/// Sets the deferred length, once.
pub async fn set_length(
    db: impl AnyExecutor<'_>,
    id: &str,
    length: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE uploads SET length = $1 WHERE id = $2 AND length IS NULL")
        .bind(length)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Moves an upload to another state.
pub async fn set_state(db: impl AnyExecutor<'_>, id: &str, state: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE uploads SET state = $1 WHERE id = $2")
        .bind(state)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Open uploads whose expiry has passed.
pub async fn expired(db: impl AnyExecutor<'_>, now: i64) -> Result<Vec<UploadRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT_UPLOAD} WHERE state = 'open' AND expires_at < $1"
    ))
    .bind(now)
    .fetch_all(db)
    .await
}

/// Closes every open upload of a live (it ended); returns their ids so their files can go.
pub async fn close_for_post(
    db: impl AnyExecutor<'_>,
    post_id: i64,
    state: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE uploads SET state = $1 WHERE post_id = $2 AND state = 'open' RETURNING id",
    )
    .bind(state)
    .bind(post_id)
    .fetch_all(db)
    .await
}

/// Every upload still accepting bytes.
pub async fn open_uploads(db: impl AnyExecutor<'_>) -> Result<Vec<UploadRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT_UPLOAD} WHERE state = 'open'"))
        .fetch_all(db)
        .await
}

/// Every upload's id and state (for the start-up consistency check).
pub async fn all_states(db: impl AnyExecutor<'_>) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, state FROM uploads")
        .fetch_all(db)
        .await
}
