//! `GET /healthz`: 200 when the database and storage answer.

use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
use serde::Serialize;

use crate::{db, state::AppState};

/// The health route.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(health))
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(health))]
pub struct Doc;

/// What answered.
#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// The database answered a query.
    database: bool,
    /// The storage is reachable and writable.
    storage: bool,
}

/// Whether the database and storage answer.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "Unhealthy: the failing part is `false`", body = Health),
    ))]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let database = db::ping(&state.db).await.is_ok();
    let storage = state
        .with_uploads(|uploads| Ok(uploads.check()?))
        .await
        .is_ok()
        && state.with_media(|media| Ok(media.check()?)).await.is_ok();
    let status = if database && storage {
        StatusCode::OK
    } else {
        tracing::error!(database, storage, "health check failed");
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Health { database, storage }))
}
