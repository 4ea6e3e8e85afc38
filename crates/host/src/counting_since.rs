//! Since when each counter counts (`status --verbose`), kept in
//! `counting-since.json` in the config directory.
//!
//! Every apply says what became of the counters of the rules it kept
//! ([`netfilter::CountersKept`]): they went on counting, were carried into a
//! new table, or started again at zero. [`record`] turns that into a time per
//! rule: a rule that stayed (the same rule but for its comment) keeps its
//! time unless the counters restarted; a new rule counts from now. The
//! default policies and built-in rules count since the table's last restart.
//!
//! The file is only a record of what the kernel was told. When it is missing
//! or cannot be read, or names other rules than the loaded ones, the time is
//! unknown and shown as such; nothing is guessed.

use crate::config_dir::write_atomically;
use crate::error::HostError;
use model::{Rule, Ruleset};
use netfilter::CountersKept;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The file's name in the config directory.
pub const FILE: &str = "counting-since.json";

/// Since when the counters of a loaded ruleset count (Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountingSince {
    /// Since when the table's counters count as a whole: the default
    /// policies' and the built-in rules'.
    pub table: u64,
    /// Per rule, in the ruleset's order: the rule (without its comment) and
    /// since when it counts.
    pub rules: Vec<(String, u64)>,
}

impl CountingSince {
    /// Since when each rule of `ruleset` counts; `None` for a rule the record
    /// does not name at its place.
    pub fn for_rules(&self, ruleset: &Ruleset) -> Vec<Option<u64>> {
        ruleset
            .rules
            .iter()
            .zip(self.rules.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(rule, recorded)| match recorded {
                Some((text, since)) if *text == identity(rule) => Some(*since),
                _ => None,
            })
            .collect()
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// A rule as the same rule across a change ([`Rule::ignoring_comment`]),
/// as the record names it.
fn identity(rule: &Rule) -> String {
    rule.ignoring_comment().to_string()
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads the record; `None` when there is none or it cannot be decoded.
pub fn read(dir: &Path) -> Option<CountingSince> {
    let bytes = std::fs::read(path(dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Records an apply of `desired` over `previous` (the ruleset loaded before,
/// if any) that did `kept` to the counters, at `now`.
pub fn record(
    dir: &Path,
    previous: Option<&Ruleset>,
    desired: &Ruleset,
    kept: CountersKept,
    now: u64,
) -> Result<(), HostError> {
    let old = match (kept, previous) {
        (CountersKept::InPlace | CountersKept::Carried, Some(previous)) => read(dir)
            .map(|r| (r.for_rules(previous), r.table))
            .map(|(times, table)| (previous, times, table)),
        _ => None,
    };
    let mut by_rule: HashMap<String, VecDeque<u64>> = HashMap::new();
    let table = match &old {
        Some((previous, times, table)) => {
            for (rule, since) in previous.rules.iter().zip(times) {
                if let Some(since) = since {
                    by_rule.entry(identity(rule)).or_default().push_back(*since);
                }
            }
            *table
        }
        None => now,
    };
    let rules = desired
        .rules
        .iter()
        .map(|rule| {
            let id = identity(rule);
            let since = by_rule
                .get_mut(&id)
                .and_then(VecDeque::pop_front)
                .unwrap_or(now);
            (id, since)
        })
        .collect();
    let record = CountingSince { table, rules };
    let json = serde_json::to_vec(&record).expect("the record serializes");
    write_atomically(&path(dir), &json)
}

/// Records that every counter of `ruleset` starts again at `now` (after
/// `status --zero`).
pub fn restart(dir: &Path, ruleset: &Ruleset, now: u64) -> Result<(), HostError> {
    record(dir, None, ruleset, CountersKept::Restarted, now)
}

/// Forgets the record (the table is gone).
pub fn forget(dir: &Path) -> Result<(), HostError> {
    match std::fs::remove_file(path(dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(HostError::io("remove", &path(dir), e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn kept_rules_keep_their_time_and_new_ones_count_from_now() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(read(d), None);
        let a = ruleset(&["allow 22/tcp", "deny 5432/tcp"]);
        record(d, None, &a, CountersKept::Restarted, 100).unwrap();
        assert_eq!(read(d).unwrap().for_rules(&a), vec![Some(100), Some(100)]);
        // A rule inserted first, a comment added: carried.
        let mut b = ruleset(&["reject 25/tcp", "allow 22/tcp", "deny 5432/tcp"]);
        b.rules[1].comment = Some("ssh".into());
        record(d, Some(&a), &b, CountersKept::Carried, 200).unwrap();
        let r = read(d).unwrap();
        assert_eq!(r.for_rules(&b), vec![Some(200), Some(100), Some(100)]);
        assert_eq!(r.table, 100);
        // An element-only change keeps them too.
        let c = ruleset(&["reject 25/tcp", "allow 22/tcp"]);
        record(d, Some(&b), &c, CountersKept::InPlace, 300).unwrap();
        assert_eq!(read(d).unwrap().for_rules(&c), vec![Some(200), Some(100)]);
        // A restart resets every time, the table's too.
        record(d, Some(&c), &c, CountersKept::Restarted, 400).unwrap();
        let r = read(d).unwrap();
        assert_eq!(
            (r.for_rules(&c), r.table),
            (vec![Some(400), Some(400)], 400)
        );
        // A record of other rules says nothing about these.
        assert_eq!(r.for_rules(&a), vec![None, None]);
        // An unreadable record is no record.
        std::fs::write(d.join(FILE), b"{not json").unwrap();
        assert_eq!(read(d), None);
        record(d, Some(&c), &a, CountersKept::InPlace, 500).unwrap();
        assert_eq!(read(d).unwrap().for_rules(&a), vec![Some(500), Some(500)]);
        forget(d).unwrap();
        assert_eq!(read(d), None);
    }
}
