//! Forwarding rate through the edge with 10,000 server firewalls loaded vs none
//! (run as root: `cargo bench -p edge --bench forwarding`). Namespaces only:
//! client — gateway (the edge) — server; a bounded UDP flood (fixed packet
//! count, time limit) from the client to an allowed port of the server, counted
//! at the server.
//!
//! The server never answers, so conntrack keeps the flow in state `new` and
//! every packet goes through the set lookups (an answered flow would pass the
//! first rule, `established`): the worst case for the edge.
//!
//! Three gateways: no edge table at all, the edge table with only the target
//! server, and the edge table with 10,000 enforced servers / 100,000 rules
//! (the target among them). The ratio that matters is 10k vs 1 server: the
//! lookups cost the same whatever the number of servers and rules; the ratio
//! against no table at all is the whole cost of the edge (conntrack included).

#[path = "snapshot_apply.rs"]
#[allow(dead_code)]
mod snapshot;

use edge::compile::{Mode, TableSpec};
use edge::engine::{Engine, EngineOptions};
use model::network::sync::{EdgeRule, ServerPolicy, SyncResponse};
use model::network::NetworkProtocol;
use model::PortRange;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testns::Routed;

const PACKETS: u64 = 200_000;
const LIMIT: Duration = Duration::from_secs(8);
const PORT: u16 = 5001;
const ROUNDS: usize = 3;

/// Sends PACKETS datagrams (or until LIMIT); returns packets received per second.
fn flood(r: &Routed) -> f64 {
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let server_addr: SocketAddr = format!("{}:{PORT}", r.server_addr.v4).parse().unwrap();
    let sock = r.server.run(move || UdpSocket::bind(server_addr).unwrap());
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let rx = {
        let (received, stop) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if sock.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let client = r.client_addr.v4.clone();
    let tx = r.client.run(move || {
        let s = UdpSocket::bind(format!("{client}:0")).unwrap();
        s.connect(server_addr).unwrap();
        s
    });
    let payload = [0u8; 64];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < PACKETS && start.elapsed() < LIMIT {
        if tx.send(&payload).is_ok() {
            sent += 1;
        }
    }
    let elapsed = start.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    rx.join().unwrap();
    received.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

fn target(r: &Routed) -> ServerPolicy {
    ServerPolicy {
        server_id: 1_000_000,
        name: "target".into(),
        addresses: vec![r.server_addr.v4.parse().unwrap()],
        revision: 1,
        enforced: true,
        rules: vec![EdgeRule {
            firewall_id: 1,
            rule_id: 1,
            protocol: NetworkProtocol::Udp,
            ports: Some(PortRange::single(PORT)),
            sources: vec![],
        }],
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut results: Vec<(String, f64)> = Vec::new();
    let setups: [(&str, Option<usize>); 3] = [
        ("no edge table", None),
        ("edge table, 1 server", Some(0)),
        ("edge table, 10,000 servers / 100,000 rules", Some(10_000)),
    ];
    for (name, servers) in setups {
        let r = Routed::new();
        if let Some(n) = servers {
            let mut zone = snapshot::zone(n, 10);
            zone.push(target(&r));
            let mut e = Engine::new(TableSpec::new(Mode::Forward), EngineOptions::default());
            r.gateway
                .run(|| {
                    e.apply(&SyncResponse::Snapshot {
                        revision: 1,
                        servers: zone,
                    })
                })
                .expect("load the edge table");
        }
        let mut rates: Vec<f64> = (0..ROUNDS).map(|_| flood(&r)).collect();
        rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
        results.push((name.to_string(), rates[rates.len() / 2]));
    }
    println!();
    println!("edge: UDP forwarding rate through the gateway, 64-byte datagrams, every packet looked up, up to {PACKETS} per run, median of {ROUNDS}");
    println!(
        "{:<46} {:>12} {:>14} {:>16}",
        "GATEWAY", "pkt/s", "vs no table", "vs 1 server"
    );
    let (none, one) = (results[0].1, results[1].1);
    for (name, rate) in &results {
        println!(
            "{:<46} {:>12.0} {:>14.3} {:>16.3}",
            name,
            rate,
            rate / none,
            rate / one
        );
    }
    println!("target: 10,000 servers vs none >= 0.95");
}
