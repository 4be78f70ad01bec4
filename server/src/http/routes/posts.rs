//! The feed: `GET /api/posts/`, `GET /api/posts/{id}/`, `GET /api/posts/{id}/chat/`, and
//! `DELETE /api/posts/{id}/`.

use axum::{extract::State, http::StatusCode, routing::get, Router};
use serde::{Deserialize, Serialize};

use crate::{
    db,
    domain::{FeedCursor, PostId},
    http::{
        error::ApiError,
        extract::{AuthCaller, Json, Path, Query},
        schemas::ErrorBody,
    },
    ops::deletion,
    posts::views::{self, ChatMessageView, PostView},
    state::AppState,
};

/// The feed routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/posts", get(feed))
        .route("/posts/{post_id}", get(one).delete(delete))
        .route("/posts/{post_id}/chat", get(chat))
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(feed, one, delete, chat))]
pub struct Doc;

#[derive(Deserialize)]
struct FeedParams {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// A page of the feed.
#[derive(Serialize, utoipa::ToSchema)]
struct FeedPage {
    /// Posts, newest first.
    results: Vec<PostView>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// The feed, newest first, by keyset pages.
#[utoipa::path(get, path = "/api/posts/", tag = "feed",
    params(("limit" = Option<i64>, Query, description = "1–100, default 20"), ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page (opaque)")),
    responses(
        (status = 200, description = "A page and the cursor of the next one", body = FeedPage),
        (status = 400, description = "`invalid_query`: `limit` outside 1–100 or a malformed cursor", body = ErrorBody),
    ))]
async fn feed(
    State(state): State<AppState>,
    Query(params): Query<FeedParams>,
) -> Result<Json<FeedPage>, ApiError> {
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 100",
        ));
    }
    let before = params
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(FeedCursor::decode)
        .transpose()
        .map_err(|err| ApiError::bad_request("invalid_query", err.0))?;
    // One extra row tells whether another page exists.
    let mut rows = db::posts::page(&state.db, before.map(|c| c.before_id), limit + 1).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        rows.last()
            .map(|last| FeedCursor { before_id: last.id }.encode())
    } else {
        None
    };
    let results = views::posts(&state.db, &state.public_url, rows).await?;
    Ok(Json(FeedPage {
        results,
        next_cursor,
    }))
}

/// One post.
#[utoipa::path(get, path = "/api/posts/{post_id}/", tag = "feed",
    params(("post_id" = i64, Path, description = "The post")),
    responses(
        (status = 200, description = "The post", body = PostView),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ))]
async fn one(
    State(state): State<AppState>,
    Path(post_id): Path<PostId>,
) -> Result<Json<PostView>, ApiError> {
    views::post(&state.db, &state.public_url, post_id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// Deletes a post with its media, their files and posters, its uploads and chat: by its
/// author, or with a host token whose `role` is `admin`. A live still recording is ended by
/// it: the PATCH in flight finishes, later ones get 404, its viewers' streams close.
#[utoipa::path(delete, path = "/api/posts/{post_id}/", tag = "feed",
    params(("post_id" = i64, Path, description = "The post")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted, with everything it owned"),
        (status = 401, description = "`unauthenticated`: no valid bearer token", body = ErrorBody),
        (status = 403, description = "`forbidden`: another user's post, and no admin role", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ))]
async fn delete(
    State(state): State<AppState>,
    AuthCaller(caller): AuthCaller,
    Path(post_id): Path<PostId>,
) -> Result<StatusCode, ApiError> {
    deletion::delete_post_as(&state, &caller, post_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A post's chat.
#[derive(Serialize, utoipa::ToSchema)]
struct ChatPage {
    /// Messages, oldest first.
    results: Vec<ChatMessageView>,
}

/// A post's chat, oldest first.
#[utoipa::path(get, path = "/api/posts/{post_id}/chat/", tag = "feed",
    params(("post_id" = i64, Path, description = "The post")),
    responses(
        (status = 200, description = "The messages", body = ChatPage),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ))]
async fn chat(
    State(state): State<AppState>,
    Path(post_id): Path<PostId>,
) -> Result<Json<ChatPage>, ApiError> {
    if db::posts::get(&state.db, post_id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let results = db::chat::for_post(&state.db, post_id)
        .await?
        .into_iter()
        .map(ChatMessageView::from)
        .collect();
    Ok(Json(ChatPage { results }))
}
