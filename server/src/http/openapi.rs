//! `GET /api/openapi.json`, the OpenAPI 3 document generated from the handlers' annotations
//! (utoipa) and assembled here from every router's part, and `GET /api/docs`, a page that
//! renders it without any outside asset. The schemas the routers share are in `schemas.rs`.

use std::sync::OnceLock;

use axum::{
    extract::State,
    http::header,
    response::{Html, IntoResponse},
    routing::get,
    Router,
};
use utoipa::{
    openapi::{
        path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem},
        request_body::RequestBodyBuilder,
        schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        ContentBuilder, OpenApi as Document, PathsBuilder, Ref, Required, ResponseBuilder,
    },
    Modify, OpenApi,
};

use super::schemas::ErrorBody;
use crate::{
    state::AppState,
    webhooks::{LiveEndData, LiveStartedData, PostDeletedData, RecordingRefinalizedData, EVENTS},
};

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
    components(schemas(
        ErrorBody,
        LiveStartedData,
        LiveEndData,
        RecordingRefinalizedData,
        PostDeletedData
    )),
    modifiers(&BearerAuth, &WebhookEvents)
)]
struct ApiDoc;

/// The signed webhooks (`--webhook-url`), as the document's `webhooks`: what the host app's
/// receiver gets, one POST per event.
struct WebhookEvents;

impl Modify for WebhookEvents {
    fn modify(&self, openapi: &mut Document) {
        let header = |name: &str, description: &str| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(Required::True)
                .description(Some(description))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build()
        };
        let mut paths = PathsBuilder::new();
        for (event, data) in EVENTS {
            let body = ObjectBuilder::new()
                .property(
                    "type",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([event])),
                )
                .required("type")
                .property(
                    "timestamp",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                        .description(Some("When the change happened (RFC 3339)")),
                )
                .required("timestamp")
                .property("data", Ref::from_schema_name(data))
                .required("data");
            let operation = OperationBuilder::new()
                .summary(Some(format!("`{event}`")))
                .description(Some(
                    "Signed as Standard Webhooks says: verify `webhook-signature` over                      `{webhook-id}.{webhook-timestamp}.{raw body}` with the `whsec_` secret, refuse                      a timestamp more than 5 minutes away, and skip a `webhook-id` already                      applied. Events may arrive more than once and out of order.",
                ))
                .parameters(Some([
                    header(
                        "webhook-id",
                        "The event's id (`msg_…`), the same on every attempt",
                    ),
                    header(
                        "webhook-timestamp",
                        "Unix seconds of this attempt (each retry is signed anew)",
                    ),
                    header(
                        "webhook-signature",
                        "`v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}`",
                    ),
                ]))
                .request_body(Some(
                    RequestBodyBuilder::new()
                        .content("application/json", ContentBuilder::new().schema(Some(body)).build())
                        .required(Some(Required::True))
                        .build(),
                ))
                .response("2XX", ResponseBuilder::new().description("Received"))
                .response(
                    "default",
                    ResponseBuilder::new().description(
                        "Any other answer (redirects included), a timeout of 10 s or no                          connection: retried with backoff from about 1 s up to hourly, for 24                          hours; 410 Gone stops the retries",
                    ),
                );
            paths = paths.path(event, PathItem::new(HttpMethod::Post, operation));
        }
        openapi.webhooks = Some(paths.build());
    }
}

/// Declares the `bearer` scheme the authenticated routes name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token from `POST /api/auth/login` or `register` (`--auth \
                         builtin`, the default), or a JWT minted by the host app (`--auth jwt` or \
                         `both`): HS256 with `--auth-jwt-secret`, or RS256, ES256 or EdDSA with \
                         `--auth-jwt-public-key`; claims `sub` (the host's user id), `exp` \
                         (required, 30 s of leeway), `name` (shown as the username), `iss` and \
                         `aud` (checked when configured) and `role: \"admin\"` (may delete any \
                         post). Users are created on first sight. A refused JWT is 401 \
                         `unauthenticated` with the failed check as its message.",
                    ))
                    .build(),
            ),
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
            super::routes::auth::Doc::openapi(),
            super::routes::lives::Doc::openapi(),
            super::routes::room::Doc::openapi(),
            super::routes::posts::Doc::openapi(),
            super::routes::uploads::Doc::openapi(),
            super::routes::media::Doc::openapi(),
            super::routes::health::Doc::openapi(),
            super::routes::metrics::Doc::openapi(),
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
async fn docs(State(state): State<AppState>) -> Html<String> {
    // Its links are absolute paths: under the public URL's prefix, they carry it.
    let page = include_str!("docs/index.html");
    Html(page.replace("\"/api/", &format!("\"{}/api/", state.public_url.prefix())))
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
