//! Kernel dumps → the JSON `nft -j list table` prints, for the subset of
//! expressions portwall uses: the listing the oracle tests compare with the
//! `nft` binary's.
//!
//! Rules come back as the kernel's expressions (`meta load`, `cmp`, `lookup`,
//! ...); they are turned back into nft statements the way nft's
//! `netlink_delinearize` does: registers are tracked, `cmp`s become matches,
//! and the dependencies nft adds (`meta nfproto ipv4` before `ip saddr`, `meta
//! l4proto ipv6-icmp` before `icmpv6 type`) are dropped again when the payload
//! expression that needed them follows. Set elements are decoded with the set's
//! key types; a plain interval set's boundaries are joined back into ranges and
//! prefixes.

use super::values::JsonValues;
use crate::netlink::decode::{
    be32, be64, cstr, data_value, dump, get, interval_ranges, name_z, prefix_len, set_elements,
    table_names, table_sets, KElem, KSet,
};
use crate::netlink::socket::{attrs, NfSocket};
use crate::netlink::types::*;
use crate::netlink::Error;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// `start..=end` as nft prints it: a value, a prefix (address types) or a range.
fn interval_value(t: DataType, start: &[u8], end: &[u8]) -> Value {
    if start == end {
        return t.format(start);
    }
    if t.prefixes() {
        if let Some(len) = prefix_len(start, end) {
            return json!({"prefix": {"addr": t.format(start), "len": len}});
        }
    }
    json!({"range": [t.format(start), t.format(end)]})
}

/// `{key: v}` without copying `v` (`json!` serializes a value it is given).
fn obj1(key: &str, v: Value) -> Value {
    let mut m = Map::with_capacity(1);
    m.insert(key.to_string(), v);
    Value::Object(m)
}

fn with_counter(val: Value, c: Option<(u64, u64)>) -> Value {
    match c {
        Some((packets, bytes)) => {
            let mut counter = Map::with_capacity(2);
            counter.insert("packets".into(), Value::from(packets));
            counter.insert("bytes".into(), Value::from(bytes));
            let mut e = Map::with_capacity(2);
            e.insert("val".into(), val);
            e.insert("counter".into(), Value::Object(counter));
            obj1("elem", Value::Object(e))
        }
        None => val,
    }
}

/// The elements of a set as nft prints them.
fn elements_json(set: &KSet, elems: Vec<KElem>) -> Vec<Value> {
    let concat = set.types.len() > 1;
    let interval = set.flags & NFT_SET_INTERVAL != 0;
    let field = |k: &[u8], off: usize, t: DataType| -> Vec<u8> {
        k.get(off..off + t.len()).unwrap_or(&[]).to_vec()
    };
    if interval && !concat {
        let t = set.types[0];
        return interval_ranges(t.len(), elems)
            .into_iter()
            .map(|(s, e, c)| with_counter(interval_value(t, &s, &e), c))
            .collect();
    }
    // nft sorts the elements of a set without intervals by their value: a
    // big-endian type as a big-endian number, anything else (a concatenation
    // included) as a host-endian (little-endian) one.
    let mut elems = elems;
    if !interval {
        let big = !concat && set.types[0].byteorder() == BYTEORDER_BIG;
        if big {
            elems.sort_by(|a, b| a.key.cmp(&b.key));
        } else {
            elems.sort_by(|a, b| a.key.iter().rev().cmp(b.key.iter().rev()));
        }
    }
    elems
        .into_iter()
        .map(|e| {
            let val = if concat {
                let mut off = 0;
                let mut parts = Vec::new();
                for t in &set.types {
                    let s = field(&e.key, off, *t);
                    let v = match &e.key_end {
                        Some(end) => interval_value(*t, &s, &field(end, off, *t)),
                        None => t.format(&s),
                    };
                    parts.push(v);
                    off += reg_space(t.len());
                }
                obj1("concat", Value::Array(parts))
            } else {
                let t = set.types[0];
                match &e.key_end {
                    Some(end) => interval_value(t, &e.key, end),
                    None => t.format(&e.key),
                }
            };
            with_counter(val, e.counter)
        })
        .collect()
}

// ---- rules ---------------------------------------------------------------------------

/// What a register holds.
#[derive(Debug, Clone)]
enum RegVal {
    Meta(u32),
    Payload { base: u32, offset: u32, len: u32 },
    Ct { key: u32, dir: Option<u8> },
    Masked(Box<RegVal>, Vec<u8>),
}

fn unit(reg: u32) -> u32 {
    if (1..=4).contains(&reg) {
        (reg - 1) * 4
    } else {
        reg.saturating_sub(8)
    }
}

struct Delin<'a> {
    family: u8,
    sets: &'a HashMap<String, KSet>,
    regs: HashMap<u32, RegVal>,
    out: Vec<Option<Value>>,
    net: Option<u8>,
    l4: Option<u8>,
    net_dep: Option<usize>,
    l4_dep: Option<usize>,
}

const META_KEYS: &[(u32, &str, DataType)] = &[
    (1, "protocol", DataType::EtherType),
    (3, "mark", DataType::Mark),
    (6, "iifname", DataType::Ifname),
    (7, "oifname", DataType::Ifname),
    (15, "nfproto", DataType::Nfproto),
    (16, "l4proto", DataType::InetProto),
];

const CT_KEYS: &[(u32, &str, DataType)] = &[
    (0, "state", DataType::CtState),
    (3, "mark", DataType::Mark),
    (7, "l3proto", DataType::Nfproto),
    (10, "protocol", DataType::InetProto),
    (11, "proto-src", DataType::InetService),
    (12, "proto-dst", DataType::InetService),
    (19, "ip saddr", DataType::Ipv4Addr),
    (20, "ip daddr", DataType::Ipv4Addr),
    (21, "ip6 saddr", DataType::Ipv6Addr),
    (22, "ip6 daddr", DataType::Ipv6Addr),
];

impl Delin<'_> {
    fn kill(&mut self, dep: Option<usize>) {
        if let Some(i) = dep {
            self.out[i] = None;
        }
    }

    /// The nft expression a register value stands for, and its type; drops the
    /// dependency the expression implies.
    fn resolve(&mut self, r: &RegVal) -> (Value, DataType) {
        match r {
            RegVal::Meta(k) => match META_KEYS.iter().find(|(n, _, _)| n == k) {
                Some((_, name, dt)) => (json!({"meta": {"key": name}}), *dt),
                None => (json!({"meta": {"key": k}}), DataType::Integer(4)),
            },
            RegVal::Ct { key, dir } => {
                let (name, dt) = CT_KEYS
                    .iter()
                    .find(|(n, _, _)| n == key)
                    .map(|(_, n, d)| (n.to_string(), *d))
                    .unwrap_or((key.to_string(), DataType::Integer(4)));
                let mut m = Map::new();
                m.insert("key".into(), json!(name));
                if let Some(d) = dir {
                    m.insert(
                        "dir".into(),
                        json!(if *d == 0 { "original" } else { "reply" }),
                    );
                }
                (obj1("ct", Value::Object(m)), dt)
            }
            RegVal::Payload { base, offset, len } => {
                let net = self.net.or(match self.family {
                    2 => Some(2),
                    10 => Some(10),
                    _ => None,
                });
                let found: Option<(&str, &str, DataType)> = match (base, net, self.l4) {
                    (1, Some(2), _) => match offset {
                        12 => Some(("ip", "saddr", DataType::Ipv4Addr)),
                        16 => Some(("ip", "daddr", DataType::Ipv4Addr)),
                        9 => Some(("ip", "protocol", DataType::InetProto)),
                        _ => None,
                    },
                    (1, Some(10), _) => match offset {
                        8 => Some(("ip6", "saddr", DataType::Ipv6Addr)),
                        24 => Some(("ip6", "daddr", DataType::Ipv6Addr)),
                        6 => Some(("ip6", "nexthdr", DataType::InetProto)),
                        7 => Some(("ip6", "hoplimit", DataType::Integer(1))),
                        _ => None,
                    },
                    (2, _, Some(p @ (6 | 17))) => {
                        let proto = if p == 6 { "tcp" } else { "udp" };
                        match offset {
                            0 => Some((proto, "sport", DataType::InetService)),
                            2 => Some((proto, "dport", DataType::InetService)),
                            _ => None,
                        }
                    }
                    (2, _, Some(1)) if *offset == 0 => Some(("icmp", "type", DataType::IcmpType)),
                    (2, _, Some(58)) if *offset == 0 => {
                        Some(("icmpv6", "type", DataType::Icmpv6Type))
                    }
                    (2, _, None) => match offset {
                        0 => Some(("th", "sport", DataType::InetService)),
                        2 => Some(("th", "dport", DataType::InetService)),
                        _ => None,
                    },
                    _ => None,
                };
                match found {
                    Some((proto, field, dt)) => {
                        if *base == 1 {
                            let d = self.net_dep.take();
                            self.kill(d);
                        } else if proto != "th" {
                            let d = self.l4_dep.take();
                            self.kill(d);
                            if proto.starts_with("icmp") {
                                let d = self.net_dep.take();
                                self.kill(d);
                            }
                        }
                        let dt = if (*len as usize) < dt.len() && !dt.prefixes() {
                            DataType::Integer(*len as u8)
                        } else {
                            dt
                        };
                        (json!({"payload": {"protocol": proto, "field": field}}), dt)
                    }
                    None => (
                        json!({"payload": {"base": match base { 0 => "ll", 1 => "nh", _ => "th" }, "offset": offset * 8, "len": len * 8}}),
                        DataType::Integer(*len as u8),
                    ),
                }
            }
            RegVal::Masked(inner, _) => self.resolve(inner),
        }
    }

    fn push_match(&mut self, op: &str, left: Value, right: Value) -> usize {
        self.out.push(Some(
            json!({"match": {"op": op, "left": left, "right": right}}),
        ));
        self.out.len() - 1
    }

    fn run(&mut self, exprs: &KExprs) -> Vec<Value> {
        let mut i = 0;
        while i < exprs.len() {
            let (name, a) = &exprs[i];
            let a: Vec<(u16, &[u8])> = a.iter().map(|(t, v)| (*t, v.as_slice())).collect();
            let u32a = |t: u16| get(&a, t).map(be32).unwrap_or(0);
            match name.as_str() {
                "meta" => {
                    self.regs.insert(unit(u32a(1)), RegVal::Meta(u32a(2)));
                }
                "payload" => {
                    self.regs.insert(
                        unit(u32a(1)),
                        RegVal::Payload {
                            base: u32a(2),
                            offset: u32a(3),
                            len: u32a(4),
                        },
                    );
                }
                "ct" => {
                    let dir = get(&a, 3).and_then(|v| v.first().copied());
                    self.regs
                        .insert(unit(u32a(1)), RegVal::Ct { key: u32a(2), dir });
                }
                "byteorder" => {}
                "bitwise" => {
                    let src = self.regs.get(&unit(u32a(1))).cloned();
                    let mask = get(&a, 4).map(data_value).unwrap_or_default();
                    if let Some(s) = src {
                        self.regs
                            .insert(unit(u32a(2)), RegVal::Masked(Box::new(s), mask));
                    }
                }
                "cmp" => {
                    let sreg = unit(u32a(1));
                    let op = u32a(2);
                    let data = get(&a, 3).map(data_value).unwrap_or_default();
                    let Some(left) = self.regs.get(&sreg).cloned() else {
                        i += 1;
                        continue;
                    };
                    // gte + lte on the same register: a range.
                    if op == 5 {
                        if let Some((n2, a2)) = exprs.get(i + 1) {
                            let a2: Vec<(u16, &[u8])> =
                                a2.iter().map(|(t, v)| (*t, v.as_slice())).collect();
                            if n2 == "cmp"
                                && get(&a2, 1).map(be32).map(unit) == Some(sreg)
                                && get(&a2, 2).map(be32) == Some(3)
                            {
                                let hi = get(&a2, 3).map(data_value).unwrap_or_default();
                                let (l, dt) = self.resolve(&left);
                                self.push_match(
                                    "==",
                                    l,
                                    json!({"range": [dt.format(&data), dt.format(&hi)]}),
                                );
                                i += 2;
                                continue;
                            }
                        }
                    }
                    self.cmp(left, op, &data);
                }
                "range" => {
                    let sreg = unit(u32a(1));
                    let op = if u32a(2) == 1 { "!=" } else { "==" };
                    let lo = get(&a, 3).map(data_value).unwrap_or_default();
                    let hi = get(&a, 4).map(data_value).unwrap_or_default();
                    if let Some(left) = self.regs.get(&sreg).cloned() {
                        let (l, dt) = self.resolve(&left);
                        self.push_match(op, l, json!({"range": [dt.format(&lo), dt.format(&hi)]}));
                    }
                }
                "lookup" => {
                    let set_name = get(&a, 1).map(cstr).unwrap_or_default();
                    let inv = u32a(5) & 1 != 0;
                    let mut u = unit(u32a(2));
                    let types = self
                        .sets
                        .get(&set_name)
                        .map(|s| s.types.clone())
                        .unwrap_or_default();
                    let mut parts = Vec::new();
                    for t in &types {
                        if let Some(r) = self.regs.get(&u).cloned() {
                            parts.push(self.resolve(&r).0);
                        }
                        u += (reg_space(t.len()) / 4) as u32;
                    }
                    let left = if parts.len() == 1 {
                        parts.remove(0)
                    } else {
                        obj1("concat", Value::Array(parts))
                    };
                    self.push_match(
                        if inv { "!=" } else { "==" },
                        left,
                        json!(format!("@{set_name}")),
                    );
                }
                "counter" => {
                    self.out.push(Some(json!({"counter": {
                        "packets": get(&a, 2).map(be64).unwrap_or(0),
                        "bytes": get(&a, 1).map(be64).unwrap_or(0),
                    }})));
                }
                "immediate" => {
                    let v = get(&a, 2)
                        .and_then(|d| attrs(d).find(|(t, _)| *t == NFTA_DATA_VERDICT))
                        .map(|(_, v)| {
                            let va: Vec<(u16, &[u8])> = attrs(v).collect();
                            let code = get(&va, NFTA_VERDICT_CODE).map(be32).unwrap_or(0) as i32;
                            let chain = get(&va, NFTA_VERDICT_CHAIN).map(cstr);
                            match (code, chain) {
                                (NF_ACCEPT, _) => json!({"accept": null}),
                                (NF_DROP, _) => json!({"drop": null}),
                                (NFT_CONTINUE, _) => json!({"continue": null}),
                                (NFT_RETURN, _) => json!({"return": null}),
                                (NFT_JUMP, Some(c)) => json!({"jump": {"target": c}}),
                                (NFT_GOTO, Some(c)) => json!({"goto": {"target": c}}),
                                (c, _) => json!({"verdict": c}),
                            }
                        });
                    if let Some(v) = v {
                        self.out.push(Some(v));
                    }
                }
                "limit" => self.out.push(Some(limit_json(&a))),
                "log" => {
                    let mut m = Map::new();
                    if let Some(p) = get(&a, 2) {
                        m.insert("prefix".into(), json!(cstr(p)));
                    }
                    if let Some(g) = get(&a, 1) {
                        if g.len() >= 2 {
                            m.insert("group".into(), json!(u16::from_be_bytes([g[0], g[1]])));
                        }
                    }
                    if let Some(l) = get(&a, 5).map(be32) {
                        if l != 4 {
                            let names = [
                                "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug",
                                "audit",
                            ];
                            m.insert(
                                "level".into(),
                                json!(names.get(l as usize).copied().unwrap_or("warn")),
                            );
                        }
                    }
                    let flags = get(&a, 6).map(be32).unwrap_or(0);
                    if flags != 0 {
                        let f: Vec<&str> = if flags & 0x2f == 0x2f {
                            vec!["all"]
                        } else {
                            [
                                (1, "tcp sequence"),
                                (2, "tcp options"),
                                (4, "ip options"),
                                (8, "skuid"),
                                (0x20, "ether"),
                            ]
                            .iter()
                            .filter(|(b, _)| flags & b != 0)
                            .map(|(_, n)| *n)
                            .collect()
                        };
                        m.insert("flags".into(), json!(f));
                    }
                    self.out.push(Some(obj1("log", Value::Object(m))));
                }
                "reject" => {
                    let ty = u32a(1);
                    let code = get(&a, 2).and_then(|v| v.first().copied()).unwrap_or(0);
                    let v = match ty {
                        1 => json!({"type": "tcp reset"}),
                        2 => {
                            let names = [
                                "no-route",
                                "port-unreachable",
                                "host-unreachable",
                                "admin-prohibited",
                            ];
                            json!({"type": "icmpx", "expr": names.get(code as usize).copied().unwrap_or("port-unreachable")})
                        }
                        _ => json!({"type": "icmp", "expr": code}),
                    };
                    self.out.push(Some(json!({ "reject": v })));
                }
                "dynset" => {
                    let set_name = get(&a, 1).map(cstr).unwrap_or_default();
                    let key = self.regs.get(&unit(u32a(4))).cloned();
                    let key = key.map(|k| self.resolve(&k).0).unwrap_or(Value::Null);
                    let stmt = get(&a, 7)
                        .map(|e| {
                            let ea: Vec<(u16, &[u8])> = attrs(e).collect();
                            let d: Vec<(u16, &[u8])> = get(&ea, NFTA_EXPR_DATA)
                                .map(|d| attrs(d).collect())
                                .unwrap_or_default();
                            match get(&ea, NFTA_EXPR_NAME).map(cstr).as_deref() {
                                Some("limit") => limit_json(&d),
                                _ => Value::Null,
                            }
                        })
                        .unwrap_or(Value::Null);
                    let size = self.sets.get(&set_name).and_then(|s| s.size);
                    let mut m = Map::new();
                    m.insert("key".into(), key);
                    m.insert("stmt".into(), stmt);
                    if let Some(s) = size {
                        m.insert("size".into(), json!(s));
                    }
                    m.insert("name".into(), json!(set_name));
                    self.out.push(Some(obj1("meter", Value::Object(m))));
                }
                other => self.out.push(Some(json!({ "xt": {"type": other} }))),
            }
            i += 1;
        }
        self.out.drain(..).flatten().collect()
    }

    fn cmp(&mut self, left: RegVal, op: u32, data: &[u8]) {
        let ops = ["==", "!=", "<", "<=", ">", ">="];
        let op_s = ops.get(op as usize).copied().unwrap_or("==");
        match &left {
            RegVal::Masked(inner, mask) if data.iter().all(|b| *b == 0) => {
                let (l, dt) = self.resolve(inner);
                if dt == DataType::CtState {
                    let right = dt.format(mask);
                    self.push_match(if op == 1 { "in" } else { "!=" }, l, right);
                    return;
                }
                let right = prefix_right(dt, data, mask);
                self.push_match(op_s, l, right);
                return;
            }
            RegVal::Masked(inner, mask) => {
                let (l, dt) = self.resolve(inner);
                let right = prefix_right(dt, data, mask);
                self.push_match(op_s, l, right);
                return;
            }
            RegVal::Payload { len, .. } => {
                let (l, dt) = self.resolve(&left);
                if dt.prefixes() && (*len as usize) < dt.len() {
                    let mut full = data.to_vec();
                    full.resize(dt.len(), 0);
                    let right = json!({"prefix": {"addr": dt.format(&full), "len": len * 8}});
                    self.push_match(op_s, l, right);
                    return;
                }
                let right = dt.format(data);
                self.push_match(op_s, l, right);
                return;
            }
            _ => {}
        }
        let (l, dt) = self.resolve(&left);
        let right = dt.format(data);
        let idx = self.push_match(op_s, l, right);
        if op == 0 {
            match left {
                RegVal::Meta(15) => {
                    self.net = data.first().copied();
                    self.net_dep = Some(idx);
                }
                RegVal::Meta(1) if data.len() >= 2 => {
                    self.net = match u16::from_be_bytes([data[0], data[1]]) {
                        0x0800 => Some(2),
                        0x86dd => Some(10),
                        _ => None,
                    };
                    self.net_dep = Some(idx);
                }
                RegVal::Meta(16) => {
                    self.l4 = data.first().copied();
                    self.l4_dep = Some(idx);
                }
                _ => {}
            }
        }
    }
}

fn prefix_right(dt: DataType, data: &[u8], mask: &[u8]) -> Value {
    let bits: u32 = mask.iter().map(|b| b.count_ones()).sum();
    let mut full = data.to_vec();
    full.resize(dt.len().max(full.len()), 0);
    json!({"prefix": {"addr": dt.format(&full), "len": bits}})
}

fn limit_json(a: &[(u16, &[u8])]) -> Value {
    let rate = get(a, 1).map(be64).unwrap_or(0);
    let unit = match get(a, 2).map(be64).unwrap_or(1) {
        1 => "second",
        60 => "minute",
        3600 => "hour",
        86400 => "day",
        604800 => "week",
        _ => "second",
    };
    let burst = get(a, 3).map(be32).unwrap_or(0);
    let inv = get(a, 5).map(be32).unwrap_or(0) & 1 != 0;
    let mut m = Map::new();
    m.insert("rate".into(), json!(rate));
    m.insert("burst".into(), json!(burst));
    m.insert("per".into(), json!(unit));
    if inv {
        m.insert("inv".into(), json!(true));
    }
    obj1("limit", Value::Object(m))
}

/// Parses a rule's NFTA_RULE_EXPRESSIONS into (name, attributes) per expression.
type KExprs = Vec<(String, Vec<(u16, Vec<u8>)>)>;

fn parse_exprs(list: &[u8]) -> KExprs {
    attrs(list)
        .map(|(_, e)| {
            let ea: Vec<(u16, &[u8])> = attrs(e).collect();
            let name = get(&ea, NFTA_EXPR_NAME).map(cstr).unwrap_or_default();
            let data = get(&ea, NFTA_EXPR_DATA)
                .map(|d| attrs(d).map(|(t, v)| (t, v.to_vec())).collect())
                .unwrap_or_default();
            (name, data)
        })
        .collect()
}

/// `nft -j list table FAMILY NAME` through netlink.
pub fn list_table(sock: &mut NfSocket, family: u8, name: &str) -> Result<Option<Value>, Error> {
    let Some((_, handle, tflags)) = table_names(sock, family)?
        .into_iter()
        .find(|(n, _, _)| n == name)
    else {
        return Ok(None);
    };
    let fam = family_name(family);
    let mut out = vec![json!({"metainfo": {
        "version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1
    }})];
    let mut t = json!({"family": fam, "name": name, "handle": handle});
    if tflags & 1 != 0 {
        t["flags"] = json!(["dormant"]);
    }
    out.push(obj1("table", t));
    let tz = name_z(name);
    let sets = table_sets(sock, family, name)?;
    let by_name: HashMap<String, KSet> = sets.iter().map(|s| (s.name.clone(), s.clone())).collect();
    for set in &sets {
        if set.flags & NFT_SET_ANONYMOUS != 0 {
            continue;
        }
        let elems = set_elements(sock, family, &tz, &name_z(&set.name), set.size.is_none())?;
        let mut m = Map::new();
        m.insert("family".into(), json!(fam));
        m.insert("name".into(), json!(set.name));
        m.insert("table".into(), json!(name));
        let types: Vec<Value> = set.types.iter().map(|t| json!(t.name())).collect();
        m.insert(
            "type".into(),
            if types.len() == 1 {
                types[0].clone()
            } else {
                json!(types)
            },
        );
        m.insert("handle".into(), json!(set.handle));
        let flags: Vec<&str> = [
            (NFT_SET_CONSTANT, "constant"),
            (NFT_SET_INTERVAL, "interval"),
            (NFT_SET_TIMEOUT, "timeout"),
            (NFT_SET_EVAL, "dynamic"),
        ]
        .iter()
        .filter(|(b, _)| set.flags & b != 0)
        .map(|(_, n)| *n)
        .collect();
        if !flags.is_empty() {
            m.insert("flags".into(), json!(flags));
        }
        if let Some(s) = set.size {
            m.insert("size".into(), json!(s));
        }
        let ev = elements_json(set, elems);
        if !ev.is_empty() {
            m.insert("elem".into(), Value::Array(ev));
        }
        if !set.exprs.is_empty() {
            let stmts: Vec<Value> = set.exprs.iter().map(|e| json!({ e: null })).collect();
            m.insert("stmt".into(), json!(stmts));
        }
        out.push(obj1("set", Value::Object(m)));
    }
    let chains = dump(sock, NFT_MSG_GETCHAIN, family, &[])?;
    let mut chain_names = Vec::new();
    for r in &chains {
        let Some(p) = r.payload.get(4..) else {
            continue;
        };
        let a: Vec<(u16, &[u8])> = attrs(p).collect();
        if get(&a, NFTA_CHAIN_TABLE).map(cstr).as_deref() != Some(name) {
            continue;
        }
        let cname = get(&a, NFTA_CHAIN_NAME).map(cstr).unwrap_or_default();
        let mut m = Map::new();
        m.insert("family".into(), json!(fam));
        m.insert("table".into(), json!(name));
        m.insert("name".into(), json!(cname));
        m.insert(
            "handle".into(),
            json!(get(&a, NFTA_CHAIN_HANDLE).map(be64).unwrap_or(0)),
        );
        if let Some(h) = get(&a, NFTA_CHAIN_HOOK) {
            let ha: Vec<(u16, &[u8])> = attrs(h).collect();
            if let Some(ty) = get(&a, NFTA_CHAIN_TYPE) {
                m.insert("type".into(), json!(cstr(ty)));
            }
            m.insert(
                "hook".into(),
                json!(hook_name(
                    family,
                    get(&ha, NFTA_HOOK_HOOKNUM).map(be32).unwrap_or(0)
                )),
            );
            m.insert(
                "prio".into(),
                json!(get(&ha, NFTA_HOOK_PRIORITY).map(be32).unwrap_or(0) as i32),
            );
            if let Some(dev) = get(&ha, NFTA_HOOK_DEV) {
                m.insert("dev".into(), json!(cstr(dev)));
            }
            if let Some(p) = get(&a, NFTA_CHAIN_POLICY) {
                m.insert(
                    "policy".into(),
                    json!(if be32(p) == 1 { "accept" } else { "drop" }),
                );
            }
        }
        chain_names.push(cname);
        out.push(obj1("chain", Value::Object(m)));
    }
    let rules = dump(sock, NFT_MSG_GETRULE, family, &[(NFTA_RULE_TABLE, &tz)])?;
    let mut per_chain: HashMap<String, Vec<Value>> = HashMap::new();
    for r in &rules {
        let Some(p) = r.payload.get(4..) else {
            continue;
        };
        let a: Vec<(u16, &[u8])> = attrs(p).collect();
        if get(&a, NFTA_RULE_TABLE).map(cstr).as_deref() != Some(name) {
            continue;
        }
        let chain = get(&a, NFTA_RULE_CHAIN).map(cstr).unwrap_or_default();
        let exprs = get(&a, NFTA_RULE_EXPRESSIONS)
            .map(parse_exprs)
            .unwrap_or_default();
        let mut d = Delin {
            family,
            sets: &by_name,
            regs: HashMap::new(),
            out: Vec::new(),
            net: None,
            l4: None,
            net_dep: None,
            l4_dep: None,
        };
        let stmts = d.run(&exprs);
        let mut m = Map::new();
        m.insert("family".into(), json!(fam));
        m.insert("table".into(), json!(name));
        m.insert("chain".into(), json!(chain));
        m.insert(
            "handle".into(),
            json!(get(&a, NFTA_RULE_HANDLE).map(be64).unwrap_or(0)),
        );
        if let Some(ud) = get(&a, NFTA_RULE_USERDATA) {
            let mut i = 0;
            while i + 2 <= ud.len() {
                let (ty, len) = (ud[i], ud[i + 1] as usize);
                if ty == 0 && i + 2 + len <= ud.len() {
                    m.insert("comment".into(), json!(cstr(&ud[i + 2..i + 2 + len])));
                }
                i += 2 + len;
            }
        }
        m.insert("expr".into(), Value::Array(stmts));
        per_chain
            .entry(chain)
            .or_default()
            .push(obj1("rule", Value::Object(m)));
    }
    for c in &chain_names {
        if let Some(rs) = per_chain.remove(c) {
            out.extend(rs);
        }
    }
    Ok(Some(obj1("nftables", Value::Array(out))))
}

/// An element value in nft's text syntax.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(o) => {
            if let Some(c) = o.get("concat").and_then(Value::as_array) {
                return c.iter().map(text).collect::<Vec<_>>().join(" . ");
            }
            if let Some(p) = o.get("prefix") {
                return format!("{}/{}", text(&p["addr"]), text(&p["len"]));
            }
            if let Some(r) = o.get("range").and_then(Value::as_array) {
                if r.len() == 2 {
                    return format!("{}-{}", text(&r[0]), text(&r[1]));
                }
            }
            if let Some(e) = o.get("elem") {
                return text(&e["val"]);
            }
            v.to_string()
        }
        other => other.to_string(),
    }
}
