//! The tasks that keep this node's rooms in step with the other nodes (PostgreSQL only): one
//! applies their notices (`rooms/bus.rs`) and catches up from the database after a reconnect,
//! the other repeats this node's viewer counts and forgets the counts of nodes gone quiet.

use std::{sync::Arc, time::Duration};

use sqlx::{postgres::PgListener, PgPool};
use tokio::task::JoinHandle;

use crate::{
    db,
    domain::UploadId,
    rooms::bus::{Bus, Notice, CHANNEL, HEARTBEAT, PRESENCE_BATCH, PRESENCE_TTL},
    state::AppState,
};

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
        let mut listener = match connect_listener(bus.pool()).await {
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
                    if let Some((node, notice)) = bus.receive(notification.payload()) {
                        apply(&state, &node, notice).await;
                    }
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

/// Applies one notice of another node to this node's rooms.
async fn apply(state: &AppState, node: &str, notice: Notice) {
    match notice {
        Notice::Presence { seq, rooms } => {
            for (post, viewers) in rooms {
                state.hub.remote_presence(post, node, seq, viewers);
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
                .is_some_and(|post| post.is_in_progress());
            if !live {
                super::announce_end_here(state, post_id).await;
                return anyhow::Ok(());
            }
            if let (Some(room), Some(upload)) = (
                state.hub.get(post_id),
                db::uploads::latest_for_post(&state.db, post_id).await?,
            ) {
                room.committed(&upload.id, upload.offset);
            }
            Ok(())
        }
        .await;
        if let Err(err) = caught_up {
            tracing::warn!(post = %post_id, error = ?err, "could not catch up on a live");
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
