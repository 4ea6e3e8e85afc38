//! Which servers a firewall applies to: the servers card of the firewall
//! page (each server with its apply status, as `GET
//! /v1/firewalls/{id}/status` gives it), and the posts that assign a server
//! by id or by label selector, unassign a server and remove a selector.
//!
//! The store decides everything: that the server is the customer's (else
//! "not found"), that it is a VPS or VDS (a Dedicated server is refused with
//! the store's message), what a selector matches.

use super::context::{parse_id, parse_revision, Posted, Viewer};
use super::errors;
use super::feedback::{Feedback, Problem};
use super::firewalls::{finish, revision_field};
use super::layout::{apply_pill, button_form, csrf, field, messages, text_input};
use crate::state::AppState;
use crate::store::{AssignOutcome, Firewall, FirewallApplyStatus, PageRequest, Server, StoreError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use std::collections::HashMap;

/// Most servers offered in the assign form's list.
const MAX_LISTED: u32 = 1000;

/// What the servers card shows: where the firewall stands on each server it
/// applies to, and the customer's servers (to assign, and their addresses).
pub struct Servers {
    pub statuses: FirewallApplyStatus,
    pub all: Vec<Server>,
}

impl Servers {
    pub async fn load(st: &AppState, viewer: &Viewer, id: i64) -> Result<Servers, StoreError> {
        let statuses = st.store.firewall_status(viewer.customer, id).await?;
        let all = st
            .store
            .list_servers(
                Some(viewer.customer),
                PageRequest {
                    limit: MAX_LISTED,
                    cursor: None,
                },
            )
            .await?
            .items;
        Ok(Servers { statuses, all })
    }
}

/// The servers card of the firewall page.
pub fn section(viewer: &Viewer, fw: &Firewall, servers: &Servers, fb: &Feedback) -> Markup {
    let s = &viewer.session;
    let id = fw.id;
    let by_id: HashMap<i64, &Server> = servers.all.iter().map(|s| (s.id, s)).collect();
    let assignable: Vec<&Server> = servers
        .all
        .iter()
        .filter(|srv| !fw.servers.contains(&srv.id))
        .collect();
    let chosen_server = fb.value("assign-server", "server_id").unwrap_or_default();
    let selector = fb
        .value("assign-selector", "selector")
        .unwrap_or_default()
        .to_string();
    html! {
        section.card #servers {
            h2 { "Servers" }
            p.hint { "The firewall applies to the servers assigned to it, directly or through a label selector. Only VPS and VDS can have a network firewall. The status says whether the edge has applied the server's current rules." }
            (messages(fb, "servers", &[]))
            @if servers.statuses.servers.is_empty() {
                p.empty { "Not assigned to any server yet." }
            } @else {
                table {
                    thead { tr { th { "Server" } th { "Addresses" } th { "Zone" } th { "Assigned" } th { "Status" } th {} } }
                    tbody {
                        @for st in &servers.statuses.servers {
                            tr data-server-id=(st.server_id) {
                                td { strong { (st.name) } span.subtle { " #" (st.server_id) } }
                                td {
                                    @if let Some(srv) = by_id.get(&st.server_id) {
                                        @for a in &srv.ipv4 { span.tag.mono { (a) } }
                                        @for a in &srv.ipv6 { span.tag.mono { (a) } }
                                    }
                                }
                                td { (st.zone) }
                                td {
                                    @if fw.servers.contains(&st.server_id) { "directly" } @else { span.subtle { "by label" } }
                                }
                                td.status { (apply_pill(st)) }
                                td.actions {
                                    @if fw.servers.contains(&st.server_id) {
                                        (button_form(s, &format!("/firewalls/{id}/assignments/{}/delete", st.server_id), "Unassign", "small danger",
                                            &[("revision", fw.revision.to_string())], Some("Unassign this server? The firewall stops applying to it.")))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !fw.selectors.is_empty() {
                h3 { "Label selectors" }
                table {
                    tbody {
                        @for sel in &fw.selectors {
                            tr {
                                td { code { (sel.selector) } }
                                td.subtle { "also applies to servers labelled this way later" }
                                td.actions {
                                    (button_form(s, &format!("/firewalls/{id}/selectors/{}/delete", sel.id), "Remove", "small danger",
                                        &[("revision", fw.revision.to_string())], Some("Remove this label selector?")))
                                }
                            }
                        }
                    }
                }
            }
            div.grid2 {
                div {
                    h3 { "Assign a server" }
                    (messages(fb, "assign-server", &["server_id"]))
                    form method="post" action={ "/firewalls/" (id) "/assignments" } {
                        (csrf(s))
                        (revision_field(fw))
                        input type="hidden" name="by" value="server";
                        div.form-row {
                            (field("assign-server_id", "Server", None, fb.error("assign-server", "server_id"), |fid, err| html! {
                                select id=(fid) name="server_id" aria-invalid=[err.map(|_| "true")] aria-describedby=[err] {
                                    option value="" { "Choose a server…" }
                                    @for srv in &assignable {
                                        @let label = format!("{} #{} ({}, {})", srv.name, srv.id, srv.kind.as_str(), srv.zone);
                                        @if srv.kind.supports_firewall() {
                                            option value=(srv.id) selected[chosen_server == srv.id.to_string()] { (label) }
                                        } @else {
                                            option value=(srv.id) disabled { (label) " — Dedicated: use its OS firewall" }
                                        }
                                    }
                                }
                            }))
                            div.submit { button.btn type="submit" { "Assign" } }
                        }
                    }
                }
                div {
                    h3 { "Assign by label" }
                    (messages(fb, "assign-selector", &["selector"]))
                    form method="post" action={ "/firewalls/" (id) "/assignments" } {
                        (csrf(s))
                        (revision_field(fw))
                        input type="hidden" name="by" value="selector";
                        div.form-row {
                            (field("assign-selector", "Label selector", Some("key=value[,key=value]: every VPS/VDS with all these labels, now or later."), fb.error("assign-selector", "selector"), |fid, err| {
                                text_input(fid, "selector", &selector, Some("env=prod"), err)
                            }))
                            div.submit { button.btn type="submit" { "Assign" } }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /firewalls/{id}/assignments` (by=server + server_id, or
/// by=selector + selector)
pub async fn assign(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, form }: Posted,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return errors::not_found(&viewer.session, "Firewall");
    };
    let expect = parse_revision(&form);
    let (form_name, r): (&'static str, Result<AssignOutcome, Problem>) = if form.get("by")
        == "selector"
    {
        let sel = form.get("selector").trim();
        let r = if sel.is_empty() {
            Err(Problem::field(
                "selector",
                "write key=value (e.g. env=prod), or several separated by commas",
            ))
        } else {
            st.store
                .assign_selector(&viewer.actor, viewer.customer, id, expect, sel)
                .await
                .map_err(Problem::from)
        };
        ("assign-selector", r)
    } else {
        let r = match form.get("server_id").trim() {
                "" => Err(Problem::field("server_id", "choose a server")),
                v => match parse_id(v) {
                    None => Err(Problem::field("server_id", format!("'{v}' is not a server id"))),
                    Some(sid) => st
                        .store
                        .assign_servers(&viewer.actor, viewer.customer, id, expect, &[sid])
                        .await
                        .map_err(|e| match e {
                            // The store looks the firewall up first, so a
                            // missing server is a wrong choice in this form:
                            // say so next to the field, not as a 404 page.
                            StoreError::NotFound(what) if what.starts_with("server") => {
                                Problem::Field {
                                    status: StatusCode::NOT_FOUND,
                                    field: "server_id".into(),
                                    message: format!("{what} not found: it does not exist, or it is not one of yours"),
                                }
                            }
                            e => Problem::from(e),
                        }),
                },
            };
        ("assign-server", r)
    };
    finish(&st, &viewer, id, form_name, form, r, |out| {
        if out.skipped.is_empty() {
            "assigned".into()
        } else {
            format!("assigned&skipped={}", out.skipped.len())
        }
    })
    .await
}

/// `POST /firewalls/{id}/assignments/{server_id}/delete`
pub async fn unassign(
    State(st): State<AppState>,
    Path((fw, server)): Path<(String, String)>,
    Posted { viewer, form }: Posted,
) -> Response {
    let (Some(id), Some(server_id)) = (parse_id(&fw), parse_id(&server)) else {
        return errors::not_found(&viewer.session, "Assignment");
    };
    let r = st
        .store
        .unassign_server(
            &viewer.actor,
            viewer.customer,
            id,
            server_id,
            parse_revision(&form),
        )
        .await
        .map_err(Problem::from);
    finish(&st, &viewer, id, "servers", form, r, |_| {
        "unassigned".into()
    })
    .await
}

/// `POST /firewalls/{id}/selectors/{selector_id}/delete`
pub async fn remove_selector(
    State(st): State<AppState>,
    Path((fw, selector)): Path<(String, String)>,
    Posted { viewer, form }: Posted,
) -> Response {
    let (Some(id), Some(selector_id)) = (parse_id(&fw), parse_id(&selector)) else {
        return errors::not_found(&viewer.session, "Selector");
    };
    let r = st
        .store
        .remove_selector(
            &viewer.actor,
            viewer.customer,
            id,
            selector_id,
            parse_revision(&form),
        )
        .await
        .map_err(Problem::from);
    finish(&st, &viewer, id, "servers", form, r, |_| {
        "selector-removed".into()
    })
    .await
}
