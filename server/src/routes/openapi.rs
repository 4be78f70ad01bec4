//! `GET /api/openapi.json`, the OpenAPI 3 document generated from the handlers' annotations
//! (utoipa), and `GET /api/docs`, a page that renders it without any outside asset.

use std::sync::OnceLock;

use axum::{
    http::header,
    response::{Html, IntoResponse},
    routing::get,
    Router,
};
use utoipa::{
    openapi::{
        schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        OpenApi as Document, RefOr,
    },
    IntoResponses, Modify, OpenApi, PartialSchema, ToSchema,
};

use crate::state::AppState;

/// `{"error": {"code", "message"}}`: the body of every 4xx and 5xx answer.
#[derive(ToSchema)]
#[allow(dead_code)] // Only describes the shape `ApiError` writes.
pub struct ErrorBody {
    /// What went wrong.
    error: ErrorDetail,
}

/// The error answers of a route acting on one of the caller's lives or uploads, for a
/// `responses(...)` list.
#[derive(IntoResponses)]
#[allow(dead_code)] // Only describes what `ApiError` answers.
pub enum OwnerErrors {
    #[response(status = 401, description = "`unauthenticated`: no valid bearer token")]
    Unauthenticated(ErrorBody),
    #[response(
        status = 403,
        description = "`forbidden`: another user's live or upload"
    )]
    Forbidden(ErrorBody),
    #[response(status = 404, description = "`not_found`")]
    NotFound(ErrorBody),
}

/// The answer of a tus route to a request without `Tus-Resumable: 1.0.0`.
#[derive(IntoResponses)]
#[response(status = 412, description = "`unsupported_tus_version`")]
#[allow(dead_code)] // Only describes what `ApiError` answers.
pub struct UnsupportedTusVersion(ErrorBody);

/// One Server-Sent Event of a live, as a client reads it: its name and its JSON text.
#[derive(ToSchema)]
#[allow(dead_code)] // Only describes what the event stream writes.
pub struct LiveEvent {
    /// `viewers`, `chat` or `ended`.
    #[schema(example = "viewers")]
    event: String,
    /// JSON text: `{"viewers", "peak_viewers"}` for `viewers`, a ChatMessage for `chat`, the
    /// Post for `ended`.
    data: String,
}

/// The inside of [`ErrorBody`].
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Machine-readable, snake_case (`not_found`, `offset_mismatch`, …).
    #[schema(example = "not_found")]
    code: String,
    /// For humans.
    message: String,
}

/// Raw bytes: a recording, a range of one, a chunk of an upload, a poster.
pub struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}

/// The document's frame; each route module contributes its own paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Livekeep",
        description = "Live recordings uploaded while they are made (tus 1.0.0), finalized into \
                       seekable files, shown in a feed; people watch lives and chat. Every \
                       4xx/5xx body is `{\"error\": {\"code\", \"message\"}}`; times are RFC 3339 \
                       UTC, durations seconds, sizes bytes. A trailing slash is optional on every \
                       route."
    ),
    paths(openapi_json, docs),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares the `bearer` scheme the authenticated routes name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole document, built once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        for part in [
            super::auth::Doc::openapi(),
            super::lives::Doc::openapi(),
            super::room::Doc::openapi(),
            super::posts::Doc::openapi(),
            super::uploads::Doc::openapi(),
            super::media::Doc::openapi(),
            super::health::Doc::openapi(),
            super::metrics::Doc::openapi(),
        ] {
            doc.merge(part);
        }
        doc
    })
}

/// The OpenAPI routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs))
        .route(
            "/docs/app.js",
            get(|| asset("text/javascript", include_str!("docs/app.js"))),
        )
        .route(
            "/docs/style.css",
            get(|| asset("text/css", include_str!("docs/style.css"))),
        )
}

/// The page's script and style, separate files so the page's CSP can forbid inline code.
async fn asset(content_type: &'static str, text: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type)], text)
}

/// The OpenAPI 3 document of every route.
#[utoipa::path(get, path = "/api/openapi.json", tag = "docs",
    responses((status = 200, description = "This document", content_type = "application/json")))]
async fn openapi_json() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| document().to_pretty_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], json.as_str())
}

/// The API reference as a page: renders `/api/openapi.json` in the browser, no outside assets.
#[utoipa::path(get, path = "/api/docs", tag = "docs",
    responses((status = 200, description = "An HTML page", content_type = "text/html")))]
async fn docs() -> Html<&'static str> {
    Html(include_str!("docs/index.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_json_with_the_bearer_scheme() {
        let doc: serde_json::Value = serde_json::from_str(&document().to_json().unwrap()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert!(doc["paths"]["/api/uploads/{upload_id}"]["patch"].is_object());
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
