//! Reading the table back from the kernel: to verify an apply, to find drift, and
//! to read counters.
//!
//! [`KernelTable`] is the table as typed values (chains, rules with their
//! comments and counters, set elements as [`KeyPart`]s), whichever program
//! read it; the host compares it with its compiled table ([`differences`]),
//! the edge with its elements (crate `edge`).

use crate::compile::{CompiledTable, Dim};
use ipnet::IpNet;
use model::PortRange;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// A rule as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRule {
    pub comment: Option<String>,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelChain {
    pub name: String,
    pub hook: Option<String>,
    pub prio: Option<i64>,
    pub rules: Vec<KernelRule>,
}

/// One part of a set element's key as the kernel holds it, decoded by the
/// set's key type: what both the host's and the edge's sets are made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// An address or a prefix (`ipv4_addr`, `ipv6_addr`).
    Net(IpNet),
    /// An IP protocol (`inet_proto`).
    Proto(u8),
    /// A port or a range of ports (`inet_service`).
    Ports(PortRange),
}

/// A key type of a set, as far as [`KeyPart`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartType {
    Addr,
    Proto,
    Service,
    /// A type portwall's sets do not have: its parts do not decode.
    Other,
}

impl PartType {
    /// The type as nft names it (`ipv4_addr`, ...).
    fn from_name(name: &str) -> PartType {
        match name {
            "ipv4_addr" | "ipv6_addr" => PartType::Addr,
            "inet_proto" => PartType::Proto,
            "inet_service" => PartType::Service,
            _ => PartType::Other,
        }
    }

    /// A part as `nft -j` prints it.
    fn part_from_json(self, v: &Value) -> Option<KeyPart> {
        match self {
            PartType::Addr => parse_net(v).map(KeyPart::Net),
            PartType::Proto => parse_proto(v).map(KeyPart::Proto),
            PartType::Service => parse_port_range(v).map(KeyPart::Ports),
            PartType::Other => None,
        }
    }
}

/// A set element as the kernel holds it: its key decoded into typed parts
/// (`None` when it does not decode) and its counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelElement {
    pub key: Option<Vec<KeyPart>>,
    pub packets: u64,
    pub bytes: u64,
}

/// The table as read from the kernel: over netlink
/// ([`crate::netlink::try_read_table`]) or from `nft -j list table`
/// ([`KernelTable::from_json`]), the same typed values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelTable {
    pub chains: Vec<KernelChain>,
    pub sets: HashMap<String, Vec<KernelElement>>,
}

fn counter_of(exprs: &[Value]) -> (u64, u64) {
    for e in exprs {
        if let Some(c) = e.get("counter") {
            return (
                c["packets"].as_u64().unwrap_or(0),
                c["bytes"].as_u64().unwrap_or(0),
            );
        }
    }
    (0, 0)
}

/// A key as `nft -j` prints it (a value, or a `concat` of values), decoded by
/// the set's key types.
fn key_from_json(types: &[PartType], val: &Value) -> Option<Vec<KeyPart>> {
    let parts: Vec<&Value> = match val.get("concat").and_then(Value::as_array) {
        Some(a) => a.iter().collect(),
        None => vec![val],
    };
    if parts.len() != types.len() {
        return None;
    }
    parts
        .iter()
        .zip(types)
        .map(|(v, t)| t.part_from_json(v))
        .collect()
}

impl KernelTable {
    /// Parses the output of `nft -j list table` (the `nft` binary's path).
    pub fn from_json(v: &Value) -> KernelTable {
        let mut t = KernelTable::default();
        let mut chain_index: HashMap<String, usize> = HashMap::new();
        for obj in v["nftables"].as_array().into_iter().flatten() {
            if let Some(c) = obj.get("chain") {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                chain_index.insert(name.clone(), t.chains.len());
                t.chains.push(KernelChain {
                    name,
                    hook: c["hook"].as_str().map(String::from),
                    prio: c["prio"].as_i64(),
                    rules: Vec::new(),
                });
            } else if let Some(r) = obj.get("rule") {
                let exprs = r["expr"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                let (packets, bytes) = counter_of(exprs);
                let rule = KernelRule {
                    comment: r["comment"].as_str().map(String::from),
                    packets,
                    bytes,
                };
                if let Some(&i) = r["chain"].as_str().and_then(|c| chain_index.get(c)) {
                    t.chains[i].rules.push(rule);
                }
            } else if let Some(s) = obj.get("set") {
                let name = s["name"].as_str().unwrap_or_default().to_string();
                let types: Vec<PartType> = match &s["type"] {
                    Value::Array(a) => a
                        .iter()
                        .map(|t| PartType::from_name(t.as_str().unwrap_or_default()))
                        .collect(),
                    t => vec![PartType::from_name(t.as_str().unwrap_or_default())],
                };
                let elems = s["elem"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| match e.get("elem") {
                        Some(inner) => KernelElement {
                            key: key_from_json(&types, &inner["val"]),
                            packets: inner["counter"]["packets"].as_u64().unwrap_or(0),
                            bytes: inner["counter"]["bytes"].as_u64().unwrap_or(0),
                        },
                        None => KernelElement {
                            key: key_from_json(&types, e),
                            packets: 0,
                            bytes: 0,
                        },
                    })
                    .collect();
                t.sets.insert(name, elems);
            }
        }
        t
    }
}

/// An address or prefix as `nft -j` prints a set element's part of it.
pub fn parse_net(v: &Value) -> Option<IpNet> {
    if let Some(s) = v.as_str() {
        return s.parse::<IpAddr>().ok().map(IpNet::from);
    }
    let p = v.get("prefix")?;
    let a: IpAddr = p.get("addr")?.as_str()?.parse().ok()?;
    IpNet::new(a, p.get("len")?.as_u64()? as u8).ok()
}

/// A port or port range as `nft -j` prints it.
pub fn parse_port_range(v: &Value) -> Option<PortRange> {
    if let Some(n) = v.as_u64() {
        let p = u16::try_from(n).ok()?;
        return PortRange::new(p, p);
    }
    let r = v.get("range")?.as_array()?;
    PortRange::new(
        u16::try_from(r.first()?.as_u64()?).ok()?,
        u16::try_from(r.get(1)?.as_u64()?).ok()?,
    )
}

/// An IP protocol as `nft -j` prints it: a name it knows or a number.
pub fn parse_proto(v: &Value) -> Option<u8> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
        Value::String(s) => crate::netlink::types::proto_number(s),
        _ => None,
    }
}

/// Decodes a kernel element's parts against the shape the set should have.
pub fn decode_element(parts: &[KeyPart], kinds: &[Dim]) -> Option<Vec<Dim>> {
    if parts.len() != kinds.len() {
        return None;
    }
    parts
        .iter()
        .zip(kinds)
        .map(|(part, template)| match (template, part) {
            (Dim::Source(_), KeyPart::Net(n)) => Some(Dim::Source(*n)),
            (Dim::Destination(_), KeyPart::Net(n)) => Some(Dim::Destination(*n)),
            (Dim::Proto(_), KeyPart::Proto(p)) => Some(Dim::Proto(*p)),
            (Dim::SourcePort(_), KeyPart::Ports(r)) => Some(Dim::SourcePort(*r)),
            (Dim::DestinationPort(_), KeyPart::Ports(r)) => Some(Dim::DestinationPort(*r)),
            _ => None,
        })
        .collect()
}

/// Element keys and counters of one expected set as read from the kernel.
pub fn decoded_elements(
    expected: &crate::compile::SetSpec,
    kernel: &[KernelElement],
) -> Vec<(Option<Vec<Dim>>, u64, u64)> {
    let template = expected.elements.first();
    kernel
        .iter()
        .map(|e| {
            let key = template
                .zip(e.key.as_deref())
                .and_then(|(t, parts)| decode_element(parts, &t.key));
            (key, e.packets, e.bytes)
        })
        .collect()
}

/// How the kernel's chains (name, and the comments of its rules in order:
/// what each rule stands for) differ from the compiled chains. Shared by the
/// JSON readback and the byte comparison over netlink.
pub(crate) fn chain_differences(
    expected: &CompiledTable,
    kernel: &[(&str, Vec<&str>)],
) -> Vec<String> {
    let mut out = Vec::new();
    for chain in &expected.chains {
        let Some((_, have)) = kernel.iter().find(|(name, _)| *name == chain.name) else {
            out.push(format!("chain {} is missing", chain.name));
            continue;
        };
        let want: Vec<String> = chain.rules.iter().map(|r| r.origin.comment()).collect();
        if want.iter().ne(have.iter()) {
            out.push(format!(
                "chain {} has {} rule(s) {:?}, expected {} {:?}",
                chain.name,
                have.len(),
                have,
                want.len(),
                want
            ));
        }
    }
    for (name, _) in kernel {
        if !expected.chains.iter().any(|c| c.name == *name) {
            out.push(format!("chain {name} was added outside portwall"));
        }
    }
    out
}

/// The differences between what was compiled and what the kernel holds; empty
/// when they agree.
pub fn differences(expected: &CompiledTable, kernel: &KernelTable) -> Vec<String> {
    let chains: Vec<(&str, Vec<&str>)> = kernel
        .chains
        .iter()
        .map(|k| {
            let comments = k
                .rules
                .iter()
                .map(|r| r.comment.as_deref().unwrap_or("(no comment)"));
            (k.name.as_str(), comments.collect())
        })
        .collect();
    let mut out = chain_differences(expected, &chains);
    for set in &expected.sets {
        let Some(kelems) = kernel.sets.get(&set.name) else {
            out.push(format!("set {} is missing", set.name));
            continue;
        };
        if set.list.as_ref().is_some_and(|l| !l.loaded) {
            continue;
        }
        // An element about to expire may or may not be there.
        let expiring = |e: &&crate::compile::Element| {
            e.until.is_some_and(crate::netlink::verify::about_to_expire)
        };
        let want: HashSet<&[Dim]> = set
            .elements
            .iter()
            .filter(|e| !expiring(e))
            .map(|e| e.key.as_slice())
            .collect();
        let gone: HashSet<&[Dim]> = set
            .elements
            .iter()
            .filter(expiring)
            .map(|e| e.key.as_slice())
            .collect();
        let decoded = decoded_elements(set, kelems);
        let have: HashSet<&[Dim]> = decoded
            .iter()
            .filter_map(|(k, _, _)| k.as_deref())
            .filter(|k| !gone.contains(k))
            .collect();
        let undecodable = decoded.iter().filter(|(k, _, _)| k.is_none()).count();
        let missing = want.iter().filter(|k| !have.contains(**k)).count();
        let extra = have.iter().filter(|k| !want.contains(**k)).count() + undecodable;
        if missing > 0 || extra > 0 {
            out.push(format!(
                "set {}: {missing} element(s) missing, {extra} unexpected",
                set.name
            ));
        }
    }
    for name in kernel.sets.keys() {
        // Meters of `limit` rules create their own dynamic sets.
        if !name.contains("_limit_") && !expected.sets.iter().any(|s| &s.name == name) {
            out.push(format!("set {name} was added outside portwall"));
        }
    }
    out
}
