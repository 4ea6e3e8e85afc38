//! Who is asking, and what they posted.
//!
//! - [`Viewer`]: the customer behind the session cookie. Without a valid
//!   session the page answers 303 to `/login?next=PATH`; a provider
//!   operator's session (a user without a customer) gets a 403 page, since
//!   these pages act for one customer.
//! - [`Posted`]: a form post: the [`Viewer`] plus the form's fields, with the
//!   form's `csrf_token` already checked against the session (403 page
//!   otherwise). Every state-changing page handler takes it, so none can skip
//!   the check.
//! - [`FormData`]: the posted fields, in order, repeated names allowed.
//! - [`parse_id`] and [`parse_revision`]: ids from paths, the firewall
//!   revision a form was rendered at.

use super::errors;
use crate::auth::{self, verify_csrf, Principal, Session, CSRF_FORM_FIELD};
use crate::state::AppState;
use crate::store::{Actor, SessionInfo};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::Form;

/// The logged-in customer a page acts for.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub session: SessionInfo,
    pub customer: i64,
    /// Who acts, for the audit log (`user LOGIN`), as in the JSON API.
    pub actor: Actor,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Viewer, Response> {
        let session =
            <Session as OptionalFromRequestParts<AppState>>::from_request_parts(parts, st)
                .await
                .map_err(|e| errors::api_error(None, e))?;
        let Some(Session(session)) = session else {
            return Err(to_login(parts));
        };
        match auth::principal_of_session(session.clone()) {
            Principal::Customer {
                customer_id,
                actor,
                session: Some(session),
                ..
            } => Ok(Viewer {
                session,
                customer: customer_id,
                actor,
            }),
            Principal::Admin { .. } => Err(errors::operator(&session)),
            _ => Err(errors::page(
                None,
                StatusCode::FORBIDDEN,
                "Not available",
                "This login cannot use the web pages.",
            )),
        }
    }
}

/// 303 to the login page, coming back here (for a GET) afterwards.
fn to_login(parts: &Parts) -> Response {
    let next = if parts.method == Method::GET {
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    } else {
        "/"
    };
    super::layout::see_other(&format!("/login?next={}", encode_query_value(next)))
}

/// Percent-encodes a query-string value (everything but RFC 3986 unreserved
/// characters and `/`).
pub fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The fields of a posted form, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// The first value of a field, or "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    /// Whether the field was sent at all (for checkboxes).
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// A form post by the logged-in customer, CSRF token verified.
#[derive(Debug, Clone)]
pub struct Posted {
    pub viewer: Viewer,
    pub form: FormData,
}

impl FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Posted, Response> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, st).await?;
        let req = Request::from_parts(parts, body);
        let Form(pairs) = Form::<Vec<(String, String)>>::from_request(req, st)
            .await
            .map_err(|rej| {
                errors::page(
                    Some(&viewer.session),
                    rej.status(),
                    "Bad form",
                    &format!("The form could not be read: {}", rej.body_text()),
                )
            })?;
        let form = FormData(pairs);
        if !verify_csrf(&viewer.session, form.get(CSRF_FORM_FIELD)) {
            return Err(errors::csrf(&viewer.session));
        }
        Ok(Posted { viewer, form })
    }
}

/// An id from the path; None when it is not a positive whole number (the
/// caller answers 404, as for an id that does not exist).
pub fn parse_id(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|n| *n > 0)
}

/// The firewall revision a form was rendered at (its `revision` field), for
/// the same check as `If-Match`: None when the form has none; a value that
/// does not parse can never match, so the change is refused as stale.
pub fn parse_revision(form: &FormData) -> Option<u64> {
    match form.get("revision").trim() {
        "" => None,
        v => Some(v.parse().unwrap_or(u64::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query_value("/firewalls/3"), "/firewalls/3");
        assert_eq!(
            encode_query_value("/audit?cursor=5&x=a b"),
            "/audit%3Fcursor%3D5%26x%3Da%20b"
        );
    }

    #[test]
    fn ids_and_revisions() {
        assert_eq!(parse_id("12"), Some(12));
        assert_eq!(parse_id("0"), None);
        assert_eq!(parse_id("-3"), None);
        assert_eq!(parse_id("x"), None);
        let f = |v: &str| FormData(vec![("revision".into(), v.into())]);
        assert_eq!(parse_revision(&f("7")), Some(7));
        assert_eq!(parse_revision(&f("")), None);
        assert_eq!(parse_revision(&FormData::default()), None);
        assert_eq!(parse_revision(&f("r7")), Some(u64::MAX));
    }

    #[test]
    fn form_fields() {
        let f = FormData(vec![
            ("a".into(), "1".into()),
            ("a".into(), "2".into()),
            ("on".into(), "".into()),
        ]);
        assert_eq!(f.get("a"), "1");
        assert_eq!(f.get("b"), "");
        assert!(f.has("on"));
        assert!(!f.has("off"));
    }
}
