//! The per-live state shared by every connection: who is watching, the events they receive,
//! and how far the recording's upload is committed.
//!
//! A room exists from the first event, viewer or committed chunk of a live until the live
//! ends; connections hold the room, so ending it (removing it from the hub) reaches them.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use super::index::StreamIndex;
use crate::{
    domain::{UploadId, ViewerId},
    views::{ChatMessageView, PostView},
};

/// Events a room keeps for a slow receiver before it skips ahead; bounds memory per live.
const EVENT_BACKLOG: usize = 64;

/// Current and peak viewers, as the `viewers` event carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ViewerCounts {
    /// Distinct viewers connected now.
    pub viewers: u64,
    /// Most distinct viewers connected at once.
    pub peak_viewers: u64,
}

/// What a room tells its viewers.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// The counts changed.
    Viewers(ViewerCounts),
    /// A new chat message.
    Chat(Arc<ChatMessageView>),
    /// The live ended (stopped or interrupted); the Post as it is now.
    Ended(Arc<PostView>),
}

/// How far the live's upload is durable, for the progressive stream.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The upload that last committed bytes.
    pub upload: Option<UploadId>,
    /// Its committed offset.
    pub committed: u64,
    /// The live ended: streams finish.
    pub ended: bool,
}

#[derive(Debug, Default)]
struct Presence {
    /// Open connections per viewer id (broadcasters are not here).
    viewers: HashMap<ViewerId, usize>,
    peak: u64,
    ended: Option<Arc<PostView>>,
}

impl Presence {
    fn counts(&self) -> ViewerCounts {
        ViewerCounts {
            viewers: self.viewers.len() as u64,
            peak_viewers: self.peak,
        }
    }
}

/// One live's shared state.
pub struct Room {
    events: broadcast::Sender<LiveEvent>,
    presence: Mutex<Presence>,
    progress: watch::Sender<Progress>,
    /// Where the clusters of the upload are; advanced by whoever needs it first.
    pub index: Mutex<StreamIndex>,
    /// The recording's start is known (in the database); chunks need not be timed anymore.
    dated: AtomicBool,
}

/// The outcome of joining a room.
pub enum Joined {
    /// Connected: the counts at that moment, the events from then on, and the seat to hold.
    Watching {
        /// Counts including this connection.
        counts: ViewerCounts,
        /// Whether this connection set a new peak (to persist).
        new_peak: bool,
        /// Events after `counts`.
        events: broadcast::Receiver<LiveEvent>,
        /// Dropping it leaves the room.
        seat: Seat,
    },
    /// The live had already ended.
    Ended(Arc<PostView>),
}

/// A connection's place in a room; dropping it (the client went away) updates the counts.
pub struct Seat {
    room: Arc<Room>,
    viewer: Option<ViewerId>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Some(viewer) = self.viewer.take() {
            self.room.leave(&viewer);
        }
    }
}

/// A poisoned lock only means a thread panicked while holding it; the state is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Room {
    fn new() -> Self {
        Self {
            events: broadcast::channel(EVENT_BACKLOG).0,
            presence: Mutex::new(Presence::default()),
            progress: watch::channel(Progress::default()).0,
            index: Mutex::new(StreamIndex::default()),
            dated: AtomicBool::new(false),
        }
    }

    /// Whether the recording's start is known.
    pub fn recording_dated(&self) -> bool {
        self.dated.load(Ordering::Relaxed)
    }

    /// Notes that the recording's start is known.
    pub fn mark_recording_dated(&self) {
        self.dated.store(true, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn counts(&self) -> ViewerCounts {
        lock(&self.presence).counts()
    }

    /// Raises the peak to what the database remembers (a room created after a restart).
    pub fn remember_peak(&self, peak: u64) {
        let mut presence = lock(&self.presence);
        presence.peak = presence.peak.max(peak);
    }

    /// Joins as `viewer` (counted) or as the broadcaster (`None`, not counted).
    pub fn join(self: &Arc<Self>, viewer: Option<ViewerId>) -> Joined {
        let mut presence = lock(&self.presence);
        if let Some(post) = &presence.ended {
            return Joined::Ended(Arc::clone(post));
        }
        let before = presence.counts();
        if let Some(viewer) = &viewer {
            *presence.viewers.entry(viewer.clone()).or_default() += 1;
            presence.peak = presence.peak.max(presence.viewers.len() as u64);
        }
        let counts = presence.counts();
        if counts != before {
            // Sent under the lock, before subscribing: every receiver sees counts in order.
            let _ = self.events.send(LiveEvent::Viewers(counts));
        }
        Joined::Watching {
            counts,
            new_peak: counts.peak_viewers > before.peak_viewers,
            events: self.events.subscribe(),
            seat: Seat {
                room: Arc::clone(self),
                viewer,
            },
        }
    }

    fn leave(&self, viewer: &ViewerId) {
        let mut presence = lock(&self.presence);
        let Some(open) = presence.viewers.get_mut(viewer) else {
            return;
        };
        *open -= 1;
        if *open == 0 {
            presence.viewers.remove(viewer);
            if presence.ended.is_none() {
                let _ = self.events.send(LiveEvent::Viewers(presence.counts()));
            }
        }
    }

    /// Sends a new chat message to every viewer.
    pub fn publish_chat(&self, message: ChatMessageView) {
        let _ = self.events.send(LiveEvent::Chat(Arc::new(message)));
    }

    /// Records that `upload` is durable up to `committed`, waking the streams.
    pub fn committed(&self, upload: &UploadId, committed: u64) {
        self.progress.send_modify(|progress| {
            if progress.upload.as_ref() != Some(upload) {
                progress.upload = Some(upload.clone());
                progress.committed = 0;
            }
            progress.committed = progress.committed.max(committed);
        });
    }

    /// Follows the upload's progress.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    fn end(&self, post: Option<Arc<PostView>>) {
        let mut presence = lock(&self.presence);
        if let Some(post) = post {
            presence.ended = Some(Arc::clone(&post));
            let _ = self.events.send(LiveEvent::Ended(post));
        }
        self.progress.send_modify(|progress| progress.ended = true);
    }
}

/// Every live room, by post id.
#[derive(Default)]
pub struct Hub {
    rooms: Mutex<HashMap<i64, Arc<Room>>>,
}

impl Hub {
    /// The room of a live, created on first use.
    ///
    /// Callers check that the live is live *after* taking the room: a live that ends
    /// meanwhile then either finds this room (and ends it) or is seen as ended.
    pub fn room(&self, post_id: i64) -> Arc<Room> {
        Arc::clone(
            lock(&self.rooms)
                .entry(post_id)
                .or_insert_with(|| Arc::new(Room::new())),
        )
    }

    /// The room of a live if one exists (publishing to nobody creates nothing).
    pub fn get(&self, post_id: i64) -> Option<Arc<Room>> {
        lock(&self.rooms).get(&post_id).cloned()
    }

    /// Ends a live's room: viewers get `ended` (with `post`), streams finish, the room goes.
    pub fn end(&self, post_id: i64, post: Option<PostView>) {
        let room = lock(&self.rooms).remove(&post_id);
        if let Some(room) = room {
            room.end(post.map(Arc::new));
        }
    }

    /// Number of rooms held (for tests of the bookkeeping).
    pub fn len(&self) -> usize {
        lock(&self.rooms).len()
    }

    /// Whether no room is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(name: &str) -> Option<ViewerId> {
        Some(ViewerId::parse(name).unwrap())
    }

    fn seat(joined: Joined) -> (ViewerCounts, Seat) {
        match joined {
            Joined::Watching { counts, seat, .. } => (counts, seat),
            Joined::Ended(_) => panic!("the room ended"),
        }
    }

    #[test]
    fn a_viewer_with_two_connections_counts_once_and_the_broadcaster_not_at_all() {
        let hub = Hub::default();
        let room = hub.room(1);
        let (_, a1) = seat(room.join(viewer("viewer-a")));
        let (counts, a2) = seat(room.join(viewer("viewer-a")));
        assert_eq!(counts.viewers, 1);
        let (counts, host) = seat(room.join(None));
        assert_eq!(counts.viewers, 1);
        let (counts, b) = seat(room.join(viewer("viewer-b")));
        assert_eq!((counts.viewers, counts.peak_viewers), (2, 2));
        drop(a1);
        assert_eq!(room.counts().viewers, 2);
        drop(a2);
        drop(host);
        assert_eq!(room.counts().viewers, 1);
        drop(b);
        assert_eq!(
            room.counts(),
            ViewerCounts {
                viewers: 0,
                peak_viewers: 2
            }
        );
    }

    #[test]
    fn a_slow_receiver_lags_instead_of_growing_memory() {
        let hub = Hub::default();
        let room = hub.room(1);
        let Joined::Watching { mut events, .. } = room.join(None) else {
            panic!("ended");
        };
        for _ in 0..EVENT_BACKLOG * 4 {
            let (_, seat) = seat(room.join(viewer("viewer-x")));
            drop(seat);
        }
        assert!(matches!(
            events.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn ending_a_room_removes_it_and_finishes_its_streams() {
        let hub = Hub::default();
        let room = hub.room(7);
        let Joined::Watching {
            mut events,
            seat: _seat,
            ..
        } = room.join(viewer("viewer-a"))
        else {
            panic!("ended");
        };
        let mut progress = room.progress();
        hub.end(7, None);
        assert!(hub.is_empty());
        assert!(progress.borrow_and_update().ended);
        assert!(events.try_recv().is_err(), "no Post, no ended event");
    }
}
