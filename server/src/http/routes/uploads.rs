//! tus 1.0.0 on `/api/uploads/` and `/api/uploads/{id}`.

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};

use crate::http::schemas::{Binary, ErrorBody, OwnerErrors, UnsupportedTusVersion};
use crate::{
    db::uploads::UploadRow,
    domain::{http_date, PostId, UploadChecksum, UploadId, UploadMetadata},
    http::{
        error::ApiError,
        extract::{AuthUser, Path},
    },
    state::AppState,
    uploads::tus::{self, Patch},
};

/// The only protocol version spoken.
const TUS_VERSION: &str = "1.0.0";
/// Extensions advertised by `OPTIONS`.
const TUS_EXTENSIONS: &str = "creation,creation-defer-length,termination,checksum,expiration";

/// The upload routes, with the tus version check and `Tus-Resumable` on every answer.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/uploads", post(create).options(options))
        .route(
            "/uploads/{upload_id}",
            axum::routing::head(head)
                .patch(patch)
                .delete(terminate)
                .options(options_upload),
        )
        .layer(middleware::from_fn(tus_protocol))
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(options, options_upload, create, head, patch, terminate))]
pub struct Doc;

/// Rejects requests of another tus version (412) and stamps `Tus-Resumable` on answers.
async fn tus_protocol(request: Request, next: Next) -> Response {
    let version_ok = request.method() == Method::OPTIONS
        || request
            .headers()
            .get("tus-resumable")
            .is_some_and(|v| v.as_bytes() == TUS_VERSION.as_bytes());
    let mut response = if version_ok {
        next.run(request).await
    } else {
        ApiError::TusVersion.into_response()
    };
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request("invalid_header", format!("{name} is not text")))
        })
        .transpose()
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    header_str(headers, name)?
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ApiError::bad_request("invalid_header", format!("{name} must be a whole number"))
            })
        })
        .transpose()
}

/// The upload a path names; an id of the wrong shape names nothing (404).
fn parse_upload_id(raw: &str) -> Result<UploadId, ApiError> {
    UploadId::parse(raw).map_err(|_| ApiError::NotFound)
}

fn set(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// tus discovery.
#[utoipa::path(options, path = "/api/uploads/", tag = "uploads (tus 1.0.0)",
    responses(
        (status = 204, description = "`Tus-Version`, `Tus-Extension` (creation,creation-defer-length,termination,checksum,expiration), `Tus-Max-Size`, `Tus-Checksum-Algorithm` (sha1,sha256)"),
    ))]
async fn options(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    set(headers, "tus-version", TUS_VERSION.to_owned());
    set(headers, "tus-extension", TUS_EXTENSIONS.to_owned());
    set(
        headers,
        "tus-max-size",
        state.settings.max_upload_size.to_string(),
    );
    set(
        headers,
        "tus-checksum-algorithm",
        UploadChecksum::ADVERTISED.to_owned(),
    );
    response
}

/// tus discovery.
#[utoipa::path(options, path = "/api/uploads/{upload_id}", tag = "uploads (tus 1.0.0)",
    params(("upload_id" = String, Path, description = "32 lowercase hex digits, from `upload_url`")),
    responses(
        (status = 204, description = "As for `/api/uploads/`"),
    ))]
async fn options_upload(state: State<AppState>) -> Response {
    options(state).await
}

/// tus creation: another upload for one of the caller's lives.
#[utoipa::path(post, path = "/api/uploads/", tag = "uploads (tus 1.0.0)",
    params(("Tus-Resumable" = String, Header, description = "`1.0.0`"), ("Upload-Length" = Option<u64>, Header, description = "The final size, when known"), ("Upload-Defer-Length" = Option<String>, Header, description = "`1`: the size is set by a later PATCH"), ("Upload-Metadata" = String, Header, description = "Must carry `live_id <base64>`")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `Location`, `Upload-Expires`"),
        (status = 400, description = "`invalid_header`: no length or both, no `live_id` in the metadata", body = ErrorBody),
        OwnerErrors,
        UnsupportedTusVersion,
        (status = 410, description = "`live_ended`", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let length = header_u64(&headers, "upload-length")?;
    let deferred = header_str(&headers, "upload-defer-length")?;
    match (length, deferred) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_header",
                "send Upload-Length or Upload-Defer-Length, not both",
            ))
        }
        (None, Some(value)) if value.trim() != "1" => {
            return Err(ApiError::bad_request(
                "invalid_header",
                "Upload-Defer-Length must be 1",
            ))
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "invalid_header",
                "Upload-Length or Upload-Defer-Length: 1 is required",
            ))
        }
        _ => {}
    }
    let metadata = header_str(&headers, "upload-metadata")?
        .map(UploadMetadata::parse)
        .transpose()
        .map_err(ApiError::invalid)?
        .unwrap_or_default();
    let live_id = metadata
        .get("live_id")
        .and_then(|id| id.trim().parse::<i64>().ok())
        .map(PostId::new)
        .ok_or_else(|| {
            ApiError::bad_request("invalid_header", "Upload-Metadata must carry the live_id")
        })?;
    let upload = tus::create(&state, &user, live_id, length).await?;
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    let location = state
        .public_url
        .resolve(&format!("/api/uploads/{}", upload.id));
    set(headers, "location", location);
    set(headers, "upload-offset", "0".to_owned());
    set(headers, "upload-expires", http_date(upload.expires_at));
    Ok(response)
}

fn describe(headers: &mut HeaderMap, row: &UploadRow, offset: u64) {
    set(headers, "upload-offset", offset.to_string());
    match row.length {
        Some(length) => set(headers, "upload-length", length.to_string()),
        None => set(headers, "upload-defer-length", "1".to_owned()),
    }
    set(headers, "upload-expires", http_date(row.expires_at));
}

/// tus offset: how many bytes the server holds durably.
#[utoipa::path(head, path = "/api/uploads/{upload_id}", tag = "uploads (tus 1.0.0)",
    params(("upload_id" = String, Path, description = "32 lowercase hex digits, from `upload_url`"), ("Tus-Resumable" = String, Header, description = "`1.0.0`")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`Upload-Offset`, `Upload-Length` or `Upload-Defer-Length: 1`, `Upload-Expires`, `Cache-Control: no-store`"),
        OwnerErrors,
        UnsupportedTusVersion,
        (status = 410, description = "`upload_closed` or `upload_expired`", body = ErrorBody),
    ))]
async fn head(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(upload_id): Path<String>,
) -> Result<Response, ApiError> {
    let upload = tus::status(&state, &user, &parse_upload_id(&upload_id)?).await?;
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    describe(headers, &upload.row, upload.offset);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// tus append; answered only after the bytes are synced and the offset committed.
#[utoipa::path(patch, path = "/api/uploads/{upload_id}", tag = "uploads (tus 1.0.0)",
    params(("upload_id" = String, Path, description = "32 lowercase hex digits, from `upload_url`"), ("Tus-Resumable" = String, Header, description = "`1.0.0`"), ("Upload-Offset" = u64, Header, description = "Bytes the server holds, from HEAD"), ("Upload-Length" = Option<u64>, Header, description = "Once, when the length was deferred"), ("Upload-Checksum" = Option<String>, Header, description = "`sha1 <base64>` or `sha256 <base64>` of this body")),
    request_body(content = inline(Binary), content_type = "application/offset+octet-stream", description = "The next bytes of the recording"),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Stored: `Upload-Offset`, `Upload-Expires`"),
        (status = 400, description = "`invalid_header`, `length_already_set`, `invalid_length`, `body_timeout`, `body_interrupted`", body = ErrorBody),
        OwnerErrors,
        UnsupportedTusVersion,
        (status = 409, description = "`offset_mismatch`: nothing was written", body = ErrorBody),
        (status = 410, description = "`upload_closed` or `upload_expired`", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: wrong Content-Type, or first bytes neither WebM nor MP4", body = ErrorBody),
        (status = 423, description = "`locked`: another PATCH of this upload is running", body = ErrorBody),
        (status = 460, description = "`checksum_mismatch`: the chunk was discarded", body = ErrorBody),
        (status = 507, description = "`insufficient_storage`: the PATCH was rolled back", body = ErrorBody),
    ))]
async fn patch(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(upload_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if header_str(&headers, "content-type")?.map(str::trim)
        != Some("application/offset+octet-stream")
    {
        return Err(ApiError::UnsupportedMediaType(
            "a PATCH must have Content-Type: application/offset+octet-stream".to_owned(),
        ));
    }
    let offset = header_u64(&headers, "upload-offset")?
        .ok_or_else(|| ApiError::bad_request("invalid_header", "Upload-Offset is required"))?;
    let checksum = header_str(&headers, "upload-checksum")?
        .map(UploadChecksum::parse)
        .transpose()
        .map_err(|err| ApiError::bad_request("invalid_checksum", err.0))?;
    let patch = Patch {
        offset,
        length: header_u64(&headers, "upload-length")?,
        checksum,
        content_length: header_u64(&headers, "content-length")?,
    };
    let id = parse_upload_id(&upload_id)?;
    let appended = tus::append(&state, &user, &id, patch, body.into_data_stream()).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    set(
        response.headers_mut(),
        "upload-offset",
        appended.offset.to_string(),
    );
    set(
        response.headers_mut(),
        "upload-expires",
        http_date(appended.expires_at),
    );
    Ok(response)
}

/// tus termination: the bytes are deleted.
#[utoipa::path(delete, path = "/api/uploads/{upload_id}", tag = "uploads (tus 1.0.0)",
    params(("upload_id" = String, Path, description = "32 lowercase hex digits, from `upload_url`"), ("Tus-Resumable" = String, Header, description = "`1.0.0`")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        OwnerErrors,
        UnsupportedTusVersion,
    ))]
async fn terminate(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(upload_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    tus::terminate(&state, &user, &parse_upload_id(&upload_id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
