//! `portwall cloud server list`, and servers named by id or name.

use crate::exit;
use crate::output::{print_json, print_table, table};
use crate::panel_client::{PanelClient, PanelServer};
use crate::Global;
use anyhow::Result;
use serde_json::json;

/// `cloud server list`.
pub fn list(global: &Global, client: &PanelClient) -> Result<u8> {
    let items = client.list("/v1/servers")?;
    if global.json {
        print_json(&json!({ "items": items, "next_cursor": null }))?;
        return Ok(exit::OK);
    }
    let servers: Vec<PanelServer> = items
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    if servers.is_empty() {
        println!("No servers in this account.");
        return Ok(exit::OK);
    }
    let mut t = table(["ID", "Name", "Type", "Addresses", "Zone", "Labels"]);
    for s in &servers {
        t.add_row(vec![
            s.id.to_string(),
            s.name.clone(),
            s.kind.clone(),
            s.addresses()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            s.zone.clone(),
            s.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    crate::output::right_align(&mut t, &[0]);
    print_table(&t);
    Ok(exit::OK)
}

/// The servers named by `keys` (ids or names), in order.
pub fn resolve(servers: &[PanelServer], keys: &[String]) -> Result<Vec<PanelServer>> {
    keys.iter()
        .map(|key| {
            let by_id = key
                .parse::<i64>()
                .ok()
                .and_then(|id| servers.iter().find(|s| s.id == id));
            let by_name = || {
                servers.iter().find(|s| s.name == *key).or_else(|| {
                    let mut ci = servers.iter().filter(|s| s.name.eq_ignore_ascii_case(key));
                    match (ci.next(), ci.next()) {
                        (Some(s), None) => Some(s),
                        _ => None,
                    }
                })
            };
            by_id.or_else(by_name).cloned().ok_or_else(|| {
                exit::with_code(
                    exit::FAILURE,
                    format!(
                        "no server '{key}' in this account (neither an id nor a name); see `portwall cloud server list`"
                    ),
                )
            })
        })
        .collect()
}

/// `vps1 (id 3)`.
pub fn label(s: &PanelServer) -> String {
    format!("{} (id {})", s.name, s.id)
}
