//! The packet and byte counters of the loaded table, read over netlink and
//! matched to the compiled table on their bytes.
//!
//! `status --verbose` used to read them through nft's JSON (`list_table`
//! prints the whole table as `nft -j` would, and `readback` parses the
//! printed elements back into rule keys): at 100k elements, building and
//! parsing that JSON took longer than the kernel took to dump the table.
//! Here the table is read once ([`super::verify::read_table`]: the same read
//! that verification compares), the rules' `counter` expressions are taken in
//! chain order, and each set element's counter is matched to its rule by the
//! element's key bytes.

use super::encode::dims_key;
use super::verify::{differences, read_table, LoadedTable, Readback, SetElements};
use super::Error;
use crate::compile::CompiledTable;
use crate::{Count, Counters};
use std::collections::HashMap;

/// The counters of the loaded table `compiled.table`, mapped to the `rules`
/// model rules `compiled` was built from; `None` when the table does not
/// exist.
pub fn read_counters(compiled: &CompiledTable, rules: usize) -> Result<Option<Counters>, Error> {
    Ok(read_table(compiled, Readback::Full)?.map(|loaded| count(compiled, rules, &loaded)))
}

/// How the kernel's table differs from `compiled` and its counters, from one
/// read of the table (`status --verbose` wants both).
pub fn differences_and_counters(
    compiled: &CompiledTable,
    rules: usize,
) -> Result<Option<(Vec<String>, Counters)>, Error> {
    Ok(read_table(compiled, Readback::Full)?.map(|loaded| {
        (
            differences(compiled, &loaded),
            count(compiled, rules, &loaded),
        )
    }))
}

/// The counters of `loaded` mapped to the `rules` model rules `compiled` was
/// built from: rule counters by position in their chain, element counters by
/// their key bytes.
fn count(compiled: &CompiledTable, rules: usize, loaded: &LoadedTable) -> Counters {
    let mut c = Counters::for_rules(rules);
    for chain in &compiled.chains {
        let Some(kernel) = loaded.chains.iter().find(|k| k.name == chain.name) else {
            continue;
        };
        for (spec, rule) in chain.rules.iter().zip(&kernel.rules) {
            let n = Count {
                packets: rule.packets,
                bytes: rule.bytes,
            };
            c.add_rule(&spec.origin, n);
        }
    }
    for set in compiled.sets.iter().filter(|s| s.counts_rules) {
        let Some((info, SetElements::All(ranges))) = loaded.elements.get(&set.name) else {
            continue;
        };
        let kl = info.key_len();
        // The rule of each element, by its key bytes (first, last).
        let keys: Vec<(Vec<u8>, Vec<u8>, usize)> = set
            .elements
            .iter()
            .filter_map(|e| {
                let key = dims_key(info, &e.key).ok()?;
                Some((key.start[..kl].to_vec(), key.end[..kl].to_vec(), e.rule))
            })
            .collect();
        let owner: HashMap<(&[u8], &[u8]), usize> = keys
            .iter()
            .map(|(s, e, rule)| ((s.as_slice(), e.as_slice()), *rule))
            .collect();
        for (start, end, counter) in ranges {
            let (Some((packets, bytes)), Some(&rule)) =
                (*counter, owner.get(&(start.as_slice(), end.as_slice())))
            else {
                continue;
            };
            if rule < c.rules.len() {
                c.rules[rule] += Count { packets, bytes };
            }
        }
    }
    c
}
