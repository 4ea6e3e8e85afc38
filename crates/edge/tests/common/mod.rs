//! A real panel (the `panel` crate's server, in this process) whose HTTP
//! listener lives inside a test namespace, so that an edge in that namespace
//! reaches it on 127.0.0.1; and a small client for its API. Used by the
//! end-to-end tests and the propagation benchmark.
//!
//! Call everything from a thread inside that namespace (a runtime created
//! there): sockets belong to the namespace of the thread that opens them.

#![allow(dead_code)]

#[path = "../../../panel/tests/common/pg.rs"]
pub mod pg;

use edge::client::{Method, PanelClient};
use panel::{DatabaseConfig, Panel, PanelConfig, Store};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Starts a panel replica on `db`, listening on 127.0.0.1:`port` (0: any) of the
/// namespace of the calling thread.
pub async fn start_panel(db: &DatabaseConfig, port: u16) -> Panel {
    let store = Store::open(db).await.expect("open the panel's store");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("listen");
    Panel::start(listener, store, PanelConfig::default())
        .await
        .expect("start the panel")
}

/// The provider and one customer, as the tests drive them.
pub struct Api {
    pub admin: PanelClient,
    pub customer: PanelClient,
    pub customer_id: i64,
    pub customer_token: String,
    pub edge_token: String,
}

pub async fn call(c: &PanelClient, method: Method, path: &str, body: Value) -> Value {
    let body = (!body.is_null()).then_some(body);
    c.request(method.clone(), path, body.as_ref())
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

impl Api {
    /// Creates a customer, its API token and an edge token for `zone`.
    pub async fn setup(url: &str, admin_token: &str, zone: &str) -> Api {
        Self::setup_with(url, admin_token, zone, &tls::ClientTls::default()).await
    }

    /// [`Api::setup`] with the clients trusting the panel as `trust` says.
    pub async fn setup_with(
        url: &str,
        admin_token: &str,
        zone: &str,
        trust: &tls::ClientTls,
    ) -> Api {
        let admin = PanelClient::with_tls(url, admin_token, trust).unwrap();
        let c = call(
            &admin,
            Method::POST,
            "/v1/customers",
            json!({"name": "acme"}),
        )
        .await;
        let customer_id = c["id"].as_i64().unwrap();
        let t = call(
            &admin,
            Method::POST,
            "/v1/tokens",
            json!({"name": "acme api", "kind": "customer", "scope": "write", "customer_id": customer_id}),
        )
        .await;
        let customer_token = t["token"].as_str().unwrap().to_string();
        let customer = PanelClient::with_tls(url, &customer_token, trust).unwrap();
        let e = call(
            &admin,
            Method::POST,
            "/v1/tokens",
            json!({"name": "edge", "kind": "edge", "zone": zone}),
        )
        .await;
        Api {
            admin,
            customer,
            customer_id,
            customer_token,
            edge_token: e["token"].as_str().unwrap().to_string(),
        }
    }

    /// The same API through another replica.
    pub fn via(&self, url: &str, admin_token: &str) -> Api {
        Api {
            admin: PanelClient::new(url, admin_token).unwrap(),
            customer: PanelClient::new(url, &self.customer_token).unwrap(),
            customer_id: self.customer_id,
            customer_token: self.customer_token.clone(),
            edge_token: self.edge_token.clone(),
        }
    }

    pub async fn server(
        &self,
        name: &str,
        kind: &str,
        v4: &[&str],
        v6: &[&str],
        zone: &str,
    ) -> i64 {
        let s = call(
            &self.admin,
            Method::POST,
            "/v1/servers",
            json!({"customer_id": self.customer_id, "name": name, "type": kind, "ipv4": v4, "ipv6": v6, "zone": zone}),
        )
        .await;
        s["id"].as_i64().unwrap()
    }

    /// A firewall with these rules (inactive); its id.
    pub async fn firewall(&self, name: &str, rules: Value) -> i64 {
        let f = call(
            &self.customer,
            Method::POST,
            "/v1/firewalls",
            json!({"name": name, "rules": rules}),
        )
        .await;
        f["id"].as_i64().unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, edge::client::ClientError> {
        let body = (!body.is_null()).then_some(body);
        self.customer
            .request(Method::POST, path, body.as_ref())
            .await
    }

    pub async fn delete(&self, path: &str) -> Value {
        call(&self.customer, Method::DELETE, path, Value::Null).await
    }
}

/// Polls `f` every 20 ms until it is true; panics with `what` after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
