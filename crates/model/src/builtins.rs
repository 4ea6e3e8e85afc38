//! The traffic a host accepts before its own rules, as UFW's default
//! `before.rules` and `before6.rules` accept it (Debian's ufw 0.36), and the
//! switches that turn each group off.
//!
//! Besides the fixed built-ins of [`crate::evaluate`] (established and related
//! traffic, invalid packets, loopback, IPv6 neighbour discovery), UFW accepts
//! ping, the ICMP errors path MTU discovery and traceroute need, DHCP client
//! replies, and multicast service discovery (mDNS, UPnP/SSDP), before any user
//! rule: so a `deny from 192.0.2.9` does not stop a ping from that address
//! under UFW, and neither does it here. Each group is one [`Switch`], on by
//! default as in UFW, turned off with `portwall builtin NAME off` (stored in
//! `[builtins]` of rules.toml).
//!
//! [`ACCEPTS`] is the one table of what each group accepts; [`crate::evaluate`]
//! reads it to decide, and every compiler emits it, in its order, right after
//! the fixed built-ins. Parts of UFW's files portwall does not copy, and why:
//! `ufw-not-local` (a unicast packet for another host never reaches the input
//! hook here), the IPv6 type 0 routing header drop (Linux drops those packets
//! itself since 2.6.21), and the output rules of `before6.rules` other than
//! those below (with the default `outgoing allow` they change nothing).

use crate::evaluate::{ConnState, Packet, PacketProtocol};
use crate::rule::Direction;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A group of built-in accepts that can be turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Switch {
    /// ICMP echo requests (ping), inbound and routed; ICMPv6 echo replies.
    Ping,
    /// ICMP destination unreachable, time exceeded, parameter problem (and
    /// ICMPv6 packet too big): path MTU discovery and traceroute.
    IcmpErrors,
    /// DHCP client replies (IPv4 server port 67 to client port 68; DHCPv6
    /// between link-local addresses, 547 to 546).
    Dhcp,
    /// Multicast DNS: 224.0.0.251 and ff02::fb, UDP port 5353.
    Mdns,
    /// UPnP/SSDP discovery: 239.255.255.250 and ff02::f, UDP port 1900.
    Upnp,
    /// ICMPv6 control traffic besides neighbour discovery: multicast listener
    /// and router discovery, inverse and secure neighbour discovery, mobile
    /// IPv6 prefix discovery.
    Ipv6Control,
}

impl Switch {
    pub const ALL: [Switch; 6] = [
        Switch::Ping,
        Switch::IcmpErrors,
        Switch::Dhcp,
        Switch::Mdns,
        Switch::Upnp,
        Switch::Ipv6Control,
    ];

    /// The name users type and rule comments carry (`pw:builtin:NAME`).
    pub fn as_str(self) -> &'static str {
        match self {
            Switch::Ping => "ping",
            Switch::IcmpErrors => "icmp-errors",
            Switch::Dhcp => "dhcp",
            Switch::Mdns => "mdns",
            Switch::Upnp => "upnp",
            Switch::Ipv6Control => "ipv6-control",
        }
    }

    /// What the group accepts, in a line.
    pub fn describe(self) -> &'static str {
        match self {
            Switch::Ping => "ping: ICMP/ICMPv6 echo requests (in, routed), ICMPv6 echo replies",
            Switch::IcmpErrors => {
                "ICMP errors: unreachable, time exceeded, parameter problem, packet too big"
            }
            Switch::Dhcp => "DHCP client: udp 67 -> 68, DHCPv6 link-local 547 -> 546",
            Switch::Mdns => "mDNS: udp 5353 to 224.0.0.251 and ff02::fb",
            Switch::Upnp => "UPnP/SSDP: udp 1900 to 239.255.255.250 and ff02::f",
            Switch::Ipv6Control => {
                "ICMPv6 multicast listener/router discovery, inverse/secure neighbour discovery"
            }
        }
    }
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Switch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Switch::ALL
            .into_iter()
            .find(|b| b.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Switch::ALL.iter().map(|b| b.as_str()).collect();
                format!("'{s}' is not a built-in: {}", names.join(", "))
            })
    }
}

/// `on` or `off`, as `portwall builtin NAME on|off` takes it.
pub fn parse_state(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("'{s}' is not a state of a built-in: on, off")),
    }
}

/// The text of a state.
pub fn state_text(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// Which groups are on. All are on by default, as in UFW.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Switches {
    pub ping: bool,
    pub icmp_errors: bool,
    pub dhcp: bool,
    pub mdns: bool,
    pub upnp: bool,
    pub ipv6_control: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Switches {
            ping: true,
            icmp_errors: true,
            dhcp: true,
            mdns: true,
            upnp: true,
            ipv6_control: true,
        }
    }
}

impl Switches {
    /// Every group off: what the provider's network firewall accepts (its
    /// rules say it all), and what an imported iptables ruleset means.
    pub fn none() -> Switches {
        Switches {
            ping: false,
            icmp_errors: false,
            dhcp: false,
            mdns: false,
            upnp: false,
            ipv6_control: false,
        }
    }

    pub fn get(&self, s: Switch) -> bool {
        *self.slot(s)
    }

    pub fn set(&mut self, s: Switch, on: bool) {
        *self.slot_mut(s) = on;
    }

    fn slot(&self, s: Switch) -> &bool {
        match s {
            Switch::Ping => &self.ping,
            Switch::IcmpErrors => &self.icmp_errors,
            Switch::Dhcp => &self.dhcp,
            Switch::Mdns => &self.mdns,
            Switch::Upnp => &self.upnp,
            Switch::Ipv6Control => &self.ipv6_control,
        }
    }

    fn slot_mut(&mut self, s: Switch) -> &mut bool {
        match s {
            Switch::Ping => &mut self.ping,
            Switch::IcmpErrors => &mut self.icmp_errors,
            Switch::Dhcp => &mut self.dhcp,
            Switch::Mdns => &mut self.mdns,
            Switch::Upnp => &mut self.upnp,
            Switch::Ipv6Control => &mut self.ipv6_control,
        }
    }
}

/// An address family of a built-in accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// The transport part of a built-in accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// ICMP (with [`Family::V4`]) or ICMPv6 (with [`Family::V6`]) of these types.
    Icmp(&'static [u8]),
    /// UDP from this source port (any when `None`) to this destination port.
    Udp {
        source_port: Option<u16>,
        destination_port: u16,
    },
}

/// A network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub address: IpAddr,
    pub prefix: u8,
}

impl Net {
    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.address, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// One accept of UFW's before rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    pub switch: Switch,
    pub direction: Direction,
    pub family: Family,
    pub transport: Transport,
    pub source: Option<Net>,
    pub destination: Option<Net>,
    /// The IPv6 hop limit the packet must carry (255: it was not routed).
    pub hop_limit: Option<u8>,
    /// Checked before invalid packets are dropped (UFW's rule for multicast
    /// echo replies, which conntrack cannot place).
    pub before_invalid: bool,
}

const LINK_LOCAL: Net = Net {
    address: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
    prefix: 10,
};

const fn host(address: IpAddr) -> Net {
    let prefix = match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    Net { address, prefix }
}

const fn icmp(
    switch: Switch,
    direction: Direction,
    family: Family,
    types: &'static [u8],
) -> Accept {
    Accept {
        switch,
        direction,
        family,
        transport: Transport::Icmp(types),
        source: None,
        destination: None,
        hop_limit: None,
        before_invalid: false,
    }
}

const fn icmpv6_from(
    direction: Direction,
    types: &'static [u8],
    source: Option<Net>,
    hop_limit: Option<u8>,
) -> Accept {
    Accept {
        switch: Switch::Ipv6Control,
        direction,
        family: Family::V6,
        transport: Transport::Icmp(types),
        source,
        destination: None,
        hop_limit,
        before_invalid: false,
    }
}

const fn udp_to(switch: Switch, destination: IpAddr, port: u16) -> Accept {
    let family = match destination {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    };
    Accept {
        switch,
        direction: Direction::In,
        family,
        transport: Transport::Udp {
            source_port: None,
            destination_port: port,
        },
        source: None,
        destination: Some(host(destination)),
        hop_limit: None,
        before_invalid: false,
    }
}

const ICMP_ERRORS_V4: &[u8] = &[3, 11, 12];
const ICMP_ERRORS_V6: &[u8] = &[1, 2, 3, 4];
const ECHO_REQUEST_V4: &[u8] = &[8];
const ECHO_REQUEST_V6: &[u8] = &[128];
const ECHO_V6: &[u8] = &[128, 129];
/// Inverse neighbour discovery (141, 142) and secure neighbour discovery
/// (148, 149): only from the link (hop limit 255).
const LINK_ONLY_V6: &[u8] = &[141, 142, 148, 149];
/// Multicast listener discovery (130-132, 143): from link-local addresses.
const MLD_V6: &[u8] = &[130, 131, 132, 143];
/// Multicast router discovery (151-153): link-local, hop limit 1.
const MRD_V6: &[u8] = &[151, 152, 153];
/// Mobile IPv6 home agent and prefix discovery (144-147).
const MOBILE_V6: &[u8] = &[144, 145, 146, 147];

use Direction::{In, Out, Routed};
use Family::{V4, V6};

/// Every built-in accept, in the order the compilers emit them.
pub const ACCEPTS: &[Accept] = &[
    // before6.rules: echo replies to a multicast ping, before the invalid drop.
    Accept {
        switch: Switch::Ping,
        direction: In,
        family: V6,
        transport: Transport::Icmp(&[129]),
        source: None,
        destination: None,
        hop_limit: None,
        before_invalid: true,
    },
    icmp(Switch::IcmpErrors, In, V4, ICMP_ERRORS_V4),
    icmp(Switch::Ping, In, V4, ECHO_REQUEST_V4),
    icmp(Switch::IcmpErrors, Routed, V4, ICMP_ERRORS_V4),
    icmp(Switch::Ping, Routed, V4, ECHO_REQUEST_V4),
    icmp(Switch::IcmpErrors, In, V6, ICMP_ERRORS_V6),
    icmp(Switch::Ping, In, V6, ECHO_REQUEST_V6),
    icmpv6_from(In, LINK_ONLY_V6, None, Some(255)),
    icmpv6_from(In, MLD_V6, Some(LINK_LOCAL), None),
    icmpv6_from(In, MRD_V6, Some(LINK_LOCAL), Some(1)),
    icmpv6_from(In, MOBILE_V6, None, None),
    icmp(Switch::IcmpErrors, Out, V6, ICMP_ERRORS_V6),
    icmp(Switch::Ping, Out, V6, ECHO_V6),
    icmpv6_from(Out, LINK_ONLY_V6, None, Some(255)),
    icmpv6_from(Out, MLD_V6, Some(LINK_LOCAL), None),
    icmpv6_from(Out, MRD_V6, Some(LINK_LOCAL), Some(1)),
    icmp(Switch::IcmpErrors, Routed, V6, ICMP_ERRORS_V6),
    icmp(Switch::Ping, Routed, V6, ECHO_V6),
    Accept {
        switch: Switch::Dhcp,
        direction: In,
        family: V4,
        transport: Transport::Udp {
            source_port: Some(67),
            destination_port: 68,
        },
        source: None,
        destination: None,
        hop_limit: None,
        before_invalid: false,
    },
    Accept {
        switch: Switch::Dhcp,
        direction: In,
        family: V6,
        transport: Transport::Udp {
            source_port: Some(547),
            destination_port: 546,
        },
        source: Some(LINK_LOCAL),
        destination: Some(LINK_LOCAL),
        hop_limit: None,
        before_invalid: false,
    },
    udp_to(
        Switch::Mdns,
        IpAddr::V4(Ipv4Addr::new(224, 0, 0, 251)),
        5353,
    ),
    udp_to(
        Switch::Upnp,
        IpAddr::V4(Ipv4Addr::new(239, 255, 255, 250)),
        1900,
    ),
    udp_to(
        Switch::Mdns,
        IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb)),
        5353,
    ),
    udp_to(
        Switch::Upnp,
        IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xf)),
        1900,
    ),
];

/// The hop limit a packet is taken to carry when it does not say (an ordinary
/// routed packet's, neither 255 nor 1).
pub const DEFAULT_HOP_LIMIT: u8 = 64;

impl Accept {
    /// Whether this accept takes `packet` (its switch aside).
    pub fn matches(&self, packet: &Packet) -> bool {
        if packet.direction != self.direction {
            return false;
        }
        let family_ok = match self.family {
            Family::V4 => packet.source.is_ipv4(),
            Family::V6 => packet.source.is_ipv6(),
        };
        if !family_ok {
            return false;
        }
        let transport_ok = match self.transport {
            Transport::Icmp(types) => {
                let proto = match self.family {
                    Family::V4 => PacketProtocol::Icmp,
                    Family::V6 => PacketProtocol::Icmpv6,
                };
                packet.protocol == proto && packet.icmp_type.is_some_and(|t| types.contains(&t))
            }
            Transport::Udp {
                source_port,
                destination_port,
            } => {
                packet.protocol == PacketProtocol::Udp
                    && packet.destination_port == Some(destination_port)
                    && source_port.is_none_or(|p| packet.source_port == Some(p))
            }
        };
        transport_ok
            && self.source.is_none_or(|n| n.contains(packet.source))
            && self
                .destination
                .is_none_or(|n| n.contains(packet.destination))
            && self
                .hop_limit
                .is_none_or(|h| packet.hop_limit.unwrap_or(DEFAULT_HOP_LIMIT) == h)
    }
}

/// The switched-on accepts of `direction`, in order, among those checked
/// before the invalid drop (`before_invalid`) or after the fixed built-ins:
/// what every compiler emits there.
pub fn switched_on(
    switches: Switches,
    direction: Direction,
    before_invalid: bool,
) -> impl Iterator<Item = &'static Accept> {
    ACCEPTS.iter().filter(move |a| {
        a.direction == direction && a.before_invalid == before_invalid && switches.get(a.switch)
    })
}

/// The first switched-on accept that takes `packet`, among those checked
/// before the invalid drop (`before_invalid`) or after it.
pub fn accepting(switches: &Switches, packet: &Packet, before_invalid: bool) -> Option<Switch> {
    if packet.state != ConnState::New && packet.state != ConnState::Invalid {
        return None;
    }
    switched_on(*switches, packet.direction, before_invalid)
        .find(|a| a.matches(packet))
        .map(|a| a.switch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(direction: Direction, protocol: PacketProtocol, src: &str, dst: &str) -> Packet {
        Packet {
            direction,
            in_interface: Some("eth0".into()),
            out_interface: None,
            protocol,
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
            source_port: None,
            destination_port: None,
            icmp_type: None,
            hop_limit: None,
            state: ConnState::New,
        }
    }

    #[test]
    fn names_parse_back_and_unknown_names_list_the_accepted_ones() {
        for s in Switch::ALL {
            assert_eq!(s.as_str().parse::<Switch>(), Ok(s));
        }
        let e = "pong".parse::<Switch>().unwrap_err();
        assert!(
            e.contains("'pong'") && e.contains("ping, icmp-errors"),
            "{e}"
        );
    }

    #[test]
    fn every_switch_has_an_accept_and_a_slot_of_its_own() {
        for w in Switch::ALL {
            assert!(ACCEPTS.iter().any(|a| a.switch == w), "{w}");
            let mut s = Switches::default();
            s.set(w, false);
            for o in Switch::ALL {
                assert_eq!(s.get(o), o != w, "{w} off, {o}");
            }
        }
    }

    #[test]
    fn ping_and_discovery_as_ufw_accepts_them() {
        let on = Switches::default();
        let mut p = packet(In, PacketProtocol::Icmp, "192.0.2.9", "192.0.2.1");
        p.icmp_type = Some(8);
        assert_eq!(accepting(&on, &p, false), Some(Switch::Ping));
        p.icmp_type = Some(0);
        assert_eq!(
            accepting(&on, &p, false),
            None,
            "an echo reply is not a request"
        );
        let mut off = on;
        off.ping = false;
        p.icmp_type = Some(8);
        assert_eq!(accepting(&off, &p, false), None);

        let mut m = packet(In, PacketProtocol::Udp, "192.0.2.9", "224.0.0.251");
        m.destination_port = Some(5353);
        assert_eq!(accepting(&on, &m, false), Some(Switch::Mdns));
        m.destination = "192.0.2.1".parse().unwrap();
        assert_eq!(
            accepting(&on, &m, false),
            None,
            "unicast 5353 is a user rule's business"
        );

        let mut d = packet(In, PacketProtocol::Udp, "fe80::1", "fe80::2");
        d.source_port = Some(547);
        d.destination_port = Some(546);
        assert_eq!(accepting(&on, &d, false), Some(Switch::Dhcp));
        d.source = "2001:db8::1".parse().unwrap();
        assert_eq!(
            accepting(&on, &d, false),
            None,
            "DHCPv6 only between link-local addresses"
        );

        let mut r = packet(In, PacketProtocol::Icmpv6, "2001:db8::9", "ff02::1");
        r.icmp_type = Some(129);
        r.state = ConnState::Invalid;
        assert_eq!(accepting(&on, &r, true), Some(Switch::Ping));
        assert_eq!(accepting(&on, &r, false), None);

        let mut h = packet(In, PacketProtocol::Icmpv6, "fe80::9", "ff02::16");
        h.icmp_type = Some(151);
        assert_eq!(
            accepting(&on, &h, false),
            None,
            "router discovery needs hop limit 1"
        );
        h.hop_limit = Some(1);
        assert_eq!(accepting(&on, &h, false), Some(Switch::Ipv6Control));
    }

    #[test]
    fn established_packets_are_not_the_accepts_business() {
        let mut p = packet(In, PacketProtocol::Icmp, "192.0.2.9", "192.0.2.1");
        p.icmp_type = Some(8);
        p.state = ConnState::Established;
        assert_eq!(accepting(&Switches::default(), &p, false), None);
    }

    #[test]
    fn nets_contain_their_addresses_only() {
        assert!(LINK_LOCAL.contains("fe80::1".parse().unwrap()));
        assert!(LINK_LOCAL.contains("febf::1".parse().unwrap()));
        assert!(!LINK_LOCAL.contains("fec0::1".parse().unwrap()));
        assert!(!LINK_LOCAL.contains("10.0.0.1".parse().unwrap()));
        let h = host("224.0.0.251".parse().unwrap());
        assert!(h.contains("224.0.0.251".parse().unwrap()));
        assert!(!h.contains("224.0.0.250".parse().unwrap()));
    }
}
