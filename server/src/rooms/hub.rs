//! The per-live state shared by every connection: who is watching, the events they receive,
//! and how far the recording's upload is committed.
//!
//! A room exists from the first event, viewer or committed chunk of a live until the live
//! ends; connections hold the room, so ending it (removing it from the hub) reaches them.
//!
//! With several nodes (PostgreSQL), a room also counts the viewers other nodes announce
//! (`bus.rs`), and announces its own count whenever it changes.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::{broadcast, watch, Notify};

use super::bus::{Bus, Notice};
use crate::{
    domain::{PostId, UploadId, ViewerId},
    posts::views::{ChatMessageView, PostView},
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
    /// A new chat message, as JSON (it may come from another node).
    Chat(Arc<str>),
    /// The live ended (stopped or interrupted); the Post as it is now.
    Ended(Arc<PostView>),
    /// The live ended without a Post to show (it was deleted): connections close, and a
    /// reconnection learns what became of it.
    Closed,
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

/// Another node's count of a live's viewers.
#[derive(Debug, Clone, Copy)]
struct RemoteCount {
    viewers: u64,
    /// The announcement's number: an older one arriving late is ignored.
    seq: u64,
    seen: Instant,
}

/// The counts other nodes announced, by node id.
type Remote = HashMap<String, RemoteCount>;

#[derive(Debug, Default)]
struct Presence {
    /// Open connections per viewer id on this node (broadcasters are not here).
    viewers: HashMap<ViewerId, usize>,
    /// Viewers connected to other nodes.
    remote: Remote,
    peak: u64,
    ended: Option<Arc<PostView>>,
}

impl Presence {
    fn total(&self) -> u64 {
        let remote: u64 = self.remote.values().map(|count| count.viewers).sum();
        self.viewers.len() as u64 + remote
    }

    /// Raises the peak to the current total.
    fn counts(&mut self) -> ViewerCounts {
        let viewers = self.total();
        self.peak = self.peak.max(viewers);
        ViewerCounts {
            viewers,
            peak_viewers: self.peak,
        }
    }
}

/// Applies another node's announcement; true when it changed something.
fn apply_remote(remote: &mut Remote, node: &str, seq: u64, viewers: u64) -> bool {
    match remote.get_mut(node) {
        Some(count) if count.seq >= seq => false,
        Some(count) => {
            let changed = count.viewers != viewers;
            *count = RemoteCount {
                viewers,
                seq,
                seen: Instant::now(),
            };
            changed
        }
        None => {
            remote.insert(
                node.to_owned(),
                RemoteCount {
                    viewers,
                    seq,
                    seen: Instant::now(),
                },
            );
            viewers > 0
        }
    }
}

/// Forgets the counts of nodes silent for `ttl`; true when one that counted went.
fn expire_remote(remote: &mut Remote, ttl: Duration) -> bool {
    let before: u64 = remote.values().map(|count| count.viewers).sum();
    remote.retain(|_, count| count.seen.elapsed() < ttl);
    let after: u64 = remote.values().map(|count| count.viewers).sum();
    before != after
}

/// One live's shared state.
pub struct Room {
    post_id: PostId,
    /// Where this node's count goes (several nodes only).
    bus: Option<Arc<Bus>>,
    events: broadcast::Sender<LiveEvent>,
    presence: Mutex<Presence>,
    progress: watch::Sender<Progress>,
    /// The recording's start is known (in the database); chunks need not be timed anymore.
    dated: AtomicBool,
    /// Progressive streams of this node still reading the upload.
    streams: AtomicUsize,
    /// Told when the last of them is done.
    streams_done: Notify,
}

/// A progressive stream reading the room's upload; dropping it (sent, or the viewer left)
/// lets the upload's bytes go once the live has ended.
pub struct StreamGuard(Arc<Room>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.0.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.streams_done.notify_waiters();
        }
    }
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
    fn new(post_id: PostId, bus: Option<Arc<Bus>>, remote: Remote) -> Self {
        Self {
            post_id,
            bus,
            events: broadcast::channel(EVENT_BACKLOG).0,
            presence: Mutex::new(Presence {
                remote,
                ..Presence::default()
            }),
            progress: watch::channel(Progress::default()).0,
            dated: AtomicBool::new(false),
            streams: AtomicUsize::new(0),
            streams_done: Notify::new(),
        }
    }

    /// Counts a progressive stream until the guard is dropped.
    pub fn follow_stream(self: &Arc<Self>) -> StreamGuard {
        self.streams.fetch_add(1, Ordering::AcqRel);
        StreamGuard(Arc::clone(self))
    }

    /// Whether progressive streams of this node are still reading the upload.
    pub fn has_streams(&self) -> bool {
        self.streams.load(Ordering::Acquire) > 0
    }

    /// Waits until no progressive stream reads the upload any more, at most `limit`.
    pub async fn streams_finished(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let done = self.streams_done.notified();
                if !self.has_streams() {
                    return;
                }
                done.await;
            }
        })
        .await;
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

    /// Tells the other nodes how many viewers this node has now (under the presence lock,
    /// so the numbers follow the changes' order).
    fn announce(&self, presence: &Presence) {
        if let Some(bus) = &self.bus {
            bus.publish(Notice::Presence {
                seq: bus.next_seq(),
                rooms: vec![(self.post_id, presence.viewers.len() as u64)],
            });
        }
    }

    /// Another node's count changed.
    fn remote(&self, node: &str, seq: u64, viewers: u64) {
        let mut presence = lock(&self.presence);
        if apply_remote(&mut presence.remote, node, seq, viewers) && presence.ended.is_none() {
            let counts = presence.counts();
            let _ = self.events.send(LiveEvent::Viewers(counts));
        }
    }

    fn expire(&self, ttl: Duration) {
        let mut presence = lock(&self.presence);
        if expire_remote(&mut presence.remote, ttl) && presence.ended.is_none() {
            let counts = presence.counts();
            let _ = self.events.send(LiveEvent::Viewers(counts));
        }
    }

    fn local_viewers(&self) -> u64 {
        lock(&self.presence).viewers.len() as u64
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
        let local_before = presence.viewers.len();
        if let Some(viewer) = &viewer {
            *presence.viewers.entry(viewer.clone()).or_default() += 1;
        }
        let counts = presence.counts();
        if counts != before {
            // Sent under the lock, before subscribing: every receiver sees counts in order.
            let _ = self.events.send(LiveEvent::Viewers(counts));
        }
        if presence.viewers.len() != local_before {
            self.announce(&presence);
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
                let counts = presence.counts();
                let _ = self.events.send(LiveEvent::Viewers(counts));
                self.announce(&presence);
            }
        }
    }

    /// Sends a new chat message to every viewer of this node.
    pub fn publish_chat(&self, message: &ChatMessageView) {
        if let Ok(json) = serde_json::to_string(message) {
            self.publish_chat_json(json);
        }
    }

    /// Sends a chat message, already as JSON, to every viewer of this node.
    pub fn publish_chat_json(&self, json: String) {
        let _ = self.events.send(LiveEvent::Chat(Arc::from(json)));
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
        match post {
            Some(post) => {
                presence.ended = Some(Arc::clone(&post));
                let _ = self.events.send(LiveEvent::Ended(post));
            }
            None => {
                let _ = self.events.send(LiveEvent::Closed);
            }
        }
        self.progress.send_modify(|progress| progress.ended = true);
    }
}

/// Every live room, by post id.
#[derive(Default)]
pub struct Hub {
    rooms: Mutex<HashMap<PostId, Arc<Room>>>,
    /// Other nodes' counts of lives this node has no room for yet (taken by the room).
    unseated: Mutex<HashMap<PostId, Remote>>,
    /// The other nodes (PostgreSQL only).
    bus: Option<Arc<Bus>>,
}

impl Hub {
    /// A hub whose rooms exchange events with the other nodes over `bus`.
    pub fn with_bus(bus: Arc<Bus>) -> Self {
        Self {
            bus: Some(bus),
            ..Self::default()
        }
    }

    /// The bus to the other nodes, if there are any.
    pub fn bus(&self) -> Option<&Arc<Bus>> {
        self.bus.as_ref()
    }

    /// Another node announced `viewers` for live `post_id`.
    pub fn remote_presence(&self, post_id: PostId, node: &str, seq: u64, viewers: u64) {
        let rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(&post_id) {
            let room = Arc::clone(room);
            drop(rooms);
            room.remote(node, seq, viewers);
            return;
        }
        // Held while seeding, so a room created meanwhile cannot miss the count.
        let mut unseated = lock(&self.unseated);
        let remote = unseated.entry(post_id).or_default();
        apply_remote(remote, node, seq, viewers);
        if remote.values().all(|count| count.viewers == 0) {
            unseated.remove(&post_id);
        }
    }

    /// This node's own viewer counts of the lives it has viewers of.
    pub fn local_presence(&self) -> Vec<(PostId, u64)> {
        let rooms: Vec<_> = lock(&self.rooms)
            .iter()
            .map(|(id, room)| (*id, Arc::clone(room)))
            .collect();
        rooms
            .into_iter()
            .map(|(id, room)| (id, room.local_viewers()))
            .filter(|(_, viewers)| *viewers > 0)
            .collect()
    }

    /// Forgets the counts of nodes that announced nothing for `ttl`.
    pub fn expire_presence(&self, ttl: Duration) {
        let rooms: Vec<_> = lock(&self.rooms).values().cloned().collect();
        for room in rooms {
            room.expire(ttl);
        }
        lock(&self.unseated).retain(|_, remote| {
            expire_remote(remote, ttl);
            !remote.is_empty()
        });
    }

    /// The lives this node has a room for.
    pub fn post_ids(&self) -> Vec<PostId> {
        lock(&self.rooms).keys().copied().collect()
    }

    /// The room of a live, created on first use.
    ///
    /// Callers check that the live is live *after* taking the room: a live that ends
    /// meanwhile then either finds this room (and ends it) or is seen as ended.
    pub fn room(&self, post_id: PostId) -> Arc<Room> {
        Arc::clone(lock(&self.rooms).entry(post_id).or_insert_with(|| {
            let remote = lock(&self.unseated).remove(&post_id).unwrap_or_default();
            Arc::new(Room::new(post_id, self.bus.clone(), remote))
        }))
    }

    /// The room of a live if one exists (publishing to nobody creates nothing).
    pub fn get(&self, post_id: PostId) -> Option<Arc<Room>> {
        lock(&self.rooms).get(&post_id).cloned()
    }

    /// Ends a live's room: viewers get `ended` (with `post`), streams finish, the room goes.
    pub fn end(&self, post_id: PostId, post: Option<PostView>) {
        let room = lock(&self.rooms).remove(&post_id);
        lock(&self.unseated).remove(&post_id);
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
        let room = hub.room(PostId::new(1));
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
        let room = hub.room(PostId::new(1));
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
        let room = hub.room(PostId::new(7));
        let Joined::Watching {
            mut events,
            seat: _seat,
            ..
        } = room.join(viewer("viewer-a"))
        else {
            panic!("ended");
        };
        let mut progress = room.progress();
        hub.end(PostId::new(7), None);
        assert!(hub.is_empty());
        assert!(progress.borrow_and_update().ended);
        assert!(
            matches!(events.try_recv(), Ok(LiveEvent::Closed)),
            "no Post, no ended event: the connections close"
        );
    }

    #[test]
    fn other_nodes_counts_add_up_in_order_and_expire() {
        let hub = Hub::default();
        // Announced before this node has a room: the room starts with it.
        hub.remote_presence(PostId::new(5), "node-b", 1, 2);
        let room = hub.room(PostId::new(5));
        let Joined::Watching {
            counts,
            mut events,
            seat: _seat,
            ..
        } = room.join(viewer("viewer-a"))
        else {
            panic!("ended");
        };
        assert_eq!((counts.viewers, counts.peak_viewers), (3, 3));
        hub.remote_presence(PostId::new(5), "node-c", 1, 1);
        let event = events.try_recv();
        assert!(
            matches!(event, Ok(LiveEvent::Viewers(c)) if c.viewers == 4),
            "{event:?}"
        );
        // A late, older announcement changes nothing.
        hub.remote_presence(PostId::new(5), "node-b", 3, 0);
        hub.remote_presence(PostId::new(5), "node-b", 2, 7);
        assert_eq!(room.counts().viewers, 2);
        assert_eq!(room.counts().peak_viewers, 4);
        assert_eq!(hub.local_presence(), [(PostId::new(5), 1)]);
        // A node that stops announcing stops counting.
        std::thread::sleep(Duration::from_millis(20));
        hub.expire_presence(Duration::from_millis(10));
        assert_eq!(room.counts().viewers, 1);
    }
}
