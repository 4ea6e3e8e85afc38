//! Propagation: time from a panel API call returning to the change being
//! enforced by the edge's kernel table, with 1,000 servers and 10,000 rules
//! loaded (run as root: `cargo bench -p edge --bench propagation`).
//!
//! A real panel (SQLite, in this process) and the edge agent (in this process)
//! run in a network namespace this benchmark creates. Each of 200 changes adds
//! a rule to one server's firewall through the customer API; the clock stops
//! when the agent publishes the policy containing that rule, which it does only
//! after the kernel committed the transaction (and at the end the last rules
//! are checked in the kernel's table). Changes are sequential.

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
const CHANGES: usize = 200;
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

    let state = tempfile::tempdir().unwrap();
    let mut cfg = AgentConfig::new(
        &url,
        &api.edge_token,
        ZONE,
        TableSpec::new(Mode::Forward),
        state.path().to_path_buf(),
    );
    cfg.counters_every = Duration::ZERO;
    let t = Instant::now();
    let mut h = agent::start(cfg).await.unwrap();
    loop {
        {
            let p = h.policy.borrow_and_update();
            if p.enforced_count() == SERVERS && p.rule_count() == SERVERS * RULES_PER_SERVER {
                break;
            }
        }
        tokio::time::timeout(Duration::from_secs(60), h.policy.changed())
            .await
            .expect("the first snapshot within 60 s")
            .unwrap();
    }
    let first = t.elapsed();

    let mut rng = rand::thread_rng();
    let mut latencies = Vec::with_capacity(CHANGES);
    let mut last = Vec::new();
    for c in 0..CHANGES {
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
        latencies.push(returned.elapsed());
        last.push((format!("10.0.{}.{}", i / 250, i % 250 + 1), port));
        // A little think time between changes, as an operator would have.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..20))).await;
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
    h.stop().await;
    let _ = panel.stop().await;
    let mut sorted = latencies.clone();
    sorted.sort();
    let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    println!();
    println!(
        "edge: propagation, panel API call returned -> enforced in the kernel ({SERVERS} servers, {} rules, {elements} elements)",
        SERVERS * RULES_PER_SERVER
    );
    println!(
        "setup through the API: {:.1} s; first snapshot applied {:.0} ms after the agent started",
        setup.as_secs_f64(),
        first.as_secs_f64() * 1000.0
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "CHANGES", "P50", "P90", "P99", "MAX", "MEAN"
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        CHANGES,
        ms(pct(&sorted, 0.5)),
        ms(pct(&sorted, 0.9)),
        ms(pct(&sorted, 0.99)),
        ms(*sorted.last().unwrap()),
        ms(mean)
    );
    println!("target: p99 <= 100 ms");
}
