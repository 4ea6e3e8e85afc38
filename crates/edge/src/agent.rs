//! The agent: restore from disk, then follow the panel.
//!
//! 1. **Start fail-static.** The policy saved on disk is applied (one
//!    transaction replacing the table) before the panel is contacted. If there
//!    is none, the kernel is left as it is until the first snapshot.
//! 2. **Long-poll.** `GET /v1/edge/sync?zone=Z&since=REV&wait=30`: the panel
//!    answers at once when the zone changed after `REV` (a `Delta`, or a
//!    `Snapshot` on first contact or after a gap) and after ~30 s otherwise
//!    (`Unchanged`). Each answer is applied by the [`Engine`] (blocking thread)
//!    and the next poll starts right after, so a change reaches the kernel one
//!    HTTP round trip plus one small nft transaction after it was committed.
//! 3. **Panel unreachable.** Nothing changes in the kernel; the agent retries
//!    with exponential backoff and jitter, capped (default 250 ms → 15 s), so a
//!    fleet of edges does not stampede a recovering panel. Given several panel
//!    replicas, it moves to the next one after a failure.
//! 4. **Invalid policy.** Rejected whole, the previous one stays, the error is
//!    reported per server, and the poll backs off (the panel would send the
//!    same answer again at once).
//! 5. **Publish.** After every change the policy in force is published in a
//!    `tokio::sync::watch` value (linkerd2-proxy style: readers see the last
//!    good value, never a half-applied one). Two tasks follow it: one saves it
//!    to disk atomically (coalescing bursts), one reports to the panel (with
//!    retries, merging what is pending). Hit counters are read every
//!    `counters_every` and go with the next report.
//! 6. **Metrics.** Every step updates [`crate::metrics::EdgeMetrics`]
//!    (`AgentHandle::metrics`): revisions, apply times, failures, counters.

use crate::client::{self, ClientError, PanelClient};
use crate::compile::TableSpec;
use crate::engine::{self, ApplyMode, Engine, EngineOptions, PolicySnapshot};
use crate::metrics::EdgeMetrics;
use crate::store::{self, AgentNote};
use crate::EdgeError;
use model::network::sync::{EdgeReport, RuleCounter, ServerApplyResult, SyncResponse};
use rand::Rng;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Everything the agent needs to know.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The panel's URLs: replicas of one panel. The agent polls one; when it
    /// fails, it moves to the next.
    pub panel_urls: Vec<String>,
    pub token: String,
    /// Whom to trust for the panel's certificate; plain HTTP off loopback.
    pub tls: tls::ClientTls,
    pub zone: String,
    /// This edge's name in reports.
    pub edge_name: String,
    pub table: TableSpec,
    pub state_dir: PathBuf,
    /// How long the panel may hold an idle poll.
    pub wait: Duration,
    /// How often hit counters are read and reported (zero: never).
    pub counters_every: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub engine: EngineOptions,
}

impl AgentConfig {
    /// `panel_urls`: one URL, or several separated by commas.
    pub fn new(
        panel_urls: &str,
        token: &str,
        zone: &str,
        table: TableSpec,
        state_dir: PathBuf,
    ) -> AgentConfig {
        AgentConfig {
            panel_urls: panel_urls
                .split(',')
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
            token: token.to_string(),
            tls: tls::ClientTls::default(),
            zone: zone.to_string(),
            edge_name: hostname(),
            table,
            state_dir,
            wait: Duration::from_secs(model::network::sync::DEFAULT_WAIT_SECONDS),
            counters_every: Duration::from_secs(60),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(15),
            engine: EngineOptions::default(),
        }
    }
}

/// The machine's host name (the default edge name).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "edge".to_string())
}

/// The delay before retry number `attempt` (1-based): exponential, capped, and
/// jittered ("equal jitter": half of it fixed, half random), so that edges that
/// lost the panel together do not come back together.
pub fn backoff_delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let cap = exp.min(max);
    let half = cap / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

/// A running agent.
pub struct AgentHandle {
    /// The policy in force, updated after every change the kernel accepted.
    pub policy: watch::Receiver<PolicySnapshot>,
    /// The outcome of restoring the saved policy at start-up, if there was one.
    pub restored: Option<Result<engine::ApplyOutcome, String>>,
    /// The agent's Prometheus series and health (see [`crate::metrics`]).
    pub metrics: Arc<EdgeMetrics>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    helpers: Vec<JoinHandle<()>>,
}

impl AgentHandle {
    /// Stops polling and waits for the loop to end. The kernel keeps enforcing
    /// what it has (fail static): stopping the agent never opens anything.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        for h in self.helpers {
            h.abort();
        }
    }
}

enum ReportPart {
    Applied {
        revision: u64,
        servers: Vec<ServerApplyResult>,
    },
    Counters(Vec<RuleCounter>),
}

struct Shared {
    cfg: AgentConfig,
    note: Mutex<AgentNote>,
    clients: Vec<PanelClient>,
    /// The replica in use.
    current: AtomicUsize,
    metrics: Arc<EdgeMetrics>,
}

impl Shared {
    fn client(&self) -> (usize, &PanelClient) {
        let i = self.current.load(Ordering::Relaxed) % self.clients.len();
        (i, &self.clients[i])
    }
    /// After a failure with replica `i`: use the next one.
    fn next_replica(&self, i: usize) {
        let _ = self.current.compare_exchange(
            i,
            (i + 1) % self.clients.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn update_note(&self, f: impl FnOnce(&mut AgentNote)) {
        let note = {
            let mut n = self.note.lock().expect("note lock");
            let before = n.clone();
            f(&mut n);
            if *n == before {
                return;
            }
            n.updated_ms = store::now_ms();
            n.clone()
        };
        if let Err(e) = store::save_note(&self.cfg.state_dir, &note) {
            tracing::warn!(error = %e, "cannot write the agent note");
        }
    }
}

/// Restores the saved policy, then starts following the panel.
pub async fn start(cfg: AgentConfig) -> Result<AgentHandle, EdgeError> {
    if cfg.panel_urls.is_empty() {
        return Err(client::ClientError::BadUrl(String::new()).into());
    }
    let clients = cfg
        .panel_urls
        .iter()
        .map(|u| PanelClient::with_tls(u, &cfg.token, &cfg.tls))
        .collect::<Result<Vec<_>, _>>()?;
    let mut engine = Engine::new(cfg.table.clone(), cfg.engine);
    // 1. Fail static: what we enforced before, before anything else.
    let dir = cfg.state_dir.clone();
    let table = cfg.table.clone();
    let (engine_back, restored) = tokio::task::spawn_blocking(move || {
        let staged = store::remove_staged(&dir);
        if staged > 0 {
            tracing::info!(files = staged, "removed the staged files a stopped agent left");
        }
        let restored = match store::load_policy(&dir) {
            Ok(Some(saved)) if saved.mode == table.mode && saved.table == table.name => {
                let rev = saved.revision;
                let r = engine.restore(rev, saved.servers).map_err(|e| e.to_string());
                match &r {
                    Ok(o) => tracing::info!(revision = rev, elements = o.elements, took_ms = o.took.as_millis() as u64, "restored the saved policy"),
                    Err(e) => tracing::error!(error = %e, "cannot restore the saved policy; the kernel keeps what it has"),
                }
                Some(r)
            }
            Ok(Some(saved)) => {
                tracing::warn!(mode = saved.mode.as_str(), table = %saved.table, "the saved policy is for another table; ignoring it");
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the saved policy");
                Some(Err(e.to_string()))
            }
        };
        (engine, restored)
    })
    .await
    .map_err(|e| EdgeError::Store {
        path: cfg.state_dir.display().to_string(),
        message: e.to_string(),
    })?;
    let engine = engine_back;
    let metrics = Arc::new(EdgeMetrics::new());
    if let Some(Ok(o)) = &restored {
        metrics.applied(o.revision, Some(("restore", o.took)));
    }
    let shared = Arc::new(Shared {
        note: Mutex::new(AgentNote {
            pid: std::process::id(),
            panel_url: cfg.panel_urls.join(","),
            zone: cfg.zone.clone(),
            edge: cfg.edge_name.clone(),
            revision: engine.revision(),
            ..Default::default()
        }),
        cfg,
        clients,
        current: AtomicUsize::new(0),
        metrics: metrics.clone(),
    });
    shared.update_note(|n| n.updated_ms = store::now_ms());

    let (policy_tx, policy_rx) = watch::channel(engine.policy().clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (report_tx, report_rx) = mpsc::unbounded_channel();
    let helpers = vec![
        tokio::spawn(persist(shared.clone(), policy_rx.clone())),
        tokio::spawn(reporter(shared.clone(), report_rx)),
        tokio::spawn(counters(
            shared.clone(),
            policy_rx.clone(),
            report_tx.clone(),
        )),
    ];
    let task = tokio::spawn(sync_loop(shared, engine, policy_tx, report_tx, shutdown_rx));
    Ok(AgentHandle {
        policy: policy_rx,
        restored,
        metrics,
        shutdown: shutdown_tx,
        task,
        helpers,
    })
}

fn servers_of(resp: &SyncResponse) -> Vec<(i64, u64)> {
    match resp {
        SyncResponse::Snapshot { servers, .. } => {
            servers.iter().map(|s| (s.server_id, s.revision)).collect()
        }
        SyncResponse::Delta { changed, .. } => {
            changed.iter().map(|s| (s.server_id, s.revision)).collect()
        }
        SyncResponse::Unchanged { .. } => Vec::new(),
    }
}

/// The panel's revision in a sync answer.
fn revision_of(resp: &SyncResponse) -> u64 {
    match resp {
        SyncResponse::Snapshot { revision, .. }
        | SyncResponse::Delta { revision, .. }
        | SyncResponse::Unchanged { revision } => *revision,
    }
}

fn mode_name(mode: ApplyMode) -> &'static str {
    match mode {
        ApplyMode::Replace => "replace",
        ApplyMode::Elements => "elements",
        ApplyMode::Unchanged => "unchanged",
    }
}

async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|s| *s) => true,
    }
}

async fn sync_loop(
    shared: Arc<Shared>,
    mut engine: Engine,
    policy_tx: watch::Sender<PolicySnapshot>,
    report_tx: mpsc::UnboundedSender<ReportPart>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cfg = &shared.cfg;
    let mut since = engine.revision();
    let mut failures = 0u32;
    let mut rejections = 0u32;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let (replica, client) = shared.client();
        let poll = tokio::select! {
            r = client.sync(&cfg.zone, since, cfg.wait) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let resp = match poll {
            Ok(r) => {
                shared.metrics.synced(revision_of(&r), failures > 0);
                failures = 0;
                shared.update_note(|n| {
                    n.panel_reachable = true;
                    n.last_sync_ms = Some(store::now_ms());
                });
                r
            }
            Err(e) => {
                failures += 1;
                let delay = if e.is_auth() {
                    cfg.backoff_max
                } else {
                    backoff_delay(failures, cfg.backoff_initial, cfg.backoff_max)
                };
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "sync failed; enforcing the policy in force");
                shared.next_replica(replica);
                let msg = e.to_string();
                shared.metrics.sync_failed(&msg);
                shared.update_note(|n| {
                    n.panel_reachable =
                        matches!(e, ClientError::Status { .. } | ClientError::Decode { .. });
                    n.last_error = Some(msg);
                });
                if sleep_or_shutdown(delay, &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        match &resp {
            SyncResponse::Unchanged { revision } => {
                match since {
                    Some(s) if *revision < s => {
                        tracing::warn!(
                            panel = revision,
                            applied = s,
                            "the panel is behind this edge; asking for a snapshot"
                        );
                        since = None;
                    }
                    Some(s) if *revision > s => {
                        // Nothing changed in this zone up to `revision`.
                        engine.advance(*revision);
                        shared.metrics.applied(*revision, None);
                        since = Some(*revision);
                        policy_tx.send_replace(engine.policy().clone());
                        shared.update_note(|n| n.revision = Some(*revision));
                    }
                    _ => {}
                }
                continue;
            }
            SyncResponse::Delta { from, .. } if Some(*from) != since => {
                tracing::warn!(from, applied = ?since, "a delta that does not follow what is applied; asking for a snapshot");
                since = None;
                continue;
            }
            _ => {}
        }
        let attempted = servers_of(&resp);
        let (back, result) = match tokio::task::spawn_blocking(move || {
            let r = engine.apply(&resp);
            (engine, r)
        })
        .await
        {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "the apply thread died; stopping");
                return;
            }
        };
        engine = back;
        match result {
            Ok(outcome) => {
                rejections = 0;
                since = Some(outcome.revision);
                if outcome.mode != ApplyMode::Unchanged || !outcome.servers.is_empty() {
                    tracing::info!(
                        revision = outcome.revision,
                        mode = ?outcome.mode,
                        added = outcome.added,
                        removed = outcome.removed,
                        elements = outcome.elements,
                        servers = outcome.servers.len(),
                        took_ms = outcome.took.as_millis() as u64,
                        "applied"
                    );
                }
                shared.metrics.applied(
                    outcome.revision,
                    Some((mode_name(outcome.mode), outcome.took)),
                );
                policy_tx.send_replace(engine.policy().clone());
                shared.update_note(|n| {
                    n.revision = Some(outcome.revision);
                    n.last_error = None;
                });
                let _ = report_tx.send(ReportPart::Applied {
                    revision: outcome.revision,
                    servers: outcome
                        .servers
                        .iter()
                        .map(|(id, rev)| ServerApplyResult {
                            server_id: *id,
                            revision: *rev,
                            error: None,
                        })
                        .collect(),
                });
            }
            Err(EdgeError::Gap { .. }) => {
                since = None;
            }
            Err(e) => {
                rejections += 1;
                let delay = backoff_delay(rejections, cfg.backoff_initial, cfg.backoff_max);
                tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "policy not applied; the previous one stays in force");
                let msg = e.to_string();
                shared.metrics.apply_failed(&msg);
                shared.update_note(|n| n.last_error = Some(msg.clone()));
                let _ = report_tx.send(ReportPart::Applied {
                    revision: engine.policy().revision,
                    servers: attempted
                        .into_iter()
                        .map(|(id, rev)| ServerApplyResult {
                            server_id: id,
                            revision: rev,
                            error: Some(msg.clone()),
                        })
                        .collect(),
                });
                if sleep_or_shutdown(delay, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Saves every new policy in force to disk (the latest wins; bursts coalesce).
async fn persist(shared: Arc<Shared>, mut rx: watch::Receiver<PolicySnapshot>) {
    let mut saved_revision = rx.borrow().revision;
    let mut saved_servers = rx.borrow().servers.clone();
    while rx.changed().await.is_ok() {
        let snap = rx.borrow_and_update().clone();
        if snap.revision == saved_revision && Arc::ptr_eq(&snap.servers, &saved_servers) {
            continue;
        }
        let cfg = shared.cfg.clone();
        let s = snap.clone();
        let r = tokio::task::spawn_blocking(move || {
            store::save_policy(
                &cfg.state_dir,
                &cfg.zone,
                cfg.table.mode,
                &cfg.table.name,
                s.revision,
                s.servers.values().map(|p| p.as_ref()),
            )
        })
        .await;
        match r {
            Ok(Ok(())) => {
                saved_revision = snap.revision;
                saved_servers = snap.servers;
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot save the policy to disk"),
            Err(e) => tracing::error!(error = %e, "the save thread died"),
        }
    }
}

/// Reads the hit counters now and then.
async fn counters(
    shared: Arc<Shared>,
    rx: watch::Receiver<PolicySnapshot>,
    tx: mpsc::UnboundedSender<ReportPart>,
) {
    let every = shared.cfg.counters_every;
    if every.is_zero() {
        return;
    }
    // Reading counters means listing the whole table (about 1.3 s of nft per
    // 100k elements): pause at least 20 times as long as the last read took, so
    // that it never costs more than ~5% of a core.
    let mut pause = every;
    loop {
        tokio::time::sleep(pause).await;
        let snap = rx.borrow().clone();
        if snap.servers.is_empty() {
            continue;
        }
        let table = shared.cfg.table.clone();
        let kernel_path = shared.cfg.engine.kernel;
        let started = std::time::Instant::now();
        let policy = snap.clone();
        let r = tokio::task::spawn_blocking(move || -> Result<Vec<RuleCounter>, EdgeError> {
            let Some(kernel) = engine::read_kernel_with(kernel_path, &table)? else {
                return Ok(Vec::new());
            };
            let compiled = crate::compile::compile_all(snap.servers.values().map(|s| s.as_ref()));
            Ok(engine::counters_of(&kernel, compiled.values().flatten()))
        })
        .await;
        match r {
            Ok(Ok(c)) if !c.is_empty() => {
                shared.metrics.counters_read(&c, &policy);
                let _ = tx.send(ReportPart::Counters(c));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the counters"),
            Err(e) => tracing::warn!(error = %e, "the counters thread died"),
        }
        pause = every.max(started.elapsed() * 20);
    }
}

/// Sends reports, merging whatever is pending, retrying with backoff.
async fn reporter(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<ReportPart>) {
    let cfg = &shared.cfg;
    #[derive(Default)]
    struct Pending {
        revision: u64,
        servers: BTreeMap<i64, ServerApplyResult>,
        counters: Option<Vec<RuleCounter>>,
    }
    impl Pending {
        fn merge(&mut self, p: ReportPart) {
            match p {
                ReportPart::Applied { revision, servers } => {
                    self.revision = self.revision.max(revision);
                    for x in servers {
                        self.servers.insert(x.server_id, x);
                    }
                }
                ReportPart::Counters(c) => self.counters = Some(c),
            }
        }
        fn is_empty(&self) -> bool {
            self.servers.is_empty() && self.counters.is_none()
        }
    }
    let mut pending = Pending::default();
    let mut failures = 0u32;
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(p) => pending.merge(p),
                None => return,
            }
        }
        while let Ok(p) = rx.try_recv() {
            pending.merge(p);
        }
        let report = EdgeReport {
            edge: cfg.edge_name.clone(),
            zone: cfg.zone.clone(),
            revision: pending.revision,
            servers: pending.servers.values().cloned().collect(),
            counters: pending.counters.clone().unwrap_or_default(),
        };
        let (_, client) = shared.client();
        match client.report(&report).await {
            Ok(()) => {
                failures = 0;
                pending.servers.clear();
                pending.counters = None;
            }
            Err(e) => {
                failures += 1;
                let delay = backoff_delay(failures, cfg.backoff_initial, cfg.backoff_max);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "report failed");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
