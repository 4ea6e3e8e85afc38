//! Verifying what the kernel holds on its own bytes, without printing it.
//!
//! [`verify_compiled`] reads the table back with the same dumps as
//! [`super::decode::list_table`], but compares the elements' key bytes with the
//! bytes of the compiled elements instead of going through nft's JSON and
//! parsing it again: exactly as strict (every element, its exact range or
//! prefix), and several times cheaper at 100k elements. [`verify_delta`] checks
//! only the elements an element-only change touched, with one `GETSETELEM`
//! request per element, so its cost does not depend on the size of the sets.

use super::decode::{self, cstr, get, name_z, CountedRange, KElem, KSet};
use super::encode::{dims_key, Elems, SetInfo, Writer};
use super::socket::{attrs, parse_error, NfSocket, Reply};
use super::types::*;
use super::Error;
use crate::compile::CompiledTable;
use nftables::schema::{NfCmd, NfListObject, NfObject, Nftables};
use rustc_hash::FxHashSet;
use std::collections::HashMap;

type Range = (Vec<u8>, Vec<u8>);

/// A rule as read back: its comment (what it stands for) and its counter
/// (packets, bytes), if it has one.
pub(crate) type KernelRule = (String, Option<(u64, u64)>);

/// What the kernel holds of a table, read once: enough to compare it with a
/// compiled table ([`differences`]) and to count its packets
/// ([`super::counters`]). At 100k elements a set dump is the costly part, so
/// `status --verbose` reads the table once for both.
pub(crate) struct LoadedTable {
    /// The chains in the kernel's order, each with its rules' comments and
    /// counters (packets, bytes), in order.
    pub(crate) chains: Vec<(String, Vec<KernelRule>)>,
    /// Every named set of the table.
    pub(crate) sets: Vec<KSet>,
    /// The elements of each set of the compiled table that the kernel has,
    /// as (first, last, counter) ranges of key bytes.
    pub(crate) elements: HashMap<String, (SetInfo, Vec<CountedRange>)>,
}

/// The kernel's elements of `set` as (first, last, counter) ranges: a plain
/// interval set's boundaries joined, any other element as it is.
fn kernel_ranges(set: &SetInfo, elems: Vec<KElem>) -> Vec<CountedRange> {
    if set.interval() && !set.concat() {
        return decode::interval_ranges(set.key_len(), elems);
    }
    elems
        .into_iter()
        .map(|e| {
            let end = e.key_end.unwrap_or_else(|| e.key.clone());
            (e.key, end, e.counter)
        })
        .collect()
}

/// Reads the `inet` table `compiled.table` (its chains and rules, its sets,
/// and the elements of the sets `compiled` has); `None` when it does not
/// exist.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) fn read_table(compiled: &CompiledTable) -> Result<Option<LoadedTable>, Error> {
    let family = 1u8;
    let table = compiled.table.as_str();
    let mut sock = super::open()?;
    if !decode::table_names(&mut sock, family)?
        .iter()
        .any(|(n, _, _)| n == table)
    {
        return Ok(None);
    }
    let tz = name_z(table);
    let mut chains: Vec<(String, Vec<KernelRule>)> = Vec::new();
    for r in decode::dump(&mut sock, NFT_MSG_GETCHAIN, family, &[])? {
        let Some(p) = r.payload.get(4..) else {
            continue;
        };
        let a: Vec<(u16, &[u8])> = attrs(p).collect();
        if get(&a, NFTA_CHAIN_TABLE).map(cstr).as_deref() == Some(table) {
            chains.push((
                get(&a, NFTA_CHAIN_NAME).map(cstr).unwrap_or_default(),
                Vec::new(),
            ));
        }
    }
    for r in decode::dump(
        &mut sock,
        NFT_MSG_GETRULE,
        family,
        &[(NFTA_RULE_TABLE, &tz)],
    )? {
        let Some(p) = r.payload.get(4..) else {
            continue;
        };
        let a: Vec<(u16, &[u8])> = attrs(p).collect();
        if get(&a, NFTA_RULE_TABLE).map(cstr).as_deref() != Some(table) {
            continue;
        }
        let chain = get(&a, NFTA_RULE_CHAIN).map(cstr).unwrap_or_default();
        let mut comment = "(no comment)".to_string();
        if let Some(ud) = get(&a, NFTA_RULE_USERDATA) {
            if ud.len() >= 2 && ud[0] == 0 {
                let len = ud[1] as usize;
                comment = cstr(ud.get(2..2 + len).unwrap_or(&[]));
            }
        }
        let counter = get(&a, NFTA_RULE_EXPRESSIONS)
            .and_then(|list| attrs(list).find_map(|(_, e)| decode::counter_of(e)));
        if let Some(c) = chains.iter_mut().find(|(n, _)| *n == chain) {
            c.1.push((comment, counter));
        }
    }
    let sets = decode::table_sets(&mut sock, family, table)?;
    let mut elements = HashMap::new();
    for set in &compiled.sets {
        let Some(k) = sets.iter().find(|k| k.name == set.name) else {
            continue;
        };
        let info = k.info();
        let elems = decode::set_elements(&mut sock, family, &tz, &name_z(&set.name))?;
        let ranges = kernel_ranges(&info, elems);
        elements.insert(set.name.clone(), (info, ranges));
    }
    Ok(Some(LoadedTable {
        chains,
        sets,
        elements,
    }))
}

/// How the kernel's `inet` table differs from `compiled` (the messages of
/// [`crate::readback::differences`]); `None` when the table does not exist.
pub fn verify_compiled(compiled: &CompiledTable) -> Result<Option<Vec<String>>, Error> {
    Ok(read_table(compiled)?.map(|loaded| differences(compiled, &loaded)))
}

/// How `loaded` differs from `compiled`: chains and their rules (by their
/// comments, in order), and every element of every set, compared on its
/// exact key bytes.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) fn differences(compiled: &CompiledTable, loaded: &LoadedTable) -> Vec<String> {
    let chains: Vec<(&str, Vec<&str>)> = loaded
        .chains
        .iter()
        .map(|(name, rules)| {
            let comments = rules.iter().map(|(comment, _)| comment.as_str());
            (name.as_str(), comments.collect())
        })
        .collect();
    let mut out = crate::readback::chain_differences(compiled, &chains);
    for set in &compiled.sets {
        let Some((info, ranges)) = loaded.elements.get(&set.name) else {
            out.push(format!("set {} is missing", set.name));
            continue;
        };
        // Keys are a few bytes each and come from the kernel and from our own
        // compile, so a fast non-keyed hash is enough (SipHash was most of
        // this comparison at 100k elements).
        let mut have: FxHashSet<(&[u8], &[u8])> = FxHashSet::default();
        have.reserve(ranges.len());
        have.extend(ranges.iter().map(|(s, e, _)| (s.as_slice(), e.as_slice())));
        let kl = info.key_len();
        // The wanted keys side by side in one buffer: start, then end.
        let mut wanted: Vec<u8> = Vec::with_capacity(set.elements.len() * 2 * kl);
        let mut undecodable = 0;
        for e in &set.elements {
            match dims_key(info, &e.key) {
                Ok(key) => {
                    wanted.extend_from_slice(&key.start[..kl]);
                    wanted.extend_from_slice(&key.end[..kl]);
                }
                Err(_) => undecodable += 1,
            }
        }
        let mut want: FxHashSet<(&[u8], &[u8])> = FxHashSet::default();
        if kl > 0 {
            want.reserve(wanted.len() / (2 * kl));
            want.extend(wanted.chunks_exact(2 * kl).map(|k| k.split_at(kl)));
        }
        let missing = want.iter().filter(|k| !have.contains(*k)).count() + undecodable;
        let extra = have.iter().filter(|k| !want.contains(*k)).count();
        if missing > 0 || extra > 0 {
            out.push(format!(
                "set {}: {missing} element(s) missing, {extra} unexpected",
                set.name
            ));
        }
    }
    for k in &loaded.sets {
        // Meters of `limit` rules are anonymous sets of their own.
        if k.flags & NFT_SET_ANONYMOUS == 0 && !compiled.sets.iter().any(|s| s.name == k.name) {
            out.push(format!("set {} was added outside portwall", k.name));
        }
    }
    out
}

/// Checks that the elements `batch` (an element-only change) added are in the
/// kernel and those it deleted are not; returns the differences.
pub fn verify_delta(batch: &Nftables<'_>) -> Result<Vec<String>, Error> {
    let mut sock = super::open()?;
    let mut sets: HashMap<(u8, String, String), SetInfo> = HashMap::new();
    // (family, table, set, expected present, key bytes)
    let mut checks: Vec<(u8, String, SetInfo, bool, Range)> = Vec::new();
    for obj in batch.objects.iter() {
        let (present, e) = match obj {
            NfObject::CmdObject(NfCmd::Add(NfListObject::Element(e))) => (true, e),
            NfObject::CmdObject(NfCmd::Delete(NfListObject::Element(e))) => (false, e),
            other => {
                return Err(Error::Unsupported(format!(
                    "verifying {}",
                    serde_json::to_string(other).unwrap_or_default()
                )))
            }
        };
        let family = serde_json::to_value(e.family)
            .ok()
            .and_then(|v| v.as_str().and_then(family_number))
            .ok_or_else(|| Error::Invalid("bad family".into()))?;
        let key = (family, e.table.to_string(), e.name.to_string());
        if !sets.contains_key(&key) {
            let found = decode::table_sets(&mut sock, family, &e.table)?;
            for k in found {
                sets.insert((family, e.table.to_string(), k.name.clone()), k.info());
            }
        }
        let Some(info) = sets.get(&key).cloned() else {
            return Ok(vec![format!("set {} is missing", e.name)]);
        };
        let elems = Elems::Typed(&e.elem);
        let kl = info.key_len();
        for i in 0..e.elem.len() {
            let k = elems.key_at(i, &info).map_err(Error::Invalid)?;
            checks.push((
                family,
                e.table.to_string(),
                info.clone(),
                present,
                (k.start[..kl].to_vec(), k.end[..kl].to_vec()),
            ));
        }
    }
    let mut out = Vec::new();
    // One GETSETELEM per element, all in one send; bounded chunks.
    for chunk in checks.chunks(512) {
        let mut w = Writer::default();
        let first = super::next_seq();
        for (i, (family, table, set, _, (start, end))) in chunk.iter().enumerate() {
            let at = w.begin_msg(
                (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM,
                NLM_F_REQUEST | NLM_F_ACK,
                first + i as u32,
                *family,
                0,
            );
            w.put_str(NFTA_SET_ELEM_LIST_TABLE, table);
            w.put_str(NFTA_SET_ELEM_LIST_SET, &set.name);
            let list = w.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
            let el = w.nest(1);
            let k = w.nest(NFTA_SET_ELEM_KEY);
            w.put(NFTA_DATA_VALUE, start);
            w.end_nest(k);
            if set.interval() && set.concat() {
                let k = w.nest(NFTA_SET_ELEM_KEY_END);
                w.put(NFTA_DATA_VALUE, end);
                w.end_nest(k);
            }
            w.end_nest(el);
            w.end_nest(list);
            w.end_msg(at);
        }
        super::next_seq_advance(chunk.len() as u32);
        let replies = sock
            .request(&w.buf, first, chunk.len() as u32)
            .map_err(Error::Io)?;
        for (i, (_, _, set, present, (start, end))) in chunk.iter().enumerate() {
            let seq = first + i as u32;
            let mut found: Option<Range> = None;
            let mut errno = 0;
            for r in replies.iter().filter(|r| r.seq == seq) {
                if r.kind == NLMSG_ERROR {
                    errno = parse_error(r).map(|n| n.errno).unwrap_or(0);
                } else {
                    found = element_of(r).or(found);
                }
            }
            // A plain interval set answers with the interval's first value.
            let exact = match &found {
                Some((s, _)) if set.interval() && !set.concat() => s == start,
                Some((s, e)) => s == start && e == end,
                None => false,
            };
            if *present && !exact {
                out.push(format!(
                    "set {}: an added element is missing ({})",
                    set.name,
                    if errno != 0 {
                        super::strerror(errno)
                    } else {
                        "another element".into()
                    }
                ));
            }
            if !*present && exact {
                out.push(format!(
                    "set {}: a deleted element is still there",
                    set.name
                ));
            }
        }
    }
    Ok(out)
}

/// The (key, key end) of the element a GETSETELEM reply holds.
fn element_of(r: &Reply) -> Option<Range> {
    let mut elems = Vec::new();
    decode::parse_elems(std::slice::from_ref(r), &mut elems);
    let e = elems.into_iter().next()?;
    let end = e.key_end.clone().unwrap_or_else(|| e.key.clone());
    Some((e.key, end))
}

impl NfSocket {
    /// Sends `buf` (`count` requests with NLM_F_ACK, sequence numbers from
    /// `first`) and collects the answers until each is acknowledged.
    pub fn request(&mut self, buf: &[u8], first: u32, count: u32) -> std::io::Result<Vec<Reply>> {
        self.send_raw(buf)?;
        let mut out = Vec::new();
        let mut done = 0u32;
        let mut replies = Vec::new();
        // Bounded: every request ends with an ack or an error; the receive
        // timeout ends a kernel that never answers.
        for _ in 0..(count as usize * 4 + 16) {
            if done >= count {
                break;
            }
            replies.clear();
            self.recv_into(&mut replies)?;
            for r in replies.drain(..) {
                if r.seq < first || r.seq >= first + count {
                    continue;
                }
                if r.kind == NLMSG_ERROR {
                    done += 1;
                }
                out.push(r);
            }
        }
        Ok(out)
    }
}
