//! Webhooks from two nodes on one PostgreSQL: each event is sent by one node (exactly once
//! while the nodes are healthy), and a node killed mid-attempt leaves it to the other.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use reqwest::StatusCode;

use crate::{
    fixtures::fixture,
    harness::{Cluster, Node, Postgres, SharedStorage, WAIT},
    receiver::{Answer, Receiver},
    verifier::verified,
};

const SECRET: &str = "whsec_dGVzdC1zZWNyZXQtZm9yLWxpdmVrZWVwLXdlYmhvb2tzIQ==";

/// How long a claim holds a row (the server's `webhooks::delivery::LEASE`).
const LEASE: Duration = Duration::from_secs(30);

/// Waits until every outbox row is delivered; returns the rows' attempt counts.
async fn all_delivered(postgres: &Postgres) -> Vec<i64> {
    let pool = postgres.pool().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, attempts FROM webhook_outbox ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        if !rows.is_empty() && rows.iter().all(|(state, _)| state == "delivered") {
            return rows.into_iter().map(|(_, attempts)| attempts).collect();
        }
        assert!(Instant::now() < deadline, "not all delivered: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_nodes_deliver_each_event_exactly_once() {
    let receiver = Receiver::start().await;
    // A slow receiver: both nodes' delivery tasks are busy at once and claim side by side.
    receiver.slow(Duration::from_millis(150));
    let flags = ["--webhook-url", &receiver.url, "--webhook-secret", SECRET];
    let cluster = Cluster::start(&flags).await;
    let token = cluster.a().register("hooked").await;
    let mut lives = Vec::new();
    for i in 0..8 {
        let node = &cluster.nodes[i % 2];
        lives.push(node.start_live(&token, &format!("live {i}")).await);
    }
    let bytes = fixture();
    for (i, (live_id, upload_url)) in lives.iter().take(4).enumerate() {
        let node = &cluster.nodes[(i + 1) % 2];
        let patched = node.patch(&token, upload_url, 0, &bytes).await;
        assert_eq!(patched.status(), StatusCode::NO_CONTENT);
        let stopped = node.stop(&token, *live_id, upload_url, &bytes).await;
        assert_eq!(stopped.status(), StatusCode::OK, "{}", cluster.logs());
    }

    let events = 8 + 4;
    receiver.wait_for(events, WAIT).await;
    let attempts = all_delivered(&cluster.postgres).await;
    assert_eq!(attempts, vec![1; events], "{}", cluster.logs());
    // Past a poll of both nodes: a duplicate would have come by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = receiver.received();
    assert_eq!(received.len(), events, "{}", cluster.logs());
    let ids: BTreeSet<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), events, "each event once");
    let payloads = verified(SECRET, &received);
    let ended = payloads
        .iter()
        .filter(|p| p["type"] == "live.ended")
        .count();
    assert_eq!(ended, 4);
}

#[tokio::test]
async fn an_attempt_cut_by_a_node_killed_is_made_again_by_the_other_node_after_the_lease() {
    let postgres = Postgres::start();
    let storage = SharedStorage::new().await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::Hang]);
    let flags = ["--webhook-url", &receiver.url, "--webhook-secret", SECRET];
    let mut a = Node::start(&postgres.url(), &storage.url(), &flags).await;
    let token = a.register("orphaned").await;
    a.start_live(&token, "cut short").await;
    let first = receiver.wait_for(1, WAIT).await;
    // A holds the row and waits for an answer that never comes; it dies mid-attempt.
    a.kill();

    let b = Node::start(&postgres.url(), &storage.url(), &flags).await;
    let received = receiver.wait_for(2, LEASE + WAIT).await;
    assert_eq!(
        received[1].header("webhook-id"),
        first[0].header("webhook-id"),
        "{}",
        b.log()
    );
    let waited = received[1].at - received[0].at;
    assert!(
        waited >= LEASE - Duration::from_secs(2),
        "retried after {waited:?}"
    );
    verified(SECRET, &received);
    // The cut attempt was never recorded: the row took one recorded attempt.
    assert_eq!(all_delivered(&postgres).await, vec![1]);
}
