//! The start-up consistency check, on data directories tampered with by hand.

use std::time::Duration;

use livekeep_server::{config::Config, ops::consistency, startup::Application};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{
    error_code, fixture, spawn_app, spawn_app_in, spawn_app_with, StorageView, TestApp,
};

const ORPHAN: &str = "0123456789abcdef0123456789abcdef";

async fn put_poster(app: &TestApp, token: &str, live_id: i64) {
    let response = app
        .request(
            Method::PUT,
            &format!("/api/posts/live/{live_id}/poster"),
            Some(token),
        )
        .header("content-type", "image/jpeg")
        .body(vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F',
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

async fn stopped_live(
    app: &TestApp,
    user: &crate::helpers::TestUser,
    title: &str,
) -> (Value, String) {
    let live = app.start_live(user, title).await;
    let bytes = fixture();
    app.upload_all(user, &live, &bytes).await;
    let response = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    (response.json().await.unwrap(), live.upload_url)
}

#[tokio::test]
async fn with_a_grace_period_a_fresh_file_without_a_row_is_kept_for_another_node() {
    // On a shared database another node may have written the file and not yet its row.
    let app = spawn_app_with(|config| config.orphan_grace = Some(3600)).await;
    let data_dir = app.shutdown().await;
    let stored = StorageView::of(data_dir.path());
    stored
        .put_raw("files", &format!("{ORPHAN}.webm"), b"being finalized")
        .await;
    stored
        .put_raw(
            "uploads",
            &format!("{ORPHAN}.part"),
            b"row not committed yet",
        )
        .await;

    let app = spawn_app_in(data_dir, |config| config.orphan_grace = Some(3600)).await;
    assert_eq!(app.stored_files("files").await, [format!("{ORPHAN}.webm")]);
    assert_eq!(
        app.stored_files("uploads").await,
        [format!("{ORPHAN}.part")]
    );
    let data_dir = app.shutdown().await;

    // Once older than the grace (here: none), the next start deletes them.
    let app = spawn_app_in(data_dir, |config| config.orphan_grace = Some(0)).await;
    assert!(app.stored_files("files").await.is_empty());
    assert!(app.stored_files("uploads").await.is_empty());
}

#[tokio::test]
async fn files_without_rows_are_deleted_at_start_and_files_with_rows_are_kept() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (_, finished_upload) = stopped_live(&app, &user, "finished").await;
    let running = app.start_live(&user, "still live").await;
    put_poster(&app, &user.token, running.id).await;
    // Some bytes: an object store holds nothing at all for an empty upload.
    let bytes = fixture();
    let first = app
        .patch(&user.token, &running.upload_url, 0, &bytes[..1000])
        .await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    // A recording and the poster waiting on the running live.
    app.layouts_assembled(1).await;
    let kept = app.stored_files("files").await;
    assert_eq!(kept.len(), 2);
    let data_dir = app.shutdown().await;

    // A crash leaves a committed file without its row, a staged file, an upload file without
    // a row, the file of a finished upload; someone left a file of their own.
    let stored = StorageView::of(data_dir.path());
    stored
        .put_raw("files", &format!("{ORPHAN}.webm"), b"orphan")
        .await;
    if stored.has_staging() {
        stored.put_raw("staging", ORPHAN, b"half written").await;
    }
    stored
        .put_raw("uploads", &format!("{ORPHAN}.part"), b"no row")
        .await;
    let finished = finished_upload.rsplit('/').next().unwrap();
    stored
        .put_raw("uploads", &format!("{finished}.part"), b"ended")
        .await;
    stored.put_raw("uploads", "notes.txt", b"not ours").await;

    let app = spawn_app_in(data_dir, |_| {}).await;
    assert_eq!(app.stored_files("files").await, kept);
    assert!(app.stored_files("staging").await.is_empty());
    let uploads = app.stored_files("uploads").await;
    let running_upload = running.upload_url.rsplit('/').next().unwrap();
    assert_eq!(
        uploads,
        [format!("{running_upload}.part"), "notes.txt".to_owned()]
    );
    // The running live still accepts its bytes.
    let rest = app
        .patch(&user.token, &running.upload_url, 1000, &bytes[1000..])
        .await;
    assert_eq!(rest.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.upload_bytes(&running.upload_url).await.unwrap(), bytes);
}

#[tokio::test]
async fn a_lost_recording_is_a_404_and_a_lost_poster_is_forgotten_never_a_500() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "lost").await;
    put_poster(&app, &user.token, live.id).await;
    let bytes = fixture();
    app.upload_all(&user, &live, &bytes).await;
    let post: Value = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await
        .json()
        .await
        .unwrap();
    let media_id = post["media_files"][0]["id"].as_i64().unwrap();
    assert!(post["media_files"][0]["poster_url"].is_string());
    let data_dir = app.shutdown().await;
    StorageView::of(data_dir.path()).lose_all_files().await;

    let app = spawn_app_in(data_dir, |_| {}).await;
    let post = app.get_json(&format!("/api/posts/{}", live.id)).await;
    assert!(post["media_files"][0]["poster_url"].is_null());
    for path in [
        format!("/media/{media_id}"),
        format!("/media/{media_id}/poster"),
    ] {
        let response = app.request(Method::GET, &path, None).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error_code(response).await, "not_found");
    }
}

#[tokio::test]
async fn an_upload_past_its_expiry_is_expired_at_start_and_a_second_check_finds_nothing() {
    let quick_expiry = |c: &mut Config| {
        c.upload_expiry = 1;
        c.interrupt_after = 3600;
    };
    let app = spawn_app_with(quick_expiry).await;
    let user = app.user().await;
    let live = app.start_live(&user, "stale").await;
    app.upload_all(&user, &live, &fixture()[..1000]).await;
    assert!(app.upload_bytes(&live.upload_url).await.is_some());
    let data_dir = app.shutdown().await;
    // The expiry is a wall-clock deadline: let it pass while the server is down.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let app = spawn_app_in(data_dir, quick_expiry).await;
    assert_eq!(
        app.upload_bytes(&live.upload_url).await,
        None,
        "the expired upload's file is deleted"
    );
    let late = app
        .patch(&user.token, &live.upload_url, 1000, b"late")
        .await;
    assert_eq!(late.status(), StatusCode::GONE);
    assert_eq!(error_code(late).await, "upload_expired");
    let data_dir = app.shutdown().await;

    let mut config = Config::with_data_dir(data_dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.storage_url = Some(StorageView::of(data_dir.path()).url);
    quick_expiry(&mut config);
    let built = Application::build(config).await.unwrap();
    let again = consistency::check_and_repair(built.state()).await.unwrap();
    assert!(again.is_clean(), "{again:?}");
}
