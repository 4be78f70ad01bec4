//! rustus, the Rust tus server, as the ingest benchmark's other tus server: started on a
//! loopback port with its file data and info storages in a scratch directory and
//! `--force-fsync true` (it syncs each PATCH's bytes before answering, as Livekeep does).

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use reqwest::{header, Client, StatusCode};
use tokio::process::{Child, Command};

/// A running rustus, killed when dropped.
pub struct Rustus {
    child: Child,
    /// `http://127.0.0.1:PORT/files/`, its tus creation endpoint.
    pub files_url: String,
    base: String,
}

impl Rustus {
    /// Starts `bin` storing into `dir`, accepting PATCH bodies of up to `max_body` bytes.
    pub async fn start(bin: &Path, dir: &Path, max_body: usize) -> Result<Self> {
        let data = dir.join("data");
        let info = dir.join("info");
        std::fs::create_dir_all(&data)?;
        std::fs::create_dir_all(&info)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log_path = dir.join("rustus.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--storage",
                "file-storage",
                "--info-storage",
                "file-info-storage",
            ])
            .arg("--data-dir")
            .arg(&data)
            .arg("--info-dir")
            .arg(&info)
            .args(["--force-fsync", "true"])
            .args(["--max-body-size", &max_body.to_string()])
            .args(["--log-level", "ERROR"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(Self {
                    child,
                    files_url: format!("{base}/files/"),
                    base,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "rustus did not listen on {port}; see {}",
            log_path.display()
        )
    }

    /// tus creation of an upload of `length` bytes; returns its absolute URL.
    pub async fn create(&self, http: &Client, length: u64) -> Result<String> {
        let response = http
            .post(&self.files_url)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", length)
            .send()
            .await?;
        if response.status() != StatusCode::CREATED {
            bail!("rustus creation: {}", response.status());
        }
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("rustus creation: no Location")?;
        Ok(if location.starts_with("http") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        })
    }

    /// Stops rustus and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// One tus PATCH without authentication; returns the acknowledged offset.
pub async fn patch(http: &Client, url: &str, offset: u64, body: Bytes) -> Result<u64> {
    let response = http
        .patch(url)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset)
        .header(header::CONTENT_TYPE, "application/offset+octet-stream")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    if status != StatusCode::NO_CONTENT {
        let text = response.text().await.unwrap_or_default();
        bail!("rustus PATCH at {offset}: {status} {text}");
    }
    response
        .headers()
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("rustus: no Upload-Offset in the answer")
}
