//! A webhook receiver for tests: an HTTP server on loopback that records every request it gets
//! and answers as the test scripts it (204 when nothing is scripted).

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use tokio::{net::TcpListener, sync::Notify, task::JoinHandle};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The raw body.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// This status at once.
    Status(u16),
    /// Never answer (the sender's timeout ends it).
    Hang,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Answer>>,
    /// Answer given once the script is empty.
    otherwise: Mutex<Option<u16>>,
    /// How long every answer takes.
    delay: Mutex<Duration>,
    arrived: Notify,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on `address` (a port a test reserved, to start late).
    pub async fn start_on(address: SocketAddr) -> Self {
        let listener = TcpListener::bind(address)
            .await
            .expect("binding a receiver");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            shared,
            task,
        }
    }

    /// A loopback address where nothing listens now (a receiver may start there later).
    pub fn reserve_address() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
    }

    /// The URL a receiver started on `address` will have.
    pub fn url_at(address: SocketAddr) -> String {
        format!("http://{address}/hook")
    }

    /// Queues answers for the next requests, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared.script.lock().unwrap().extend(answers);
    }

    /// The status given once the script is empty (204 unless set).
    pub fn otherwise(&self, status: u16) {
        *self.shared.otherwise.lock().unwrap() = Some(status);
    }

    /// Makes every answer take `delay` (a slow receiver).
    pub fn slow(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived (panics after `bound`); returns them all.
    pub async fn wait_for(&self, count: usize, bound: Duration) -> Vec<Received> {
        let deadline = Instant::now() + bound;
        loop {
            let arrived = self.shared.arrived.notified();
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the receiver got {} request(s), expected {count}: {:#?}",
                received.len(),
                received.iter().map(|r| &r.body).collect::<Vec<_>>()
            );
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }

    /// Waits for a request whose event `type` is `event_type`; returns the first.
    pub async fn wait_for_type(&self, event_type: &str, bound: Duration) -> Received {
        let deadline = Instant::now() + bound;
        loop {
            let arrived = self.shared.arrived.notified();
            if let Some(found) = self
                .received()
                .into_iter()
                .find(|r| r.json()["type"] == event_type)
            {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {event_type} arrived; got {:#?}",
                self.received().iter().map(|r| &r.body).collect::<Vec<_>>()
            );
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let headers = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    // The n-th request recorded gets the n-th scripted answer: both are taken under one lock,
    // before any wait. Taken after the delay, a request that arrived later could overtake an
    // earlier one still sleeping and take its answer (a test then saw its `Hang` land on the
    // retry instead of the first attempt).
    let answer = {
        let mut received = shared.received.lock().unwrap();
        received.push(Received {
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        });
        shared.script.lock().unwrap().pop_front()
    };
    shared.arrived.notify_waiters();
    let delay = *shared.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let status = match answer {
        Some(Answer::Status(status)) => status,
        Some(Answer::Hang) => std::future::pending().await,
        None => shared.otherwise.lock().unwrap().unwrap_or(204),
    };
    StatusCode::from_u16(status).unwrap().into_response()
}
