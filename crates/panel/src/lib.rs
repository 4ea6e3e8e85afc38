//! portwall's panel: the provider's control plane for network firewalls.
//!
//! Customers manage firewalls (inbound accept rules, inactive until enabled)
//! and assign them to their VPS/VDS, by id or by label selector; the edges of
//! each zone long-poll the panel for the resulting per-server policies and
//! report what they applied. Provider operators (admin token) manage
//! customers, servers, logins and edge tokens.
//!
//! Modules:
//! - [`store`]: the database (SQLite by default, PostgreSQL to scale out),
//!   revisions, tenancy, audit log. Everything durable goes through
//!   [`store::Store`].
//! - [`api`]: the JSON REST API under `/v1`, its OpenAPI document, and
//!   [`api::router`], the router of the whole panel.
//! - [`auth`]: tokens, sessions, CSRF, passwords, login rate limiting, and the
//!   [`auth::Principal`] / [`auth::Session`] extractors.
//! - [`sync`]: the server side of the edge sync protocol (long-poll, and the
//!   PostgreSQL LISTEN/NOTIFY fan-out between replicas).
//! - [`state`]: [`AppState`], what every handler gets.
//! - [`error`]: [`error::ApiError`], the JSON error of every endpoint.
//! - [`metrics`] and [`health`]: `/metrics` (Prometheus), `/healthz`,
//!   `/readyz`.
//! - [`config`]: the configuration file `/etc/portwall/panel.toml` and the
//!   log format.
//! - [`web`]: the server-rendered web pages (`/login`, `/firewalls`,
//!   `/lists`, `/servers`, `/audit`), merged into [`api::router`].
//! - [`serve`]: HTTPS (rustls, reloaded on SIGHUP) or plain HTTP where that
//!   is allowed, HSTS, graceful shutdown.
//!
//! Run a panel in-process with [`Panel::start`]; the binary
//! `portwall-panel` is a thin wrapper around it.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod health;
pub mod metrics;
pub mod serve;
pub mod state;
pub mod store;
pub mod sync;
pub mod web;

pub use state::{AppState, PanelConfig};
pub use store::{DatabaseConfig, Store};

use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long removed servers are remembered for edge deltas; an edge that
/// was away longer gets a snapshot.
pub const TOMBSTONE_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// A running panel: HTTP server, PostgreSQL listener and maintenance.
pub struct Panel {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The shared state (store, config), e.g. for tests.
    pub state: AppState,
    https: bool,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Panel {
    /// Serves the panel over plain HTTP on `listener` with an opened store.
    /// Returns once it accepts connections.
    pub async fn start(
        listener: TcpListener,
        store: Store,
        config: PanelConfig,
    ) -> std::io::Result<Panel> {
        Self::start_with_tls(listener, store, config, None).await
    }

    /// Serves the panel on `listener`, over HTTPS with `tls` (then session
    /// cookies are `Secure` and answers carry HSTS), plain HTTP without.
    pub async fn start_with_tls(
        listener: TcpListener,
        store: Store,
        mut config: PanelConfig,
        tls: Option<serve::ServerTls>,
    ) -> std::io::Result<Panel> {
        let addr = listener.local_addr()?;
        let https = tls.is_some();
        config.secure_cookies |= https;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = AppState::new(store.clone(), config, shutdown_rx.clone());
        let mut background = Vec::new();
        if let Some(h) = sync::spawn_pg_listener(store.clone()) {
            background.push(h);
        }
        background.push(tokio::spawn(maintenance(store)));
        let mut app = api::router(state.clone());
        if state.config.secure_cookies {
            app = serve::hsts(app);
        }
        let server = tokio::spawn(serve::run(listener, app, tls, shutdown_rx));
        Ok(Panel {
            addr,
            state,
            https,
            shutdown,
            server,
            background,
        })
    }

    /// The base URL, `https://ADDR` or `http://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting, ends the long-polls, waits for in-flight requests.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        for h in &self.background {
            h.abort();
        }
        match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// Runs until `signal` resolves, then stops.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        signal.await;
        self.stop().await
    }
}

async fn maintenance(store: Store) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match store
            .prune_tombstones(TOMBSTONE_RETENTION.as_millis() as i64)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "pruned old server removals"),
            Err(e) => tracing::warn!(error = %e, "pruning server removals failed"),
        }
    }
}
