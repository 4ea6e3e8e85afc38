//! nft JSON commands → one nf_tables netlink batch, written the way nft 1.0.6
//! writes them (same expressions, registers, dependencies, set flags and user
//! data), so that the kernel holds exactly what `nft -j -f` would have made of
//! the same JSON and `nft list` prints the same text.
//!
//! The attributes are written by hand into one buffer: a batch of 100k set
//! elements is one pass over the elements with each nest's length patched when
//! it closes, as libmnl does.

use super::types::*;
use super::Error;
use crate::compile::Dim;
use ipnet::IpNet;
use nftables::expr::{Expression, NamedExpression};
use serde_json::Value;
use std::collections::HashMap;

/// A netlink message buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    /// Starts a message (netlink header + nfgenmsg); returns its offset.
    pub fn begin_msg(&mut self, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    pub fn end_msg(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub fn put(&mut self, ty: u16, data: &[u8]) {
        self.buf
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// A NUL-terminated string.
    pub fn put_str(&mut self, ty: u16, s: &str) {
        self.buf
            .extend_from_slice(&((4 + s.len() + 1) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    pub fn put_be32(&mut self, ty: u16, v: u32) {
        self.put(ty, &v.to_be_bytes());
    }

    pub fn put_be64(&mut self, ty: u16, v: u64) {
        self.put(ty, &v.to_be_bytes());
    }

    pub fn nest(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }

    pub fn end_nest(&mut self, at: usize) {
        let len = (self.buf.len() - at).min(u16::MAX as usize) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// `[ty] { [NFTA_DATA_VALUE] bytes }`.
    fn put_data(&mut self, ty: u16, bytes: &[u8]) {
        let n = self.nest(ty);
        self.put(NFTA_DATA_VALUE, bytes);
        self.end_nest(n);
    }
}

/// A set as the encoder needs to know it: its key and flags.
#[derive(Debug, Clone)]
pub struct SetInfo {
    pub name: String,
    pub types: Vec<DataType>,
    pub flags: u32,
    /// The set's id when this batch creates it.
    pub id: Option<u32>,
}

impl SetInfo {
    pub fn concat(&self) -> bool {
        self.types.len() > 1
    }
    pub fn interval(&self) -> bool {
        self.flags & NFT_SET_INTERVAL != 0
    }
    /// Key length: fields padded to registers when concatenated.
    pub fn key_len(&self) -> usize {
        if self.concat() {
            self.types.iter().map(|t| reg_space(t.len())).sum()
        } else {
            self.types.first().map(|t| t.len()).unwrap_or(0)
        }
    }
}

/// One element's key: the first and the last value it covers (equal for a
/// single value), fields laid out as in the kernel.
#[derive(Clone)]
pub struct Key {
    pub start: [u8; 64],
    pub end: [u8; 64],
    pub len: usize,
}

/// A scalar of an element or match: a string or a number.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Str(&'a str),
    Num(u64),
}

fn scalar_into(t: DataType, s: Scalar<'_>, out: &mut [u8]) -> Result<(), String> {
    match (t, s) {
        (DataType::Ipv4Addr, Scalar::Str(x)) => {
            let a: std::net::Ipv4Addr = x
                .parse()
                .map_err(|_| format!("'{x}' is not an IPv4 address"))?;
            out[..4].copy_from_slice(&a.octets());
        }
        (DataType::Ipv6Addr, Scalar::Str(x)) => {
            let a: std::net::Ipv6Addr = x
                .parse()
                .map_err(|_| format!("'{x}' is not an IPv6 address"))?;
            out[..16].copy_from_slice(&a.octets());
        }
        (DataType::InetService, Scalar::Num(n)) => {
            let p = u16::try_from(n).map_err(|_| format!("{n} is not a port"))?;
            out[..2].copy_from_slice(&p.to_be_bytes());
        }
        (DataType::InetProto, Scalar::Str(x)) => {
            out[0] = proto_number(x).ok_or_else(|| format!("'{x}' is not a protocol"))?;
        }
        _ => {
            let v = match s {
                Scalar::Str(x) => Value::String(x.to_string()),
                Scalar::Num(n) => Value::from(n),
            };
            let b = t.parse(&v)?;
            out[..b.len()].copy_from_slice(&b);
        }
    }
    Ok(())
}

/// Host mask of a prefix over `len` bytes: sets `start` to the network and
/// `end` to the last address.
fn apply_prefix(bits: u32, len: usize, start: &mut [u8], end: &mut [u8]) -> Result<(), String> {
    if bits as usize > len * 8 {
        return Err(format!("prefix length {bits} is too long"));
    }
    for i in 0..len {
        let keep = (bits as i64 - (i as i64) * 8).clamp(0, 8) as u32;
        let mask: u8 = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        start[i] &= mask;
        end[i] = start[i] | !mask;
    }
    Ok(())
}

fn json_scalar(t: DataType, v: &Value) -> Result<Option<Scalar<'_>>, String> {
    Ok(match v {
        Value::String(s) => Some(Scalar::Str(s)),
        Value::Number(n) => {
            Some(Scalar::Num(n.as_u64().ok_or_else(|| {
                format!("'{n}' is not a valid {}", t.name())
            })?))
        }
        _ => None,
    })
}

fn typed_scalar<'e>(e: &'e Expression<'_>) -> Option<Scalar<'e>> {
    match e {
        Expression::String(s) => Some(Scalar::Str(s)),
        Expression::Number(n) => Some(Scalar::Num(*n as u64)),
        _ => None,
    }
}

/// One field of an element from nft JSON: a value, a prefix or a range.
fn field_json(t: DataType, v: &Value, start: &mut [u8], end: &mut [u8]) -> Result<(), String> {
    let scalar = |v| json_scalar(t, v);
    if let Some(s) = scalar(v)? {
        scalar_into(t, s, start)?;
        end[..t.len()].copy_from_slice(&start[..t.len()]);
        return Ok(());
    }
    if let Some(p) = v.get("prefix") {
        let addr = scalar(&p["addr"])?.ok_or_else(|| format!("bad prefix {v}"))?;
        scalar_into(t, addr, start)?;
        let bits = p["len"]
            .as_u64()
            .ok_or_else(|| format!("bad prefix length in {v}"))? as u32;
        return apply_prefix(bits, t.len(), start, end);
    }
    if let Some(r) = v.get("range").and_then(Value::as_array) {
        if r.len() == 2 {
            let a = scalar(&r[0])?.ok_or_else(|| format!("bad range {v}"))?;
            let b = scalar(&r[1])?.ok_or_else(|| format!("bad range {v}"))?;
            scalar_into(t, a, start)?;
            return scalar_into(t, b, end);
        }
    }
    if let Some(inner) = v.get("elem") {
        return field_json(t, &inner["val"], start, end);
    }
    Err(format!("'{v}' is not a valid {} element", t.name()))
}

fn field_typed(
    t: DataType,
    e: &Expression<'_>,
    start: &mut [u8],
    end: &mut [u8],
) -> Result<(), String> {
    let scalar = typed_scalar;
    if let Some(s) = scalar(e) {
        scalar_into(t, s, start)?;
        end[..t.len()].copy_from_slice(&start[..t.len()]);
        return Ok(());
    }
    match e {
        Expression::Named(NamedExpression::Prefix(p)) => {
            let a = scalar(&p.addr).ok_or("bad prefix")?;
            scalar_into(t, a, start)?;
            apply_prefix(p.len, t.len(), start, end)
        }
        Expression::Range(r) => {
            let a = scalar(&r.range[0]).ok_or("bad range")?;
            let b = scalar(&r.range[1]).ok_or("bad range")?;
            scalar_into(t, a, start)?;
            scalar_into(t, b, end)
        }
        Expression::Named(NamedExpression::Elem(el)) => field_typed(t, &el.val, start, end),
        _ => Err(format!("an element of type {} cannot be {e:?}", t.name())),
    }
}

/// Writes one dimension of a compiled element (see [`crate::compile::Dim`]).
fn field_dim(t: DataType, d: &Dim, start: &mut [u8], end: &mut [u8]) -> Result<(), String> {
    let n = t.len();
    match (t, d) {
        (DataType::Ipv4Addr, Dim::Source(IpNet::V4(net)) | Dim::Destination(IpNet::V4(net))) => {
            start[..4].copy_from_slice(&net.network().octets());
            end[..4].copy_from_slice(&net.broadcast().octets());
        }
        (DataType::Ipv6Addr, Dim::Source(IpNet::V6(net)) | Dim::Destination(IpNet::V6(net))) => {
            start[..16].copy_from_slice(&net.network().octets());
            end[..16].copy_from_slice(&net.broadcast().octets());
        }
        (DataType::InetProto, Dim::Proto(p)) => {
            start[0] = *p;
            end[0] = *p;
        }
        (DataType::InetService, Dim::SourcePort(r) | Dim::DestinationPort(r)) => {
            start[..2].copy_from_slice(&r.start.to_be_bytes());
            end[..2].copy_from_slice(&r.end.to_be_bytes());
        }
        _ => return Err(format!("{d:?} is not a value of type {}", t.name())),
    }
    debug_assert!(n <= start.len());
    Ok(())
}

/// The key of a compiled element in `set`.
pub fn dims_key(set: &SetInfo, dims: &[Dim]) -> Result<Key, String> {
    let mut k = Key {
        start: [0; 64],
        end: [0; 64],
        len: set.key_len(),
    };
    if dims.len() != set.types.len() || k.len > 64 {
        return Err(format!(
            "{dims:?} does not have the key of set {}",
            set.name
        ));
    }
    let concat = set.concat();
    let mut off = 0;
    for (t, d) in set.types.iter().zip(dims) {
        field_dim(*t, d, &mut k.start[off..], &mut k.end[off..])?;
        off += if concat { reg_space(t.len()) } else { t.len() };
    }
    Ok(k)
}

/// Where element values come from.
#[derive(Clone, Copy)]
pub enum Elems<'a> {
    Json(&'a [Value]),
    Typed(&'a [Expression<'a>]),
    /// Compiled elements, written without any text in between.
    Dims(&'a [crate::compile::Element]),
}

impl Elems<'_> {
    fn len(&self) -> usize {
        match self {
            Elems::Json(v) => v.len(),
            Elems::Typed(v) => v.len(),
            Elems::Dims(v) => v.len(),
        }
    }

    /// The key of element `i` in `set`.
    pub fn key_at(&self, i: usize, set: &SetInfo) -> Result<Key, String> {
        self.key(i, set)
    }

    fn key(&self, i: usize, set: &SetInfo) -> Result<Key, String> {
        if let Elems::Dims(v) = self {
            return dims_key(set, &v[i].key);
        }
        let mut k = Key {
            start: [0; 64],
            end: [0; 64],
            len: set.key_len(),
        };
        if k.len > 64 {
            return Err(format!("set {} has a key longer than 64 bytes", set.name));
        }
        let mut off = 0;
        let concat = set.concat();
        match self {
            Elems::Json(v) => {
                let mut val = &v[i];
                if let Some(inner) = val.get("elem") {
                    val = &inner["val"];
                }
                let parts: Vec<&Value> = if concat {
                    val.get("concat")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().collect())
                        .ok_or_else(|| format!("'{val}' is not a concatenation"))?
                } else {
                    vec![val]
                };
                if parts.len() != set.types.len() {
                    return Err(format!(
                        "'{val}' has {} fields, the set's key {}",
                        parts.len(),
                        set.types.len()
                    ));
                }
                for (t, p) in set.types.iter().zip(parts) {
                    field_json(*t, p, &mut k.start[off..], &mut k.end[off..])?;
                    off += if concat { reg_space(t.len()) } else { t.len() };
                }
            }
            Elems::Typed(v) => {
                let mut e = &v[i];
                if let Expression::Named(NamedExpression::Elem(el)) = e {
                    e = &el.val;
                }
                let parts: Vec<&Expression<'_>> = match (concat, e) {
                    (true, Expression::Named(NamedExpression::Concat(c))) => c.iter().collect(),
                    (false, e) => vec![e],
                    _ => return Err(format!("{e:?} is not a concatenation")),
                };
                if parts.len() != set.types.len() {
                    return Err(format!("{e:?} does not have the set's key"));
                }
                for (t, p) in set.types.iter().zip(parts) {
                    field_typed(*t, p, &mut k.start[off..], &mut k.end[off..])?;
                    off += if concat { reg_space(t.len()) } else { t.len() };
                }
            }
            Elems::Dims(_) => unreachable!("handled above"),
        }
        Ok(k)
    }
}

/// One message of the batch, to explain an error the kernel gives for it.
pub struct Msg {
    pub seq: u32,
    /// Offset of the message in the batch.
    pub start: usize,
    pub what: String,
    /// For element messages: the set, to name the element the kernel blames.
    pub set: Option<SetInfo>,
}

/// Elements as sent to the kernel.
struct WireElem {
    key: [u8; 64],
    key_end: Option<[u8; 64]>,
    interval_end: bool,
    open: bool,
}

/// Big-endian `v + 1`; `None` on overflow (the interval is open at the top).
fn successor(v: &[u8]) -> Option<Vec<u8>> {
    let mut out = v.to_vec();
    for b in out.iter_mut().rev() {
        if *b == 0xff {
            *b = 0;
        } else {
            *b += 1;
            return Some(out);
        }
    }
    None
}

/// Sets of the batch and of the kernel, by (family, table, name).
pub type SetKey = (u8, String, String);

/// Resolves a set that the batch does not create (a kernel lookup).
pub type Resolver<'a> = dyn FnMut(u8, &str, &str) -> Result<Option<SetInfo>, Error> + 'a;

/// The batch being written.
pub struct Batch<'r> {
    pub w: Writer,
    pub msgs: Vec<Msg>,
    pub begin_seq: u32,
    next_seq: u32,
    sets: HashMap<SetKey, SetInfo>,
    next_set_id: u32,
    resolver: &'r mut Resolver<'r>,
}

const ELEMENT_CHUNK: usize = 60_000;

fn str_of<'v>(v: &'v Value, key: &str, what: &str) -> Result<&'v str, Error> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Unsupported(format!("{what} without '{key}': {v}")))
}

fn family_of(v: &Value, what: &str) -> Result<u8, Error> {
    let f = str_of(v, "family", what)?;
    family_number(f).ok_or_else(|| Error::Invalid(format!("'{f}' is not a family")))
}

impl<'r> Batch<'r> {
    pub fn new(first_seq: u32, resolver: &'r mut Resolver<'r>) -> Batch<'r> {
        let mut w = Writer::default();
        let b = w.begin_msg(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            first_seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        w.end_msg(b);
        Batch {
            w,
            msgs: Vec::new(),
            begin_seq: first_seq,
            next_seq: first_seq + 1,
            sets: HashMap::new(),
            next_set_id: 1,
            resolver,
        }
    }

    /// Ends the batch; returns the bytes to send.
    pub fn finish(mut self) -> (Vec<u8>, Vec<Msg>, u32) {
        let seq = self.next_seq;
        let e = self.w.begin_msg(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        self.w.end_msg(e);
        (self.w.buf, self.msgs, self.begin_seq + 1)
    }

    fn msg(
        &mut self,
        ty: u16,
        flags: u16,
        family: u8,
        what: String,
        set: Option<SetInfo>,
    ) -> usize {
        let seq = self.next_seq;
        self.next_seq += 1;
        let start = self.w.begin_msg(
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            flags | NLM_F_REQUEST | NLM_F_ACK,
            seq,
            family,
            0,
        );
        self.msgs.push(Msg {
            seq,
            start,
            what,
            set,
        });
        start
    }

    fn set_info(&mut self, family: u8, table: &str, name: &str) -> Result<SetInfo, Error> {
        let key = (family, table.to_string(), name.to_string());
        if let Some(s) = self.sets.get(&key) {
            return Ok(s.clone());
        }
        match (self.resolver)(family, table, name)? {
            Some(s) => {
                self.sets.insert(key, s.clone());
                Ok(s)
            }
            None => Err(Error::Kernel {
                errno: 2,
                what: format!("set {} {table} {name}", family_name(family)),
                detail: "No such file or directory".into(),
            }),
        }
    }

    // ---- commands -----------------------------------------------------------------

    /// One command of an nft JSON batch (`{"add": {"table": {...}}}` and so on).
    pub fn command(&mut self, obj: &Value) -> Result<(), Error> {
        let Some(map) = obj.as_object() else {
            return Err(Error::Unsupported(format!("not a command: {obj}")));
        };
        for (verb, body) in map {
            match verb.as_str() {
                "metainfo" => {}
                "add" | "create" | "insert" | "delete" | "destroy" | "flush" => {
                    let Some(inner) = body.as_object() else {
                        return Err(Error::Unsupported(format!("{verb} of {body}")));
                    };
                    for (kind, v) in inner {
                        self.object(verb, kind, v, None)?;
                    }
                }
                // A bare object is an implicit add.
                kind => self.object("add", kind, body, None)?,
            }
        }
        Ok(())
    }

    /// One object of a command. `typed` elements replace the JSON `elem`.
    pub fn object(
        &mut self,
        verb: &str,
        kind: &str,
        v: &Value,
        typed: Option<Elems<'_>>,
    ) -> Result<(), Error> {
        let family = family_of(v, kind)?;
        let fam = family_name(family);
        match (verb, kind) {
            ("add" | "create", "table") => {
                let name = str_of(v, "name", "table")?;
                let flags = if verb == "create" { NLM_F_EXCL } else { 0 };
                let at = self.msg(
                    NFT_MSG_NEWTABLE,
                    flags,
                    family,
                    format!("{verb} table {fam} {name}"),
                    None,
                );
                self.w.put_str(NFTA_TABLE_NAME, name);
                self.w.put_be32(NFTA_TABLE_FLAGS, 0);
                self.w.end_msg(at);
                // A table added again keeps its sets; a deleted one loses them.
            }
            ("delete" | "destroy", "table") => {
                let name = str_of(v, "name", "table")?;
                let at = self.msg(
                    if verb == "destroy" {
                        26
                    } else {
                        NFT_MSG_DELTABLE
                    },
                    0,
                    family,
                    format!("{verb} table {fam} {name}"),
                    None,
                );
                self.w.put_str(NFTA_TABLE_NAME, name);
                self.w.end_msg(at);
                self.sets
                    .retain(|(f, t, _), _| !(*f == family && t == name));
            }
            ("flush", "table") => {
                let name = str_of(v, "name", "table")?;
                let at = self.msg(
                    NFT_MSG_DELRULE,
                    0,
                    family,
                    format!("flush table {fam} {name}"),
                    None,
                );
                self.w.put_str(NFTA_RULE_TABLE, name);
                self.w.end_msg(at);
            }
            ("add" | "create", "chain") => self.add_chain(verb, family, v)?,
            ("delete" | "destroy", "chain") => {
                let table = str_of(v, "table", "chain")?;
                let name = str_of(v, "name", "chain")?;
                let at = self.msg(
                    NFT_MSG_DELCHAIN,
                    0,
                    family,
                    format!("{verb} chain {fam} {table} {name}"),
                    None,
                );
                self.w.put_str(NFTA_CHAIN_TABLE, table);
                self.w.put_str(NFTA_CHAIN_NAME, name);
                self.w.end_msg(at);
            }
            ("flush", "chain") => {
                let table = str_of(v, "table", "chain")?;
                let name = str_of(v, "name", "chain")?;
                let at = self.msg(
                    NFT_MSG_DELRULE,
                    0,
                    family,
                    format!("flush chain {fam} {table} {name}"),
                    None,
                );
                self.w.put_str(NFTA_RULE_TABLE, table);
                self.w.put_str(NFTA_RULE_CHAIN, name);
                self.w.end_msg(at);
            }
            ("add" | "create", "set") => self.add_set(verb, family, v, typed)?,
            ("delete" | "destroy", "set") => {
                let table = str_of(v, "table", "set")?;
                let name = str_of(v, "name", "set")?;
                let at = self.msg(
                    NFT_MSG_DELSET,
                    0,
                    family,
                    format!("{verb} set {fam} {table} {name}"),
                    None,
                );
                self.w.put_str(NFTA_SET_TABLE, table);
                self.w.put_str(NFTA_SET_NAME, name);
                self.w.end_msg(at);
                self.sets
                    .remove(&(family, table.to_string(), name.to_string()));
            }
            ("flush", "set") => {
                let table = str_of(v, "table", "set")?;
                let name = str_of(v, "name", "set")?;
                let at = self.msg(
                    NFT_MSG_DELSETELEM,
                    0,
                    family,
                    format!("flush set {fam} {table} {name}"),
                    None,
                );
                self.w.put_str(NFTA_SET_ELEM_LIST_SET, name);
                self.w.put_str(NFTA_SET_ELEM_LIST_TABLE, table);
                self.w.end_msg(at);
            }
            ("add" | "create" | "delete" | "destroy", "element") => {
                let table = str_of(v, "table", "element")?;
                let name = str_of(v, "name", "element")?;
                let set = self.set_info(family, table, name)?;
                let elems = match typed {
                    Some(t) => t,
                    None => Elems::Json(
                        v.get("elem")
                            .and_then(Value::as_array)
                            .map(Vec::as_slice)
                            .unwrap_or(&[]),
                    ),
                };
                let del = matches!(verb, "delete" | "destroy");
                self.elements(family, table, &set, elems, del, verb == "create", false)?;
            }
            ("add" | "create" | "insert", "rule") => self.add_rule(verb, family, v)?,
            ("delete" | "destroy", "rule") => {
                let table = str_of(v, "table", "rule")?;
                let chain = str_of(v, "chain", "rule")?;
                let handle = v
                    .get("handle")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| Error::Invalid(format!("delete rule needs a handle: {v}")))?;
                let at = self.msg(
                    NFT_MSG_DELRULE,
                    0,
                    family,
                    format!("{verb} rule {fam} {table} {chain} handle {handle}"),
                    None,
                );
                self.w.put_str(NFTA_RULE_TABLE, table);
                self.w.put_str(NFTA_RULE_CHAIN, chain);
                self.w.put_be64(NFTA_RULE_HANDLE, handle);
                self.w.end_msg(at);
            }
            _ => {
                return Err(Error::Unsupported(format!(
                    "'{verb} {kind}' is not supported by the netlink backend"
                )))
            }
        }
        Ok(())
    }

    fn add_chain(&mut self, verb: &str, family: u8, v: &Value) -> Result<(), Error> {
        let table = str_of(v, "table", "chain")?;
        let name = str_of(v, "name", "chain")?;
        let flags = NLM_F_CREATE | if verb == "create" { NLM_F_EXCL } else { 0 };
        let at = self.msg(
            NFT_MSG_NEWCHAIN,
            flags,
            family,
            format!("{verb} chain {} {table} {name}", family_name(family)),
            None,
        );
        self.w.put_str(NFTA_CHAIN_TABLE, table);
        self.w.put_str(NFTA_CHAIN_NAME, name);
        if let Some(hook) = v.get("hook").and_then(Value::as_str) {
            let hooknum = hook_number(hook)
                .ok_or_else(|| Error::Invalid(format!("'{hook}' is not a hook")))?;
            let ty = v.get("type").and_then(Value::as_str).unwrap_or("filter");
            let prio: i32 = match v.get("prio") {
                Some(Value::Number(n)) => n.as_i64().unwrap_or(0) as i32,
                Some(Value::String(s)) => match s.as_str() {
                    "raw" => -300,
                    "mangle" => -150,
                    "dstnat" => -100,
                    "filter" => 0,
                    "security" => 50,
                    "srcnat" => 100,
                    other => return Err(Error::Unsupported(format!("chain priority '{other}'"))),
                },
                _ => 0,
            };
            self.w.put_str(NFTA_CHAIN_TYPE, ty);
            if let Some(p) = v.get("policy").and_then(Value::as_str) {
                let code = match p {
                    "accept" => 1,
                    "drop" => 0,
                    other => return Err(Error::Invalid(format!("'{other}' is not a policy"))),
                };
                self.w.put_be32(NFTA_CHAIN_POLICY, code);
            }
            let h = self.w.nest(NFTA_CHAIN_HOOK);
            self.w.put_be32(NFTA_HOOK_HOOKNUM, hooknum);
            self.w.put_be32(NFTA_HOOK_PRIORITY, prio as u32);
            if let Some(dev) = v.get("dev").and_then(Value::as_str) {
                self.w.put_str(NFTA_HOOK_DEV, dev);
            }
            self.w.end_nest(h);
        }
        self.w.end_msg(at);
        Ok(())
    }

    /// The set's header from JSON (its `elem` are sent by the caller).
    pub fn set_from_json(v: &Value) -> Result<(SetInfo, Option<u32>, bool), Error> {
        let name = str_of(v, "name", "set")?;
        let types: Vec<DataType> = match v.get("type") {
            Some(Value::String(s)) => vec![DataType::from_name(s)
                .ok_or_else(|| Error::Unsupported(format!("set type '{s}'")))?],
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| {
                    t.as_str()
                        .and_then(DataType::from_name)
                        .ok_or_else(|| Error::Unsupported(format!("set type '{t}'")))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(Error::Unsupported(format!("set without a type: {v}"))),
        };
        let mut flags = 0;
        for f in v
            .get("flags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            flags |= match f.as_str() {
                Some("interval") => NFT_SET_INTERVAL,
                Some("constant") => NFT_SET_CONSTANT,
                Some(other) => return Err(Error::Unsupported(format!("set flag '{other}'"))),
                None => 0,
            };
        }
        if types.len() > 1 && flags & NFT_SET_INTERVAL != 0 {
            flags |= NFT_SET_CONCAT;
        }
        for unsupported in ["timeout", "gc-interval", "policy", "comment", "map"] {
            if v.get(unsupported).is_some_and(|x| !x.is_null()) {
                return Err(Error::Unsupported(format!("set property '{unsupported}'")));
            }
        }
        let mut counter = false;
        for s in v
            .get("stmt")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if s.get("counter").is_some() {
                counter = true;
            } else {
                return Err(Error::Unsupported(format!("set statement {s}")));
            }
        }
        let size = v.get("size").and_then(Value::as_u64).map(|s| s as u32);
        Ok((
            SetInfo {
                name: name.to_string(),
                types,
                flags,
                id: None,
            },
            size,
            counter,
        ))
    }

    fn add_set(
        &mut self,
        verb: &str,
        family: u8,
        v: &Value,
        typed: Option<Elems<'_>>,
    ) -> Result<(), Error> {
        let table = str_of(v, "table", "set")?;
        let (mut set, size, counter) = Self::set_from_json(v)?;
        set.id = Some(self.next_set_id);
        self.next_set_id += 1;
        let excl = if verb == "create" { NLM_F_EXCL } else { 0 };
        self.emit_set(family, table, &set, size, counter, excl, verb);
        self.sets
            .insert((family, table.to_string(), set.name.clone()), set.clone());
        let elems = match typed {
            Some(t) => Some(t),
            None => v
                .get("elem")
                .and_then(Value::as_array)
                .map(|a| Elems::Json(a.as_slice())),
        };
        if let Some(e) = elems {
            if e.len() > 0 {
                self.elements(family, table, &set, e, false, false, true)?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_set(
        &mut self,
        family: u8,
        table: &str,
        set: &SetInfo,
        size: Option<u32>,
        counter: bool,
        excl: u16,
        verb: &str,
    ) {
        let at = self.msg(
            NFT_MSG_NEWSET,
            NLM_F_CREATE | excl,
            family,
            format!("{verb} set {} {table} {}", family_name(family), set.name),
            None,
        );
        self.w.put_str(NFTA_SET_TABLE, table);
        self.w.put_str(NFTA_SET_NAME, &set.name);
        self.w.put_be32(NFTA_SET_FLAGS, set.flags);
        let key_type = set.types.iter().fold(0u32, |acc, t| (acc << 6) | t.id());
        self.w.put_be32(NFTA_SET_KEY_TYPE, key_type);
        self.w.put_be32(NFTA_SET_KEY_LEN, set.key_len() as u32);
        if let Some(id) = set.id {
            self.w.put_be32(NFTA_SET_ID, id);
        }
        let concat_desc = set.concat() && set.interval();
        if size.is_some() || concat_desc {
            let d = self.w.nest(NFTA_SET_DESC);
            if let Some(s) = size {
                self.w.put_be32(NFTA_SET_DESC_SIZE, s);
            }
            if concat_desc {
                let c = self.w.nest(NFTA_SET_DESC_CONCAT);
                for t in &set.types {
                    let e = self.w.nest(NFTA_LIST_ELEM);
                    self.w.put_be32(NFTA_SET_FIELD_LEN, t.len() as u32);
                    self.w.end_nest(e);
                }
                self.w.end_nest(c);
            }
            self.w.end_nest(d);
        }
        // User data as nft writes it: the key's byte order, and for a
        // concatenation the typeof marker nft 1.0.6 adds.
        let mut ud = Vec::new();
        let order = if set.concat() {
            BYTEORDER_INVALID
        } else {
            set.types[0].byteorder()
        };
        ud.extend_from_slice(&[0, 4]);
        ud.extend_from_slice(&order.to_ne_bytes());
        if set.concat() {
            ud.extend_from_slice(&[3, 8, 0, 4, 13, 0, 0, 0, 1, 0]);
        }
        self.w.put(NFTA_SET_USERDATA, &ud);
        if counter {
            let e = self.w.nest(NFTA_SET_EXPR);
            self.w.put_str(NFTA_EXPR_NAME, "counter");
            let d = self.w.nest(NFTA_EXPR_DATA);
            self.w.end_nest(d);
            self.w.end_nest(e);
        }
        self.w.end_msg(at);
    }

    /// Adds (or deletes) elements of `set`, in messages of at most
    /// `ELEMENT_CHUNK` bytes of elements each.
    #[allow(clippy::too_many_arguments)]
    pub fn elements(
        &mut self,
        family: u8,
        table: &str,
        set: &SetInfo,
        elems: Elems<'_>,
        delete: bool,
        excl: bool,
        creating: bool,
    ) -> Result<(), Error> {
        let n = elems.len();
        if n == 0 {
            return Ok(());
        }
        let kl = set.key_len();
        let bad = |e: String| Error::Invalid(format!("set {}: {e}", set.name));
        let mut wire: Vec<WireElem> = Vec::with_capacity(n);
        if set.interval() && !set.concat() {
            // A plain interval set holds the boundaries of its intervals: the
            // first value, and the value after the last one flagged as an end.
            let mut keys: Vec<Key> = (0..n)
                .map(|i| elems.key(i, set))
                .collect::<Result<_, _>>()
                .map_err(bad)?;
            keys.sort_by(|a, b| a.start[..kl].cmp(&b.start[..kl]));
            for w in keys.windows(2) {
                if w[1].start[..kl] <= w[0].end[..kl] {
                    return Err(Error::Invalid(format!(
                        "conflicting intervals specified in set {}",
                        set.name
                    )));
                }
            }
            if creating && !delete && keys[0].start[..kl].iter().any(|b| *b != 0) {
                wire.push(WireElem {
                    key: [0; 64],
                    key_end: None,
                    interval_end: true,
                    open: false,
                });
            }
            for k in &keys {
                let next = successor(&k.end[..kl]);
                wire.push(WireElem {
                    key: k.start,
                    key_end: None,
                    interval_end: false,
                    open: next.is_none(),
                });
                if let Some(nx) = next {
                    let mut key = [0u8; 64];
                    key[..kl].copy_from_slice(&nx);
                    wire.push(WireElem {
                        key,
                        key_end: None,
                        interval_end: true,
                        open: false,
                    });
                }
            }
        } else {
            let interval = set.interval();
            for i in 0..n {
                let k = elems.key(i, set).map_err(bad)?;
                if !interval && k.start[..kl] != k.end[..kl] {
                    return Err(bad(format!(
                        "element {} is an interval, the set has no interval flag",
                        i + 1
                    )));
                }
                wire.push(WireElem {
                    key: k.start,
                    key_end: interval.then_some(k.end),
                    interval_end: false,
                    open: false,
                });
            }
        }
        let verb = if delete { "delete" } else { "add" };
        let fam = family_name(family);
        let mut i = 0;
        while i < wire.len() {
            let at = self.msg(
                if delete {
                    NFT_MSG_DELSETELEM
                } else {
                    NFT_MSG_NEWSETELEM
                },
                if delete {
                    0
                } else {
                    NLM_F_CREATE | if excl { NLM_F_EXCL } else { 0 }
                },
                family,
                format!("{verb} element {fam} {table} {}", set.name),
                Some(set.clone()),
            );
            self.w.put_str(NFTA_SET_ELEM_LIST_TABLE, table);
            self.w.put_str(NFTA_SET_ELEM_LIST_SET, &set.name);
            if let (false, Some(id)) = (delete, set.id) {
                self.w.put_be32(NFTA_SET_ELEM_LIST_SET_ID, id);
            }
            let list = self.w.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
            let mut index = 0u16;
            while i < wire.len() && self.w.buf.len() - list < ELEMENT_CHUNK {
                let e = &wire[i];
                index = index.wrapping_add(1);
                let el = self.w.nest(index);
                if e.interval_end {
                    self.w
                        .put_be32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
                }
                self.w.put_data(NFTA_SET_ELEM_KEY, &e.key[..kl]);
                if let Some(end) = &e.key_end {
                    self.w.put_data(NFTA_SET_ELEM_KEY_END, &end[..kl]);
                }
                if e.open {
                    // NFTNL_UDATA_SET_ELEM_FLAGS = NFTNL_SET_ELEM_F_INTERVAL_OPEN
                    self.w.put(NFTA_SET_ELEM_USERDATA, &[1, 4, 1, 0, 0, 0]);
                }
                self.w.end_nest(el);
                i += 1;
            }
            self.w.end_nest(list);
            self.w.end_msg(at);
        }
        Ok(())
    }

    fn add_rule(&mut self, verb: &str, family: u8, v: &Value) -> Result<(), Error> {
        let table = str_of(v, "table", "rule")?;
        let chain = str_of(v, "chain", "rule")?;
        let comment = v.get("comment").and_then(Value::as_str);
        let stmts = v
            .get("expr")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Invalid(format!("rule without 'expr': {v}")))?;
        let mut lin = Lin::new(family);
        for s in stmts {
            lin.stmt(self, table, s)?;
        }
        // Meters' sets come before the rule that fills them.
        for (set, size) in std::mem::take(&mut lin.meters) {
            self.emit_set(family, table, &set, Some(size), false, 0, "add");
            self.sets
                .insert((family, table.to_string(), set.name.clone()), set);
        }
        let flags = NLM_F_CREATE
            | match verb {
                "insert" => 0,
                "create" => NLM_F_APPEND | NLM_F_EXCL,
                _ => NLM_F_APPEND,
            };
        let what = match comment {
            Some(c) => format!(
                "{verb} rule {} {table} {chain} (comment \"{c}\")",
                family_name(family)
            ),
            None => format!("{verb} rule {} {table} {chain}", family_name(family)),
        };
        let at = self.msg(NFT_MSG_NEWRULE, flags, family, what, None);
        self.w.put_str(NFTA_RULE_TABLE, table);
        self.w.put_str(NFTA_RULE_CHAIN, chain);
        let e = self.w.nest(NFTA_RULE_EXPRESSIONS);
        self.w.buf.extend_from_slice(&lin.w.buf);
        self.w.end_nest(e);
        if let Some(c) = comment {
            let mut ud = vec![0u8, (c.len() + 1) as u8];
            ud.extend_from_slice(c.as_bytes());
            ud.push(0);
            self.w.put(NFTA_RULE_USERDATA, &ud);
        }
        self.w.end_msg(at);
        Ok(())
    }
}

// ---- rules: statements → kernel expressions ----------------------------------------

/// What a left-hand expression loads.
#[derive(Debug, Clone)]
enum Load {
    Meta(u32),
    Payload { base: u32, offset: u32 },
    Ct { key: u32, dir: Option<u8> },
}

#[derive(Debug, Clone)]
struct Left {
    load: Load,
    dt: DataType,
    len: usize,
    /// Needs this network protocol (nfproto 2 or 10).
    net: Option<u8>,
    /// Needs this transport protocol.
    l4: Option<u8>,
    /// Host byte order in registers.
    host: bool,
}

fn left_of(v: &Value) -> Result<Left, Error> {
    let unsupported = || Error::Unsupported(format!("expression {v}"));
    if let Some(m) = v.get("meta") {
        let key = m
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(unsupported)?;
        let (k, dt, host) = match key {
            "iifname" => (6, DataType::Ifname, true),
            "oifname" => (7, DataType::Ifname, true),
            "l4proto" => (16, DataType::InetProto, true),
            "nfproto" => (15, DataType::Nfproto, true),
            "protocol" => (1, DataType::EtherType, false),
            "mark" => (3, DataType::Mark, true),
            _ => return Err(unsupported()),
        };
        return Ok(Left {
            load: Load::Meta(k),
            dt,
            len: dt.len(),
            net: None,
            l4: None,
            host,
        });
    }
    if let Some(p) = v.get("payload") {
        let proto = p
            .get("protocol")
            .and_then(Value::as_str)
            .ok_or_else(unsupported)?;
        let field = p
            .get("field")
            .and_then(Value::as_str)
            .ok_or_else(unsupported)?;
        let (base, offset, dt, net, l4) = match (proto, field) {
            ("ip", "saddr") => (1, 12, DataType::Ipv4Addr, Some(2), None),
            ("ip", "daddr") => (1, 16, DataType::Ipv4Addr, Some(2), None),
            ("ip", "protocol") => (1, 9, DataType::InetProto, Some(2), None),
            ("ip6", "saddr") => (1, 8, DataType::Ipv6Addr, Some(10), None),
            ("ip6", "daddr") => (1, 24, DataType::Ipv6Addr, Some(10), None),
            ("ip6", "nexthdr") => (1, 6, DataType::InetProto, Some(10), None),
            ("th", "sport") => (2, 0, DataType::InetService, None, None),
            ("th", "dport") => (2, 2, DataType::InetService, None, None),
            ("tcp", "sport") => (2, 0, DataType::InetService, None, Some(6)),
            ("tcp", "dport") => (2, 2, DataType::InetService, None, Some(6)),
            ("udp", "sport") => (2, 0, DataType::InetService, None, Some(17)),
            ("udp", "dport") => (2, 2, DataType::InetService, None, Some(17)),
            ("icmp", "type") => (2, 0, DataType::IcmpType, Some(2), Some(1)),
            ("icmpv6", "type") => (2, 0, DataType::Icmpv6Type, Some(10), Some(58)),
            _ => return Err(unsupported()),
        };
        return Ok(Left {
            load: Load::Payload { base, offset },
            dt,
            len: dt.len(),
            net,
            l4,
            host: false,
        });
    }
    if let Some(c) = v.get("ct") {
        let key = c
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(unsupported)?;
        let dir = match c.get("dir").and_then(Value::as_str) {
            None => None,
            Some("original") => Some(0u8),
            Some("reply") => Some(1u8),
            Some(_) => return Err(unsupported()),
        };
        let (k, dt, host) = match key {
            "state" => (0, DataType::CtState, true),
            "mark" => (3, DataType::Mark, true),
            "l3proto" => (7, DataType::Nfproto, true),
            "protocol" => (10, DataType::InetProto, false),
            "proto-src" => (11, DataType::InetService, false),
            "proto-dst" => (12, DataType::InetService, false),
            "ip saddr" => (19, DataType::Ipv4Addr, false),
            "ip daddr" => (20, DataType::Ipv4Addr, false),
            "ip6 saddr" => (21, DataType::Ipv6Addr, false),
            "ip6 daddr" => (22, DataType::Ipv6Addr, false),
            _ => return Err(unsupported()),
        };
        return Ok(Left {
            load: Load::Ct { key: k, dir },
            dt,
            len: dt.len(),
            net: None,
            l4: None,
            host,
        });
    }
    Err(unsupported())
}

/// Register number of a 32-bit register unit as nft writes it (128-bit
/// registers where aligned, for compatibility).
fn reg(unit: usize) -> u32 {
    if unit.is_multiple_of(4) {
        1 + (unit / 4) as u32
    } else {
        8 + unit as u32
    }
}

const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
const CMP_LT: u32 = 2;
const CMP_LTE: u32 = 3;
const CMP_GT: u32 = 4;
const CMP_GTE: u32 = 5;

/// Linearizes one rule's statements.
struct Lin {
    family: u8,
    w: Writer,
    /// The network protocol the rule has established (nfproto number).
    net: Option<u8>,
    /// The transport protocol the rule has established.
    l4: Option<u8>,
    meters: Vec<(SetInfo, u32)>,
}

impl Lin {
    fn new(family: u8) -> Lin {
        let net = match family {
            2 => Some(2),
            10 => Some(10),
            _ => None,
        };
        Lin {
            family,
            w: Writer::default(),
            net,
            l4: None,
            meters: Vec::new(),
        }
    }

    fn expr(&mut self, name: &str, f: impl FnOnce(&mut Writer)) {
        let e = self.w.nest(NFTA_LIST_ELEM);
        self.w.put_str(NFTA_EXPR_NAME, name);
        let d = self.w.nest(NFTA_EXPR_DATA);
        f(&mut self.w);
        self.w.end_nest(d);
        self.w.end_nest(e);
    }

    fn cmp(&mut self, sreg: u32, op: u32, data: &[u8]) {
        self.expr("cmp", |w| {
            w.put_be32(1, sreg);
            w.put_be32(2, op);
            w.put_data(3, data);
        });
    }

    fn meta_load(&mut self, key: u32, dreg: u32) {
        self.expr("meta", |w| {
            w.put_be32(2, key);
            w.put_be32(1, dreg);
        });
    }

    /// The dependencies nft adds before an expression that needs a protocol.
    fn deps(&mut self, l: &Left) -> Result<(), Error> {
        if let Some(net) = l.net {
            match self.net {
                Some(n) if n == net => {}
                Some(_) => {
                    return Err(Error::Invalid(
                        "conflicting network protocols in one rule".into(),
                    ))
                }
                None => {
                    match self.family {
                        1 => {
                            self.meta_load(15, 1);
                            self.cmp(1, CMP_EQ, &[net]);
                        }
                        7 | 5 => {
                            let et: u16 = if net == 2 { 0x0800 } else { 0x86dd };
                            self.meta_load(1, 1);
                            self.cmp(1, CMP_EQ, &et.to_be_bytes());
                        }
                        _ => {
                            return Err(Error::Unsupported(format!(
                                "protocol dependency in family {}",
                                family_name(self.family)
                            )))
                        }
                    }
                    self.net = Some(net);
                }
            }
        }
        if let Some(l4) = l.l4 {
            if self.l4 != Some(l4) {
                if self.l4.is_some() {
                    return Err(Error::Invalid(
                        "conflicting transport protocols in one rule".into(),
                    ));
                }
                self.meta_load(16, 1);
                self.cmp(1, CMP_EQ, &[l4]);
                self.l4 = Some(l4);
            }
        }
        Ok(())
    }

    fn load(&mut self, l: &Left, dreg: u32) {
        match l.load {
            Load::Meta(k) => self.meta_load(k, dreg),
            Load::Payload { base, offset } => self.expr("payload", |w| {
                w.put_be32(1, dreg);
                w.put_be32(2, base);
                w.put_be32(3, offset);
                w.put_be32(4, l.len as u32);
            }),
            Load::Ct { key, dir } => self.expr("ct", |w| {
                w.put_be32(2, key);
                w.put_be32(1, dreg);
                if let Some(d) = dir {
                    w.put(3, &[d]);
                }
            }),
        }
    }

    fn verdict(&mut self, code: i32, chain: Option<&str>) {
        self.expr("immediate", |w| {
            w.put_be32(1, 0);
            let d = w.nest(2);
            let v = w.nest(NFTA_DATA_VERDICT);
            w.put_be32(NFTA_VERDICT_CODE, code as u32);
            if let Some(c) = chain {
                w.put_str(NFTA_VERDICT_CHAIN, c);
            }
            w.end_nest(v);
            w.end_nest(d);
        });
    }

    fn stmt(&mut self, b: &mut Batch<'_>, table: &str, s: &Value) -> Result<(), Error> {
        let unsupported = || Error::Unsupported(format!("statement {s}"));
        let Some(obj) = s.as_object() else {
            return Err(unsupported());
        };
        let Some((name, body)) = obj.iter().next() else {
            return Err(unsupported());
        };
        match name.as_str() {
            "match" => self.matches(b, table, body),
            "counter" => {
                self.expr("counter", |_| {});
                Ok(())
            }
            "accept" => {
                self.verdict(NF_ACCEPT, None);
                Ok(())
            }
            "drop" => {
                self.verdict(NF_DROP, None);
                Ok(())
            }
            "continue" => {
                self.verdict(NFT_CONTINUE, None);
                Ok(())
            }
            "return" => {
                self.verdict(NFT_RETURN, None);
                Ok(())
            }
            "jump" | "goto" => {
                let target = body
                    .get("target")
                    .and_then(Value::as_str)
                    .ok_or_else(unsupported)?;
                let code = if name == "jump" { NFT_JUMP } else { NFT_GOTO };
                self.verdict(code, Some(target));
                Ok(())
            }
            "limit" => self.limit(body),
            "log" => self.log(body),
            "reject" => self.reject(body),
            "meter" => self.meter(b, body),
            _ => Err(unsupported()),
        }
    }

    fn limit(&mut self, l: &Value) -> Result<(), Error> {
        let bad = || Error::Unsupported(format!("limit {l}"));
        let rate = l.get("rate").and_then(Value::as_u64).ok_or_else(bad)?;
        let unit: u64 = match l.get("per").and_then(Value::as_str).unwrap_or("second") {
            "second" => 1,
            "minute" => 60,
            "hour" => 3600,
            "day" => 86400,
            "week" => 604800,
            _ => return Err(bad()),
        };
        if l.get("rate_unit").is_some_and(|u| u != "packets") {
            return Err(bad());
        }
        let burst = l.get("burst").and_then(Value::as_u64).unwrap_or(5) as u32;
        let inv = l.get("inv").and_then(Value::as_bool).unwrap_or(false);
        self.expr("limit", |w| {
            w.put_be64(1, rate);
            w.put_be64(2, unit);
            w.put_be32(3, burst);
            w.put_be32(4, 0);
            w.put_be32(5, inv as u32);
        });
        Ok(())
    }

    fn log(&mut self, l: &Value) -> Result<(), Error> {
        let bad = || Error::Unsupported(format!("log {l}"));
        let prefix = l.get("prefix").and_then(Value::as_str);
        let level = match l.get("level").and_then(Value::as_str) {
            None => None,
            Some(s) => Some(
                [
                    "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit",
                ]
                .iter()
                .position(|x| *x == s)
                .ok_or_else(bad)? as u32,
            ),
        };
        let mut flags = 0u32;
        for f in l
            .get("flags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            flags |= match f.as_str() {
                Some("tcp sequence") => 1,
                Some("tcp options") => 2,
                Some("ip options") => 4,
                Some("skuid") => 8,
                Some("ether") => 0x20,
                Some("all") => 0x2f,
                _ => return Err(bad()),
            };
        }
        if l.get("group").is_some() || l.get("snaplen").is_some() {
            return Err(bad());
        }
        self.expr("log", |w| {
            if let Some(p) = prefix {
                w.put_str(2, p);
            }
            if let Some(lv) = level {
                w.put_be32(5, lv);
            }
            if flags != 0 {
                w.put_be32(6, flags);
            }
        });
        Ok(())
    }

    fn reject(&mut self, r: &Value) -> Result<(), Error> {
        let bad = || Error::Unsupported(format!("reject {r}"));
        let ty = r.get("type").and_then(Value::as_str);
        let code_name = r.get("expr").and_then(Value::as_str);
        let (kind, code): (u32, u8) = match (ty, self.family) {
            (Some("tcp reset"), _) => {
                self.deps(&Left {
                    load: Load::Meta(16),
                    dt: DataType::InetProto,
                    len: 1,
                    net: None,
                    l4: Some(6),
                    host: true,
                })?;
                (1, 0)
            }
            (Some("icmpx"), _) | (None, 1) | (None, 7) | (None, 5) => {
                let c = match code_name.unwrap_or("port-unreachable") {
                    "no-route" => 0,
                    "port-unreachable" => 1,
                    "host-unreachable" => 2,
                    "admin-prohibited" => 3,
                    _ => return Err(bad()),
                };
                (2, c)
            }
            _ => return Err(bad()),
        };
        self.expr("reject", |w| {
            w.put_be32(1, kind);
            w.put(2, &[code]);
        });
        Ok(())
    }

    fn meter(&mut self, b: &mut Batch<'_>, m: &Value) -> Result<(), Error> {
        let bad = || Error::Unsupported(format!("meter {m}"));
        let name = m.get("name").and_then(Value::as_str).ok_or_else(bad)?;
        let key = left_of(m.get("key").ok_or_else(bad)?)?;
        let inner = m.get("stmt").ok_or_else(bad)?;
        let limit = inner.get("limit").ok_or_else(bad)?;
        let size = m.get("size").and_then(Value::as_u64).unwrap_or(0xffff) as u32;
        let id = b.next_set_id;
        b.next_set_id += 1;
        self.deps(&key)?;
        self.load(&key, 1);
        let set = SetInfo {
            name: name.to_string(),
            types: vec![key.dt],
            flags: NFT_SET_ANONYMOUS | NFT_SET_EVAL,
            id: Some(id),
        };
        // The limit is written inside the dynset expression.
        let mut sub = Lin::new(self.family);
        sub.limit(limit)?;
        // `sub.w` holds one NFTA_LIST_ELEM nest: its content is the expression.
        let inner_bytes = sub.w.buf[4..].to_vec();
        self.expr("dynset", |w| {
            w.put_be32(4, 1);
            w.put_be32(3, 0);
            w.put_str(1, name);
            w.put_be32(2, id);
            let e = w.nest(7);
            w.buf.extend_from_slice(&inner_bytes);
            w.end_nest(e);
        });
        self.meters.push((set, size));
        Ok(())
    }

    fn matches(&mut self, b: &mut Batch<'_>, table: &str, m: &Value) -> Result<(), Error> {
        let bad = || Error::Unsupported(format!("match {m}"));
        let op = m.get("op").and_then(Value::as_str).unwrap_or("==");
        let left = m.get("left").ok_or_else(bad)?;
        let right = m.get("right").ok_or_else(bad)?;
        // Set lookup.
        if let Some(name) = right.as_str().and_then(|s| s.strip_prefix('@')) {
            let set = b.set_info(self.family, table, name)?;
            let fields: Vec<Left> = match left.get("concat").and_then(Value::as_array) {
                Some(parts) => parts.iter().map(left_of).collect::<Result<_, _>>()?,
                None => vec![left_of(left)?],
            };
            if fields.len() != set.types.len() {
                return Err(Error::Invalid(format!(
                    "the key of set {name} has {} fields, the lookup {}",
                    set.types.len(),
                    fields.len()
                )));
            }
            for f in &fields {
                self.deps(f)?;
            }
            let mut unit = 0;
            for f in &fields {
                let r = reg(unit);
                self.load(f, r);
                if set.concat() && set.interval() && f.host {
                    if f.len != 1 {
                        return Err(Error::Unsupported(format!(
                            "host-order field in a concatenated interval set: {m}"
                        )));
                    }
                    self.expr("byteorder", |w| {
                        w.put_be32(1, r);
                        w.put_be32(2, r);
                        w.put_be32(3, 1);
                        w.put_be32(4, 1);
                        w.put_be32(5, 2);
                    });
                }
                unit += reg_space(f.len) / 4;
            }
            let inv = match op {
                "==" | "in" => false,
                "!=" => true,
                _ => return Err(bad()),
            };
            self.expr("lookup", |w| {
                w.put_be32(2, 1);
                w.put_str(1, name);
                if let Some(id) = set.id {
                    w.put_be32(4, id);
                }
                if inv {
                    w.put_be32(5, 1);
                }
            });
            return Ok(());
        }
        let l = left_of(left)?;
        self.deps(&l)?;
        // ct state and other flags: a list (or `in`) tests for any of the bits.
        if l.dt == DataType::CtState && (op == "in" || (right.is_array() && op != "==")) {
            let mask = l.dt.parse(right).map_err(Error::Invalid)?;
            self.load(&l, 1);
            self.expr("bitwise", |w| {
                w.put_be32(1, 1);
                w.put_be32(2, 1);
                w.put_be32(3, 4);
                w.put_data(4, &mask);
                w.put_data(5, &[0, 0, 0, 0]);
            });
            self.cmp(1, if op == "!=" { CMP_EQ } else { CMP_NEQ }, &[0, 0, 0, 0]);
            return Ok(());
        }
        if let Some(r) = right.get("range").and_then(Value::as_array) {
            if r.len() != 2 || l.host {
                return Err(bad());
            }
            let lo = l.dt.parse(&r[0]).map_err(Error::Invalid)?;
            let hi = l.dt.parse(&r[1]).map_err(Error::Invalid)?;
            self.load(&l, 1);
            match op {
                "==" => {
                    self.cmp(1, CMP_GTE, &lo);
                    self.cmp(1, CMP_LTE, &hi);
                }
                "!=" => self.expr("range", |w| {
                    w.put_be32(1, 1);
                    w.put_be32(2, 1);
                    w.put_data(3, &lo);
                    w.put_data(4, &hi);
                }),
                _ => return Err(bad()),
            }
            return Ok(());
        }
        if let Some(p) = right.get("prefix") {
            if !l.dt.prefixes() {
                return Err(bad());
            }
            let mut start = [0u8; 64];
            let mut end = [0u8; 64];
            field_json(l.dt, right, &mut start, &mut end).map_err(Error::Invalid)?;
            let bits = p.get("len").and_then(Value::as_u64).ok_or_else(bad)? as usize;
            // nft loads only the prefix's bytes when it ends on a byte, else
            // the whole field and a mask.
            let bytes = if bits.is_multiple_of(8) {
                bits / 8
            } else {
                l.len
            };
            let mut short = l.clone();
            short.len = bytes;
            self.load(&short, 1);
            if !bits.is_multiple_of(8) {
                let mut mask = vec![0u8; bytes];
                for (i, m) in mask.iter_mut().enumerate() {
                    let keep = (bits as i64 - (i as i64) * 8).clamp(0, 8) as u32;
                    *m = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
                }
                self.expr("bitwise", |w| {
                    w.put_be32(1, 1);
                    w.put_be32(2, 1);
                    w.put_be32(3, bytes as u32);
                    w.put_data(4, &mask);
                    w.put_data(5, &vec![0u8; bytes]);
                });
            }
            let cop = match op {
                "==" => CMP_EQ,
                "!=" => CMP_NEQ,
                _ => return Err(bad()),
            };
            self.cmp(1, cop, &start[..bytes]);
            return Ok(());
        }
        if right.is_array() && l.dt != DataType::CtState {
            return Err(Error::Unsupported(format!("anonymous set in {m}")));
        }
        if l.dt == DataType::Ifname && right.as_str().is_some_and(|s| s.ends_with('*')) {
            return Err(Error::Unsupported(format!("interface wildcard in {m}")));
        }
        let data = l.dt.parse(right).map_err(Error::Invalid)?;
        let cop = match op {
            "==" => CMP_EQ,
            "!=" => CMP_NEQ,
            "<" => CMP_LT,
            "<=" => CMP_LTE,
            ">" => CMP_GT,
            ">=" => CMP_GTE,
            _ => return Err(bad()),
        };
        self.load(&l, 1);
        self.cmp(1, cop, &data);
        if cop == CMP_EQ {
            match l.load {
                Load::Meta(16) => self.l4 = Some(data[0]),
                Load::Meta(15) => self.net = Some(data[0]),
                Load::Meta(1) if data == [0x08, 0x00] => self.net = Some(2),
                Load::Meta(1) if data == [0x86, 0xdd] => self.net = Some(10),
                _ => {}
            }
        }
        Ok(())
    }
}
