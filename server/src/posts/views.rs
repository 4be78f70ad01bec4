//! The JSON shapes of API.md (`User`, `Post`, `Media`, `ChatMessage`) and how to load them.

use std::collections::HashMap;

use crate::db::Db;
use serde::Serialize;

use crate::{
    db::{self, chat::ChatRow, media::MediaRow, posts::PostRow},
    domain::{rfc3339, PostId, PublicUrl},
};

/// `User`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = User)]
pub struct UserView {
    /// User id.
    pub id: i64,
    /// Login name; for a user of the host app (JWT), the token's latest `name`.
    pub username: String,
    /// For a user of the host app, its `sub` there; absent for a built-in account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// `Media`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Media)]
pub struct MediaView {
    /// Media id.
    pub id: i64,
    /// Owner.
    pub user: UserView,
    /// Display title.
    pub title: String,
    /// Display description.
    pub description: String,
    /// `video`.
    pub file_type: String,
    /// Where to fetch the file: `/media/{id}`, absolute under `--public-url`.
    pub file_url: String,
    /// MIME type as recorded.
    pub mime_type: String,
    /// Seconds.
    pub duration: f64,
    /// Bytes of the stored file.
    pub size: i64,
    /// SHA-256 of the bytes as uploaded.
    pub original_sha256: String,
    /// Whether this is the recording of a live.
    pub is_live_recording: bool,
    /// The live it records.
    pub live_post: Option<i64>,
    /// Poster image URL (`/media/{id}/poster`, absolute under `--public-url`), if any.
    pub poster_url: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// `Post`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Post)]
pub struct PostView {
    /// Post id (the `live_id` of a live).
    pub id: i64,
    /// Author.
    pub author: UserView,
    /// Text (a live's title).
    pub content: String,
    /// Whether this post is a live.
    pub is_live: bool,
    /// `live`, `ended` or `interrupted`.
    pub live_status: Option<String>,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub ended_at: Option<String>,
    /// Distinct viewers over the live.
    pub viewer_count: i64,
    /// Most viewers at once.
    pub peak_viewers: i64,
    /// Chat messages posted during the live.
    pub chat_message_count: i64,
    /// The recordings.
    pub media_files: Vec<MediaView>,
    /// RFC 3339.
    pub created_at: String,
}

/// `ChatMessage`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ChatMessage)]
pub struct ChatMessageView {
    /// Message id.
    pub id: i64,
    /// The live's post id.
    pub post: i64,
    /// Author.
    pub author: UserView,
    /// Text.
    pub body: String,
    /// RFC 3339.
    pub created_at: String,
    /// Seconds since the recording started.
    pub offset: f64,
}

impl MediaView {
    /// The `Media` of `row`, its URLs resolved against `urls`.
    pub fn new(row: MediaRow, urls: &PublicUrl) -> Self {
        Self {
            file_url: urls.resolve(&format!("/media/{}", row.id)),
            id: row.id.get(),
            user: UserView {
                id: row.user_id,
                username: row.username,
                external_id: row.external_id,
            },
            title: row.title,
            description: row.description,
            file_type: row.file_type,
            mime_type: row.mime_type,
            duration: row.duration,
            size: row.size,
            original_sha256: row.original_sha256,
            is_live_recording: row.is_live_recording,
            live_post: row.live_post_id.map(PostId::get),
            poster_url: row
                .poster_key
                .map(|_| urls.resolve(&format!("/media/{}/poster", row.id))),
            created_at: rfc3339(row.created_at),
        }
    }
}

impl From<ChatRow> for ChatMessageView {
    fn from(row: ChatRow) -> Self {
        Self {
            id: row.id,
            post: row.post_id.get(),
            author: UserView {
                id: row.author_id,
                username: row.author_username,
                external_id: row.author_external_id,
            },
            body: row.body,
            created_at: rfc3339(row.created_at),
            offset: row.offset_secs,
        }
    }
}

fn post_view(row: PostRow, media_files: Vec<MediaView>) -> PostView {
    PostView {
        id: row.id.get(),
        author: UserView {
            id: row.author_id,
            username: row.author_username,
            external_id: row.author_external_id,
        },
        content: row.content,
        is_live: row.is_live,
        live_status: row.live_status.map(|status| status.as_str().to_owned()),
        started_at: row.started_at.map(rfc3339),
        ended_at: row.ended_at.map(rfc3339),
        viewer_count: row.viewer_count,
        peak_viewers: i64::try_from(row.peak_viewers).unwrap_or(i64::MAX),
        chat_message_count: row.chat_message_count,
        media_files,
        created_at: rfc3339(row.created_at),
    }
}

/// Builds `Post`s for rows, loading all their media in one query; URLs resolved against `urls`.
pub async fn posts(
    db: &Db,
    urls: &PublicUrl,
    rows: Vec<PostRow>,
) -> Result<Vec<PostView>, sqlx::Error> {
    let ids: Vec<PostId> = rows.iter().map(|row| row.id).collect();
    let media = db::media::for_posts(db, &ids).await?;
    Ok(assemble(rows, media, urls))
}

/// `Post`s of `rows` with their media from `media_rows`.
fn assemble(rows: Vec<PostRow>, media_rows: Vec<MediaRow>, urls: &PublicUrl) -> Vec<PostView> {
    let mut media: HashMap<PostId, Vec<MediaView>> = HashMap::new();
    for row in media_rows {
        media
            .entry(row.post_id)
            .or_default()
            .push(MediaView::new(row, urls));
    }
    rows.into_iter()
        .map(|row| {
            let files = media.remove(&row.id).unwrap_or_default();
            post_view(row, files)
        })
        .collect()
}

/// Loads one `Post` by id; URLs resolved against `urls`.
pub async fn post(db: &Db, urls: &PublicUrl, id: PostId) -> Result<Option<PostView>, sqlx::Error> {
    let Some(row) = db::posts::get(db, id).await? else {
        return Ok(None);
    };
    Ok(posts(db, urls, vec![row]).await?.pop())
}

/// Loads one `Post` by id on `conn`: inside a transaction, the Post as that transaction sees it;
/// URLs resolved against `urls`.
pub async fn post_in(
    conn: &mut sqlx::AnyConnection,
    urls: &PublicUrl,
    id: PostId,
) -> Result<Option<PostView>, sqlx::Error> {
    let Some(row) = db::posts::get(&mut *conn, id).await? else {
        return Ok(None);
    };
    let media = db::media::for_posts(&mut *conn, &[id]).await?;
    Ok(assemble(vec![row], media, urls).pop())
}
