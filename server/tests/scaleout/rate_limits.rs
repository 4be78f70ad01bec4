//! The login and chat limits hold for the cluster: requests alternating between the nodes, or
//! sent to both at once, are refused at the count one node allows.

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::harness::{Cluster, Node};

async fn login(node: &Node, username: &str, password: &str) -> Response {
    node.request(Method::POST, "/api/auth/login", None)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Asserts a 429 `rate_limited` whose `Retry-After` is within `1..=max_secs`.
async fn assert_limited(response: Response, max_secs: u64, what: &str) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{what}");
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=max_secs).contains(&retry),
        "{what}: Retry-After {retry}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{what}");
}

#[tokio::test]
async fn ten_failed_logins_alternating_between_nodes_block_the_name_on_both() {
    let cluster = Cluster::start(&[]).await;
    cluster.a().register("target").await;
    cluster.b().register("bystander").await;
    for i in 0..10 {
        let response = login(&cluster.nodes[i % 2], "target", "wrong-password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    for (i, node) in cluster.nodes.iter().enumerate() {
        let response = login(node, "TARGET", "password123").await;
        assert_limited(response, 300, &format!("node {i}")).await;
    }
    // The address has 10 failures of its 50: other names still sign in on either node.
    for node in &cluster.nodes {
        assert_eq!(
            login(node, "bystander", "password123").await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn fifty_failed_logins_from_one_address_alternating_between_nodes_block_it_on_both() {
    let cluster = Cluster::start(&[]).await;
    cluster.a().register("regular").await;
    // Five failures on each of ten names: no name reaches its own limit of ten.
    for n in 0..50 {
        let node = &cluster.nodes[n % 2];
        let response = login(node, &format!("guess{}", n % 10), "wrong-password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    for (i, node) in cluster.nodes.iter().enumerate() {
        let response = login(node, "regular", "password123").await;
        assert_limited(response, 300, &format!("node {i}")).await;
    }
}

#[tokio::test]
async fn failed_logins_sent_to_both_nodes_at_once_check_at_most_ten_passwords() {
    let cluster = Cluster::start(&[]).await;
    cluster.a().register("raced").await;
    let attempts = (0..24).map(|i| login(&cluster.nodes[i % 2], "raced", "wrong-password"));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(Response::status)
        .collect();
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + refused, statuses.len(), "{statuses:?}");
    // Attempts in progress count as failures for each other, so a burst may be refused whole.
    assert!(checked <= 10, "{checked} passwords checked");
}

#[tokio::test]
async fn chat_messages_alternating_between_nodes_hit_the_one_node_limit() {
    let cluster = Cluster::start(&[]).await;
    let host = cluster.a().register("chathost").await;
    let fan = cluster.b().register("chatfan").await;
    let (live_id, _) = cluster.a().start_live(&host, "limits").await;
    for i in 0..5 {
        let response = &cluster.nodes[i % 2]
            .send_chat(&fan, live_id, &format!("m{i}"))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "message {i}");
    }
    for (i, node) in cluster.nodes.iter().enumerate() {
        let response = node.send_chat(&fan, live_id, "one more").await;
        assert_limited(response, 10, &format!("node {i}")).await;
    }
    // The limit is the fan's: the host still posts on either node.
    for node in &cluster.nodes {
        let response = node.send_chat(&host, live_id, "host").await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}

#[tokio::test]
async fn chat_messages_sent_to_both_nodes_at_once_land_five_and_no_more() {
    let cluster = Cluster::start(&[]).await;
    let host = cluster.a().register("bursthost").await;
    let fan = cluster.b().register("burstfan").await;
    let (live_id, _) = cluster.a().start_live(&host, "burst").await;
    let messages = (0..12).map(|i| cluster.nodes[i % 2].send_chat(&fan, live_id, "burst"));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(messages)
        .await
        .iter()
        .map(Response::status)
        .collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 5, "{statuses:?}: {}", cluster.logs());
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let post = cluster.b().get_json(&format!("/api/posts/{live_id}")).await;
    assert_eq!(post["chat_message_count"], 5);
}
