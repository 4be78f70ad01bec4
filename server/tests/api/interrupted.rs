use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{error_code, fixture, sha256_hex, spawn_app_in, spawn_app_with, TestApp};

/// Polls a post until its live status leaves `live` (bounded; not a timing assertion).
async fn wait_until_not_live(app: &TestApp, live_id: i64) -> Value {
    for _ in 0..300 {
        let post = app.get_json(&format!("/api/posts/{live_id}")).await;
        if post["live_status"] != "live" {
            return post;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("live {live_id} was never finalized");
}

#[tokio::test]
async fn a_silent_live_is_finalized_as_interrupted_with_the_files_duration() {
    let app = spawn_app_with(|c| c.interrupt_after = 1).await;
    let user = app.user().await;
    let (live, bytes) = app.uploaded_live(&user, "gone").await;

    let post = wait_until_not_live(&app, live.id).await;
    assert_eq!(post["live_status"], "interrupted");
    assert!(post["ended_at"].as_str().is_some());
    let media = &post["media_files"][0];
    assert_eq!(media["original_sha256"], sha256_hex(&bytes).as_str());
    assert_eq!(media["title"], "Vidéo du live - gone");
    assert_eq!(media["is_live_recording"], true);
    let duration = media["duration"].as_f64().unwrap();
    assert!((duration - 3.0).abs() < 0.2, "duration {duration}");

    // A late stop returns the existing Media; a late PATCH is refused.
    let late_stop = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(late_stop.status(), StatusCode::OK);
    let late_post: Value = late_stop.json().await.unwrap();
    assert_eq!(late_post["media_files"], post["media_files"]);
    let late_patch = app
        .patch(&user.token, &live.upload_url, bytes.len() as u64, b"late")
        .await;
    assert_eq!(late_patch.status(), StatusCode::GONE);
    assert_eq!(error_code(late_patch).await, "upload_closed");
}

#[tokio::test]
async fn a_silent_live_without_bytes_is_interrupted_without_media() {
    let app = spawn_app_with(|c| c.interrupt_after = 1).await;
    let user = app.user().await;
    let live = app.start_live(&user, "nothing").await;
    let post = wait_until_not_live(&app, live.id).await;
    assert_eq!(post["live_status"], "interrupted");
    assert_eq!(post["media_files"], Value::Array(vec![]));
}

#[tokio::test]
async fn a_live_left_open_by_a_stopped_server_is_finalized_at_the_next_start() {
    let first = spawn_app_with(|c| c.interrupt_after = 3600).await;
    let user = first.user().await;
    let live = first.start_live(&user, "left open").await;
    let bytes = fixture();
    first.upload_all(&user, &live, &bytes).await;
    let data_dir = first.shutdown().await;
    // Let the one-second window pass while the server is down.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let second = spawn_app_in(data_dir, |c| c.interrupt_after = 1).await;
    let post = wait_until_not_live(&second, live.id).await;
    assert_eq!(post["live_status"], "interrupted");
    assert_eq!(
        post["media_files"][0]["original_sha256"],
        sha256_hex(&bytes).as_str()
    );
}

#[tokio::test]
async fn a_live_cut_off_mid_block_keeps_every_complete_block() {
    let app = spawn_app_with(|c| c.interrupt_after = 1).await;
    let user = app.user().await;
    let live = app.start_live(&user, "torn").await;
    let bytes = fixture();
    // The browser died in the middle of writing the last block.
    let torn = &bytes[..bytes.len() - 700];
    app.upload_all(&user, &live, torn).await;
    let post = wait_until_not_live(&app, live.id).await;
    assert_eq!(post["live_status"], "interrupted");
    let media = &post["media_files"][0];
    assert_eq!(media["original_sha256"], sha256_hex(torn).as_str());
    let duration = media["duration"].as_f64().unwrap();
    assert!(duration > 2.0 && duration <= 3.1, "duration {duration}");
}
