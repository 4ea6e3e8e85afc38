//! `portwall audit`: what is actually exposed.
//!
//! For every listening socket: bound to loopback only or to the network; which
//! sources the OS firewall lets reach it (from [`model::exposure::reach`], i.e.
//! from `model::evaluate`); and a class: EXPOSED (anyone), RESTRICTED (some
//! networks), LOCAL-ONLY (loopback) or BLOCKED (nobody). Well-known risky services
//! (databases, caches, container and admin APIs) that are EXPOSED make the exit
//! status 3, so the command can run from cron or CI.
//!
//! When a panel is configured (`--panel-url`/`PORTWALL_PANEL_URL` and
//! `--token`/`PORTWALL_TOKEN`), the provider's network firewall counts too: the
//! panel's server with an address of this host is found, its effective policy
//! becomes a ruleset ([`model::network::server_ruleset`], as for `explain`), and
//! a source reaches a socket only if both layers accept it
//! ([`model::exposure::reach_through`], i.e. `model::evaluate` on each layer).
//! The network firewall filters traffic to the server's addresses; a socket
//! bound to another address (a private network, say) is judged by the OS
//! firewall alone.
use crate::exit;
use crate::output::{print_json, print_table, table};
use crate::panel_client::PanelArgs;
use crate::Global;
use anyhow::Result;
use clap::Args;
use host::config_dir;
use model::exposure::{reach, reach_through, Reach};
use model::{PacketProtocol, Ruleset};
use serde::Serialize;
use std::net::IpAddr;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The provider panel and token, for the network firewall layer.
    #[command(flatten)]
    pub panel: PanelArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
pub enum Class {
    Exposed,
    Restricted,
    LocalOnly,
    Blocked,
}

impl Class {
    fn as_str(self) -> &'static str {
        match self {
            Class::Exposed => "EXPOSED",
            Class::Restricted => "RESTRICTED",
            Class::LocalOnly => "LOCAL-ONLY",
            Class::Blocked => "BLOCKED",
        }
    }
}

#[derive(Debug, Serialize)]
struct Finding {
    proto: &'static str,
    local: String,
    port: u16,
    process: String,
    loopback_only: bool,
    /// Who the network firewall lets reach the socket; null when no network
    /// firewall is on its path (none configured, or not the server's address).
    network_firewall: Option<Reach>,
    os_firewall: Reach,
    /// Who reaches it through both layers: what `class` is made of.
    reachable_from: Reach,
    class: Class,
    /// The risky service this port is known for, when it is EXPOSED.
    risky: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct Audit {
    /// Whether portwall's rules are loaded in the kernel.
    firewall_loaded: bool,
    network_firewall: NetworkFirewall,
    findings: Vec<Finding>,
    risky_exposed: usize,
}

/// The network firewall as it applies to this host.
#[derive(Debug, Serialize)]
struct NetworkFirewall {
    /// `not_configured`, `enforced`, `not_enforced` (no active firewall is
    /// assigned: everything passes), `no_server` (the panel has no server with
    /// an address of this host), `dedicated` (no network firewall for those), or
    /// `unknown` (the panel could not be asked; only the OS firewall counts).
    state: &'static str,
    /// One sentence for people.
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<ServerRef>,
    /// The active firewalls the server's policy comes from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    firewalls: Vec<FirewallRef>,
    /// What the edge enforces for the server's addresses (None: nothing).
    #[serde(skip)]
    ruleset: Option<Ruleset>,
    /// Where it applies: the server's addresses (empty: nowhere).
    #[serde(skip)]
    addresses: Vec<IpAddr>,
}

#[derive(Debug, Serialize)]
struct ServerRef {
    id: i64,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    addresses: Vec<IpAddr>,
}

#[derive(Debug, Serialize)]
struct FirewallRef {
    id: i64,
    name: String,
}

impl NetworkFirewall {
    fn off(state: &'static str, detail: String) -> NetworkFirewall {
        NetworkFirewall {
            state,
            detail,
            server: None,
            firewalls: vec![],
            ruleset: None,
            addresses: vec![],
        }
    }

    /// Who this layer lets reach a socket bound to `local`, or None when the
    /// layer is not on its path.
    fn reach(&self, protocol: PacketProtocol, local: IpAddr, port: u16) -> Option<Reach> {
        if self.addresses.is_empty() || !(local.is_unspecified() || self.addresses.contains(&local))
        {
            return None;
        }
        Some(match &self.ruleset {
            Some(r) => reach(r, protocol, local, port, None),
            None => Reach::Anyone,
        })
    }
}

/// Finds this host in the panel (the server one of whose addresses is an
/// address of this host) and its effective network policy.
fn network_firewall(args: &PanelArgs) -> NetworkFirewall {
    if !args.is_configured() {
        return NetworkFirewall::off("not_configured", "not configured".into());
    }
    let fetched = args.client().and_then(|c| {
        c.network_of(|s| s.addresses().any(super::explain::is_local))
            .map_err(anyhow::Error::from)
    });
    let net = match fetched {
        Err(e) => {
            return NetworkFirewall::off(
                "unknown",
                format!("unknown ({e:#}); only the OS firewall is counted"),
            )
        }
        Ok(None) => {
            return NetworkFirewall::off(
                "no_server",
                "the panel has no server (of this account) with an address of this host: not filtered there".into(),
            )
        }
        Ok(Some(n)) => n,
    };
    let addresses: Vec<IpAddr> = net.server.addresses().collect();
    let server = ServerRef {
        id: net.server.id,
        name: net.server.name.clone(),
        kind: net.server.kind.clone(),
        addresses: addresses.clone(),
    };
    let who = format!(
        "server '{}' (id {}, {})",
        server.name, server.id, server.kind
    );
    if net.server.is_dedicated() {
        return NetworkFirewall {
            server: Some(server),
            ..NetworkFirewall::off(
                "dedicated",
                format!("{who}: dedicated servers have no network firewall"),
            )
        };
    }
    if !net.policy.enforced {
        return NetworkFirewall {
            state: "not_enforced",
            detail: format!("{who}: no active firewall is assigned, everything passes"),
            server: Some(server),
            firewalls: vec![],
            ruleset: None,
            addresses,
        };
    }
    let mut ids: Vec<i64> = net.policy.rules.iter().map(|r| r.firewall_id).collect();
    ids.sort();
    ids.dedup();
    let firewalls: Vec<FirewallRef> = ids
        .into_iter()
        .map(|id| FirewallRef {
            id,
            name: net
                .firewall_names
                .iter()
                .find(|(i, _)| *i == id)
                .map_or_else(String::new, |(_, n)| n.clone()),
        })
        .collect();
    let names = firewalls
        .iter()
        .map(|f| net.firewall_label(f.id))
        .collect::<Vec<_>>()
        .join(", ");
    NetworkFirewall {
        state: "enforced",
        detail: format!(
            "{who}, {} rule(s){}",
            net.policy.rules.len(),
            if names.is_empty() {
                " (every inbound packet is dropped)".to_string()
            } else {
                format!(" from {names}")
            }
        ),
        server: Some(server),
        firewalls,
        ruleset: Some(net.ruleset().0),
        addresses,
    }
}

fn who(r: &Reach) -> String {
    match r {
        Reach::Anyone => "anyone".to_string(),
        Reach::Nobody => "nobody".to_string(),
        Reach::Some(n) => n
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}

pub fn run(global: &Global, args: &AuditArgs) -> Result<u8> {
    let services = config_dir::services();
    let loaded = crate::backend::kernel(global)?.is_loaded()?;
    // What the kernel enforces: the ruleset portwall applied. Without it, nothing
    // filters (as far as portwall knows), which is what an accept-all ruleset means.
    let ruleset = if loaded {
        let mut r = config_dir::read_config(&global.config_dir.join("applied.toml"), &services)?
            .map(|c| c.ruleset)
            .unwrap_or_default();
        r.lists = host::lists::read_lists(&global.config_dir, &r)?;
        r
    } else {
        let mut open = Ruleset::default();
        open.defaults.incoming = model::Policy::Allow;
        open
    };
    let network = network_firewall(&args.panel);
    let sockets = inspect::listening_sockets()?;
    let mut findings = Vec::new();
    for s in &sockets {
        let ip = s.local.ip();
        let loopback = ip.is_loopback()
            || matches!(ip, std::net::IpAddr::V6(a) if a.to_ipv4_mapped().is_some_and(|v| v.is_loopback()));
        let proto = match s.protocol {
            inspect::Protocol::Tcp => PacketProtocol::Tcp,
            inspect::Protocol::Udp => PacketProtocol::Udp,
        };
        let r = reach(&ruleset, proto, ip, s.local.port(), None);
        let net = if loopback {
            None
        } else {
            network.reach(proto, ip, s.local.port())
        };
        // Both layers in a row, each judged by model::evaluate.
        let both = match (&net, &network.ruleset) {
            (Some(_), Some(net_rules)) => reach_through(
                &[(net_rules, None), (&ruleset, None)],
                proto,
                ip,
                s.local.port(),
            ),
            _ => r.clone(),
        };
        let class = if loopback {
            Class::LocalOnly
        } else {
            match both {
                Reach::Anyone => Class::Exposed,
                Reach::Some(_) => Class::Restricted,
                Reach::Nobody => Class::Blocked,
            }
        };
        let risky = (class == Class::Exposed)
            .then(|| model::risky_service(s.local.port()))
            .flatten();
        findings.push(Finding {
            proto: s.proto_label(),
            local: inspect::netstat_addr(&s.local),
            port: s.local.port(),
            process: s
                .owners
                .first()
                .map(|o| format!("{}/{}", o.pid, o.name))
                .unwrap_or_else(|| "-".into()),
            loopback_only: loopback,
            network_firewall: net,
            os_firewall: r,
            reachable_from: both,
            class,
            risky,
        });
    }
    let risky_exposed = findings.iter().filter(|f| f.risky.is_some()).count();
    let audit = Audit {
        firewall_loaded: loaded,
        network_firewall: network,
        findings,
        risky_exposed,
    };
    if global.json {
        print_json(&audit)?;
    } else {
        if !loaded {
            println!("portwall's rules are not loaded: nothing portwall knows of filters incoming traffic.");
        }
        let with_network = audit.network_firewall.state != "not_configured";
        let mut header = vec!["Class", "Proto", "Local Address", "PID/Program name"];
        if with_network {
            header.push("Network firewall lets in");
        }
        header.extend(["OS firewall lets in", "Note"]);
        let mut t = table(header);
        for f in &audit.findings {
            let note = match (f.risky, f.loopback_only) {
                (Some(name), _) => format!("RISK: {name} open to the internet"),
                (None, true) => "bound to loopback".into(),
                _ => String::new(),
            };
            let mut row = vec![
                f.class.as_str().to_string(),
                f.proto.to_string(),
                f.local.clone(),
                f.process.clone(),
            ];
            if with_network {
                row.push(f.network_firewall.as_ref().map_or("-".into(), who));
            }
            row.extend([who(&f.os_firewall), note]);
            t.add_row(row);
        }
        print_table(&t);
        println!(
            "\n{} socket(s); {} risky service(s) exposed; network firewall: {}.",
            audit.findings.len(),
            audit.risky_exposed,
            audit.network_firewall.detail
        );
    }
    Ok(if audit.risky_exposed > 0 {
        exit::EXPOSED
    } else {
        exit::OK
    })
}
