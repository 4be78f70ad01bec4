//! Two `livekeep` nodes sharing one real PostgreSQL 15 and one storage, as behind a load
//! balancer: any node serves any request of any upload or live.
//!
//! Needs PostgreSQL 15's server programs (Debian's `postgresql-15`, see scripts/bootstrap.sh)
//! and root (the cluster runs as the `postgres` user). `LIVEKEEP_TEST_STORAGE=s3` shares a
//! bucket of a `moto_server` instead of a directory. `faults.rs` breaks the store and the
//! database under a live.

mod coordination;
#[path = "../common/emulator.rs"]
mod emulator;
mod faults;
#[path = "../common/fixtures.rs"]
mod fixtures;
mod harness;
#[path = "../common/process.rs"]
mod process;
mod proxy;
mod rate_limits;
#[allow(dead_code)] // Shared with the API tests, which use more of it.
#[path = "../common/receiver.rs"]
mod receiver;
#[allow(dead_code)] // Shared with the API tests, which use more of it.
#[path = "../api/s3.rs"]
mod s3;
#[path = "../common/sse.rs"]
mod sse;
#[path = "../common/stream_body.rs"]
mod stream_body;
#[path = "../common/verifier.rs"]
mod verifier;
mod webhooks;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use fixtures::{cluster_starts, fixture, sha256_hex};
use harness::{Cluster, WAIT};
use stream_body::read_at_least;

const ALICE: &str = "viewer_id=alice-0001";
const BOB: &str = "viewer_id=bob-00002";

fn viewers(counts: &Value) -> i64 {
    counts["viewers"].as_i64().unwrap()
}

#[tokio::test]
async fn patches_alternating_between_nodes_make_a_byte_exact_recording() {
    let cluster = Cluster::start(&[]).await;
    let bytes = fixture();
    let token = cluster.a().register("alternate").await;
    let (live_id, upload_url) = cluster.a().start_live(&token, "alternate").await;

    let mut offset = 0;
    for (i, chunk) in bytes.chunks(2500).enumerate() {
        let node = &cluster.nodes[i % 2];
        let response = node.patch(&token, &upload_url, offset, chunk).await;
        assert_eq!(
            response.status(),
            StatusCode::NO_CONTENT,
            "PATCH {i} at {offset}: {}",
            cluster.logs()
        );
        offset += chunk.len();
        assert_eq!(
            response.headers()["upload-offset"],
            offset.to_string().as_str()
        );
    }
    for node in &cluster.nodes {
        assert_eq!(node.head_offset(&token, &upload_url).await, bytes.len());
    }
    let stopped = cluster.b().stop(&token, live_id, &upload_url, &bytes).await;
    assert_eq!(stopped.status(), StatusCode::OK, "{}", cluster.logs());
    let post: Value = stopped.json().await.unwrap();
    assert_eq!(
        post["media_files"][0]["original_sha256"],
        sha256_hex(&bytes).as_str()
    );
}

#[tokio::test]
async fn a_patch_on_one_node_holds_the_upload_against_the_other_node() {
    let cluster = Cluster::start(&[]).await;
    let bytes = fixture();
    let token = cluster.a().register("contended").await;
    let (live_id, upload_url) = cluster.a().start_live(&token, "contended").await;
    let half = bytes.len() / 2;

    // A slow body on A: the upload's lock is held while it trickles in.
    let (first, second) = (bytes[..half / 2].to_vec(), bytes[half / 2..half].to_vec());
    let slow = futures_util::stream::iter([first, second])
        .then(|piece| async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<_, std::io::Error>(piece)
        })
        .boxed();
    let on_a = cluster
        .a()
        .request(Method::PATCH, &upload_url, Some(&token))
        .header("Tus-Resumable", "1.0.0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", "0")
        .body(reqwest::Body::wrap_stream(slow))
        .send();
    let on_a = tokio::spawn(on_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The same offset through B waits for A's PATCH, then finds the offset moved.
    let on_b = cluster
        .b()
        .patch(&token, &upload_url, 0, &bytes[..half])
        .await;
    let on_a = on_a.await.unwrap().unwrap();
    // A got the lock first unless the machine is very slow; either way exactly one wins.
    let mut statuses = [on_a.status(), on_b.status()];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::NO_CONTENT, StatusCode::CONFLICT],
        "{}",
        cluster.logs()
    );

    let rest = cluster
        .b()
        .patch(&token, &upload_url, half, &bytes[half..])
        .await;
    assert_eq!(rest.status(), StatusCode::NO_CONTENT);
    let stopped = cluster.a().stop(&token, live_id, &upload_url, &bytes).await;
    assert_eq!(stopped.status(), StatusCode::OK, "{}", cluster.logs());
}

#[tokio::test]
async fn stopping_on_b_finalizes_the_upload_written_through_a() {
    let cluster = Cluster::start(&[]).await;
    let bytes = fixture();
    let token = cluster.a().register("stopper").await;
    let (live_id, upload_url) = cluster.a().start_live(&token, "stop on b").await;
    let mut offset = 0;
    for chunk in bytes.chunks(4000) {
        let response = cluster.a().patch(&token, &upload_url, offset, chunk).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        offset += chunk.len();
    }
    let stopped = cluster.b().stop(&token, live_id, &upload_url, &bytes).await;
    assert_eq!(stopped.status(), StatusCode::OK, "{}", cluster.logs());
    let post: Value = stopped.json().await.unwrap();
    assert_eq!(post["live_status"], "ended");
    assert_eq!(
        post["media_files"][0]["original_sha256"],
        sha256_hex(&bytes).as_str()
    );
    // Either node serves it afterwards.
    let again = cluster.a().get_json(&format!("/api/posts/{live_id}")).await;
    assert_eq!(again["media_files"], post["media_files"]);
}

#[tokio::test]
async fn viewers_on_either_node_see_each_others_chat_and_the_summed_counts() {
    let cluster = Cluster::start(&[]).await;
    let host = cluster.a().register("roomhost").await;
    let guest = cluster.b().register("roomguest").await;
    let (live_id, upload_url) = cluster.a().start_live(&host, "two rooms").await;

    let mut alice = cluster.a().events(live_id, ALICE).await;
    let mut bob = cluster.b().events(live_id, BOB).await;
    let seen_by_alice = alice.wait_for("viewers", |c| viewers(c) == 2).await;
    let seen_by_bob = bob.wait_for("viewers", |c| viewers(c) == 2).await;
    assert_eq!(seen_by_alice["peak_viewers"], 2);
    assert_eq!(seen_by_bob["peak_viewers"], 2);

    let sent = cluster.a().chat(&host, live_id, "hello from A").await;
    let got = bob.wait_for("chat", |_| true).await;
    assert_eq!(got, sent, "the chat event on B is the message sent on A");
    let sent = cluster.b().chat(&guest, live_id, "hello from B").await;
    let got = alice
        .wait_for("chat", |m| m["body"] == "hello from B")
        .await;
    assert_eq!(got, sent);

    drop(bob);
    alice.wait_for("viewers", |c| viewers(c) == 1).await;

    // The end reaches a viewer of the other node too.
    let mut carol = cluster.b().events(live_id, "viewer_id=carol-0003").await;
    carol.wait_for("viewers", |c| viewers(c) == 2).await;
    let bytes = fixture();
    let response = cluster.a().patch(&host, &upload_url, 0, &bytes).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let stopped = cluster.a().stop(&host, live_id, &upload_url, &bytes).await;
    assert_eq!(stopped.status(), StatusCode::OK, "{}", cluster.logs());
    let ended = carol.wait_for("ended", |_| true).await;
    assert_eq!(ended["id"], live_id);
    assert!(
        carol.next().await.is_none(),
        "the stream closes after `ended`"
    );
}

#[tokio::test]
async fn a_stream_on_b_follows_the_upload_written_through_a() {
    let cluster = Cluster::start(&[]).await;
    let token = cluster.a().register("streamer").await;
    let (live_id, upload_url) = cluster.a().start_live(&token, "stream across").await;
    let bytes = fixture();
    let clusters = cluster_starts(&bytes);
    let first = clusters[2] + 100;
    let response = cluster
        .a()
        .patch(&token, &upload_url, 0, &bytes[..first])
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let response = cluster
        .b()
        .request(
            Method::GET,
            &format!("/api/posts/live/{live_id}/stream"),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = Box::pin(response.bytes_stream());
    let mut got = Vec::new();
    read_at_least(&mut body, &mut got, 4, WAIT).await;
    assert_eq!(&got[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
    let header_len = cluster_starts(&got).first().copied().unwrap_or(got.len());
    let live_edge = clusters[2] - clusters[1];
    read_at_least(&mut body, &mut got, header_len + live_edge, WAIT).await;
    assert_eq!(&got[header_len..], &bytes[clusters[1]..clusters[2]]);

    // B learns of A's commits from the notifications and reads the bytes from storage.
    let mut offset = first;
    for chunk in bytes[first..].chunks(3000) {
        let response = cluster.a().patch(&token, &upload_url, offset, chunk).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        offset += chunk.len();
    }
    let whole_stream = header_len + bytes.len() - clusters[1];
    read_at_least(&mut body, &mut got, whole_stream, WAIT).await;
    assert_eq!(&got[header_len..], &bytes[clusters[1]..]);
    let stopped = cluster.a().stop(&token, live_id, &upload_url, &bytes).await;
    assert_eq!(stopped.status(), StatusCode::OK, "{}", cluster.logs());
    let end = tokio::time::timeout(WAIT, body.next())
        .await
        .expect("the end");
    assert!(end.is_none(), "B's stream ends with the live stopped on A");
}

#[tokio::test]
async fn killing_a_node_mid_live_loses_no_acknowledged_byte() {
    let mut cluster = Cluster::start(&[]).await;
    let bytes = fixture();
    let chunks: Vec<&[u8]> = bytes.chunks(3000).collect();
    let token = cluster.a().register("survivor").await;
    let (live_id, upload_url) = cluster.a().start_live(&token, "kill a").await;
    let mut alice = cluster.a().events(live_id, ALICE).await;
    let mut bob = cluster.b().events(live_id, BOB).await;
    bob.wait_for("viewers", |c| viewers(c) == 2).await;
    alice.wait_for("viewers", |c| viewers(c) == 2).await;

    let mut acknowledged = 0;
    for chunk in &chunks[..5] {
        let response = cluster
            .a()
            .patch(&token, &upload_url, acknowledged, chunk)
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        acknowledged += chunk.len();
    }
    // A PATCH whose body is still arriving when A dies: it holds the upload's lock.
    let never_finished = futures_util::stream::iter([chunks[5].to_vec()])
        .chain(futures_util::stream::pending())
        .map(Ok::<_, std::io::Error>);
    let in_flight = cluster
        .a()
        .request(Method::PATCH, &upload_url, Some(&token))
        .header("Tus-Resumable", "1.0.0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", acknowledged.to_string())
        .body(reqwest::Body::wrap_stream(never_finished))
        .send();
    let in_flight = tokio::spawn(in_flight);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.nodes[0].kill();
    drop(alice);
    let _ = in_flight.await;

    // B resumes where A acknowledged: the dead node's lock went with its connection.
    let started = Instant::now();
    let resumed_at = cluster.b().head_offset(&token, &upload_url).await;
    assert_eq!(resumed_at, acknowledged);
    let mut offset = resumed_at;
    for chunk in bytes[resumed_at..].chunks(3000) {
        let response = cluster.b().patch(&token, &upload_url, offset, chunk).await;
        assert_eq!(
            response.status(),
            StatusCode::NO_CONTENT,
            "{}",
            cluster.logs()
        );
        offset += chunk.len();
    }
    assert!(started.elapsed() < WAIT, "B waited on a dead node's lock");
    // A's viewer stops counting once A stops announcing it.
    bob.wait_for("viewers", |c| viewers(c) == 1).await;

    let stopped = cluster.b().stop(&token, live_id, &upload_url, &bytes).await;
    assert_eq!(stopped.status(), StatusCode::OK, "{}", cluster.logs());
    let post: Value = stopped.json().await.unwrap();
    assert_eq!(
        post["media_files"][0]["original_sha256"],
        sha256_hex(&bytes).as_str()
    );
    bob.wait_for("ended", |_| true).await;
}

#[tokio::test]
async fn two_sweepers_and_two_stops_finalize_each_live_exactly_once() {
    let cluster = Cluster::start(&["--interrupt-after", "1"]).await;
    let bytes = fixture();
    let token = cluster.a().register("sweeping").await;
    let mut lives = Vec::new();
    for i in 0..6 {
        let (live_id, upload_url) = cluster.nodes[i % 2].start_live(&token, "silent").await;
        let response = cluster.nodes[(i + 1) % 2]
            .patch(&token, &upload_url, 0, &bytes)
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        lives.push((live_id, upload_url));
    }
    // Half of them are also stopped on both nodes at once, about when the sweepers find
    // them silent.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut stops = Vec::new();
    for (live_id, upload_url) in lives.iter().step_by(2) {
        for node in &cluster.nodes {
            stops.push(node.stop(&token, *live_id, upload_url, &bytes));
        }
    }
    for stopped in futures_util::future::join_all(stops).await {
        assert_eq!(stopped.status(), StatusCode::OK, "{}", cluster.logs());
    }

    let db = cluster.postgres.pool().await;
    let deadline = Instant::now() + WAIT;
    for (live_id, _) in &lives {
        loop {
            let post = cluster.b().get_json(&format!("/api/posts/{live_id}")).await;
            if post["live_status"] != "live" {
                assert_eq!(post["media_files"].as_array().map(Vec::len), Some(1));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "live {live_id} was never finalized"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let media: i64 = sqlx::query_scalar("SELECT count(*) FROM media WHERE live_post_id = $1")
            .bind(live_id)
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(media, 1, "live {live_id}");
        let states: Vec<String> =
            sqlx::query_scalar("SELECT state FROM uploads WHERE post_id = $1")
                .bind(live_id)
                .fetch_all(&db)
                .await
                .unwrap();
        assert_eq!(states, ["finalized"], "live {live_id}: {}", cluster.logs());
    }
    let logs = cluster.logs();
    assert!(!logs.contains("could not finalize"), "{logs}");
    assert_eq!(
        cluster.storage.media_count().await,
        lives.len(),
        "one stored recording per live"
    );
}

#[tokio::test]
async fn advisory_locks_exclude_other_nodes_and_die_with_their_connection() {
    use livekeep_server::locks::Locks;
    let postgres = harness::Postgres::start();
    let (one, two) = (postgres.pool().await, postgres.pool().await);
    let (node_a, node_b) = (Locks::postgres(one.clone()), Locks::postgres(two));

    let held = node_a.lock("upload:x").await.unwrap();
    assert!(node_b.try_lock("upload:x").await.unwrap().is_none());
    assert!(node_b.try_lock("upload:y").await.unwrap().is_some());
    let waited = node_b
        .lock_timeout("upload:x", Duration::from_millis(200))
        .await
        .unwrap();
    assert!(waited.is_none(), "taken twice");
    // Released on drop (in the background): a waiter on the other node gets it.
    drop(held);
    let again = node_b
        .lock_timeout("upload:x", WAIT)
        .await
        .unwrap()
        .expect("released");
    // A cancelled wait leaves nothing held.
    let cancelled = node_a
        .lock_timeout("upload:x", Duration::from_millis(50))
        .await;
    assert!(cancelled.unwrap().is_none());
    drop(again);
    let mut guard = node_a
        .lock_timeout("upload:x", WAIT)
        .await
        .unwrap()
        .unwrap();
    guard.ensure_held().await.unwrap();

    // A holder whose session dies (its node was killed) releases it.
    let holders: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted")
            .fetch_all(&one)
            .await
            .unwrap();
    assert_eq!(holders.len(), 1, "one advisory lock held");
    let other = postgres.pool().await;
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(holders[0])
        .execute(&other)
        .await
        .unwrap();
    assert!(node_b
        .lock_timeout("upload:x", WAIT)
        .await
        .unwrap()
        .is_some());
    // The former holder learns it before committing anything.
    assert!(guard.ensure_held().await.is_err());
}

#[tokio::test]
async fn a_node_starting_beside_running_ones_leaves_their_files_alone() {
    let cluster = Cluster::start(&[]).await;
    // What a finalization on a running node looks like between its file and its row.
    let key = "0123456789abcdef0123456789abcdef.webm";
    cluster
        .storage
        .put_media(key, b"row not yet committed")
        .await;
    let url = cluster.storage.url();

    let third = harness::Node::start(&cluster.postgres.url(), &url, &[]).await;
    assert!(cluster.storage.has_media(key).await, "{}", third.log());

    // Past the grace period, the same check deletes it.
    let graceless =
        harness::Node::start(&cluster.postgres.url(), &url, &["--orphan-grace", "0"]).await;
    assert!(!cluster.storage.has_media(key).await, "{}", graceless.log());
}

/// Ends every node's notification connection, as a PostgreSQL restart or a network cut would.
async fn cut_listeners(db: &sqlx::PgPool) {
    // A node listens soon after it starts, or after the last cut: wait for both.
    let deadline = Instant::now() + WAIT;
    let listening = loop {
        let pids: Vec<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %'")
                .fetch_all(db)
                .await
                .unwrap();
        if pids.len() == 2 || Instant::now() > deadline {
            break pids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(listening.len(), 2, "one listening connection per node");
    for pid in listening {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(db)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_node_that_lost_its_notifications_reconnects_and_catches_up() {
    let cluster = Cluster::start(&[]).await;
    let db = cluster.postgres.pool().await;
    let host = cluster.a().register("cuthost").await;
    let (live_id, upload_url) = cluster.a().start_live(&host, "cut").await;
    let bytes = fixture();
    let response = cluster.a().patch(&host, &upload_url, 0, &bytes).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let mut bob = cluster.b().events(live_id, BOB).await;
    bob.wait_for("viewers", |c| viewers(c) == 1).await;

    // Messages sent while B is reconnecting may be lost; once it listens again, they arrive.
    cut_listeners(&db).await;
    let deadline = Instant::now() + WAIT;
    let mut sent = 0;
    loop {
        sent += 1;
        let body = format!("after the cut {sent}");
        cluster.a().chat(&host, live_id, &body).await;
        let got = tokio::time::timeout(Duration::from_millis(500), bob.wait_for("chat", |_| true));
        if let Ok(message) = got.await {
            assert!(message["body"]
                .as_str()
                .unwrap()
                .starts_with("after the cut"));
            break;
        }
        assert!(Instant::now() < deadline, "B never heard from A again");
        // The chat limit allows 5 messages per 10 s.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // The end, announced while B is not listening (frozen, so it cannot reconnect in time),
    // is read from the database once it reconnects.
    cluster.b().signal("STOP");
    cut_listeners(&db).await;
    let stopped = cluster.a().stop(&host, live_id, &upload_url, &bytes).await;
    cluster.b().signal("CONT");
    assert_eq!(stopped.status(), StatusCode::OK, "{}", cluster.logs());
    let ended = bob.wait_for("ended", |_| true).await;
    assert_eq!(ended["id"], live_id);
}
