//! tus uploads.

use sqlx::{any::AnyExecutor, FromRow};

use super::columns::signed;
use crate::domain::{PostId, UploadId, UploadState};

/// An upload's row.
#[derive(Debug, Clone, FromRow)]
pub struct UploadRow {
    /// Its id (32 hex characters).
    pub id: UploadId,
    /// The user who may write it.
    pub owner_id: i64,
    /// The live it records.
    pub post_id: PostId,
    /// Committed offset: every byte below it was synced before it was written.
    #[sqlx(try_from = "i64")]
    pub offset: u64,
    /// Final length, once known.
    #[sqlx(try_from = "super::columns::NullableCount")]
    pub length: Option<u64>,
    /// Where it is in its life.
    pub state: UploadState,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// When it stops being resumable (Unix ms).
    pub expires_at: i64,
    /// Last creation or PATCH (Unix ms).
    pub last_activity_at: i64,
    /// The node that claimed its writing last (`None` before its first PATCH).
    pub writer: Option<String>,
}

/// An upload row's columns, in a macro so that `concat!` can build queries from them.
macro_rules! upload_columns {
    () => {
        r#"id, owner_id, post_id, "offset", length, state, created_at, expires_at,
    last_activity_at, writer"#
    };
}

const SELECT_UPLOAD: &str = concat!("SELECT ", upload_columns!(), " FROM uploads");

/// Creates an upload row.
pub async fn insert(
    db: impl AnyExecutor<'_>,
    id: &UploadId,
    owner_id: i64,
    post_id: PostId,
    length: Option<u64>,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO uploads (id, owner_id, post_id, length, created_at, expires_at, last_activity_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.as_str())
    .bind(owner_id)
    .bind(post_id.get())
    .bind(length.map(signed))
    .bind(now)
    .bind(expires_at)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// One upload by id.
pub async fn get(
    db: impl AnyExecutor<'_>,
    id: &UploadId,
) -> Result<Option<UploadRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT_UPLOAD} WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(db)
        .await
}

/// The upload of a live that most recently received bytes (the one to finalize).
pub async fn latest_for_post(
    db: impl AnyExecutor<'_>,
    post_id: PostId,
) -> Result<Option<UploadRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        r#"{SELECT_UPLOAD} WHERE post_id = $1 AND state = 'open'
           ORDER BY "offset" > 0 DESC, last_activity_at DESC, created_at DESC LIMIT 1"#
    ))
    .bind(post_id.get())
    .fetch_optional(db)
    .await
}

/// Records new committed offsets after their bytes were synced, extending the expiries, in
/// one statement (a group commit's batch): each `(id, offset, now, expires_at)`, at most 256,
/// one per upload.
pub async fn commit_offsets(
    db: impl AnyExecutor<'_>,
    commits: &[(&UploadId, u64, i64, i64)],
) -> Result<(), sqlx::Error> {
    if commits.is_empty() {
        return Ok(());
    }
    // `$n` written out (see `media::for_posts`); VALUES columns are column1… in both engines.
    let rows: Vec<String> = (0..commits.len())
        .map(|i| {
            let n = 4 * i;
            format!(
                "(CAST(${} AS TEXT), CAST(${} AS BIGINT), CAST(${} AS BIGINT), CAST(${} AS BIGINT))",
                n + 1,
                n + 2,
                n + 3,
                n + 4
            )
        })
        .collect();
    let sql = format!(
        r#"UPDATE uploads SET "offset" = v.column2, last_activity_at = v.column3,
               expires_at = v.column4
           FROM (VALUES {}) AS v WHERE uploads.id = v.column1"#,
        rows.join(", ")
    );
    commits
        .iter()
        .fold(sqlx::query(&sql), |query, (id, offset, now, expires_at)| {
            query
                .bind(id.as_str())
                .bind(signed(*offset))
                .bind(*now)
                .bind(*expires_at)
        })
        .execute(db)
        .await?;
    Ok(())
}

/// Makes `node` the upload's writer, before it stores anything; returns the row as it now is
/// (`None` if it is gone). The caller holds the upload's lock.
pub async fn claim(
    db: impl AnyExecutor<'_>,
    id: &UploadId,
    node: &str,
) -> Result<Option<UploadRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE uploads SET writer = $1 WHERE id = $2 RETURNING ",
        upload_columns!()
    ))
    .bind(node)
    .bind(id.as_str())
    .fetch_optional(db)
    .await
}

/// Moves the committed offset from `from` to `to` after the bytes between were synced,
/// extending the expiry, with the upload's index and SHA-256 states as of `to`; only while
/// `writer` is still the upload's writer and the offset still `from`. Returns whether it
/// moved: not when another node took the upload over meanwhile.
pub async fn commit_offset(
    db: impl AnyExecutor<'_>,
    id: &UploadId,
    moving: &OffsetMove<'_>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        r#"UPDATE uploads SET "offset" = $1, last_activity_at = $2, expires_at = $3,
           index_state = $4, sha256_state = $5
           WHERE id = $6 AND writer = $7 AND "offset" = $8"#,
    )
    .bind(signed(moving.to))
    .bind(moving.now)
    .bind(moving.expires_at)
    .bind(moving.index.state)
    .bind(moving.index.sha256)
    .bind(id.as_str())
    .bind(moving.writer)
    .bind(signed(moving.from))
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A move of an upload's committed offset ([`commit_offset`]).
#[derive(Debug, Clone, Copy)]
pub struct OffsetMove<'a> {
    /// The node committing, which must still be the upload's writer.
    pub writer: &'a str,
    /// The committed offset the PATCH began at, which must still be the upload's.
    pub from: u64,
    /// The new committed offset.
    pub to: u64,
    /// When the PATCH was stored (Unix ms): its last activity.
    pub now: i64,
    /// The new expiry (Unix ms).
    pub expires_at: i64,
    /// The index and SHA-256 states as of `to`.
    pub index: SavedIndex<'a>,
}

/// Saves an upload's index and SHA-256 states as of the offset committed with them in the same
/// transaction (the group commit's batches, which move the offsets in one statement).
pub async fn save_index_states(
    db: impl AnyExecutor<'_>,
    id: &UploadId,
    index: &SavedIndex<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE uploads SET index_state = $1, sha256_state = $2 WHERE id = $3")
        .bind(index.state)
        .bind(index.sha256)
        .bind(id.as_str())
        .execute(db)
        .await?;
    Ok(())
}

/// What a commit saves of an upload's index: the states as of its new offset, and the entries
/// learnt since the last save, appended to the entries log at `entries_start`.
#[derive(Debug, Clone, Default)]
pub struct IndexSave {
    /// The index's state.
    pub state: Vec<u8>,
    /// The SHA-256's state.
    pub sha256: Vec<u8>,
    /// Where the new entries start in the upload's entries log.
    pub entries_start: u64,
    /// The entries learnt since the last save (often empty).
    pub entries: Vec<u8>,
}

impl IndexSave {
    /// The states, as [`commit_offset`] and [`save_index_states`] write them.
    pub fn states(&self) -> SavedIndex<'_> {
        SavedIndex {
            state: &self.state,
            sha256: &self.sha256,
        }
    }
}

/// An upload's index and SHA-256 states, as saved with an offset.
#[derive(Debug, Clone, Copy)]
pub struct SavedIndex<'a> {
    /// The index's state.
    pub state: &'a [u8],
    /// The SHA-256's state.
    pub sha256: &'a [u8],
}

/// Appends entries to an upload's index log at `start` (the log's length before them).
pub async fn append_index_entries(
    db: impl AnyExecutor<'_>,
    id: &UploadId,
    start: u64,
    entries: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO upload_index_entries (upload_id, start, entries) VALUES ($1, $2, $3)")
        .bind(id.as_str())
        .bind(signed(start))
        .bind(entries)
        .execute(db)
        .await?;
    Ok(())
}

/// What was saved of an upload's index at its committed offset.
#[derive(Debug, Clone)]
pub struct LoadedIndex {
    /// The committed offset the states describe.
    pub offset: u64,
    /// The index's state and the SHA-256's, `None` when none was saved.
    pub states: Option<(Vec<u8>, Vec<u8>)>,
    /// The entries, concatenated in order.
    pub entries: Vec<u8>,
}

/// Reads an upload's saved index. Callers hold the upload's lock, so no commit moves it
/// between the two reads.
pub async fn load_index(
    db: &crate::db::Db,
    id: &UploadId,
) -> Result<Option<LoadedIndex>, sqlx::Error> {
    /// The committed offset, the index state and the SHA-256 state.
    type Row = (i64, Option<Vec<u8>>, Option<Vec<u8>>);
    let row: Option<Row> =
        sqlx::query_as(r#"SELECT "offset", index_state, sha256_state FROM uploads WHERE id = $1"#)
            .bind(id.as_str())
            .fetch_optional(db)
            .await?;
    let Some((offset, state, sha256)) = row else {
        return Ok(None);
    };
    let states = state.zip(sha256);
    let mut entries = Vec::new();
    if states.is_some() {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT entries FROM upload_index_entries WHERE upload_id = $1 ORDER BY start",
        )
        .bind(id.as_str())
        .fetch_all(db)
        .await?;
        entries = rows.concat();
    }
    Ok(Some(LoadedIndex {
        offset: u64::try_from(offset).unwrap_or(0),
        states,
        entries,
    }))
}

/// Forgets an upload's saved index (its bytes were found shorter than it says): it is rebuilt.
pub async fn clear_index(db: &crate::db::Db, id: &UploadId) -> Result<(), sqlx::Error> {
    let mut tx = crate::db::begin_write(db).await?;
    sqlx::query("DELETE FROM upload_index_entries WHERE upload_id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE uploads SET index_state = NULL, sha256_state = NULL WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Forgets the saved indexes of uploads that are no longer open (stopped, interrupted,
/// failed): they were for the stop. Not in the stop's own transaction: a long recording's
/// entries are megabytes, the one part of a stop that would grow with the recording. Returns
/// the uploads cleared; writes nothing when there is nothing to clear (it runs with every
/// sweep). Only uploads with a saved state are looked at (entries are never saved without one,
/// and the partial index `uploads_saved_index` lists just those).
pub async fn drop_closed_indexes(db: &crate::db::Db) -> Result<u64, sqlx::Error> {
    let left: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM uploads WHERE state <> $1 AND index_state IS NOT NULL LIMIT 1",
    )
    .bind(UploadState::Open.as_str())
    .fetch_optional(db)
    .await?;
    if left.is_none() {
        return Ok(0);
    }
    let mut tx = crate::db::begin_write(db).await?;
    sqlx::query(
        "DELETE FROM upload_index_entries WHERE upload_id IN
         (SELECT id FROM uploads WHERE state <> $1 AND index_state IS NOT NULL)",
    )
    .bind(UploadState::Open.as_str())
    .execute(&mut *tx)
    .await?;
    let cleared = sqlx::query(
        "UPDATE uploads SET index_state = NULL, sha256_state = NULL
         WHERE state <> $1 AND index_state IS NOT NULL",
    )
    .bind(UploadState::Open.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(cleared)
}

/// Lowers the committed offset to what the file really holds (crash recovery).
pub async fn lower_offset(
    db: impl AnyExecutor<'_>,
    id: &UploadId,
    offset: u64,
) -> Result<(), sqlx::Error> {
    let offset = signed(offset);
    sqlx::query(r#"UPDATE uploads SET "offset" = $1 WHERE id = $2 AND "offset" > $3"#)
        .bind(offset)
        .bind(id.as_str())
        .bind(offset)
        .execute(db)
        .await?;
    Ok(())
}

/// Sets the deferred length, once.
pub async fn set_length(
    db: impl AnyExecutor<'_>,
    id: &UploadId,
    length: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE uploads SET length = $1 WHERE id = $2 AND length IS NULL")
        .bind(signed(length))
        .bind(id.as_str())
        .execute(db)
        .await?;
    Ok(())
}

/// Moves an upload to another state.
pub async fn set_state(
    db: impl AnyExecutor<'_>,
    id: &UploadId,
    state: UploadState,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE uploads SET state = $1 WHERE id = $2")
        .bind(state.as_str())
        .bind(id.as_str())
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
    post_id: PostId,
    state: UploadState,
) -> Result<Vec<UploadId>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE uploads SET state = $1 WHERE post_id = $2 AND state = 'open' RETURNING id",
    )
    .bind(state.as_str())
    .bind(post_id.get())
    .fetch_all(db)
    .await
}

/// The ids of a live's uploads still accepting bytes.
pub async fn open_ids_for_post(
    db: impl AnyExecutor<'_>,
    post_id: PostId,
) -> Result<Vec<UploadId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM uploads WHERE post_id = $1 AND state = 'open' ORDER BY id")
        .bind(post_id.get())
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
pub async fn all_states(
    db: impl AnyExecutor<'_>,
) -> Result<Vec<(UploadId, UploadState)>, sqlx::Error> {
    sqlx::query_as("SELECT id, state FROM uploads")
        .fetch_all(db)
        .await
}
