//! Posts, including lives.

use sqlx::{any::AnyExecutor, FromRow};

use crate::domain::{LiveStatus, PostId, UploadId};

/// A post with its author's name.
#[derive(Debug, Clone, FromRow)]
pub struct PostRow {
    /// Primary key (also the `live_id` of a live).
    pub id: PostId,
    /// Author's user id.
    pub author_id: i64,
    /// Author's name.
    pub author_username: String,
    /// Author's `sub` in the host app, for a host user.
    pub author_external_id: Option<String>,
    /// The text (a live's title).
    pub content: String,
    /// Whether the post is a live.
    #[sqlx(try_from = "super::Flag")]
    pub is_live: bool,
    /// A live's status; `None` for a post that is not a live.
    pub live_status: Option<LiveStatus>,
    /// When the live started (Unix ms).
    pub started_at: Option<i64>,
    /// When the live ended (Unix ms).
    pub ended_at: Option<i64>,
    /// Distinct viewers over the live.
    pub viewer_count: i64,
    /// Most viewers at once.
    #[sqlx(try_from = "i64")]
    pub peak_viewers: u64,
    /// Chat messages posted during the live.
    pub chat_message_count: i64,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// When the recording's media time 0 happened (Unix ms), once bytes arrived.
    pub recording_started_at: Option<i64>,
    /// A poster uploaded during the live, not yet moved to its Media.
    pub poster_key: Option<String>,
}

impl PostRow {
    /// Whether this is a live that is recording now.
    pub fn is_in_progress(&self) -> bool {
        self.live_status == Some(LiveStatus::Live)
    }
}

const SELECT_POST: &str = "SELECT posts.id, posts.author_id,
    COALESCE(users.display_name, users.username) AS author_username,
    users.external_id AS author_external_id,
    posts.content, posts.is_live, posts.live_status, posts.started_at, posts.ended_at,
    posts.viewer_count, posts.peak_viewers, posts.chat_message_count, posts.created_at,
    posts.recording_started_at, posts.poster_key
    FROM posts JOIN users ON users.id = posts.author_id";

/// Creates a post for a live that starts now.
pub async fn insert_live(
    db: impl AnyExecutor<'_>,
    author_id: i64,
    content: &str,
    now: i64,
) -> Result<PostId, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO posts (author_id, content, is_live, live_status, started_at, created_at)
         VALUES ($1, $2, TRUE, 'live', $3, $4) RETURNING id",
    )
    .bind(author_id)
    .bind(content)
    .bind(now)
    .bind(now)
    .fetch_one(db)
    .await
}

/// One post by id.
pub async fn get(db: impl AnyExecutor<'_>, id: PostId) -> Result<Option<PostRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT_POST} WHERE posts.id = $1"))
        .bind(id.get())
        .fetch_optional(db)
        .await
}

/// One live by id: `None` when there is no such post or it is not a live.
pub async fn get_live(
    db: impl AnyExecutor<'_>,
    id: PostId,
) -> Result<Option<PostRow>, sqlx::Error> {
    Ok(get(db, id).await?.filter(|post| post.is_live))
}

/// A page of the feed: newest first, strictly older than `before_id` when given.
pub async fn page(
    db: impl AnyExecutor<'_>,
    before_id: Option<PostId>,
    limit: i64,
) -> Result<Vec<PostRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT_POST} WHERE posts.id < $1 ORDER BY posts.id DESC LIMIT $2"
    ))
    .bind(before_id.map_or(i64::MAX, PostId::get))
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Ends a live (`ended` or `interrupted`); returns false if it was not live anymore.
pub async fn finish_live(
    db: impl AnyExecutor<'_>,
    id: PostId,
    status: LiveStatus,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE posts SET live_status = $1, ended_at = $2 WHERE id = $3 AND live_status = 'live'",
    )
    .bind(status.as_str())
    .bind(now)
    .bind(id.get())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Lives still open whose last sign of life (upload activity or start) is older than `cutoff`.
pub async fn silent_lives(
    db: impl AnyExecutor<'_>,
    cutoff: i64,
) -> Result<Vec<PostId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT posts.id FROM posts
         WHERE posts.live_status = 'live'
           AND posts.started_at < $1
           AND COALESCE(
                 (SELECT MAX(uploads.last_activity_at) FROM uploads WHERE uploads.post_id = posts.id),
                 0) < $1
         ORDER BY posts.id",
    )
    .bind(cutoff)
    .fetch_all(db)
    .await
}

/// Dates the recording's media time 0, once: the first estimate is kept.
pub async fn set_recording_start(
    db: impl AnyExecutor<'_>,
    id: PostId,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE posts SET recording_started_at = $1 WHERE id = $2 AND recording_started_at IS NULL",
    )
    .bind(at)
    .bind(id.get())
    .execute(db)
    .await?;
    Ok(())
}

/// Records a viewer of a live; returns whether it is a new distinct viewer.
pub async fn add_viewer(
    tx: &mut sqlx::AnyConnection,
    id: PostId,
    viewer_id: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let added = sqlx::query(
        "INSERT INTO live_viewers (post_id, viewer_id, first_seen_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(id.get())
    .bind(viewer_id)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if added {
        sqlx::query("UPDATE posts SET viewer_count = viewer_count + 1 WHERE id = $1")
            .bind(id.get())
            .execute(&mut *tx)
            .await?;
    }
    Ok(added)
}

/// Raises the peak of a live's viewers (never lowers it).
pub async fn raise_peak(
    db: impl AnyExecutor<'_>,
    id: PostId,
    peak: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE posts SET peak_viewers = $1 WHERE id = $2 AND peak_viewers < $1")
        .bind(super::columns::signed(peak))
        .bind(id.get())
        .execute(db)
        .await?;
    Ok(())
}

/// Sets the poster of a live in progress; returns the key it replaces.
pub async fn swap_poster(
    tx: &mut sqlx::AnyConnection,
    id: PostId,
    key: &str,
) -> Result<Option<String>, sqlx::Error> {
    let old: Option<String> = sqlx::query_scalar("SELECT poster_key FROM posts WHERE id = $1")
        .bind(id.get())
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
    sqlx::query("UPDATE posts SET poster_key = $1 WHERE id = $2")
        .bind(key)
        .bind(id.get())
        .execute(&mut *tx)
        .await?;
    Ok(old)
}

/// Forgets a live's poster once its Media holds it.
pub async fn clear_poster(db: impl AnyExecutor<'_>, id: PostId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE posts SET poster_key = NULL WHERE id = $1")
        .bind(id.get())
        .execute(db)
        .await?;
    Ok(())
}

/// Every poster waiting on a live (post id, key).
pub async fn poster_keys(db: impl AnyExecutor<'_>) -> Result<Vec<(PostId, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, poster_key FROM posts WHERE poster_key IS NOT NULL ORDER BY id")
        .fetch_all(db)
        .await
}

/// How many lives are in progress.
pub async fn count_live(db: impl AnyExecutor<'_>) -> Result<u64, sqlx::Error> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM posts WHERE live_status = 'live'")
        .fetch_one(db)
        .await?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Every live, oldest first, only those with `status` when given.
pub async fn lives(
    db: impl AnyExecutor<'_>,
    status: Option<LiveStatus>,
) -> Result<Vec<PostRow>, sqlx::Error> {
    let status = status.map(LiveStatus::as_str);
    sqlx::query_as(&format!(
        "{SELECT_POST} WHERE posts.is_live AND ($1 IS NULL OR posts.live_status = $2)
         ORDER BY posts.id"
    ))
    .bind(status)
    .bind(status)
    .fetch_all(db)
    .await
}

/// Deletes a post (its chat, viewers, uploads and media links go with it by cascade); returns
/// the ids of the uploads it had, whose files the caller deletes after the commit.
pub async fn delete(
    tx: &mut sqlx::AnyConnection,
    id: PostId,
) -> Result<Option<Vec<UploadId>>, sqlx::Error> {
    let uploads: Vec<UploadId> = sqlx::query_scalar("SELECT id FROM uploads WHERE post_id = $1")
        .bind(id.get())
        .fetch_all(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM posts WHERE id = $1")
        .bind(id.get())
        .execute(&mut *tx)
        .await?;
    Ok((done.rows_affected() == 1).then_some(uploads))
}
