//! A progressive HTTP body read as it arrives, shared by the test binaries
//! (`#[path = "../common/stream_body.rs"] mod stream_body;` in each).

use std::time::Duration;

use futures_util::{Stream, StreamExt};

/// Reads a progressive body until `into` holds `len` bytes, each piece expected within `wait`.
pub async fn read_at_least(
    body: &mut (impl Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin),
    into: &mut Vec<u8>,
    len: usize,
    wait: Duration,
) {
    while into.len() < len {
        let chunk = tokio::time::timeout(wait, body.next())
            .await
            .expect("bytes within the wait")
            .expect("the stream is open")
            .unwrap();
        into.extend_from_slice(&chunk);
    }
}
