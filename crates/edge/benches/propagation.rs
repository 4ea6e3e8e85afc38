//! Propagation: time from a panel API call returning to the change being
//! enforced by the edge's kernel table, with 1,000 servers and 10,000 rules
//! loaded, with the edge reaching the panel over plain HTTP and over HTTPS
//! (rustls, ring) in the same run (run as root: `cargo bench -p edge --bench
//! propagation`).
//!
//! A real panel (SQLite, in this process) serves one store on two listeners,
//! plain HTTP and HTTPS (a certificate from a throwaway CA, which the HTTPS
//! agent trusts with its CA file); the edge agent runs in this process. All of
//! it lives in a network namespace this benchmark creates. The transports take
//! turns in blocks of 25 changes, one agent at a time (so a drifting machine
//! speed hits both alike); each change adds a rule to one server's firewall
//! through the customer API, and the clock stops when the agent publishes the
//! policy containing that rule, which it does only after the kernel committed
//! the transaction (at the end the last rules are checked in the kernel's
//! table). Changes are sequential. HTTPS may not cost more than 20 % at p99.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{call, start_panel, Api};
use edge::agent::{self, AgentConfig};
use edge::client::Method;
use edge::compile::{Key, Mode, TableSpec};
use rand::Rng;
use serde_json::json;
use std::time::{Duration, Instant};
use testns::Netns;

const SERVERS: usize = 1_000;
const RULES_PER_SERVER: usize = 10;
/// Changes per transport.
const CHANGES: usize = 200;
/// Changes in a row on one transport before the other takes its turn.
const BLOCK: usize = 25;
const ZONE: &str = "bench";

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let ns = Netns::new();
    ns.run(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(bench());
    });
}

async fn bench() {
    let dir = tempfile::tempdir().unwrap();
    let db = panel::DatabaseConfig::sqlite_in(dir.path());
    let panel = start_panel(&db, 0).await;
    let admin = panel
        .state
        .store
        .ensure_admin_token()
        .await
        .unwrap()
        .unwrap();
    let url = panel.url();
    let api = Api::setup(&url, &admin, ZONE).await;

    let setup = Instant::now();
    let mut servers = Vec::new();
    let mut firewalls = Vec::new();
    for i in 0..SERVERS {
        let v4 = format!("10.0.{}.{}", i / 250, i % 250 + 1);
        let sid = api
            .server(&format!("vps{i}"), "VPS", &[&v4], &[], ZONE)
            .await;
        let rules: Vec<_> = (0..RULES_PER_SERVER)
            .map(|k| json!({"protocol": "tcp", "port": 1000 + k}))
            .collect();
        let fw = api.firewall(&format!("fw{i}"), json!(rules)).await;
        call(
            &api.customer,
            Method::POST,
            &format!("/v1/firewalls/{fw}/assignments"),
            json!({"server_id": sid}),
        )
        .await;
        call(
            &api.customer,
            Method::POST,
            &format!("/v1/firewalls/{fw}/enable"),
            serde_json::Value::Null,
        )
        .await;
        servers.push(sid);
        firewalls.push(fw);
    }
    let setup = setup.elapsed();

    let ca_dir = tempfile::tempdir().unwrap();
    let ca = tls::authority::Authority::new("propagation bench CA").unwrap();
    let files = ca
        .issue_files(ca_dir.path(), "panel", &["127.0.0.1"])
        .unwrap();
    let https_panel = panel::Panel::start_with_tls(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        panel.state.store.clone(),
        panel::PanelConfig::default(),
        Some(panel::serve::ServerTls::load(&files.cert, &files.key).unwrap()),
    )
    .await
    .unwrap();
    let transports = [
        Transport {
            name: "HTTP",
            url: url.clone(),
            tls: tls::ClientTls::default(),
            state: tempfile::tempdir().unwrap(),
            latencies: Vec::new(),
            first: Vec::new(),
        },
        Transport {
            name: "HTTPS",
            url: https_panel.url(),
            tls: tls::ClientTls {
                ca_file: Some(files.ca.clone()),
                insecure_http: false,
            },
            state: tempfile::tempdir().unwrap(),
            latencies: Vec::new(),
            first: Vec::new(),
        },
    ];
    let mut transports = transports;
    let mut rng = rand::thread_rng();
    let mut last = Vec::new();
    let mut c = 0usize;
    for block in 0..(2 * CHANGES / BLOCK) {
        let tr = &mut transports[block % 2];
        let mut cfg = AgentConfig::new(
            &tr.url,
            &api.edge_token,
            ZONE,
            TableSpec::new(Mode::Forward),
            tr.state.path().to_path_buf(),
        );
        cfg.tls = tr.tls.clone();
        cfg.counters_every = Duration::ZERO;
        let t = Instant::now();
        let mut h = agent::start(cfg).await.unwrap();
        // Fully in force: every server and every rule added so far.
        let want_rules = SERVERS * RULES_PER_SERVER + c;
        loop {
            {
                let p = h.policy.borrow_and_update();
                if p.enforced_count() == SERVERS && p.rule_count() == want_rules {
                    break;
                }
            }
            tokio::time::timeout(Duration::from_secs(60), h.policy.changed())
                .await
                .expect("the first snapshot within 60 s")
                .unwrap();
        }
        tr.first.push(t.elapsed());
        for _ in 0..BLOCK {
            let i = rng.gen_range(0..SERVERS);
            let port = 20_000 + c as u16;
            let created = api
                .post(
                    &format!("/v1/firewalls/{}/rules", firewalls[i]),
                    json!({"protocol": "tcp", "port": port}),
                )
                .await
                .expect("add a rule");
            let returned = Instant::now();
            let rule_id = created["rule"]["id"].as_i64().expect("the new rule's id");
            loop {
                let done = h
                    .policy
                    .borrow_and_update()
                    .servers
                    .get(&servers[i])
                    .is_some_and(|s| s.rules.iter().any(|r| r.rule_id == rule_id));
                if done {
                    break;
                }
                tokio::time::timeout(Duration::from_secs(10), h.policy.changed())
                    .await
                    .unwrap_or_else(|_| panic!("change {c} not applied within 10 s"))
                    .unwrap();
            }
            tr.latencies.push(returned.elapsed());
            last.push((format!("10.0.{}.{}", i / 250, i % 250 + 1), port));
            c += 1;
            // A little think time between changes, as an operator would have.
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..20))).await;
        }
        h.stop().await;
    }
    // The last changes are in the kernel.
    let table = TableSpec::new(Mode::Forward);
    let kernel = tokio::task::spawn_blocking(move || edge::engine::read_kernel(&table))
        .await
        .unwrap()
        .unwrap()
        .expect("the edge table");
    for (addr, port) in last.iter().rev().take(10) {
        let want = Key::Exact {
            daddr: addr.parse().unwrap(),
            proto: 6,
            port: *port,
        };
        assert!(
            kernel
                .elements
                .iter()
                .any(|e| e.key.as_ref() == Some(&want)),
            "{addr} {port} not in the kernel"
        );
    }
    let elements = kernel.elements.len();
    let _ = https_panel.stop().await;
    let _ = panel.stop().await;
    println!();
    println!(
        "edge: propagation, panel API call returned -> enforced in the kernel ({SERVERS} servers, {} rules, {elements} elements), plain HTTP vs HTTPS in one run",
        SERVERS * RULES_PER_SERVER
    );
    println!("setup through the API: {:.1} s", setup.as_secs_f64());
    println!(
        "{:<10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>14}",
        "TRANSPORT", "CHANGES", "P50", "P90", "P99", "MAX", "MEAN", "FIRST SNAPSHOT"
    );
    let mut p99 = Vec::new();
    for tr in &transports {
        let mut sorted = tr.latencies.clone();
        sorted.sort();
        let mean = sorted.iter().sum::<Duration>() / sorted.len() as u32;
        let mut first = tr.first.clone();
        first.sort();
        p99.push(pct(&sorted, 0.99));
        println!(
            "{:<10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>14}",
            tr.name,
            sorted.len(),
            ms(pct(&sorted, 0.5)),
            ms(pct(&sorted, 0.9)),
            ms(pct(&sorted, 0.99)),
            ms(*sorted.last().unwrap()),
            ms(mean),
            ms(pct(&first, 0.5)),
        );
    }
    println!(
        "HTTPS / HTTP at p99: {:.2} (target <= 1.20); target: p99 <= 100 ms",
        p99[1].as_secs_f64() / p99[0].as_secs_f64()
    );
}

/// One way for the edge to reach the panel, and what it measured.
struct Transport {
    name: &'static str,
    url: String,
    tls: tls::ClientTls,
    state: tempfile::TempDir,
    latencies: Vec<Duration>,
    first: Vec<Duration>,
}
