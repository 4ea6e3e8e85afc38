//! The web pages over plain HTTP (no browser): sessions, CSRF, tenancy, and
//! errors shown next to the field that was wrong, with nothing stored.

mod common;

use common::{Backend, TestPanel};
use reqwest::StatusCode;
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// A logged-in browser, by hand: the session cookie and the CSRF token.
struct Page {
    client: reqwest::Client,
    url: String,
    cookie: String,
    csrf: String,
}

struct Resp {
    status: StatusCode,
    location: String,
    headers: reqwest::header::HeaderMap,
    html: String,
}

/// `application/x-www-form-urlencoded`, as a browser sends a form.
trait FormBody {
    fn form_body(self, fields: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, fields: &[(&str, &str)]) -> Self {
        let enc = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                        (b as char).to_string()
                    }
                    b' ' => "+".to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

async fn send(req: reqwest::RequestBuilder) -> Resp {
    let r = req.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let location = headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Resp {
        status,
        location,
        headers,
        html: r.text().await.unwrap_or_default(),
    }
}

/// The session cookie a login set (`name=value`).
fn session_cookie(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("portwall_session="))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The value of `name="NAME" value="..."` in a page.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// The `div.field` that holds the input with this id.
fn field_block<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let start = html[..at].rfind("<div class=\"field").expect("field div");
    let end = at + html[at..].find("</div>").expect("end of field");
    &html[start..end]
}

impl Page {
    async fn login(t: &TestPanel, login: &str) -> Page {
        let client = common::client();
        let (login_cookie, token) = common::login_form_token(&client, &t.url).await;
        let r = send(
            client
                .post(format!("{}/login", t.url))
                .header("cookie", login_cookie)
                .form_body(&[
                    ("login", login),
                    ("password", PASSWORD),
                    ("next", "/firewalls"),
                    ("csrf_token", &token),
                ]),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
        assert_eq!(r.location, "/firewalls");
        let cookie = session_cookie(&r.headers);
        let mut p = Page {
            client,
            url: t.url.clone(),
            cookie,
            csrf: String::new(),
        };
        let list = p.get("/firewalls").await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.html);
        p.csrf = hidden(&list.html, "csrf_token");
        p
    }

    async fn get(&self, path: &str) -> Resp {
        send(
            self.client
                .get(format!("{}{path}", self.url))
                .header("cookie", &self.cookie),
        )
        .await
    }

    /// A form post with the session's CSRF token.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let mut all: Vec<(&str, &str)> = vec![("csrf_token", &self.csrf)];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// A form post with exactly these fields.
    async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        send(
            self.client
                .post(format!("{}{path}", self.url))
                .header("cookie", &self.cookie)
                .form_body(fields),
        )
        .await
    }

    /// Creates a firewall through the form; returns its id.
    async fn firewall(&self, name: &str) -> i64 {
        let r = self.post("/firewalls", &[("name", name)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
        r.location
            .strip_prefix("/firewalls/")
            .and_then(|s| s.split('?').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{}", r.location))
    }
}

/// A customer with a web login: (customer id, API token).
async fn customer_with_login(t: &TestPanel, name: &str) -> (i64, String) {
    let (cid, token) = t.customer(name).await;
    t.post(
        "/v1/users",
        &t.admin,
        json!({"login": name, "password": PASSWORD, "customer_id": cid}),
    )
    .await
    .expect(201);
    (cid, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_logout_and_redirects() {
    let t = TestPanel::start(Backend::Sqlite).await;
    customer_with_login(&t, "alice").await;
    let c = common::client();
    let r = send(c.get(format!("{}/", t.url))).await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (StatusCode::SEE_OTHER, "/login")
    );
    let r = send(c.get(format!("{}/firewalls/3?x=1", t.url))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location, "/login?next=/firewalls/3%3Fx%3D1");
    // A post without a session changes nothing and goes to the login page.
    let r = send(
        c.post(format!("{}/firewalls", t.url))
            .form_body(&[("name", "x")]),
    )
    .await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (StatusCode::SEE_OTHER, "/login?next=/")
    );
    let r = send(c.get(format!("{}/login?next=/audit", t.url))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.html.contains("action=\"/login\""), "{}", r.html);
    assert_eq!(hidden(&r.html, "next"), "/audit");
    for (k, v) in [
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(r.headers[k], v);
    }
    assert!(r.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    // A wrong password: the message is next to the password field.
    let (login_cookie, token) = common::login_form_token(&c, &t.url).await;
    let r = send(
        c.post(format!("{}/login", t.url))
            .header("cookie", &login_cookie)
            .form_body(&[
                ("login", "alice"),
                ("password", "wrong password!"),
                ("csrf_token", &token),
            ]),
    )
    .await;
    assert_eq!(r.location, "/login?error=invalid");
    let r = send(c.get(format!("{}{}", t.url, r.location))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let block = field_block(&r.html, "password");
    assert!(block.contains("Wrong login or password."), "{block}");
    // Logged in: / goes to the firewalls, /login too.
    let p = Page::login(&t, "alice").await;
    let r = p.get("/").await;
    assert_eq!(r.location, "/firewalls");
    let r = p.get("/login").await;
    assert_eq!(r.location, "/firewalls");
    for path in ["/firewalls", "/servers", "/audit"] {
        let r = p.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.html);
        assert!(r.html.contains("alice"));
    }
    let r = p.get("/assets/style.css").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    // Log out: the session is gone.
    let r = p.post("/logout", &[]).await;
    assert_eq!(r.location, "/login");
    let r = p.get("/firewalls").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cidr_in_the_add_rule_form_is_shown_next_to_the_field_and_stores_nothing() {
    let t = TestPanel::start(Backend::Sqlite).await;
    let (cid, _) = customer_with_login(&t, "alice").await;
    let p = Page::login(&t, "alice").await;
    let id = p.firewall("web").await;
    let before = t.store().firewall(cid, id).await.unwrap();
    let revision = before.revision.to_string();
    let audit_before = t
        .store()
        .audit_log(Some(cid), page())
        .await
        .unwrap()
        .items
        .len();

    let r = p
        .post(
            &format!("/firewalls/{id}/rules"),
            &[
                ("revision", &revision),
                ("preset", ""),
                ("protocol", "tcp"),
                ("port", "22"),
                ("sources", "203.0.113.0/24, 10.0.0.300/8"),
                ("description", "office"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.html);
    let block = field_block(&r.html, "rule-sources");
    assert!(block.contains("class=\"field-error\""), "{block}");
    assert!(
        block.contains("10.0.0.300/8") && block.contains("is not an IP address or network"),
        "{block}"
    );
    assert!(block.contains("aria-invalid=\"true\""), "{block}");
    // What was typed is kept, and no other field is marked.
    assert!(
        block.contains("value=\"203.0.113.0/24, 10.0.0.300/8\""),
        "{block}"
    );
    assert!(!field_block(&r.html, "rule-port").contains("field-error"));
    assert_eq!(r.html.matches("class=\"field-error\"").count(), 1);

    // Host bits set: the model's message, next to the same field.
    let r = p
        .post(
            &format!("/firewalls/{id}/rules"),
            &[
                ("revision", &revision),
                ("protocol", "tcp"),
                ("port", "22"),
                ("sources", "10.0.0.1/8"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_block(&r.html, "rule-sources").contains("did you mean 10.0.0.0/8?"));
    // A bad port, next to the port field.
    let r = p
        .post(
            &format!("/firewalls/{id}/rules"),
            &[
                ("revision", &revision),
                ("protocol", "udp"),
                ("port", "70000"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_block(&r.html, "rule-port").contains("ports are 1-65535"));

    // Nothing was stored: same rules, same revision, no audit entry.
    let after = t.store().firewall(cid, id).await.unwrap();
    assert!(after.rules.is_empty());
    assert_eq!(after.revision, before.revision);
    assert_eq!(
        t.store()
            .audit_log(Some(cid), page())
            .await
            .unwrap()
            .items
            .len(),
        audit_before
    );
}

fn page() -> panel::store::PageRequest {
    panel::store::PageRequest {
        limit: 1000,
        cursor: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customers_firewall_is_not_found() {
    let t = TestPanel::start(Backend::Sqlite).await;
    customer_with_login(&t, "alice").await;
    let (bob, bob_token) = customer_with_login(&t, "bob").await;
    let theirs = t
        .firewall(&bob_token, "bobs-secret-fw", json!([{"preset": "SSH"}]))
        .await;
    let rule = t.store().firewall(bob, theirs).await.unwrap().rules[0].id;
    let bob_server = t.server(bob, "bob-vps", "VPS", "z1", json!({})).await;
    let p = Page::login(&t, "alice").await;

    let r = p.get(&format!("/firewalls/{theirs}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.html);
    assert!(!r.html.contains("bobs-secret-fw"));
    // The same answer as for an id that does not exist, or is not a number.
    for path in [
        format!("/firewalls/{}", theirs + 1000),
        "/firewalls/abc".into(),
    ] {
        assert_eq!(p.get(&path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        p.get(&format!("/firewalls/{theirs}/rules/{rule}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Changes to it are refused the same way, and change nothing.
    let rev = t.store().firewall(bob, theirs).await.unwrap().revision;
    for (path, fields) in [
        (format!("/firewalls/{theirs}/enable"), vec![]),
        (format!("/firewalls/{theirs}/delete"), vec![]),
        (
            format!("/firewalls/{theirs}/rules"),
            vec![("preset", "HTTP")],
        ),
        (format!("/firewalls/{theirs}/rules/{rule}/delete"), vec![]),
        (
            format!("/firewalls/{theirs}/settings"),
            vec![("name", "mine")],
        ),
    ] {
        let r = p.post(&path, &fields).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.html);
    }
    let fw = t.store().firewall(bob, theirs).await.unwrap();
    assert_eq!(
        (fw.revision, fw.rules.len(), fw.name.as_str()),
        (rev, 1, "bobs-secret-fw")
    );
    // Their server cannot be assigned to my firewall: not found, next to the field.
    let mine = p.firewall("mine").await;
    let r = p
        .post(
            &format!("/firewalls/{mine}/assignments"),
            &[("by", "server"), ("server_id", &bob_server.to_string())],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(field_block(&r.html, "assign-server_id").contains("not found"));
    // My pages do not list their servers.
    let r = p.get("/servers").await;
    assert!(!r.html.contains("bob-vps"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_the_csrf_token_is_refused() {
    let t = TestPanel::start(Backend::Sqlite).await;
    let (cid, _) = customer_with_login(&t, "alice").await;
    let p = Page::login(&t, "alice").await;
    let id = p.firewall("web").await;
    let revision = t.store().revision().await.unwrap();
    for token in [None, Some(""), Some("not-the-token")] {
        let mut fields = vec![("name", "sneaky")];
        if let Some(tok) = token {
            fields.push(("csrf_token", tok));
        }
        let r = p.post_raw("/firewalls", &fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{token:?}: {}", r.html);
        assert!(r.html.contains("security token"), "{}", r.html);
        let r = p
            .post_raw(&format!("/firewalls/{id}/delete"), &fields)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = p
            .post_raw(&format!("/firewalls/{id}/enable"), &fields)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    // Nothing changed.
    assert_eq!(t.store().revision().await.unwrap(), revision);
    let list = t.store().list_firewalls(cid, page()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].name, "web");
    assert_eq!(list.items[0].status, panel::store::FirewallStatus::Inactive);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_works_and_errors_say_what_is_wrong() {
    let t = TestPanel::start(Backend::Sqlite).await;
    let (cid, _) = customer_with_login(&t, "alice").await;
    let vps = t
        .server(cid, "web-1", "VPS", "z1", json!({"env": "prod"}))
        .await;
    let dedicated = t
        .server(cid, "db-1", "Dedicated", "z1", json!({"env": "prod"}))
        .await;
    let p = Page::login(&t, "alice").await;

    // Names are escaped; a taken name is refused next to the field.
    let id = p.firewall("<b>web</b>").await;
    let r = p.get("/firewalls").await;
    assert!(r.html.contains("&lt;b&gt;web&lt;/b&gt;") && !r.html.contains("<b>web</b>"));
    let r = p.post("/firewalls", &[("name", "<b>web</b>")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(field_block(&r.html, "create-name").contains("already have a firewall named"));
    let r = p.post("/firewalls", &[("name", "")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_block(&r.html, "create-name").contains("field-error"));

    let rev = |t: &TestPanel| {
        let store = t.store().clone();
        async move { store.firewall(cid, id).await.unwrap().revision.to_string() }
    };
    // A form's target, opened with GET (reload, bookmark), leads back to the page.
    for action in ["rules", "enable", "assignments"] {
        let r = p.get(&format!("/firewalls/{id}/{action}")).await;
        assert_eq!(r.location, format!("/firewalls/{id}"), "{action}");
    }
    // Add a preset rule and a custom one.
    let r = p
        .post(
            &format!("/firewalls/{id}/rules"),
            &[
                ("revision", &rev(&t).await),
                ("preset", "SSH"),
                ("protocol", "tcp"),
            ],
        )
        .await;
    assert_eq!(
        r.location,
        format!("/firewalls/{id}?done=rule-added"),
        "{}",
        r.html
    );
    let r = p
        .post(
            &format!("/firewalls/{id}/rules"),
            &[
                ("revision", &rev(&t).await),
                ("protocol", "udp"),
                ("port", "8000-8100"),
                ("sources", "198.51.100.7"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    // A preset and a port at once: the API's message, at the preset.
    let r = p
        .post(
            &format!("/firewalls/{id}/rules"),
            &[("preset", "SSH"), ("port", "2222")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_block(&r.html, "rule-preset").contains("either a preset or protocol and port"));
    let fw = t.store().firewall(cid, id).await.unwrap();
    assert_eq!(fw.rules.len(), 2);
    assert_eq!(fw.rules[0].port.as_deref(), Some("22"));
    assert_eq!(fw.rules[1].sources, vec!["198.51.100.7/32".to_string()]);
    let udp = fw.rules[1].id;

    // Edit: an icmp rule with a port is refused next to the port.
    let r = p.get(&format!("/firewalls/{id}/rules/{udp}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(field_block(&r.html, "edit-port").contains("value=\"8000-8100\""));
    let r = p
        .post(
            &format!("/firewalls/{id}/rules/{udp}"),
            &[("protocol", "icmp"), ("port", "1"), ("enabled", "1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_block(&r.html, "edit-port").contains("icmp has no ports"));
    let r = p
        .post(
            &format!("/firewalls/{id}/rules/{udp}"),
            &[
                ("protocol", "udp"),
                ("port", "53"),
                ("sources", ""),
                ("description", "dns"),
                ("enabled", "1"),
            ],
        )
        .await;
    assert_eq!(
        r.location,
        format!("/firewalls/{id}?done=rule-saved"),
        "{}",
        r.html
    );
    // Disable, enable, delete a rule.
    let r = p
        .post(
            &format!("/firewalls/{id}/rules/{udp}/toggle"),
            &[("enabled", "false")],
        )
        .await;
    assert_eq!(r.location, format!("/firewalls/{id}?done=rule-disabled"));
    let fw = t.store().firewall(cid, id).await.unwrap();
    assert!(!fw.rules[1].enabled);
    assert_eq!(fw.rules[1].port.as_deref(), Some("53"));
    assert_eq!(fw.rules[1].description, "dns");
    p.post(
        &format!("/firewalls/{id}/rules/{udp}/toggle"),
        &[("enabled", "true")],
    )
    .await;
    assert!(t.store().firewall(cid, id).await.unwrap().rules[1].enabled);
    let r = p
        .post(&format!("/firewalls/{id}/rules/{udp}/delete"), &[])
        .await;
    assert_eq!(r.location, format!("/firewalls/{id}?done=rule-deleted"));

    // A form from a page that is out of date is refused (as If-Match).
    let r = p
        .post(&format!("/firewalls/{id}/enable"), &[("revision", "1")])
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert!(r.html.contains("was changed"), "{}", r.html);
    let r = p
        .post(
            &format!("/firewalls/{id}/enable"),
            &[("revision", &rev(&t).await)],
        )
        .await;
    assert_eq!(r.location, format!("/firewalls/{id}?done=enabled"));

    // Assign: a Dedicated server is refused with the store's message.
    let r = p
        .post(
            &format!("/firewalls/{id}/assignments"),
            &[("by", "server"), ("server_id", &dedicated.to_string())],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(field_block(&r.html, "assign-server_id").contains("VPS and VDS only"));
    let r = p
        .post(
            &format!("/firewalls/{id}/assignments"),
            &[("by", "server"), ("server_id", "")],
        )
        .await;
    assert!(field_block(&r.html, "assign-server_id").contains("choose a server"));
    let r = p
        .post(
            &format!("/firewalls/{id}/assignments"),
            &[("by", "server"), ("server_id", &vps.to_string())],
        )
        .await;
    assert_eq!(r.location, format!("/firewalls/{id}?done=assigned"));
    let r = p.get(&r.location).await;
    assert!(r.html.contains("Assigned."));
    let row = &r.html[r.html.find(&format!("data-server-id=\"{vps}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("web-1") && row.contains(">pending<"), "{row}");
    // By label: the Dedicated server that matches is skipped and said so.
    let r = p
        .post(
            &format!("/firewalls/{id}/assignments"),
            &[("by", "selector"), ("selector", "env")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_block(&r.html, "assign-selector").contains("is not key=value"));
    let r = p
        .post(
            &format!("/firewalls/{id}/assignments"),
            &[("by", "selector"), ("selector", "env=prod")],
        )
        .await;
    assert_eq!(
        r.location,
        format!("/firewalls/{id}?done=assigned&skipped=1")
    );
    let r = p.get(&r.location).await;
    assert!(r
        .html
        .contains("1 matching Dedicated server(s) were skipped"));
    assert!(r.html.contains("<code>env=prod</code>"));
    // Unassigning a server assigned by id and by label: the store's 409.
    let fw = t.store().firewall(cid, id).await.unwrap();
    assert_eq!(fw.servers, vec![vps]);
    let r = p
        .post(&format!("/firewalls/{id}/assignments/{vps}/delete"), &[])
        .await;
    assert_eq!(r.location, format!("/firewalls/{id}?done=unassigned"));
    let r = p
        .post(&format!("/firewalls/{id}/assignments/{vps}/delete"), &[])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.html.contains("through a selector"));
    let sel = t.store().firewall(cid, id).await.unwrap().selectors[0].id;
    let r = p
        .post(&format!("/firewalls/{id}/selectors/{sel}/delete"), &[])
        .await;
    assert_eq!(r.location, format!("/firewalls/{id}?done=selector-removed"));

    // Servers page: the apply status per server.
    let r = p.get("/servers").await;
    assert!(r.html.contains("web-1") && r.html.contains("db-1"));
    // Settings, disable, the audit log, delete.
    let r = p
        .post(
            &format!("/firewalls/{id}/settings"),
            &[("name", "web"), ("description", "front ends")],
        )
        .await;
    assert_eq!(r.location, format!("/firewalls/{id}?done=saved"));
    let r = p.post(&format!("/firewalls/{id}/disable"), &[]).await;
    assert_eq!(r.location, format!("/firewalls/{id}?done=disabled"));
    let r = p.get("/audit").await;
    for action in [
        "firewall.create",
        "rule.create",
        "rule.update",
        "rule.delete",
        "firewall.enable",
        "assignment.create",
        "assignment.delete",
        "firewall.disable",
    ] {
        assert!(
            r.html.contains(action),
            "{action} missing from the audit page"
        );
    }
    assert!(r.html.contains("user alice"));
    let r = p.post(&format!("/firewalls/{id}/delete"), &[]).await;
    assert_eq!(r.location, "/firewalls?done=deleted");
    assert!(t
        .store()
        .list_firewalls(cid, page())
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_operator_gets_a_clear_refusal() {
    let t = TestPanel::start(Backend::Sqlite).await;
    t.post(
        "/v1/users",
        &t.admin,
        json!({"login": "ops", "password": PASSWORD}),
    )
    .await
    .expect(201);
    let c = common::client();
    let (login_cookie, token) = common::login_form_token(&c, &t.url).await;
    let r = send(
        c.post(format!("{}/login", t.url))
            .header("cookie", login_cookie)
            .form_body(&[
                ("login", "ops"),
                ("password", PASSWORD),
                ("csrf_token", &token),
            ]),
    )
    .await;
    let cookie = session_cookie(&r.headers);
    let r = send(
        c.get(format!("{}/firewalls", t.url))
            .header("cookie", cookie),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.html.contains("provider operator"), "{}", r.html);
    assert!(r.html.contains("Log out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_needs_its_csrf_token_and_its_own_origin() {
    let t = TestPanel::start(Backend::Sqlite).await;
    customer_with_login(&t, "alice").await;
    let c = common::client();
    let (login_cookie, token) = common::login_form_token(&c, &t.url).await;
    let fields = |tok: &str| {
        vec![
            ("login".to_string(), "alice".to_string()),
            ("password".to_string(), PASSWORD.to_string()),
            ("next".to_string(), "/audit".to_string()),
            ("csrf_token".to_string(), tok.to_string()),
        ]
    };
    let post = |cookie: Option<String>, tok: String, headers: Vec<(&'static str, String)>| {
        let (c, url, f) = (c.clone(), t.url.clone(), fields(&tok));
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut req = c.post(format!("{url}/login")).form_body(&f);
            if let Some(cookie) = cookie {
                req = req.header("cookie", cookie);
            }
            for (k, v) in headers {
                req = req.header(k, v);
            }
            send(req).await
        }
    };
    // A cross-site form has neither the cookie nor the token: no session.
    for (cookie, tok) in [
        (None, String::new()),
        (None, token.clone()),
        (Some(login_cookie.clone()), String::new()),
        (Some(login_cookie.clone()), "ab".repeat(32)),
    ] {
        let r = post(cookie, tok, vec![]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.location, "/login?error=form&next=/audit");
        assert!(r.headers.get("set-cookie").is_none());
    }
    let r = send(c.get(format!("{}/login?error=form", t.url))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.html.contains("This login form expired"), "{}", r.html);
    // Another site's Origin (or Referer) is refused even with the token.
    let host = t.url.trim_start_matches("http://").to_string();
    for (name, value) in [
        ("origin", "https://evil.example".to_string()),
        ("origin", "null".to_string()),
        ("referer", "https://evil.example/login".to_string()),
    ] {
        let r = post(
            Some(login_cookie.clone()),
            token.clone(),
            vec![(name, value)],
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{name}");
        assert!(r.headers.get("set-cookie").is_none());
    }
    // The panel's own page: logged in, the login CSRF cookie is cleared.
    let r = post(
        Some(login_cookie.clone()),
        token.clone(),
        vec![
            ("origin", format!("http://{host}")),
            ("referer", format!("http://{host}/login")),
        ],
    )
    .await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (StatusCode::SEE_OTHER, "/audit")
    );
    let cookies: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("portwall_session=")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("portwall_login_csrf=;") && c.contains("Max-Age=0")),
        "{cookies:?}"
    );
    // A second login page keeps the browser's token (two tabs both work).
    let r = send(
        c.get(format!("{}/login", t.url))
            .header("cookie", &login_cookie),
    )
    .await;
    assert_eq!(hidden(&r.html, "csrf_token"), token);
    // The JSON login refuses another site's Origin too.
    let r = c
        .post(format!("{}/v1/auth/login", t.url))
        .header("origin", "https://evil.example")
        .json(&json!({"login": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_never_leads_to_another_site() {
    let t = TestPanel::start(Backend::Sqlite).await;
    customer_with_login(&t, "alice").await;
    let p = Page::login(&t, "alice").await;
    // Logged in, /login?next=... redirects at once: only to this panel.
    for (next, to) in [
        ("%09/evil.example", "/firewalls"),
        ("/%09/evil.example", "/firewalls"),
        ("/%0A/evil.example", "/firewalls"),
        ("/%0D/evil.example", "/firewalls"),
        ("/%5Cevil.example", "/firewalls"),
        ("%5C%5Cevil.example", "/firewalls"),
        ("//evil.example", "/firewalls"),
        ("/%20/evil.example", "/firewalls"),
        ("https://evil.example", "/firewalls"),
        ("/audit", "/audit"),
    ] {
        let r = p.get(&format!("/login?next={next}")).await;
        assert_eq!(
            (r.status, r.location.as_str()),
            (StatusCode::SEE_OTHER, to),
            "{next}"
        );
    }
    // The form's next, after the password.
    let c = common::client();
    for next in [
        "/\t/evil.example",
        "\t/evil.example",
        "/\\evil.example",
        "/\n/evil.example",
    ] {
        let (login_cookie, token) = common::login_form_token(&c, &t.url).await;
        let r = send(
            c.post(format!("{}/login", t.url))
                .header("cookie", login_cookie)
                .form_body(&[
                    ("login", "alice"),
                    ("password", PASSWORD),
                    ("next", next),
                    ("csrf_token", &token),
                ]),
        )
        .await;
        assert_eq!(
            (r.status, r.location.as_str()),
            (StatusCode::SEE_OTHER, "/"),
            "{next:?}"
        );
    }
}

/// A list as the API shows it to its owner.
async fn api_list(t: &TestPanel, token: &str, id: i64) -> serde_json::Value {
    t.get(&format!("/v1/lists/{id}"), token)
        .await
        .expect(200)
        .body
}

/// The IP list pages: create, paste (a bad line named and nothing stored),
/// CSRF, stale revision, another customer's list, delete.
async fn ip_list_pages(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, alice_token) = customer_with_login(&t, "alice").await;
    customer_with_login(&t, "bob").await;
    let p = Page::login(&t, "alice").await;
    let r = p.get("/lists").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.html);
    assert!(
        r.html.contains("href=\"/lists\" aria-current=\"page\""),
        "{}",
        r.html
    );
    assert!(r.html.contains("You have no IP lists yet"));

    // A bad name: next to the field, nothing created.
    let r = p.post("/lists", &[("name", "Office")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.html);
    assert!(field_block(&r.html, "create-name").contains("is not a list name"));
    let r = p
        .post(
            "/lists",
            &[("name", "office"), ("description", "our offices")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let id: i64 = r
        .location
        .strip_prefix("/lists/")
        .and_then(|s| s.split('?').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", r.location));
    let r = p.post("/lists", &[("name", "office")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(field_block(&r.html, "create-name").contains("already have a list named 'office'"));
    let page = p.get(&format!("/lists/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let revision = hidden(&page.html, "revision");
    let entries_path = format!("/lists/{id}/entries");

    // Without the form's CSRF token: refused, nothing changed.
    let r = p
        .post_raw(
            &entries_path,
            &[("entries", "192.0.2.1"), ("revision", &revision)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(api_list(&t, &alice_token, id).await["entry_count"], 0);

    // A bad line: named with its number, the text kept, nothing stored.
    let pasted = "# offices\n203.0.113.0/24\n203.0.113.7/24\n";
    let r = p
        .post(
            &entries_path,
            &[("entries", pasted), ("revision", &revision)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.html);
    let block = field_block(&r.html, "entries-text");
    assert!(
        block.contains("line 3: &#39;203.0.113.7/24&#39; has host bits set")
            || block.contains("line 3: '203.0.113.7/24' has host bits set"),
        "{block}"
    );
    assert!(block.contains("aria-invalid=\"true\""), "{block}");
    assert!(r.html.contains("203.0.113.7/24\n</textarea>"), "{}", r.html);
    assert_eq!(api_list(&t, &alice_token, id).await["entry_count"], 0);

    // A good block replaces the entries.
    let r = p
        .post(
            &entries_path,
            &[
                (
                    "entries",
                    "# offices\n203.0.113.0/24\n198.51.100.7 # a host\n\n2001:db8::/32\n",
                ),
                ("revision", &revision),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    assert_eq!(r.location, format!("/lists/{id}?done=saved#entries"));
    let stored = api_list(&t, &alice_token, id).await;
    assert_eq!(
        stored["entries"],
        json!(["198.51.100.7", "203.0.113.0/24", "2001:db8::/32"])
    );
    let page = p.get(&format!("/lists/{id}?done=saved")).await;
    assert!(page.html.contains("Entries saved."), "{}", page.html);
    assert!(page.html.contains("id=\"entry-count\">3<"), "{}", page.html);
    let list = p.get("/lists").await;
    assert!(
        list.html.contains("class=\"num entries\">3<"),
        "{}",
        list.html
    );

    // From the page as it was before: refused (412), nothing changed.
    let r = p
        .post(
            &entries_path,
            &[("entries", "192.0.2.1"), ("revision", &revision)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.html);
    assert!(r.html.contains("This list was changed"), "{}", r.html);
    assert_eq!(
        api_list(&t, &alice_token, id).await["entries"],
        stored["entries"]
    );

    // Another customer: not found, whatever the page.
    let bob = Page::login(&t, "bob").await;
    let r = bob.get(&format!("/lists/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for path in [entries_path.clone(), format!("/lists/{id}/delete")] {
        let r = bob.post(&path, &[("entries", "192.0.2.1")]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert!(bob
        .get("/lists")
        .await
        .html
        .contains("You have no IP lists yet"));
    assert_eq!(
        api_list(&t, &alice_token, id).await["entries"],
        stored["entries"]
    );

    // Delete.
    let current = hidden(&p.get(&format!("/lists/{id}")).await.html, "revision");
    let r = p
        .post(&format!("/lists/{id}/delete"), &[("revision", &current)])
        .await;
    assert_eq!(r.location, "/lists?done=deleted");
    t.get(&format!("/v1/lists/{id}"), &alice_token)
        .await
        .expect(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_list_pages_on_sqlite() {
    ip_list_pages(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_list_pages_on_postgres() {
    ip_list_pages(Backend::Postgres).await
}
