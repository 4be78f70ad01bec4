use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{error_code, fixture, sha256_hex, spawn_app, TestApp, TestLive, TestUser};

/// `POST /api/posts/live` with `content`, whatever the answer.
async fn post_live(app: &TestApp, user: &TestUser, content: &str) -> reqwest::Response {
    app.request(Method::POST, "/api/posts/live", Some(&user.token))
        .json(&json!({ "content": content }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn starting_a_live_creates_a_live_post_and_its_deferred_length_upload() {
    let app = spawn_app().await;
    let user = app.user().await;
    let response = post_live(&app, &user, "  Mon live  ").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["post"]["id"], body["live_id"]);
    assert_eq!(body["post"]["live_status"], "live");
    assert_eq!(body["post"]["content"], "Mon live");
    let upload_url = body["upload_url"].as_str().unwrap();
    let id = upload_url.strip_prefix("/api/uploads/").unwrap();
    assert_eq!(id.len(), 32);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    let head = app.head(&user.token, upload_url).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["upload-offset"], "0");
    assert_eq!(head.headers()["upload-defer-length"], "1");
}

#[tokio::test]
async fn starting_a_live_with_blank_content_returns_400() {
    let app = spawn_app().await;
    let user = app.user().await;
    let response = post_live(&app, &user, "   ").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn stopping_a_live_creates_its_media_and_ends_it() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (live, bytes) = app.uploaded_live(&user, "Concert").await;

    let response = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let post: Value = response.json().await.unwrap();
    assert_eq!(post["id"], live.id);
    assert_eq!(post["live_status"], "ended");
    assert!(post["ended_at"].as_str().is_some());
    let media = post["media_files"].as_array().unwrap();
    assert_eq!(media.len(), 1);
    let media = &media[0];
    assert_eq!(media["title"], "Vidéo du live - Concert");
    assert_eq!(media["description"], "Vidéo enregistrée du live 'Concert'");
    assert_eq!(media["file_type"], "video");
    assert_eq!(media["is_live_recording"], true);
    assert_eq!(media["live_post"], live.id);
    assert_eq!(media["user"]["id"], user.id);
    assert_eq!(media["mime_type"], "video/webm;codecs=vp8,opus");
    assert_eq!(media["original_sha256"], sha256_hex(&bytes).as_str());
    assert!(media["poster_url"].is_null());
    let duration = media["duration"].as_f64().unwrap();
    assert!((duration - 3.0).abs() < 0.2, "duration {duration}");
    let media_id = media["id"].as_i64().unwrap();
    assert_eq!(media["file_url"], format!("/media/{media_id}").as_str());

    let served = app.get_bytes(&format!("/media/{media_id}")).await;
    assert_eq!(media["size"], served.len());

    let feed = app.get_json("/api/posts/").await;
    let listed = &feed["results"][0];
    assert_eq!(listed["id"], live.id);
    assert_eq!(listed["media_files"][0]["id"], media_id);

    app.layouts_assembled(0).await;
    assert_eq!(app.stored_files("files").await.len(), 1);
    assert!(app.stored_files("staging").await.is_empty());
    assert!(
        app.stored_files("uploads").await.is_empty(),
        "the raw upload is deleted after commit (or its layout's assembly)"
    );
}

#[tokio::test]
async fn a_title_in_video_data_names_the_media() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (live, bytes) = app.uploaded_live(&user, "Concert").await;
    let mut data = TestApp::video_data(&live, &bytes);
    data["title"] = json!("Mon concert");
    let post: Value = app
        .stop(&user.token, live.id, data)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(post["media_files"][0]["title"], "Mon concert");
}

#[tokio::test]
async fn a_repeated_stop_returns_the_same_post_and_media() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (live, bytes) = app.uploaded_live(&user, "twice").await;
    let first: Value = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await
        .json()
        .await
        .unwrap();
    let mut different = TestApp::video_data(&live, &bytes);
    different["duration"] = json!(3.4);
    different["size"] = json!(1);
    let again = app.stop(&user.token, live.id, different).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    app.layouts_assembled(0).await;
    assert_eq!(app.stored_files("files").await.len(), 1);
}

#[tokio::test]
async fn a_patch_after_the_stop_returns_410() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (live, bytes) = app.uploaded_live(&user, "closed").await;
    let stopped = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
    let late = app
        .patch(&user.token, &live.upload_url, bytes.len() as u64, b"more")
        .await;
    assert_eq!(late.status(), StatusCode::GONE);
    assert_eq!(error_code(late).await, "upload_closed");
}

async fn uploaded_live(app: &TestApp) -> (TestUser, crate::helpers::TestLive, Vec<u8>) {
    let user = app.user().await;
    let (live, bytes) = app.uploaded_live(&user, "errors").await;
    (user, live, bytes)
}

async fn assert_nothing_was_stored(app: &TestApp, live_id: i64) {
    let post = app.get_json(&format!("/api/posts/{live_id}")).await;
    assert_eq!(post["live_status"], "live");
    assert_eq!(post["media_files"], Value::Array(vec![]));
    assert!(app.stored_files("files").await.is_empty());
    assert!(app.stored_files("staging").await.is_empty());
}

#[tokio::test]
async fn a_blob_url_returns_400_blob_url() {
    let app = spawn_app().await;
    let (user, live, bytes) = uploaded_live(&app).await;
    let mut data = TestApp::video_data(&live, &bytes);
    data["url"] = json!("blob:http://localhost/1234");
    let response = app.stop(&user.token, live.id, data).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "blob_url");
    assert_nothing_was_stored(&app, live.id).await;
}

#[tokio::test]
async fn a_wrong_size_returns_409_size_mismatch_and_stores_nothing() {
    let app = spawn_app().await;
    let (user, live, bytes) = uploaded_live(&app).await;
    let mut data = TestApp::video_data(&live, &bytes);
    data["size"] = json!(bytes.len() + 1);
    let response = app.stop(&user.token, live.id, data).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(response).await, "size_mismatch");
    assert_nothing_was_stored(&app, live.id).await;
}

#[tokio::test]
async fn a_wrong_sha256_returns_409_checksum_mismatch_and_stores_nothing() {
    let app = spawn_app().await;
    let (user, live, bytes) = uploaded_live(&app).await;
    let mut data = TestApp::video_data(&live, &bytes);
    data["sha256"] = json!(sha256_hex(b"other bytes"));
    let response = app.stop(&user.token, live.id, data).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(response).await, "checksum_mismatch");
    assert_nothing_was_stored(&app, live.id).await;
    // The live stays stoppable with the right claims.
    let retry = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(retry.status(), StatusCode::OK);
}

/// Checks that the live ended without a Media, its chat closed and its upload shut.
async fn assert_ended_without_media(app: &TestApp, user: &TestUser, live: &TestLive, post: Value) {
    assert_eq!(post["live_status"], "ended", "{post}");
    assert!(post["ended_at"].is_string(), "{post}");
    assert_eq!(post["media_files"], json!([]), "{post}");
    let chat = app
        .request(
            Method::POST,
            &format!("/api/posts/live/{}/chat/", live.id),
            Some(&user.token),
        )
        .json(&json!({ "body": "still there?" }))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), StatusCode::CONFLICT, "the live is over");
    let patch = app
        .patch_request(&user.token, &live.upload_url, 0)
        .body(fixture())
        .send()
        .await
        .unwrap();
    assert_eq!(
        patch.status(),
        StatusCode::GONE,
        "its upload takes no more bytes"
    );
    assert_eq!(
        app.get_json(&format!("/api/posts/{}/", live.id)).await,
        post
    );
}

#[tokio::test]
async fn a_stop_without_video_data_before_any_byte_ends_the_live_without_a_media() {
    let app = spawn_app().await;
    let user = app.user().await;
    for body in [None, Some(json!({}))] {
        let live = app.start_live(&user, "nothing recorded").await;
        let mut request = app.request(
            Method::PUT,
            &format!("/api/posts/live/{}/stop/", live.id),
            Some(&user.token),
        );
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "body {body:?}");
        let post: Value = response.json().await.unwrap();
        assert_ended_without_media(&app, &user, &live, post).await;
    }
}

#[tokio::test]
async fn a_stop_declaring_zero_bytes_ends_the_live_without_a_media_and_stays_idempotent() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "empty").await;
    let first = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &[]))
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    let post: Value = first.json().await.unwrap();
    assert_ended_without_media(&app, &user, &live, post.clone()).await;
    let again = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &[]))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap(), post);
}

#[tokio::test]
async fn a_declared_size_the_server_does_not_hold_yet_is_409_upload_incomplete() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "in flight").await;
    let bytes = fixture();
    let response = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(response).await, "upload_incomplete");
    let post = app.get_json(&format!("/api/posts/{}/", live.id)).await;
    assert_eq!(post["live_status"], "live", "the live goes on: {post}");
    app.upload_all(&user, &live, &bytes).await;
    let response = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_declared_length_not_reached_returns_409_upload_incomplete() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "short").await;
    let bytes = fixture();
    let half = &bytes[..bytes.len() / 2];
    let response = app
        .patch_request(&user.token, &live.upload_url, 0)
        .header("Upload-Length", bytes.len().to_string())
        .body(half.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .stop(&user.token, live.id, TestApp::video_data(&live, half))
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(response).await, "upload_incomplete");
}

#[tokio::test]
async fn a_negative_duration_returns_400() {
    let app = spawn_app().await;
    let (user, live, bytes) = uploaded_live(&app).await;
    let mut data = TestApp::video_data(&live, &bytes);
    data["duration"] = json!(-1.0);
    let response = app.stop(&user.token, live.id, data).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "invalid_duration");
}

#[tokio::test]
async fn the_upload_of_another_live_returns_400_upload_mismatch() {
    let app = spawn_app().await;
    let (user, live, bytes) = uploaded_live(&app).await;
    let other = app.start_live(&user, "other").await;
    let mut data = TestApp::video_data(&live, &bytes);
    data["upload_url"] = json!(other.upload_url);
    data["live_id"] = json!(null);
    let response = app.stop(&user.token, live.id, data).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "upload_mismatch");
}

#[tokio::test]
async fn the_upload_can_be_named_by_its_id() {
    let app = spawn_app().await;
    let (user, live, bytes) = uploaded_live(&app).await;
    let mut data = TestApp::video_data(&live, &bytes);
    data["upload_url"] = json!(null);
    data["upload_id"] = json!(live.upload_url.rsplit('/').next().unwrap());
    let response = app.stop(&user.token, live.id, data).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn stopping_an_unknown_live_returns_404() {
    let app = spawn_app().await;
    let user = app.user().await;
    let response = app.stop(&user.token, 4242, json!({})).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "not_found");
}

#[tokio::test]
async fn stopping_another_users_live_returns_403() {
    let app = spawn_app().await;
    let (_owner, live, bytes) = uploaded_live(&app).await;
    let intruder = app.user().await;
    let response = app
        .stop(&intruder.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await, "forbidden");
}

#[tokio::test]
async fn a_stop_without_video_data_keeps_the_uploaded_bytes_as_the_recording() {
    let app = spawn_app().await;
    let (user, live, bytes) = uploaded_live(&app).await;
    let response = app
        .request(
            Method::PUT,
            &format!("/api/posts/live/{}/stop", live.id),
            Some(&user.token),
        )
        .json(&json!({"nothing": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let post: Value = response.json().await.unwrap();
    assert_eq!(post["live_status"], "ended");
    let media = &post["media_files"][0];
    assert_eq!(
        media["original_sha256"],
        sha256_hex(&bytes).as_str(),
        "nothing checked, nothing lost: {post}"
    );
    assert_eq!(media["title"], "Vidéo du live - errors");
}

#[tokio::test]
async fn bytes_that_are_not_a_video_fail_clearly_and_keep_the_upload() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "broken").await;
    // EBML magic passes the PATCH check, but the rest is no WebM.
    let mut bytes = vec![0x1A, 0x45, 0xDF, 0xA3];
    bytes.extend_from_slice(&[0xFF; 64]);
    app.upload_all(&user, &live, &bytes).await;
    let response = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "invalid_recording");
    assert_nothing_was_stored(&app, live.id).await;
    assert_eq!(app.upload_bytes(&live.upload_url).await.unwrap(), bytes);
}
