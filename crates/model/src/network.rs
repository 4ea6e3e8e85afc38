//! The network firewall (the provider's panel layer) in the shared rule language.
//!
//! A network firewall is a ruleset restricted to inbound accept rules with an
//! implicit final drop. A [`NetworkRule`] is what the panel stores and shows; it
//! converts to plain [`Rule`]s so [`crate::evaluate`] defines its meaning too, and
//! the edge and `explain` need no second copy of the matching logic.

use crate::rule::{Action, Addresses, Direction, PortRange, Ports, Protocol, Rule};
use crate::ruleset::{Defaults, Policy, Ruleset};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The protocols a network-firewall rule may name. `icmp` covers ICMP for IPv4
/// and ICMPv6 for IPv6, since customers think of "ping", not of families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum NetworkProtocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

impl NetworkProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkProtocol::Tcp => "tcp",
            NetworkProtocol::Udp => "udp",
            NetworkProtocol::Icmp => "icmp",
            NetworkProtocol::Any => "any",
        }
    }
}

impl std::str::FromStr for NetworkProtocol {
    type Err = String;
    /// `tcp`, `udp`, `icmp` (also `icmpv6` and `ping`: one protocol for both
    /// families), `any` (also `all`); any case.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(NetworkProtocol::Tcp),
            "udp" => Ok(NetworkProtocol::Udp),
            "icmp" | "icmpv6" | "ping" => Ok(NetworkProtocol::Icmp),
            "any" | "all" => Ok(NetworkProtocol::Any),
            _ => Err(format!(
                "'{}' is not a protocol of the network firewall: tcp, udp, icmp (ICMP and ICMPv6), any",
                s.trim()
            )),
        }
    }
}

impl std::fmt::Display for NetworkProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule of a network firewall: accept inbound traffic of `protocol` to
/// `ports` from `sources` (empty = from anywhere).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRule {
    pub protocol: NetworkProtocol,
    /// Destination port or range; must be absent for icmp, and is optional for
    /// any (absent = every port and protocol).
    #[serde(default)]
    pub ports: Option<PortRange>,
    #[serde(default)]
    pub sources: Vec<IpNet>,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A field of a rule that is not valid, named as in the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Longest description the panel accepts.
pub const MAX_DESCRIPTION: usize = 255;

impl NetworkRule {
    pub fn validate(&self) -> Result<(), FieldError> {
        let fail = |field: &str, message: String| {
            Err(FieldError {
                field: field.into(),
                message,
            })
        };
        match (self.protocol, self.ports) {
            (NetworkProtocol::Icmp, Some(_)) => {
                return fail("ports", "icmp has no ports; leave ports empty".into())
            }
            (NetworkProtocol::Tcp | NetworkProtocol::Udp, None) => {
                return fail(
                    "ports",
                    format!("{} needs a port or range (1-65535)", self.protocol.as_str()),
                )
            }
            (_, Some(p)) if p.start == 0 || p.start > p.end => {
                return fail(
                    "ports",
                    format!("{p} is not a port range: start and end in 1-65535, start <= end"),
                )
            }
            _ => {}
        }
        for (i, s) in self.sources.iter().enumerate() {
            if s.trunc() != *s {
                return fail(
                    &format!("sources[{i}]"),
                    format!("'{s}' has host bits set: did you mean {}?", s.trunc()),
                );
            }
        }
        if self.description.len() > MAX_DESCRIPTION
            || self.description.chars().any(char::is_control)
        {
            return fail(
                "description",
                format!("at most {MAX_DESCRIPTION} bytes, no control characters"),
            );
        }
        Ok(())
    }

    /// The rule as OS-firewall rules (one, or two for icmp with both families).
    pub fn to_rules(&self) -> Vec<Rule> {
        let mut base = Rule::new(Action::Allow, Direction::In);
        base.source = Addresses(self.sources.clone());
        if let Some(p) = self.ports {
            base.destination_ports = Ports(vec![p]);
        }
        if !self.description.is_empty() {
            base.comment = Some(self.description.replace(['\'', '"'], ""));
        }
        match self.protocol {
            NetworkProtocol::Tcp => vec![Rule {
                protocol: Protocol::Tcp,
                ..base
            }],
            NetworkProtocol::Udp => vec![Rule {
                protocol: Protocol::Udp,
                ..base
            }],
            NetworkProtocol::Any => vec![base],
            NetworkProtocol::Icmp => {
                let (v4, v6) = base.source.families();
                let mut out = Vec::new();
                let only = |want_v4: bool| {
                    Addresses(
                        self.sources
                            .iter()
                            .filter(|n| matches!(n, IpNet::V4(_)) == want_v4)
                            .copied()
                            .collect(),
                    )
                };
                if v4 || !v6 {
                    out.push(Rule {
                        protocol: Protocol::Icmp,
                        source: only(true),
                        ..base.clone()
                    });
                }
                if v6 || !v4 {
                    out.push(Rule {
                        protocol: Protocol::Icmpv6,
                        source: only(false),
                        ..base
                    });
                }
                out
            }
        }
    }
}

/// The ruleset the network firewalls of one server amount to: the union of the
/// enabled rules of its active firewalls, then drop. Outbound is never restricted.
pub fn server_ruleset<'a>(rules: impl IntoIterator<Item = &'a NetworkRule>) -> Ruleset {
    Ruleset {
        rules: rules
            .into_iter()
            .filter(|r| r.enabled)
            .flat_map(NetworkRule::to_rules)
            .collect(),
        defaults: Defaults {
            incoming: Policy::Deny,
            outgoing: Policy::Allow,
            routed: Policy::Allow,
        },
        logging: Default::default(),
        builtins: crate::builtins::Switches::none(),
        lists: Default::default(),
    }
}

/// A named rule template the panel offers ("SSH", "HTTPS", ...).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Preset {
    pub name: &'static str,
    pub protocol: NetworkProtocol,
    pub port: Option<u16>,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "SSH",
        protocol: NetworkProtocol::Tcp,
        port: Some(22),
    },
    Preset {
        name: "HTTP",
        protocol: NetworkProtocol::Tcp,
        port: Some(80),
    },
    Preset {
        name: "HTTPS",
        protocol: NetworkProtocol::Tcp,
        port: Some(443),
    },
    Preset {
        name: "HTTP/3 (QUIC)",
        protocol: NetworkProtocol::Udp,
        port: Some(443),
    },
    Preset {
        name: "DNS (UDP)",
        protocol: NetworkProtocol::Udp,
        port: Some(53),
    },
    Preset {
        name: "DNS (TCP)",
        protocol: NetworkProtocol::Tcp,
        port: Some(53),
    },
    Preset {
        name: "SMTP",
        protocol: NetworkProtocol::Tcp,
        port: Some(25),
    },
    Preset {
        name: "SMTP submission",
        protocol: NetworkProtocol::Tcp,
        port: Some(587),
    },
    Preset {
        name: "IMAPS",
        protocol: NetworkProtocol::Tcp,
        port: Some(993),
    },
    Preset {
        name: "POP3S",
        protocol: NetworkProtocol::Tcp,
        port: Some(995),
    },
    Preset {
        name: "RDP",
        protocol: NetworkProtocol::Tcp,
        port: Some(3389),
    },
    Preset {
        name: "WireGuard",
        protocol: NetworkProtocol::Udp,
        port: Some(51820),
    },
    Preset {
        name: "Ping (ICMP)",
        protocol: NetworkProtocol::Icmp,
        port: None,
    },
];

pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// The wire types of the sync protocol between the panel and the edges. Both sides
/// use this one module, so they cannot drift apart.
pub mod sync {
    use super::NetworkProtocol;
    use crate::rule::PortRange;
    use ipnet::IpNet;
    use serde::{Deserialize, Serialize};
    use std::net::IpAddr;

    /// Long-poll: `GET SYNC_PATH?zone=Z&since=REV&wait=SECONDS`, edge token in
    /// `Authorization: Bearer`.
    pub const SYNC_PATH: &str = "/v1/edge/sync";
    /// `POST REPORT_PATH` with an [`EdgeReport`] body.
    pub const REPORT_PATH: &str = "/v1/edge/report";
    /// How long an idle long-poll is held before it returns `Unchanged`.
    pub const DEFAULT_WAIT_SECONDS: u64 = 30;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct SyncQuery {
        pub zone: String,
        /// The revision the edge has applied; absent on first contact.
        #[serde(default)]
        pub since: Option<u64>,
        /// Seconds to hold the poll when nothing changed.
        #[serde(default)]
        pub wait: Option<u64>,
    }

    /// The panel's answer to a sync poll.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    pub enum SyncResponse {
        /// Every server of the zone: replaces what the edge has.
        Snapshot {
            revision: u64,
            servers: Vec<ServerPolicy>,
        },
        /// What changed since `from`.
        Delta {
            from: u64,
            revision: u64,
            changed: Vec<ServerPolicy>,
            removed: Vec<i64>,
        },
        /// Nothing changed within the wait.
        Unchanged { revision: u64 },
    }

    /// What the edge enforces for one server.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ServerPolicy {
        pub server_id: i64,
        pub name: String,
        pub addresses: Vec<IpAddr>,
        /// The global revision at which this policy last changed.
        pub revision: u64,
        /// Whether an active firewall is assigned: when false, the edge does not
        /// filter this server at all.
        pub enforced: bool,
        /// The union of the enabled rules of the server's active firewalls.
        pub rules: Vec<EdgeRule>,
    }

    /// One accept rule as the edge compiles it.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct EdgeRule {
        pub firewall_id: i64,
        pub rule_id: i64,
        pub protocol: NetworkProtocol,
        #[serde(default)]
        pub ports: Option<PortRange>,
        /// Empty: from anywhere.
        #[serde(default)]
        pub sources: Vec<IpNet>,
    }

    impl ServerPolicy {
        /// Checks what an edge must not trust blindly; a snapshot with one invalid
        /// policy is rejected whole.
        pub fn validate(&self) -> Result<(), String> {
            if self.enforced && self.addresses.is_empty() {
                return Err(format!(
                    "server {} is enforced but has no address",
                    self.server_id
                ));
            }
            for r in &self.rules {
                let nr = super::NetworkRule {
                    protocol: r.protocol,
                    ports: r.ports,
                    sources: r.sources.clone(),
                    description: String::new(),
                    enabled: true,
                };
                nr.validate()
                    .map_err(|e| format!("server {} rule {}: {e}", self.server_id, r.rule_id))?;
            }
            Ok(())
        }
    }

    /// The edge's report after applying a revision.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct EdgeReport {
        pub edge: String,
        pub zone: String,
        /// The revision the edge has now realized (or tried to).
        pub revision: u64,
        pub servers: Vec<ServerApplyResult>,
        /// Hit counters, when the edge reads them.
        #[serde(default)]
        pub counters: Vec<RuleCounter>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ServerApplyResult {
        pub server_id: i64,
        pub revision: u64,
        /// None: applied. Some: the reason it failed.
        #[serde(default)]
        pub error: Option<String>,
    }

    /// Packets a rule accepted, or (rule_id None) packets dropped for a server.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct RuleCounter {
        pub server_id: i64,
        #[serde(default)]
        pub rule_id: Option<i64>,
        pub packets: u64,
        pub bytes: u64,
    }
}
