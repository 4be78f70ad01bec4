//! The webhook outbox: one row per (event, receiver URL), claimed by one node at a time.
//!
//! A claim leases due rows: it stamps them with the claiming node's token and moves their
//! `next_attempt_at` to the end of the lease, in one statement. On PostgreSQL its rows are
//! picked `FOR UPDATE SKIP LOCKED`, so nodes claiming at once take different rows; SQLite runs
//! one node. The outcome is recorded only under the same token: a node whose lease ran out
//! (it stalled, another node took the row over) cannot overwrite the newer attempt.

use sqlx::{any::AnyExecutor, FromRow};

use super::{Backend, Db};

/// Where a delivery is in its life.
pub const PENDING: &str = "pending";
/// A 2xx came back.
pub const DELIVERED: &str = "delivered";
/// Retried for the whole window (or refused with 410): stays until redelivered.
pub const FAILED: &str = "failed";

/// An event to write into the outbox for one receiver.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    /// The `webhook-id`, shared by the event's rows.
    pub webhook_id: &'a str,
    /// The event's `type`.
    pub event_type: &'a str,
    /// The receiver.
    pub url: &'a str,
    /// The signed body.
    pub body: &'a str,
    /// When the event happened (Unix ms); it is due at once.
    pub created_at: i64,
    /// Past this (Unix ms), a failed attempt is the last one.
    pub give_up_at: i64,
}

/// A claimed delivery: what one attempt needs.
#[derive(Debug, Clone, FromRow)]
pub struct Claimed {
    /// Row id (what `livekeep admin redeliver` takes).
    pub id: i64,
    /// The `webhook-id`.
    pub webhook_id: String,
    /// The event's `type`.
    pub event_type: String,
    /// The receiver.
    pub url: String,
    /// The signed body.
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// Past this (Unix ms), a failed attempt is the last one.
    pub give_up_at: i64,
}

/// A row as `livekeep admin webhooks` lists it.
#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    /// Row id.
    pub id: i64,
    /// The `webhook-id`.
    pub webhook_id: String,
    /// The event's `type`.
    pub event_type: String,
    /// The receiver.
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the event happened (Unix ms).
    pub created_at: i64,
    /// When it is due (Unix ms): the next attempt, or the end of the lease of one under way.
    pub next_attempt_at: i64,
    /// Whether a node holds it right now (its lease may have run out).
    pub lease_token: Option<String>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The signed body.
    pub body: String,
}

/// What an attempt ended with.
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    /// A 2xx.
    Delivered,
    /// A failure; due again at `next_attempt_at`.
    Retry {
        /// Why.
        error: &'a str,
        /// When (Unix ms).
        next_attempt_at: i64,
    },
    /// A failure after which the row stays failed.
    GiveUp {
        /// Why.
        error: &'a str,
    },
}

/// The outbox's undelivered rows, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Backlog {
    /// Rows still to send.
    pub pending: u64,
    /// Rows given up on.
    pub failed: u64,
    /// Creation of the oldest pending row (Unix ms).
    pub oldest_pending_at: Option<i64>,
}

/// Writes one row, due at once.
pub async fn insert(db: impl AnyExecutor<'_>, new: &NewDelivery<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_outbox
            (webhook_id, event_type, url, body, created_at, next_attempt_at, give_up_at)
         VALUES ($1, $2, $3, $4, $5, $5, $6)",
    )
    .bind(new.webhook_id)
    .bind(new.event_type)
    .bind(new.url)
    .bind(new.body)
    .bind(new.created_at)
    .bind(new.give_up_at)
    .execute(db)
    .await?;
    Ok(())
}

const CLAIMED_COLUMNS: &str = "id, webhook_id, event_type, url, body, attempts, give_up_at";

/// Leases up to `limit` rows due at `now` to `token` until `lease_end`; oldest due first.
pub async fn claim_due(
    db: &Db,
    token: &str,
    now: i64,
    lease_end: i64,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    // Rows another node is claiming at this instant are skipped, not waited for.
    let lock = match super::backend(db) {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let mut rows: Vec<Claimed> = sqlx::query_as(&format!(
        "UPDATE webhook_outbox SET lease_token = $1, next_attempt_at = $2
         WHERE id IN (SELECT id FROM webhook_outbox
                      WHERE state = 'pending' AND next_attempt_at <= $3
                      ORDER BY next_attempt_at, id LIMIT $4 {lock})
         RETURNING {CLAIMED_COLUMNS}"
    ))
    .bind(token)
    .bind(lease_end)
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.sort_by_key(|row| row.id);
    Ok(rows)
}

/// Makes row `id` pending and leases it to `token` at once, whatever its state, unless a node
/// is attempting it right now (`None` then, as when there is no such row). The retry window
/// starts again.
pub async fn claim_one(
    db: &Db,
    id: i64,
    token: &str,
    now: i64,
    lease_end: i64,
    give_up_at: i64,
) -> Result<Option<Claimed>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE webhook_outbox
         SET state = 'pending', lease_token = $1, next_attempt_at = $2, give_up_at = $3
         WHERE id = $4
           AND NOT (state = 'pending' AND lease_token IS NOT NULL AND next_attempt_at > $5)
         RETURNING {CLAIMED_COLUMNS}"
    ))
    .bind(token)
    .bind(lease_end)
    .bind(give_up_at)
    .bind(id)
    .bind(now)
    .fetch_optional(db)
    .await
}

/// Records the outcome of an attempt made under `token`; false if the lease was lost.
pub async fn finish(
    db: &Db,
    id: i64,
    token: &str,
    now: i64,
    outcome: &Outcome<'_>,
) -> Result<bool, sqlx::Error> {
    let (state, next, error, delivered_at) = match *outcome {
        Outcome::Delivered => (DELIVERED, now, None, Some(now)),
        Outcome::Retry {
            error,
            next_attempt_at,
        } => (PENDING, next_attempt_at, Some(error), None),
        Outcome::GiveUp { error } => (FAILED, now, Some(error), None),
    };
    let done = sqlx::query(
        "UPDATE webhook_outbox
         SET state = $1, next_attempt_at = $2, last_error = $3, delivered_at = $4,
             last_attempt_at = $5, attempts = attempts + 1, lease_token = NULL
         WHERE id = $6 AND lease_token = $7",
    )
    .bind(state)
    .bind(next)
    .bind(error)
    .bind(delivered_at)
    .bind(now)
    .bind(id)
    .bind(token)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Hands back a row leased to `token` without an attempt (shutdown): due at `now`.
pub async fn release(db: &Db, id: i64, token: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_outbox SET lease_token = NULL, next_attempt_at = $1
         WHERE id = $2 AND lease_token = $3",
    )
    .bind(now)
    .bind(id)
    .bind(token)
    .execute(db)
    .await?;
    Ok(())
}

/// When the earliest pending row is due (Unix ms), if any.
pub async fn next_due(db: impl AnyExecutor<'_>) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM webhook_outbox WHERE state = 'pending'")
        .fetch_one(db)
        .await
}

/// Undelivered rows (pending and failed), oldest first.
pub async fn undelivered(db: impl AnyExecutor<'_>) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, webhook_id, event_type, url, state, attempts, created_at, next_attempt_at,
                lease_token, last_error, body
         FROM webhook_outbox WHERE state <> 'delivered' ORDER BY id",
    )
    .fetch_all(db)
    .await
}

/// One row by id.
pub async fn get(db: impl AnyExecutor<'_>, id: i64) -> Result<Option<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, webhook_id, event_type, url, state, attempts, created_at, next_attempt_at,
                lease_token, last_error, body
         FROM webhook_outbox WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// How many rows wait, how many failed, and how old the oldest waiting one is.
pub async fn backlog(db: impl AnyExecutor<'_>) -> Result<Backlog, sqlx::Error> {
    let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT state, COUNT(*), MIN(created_at) FROM webhook_outbox
         WHERE state <> 'delivered' GROUP BY state",
    )
    .fetch_all(db)
    .await?;
    let mut backlog = Backlog::default();
    for (state, count, oldest) in rows {
        let count = u64::try_from(count).unwrap_or(0);
        match state.as_str() {
            PENDING => {
                backlog.pending = count;
                backlog.oldest_pending_at = oldest;
            }
            FAILED => backlog.failed = count,
            _ => {}
        }
    }
    Ok(backlog)
}

/// Deletes delivered rows older than `cutoff` (Unix ms); returns how many.
pub async fn prune_delivered(db: impl AnyExecutor<'_>, cutoff: i64) -> Result<u64, sqlx::Error> {
    let done =
        sqlx::query("DELETE FROM webhook_outbox WHERE state = 'delivered' AND delivered_at < $1")
            .bind(cutoff)
            .execute(db)
            .await?;
    Ok(done.rows_affected())
}
