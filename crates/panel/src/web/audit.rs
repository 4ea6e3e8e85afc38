//! `/audit`: who changed what and when, newest first: the entries about the
//! customer's own objects, as `GET /v1/audit` shows them.

use super::context::Viewer;
use super::errors;
use super::layout::{page as shell, respond, when, Nav};
use crate::state::AppState;
use crate::store::PageRequest;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use std::collections::HashMap;

/// Entries per page.
const PAGE_SIZE: u32 = 50;
/// Longest detail shown in the table (the full entry is in the API).
const MAX_DETAIL: usize = 240;

/// The target as a link when it is a firewall (`firewall/12`).
fn target(t: &str) -> Markup {
    match t
        .strip_prefix("firewall/")
        .and_then(|n| n.parse::<i64>().ok())
    {
        Some(id) => html! { a href={ "/firewalls/" (id) } { code { (t) } } },
        None => html! { code { (t) } },
    }
}

fn detail(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Object(m) if m.is_empty() => String::new(),
        v => v.to_string(),
    };
    if s.chars().count() > MAX_DETAIL {
        let cut: String = s.chars().take(MAX_DETAIL).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// `GET /audit[?cursor=ID]` (older entries after `cursor`)
pub async fn list(
    State(st): State<AppState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = &viewer.session;
    let cursor = q.get("cursor").and_then(|c| c.parse::<i64>().ok());
    let page = match st
        .store
        .audit_log(
            Some(viewer.customer),
            PageRequest {
                limit: PAGE_SIZE,
                cursor,
            },
        )
        .await
    {
        Ok(p) => p,
        Err(e) => return errors::api_error(Some(s), e.into()),
    };
    let content = html! {
        div.page-head { div.title { h1 { "Audit log" } } }
        section.card {
            @if page.items.is_empty() {
                p.empty { "Nothing recorded yet." }
            } @else {
                table {
                    thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "Revision" } th { "Detail" } } }
                    tbody {
                        @for e in &page.items {
                            tr {
                                td.subtle.nowrap { (when(&e.at)) }
                                td { (e.actor) }
                                td { code { (e.action) } }
                                td { (target(&e.target)) }
                                td.subtle { @if let Some(r) = e.revision { (r) } }
                                td.detail.mono { (detail(&e.detail)) }
                            }
                        }
                    }
                }
                @if let Some(next) = &page.next_cursor {
                    div.pager { a.btn.secondary href={ "/audit?cursor=" (next) } { "Older entries" } }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        shell("Audit log", Some(s), Nav::Audit, content),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_short_and_targets_link() {
        assert_eq!(detail(&serde_json::json!({})), "");
        assert_eq!(detail(&serde_json::json!({"a": 1})), r#"{"a":1}"#);
        let long = serde_json::json!({"x": "y".repeat(1000)});
        assert!(detail(&long).ends_with('…'));
        assert!(target("firewall/7")
            .into_string()
            .contains("href=\"/firewalls/7\""));
        assert!(!target("server/7").into_string().contains("href"));
    }
}
