//! The same rule text through the real `ufw` (Debian's) and through portwall
//! (issue 18): random rulesets of UFW's syntax, each applied by both in
//! namespaces of their own (ufw with its own /etc/ufw and /etc/default, bound
//! by `ip netns exec` from /etc/netns/NAME; never the machine's), then the same
//! real connections and pings from the same client addresses to both; every
//! verdict must be the same. A "no answer" is confirmed by a second try before
//! it counts. `limit` rules are compared on their own, on a burst (UFW counts
//! the last 30 s exactly and shares one count among all its limit rules;
//! portwall counts per rule with a token bucket: they agree on a burst).

mod common;
use rand::prelude::*;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use testns::traffic::{self, Listeners, Seen};
use testns::Pair;

/// Rules in UFW's syntax (each the arguments of one `ufw`/`portwall` call).
const POOL: &[&[&str]] = &[
    &["allow", "22/tcp"],
    &["allow", "80,443/tcp"],
    &["deny", "8080"],
    &["reject", "5432/tcp"],
    &["allow", "53/udp"],
    &["reject", "53"],
    &["allow", "from", "198.51.100.21"],
    &["deny", "from", "198.51.100.22"],
    &["reject", "from", "198.51.100.23", "to", "any", "port", "80"],
    &[
        "allow",
        "from",
        "198.51.100.16/29",
        "to",
        "any",
        "port",
        "5432",
        "proto",
        "tcp",
    ],
    &["deny", "from", "2001:db8::21"],
    &["allow", "from", "2001:db8::22", "to", "any", "port", "8080"],
    &["allow", "60000:60010/udp"],
    &["deny", "60005/udp"],
    &["allow", "OpenSSH"],
    &["allow", "WWW Full"],
    &["allow", "in", "on", "eth0", "to", "any", "port", "9000"],
    &["deny", "in", "on", "eth1", "to", "any", "port", "9000"],
    &[
        "reject",
        "from",
        "198.51.100.24",
        "port",
        "40000:40099",
        "to",
        "any",
        "port",
        "9100",
        "proto",
        "udp",
    ],
    &["allow", "9100/udp"],
    &[
        "deny", "proto", "tcp", "from", "any", "to", "any", "port", "443",
    ],
    &[
        "allow",
        "from",
        "2001:db8::/64",
        "to",
        "any",
        "port",
        "22",
        "proto",
        "tcp",
    ],
];

const PORTS: &[u16] = &[22, 53, 80, 443, 1234, 5432, 8080, 9000, 9100, 60005, 60007];
const CLIENTS_V4: &[&str] = &[
    "198.51.100.20",
    "198.51.100.21",
    "198.51.100.22",
    "198.51.100.23",
    "198.51.100.24",
];
const CLIENTS_V6: &[&str] = &["2001:db8::20", "2001:db8::21", "2001:db8::22"];
const ROUNDS: usize = 4;
const RULES: usize = 7;
const PACKETS: usize = 40;
const WAIT: Duration = Duration::from_millis(1500);

fn run_ok(c: &mut Command) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        o.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A namespace pair whose server runs the real ufw, with /etc/ufw and
/// /etc/default of its own (removed when dropped).
struct UfwHost {
    pair: Pair,
    etc: PathBuf,
}

impl UfwHost {
    fn new() -> UfwHost {
        let pair = Pair::new();
        let etc = PathBuf::from("/etc/netns").join(pair.server.name());
        std::fs::create_dir_all(&etc).unwrap();
        run_ok(
            Command::new("cp")
                .args(["-a", "/etc/ufw", "/etc/default"])
                .arg(&etc),
        );
        // ufw's sysctl settings stay out: the test is about its rules.
        std::fs::write(etc.join("ufw/sysctl.conf"), "").unwrap();
        let host = UfwHost { pair, etc };
        host.ufw(&["--force", "reset"]);
        host.ufw(&["--force", "enable"]);
        host
    }

    fn ufw(&self, args: &[&str]) -> String {
        run_ok(self.pair.server.command("ufw").args(args))
    }
}

impl Drop for UfwHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

fn add_clients(pair: &Pair) {
    for a in &CLIENTS_V4[1..] {
        pair.client
            .ip(&["addr", "add", &format!("{a}/24"), "dev", "eth0"])
            .unwrap();
    }
    for a in &CLIENTS_V6[1..] {
        pair.client
            .ip(&["addr", "add", &format!("{a}/64"), "dev", "eth0", "nodad"])
            .unwrap();
    }
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    tcp: bool,
    src: IpAddr,
    sport: u16,
    dport: u16,
}

fn server_of(pair: &Pair, src: IpAddr) -> IpAddr {
    match src {
        IpAddr::V4(_) => pair.server_addr.v4.parse().unwrap(),
        IpAddr::V6(_) => pair.server_addr.v6.parse().unwrap(),
    }
}

/// Sends every probe from `pair`'s client, in parallel.
fn send(pair: &Pair, probes: &[Probe]) -> Vec<Seen> {
    let probes: Vec<(Probe, IpAddr)> = probes
        .iter()
        .map(|p| (*p, server_of(pair, p.src)))
        .collect();
    pair.client.run(|| {
        let handles: Vec<_> = probes
            .into_iter()
            .map(|(p, dst)| {
                std::thread::spawn(move || {
                    let src = SocketAddr::new(p.src, p.sport);
                    let dst = SocketAddr::new(dst, p.dport);
                    if p.tcp {
                        traffic::tcp(src, dst, WAIT)
                    } else {
                        traffic::udp(src, dst, WAIT)
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn ufw_and_portwall_give_the_same_verdicts() {
    let seed = testns::seed("ufw differential");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for round in 0..ROUNDS {
        let ufw = UfwHost::new();
        let pw = Pair::new();
        let dir = tempfile::tempdir().unwrap();
        let portwall = |args: &[&str]| {
            let o = common::portwall(&pw.server, dir.path(), args);
            assert!(
                o.status.success(),
                "portwall {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        portwall(&["enable"]);
        let rules: Vec<&[&str]> = POOL.choose_multiple(&mut rng, RULES).copied().collect();
        for r in &rules {
            ufw.ufw(r);
            portwall(r);
        }
        let mut sport = 40000 + (round as u16) * 200;
        let probes: Vec<Probe> = (0..PACKETS)
            .map(|_| {
                let v6 = rng.gen_bool(0.35);
                let src = if v6 {
                    CLIENTS_V6.choose(&mut rng).unwrap()
                } else {
                    CLIENTS_V4.choose(&mut rng).unwrap()
                };
                sport += 1;
                Probe {
                    tcp: rng.gen_bool(0.5),
                    src: src.parse().unwrap(),
                    sport,
                    dport: *PORTS.choose(&mut rng).unwrap(),
                }
            })
            .collect();
        for pair in [&ufw.pair, &pw] {
            add_clients(pair);
        }
        let listen = |pair: &Pair| {
            let addrs = [
                pair.server_addr.v4.parse().unwrap(),
                pair.server_addr.v6.parse().unwrap(),
            ];
            Listeners::start(&pair.server, &addrs, PORTS)
        };
        let _l1 = listen(&ufw.pair);
        let _l2 = listen(&pw);
        let mut a = send(&ufw.pair, &probes);
        let mut b = send(&pw, &probes);
        // A "no answer" on one side only is tried again on both sides (with
        // the same ports) before it is called a difference.
        let again: Vec<usize> = (0..probes.len()).filter(|&i| a[i] != b[i]).collect();
        if !again.is_empty() {
            let retry: Vec<Probe> = again.iter().map(|&i| probes[i]).collect();
            let (a2, b2) = (send(&ufw.pair, &retry), send(&pw, &retry));
            for (k, &i) in again.iter().enumerate() {
                a[i] = a2[k];
                b[i] = b2[k];
            }
        }
        for (i, p) in probes.iter().enumerate() {
            compared += 1;
            if a[i] != b[i] {
                mismatches.push(format!(
                    "round {round}, rules {rules:?}: {} {}:{} -> port {}: ufw {:?}, portwall {:?}",
                    if p.tcp { "tcp" } else { "udp" },
                    p.src,
                    p.sport,
                    p.dport,
                    a[i],
                    b[i]
                ));
            }
        }
        // UFW's before.rules accept pings before any rule; so do portwall's built-ins.
        for src in CLIENTS_V4.iter().chain(CLIENTS_V6) {
            let src: IpAddr = src.parse().unwrap();
            let ping = |pair: &Pair| {
                let dst = server_of(pair, src);
                pair.client
                    .run(|| traffic::ping(src, dst, Duration::from_secs(5)))
            };
            let (pa, pb) = (ping(&ufw.pair), ping(&pw));
            compared += 1;
            if pa != pb {
                mismatches.push(format!(
                    "round {round}, rules {rules:?}: ping from {src}: ufw answered {pa}, portwall {pb}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} verdicts differ (seed {seed}):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    eprintln!("{compared} verdicts compared, all the same");
}

#[test]
fn the_machines_own_ufw_files_are_untouched() {
    // What UfwHost binds over /etc/ufw is a copy: the machine's user.rules
    // stay as they were across a reset, an enable and a rule.
    let before = std::fs::read("/etc/ufw/user.rules").unwrap();
    let host = UfwHost::new();
    host.ufw(&["allow", "2222/tcp"]);
    assert!(host.ufw(&["status"]).contains("2222/tcp"));
    drop(host);
    assert_eq!(std::fs::read("/etc/ufw/user.rules").unwrap(), before);
}

#[test]
fn limit_refuses_the_sixth_connection_of_a_burst_as_ufw_does() {
    let ufw = UfwHost::new();
    let pw = Pair::new();
    let dir = tempfile::tempdir().unwrap();
    ufw.ufw(&["limit", "2222/tcp"]);
    for args in [&["enable"][..], &["limit", "2222/tcp"]] {
        let o = common::portwall(&pw.server, dir.path(), args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let burst: Vec<Probe> = (0..8)
        .map(|i| Probe {
            tcp: true,
            src: CLIENTS_V4[0].parse().unwrap(),
            sport: 45000 + i,
            dport: 2222,
        })
        .collect();
    let mut seen = Vec::new();
    for pair in [&ufw.pair, &pw] {
        let _l = Listeners::start(
            &pair.server,
            &[pair.server_addr.v4.parse().unwrap()],
            &[2222],
        );
        // One after the other, as a client retrying does.
        let s: Vec<Seen> = burst
            .iter()
            .flat_map(|p| send(pair, std::slice::from_ref(p)))
            .collect();
        seen.push(s);
    }
    assert_eq!(
        seen[0], seen[1],
        "ufw (left) and portwall (right) differ on a burst"
    );
    let open = seen[0].iter().filter(|s| **s == Seen::Open).count();
    assert_eq!(open, 5, "{:?}", seen[0]);
    assert!(
        seen[0][5..].iter().all(|s| *s == Seen::Refused),
        "{:?}",
        seen[0]
    );
}
