//! The state every handler gets: the store, the configuration, the login
//! limiter, the shutdown signal and the metrics.

use crate::auth::{LoginLimiter, LoginLimits};
use crate::metrics::PanelMetrics;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Settings of the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelConfig {
    /// Mark the session cookie `Secure` (the panel is served over HTTPS).
    pub secure_cookies: bool,
    /// How long a browser session lasts.
    pub session_ttl: Duration,
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Longest a sync long-poll is held, whatever `wait` asks.
    pub max_wait: Duration,
    /// Failed-login limits.
    pub login_limits: LoginLimits,
    /// Count requests and serve `/metrics` (see [`crate::metrics`]).
    pub metrics: bool,
}

/// 16 MiB: room for 10,000 rules naming 100,000 source networks.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

impl Default for PanelConfig {
    fn default() -> PanelConfig {
        PanelConfig {
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            max_body_bytes: DEFAULT_MAX_BODY,
            max_wait: Duration::from_secs(60),
            login_limits: LoginLimits::default(),
            metrics: true,
        }
    }
}

/// Shared by all handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<PanelConfig>,
    pub limiter: Arc<LoginLimiter>,
    /// Becomes true when the panel shuts down: long-polls return at once.
    pub shutdown: watch::Receiver<bool>,
    /// The Prometheus series; None when `config.metrics` is off.
    pub metrics: Option<Arc<PanelMetrics>>,
}

impl AppState {
    /// State for a store; `shutdown` comes from [`crate::Panel`] or a test.
    pub fn new(store: Store, config: PanelConfig, shutdown: watch::Receiver<bool>) -> AppState {
        let limiter = Arc::new(LoginLimiter::new(config.login_limits));
        let metrics = config.metrics.then(|| Arc::new(PanelMetrics::new()));
        AppState {
            store,
            config: Arc::new(config),
            limiter,
            shutdown,
            metrics,
        }
    }
}
