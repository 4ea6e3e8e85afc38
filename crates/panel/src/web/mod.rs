//! The web pages: what a customer uses in a browser to manage network
//! firewalls. Server-rendered HTML, no JavaScript build step.
//!
//! ## Design
//!
//! - **One source of truth.** Every page reads and writes through the same
//!   tenant-scoped [`crate::store::Store`] methods as the JSON API, with the
//!   customer id of the session; rules are built with the API's
//!   [`crate::api::inputs::RuleInput`] / [`crate::api::inputs::RulePatch`], so
//!   presets, ports, sources and their validation errors are the API's, word
//!   for word. Another customer's firewall is "not found" here exactly as in
//!   the API (the store says so, not this module).
//! - **Sessions and CSRF.** [`context::Viewer`] is the customer behind the
//!   session cookie (no session: 303 to `/login?next=...`; a provider
//!   operator's session: 403 page). Every form is a `POST` extracted with
//!   [`context::Posted`], which also checks the form's `csrf_token` against the
//!   session before the handler runs, so no handler can forget it. Login and
//!   logout post to the existing `POST /login` and `POST /logout`
//!   ([`crate::api`]'s session module).
//! - **Post/redirect/get.** A successful change answers 303 back to the page
//!   with a fixed message code (`?done=rule-added`); a failed one re-renders
//!   the page with the posted values kept and the error next to the field the
//!   store or model named ([`feedback`]), with the API's status code (422,
//!   409, 412). Firewall forms carry the revision the page showed, so a
//!   change based on a stale page is refused (412) as with `If-Match`.
//! - **Escaping.** All HTML comes from [`maud`] templates, which escape every
//!   interpolated value; nothing is concatenated into markup by hand.
//! - **Hardening.** One stylesheet and one small script, served from
//!   `/assets/`; a strict `Content-Security-Policy` (no inline script or
//!   style), `X-Frame-Options: DENY`, `nosniff`, and `Cache-Control: no-store`
//!   on every page (they carry CSRF tokens and customer data).
//!
//! ## Files
//!
//! - [`context`]: who is asking (session → customer), posted forms, ids.
//! - [`feedback`]: placing store/model errors next to form fields.
//! - [`layout`]: the page shell, navigation, and small widgets.
//! - [`errors`]: whole-page errors (404, 403, CSRF, 500).
//! - [`assets`]: the stylesheet and script.
//! - [`login`]: `/` and `/login`.
//! - [`firewalls`]: the firewall list, creation, the firewall page,
//!   enable/disable, settings, deletion.
//! - [`rules`]: adding, editing, enabling/disabling and deleting rules.
//! - [`assignments`]: assigning servers by id or label selector, unassigning.
//! - [`lists`]: IP lists: the Lists page, and the list page where a block
//!   of addresses and networks is pasted to replace the entries.
//! - [`servers`]: the customer's servers with their apply status.
//! - [`audit`]: the audit log.

pub mod assets;
pub mod assignments;
pub mod audit;
pub mod context;
pub mod errors;
pub mod feedback;
pub mod firewalls;
pub mod layout;
pub mod lists;
pub mod login;
pub mod rules;
pub mod servers;

use crate::state::AppState;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

/// The pages' Content-Security-Policy: only this panel's own stylesheet,
/// script and forms; no inline code, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The routes of the web pages, merged into [`crate::api::router`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(login::root))
        .route("/login", get(login::page))
        .route(assets::STYLE_PATH, get(assets::style))
        .route(assets::SCRIPT_PATH, get(assets::script))
        .route(assets::ICON_PATH, get(assets::icon))
        .route("/firewalls", get(firewalls::list).post(firewalls::create))
        .route("/firewalls/{id}", get(firewalls::show))
        .route(
            "/firewalls/{id}/enable",
            get(firewalls::back).post(firewalls::enable),
        )
        .route(
            "/firewalls/{id}/disable",
            get(firewalls::back).post(firewalls::disable),
        )
        .route(
            "/firewalls/{id}/settings",
            get(firewalls::back).post(firewalls::settings),
        )
        .route(
            "/firewalls/{id}/delete",
            get(firewalls::back).post(firewalls::delete),
        )
        .route(
            "/firewalls/{id}/rules",
            get(firewalls::back).post(rules::add),
        )
        .route(
            "/firewalls/{id}/rules/{rule_id}",
            get(rules::edit_page).post(rules::save),
        )
        .route(
            "/firewalls/{id}/rules/{rule_id}/toggle",
            post(rules::toggle),
        )
        .route(
            "/firewalls/{id}/rules/{rule_id}/delete",
            post(rules::delete),
        )
        .route(
            "/firewalls/{id}/assignments",
            get(firewalls::back).post(assignments::assign),
        )
        .route(
            "/firewalls/{id}/assignments/{server_id}/delete",
            post(assignments::unassign),
        )
        .route(
            "/firewalls/{id}/selectors/{selector_id}/delete",
            post(assignments::remove_selector),
        )
        .route("/lists", get(lists::list).post(lists::create))
        .route("/lists/{id}", get(lists::show))
        .route("/lists/{id}/entries", get(lists::back).post(lists::replace))
        .route("/lists/{id}/delete", get(lists::back).post(lists::delete))
        .route("/servers", get(servers::list))
        .route("/audit", get(audit::list))
        .layer(axum::middleware::map_response(security_headers))
}

/// Adds the hardening headers to every response of the pages.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
