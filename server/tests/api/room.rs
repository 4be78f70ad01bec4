//! The live room: viewers, chat and its offsets, `ended`, the progressive stream.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    helpers::{
        cluster_starts, error_code, fixture, spawn_app, LateRecorderChat, TestApp, EVENT_WAIT,
    },
    stream_body::read_at_least,
};

const ALICE: &str = "viewer_id=alice-0001";
const BOB: &str = "viewer_id=bob-00002";
const HOST: &str = "viewer_id=host-00001&as=broadcaster";

fn viewers(counts: &Value) -> (i64, i64) {
    (
        counts["viewers"].as_i64().unwrap(),
        counts["peak_viewers"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn a_viewer_counts_once_however_many_connections_and_the_broadcaster_not_at_all() {
    let app = spawn_app().await;
    let host = app.user().await;
    let live = app.start_live(&host, "counted").await;

    let mut studio = app.events(live.id, HOST).await;
    assert_eq!(viewers(&studio.expect("viewers").await), (0, 0));
    let mut alice = app.events(live.id, ALICE).await;
    assert_eq!(viewers(&alice.expect("viewers").await), (1, 1));
    assert_eq!(viewers(&studio.expect("viewers").await), (1, 1));
    let mut alice_again = app.events(live.id, ALICE).await;
    assert_eq!(viewers(&alice_again.expect("viewers").await), (1, 1));
    let mut bob = app.events(live.id, BOB).await;
    assert_eq!(viewers(&bob.expect("viewers").await), (2, 2));
    // The studio saw no change for Alice's second tab: its next event is Bob's arrival.
    assert_eq!(viewers(&studio.expect("viewers").await), (2, 2));

    drop(alice);
    drop(bob);
    assert_eq!(
        viewers(&studio.wait_for("viewers", |c| c["viewers"] == 1).await),
        (1, 2)
    );
    let post = app.get_json(&format!("/api/posts/{}", live.id)).await;
    assert_eq!(
        (post["viewer_count"].as_i64(), post["peak_viewers"].as_i64()),
        (Some(2), Some(2))
    );
}

/// Opens the events over a bare TCP connection, reads the first event, and returns the socket.
async fn raw_viewer(app: &TestApp, live_id: i64, query: &str) -> tokio::net::TcpStream {
    let address = app.address.strip_prefix("http://").unwrap();
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /api/posts/live/{live_id}/events?{query} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("event: viewers") {
        let n = tokio::time::timeout(EVENT_WAIT, socket.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "the server closed the connection");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    socket
}

#[tokio::test]
async fn a_viewer_whose_connection_drops_without_a_goodbye_stops_counting_within_seconds() {
    let app = spawn_app().await;
    let host = app.user().await;
    let live = app.start_live(&host, "dropped").await;
    let mut studio = app.events(live.id, HOST).await;
    studio.expect("viewers").await;

    let alice = raw_viewer(&app, live.id, ALICE).await;
    let bob = raw_viewer(&app, live.id, BOB).await;
    studio.wait_for("viewers", |c| c["viewers"] == 2).await;
    let dropped_at = Instant::now();
    drop(alice);
    drop(bob);
    let counts = studio.wait_for("viewers", |c| c["viewers"] == 0).await;
    assert_eq!(viewers(&counts), (0, 2));
    assert!(
        dropped_at.elapsed() < Duration::from_secs(5),
        "{:?}",
        dropped_at.elapsed()
    );
}

#[tokio::test]
async fn counts_and_messages_are_kept_on_the_post_when_the_live_stops_and_viewers_get_ended() {
    let app = spawn_app().await;
    let host = app.user().await;
    let fan = app.user().await;
    let (live, bytes) = app.uploaded_live(&host, "kept").await;
    let mut alice = app.events(live.id, ALICE).await;
    let mut bob = app.events(live.id, BOB).await;
    drop(app.events(live.id, "viewer_id=carol-0003").await);
    alice.wait_for("viewers", |c| c["peak_viewers"] == 3).await;
    for text in ["un", "deux"] {
        assert_eq!(
            app.chat(Some(&fan.token), live.id, text).await.status(),
            StatusCode::CREATED
        );
    }
    assert_eq!(bob.wait_for("chat", |_| true).await["body"], "un");
    assert_eq!(bob.wait_for("chat", |_| true).await["body"], "deux");

    let stopped = app
        .stop(&host.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
    let ended = bob.wait_for("ended", |_| true).await;
    assert_eq!(ended["id"], live.id);
    assert_eq!(ended["live_status"], "ended");
    assert_eq!(ended["media_files"].as_array().unwrap().len(), 1);
    assert!(
        bob.next().await.is_none(),
        "the stream closes after `ended`"
    );
    assert_eq!(alice.wait_for("ended", |_| true).await["id"], live.id);

    let post = app.get_json(&format!("/api/posts/{}", live.id)).await;
    assert_eq!(post["viewer_count"], 3);
    assert_eq!(post["peak_viewers"], 3);
    assert_eq!(post["chat_message_count"], 2);
    // Joining after the end gets `ended` at once, and is not counted.
    let mut late = app.events(live.id, "viewer_id=late-00004").await;
    assert_eq!(late.expect("ended").await["viewer_count"], 3);
    assert!(late.next().await.is_none());
}

#[tokio::test]
async fn events_need_a_known_live_and_a_well_formed_viewer_id() {
    let app = spawn_app().await;
    let host = app.user().await;
    let live = app.start_live(&host, "ids").await;
    let get = |path: String| app.request(Method::GET, &path, None).send();
    let unknown = get("/api/posts/live/999999/events?viewer_id=alice-0001".into())
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(unknown).await, "not_found");
    for query in [
        "",
        "viewer_id=short",
        "viewer_id=../../etc/passwd",
        "viewer_id=alice-0001&as=god",
    ] {
        let bad = get(format!("/api/posts/live/{}/events?{query}", live.id))
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(error_code(bad).await, "invalid_query");
    }
}

#[tokio::test]
async fn chat_needs_a_signed_in_user_a_running_live_and_a_sensible_body() {
    let app = spawn_app().await;
    let host = app.user().await;
    let fan = app.user().await;
    let live = app.start_live(&host, "chat rules").await;

    let anonymous = app.chat(None, live.id, "hello").await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(anonymous).await, "unauthenticated");
    for bad in ["   ", &"é".repeat(501), "bell\u{7}", "rtl \u{202E}gnp.exe"] {
        let response = app.chat(Some(&fan.token), live.id, bad).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(response).await, "invalid_chat_body");
    }
    let unknown = app.chat(Some(&fan.token), 999_999, "hello").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let ok = app
        .chat(
            Some(&fan.token),
            live.id,
            &format!("  {}  ", "é".repeat(500)),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::CREATED);
    let message: Value = ok.json().await.unwrap();
    assert_eq!(message["post"], live.id);
    assert_eq!(message["author"]["id"], fan.id);
    assert_eq!(message["author"]["username"], fan.username.as_str());
    assert_eq!(message["body"].as_str().unwrap().chars().count(), 500);
    assert!(message["offset"].as_f64().unwrap() >= 0.0);
    assert!(message["created_at"].as_str().is_some());
    let listed = app.get_json(&format!("/api/posts/{}/chat/", live.id)).await;
    assert_eq!(listed["results"], Value::Array(vec![message]));

    let bytes = fixture();
    app.upload_all(&host, &live, &bytes).await;
    app.stop(&host.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    let ended = app.chat(Some(&fan.token), live.id, "too late").await;
    assert_eq!(ended.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(ended).await, "live_ended");
}

#[tokio::test]
async fn a_user_sending_too_fast_is_told_when_to_retry() {
    let app = spawn_app().await;
    let host = app.user().await;
    let fan = app.user().await;
    let other = app.user().await;
    let live = app.start_live(&host, "spam").await;
    for i in 0..5 {
        let response = app
            .chat(Some(&fan.token), live.id, &format!("message {i}"))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let limited = app.chat(Some(&fan.token), live.id, "one more").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "Retry-After {retry}");
    assert_eq!(error_code(limited).await, "rate_limited");
    let others = app.chat(Some(&other.token), live.id, "not me").await;
    assert_eq!(
        others.status(),
        StatusCode::CREATED,
        "the limit is per user"
    );
    let post = app.get_json(&format!("/api/posts/{}", live.id)).await;
    assert_eq!(post["chat_message_count"], 6);
}

#[tokio::test]
async fn chat_offsets_follow_the_recordings_timeline_even_when_the_recorder_starts_late() {
    let chat = late_recorder_chat(Duration::ZERO).await;
    let offsets = &chat.offsets;
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    chat.assert_offsets_follow_the_recording();
}

#[tokio::test]
async fn chunks_that_take_long_to_upload_do_not_shift_the_chat_offsets() {
    // On a slow uplink each chunk's body arrives 600 ms after its PATCH began: the recording
    // is dated by a PATCH's start, when the recorder had the chunk, not by its end.
    late_recorder_chat(Duration::from_millis(600))
        .await
        .assert_offsets_follow_the_recording();
}

/// [`TestApp::chat_beside_a_late_recorder`] on the WebM fixture, a cluster (a second of media)
/// per chunk, each chunk's body taking `upload_time` to arrive.
async fn late_recorder_chat(upload_time: Duration) -> LateRecorderChat {
    let app = spawn_app().await;
    let bytes = fixture();
    let clusters = cluster_starts(&bytes);
    let chat = app
        .chat_beside_a_late_recorder(&bytes, &[0, clusters[1], clusters[2]], upload_time)
        .await;
    assert_eq!(chat.sent_at.len(), 3, "a message per chunk");
    chat
}

/// `GET /api/posts/live/{id}/stream`.
async fn get_stream(app: &TestApp, live_id: i64) -> reqwest::Response {
    app.request(
        Method::GET,
        &format!("/api/posts/live/{live_id}/stream"),
        None,
    )
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn the_stream_sends_the_header_then_whole_clusters_from_a_keyframe_and_ends_with_the_live() {
    let app = spawn_app().await;
    let host = app.user().await;
    let live = app.start_live(&host, "stream").await;
    let bytes = fixture();
    let clusters = cluster_starts(&bytes);
    // Two clusters and a half are durable when the viewer joins.
    let first = clusters[2] + 100;
    app.patch(&host.token, &live.upload_url, 0, &bytes[..first])
        .await;

    let response = get_stream(&app, live.id).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "video/webm");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.headers().get("content-length").is_none());
    let mut body = Box::pin(response.bytes_stream());
    let mut got = Vec::new();
    // The header (EBML, Segment, Info, Tracks), then the second cluster: the latest complete
    // one that opens on a keyframe. Not the half cluster.
    read_at_least(&mut body, &mut got, 4, EVENT_WAIT).await;
    assert_eq!(&got[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
    let header_len = cluster_starts(&got).first().copied().unwrap_or(got.len());
    let live_edge = clusters[2] - clusters[1];
    read_at_least(&mut body, &mut got, header_len + live_edge, EVENT_WAIT).await;
    assert_eq!(&got[header_len..], &bytes[clusters[1]..clusters[2]]);

    // The rest arrives as it is committed; the stream ends when the live stops.
    app.patch(&host.token, &live.upload_url, first as u64, &bytes[first..])
        .await;
    let whole_stream = header_len + bytes.len() - clusters[1];
    read_at_least(&mut body, &mut got, whole_stream, EVENT_WAIT).await;
    assert_eq!(&got[header_len..], &bytes[clusters[1]..]);
    app.stop(&host.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    let end = tokio::time::timeout(EVENT_WAIT, body.next())
        .await
        .expect("the end");
    assert!(end.is_none(), "nothing after the live ended");

    // What was sent is a WebM ffmpeg decodes without a single error.
    let mut ffmpeg = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i", "-", "-f", "null", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ffmpeg on PATH");
    std::io::Write::write_all(ffmpeg.stdin.as_mut().unwrap(), &got).unwrap();
    let out = ffmpeg.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let after = get_stream(&app, live.id).await;
    assert_eq!(after.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(after).await, "live_ended");
}

#[tokio::test]
async fn a_stream_ends_when_the_recorder_moves_to_another_upload_so_the_viewer_follows_it() {
    let app = spawn_app().await;
    let host = app.user().await;
    let live = app.start_live(&host, "moved").await;
    let bytes = fixture();
    let clusters = cluster_starts(&bytes);
    app.patch(&host.token, &live.upload_url, 0, &bytes[..clusters[2]])
        .await;
    let response = get_stream(&app, live.id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = Box::pin(response.bytes_stream());
    let mut got = Vec::new();
    read_at_least(&mut body, &mut got, 4, EVENT_WAIT).await;

    // The recorder restarts on a new upload (as after losing its journal).
    let created = app
        .create_upload_request(&host.token, live.id)
        .header("Upload-Defer-Length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let second = created.headers()["location"].to_str().unwrap().to_owned();
    app.patch(&host.token, &second, 0, &bytes).await;
    loop {
        let next = tokio::time::timeout(EVENT_WAIT, body.next())
            .await
            .expect("the stream ends within the wait");
        match next {
            Some(piece) => got.extend_from_slice(&piece.unwrap()),
            None => break,
        }
    }
}

/// Chromium's own MediaRecorder output: unknown-size clusters, a keyframe every second.
fn chromium_webm() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../webm/tests/fixtures/chromium-vp8-kf1s.webm");
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn the_last_cluster_reaches_the_viewers_when_the_live_ends() {
    let app = spawn_app().await;
    let host = app.user().await;
    let live = app.start_live(&host, "last seconds").await;
    let bytes = chromium_webm();
    let clusters = cluster_starts(&bytes);
    app.patch(&host.token, &live.upload_url, 0, &bytes).await;

    let response = get_stream(&app, live.id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = Box::pin(response.bytes_stream());
    let mut got = Vec::new();
    read_at_least(&mut body, &mut got, 4, EVENT_WAIT).await;
    let header_len = loop {
        if let Some(&start) = cluster_starts(&got).first() {
            if got.len() >= start + 64 {
                break start;
            }
        }
        let len = got.len() + 1;
        read_at_least(&mut body, &mut got, len, EVENT_WAIT).await;
    };
    // An unknown-size cluster is whole only once the next one starts: the last one waits.
    let last = *clusters.last().unwrap();
    let joined_at = clusters
        .iter()
        .copied()
        .find(|&start| bytes[start..].starts_with(&got[header_len..]))
        .expect("the stream starts at a cluster");
    read_at_least(
        &mut body,
        &mut got,
        header_len + (last - joined_at),
        EVENT_WAIT,
    )
    .await;
    assert_eq!(&got[header_len..], &bytes[joined_at..last]);
    let nothing_more = tokio::time::timeout(Duration::from_millis(500), body.next()).await;
    assert!(nothing_more.is_err(), "the last cluster is not whole yet");

    app.stop(&host.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    while let Some(piece) = tokio::time::timeout(EVENT_WAIT, body.next())
        .await
        .expect("the last cluster, then the end")
    {
        got.extend_from_slice(&piece.unwrap());
    }
    assert_eq!(
        &got[header_len..],
        &bytes[joined_at..],
        "the stream ends with the recording's last cluster"
    );
    let mut ffmpeg = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i", "-", "-f", "null", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ffmpeg on PATH");
    std::io::Write::write_all(ffmpeg.stdin.as_mut().unwrap(), &got).unwrap();
    let out = ffmpeg.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The upload goes once its last viewer has it (in the background, right after).
    let deadline = Instant::now() + EVENT_WAIT;
    while !app.stored_files("uploads").await.is_empty() {
        assert!(Instant::now() < deadline, "the upload's file stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A WebM as MediaRecorder shapes it (unknown sizes), with one video track and a cluster per
/// second of media, each one keyframe of `payload` bytes tagged with the cluster's number.
fn big_cluster_webm(clusters: usize, payload: usize) -> (Vec<u8>, Vec<usize>) {
    use livekeep_webm::ebml;
    let mut out = Vec::new();
    let mut ebml_body = Vec::new();
    ebml::write_binary(&mut ebml_body, ebml::ID_DOCTYPE, b"webm");
    ebml::write_header(&mut out, ebml::ID_EBML, ebml_body.len() as u64);
    out.extend_from_slice(&ebml_body);
    out.extend_from_slice(&[
        0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    let mut info = Vec::new();
    ebml::write_uint(&mut info, ebml::ID_TIMESTAMPSCALE, 1_000_000);
    ebml::write_header(&mut out, ebml::ID_INFO, info.len() as u64);
    out.extend_from_slice(&info);
    let mut entry = Vec::new();
    ebml::write_uint(&mut entry, ebml::ID_TRACKNUMBER, 1);
    ebml::write_uint(&mut entry, ebml::ID_TRACKTYPE, 1);
    ebml::write_binary(&mut entry, ebml::ID_CODECID, b"V_VP8");
    let mut tracks = Vec::new();
    ebml::write_header(&mut tracks, ebml::ID_TRACKENTRY, entry.len() as u64);
    tracks.extend_from_slice(&entry);
    ebml::write_header(&mut out, ebml::ID_TRACKS, tracks.len() as u64);
    out.extend_from_slice(&tracks);
    let mut starts = Vec::new();
    for n in 0..clusters {
        starts.push(out.len());
        out.extend_from_slice(&[
            0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        // Timestamps of a fixed width, as MediaRecorder writes them.
        out.extend_from_slice(&[0xE7, 0x84]);
        out.extend_from_slice(&(n as u32 * 1000).to_be_bytes());
        let mut block = vec![0x81, 0x00, 0x00, 0x80];
        block.extend(std::iter::repeat_n(n as u8, payload));
        ebml::write_header(&mut out, ebml::ID_SIMPLEBLOCK, block.len() as u64);
        out.extend_from_slice(&block);
    }
    (out, starts)
}

/// The clusters of a stream body: (timestamp, number tagged in its payload).
fn clusters_of(body: &[u8]) -> Vec<(u32, u8)> {
    cluster_starts(body)
        .into_iter()
        .map(|start| {
            let ts = &body[start + 14..start + 18];
            let tag = body[start + 18 + 8 + 4];
            (u32::from_be_bytes(ts.try_into().unwrap()), tag)
        })
        .collect()
}

/// Reads off `stream` until what was read holds `marker` (a viewer that has started): the
/// bytes read, to hand to [`read_chunked`].
pub async fn read_until(stream: &mut tokio::net::TcpStream, marker: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while !raw.windows(marker.len()).any(|w| w == marker) {
        let n = tokio::time::timeout(EVENT_WAIT, stream.read(&mut buf))
            .await
            .expect("the stream starts")
            .unwrap();
        assert!(n > 0, "the stream closed before it started");
        raw.extend_from_slice(&buf[..n]);
    }
    raw
}

/// Reads an HTTP/1.1 chunked body off `stream` until it ends, after the bytes `raw` already
/// read of it.
pub async fn read_chunked(stream: &mut tokio::net::TcpStream, mut raw: Vec<u8>) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
        .await
        .expect("the stream ends")
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut rest = &raw[split..];
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[tokio::test]
async fn a_viewer_more_than_ten_seconds_behind_is_moved_to_the_live_edge_without_a_gap() {
    let app = spawn_app().await;
    let host = app.user().await;
    let live = app.start_live(&host, "slow viewer").await;
    // 40 s of media at 4 Mbit/s: far more than the socket buffers hold.
    let (bytes, starts) = big_cluster_webm(40, 512 << 10);
    app.patch(&host.token, &live.upload_url, 0, &bytes[..starts[3]])
        .await;

    // A viewer on a slow link: a tiny receive buffer, and no reading for a while.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = app.address.trim_start_matches("http://");
    let mut viewer = socket.connect(address.parse().unwrap()).await.unwrap();
    let request = format!(
        "GET /api/posts/live/{}/stream HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n",
        live.id
    );
    viewer.write_all(request.as_bytes()).await.unwrap();
    // Joined (its first cluster is on its way) before the live goes on.
    let started = read_until(&mut viewer, &[0x1F, 0x43, 0xB6, 0x75]).await;
    let mut offset = starts[3];
    for window in starts[3..].windows(2) {
        app.patch(
            &host.token,
            &live.upload_url,
            offset as u64,
            &bytes[offset..window[1]],
        )
        .await;
        offset = window[1];
    }
    app.patch(
        &host.token,
        &live.upload_url,
        offset as u64,
        &bytes[offset..],
    )
    .await;
    let stop = async {
        // The viewer catches up first, then the live ends.
        tokio::time::sleep(Duration::from_secs(2)).await;
        app.stop(&host.token, live.id, TestApp::video_data(&live, &bytes))
            .await
            .status()
    };
    let (body, stopped) = tokio::join!(read_chunked(&mut viewer, started), stop);
    assert_eq!(stopped, StatusCode::OK);

    let got = clusters_of(&body);
    // Cluster 2 was not known whole when the viewer came (it ended at the committed offset).
    let tags: Vec<u8> = got.iter().map(|&(_, tag)| tag).collect();
    assert_eq!(
        tags[0], 1,
        "the viewer joined at the latest keyframe: {tags:?}"
    );
    assert_eq!(
        *tags.last().unwrap(),
        39,
        "and ends with the last cluster: {tags:?}"
    );
    assert!(
        tags.windows(2).any(|pair| pair[1] > pair[0] + 10),
        "the viewer skipped more than ten seconds: {tags:?}"
    );
    assert!(tags.windows(2).all(|pair| pair[1] > pair[0]), "{tags:?}");
    let times: Vec<u32> = got.iter().map(|&(ts, _)| ts).collect();
    assert!(
        times.windows(2).all(|pair| pair[1] == pair[0] + 1000),
        "the stream's time runs on without a gap: {times:?}"
    );
    // Each cluster arrived whole.
    for (start, &(_, tag)) in cluster_starts(&body).iter().zip(&got) {
        let original = starts[tag as usize];
        let len = starts.get(tag as usize + 1).copied().unwrap_or(bytes.len()) - original;
        assert_eq!(
            body[start + 18..start + len],
            bytes[original + 18..original + len]
        );
    }
}
