//! `livekeep admin …`: maintenance commands that call the server's own functions on the same
//! database and storage, print one clear result and fail with a clear message.

use std::io::BufRead;

use anyhow::{bail, Context};
use rand_core::{OsRng, RngCore};

use crate::{
    auth,
    config::{AdminCommand, Config},
    db, deletion,
    domain::{rfc3339, Password, Username},
    error::ApiError,
    recording,
    startup::open_state,
    state::AppState,
};

/// Runs one admin command and returns what to print.
pub async fn run(config: &Config, command: AdminCommand) -> anyhow::Result<String> {
    let state = open_state(config).await?;
    let result = match command {
        AdminCommand::CreateUser {
            name,
            password_stdin,
        } => create_user(&state, &name, password_stdin).await,
        AdminCommand::ListLives { status } => list_lives(&state, status.as_deref()).await,
        AdminCommand::FinalizeLive { live_id } => finalize_live(&state, live_id).await,
        AdminCommand::Refinalize { media_id } => refinalize(&state, media_id).await,
        AdminCommand::DeletePost { post_id } => delete_post(&state, post_id).await,
    };
    state.db.close().await;
    result
}

/// An `ApiError` as a sentence for the terminal (`not_found` alone would not say what).
fn explain(what: &str, err: ApiError) -> anyhow::Error {
    match err {
        ApiError::NotFound => anyhow::anyhow!("{what} does not exist"),
        other => anyhow::Error::new(other).context(what.to_owned()),
    }
}

async fn create_user(state: &AppState, name: &str, from_stdin: bool) -> anyhow::Result<String> {
    let username = Username::parse(name).map_err(|err| anyhow::anyhow!("{err}"))?;
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
    let password = Password::parse(&raw).map_err(|err| anyhow::anyhow!("{err}"))?;
    let user = auth::create_user(state, &username, password)
        .await
        .map_err(|err| match err {
            ApiError::Conflict { .. } => anyhow::anyhow!("the name {name:?} is already taken"),
            other => anyhow::Error::new(other).context("creating the user"),
        })?;
    Ok(match shown {
        Some(password) => format!(
            "created user {} (id {}) with password {password}",
            user.username, user.id
        ),
        None => format!("created user {} (id {})", user.username, user.id),
    })
}

async fn list_lives(state: &AppState, status: Option<&str>) -> anyhow::Result<String> {
    let lives = db::posts::lives(&state.db, status).await?;
    let mut out = String::from("id\tstatus\tauthor\tstarted_at\tended_at\ttitle");
    for live in &lives {
        let time = |ms: Option<i64>| ms.map(rfc3339).unwrap_or_else(|| "-".to_owned());
        out.push_str(&format!(
            "\n{}\t{}\t{}\t{}\t{}\t{}",
            live.id,
            live.live_status.as_deref().unwrap_or("-"),
            live.author_username,
            time(live.started_at),
            time(live.ended_at),
            live.content,
        ));
    }
    out.push_str(&format!("\n{} live(s)", lives.len()));
    Ok(out)
}

async fn finalize_live(state: &AppState, live_id: i64) -> anyhow::Result<String> {
    let what = format!("live {live_id}");
    let post = db::posts::get(&state.db, live_id)
        .await?
        .filter(|post| post.is_live)
        .with_context(|| format!("{what} does not exist"))?;
    if let Some(status) = post.live_status.as_deref().filter(|s| *s != "live") {
        bail!("{what} is not live anymore (status {status})");
    }
    let upload = db::uploads::latest_for_post(&state.db, live_id).await?;
    // A cutoff in the future: every live is "silent" before it, as the sweeper would judge.
    recording::interrupt(state, live_id, i64::MAX)
        .await
        .map_err(|err| explain(&what, err))?;
    let post = db::posts::get(&state.db, live_id)
        .await?
        .with_context(|| format!("{what} vanished while being finalized"))?;
    let status = post.live_status.as_deref().unwrap_or("-");
    if status == "live" {
        bail!("{what} is busy (a request holds it); try again");
    }
    let media = db::media::for_live(&state.db, live_id).await?;
    if let (None, Some(upload)) = (&media, upload) {
        let after = db::uploads::get(&state.db, &upload.id).await?;
        if after.is_some_and(|u| u.state == "failed") {
            bail!(
                "{what} is now interrupted, but its recording could not be finalized; the raw \
                 bytes are kept as upload {} (the log above says why)",
                upload.id
            );
        }
    }
    Ok(match media {
        Some(media) => format!(
            "finalized {what} as {status}: media {} ({} bytes, {:.1} s)",
            media.id, media.size, media.duration
        ),
        None => format!("finalized {what} as {status}: no bytes were held, so no media"),
    })
}

async fn refinalize(state: &AppState, media_id: i64) -> anyhow::Result<String> {
    let what = format!("media {media_id}");
    let done = recording::refinalize(state, media_id)
        .await
        .map_err(|err| explain(&what, err))?;
    Ok(format!(
        "refinalized {what}: {} bytes, {:.1} s, {} cue points",
        done.size, done.duration_secs, done.cue_points
    ))
}

async fn delete_post(state: &AppState, post_id: i64) -> anyhow::Result<String> {
    let what = format!("post {post_id}");
    let done = deletion::delete_post(state, post_id)
        .await
        .map_err(|err| explain(&what, err))?;
    Ok(format!(
        "deleted {what}: {} stored file(s), {} upload file(s)",
        done.files, done.uploads
    ))
}
