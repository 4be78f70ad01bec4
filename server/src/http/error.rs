//! The one error type handlers return, and how it becomes an HTTP answer: every service
//! error is mapped to its status, `error.code` and message here, and nowhere else.

use axum::{
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use crate::{
    accounts::AccountError,
    domain::ParseError,
    live::LiveError,
    locks::LockError,
    ops::deletion::DeletionError,
    posts::LiveAccessError,
    recording::{poster::PosterError, StopError},
    storage::StorageError,
    uploads::tus::{PatchError, UploadError},
};

/// Seconds a client is told to wait after a 503: outages worth answering 503 for (a store or
/// database restarting) last seconds, and recorders back off on their own beyond that.
const RETRY_AFTER_UNAVAILABLE: u64 = 3;

/// A dependency that did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// The object store.
    Storage,
    /// The database (PostgreSQL, or its lock sessions).
    Database,
}

/// Every way a request can fail, each with its status and `error.code`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a value is out of range.
    #[error("{message}")]
    BadRequest {
        /// Machine-readable reason.
        code: &'static str,
        /// Human-readable reason.
        message: String,
    },
    /// 401: no valid bearer token.
    #[error("authentication required")]
    Unauthenticated,
    /// 401: a bearer token refused for a reason worth telling (a JWT's failed check).
    #[error("{0}")]
    TokenRefused(String),
    /// 401: wrong username or password.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// 403: the resource belongs to someone else.
    #[error("this belongs to another user")]
    Forbidden,
    /// 403: the server's configuration turns this off.
    #[error("{message}")]
    Disabled {
        /// Machine-readable reason.
        code: &'static str,
        /// Human-readable reason.
        message: String,
    },
    /// 404: nothing here.
    #[error("not found")]
    NotFound,
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the request contradicts the current state (offset, size, checksum, name taken).
    #[error("{message}")]
    Conflict {
        /// Machine-readable reason.
        code: &'static str,
        /// Human-readable reason.
        message: String,
    },
    /// 410: the upload or live is over and accepts nothing more.
    #[error("{message}")]
    Gone {
        /// Machine-readable reason.
        code: &'static str,
        /// Human-readable reason.
        message: String,
    },
    /// 412: a tus request without `Tus-Resumable: 1.0.0`.
    #[error("unsupported tus version; this server speaks 1.0.0")]
    TusVersion,
    /// 413: beyond the maximum upload size or the per-request body limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415: wrong `Content-Type`, or bytes that are neither WebM nor MP4.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 423: another request is writing this upload right now.
    #[error("another request is writing this upload")]
    Locked,
    /// 429: too many requests of this kind; retry after the given number of seconds.
    #[error("too many requests; retry in {0} s")]
    RateLimited(u64),
    /// 460 (tus checksum extension): the chunk does not match its `Upload-Checksum`.
    #[error("the chunk does not match its Upload-Checksum; it was discarded")]
    ChecksumMismatch,
    /// 507: the disk is full; nothing of the request was kept, retry once space is freed.
    #[error("the server's storage is full; nothing was kept, retry later")]
    InsufficientStorage,
    /// 503: the object store or the database did not answer in time; retry after `Retry-After`.
    /// What the request was doing is not acknowledged (a PATCH's offset did not move).
    #[error("{}", match .0 {
        Dependency::Storage => "the object store did not answer; retry in a few seconds",
        Dependency::Database => "the database did not answer; retry in a few seconds",
    })]
    Unavailable(Dependency),
    /// 500: a bug or an infrastructure failure; logged, never detailed to the client.
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// The dependency an error's causes say did not answer (a timeout, a refused or broken
/// connection), if any.
fn unavailable(err: &anyhow::Error) -> Option<Dependency> {
    err.chain().find_map(|cause| {
        // An io::Error hides what it wraps from `source()`: look inside it too.
        let wrapped = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        [Some(cause), wrapped]
            .into_iter()
            .flatten()
            .find_map(|cause| {
                if cause
                    .downcast_ref::<StorageError>()
                    .is_some_and(StorageError::is_unavailable)
                {
                    Some(Dependency::Storage)
                } else if cause.downcast_ref::<LockError>().is_some()
                    || cause
                        .downcast_ref::<sqlx::Error>()
                        .is_some_and(database_unavailable)
                {
                    Some(Dependency::Database)
                } else {
                    None
                }
            })
    })
}

/// Whether a database error means the database could not be reached or is restarting, rather
/// than a refused query.
fn database_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        // Connection exceptions (08…), shutdown and start-up (57P01–57P03), too many clients.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        if let Some(dependency) = unavailable(&err) {
            tracing::warn!(error = ?err, ?dependency, "a dependency did not answer");
            return Self::Unavailable(dependency);
        }
        let full = err.chain().any(|cause| {
            cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                )
            })
        });
        if full {
            tracing::error!(error = ?err, "storage full");
            Self::InsufficientStorage
        } else {
            Self::Internal(err)
        }
    }
}

impl ApiError {
    /// A 400 with a reason.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A 409 with a reason.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// A 410 with a reason.
    pub fn gone(code: &'static str, message: impl Into<String>) -> Self {
        Self::Gone {
            code,
            message: message.into(),
        }
    }

    /// A 400 `invalid_input` from a domain parse failure.
    pub fn invalid(err: ParseError) -> Self {
        Self::bad_request("invalid_input", err.0)
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated | Self::TokenRefused(_) | Self::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            Self::Forbidden | Self::Disabled { .. } => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Gone { .. } => StatusCode::GONE,
            Self::TusVersion => StatusCode::PRECONDITION_FAILED,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Locked => StatusCode::LOCKED,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            // 460 is always in range, so this cannot fail.
            Self::ChecksumMismatch => StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
            Self::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Conflict { code, .. }
            | Self::Gone { code, .. }
            | Self::Disabled { code, .. } => code,
            Self::Unauthenticated | Self::TokenRefused(_) => "unauthenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TusVersion => "unsupported_tus_version",
            Self::TooLarge(_) => "too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Locked => "locked",
            Self::RateLimited(_) => "rate_limited",
            Self::ChecksumMismatch => "checksum_mismatch",
            Self::InsufficientStorage => "insufficient_storage",
            Self::Unavailable(Dependency::Storage) => "storage_unavailable",
            Self::Unavailable(Dependency::Database) => "database_unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            Self::Internal(err) => {
                // The request id is a field of the enclosing request span.
                tracing::error!(error = ?err, "internal error");
                "internal server error".to_owned()
            }
            other => other.to_string(),
        };
        let status = self.status();
        let body = json!({ "error": { "code": self.code(), "message": message } });
        let mut response = (status, Json(body)).into_response();
        if matches!(self, Self::TusVersion) {
            response
                .headers_mut()
                .insert("tus-version", HeaderValue::from_static("1.0.0"));
        }
        if let Self::RateLimited(seconds) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if matches!(self, Self::Unavailable(_)) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER_UNAVAILABLE),
            );
        }
        if matches!(
            self,
            Self::Unauthenticated | Self::TokenRefused(_) | Self::InvalidCredentials
        ) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(anyhow::Error::new(err))
    }
}

impl From<LiveAccessError> for ApiError {
    fn from(err: LiveAccessError) -> Self {
        match err {
            LiveAccessError::NotFound(_) => Self::NotFound,
            LiveAccessError::Forbidden(_) => Self::Forbidden,
            LiveAccessError::Database(err) => err.into(),
        }
    }
}

impl From<DeletionError> for ApiError {
    fn from(err: DeletionError) -> Self {
        match err {
            DeletionError::NotFound(_) => Self::NotFound,
            DeletionError::Forbidden(_) => Self::Forbidden,
            DeletionError::Internal(err) => err.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::NameTaken(_) => {
                Self::conflict("username_taken", "this username is taken")
            }
            AccountError::InvalidCredentials => Self::InvalidCredentials,
            AccountError::Unauthenticated => Self::Unauthenticated,
            AccountError::RateLimited(seconds) => Self::RateLimited(seconds),
            err @ (AccountError::TokenRefused(_) | AccountError::SessionsDisabled) => {
                Self::TokenRefused(err.to_string())
            }
            err @ AccountError::BuiltinDisabled => Self::Disabled {
                code: "builtin_accounts_disabled",
                message: err.to_string(),
            },
            AccountError::Internal(err) => err.into(),
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(err: UploadError) -> Self {
        let message = err.to_string();
        match err {
            UploadError::Live(err) => err.into(),
            UploadError::LiveEnded => Self::gone("live_ended", message),
            UploadError::LengthOverMax(_) => Self::TooLarge(message),
            UploadError::NotFound => Self::NotFound,
            UploadError::Forbidden => Self::Forbidden,
            UploadError::Expired => Self::gone("upload_expired", message),
            UploadError::Closed => Self::gone("upload_closed", message),
            UploadError::Internal(err) => err.into(),
        }
    }
}

impl From<PatchError> for ApiError {
    fn from(err: PatchError) -> Self {
        let message = err.to_string();
        match err {
            PatchError::Upload(err) => err.into(),
            PatchError::Locked => Self::Locked,
            PatchError::OffsetMismatch { .. } => Self::conflict("offset_mismatch", message),
            PatchError::LengthAlreadySet => Self::bad_request("length_already_set", message),
            PatchError::LengthBelowOffset => Self::bad_request("invalid_length", message),
            PatchError::BodyOverMax(_) | PatchError::UploadFull(_) => Self::TooLarge(message),
            PatchError::BodyStalled => Self::bad_request("body_timeout", message),
            PatchError::BodyInterrupted(_) => Self::bad_request("body_interrupted", message),
            PatchError::NotVideo => Self::UnsupportedMediaType(message),
            PatchError::ChecksumMismatch => Self::ChecksumMismatch,
        }
    }
}

impl From<StopError> for ApiError {
    fn from(err: StopError) -> Self {
        let message = err.to_string();
        match err {
            StopError::Live(err) => err.into(),
            StopError::UploadMismatch => Self::bad_request("upload_mismatch", message),
            StopError::NotFound => Self::NotFound,
            StopError::UploadClosed(_) => Self::gone("upload_closed", message),
            StopError::Incomplete { .. } => Self::conflict("upload_incomplete", message),
            StopError::SizeMismatch { .. } => Self::conflict("size_mismatch", message),
            StopError::ChecksumMismatch => Self::conflict("checksum_mismatch", message),
            StopError::InvalidRecording(_) => Self::bad_request("invalid_recording", message),
            StopError::Internal(err) => err.into(),
        }
    }
}

impl From<PosterError> for ApiError {
    fn from(err: PosterError) -> Self {
        let message = err.to_string();
        match err {
            PosterError::NotJpeg => Self::UnsupportedMediaType(message),
            PosterError::Live(err) => err.into(),
            PosterError::NotFound => Self::NotFound,
            PosterError::NoRecording => Self::conflict("no_recording", message),
            PosterError::Internal(err) => err.into(),
        }
    }
}

impl From<LiveError> for ApiError {
    fn from(err: LiveError) -> Self {
        let message = err.to_string();
        match err {
            LiveError::NotFound => Self::NotFound,
            LiveError::ChatClosed | LiveError::Ended => Self::conflict("live_ended", message),
            LiveError::NotStreamable => Self::conflict("not_streamable", message),
            LiveError::RateLimited(seconds) => Self::RateLimited(seconds),
            LiveError::Internal(err) => err.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType(
                "expected a request with Content-Type: application/json".to_owned(),
            ),
            // A body over the limit is a size problem, not a syntax one.
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::TooLarge("the request body is too large".to_owned())
            }
            other => Self::bad_request("invalid_json", other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request("invalid_query", rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        // A path segment of the wrong shape names nothing that exists.
        Self::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_status_and_code() {
        let cases = [
            (ApiError::bad_request("blob_url", "x"), 400, "blob_url"),
            (ApiError::Unauthenticated, 401, "unauthenticated"),
            (ApiError::InvalidCredentials, 401, "invalid_credentials"),
            (ApiError::Forbidden, 403, "forbidden"),
            (ApiError::NotFound, 404, "not_found"),
            (
                ApiError::conflict("size_mismatch", "x"),
                409,
                "size_mismatch",
            ),
            (ApiError::gone("upload_closed", "x"), 410, "upload_closed"),
            (ApiError::TusVersion, 412, "unsupported_tus_version"),
            (ApiError::TooLarge("x".into()), 413, "too_large"),
            (
                ApiError::UnsupportedMediaType("x".into()),
                415,
                "unsupported_media_type",
            ),
            (ApiError::Locked, 423, "locked"),
            (ApiError::RateLimited(3), 429, "rate_limited"),
            (ApiError::ChecksumMismatch, 460, "checksum_mismatch"),
            (ApiError::InsufficientStorage, 507, "insufficient_storage"),
            (
                ApiError::Unavailable(Dependency::Storage),
                503,
                "storage_unavailable",
            ),
            (
                ApiError::Unavailable(Dependency::Database),
                503,
                "database_unavailable",
            ),
            (
                ApiError::Internal(anyhow::anyhow!("db down")),
                500,
                "internal",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.code(), code, "{err:?}");
        }
    }

    /// Status, `error.code` and message of the answer an error becomes.
    fn answer(err: impl Into<ApiError>) -> (u16, &'static str, String) {
        let err = err.into();
        (err.status().as_u16(), err.code(), err.to_string())
    }

    #[test]
    fn service_errors_keep_the_statuses_codes_and_messages_of_the_api() {
        use crate::{domain::PostId, domain::UploadState};
        let live = PostId::new(7);
        let cases = [
            (
                answer(LiveAccessError::NotFound(live)),
                (404, "not_found", "not found"),
            ),
            (
                answer(LiveAccessError::Forbidden(live)),
                (403, "forbidden", "this belongs to another user"),
            ),
            (
                answer(AccountError::NameTaken("bob".into())),
                (409, "username_taken", "this username is taken"),
            ),
            (
                answer(AccountError::InvalidCredentials),
                (401, "invalid_credentials", "invalid username or password"),
            ),
            (
                answer(AccountError::RateLimited(3)),
                (429, "rate_limited", "too many requests; retry in 3 s"),
            ),
            (
                answer(AccountError::TokenRefused(
                    crate::accounts::host::TokenError::Expired,
                )),
                (401, "unauthenticated", "the token has expired"),
            ),
            (
                answer(AccountError::BuiltinDisabled),
                (
                    403,
                    "builtin_accounts_disabled",
                    "this server signs people in through its host app; its own accounts are off",
                ),
            ),
            (
                answer(UploadError::LiveEnded),
                (410, "live_ended", "this live has ended"),
            ),
            (
                answer(UploadError::LengthOverMax(10)),
                (
                    413,
                    "too_large",
                    "Upload-Length exceeds the maximum of 10 bytes",
                ),
            ),
            (
                answer(UploadError::Expired),
                (410, "upload_expired", "this upload has expired"),
            ),
            (
                answer(UploadError::Closed),
                (
                    410,
                    "upload_closed",
                    "this live has ended; its upload accepts no more bytes",
                ),
            ),
            (
                answer(PatchError::Locked),
                (423, "locked", "another request is writing this upload"),
            ),
            (
                answer(PatchError::OffsetMismatch { sent: 5, held: 3 }),
                (
                    409,
                    "offset_mismatch",
                    "Upload-Offset is 5, the upload holds 3 bytes",
                ),
            ),
            (
                answer(PatchError::LengthBelowOffset),
                (
                    400,
                    "invalid_length",
                    "Upload-Length is smaller than the bytes already received",
                ),
            ),
            (
                answer(PatchError::BodyOverMax(9)),
                (413, "too_large", "a PATCH body may hold at most 9 bytes"),
            ),
            (
                answer(PatchError::UploadFull(9)),
                (413, "too_large", "the upload may hold at most 9 bytes"),
            ),
            (
                answer(PatchError::BodyStalled),
                (400, "body_timeout", "the body stalled; resume with HEAD"),
            ),
            (
                answer(PatchError::BodyInterrupted("reset".into())),
                (400, "body_interrupted", "reading the body failed: reset"),
            ),
            (
                answer(PatchError::NotVideo),
                (
                    415,
                    "unsupported_media_type",
                    "the recording must be WebM (EBML) or MP4 (ftyp); these bytes are neither",
                ),
            ),
            (
                answer(PatchError::ChecksumMismatch),
                (
                    460,
                    "checksum_mismatch",
                    "the chunk does not match its Upload-Checksum; it was discarded",
                ),
            ),
            (
                answer(StopError::Incomplete {
                    held: 0,
                    length: 10,
                }),
                (
                    409,
                    "upload_incomplete",
                    "the upload holds 0 of its 10 bytes",
                ),
            ),
            (
                answer(StopError::UploadClosed(UploadState::Expired)),
                (
                    410,
                    "upload_closed",
                    "this upload is expired; it cannot become the recording",
                ),
            ),
            (
                answer(StopError::Incomplete { held: 1, length: 2 }),
                (
                    409,
                    "upload_incomplete",
                    "the upload holds 1 of its 2 bytes",
                ),
            ),
            (
                answer(StopError::SizeMismatch {
                    claimed: 2,
                    held: 1,
                }),
                (
                    409,
                    "size_mismatch",
                    "video_data.size is 2, the server holds 1 bytes",
                ),
            ),
            (
                answer(PosterError::NotJpeg),
                (
                    415,
                    "unsupported_media_type",
                    "a poster must be a JPEG image",
                ),
            ),
            (
                answer(PosterError::NoRecording),
                (409, "no_recording", "this live ended without a recording"),
            ),
            (
                answer(LiveError::ChatClosed),
                (409, "live_ended", "this live has ended; its chat is closed"),
            ),
            (
                answer(LiveError::Ended),
                (409, "live_ended", "this live has ended; watch its replay"),
            ),
            (
                answer(LiveError::NotStreamable),
                (
                    409,
                    "not_streamable",
                    "this live's recording cannot be watched while it records; \
                     its replay will play once it ends",
                ),
            ),
        ];
        for (got, (status, code, message)) in cases {
            assert_eq!(got, (status, code, message.to_owned()));
        }
    }

    #[test]
    fn a_full_disk_under_a_service_error_is_a_507() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let err = UploadError::Internal(anyhow::Error::new(full).context("appending"));
        assert_eq!(answer(err).0, 507);
        let err = StopError::Internal(anyhow::anyhow!("db down"));
        assert_eq!(answer(err).0, 500);
    }

    #[test]
    fn a_store_or_database_that_did_not_answer_is_a_503_whatever_wraps_it() {
        let timed_out = StorageError::TimedOut {
            context: "writing a piece".into(),
            after: std::time::Duration::from_secs(5),
        };
        let err = PatchError::from(anyhow::Error::new(timed_out).context("appending"));
        assert_eq!(answer(err).1, "storage_unavailable");
        // Through the io::Error a reader returns (the finalizer reads the upload as a file).
        let read = std::io::Error::from(StorageError::TimedOut {
            context: "reading".into(),
            after: std::time::Duration::from_secs(5),
        });
        let err = StopError::Internal(anyhow::Error::new(read).context("finalizing"));
        assert_eq!(answer(err).0, 503);
        let err = UploadError::Internal(anyhow::Error::new(sqlx::Error::PoolTimedOut));
        assert_eq!(answer(err).1, "database_unavailable");
        let lost = LockError::Lost("upload:x".into());
        assert_eq!(answer(PatchError::from(anyhow::Error::new(lost))).0, 503);
        // A refused query is a bug or bad data, not an outage.
        let err = UploadError::Internal(anyhow::Error::new(sqlx::Error::RowNotFound));
        assert_eq!(answer(err).0, 500);
    }

    #[tokio::test]
    async fn an_unavailable_dependency_says_when_to_retry() {
        let response = ApiError::Unavailable(Dependency::Database).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }

    #[tokio::test]
    async fn an_internal_error_does_not_leak_its_cause() {
        let response = ApiError::Internal(anyhow::anyhow!("secret path /x/y")).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("\"internal\""), "{text}");
    }
}
