//! Kernel dumps, read as they are: tables, sets and their elements as
//! bytes, counters. [`super::read`] decodes them into typed values; the
//! listing as `nft -j list table` prints it is [`crate::nft_json`]'s.
//!
//! A plain interval set holds the boundaries of its intervals; they are
//! joined back into ranges ([`interval_ranges`]).

use super::encode::SetInfo;
use super::socket::{attrs, NfSocket, Reply};
use super::types::*;
use super::Error;

pub(crate) fn be32(v: &[u8]) -> u32 {
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
pub(crate) fn data_value(v: &[u8]) -> Vec<u8> {
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

/// Text for an element of a batch message the kernel refused: `nlmsg` is the
/// message, `offset` where the blamed element's nest starts.
pub fn describe_element(set: &SetInfo, nlmsg: &[u8], offset: usize) -> Option<String> {
    let el = nlmsg.get(offset..)?;
    let len = u16::from_ne_bytes([*el.first()?, *el.get(1)?]) as usize;
    let body = el.get(4..len.min(el.len()))?;
    let (mut key, mut key_end, mut end_flag) = (Vec::new(), None, false);
    for (t, v) in attrs(body) {
        match t {
            NFTA_SET_ELEM_KEY => key = data_value(v),
            NFTA_SET_ELEM_KEY_END => key_end = Some(data_value(v)),
            NFTA_SET_ELEM_FLAGS => end_flag = be32(v) & NFT_SET_ELEM_INTERVAL_END != 0,
            _ => {}
        }
    }
    if key.is_empty() {
        return None;
    }
    Some(format!(
        "{}{}",
        element_text(set, &key, key_end.as_deref()),
        if end_flag {
            " (end of an interval)"
        } else {
            ""
        }
    ))
}

/// An element in nft's text syntax (`10.0.0.0/8 . tcp . 22`): each field a
/// value, a prefix or a range.
fn element_text(set: &SetInfo, key: &[u8], key_end: Option<&[u8]>) -> String {
    let concat = set.concat();
    let mut off = 0;
    let mut parts = Vec::with_capacity(set.types.len());
    for t in &set.types {
        let len = t.len();
        let start = key.get(off..off + len).unwrap_or(&[]);
        parts.push(match key_end.and_then(|e| e.get(off..off + len)) {
            Some(end) if end != start => match prefix_len(start, end) {
                Some(bits) if t.prefixes() => format!("{}/{bits}", t.text(start)),
                _ => format!("{}-{}", t.text(start), t.text(end)),
            },
            _ => t.text(start),
        });
        off += if concat { reg_space(len) } else { len };
    }
    parts.join(" . ")
}

/// The prefix length when `start..=end` is exactly one prefix (the whole
/// length when they are equal).
pub(crate) fn prefix_len(start: &[u8], end: &[u8]) -> Option<u8> {
    if start.len() != end.len() {
        return None;
    }
    let bits = start.len() * 8;
    let bit = |v: &[u8], i: usize| (v[i / 8] >> (7 - i % 8)) & 1;
    // Host bits, counted from the end: 0 in `start`, 1 in `end`.
    let host = (0..bits)
        .rev()
        .take_while(|&i| bit(start, i) == 0 && bit(end, i) == 1)
        .count();
    let len = bits - host;
    (0..len)
        .all(|i| bit(start, i) == bit(end, i))
        .then_some(len as u8)
}
