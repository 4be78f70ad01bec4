//! Builds the application, binds its listener (port 0 allowed) and runs it until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use axum::Router;
use tokio::{net::TcpListener, sync::watch};
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

use crate::{
    config::Config,
    db,
    live::bus::Coordination,
    metrics::Metrics,
    rate_limit::{LoginLimiter, RateLimiter},
    routes, serve,
    state::{AppState, Settings},
    storage, sweeper,
};

/// Chat messages a user may send per [`CHAT_WINDOW`].
const CHAT_MESSAGES: usize = 5;
/// The chat rate limit's window.
const CHAT_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// Failed logins for one username per [`LOGIN_WINDOW`].
const LOGIN_FAILURES_PER_USER: usize = 10;
/// Failed logins from one client IP per [`LOGIN_WINDOW`].
const LOGIN_FAILURES_PER_IP: usize = 50;
/// The sliding window of the login limits.
const LOGIN_WINDOW: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// A built server: bound, migrated, not yet serving.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    router: Router,
    state: AppState,
    limits: serve::Limits,
}

impl Application {
    /// Opens the database and storage, runs migrations, builds routes and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let state = open_state(&config).await?;
        // Bytes written but never acknowledged before a crash are cut off before serving.
        crate::tus::recover_all(&state)
            .await
            .context("recovering uploads")?;
        // Files and rows a crash left out of step are repaired or reported before serving.
        crate::consistency::check_and_repair(&state)
            .await
            .context("checking storage against the database")?;
        let router = routes::router(state.clone(), &config.www_dir, &config.cors_origins)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let address = listener.local_addr().context("reading the bound address")?;
        Ok(Self {
            listener,
            address,
            router,
            state,
            limits: serve::Limits {
                max_connections: config.max_connections as usize,
                header_read_timeout: config.header_read_timeout(),
                keep_alive_timeout: config.keep_alive_timeout(),
            },
        })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The shared state, for tests that inspect the database or storage.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains requests and stops the sweeper.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_sweeper, sweeper_stopped) = watch::channel(false);
        let sweeper = tokio::spawn(sweeper::run(self.state.clone(), sweeper_stopped));
        // Other nodes' live events (PostgreSQL only); stops when dropped.
        let bus = crate::live::bus::start(&self.state);
        // Trailing slashes are optional on every route: strip them before routing.
        let app = NormalizePathLayer::trim_trailing_slash().layer(self.router);
        serve::serve(self.listener, app, self.limits, shutdown).await;
        let _ = stop_sweeper.send(true);
        let _ = sweeper.await;
        drop(bus);
        self.state.locks.close().await;
        self.state.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Opens the database (running migrations) and storage of `config` into the shared state,
/// without recovering uploads or serving: what the admin commands work on.
pub async fn open_state(config: &Config) -> anyhow::Result<AppState> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let storage = storage::open(&config.storage_url(), config.storage_part_size.bytes())?;
    let db = db::connect(&config.database_url()).await?;
    // Several nodes on one PostgreSQL database share locks and live events through it.
    let coordination =
        Coordination::open(&config.database_url(), config.coordination_connections).await?;
    Ok(AppState {
        db,
        storage: Arc::from(storage),
        locks: Arc::new(coordination.locks()),
        hub: Arc::new(coordination.hub()),
        chat_limiter: Arc::new(RateLimiter::new(CHAT_MESSAGES, CHAT_WINDOW)),
        login_limiter: Arc::new(LoginLimiter::new(
            LOGIN_FAILURES_PER_USER,
            LOGIN_FAILURES_PER_IP,
            LOGIN_WINDOW,
        )),
        metrics: Arc::new(Metrics::default()),
        compactions: crate::compaction::slots(),
        settings: Arc::new(Settings {
            max_upload_size: config.max_upload_size.bytes(),
            max_patch_size: config.max_patch_size.bytes(),
            upload_expiry: config.upload_expiry(),
            interrupt_after: config.interrupt_after(),
            patch_idle_timeout: config.patch_idle_timeout(),
            orphan_grace: config.orphan_grace(),
        }),
    })
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = ?err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = ?err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; draining requests");
}
