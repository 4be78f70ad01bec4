//! A TCP proxy between the nodes and the object store, to make the store misbehave on demand:
//! gone silent (connections accepted, nothing answered), refusing connections, or taking a PUT
//! and losing its answer (the put lands, the node never hears of it).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Passes bytes both ways.
    Forward,
    /// Accepts connections and holds them without a byte either way, as a frozen store.
    Silent,
    /// Closes every new connection at once, as a stopped store would.
    Refuse,
    /// Passes requests on; once a connection carried a PUT, nothing more comes back on it.
    LoseAnswersToPuts,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    address: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (mode, watched) = watch::channel(Mode::Forward);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let watched = watched.clone();
                let upstream = upstream.clone();
                tokio::spawn(serve(client, upstream, watched));
            }
        });
        Self {
            address,
            mode,
            accept,
        }
    }

    /// `http://127.0.0.1:<port>`, the endpoint to give the nodes.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Switches mode; every open connection is cut, so the next requests meet the new mode.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Serves one connection in the mode of the moment, until it ends or the mode changes.
async fn serve(client: TcpStream, upstream: String, mut mode: watch::Receiver<Mode>) {
    let current = *mode.borrow_and_update();
    match current {
        // Closed at once, before a byte: the client's request fails as on a stopped store.
        Mode::Refuse => drop(client),
        Mode::Silent => {
            let _ = mode.changed().await;
        }
        Mode::Forward | Mode::LoseAnswersToPuts => {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let lose = current == Mode::LoseAnswersToPuts;
            tokio::select! {
                () = pump(client, server, lose) => {}
                _ = mode.changed() => {}
            }
        }
    }
}

/// Copies bytes both ways; with `lose`, drops the answers once a PUT went up.
async fn pump(client: TcpStream, server: TcpStream, lose: bool) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let put_seen = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&put_seen);
    let up = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // A request line starts a request: the client sends the next one only after the
            // answer to the previous one (no pipelining), so a PUT is seen before its answer.
            if lose && buf[..n].windows(5).any(|w| w == b"PUT /") {
                seen.store(true, Ordering::SeqCst);
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from_server.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if put_seen.load(Ordering::SeqCst) {
                continue;
            }
            if to_client.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Until both directions end: a lost answer keeps the connection open and silent.
    tokio::join!(up, down);
}
