//! `GET /media/{id}` and `GET /media/{id}/poster`: stored files with Range, ETag and
//! Last-Modified support.

use std::{
    io::{Read, Seek, SeekFrom},
    path::Path as FsPath,
    sync::Arc,
};

use anyhow::Context;
use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, request::Parts, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::{
    domain::MediaId,
    http::{
        error::ApiError,
        extract::Path,
        schemas::{Binary, ErrorBody},
        serve::zero_copy::{Residency, ZeroCopy},
    },
    state::AppState,
    storage::{
        range::{self, RangeRead},
        MediaSource, MediaStore, Source, StoredObject,
    },
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
pub struct Doc;

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
    Path(media_id): Path<MediaId>,
    request: Request,
) -> Result<Response, ApiError> {
    serve_media(&state, media_id, request, Part::Recording).await
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
    Path(media_id): Path<MediaId>,
    request: Request,
) -> Result<Response, ApiError> {
    serve_media(&state, media_id, request, Part::Poster).await
}

/// Which file of a media a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The recording.
    Recording,
    /// Its poster frame.
    Poster,
}

/// Serves a media's recording or poster as the media cache knows it, without a query for a
/// media served lately; an entry that turns out stale (its file gone: replaced or deleted by
/// another node or the admin command; no poster yet) is read again from the database.
async fn serve_media(
    state: &AppState,
    media_id: MediaId,
    request: Request,
    part: Part,
) -> Result<Response, ApiError> {
    let (request, _) = request.into_parts();
    let (mut media, cached) = state
        .media_cache
        .get(&state.db, media_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut reloaded = false;
    loop {
        let target = match part {
            Part::Recording => Some((media.storage_key.as_str(), media.mime_type.as_str())),
            Part::Poster => media.poster_key.as_deref().map(|key| (key, "image/jpeg")),
        };
        if let Some((key, content_type)) = target {
            let source = state.media.source(key);
            // On an object store a recording is first a layout, then the object assembled from
            // it: the same bytes stored at two times. Its row's date stays while it moves.
            let dated = (part == Part::Recording && state.media.assembles_layouts()).then(|| {
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_millis(u64::try_from(media.created_at).unwrap_or(0))
            });
            let layout = matches!(source, MediaSource::Layout(_));
            match serve_stored(&request, state, source, key, content_type).await {
                Ok(Some(mut response)) => {
                    // Set on every answer with bytes: a layout assembled between its opening
                    // and its date's reading has no date of its own left.
                    if let Some(dated) = dated.filter(|_| response.status().is_success()) {
                        let date =
                            HeaderValue::from_str(&httpdate(dated)).context("Last-Modified")?;
                        response.headers_mut().insert(header::LAST_MODIFIED, date);
                    }
                    return Ok(response);
                }
                Ok(None) => {}
                // Its objects may have gone under the opening as the layout was assembled.
                Err(err) if layout && !reloaded => {
                    tracing::debug!(media = %media_id, error = ?err, "reading a layout again");
                }
                Err(err) => return Err(err),
            }
        }
        // Read again once when cached, or when the file the row named is gone: a layout
        // assembled meanwhile (an object store) is now the object the row names, same bytes.
        if reloaded || (!cached && target.is_none()) {
            if target.is_some() {
                tracing::error!(media = %media_id, ?part, "media row without its file");
            }
            return Err(ApiError::NotFound);
        }
        media = state
            .media_cache
            .reload(&state.db, media_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        reloaded = true;
    }
}

/// Bytes read from disk per blocking hop while serving a file; bounds the memory of one response.
const READ_CHUNK: usize = 1 << 20;

/// Range reads running at once on the blocking pool.
const RANGE_READERS: usize = 4;

/// The largest range answered from one blocking read; larger ones and whole files stream.
const SMALL_RANGE: u64 = 2 << 20;

/// A player's range (one `bytes=` range up to [`SMALL_RANGE`]) of a file read in a single
/// blocking call that opens, stats and reads, rather than ServeFile's hand-off per step (open,
/// stat, seek, read: bench/findings.md, finding 1). `None` leaves the request to ServeFile.
async fn answer_small_range(
    range: Option<String>,
    path: &FsPath,
) -> Result<Option<Response>, ApiError> {
    let Some(range) = range else {
        return Ok(None);
    };
    let path = path.to_owned();
    read_range(move || range::read(&path, &range, SMALL_RANGE)).await
}

/// A player's range of a local media answered at once, with no read and no system call but
/// `sendfile`: each piece's part of the range (a layout's head file or upload's, a plain file's
/// own bytes) leaves from the media's mapping, kept open from one range to the next. `None`
/// leaves the request to [`answer_small_range`] or [`serve_layout`] (not a local media, a range
/// it cannot satisfy or too large, a page not in the cache).
fn answer_mapped_range(
    state: &AppState,
    key: &str,
    range: &str,
    zero_copy: &ZeroCopy,
) -> Result<Option<Response>, ApiError> {
    // Kept open after the first range: a hash lookup, else an open (a layout: its small read
    // and two opens).
    let Some(files) = state
        .media
        .mapped_media(key)
        .context("opening a local media")?
    else {
        return Ok(None);
    };
    let Some((first, last)) = range::resolve(range, files.total) else {
        return Ok(None);
    };
    let length = last - first + 1;
    if length > SMALL_RANGE {
        return Ok(None);
    }
    let mut chunks = Vec::new();
    let mut at = 0u64;
    for piece in &files.pieces {
        let (start, end) = (at.max(first), (at + piece.len).min(last + 1));
        if start < end {
            let file = match piece.source {
                Source::Head => &files.head,
                Source::Upload => &files.data,
            };
            let (bytes, residency) = zero_copy
                .file_range(file, piece.offset + (start - at), end - start)
                .context("mapping a range of a local media")?;
            if residency == Residency::Cold {
                // Some page is on disk only: sendfile would wait for it on an async worker.
                return Ok(None);
            }
            chunks.push(bytes);
        }
        at += piece.len;
        if at > last {
            break;
        }
    }
    let body = if chunks.len() == 1 {
        Body::from(chunks.remove(0))
    } else {
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        Body::from_stream(stream)
    };
    let served = Served::range(first, last, files.total);
    served_response(body, served, files.modified).map(Some)
}

/// Reads a range on the blocking pool, a few at a time, and answers it.
async fn read_range<R>(
    read: impl FnOnce() -> std::io::Result<R> + Send + 'static,
) -> Result<Option<Response>, ApiError>
where
    R: Into<Option<RangeRead>> + Send + 'static,
{
    // A few reads at a time: dozens of 1 MiB copies at once would starve the async workers
    // that write the answers out, and every request would finish late together.
    static READERS: Semaphore = Semaphore::const_new(RANGE_READERS);
    let _reader = READERS.acquire().await.context("range readers closed")?;
    let read: Option<RangeRead> = tokio::task::spawn_blocking(read)
        .await
        .context("range read task")?
        .context("reading a range of a stored file")?
        .into();
    let Some(read) = read else {
        return Ok(None);
    };
    let served = Served::range(read.first, read.last, read.total);
    served_response(Body::from(read.bytes), served, read.modified).map(Some)
}

/// The bytes of a media a response carries: `first..=last` of its `total`, the whole of it
/// (`200`) or the one range a `Range` header asked (`206`).
#[derive(Debug, Clone, Copy)]
struct Served {
    first: u64,
    last: u64,
    total: u64,
    partial: bool,
}

impl Served {
    /// The range `first..=last` of `total` bytes (`206`).
    fn range(first: u64, last: u64, total: u64) -> Self {
        Self {
            first,
            last,
            total,
            partial: true,
        }
    }

    /// What `range` asks of `total` bytes, the whole without one; `None` for a range that
    /// cannot be served as one part (ServeFile refuses it too: [`unsatisfiable`]).
    fn resolve(range: Option<&str>, total: u64) -> Option<Self> {
        match range {
            Some(header) => {
                range::resolve(header, total).map(|(first, last)| Self::range(first, last, total))
            }
            None => Some(Self {
                first: 0,
                last: total.saturating_sub(1),
                total,
                partial: false,
            }),
        }
    }

    /// How many bytes it is.
    fn len(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.last - self.first + 1
        }
    }
}

/// The `416` refusing a range of a media of `total` bytes.
fn unsatisfiable(total: u64) -> Response {
    (
        StatusCode::RANGE_NOT_SATISFIABLE,
        [(header::CONTENT_RANGE, format!("bytes */{total}"))],
    )
        .into_response()
}

/// A response carrying `body`, the bytes `served` names, with their length, range and date.
fn served_response(
    body: Body,
    served: Served,
    modified: Option<std::time::SystemTime>,
) -> Result<Response, ApiError> {
    let mut response = Response::new(body);
    if served.partial {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(served.len()));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(modified) = modified {
        headers.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_str(&httpdate(modified)).context("Last-Modified")?,
        );
    }
    if served.partial {
        let Served {
            first, last, total, ..
        } = served;
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {first}-{last}/{total}"))
                .context("Content-Range")?,
        );
    }
    Ok(response)
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
    request: &Parts,
    state: &AppState,
    source: MediaSource,
    key: &str,
    content_type: &str,
) -> Result<Option<Response>, ApiError> {
    // Stored files never change, so their random key identifies the content.
    let stem = key.split('.').next().unwrap_or_default();
    let etag = HeaderValue::from_str(&format!("\"{stem}\"")).context("building an ETag")?;
    let not_modified = request
        .headers
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
        .headers
        .get(header::IF_RANGE)
        .map(|validator| validator == etag);
    let range = request
        .headers
        .get(header::RANGE)
        .filter(|_| range_still_valid != Some(false))
        .and_then(|v| v.to_str().ok())
        .filter(|_| request.method == Method::GET)
        .map(str::to_owned);
    let zero_copy = request.extensions.get::<ZeroCopy>();
    if let (Some(range), Some(zero_copy)) = (range.as_deref(), zero_copy) {
        if let Some(response) = answer_mapped_range(state, key, range, zero_copy)? {
            return Ok(Some(finish(response, content_type, etag)));
        }
    }
    let path = match source {
        MediaSource::File(path) => path,
        MediaSource::Layout(key) => {
            let head = request.method == Method::HEAD;
            let media = Arc::clone(&state.media);
            let Some(response) = serve_layout(media, key, range, head).await? else {
                return Ok(None);
            };
            return Ok(Some(finish(response, content_type, etag)));
        }
        MediaSource::Object(object) => {
            let head = request.method == Method::HEAD;
            let Some(response) = serve_object(&object, range, head).await? else {
                return Ok(None);
            };
            return Ok(Some(finish(response, content_type, etag)));
        }
    };
    let response = match answer_small_range(range, &path).await? {
        Some(response) => response,
        None => {
            let mut headers = request.headers.clone();
            if range_still_valid == Some(false) {
                headers.remove(header::RANGE);
            }
            let mut whole = Request::new(Body::empty());
            *whole.method_mut() = request.method.clone();
            *whole.uri_mut() = request.uri.clone();
            *whole.headers_mut() = headers;
            // One blocking-pool hop per MiB read instead of one per 64 KiB (the default).
            let response = ServeFile::new(path)
                .with_buf_chunk_size(READ_CHUNK)
                .oneshot(whole)
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

/// Serves a layout media (the finalizer's head and the upload's own bytes, read as one file):
/// the range asked for, or the whole, read in steps of [`READ_CHUNK`] off the async workers;
/// `None` if it is missing. Memory stays bounded whatever the size.
async fn serve_layout(
    media: Arc<dyn MediaStore>,
    key: String,
    range: Option<String>,
    head: bool,
) -> Result<Option<Response>, ApiError> {
    let opened = tokio::task::spawn_blocking(move || {
        let Some(mut reader) = media.open(&key)? else {
            return anyhow::Ok(None);
        };
        let total = reader.seek(SeekFrom::End(0))?;
        let modified = media.modified(&key)?;
        anyhow::Ok(Some((reader, total, modified)))
    })
    .await
    .context("opening a layout media")?
    .context("opening a layout media")?;
    let Some((reader, total, modified)) = opened else {
        return Ok(None);
    };
    let Some(served) = Served::resolve(range.as_deref(), total) else {
        return Ok(Some(unsatisfiable(total)));
    };
    let (first, length) = (served.first, served.len());
    let body = if head || length == 0 {
        Body::empty()
    } else {
        let steps = futures_util::stream::try_unfold(
            (reader, first, first + length),
            |(mut reader, at, end)| async move {
                if at >= end {
                    return Ok(None);
                }
                let step = (end - at).min(READ_CHUNK as u64);
                let (reader, bytes) = tokio::task::spawn_blocking(move || {
                    reader.seek(SeekFrom::Start(at))?;
                    let mut bytes = vec![0; step as usize];
                    reader.read_exact(&mut bytes)?;
                    std::io::Result::Ok((reader, bytes))
                })
                .await
                .map_err(std::io::Error::other)??;
                Ok::<_, std::io::Error>(Some((bytes::Bytes::from(bytes), (reader, at + step, end))))
            },
        );
        Body::from_stream(steps)
    };
    served_response(body, served, modified).map(Some)
}

/// Serves an object: one ranged get streamed through for a `Range`, else the whole object
/// streamed; `None` if the object is missing. Memory stays bounded whatever the size.
async fn serve_object(
    object: &StoredObject,
    range: Option<String>,
    head: bool,
) -> Result<Option<Response>, ApiError> {
    let stored = |err| ApiError::from(anyhow::Error::new(err).context("reading a stored object"));
    let Some(meta) = object.head().await.map_err(stored)? else {
        return Ok(None);
    };
    let total = meta.size;
    let Some(served) = Served::resolve(range.as_deref(), total) else {
        return Ok(Some(unsatisfiable(total)));
    };
    let (first, last, length) = (served.first, served.last, served.len());
    let body = if head || length == 0 {
        Body::empty()
    } else {
        match object.read(first..last + 1).await.map_err(stored)? {
            Some(bytes) => Body::from_stream(bytes),
            None => return Ok(None),
        }
    };
    served_response(body, served, Some(meta.modified)).map(Some)
}
