//! `portwall-edge status`: what the kernel enforces right now.
//!
//! Read from the kernel (the table, its elements and their counters) and from
//! the state directory (the saved policy, to name what each element is for,
//! and the agent's note). Nothing is written.

use crate::compile::{self, Mode, TableSpec};
use crate::engine;
use crate::store::{self, AgentNote};
use crate::EdgeError;
use model::network::sync::RuleCounter;
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

/// One rule of an enforced server, with its hits.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRow {
    pub server_id: i64,
    pub server: String,
    pub firewall_id: i64,
    pub rule_id: i64,
    pub rule: String,
    pub packets: u64,
    pub bytes: u64,
}

/// One server the edge knows.
#[derive(Debug, Clone, Serialize)]
pub struct ServerRow {
    pub server_id: i64,
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub enforced: bool,
    pub revision: u64,
    pub rules: usize,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
}

/// Everything `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeStatus {
    pub family: &'static str,
    pub table: String,
    /// Whether the table exists in the kernel.
    pub loaded: bool,
    pub zone: Option<String>,
    /// The revision of the saved policy (what the agent applied last).
    pub revision: Option<u64>,
    pub saved_at_ms: Option<u64>,
    pub servers: usize,
    pub enforced: usize,
    pub rules: usize,
    /// Elements the saved policy compiles to, and elements in the kernel.
    pub elements_expected: usize,
    pub elements_loaded: usize,
    /// Packets the `established` rule passed.
    pub established_packets: u64,
    /// How the kernel differs from the saved policy (empty: it matches).
    pub drift: Vec<String>,
    pub agent: Option<AgentNote>,
    /// Whether the agent process of the note is alive.
    pub agent_running: bool,
    pub server_rows: Vec<ServerRow>,
    pub rule_rows: Vec<RuleRow>,
}

fn describe(r: &model::network::sync::EdgeRule) -> String {
    let mut s = format!("allow {}", r.protocol.as_str());
    if let Some(p) = r.ports {
        s = format!("allow {p}/{}", r.protocol.as_str());
    }
    if !r.sources.is_empty() {
        let src: Vec<String> = r.sources.iter().map(|n| n.to_string()).collect();
        s.push_str(&format!(" from {}", src.join(",")));
    }
    s
}

/// Collects the status. `table`: the edge table to read; by default the one
/// the saved policy names (or `inet portwall_edge`).
pub fn collect(state_dir: &Path, table: Option<TableSpec>) -> Result<EdgeStatus, EdgeError> {
    let saved = store::load_policy(state_dir)?;
    let table = table.unwrap_or_else(|| match &saved {
        Some(s) => TableSpec {
            mode: s.mode,
            name: s.table.clone(),
        },
        None => TableSpec::new(Mode::Forward),
    });
    let kernel = engine::read_kernel(&table)?;
    let servers = saved
        .as_ref()
        .map(|s| s.servers.as_slice())
        .unwrap_or_default();
    let compiled = compile::compile_all(servers);
    let expected: Vec<&compile::Element> = compiled.values().flatten().collect();
    let counters: Vec<RuleCounter> = match &kernel {
        Some(k) => engine::counters_of(k, expected.iter().copied()),
        None => Vec::new(),
    };
    let by_owner: HashMap<(i64, Option<i64>), &RuleCounter> = counters
        .iter()
        .map(|c| ((c.server_id, c.rule_id), c))
        .collect();
    let mut server_rows = Vec::new();
    let mut rule_rows = Vec::new();
    for s in servers {
        let dropped = by_owner.get(&(s.server_id, None));
        server_rows.push(ServerRow {
            server_id: s.server_id,
            name: s.name.clone(),
            addresses: s.addresses.clone(),
            enforced: s.enforced,
            revision: s.revision,
            rules: s.rules.len(),
            dropped_packets: dropped.map_or(0, |c| c.packets),
            dropped_bytes: dropped.map_or(0, |c| c.bytes),
        });
        if !s.enforced {
            continue;
        }
        for r in &s.rules {
            let c = by_owner.get(&(s.server_id, Some(r.rule_id)));
            rule_rows.push(RuleRow {
                server_id: s.server_id,
                server: s.name.clone(),
                firewall_id: r.firewall_id,
                rule_id: r.rule_id,
                rule: describe(r),
                packets: c.map_or(0, |c| c.packets),
                bytes: c.map_or(0, |c| c.bytes),
            });
        }
    }
    let drift = match &kernel {
        Some(k) if saved.is_some() => k.differences(expected.iter().copied()),
        Some(_) => vec!["the table is loaded but the state directory has no saved policy".into()],
        None if saved.is_some() => vec![format!(
            "table {} {} is not loaded",
            table.mode.family_name(),
            table.name
        )],
        None => Vec::new(),
    };
    let agent = store::load_note(state_dir);
    let agent_running = agent
        .as_ref()
        .is_some_and(|n| Path::new(&format!("/proc/{}", n.pid)).exists());
    Ok(EdgeStatus {
        family: table.mode.family_name(),
        table: table.name.clone(),
        loaded: kernel.is_some(),
        zone: saved.as_ref().map(|s| s.zone.clone()),
        revision: saved.as_ref().map(|s| s.revision),
        saved_at_ms: saved.as_ref().map(|s| s.saved_at_ms),
        servers: servers.len(),
        enforced: servers.iter().filter(|s| s.enforced).count(),
        rules: servers
            .iter()
            .filter(|s| s.enforced)
            .map(|s| s.rules.len())
            .sum(),
        elements_expected: expected.len(),
        elements_loaded: kernel.as_ref().map_or(0, |k| k.elements.len()),
        established_packets: kernel.as_ref().map_or(0, |k| k.established_packets),
        drift,
        agent,
        agent_running,
        server_rows,
        rule_rows,
    })
}
