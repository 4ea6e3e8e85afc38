//! The page shell (header, navigation, log-out button) and the small pieces
//! every page uses: status pills, form fields with their error, one-button
//! forms, messages. Everything is a [`maud`] template, so every value is
//! escaped.

use super::assets;
use super::feedback::Feedback;
use crate::auth::CSRF_FORM_FIELD;
use crate::store::{ApplyState, FirewallStatus, ServerStatus, SessionInfo};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Firewalls,
    Lists,
    Servers,
    Audit,
    None,
}

/// A whole HTML page.
pub fn page(title: &str, session: Option<&SessionInfo>, nav: Nav, content: Markup) -> Markup {
    let item = |href: &str, label: &str, this: Nav| {
        html! {
            a href=(href) aria-current=[(nav == this).then_some("page")] { (label) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · portwall" }
                link rel="icon" type="image/svg+xml" href=(assets::ICON_PATH);
                link rel="stylesheet" href=(assets::STYLE_PATH);
                script src=(assets::SCRIPT_PATH) defer {}
            }
            body {
                header.topbar {
                    div.wrap.topbar-inner {
                        a.brand href="/" { span.brand-mark { "▍" } "portwall" }
                        @if let Some(s) = session {
                            @if s.customer_id.is_some() {
                                nav.mainnav aria-label="Main" {
                                    (item("/firewalls", "Firewalls", Nav::Firewalls))
                                    (item("/lists", "Lists", Nav::Lists))
                                    (item("/servers", "Servers", Nav::Servers))
                                    (item("/audit", "Audit log", Nav::Audit))
                                }
                            }
                            div.whoami {
                                span.login { (s.login) }
                                form.inline method="post" action="/logout" {
                                    (csrf(s))
                                    button.linkish type="submit" { "Log out" }
                                }
                            }
                        }
                    }
                }
                main.wrap { (content) }
                footer.wrap.footer { "portwall · network firewall" }
            }
        }
    }
}

/// A page response with its status; never cached (pages carry CSRF tokens
/// and customer data).
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut resp = (status, markup).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// 303 See Other to a path of this panel.
pub fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
    );
    resp
}

/// The session's CSRF token as a hidden form field.
pub fn csrf(session: &SessionInfo) -> Markup {
    html! { input type="hidden" name=(CSRF_FORM_FIELD) value=(session.csrf_token); }
}

/// A form that is just one button (enable, delete, ...). `confirm` asks
/// first (in `app.js`); `hidden` are extra fields.
pub fn button_form(
    session: &SessionInfo,
    action: &str,
    label: &str,
    class: &str,
    hidden: &[(&str, String)],
    confirm: Option<&str>,
) -> Markup {
    let classes = format!("btn {class}");
    let classes = classes.trim_end();
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf(session))
            @for (name, value) in hidden {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" class=(classes) { (label) }
        }
    }
}

/// A labelled input with its hint and its error. `control` gets the input's
/// id and, when there is an error, the id of its message (for
/// `aria-invalid` / `aria-describedby`).
pub fn field(
    id: &str,
    label: &str,
    hint: Option<&str>,
    error: Option<&str>,
    control: impl FnOnce(&str, Option<&str>) -> Markup,
) -> Markup {
    field_of(false, id, label, hint, error, control)
}

/// A [`field`] that takes more room in a row of fields.
pub fn wide_field(
    id: &str,
    label: &str,
    hint: Option<&str>,
    error: Option<&str>,
    control: impl FnOnce(&str, Option<&str>) -> Markup,
) -> Markup {
    field_of(true, id, label, hint, error, control)
}

fn field_of(
    wide: bool,
    id: &str,
    label: &str,
    hint: Option<&str>,
    error: Option<&str>,
    control: impl FnOnce(&str, Option<&str>) -> Markup,
) -> Markup {
    html! {
        div.field.wide[wide].has-error[error.is_some()] {
            label for=(id) { (label) }
            (control(id, error.map(|_| error_id(id)).as_deref()))
            @if let Some(h) = hint {
                p.hint { (h) }
            }
            @if let Some(e) = error {
                p.field-error id=(error_id(id)) role="alert" { (e) }
            }
        }
    }
}

/// The id of a field's error message.
pub fn error_id(field_id: &str) -> String {
    format!("{field_id}-error")
}

/// A text input for [`field`].
pub fn text_input(
    id: &str,
    name: &str,
    value: &str,
    placeholder: Option<&str>,
    described_by: Option<&str>,
) -> Markup {
    html! {
        input type="text" id=(id) name=(name) value=(value) placeholder=[placeholder]
            aria-invalid=[described_by.map(|_| "true")] aria-describedby=[described_by];
    }
}

/// Messages above a form or page: errors (`role=alert`) or confirmations.
pub fn messages(fb: &Feedback, form: &str, fields: &[&str]) -> Markup {
    html! {
        @for m in fb.above(form, fields) {
            div.notice.error role="alert" { (m) }
        }
    }
}

/// The confirmation of the last change, and a page-level banner.
pub fn flash(fb: &Feedback) -> Markup {
    html! {
        @if let Some(m) = &fb.flash {
            div.notice.ok role="status" { (m) }
        }
        @if fb.form.is_none() {
            @if let Some(m) = &fb.banner {
                div.notice.error role="alert" { (m) }
            }
        }
    }
}

/// `active` / `inactive`.
pub fn firewall_pill(status: FirewallStatus) -> Markup {
    match status {
        FirewallStatus::Active => html! { span.pill.ok { "active" } },
        FirewallStatus::Inactive => html! { span.pill.off { "inactive" } },
    }
}

/// `applied` / `pending` / `failed: REASON`, as the API's status endpoints
/// say it.
pub fn apply_pill(s: &ServerStatus) -> Markup {
    match s.state {
        ApplyState::Applied => html! { span.pill.ok title=(s.status) { "applied" } },
        ApplyState::Pending => html! { span.pill.warn title=(s.status) { "pending" } },
        ApplyState::Failed => html! {
            span.pill.bad { "failed" }
            @if let Some(r) = &s.reason { " " span.reason { (r) } }
        },
    }
}

/// `2025-01-02T03:04:05.678Z` → `2025-01-02 03:04:05 UTC`.
pub fn when(rfc3339: &str) -> String {
    let s = rfc3339.replacen('T', " ", 1);
    let s = s.split('.').next().unwrap_or(&s).trim_end_matches('Z');
    format!("{s} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionInfo {
        SessionInfo {
            id: 1,
            user_id: 1,
            login: "<alice>".into(),
            customer_id: Some(1),
            csrf_token: "tok\"en".into(),
            expires_at: String::new(),
        }
    }

    #[test]
    fn user_data_is_escaped() {
        let html = page(
            "<script>x</script>",
            Some(&session()),
            Nav::Firewalls,
            html! { p { ("a & b") } },
        )
        .into_string();
        assert!(!html.contains("<script>x</script>"), "{html}");
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("&lt;alice&gt;"));
        assert!(html.contains("value=\"tok&quot;en\""));
        assert!(html.contains("a &amp; b"));
        assert!(html.contains("aria-current=\"page\""));
    }

    #[test]
    fn fields_show_their_error() {
        let html = field("rule-port", "Port", None, Some("bad port"), |id, err| {
            text_input(id, "port", "0", None, err)
        })
        .into_string();
        assert!(html.contains("class=\"field has-error\""), "{html}");
        assert!(
            html.contains("aria-describedby=\"rule-port-error\""),
            "{html}"
        );
        assert!(
            html.contains("id=\"rule-port-error\" role=\"alert\">bad port</p>"),
            "{html}"
        );
        let html = field("rule-port", "Port", None, None, |id, err| {
            text_input(id, "port", "22", None, err)
        })
        .into_string();
        assert!(!html.contains("aria-invalid"), "{html}");
    }

    #[test]
    fn button_forms_carry_their_classes_and_token() {
        let html = button_form(
            &session(),
            "/firewalls/1/delete",
            "Delete",
            "small danger",
            &[("revision", "4".into())],
            Some("Sure?"),
        )
        .into_string();
        assert!(html.contains("class=\"btn small danger\""), "{html}");
        assert!(html.contains("data-confirm=\"Sure?\""), "{html}");
        assert!(html.contains("name=\"revision\" value=\"4\""), "{html}");
        assert!(html.contains("name=\"csrf_token\""), "{html}");
    }

    #[test]
    fn times_read_well() {
        assert_eq!(when("2025-01-02T03:04:05.678Z"), "2025-01-02 03:04:05 UTC");
    }
}
