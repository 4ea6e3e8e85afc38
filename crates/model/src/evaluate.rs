//! `evaluate`: the definition of what a ruleset means.
//!
//! Everything that enforces a ruleset (the nftables and iptables compilers, the
//! edge) must give the verdict this function gives, for every packet; the
//! differential tests check exactly that against the real kernel. The fixed
//! preamble below is part of the meaning, and every compiler emits it first.

use crate::builtins::{self, Switch};
use crate::list::{ListName, Lists};
use crate::rule::{Action, Direction, Protocol, Rule};
use crate::ruleset::{Policy, Ruleset};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The transport of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PacketProtocol {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Any other IP protocol, by number.
    Other(u8),
}

/// The connection-tracking state of a packet, as netfilter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConnState {
    /// The first packet of a connection.
    #[default]
    New,
    Established,
    Related,
    Invalid,
}

/// One packet as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    pub direction: Direction,
    #[serde(default)]
    pub in_interface: Option<String>,
    #[serde(default)]
    pub out_interface: Option<String>,
    pub protocol: PacketProtocol,
    pub source: IpAddr,
    pub destination: IpAddr,
    #[serde(default)]
    pub source_port: Option<u16>,
    #[serde(default)]
    pub destination_port: Option<u16>,
    #[serde(default)]
    pub icmp_type: Option<u8>,
    /// The IPv6 hop limit, where it matters (see [`crate::builtins`]); when
    /// absent, [`crate::builtins::DEFAULT_HOP_LIMIT`].
    #[serde(default)]
    pub hop_limit: Option<u8>,
    #[serde(default)]
    pub state: ConnState,
}

/// What happens to the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Accept,
    Drop,
    Reject,
}

/// Built-in decisions that come before the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    /// Replies and related traffic (ICMP errors) of known connections pass.
    Established,
    /// Packets conntrack cannot place are dropped.
    Invalid,
    /// Loopback traffic passes.
    Loopback,
    /// ICMPv6 neighbour discovery passes, or IPv6 stops working.
    NeighbourDiscovery,
    /// The switchable accepts of [`crate::builtins`], one a [`Switch`].
    Ping,
    IcmpErrors,
    Dhcp,
    Mdns,
    Upnp,
    Ipv6Control,
}

impl From<Switch> for Builtin {
    fn from(s: Switch) -> Builtin {
        match s {
            Switch::Ping => Builtin::Ping,
            Switch::IcmpErrors => Builtin::IcmpErrors,
            Switch::Dhcp => Builtin::Dhcp,
            Switch::Mdns => Builtin::Mdns,
            Switch::Upnp => Builtin::Upnp,
            Switch::Ipv6Control => Builtin::Ipv6Control,
        }
    }
}

impl Builtin {
    /// The name rule comments carry (`pw:builtin:NAME`) and `status` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Builtin::Established => "established",
            Builtin::Invalid => "invalid",
            Builtin::Loopback => "loopback",
            Builtin::NeighbourDiscovery => "neighbour-discovery",
            Builtin::Ping => Switch::Ping.as_str(),
            Builtin::IcmpErrors => Switch::IcmpErrors.as_str(),
            Builtin::Dhcp => Switch::Dhcp.as_str(),
            Builtin::Mdns => Switch::Mdns.as_str(),
            Builtin::Upnp => Switch::Upnp.as_str(),
            Builtin::Ipv6Control => Switch::Ipv6Control.as_str(),
        }
    }
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DecidedBy {
    /// The rule with this 1-based number.
    Rule {
        number: usize,
    },
    /// The default policy of this direction.
    Policy {
        direction: Direction,
    },
    Builtin {
        builtin: Builtin,
    },
}

/// The verdict of [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Verdict {
    pub decision: Decision,
    pub by: DecidedBy,
    /// The deciding rule is a `limit` rule: accepted until the source exceeds the
    /// rate, then dropped.
    #[serde(default)]
    pub rate_limited: bool,
}

/// ICMPv6 neighbour discovery: router solicitation/advertisement, neighbour
/// solicitation/advertisement, redirect.
pub const ND_TYPES: std::ops::RangeInclusive<u8> = 133..=137;

/// The verdict of `ruleset` for `packet`.
pub fn evaluate(ruleset: &Ruleset, packet: &Packet) -> Verdict {
    let builtin = |decision, builtin| Verdict {
        decision,
        by: DecidedBy::Builtin { builtin },
        rate_limited: false,
    };
    match packet.state {
        ConnState::Established | ConnState::Related => {
            return builtin(Decision::Accept, Builtin::Established)
        }
        ConnState::Invalid | ConnState::New => {}
    }
    if let Some(s) = builtins::accepting(&ruleset.builtins, packet, true) {
        return builtin(Decision::Accept, s.into());
    }
    if packet.state == ConnState::Invalid {
        return builtin(Decision::Drop, Builtin::Invalid);
    }
    let lo = match packet.direction {
        Direction::In => packet.in_interface.as_deref() == Some("lo"),
        Direction::Out => packet.out_interface.as_deref() == Some("lo"),
        Direction::Routed => false,
    };
    if lo {
        return builtin(Decision::Accept, Builtin::Loopback);
    }
    if packet.protocol == PacketProtocol::Icmpv6
        && packet.icmp_type.is_some_and(|t| ND_TYPES.contains(&t))
        && packet.direction != Direction::Routed
    {
        return builtin(Decision::Accept, Builtin::NeighbourDiscovery);
    }
    if let Some(s) = builtins::accepting(&ruleset.builtins, packet, false) {
        return builtin(Decision::Accept, s.into());
    }
    for (i, rule) in ruleset.rules.iter().enumerate() {
        if rule_matches_in(rule, &ruleset.lists, packet) {
            let decision = match rule.action {
                Action::Allow | Action::Limit => Decision::Accept,
                Action::Deny => Decision::Drop,
                Action::Reject => Decision::Reject,
            };
            return Verdict {
                decision,
                by: DecidedBy::Rule { number: i + 1 },
                rate_limited: rule.action == Action::Limit,
            };
        }
    }
    let decision = match ruleset.defaults.get(packet.direction) {
        Policy::Allow => Decision::Accept,
        Policy::Deny => Decision::Drop,
        Policy::Reject => Decision::Reject,
    };
    Verdict {
        decision,
        by: DecidedBy::Policy {
            direction: packet.direction,
        },
        rate_limited: false,
    }
}

/// Whether `rule` matches `packet` (direction included), with no list
/// loaded: a rule that names a list matches nothing.
pub fn rule_matches(rule: &Rule, packet: &Packet) -> bool {
    rule_matches_in(rule, &Lists::default(), packet)
}

/// Whether `rule` matches `packet` (direction included), the lists it names
/// taken from `lists`; a list that is not there matches nothing.
pub fn rule_matches_in(rule: &Rule, lists: &Lists, packet: &Packet) -> bool {
    let in_list = |name: &Option<ListName>, addr: IpAddr| match name {
        None => true,
        Some(n) => lists.get(n).is_some_and(|l| l.contains(addr)),
    };
    if !in_list(&rule.source_list, packet.source)
        || !in_list(&rule.destination_list, packet.destination)
    {
        return false;
    }
    if rule.direction != packet.direction {
        return false;
    }
    if rule.in_interface.is_some() && rule.in_interface != packet.in_interface {
        return false;
    }
    if rule.out_interface.is_some() && rule.out_interface != packet.out_interface {
        return false;
    }
    let has_ports = !rule.source_ports.is_any() || !rule.destination_ports.is_any();
    let proto_ok = match rule.protocol {
        Protocol::Any if has_ports => {
            matches!(packet.protocol, PacketProtocol::Tcp | PacketProtocol::Udp)
        }
        Protocol::Any => true,
        Protocol::Tcp => packet.protocol == PacketProtocol::Tcp,
        Protocol::Udp => packet.protocol == PacketProtocol::Udp,
        Protocol::Icmp => packet.protocol == PacketProtocol::Icmp && packet.source.is_ipv4(),
        Protocol::Icmpv6 => packet.protocol == PacketProtocol::Icmpv6 && packet.source.is_ipv6(),
        p => {
            packet.protocol == PacketProtocol::Other(p.number().expect("a numbered protocol"))
                && (!p.ipv4_only() || packet.source.is_ipv4())
        }
    };
    if !proto_ok {
        return false;
    }
    if !rule.source.contains(packet.source) || !rule.destination.contains(packet.destination) {
        return false;
    }
    let port_ok = |ports: &crate::rule::Ports, port: Option<u16>| {
        ports.is_any() || port.is_some_and(|p| ports.contains(p))
    };
    port_ok(&rule.source_ports, packet.source_port)
        && port_ok(&rule.destination_ports, packet.destination_port)
}
