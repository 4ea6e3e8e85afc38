//! Who is calling: API tokens, browser sessions, CSRF, password hashing and
//! the login rate limiter.
//!
//! ## Credentials
//!
//! - **API tokens** (`Authorization: Bearer pwc_…`): customer tokens (scope
//!   `read` = GET only, or `write`), admin tokens (`pwa_…`, provider
//!   operations) and edge tokens (`pwe_…`, one zone's sync endpoints). 256
//!   random bits, stored as SHA-256, shown once, revocable.
//! - **Browser sessions**: `POST /login` (form) or `POST /v1/auth/login`
//!   (JSON) checks the argon2 password hash and sets the
//!   [`SESSION_COOKIE`] cookie (`HttpOnly; SameSite=Lax; Path=/`, plus
//!   `Secure` when the panel is configured for HTTPS). A session of a user
//!   with a customer acts as that customer with write scope; a user without
//!   a customer is a provider operator (admin).
//!
//! ## CSRF
//!
//! Every session has a CSRF token ([`SessionInfo::csrf_token`]). A request
//! authenticated by the session cookie with a method other than
//! GET/HEAD/OPTIONS must carry it: JSON calls in the [`CSRF_HEADER`] header
//! (checked by the [`Principal`] extractor), HTML form posts in the
//! [`CSRF_FORM_FIELD`] field (the page handler checks it with
//! [`verify_csrf`] after parsing the form). Bearer-token requests need no
//! CSRF token: browsers never add that header by themselves.
//!
//! ## Login CSRF
//!
//! Before there is a session, `GET /login` sets the [`LOGIN_CSRF_COOKIE`]
//! cookie and puts the same random token in the form's [`CSRF_FORM_FIELD`];
//! `POST /login` needs both, equal (a cross-site form cannot read or set the
//! cookie). Both logins (`POST /login` and `POST /v1/auth/login`) also refuse
//! a request whose `Origin` (or, without one, `Referer`) names another origin
//! than the panel's own ([`check_same_origin`]), so another site cannot log a
//! victim into the attacker's account.
//!
//! ## Extractors for handlers
//!
//! - [`Principal`]: any authenticated caller (token or session), CSRF and
//!   read-only scope already enforced; 401/403 JSON errors otherwise.
//! - `Option<`[`Session`]`>` / [`Session`]: the browser session from the cookie,
//!   without CSRF check (for pages; check the form's token yourself).

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Actor, ActorKind, Scope, SessionInfo, TokenKind};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "portwall_session";
/// The header that carries the CSRF token on session-authenticated JSON calls.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field that carries the CSRF token on HTML form posts.
pub const CSRF_FORM_FIELD: &str = "csrf_token";
/// The cookie that carries the login form's CSRF token before there is a
/// session (see the module docs).
pub const LOGIN_CSRF_COOKIE: &str = "portwall_login_csrf";
/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A provider operator (admin token, or a session of a user without a customer).
    Admin { actor: Actor },
    /// A customer, through an API token or a session.
    Customer {
        customer_id: i64,
        scope: Scope,
        actor: Actor,
        session: Option<SessionInfo>,
    },
    /// An edge node of `zone`.
    Edge { zone: String, actor: Actor },
}

impl Principal {
    /// Who acts, for the audit log.
    pub fn actor(&self) -> &Actor {
        match self {
            Principal::Admin { actor }
            | Principal::Customer { actor, .. }
            | Principal::Edge { actor, .. } => actor,
        }
    }

    /// The customer this caller acts for; admins and edges get 403.
    pub fn customer(&self) -> Result<(i64, &Actor), ApiError> {
        match self {
            Principal::Customer {
                customer_id, actor, ..
            } => Ok((*customer_id, actor)),
            Principal::Admin { .. } => Err(ApiError::forbidden(
                Some("Authorization"),
                "this endpoint acts for a customer: use a customer token or session",
            )),
            Principal::Edge { .. } => Err(ApiError::forbidden(
                Some("Authorization"),
                "edge tokens may only use the edge sync endpoints",
            )),
        }
    }

    /// Admin only; customers and edges get 403.
    pub fn admin(&self) -> Result<&Actor, ApiError> {
        match self {
            Principal::Admin { actor } => Ok(actor),
            _ => Err(ApiError::forbidden(
                Some("Authorization"),
                "this endpoint is for the provider: use an admin token",
            )),
        }
    }

    /// Whose objects the caller may see: `Some(customer)`, or None for an admin
    /// (everything). Edges get 403.
    pub fn tenant(&self) -> Result<Option<i64>, ApiError> {
        match self {
            Principal::Admin { .. } => Ok(None),
            Principal::Customer { customer_id, .. } => Ok(Some(*customer_id)),
            Principal::Edge { .. } => Err(ApiError::forbidden(
                Some("Authorization"),
                "edge tokens may only use the edge sync endpoints",
            )),
        }
    }

    /// The zone of an edge token; anything else gets 403.
    pub fn edge_zone(&self) -> Result<&str, ApiError> {
        match self {
            Principal::Edge { zone, .. } => Ok(zone),
            _ => Err(ApiError::forbidden(
                Some("Authorization"),
                "the sync endpoints need an edge token",
            )),
        }
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Compares secrets in constant time.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `token` (from a form or header) is this session's CSRF token.
pub fn verify_csrf(session: &SessionInfo, token: &str) -> bool {
    !token.is_empty() && constant_time_eq(session.csrf_token.as_bytes(), token.as_bytes())
}

/// The value of one cookie.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.trim().to_string())
        })
}

/// `Set-Cookie` for a new session.
pub fn session_cookie(secret: &str, ttl: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        ttl.as_secs()
    ))
    .expect("cookie is ASCII")
}

/// `Set-Cookie` that deletes the session cookie.
pub fn clear_session_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"
    ))
    .expect("cookie is ASCII")
}

/// `Set-Cookie` for the login form's CSRF token: sent back only to `/login`,
/// never to scripts, never with a cross-site request; an hour to log in.
pub fn login_csrf_cookie(token: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{LOGIN_CSRF_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}"
    ))
    .unwrap_or(HeaderValue::from_static(
        "portwall_login_csrf=; Path=/login",
    ))
}

/// `Set-Cookie` that deletes the login form's CSRF cookie (after a login).
pub fn clear_login_csrf_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{LOGIN_CSRF_COOKIE}=; Path=/login; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
    ))
    .expect("cookie is ASCII")
}

/// The login CSRF token the browser holds in [`LOGIN_CSRF_COOKIE`], when it
/// is one the panel could have made (64 hex digits).
pub fn login_csrf_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, LOGIN_CSRF_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a login form's token matches the browser's login CSRF cookie.
pub fn verify_login_csrf(headers: &HeaderMap, form_token: &str) -> bool {
    login_csrf_token(headers).is_some_and(|t| constant_time_eq(t.as_bytes(), form_token.as_bytes()))
}

/// Refuses (403, naming the header) a request that a browser sent from
/// another origin: its `Origin`, or without one its `Referer`, must be
/// `http://HOST` or `https://HOST` (any path after it in `Referer`) where
/// HOST is the request's own `Host` (host and port). `Origin: null` is
/// another origin. A request with neither header (a script, curl) passes:
/// browsers send `Origin` on every cross-site POST.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let (name, value) = match (headers.get(header::ORIGIN), headers.get(header::REFERER)) {
        (Some(o), _) => ("Origin", o),
        (None, Some(r)) => ("Referer", r),
        (None, None) => return Ok(()),
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let value = value.to_str().unwrap_or_default();
    let origin = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    if !host.is_empty() && origin.is_some_and(|o| o.eq_ignore_ascii_case(host)) {
        return Ok(());
    }
    Err(ApiError::forbidden(
        Some(name),
        format!(
            "this request comes from another site ({name}: {value}); log in from the panel's own page"
        ),
    ))
}

/// The peer address of the request, when the server recorded it.
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// What a browser session may do: a customer with write scope, or (a user
/// without a customer) a provider operator. Used by the API and the pages.
pub(crate) fn principal_of_session(s: SessionInfo) -> Principal {
    let kind = ActorKind::User;
    match s.customer_id {
        None => Principal::Admin {
            actor: Actor {
                kind,
                id: Some(s.user_id),
                customer_id: None,
                label: format!("user {}", s.login),
            },
        },
        Some(c) => Principal::Customer {
            customer_id: c,
            scope: Scope::Write,
            actor: Actor {
                kind,
                id: Some(s.user_id),
                customer_id: Some(c),
                label: format!("user {}", s.login),
            },
            session: Some(s),
        },
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Principal, ApiError> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let value = value
                .to_str()
                .map_err(|_| ApiError::unauthorized("Authorization is not ASCII"))?;
            let secret = match value.split_once(' ') {
                Some((scheme, secret)) if scheme.eq_ignore_ascii_case("bearer") => secret.trim(),
                _ => return Err(ApiError::unauthorized("use Authorization: Bearer TOKEN")),
            };
            let token = state
                .store
                .verify_token(secret)
                .await?
                .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))?;
            if token.scope == Scope::Read && !is_safe(&parts.method) {
                return Err(ApiError::forbidden(
                    Some("Authorization"),
                    "this token is read-only: use a token with write scope",
                ));
            }
            return Ok(match token.kind {
                TokenKind::Admin => Principal::Admin {
                    actor: Actor {
                        kind: ActorKind::Admin,
                        id: Some(token.id),
                        customer_id: None,
                        label: format!("admin token '{}' (#{})", token.name, token.id),
                    },
                },
                TokenKind::Customer => {
                    let customer_id = token
                        .customer_id
                        .ok_or_else(|| ApiError::unauthorized("token has no customer"))?;
                    Principal::Customer {
                        customer_id,
                        scope: token.scope,
                        actor: Actor {
                            kind: ActorKind::Token,
                            id: Some(token.id),
                            customer_id: Some(customer_id),
                            label: format!("token '{}' (#{})", token.name, token.id),
                        },
                        session: None,
                    }
                }
                TokenKind::Edge => Principal::Edge {
                    zone: token.zone.clone().unwrap_or_default(),
                    actor: Actor {
                        kind: ActorKind::Edge,
                        id: Some(token.id),
                        customer_id: None,
                        label: format!("edge token '{}' (#{})", token.name, token.id),
                    },
                },
            });
        }
        if let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) {
            let session = state
                .store
                .session(&secret)
                .await?
                .ok_or_else(|| ApiError::unauthorized("the session expired: log in again"))?;
            if !is_safe(&parts.method) {
                let sent = parts
                    .headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !verify_csrf(&session, sent) {
                    return Err(ApiError::forbidden(
                        Some("X-CSRF-Token"),
                        "a session-authenticated change needs the session's CSRF token in the X-CSRF-Token header",
                    ));
                }
            }
            return Ok(principal_of_session(session));
        }
        Err(ApiError::unauthorized(
            "missing credentials: send Authorization: Bearer TOKEN",
        ))
    }
}

/// The browser session of the request (from the cookie), without any CSRF
/// check: for page handlers, which check the form's CSRF field themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session(pub SessionInfo);

impl OptionalFromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Session>, ApiError> {
        match cookie(&parts.headers, SESSION_COOKIE) {
            Some(secret) => Ok(state.store.session(&secret).await?.map(Session)),
            None => Ok(None),
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Session, ApiError> {
        <Session as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state)
            .await?
            .ok_or_else(|| ApiError::unauthorized("not logged in"))
    }
}

/// Hashes a password with argon2id (default parameters) on a blocking thread.
pub async fn hash_password(password: &str) -> Result<String, ApiError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::unprocessable(
            "password",
            format!("at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(pw.as_bytes())
            .map(|h| h.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// Checks a password against an argon2 PHC string on a blocking thread.
pub async fn verify_password(password: &str, hash: &str) -> bool {
    let (pw, hash) = (password.to_string(), hash.to_string());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A hash to verify against when the login does not exist, so that unknown
/// and known logins take the same time.
pub(crate) fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        Argon2::default()
            .hash_password(b"portwall-dummy-password")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// How many failed logins are allowed within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub window: Duration,
    pub per_ip: usize,
    pub per_login: usize,
}

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        LoginLimits {
            window: Duration::from_secs(300),
            per_ip: 20,
            per_login: 5,
        }
    }
}

/// Counts failed logins per client IP and per login name, in memory (per
/// panel replica). Once a key reached its limit within the window, further
/// attempts are refused (429) before the password is even checked.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    limits: LoginLimits,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> LoginLimiter {
        LoginLimiter {
            limits,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(ip: Option<IpAddr>, login: &str) -> [(String, bool); 2] {
        [
            (
                format!("ip:{}", ip.map(|i| i.to_string()).unwrap_or_default()),
                true,
            ),
            (format!("login:{}", login.to_lowercase()), false),
        ]
    }

    /// `Err(retry_after)` when the IP or the login is locked out.
    pub fn check(&self, ip: Option<IpAddr>, login: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for (key, is_ip) in Self::keys(ip, login) {
            let limit = if is_ip {
                self.limits.per_ip
            } else {
                self.limits.per_login
            };
            if let Some(q) = map.get_mut(&key) {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > self.limits.window)
                {
                    q.pop_front();
                }
                if q.len() >= limit {
                    let oldest = *q.front().expect("non-empty");
                    return Err(self
                        .limits
                        .window
                        .saturating_sub(now.duration_since(oldest))
                        .max(Duration::from_secs(1)));
                }
            }
        }
        Ok(())
    }

    pub fn failure(&self, ip: Option<IpAddr>, login: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            map.clear();
        }
        for (key, _) in Self::keys(ip, login) {
            map.entry(key).or_default().push_back(Instant::now());
        }
    }

    pub fn success(&self, login: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&format!("login:{}", login.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_locks_out_after_the_limit_and_success_clears_the_login() {
        let l = LoginLimiter::new(LoginLimits {
            window: Duration::from_secs(60),
            per_ip: 4,
            per_login: 2,
        });
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        assert!(l.check(ip, "alice").is_ok());
        l.failure(ip, "alice");
        assert!(l.check(ip, "alice").is_ok());
        l.failure(ip, "alice");
        assert!(l.check(ip, "alice").is_err());
        assert!(l.check(ip, "bob").is_ok());
        l.success("alice");
        assert!(l.check(ip, "alice").is_ok());
        l.failure(ip, "bob");
        l.failure(ip, "carol");
        assert!(l.check(ip, "dave").is_err(), "the IP reached 4 failures");
    }

    #[test]
    fn cookies_and_csrf() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; portwall_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        let s = SessionInfo {
            id: 1,
            user_id: 1,
            login: "a".into(),
            customer_id: None,
            csrf_token: "tok".into(),
            expires_at: String::new(),
        };
        assert!(verify_csrf(&s, "tok"));
        assert!(!verify_csrf(&s, "tok2"));
        assert!(!verify_csrf(&s, ""));
    }

    #[test]
    fn login_csrf_cookie_and_same_origin() {
        let token = "ab".repeat(32);
        let mut h = HeaderMap::new();
        assert!(!verify_login_csrf(&h, &token), "no cookie");
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{LOGIN_CSRF_COOKIE}={token}")).unwrap(),
        );
        assert!(verify_login_csrf(&h, &token));
        assert!(!verify_login_csrf(&h, ""));
        assert!(!verify_login_csrf(&h, &"cd".repeat(32)));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("portwall_login_csrf=short"),
        );
        assert!(
            !verify_login_csrf(&h, "short"),
            "not a token the panel makes"
        );

        let with = |pairs: &[(header::HeaderName, &'static str)]| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("panel.example:8443"));
            for (k, v) in pairs {
                h.insert(k.clone(), HeaderValue::from_static(v));
            }
            check_same_origin(&h).map_err(|e| e.field.unwrap_or_default())
        };
        assert_eq!(with(&[]), Ok(()));
        assert_eq!(
            with(&[(header::ORIGIN, "https://panel.example:8443")]),
            Ok(())
        );
        assert_eq!(
            with(&[(header::REFERER, "http://panel.example:8443/login?next=/x")]),
            Ok(())
        );
        for (k, v) in [
            (header::ORIGIN, "https://evil.example"),
            (header::ORIGIN, "https://panel.example"),
            (header::ORIGIN, "https://panel.example:8443.evil.example"),
            (header::ORIGIN, "null"),
        ] {
            assert_eq!(with(&[(k, v)]), Err("Origin".to_string()), "{v}");
        }
        assert_eq!(
            with(&[(header::REFERER, "https://evil.example/panel.example:8443")]),
            Err("Referer".to_string())
        );
        // Origin decides when both are there.
        assert_eq!(
            with(&[
                (header::ORIGIN, "https://evil.example"),
                (header::REFERER, "https://panel.example:8443/login")
            ]),
            Err("Origin".to_string())
        );
    }
}
