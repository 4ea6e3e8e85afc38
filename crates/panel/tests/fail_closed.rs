//! Fail closed on stored data: a row that does not decode (an unknown
//! protocol, a source that is not a network, a port out of range, server
//! labels or a selector that do not parse) makes the read fail; it is never
//! read as a wider rule (`any`, every port, "from anywhere") or as a server
//! that drops out of its firewall. The edge's sync answers an error, so the
//! edge keeps the last policy it applied.

mod common;

use common::{Backend, TestPanel};
use model::network::sync::{SyncResponse, SYNC_PATH};
use serde_json::json;

backend_tests! {
    a_corrupt_rule_is_an_error_never_a_wider_rule,
    a_corrupt_server_or_selector_is_an_error,
}

/// A panel with one enforced server: firewall `fw` (one SSH rule from
/// 198.51.100.0/24) assigned by id, and a second firewall by selector.
async fn setup(b: Backend) -> (TestPanel, String, i64, i64, String) {
    let t = TestPanel::start(b).await;
    let (c, token) = t.customer("acme").await;
    let server = t
        .server(c, "web-1", "VPS", "fra1", json!({"env": "prod"}))
        .await;
    let fw = t
        .firewall(
            &token,
            "fw",
            json!([{"preset": "SSH", "sources": ["198.51.100.0/24"]}]),
        )
        .await;
    t.post(
        &format!("/v1/firewalls/{fw}/assignments"),
        &token,
        json!({"server_id": server}),
    )
    .await
    .expect(200);
    t.post_empty(&format!("/v1/firewalls/{fw}/enable"), &token)
        .await
        .expect(200);
    let by_label = t
        .firewall(
            &token,
            "by-label",
            json!([{"protocol": "udp", "port": "53"}]),
        )
        .await;
    t.post(
        &format!("/v1/firewalls/{by_label}/assignments"),
        &token,
        json!({"selector": "env=prod"}),
    )
    .await
    .expect(200);
    t.post_empty(&format!("/v1/firewalls/{by_label}/enable"), &token)
        .await
        .expect(200);
    let edge = t.edge_token("fra1").await;
    // The uncorrupted policy reads fine.
    let r = t
        .get(&format!("{SYNC_PATH}?zone=fra1&wait=0"), &edge)
        .await
        .expect(200);
    let snap: SyncResponse = serde_json::from_value(r.body).unwrap();
    let SyncResponse::Snapshot { servers, .. } = snap else {
        panic!("first contact is a snapshot")
    };
    assert_eq!(servers[0].rules.len(), 2);
    (t, token, fw, server, edge)
}

async fn corrupt(t: &TestPanel, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(t.store().pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The edge's sync fails (no snapshot, so no wider policy) and so does the
/// customer's view of the firewall.
async fn reads_fail(t: &TestPanel, token: &str, fw: i64, edge: &str, what: &str) {
    for since in ["", "&since=1"] {
        let r = t
            .get(&format!("{SYNC_PATH}?zone=fra1&wait=0{since}"), edge)
            .await;
        assert_eq!(
            r.status.as_u16(),
            500,
            "{what}: the sync must fail, not answer {}",
            r.text
        );
    }
    let r = t.get(&format!("/v1/firewalls/{fw}"), token).await;
    assert_eq!(
        r.status.as_u16(),
        500,
        "{what}: the firewall read must fail, not answer {}",
        r.text
    );
}

async fn a_corrupt_rule_is_an_error_never_a_wider_rule(b: Backend) {
    for (what, set) in [
        ("unknown protocol", "protocol = 'sctp'"),
        ("empty protocol", "protocol = ''"),
        ("source not a network", "sources = '198.51.100.0/33'"),
        (
            "one bad source among good ones",
            "sources = '198.51.100.0/24,not-an-address'",
        ),
        ("port out of range", "port_start = 70000, port_end = 70000"),
        ("port end without a start", "port_start = NULL"),
        ("reversed range", "port_start = 30, port_end = 22"),
    ] {
        let (t, token, fw, _, edge) = setup(b).await;
        corrupt(
            &t,
            &format!("UPDATE rules SET {set} WHERE firewall_id = {fw}"),
        )
        .await;
        reads_fail(&t, &token, fw, &edge, what).await;
    }
}

async fn a_corrupt_server_or_selector_is_an_error(b: Backend) {
    for (what, sql) in [
        ("unknown server kind", "UPDATE servers SET kind = 'Cloud'"),
        ("labels not JSON", "UPDATE servers SET labels = '{env'"),
        (
            "address not an address",
            "UPDATE servers SET ipv4 = '203.0.113.300'",
        ),
        (
            "selector does not parse",
            "UPDATE selectors SET selector = 'env'",
        ),
    ] {
        let (t, token, fw, server, edge) = setup(b).await;
        corrupt(&t, sql).await;
        for since in ["", "&since=1"] {
            let r = t
                .get(&format!("{SYNC_PATH}?zone=fra1&wait=0{since}"), &edge)
                .await;
            assert_eq!(
                r.status.as_u16(),
                500,
                "{what}: the sync must fail, not answer {}",
                r.text
            );
        }
        let r = t.get(&format!("/v1/servers/{server}/status"), &token).await;
        assert_eq!(
            r.status.as_u16(),
            500,
            "{what}: the server status must fail, not answer {}",
            r.text
        );
        let _ = fw;
    }
}
