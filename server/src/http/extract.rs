//! Extractors whose rejections speak our JSON error format, and the authenticated user.

use axum::{
    extract::{FromRequest, FromRequestParts},
    http::{header, request::Parts, HeaderMap},
};

use super::error::ApiError;
use crate::{accounts::Caller, db::users::UserRow, state::AppState};

/// `axum::Json`, rejecting malformed bodies with a 400 `invalid_json`.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// `axum::extract::Path`, answering 404 for a segment of the wrong shape.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query`, rejecting bad parameters with a 400 `invalid_query`.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// A body that may be absent: no `Content-Type` is `None`, a JSON one is parsed as [`Json`].
impl<T, S> axum::extract::OptionalFromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Option<Self>, ApiError> {
        let body =
            <axum::Json<T> as axum::extract::OptionalFromRequest<S>>::from_request(request, state)
                .await?;
        Ok(body.map(|axum::Json(value)| Self(value)))
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// The token of an `Authorization: Bearer` header; 401 without one.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(ApiError::Unauthenticated)
}

/// The user behind a valid `Authorization: Bearer` header (a session token or a host JWT,
/// as `--auth` allows); rejects with 401 otherwise.
#[derive(Debug, Clone)]
pub struct AuthUser(pub UserRow);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Self(
            AuthCaller::from_request_parts(parts, state).await?.0.user,
        ))
    }
}

/// [`AuthUser`] with what its token grants (a host JWT's admin role).
#[derive(Debug, Clone)]
pub struct AuthCaller(pub Caller);

impl FromRequestParts<AppState> for AuthCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers)?;
        Ok(Self(state.auth.authenticate(&state.db, token).await?))
    }
}
