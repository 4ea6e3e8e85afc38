//! `/servers`: the customer's servers, each with whether a network firewall
//! is enforced on it and whether the edge applied its current rules
//! (`applied`, `pending`, `failed: REASON`, from the store's server status,
//! as `GET /v1/servers/{id}/status` gives it).

use super::context::Viewer;
use super::errors;
use super::layout::{apply_pill, page as shell, respond, Nav};
use crate::state::AppState;
use crate::store::{PageRequest, ServerStatus};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use std::collections::HashMap;

/// Servers per page.
const PAGE_SIZE: u32 = 50;

/// `GET /servers[?cursor=ID]`
pub async fn list(
    State(st): State<AppState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = &viewer.session;
    let cursor = q.get("cursor").and_then(|c| c.parse::<i64>().ok());
    let page = match st
        .store
        .list_servers(
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
    let mut statuses: Vec<ServerStatus> = Vec::with_capacity(page.items.len());
    for srv in &page.items {
        match st.store.server_status(Some(viewer.customer), srv.id).await {
            Ok(x) => statuses.push(x),
            Err(e) => return errors::api_error(Some(s), e.into()),
        }
    }
    let content = html! {
        div.page-head { div.title { h1 { "Servers" } } }
        section.card {
            p.hint { "Your servers, as the provider registered them. Assign firewalls to them from a firewall's page." }
            @if page.items.is_empty() {
                p.empty { "You have no servers." }
            } @else {
                table {
                    thead { tr { th { "Server" } th { "Type" } th { "Addresses" } th { "Zone" } th { "Labels" } th { "Firewalls" } th { "Status" } } }
                    tbody {
                        @for (srv, status) in page.items.iter().zip(&statuses) {
                            tr data-server-id=(srv.id) {
                                td { strong { (srv.name) } span.subtle { " #" (srv.id) } }
                                td { (srv.kind.as_str()) }
                                td {
                                    @for a in &srv.ipv4 { span.tag.mono { (a) } }
                                    @for a in &srv.ipv6 { span.tag.mono { (a) } }
                                }
                                td { (srv.zone) }
                                td {
                                    @for (k, v) in &srv.labels { span.tag.mono { (k) "=" (v) } }
                                }
                                td {
                                    @if !srv.kind.supports_firewall() {
                                        span.subtle { "not available (Dedicated)" }
                                    } @else if status.firewalls.is_empty() {
                                        span.subtle { "none" }
                                    } @else {
                                        @for f in &status.firewalls { a.tag href={ "/firewalls/" (f) } { "#" (f) } }
                                    }
                                }
                                td.status {
                                    @if srv.kind.supports_firewall() {
                                        (apply_pill(status))
                                        @if !status.enforced { br; span.subtle { "not filtered: no active firewall" } }
                                    }
                                }
                            }
                        }
                    }
                }
                @if let Some(next) = &page.next_cursor {
                    div.pager { a.btn.secondary href={ "/servers?cursor=" (next) } { "Next page" } }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        shell("Servers", Some(s), Nav::Servers, content),
    )
}
