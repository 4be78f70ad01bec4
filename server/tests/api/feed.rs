use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{error_code, spawn_app};

#[tokio::test]
async fn the_feed_pages_newest_first_with_an_opaque_cursor() {
    let app = spawn_app().await;
    let user = app.user().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(app.start_live(&user, &format!("live {n}")).await.id);
    }
    let first = app.get_json("/api/posts/?limit=2").await;
    let page: Vec<i64> = first["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(page, vec![ids[4], ids[3]]);
    let cursor = first["next_cursor"].as_str().unwrap();
    assert!(
        cursor.parse::<i64>().is_err(),
        "the cursor should be opaque"
    );

    let second = app
        .get_json(&format!("/api/posts?limit=2&cursor={cursor}"))
        .await;
    let third_cursor = second["next_cursor"].as_str().unwrap().to_owned();
    let last = app
        .get_json(&format!("/api/posts?limit=2&cursor={third_cursor}"))
        .await;
    let rest: Vec<i64> = second["results"]
        .as_array()
        .unwrap()
        .iter()
        .chain(last["results"].as_array().unwrap())
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(rest, vec![ids[2], ids[1], ids[0]]);
    assert!(last["next_cursor"].is_null());
}

#[tokio::test]
async fn a_live_post_has_every_field_of_the_contract() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "Concert").await;
    let post = app.get_json(&format!("/api/posts/{}/", live.id)).await;
    assert_eq!(post["author"]["username"], user.username.as_str());
    assert_eq!(post["content"], "Concert");
    assert_eq!(post["is_live"], true);
    assert_eq!(post["live_status"], "live");
    assert!(post["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(post["ended_at"].is_null());
    for counter in ["viewer_count", "peak_viewers", "chat_message_count"] {
        assert_eq!(post[counter], 0, "{counter}");
    }
    assert_eq!(post["media_files"], Value::Array(vec![]));
}

#[tokio::test]
async fn an_out_of_range_limit_or_a_forged_cursor_returns_400() {
    let app = spawn_app().await;
    for query in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "cursor=bm90LWEtY3Vyc29y",
    ] {
        let response = app
            .request(Method::GET, &format!("/api/posts/?{query}"), None)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(error_code(response).await, "invalid_query", "{query}");
    }
}

#[tokio::test]
async fn unknown_posts_and_unknown_api_routes_return_404_json() {
    let app = spawn_app().await;
    for path in [
        "/api/posts/999/",
        "/api/posts/abc",
        "/api/nothing/here",
        "/media/42",
    ] {
        let response = app.request(Method::GET, path, None).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error_code(response).await, "not_found", "{path}");
    }
}

#[tokio::test]
async fn a_trailing_slash_is_optional_everywhere() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "slashes").await;
    for path in [
        "/healthz".to_owned(),
        "/healthz/".to_owned(),
        "/api/posts".to_owned(),
        "/api/posts/".to_owned(),
        format!("/api/posts/{}", live.id),
        format!("/api/posts/{}/", live.id),
        format!("/api/posts/{}/chat", live.id),
        format!("/api/posts/{}/chat/", live.id),
    ] {
        let response = app.request(Method::GET, &path, None).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn the_chat_of_a_new_live_is_an_empty_list() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "quiet").await;
    let chat = app.get_json(&format!("/api/posts/{}/chat/", live.id)).await;
    assert_eq!(chat["results"], Value::Array(vec![]));
}

#[tokio::test]
async fn health_reports_database_and_storage() {
    let app = spawn_app().await;
    let health = app.get_json("/healthz").await;
    assert_eq!(health["database"], true);
    assert_eq!(health["storage"], true);
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = spawn_app().await;
    let response = app
        .request(Method::GET, "/api/posts", None)
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-request-id"));
    let echoed = app
        .request(Method::GET, "/api/posts", None)
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = spawn_app().await;
    let doc = app.get_json("/api/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/auth/register",
        "/api/auth/login",
        "/api/posts/live/",
        "/api/posts/live/{live_id}/stop/",
        "/api/posts/live/{live_id}/poster/",
        "/api/posts/live/{live_id}/chat/",
        "/api/posts/live/{live_id}/events",
        "/api/posts/live/{live_id}/stream",
        "/api/posts/",
        "/api/posts/{post_id}/",
        "/api/posts/{post_id}/chat/",
        "/api/uploads/",
        "/api/uploads/{upload_id}",
        "/media/{media_id}",
        "/media/{media_id}/poster",
        "/healthz",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is missing");
    }
}

#[tokio::test]
async fn a_wrong_method_returns_405_json() {
    let app = spawn_app().await;
    let response = app
        .request(Method::DELETE, "/api/posts/", None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(response).await, "method_not_allowed");
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.cors_origins = vec!["http://allowed.test".to_owned()];
    })
    .await;
    for (origin, allowed) in [("http://allowed.test", true), ("http://evil.test", false)] {
        let response = app
            .request(Method::OPTIONS, "/api/uploads/", None)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "PATCH")
            .header(
                "Access-Control-Request-Headers",
                "authorization,upload-offset,tus-resumable",
            )
            .send()
            .await
            .unwrap();
        let allow_origin = response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        if allowed {
            assert_eq!(allow_origin.as_deref(), Some(origin));
        } else {
            assert_eq!(allow_origin, None);
        }
    }
}

#[tokio::test]
async fn without_cors_origins_no_cross_origin_header_is_sent() {
    let app = spawn_app().await;
    let response = app
        .request(Method::GET, "/api/posts/", None)
        .header("Origin", "http://elsewhere.test")
        .send()
        .await
        .unwrap();
    assert!(!response
        .headers()
        .contains_key("access-control-allow-origin"));
}
