//! `portwall audit`: what is actually exposed.
//!
//! For every listening socket: bound to loopback only or to the network; which
//! sources the OS firewall lets reach it (from [`model::exposure::reach`], i.e.
//! from `model::evaluate`); and a class: EXPOSED (anyone), RESTRICTED (some
//! networks), LOCAL-ONLY (loopback) or BLOCKED (nobody). Well-known risky services
//! (databases, caches, container and admin APIs) that are EXPOSED make the exit
//! status 3, so the command can run from cron or CI.

use crate::exit;
use crate::output::{print_json, print_table, table};
use crate::state;
use crate::Global;
use anyhow::Result;
use clap::Args;
use model::exposure::{reach, Reach};
use model::{PacketProtocol, Ruleset};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct AuditArgs {}

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
    os_firewall: Reach,
    class: Class,
    /// The risky service this port is known for, when it is EXPOSED.
    risky: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct Audit {
    /// Whether portwall's rules are loaded in the kernel.
    firewall_loaded: bool,
    network_firewall: &'static str,
    findings: Vec<Finding>,
    risky_exposed: usize,
}

pub fn run(global: &Global, _args: &AuditArgs) -> Result<u8> {
    let services = state::services();
    let loaded = crate::backend::Filter::of(global)?.is_loaded()?;
    // What the kernel enforces: the ruleset portwall applied. Without it, nothing
    // filters (as far as portwall knows), which is what an accept-all ruleset means.
    let ruleset = if loaded {
        state::read_config(&global.config_dir.join("applied.toml"), &services)?
            .map(|c| c.ruleset)
            .unwrap_or_default()
    } else {
        let mut open = Ruleset::default();
        open.defaults.incoming = model::Policy::Allow;
        open
    };
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
        let class = if loopback {
            Class::LocalOnly
        } else {
            match r {
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
            os_firewall: r,
            class,
            risky,
        });
    }
    let risky_exposed = findings.iter().filter(|f| f.risky.is_some()).count();
    let audit = Audit {
        firewall_loaded: loaded,
        network_firewall: "not configured",
        findings,
        risky_exposed,
    };
    if global.json {
        print_json(&audit)?;
    } else {
        if !loaded {
            println!("portwall's rules are not loaded: nothing portwall knows of filters incoming traffic.");
        }
        let mut t = table([
            "Class",
            "Proto",
            "Local Address",
            "PID/Program name",
            "OS firewall lets in",
            "Note",
        ]);
        for f in &audit.findings {
            let who = match &f.os_firewall {
                Reach::Anyone => "anyone".to_string(),
                Reach::Nobody => "nobody".to_string(),
                Reach::Some(n) => n
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            };
            let note = match (f.risky, f.loopback_only) {
                (Some(name), _) => format!("RISK: {name} open to the internet"),
                (None, true) => "bound to loopback".into(),
                _ => String::new(),
            };
            t.add_row(vec![
                f.class.as_str().to_string(),
                f.proto.to_string(),
                f.local.clone(),
                f.process.clone(),
                who,
                note,
            ]);
        }
        print_table(&t);
        println!(
            "\n{} socket(s); {} risky service(s) exposed; network firewall: {}.",
            audit.findings.len(),
            audit.risky_exposed,
            audit.network_firewall
        );
    }
    Ok(if audit.risky_exposed > 0 {
        exit::EXPOSED
    } else {
        exit::OK
    })
}
