//! Sliding-window rate limits that hold for the whole cluster: chat messages per user, failed
//! logins per name and per client IP.
//!
//! The counts are rows in the database every node shares, read and written by the same SQL on
//! SQLite and PostgreSQL: N nodes behind a load balancer allow what one node allows, and a
//! restart forgets nothing. A limit allows `max` events in any `window`: one more is refused
//! until the `max`-th latest has left the window, and `Retry-After` says when that is.
//!
//! - **Chat** counts the author's own rows in `chat_messages` (every message is stored anyway),
//!   in the transaction that inserts the message, after locking the author's row: one user's
//!   messages are checked and inserted one at a time across all nodes, so the limit is exact
//!   even for messages sent at once through several nodes.
//! - **Logins** count rows of `login_failures`. An attempt is recorded as a failure *before*
//!   its password is checked, then the other rows are counted: of attempts made at once on any
//!   nodes, each sees those whose insert committed before its own, so at most `max` go on to
//!   the password check. Until its outcome, an attempt in progress counts as a failure for the
//!   others (failing closed for the length of a password check), and a node that dies mid-check
//!   leaves it counted. A refused attempt deletes its rows: it checked nothing, and must not
//!   push the end of the block back. A success deletes the name's failures and its own row for
//!   the IP, as the in-memory limiter did.
//! - **Growth**: only attempts whose password was checked stay in `login_failures`, so it grows
//!   no faster than the nodes run argon2, and the sweeper deletes rows older than the window.
//!   Names are cut to [`NAME_CHARS`] characters (no account has a longer one), so a row stays
//!   small whatever name an attacker sends.
//!
//! Times are each node's clock: nodes whose clocks disagree by a second count a second more or
//! less of the window.

use std::{net::IpAddr, time::Duration};

use sqlx::AnyConnection;

use crate::{
    db::{self, Db},
    domain::now_millis,
};

/// Why an event was refused.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// The limit is reached; one more event is allowed after this many seconds.
    #[error("too many requests; retry in {0} s")]
    Exceeded(u64),
    /// The counts could not be read or written.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// At most `max` events in any `window`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Events allowed per window.
    pub max: usize,
    /// The sliding window.
    pub window: Duration,
}

/// Chat messages per user.
pub const CHAT: Limit = Limit {
    max: 5,
    window: Duration::from_secs(10),
};
/// Failed logins per username (case-folded).
pub const LOGIN_PER_NAME: Limit = Limit {
    max: 10,
    window: Duration::from_secs(5 * 60),
};
/// Failed logins per client IP: more than per name, as one address may be a household or an
/// office behind NAT.
pub const LOGIN_PER_IP: Limit = Limit {
    max: 50,
    window: Duration::from_secs(5 * 60),
};

/// Names are counted by their first this many characters (usernames have at most 32).
pub const NAME_CHARS: usize = 64;

const NAME: &str = "name";
const IP: &str = "ip";

impl Limit {
    fn window_millis(self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }

    /// Events after this time (Unix ms) are in the window ending at `now`.
    fn since(self, now: i64) -> i64 {
        now.saturating_sub(self.window_millis())
    }

    /// How long one more event must wait, given the times of the latest events in the window
    /// (newest first); `None` if it is allowed now.
    fn wait(self, latest: &[i64], now: i64) -> Option<Duration> {
        let leaving = *latest.get(self.max.checked_sub(1)?)?;
        let millis = leaving.saturating_add(self.window_millis()) - now;
        Some(Duration::from_millis(u64::try_from(millis).unwrap_or(0)))
    }

    fn max_rows(self) -> i64 {
        i64::try_from(self.max).unwrap_or(i64::MAX)
    }
}

/// Whole seconds for `Retry-After`, rounded up so a client waiting that long is accepted.
fn retry_after(wait: Duration) -> RateLimitError {
    RateLimitError::Exceeded(wait.as_secs_f64().ceil().max(1.0) as u64)
}

/// Refuses a chat message by `user_id` beyond [`CHAT`]. Call it in the transaction that
/// inserts the message, before the insert: the author's row stays locked until it ends.
pub async fn check_chat(conn: &mut AnyConnection, user_id: i64) -> Result<(), RateLimitError> {
    db::users::lock(&mut *conn, user_id).await?;
    // Read after the lock: the messages of the transaction that held it are committed.
    let now = now_millis();
    let latest =
        db::chat::latest_times_by(&mut *conn, user_id, CHAT.since(now), CHAT.max_rows()).await?;
    match CHAT.wait(&latest, now) {
        Some(wait) => Err(retry_after(wait)),
        None => Ok(()),
    }
}

/// A login attempt whose password is being checked, counted meanwhile as a failure of its
/// name and IP; it stays counted unless it [succeeded](Self::succeeded).
#[derive(Debug)]
pub struct LoginAttempt {
    name: String,
    name_row: i64,
    ip_row: Option<i64>,
}

/// Counts an attempt for `username` from `ip` (when known) as failed, or refuses it if the name
/// or the IP already has its limit of failures in the window.
pub async fn begin_login(
    db: &Db,
    username: &str,
    ip: Option<IpAddr>,
) -> Result<LoginAttempt, RateLimitError> {
    let now = now_millis();
    let name: String = username
        .chars()
        .take(NAME_CHARS)
        .collect::<String>()
        .to_lowercase();
    let name_row = db::login_failures::insert(db, NAME, &name, now).await?;
    let ip = ip.map(|ip| ip.to_string());
    let ip_row = match &ip {
        Some(ip) => Some(db::login_failures::insert(db, IP, ip, now).await?),
        None => None,
    };
    let attempt = LoginAttempt {
        name,
        name_row,
        ip_row,
    };
    let mut wait = failures_wait(db, NAME, &attempt.name, name_row, LOGIN_PER_NAME, now).await?;
    if let (Some(ip), Some(ip_row)) = (&ip, ip_row) {
        wait = wait.max(failures_wait(db, IP, ip, ip_row, LOGIN_PER_IP, now).await?);
    }
    match wait {
        Some(wait) => {
            attempt.forget(db).await?;
            Err(retry_after(wait))
        }
        None => Ok(attempt),
    }
}

/// How long `subject` is still blocked, counting every failure but the attempt's own `row`.
async fn failures_wait(
    db: &Db,
    scope: &str,
    subject: &str,
    row: i64,
    limit: Limit,
    now: i64,
) -> Result<Option<Duration>, sqlx::Error> {
    let latest =
        db::login_failures::latest(db, scope, subject, limit.since(now), row, limit.max_rows())
            .await?;
    Ok(limit.wait(&latest, now))
}

impl LoginAttempt {
    /// The password was right: the name's failures are forgotten, the IP's stay (so one known
    /// account cannot be used to reset an IP guessing others), this attempt aside.
    pub async fn succeeded(self, db: &Db) -> Result<(), sqlx::Error> {
        db::login_failures::delete_subject(db, NAME, &self.name).await?;
        if let Some(row) = self.ip_row {
            db::login_failures::delete(db, row).await?;
        }
        Ok(())
    }

    /// Uncounts a refused attempt.
    async fn forget(self, db: &Db) -> Result<(), sqlx::Error> {
        db::login_failures::delete(db, self.name_row).await?;
        if let Some(row) = self.ip_row {
            db::login_failures::delete(db, row).await?;
        }
        Ok(())
    }
}

/// Deletes login failures that have left every window; returns how many.
pub async fn prune(db: &Db) -> Result<u64, sqlx::Error> {
    let now = now_millis();
    let cutoff = LOGIN_PER_NAME.since(now).min(LOGIN_PER_IP.since(now));
    db::login_failures::prune(db, cutoff).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_event_in_the_window_waits_until_the_first_leaves_it() {
        let limit = Limit {
            max: 5,
            window: Duration::from_secs(10),
        };
        let at = |secs: i64| 1_000_000 + secs * 1000;
        // Newest first, as the queries return them.
        let mut latest: Vec<i64> = (0..5).rev().map(at).collect();
        assert_eq!(limit.wait(&latest[1..], at(6)), None, "four so far");
        assert_eq!(limit.wait(&latest, at(6)), Some(Duration::from_secs(4)));
        // The queries return only the window's events: at 10 s, the first has left it.
        latest.pop();
        assert_eq!(limit.wait(&latest, at(10)), None);
    }

    #[test]
    fn only_the_max_th_latest_event_decides_the_wait() {
        let limit = Limit {
            max: 2,
            window: Duration::from_secs(60),
        };
        // Three at once (a race, or a failure counted during an attempt): the second latest
        // leaving the window is what lets the next one in.
        assert_eq!(
            limit.wait(&[50_000, 40_000, 10_000], 55_000),
            Some(Duration::from_secs(45))
        );
        assert_eq!(limit.since(55_000), -5_000);
    }

    #[test]
    fn retry_after_rounds_up_to_a_whole_second() {
        for (wait, secs) in [(1, 1), (999, 1), (1000, 1), (1001, 2), (299_500, 300)] {
            let RateLimitError::Exceeded(got) = retry_after(Duration::from_millis(wait)) else {
                panic!("a 429");
            };
            assert_eq!(got, secs, "{wait} ms");
        }
    }
}
