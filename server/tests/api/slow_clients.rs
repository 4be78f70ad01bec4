//! Slow and broken clients: a stalled or cut PATCH body keeps none of its bytes (the upload
//! stays at the last acknowledged offset), and hundreds of idle connections starve no one.

use axum::body::Bytes;
use reqwest::StatusCode;
use tokio::{io::AsyncWriteExt, net::TcpStream, sync::mpsc};

use crate::helpers::{fixture, spawn_app, spawn_app_with, TestApp, EVENT_WAIT};

/// A PATCH body fed by the test: bytes are sent when pushed, the body ends or fails on demand.
fn controlled_body() -> (mpsc::Sender<Result<Bytes, std::io::Error>>, reqwest::Body) {
    let (tx, rx) = mpsc::channel(4);
    let stream = tokio_stream_from(rx);
    (tx, reqwest::Body::wrap_stream(stream))
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Finishes the fixture from the acknowledged offset and stops: the recording is byte-exact.
async fn finish(app: &TestApp, user: &crate::helpers::TestUser, live: &crate::helpers::TestLive) {
    let bytes = fixture();
    let head = app.head(&user.token, &live.upload_url).await;
    assert_eq!(
        head.headers()["upload-offset"],
        "10000",
        "the partial body was kept"
    );
    let rest = app
        .patch(&user.token, &live.upload_url, 10_000, &bytes[10_000..])
        .await;
    assert_eq!(rest.status(), StatusCode::NO_CONTENT);
    let stopped = app
        .stop(&user.token, live.id, TestApp::video_data(live, &bytes))
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_patch_body_that_stalls_times_out_and_keeps_none_of_its_bytes() {
    let app = spawn_app_with(|config| config.patch_idle_timeout = 1).await;
    let user = app.user().await;
    let live = app.start_live(&user, "stall").await;
    let bytes = fixture();
    app.patch(&user.token, &live.upload_url, 0, &bytes[..10_000])
        .await;
    let (feed, body) = controlled_body();
    feed.send(Ok(Bytes::copy_from_slice(&bytes[10_000..20_000])))
        .await
        .unwrap();
    // The sender stays open and silent: the body stalls after 10 000 bytes.
    let answer = tokio::time::timeout(
        EVENT_WAIT,
        app.patch_request(&user.token, &live.upload_url, 10_000)
            .body(body)
            .send(),
    )
    .await
    .expect("the server gives up on a stalled body");
    if let Ok(response) = answer {
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(crate::helpers::error_code(response).await, "body_timeout");
    }
    drop(feed);
    finish(&app, &user, &live).await;
}

#[tokio::test]
async fn a_patch_cut_mid_body_keeps_none_of_its_bytes() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "cut").await;
    let bytes = fixture();
    app.patch(&user.token, &live.upload_url, 0, &bytes[..10_000])
        .await;
    let (feed, body) = controlled_body();
    feed.send(Ok(Bytes::copy_from_slice(&bytes[10_000..20_000])))
        .await
        .unwrap();
    feed.send(Err(std::io::Error::other("the network went away")))
        .await
        .unwrap();
    let answer = app
        .patch_request(&user.token, &live.upload_url, 10_000)
        .body(body)
        .send()
        .await;
    assert!(answer.is_err(), "a cut body was answered: {answer:?}");
    finish(&app, &user, &live).await;
}

#[tokio::test]
async fn five_hundred_idle_connections_do_not_starve_a_normal_request() {
    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for n in 0..500 {
        let mut socket = TcpStream::connect(&address).await.expect("connect");
        // Half say nothing, half stop in the middle of their headers.
        if n % 2 == 0 {
            socket
                .write_all(b"GET /api/posts/ HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(socket);
    }
    let answered = tokio::time::timeout(EVENT_WAIT, async {
        let user = app.user().await;
        app.start_live(&user, "still served").await;
        app.get_json("/api/posts/").await
    })
    .await
    .expect("a normal request is served beside 500 idle connections");
    assert_eq!(answered["results"][0]["content"], "still served");
    drop(idle);
}
