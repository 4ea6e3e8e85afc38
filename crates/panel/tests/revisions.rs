//! The revision contract of the store under concurrency (see the `//!` of
//! `panel::store`): many writers, on different customers and on the same
//! customer, through the API (on PostgreSQL through two replicas), while one
//! edge per zone follows the sync protocol and applies every delta to a
//! model. Afterwards:
//!
//! - every edge's model, replayed delta by delta, equals the store's final
//!   snapshot of its zone (no change missed, none applied twice);
//! - every delta starts where the previous answer ended (`from` is the
//!   edge's revision) and revisions only grow;
//! - the commits' revisions are gapless and in commit order (the audit log,
//!   written by each commit, has revisions 1, 2, 3, ... in id order).

mod common;

use common::{Backend, TestPanel};
use model::network::sync::{ServerPolicy, SyncResponse, SYNC_PATH};
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

backend_tests! {
    concurrent_writers_and_edges_agree_with_the_store,
}

const ZONES: [&str; 2] = ["fra1", "ams1"];
const CUSTOMERS: usize = 3;
const WRITERS_PER_CUSTOMER: usize = 3;
const OPS_PER_WRITER: usize = 30;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One customer's objects, known up front.
#[derive(Clone)]
struct Tenant {
    token: String,
    firewalls: Vec<i64>,
    servers: Vec<i64>,
}

/// A client on one panel (on PostgreSQL the writers alternate between two
/// replicas).
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn send(&self, method: reqwest::Method, path: &str, token: &str, body: Value) -> u16 {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(token);
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        // 404/409 are legitimate outcomes of racing writers (a server deleted
        // meanwhile, a Dedicated server, a selector's server unassigned).
        assert!(
            status < 300 || status == 404 || status == 409,
            "{method} {path}: {status} {text}"
        );
        status
    }
}

/// One random write of customer `t`.
async fn random_write(c: &Client, admin: &str, t: &Tenant, rng: &mut Rng, n: usize) {
    use reqwest::Method;
    let fw = t.firewalls[rng.below(t.firewalls.len() as u64) as usize];
    let server = t.servers[rng.below(t.servers.len() as u64) as usize];
    let port = 1 + rng.below(60000);
    match rng.below(9) {
        0 | 1 => {
            c.send(
                Method::POST,
                &format!("/v1/firewalls/{fw}/rules"),
                &t.token,
                json!({"protocol": "tcp", "port": port, "sources": [format!("198.51.100.{}/32", n % 250 + 1)]}),
            )
            .await;
        }
        2 => {
            c.send(
                Method::PUT,
                &format!("/v1/firewalls/{fw}/rules"),
                &t.token,
                json!({"rules": [{"protocol": "udp", "port": port}, {"preset": "SSH"}]}),
            )
            .await;
        }
        3 => {
            let verb = if rng.below(3) == 0 {
                "disable"
            } else {
                "enable"
            };
            c.send(
                Method::POST,
                &format!("/v1/firewalls/{fw}/{verb}"),
                &t.token,
                json!({}),
            )
            .await;
        }
        4 => {
            c.send(
                Method::POST,
                &format!("/v1/firewalls/{fw}/assignments"),
                &t.token,
                json!({"server_id": server}),
            )
            .await;
        }
        5 => {
            c.send(
                Method::DELETE,
                &format!("/v1/firewalls/{fw}/assignments/{server}"),
                &t.token,
                Value::Null,
            )
            .await;
        }
        6 => {
            // Labels decide which selector firewalls apply.
            let env = ["prod", "staging"][rng.below(2) as usize];
            c.send(
                Method::PATCH,
                &format!("/v1/servers/{server}"),
                &t.token,
                json!({"labels": {"env": env}}),
            )
            .await;
        }
        7 => {
            // The provider moves a server to the other zone.
            let zone = ZONES[rng.below(2) as usize];
            c.send(
                Method::PATCH,
                &format!("/v1/servers/{server}"),
                admin,
                json!({"zone": zone}),
            )
            .await;
        }
        _ => {
            c.send(
                Method::POST,
                &format!("/v1/firewalls/{fw}/assignments"),
                &t.token,
                json!({"selector": "env=staging"}),
            )
            .await;
        }
    }
}

/// An edge of `zone`: follows the sync protocol until `stop` and it has
/// reached `final_revision`; returns its model.
async fn follow(
    c: Client,
    token: String,
    zone: &'static str,
    stop: Arc<AtomicBool>,
    final_revision: Arc<std::sync::atomic::AtomicU64>,
) -> BTreeMap<i64, ServerPolicy> {
    let mut model: BTreeMap<i64, ServerPolicy> = BTreeMap::new();
    let mut at: Option<u64> = None;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        assert!(Instant::now() < deadline, "edge {zone} never caught up");
        let mut path = format!("{SYNC_PATH}?zone={zone}&wait=1");
        if let Some(s) = at {
            path.push_str(&format!("&since={s}"));
        }
        let resp = c
            .http
            .get(format!("{}{path}", c.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let answer: SyncResponse = resp.json().await.unwrap();
        let revision = match answer {
            SyncResponse::Snapshot { revision, servers } => {
                assert!(at.is_none(), "{zone}: a snapshot after the first contact");
                model = servers.into_iter().map(|s| (s.server_id, s)).collect();
                revision
            }
            SyncResponse::Delta {
                from,
                revision,
                changed,
                removed,
            } => {
                assert_eq!(Some(from), at, "{zone}: a delta from where the edge is");
                for s in changed {
                    assert!(
                        s.revision > from && s.revision <= revision,
                        "{zone}: server {} changed at {} outside ({from}, {revision}]",
                        s.server_id,
                        s.revision
                    );
                    model.insert(s.server_id, s);
                }
                for id in removed {
                    model.remove(&id);
                }
                revision
            }
            SyncResponse::Unchanged { revision } => revision,
        };
        assert!(
            at.is_none_or(|a| revision >= a),
            "{zone}: revision went back from {at:?} to {revision}"
        );
        at = Some(revision);
        if stop.load(Ordering::SeqCst) && revision >= final_revision.load(Ordering::SeqCst) {
            return model;
        }
    }
}

async fn concurrent_writers_and_edges_agree_with_the_store(b: Backend) {
    let t = TestPanel::start(b).await;
    let replica = match b {
        Backend::Postgres => Some(t.replica().await),
        Backend::Sqlite => None,
    };
    let http = common::client();
    let clients: Vec<Client> = std::iter::once(t.url.clone())
        .chain(replica.as_ref().map(|r| r.url()))
        .map(|url| Client {
            http: http.clone(),
            url,
        })
        .collect();

    // Customers with servers in both zones, firewalls by id and by selector.
    let mut tenants = Vec::new();
    for c in 0..CUSTOMERS {
        let (id, token) = t.customer(&format!("tenant-{c}")).await;
        let mut servers = Vec::new();
        for s in 0..6 {
            let kind = if s == 5 { "Dedicated" } else { "VPS" };
            let env = if s % 2 == 0 { "prod" } else { "staging" };
            servers.push(
                t.server(
                    id,
                    &format!("s{s}"),
                    kind,
                    ZONES[s % 2],
                    json!({"env": env}),
                )
                .await,
            );
        }
        let mut firewalls = Vec::new();
        for f in 0..3 {
            let fw = t
                .firewall(&token, &format!("fw{f}"), json!([{"preset": "SSH"}]))
                .await;
            if f == 0 {
                t.post(
                    &format!("/v1/firewalls/{fw}/assignments"),
                    &token,
                    json!({"selector": "env=prod"}),
                )
                .await
                .expect(200);
            }
            t.post_empty(&format!("/v1/firewalls/{fw}/enable"), &token)
                .await
                .expect(200);
            firewalls.push(fw);
        }
        tenants.push(Tenant {
            token,
            firewalls,
            servers,
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let final_revision = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let mut edges = Vec::new();
    for (i, zone) in ZONES.into_iter().enumerate() {
        let token = t.edge_token(zone).await;
        edges.push(tokio::spawn(follow(
            clients[i % clients.len()].clone(),
            token,
            zone,
            stop.clone(),
            final_revision.clone(),
        )));
    }

    let mut writers = Vec::new();
    for (ci, tenant) in tenants.iter().enumerate() {
        for w in 0..WRITERS_PER_CUSTOMER {
            let c = clients[(ci + w) % clients.len()].clone();
            let (admin, tenant) = (t.admin.clone(), tenant.clone());
            writers.push(tokio::spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((ci * 16 + w) as u64 + 1));
                for n in 0..OPS_PER_WRITER {
                    random_write(&c, &admin, &tenant, &mut rng, n).await;
                }
            }));
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    // A deletion is a change too (a removal in the delta).
    let last = tenants[0].servers[0];
    t.delete(&format!("/v1/servers/{last}"), &t.admin)
        .await
        .expect(204);
    final_revision.store(t.revision().await, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);

    for (zone, edge) in ZONES.into_iter().zip(edges) {
        let model = edge.await.unwrap();
        let edge = t.edge_token(zone).await;
        let r = t
            .get(&format!("{SYNC_PATH}?zone={zone}&wait=0"), &edge)
            .await
            .expect(200);
        let SyncResponse::Snapshot { servers, .. } = serde_json::from_value(r.body).unwrap() else {
            panic!("first contact is a snapshot")
        };
        let fresh: BTreeMap<i64, ServerPolicy> =
            servers.into_iter().map(|s| (s.server_id, s)).collect();
        assert_eq!(
            model.keys().collect::<Vec<_>>(),
            fresh.keys().collect::<Vec<_>>(),
            "{zone}: the servers the edge holds"
        );
        for (id, policy) in &fresh {
            assert_eq!(
                &model[id], policy,
                "{zone}: the edge's policy of server {id} differs from the store's"
            );
        }
    }

    // Gapless, in commit order: one audit entry per commit, written by it.
    let rows = sqlx::query("SELECT revision FROM audit ORDER BY id")
        .fetch_all(t.store().pool())
        .await
        .unwrap();
    let revisions: Vec<i64> = rows.iter().map(|r| r.try_get(0).unwrap()).collect();
    let expected: Vec<i64> = (1..=revisions.len() as i64).collect();
    assert_eq!(
        revisions, expected,
        "audit revisions in commit order are 1, 2, 3, ..."
    );
    assert_eq!(
        t.revision().await,
        revisions.len() as u64,
        "every revision has its commit"
    );
    if let Some(r) = replica {
        r.stop().await.unwrap();
    }
}
