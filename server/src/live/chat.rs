//! Posting in a live's chat.

use super::LiveError;
use crate::{
    accounts::rate_limit,
    db::{self, chat::ChatRow, users::UserRow},
    domain::{now_millis, ChatBody, PostId},
    posts::views::ChatMessageView,
    rooms::bus::Notice,
    state::AppState,
};

/// Posts `body` in live `post_id` as `user`, stamped with its offset in the recording.
pub async fn post(
    state: &AppState,
    user: &UserRow,
    post_id: PostId,
    body: &ChatBody,
) -> Result<ChatMessageView, LiveError> {
    let post = db::posts::get_live(&state.db, post_id)
        .await?
        .ok_or(LiveError::NotFound)?;
    if !post.is_in_progress() {
        return Err(LiveError::ChatClosed);
    }
    let mut tx = db::begin_write(&state.db).await?;
    rate_limit::check_chat(&mut tx, user.id).await?;
    let now = now_millis();
    // Counted and checked in one statement: a message never lands after the live ended.
    let Some(recording_start) = db::chat::count_live_message(&mut *tx, post_id).await? else {
        return Err(LiveError::ChatClosed);
    };
    let offset_secs = (now - recording_start).max(0) as f64 / 1000.0;
    let id = db::chat::insert(&mut *tx, post_id, user.id, body.as_str(), offset_secs, now).await?;
    tx.commit().await?;
    let message = ChatMessageView::from(ChatRow {
        id,
        post_id,
        author_id: user.id,
        author_username: user.username.clone(),
        author_external_id: user.external_id.clone(),
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
