//! `portwall cloud firewall ...`: one function per subcommand, each a read
//! (to find the firewall by id or name, and its ETag) and at most one change
//! per object sent with `If-Match`.

use super::rule::{self, RuleWords};
use super::server;
use super::{AddRuleArgs, AssignArgs, FirewallCommand, Target};
use crate::exit;
use crate::output::{print_json, print_table, right_align, table};
use crate::panel_client::{Method, PanelClient, PanelError, PanelServer, Reply};
use crate::Global;
use anyhow::Result;
use host::config_dir;
use serde::Deserialize;
use serde_json::{json, Value};

/// A firewall as the panel shows it (what the human output needs).
#[derive(Debug, Clone, Deserialize)]
struct FirewallView {
    id: i64,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    revision: u64,
    #[serde(default)]
    rules: Vec<RuleView>,
    #[serde(default)]
    servers: Vec<i64>,
    #[serde(default)]
    selectors: Vec<SelectorView>,
}

#[derive(Debug, Clone, Deserialize)]
struct RuleView {
    id: i64,
    protocol: String,
    #[serde(default)]
    port: Option<String>,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    enabled: bool,
}

impl RuleView {
    /// `tcp 443 from 203.0.113.0/24 (https)`.
    fn text(&self) -> String {
        let mut s = self.protocol.clone();
        if let Some(p) = &self.port {
            s.push(' ');
            s.push_str(p);
        }
        s.push_str(" from ");
        s.push_str(&sources(&self.sources));
        if !self.description.is_empty() {
            s.push_str(&format!(" ({})", self.description));
        }
        if !self.enabled {
            s.push_str(" [disabled]");
        }
        s
    }
}

fn sources(s: &[String]) -> String {
    if s.is_empty() {
        "anywhere".into()
    } else {
        s.join(", ")
    }
}

#[derive(Debug, Clone, Deserialize)]
struct SelectorView {
    id: i64,
    selector: String,
}

/// A firewall just read: the panel's object, the view of it, and its ETag.
struct Fw {
    value: Value,
    view: FirewallView,
    etag: String,
}

impl Fw {
    fn from_reply(reply: Reply) -> Result<Fw> {
        let view: FirewallView = serde_json::from_value(reply.body.clone()).map_err(|e| {
            anyhow::anyhow!("the panel's firewall is not what portwall expects: {e}")
        })?;
        let etag = reply
            .etag
            .unwrap_or_else(|| format!("\"r{}\"", view.revision));
        Ok(Fw {
            value: reply.body,
            view,
            etag,
        })
    }

    fn label(&self) -> String {
        format!("firewall '{}' (id {})", self.view.name, self.view.id)
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/firewalls/{}{rest}", self.view.id)
    }

    /// How to name it on a command line: its name when that is safe to type
    /// unquoted and not a number, else its id.
    fn handle(&self) -> String {
        handle(&self.view)
    }

    fn active(&self) -> bool {
        self.view.status == "active"
    }
}

fn handle(v: &FirewallView) -> String {
    let plain = !v.name.is_empty()
        && v.name.parse::<i64>().is_err()
        && v.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(c));
    if plain {
        v.name.clone()
    } else {
        v.id.to_string()
    }
}

fn get_by_id(client: &PanelClient, id: i64) -> Result<Result<Fw, PanelError>> {
    match client.request(Method::GET, &format!("/v1/firewalls/{id}"), None, None) {
        Ok(r) => Ok(Ok(Fw::from_reply(r)?)),
        Err(e) if e.status() == Some(404) => Ok(Err(e)),
        Err(e) => Err(e.into()),
    }
}

/// The firewall named by `key`: an id of this account's, else a name.
fn fetch(client: &PanelClient, key: &str) -> Result<Fw> {
    let mut not_found = None;
    if let Ok(id) = key.parse::<i64>() {
        match get_by_id(client, id)? {
            Ok(fw) => return Ok(fw),
            Err(e) => not_found = Some(e.reason()),
        }
    }
    let all = client.list("/v1/firewalls")?;
    let name_of = |v: &Value| v["name"].as_str().unwrap_or_default().to_string();
    let found = all.iter().find(|v| name_of(v) == key).or_else(|| {
        let mut ci = all.iter().filter(|v| name_of(v).eq_ignore_ascii_case(key));
        match (ci.next(), ci.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    });
    if let Some(id) = found.and_then(|v| v["id"].as_i64()) {
        if let Ok(fw) = get_by_id(client, id)? {
            return Ok(fw);
        }
    }
    Err(exit::with_code(
        exit::FAILURE,
        format!(
            "no firewall '{key}' in this account (neither an id nor a name){}; see `portwall cloud firewall list`",
            not_found.map_or(String::new(), |r| format!("; the panel says: {r}"))
        ),
    ))
}

/// `--if-match` of a firewall command ([`super::if_match_value`]).
fn if_match_value(s: &str) -> Result<String> {
    super::if_match_value(
        s,
        "firewall's",
        "portwall cloud firewall show FIREWALL --json",
    )
}

/// A change to `fw`, sent with `If-Match`: the given ETag, else the one read.
/// A 412 is reported as a concurrent change; nothing was changed.
fn change(
    client: &PanelClient,
    fw: &Fw,
    etag: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Reply> {
    match client.request(method, path, body, Some(etag)) {
        Ok(r) => Ok(r),
        Err(e) if e.status() == Some(412) => Err(exit::with_code(
            exit::FAILURE,
            format!(
                "{} was changed by someone else since the revision this change is based on (ETag {etag}): nothing was changed (the panel says: {}); look at it again with `portwall cloud firewall show {}` and retry",
                fw.label(),
                e.reason(),
                fw.handle()
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

/// The firewall a change is about, and the ETag to send with it: `--if-match`
/// (checked before anything is sent), else the one just read.
fn target(client: &PanelClient, t: &Target) -> Result<(Fw, String)> {
    let given = t.if_match.as_deref().map(if_match_value).transpose()?;
    let fw = fetch(client, &t.firewall)?;
    let etag = given.unwrap_or_else(|| fw.etag.clone());
    Ok((fw, etag))
}

fn server_names(client: &PanelClient) -> Vec<PanelServer> {
    // Names only make the output friendlier.
    client.servers().unwrap_or_default()
}

fn server_label(servers: &[PanelServer], id: i64) -> String {
    servers
        .iter()
        .find(|s| s.id == id)
        .map_or(format!("id {id}"), server::label)
}

fn inactive_note(fw: &FirewallView) {
    if fw.status != "active" {
        println!(
            "Firewall '{}' is inactive: it filters nothing until `portwall cloud firewall enable {}`.",
            fw.name,
            handle(fw)
        );
    }
}

pub fn run(global: &Global, client: &PanelClient, cmd: &FirewallCommand) -> Result<u8> {
    match cmd {
        FirewallCommand::Create { name, description } => create(global, client, name, description),
        FirewallCommand::List => list(global, client),
        FirewallCommand::Show { firewall } => show(global, client, firewall),
        FirewallCommand::AddRule(a) => add_rule(global, client, a),
        FirewallCommand::DeleteRule { target, rule } => delete_rule(global, client, target, *rule),
        FirewallCommand::Enable(t) => set_active(global, client, t, true),
        FirewallCommand::Disable(t) => set_active(global, client, t, false),
        FirewallCommand::Assign(a) => assign(global, client, a),
        FirewallCommand::Unassign(a) => unassign(global, client, a),
        FirewallCommand::Status { firewall } => status(global, client, firewall),
        FirewallCommand::Delete(t) => delete(global, client, t),
    }
}

fn create(global: &Global, client: &PanelClient, name: &str, description: &str) -> Result<u8> {
    if name.trim().is_empty() {
        return Err(exit::usage("the firewall's name is empty: give a name"));
    }
    let body = json!({ "name": name, "description": description });
    let fw = Fw::from_reply(client.request(Method::POST, "/v1/firewalls", Some(&body), None)?)?;
    if global.json {
        print_json(&fw.value)?;
    } else {
        println!(
            "Created {}, inactive: add rules (`portwall cloud firewall add-rule {} tcp 443`), then `portwall cloud firewall enable {}`.",
            fw.label(),
            fw.handle(),
            fw.handle()
        );
    }
    Ok(exit::OK)
}

fn list(global: &Global, client: &PanelClient) -> Result<u8> {
    let items = client.list("/v1/firewalls")?;
    if global.json {
        print_json(&json!({ "items": items, "next_cursor": null }))?;
        return Ok(exit::OK);
    }
    if items.is_empty() {
        println!(
            "No firewalls in this account; create one with `portwall cloud firewall create NAME`."
        );
        return Ok(exit::OK);
    }
    let mut t = table(["ID", "Name", "Status", "Rules", "Revision", "Description"]);
    for v in &items {
        t.add_row(vec![
            v["id"].to_string(),
            v["name"].as_str().unwrap_or_default().to_string(),
            v["status"].as_str().unwrap_or_default().to_string(),
            v["rule_count"].to_string(),
            v["revision"].to_string(),
            v["description"].as_str().unwrap_or_default().to_string(),
        ]);
    }
    right_align(&mut t, &[0, 3, 4]);
    print_table(&t);
    Ok(exit::OK)
}

fn print_firewall(fw: &FirewallView, servers: &[PanelServer]) {
    println!(
        "Firewall '{}' (id {}): {}, revision {}",
        fw.name, fw.id, fw.status, fw.revision
    );
    if !fw.description.is_empty() {
        println!("Description: {}", fw.description);
    }
    let assigned = if fw.servers.is_empty() {
        "none".to_string()
    } else {
        fw.servers
            .iter()
            .map(|&id| server_label(servers, id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("Servers: {assigned}");
    if !fw.selectors.is_empty() {
        let sel = fw
            .selectors
            .iter()
            .map(|s| format!("{} (selector {})", s.selector, s.id))
            .collect::<Vec<_>>()
            .join(", ");
        println!("Selectors: {sel}");
    }
    println!();
    if fw.rules.is_empty() {
        println!(
            "No rules: once enabled and assigned, it drops every inbound packet to its servers."
        );
        return;
    }
    let mut t = table(["ID", "Proto", "Port", "From", "Description", "Enabled"]);
    for r in &fw.rules {
        t.add_row(vec![
            r.id.to_string(),
            r.protocol.clone(),
            r.port.clone().unwrap_or_else(|| "-".into()),
            sources(&r.sources),
            r.description.clone(),
            if r.enabled { "yes" } else { "no" }.to_string(),
        ]);
    }
    right_align(&mut t, &[0]);
    print_table(&t);
}

fn show(global: &Global, client: &PanelClient, key: &str) -> Result<u8> {
    let fw = fetch(client, key)?;
    if global.json {
        print_json(&fw.value)?;
    } else {
        print_firewall(&fw.view, &server_names(client));
    }
    Ok(exit::OK)
}

fn add_rule(global: &Global, client: &PanelClient, a: &AddRuleArgs) -> Result<u8> {
    let words = RuleWords {
        protocol: a.protocol.as_deref(),
        port: a.port.as_deref(),
        preset: a.preset.as_deref(),
        from: &a.from,
        description: &a.description,
        enabled: !a.disabled,
    };
    // Checked before anything is sent.
    let checked = rule::check(&words, &config_dir::services()).map_err(exit::usage)?;
    let (fw, etag) = target(client, &a.target)?;
    let reply = change(
        client,
        &fw,
        &etag,
        Method::POST,
        &fw.path("/rules"),
        Some(&checked.body),
    )?;
    if global.json {
        print_json(&reply.body)?;
        return Ok(exit::OK);
    }
    let added: Option<RuleView> = serde_json::from_value(reply.body["rule"].clone()).ok();
    let revision = reply.body["firewall"]["revision"].to_string();
    match added {
        Some(r) => println!(
            "Added rule {} to {}, revision {revision}: {}",
            r.id,
            fw.label(),
            r.text()
        ),
        None => println!("Added a rule to {}, revision {revision}.", fw.label()),
    }
    inactive_note(&fw.view);
    Ok(exit::OK)
}

fn delete_rule(global: &Global, client: &PanelClient, t: &Target, rule_id: i64) -> Result<u8> {
    let (fw, etag) = target(client, t)?;
    let Some(rule) = fw.view.rules.iter().find(|r| r.id == rule_id) else {
        let ids: Vec<String> = fw.view.rules.iter().map(|r| r.id.to_string()).collect();
        return Err(exit::with_code(
            exit::FAILURE,
            format!(
                "{} has no rule {rule_id}; its rules: {}",
                fw.label(),
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            ),
        ));
    };
    let reply = change(
        client,
        &fw,
        &etag,
        Method::DELETE,
        &fw.path(&format!("/rules/{rule_id}")),
        None,
    )?;
    if global.json {
        print_json(&reply.body)?;
    } else {
        println!(
            "Deleted rule {rule_id} ({}) from {}, revision {}.",
            rule.text(),
            fw.label(),
            reply.body["revision"]
        );
    }
    Ok(exit::OK)
}

fn set_active(global: &Global, client: &PanelClient, t: &Target, on: bool) -> Result<u8> {
    let (fw, etag) = target(client, t)?;
    let path = fw.path(if on { "/enable" } else { "/disable" });
    let reply = change(client, &fw, &etag, Method::POST, &path, None)?;
    if global.json {
        print_json(&reply.body)?;
        return Ok(exit::OK);
    }
    let after = Fw::from_reply(reply)?;
    if on {
        let servers = server_names(client);
        let on_what = if after.view.servers.is_empty() && after.view.selectors.is_empty() {
            "It is assigned to no server yet (`portwall cloud firewall assign`).".to_string()
        } else {
            format!(
                "Every inbound packet to its servers ({}) is now dropped unless a rule of an active firewall accepts it.",
                after
                    .view
                    .servers
                    .iter()
                    .map(|&id| server_label(&servers, id))
                    .chain(after.view.selectors.iter().map(|s| format!("selector {}", s.selector)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        println!(
            "Enabled {}, revision {}. {on_what}",
            after.label(),
            after.view.revision
        );
    } else {
        println!(
            "Disabled {}, revision {}: its rules no longer apply.",
            after.label(),
            after.view.revision
        );
    }
    Ok(exit::OK)
}

fn assign(global: &Global, client: &PanelClient, a: &AssignArgs) -> Result<u8> {
    let body = match (a.servers.is_empty(), &a.selector) {
        (false, None) => None,
        (true, Some(sel)) => Some(json!({ "selector": sel })),
        (true, None) => {
            return Err(exit::usage(
                "name the servers to assign (ids or names) or --selector KEY=VALUE",
            ))
        }
        (false, Some(_)) => {
            return Err(exit::usage(
                "give servers or --selector, not both: run assign once for each",
            ))
        }
    };
    let (fw, etag) = target(client, &a.target)?;
    let servers = server_names(client);
    let body = match body {
        Some(b) => b,
        None => {
            let chosen = server::resolve(&servers, &a.servers)?;
            let ids: Vec<i64> = chosen.iter().map(|s| s.id).collect();
            if ids.len() == 1 {
                json!({ "server_id": ids[0] })
            } else {
                json!({ "server_ids": ids })
            }
        }
    };
    let reply = change(
        client,
        &fw,
        &etag,
        Method::POST,
        &fw.path("/assignments"),
        Some(&body),
    )?;
    if global.json {
        print_json(&reply.body)?;
        return Ok(exit::OK);
    }
    let assigned: Vec<i64> =
        serde_json::from_value(reply.body["assigned"].clone()).unwrap_or_default();
    let to = match &a.selector {
        Some(sel) => format!(
            "selector {sel} (now matching: {})",
            if assigned.is_empty() {
                "no server".to_string()
            } else {
                assigned
                    .iter()
                    .map(|&id| server_label(&servers, id))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        None => assigned
            .iter()
            .map(|&id| server_label(&servers, id))
            .collect::<Vec<_>>()
            .join(", "),
    };
    println!(
        "Assigned {} to {to}, revision {}.",
        fw.label(),
        reply.body["firewall"]["revision"]
    );
    if let Some(skipped) = reply.body["skipped"].as_array() {
        for s in skipped {
            println!(
                "Skipped {}: {}",
                server_label(&servers, s["server_id"].as_i64().unwrap_or_default()),
                s["reason"].as_str().unwrap_or_default()
            );
        }
    }
    inactive_note(&fw.view);
    Ok(exit::OK)
}

fn unassign(global: &Global, client: &PanelClient, a: &AssignArgs) -> Result<u8> {
    if a.servers.is_empty() && a.selector.is_none() {
        return Err(exit::usage(
            "name the servers to unassign (ids or names) or --selector KEY=VALUE",
        ));
    }
    let (fw, mut etag) = target(client, &a.target)?;
    let servers = server_names(client);
    let mut paths = Vec::new();
    let mut what = Vec::new();
    if !a.servers.is_empty() {
        for s in server::resolve(&servers, &a.servers)? {
            if !fw.view.servers.contains(&s.id) {
                return Err(exit::with_code(
                    exit::FAILURE,
                    format!(
                        "{} is not assigned to {} by id{}",
                        fw.label(),
                        server::label(&s),
                        if fw.view.selectors.is_empty() {
                            String::new()
                        } else {
                            " (a selector may match it: see `show`)".to_string()
                        }
                    ),
                ));
            }
            paths.push(fw.path(&format!("/assignments/{}", s.id)));
            what.push(server::label(&s));
        }
    }
    if let Some(sel) = &a.selector {
        let norm = |s: &str| s.replace(' ', "");
        let Some(found) = fw
            .view
            .selectors
            .iter()
            .find(|s| norm(&s.selector) == norm(sel))
        else {
            let have: Vec<&str> = fw
                .view
                .selectors
                .iter()
                .map(|s| s.selector.as_str())
                .collect();
            return Err(exit::with_code(
                exit::FAILURE,
                format!(
                    "{} has no selector '{sel}'; its selectors: {}",
                    fw.label(),
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                ),
            ));
        };
        paths.push(fw.path(&format!("/selectors/{}", found.id)));
        what.push(format!("selector {}", found.selector));
    }
    let mut last = None;
    for path in paths {
        let reply = change(client, &fw, &etag, Method::DELETE, &path, None)?;
        if let Some(tag) = &reply.etag {
            etag = tag.clone();
        }
        last = Some(reply);
    }
    let Some(reply) = last else {
        return Ok(exit::OK);
    };
    if global.json {
        print_json(&reply.body)?;
    } else {
        println!(
            "Unassigned {} from {}, revision {}.",
            fw.label(),
            what.join(", "),
            reply.body["revision"]
        );
    }
    Ok(exit::OK)
}

/// One server's state, as `GET /v1/firewalls/{id}/status` gives it.
#[derive(Debug, Deserialize)]
struct ServerStatusView {
    server_id: i64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    policy_revision: Option<u64>,
    #[serde(default)]
    realized_revision: Option<u64>,
    #[serde(default)]
    edge: Option<String>,
    #[serde(default)]
    reported_at: Option<String>,
}

fn status(global: &Global, client: &PanelClient, key: &str) -> Result<u8> {
    let fw = fetch(client, key)?;
    let body: Value = client.get(&fw.path("/status"))?;
    if global.json {
        print_json(&body)?;
        return Ok(exit::OK);
    }
    println!(
        "Firewall '{}' (id {}): {}, revision {}",
        fw.view.name,
        fw.view.id,
        body["status"].as_str().unwrap_or(&fw.view.status),
        body["revision"]
    );
    let rows: Vec<ServerStatusView> =
        serde_json::from_value(body["servers"].clone()).unwrap_or_default();
    if rows.is_empty() {
        println!("It applies to no server.");
        return Ok(exit::OK);
    }
    let mut t = table([
        "Server",
        "ID",
        "Zone",
        "Status",
        "Policy rev",
        "Applied rev",
        "Edge",
        "Reported",
    ]);
    let opt = |v: &Option<u64>| v.map_or("-".to_string(), |n| n.to_string());
    for r in &rows {
        t.add_row(vec![
            r.name.clone(),
            r.server_id.to_string(),
            r.zone.clone(),
            r.status.clone(),
            opt(&r.policy_revision),
            opt(&r.realized_revision),
            r.edge.clone().unwrap_or_else(|| "-".into()),
            r.reported_at.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    right_align(&mut t, &[1, 4, 5]);
    print_table(&t);
    if !fw.active() {
        println!("\nThe firewall is inactive: its rules are not part of these servers' policies.");
    }
    Ok(exit::OK)
}

fn delete(global: &Global, client: &PanelClient, t: &Target) -> Result<u8> {
    let (fw, etag) = target(client, t)?;
    change(client, &fw, &etag, Method::DELETE, &fw.path(""), None)?;
    if global.json {
        print_json(&json!({ "deleted": fw.value }))?;
    } else {
        println!("Deleted {}.", fw.label());
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_etags_and_revisions() {
        for s in ["\"r12\"", "r12", "12", "W/\"r12\"", " r12 "] {
            assert_eq!(if_match_value(s).unwrap(), "\"r12\"", "{s}");
        }
        assert!(if_match_value("abc").is_err());
        assert!(if_match_value("").is_err());
    }
}
