use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{fixture, sha256_hex};

/// The real `livekeep` binary; killed with SIGKILL when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
}

impl Server {
    /// Starts the binary on `data_dir`.
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with_env(data_dir, &[]).await
    }

    /// Starts the binary on `data_dir` with extra environment variables.
    pub async fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Self {
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_livekeep"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--www-dir")
            .arg(data_dir.join("no-www"))
            .args(database)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the livekeep binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .unwrap()
        .unwrap();
        let address = line
            .trim()
            .strip_prefix("Livekeep listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end_matches('/')
            .to_owned();
        Self { child, address }
    }

    /// SIGKILL: no graceful shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn patch(
    client: &reqwest::Client,
    server: &Server,
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

#[tokio::test]
async fn a_server_killed_mid_stream_resumes_from_head_and_keeps_every_byte() {
    let data_dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let bytes = fixture();
    let chunks: Vec<&[u8]> = bytes.chunks(3000).collect();

    let mut server = Server::start(data_dir.path()).await;
    let session: Value = client
        .post(format!("{}/api/auth/register", server.address))
        .json(&json!({"username": "crash", "password": "password123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap().to_owned();
    let live: Value = client
        .post(format!("{}/api/posts/live", server.address))
        .bearer_auth(&token)
        .json(&json!({"content": "crash test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let live_id = live["live_id"].as_i64().unwrap();
    let upload_url = live["upload_url"].as_str().unwrap().to_owned();

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

    let server = Server::start(data_dir.path()).await;
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
    let stopped = client
        .put(format!("{}/api/posts/live/{live_id}/stop/", server.address))
        .bearer_auth(&token)
        .json(&json!({"video_data": {
            "upload_url": upload_url,
            "size": bytes.len(),
            "sha256": sha256_hex(&bytes),
            "duration": 3.0,
        }}))
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
