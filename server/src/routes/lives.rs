//! `POST /api/posts/live/`, `PUT /api/posts/live/{live_id}/stop/` and `.../poster/`.

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, StatusCode},
    routing::{post, put},
    Router,
};
use serde::{Deserialize, Serialize};

use super::extract::{Json, Path};
use crate::{
    auth::AuthUser,
    db,
    domain::{now_millis, LiveContent, Sha256Hex, UploadId},
    error::ApiError,
    poster::{self, MAX_POSTER_BYTES},
    recording::{self, Claims, StopRequest},
    state::AppState,
    tus,
    views::{self, PostView},
};

/// The live routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/posts/live", post(start))
        .route("/posts/live/{live_id}/stop", put(stop))
        .route("/posts/live/{live_id}/poster", put(put_poster))
}

#[derive(Deserialize)]
struct StartBody {
    content: String,
}

#[derive(Serialize)]
struct Started {
    live_id: i64,
    post: PostView,
    upload_url: String,
}

async fn start(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Json(body): Json<StartBody>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    let content = LiveContent::parse(&body.content).map_err(ApiError::invalid)?;
    let live_id =
        db::posts::insert_live(&state.db, user.id, content.as_str(), now_millis()).await?;
    let upload = tus::create(&state, &user, live_id, None).await?;
    let post = views::post(&state.db, live_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((
        StatusCode::CREATED,
        Json(Started {
            live_id,
            post,
            upload_url: format!("/api/uploads/{}", upload.id),
        }),
    ))
}

/// `video_data` as the recorder sends it; every field is optional and checked.
#[derive(Deserialize)]
struct VideoData {
    upload_url: Option<String>,
    upload_id: Option<String>,
    url: Option<String>,
    duration: Option<f64>,
    size: Option<u64>,
    sha256: Option<String>,
    mime_type: Option<String>,
    title: Option<String>,
    live_id: Option<i64>,
}

#[derive(Deserialize)]
struct StopBody {
    video_data: VideoData,
}

fn parse_video_data(live_id: i64, data: VideoData) -> Result<StopRequest, ApiError> {
    if data
        .url
        .as_deref()
        .is_some_and(|url| url.trim_start().starts_with("blob:"))
    {
        return Err(ApiError::bad_request(
            "blob_url",
            "a blob: URL exists only in the browser; upload the bytes with tus instead",
        ));
    }
    if data.live_id.is_some_and(|id| id != live_id) {
        return Err(ApiError::bad_request(
            "live_mismatch",
            "video_data.live_id names another live",
        ));
    }
    if let Some(duration) = data.duration {
        if !duration.is_finite() || duration < 0.0 {
            return Err(ApiError::bad_request(
                "invalid_duration",
                "video_data.duration must be a finite number of seconds, at least 0",
            ));
        }
    }
    let sha256 = data
        .sha256
        .as_deref()
        .map(Sha256Hex::parse)
        .transpose()
        .map_err(ApiError::invalid)?;
    let upload = match (data.upload_id.as_deref(), data.upload_url.as_deref()) {
        (Some(id), _) => Some(UploadId::parse(id)),
        (None, Some(url)) => Some(UploadId::from_url(url)),
        (None, None) => None,
    }
    .transpose()
    .map_err(|_| ApiError::bad_request("invalid_upload", "upload_id/upload_url names no upload"))?;
    Ok(StopRequest {
        upload,
        claims: Claims {
            size: data.size,
            sha256,
            duration: data.duration,
            mime_type: data.mime_type,
            title: data.title,
        },
    })
}

async fn stop(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(live_id): Path<i64>,
    Json(body): Json<StopBody>,
) -> Result<Json<PostView>, ApiError> {
    let request = parse_video_data(live_id, body.video_data)?;
    Ok(Json(
        recording::stop(&state, &user, live_id, request).await?,
    ))
}

async fn put_poster(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(live_id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if content_type.as_deref() != Some("image/jpeg") {
        return Err(ApiError::UnsupportedMediaType(
            "a poster must be sent with Content-Type: image/jpeg".to_owned(),
        ));
    }
    let jpeg = axum::body::to_bytes(body, MAX_POSTER_BYTES)
        .await
        .map_err(|_| ApiError::TooLarge("a poster may hold at most 1 MiB".to_owned()))?;
    poster::put(&state, &user, live_id, jpeg).await?;
    Ok(StatusCode::NO_CONTENT)
}
