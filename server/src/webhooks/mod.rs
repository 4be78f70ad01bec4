//! Signed webhooks (Standard Webhooks) that tell the host app what happened to its lives.
//!
//! Every change a webhook reports writes its event into the outbox (`db/webhooks.rs`) in the
//! transaction of the change itself, one row per receiver URL ([`record`]): the event exists
//! exactly when the change does, whatever crashes next. The delivery task of every node
//! (`delivery.rs`) then sends the rows, signed anew for each attempt (`signature.rs`), and
//! retries with backoff until a 2xx or for a day; nothing is sent on a request's path.

pub mod delivery;
pub mod signature;

use anyhow::Context;
use rand_core::{OsRng, RngCore};
use serde::Serialize;
use sqlx::AnyConnection;

use crate::{
    db,
    domain::{now_millis, rfc3339, MediaId, PostId, PublicUrl},
    posts::views::{self, MediaView, PostView},
};
pub use signature::WebhookSecret;

/// How long an event is retried before it stays in the outbox as failed.
pub const RETRY_FOR_MILLIS: i64 = 24 * 3600 * 1000;

/// What happened, as a webhook reports it; [`record`] loads what the event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `live.started`: a live was created.
    LiveStarted(PostId),
    /// `live.ended`: the streamer stopped the live (with its recording, or none).
    LiveEnded(PostId),
    /// `live.interrupted`: the live went silent and the server ended it.
    LiveInterrupted(PostId),
    /// `recording.refinalized`: a recording's file was rewritten by the finalizer.
    RecordingRefinalized(MediaId),
    /// `post.deleted`: a post and its media were deleted.
    PostDeleted(PostId),
}

impl Change {
    /// The event's `type`.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::LiveStarted(_) => "live.started",
            Self::LiveEnded(_) => "live.ended",
            Self::LiveInterrupted(_) => "live.interrupted",
            Self::RecordingRefinalized(_) => "recording.refinalized",
            Self::PostDeleted(_) => "post.deleted",
        }
    }
}

/// The configured receivers, the signing secret and the base of absolute URLs.
pub struct Webhooks {
    urls: Vec<String>,
    secret: Option<WebhookSecret>,
    links: PublicUrl,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("urls", &self.urls)
            .field("links", &self.links)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Checks the receivers (http or https URLs) and that they have a secret to be signed with;
    /// `links` (an absolute base) makes the events' media URLs absolute.
    pub fn new(
        urls: &[String],
        secret: Option<WebhookSecret>,
        links: PublicUrl,
    ) -> anyhow::Result<Self> {
        let urls: Vec<String> = urls
            .iter()
            .map(|url| url.trim())
            .filter(|url| !url.is_empty())
            .map(|url| {
                let parsed = reqwest_os::Url::parse(url)
                    .with_context(|| format!("--webhook-url {url:?} is not a URL"))?;
                anyhow::ensure!(
                    matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some(),
                    "--webhook-url {url:?} must be an http:// or https:// URL"
                );
                Ok(parsed.to_string())
            })
            .collect::<anyhow::Result<_>>()?;
        anyhow::ensure!(
            urls.is_empty() || secret.is_some(),
            "--webhook-url needs --webhook-secret (LIVEKEEP_WEBHOOK_SECRET) to sign the events \
             with: `whsec_` and the base64 of 24 to 64 random bytes, e.g. \
             `whsec_$(openssl rand -base64 32)`"
        );
        Ok(Self {
            urls,
            secret,
            links,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The receivers, as normalized URLs.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The signing secret, when one is configured.
    pub fn secret(&self) -> Option<&WebhookSecret> {
        self.secret.as_ref()
    }

    /// Wakes this node's delivery task: call it once a transaction that [`record`]ed commits.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Completes at the next [`Webhooks::wake`] (or at once if one came since the last wait).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

/// The events, each with the schema of its `data` (for the OpenAPI document's `webhooks`).
pub const EVENTS: [(&str, &str); 5] = [
    ("live.started", "LiveStartedData"),
    ("live.ended", "LiveEndData"),
    ("live.interrupted", "LiveEndData"),
    ("recording.refinalized", "RecordingRefinalizedData"),
    ("post.deleted", "PostDeletedData"),
];

/// `data` of `live.started`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LiveStartedData {
    /// The live's Post, `live_status: live`.
    pub post: PostView,
}

/// `data` of `live.ended` and `live.interrupted`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LiveEndData {
    /// The live's Post as it ended, with its recording in `media_files`.
    pub post: PostView,
    /// The recording; null when the live ended with nothing recorded.
    pub media: Option<MediaView>,
}

/// `data` of `recording.refinalized`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordingRefinalizedData {
    /// The Media with its new file's duration and size.
    pub media: MediaView,
}

/// `data` of `post.deleted`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PostDeletedData {
    /// The deleted post (and live) id.
    pub post_id: i64,
}

/// The signed body: `{"type", "timestamp", "data"}`.
#[derive(Serialize)]
struct Envelope<'a, T> {
    r#type: &'a str,
    timestamp: String,
    data: T,
}

/// The body of `change`'s event, which happened at `now`.
fn event_body<T: Serialize>(change: Change, now: i64, data: T) -> serde_json::Result<String> {
    serde_json::to_string(&Envelope {
        r#type: change.event_type(),
        timestamp: rfc3339(now),
        data,
    })
}

/// Writes the event of `change` into the outbox, one row per receiver, on `conn`: call it
/// inside the transaction that makes the change, after the change (the event carries the
/// Post and Media as they are then), and [`Webhooks::wake`] after the commit.
pub async fn record(
    conn: &mut AnyConnection,
    hooks: &Webhooks,
    change: Change,
) -> anyhow::Result<()> {
    if hooks.urls.is_empty() {
        return Ok(());
    }
    let now = now_millis();
    let body = match change {
        Change::LiveStarted(post) => {
            let post = post_data(conn, hooks, post).await?;
            event_body(change, now, LiveStartedData { post })?
        }
        Change::LiveEnded(post) | Change::LiveInterrupted(post) => {
            let media = db::media::for_live(&mut *conn, post)
                .await?
                .map(|row| MediaView::new(row, &hooks.links));
            let post = post_data(conn, hooks, post).await?;
            event_body(change, now, LiveEndData { post, media })?
        }
        Change::RecordingRefinalized(media) => {
            let row = db::media::get(&mut *conn, media)
                .await?
                .with_context(|| format!("media {media} vanished in its own transaction"))?;
            let media = MediaView::new(row, &hooks.links);
            event_body(change, now, RecordingRefinalizedData { media })?
        }
        Change::PostDeleted(post) => event_body(
            change,
            now,
            PostDeletedData {
                post_id: post.get(),
            },
        )?,
    };
    let webhook_id = new_webhook_id();
    for url in &hooks.urls {
        db::webhooks::insert(
            &mut *conn,
            &db::webhooks::NewDelivery {
                webhook_id: &webhook_id,
                event_type: change.event_type(),
                url,
                body: &body,
                created_at: now,
                give_up_at: now + RETRY_FOR_MILLIS,
            },
        )
        .await
        .context("writing a webhook into the outbox")?;
    }
    Ok(())
}

async fn post_data(
    conn: &mut AnyConnection,
    hooks: &Webhooks,
    post: PostId,
) -> anyhow::Result<PostView> {
    views::post_in(conn, &hooks.links, post)
        .await?
        .with_context(|| format!("post {post} vanished in its own transaction"))
}

/// A `webhook-id`: `msg_` and 128 random bits in hex (no `.`, which the signed content uses
/// as its separator).
fn new_webhook_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    format!("msg_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> PublicUrl {
        PublicUrl::parse("http://lk").unwrap()
    }

    fn secret() -> WebhookSecret {
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap()
    }

    #[test]
    fn receivers_need_a_secret_and_an_http_url() {
        let urls = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let no_secret = Webhooks::new(&urls(&["http://a.test/hook"]), None, links())
            .unwrap_err()
            .to_string();
        assert!(no_secret.contains("--webhook-secret"), "{no_secret}");
        let ftp = Webhooks::new(&urls(&["ftp://a.test/"]), Some(secret()), links())
            .unwrap_err()
            .to_string();
        assert!(ftp.contains("http:// or https://"), "{ftp}");
        assert!(Webhooks::new(&urls(&["not a url"]), Some(secret()), links()).is_err());
        let hooks = Webhooks::new(
            &urls(&["https://a.test/hook", " ", "http://b.test:8000"]),
            Some(secret()),
            links(),
        )
        .unwrap();
        assert_eq!(hooks.urls(), ["https://a.test/hook", "http://b.test:8000/"]);
        assert!(Webhooks::new(&[], None, links()).is_ok());
    }

    #[test]
    fn webhook_ids_are_unique_and_dotless() {
        let (a, b) = (new_webhook_id(), new_webhook_id());
        assert_ne!(a, b);
        assert!(
            a.starts_with("msg_") && !a.contains('.') && a.len() == 36,
            "{a}"
        );
    }
}
