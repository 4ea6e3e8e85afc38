//! Compiling policies, without a kernel: the exact transaction for a small zone
//! (snapshot), what a packet meets in the compiled sets compared with
//! `model::evaluate` (property), and that overlapping rules become disjoint
//! elements owned by the first rule that covers them.

use edge::compile::{self, Element, Key, Mode, Owner, SetId, TableSpec};
use ipnet::IpNet;
use model::network::sync::{EdgeRule, ServerPolicy};
use model::network::{server_ruleset, NetworkProtocol, NetworkRule};
use model::{evaluate, ConnState, Decision, Direction, Packet, PacketProtocol, PortRange};
use proptest::prelude::*;
use std::net::IpAddr;

fn rule(
    id: i64,
    protocol: NetworkProtocol,
    ports: Option<(u16, u16)>,
    sources: &[&str],
) -> EdgeRule {
    EdgeRule {
        firewall_id: 1,
        rule_id: id,
        protocol,
        ports: ports.map(|(a, b)| PortRange { start: a, end: b }),
        sources: sources.iter().map(|s| s.parse().unwrap()).collect(),
    }
}

fn server(id: i64, addrs: &[&str], enforced: bool, rules: Vec<EdgeRule>) -> ServerPolicy {
    ServerPolicy {
        server_id: id,
        name: format!("s{id}"),
        addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        revision: 1,
        enforced,
        rules,
    }
}

fn sample_zone() -> Vec<ServerPolicy> {
    use NetworkProtocol::*;
    vec![
        server(
            1,
            &["203.0.113.11", "2001:db8:113::11"],
            true,
            vec![
                rule(10, Tcp, Some((22, 22)), &[]),
                rule(11, Tcp, Some((80, 90)), &["198.51.100.0/24"]),
                rule(12, Icmp, None, &[]),
                rule(13, Udp, Some((53, 53)), &["2001:db8:100::/48"]),
            ],
        ),
        server(
            2,
            &["203.0.113.12"],
            true,
            vec![rule(20, Any, None, &["192.0.2.0/24"])],
        ),
        server(
            3,
            &["203.0.113.13"],
            false,
            vec![rule(30, Tcp, Some((22, 22)), &[])],
        ),
    ]
}

fn all_elements(servers: &[ServerPolicy]) -> Vec<Element> {
    let mut v: Vec<Element> = compile::compile_all(servers)
        .into_values()
        .flatten()
        .collect();
    v.sort();
    v
}

#[test]
fn full_transaction_of_a_small_zone() {
    let elements = all_elements(&sample_zone());
    let batch = compile::full_batch(&TableSpec::new(Mode::Forward), &elements);
    let sent: serde_json::Value =
        serde_json::from_str(&netfilter::nft::json_with_set_counters(&batch)).unwrap();
    insta::assert_json_snapshot!("full_batch_forward", sent);
    let bridge = compile::full_batch(&TableSpec::new(Mode::Bridge), &elements);
    let text = serde_json::to_string(&bridge).unwrap();
    assert!(text.contains(r#""family":"bridge""#));
    assert!(!text.contains(r#""family":"inet""#));
}

#[test]
fn elements_of_a_small_zone() {
    let elements = all_elements(&sample_zone());
    let show: Vec<String> = elements
        .iter()
        .map(|e| format!("{} {:?} -> {:?}", e.set, e.key, e.owner))
        .collect();
    insta::assert_snapshot!("elements_small_zone", show.join("\n"));
    // The server without an active firewall has nothing at all.
    assert!(elements.iter().all(|e| e.owner.server_id != 3));
    // 22/tcp from anywhere is an exact key; the v6-only udp rule has no v4 element.
    assert!(elements.iter().any(|e| e.set == SetId::ExactV4
        && e.key
            == Key::Exact {
                daddr: "203.0.113.11".parse().unwrap(),
                proto: 6,
                port: 22
            }));
    assert!(!elements
        .iter()
        .any(|e| e.set == SetId::PortsV4 && e.owner.rule_id == Some(13)));
    assert!(elements
        .iter()
        .any(|e| e.set == SetId::PortsV6 && e.owner.rule_id == Some(13)));
}

#[test]
fn overlapping_rules_become_disjoint_pieces_owned_by_the_first_rule() {
    use NetworkProtocol::*;
    let s = server(
        7,
        &["203.0.113.7"],
        true,
        vec![
            rule(1, Tcp, Some((80, 90)), &["10.0.0.0/8"]),
            rule(2, Tcp, Some((85, 95)), &["10.0.0.0/8"]),
            rule(3, Tcp, Some((80, 80)), &["10.1.0.0/16"]),
            rule(4, Tcp, Some((100, 200)), &[]),
            rule(5, Tcp, Some((150, 150)), &["10.1.2.0/24"]),
        ],
    );
    let elems = compile::compile_address("203.0.113.7".parse().unwrap(), &[&s]);
    let ports: Vec<(PortRange, IpNet, Option<i64>)> = elems
        .iter()
        .filter_map(|e| match &e.key {
            Key::Ports { ports, source, .. } => Some((*ports, *source, e.owner.rule_id)),
            _ => None,
        })
        .collect();
    // No two pieces share a packet.
    for (i, a) in ports.iter().enumerate() {
        for b in &ports[i + 1..] {
            assert!(
                !(a.0.overlaps(&b.0) && (a.1.contains(&b.1) || b.1.contains(&a.1))),
                "{a:?} overlaps {b:?}"
            );
        }
    }
    // 80-90 from 10/8 is rule 1's, 91-95 rule 2's; rule 3 is inside rule 1 and
    // owns nothing; 150 from 10.1.2/24 is inside rule 4 (first) and is its.
    let owner_of = |port: u16, src: &str| {
        let a: IpAddr = src.parse().unwrap();
        ports
            .iter()
            .filter(|(r, n, _)| r.contains(port) && n.contains(&a))
            .map(|p| p.2)
            .collect::<Vec<_>>()
    };
    assert_eq!(owner_of(80, "10.1.2.3"), vec![Some(1)]);
    assert_eq!(owner_of(88, "10.200.0.1"), vec![Some(1)]);
    assert_eq!(owner_of(93, "10.1.2.3"), vec![Some(2)]);
    assert_eq!(owner_of(96, "10.1.2.3"), Vec::<Option<i64>>::new());
    assert_eq!(owner_of(150, "10.1.2.3"), vec![Some(4)]);
    assert_eq!(owner_of(150, "192.0.2.1"), vec![Some(4)]);
    assert!(ports.iter().all(|p| p.2 != Some(3) && p.2 != Some(5)));
}

#[test]
fn diff_touches_only_changed_elements() {
    use NetworkProtocol::*;
    let mut zone = sample_zone();
    let before = all_elements(&zone);
    zone[0].rules.push(rule(14, Tcp, Some((443, 443)), &[]));
    zone[0].rules.retain(|r| r.rule_id != 12);
    let after = all_elements(&zone);
    let (removed, added) = compile::diff(&before, &after);
    let removed_sets: Vec<SetId> = removed.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        removed_sets,
        vec![SetId::IcmpV4, SetId::IcmpV6],
        "{removed:?}"
    );
    assert_eq!(added.len(), 2, "{added:?}");
    assert!(added
        .iter()
        .all(|e| e.set == SetId::ExactV4 || e.set == SetId::ExactV6));
    assert!(added.iter().all(|e| e.owner.rule_id == Some(14)));
    let batch = compile::delta_batch(&TableSpec::new(Mode::Forward), &removed, &added);
    let sent: serde_json::Value =
        serde_json::from_str(&netfilter::nft::json_with_set_counters(&batch)).unwrap();
    insta::assert_json_snapshot!("delta_batch", sent);
}

/// The edge's key of one element `val` of `set`, read back as `nft -j list
/// table` prints it (the `nft` binary's path).
fn decode_from_json(set: SetId, val: &serde_json::Value) -> Option<Key> {
    let types: Vec<&str> = match set {
        SetId::EnforcedV4 => vec!["ipv4_addr"],
        SetId::ExactV6 => vec!["ipv6_addr", "inet_proto", "inet_service"],
        SetId::ExactV4 => vec!["ipv4_addr", "inet_proto", "inet_service"],
        SetId::PortsV4 => vec!["ipv4_addr", "inet_proto", "inet_service", "ipv4_addr"],
        SetId::IcmpV4 => vec!["ipv4_addr", "ipv4_addr"],
        other => panic!("no types for {other}"),
    };
    let ty = if types.len() == 1 {
        serde_json::json!(types[0])
    } else {
        serde_json::json!(types)
    };
    let listed = serde_json::json!({"nftables": [{"set": {
        "family": "inet", "table": "portwall_edge", "name": set.name(), "type": ty, "elem": [val]
    }}]});
    let table = netfilter::readback::KernelTable::from_json(&listed);
    let parts = table.sets[set.name()][0].key.clone()?;
    compile::decode_key(set, &parts)
}

#[test]
fn elements_read_back_from_nft_json_decode_to_their_keys() {
    let cases = [
        (SetId::EnforcedV4, serde_json::json!("203.0.113.11")),
        (
            SetId::ExactV6,
            serde_json::json!({"concat": ["2001:db8::1", "tcp", 22]}),
        ),
        (
            SetId::PortsV4,
            serde_json::json!({"concat": ["203.0.113.11", "udp", {"range": [80, 90]}, {"prefix": {"addr": "0.0.0.0", "len": 0}}]}),
        ),
        (
            SetId::IcmpV4,
            serde_json::json!({"concat": ["203.0.113.11", "192.0.2.7"]}),
        ),
    ];
    for (set, val) in cases {
        let key = decode_from_json(set, &val).unwrap_or_else(|| panic!("{set}: {val}"));
        let back = serde_json::to_value(compile::key_expr(&key)).unwrap();
        // Encoding again gives what nft printed, up to how /32 and ranges are spelled.
        assert_eq!(decode_from_json(set, &back), Some(key));
    }
    assert_eq!(
        decode_from_json(SetId::ExactV4, &serde_json::json!("x")),
        None
    );
}

// ---- differential: compiled sets vs model::evaluate --------------------------

/// Whether an accept element matches a packet.
fn element_hits(e: &Element, p: &Packet) -> bool {
    let d = p.destination;
    let proto = match p.protocol {
        PacketProtocol::Tcp => 6,
        PacketProtocol::Udp => 17,
        PacketProtocol::Icmp => 1,
        PacketProtocol::Icmpv6 => 58,
        PacketProtocol::Other(n) => n,
    };
    let icmp_proto = if d.is_ipv6() { 58 } else { 1 };
    match &e.key {
        Key::Exact {
            daddr,
            proto: pr,
            port,
        } => *daddr == d && *pr == proto && p.destination_port == Some(*port),
        Key::Ports {
            daddr,
            proto: pr,
            ports,
            source,
        } => {
            *daddr == d
                && *pr == proto
                && p.destination_port.is_some_and(|x| ports.contains(x))
                && source.contains(&p.source)
        }
        Key::Source { daddr, source } => {
            let proto_ok = match e.set {
                SetId::IcmpV4 | SetId::IcmpV6 => proto == icmp_proto,
                _ => true,
            };
            *daddr == d && proto_ok && source.contains(&p.source)
        }
        Key::Addr { .. } => false,
    }
}

/// What the chain does with a packet, computed from the elements alone.
fn simulate(elements: &[Element], p: &Packet) -> Decision {
    match p.state {
        ConnState::Established | ConnState::Related => return Decision::Accept,
        _ => {}
    }
    let d = p.destination;
    let enforced = elements
        .iter()
        .any(|e| matches!(e.key, Key::Addr { daddr } if daddr == d));
    if p.state == ConnState::Invalid && enforced {
        return Decision::Drop;
    }
    if elements.iter().any(|e| element_hits(e, p)) {
        return Decision::Accept;
    }
    if p.protocol == PacketProtocol::Icmpv6 && p.icmp_type.is_some_and(|t| (133..=137).contains(&t))
    {
        return Decision::Accept;
    }
    if enforced {
        Decision::Drop
    } else {
        Decision::Accept
    }
}

const SOURCES: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.3/32",
    "192.0.2.0/24",
    "2001:db8::/32",
    "2001:db8:1::/48",
    "2001:db8:1::5/128",
];
const CLIENTS: &[&str] = &[
    "10.1.2.3",
    "10.1.2.4",
    "10.1.9.9",
    "10.9.9.9",
    "192.0.2.7",
    "198.51.100.1",
    "2001:db8:1::5",
    "2001:db8:1::6",
    "2001:db8:2::5",
    "2001:db9::1",
];

fn arb_rule() -> impl Strategy<Value = EdgeRule> {
    let proto = prop_oneof![
        Just(NetworkProtocol::Tcp),
        Just(NetworkProtocol::Udp),
        Just(NetworkProtocol::Icmp),
        Just(NetworkProtocol::Any),
    ];
    (
        proto,
        1u16..20,
        0u16..6,
        any::<bool>(),
        prop::collection::vec(0..SOURCES.len(), 0..3),
        1i64..1000,
    )
        .prop_map(|(protocol, start, len, any_port, srcs, id)| {
            let ports = match protocol {
                NetworkProtocol::Icmp => None,
                NetworkProtocol::Any if any_port => None,
                _ => Some(PortRange {
                    start,
                    end: start + len,
                }),
            };
            EdgeRule {
                firewall_id: id % 3,
                rule_id: id,
                protocol,
                ports,
                sources: srcs.iter().map(|i| SOURCES[*i].parse().unwrap()).collect(),
            }
        })
}

fn dests() -> Vec<IpAddr> {
    [
        "203.0.113.1",
        "2001:db8:113::1",
        "203.0.113.2",
        "203.0.113.99",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect()
}

fn arb_packet(dests: Vec<IpAddr>) -> impl Strategy<Value = Packet> {
    let proto = prop_oneof![
        Just(PacketProtocol::Tcp),
        Just(PacketProtocol::Udp),
        Just(PacketProtocol::Icmp),
        Just(PacketProtocol::Icmpv6),
        Just(PacketProtocol::Other(47)),
    ];
    let state = prop_oneof![
        6 => Just(ConnState::New),
        1 => Just(ConnState::Established),
        1 => Just(ConnState::Invalid),
    ];
    (
        0..dests.len(),
        0..CLIENTS.len(),
        proto,
        1u16..26,
        prop_oneof![Just(8u8), Just(128u8), Just(135u8)],
        state,
    )
        .prop_map(move |(d, s, protocol, port, icmp_type, state)| {
            let has_ports = matches!(protocol, PacketProtocol::Tcp | PacketProtocol::Udp);
            Packet {
                direction: Direction::In,
                in_interface: None,
                out_interface: None,
                protocol,
                source: CLIENTS[s].parse().unwrap(),
                destination: dests[d],
                source_port: has_ports.then_some(40000),
                destination_port: has_ports.then_some(port),
                icmp_type: (!has_ports).then_some(icmp_type),
                hop_limit: None,
                state,
            }
        })
}

fn owner_rule_matches(servers: &[ServerPolicy], owner: Owner, p: &Packet) -> bool {
    let s = servers
        .iter()
        .find(|s| s.server_id == owner.server_id)
        .unwrap();
    let r = s
        .rules
        .iter()
        .find(|r| Some(r.rule_id) == owner.rule_id)
        .unwrap();
    let nr = NetworkRule {
        protocol: r.protocol,
        ports: r.ports,
        sources: r.sources.clone(),
        description: String::new(),
        enabled: true,
    };
    nr.to_rules()
        .iter()
        .any(|rule| model::rule_matches(rule, p))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn compiled_sets_agree_with_evaluate(
        rules_a in prop::collection::vec(arb_rule(), 0..8),
        rules_b in prop::collection::vec(arb_rule(), 0..4),
        enforced_b in any::<bool>(),
        packets in prop::collection::vec(arb_packet(dests()), 64),
    ) {
        let (mut rules_a, mut rules_b) = (rules_a, rules_b);
        for (i, r) in rules_a.iter_mut().enumerate() {
            r.rule_id = i as i64 + 1;
        }
        for (i, r) in rules_b.iter_mut().enumerate() {
            r.rule_id = i as i64 + 101;
        }
        let servers = vec![
            server(1, &["203.0.113.1", "2001:db8:113::1"], true, rules_a),
            server(2, &["203.0.113.2"], enforced_b, rules_b),
        ];
        let elements = all_elements(&servers);
        // Pieces of one interval set never overlap (the kernel would refuse them).
        for (i, a) in elements.iter().enumerate() {
            for b in &elements[i + 1..] {
                if let (Key::Ports { daddr: d1, proto: p1, ports: r1, source: s1 },
                        Key::Ports { daddr: d2, proto: p2, ports: r2, source: s2 }) = (&a.key, &b.key) {
                    prop_assert!(!(d1 == d2 && p1 == p2 && r1.overlaps(r2)
                        && (s1.contains(s2) || s2.contains(s1))), "{:?} / {:?}", a, b);
                }
                if let (Key::Source { daddr: d1, source: s1 }, Key::Source { daddr: d2, source: s2 }) = (&a.key, &b.key) {
                    prop_assert!(!(a.set == b.set && d1 == d2 && (s1.contains(s2) || s2.contains(s1))), "{:?} / {:?}", a, b);
                }
            }
        }
        for p in packets {
            // Packets that cannot exist: mixed families, ICMPv6 over IPv4.
            let bogus_icmp = match p.protocol {
                PacketProtocol::Icmp => p.destination.is_ipv6(),
                PacketProtocol::Icmpv6 => p.destination.is_ipv4(),
                _ => false,
            };
            if p.source.is_ipv4() != p.destination.is_ipv4() || bogus_icmp {
                continue;
            }
            let owner = servers.iter().find(|s| s.addresses.contains(&p.destination));
            let expected = match owner {
                Some(s) if s.enforced => {
                    let nrules: Vec<NetworkRule> = s.rules.iter().map(|r| NetworkRule {
                        protocol: r.protocol, ports: r.ports, sources: r.sources.clone(),
                        description: String::new(), enabled: true,
                    }).collect();
                    evaluate(&server_ruleset(&nrules), &p).decision
                }
                _ => Decision::Accept,
            };
            prop_assert_eq!(simulate(&elements, &p), expected, "packet {:?}", p);
            // The element that accepts a new packet belongs to a rule that matches it.
            if p.state == ConnState::New {
                for e in &elements {
                    if e.owner.rule_id.is_none() { continue; }
                    if element_hits(e, &p) {
                        prop_assert!(owner_rule_matches(&servers, e.owner, &p), "{:?} for {:?}", e, p);
                    }
                }
            }
        }
    }
}
