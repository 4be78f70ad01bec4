//! Builds the application, binds its listener (port 0 allowed) and runs it until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use rand_core::{OsRng, RngCore};
use tokio::{net::TcpListener, sync::watch};

use crate::{
    accounts::{
        host::{HostKey, HostTokens},
        Authenticator,
    },
    config::Config,
    db,
    http::{self, serve},
    locks::Locks,
    metrics::Metrics,
    ops::sweeper,
    rooms::{bus::Bus, hub::Hub},
    state::{AppState, Services, Settings},
    storage,
    webhooks::{delivery, Webhooks},
};

/// A built server: bound, migrated, not yet serving.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    app: http::App,
    state: AppState,
    limits: serve::Limits,
}

impl Application {
    /// Opens the database and storage, runs migrations, builds routes and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Bound first: with port 0 the real port is part of the URLs webhooks carry.
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let address = listener.local_addr().context("reading the bound address")?;
        let state = open_state_at(&config, address).await?;
        // Bytes written but never acknowledged before a crash are cut off before serving.
        crate::uploads::tus::recover_all(&state)
            .await
            .context("recovering uploads")?;
        // Files and rows a crash left out of step are repaired or reported before serving.
        crate::ops::consistency::check_and_repair(&state)
            .await
            .context("checking storage against the database")?;
        if state.media.assembles_layouts() {
            tracing::info!(
                "recordings are stored at their stop as layouts over their uploads' objects; \
                 layouts are assembled into one object in the background"
            );
        }
        let app = http::app(state.clone(), &config)?;
        Ok(Self {
            listener,
            address,
            app,
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

    /// Serves until `shutdown` completes, then stops the webhook deliveries, drains requests
    /// and stops the sweeper.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_sweeper, sweeper_stopped) = watch::channel(false);
        let sweeper = tokio::spawn(sweeper::run(self.state.clone(), sweeper_stopped));
        let (stop_deliveries, deliveries_stopped) = watch::channel(false);
        let deliveries = tokio::spawn(delivery::run(
            self.state.db.clone(),
            Arc::clone(&self.state.webhooks),
            Arc::clone(&self.state.metrics),
            deliveries_stopped,
        ));
        // Webhook deliveries stop when the shutdown begins, not once the requests are drained
        // (open media and event streams can hold that for long): the rows in flight are handed
        // back at once, for another node or the next start, instead of timing out here or
        // being cut by the end of the grace period with their lease still held.
        let shutdown = async move {
            shutdown.await;
            let _ = stop_deliveries.send(true);
        };
        // Other nodes' live events (PostgreSQL only); stops when dropped.
        let bus = crate::live::listener::start(&self.state);
        serve::serve(
            self.listener,
            self.app,
            self.limits,
            Arc::clone(&self.state.metrics),
            shutdown,
        )
        .await;
        let _ = stop_sweeper.send(true);
        let _ = sweeper.await;
        let _ = deliveries.await;
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
    open_state_at(config, config.listen).await
}

/// A fresh random name for this process among the nodes (64 bits from the OS).
fn node_name() -> String {
    let mut bytes = [0u8; 8];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// [`open_state`] for a server bound to `address`.
async fn open_state_at(config: &Config, address: SocketAddr) -> anyhow::Result<AppState> {
    let webhooks = Webhooks::new(
        &config.webhook_urls,
        config.webhook_secret.clone(),
        config.webhook_links(address),
    )?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let stores = storage::open(&config.storage_url(), &config.storage_settings())?;
    let db = db::connect(&config.database_url(), config.database_timeout()).await?;
    // Several nodes on one PostgreSQL database share locks and live events through it.
    let coordination = db::connect_coordination(
        &config.database_url(),
        config.coordination_connections,
        config.database_timeout(),
    )
    .await?;
    let (locks, hub) = match coordination {
        Some(pool) => (
            Locks::postgres(pool.clone()),
            Hub::with_bus(Arc::new(Bus::new(pool))),
        ),
        None => (Locks::local(), Hub::default()),
    };
    Ok(AppState::new(Services {
        offsets: db::offsets::OffsetWriter::for_db(&db),
        media_cache: Arc::new(crate::media_cache::MediaCache::default()),
        db,
        uploads: stores.uploads,
        media: stores.media,
        locks: Arc::new(locks),
        node: node_name().into(),
        hub: Arc::new(hub),
        indexes: Arc::default(),
        metrics: Arc::new(Metrics::new(stores.requests.clone())),
        compactions: crate::uploads::compaction::slots(),
        webhooks: Arc::new(webhooks),
        auth: Arc::new(authenticator(config)?),
        public_url: Arc::new(config.public_url.clone().unwrap_or_default()),
        settings: Arc::new(Settings {
            max_upload_size: config.max_upload_size.bytes(),
            max_patch_size: config.max_patch_size.bytes(),
            upload_expiry: config.upload_expiry(),
            interrupt_after: config.interrupt_after(),
            patch_idle_timeout: config.patch_idle_timeout(),
            orphan_grace: config.orphan_grace(),
        }),
    }))
}

/// The sign-in of `config`: its mode, and the host app's key when one is given.
fn authenticator(config: &Config) -> anyhow::Result<Authenticator> {
    let key = match (&config.auth_jwt_secret, &config.auth_jwt_public_key) {
        (Some(secret), _) => Some(HostKey::Secret(secret.as_bytes().to_vec())),
        (None, Some(path)) => Some(HostKey::PublicPem(
            std::fs::read(path)
                .with_context(|| format!("reading the JWT public key {}", path.display()))?,
        )),
        (None, None) => None,
    };
    let host = key
        .map(|key| {
            HostTokens::new(
                key,
                config.auth_jwt_issuer.as_deref(),
                config.auth_jwt_audience.as_deref(),
            )
        })
        .transpose()?;
    if let Some(host) = &host {
        tracing::info!(mode = ?config.auth_mode(), algorithm = host.algorithm(), "host app tokens accepted");
    }
    Authenticator::new(config.auth_mode(), host)
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
