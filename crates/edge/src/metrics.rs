//! The edge's Prometheus metrics and health, served on `--metrics-listen ADDR`
//! (`GET /metrics`, OpenMetrics text made with `prometheus-client`, and
//! `GET /healthz`).
//!
//! Series (prefix `portwall_edge_`):
//!
//! - `applied_revision`: the revision the kernel enforces (restored from disk
//!   or applied since); `panel_revision`: the newest revision the panel
//!   answered with; `revision_lag`: how many revisions the first is behind
//!   the second (0 when current). `applied_timestamp_seconds`: when the
//!   enforced revision was applied.
//! - `apply_duration_seconds{mode}`: a histogram of the kernel transactions
//!   (`replace`, `elements`, `unchanged`, `restore`); `apply_failures_total`.
//! - `sync_failures_total` (polls that failed) and `reconnects_total` (a poll
//!   that succeeded after failures).
//! - `rule_packets_total` / `rule_bytes_total{server_id, server, rule_id}`:
//!   the kernel's per-rule counters (what the rule accepted), and
//!   `server_dropped_packets_total` / `server_dropped_bytes_total{server_id,
//!   server}`: what the implicit drop of an enforced server dropped. They are
//!   the counters the agent reads for its reports (every `--counters-every`,
//!   default 60 s), exported as read, so a scrape never costs a table dump;
//!   `counters_timestamp_seconds` says when they were read. A counter that
//!   goes back to zero (a server's elements were replaced) is a counter reset
//!   to Prometheus.
//!
//! `/healthz` answers JSON: 200 when the edge enforces a revision (with its
//! age and whether the panel answered lately), 503 when it enforces none yet
//! (a fresh edge that has neither a saved policy nor reached the panel).

use crate::engine::PolicySnapshot;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use model::network::sync::RuleCounter;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const APPLY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    server_id: i64,
    server: String,
    rule_id: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server_id: i64,
    server: String,
}

/// The counters last read from the kernel, and when.
#[derive(Debug, Default)]
struct CounterSnapshot {
    read_at_ms: Option<u64>,
    counters: Vec<RuleCounter>,
    /// Server names at the time of the read.
    names: std::collections::HashMap<i64, String>,
}

/// Encodes the per-rule counters from the last read at scrape time.
#[derive(Debug)]
struct KernelCounters(Arc<Mutex<CounterSnapshot>>);

impl Collector for KernelCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.0.lock().map_err(|_| std::fmt::Error)?;
        let name = |id: i64| snap.names.get(&id).cloned().unwrap_or_default();
        for (metric, help, bytes) in [
            (
                "rule_packets",
                "Packets a rule accepted (the kernel's counter), by server and rule",
                false,
            ),
            (
                "rule_bytes",
                "Bytes a rule accepted (the kernel's counter), by server and rule",
                true,
            ),
        ] {
            // A family without samples is left out (strict OpenMetrics
            // parsers reject an empty family followed by another).
            if !snap.counters.iter().any(|c| c.rule_id.is_some()) {
                break;
            }
            let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for c in snap.counters.iter().filter(|c| c.rule_id.is_some()) {
                let labels = RuleLabels {
                    server_id: c.server_id,
                    server: name(c.server_id),
                    rule_id: c.rule_id.unwrap_or_default(),
                };
                let v = if bytes { c.bytes } else { c.packets };
                ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
        for (metric, help, bytes) in [
            (
                "server_dropped_packets",
                "Packets dropped because no rule of an enforced server accepted them",
                false,
            ),
            (
                "server_dropped_bytes",
                "Bytes dropped because no rule of an enforced server accepted them",
                true,
            ),
        ] {
            if !snap.counters.iter().any(|c| c.rule_id.is_none()) {
                break;
            }
            let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for c in snap.counters.iter().filter(|c| c.rule_id.is_none()) {
                let labels = ServerLabels {
                    server_id: c.server_id,
                    server: name(c.server_id),
                };
                let v = if bytes { c.bytes } else { c.packets };
                ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
        if let Some(ms) = snap.read_at_ms {
            let g = ConstGauge::new(ms as f64 / 1000.0);
            g.encode(encoder.encode_descriptor(
                "counters_timestamp_seconds",
                "When the rule counters were last read from the kernel (Unix time)",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

/// What the health endpoint reports, kept as the agent goes.
#[derive(Debug, Default, Clone)]
struct HealthState {
    revision: Option<u64>,
    applied_at_ms: Option<u64>,
    last_sync_ms: Option<u64>,
    panel_reachable: bool,
    last_error: Option<String>,
}

/// Every series of the edge agent; shared by the agent's tasks and the
/// metrics listener.
#[derive(Debug)]
pub struct EdgeMetrics {
    registry: Registry,
    applied_revision: Gauge,
    panel_revision: Gauge,
    lag: Gauge,
    applied_at: Gauge<f64, AtomicU64>,
    apply_duration: Family<ModeLabels, Histogram, fn() -> Histogram>,
    apply_failures: Counter,
    sync_failures: Counter,
    reconnects: Counter,
    counters: Arc<Mutex<CounterSnapshot>>,
    health: Mutex<HealthState>,
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        EdgeMetrics::new()
    }
}

fn apply_histogram() -> Histogram {
    Histogram::new(APPLY_BUCKETS)
}

impl EdgeMetrics {
    pub fn new() -> EdgeMetrics {
        let mut registry = Registry::with_prefix("portwall_edge");
        let applied_revision = Gauge::default();
        registry.register(
            "applied_revision",
            "The revision the kernel enforces",
            applied_revision.clone(),
        );
        let panel_revision = Gauge::default();
        registry.register(
            "panel_revision",
            "The newest revision the panel answered a sync with",
            panel_revision.clone(),
        );
        let lag = Gauge::default();
        registry.register(
            "revision_lag",
            "Revisions the enforced one is behind the panel's newest (0: current)",
            lag.clone(),
        );
        let applied_at = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "applied_timestamp_seconds",
            "When the enforced revision was applied (Unix time)",
            applied_at.clone(),
        );
        let apply_duration =
            Family::<ModeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                apply_histogram,
            );
        registry.register(
            "apply_duration_seconds",
            "Time to apply a change to the kernel, by how (replace, elements, unchanged, restore)",
            apply_duration.clone(),
        );
        let apply_failures = Counter::default();
        registry.register(
            "apply_failures",
            "Policies the kernel refused or that were invalid (the previous one stayed)",
            apply_failures.clone(),
        );
        let sync_failures = Counter::default();
        registry.register(
            "sync_failures",
            "Sync polls that failed (panel unreachable, refused or undecodable)",
            sync_failures.clone(),
        );
        let reconnects = Counter::default();
        registry.register(
            "reconnects",
            "Sync polls that succeeded after one or more failures",
            reconnects.clone(),
        );
        let counters = Arc::new(Mutex::new(CounterSnapshot::default()));
        registry.register_collector(Box::new(KernelCounters(counters.clone())));
        EdgeMetrics {
            registry,
            applied_revision,
            panel_revision,
            lag,
            applied_at,
            apply_duration,
            apply_failures,
            sync_failures,
            reconnects,
            counters,
            health: Mutex::new(HealthState::default()),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_lag(&self) {
        let lag = (self.panel_revision.get() - self.applied_revision.get()).max(0);
        self.lag.set(lag);
    }

    /// The kernel now enforces `revision`; `took` and `mode` when a
    /// transaction was made (None: the revision advanced without a change).
    pub fn applied(&self, revision: u64, apply: Option<(&'static str, Duration)>) {
        if let Some((mode, took)) = apply {
            self.apply_duration
                .get_or_create(&ModeLabels { mode })
                .observe(took.as_secs_f64());
        }
        let now = crate::store::now_ms();
        let mut h = self.health();
        if h.revision != Some(revision) {
            h.applied_at_ms = Some(now);
            self.applied_at.set(now as f64 / 1000.0);
        }
        h.revision = Some(revision);
        h.last_error = None;
        drop(h);
        self.applied_revision.set(clamp(revision));
        self.update_lag();
    }

    /// A policy was refused; the previous one stays.
    pub fn apply_failed(&self, error: &str) {
        self.apply_failures.inc();
        self.health().last_error = Some(error.to_string());
    }

    /// A poll succeeded: the panel is at `revision`. `after_failures`: this
    /// poll ends a run of failures.
    pub fn synced(&self, revision: u64, after_failures: bool) {
        if after_failures {
            self.reconnects.inc();
        }
        self.panel_revision.set(clamp(revision));
        self.update_lag();
        let mut h = self.health();
        h.last_sync_ms = Some(crate::store::now_ms());
        h.panel_reachable = true;
    }

    /// A poll failed.
    pub fn sync_failed(&self, error: &str) {
        self.sync_failures.inc();
        let mut h = self.health();
        h.panel_reachable = false;
        h.last_error = Some(error.to_string());
    }

    /// The counters just read from the kernel, for the servers of `policy`.
    pub fn counters_read(&self, counters: &[RuleCounter], policy: &PolicySnapshot) {
        let names = policy
            .servers
            .values()
            .map(|s| (s.server_id, s.name.clone()))
            .collect();
        if let Ok(mut snap) = self.counters.lock() {
            snap.counters = counters.to_vec();
            snap.names = names;
            snap.read_at_ms = Some(crate::store::now_ms());
        }
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// What `/healthz` answers.
    pub fn health_report(&self) -> EdgeHealth {
        let h = self.health().clone();
        let now = crate::store::now_ms();
        let ago = |ms: Option<u64>| ms.map(|t| now.saturating_sub(t) as f64 / 1000.0);
        EdgeHealth {
            enforcing: h.revision.is_some(),
            revision: h.revision,
            applied_seconds_ago: ago(h.applied_at_ms),
            panel_revision: u64::try_from(self.panel_revision.get())
                .ok()
                .filter(|_| h.last_sync_ms.is_some()),
            revision_lag: u64::try_from(self.lag.get()).unwrap_or(0),
            panel_reachable: h.panel_reachable,
            last_sync_seconds_ago: ago(h.last_sync_ms),
            last_error: h.last_error,
        }
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The body of the edge's `/healthz`.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeHealth {
    /// Whether the kernel enforces a revision (restored or applied).
    pub enforcing: bool,
    pub revision: Option<u64>,
    /// How long ago the enforced revision was applied.
    pub applied_seconds_ago: Option<f64>,
    /// The newest revision the panel answered with.
    pub panel_revision: Option<u64>,
    pub revision_lag: u64,
    pub panel_reachable: bool,
    pub last_sync_seconds_ago: Option<f64>,
    pub last_error: Option<String>,
}

async fn serve_metrics(State(m): State<Arc<EdgeMetrics>>) -> Response {
    match m.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed",
        )
            .into_response(),
    }
}

async fn serve_health(State(m): State<Arc<EdgeMetrics>>) -> Response {
    let report = m.health_report();
    let status = if report.enforcing {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// The metrics listener's routes: `/metrics` and `/healthz`.
pub fn router(metrics: Arc<EdgeMetrics>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(serve_health))
        .with_state(metrics)
}

/// Serves [`router`] on `listener` until `shutdown` becomes true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<EdgeMetrics>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}
