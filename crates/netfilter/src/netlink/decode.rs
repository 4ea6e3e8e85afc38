//! Kernel dumps → the JSON `nft -j list table` prints, for the subset of
//! expressions portwall uses.
//!
//! Rules come back as the kernel's expressions (`meta load`, `cmp`, `lookup`,
//! ...); they are turned back into nft statements the way nft's
//! `netlink_delinearize` does: registers are tracked, `cmp`s become matches,
//! and the dependencies nft adds (`meta nfproto ipv4` before `ip saddr`, `meta
//! l4proto ipv6-icmp` before `icmpv6 type`) are dropped again when the payload
//! expression that needed them follows. Set elements are decoded with the set's
//! key types; a plain interval set's boundaries are joined back into ranges and
//! prefixes.

use super::encode::SetInfo;
use super::socket::{attrs, NfSocket, Reply};
use super::types::*;
use super::Error;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

fn be32(v: &[u8]) -> u32 {
    if v.len() >= 4 {
        u32::from_be_bytes([v[0], v[1], v[2], v[3]])
    } else {
        0
    }
}

pub(crate) fn be64(v: &[u8]) -> u64 {
    if v.len() >= 8 {
        u64::from_be_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]])
    } else {
        0
    }
}

pub(crate) fn cstr(v: &[u8]) -> String {
    let end = v.iter().position(|c| *c == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// The value inside an `NFTA_DATA_VALUE` nest.
fn data_value(v: &[u8]) -> Vec<u8> {
    attrs(v)
        .find(|(t, _)| *t == NFTA_DATA_VALUE)
        .map(|(_, d)| d.to_vec())
        .unwrap_or_default()
}

pub(crate) fn get<'a>(a: &[(u16, &'a [u8])], t: u16) -> Option<&'a [u8]> {
    a.iter().find(|(k, _)| *k == t).map(|(_, v)| *v)
}

/// A set as dumped.
#[derive(Debug, Clone)]
pub struct KSet {
    pub name: String,
    pub handle: u64,
    pub flags: u32,
    pub types: Vec<DataType>,
    pub key_len: usize,
    pub size: Option<u32>,
    pub exprs: Vec<String>,
}

impl KSet {
    pub fn info(&self) -> SetInfo {
        SetInfo {
            name: self.name.clone(),
            types: self.types.clone(),
            flags: self.flags,
            id: None,
        }
    }
}

/// Decodes a NEWSET message of a dump.
pub fn parse_set(payload: &[u8]) -> Option<(String, KSet)> {
    let a: Vec<(u16, &[u8])> = attrs(payload.get(4..)?).collect();
    let table = cstr(get(&a, NFTA_SET_TABLE)?);
    let name = cstr(get(&a, NFTA_SET_NAME)?);
    let flags = get(&a, NFTA_SET_FLAGS).map(be32).unwrap_or(0);
    let key_type = get(&a, NFTA_SET_KEY_TYPE).map(be32).unwrap_or(0);
    let key_len = get(&a, NFTA_SET_KEY_LEN).map(be32).unwrap_or(0) as usize;
    let mut field_lens = Vec::new();
    let mut size = None;
    if let Some(desc) = get(&a, NFTA_SET_DESC) {
        for (t, v) in attrs(desc) {
            match t {
                NFTA_SET_DESC_SIZE => size = Some(be32(v)),
                NFTA_SET_DESC_CONCAT => {
                    for (_, f) in attrs(v) {
                        if let Some((_, l)) = attrs(f).find(|(t, _)| *t == NFTA_SET_FIELD_LEN) {
                            field_lens.push(be32(l) as usize);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    // The key type is the concatenation of the fields' type numbers, 6 bits each.
    let mut ids = Vec::new();
    let mut kt = key_type;
    while kt != 0 {
        ids.push(kt & 0x3f);
        kt >>= 6;
    }
    ids.reverse();
    if ids.is_empty() {
        ids.push(0);
    }
    let types: Vec<DataType> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let len =
                field_lens
                    .get(i)
                    .copied()
                    .unwrap_or(if ids.len() == 1 { key_len } else { 4 });
            DataType::from_id(*id, len).unwrap_or(DataType::Integer(len.min(16) as u8))
        })
        .collect();
    let mut exprs = Vec::new();
    if let Some(e) = get(&a, NFTA_SET_EXPR) {
        if let Some((_, n)) = attrs(e).find(|(t, _)| *t == NFTA_EXPR_NAME) {
            exprs.push(cstr(n));
        }
    }
    if let Some(list) = get(&a, NFTA_SET_EXPRESSIONS) {
        for (_, e) in attrs(list) {
            if let Some((_, n)) = attrs(e).find(|(t, _)| *t == NFTA_EXPR_NAME) {
                exprs.push(cstr(n));
            }
        }
    }
    Some((
        table,
        KSet {
            name,
            handle: get(&a, NFTA_SET_HANDLE).map(be64).unwrap_or(0),
            flags,
            types,
            key_len,
            size,
            exprs,
        },
    ))
}

/// One element as dumped.
pub(crate) struct KElem {
    pub(crate) key: Vec<u8>,
    pub(crate) key_end: Option<Vec<u8>>,
    pub(crate) end_flag: bool,
    pub(crate) open: bool,
    pub(crate) counter: Option<(u64, u64)>,
}

/// The (packets, bytes) of a `counter` expression; `None` for any other.
/// Read without allocating: a dump of 100k elements calls it 100k times.
pub(crate) fn counter_of(expr: &[u8]) -> Option<(u64, u64)> {
    let mut is_counter = false;
    let mut data = None;
    for (t, v) in attrs(expr) {
        match t {
            NFTA_EXPR_NAME => is_counter = v.split(|b| *b == 0).next() == Some(b"counter"),
            NFTA_EXPR_DATA => data = Some(v),
            _ => {}
        }
    }
    if !is_counter {
        return None;
    }
    let (mut packets, mut bytes) = (0, 0);
    for (t, v) in attrs(data?) {
        match t {
            2 => packets = be64(v),
            1 => bytes = be64(v),
            _ => {}
        }
    }
    Some((packets, bytes))
}

pub(crate) fn parse_elems(replies: &[Reply], out: &mut Vec<KElem>) {
    for r in replies {
        let Some(p) = r.payload.get(4..) else {
            continue;
        };
        for (t, list) in attrs(p) {
            if t != NFTA_SET_ELEM_LIST_ELEMENTS {
                continue;
            }
            for (_, el) in attrs(list) {
                let mut e = KElem {
                    key: Vec::new(),
                    key_end: None,
                    end_flag: false,
                    open: false,
                    counter: None,
                };
                for (k, v) in attrs(el) {
                    match k {
                        NFTA_SET_ELEM_KEY => e.key = data_value(v),
                        NFTA_SET_ELEM_KEY_END => e.key_end = Some(data_value(v)),
                        NFTA_SET_ELEM_FLAGS => {
                            e.end_flag = be32(v) & NFT_SET_ELEM_INTERVAL_END != 0
                        }
                        NFTA_SET_ELEM_USERDATA => {
                            // NFTNL_UDATA_SET_ELEM_FLAGS with INTERVAL_OPEN
                            let mut i = 0;
                            while i + 2 <= v.len() {
                                let (ty, len) = (v[i], v[i + 1] as usize);
                                if ty == 1 && len == 4 && i + 6 <= v.len() {
                                    e.open = u32::from_ne_bytes([
                                        v[i + 2],
                                        v[i + 3],
                                        v[i + 4],
                                        v[i + 5],
                                    ]) & 1
                                        != 0;
                                }
                                i += 2 + len;
                            }
                        }
                        NFTA_SET_ELEM_EXPR => e.counter = counter_of(v),
                        NFTA_SET_ELEM_EXPRESSIONS => {
                            for (_, x) in attrs(v) {
                                if let Some(c) = counter_of(x) {
                                    e.counter = Some(c);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                out.push(e);
            }
        }
    }
}

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

/// The prefix length when `start..=end` is exactly one prefix.
fn prefix_len(start: &[u8], end: &[u8]) -> Option<usize> {
    let bits = start.len() * 8;
    let mut host = 0;
    // Count host bits from the end: start has 0s and end has 1s there.
    for i in (0..bits).rev() {
        let (byte, bit) = (i / 8, 7 - (i % 8));
        let s = (start[byte] >> bit) & 1;
        let e = (end[byte] >> bit) & 1;
        if s == 0 && e == 1 {
            host += 1;
        } else {
            break;
        }
    }
    let len = bits - host;
    for i in 0..len {
        let (byte, bit) = (i / 8, 7 - (i % 8));
        if (start[byte] >> bit) & 1 != (end[byte] >> bit) & 1 {
            return None;
        }
    }
    Some(len)
}

fn predecessor(v: &[u8]) -> Vec<u8> {
    let mut out = v.to_vec();
    for b in out.iter_mut().rev() {
        if *b == 0 {
            *b = 0xff;
        } else {
            *b -= 1;
            break;
        }
    }
    out
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

/// A plain interval set's boundaries joined back into `(first, last, counter)`
/// ranges, in order.
type Counter = Option<(u64, u64)>;

/// A range of values (first, last) and its counter (packets, bytes).
pub(crate) type CountedRange = (Vec<u8>, Vec<u8>, Option<(u64, u64)>);

pub(crate) fn interval_ranges(len: usize, elems: Vec<KElem>) -> Vec<CountedRange> {
    let mut sorted = elems;
    // Boundaries in order; an end before a start at the same value.
    sorted.sort_by(|a, b| a.key.cmp(&b.key).then(b.end_flag.cmp(&a.end_flag)));
    let max = vec![0xffu8; len];
    let mut out = Vec::new();
    let mut open: Option<(Vec<u8>, Counter)> = None;
    for e in sorted {
        if e.end_flag {
            if let Some((s, c)) = open.take() {
                out.push((s, predecessor(&e.key), c));
            }
            continue;
        }
        if let Some((s, c)) = open.take() {
            out.push((s, max.clone(), c));
        }
        if e.open {
            out.push((e.key, max.clone(), e.counter));
        } else {
            open = Some((e.key, e.counter));
        }
    }
    if let Some((s, c)) = open {
        out.push((s, max, c));
    }
    out
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

pub(crate) fn dump(
    sock: &mut NfSocket,
    ty: u16,
    family: u8,
    a: &[(u16, &[u8])],
) -> Result<Vec<Reply>, Error> {
    let seq = super::next_seq();
    match sock.dump(ty, family, a, seq).map_err(Error::Io)? {
        Ok(r) => Ok(r),
        Err(errno) => Err(Error::Kernel {
            errno,
            what: "dump".into(),
            detail: super::strerror(errno),
        }),
    }
}

/// Reads of a set that came back inconsistent before [`set_elements`] gives up.
const SET_READ_ATTEMPTS: u32 = 6;

/// The elements of one set, from a `GETSETELEM` dump that is consistent.
///
/// A set never holds the same element twice, yet a dump can repeat some (and
/// leave others out): a hash set made without a size (the edge's; portwall's
/// own are sized, see [`mod@crate::compile`]) is an `rhashtable`, which grows in a
/// deferred worker after a large insert. Each message of a dump walks the
/// table from its start and skips as many elements as were already sent; when
/// the table was resized in between, the new order puts some elements already
/// sent after that point (sent again) and some not yet sent before it (never
/// sent), as many of one as of the other. So a repeated element is the sign of
/// an inconsistent read, and its absence the sign of a complete one. Right
/// after applying 100k elements the first dump repeated 0.4-6 % of them about
/// every other time on this kernel (6.18), and read-back verification then
/// failed a correct apply. So a dump with a repeated
/// element is read again after a short, growing pause (the resize takes a few
/// milliseconds to a few hundred), a bounded number of times.
///
/// A sized hash set (portwall's own) is a fixed table that never resizes, so
/// its dump is taken as it comes; `resizable` says whether the set may be an
/// `rhashtable` (no size given).
pub(crate) fn set_elements(
    sock: &mut NfSocket,
    family: u8,
    table_z: &[u8],
    set_z: &[u8],
    resizable: bool,
) -> Result<Vec<KElem>, Error> {
    let mut pause = std::time::Duration::from_millis(10);
    for _ in 0..SET_READ_ATTEMPTS {
        let replies = tracing::debug_span!("dump").in_scope(|| {
            dump(
                sock,
                NFT_MSG_GETSETELEM,
                family,
                &[
                    (NFTA_SET_ELEM_LIST_TABLE, table_z),
                    (NFTA_SET_ELEM_LIST_SET, set_z),
                ],
            )
        })?;
        let mut elems = Vec::new();
        tracing::debug_span!("parse").in_scope(|| parse_elems(&replies, &mut elems));
        if !resizable || !tracing::debug_span!("repeats").in_scope(|| repeats_an_element(&elems)) {
            return Ok(elems);
        }
        std::thread::sleep(pause);
        pause *= 3;
    }
    Err(Error::Invalid(format!(
        "set {}: {SET_READ_ATTEMPTS} reads in a row repeated elements (the kernel kept resizing it)",
        cstr(set_z)
    )))
}

/// Whether a dump listed an element twice: the same key, end and interval flag
/// (an interval set's end element may share its key with the next start).
fn repeats_an_element(elems: &[KElem]) -> bool {
    let mut seen = rustc_hash::FxHashSet::default();
    seen.reserve(elems.len());
    elems
        .iter()
        .any(|e| !seen.insert((e.key.as_slice(), e.key_end.as_deref(), e.end_flag)))
}

pub(crate) fn name_z(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// The names and handles of the tables of one family.
pub fn table_names(sock: &mut NfSocket, family: u8) -> Result<Vec<(String, u64, u32)>, Error> {
    let replies = dump(sock, NFT_MSG_GETTABLE, family, &[])?;
    Ok(replies
        .iter()
        .filter(|r| r.payload.first() == Some(&family))
        .filter_map(|r| {
            let a: Vec<(u16, &[u8])> = attrs(r.payload.get(4..)?).collect();
            Some((
                cstr(get(&a, NFTA_TABLE_NAME)?),
                get(&a, NFTA_TABLE_HANDLE).map(be64).unwrap_or(0),
                get(&a, NFTA_TABLE_FLAGS).map(be32).unwrap_or(0),
            ))
        })
        .collect())
}

/// The sets of one table.
pub fn table_sets(sock: &mut NfSocket, family: u8, table: &str) -> Result<Vec<KSet>, Error> {
    let t = name_z(table);
    let replies = match dump(sock, NFT_MSG_GETSET, family, &[(NFTA_SET_TABLE, &t)]) {
        Err(Error::Kernel { errno: 2, .. }) => return Ok(Vec::new()),
        r => r?,
    };
    Ok(replies
        .iter()
        .filter_map(|r| parse_set(&r.payload))
        .filter(|(tb, _)| tb == table)
        .map(|(_, s)| s)
        .collect())
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

/// Text for an element of a batch message the kernel refused: `nlmsg` is the
/// message, `offset` where the blamed element's nest starts.
pub fn describe_element(set: &SetInfo, nlmsg: &[u8], offset: usize) -> Option<String> {
    let el = nlmsg.get(offset..)?;
    let len = u16::from_ne_bytes([*el.first()?, *el.get(1)?]) as usize;
    let body = el.get(4..len.min(el.len()))?;
    let mut k = KElem {
        key: Vec::new(),
        key_end: None,
        end_flag: false,
        open: false,
        counter: None,
    };
    for (t, v) in attrs(body) {
        match t {
            NFTA_SET_ELEM_KEY => k.key = data_value(v),
            NFTA_SET_ELEM_KEY_END => k.key_end = Some(data_value(v)),
            NFTA_SET_ELEM_FLAGS => k.end_flag = be32(v) & 1 != 0,
            _ => {}
        }
    }
    if k.key.is_empty() {
        return None;
    }
    let end_flag = k.end_flag;
    // One element alone: a plain interval set's boundary is shown as a value.
    let flags = if set.concat() {
        set.flags
    } else {
        set.flags & !NFT_SET_INTERVAL
    };
    let ks = KSet {
        name: set.name.clone(),
        handle: 0,
        flags,
        types: set.types.clone(),
        key_len: set.key_len(),
        size: None,
        exprs: Vec::new(),
    };
    let v = elements_json(&ks, vec![k]).into_iter().next()?;
    Some(format!(
        "{}{}",
        text(&v),
        if end_flag {
            " (end of an interval)"
        } else {
            ""
        }
    ))
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
