//! The accept loop: HTTP/1.1 over hyper with a header-read timeout, a keep-alive timeout and a
//! cap on open connections, so thousands of idle or half-sent connections cannot starve the rest.
//!
//! `axum::serve` gives hyper no timer (no header-read timeout) and accepts without bound; this
//! loop does what it did otherwise: the peer address as `ConnectInfo`, graceful shutdown that
//! stops accepting and waits for open connections to finish.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    response::Response,
};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{watch, Semaphore},
};
use tower::{Service, ServiceExt};

use crate::metrics::Metrics;

mod wait_clock;
pub mod zero_copy;
use wait_clock::{WaitClock, Watched};
use zero_copy::{ZeroCopy, ZeroCopyStream};

/// What a connection may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; the ones above are answered 503 and closed.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers: from its accept for the first
    /// request, from its first byte for the next ones.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may sit idle before its next request. Longer than the
    /// idle timeouts of clients and proxies that reuse connections, so they close first.
    pub keep_alive_timeout: Duration,
}

/// The canned answer to a connection above the cap: written without reading the request, so it
/// costs no parsing and no task beyond the write.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 79\r\n\
\r\n\
{\"error\":{\"code\":\"over_capacity\",\"message\":\"too many open connections; retry\"}}";

/// Serves `app` on `listener` until `shutdown` completes, then waits for open connections;
/// media bytes sent with sendfile are counted in `metrics`.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Connection tasks watch `stop` (closed on shutdown) and hold `open` until they end.
    let (stop_tx, stop_rx) = watch::channel(());
    let (open_tx, open_rx) = watch::channel(());
    tokio::pin!(shutdown);
    let mut at_cap = false;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Logged once per spell at the cap, not once per refused connection.
            if !at_cap {
                at_cap = true;
                tracing::warn!(
                    max = limits.max_connections,
                    "at the open connection cap: refusing new connections with 503"
                );
            }
            refuse(stream);
            continue;
        };
        if at_cap {
            at_cap = false;
            tracing::info!("below the open connection cap again");
        }
        let app = app.clone();
        let stop = stop_rx.clone();
        let open = open_rx.clone();
        let zero_copy = ZeroCopy::new(Arc::clone(&metrics));
        tokio::spawn(async move {
            serve_connection(stream, peer, app, limits, zero_copy, stop).await;
            drop(open);
            drop(permit);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(open_rx);
    tracing::debug!(open = open_tx.receiver_count(), "waiting for connections");
    open_tx.closed().await;
}

/// Serves one connection; on shutdown, lets the request in flight finish, then closes.
async fn serve_connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    app: S,
    limits: Limits,
    zero_copy: ZeroCopy,
    mut stop: watch::Receiver<()>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    no_delay(&stream, peer);
    let stream = ZeroCopyStream::new(stream, &zero_copy);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        // The peer address reaches handlers as `ConnectInfo` (login attempts are limited per IP).
        request.extensions_mut().insert(ConnectInfo(peer));
        // Media ranges leave this connection with sendfile (`routes/media.rs`).
        request.extensions_mut().insert(zero_copy.clone());
        app.clone().oneshot(request.map(Body::new))
    });
    let clock = WaitClock::new(limits.header_read_timeout, limits.keep_alive_timeout);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(clock.clone())
        // Only switches hyper's timeout on: the clock sets the deadlines.
        .header_read_timeout(limits.header_read_timeout)
        // Bodies are queued and written as they are, never copied into hyper's buffer: the
        // zero-copy stream must see a file range's own bytes to send it with sendfile.
        .writev(true)
        .serve_connection(TokioIo::new(Watched::new(stream, clock)), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::trace!(error = %err, %peer, "connection ended with an error");
            }
            return;
        }
        _ = stop.changed() => {}
    }
    connection.as_mut().graceful_shutdown();
    if let Err(err) = connection.await {
        tracing::trace!(error = %err, %peer, "connection ended with an error");
    }
}

/// Sends each write at once. Without TCP_NODELAY, a response's last short segment waits for
/// the ACK of the one before, which the client delays up to 40 ms (Nagle's algorithm against
/// delayed ACKs): that was the Range p99 (bench/findings.md, finding 12). Headers still leave
/// with a file's first bytes (`MSG_MORE`), as with nginx's `tcp_nodelay on`.
fn no_delay(stream: &TcpStream, peer: SocketAddr) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::trace!(error = %err, %peer, "could not set TCP_NODELAY");
    }
}

/// Answers a connection above the cap with the canned 503 and closes it.
fn refuse(stream: TcpStream) {
    // A fresh socket's send buffer takes these few bytes at once; if not, it is closed silently.
    let _ = stream.try_write(OVER_CAPACITY);
}

/// Accept errors of one connection are skipped; running out of file descriptors (or memory)
/// waits a moment for connections to close instead of spinning.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_503_has_the_right_length() {
        let text = std::str::from_utf8(OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "over_capacity");
    }

    #[tokio::test]
    async fn accepted_connections_send_without_waiting_for_acks() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, client) = tokio::join!(listener.accept(), client);
        let (stream, peer) = accepted.unwrap();
        let _client = client.unwrap();
        assert!(
            !stream.nodelay().unwrap(),
            "Nagle's algorithm is on by default"
        );
        no_delay(&stream, peer);
        assert!(stream.nodelay().unwrap());
    }
}
