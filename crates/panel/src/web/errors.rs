//! Whole-page errors: not found (also for another customer's objects, as the
//! store reports them), a refused form (CSRF), a provider operator's login,
//! internal errors. Field errors are not here: see [`super::feedback`].

use super::layout::{page as shell, respond, Nav};
use crate::error::ApiError;
use crate::store::SessionInfo;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

/// A page with a title and one message, and a way back.
pub fn page(
    session: Option<&SessionInfo>,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    respond(
        status,
        shell(
            title,
            session,
            Nav::None,
            html! {
                section.card.error-page {
                    h1 { (title) }
                    p { (message) }
                    @if session.is_some_and(|s| s.customer_id.is_some()) {
                        p { a href="/firewalls" { "Back to your firewalls" } }
                    }
                }
            },
        ),
    )
}

/// 404: the object does not exist or is not the customer's (the same answer
/// for both, so ids of other customers reveal nothing).
pub fn not_found(session: &SessionInfo, what: &str) -> Response {
    page(
        Some(session),
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("{what} not found: it does not exist, or it is not one of yours."),
    )
}

/// 403: a form without the session's CSRF token.
pub fn csrf(session: &SessionInfo) -> Response {
    page(
        Some(session),
        StatusCode::FORBIDDEN,
        "Form refused",
        "This form's security token is missing or out of date (it may come from another site, or from before you logged in again). Nothing was changed. Go back, reload the page and try again.",
    )
}

/// 403: a provider operator's login; the pages act for one customer.
pub fn operator(session: &SessionInfo) -> Response {
    let login = &session.login;
    page(
        Some(session),
        StatusCode::FORBIDDEN,
        "Customer pages",
        &format!("You are logged in as {login}, a provider operator. These pages manage one customer's firewalls; provider operations use the API under /v1 with an admin token. Log out and log in with a customer's login to use the pages."),
    )
}

/// The page for an [`ApiError`] that is not about one field (404, 500, ...).
pub fn api_error(session: Option<&SessionInfo>, e: ApiError) -> Response {
    let title = match e.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        s if s.is_server_error() => "Something went wrong",
        _ => "Request refused",
    };
    match (e.status, session) {
        (StatusCode::NOT_FOUND, Some(s)) => {
            let what = e.message.trim_end_matches(" not found");
            not_found(s, &capitalize(what))
        }
        _ => page(session, e.status, title, &e.message),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
