//! The rule value: what an admin types (`allow 22/tcp from 203.0.113.0/24`), as data.
//!
//! A [`Rule`] is the same value whether it came from the CLI, the TOML file, the
//! panel or the API. Its [`Display`](std::fmt::Display) form is canonical rule
//! syntax that [`crate::parse_rule`] reads back to an equal value.

use crate::list::{Deadline, ListName};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// What happens to a packet a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Accept.
    Allow,
    /// Drop silently (the sender sees a timeout).
    Deny,
    /// Refuse: TCP reset for TCP, ICMP port unreachable otherwise.
    Reject,
    /// Accept, but refuse (ICMP port unreachable, as `ufw limit`) the new
    /// connections of a source over the rule's [`Rate`] (UFW's by default:
    /// the sixth within 30 seconds).
    Limit,
}

/// How many new connections per source a `limit` rule lets through in how
/// many seconds: `rate 10/60s`. The next one is refused. Enforced as a token
/// bucket per source: `connections` at once, then one every
/// `seconds / connections` (UFW counts the last `seconds` exactly instead,
/// which nftables cannot express without xtables; the two agree on bursts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Rate {
    pub connections: u32,
    pub seconds: u32,
}

impl Rate {
    /// UFW's `limit`: five new connections in 30 s, the sixth refused.
    pub const UFW: Rate = Rate {
        connections: 5,
        seconds: 30,
    };
    /// The accepted bounds: 1-10000 connections in 1-86400 seconds.
    pub const MAX_CONNECTIONS: u32 = 10_000;
    pub const MAX_SECONDS: u32 = 86_400;
}

impl Default for Rate {
    fn default() -> Self {
        Rate::UFW
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.connections, self.seconds)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    /// `N/Ts`, `N/Tm`, `N/Th` (or `N/T`, seconds).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "'{s}' is not a rate: CONNECTIONS/SECONDS such as 10/60s (also 10/1m, 100/1h); 1-{} connections in 1 s to 1 day",
                Rate::MAX_CONNECTIONS
            )
        };
        let (n, t) = s.split_once('/').ok_or_else(bad)?;
        let (t, unit) = match t.char_indices().last() {
            Some((i, 's')) => (&t[..i], 1),
            Some((i, 'm')) => (&t[..i], 60),
            Some((i, 'h')) => (&t[..i], 3600),
            _ => (t, 1),
        };
        let digits =
            |x: &str| !x.is_empty() && x.len() <= 6 && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(n) || !digits(t) {
            return Err(bad());
        }
        let connections: u32 = n.parse().map_err(|_| bad())?;
        let seconds = t.parse::<u32>().map_err(|_| bad())? * unit;
        if !(1..=Rate::MAX_CONNECTIONS).contains(&connections)
            || !(1..=Rate::MAX_SECONDS).contains(&seconds)
        {
            return Err(bad());
        }
        Ok(Rate {
            connections,
            seconds,
        })
    }
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Allow, Action::Deny, Action::Reject, Action::Limit];
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Reject => "reject",
            Action::Limit => "limit",
        }
    }
}

/// Which traffic a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic to this host.
    In,
    /// Traffic from this host.
    Out,
    /// Traffic forwarded through this host (containers, VMs, a router).
    Routed,
}

impl Direction {
    pub const ALL: [Direction; 3] = [Direction::In, Direction::Out, Direction::Routed];
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Routed => "routed",
        }
    }
    /// The word `portwall default` and `status` use for the direction's policy.
    pub fn policy_name(self) -> &'static str {
        match self {
            Direction::In => "incoming",
            Direction::Out => "outgoing",
            Direction::Routed => "routed",
        }
    }
}

impl std::str::FromStr for Direction {
    type Err = String;
    /// `in`, `out`, `routed` (as [`Direction::as_str`] writes them) and the
    /// words of `portwall default` and iptables: `incoming`/`input`,
    /// `outgoing`/`output`, `forward`; any case.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "incoming" | "in" | "input" => Ok(Direction::In),
            "outgoing" | "out" | "output" => Ok(Direction::Out),
            "routed" | "forward" => Ok(Direction::Routed),
            other => Err(format!(
                "'{other}' is not a direction: incoming, outgoing, routed"
            )),
        }
    }
}

/// The protocol a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Any protocol; with ports, TCP and UDP (as UFW).
    Any,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// IPsec's encapsulating security payload (50).
    Esp,
    /// IPsec's authentication header (51).
    Ah,
    /// Generic routing encapsulation (47).
    Gre,
    /// IGMP (2): IPv4 only.
    Igmp,
    /// IPv6 in IPv4 (41, 6in4 and 6to4 tunnels): IPv4 only.
    Ipv6,
}

impl Protocol {
    pub const ALL: [Protocol; 10] = [
        Protocol::Tcp,
        Protocol::Udp,
        Protocol::Icmp,
        Protocol::Icmpv6,
        Protocol::Esp,
        Protocol::Ah,
        Protocol::Gre,
        Protocol::Igmp,
        Protocol::Ipv6,
        Protocol::Any,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Any => "any",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Icmpv6 => "icmpv6",
            Protocol::Esp => "esp",
            Protocol::Ah => "ah",
            Protocol::Gre => "gre",
            Protocol::Igmp => "igmp",
            Protocol::Ipv6 => "ipv6",
        }
    }
    /// The IP protocol number (`None` for any).
    pub fn number(self) -> Option<u8> {
        Some(match self {
            Protocol::Any => return None,
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => 1,
            Protocol::Icmpv6 => 58,
            Protocol::Esp => 50,
            Protocol::Ah => 51,
            Protocol::Gre => 47,
            Protocol::Igmp => 2,
            Protocol::Ipv6 => 41,
        })
    }
    /// Whether rules of this protocol may name ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Any | Protocol::Tcp | Protocol::Udp)
    }
    /// Whether the protocol exists over IPv4 only (a rule of it applies to
    /// IPv4 packets, and may not name IPv6 addresses).
    pub fn ipv4_only(self) -> bool {
        matches!(self, Protocol::Icmp | Protocol::Igmp | Protocol::Ipv6)
    }
}

/// The protocols a rule may name, as the error messages list them.
pub const PROTOCOLS: &str = "tcp, udp, icmp, icmpv6, esp, ah, gre, igmp, ipv6, any";

impl std::str::FromStr for Protocol {
    type Err = String;
    /// One of [`PROTOCOLS`] (also `ipv6-icmp` for icmpv6), in any case.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("ipv6-icmp") {
            return Ok(Protocol::Icmpv6);
        }
        Protocol::ALL
            .into_iter()
            .find(|p| s.eq_ignore_ascii_case(p.as_str()))
            .ok_or_else(|| {
                format!(
                    "'{}' is not a protocol: {PROTOCOLS}",
                    s.to_ascii_lowercase()
                )
            })
    }
}

/// Why a text is not a port or a port range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("'{0}' is not a port number: 1-65535")]
    NotANumber(String),
    #[error("port {0} is out of range 1-65535")]
    OutOfRange(String),
    #[error("port range {text} is reversed: write {end}:{start}")]
    Reversed { text: String, start: u16, end: u16 },
}

/// An inclusive range of ports, `start..=end`, both in 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn single(port: u16) -> PortRange {
        PortRange {
            start: port,
            end: port,
        }
    }
    /// A range; `None` unless `1 <= start <= end`.
    pub fn new(start: u16, end: u16) -> Option<PortRange> {
        (start >= 1 && start <= end).then_some(PortRange { start, end })
    }
    pub fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
    /// A port number, `1`-`65535`, digits only.
    pub fn port_number(text: &str) -> Result<u16, PortError> {
        if text.is_empty() || !text.bytes().all(|c| c.is_ascii_digit()) {
            return Err(PortError::NotANumber(text.into()));
        }
        match text.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            _ => Err(PortError::OutOfRange(text.into())),
        }
    }
    /// The range as the network firewall's API and forms write it:
    /// `8000-8100` (a single port as its number).
    pub fn hyphenated(&self) -> String {
        if self.start == self.end {
            self.start.to_string()
        } else {
            format!("{}-{}", self.start, self.end)
        }
    }
}

impl std::str::FromStr for PortRange {
    type Err = PortError;
    /// `22`, or a range `A:B` or `A-B` (the one spelling written is `A:B`,
    /// see `Display`; the network firewall's API writes `A-B`,
    /// [`PortRange::hyphenated`]). Service names need the services table:
    /// [`crate::Services::port_range`].
    fn from_str(s: &str) -> Result<Self, PortError> {
        match s.split_once(':').or_else(|| s.split_once('-')) {
            Some((a, b)) => {
                let (start, end) = (PortRange::port_number(a)?, PortRange::port_number(b)?);
                if start > end {
                    return Err(PortError::Reversed {
                        text: s.into(),
                        start,
                        end,
                    });
                }
                Ok(PortRange { start, end })
            }
            None => PortRange::port_number(s).map(PortRange::single),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}:{}", self.start, self.end)
        }
    }
}

/// A list of port ranges; empty means any port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ports(pub Vec<PortRange>);

impl Ports {
    pub fn any() -> Ports {
        Ports(Vec::new())
    }
    pub fn is_any(&self) -> bool {
        self.0.is_empty()
    }
    pub fn contains(&self, port: u16) -> bool {
        self.0.is_empty() || self.0.iter().any(|r| r.contains(port))
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// A source or destination: any address, or a list of networks (a single address is
/// a /32 or /128 network). The list is kept in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Addresses(pub Vec<IpNet>);

impl Addresses {
    pub fn any() -> Addresses {
        Addresses(Vec::new())
    }
    pub fn is_any(&self) -> bool {
        self.0.is_empty()
    }
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.is_empty() || self.0.iter().any(|n| n.contains(&addr))
    }
    /// The families present: (has IPv4, has IPv6). `any` has neither.
    pub fn families(&self) -> (bool, bool) {
        (
            self.0.iter().any(|n| matches!(n, IpNet::V4(_))),
            self.0.iter().any(|n| matches!(n, IpNet::V6(_))),
        )
    }
}

impl fmt::Display for Addresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("any");
        }
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if n.prefix_len() == n.max_prefix_len() {
                write!(f, "{}", n.addr())?;
            } else {
                write!(f, "{n}")?;
            }
        }
        Ok(())
    }
}

/// One firewall rule. Construct with [`crate::parse_rule`] or by hand followed by
/// [`Rule::validate`]; an invalid rule is never saved or applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub action: Action,
    pub direction: Direction,
    /// `in on IFACE`: the interface the packet arrives on (in, routed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_interface: Option<String>,
    /// `out on IFACE`: the interface the packet leaves by (out, routed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_interface: Option<String>,
    pub protocol: Protocol,
    #[serde(default)]
    pub source: Addresses,
    #[serde(default)]
    pub source_ports: Ports,
    #[serde(default)]
    pub destination: Addresses,
    #[serde(default)]
    pub destination_ports: Ports,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Log the packets this rule decides (rate-limited).
    #[serde(default)]
    pub log: bool,
    /// A `limit` rule's rate when it is not UFW's ([`Rate::UFW`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// `from @NAME`: the source is the named address list (and `source`
    /// is any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_list: Option<ListName>,
    /// `to @NAME`: the destination is the named address list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_list: Option<ListName>,
    /// A temporary rule: when it ends (`--for 30m` on the command line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Deadline>,
}

/// Why a rule is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("a rate belongs to 'limit' rules: limit ssh rate 10/60s")]
    RateWithoutLimit,
    #[error("ports need protocol tcp or udp (or none, meaning both); {0} has no ports")]
    PortsWithoutTransport(Protocol),
    #[error("'{interface}' cannot be used with direction {direction}: {hint}")]
    InterfaceDirection {
        interface: String,
        direction: Direction,
        hint: &'static str,
    },
    #[error("'{0}' is not an interface name: 1-15 characters, no spaces, '/' or quotes")]
    BadInterface(String),
    #[error("{0} is IPv4-only, but the rule names an IPv6 address")]
    ProtocolFamilyV4(Protocol),
    #[error("icmpv6 is IPv6-only, but the rule names an IPv4 address")]
    ProtocolFamilyV6,
    #[error("source and destination must be of one address family (both IPv4 or both IPv6)")]
    MixedFamilies,
    #[error("a comment may not contain both ' and \" quotes, nor control characters")]
    BadComment,
    #[error("a rule names a list instead of addresses: 'from @{0}' takes no other address")]
    ListWithAddresses(ListName),
    #[error("a temporary rule needs a port, a protocol or an address to match: the kernel lets set elements expire, not rules")]
    TemporaryWithoutMatch,
}

/// Whether `name` can be a Linux interface name (IFNAMSIZ - 1 bytes, printable).
pub fn is_valid_interface(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '\'' | '"' | ',' | ':'))
}

impl Rule {
    /// A rule that matches everything of `direction`, to be narrowed field by field.
    pub fn new(action: Action, direction: Direction) -> Rule {
        Rule {
            action,
            direction,
            in_interface: None,
            out_interface: None,
            protocol: Protocol::Any,
            source: Addresses::any(),
            source_ports: Ports::any(),
            destination: Addresses::any(),
            destination_ports: Ports::any(),
            comment: None,
            log: false,
            rate: None,
            source_list: None,
            destination_list: None,
            until: None,
        }
    }

    /// The rate of a `limit` rule (UFW's unless the rule names one).
    pub fn limit_rate(&self) -> Rate {
        self.rate.unwrap_or(Rate::UFW)
    }

    /// Checks the combinations the parser cannot see token by token.
    pub fn validate(&self) -> Result<(), RuleError> {
        let has_ports = !(self.source_ports.is_any() && self.destination_ports.is_any());
        if has_ports && !self.protocol.has_ports() {
            return Err(RuleError::PortsWithoutTransport(self.protocol));
        }
        for iface in [&self.in_interface, &self.out_interface]
            .into_iter()
            .flatten()
        {
            if !is_valid_interface(iface) {
                return Err(RuleError::BadInterface(iface.clone()));
            }
        }
        if let (Direction::In, Some(i)) = (self.direction, &self.out_interface) {
            return Err(RuleError::InterfaceDirection {
                interface: i.clone(),
                direction: Direction::In,
                hint: "incoming traffic has only an input interface ('in on IFACE')",
            });
        }
        if let (Direction::Out, Some(i)) = (self.direction, &self.in_interface) {
            return Err(RuleError::InterfaceDirection {
                interface: i.clone(),
                direction: Direction::Out,
                hint: "outgoing traffic has only an output interface ('out on IFACE')",
            });
        }
        let (s4, s6) = self.source.families();
        let (d4, d6) = self.destination.families();
        let v4 = s4 || d4;
        let v6 = s6 || d6;
        // With both sides constrained, a packet must be able to match both.
        let shared_family = (s4 && d4) || (s6 && d6);
        if !self.source.is_any() && !self.destination.is_any() && !shared_family {
            return Err(RuleError::MixedFamilies);
        }
        match self.protocol {
            p if p.ipv4_only() && v6 && !v4 => return Err(RuleError::ProtocolFamilyV4(p)),
            Protocol::Icmpv6 if v4 && !v6 => return Err(RuleError::ProtocolFamilyV6),
            _ => {}
        }
        for (list, addrs) in [
            (&self.source_list, &self.source),
            (&self.destination_list, &self.destination),
        ] {
            if let (Some(l), false) = (list, addrs.is_any()) {
                return Err(RuleError::ListWithAddresses(l.clone()));
            }
        }
        if self.until.is_some()
            && self.protocol == Protocol::Any
            && self.source.is_any()
            && self.destination.is_any()
            && self.source_ports.is_any()
            && self.destination_ports.is_any()
        {
            return Err(RuleError::TemporaryWithoutMatch);
        }
        if self.rate.is_some() && self.action != Action::Limit {
            return Err(RuleError::RateWithoutLimit);
        }
        if let Some(c) = &self.comment {
            if (c.contains('\'') && c.contains('"')) || c.chars().any(char::is_control) {
                return Err(RuleError::BadComment);
            }
        }
        Ok(())
    }

    /// Whether two rules match the same packets (everything but action, comment and
    /// log). Adding a rule whose match equals an existing one replaces that rule.
    /// The rule as the same rule across a change: equal but for its comment
    /// (what counters and their times follow from one ruleset to the next).
    pub fn ignoring_comment(&self) -> Rule {
        Rule {
            comment: None,
            ..self.clone()
        }
    }

    /// Whether the two are the same rule but for their comments
    /// (`ignoring_comment` equality, without the copies).
    pub fn ignoring_comment_eq(&self, other: &Rule) -> bool {
        self.same_match(other)
            && self.action == other.action
            && self.log == other.log
            && self.rate == other.rate
    }

    pub fn same_match(&self, other: &Rule) -> bool {
        self.direction == other.direction
            && self.in_interface == other.in_interface
            && self.out_interface == other.out_interface
            && self.protocol == other.protocol
            && self.source == other.source
            && self.source_ports == other.source_ports
            && self.destination == other.destination
            && self.destination_ports == other.destination_ports
            && self.source_list == other.source_list
            && self.destination_list == other.destination_list
    }

    /// The lists the rule names.
    pub fn lists(&self) -> impl Iterator<Item = &ListName> {
        self.source_list.iter().chain(&self.destination_list)
    }

    /// Whether the rule can be written with the short port form (`22/tcp`),
    /// followed by `from`/`to` addresses if it has them (`22/tcp from 10.0.0.0/8`).
    fn is_short(&self) -> bool {
        self.source_ports.is_any() && !self.destination_ports.is_any() && self.protocol.has_ports()
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.action.as_str())?;
        let has_iface = self.in_interface.is_some() || self.out_interface.is_some();
        if self.direction != Direction::In || has_iface {
            write!(f, " {}", self.direction.as_str())?;
        }
        if let Some(i) = &self.in_interface {
            if self.direction == Direction::Routed {
                write!(f, " in on {i}")?;
            } else {
                write!(f, " on {i}")?;
            }
        }
        if let Some(i) = &self.out_interface {
            if self.direction == Direction::Routed {
                write!(f, " out on {i}")?;
            } else {
                write!(f, " on {i}")?;
            }
        }
        if self.log {
            f.write_str(" log")?;
        }
        if self.is_short() {
            write!(f, " {}", self.destination_ports)?;
            if self.protocol != Protocol::Any {
                write!(f, "/{}", self.protocol.as_str())?;
            }
            if let Some(l) = &self.source_list {
                write!(f, " from @{l}")?;
            } else if !self.source.is_any() {
                write!(f, " from {}", self.source)?;
            }
            if let Some(l) = &self.destination_list {
                write!(f, " to @{l}")?;
            } else if !self.destination.is_any() {
                write!(f, " to {}", self.destination)?;
            }
        } else {
            let mut wrote = false;
            if self.protocol != Protocol::Any {
                write!(f, " proto {}", self.protocol.as_str())?;
                wrote = true;
            }
            if let Some(l) = &self.source_list {
                write!(f, " from @{l}")?;
                if !self.source_ports.is_any() {
                    write!(f, " port {}", self.source_ports)?;
                }
                wrote = true;
            } else if !self.source.is_any() || !self.source_ports.is_any() {
                write!(f, " from {}", self.source)?;
                if !self.source_ports.is_any() {
                    write!(f, " port {}", self.source_ports)?;
                }
                wrote = true;
            }
            if let Some(l) = &self.destination_list {
                write!(f, " to @{l}")?;
                if !self.destination_ports.is_any() {
                    write!(f, " port {}", self.destination_ports)?;
                }
                wrote = true;
            } else if !self.destination.is_any() || !self.destination_ports.is_any() {
                write!(f, " to {}", self.destination)?;
                if !self.destination_ports.is_any() {
                    write!(f, " port {}", self.destination_ports)?;
                }
                wrote = true;
            }
            if !wrote {
                f.write_str(" from any")?;
            }
        }
        if let Some(r) = self.rate.filter(|r| *r != Rate::UFW) {
            write!(f, " rate {r}")?;
        }
        if let Some(d) = self.until {
            write!(f, " until {d}")?;
        }
        if let Some(c) = &self.comment {
            if c.contains('\'') {
                write!(f, " comment \"{c}\"")?;
            } else {
                write!(f, " comment '{c}'")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
