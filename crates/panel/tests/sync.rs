//! Edge sync: snapshots, deltas, long-poll wake-ups and timeouts, on SQLite
//! and PostgreSQL; on PostgreSQL also across two panel replicas.

mod common;

use common::{Backend, TestPanel};
use model::network::sync::{SyncResponse, SYNC_PATH};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

backend_tests! {
    first_contact_gets_a_snapshot_of_the_zone,
    delta_after_a_change,
    removals_and_zone_moves_are_deltas,
    long_poll_wakes_within_milliseconds_of_a_commit,
    unchanged_after_the_wait,
    changes_in_other_zones_do_not_answer_a_poll,
    edge_tokens_are_bound_to_their_zone,
    gaps_beyond_the_bridge_get_a_snapshot,
}

async fn poll(
    t: &TestPanel,
    token: &str,
    zone: &str,
    since: Option<u64>,
    wait: u64,
) -> SyncResponse {
    let mut path = format!("{SYNC_PATH}?zone={zone}&wait={wait}");
    if let Some(s) = since {
        path.push_str(&format!("&since={s}"));
    }
    let r = t.get(&path, token).await.expect(200);
    serde_json::from_value(r.body)
        .unwrap_or_else(|e| panic!("not a SyncResponse ({e}): {}", r.text))
}

fn revision(r: &SyncResponse) -> u64 {
    match r {
        SyncResponse::Snapshot { revision, .. }
        | SyncResponse::Delta { revision, .. }
        | SyncResponse::Unchanged { revision } => *revision,
    }
}

async fn first_contact_gets_a_snapshot_of_the_zone(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let s1 = t.server(a, "s1", "VPS", "fra1", json!({})).await;
    let s2 = t.server(a, "s2", "VDS", "fra1", json!({})).await;
    t.server(a, "elsewhere", "VPS", "ams1", json!({})).await;
    let fw = t.firewall(&ta, "fw", json!([{"preset": "SSH", "sources": ["198.51.100.0/24"]}, {"protocol": "udp", "port": "53", "enabled": false}])).await;
    t.post(
        &format!("/v1/firewalls/{fw}/assignments"),
        &ta,
        json!({"server_id": s1}),
    )
    .await
    .expect(200);
    t.post_empty(&format!("/v1/firewalls/{fw}/enable"), &ta)
        .await
        .expect(200);
    let edge = t.edge_token("fra1").await;
    let resp = poll(&t, &edge, "fra1", None, 0).await;
    let SyncResponse::Snapshot { revision, servers } = resp else {
        panic!("expected a snapshot, got {resp:?}")
    };
    assert_eq!(revision, t.revision().await);
    assert_eq!(
        servers.iter().map(|s| s.server_id).collect::<Vec<_>>(),
        vec![s1, s2],
        "only the zone's servers"
    );
    let p1 = &servers[0];
    assert!(p1.enforced);
    assert_eq!(p1.addresses.len(), 2, "IPv4 and IPv6");
    assert_eq!(p1.rules.len(), 1, "only enabled rules");
    assert_eq!(p1.rules[0].firewall_id, fw);
    assert_eq!(p1.rules[0].sources[0].to_string(), "198.51.100.0/24");
    assert!(p1.validate().is_ok());
    assert!(
        !servers[1].enforced && servers[1].rules.is_empty(),
        "no active firewall: not filtered"
    );
    // since=0 is first contact too.
    assert!(matches!(
        poll(&t, &edge, "fra1", Some(0), 0).await,
        SyncResponse::Snapshot { .. }
    ));
}

async fn delta_after_a_change(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let s1 = t.server(a, "s1", "VPS", "fra1", json!({})).await;
    let s2 = t.server(a, "s2", "VPS", "fra1", json!({})).await;
    let fw = t.firewall(&ta, "fw", json!([{"preset": "SSH"}])).await;
    t.post(
        &format!("/v1/firewalls/{fw}/assignments"),
        &ta,
        json!({"server_ids": [s1]}),
    )
    .await
    .expect(200);
    t.post_empty(&format!("/v1/firewalls/{fw}/enable"), &ta)
        .await
        .expect(200);
    let edge = t.edge_token("fra1").await;
    let r0 = revision(&poll(&t, &edge, "fra1", None, 0).await);
    t.post(
        &format!("/v1/firewalls/{fw}/rules"),
        &ta,
        json!({"preset": "HTTPS"}),
    )
    .await
    .expect(201);
    let resp = poll(&t, &edge, "fra1", Some(r0), 0).await;
    let SyncResponse::Delta {
        from,
        revision,
        changed,
        removed,
    } = resp
    else {
        panic!("expected a delta, got {resp:?}")
    };
    assert_eq!(from, r0);
    assert_eq!(revision, r0 + 1);
    assert!(removed.is_empty());
    assert_eq!(changed.len(), 1, "only the server whose policy changed");
    assert_eq!(changed[0].server_id, s1);
    assert_eq!(changed[0].revision, r0 + 1);
    assert_eq!(changed[0].rules.len(), 2);
    let _ = s2;
    // Nothing new since: unchanged at once with wait=0.
    assert_eq!(
        poll(&t, &edge, "fra1", Some(revision), 0).await,
        SyncResponse::Unchanged { revision }
    );
}

async fn removals_and_zone_moves_are_deltas(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, _) = t.customer("a").await;
    let s1 = t.server(a, "s1", "VPS", "fra1", json!({})).await;
    let s2 = t.server(a, "s2", "VPS", "fra1", json!({})).await;
    let fra = t.edge_token("fra1").await;
    let ams = t.edge_token("ams1").await;
    let r0 = revision(&poll(&t, &fra, "fra1", None, 0).await);
    let a0 = revision(&poll(&t, &ams, "ams1", None, 0).await);
    t.delete(&format!("/v1/servers/{s1}"), &t.admin)
        .await
        .expect(204);
    t.patch(
        &format!("/v1/servers/{s2}"),
        &t.admin,
        json!({"zone": "ams1"}),
    )
    .await
    .expect(200);
    let resp = poll(&t, &fra, "fra1", Some(r0), 0).await;
    let SyncResponse::Delta {
        changed, removed, ..
    } = resp
    else {
        panic!("expected a delta, got {resp:?}")
    };
    assert!(changed.is_empty());
    assert_eq!(removed, vec![s1, s2]);
    let resp = poll(&t, &ams, "ams1", Some(a0), 0).await;
    let SyncResponse::Delta {
        changed, removed, ..
    } = resp
    else {
        panic!("expected a delta, got {resp:?}")
    };
    assert_eq!(
        changed.iter().map(|p| p.server_id).collect::<Vec<_>>(),
        vec![s2]
    );
    assert!(removed.is_empty());
    // Back again: changed in fra1, not removed.
    let r1 = t.revision().await;
    t.patch(
        &format!("/v1/servers/{s2}"),
        &t.admin,
        json!({"zone": "fra1"}),
    )
    .await
    .expect(200);
    let resp = poll(&t, &fra, "fra1", Some(r0), 0).await;
    let SyncResponse::Delta {
        changed, removed, ..
    } = resp
    else {
        panic!("expected a delta, got {resp:?}")
    };
    assert_eq!(
        changed.iter().map(|p| p.server_id).collect::<Vec<_>>(),
        vec![s2]
    );
    assert_eq!(removed, vec![s1]);
    let resp = poll(&t, &ams, "ams1", Some(r1), 0).await;
    assert!(
        matches!(resp, SyncResponse::Delta { ref removed, .. } if removed == &vec![s2]),
        "{resp:?}"
    );
}

async fn long_poll_wakes_within_milliseconds_of_a_commit(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let s = t.server(a, "s1", "VPS", "fra1", json!({})).await;
    let fw = t.firewall(&ta, "fw", json!([])).await;
    t.post(
        &format!("/v1/firewalls/{fw}/assignments"),
        &ta,
        json!({"server_id": s}),
    )
    .await
    .expect(200);
    t.post_empty(&format!("/v1/firewalls/{fw}/enable"), &ta)
        .await
        .expect(200);
    let edge = t.edge_token("fra1").await;
    let r0 = revision(&poll(&t, &edge, "fra1", None, 0).await);
    let (client, url, edge2) = (t.client.clone(), t.url.clone(), edge.clone());
    let started = Instant::now();
    let waiter = tokio::spawn(async move {
        let r = common::call(
            &client,
            &url,
            Method::GET,
            &format!("{SYNC_PATH}?zone=fra1&since={r0}&wait=30"),
            Some(&edge2),
            None,
            &[],
        )
        .await;
        (Instant::now(), r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiter.is_finished(),
        "the poll is held while nothing changes"
    );
    t.post(
        &format!("/v1/firewalls/{fw}/rules"),
        &ta,
        json!({"preset": "SSH"}),
    )
    .await
    .expect(201);
    let committed = Instant::now();
    let (returned, r) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("poll returned")
        .unwrap();
    let resp: SyncResponse = serde_json::from_value(r.expect(200).body).unwrap();
    let latency = returned.saturating_duration_since(committed);
    assert!(
        latency < Duration::from_millis(500),
        "woke {latency:?} after the commit"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let SyncResponse::Delta { changed, .. } = resp else {
        panic!("expected a delta, got {resp:?}")
    };
    assert_eq!(changed[0].server_id, s);
    assert_eq!(changed[0].rules.len(), 1);
}

async fn unchanged_after_the_wait(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, _) = t.customer("a").await;
    t.server(a, "s1", "VPS", "fra1", json!({})).await;
    let edge = t.edge_token("fra1").await;
    let r0 = revision(&poll(&t, &edge, "fra1", None, 0).await);
    let started = Instant::now();
    let resp = poll(&t, &edge, "fra1", Some(r0), 1).await;
    let took = started.elapsed();
    assert_eq!(resp, SyncResponse::Unchanged { revision: r0 });
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(5),
        "held {took:?}"
    );
}

async fn changes_in_other_zones_do_not_answer_a_poll(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, _) = t.customer("a").await;
    t.server(a, "s1", "VPS", "fra1", json!({})).await;
    let edge = t.edge_token("fra1").await;
    let r0 = revision(&poll(&t, &edge, "fra1", None, 0).await);
    let (client, url, e2) = (t.client.clone(), t.url.clone(), edge.clone());
    let started = Instant::now();
    let waiter = tokio::spawn(async move {
        common::call(
            &client,
            &url,
            Method::GET,
            &format!("{SYNC_PATH}?zone=fra1&since={r0}&wait=2"),
            Some(&e2),
            None,
            &[],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = t.server(a, "s2", "VPS", "ams1", json!({})).await;
    let resp: SyncResponse =
        serde_json::from_value(waiter.await.unwrap().expect(200).body).unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "held for the whole wait"
    );
    // Nothing changed in fra1 up to the revision that added the ams1 server.
    let SyncResponse::Unchanged { revision } = resp else {
        panic!("expected unchanged, got {resp:?}")
    };
    assert!(
        revision > r0,
        "the edge may skip the other zone's revisions"
    );
    let _ = other;
}

async fn edge_tokens_are_bound_to_their_zone(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, ta) = t.customer("a").await;
    let edge = t.edge_token("fra1").await;
    let r = t
        .get(&format!("{SYNC_PATH}?zone=ams1&wait=0"), &edge)
        .await
        .expect(403);
    assert_eq!(r.field(), Some("zone"));
    assert_eq!(
        t.get(&format!("{SYNC_PATH}?wait=0"), &edge)
            .await
            .expect(400)
            .field(),
        Some("zone")
    );
    assert_eq!(
        t.get(&format!("{SYNC_PATH}?zone=fra1&since=x"), &edge)
            .await
            .expect(400)
            .field(),
        Some("since")
    );
    t.get(&format!("{SYNC_PATH}?zone=fra1&wait=0"), &ta)
        .await
        .expect(403);
    t.get(&format!("{SYNC_PATH}?zone=fra1&wait=0"), &t.admin)
        .await
        .expect(403);
    // Edge tokens can do nothing else.
    t.get("/v1/firewalls", &edge).await.expect(403);
    t.get("/v1/servers", &edge).await.expect(403);
    t.get("/v1/customers", &edge).await.expect(403);
    // Revoked: 401.
    let list = t.get("/v1/tokens?limit=1000", &t.admin).await.body;
    let id = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "edge")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    t.delete(&format!("/v1/tokens/{id}"), &t.admin)
        .await
        .expect(200);
    t.get(&format!("{SYNC_PATH}?zone=fra1&wait=0"), &edge)
        .await
        .expect(401);
}

async fn gaps_beyond_the_bridge_get_a_snapshot(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, _) = t.customer("a").await;
    let s1 = t.server(a, "s1", "VPS", "fra1", json!({})).await;
    let s2 = t.server(a, "s2", "VPS", "fra1", json!({})).await;
    let edge = t.edge_token("fra1").await;
    let r0 = revision(&poll(&t, &edge, "fra1", None, 0).await);
    t.delete(&format!("/v1/servers/{s1}"), &t.admin)
        .await
        .expect(204);
    // Forget every removal: an edge at r0 can no longer be told about s1 by a delta.
    assert_eq!(t.store().prune_tombstones(-1000).await.unwrap(), 1);
    let resp = poll(&t, &edge, "fra1", Some(r0), 0).await;
    let SyncResponse::Snapshot { servers, .. } = resp else {
        panic!("expected a snapshot, got {resp:?}")
    };
    assert_eq!(
        servers.iter().map(|s| s.server_id).collect::<Vec<_>>(),
        vec![s2]
    );
    // An edge claiming a revision the panel never reached also gets a snapshot.
    assert!(matches!(
        poll(&t, &edge, "fra1", Some(1_000_000), 0).await,
        SyncResponse::Snapshot { .. }
    ));
    // An edge that is current gets deltas again.
    let now = t.revision().await;
    assert_eq!(
        poll(&t, &edge, "fra1", Some(now), 0).await,
        SyncResponse::Unchanged { revision: now }
    );
}

/// PostgreSQL only: a change committed through replica A wakes a long-poll
/// held by replica B (LISTEN/NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commit_on_one_replica_wakes_polls_on_another() {
    let t = TestPanel::start(Backend::Postgres).await;
    let b = t.replica().await;
    let (a, ta) = t.customer("a").await;
    let s = t.server(a, "s1", "VPS", "fra1", json!({})).await;
    let fw = t.firewall(&ta, "fw", json!([])).await;
    t.post(
        &format!("/v1/firewalls/{fw}/assignments"),
        &ta,
        json!({"server_id": s}),
    )
    .await
    .expect(200);
    t.post_empty(&format!("/v1/firewalls/{fw}/enable"), &ta)
        .await
        .expect(200);
    let edge = t.edge_token("fra1").await;
    let r0 = revision(&poll(&t, &edge, "fra1", None, 0).await);
    // Let B's listener connect (it reports nothing, so poll B until it answers).
    let client = t.client.clone();
    let b_url = b.url();
    common::call(
        &client,
        &b_url,
        Method::GET,
        &format!("{SYNC_PATH}?zone=fra1&since={r0}&wait=0"),
        Some(&edge),
        None,
        &[],
    )
    .await
    .expect(200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (c2, u2, e2) = (client.clone(), b_url.clone(), edge.clone());
    let waiter = tokio::spawn(async move {
        let r = common::call(
            &c2,
            &u2,
            Method::GET,
            &format!("{SYNC_PATH}?zone=fra1&since={r0}&wait=30"),
            Some(&e2),
            None,
            &[],
        )
        .await;
        (Instant::now(), r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "B holds the poll");
    // The change goes through A.
    t.post(
        &format!("/v1/firewalls/{fw}/rules"),
        &ta,
        json!({"preset": "SSH"}),
    )
    .await
    .expect(201);
    let committed = Instant::now();
    let (returned, r) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("B's poll returned")
        .unwrap();
    let latency = returned.saturating_duration_since(committed);
    assert!(
        latency < Duration::from_secs(1),
        "B woke {latency:?} after A's commit (its recheck interval is 10 s)"
    );
    let resp: SyncResponse = serde_json::from_value(r.expect(200).body).unwrap();
    let SyncResponse::Delta { changed, .. } = resp else {
        panic!("expected a delta, got {resp:?}")
    };
    assert_eq!(changed[0].server_id, s);
    assert_eq!(changed[0].rules.len(), 1);
    b.stop().await.unwrap();
}
