//! A real PostgreSQL 15 in a temporary directory and `livekeep` processes sharing it.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

pub use crate::sse::EventStream;
use crate::{fixtures::sha256_hex, process::ServerProcess};
use object_store::ObjectStoreExt;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

/// How long a test waits for something that must happen; a bound, not a pace.
pub const WAIT: Duration = Duration::from_secs(15);

/// Where Debian puts PostgreSQL 15's server programs.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--"]).arg(program);
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A PostgreSQL cluster of its own, stopped (immediately) when dropped.
pub struct Postgres {
    dir: TempDir,
    port: u16,
    /// The server's options, to start it again the same way.
    options: String,
}

impl Postgres {
    /// `initdb` and `pg_ctl start` as the `postgres` user, trust auth on 127.0.0.1 only.
    pub fn start() -> Self {
        let bin = Path::new(PG_BIN);
        assert!(
            bin.join("initdb").is_file() && bin.join("pg_ctl").is_file(),
            "PostgreSQL 15 is missing ({PG_BIN}/initdb, pg_ctl): run scripts/bootstrap.sh"
        );
        let dir = tempfile::Builder::new()
            .prefix("livekeep-pg-")
            .tempdir()
            .expect("a temporary directory");
        let owner = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "no `postgres` user: run scripts/bootstrap.sh"
            );
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        std::os::unix::fs::chown(dir.path(), Some(owner("-u")), Some(owner("-g")))
            .expect("giving the cluster's directory to postgres");
        let data = dir.path().join("data");
        let status = as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .arg("-D")
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .expect("initdb runs (is runuser there, are we root?)");
        assert!(status.success(), "initdb failed");
        let port = free_port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            dir.path().display()
        );
        let this = Self { dir, port, options };
        this.start_again();
        this
    }

    fn pg_ctl(&self) -> Command {
        let mut command = as_postgres(&Path::new(PG_BIN).join("pg_ctl"));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .stdout(Stdio::null());
        command
    }

    /// Stops the server as an operator restarting it would (`-m fast`: sessions are ended,
    /// their advisory locks released) and waits until it is down.
    pub fn stop(&self) {
        let status = self.pg_ctl().args(["-m", "fast", "-w", "stop"]).status();
        assert!(
            status.unwrap().success(),
            "pg_ctl stop failed: {}",
            self.log()
        );
    }

    /// Starts the stopped server again on the same port and data, and waits until it accepts
    /// connections.
    pub fn start_again(&self) {
        let status = self
            .pg_ctl()
            .arg("-l")
            .arg(self.dir.path().join("postgres.log"))
            .args(["-w", "-o", &self.options, "start"])
            .status()
            .expect("pg_ctl runs");
        assert!(status.success(), "pg_ctl start failed: {}", self.log());
    }

    /// The database URL both nodes use.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// A connection pool for checks made directly in the database.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url())
            .await
            .expect("connecting to the test cluster")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&Path::new(PG_BIN).join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One `livekeep serve` process; killed with SIGKILL when dropped.
pub struct Node {
    process: ServerProcess,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    data_dir: TempDir,
    client: reqwest::Client,
}

impl Node {
    /// Starts a node on `database_url` with `storage_url`, plus extra flags.
    pub async fn start(database_url: &str, storage_url: &str, flags: &[&str]) -> Self {
        Self::start_with_env(database_url, storage_url, flags, &[]).await
    }

    /// Starts a node as [`Node::start`] does, with extra environment variables.
    pub async fn start_with_env(
        database_url: &str,
        storage_url: &str,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let log_path = data_dir.path().join("node.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = ServerProcess::command(data_dir.path());
        command
            .args(["--database-url", database_url, "--storage-url", storage_url])
            .args(flags)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stderr(log);
        let process = ServerProcess::spawn(command, || {
            std::fs::read_to_string(&log_path).unwrap_or_default()
        })
        .await;
        Self {
            address: process.address.clone(),
            process,
            data_dir,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// SIGKILL: no graceful shutdown, its connections die with it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Sends a signal (`STOP`, `CONT`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.process.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// What the node logged (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("node.log")).unwrap_or_default()
    }

    /// A request to this node, with a bearer token when given.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self
            .client
            .request(method, format!("{}{path}", self.address));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Registers `name`; returns its token.
    pub async fn register(&self, name: &str) -> String {
        let response = self
            .request(Method::POST, "/api/auth/register", None)
            .json(&json!({"username": name, "password": "password123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// Starts a live; returns its id and upload path.
    pub async fn start_live(&self, token: &str, content: &str) -> (i64, String) {
        let response = self
            .request(Method::POST, "/api/posts/live/", Some(token))
            .json(&json!({"content": content}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        (
            body["live_id"].as_i64().unwrap(),
            body["upload_url"].as_str().unwrap().to_owned(),
        )
    }

    /// A tus PATCH of `bytes` at `offset`.
    pub async fn patch(
        &self,
        token: &str,
        upload_url: &str,
        offset: usize,
        bytes: &[u8],
    ) -> Response {
        self.request(Method::PATCH, upload_url, Some(token))
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset.to_string())
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// A tus HEAD; returns the `Upload-Offset`.
    pub async fn head_offset(&self, token: &str, upload_url: &str) -> usize {
        let response = self
            .request(Method::HEAD, upload_url, Some(token))
            .header("Tus-Resumable", "1.0.0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Stops a live with an honest recorder's claims over `bytes`.
    pub async fn stop(
        &self,
        token: &str,
        live_id: i64,
        upload_url: &str,
        bytes: &[u8],
    ) -> Response {
        self.request(
            Method::PUT,
            &format!("/api/posts/live/{live_id}/stop/"),
            Some(token),
        )
        .json(&json!({"video_data": {
            "upload_url": upload_url,
            "size": bytes.len(),
            "sha256": sha256_hex(bytes),
            "duration": 3.0,
            "mime_type": "video/webm;codecs=vp8,opus",
        }}))
        .send()
        .await
        .unwrap()
    }

    /// `GET path` as JSON, asserting 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.request(Method::GET, path, None).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    /// Opens a live's events as `query` (`viewer_id=…`).
    pub async fn events(&self, live_id: i64, query: &str) -> EventStream {
        let path = format!("/api/posts/live/{live_id}/events?{query}");
        EventStream::open(self.request(Method::GET, &path, None), WAIT).await
    }

    /// Posts a chat message; the answer, whatever it is.
    pub async fn send_chat(&self, token: &str, live_id: i64, body: &str) -> Response {
        self.request(
            Method::POST,
            &format!("/api/posts/live/{live_id}/chat/"),
            Some(token),
        )
        .json(&json!({ "body": body }))
        .send()
        .await
        .unwrap()
    }

    /// Posts a chat message, asserting 201.
    pub async fn chat(&self, token: &str, live_id: i64, body: &str) -> Value {
        let response = self.send_chat(token, live_id, body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }
}

/// The storage every node shares: a directory, or with `LIVEKEEP_TEST_STORAGE=s3` a bucket of
/// the test's moto server, or a prefix of the Garage bucket of `scripts/services.sh --garage`
/// when `LIVEKEEP_TEST_GARAGE_DIR` names one.
pub enum SharedStorage {
    /// `file://` on a temporary directory.
    Dir(TempDir),
    /// `s3://<bucket>/<prefix>/media`.
    Bucket {
        /// The bucket.
        name: String,
        /// Where in it this test's nodes store.
        prefix: String,
    },
}

impl SharedStorage {
    /// A fresh directory, or with `LIVEKEEP_TEST_STORAGE=s3` a fresh bucket of moto or a fresh
    /// prefix of Garage's bucket.
    pub async fn new() -> Self {
        static PREFIXES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        if std::env::var_os("LIVEKEEP_TEST_GARAGE_DIR").is_some() {
            let n = PREFIXES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Self::Bucket {
                name: std::env::var("LIVEKEEP_TEST_S3_BUCKET").expect("the Garage bucket"),
                prefix: format!("two-nodes-{}-{n}/media", std::process::id()),
            }
        } else if crate::s3::requested() {
            Self::Bucket {
                name: crate::s3::moto().bucket().await,
                prefix: "media".to_owned(),
            }
        } else {
            Self::Dir(tempfile::tempdir().unwrap())
        }
    }

    /// The URL given to the nodes.
    pub fn url(&self) -> String {
        match self {
            Self::Dir(dir) => format!("file://{}", dir.path().display()),
            Self::Bucket { name, prefix } => format!("s3://{name}/{prefix}"),
        }
    }

    /// A client on the bucket (configured by the same variables as the nodes) and the path
    /// of media `key`.
    fn object(
        name: &str,
        prefix: &str,
        key: &str,
    ) -> (
        std::sync::Arc<dyn object_store::ObjectStore>,
        object_store::path::Path,
    ) {
        // The server installs this in its own process; the test's client needs it too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = object_store::aws::AmazonS3Builder::from_env()
            .with_url(format!("s3://{name}"))
            .build()
            .expect("an S3 client");
        (
            std::sync::Arc::new(client),
            object_store::path::Path::from(format!("{prefix}/files/{key}")),
        )
    }

    /// Puts a stored media file `key` that no row names.
    pub async fn put_media(&self, key: &str, bytes: &[u8]) {
        match self {
            Self::Dir(dir) => std::fs::write(dir.path().join("files").join(key), bytes).unwrap(),
            Self::Bucket { name, prefix } => {
                let (store, location) = Self::object(name, prefix, key);
                store.put(&location, bytes.to_vec().into()).await.unwrap();
            }
        }
    }

    /// Whether media file `key` exists.
    pub async fn has_media(&self, key: &str) -> bool {
        match self {
            Self::Dir(dir) => dir.path().join("files").join(key).exists(),
            Self::Bucket { name, prefix } => {
                let (store, location) = Self::object(name, prefix, key);
                store.head(&location).await.is_ok()
            }
        }
    }

    /// How many media files are stored.
    pub async fn media_count(&self) -> usize {
        // A media is one file, or a layout's files (`<stem>.layout`, `.head`, `.data`), or both
        // for a moment while a layout is assembled: counted once by their stem.
        let names: Vec<String> = match self {
            Self::Dir(dir) => std::fs::read_dir(dir.path().join("files"))
                .map(|entries| {
                    entries
                        .filter_map(|entry| entry.ok())
                        .map(|entry| entry.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            Self::Bucket { name, prefix } => {
                let (store, _) = Self::object(name, prefix, "");
                let dir = object_store::path::Path::from(format!("{prefix}/files"));
                store
                    .list_with_delimiter(Some(&dir))
                    .await
                    .unwrap()
                    .objects
                    .into_iter()
                    .filter_map(|meta| meta.location.filename().map(str::to_owned))
                    .collect()
            }
        };
        let stems: std::collections::HashSet<&str> = names
            .iter()
            .map(|name| name.split('.').next().unwrap_or_default())
            .collect();
        stems.len()
    }
}

/// A PostgreSQL cluster, a shared storage and two nodes on them.
pub struct Cluster {
    /// The nodes (dropped first).
    pub nodes: Vec<Node>,
    /// What the nodes store into.
    pub storage: SharedStorage,
    /// The database.
    pub postgres: Postgres,
}

impl Cluster {
    /// Two nodes started with `flags`.
    pub async fn start(flags: &[&str]) -> Self {
        let postgres = Postgres::start();
        let storage = SharedStorage::new().await;
        // One after the other: the first one runs the migrations.
        let a = Node::start(&postgres.url(), &storage.url(), flags).await;
        let b = Node::start(&postgres.url(), &storage.url(), flags).await;
        Self {
            nodes: vec![a, b],
            storage,
            postgres,
        }
    }

    /// Node A.
    pub fn a(&self) -> &Node {
        &self.nodes[0]
    }

    /// Node B.
    pub fn b(&self) -> &Node {
        &self.nodes[1]
    }

    /// Both nodes' logs, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, node)| format!("--- node {i} ---\n{}", node.log()))
            .collect()
    }
}
