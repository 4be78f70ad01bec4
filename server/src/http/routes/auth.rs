//! `POST /api/auth/register`, `POST /api/auth/login` and `POST /api/auth/logout`.

use axum::{
    extract::State,
    http::{Extensions, HeaderMap, StatusCode},
    routing::post,
    Router,
};
use serde::{Deserialize, Serialize};

use crate::{
    accounts::{
        self,
        sessions::{self, SignedIn},
    },
    domain::{Password, Username},
    http::{
        client_addr::ClientAddr,
        error::ApiError,
        extract::{bearer_token, Json},
        schemas::ErrorBody,
    },
    posts::views::UserView,
    state::AppState,
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
pub struct Doc;

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

impl From<SignedIn> for Session {
    fn from(signed_in: SignedIn) -> Self {
        Self {
            user: UserView {
                id: signed_in.user.id,
                username: signed_in.user.username,
                external_id: signed_in.user.external_id,
            },
            token: signed_in.token,
        }
    }
}

/// Creates an account and signs it in.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "Created and signed in", body = Session),
        (status = 400, description = "`invalid_username`, `invalid_password`, `invalid_json`: a name outside 1–32 of `[A-Za-z0-9_.-]` or a password under 8 characters", body = ErrorBody),
        (status = 403, description = "`builtin_accounts_disabled`: the server accepts only the host app's JWTs (`--auth jwt`)", body = ErrorBody),
        (status = 409, description = "`username_taken`", body = ErrorBody),
        (status = 413, description = "`too_large`: the body is over the limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = ErrorBody),
    ))]
async fn register(
    State(state): State<AppState>,
    Json(body): Json<Credentials>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    state.auth.check_builtin_accounts()?;
    let username = Username::parse(&body.username).map_err(ApiError::invalid)?;
    let password = Password::parse(&body.password).map_err(ApiError::invalid)?;
    let user = accounts::create_user(&state.db, &username, password).await?;
    let signed_in = sessions::open(&state.db, user).await?;
    Ok((StatusCode::CREATED, Json(signed_in.into())))
}

/// Signs in.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = Session),
        (status = 400, description = "`invalid_json`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be `application/json`", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`builtin_accounts_disabled`: the server accepts only the host app's JWTs (`--auth jwt`)", body = ErrorBody),
        (status = 429, description = "`rate_limited`: 10 failed logins for this name, or 50 from this address, within 5 minutes; retry after `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the next attempt is accepted"))),
    ))]
async fn login(
    State(state): State<AppState>,
    extensions: Extensions,
    Json(body): Json<Credentials>,
) -> Result<Json<Session>, ApiError> {
    state.auth.check_builtin_accounts()?;
    // Served without a peer address (a test's `oneshot`), only the name is limited.
    let ip = extensions.get::<ClientAddr>().map(|client| client.0);
    let signed_in = sessions::login(&state.db, &body.username, body.password, ip).await?;
    Ok(Json(signed_in.into()))
}

/// Signs out: the session of this token is deleted, and the token is refused from then on.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out; the token no longer works"),
        (status = 401, description = "`unauthenticated`: no token, or one that is unknown or already signed out", body = ErrorBody),
        (status = 403, description = "`builtin_accounts_disabled`: the server accepts only the host app's JWTs (`--auth jwt`), which expire by themselves", body = ErrorBody),
    ))]
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    state.auth.check_builtin_accounts()?;
    let token = bearer_token(&headers)?;
    sessions::close(&state.db, token).await?;
    Ok(StatusCode::NO_CONTENT)
}
