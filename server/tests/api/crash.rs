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
    let head = client
        .request(Method::HEAD, format!("{}{upload_url}", server.address))
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let resumed_at: usize = head.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
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
