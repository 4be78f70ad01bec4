//! The live room: `GET /api/posts/live/{id}/events` (SSE), `POST .../chat/`, `GET .../stream`.

use std::{convert::Infallible, time::Duration};

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::{get, post},
    Router,
};
use futures_util::StreamExt;
use livekeep_webm::Container;
use serde::Deserialize;

use crate::{
    domain::{ChatBody, PostId, ViewerId},
    http::{
        error::ApiError,
        extract::{AuthUser, Json, Path, Query},
        schemas::{Binary, ErrorBody},
    },
    live,
    posts::views::ChatMessageView,
    state::AppState,
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

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(events, chat, stream))]
pub struct Doc;

#[derive(Deserialize)]
struct EventsParams {
    viewer_id: Option<String>,
    #[serde(rename = "as")]
    role: Option<String>,
}

/// Server-Sent Events of a live: `viewers` (ViewerCounts), `chat` (ChatMessage), `ended` (Post). Each open connection is one viewer; a reconnection with the same `viewer_id` is the same viewer.
#[utoipa::path(get, path = "/api/posts/live/{live_id}/events", tag = "live room",
    params(("live_id" = i64, Path, description = "The live (its post id)"), ("viewer_id" = String, Query, description = "A random id the page keeps across reconnections"), ("as" = Option<String>, Query, description = "`broadcaster`: the broadcaster's own page, not counted as a viewer")),
    responses(
        (status = 200, description = "`text/event-stream`: events `viewers` {viewers, peak_viewers}, `chat` ChatMessage, `ended` Post", body = crate::http::schemas::LiveEvent, content_type = "text/event-stream"),
        (status = 400, description = "`invalid_query`: a missing or malformed `viewer_id`, or an unknown `as`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ))]
async fn events(
    State(state): State<AppState>,
    Path(live_id): Path<PostId>,
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
    let feed = live::events::open(&state, live_id, counted)
        .await?
        .map(|event| Ok::<_, Infallible>(Event::default().event(event.name).data(event.data)));
    Ok(Sse::new(feed).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// A chat message to post.
#[derive(Deserialize, utoipa::ToSchema)]
struct ChatBodyJson {
    /// 1–500 characters after trimming, no control characters or bidirectional overrides.
    #[schema(min_length = 1, max_length = 500)]
    body: String,
}

/// Posts in a live's chat (only while live; 5 messages per 10 s per user).
#[utoipa::path(post, path = "/api/posts/live/{live_id}/chat/", tag = "live room",
    params(("live_id" = i64, Path, description = "The live (its post id)")),
    request_body = ChatBodyJson,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The message, with its offset on the recording's timeline", body = ChatMessageView),
        (status = 400, description = "`invalid_chat_body` (1–500 characters after trimming), `invalid_json`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be `application/json`", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid bearer token", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`live_ended`", body = ErrorBody),
        (status = 429, description = "`rate_limited`; `Retry-After` says in how many seconds", body = ErrorBody),
    ))]
async fn chat(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(live_id): Path<PostId>,
    Json(request): Json<ChatBodyJson>,
) -> Result<(StatusCode, Json<ChatMessageView>), ApiError> {
    let body = ChatBody::parse(&request.body)
        .map_err(|err| ApiError::bad_request("invalid_chat_body", err.0))?;
    let message = live::chat::post(&state, &user, live_id, &body).await?;
    Ok((StatusCode::CREATED, Json(message)))
}

/// The live in progress, for people watching while it records: a progressive WebM (header, Tracks, then Clusters from the latest keyframe) or MP4 (the init segment, then fragments from the latest keyframe), as it was recorded.
#[utoipa::path(get, path = "/api/posts/live/{live_id}/stream", tag = "live room",
    params(("live_id" = i64, Path, description = "The live (its post id)")),
    responses(
        (status = 200, description = "`video/webm` or `video/mp4`, `Cache-Control: no-store`; the body grows while the live runs", body = inline(Binary), content_type = "video/webm"),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`live_ended` (watch the replay), `not_streamable` (a recording that cannot play before it is whole: a progressive MP4, or bytes that are neither WebM nor fragmented MP4)", body = ErrorBody),
    ))]
async fn stream(
    State(state): State<AppState>,
    Path(live_id): Path<PostId>,
) -> Result<Response, ApiError> {
    let (container, pieces) = live::stream::open(&state, live_id).await?;
    let mut response = Body::from_stream(pieces).into_response();
    let headers = response.headers_mut();
    let content_type = match container {
        Container::WebM => "video/webm",
        Container::Mp4 => "video/mp4",
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
