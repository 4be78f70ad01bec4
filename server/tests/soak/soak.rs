//! Load and soak: 200 event-stream viewers and 20 recorders at 2.5 Mbit/s each, on loopback
//! against the in-process server, for `LIVEKEEP_SOAK_SECONDS` (60 unless set).

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::helpers::{cluster_starts, fixture, spawn_app, TestApp, EVENT_WAIT};

const RECORDERS: usize = 20;
const VIEWERS: usize = 200;
/// Lives the viewers are spread over.
const WATCHED_LIVES: usize = 4;
/// One second of a 2.5 Mbit/s recording.
const CHUNK_BYTES: usize = 2_500_000 / 8;
/// How much the process may grow during the soak. The server runs in this test process, so
/// the figure also holds the 220 clients, the other tests running beside this one, and the
/// allocator's retained pages; a leak of the uploads themselves (20 × 305 KiB a second, so
/// ~360 MiB over 60 s) or of per-viewer buffers would exceed it.
const RSS_GROWTH_BOUND: u64 = 200 << 20;

fn soak_seconds() -> u64 {
    std::env::var("LIVEKEEP_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// This process's resident set, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Whole clusters of the fixture repeated to about one second of 2.5 Mbit/s, so every chunk
/// after the first keeps the recording a sequence of complete WebM elements.
fn one_second_of_clusters(webm: &[u8]) -> axum::body::Bytes {
    let first = cluster_starts(webm)[0];
    let clusters = &webm[first..];
    let mut chunk = Vec::with_capacity(CHUNK_BYTES + clusters.len());
    while chunk.len() < CHUNK_BYTES {
        chunk.extend_from_slice(clusters);
    }
    chunk.into()
}

/// An error with its causes: reqwest's own message alone ("error sending request") does not
/// say whether the connection was reset, closed or timed out.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads a live's event stream until told to stop; the bytes it received, or the error.
async fn view(
    app: Arc<TestApp>,
    live_id: i64,
    n: usize,
    mut done: watch::Receiver<bool>,
) -> Result<usize, String> {
    let response = app
        .request(
            Method::GET,
            &format!("/api/posts/live/{live_id}/events?viewer_id=soak-viewer-{n:05}"),
            None,
        )
        .send()
        .await
        .map_err(|e| format!("viewer {n}: {}", chain(&e)))?;
    if response.status() != StatusCode::OK {
        return Err(format!("viewer {n}: {}", response.status()));
    }
    let mut body = response.bytes_stream();
    let mut received = 0;
    loop {
        tokio::select! {
            _ = done.changed() => return Ok(received),
            chunk = body.next() => match chunk {
                Some(Ok(bytes)) => received += bytes.len(),
                Some(Err(e)) => return Err(format!("viewer {n}: {}", chain(&e))),
                None => return Ok(received),
            },
        }
    }
}

/// Starts a live, PATCHes one chunk a second for `seconds`, stops it, and checks the Media's
/// `original_sha256` against every byte sent.
async fn record(
    app: Arc<TestApp>,
    n: usize,
    first: Arc<Vec<u8>>,
    chunk: axum::body::Bytes,
    seconds: u64,
    live: tokio::sync::oneshot::Sender<i64>,
) -> Result<u64, String> {
    let user = app.user().await;
    let started = app.start_live(&user, &format!("soak {n}")).await;
    let _ = live.send(started.id);
    let mut hash = Sha256::new();
    let mut offset = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for second in 0..seconds {
        tick.tick().await;
        let body = if second == 0 {
            axum::body::Bytes::from(first.to_vec())
        } else {
            chunk.clone()
        };
        let len = body.len() as u64;
        hash.update(&body);
        let response = app
            .patch_request(&user.token, &started.upload_url, offset)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("recorder {n} second {second}: {}", chain(&e)))?;
        if response.status() != StatusCode::NO_CONTENT {
            return Err(format!(
                "recorder {n} second {second}: {}",
                response.status()
            ));
        }
        offset += len;
        let acknowledged = response
            .headers()
            .get("upload-offset")
            .and_then(|v| v.to_str().ok());
        if acknowledged != Some(offset.to_string().as_str()) {
            return Err(format!(
                "recorder {n}: offset {acknowledged:?}, expected {offset}"
            ));
        }
    }
    let sha256 = hex::encode(hash.finalize());
    let stopped = app
        .stop(
            &user.token,
            started.id,
            json!({
                "upload_url": started.upload_url,
                "duration": seconds as f64,
                "size": offset,
                "sha256": sha256,
                "mime_type": "video/webm;codecs=vp8,opus",
                "live_id": started.id,
            }),
        )
        .await;
    if stopped.status() != StatusCode::OK {
        let status = stopped.status();
        let body = stopped.text().await.unwrap_or_default();
        return Err(format!("recorder {n} stop: {status} {body}"));
    }
    let post: Value = stopped.json().await.map_err(|e| e.to_string())?;
    let media = &post["media_files"][0];
    if media["original_sha256"] != sha256.as_str() {
        return Err(format!(
            "recorder {n}: stored {} != sent {sha256}",
            media["original_sha256"]
        ));
    }
    Ok(offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_viewers_and_twenty_recorders_at_2_5_mbit_lose_nothing_and_memory_stays_bounded(
) {
    let seconds = soak_seconds().max(2);
    let app = Arc::new(spawn_app().await);
    let first = Arc::new(fixture());
    let chunk = one_second_of_clusters(&first);

    let mut recorders = Vec::new();
    let mut live_ids = Vec::new();
    for n in 0..RECORDERS {
        let (tx, rx) = tokio::sync::oneshot::channel();
        recorders.push(tokio::spawn(record(
            Arc::clone(&app),
            n,
            Arc::clone(&first),
            chunk.clone(),
            seconds,
            tx,
        )));
        live_ids.push(rx);
    }
    let mut watched = Vec::new();
    for rx in live_ids.into_iter().take(WATCHED_LIVES) {
        watched.push(rx.await.expect("a live started"));
    }
    let (done, done_rx) = watch::channel(false);
    let viewers: Vec<_> = (0..VIEWERS)
        .map(|n| {
            tokio::spawn(view(
                Arc::clone(&app),
                watched[n % WATCHED_LIVES],
                n,
                done_rx.clone(),
            ))
        })
        .collect();
    let rss_before = rss_bytes();

    let mut errors = Vec::new();
    let mut uploaded = 0;
    for recorder in recorders {
        match recorder.await.expect("recorder task") {
            Ok(bytes) => uploaded += bytes,
            Err(e) => errors.push(e),
        }
    }
    let rss_after = rss_bytes();
    let _ = done.send(true);
    for viewer in viewers {
        match tokio::time::timeout(EVENT_WAIT, viewer).await {
            Ok(Ok(Ok(received))) if received > 0 => {}
            Ok(Ok(Ok(_))) => errors.push("a viewer received nothing".to_owned()),
            Ok(Ok(Err(e))) => errors.push(e),
            Ok(Err(e)) => errors.push(format!("viewer task: {e}")),
            Err(_) => errors.push("a viewer did not finish".to_owned()),
        }
    }
    assert!(errors.is_empty(), "{} errors: {errors:#?}", errors.len());
    let expected = RECORDERS as u64 * (first.len() as u64 + (seconds - 1) * chunk.len() as u64);
    assert_eq!(uploaded, expected);
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!(
        "soak: {} MiB uploaded, RSS {} -> {} MiB",
        uploaded >> 20,
        rss_before >> 20,
        rss_after >> 20
    );
    assert!(
        growth < RSS_GROWTH_BOUND,
        "RSS grew by {} MiB ({} -> {} MiB) over {seconds} s",
        growth >> 20,
        rss_before >> 20,
        rss_after >> 20
    );
}
