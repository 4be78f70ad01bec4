//! All SQL lives here, one module per table group.
//!
//! Every query is written once, in the SQL that SQLite and PostgreSQL share (`$n` parameters,
//! `RETURNING`, `ON CONFLICT`, `TRUE`/`FALSE`, no `MAX(a, b)`), and runs on either through
//! sqlx's Any driver. What differs between the engines stays in this file (connection set-up)
//! and in the twin `migrations/sqlite` and `migrations/postgres`, which
//! `tests/api/schema.rs` holds to one reference schema.

pub mod chat;
mod columns;
pub mod group_commit;
pub mod login_failures;
pub mod media;
pub mod offsets;
pub mod posts;
pub mod uploads;
pub mod users;
pub mod webhooks;

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    any::{AnyPoolOptions, AnyTypeInfo, AnyTypeInfoKind, AnyValueRef},
    error::BoxDynError,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode},
    Any, AnyPool, ConnectOptions, Connection, Decode, Executor, PgPool, Type, ValueRef,
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

/// Set on every SQLite connection: the Any driver takes no SQLite options but the URL's.
/// FULL: a committed upload offset must survive a power cut.
const SQLITE_PRAGMAS: &str =
    "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";

/// A connection of its own on `db`'s database, outside the pool, set up as the pool's are:
/// for a writer that must not queue behind the pool's readers.
pub async fn dedicated_connection(db: &Db) -> Result<sqlx::AnyConnection, sqlx::Error> {
    let mut conn = sqlx::AnyConnection::connect_with(&db.connect_options()).await?;
    if backend(db) == Backend::Sqlite {
        conn.execute(SQLITE_PRAGMAS).await?;
    }
    Ok(conn)
}

/// Begins a transaction that writes. On SQLite it takes the write lock before its first
/// statement (`BEGIN IMMEDIATE`): a deferred transaction that reads before it writes fails at
/// once, without waiting out `busy_timeout`, when another connection commits between its read
/// and its first write (SQLITE_BUSY_SNAPSHOT, "database is locked"). PostgreSQL's BEGIN has
/// no such failure.
pub async fn begin_write(db: &Db) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
    match backend(db) {
        Backend::Sqlite => db.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => db.begin().await,
    }
}

/// [`begin_write`] on a connection of its own.
pub async fn begin_write_on(
    conn: &mut sqlx::AnyConnection,
) -> Result<sqlx::Transaction<'_, Any>, sqlx::Error> {
    if conn.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME {
        conn.begin_with("BEGIN IMMEDIATE").await
    } else {
        conn.begin().await
    }
}

/// Connections per pool: SQLite has one writer anyway; PostgreSQL is shared by every node.
const SQLITE_CONNECTIONS: u32 = 8;
const POSTGRES_CONNECTIONS: u32 = 16;

/// Opens the database named by `url` (`sqlite:` creates the file if missing; `postgres:`) and
/// runs that engine's migrations. On PostgreSQL, a request waits at most `acquire_timeout` for
/// a connection (the server away or restarting): it then fails, as unavailable.
pub async fn connect(url: &str, acquire_timeout: Duration) -> anyhow::Result<Db> {
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
                        conn.execute(SQLITE_PRAGMAS).await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await
        }
        Backend::Postgres => {
            AnyPoolOptions::new()
                .max_connections(POSTGRES_CONNECTIONS)
                .acquire_timeout(acquire_timeout)
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

/// Opens the coordination pool of `connections` on `url` when it is PostgreSQL (several nodes
/// may share it): the connections that hold locks (one per PATCH in flight) and carry live
/// notices. `None` on SQLite, where one node needs neither. Acquiring a connection and each
/// statement (all short: a lock, a check, an unlock) are bounded by `timeout`.
pub async fn connect_coordination(
    url: &str,
    connections: u32,
    timeout: Duration,
) -> anyhow::Result<Option<PgPool>> {
    if Backend::of_url(url) != Some(Backend::Postgres) {
        return Ok(None);
    }
    let statement_timeout = format!("{}ms", timeout.as_millis());
    let options = PgConnectOptions::from_str(url)
        .context("parsing the PostgreSQL URL for coordination")?
        .options([("statement_timeout", statement_timeout.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await
        .context("opening the coordination connections to PostgreSQL")?;
    Ok(Some(pool))
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

/// Whether the database answers a query (for `/healthz`).
pub async fn ping(db: &Db) -> Result<(), sqlx::Error> {
    sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(db)
        .await?;
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
        let db = connect(&url, Duration::from_secs(10))
            .await
            .expect("connect");
        let (yes, no): (Flag, Flag) = sqlx::query_as("SELECT 1, 0")
            .fetch_one(&db)
            .await
            .expect("select");
        assert!(bool::from(yes));
        assert!(!bool::from(no));
    }
}
