//! Server policies → the elements of the edge table's sets, and the nftables
//! transactions that load them.
//!
//! **Scale by lookup.** The chain has a fixed, short list of rules; everything
//! that depends on servers and their firewalls is a set element, so matching
//! cost per packet does not grow with the number of servers or rules. Per
//! address family (`_v4`, `_v6`):
//!
//! | set          | key                                       | kind     | what it holds |
//! |--------------|-------------------------------------------|----------|---------------|
//! | `enforced`   | daddr                                     | hash     | servers with an active firewall; its counters are the packets dropped per server |
//! | `exact`      | daddr . l4proto . dport                   | hash     | tcp/udp rules for one port from anywhere (the common case) |
//! | `ports`      | daddr . l4proto . dport-range . saddr-net | interval | tcp/udp rules with a port range or sources |
//! | `icmp`       | daddr . saddr-net                         | interval | icmp rules (ICMP for IPv4, ICMPv6 for IPv6) |
//! | `all`        | daddr . saddr-net                         | interval | `any` rules without a port: every protocol |
//!
//! The chain (hook forward; family `inet` on a routed gateway, `bridge` on a
//! hypervisor's bridge): replies of known connections pass, invalid packets to an
//! enforced server drop, a packet that one of the accept sets holds passes,
//! ICMPv6 neighbour discovery passes, and whatever is left to an `enforced`
//! address drops. Traffic to any other address is never looked at again, and
//! the server's own outbound traffic is not either (its destination is not an
//! enforced server; the replies are established). What `model::evaluate` says
//! for `server_ruleset(rules)` and an inbound packet is what this table does.
//!
//! **Why two tcp/udp sets.** nft's userspace spends most of a full load on
//! interval sets (and the kernel's `pipapo` backend on inserting into them);
//! a rule "22/tcp from anywhere" is an exact key and goes into a hash set, which
//! loads several times faster. The benchmark `snapshot_apply` measures both.
//!
//! **Disjoint intervals.** The kernel refuses overlapping elements in a
//! concatenated interval set, and overlapping rules are normal (two firewalls
//! both open 22; `80-90` and `85` from one network). Per destination address and
//! protocol, rules that overlap are rewritten into disjoint pieces (sources are
//! prefixes, so they nest or are disjoint: a network with holes for the more
//! specific ones; port ranges are split where they cross). Each piece is owned by
//! the first rule (in policy order) that covers it, so every accepted packet is
//! counted once, to one rule.
//!
//! **Counters.** Every set has a `counter` statement, so every element carries
//! its own counter (see [`netfilter::nft::json_with_set_counters`]); [`Owner`] maps it back to the server
//! and rule (`None`: the server's dropped packets).
//!
//! **Bridge mode** needs connection tracking on the bridge
//! (`nf_conntrack_bridge`); on a kernel without it, mode `forward` with
//! `br_netfilter` filters bridged traffic through the same `inet` table.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use model::network::sync::ServerPolicy;
use model::network::NetworkProtocol;
use model::PortRange;
use netfilter::expressions::{
    self, addr_value, counter, ct_state, element_value, matches, meta, neighbour_discovery,
    net_value, payload, ports_value, proto_value,
};
use netfilter::readback::{self, KeyPart};
use nftables::expr::{self, Expression};
use nftables::schema::{self, NfCmd, NfListObject, NfObject, SetFlag, SetType, SetTypeValue};
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

/// The default name of the edge's table.
pub const TABLE: &str = "portwall_edge";
/// The one base chain of the table.
pub const CHAIN: &str = "forward";
/// Priority of the forward chain (filter).
pub const PRIORITY: i32 = 0;

/// Where the edge sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A routed gateway: table `inet portwall_edge`, hook forward.
    Forward,
    /// A hypervisor's bridge: table `bridge portwall_edge`, hook forward.
    Bridge,
}

impl Mode {
    pub fn family(self) -> NfFamily {
        match self {
            Mode::Forward => NfFamily::INet,
            Mode::Bridge => NfFamily::Bridge,
        }
    }
    /// The family as `nft` spells it.
    pub fn family_name(self) -> &'static str {
        match self {
            Mode::Forward => "inet",
            Mode::Bridge => "bridge",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Forward => "forward",
            Mode::Bridge => "bridge",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "forward" => Ok(Mode::Forward),
            "bridge" => Ok(Mode::Bridge),
            other => Err(format!(
                "'{other}' is not a mode: forward (a routed gateway) or bridge (a hypervisor's bridge)"
            )),
        }
    }
}

/// The table the edge owns: its family and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub mode: Mode,
    pub name: String,
}

impl TableSpec {
    pub fn new(mode: Mode) -> TableSpec {
        TableSpec {
            mode,
            name: TABLE.to_string(),
        }
    }
}

/// One of the table's sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SetId {
    EnforcedV4,
    EnforcedV6,
    ExactV4,
    ExactV6,
    PortsV4,
    PortsV6,
    IcmpV4,
    IcmpV6,
    AllV4,
    AllV6,
}

impl SetId {
    pub const ALL: [SetId; 10] = [
        SetId::EnforcedV4,
        SetId::EnforcedV6,
        SetId::ExactV4,
        SetId::ExactV6,
        SetId::PortsV4,
        SetId::PortsV6,
        SetId::IcmpV4,
        SetId::IcmpV6,
        SetId::AllV4,
        SetId::AllV6,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SetId::EnforcedV4 => "enforced_v4",
            SetId::EnforcedV6 => "enforced_v6",
            SetId::ExactV4 => "exact_v4",
            SetId::ExactV6 => "exact_v6",
            SetId::PortsV4 => "ports_v4",
            SetId::PortsV6 => "ports_v6",
            SetId::IcmpV4 => "icmp_v4",
            SetId::IcmpV6 => "icmp_v6",
            SetId::AllV4 => "all_v4",
            SetId::AllV6 => "all_v6",
        }
    }

    pub fn from_name(name: &str) -> Option<SetId> {
        SetId::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn is_v6(self) -> bool {
        matches!(
            self,
            SetId::EnforcedV6 | SetId::ExactV6 | SetId::PortsV6 | SetId::IcmpV6 | SetId::AllV6
        )
    }

    /// Interval sets (CIDRs, port ranges) are `pipapo` sets in the kernel.
    pub fn interval(self) -> bool {
        matches!(
            self,
            SetId::PortsV4
                | SetId::PortsV6
                | SetId::IcmpV4
                | SetId::IcmpV6
                | SetId::AllV4
                | SetId::AllV6
        )
    }

    fn types(self) -> Vec<SetType> {
        let addr = if self.is_v6() {
            SetType::Ipv6Addr
        } else {
            SetType::Ipv4Addr
        };
        match self {
            SetId::EnforcedV4 | SetId::EnforcedV6 => vec![addr],
            SetId::ExactV4 | SetId::ExactV6 => vec![addr, SetType::InetProto, SetType::InetService],
            SetId::PortsV4 | SetId::PortsV6 => {
                vec![addr, SetType::InetProto, SetType::InetService, addr]
            }
            SetId::IcmpV4 | SetId::IcmpV6 | SetId::AllV4 | SetId::AllV6 => vec![addr, addr],
        }
    }

    fn enforced(v6: bool) -> SetId {
        if v6 {
            SetId::EnforcedV6
        } else {
            SetId::EnforcedV4
        }
    }
}

impl fmt::Display for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The key of a set element.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Key {
    /// `enforced_*`.
    Addr { daddr: IpAddr },
    /// `exact_*`.
    Exact { daddr: IpAddr, proto: u8, port: u16 },
    /// `ports_*`.
    Ports {
        daddr: IpAddr,
        proto: u8,
        ports: PortRange,
        source: IpNet,
    },
    /// `icmp_*` and `all_*`.
    Source { daddr: IpAddr, source: IpNet },
}

impl Key {
    pub fn daddr(&self) -> IpAddr {
        match self {
            Key::Addr { daddr }
            | Key::Exact { daddr, .. }
            | Key::Ports { daddr, .. }
            | Key::Source { daddr, .. } => *daddr,
        }
    }
}

/// Whose counter an element is: a rule's accepted packets, or (`rule_id` None)
/// a server's dropped packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owner {
    pub server_id: i64,
    pub rule_id: Option<i64>,
}

/// One set element.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Element {
    pub set: SetId,
    pub key: Key,
    pub owner: Owner,
}

pub use netfilter::expressions::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

fn any_net(v6: bool) -> IpNet {
    if v6 {
        IpNet::V6(Ipv6Net::default())
    } else {
        IpNet::V4(Ipv4Net::default())
    }
}

/// A rule's piece of the space of one destination address: a range of one
/// dimension (ports, or nothing) times a source prefix, with the rule that owns
/// it and its position in policy order.
#[derive(Debug, Clone, Copy)]
struct Rect {
    lo: u16,
    hi: u16,
    net: IpNet,
    order: usize,
    owner: Owner,
}

fn nets_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// `net` minus the prefixes in `holes` (all inside `net`, none equal to it after
/// removing duplicates), as disjoint prefixes.
fn subtract(net: IpNet, holes: &[IpNet]) -> Vec<IpNet> {
    let inside: Vec<IpNet> = holes
        .iter()
        .copied()
        .filter(|h| nets_overlap(&net, h))
        .collect();
    if inside.is_empty() {
        return vec![net];
    }
    if inside.iter().any(|h| h.contains(&net)) {
        return Vec::new();
    }
    match net.subnets(net.prefix_len() + 1) {
        Ok(halves) => halves.flat_map(|half| subtract(half, &inside)).collect(),
        Err(_) => Vec::new(),
    }
}

/// Rewrites overlapping rectangles into disjoint ones covering the same union,
/// each owned by the first (lowest `order`) rectangle covering it.
fn disjoint(rects: Vec<Rect>) -> Vec<Rect> {
    let n = rects.len();
    if n <= 1 {
        return rects;
    }
    // Components of the overlap graph (union-find).
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for i in 0..n {
        for j in (i + 1)..n {
            let (a, b) = (&rects[i], &rects[j]);
            if a.lo <= b.hi && b.lo <= a.hi && nets_overlap(&a.net, &b.net) {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                if ri != rj {
                    parent[ri] = rj;
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<Rect>> = BTreeMap::new();
    for (i, r) in rects.iter().enumerate() {
        let root = find(&mut parent, i);
        groups.entry(root).or_default().push(*r);
    }
    let mut out = Vec::new();
    for (_, group) in groups {
        if group.len() == 1 {
            out.extend(group);
            continue;
        }
        let nets: BTreeSet<IpNet> = group.iter().map(|r| r.net).collect();
        for &net in &nets {
            // The part of `net` not inside a more specific prefix of the group.
            let holes: Vec<IpNet> = nets
                .iter()
                .copied()
                .filter(|h| *h != net && net.contains(h))
                .collect();
            let pieces = subtract(net, &holes);
            if pieces.is_empty() {
                continue;
            }
            // Rectangles covering that part: those whose prefix contains `net`.
            let covering: Vec<&Rect> = group.iter().filter(|r| r.net.contains(&net)).collect();
            let mut points: Vec<u32> = covering
                .iter()
                .flat_map(|r| [r.lo as u32, r.hi as u32 + 1])
                .collect();
            points.sort_unstable();
            points.dedup();
            let mut segments: Vec<(u16, u16, &Rect)> = Vec::new();
            for w in points.windows(2) {
                let (lo, hi) = (w[0], w[1] - 1);
                let first = covering
                    .iter()
                    .filter(|r| r.lo as u32 <= lo && hi <= r.hi as u32)
                    .min_by_key(|r| r.order);
                if let Some(r) = first {
                    match segments.last_mut() {
                        Some(last) if last.2.order == r.order && last.1 as u32 + 1 == lo => {
                            last.1 = hi as u16;
                        }
                        _ => segments.push((lo as u16, hi as u16, r)),
                    }
                }
            }
            for piece in pieces {
                for (lo, hi, r) in &segments {
                    out.push(Rect {
                        lo: *lo,
                        hi: *hi,
                        net: piece,
                        order: r.order,
                        owner: r.owner,
                    });
                }
            }
        }
    }
    out
}

/// The elements for one destination address, given the enforced servers that
/// have it (normally one; several only if the panel assigned an address twice,
/// and then their rules are united). Empty when no server enforces it.
pub fn compile_address(daddr: IpAddr, servers: &[&ServerPolicy]) -> Vec<Element> {
    let mut servers: Vec<&ServerPolicy> = servers.iter().copied().filter(|s| s.enforced).collect();
    if servers.is_empty() {
        return Vec::new();
    }
    servers.sort_by_key(|s| s.server_id);
    let v6 = daddr.is_ipv6();
    let mut out = vec![Element {
        set: SetId::enforced(v6),
        key: Key::Addr { daddr },
        owner: Owner {
            server_id: servers[0].server_id,
            rule_id: None,
        },
    }];
    let mut exact: BTreeMap<(u8, u16), Owner> = BTreeMap::new();
    let mut ports: BTreeMap<u8, Vec<Rect>> = BTreeMap::new();
    let mut icmp: Vec<Rect> = Vec::new();
    let mut all: Vec<Rect> = Vec::new();
    let mut order = 0usize;
    for server in &servers {
        for rule in &server.rules {
            order += 1;
            let owner = Owner {
                server_id: server.server_id,
                rule_id: Some(rule.rule_id),
            };
            let sources: Vec<IpNet> = if rule.sources.is_empty() {
                vec![any_net(v6)]
            } else {
                rule.sources
                    .iter()
                    .filter(|n| n.addr().is_ipv6() == v6)
                    .map(|n| n.trunc())
                    .collect()
            };
            let rect = |lo: u16, hi: u16, net: IpNet| Rect {
                lo,
                hi,
                net,
                order,
                owner,
            };
            let protos: &[u8] = match (rule.protocol, rule.ports) {
                (NetworkProtocol::Tcp, Some(_)) => &[PROTO_TCP],
                (NetworkProtocol::Udp, Some(_)) => &[PROTO_UDP],
                (NetworkProtocol::Any, Some(_)) => &[PROTO_TCP, PROTO_UDP],
                (NetworkProtocol::Icmp, _) => {
                    icmp.extend(sources.iter().map(|n| rect(0, 0, *n)));
                    continue;
                }
                (NetworkProtocol::Any, None) => {
                    all.extend(sources.iter().map(|n| rect(0, 0, *n)));
                    continue;
                }
                // tcp/udp without ports: ServerPolicy::validate refuses them.
                (NetworkProtocol::Tcp | NetworkProtocol::Udp, None) => continue,
            };
            let range = rule.ports.expect("matched Some above");
            for &proto in protos {
                for net in &sources {
                    if net.prefix_len() == 0 && range.start == range.end {
                        exact.entry((proto, range.start)).or_insert(owner);
                    } else {
                        ports
                            .entry(proto)
                            .or_default()
                            .push(rect(range.start, range.end, *net));
                    }
                }
            }
        }
    }
    let (exact_set, ports_set, icmp_set, all_set) = if v6 {
        (SetId::ExactV6, SetId::PortsV6, SetId::IcmpV6, SetId::AllV6)
    } else {
        (SetId::ExactV4, SetId::PortsV4, SetId::IcmpV4, SetId::AllV4)
    };
    for ((proto, port), owner) in exact {
        out.push(Element {
            set: exact_set,
            key: Key::Exact { daddr, proto, port },
            owner,
        });
    }
    for (proto, rects) in ports {
        for r in disjoint(rects) {
            out.push(Element {
                set: ports_set,
                key: Key::Ports {
                    daddr,
                    proto,
                    ports: PortRange {
                        start: r.lo,
                        end: r.hi,
                    },
                    source: r.net,
                },
                owner: r.owner,
            });
        }
    }
    for (set, rects) in [(icmp_set, icmp), (all_set, all)] {
        for r in disjoint(rects) {
            out.push(Element {
                set,
                key: Key::Source {
                    daddr,
                    source: r.net,
                },
                owner: r.owner,
            });
        }
    }
    out.sort();
    out
}

/// Every element for a set of policies, grouped by destination address.
pub fn compile_all<'a>(
    servers: impl IntoIterator<Item = &'a ServerPolicy>,
) -> HashMap<IpAddr, Vec<Element>> {
    let mut by_addr: HashMap<IpAddr, Vec<&ServerPolicy>> = HashMap::new();
    for s in servers.into_iter().filter(|s| s.enforced) {
        let mut seen = HashSet::new();
        for a in &s.addresses {
            if seen.insert(*a) {
                by_addr.entry(*a).or_default().push(s);
            }
        }
    }
    by_addr
        .into_iter()
        .map(|(a, servers)| (a, compile_address(a, &servers)))
        .collect()
}

/// The element changes that turn `old` into `new` (both for the same
/// addresses): keys to remove and elements to add. An element whose key stays
/// but whose owner changes is neither: the kernel keeps it and its counter.
pub fn diff(old: &[Element], new: &[Element]) -> (Vec<(SetId, Key)>, Vec<Element>) {
    let old_keys: HashSet<(SetId, &Key)> = old.iter().map(|e| (e.set, &e.key)).collect();
    let new_keys: HashSet<(SetId, &Key)> = new.iter().map(|e| (e.set, &e.key)).collect();
    let removed = old
        .iter()
        .filter(|e| !new_keys.contains(&(e.set, &e.key)))
        .map(|e| (e.set, e.key.clone()))
        .collect();
    let added = new
        .iter()
        .filter(|e| !old_keys.contains(&(e.set, &e.key)))
        .cloned()
        .collect();
    (removed, added)
}

// ---- nftables values -------------------------------------------------------

/// The element's value as nft reads it.
pub fn key_expr(key: &Key) -> Expression<'static> {
    element_value(match key {
        Key::Addr { daddr } => vec![addr_value(*daddr)],
        Key::Exact { daddr, proto, port } => vec![
            addr_value(*daddr),
            proto_value(*proto),
            Expression::Number(*port as u32),
        ],
        Key::Ports {
            daddr,
            proto,
            ports,
            source,
        } => vec![
            addr_value(*daddr),
            proto_value(*proto),
            ports_value(ports),
            net_value(source),
        ],
        Key::Source { daddr, source } => vec![addr_value(*daddr), net_value(source)],
    })
}

fn in_set(left: Vec<Expression<'static>>, set: SetId) -> Statement<'static> {
    expressions::in_set(left, set.name())
}

/// One rule of the chain: its comment (how readback recognises it) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRule {
    pub comment: &'static str,
    pub stmts: Vec<Statement<'static>>,
}

/// The fixed rules of the chain, in order.
pub fn chain_rules() -> Vec<ChainRule> {
    let mut rules = vec![ChainRule {
        comment: "pw-edge:established",
        stmts: vec![
            ct_state(&["established", "related"]),
            counter(),
            Statement::Accept(None),
        ],
    }];
    for (v6, ip, comment) in [
        (false, "ip", "pw-edge:invalid-v4"),
        (true, "ip6", "pw-edge:invalid-v6"),
    ] {
        rules.push(ChainRule {
            comment,
            stmts: vec![
                ct_state(&["invalid"]),
                in_set(vec![payload(ip, "daddr")], SetId::enforced(v6)),
                Statement::Drop(None),
            ],
        });
    }
    for v6 in [false, true] {
        let ip = if v6 { "ip6" } else { "ip" };
        let (exact, ports, icmp, all, icmp_proto) = if v6 {
            (
                SetId::ExactV6,
                SetId::PortsV6,
                SetId::IcmpV6,
                SetId::AllV6,
                PROTO_ICMPV6,
            )
        } else {
            (
                SetId::ExactV4,
                SetId::PortsV4,
                SetId::IcmpV4,
                SetId::AllV4,
                PROTO_ICMP,
            )
        };
        let daddr = || payload(ip, "daddr");
        let saddr = || payload(ip, "saddr");
        let l4 = || meta(expr::MetaKey::L4proto);
        let dport = || payload("th", "dport");
        rules.push(ChainRule {
            comment: if v6 {
                "pw-edge:exact-v6"
            } else {
                "pw-edge:exact-v4"
            },
            stmts: vec![
                in_set(vec![daddr(), l4(), dport()], exact),
                Statement::Accept(None),
            ],
        });
        rules.push(ChainRule {
            comment: if v6 {
                "pw-edge:ports-v6"
            } else {
                "pw-edge:ports-v4"
            },
            stmts: vec![
                in_set(vec![daddr(), l4(), dport(), saddr()], ports),
                Statement::Accept(None),
            ],
        });
        rules.push(ChainRule {
            comment: if v6 {
                "pw-edge:icmp-v6"
            } else {
                "pw-edge:icmp-v4"
            },
            stmts: vec![
                matches(l4(), proto_value(icmp_proto)),
                in_set(vec![daddr(), saddr()], icmp),
                Statement::Accept(None),
            ],
        });
        rules.push(ChainRule {
            comment: if v6 {
                "pw-edge:all-v6"
            } else {
                "pw-edge:all-v4"
            },
            stmts: vec![in_set(vec![daddr(), saddr()], all), Statement::Accept(None)],
        });
    }
    rules.push(ChainRule {
        comment: "pw-edge:neighbour-discovery",
        stmts: vec![neighbour_discovery(), Statement::Accept(None)],
    });
    for (v6, ip, comment) in [
        (false, "ip", "pw-edge:drop-v4"),
        (true, "ip6", "pw-edge:drop-v6"),
    ] {
        rules.push(ChainRule {
            comment,
            stmts: vec![
                in_set(vec![payload(ip, "daddr")], SetId::enforced(v6)),
                Statement::Drop(None),
            ],
        });
    }
    rules
}

fn set_object(
    table: &TableSpec,
    set: SetId,
    elements: Option<Vec<Expression<'static>>>,
) -> schema::Set<'static> {
    let types = set.types();
    let set_type = if types.len() == 1 {
        SetTypeValue::Single(types[0])
    } else {
        SetTypeValue::Concatenated(Cow::Owned(types))
    };
    schema::Set {
        family: table.mode.family(),
        table: Cow::Owned(table.name.clone()),
        name: Cow::Borrowed(set.name()),
        handle: None,
        set_type,
        policy: None,
        flags: set.interval().then(|| HashSet::from([SetFlag::Interval])),
        elem: elements.filter(|e| !e.is_empty()).map(Cow::Owned),
        timeout: None,
        gc_interval: None,
        size: None,
        comment: None,
    }
}

/// One transaction that replaces the table whole (or creates it) with these
/// elements.
pub fn full_batch<'a>(
    table: &TableSpec,
    elements: impl IntoIterator<Item = &'a Element>,
) -> schema::Nftables<'static> {
    let mut per_set: BTreeMap<SetId, Vec<Expression<'static>>> = BTreeMap::new();
    for e in elements {
        per_set.entry(e.set).or_default().push(key_expr(&e.key));
    }
    let family = table.mode.family();
    let t = schema::Table {
        family,
        name: Cow::Owned(table.name.clone()),
        handle: None,
    };
    // add + delete + add: replaces an existing table and works when there is none.
    let mut objs: Vec<NfObject<'static>> = vec![
        NfObject::CmdObject(NfCmd::Add(NfListObject::Table(t.clone()))),
        NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(t.clone()))),
        NfObject::CmdObject(NfCmd::Add(NfListObject::Table(t))),
    ];
    for set in SetId::ALL {
        objs.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Set(
            Box::new(set_object(table, set, per_set.remove(&set))),
        ))));
    }
    objs.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(
        schema::Chain {
            family,
            table: Cow::Owned(table.name.clone()),
            name: Cow::Borrowed(CHAIN),
            newname: None,
            handle: None,
            _type: Some(NfChainType::Filter),
            hook: Some(NfHook::Forward),
            prio: Some(PRIORITY),
            dev: None,
            policy: Some(NfChainPolicy::Accept),
        },
    ))));
    for rule in chain_rules() {
        objs.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(
            schema::Rule {
                family,
                table: Cow::Owned(table.name.clone()),
                chain: Cow::Borrowed(CHAIN),
                expr: Cow::Owned(rule.stmts),
                handle: None,
                index: None,
                comment: Some(Cow::Borrowed(rule.comment)),
            },
        ))));
    }
    schema::Nftables {
        objects: Cow::Owned(objs),
    }
}

/// One transaction that removes `removed` and adds `added` (removals first, so
/// a piece that moves never overlaps itself). Empty when nothing changes.
pub fn delta_batch(
    table: &TableSpec,
    removed: &[(SetId, Key)],
    added: &[Element],
) -> schema::Nftables<'static> {
    let mut del: BTreeMap<SetId, Vec<Expression<'static>>> = BTreeMap::new();
    for (set, key) in removed {
        del.entry(*set).or_default().push(key_expr(key));
    }
    let mut add: BTreeMap<SetId, Vec<Expression<'static>>> = BTreeMap::new();
    for e in added {
        add.entry(e.set).or_default().push(key_expr(&e.key));
    }
    let element = |set: SetId, elem: Vec<Expression<'static>>| schema::Element {
        family: table.mode.family(),
        table: Cow::Owned(table.name.clone()),
        name: Cow::Borrowed(set.name()),
        elem: Cow::Owned(elem),
    };
    let mut objs = Vec::new();
    for (set, elems) in del {
        objs.push(NfObject::CmdObject(NfCmd::Delete(NfListObject::Element(
            element(set, elems),
        ))));
    }
    for (set, elems) in add {
        objs.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Element(
            element(set, elems),
        ))));
    }
    schema::Nftables {
        objects: Cow::Owned(objs),
    }
}

// ---- reading elements back ---------------------------------------------------

fn host(part: &KeyPart) -> Option<IpAddr> {
    match part {
        KeyPart::Net(n) if n.prefix_len() == n.max_prefix_len() => Some(n.addr()),
        _ => None,
    }
}

fn net(part: &KeyPart) -> Option<IpNet> {
    match part {
        KeyPart::Net(n) => Some(*n),
        _ => None,
    }
}

fn proto(part: &KeyPart) -> Option<u8> {
    match part {
        KeyPart::Proto(p) => Some(*p),
        _ => None,
    }
}

fn ports(part: &KeyPart) -> Option<PortRange> {
    match part {
        KeyPart::Ports(r) => Some(*r),
        _ => None,
    }
}

/// Decodes an element of `set` from its key as the kernel holds it.
pub fn decode_key(set: SetId, parts: &[KeyPart]) -> Option<Key> {
    match (set, parts) {
        (SetId::EnforcedV4 | SetId::EnforcedV6, [a]) => Some(Key::Addr { daddr: host(a)? }),
        (SetId::ExactV4 | SetId::ExactV6, [a, p, port]) => {
            let port = ports(port)?;
            (port.start == port.end).then_some(())?;
            Some(Key::Exact {
                daddr: host(a)?,
                proto: proto(p)?,
                port: port.start,
            })
        }
        (SetId::PortsV4 | SetId::PortsV6, [a, p, r, s]) => Some(Key::Ports {
            daddr: host(a)?,
            proto: proto(p)?,
            ports: ports(r)?,
            source: net(s)?,
        }),
        (SetId::IcmpV4 | SetId::IcmpV6 | SetId::AllV4 | SetId::AllV6, [a, s]) => {
            Some(Key::Source {
                daddr: host(a)?,
                source: net(s)?,
            })
        }
        _ => None,
    }
}

/// An element as the kernel holds it: decoded key (None if it could not be
/// decoded) and counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelElement {
    pub set: SetId,
    pub key: Option<Key>,
    pub packets: u64,
    pub bytes: u64,
}

/// The edge table as read back ([`netfilter::readback::KernelTable`]), seen
/// through the edge's layout: its sets' elements as [`Key`]s.
#[derive(Debug, Clone, Default)]
pub struct KernelTable {
    /// The comments of the chain's rules, in order.
    pub chain_rules: Vec<String>,
    /// The packets of the `established` rule's counter.
    pub established_packets: u64,
    /// Sets the table has, by name (also those the edge does not know).
    pub set_names: Vec<String>,
    pub elements: Vec<KernelElement>,
}

impl KernelTable {
    pub fn from_table(t: &readback::KernelTable) -> KernelTable {
        let mut out = KernelTable::default();
        for rule in t.chains.iter().flat_map(|c| &c.rules) {
            let comment = rule.comment.clone().unwrap_or_default();
            if comment == "pw-edge:established" {
                out.established_packets = rule.packets;
            }
            out.chain_rules.push(comment);
        }
        let mut names: Vec<&String> = t.sets.keys().collect();
        names.sort();
        for name in names {
            out.set_names.push(name.clone());
            let Some(set) = SetId::from_name(name) else {
                continue;
            };
            for e in &t.sets[name] {
                out.elements.push(KernelElement {
                    set,
                    key: e.key.as_deref().and_then(|parts| decode_key(set, parts)),
                    packets: e.packets,
                    bytes: e.bytes,
                });
            }
        }
        out
    }

    /// How the kernel's table differs from `expected`; empty when they agree.
    pub fn differences<'a>(&self, expected: impl IntoIterator<Item = &'a Element>) -> Vec<String> {
        let mut out = Vec::new();
        let want_rules: Vec<&str> = chain_rules().iter().map(|r| r.comment).collect();
        if self.chain_rules != want_rules {
            out.push(format!(
                "chain {CHAIN} has rules {:?}, expected {:?}",
                self.chain_rules, want_rules
            ));
        }
        for set in SetId::ALL {
            if !self.set_names.iter().any(|n| n == set.name()) {
                out.push(format!("set {set} is missing"));
            }
        }
        let want: HashSet<(SetId, &Key)> = expected.into_iter().map(|e| (e.set, &e.key)).collect();
        let mut have: HashSet<(SetId, &Key)> = HashSet::new();
        let mut undecodable = 0usize;
        for e in &self.elements {
            match &e.key {
                Some(k) => {
                    have.insert((e.set, k));
                }
                None => undecodable += 1,
            }
        }
        let missing = want.iter().filter(|k| !have.contains(*k)).count();
        let extra = have.iter().filter(|k| !want.contains(*k)).count() + undecodable;
        if missing > 0 || extra > 0 {
            out.push(format!("{missing} element(s) missing, {extra} unexpected"));
        }
        out
    }
}
