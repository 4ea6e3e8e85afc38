//! Password login and browser sessions: `POST /login` and `POST /logout`
//! (HTML forms), `POST /v1/auth/login`, `POST /v1/auth/logout` and
//! `GET /v1/auth/session` (JSON).

use super::ApiJson;
use crate::auth::{
    self, clear_session_cookie, session_cookie, verify_csrf, verify_password, Session, CSRF_HEADER,
};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::store::SessionInfo;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use std::net::IpAddr;
use utoipa::ToSchema;

/// The client's IP address, for the login rate limiter.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientIp, ApiError> {
        Ok(ClientIp(auth::client_ip(parts)))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub login: String,
    pub password: String,
}

/// The HTML login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub login: String,
    pub password: String,
    /// Where to go after logging in (a path on this panel).
    pub next: Option<String>,
    /// The login CSRF token `GET /login` put in the form and in its cookie.
    pub csrf_token: Option<String>,
}

/// Checks the password (rate-limited per IP and per login) and opens a session.
pub async fn login(
    st: &AppState,
    ip: Option<IpAddr>,
    login: &str,
    password: &str,
) -> Result<(String, SessionInfo), ApiError> {
    if let Err(retry) = st.limiter.check(ip, login) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            Some("login"),
            format!("too many failed logins; try again in {} s", retry.as_secs()),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(retry.as_secs())));
    }
    let user = match st.store.user_credentials(login).await? {
        Some((user, hash)) => verify_password(password, &hash).await.then_some(user),
        None => {
            verify_password(password, auth::dummy_hash()).await;
            None
        }
    };
    match user {
        Some(user) => {
            st.limiter.success(login);
            Ok(st
                .store
                .create_session(&user, st.config.session_ttl.as_millis() as i64)
                .await?)
        }
        None => {
            st.limiter.failure(ip, login);
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                Some("password"),
                "wrong login or password",
            ))
        }
    }
}

/// Where to go after logging in: `next` when it is a path on this panel
/// (never another site), else `fallback`. The web pages use it too.
///
/// Browsers clean a URL before they follow it: they drop tabs, newlines and
/// carriage returns anywhere, strip leading spaces and control characters,
/// and read `\` as `/`; so `/<TAB>/evil.example` and `/\evil.example` both
/// become `//evil.example`, another site. So `next` must be a single `/`
/// followed by nothing or by a character that is not `/`, `\`, whitespace or
/// a control character, with no control character and no `\` anywhere: then
/// the browser's cleanup leaves it as it is.
pub(crate) fn safe_next<'a>(next: Option<&'a str>, fallback: &'a str) -> &'a str {
    match next {
        Some(n) if is_local_path(n) => n,
        _ => fallback,
    }
}

fn is_local_path(n: &str) -> bool {
    let Some(rest) = n.strip_prefix('/') else {
        return false;
    };
    let second_ok = match rest.chars().next() {
        None => true,
        Some(c) => c != '/' && c != '\\' && !c.is_whitespace() && !c.is_control(),
    };
    second_ok && !n.contains('\\') && !n.chars().any(char::is_control)
}

fn redirect(to: &str, cookie: Option<HeaderValue>) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
    );
    if let Some(c) = cookie {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

/// `POST /login` (form): 303 to `next` with the session cookie, or 303 to
/// `/login?error=invalid` (`error=locked` when rate-limited, `error=form`
/// when the form's CSRF token does not match the login CSRF cookie); 403
/// when the form was posted from another site (see [`auth`]'s Login CSRF).
pub async fn login_form(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(e) = auth::check_same_origin(&headers) {
        return e.into_response();
    }
    if !auth::verify_login_csrf(&headers, form.csrf_token.as_deref().unwrap_or_default()) {
        let next = safe_next(form.next.as_deref(), "/");
        return redirect(
            &format!(
                "/login?error=form&next={}",
                crate::web::context::encode_query_value(next)
            ),
            None,
        );
    }
    match login(&st, ip, form.login.trim(), &form.password).await {
        Ok((secret, _)) => {
            let mut resp = redirect(
                safe_next(form.next.as_deref(), "/"),
                Some(session_cookie(
                    &secret,
                    st.config.session_ttl,
                    st.config.secure_cookies,
                )),
            );
            resp.headers_mut().append(
                header::SET_COOKIE,
                auth::clear_login_csrf_cookie(st.config.secure_cookies),
            );
            resp
        }
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
            redirect("/login?error=locked", None)
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => redirect("/login?error=invalid", None),
        Err(e) => e.into_response(),
    }
}

/// The logout form's fields.
#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    pub csrf_token: String,
}

/// `POST /logout` (form with `csrf_token`): ends the session, 303 to `/login`.
pub async fn logout_form(
    State(st): State<AppState>,
    session: Option<Session>,
    Form(form): Form<LogoutForm>,
) -> Result<Response, ApiError> {
    let Some(Session(s)) = session else {
        return Ok(redirect(
            "/login",
            Some(clear_session_cookie(st.config.secure_cookies)),
        ));
    };
    if !verify_csrf(&s, &form.csrf_token) {
        return Err(ApiError::forbidden(
            Some("csrf_token"),
            "the form's CSRF token does not match the session",
        ));
    }
    st.store.delete_session(s.id).await?;
    Ok(redirect(
        "/login",
        Some(clear_session_cookie(st.config.secure_cookies)),
    ))
}

/// Log in with a password: sets the session cookie and returns the session,
/// with the CSRF token to send as `X-CSRF-Token` on changes.
///
/// A browser request from another site (its `Origin` or `Referer` names
/// another origin than the panel's) gets 403.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionInfo), (status = 401, body = ErrorBody), (status = 403, description = "sent from another site", body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login_json(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    auth::check_same_origin(&headers)?;
    let (secret, session) = login(&st, ip, body.login.trim(), &body.password).await?;
    let mut resp = Json(session).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&secret, st.config.session_ttl, st.config.secure_cookies),
    );
    Ok(resp)
}

/// End the current session (needs `X-CSRF-Token`).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = [])))]
pub async fn logout_json(
    State(st): State<AppState>,
    Session(s): Session,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !verify_csrf(&s, sent) {
        return Err(ApiError::forbidden(
            Some("X-CSRF-Token"),
            "send the session's CSRF token in X-CSRF-Token",
        ));
    }
    st.store.delete_session(s.id).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        clear_session_cookie(st.config.secure_cookies),
    );
    Ok(resp)
}

/// The current session (login, customer, CSRF token).
#[utoipa::path(get, path = "/v1/auth/session", tag = "auth", responses((status = 200, body = SessionInfo), (status = 401, body = ErrorBody)),
    security(("session" = [])))]
pub async fn current_session(Session(s): Session) -> Json<SessionInfo> {
    Json(s)
}
