//! Command line and environment configuration (the "Running the server" table of API.md).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::{
    domain::{ByteSize, PublicUrl},
    webhooks::WebhookSecret,
};

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
    /// List the webhook deliveries not delivered yet (pending or failed), oldest first: id,
    /// event type, URL, state, attempts, next attempt, last error.
    Webhooks,
    /// Send one webhook delivery again now, even if it failed for good or was delivered, with
    /// its webhook-id and a new day of retries; prints what the receiver answered.
    Redeliver {
        /// The delivery's id (the first column of `livekeep admin webhooks`).
        id: i64,
    },
}

/// Who may sign in, and how (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Livekeep's own accounts: register, login, session tokens.
    Builtin,
    /// Only JWTs minted by the host app; register and login answer 403.
    Jwt,
    /// Both: a bearer token without dots is a session token, one with dots a JWT.
    Both,
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

    /// Where to send signed webhooks (Standard Webhooks) of lives and posts; repeatable or
    /// comma-separated. Needs --webhook-secret.
    #[arg(
        long = "webhook-url",
        env = "LIVEKEEP_WEBHOOK_URLS",
        value_delimiter = ',',
        global = true
    )]
    pub webhook_urls: Vec<String>,

    /// The secret webhooks are signed with: `whsec_` followed by the base64 of 24 to 64 random
    /// bytes (`whsec_$(openssl rand -base64 32)`); the receivers verify with it.
    #[arg(
        long,
        env = "LIVEKEEP_WEBHOOK_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub webhook_secret: Option<WebhookSecret>,

    /// On PostgreSQL, this node's coordination connections (at least 3): one listens for the
    /// other nodes' notifications, the others hold its locks, many each (a lock costs a
    /// statement to take and one to release, not a connection while held). Count nodes ×
    /// (this + 17: the queries' 16 and the notification sender's) against PostgreSQL's
    /// `max_connections`.
    #[arg(long, env = "LIVEKEEP_COORDINATION_CONNECTIONS", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(3..), global = true)]
    pub coordination_connections: u32,

    /// Seconds an upload operation on an object store (a PATCH's reconciliation, its piece's
    /// put) may take, retries included, before the request is answered 503
    /// `storage_unavailable` with `Retry-After`; connecting to the store and retrying any of its
    /// requests give up after it too.
    #[arg(long, env = "LIVEKEEP_OBJECT_STORE_TIMEOUT", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub object_store_timeout: u64,

    /// Seconds a request waits for a database connection (PostgreSQL away or restarting,
    /// every connection busy) before it is answered 503 `database_unavailable` with
    /// `Retry-After`; on PostgreSQL also the bound of each lock statement.
    #[arg(long, env = "LIVEKEEP_DATABASE_TIMEOUT", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub database_timeout: u64,

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

    /// Who may sign in: `builtin` (Livekeep's accounts), `jwt` (only the host app's tokens) or
    /// `both`; default `jwt` when a JWT key is given, `builtin` otherwise.
    #[arg(long, env = "LIVEKEEP_AUTH", value_enum, global = true)]
    pub auth: Option<AuthMode>,

    /// The host app's HS256 secret for its JWTs (at least 32 bytes).
    #[arg(
        long,
        env = "LIVEKEEP_AUTH_JWT_SECRET",
        conflicts_with = "auth_jwt_public_key",
        hide_env_values = true,
        global = true
    )]
    pub auth_jwt_secret: Option<String>,

    /// A PEM file with the host app's public key for its JWTs: RSA (RS256), EC P-256 (ES256)
    /// or Ed25519 (EdDSA); the algorithm follows the key.
    #[arg(long, env = "LIVEKEEP_AUTH_JWT_PUBLIC_KEY", global = true)]
    pub auth_jwt_public_key: Option<PathBuf>,

    /// When set, a JWT's `iss` must be exactly this.
    #[arg(long, env = "LIVEKEEP_AUTH_JWT_ISSUER", global = true)]
    pub auth_jwt_issuer: Option<String>,

    /// When set, a JWT's `aud` must name this; without it, a JWT with an `aud` is refused.
    #[arg(long, env = "LIVEKEEP_AUTH_JWT_AUDIENCE", global = true)]
    pub auth_jwt_audience: Option<String>,

    /// Proxies in front of the server (CIDRs or addresses; repeatable or comma-separated):
    /// from these peers only, the client address is read from `X-Forwarded-For` or `Forwarded`.
    #[arg(
        long,
        env = "LIVEKEEP_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = parse_network,
        global = true
    )]
    pub trusted_proxies: Vec<IpNet>,

    /// The URL people reach the server at, like `https://host.example/livekeep`: absolute
    /// URLs (`Location`, `upload_url`, `file_url`) use it, and its path prefix is served.
    #[arg(long, env = "LIVEKEEP_PUBLIC_URL", value_parser = parse_public_url, global = true)]
    pub public_url: Option<PublicUrl>,
}

/// A network of `--trusted-proxies`: a CIDR, or one address (`/32`, `/128`).
fn parse_network(raw: &str) -> Result<IpNet, String> {
    let raw = raw.trim();
    raw.parse::<IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{raw:?} is neither a CIDR (10.0.0.0/8, fd00::/8) nor an address"))
}

fn parse_public_url(raw: &str) -> Result<PublicUrl, String> {
    PublicUrl::parse(raw).map_err(|err| err.0)
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
            webhook_urls: Vec::new(),
            webhook_secret: None,
            coordination_connections: 32,
            object_store_timeout: 5,
            database_timeout: 5,
            max_connections: 10_000,
            header_read_timeout: 10,
            keep_alive_timeout: 75,
            auth: None,
            auth_jwt_secret: None,
            auth_jwt_public_key: None,
            auth_jwt_issuer: None,
            auth_jwt_audience: None,
            trusted_proxies: Vec::new(),
            public_url: None,
        }
    }

    /// The sign-in mode: as given, else `jwt` when a JWT key is configured, `builtin` otherwise.
    pub fn auth_mode(&self) -> AuthMode {
        let has_key = self.auth_jwt_secret.is_some() || self.auth_jwt_public_key.is_some();
        self.auth.unwrap_or(if has_key {
            AuthMode::Jwt
        } else {
            AuthMode::Builtin
        })
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

    /// The base of the absolute URLs webhooks carry (`file_url`, `poster_url`) for a server
    /// bound to `bound`: `--public-url` when set; otherwise derived from the bound address,
    /// which is right only when the receivers reach the server there (loopback, a private
    /// network).
    pub fn webhook_links(&self, bound: SocketAddr) -> PublicUrl {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let host = match bound.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
            ip if ip.is_unspecified() => "[::1]".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        PublicUrl::parse(&format!("http://{host}:{}", bound.port()))
            .expect("an http URL of an IP address and a port parses")
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

    /// How the storage is opened: part size and object-store timeout.
    pub fn storage_settings(&self) -> crate::storage::StorageSettings {
        crate::storage::StorageSettings {
            part_size: self.storage_part_size.bytes(),
            timeout: Duration::from_secs(self.object_store_timeout),
        }
    }

    /// How long a request waits for the database before it is answered as unavailable.
    pub fn database_timeout(&self) -> Duration {
        Duration::from_secs(self.database_timeout)
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
        assert_eq!(
            cli.config.storage_settings().timeout,
            Duration::from_secs(5)
        );
        assert_eq!(cli.config.database_timeout(), Duration::from_secs(5));
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
            "--object-store-timeout",
            "2",
            "--database-timeout",
            "3",
        ])
        .unwrap();
        assert_eq!(
            cli.config.storage_settings().timeout,
            Duration::from_secs(2)
        );
        assert_eq!(cli.config.database_timeout(), Duration::from_secs(3));
        assert!(Cli::try_parse_from(["livekeep", "--object-store-timeout", "0"]).is_err());
        assert_eq!(cli.config.max_connections, 50);
        assert_eq!(cli.config.header_read_timeout, 3);
        assert_eq!(cli.config.keep_alive_timeout, 30);
        assert_eq!(cli.config.coordination_connections, 64);
        assert!(Cli::try_parse_from(["livekeep", "--coordination-connections", "2"]).is_err());
        assert!(Cli::try_parse_from(["livekeep", "--max-connections", "0"]).is_err());
    }

    #[test]
    fn webhook_flags_take_several_urls_and_refuse_a_malformed_secret() {
        let cli = Cli::try_parse_from([
            "livekeep",
            "--webhook-url",
            "http://a.test/hook,http://b.test/hook",
            "--webhook-url",
            "http://c.test/hook",
            "--webhook-secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ])
        .unwrap();
        assert_eq!(cli.config.webhook_urls.len(), 3);
        assert!(cli.config.webhook_secret.is_some());
        let refused = Cli::try_parse_from(["livekeep", "--webhook-secret", "hunter2"])
            .unwrap_err()
            .to_string();
        assert!(refused.contains("whsec_"), "{refused}");
    }

    #[test]
    fn webhook_links_follow_the_public_url_or_else_the_bound_address() {
        let mut config = Config::with_data_dir("/tmp/lk");
        let at = |config: &Config, addr: &str| {
            config
                .webhook_links(addr.parse().unwrap())
                .resolve("/media/3")
        };
        assert_eq!(
            at(&config, "127.0.0.1:8080"),
            "http://127.0.0.1:8080/media/3"
        );
        assert_eq!(at(&config, "0.0.0.0:80"), "http://127.0.0.1/media/3");
        assert_eq!(at(&config, "[::1]:9000"), "http://[::1]:9000/media/3");
        config.public_url = Some(PublicUrl::parse("https://app.example/livekeep").unwrap());
        assert_eq!(
            at(&config, "0.0.0.0:80"),
            "https://app.example/livekeep/media/3"
        );
    }

    #[test]
    fn trusted_proxies_take_cidrs_and_bare_addresses() {
        let cli = Cli::try_parse_from([
            "livekeep",
            "--trusted-proxies",
            "10.1.2.3/8, 192.0.2.7,fd00::/8,::1",
        ])
        .unwrap();
        let nets: Vec<String> = cli
            .config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8", "::1/128"]);
        for bad in ["10.0.0.0/33", "proxy.internal", ""] {
            assert!(
                Cli::try_parse_from(["livekeep", "--trusted-proxies", bad]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_auth_mode_follows_the_jwt_key_unless_given() {
        let mode = |args: &[&str]| {
            let mut all = vec!["livekeep"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).unwrap().config.auth_mode()
        };
        assert_eq!(mode(&[]), AuthMode::Builtin);
        assert_eq!(mode(&["--auth-jwt-secret", "s"]), AuthMode::Jwt);
        assert_eq!(mode(&["--auth-jwt-public-key", "k.pem"]), AuthMode::Jwt);
        assert_eq!(
            mode(&["--auth", "both", "--auth-jwt-secret", "s"]),
            AuthMode::Both
        );
        assert!(Cli::try_parse_from([
            "livekeep",
            "--auth-jwt-secret",
            "s",
            "--auth-jwt-public-key",
            "k.pem"
        ])
        .is_err());
        let url = Cli::try_parse_from(["livekeep", "--public-url", "https://h.example/lk/"])
            .unwrap()
            .config
            .public_url
            .unwrap();
        assert_eq!(url.prefix(), "/lk");
        assert!(Cli::try_parse_from(["livekeep", "--public-url", "h.example/lk"]).is_err());
    }

    #[test]
    fn a_zero_interrupt_window_is_rejected() {
        assert!(Cli::try_parse_from(["livekeep", "--interrupt-after", "0"]).is_err());
    }
}
