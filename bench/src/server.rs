//! A `livekeep` server started for one benchmark on a scratch directory, and the API calls
//! the benchmarks make to it.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use reqwest::{header, Client, StatusCode};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A scratch directory below the system temp dir (the same disk as `dd`'s baseline file),
/// removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `livekeep-bench-<what>-<pid>-<n>` below `base`.
    pub fn new(base: &Path, what: &str) -> Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("livekeep-bench-{what}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A running `livekeep serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` without a trailing slash.
    pub base: String,
}

impl Server {
    /// Starts `bin serve` on a free loopback port with `data_dir`, logging to `data_dir/../server.log`.
    pub async fn start(bin: &Path, data_dir: &Path, extra_args: &[&str]) -> Result<Self> {
        Self::start_with_env(bin, data_dir, extra_args, &[]).await
    }

    /// [`Self::start`] with `env` added to the server's environment.
    pub async fn start_with_env(
        bin: &Path,
        data_dir: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let log_path = data_dir.with_extension("log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.split("listening on ").nth(1) {
                    return Ok(url.trim().trim_end_matches('/').to_owned());
                }
            }
            bail!(
                "the server exited before printing its URL (see {})",
                log_path.display()
            )
        })
        .await
        .context("waiting for the server to print its URL")??;
        // The server prints only its URL on stdout; keep draining so it can never block.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, base })
    }

    /// The server's process id, for `/proc` readings.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The JSON and tus calls the benchmarks make, over one connection pool.
#[derive(Clone)]
pub struct Api {
    /// The HTTP client (HTTP/1.1, keep-alive).
    pub http: Client,
    /// Base URL of the server.
    pub base: String,
}

/// A live started by [`Api::start_live`].
#[derive(Debug, Clone)]
pub struct Live {
    /// The live's id (also its post id).
    pub id: i64,
    /// Absolute URL of its tus upload.
    pub upload_url: String,
}

impl Api {
    /// A client for `base` whose requests give up after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<Self> {
        let http = Client::builder()
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.to_owned(),
        })
    }

    /// Registers `username` and returns its bearer token.
    pub async fn register(&self, username: &str) -> Result<String> {
        let response = self
            .http
            .post(format!("{}/api/auth/register", self.base))
            .json(&serde_json::json!({ "username": username, "password": "benchmark password" }))
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        if status != StatusCode::CREATED {
            bail!("register {username}: {status} {body}");
        }
        body["token"]
            .as_str()
            .map(str::to_owned)
            .context("register: no token")
    }

    /// Starts a live titled `content`.
    pub async fn start_live(&self, token: &str, content: &str) -> Result<Live> {
        let response = self
            .http
            .post(format!("{}/api/posts/live/", self.base))
            .bearer_auth(token)
            .json(&serde_json::json!({ "content": content }))
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        if status != StatusCode::CREATED {
            bail!("start live: {status} {body}");
        }
        let id = body["live_id"].as_i64().context("start live: no live_id")?;
        let upload = body["upload_url"]
            .as_str()
            .context("start live: no upload_url")?;
        Ok(Live {
            id,
            upload_url: format!("{}{upload}", self.base),
        })
    }

    /// One tus PATCH at `offset`; returns the new offset the server acknowledged with 204.
    pub async fn patch(&self, token: &str, url: &str, offset: u64, body: Bytes) -> Result<u64> {
        let response = self
            .http
            .patch(url)
            .bearer_auth(token)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset)
            .header(header::CONTENT_TYPE, "application/offset+octet-stream")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        if status != StatusCode::NO_CONTENT {
            let text = response.text().await.unwrap_or_default();
            bail!("PATCH at {offset}: {status} {text}");
        }
        upload_offset(response.headers())
    }

    /// tus HEAD: the offset the server holds durably.
    pub async fn head(&self, token: &str, url: &str) -> Result<u64> {
        let response = self
            .http
            .head(url)
            .bearer_auth(token)
            .header("tus-resumable", "1.0.0")
            .send()
            .await?;
        if response.status() != StatusCode::OK {
            bail!("HEAD {url}: {}", response.status());
        }
        upload_offset(response.headers())
    }

    /// The server's `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?;
        if response.status() != StatusCode::OK {
            bail!("GET /metrics: {}", response.status());
        }
        Ok(response.text().await?)
    }

    /// tus termination: deletes the upload's bytes (frees the disk between runs).
    pub async fn terminate(&self, token: &str, url: &str) -> Result<()> {
        let response = self
            .http
            .delete(url)
            .bearer_auth(token)
            .header("tus-resumable", "1.0.0")
            .send()
            .await?;
        if response.status() != StatusCode::NO_CONTENT {
            bail!("DELETE {url}: {}", response.status());
        }
        Ok(())
    }

    /// Stops a live whose upload holds `size` bytes; returns the `Post` with its media.
    pub async fn stop_live(
        &self,
        token: &str,
        live: &Live,
        size: u64,
    ) -> Result<serde_json::Value> {
        let response = self
            .http
            .put(format!("{}/api/posts/live/{}/stop/", self.base, live.id))
            .bearer_auth(token)
            .json(&serde_json::json!({ "video_data": {
                "upload_url": live.upload_url.strip_prefix(&self.base).unwrap_or(&live.upload_url),
                "size": size,
                "mime_type": "video/webm;codecs=vp8,opus",
                "live_id": live.id,
            }}))
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        if status != StatusCode::OK {
            bail!("stop live {}: {status} {body}", live.id);
        }
        Ok(body)
    }
}

fn upload_offset(headers: &header::HeaderMap) -> Result<u64> {
    headers
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("no Upload-Offset in the answer")
}

/// A recording's first bytes: the start of a real Chromium WebM (the server refuses a first
/// PATCH that is not WebM or MP4), padded with `filler` to `len` bytes.
pub fn first_chunk(fixture: &[u8], filler: &[u8], len: usize) -> Bytes {
    let head = &fixture[..fixture.len().min(len)];
    let mut chunk = Vec::with_capacity(len);
    chunk.extend_from_slice(head);
    while chunk.len() < len {
        let take = (len - chunk.len()).min(filler.len());
        chunk.extend_from_slice(&filler[..take]);
    }
    Bytes::from(chunk)
}

/// `len` bytes that do not compress (a video's entropy), from a fixed xorshift seed.
pub fn noise(len: usize) -> Bytes {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}
