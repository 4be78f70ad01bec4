//! Failed logins per name and per client IP, counted by every node (`rate_limit`).

use sqlx::any::AnyExecutor;

/// Records an attempt as failed at `now` under `scope` (`name` or `ip`); returns its id.
pub async fn insert(
    db: impl AnyExecutor<'_>,
    scope: &str,
    subject: &str,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO login_failures (scope, subject, failed_at) VALUES ($1, $2, $3)
         RETURNING id",
    )
    .bind(scope)
    .bind(subject)
    .bind(now)
    .fetch_one(db)
    .await
}

/// Times of the latest `limit` failures of `subject` after `since`, other than `except`,
/// newest first.
pub async fn latest(
    db: impl AnyExecutor<'_>,
    scope: &str,
    subject: &str,
    since: i64,
    except: i64,
    limit: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT failed_at FROM login_failures
         WHERE scope = $1 AND subject = $2 AND failed_at > $3 AND id <> $4
         ORDER BY failed_at DESC LIMIT $5",
    )
    .bind(scope)
    .bind(subject)
    .bind(since)
    .bind(except)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Deletes one recorded attempt.
pub async fn delete(db: impl AnyExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_failures WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes every failure of `subject`.
pub async fn delete_subject(
    db: impl AnyExecutor<'_>,
    scope: &str,
    subject: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_failures WHERE scope = $1 AND subject = $2")
        .bind(scope)
        .bind(subject)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes failures at or before `cutoff`; returns how many.
pub async fn prune(db: impl AnyExecutor<'_>, cutoff: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM login_failures WHERE failed_at <= $1")
        .bind(cutoff)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}
