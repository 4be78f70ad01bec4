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

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Session {
    user: UserView,
    token: String,
}

async fn open_session(state: &AppState, user: UserView) -> Result<Session, ApiError> {
    let (token, hash) = auth::new_token();
    db::users::insert_session(&state.db, &hash, user.id, now_millis()).await?;
    Ok(Session { user, token })
}

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
