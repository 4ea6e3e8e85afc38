//! IP lists: the Lists page (`/lists`, a table of the customer's lists with
//! their counts and the form that creates one) and the list page
//! (`/lists/{id}`), where a customer pastes a block of addresses and
//! networks, one per line with `#` comments, to replace the entries.
//!
//! The pasted text is read by the model's list-file reader
//! ([`model::list::parse_list_file`], the same one `portwall cloud list load`
//! uses): all or nothing, so a bad line is shown with its number and the
//! reason, the text stays in the box, and nothing is changed. The form
//! carries the revision the page showed, so a replace based on a stale page
//! is refused (412) as with `If-Match`.

use super::context::{parse_id, parse_revision, Posted, Viewer};
use super::errors;
use super::feedback::{Feedback, Problem};
use super::layout::{
    button_form, csrf, field, flash, messages, page as shell, respond, see_other, text_input, when,
    wide_field, Nav,
};
use crate::state::AppState;
use crate::store::{EntryChange, IpList, PageRequest, StoreError};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use model::list::parse_list_file;
use std::collections::HashMap;

/// Lists per page of the Lists page.
const PAGE_SIZE: u32 = 100;
/// Up to this many entries, the list page fills the box with them (one per
/// line), ready to edit; a longer list is replaced by pasting it whole.
const PREFILL_MAX: usize = 5_000;

/// The confirmation for `?done=CODE`: fixed texts only.
fn done_message(q: &HashMap<String, String>) -> Option<String> {
    Some(
        match q.get("done")?.as_str() {
            "created" => "List created. Paste its entries below.",
            "saved" => "Entries saved.",
            "unchanged" => "The entries are the same as before: nothing changed.",
            "deleted" => "List deleted.",
            _ => return None,
        }
        .to_string(),
    )
}

/// A store error as the list pages show it: as for firewalls, except that a
/// stale revision speaks of the list.
fn problem(e: StoreError) -> Problem {
    match e {
        StoreError::Precondition { .. } => Problem::Banner {
            status: StatusCode::PRECONDITION_FAILED,
            message: "This list was changed (in another tab, by a colleague or over the API) since this page was loaded. The page now shows its current entries: check them and paste again.".into(),
        },
        e => Problem::from(e),
    }
}

/// `GET /lists[?cursor=ID]`
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
        .list_lists(
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
            div.title { h1 { "IP lists" } }
        }
        (flash(&fb))
        section.card {
            @if page.items.is_empty() {
                p.empty { "You have no IP lists yet. Create one below, then paste its addresses and networks." }
            } @else {
                table #lists {
                    thead { tr { th { "Name" } th.num { "Entries" } th.num { "Kernel ranges" } th { "Description" } th { "Last change" } } }
                    tbody {
                        @for l in &page.items {
                            tr data-list-id=(l.id) {
                                td { a href={ "/lists/" (l.id) } { (l.name) } }
                                td.num.entries { (l.entry_count) }
                                td.num { (l.range_count) }
                                td.detail { (l.description) }
                                td.subtle { (when(&l.updated_at)) }
                            }
                        }
                    }
                }
                @if let Some(next) = &page.next_cursor {
                    div.pager { a.btn.secondary href={ "/lists?cursor=" (next) } { "Next page" } }
                }
            }
        }
        section.card {
            h2 { "Create a list" }
            (messages(&fb, "create", &["name", "description"]))
            form method="post" action="/lists" {
                (csrf(s))
                div.form-row {
                    (field("create-name", "Name", Some(model::list::LIST_NAME_HELP), fb.error("create", "name"), |id, err| {
                        text_input(id, "name", fb.value("create", "name").unwrap_or_default(), Some("office"), err)
                    }))
                    (wide_field("create-description", "Description (optional)", None, fb.error("create", "description"), |id, err| {
                        text_input(id, "description", fb.value("create", "description").unwrap_or_default(), None, err)
                    }))
                    div.submit { button.btn type="submit" { "Create list" } }
                }
            }
        }
    };
    respond(fb.status, shell("IP lists", Some(s), Nav::Lists, content))
}

/// `POST /lists` (name, description): creates an empty list.
pub async fn create(State(st): State<AppState>, Posted { viewer, form }: Posted) -> Response {
    let created = st
        .store
        .create_list(
            &viewer.actor,
            viewer.customer,
            form.get("name").trim(),
            form.get("description"),
            &[],
        )
        .await;
    match created {
        Ok(l) => see_other(&format!("/lists/{}?done=created", l.id)),
        Err(e) => match problem(e) {
            Problem::Page(e) => errors::api_error(Some(&viewer.session), e),
            p => render_list(&st, &viewer, Feedback::failed("create", form, p), None).await,
        },
    }
}

/// `GET /lists/{id}`
pub async fn show(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return errors::not_found(&viewer.session, "List");
    };
    render(&st, &viewer, id, Feedback::flash(done_message(&q))).await
}

/// `GET` on a form's target: back to the list page.
pub async fn back(Path(id): Path<String>) -> Response {
    match parse_id(&id) {
        Some(id) => see_other(&format!("/lists/{id}")),
        None => see_other("/lists"),
    }
}

/// The list page with `fb` (a confirmation, or a failed paste).
async fn render(st: &AppState, viewer: &Viewer, id: i64, fb: Feedback) -> Response {
    let s = &viewer.session;
    let list = match st.store.ip_list(viewer.customer, id).await {
        Ok(l) => l,
        Err(e) => return errors::api_error(Some(s), e.into()),
    };
    let content = html! {
        div.crumbs { a href="/lists" { "IP lists" } " / " (list.name) }
        div.page-head {
            div.title { h1 { (list.name) } }
            div.actions {
                (button_form(s, &format!("/lists/{id}/delete"), "Delete", "danger", &[("revision", list.revision.to_string())],
                    Some("Delete this list and all its entries?")))
            }
        }
        @if !list.description.is_empty() { p.subtle { (list.description) } }
        p.subtle { "Revision " (list.revision) " · last change " (when(&list.updated_at)) }
        (flash(&fb))
        (messages(&fb, "state", &[]))
        (counts(&list))
        (entries_section(viewer, &list, &fb))
    };
    respond(fb.status, shell(&list.name, Some(s), Nav::Lists, content))
}

/// How many entries, and what they merge into.
fn counts(list: &IpList) -> Markup {
    html! {
        p #list-counts {
            strong #entry-count { (list.entry_count) } " entries"
            @if list.entry_count > 0 {
                ", merged into " strong #range-count { (list.range_count) } " kernel ranges"
                @if list.merged_away > 0 {
                    " (" (list.merged_away) " merged away: duplicates, networks inside others, adjacent networks joined)"
                }
            }
            "."
        }
    }
}

fn entries_section(viewer: &Viewer, list: &IpList, fb: &Feedback) -> Markup {
    let current;
    let text = match fb.value("entries", "entries") {
        Some(posted) => posted,
        None if list.entries.len() <= PREFILL_MAX => {
            current = list.entries.join("\n");
            &current
        }
        None => "",
    };
    let hint = if list.entries.len() > PREFILL_MAX {
        format!("One address or network per line; '#' starts a comment. Saving replaces all {} entries with what you paste.", list.entry_count)
    } else {
        "One address or network per line (203.0.113.0/24, 198.51.100.7, 2001:db8::/32); '#' starts a comment. Saving replaces all entries with what the box holds.".to_string()
    };
    html! {
        section.card #entries {
            h2 { "Entries" }
            (messages(fb, "entries", &["entries"]))
            form method="post" action={ "/lists/" (list.id) "/entries" } {
                (csrf(&viewer.session))
                input type="hidden" name="revision" value=(list.revision);
                (field("entries-text", "Addresses and networks", Some(&hint), fb.error("entries", "entries"), |id, err| {
                    html! {
                        textarea id=(id) name="entries" rows="14" spellcheck="false" autocomplete="off"
                            aria-invalid=[err.map(|_| "true")] aria-describedby=[err] {
                            // A browser drops one new line right after
                            // <textarea>: this one, so that a pasted text
                            // starting with a blank line keeps its line
                            // numbers.
                            "\n" (text)
                        }
                    }
                }))
                div { button.btn type="submit" { "Save entries" } }
            }
        }
    }
}

/// `POST /lists/{id}/entries` (entries: the pasted text, revision): replaces
/// the entries; a bad line changes nothing and is named with its number.
pub async fn replace(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, form }: Posted,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return errors::not_found(&viewer.session, "List");
    };
    let result = match parse_list_file(form.get("entries")) {
        Err(e) => Err(Problem::field("entries", e.to_string())),
        Ok(nets) => st
            .store
            .change_list_entries(
                &viewer.actor,
                viewer.customer,
                id,
                parse_revision(&form),
                EntryChange::Replace(nets),
            )
            .await
            .map_err(problem),
    };
    match result {
        Ok((_, true)) => see_other(&format!("/lists/{id}?done=saved#entries")),
        Ok((_, false)) => see_other(&format!("/lists/{id}?done=unchanged#entries")),
        Err(Problem::Page(e)) => errors::api_error(Some(&viewer.session), e),
        Err(p) => render(&st, &viewer, id, Feedback::failed("entries", form, p)).await,
    }
}

/// `POST /lists/{id}/delete`
pub async fn delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, form }: Posted,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return errors::not_found(&viewer.session, "List");
    };
    match st
        .store
        .delete_list(&viewer.actor, viewer.customer, id, parse_revision(&form))
        .await
        .map_err(problem)
    {
        Ok(()) => see_other("/lists?done=deleted"),
        Err(Problem::Page(e)) => errors::api_error(Some(&viewer.session), e),
        Err(p) => render(&st, &viewer, id, Feedback::failed("state", form, p)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_messages_are_fixed_texts() {
        let q = |v: &str| HashMap::from([("done".to_string(), v.to_string())]);
        assert_eq!(done_message(&q("saved")).as_deref(), Some("Entries saved."));
        assert_eq!(done_message(&q("<b>")), None);
    }
}
