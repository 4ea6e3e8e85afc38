//! The pages' one stylesheet, one small script and the icon, compiled into the binary
//! and served from `/assets/` (external files, so the Content-Security-Policy
//! can forbid inline code).
//!
//! The script only improves the forms: it asks before deleting, and greys out
//! protocol and port while a preset is chosen. Every page works without it.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

pub const STYLE_PATH: &str = "/assets/style.css";
pub const SCRIPT_PATH: &str = "/assets/app.js";
pub const ICON_PATH: &str = "/assets/favicon.svg";

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");
const ICON: &str = include_str!("assets/favicon.svg");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// `GET /assets/style.css`
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /assets/app.js`
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /assets/favicon.svg`
pub async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}
