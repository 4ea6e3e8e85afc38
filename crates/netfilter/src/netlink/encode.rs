//! Typed nftables objects → one nf_tables netlink batch, written the way nft
//! 1.0.6 writes them (same expressions, registers, dependencies, set flags and
//! user data), so that the kernel holds exactly what `nft -f` would have made
//! of the same table and `nft list` prints the same text. Attribute and
//! expression numbers are the constants of linux/netfilter/nf_tables.h
//! ([`super::types`]). [`Batch::typed`] takes the `nftables` crate's typed
//! commands (the compiled tables' path: no JSON anywhere); nft's JSON as input
//! is [`crate::nft_json`]'s, which writes through the same emitters.
//!
//! The attributes are written by hand into one buffer: a batch of 100k set
//! elements is one pass over the elements with each nest's length patched when
//! it closes, as libmnl does.

use super::types::*;
use super::Error;
use crate::compile::Dim;
use ipnet::IpNet;
use nftables::expr::{CTDir, Expression, MetaKey, NamedExpression, Payload};
use nftables::schema::{NfCmd, NfListObject, NfObject, SetFlag, SetType, SetTypeValue};
use nftables::stmt::{self, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
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
/// A set's size (a hash set's capacity) and how often the kernel collects
/// its expired elements.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SetSize {
    pub(crate) elements: Option<u32>,
    pub(crate) gc_interval_ms: Option<u32>,
}

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

pub(crate) fn scalar_into(t: DataType, s: Scalar<'_>, out: &mut [u8]) -> Result<(), String> {
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
            let b = t.parse_scalar(s)?;
            out[..b.len()].copy_from_slice(&b);
        }
    }
    Ok(())
}

/// Host mask of a prefix over `len` bytes: sets `start` to the network and
/// `end` to the last address.
pub(crate) fn apply_prefix(
    bits: u32,
    len: usize,
    start: &mut [u8],
    end: &mut [u8],
) -> Result<(), String> {
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

fn typed_scalar<'e>(e: &'e Expression<'_>) -> Option<Scalar<'e>> {
    match e {
        Expression::String(s) => Some(Scalar::Str(s)),
        Expression::Number(n) => Some(Scalar::Num(*n as u64)),
        _ => None,
    }
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
    /// Keys already laid out (nft's JSON, parsed by [`crate::nft_json`]).
    Keys(&'a [Key]),
    Typed(&'a [Expression<'a>]),
    /// Compiled elements, written without any text in between, and the
    /// counter values some of them start with (by element index).
    Dims(&'a [crate::compile::Element], Option<&'a ElementCounters>),
}

/// Counter values (packets, bytes) that elements start with, by index.
pub type ElementCounters = HashMap<usize, (u64, u64)>;

/// The elements a compiled table's sets take (by set name), and the counter
/// values some of them start with (by set name, then element index).
#[derive(Clone, Copy)]
pub struct CompiledElements<'a> {
    pub elements: &'a HashMap<&'a str, &'a [crate::compile::Element]>,
    pub counters: Option<&'a HashMap<String, ElementCounters>>,
}

impl Elems<'_> {
    fn len(&self) -> usize {
        match self {
            Elems::Keys(v) => v.len(),
            Elems::Typed(v) => v.len(),
            Elems::Dims(v, _) => v.len(),
        }
    }

    /// The timeout of element `i` in milliseconds, if it has one; `Err`
    /// when its deadline has passed (it is not to be added at all).
    fn timeout_ms(&self, i: usize) -> Result<Option<u64>, ()> {
        match self {
            Elems::Dims(v, _) => match v[i].until {
                None => Ok(None),
                Some(d) => crate::compile::timeout_left(d)
                    .map(|left| Some(left.as_millis().max(1) as u64))
                    .ok_or(()),
            },
            Elems::Typed(v) => match &v[i] {
                Expression::Named(NamedExpression::Elem(el)) => {
                    Ok(el.timeout.map(|t| u64::from(t) * 1000))
                }
                _ => Ok(None),
            },
            Elems::Keys(_) => Ok(None),
        }
    }

    /// The counter value element `i` starts with, if it is given one.
    fn counter(&self, i: usize) -> Option<(u64, u64)> {
        match self {
            Elems::Dims(_, Some(counters)) => counters.get(&i).copied(),
            _ => None,
        }
    }

    /// The key of element `i` in `set`.
    pub fn key_at(&self, i: usize, set: &SetInfo) -> Result<Key, String> {
        self.key(i, set)
    }

    fn key(&self, i: usize, set: &SetInfo) -> Result<Key, String> {
        match self {
            Elems::Dims(v, _) => return dims_key(set, &v[i].key),
            Elems::Keys(v) => return Ok(v[i].clone()),
            Elems::Typed(_) => {}
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
            Elems::Dims(..) | Elems::Keys(_) => unreachable!("handled above"),
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
    /// The (packets, bytes) its counter starts with.
    counter: Option<(u64, u64)>,
    /// When the kernel removes it, in milliseconds from now.
    timeout_ms: Option<u64>,
}

/// The attributes of a `counter` expression created with a value.
fn put_counter(w: &mut Writer, packets: u64, bytes: u64) {
    w.put_be64(NFTA_COUNTER_BYTES, bytes);
    w.put_be64(NFTA_COUNTER_PACKETS, packets);
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

/// What a command does to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Add,
    Create,
    Insert,
    Delete,
    Destroy,
    Flush,
}

impl Verb {
    /// The verb as nft's JSON names it.
    pub fn from_name(s: &str) -> Option<Verb> {
        Some(match s {
            "add" => Verb::Add,
            "create" => Verb::Create,
            "insert" => Verb::Insert,
            "delete" => Verb::Delete,
            "destroy" => Verb::Destroy,
            "flush" => Verb::Flush,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Add => "add",
            Verb::Create => "create",
            Verb::Insert => "insert",
            Verb::Delete => "delete",
            Verb::Destroy => "destroy",
            Verb::Flush => "flush",
        }
    }
}

/// A base chain's hook, type and policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hook<'a> {
    pub(crate) hooknum: u32,
    pub(crate) prio: i32,
    pub(crate) ty: &'a str,
    /// `NF_ACCEPT` or `NF_DROP`.
    pub(crate) policy: Option<u32>,
    pub(crate) dev: Option<&'a str>,
}

/// The `NFPROTO_*` number of a family.
pub(crate) fn nf_family(f: NfFamily) -> u8 {
    match f {
        NfFamily::INet => NFPROTO_INET,
        NfFamily::IP => NFPROTO_IPV4,
        NfFamily::IP6 => NFPROTO_IPV6,
        NfFamily::ARP => NFPROTO_ARP,
        NfFamily::Bridge => NFPROTO_BRIDGE,
        NfFamily::NetDev => NFPROTO_NETDEV,
    }
}

/// The `NF_INET_*` number of a hook.
fn hook_of(h: NfHook) -> u32 {
    match h {
        NfHook::Prerouting => 0,
        NfHook::Input => 1,
        NfHook::Forward => 2,
        NfHook::Output => 3,
        NfHook::Postrouting => 4,
        NfHook::Ingress => 0,
        NfHook::Egress => 1,
    }
}

/// The key type of a typed set.
fn data_type_of(t: SetType) -> Option<DataType> {
    Some(match t {
        SetType::Ipv4Addr => DataType::Ipv4Addr,
        SetType::Ipv6Addr => DataType::Ipv6Addr,
        SetType::InetProto => DataType::InetProto,
        SetType::InetService => DataType::InetService,
        SetType::Mark => DataType::Mark,
        SetType::Ifname => DataType::Ifname,
        _ => return None,
    })
}

/// The tables whose sets a typed batch uses without creating them: element
/// commands and lookups in sets the batch does not add before.
pub(crate) fn tables_used(batch: &nftables::schema::Nftables<'_>) -> Vec<(u8, String)> {
    let mut created: std::collections::HashSet<(u8, &str, &str)> = Default::default();
    let mut out = Vec::new();
    let mut need = |family: u8, table: &str| {
        if !out
            .iter()
            .any(|(f, t): &(u8, String)| *f == family && t == table)
        {
            out.push((family, table.to_string()));
        }
    };
    for obj in batch.objects.iter() {
        let o = match obj {
            NfObject::CmdObject(
                NfCmd::Add(o) | NfCmd::Create(o) | NfCmd::Insert(o) | NfCmd::Delete(o),
            )
            | NfObject::ListObject(o) => o,
            _ => continue,
        };
        match o {
            NfListObject::Set(s) => {
                created.insert((nf_family(s.family), &s.table, &s.name));
            }
            NfListObject::Element(e) => {
                let family = nf_family(e.family);
                if !created.contains(&(family, &*e.table, &*e.name)) {
                    need(family, &e.table);
                }
            }
            NfListObject::Rule(r) => {
                let family = nf_family(r.family);
                let looks_up = |s: &Statement<'_>| match s {
                    Statement::Match(m) => match &m.right {
                        Expression::String(v) => v
                            .strip_prefix('@')
                            .is_some_and(|set| !created.contains(&(family, &*r.table, set))),
                        _ => false,
                    },
                    _ => false,
                };
                if r.expr.iter().any(looks_up) {
                    need(family, &r.table);
                }
            }
            _ => {}
        }
    }
    out
}

/// The batch being written.
pub struct Batch {
    pub w: Writer,
    pub msgs: Vec<Msg>,
    pub begin_seq: u32,
    next_seq: u32,
    sets: HashMap<SetKey, SetInfo>,
    next_set_id: u32,
    /// The kernel's sets the batch uses, read before it is encoded.
    kernel_sets: super::KernelSets,
}

const ELEMENT_CHUNK: usize = 60_000;

impl Batch {
    pub fn new(first_seq: u32, kernel_sets: super::KernelSets) -> Batch {
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
            kernel_sets,
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

    pub(crate) fn set_info(
        &mut self,
        family: u8,
        table: &str,
        name: &str,
    ) -> Result<SetInfo, Error> {
        let key = (family, table.to_string(), name.to_string());
        if let Some(s) = self.sets.get(&key) {
            return Ok(s.clone());
        }
        let known = self
            .kernel_sets
            .get(&(family, table.to_string()))
            .and_then(|sets| sets.iter().find(|s| s.name == name))
            .cloned();
        match known {
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

    /// One command of a typed batch: the compiled tables' path, written
    /// without any JSON. With `set_counters`, every set it adds gets a
    /// `counter` statement; the sets named in `compiled` take their elements
    /// from there.
    pub fn typed(
        &mut self,
        obj: &NfObject<'_>,
        set_counters: bool,
        compiled: Option<CompiledElements<'_>>,
    ) -> Result<(), Error> {
        let (verb, o) = match obj {
            NfObject::CmdObject(NfCmd::Add(o)) | NfObject::ListObject(o) => (Verb::Add, o),
            NfObject::CmdObject(NfCmd::Create(o)) => (Verb::Create, o),
            NfObject::CmdObject(NfCmd::Insert(o)) => (Verb::Insert, o),
            NfObject::CmdObject(NfCmd::Delete(o)) => (Verb::Delete, o),
            other => return Err(Error::Unsupported(format!("command {other:?}"))),
        };
        match o {
            NfListObject::Table(t) => self.table(verb, nf_family(t.family), &t.name),
            NfListObject::Chain(c) if verb == Verb::Delete => {
                self.table_object(verb, nf_family(c.family), "chain", &c.table, &c.name)
            }
            NfListObject::Chain(c) => {
                let family = nf_family(c.family);
                let hook = c.hook.map(|h| Hook {
                    hooknum: hook_of(h),
                    prio: c.prio.unwrap_or(0),
                    ty: match c._type {
                        Some(NfChainType::Route) => "route",
                        Some(NfChainType::NAT) => "nat",
                        _ => "filter",
                    },
                    policy: c.policy.map(|p| match p {
                        NfChainPolicy::Accept => NF_ACCEPT as u32,
                        NfChainPolicy::Drop => NF_DROP as u32,
                    }),
                    dev: c.dev.as_deref(),
                });
                self.chain(verb, family, &c.table, &c.name, hook);
                Ok(())
            }
            NfListObject::Set(set) if verb == Verb::Delete => {
                self.table_object(verb, nf_family(set.family), "set", &set.table, &set.name)
            }
            NfListObject::Set(set) => {
                let unsupported = || Error::Unsupported(format!("set {}", set.name));
                if set.timeout.is_some() || set.policy.is_some() {
                    return Err(unsupported());
                }
                let types: Vec<DataType> = match &set.set_type {
                    SetTypeValue::Single(t) => vec![data_type_of(*t).ok_or_else(unsupported)?],
                    SetTypeValue::Concatenated(ts) => ts
                        .iter()
                        .map(|t| data_type_of(*t).ok_or_else(unsupported))
                        .collect::<Result<_, _>>()?,
                };
                let mut flags = 0;
                for f in set.flags.iter().flatten() {
                    flags |= match f {
                        SetFlag::Interval => NFT_SET_INTERVAL,
                        SetFlag::Constant => NFT_SET_CONSTANT,
                        SetFlag::Timeout => NFT_SET_TIMEOUT,
                        _ => return Err(unsupported()),
                    };
                }
                if types.len() > 1 && flags & NFT_SET_INTERVAL != 0 {
                    flags |= NFT_SET_CONCAT;
                }
                let info = SetInfo {
                    name: set.name.to_string(),
                    types,
                    flags,
                    id: None,
                };
                let elems = match compiled.and_then(|c| {
                    let dims = c.elements.get(set.name.as_ref())?;
                    let counters = c.counters.and_then(|by_set| by_set.get(set.name.as_ref()));
                    Some(Elems::Dims(dims, counters))
                }) {
                    Some(dims) => Some(dims),
                    None => set.elem.as_deref().map(Elems::Typed),
                };
                let family = nf_family(set.family);
                self.set(
                    verb,
                    family,
                    &set.table,
                    info,
                    SetSize {
                        elements: set.size,
                        gc_interval_ms: set.gc_interval.map(|s| s.saturating_mul(1000)),
                    },
                    set_counters && crate::compile::set_has_counters(&set.name),
                    elems,
                )
            }
            NfListObject::Element(e) => {
                let family = nf_family(e.family);
                self.element_command(verb, family, &e.table, &e.name, Elems::Typed(&e.elem))
            }
            NfListObject::Rule(r) if verb == Verb::Delete => {
                let handle = r.handle.ok_or_else(|| {
                    Error::Invalid(format!("delete rule needs a handle: {}", r.chain))
                })?;
                let family = nf_family(r.family);
                self.delete_rule(verb, family, &r.table, &r.chain, handle as u64);
                Ok(())
            }
            NfListObject::Rule(r) => {
                let family = nf_family(r.family);
                let mut lin = Lin::new(family);
                for st in r.expr.iter() {
                    lin.statement(self, &r.table, st)?;
                }
                self.rule(verb, family, &r.table, &r.chain, r.comment.as_deref(), lin);
                Ok(())
            }
            other => Err(Error::Unsupported(format!("object {other:?}"))),
        }
    }

    /// Adds, creates or deletes a table; a flush deletes its rules.
    pub(crate) fn table(&mut self, verb: Verb, family: u8, name: &str) -> Result<(), Error> {
        let fam = family_name(family);
        let what = format!("{} table {fam} {name}", verb.as_str());
        match verb {
            Verb::Add | Verb::Create => {
                let flags = if verb == Verb::Create { NLM_F_EXCL } else { 0 };
                let at = self.msg(NFT_MSG_NEWTABLE, flags, family, what, None);
                self.w.put_str(NFTA_TABLE_NAME, name);
                self.w.put_be32(NFTA_TABLE_FLAGS, 0);
                self.w.end_msg(at);
                // A table added again keeps its sets; a deleted one loses them.
            }
            Verb::Delete | Verb::Destroy => {
                let ty = if verb == Verb::Destroy {
                    NFT_MSG_DESTROYTABLE
                } else {
                    NFT_MSG_DELTABLE
                };
                let at = self.msg(ty, 0, family, what, None);
                self.w.put_str(NFTA_TABLE_NAME, name);
                self.w.end_msg(at);
                self.sets
                    .retain(|(f, t, _), _| !(*f == family && t == name));
            }
            Verb::Flush => {
                let at = self.msg(NFT_MSG_DELRULE, 0, family, what, None);
                self.w.put_str(NFTA_RULE_TABLE, name);
                self.w.end_msg(at);
            }
            Verb::Insert => {
                return Err(Error::Unsupported(
                    "'insert table' is not supported by the netlink backend".into(),
                ))
            }
        }
        Ok(())
    }

    /// Deletes (or flushes) a chain or a set of a table.
    pub(crate) fn table_object(
        &mut self,
        verb: Verb,
        family: u8,
        kind: &str,
        table: &str,
        name: &str,
    ) -> Result<(), Error> {
        let what = format!(
            "{} {kind} {} {table} {name}",
            verb.as_str(),
            family_name(family)
        );
        let (ty, table_attr, name_attr) = match (verb, kind) {
            (Verb::Delete | Verb::Destroy, "chain") => {
                (NFT_MSG_DELCHAIN, NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME)
            }
            (Verb::Flush, "chain") => (NFT_MSG_DELRULE, NFTA_RULE_TABLE, NFTA_RULE_CHAIN),
            (Verb::Delete | Verb::Destroy, "set") => {
                (NFT_MSG_DELSET, NFTA_SET_TABLE, NFTA_SET_NAME)
            }
            (Verb::Flush, "set") => (
                NFT_MSG_DELSETELEM,
                NFTA_SET_ELEM_LIST_TABLE,
                NFTA_SET_ELEM_LIST_SET,
            ),
            _ => {
                return Err(Error::Unsupported(format!(
                    "'{} {kind}' is not supported by the netlink backend",
                    verb.as_str()
                )))
            }
        };
        let at = self.msg(ty, 0, family, what, None);
        if ty == NFT_MSG_DELSETELEM {
            // The order nft writes them in.
            self.w.put_str(name_attr, name);
            self.w.put_str(table_attr, table);
        } else {
            self.w.put_str(table_attr, table);
            self.w.put_str(name_attr, name);
        }
        self.w.end_msg(at);
        if ty == NFT_MSG_DELSET {
            self.sets
                .remove(&(family, table.to_string(), name.to_string()));
        }
        Ok(())
    }

    /// Adds (or creates) a chain, a base chain when it has a hook.
    pub(crate) fn chain(
        &mut self,
        verb: Verb,
        family: u8,
        table: &str,
        name: &str,
        hook: Option<Hook<'_>>,
    ) {
        let flags = NLM_F_CREATE | if verb == Verb::Create { NLM_F_EXCL } else { 0 };
        let at = self.msg(
            NFT_MSG_NEWCHAIN,
            flags,
            family,
            format!(
                "{} chain {} {table} {name}",
                verb.as_str(),
                family_name(family)
            ),
            None,
        );
        self.w.put_str(NFTA_CHAIN_TABLE, table);
        self.w.put_str(NFTA_CHAIN_NAME, name);
        if let Some(hook) = hook {
            self.w.put_str(NFTA_CHAIN_TYPE, hook.ty);
            if let Some(p) = hook.policy {
                self.w.put_be32(NFTA_CHAIN_POLICY, p);
            }
            let h = self.w.nest(NFTA_CHAIN_HOOK);
            self.w.put_be32(NFTA_HOOK_HOOKNUM, hook.hooknum);
            self.w.put_be32(NFTA_HOOK_PRIORITY, hook.prio as u32);
            if let Some(dev) = hook.dev {
                self.w.put_str(NFTA_HOOK_DEV, dev);
            }
            self.w.end_nest(h);
        }
        self.w.end_msg(at);
    }

    /// Adds (or creates) a set, then its elements.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set(
        &mut self,
        verb: Verb,
        family: u8,
        table: &str,
        mut set: SetInfo,
        size: SetSize,
        counter: bool,
        elems: Option<Elems<'_>>,
    ) -> Result<(), Error> {
        set.id = Some(self.next_set_id);
        self.next_set_id += 1;
        let excl = if verb == Verb::Create { NLM_F_EXCL } else { 0 };
        self.emit_set(family, table, &set, size, counter, excl, verb.as_str());
        self.sets
            .insert((family, table.to_string(), set.name.clone()), set.clone());
        if let Some(e) = elems {
            if e.len() > 0 {
                self.elements(family, table, &set, e, false, false, true)?;
            }
        }
        Ok(())
    }

    /// Adds, creates or deletes elements of a set of the batch or the kernel.
    pub(crate) fn element_command(
        &mut self,
        verb: Verb,
        family: u8,
        table: &str,
        name: &str,
        elems: Elems<'_>,
    ) -> Result<(), Error> {
        let set = self.set_info(family, table, name)?;
        let del = matches!(verb, Verb::Delete | Verb::Destroy);
        self.elements(family, table, &set, elems, del, verb == Verb::Create, false)
    }

    /// Deletes the rule with `handle`.
    pub(crate) fn delete_rule(
        &mut self,
        verb: Verb,
        family: u8,
        table: &str,
        chain: &str,
        handle: u64,
    ) {
        let at = self.msg(
            NFT_MSG_DELRULE,
            0,
            family,
            format!(
                "{} rule {} {table} {chain} handle {handle}",
                verb.as_str(),
                family_name(family)
            ),
            None,
        );
        self.w.put_str(NFTA_RULE_TABLE, table);
        self.w.put_str(NFTA_RULE_CHAIN, chain);
        self.w.put_be64(NFTA_RULE_HANDLE, handle);
        self.w.end_msg(at);
    }

    /// Adds (appends, inserts or creates) a rule of `lin`'s expressions;
    /// the sets of its meters come first.
    pub(crate) fn rule(
        &mut self,
        verb: Verb,
        family: u8,
        table: &str,
        chain: &str,
        comment: Option<&str>,
        mut lin: Lin,
    ) {
        for (set, size) in std::mem::take(&mut lin.meters) {
            self.emit_set(
                family,
                table,
                &set,
                SetSize {
                    elements: Some(size),
                    gc_interval_ms: None,
                },
                false,
                0,
                "add",
            );
            self.sets
                .insert((family, table.to_string(), set.name.clone()), set);
        }
        let flags = NLM_F_CREATE
            | match verb {
                Verb::Insert => 0,
                Verb::Create => NLM_F_APPEND | NLM_F_EXCL,
                _ => NLM_F_APPEND,
            };
        let what = match comment {
            Some(c) => format!(
                "{} rule {} {table} {chain} (comment \"{c}\")",
                verb.as_str(),
                family_name(family)
            ),
            None => format!(
                "{} rule {} {table} {chain}",
                verb.as_str(),
                family_name(family)
            ),
        };
        let at = self.msg(NFT_MSG_NEWRULE, flags, family, what, None);
        self.w.put_str(NFTA_RULE_TABLE, table);
        self.w.put_str(NFTA_RULE_CHAIN, chain);
        let e = self.w.nest(NFTA_RULE_EXPRESSIONS);
        self.w.buf.extend_from_slice(&lin.w.buf);
        self.w.end_nest(e);
        if let Some(c) = comment {
            // NFTNL_UDATA_RULE_COMMENT
            let mut ud = vec![0u8, (c.len() + 1) as u8];
            ud.extend_from_slice(c.as_bytes());
            ud.push(0);
            self.w.put(NFTA_RULE_USERDATA, &ud);
        }
        self.w.end_msg(at);
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_set(
        &mut self,
        family: u8,
        table: &str,
        set: &SetInfo,
        size: SetSize,
        counter: bool,
        excl: u16,
        verb: &str,
    ) {
        let SetSize {
            elements: size,
            gc_interval_ms,
        } = size;
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
        if let Some(ms) = gc_interval_ms {
            self.w.put_be32(NFTA_SET_GC_INTERVAL, ms);
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
            // (key, counter, timeout in ms)
            type Keyed = (Key, Option<(u64, u64)>, Option<u64>);
            let mut keys: Vec<Keyed> = (0..n)
                .filter_map(|i| {
                    let timeout = elems.timeout_ms(i).ok()?;
                    Some(elems.key(i, set).map(|k| (k, elems.counter(i), timeout)))
                })
                .collect::<Result<_, String>>()
                .map_err(bad)?;
            if keys.is_empty() {
                return Ok(());
            }
            keys.sort_by(|(a, ..), (b, ..)| a.start[..kl].cmp(&b.start[..kl]));
            for w in keys.windows(2) {
                if w[1].0.start[..kl] <= w[0].0.end[..kl] {
                    return Err(Error::Invalid(format!(
                        "conflicting intervals specified in set {}",
                        set.name
                    )));
                }
            }
            if creating && !delete && keys[0].0.start[..kl].iter().any(|b| *b != 0) {
                wire.push(WireElem {
                    key: [0; 64],
                    key_end: None,
                    interval_end: true,
                    open: false,
                    counter: None,
                    timeout_ms: None,
                });
            }
            for (k, counter, timeout_ms) in &keys {
                let next = successor(&k.end[..kl]);
                // The timeout goes on the interval's start, as nft puts it.
                wire.push(WireElem {
                    key: k.start,
                    key_end: None,
                    interval_end: false,
                    open: next.is_none(),
                    counter: *counter,
                    timeout_ms: *timeout_ms,
                });
                if let Some(nx) = next {
                    let mut key = [0u8; 64];
                    key[..kl].copy_from_slice(&nx);
                    wire.push(WireElem {
                        key,
                        key_end: None,
                        interval_end: true,
                        open: false,
                        counter: None,
                        timeout_ms: None,
                    });
                }
            }
        } else {
            let interval = set.interval();
            for i in 0..n {
                let Ok(timeout_ms) = elems.timeout_ms(i) else {
                    continue;
                };
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
                    counter: elems.counter(i),
                    timeout_ms,
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
                if let Some(ms) = e.timeout_ms {
                    self.w.put_be64(NFTA_SET_ELEM_TIMEOUT, ms);
                }
                if e.open {
                    // NFTNL_UDATA_SET_ELEM_FLAGS = NFTNL_SET_ELEM_F_INTERVAL_OPEN
                    self.w.put(NFTA_SET_ELEM_USERDATA, &[1, 4, 1, 0, 0, 0]);
                }
                if let Some((packets, bytes)) = e.counter {
                    // The element's own counter, created with a value (the
                    // set's `counter` statement gives the others theirs).
                    let x = self.w.nest(NFTA_SET_ELEM_EXPR);
                    self.w.put_str(NFTA_EXPR_NAME, "counter");
                    let d = self.w.nest(NFTA_EXPR_DATA);
                    put_counter(&mut self.w, packets, bytes);
                    self.w.end_nest(d);
                    self.w.end_nest(x);
                }
                self.w.end_nest(el);
                i += 1;
            }
            self.w.end_nest(list);
            self.w.end_msg(at);
        }
        Ok(())
    }
}

// ---- rules: statements → kernel expressions ----------------------------------------

/// What a left-hand expression loads.
#[derive(Debug, Clone)]
pub(crate) enum Load {
    Meta(u32),
    Payload { base: u32, offset: u32 },
    Ct { key: u32, dir: Option<u8> },
}

#[derive(Debug, Clone)]
pub(crate) struct Left {
    pub(crate) load: Load,
    pub(crate) dt: DataType,
    pub(crate) len: usize,
    /// Needs this network protocol (nfproto 2 or 10).
    pub(crate) net: Option<u8>,
    /// Needs this transport protocol.
    pub(crate) l4: Option<u8>,
    /// Host byte order in registers.
    pub(crate) host: bool,
}

/// `meta KEY`, for the keys portwall's tables use.
pub(crate) fn meta_left(key: &str) -> Option<Left> {
    let (k, dt, host) = match key {
        "iifname" => (NFT_META_IIFNAME, DataType::Ifname, true),
        "oifname" => (NFT_META_OIFNAME, DataType::Ifname, true),
        "l4proto" => (NFT_META_L4PROTO, DataType::InetProto, true),
        "nfproto" => (NFT_META_NFPROTO, DataType::Nfproto, true),
        "protocol" => (NFT_META_PROTOCOL, DataType::EtherType, false),
        "mark" => (NFT_META_MARK, DataType::Mark, true),
        _ => return None,
    };
    Some(Left {
        load: Load::Meta(k),
        dt,
        len: dt.len(),
        net: None,
        l4: None,
        host,
    })
}

/// A header field (`ip saddr`, `th dport`, ...): where it lies and which
/// protocols it needs.
pub(crate) fn payload_left(proto: &str, field: &str) -> Option<Left> {
    use DataType as T;
    const NH: u32 = NFT_PAYLOAD_NETWORK_HEADER;
    const TH: u32 = NFT_PAYLOAD_TRANSPORT_HEADER;
    let (v4, v6) = (Some(NFPROTO_IPV4), Some(NFPROTO_IPV6));
    let (base, offset, dt, net, l4) = match (proto, field) {
        ("ip", "saddr") => (NH, 12, T::Ipv4Addr, v4, None),
        ("ip", "daddr") => (NH, 16, T::Ipv4Addr, v4, None),
        ("ip", "protocol") => (NH, 9, T::InetProto, v4, None),
        ("ip6", "saddr") => (NH, 8, T::Ipv6Addr, v6, None),
        ("ip6", "daddr") => (NH, 24, T::Ipv6Addr, v6, None),
        ("ip6", "nexthdr") => (NH, 6, T::InetProto, v6, None),
        ("ip6", "hoplimit") => (NH, 7, T::Integer(1), v6, None),
        ("th", "sport") => (TH, 0, T::InetService, None, None),
        ("th", "dport") => (TH, 2, T::InetService, None, None),
        ("tcp", "sport") => (TH, 0, T::InetService, None, Some(IPPROTO_TCP)),
        ("tcp", "dport") => (TH, 2, T::InetService, None, Some(IPPROTO_TCP)),
        ("udp", "sport") => (TH, 0, T::InetService, None, Some(IPPROTO_UDP)),
        ("udp", "dport") => (TH, 2, T::InetService, None, Some(IPPROTO_UDP)),
        ("icmp", "type") => (TH, 0, T::IcmpType, v4, Some(IPPROTO_ICMP)),
        ("icmpv6", "type") => (TH, 0, T::Icmpv6Type, v6, Some(IPPROTO_ICMPV6)),
        _ => return None,
    };
    Some(Left {
        load: Load::Payload { base, offset },
        dt,
        len: dt.len(),
        net,
        l4,
        host: false,
    })
}

/// `ct [DIR] KEY`.
pub(crate) fn ct_left(key: &str, dir: Option<u8>) -> Option<Left> {
    let (k, dt, host) = match key {
        "state" => (NFT_CT_STATE, DataType::CtState, true),
        "mark" => (NFT_CT_MARK, DataType::Mark, true),
        "l3proto" => (NFT_CT_L3PROTOCOL, DataType::Nfproto, true),
        "protocol" => (NFT_CT_PROTOCOL, DataType::InetProto, false),
        "proto-src" => (NFT_CT_PROTO_SRC, DataType::InetService, false),
        "proto-dst" => (NFT_CT_PROTO_DST, DataType::InetService, false),
        "ip saddr" => (NFT_CT_SRC_IP, DataType::Ipv4Addr, false),
        "ip daddr" => (NFT_CT_DST_IP, DataType::Ipv4Addr, false),
        "ip6 saddr" => (NFT_CT_SRC_IP6, DataType::Ipv6Addr, false),
        "ip6 daddr" => (NFT_CT_DST_IP6, DataType::Ipv6Addr, false),
        _ => return None,
    };
    Some(Left {
        load: Load::Ct { key: k, dir },
        dt,
        len: dt.len(),
        net: None,
        l4: None,
        host,
    })
}

/// Register number of a 32-bit register unit as nft writes it (128-bit
/// registers where aligned, for compatibility).
fn reg(unit: usize) -> u32 {
    if unit.is_multiple_of(4) {
        NFT_REG_1 + (unit / 4) as u32
    } else {
        NFT_REG32_00 + unit as u32
    }
}

/// Linearizes one rule's statements.
pub(crate) struct Lin {
    family: u8,
    w: Writer,
    /// The network protocol the rule has established (nfproto number).
    net: Option<u8>,
    /// The transport protocol the rule has established.
    l4: Option<u8>,
    meters: Vec<(SetInfo, u32)>,
}

impl Lin {
    pub(crate) fn new(family: u8) -> Lin {
        let net = match family {
            NFPROTO_IPV4 | NFPROTO_IPV6 => Some(family),
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

    pub(crate) fn expr(&mut self, name: &str, f: impl FnOnce(&mut Writer)) {
        let e = self.w.nest(NFTA_LIST_ELEM);
        self.w.put_str(NFTA_EXPR_NAME, name);
        let d = self.w.nest(NFTA_EXPR_DATA);
        f(&mut self.w);
        self.w.end_nest(d);
        self.w.end_nest(e);
    }

    fn cmp(&mut self, sreg: u32, op: u32, data: &[u8]) {
        self.expr("cmp", |w| {
            w.put_be32(NFTA_CMP_SREG, sreg);
            w.put_be32(NFTA_CMP_OP, op);
            w.put_data(NFTA_CMP_DATA, data);
        });
    }

    fn meta_load(&mut self, key: u32, dreg: u32) {
        self.expr("meta", |w| {
            w.put_be32(NFTA_META_KEY, key);
            w.put_be32(NFTA_META_DREG, dreg);
        });
    }

    /// The dependencies nft adds before an expression that needs a protocol.
    pub(crate) fn deps(&mut self, l: &Left) -> Result<(), Error> {
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
                        NFPROTO_INET => {
                            self.meta_load(NFT_META_NFPROTO, NFT_REG_1);
                            self.cmp(NFT_REG_1, NFT_CMP_EQ, &[net]);
                        }
                        NFPROTO_BRIDGE | NFPROTO_NETDEV => {
                            let et: u16 = if net == NFPROTO_IPV4 {
                                ETH_P_IP
                            } else {
                                ETH_P_IPV6
                            };
                            self.meta_load(NFT_META_PROTOCOL, NFT_REG_1);
                            self.cmp(NFT_REG_1, NFT_CMP_EQ, &et.to_be_bytes());
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
                self.meta_load(NFT_META_L4PROTO, NFT_REG_1);
                self.cmp(NFT_REG_1, NFT_CMP_EQ, &[l4]);
                self.l4 = Some(l4);
            }
        }
        Ok(())
    }

    fn load(&mut self, l: &Left, dreg: u32) {
        match l.load {
            Load::Meta(k) => self.meta_load(k, dreg),
            Load::Payload { base, offset } => self.expr("payload", |w| {
                w.put_be32(NFTA_PAYLOAD_DREG, dreg);
                w.put_be32(NFTA_PAYLOAD_BASE, base);
                w.put_be32(NFTA_PAYLOAD_OFFSET, offset);
                w.put_be32(NFTA_PAYLOAD_LEN, l.len as u32);
            }),
            Load::Ct { key, dir } => self.expr("ct", |w| {
                w.put_be32(NFTA_CT_KEY, key);
                w.put_be32(NFTA_CT_DREG, dreg);
                if let Some(d) = dir {
                    w.put(NFTA_CT_DIRECTION, &[d]);
                }
            }),
        }
    }

    pub(crate) fn verdict(&mut self, code: i32, chain: Option<&str>) {
        self.expr("immediate", |w| {
            w.put_be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
            let d = w.nest(NFTA_IMMEDIATE_DATA);
            let v = w.nest(NFTA_DATA_VERDICT);
            w.put_be32(NFTA_VERDICT_CODE, code as u32);
            if let Some(c) = chain {
                w.put_str(NFTA_VERDICT_CHAIN, c);
            }
            w.end_nest(v);
            w.end_nest(d);
        });
    }

    pub(crate) fn limit(&mut self, l: LimitSpec) {
        self.expr("limit", |w| {
            w.put_be64(NFTA_LIMIT_RATE, l.rate);
            w.put_be64(NFTA_LIMIT_UNIT, l.unit);
            w.put_be32(NFTA_LIMIT_BURST, l.burst);
            w.put_be32(NFTA_LIMIT_TYPE, NFT_LIMIT_PKTS);
            w.put_be32(NFTA_LIMIT_FLAGS, if l.inv { NFT_LIMIT_F_INV } else { 0 });
        });
    }

    pub(crate) fn emit_log(&mut self, prefix: Option<&str>, level: Option<u32>, flags: u32) {
        self.expr("log", |w| {
            if let Some(p) = prefix {
                w.put_str(NFTA_LOG_PREFIX, p);
            }
            if let Some(lv) = level {
                w.put_be32(NFTA_LOG_LEVEL, lv);
            }
            if flags != 0 {
                w.put_be32(NFTA_LOG_FLAGS, flags);
            }
        });
    }

    /// `reject` of type `ty` (`tcp reset`, `icmpx`) with the code named
    /// `code_name`.
    pub(crate) fn reject(
        &mut self,
        ty: Option<&str>,
        code_name: Option<&str>,
        bad: &dyn Fn() -> Error,
    ) -> Result<(), Error> {
        let (kind, code): (u32, u8) = match (ty, self.family) {
            (Some("tcp reset"), _) => {
                self.deps(&Left {
                    load: Load::Meta(NFT_META_L4PROTO),
                    dt: DataType::InetProto,
                    len: 1,
                    net: None,
                    l4: Some(IPPROTO_TCP),
                    host: true,
                })?;
                (NFT_REJECT_TCP_RST, 0)
            }
            (Some("icmpx"), _)
            | (None, NFPROTO_INET)
            | (None, NFPROTO_BRIDGE)
            | (None, NFPROTO_NETDEV) => {
                let c = match code_name.unwrap_or("port-unreachable") {
                    "no-route" => NFT_REJECT_ICMPX_NO_ROUTE,
                    "port-unreachable" => NFT_REJECT_ICMPX_PORT_UNREACH,
                    "host-unreachable" => NFT_REJECT_ICMPX_HOST_UNREACH,
                    "admin-prohibited" => NFT_REJECT_ICMPX_ADMIN_PROHIBITED,
                    _ => return Err(bad()),
                };
                (NFT_REJECT_ICMPX_UNREACH, c)
            }
            _ => return Err(bad()),
        };
        self.expr("reject", |w| {
            w.put_be32(NFTA_REJECT_TYPE, kind);
            w.put(NFTA_REJECT_ICMP_CODE, &[code]);
        });
        Ok(())
    }

    /// A meter: a dynamic set of the key's values, each with its own limit.
    pub(crate) fn emit_meter(
        &mut self,
        b: &mut Batch,
        name: &str,
        key: &Left,
        limit: LimitSpec,
        size: u32,
    ) -> Result<(), Error> {
        let id = b.next_set_id;
        b.next_set_id += 1;
        self.deps(key)?;
        self.load(key, NFT_REG_1);
        let set = SetInfo {
            name: name.to_string(),
            types: vec![key.dt],
            flags: NFT_SET_ANONYMOUS | NFT_SET_EVAL,
            id: Some(id),
        };
        // The limit is written inside the dynset expression.
        let mut sub = Lin::new(self.family);
        sub.limit(limit);
        // `sub.w` holds one NFTA_LIST_ELEM nest: its content is the expression.
        let inner_bytes = sub.w.buf[4..].to_vec();
        self.expr("dynset", |w| {
            w.put_be32(NFTA_DYNSET_SREG_KEY, NFT_REG_1);
            w.put_be32(NFTA_DYNSET_OP, NFT_DYNSET_OP_ADD);
            w.put_str(NFTA_DYNSET_SET_NAME, name);
            w.put_be32(NFTA_DYNSET_SET_ID, id);
            let e = w.nest(NFTA_DYNSET_EXPR);
            w.buf.extend_from_slice(&inner_bytes);
            w.end_nest(e);
        });
        self.meters.push((set, size));
        Ok(())
    }

    /// A lookup of `fields` in the set `name`.
    pub(crate) fn lookup(
        &mut self,
        b: &mut Batch,
        table: &str,
        name: &str,
        fields: &[Left],
        op: &str,
        bad: &dyn Fn() -> Error,
    ) -> Result<(), Error> {
        let set = b.set_info(self.family, table, name)?;
        if fields.len() != set.types.len() {
            return Err(Error::Invalid(format!(
                "the key of set {name} has {} fields, the lookup {}",
                set.types.len(),
                fields.len()
            )));
        }
        for f in fields {
            self.deps(f)?;
        }
        let mut unit = 0;
        for f in fields {
            let r = reg(unit);
            self.load(f, r);
            if set.concat() && set.interval() && f.host {
                if f.len != 1 {
                    return Err(Error::Unsupported(format!(
                        "host-order field in a concatenated interval set: lookup in {name}"
                    )));
                }
                self.expr("byteorder", |w| {
                    w.put_be32(NFTA_BYTEORDER_SREG, r);
                    w.put_be32(NFTA_BYTEORDER_DREG, r);
                    w.put_be32(NFTA_BYTEORDER_OP, NFT_BYTEORDER_HTON);
                    w.put_be32(NFTA_BYTEORDER_LEN, 1);
                    w.put_be32(NFTA_BYTEORDER_SIZE, 2);
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
            w.put_be32(NFTA_LOOKUP_SREG, NFT_REG_1);
            w.put_str(NFTA_LOOKUP_SET, name);
            if let Some(id) = set.id {
                w.put_be32(NFTA_LOOKUP_SET_ID, id);
            }
            if inv {
                w.put_be32(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
            }
        });
        Ok(())
    }

    /// Whether any bit of `mask` is set (`ct state established,related`).
    pub(crate) fn any_bit(&mut self, l: &Left, mask: &[u8], op: &str) {
        self.load(l, NFT_REG_1);
        self.expr("bitwise", |w| {
            w.put_be32(NFTA_BITWISE_SREG, NFT_REG_1);
            w.put_be32(NFTA_BITWISE_DREG, NFT_REG_1);
            w.put_be32(NFTA_BITWISE_LEN, 4);
            w.put_data(NFTA_BITWISE_MASK, mask);
            w.put_data(NFTA_BITWISE_XOR, &[0, 0, 0, 0]);
        });
        let cop = if op == "!=" { NFT_CMP_EQ } else { NFT_CMP_NEQ };
        self.cmp(NFT_REG_1, cop, &[0, 0, 0, 0]);
    }

    /// `lo..=hi` (or not).
    pub(crate) fn range(
        &mut self,
        l: &Left,
        lo: &[u8],
        hi: &[u8],
        op: &str,
        bad: &dyn Fn() -> Error,
    ) -> Result<(), Error> {
        if l.host {
            return Err(bad());
        }
        self.load(l, NFT_REG_1);
        match op {
            "==" => {
                self.cmp(NFT_REG_1, NFT_CMP_GTE, lo);
                self.cmp(NFT_REG_1, NFT_CMP_LTE, hi);
            }
            "!=" => self.expr("range", |w| {
                w.put_be32(NFTA_RANGE_SREG, NFT_REG_1);
                w.put_be32(NFTA_RANGE_OP, NFT_RANGE_NEQ);
                w.put_data(NFTA_RANGE_FROM_DATA, lo);
                w.put_data(NFTA_RANGE_TO_DATA, hi);
            }),
            _ => return Err(bad()),
        }
        Ok(())
    }

    /// Within the prefix `start/bits`: nft loads only the prefix's bytes
    /// when it ends on a byte, else the whole field and a mask.
    pub(crate) fn prefix(
        &mut self,
        l: &Left,
        start: &[u8],
        bits: usize,
        op: &str,
        bad: &dyn Fn() -> Error,
    ) -> Result<(), Error> {
        let bytes = if bits.is_multiple_of(8) {
            bits / 8
        } else {
            l.len
        };
        let mut short = l.clone();
        short.len = bytes;
        self.load(&short, NFT_REG_1);
        if !bits.is_multiple_of(8) {
            let mut mask = vec![0u8; bytes];
            for (i, m) in mask.iter_mut().enumerate() {
                let keep = (bits as i64 - (i as i64) * 8).clamp(0, 8) as u32;
                *m = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
            }
            self.expr("bitwise", |w| {
                w.put_be32(NFTA_BITWISE_SREG, NFT_REG_1);
                w.put_be32(NFTA_BITWISE_DREG, NFT_REG_1);
                w.put_be32(NFTA_BITWISE_LEN, bytes as u32);
                w.put_data(NFTA_BITWISE_MASK, &mask);
                w.put_data(NFTA_BITWISE_XOR, &vec![0u8; bytes]);
            });
        }
        let cop = match op {
            "==" => NFT_CMP_EQ,
            "!=" => NFT_CMP_NEQ,
            _ => return Err(bad()),
        };
        self.cmp(NFT_REG_1, cop, &start[..bytes]);
        Ok(())
    }

    /// `LEFT OP data`; an equality on `meta l4proto` or `meta nfproto`
    /// establishes that protocol for what follows in the rule.
    pub(crate) fn compare(
        &mut self,
        l: &Left,
        data: &[u8],
        op: &str,
        bad: &dyn Fn() -> Error,
    ) -> Result<(), Error> {
        let cop = match op {
            "==" => NFT_CMP_EQ,
            "!=" => NFT_CMP_NEQ,
            "<" => NFT_CMP_LT,
            "<=" => NFT_CMP_LTE,
            ">" => NFT_CMP_GT,
            ">=" => NFT_CMP_GTE,
            _ => return Err(bad()),
        };
        self.load(l, NFT_REG_1);
        self.cmp(NFT_REG_1, cop, data);
        if cop == NFT_CMP_EQ {
            match l.load {
                Load::Meta(NFT_META_L4PROTO) => self.l4 = Some(data[0]),
                Load::Meta(NFT_META_NFPROTO) => self.net = Some(data[0]),
                Load::Meta(NFT_META_PROTOCOL) if data == [0x08, 0x00] => {
                    self.net = Some(NFPROTO_IPV4)
                }
                Load::Meta(NFT_META_PROTOCOL) if data == [0x86, 0xdd] => {
                    self.net = Some(NFPROTO_IPV6)
                }
                _ => {}
            }
        }
        Ok(())
    }

    // ---- typed statements: the compiled tables' path, no JSON in between ----------

    /// One typed statement.
    fn statement(&mut self, b: &mut Batch, table: &str, s: &Statement<'_>) -> Result<(), Error> {
        let unsupported = || Error::Unsupported(format!("statement {s:?}"));
        match s {
            Statement::Match(m) => self.match_typed(b, table, m),
            Statement::Counter(stmt::Counter::Anonymous(value)) => {
                let (packets, bytes) = value.as_ref().map_or((0, 0), |c| {
                    (c.packets.unwrap_or(0) as u64, c.bytes.unwrap_or(0) as u64)
                });
                self.expr("counter", |w| {
                    if packets > 0 || bytes > 0 {
                        put_counter(w, packets, bytes);
                    }
                });
                Ok(())
            }
            Statement::Accept(_) => {
                self.verdict(NF_ACCEPT, None);
                Ok(())
            }
            Statement::Drop(_) => {
                self.verdict(NF_DROP, None);
                Ok(())
            }
            Statement::Continue(_) => {
                self.verdict(NFT_CONTINUE, None);
                Ok(())
            }
            Statement::Return(_) => {
                self.verdict(NFT_RETURN, None);
                Ok(())
            }
            Statement::Jump(t) => {
                self.verdict(NFT_JUMP, Some(&t.target));
                Ok(())
            }
            Statement::Goto(t) => {
                self.verdict(NFT_GOTO, Some(&t.target));
                Ok(())
            }
            Statement::Limit(l) => {
                let spec = LimitSpec::typed(l)?;
                self.limit(spec);
                Ok(())
            }
            Statement::Log(l) => {
                let default = stmt::Log::new(None);
                let l = l.as_ref().unwrap_or(&default);
                if l.group.is_some() || l.snaplen.is_some() || l.queue_threshold.is_some() {
                    return Err(unsupported());
                }
                let level = l.level.map(|lv| lv as u32);
                let mut flags = 0u32;
                for f in l.flags.iter().flatten() {
                    flags |= match f {
                        stmt::LogFlag::TCPSequence => NF_LOG_TCPSEQ,
                        stmt::LogFlag::TCPOptions => NF_LOG_TCPOPT,
                        stmt::LogFlag::IPOptions => NF_LOG_IPOPT,
                        stmt::LogFlag::Skuid => NF_LOG_UID,
                        stmt::LogFlag::Ether => NF_LOG_MACDECODE,
                        stmt::LogFlag::All => NF_LOG_MASK,
                    };
                }
                self.emit_log(l.prefix.as_deref(), level, flags);
                Ok(())
            }
            Statement::Reject(r) => {
                let (ty, code) = match r {
                    Some(r) => (r._type.map(reject_type_name), r.expr.map(reject_code_name)),
                    None => (None, None),
                };
                self.reject(ty, code.flatten(), &unsupported)
            }
            Statement::Meter(m) => {
                let Statement::Limit(l) = m.stmt.as_ref() else {
                    return Err(unsupported());
                };
                let key = left_typed(&m.key)?;
                self.emit_meter(b, &m.name, &key, LimitSpec::typed(l)?, 0xffff)
            }
            _ => Err(unsupported()),
        }
    }

    /// A typed match.
    fn match_typed(
        &mut self,
        b: &mut Batch,
        table: &str,
        m: &stmt::Match<'_>,
    ) -> Result<(), Error> {
        let bad = || Error::Unsupported(format!("match {m:?}"));
        let op = operator(m.op).ok_or_else(bad)?;
        if let Expression::String(s) = &m.right {
            if let Some(name) = s.strip_prefix('@') {
                let fields: Vec<Left> = match &m.left {
                    Expression::Named(NamedExpression::Concat(parts)) => {
                        parts.iter().map(left_typed).collect::<Result<_, _>>()?
                    }
                    e => vec![left_typed(e)?],
                };
                return self.lookup(b, table, name, &fields, op, &bad);
            }
        }
        let l = left_typed(&m.left)?;
        self.deps(&l)?;
        let value = |e: &Expression<'_>| -> Result<Vec<u8>, Error> {
            let s = typed_scalar(e).ok_or_else(bad)?;
            l.dt.parse_scalar(s).map_err(Error::Invalid)
        };
        let is_list = matches!(m.right, Expression::List(_));
        if l.dt == DataType::CtState && (op == "in" || (is_list && op != "==")) {
            let mut bits = 0u32;
            let single = std::slice::from_ref(&m.right);
            let states = match &m.right {
                Expression::List(v) => v.as_slice(),
                _ => single,
            };
            for e in states {
                let b = value(e)?;
                bits |= u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            }
            self.any_bit(&l, &bits.to_ne_bytes(), op);
            return Ok(());
        }
        match &m.right {
            Expression::Range(r) => {
                let (lo, hi) = (value(&r.range[0])?, value(&r.range[1])?);
                self.range(&l, &lo, &hi, op, &bad)
            }
            Expression::Named(NamedExpression::Prefix(p)) => {
                if !l.dt.prefixes() {
                    return Err(bad());
                }
                let addr = value(p.addr.as_ref())?;
                let mut start = [0u8; 64];
                let mut end = [0u8; 64];
                start[..addr.len()].copy_from_slice(&addr);
                apply_prefix(p.len, l.dt.len(), &mut start, &mut end).map_err(Error::Invalid)?;
                self.prefix(&l, &start, p.len as usize, op, &bad)
            }
            Expression::List(_) => Err(Error::Unsupported(format!("anonymous set in {m:?}"))),
            Expression::String(s) if l.dt == DataType::Ifname && s.ends_with('*') => {
                Err(Error::Unsupported(format!("interface wildcard in {m:?}")))
            }
            e => {
                let data = value(e)?;
                self.compare(&l, &data, op, &bad)
            }
        }
    }
}

/// A `limit` statement's values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LimitSpec {
    pub(crate) rate: u64,
    /// Seconds per unit of the rate.
    pub(crate) unit: u64,
    pub(crate) burst: u32,
    pub(crate) inv: bool,
}

/// Seconds of a rate's unit as nft names it.
pub(crate) fn seconds_per(per: &str) -> Option<u64> {
    Some(match per {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86400,
        "week" => 604800,
        _ => return None,
    })
}

impl LimitSpec {
    fn typed(l: &stmt::Limit<'_>) -> Result<LimitSpec, Error> {
        let bad = || Error::Unsupported(format!("limit {l:?}"));
        let unit = seconds_per(l.per.as_deref().unwrap_or("second")).ok_or_else(bad)?;
        if l.rate_unit.as_deref().is_some_and(|u| u != "packets") || l.burst_unit.is_some() {
            return Err(bad());
        }
        Ok(LimitSpec {
            rate: l.rate as u64,
            unit,
            burst: l.burst.unwrap_or(5),
            inv: l.inv.unwrap_or(false),
        })
    }
}

/// The log levels in the kernel's order (`NFTA_LOG_LEVEL`).
pub(crate) const LOG_LEVELS: [&str; 9] = [
    "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit",
];

fn reject_type_name(t: stmt::RejectType) -> &'static str {
    match t {
        stmt::RejectType::TCPReset => "tcp reset",
        stmt::RejectType::ICMPX => "icmpx",
        stmt::RejectType::ICMP => "icmp",
        stmt::RejectType::ICMPv6 => "icmpv6",
    }
}

fn reject_code_name(c: nftables::types::RejectCode) -> Option<&'static str> {
    use nftables::types::RejectCode as C;
    Some(match c {
        C::NoRoute => "no-route",
        C::PortUnreach => "port-unreachable",
        C::HostUnreach => "host-unreachable",
        C::AdminProhibited => "admin-prohibited",
        _ => return None,
    })
}

/// The operator as nft's JSON spells it; `None` for the bitwise ones.
fn operator(op: stmt::Operator) -> Option<&'static str> {
    use stmt::Operator as O;
    Some(match op {
        O::EQ => "==",
        O::NEQ => "!=",
        O::LT => "<",
        O::GT => ">",
        O::LEQ => "<=",
        O::GEQ => ">=",
        O::IN => "in",
        _ => return None,
    })
}

/// A typed left-hand expression: what it loads.
fn left_typed(e: &Expression<'_>) -> Result<Left, Error> {
    let unsupported = || Error::Unsupported(format!("expression {e:?}"));
    match e {
        Expression::Named(NamedExpression::Meta(m)) => {
            let key = match m.key {
                MetaKey::Iifname => "iifname",
                MetaKey::Oifname => "oifname",
                MetaKey::L4proto => "l4proto",
                MetaKey::Nfproto => "nfproto",
                MetaKey::Protocol => "protocol",
                MetaKey::Mark => "mark",
                _ => return Err(unsupported()),
            };
            meta_left(key).ok_or_else(unsupported)
        }
        Expression::Named(NamedExpression::Payload(Payload::PayloadField(p))) => {
            payload_left(&p.protocol, &p.field).ok_or_else(unsupported)
        }
        Expression::Named(NamedExpression::CT(c)) => {
            let dir = c.dir.map(|d| match d {
                CTDir::Original => IP_CT_DIR_ORIGINAL,
                CTDir::Reply => IP_CT_DIR_REPLY,
            });
            if c.family.is_some() {
                return Err(unsupported());
            }
            ct_left(&c.key, dir).ok_or_else(unsupported)
        }
        _ => Err(unsupported()),
    }
}
