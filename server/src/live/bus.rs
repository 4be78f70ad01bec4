//! Live events between nodes sharing one PostgreSQL database, over LISTEN/NOTIFY.
//!
//! Every node applies its own events at once and also notifies them on [`CHANNEL`]; every
//! node listens, skips the notifications it sent itself (it receives them too) and applies the
//! others' to its rooms. Payloads stay small (ids, counts, one chat message): well under
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
    str::FromStr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context;
use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::{
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
    Connection, PgConnection, PgPool,
};
use tokio::{sync::mpsc, task::JoinHandle};

use super::hub::Hub;
use crate::{db, domain::UploadId, locks::Locks, state::AppState};

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
const PRESENCE_BATCH: usize = 100;
/// Whether `url` names a PostgreSQL database (several nodes may share it).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

/// What one node tells the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// The sender's own viewer counts of some lives, numbered so a late one is ignored.
    Presence {
        /// Increases with every announcement of the sender.
        seq: u64,
        /// `(post id, distinct viewers connected to the sender)`.
        rooms: Vec<(i64, u64)>,
    },
    /// A chat message, as the `chat` event carries it.
    Chat {
        /// The live.
        post: i64,
        /// The message's JSON.
        message: serde_json::Value,
    },
    /// The live's upload is durable up to `offset`.
    Progress {
        /// The live.
        post: i64,
        /// The upload.
        upload: String,
        /// Its committed offset.
        offset: u64,
    },
    /// The live ended; receivers read the Post from the database.
    Ended {
        /// The live.
        post: i64,
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
    fn new(pool: PgPool) -> Self {
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

/// The cross-node parts of a node: shared locks and the bus, on PostgreSQL only.
pub struct Coordination {
    bus: Option<Arc<Bus>>,
}

impl Coordination {
    /// Opens a pool of its own of `connections` on `database_url` when it is PostgreSQL: held
    /// locks (one per PATCH in flight) and notifications.
    pub async fn open(database_url: &str, connections: u32) -> anyhow::Result<Self> {
        if !is_postgres(database_url) {
            return Ok(Self { bus: None });
        }
        let options = PgConnectOptions::from_str(database_url)
            .context("parsing the PostgreSQL URL for coordination")?;
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .context("opening the coordination connections to PostgreSQL")?;
        Ok(Self {
            bus: Some(Arc::new(Bus::new(pool))),
        })
    }

    /// The per-upload and per-live locks: advisory locks on PostgreSQL.
    pub fn locks(&self) -> Locks {
        match &self.bus {
            Some(bus) => Locks::postgres(bus.pool.clone()),
            None => Locks::local(),
        }
    }

    /// The rooms, announcing this node's events to the others on PostgreSQL.
    pub fn hub(&self) -> Hub {
        match &self.bus {
            Some(bus) => Hub::with_bus(Arc::clone(bus)),
            None => Hub::default(),
        }
    }
}

/// The tasks that listen to the other nodes and repeat this node's counts; stop on drop.
pub struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts listening and announcing (nothing on SQLite).
pub fn start(state: &AppState) -> Tasks {
    let Some(bus) = state.hub.bus().cloned() else {
        return Tasks(Vec::new());
    };
    Tasks(vec![
        tokio::spawn(listen(state.clone(), Arc::clone(&bus))),
        tokio::spawn(heartbeat(state.clone(), bus)),
    ])
}

/// Applies the other nodes' notifications until aborted, reconnecting when needed.
async fn listen(state: AppState, bus: Arc<Bus>) {
    loop {
        let mut listener = match connect_listener(&bus.pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::error!(error = ?err, "cannot listen to the other nodes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Whatever was notified while not listening is read from the database instead.
        resync(&state).await;
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    receive(&state, &bus, notification.payload()).await;
                }
                Ok(None) => {
                    tracing::warn!("lost the notification connection; reconnected");
                    resync(&state).await;
                }
                Err(err) => {
                    tracing::error!(error = ?err, "listening to the other nodes failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

async fn connect_listener(pool: &PgPool) -> anyhow::Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Applies one notification of another node.
async fn receive(state: &AppState, bus: &Bus, payload: &str) {
    let envelope: Envelope = match serde_json::from_str(payload) {
        Ok(envelope) => envelope,
        Err(err) => {
            tracing::warn!(error = ?err, "ignored a malformed live notice");
            return;
        }
    };
    if envelope.node == bus.node {
        return; // Applied when it was sent.
    }
    match envelope.notice {
        Notice::Presence { seq, rooms } => {
            for (post, viewers) in rooms {
                state
                    .hub
                    .remote_presence(post, &envelope.node, seq, viewers);
            }
        }
        Notice::Chat { post, message } => {
            if let Some(room) = state.hub.get(post) {
                room.publish_chat_json(message.to_string());
            }
        }
        Notice::Progress {
            post,
            upload,
            offset,
        } => {
            if let (Some(room), Ok(upload)) = (state.hub.get(post), UploadId::parse(&upload)) {
                room.committed(&upload, offset);
            }
        }
        Notice::Ended { post } => super::announce_end_here(state, post).await,
    }
}

/// Catches up on what notifications may have been missed: ended lives and upload progress.
async fn resync(state: &AppState) {
    for post_id in state.hub.post_ids() {
        let caught_up = async {
            let live = db::posts::get(&state.db, post_id)
                .await?
                .is_some_and(|post| post.live_status.as_deref() == Some("live"));
            if !live {
                super::announce_end_here(state, post_id).await;
                return anyhow::Ok(());
            }
            if let (Some(room), Some(upload)) = (
                state.hub.get(post_id),
                db::uploads::latest_for_post(&state.db, post_id).await?,
            ) {
                if let Ok(id) = UploadId::parse(&upload.id) {
                    room.committed(&id, u64::try_from(upload.offset).unwrap_or(0));
                }
            }
            Ok(())
        }
        .await;
        if let Err(err) = caught_up {
            tracing::warn!(post = post_id, error = ?err, "could not catch up on a live");
        }
    }
}

/// Repeats this node's counts and forgets the counts of nodes that went quiet.
async fn heartbeat(state: AppState, bus: Arc<Bus>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let seq = bus.next_seq();
        let rooms = state.hub.local_presence();
        for batch in rooms.chunks(PRESENCE_BATCH) {
            bus.publish(Notice::Presence {
                seq,
                rooms: batch.to_vec(),
            });
        }
        state.hub.expire_presence(PRESENCE_TTL);
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
                post: i64::MAX,
                message,
            },
        };
        assert!(serde_json::to_string(&chat).unwrap().len() < MAX_PAYLOAD);
        let presence = Envelope {
            node: "0123456789abcdef".into(),
            notice: Notice::Presence {
                seq: u64::MAX,
                rooms: vec![(i64::MAX, u64::MAX); PRESENCE_BATCH],
            },
        };
        assert!(serde_json::to_string(&presence).unwrap().len() < MAX_PAYLOAD);
    }

    #[test]
    fn notices_round_trip() {
        let sent = Notice::Progress {
            post: 3,
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
