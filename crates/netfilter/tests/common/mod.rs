//! The differential fidelity harness shared by the backends' tests: random
//! rulesets, random packets, real traffic between two namespaces, and the
//! comparison with `model::evaluate`.
//!
//! A backend's test calls [`kernel_verdicts_equal_evaluate`] with the function
//! that applies a ruleset inside the server namespace. The seed is printed;
//! `PORTWALL_SEED=N` replays a run.

#![allow(dead_code)]

use model::{
    evaluate, parse_rule, ConnState, Decision, Direction, Packet, PacketProtocol, Policy, Rule,
    Ruleset, Services,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use testns::traffic::{self, Listeners, Seen};
use testns::{Netns, Pair, Routed};

pub const PORTS: [u16; 8] = [22, 53, 80, 443, 5432, 8080, 60000, 60500];
pub const RULESETS: usize = 50;
pub const PACKETS: usize = 100;

/// A ruleset from rules in portwall's syntax, added one by one as the CLI does.
pub fn ruleset(lines: &[&str]) -> Ruleset {
    let services = Services::builtin();
    let mut rs = Ruleset::default();
    for l in lines {
        for r in parse_rule(l, &services).unwrap_or_else(|e| panic!("{e}")) {
            rs.add(r);
        }
    }
    rs
}

/// The issue's examples, with a routed reject policy and logging on: every
/// shape of rule the compiler has.
pub fn issue_examples() -> Ruleset {
    let mut rs = ruleset(&[
        "allow 8080/tcp",
        "allow 22/tcp from 203.0.113.0/24",
        "allow http,https",
        "allow 60000:61000/udp",
        "limit ssh",
        "reject out 25/tcp",
        "allow in on eth0 from 2001:db8::/32 to any port 443 proto tcp",
        "deny from 198.51.100.7",
        "allow log 8443/tcp",
        "deny routed 8080/tcp",
        "allow routed 443/tcp from 203.0.113.0/24",
    ]);
    rs.defaults.routed = Policy::Reject;
    rs.logging = model::Logging::On;
    rs
}

pub fn client_v4(i: u8) -> IpAddr {
    format!("198.51.100.{}", 20 + i).parse().unwrap()
}
pub fn client_v6(i: u8) -> IpAddr {
    PAIR_NET.client_v6(i)
}

/// The addresses of a test topology: clients 198.51.100.20-27 and eight IPv6
/// clients ::20-::27 of `v6_prefix`, and four server addresses.
pub struct Net {
    /// The clients' IPv6 prefix, to be followed by the host part.
    pub v6_prefix: &'static str,
    /// Two IPv4 then two IPv6 server addresses.
    pub servers: [&'static str; 4],
}

/// The two-namespace pair: everything on one link.
pub const PAIR_NET: Net = Net {
    v6_prefix: "2001:db8::",
    servers: [
        "198.51.100.10",
        "198.51.100.11",
        "2001:db8::10",
        "2001:db8::11",
    ],
};

/// The routed topology: clients behind the gateway's eth0, servers behind eth1.
pub const ROUTED_NET: Net = Net {
    v6_prefix: "2001:db8:1::",
    servers: [
        "203.0.113.10",
        "203.0.113.11",
        "2001:db8:2::10",
        "2001:db8:2::11",
    ],
};

impl Net {
    pub fn client_v6(&self, i: u8) -> IpAddr {
        format!("{}{:x}", self.v6_prefix, 0x20 + i as u16)
            .parse()
            .unwrap()
    }

    pub fn server_addrs(&self) -> [IpAddr; 4] {
        self.servers.map(|s| s.parse().unwrap())
    }
}

pub fn random_rule(rng: &mut StdRng, services: &Services) -> Option<Rule> {
    random_rule_for(rng, services, Direction::In, &PAIR_NET)
}

/// A random rule of `direction` for the addresses of `net`. Whatever the
/// direction, its source is a client address and its destination a server
/// address: the client sends; its own `out` rules are checked on it, `in`
/// rules on the server, and `routed` rules on a gateway between them.
pub fn random_rule_for(
    rng: &mut StdRng,
    services: &Services,
    direction: Direction,
    net: &Net,
) -> Option<Rule> {
    let action = ["allow", "allow", "deny", "reject"].choose(rng).unwrap();
    let mut words = vec![action.to_string()];
    let iface =
        |rng: &mut StdRng, usual: &str| if rng.gen_bool(0.5) { usual } else { "eth9" }.to_string();
    match direction {
        Direction::In => {
            if rng.gen_bool(0.1) {
                words.extend(["in".into(), "on".into(), iface(rng, "eth0")]);
            }
        }
        Direction::Out => {
            words.push("out".into());
            if rng.gen_bool(0.1) {
                words.extend(["on".into(), iface(rng, "eth0")]);
            }
        }
        Direction::Routed => {
            words.push("routed".into());
            if rng.gen_bool(0.1) {
                words.extend(["in".into(), "on".into(), iface(rng, "eth0")]);
            }
            if rng.gen_bool(0.1) {
                words.extend(["out".into(), "on".into(), iface(rng, "eth1")]);
            }
        }
    }
    let proto = ["tcp", "udp", "any", "any", "icmp"].choose(rng).unwrap();
    if *proto != "any" {
        words.push("proto".into());
        words.push(proto.to_string());
    }
    let src = match rng.gen_range(0..8) {
        0 => Some(client_v4(rng.gen_range(0..8)).to_string()),
        1 => Some("198.51.100.16/28".to_string()),
        2 => Some("198.51.100.24/29".to_string()),
        3 => Some(net.client_v6(rng.gen_range(0..8)).to_string()),
        4 => Some(format!("{}20/124", net.v6_prefix)),
        5 => Some(format!(
            "{},{}",
            client_v4(rng.gen_range(0..4)),
            net.client_v6(rng.gen_range(4..8))
        )),
        _ => None,
    };
    let with_ports = *proto != "icmp";
    if src.is_some() || (with_ports && rng.gen_bool(0.15)) {
        words.push("from".into());
        words.push(src.unwrap_or_else(|| "any".into()));
        if with_ports && rng.gen_bool(0.15) {
            words.push("port".into());
            words.push(
                if rng.gen_bool(0.5) {
                    "20000:22499"
                } else {
                    "22500:24999"
                }
                .into(),
            );
        }
    }
    let dst = match rng.gen_range(0..10) {
        i @ 0..=3 => Some(net.servers[i]),
        _ => None,
    };
    let dport = if with_ports && rng.gen_bool(0.8) {
        Some(match rng.gen_range(0..5) {
            0 => "5000:9000".to_string(),
            1 => "50000:61000".to_string(),
            2 => {
                let mut p: Vec<u16> = PORTS.choose_multiple(rng, 3).copied().collect();
                p.sort();
                p.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
            }
            _ => PORTS.choose(rng).unwrap().to_string(),
        })
    } else {
        None
    };
    if dst.is_some() || dport.is_some() {
        words.push("to".into());
        words.push(dst.unwrap_or("any").into());
        if let Some(p) = dport {
            words.push("port".into());
            words.push(p);
        }
    }
    // Some combinations are invalid (mixed families): the model refuses them.
    model::parse_rule_args(&words, services)
        .ok()
        .map(|mut v| v.remove(0))
}

pub fn random_ruleset(rng: &mut StdRng, services: &Services) -> Ruleset {
    random_ruleset_for(rng, services, Direction::In, &PAIR_NET)
}

/// A random ruleset of 1 to 20 rules of `direction`, with a random default
/// policy for that direction.
pub fn random_ruleset_for(
    rng: &mut StdRng,
    services: &Services,
    direction: Direction,
    net: &Net,
) -> Ruleset {
    let mut rs = Ruleset::default();
    let policy = *[Policy::Deny, Policy::Reject, Policy::Allow]
        .choose(rng)
        .unwrap();
    rs.defaults.set(direction, policy);
    let n = rng.gen_range(1..=20);
    while rs.rules.len() < n {
        if let Some(r) = random_rule_for(rng, services, direction, net) {
            rs.add(r);
        }
    }
    rs
}

pub use testns::seed;

/// Gives `client` the seven more client addresses of `net` (IPv4 and IPv6) and
/// `server` its second server address of each family, all on their eth0.
fn add_test_addresses(client: &Netns, server: &Netns, net: &Net) {
    let add = |ns: &Netns, addr: String, v6: bool| {
        let mut args = vec![];
        if v6 {
            args.push("-6");
        }
        args.extend(["addr", "add", addr.as_str(), "dev", "eth0"]);
        if v6 {
            args.push("nodad");
        }
        ns.ip(&args).unwrap();
    };
    for i in 1..8u8 {
        add(client, format!("{}/24", client_v4(i)), false);
        add(client, format!("{}/64", net.client_v6(i)), true);
    }
    add(server, format!("{}/24", net.servers[1]), false);
    add(server, format!("{}/64", net.servers[3]), true);
}

/// The server and client of the differential tests, with the extra addresses of
/// [`PAIR_NET`] (clients 198.51.100.20-27 / 2001:db8::20-27, servers .10/.11
/// and ::10/::11).
pub fn addressed_pair() -> (Pair, [IpAddr; 4]) {
    let pair = Pair::new();
    add_test_addresses(&pair.client, &pair.server, &PAIR_NET);
    (pair, PAIR_NET.server_addrs())
}

/// The routed topology of the differential tests, with the extra addresses of
/// [`ROUTED_NET`] (clients 198.51.100.20-27 / 2001:db8:1::20-27 behind the
/// gateway's eth0, servers 203.0.113.10/.11 and 2001:db8:2::10/::11 behind its
/// eth1).
pub fn addressed_routed() -> Routed {
    let r = Routed::new();
    add_test_addresses(&r.client, &r.server, &ROUTED_NET);
    r
}

/// `count` random new inbound TCP/UDP connections from the clients to the
/// servers, each from its own source port (taken from `next_sport`).
pub fn random_packets(
    rng: &mut StdRng,
    servers: &[IpAddr],
    count: usize,
    next_sport: &mut u16,
) -> Vec<Packet> {
    random_packets_for(rng, servers, count, next_sport, Direction::In, &PAIR_NET)
}

/// [`random_packets`] as the ruleset of `direction` sees them: arriving on the
/// server's eth0 (`in`), leaving by the client's eth0 (`out`), or forwarded by
/// the gateway from its eth0 to its eth1 (`routed`).
pub fn random_packets_for(
    rng: &mut StdRng,
    servers: &[IpAddr],
    count: usize,
    next_sport: &mut u16,
    direction: Direction,
    net: &Net,
) -> Vec<Packet> {
    let (in_interface, out_interface) = match direction {
        Direction::In => (Some("eth0".to_string()), None),
        Direction::Out => (None, Some("eth0".to_string())),
        Direction::Routed => (Some("eth0".to_string()), Some("eth1".to_string())),
    };
    (0..count)
        .map(|_| {
            let dst = *servers.choose(rng).unwrap();
            let src = if dst.is_ipv4() {
                client_v4(rng.gen_range(0..8))
            } else {
                net.client_v6(rng.gen_range(0..8))
            };
            let sport = *next_sport;
            *next_sport += 1;
            Packet {
                direction,
                in_interface: in_interface.clone(),
                out_interface: out_interface.clone(),
                protocol: if rng.gen_bool(0.5) {
                    PacketProtocol::Tcp
                } else {
                    PacketProtocol::Udp
                },
                source: src,
                destination: dst,
                source_port: Some(sport),
                destination_port: Some(*PORTS.choose(rng).unwrap()),
                icmp_type: None,
                hop_limit: None,
                state: ConnState::New,
            }
        })
        .collect()
}

/// Sends every packet for real from `client`, in parallel, and says what
/// happened to each within `t`. (A TCP connection refused with
/// ICMPv6 port unreachable instead of a reset is refused only at the first
/// SYN retransmission, after 1 s.)
pub fn send_all_within(client: &Netns, packets: &[Packet], t: Duration) -> Vec<Seen> {
    let all: Vec<&Packet> = packets.iter().collect();
    send_each(client, &all, t)
}

/// [`send_all_within`], then a second try of every packet that got no answer
/// although `answered(i)` says packet `i` should have got one: on a busy
/// machine a lost SYN or a late reply must not pass for a firewall's drop. A
/// verdict is "no answer" only when both tries got none. The second try
/// keeps the packet's addresses and ports (rules may match the source port).
pub fn send_all_confirmed(
    client: &Netns,
    packets: &[Packet],
    t: Duration,
    answered: impl Fn(usize) -> bool,
) -> Vec<Seen> {
    let mut seen = send_all_within(client, packets, t);
    let again: Vec<usize> = (0..packets.len())
        .filter(|&i| seen[i] == Seen::Timeout && answered(i))
        .collect();
    if !again.is_empty() {
        let retry: Vec<&Packet> = again.iter().map(|&i| &packets[i]).collect();
        let second = send_each(client, &retry, t);
        for (&i, s) in again.iter().zip(second) {
            if s != Seen::Timeout {
                eprintln!(
                    "no answer confirmed wrong by a second try: {:?} {}:{} -> {}:{}: {s:?}",
                    packets[i].protocol,
                    packets[i].source,
                    packets[i].source_port.unwrap(),
                    packets[i].destination,
                    packets[i].destination_port.unwrap()
                );
            }
            seen[i] = s;
        }
    }
    seen
}

fn send_each(client: &Netns, packets: &[&Packet], t: Duration) -> Vec<Seen> {
    client.run(|| {
        let handles: Vec<_> = packets
            .iter()
            .map(|&p| p.clone())
            .map(|p| {
                std::thread::spawn(move || {
                    let src = SocketAddr::new(p.source, p.source_port.unwrap());
                    let dst = SocketAddr::new(p.destination, p.destination_port.unwrap());
                    match p.protocol {
                        PacketProtocol::Tcp => traffic::tcp(src, dst, t),
                        _ => traffic::udp(src, dst, t),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// What a client sees for a decision.
pub fn expected_seen(d: Decision) -> Seen {
    match d {
        Decision::Accept => Seen::Open,
        Decision::Reject => Seen::Refused,
        Decision::Drop => Seen::Timeout,
    }
}

/// What the sending application sees for a decision of the rules of
/// `direction`. The sender's own output rules are seen from inside: a TCP SYN
/// they drop is retried until the connect times out and one they reject gets
/// its reset at once, but a UDP datagram they drop or reject fails `send()`
/// with EPERM (the ICMP error a reject also sends comes too late to matter).
pub fn expected_seen_for(direction: Direction, protocol: PacketProtocol, d: Decision) -> Seen {
    match (direction, protocol, d) {
        (Direction::Out, PacketProtocol::Udp, Decision::Drop | Decision::Reject) => Seen::Blocked,
        _ => expected_seen(d),
    }
}

/// The differential test: `RULESETS` random rulesets (each passed through
/// `adjust`, which may widen it for a backend's special paths) applied with
/// `apply` inside the server namespace, `PACKETS` real connections each,
/// compared with `model::evaluate`. Panics listing the mismatches.
pub fn kernel_verdicts_equal_evaluate<A, J>(name: &str, rulesets: usize, apply: A, adjust: J)
where
    A: Fn(&Netns, &Ruleset) -> Result<(), String>,
    J: Fn(&mut StdRng, Ruleset) -> Ruleset,
{
    kernel_verdicts_equal_evaluate_for(name, rulesets, Direction::In, apply, adjust)
}

/// [`kernel_verdicts_equal_evaluate`] for the rules of `direction`: `in` rules
/// are applied in the server's namespace, `out` rules in the client's (the
/// sender's), `routed` rules in a gateway's between them; the connections are
/// always made from the client to the server.
pub fn kernel_verdicts_equal_evaluate_for<A, J>(
    name: &str,
    rulesets: usize,
    direction: Direction,
    apply: A,
    adjust: J,
) where
    A: Fn(&Netns, &Ruleset) -> Result<(), String>,
    J: Fn(&mut StdRng, Ruleset) -> Ruleset,
{
    let seed = seed(name);
    let mut rng = StdRng::seed_from_u64(seed);
    let services = Services::builtin();
    // The sender, the namespace whose rules are checked, the receiver.
    let (pair, routed);
    let (client, filtered, server, servers, net) = match direction {
        Direction::Routed => {
            routed = addressed_routed();
            let servers = ROUTED_NET.server_addrs();
            (
                &routed.client,
                &routed.gateway,
                &routed.server,
                servers,
                &ROUTED_NET,
            )
        }
        Direction::Out => {
            let servers;
            (pair, servers) = addressed_pair();
            (&pair.client, &pair.client, &pair.server, servers, &PAIR_NET)
        }
        Direction::In => {
            let servers;
            (pair, servers) = addressed_pair();
            (&pair.client, &pair.server, &pair.server, servers, &PAIR_NET)
        }
    };
    let _listeners = Listeners::start(server, &servers, &PORTS);

    let mut next_sport: u16 = 20000;
    let mut mismatches = Vec::new();
    // What the run covered: packets decided by a rule, and each decision.
    let mut by_rule = 0usize;
    let mut decisions = std::collections::HashSet::new();
    for round in 0..rulesets {
        let rs = random_ruleset_for(&mut rng, &services, direction, net);
        let rs = adjust(&mut rng, rs);
        apply(filtered, &rs).unwrap_or_else(|e| panic!("apply round {round}: {e}\n{rs}"));
        let packets =
            random_packets_for(&mut rng, &servers, PACKETS, &mut next_sport, direction, net);
        let expected: Vec<Seen> = packets
            .iter()
            .map(|p| expected_seen_for(direction, p.protocol, evaluate(&rs, p).decision))
            .collect();
        let seen = send_all_confirmed(client, &packets, Duration::from_millis(600), |i| {
            expected[i] != Seen::Timeout
        });
        for (p, s) in packets.iter().zip(seen) {
            let v = evaluate(&rs, p);
            by_rule += matches!(v.by, model::DecidedBy::Rule { .. }) as usize;
            decisions.insert(format!("{:?}", v.decision));
            if expected_seen_for(direction, p.protocol, v.decision) != s {
                eprintln!(
                    "MISMATCH round {round}: {:?} {} -> {}: kernel {s:?}, evaluate {:?}",
                    p.protocol, p.source, p.destination, v.decision
                );
                mismatches.push(format!(
                    "round {round}: {:?} {}:{} -> {}:{}: kernel {s:?}, evaluate {:?} by {:?}\n{rs}",
                    p.protocol,
                    p.source,
                    p.source_port.unwrap(),
                    p.destination,
                    p.destination_port.unwrap(),
                    v.decision,
                    v.by
                ));
            }
        }
    }
    // A run whose rules never decide anything would prove nothing.
    let total = rulesets * PACKETS;
    assert!(
        by_rule * 5 >= total && decisions.len() == 3,
        "{name}: rules decided only {by_rule} of {total} packets, decisions seen {decisions:?} (seed {seed})"
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatch(es) (seed {seed}):\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
