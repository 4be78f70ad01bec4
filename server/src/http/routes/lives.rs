//! `POST /api/posts/live/`, `PUT /api/posts/live/{live_id}/stop/` and `.../poster/`.

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, StatusCode},
    routing::{post, put},
    Router,
};
use serde::{Deserialize, Serialize};

use crate::{
    domain::{LiveContent, PostId, Sha256Hex, UploadId},
    http::{
        error::ApiError,
        extract::{AuthUser, Json, Path},
        schemas::{Binary, ErrorBody, OwnerErrors},
    },
    posts::views::{self, PostView},
    recording::{
        self,
        poster::{self, MAX_POSTER_BYTES},
        Claims, StopRequest,
    },
    state::AppState,
    uploads::tus,
};

/// The live routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/posts/live", post(start))
        .route("/posts/live/{live_id}/stop", put(stop))
        .route("/posts/live/{live_id}/poster", put(put_poster))
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(start, stop, put_poster))]
pub struct Doc;

/// What a live is about.
#[derive(Deserialize, utoipa::ToSchema)]
struct StartBody {
    /// The live's title: 1–500 characters after trimming.
    #[schema(min_length = 1, max_length = 500)]
    content: String,
}

/// A started live.
#[derive(Serialize, utoipa::ToSchema)]
struct Started {
    /// The live's id (its post id).
    live_id: i64,
    /// The live's Post, `live_status: live`.
    post: PostView,
    /// The live's tus upload: PATCH it while recording.
    upload_url: String,
}

/// Starts a live: creates the Post (`live_status: live`) and its tus upload (deferred length).
#[utoipa::path(post, path = "/api/posts/live/", tag = "lives",
    request_body = StartBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Started: the live id, its Post and `upload_url` to PATCH", body = Started),
        (status = 400, description = "`invalid_content` (blank or over 500 characters), `invalid_json`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be `application/json`", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid bearer token", body = ErrorBody),
    ))]
async fn start(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Json(body): Json<StartBody>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    let content = LiveContent::parse(&body.content).map_err(ApiError::invalid)?;
    let live_id = recording::start_live(&state, user.id, &content).await?;
    let upload = tus::create(&state, &user, live_id, None).await?;
    let post = views::post(&state.db, &state.public_url, live_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((
        StatusCode::CREATED,
        Json(Started {
            live_id: live_id.get(),
            post,
            upload_url: state
                .public_url
                .resolve(&format!("/api/uploads/{}", upload.id)),
        }),
    ))
}

/// `video_data` as the recorder sends it; every field is optional and checked.
#[derive(Deserialize, utoipa::ToSchema)]
struct VideoData {
    /// The live's `upload_url` (or `upload_id`).
    upload_url: Option<String>,
    /// The upload's id.
    upload_id: Option<String>,
    /// Refused with 400 `blob_url` when a `blob:` URL: the bytes must have been uploaded.
    url: Option<String>,
    /// Seconds, as the recorder measured them (the file's own duration wins).
    duration: Option<f64>,
    /// Bytes the recorder produced; 409 `size_mismatch` if the server holds another count.
    size: Option<u64>,
    /// Hex SHA-256 of every byte produced, in order; 409 `checksum_mismatch` if it differs.
    sha256: Option<String>,
    /// As recorded, codecs included.
    mime_type: Option<String>,
    /// The Media's title; defaults to `Vidéo du live - <content>`.
    title: Option<String>,
    /// Must name this live when given.
    live_id: Option<i64>,
}

/// The stop request.
#[derive(Deserialize, utoipa::ToSchema)]
struct StopBody {
    /// What the recorder claims about its recording; absent when nothing was recorded (the
    /// live then ends without a Media, or its held bytes are finalized unchecked).
    video_data: Option<VideoData>,
}

fn parse_video_data(live_id: PostId, data: Option<VideoData>) -> Result<StopRequest, ApiError> {
    let Some(data) = data else {
        return Ok(StopRequest {
            upload: None,
            claims: Claims::default(),
        });
    };
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
    if data.live_id.is_some_and(|id| id != live_id.get()) {
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

/// Stops a live: checks the bytes held against `video_data` (size, SHA-256), finalizes them and answers the Post with its Media. Idempotent: a repeated stop returns the same Post and Media. A stop with nothing recorded (no body, no `video_data`, or `size: 0` with no byte uploaded) ends the live at once without a Media.
#[utoipa::path(put, path = "/api/posts/live/{live_id}/stop/", tag = "lives",
    params(("live_id" = i64, Path, description = "The live (its post id)")),
    request_body = StopBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The Post with its Media in `media_files`", body = PostView),
        (status = 400, description = "`blob_url`, `invalid_duration`, `upload_mismatch`, `live_mismatch`, `invalid_upload`, `invalid_recording`, `invalid_json`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be `application/json`", body = ErrorBody),
        OwnerErrors,
        (status = 409, description = "`size_mismatch`, `upload_incomplete` (a declared size or `Upload-Length` the server does not hold yet: send the rest, then stop again), `checksum_mismatch`", body = ErrorBody),
        (status = 410, description = "`upload_closed`", body = ErrorBody),
    ))]
async fn stop(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(live_id): Path<PostId>,
    body: Option<Json<StopBody>>,
) -> Result<Json<PostView>, ApiError> {
    let request = parse_video_data(live_id, body.and_then(|Json(body)| body.video_data))?;
    Ok(Json(
        recording::stop(&state, &user, live_id, request).await?,
    ))
}

/// Stores a live's poster frame (owner only; while live or after).
#[utoipa::path(put, path = "/api/posts/live/{live_id}/poster/", tag = "lives",
    params(("live_id" = i64, Path, description = "The live (its post id)")),
    request_body(content = inline(Binary), content_type = "image/jpeg", description = "A JPEG of at most 1 MiB"),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Stored"),
        OwnerErrors,
        (status = 409, description = "`no_recording`: the live ended without a recording", body = ErrorBody),
        (status = 413, description = "`too_large`: over 1 MiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `image/jpeg`, or bytes not starting with FF D8 FF", body = ErrorBody),
    ))]
async fn put_poster(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(live_id): Path<PostId>,
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
