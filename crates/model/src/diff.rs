//! What changes between two rulesets, for `portwall plan` and the CLI's reports.
//!
//! Rules are compared as whole values. The common prefix and suffix are trimmed,
//! and the middle is compared as multisets, which is linear and exact for the
//! edits people make (add, insert, delete, replace a few rules among 100k).

use crate::rule::{Direction, Rule};
use crate::ruleset::{Logging, Policy, Ruleset};
use serde::Serialize;
use std::collections::HashMap;

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A rule the new ruleset has at 1-based `number` that the old one lacks.
    Add {
        number: usize,
        rule: Rule,
    },
    /// A rule the old ruleset had at 1-based `number` that the new one lacks.
    Remove {
        number: usize,
        rule: Rule,
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
    /// The same rules, in another order (order decides: first match wins).
    Reorder,
}

/// The changes that turn `old` into `new`; empty when they are equal.
pub fn diff(old: &Ruleset, new: &Ruleset) -> Vec<Change> {
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
                rule: r.clone(),
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
                rule: r.clone(),
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
