//! `livekeep admin …`: maintenance commands that call the server's own functions on the same
//! database and storage, print one clear result and fail with a clear message.

use std::io::BufRead;

use anyhow::{bail, Context};
use rand_core::{OsRng, RngCore};

use crate::{
    accounts,
    config::AdminCommand,
    db,
    domain::{now_millis, rfc3339, LiveStatus, MediaId, Password, PostId, UploadState, Username},
    ops::deletion,
    recording,
    state::AppState,
    webhooks::delivery::{self, Attempt},
};

/// Runs one admin command on the server's state and returns what to print.
pub async fn run(state: &AppState, command: AdminCommand) -> anyhow::Result<String> {
    match command {
        AdminCommand::CreateUser {
            name,
            password_stdin,
        } => create_user(state, &name, password_stdin).await,
        AdminCommand::ListLives { status } => list_lives(state, status.as_deref()).await,
        AdminCommand::FinalizeLive { live_id } => finalize_live(state, PostId::new(live_id)).await,
        AdminCommand::Refinalize { media_id } => refinalize(state, MediaId::new(media_id)).await,
        AdminCommand::DeletePost { post_id } => delete_post(state, PostId::new(post_id)).await,
        AdminCommand::Webhooks => list_webhooks(state).await,
        AdminCommand::Redeliver { id } => redeliver(state, id).await,
    }
}

async fn create_user(state: &AppState, name: &str, from_stdin: bool) -> anyhow::Result<String> {
    let username = Username::parse(name)?;
    let (raw, shown) = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        (line.trim_end_matches(['\r', '\n']).to_owned(), None)
    } else {
        let mut bytes = [0u8; 12];
        OsRng.fill_bytes(&mut bytes);
        let generated = hex::encode(bytes);
        (generated.clone(), Some(generated))
    };
    let password = Password::parse(&raw)?;
    let user = accounts::create_user(&state.db, &username, password).await?;
    Ok(match shown {
        Some(password) => format!(
            "created user {} (id {}) with password {password}",
            user.username, user.id
        ),
        None => format!("created user {} (id {})", user.username, user.id),
    })
}

async fn list_lives(state: &AppState, status: Option<&str>) -> anyhow::Result<String> {
    let status = status.map(str::parse::<LiveStatus>).transpose()?;
    let lives = db::posts::lives(&state.db, status).await?;
    let mut out = String::from("id\tstatus\tauthor\tstarted_at\tended_at\ttitle");
    for live in &lives {
        let time = |ms: Option<i64>| ms.map(rfc3339).unwrap_or_else(|| "-".to_owned());
        out.push_str(&format!(
            "\n{}\t{}\t{}\t{}\t{}\t{}",
            live.id,
            live.live_status.map_or("-", LiveStatus::as_str),
            live.author_username,
            time(live.started_at),
            time(live.ended_at),
            live.content,
        ));
    }
    out.push_str(&format!("\n{} live(s)", lives.len()));
    Ok(out)
}

async fn finalize_live(state: &AppState, live_id: PostId) -> anyhow::Result<String> {
    let what = format!("live {live_id}");
    let post = db::posts::get_live(&state.db, live_id)
        .await?
        .with_context(|| format!("{what} does not exist"))?;
    if let Some(status) = post.live_status.filter(|s| *s != LiveStatus::Live) {
        bail!("{what} is not live anymore (status {status})");
    }
    let upload = db::uploads::latest_for_post(&state.db, live_id).await?;
    // A cutoff in the future: every live is "silent" before it, as the sweeper would judge.
    recording::interrupt(state, live_id, i64::MAX)
        .await
        .with_context(|| what.clone())?;
    let post = db::posts::get(&state.db, live_id)
        .await?
        .with_context(|| format!("{what} vanished while being finalized"))?;
    if post.is_in_progress() {
        bail!("{what} is busy (a request holds it); try again");
    }
    let status = post.live_status.map_or("-", LiveStatus::as_str);
    let media = db::media::for_live(&state.db, live_id).await?;
    if let (None, Some(upload)) = (&media, upload) {
        let after = db::uploads::get(&state.db, &upload.id).await?;
        if after.is_some_and(|u| u.state == UploadState::Failed) {
            bail!(
                "{what} is now interrupted, but its recording could not be finalized; the raw \
                 bytes are kept as upload {} (the log above says why)",
                upload.id
            );
        }
    }
    let queued = queued(state, "live.interrupted");
    Ok(match media {
        Some(media) => format!(
            "finalized {what} as {status}: media {} ({} bytes, {:.1} s){queued}",
            media.id, media.size, media.duration
        ),
        None => format!("finalized {what} as {status}: no bytes were held, so no media{queued}"),
    })
}

async fn refinalize(state: &AppState, media_id: MediaId) -> anyhow::Result<String> {
    let done = recording::refinalize::refinalize(state, media_id).await?;
    Ok(format!(
        "refinalized media {media_id}: {} bytes, {:.1} s, {} cue points{}",
        done.size,
        done.duration_secs,
        done.cue_points,
        queued(state, "recording.refinalized")
    ))
}

async fn delete_post(state: &AppState, post_id: PostId) -> anyhow::Result<String> {
    let done = deletion::delete_post(state, post_id).await?;
    Ok(format!(
        "deleted post {post_id}: {} stored file(s), {} upload file(s){}",
        done.files,
        done.uploads,
        queued(state, "post.deleted")
    ))
}

/// What a command that made a change says of its webhook.
fn queued(state: &AppState, event_type: &str) -> String {
    match state.webhooks.urls().len() {
        0 => String::new(),
        n => format!("; {event_type} queued for {n} webhook URL(s)"),
    }
}

async fn list_webhooks(state: &AppState) -> anyhow::Result<String> {
    let rows = db::webhooks::undelivered(&state.db).await?;
    let now = now_millis();
    let mut out = String::from("id	webhook_id	type	url	state	attempts	next_attempt	last_error");
    for row in &rows {
        let next = match row.state.as_str() {
            db::webhooks::FAILED => "-".to_owned(),
            _ if row.lease_token.is_some() && row.next_attempt_at > now => "now".to_owned(),
            _ => rfc3339(row.next_attempt_at),
        };
        out.push_str(&format!(
            "\n{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            row.id,
            row.webhook_id,
            row.event_type,
            row.url,
            row.state,
            row.attempts,
            next,
            row.last_error
                .as_deref()
                .unwrap_or("-")
                .replace(['\t', '\n', '\r'], " "),
        ));
    }
    out.push_str(&format!("\n{} undelivered webhook(s)", rows.len()));
    Ok(out)
}

async fn redeliver(state: &AppState, id: i64) -> anyhow::Result<String> {
    let report = delivery::redeliver(&state.db, &state.webhooks, &state.metrics, id).await?;
    Ok(match (&report.attempt, report.next_attempt_at) {
        (Attempt::Delivered { status }, _) => {
            format!("webhook delivery {id} delivered (HTTP {status})")
        }
        (Attempt::Failed { error, .. }, Some(next)) => format!(
            "webhook delivery {id} failed again ({error}); the servers retry it from {}",
            rfc3339(next)
        ),
        (Attempt::Failed { error, .. }, None) => {
            format!("webhook delivery {id} failed for good ({error})")
        }
    })
}
