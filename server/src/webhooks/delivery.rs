//! The delivery task: sends the outbox's due rows, a few at once, and records each outcome.
//!
//! Each node runs one. It wakes when this node commits an event ([`super::Webhooks::wake`]),
//! when a retry falls due, and every [`POLL`] otherwise (events committed by another node or
//! by an admin command). It leases the rows it sends (`db/webhooks.rs`), so on several nodes
//! each row is attempted by one node at a time, and a node that dies mid-attempt leaves its
//! rows due again when [`LEASE`] runs out. Every attempt is signed with its own timestamp:
//! receivers refuse timestamps more than five minutes old.

use std::{
    collections::HashMap,
    error::Error as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use rand_core::{OsRng, RngCore};
use tokio::{sync::watch, task::JoinSet};

use super::{WebhookSecret, Webhooks, RETRY_FOR_MILLIS};
use crate::{
    db::{
        self,
        webhooks::{Claimed, Outcome},
        Db,
    },
    domain::now_millis,
    metrics::Metrics,
};

/// How long one attempt may take, connection included, before it counts as a timeout.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed row stays with the node attempting it: well above [`ATTEMPT_TIMEOUT`].
pub const LEASE: Duration = Duration::from_secs(30);
/// How often the task looks for rows it was not woken for.
pub const POLL: Duration = Duration::from_secs(2);
/// Attempts one node makes at once: a receiver that hangs holds one slot, not the others.
const IN_FLIGHT: usize = 16;
/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// How much of a receiver's answer is kept as the last error.
const ERROR_BODY_BYTES: usize = 200;

/// Why an attempt failed, as `/metrics` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// An answer other than 2xx (redirects are not followed).
    Rejected,
    /// No answer within [`ATTEMPT_TIMEOUT`].
    Timeout,
    /// No connection: refused, reset, unknown host.
    Unreachable,
    /// Anything else (a TLS failure, a malformed answer).
    Error,
}

impl Failure {
    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Error => "error",
        }
    }
}

/// What one attempt got.
#[derive(Debug, Clone)]
pub enum Attempt {
    /// A 2xx.
    Delivered {
        /// The status.
        status: u16,
    },
    /// Anything else.
    Failed {
        /// What kind of failure.
        failure: Failure,
        /// For the outbox's `last_error` and the log.
        error: String,
        /// The receiver's `Retry-After`, in seconds.
        retry_after: Option<Duration>,
        /// 410 Gone: the receiver wants no more; the row fails at once.
        gone: bool,
    },
}

impl Attempt {
    /// The `outcome` label of `/metrics`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered { .. } => "delivered",
            Self::Failed { failure, .. } => failure.label(),
        }
    }
}

/// An attempt and what was recorded after it.
#[derive(Debug, Clone)]
pub struct Report {
    /// What the receiver did.
    pub attempt: Attempt,
    /// When the row is due again (Unix ms), when it will be retried.
    pub next_attempt_at: Option<i64>,
    /// The row is now failed for good.
    pub gave_up: bool,
}

/// Signs and sends one row over HTTP.
pub struct Sender {
    client: reqwest_os::Client,
    secret: WebhookSecret,
}

impl Sender {
    /// A sender that signs with `secret`; redirects are failures, as the specification says.
    pub fn new(secret: WebhookSecret) -> anyhow::Result<Self> {
        // reqwest is built without a default TLS provider: use ring, as object_store does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest_os::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest_os::redirect::Policy::none())
            .user_agent(concat!("Livekeep-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the webhook HTTP client")?;
        Ok(Self { client, secret })
    }

    /// POSTs the row's body to its URL, signed for now.
    pub async fn attempt(&self, row: &Claimed) -> Attempt {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self.secret.sign(&row.webhook_id, timestamp, &row.body);
        let sent = self
            .client
            .post(&row.url)
            .header("content-type", "application/json")
            .header("webhook-id", &row.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(row.body.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(err) => return failed_request(err),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Delivered {
                status: status.as_u16(),
            };
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut excerpt = Vec::new();
        while excerpt.len() < ERROR_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                _ => break,
            }
        }
        excerpt.truncate(ERROR_BODY_BYTES);
        let excerpt = String::from_utf8_lossy(&excerpt);
        let excerpt = excerpt.trim();
        Attempt::Failed {
            failure: Failure::Rejected,
            error: if excerpt.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {excerpt}")
            },
            retry_after,
            gone: status.as_u16() == 410,
        }
    }
}

fn failed_request(err: reqwest_os::Error) -> Attempt {
    let failure = if err.is_timeout() {
        Failure::Timeout
    } else if err.is_connect() {
        Failure::Unreachable
    } else {
        Failure::Error
    };
    // reqwest's own message is generic ("error sending request"): its causes say what happened.
    let err = err.without_url();
    let mut error = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        error.push_str(": ");
        error.push_str(&next.to_string());
        cause = next.source();
    }
    Attempt::Failed {
        failure,
        error,
        retry_after: None,
        gone: false,
    }
}

/// The wait after the `failures`-th failed attempt in a row: 1 s, 2 s, 4 s… up to an hour,
/// each ±20 % by `jitter` (in [0, 1)), so that receivers back from an outage are not hit by
/// every event at the same instant.
pub fn backoff(failures: i64, jitter: f64) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let base = Duration::from_secs(1u64 << doublings).min(MAX_DELAY);
    base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

fn jitter() -> f64 {
    f64::from(OsRng.next_u32()) / (f64::from(u32::MAX) + 1.0)
}

/// A claim's token: which node (and which claim) holds a row.
fn claim_token() -> String {
    let mut bytes = [0u8; 12];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Attempts a row claimed under `token` and records the outcome: delivered, due again after
/// a backoff, or failed for good once its retry window is over (or on 410 Gone).
pub async fn deliver(
    db: &Db,
    sender: &Sender,
    metrics: &Metrics,
    row: &Claimed,
    token: &str,
) -> anyhow::Result<Report> {
    let attempt = sender.attempt(row).await;
    metrics.webhook_attempt(&row.event_type, attempt.label());
    let now = now_millis();
    let failures = row.attempts + 1;
    let (outcome, report) = match &attempt {
        Attempt::Delivered { .. } => (
            Outcome::Delivered,
            Report {
                attempt: attempt.clone(),
                next_attempt_at: None,
                gave_up: false,
            },
        ),
        Attempt::Failed {
            error,
            retry_after,
            gone,
            ..
        } => {
            if *gone || now >= row.give_up_at {
                (
                    Outcome::GiveUp { error },
                    Report {
                        attempt: attempt.clone(),
                        next_attempt_at: None,
                        gave_up: true,
                    },
                )
            } else {
                let asked = retry_after.unwrap_or_default().min(MAX_DELAY);
                let next = now + millis(backoff(failures, jitter()).max(asked));
                (
                    Outcome::Retry {
                        error,
                        next_attempt_at: next,
                    },
                    Report {
                        attempt: attempt.clone(),
                        next_attempt_at: Some(next),
                        gave_up: false,
                    },
                )
            }
        }
    };
    let kept = db::webhooks::finish(db, row.id, token, now, &outcome)
        .await
        .context("recording a webhook attempt")?;
    match (&attempt, kept) {
        (_, false) => tracing::warn!(
            delivery = row.id,
            "a webhook attempt outlived its lease; another attempt owns the row now"
        ),
        (Attempt::Delivered { status }, true) => tracing::info!(
            delivery = row.id,
            webhook_id = %row.webhook_id,
            event = %row.event_type,
            url = %row.url,
            status,
            "webhook delivered"
        ),
        (Attempt::Failed { error, .. }, true) if report.gave_up => tracing::error!(
            delivery = row.id,
            webhook_id = %row.webhook_id,
            event = %row.event_type,
            url = %row.url,
            attempts = failures,
            error = %error,
            "webhook failed for good; `livekeep admin redeliver {}` sends it again",
            row.id
        ),
        (Attempt::Failed { error, .. }, true) => tracing::warn!(
            delivery = row.id,
            webhook_id = %row.webhook_id,
            event = %row.event_type,
            url = %row.url,
            attempts = failures,
            error = %error,
            retry_in_ms = report.next_attempt_at.unwrap_or(now) - now,
            "webhook attempt failed; will retry"
        ),
    }
    Ok(report)
}

/// Why `livekeep admin redeliver` did not send a row.
#[derive(Debug, thiserror::Error)]
pub enum RedeliverError {
    /// No such row.
    #[error("webhook delivery {0} does not exist (`livekeep admin webhooks` lists them)")]
    NotFound(i64),
    /// A node is attempting it right now.
    #[error("webhook delivery {0} is being attempted by a server right now; try again shortly")]
    Busy(i64),
    /// No secret to sign with.
    #[error("redelivering needs the server's --webhook-secret (LIVEKEEP_WEBHOOK_SECRET)")]
    NoSecret,
    /// The database failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Sends row `id` now, whatever its state (failed for good, or even delivered), with a new
/// retry window: the same `webhook-id`, so a receiver that has it already can skip it. If the
/// attempt fails, the servers retry it as any other.
pub async fn redeliver(
    db: &Db,
    hooks: &Webhooks,
    metrics: &Metrics,
    id: i64,
) -> Result<Report, RedeliverError> {
    let secret = hooks.secret().cloned().ok_or(RedeliverError::NoSecret)?;
    let sender = Sender::new(secret)?;
    let token = claim_token();
    let now = now_millis();
    let claimed = db::webhooks::claim_one(
        db,
        id,
        &token,
        now,
        now + millis(LEASE),
        now + RETRY_FOR_MILLIS,
    )
    .await
    .context("claiming the delivery")?;
    let Some(row) = claimed else {
        let exists = db::webhooks::get(db, id)
            .await
            .context("reading the delivery")?
            .is_some();
        return Err(if exists {
            RedeliverError::Busy(id)
        } else {
            RedeliverError::NotFound(id)
        });
    };
    Ok(deliver(db, &sender, metrics, &row, &token).await?)
}

/// Rows this node holds: row id → claim token, handed back at shutdown.
type Leased = Arc<Mutex<HashMap<i64, String>>>;

/// Sends due rows until `shutdown` flips; in-flight attempts are then abandoned and their rows
/// handed back, due at once (a receiver may get that event twice; its id says so).
pub async fn run(
    db: Db,
    hooks: Arc<Webhooks>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(secret) = hooks.secret().cloned() else {
        return;
    };
    let sender = match Sender::new(secret) {
        Ok(sender) => Arc::new(sender),
        Err(err) => {
            tracing::error!(error = ?err, "webhooks cannot be sent");
            return;
        }
    };
    let leased: Leased = Arc::default();
    let mut attempts = JoinSet::new();
    loop {
        claim_and_send(&db, &sender, &metrics, &leased, &mut attempts).await;
        let wait = if attempts.len() < IN_FLIGHT {
            until_next_due(&db).await
        } else {
            POLL
        };
        tokio::select! {
            () = hooks.woken() => {}
            () = tokio::time::sleep(wait) => {}
            Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    attempts.shutdown().await;
    let held: Vec<(i64, String)> = leased
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    for (id, token) in held {
        if let Err(err) = db::webhooks::release(&db, id, &token, now_millis()).await {
            tracing::warn!(delivery = id, error = ?err, "could not hand back a webhook delivery");
        }
    }
}

/// Claims as many due rows as there are free slots and starts an attempt for each.
async fn claim_and_send(
    db: &Db,
    sender: &Arc<Sender>,
    metrics: &Arc<Metrics>,
    leased: &Leased,
    attempts: &mut JoinSet<()>,
) {
    while attempts.len() < IN_FLIGHT {
        let free = IN_FLIGHT - attempts.len();
        let token = claim_token();
        let now = now_millis();
        let limit = i64::try_from(free).unwrap_or(1);
        let rows = match db::webhooks::claim_due(db, &token, now, now + millis(LEASE), limit).await
        {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(error = ?err, "could not claim webhook deliveries");
                return;
            }
        };
        let claimed = rows.len();
        for row in rows {
            leased
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(row.id, token.clone());
            let (db, sender, metrics, leased, token) = (
                db.clone(),
                Arc::clone(sender),
                Arc::clone(metrics),
                Arc::clone(leased),
                token.clone(),
            );
            attempts.spawn(async move {
                if let Err(err) = deliver(&db, &sender, &metrics, &row, &token).await {
                    // The lease runs out and the row is attempted again.
                    tracing::warn!(delivery = row.id, error = ?err, "webhook attempt not recorded");
                }
                leased
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&row.id);
            });
        }
        if claimed < free {
            return;
        }
    }
}

/// How long to sleep: until the earliest pending row is due, at most [`POLL`].
async fn until_next_due(db: &Db) -> Duration {
    let floor = Duration::from_millis(50);
    match db::webhooks::next_due(db).await {
        Ok(Some(due)) => {
            let wait = u64::try_from(due - now_millis()).unwrap_or(0);
            Duration::from_millis(wait).clamp(floor, POLL)
        }
        Ok(None) => POLL,
        Err(err) => {
            tracing::warn!(error = ?err, "could not read when the next webhook is due");
            POLL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_retries_come_within_seconds_then_back_off_to_an_hour() {
        let middle = |n| backoff(n, 0.5);
        assert_eq!(middle(1), Duration::from_secs(1));
        assert_eq!(middle(2), Duration::from_secs(2));
        assert_eq!(middle(3), Duration::from_secs(4));
        assert_eq!(middle(12), Duration::from_secs(2048));
        assert_eq!(middle(13), MAX_DELAY);
        assert_eq!(middle(500), MAX_DELAY);
        assert_eq!(backoff(1, 0.0), Duration::from_millis(800));
        assert!(backoff(1, 0.999_999) < Duration::from_millis(1200));
    }

    #[test]
    fn a_day_of_retries_is_a_few_dozen_attempts() {
        let (mut elapsed, mut failures) = (Duration::ZERO, 0);
        while elapsed < Duration::from_secs(24 * 3600) {
            failures += 1;
            elapsed += backoff(failures, 0.5);
        }
        assert!((30..=40).contains(&failures), "{failures} attempts");
    }

    #[test]
    fn jitter_stays_in_its_interval() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
