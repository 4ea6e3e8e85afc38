//! Time to apply a full snapshot of 10,000 servers / 100,000 rules, and the
//! variants of the set layout (run as root: `cargo bench -p edge --bench
//! snapshot_apply`). Everything runs in a network namespace this benchmark
//! creates.
//!
//! - **chosen**: what the edge does — single ports from anywhere in hash sets
//!   (`exact_*`), ranges and sources in interval sets, a counter on every element.
//! - **all-interval**: every tcp/udp rule in the 4-field interval set
//!   (`daddr . proto . dport . saddr`), counters on.
//! - **chosen, no counters**: the chosen layout without element counters (what
//!   counters cost).
//!
//! Also: one rule changed on the loaded table (one element delta), and reading
//! the table back (`nft -j list table`'s JSON). Wall time is the median of the
//! runs; CPU is the user+system time of this process and of the `nft` processes
//! it ran (the machine's other load does not inflate it). The kernel is reached
//! over netlink; `PORTWALL_NFT_BACKEND=nft` measures the `nft` binary instead.

use edge::compile::{self, Element, Key, Mode, SetId, TableSpec};
use edge::engine::{Engine, EngineOptions};
use model::network::sync::{EdgeRule, ServerPolicy, SyncResponse};
use model::network::NetworkProtocol;
use model::PortRange;
use std::time::{Duration, Instant};
use testns::Netns;

const SERVERS: usize = 10_000;
const RULES_PER_SERVER: usize = 10;
const RUNS: usize = 3;

/// User + system time of this process and of the children it waited for (the
/// `nft`s, with that backend).
fn children_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    [UsageWho::RUSAGE_CHILDREN, UsageWho::RUSAGE_SELF]
        .into_iter()
        .map(|w| {
            let u = getrusage(w).expect("getrusage");
            tv(u.user_time()) + tv(u.system_time())
        })
        .sum()
}

pub fn zone(servers: usize, rules_per_server: usize) -> Vec<ServerPolicy> {
    (0..servers)
        .map(|i| {
            let rules = (0..rules_per_server)
                .map(|k| {
                    let id = (i * rules_per_server + k) as i64 + 1;
                    let (protocol, ports, sources) = match k % 10 {
                        0..=6 => (
                            NetworkProtocol::Tcp,
                            PortRange::single(1000 + k as u16),
                            vec![],
                        ),
                        7 => (
                            NetworkProtocol::Udp,
                            PortRange::single(2000 + k as u16),
                            vec![],
                        ),
                        8 => (
                            NetworkProtocol::Tcp,
                            PortRange {
                                start: 8000,
                                end: 8100,
                            },
                            vec![],
                        ),
                        _ => (
                            NetworkProtocol::Tcp,
                            PortRange::single(22),
                            vec![format!("198.51.{}.0/24", i % 256).parse().unwrap()],
                        ),
                    };
                    EdgeRule {
                        firewall_id: i as i64 + 1,
                        rule_id: id,
                        protocol,
                        ports: Some(ports),
                        sources,
                    }
                })
                .collect();
            ServerPolicy {
                server_id: i as i64 + 1,
                name: format!("vps{i}"),
                addresses: vec![
                    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
                        .parse()
                        .unwrap(),
                ],
                revision: 1,
                enforced: true,
                rules,
            }
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// How the library reaches the kernel: netlink, or the `nft` binary with
/// `PORTWALL_NFT_BACKEND=nft` (read here, in the benchmark's binary).
fn kernel() -> netfilter::Kernel {
    match std::env::var("PORTWALL_NFT_BACKEND").as_deref() {
        Ok("nft") => netfilter::Kernel::NftBinary,
        _ => netfilter::Kernel::Netlink,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Loads `json` RUNS times into the namespace; median wall and CPU.
fn load(ns: &Netns, json: &str) -> (Duration, Duration) {
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..RUNS {
        let (w, c) = ns.run(|| {
            let _ = kernel().delete_table("inet", compile::TABLE);
            let c0 = children_cpu();
            let t = Instant::now();
            let batch: serde_json::Value = serde_json::from_str(json).expect("JSON");
            kernel()
                .apply_json(&batch)
                .expect("the kernel takes the snapshot");
            (t.elapsed(), children_cpu() - c0)
        });
        wall.push(w);
        cpu.push(c);
    }
    (median(wall), median(cpu))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let ns = Netns::new();
    let servers = zone(SERVERS, RULES_PER_SERVER);
    let table = TableSpec::new(Mode::Forward);
    let t = Instant::now();
    let compiled = compile::compile_all(&servers);
    let elements: Vec<Element> = compiled.values().flatten().cloned().collect();
    let compile_time = t.elapsed();
    let chosen = netfilter::nft::json_with_set_counters(&compile::full_batch(&table, &elements));
    let interval_only: Vec<Element> = elements
        .iter()
        .map(|e| match (&e.set, &e.key) {
            (SetId::ExactV4, Key::Exact { daddr, proto, port }) => Element {
                set: SetId::PortsV4,
                key: Key::Ports {
                    daddr: *daddr,
                    proto: *proto,
                    ports: PortRange::single(*port),
                    source: "0.0.0.0/0".parse().unwrap(),
                },
                owner: e.owner,
            },
            _ => e.clone(),
        })
        .collect();
    let all_interval =
        netfilter::nft::json_with_set_counters(&compile::full_batch(&table, &interval_only));
    let no_counters = serde_json::to_string(&compile::full_batch(&table, &elements)).unwrap();

    let mut rows: Vec<(String, usize, Duration, Option<Duration>)> = Vec::new();
    rows.push((
        "compile 100k rules (Rust, no kernel)".into(),
        elements.len(),
        compile_time,
        None,
    ));
    for (name, json, n) in [
        ("full snapshot, chosen layout", &chosen, elements.len()),
        (
            "full snapshot, all-interval layout",
            &all_interval,
            interval_only.len(),
        ),
        (
            "full snapshot, chosen, no counters",
            &no_counters,
            elements.len(),
        ),
    ] {
        let (w, c) = load(&ns, json);
        rows.push((name.into(), n, w, Some(c)));
    }

    // The engine end to end (compile + one transaction + no readback at this
    // size), then one rule changed on the loaded table.
    let opts = EngineOptions {
        kernel: kernel(),
        ..EngineOptions::default()
    };
    let mut engine = Engine::new(table.clone(), opts);
    let (w, c, out) = ns.run(|| {
        let _ = kernel().delete_table("inet", compile::TABLE);
        let c0 = children_cpu();
        let t = Instant::now();
        let out = engine
            .apply(&SyncResponse::Snapshot {
                revision: 1,
                servers: servers.clone(),
            })
            .expect("snapshot");
        (t.elapsed(), children_cpu() - c0, out)
    });
    rows.push((
        "Engine::apply(snapshot), end to end".into(),
        out.elements,
        w,
        Some(c),
    ));
    let mut deltas = Vec::new();
    let mut cpu = Vec::new();
    for k in 0..20u16 {
        let mut s = servers[k as usize * 7].clone();
        s.rules[0].ports = Some(PortRange::single(30000 + k));
        s.revision = 2 + k as u64;
        let resp = SyncResponse::Delta {
            from: 1 + k as u64,
            revision: 2 + k as u64,
            changed: vec![s],
            removed: vec![],
        };
        let (w, c) = ns.run(|| {
            let c0 = children_cpu();
            let t = Instant::now();
            let out = engine.apply(&resp).expect("delta");
            assert_eq!((out.added, out.removed), (1, 1));
            (t.elapsed(), children_cpu() - c0)
        });
        deltas.push(w);
        cpu.push(c);
    }
    rows.push((
        "one rule changed on the loaded table (median of 20)".into(),
        2,
        median(deltas),
        Some(median(cpu)),
    ));
    let (w, c) = ns.run(|| {
        let c0 = children_cpu();
        let t = Instant::now();
        let k = engine.read_kernel().unwrap().unwrap();
        assert_eq!(k.elements.len(), out.elements);
        (t.elapsed(), children_cpu() - c0)
    });
    rows.push((
        "read the table back (decoded into typed keys)".into(),
        out.elements,
        w,
        Some(c),
    ));

    println!();
    println!("backend: {:?}", kernel());
    println!(
        "edge: applying {SERVERS} servers / {} rules ({} runs, median)",
        SERVERS * RULES_PER_SERVER,
        RUNS
    );
    println!(
        "{:<56} {:>9} {:>10} {:>10}",
        "WHAT", "ELEMENTS", "WALL", "CPU"
    );
    for (name, n, w, c) in rows {
        println!(
            "{:<56} {:>9} {:>10} {:>10}",
            name,
            n,
            ms(w),
            c.map(ms).unwrap_or_else(|| "-".into())
        );
    }
    println!("target: full snapshot <= 1000 ms");
}
