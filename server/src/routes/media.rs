//! `GET /media/{id}` and `GET /media/{id}/poster`: stored files with Range, ETag and
//! Last-Modified support.

use std::path::Path as FsPath;

use anyhow::Context;
use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::extract::Path;
use super::openapi::{Binary, ErrorBody};
use crate::{
    db,
    error::ApiError,
    state::AppState,
    storage::{range, MediaSource},
};

/// The media routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/media/{media_id}", get(serve))
        .route("/media/{media_id}/poster", get(serve_poster))
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(serve, serve_poster))]
pub(super) struct Doc;

/// The recording, with Range, ETag and If-Range support.
#[utoipa::path(get, path = "/media/{media_id}", tag = "media",
    params(("media_id" = i64, Path, description = "The media"), ("Range" = Option<String>, Header, description = "`bytes=<first>-<last>`"), ("If-Range" = Option<String>, Header, description = "The ETag the partial download started with")),
    responses(
        (status = 200, description = "The file; `Accept-Ranges: bytes`, `ETag`, `Last-Modified`, `Content-Type` as recorded", body = inline(Binary), content_type = "video/webm"),
        (status = 206, description = "The requested range, `Content-Range`", body = inline(Binary), content_type = "video/webm"),
        (status = 304, description = "`If-None-Match` matched"),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 416, description = "Unsatisfiable range; `Content-Range: bytes */<size>`"),
    ))]
async fn serve(
    State(state): State<AppState>,
    Path(media_id): Path<i64>,
    request: Request,
) -> Result<Response, ApiError> {
    let media = db::media::get(&state.db, media_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let source = state.storage.media_source(&media.storage_key);
    let served = serve_stored(request, source, &media.storage_key, &media.mime_type).await?;
    served.ok_or_else(|| {
        tracing::error!(media = media_id, "media row without its file");
        ApiError::NotFound
    })
}

/// A recording's poster frame.
#[utoipa::path(get, path = "/media/{media_id}/poster", tag = "media",
    params(("media_id" = i64, Path, description = "The media")),
    responses(
        (status = 200, description = "The JPEG, `ETag`, immutable cache", body = inline(Binary), content_type = "image/jpeg"),
        (status = 304, description = "`If-None-Match` matched"),
        (status = 404, description = "`not_found`: no such media, or no poster", body = ErrorBody),
    ))]
async fn serve_poster(
    State(state): State<AppState>,
    Path(media_id): Path<i64>,
    request: Request,
) -> Result<Response, ApiError> {
    let key = db::media::get(&state.db, media_id)
        .await?
        .and_then(|media| media.poster_key)
        .ok_or(ApiError::NotFound)?;
    let source = state.storage.media_source(&key);
    let served = serve_stored(request, source, &key, "image/jpeg").await?;
    served.ok_or_else(|| {
        tracing::error!(media = media_id, "poster key without its file");
        ApiError::NotFound
    })
}

/// Bytes read from disk per blocking hop while serving a file; bounds the memory of one response.
const READ_CHUNK: usize = 1 << 20;

/// Range reads running at once on the blocking pool.
const RANGE_READERS: usize = 4;

/// The largest range answered from one blocking read; larger ones and whole files stream.
const SMALL_RANGE: u64 = 2 << 20;

/// A player's range (one `bytes=` range up to [`SMALL_RANGE`]) answered from a single blocking
/// call that opens, stats and reads, rather than ServeFile's hand-off per step (open, stat,
/// seek, read: bench/findings.md, finding 1). `None` leaves the request to ServeFile.
async fn read_small_range(
    range: Option<String>,
    path: &FsPath,
) -> Result<Option<Response>, ApiError> {
    let Some(range) = range else {
        return Ok(None);
    };
    // A few reads at a time: dozens of 1 MiB copies at once would starve the async workers
    // that write the answers out, and every request would finish late together.
    static READERS: Semaphore = Semaphore::const_new(RANGE_READERS);
    let _reader = READERS.acquire().await.context("range readers closed")?;
    let path = path.to_owned();
    let read = tokio::task::spawn_blocking(move || range::read(&path, &range, SMALL_RANGE))
        .await
        .context("range read task")?
        .context("reading a range of a stored file")?;
    let Some(read) = read else {
        return Ok(None);
    };
    let mut response = Response::new(Body::from(read.bytes));
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    let headers = response.headers_mut();
    let content_range = format!("bytes {}-{}/{}", read.first, read.last, read.total);
    headers.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&content_range).context("Content-Range")?,
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(modified) = read.modified {
        headers.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_str(&httpdate(modified)).context("Last-Modified")?,
        );
    }
    Ok(Some(response))
}

/// An HTTP date, as ServeFile writes `Last-Modified`.
fn httpdate(time: std::time::SystemTime) -> String {
    let millis = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    crate::domain::http_date(millis)
}

/// Serves a stored file with Range, ETag and If-Range support; `None` if the file is missing.
async fn serve_stored(
    mut request: Request,
    source: MediaSource,
    key: &str,
    content_type: &str,
) -> Result<Option<Response>, ApiError> {
    // Stored files never change, so their random key identifies the content.
    let stem = key.split('.').next().unwrap_or_default();
    let etag = HeaderValue::from_str(&format!("\"{stem}\"")).context("building an ETag")?;
    let not_modified = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if not_modified {
        return Ok(Some(
            (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response(),
        ));
    }
    // If-Range: resume a partial download only if it is of this very file. Only our strong
    // ETag validates; a date cannot be trusted to be strong, so it yields the whole file.
    let range_still_valid = request
        .headers()
        .get(header::IF_RANGE)
        .map(|validator| validator == etag);
    if range_still_valid == Some(false) {
        request.headers_mut().remove(header::RANGE);
    }
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| request.method() == Method::GET)
        .map(str::to_owned);
    let path = match source {
        MediaSource::Local(path) => path,
        MediaSource::Object { store, location } => {
            let head = request.method() == Method::HEAD;
            let Some(response) = serve_object(store.as_ref(), &location, range, head).await? else {
                return Ok(None);
            };
            return Ok(Some(finish(response, content_type, etag)));
        }
    };
    let response = match read_small_range(range, &path).await? {
        Some(response) => response,
        None => {
            // One blocking-pool hop per MiB read instead of one per 64 KiB (the default).
            let response = ServeFile::new(path)
                .with_buf_chunk_size(READ_CHUNK)
                .oneshot(request)
                .await
                .context("serving a stored file")?
                .map(Body::new);
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            response
        }
    };
    Ok(Some(finish(response, content_type, etag)))
}

/// The headers every answer with a stored file carries.
fn finish(mut response: Response, content_type: &str, etag: HeaderValue) -> Response {
    let success = response.status().is_success();
    let headers = response.headers_mut();
    // As recorded, codecs included (`video/webm;codecs=vp9,opus`), not guessed from the name.
    if success {
        if let Ok(content_type) = HeaderValue::from_str(content_type) {
            headers.insert(header::CONTENT_TYPE, content_type);
        }
    }
    headers.insert(header::ETAG, etag);
    headers.insert(
        header::CACHE_CONTROL,
        // The key is random per file and files are never rewritten: cache for good.
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Serves an object: one ranged get streamed through for a `Range`, else the whole object
/// streamed; `None` if the object is missing. Memory stays bounded whatever the size.
async fn serve_object(
    store: &dyn object_store::ObjectStore,
    location: &object_store::path::Path,
    range: Option<String>,
    head: bool,
) -> Result<Option<Response>, ApiError> {
    use object_store::{GetOptions, GetRange, ObjectStoreExt};
    let meta = match store.head(location).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(err) => {
            return Err(anyhow::Error::new(err)
                .context("reading a stored object")
                .into())
        }
    };
    let total = meta.size;
    let modified = crate::domain::http_date(meta.last_modified.timestamp_millis());
    let resolved = match range.as_deref() {
        Some(header) => match range::resolve(header, total) {
            Some(resolved) => Some(resolved),
            None => {
                // Like ServeFile: a range that cannot be served as one part is refused.
                let unsatisfiable = (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{total}"))],
                );
                return Ok(Some(unsatisfiable.into_response()));
            }
        },
        None => None,
    };
    let (status, first, last) = match resolved {
        Some((first, last)) => (StatusCode::PARTIAL_CONTENT, first, last),
        None => (StatusCode::OK, 0, total.saturating_sub(1)),
    };
    let length = if total == 0 { 0 } else { last - first + 1 };
    let body = if head || length == 0 {
        Body::empty()
    } else {
        let options = GetOptions {
            range: Some(GetRange::Bounded(first..last + 1)),
            ..GetOptions::default()
        };
        match store.get_opts(location, options).await {
            Ok(result) => Body::from_stream(result.into_stream()),
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => {
                return Err(anyhow::Error::new(err)
                    .context("reading a stored object")
                    .into())
            }
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&modified).context("Last-Modified")?,
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let content_range = format!("bytes {first}-{last}/{total}");
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&content_range).context("Content-Range")?,
        );
    }
    Ok(Some(response))
}
