//! Slow and broken clients: a stalled or cut PATCH body keeps none of its bytes (the upload
//! stays at the last acknowledged offset); thousands of idle or slowloris connections starve no
//! one: the header-read timeout closes them and above the connection cap new ones get a 503.

use axum::body::Bytes;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};

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

/// Idle connections the starvation test holds open at once (the server's side of each is a file
/// descriptor of this process too, so the test raises its descriptor limit).
const IDLE_CONNECTIONS: usize = 3_000;

/// Raises this process's soft descriptor limit to its hard limit (a fresh Debian shell gives
/// 1024), and fails clearly if even that cannot hold `needed` descriptors.
fn raise_descriptor_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= needed,
        "the test needs {needed} file descriptors; `ulimit -Hn` allows {}",
        limit.rlim_cur
    );
}

/// `host:port` of the app.
fn socket_address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Opens `count` connections: even ones say nothing, odd ones stop in the middle of their headers.
async fn idle_connections(address: &str, count: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(count);
    for n in 0..count {
        let mut socket = TcpStream::connect(address).await.expect("connect");
        if n % 2 == 1 {
            socket
                .write_all(b"GET /api/posts/ HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        sockets.push(socket);
    }
    sockets
}

/// Whether the server has closed `socket` (end of stream or reset), without waiting.
fn closed_by_server(socket: &TcpStream) -> bool {
    let mut byte = [0u8; 64];
    match socket.try_read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false, // An answer (the server may say 408 before closing): not yet closed.
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Reads until the server closes `socket`; the bytes it sent before closing.
async fn read_until_closed(socket: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(within, async {
        let mut buffer = [0u8; 1024];
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    received
}

#[tokio::test]
async fn thousands_of_idle_connections_do_not_starve_a_normal_request() {
    raise_descriptor_limit(2 * IDLE_CONNECTIONS as u64 + 1_000);
    // A long header timeout: every idle connection is still open while the request is served.
    let app = spawn_app_with(|config| config.header_read_timeout = 120).await;
    let user = app.user().await;
    let idle = idle_connections(&socket_address(&app), IDLE_CONNECTIONS).await;
    let started = Instant::now();
    let answered = tokio::time::timeout(EVENT_WAIT, async {
        app.start_live(&user, "still served").await;
        app.get_json("/api/posts/").await
    })
    .await
    .expect("a normal request is served beside thousands of idle connections");
    let took = started.elapsed();
    assert_eq!(answered["results"][0]["content"], "still served");
    assert!(took < Duration::from_secs(5), "served in {took:?}");
    let closed = idle
        .iter()
        .filter(|socket| closed_by_server(socket))
        .count();
    assert_eq!(closed, 0, "idle connections were open all along");
}

#[tokio::test]
async fn connections_stalled_in_their_headers_are_closed_after_the_timeout() {
    raise_descriptor_limit(2_000);
    let app = spawn_app_with(|config| config.header_read_timeout = 2).await;
    let address = socket_address(&app);
    let opened = Instant::now();
    let mut stalled = idle_connections(&address, 400).await;
    // Slowloris proper: a header byte every 200 ms, forever; trickling does not reset the clock.
    let mut slowloris = Vec::new();
    for _ in 0..100 {
        let mut socket = TcpStream::connect(&address).await.expect("connect");
        socket.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        slowloris.push(tokio::spawn(async move {
            let started = Instant::now();
            while socket.write_all(b"X").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                assert!(started.elapsed() < EVENT_WAIT, "the trickle was never cut");
            }
            started.elapsed()
        }));
    }
    // Meanwhile a normal request is answered well within the timeout.
    let served = Instant::now();
    assert_eq!(
        app.get_json("/api/posts/").await["results"],
        serde_json::json!([])
    );
    assert!(served.elapsed() < Duration::from_millis(1_500));
    // None was closed before its time (each was accepted after `opened`).
    let before_the_timeout = opened.elapsed() < Duration::from_millis(1_900);
    let closed_early = stalled.iter().filter(|s| closed_by_server(s)).count();
    if before_the_timeout {
        assert_eq!(closed_early, 0, "closed before the timeout");
    }
    for socket in &mut stalled {
        read_until_closed(socket, EVENT_WAIT).await;
    }
    for trickle in slowloris {
        let lasted = trickle
            .await
            .expect("the trickle ends when the server closes");
        assert!(
            lasted >= Duration::from_millis(1_800),
            "cut after {lasted:?}"
        );
        assert!(lasted < Duration::from_secs(6), "cut after {lasted:?}");
    }
    // A client that completes its request in time is not affected by the timeout.
    let mut prompt = TcpStream::connect(&address).await.expect("connect");
    prompt
        .write_all(b"GET /api/posts/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut prompt, EVENT_WAIT).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// Reads one whole response (headers and a `content-length` body) from a kept-alive connection.
async fn read_response(socket: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(EVENT_WAIT, async {
        loop {
            let text = String::from_utf8_lossy(&received);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        line.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse().ok())
                    .expect("a content-length");
                if body.len() >= length {
                    return;
                }
            }
            let n = socket.read(&mut buffer).await.expect("read");
            assert!(n > 0, "closed mid-response");
            received.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("a whole response");
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn a_kept_alive_connection_may_idle_past_the_header_timeout_until_the_keep_alive_one() {
    let app = spawn_app_with(|config| {
        config.header_read_timeout = 1;
        config.keep_alive_timeout = 6;
    })
    .await;
    let address = socket_address(&app);
    const REQUEST: &[u8] = b"GET /api/posts/ HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut kept = Vec::new();
    for _ in 0..2 {
        let mut socket = TcpStream::connect(&address).await.expect("connect");
        socket.write_all(REQUEST).await.unwrap();
        assert!(read_response(&mut socket).await.starts_with("HTTP/1.1 200"));
        kept.push(socket);
    }
    let (mut reused, mut trickled) = (kept.remove(0), kept.remove(0));

    // Idle for twice the header timeout: still open, and a request written now is answered
    // (a client reusing it does not race the server closing it).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!closed_by_server(&reused) && !closed_by_server(&trickled));
    reused.write_all(REQUEST).await.unwrap();
    assert!(read_response(&mut reused).await.starts_with("HTTP/1.1 200"));
    let answered = Instant::now();

    // A next request that starts and stalls has the header timeout from its first byte.
    trickled.write_all(b"GET /api/po").await.unwrap();
    let started = Instant::now();
    read_until_closed(&mut trickled, EVENT_WAIT).await;
    let cut = started.elapsed();
    assert!(cut >= Duration::from_millis(800), "cut after {cut:?}");
    assert!(
        cut < Duration::from_secs(3),
        "cut after {cut:?}, not at the header timeout"
    );

    // An idle one is closed at the keep-alive timeout, not before.
    read_until_closed(&mut reused, EVENT_WAIT).await;
    let idled = answered.elapsed();
    assert!(
        idled >= Duration::from_millis(5_500),
        "closed after {idled:?}"
    );
}

#[tokio::test]
async fn connections_above_the_cap_get_a_503_while_those_below_work() {
    const CAP: usize = 40;
    let app = spawn_app_with(|config| {
        config.max_connections = CAP as u32;
        config.header_read_timeout = 120;
    })
    .await;
    let address = socket_address(&app);
    // The test client's pooled connection is one of the cap.
    let user = app.user().await;
    let mut idle = idle_connections(&address, CAP - 1).await;
    // Accepts are in order: once these are in, the next connection is over the cap.
    let mut over = TcpStream::connect(&address).await.expect("connect");
    let refused = read_until_closed(&mut over, EVENT_WAIT).await;
    let refused = String::from_utf8(refused).expect("UTF-8");
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    assert!(refused.contains("\"over_capacity\""), "{refused}");
    let fresh = reqwest::Client::new();
    match fresh.get(app.url("/api/posts/")).send().await {
        Ok(response) => assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE),
        Err(err) => assert!(!err.is_timeout(), "{err}"), // A reset racing the 503: refused too.
    }
    // The connections below the cap are served as usual.
    app.start_live(&user, "below the cap").await;
    // Closing idle connections frees their places for new clients.
    idle.truncate(CAP - 11);
    let fresh_served = tokio::time::timeout(EVENT_WAIT, async {
        loop {
            let response = fresh.get(app.url("/api/posts/")).send().await;
            if let Ok(response) = response {
                if response.status() == StatusCode::OK {
                    return response.json::<serde_json::Value>().await.expect("JSON");
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a place frees up when idle connections close");
    assert_eq!(fresh_served["results"][0]["content"], "below the cap");
    drop(idle);
}
