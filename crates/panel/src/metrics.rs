//! The panel's Prometheus metrics, served at `GET /metrics` (OpenMetrics text,
//! made with the `prometheus-client` crate).
//!
//! Two kinds of series:
//!
//! - **Counted as requests pass** ([`TrackLayer`], a layer on every route):
//!   `portwall_panel_http_requests_total{method, route, status}` and the
//!   latency histogram `portwall_panel_http_request_duration_seconds{method,
//!   route}`. `route` is the matched route template (`/v1/firewalls/{id}`),
//!   never the raw path, so the number of series stays bounded; a request no
//!   route matches is `route="unmatched"`. The edge long-polls that are held
//!   right now are `portwall_panel_edge_polls{zone}` (the edges connected to
//!   this replica).
//! - **Read from the database at scrape time** ([`PanelMetrics::encode`]):
//!   the global revision, the connection pool (size, idle), per edge its last
//!   report (time and revision, from the `edges` table, so every replica shows
//!   every edge), and the servers per zone and apply state (applied / pending
//!   / failed). These are a few aggregate queries, whatever the size of the
//!   fleet.
//!
//! The metrics are on by default; `PanelConfig::metrics = false` (the
//! binary's `--metrics false`) leaves the middleware out and `/metrics`
//! answers 404.

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Store;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sqlx::Row;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets in seconds: from half a millisecond to a minute (an edge's
/// long-poll is held up to 60 s).
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// How long a scrape waits for the database before it answers 503.
const SCRAPE_DB_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZoneLabels {
    zone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EdgeLabels {
    zone: String,
    edge: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerStateLabels {
    zone: String,
    state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every series of the panel; one per panel, shared by the handlers.
#[derive(Debug)]
pub struct PanelMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RouteLabels>,
    edge_polls: Family<ZoneLabels, Gauge>,
    revision: Gauge,
    pool_size: Gauge,
    pool_idle: Gauge,
    edge_revision: Family<EdgeLabels, Gauge>,
    edge_last_report: Family<EdgeLabels, Gauge<f64, AtomicU64>>,
    servers: Family<ServerStateLabels, Gauge>,
    /// Scrapes one at a time: each refreshes the database gauges, then encodes.
    scrape: tokio::sync::Mutex<()>,
    /// The request series by route template, then method ([`method_slot`]):
    /// a request finds its histogram and counters here instead of hashing
    /// and cloning a label set into each family (which cost the list route
    /// 12 % of its throughput).
    routes: std::sync::RwLock<std::collections::HashMap<String, [Option<Arc<RouteSeries>>; 8]>>,
}

/// The series one method and route template count into.
#[derive(Debug)]
struct RouteSeries {
    method: &'static str,
    route: String,
    latency: Histogram,
    /// The request counters by status seen so far (a handful per route).
    statuses: std::sync::RwLock<Vec<(u16, Counter)>>,
}

impl Default for PanelMetrics {
    fn default() -> Self {
        PanelMetrics::new()
    }
}

impl PanelMetrics {
    pub fn new() -> PanelMetrics {
        let mut registry = Registry::with_prefix("portwall_panel");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, matched route template and status",
            requests.clone(),
        );
        let latency = HistogramFamily::<RouteLabels>::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from receiving a request to its response headers, by method and route template",
            latency.clone(),
        );
        let edge_polls = Family::<ZoneLabels, Gauge>::default();
        registry.register(
            "edge_polls",
            "Edge sync long-polls held by this replica now (edges connected), by zone",
            edge_polls.clone(),
        );
        let revision = Gauge::default();
        registry.register(
            "revision",
            "The global revision: advances with every committed change",
            revision.clone(),
        );
        let pool_size = Gauge::default();
        registry.register(
            "db_pool_connections",
            "Connections the database pool holds (in use and idle)",
            pool_size.clone(),
        );
        let pool_idle = Gauge::default();
        registry.register(
            "db_pool_idle_connections",
            "Idle connections in the database pool",
            pool_idle.clone(),
        );
        let edge_revision = Family::<EdgeLabels, Gauge>::default();
        registry.register(
            "edge_reported_revision",
            "The revision an edge reported it applied last, by zone and edge name",
            edge_revision.clone(),
        );
        let edge_last_report = Family::<EdgeLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "edge_last_report_timestamp_seconds",
            "When an edge last reported (Unix time), by zone and edge name",
            edge_last_report.clone(),
        );
        let servers = Family::<ServerStateLabels, Gauge>::default();
        registry.register(
            "servers",
            "Servers by zone and apply state (applied, pending, failed)",
            servers.clone(),
        );
        PanelMetrics {
            registry,
            requests,
            latency,
            edge_polls,
            revision,
            pool_size,
            pool_idle,
            edge_revision,
            edge_last_report,
            servers,
            scrape: tokio::sync::Mutex::new(()),
            routes: std::sync::RwLock::new(std::collections::HashMap::new()),
        }
    }

    /// The series of one method and route template, made once and then
    /// found by a read-locked map lookup that allocates nothing.
    fn route(&self, method: &Method, route: Option<&MatchedPath>) -> Arc<RouteSeries> {
        let slot = method_slot(method);
        let method = METHOD_LABELS[slot];
        let route = route.map_or("unmatched", MatchedPath::as_str);
        if let Some(series) = self
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(route)
            .and_then(|by_method| by_method[slot].clone())
        {
            return series;
        }
        let mut routes = self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let by_method = routes.entry(route.to_string()).or_default();
        by_method[slot]
            .get_or_insert_with(|| {
                Arc::new(RouteSeries {
                    method,
                    route: route.to_string(),
                    latency: self.latency.get_or_create_owned(&RouteLabels {
                        method,
                        route: route.to_string(),
                    }),
                    statuses: std::sync::RwLock::new(Vec::new()),
                })
            })
            .clone()
    }

    fn observe(&self, series: &RouteSeries, status: u16, took: Duration) {
        series.latency.observe(took.as_secs_f64());
        let known = series
            .statuses
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, c)| c.clone());
        let counter = known.unwrap_or_else(|| {
            let mut statuses = series
                .statuses
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((_, c)) = statuses.iter().find(|(s, _)| *s == status) {
                return c.clone();
            }
            let c = self.requests.get_or_create_owned(&RequestLabels {
                method: series.method,
                route: series.route.clone(),
                status,
            });
            statuses.push((status, c.clone()));
            c
        });
        counter.inc();
    }

    /// Counts a held edge long-poll of `zone` until the guard is dropped.
    pub fn edge_poll(&self, zone: &str) -> EdgePollGuard {
        let gauge = self.edge_polls.get_or_create_owned(&ZoneLabels {
            zone: zone.to_string(),
        });
        gauge.inc();
        EdgePollGuard(gauge)
    }

    /// Refreshes the series read from the database, then encodes every series.
    pub async fn encode(&self, store: &Store) -> Result<String, ScrapeError> {
        let _one = self.scrape.lock().await;
        let pool = store.pool();
        self.pool_size.set(pool.size() as i64);
        self.pool_idle.set(pool.num_idle() as i64);
        let mut conn = pool.acquire().await?;
        let revision: i64 = sqlx::query("SELECT revision FROM meta WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        self.revision.set(revision);
        let edges = sqlx::query("SELECT zone, name, revision, reported_at FROM edges")
            .fetch_all(&mut *conn)
            .await?;
        self.edge_revision.clear();
        self.edge_last_report.clear();
        for row in edges {
            let labels = EdgeLabels {
                zone: row.try_get(0)?,
                edge: row.try_get(1)?,
            };
            let revision: i64 = row.try_get(2)?;
            let reported_ms: i64 = row.try_get(3)?;
            self.edge_revision.get_or_create(&labels).set(revision);
            self.edge_last_report
                .get_or_create(&labels)
                .set(reported_ms as f64 / 1000.0);
        }
        // The same decision as the per-server status (`store::sync`'s
        // `status_of`): failed when the error is about the current policy
        // and nothing newer was applied since; applied when the realized
        // revision reached the policy's; pending otherwise (also when no edge
        // ever reported the server).
        let states = sqlx::query(
            "SELECT s.zone, CASE \
               WHEN st.error IS NOT NULL AND st.error_revision >= s.policy_revision \
                    AND (st.realized_revision IS NULL OR st.realized_revision < st.error_revision) THEN 'failed' \
               WHEN st.realized_revision >= s.policy_revision THEN 'applied' \
               ELSE 'pending' END AS state, COUNT(*) \
             FROM servers s LEFT JOIN server_status st ON st.server_id = s.id \
             GROUP BY 1, 2",
        )
        .fetch_all(&mut *conn)
        .await?;
        drop(conn);
        self.servers.clear();
        let mut zones = std::collections::BTreeSet::new();
        for row in states {
            let zone: String = row.try_get(0)?;
            let state: String = row.try_get(1)?;
            let n: i64 = row.try_get(2)?;
            let state = match state.as_str() {
                "failed" => "failed",
                "applied" => "applied",
                _ => "pending",
            };
            zones.insert(zone.clone());
            self.servers
                .get_or_create(&ServerStateLabels { zone, state })
                .set(n);
        }
        // Every state of a zone is present, zero included, so that a query
        // such as `servers{state="failed"} > 0` sees the zone recover.
        for zone in zones {
            for state in ["applied", "pending", "failed"] {
                let _ = self.servers.get_or_create(&ServerStateLabels {
                    zone: zone.clone(),
                    state,
                });
            }
        }
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|_| ScrapeError::Encode)?;
        Ok(out)
    }
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("reading the database failed: {0}")]
    Db(#[from] sqlx::Error),
    #[error("encoding the metrics failed")]
    Encode,
}

/// Decrements the zone's held-poll gauge when the poll ends.
pub struct EdgePollGuard(Gauge);

impl Drop for EdgePollGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The method labels, by the index [`method_slot`] gives.
const METHOD_LABELS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other",
];

/// A method's index in a route's series and in [`METHOD_LABELS`].
fn method_slot(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::PATCH => 3,
        Method::DELETE => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The layer that counts and times every request by route template. Added
/// with `Router::layer`, it runs after routing, so the request carries its
/// [`MatchedPath`]. A plain tower service rather than
/// `axum::middleware::from_fn`: that one boxes a future and clones the
/// route's service per request, which the read benchmark could see.
#[derive(Clone, Debug)]
pub struct TrackLayer(pub Arc<PanelMetrics>);

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The service of [`TrackLayer`].
#[derive(Clone, Debug)]
pub struct Track<S> {
    inner: S,
    metrics: Arc<PanelMetrics>,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let series = self
            .metrics
            .route(req.method(), req.extensions().get::<MatchedPath>());
        TrackFuture {
            inner: self.inner.call(req),
            metrics: self.metrics.clone(),
            series,
            started: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Track`]: observes the status and the time
    /// taken when the inner service answers.
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        metrics: Arc<PanelMetrics>,
        series: Arc<RouteSeries>,
        started: Instant,
    }
}

impl<F, E> std::future::Future for TrackFuture<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Ok(resp) = &out {
            this.metrics
                .observe(this.series, resp.status().as_u16(), this.started.elapsed());
        }
        std::task::Poll::Ready(out)
    }
}

/// `GET /metrics`.
pub async fn serve(State(st): State<AppState>) -> Response {
    let Some(metrics) = st.metrics.clone() else {
        return ApiError::new(StatusCode::NOT_FOUND, None, "metrics are turned off")
            .into_response();
    };
    match tokio::time::timeout(SCRAPE_DB_TIMEOUT, metrics.encode(&st.store)).await {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics scrape failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                format!("metrics: {e}"),
            )
            .into_response()
        }
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            format!(
                "metrics: the database did not answer within {} s",
                SCRAPE_DB_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}
