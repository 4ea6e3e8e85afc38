//! IP lists over the API (`/v1/lists`), on SQLite and PostgreSQL: create,
//! add, remove, replace, ETags and If-Match, the limits, bad entries named
//! by their index, tenant isolation, the audit log and the global revision.

mod common;

use common::{Backend, TestPanel};
use reqwest::Method;
use serde_json::{json, Value};

backend_tests! {
    lists_are_created_read_and_listed,
    entries_are_added_removed_and_replaced,
    if_match_is_honoured_as_for_firewalls,
    bad_input_names_the_field_and_changes_nothing,
    limits_are_named_and_refused,
    another_customers_list_is_not_found,
    openapi_documents_the_list_operations,
    stored_entries_that_do_not_decode_fail_closed,
}

fn entries(v: &Value) -> Vec<&str> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect()
}

/// The list actions of the customer's audit log, oldest first.
async fn actions(t: &TestPanel, token: &str) -> Vec<String> {
    let log = t.get("/v1/audit", token).await.expect(200).body;
    let mut out: Vec<String> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .filter(|a| a.starts_with("list."))
        .collect();
    out.reverse();
    out
}

async fn lists_are_created_read_and_listed(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, tok) = t.customer("acme").await;
    let rev0 = t.revision().await;
    let r = t
        .post(
            "/v1/lists",
            &tok,
            json!({
                "name": "office",
                "description": "our offices",
                "entries": ["10.0.1.0/25", "10.0.0.0/24", " 198.51.100.7 ", "10.0.0.128/25",
                            "2001:db8:8000::/33", "2001:db8::/33", "10.0.0.0/24"],
            }),
        )
        .await
        .expect(201);
    let id = r.body["id"].as_i64().unwrap();
    // The write advanced the global revision, and the list carries it as its ETag.
    let rev1 = t.revision().await;
    assert_eq!(rev1, rev0 + 1);
    assert_eq!(r.body["revision"], rev1);
    assert_eq!(r.etag(), format!("\"r{rev1}\""));
    // Sorted, duplicates kept once, a host shown as an address.
    assert_eq!(
        entries(&r.body),
        [
            "10.0.0.0/24",
            "10.0.0.128/25",
            "10.0.1.0/25",
            "198.51.100.7",
            "2001:db8::/33",
            "2001:db8:8000::/33"
        ]
    );
    // 10.0.0.0/24 + 10.0.1.0/25 (the /25 inside is merged away) and the two
    // IPv6 halves are one range each.
    assert_eq!(r.body["entry_count"], 6);
    assert_eq!(r.body["range_count"], 3);
    assert_eq!(r.body["merged_away"], 3);

    let g = t.get(&format!("/v1/lists/{id}"), &tok).await.expect(200);
    assert_eq!(g.etag(), r.etag());
    assert_eq!(g.body, r.body);
    assert_eq!(g.body["name"], "office");
    assert_eq!(g.body["description"], "our offices");

    // Empty lists, and paging like the other collections.
    for name in ["bans", "partners"] {
        t.post("/v1/lists", &tok, json!({"name": name}))
            .await
            .expect(201);
    }
    let p1 = t.get("/v1/lists?limit=2", &tok).await.expect(200).body;
    let names: Vec<&str> = p1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["office", "bans"]);
    assert_eq!(p1["items"][0]["entry_count"], 6);
    assert_eq!(p1["items"][0]["range_count"], 3);
    assert!(p1["items"][0].get("entries").is_none(), "{p1}");
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2 = t
        .get(&format!("/v1/lists?limit=2&cursor={cursor}"), &tok)
        .await
        .expect(200)
        .body;
    assert_eq!(p2["items"][0]["name"], "partners");
    assert_eq!(p2["items"][0]["entry_count"], 0);
    assert!(p2["next_cursor"].is_null());
    t.get("/v1/lists?limit=0", &tok).await.expect(400);
    t.get("/v1/lists?color=red", &tok).await.expect(400);

    // Delete.
    let before = t.revision().await;
    t.delete(&format!("/v1/lists/{id}"), &tok).await.expect(204);
    assert_eq!(t.revision().await, before + 1);
    t.get(&format!("/v1/lists/{id}"), &tok).await.expect(404);
    t.delete(&format!("/v1/lists/{id}"), &tok).await.expect(404);
    assert_eq!(
        actions(&t, &tok).await,
        ["list.create", "list.create", "list.create", "list.delete"]
    );
    // Every audit entry of a list write carries the revision it committed as.
    let log = t.get("/v1/audit", &tok).await.expect(200).body;
    assert_eq!(log["items"][0]["target"], format!("list/{id}"));
    assert_eq!(log["items"][0]["revision"], before + 1);
    assert_eq!(log["items"][0]["actor_kind"], "token");

    // Deleting the customer deletes its lists with it.
    let cid = r.body["customer_id"].as_i64().unwrap();
    t.delete(&format!("/v1/customers/{cid}"), &t.admin)
        .await
        .expect(204);
    let (_, again) = t.customer("acme").await;
    t.post("/v1/lists", &again, json!({"name": "bans"}))
        .await
        .expect(201);
    let left = sqlx_count(&t).await;
    assert_eq!(left, 1, "only the new customer's list is left");
}

/// How many lists the database holds, over all customers.
async fn sqlx_count(t: &TestPanel) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM lists")
        .fetch_one(t.store().pool())
        .await
        .unwrap()
}

async fn entries_are_added_removed_and_replaced(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, tok) = t.customer("acme").await;
    let id = t
        .post(
            "/v1/lists",
            &tok,
            json!({"name": "bans", "entries": ["192.0.2.1"]}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_i64()
        .unwrap();
    let path = format!("/v1/lists/{id}/entries");

    // Add: new ones join, one already there changes nothing.
    let r = t
        .post(
            &path,
            &tok,
            json!({"entries": ["192.0.2.3", "192.0.2.1", "2001:db8::1"]}),
        )
        .await
        .expect(200);
    assert_eq!(entries(&r.body), ["192.0.2.1", "192.0.2.3", "2001:db8::1"]);
    assert_eq!(r.etag(), format!("\"r{}\"", t.revision().await));
    assert_eq!(r.body["entry_count"], 3);
    assert_eq!(r.body["range_count"], 3);

    // Remove, by address or by the same network written as /32.
    let r = t
        .call(
            Method::DELETE,
            &path,
            Some(&tok),
            Some(json!({"entries": ["192.0.2.3/32", "203.0.113.9"]})),
        )
        .await
        .expect(200);
    assert_eq!(entries(&r.body), ["192.0.2.1", "2001:db8::1"]);

    // Replace all.
    let r = t
        .put(
            &path,
            &tok,
            json!({"entries": ["203.0.113.0/25", "203.0.113.128/25"]}),
        )
        .await
        .expect(200);
    assert_eq!(entries(&r.body), ["203.0.113.0/25", "203.0.113.128/25"]);
    assert_eq!(r.body["range_count"], 1);
    assert_eq!(r.body["merged_away"], 1);

    // A change that changes nothing: same revision, no audit entry.
    let rev = t.revision().await;
    for (method, body) in [
        (
            Method::PUT,
            json!({"entries": ["203.0.113.128/25", "203.0.113.0/25"]}),
        ),
        (Method::POST, json!({"entries": ["203.0.113.0/25"]})),
        (Method::DELETE, json!({"entries": ["198.51.100.1"]})),
    ] {
        let r = t
            .call(method, &path, Some(&tok), Some(body))
            .await
            .expect(200);
        assert_eq!(r.etag(), format!("\"r{rev}\""));
    }
    assert_eq!(t.revision().await, rev);

    // Replace with nothing empties the list.
    let r = t.put(&path, &tok, json!({"entries": []})).await.expect(200);
    assert_eq!(r.body["entry_count"], 0);
    assert_eq!(r.body["range_count"], 0);
    assert_eq!(
        actions(&t, &tok).await,
        [
            "list.create",
            "list.entries.add",
            "list.entries.remove",
            "list.entries.replace",
            "list.entries.replace"
        ]
    );
    let log = t.get("/v1/audit?limit=1", &tok).await.expect(200).body;
    assert_eq!(log["items"][0]["detail"]["before"], 2);
    assert_eq!(log["items"][0]["detail"]["removed"], 2);

    // A read-only token reads, and may not change.
    let cid = r.body["customer_id"].as_i64().unwrap();
    let ro = t
        .post(
            "/v1/tokens",
            &t.admin,
            json!({"name": "ro", "customer_id": cid, "scope": "read"}),
        )
        .await
        .expect(201)
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    t.get(&format!("/v1/lists/{id}"), &ro).await.expect(200);
    t.post(&path, &ro, json!({"entries": ["192.0.2.1"]}))
        .await
        .expect(403);
    // Admins act for the provider, not for a customer: as for firewalls, 403.
    t.get("/v1/lists", &t.admin).await.expect(403);
    t.post("/v1/lists", &t.admin, json!({"name": "x"}))
        .await
        .expect(403);
}

async fn if_match_is_honoured_as_for_firewalls(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, tok) = t.customer("acme").await;
    let created = t
        .post(
            "/v1/lists",
            &tok,
            json!({"name": "office", "entries": ["192.0.2.1"]}),
        )
        .await
        .expect(201);
    let id = created.body["id"].as_i64().unwrap();
    let path = format!("/v1/lists/{id}/entries");
    let v1 = created.etag();

    // Based on the current ETag: applied, new ETag.
    let r = t
        .call_with(
            Method::POST,
            &path,
            Some(&tok),
            Some(json!({"entries": ["192.0.2.2"]})),
            &[("If-Match", &v1)],
        )
        .await
        .expect(200);
    let v2 = r.etag();
    assert_ne!(v1, v2);

    // Based on the stale one: 412 naming If-Match and the current ETag, for
    // every change; nothing changes.
    let rev = t.revision().await;
    for (method, p, body) in [
        (Method::PUT, path.as_str(), Some(json!({"entries": []}))),
        (
            Method::POST,
            path.as_str(),
            Some(json!({"entries": ["192.0.2.9"]})),
        ),
        (
            Method::DELETE,
            path.as_str(),
            Some(json!({"entries": ["192.0.2.1"]})),
        ),
        (Method::DELETE, &format!("/v1/lists/{id}"), None),
    ] {
        let r = t
            .call_with(method, p, Some(&tok), body, &[("If-Match", &v1)])
            .await
            .expect(412);
        assert_eq!(r.field(), Some("If-Match"));
        assert!(r.message().contains("the list changed"), "{}", r.message());
        assert!(r.message().contains(&v2), "{}", r.message());
        assert_eq!(r.etag(), v2);
    }
    assert_eq!(t.revision().await, rev);
    let g = t.get(&format!("/v1/lists/{id}"), &tok).await.expect(200);
    assert_eq!(entries(&g.body), ["192.0.2.1", "192.0.2.2"]);

    // Several tags: holds when one is current; `*` always; a weak tag too.
    let both = format!("{v1}, {v2}");
    let r = t
        .call_with(
            Method::POST,
            &path,
            Some(&tok),
            Some(json!({"entries": ["192.0.2.3"]})),
            &[("If-Match", &both)],
        )
        .await
        .expect(200);
    let v3 = r.etag();
    t.call_with(
        Method::POST,
        &path,
        Some(&tok),
        Some(json!({"entries": ["192.0.2.4"]})),
        &[("If-Match", "*")],
    )
    .await
    .expect(200);
    t.call_with(
        Method::DELETE,
        &format!("/v1/lists/{id}"),
        Some(&tok),
        None,
        &[("If-Match", &v3)],
    )
    .await
    .expect(412);
    let current = t
        .get(&format!("/v1/lists/{id}"), &tok)
        .await
        .expect(200)
        .etag();
    t.call_with(
        Method::DELETE,
        &format!("/v1/lists/{id}"),
        Some(&tok),
        None,
        &[("If-Match", &format!("W/{current}"))],
    )
    .await
    .expect(204);
}

async fn bad_input_names_the_field_and_changes_nothing(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, tok) = t.customer("acme").await;
    let id = t
        .post(
            "/v1/lists",
            &tok,
            json!({"name": "office", "entries": ["192.0.2.1"]}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_i64()
        .unwrap();
    let rev = t.revision().await;

    // A bad entry: its index and the reason (the model's parser's words).
    let r = t
        .post(
            "/v1/lists",
            &tok,
            json!({"name": "bans", "entries": ["192.0.2.1", "10.0.0.1/8", "x"]}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("entries[1]"));
    assert!(r.message().contains("entry 2 of 3"), "{}", r.message());
    assert!(
        r.message()
            .contains("'10.0.0.1/8' has host bits set: did you mean 10.0.0.0/8?"),
        "{}",
        r.message()
    );
    let path = format!("/v1/lists/{id}/entries");
    for method in [Method::PUT, Method::POST, Method::DELETE] {
        let r = t
            .call(
                method,
                &path,
                Some(&tok),
                Some(json!({"entries": ["192.0.2.7", "203.0.113.300"]})),
            )
            .await
            .expect(422);
        assert_eq!(r.field(), Some("entries[1]"));
        assert!(
            r.message().contains("'203.0.113.300' is not an address"),
            "{}",
            r.message()
        );
    }
    // Names: the model's rule, with the accepted form.
    for bad in ["Office", "2bad", "", "a.b", &"x".repeat(27)] {
        let r = t
            .post("/v1/lists", &tok, json!({"name": bad}))
            .await
            .expect(422);
        assert_eq!(r.field(), Some("name"), "{bad}");
        assert!(r.message().contains("1-26 characters"), "{}", r.message());
    }
    let r = t
        .post(
            "/v1/lists",
            &tok,
            json!({"name": "x", "description": "a\u{7}b"}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("description"));
    let r = t
        .post("/v1/lists", &tok, json!({"name": "x", "color": "red"}))
        .await
        .expect(422);
    assert_eq!(r.field(), Some("color"));
    let r = t
        .post(
            "/v1/lists",
            &tok,
            json!({"name": "x", "entries": "192.0.2.1"}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("entries"));
    let r = t.put(&path, &tok, json!({})).await.expect(422);
    assert_eq!(r.field(), Some("entries"));
    t.raw(Method::PUT, &path, &tok, "application/json", b"{".to_vec())
        .await
        .expect(400);
    // A taken name: 409 naming it.
    let r = t
        .post("/v1/lists", &tok, json!({"name": "office"}))
        .await
        .expect(409);
    assert_eq!(r.field(), Some("name"));
    assert!(r.message().contains("'office'"), "{}", r.message());
    // Not a list id.
    t.get("/v1/lists/abc", &tok).await.expect(400);
    t.get("/v1/lists/999999", &tok).await.expect(404);

    assert_eq!(t.revision().await, rev);
    let g = t.get(&format!("/v1/lists/{id}"), &tok).await.expect(200);
    assert_eq!(entries(&g.body), ["192.0.2.1"]);
    assert_eq!(
        t.get("/v1/lists", &tok).await.expect(200).body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// `n` distinct IPv4 hosts in 10.`block`.0.0/16 and beyond.
fn hosts(block: u32, n: u32) -> Vec<String> {
    (0..n)
        .map(|i| std::net::Ipv4Addr::from((10 << 24) + (block << 17) + i).to_string())
        .collect()
}

async fn limits_are_named_and_refused(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, tok) = t.customer("acme").await;

    // 100,000 entries in one list is fine; 100,001 is refused naming the limit.
    let full = t
        .post(
            "/v1/lists",
            &tok,
            json!({"name": "l0", "entries": hosts(0, 100_000)}),
        )
        .await
        .expect(201);
    assert_eq!(full.body["entry_count"], 100_000);
    assert_eq!(
        full.body["range_count"], 1,
        "consecutive hosts merge into one range"
    );
    let id0 = full.body["id"].as_i64().unwrap();
    let rev = t.revision().await;
    let r = t
        .post(
            "/v1/lists",
            &tok,
            json!({"name": "big", "entries": hosts(40, 100_001)}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("entries"));
    assert!(
        r.message().contains("at most 100000 entries"),
        "{}",
        r.message()
    );
    let path0 = format!("/v1/lists/{id0}/entries");
    let r = t
        .post(&path0, &tok, json!({"entries": ["192.0.2.1"]}))
        .await
        .expect(422);
    assert_eq!(r.field(), Some("entries"));
    assert!(
        r.message()
            .contains("at most 100000 entries; this would make 100001"),
        "{}",
        r.message()
    );
    // Adding what is already there is no growth.
    t.post(&path0, &tok, json!({"entries": ["10.0.0.5"]}))
        .await
        .expect(200);
    assert_eq!(t.revision().await, rev);

    // 1,000,000 entries over all of a customer's lists.
    for block in 1..10 {
        t.post(
            "/v1/lists",
            &tok,
            json!({"name": format!("l{block}"), "entries": hosts(block, 100_000)}),
        )
        .await
        .expect(201);
    }
    let rev = t.revision().await;
    let r = t
        .post(
            "/v1/lists",
            &tok,
            json!({"name": "one-more", "entries": ["192.0.2.1"]}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("entries"));
    assert!(
        r.message()
            .contains("at most 1000000 entries together; this would make 1000001"),
        "{}",
        r.message()
    );
    // Replacing a full list with as many others keeps the total.
    t.put(&path0, &tok, json!({"entries": hosts(20, 100_000)}))
        .await
        .expect(200);
    let r = t
        .call(
            Method::DELETE,
            &path0,
            Some(&tok),
            Some(json!({"entries": ["192.0.2.99"]})),
        )
        .await
        .expect(200);
    assert_eq!(r.body["entry_count"], 100_000, "removing what is not there");
    let r = t
        .put(&path0, &tok, json!({"entries": hosts(20, 99_999)}))
        .await
        .expect(200);
    assert_eq!(r.body["entry_count"], 99_999);
    t.post(
        "/v1/lists",
        &tok,
        json!({"name": "one-more", "entries": ["192.0.2.1"]}),
    )
    .await
    .expect(201);
    assert_eq!(t.revision().await, rev + 3, "two replaces and a create");

    // Another customer has its own allowance.
    let (_, other) = t.customer("globex").await;
    t.post(
        "/v1/lists",
        &other,
        json!({"name": "l0", "entries": hosts(0, 1000)}),
    )
    .await
    .expect(201);

    // At most 100 lists per customer (11 so far).
    for i in 0..89 {
        t.post("/v1/lists", &tok, json!({"name": format!("e{i}")}))
            .await
            .expect(201);
    }
    let r = t
        .post("/v1/lists", &tok, json!({"name": "e-too-many"}))
        .await
        .expect(422);
    assert!(r.message().contains("at most 100 lists"), "{}", r.message());
}

async fn another_customers_list_is_not_found(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, alice) = t.customer("alice").await;
    let (_, bob) = t.customer("bob").await;
    let id = t
        .post(
            "/v1/lists",
            &alice,
            json!({"name": "office", "entries": ["192.0.2.1"]}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_i64()
        .unwrap();
    let etag = t
        .get(&format!("/v1/lists/{id}"), &alice)
        .await
        .expect(200)
        .etag();
    let one = path_entries(id);
    for (method, path, body) in [
        (Method::GET, format!("/v1/lists/{id}"), None),
        (Method::PUT, one.clone(), Some(json!({"entries": []}))),
        (
            Method::POST,
            one.clone(),
            Some(json!({"entries": ["198.51.100.1"]})),
        ),
        (
            Method::DELETE,
            one.clone(),
            Some(json!({"entries": ["192.0.2.1"]})),
        ),
        (Method::DELETE, format!("/v1/lists/{id}"), None),
    ] {
        let r = t
            .call_with(method.clone(), &path, Some(&bob), body.clone(), &[])
            .await
            .expect(404);
        assert_eq!(
            r.message(),
            format!("list {id} not found"),
            "{method} {path}"
        );
        // The same with her ETag: still 404, never 412 (which would tell it exists).
        t.call_with(method, &path, Some(&bob), body, &[("If-Match", &etag)])
            .await
            .expect(404);
    }
    // Bob sees none of hers, and may use the same name.
    let bobs = t.get("/v1/lists", &bob).await.expect(200).body;
    assert_eq!(bobs["items"], json!([]));
    t.post("/v1/lists", &bob, json!({"name": "office"}))
        .await
        .expect(201);
    // Hers is untouched.
    let g = t.get(&format!("/v1/lists/{id}"), &alice).await.expect(200);
    assert_eq!(g.etag(), etag);
    assert_eq!(entries(&g.body), ["192.0.2.1"]);
    assert_eq!(
        t.get("/v1/lists", &alice).await.expect(200).body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn path_entries(id: i64) -> String {
    format!("/v1/lists/{id}/entries")
}

async fn openapi_documents_the_list_operations(b: Backend) {
    let t = TestPanel::start(b).await;
    let doc = t
        .call(Method::GET, "/v1/openapi.json", None, None)
        .await
        .expect(200)
        .body;
    let codes = |path: &str, method: &str| -> Vec<String> {
        let mut c: Vec<String> = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} missing"))
            .keys()
            .cloned()
            .collect();
        c.sort();
        c
    };
    assert_eq!(
        codes("/v1/lists", "post"),
        ["201", "400", "401", "403", "409", "413", "415", "422"]
    );
    assert_eq!(codes("/v1/lists", "get"), ["200", "400", "401", "403"]);
    assert_eq!(
        codes("/v1/lists/{id}", "get"),
        ["200", "400", "401", "403", "404"]
    );
    assert_eq!(
        codes("/v1/lists/{id}", "delete"),
        ["204", "400", "401", "403", "404", "412"]
    );
    for method in ["put", "post", "delete"] {
        assert_eq!(
            codes("/v1/lists/{id}/entries", method),
            ["200", "400", "401", "403", "404", "412", "413", "415", "422"],
            "{method}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["EntryList"]["properties"]["entries"]["maxItems"],
        100_000
    );
    assert_eq!(schemas["NewList"]["properties"]["name"]["maxLength"], 26);
    assert_eq!(schemas["EntryList"]["additionalProperties"], false);
    for field in [
        "entries",
        "entry_count",
        "range_count",
        "merged_away",
        "revision",
    ] {
        assert!(
            schemas["IpList"]["properties"].get(field).is_some(),
            "IpList.{field}"
        );
    }
}

async fn stored_entries_that_do_not_decode_fail_closed(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, tok) = t.customer("acme").await;
    let id = t
        .post(
            "/v1/lists",
            &tok,
            json!({"name": "bans", "entries": ["192.0.2.1", "192.0.2.2"]}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_i64()
        .unwrap();
    // The first entry's bytes, then half of the second: a read must fail, not
    // show a shorter list.
    let row: Vec<u8> = sqlx::query_scalar("SELECT entries FROM lists WHERE id = $1")
        .bind(id)
        .fetch_one(t.store().pool())
        .await
        .unwrap();
    assert_eq!(row.len(), 12, "two IPv4 entries of 6 bytes");
    sqlx::query("UPDATE lists SET entries = $1 WHERE id = $2")
        .bind(row[..9].to_vec())
        .bind(id)
        .execute(t.store().pool())
        .await
        .unwrap();
    let rev = t.revision().await;
    let r = t.get(&format!("/v1/lists/{id}"), &tok).await.expect(500);
    assert_eq!(r.message(), "internal error; see the panel log");
    t.post(
        &format!("/v1/lists/{id}/entries"),
        &tok,
        json!({"entries": ["192.0.2.3"]}),
    )
    .await
    .expect(500);
    assert_eq!(t.revision().await, rev);
    // The list of lists does not decode entries, so it still works; deleting
    // the broken list does too.
    t.get("/v1/lists", &tok).await.expect(200);
    t.delete(&format!("/v1/lists/{id}"), &tok).await.expect(204);
}
