//! `POST /api/auth/register`, `POST /api/auth/login` and `POST /api/auth/logout`.

use anyhow::Context;
use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, State},
    http::{Extensions, HeaderMap, StatusCode},
    routing::post,
    Router,
};
use serde::{Deserialize, Serialize};

use super::extract::Json;
use crate::{
    auth, db,
    domain::{now_millis, Password, Username},
    error::ApiError,
    rate_limit,
    state::AppState,
    views::UserView,
};

/// The auth routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
}

/// The auth routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(register, login, logout))]
pub(super) struct Doc;

/// A name and a password.
#[derive(Deserialize, utoipa::ToSchema)]
struct Credentials {
    /// 1–32 of `[A-Za-z0-9_.-]`.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,32}$")]
    username: String,
    /// 8 characters or more.
    #[schema(min_length = 8)]
    password: String,
}

/// A signed-in user and a bearer token for `Authorization: Bearer <token>`.
#[derive(Serialize, utoipa::ToSchema)]
struct Session {
    /// The account.
    user: UserView,
    /// The bearer token.
    token: String,
}

async fn open_session(state: &AppState, user: UserView) -> Result<Session, ApiError> {
    let (token, hash) = auth::new_token();
    db::users::insert_session(&state.db, &hash, user.id, now_millis()).await?;
    Ok(Session { user, token })
}

/// Creates an account and signs it in.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "Created and signed in", body = Session),
        (status = 400, description = "`invalid_username`, `invalid_password`, `invalid_json`: a name outside 1–32 of `[A-Za-z0-9_.-]` or a password under 8 characters", body = super::openapi::ErrorBody),
        (status = 409, description = "`username_taken`", body = super::openapi::ErrorBody),
        (status = 413, description = "`too_large`: the body is over the limit", body = super::openapi::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = super::openapi::ErrorBody),
    ))]
async fn register(
    State(state): State<AppState>,
    Json(body): Json<Credentials>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    let username = Username::parse(&body.username).map_err(ApiError::invalid)?;
    let password = Password::parse(&body.password).map_err(ApiError::invalid)?;
    let user = auth::create_user(&state, &username, password).await?;
    let user = UserView {
        id: user.id,
        username: user.username,
    };
    Ok((StatusCode::CREATED, Json(open_session(&state, user).await?)))
}

/// Signs in.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = Session),
        (status = 400, description = "`invalid_json`", body = super::openapi::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be `application/json`", body = super::openapi::ErrorBody),
        (status = 401, description = "`invalid_credentials`", body = super::openapi::ErrorBody),
        (status = 429, description = "`rate_limited`: 10 failed logins for this name, or 50 from this address, within 5 minutes; retry after `Retry-After` seconds", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the next attempt is accepted"))),
    ))]
async fn login(
    State(state): State<AppState>,
    extensions: Extensions,
    Json(body): Json<Credentials>,
) -> Result<Json<Session>, ApiError> {
    // Served without `ConnectInfo` (a test's `oneshot`), only the name is limited.
    let ip: Option<IpAddr> = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let attempt = rate_limit::begin_login(&state.db, &body.username, ip).await?;
    let found = db::users::credentials(&state.db, &body.username).await?;
    let password = body.password;
    let user = tokio::task::spawn_blocking(move || match found {
        Some(user) if auth::verify_password(&user.password_hash, &password) => Some(user),
        Some(_) => None,
        None => {
            auth::burn_password_check(&password);
            None
        }
    })
    .await
    .context("password check task")?;
    let Some(user) = user else {
        // The attempt stays counted as a failure.
        return Err(ApiError::InvalidCredentials);
    };
    attempt.succeeded(&state.db).await?;
    let user = UserView {
        id: user.id,
        username: user.username,
    };
    Ok(Json(open_session(&state, user).await?))
}

/// Signs out: the session of this token is deleted, and the token is refused from then on.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out; the token no longer works"),
        (status = 401, description = "`unauthenticated`: no token, or one that is unknown or already signed out", body = super::openapi::ErrorBody),
    ))]
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    let token = auth::bearer_token(&headers)?;
    if db::users::delete_session(&state.db, &auth::token_hash(token)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::Unauthenticated)
    }
}
