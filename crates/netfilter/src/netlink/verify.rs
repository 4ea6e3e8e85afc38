//! Verifying what the kernel holds on its own bytes, without printing it.
//!
//! [`verify_compiled`] reads the table back with the same dumps as
//! [`super::decode::list_table`], but compares the elements' key bytes with the
//! bytes of the compiled elements instead of going through nft's JSON and
//! parsing it again: exactly as strict (every element, its exact range or
//! prefix), and several times cheaper at 100k elements. [`verify_delta`] checks
//! only the elements an element-only change touched, with one `GETSETELEM`
//! request per element, so its cost does not depend on the size of the sets.
//!
//! **Reading back after an apply ([`verify_applied`]).** A set dump costs the
//! kernel more than the square of the set's size: each dump message holds at
//! most 32 KiB (476 elements with their counters), and each message walks the
//! set from its start again, skipping what was sent. Dumping the 100k
//! elements just applied took 270-340 ms on this VM, more than applying them
//! (the kernel's batch, ~250 ms). So after an apply the table's structure is
//! read back whole (chains, rules in order, every set's key, flags, size and
//! counter), a set of up to [`FULL_READBACK_ELEMENTS`] elements is dumped
//! and compared element by element, and a larger one is checked by looking up
//! [`SAMPLED_ELEMENTS`] of its elements, chosen at random (and its first and
//! last), in the live set: each must come back with exactly its key and a
//! counter. Every element was already acknowledged by the kernel as part of a
//! transaction that commits whole, so what a read-back can still find is
//! systematic (an encoder writing wrong bytes, a kernel ignoring an
//! attribute), which a sample finds as surely as a dump. The full comparison
//! of every element stays one command away: `portwall status` (drift) uses
//! [`verify_compiled`].

use super::decode::{self, name_z, CountedRange, KElem, KSet};
use super::encode::{dims_key, Elems, SetInfo, Writer};
use super::socket::{NfSocket, Reply};
use super::types::*;
use super::Error;
use crate::compile::CompiledTable;
use crate::readback::KernelChain;
use nftables::schema::{NfCmd, NfListObject, NfObject, Nftables};
use rustc_hash::FxHashSet;
use std::collections::HashMap;

type Range = (Vec<u8>, Vec<u8>);

/// Sets of more elements than this are checked by sample after an apply
/// (see the module docs); up to it, a dump costs a few milliseconds.
pub const FULL_READBACK_ELEMENTS: usize = 16_384;

/// Elements of a large set looked up one by one after an apply.
pub const SAMPLED_ELEMENTS: usize = 1_024;

/// Whether an apply's read-back checks `set` on a sample of its elements
/// ([`Readback::Bounded`]) rather than all of them.
pub fn is_sampled(set: &crate::compile::SetSpec) -> bool {
    set.elements.len() > FULL_READBACK_ELEMENTS
}

/// How much of the sets' elements [`read_table`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readback {
    /// Every element of every set.
    Full,
    /// Every element of sets up to [`FULL_READBACK_ELEMENTS`], a sample of
    /// larger ones.
    Bounded,
}

/// What the kernel holds of a table, read once: enough to compare it with a
/// compiled table ([`differences`]) and to count its packets
/// ([`super::counters`]). At 100k elements a set dump is the costly part, so
/// `status --verbose` reads the table once for both.
pub(crate) struct LoadedTable {
    /// The chains in the kernel's order, each with its rules' comments and
    /// counters, in order.
    pub(crate) chains: Vec<KernelChain>,
    /// Every named set of the table.
    pub(crate) sets: Vec<KSet>,
    /// The elements of each set of the compiled table that the kernel has.
    pub(crate) elements: HashMap<String, (SetInfo, SetElements)>,
}

/// A set's elements as read back.
pub(crate) enum SetElements {
    /// Every element, as (first, last, counter) ranges of key bytes.
    All(Vec<CountedRange>),
    /// A sample looked up one by one: what was wrong with it.
    Sampled { wrong: Vec<String> },
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
/// and the elements of the sets `compiled` has, all of them or as `scope`
/// says); `None` when it does not exist.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) fn read_table(
    compiled: &CompiledTable,
    scope: Readback,
) -> Result<Option<LoadedTable>, Error> {
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
    let chains = super::read::chains(&mut sock, family, table)?;
    let sets = decode::table_sets(&mut sock, family, table)?;
    let mut elements = HashMap::new();
    for set in &compiled.sets {
        let Some(k) = sets.iter().find(|k| k.name == set.name) else {
            continue;
        };
        let info = k.info();
        if set.list.as_ref().is_some_and(|l| !l.loaded) {
            // A list this compile did not load: its elements are not known
            // here, and are not compared.
            elements.insert(
                set.name.clone(),
                (info, SetElements::Sampled { wrong: Vec::new() }),
            );
            continue;
        }
        // A large list's set is checked by sample even in a full read: the
        // kernel's interval-set dump walks the tree from its start again for
        // every message, which took 137 s at 830k elements (its elements
        // count for no rule, so counters do not need them).
        let read = if is_sampled(set) && (scope == Readback::Bounded || set.list.is_some()) {
            tracing::debug_span!("set sample", set = %set.name)
                .in_scope(|| sample_set(&mut sock, family, table, &info, set))?
        } else {
            let elems = tracing::debug_span!("set dump", set = %set.name).in_scope(|| {
                let resizable = k.size.is_none();
                decode::set_elements(&mut sock, family, &tz, &name_z(&set.name), resizable)
            })?;
            SetElements::All(kernel_ranges(&info, elems))
        };
        elements.insert(set.name.clone(), (info, read));
    }
    Ok(Some(LoadedTable {
        chains,
        sets,
        elements,
    }))
}

/// How the kernel's `inet` table differs from `compiled` (the messages of
/// [`crate::readback::differences`]), every element compared; `None` when
/// the table does not exist.
pub fn verify_compiled(compiled: &CompiledTable) -> Result<Option<Vec<String>>, Error> {
    Ok(read_table(compiled, Readback::Full)?.map(|loaded| differences(compiled, &loaded)))
}

/// [`verify_compiled`] as an apply reads back: large sets by sample (see the
/// module docs).
pub fn verify_applied(compiled: &CompiledTable) -> Result<Option<Vec<String>>, Error> {
    Ok(read_table(compiled, Readback::Bounded)?.map(|loaded| differences(compiled, &loaded)))
}

/// Looks up [`SAMPLED_ELEMENTS`] elements of `set` (its first and last, the
/// rest at random) in the kernel's set `info`: each must be there with
/// exactly its key and with a counter.
fn sample_set(
    sock: &mut NfSocket,
    family: u8,
    table: &str,
    info: &SetInfo,
    set: &crate::compile::SetSpec,
) -> Result<SetElements, Error> {
    let n = set.elements.len();
    let mut picked: Vec<usize> =
        rand::seq::index::sample(&mut rand::thread_rng(), n, SAMPLED_ELEMENTS.min(n)).into_vec();
    picked.extend([0, n.saturating_sub(1)]);
    picked.sort_unstable();
    picked.dedup();
    let kl = info.key_len();
    let mut keys = Vec::with_capacity(picked.len());
    let mut wrong = Vec::new();
    for &i in &picked {
        match dims_key(info, &set.elements[i].key) {
            Ok(k) => keys.push((k.start[..kl].to_vec(), k.end[..kl].to_vec())),
            Err(e) => wrong.push(format!(
                "set {}: element {} cannot be encoded: {e}",
                set.name,
                i + 1
            )),
        }
    }
    let found = lookup_elements(sock, family, table, info, &keys)?;
    let mut missing = 0;
    let mut uncounted = 0;
    for ((start, end), got) in keys.iter().zip(&found) {
        match got {
            Some(e) if exact(info, e, start, end) => {
                if e.counter.is_none() {
                    uncounted += 1;
                }
            }
            _ => missing += 1,
        }
    }
    if missing > 0 {
        wrong.push(format!(
            "set {}: {missing} of {} sampled element(s) missing",
            set.name,
            keys.len()
        ));
    }
    if uncounted > 0 && crate::compile::set_has_counters(&set.name) {
        wrong.push(format!(
            "set {}: {uncounted} of {} sampled element(s) have no counter",
            set.name,
            keys.len()
        ));
    }
    Ok(SetElements::Sampled { wrong })
}

/// Whether the element the kernel answered a lookup of `start..=end` with is
/// that element: a plain interval set answers with the interval's first
/// value only.
fn exact(set: &SetInfo, e: &KElem, start: &[u8], end: &[u8]) -> bool {
    e.key == start
        && (set.interval() && !set.concat() || e.key_end.as_deref().unwrap_or(&e.key) == end)
}

/// Looks up each of `keys` ((first, last) key bytes) in the set `set` of
/// `table` with one `GETSETELEM` request per key (sent in bounded chunks):
/// the element the kernel answered with, or `None` when it has none.
fn lookup_elements(
    sock: &mut NfSocket,
    family: u8,
    table: &str,
    set: &SetInfo,
    keys: &[Range],
) -> Result<Vec<Option<KElem>>, Error> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(512) {
        let mut w = Writer::default();
        let first = super::next_seq();
        for (i, (start, end)) in chunk.iter().enumerate() {
            let at = w.begin_msg(
                (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM,
                NLM_F_REQUEST | NLM_F_ACK,
                first + i as u32,
                family,
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
        let mut found: Vec<Option<KElem>> = (0..chunk.len()).map(|_| None).collect();
        for r in &replies {
            let i = r.seq.wrapping_sub(first) as usize;
            if r.kind != NLMSG_ERROR && i < found.len() {
                let mut elems = Vec::new();
                decode::parse_elems(std::slice::from_ref(r), &mut elems);
                if let Some(e) = elems.into_iter().next() {
                    found[i] = Some(e);
                }
            }
        }
        out.extend(found);
    }
    Ok(out)
}

/// How `loaded` differs from `compiled`: chains and their rules (by their
/// comments, in order), and every element of every set, compared on its
/// exact key bytes.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) fn differences(compiled: &CompiledTable, loaded: &LoadedTable) -> Vec<String> {
    let chains: Vec<(&str, Vec<&str>)> = loaded
        .chains
        .iter()
        .map(|c| {
            let comments = c
                .rules
                .iter()
                .map(|r| r.comment.as_deref().unwrap_or("(no comment)"));
            (c.name.as_str(), comments.collect())
        })
        .collect();
    let mut out = crate::readback::chain_differences(compiled, &chains);
    for set in &compiled.sets {
        let Some((info, read)) = loaded.elements.get(&set.name) else {
            out.push(format!("set {} is missing", set.name));
            continue;
        };
        if let Some(k) = loaded.sets.iter().find(|k| k.name == set.name) {
            out.extend(set_definition_differences(set, k));
        }
        let ranges = match read {
            SetElements::All(ranges) => ranges,
            SetElements::Sampled { wrong } => {
                out.extend(wrong.iter().cloned());
                continue;
            }
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
        let mut expiring: Vec<u8> = Vec::new();
        let mut undecodable = 0;
        for e in &set.elements {
            // An element about to expire may or may not be there.
            let buf = if e.until.is_some_and(about_to_expire) {
                &mut expiring
            } else {
                &mut wanted
            };
            match dims_key(info, &e.key) {
                Ok(key) => {
                    buf.extend_from_slice(&key.start[..kl]);
                    buf.extend_from_slice(&key.end[..kl]);
                }
                Err(_) => undecodable += 1,
            }
        }
        if kl > 0 && !expiring.is_empty() {
            let gone: FxHashSet<(&[u8], &[u8])> = expiring
                .chunks_exact(2 * kl)
                .map(|k| k.split_at(kl))
                .collect();
            have.retain(|k| !gone.contains(k));
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

/// Whether an element's deadline is so near (or past) that a read may or
/// may not find it.
pub(crate) fn about_to_expire(until: model::list::Deadline) -> bool {
    crate::compile::timeout_left(until).is_none_or(|left| left.as_secs() < 5)
}

/// How the kernel's definition of a set differs from the compiled one: its
/// interval and timeout flags, its size (a hash set's capacity), and the
/// per-element counter every set of portwall's carries.
fn set_definition_differences(set: &crate::compile::SetSpec, k: &KSet) -> Vec<String> {
    let mut out = Vec::new();
    if (k.flags & NFT_SET_INTERVAL != 0) != set.interval {
        out.push(format!("set {}: the interval flag differs", set.name));
    }
    if (k.flags & NFT_SET_TIMEOUT != 0) != set.timeouts {
        out.push(format!("set {}: the timeout flag differs", set.name));
    }
    if let Some(size) = set.capacity() {
        if k.size != Some(size) {
            out.push(format!(
                "set {}: size {} instead of {size}",
                set.name,
                k.size
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "none".into())
            ));
        }
    }
    let counted = k.exprs.iter().any(|e| e == "counter");
    if counted != crate::compile::set_has_counters(&set.name) {
        out.push(format!(
            "set {}: its elements {} counters",
            set.name,
            if counted { "have" } else { "have no" }
        ));
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
            other => return Err(Error::Unsupported(format!("verifying {other:?}"))),
        };
        let family = super::encode::nf_family(e.family);
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
    // A plain interval set answers a lookup with the interval's first value
    // only: an interval deleted and one added with the same first value (a
    // range that grew or shrank) cannot be told apart, and the added one's
    // check stands for both.
    let added_starts: std::collections::HashSet<(String, Vec<u8>)> = checks
        .iter()
        .filter(|c| c.3 && c.2.interval() && !c.2.concat())
        .map(|c| (c.2.name.clone(), c.4 .0.clone()))
        .collect();
    checks.retain(|c| c.3 || !added_starts.contains(&(c.2.name.clone(), c.4 .0.clone())));
    let mut out = Vec::new();
    // One lookup per element, grouped by set (a delta names few sets).
    let mut by_set: Vec<((u8, String, String), Vec<usize>)> = Vec::new();
    for (i, (family, table, set, _, _)) in checks.iter().enumerate() {
        let key = (*family, table.clone(), set.name.clone());
        match by_set.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(i),
            None => by_set.push((key, vec![i])),
        }
    }
    for ((family, table, _), mut indices) in by_set {
        // A large delta (a list loaded anew) is checked on a sample, as an
        // apply checks a large set.
        if indices.len() > FULL_READBACK_ELEMENTS {
            let n = indices.len();
            let mut picked: Vec<usize> =
                rand::seq::index::sample(&mut rand::thread_rng(), n, SAMPLED_ELEMENTS).into_vec();
            picked.extend([0, n - 1]);
            picked.sort_unstable();
            picked.dedup();
            indices = picked.into_iter().map(|i| indices[i]).collect();
        }
        let set = &checks[indices[0]].2;
        let keys: Vec<Range> = indices.iter().map(|&i| checks[i].4.clone()).collect();
        let found = lookup_elements(&mut sock, family, &table, set, &keys)?;
        for (&i, got) in indices.iter().zip(&found) {
            let (_, _, set, present, (start, end)) = &checks[i];
            let there = got.as_ref().is_some_and(|e| exact(set, e, start, end));
            if *present && !there {
                out.push(format!(
                    "set {}: an added element is missing{}",
                    set.name,
                    if got.is_some() {
                        " (another element answered)"
                    } else {
                        ""
                    }
                ));
            }
            if !*present && there {
                out.push(format!(
                    "set {}: a deleted element is still there",
                    set.name
                ));
            }
        }
    }
    Ok(out)
}

impl NfSocket {
    /// Sends `buf` (`count` requests with NLM_F_ACK, sequence numbers from
    /// `first`) and collects the answers until each is acknowledged.
    pub fn request(&mut self, buf: &[u8], first: u32, count: u32) -> std::io::Result<Vec<Reply>> {
        // The kernel answers all of them inside the send, each answer an skb
        // of a page or two plus its ack: room for all, or some are dropped.
        self.reserve_receive_buffer(count as usize * 10 * 1024)?;
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
