//! The JSON REST API under `/v1`, and the router of the whole panel.
//!
//! Conventions (also in the OpenAPI document at `/v1/openapi.json`):
//!
//! - Authentication: `Authorization: Bearer TOKEN`, or the session cookie
//!   plus `X-CSRF-Token` on changes (see [`crate::auth`]).
//! - Errors: `{"error": {"field": "...", "message": "..."}}`; 400 for
//!   malformed JSON or query strings, 422 for invalid values (and limits), 404
//!   for objects that do not exist or belong to another customer, 409 for
//!   conflicts (a Dedicated server, a taken name), 412 for a stale
//!   `If-Match`, 413 for bodies over the limit (16 MiB by default).
//! - Unknown JSON fields are rejected.
//! - Lists take `limit` (1-1000, default 50) and `cursor` (the previous
//!   page's `next_cursor`) and return `{"items": [...], "next_cursor": ...}`.
//! - Firewalls and IP lists carry an `ETag` (`"r<revision>"`); every change
//!   of one honours `If-Match` and answers with the new `ETag`.
//!
//! [`router`] builds every route the panel serves; the web pages (to come)
//! are added by merging their routes into it.

mod audit;
mod contract;
mod customers;
mod edge;
mod firewalls;
pub mod inputs;
pub mod lists;
mod servers;
pub(crate) mod session;
mod tokens;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::store::{etag, Firewall, PageRequest};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_LIMIT: u32 = 1000;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "portwall panel",
        description = "The provider's network firewall: customers manage firewalls and assign them to their VPS/VDS; edges enforce them.\n\n\
Errors are `{\"error\": {\"field\": ..., \"message\": ...}}`. Lists are paginated with `limit` and `cursor`. \
Firewall reads return an `ETag`; send it back in `If-Match` to refuse (412) a change based on a stale read. \
Rules give the port as `\"22\"` or `\"8000-8100\"` (a JSON number is accepted too), or name a preset (`{\"preset\": \"SSH\"}`)."
    ),
    modifiers(&SecurityAddon),
    components(schemas(ErrorBody)),
    tags(
        (name = "customers", description = "Provider operations: customers and their web logins (admin token)."),
        (name = "servers", description = "Servers: registered by the provider, listed and labelled by their owner."),
        (name = "firewalls", description = "Network firewalls, rules and assignments (customer token or session)."),
        (name = "lists", description = "IP lists: named sets of IPv4 and IPv6 addresses and networks (customer token or session). At most 100,000 entries per list, 1,000,000 per customer, 100 lists per customer."),
        (name = "tokens", description = "API and edge tokens."),
        (name = "audit", description = "Who changed what, when."),
        (name = "auth", description = "Browser sessions."),
        (name = "edge", description = "The edge sync protocol (edge token); wire types in model::network::sync."),
        (name = "misc", description = "Presets and health.")
    )
)]
struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "Browser session from POST /login; changes also need the X-CSRF-Token header",
            ))),
        );
        edge::document_wire_types(openapi);
    }
}

/// The OpenAPI document of every `/v1` route, as served at
/// `/v1/openapi.json`.
pub fn openapi() -> serde_json::Value {
    document(&api_router().split_for_parts().1)
}

fn document(doc: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut value = serde_json::to_value(doc).unwrap_or_default();
    edge::link_wire_types(&mut value);
    contract::complete(&mut value);
    value
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(
            customers::create_customer,
            customers::list_customers
        ))
        .routes(routes!(
            customers::get_customer,
            customers::update_customer,
            customers::delete_customer
        ))
        .routes(routes!(customers::create_user, customers::list_users))
        .routes(routes!(customers::delete_user))
        .routes(routes!(servers::create_server, servers::list_servers))
        .routes(routes!(
            servers::get_server,
            servers::update_server,
            servers::delete_server
        ))
        .routes(routes!(servers::server_status))
        .routes(routes!(servers::server_policy))
        .routes(routes!(
            firewalls::create_firewall,
            firewalls::list_firewalls
        ))
        .routes(routes!(
            firewalls::get_firewall,
            firewalls::update_firewall,
            firewalls::delete_firewall
        ))
        .routes(routes!(firewalls::enable_firewall))
        .routes(routes!(firewalls::disable_firewall))
        .routes(routes!(
            firewalls::list_rules,
            firewalls::add_rule,
            firewalls::replace_rules
        ))
        .routes(routes!(firewalls::update_rule, firewalls::delete_rule))
        .routes(routes!(firewalls::assign))
        .routes(routes!(firewalls::unassign_server))
        .routes(routes!(firewalls::remove_selector))
        .routes(routes!(firewalls::firewall_status))
        .routes(routes!(lists::create_list, lists::list_lists))
        .routes(routes!(lists::get_list, lists::delete_list))
        .routes(routes!(
            lists::replace_entries,
            lists::add_entries,
            lists::remove_entries
        ))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(audit::audit_log))
        .routes(routes!(audit::presets))
        .routes(routes!(session::login_json))
        .routes(routes!(session::logout_json))
        .routes(routes!(session::current_session))
        .routes(routes!(edge::sync))
        .routes(routes!(edge::report))
}

/// Every route of the panel: the `/v1` API, `/v1/openapi.json`, `POST /login`
/// and `POST /logout` (forms), `/healthz`, `/readyz`, `/metrics`; JSON 404
/// for anything else.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_router().split_for_parts();
    let doc = Arc::new(document(&doc));
    let max_body = state.config.max_body_bytes;
    let router = api
        .route(
            "/v1/openapi.json",
            get(move || async move { Json(doc.as_ref().clone()) }),
        )
        .route("/login", post(session::login_form))
        .route("/logout", post(session::logout_form))
        .route("/healthz", get(crate::health::healthz))
        .route("/readyz", get(crate::health::readyz))
        .route("/metrics", get(crate::metrics::serve))
        .merge(crate::web::routes())
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                None,
                "no such endpoint; see /v1/openapi.json",
            )
        });
    // Inside the body limit and trace layers: counted by route template.
    let router = match state.metrics.clone() {
        Some(m) => router.layer(crate::metrics::TrackLayer(m)),
        None => router,
    };
    router
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(move |req, next| {
            read_unread_body(req, next, max_body)
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Reads what the handler left of the request body (a request refused before
/// its body was read: 401, 403, 404, ...) before the response goes out, so
/// that the connection stays usable for the client's next request (HTTP/1.1
/// keep-alive; otherwise the server would have to close it, the unread body
/// being in the way). Bounded: past `max_body` bytes or 10 s the response
/// says `Connection: close` instead.
async fn read_unread_body(req: Request, next: axum::middleware::Next, max_body: usize) -> Response {
    use futures::StreamExt;
    let (parts, body) = req.into_parts();
    let data = Arc::new(tokio::sync::Mutex::new(body.into_data_stream()));
    let stream = futures::stream::unfold(data.clone(), |data| async move {
        let chunk = data.lock().await.next().await;
        chunk.map(|c| (c, data))
    });
    let mut resp = next
        .run(Request::from_parts(
            parts,
            axum::body::Body::from_stream(stream),
        ))
        .await;
    let drained = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut rest = data.lock().await;
        let mut seen = 0usize;
        while let Some(chunk) = rest.next().await {
            match chunk {
                Ok(c) if seen + c.len() <= max_body => seen += c.len(),
                _ => return false,
            }
        }
        true
    })
    .await;
    if drained != Ok(true) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A JSON body: unknown fields rejected, errors naming the field
/// (`rules[3].port`), 413 over the size limit, 415 for another content type.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<ApiJson<T>, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            if !(ct.starts_with("application/json")
                || (ct.starts_with("application/") && ct.contains("+json")))
            {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    Some("Content-Type"),
                    "send application/json",
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some("body"),
                    "the request body is larger than the panel accepts (16 MiB by default)",
                )
            } else {
                ApiError::bad_request("body", rej.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses JSON with errors that name the field at fault: 400 for bytes that
/// are not JSON, 422 (naming the field, e.g. `rules[0].protocol`) for JSON
/// whose values do not fit (a number or a list where a word belongs, an
/// unknown field). The document is read whole first, so that a value of the
/// wrong kind is never mistaken for malformed JSON.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let document: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("body", format!("malformed JSON: {e}")))?;
    // Every body is an object: serde would read a struct from a list (its
    // fields in order), so `[null, null]` would pass as an empty patch.
    if document.is_array() {
        return Err(ApiError::unprocessable(
            "body",
            "expected a JSON object, got an array",
        ));
    }
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data
                if path.starts_with('[') && bytes.trim_ascii_start().starts_with(b"[") =>
            {
                ApiError::unprocessable("body", "expected a JSON object, got an array")
            }
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                let mut field = if path == "." { String::new() } else { path };
                for marker in ["unknown field `", "missing field `"] {
                    if let Some(rest) = msg.strip_prefix(marker) {
                        let name = rest.split('`').next().unwrap_or_default();
                        if !field.ends_with(name) {
                            field = if field.is_empty() {
                                name.to_string()
                            } else {
                                format!("{field}.{name}")
                            };
                        }
                    }
                }
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                ApiError::unprocessable(if field.is_empty() { "body" } else { &field }, msg)
            }
            _ => ApiError::bad_request("body", format!("malformed JSON: {inner}")),
        }
    })
}

/// The query string as a map, with typed getters whose errors name the
/// parameter. Unknown parameters are rejected by [`QueryMap::only`].
#[derive(Debug, Clone, Default)]
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<QueryMap, ApiError> {
        let mut map = HashMap::new();
        if let Some(q) = parts.uri.query() {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |s: &str| {
                    percent_decode(&s.replace('+', " ")).ok_or_else(|| {
                        ApiError::bad_request(k, "bad percent-encoding in the query string")
                    })
                };
                map.insert(decode(k)?, decode(v)?);
            }
        }
        Ok(QueryMap(map))
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl QueryMap {
    /// Rejects parameters not in `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<&QueryMap, ApiError> {
        if let Some(k) = self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::bad_request(
                k,
                format!(
                    "unknown query parameter '{k}'; accepted: {}",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(self)
    }
    /// `customer_id` for an admin (None: every customer's); a customer
    /// (`tenant` Some) sees only its own objects and gets 403 naming the
    /// parameter when it sends one, rather than having it silently ignored.
    pub fn customer_filter(&self, tenant: Option<i64>) -> Result<Option<i64>, ApiError> {
        match tenant {
            None => self.int("customer_id", 1, i64::MAX),
            Some(_) if self.0.contains_key("customer_id") => Err(ApiError::forbidden(
                Some("customer_id"),
                "customer_id is for the provider's admin tokens; a customer sees its own objects only",
            )),
            Some(c) => Ok(Some(c)),
        }
    }
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
    /// An integer parameter within `min..=max`.
    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::bad_request(
                    name,
                    format!("'{v}' is not a whole number in {min}-{max}"),
                )),
            },
        }
    }
    /// `limit` and `cursor`.
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = self
            .int("limit", 1, MAX_LIMIT as i64)?
            .unwrap_or(DEFAULT_LIMIT as i64) as u32;
        // The previous page's next_cursor: 0-18 digits, as the document says
        // (empty: the first page).
        let cursor = match self.str("cursor") {
            None | Some("") => None,
            Some(c) if c.len() <= 18 && c.bytes().all(|b| b.is_ascii_digit()) => c.parse().ok(),
            Some(c) => {
                return Err(ApiError::bad_request(
                    "cursor",
                    format!("'{c}' is not a cursor: send the previous page's next_cursor (digits)"),
                ))
            }
        };
        Ok(PageRequest { limit, cursor })
    }
}

/// A path parameter, with a JSON 400 naming it when it does not parse.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ApiPath<T>, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| ApiPath(t))
            .map_err(|e| ApiError::bad_request("path", e.body_text()))
    }
}

/// The `If-Match` precondition: None when absent or `*`, else the revision
/// the firewall (or IP list, under `/v1/lists/`) must be at. The header may
/// list several entity tags (RFC 9110, 13.1.1): it holds when any one names
/// the current revision, so for several tags the object's current revision
/// is read (the `id` path parameter, as the caller may see it) and is the
/// expectation when it is listed; the
/// change itself still checks it atomically. An unparseable or foreign tag
/// can never match, so a list without a match yields a revision that fails
/// with 412.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfMatch(pub Option<u64>);

/// The revisions named by an `If-Match` value: None for `*`, else one entry
/// per entity tag (`"r7"`, `W/"r7"`), u64::MAX for tags that name none.
fn if_match_revisions(v: &str) -> Option<Vec<u64>> {
    let v = v.trim();
    if v == "*" {
        return None;
    }
    Some(
        v.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                let t = t.strip_prefix("W/").unwrap_or(t);
                t.strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .unwrap_or(t)
                    .strip_prefix('r')
                    .and_then(|n| n.parse::<u64>().ok())
                    .filter(|n| *n != u64::MAX)
                    .unwrap_or(u64::MAX)
            })
            .collect(),
    )
}

impl FromRequestParts<AppState> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<IfMatch, ApiError> {
        let mut tags = None;
        for v in parts.headers.get_all(header::IF_MATCH) {
            match if_match_revisions(v.to_str().unwrap_or_default()) {
                None => return Ok(IfMatch(None)),
                Some(t) => tags.get_or_insert_with(Vec::new).extend(t),
            }
        }
        let Some(mut tags) = tags else {
            return Ok(IfMatch(None));
        };
        tags.sort_unstable();
        tags.dedup();
        if tags.len() <= 1 {
            return Ok(IfMatch(Some(tags.first().copied().unwrap_or(u64::MAX))));
        }
        // Several tags: the one that names the current revision, if any.
        let current = async {
            let principal = crate::auth::Principal::from_request_parts(parts, st)
                .await
                .ok()?;
            let customer = principal.customer().ok()?.0;
            let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, st)
                .await
                .ok()?;
            let id = params.get("id")?.parse::<i64>().ok()?;
            if parts.uri.path().starts_with("/v1/lists/") {
                return st.store.list_revision(customer, id).await.ok();
            }
            st.store
                .firewall(customer, id)
                .await
                .ok()
                .map(|fw| fw.revision)
        }
        .await;
        Ok(IfMatch(Some(
            current.filter(|c| tags.contains(c)).unwrap_or(tags[0]),
        )))
    }
}

/// A firewall response with its `ETag`.
pub(crate) fn firewall_response<T: serde::Serialize>(
    status: StatusCode,
    fw: &Firewall,
    body: &T,
) -> Response {
    etag_response(status, fw.revision, body)
}

/// A response with the `ETag` of `revision` (a firewall's or a list's).
pub(crate) fn etag_response<T: serde::Serialize>(
    status: StatusCode,
    revision: u64,
    body: &T,
) -> Response {
    let mut resp = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(revision)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}
