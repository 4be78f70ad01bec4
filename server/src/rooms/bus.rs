//! Live events between nodes sharing one PostgreSQL database, over LISTEN/NOTIFY: what one node
//! tells the others, and how it is sent.
//!
//! Every node applies its own events at once and also notifies them on [`CHANNEL`]; every
//! node listens (`live/listener.rs`), skips the notifications it sent itself (it receives them
//! too) and applies the others' to its rooms. Payloads stay small (ids, counts, one chat message): well under
//! PostgreSQL's 8000-byte limit. On SQLite there is one node and no bus.
//!
//! Notifications leave through an outbox: one task per node sends them, in order, on a
//! connection of its own, several per statement. A request that holds a lock's connection of
//! the coordination pool (a PATCH announcing its committed offset) must never wait for a
//! second connection of that pool: with as many such requests as connections, each would wait
//! for another's, until the pool's acquire timeout (the 10 s stalls of BENCHMARKS finding 5).
//!
//! Viewer counts are per node: each node announces its own count of a live on every change
//! and every [`HEARTBEAT`], and a node that stops announcing (killed) stops counting after
//! [`PRESENCE_TTL`].

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::{postgres::PgConnectOptions, Connection, PgConnection, PgPool};
use tokio::sync::mpsc;

use crate::domain::PostId;

/// The notification channel every node listens on.
pub const CHANNEL: &str = "livekeep_live";
/// How often a node repeats its viewer counts.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a node's counts hold without a new announcement.
pub const PRESENCE_TTL: Duration = Duration::from_secs(7);
/// PostgreSQL refuses payloads of 8000 bytes or more; stay clear of it.
const MAX_PAYLOAD: usize = 7900;
/// Notices waiting to be sent; when the database is away this long, newer ones are dropped.
const OUTBOX: usize = 4096;
/// Notices sent by one statement, one commit, at most.
const BATCH: usize = 64;
/// Pause before reconnecting the sender after an error.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
/// Lives per presence announcement, so one always fits in a payload.
pub const PRESENCE_BATCH: usize = 100;

/// What one node tells the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// The sender's own viewer counts of some lives, numbered so a late one is ignored.
    Presence {
        /// Increases with every announcement of the sender.
        seq: u64,
        /// `(post id, distinct viewers connected to the sender)`.
        rooms: Vec<(PostId, u64)>,
    },
    /// A chat message, as the `chat` event carries it.
    Chat {
        /// The live.
        post: PostId,
        /// The message's JSON.
        message: serde_json::Value,
    },
    /// The live's upload is durable up to `offset`.
    Progress {
        /// The live.
        post: PostId,
        /// The upload.
        upload: String,
        /// Its committed offset.
        offset: u64,
    },
    /// The live ended; receivers read the Post from the database.
    Ended {
        /// The live.
        post: PostId,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    node: String,
    #[serde(flatten)]
    notice: Notice,
}

/// This node's end of the bus.
pub struct Bus {
    node: String,
    pool: PgPool,
    seq: AtomicU64,
    outbox: mpsc::Sender<String>,
}

impl Bus {
    /// The bus on `pool`'s database; its sender runs until the bus is dropped.
    pub fn new(pool: PgPool) -> Self {
        let mut id = [0u8; 8];
        rand_core::OsRng.fill_bytes(&mut id);
        let (outbox, queued) = mpsc::channel(OUTBOX);
        tokio::spawn(send_queued(pool.connect_options().as_ref().clone(), queued));
        Self {
            node: hex::encode(id),
            pool,
            seq: AtomicU64::new(0),
            outbox,
        }
    }

    /// This node's id on the bus.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The coordination pool the bus listens on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The sending node and the notice of a notification's payload, unless this node sent it
    /// (it was applied when it was sent) or it is malformed (logged).
    pub fn receive(&self, payload: &str) -> Option<(String, Notice)> {
        let envelope: Envelope = match serde_json::from_str(payload) {
            Ok(envelope) => envelope,
            Err(err) => {
                tracing::warn!(error = ?err, "ignored a malformed live notice");
                return None;
            }
        };
        (envelope.node != self.node).then_some((envelope.node, envelope.notice))
    }

    /// The next presence number.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Queues `notice` for every other node, after the ones queued before it. Never waits: a
    /// notice that cannot be sent is logged (viewers on other nodes miss one event).
    pub fn publish(&self, notice: Notice) {
        let payload = match serde_json::to_string(&Envelope {
            node: self.node.clone(),
            notice,
        }) {
            Ok(payload) => payload,
            Err(err) => {
                tracing::error!(error = ?err, "could not encode a live notice");
                return;
            }
        };
        if payload.len() > MAX_PAYLOAD {
            tracing::error!(bytes = payload.len(), "a live notice is too large to send");
            return;
        }
        if let Err(err) = self.outbox.try_send(payload) {
            tracing::warn!(error = %err, "could not queue a notice for the other nodes");
        }
    }
}

/// Sends the queued notices in order, up to [`BATCH`] per statement, on a connection of its
/// own (reconnected after an error); ends when the bus is dropped.
async fn send_queued(options: PgConnectOptions, mut queued: mpsc::Receiver<String>) {
    let mut conn: Option<PgConnection> = None;
    let mut batch: Vec<String> = Vec::with_capacity(BATCH);
    loop {
        if batch.is_empty() {
            let Some(first) = queued.recv().await else {
                return;
            };
            batch.push(first);
        }
        while batch.len() < BATCH {
            match queued.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let connected = match conn.as_mut() {
            Some(connected) => connected,
            None => match PgConnection::connect_with(&options).await {
                Ok(fresh) => conn.insert(fresh),
                Err(err) => {
                    tracing::warn!(error = ?err, "could not connect to send live notices");
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue; // The batch waits; the outbox fills, then drops, meanwhile.
                }
            },
        };
        // One statement, one commit; unnest yields the array in order, so notices keep theirs.
        let sent = sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
            .bind(CHANNEL)
            .bind(&batch)
            .execute(&mut *connected)
            .await;
        match sent {
            Ok(_) => batch.clear(),
            Err(err) => {
                // Sent or not, unknown: resending could repeat notices, which receivers
                // tolerate less than a missed one (a repeated chat message shows twice).
                tracing::warn!(error = ?err, notices = batch.len(), "could not notify the other nodes");
                batch.clear();
                conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_notices_fit_in_a_payload() {
        let message = serde_json::json!({
            "id": i64::MAX, "post": i64::MAX,
            "author": {"id": i64::MAX, "username": "u".repeat(32)},
            "body": "\u{1}".repeat(crate::domain::ChatBody::MAX_CHARS),
            "created_at": "2026-11-26T05:14:26.000Z", "offset": 1e12,
        });
        let chat = Envelope {
            node: "0123456789abcdef".into(),
            notice: Notice::Chat {
                post: PostId::new(i64::MAX),
                message,
            },
        };
        assert!(serde_json::to_string(&chat).unwrap().len() < MAX_PAYLOAD);
        let presence = Envelope {
            node: "0123456789abcdef".into(),
            notice: Notice::Presence {
                seq: u64::MAX,
                rooms: vec![(PostId::new(i64::MAX), u64::MAX); PRESENCE_BATCH],
            },
        };
        assert!(serde_json::to_string(&presence).unwrap().len() < MAX_PAYLOAD);
    }

    #[test]
    fn notices_round_trip() {
        let sent = Notice::Progress {
            post: PostId::new(3),
            upload: "abc".into(),
            offset: 42,
        };
        let text = serde_json::to_string(&Envelope {
            node: "n".into(),
            notice: sent.clone(),
        })
        .unwrap();
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back.notice, sent);
    }
}
