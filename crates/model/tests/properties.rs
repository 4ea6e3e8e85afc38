//! Properties: display → parse is the identity; evaluate's verdict follows from
//! first-match semantics.

use ipnet::IpNet;
use model::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn arb_net(v6: bool) -> impl Strategy<Value = IpNet> {
    if v6 {
        (any::<u128>(), 16u8..=128)
            .prop_map(|(a, l)| {
                IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), l)
                    .unwrap()
                    .trunc()
            })
            .boxed()
    } else {
        (any::<u32>(), 8u8..=32)
            .prop_map(|(a, l)| {
                IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), l)
                    .unwrap()
                    .trunc()
            })
            .boxed()
    }
}

fn arb_ports() -> impl Strategy<Value = Ports> {
    prop::collection::vec((1u16..=65535, 0u16..100), 0..4).prop_map(|v| {
        Ports(
            v.into_iter()
                .map(|(s, w)| PortRange {
                    start: s,
                    end: s.saturating_add(w).max(s),
                })
                .collect(),
        )
    })
}

prop_compose! {
    fn arb_rule()(
        action in prop::sample::select(Action::ALL.to_vec()),
        direction in prop::sample::select(Direction::ALL.to_vec()),
        v6 in any::<bool>(),
        proto in prop::sample::select(vec![Protocol::Any, Protocol::Tcp, Protocol::Udp, Protocol::Icmp, Protocol::Icmpv6]),
        src in prop::option::of(prop::collection::vec(any::<bool>(), 1..3)),
        dst in any::<bool>(),
        src_net in arb_net(false), src_net6 in arb_net(true),
        dst_net in arb_net(false), dst_net6 in arb_net(true),
        sports in arb_ports(), dports in arb_ports(),
        iface in prop::option::of("[a-z][a-z0-9]{0,6}"),
        comment in prop::option::of("[a-zA-Z0-9 .-]{1,20}"),
        log in any::<bool>(),
    ) -> Rule {
        let mut r = Rule::new(action, direction);
        r.protocol = proto;
        if let Some(src) = src {
            r.source = Addresses(src.iter().map(|&six| if six { src_net6 } else { src_net }).collect());
        }
        if dst {
            r.destination = Addresses(vec![if v6 { dst_net6 } else { dst_net }]);
        }
        if proto.has_ports() {
            r.source_ports = sports;
            r.destination_ports = dports;
        }
        match direction {
            Direction::In => r.in_interface = iface,
            Direction::Out => r.out_interface = iface,
            Direction::Routed => { r.in_interface = iface.clone(); r.out_interface = iface; }
        }
        r.comment = comment.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
        r.log = log;
        r
    }
}

proptest! {
    #[test]
    fn display_then_parse_is_identity(rule in arb_rule()) {
        prop_assume!(rule.validate().is_ok());
        let text = rule.to_string();
        let parsed = parse_rule(&text, &Services::builtin()).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(parsed.len(), 1, "{}", text);
        prop_assert_eq!(&parsed[0], &rule, "{}", text);
    }

    #[test]
    fn evaluate_is_first_match_then_policy(rules in prop::collection::vec(arb_rule(), 0..8), a in any::<u32>(), b in any::<u32>(), port in 1u16..=65535, tcp in any::<bool>()) {
        let rs = Ruleset { rules: rules.into_iter().filter(|r| r.validate().is_ok()).collect(), ..Default::default() };
        let p = Packet {
            direction: Direction::In,
            in_interface: Some("eth0".into()),
            out_interface: None,
            protocol: if tcp { PacketProtocol::Tcp } else { PacketProtocol::Udp },
            source: IpAddr::V4(Ipv4Addr::from(a)),
            destination: IpAddr::V4(Ipv4Addr::from(b)),
            source_port: Some(40000),
            destination_port: Some(port),
            icmp_type: None,
            hop_limit: None,
            state: ConnState::New,
        };
        let v = evaluate(&rs, &p);
        match v.by {
            DecidedBy::Rule { number } => {
                prop_assert!(rule_matches(&rs.rules[number - 1], &p));
                prop_assert!(!rs.rules[..number - 1].iter().any(|r| rule_matches(r, &p)));
            }
            DecidedBy::Policy { direction } => {
                prop_assert_eq!(direction, Direction::In);
                prop_assert!(!rs.rules.iter().any(|r| rule_matches(r, &p)));
                prop_assert_eq!(v.decision, Decision::Drop);
            }
            DecidedBy::Builtin { .. } => prop_assert!(false, "no built-in applies to a new packet on eth0"),
        }
        // Established traffic always passes, whatever the rules.
        let est = Packet { state: ConnState::Established, ..p };
        prop_assert_eq!(evaluate(&rs, &est).decision, Decision::Accept);
    }
}
