//! A viewer's Server-Sent Events: `viewers`, `chat` and `ended`.

use std::{collections::VecDeque, sync::Arc};

use futures_util::{stream, Stream};
use serde::Serialize;
use tokio::sync::broadcast::{error::RecvError, Receiver};

use super::LiveError;
use crate::{
    db,
    domain::{now_millis, PostId, ViewerId},
    posts::views::{self, ChatMessageView, PostView},
    rooms::hub::{Joined, LiveEvent, Room, Seat, ViewerCounts},
    state::AppState,
};

/// One event for a viewer: its name and its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `viewers`, `chat` or `ended`.
    pub name: &'static str,
    /// JSON.
    pub data: String,
}

/// Chat messages a joining viewer receives from before it joined.
const RECENT_CHAT: i64 = 50;

fn json_event<T: Serialize>(name: &'static str, data: &T) -> Event {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "null".to_owned());
    Event { name, data }
}

fn ended_event(post: &PostView) -> Event {
    json_event("ended", post)
}

fn viewers_event(counts: ViewerCounts) -> Event {
    json_event("viewers", &counts)
}

fn chat_event(message: &ChatMessageView) -> Event {
    json_event("chat", message)
}

/// An open connection: queued events first, then the room's, until `ended`.
struct Feed {
    queue: VecDeque<Event>,
    events: Option<Receiver<LiveEvent>>,
    room: Option<Arc<Room>>,
    /// Held for the connection's lifetime; dropping the stream (client gone) leaves the room.
    _seat: Option<Seat>,
}

impl Feed {
    fn ended(post: &PostView) -> Self {
        Self {
            queue: VecDeque::from([ended_event(post)]),
            events: None,
            room: None,
            _seat: None,
        }
    }

    async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.queue.pop_front() {
            return Some(event);
        }
        let events = self.events.as_mut()?;
        let event = match events.recv().await {
            Ok(LiveEvent::Viewers(counts)) => viewers_event(counts),
            Ok(LiveEvent::Chat(json)) => Event {
                name: "chat",
                data: json.to_string(),
            },
            Ok(LiveEvent::Closed) => return None,
            Ok(LiveEvent::Ended(post)) => {
                self.events = None;
                ended_event(&post)
            }
            // Too slow to follow: skip what was missed, but show the counts as they are now.
            Err(RecvError::Lagged(_)) => viewers_event(self.room.as_ref()?.counts()),
            Err(RecvError::Closed) => return None,
        };
        Some(event)
    }

    fn into_stream(self) -> impl Stream<Item = Event> + Send {
        stream::unfold(self, |mut feed| async move {
            let event = feed.next().await?;
            Some((event, feed))
        })
    }
}

/// Opens the events of live `post_id` for `viewer` (`None`: the broadcaster, not counted).
pub async fn open(
    state: &AppState,
    post_id: PostId,
    viewer: Option<ViewerId>,
) -> Result<impl Stream<Item = Event> + Send, LiveError> {
    let post = db::posts::get_live(&state.db, post_id)
        .await?
        .ok_or(LiveError::NotFound)?;
    if !post.is_in_progress() {
        let view = views::post(&state.db, &state.public_url, post_id)
            .await?
            .ok_or(LiveError::NotFound)?;
        return Ok(Feed::ended(&view).into_stream());
    }
    let room = state.hub.room(post_id);
    room.remember_peak(post.peak_viewers);
    let (counts, new_peak, events, seat) = match room.join(viewer.clone()) {
        Joined::Watching {
            counts,
            new_peak,
            events,
            seat,
        } => (counts, new_peak, events, seat),
        Joined::Ended(post) => return Ok(Feed::ended(&post).into_stream()),
    };
    record_viewer(state, post_id, viewer.as_ref(), new_peak.then_some(counts)).await?;
    // The live may have ended between the first read and joining a room created meanwhile.
    let still_live = db::posts::get(&state.db, post_id)
        .await?
        .is_some_and(|post| post.is_in_progress());
    if !still_live {
        // The node that ended it announced it already, maybe before this room existed.
        super::announce_end_here(state, post_id).await;
    }
    let mut queue = VecDeque::from([viewers_event(counts)]);
    for message in db::chat::latest(&state.db, post_id, RECENT_CHAT).await? {
        queue.push_back(chat_event(&message.into()));
    }
    Ok(Feed {
        queue,
        events: Some(events),
        room: Some(room),
        _seat: Some(seat),
    }
    .into_stream())
}

/// Persists a distinct viewer and a new peak, so the Post shows them during the live too.
async fn record_viewer(
    state: &AppState,
    post_id: PostId,
    viewer: Option<&ViewerId>,
    new_peak: Option<ViewerCounts>,
) -> Result<(), LiveError> {
    if viewer.is_none() && new_peak.is_none() {
        return Ok(());
    }
    let mut tx = db::begin_write(&state.db).await?;
    if let Some(viewer) = viewer {
        db::posts::add_viewer(&mut tx, post_id, viewer.as_str(), now_millis()).await?;
    }
    if let Some(counts) = new_peak {
        db::posts::raise_peak(&mut *tx, post_id, counts.peak_viewers).await?;
    }
    tx.commit().await?;
    Ok(())
}
