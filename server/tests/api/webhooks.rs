//! Webhooks: every event delivered to a receiver and verified by an independent
//! implementation of Standard Webhooks, retried after errors, refused connections and
//! timeouts with the same `webhook-id`, kept across a crash, counted, listed and redelivered.

use std::{
    collections::{BTreeSet, HashMap},
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{
    admin::{admin, fails, succeeds},
    crash::{register_and_start_live, start_server},
    helpers::{fixture, spawn_app_in, spawn_app_with, TestApp},
    process::ServerProcess,
    receiver::{Answer, Receiver},
    verifier::{verified, verify},
};

/// The secret every test signs with (`whsec_` and 34 bytes in base64).
const SECRET: &str = "whsec_dGVzdC1zZWNyZXQtZm9yLWxpdmVrZWVwLXdlYmhvb2tzIQ==";

/// A bound on how long an event may take to arrive; not a pace.
const WAIT: Duration = Duration::from_secs(20);

/// Points `config` at `urls`, signed with [`SECRET`].
fn send_to(config: &mut livekeep_server::config::Config, urls: &[&str]) {
    config.webhook_urls = urls.iter().map(|url| url.to_string()).collect();
    config.webhook_secret = Some(SECRET.parse().unwrap());
}

/// A server sending webhooks to `urls`, after `tweak`.
async fn app_with_webhooks(
    urls: &[&str],
    tweak: impl FnOnce(&mut livekeep_server::config::Config),
) -> TestApp {
    spawn_app_with(|config| {
        send_to(config, urls);
        tweak(config);
    })
    .await
}

/// `livekeep admin <args>` on `dir`, off the test's runtime: the receivers and the server of
/// the test keep answering meanwhile.
async fn run_admin(dir: &Path, args: &[&str]) -> std::process::Output {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        admin(&dir, &args, "")
    })
    .await
    .unwrap()
}

/// The flags that give an admin command the server's webhook settings and address.
fn webhook_flags<'a>(app: &'a TestApp, url: &'a str) -> [&'a str; 6] {
    [
        "--webhook-url",
        url,
        "--webhook-secret",
        SECRET,
        "--listen",
        app.address.strip_prefix("http://").unwrap(),
    ]
}

/// An outbox row as the tests look at it.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    webhook_id: String,
    event_type: String,
    state: String,
    attempts: i64,
    last_error: Option<String>,
}

async fn outbox(app: &TestApp) -> Vec<Row> {
    let db = app.database().await;
    let rows: Vec<(i64, String, String, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT id, webhook_id, event_type, state, attempts, last_error
         FROM webhook_outbox ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;
    rows.into_iter()
        .map(
            |(id, webhook_id, event_type, state, attempts, last_error)| Row {
                id,
                webhook_id,
                event_type,
                state,
                attempts,
                last_error,
            },
        )
        .collect()
}

/// Polls the outbox until `done` holds for it (bounded by [`WAIT`]).
async fn outbox_until(app: &TestApp, what: &str, done: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = outbox(app).await;
        if done(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "never {what}: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the series named exactly `series` on `/metrics` (0 when absent).
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app
        .request(Method::GET, "/metrics", None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

fn deliveries(event_type: &str, outcome: &str) -> String {
    format!("livekeep_webhook_deliveries_total{{type=\"{event_type}\",outcome=\"{outcome}\"}}")
}

/// The payloads of `received`, verified, by event type (each type once).
fn by_type(received: &[crate::receiver::Received]) -> HashMap<String, Value> {
    let mut found = HashMap::new();
    for payload in verified(SECRET, received) {
        let event_type = payload["type"].as_str().unwrap().to_owned();
        assert!(
            found.insert(event_type.clone(), payload).is_none(),
            "{event_type} arrived twice"
        );
    }
    found
}

#[tokio::test]
async fn every_event_arrives_signed_as_standard_webhooks_says_with_the_apis_json() {
    let receiver = Receiver::start().await;
    let app = app_with_webhooks(&[&receiver.url], |_| {}).await;
    let user = app.user().await;
    let post = app.recorded_post(&user, "Concert").await;
    let live_id = post["id"].as_i64().unwrap();
    let media_id = post["media_files"][0]["id"].as_i64().unwrap();
    let file_url = app.url(&format!("/media/{media_id}"));

    // The other changes come from admin commands, other processes: the server's delivery task
    // finds their rows by polling.
    let dir = app.data_dir.path();
    let flags = webhook_flags(&app, &receiver.url);
    let id = media_id.to_string();
    let out = succeeds(run_admin(dir, &[&["refinalize", id.as_str()][..], &flags].concat()).await);
    assert!(
        out.contains("recording.refinalized queued for 1 webhook URL(s)"),
        "{out}"
    );
    let id = live_id.to_string();
    let out = succeeds(run_admin(dir, &[&["delete-post", id.as_str()][..], &flags].concat()).await);
    assert!(
        out.contains("post.deleted queued for 1 webhook URL(s)"),
        "{out}"
    );

    let received = receiver.wait_for(4, WAIT).await;
    let ids: BTreeSet<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 4, "one webhook-id per event");
    for delivery in &received {
        assert!(delivery.header("webhook-id").starts_with("msg_"));
        assert_eq!(delivery.header("content-type"), "application/json");
        let signature = delivery.header("webhook-signature");
        assert!(signature.starts_with("v1,"), "{signature}");
    }
    let events = by_type(&received);
    let types: BTreeSet<&str> = events.keys().map(String::as_str).collect();
    assert_eq!(
        types,
        BTreeSet::from([
            "live.started",
            "live.ended",
            "recording.refinalized",
            "post.deleted"
        ])
    );
    for event in events.values() {
        let timestamp = event["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
    }

    let started = &events["live.started"]["data"]["post"];
    assert_eq!(started["id"], live_id);
    assert_eq!(started["live_status"], "live");
    assert_eq!(started["content"], "Concert");
    assert_eq!(started["author"]["username"], user.username.as_str());
    assert_eq!(started["media_files"], serde_json::json!([]));

    let ended = &events["live.ended"]["data"];
    assert_eq!(ended["post"]["live_status"], "ended");
    assert_eq!(ended["media"]["id"], media_id);
    assert_eq!(ended["media"]["file_url"], file_url.as_str());
    assert_eq!(
        ended["post"]["media_files"][0]["file_url"],
        file_url.as_str()
    );
    assert_eq!(ended["media"]["is_live_recording"], true);
    assert_eq!(ended["media"]["live_post"], live_id);
    // The API's JSON, field for field, but for the absolute URLs.
    let mut api_media = post["media_files"][0].clone();
    api_media["file_url"] = Value::from(file_url.clone());
    assert_eq!(ended["media"], api_media);

    let refinalized = &events["recording.refinalized"]["data"]["media"];
    assert_eq!(refinalized["id"], media_id);
    assert_eq!(refinalized["file_url"], file_url.as_str());
    assert_eq!(events["post.deleted"]["data"]["post_id"], live_id);

    let rows = outbox_until(&app, "all delivered", |rows| {
        rows.iter().all(|row| row.state == "delivered")
    })
    .await;
    assert!(rows.iter().all(|row| row.attempts == 1), "{rows:#?}");
    let written: BTreeSet<&str> = rows.iter().map(|row| row.event_type.as_str()).collect();
    assert_eq!(written, types, "one row per event for the one receiver");
}

#[tokio::test]
async fn a_live_that_goes_silent_sends_live_interrupted_with_its_recording_or_null() {
    let receiver = Receiver::start().await;
    let app = app_with_webhooks(&[&receiver.url], |config| config.interrupt_after = 1).await;
    let user = app.user().await;
    let (recorded, _) = app.uploaded_live(&user, "recorded").await;
    let empty = app.start_live(&user, "empty").await;

    let received = receiver.wait_for(4, WAIT).await;
    let payloads = verified(SECRET, &received);
    let interrupted = |live_id: i64| {
        payloads
            .iter()
            .find(|p| p["type"] == "live.interrupted" && p["data"]["post"]["id"] == live_id)
            .unwrap_or_else(|| panic!("no live.interrupted for {live_id}: {payloads:#?}"))
    };
    let with_media = &interrupted(recorded.id)["data"];
    assert_eq!(with_media["post"]["live_status"], "interrupted");
    assert_eq!(with_media["media"]["live_post"], recorded.id);
    assert!(with_media["media"]["file_url"]
        .as_str()
        .unwrap()
        .starts_with(&app.address));
    let without = &interrupted(empty.id)["data"];
    assert_eq!(without["post"]["live_status"], "interrupted");
    assert_eq!(without["media"], Value::Null);
    assert_eq!(without["post"]["media_files"], serde_json::json!([]));
}

#[tokio::test]
async fn deleting_a_post_over_the_api_sends_post_deleted() {
    let receiver = Receiver::start().await;
    let app = app_with_webhooks(&[&receiver.url], |_| {}).await;
    let user = app.user().await;
    let post = app.recorded_post(&user, "to delete").await;
    let post_id = post["id"].as_i64().unwrap();
    let deleted = app
        .request(
            Method::DELETE,
            &format!("/api/posts/{post_id}/"),
            Some(&user.token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let event = receiver.wait_for_type("post.deleted", WAIT).await;
    let payload = &verified(SECRET, std::slice::from_ref(&event))[0];
    assert_eq!(payload["data"]["post_id"], post_id);
}

#[tokio::test]
async fn a_stop_with_nothing_recorded_sends_live_ended_with_a_null_media() {
    let receiver = Receiver::start().await;
    let app = app_with_webhooks(&[&receiver.url], |_| {}).await;
    let user = app.user().await;
    let live = app.start_live(&user, "nothing to show").await;
    let stopped = app
        .stop(&user.token, live.id, serde_json::json!({ "size": 0 }))
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);

    let ended = receiver.wait_for_type("live.ended", WAIT).await;
    let payload = &verified(SECRET, std::slice::from_ref(&ended))[0];
    assert_eq!(payload["data"]["post"]["id"], live.id);
    assert_eq!(payload["data"]["post"]["live_status"], "ended");
    assert_eq!(payload["data"]["media"], Value::Null);
    // A repeated stop changes nothing, so it reports nothing.
    let again = app
        .stop(&user.token, live.id, serde_json::json!({ "size": 0 }))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let rows = outbox_until(&app, "both delivered", |rows| {
        rows.iter().all(|row| row.state == "delivered")
    })
    .await;
    assert_eq!(rows.len(), 2, "live.started and one live.ended: {rows:#?}");
}

#[tokio::test]
async fn a_receiver_answering_500_gets_the_same_event_again_within_seconds_signed_anew() {
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(500), Answer::Status(503)]);
    let app = app_with_webhooks(&[&receiver.url], |_| {}).await;
    let user = app.user().await;
    app.start_live(&user, "retried").await;

    let received = receiver.wait_for(3, WAIT).await;
    assert_eq!(
        received.len(),
        3,
        "delivered once the receiver answered 204"
    );
    let id = received[0].header("webhook-id");
    assert!(received.iter().all(|r| r.header("webhook-id") == id));
    assert!(
        received.iter().all(|r| r.body == received[0].body),
        "the same body"
    );
    // Each attempt is signed for its own time, and each signature verifies then.
    let stamps: Vec<i64> = received
        .iter()
        .map(|r| r.header("webhook-timestamp").parse().unwrap())
        .collect();
    assert!(
        stamps[0] <= stamps[1] && stamps[1] <= stamps[2] && stamps[0] < stamps[2],
        "{stamps:?}"
    );
    assert_ne!(
        received[0].header("webhook-signature"),
        received[2].header("webhook-signature")
    );
    assert!(verify(SECRET, &received).iter().all(Result::is_ok));
    // Exponential backoff from about a second: quick enough for a receiver back from a restart.
    let gaps: Vec<Duration> = received.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(700), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(1500), "{gaps:?}");
    assert!(
        gaps.iter().all(|gap| *gap < Duration::from_secs(6)),
        "{gaps:?}"
    );

    let rows = outbox_until(&app, "delivered", |rows| rows[0].state == "delivered").await;
    assert_eq!(rows[0].attempts, 3);
    assert_eq!(rows[0].last_error, None);
    assert_eq!(
        metric(&app, &deliveries("live.started", "rejected")).await,
        2.0
    );
    assert_eq!(
        metric(&app, &deliveries("live.started", "delivered")).await,
        1.0
    );
    assert_eq!(
        metric(&app, "livekeep_webhook_outbox_size{state=\"pending\"}").await,
        0.0
    );
}

#[tokio::test]
async fn a_receiver_that_refuses_connections_gets_the_event_once_it_starts() {
    let address = Receiver::reserve_address();
    let url = Receiver::url_at(address);
    let app = app_with_webhooks(&[&url], |_| {}).await;
    let user = app.user().await;
    app.start_live(&user, "late receiver").await;

    let rows = outbox_until(&app, "retried twice", |rows| rows[0].attempts >= 2).await;
    let row = &rows[0];
    assert_eq!(row.state, "pending");
    let error = row.last_error.as_deref().unwrap_or_default();
    assert!(error.to_lowercase().contains("refused"), "{error}");
    assert!(metric(&app, &deliveries("live.started", "unreachable")).await >= 2.0);
    assert_eq!(
        metric(&app, "livekeep_webhook_outbox_size{state=\"pending\"}").await,
        1.0
    );
    assert!(metric(&app, "livekeep_webhook_outbox_oldest_seconds").await > 0.0);
    let listed = succeeds(run_admin(app.data_dir.path(), &["webhooks"]).await);
    let line = listed
        .lines()
        .find(|line| line.starts_with(&format!("{}\t", row.id)))
        .unwrap_or_else(|| panic!("row {} not listed:\n{listed}", row.id));
    for column in [
        row.webhook_id.as_str(),
        "live.started",
        url.as_str(),
        "pending",
    ] {
        assert!(line.contains(column), "{column} missing from {line}");
    }
    assert!(listed.contains("1 undelivered webhook(s)"), "{listed}");

    let receiver = Receiver::start_on(address).await;
    let received = receiver.wait_for(1, WAIT).await;
    assert_eq!(received[0].header("webhook-id"), row.webhook_id);
    assert_eq!(verified(SECRET, &received)[0]["type"], "live.started");
    outbox_until(&app, "delivered", |rows| rows[0].state == "delivered").await;
    assert_eq!(
        metric(&app, "livekeep_webhook_outbox_oldest_seconds").await,
        0.0
    );
}

#[tokio::test]
async fn a_receiver_that_hangs_times_out_without_holding_the_other_receiver() {
    let hung = Receiver::start().await;
    hung.script([Answer::Hang]);
    let healthy = Receiver::start().await;
    let app = app_with_webhooks(&[&hung.url, &healthy.url], |_| {}).await;
    let user = app.user().await;
    let started = Instant::now();
    app.start_live(&user, "one slow receiver").await;

    // The healthy receiver does not wait for the hung one's ten seconds.
    let fast = healthy.wait_for(1, WAIT).await;
    assert!(fast[0].at - started < Duration::from_secs(5));
    let slow = hung.wait_for(2, WAIT).await;
    assert_eq!(slow[0].header("webhook-id"), slow[1].header("webhook-id"));
    assert_eq!(slow[0].header("webhook-id"), fast[0].header("webhook-id"));
    let waited = slow[1].at - slow[0].at;
    assert!(
        waited >= Duration::from_secs(10),
        "retried after {waited:?}"
    );
    let rows = outbox_until(&app, "both delivered", |rows| {
        rows.iter().all(|row| row.state == "delivered")
    })
    .await;
    assert_eq!(rows.len(), 2, "one row per receiver");
    assert_eq!(
        metric(&app, &deliveries("live.started", "timeout")).await,
        1.0
    );
    assert_eq!(
        metric(&app, &deliveries("live.started", "delivered")).await,
        2.0
    );
}

#[tokio::test]
async fn a_graceful_shutdown_hands_back_the_attempt_in_flight_for_the_next_start() {
    let receiver = Receiver::start().await;
    receiver.script([Answer::Hang]);
    let app = app_with_webhooks(&[&receiver.url], |_| {}).await;
    let user = app.user().await;
    app.start_live(&user, "stopped mid-attempt").await;
    receiver.wait_for(1, WAIT).await;

    // Stopped while the receiver holds the attempt: the row is due again at once, not when
    // its 30 s lease would have run out.
    let data_dir = app.shutdown().await;
    let url = receiver.url.clone();
    let app = spawn_app_in(data_dir, |config| send_to(config, &[&url])).await;
    let received = receiver.wait_for(2, WAIT).await;
    assert_eq!(
        received[0].header("webhook-id"),
        received[1].header("webhook-id")
    );
    let waited = received[1].at - received[0].at;
    assert!(
        waited < Duration::from_secs(15),
        "sent again after {waited:?}"
    );
    let rows = outbox_until(&app, "delivered", |rows| rows[0].state == "delivered").await;
    assert_eq!(rows[0].attempts, 1, "the abandoned attempt is not counted");
}

/// The attempt in flight is handed back when the shutdown begins, not once the open requests
/// are drained: a request still reading its body holds the drain here.
#[tokio::test]
async fn the_attempt_in_flight_is_handed_back_while_requests_still_drain() {
    use tokio::io::AsyncWriteExt;

    let receiver = Receiver::start().await;
    receiver.script([Answer::Hang]);
    let app = app_with_webhooks(&[&receiver.url], |_| {}).await;
    let user = app.user().await;
    app.start_live(&user, "a slow request holds the drain")
        .await;
    receiver.wait_for(1, WAIT).await;
    let leased = |db: sqlx::AnyPool| async move {
        sqlx::query_scalar::<_, Option<String>>("SELECT lease_token FROM webhook_outbox")
            .fetch_one(&db)
            .await
            .unwrap()
            .is_some()
    };
    let db = app.database().await;
    assert!(leased(db.clone()).await, "the attempt holds its row");

    // A request whose body never ends: the server drains it before it stops.
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(
        format!(
            "POST /api/auth/login HTTP/1.1\r\nHost: {address}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"user"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(app.shutdown());

    let deadline = Instant::now() + Duration::from_secs(5);
    while leased(db.clone()).await {
        assert!(
            Instant::now() < deadline,
            "the row is still leased 5 s into the shutdown"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !stopping.is_finished(),
        "the slow request still holds the drain"
    );
    drop(slow);
    let _data_dir = stopping.await.expect("the server stops");
    db.close().await;
}

#[tokio::test]
async fn an_event_past_its_retry_window_fails_and_admin_redeliver_sends_it_again() {
    let receiver = Receiver::start().await;
    receiver.otherwise(500);
    let app = app_with_webhooks(&[&receiver.url], |_| {}).await;
    let user = app.user().await;
    app.start_live(&user, "given up").await;
    outbox_until(&app, "attempted", |rows| rows[0].attempts >= 1).await;

    // As if a day of retries had passed: the next failure is the last.
    let db = app.database().await;
    sqlx::query("UPDATE webhook_outbox SET give_up_at = 0")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let rows = outbox_until(&app, "failed", |rows| rows[0].state == "failed").await;
    let row = rows[0].clone();
    assert!(
        row.last_error.as_deref().unwrap().starts_with("HTTP 500"),
        "{row:?}"
    );
    assert_eq!(
        metric(&app, "livekeep_webhook_outbox_size{state=\"failed\"}").await,
        1.0
    );
    let attempts = receiver.received().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        receiver.received().len(),
        attempts,
        "a failed event is not retried"
    );
    let dir = app.data_dir.path();
    let listed = succeeds(run_admin(dir, &["webhooks"]).await);
    assert!(
        listed.contains("\tfailed\t") && listed.contains("HTTP 500"),
        "{listed}"
    );

    receiver.otherwise(204);
    let flags = webhook_flags(&app, &receiver.url);
    let id = row.id.to_string();
    let out = succeeds(run_admin(dir, &[&["redeliver", id.as_str()][..], &flags].concat()).await);
    assert!(
        out.contains(&format!("webhook delivery {id} delivered (HTTP 204)")),
        "{out}"
    );
    let received = receiver.received();
    assert_eq!(received.len(), attempts + 1);
    assert_eq!(
        received.last().unwrap().header("webhook-id"),
        row.webhook_id
    );
    assert!(verify(SECRET, &received[received.len() - 1..])[0].is_ok());
    assert_eq!(outbox(&app).await[0].state, "delivered");
    assert!(succeeds(run_admin(dir, &["webhooks"]).await).contains("0 undelivered webhook(s)"));

    // Even a delivered event can be sent again; an unknown id is refused.
    succeeds(run_admin(dir, &[&["redeliver", id.as_str()][..], &flags].concat()).await);
    assert_eq!(receiver.received().len(), attempts + 2);
    let missing = fails(run_admin(dir, &[&["redeliver", "999999"][..], &flags].concat()).await);
    assert!(
        missing.contains("webhook delivery 999999 does not exist"),
        "{missing}"
    );
    let unsigned = fails(run_admin(dir, &["redeliver", id.as_str()]).await);
    assert!(unsigned.contains("--webhook-secret"), "{unsigned}");
}

#[tokio::test]
async fn a_410_gone_stops_the_retries_at_once() {
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(410)]);
    let app = app_with_webhooks(&[&receiver.url], |_| {}).await;
    let user = app.user().await;
    app.start_live(&user, "unwanted").await;
    let rows = outbox_until(&app, "failed", |rows| rows[0].state == "failed").await;
    assert_eq!(rows[0].attempts, 1);
    assert!(rows[0]
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("HTTP 410"));
}

#[tokio::test]
async fn without_receivers_no_event_is_written() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.user().await;
    app.recorded_post(&user, "quiet").await;
    assert!(outbox(&app).await.is_empty());
}

/// Runs the binary with `args` and returns what it printed on stderr, asserting that it exits
/// with a failure (bounded: a server that started is killed and fails the test).
async fn refuses_to_start(data_dir: &Path, args: &[&str]) -> String {
    let mut command = ServerProcess::command(data_dir);
    command
        .args(args)
        .env_remove("LIVEKEEP_WEBHOOK_URLS")
        .env_remove("LIVEKEEP_WEBHOOK_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            return stderr;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started with {args:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_webhook_url_without_a_secret_or_a_malformed_secret_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let no_secret =
        refuses_to_start(dir.path(), &["--webhook-url", "http://127.0.0.1:9/hook"]).await;
    assert!(
        no_secret.contains("--webhook-url needs --webhook-secret"),
        "{no_secret}"
    );
    let malformed = refuses_to_start(
        dir.path(),
        &[
            "--webhook-url",
            "http://127.0.0.1:9/hook",
            "--webhook-secret",
            "hunter2",
        ],
    )
    .await;
    assert!(
        malformed.contains("does not start with whsec_"),
        "{malformed}"
    );
}

#[tokio::test]
async fn a_server_killed_right_after_committing_a_stop_sends_live_ended_after_its_restart() {
    let receiver = Receiver::start().await;
    let data_dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let settings = [
        ("LIVEKEEP_WEBHOOK_URLS", receiver.url.as_str()),
        ("LIVEKEEP_WEBHOOK_SECRET", SECRET),
    ];
    let crashing = [&settings[..], &[("LIVEKEEP_FAULT_POINT", "after_commit")]].concat();
    let mut server = start_server(data_dir.path(), &crashing).await;
    let (token, live_id, upload_url) =
        register_and_start_live(&client, &server, "crashed", "crash").await;
    receiver.wait_for_type("live.started", WAIT).await;
    let bytes = fixture();
    let patched = crate::crash::patch(&client, &server, &token, &upload_url, 0, &bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::NO_CONTENT);
    // The process dies once the stop's transaction (with its webhook) is committed.
    let stop = crate::crash::stop(&client, &server, &token, live_id, &upload_url, &bytes)
        .send()
        .await;
    assert!(stop.is_err(), "the stop was answered: {stop:?}");
    server.kill();
    assert!(
        receiver
            .received()
            .iter()
            .all(|r| r.json()["type"] != "live.ended"),
        "nothing was sent before the crash"
    );

    let server = start_server(data_dir.path(), &settings).await;
    let ended = receiver.wait_for_type("live.ended", WAIT).await;
    let payload = &verified(SECRET, std::slice::from_ref(&ended))[0];
    assert_eq!(payload["data"]["post"]["id"], live_id);
    assert_eq!(payload["data"]["post"]["live_status"], "ended");
    let post: Value = client
        .get(format!("{}/api/posts/{live_id}/", server.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(payload["data"]["media"]["id"], post["media_files"][0]["id"]);
    let ended_count = receiver
        .received()
        .iter()
        .filter(|r| r.json()["type"] == "live.ended")
        .count();
    assert_eq!(ended_count, 1);
}
