//! Counters carried over a table replacement.
//!
//! A change that only adds or removes set elements leaves the table in place
//! ([`crate::ApplyMode::Elements`]), so every other element keeps counting.
//! A change of structure (a new rule shape, a rule that moves into another
//! run) replaces the table in one transaction, and a new table starts at
//! zero, which `iptables -nvL` users never see happen. So before a
//! replacement the old table's counters are read, mapped to the model rules
//! they belong to, and the new table is created with those values
//! (nftables lets a rule's counter and a set element's counter be created
//! with a value).
//!
//! A model rule is the same rule before and after when it is equal but for
//! its comment; the default policies and the built-in rules are the same by
//! name. What a model rule counted lands on one place of the new table that
//! counts for it (its nft rule, or its first set element), so the per-rule
//! sums that `status --verbose` shows carry over exactly; how they split over
//! a rule's elements does not. Packets counted between the read and the
//! replacement (a few milliseconds) are not carried.

use crate::compile::{CompiledTable, Origin, Tagged};
use crate::{Count, Counters};
use model::{Direction, Ruleset};
use nftables::schema::{NfCmd, NfListObject, NfObject, Nftables};
use nftables::stmt::{AnonymousCounter, Counter, Statement};
use std::collections::HashMap;

/// The counter values to create the new table with.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Carried {
    /// By (chain index, rule index in the chain) of the compiled table.
    pub rules: HashMap<(usize, usize), Count>,
    /// By set name, then element index in the compiled set.
    pub elements: HashMap<String, HashMap<usize, (u64, u64)>>,
}

impl Carried {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.elements.is_empty()
    }
}

/// The counts that carry over from `previous` (whose table counted
/// `counted`) to `desired`, before they are placed in a table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CarriedCounts {
    /// By model rule of `desired`; `None` for a new rule or a zero count.
    pub rules: Vec<Option<Count>>,
    pub policies: HashMap<Direction, Count>,
    pub builtins: HashMap<String, Count>,
}

impl CarriedCounts {
    pub fn new(previous: &Ruleset, counted: &Counters, desired: &Ruleset) -> CarriedCounts {
        let nonzero = |c: &Count| c.packets > 0 || c.bytes > 0;
        CarriedCounts {
            rules: model::continued(&previous.rules, &desired.rules)
                .into_iter()
                .map(|old| {
                    old.and_then(|i| counted.rules.get(i).copied())
                        .filter(nonzero)
                })
                .collect(),
            policies: counted
                .policies
                .iter()
                .filter(|(_, c)| nonzero(c))
                .map(|(d, c)| (*d, *c))
                .collect(),
            builtins: counted
                .builtins
                .iter()
                .filter(|(_, c)| nonzero(c))
                .map(|(b, c)| (b.clone(), *c))
                .collect(),
        }
    }

    /// Takes the count of what an origin tag names (`pw:rule:N` numbered
    /// from 1, `pw:policy:DIR`, `pw:builtin:NAME`), once.
    pub fn take_tagged(&mut self, tag: &str) -> Option<Count> {
        match Tagged::parse(tag)? {
            Tagged::Rule(i) => self.rules.get_mut(i)?.take(),
            Tagged::Policy(d) => self.policies.remove(&d),
            Tagged::Builtin(b) => self.builtins.remove(b),
        }
    }
}

/// What each rule of `desired` (compiled as `compiled`) carries over from
/// `previous`, whose table counted `counted`.
pub fn plan(
    previous: &Ruleset,
    counted: &Counters,
    desired: &Ruleset,
    compiled: &CompiledTable,
) -> Carried {
    let mut counts = CarriedCounts::new(previous, counted, desired);
    let mut out = Carried::default();
    for (ci, chain) in compiled.chains.iter().enumerate() {
        for (ri, spec) in chain.rules.iter().enumerate() {
            let count = match &spec.origin {
                Origin::Rule(i) => counts.rules.get_mut(*i).and_then(Option::take),
                Origin::Policy(d) => counts.policies.remove(d),
                // The helpers of `reject` and `limit` count what their model
                // rule counts (see `Counters::add_rule`).
                Origin::Builtin(b) if !b.starts_with("reject") && *b != "limit" => {
                    counts.builtins.remove(*b)
                }
                _ => None,
            };
            if let Some(c) = count {
                out.rules.insert((ci, ri), c);
            }
        }
    }
    for set in compiled.sets.iter().filter(|s| s.counts_rules) {
        for (ei, element) in set.elements.iter().enumerate() {
            if let Some(c) = counts.rules.get_mut(element.rule).and_then(Option::take) {
                out.elements
                    .entry(set.name.clone())
                    .or_default()
                    .insert(ei, (c.packets, c.bytes));
            }
        }
    }
    out
}

/// Gives the rules of `batch` (the replacement of `compiled`, whose rules it
/// adds in chain order) the counter values `carried` holds for them.
pub fn seed_rules(batch: &mut Nftables<'static>, compiled: &CompiledTable, carried: &Carried) {
    if carried.rules.is_empty() {
        return;
    }
    let places = compiled
        .chains
        .iter()
        .enumerate()
        .flat_map(|(ci, chain)| (0..chain.rules.len()).map(move |ri| (ci, ri)));
    let rules = batch
        .objects
        .to_mut()
        .iter_mut()
        .filter_map(|obj| match obj {
            NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(r))) => Some(r),
            _ => None,
        });
    for (place, rule) in places.zip(rules) {
        let Some(count) = carried.rules.get(&place) else {
            continue;
        };
        for st in rule.expr.to_mut().iter_mut() {
            if let Statement::Counter(Counter::Anonymous(value)) = st {
                *value = Some(AnonymousCounter {
                    packets: Some(count.packets as usize),
                    bytes: Some(count.bytes as usize),
                });
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use model::{parse_rule, Services};

    fn ruleset(lines: &[&str]) -> Ruleset {
        let mut rs = Ruleset::default();
        for l in lines {
            for r in parse_rule(l, &Services::builtin()).unwrap() {
                rs.add(r);
            }
        }
        rs
    }

    fn count(packets: u64) -> Count {
        Count {
            packets,
            bytes: packets * 100,
        }
    }

    /// Every count of the previous table lands once in the new one, on a
    /// place that counts for the same model rule, whatever moved.
    #[test]
    fn each_rule_keeps_its_count_once_wherever_it_compiles_to() {
        let before = ruleset(&[
            "allow 22/tcp",
            "deny from 198.51.100.0/24",
            "allow 80/tcp from 203.0.113.0/24",
        ]);
        let mut counted = Counters::for_rules(3);
        counted.rules = vec![count(5), count(0), count(7)];
        counted.policies.insert(Direction::In, count(3));
        // A rule inserted first, a comment added, a rule removed.
        let mut after = ruleset(&[
            "reject 25/tcp",
            "allow 22/tcp",
            "allow 80/tcp from 203.0.113.0/24",
        ]);
        after.rules[1].comment = Some("ssh".into());
        let compiled = compile(&after, crate::TABLE);
        let carried = plan(&before, &counted, &after, &compiled);
        let mut per_rule = Counters::for_rules(after.rules.len());
        for ((ci, ri), c) in &carried.rules {
            per_rule.add_rule(&compiled.chains[*ci].rules[*ri].origin, *c);
        }
        for set in &compiled.sets {
            for (ei, (packets, bytes)) in carried.elements.get(&set.name).into_iter().flatten() {
                per_rule.rules[set.elements[*ei].rule] += Count {
                    packets: *packets,
                    bytes: *bytes,
                };
            }
        }
        assert_eq!(per_rule.rules, vec![count(0), count(5), count(7)]);
        assert_eq!(per_rule.policies.get(&Direction::In), Some(&count(3)));
    }
}
