//! `GET /api/openapi.json` describes every route of the contract, and `/api/docs` renders it.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::spawn_app;

/// Each method and path of API.md and of the README's additions, with the statuses they
/// document (trailing slashes are optional on every route, so they are compared without).
const CONTRACT: &[(&str, &str, &[u16])] = &[
    ("post", "/api/auth/register", &[201, 400, 409]),
    ("post", "/api/auth/login", &[200, 401, 429]),
    ("post", "/api/auth/logout", &[204, 401]),
    ("post", "/api/posts/live", &[201, 400, 401]),
    (
        "put",
        "/api/posts/live/{live_id}/stop",
        &[200, 400, 401, 403, 404, 409],
    ),
    (
        "post",
        "/api/posts/live/{live_id}/chat",
        &[201, 400, 401, 404, 409, 429],
    ),
    ("get", "/api/posts/{post_id}/chat", &[200, 404]),
    ("get", "/api/posts/live/{live_id}/events", &[200, 400, 404]),
    ("options", "/api/uploads", &[204]),
    ("post", "/api/uploads", &[201, 401, 403, 412, 413]),
    ("options", "/api/uploads/{upload_id}", &[204]),
    (
        "head",
        "/api/uploads/{upload_id}",
        &[200, 401, 403, 404, 412],
    ),
    (
        "patch",
        "/api/uploads/{upload_id}",
        &[204, 401, 403, 404, 409, 412, 413, 460],
    ),
    ("delete", "/api/uploads/{upload_id}", &[204, 401, 403, 404]),
    ("get", "/api/posts", &[200, 400]),
    ("get", "/api/posts/{post_id}", &[200, 404]),
    ("get", "/media/{media_id}", &[200, 206, 304, 404, 416]),
    ("get", "/healthz", &[200, 503]),
    ("get", "/api/openapi.json", &[200]),
    // Additions (README, "The HTTP contract").
    ("get", "/api/posts/live/{live_id}/stream", &[200, 404, 409]),
    (
        "put",
        "/api/posts/live/{live_id}/poster",
        &[204, 401, 403, 404, 413, 415],
    ),
    ("get", "/media/{media_id}/poster", &[200, 304, 404]),
    ("get", "/api/docs", &[200]),
    ("get", "/metrics", &[200]),
];

/// The operation at `method path`, whichever trailing-slash form the document uses.
fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    let paths = doc["paths"].as_object()?;
    paths
        .iter()
        .find(|(p, _)| p.trim_end_matches('/') == path)
        .and_then(|(_, item)| item.get(method))
}

/// Resolves a local `$ref` (`#/components/schemas/X`).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => reference
            .trim_start_matches("#/")
            .split('/')
            .fold(doc, |node, key| &node[key]),
        None => schema,
    }
}

#[tokio::test]
async fn the_document_describes_every_route_of_the_contract_with_its_statuses() {
    let app = spawn_app().await;
    let doc = app.get_json("/api/openapi.json").await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert!(doc["paths"].is_object() && doc["components"]["schemas"].is_object());

    let mut missing = Vec::new();
    for (method, path, statuses) in CONTRACT {
        let Some(op) = operation(&doc, method, path) else {
            missing.push(format!("{method} {path}"));
            continue;
        };
        for status in *statuses {
            if op["responses"].get(status.to_string()).is_none() {
                missing.push(format!("{method} {path} {status}"));
            }
        }
        for name in path.split('{').skip(1).filter_map(|p| p.split('}').next()) {
            let declared = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
            if !declared {
                missing.push(format!("{method} {path}: path parameter {name}"));
            }
        }
    }
    assert!(missing.is_empty(), "not described: {missing:#?}");
}

#[tokio::test]
async fn errors_have_the_documented_shape_and_writes_name_the_bearer_scheme() {
    let app = spawn_app().await;
    let doc = app.get_json("/api/openapi.json").await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let stop = operation(&doc, "put", "/api/posts/live/{live_id}/stop").unwrap();
    assert!(stop["security"][0]["bearer"].is_array());
    assert!(stop["requestBody"]["content"]["application/json"].is_object());
    let conflict = &stop["responses"]["409"]["content"]["application/json"]["schema"];
    let envelope = resolve(&doc, conflict);
    let detail = resolve(&doc, &envelope["properties"]["error"]);
    assert!(detail["properties"]["code"].is_object(), "{detail}");
    assert!(detail["properties"]["message"].is_object(), "{detail}");

    // The body of a real error matches what the document says.
    let response = app
        .request(Method::GET, "/api/posts/999999/", None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"].is_string());

    let post = resolve(
        &doc,
        &operation(&doc, "get", "/api/posts/{post_id}").unwrap()["responses"]["200"]["content"]
            ["application/json"]["schema"],
    );
    for field in ["live_status", "viewer_count", "peak_viewers", "media_files"] {
        assert!(post["properties"][field].is_object(), "Post.{field}");
    }
}

#[tokio::test]
async fn the_docs_page_and_its_script_are_served_by_the_server() {
    let app = spawn_app().await;
    let page = app
        .request(Method::GET, "/api/docs", None)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/api/docs/app.js"), "{html}");
    for (asset, kind) in [
        ("/api/docs/app.js", "text/javascript"),
        ("/api/docs/style.css", "text/css"),
    ] {
        let response = app.request(Method::GET, asset, None).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        let text = response.text().await.unwrap();
        if kind == "text/javascript" {
            assert!(text.contains("/api/openapi.json"));
        }
    }
}

#[tokio::test]
async fn the_document_describes_every_webhook_event_and_its_signature_headers() {
    let app = spawn_app().await;
    let doc = app.get_json("/api/openapi.json").await;
    let webhooks = doc["webhooks"].as_object().expect("a webhooks object");
    let events: Vec<&str> = webhooks.keys().map(String::as_str).collect();
    for event in [
        "live.started",
        "live.ended",
        "live.interrupted",
        "recording.refinalized",
        "post.deleted",
    ] {
        assert!(events.contains(&event), "{event} missing from {events:?}");
        let post = &webhooks[event]["post"];
        let headers: Vec<&str> = post["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "header")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            headers,
            ["webhook-id", "webhook-timestamp", "webhook-signature"]
        );
        let body = &post["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["properties"]["type"]["enum"][0], event);
        let data = resolve(&doc, &body["properties"]["data"]);
        assert!(data["properties"].is_object(), "{event}: {data}");
    }
    let end = resolve(
        &doc,
        &webhooks["live.ended"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["properties"]["data"],
    );
    for field in ["post", "media"] {
        assert!(
            end["properties"][field].is_object(),
            "live.ended data.{field}"
        );
    }
}
