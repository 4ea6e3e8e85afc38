//! `GET /` and `GET /login`.
//!
//! The login form posts to `POST /login` (in [`crate::api`]'s session
//! module: password check, rate limit, session cookie), which answers 303 to
//! `next`, or back here with `?error=invalid` / `?error=locked`; this page
//! turns those codes into a message next to the field.

use super::layout::{field, page as shell, respond, see_other, Nav};
use crate::auth::{self, Session, CSRF_FORM_FIELD};
use crate::state::AppState;
use crate::store::random_hex;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use std::collections::HashMap;

/// `GET /`: the firewalls when logged in, else the login page.
pub async fn root(session: Option<Session>) -> Response {
    match session {
        Some(_) => see_other("/firewalls"),
        None => see_other("/login"),
    }
}

/// Where to go after logging in: a path on this panel, else the firewalls.
fn safe_next(next: Option<&str>) -> &str {
    crate::api::session::safe_next(next, "/firewalls")
}

/// `GET /login[?error=invalid|locked|form][&next=PATH]`: the form, with the
/// login CSRF token in a hidden field and in its cookie (the browser's
/// current token when it has one, so that two open login tabs both work).
pub async fn page(
    State(st): State<AppState>,
    session: Option<Session>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let next = safe_next(q.get("next").map(String::as_str));
    if session.is_some() {
        return see_other(next);
    }
    let (login_error, password_error) = match q.get("error").map(String::as_str) {
        Some("invalid") => (None, Some("Wrong login or password.")),
        Some("locked") => (
            Some("Too many failed logins for this login or address: wait a few minutes, then try again."),
            None,
        ),
        Some("form") => (
            Some("This login form expired or was not sent from this page: log in again."),
            None,
        ),
        _ => (None, None),
    };
    let status = match q.get("error").map(String::as_str) {
        Some("form") => StatusCode::FORBIDDEN,
        _ if login_error.is_some() || password_error.is_some() => StatusCode::UNAUTHORIZED,
        _ => StatusCode::OK,
    };
    let csrf = auth::login_csrf_token(&headers).unwrap_or_else(|| random_hex(32));
    let mut resp = respond(
        status,
        shell(
            "Log in",
            None,
            Nav::None,
            html! {
                section.card.narrow {
                    h1 { "Log in" }
                    p.subtle { "Manage the network firewalls of your servers." }
                    form method="post" action="/login" {
                        input type="hidden" name="next" value=(next);
                        input type="hidden" name=(CSRF_FORM_FIELD) value=(csrf);
                        (field("login", "Login", None, login_error, |id, err| html! {
                            input type="text" id=(id) name="login" autocomplete="username" required autofocus
                                aria-invalid=[err.map(|_| "true")] aria-describedby=[err];
                        }))
                        (field("password", "Password", None, password_error, |id, err| html! {
                            input type="password" id=(id) name="password" autocomplete="current-password" required
                                aria-invalid=[err.map(|_| "true")] aria-describedby=[err];
                        }))
                        button.btn type="submit" { "Log in" }
                    }
                }
            },
        ),
    );
    resp.headers_mut().append(
        header::SET_COOKIE,
        auth::login_csrf_cookie(&csrf, st.config.secure_cookies),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_panel() {
        assert_eq!(safe_next(Some("/firewalls/3")), "/firewalls/3");
        assert_eq!(safe_next(Some("//evil.example")), "/firewalls");
        assert_eq!(safe_next(Some("https://evil.example")), "/firewalls");
        assert_eq!(safe_next(Some("/\\evil")), "/firewalls");
        assert_eq!(safe_next(None), "/firewalls");
        assert_eq!(safe_next(Some("/")), "/");
        assert_eq!(safe_next(Some("/audit?x=1")), "/audit?x=1");
        // What a browser turns into //evil.example (tabs, newlines and CRs are
        // dropped anywhere, `\` reads as `/`, leading blanks are stripped).
        for bad in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/\r\n/evil.example",
            "\t//evil.example",
            " //evil.example",
            "/\\/evil.example",
            "\\/evil.example",
            "/ /evil.example",
            "/\u{0}/evil.example",
            "/\u{b}/evil.example",
            "/\u{a0}/evil.example",
            "/\u{3000}/evil.example",
            "/fire\twalls",
            "",
            "firewalls",
            "http:/evil.example",
        ] {
            assert_eq!(safe_next(Some(bad)), "/firewalls", "{bad:?}");
        }
    }
}
