//! A node with the smallest coordination pool still answers and tells the other nodes while a
//! PATCH holds a lock as long as it likes, and many stops at once (each holding a lock while it
//! takes another) all finish: a held lock holds no connection (finding 5 of bench/findings.md,
//! where it did and the pool deadlocked, and finding 6).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::sync::mpsc;

use crate::{fixtures::fixture, harness::Cluster};

/// A prompt answer; a nested wait for a pooled connection used to cost the 10 s acquire timeout.
const PROMPT: Duration = Duration::from_secs(5);

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
async fn with_every_coordination_connection_held_a_patch_and_a_chat_reach_the_other_node() {
    // Three connections: the listener's and two lock sessions, for a PATCH whose body stalls
    // and the requests under test.
    let cluster = Cluster::start(&["--coordination-connections", "3"]).await;
    let bytes = fixture();
    let token = cluster.a().register("pressed").await;
    let (_, stalled_url) = cluster.a().start_live(&token, "stalled").await;
    let (live_id, upload_url) = cluster.a().start_live(&token, "answered").await;
    let mut viewer = cluster.b().events(live_id, "viewer_id=viewer-0001").await;

    let (feed, body) = fed_body();
    feed.send(bytes[..1000].to_vec()).await.unwrap();
    let stalled = tokio::spawn(
        cluster
            .a()
            .request(Method::PATCH, &stalled_url, Some(&token))
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", "0")
            .header("Content-Length", bytes.len().to_string())
            .body(body)
            .send(),
    );
    // It holds its lock once another PATCH of that upload is refused for it (at a wrong
    // offset, which a free upload refuses at once without writing).
    let holding = Instant::now();
    loop {
        let probe = cluster.a().patch(&token, &stalled_url, 1, &[]).await;
        match probe.status() {
            StatusCode::LOCKED => break,
            StatusCode::CONFLICT if holding.elapsed() < crate::harness::WAIT => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("probe: {other} {}", cluster.logs()),
        }
    }

    // Another PATCH takes its own lock, then announces its commit.
    let started = Instant::now();
    let answered = cluster.a().patch(&token, &upload_url, 0, &bytes).await;
    let took = started.elapsed();
    assert_eq!(
        answered.status(),
        StatusCode::NO_CONTENT,
        "{}",
        cluster.logs()
    );
    assert!(took < PROMPT, "answered after {took:?}: {}", cluster.logs());
    let started = Instant::now();
    cluster.a().chat(&token, live_id, "still heard").await;
    let heard = viewer
        .wait_for("chat", |m| m["body"] == "still heard")
        .await;
    assert_eq!(heard["body"], "still heard");
    assert!(
        started.elapsed() < PROMPT,
        "heard after {:?}",
        started.elapsed()
    );

    // The stalled PATCH completes once fed: nothing was lost on either upload.
    feed.send(bytes[1000..].to_vec()).await.unwrap();
    drop(feed);
    let completed = stalled.await.unwrap().unwrap();
    assert_eq!(completed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        cluster.b().head_offset(&token, &stalled_url).await,
        bytes.len()
    );
    assert_eq!(
        cluster.b().head_offset(&token, &upload_url).await,
        bytes.len()
    );
}

#[tokio::test]
async fn many_stops_at_once_on_a_small_coordination_pool_all_finish() {
    // Each stop holds its live's lock while it takes its upload's: when a lock held a pooled
    // connection, two stops holding one each waited for each other's.
    let cluster = Cluster::start(&["--coordination-connections", "3"]).await;
    let bytes = fixture();
    let token = cluster.a().register("many").await;
    let mut lives = Vec::new();
    for n in 0..6 {
        let (live_id, upload_url) = cluster.a().start_live(&token, &format!("live {n}")).await;
        let response = cluster.a().patch(&token, &upload_url, 0, &bytes).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        lives.push((live_id, upload_url));
    }
    let started = Instant::now();
    let stops = lives
        .iter()
        .map(|(live_id, upload_url)| cluster.a().stop(&token, *live_id, upload_url, &bytes));
    for answer in futures_util::future::join_all(stops).await {
        assert_eq!(answer.status(), StatusCode::OK, "{}", cluster.logs());
    }
    let took = started.elapsed();
    assert!(
        took < 2 * PROMPT,
        "stopped after {took:?}: {}",
        cluster.logs()
    );
}
