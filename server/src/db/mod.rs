//! All SQL lives here, one module per table group.
//!
//! Every query is written once, in the SQL that SQLite and PostgreSQL share (`$n` parameters,
//! `RETURNING`, `ON CONFLICT`, `TRUE`/`FALSE`, no `MAX(a, b)`), and runs on either through
//! sqlx's Any driver. What differs between the engines stays in this file (connection set-up)
//! and in the twin `migrations/sqlite` and `migrations/postgres`, which
//! `tests/api/schema.rs` holds to one reference schema.

pub mod chat;
pub mod login_failures;
pub mod media;
pub mod posts;
pub mod uploads;
pub mod users;

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    any::{AnyPoolOptions, AnyTypeInfo, AnyTypeInfoKind, AnyValueRef},
    error::BoxDynError,
    sqlite::{SqliteConnectOptions, SqliteJournalMode},
    Any, AnyPool, ConnectOptions, Connection, Decode, Executor, Type, ValueRef,
};

/// The database, SQLite or PostgreSQL: one pool type so every query is written once.
pub type Db = AnyPool;

/// Which engine a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one file, one node.
    Sqlite,
    /// The path to several nodes.
    Postgres,
}

impl Backend {
    /// The engine of `url`, by its scheme.
    pub fn of_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0;
        match scheme {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            _ => None,
        }
    }
}

/// The engine behind an open pool.
pub fn backend(db: &Db) -> Backend {
    Backend::of_url(db.connect_options().database_url.as_str()).unwrap_or(Backend::Sqlite)
}

/// Connections per pool: SQLite has one writer anyway; PostgreSQL is shared by every node.
const SQLITE_CONNECTIONS: u32 = 8;
const POSTGRES_CONNECTIONS: u32 = 16;

/// Opens the database named by `url` (`sqlite:` creates the file if missing; `postgres:`) and
/// runs that engine's migrations.
pub async fn connect(url: &str) -> anyhow::Result<Db> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of_url(url).with_context(|| {
        format!("unsupported database URL {url:?}: expected sqlite:… or postgres://…")
    })?;
    let pool = match backend {
        Backend::Sqlite => {
            create_sqlite(url).await?;
            AnyPoolOptions::new()
                .max_connections(SQLITE_CONNECTIONS)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // Per connection: the Any driver takes no SQLite options but the URL's.
                        // FULL: a committed upload offset must survive a power cut.
                        conn.execute(
                            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                             PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await
        }
        Backend::Postgres => {
            AnyPoolOptions::new()
                .max_connections(POSTGRES_CONNECTIONS)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
        }
    }
    .with_context(|| format!("opening database {}", redacted(url)))?;
    let migrator = match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    migrator
        .run(&pool)
        .await
        .context("running database migrations")?;
    Ok(pool)
}

/// Creates the SQLite file if missing and switches it to WAL, which the file remembers.
async fn create_sqlite(url: &str) -> anyhow::Result<()> {
    let conn = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("parsing database URL {url:?}"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await
        .with_context(|| format!("creating database {url:?}"))?;
    conn.close().await.ok();
    Ok(())
}

/// `url` without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A boolean column: BOOLEAN on PostgreSQL, a 0/1 INTEGER on SQLite (which has no booleans).
/// Rows decode it with `#[sqlx(try_from = "Flag")]` into a plain `bool`.
#[derive(Debug, Clone, Copy)]
pub struct Flag(bool);

impl From<Flag> for bool {
    fn from(flag: Flag) -> Self {
        flag.0
    }
}

impl Type<Any> for Flag {
    fn type_info() -> AnyTypeInfo {
        <bool as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        ty.kind() == AnyTypeInfoKind::Bool || ty.kind().is_integer()
    }
}

impl<'r> Decode<'r, Any> for Flag {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.type_info().kind() == AnyTypeInfoKind::Bool {
            <bool as Decode<Any>>::decode(value).map(Flag)
        } else {
            <i64 as Decode<Any>>::decode(value).map(|n| Flag(n != 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_engine() {
        assert_eq!(
            Backend::of_url("sqlite:///srv/lk.db"),
            Some(Backend::Sqlite)
        );
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("mysql://u@h/db"), None);
        assert_eq!(Backend::of_url("livekeep.db"), None);
    }

    #[test]
    fn passwords_do_not_reach_messages() {
        assert_eq!(
            redacted("postgres://lk:s3cret@db:5432/lk"),
            "postgres://lk:***@db:5432/lk"
        );
        assert_eq!(redacted("postgres://lk@db/lk"), "postgres://lk@db/lk");
        assert_eq!(redacted("sqlite:///a@b/x.db"), "sqlite:///a@b/x.db");
    }

    #[tokio::test]
    async fn flags_decode_from_sqlite_integers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = connect(&url).await.expect("connect");
        let (yes, no): (Flag, Flag) = sqlx::query_as("SELECT 1, 0")
            .fetch_one(&db)
            .await
            .expect("select");
        assert!(bool::from(yes));
        assert!(!bool::from(no));
    }
}
