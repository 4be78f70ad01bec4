//! `PUT /api/posts/live/{id}/poster/` and `GET /media/{id}/poster`.

use livekeep_server::domain::MediaId;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use crate::helpers::{error_code, fixture, spawn_app, spawn_app_with, TestApp, TestUser};

/// A real JPEG of a test pattern, made by ffmpeg.
pub fn jpeg(pattern: &str) -> Vec<u8> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("{pattern}=size=64x48"))
        .args(["-frames:v", "1", "-f", "mjpeg", "-"])
        .output()
        .expect("ffmpeg on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `PUT /api/posts/live/{live_id}/poster/`.
pub async fn put_poster(
    app: &TestApp,
    token: Option<&str>,
    live_id: i64,
    content_type: &str,
    body: Vec<u8>,
) -> Response {
    app.request(
        Method::PUT,
        &format!("/api/posts/live/{live_id}/poster/"),
        token,
    )
    .header("content-type", content_type)
    .body(body)
    .send()
    .await
    .expect("PUT poster")
}

async fn stop(app: &TestApp, user: &TestUser, live: &crate::helpers::TestLive) -> Value {
    let bytes = fixture();
    app.upload_all(user, live, &bytes).await;
    let response = app
        .stop(&user.token, live.id, TestApp::video_data(live, &bytes))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn stored_posters(app: &TestApp) -> usize {
    app.stored_files("files")
        .await
        .iter()
        .filter(|name| name.ends_with(".jpg"))
        .count()
}

#[tokio::test]
async fn a_poster_sent_during_the_live_becomes_the_medias_and_is_served_as_a_jpeg() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "poster").await;
    let image = jpeg("testsrc");
    let put = put_poster(
        &app,
        Some(&user.token),
        live.id,
        "image/jpeg",
        image.clone(),
    )
    .await;
    assert_eq!(put.status(), StatusCode::NO_CONTENT);

    let post = stop(&app, &user, &live).await;
    let media = &post["media_files"][0];
    let media_id = media["id"].as_i64().unwrap();
    let url = format!("/media/{media_id}/poster");
    assert_eq!(media["poster_url"], url.as_str());

    let served = app.request(Method::GET, &url, None).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let headers = served.headers().clone();
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=31536000"));
    assert_eq!(served.bytes().await.unwrap(), image);
    let etag = headers["etag"].clone();
    let cached = app
        .request(Method::GET, &url, None)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(stored_posters(&app).await, 1);
}

#[tokio::test]
async fn a_poster_sent_again_or_after_the_stop_replaces_the_old_one_whose_file_goes() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "twice").await;
    for pattern in ["testsrc", "smptebars"] {
        let put = put_poster(
            &app,
            Some(&user.token),
            live.id,
            "image/jpeg",
            jpeg(pattern),
        )
        .await;
        assert_eq!(put.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(
        stored_posters(&app).await,
        1,
        "the first poster was replaced"
    );
    let post = stop(&app, &user, &live).await;
    let url = post["media_files"][0]["poster_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let media_id = MediaId::new(post["media_files"][0]["id"].as_i64().unwrap());
    let before = app.request(Method::GET, &url, None).send().await.unwrap();
    assert_eq!(before.status(), StatusCode::OK);
    assert!(app.state.media_cache.cached(media_id).is_some());

    let late = jpeg("rgbtestsrc");
    let put = put_poster(
        &app,
        Some(&user.token),
        live.id,
        "image/jpeg; q=1",
        late.clone(),
    )
    .await;
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    // This node forgot the old poster's key as it replaced it.
    assert!(app.state.media_cache.cached(media_id).is_none());
    let served = app.request(Method::GET, &url, None).send().await.unwrap();
    assert_eq!(served.bytes().await.unwrap(), late);
    assert_eq!(stored_posters(&app).await, 1);
}

/// Token, live, Content-Type, body, expected status and code.
type Case<'a> = (Option<&'a str>, i64, &'a str, Vec<u8>, StatusCode, &'a str);

#[tokio::test]
async fn a_poster_needs_its_owner_a_jpeg_and_at_most_one_mib() {
    let app = spawn_app().await;
    let user = app.user().await;
    let other = app.user().await;
    let live = app.start_live(&user, "rules").await;
    let image = jpeg("testsrc");
    let cases: [Case; 6] = [
        (
            None,
            live.id,
            "image/jpeg",
            image.clone(),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        ),
        (
            Some(&other.token),
            live.id,
            "image/jpeg",
            image.clone(),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            Some(&user.token),
            999_999,
            "image/jpeg",
            image.clone(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Some(&user.token),
            live.id,
            "image/png",
            image.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Some(&user.token),
            live.id,
            "image/jpeg",
            b"<svg onload=alert(1)>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Some(&user.token),
            live.id,
            "image/jpeg",
            [&image[..], &vec![0; 1 << 20]].concat(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];
    for (token, live_id, content_type, body, status, code) in cases {
        let response = put_poster(&app, token, live_id, content_type, body).await;
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(error_code(response).await, code);
    }
    assert_eq!(stored_posters(&app).await, 0);
    // Without a poster: null in the JSON, 404 at the URL.
    let post = stop(&app, &user, &live).await;
    assert!(post["media_files"][0]["poster_url"].is_null());
    let media_id = post["media_files"][0]["id"].as_i64().unwrap();
    let missing = app
        .request(Method::GET, &format!("/media/{media_id}/poster"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_interrupted_live_keeps_its_poster() {
    let app = spawn_app_with(|c| c.interrupt_after = 1).await;
    let user = app.user().await;
    let live = app.start_live(&user, "gone").await;
    let put = put_poster(
        &app,
        Some(&user.token),
        live.id,
        "image/jpeg",
        jpeg("testsrc"),
    )
    .await;
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    app.upload_all(&user, &live, &fixture()).await;
    // The events end when the sweeper finalizes the silent live.
    let mut events = app.events(live.id, "viewer_id=watcher-01").await;
    let ended = events.wait_for("ended", |_| true).await;
    assert_eq!(ended["live_status"], "interrupted");
    let media_id = ended["media_files"][0]["id"].as_i64().unwrap();
    assert_eq!(
        ended["media_files"][0]["poster_url"],
        format!("/media/{media_id}/poster").as_str()
    );
}
