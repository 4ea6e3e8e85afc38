//! Port lists: `22`, `22,80,443`, `8000-8100`, or any mix of them.

use serde::{Serialize, Serializer};
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// What a port list may contain, for error messages.
const ACCEPTED: &str = "expected ports 1-65535 and ranges like 8000-8100, separated by commas (e.g. 22,80,443,8000-8100)";

/// Why a port list does not parse. Every message names the bad item and what is
/// accepted instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortListError {
    #[error("empty port list: {ACCEPTED}")]
    Empty,
    #[error("empty item in port list {list:?}: {ACCEPTED}")]
    EmptyItem { list: String },
    #[error("port {port} is out of range 1-65535")]
    OutOfRange { port: String },
    #[error("{item:?} is not a port or a port range: {ACCEPTED}")]
    NotAPort { item: String },
    #[error("port range {start}-{end} is reversed: write {end}-{start}")]
    Reversed { start: u16, end: u16 },
}

/// A set of ports, kept as sorted, non-overlapping, non-adjacent ranges. Ranges stay
/// ranges: `1-65535` is one element, not 65535.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortList {
    ranges: Vec<RangeInclusive<u16>>,
}

impl PortList {
    /// Every port, 1-65535.
    pub fn all() -> PortList {
        PortList {
            ranges: vec![1..=65535],
        }
    }

    /// The ports of `ranges` (in any order, overlapping or not). Port 0 is dropped:
    /// it cannot be probed. Returns `None` when nothing is left.
    pub fn from_ranges<I: IntoIterator<Item = RangeInclusive<u16>>>(ranges: I) -> Option<PortList> {
        let mut v: Vec<RangeInclusive<u16>> = ranges
            .into_iter()
            .filter_map(|r| {
                let (s, e) = (*r.start().max(&1), *r.end());
                (s <= e).then_some(s..=e)
            })
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by_key(|r| *r.start());
        let mut merged: Vec<RangeInclusive<u16>> = Vec::with_capacity(v.len());
        for r in v {
            match merged.last_mut() {
                Some(last) if u32::from(*r.start()) <= u32::from(*last.end()) + 1 => {
                    if r.end() > last.end() {
                        *last = *last.start()..=*r.end();
                    }
                }
                _ => merged.push(r),
            }
        }
        Some(PortList { ranges: merged })
    }

    /// The single port `port` (1-65535).
    pub fn single(port: u16) -> Option<PortList> {
        PortList::from_ranges([port..=port])
    }

    /// How many ports the list holds.
    pub fn len(&self) -> usize {
        self.ranges
            .iter()
            .map(|r| usize::from(*r.end()) - usize::from(*r.start()) + 1)
            .sum()
    }

    /// Always false: a port list holds at least one port.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|r| r.contains(&port))
    }

    /// The ports, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges.iter().flat_map(|r| r.clone())
    }

    /// The ranges, ascending.
    pub fn ranges(&self) -> &[RangeInclusive<u16>] {
        &self.ranges
    }
}

fn parse_port(s: &str, item: &str) -> Result<u16, PortListError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortListError::NotAPort {
            item: item.to_string(),
        });
    }
    match s.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(PortListError::OutOfRange {
            port: s.to_string(),
        }),
    }
}

impl FromStr for PortList {
    type Err = PortListError;

    /// Parses `22,80,443,8000-8100`. Whitespace around items is ignored; duplicates
    /// and overlaps are merged.
    fn from_str(s: &str) -> Result<PortList, PortListError> {
        if s.trim().is_empty() {
            return Err(PortListError::Empty);
        }
        let mut ranges = Vec::new();
        for raw in s.split(',') {
            let item = raw.trim();
            if item.is_empty() {
                return Err(PortListError::EmptyItem {
                    list: s.to_string(),
                });
            }
            let range = match item.split_once('-') {
                None => {
                    let p = parse_port(item, item)?;
                    p..=p
                }
                Some((a, b)) => {
                    let (a, b) = (a.trim(), b.trim());
                    let start = parse_port(a, item)?;
                    let end = parse_port(b, item)?;
                    if start > end {
                        return Err(PortListError::Reversed { start, end });
                    }
                    start..=end
                }
            };
            ranges.push(range);
        }
        Ok(PortList::from_ranges(ranges).expect("parsed ports are 1-65535"))
    }
}

impl fmt::Display for PortList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

impl Serialize for PortList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<PortList, PortListError> {
        s.parse()
    }

    #[test]
    fn parses_singles_and_ranges() {
        let l = p("22,80,443,8000-8100").unwrap();
        assert_eq!(l.len(), 3 + 101);
        assert_eq!(l.to_string(), "22,80,443,8000-8100");
        assert!(l.contains(8050) && !l.contains(8101) && !l.contains(21));
        assert_eq!(
            l.iter().take(4).collect::<Vec<_>>(),
            vec![22, 80, 443, 8000]
        );
    }

    #[test]
    fn merges_overlaps_duplicates_and_neighbours() {
        let l = p(" 80 , 79-81,22,22, 82-90,1-21").unwrap();
        assert_eq!(l.to_string(), "1-22,79-90");
        assert_eq!(l.len(), 22 + 12);
        assert_eq!(p("1-65535").unwrap(), PortList::all());
        assert_eq!(PortList::all().len(), 65535);
        assert_eq!(p("65535").unwrap().iter().collect::<Vec<_>>(), vec![65535]);
    }

    #[test]
    fn rejects_out_of_range_ports() {
        let e = p("70000").unwrap_err();
        assert_eq!(
            e,
            PortListError::OutOfRange {
                port: "70000".into()
            }
        );
        assert_eq!(e.to_string(), "port 70000 is out of range 1-65535");
        assert_eq!(
            p("0").unwrap_err().to_string(),
            "port 0 is out of range 1-65535"
        );
        assert_eq!(
            p("22,0-10").unwrap_err().to_string(),
            "port 0 is out of range 1-65535"
        );
        assert_eq!(
            p("1-65536").unwrap_err().to_string(),
            "port 65536 is out of range 1-65535"
        );
        assert_eq!(
            p("99999999999999999999").unwrap_err().to_string(),
            "port 99999999999999999999 is out of range 1-65535"
        );
    }

    #[test]
    fn rejects_garbage_naming_the_item() {
        for bad in ["a-b", "ssh", "22-", "-22", "2 2", "1-2-3", "+22", "22/tcp"] {
            let e = p(&format!("80,{bad}")).unwrap_err();
            assert_eq!(
                e,
                PortListError::NotAPort {
                    item: bad.trim().to_string()
                },
                "{bad}"
            );
            let msg = e.to_string();
            assert!(msg.contains(&format!("{:?}", bad.trim())), "{msg}");
            assert!(msg.contains("8000-8100"), "says what is accepted: {msg}");
        }
    }

    #[test]
    fn rejects_empty_and_reversed() {
        assert_eq!(p("").unwrap_err(), PortListError::Empty);
        assert_eq!(p("  ").unwrap_err(), PortListError::Empty);
        assert!(matches!(
            p("22,,80").unwrap_err(),
            PortListError::EmptyItem { .. }
        ));
        assert!(matches!(
            p("22,").unwrap_err(),
            PortListError::EmptyItem { .. }
        ));
        let e = p("100-80").unwrap_err();
        assert_eq!(
            e,
            PortListError::Reversed {
                start: 100,
                end: 80
            }
        );
        assert_eq!(e.to_string(), "port range 100-80 is reversed: write 80-100");
    }

    #[test]
    fn from_ranges_drops_port_zero() {
        assert_eq!(PortList::from_ranges([0..=0]), None);
        assert_eq!(PortList::from_ranges([0..=2]).unwrap().to_string(), "1-2");
        assert_eq!(PortList::single(443).unwrap().to_string(), "443");
    }
}
