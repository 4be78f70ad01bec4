//! `GET /api/openapi.json`: the OpenAPI 3 document of the contract, checked in beside the crate.

use axum::{http::header, response::IntoResponse, routing::get, Router};

use crate::state::AppState;

/// The document, embedded at build time.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// The OpenAPI route.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_json() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert!(doc["paths"]["/api/uploads/{upload_id}"]["patch"].is_object());
    }
}
