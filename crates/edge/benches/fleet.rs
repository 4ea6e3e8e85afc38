//! A provider's fleet on one machine: `cargo bench -p edge --bench fleet`.
//!
//! Two panel replicas (this binary re-executed as `portwall-panel` would run
//! it: [`panel::Panel::start`] on a [`panel::Store`], in their own processes,
//! so their memory and CPU are measured and one can be killed with -9) share
//! one PostgreSQL database (the throwaway cluster of the panel's tests,
//! `fsync=off`, or `PORTWALL_TEST_DATABASE_URL`). The database is seeded
//! directly with SQL (the seed is the setup, not the measurement): by default
//! 100,000 servers over 5,000 customers, 50,000 firewalls with 20 rules each
//! (1,000,000 rules), one label selector per customer (`env=prod`) and id
//! assignments; servers spread over 100 zones.
//!
//! 100 simulated edges, one per zone, each a real sync client
//! ([`edge::client::PanelClient`]) that applies snapshots and deltas to an
//! in-memory model instead of the kernel, half on each replica. Reported:
//!
//! 1. cold start: every edge from nothing to the current revision; snapshot
//!    sizes; the replicas' RSS and CPU;
//! 2. a mixed write load (rules added, server labels flipped, which moves the
//!    servers in and out of the `env=prod` firewall) by 32 clients for
//!    `FLEET_SECONDS` (60): writes/s, and propagation (API call returned ->
//!    every affected edge applied a revision at or above the write's)
//!    p50/p99/max;
//! 3. one replica killed with -9 during a write: the edges on it move to the
//!    other; time until every edge has the write;
//! 4. checks: no edge ever got a delta that does not start where it stood or
//!    a revision going back, and every edge's model equals a fresh snapshot
//!    of its zone from the store.
//!
//! `FLEET_SCALE` (default 1.0) scales servers, firewalls and rules (e.g. 0.1:
//! 10,000 servers, 100,000 rules); the table says which size ran. Not in the
//! measurement: the 2 real edges applying to network namespaces (the
//! `propagation` bench measures the kernel path).

#[path = "../../panel/tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use edge::client::PanelClient;
use model::network::sync::{ServerPolicy, SyncResponse};
use rand::Rng;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ZONES: usize = 100;
const SERVERS_PER_CUSTOMER: i64 = 20;
const FIREWALLS_PER_CUSTOMER: i64 = 10;
const RULES_PER_FIREWALL: i64 = 20;
const WRITERS: usize = 32;
/// Customers with an API token that the write load uses.
const WRITING_CUSTOMERS: i64 = 64;
const REPLICA_ENV: &str = "FLEET_REPLICA_DATABASE_URL";

fn zone_name(z: usize) -> String {
    format!("z{z:02}")
}

/// The zone of server `id` (ids are 1-based, as seeded).
fn zone_of(server: i64) -> usize {
    ((server - 1) % ZONES as i64) as usize
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One panel replica in its own process.
struct Replica {
    child: Child,
    url: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    fn start(db: &str) -> Replica {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(REPLICA_ENV, db)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a panel replica");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("the replica printed its URL").unwrap();
            if let Some(u) = line.strip_prefix("URL ") {
                break u.to_string();
            }
        };
        Replica { child, url }
    }

    /// (RSS MiB, peak RSS MiB, CPU seconds so far).
    fn usage(&self) -> (f64, f64, f64) {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |key: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0.0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'.
        (
            kib("VmRSS:") / 1024.0,
            kib("VmHWM:") / 1024.0,
            (ticks(11) + ticks(12)) / hz,
        )
    }
}

/// The replica process: a panel on the database, until killed.
fn run_replica(db: String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = panel::Store::open(&panel::DatabaseConfig::Postgres(db))
            .await
            .expect("open the store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = panel::Panel::start(listener, store, panel::PanelConfig::default())
            .await
            .unwrap();
        println!("URL {}", p.url());
        std::future::pending::<()>().await;
    });
}

/// The seeded fleet's shape.
struct Fleet {
    customers: i64,
    servers: i64,
    firewalls: i64,
}

impl Fleet {
    /// The servers firewall `f` applies to, with the labels as they are.
    fn targets(&self, f: i64, prod: &dyn Fn(i64) -> bool) -> Vec<i64> {
        let c = (f - 1) / FIREWALLS_PER_CUSTOMER;
        let k = (f - 1) % FIREWALLS_PER_CUSTOMER;
        let first = c * SERVERS_PER_CUSTOMER + 1;
        if k == 0 {
            (first..first + SERVERS_PER_CUSTOMER)
                .filter(|s| prod(*s))
                .collect()
        } else {
            vec![first + 2 * k - 2, first + 2 * k - 1]
        }
    }
}

async fn seed(db: &str, scale: f64) -> Fleet {
    use sqlx::Connection;
    let customers = ((5_000.0 * scale).round() as i64).max(WRITING_CUSTOMERS);
    let fleet = Fleet {
        customers,
        servers: customers * SERVERS_PER_CUSTOMER,
        firewalls: customers * FIREWALLS_PER_CUSTOMER,
    };
    // The schema first (the store migrates at open).
    panel::Store::open(&panel::DatabaseConfig::Postgres(db.to_string()))
        .await
        .expect("migrate");
    let mut conn = sqlx::PgConnection::connect(db).await.unwrap();
    let statements = [
        format!("INSERT INTO customers (id, name, email, created_at) SELECT g, 'fleet-' || g, 'ops' || g || '@example.com', 0 FROM generate_series(1, {customers}) g"),
        format!("INSERT INTO servers (id, customer_id, name, kind, ipv4, ipv6, zone, labels, policy_revision, created_at) \
                 SELECT g, (g - 1) / {SERVERS_PER_CUSTOMER} + 1, 'vps' || g, 'VPS', \
                 '10.' || (g / 65536) || '.' || ((g / 256) % 256) || '.' || (g % 256), '', \
                 'z' || lpad(((g - 1) % {ZONES})::text, 2, '0'), \
                 CASE WHEN g % 2 = 0 THEN '{{\"env\":\"prod\"}}' ELSE '{{\"env\":\"staging\"}}' END, 1, 0 \
                 FROM generate_series(1, {}) g", fleet.servers),
        format!("INSERT INTO firewalls (id, customer_id, name, description, active, revision, created_at, updated_at) \
                 SELECT f, (f - 1) / {FIREWALLS_PER_CUSTOMER} + 1, 'fw' || f, '', 1, 1, 0, 0 FROM generate_series(1, {}) f", fleet.firewalls),
        format!("INSERT INTO rules (id, firewall_id, position, protocol, port_start, port_end, sources, source_count, description, enabled) \
                 SELECT (f - 1) * {RULES_PER_FIREWALL} + j + 1, f, j, 'tcp', 1000 + j, 1000 + j, \
                 CASE WHEN j % 4 = 0 THEN '198.51.100.0/24,2001:db8::/48' ELSE '' END, \
                 CASE WHEN j % 4 = 0 THEN 2 ELSE 0 END, '', 1 \
                 FROM generate_series(1, {}) f, generate_series(0, {}) j", fleet.firewalls, RULES_PER_FIREWALL - 1),
        format!("INSERT INTO selectors (firewall_id, selector, created_at) SELECT f, 'env=prod', 0 FROM generate_series(1, {}) f WHERE (f - 1) % {FIREWALLS_PER_CUSTOMER} = 0", fleet.firewalls),
        format!("INSERT INTO assignments (firewall_id, server_id, created_at) \
                 SELECT f, ((f - 1) / {FIREWALLS_PER_CUSTOMER}) * {SERVERS_PER_CUSTOMER} + 2 * ((f - 1) % {FIREWALLS_PER_CUSTOMER}) - 1 + d, 0 \
                 FROM generate_series(1, {}) f, generate_series(0, 1) d WHERE (f - 1) % {FIREWALLS_PER_CUSTOMER} <> 0", fleet.firewalls),
        "UPDATE meta SET revision = 1".to_string(),
        "SELECT setval(pg_get_serial_sequence('customers', 'id'), (SELECT MAX(id) FROM customers))".into(),
        "SELECT setval(pg_get_serial_sequence('servers', 'id'), (SELECT MAX(id) FROM servers))".into(),
        "SELECT setval(pg_get_serial_sequence('firewalls', 'id'), (SELECT MAX(id) FROM firewalls))".into(),
        "SELECT setval(pg_get_serial_sequence('rules', 'id'), (SELECT MAX(id) FROM rules))".into(),
        "ANALYZE".into(),
    ];
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let _ = conn.close().await;
    fleet
}

/// What one simulated edge saw.
#[derive(Default)]
struct EdgeLog {
    /// (revision, when it was applied), increasing.
    applied: Vec<(u64, Instant)>,
    model: BTreeMap<i64, ServerPolicy>,
    snapshot_bytes: usize,
    failovers: u32,
}

/// A simulated edge: follows the sync protocol on `urls[0]`, moving to the
/// next URL when a request fails, until `stop`.
async fn run_edge(
    zone: String,
    token: String,
    urls: Vec<String>,
    log: Arc<Mutex<EdgeLog>>,
    stop: Arc<AtomicBool>,
) {
    let mut current = 0;
    let mut client = PanelClient::new(&urls[current], &token).unwrap();
    let mut at: Option<u64> = None;
    while !stop.load(Ordering::SeqCst) {
        let wait = Duration::from_secs(if at.is_some() { 2 } else { 0 });
        match client.sync(&zone, at, wait).await {
            Ok(resp) => {
                let now = Instant::now();
                let mut l = log.lock().unwrap();
                let revision = match resp {
                    SyncResponse::Snapshot { revision, servers } => {
                        assert!(at.is_none(), "{zone}: a snapshot after the first contact");
                        l.snapshot_bytes = serde_json::to_vec(&servers).unwrap().len();
                        l.model = servers.into_iter().map(|s| (s.server_id, s)).collect();
                        revision
                    }
                    SyncResponse::Delta {
                        from,
                        revision,
                        changed,
                        removed,
                    } => {
                        assert_eq!(Some(from), at, "{zone}: a delta from where the edge is");
                        for s in changed {
                            l.model.insert(s.server_id, s);
                        }
                        for id in removed {
                            l.model.remove(&id);
                        }
                        revision
                    }
                    SyncResponse::Unchanged { revision } => revision,
                };
                assert!(
                    at.is_none_or(|a| revision >= a),
                    "{zone}: revision went back from {at:?} to {revision}"
                );
                if at != Some(revision) {
                    l.applied.push((revision, now));
                }
                at = Some(revision);
            }
            Err(_) => {
                current = (current + 1) % urls.len();
                client = PanelClient::new(&urls[current], &token).unwrap();
                log.lock().unwrap().failovers += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// When the edge of a zone first applied a revision >= `rev`.
fn applied_at(log: &EdgeLog, rev: u64) -> Option<Instant> {
    let i = log.applied.partition_point(|(r, _)| *r < rev);
    log.applied.get(i).map(|(_, t)| *t)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A write the load made: when its API call returned, its revision, the
/// zones it affects.
struct Write {
    returned: Instant,
    revision: u64,
    zones: Vec<usize>,
}

async fn api(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let resp = http
        .request(method, &url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{url}: {status} {text}"));
    }
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn main() {
    if let Ok(db) = std::env::var(REPLICA_ENV) {
        return run_replica(db);
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let scale: f64 = env_or("FLEET_SCALE", 1.0f64).clamp(0.01, 1.0);
    let seconds: u64 = env_or("FLEET_SECONDS", 60u64).clamp(5, 600);
    let db = pg::fresh_database().await;

    let t = Instant::now();
    let fleet = seed(&db, scale).await;
    let seeded = t.elapsed();
    println!(
        "fleet: {} customers, {} servers, {} firewalls, {} rules, {ZONES} zones (scale {scale}); seeded with SQL in {:.1} s",
        fleet.customers,
        fleet.servers,
        fleet.firewalls,
        fleet.firewalls * RULES_PER_FIREWALL,
        seeded.as_secs_f64()
    );

    let store = panel::Store::open(&panel::DatabaseConfig::Postgres(db.clone()))
        .await
        .unwrap();
    let admin = store.ensure_admin_token().await.unwrap().unwrap();
    let replicas = [Replica::start(&db), Replica::start(&db)];
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    // portwall's TLS config (rustls with ring): reqwest has no default
    // provider since aws-lc is gone, and builds no client without one.
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls::ClientTls::default().config().unwrap())
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // Tokens: one edge token per zone, write tokens for the writing customers.
    let mut edge_tokens = Vec::new();
    for z in 0..ZONES {
        let v = api(
            &http,
            reqwest::Method::POST,
            format!("{}/v1/tokens", urls[0]),
            &admin,
            json!({"name": format!("edge-{}", zone_name(z)), "kind": "edge", "zone": zone_name(z)}),
        )
        .await
        .unwrap();
        edge_tokens.push(v["token"].as_str().unwrap().to_string());
    }
    let mut customer_tokens = Vec::new();
    for c in 1..=WRITING_CUSTOMERS {
        let v = api(
            &http,
            reqwest::Method::POST,
            format!("{}/v1/tokens", urls[0]),
            &admin,
            json!({"name": "load", "customer_id": c, "scope": "write"}),
        )
        .await
        .unwrap();
        customer_tokens.push(v["token"].as_str().unwrap().to_string());
    }

    // 1. Cold start.
    let before: Vec<_> = replicas.iter().map(Replica::usage).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let logs: Vec<Arc<Mutex<EdgeLog>>> = (0..ZONES).map(|_| Arc::default()).collect();
    let start_rev = store.revision().await.unwrap();
    let cold = Instant::now();
    let mut edges = Vec::new();
    for z in 0..ZONES {
        let mut order = urls.clone();
        order.rotate_left(z % 2);
        edges.push(tokio::spawn(run_edge(
            zone_name(z),
            edge_tokens[z].clone(),
            order,
            logs[z].clone(),
            stop.clone(),
        )));
    }
    let all_at = |rev: u64| {
        logs.iter()
            .all(|l| applied_at(&l.lock().unwrap(), rev).is_some())
    };
    while !all_at(start_rev) {
        assert!(
            cold.elapsed() < Duration::from_secs(600),
            "cold start within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cold_start = cold.elapsed();
    let after: Vec<_> = replicas.iter().map(Replica::usage).collect();
    let sizes: Vec<usize> = logs
        .iter()
        .map(|l| l.lock().unwrap().snapshot_bytes)
        .collect();
    println!(
        "cold start: {ZONES} edges from nothing to revision {start_rev} in {}; snapshots {:.1} MiB in all, {:.0} KiB per zone on average, {:.0} KiB the largest",
        ms(cold_start),
        sizes.iter().sum::<usize>() as f64 / 1048576.0,
        sizes.iter().sum::<usize>() as f64 / ZONES as f64 / 1024.0,
        *sizes.iter().max().unwrap() as f64 / 1024.0
    );
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        println!(
            "  replica {i}: RSS {:.0} MiB (peak {:.0} MiB), CPU {:.1} s for the cold start",
            a.0,
            a.1,
            a.2 - b.2
        );
    }

    // 2. The mixed write load.
    let writes: Arc<Mutex<Vec<Write>>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    let prod: Arc<Mutex<BTreeMap<i64, bool>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let before: Vec<_> = replicas.iter().map(Replica::usage).collect();
    let load = Instant::now();
    let mut writers = Vec::new();
    let fleet = Arc::new(fleet);
    for w in 0..WRITERS {
        let (http, urls, tokens, writes, errors, prod, fleet) = (
            http.clone(),
            urls.clone(),
            customer_tokens.clone(),
            writes.clone(),
            errors.clone(),
            prod.clone(),
            fleet.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let (c, fw_k, flip, port, url) = {
                    let mut rng = rand::thread_rng();
                    (
                        rng.gen_range(0..WRITING_CUSTOMERS),
                        rng.gen_range(0..FIREWALLS_PER_CUSTOMER),
                        rng.gen_range(0..5) == 0,
                        rng.gen_range(2000..60000u16),
                        urls[(w + n as usize) % urls.len()].clone(),
                    )
                };
                let token = &tokens[c as usize];
                let is_prod = |s: i64| prod.lock().unwrap().get(&s).copied().unwrap_or(s % 2 == 0);
                if flip {
                    // Flip one server's env: it enters or leaves the
                    // customer's env=prod firewall.
                    let server = c * SERVERS_PER_CUSTOMER + 1 + (n as i64 % SERVERS_PER_CUSTOMER);
                    let env = if is_prod(server) { "staging" } else { "prod" };
                    match api(
                        &http,
                        reqwest::Method::PATCH,
                        format!("{url}/v1/servers/{server}"),
                        token,
                        json!({"labels": {"env": env}}),
                    )
                    .await
                    {
                        Ok(v) => {
                            prod.lock().unwrap().insert(server, env == "prod");
                            writes.lock().unwrap().push(Write {
                                returned: Instant::now(),
                                revision: v["policy_revision"].as_u64().unwrap(),
                                zones: vec![zone_of(server)],
                            });
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                } else {
                    let f = c * FIREWALLS_PER_CUSTOMER + fw_k + 1;
                    // The targets as they are before the write (a label
                    // flip racing with it is its own write).
                    let zones: Vec<usize> = fleet
                        .targets(f, &is_prod)
                        .into_iter()
                        .map(zone_of)
                        .collect();
                    match api(
                        &http,
                        reqwest::Method::POST,
                        format!("{url}/v1/firewalls/{f}/rules"),
                        token,
                        json!({"protocol": "tcp", "port": port}),
                    )
                    .await
                    {
                        Ok(v) => writes.lock().unwrap().push(Write {
                            returned: Instant::now(),
                            revision: v["firewall"]["revision"].as_u64().unwrap(),
                            zones,
                        }),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let load_time = load.elapsed();
    let after: Vec<_> = replicas.iter().map(Replica::usage).collect();
    let last_rev = store.revision().await.unwrap();
    let settle = Instant::now();
    while !all_at(last_rev) {
        assert!(
            settle.elapsed() < Duration::from_secs(60),
            "edges catch up within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let writes = std::mem::take(&mut *writes.lock().unwrap());
    let mut propagation: Vec<Duration> = writes
        .iter()
        .filter(|w| !w.zones.is_empty())
        .map(|w| {
            w.zones
                .iter()
                .map(|z| {
                    let l = logs[*z].lock().unwrap();
                    applied_at(&l, w.revision)
                        .expect("every edge reached the last revision")
                        .saturating_duration_since(w.returned)
                })
                .max()
                .unwrap()
        })
        .collect();
    propagation.sort();
    let cpu: f64 = before.iter().zip(&after).map(|(b, a)| a.2 - b.2).sum();
    println!(
        "write load: {WRITERS} clients for {:.0} s over both replicas: {} writes ({:.0}/s), {} errors; panel CPU {:.2} ms per write",
        load_time.as_secs_f64(),
        writes.len(),
        writes.len() as f64 / load_time.as_secs_f64(),
        errors.load(Ordering::SeqCst),
        cpu * 1000.0 / writes.len().max(1) as f64
    );
    println!(
        "  propagation (API call returned -> every affected edge applied): p50 {}, p99 {}, max {} (target p99 <= 250 ms)",
        ms(pct(&propagation, 0.5)),
        ms(pct(&propagation, 0.99)),
        ms(pct(&propagation, 1.0))
    );
    for (i, r) in after.iter().enumerate() {
        println!(
            "  replica {i}: RSS {:.0} MiB (peak {:.0} MiB; target <= 2048)",
            r.0, r.1
        );
    }

    // 3. Replica 0 killed with -9; one more write through replica 1.
    let [mut killed, survivor] = replicas;
    let kill = Instant::now();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let v = api(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/firewalls/1/rules", survivor.url),
        &customer_tokens[0],
        json!({"protocol": "tcp", "port": 65000}),
    )
    .await
    .unwrap();
    let rev = v["firewall"]["revision"].as_u64().unwrap();
    while !all_at(rev) {
        assert!(
            kill.elapsed() < Duration::from_secs(60),
            "edges converge after the kill within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let converged = kill.elapsed();
    let failovers: u32 = logs.iter().map(|l| l.lock().unwrap().failovers).sum();
    println!(
        "replica 0 killed with -9: every edge at the next write's revision {} after the kill ({failovers} failed polls moved to replica 1; target <= 5 s)",
        ms(converged)
    );

    // 4. Every edge's model equals a fresh snapshot of its zone.
    stop.store(true, Ordering::SeqCst);
    for e in edges {
        let _ = tokio::time::timeout(Duration::from_secs(30), e).await;
    }
    let mut mismatches = 0;
    for z in 0..ZONES {
        let client = PanelClient::new(&survivor.url, &edge_tokens[z]).unwrap();
        let SyncResponse::Snapshot { servers, .. } = client
            .sync(&zone_name(z), None, Duration::ZERO)
            .await
            .unwrap()
        else {
            panic!("a first contact is a snapshot")
        };
        let fresh: BTreeMap<i64, ServerPolicy> =
            servers.into_iter().map(|s| (s.server_id, s)).collect();
        if logs[z].lock().unwrap().model != fresh {
            mismatches += 1;
        }
    }
    println!("check: {mismatches} of {ZONES} edges differ from the store (must be 0); deltas and revisions were in order");
    assert_eq!(mismatches, 0);
    drop(killed);
    drop(survivor);
}
