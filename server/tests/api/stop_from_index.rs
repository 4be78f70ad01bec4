//! Issue 17: the stop reads nothing back. The SHA-256 and the container index were computed as
//! the bytes arrived and saved with each committed offset; the finished media is the planned
//! head over the upload's own bytes. Whatever the PATCH sizes, restarts and repairs, it must
//! be byte for byte what the full finalizer makes of the same upload.

use std::io::Cursor;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    helpers::{
        mp4_fixture, sha256_hex, spawn_app, spawn_app_in, upload_id, StorageView, TestApp,
        TestLive, TestUser, EVENT_WAIT,
    },
    media_tools::fragmented_mp4,
    stream_body::read_at_least,
};

/// A fixture of the crate's (real Chromium recordings).
fn crate_fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../webm/tests/fixtures")
        .join(name);
    std::fs::read(path).expect("a crate fixture")
}

/// What the full two-pass finalizer makes of `upload`.
pub fn fully_finalized(upload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    livekeep_webm::finalize(Cursor::new(upload), &mut out).expect("the full finalizer");
    out
}

/// Sends `bytes[from..]` in PATCHes of `chunk` bytes.
pub async fn upload_from(
    app: &TestApp,
    user: &TestUser,
    live: &TestLive,
    bytes: &[u8],
    from: usize,
    chunk: usize,
) {
    let mut offset = from;
    for piece in bytes[from..].chunks(chunk) {
        let response = app
            .patch(&user.token, &live.upload_url, offset as u64, piece)
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        offset += piece.len();
    }
}

/// Stops the live with an honest recorder's claims; returns its Media and the served file.
pub async fn stop_and_fetch(
    app: &TestApp,
    user: &TestUser,
    live: &TestLive,
    bytes: &[u8],
) -> (Value, Vec<u8>) {
    let mut data = TestApp::video_data(live, bytes);
    if bytes.get(4..8) == Some(b"ftyp") {
        data["mime_type"] = json!("video/mp4");
    }
    let response = app.stop(&user.token, live.id, data).await;
    assert_eq!(response.status(), StatusCode::OK);
    let post: Value = response.json().await.unwrap();
    let media = post["media_files"][0].clone();
    let file = app
        .get_bytes(media["file_url"].as_str().unwrap())
        .await
        .to_vec();
    (media, file)
}

#[tokio::test]
async fn the_finished_media_is_byte_for_byte_what_the_full_finalizer_makes() {
    let app = spawn_app().await;
    let uploads = [
        ("ffmpeg live webm", crate::helpers::fixture()),
        ("chromium vp8", crate_fixture("chromium-vp8-kf1s.webm")),
        ("chromium vp9", crate_fixture("chromium-vp9.webm")),
        (
            "chromium audio only",
            crate_fixture("chromium-opus-only.webm"),
        ),
        (
            "chromium cut off",
            crate_fixture("chromium-vp8-truncated.webm"),
        ),
        ("chromium mp4", crate_fixture("chromium-fmp4.mp4")),
        ("ffmpeg vp9 mp4", mp4_fixture()),
        (
            "ffmpeg mp4, absolute offsets",
            fragmented_mp4(3, "", false).bytes(),
        ),
    ];
    for (name, bytes) in uploads {
        for chunk in [7_777, 64 << 10] {
            let user = app.user().await;
            let live = app.start_live(&user, name).await;
            upload_from(&app, &user, &live, &bytes, 0, chunk).await;
            let (media, file) = stop_and_fetch(&app, &user, &live, &bytes).await;
            let expected = fully_finalized(&bytes);
            assert!(
                file == expected,
                "{name}, PATCHes of {chunk}: the finished bytes differ"
            );
            assert_eq!(
                media["size"].as_u64(),
                Some(expected.len() as u64),
                "{name}"
            );
            assert_eq!(
                media["original_sha256"],
                sha256_hex(&bytes).as_str(),
                "{name}"
            );
            if StorageView::of(app.data_dir.path()).has_staging() {
                // On local disk: the head over the upload's own file, nothing copied; the
                // upload's name is gone, its bytes are the media's.
                let files = app.stored_files("files").await;
                assert!(
                    files.iter().any(|f| f.ends_with(".layout")),
                    "{name}: {files:?}"
                );
                assert!(app.stored_files("uploads").await.is_empty(), "{name}");
            }
            // A range across the head and the upload's bytes, and one inside them.
            let path = media["file_url"].as_str().unwrap();
            for (first, last) in [(100, 9_099), (expected.len() - 5_000, expected.len() - 1)] {
                let ranged = app
                    .request(Method::GET, path, None)
                    .header("Range", format!("bytes={first}-{last}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT, "{name}");
                assert_eq!(
                    ranged.bytes().await.unwrap(),
                    expected[first..=last],
                    "{name}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_server_restarted_mid_upload_resumes_its_index_and_hash_from_what_it_saved() {
    let bytes = crate_fixture("chromium-vp8-kf1s.webm");
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "restarted").await;
    let half = bytes.len() / 2 + 333;
    upload_from(&app, &user, &live, &bytes[..half], 0, 10_000).await;
    let dir = app.shutdown().await;
    let app = spawn_app_in(dir, |_| {}).await;
    upload_from(&app, &user, &live, &bytes, half, 10_000).await;
    let (media, file) = stop_and_fetch(&app, &user, &live, &bytes).await;
    assert!(file == fully_finalized(&bytes));
    assert_eq!(media["original_sha256"], sha256_hex(&bytes).as_str());
}

#[tokio::test]
async fn a_viewer_who_brings_the_index_forward_does_not_make_the_next_patch_save_over_the_log() {
    // A live stream brings this node's index forward from the stored bytes without saving it,
    // while the saved log already holds their entries (here written before a restart; on two
    // nodes, by the other node). The next PATCH must not take it for one it saved itself:
    // its save would go over those entries (a duplicate key, the PATCH a 500).
    let bytes = crate_fixture("chromium-vp8-kf1s.webm");
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "viewed").await;
    let half = bytes.len() / 2 + 777;
    upload_from(&app, &user, &live, &bytes[..half], 0, 10_000).await;
    let app = spawn_app_in(app.shutdown().await, |_| {}).await;
    let response = app
        .request(
            Method::GET,
            &format!("/api/posts/live/{}/stream", live.id),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = Box::pin(response.bytes_stream());
    let mut got = Vec::new();
    // The header and the latest cluster that opens on a keyframe: the index was brought
    // to the committed offset for them.
    read_at_least(&mut body, &mut got, 1, EVENT_WAIT).await;
    upload_from(&app, &user, &live, &bytes, half, 10_000).await;
    let (_, file) = stop_and_fetch(&app, &user, &live, &bytes).await;
    assert!(file == fully_finalized(&bytes));
}

#[tokio::test]
async fn the_index_and_hash_are_saved_with_each_committed_offset() {
    use livekeep_server::indexing::{ContainerIndex, UploadIndex};
    let bytes = crate_fixture("chromium-vp8-kf1s.webm");
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "saved").await;
    upload_from(&app, &user, &live, &bytes[..100_000], 0, 25_000).await;
    let db = app.database().await;
    let id = upload_id(&live.upload_url);
    let (offset, state, sha): (i64, Option<Vec<u8>>, Option<Vec<u8>>) =
        sqlx::query_as(r#"SELECT "offset", index_state, sha256_state FROM uploads WHERE id = $1"#)
            .bind(id.as_str())
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(offset, 100_000);
    let (state, sha) = (
        state.expect("an index state"),
        sha.expect("a SHA-256 state"),
    );
    let entries: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT entries FROM upload_index_entries WHERE upload_id = $1 ORDER BY start",
    )
    .bind(id.as_str())
    .fetch_all(&db)
    .await
    .unwrap();
    assert!(entries.len() >= 2, "clusters learnt over several PATCHes");
    // What was saved is the index a single pass over those bytes makes.
    let restored = UploadIndex::restore(&state, &sha, &entries.concat()).unwrap();
    let mut fresh = UploadIndex::new();
    fresh.feed(0, &bytes[..100_000]).unwrap();
    assert_eq!(restored.sha256(), fresh.sha256());
    match (restored.index(), fresh.index()) {
        (ContainerIndex::WebM(a), ContainerIndex::WebM(b)) => {
            assert_eq!(a.clusters(), b.clusters())
        }
        _ => panic!("a WebM index"),
    }
    // Once the live ended, the next sweep drops its index rows (not the stop: deleting a long
    // recording's rows is the one part of it that would grow with the recording).
    upload_from(&app, &user, &live, &bytes, 100_000, 25_000).await;
    stop_and_fetch(&app, &user, &live, &bytes).await;
    livekeep_server::ops::sweeper::sweep_once(&app.state)
        .await
        .unwrap();
    assert_eq!(saved_index_rows(&db, id.as_str()).await, (0, 0));
    // What a live that ended otherwise leaves (interrupted, failed), the sweeper clears (it
    // sweeps at start).
    sqlx::query("INSERT INTO upload_index_entries (upload_id, start, entries) VALUES ($1, 0, $2)")
        .bind(id.as_str())
        .bind(vec![1u8, 2, 3])
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE uploads SET index_state = $1, sha256_state = $1 WHERE id = $2")
        .bind(vec![0u8])
        .bind(id.as_str())
        .execute(&db)
        .await
        .unwrap();
    let app = spawn_app_in(app.shutdown().await, |_| {}).await;
    assert_eq!(
        saved_index_rows(&app.database().await, id.as_str()).await,
        (0, 0)
    );
}

/// An upload's saved index: its entries rows and whether a state is saved, once they stop
/// changing to nothing (waits up to 10 s for them to be dropped).
async fn saved_index_rows(db: &sqlx::AnyPool, id: &str) -> (i64, i64) {
    let mut rows = (0, 0);
    for _ in 0..200 {
        let entries: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM upload_index_entries WHERE upload_id = $1")
                .bind(id)
                .fetch_one(db)
                .await
                .unwrap();
        let states: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM uploads WHERE id = $1 AND index_state IS NOT NULL",
        )
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap();
        rows = (entries, states);
        if rows == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rows
}

#[tokio::test]
async fn an_upload_found_shorter_than_its_offset_has_its_index_rebuilt_from_what_is_held() {
    let bytes = crate_fixture("chromium-fmp4.mp4");
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "lost writes").await;
    upload_from(&app, &user, &live, &bytes[..90_000], 0, 30_000).await;
    let dir = app.shutdown().await;
    // A disk that lost the last writes the server had synced (restored from a backup).
    let stored = StorageView::of(dir.path());
    let id = upload_id(&live.upload_url);
    let runtime_id = id.clone();
    stored
        .run(move |stores| stores.uploads.truncate(&runtime_id, 50_000))
        .await
        .unwrap();
    let app = spawn_app_in(dir, |_| {}).await;
    let head = app.head(&user.token, &live.upload_url).await;
    assert_eq!(head.headers()["upload-offset"], "50000");
    upload_from(&app, &user, &live, &bytes, 50_000, 30_000).await;
    let (media, file) = stop_and_fetch(&app, &user, &live, &bytes).await;
    assert!(file == fully_finalized(&bytes));
    assert_eq!(media["original_sha256"], sha256_hex(&bytes).as_str());
}

#[tokio::test]
async fn a_recording_whose_clusters_must_be_rewritten_still_gets_the_full_finalizer() {
    // A Void between two clusters: kept as uploaded, the file would differ from the rewrite,
    // which drops it (the Segment of a live WebM has an unknown size: nothing else changes).
    let mut bytes = crate::helpers::fixture();
    let at = crate::helpers::cluster_starts(&bytes)[2];
    bytes.splice(at..at, [0xEC, 0x82, 0, 0]);
    let mut whole = Vec::new();
    let done = livekeep_webm::finalize(Cursor::new(&bytes), &mut whole).unwrap();
    assert_eq!(done.path, livekeep_webm::FinalizePath::Rewritten);
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "rewritten").await;
    upload_from(&app, &user, &live, &bytes, 0, 5_000).await;
    let (_, file) = stop_and_fetch(&app, &user, &live, &bytes).await;
    assert!(file == whole);
}

#[tokio::test]
async fn a_stop_refused_after_its_index_was_finished_leaves_the_index_to_the_next_stop() {
    // Stopped inside the EBML header: finishing the index refuses it, the full finalizer too.
    // The live goes on; the rest of the bytes arrive and the next stop must plan from an
    // index restored as saved, not from the one the refused stop finished.
    let bytes = crate_fixture("chromium-vp8-kf1s.webm");
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "stopped too early").await;
    let early = 12;
    upload_from(&app, &user, &live, &bytes[..early], 0, early).await;
    let refused = app
        .stop(
            &user.token,
            live.id,
            TestApp::video_data(&live, &bytes[..early]),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_recording", "{error}");

    upload_from(&app, &user, &live, &bytes, early, 64 << 10).await;
    let (media, file) = stop_and_fetch(&app, &user, &live, &bytes).await;
    assert!(file == fully_finalized(&bytes));
    assert_eq!(media["original_sha256"], sha256_hex(&bytes).as_str());
    if StorageView::of(app.data_dir.path()).has_staging() {
        // Planned from the index (a layout over the upload), not rewritten by the full pass.
        let files = app.stored_files("files").await;
        assert!(files.iter().any(|f| f.ends_with(".layout")), "{files:?}");
    }
}
