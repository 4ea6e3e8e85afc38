//! Ruleset → one nftables table, as a typed value.
//!
//! Compilation is pure: a [`model::Ruleset`] goes in, a [`CompiledTable`] comes out,
//! and [`CompiledTable::full_batch`] turns it into one nftables JSON transaction.
//!
//! **Scale by lookup.** Within a direction, a run of consecutive rules with the same
//! action (and log flag) can be matched in any order, since any match gives the
//! same verdict. Each run becomes one named set per match *shape* (which of
//! interface, addresses, protocol and ports the rules constrain, and the address
//! family), and one rule per set: `meta l4proto . th dport @in_2 accept`. Matching
//! cost therefore does not grow with the number of rules. Sets whose elements are
//! all exact values are hash sets; CIDRs and port ranges make an interval set.
//! Two rules of one run whose elements overlap start a new run, so the kernel never
//! sees conflicting intervals and each packet is counted to the first rule that
//! matches it, as [`model::evaluate`] says.
//!
//! **Sized hash sets.** A set of exact values is given a size (its
//! [`SetSpec::capacity`]), and the kernel then builds it as a fixed-size hash
//! table instead of a resizable `rhashtable`. Measured on 100k elements: no
//! resizing while inserting (`rhashtable_insert_slow` was 9 % of an apply),
//! and a dump that walks plain bucket lists, cheaper than an `rhashtable`
//! walk and never inconsistent from a resize in progress. The size is also a
//! limit, so a capacity change is a structural change (a full replace, whose
//! new set is sized anew). Interval sets (`rbtree`, `pipapo`) have no such
//! choice and are left unsized.
//!
//! **Counters.** Every element carries its own counter, so the packets of each
//! model rule are the sum of its elements' counters. Rules that compile to a
//! plain nft rule (no lookup) carry a counter and a `pw:rule:N` comment; default
//! policies carry `pw:policy:DIR`.
//!
//! **Lists.** A rule that names a list (`from @office`) looks the address
//! up in the list's own set, one per family (`list_office_v4`, `_v6`:
//! interval sets that take timeouts, so a temporary entry is an element
//! change), next to its shape's set of the rule's other dimensions; such a
//! rule is a run of its own. A list's sets are compiled from
//! [`Ruleset::lists`] when it is loaded; when it is not ([`ListSet::loaded`]),
//! they carry no elements, an element delta leaves them alone, and a
//! replacement of the table is refused until the caller loads them
//! (`ListsNotLoaded`): a rule change never reads a million-entry list it does
//! not need, and never loads a table without its lists.
//!
//! **Temporary rules.** The elements of a rule with a deadline (`--for 30m`)
//! carry the time left as their kernel timeout, and their set the `timeout`
//! flag: the kernel ends them at the deadline whether or not portwall runs.
//!
//! **Routed rules match the connection as the client opened it.**
//!
//! A port that Docker (or any DNAT) publishes reaches the forward hook with
//! its destination rewritten to the container's address and port, so `th
//! dport 8080` would never match `deny routed 8080/tcp`. The model's packet
//! is the one the client sent, so the forward chain matches the conntrack
//! entry's *original* tuple: `ct original ip daddr` for destinations and `ct
//! original proto-dst` for destination ports. Without NAT both equal the
//! packet's own fields. nft 1.0.6 cannot put `ct original proto-dst` in a
//! concatenation, so a routed set leaves the destination port out of its key
//! and the lookup rule also looks the port up in a second set of its own. That
//! is exact because one model rule is a product of its lists: rules are only
//! grouped into a set when their port lists are equal (`A×P ∪ B×P = (A∪B)×P`).

use crate::expressions::{
    self, counter, ct_state, matches, meta, neighbour_discovery, net_value, original_ct, payload,
    ports_value, proto_value,
};
use ipnet::IpNet;
use model::builtins::{self, Switches};
use model::list::{Deadline, ListName};
use model::{Action, Direction, Logging, Policy, PortRange, Protocol, Rule, Ruleset};
use nftables::expr::{self, Expression, NamedExpression};
use nftables::schema::{self, NfCmd, NfListObject, NfObject, SetFlag, SetType, SetTypeValue};
use nftables::stmt::{self, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// The name of the OS firewall's table (family `inet`).
pub const TABLE: &str = "portwall";
/// Priority of the forward chain: before Docker's and libvirt's filter chains
/// (priority 0), so routed rules see published container ports first.
pub const FORWARD_PRIORITY: i32 = -1;
/// Suffix of the set that holds a routed lookup's original destination ports.
pub const ORIGINAL_PORTS_SUFFIX: &str = "_dport";
/// Log rate: enough to see what happens, too little to fill a disk in a flood.
pub const LOG_RATE_PER_SECOND: u32 = 5;
const REJECT_CHAIN: &str = "reject_packet";

/// A set element's key: at most five dimensions (source, destination,
/// protocol, source port, destination port), kept inline: compiling 100k
/// rules made a heap allocation (and a copy in a hash set) per key.
pub type Key = arrayvec::ArrayVec<Dim, 5>;

/// One dimension of a set element. Interfaces are not dimensions: nft 1.0.6
/// cannot read back `ifname` inside concatenated interval sets, so an interface
/// is matched by the lookup rule and is part of the set's [`Shape`] instead.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    Source(IpNet),
    Destination(IpNet),
    /// IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6).
    Proto(u8),
    SourcePort(PortRange),
    DestinationPort(PortRange),
}

impl Dim {
    fn kind(&self) -> DimKind {
        match self {
            Dim::Source(_) => DimKind::Source,
            Dim::Destination(_) => DimKind::Destination,
            Dim::Proto(_) => DimKind::Proto,
            Dim::SourcePort(_) => DimKind::SourcePort,
            Dim::DestinationPort(_) => DimKind::DestinationPort,
        }
    }
    fn is_interval(&self) -> bool {
        match self {
            Dim::Source(n) | Dim::Destination(n) => n.prefix_len() != n.max_prefix_len(),
            Dim::SourcePort(r) | Dim::DestinationPort(r) => r.start != r.end,
            _ => false,
        }
    }
    /// Whether two values of one dimension share a packet.
    fn overlaps(&self, other: &Dim) -> bool {
        match (self, other) {
            (Dim::Source(a), Dim::Source(b)) | (Dim::Destination(a), Dim::Destination(b)) => {
                a.contains(b) || b.contains(a)
            }
            (Dim::SourcePort(a), Dim::SourcePort(b))
            | (Dim::DestinationPort(a), Dim::DestinationPort(b)) => a.overlaps(b),
            (a, b) => a == b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum DimKind {
    Source,
    Destination,
    Proto,
    SourcePort,
    DestinationPort,
}

/// IP family of a shape's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Any,
    V4,
    V6,
}

/// Which dimensions a set has, its address family, and the interfaces its
/// lookup rule requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shape {
    kinds: arrayvec::ArrayVec<DimKind, 5>,
    family: Family,
    in_interface: Option<String>,
    out_interface: Option<String>,
    /// The chain's direction (a list as the destination of a routed rule is
    /// matched on the connection's original destination).
    direction: Direction,
    /// Routed rules only: the protocol and the destination ports as the
    /// client sent them, before any DNAT (see the module docs).
    original_ports: Option<(u8, Vec<PortRange>)>,
    /// `from @NAME`: the source is looked up in the list's set of the
    /// shape's family (see "Lists" in the module docs).
    source_list: Option<ListName>,
    /// `to @NAME`.
    destination_list: Option<ListName>,
}

impl Shape {
    /// The matches of the shape's rule besides its set lookup: the address
    /// family when no address says it (a protocol of one family only, such
    /// as igmp or 6in4), then the interfaces.
    fn shape_matches(&self) -> Vec<Statement<'static>> {
        let mut v = Vec::new();
        let addressed = self
            .kinds
            .iter()
            .any(|k| matches!(k, DimKind::Source | DimKind::Destination))
            || self.source_list.is_some()
            || self.destination_list.is_some();
        if !addressed && self.family != Family::Any {
            let nfproto = if self.family == Family::V6 {
                "ipv6"
            } else {
                "ipv4"
            };
            v.push(matches(
                meta(expr::MetaKey::Nfproto),
                Expression::String(Cow::Borrowed(nfproto)),
            ));
        }
        if let Some(i) = &self.in_interface {
            v.push(matches(
                meta(expr::MetaKey::Iifname),
                Expression::String(Cow::Owned(i.clone())),
            ));
        }
        if let Some(i) = &self.out_interface {
            v.push(matches(
                meta(expr::MetaKey::Oifname),
                Expression::String(Cow::Owned(i.clone())),
            ));
        }
        for (kind, list) in [
            (DimKind::Source, &self.source_list),
            (DimKind::Destination, &self.destination_list),
        ] {
            if let Some(l) = list {
                v.push(matches(
                    dim_expr(kind, self.family, self.direction),
                    Expression::String(Cow::Owned(format!("@{}", list_set_name(l, self.family)))),
                ));
            }
        }
        v
    }
}

/// The name of the set that holds a list's networks of one family.
pub fn list_set_name(list: &ListName, family: Family) -> String {
    let v = if family == Family::V6 { 6 } else { 4 };
    format!("{LIST_SET_PREFIX}{list}_v{v}")
}

/// How often the kernel collects a list's expired elements. It does so
/// when a transaction commits, walking the whole set: with the default of a
/// second, each change of an 830k-element list cost 260 ms of that walk.
/// An expired element matches nothing from its deadline on; collecting it
/// only frees its memory.
pub const LIST_GC_INTERVAL_SECONDS: u32 = 3600;

/// What the names of lists' sets start with (rule sets are named after
/// their chain: `in_1`, `forward_3_dport`).
pub const LIST_SET_PREFIX: &str = "list_";

/// Whether a set's elements carry counters. A list's do not: what a list
/// matched is what the rules naming it counted, and a counter on each of a
/// million elements doubled the kernel's time to load them (5.9 s of
/// system time instead of 3.2 s for 811k intervals, measured with `nft -f`).
pub fn set_has_counters(name: &str) -> bool {
    !name.starts_with(LIST_SET_PREFIX)
}

/// A set element: its key, the 0-based index of the model rule it came
/// from, and when the kernel is to remove it (a temporary rule or list
/// entry).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Element {
    pub key: Key,
    pub rule: usize,
    pub until: Option<Deadline>,
}

/// The set of an address list ([`list_set_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSet {
    pub name: ListName,
    /// Whether the list's entries were loaded for this compile. A rule
    /// change leaves lists alone: their sets then carry no elements, and an
    /// element delta or a comparison passes them over; replacing the table
    /// needs them loaded ([`CompiledTable::lists_unloaded`]).
    pub loaded: bool,
}

/// One named set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    pub name: String,
    pub shape: Shape,
    pub interval: bool,
    pub elements: Vec<Element>,
    /// Whether its element counters are the packets of model rules (false for
    /// a routed lookup's original-ports set, whose elements are shared).
    pub counts_rules: bool,
    /// Whether elements may carry a timeout (the set has the `timeout` flag).
    pub timeouts: bool,
    /// The list this set holds, if it is a list's set.
    pub list: Option<ListSet>,
}

impl SetSpec {
    /// The most elements a hash set may hold, given to the kernel as the
    /// set's size: its element count rounded up to a power of two, at least
    /// 256; `None` for interval sets. See "Sized hash sets" in the module
    /// docs.
    ///
    /// Headroom beyond that would buy nothing: the capacity is a function of
    /// the count, so an element change that stays within the power of two
    /// keeps the set (and fits), and one that crosses it replaces the set
    /// anyway. Spare capacity only costs: the kernel makes 4/3 of the size
    /// in buckets, and a dump walks every bucket.
    pub fn capacity(&self) -> Option<u32> {
        (!self.interval).then(|| {
            let n = u32::try_from(self.elements.len()).unwrap_or(u32::MAX / 2);
            n.next_power_of_two().max(256)
        })
    }
}

/// What a compiled nft rule stands for, so counters map back to model rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    Builtin(&'static str),
    /// A lookup in the named set.
    Lookup(String),
    /// The model rule with this 0-based index, compiled without a set.
    Rule(usize),
    Policy(Direction),
    Log,
}

impl Origin {
    pub fn comment(&self) -> String {
        match self {
            Origin::Builtin(b) => format!("pw:builtin:{b}"),
            Origin::Lookup(s) => format!("pw:set:{s}"),
            Origin::Rule(i) => format!("pw:rule:{}", i + 1),
            Origin::Policy(d) => format!("pw:policy:{}", d.as_str()),
            Origin::Log => "pw:log".to_string(),
        }
    }
}

/// What an origin tag read back from the kernel names (the counted kinds of
/// [`Origin::comment`]): a model rule (0-based), a default policy or a
/// built-in rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tagged<'a> {
    Rule(usize),
    Policy(Direction),
    Builtin(&'a str),
}

impl Tagged<'_> {
    /// Reads `pw:rule:N` (N from 1), `pw:policy:DIR` or `pw:builtin:NAME`.
    pub fn parse(tag: &str) -> Option<Tagged<'_>> {
        let mut parts = tag.splitn(3, ':');
        if parts.next() != Some("pw") {
            return None;
        }
        match (parts.next()?, parts.next()?) {
            ("rule", n) => Some(Tagged::Rule(n.parse::<usize>().ok()?.checked_sub(1)?)),
            ("policy", d) => Direction::ALL
                .iter()
                .find(|x| x.as_str() == d)
                .map(|d| Tagged::Policy(*d)),
            ("builtin", b) => Some(Tagged::Builtin(b)),
            _ => None,
        }
    }
}

/// One nft rule of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub origin: Origin,
    pub stmts: Vec<Statement<'static>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    pub name: String,
    pub hook: Option<(NfHook, i32)>,
    pub rules: Vec<RuleSpec>,
}

/// The whole compiled table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledTable {
    pub table: String,
    pub chains: Vec<ChainSpec>,
    pub sets: Vec<SetSpec>,
}

/// The parts of a table that an element-only change leaves alone.
#[derive(Debug, PartialEq, Eq)]
pub struct Structure<'a> {
    chains: &'a [ChainSpec],
    /// Name, shape, interval and timeout flags and capacity of each set: a
    /// change of capacity needs a new set, so the table is replaced.
    sets: Vec<(&'a str, &'a Shape, bool, bool, Option<u32>)>,
}

impl CompiledTable {
    pub fn structure(&self) -> Structure<'_> {
        Structure {
            chains: &self.chains,
            sets: self
                .sets
                .iter()
                .map(|s| {
                    (
                        s.name.as_str(),
                        &s.shape,
                        s.interval,
                        s.timeouts,
                        s.capacity(),
                    )
                })
                .collect(),
        }
    }

    /// Whether a list's set was compiled without its entries (see
    /// [`ListSet::loaded`]): the table can then be changed by an element
    /// delta only, not replaced.
    pub fn lists_unloaded(&self) -> bool {
        self.sets
            .iter()
            .any(|s| s.list.as_ref().is_some_and(|l| !l.loaded))
    }

    /// The number of set elements.
    pub fn element_count(&self) -> usize {
        self.sets.iter().map(|s| s.elements.len()).sum()
    }

    /// One transaction that replaces the table whole (or creates it), as nft JSON.
    ///
    /// Sets carry a `counter` statement, which gives every element its own
    /// counter. The `nftables` crate's `Set` has no field for it (and nft 1.0.6
    /// ignores per-element `counter` objects in JSON input), so it is added to
    /// the serialized value here, the one place the typed model falls short.
    pub fn full_batch(&self) -> serde_json::Value {
        let mut v =
            serde_json::to_value(self.full_batch_typed()).expect("the nft schema serializes");
        for obj in v["nftables"].as_array_mut().into_iter().flatten() {
            if let Some(set) = obj.get_mut("add").and_then(|a| a.get_mut("set")) {
                if set["name"].as_str().is_some_and(set_has_counters) {
                    set["stmt"] = serde_json::json!([{ "counter": null }]);
                }
            }
        }
        v
    }

    /// [`CompiledTable::full_batch`] as the `nftables` crate's typed value,
    /// without the sets' `counter` statement (the netlink backend adds it:
    /// [`crate::Kernel::apply_batch`]).
    pub fn full_batch_typed(&self) -> schema::Nftables<'static> {
        self.replace_batch_typed(true)
    }

    /// [`CompiledTable::full_batch_typed`], with the sets' elements only when
    /// `with_elements` (the netlink backend writes them from the compiled
    /// elements directly, without building an nft expression for each).
    pub fn replace_batch_typed(&self, with_elements: bool) -> schema::Nftables<'static> {
        let mut objs: Vec<NfObject<'static>> = Vec::new();
        let table = schema::Table {
            family: NfFamily::INet,
            name: Cow::Owned(self.table.clone()),
            handle: None,
        };
        // add + delete + add: replaces an existing table and works when there is none.
        objs.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Table(
            table.clone(),
        ))));
        objs.push(NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(
            table.clone(),
        ))));
        objs.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Table(table))));
        for set in &self.sets {
            objs.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Set(
                Box::new(self.set_object(set, with_elements)),
            ))));
        }
        for chain in &self.chains {
            objs.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(
                self.chain_object(chain),
            ))));
        }
        for chain in &self.chains {
            for rule in &chain.rules {
                objs.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(
                    self.rule_object(chain, rule),
                ))));
            }
        }
        schema::Nftables {
            objects: Cow::Owned(objs),
        }
    }

    /// One transaction that turns `old` into `self` by changing set elements only,
    /// or `None` when the structure differs and the table must be replaced.
    pub fn delta_batch(&self, old: &CompiledTable) -> Option<schema::Nftables<'static>> {
        if self.table != old.table || self.structure() != old.structure() {
            return None;
        }
        let mut objs = Vec::new();
        for (new, old) in self.sets.iter().zip(&old.sets) {
            // A list left unloaded on either side is unchanged by this change.
            let unloaded = |s: &SetSpec| s.list.as_ref().is_some_and(|l| !l.loaded);
            if unloaded(new) || unloaded(old) {
                continue;
            }
            // Compiling keeps the rules' order, so a change leaves long runs of
            // elements where they were: the common prefix and suffix are
            // compared in order, and only what lies between is hashed (a
            // one-rule change on 100k rules hashes one element, not 200k).
            // A set never holds a key twice, so a key between the runs on one
            // side cannot be in the runs of the other.
            let (o, n) = (old.elements.as_slice(), new.elements.as_slice());
            let same = |a: &&Element, b: &&Element| a.key == b.key && a.until == b.until;
            let prefix = o.iter().zip(n).take_while(|(a, b)| same(a, b)).count();
            let (o, n) = (&o[prefix..], &n[prefix..]);
            let suffix = o
                .iter()
                .rev()
                .zip(n.iter().rev())
                .take_while(|(a, b)| same(a, b))
                .count();
            let (o, n) = (&o[..o.len() - suffix], &n[..n.len() - suffix]);
            let (removed, added) = element_changes(o, n);
            let removed: Vec<Expression<'static>> =
                removed.into_iter().map(|e| element_value(&e.key)).collect();
            let added: Vec<Expression<'static>> =
                added.into_iter().filter_map(element_expr).collect();
            let elem = |v: Vec<Expression<'static>>| schema::Element {
                family: NfFamily::INet,
                table: Cow::Owned(self.table.clone()),
                name: Cow::Owned(new.name.clone()),
                elem: Cow::Owned(v),
            };
            if !removed.is_empty() {
                objs.push(NfObject::CmdObject(NfCmd::Delete(NfListObject::Element(
                    elem(removed),
                ))));
            }
            if !added.is_empty() {
                objs.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Element(
                    elem(added),
                ))));
            }
        }
        Some(schema::Nftables {
            objects: Cow::Owned(objs),
        })
    }

    fn set_object(&self, set: &SetSpec, with_elements: bool) -> schema::Set<'static> {
        let types: Vec<SetType> = set
            .shape
            .kinds
            .iter()
            .map(|k| set_type(*k, set.shape.family))
            .collect();
        let set_type = if types.len() == 1 {
            SetTypeValue::Single(types[0])
        } else {
            SetTypeValue::Concatenated(Cow::Owned(types))
        };
        let elem = (with_elements && !set.elements.is_empty())
            .then(|| Cow::Owned(set.elements.iter().filter_map(element_expr).collect()));
        let mut flags = HashSet::new();
        if set.interval {
            flags.insert(SetFlag::Interval);
        }
        if set.timeouts {
            flags.insert(SetFlag::Timeout);
        }
        schema::Set {
            family: NfFamily::INet,
            table: Cow::Owned(self.table.clone()),
            name: Cow::Owned(set.name.clone()),
            handle: None,
            set_type,
            policy: None,
            flags: (!flags.is_empty()).then_some(flags),
            elem,
            timeout: None,
            gc_interval: set.list.is_some().then_some(LIST_GC_INTERVAL_SECONDS),
            size: set.capacity(),
            comment: None,
        }
    }

    fn chain_object(&self, chain: &ChainSpec) -> schema::Chain<'static> {
        schema::Chain {
            family: NfFamily::INet,
            table: Cow::Owned(self.table.clone()),
            name: Cow::Owned(chain.name.clone()),
            newname: None,
            handle: None,
            _type: chain.hook.map(|_| NfChainType::Filter),
            hook: chain.hook.map(|(h, _)| h),
            prio: chain.hook.map(|(_, p)| p),
            dev: None,
            // The last rule of each base chain applies the default policy, with a
            // counter; the chain policy itself never decides.
            policy: chain.hook.map(|_| NfChainPolicy::Accept),
        }
    }

    fn rule_object(&self, chain: &ChainSpec, rule: &RuleSpec) -> schema::Rule<'static> {
        schema::Rule {
            family: NfFamily::INet,
            table: Cow::Owned(self.table.clone()),
            chain: Cow::Owned(chain.name.clone()),
            expr: Cow::Owned(rule.stmts.clone()),
            handle: None,
            index: None,
            comment: Some(Cow::Owned(rule.origin.comment())),
        }
    }
}

fn set_type(kind: DimKind, family: Family) -> SetType {
    match kind {
        DimKind::Source | DimKind::Destination => match family {
            Family::V6 => SetType::Ipv6Addr,
            _ => SetType::Ipv4Addr,
        },
        DimKind::Proto => SetType::InetProto,
        DimKind::SourcePort | DimKind::DestinationPort => SetType::InetService,
    }
}

/// The packet field a dimension matches.
fn dim_expr(kind: DimKind, family: Family, direction: Direction) -> Expression<'static> {
    let ip = if family == Family::V6 { "ip6" } else { "ip" };
    match kind {
        DimKind::Source => payload(ip, "saddr"),
        // See the module docs on routed rules.
        DimKind::Destination if direction == Direction::Routed => {
            original_ct(if family == Family::V6 {
                "ip6 daddr"
            } else {
                "ip daddr"
            })
        }
        DimKind::Destination => payload(ip, "daddr"),
        DimKind::Proto => meta(expr::MetaKey::L4proto),
        DimKind::SourcePort => payload("th", "sport"),
        DimKind::DestinationPort => payload("th", "dport"),
    }
}

fn dim_value(d: &Dim) -> Expression<'static> {
    match d {
        Dim::Source(n) | Dim::Destination(n) => net_value(n),
        Dim::Proto(p) => proto_value(*p),
        Dim::SourcePort(r) | Dim::DestinationPort(r) => ports_value(r),
    }
}

fn element_value(key: &[Dim]) -> Expression<'static> {
    expressions::element_value(key.iter().map(dim_value).collect())
}

/// The elements of `old` not in `new` and those of `new` not in `old`; an
/// element whose deadline changed is in both (removed and added again).
/// Sorted sides (a list's set: its ranges in address order) are merged in
/// one pass; others are hashed: at 830k elements the pass takes a few
/// milliseconds where hashing both sides took 700.
fn element_changes<'a>(
    old: &'a [Element],
    new: &'a [Element],
) -> (Vec<&'a Element>, Vec<&'a Element>) {
    let sorted = |v: &[Element]| v.windows(2).all(|w| w[0].key < w[1].key);
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    if sorted(old) && sorted(new) {
        let (mut i, mut j) = (0, 0);
        while i < old.len() && j < new.len() {
            match old[i].key.cmp(&new[j].key) {
                std::cmp::Ordering::Less => {
                    removed.push(&old[i]);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    added.push(&new[j]);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    if old[i].until != new[j].until {
                        removed.push(&old[i]);
                        added.push(&new[j]);
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        removed.extend(&old[i..]);
        added.extend(&new[j..]);
        return (removed, added);
    }
    let old_keys: HashSet<(&Key, Option<Deadline>)> =
        old.iter().map(|e| (&e.key, e.until)).collect();
    let new_keys: HashSet<(&Key, Option<Deadline>)> =
        new.iter().map(|e| (&e.key, e.until)).collect();
    removed.extend(
        old.iter()
            .filter(|e| !new_keys.contains(&(&e.key, e.until))),
    );
    added.extend(
        new.iter()
            .filter(|e| !old_keys.contains(&(&e.key, e.until))),
    );
    (removed, added)
}

/// An element as added to the kernel: with the timeout left until its
/// deadline; `None` once the deadline has passed.
fn element_expr(e: &Element) -> Option<Expression<'static>> {
    let value = element_value(&e.key);
    match e.until {
        None => Some(value),
        Some(d) => {
            let left = timeout_left(d)?;
            Some(Expression::Named(NamedExpression::Elem(expr::Elem {
                val: Box::new(value),
                timeout: Some(u32::try_from(left.as_secs().max(1)).unwrap_or(u32::MAX)),
                expires: None,
                comment: None,
                counter: None,
            })))
        }
    }
}

/// The time left until `deadline` by this machine's clock, `None` once it
/// has passed: what an element's kernel timeout is set to.
pub fn timeout_left(deadline: Deadline) -> Option<std::time::Duration> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (!deadline.passed(now)).then(|| deadline.left(now))
}

fn log(prefix: String) -> [Statement<'static>; 2] {
    [
        Statement::Limit(stmt::Limit {
            rate: LOG_RATE_PER_SECOND,
            rate_unit: None,
            per: Some(Cow::Borrowed("second")),
            burst: Some(10),
            burst_unit: None,
            inv: None,
        }),
        Statement::Log(Some(stmt::Log {
            prefix: Some(Cow::Owned(prefix)),
            group: None,
            snaplen: None,
            queue_threshold: None,
            level: None,
            flags: None,
        })),
    ]
}

fn verdict(action: Action) -> Statement<'static> {
    match action {
        Action::Allow | Action::Limit => Statement::Accept(None),
        Action::Deny => Statement::Drop(None),
        Action::Reject => Statement::Goto(stmt::JumpTarget {
            target: Cow::Borrowed(REJECT_CHAIN),
        }),
    }
}

/// The elements of one model rule, grouped by shape.
fn rule_elements(rule: &Rule) -> Vec<(Shape, Key)> {
    let mut out = Vec::with_capacity(1);
    let named = [rule.protocol.number()];
    let protos: &[Option<u8>] = match rule.protocol {
        Protocol::Any if !rule.source_ports.is_any() || !rule.destination_ports.is_any() => {
            &[Some(6), Some(17)]
        }
        _ => &named,
    };
    // Each value of a list, or one `None` for an empty list (any).
    fn each<T: Copy>(list: &[T]) -> impl Iterator<Item = Option<T>> + Clone + '_ {
        std::iter::once(None)
            .take(usize::from(list.is_empty()))
            .chain(list.iter().copied().map(Some))
    }
    // A list holds both families: a rule that names one is looked up in the
    // list's IPv4 set and in its IPv6 set, one shape each.
    let list_families: &[Family] = if rule.source_list.is_some() || rule.destination_list.is_some()
    {
        &[Family::V4, Family::V6]
    } else {
        &[Family::Any]
    };
    for s in each(&rule.source.0) {
        for d in each(&rule.destination.0) {
            for &lf in list_families {
                let net_family = |n: Option<IpNet>| match n {
                    Some(IpNet::V4(_)) => Family::V4,
                    Some(IpNet::V6(_)) => Family::V6,
                    None => Family::Any,
                };
                let proto_family = if rule.protocol.ipv4_only() {
                    Family::V4
                } else if rule.protocol == Protocol::Icmpv6 {
                    Family::V6
                } else {
                    Family::Any
                };
                let mut family = Family::Any;
                let mut conflict = false;
                for f in [net_family(s), net_family(d), lf, proto_family] {
                    match (family, f) {
                        (_, Family::Any) => {}
                        (Family::Any, f) => family = f,
                        (a, b) if a != b => conflict = true,
                        _ => {}
                    }
                }
                // Families that cannot meet (an IPv4 source and an IPv6
                // destination; a list's IPv6 set and an IPv4 address).
                if conflict {
                    continue;
                }
                for &p in protos {
                    // icmp (and igmp, 6in4) only exist in IPv4, icmpv6 only in IPv6.
                    if (rule.protocol.ipv4_only() && family == Family::V6)
                        || (p == Some(58) && family == Family::V4)
                    {
                        continue;
                    }
                    let routed = rule.direction == Direction::Routed;
                    // Ports imply TCP or UDP: `p` is set whenever there are ports.
                    let original_ports = match p {
                        Some(proto) if routed && !rule.destination_ports.is_any() => {
                            let mut v = rule.destination_ports.0.clone();
                            v.sort();
                            Some((proto, v))
                        }
                        _ => None,
                    };
                    let no_ports: &[PortRange] = &[];
                    let key_ports = each(if routed {
                        no_ports
                    } else {
                        &rule.destination_ports.0
                    });
                    for sp in each(&rule.source_ports.0) {
                        for dp in key_ports.clone() {
                            let mut key = Key::new();
                            if let Some(n) = s {
                                key.push(Dim::Source(n));
                            }
                            if let Some(n) = d {
                                key.push(Dim::Destination(n));
                            }
                            if let Some(p) = p {
                                key.push(Dim::Proto(p));
                            }
                            if let Some(r) = sp {
                                key.push(Dim::SourcePort(r));
                            }
                            if let Some(r) = dp {
                                key.push(Dim::DestinationPort(r));
                            }
                            let shape = Shape {
                                kinds: key.iter().map(Dim::kind).collect(),
                                family,
                                in_interface: rule.in_interface.clone(),
                                out_interface: rule.out_interface.clone(),
                                direction: rule.direction,
                                original_ports: original_ports.clone(),
                                source_list: rule.source_list.clone(),
                                destination_list: rule.destination_list.clone(),
                            };
                            out.push((shape, key));
                        }
                    }
                }
            }
        }
    }
    out
}

/// A run of consecutive same-action rules being collected into sets.
struct Run {
    action: Action,
    log: bool,
    /// Whether its rule names a list (such a rule is a run of its own).
    names_list: bool,
    /// A `limit` rule's rate (a limit rule is a run of its own).
    rate: model::Rate,
    sets: Vec<SetBuilder>,
    /// Rules with no dimension at all (every packet of the direction, or of an
    /// interface), compiled as plain rules.
    plain: Vec<(usize, Shape)>,
}

impl Run {
    fn conflicts(&mut self, shape: &Shape, key: &[Dim]) -> bool {
        self.sets
            .iter_mut()
            .find(|b| &b.shape == shape)
            .is_some_and(|b| b.overlaps(key))
    }
}

/// The elements of one set being built, indexed so that finding an element that
/// overlaps a new one costs a few lookups, not a scan: compiling 100k rules must
/// stay linear.
struct SetBuilder {
    shape: Shape,
    elements: Vec<Element>,
    /// The elements so far, by the hash of their key (a fast non-keyed hash:
    /// keys are our own rules): indexes into `elements`.
    exact: hashbrown::HashTable<u32>,
    /// Whether any element has a CIDR or port range.
    has_interval: bool,
    /// Whether any element is temporary.
    timeouts: bool,
    /// Elements by the network address of their first dimension, when that
    /// dimension is an address: (is IPv6, address) -> element indexes. Built
    /// only once an interval makes it needed (exact values overlap only when
    /// equal, which `exact` answers), up to `indexed` elements.
    by_first_addr: std::collections::BTreeMap<(bool, u128), Vec<usize>>,
    indexed: usize,
}

fn first_addr(key: &[Dim]) -> Option<IpNet> {
    match key.first() {
        Some(Dim::Source(n)) | Some(Dim::Destination(n)) => Some(*n),
        _ => None,
    }
}

fn addr_key(n: &IpNet) -> (bool, u128) {
    match n {
        IpNet::V4(v) => (false, u32::from(v.network()) as u128),
        IpNet::V6(v) => (true, u128::from(v.network())),
    }
}

impl SetBuilder {
    fn new(shape: Shape) -> SetBuilder {
        SetBuilder {
            shape,
            elements: Vec::new(),
            exact: hashbrown::HashTable::new(),
            has_interval: false,
            timeouts: false,
            by_first_addr: Default::default(),
            indexed: 0,
        }
    }

    /// The index of the element whose key is `key`, if any.
    fn find(&self, hash: u64, key: &[Dim]) -> Option<u32> {
        let elements = &self.elements;
        self.exact
            .find(hash, |&i| elements[i as usize].key.as_slice() == key)
            .copied()
    }

    fn insert(&mut self, key: Key, rule: usize, until: Option<Deadline>) {
        let hash = key_hash(&key);
        if self.find(hash, &key).is_some() {
            return;
        }
        self.timeouts |= until.is_some();
        self.has_interval |= key.iter().any(Dim::is_interval);
        let index = u32::try_from(self.elements.len()).expect("fewer than 2^32 elements");
        self.elements.push(Element { key, rule, until });
        let elements = &self.elements;
        self.exact
            .insert_unique(hash, index, |&i| key_hash(&elements[i as usize].key));
    }

    /// Brings `by_first_addr` up to date with every element.
    fn index(&mut self) {
        for (i, e) in self.elements.iter().enumerate().skip(self.indexed) {
            if let Some(n) = first_addr(&e.key) {
                self.by_first_addr.entry(addr_key(&n)).or_default().push(i);
            }
        }
        self.indexed = self.elements.len();
    }

    /// Whether an element shares a packet with `key`.
    fn overlaps(&mut self, key: &[Dim]) -> bool {
        if self.find(key_hash(key), key).is_some() {
            return true;
        }
        let new_interval = key.iter().any(Dim::is_interval);
        if !self.has_interval && !new_interval {
            // Exact values overlap only when equal.
            return false;
        }
        let Some(net) = first_addr(key) else {
            return self.elements.iter().any(|e| overlap(&e.key, key));
        };
        self.index();
        let all = |e: &Element| overlap(&e.key, key);
        // Elements whose first address lies inside `net` ...
        let (v6, start) = addr_key(&net);
        let end = match net {
            IpNet::V4(v) => u32::from(v.broadcast()) as u128,
            IpNet::V6(v) => u128::from(v.broadcast()),
        };
        let inside = self
            .by_first_addr
            .range((v6, start)..=(v6, end))
            .flat_map(|(_, ix)| ix);
        // ... and those whose first network contains `net`.
        let containing = (0..net.prefix_len()).filter_map(|len| {
            let sup = IpNet::new(net.addr(), len).ok()?.trunc();
            self.by_first_addr.get(&addr_key(&sup))
        });
        inside
            .chain(containing.flatten())
            .any(|&i| all(&self.elements[i]))
    }
}

/// The hash of a key in [`SetBuilder::exact`].
fn key_hash(key: &[Dim]) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(key)
}

/// Whether two keys of one shape share a packet: every dimension overlaps.
fn overlap(a: &[Dim], b: &[Dim]) -> bool {
    a.iter().zip(b).all(|(a, b)| a.overlaps(b))
}

/// Compiles `ruleset` into the table named `table` (family inet).
pub fn compile(ruleset: &Ruleset, table: &str) -> CompiledTable {
    let mut sets = Vec::new();
    let mut chains = Vec::new();
    for direction in Direction::ALL {
        let (chain_name, hook, prio) = match direction {
            Direction::In => ("input", NfHook::Input, 0),
            Direction::Out => ("output", NfHook::Output, 0),
            Direction::Routed => ("forward", NfHook::Forward, FORWARD_PRIORITY),
        };
        let mut rules = preamble(direction, &ruleset.builtins);
        if ruleset.logging == Logging::Full {
            let mut stmts = vec![ct_state(&["new"])];
            stmts.extend(log(format!("[portwall NEW {}] ", direction.as_str())));
            rules.push(RuleSpec {
                origin: Origin::Log,
                stmts,
            });
        }
        let mut run: Option<Run> = None;
        let mut set_counter = 0usize;
        let mut flush = |run: Option<Run>, rules: &mut Vec<RuleSpec>, sets: &mut Vec<SetSpec>| {
            let Some(run) = run else { return };
            for SetBuilder {
                shape,
                elements,
                timeouts,
                ..
            } in run.sets
            {
                set_counter += 1;
                let name = format!("{}_{}", direction.as_str(), set_counter);
                let interval = elements.iter().any(|e| e.key.iter().any(Dim::is_interval));
                let left = if shape.kinds.len() == 1 {
                    dim_expr(shape.kinds[0], shape.family, direction)
                } else {
                    Expression::Named(NamedExpression::Concat(
                        shape
                            .kinds
                            .iter()
                            .map(|k| dim_expr(*k, shape.family, direction))
                            .collect(),
                    ))
                };
                let mut lookup = shape.shape_matches();
                if let Some((proto, ports)) = &shape.original_ports {
                    // See the module docs on routed rules. Looked up before the
                    // counted set, so its element counters count only packets
                    // that match whole; after the protocol, which gives nft the
                    // type of `ct original proto-dst`.
                    let ports_name = format!("{name}{ORIGINAL_PORTS_SUFFIX}");
                    lookup.push(matches(meta(expr::MetaKey::L4proto), proto_value(*proto)));
                    lookup.push(matches(
                        original_ct("proto-dst"),
                        Expression::String(Cow::Owned(format!("@{ports_name}"))),
                    ));
                    let rule = elements.first().map_or(0, |e| e.rule);
                    sets.push(SetSpec {
                        name: ports_name,
                        shape: Shape {
                            kinds: [DimKind::DestinationPort].into_iter().collect(),
                            family: Family::Any,
                            in_interface: None,
                            out_interface: None,
                            direction,
                            original_ports: None,
                            source_list: None,
                            destination_list: None,
                        },
                        interval: ports.iter().any(|r| r.start != r.end),
                        elements: ports
                            .iter()
                            .map(|r| Element {
                                key: [Dim::DestinationPort(*r)].into_iter().collect(),
                                rule,
                                until: None,
                            })
                            .collect(),
                        counts_rules: false,
                        timeouts: false,
                        list: None,
                    });
                }
                lookup.push(matches(
                    left,
                    Expression::String(Cow::Owned(format!("@{name}"))),
                ));
                if run.log {
                    let mut stmts = lookup.clone();
                    stmts.extend(log(format!(
                        "[portwall {} {}] ",
                        run.action.as_str().to_uppercase(),
                        direction.as_str()
                    )));
                    rules.push(RuleSpec {
                        origin: Origin::Log,
                        stmts,
                    });
                }
                if run.action == Action::Limit {
                    rules.extend(limit_rules(&lookup, &name, shape.family, run.rate));
                }
                let mut stmts = lookup;
                stmts.extend([counter(), verdict(run.action)]);
                rules.push(RuleSpec {
                    origin: Origin::Lookup(name.clone()),
                    stmts,
                });
                sets.push(SetSpec {
                    name,
                    shape,
                    interval,
                    elements,
                    counts_rules: true,
                    timeouts,
                    list: None,
                });
            }
            for (index, shape) in run.plain {
                let lookup = shape.shape_matches();
                if run.log {
                    let mut stmts = lookup.clone();
                    stmts.extend(log(format!(
                        "[portwall {} {}] ",
                        run.action.as_str().to_uppercase(),
                        direction.as_str()
                    )));
                    rules.push(RuleSpec {
                        origin: Origin::Log,
                        stmts,
                    });
                }
                if run.action == Action::Limit {
                    rules.extend(limit_rules(
                        &lookup,
                        &format!("rule{}", index + 1),
                        Family::Any,
                        run.rate,
                    ));
                }
                let mut stmts = lookup;
                stmts.extend([counter(), verdict(run.action)]);
                rules.push(RuleSpec {
                    origin: Origin::Rule(index),
                    stmts,
                });
            }
        };
        for (index, rule) in ruleset
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.direction == direction)
        {
            let elements = rule_elements(rule);
            // A rule that names a list is a run of its own: its lookups are
            // in sets of their own, and a packet it matches must be counted
            // to it only if no earlier rule matched.
            let names_list = rule.lists().next().is_some();
            let same_run = run.as_mut().is_some_and(|r| {
                r.action == rule.action
                    && r.log == rule.log
                    && rule.action != Action::Limit
                    && !names_list
                    && !r.names_list
                    && !elements.iter().any(|(shape, key)| r.conflicts(shape, key))
            });
            if !same_run {
                flush(run.take(), &mut rules, &mut sets);
                run = Some(Run {
                    action: rule.action,
                    log: rule.log,
                    names_list,
                    rate: rule.limit_rate(),
                    sets: Vec::new(),
                    plain: Vec::new(),
                });
            }
            let r = run.as_mut().expect("a run is open");
            for (shape, key) in elements {
                if shape.kinds.is_empty() {
                    if !r.plain.iter().any(|(i, s)| *i == index && *s == shape) {
                        r.plain.push((index, shape));
                    }
                    continue;
                }
                match r.sets.iter_mut().find(|b| b.shape == shape) {
                    Some(b) => b.insert(key, index, rule.until),
                    None => {
                        let mut b = SetBuilder::new(shape);
                        b.insert(key, index, rule.until);
                        r.sets.push(b);
                    }
                }
            }
        }
        flush(run.take(), &mut rules, &mut sets);

        let policy = ruleset.defaults.get(direction);
        if policy != Policy::Allow && ruleset.logging != Logging::Off {
            rules.push(RuleSpec {
                origin: Origin::Log,
                stmts: log(format!("[portwall BLOCK {}] ", direction.as_str())).to_vec(),
            });
        }
        let final_verdict = match policy {
            Policy::Allow => Statement::Accept(None),
            Policy::Deny => Statement::Drop(None),
            Policy::Reject => Statement::Goto(stmt::JumpTarget {
                target: Cow::Borrowed(REJECT_CHAIN),
            }),
        };
        rules.push(RuleSpec {
            origin: Origin::Policy(direction),
            stmts: vec![counter(), final_verdict],
        });
        chains.push(ChainSpec {
            name: chain_name.to_string(),
            hook: Some((hook, prio)),
            rules,
        });
    }
    chains.push(ChainSpec {
        name: REJECT_CHAIN.to_string(),
        hook: None,
        rules: vec![
            RuleSpec {
                origin: Origin::Builtin("reject-tcp"),
                stmts: vec![
                    matches(
                        meta(expr::MetaKey::L4proto),
                        Expression::String(Cow::Borrowed("tcp")),
                    ),
                    Statement::Reject(Some(stmt::Reject::new(
                        Some(stmt::RejectType::TCPReset),
                        None,
                    ))),
                ],
            },
            RuleSpec {
                origin: Origin::Builtin("reject-other"),
                stmts: vec![Statement::Reject(Some(stmt::Reject::new(
                    Some(stmt::RejectType::ICMPX),
                    Some(nftables::types::RejectCode::PortUnreach),
                )))],
            },
        ],
    });
    sets.extend(list_sets(ruleset));
    CompiledTable {
        table: table.to_string(),
        chains,
        sets,
    }
}

/// The sets of the lists the rules name, in the order first named: two per
/// list (IPv4 and IPv6), interval sets that take timeouts, whether or not
/// an entry is temporary yet, so a temporary entry is an element change.
/// Each merged range of the list is its fewest CIDR blocks.
fn list_sets(ruleset: &Ruleset) -> Vec<SetSpec> {
    let mut named: Vec<&ListName> = Vec::new();
    for l in ruleset.rules.iter().flat_map(Rule::lists) {
        if !named.contains(&l) {
            named.push(l);
        }
    }
    let mut sets = Vec::with_capacity(named.len() * 2);
    for name in named {
        let loaded = ruleset.lists.get(name);
        for family in [Family::V4, Family::V6] {
            let elements = loaded
                .map(|l| {
                    l.segments()
                        .iter()
                        .filter(|s| {
                            matches!(
                                (&s.interval, family),
                                (model::list::Interval::V4 { .. }, Family::V4)
                                    | (model::list::Interval::V6 { .. }, Family::V6)
                            )
                        })
                        .flat_map(|s| {
                            s.interval.to_networks().into_iter().map(|n| Element {
                                key: [Dim::Source(n)].into_iter().collect(),
                                rule: 0,
                                until: s.until,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            sets.push(SetSpec {
                name: list_set_name(name, family),
                shape: Shape {
                    kinds: [DimKind::Source].into_iter().collect(),
                    family,
                    in_interface: None,
                    out_interface: None,
                    direction: Direction::In,
                    original_ports: None,
                    source_list: None,
                    destination_list: None,
                },
                interval: true,
                elements,
                counts_rules: false,
                timeouts: true,
                list: Some(ListSet {
                    name: name.clone(),
                    loaded: loaded.is_some(),
                }),
            });
        }
    }
    sets
}

/// The fixed rules every chain starts with, then the switched-on accepts of
/// [`model::builtins`]; [`model::evaluate`] defines the same.
fn preamble(direction: Direction, switches: &Switches) -> Vec<RuleSpec> {
    let mut rules = vec![RuleSpec {
        origin: Origin::Builtin("established"),
        stmts: vec![
            ct_state(&["established", "related"]),
            counter(),
            Statement::Accept(None),
        ],
    }];
    rules.extend(builtin_accepts(direction, switches, true));
    rules.push(RuleSpec {
        origin: Origin::Builtin("invalid"),
        stmts: vec![ct_state(&["invalid"]), counter(), Statement::Drop(None)],
    });
    let lo = match direction {
        Direction::In => Some(expr::MetaKey::Iifname),
        Direction::Out => Some(expr::MetaKey::Oifname),
        Direction::Routed => None,
    };
    if let Some(key) = lo {
        rules.push(RuleSpec {
            origin: Origin::Builtin("loopback"),
            stmts: vec![
                matches(meta(key), Expression::String(Cow::Borrowed("lo"))),
                counter(),
                Statement::Accept(None),
            ],
        });
        rules.push(RuleSpec {
            origin: Origin::Builtin("neighbour-discovery"),
            stmts: vec![neighbour_discovery(), counter(), Statement::Accept(None)],
        });
    }
    rules.extend(builtin_accepts(direction, switches, false));
    rules
}

/// The rules of the switched-on accepts of `direction` checked before the
/// invalid drop or after the fixed built-ins: one rule an ICMP type, each
/// counting under its switch's name.
fn builtin_accepts(
    direction: Direction,
    switches: &Switches,
    before_invalid: bool,
) -> impl Iterator<Item = RuleSpec> + '_ {
    builtins::switched_on(*switches, direction, before_invalid).flat_map(accept_rules)
}

fn accept_rules(a: &builtins::Accept) -> Vec<RuleSpec> {
    let (l3, icmp, nfproto) = match a.family {
        builtins::Family::V4 => ("ip", "icmp", "ipv4"),
        builtins::Family::V6 => ("ip6", "icmpv6", "ipv6"),
    };
    let net = |n: builtins::Net| {
        net_value(&IpNet::new(n.address, n.prefix).expect("a built-in network is valid"))
    };
    let mut base = vec![matches(
        meta(expr::MetaKey::Nfproto),
        Expression::String(Cow::Borrowed(nfproto)),
    )];
    if let Some(n) = a.destination {
        base.push(matches(payload(l3, "daddr"), net(n)));
    }
    if let Some(n) = a.source {
        base.push(matches(payload(l3, "saddr"), net(n)));
    }
    if let Some(h) = a.hop_limit {
        base.push(matches(
            payload("ip6", "hoplimit"),
            Expression::Number(h.into()),
        ));
    }
    let rule = |mut stmts: Vec<Statement<'static>>| {
        stmts.extend([counter(), Statement::Accept(None)]);
        RuleSpec {
            origin: Origin::Builtin(a.switch.as_str()),
            stmts,
        }
    };
    match a.transport {
        builtins::Transport::Icmp(types) => types
            .iter()
            .map(|t| {
                let mut stmts = base.clone();
                stmts.push(matches(
                    payload(icmp, "type"),
                    Expression::Number((*t).into()),
                ));
                rule(stmts)
            })
            .collect(),
        builtins::Transport::Udp {
            source_port,
            destination_port,
        } => {
            let mut stmts = base;
            stmts.push(matches(
                payload("udp", "dport"),
                Expression::Number(destination_port.into()),
            ));
            // The source port as conntrack's original tuple holds it (for a
            // new packet, the packet's own): nft merges the compares of two
            // adjacent header fields into one, which the read-back and the
            // oracle tests (netlink makes what nft makes) would not see as
            // the two fields written here.
            if let Some(p) = source_port {
                stmts.push(matches(
                    original_ct("proto-src"),
                    Expression::Number(p.into()),
                ));
            }
            vec![rule(stmts)]
        }
    }
}

/// `limit`: refuse a source's new connections over the rate, per address
/// family, as `ufw limit` does (ICMP port unreachable, for TCP too).
fn limit_rules(
    lookup: &[Statement<'static>],
    name: &str,
    family: Family,
    rate: model::Rate,
) -> Vec<RuleSpec> {
    let families = match family {
        Family::Any => vec![Family::V4, Family::V6],
        f => vec![f],
    };
    families
        .into_iter()
        .map(|f| {
            let fam = if f == Family::V6 { "v6" } else { "v4" };
            let mut stmts: Vec<Statement<'static>> = lookup.to_vec();
            stmts.extend([
                ct_state(&["new"]),
                meter(&format!("{name}_limit_{fam}"), f, rate),
                Statement::Reject(Some(stmt::Reject::new(
                    Some(stmt::RejectType::ICMPX),
                    Some(nftables::types::RejectCode::PortUnreach),
                ))),
            ]);
            RuleSpec {
                origin: Origin::Builtin("limit"),
                stmts,
            }
        })
        .collect()
}

/// A token bucket per source: `rate.connections` at once, refilled at
/// `rate.connections` per `rate.seconds`, in the coarsest of nft's units
/// (second, minute, hour, day) that holds the rate as a whole number
/// (rounded in days when none does).
fn meter(name: &str, family: Family, rate: model::Rate) -> Statement<'static> {
    let (n, t) = (u64::from(rate.connections), u64::from(rate.seconds));
    let (per, amount) = [
        ("second", 1u64),
        ("minute", 60),
        ("hour", 3600),
        ("day", 86400),
    ]
    .into_iter()
    .find(|(_, unit)| (n * unit) % t == 0)
    .map(|(p, unit)| (p, n * unit / t))
    .unwrap_or(("day", (n * 86400).div_ceil(t)));
    Statement::Meter(stmt::Meter {
        name: Cow::Owned(name.to_string()),
        key: dim_expr(DimKind::Source, family, Direction::In),
        stmt: Box::new(Statement::Limit(stmt::Limit {
            rate: u32::try_from(amount).unwrap_or(u32::MAX),
            rate_unit: None,
            per: Some(Cow::Borrowed(per)),
            burst: Some(rate.connections),
            burst_unit: None,
            inv: Some(true),
        })),
    })
}

/// Where each model rule's counters live: the set elements and nft rules it owns.
pub fn rule_sources(compiled: &CompiledTable) -> HashMap<usize, Vec<(String, Vec<Dim>)>> {
    let mut map: HashMap<usize, Vec<(String, Vec<Dim>)>> = HashMap::new();
    for s in compiled.sets.iter().filter(|s| s.counts_rules) {
        for e in &s.elements {
            map.entry(e.rule)
                .or_default()
                .push((s.name.clone(), e.key.to_vec()));
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{parse_rule, Services};
    use proptest::prelude::*;

    fn ruleset(pairs: &[(u16, u8)]) -> Ruleset {
        let services = Services::builtin();
        let mut rs = Ruleset::default();
        for (port, host) in pairs {
            let line = format!("allow {port}/tcp from 10.0.0.{host}");
            rs.rules.extend(parse_rule(&line, &services).unwrap());
        }
        rs
    }

    /// The elements a delta adds and deletes, as JSON texts, sorted.
    fn changes(delta: &schema::Nftables<'_>) -> (Vec<String>, Vec<String>) {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        for obj in delta.objects.iter() {
            let (into, e) = match obj {
                NfObject::CmdObject(NfCmd::Add(NfListObject::Element(e))) => (&mut added, e),
                NfObject::CmdObject(NfCmd::Delete(NfListObject::Element(e))) => (&mut removed, e),
                other => panic!("not an element change: {other:?}"),
            };
            into.extend(e.elem.iter().map(|x| serde_json::to_string(x).unwrap()));
        }
        added.sort();
        removed.sort();
        (added, removed)
    }

    fn keys(compiled: &CompiledTable) -> Vec<String> {
        let mut k: Vec<String> = compiled
            .sets
            .iter()
            .flat_map(|s| &s.elements)
            .map(|e| serde_json::to_string(&element_value(&e.key)).unwrap())
            .collect();
        k.sort();
        k
    }

    /// A protocol of one family keeps to it without an address to say so:
    /// `allow proto ipv6` (6in4) must not accept IPv6-in-IPv6 packets, whose
    /// next header is 41 too.
    #[test]
    fn one_family_protocols_match_their_family_only() {
        let services = Services::builtin();
        let lookup_of = |line: &str| -> String {
            let mut rs = Ruleset::default();
            rs.rules.extend(parse_rule(line, &services).unwrap());
            let t = compile(&rs, TABLE);
            let chain = t.chains.iter().find(|c| c.name == "input").unwrap();
            let rule = chain
                .rules
                .iter()
                .find(|r| matches!(r.origin, Origin::Lookup(_)))
                .unwrap_or_else(|| panic!("{line}: no lookup"));
            serde_json::to_string(&rule.stmts).unwrap()
        };
        for (line, family) in [
            ("allow proto ipv6 from any", Some("ipv4")),
            ("allow proto igmp from any", Some("ipv4")),
            ("allow proto icmp from any", Some("ipv4")),
            ("allow proto icmpv6 from any", Some("ipv6")),
            ("allow proto gre from any", None),
            ("allow proto esp from any", None),
        ] {
            let text = lookup_of(line);
            let names = text.contains("\"nfproto\"");
            match family {
                Some(f) => assert!(
                    names && text.contains(&format!("\"{f}\"")),
                    "{line}: {text}"
                ),
                None => assert!(!names, "{line}: {text}"),
            }
        }
    }

    proptest! {
        /// Whatever rules are removed, added or moved, the delta adds exactly
        /// the keys only the new table has and deletes those only the old one
        /// has (the prefix and suffix shortcut loses nothing).
        #[test]
        fn deltas_change_exactly_the_differing_elements(
            before in proptest::collection::btree_map(1024u16..1100, 1u8..250, 1..60),
            removals in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
            additions in proptest::collection::vec((2000u16..2100, 1u8..250, any::<prop::sample::Index>()), 0..5),
        ) {
            let before: Vec<(u16, u8)> = before.into_iter().collect();
            let mut after = before.clone();
            for r in removals {
                if !after.is_empty() {
                    after.remove(r.index(after.len()));
                }
            }
            for (port, host, at) in additions {
                after.insert(at.index(after.len() + 1), (port, host));
            }
            let (old, new) = (compile(&ruleset(&before), TABLE), compile(&ruleset(&after), TABLE));
            let Some(delta) = new.delta_batch(&old) else {
                // Only a change of structure goes without a delta: no set left
                // on one side, or a rule compiled outside its set (a key it
                // shares with an earlier rule, as when the same rule is added
                // twice) or back into it.
                prop_assert!(old.structure() != new.structure());
                return Ok(());
            };
            let (added, removed) = changes(&delta);
            let (k_old, k_new) = (keys(&old), keys(&new));
            let only_new: Vec<String> = k_new.iter().filter(|k| k_old.binary_search(k).is_err()).cloned().collect();
            let only_old: Vec<String> = k_old.iter().filter(|k| k_new.binary_search(k).is_err()).cloned().collect();
            prop_assert_eq!(added, only_new);
            prop_assert_eq!(removed, only_old);
        }
    }
}
