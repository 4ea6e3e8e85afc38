//! Importing other firewalls' rules into portwall's rule language.
//!
//! Pure: text goes in (UFW's `user.rules` / `user6.rules`, `ufw status`
//! output, `iptables-save` / `ip6tables-save` output), an [`Import`] comes out:
//! a [`model::Ruleset`] whose meaning under [`model::evaluate`] is the meaning of
//! the original rules, plus
//!
//! - [`Import::untranslated`]: every line that could not be expressed faithfully
//!   (an `-m owner` match, a `-j MARK` target, a user chain whose `RETURN`
//!   logic cannot be flattened, ...), with the reason. Nothing is silently
//!   dropped or approximated: a line is either translated exactly or listed here.
//! - [`Import::notes`]: lines that needed no rule because portwall's built-in
//!   preamble does the same (`--ctstate RELATED,ESTABLISHED -j ACCEPT`), and the
//!   places where a translated rule decides some packets the built-ins decide
//!   first differently (a stateless `DROP` that in iptables also hits replies to
//!   this host's connections), each with the lines concerned.
//!
//! # Families
//!
//! iptables and UFW keep IPv4 and IPv6 rules apart; a portwall rule without
//! addresses applies to both. Each imported rule keeps its family: a rule of the
//! IPv4 side that names no address is restricted to `0.0.0.0/0` (IPv6: `::/0`)
//! unless the other side has its twin, in which case the two become one
//! family-free rule. Twins are merged in an order that keeps the order of each
//! family's rules, which is all first-match needs, since a rule of one family
//! never matches a packet of the other.

#![forbid(unsafe_code)]

pub mod iptables;
pub mod ufw;

use ipnet::IpNet;
use model::{Action, Addresses, Defaults, Direction, Logging, Policy, Protocol, Rule, Ruleset};
use serde::Serialize;
use std::collections::HashMap;

/// The result of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Import {
    pub ruleset: Ruleset,
    /// Where each rule of [`Import::ruleset`] came from (same order): one line,
    /// or two for an IPv4 and IPv6 pair merged into one rule.
    pub origins: Vec<Vec<Origin>>,
    /// What could not be translated faithfully, and why.
    pub untranslated: Vec<Untranslated>,
    /// What the translation relied on or where meanings differ at the edges.
    pub notes: Vec<Note>,
    /// The ipsets the rules match, kept as lists (their entries are not in
    /// the rules: the caller reads them from `ipset`).
    pub lists: Vec<ImportedList>,
}

/// A line that is not in [`Import::ruleset`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Untranslated {
    /// The input it came from (a file name, or `input`).
    pub source: String,
    /// 1-based line number in that input.
    pub line_no: usize,
    pub text: String,
    pub reason: String,
}

/// What kind of remark a [`Note`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// portwall's built-in preamble does what these lines do; no rule needed.
    Builtin,
    /// The imported rules decide some packets differently from the original.
    Differs,
    /// The input did not say; this is what was assumed.
    Assumed,
    /// For information (shadowed rules, unreachable chains, ...).
    Info,
}

/// A remark about the import, naming the lines concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    pub kind: NoteKind,
    pub source: String,
    /// The lines concerned (empty for remarks about the whole input).
    pub lines: Vec<usize>,
    pub message: String,
}

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn any_net(self) -> IpNet {
        match self {
            Family::V4 => "0.0.0.0/0".parse().expect("valid"),
            Family::V6 => "::/0".parse().expect("valid"),
        }
    }
    fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// Where a translated rule came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub source: String,
    pub line_no: usize,
}

/// A translated rule of one family, not yet restricted to it.
#[derive(Debug, Clone)]
pub(crate) struct FamRule {
    pub family: Family,
    pub rule: Rule,
    pub origin: Origin,
}

/// One family's translated rules and policies.
#[derive(Debug, Clone, Default)]
pub(crate) struct Collected {
    pub rules: Vec<FamRule>,
    /// Default policies seen per family and direction.
    pub policies: HashMap<(Family, Direction), (Policy, Origin)>,
    pub untranslated: Vec<Untranslated>,
    pub notes: Vec<Note>,
    pub logging: Option<Logging>,
    /// The built-in accepts the imported rules had: UFW's (all, the
    /// default) for UFW's files; none for iptables rules, which say it all.
    pub builtins: model::builtins::Switches,
    /// The ipsets the rules match, as lists.
    pub lists: Vec<ImportedList>,
}

/// An ipset the imported rules match (`-m set --match-set NAME src|dst`),
/// kept as a portwall list; its entries are read from `ipset` by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportedList {
    pub list: model::list::ListName,
    pub ipset: String,
}

/// The list an ipset becomes: its name in lower case, characters a list name
/// does not take as `-`, starting with a letter, at most
/// [`model::list::LIST_NAME_MAX`] characters.
pub fn list_name_for_ipset(ipset: &str) -> model::list::ListName {
    let mut name: String = ipset
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "set-");
    }
    name.truncate(model::list::LIST_NAME_MAX);
    model::list::ListName::parse(&name).expect("made of a list name's characters")
}

/// Whether a rule names no address (so, unrestricted, it would match both
/// families). A rule naming a list (an ipset) is of the list's family.
fn family_free(rule: &Rule) -> bool {
    rule.source.is_any()
        && rule.destination.is_any()
        && rule.lists().next().is_none()
        && !matches!(rule.protocol, Protocol::Icmp | Protocol::Icmpv6)
}

fn restrict(mut rule: Rule, family: Family) -> Rule {
    if family_free(&rule) {
        rule.source = Addresses(vec![family.any_net()]);
    }
    rule
}

/// The key under which two family-free rules are twins.
fn twin_key(rule: &Rule) -> Option<String> {
    family_free(rule).then(|| format!("{rule}|{}", rule.log))
}

fn action_of(p: Policy) -> Action {
    match p {
        Policy::Allow => Action::Allow,
        Policy::Deny => Action::Deny,
        Policy::Reject => Action::Reject,
    }
}

/// Builds the [`Import`]: merges twins, restricts the rest to their family,
/// chooses default policies, drops rules that can never decide.
pub(crate) fn assemble(c: Collected) -> Import {
    let Collected {
        rules,
        policies,
        mut untranslated,
        mut notes,
        logging,
        builtins,
        lists,
    } = c;
    let (v4, v6): (Vec<FamRule>, Vec<FamRule>) =
        rules.into_iter().partition(|r| r.family == Family::V4);
    // Twins still ahead in the IPv6 list.
    let mut ahead: HashMap<String, usize> = HashMap::new();
    for r in &v6 {
        if let Some(k) = twin_key(&r.rule) {
            *ahead.entry(k).or_default() += 1;
        }
    }
    let mut merged: Vec<(Rule, Vec<Origin>)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    let take_v6 = |j: &mut usize, ahead: &mut HashMap<String, usize>| {
        let r = &v6[*j];
        if let Some(k) = twin_key(&r.rule) {
            if let Some(n) = ahead.get_mut(&k) {
                *n -= 1;
            }
        }
        *j += 1;
        (restrict(r.rule.clone(), Family::V6), vec![r.origin.clone()])
    };
    while i < v4.len() || j < v6.len() {
        if i < v4.len() && j < v6.len() {
            let (a, b) = (&v4[i], &v6[j]);
            if twin_key(&a.rule).is_some() && twin_key(&a.rule) == twin_key(&b.rule) {
                merged.push((a.rule.clone(), vec![a.origin.clone(), b.origin.clone()]));
                if let Some(n) = twin_key(&b.rule).and_then(|k| ahead.get_mut(&k)) {
                    *n -= 1;
                }
                i += 1;
                j += 1;
                continue;
            }
            let a_twin_ahead =
                twin_key(&a.rule).is_some_and(|k| ahead.get(&k).is_some_and(|n| *n > 0));
            if a_twin_ahead {
                merged.push(take_v6(&mut j, &mut ahead));
            } else {
                merged.push((restrict(a.rule.clone(), Family::V4), vec![a.origin.clone()]));
                i += 1;
            }
        } else if i < v4.len() {
            let a = &v4[i];
            merged.push((restrict(a.rule.clone(), Family::V4), vec![a.origin.clone()]));
            i += 1;
        } else {
            merged.push(take_v6(&mut j, &mut ahead));
        }
    }

    // Default policies: one per direction; a family whose policy differs gets a
    // final rule of its own.
    let mut defaults = Defaults::default();
    let mut tail: Vec<(Rule, Vec<Origin>)> = Vec::new();
    for d in Direction::ALL {
        let p4 = policies.get(&(Family::V4, d));
        let p6 = policies.get(&(Family::V6, d));
        match (p4, p6) {
            (Some((a, _)), Some((b, ob))) if a != b => {
                defaults.set(d, *a);
                let mut r = Rule::new(action_of(*b), d);
                r.source = Addresses(vec![Family::V6.any_net()]);
                notes.push(Note {
                    kind: NoteKind::Info,
                    source: ob.source.clone(),
                    lines: vec![ob.line_no],
                    message: format!(
                        "the {} policy is {} for IPv4 but {} for IPv6: imported as 'default {} {}' plus a last rule '{}'",
                        d.policy_name(),
                        a.as_str(),
                        b.as_str(),
                        a.as_str(),
                        d.policy_name(),
                        r
                    ),
                });
                tail.push((r, vec![ob.clone()]));
            }
            (Some((p, _)), _) | (None, Some((p, _))) => defaults.set(d, *p),
            (None, None) => {}
        }
    }
    merged.extend(tail);

    let mut out: Vec<Rule> = Vec::new();
    let mut out_origins: Vec<Vec<Origin>> = Vec::new();
    for (rule, origins) in merged {
        if let Err(e) = rule.validate() {
            for o in &origins {
                untranslated.push(Untranslated {
                    source: o.source.clone(),
                    line_no: o.line_no,
                    text: rule.to_string(),
                    reason: format!("the translated rule is not valid: {e}"),
                });
            }
            continue;
        }
        if let Some(n) = out.iter().position(|r| r.same_match(&rule)) {
            // One note per input: a rule merged from IPv4 and IPv6 twins has
            // lines in both, and a line number only means something in its
            // own input.
            let mut sources: Vec<&str> = Vec::new();
            for o in &origins {
                if !sources.contains(&o.source.as_str()) {
                    sources.push(&o.source);
                }
            }
            for source in sources {
                notes.push(Note {
                    kind: NoteKind::Info,
                    source: source.to_string(),
                    lines: origins
                        .iter()
                        .filter(|o| o.source == source)
                        .map(|o| o.line_no)
                        .collect(),
                    message: format!(
                        "never decides a packet: rule {} ('{}') matches the same packets first; left out",
                        n + 1,
                        out[n]
                    ),
                });
            }
            continue;
        }
        out.push(rule);
        out_origins.push(origins);
    }
    untranslated.sort_by(|a, b| (&a.source, a.line_no).cmp(&(&b.source, b.line_no)));
    Import {
        ruleset: Ruleset {
            rules: out,
            defaults,
            logging: logging.unwrap_or_default(),
            builtins,
            lists: Default::default(),
        },
        origins: out_origins,
        lists,
        untranslated,
        notes,
    }
}

/// Splits `text` into lines numbered from 1.
pub(crate) fn numbered(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l))
}

/// Parses an address or network as iptables and UFW print them (`10.0.0.1`,
/// `10.0.0.0/8`, `10.0.0.0/255.0.0.0`); host bits are cleared as iptables does.
pub(crate) fn parse_net(s: &str) -> Option<IpNet> {
    if let Ok(a) = s.parse::<std::net::IpAddr>() {
        return Some(IpNet::from(a));
    }
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n.trunc());
    }
    let (addr, mask) = s.split_once('/')?;
    let addr: std::net::IpAddr = addr.parse().ok()?;
    let mask: std::net::IpAddr = mask.parse().ok()?;
    let len = match mask {
        std::net::IpAddr::V4(m) => {
            let bits = u32::from(m);
            (bits.leading_ones() == bits.count_ones()).then_some(bits.count_ones() as u8)?
        }
        std::net::IpAddr::V6(m) => {
            let bits = u128::from(m);
            (bits.leading_ones() == bits.count_ones()).then_some(bits.count_ones() as u8)?
        }
    };
    IpNet::new(addr, len).ok().map(|n| n.trunc())
}

/// Parses a port list as iptables and UFW print it: `22`, `80,443`,
/// `8000:8100`, `1024:` (to 65535).
pub(crate) fn parse_ports(s: &str) -> Option<Vec<model::PortRange>> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let r = match part.split_once(':') {
            Some((a, b)) => {
                let a: u16 = if a.is_empty() { 0 } else { a.parse().ok()? };
                let b: u16 = if b.is_empty() { 65535 } else { b.parse().ok()? };
                model::PortRange::new(a.max(1), b)?
            }
            None => {
                let p: u16 = part.parse().ok()?;
                model::PortRange::new(p, p)?
            }
        };
        v.push(r);
    }
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr(family: Family, text: &str, line: usize) -> FamRule {
        FamRule {
            family,
            rule: model::parse_rule(text, &model::Services::builtin())
                .unwrap()
                .remove(0),
            origin: Origin {
                source: "t".into(),
                line_no: line,
            },
        }
    }

    #[test]
    fn twins_merge_and_the_rest_keep_their_family() {
        let c = Collected {
            rules: vec![
                fr(Family::V4, "allow 22/tcp", 1),
                fr(Family::V4, "deny from 10.0.0.1", 2),
                fr(Family::V4, "allow 80/tcp", 3),
                fr(Family::V6, "allow 22/tcp", 10),
                fr(Family::V6, "deny 80/tcp", 11),
            ],
            ..Default::default()
        };
        let imp = assemble(c);
        let texts: Vec<String> = imp.ruleset.rules.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "allow 22/tcp",
                "deny from 10.0.0.1",
                "allow 80/tcp from 0.0.0.0/0",
                "deny 80/tcp from ::/0",
            ]
        );
    }

    #[test]
    fn differing_policies_become_a_last_rule() {
        let mut c = Collected::default();
        let o = Origin {
            source: "t".into(),
            line_no: 1,
        };
        c.policies
            .insert((Family::V4, Direction::In), (Policy::Deny, o.clone()));
        c.policies
            .insert((Family::V6, Direction::In), (Policy::Allow, o));
        let imp = assemble(c);
        assert_eq!(imp.ruleset.defaults.incoming, Policy::Deny);
        assert_eq!(imp.ruleset.rules[0].to_string(), "allow from ::/0");
    }

    #[test]
    fn nets_and_ports_parse_as_printed() {
        assert_eq!(
            parse_net("10.1.2.3/255.255.0.0"),
            "10.1.0.0/16".parse().ok()
        );
        assert_eq!(parse_net("10.0.0.1"), "10.0.0.1/32".parse().ok());
        assert_eq!(parse_net("10.0.0.0/255.0.255.0"), None);
        assert_eq!(parse_ports("22,8000:8100,1024:").unwrap().len(), 3);
        assert_eq!(parse_ports("x"), None);
    }
}
