//! `--public-url https://host.example/livekeep`: the URLs handed out are absolute under it, and
//! the whole app (API, media, docs, health, metrics, page) answers under its path prefix, as
//! from a proxy that forwards the prefix; paths without it keep working.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{fixture, spawn_app_with, TestApp};
use livekeep_server::domain::PublicUrl;

const PUBLIC: &str = "https://host.example/livekeep";

async fn prefixed_app() -> TestApp {
    spawn_app_with(|config| {
        config.public_url = Some(PublicUrl::parse(PUBLIC).expect("a public URL"));
        // A page, to check it is served under the prefix too.
        let www = config.data_dir.join("www");
        std::fs::create_dir_all(&www).expect("a www directory");
        std::fs::write(www.join("index.html"), "<!doctype html><title>page</title>")
            .expect("index.html");
        config.www_dir = www;
    })
    .await
}

/// The path of an absolute URL under [`PUBLIC`], as the proxy forwards it.
fn forwarded_path(url: &str) -> String {
    let path = url
        .strip_prefix("https://host.example")
        .unwrap_or_else(|| panic!("{url} is not under the public URL"));
    assert!(path.starts_with("/livekeep/"), "{url}");
    path.to_owned()
}

#[tokio::test]
async fn a_live_recorded_under_the_prefix_hands_out_absolute_urls_that_work() {
    let app = prefixed_app().await;
    let registered = app
        .request(Method::POST, "/livekeep/api/auth/register", None)
        .json(&json!({"username": "prefixed", "password": "password123"}))
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), StatusCode::CREATED);
    let token = registered.json::<Value>().await.expect("JSON")["token"]
        .as_str()
        .expect("token")
        .to_owned();

    let started = app
        .request(Method::POST, "/livekeep/api/posts/live/", Some(&token))
        .json(&json!({"content": "under a prefix"}))
        .send()
        .await
        .expect("start");
    assert_eq!(started.status(), StatusCode::CREATED);
    let started: Value = started.json().await.expect("JSON");
    let live_id = started["live_id"].as_i64().expect("live_id");
    let upload_url = started["upload_url"].as_str().expect("upload_url");
    let upload_path = forwarded_path(upload_url);
    assert!(
        upload_path.starts_with("/livekeep/api/uploads/"),
        "{upload_url}"
    );

    // A tus creation answers an absolute Location under the public URL.
    let created = app
        .create_upload_request(&token, live_id)
        .header("Upload-Defer-Length", "1")
        .send()
        .await
        .expect("tus creation");
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().expect("ASCII");
    assert!(
        location.starts_with("https://host.example/livekeep/api/uploads/"),
        "{location}"
    );

    let bytes = fixture();
    let patched = app.patch(&token, &upload_path, 0, &bytes).await;
    assert_eq!(patched.status(), StatusCode::NO_CONTENT);
    let stopped = app
        .request(
            Method::PUT,
            &format!("/livekeep/api/posts/live/{live_id}/stop/"),
            Some(&token),
        )
        .json(&json!({"video_data": {"upload_url": upload_url, "size": bytes.len()}}))
        .send()
        .await
        .expect("stop");
    assert_eq!(stopped.status(), StatusCode::OK);
    let post: Value = stopped.json().await.expect("JSON");
    let file_url = post["media_files"][0]["file_url"]
        .as_str()
        .expect("file_url");
    let media_path = forwarded_path(file_url);
    let video = app.get_bytes(&media_path).await;
    assert_eq!(
        &video[..4],
        &bytes[..4],
        "the recording, served under the prefix"
    );
    // The same path without the prefix: a proxy that strips it, or a check on the node.
    let bare = media_path.strip_prefix("/livekeep").expect("prefixed");
    assert_eq!(app.get_bytes(bare).await.len(), video.len());
    let feed = app.get_json("/livekeep/api/posts/").await;
    assert_eq!(feed["results"][0]["media_files"][0]["file_url"], file_url);
}

#[tokio::test]
async fn the_page_docs_health_and_metrics_answer_under_the_prefix() {
    let app = prefixed_app().await;
    for path in [
        "/livekeep/healthz",
        "/livekeep/metrics",
        "/livekeep/api/openapi.json",
        "/healthz",
    ] {
        let response = app
            .request(Method::GET, path, None)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let docs = app
        .request(Method::GET, "/livekeep/api/docs", None)
        .send()
        .await
        .expect("docs");
    let docs = docs.text().await.expect("HTML");
    assert!(docs.contains("\"/livekeep/api/docs/app.js\""), "{docs}");
    let script = app
        .request(Method::GET, "/livekeep/api/docs/app.js", None)
        .send()
        .await
        .expect("app.js");
    assert_eq!(script.status(), StatusCode::OK);

    for path in ["/livekeep/", "/livekeep/some/client/route"] {
        let page = app
            .request(Method::GET, path, None)
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert!(page
            .text()
            .await
            .expect("HTML")
            .contains("<title>page</title>"));
    }
    // The bare prefix gets its slash, so the page's relative links resolve under it.
    let bare = app
        .request(Method::GET, "/livekeep?x=1", None)
        .send()
        .await
        .expect("GET");
    assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(bare.headers()["location"], "/livekeep/?x=1");
    // Another path that merely starts like the prefix is not under it.
    let other = app
        .request(Method::GET, "/livekeeper/api/posts", None)
        .send()
        .await
        .expect("GET");
    assert_eq!(other.status(), StatusCode::OK, "the page's fallback");
    let api_404 = app
        .request(Method::GET, "/livekeep/api/nothing", None)
        .send()
        .await
        .expect("GET");
    assert_eq!(api_404.status(), StatusCode::NOT_FOUND);
}
