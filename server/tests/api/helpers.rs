//! `spawn_app()` and request helpers shared by every integration test.
//!
//! Environment switches (each keeps the default, SQLite + local files, when unset):
//! - `LIVEKEEP_TEST_STORAGE=s3`: every server stores its media and uploads in a fresh bucket
//!   of one `moto_server` started for the test binary (`s3.rs`); a restart on the same data
//!   directory reuses its bucket (remembered in `<data dir>/test-storage-url`). A test's
//!   `tweak` may still set its own `storage_url` (tests of the local disk itself do).
//! - `LIVEKEEP_TEST_DATABASE=postgres`: a fresh PostgreSQL database per data directory (see
//!   `postgres_database_for`).

use std::{
    path::Path,
    sync::atomic::{AtomicU32, Ordering},
};

use futures_util::StreamExt;
use livekeep_server::{config::Config, startup::Application};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub use crate::{
    fixtures::{cluster_starts, fixture, sha256_hex},
    sse::EventStream,
};

/// A running server on 127.0.0.1 with its own temporary data directory.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub address: String,
    /// A client without cookies or redirects.
    pub client: reqwest::Client,
    /// The data directory (deleted on drop).
    pub data_dir: TempDir,
    /// The database the server uses (SQLite in `data_dir`, or PostgreSQL).
    pub database_url: String,
    /// The server's shared state, for tests that look inside it or act as this node would.
    pub state: livekeep_server::state::AppState,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A registered user.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// User id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Bearer token.
    pub token: String,
}

/// A started live.
#[derive(Debug, Clone)]
pub struct TestLive {
    /// The live's post id.
    pub id: i64,
    /// Path of its tus upload.
    pub upload_url: String,
}

static USER_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The checked-in fragmented MP4 fixture (2 s, VP9 + Opus).
pub fn mp4_fixture() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live.mp4");
    std::fs::read(path).expect("the fixture is checked in")
}

/// `LIVEKEEP_TEST_LOG=debug` (any tracing filter) prints the servers' logs, to see why a test
/// failed; the test harness captures them per test.
fn log_when_asked() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("LIVEKEEP_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// Starts the app with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the app after `tweak` adjusts its configuration.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    spawn_app_in(data_dir, tweak).await
}

/// Starts the app on an existing data directory (to test restarts).
pub async fn spawn_app_in(data_dir: TempDir, tweak: impl FnOnce(&mut Config)) -> TestApp {
    log_when_asked();
    let mut config = Config::with_data_dir(data_dir.path());
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.www_dir = data_dir.path().join("no-www");
    config.storage_url = test_storage_url(data_dir.path()).await;
    if let Some(url) = postgres_database_for(data_dir.path()).await {
        config.database_url = Some(url);
        // One node at a time here: repairs are tested at once, as on SQLite (the grace that
        // protects other nodes' writes has its own test).
        config.orphan_grace = Some(0);
    }
    tweak(&mut config);
    let database_url = config.database_url();
    let app = Application::build(config).await.expect("the app builds");
    let address = format!("http://{}", app.address());
    let state = app.state().clone();
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Below the server's keep-alive timeout, as a client should: the client closes an
            // idle connection before the server does, so no request races the server's close.
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("client"),
        data_dir,
        database_url,
        state,
        stop: Some(stop),
        server: Some(server),
    }
}

/// The storage URL `LIVEKEEP_TEST_STORAGE` asks for, the same for a restart on `data_dir`.
async fn test_storage_url(data_dir: &Path) -> Option<String> {
    if !crate::s3::requested() {
        return None;
    }
    let marker = data_dir.join("test-storage-url");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    let bucket = crate::s3::moto().bucket().await;
    let url = format!("s3://{bucket}/media");
    std::fs::write(&marker, &url).expect("remembering the test bucket");
    Some(url)
}

/// With `LIVEKEEP_TEST_DATABASE=postgres`, a new empty database on the server at
/// `LIVEKEEP_TEST_POSTGRES_URL` (an admin URL, e.g. `postgres://postgres@127.0.0.1:5432/postgres`),
/// so the same tests run on PostgreSQL; `None` (SQLite in the data directory) otherwise.
pub async fn fresh_postgres_database() -> Option<String> {
    if std::env::var("LIVEKEEP_TEST_DATABASE").ok()?.as_str() != "postgres" {
        return None;
    }
    let admin = std::env::var("LIVEKEEP_TEST_POSTGRES_URL").expect(
        "LIVEKEEP_TEST_DATABASE=postgres needs LIVEKEEP_TEST_POSTGRES_URL (scripts/services.sh)",
    );
    Some(fresh_postgres_database_on(&admin).await)
}

/// Creates an empty database on the PostgreSQL server of `admin`; returns its URL.
pub async fn fresh_postgres_database_on(admin: &str) -> String {
    static DATABASES: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "lk_test_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create a test database");
    let (base, _) = admin
        .rsplit_once('/')
        .expect("the admin URL names a database");
    format!("{base}/{name}")
}

/// The PostgreSQL database of a data directory under `LIVEKEEP_TEST_DATABASE=postgres`: created
/// on first use and remembered in the directory, so a restarted server finds its rows again.
pub async fn postgres_database_for(data_dir: &Path) -> Option<String> {
    let marker = data_dir.join("test-database-url");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    let url = fresh_postgres_database().await?;
    std::fs::write(&marker, &url).expect("remember the test database");
    Some(url)
}

/// The database URL arguments for running the binary on `data_dir` (empty on SQLite), from
/// synchronous code: the database is created on a runtime of its own.
pub fn database_args(data_dir: &Path) -> Vec<String> {
    let url = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime")
                    .block_on(postgres_database_for(data_dir))
            })
            .join()
            .expect("database set-up")
    });
    url.map(|url| vec!["--database-url".to_owned(), url])
        .unwrap_or_default()
}

impl TestApp {
    /// Shuts the server down gracefully and hands back its data directory.
    pub async fn shutdown(mut self) -> TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
        let placeholder = tempfile::tempdir().expect("temporary directory");
        std::mem::replace(&mut self.data_dir, placeholder)
    }

    /// A pool on the server's database, for tests that check rows directly.
    pub async fn database(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.database_url)
            .await
            .expect("open the database")
    }

    /// An absolute URL for a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A request, with a bearer token when given.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// `GET path`, asserting 200.
    async fn get_ok(&self, path: &str) -> Response {
        let response = self
            .request(Method::GET, path, None)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response
    }

    /// `GET path` as JSON, asserting 200.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get_ok(path).await.json().await.expect("JSON")
    }

    /// `GET path`'s body, asserting 200.
    pub async fn get_bytes(&self, path: &str) -> axum::body::Bytes {
        self.get_ok(path).await.bytes().await.expect("a body")
    }

    /// `POST /api/auth/register`.
    pub async fn register_raw(&self, body: Value) -> Response {
        self.request(Method::POST, "/api/auth/register", None)
            .json(&body)
            .send()
            .await
            .expect("register")
    }

    /// Registers a fresh user with a unique name.
    pub async fn user(&self) -> TestUser {
        let n = USER_COUNTER.fetch_add(1, Ordering::Relaxed);
        let username = format!("user{n}");
        let response = self
            .register_raw(json!({"username": username, "password": "password123"}))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("JSON");
        TestUser {
            id: body["user"]["id"].as_i64().expect("user id"),
            username,
            token: body["token"].as_str().expect("token").to_owned(),
        }
    }

    /// `POST /api/posts/live/` asserting 201.
    pub async fn start_live(&self, user: &TestUser, content: &str) -> TestLive {
        let response = self
            .request(Method::POST, "/api/posts/live/", Some(&user.token))
            .json(&json!({"content": content}))
            .send()
            .await
            .expect("start live");
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("JSON");
        TestLive {
            id: body["live_id"].as_i64().expect("live_id"),
            upload_url: body["upload_url"].as_str().expect("upload_url").to_owned(),
        }
    }

    /// A tus creation request (`POST /api/uploads/`) for another upload of live `live_id`; the
    /// caller adds its length or `Upload-Defer-Length`.
    pub fn create_upload_request(&self, token: &str, live_id: i64) -> RequestBuilder {
        use base64::Engine;
        let live_id = base64::engine::general_purpose::STANDARD.encode(live_id.to_string());
        self.request(Method::POST, "/api/uploads/", Some(token))
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Metadata", format!("live_id {live_id}"))
    }

    /// A tus PATCH of `bytes` at `offset`.
    pub fn patch_request(&self, token: &str, upload_url: &str, offset: u64) -> RequestBuilder {
        self.request(Method::PATCH, upload_url, Some(token))
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset.to_string())
    }

    /// Sends a tus PATCH of `bytes` at `offset`.
    pub async fn patch(
        &self,
        token: &str,
        upload_url: &str,
        offset: u64,
        bytes: &[u8],
    ) -> Response {
        self.patch_request(token, upload_url, offset)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PATCH")
    }

    /// Uploads all of `bytes` in one PATCH from offset 0, asserting 204.
    pub async fn upload_all(&self, user: &TestUser, live: &TestLive, bytes: &[u8]) {
        let response = self.patch(&user.token, &live.upload_url, 0, bytes).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }

    /// Starts a live of `user` and uploads the whole fixture in one PATCH; returns the live and
    /// the fixture's bytes.
    pub async fn uploaded_live(&self, user: &TestUser, content: &str) -> (TestLive, Vec<u8>) {
        let live = self.start_live(user, content).await;
        let bytes = fixture();
        self.upload_all(user, &live, &bytes).await;
        (live, bytes)
    }

    /// A live of `user` recorded whole: the fixture uploaded and the live stopped with an honest
    /// recorder's claims, asserting 200; returns the ended Post.
    pub async fn recorded_post(&self, user: &TestUser, content: &str) -> Value {
        let (live, bytes) = self.uploaded_live(user, content).await;
        let stopped = self
            .stop(&user.token, live.id, Self::video_data(&live, &bytes))
            .await;
        assert_eq!(stopped.status(), StatusCode::OK);
        stopped.json().await.expect("JSON")
    }

    /// A tus HEAD.
    pub async fn head(&self, token: &str, upload_url: &str) -> Response {
        self.request(Method::HEAD, upload_url, Some(token))
            .header("Tus-Resumable", "1.0.0")
            .send()
            .await
            .expect("HEAD")
    }

    /// `PUT /api/posts/live/{id}/stop/` with `video_data`.
    pub async fn stop(&self, token: &str, live_id: i64, video_data: Value) -> Response {
        self.request(
            Method::PUT,
            &format!("/api/posts/live/{live_id}/stop/"),
            Some(token),
        )
        .json(&json!({ "video_data": video_data }))
        .send()
        .await
        .expect("stop")
    }

    /// The `video_data` an honest recorder sends after uploading `bytes`.
    pub fn video_data(live: &TestLive, bytes: &[u8]) -> Value {
        json!({
            "upload_url": live.upload_url,
            "duration": 3.0,
            "size": bytes.len(),
            "sha256": sha256_hex(bytes),
            "mime_type": "video/webm;codecs=vp8,opus",
            "live_id": live.id,
        })
    }

    /// The bytes this server keeps, seen through its storage (local files or a bucket).
    pub fn stored(&self) -> StorageView {
        StorageView::of(self.data_dir.path())
    }

    /// Names held in a storage area: `files` (media and posters), `staging`, `uploads`
    /// (`<upload id>.part`, or a foreign name as it is).
    pub async fn stored_files(&self, area: &str) -> Vec<String> {
        self.stored().names(area).await
    }

    /// Waits, on an object store, until the layouts stops left are assembled into one object
    /// each and their uploads' objects are gone, but for `uploads_left` uploads still in use:
    /// what a test then counts is what stays. At once on a local disk (layouts stay there).
    pub async fn layouts_assembled(&self, uploads_left: usize) {
        self.stored().layouts_assembled(uploads_left).await;
    }

    /// The bytes held for an upload (its contiguous bytes from 0); `None` if it has none stored.
    pub async fn upload_bytes(&self, upload_url: &str) -> Option<Vec<u8>> {
        self.stored().upload_bytes(upload_url).await
    }
}

/// A test's view of a server's storage, usable while the server is down (to act as a crash).
pub struct StorageView {
    /// The storage URL.
    pub url: String,
}

impl StorageView {
    /// The storage of the server run on `data_dir`.
    pub fn of(data_dir: &Path) -> Self {
        let url = std::fs::read_to_string(data_dir.join("test-storage-url"))
            .unwrap_or_else(|_| format!("file://{}", data_dir.join("media").display()));
        Self { url }
    }

    /// Whether this storage has a staging area (local files; an object appears whole).
    pub fn has_staging(&self) -> bool {
        self.url.starts_with("file://")
    }

    /// Runs `op` on the storage on a blocking thread, as the server does.
    pub async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&livekeep_server::storage::Stores) -> T + Send + 'static,
    ) -> T {
        let settings = livekeep_server::storage::StorageSettings::default();
        let stores =
            livekeep_server::storage::open(&self.url, &settings).expect("opening the test storage");
        tokio::task::spawn_blocking(move || op(&stores))
            .await
            .expect("storage task")
    }

    /// Sorted names in an area (see [`TestApp::stored_files`]).
    pub async fn names(&self, area: &str) -> Vec<String> {
        let area = area.to_owned();
        let mut names = self
            .run(move |s| match area.as_str() {
                "files" => s.media.list(),
                "staging" => s.media.list_staged(),
                "uploads" => s.uploads.list(),
                other => panic!("no storage area {other}"),
            })
            .await
            .expect("listing the storage");
        names.sort();
        names
    }

    /// See [`TestApp::layouts_assembled`].
    pub async fn layouts_assembled(&self, uploads_left: usize) {
        if self.has_staging() {
            return;
        }
        let started = std::time::Instant::now();
        loop {
            let (files, uploads) = (self.names("files").await, self.names("uploads").await);
            let assembled = !files.iter().any(|name| name.ends_with(".layout"));
            if assembled && uploads.len() <= uploads_left {
                return;
            }
            assert!(
                started.elapsed() < EVENT_WAIT,
                "layouts still unassembled: files {files:?}, uploads {uploads:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The bytes held for an upload; `None` if it has none stored.
    pub async fn upload_bytes(&self, upload_url: &str) -> Option<Vec<u8>> {
        let id = upload_id(upload_url);
        self.run(move |s| {
            let name = format!("{id}.part");
            if !s.uploads.list()?.contains(&name) {
                return anyhow::Ok(None);
            }
            let read = || -> anyhow::Result<Vec<u8>> {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut s.uploads.open(&id)?, &mut bytes)?;
                Ok(bytes)
            };
            match read() {
                Ok(bytes) => Ok(Some(bytes)),
                // Deleted since it was listed (the expiry sweeper, a stop): none is held now.
                Err(_) if !s.uploads.list()?.contains(&name) => Ok(None),
                Err(err) => Err(err),
            }
        })
        .await
        .expect("reading an upload")
    }

    /// Stores bytes the way a writer that died before committing their offset left them.
    pub async fn append_unacknowledged(&self, upload_url: &str, bytes: &[u8]) {
        let id = upload_id(upload_url);
        let bytes = bytes.to_vec();
        self.run(move |s| {
            let held = s.uploads.len(&id)?.unwrap_or(0);
            let mut writer = s.uploads.writer(&id, held)?;
            writer.write(&bytes)?;
            writer.sync()?;
            anyhow::Ok(())
        })
        .await
        .expect("appending to an upload");
    }

    /// Stores a committed media file under `key`, as another node or the admin command would.
    pub async fn write_media(&self, key: &str, bytes: &[u8]) {
        let (key, bytes) = (key.to_owned(), bytes.to_vec());
        self.run(move |s| s.media.write(&key, &bytes))
            .await
            .expect("writing a media file");
    }

    /// Deletes the media file `key`, as another node or the admin command would.
    pub async fn delete_media(&self, key: &str) {
        let key = key.to_owned();
        self.run(move |s| s.media.delete(&key))
            .await
            .expect("deleting a media file");
    }

    /// Deletes every media and poster, as a lost disk or bucket would.
    pub async fn lose_all_files(&self) {
        self.run(|s| {
            for key in s.media.list()? {
                s.media.delete(&key)?;
            }
            anyhow::Ok(())
        })
        .await
        .expect("deleting the stored files");
    }

    /// Puts a raw file or object in an area, as a crash or someone else would leave it: an
    /// `uploads/<id>.part` holds that upload's bytes from offset 0.
    pub async fn put_raw(&self, area: &str, name: &str, bytes: &[u8]) {
        match self.url.strip_prefix("file://") {
            Some(root) => {
                let path = Path::new(root).join(area).join(name);
                std::fs::write(path, bytes).expect("writing a raw file");
            }
            None => {
                let rest = self.url.strip_prefix("s3://").expect("an s3:// URL");
                let (bucket, prefix) = rest.split_once('/').expect("s3://bucket/prefix");
                let key = match (area, name.strip_suffix(".part")) {
                    ("uploads", Some(id)) => {
                        format!("{prefix}/uploads/{id}/{:020}-{:020}", 0, bytes.len())
                    }
                    _ => format!("{prefix}/{area}/{name}"),
                };
                use object_store::ObjectStoreExt;
                crate::s3::moto()
                    .client(bucket)
                    .put(&object_store::path::Path::from(key), bytes.to_vec().into())
                    .await
                    .expect("putting a raw object");
            }
        }
    }
}

/// The upload id at the end of an upload URL.
pub fn upload_id(upload_url: &str) -> livekeep_server::domain::UploadId {
    livekeep_server::domain::UploadId::parse(upload_url.rsplit('/').next().expect("id"))
        .expect("an upload id")
}

/// The `error.code` of a JSON error answer.
pub async fn error_code(response: Response) -> String {
    let body: Value = response.json().await.expect("a JSON error body");
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned()
}

/// How long a test waits for an event that must come; a bound, not a pace.
pub const EVENT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl TestApp {
    /// Opens `GET /api/posts/live/{id}/events` as `viewer_id`, asserting 200.
    pub async fn events(&self, live_id: i64, query: &str) -> EventStream {
        let path = format!("/api/posts/live/{live_id}/events?{query}");
        EventStream::open(self.request(Method::GET, &path, None), EVENT_WAIT).await
    }

    /// `POST /api/posts/live/{id}/chat/`.
    pub async fn chat(&self, token: Option<&str>, live_id: i64, body: &str) -> Response {
        self.request(
            Method::POST,
            &format!("/api/posts/live/{live_id}/chat/"),
            token,
        )
        .json(&json!({ "body": body }))
        .send()
        .await
        .expect("POST chat")
    }

    /// A live whose recorder starts 1.5 s after the live was created, then sends a chunk a
    /// second, as MediaRecorder with a 1 s timeslice does: `bytes` cut at `chunk_starts` (the
    /// first is 0), a chat message half a second after each chunk (or once its PATCH is
    /// answered, if later). Each chunk's body takes `upload_time` to arrive (its second half
    /// follows its first after that long), as on a slow uplink. Returns the chat's offsets as
    /// served, with what the test saw of the recording's timeline.
    pub async fn chat_beside_a_late_recorder(
        &self,
        bytes: &[u8],
        chunk_starts: &[usize],
        upload_time: std::time::Duration,
    ) -> LateRecorderChat {
        let host = self.user().await;
        let fan = self.user().await;
        let live = self.start_live(&host, "timeline").await;
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let recording_start = std::time::Instant::now();
        assert_eq!(chunk_starts.first(), Some(&0), "the chunks start at byte 0");
        let ends = chunk_starts.iter().skip(1).copied().chain([bytes.len()]);
        let mut seen = LateRecorderChat {
            upload_time: upload_time.as_secs_f64(),
            ..LateRecorderChat::default()
        };
        for (i, (start, end)) in chunk_starts.iter().copied().zip(ends).enumerate() {
            let due = recording_start + std::time::Duration::from_secs(i as u64 + 1);
            tokio::time::sleep_until(due.into()).await;
            let (first_half, second_half) = bytes[start..end].split_at((end - start) / 2);
            let second_half = bytes::Bytes::copy_from_slice(second_half);
            let body = futures_util::stream::iter([Ok::<_, std::io::Error>(
                bytes::Bytes::copy_from_slice(first_half),
            )])
            .chain(futures_util::stream::once(async move {
                tokio::time::sleep(upload_time).await;
                Ok(second_half)
            }));
            let sent = self
                .patch_request(&host.token, &live.upload_url, start as u64)
                .header("Content-Length", end - start)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .expect("PATCH");
            assert_eq!(sent.status(), StatusCode::NO_CONTENT);
            seen.patch_latencies.push(due.elapsed().as_secs_f64());
            let half_later = due + std::time::Duration::from_millis(500);
            tokio::time::sleep_until(half_later.into()).await;
            let chat_sent = std::time::Instant::now();
            seen.sent_at
                .push((chat_sent - recording_start).as_secs_f64());
            let posted = self
                .chat(Some(&fan.token), live.id, &format!("at chunk {i}"))
                .await;
            seen.chat_latencies.push(chat_sent.elapsed().as_secs_f64());
            assert_eq!(posted.status(), StatusCode::CREATED);
        }
        let chat = self.get_json(&format!("/api/posts/{}/chat", live.id)).await;
        seen.offsets = chat["results"]
            .as_array()
            .expect("chat results")
            .iter()
            .map(|m| m["offset"].as_f64().expect("an offset"))
            .collect();
        seen
    }
}

/// What [`TestApp::chat_beside_a_late_recorder`] saw: the offsets served, per message the
/// seconds into the recording at which it was sent and how long its POST took, and per chunk
/// the seconds from its due time to its PATCH's `204`.
#[derive(Debug, Default)]
pub struct LateRecorderChat {
    pub offsets: Vec<f64>,
    pub sent_at: Vec<f64>,
    pub chat_latencies: Vec<f64>,
    pub patch_latencies: Vec<f64>,
    /// How long each chunk's body took to arrive, on purpose.
    pub upload_time: f64,
}

impl LateRecorderChat {
    /// Asserts each served offset is its message's time into the recording, give or take
    /// what the server cannot know. It dates the recording by the arrival of the chunk that
    /// completes its first cluster or fragment (a WebM's second chunk, an MP4's first), when
    /// that chunk's PATCH began: offsets come early by up to a PATCH's latency less its body's
    /// upload time (the recorder had the chunk when it began sending it). It stamps a message
    /// on arrival: late by up to its POST's latency. `SPAN_SLACK` covers a chunk's media span
    /// differing from its second by a few frames (the MP4 fixture's first fragment spans
    /// 1.067 s, its audio running past its video), and millisecond rounding.
    pub fn assert_offsets_follow_the_recording(&self) {
        const SPAN_SLACK: f64 = 0.15;
        assert_eq!(self.offsets.len(), self.sent_at.len(), "{self:?}");
        assert!(
            self.patch_latencies.iter().all(|l| *l >= self.upload_time),
            "the uploads took less than asked: {self:?}"
        );
        let dating_lag = self
            .patch_latencies
            .iter()
            .map(|latency| latency - self.upload_time)
            .fold(0.0, f64::max);
        for ((offset, truth), chat_latency) in self
            .offsets
            .iter()
            .zip(&self.sent_at)
            .zip(&self.chat_latencies)
        {
            let error = offset - truth;
            assert!(
                -dating_lag - SPAN_SLACK <= error && error <= chat_latency + SPAN_SLACK,
                "offset {offset} for a message sent {truth} s into the recording: {self:?}"
            );
        }
    }
}
