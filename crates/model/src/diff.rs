//! What changes between two rulesets, for `portwall plan` and the CLI's reports.
//!
//! Rules are compared as whole values. The common prefix and suffix are trimmed,
//! and the middle is compared as multisets, which is linear and exact for the
//! edits people make (add, insert, delete, replace a few rules among 100k).
//! When one side of the middle is empty (a ruleset applied over none, or all
//! rules deleted) there is nothing to match, and nothing is hashed. Changes
//! borrow their rules: at 100k rules, hashing and cloning each one was most
//! of a 160 ms diff.

use crate::builtins::Switch;
use crate::rule::{Direction, Rule};
use crate::ruleset::{Logging, Policy, Ruleset};
use serde::Serialize;
use std::collections::HashMap;

/// One difference, borrowing the rules of the two rulesets compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change<'a> {
    /// A rule the new ruleset has at 1-based `number` that the old one lacks.
    Add {
        number: usize,
        rule: &'a Rule,
    },
    /// A rule the old ruleset had at 1-based `number` that the new one lacks.
    Remove {
        number: usize,
        rule: &'a Rule,
    },
    Default {
        direction: Direction,
        from: Policy,
        to: Policy,
    },
    Logging {
        from: Logging,
        to: Logging,
    },
    /// A built-in accept of [`crate::builtins`] turned on (`to`) or off.
    Builtin {
        builtin: Switch,
        from: bool,
        to: bool,
    },
    /// The same rules, in another order (order decides: first match wins).
    Reorder,
}

/// The changes that turn `old` into `new`; empty when they are equal.
pub fn diff<'a>(old: &'a Ruleset, new: &'a Ruleset) -> Vec<Change<'a>> {
    let mut changes = Vec::new();
    for d in Direction::ALL {
        let (a, b) = (old.defaults.get(d), new.defaults.get(d));
        if a != b {
            changes.push(Change::Default {
                direction: d,
                from: a,
                to: b,
            });
        }
    }
    if old.logging != new.logging {
        changes.push(Change::Logging {
            from: old.logging,
            to: new.logging,
        });
    }
    for b in Switch::ALL {
        let (from, to) = (old.builtins.get(b), new.builtins.get(b));
        if from != to {
            changes.push(Change::Builtin {
                builtin: b,
                from,
                to,
            });
        }
    }
    let (o, n) = (&old.rules, &new.rules);
    let prefix = o.iter().zip(n).take_while(|(a, b)| a == b).count();
    let suffix = o[prefix..]
        .iter()
        .rev()
        .zip(n[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let om = &o[prefix..o.len() - suffix];
    let nm = &n[prefix..n.len() - suffix];
    if om.is_empty() || nm.is_empty() {
        let removed = om.iter().enumerate().map(|(i, rule)| Change::Remove {
            number: prefix + i + 1,
            rule,
        });
        let added = nm.iter().enumerate().map(|(i, rule)| Change::Add {
            number: prefix + i + 1,
            rule,
        });
        changes.extend(removed.chain(added));
        return changes;
    }
    let mut counts: HashMap<&Rule, isize> = HashMap::new();
    for r in om {
        *counts.entry(r).or_default() += 1;
    }
    for r in nm {
        *counts.entry(r).or_default() -= 1;
    }
    // Kept rules of each side, to see whether their order changed.
    let mut kept_old = Vec::new();
    let mut budget = counts.clone();
    for (i, r) in om.iter().enumerate() {
        let c = budget.get_mut(r).expect("counted");
        if *c > 0 {
            *c -= 1;
            changes.push(Change::Remove {
                number: prefix + i + 1,
                rule: r,
            });
        } else {
            kept_old.push(r);
        }
    }
    let mut kept_new = Vec::new();
    let mut budget = counts;
    for (i, r) in nm.iter().enumerate() {
        let c = budget.get_mut(r).expect("counted");
        if *c < 0 {
            *c += 1;
            changes.push(Change::Add {
                number: prefix + i + 1,
                rule: r,
            });
        } else {
            kept_new.push(r);
        }
    }
    if kept_old != kept_new {
        changes.push(Change::Reorder);
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_rule, Services};

    fn rs(lines: &[&str]) -> Ruleset {
        let services = Services::builtin();
        let mut r = Ruleset::default();
        for l in lines {
            r.rules.extend(parse_rule(l, &services).unwrap());
        }
        r
    }

    fn numbers(changes: &[Change<'_>]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Add { number, rule } => format!("+{number} {rule}"),
                Change::Remove { number, rule } => format!("-{number} {rule}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn from_nothing_every_rule_is_added_in_order() {
        let new = rs(&["allow 22/tcp", "deny 80/tcp", "allow 53/udp"]);
        let nothing = Ruleset::default();
        let d = diff(&nothing, &new);
        assert_eq!(
            numbers(&d),
            ["+1 allow 22/tcp", "+2 deny 80/tcp", "+3 allow 53/udp"]
        );
        assert!(std::ptr::eq(
            match d[1] {
                Change::Add { rule, .. } => rule,
                _ => unreachable!(),
            },
            &new.rules[1]
        ));
    }

    #[test]
    fn to_nothing_every_rule_is_removed() {
        let old = rs(&["allow 22/tcp", "deny 80/tcp"]);
        let nothing = Ruleset::default();
        let d = diff(&old, &nothing);
        assert_eq!(numbers(&d), ["-1 allow 22/tcp", "-2 deny 80/tcp"]);
    }

    #[test]
    fn an_insert_in_the_middle_is_one_add() {
        let old = rs(&["allow 22/tcp", "allow 53/udp"]);
        let new = rs(&["allow 22/tcp", "deny 80/tcp", "allow 53/udp"]);
        assert_eq!(numbers(&diff(&old, &new)), ["+2 deny 80/tcp"]);
        assert_eq!(numbers(&diff(&new, &old)), ["-2 deny 80/tcp"]);
    }

    #[test]
    fn a_replacement_and_a_reorder() {
        let old = rs(&["allow 22/tcp", "deny 80/tcp", "allow 53/udp"]);
        let new = rs(&["allow 22/tcp", "reject 80/tcp", "allow 53/udp"]);
        assert_eq!(
            numbers(&diff(&old, &new)),
            ["-2 deny 80/tcp", "+2 reject 80/tcp"]
        );
        let swapped = rs(&["deny 80/tcp", "allow 22/tcp", "allow 53/udp"]);
        assert_eq!(diff(&old, &swapped), vec![Change::Reorder]);
        assert!(diff(&old, &old).is_empty());
    }
}

/// For each rule of `new`, the index of the rule of `old` it continues: the
/// same rule but for its comment. The common start and end are matched in
/// place (a one-rule change on 100k rules compares, it does not hash);
/// between them, a rule takes its first unclaimed twin, so a rule written
/// twice is matched in order. What carries over a change, the counters of a
/// table (`netfilter::carry`) and since when they count
/// (`host::counting_since`), follows this one matching.
pub fn continued(old: &[Rule], new: &[Rule]) -> Vec<Option<usize>> {
    let same = |a: &Rule, b: &Rule| a.ignoring_comment_eq(b);
    let prefix = old.iter().zip(new).take_while(|(a, b)| same(a, b)).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| same(a, b))
        .count();
    let (old_mid, new_mid) = (prefix..old.len() - suffix, prefix..new.len() - suffix);
    let mut twins: HashMap<Rule, std::collections::VecDeque<usize>> = HashMap::new();
    for i in old_mid {
        twins
            .entry(old[i].ignoring_comment())
            .or_default()
            .push_back(i);
    }
    let mut out: Vec<Option<usize>> = (0..prefix).map(Some).collect();
    out.extend(new[new_mid].iter().map(|r| {
        twins
            .get_mut(&r.ignoring_comment())
            .and_then(|q| q.pop_front())
    }));
    out.extend((old.len() - suffix..old.len()).map(Some));
    out
}

#[cfg(test)]
mod continued_tests {
    use super::continued;
    use crate::{parse_rule, Rule, Services};

    fn rules(lines: &[&str]) -> Vec<Rule> {
        lines
            .iter()
            .flat_map(|l| parse_rule(l, &Services::builtin()).unwrap())
            .collect()
    }

    #[test]
    fn rules_continue_in_place_then_by_twin_and_comments_do_not_count() {
        let old = rules(&[
            "allow 22/tcp",
            "deny 25/tcp",
            "allow 80/tcp",
            "allow 22/tcp",
        ]);
        let new = rules(&[
            "allow 22/tcp comment 'ssh'",
            "allow 80/tcp",
            "allow 22/tcp",
            "reject 23/tcp",
            "allow 22/tcp",
        ]);
        assert_eq!(
            continued(&old, &new),
            [Some(0), Some(2), None, None, Some(3)],
            "the start and the end in place; between them, a twin left unclaimed there"
        );
        assert_eq!(continued(&[], &old), [None, None, None, None]);
        assert_eq!(continued(&old, &old), [Some(0), Some(1), Some(2), Some(3)]);
    }
}
