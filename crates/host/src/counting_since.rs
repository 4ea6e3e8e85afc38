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
use model::Ruleset;
use netfilter::CountersKept;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The file's name in the config directory.
pub const FILE: &str = "counting-since.json";

/// Since when the counters of a loaded ruleset count (Unix seconds).
///
/// The times are kept in the ruleset's order, run-length encoded (rules
/// added together count from the same second), beside a digest of the rules
/// they belong to: at 100k rules the file is a few bytes and a change costs
/// a comparison of the two rulesets, not 100k rule texts written and read
/// (which made a one-rule `portwall allow` 300 ms slower, measured with the
/// `os_firewall` bench).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountingSince {
    /// Since when the table's counters count as a whole: the default
    /// policies' and the built-in rules'.
    pub table: u64,
    /// How many rules the record is of, and their digest ([`digest`]).
    rules: usize,
    digest: u64,
    /// The rules' times in order: (since, how many rules in a row).
    runs: Vec<(u64, usize)>,
}

impl CountingSince {
    fn new(table: u64, ruleset: &Ruleset, times: &[u64]) -> CountingSince {
        let mut runs: Vec<(u64, usize)> = Vec::new();
        for &t in times {
            match runs.last_mut() {
                Some((since, n)) if *since == t => *n += 1,
                _ => runs.push((t, 1)),
            }
        }
        CountingSince {
            table,
            rules: times.len(),
            digest: digest(ruleset),
            runs,
        }
    }

    /// The times of `ruleset`'s rules when the record is of these rules.
    fn times(&self, ruleset: &Ruleset) -> Option<Vec<u64>> {
        let total: usize = self.runs.iter().map(|(_, n)| n).sum();
        if self.rules != ruleset.rules.len()
            || total != self.rules
            || self.digest != digest(ruleset)
        {
            return None;
        }
        let mut out = Vec::with_capacity(total);
        for &(since, n) in &self.runs {
            out.extend(std::iter::repeat_n(since, n));
        }
        Some(out)
    }

    /// Since when each rule of `ruleset` counts; all `None` when the record
    /// is of other rules.
    pub fn for_rules(&self, ruleset: &Ruleset) -> Vec<Option<u64>> {
        match self.times(ruleset) {
            Some(t) => t.into_iter().map(Some).collect(),
            None => vec![None; ruleset.rules.len()],
        }
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// A digest of the rules in order, each without its comment.
fn digest(ruleset: &Ruleset) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same rules give the same digest in every
    // run of the same binary (another binary may differ: then the times are
    // unknown, as for any record of other rules).
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    ruleset.rules.len().hash(&mut h);
    for r in &ruleset.rules {
        (
            r.action,
            r.direction,
            &r.in_interface,
            &r.out_interface,
            r.protocol,
            &r.source,
            &r.source_ports,
            &r.destination,
            &r.destination_ports,
            r.log,
            r.rate,
        )
            .hash(&mut h);
    }
    h.finish()
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The record in `dir`; `None` when there is none or it cannot be read.
pub fn read(dir: &Path) -> Option<CountingSince> {
    let bytes = std::fs::read(path(dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Records since when the counters of `desired` count after an apply over
/// `previous` that `kept` its counters as said: the rules both have (the
/// common start and end, then the same rule elsewhere, first come first
/// served) keep their time unless the counters restarted; the others count
/// from `now`.
pub fn record(
    dir: &Path,
    previous: Option<&Ruleset>,
    desired: &Ruleset,
    kept: CountersKept,
    now: u64,
) -> Result<(), HostError> {
    let old = match (kept, previous) {
        (CountersKept::InPlace | CountersKept::Carried, Some(previous)) => {
            read(dir).and_then(|r| r.times(previous).map(|t| (previous, t, r.table)))
        }
        _ => None,
    };
    let (times, table) = match old {
        Some((previous, old_times, table)) => (align(previous, &old_times, desired, now), table),
        None => (vec![now; desired.rules.len()], now),
    };
    let record = CountingSince::new(table, desired, &times);
    let json = serde_json::to_vec(&record).expect("the record serializes");
    write_atomically(&path(dir), &json)
}

/// The times of `desired`'s rules given `previous`'s: a rule that continues
/// one of `previous` ([`model::continued`]) keeps its time; the rest count
/// from `now`.
fn align(previous: &Ruleset, times: &[u64], desired: &Ruleset, now: u64) -> Vec<u64> {
    model::continued(&previous.rules, &desired.rules)
        .into_iter()
        .map(|old| old.and_then(|i| times.get(i).copied()).unwrap_or(now))
        .collect()
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
