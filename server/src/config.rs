//! Command line and environment configuration (the "Running the server" table of API.md).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

use crate::domain::ByteSize;

/// The `livekeep` command line.
#[derive(Debug, Parser)]
#[command(
    name = "livekeep",
    version,
    about = "Livekeep: live recordings that survive the tab"
)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server settings, accepted before or after the subcommand.
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands of `livekeep`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Maintenance on the data directory. On PostgreSQL they take the same locks as the
    /// running nodes; on SQLite the locks live in the server's process, so run them while it
    /// is stopped or on lives no recorder is writing to.
    #[command(subcommand)]
    Admin(AdminCommand),
}

/// `livekeep admin …`: maintenance commands over the same database and storage.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an account; prints its id. Without --password-stdin a random password is printed.
    CreateUser {
        /// 1–32 of `[A-Za-z0-9_.-]`.
        name: String,
        /// Read the password (8 characters or more) from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List lives, oldest first: id, status, author, start, end, title.
    ListLives {
        /// Only lives with this status.
        #[arg(long, value_parser = ["live", "ended", "interrupted"])]
        status: Option<String>,
    },
    /// Finalize a stuck live now with the bytes the server holds, as `interrupted`, as the
    /// sweeper does after `--interrupt-after` seconds of silence.
    FinalizeLive {
        /// The live's id (its post id).
        live_id: i64,
    },
    /// Re-run the finalizer over a stored recording, replacing its file (duration, size, cues).
    Refinalize {
        /// The media's id.
        media_id: i64,
    },
    /// Delete a post with its media, their files and posters, its uploads and chat.
    DeletePost {
        /// The post's id.
        post_id: i64,
    },
}

/// Everything the server needs to start; each flag also reads its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (the real one is printed).
    #[arg(
        long,
        env = "LIVEKEEP_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Directory for the SQLite database and local media storage.
    #[arg(
        long,
        env = "LIVEKEEP_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://<path>` (default `sqlite://<data-dir>/livekeep.db`) or
    /// `postgres://user:password@host/db` for several nodes sharing one database.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Where media and uploads live: `file:///dir` (the default, `file://<data-dir>/media`) or
    /// `s3://bucket/prefix` configured by the usual `AWS_*` variables (`AWS_ENDPOINT_URL`,
    /// `AWS_ALLOW_HTTP`, …); `gs://` and `az://` with the `gcs` / `azure` features.
    #[arg(long, env = "LIVEKEEP_STORAGE_URL", global = true)]
    pub storage_url: Option<String>,

    /// The built `www` page, served at `/`; a missing directory means API only.
    #[arg(
        long,
        env = "LIVEKEEP_WWW_DIR",
        default_value = "./www/dist",
        global = true
    )]
    pub www_dir: PathBuf,

    /// Seconds without upload activity before a live that was never stopped is finalized as interrupted.
    #[arg(long, env = "LIVEKEEP_INTERRUPT_AFTER", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub interrupt_after: u64,

    /// Largest recording accepted, like `8GiB` (advertised as `Tus-Max-Size`).
    #[arg(
        long,
        env = "LIVEKEEP_MAX_UPLOAD_SIZE",
        default_value = "8GiB",
        global = true
    )]
    pub max_upload_size: ByteSize,

    /// Largest body of one PATCH, like `64MiB`; a recorder sends a few seconds per PATCH.
    #[arg(
        long,
        env = "LIVEKEEP_MAX_PATCH_SIZE",
        default_value = "64MiB",
        global = true
    )]
    pub max_patch_size: ByteSize,

    /// On an object store, the size small PATCH pieces are compacted into, and of a finalized
    /// media's multipart parts (S3 needs at least 5MiB).
    #[arg(
        long,
        env = "LIVEKEEP_STORAGE_PART_SIZE",
        default_value = "5MiB",
        global = true
    )]
    pub storage_part_size: ByteSize,

    /// Seconds an upload stays resumable after its last activity (tus `Upload-Expires`).
    #[arg(
        long,
        env = "LIVEKEEP_UPLOAD_EXPIRY",
        default_value_t = 86_400,
        global = true
    )]
    pub upload_expiry: u64,

    /// Seconds a PATCH body may send nothing before it is abandoned and its bytes dropped.
    #[arg(
        long,
        env = "LIVEKEEP_PATCH_IDLE_TIMEOUT",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub patch_idle_timeout: u64,

    /// Seconds a stored file no row names must age before the start-up check deletes it;
    /// default 0 on SQLite (one node), 3600 on PostgreSQL (other nodes may be mid-write).
    #[arg(long, env = "LIVEKEEP_ORPHAN_GRACE", global = true)]
    pub orphan_grace: Option<u64>,

    /// Origins allowed to call the API from another site; repeatable or comma-separated.
    #[arg(
        long = "cors-origin",
        env = "LIVEKEEP_CORS_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub cors_origins: Vec<String>,

    /// On PostgreSQL, connections of this node's coordination pool (at least 3): one per lock
    /// held (each PATCH in flight holds one, a stop two) plus the notification listener's.
    /// Count nodes × (this + 17: the queries' 16 and the notification sender's) against
    /// PostgreSQL's `max_connections`.
    #[arg(long, env = "LIVEKEEP_COORDINATION_CONNECTIONS", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(3..), global = true)]
    pub coordination_connections: u32,

    /// Connections served at once; above it a connection gets a 503 and is closed.
    #[arg(long, env = "LIVEKEEP_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_connections: u32,

    /// Seconds a client may take to send a request's headers (from the connection's accept, or
    /// from the first byte of a next request on a kept-alive connection).
    #[arg(long, env = "LIVEKEEP_HEADER_READ_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub header_read_timeout: u64,

    /// Seconds a kept-alive connection may idle between requests. Keep it above the idle
    /// timeout of a load balancer or proxy in front (60 s on AWS ALB), so it closes first.
    #[arg(long, env = "LIVEKEEP_KEEP_ALIVE_TIMEOUT", default_value_t = 75,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub keep_alive_timeout: u64,
}

impl Config {
    /// A configuration with the documented defaults below `data_dir` (for tests and embedding).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.into(),
            database_url: None,
            storage_url: None,
            www_dir: PathBuf::from("./www/dist"),
            interrupt_after: 120,
            max_upload_size: ByteSize(8 << 30),
            max_patch_size: ByteSize(64 << 20),
            storage_part_size: ByteSize(crate::storage::DEFAULT_PART_SIZE),
            upload_expiry: 86_400,
            patch_idle_timeout: 60,
            orphan_grace: None,
            cors_origins: Vec::new(),
            coordination_connections: 32,
            max_connections: 10_000,
            header_read_timeout: 10,
            keep_alive_timeout: 75,
        }
    }

    /// The database URL, defaulting below the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("livekeep.db").display()))
    }

    /// The storage URL, defaulting below the data directory.
    pub fn storage_url(&self) -> String {
        self.storage_url
            .clone()
            .unwrap_or_else(|| format!("file://{}", self.data_dir.join("media").display()))
    }

    /// How long a live may stay silent before the server finalizes it.
    pub fn interrupt_after(&self) -> Duration {
        Duration::from_secs(self.interrupt_after)
    }

    /// How long an upload stays resumable after its last activity.
    pub fn upload_expiry(&self) -> Duration {
        Duration::from_secs(self.upload_expiry)
    }

    /// How old a file without a row must be before the start-up check deletes it.
    pub fn orphan_grace(&self) -> Duration {
        let default = match crate::db::Backend::of_url(&self.database_url()) {
            Some(crate::db::Backend::Postgres) => 3600,
            _ => 0,
        };
        Duration::from_secs(self.orphan_grace.unwrap_or(default))
    }

    /// How long a client may take to send a request's headers.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout)
    }

    /// How long a kept-alive connection may idle between requests.
    pub fn keep_alive_timeout(&self) -> Duration {
        Duration::from_secs(self.keep_alive_timeout)
    }

    /// How long a PATCH body may stall before the server gives up on it.
    pub fn patch_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.patch_idle_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_accepts_flags_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "livekeep",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-upload-size",
            "1GiB",
            "--cors-origin",
            "http://a.test,http://b.test",
            "--cors-origin",
            "http://c.test",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Serve)));
        assert_eq!(cli.config.listen.port(), 0);
        assert_eq!(cli.config.max_upload_size.bytes(), 1 << 30);
        assert_eq!(cli.config.cors_origins.len(), 3);
    }

    #[test]
    fn defaults_live_below_the_data_dir() {
        let cli = Cli::try_parse_from(["livekeep", "--data-dir", "/srv/lk"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.config.database_url(), "sqlite:///srv/lk/livekeep.db");
        assert_eq!(cli.config.storage_url(), "file:///srv/lk/media");
        assert_eq!(cli.config.interrupt_after, 120);
    }

    #[test]
    fn connection_limits_have_defaults_and_flags() {
        let cli = Cli::try_parse_from(["livekeep"]).unwrap();
        assert_eq!(cli.config.max_connections, 10_000);
        assert_eq!(cli.config.header_read_timeout(), Duration::from_secs(10));
        assert_eq!(cli.config.keep_alive_timeout(), Duration::from_secs(75));
        assert_eq!(cli.config.coordination_connections, 32);
        let cli = Cli::try_parse_from([
            "livekeep",
            "--max-connections",
            "50",
            "--header-read-timeout",
            "3",
            "--keep-alive-timeout",
            "30",
            "--coordination-connections",
            "64",
        ])
        .unwrap();
        assert_eq!(cli.config.max_connections, 50);
        assert_eq!(cli.config.header_read_timeout, 3);
        assert_eq!(cli.config.keep_alive_timeout, 30);
        assert_eq!(cli.config.coordination_connections, 64);
        assert!(Cli::try_parse_from(["livekeep", "--coordination-connections", "2"]).is_err());
        assert!(Cli::try_parse_from(["livekeep", "--max-connections", "0"]).is_err());
    }

    #[test]
    fn a_zero_interrupt_window_is_rejected() {
        assert!(Cli::try_parse_from(["livekeep", "--interrupt-after", "0"]).is_err());
    }
}
