//! The firewall list (`/firewalls`, with the form that creates one) and the
//! firewall page (`/firewalls/{id}`): status, enable/disable, settings,
//! deletion. The page's rule and server sections come from [`super::rules`]
//! and [`super::assignments`], which re-render it through [`render`] when a
//! form of theirs fails.

use super::context::{parse_id, parse_revision, Posted, Viewer};
use super::feedback::{Feedback, Problem};
use super::layout::{
    button_form, field, firewall_pill, flash, messages, page as shell, respond, see_other,
    text_input, when, wide_field, Nav,
};
use super::{assignments, errors, rules};
use crate::state::AppState;
use crate::store::{Firewall, FirewallStatus, PageRequest};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{html, Markup};
use std::collections::HashMap;

/// Firewalls per page of the list.
const PAGE_SIZE: u32 = 100;

/// The confirmation for `?done=CODE` after a successful change. Only fixed
/// texts: nothing from the query string is shown.
pub fn done_message(q: &HashMap<String, String>) -> Option<String> {
    let text = match q.get("done")?.as_str() {
        "created" => "Firewall created. It is inactive until you enable it.",
        "enabled" => "Firewall enabled: inbound traffic to its servers is now dropped unless a rule accepts it.",
        "disabled" => "Firewall disabled: its rules no longer apply.",
        "saved" => "Settings saved.",
        "deleted" => "Firewall deleted.",
        "rule-added" => "Rule added.",
        "rule-saved" => "Rule saved.",
        "rule-enabled" => "Rule enabled.",
        "rule-disabled" => "Rule disabled.",
        "rule-deleted" => "Rule deleted.",
        "assigned" => "Assigned.",
        "unassigned" => "Server unassigned.",
        "selector-removed" => "Label selector removed.",
        _ => return None,
    };
    let skipped = q
        .get("skipped")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    Some(if skipped > 0 {
        format!("{text} {skipped} matching Dedicated server(s) were skipped: network firewalls are available for VPS and VDS only.")
    } else {
        text.to_string()
    })
}

/// The firewall's revision as a hidden field: a change posted from a page
/// that is out of date is refused (412), as with `If-Match`.
pub fn revision_field(fw: &Firewall) -> Markup {
    html! { input type="hidden" name="revision" value=(fw.revision); }
}

/// `GET /firewalls[?cursor=ID]`
pub async fn list(
    State(st): State<AppState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let cursor = q.get("cursor").and_then(|c| c.parse::<i64>().ok());
    render_list(&st, &viewer, Feedback::flash(done_message(&q)), cursor).await
}

async fn render_list(
    st: &AppState,
    viewer: &Viewer,
    fb: Feedback,
    cursor: Option<i64>,
) -> Response {
    let page = match st
        .store
        .list_firewalls(
            viewer.customer,
            PageRequest {
                limit: PAGE_SIZE,
                cursor,
            },
        )
        .await
    {
        Ok(p) => p,
        Err(e) => return errors::api_error(Some(&viewer.session), e.into()),
    };
    let s = &viewer.session;
    let content = html! {
        div.page-head {
            div.title { h1 { "Firewalls" } }
        }
        (flash(&fb))
        section.card {
            @if page.items.is_empty() {
                p.empty { "You have no firewalls yet. Create one below, add rules, enable it and assign it to your servers." }
            } @else {
                table {
                    thead { tr { th { "Name" } th { "Status" } th { "Rules" } th { "Description" } th { "Last change" } } }
                    tbody {
                        @for f in &page.items {
                            tr {
                                td { a href={ "/firewalls/" (f.id) } { (f.name) } }
                                td { (firewall_pill(f.status)) }
                                td { (f.rule_count) }
                                td.detail { (f.description) }
                                td.subtle { (when(&f.updated_at)) }
                            }
                        }
                    }
                }
                @if let Some(next) = &page.next_cursor {
                    div.pager { a.btn.secondary href={ "/firewalls?cursor=" (next) } { "Next page" } }
                }
            }
        }
        section.card {
            h2 { "Create a firewall" }
            (messages(&fb, "create", &["name", "description"]))
            form method="post" action="/firewalls" {
                (super::layout::csrf(s))
                div.form-row {
                    (field("create-name", "Name", None, fb.error("create", "name"), |id, err| {
                        text_input(id, "name", fb.value("create", "name").unwrap_or_default(), Some("web servers"), err)
                    }))
                    (wide_field("create-description", "Description (optional)", None, fb.error("create", "description"), |id, err| {
                        text_input(id, "description", fb.value("create", "description").unwrap_or_default(), None, err)
                    }))
                    div.submit { button.btn type="submit" { "Create firewall" } }
                }
                p.hint { "A new firewall is inactive until you enable it." }
            }
        }
    };
    respond(
        fb.status,
        shell("Firewalls", Some(s), Nav::Firewalls, content),
    )
}

/// `POST /firewalls` (name, description): creates an inactive firewall.
pub async fn create(State(st): State<AppState>, Posted { viewer, form }: Posted) -> Response {
    let created = st
        .store
        .create_firewall(
            &viewer.actor,
            viewer.customer,
            form.get("name").trim(),
            form.get("description"),
            &[],
        )
        .await;
    match created {
        Ok(fw) => see_other(&format!("/firewalls/{}?done=created", fw.id)),
        Err(e) => match Problem::from(e) {
            Problem::Page(e) => errors::api_error(Some(&viewer.session), e),
            p => render_list(&st, &viewer, Feedback::failed("create", form, p), None).await,
        },
    }
}

/// `GET /firewalls/{id}`
pub async fn show(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return errors::not_found(&viewer.session, "Firewall");
    };
    render(&st, &viewer, id, Feedback::flash(done_message(&q))).await
}

/// `GET` on a form's target (`/firewalls/{id}/rules`, `.../enable`, ...):
/// after a failed post the address bar shows it, and reloading or bookmarking
/// it should lead back to the firewall page, not to "405".
pub async fn back(Path(id): Path<String>) -> Response {
    match parse_id(&id) {
        Some(id) => see_other(&format!("/firewalls/{id}")),
        None => see_other("/firewalls"),
    }
}

/// The firewall page with `fb` (a confirmation, or a failed form).
pub async fn render(st: &AppState, viewer: &Viewer, id: i64, fb: Feedback) -> Response {
    let s = &viewer.session;
    let fw = match st.store.firewall(viewer.customer, id).await {
        Ok(fw) => fw,
        Err(e) => return errors::api_error(Some(s), e.into()),
    };
    let servers = match assignments::Servers::load(st, viewer, id).await {
        Ok(x) => x,
        Err(e) => return errors::api_error(Some(s), e.into()),
    };
    let active = fw.status == FirewallStatus::Active;
    let enabled_rules = fw.rules.iter().filter(|r| r.enabled).count();
    let content = html! {
        div.crumbs { a href="/firewalls" { "Firewalls" } " / " (fw.name) }
        div.page-head {
            div.title {
                h1 { (fw.name) }
                (firewall_pill(fw.status))
            }
            div.actions {
                @if active {
                    (button_form(s, &format!("/firewalls/{id}/disable"), "Disable", "secondary", &[("revision", fw.revision.to_string())], None))
                } @else {
                    (button_form(s, &format!("/firewalls/{id}/enable"), "Enable", "", &[("revision", fw.revision.to_string())], None))
                }
                (button_form(s, &format!("/firewalls/{id}/delete"), "Delete", "danger", &[("revision", fw.revision.to_string())],
                    Some("Delete this firewall? Its rules stop applying to its servers at once.")))
            }
        }
        @if !fw.description.is_empty() { p.subtle { (fw.description) } }
        p.subtle { "Revision " (fw.revision) " · last change " (when(&fw.updated_at)) }
        (flash(&fb))
        (messages(&fb, "state", &[]))
        @if !active {
            div.notice.info {
                "Inactive: the rules below are not enforced. Once you enable it, every inbound packet to its servers is dropped unless a rule accepts it; outbound traffic and replies to the servers' own connections always pass."
            }
        } @else if enabled_rules == 0 && !servers.statuses.servers.is_empty() {
            div.notice.warn {
                "Active with no enabled rule: all inbound traffic to its servers is dropped."
            }
        }
        (rules::section(viewer, &fw, &fb))
        (assignments::section(viewer, &fw, &servers, &fb))
        (settings_section(viewer, &fw, &fb))
    };
    respond(fb.status, shell(&fw.name, Some(s), Nav::Firewalls, content))
}

fn settings_section(viewer: &Viewer, fw: &Firewall, fb: &Feedback) -> Markup {
    let name = fb.value("settings", "name").unwrap_or(&fw.name);
    let description = fb
        .value("settings", "description")
        .unwrap_or(&fw.description);
    html! {
        section.card {
            h2 { "Settings" }
            (messages(fb, "settings", &["name", "description"]))
            form method="post" action={ "/firewalls/" (fw.id) "/settings" } {
                (super::layout::csrf(&viewer.session))
                (revision_field(fw))
                div.form-row {
                    (field("settings-name", "Name", None, fb.error("settings", "name"), |id, err| text_input(id, "name", name, None, err)))
                    (wide_field("settings-description", "Description", None, fb.error("settings", "description"), |id, err| text_input(id, "description", description, None, err)))
                    div.submit { button.btn.secondary type="submit" { "Save" } }
                }
            }
        }
    }
}

/// Runs a change of the firewall, then 303 to its page with `done`, or the
/// page again with the error placed for `form`.
pub async fn finish<T>(
    st: &AppState,
    viewer: &Viewer,
    id: i64,
    form_name: &'static str,
    form: super::context::FormData,
    result: Result<T, Problem>,
    done: impl FnOnce(&T) -> String,
) -> Response {
    match result {
        Ok(v) => see_other(&format!("/firewalls/{id}?done={}", done(&v))),
        Err(Problem::Page(e)) => errors::api_error(Some(&viewer.session), e),
        Err(p) => render(st, viewer, id, Feedback::failed(form_name, form, p)).await,
    }
}

async fn set_active(st: AppState, id: String, posted: Posted, active: bool) -> Response {
    let Posted { viewer, form } = posted;
    let Some(id) = parse_id(&id) else {
        return errors::not_found(&viewer.session, "Firewall");
    };
    let r = st
        .store
        .set_firewall_active(
            &viewer.actor,
            viewer.customer,
            id,
            parse_revision(&form),
            active,
        )
        .await
        .map_err(Problem::from);
    let done = if active { "enabled" } else { "disabled" };
    finish(&st, &viewer, id, "state", form, r, |_| done.into()).await
}

/// `POST /firewalls/{id}/enable`
pub async fn enable(State(st): State<AppState>, Path(id): Path<String>, p: Posted) -> Response {
    set_active(st, id, p, true).await
}

/// `POST /firewalls/{id}/disable`
pub async fn disable(State(st): State<AppState>, Path(id): Path<String>, p: Posted) -> Response {
    set_active(st, id, p, false).await
}

/// `POST /firewalls/{id}/settings` (name, description)
pub async fn settings(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, form }: Posted,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return errors::not_found(&viewer.session, "Firewall");
    };
    let r = st
        .store
        .update_firewall(
            &viewer.actor,
            viewer.customer,
            id,
            parse_revision(&form),
            Some(form.get("name").trim()),
            Some(form.get("description")),
        )
        .await
        .map_err(Problem::from);
    finish(&st, &viewer, id, "settings", form, r, |_| "saved".into()).await
}

/// `POST /firewalls/{id}/delete`
pub async fn delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, form }: Posted,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return errors::not_found(&viewer.session, "Firewall");
    };
    match st
        .store
        .delete_firewall(&viewer.actor, viewer.customer, id, parse_revision(&form))
        .await
        .map_err(Problem::from)
    {
        Ok(()) => see_other("/firewalls?done=deleted"),
        Err(Problem::Page(e)) => errors::api_error(Some(&viewer.session), e),
        Err(p) => render(&st, &viewer, id, Feedback::failed("state", form, p)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_messages_are_fixed_texts() {
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        assert_eq!(
            done_message(&q(&[("done", "rule-added")])).as_deref(),
            Some("Rule added.")
        );
        assert_eq!(done_message(&q(&[("done", "<script>")])), None);
        assert!(done_message(&q(&[("done", "assigned"), ("skipped", "2")]))
            .unwrap()
            .contains("2 matching Dedicated"));
    }
}
