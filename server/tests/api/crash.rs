use std::{path::Path, process::Stdio};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    helpers::{fixture, sha256_hex},
    process::ServerProcess,
};

/// Starts the real binary on `data_dir` (and its test database) with extra environment
/// variables.
pub async fn start_server(data_dir: &Path, env: &[(&str, &str)]) -> ServerProcess {
    let database = crate::helpers::postgres_database_for(data_dir)
        .await
        .map(|url| {
            vec![
                "--database-url".to_owned(),
                url,
                "--orphan-grace=0".to_owned(),
            ]
        })
        .unwrap_or_default();
    let mut command = ServerProcess::command(data_dir);
    command
        .args(database)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stderr(Stdio::null());
    ServerProcess::spawn(command, String::new).await
}

/// Registers `username` and starts a live on a spawned binary; returns the token, the live's
/// id and its upload path.
pub async fn register_and_start_live(
    client: &reqwest::Client,
    server: &ServerProcess,
    username: &str,
    content: &str,
) -> (String, i64, String) {
    let session = json_of(
        client
            .post(format!("{}/api/auth/register", server.address))
            .json(&json!({"username": username, "password": "password123"})),
    )
    .await;
    let token = session["token"].as_str().unwrap().to_owned();
    let live = json_of(
        client
            .post(format!("{}/api/posts/live/", server.address))
            .bearer_auth(&token)
            .json(&json!({ "content": content })),
    )
    .await;
    let live_id = live["live_id"].as_i64().unwrap();
    let upload_url = live["upload_url"].as_str().unwrap().to_owned();
    (token, live_id, upload_url)
}

/// Sends `request` and reads the answer as JSON.
pub async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// A tus PATCH of `bytes` at `offset` to a spawned binary.
pub fn patch(
    client: &reqwest::Client,
    server: &ServerProcess,
    token: &str,
    upload_url: &str,
    offset: usize,
    bytes: &[u8],
) -> reqwest::RequestBuilder {
    client
        .request(Method::PATCH, format!("{}{upload_url}", server.address))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", offset.to_string())
        .body(bytes.to_vec())
}

/// The offset a spawned binary's HEAD reports for an upload (asserting 200): where its
/// recorder resumes.
pub async fn held_offset(
    client: &reqwest::Client,
    server: &ServerProcess,
    token: &str,
    upload_url: &str,
) -> usize {
    let head = client
        .request(Method::HEAD, format!("{}{upload_url}", server.address))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK, "HEAD {upload_url}");
    head.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The stop of a live whose upload holds `bytes`, to a spawned binary.
pub fn stop(
    client: &reqwest::Client,
    server: &ServerProcess,
    token: &str,
    live_id: i64,
    upload_url: &str,
    bytes: &[u8],
) -> reqwest::RequestBuilder {
    client
        .put(format!("{}/api/posts/live/{live_id}/stop/", server.address))
        .bearer_auth(token)
        .json(&json!({"video_data": {
            "upload_url": upload_url,
            "size": bytes.len(),
            "sha256": sha256_hex(bytes),
            "duration": 3.0,
        }}))
}

#[tokio::test]
async fn a_server_killed_mid_stream_resumes_from_head_and_keeps_every_byte() {
    let data_dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let bytes = fixture();
    let chunks: Vec<&[u8]> = bytes.chunks(3000).collect();

    let mut server = start_server(data_dir.path(), &[]).await;
    let (token, live_id, upload_url) =
        register_and_start_live(&client, &server, "crash", "crash test").await;

    let mut offset = 0;
    for chunk in &chunks[..5] {
        let response = patch(&client, &server, &token, &upload_url, offset, chunk)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        offset += chunk.len();
    }
    // One more PATCH in flight while the process dies: it may or may not have landed.
    let in_flight =
        tokio::spawn(patch(&client, &server, &token, &upload_url, offset, chunks[5]).send());
    server.kill();
    let _ = in_flight.await;

    let server = start_server(data_dir.path(), &[]).await;
    let resumed_at = held_offset(&client, &server, &token, &upload_url).await;
    assert!(
        resumed_at == offset || resumed_at == offset + chunks[5].len(),
        "resumed at {resumed_at}, acknowledged {offset}"
    );
    let mut offset = resumed_at;
    for chunk in bytes[resumed_at..].chunks(3000) {
        let response = patch(&client, &server, &token, &upload_url, offset, chunk)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        offset += chunk.len();
    }
    let stopped = stop(&client, &server, &token, live_id, &upload_url, &bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), StatusCode::OK);
    let post: Value = stopped.json().await.unwrap();
    assert_eq!(
        post["media_files"][0]["original_sha256"],
        sha256_hex(&bytes).as_str()
    );
}

/// What one recorder saw before the server died: the offset acknowledged last, and the length
/// of the PATCH it was waiting for.
struct Recorded {
    token: String,
    live_id: i64,
    upload_url: String,
    acknowledged: usize,
    in_flight: usize,
}

/// Three recorders PATCH at once until the server aborts at `point` (its `pass`-th batch of
/// offset commits); after a restart, checks every upload and finishes it. Returns, per upload,
/// how many bytes the server held beyond what it had acknowledged.
async fn crash_in_an_offset_batch(point: &str, pass: u32) -> Vec<usize> {
    let data_dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let bytes = fixture();
    let fault = format!("{point}@{pass}");
    let mut server = start_server(data_dir.path(), &[("LIVEKEEP_FAULT_POINT", &fault)]).await;
    // Every live first: the fault must not strike while one is still being set up.
    let mut lives = Vec::new();
    for n in 0..3 {
        lives.push(
            register_and_start_live(&client, &server, &format!("batch{n}"), "group commit").await,
        );
    }
    let mut recorders = tokio::task::JoinSet::new();
    for (token, live_id, upload_url) in lives {
        let (client, bytes) = (client.clone(), bytes.clone());
        let (address, fault) = (server.address.clone(), fault.clone());
        recorders.spawn(async move {
            let mut acknowledged = 0;
            for chunk in bytes.chunks(1000) {
                let sent = client
                    .request(Method::PATCH, format!("{address}{upload_url}"))
                    .bearer_auth(&token)
                    .header("Tus-Resumable", "1.0.0")
                    .header("Content-Type", "application/offset+octet-stream")
                    .header("Upload-Offset", acknowledged.to_string())
                    .body(chunk.to_vec())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == StatusCode::NO_CONTENT => {
                        acknowledged += chunk.len();
                    }
                    Ok(response) => panic!("a PATCH answered {}", response.status()),
                    Err(_) => {
                        return Recorded {
                            token,
                            live_id,
                            upload_url,
                            acknowledged,
                            in_flight: chunk.len(),
                        }
                    }
                }
            }
            panic!("the whole recording was acknowledged before {fault} was reached");
        });
    }
    let recorded: Vec<Recorded> = recorders.join_all().await;
    let exit = server.child.wait().unwrap();
    assert!(!exit.success(), "{fault}: the server exited cleanly");
    assert!(
        recorded.iter().map(|r| r.acknowledged).sum::<usize>() > 0,
        "{fault}: nothing was acknowledged before the crash"
    );

    let server = start_server(data_dir.path(), &[]).await;
    let mut beyond = Vec::new();
    for r in recorded {
        let held = held_offset(&client, &server, &r.token, &r.upload_url).await;
        assert!(
            held == r.acknowledged || held == r.acknowledged + r.in_flight,
            "{fault}: holds {held} bytes, acknowledged {} with {} in flight",
            r.acknowledged,
            r.in_flight
        );
        beyond.push(held - r.acknowledged);
        // The recorder resumes from HEAD; the finalized recording is exactly what it recorded.
        let mut offset = held;
        for chunk in bytes[held..].chunks(1000) {
            let response = patch(&client, &server, &r.token, &r.upload_url, offset, chunk)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::NO_CONTENT, "{fault}");
            offset += chunk.len();
        }
        let stopped = stop(&client, &server, &r.token, r.live_id, &r.upload_url, &bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(stopped.status(), StatusCode::OK, "{fault}");
        let post: Value = stopped.json().await.unwrap();
        assert_eq!(
            post["media_files"][0]["original_sha256"],
            sha256_hex(&bytes).as_str(),
            "{fault}"
        );
    }
    beyond
}

#[tokio::test]
async fn a_crash_between_the_syncs_and_a_batch_s_commit_loses_nothing_acknowledged() {
    // Each upload holds what was acknowledged, or that and the PATCH in flight: the crashing
    // batch's synced bytes are cut back, but the batch before it may have committed without
    // its answers getting out in time. The recording then finishes into exactly its bytes.
    crash_in_an_offset_batch("before_offsets_commit", 12).await;
}

#[tokio::test]
async fn a_crash_between_a_batch_s_commit_and_its_answers_keeps_the_committed_bytes() {
    let beyond = crash_in_an_offset_batch("after_offsets_commit", 12).await;
    // The last batch committed without answering anyone: its bytes are held all the same.
    assert!(beyond.iter().any(|&n| n > 0), "{beyond:?}");
}

/// A Chromium recording from the crate's fixtures: clusters end in most PATCHes.
fn chromium_webm() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../webm/tests/fixtures/chromium-vp8-kf1s.webm");
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn a_crash_between_a_patchs_sync_or_its_index_entries_and_its_commit_resumes_index_and_hash()
{
    let client = reqwest::Client::new();
    let bytes = chromium_webm();
    let chunk = 20_000;
    for point in ["upload_synced", "index_entries_appended"] {
        let data_dir = tempfile::tempdir().unwrap();
        let mut server = start_server(data_dir.path(), &[]).await;
        let (token, live_id, upload_url) =
            register_and_start_live(&client, &server, &format!("crash_{point}"), point).await;
        let acknowledged = bytes.len() / 2 / chunk * chunk;
        for offset in (0..acknowledged).step_by(chunk) {
            let response = patch(
                &client,
                &server,
                &token,
                &upload_url,
                offset,
                &bytes[offset..offset + chunk],
            )
            .send()
            .await
            .unwrap();
            assert_eq!(response.status(), StatusCode::NO_CONTENT);
        }
        server.kill();

        // The next PATCH (whole clusters in it) dies at the point: its bytes are synced, its
        // entries maybe appended, its offset and states not committed.
        let mut server = start_server(data_dir.path(), &[("LIVEKEEP_FAULT_POINT", point)]).await;
        let next = &bytes[acknowledged..acknowledged + 3 * chunk];
        let died = patch(&client, &server, &token, &upload_url, acknowledged, next)
            .send()
            .await;
        assert!(
            died.is_err(),
            "{point}: the PATCH answered {died:?} instead of crashing"
        );
        assert!(!server.child.wait().unwrap().success(), "{point}");

        let server = start_server(data_dir.path(), &[]).await;
        let offset = held_offset(&client, &server, &token, &upload_url).await;
        assert_eq!(
            offset, acknowledged,
            "{point}: the crashed PATCH was never acknowledged"
        );
        for start in (offset..bytes.len()).step_by(chunk) {
            let end = (start + chunk).min(bytes.len());
            let response = patch(
                &client,
                &server,
                &token,
                &upload_url,
                start,
                &bytes[start..end],
            )
            .send()
            .await
            .unwrap();
            assert_eq!(response.status(), StatusCode::NO_CONTENT, "{point}");
        }
        let stopped = stop(&client, &server, &token, live_id, &upload_url, &bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(stopped.status(), StatusCode::OK, "{point}");
        let post: Value = stopped.json().await.unwrap();
        let media = &post["media_files"][0];
        assert_eq!(
            media["original_sha256"],
            sha256_hex(&bytes).as_str(),
            "{point}"
        );
        let served = client
            .get(format!(
                "{}{}",
                server.address,
                media["file_url"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(
            served == crate::stop_from_index::fully_finalized(&bytes),
            "{point}: the finished media is what a fresh pass makes"
        );
    }
}
