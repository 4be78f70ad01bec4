//! The scale-out configuration's dependencies failing under a live: the object store stopped
//! for 10 s, a put that landed but whose answer was lost (and one that never landed),
//! PostgreSQL restarted. Requests meanwhile are answered `503` with `Retry-After` in bounded
//! time, the recorder (the protocol as it speaks it: after a failure, HEAD, then PATCH from
//! the offset) resumes afterwards, and the finalized recording holds every acknowledged byte.
//!
//! The store is moto behind a TCP proxy that goes silent or refuses connections; with
//! `LIVEKEEP_TEST_GARAGE_DIR` set (`scripts/services.sh --garage`, `make bench`), it is that
//! Garage, stopped and started again as a process, its data kept. Run alone then, one at a
//! time (`cargo test --test scaleout -- --test-threads=1 faults::`): the other tests point the
//! process's `AWS_*` variables at moto, and a stopped Garage is every test's store.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures_util::TryStreamExt;
use object_store::{path::Path as ObjectPath, ObjectStore};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::{
    fixtures::{fixture, sha256_hex},
    harness::{Cluster, Node, Postgres, WAIT},
    proxy::{Mode, Proxy},
};

/// How long the store or the database stays away.
const OUTAGE: Duration = Duration::from_secs(10);
/// The nodes' `--object-store-timeout` and `--database-timeout`, in seconds.
const DEPENDENCY_TIMEOUT: &str = "1";
/// The longest any answer may take while a dependency is away: a few times the timeout (a
/// PATCH may meet it twice), far below object_store's default retries (minutes).
const BOUND: Duration = Duration::from_secs(5);
/// The recorder's chunks: a timeslice's worth every `TIMESLICE`.
const CHUNK: usize = 1000;
const TIMESLICE: Duration = Duration::from_millis(300);

static PREFIXES: AtomicU32 = AtomicU32::new(0);

/// The store the test breaks.
enum Store {
    /// The test binary's moto, made to fail by the proxy.
    Moto { bucket: String },
    /// The Garage of `scripts/services.sh --garage`, stopped and started again.
    Garage(Garage),
}

/// The running Garage of `scripts/services.sh`: its directory (config, pid file, log) and binary.
struct Garage {
    dir: PathBuf,
    bin: PathBuf,
    bucket: String,
    endpoint: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

impl Garage {
    fn s3_port_answers(&self) -> bool {
        let address = self.endpoint.trim_start_matches("http://");
        std::net::TcpStream::connect(address).is_ok()
    }

    /// Stops the process (SIGTERM) and waits until its port refuses connections.
    async fn stop(&self) {
        let pid = std::fs::read_to_string(self.dir.join("garage.pid")).expect("garage.pid");
        let status = Command::new("kill").arg(pid.trim()).status().unwrap();
        assert!(status.success(), "kill {pid}");
        let deadline = Instant::now() + WAIT;
        while self.s3_port_answers() {
            assert!(Instant::now() < deadline, "garage did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts it again with the same configuration and data; waits until it listens.
    async fn start(&self) {
        // Through a shell that exits at once: the server outlives the test binary, and
        // scripts/services.sh stops whichever process the pid file names.
        let started = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" -c "$1" server >>"$2" 2>&1 </dev/null & echo $! >"$3""#)
            .arg(&self.bin)
            .arg(self.dir.join("garage.toml"))
            .arg(self.dir.join("garage.log"))
            .arg(self.dir.join("garage.pid"))
            .stdin(Stdio::null())
            .status()
            .expect("sh starts garage");
        assert!(started.success(), "starting garage");
        let deadline = Instant::now() + WAIT;
        while !self.s3_port_answers() {
            assert!(Instant::now() < deadline, "garage did not start again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Store {
    async fn new() -> Self {
        match std::env::var_os("LIVEKEEP_TEST_GARAGE_DIR") {
            Some(dir) => Self::Garage(Garage {
                dir: PathBuf::from(dir),
                bin: PathBuf::from(env("LIVEKEEP_TEST_GARAGE_BIN")),
                bucket: env("LIVEKEEP_TEST_S3_BUCKET"),
                endpoint: env("AWS_ENDPOINT_URL"),
            }),
            None => Self::Moto {
                bucket: crate::s3::moto().bucket().await,
            },
        }
    }

    fn bucket(&self) -> &str {
        match self {
            Self::Moto { bucket } => bucket,
            Self::Garage(garage) => &garage.bucket,
        }
    }

    /// `host:port` of the store itself.
    fn upstream(&self) -> String {
        let endpoint = match self {
            // Where the test binary's moto listens, as it told the process's variables.
            Self::Moto { .. } => env("AWS_ENDPOINT_URL"),
            Self::Garage(garage) => garage.endpoint.clone(),
        };
        endpoint.trim_start_matches("http://").to_owned()
    }

    /// A client straight to the store (not through the proxy), to look at the objects.
    fn client(&self) -> Arc<dyn ObjectStore> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(format!("s3://{}", self.bucket()))
                .build()
                .expect("an S3 client"),
        )
    }

    /// Makes the store unreachable for [`OUTAGE`]: moto through the proxy (silent, then
    /// refusing), Garage by stopping its process.
    async fn outage(&self, proxy: &Proxy) {
        match self {
            Self::Moto { .. } => {
                proxy.set(Mode::Silent);
                tokio::time::sleep(OUTAGE / 2).await;
                proxy.set(Mode::Refuse);
                tokio::time::sleep(OUTAGE / 2).await;
                proxy.set(Mode::Forward);
            }
            Self::Garage(garage) => {
                garage.stop().await;
                tokio::time::sleep(OUTAGE).await;
                garage.start().await;
            }
        }
    }
}

/// PostgreSQL, the store behind a proxy, and one node storing through the proxy.
struct Setup {
    store: Store,
    proxy: Proxy,
    prefix: String,
    node: Node,
    _postgres: Postgres,
}

impl Setup {
    async fn start() -> Self {
        let postgres = Postgres::start();
        let store = Store::new().await;
        let proxy = Proxy::start(store.upstream()).await;
        let prefix = format!(
            "faults-{}-{}",
            std::process::id(),
            PREFIXES.fetch_add(1, Ordering::Relaxed)
        );
        let url = format!("s3://{}/{prefix}", store.bucket());
        let flags = ["--object-store-timeout", DEPENDENCY_TIMEOUT];
        let endpoint = proxy.endpoint();
        let env = [("AWS_ENDPOINT_URL", endpoint.as_str())];
        let node = Node::start_with_env(&postgres.url(), &url, &flags, &env).await;
        Self {
            store,
            proxy,
            prefix,
            node,
            _postgres: postgres,
        }
    }

    /// The `start-end` of every object the upload has in the store.
    async fn objects(&self, upload_url: &str) -> Vec<(u64, u64)> {
        let id = upload_url.trim_end_matches('/').rsplit('/').next().unwrap();
        let dir = ObjectPath::from(format!("{}/uploads/{id}", self.prefix));
        let listed: Vec<_> = self
            .store
            .client()
            .list(Some(&dir))
            .try_collect()
            .await
            .unwrap();
        let mut objects: Vec<(u64, u64)> = listed
            .iter()
            .map(|meta| {
                let (start, end) = meta.location.filename().unwrap().split_once('-').unwrap();
                (start.parse().unwrap(), end.parse().unwrap())
            })
            .collect();
        objects.sort();
        objects
    }
}

/// One answer the recorder got.
#[derive(Debug)]
struct Answer {
    method: &'static str,
    sent: Instant,
    took: Duration,
    status: StatusCode,
    code: Option<String>,
    retry_after: Option<String>,
}

impl Answer {
    async fn of(method: &'static str, sent: Instant, response: Response) -> (Self, Option<u64>) {
        let took = sent.elapsed();
        let status = response.status();
        let offset = response
            .headers()
            .get("upload-offset")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let code = if status.is_success() || method == "HEAD" {
            None
        } else {
            let body: Value = response.json().await.unwrap_or_default();
            body["error"]["code"].as_str().map(str::to_owned)
        };
        let answer = Self {
            method,
            sent,
            took,
            status,
            code,
            retry_after,
        };
        (answer, offset)
    }
}

/// Records `bytes` through `node` as the recorder does: a chunk becomes available every
/// [`TIMESLICE`]; everything available is PATCHed; after any failure, HEAD, then PATCH from
/// the offset it gives. Returns every answer, once all bytes are acknowledged.
async fn record(node: &Node, token: &str, upload_url: &str, bytes: &[u8]) -> Vec<Answer> {
    let began = Instant::now();
    let mut answers = Vec::new();
    let (mut acknowledged, mut in_doubt) = (0usize, false);
    while acknowledged < bytes.len() {
        assert!(
            began.elapsed() < OUTAGE + 4 * WAIT,
            "the recording never completed: {answers:#?}\n{}",
            node.log()
        );
        if in_doubt {
            let sent = Instant::now();
            let response = node
                .request(Method::HEAD, upload_url, Some(token))
                .header("Tus-Resumable", "1.0.0")
                .send()
                .await
                .unwrap();
            let (answer, offset) = Answer::of("HEAD", sent, response).await;
            let ok = answer.status == StatusCode::OK;
            answers.push(answer);
            if !ok {
                tokio::time::sleep(TIMESLICE).await;
                continue;
            }
            let held = usize::try_from(offset.unwrap()).unwrap();
            assert!(
                held >= acknowledged,
                "HEAD says {held}, {acknowledged} were acknowledged"
            );
            acknowledged = held;
            in_doubt = false;
        }
        let slices = began.elapsed().as_millis() / TIMESLICE.as_millis() + 1;
        let available = (usize::try_from(slices).unwrap() * CHUNK).min(bytes.len());
        if available == acknowledged {
            tokio::time::sleep(TIMESLICE / 3).await;
            continue;
        }
        let sent = Instant::now();
        let response = node
            .patch(
                token,
                upload_url,
                acknowledged,
                &bytes[acknowledged..available],
            )
            .await;
        let (answer, offset) = Answer::of("PATCH", sent, response).await;
        if answer.status == StatusCode::NO_CONTENT {
            assert_eq!(offset, Some(available as u64), "{answer:?}");
            acknowledged = available;
        } else {
            in_doubt = true;
            tokio::time::sleep(TIMESLICE).await;
        }
        answers.push(answer);
    }
    answers
}

/// Checks what a client saw while a dependency was away: every failure is a prompt `503`
/// with `code` and `Retry-After`, and at least `felt` of them were seen.
fn assert_unavailable_answers(answers: &[Answer], felt: usize, code: &str, logs: &str) {
    let failed: Vec<&Answer> = answers.iter().filter(|a| !a.status.is_success()).collect();
    assert!(
        failed.len() >= felt,
        "the outage was not felt: {answers:#?}\n{logs}"
    );
    for answer in &failed {
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{answer:?}\n{logs}"
        );
        if answer.method == "PATCH" {
            assert_eq!(answer.code.as_deref(), Some(code), "{answer:?}");
        }
        assert_eq!(answer.retry_after.as_deref(), Some("3"), "{answer:?}");
    }
    let slowest = answers.iter().map(|a| a.took).max().unwrap();
    assert!(
        slowest < BOUND,
        "an answer took {slowest:?}: {answers:#?}\n{logs}"
    );
}

/// Stops the live with the recording's checksum and checks the stored bytes are exactly it.
async fn assert_finalized(node: &Node, token: &str, live_id: i64, upload_url: &str, bytes: &[u8]) {
    let stopped = node.stop(token, live_id, upload_url, bytes).await;
    assert_eq!(stopped.status(), StatusCode::OK, "{}", node.log());
    let post: Value = stopped.json().await.unwrap();
    assert_eq!(post["live_status"], "ended");
    assert_eq!(
        post["media_files"][0]["original_sha256"],
        sha256_hex(bytes).as_str()
    );
}

#[tokio::test]
async fn a_store_gone_for_ten_seconds_mid_live_costs_prompt_503s_and_no_acknowledged_byte() {
    let setup = Setup::start().await;
    let node = &setup.node;
    let bytes = fixture();
    let token = node.register("storeout").await;
    let (live_id, upload_url) = node.start_live(&token, "store outage").await;

    let recording = record(node, &token, &upload_url, &bytes);
    let outage = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let began = Instant::now();
        setup.store.outage(&setup.proxy).await;
        began..Instant::now()
    };
    let (answers, window) = tokio::join!(recording, outage);
    let during: Vec<Answer> = answers
        .into_iter()
        .filter(|a| window.contains(&a.sent))
        .collect();
    assert_unavailable_answers(&during, 2, "storage_unavailable", &node.log());
    assert_finalized(node, &token, live_id, &upload_url, &bytes).await;
}

#[tokio::test]
async fn a_put_cut_short_is_garbage_whether_it_landed_or_not() {
    let setup = Setup::start().await;
    let node = &setup.node;
    let bytes = fixture();
    let (first, second) = (10_000, 20_000);
    let token = node.register("cutshort").await;
    let (live_id, upload_url) = node.start_live(&token, "cut short").await;
    let response = node.patch(&token, &upload_url, 0, &bytes[..first]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    for (mode, lands) in [(Mode::LoseAnswersToPuts, true), (Mode::Silent, false)] {
        setup.proxy.set(mode);
        let sent = Instant::now();
        let response = node
            .patch(&token, &upload_url, first, &bytes[first..second])
            .await;
        let (answer, _) = Answer::of("PATCH", sent, response).await;
        assert_unavailable_answers(&[answer], 1, "storage_unavailable", &node.log());
        let piece = (first as u64, second as u64);
        let deadline = Instant::now() + WAIT;
        loop {
            let landed = setup.objects(&upload_url).await.contains(&piece);
            if landed == lands {
                break;
            }
            // A put whose answer is lost may finish in the store a moment later.
            assert!(
                lands && Instant::now() < deadline,
                "{mode:?}: landed {landed}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        setup.proxy.set(Mode::Forward);
        // The recorder asks where to resume: the piece was never acknowledged.
        assert_eq!(node.head_offset(&token, &upload_url).await, first);
        assert_eq!(
            setup.objects(&upload_url).await,
            [(0, first as u64)],
            "{mode:?}: reconciliation removed what lay past the committed offset"
        );
    }

    for (from, to) in [(first, second), (second, bytes.len())] {
        let response = node
            .patch(&token, &upload_url, from, &bytes[from..to])
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{}", node.log());
    }
    assert_finalized(node, &token, live_id, &upload_url, &bytes).await;
}

#[tokio::test]
async fn a_piece_left_by_another_nodes_failed_patch_never_ends_up_in_the_recording() {
    // Node A stores straight into the store, node B through the proxy.
    let postgres = Postgres::start();
    let store = Store::new().await;
    let proxy = Proxy::start(store.upstream()).await;
    let prefix = format!(
        "faults-{}-{}",
        std::process::id(),
        PREFIXES.fetch_add(1, Ordering::Relaxed)
    );
    let url = format!("s3://{}/{prefix}", store.bucket());
    let flags = ["--object-store-timeout", DEPENDENCY_TIMEOUT];
    let a = Node::start(&postgres.url(), &url, &flags).await;
    let endpoint = proxy.endpoint();
    let b = Node::start_with_env(
        &postgres.url(),
        &url,
        &flags,
        &[("AWS_ENDPOINT_URL", &endpoint)],
    )
    .await;
    let setup = Setup {
        store,
        proxy,
        prefix,
        node: b,
        _postgres: postgres,
    };
    let logs = || format!("A:\n{}\nB:\n{}", a.log(), setup.node.log());
    let bytes = fixture();
    let first = 10_000;
    let token = a.register("leftover").await;
    let (live_id, upload_url) = a.start_live(&token, "a piece left behind").await;
    let response = a.patch(&token, &upload_url, 0, &bytes[..first]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // B's PATCH puts its piece, whose answer is lost: a 503, and the piece stays in the store
    // past the committed offset. Its bytes are not the recording's: a client may send other
    // bytes after a failure, and must find only what was acknowledged in the end.
    setup.proxy.set(Mode::LoseAnswersToPuts);
    let left = vec![0xA5; 3_000];
    let response = setup.node.patch(&token, &upload_url, first, &left).await;
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        logs()
    );
    let piece = (first as u64, (first + left.len()) as u64);
    let deadline = Instant::now() + WAIT;
    while !setup.objects(&upload_url).await.contains(&piece) {
        assert!(Instant::now() < deadline, "the put never landed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    setup.proxy.set(Mode::Forward);

    // The client goes on through A without asking HEAD first, with a shorter PATCH: A knows
    // where the upload ended after its own piece, but B wrote since, so A lists again.
    let response = a
        .patch(&token, &upload_url, first, &bytes[first..first + 1_000])
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{}", logs());
    assert!(
        !setup.objects(&upload_url).await.contains(&piece),
        "B's piece is still there: {:?}",
        setup.objects(&upload_url).await
    );
    let response = a
        .patch(&token, &upload_url, first + 1_000, &bytes[first + 1_000..])
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{}", logs());
    assert_finalized(&a, &token, live_id, &upload_url, &bytes).await;
}

/// A PATCH body the test feeds, so the PATCH holds its upload's lock for as long as it likes.
fn fed_body() -> (mpsc::Sender<Vec<u8>>, reqwest::Body) {
    let (feed, chunks) = mpsc::channel::<Vec<u8>>(4);
    let stream = futures_util::stream::unfold(chunks, |mut chunks| async move {
        let chunk = chunks.recv().await?;
        Some((Ok::<_, std::io::Error>(chunk), chunks))
    });
    (feed, reqwest::Body::wrap_stream(stream))
}

#[tokio::test]
async fn postgres_restarted_mid_live_costs_prompt_503s_and_no_acknowledged_byte() {
    let cluster = Cluster::start(&["--database-timeout", DEPENDENCY_TIMEOUT]).await;
    let (a, b) = (cluster.a(), cluster.b());
    let bytes = fixture();
    let token = a.register("pgrestart").await;
    let (live_id, upload_url) = a.start_live(&token, "database restart").await;
    let mut viewer = b.events(live_id, "viewer_id=viewer-0001").await;
    viewer.wait_for("viewers", |c| c["viewers"] == 1).await;

    // A second live whose PATCH holds its upload's lock across the restart.
    let (held_live, held_url) = a.start_live(&token, "lock across the restart").await;
    let half = bytes.len() / 2;
    let response = a.patch(&token, &held_url, 0, &bytes[..half]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (feed, body) = fed_body();
    feed.send(bytes[half..half + 100].to_vec()).await.unwrap();
    let across = tokio::spawn(
        a.request(Method::PATCH, &held_url, Some(&token))
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", half.to_string())
            .body(body)
            .send(),
    );
    // It holds the lock once another PATCH of that upload is refused for it.
    loop {
        let probe = a.patch(&token, &held_url, half + 1, &[]).await;
        match probe.status() {
            StatusCode::LOCKED => break,
            StatusCode::CONFLICT => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("probe: {other} {}", cluster.logs()),
        }
    }

    let recording = record(a, &token, &upload_url, &bytes);
    let outage = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let began = Instant::now();
        cluster.postgres.stop();
        tokio::time::sleep(OUTAGE).await;
        cluster.postgres.start_again();
        began..Instant::now()
    };
    let (answers, window) = tokio::join!(recording, outage);
    let during: Vec<Answer> = answers
        .into_iter()
        .filter(|answer| window.contains(&answer.sent))
        .collect();
    assert_unavailable_answers(&during, 2, "database_unavailable", &cluster.logs());

    // The held PATCH's lock went with its session: its bytes are stored but never committed.
    feed.send(bytes[half + 100..].to_vec()).await.unwrap();
    drop(feed);
    let across = across.await.unwrap().unwrap();
    assert_eq!(
        across.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a PATCH committed without its lock: {}",
        cluster.logs()
    );
    assert_eq!(b.head_offset(&token, &held_url).await, half);
    let response = b.patch(&token, &held_url, half, &bytes[half..]).await;
    assert_eq!(
        response.status(),
        StatusCode::NO_CONTENT,
        "{}",
        cluster.logs()
    );
    assert_finalized(b, &token, held_live, &held_url, &bytes).await;

    // Notifications flow again between the nodes: the listener and the sender reconnected.
    let deadline = Instant::now() + WAIT;
    let mut sent = 0;
    loop {
        sent += 1;
        a.chat(&token, live_id, &format!("after the restart {sent}"))
            .await;
        let heard = tokio::time::timeout(
            Duration::from_millis(500),
            viewer.wait_for("chat", |_| true),
        );
        if heard.await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never heard from A again: {}",
            cluster.logs()
        );
        // The chat limit allows 5 messages per 10 s.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_finalized(a, &token, live_id, &upload_url, &bytes).await;
    let ended = viewer.wait_for("ended", |_| true).await;
    assert_eq!(ended["id"], live_id);
}
