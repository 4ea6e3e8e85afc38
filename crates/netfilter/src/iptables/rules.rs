//! The typed form of what portwall sends to `iptables-restore`: chains of rules
//! made of matches and a target, rendered by one function, [`IptRule::render`],
//! in the canonical order `iptables-save` prints them (`-s -d -i -o -p`, then the
//! matches in order, then `-j`). Because the rendering is canonical, the lines
//! read back from `iptables-save` can be compared with what was sent literally.

use ipnet::IpNet;
use model::PortRange;
use std::fmt::Write;

/// An address family: one `iptables` world each (`iptables` / `ip6tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];
    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }
    pub fn holds(self, net: &IpNet) -> bool {
        matches!(
            (self, net),
            (Family::V4, IpNet::V4(_)) | (Family::V6, IpNet::V6(_))
        )
    }
    /// The `ipset` family name.
    pub fn ipset_family(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }
}

/// The IP protocol of `-p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Esp,
    Ah,
    Gre,
    Igmp,
    /// IPv6 in IPv4 (41).
    Ipv6,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Icmpv6 => "ipv6-icmp",
            // As iptables-save prints them: the names of /etc/protocols.
            Proto::Esp => "esp",
            Proto::Ah => "ah",
            Proto::Gre => "gre",
            Proto::Igmp => "igmp",
            Proto::Ipv6 => "ipv6",
        }
    }
}

/// Which side of the packet a set or port match looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Source,
    Destination,
}

/// One `-m` match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `-m tcp|udp [--sport R] [--dport R]` (one port or range per side).
    Ports {
        proto: Proto,
        sport: Option<PortRange>,
        dport: Option<PortRange>,
    },
    /// `-m multiport --sports|--dports LIST` (at most 15 slots; a range takes 2).
    Multiport { side: Side, ports: Vec<PortRange> },
    /// `-m icmp6 --icmpv6-type N`.
    Icmp6Type(u8),
    /// `-m icmp --icmp-type N`.
    IcmpType(u8),
    /// `-m hl --hl-eq N`: the IPv6 hop limit.
    HopLimit(u8),
    /// `-m conntrack --ctstate A,B`.
    CtState(&'static str),
    /// `-m conntrack [--ctorigdst NET] [--ctorigdstport R]`: the destination
    /// as the client sent it, before DNAT (routed rules; see
    /// `crate::compile`'s module docs).
    CtOriginal {
        destination: Option<IpNet>,
        dport: Option<PortRange>,
    },
    /// `-m set --match-set NAME src|dst`.
    Set { name: String, side: Side },
    /// The `limit` action's per-source meter: matches sources over the rate.
    HashLimitAbove { name: String, rate: model::Rate },
    /// `-m limit`: the log rate.
    LogRate,
    /// `-m comment --comment "TEXT"`: the origin tag counters are mapped by.
    Comment(String),
}

/// Where a packet goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Back to the built-in chain: portwall accepts, the rest of the built-in
    /// chain (other tools' rules, its policy) still applies.
    Return,
    Drop,
    Jump(String),
    RejectTcpReset,
    RejectPortUnreachable(Family),
    Log(String),
}

/// One iptables rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IptRule {
    pub source: Option<IpNet>,
    pub destination: Option<IpNet>,
    pub in_interface: Option<String>,
    pub out_interface: Option<String>,
    pub protocol: Option<Proto>,
    pub matches: Vec<Match>,
    pub target: Option<Target>,
}

/// A `limit` rule's rate as `-m hashlimit` takes it: per second, minute,
/// hour or day, the coarsest that holds it as a whole number (as the
/// nftables backend's meter).
pub fn limit_rate(rate: model::Rate) -> String {
    let (n, t) = (u64::from(rate.connections), u64::from(rate.seconds));
    let (per, amount) = [("sec", 1u64), ("min", 60), ("hour", 3600), ("day", 86400)]
        .into_iter()
        .find(|(_, unit)| (n * unit) % t == 0)
        .map(|(p, unit)| (p, n * unit / t))
        .unwrap_or(("day", (n * 86400).div_ceil(t)));
    format!("{amount}/{per}")
}

fn ports_text(ports: &[PortRange]) -> String {
    ports
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl IptRule {
    /// `-A CHAIN ...` exactly as `iptables-save` prints it.
    pub fn render(&self, chain: &str) -> String {
        let mut s = format!("-A {chain}");
        if let Some(n) = &self.source {
            let _ = write!(s, " -s {}", n.trunc());
        }
        if let Some(n) = &self.destination {
            let _ = write!(s, " -d {}", n.trunc());
        }
        if let Some(i) = &self.in_interface {
            let _ = write!(s, " -i {i}");
        }
        if let Some(i) = &self.out_interface {
            let _ = write!(s, " -o {i}");
        }
        if let Some(p) = self.protocol {
            let _ = write!(s, " -p {}", p.name());
        }
        for m in &self.matches {
            match m {
                Match::CtOriginal { destination, dport } => {
                    s.push_str(" -m conntrack");
                    if let Some(n) = destination {
                        let _ = write!(s, " --ctorigdst {n}");
                    }
                    if let Some(r) = dport {
                        let _ = write!(s, " --ctorigdstport {r}");
                    }
                }
                Match::Ports {
                    proto,
                    sport,
                    dport,
                } => {
                    let _ = write!(s, " -m {}", proto.name());
                    if let Some(r) = sport {
                        let _ = write!(s, " --sport {r}");
                    }
                    if let Some(r) = dport {
                        let _ = write!(s, " --dport {r}");
                    }
                }
                Match::Multiport { side, ports } => {
                    let flag = match side {
                        Side::Source => "--sports",
                        Side::Destination => "--dports",
                    };
                    let _ = write!(s, " -m multiport {flag} {}", ports_text(ports));
                }
                Match::Icmp6Type(t) => {
                    let _ = write!(s, " -m icmp6 --icmpv6-type {t}");
                }
                Match::IcmpType(t) => {
                    let _ = write!(s, " -m icmp --icmp-type {t}");
                }
                Match::HopLimit(h) => {
                    let _ = write!(s, " -m hl --hl-eq {h}");
                }
                Match::CtState(states) => {
                    let _ = write!(s, " -m conntrack --ctstate {states}");
                }
                Match::Set { name, side } => {
                    let dir = match side {
                        Side::Source => "src",
                        Side::Destination => "dst",
                    };
                    let _ = write!(s, " -m set --match-set {name} {dir}");
                }
                Match::HashLimitAbove { name, rate } => {
                    // The bucket refills in `rate.seconds`; an entry idle that
                    // long is full again, so expiring it then changes nothing.
                    let _ = write!(
                        s,
                        " -m hashlimit --hashlimit-above {} --hashlimit-burst {} --hashlimit-mode srcip --hashlimit-name {name} --hashlimit-htable-expire {}",
                        limit_rate(*rate),
                        rate.connections,
                        u64::from(rate.seconds) * 1000
                    );
                }
                Match::LogRate => {
                    let _ = write!(
                        s,
                        " -m limit --limit {}/sec --limit-burst 10",
                        crate::compile::LOG_RATE_PER_SECOND
                    );
                }
                Match::Comment(c) => {
                    let _ = write!(s, " -m comment --comment {}", quoted(c));
                }
            }
        }
        match &self.target {
            None => {}
            Some(Target::Return) => s.push_str(" -j RETURN"),
            Some(Target::Drop) => s.push_str(" -j DROP"),
            Some(Target::Jump(c)) => {
                let _ = write!(s, " -j {c}");
            }
            Some(Target::RejectTcpReset) => s.push_str(" -j REJECT --reject-with tcp-reset"),
            Some(Target::RejectPortUnreachable(Family::V4)) => {
                s.push_str(" -j REJECT --reject-with icmp-port-unreachable")
            }
            Some(Target::RejectPortUnreachable(Family::V6)) => {
                s.push_str(" -j REJECT --reject-with icmp6-port-unreachable")
            }
            Some(Target::Log(prefix)) => {
                let _ = write!(s, " -j LOG --log-prefix {}", quoted(prefix));
            }
        }
        s
    }

    /// The origin tag (`pw:rule:3`, `pw:policy:in`, ...) of the rule, if any.
    pub fn tag(&self) -> Option<&str> {
        self.matches.iter().find_map(|m| match m {
            Match::Comment(c) => Some(c.as_str()),
            _ => None,
        })
    }
}

/// One chain of portwall's, with the built-in chain that jumps to it (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// `INPUT`, `OUTPUT` or `FORWARD`: the built-in chain whose first rule jumps here.
    pub hooked_from: Option<&'static str>,
    pub rules: Vec<IptRule>,
}

impl Chain {
    pub fn rendered(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.render(&self.name)).collect()
    }
}

/// One `hash:net` ipset: the addresses of one side of one rule, in one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSet {
    pub name: String,
    pub family: Family,
    pub members: Vec<IpNet>,
    /// Seconds left for each member, when the set holds temporary ones (a
    /// list's entries given `--for`): the kernel removes each at its end.
    pub timeouts: Option<Vec<Option<u64>>>,
    /// Whether `members` are known: `false` for a list that was not loaded
    /// for this compile (see `model::list::Lists`).
    pub known: bool,
}

/// Everything portwall puts into one family's filter table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyTable {
    pub family: Family,
    pub chains: Vec<Chain>,
    pub sets: Vec<IpSet>,
}

impl FamilyTable {
    /// The number of iptables rules.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    /// The `iptables-restore --noflush` transaction that replaces portwall's
    /// chains with these and adds the jumps from the built-in chains that
    /// `missing_jumps` names (those not there already). Nothing else is touched.
    pub fn restore_text(&self, missing_jumps: &[&str]) -> String {
        self.restore_text_counted(missing_jumps, |_| None)
    }

    /// [`FamilyTable::restore_text`], where a rule whose origin tag
    /// `counted` gives a count starts with it (`[packets:bytes]`, for
    /// `iptables-restore --counters`).
    pub fn restore_text_counted(
        &self,
        missing_jumps: &[&str],
        mut counted: impl FnMut(&str) -> Option<crate::Count>,
    ) -> String {
        let mut s = String::from("*filter\n");
        // Declaring an existing user chain in a --noflush restore flushes it; the
        // explicit -F says so for every iptables version.
        for c in &self.chains {
            let _ = writeln!(s, ":{} - [0:0]", c.name);
        }
        for c in &self.chains {
            let _ = writeln!(s, "-F {}", c.name);
        }
        for c in &self.chains {
            for rule in &c.rules {
                if let Some(n) = rule.tag().and_then(&mut counted) {
                    let _ = write!(s, "[{}:{}] ", n.packets, n.bytes);
                }
                s.push_str(&rule.render(&c.name));
                s.push('\n');
            }
        }
        for c in &self.chains {
            if let Some(builtin) = c.hooked_from {
                if missing_jumps.contains(&builtin) {
                    let _ = writeln!(s, "-I {builtin} 1 -j {}", c.name);
                }
            }
        }
        s.push_str("COMMIT\n");
        s
    }

    /// The `ipset restore` input that creates this table's sets.
    pub fn ipset_text(&self) -> String {
        let mut s = String::new();
        for set in &self.sets {
            let _ = writeln!(
                s,
                "create {} hash:net family {} maxelem {}{}",
                set.name,
                set.family.ipset_family(),
                (set.members.len() * 2).max(65536),
                if set.timeouts.is_some() {
                    " timeout 0"
                } else {
                    ""
                }
            );
            for (i, m) in set.members.iter().enumerate() {
                match set.timeouts.as_ref().and_then(|t| t[i]) {
                    Some(left) => {
                        let _ = writeln!(s, "add {} {} timeout {left}", set.name, m.trunc());
                    }
                    None => {
                        let _ = writeln!(s, "add {} {}", set.name, m.trunc());
                    }
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_iptables_save_order() {
        let r = IptRule {
            source: Some("10.1.2.3/8".parse().unwrap()),
            destination: Some("10.0.0.1/32".parse().unwrap()),
            out_interface: Some("eth0".into()),
            protocol: Some(Proto::Tcp),
            matches: vec![
                Match::Ports {
                    proto: Proto::Tcp,
                    sport: Some(PortRange::new(1000, 2000).unwrap()),
                    dport: Some(PortRange::single(22)),
                },
                Match::Comment("pw:rule:1".into()),
            ],
            target: Some(Target::Return),
            ..Default::default()
        };
        assert_eq!(
            r.render("portwall-output"),
            "-A portwall-output -s 10.0.0.0/8 -d 10.0.0.1/32 -o eth0 -p tcp -m tcp --sport 1000:2000 --dport 22 -m comment --comment \"pw:rule:1\" -j RETURN"
        );
    }
}
