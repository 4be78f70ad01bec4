//! Background work: finalize lives that went silent, clean up expired uploads, forget old
//! login failures.

use std::time::Duration;

use tokio::sync::watch;

use crate::{
    db, domain::now_millis, domain::UploadId, locks, rate_limit, recording, state::AppState,
};

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
/// window.
pub async fn sweep_once(state: &AppState) -> anyhow::Result<()> {
    let window = i64::try_from(state.settings.interrupt_after.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_millis().saturating_sub(window);
    for post_id in db::posts::silent_lives(&state.db, cutoff).await? {
        if let Err(err) = recording::interrupt(state, post_id, cutoff).await {
            tracing::error!(post = post_id, error = ?err, "could not interrupt a silent live");
        }
    }
    for upload in db::uploads::expired(&state.db, now_millis()).await? {
        let Some(_guard) = state.locks.try_lock(&locks::upload_key(&upload.id)).await? else {
            continue; // A PATCH is running; it will extend the expiry.
        };
        let Ok(id) = UploadId::parse(&upload.id) else {
            continue;
        };
        let still_expired = db::uploads::get(&state.db, &upload.id)
            .await?
            .is_some_and(|row| row.state == "open" && row.expires_at < now_millis());
        if !still_expired {
            continue;
        }
        db::uploads::set_state(&state.db, &upload.id, "expired").await?;
        state
            .with_storage(move |s| Ok(s.delete_upload(&id)?))
            .await?;
        tracing::info!(upload = %upload.id, "expired an upload");
    }
    // Every node does it; deleting what another node just deleted is harmless.
    rate_limit::prune(&state.db).await?;
    Ok(())
}
