//! `portwall explain --from A --to B:PORT/PROTO`: what happens to such a packet,
//! layer by layer, and the answer in one line first.
//!
//! 1. **The network firewall** (inbound only), when a panel is configured
//!    (`PORTWALL_PANEL_URL`, `PORTWALL_TOKEN`): the server whose address is the
//!    destination is looked up (`GET /v1/servers`), and its effective policy
//!    (`GET /v1/servers/{id}/policy`, the sync wire type) is turned into a
//!    ruleset with [`model::network::server_ruleset`], all through
//!    [`crate::panel_client`].
//! 2. **The OS firewall**: the ruleset portwall last applied (`applied.toml`),
//!    else the saved one (`rules.toml`), from `--config-dir`.
//! 3. **The listener**: which socket and process would receive the packet
//!    (the `inspect` crate), when the destination is an address of this host.
//!
//! Every decision comes from [`model::evaluate`]; this module only gathers the
//! inputs and says which rule decided. It reads, never writes.

use crate::exit;
use crate::output::print_json;
use crate::panel_client::PanelArgs;
use crate::Global;
use anyhow::Result;
use clap::Args;
use host::config_dir;
use model::{
    evaluate, Builtin, ConnState, DecidedBy, Decision, Direction, Packet, PacketProtocol, Protocol,
    Ruleset, Verdict,
};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Source address of the packet.
    #[arg(long, value_name = "ADDRESS")]
    pub from: IpAddr,
    /// Destination: ADDRESS:PORT/PROTO (`203.0.113.10:5432/tcp`,
    /// `[2001:db8::10]:443/tcp`), or ADDRESS/icmp.
    #[arg(long, value_name = "ADDRESS:PORT/PROTO")]
    pub to: String,
    /// Source port of the packet (rules that name source ports need it).
    #[arg(long, value_name = "PORT")]
    pub from_port: Option<u16>,
    /// The interface the packet arrives on (for `in on IFACE` rules).
    #[arg(long, value_name = "IFACE")]
    pub in_interface: Option<String>,
    /// The interface the packet leaves by (outgoing and routed packets).
    #[arg(long, value_name = "IFACE")]
    pub out_interface: Option<String>,
    /// in (to this server, the default), out (from it) or routed (through it).
    #[arg(long, default_value = "in", value_name = "DIRECTION")]
    pub direction: String,
    /// The provider panel and token, for the network firewall layer.
    #[command(flatten)]
    pub panel: PanelArgs,
}

/// What one layer does to the packet.
#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    /// `network_firewall`, `os_firewall` or `listener`.
    pub layer: &'static str,
    /// `passes`, `dropped`, `rejected`, `not_configured`, `not_applicable`,
    /// `unknown`, `listening` or `nothing_listens`.
    pub outcome: &'static str,
    /// The verdict of `model::evaluate`, for the firewall layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The deciding rule in rule syntax, when a rule decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// One sentence for people.
    pub detail: String,
    /// Extra facts (which file, which server, which processes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<String>,
    /// Who decided, in a few words (`rule 3 (deny 5432/tcp)`), for the answer.
    #[serde(skip)]
    by: String,
    /// Whether the verdict is enforced (a disabled OS firewall's is not).
    #[serde(skip)]
    enforcing: bool,
}

#[derive(Debug, Serialize)]
struct Explanation {
    /// The answer in one line.
    answer: String,
    /// accepted, dropped, rejected, refused, or unknown.
    result: &'static str,
    packet: Packet,
    layers: Vec<Layer>,
}

/// Parses `ADDR:PORT/PROTO`, `[V6]:PORT/PROTO`, `ADDR/PROTO` or `ADDR`.
fn parse_to(s: &str) -> Result<(IpAddr, Option<u16>, PacketProtocol), String> {
    let help = "expected ADDRESS:PORT/PROTO (203.0.113.10:5432/tcp, [2001:db8::10]:443/udp) or ADDRESS/icmp";
    let (addr_port, proto) = match s.rsplit_once('/') {
        Some((a, p))
            if p.chars().all(|c| c.is_ascii_alphanumeric())
                && !p.chars().all(|c| c.is_ascii_digit()) =>
        {
            (a, Some(p.to_ascii_lowercase()))
        }
        _ => (s, None),
    };
    let (addr, port) = if let Ok(sa) = addr_port.parse::<SocketAddr>() {
        (sa.ip(), Some(sa.port()))
    } else if let Ok(ip) = addr_port.trim_matches(['[', ']']).parse::<IpAddr>() {
        (ip, None)
    } else {
        return Err(format!("'{s}' is not a destination: {help}"));
    };
    let named = proto
        .as_deref()
        .map(|p| p.parse::<Protocol>().map_err(|e| format!("{e} ({help})")))
        .transpose()?;
    let protocol = match (named, port) {
        (Some(Protocol::Tcp) | None, Some(_)) => PacketProtocol::Tcp,
        (Some(Protocol::Udp), Some(_)) => PacketProtocol::Udp,
        (Some(Protocol::Icmp), None) if addr.is_ipv4() => PacketProtocol::Icmp,
        (Some(Protocol::Icmp | Protocol::Icmpv6), None) => PacketProtocol::Icmpv6,
        // esp, ah, gre, igmp, ipv6: a packet of that IP protocol.
        (Some(p), None) if !p.has_ports() => {
            PacketProtocol::Other(p.number().expect("a named protocol has a number"))
        }
        (Some(p), Some(_)) => return Err(format!("'{p}' with a port: tcp or udp ({help})")),
        (Some(p), None) => {
            return Err(format!(
                "'{p}' without a port: icmp, or give a port ({help})"
            ))
        }
        (None, None) => return Err(format!("'{s}' names no port: {help}")),
    };
    if port == Some(0) {
        return Err(format!("port 0 in '{s}': ports are 1-65535"));
    }
    Ok((addr, port, protocol))
}

fn describe(by: &DecidedBy, rules: &Ruleset) -> (String, Option<String>) {
    match by {
        DecidedBy::Rule { number } => {
            let r = &rules.rules[number - 1];
            (format!("rule {number} ({r})"), Some(r.to_string()))
        }
        DecidedBy::Policy { direction } => (
            format!(
                "default policy ({} {})",
                rules.defaults.get(*direction).as_str(),
                direction.policy_name()
            ),
            None,
        ),
        DecidedBy::Builtin { builtin } => (
            match builtin {
                Builtin::Established => "built-in rule for established/related traffic".to_string(),
                Builtin::Invalid => "built-in rule for invalid packets".to_string(),
                Builtin::Loopback => "built-in rule for loopback traffic".to_string(),
                Builtin::NeighbourDiscovery => {
                    "built-in rule for IPv6 neighbour discovery".to_string()
                }
                other => format!(
                    "built-in '{}' (as UFW's before.rules; 'portwall builtin {} off' turns it off)",
                    other.as_str(),
                    other.as_str()
                ),
            },
            None,
        ),
    }
}

fn outcome_of(d: Decision) -> &'static str {
    match d {
        Decision::Accept => "passes",
        Decision::Drop => "dropped",
        Decision::Reject => "rejected",
    }
}

/// The OS firewall layer: the applied (else saved) ruleset, evaluated.
fn os_layer(global: &Global, packet: &Packet) -> Result<Layer> {
    let services = config_dir::services();
    let applied = global.config_dir.join("applied.toml");
    let saved = global.config_dir.join("rules.toml");
    let (file, mut ruleset, enabled) = match config_dir::read_config(&applied, &services)? {
        Some(c) => (applied, c.ruleset, true),
        None => match config_dir::read_config(&saved, &services)? {
            Some(c) => (saved, c.ruleset, c.enabled),
            None => {
                return Ok(Layer {
                    layer: "os_firewall",
                    outcome: "not_configured",
                    verdict: None,
                    rule: None,
                    detail: format!(
                        "OS firewall: no portwall rules in {} (neither applied.toml nor rules.toml): portwall does not filter",
                        global.config_dir.display()
                    ),
                    facts: vec![],
                    by: String::new(),
                    enforcing: false,
                })
            }
        },
    };
    ruleset.lists = host::lists::read_lists(&global.config_dir, &ruleset)?;
    let v = evaluate(&ruleset, packet);
    let (who, rule) = describe(&v.by, &ruleset);
    let mut facts = vec![format!("ruleset: {}", file.display())];
    if !enabled {
        facts.push("portwall is disabled: these saved rules are not applied, so the OS firewall does not filter; shown is what they would do".into());
        return Ok(Layer {
            layer: "os_firewall",
            outcome: "passes",
            verdict: Some(v),
            rule,
            detail: format!(
                "OS firewall: disabled (the saved rules would {} it: {who})",
                verb(v.decision)
            ),
            facts,
            by: who,
            enforcing: false,
        });
    }
    if v.rate_limited {
        let rate = match v.by {
            DecidedBy::Rule { number } => ruleset.rules[number - 1].limit_rate(),
            _ => model::Rate::UFW,
        };
        facts.push(format!(
            "a limit rule: accepted unless the source opened {} new connections in the last {} s (then refused)",
            rate.connections, rate.seconds
        ));
    }
    Ok(Layer {
        layer: "os_firewall",
        outcome: outcome_of(v.decision),
        verdict: Some(v),
        rule,
        detail: format!("OS firewall: {} by {who}", past(v.decision)),
        facts,
        by: who,
        enforcing: true,
    })
}

fn verb(d: Decision) -> &'static str {
    match d {
        Decision::Accept => "accept",
        Decision::Drop => "drop",
        Decision::Reject => "reject",
    }
}

fn past(d: Decision) -> &'static str {
    match d {
        Decision::Accept => "accepted",
        Decision::Drop => "dropped",
        Decision::Reject => "rejected",
    }
}

/// The network firewall layer.
fn network_layer(args: &ExplainArgs, packet: &Packet) -> Layer {
    let layer = |outcome, detail: String, facts| Layer {
        layer: "network_firewall",
        outcome,
        verdict: None,
        rule: None,
        detail,
        facts,
        by: String::new(),
        enforcing: false,
    };
    if packet.direction != Direction::In {
        return layer(
            "not_applicable",
            "network firewall: does not restrict outbound or routed traffic".into(),
            vec![],
        );
    }
    if !args.panel.is_configured() {
        return layer(
            "not_configured",
            "network firewall: not configured (set PORTWALL_PANEL_URL and PORTWALL_TOKEN to check the provider's firewall)".into(),
            vec![],
        );
    }
    let dst = packet.destination;
    let fetched = args.panel.client().and_then(|c| {
        c.network_of(|s| s.addresses().any(|a| a == dst))
            .map_err(anyhow::Error::from)
    });
    let net = match fetched {
        Err(e) => {
            return layer(
                "unknown",
                format!("network firewall: unknown ({e:#})"),
                vec![],
            )
        }
        Ok(None) => {
            return layer(
                "not_applicable",
                format!(
                    "network firewall: the panel has no server with address {} (of this account): not filtered there",
                    packet.destination
                ),
                vec![],
            )
        }
        Ok(Some(x)) => x,
    };
    let (server, policy) = (&net.server, &net.policy);
    let mut facts = vec![format!(
        "server {} (id {}, {})",
        server.name, server.id, server.kind
    )];
    if server.is_dedicated() {
        return layer(
            "not_applicable",
            "network firewall: not available for dedicated servers".into(),
            facts,
        );
    }
    if !policy.enforced {
        return layer(
            "passes",
            "network firewall: no active firewall is assigned to this server: everything passes"
                .into(),
            facts,
        );
    }
    // The same conversion the edge uses, so rule numbers map back to edge rules.
    let (ruleset, owner) = net.ruleset();
    // The edge sees the packet on its own interfaces, not the server's.
    let edge_packet = Packet {
        in_interface: None,
        out_interface: None,
        ..packet.clone()
    };
    let v = evaluate(&ruleset, &edge_packet);
    facts.push(format!(
        "{} rule(s) from {} active firewall(s)",
        policy.rules.len(),
        net.firewall_count()
    ));
    let (outcome, detail, rule, by) = match v.by {
        DecidedBy::Rule { number } => {
            let edge = &policy.rules[owner[number - 1]];
            let fw = net.firewall_label(edge.firewall_id);
            let text = ruleset.rules[number - 1].to_string();
            (
                outcome_of(v.decision),
                format!(
                    "network firewall: {} by {fw}, rule {} ({text})",
                    past(v.decision),
                    edge.rule_id
                ),
                Some(text.clone()),
                format!("{fw}, rule {} ({text})", edge.rule_id),
            )
        }
        DecidedBy::Policy { .. } => (
            outcome_of(v.decision),
            "network firewall: dropped: no rule of the server's active firewalls accepts it"
                .to_string(),
            None,
            "(no rule of the server's active firewalls accepts it)".to_string(),
        ),
        DecidedBy::Builtin { .. } => (
            outcome_of(v.decision),
            format!(
                "network firewall: {} (replies and related traffic pass)",
                past(v.decision)
            ),
            None,
            "(built-in)".to_string(),
        ),
    };
    Layer {
        layer: "network_firewall",
        outcome,
        verdict: Some(v),
        rule,
        detail,
        facts,
        by,
        enforcing: true,
    }
}

/// Whether `addr` is an address of this host (binding to it works).
pub(crate) fn is_local(addr: IpAddr) -> bool {
    std::net::UdpSocket::bind((addr, 0)).is_ok()
}

/// The listener layer: who would receive the packet on this host.
fn listener_layer(packet: &Packet) -> Layer {
    let layer = |outcome, detail: String, facts| Layer {
        layer: "listener",
        outcome,
        verdict: None,
        rule: None,
        detail,
        facts,
        by: String::new(),
        enforcing: false,
    };
    let (tcp, label) = match packet.protocol {
        PacketProtocol::Tcp => (true, "tcp"),
        PacketProtocol::Udp => (false, "udp"),
        _ => {
            return layer(
                "not_applicable",
                "listener: ICMP is answered by the kernel, not by a socket".into(),
                vec![],
            )
        }
    };
    let Some(port) = packet.destination_port else {
        return layer("not_applicable", "listener: no port".into(), vec![]);
    };
    if packet.direction != Direction::In {
        return layer(
            "not_applicable",
            "listener: the packet is not addressed to this host".into(),
            vec![],
        );
    }
    if !is_local(packet.destination) {
        return layer(
            "unknown",
            format!(
                "listener: {} is not an address of this host: run 'portwall explain' on that server to see its sockets",
                packet.destination
            ),
            vec![],
        );
    }
    let query = inspect::SocketQuery {
        tcp,
        udp: !tcp,
        listening_only: true,
        port: Some(port),
        process: None,
        owners: inspect::OwnerSource::Auto,
    };
    let sockets = match inspect::list_sockets(&query) {
        Ok(s) => s,
        Err(e) => {
            return layer(
                "unknown",
                format!("listener: cannot list sockets ({e})"),
                vec![],
            )
        }
    };
    let dst = packet.destination;
    let matching: Vec<&inspect::Socket> = sockets
        .iter()
        .filter(|s| {
            let ip = s.local.ip();
            ip == dst || (ip.is_unspecified() && (ip.is_ipv4() == dst.is_ipv4() || ip.is_ipv6()))
        })
        .collect();
    if matching.is_empty() {
        return layer(
            "nothing_listens",
            format!(
                "listener: nothing listens on {}: the kernel answers {}",
                SocketAddr::new(dst, port),
                if tcp {
                    "with a TCP reset"
                } else {
                    "with ICMP port unreachable"
                }
            ),
            vec![],
        );
    }
    let facts = matching
        .iter()
        .map(|s| {
            let owners = if s.owners.is_empty() {
                "owner unknown".to_string()
            } else {
                s.owners
                    .iter()
                    .map(|o| format!("{} (pid {})", o.name, o.pid))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "{} {} {} user {}",
                s.proto_label(),
                inspect::netstat_addr(&s.local),
                owners,
                s.user.clone().unwrap_or_else(|| s.uid.to_string())
            )
        })
        .collect::<Vec<_>>();
    let first = matching[0];
    let who = first
        .owners
        .first()
        .map_or("a socket whose owner is not visible".to_string(), |o| {
            format!("{} (pid {})", o.name, o.pid)
        });
    layer(
        "listening",
        format!(
            "listener: {who} listens on {} ({label})",
            inspect::netstat_addr(&first.local)
        ),
        facts,
    )
}

/// `portwall explain`.
pub fn run(global: &Global, args: &ExplainArgs) -> Result<u8> {
    let (destination, port, protocol) = parse_to(&args.to).map_err(exit::usage)?;
    if args.from.is_ipv4() != destination.is_ipv4() {
        return Err(exit::usage(format!(
            "--from {} and --to {} are of different address families",
            args.from, destination
        )));
    }
    let direction: Direction = args.direction.parse().map_err(exit::usage)?;
    for i in [&args.in_interface, &args.out_interface]
        .into_iter()
        .flatten()
    {
        if !model::rule::is_valid_interface(i) {
            return Err(exit::usage(format!("'{i}' is not an interface name")));
        }
    }
    let packet = Packet {
        direction,
        in_interface: args.in_interface.clone(),
        out_interface: args.out_interface.clone(),
        protocol,
        source: args.from,
        destination,
        source_port: args.from_port,
        destination_port: port,
        icmp_type: match protocol {
            PacketProtocol::Icmp => Some(8),
            PacketProtocol::Icmpv6 => Some(128),
            _ => None,
        },
        hop_limit: None,
        state: ConnState::New,
    };
    let network = network_layer(args, &packet);
    let os = os_layer(global, &packet)?;
    let listener = listener_layer(&packet);
    let target = match port {
        Some(p) => format!(
            "{}/{}",
            p,
            match protocol {
                PacketProtocol::Tcp => "tcp",
                _ => "udp",
            }
        ),
        None => "ping".to_string(),
    };
    let blocked = |l: &Layer, name: &str| -> Option<(String, &'static str)> {
        let d = l.verdict.map(|v| v.decision)?;
        if !l.enforcing || d == Decision::Accept {
            return None;
        }
        let (word, result) = match d {
            Decision::Drop => ("DROPPED", "dropped"),
            _ => ("REJECTED", "rejected"),
        };
        Some((format!("{word} by the {name} {}", l.by), result))
    };
    let (answer, result) = if let Some(x) = blocked(&network, "network firewall") {
        x
    } else if let Some(x) = blocked(&os, "OS firewall") {
        x
    } else if network.outcome == "unknown" {
        (
            format!("UNKNOWN: the OS firewall lets {target} through, but the network firewall could not be checked"),
            "unknown",
        )
    } else {
        match listener.outcome {
            "listening" => (
                format!(
                    "ACCEPTED: {target} from {} reaches {}",
                    args.from,
                    listener.detail.trim_start_matches("listener: ")
                ),
                "accepted",
            ),
            "nothing_listens" => (
                format!(
                    "REFUSED: the firewalls let {target} through, but nothing listens on it ({})",
                    listener.detail.rsplit(": ").next().unwrap_or_default()
                ),
                "refused",
            ),
            _ => (
                format!(
                    "ACCEPTED by the firewalls: {target} from {} passes",
                    args.from
                ),
                "accepted",
            ),
        }
    };
    let explanation = Explanation {
        answer,
        result,
        packet,
        layers: vec![network, os, listener],
    };
    if global.json {
        print_json(&explanation)?;
    } else {
        println!("{}", explanation.answer);
        println!();
        for (i, l) in explanation.layers.iter().enumerate() {
            println!("{}. {}", i + 1, l.detail);
            for f in &l.facts {
                println!("     {f}");
            }
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse() {
        assert_eq!(
            parse_to("203.0.113.10:5432/tcp").unwrap(),
            (
                "203.0.113.10".parse().unwrap(),
                Some(5432),
                PacketProtocol::Tcp
            )
        );
        assert_eq!(
            parse_to("[2001:db8::10]:53/udp").unwrap(),
            (
                "2001:db8::10".parse().unwrap(),
                Some(53),
                PacketProtocol::Udp
            )
        );
        assert_eq!(parse_to("203.0.113.10:22").unwrap().2, PacketProtocol::Tcp);
        assert_eq!(
            parse_to("203.0.113.10/icmp").unwrap().2,
            PacketProtocol::Icmp
        );
        assert_eq!(
            parse_to("203.0.113.10/gre").unwrap().2,
            PacketProtocol::Other(47)
        );
        assert!(parse_to("203.0.113.10:1723/gre").is_err());
        assert!(parse_to("203.0.113.10").is_err());
        assert!(parse_to("203.0.113.10:22/sctp").is_err());
        assert!(parse_to("nowhere:22/tcp").is_err());
    }
}
