//! The packet and byte counters of the loaded table, read over netlink and
//! matched to the compiled table on their bytes.
//!
//! `status --verbose` used to read them through nft's JSON (`list_table`
//! prints the whole table as `nft -j` would, and `readback` parses the
//! printed elements back into rule keys): at 100k elements, building and
//! parsing that JSON took longer than the kernel took to dump the table.
//! Here the rules' `counter` expressions are read from the rule dump in
//! chain order, and each set element's counter is matched to its rule by
//! the element's key bytes, as [`super::verify`] compares them.

use super::decode::{self, cstr, get, name_z};
use super::encode::dims_key;
use super::socket::attrs;
use super::types::*;
use super::Error;
use crate::compile::{CompiledTable, Origin};
use crate::{Count, Counters};
use std::collections::HashMap;

/// The counters of the loaded table `compiled.table`, mapped to the `rules`
/// model rules `compiled` was built from; `None` when the table does not
/// exist.
pub fn read_counters(compiled: &CompiledTable, rules: usize) -> Result<Option<Counters>, Error> {
    let family = 1u8;
    let table = compiled.table.as_str();
    let mut sock = super::open()?;
    if !decode::table_names(&mut sock, family)?
        .iter()
        .any(|(n, _, _)| n == table)
    {
        return Ok(None);
    }
    let mut c = Counters {
        rules: vec![Count::default(); rules],
        ..Default::default()
    };
    let tz = name_z(table);
    // Each chain's rule counters, in the chain's order.
    let mut chains: HashMap<String, Vec<Count>> = HashMap::new();
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
        let count = get(&a, NFTA_RULE_EXPRESSIONS)
            .and_then(|list| attrs(list).find_map(|(_, e)| decode::counter_of(e)))
            .map(|(packets, bytes)| Count { packets, bytes })
            .unwrap_or_default();
        chains.entry(chain).or_default().push(count);
    }
    for chain in &compiled.chains {
        let Some(counts) = chains.get(&chain.name) else {
            continue;
        };
        for (spec, &n) in chain.rules.iter().zip(counts) {
            match &spec.origin {
                Origin::Rule(i) if *i < c.rules.len() => c.rules[*i] += n,
                Origin::Policy(d) => *c.policies.entry(*d).or_default() += n,
                Origin::Builtin(b) if !b.starts_with("reject") && *b != "limit" => {
                    *c.builtins.entry(b.to_string()).or_default() += n
                }
                _ => {}
            }
        }
    }
    let ksets = decode::table_sets(&mut sock, family, table)?;
    for set in compiled.sets.iter().filter(|s| s.counts_rules) {
        let Some(k) = ksets.iter().find(|k| k.name == set.name) else {
            continue;
        };
        let info = k.info();
        let kl = info.key_len();
        // The rule of each element, by its key bytes (first, last).
        let mut owner: HashMap<(Vec<u8>, Vec<u8>), usize> =
            HashMap::with_capacity(set.elements.len());
        for e in &set.elements {
            if let Ok(key) = dims_key(&info, &e.key) {
                owner.insert((key.start[..kl].to_vec(), key.end[..kl].to_vec()), e.rule);
            }
        }
        let elems = decode::set_elements(&mut sock, family, &tz, &name_z(&set.name))?;
        let counted: Vec<decode::CountedRange> = if info.interval() && !info.concat() {
            decode::interval_ranges(kl, elems)
        } else {
            elems
                .into_iter()
                .map(|e| {
                    let end = e.key_end.unwrap_or_else(|| e.key.clone());
                    (e.key, end, e.counter)
                })
                .collect()
        };
        for (start, end, counter) in counted {
            let (Some((packets, bytes)), Some(&rule)) = (counter, owner.get(&(start, end))) else {
                continue;
            };
            if rule < c.rules.len() {
                c.rules[rule] += Count { packets, bytes };
            }
        }
    }
    Ok(Some(c))
}
