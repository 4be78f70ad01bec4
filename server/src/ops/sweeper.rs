//! Background work: finalize lives that went silent, clean up expired uploads, forget old
//! login failures and webhooks delivered long ago, assemble the layout media a crash or a
//! failure left (object stores).

use std::time::Duration;

use tokio::sync::watch;

use crate::{
    accounts::rate_limit, db, domain::now_millis, recording, state::AppState, uploads::expiry,
};

/// How long a delivered webhook stays in the outbox (for `livekeep admin redeliver`).
const KEEP_DELIVERED_MILLIS: i64 = 7 * 24 * 3600 * 1000;

/// How often to sweep: a quarter of the shorter window, between 100 ms and 30 s.
pub fn interval(state: &AppState) -> Duration {
    let window = state
        .settings
        .interrupt_after
        .min(state.settings.upload_expiry);
    (window / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

/// Sweeps at start (lives left open by a crash) and then periodically until `shutdown` flips.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let period = interval(&state);
    loop {
        if let Err(err) = sweep_once(&state).await {
            tracing::error!(error = ?err, "sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass: interrupt silent lives, expire stale uploads, delete login failures past their
/// window and webhooks delivered more than a week ago.
pub async fn sweep_once(state: &AppState) -> anyhow::Result<()> {
    let window = i64::try_from(state.settings.interrupt_after.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_millis().saturating_sub(window);
    for post_id in db::posts::silent_lives(&state.db, cutoff).await? {
        if let Err(err) = recording::interrupt(state, post_id, cutoff).await {
            tracing::error!(post = %post_id, error = ?err, "could not interrupt a silent live");
        }
    }
    expiry::expire_stale(state).await?;
    // Every node does it; deleting what another node just deleted is harmless.
    rate_limit::prune(&state.db).await?;
    db::webhooks::prune_delivered(&state.db, now_millis() - KEEP_DELIVERED_MILLIS).await?;
    let cleared = db::uploads::drop_closed_indexes(&state.db).await?;
    if cleared > 0 {
        tracing::info!(
            uploads = cleared,
            "dropped the saved indexes of closed uploads"
        );
    }
    if state.media.assembles_layouts() {
        // In the background: copies may take a while, and each media has its own lock.
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(err) = recording::assembly::assemble_pending(&state).await {
                tracing::warn!(error = ?err, "could not list the media to assemble");
            }
        });
    }
    Ok(())
}
