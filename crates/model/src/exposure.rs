//! Who can reach a listening socket through a ruleset (for `portwall audit`).
//!
//! The answer comes from [`crate::evaluate`] alone: the source addresses a ruleset
//! can tell apart are the networks its rules name, so one representative address
//! per named network, plus one address outside all of them ("anyone else"), covers
//! every case. No second copy of the matching logic exists.

use crate::evaluate::{evaluate, ConnState, Decision, Packet, PacketProtocol};
use crate::rule::Direction;
use crate::ruleset::Ruleset;
use ipnet::IpNet;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which sources a ruleset lets reach a socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reach", content = "sources", rename_all = "snake_case")]
pub enum Reach {
    Nobody,
    /// Only sources in these networks.
    Some(Vec<IpNet>),
    Anyone,
}

/// Candidates for "an address no rule names", per family.
const OUTSIDE_V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(198, 18, 7, 7),
    Ipv4Addr::new(100, 64, 7, 7),
    Ipv4Addr::new(1, 1, 1, 1),
    Ipv4Addr::new(223, 255, 254, 7),
];
const OUTSIDE_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x3fff, 0x77, 0, 0, 0, 0, 0, 7),
    Ipv6Addr::new(0x2a00, 0x7777, 0, 0, 0, 0, 0, 7),
];

/// Who can open a new connection of `protocol` to `local` (address, port)
/// arriving on `interface`, through `ruleset`. `local` may be a wildcard
/// address (`0.0.0.0` / `::`): then any address of the host is meant.
pub fn reach(
    ruleset: &Ruleset,
    protocol: PacketProtocol,
    local: IpAddr,
    port: u16,
    interface: Option<&str>,
) -> Reach {
    reach_through(&[(ruleset, interface)], protocol, local, port)
}

/// Who can open a new connection of `protocol` to `local` (address, port)
/// through several filtering layers in a row (the provider's network firewall,
/// then the server's own): a source reaches the socket only if every layer
/// accepts its packet. Each layer is a ruleset and the interface the packet
/// arrives on there. The sources tried are the networks any layer names, plus
/// one address no layer names, so the answer still comes from
/// [`crate::evaluate`] alone. No layers: anyone.
pub fn reach_through(
    layers: &[(&Ruleset, Option<&str>)],
    protocol: PacketProtocol,
    local: IpAddr,
    port: u16,
) -> Reach {
    // The lists incoming rules name: their networks are named sources too,
    // up to a bound (a blocklist of a million networks is judged as a whole:
    // no outside address is taken from it).
    let lists: Vec<&crate::list::Segments> = layers
        .iter()
        .flat_map(|(ruleset, _)| {
            ruleset
                .rules
                .iter()
                .filter(|r| r.direction == Direction::In)
                .filter_map(|r| r.source_list.as_ref())
                .filter_map(|l| ruleset.lists.get(l))
        })
        .collect();
    const LIST_SOURCES_MAX: usize = 1024;
    let named: Vec<IpNet> = layers
        .iter()
        .flat_map(|(ruleset, _)| ruleset.rules.iter())
        .filter(|r| r.direction == Direction::In)
        .flat_map(|r| r.source.0.iter().copied())
        .chain(
            lists
                .iter()
                .filter(|l| l.segments().len() <= LIST_SOURCES_MAX)
                .flat_map(|l| l.segments().iter().flat_map(|s| s.interval.to_networks())),
        )
        .filter(|n| n.addr().is_ipv4() == local.is_ipv4() || local.is_unspecified())
        .collect();
    let unnamed =
        |a: &IpAddr| !named.iter().any(|n| n.contains(a)) && !lists.iter().any(|l| l.contains(*a));
    // A wildcard listener of one family is reached over that family (and IPv4
    // through a dual-stack `::` socket).
    let families: Vec<bool> = match local {
        IpAddr::V6(a) if a.is_unspecified() => vec![false, true],
        a => vec![a.is_ipv4()],
    };
    let accepts = |src: IpAddr| {
        let dst = if local.is_unspecified() {
            // The destination is one of the host's addresses; rules that name a
            // destination are judged with the listener's family's unspecified
            // address, which only `to any` rules match.
            if src.is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            }
        } else {
            local
        };
        layers.iter().all(|(ruleset, interface)| {
            let p = Packet {
                direction: Direction::In,
                in_interface: interface.map(str::to_string),
                out_interface: None,
                protocol,
                source: src,
                destination: dst,
                source_port: Some(40000),
                destination_port: Some(port),
                icmp_type: None,
                hop_limit: None,
                state: ConnState::New,
            };
            evaluate(ruleset, &p).decision == Decision::Accept
        })
    };
    let mut anyone = false;
    for &v4 in &families {
        let outside: Option<IpAddr> = if v4 {
            OUTSIDE_V4.iter().map(|&a| IpAddr::V4(a)).find(unnamed)
        } else {
            OUTSIDE_V6.iter().map(|&a| IpAddr::V6(a)).find(unnamed)
        };
        if outside.is_some_and(accepts) {
            anyone = true;
        }
    }
    if anyone {
        return Reach::Anyone;
    }
    let mut some: Vec<IpNet> = named
        .into_iter()
        .filter(|n| families.contains(&n.addr().is_ipv4()))
        .filter(|n| accepts(n.network()))
        .collect();
    some.sort();
    some.dedup();
    if some.is_empty() {
        Reach::Nobody
    } else {
        Reach::Some(some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_rule, Services};

    fn rs(lines: &[&str]) -> Ruleset {
        let mut r = Ruleset::default();
        for l in lines {
            r.rules.extend(parse_rule(l, &Services::builtin()).unwrap());
        }
        r
    }

    #[test]
    fn the_four_answers() {
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let t = PacketProtocol::Tcp;
        assert_eq!(
            reach(&rs(&["deny 5432/tcp"]), t, any4, 5432, None),
            Reach::Nobody
        );
        assert_eq!(
            reach(&rs(&[]), t, any4, 5432, None),
            Reach::Nobody,
            "default deny"
        );
        assert_eq!(
            reach(&rs(&["allow 22/tcp"]), t, any4, 22, None),
            Reach::Anyone
        );
        assert_eq!(
            reach(
                &rs(&["allow 22/tcp from 203.0.113.0/24"]),
                t,
                any4,
                22,
                None
            ),
            Reach::Some(vec!["203.0.113.0/24".parse().unwrap()])
        );
        // A deny for one network before an allow-any still leaves everyone else.
        assert_eq!(
            reach(
                &rs(&["deny from 198.51.100.0/24", "allow 80/tcp"]),
                t,
                any4,
                80,
                None
            ),
            Reach::Anyone
        );
    }

    #[test]
    fn layers_in_a_row_let_in_only_what_both_accept() {
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let t = PacketProtocol::Tcp;
        let os = rs(&["allow 443/tcp"]);
        let network = rs(&["allow 443/tcp from 203.0.113.0/24"]);
        assert_eq!(
            reach_through(&[(&network, None), (&os, None)], t, any4, 443),
            Reach::Some(vec!["203.0.113.0/24".parse().unwrap()])
        );
        // Narrower on the OS side: the intersection.
        let os = rs(&["allow 443/tcp from 203.0.113.128/25"]);
        assert_eq!(
            reach_through(&[(&network, None), (&os, None)], t, any4, 443),
            Reach::Some(vec!["203.0.113.128/25".parse().unwrap()])
        );
        // Either layer blocking is enough.
        assert_eq!(
            reach_through(
                &[(&rs(&["allow 443/tcp"]), None), (&rs(&[]), None)],
                t,
                any4,
                443
            ),
            Reach::Nobody
        );
        let open = rs(&["allow 5432/tcp"]);
        assert_eq!(
            reach_through(&[(&open, None), (&open, None)], t, any4, 5432),
            Reach::Anyone
        );
        assert_eq!(reach_through(&[], t, any4, 5432), Reach::Anyone);
    }
}
