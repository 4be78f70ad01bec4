//! Posting in a live's chat.

use super::bus::Notice;
use crate::{
    db::{self, chat::ChatRow, users::UserRow},
    domain::{now_millis, ChatBody},
    error::ApiError,
    rate_limit,
    state::AppState,
    views::ChatMessageView,
};

/// Posts `body` in live `post_id` as `user`, stamped with its offset in the recording.
pub async fn post(
    state: &AppState,
    user: &UserRow,
    post_id: i64,
    body: &ChatBody,
) -> Result<ChatMessageView, ApiError> {
    let post = db::posts::get(&state.db, post_id)
        .await?
        .filter(|post| post.is_live)
        .ok_or(ApiError::NotFound)?;
    if post.live_status.as_deref() != Some("live") {
        return Err(live_ended());
    }
    let mut tx = state.db.begin().await?;
    rate_limit::check_chat(&mut tx, user.id).await?;
    let now = now_millis();
    // Counted and checked in one statement: a message never lands after the live ended.
    let Some(recording_start) = db::chat::count_live_message(&mut *tx, post_id).await? else {
        return Err(live_ended());
    };
    let offset_secs = (now - recording_start).max(0) as f64 / 1000.0;
    let id = db::chat::insert(&mut *tx, post_id, user.id, body.as_str(), offset_secs, now).await?;
    tx.commit().await?;
    let message = ChatMessageView::from(ChatRow {
        id,
        post_id,
        author_id: user.id,
        author_username: user.username.clone(),
        body: body.as_str().to_owned(),
        offset_secs,
        created_at: now,
    });
    if let Some(room) = state.hub.get(post_id) {
        room.publish_chat(&message);
    }
    if let Some(bus) = state.hub.bus() {
        match serde_json::to_value(&message) {
            Ok(json) => bus.publish(Notice::Chat {
                post: post_id,
                message: json,
            }),
            Err(err) => tracing::error!(error = ?err, "could not encode a chat message"),
        }
    }
    Ok(message)
}

fn live_ended() -> ApiError {
    ApiError::conflict("live_ended", "this live has ended; its chat is closed")
}
