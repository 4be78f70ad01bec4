//! `GET /healthz`: 200 when the database and storage answer.

use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
use serde_json::{json, Value};

use crate::state::AppState;

/// The health route.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(health))
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(&state.db)
        .await
        .is_ok();
    let storage = state.with_storage(|s| Ok(s.check()?)).await.is_ok();
    let status = if database && storage {
        StatusCode::OK
    } else {
        tracing::error!(database, storage, "health check failed");
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "database": database, "storage": storage })),
    )
}
