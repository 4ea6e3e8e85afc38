//! The test harness: a panel in-process on a random 127.0.0.1 port, on a fresh
//! SQLite directory or a fresh PostgreSQL database, and a small HTTP client.
//!
//! Every test function takes a [`Backend`]; [`backend_tests!`] runs each on
//! both.

#![allow(dead_code)]

pub mod pg;

use panel::{DatabaseConfig, Panel, PanelConfig, Store};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `mod sqlite` and `mod postgres`, each with one `#[tokio::test]`
/// per listed `async fn name(Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A response: status, headers, JSON body (Null when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// The error body's `field`.
    pub fn field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
    pub fn etag(&self) -> String {
        self.headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }
}

pub struct TestPanel {
    pub panel: Panel,
    pub url: String,
    pub admin: String,
    pub db: DatabaseConfig,
    pub client: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls::ClientTls::default().config().unwrap())
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

pub async fn database(backend: Backend) -> (DatabaseConfig, Option<tempfile::TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            (DatabaseConfig::sqlite_in(dir.path()), Some(dir))
        }
        Backend::Postgres => (DatabaseConfig::Postgres(pg::fresh_database().await), None),
    }
}

pub async fn start_on(db: &DatabaseConfig, config: PanelConfig) -> Panel {
    let store = Store::open(db).await.expect("open store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Panel::start(listener, store, config).await.unwrap()
}

impl TestPanel {
    pub async fn start(backend: Backend) -> TestPanel {
        TestPanel::start_with(backend, PanelConfig::default()).await
    }

    pub async fn start_with(backend: Backend, config: PanelConfig) -> TestPanel {
        init_logging();
        let (db, dir) = database(backend).await;
        let panel = start_on(&db, config).await;
        let admin = panel
            .state
            .store
            .ensure_admin_token()
            .await
            .unwrap()
            .expect("fresh database has no admin token");
        TestPanel {
            url: panel.url(),
            panel,
            admin,
            db,
            client: client(),
            _dir: dir,
        }
    }

    /// Another panel replica on the same database.
    pub async fn replica(&self) -> Panel {
        start_on(&self.db, PanelConfig::default()).await
    }

    pub fn store(&self) -> &Store {
        &self.panel.state.store
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        call(&self.client, &self.url, method, path, token, body, &[]).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }
    pub async fn post_empty(&self, path: &str, token: &str) -> Resp {
        self.call(Method::POST, path, Some(token), None).await
    }
    pub async fn put(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// A request with extra headers.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        call(&self.client, &self.url, method, path, token, body, headers).await
    }

    /// A raw body with a content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        into_resp(resp).await
    }

    /// Creates a customer and a write token for it: (customer id, token).
    pub async fn customer(&self, name: &str) -> (i64, String) {
        let c = self
            .post(
                "/v1/customers",
                &self.admin,
                json!({"name": name, "email": format!("{name}@example.com")}),
            )
            .await
            .expect(201);
        let id = c.body["id"].as_i64().unwrap();
        let t = self
            .post(
                "/v1/tokens",
                &self.admin,
                json!({"name": "ci", "customer_id": id, "scope": "write"}),
            )
            .await
            .expect(201);
        (id, t.body["token"].as_str().unwrap().to_string())
    }

    /// Registers a server: returns its id.
    pub async fn server(
        &self,
        customer: i64,
        name: &str,
        kind: &str,
        zone: &str,
        labels: Value,
    ) -> i64 {
        let n = NEXT_ADDR.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let body = json!({
            "customer_id": customer, "name": name, "type": kind, "zone": zone, "labels": labels,
            "ipv4": [format!("203.0.113.{}", n % 250 + 1)], "ipv6": [format!("2001:db8::{:x}", n + 1)],
        });
        self.post("/v1/servers", &self.admin, body)
            .await
            .expect(201)
            .body["id"]
            .as_i64()
            .unwrap()
    }

    /// An edge token for a zone.
    pub async fn edge_token(&self, zone: &str) -> String {
        let t = self
            .post(
                "/v1/tokens",
                &self.admin,
                json!({"name": format!("edge-{zone}"), "kind": "edge", "zone": zone}),
            )
            .await
            .expect(201);
        t.body["token"].as_str().unwrap().to_string()
    }

    /// Creates a firewall: returns its id.
    pub async fn firewall(&self, token: &str, name: &str, rules: Value) -> i64 {
        self.post(
            "/v1/firewalls",
            token,
            json!({"name": name, "rules": rules}),
        )
        .await
        .expect(201)
        .body["id"]
            .as_i64()
            .unwrap()
    }

    pub async fn revision(&self) -> u64 {
        self.store().revision().await.unwrap()
    }
}

/// Panel logs (warnings and errors) in the test's captured output.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

static NEXT_ADDR: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

pub async fn call(
    client: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    into_resp(req.send().await.unwrap()).await
}

pub async fn into_resp(resp: reqwest::Response) -> Resp {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}

/// What `GET /login` gives a browser before it logs in: the login CSRF
/// cookie (`name=value`, for a `Cookie` header) and the form's token.
pub async fn login_form_token(client: &reqwest::Client, url: &str) -> (String, String) {
    let r = client.get(format!("{url}/login")).send().await.unwrap();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("portwall_login_csrf="))
        .expect("GET /login sets the login CSRF cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let html = r.text().await.unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("the login form has a csrf_token") + marker.len();
    let token = html[start..].split('"').next().unwrap().to_string();
    (cookie, token)
}
