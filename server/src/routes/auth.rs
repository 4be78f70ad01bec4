//! `POST /api/auth/register` and `POST /api/auth/login`.

use anyhow::Context;
use axum::{extract::State, http::StatusCode, routing::post, Router};
use serde::{Deserialize, Serialize};

use super::extract::Json;
use crate::{
    auth, db,
    domain::{now_millis, Password, Username},
    error::ApiError,
    state::AppState,
    views::UserView,
};

/// The auth routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
}

/// The auth routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(register, login))]
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
    ))]
async fn login(
    State(state): State<AppState>,
    Json(body): Json<Credentials>,
) -> Result<Json<Session>, ApiError> {
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
    .context("password check task")?
    .ok_or(ApiError::InvalidCredentials)?;
    let user = UserView {
        id: user.id,
        username: user.username,
    };
    Ok(Json(open_session(&state, user).await?))
}
