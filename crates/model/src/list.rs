//! Named address lists: their names, their files, what they merge into, and
//! the lifetimes of temporary rules and entries.
//!
//! A list is a named set of IPv4 and IPv6 addresses and networks that rules
//! share (`deny from @blocklist`, `allow 22/tcp from @office`). This module
//! is the one place that reads the notions lists bring:
//!
//! - [`ListName`]: what a list may be called, and `@NAME` where a rule takes
//!   addresses ([`ListName::parse_reference`]).
//! - [`parse_list_file`]: a list file (one address or CIDR per line, `#`
//!   comments, blank lines), all or nothing, with the line number of the
//!   first bad line.
//! - [`Intervals`]: the entries of a list merged as `nft` merges an interval
//!   set: overlapping and adjacent networks become one range, so the kernel
//!   holds the fewest elements, and `list show` can say how many entries were
//!   merged away.
//! - [`parse_lifetime`]: `--for 30m` (`30s`, `10m`, `2h`, `1d`) with an upper
//!   limit.
//!
//! The merge is written here rather than taken from `ipnet`'s `aggregate`:
//! that one returns CIDR blocks, and two adjacent blocks that do not form a
//! larger CIDR (10.0.0.0/24 and 10.0.1.0/25) stay two, while an interval set
//! holds any range as one element.

use crate::parse::parse_net;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// The longest list name. The iptables backend keeps a list in ipsets named
/// `pw-NAME-4` and `pw-NAME-6`, and an ipset name has at most 31 characters.
pub const LIST_NAME_MAX: usize = 26;

/// What a list name may be, for error messages.
pub const LIST_NAME_HELP: &str =
    "1-26 characters: lowercase letters, digits, '-' and '_', starting with a letter";

/// The name of an address list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ListName(String);

/// Why a text is not a list name or a list file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("'{0}' is not a list name: {LIST_NAME_HELP}")]
    BadName(String),
    #[error("'{0}' does not name a list: write @NAME")]
    NotAReference(String),
    #[error("line {line}: {reason}")]
    BadLine { line: usize, reason: String },
}

impl ListName {
    /// Parses a list name (without `@`).
    pub fn parse(text: &str) -> Result<ListName, ListError> {
        let mut chars = text.chars();
        let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let valid = starts_with_letter
            && text.len() <= LIST_NAME_MAX
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if valid {
            Ok(ListName(text.to_string()))
        } else {
            Err(ListError::BadName(text.to_string()))
        }
    }

    /// Parses `@NAME`, the way a rule names a list where it takes addresses.
    pub fn parse_reference(text: &str) -> Result<ListName, ListError> {
        match text.strip_prefix('@') {
            Some(name) => ListName::parse(name),
            None => Err(ListError::NotAReference(text.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ListName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ListName {
    type Error = ListError;
    fn try_from(s: String) -> Result<ListName, ListError> {
        ListName::parse(&s)
    }
}

impl From<ListName> for String {
    fn from(n: ListName) -> String {
        n.0
    }
}

/// Reads a list file: one address or network per line; `#` starts a comment
/// (a whole line or the rest of one); blank lines are skipped. The first bad
/// line fails the whole file, named by its number (from 1) and the reason,
/// so a load changes nothing.
pub fn parse_list_file(text: &str) -> Result<Vec<IpNet>, ListError> {
    let mut nets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        if entry.split_whitespace().nth(1).is_some() {
            return Err(ListError::BadLine {
                line: i + 1,
                reason: format!(
                    "'{entry}' holds more than one entry: one address or network per line"
                ),
            });
        }
        let net = parse_net(entry).map_err(|reason| ListError::BadLine {
            line: i + 1,
            reason,
        })?;
        nets.push(net);
    }
    Ok(nets)
}

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Interval {
    V4 { first: Ipv4Addr, last: Ipv4Addr },
    V6 { first: Ipv6Addr, last: Ipv6Addr },
}

impl Interval {
    /// The range a network covers.
    pub fn of(net: IpNet) -> Interval {
        match net {
            IpNet::V4(n) => Interval::V4 {
                first: n.network(),
                last: n.broadcast(),
            },
            IpNet::V6(n) => Interval::V6 {
                first: n.network(),
                last: n.broadcast(),
            },
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self, addr) {
            (Interval::V4 { first, last }, IpAddr::V4(a)) => *first <= a && a <= *last,
            (Interval::V6 { first, last }, IpAddr::V6(a)) => *first <= a && a <= *last,
            _ => false,
        }
    }

    /// The fewest CIDR blocks that cover exactly this range (for a backend,
    /// such as ipset's `hash:net`, that holds networks, not ranges).
    pub fn to_networks(&self) -> Vec<IpNet> {
        match *self {
            Interval::V4 { first, last } => range_networks_v4(u32::from(first), u32::from(last))
                .into_iter()
                .map(IpNet::V4)
                .collect(),
            Interval::V6 { first, last } => range_networks_v6(u128::from(first), u128::from(last))
                .into_iter()
                .map(IpNet::V6)
                .collect(),
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interval::V4 { first, last } if first == last => write!(f, "{first}"),
            Interval::V6 { first, last } if first == last => write!(f, "{first}"),
            Interval::V4 { first, last } => write!(f, "{first}-{last}"),
            Interval::V6 { first, last } => write!(f, "{first}-{last}"),
        }
    }
}

fn range_networks_v4(mut first: u32, last: u32) -> Vec<Ipv4Net> {
    let mut out = Vec::new();
    loop {
        // The largest block that starts at `first` and ends by `last`.
        let align = if first == 0 {
            32
        } else {
            first.trailing_zeros()
        };
        let span = u64::from(last) - u64::from(first) + 1;
        let fits = 63 - span.leading_zeros();
        let bits = align.min(fits);
        out.push(Ipv4Net::new(Ipv4Addr::from(first), (32 - bits) as u8).expect("prefix <= 32"));
        let next = u64::from(first) + (1u64 << bits);
        if next > u64::from(last) {
            return out;
        }
        first = next as u32;
    }
}

fn range_networks_v6(mut first: u128, last: u128) -> Vec<Ipv6Net> {
    let mut out = Vec::new();
    loop {
        let align = if first == 0 {
            128
        } else {
            first.trailing_zeros()
        };
        let span_minus_one = last - first;
        // Block sizes up to 2^128 (the whole space) must fit in the span:
        // 2^bits - 1 <= last - first.
        let fits = if span_minus_one == u128::MAX {
            128
        } else {
            127 - (span_minus_one + 1).leading_zeros()
        };
        let bits = align.min(fits);
        out.push(Ipv6Net::new(Ipv6Addr::from(first), (128 - bits) as u8).expect("prefix <= 128"));
        if bits == 128 {
            return out;
        }
        match first.checked_add(1u128 << bits) {
            Some(next) if next <= last => first = next,
            _ => return out,
        }
    }
}

/// The entries of a list merged into the fewest ranges: overlapping and
/// adjacent networks become one (as `nft` auto-merge does), IPv4 first,
/// each family in address order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals {
    ranges: Vec<Interval>,
    /// How many entries went in.
    entries: usize,
}

impl Intervals {
    /// [`Segments::of`] permanent entries: the same merge.
    pub fn merge(nets: impl IntoIterator<Item = IpNet>) -> Intervals {
        let entries: Vec<ListEntry> = nets
            .into_iter()
            .map(|net| ListEntry { net, until: None })
            .collect();
        let segments = Segments::of(&entries);
        Intervals {
            ranges: segments.segments().iter().map(|s| s.interval).collect(),
            entries: entries.len(),
        }
    }

    pub fn ranges(&self) -> &[Interval] {
        &self.ranges
    }

    /// How many entries were merged into.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// How many entries the merge saved (duplicates, networks inside
    /// others, adjacent networks joined).
    pub fn merged_away(&self) -> usize {
        self.entries - self.ranges.len()
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        holding(&self.ranges, |r| r, addr).is_some()
    }
}

/// The item of `items` whose interval holds `addr`: `items` are sorted
/// IPv4 first, each family in address order, and do not overlap.
fn holding<T>(items: &[T], interval: impl Fn(&T) -> &Interval, addr: IpAddr) -> Option<&T> {
    let family = |r: &Interval| matches!(r, Interval::V6 { .. }) as u8;
    let want = matches!(addr, IpAddr::V6(_)) as u8;
    let i = items.partition_point(|x| {
        let r = interval(x);
        family(r) < want
            || (family(r) == want
                && match (r, addr) {
                    (Interval::V4 { last, .. }, IpAddr::V4(a)) => *last < a,
                    (Interval::V6 { last, .. }, IpAddr::V6(a)) => *last < a,
                    _ => false,
                })
    });
    items.get(i).filter(|x| interval(x).contains(addr))
}

/// What a lifetime may be written as, for error messages.
pub const LIFETIME_HELP: &str =
    "a whole number and a unit: s (seconds), m (minutes), h (hours) or d (days), e.g. 30s, 10m, 2h, 1d";

/// Why a text is not an accepted lifetime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifetimeError {
    #[error("'{0}' is not a duration: {LIFETIME_HELP}")]
    Syntax(String),
    #[error("'{text}' is longer than the limit of {limit}")]
    TooLong { text: String, limit: String },
}

/// Parses the lifetime of a temporary rule or list entry (`--for 30m`): a
/// whole number of at least 1 and one unit, at most `limit`.
pub fn parse_lifetime(text: &str, limit: Duration) -> Result<Duration, LifetimeError> {
    let syntax = || LifetimeError::Syntax(text.to_string());
    let (unit_at, _) = text.char_indices().last().ok_or_else(syntax)?;
    let (number, unit) = text.split_at(unit_at);
    let seconds_per: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(syntax()),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    let n: u64 = number.parse().map_err(|_| syntax())?;
    if n == 0 {
        return Err(syntax());
    }
    let secs = n.checked_mul(seconds_per);
    match secs {
        Some(s) if Duration::from_secs(s) <= limit => Ok(Duration::from_secs(s)),
        _ => Err(LifetimeError::TooLong {
            text: text.to_string(),
            limit: format_lifetime(limit),
        }),
    }
}

/// A duration in the largest unit that writes it whole (`90m`, `2h`, `1d`),
/// the form [`parse_lifetime`] reads back.
pub fn format_lifetime(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, per) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= per && s.is_multiple_of(per) {
            return format!("{}{unit}", s / per);
        }
    }
    format!("{s}s")
}

/// When a temporary rule or list entry ends: whole seconds since the Unix
/// epoch, written as an RFC 3339 time in UTC (`2026-12-08T04:00:00Z`).
/// The kernel enforces it with an element timeout, so it holds whether or
/// not portwall runs at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Deadline(pub u64);

impl Deadline {
    /// `lifetime` after `now` (seconds since the epoch).
    pub fn after(now: u64, lifetime: Duration) -> Deadline {
        Deadline(now.saturating_add(lifetime.as_secs()))
    }

    /// Reads an RFC 3339 time (`2026-12-08T04:00:00Z`, or with an offset).
    pub fn parse(text: &str) -> Result<Deadline, String> {
        let t: jiff::Timestamp = text.parse().map_err(|_| {
            format!("'{text}' is not a time: write it as RFC 3339, e.g. 2026-12-08T04:00:00Z")
        })?;
        u64::try_from(t.as_second())
            .map(Deadline)
            .map_err(|_| format!("'{text}' is before 1970"))
    }

    /// Whether it has passed at `now`.
    pub fn passed(self, now: u64) -> bool {
        self.0 <= now
    }

    /// What is left of it at `now` (zero once passed).
    pub fn left(self, now: u64) -> Duration {
        Duration::from_secs(self.0.saturating_sub(now))
    }
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_second(self.0 as i64) {
            Ok(t) => write!(f, "{}", t.strftime("%Y-%m-%dT%H:%M:%SZ")),
            Err(_) => write!(f, "@{}", self.0),
        }
    }
}

/// One entry of a list: a network (a single address is a /32 or /128), and
/// when it ends if it is temporary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListEntry {
    pub net: IpNet,
    pub until: Option<Deadline>,
}

impl fmt::Display for ListEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.net.prefix_len() == self.net.max_prefix_len() {
            write!(f, "{}", self.net.addr())?;
        } else {
            write!(f, "{}", self.net)?;
        }
        if let Some(d) = self.until {
            write!(f, " until {d}")?;
        }
        Ok(())
    }
}

/// Reads a list as portwall stores it: the lines of [`parse_list_file`],
/// where an entry may be followed by `until TIME` ([`Deadline::parse`]).
/// Entries whose time has passed at `now` are left out.
pub fn parse_stored_list(text: &str, now: u64) -> Result<Vec<ListEntry>, ListError> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let bad = |reason: String| ListError::BadLine {
            line: i + 1,
            reason,
        };
        let mut words = content.split_whitespace();
        let net = words.next().unwrap_or_default();
        let net = parse_net(net).map_err(bad)?;
        let until = match (words.next(), words.next(), words.next()) {
            (None, _, _) => None,
            (Some("until"), Some(t), None) => Some(Deadline::parse(t).map_err(bad)?),
            _ => {
                return Err(bad(format!(
                    "'{content}' is not an entry: ADDRESS or NETWORK, optionally followed by 'until TIME'"
                )))
            }
        };
        if until.is_some_and(|d| d.passed(now)) {
            continue;
        }
        entries.push(ListEntry { net, until });
    }
    Ok(entries)
}

/// A list in the form [`parse_stored_list`] reads, one entry per line.
pub fn format_stored_list(entries: &[ListEntry]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(entries.len() * 16);
    for e in entries {
        let _ = writeln!(out, "{e}");
    }
    out
}

/// A range of addresses a list holds, and until when (`None`: for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    pub interval: Interval,
    pub until: Option<Deadline>,
}

/// A list as the kernel holds it: its entries merged into the fewest
/// disjoint ranges, each with the latest deadline of the entries that cover
/// it (none when a permanent entry does), IPv4 ranges first, each family in
/// address order. Overlapping and adjacent networks of one lifetime become
/// one range, as `nft` auto-merge does; a temporary entry inside a permanent
/// one adds nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segments {
    segments: Vec<Segment>,
    /// How many entries went in.
    entries: usize,
}

impl Segments {
    pub fn of(entries: &[ListEntry]) -> Segments {
        // The lifetime of an entry as an ordered key: permanent is the largest.
        let key = |e: &ListEntry| e.until.map_or(u64::MAX, |d| d.0);
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for e in entries {
            match Interval::of(e.net) {
                Interval::V4 { first, last } => {
                    v4.push((u32::from(first) as u128, u32::from(last) as u128, key(e)))
                }
                Interval::V6 { first, last } => {
                    v6.push((u128::from(first), u128::from(last), key(e)))
                }
            }
        }
        let until = |k: u64| (k != u64::MAX).then_some(Deadline(k));
        let mut segments = Vec::new();
        for (first, last, k) in sweep(v4) {
            segments.push(Segment {
                interval: Interval::V4 {
                    first: Ipv4Addr::from(first as u32),
                    last: Ipv4Addr::from(last as u32),
                },
                until: until(k),
            });
        }
        for (first, last, k) in sweep(v6) {
            segments.push(Segment {
                interval: Interval::V6 {
                    first: Ipv6Addr::from(first),
                    last: Ipv6Addr::from(last),
                },
                until: until(k),
            });
        }
        Segments {
            segments,
            entries: entries.len(),
        }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// How many entries went in.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// The segment that holds `addr`, if any.
    pub fn find(&self, addr: IpAddr) -> Option<&Segment> {
        holding(&self.segments, |s| &s.interval, addr)
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        self.find(addr).is_some()
    }
}

/// Disjoint ranges with the largest key of the input ranges covering each,
/// adjacent ranges of one key joined. Input: (first, last, key).
fn sweep(ranges: Vec<(u128, u128, u64)>) -> Vec<(u128, u128, u64)> {
    use std::collections::BTreeMap;
    let mut by_start = ranges;
    by_start.sort_unstable();
    // The fast case: no two ranges of different keys touch, so each run of
    // overlapping or adjacent ranges is one key (always so for a list without
    // temporary entries).
    let mut out: Vec<(u128, u128, u64)> = Vec::with_capacity(by_start.len());
    let mut simple = true;
    for &(first, last, k) in &by_start {
        match out.last_mut() {
            Some(cur) if cur.1 == u128::MAX || first <= cur.1 + 1 => {
                if cur.2 != k {
                    simple = false;
                    break;
                }
                cur.1 = cur.1.max(last);
            }
            _ => out.push((first, last, k)),
        }
    }
    if simple {
        return out;
    }
    out.clear();
    let mut by_end: Vec<(u128, u64)> = by_start.iter().map(|&(_, l, k)| (l, k)).collect();
    by_end.sort_unstable();
    let n = by_start.len();
    let (mut i, mut j) = (0, 0);
    let mut active: BTreeMap<u64, usize> = BTreeMap::new();
    let mut cur: Option<u128> = None;
    loop {
        let next_start = (i < n).then(|| by_start[i].0);
        // `None` inside: ends at the top of the space, no boundary after it.
        let next_end = (j < n).then(|| by_end[j].0.checked_add(1)).flatten();
        let boundary = match (next_start, next_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let (Some(c), Some((&k, _))) = (cur, active.last_key_value()) {
            let last = boundary.map_or(u128::MAX, |b| b - 1);
            match out.last_mut() {
                Some(prev) if prev.2 == k && prev.1.checked_add(1) == Some(c) => prev.1 = last,
                _ => out.push((c, last, k)),
            }
        }
        let Some(b) = boundary else { break };
        while i < n && by_start[i].0 == b {
            *active.entry(by_start[i].2).or_default() += 1;
            i += 1;
        }
        while j < n && by_end[j].0.checked_add(1) == Some(b) {
            let k = by_end[j].1;
            let c = active.get_mut(&k).expect("an active range ends");
            *c -= 1;
            if *c == 0 {
                active.remove(&k);
            }
            j += 1;
        }
        cur = Some(b);
    }
    out
}

/// The contents of the lists a ruleset's rules name, as loaded for one
/// change (lists live apart from the rules: see `host`). A list a rule names
/// that is not here was not loaded, and matches nothing in
/// [`crate::evaluate()`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists(pub std::collections::BTreeMap<ListName, std::sync::Arc<Segments>>);

impl Lists {
    pub fn get(&self, name: &ListName) -> Option<&Segments> {
        self.0.get(name).map(|s| &**s)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        parse_net(s).unwrap()
    }

    #[test]
    fn names_and_references() {
        for ok in ["office", "bans", "block-list_2", "a"] {
            assert_eq!(ListName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "Office",
            "2bad",
            "-x",
            "with space",
            "a.b",
            &"x".repeat(27),
        ] {
            let e = ListName::parse(bad).unwrap_err();
            assert!(e.to_string().contains(LIST_NAME_HELP), "{e}");
        }
        assert_eq!(
            ListName::parse_reference("@office").unwrap().as_str(),
            "office"
        );
        assert!(matches!(
            ListName::parse_reference("office"),
            Err(ListError::NotAReference(_))
        ));
        assert!(matches!(
            ListName::parse_reference("@Office"),
            Err(ListError::BadName(_))
        ));
        let json = serde_json::to_string(&ListName::parse("office").unwrap()).unwrap();
        assert_eq!(json, "\"office\"");
        assert!(serde_json::from_str::<ListName>("\"Bad Name\"").is_err());
    }

    #[test]
    fn a_list_file_is_read_whole_or_not_at_all() {
        let text =
            "# firehol-style header\n\n203.0.113.0/24\n198.51.100.7   # a host\n  2001:db8::/32\n";
        let nets = parse_list_file(text).unwrap();
        assert_eq!(
            nets,
            vec![
                net("203.0.113.0/24"),
                net("198.51.100.7"),
                net("2001:db8::/32")
            ]
        );
        let e = parse_list_file("10.0.0.0/8\n# ok\n10.0.0.1/8\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3: '10.0.0.1/8' has host bits set: did you mean 10.0.0.0/8?"
        );
        let e = parse_list_file("1.2.3.4\nnot-an-address\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 2: 'not-an-address' is not an address"),
            "{e}"
        );
        let e = parse_list_file("1.2.3.4 5.6.7.8\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 1: '1.2.3.4 5.6.7.8' holds more than one entry"),
            "{e}"
        );
        assert_eq!(parse_list_file("").unwrap(), vec![]);
    }

    #[test]
    fn overlapping_and_adjacent_networks_merge_like_nft_auto_merge() {
        let m = Intervals::merge(
            [
                "10.0.0.0/24",
                "10.0.1.0/25",   // adjacent: one range, though no CIDR covers both
                "10.0.0.128/25", // inside the first
                "10.0.0.0/24",   // a duplicate
                "192.0.2.1",
                "192.0.2.3", // not adjacent to .1
                "2001:db8::/33",
                "2001:db8:8000::/33", // adjacent: together 2001:db8::/32
            ]
            .map(net),
        );
        let shown: Vec<String> = m.ranges().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "10.0.0.0-10.0.1.127",
                "192.0.2.1",
                "192.0.2.3",
                "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
            ]
        );
        assert_eq!((m.entries(), m.merged_away()), (8, 4));
        assert_eq!(
            m.ranges()[0].to_networks(),
            vec![net("10.0.0.0/24"), net("10.0.1.0/25")]
        );
        assert_eq!(m.ranges()[3].to_networks(), vec![net("2001:db8::/32")]);
    }

    #[test]
    fn the_edges_of_the_address_spaces() {
        let m = Intervals::merge(["0.0.0.0/1", "128.0.0.0/1", "::/0", "255.255.255.255"].map(net));
        assert_eq!(m.ranges().len(), 2);
        assert_eq!(m.ranges()[0].to_networks(), vec![net("0.0.0.0/0")]);
        assert_eq!(m.ranges()[1].to_networks(), vec![net("::/0")]);
        assert!(m.contains("255.255.255.255".parse().unwrap()));
        assert!(m.contains("::".parse().unwrap()));
    }

    #[test]
    fn lifetimes() {
        let day = Duration::from_secs(86_400);
        assert_eq!(parse_lifetime("30s", day), Ok(Duration::from_secs(30)));
        assert_eq!(parse_lifetime("10m", day), Ok(Duration::from_secs(600)));
        assert_eq!(parse_lifetime("2h", day), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_lifetime("1d", day), Ok(day));
        for bad in [
            "",
            "m",
            "0m",
            "-5m",
            "5",
            "5 m",
            "1.5h",
            "1h30m",
            "5w",
            "5é",
            "é",
            "99999999999999999999s",
        ] {
            let e = parse_lifetime(bad, day).unwrap_err();
            assert!(
                matches!(e, LifetimeError::Syntax(_)) || bad.starts_with("9999"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            parse_lifetime("25h", day).unwrap_err().to_string(),
            "'25h' is longer than the limit of 1d"
        );
        assert_eq!(format_lifetime(Duration::from_secs(5400)), "90m");
        assert_eq!(format_lifetime(Duration::from_secs(61)), "61s");
    }

    fn any_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            // A small corner of each space, so that overlaps and adjacency happen.
            (0u32..4096, 20u8..=32).prop_map(|(a, len)| {
                IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | a), len)
                        .unwrap()
                        .trunc(),
                )
            }),
            (0u128..4096, 116u8..=128).prop_map(|(a, len)| {
                IpNet::V6(
                    Ipv6Net::new(Ipv6Addr::from((0x2001_0db8u128 << 96) | a), len)
                        .unwrap()
                        .trunc(),
                )
            }),
        ]
    }

    fn any_addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (0u32..8192).prop_map(|a| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | a))),
            (0u128..8192).prop_map(|a| IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | a))),
        ]
    }

    proptest! {
        /// The merge matches exactly the addresses the entries match, and
        /// leaves no two ranges that could have been one.
        #[test]
        fn merging_keeps_exactly_the_addresses(
            nets in proptest::collection::vec(any_net(), 0..40),
            probes in proptest::collection::vec(any_addr(), 64),
        ) {
            let m = Intervals::merge(nets.iter().copied());
            for a in probes {
                prop_assert_eq!(m.contains(a), nets.iter().any(|n| n.contains(&a)), "{}", a);
                // The networks a range splits into cover the same addresses.
                let via_networks = m
                    .ranges()
                    .iter()
                    .flat_map(Interval::to_networks)
                    .any(|n| n.contains(&a));
                prop_assert_eq!(via_networks, m.contains(a));
            }
            for w in m.ranges().windows(2) {
                match (w[0], w[1]) {
                    (Interval::V4 { last, .. }, Interval::V4 { first, .. }) => {
                        prop_assert!(u32::from(last) + 1 < u32::from(first));
                    }
                    (Interval::V6 { last, .. }, Interval::V6 { first, .. }) => {
                        prop_assert!(u128::from(last) + 1 < u128::from(first));
                    }
                    (Interval::V4 { .. }, Interval::V6 { .. }) => {}
                    _ => prop_assert!(false, "IPv6 before IPv4"),
                }
            }
        }

        /// Each address is held until the latest deadline of the entries
        /// that cover it (for good if a permanent one does), the ranges are
        /// disjoint, sorted, and adjacent ranges of one lifetime are joined.
        #[test]
        fn segments_hold_each_address_until_its_latest_deadline(
            entries in proptest::collection::vec(
                (any_net(), proptest::option::of(1u64..4)),
                0..30,
            ),
            probes in proptest::collection::vec(any_addr(), 64),
        ) {
            let entries: Vec<ListEntry> = entries
                .into_iter()
                .map(|(net, d)| ListEntry { net, until: d.map(Deadline) })
                .collect();
            let s = Segments::of(&entries);
            for a in probes {
                let covering: Vec<_> = entries.iter().filter(|e| e.net.contains(&a)).collect();
                let want = if covering.is_empty() {
                    None
                } else if covering.iter().any(|e| e.until.is_none()) {
                    Some(None)
                } else {
                    Some(covering.iter().map(|e| e.until).max().unwrap())
                };
                prop_assert_eq!(s.find(a).map(|x| x.until), want, "{}", a);
            }
            for w in s.segments().windows(2) {
                let joined = w[0].until == w[1].until;
                match (w[0].interval, w[1].interval) {
                    (Interval::V4 { last, .. }, Interval::V4 { first, .. }) => {
                        let (l, f) = (u32::from(last) as u64, u32::from(first) as u64);
                        prop_assert!(l < f && (!joined || l + 1 < f));
                    }
                    (Interval::V6 { last, .. }, Interval::V6 { first, .. }) => {
                        let (l, f) = (u128::from(last), u128::from(first));
                        prop_assert!(l < f && (!joined || l + 1 < f));
                    }
                    (Interval::V4 { .. }, Interval::V6 { .. }) => {}
                    _ => prop_assert!(false, "IPv6 before IPv4"),
                }
            }
        }
    }

    #[test]
    fn stored_lists_round_trip_and_drop_what_expired() {
        let text = "# office\n203.0.113.0/24\n2001:db8::/32 # v6\n\n192.0.2.9 until 2026-12-08T04:00:00Z\n198.51.100.1 until 2020-01-01T00:00:00Z\n";
        let now = Deadline::parse("2026-12-08T03:00:00Z").unwrap().0;
        let entries = parse_stored_list(text, now).unwrap();
        assert_eq!(entries.len(), 3, "the expired entry is dropped");
        assert_eq!(
            format_stored_list(&entries),
            "203.0.113.0/24\n2001:db8::/32\n192.0.2.9 until 2026-12-08T04:00:00Z\n"
        );
        assert_eq!(
            parse_stored_list(&format_stored_list(&entries), now).unwrap(),
            entries
        );
        let e = parse_stored_list("10.0.0.0/8\n10.0.0.1 for 1h\n", now).unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
        let e = parse_stored_list("10.0.0.1 until tomorrow\n", now).unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
    }

    #[test]
    fn a_temporary_entry_inside_a_permanent_one_adds_nothing() {
        let entries = [
            ListEntry {
                net: net("10.0.0.0/24"),
                until: None,
            },
            ListEntry {
                net: net("10.0.0.7"),
                until: Some(Deadline(5)),
            },
            ListEntry {
                net: net("10.0.1.0/24"),
                until: Some(Deadline(5)),
            },
            ListEntry {
                net: net("10.0.1.0/25"),
                until: Some(Deadline(9)),
            },
        ];
        let s = Segments::of(&entries);
        let shown: Vec<String> = s
            .segments()
            .iter()
            .map(|x| format!("{} {:?}", x.interval, x.until.map(|d| d.0)))
            .collect();
        assert_eq!(
            shown,
            [
                "10.0.0.0-10.0.0.255 None",
                "10.0.1.0-10.0.1.127 Some(9)",
                "10.0.1.128-10.0.1.255 Some(5)"
            ]
        );
    }
}
