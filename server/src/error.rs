//! The one error type handlers return, and how it becomes an HTTP answer.

use axum::{
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use crate::domain::ParseError;

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
    /// 401: wrong username or password.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// 403: the resource belongs to someone else.
    #[error("this belongs to another user")]
    Forbidden,
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
    /// 500: a bug or an infrastructure failure; logged, never detailed to the client.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
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
            Self::Unauthenticated | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
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
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Conflict { code, .. }
            | Self::Gone { code, .. } => code,
            Self::Unauthenticated => "unauthenticated",
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
        if matches!(self, Self::Unauthenticated | Self::InvalidCredentials) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        // PostgreSQL names the violated index; SQLite names the columns (or the index, for an
        // index on an expression).
        if let sqlx::Error::Database(db) = &err {
            let on_username = db
                .constraint()
                .is_some_and(|name| name.starts_with("users_username"))
                || db.message().contains("users.username")
                || db.message().contains("users_username_lower");
            if db.is_unique_violation() && on_username {
                return Self::conflict("username_taken", "this username is taken");
            }
        }
        Self::Internal(anyhow::Error::new(err))
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
