//! MP4 recordings as first-class as WebM ones (issue 16): finalized at stop into a file players
//! seek without reading it, watched live while they record, with their poster.
//!
//! The recordings are real: Chromium's own `video/mp4` MediaRecorder output (the crate's
//! fixture) and H.264 + AAC fragmented MP4 made here by ffmpeg, as Safari records it.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::{
    helpers::{
        error_code, mp4_fixture, spawn_app, LateRecorderChat, TestApp, TestLive, EVENT_WAIT,
    },
    media_tools::{
        decode_errors, ffprobe_duration, file_of, fragmented_mp4, framemd5, moofs, read_moof,
        top_boxes,
    },
    poster::put_poster,
    stop_from_index::{stop_and_fetch, upload_from},
    stream_body::read_at_least,
};

/// Chromium's `video/mp4` recording from the fake camera (VP9 + Opus, fragmented).
fn chromium_mp4() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../webm/tests/fixtures/chromium-fmp4.mp4");
    std::fs::read(path).expect("the crate's fixture")
}

/// One frame of the slowest video here (Chromium's fake camera: 20 fps).
const ONE_FRAME_SECS: f64 = 0.05;

/// The `video_data` of an MP4 recorder.
fn mp4_video_data(live: &TestLive, bytes: &[u8]) -> Value {
    let mut data = TestApp::video_data(live, bytes);
    data["mime_type"] = json!("video/mp4");
    data
}

/// Records `bytes` as a live's MP4 upload and stops it; returns the Media and its file.
async fn recorded(app: &TestApp, bytes: &[u8]) -> (Value, Vec<u8>) {
    let user = app.user().await;
    let live = app.start_live(&user, "mp4").await;
    upload_from(app, &user, &live, bytes, 0, 64 << 10).await;
    stop_and_fetch(app, &user, &live, bytes).await
}

#[tokio::test]
async fn a_stopped_mp4_is_finalized_with_its_duration_and_an_index_and_keeps_every_frame() {
    let app = spawn_app().await;
    let safari_like = fragmented_mp4(6, "+default_base_moof", false).bytes();
    let absolute_offsets = fragmented_mp4(4, "", false).bytes();
    for (name, upload) in [
        ("chromium", chromium_mp4()),
        ("ffmpeg vp9+opus", mp4_fixture()),
        ("ffmpeg h264+aac", safari_like),
        ("ffmpeg absolute base offsets", absolute_offsets),
    ] {
        let (media, file) = recorded(&app, &upload).await;
        assert_eq!(media["mime_type"], "video/mp4", "{name}");
        assert_eq!(media["size"].as_u64(), Some(file.len() as u64), "{name}");
        let uploaded = file_of(&upload, "upload.mp4");
        let finalized = file_of(&file, "finalized.mp4");
        // ffprobe reads every fragment of the upload to learn its length: the truth.
        let truth = ffprobe_duration(&uploaded.path);
        let duration = media["duration"].as_f64().unwrap();
        assert!(
            (duration - truth).abs() < ONE_FRAME_SECS,
            "{name}: {duration} vs {truth}"
        );
        let probed = ffprobe_duration(&finalized.path);
        assert!(
            (probed - truth).abs() < ONE_FRAME_SECS,
            "{name}: {probed} vs {truth}"
        );
        assert_eq!(
            framemd5(&finalized.path),
            framemd5(&uploaded.path),
            "{name}: the same frames"
        );
        // ftyp, moov, a sidx per track, then the fragments.
        let kinds: Vec<[u8; 4]> = top_boxes(&file).iter().map(|b| b.kind).collect();
        assert_eq!(&kinds[..3], &[*b"ftyp", *b"moov", *b"sidx"], "{name}");
        let first_moof = kinds.iter().position(|k| k == b"moof").unwrap();
        assert!(kinds[2..first_moof].iter().all(|k| k == b"sidx"), "{name}");
    }
}

#[tokio::test]
async fn an_mp4_the_finalizer_cannot_read_is_refused_with_its_reason_and_its_bytes_kept() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "broken mp4").await;
    // An ftyp passes the PATCH check; a fragment before any moov cannot be played.
    let fragments = fragmented_mp4(2, "+default_base_moof", false).bytes();
    let boxes = top_boxes(&fragments);
    let moov = boxes.iter().find(|b| &b.kind == b"moov").unwrap();
    let mut bytes = fragments[..moov.offset].to_vec();
    bytes.extend_from_slice(&fragments[moov.offset + moov.size..]);
    app.upload_all(&user, &live, &bytes).await;
    let response = app
        .stop(&user.token, live.id, mp4_video_data(&live, &bytes))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_recording");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("a fragment comes before the moov"),
        "{message}"
    );
    assert_eq!(app.upload_bytes(&live.upload_url).await.unwrap(), bytes);
    let post = app.get_json(&format!("/api/posts/{}/", live.id)).await;
    assert_eq!(post["live_status"], "live");
    assert_eq!(post["media_files"], json!([]));
}

#[tokio::test]
async fn an_mp4_lives_poster_goes_to_its_media_as_a_webm_lives_does() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "poster mp4").await;
    let bytes = chromium_mp4();
    app.upload_all(&user, &live, &bytes).await;
    let jpeg = [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[7; 64]].concat();
    let put = put_poster(&app, Some(&user.token), live.id, "image/jpeg", jpeg.clone()).await;
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    let response = app
        .stop(&user.token, live.id, mp4_video_data(&live, &bytes))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let post: Value = response.json().await.unwrap();
    let url = post["media_files"][0]["poster_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.get_bytes(&url).await.as_ref(), jpeg.as_slice());
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
async fn an_mp4_live_streams_its_init_segment_then_whole_fragments_from_a_keyframe_to_the_end() {
    for movflags in ["+default_base_moof", ""] {
        let app = spawn_app().await;
        let host = app.user().await;
        let live = app.start_live(&host, "mp4 live").await;
        let bytes = fragmented_mp4(6, movflags, false).bytes();
        let boxes = top_boxes(&bytes);
        let moof_starts: Vec<usize> = boxes
            .iter()
            .filter(|b| &b.kind == b"moof")
            .map(|b| b.offset)
            .collect();
        let moov = boxes.iter().find(|b| &b.kind == b"moov").unwrap();
        let init = &bytes[..moov.offset + moov.size];
        // Two fragments and half of the third are durable when the viewer joins.
        let first = (moof_starts[2] + moof_starts[3]) / 2;
        upload_from(&app, &host, &live, &bytes[..first], 0, 50_000).await;

        let response = get_stream(&app, live.id).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "video/mp4");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let mut body = Box::pin(response.bytes_stream());
        let mut got = Vec::new();
        // The init segment, then the second fragment: the latest whole one (each opens on a
        // keyframe). Not the half one.
        let second = moof_starts[2] - moof_starts[1];
        read_at_least(&mut body, &mut got, init.len() + second, EVENT_WAIT).await;
        assert_eq!(&got[..init.len()], init, "{movflags}");
        let nothing_more = tokio::time::timeout(Duration::from_millis(500), body.next()).await;
        assert!(
            nothing_more.is_err(),
            "{movflags}: the third fragment is not whole yet"
        );
        assert_eq!(got.len(), init.len() + second);
        assert_eq!(
            read_moof(&got[init.len()..]).sequence,
            read_moof(&bytes[moof_starts[1]..]).sequence,
            "{movflags}"
        );

        // The rest arrives as it is committed; the stream ends when the live stops.
        let rest = &bytes[first..];
        let mut offset = first;
        for piece in rest.chunks(70_000) {
            app.patch(&host.token, &live.upload_url, offset as u64, piece)
                .await;
            offset += piece.len();
        }
        // ffmpeg ends the file with an mfra: an index of no use to a stream, not sent.
        let last_mdat = boxes.iter().rfind(|b| &b.kind == b"mdat").unwrap();
        let media_end = last_mdat.offset + last_mdat.size;
        assert!(media_end < bytes.len());
        let whole = init.len() + media_end - moof_starts[1];
        read_at_least(&mut body, &mut got, whole, EVENT_WAIT).await;
        app.stop(&host.token, live.id, mp4_video_data(&live, &bytes))
            .await;
        while let Some(piece) = tokio::time::timeout(EVENT_WAIT, body.next())
            .await
            .expect("the end")
        {
            got.extend_from_slice(&piece.unwrap());
        }
        assert_eq!(
            got.len(),
            whole,
            "{movflags}: every fragment once, to the last"
        );
        // What was sent is an MP4 ffmpeg decodes without a single error, whatever its base
        // offsets (absolute ones were moved with the fragments).
        assert_eq!(decode_errors(&got, "mp4"), "", "{movflags}");
        let sent: Vec<u32> = moofs(&got).iter().map(|m| m.sequence).collect();
        let all: Vec<u32> = moofs(&bytes).iter().map(|m| m.sequence).collect();
        assert_eq!(sent, all[1..], "{movflags}");

        let after = get_stream(&app, live.id).await;
        assert_eq!(after.status(), StatusCode::CONFLICT);
        assert_eq!(error_code(after).await, "live_ended");
    }
}

#[tokio::test]
async fn a_viewer_who_joins_before_the_first_byte_gets_the_stream_once_it_comes() {
    let app = spawn_app().await;
    let host = app.user().await;
    let live = app.start_live(&host, "early viewer").await;
    let bytes = chromium_mp4();
    let request = tokio::spawn(get_stream_owned(app.address.clone(), live.id));
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.upload_all(&host, &live, &bytes).await;
    let response = tokio::time::timeout(EVENT_WAIT, request)
        .await
        .expect("an answer once bytes came")
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "video/mp4");
}

async fn get_stream_owned(address: String, live_id: i64) -> reqwest::Response {
    reqwest::get(format!("{address}/api/posts/live/{live_id}/stream"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_progressive_mp4_live_is_not_streamable_and_unknown_lives_are_404() {
    let app = spawn_app().await;
    let host = app.user().await;
    let live = app.start_live(&host, "camera file").await;
    let camera = crate::media_tools::ffmpeg_make(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=10",
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-movflags",
            "+faststart",
        ],
        "camera.mp4",
    );
    app.upload_all(&host, &live, &camera.bytes()).await;
    let response = get_stream(&app, live.id).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(response).await, "not_streamable");
    let unknown = get_stream(&app, 999999).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_mp4_viewer_more_than_ten_seconds_behind_is_moved_to_the_live_edge_without_a_gap() {
    let app = spawn_app().await;
    let host = app.user().await;
    let live = app.start_live(&host, "slow mp4 viewer").await;
    // 40 s of noise: far more bytes than the socket buffers hold.
    let bytes = fragmented_mp4(40, "+default_base_moof", true).bytes();
    let moof_starts: Vec<usize> = top_boxes(&bytes)
        .iter()
        .filter(|b| &b.kind == b"moof")
        .map(|b| b.offset)
        .collect();
    app.patch(&host.token, &live.upload_url, 0, &bytes[..moof_starts[3]])
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
    // Joined (its first fragment is on its way) before the live goes on.
    let started = crate::room::read_until(&mut viewer, b"moof").await;
    let mut offset = moof_starts[3];
    for next in moof_starts[4..].iter().copied().chain([bytes.len()]) {
        app.patch(
            &host.token,
            &live.upload_url,
            offset as u64,
            &bytes[offset..next],
        )
        .await;
        offset = next;
    }
    let stop = async {
        // The viewer catches up first, then the live ends.
        tokio::time::sleep(Duration::from_secs(2)).await;
        app.stop(&host.token, live.id, mp4_video_data(&live, &bytes))
            .await
            .status()
    };
    let (body, stopped) = tokio::join!(crate::room::read_chunked(&mut viewer, started), stop);
    assert_eq!(stopped, StatusCode::OK);

    let got = moofs(&body);
    let sequences: Vec<u32> = got.iter().map(|m| m.sequence).collect();
    let all: Vec<u32> = moofs(&bytes).iter().map(|m| m.sequence).collect();
    assert_eq!(
        sequences[0], all[2],
        "joined at the latest keyframe fragment: {sequences:?}"
    );
    assert_eq!(
        sequences.last(),
        all.last(),
        "and ends with the last: {sequences:?}"
    );
    assert!(
        sequences.windows(2).any(|pair| pair[1] > pair[0] + 10),
        "the viewer skipped more than ten seconds: {sequences:?}"
    );
    assert!(
        sequences.windows(2).all(|pair| pair[1] > pair[0]),
        "{sequences:?}"
    );
    // Each track's decode times run on without a gap: the video's by exactly one fragment
    // (a second), the audio's by a second give or take an AAC frame.
    let track_times =
        |track: usize| -> Vec<i64> { got.iter().map(|m| m.decode_times[track].1 as i64).collect() };
    let video = track_times(0);
    let step = video[1] - video[0];
    assert!(
        step > 0 && video.windows(2).all(|t| t[1] - t[0] == step),
        "{video:?}"
    );
    let audio = track_times(1);
    assert!(
        audio
            .windows(2)
            .all(|t| (t[1] - t[0] - 48_000).abs() <= 2048),
        "{audio:?}"
    );
    assert_eq!(decode_errors(&body, "mp4"), "");
}

#[tokio::test]
async fn chat_offsets_follow_an_mp4_recordings_timeline_even_when_the_recorder_starts_late() {
    late_mp4_recorder_chat(Duration::ZERO)
        .await
        .assert_offsets_follow_the_recording();
}

#[tokio::test]
async fn mp4_chunks_that_take_long_to_upload_do_not_shift_the_chat_offsets() {
    // Each chunk's body arrives 600 ms after its PATCH began; an MP4 is dated by its first.
    late_mp4_recorder_chat(Duration::from_millis(600))
        .await
        .assert_offsets_follow_the_recording();
}

/// [`TestApp::chat_beside_a_late_recorder`] on a three-fragment MP4, a fragment (a second of
/// media) per chunk, each chunk's body taking `upload_time` to arrive.
async fn late_mp4_recorder_chat(upload_time: Duration) -> LateRecorderChat {
    let app = spawn_app().await;
    let bytes = fragmented_mp4(3, "+default_base_moof", false).bytes();
    let moof_starts: Vec<usize> = top_boxes(&bytes)
        .iter()
        .filter(|b| &b.kind == b"moof")
        .map(|b| b.offset)
        .collect();
    let chat = app
        .chat_beside_a_late_recorder(&bytes, &[0, moof_starts[1], moof_starts[2]], upload_time)
        .await;
    assert_eq!(chat.sent_at.len(), 3, "a message per chunk");
    chat
}
