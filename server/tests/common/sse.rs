//! A Server-Sent Events connection read event by event, shared by the test binaries
//! (`#[path = "../common/sse.rs"] mod sse;` in each).

use std::{pin::Pin, time::Duration};

use futures_util::{Stream, StreamExt};
use serde_json::Value;

/// An open `text/event-stream` answer.
pub struct EventStream {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    buffer: String,
    /// How long one event may take to come: a bound, not a pace.
    wait: Duration,
}

impl EventStream {
    /// Sends `request` (a GET of a live's events), asserts a 200 `text/event-stream` answer and
    /// reads its events, each expected within `wait`.
    pub async fn open(request: reqwest::RequestBuilder, wait: Duration) -> Self {
        let response = request.send().await.expect("GET events");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self::new(response, wait)
    }

    /// Reads `response`'s body as events, each expected within `wait`.
    fn new(response: reqwest::Response, wait: Duration) -> Self {
        Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            wait,
        }
    }

    /// The next `(event name, JSON data)`, or `None` when the server closed the stream.
    pub async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // A keep-alive comment.
                }
                return Some((name, serde_json::from_str(&data).expect("JSON data")));
            }
            let chunk = tokio::time::timeout(self.wait, self.body.next())
                .await
                .expect("an event within the wait")?
                .expect("reading the event stream");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next event, which must be named `name`.
    #[allow(dead_code)] // Not every test binary asks for an exact sequence.
    pub async fn expect(&mut self, name: &str) -> Value {
        let (got, data) = self.next().await.expect("an open stream");
        assert_eq!(got, name, "{data}");
        data
    }

    /// Skips events until one named `name` satisfies `accept`.
    pub async fn wait_for(&mut self, name: &str, accept: impl Fn(&Value) -> bool) -> Value {
        loop {
            let (got, data) = self.next().await.expect("an open stream");
            if got == name && accept(&data) {
                return data;
            }
        }
    }
}
