//! A firewall's rules: the table and add-rule form on the firewall page, the
//! rule edit page, and the posts that add, edit, enable/disable and delete a
//! rule.
//!
//! Forms are turned into the API's [`RuleInput`] / [`RulePatch`], so a rule
//! means and validates exactly as over the API (presets from
//! [`model::network::PRESETS`], ports `22` or `8000-8100`, sources as
//! addresses or networks), and the store's error names the field to mark.

use super::context::{parse_id, parse_revision, FormData, Posted, Viewer};
use super::errors;
use super::feedback::{Feedback, Problem};
use super::firewalls::{finish, revision_field};
use super::layout::{
    button_form, csrf, field, messages, page as shell, respond, see_other, text_input, wide_field,
    Nav,
};
use crate::api::inputs::{PortSpec, RuleInput, RulePatch};
use crate::state::AppState;
use crate::store::{Firewall, FirewallRule};
use axum::extract::{Path, State};
use axum::response::Response;
use maud::{html, Markup};
use model::network::{NetworkProtocol, PRESETS};

const PROTOCOLS: [NetworkProtocol; 4] = [
    NetworkProtocol::Tcp,
    NetworkProtocol::Udp,
    NetworkProtocol::Icmp,
    NetworkProtocol::Any,
];

/// The fields of the add-rule form.
const ADD_FIELDS: &[&str] = &["preset", "protocol", "port", "sources", "description"];
/// The fields of the edit form.
const EDIT_FIELDS: &[&str] = &["protocol", "port", "sources", "description", "enabled"];

/// A protocol from a form (`tcp`, `udp`, `icmp`, `any`), read as the model
/// reads it; "" is None.
fn parse_protocol(s: &str) -> Result<Option<NetworkProtocol>, Problem> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| Problem::field("protocol", e))
}

/// Sources as typed: separated by commas, spaces or new lines.
fn split_sources(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn port_spec(s: &str) -> Option<PortSpec> {
    let s = s.trim();
    (!s.is_empty()).then(|| PortSpec(s.to_string()))
}

/// The add-rule form as the API's rule input. A chosen preset sets protocol
/// and port, so the protocol select is ignored then; a port typed as well is
/// refused by [`RuleInput::to_rule`] ("either a preset or protocol and port").
pub fn rule_input(form: &FormData) -> Result<RuleInput, Problem> {
    let preset = form.get("preset").trim();
    let (preset, protocol) = if preset.is_empty() {
        (None, parse_protocol(form.get("protocol"))?)
    } else {
        (Some(preset.to_string()), None)
    };
    Ok(RuleInput {
        preset,
        protocol,
        port: port_spec(form.get("port")),
        sources: split_sources(form.get("sources")),
        description: form.get("description").trim().to_string(),
        enabled: true,
    })
}

/// The edit form as the API's rule patch (every field given; an empty port
/// removes the port).
pub fn rule_patch(form: &FormData) -> Result<RulePatch, Problem> {
    let protocol = parse_protocol(form.get("protocol"))?
        .ok_or_else(|| Problem::field("protocol", "required: tcp, udp, icmp or any"))?;
    Ok(RulePatch {
        protocol: Some(protocol),
        port: Some(port_spec(form.get("port"))),
        sources: Some(split_sources(form.get("sources"))),
        description: Some(form.get("description").trim().to_string()),
        enabled: Some(form.has("enabled")),
    })
}

fn port_text(r: &FirewallRule) -> Markup {
    match (&r.port, r.protocol) {
        (Some(p), _) => html! { code { (p) } },
        (None, NetworkProtocol::Icmp) => html! { span.subtle { "—" } },
        (None, _) => html! { span.subtle { "all" } },
    }
}

fn sources_text(sources: &[String]) -> Markup {
    html! {
        @if sources.is_empty() {
            span.subtle { "anywhere" }
        } @else {
            @for s in sources { span.tag.mono { (s) } }
        }
    }
}

/// The rules card of the firewall page: the table and the add-rule form.
pub fn section(viewer: &Viewer, fw: &Firewall, fb: &Feedback) -> Markup {
    let s = &viewer.session;
    let id = fw.id;
    let rev = || [("revision", fw.revision.to_string())];
    let v = |f: &str| fb.value("rule", f).unwrap_or_default().to_string();
    let chosen_preset = v("preset");
    let chosen_protocol = fb.value("rule", "protocol").unwrap_or("tcp").to_string();
    html! {
        section.card #rules {
            h2 { "Rules" }
            p.hint { "Inbound traffic that matches an enabled rule is accepted; everything else is dropped while the firewall is active." }
            (messages(fb, "rules", &[]))
            @if fw.rules.is_empty() {
                p.empty { "No rules yet: add one below (a preset such as SSH, or a protocol and port)." }
            } @else {
                table {
                    thead { tr { th { "#" } th { "Protocol" } th { "Port" } th { "From" } th { "Description" } th { "State" } th {} } }
                    tbody {
                        @for (n, r) in fw.rules.iter().enumerate() {
                            tr.disabled[!r.enabled] {
                                td.subtle { (n + 1) }
                                td { (r.protocol.as_str().to_uppercase()) }
                                td { (port_text(r)) }
                                td { (sources_text(&r.sources)) }
                                td.detail { (r.description) }
                                td {
                                    @if r.enabled { span.pill.ok { "enabled" } } @else { span.pill.off { "disabled" } }
                                }
                                td.actions {
                                    a.btn.small.secondary href={ "/firewalls/" (id) "/rules/" (r.id) } { "Edit" }
                                    @let (label, to) = if r.enabled { ("Disable", "false") } else { ("Enable", "true") };
                                    (button_form(s, &format!("/firewalls/{id}/rules/{}/toggle", r.id), label, "small secondary",
                                        &[("revision", fw.revision.to_string()), ("enabled", to.to_string())], None))
                                    (button_form(s, &format!("/firewalls/{id}/rules/{}/delete", r.id), "Delete", "small danger",
                                        &rev(), Some("Delete this rule?")))
                                }
                            }
                        }
                    }
                }
            }
            h3 #add-rule { "Add a rule" }
            (messages(fb, "rule", ADD_FIELDS))
            form method="post" action={ "/firewalls/" (id) "/rules#add-rule" } {
                (csrf(s))
                (revision_field(fw))
                div.form-row {
                    (field("rule-preset", "Preset", None, fb.error("rule", "preset"), |fid, err| html! {
                        select id=(fid) name="preset" data-preset="1" aria-invalid=[err.map(|_| "true")] aria-describedby=[err] {
                            option value="" selected[chosen_preset.is_empty()] { "Custom: protocol and port" }
                            @for p in PRESETS {
                                option value=(p.name) selected[chosen_preset.eq_ignore_ascii_case(p.name)] {
                                    (p.name) " (" (p.protocol.as_str())
                                    @if let Some(port) = p.port { " " (port) }
                                    ")"
                                }
                            }
                        }
                    }))
                    (field("rule-protocol", "Protocol", None, fb.error("rule", "protocol"), |fid, err| protocol_select(fid, &chosen_protocol, err)))
                    (field("rule-port", "Port", Some("22 or 8000-8100; none for icmp"), fb.error("rule", "port"), |fid, err| {
                        text_input(fid, "port", &v("port"), Some("443"), err)
                    }))
                }
                div.form-row {
                    (wide_field("rule-sources", "From (sources)", Some("Addresses or networks, separated by commas; empty means from anywhere."), fb.error("rule", "sources"), |fid, err| {
                        text_input(fid, "sources", &v("sources"), Some("203.0.113.0/24, 2001:db8::/32"), err)
                    }))
                    (wide_field("rule-description", "Description (optional)", None, fb.error("rule", "description"), |fid, err| {
                        text_input(fid, "description", &v("description"), Some("office VPN"), err)
                    }))
                    div.submit { button.btn type="submit" { "Add rule" } }
                }
            }
        }
    }
}

fn protocol_select(id: &str, chosen: &str, err: Option<&str>) -> Markup {
    html! {
        select id=(id) name="protocol" aria-invalid=[err.map(|_| "true")] aria-describedby=[err] {
            @for p in PROTOCOLS {
                option value=(p.as_str()) selected[chosen.eq_ignore_ascii_case(p.as_str())] { (p.as_str()) }
            }
        }
    }
}

/// `POST /firewalls/{id}/rules` (preset | protocol + port, sources,
/// description): appends a rule.
pub async fn add(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, form }: Posted,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return errors::not_found(&viewer.session, "Firewall");
    };
    let rule = rule_input(&form).and_then(|i| i.to_rule("").map_err(Problem::from));
    let r = match rule {
        Ok(rule) => st
            .store
            .add_rule(
                &viewer.actor,
                viewer.customer,
                id,
                parse_revision(&form),
                &rule,
            )
            .await
            .map_err(Problem::from),
        Err(p) => Err(p),
    };
    finish(&st, &viewer, id, "rule", form, r, |_| "rule-added".into()).await
}

fn ids(fw: &str, rule: &str) -> Option<(i64, i64)> {
    Some((parse_id(fw)?, parse_id(rule)?))
}

/// `GET /firewalls/{id}/rules/{rule_id}`: the edit form.
pub async fn edit_page(
    State(st): State<AppState>,
    viewer: Viewer,
    Path((fw, rule)): Path<(String, String)>,
) -> Response {
    let Some((id, rule_id)) = ids(&fw, &rule) else {
        return errors::not_found(&viewer.session, "Rule");
    };
    render_edit(&st, &viewer, id, rule_id, Feedback::default()).await
}

async fn render_edit(
    st: &AppState,
    viewer: &Viewer,
    id: i64,
    rule_id: i64,
    fb: Feedback,
) -> Response {
    let s = &viewer.session;
    let fw = match st.store.firewall(viewer.customer, id).await {
        Ok(fw) => fw,
        Err(e) => return errors::api_error(Some(s), e.into()),
    };
    let Some(rule) = fw.rules.iter().find(|r| r.id == rule_id) else {
        return errors::not_found(s, &format!("Rule {rule_id} of firewall {id}"));
    };
    let posted = fb.posted("edit");
    let protocol = fb
        .value("edit", "protocol")
        .unwrap_or(rule.protocol.as_str())
        .to_string();
    let port = fb
        .value("edit", "port")
        .map(str::to_string)
        .unwrap_or_else(|| rule.port.clone().unwrap_or_default());
    let sources = fb
        .value("edit", "sources")
        .map(str::to_string)
        .unwrap_or_else(|| rule.sources.join(", "));
    let description = fb
        .value("edit", "description")
        .unwrap_or(&rule.description)
        .to_string();
    let enabled = if posted {
        fb.values.has("enabled")
    } else {
        rule.enabled
    };
    let content = html! {
        div.crumbs {
            a href="/firewalls" { "Firewalls" } " / "
            a href={ "/firewalls/" (id) } { (fw.name) } " / rule"
        }
        div.page-head { div.title { h1 { "Edit rule" } } }
        section.card {
            (messages(&fb, "edit", EDIT_FIELDS))
            form method="post" action={ "/firewalls/" (id) "/rules/" (rule_id) } {
                (csrf(s))
                (revision_field(&fw))
                div.form-row {
                    (field("edit-protocol", "Protocol", None, fb.error("edit", "protocol"), |fid, err| protocol_select(fid, &protocol, err)))
                    (field("edit-port", "Port", Some("22 or 8000-8100; none for icmp"), fb.error("edit", "port"), |fid, err| text_input(fid, "port", &port, None, err)))
                }
                (field("edit-sources", "From (sources)", Some("Addresses or networks, separated by commas; empty means from anywhere."), fb.error("edit", "sources"), |fid, err| {
                    text_input(fid, "sources", &sources, None, err)
                }))
                (field("edit-description", "Description", None, fb.error("edit", "description"), |fid, err| text_input(fid, "description", &description, None, err)))
                div.field {
                    label.check for="edit-enabled" {
                        input type="checkbox" id="edit-enabled" name="enabled" value="1" checked[enabled];
                        "Enabled"
                    }
                }
                button.btn type="submit" { "Save rule" }
                " "
                a.btn.secondary href={ "/firewalls/" (id) } { "Cancel" }
            }
        }
    };
    respond(
        fb.status,
        shell("Edit rule", Some(s), Nav::Firewalls, content),
    )
}

/// `POST /firewalls/{id}/rules/{rule_id}` (protocol, port, sources,
/// description, enabled): saves an edited rule.
pub async fn save(
    State(st): State<AppState>,
    Path((fw, rule)): Path<(String, String)>,
    Posted { viewer, form }: Posted,
) -> Response {
    let Some((id, rule_id)) = ids(&fw, &rule) else {
        return errors::not_found(&viewer.session, "Rule");
    };
    let r = match rule_patch(&form) {
        Ok(patch) => st
            .store
            .update_rule(
                &viewer.actor,
                viewer.customer,
                id,
                rule_id,
                parse_revision(&form),
                |r| patch.apply(r),
            )
            .await
            .map_err(Problem::from),
        Err(p) => Err(p),
    };
    match r {
        Ok(_) => see_other(&format!("/firewalls/{id}?done=rule-saved")),
        Err(Problem::Page(e)) => errors::api_error(Some(&viewer.session), e),
        Err(p) => render_edit(&st, &viewer, id, rule_id, Feedback::failed("edit", form, p)).await,
    }
}

/// `POST /firewalls/{id}/rules/{rule_id}/toggle` (enabled=true|false)
pub async fn toggle(
    State(st): State<AppState>,
    Path((fw, rule)): Path<(String, String)>,
    Posted { viewer, form }: Posted,
) -> Response {
    let Some((id, rule_id)) = ids(&fw, &rule) else {
        return errors::not_found(&viewer.session, "Rule");
    };
    let enabled = form.get("enabled") == "true";
    let patch = RulePatch {
        enabled: Some(enabled),
        ..RulePatch::default()
    };
    let r = st
        .store
        .update_rule(
            &viewer.actor,
            viewer.customer,
            id,
            rule_id,
            parse_revision(&form),
            |r| patch.apply(r),
        )
        .await
        .map_err(Problem::from);
    let done = if enabled {
        "rule-enabled"
    } else {
        "rule-disabled"
    };
    finish(&st, &viewer, id, "rules", form, r, |_| done.into()).await
}

/// `POST /firewalls/{id}/rules/{rule_id}/delete`
pub async fn delete(
    State(st): State<AppState>,
    Path((fw, rule)): Path<(String, String)>,
    Posted { viewer, form }: Posted,
) -> Response {
    let Some((id, rule_id)) = ids(&fw, &rule) else {
        return errors::not_found(&viewer.session, "Rule");
    };
    let r = st
        .store
        .delete_rule(
            &viewer.actor,
            viewer.customer,
            id,
            rule_id,
            parse_revision(&form),
        )
        .await
        .map_err(Problem::from);
    finish(&st, &viewer, id, "rules", form, r, |_| {
        "rule-deleted".into()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    fn form(pairs: &[(&str, &str)]) -> FormData {
        FormData(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn field_of(p: Problem) -> String {
        match p {
            Problem::Field { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn add_form_becomes_the_api_rule() {
        let r = rule_input(&form(&[("preset", "SSH"), ("protocol", "udp")]))
            .unwrap()
            .to_rule("")
            .unwrap();
        assert_eq!(r.protocol, NetworkProtocol::Tcp);
        assert_eq!(r.ports, Some(model::PortRange::single(22)));
        let r = rule_input(&form(&[
            ("preset", ""),
            ("protocol", "udp"),
            ("port", " 8000-8100 "),
            ("sources", "203.0.113.0/24,  198.51.100.7\n2001:db8::/32"),
        ]))
        .unwrap()
        .to_rule("")
        .unwrap();
        assert_eq!(r.ports, model::PortRange::new(8000, 8100));
        assert_eq!(r.sources.len(), 3);
        assert!(r.enabled);
    }

    #[test]
    fn add_form_errors_name_the_input() {
        let err = |pairs: &[(&str, &str)]| match rule_input(&form(pairs)) {
            Err(p) => field_of(p),
            Ok(i) => match i.to_rule("") {
                Err(e) => field_of(Problem::from(e)),
                Ok(r) => panic!("accepted {r:?}"),
            },
        };
        assert_eq!(err(&[("protocol", "tcp"), ("port", "70000")]), "port");
        assert_eq!(err(&[("protocol", "tcp")]), "port");
        assert_eq!(err(&[("protocol", "gre"), ("port", "1")]), "protocol");
        assert_eq!(
            err(&[
                ("protocol", "tcp"),
                ("port", "22"),
                ("sources", "10.0.0.0/8, 10.0.0.300/8")
            ]),
            "sources"
        );
        assert_eq!(err(&[("preset", "SSH"), ("port", "23")]), "preset");
        assert_eq!(err(&[("preset", "gopher")]), "preset");
        assert_eq!(err(&[("protocol", "")]), "protocol");
    }

    #[test]
    fn edit_form_becomes_the_api_patch() {
        let base = rule_input(&form(&[("protocol", "tcp"), ("port", "22")]))
            .unwrap()
            .to_rule("")
            .unwrap();
        let p = rule_patch(&form(&[("protocol", "icmp"), ("port", "")])).unwrap();
        let r = p.apply(base.clone()).unwrap();
        assert_eq!(r.ports, None);
        assert!(!r.enabled, "an unticked checkbox disables the rule");
        let p = rule_patch(&form(&[("protocol", "icmp"), ("port", "22")])).unwrap();
        assert!(matches!(
            p.apply(base),
            Err(StoreError::Invalid { field, .. }) if field == "port"
        ));
    }
}
