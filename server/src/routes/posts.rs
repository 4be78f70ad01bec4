//! The feed: `GET /api/posts/`, `GET /api/posts/{id}/`, `GET /api/posts/{id}/chat/`.

use axum::{extract::State, routing::get, Router};
use serde::{Deserialize, Serialize};

use super::extract::{Json, Path, Query};
use crate::{
    db,
    domain::FeedCursor,
    error::ApiError,
    state::AppState,
    views::{self, ChatMessageView, PostView},
};

/// The feed routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/posts", get(feed))
        .route("/posts/{post_id}", get(one))
        .route("/posts/{post_id}/chat", get(chat))
}

#[derive(Deserialize)]
struct FeedParams {
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct FeedPage {
    results: Vec<PostView>,
    next_cursor: Option<String>,
}

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
    let results = views::posts(&state.db, rows).await?;
    Ok(Json(FeedPage {
        results,
        next_cursor,
    }))
}

async fn one(
    State(state): State<AppState>,
    Path(post_id): Path<i64>,
) -> Result<Json<PostView>, ApiError> {
    views::post(&state.db, post_id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

#[derive(Serialize)]
struct ChatPage {
    results: Vec<ChatMessageView>,
}

async fn chat(
    State(state): State<AppState>,
    Path(post_id): Path<i64>,
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
