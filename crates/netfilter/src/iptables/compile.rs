//! Ruleset → portwall's iptables chains, one [`FamilyTable`] per address family.
//!
//! Every chain starts with the preamble [`model::evaluate`] defines
//! (established/related accept, invalid drop, loopback accept, ICMPv6 neighbour
//! discovery accept), then the rules of its direction in order (first match
//! wins), then the direction's default policy. Accepting is `-j RETURN`: the
//! packet goes back to the built-in chain, whose other rules (Docker's, UFW's)
//! and policy still apply, exactly as an accept in one nftables table leaves the
//! packet to the other tables' chains.
//!
//! A model rule becomes one iptables rule per combination of protocol (a port
//! rule without a protocol is TCP and UDP), source, destination and port group
//! (`-m multiport` holds 15 ports, a range counting 2). A side naming more than
//! [`IPSET_MIN`] networks of a family becomes one `hash:net` ipset instead, so
//! the number of iptables rules does not grow with the list. Every rule carries a
//! `pw:...` comment naming its origin, by which counters map back to model rules.

use super::rules::{Chain, Family, FamilyTable, IpSet, IptRule, Match, Proto, Side, Target};
use ipnet::IpNet;
use model::builtins::{self, Switches};
use model::list::{ListName, Lists};
use model::{
    Action, Addresses, Direction, Logging, Policy, PortRange, Ports, Protocol, Rule, Ruleset,
};

/// The prefix of every chain portwall owns.
pub const CHAIN_PREFIX: &str = "portwall-";
/// The helper chain that refuses: TCP reset for TCP, ICMP port unreachable otherwise.
pub const REJECT_CHAIN: &str = "portwall-reject";
/// A side with more networks (of one family) than this uses an ipset.
pub const IPSET_MIN: usize = 3;
/// The prefix of portwall's ipsets (`pwa...`, `pwb...`: two generations).
pub const IPSET_PREFIX: &str = "pw";
/// Slots of one `-m multiport` match (a range takes two).
const MULTIPORT_SLOTS: usize = 15;

/// The chain of a direction and the built-in chain that jumps to it.
pub fn chain_of(direction: Direction) -> (&'static str, &'static str) {
    match direction {
        Direction::In => ("portwall-input", "INPUT"),
        Direction::Out => ("portwall-output", "OUTPUT"),
        Direction::Routed => ("portwall-forward", "FORWARD"),
    }
}

/// Every chain portwall owns, hooked ones first.
pub fn chain_names() -> [&'static str; 4] {
    [
        chain_of(Direction::In).0,
        chain_of(Direction::Out).0,
        chain_of(Direction::Routed).0,
        REJECT_CHAIN,
    ]
}

fn tag(t: impl Into<String>) -> Match {
    Match::Comment(t.into())
}

fn ret(matches: Vec<Match>) -> IptRule {
    IptRule {
        matches,
        target: Some(Target::Return),
        ..Default::default()
    }
}

/// The fixed rules every chain starts with, then the switched-on accepts of
/// [`model::builtins`]; [`model::evaluate`] defines the same.
fn preamble(direction: Direction, family: Family, switches: &Switches) -> Vec<IptRule> {
    let mut v = vec![ret(vec![
        Match::CtState("RELATED,ESTABLISHED"),
        tag("pw:builtin:established"),
    ])];
    v.extend(builtin_accepts(direction, family, switches, true));
    v.push(IptRule {
        matches: vec![Match::CtState("INVALID"), tag("pw:builtin:invalid")],
        target: Some(Target::Drop),
        ..Default::default()
    });
    let lo = |mut r: IptRule| {
        match direction {
            Direction::In => r.in_interface = Some("lo".into()),
            _ => r.out_interface = Some("lo".into()),
        }
        r
    };
    if direction != Direction::Routed {
        v.push(lo(ret(vec![tag("pw:builtin:loopback")])));
        if family == Family::V6 {
            for t in model::evaluate::ND_TYPES {
                v.push(IptRule {
                    protocol: Some(Proto::Icmpv6),
                    ..ret(vec![
                        Match::Icmp6Type(t),
                        tag("pw:builtin:neighbour-discovery"),
                    ])
                });
            }
        }
    }
    v.extend(builtin_accepts(direction, family, switches, false));
    v
}

/// The switched-on accepts of `direction` and `family`, one rule an ICMP type.
fn builtin_accepts(
    direction: Direction,
    family: Family,
    switches: &Switches,
    before_invalid: bool,
) -> Vec<IptRule> {
    let mut v = Vec::new();
    for a in builtins::switched_on(*switches, direction, before_invalid) {
        let same_family = matches!(
            (a.family, family),
            (builtins::Family::V4, Family::V4) | (builtins::Family::V6, Family::V6)
        );
        if !same_family {
            continue;
        }
        let net = |n: builtins::Net| IpNet::new(n.address, n.prefix).expect("a valid network");
        let hop: Vec<Match> = a.hop_limit.map(Match::HopLimit).into_iter().collect();
        let tagged = |mut m: Vec<Match>| {
            m.extend(hop.iter().cloned());
            m.push(tag(format!("pw:builtin:{}", a.switch)));
            m
        };
        let base = IptRule {
            source: a.source.map(net),
            destination: a.destination.map(net),
            ..ret(vec![])
        };
        match a.transport {
            builtins::Transport::Icmp(types) => {
                for &t in types {
                    let (proto, m) = match family {
                        Family::V4 => (Proto::Icmp, Match::IcmpType(t)),
                        Family::V6 => (Proto::Icmpv6, Match::Icmp6Type(t)),
                    };
                    v.push(IptRule {
                        protocol: Some(proto),
                        matches: tagged(vec![m]),
                        ..base.clone()
                    });
                }
            }
            builtins::Transport::Udp {
                source_port,
                destination_port,
            } => v.push(IptRule {
                protocol: Some(Proto::Udp),
                matches: tagged(vec![Match::Ports {
                    proto: Proto::Udp,
                    sport: source_port.map(PortRange::single),
                    dport: Some(PortRange::single(destination_port)),
                }]),
                ..base
            }),
        }
    }
    v
}

enum AddrSel {
    Any,
    Net(IpNet),
    Set(String),
}

/// How one side of a rule is matched in `family`; `None` when the rule names
/// addresses of the other family only (it cannot match this family's packets).
fn addr_choices(
    a: &Addresses,
    family: Family,
    set_name: impl FnOnce() -> String,
    sets: &mut Vec<IpSet>,
) -> Option<Vec<AddrSel>> {
    if a.is_any() {
        return Some(vec![AddrSel::Any]);
    }
    let mut nets: Vec<IpNet> =
        a.0.iter()
            .filter(|n| family.holds(n))
            .map(IpNet::trunc)
            .collect();
    if nets.is_empty() {
        return None;
    }
    if nets.iter().any(|n| n.prefix_len() == 0) {
        return Some(vec![AddrSel::Any]);
    }
    let mut seen = std::collections::HashSet::new();
    nets.retain(|n| seen.insert(*n));
    if nets.len() > IPSET_MIN {
        let name = set_name();
        sets.push(IpSet {
            name: name.clone(),
            family,
            members: nets,
            timeouts: None,
            known: true,
        });
        return Some(vec![AddrSel::Set(name)]);
    }
    Some(nets.into_iter().map(AddrSel::Net).collect())
}

enum PortSel {
    Any,
    One(PortRange),
    Many(Vec<PortRange>),
}

fn port_choices(p: &Ports) -> Vec<PortSel> {
    match p.0.as_slice() {
        [] => vec![PortSel::Any],
        [one] => vec![PortSel::One(*one)],
        many => {
            let mut chunks: Vec<Vec<PortRange>> = vec![Vec::new()];
            let mut slots = 0;
            for r in many {
                let need = if r.start == r.end { 1 } else { 2 };
                if slots + need > MULTIPORT_SLOTS {
                    chunks.push(Vec::new());
                    slots = 0;
                }
                chunks.last_mut().expect("a chunk").push(*r);
                slots += need;
            }
            chunks
                .into_iter()
                .map(|c| match c.as_slice() {
                    [one] => PortSel::One(*one),
                    _ => PortSel::Many(c),
                })
                .collect()
        }
    }
}

fn port_matches(proto: Proto, sport: &PortSel, dport: &PortSel) -> Vec<Match> {
    let one = |p: &PortSel| match p {
        PortSel::One(r) => Some(*r),
        _ => None,
    };
    let mut v = Vec::new();
    if one(sport).is_some() || one(dport).is_some() {
        v.push(Match::Ports {
            proto,
            sport: one(sport),
            dport: one(dport),
        });
    }
    if let PortSel::Many(ports) = sport {
        v.push(Match::Multiport {
            side: Side::Source,
            ports: ports.clone(),
        });
    }
    if let PortSel::Many(ports) = dport {
        v.push(Match::Multiport {
            side: Side::Destination,
            ports: ports.clone(),
        });
    }
    v
}

fn verdict(action: Action) -> Target {
    match action {
        Action::Allow | Action::Limit => Target::Return,
        Action::Deny => Target::Drop,
        Action::Reject => Target::Jump(REJECT_CHAIN.to_string()),
    }
}

fn log_rule(base: &IptRule, prefix: String) -> IptRule {
    let mut r = base.clone();
    r.matches.extend([Match::LogRate, tag("pw:log")]);
    r.target = Some(Target::Log(prefix));
    r
}

/// The name of a list's ipset of one family and generation:
/// `pw` + generation + `l` + the list's name + the family (at most 31
/// characters, ipset's limit, given `model::list::LIST_NAME_MAX`).
pub fn list_set_name(list: &ListName, family: Family, generation: char) -> String {
    format!("{IPSET_PREFIX}{generation}l{list}{}", family.suffix())
}

/// The ipset that holds a list's networks of `family` (made once, however
/// many rules name the list): each merged range as its fewest CIDR blocks,
/// temporary ones with the seconds they have left.
fn list_set(
    list: &ListName,
    family: Family,
    generation: char,
    lists: &Lists,
    sets: &mut Vec<IpSet>,
) -> AddrSel {
    let name = list_set_name(list, family, generation);
    if !sets.iter().any(|s| s.name == name) {
        let loaded = lists.get(list);
        let mut members = Vec::new();
        let mut timeouts = Vec::new();
        for seg in loaded.iter().flat_map(|l| l.segments()) {
            let left = match seg.until {
                None => None,
                Some(d) => match crate::compile::timeout_left(d) {
                    Some(l) => Some(l.as_secs().max(1)),
                    None => continue,
                },
            };
            for net in seg.interval.to_networks() {
                if family.holds(&net) {
                    members.push(net);
                    timeouts.push(left);
                }
            }
        }
        let temporary = timeouts.iter().any(Option::is_some);
        sets.push(IpSet {
            name: name.clone(),
            family,
            members,
            timeouts: temporary.then_some(timeouts),
            known: loaded.is_some(),
        });
    }
    AddrSel::Set(name)
}

/// The iptables rules of model rule `index` (0-based) in `family`.
fn rule_rules(
    rule: &Rule,
    index: usize,
    family: Family,
    generation: char,
    lists: &Lists,
    sets: &mut Vec<IpSet>,
) -> Vec<IptRule> {
    let protos: Vec<Option<Proto>> = match rule.protocol {
        Protocol::Tcp => vec![Some(Proto::Tcp)],
        Protocol::Udp => vec![Some(Proto::Udp)],
        Protocol::Icmp if family == Family::V4 => vec![Some(Proto::Icmp)],
        Protocol::Icmpv6 if family == Family::V6 => vec![Some(Proto::Icmpv6)],
        Protocol::Icmp | Protocol::Icmpv6 => return Vec::new(),
        p if p.ipv4_only() && family == Family::V6 => return Vec::new(),
        Protocol::Esp => vec![Some(Proto::Esp)],
        Protocol::Ah => vec![Some(Proto::Ah)],
        Protocol::Gre => vec![Some(Proto::Gre)],
        Protocol::Igmp => vec![Some(Proto::Igmp)],
        Protocol::Ipv6 => vec![Some(Proto::Ipv6)],
        Protocol::Any if !rule.source_ports.is_any() || !rule.destination_ports.is_any() => {
            vec![Some(Proto::Tcp), Some(Proto::Udp)]
        }
        Protocol::Any => vec![None],
    };
    let dir = &rule.direction.as_str()[..1];
    let set_name = |side: char| {
        format!(
            "{IPSET_PREFIX}{generation}{dir}{}{side}{}",
            index + 1,
            family.suffix()
        )
    };
    let srcs = match &rule.source_list {
        Some(list) => vec![list_set(list, family, generation, lists, sets)],
        None => match addr_choices(&rule.source, family, || set_name('s'), sets) {
            Some(s) => s,
            None => return Vec::new(),
        },
    };
    let dsts = match &rule.destination_list {
        Some(list) => vec![list_set(list, family, generation, lists, sets)],
        None => match addr_choices(&rule.destination, family, || set_name('d'), sets) {
            Some(d) => d,
            None => return Vec::new(),
        },
    };
    let sports = port_choices(&rule.source_ports);
    let routed = rule.direction == Direction::Routed;
    // Routed rules match the destination before DNAT, with conntrack's
    // original tuple, which takes one port or range per rule.
    let dports = if routed {
        match rule.destination_ports.0.as_slice() {
            [] => vec![PortSel::Any],
            many => many.iter().map(|r| PortSel::One(*r)).collect(),
        }
    } else {
        port_choices(&rule.destination_ports)
    };
    let number = index + 1;
    let mut out = Vec::new();
    for proto in &protos {
        for s in &srcs {
            for d in &dsts {
                for sp in &sports {
                    for dp in &dports {
                        let mut base = IptRule {
                            in_interface: rule.in_interface.clone(),
                            out_interface: rule.out_interface.clone(),
                            protocol: *proto,
                            ..Default::default()
                        };
                        let mut original = (None, None);
                        if let Some(p) = proto {
                            if matches!(p, Proto::Tcp | Proto::Udp) {
                                if routed {
                                    base.matches = port_matches(*p, sp, &PortSel::Any);
                                    if let PortSel::One(r) = dp {
                                        original.1 = Some(*r);
                                    }
                                } else {
                                    base.matches = port_matches(*p, sp, dp);
                                }
                            }
                        }
                        for (sel, side) in [(s, Side::Source), (d, Side::Destination)] {
                            match sel {
                                AddrSel::Any => {}
                                AddrSel::Net(n) if routed && side == Side::Destination => {
                                    original.0 = Some(*n)
                                }
                                AddrSel::Net(n) => match side {
                                    Side::Source => base.source = Some(*n),
                                    Side::Destination => base.destination = Some(*n),
                                },
                                AddrSel::Set(name) => base.matches.push(Match::Set {
                                    name: name.clone(),
                                    side,
                                }),
                            }
                        }
                        if original != (None, None) {
                            base.matches.push(Match::CtOriginal {
                                destination: original.0,
                                dport: original.1,
                            });
                        }
                        if rule.log {
                            out.push(log_rule(
                                &base,
                                format!(
                                    "[portwall {} {}] ",
                                    rule.action.as_str().to_uppercase(),
                                    rule.direction.as_str()
                                ),
                            ));
                        }
                        if rule.action == Action::Limit {
                            let mut lim = base.clone();
                            lim.matches.extend([
                                Match::CtState("NEW"),
                                Match::HashLimitAbove {
                                    name: format!("pw-{dir}{number}"),
                                    rate: rule.limit_rate(),
                                },
                                tag(format!("pw:limit:{number}")),
                            ]);
                            // As `ufw limit`: refused with ICMP port unreachable.
                            lim.target = Some(Target::RejectPortUnreachable(family));
                            out.push(lim);
                        }
                        let mut r = base;
                        r.matches.push(tag(format!("pw:rule:{number}")));
                        r.target = Some(verdict(rule.action));
                        out.push(r);
                    }
                }
            }
        }
    }
    out
}

/// Compiles `ruleset` for one family; ipsets are named with `generation`
/// (`'a'` or `'b'`), so a new ruleset's sets never replace the contents of the
/// sets the rules in force use.
pub fn compile_family(ruleset: &Ruleset, family: Family, generation: char) -> FamilyTable {
    let mut chains = Vec::new();
    let mut sets = Vec::new();
    for direction in Direction::ALL {
        let (name, builtin) = chain_of(direction);
        let mut rules = preamble(direction, family, &ruleset.builtins);
        if ruleset.logging == Logging::Full {
            rules.push(log_rule(
                &IptRule {
                    matches: vec![Match::CtState("NEW")],
                    ..Default::default()
                },
                format!("[portwall NEW {}] ", direction.as_str()),
            ));
        }
        for (index, rule) in ruleset
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.direction == direction)
        {
            rules.extend(rule_rules(
                rule,
                index,
                family,
                generation,
                &ruleset.lists,
                &mut sets,
            ));
        }
        let policy = ruleset.defaults.get(direction);
        if policy != Policy::Allow && ruleset.logging != Logging::Off {
            rules.push(log_rule(
                &IptRule::default(),
                format!("[portwall BLOCK {}] ", direction.as_str()),
            ));
        }
        rules.push(IptRule {
            matches: vec![tag(format!("pw:policy:{}", direction.as_str()))],
            target: Some(match policy {
                Policy::Allow => Target::Return,
                Policy::Deny => Target::Drop,
                Policy::Reject => Target::Jump(REJECT_CHAIN.to_string()),
            }),
            ..Default::default()
        });
        chains.push(Chain {
            name: name.to_string(),
            hooked_from: Some(builtin),
            rules,
        });
    }
    chains.push(Chain {
        name: REJECT_CHAIN.to_string(),
        hooked_from: None,
        rules: vec![
            IptRule {
                protocol: Some(Proto::Tcp),
                matches: vec![tag("pw:reject:tcp")],
                target: Some(Target::RejectTcpReset),
                ..Default::default()
            },
            IptRule {
                matches: vec![tag("pw:reject:other")],
                target: Some(Target::RejectPortUnreachable(family)),
                ..Default::default()
            },
        ],
    });
    FamilyTable {
        family,
        chains,
        sets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{parse_rule, Services};

    fn rs(lines: &[&str]) -> Ruleset {
        let services = Services::builtin();
        let mut rs = Ruleset::default();
        for l in lines {
            for r in parse_rule(l, &services).unwrap() {
                rs.add(r);
            }
        }
        rs
    }

    fn lines(t: &FamilyTable, chain: &str) -> Vec<String> {
        t.chains
            .iter()
            .find(|c| c.name == chain)
            .unwrap()
            .rendered()
    }

    #[test]
    fn a_rule_expands_by_family_protocol_and_ports() {
        let r = rs(&["allow 53,80:90 from 10.0.0.0/8,2001:db8::/32"]);
        let v4 = compile_family(&r, Family::V4, 'a');
        let input = lines(&v4, "portwall-input");
        let rule1: Vec<&String> = input.iter().filter(|l| l.contains("pw:rule:1")).collect();
        assert_eq!(
            rule1,
            [
                "-A portwall-input -s 10.0.0.0/8 -p tcp -m multiport --dports 53,80:90 -m comment --comment \"pw:rule:1\" -j RETURN",
                "-A portwall-input -s 10.0.0.0/8 -p udp -m multiport --dports 53,80:90 -m comment --comment \"pw:rule:1\" -j RETURN",
            ]
        );
        let v6 = compile_family(&r, Family::V6, 'a');
        assert!(lines(&v6, "portwall-input")
            .iter()
            .any(|l| l.starts_with("-A portwall-input -s 2001:db8::/32 -p tcp")));
    }

    #[test]
    fn rules_of_the_other_family_are_left_out() {
        let r = rs(&["deny from 10.0.0.1", "allow proto icmp"]);
        let v6 = compile_family(&r, Family::V6, 'a');
        assert!(!lines(&v6, "portwall-input")
            .iter()
            .any(|l| l.contains("pw:rule:")));
    }

    #[test]
    fn many_addresses_become_one_set() {
        let r = rs(&["deny from 10.0.0.1,10.0.0.2,10.0.0.3,10.0.1.0/24,10.0.0.2"]);
        let v4 = compile_family(&r, Family::V4, 'b');
        assert_eq!(v4.sets.len(), 1);
        assert_eq!(v4.sets[0].name, "pwbi1s4");
        assert_eq!(v4.sets[0].members.len(), 4);
        assert!(lines(&v4, "portwall-input").contains(
            &"-A portwall-input -m set --match-set pwbi1s4 src -m comment --comment \"pw:rule:1\" -j DROP"
                .to_string()
        ));
    }

    #[test]
    fn long_port_lists_are_split_into_multiport_groups() {
        let ports: Vec<String> = (1..=20).map(|p| (p * 100).to_string()).collect();
        let r = rs(&[&format!("allow {}/tcp", ports.join(","))]);
        let v4 = compile_family(&r, Family::V4, 'a');
        let n = lines(&v4, "portwall-input")
            .iter()
            .filter(|l| l.contains("pw:rule:1"))
            .count();
        assert_eq!(n, 2);
    }

    #[test]
    fn default_policies_and_preamble() {
        let mut r = Ruleset::default();
        r.defaults.incoming = Policy::Reject;
        let v6 = compile_family(&r, Family::V6, 'a');
        let input = lines(&v6, "portwall-input");
        assert!(input[0].contains("RELATED,ESTABLISHED"));
        assert_eq!(
            input
                .iter()
                .filter(|l| l.contains("neighbour-discovery"))
                .count(),
            5
        );
        assert_eq!(
            input.last().unwrap(),
            "-A portwall-input -m comment --comment \"pw:policy:in\" -j portwall-reject"
        );
        let fwd = lines(&v6, "portwall-forward");
        assert!(!fwd.iter().any(|l| l.contains("loopback")));
    }
}
