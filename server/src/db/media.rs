//! Media files and their links to posts.

use sqlx::{any::AnyExecutor, FromRow};

use super::columns::signed;
use crate::domain::{MediaId, PostId};

/// A media row with its owner's name and, when listed for posts, the post it is linked to.
#[derive(Debug, Clone, FromRow)]
pub struct MediaRow {
    /// The post this row was listed for (0 when fetched alone).
    pub post_id: PostId,
    /// Primary key.
    pub id: MediaId,
    /// Owner's user id.
    pub user_id: i64,
    /// Owner's name.
    pub username: String,
    /// Owner's `sub` in the host app, for a host user.
    pub external_id: Option<String>,
    /// Display title.
    pub title: String,
    /// Display description.
    pub description: String,
    /// Always `video` for now.
    pub file_type: String,
    /// Key of the file in storage.
    pub storage_key: String,
    /// Key of a poster image, if any.
    pub poster_key: Option<String>,
    /// MIME type as recorded.
    pub mime_type: String,
    /// Seconds.
    pub duration: f64,
    /// Bytes of the stored file.
    pub size: i64,
    /// SHA-256 of the bytes as uploaded.
    pub original_sha256: String,
    /// Whether this is the recording of a live.
    #[sqlx(try_from = "super::Flag")]
    pub is_live_recording: bool,
    /// The live it records.
    pub live_post_id: Option<PostId>,
    /// Creation time (Unix ms).
    pub created_at: i64,
}

/// What is needed to create a media row.
#[derive(Debug, Clone)]
pub struct NewMedia<'a> {
    /// Owner.
    pub user_id: i64,
    /// Display title.
    pub title: &'a str,
    /// Display description.
    pub description: &'a str,
    /// Key of the committed file.
    pub storage_key: &'a str,
    /// MIME type.
    pub mime_type: &'a str,
    /// Seconds.
    pub duration: f64,
    /// Bytes of the stored file.
    pub size: u64,
    /// SHA-256 of the raw upload.
    pub original_sha256: &'a str,
    /// The live it records.
    pub live_post_id: PostId,
    /// Key of its poster image, if the live has one.
    pub poster_key: Option<&'a str>,
    /// Creation time (Unix ms).
    pub created_at: i64,
}

const MEDIA_COLUMNS: &str = "media.id, media.user_id,
    COALESCE(users.display_name, users.username) AS username, users.external_id, media.title,
    media.description, media.file_type, media.storage_key, media.poster_key, media.mime_type,
    media.duration, media.size, media.original_sha256, media.is_live_recording,
    media.live_post_id, media.created_at";

/// Inserts a live recording and links it to its post.
pub async fn insert_live_recording(
    tx: &mut sqlx::AnyConnection,
    new: &NewMedia<'_>,
) -> Result<MediaId, sqlx::Error> {
    let id: MediaId = sqlx::query_scalar(
        "INSERT INTO media (user_id, title, description, file_type, storage_key, mime_type,
            duration, size, original_sha256, is_live_recording, live_post_id, poster_key,
            created_at)
         VALUES ($1, $2, $3, 'video', $4, $5, $6, $7, $8, TRUE, $9, $10, $11) RETURNING id",
    )
    .bind(new.user_id)
    .bind(new.title)
    .bind(new.description)
    .bind(new.storage_key)
    .bind(new.mime_type)
    .bind(new.duration)
    .bind(signed(new.size))
    .bind(new.original_sha256)
    .bind(new.live_post_id.get())
    .bind(new.poster_key)
    .bind(new.created_at)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO media_files (post_id, media_id, position) VALUES ($1, $2, 0)")
        .bind(new.live_post_id.get())
        .bind(id.get())
        .execute(&mut *tx)
        .await?;
    Ok(id)
}

/// One media by id.
pub async fn get(db: impl AnyExecutor<'_>, id: MediaId) -> Result<Option<MediaRow>, sqlx::Error> {
    one_where(db, "media.id = $1", id.get()).await
}

/// The media row for which `condition`, on `media` with `$1` bound to `value`, holds.
async fn one_where(
    db: impl AnyExecutor<'_>,
    condition: &str,
    value: i64,
) -> Result<Option<MediaRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT 0 AS post_id, {MEDIA_COLUMNS} FROM media
         JOIN users ON users.id = media.user_id WHERE {condition}"
    ))
    .bind(value)
    .fetch_optional(db)
    .await
}

/// The media linked to each of `post_ids`, in link order.
pub async fn for_posts(
    db: impl AnyExecutor<'_>,
    post_ids: &[PostId],
) -> Result<Vec<MediaRow>, sqlx::Error> {
    if post_ids.is_empty() {
        return Ok(Vec::new());
    }
    // `$n` written out: the Any driver's query builder would emit `?`, which PostgreSQL refuses.
    let placeholders: Vec<String> = (1..=post_ids.len()).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT media_files.post_id, {MEDIA_COLUMNS} FROM media_files
         JOIN media ON media.id = media_files.media_id
         JOIN users ON users.id = media.user_id
         WHERE media_files.post_id IN ({})
         ORDER BY media_files.post_id, media_files.position, media.id",
        placeholders.join(", ")
    );
    post_ids
        .iter()
        .fold(sqlx::query_as(&sql), |query, id| query.bind(id.get()))
        .fetch_all(db)
        .await
}

/// The recording of a live, if it has one.
pub async fn for_live(
    db: impl AnyExecutor<'_>,
    post_id: PostId,
) -> Result<Option<MediaRow>, sqlx::Error> {
    one_where(db, "media.live_post_id = $1", post_id.get()).await
}

/// Sets a media's poster; returns the key it replaces.
pub async fn swap_poster(
    tx: &mut sqlx::AnyConnection,
    id: MediaId,
    key: &str,
) -> Result<Option<String>, sqlx::Error> {
    let old: Option<String> = sqlx::query_scalar("SELECT poster_key FROM media WHERE id = $1")
        .bind(id.get())
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
    sqlx::query("UPDATE media SET poster_key = $1 WHERE id = $2")
        .bind(key)
        .bind(id.get())
        .execute(&mut *tx)
        .await?;
    Ok(old)
}

/// Every media's id, file key and poster key (for the start-up consistency check).
pub async fn all_keys(
    db: impl AnyExecutor<'_>,
) -> Result<Vec<(MediaId, String, Option<String>)>, sqlx::Error> {
    sqlx::query_as("SELECT id, storage_key, poster_key FROM media ORDER BY id")
        .fetch_all(db)
        .await
}

/// Forgets a media's poster (its file is gone).
pub async fn clear_poster(db: impl AnyExecutor<'_>, id: MediaId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE media SET poster_key = NULL WHERE id = $1")
        .bind(id.get())
        .execute(db)
        .await?;
    Ok(())
}

/// Points a media at a new file with its duration and size, if it still names `from` (the file
/// the new one was made from); whether it did.
pub async fn replace_file(
    db: impl AnyExecutor<'_>,
    id: MediaId,
    from: &str,
    to: &str,
    duration: f64,
    size: u64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE media SET storage_key = $1, duration = $2, size = $3 \
         WHERE id = $4 AND storage_key = $5",
    )
    .bind(to)
    .bind(duration)
    .bind(signed(size))
    .bind(id.get())
    .bind(from)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the media of a post (linked to it or recorded by its live); returns the file and
/// poster keys they held, for deletion once the transaction is committed.
pub async fn delete_for_post(
    tx: &mut sqlx::AnyConnection,
    post_id: PostId,
) -> Result<Vec<String>, sqlx::Error> {
    let owned = "SELECT media_id FROM media_files WHERE post_id = $1
                 UNION SELECT id FROM media WHERE live_post_id = $1";
    let keys: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT storage_key, poster_key FROM media WHERE id IN ({owned})"
    ))
    .bind(post_id.get())
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(&format!("DELETE FROM media WHERE id IN ({owned})"))
        .bind(post_id.get())
        .execute(&mut *tx)
        .await?;
    Ok(keys
        .into_iter()
        .flat_map(|(file, poster)| std::iter::once(file).chain(poster))
        .collect())
}

/// The media stored under `key`, if any.
pub async fn id_for_key(
    db: impl AnyExecutor<'_>,
    key: &str,
) -> Result<Option<MediaId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM media WHERE storage_key = $1")
        .bind(key)
        .fetch_optional(db)
        .await
}

/// The media stored as layouts (`storage/layout.rs`), with their keys.
pub async fn layouts(db: impl AnyExecutor<'_>) -> Result<Vec<(MediaId, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, storage_key FROM media WHERE storage_key LIKE '%.layout' ORDER BY id",
    )
    .fetch_all(db)
    .await
}

/// The layout keys among the recordings of live `post`.
pub async fn layouts_of_post(
    db: impl AnyExecutor<'_>,
    post: PostId,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT storage_key FROM media WHERE live_post_id = $1 AND storage_key LIKE '%.layout'",
    )
    .bind(post.get())
    .fetch_all(db)
    .await
}

/// Moves a media from the file `from` to the file `to` holding the same bytes; false when it
/// no longer names `from` (deleted or refinalized meanwhile).
pub async fn move_file(
    db: impl AnyExecutor<'_>,
    id: MediaId,
    from: &str,
    to: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE media SET storage_key = $1 WHERE id = $2 AND storage_key = $3")
        .bind(to)
        .bind(id.get())
        .bind(from)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}
