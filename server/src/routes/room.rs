//! The live room: `GET /api/posts/live/{id}/events` (SSE), `POST .../chat/`, `GET .../stream`.

use std::time::Duration;

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{
        sse::{KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::{get, post},
    Router,
};
use serde::Deserialize;

use super::extract::{Json, Path, Query};
use crate::{
    auth::AuthUser,
    domain::{ChatBody, ViewerId},
    error::ApiError,
    live,
    state::AppState,
    views::ChatMessageView,
};

/// A comment this often keeps proxies from closing an idle event stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The live room routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/posts/live/{live_id}/events", get(events))
        .route("/posts/live/{live_id}/chat", post(chat))
        .route("/posts/live/{live_id}/stream", get(stream))
}

#[derive(Deserialize)]
struct EventsParams {
    viewer_id: Option<String>,
    #[serde(rename = "as")]
    role: Option<String>,
}

async fn events(
    State(state): State<AppState>,
    Path(live_id): Path<i64>,
    Query(params): Query<EventsParams>,
) -> Result<impl IntoResponse, ApiError> {
    let viewer = ViewerId::parse(params.viewer_id.as_deref().unwrap_or_default())
        .map_err(|err| ApiError::bad_request("invalid_query", err.0))?;
    let counted = match params.role.as_deref() {
        None | Some("viewer") => Some(viewer),
        Some("broadcaster") => None,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "`as` must be `broadcaster` or `viewer`",
            ))
        }
    };
    let feed = live::events::open(&state, live_id, counted).await?;
    Ok(Sse::new(feed).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

#[derive(Deserialize)]
struct ChatBodyJson {
    body: String,
}

async fn chat(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(live_id): Path<i64>,
    Json(request): Json<ChatBodyJson>,
) -> Result<(StatusCode, Json<ChatMessageView>), ApiError> {
    let body = ChatBody::parse(&request.body)
        .map_err(|err| ApiError::bad_request("invalid_chat_body", err.0))?;
    let message = live::chat::post(&state, &user, live_id, &body).await?;
    Ok((StatusCode::CREATED, Json(message)))
}

async fn stream(
    State(state): State<AppState>,
    Path(live_id): Path<i64>,
) -> Result<Response, ApiError> {
    let pieces = live::stream::open(&state, live_id).await?;
    let mut response = Body::from_stream(pieces).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/webm"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
