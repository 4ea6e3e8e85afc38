//! Bounded work per request: a request that would touch more than the
//! documented limits is refused (422) with the field and the limit named,
//! and changes nothing.

mod common;

use common::{Backend, TestPanel};
use panel::store::{MAX_SERVERS_PER_SELECTOR, MAX_SERVER_IDS_PER_REQUEST};
use serde_json::json;

backend_tests! {
    too_many_server_ids_in_one_assignment,
    a_selector_that_selects_too_many_servers,
}

async fn too_many_server_ids_in_one_assignment(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, token) = t.customer("acme").await;
    let fw = t.firewall(&token, "fw", json!([])).await;
    let before = t.revision().await;
    let ids: Vec<i64> = (1..=MAX_SERVER_IDS_PER_REQUEST as i64 + 1).collect();
    let r = t
        .post(
            &format!("/v1/firewalls/{fw}/assignments"),
            &token,
            json!({"server_ids": ids}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("server_ids"));
    assert!(
        r.message()
            .contains(&MAX_SERVER_IDS_PER_REQUEST.to_string()),
        "the limit is named: {}",
        r.message()
    );
    assert_eq!(t.revision().await, before, "nothing changed");
}

async fn a_selector_that_selects_too_many_servers(b: Backend) {
    let t = TestPanel::start(b).await;
    let (customer, token) = t.customer("acme").await;
    // More servers than a selector may select, inserted directly (the API
    // would take minutes for this many).
    let n = MAX_SERVERS_PER_SELECTOR as i64 + 1;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {n}) \
         INSERT INTO servers (customer_id, name, kind, ipv4, ipv6, zone, labels, policy_revision, created_at) \
         SELECT {customer}, 'bulk-' || x, 'VPS', '', '', 'fra1', '{{\"env\":\"big\"}}', 0, 0 FROM g"
    )))
    .execute(t.store().pool())
    .await
    .unwrap();
    let fw = t.firewall(&token, "fw", json!([])).await;
    let before = t.revision().await;
    let r = t
        .post(
            &format!("/v1/firewalls/{fw}/assignments"),
            &token,
            json!({"selector": "env=big"}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("selector"));
    assert!(
        r.message().contains(&MAX_SERVERS_PER_SELECTOR.to_string()),
        "the limit is named: {}",
        r.message()
    );
    assert_eq!(t.revision().await, before, "nothing changed");
    // A narrower selector is fine.
    t.post(
        &format!("/v1/firewalls/{fw}/assignments"),
        &token,
        json!({"selector": "env=small"}),
    )
    .await
    .expect(200);
}
