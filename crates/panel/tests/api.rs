//! API tests: every endpoint and every semantic rule, on SQLite and PostgreSQL.

mod common;

use common::{Backend, TestPanel};
use model::network::{server_ruleset, NetworkRule};
use model::{evaluate, ConnState, Decision, Packet, PacketProtocol};
use reqwest::Method;
use serde_json::{json, Value};

backend_tests! {
    openapi_documents_every_route,
    presets_and_rules_from_presets,
    customers_are_admin_only_crud,
    users_are_admin_only,
    servers_admin_registers_customer_sees_own,
    new_firewall_is_inactive_until_enabled,
    firewall_crud_and_pagination,
    rules_add_edit_delete,
    put_rules_is_idempotent_and_keeps_ids,
    enforcement_union_and_evaluate,
    dedicated_server_assignment_is_409,
    selector_is_stored_and_applies_to_servers_labelled_later,
    unassign_by_id_and_selector,
    tenant_isolation_on_every_endpoint,
    bad_input_names_the_field_and_stores_nothing,
    oversized_body_is_413,
    etag_and_if_match,
    revisions_advance_in_the_same_transaction,
    concurrent_changes_get_distinct_revisions,
    limits_are_generous_and_named,
    tokens_are_hashed_scoped_and_revocable,
    audit_log_records_who_changed_what,
    sessions_login_csrf_and_rate_limit,
    server_and_firewall_apply_status,
    customer_label_edits_and_forbidden_fields,
    inputs_of_the_wrong_kind_and_names_in_characters,
    customers_cannot_ask_for_another_customer,
    if_match_lists_and_empty_cursors,
}

fn ids(v: &Value) -> Vec<i64> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

async fn openapi_documents_every_route(b: Backend) {
    let t = TestPanel::start(b).await;
    let doc = t
        .call(Method::GET, "/v1/openapi.json", None, None)
        .await
        .expect(200)
        .body;
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/customers", "post"),
        ("/v1/customers/{id}", "patch"),
        ("/v1/users", "post"),
        ("/v1/servers", "get"),
        ("/v1/servers/{id}/status", "get"),
        ("/v1/firewalls", "post"),
        ("/v1/firewalls/{id}", "get"),
        ("/v1/firewalls/{id}/enable", "post"),
        ("/v1/firewalls/{id}/disable", "post"),
        ("/v1/firewalls/{id}/rules", "put"),
        ("/v1/firewalls/{id}/rules/{rule_id}", "patch"),
        ("/v1/firewalls/{id}/assignments", "post"),
        ("/v1/firewalls/{id}/assignments/{server_id}", "delete"),
        ("/v1/firewalls/{id}/selectors/{selector_id}", "delete"),
        ("/v1/firewalls/{id}/status", "get"),
        ("/v1/tokens", "post"),
        ("/v1/tokens/{id}", "delete"),
        ("/v1/audit", "get"),
        ("/v1/presets", "get"),
        ("/v1/auth/login", "post"),
        ("/v1/edge/sync", "get"),
        ("/v1/edge/report", "post"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "Firewall",
        "RuleInput",
        "ErrorBody",
        "SyncResponse",
        "EdgeReport",
        "ServerPolicy",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    assert_eq!(
        doc.pointer(
            "/paths/~1v1~1edge~1sync/get/responses/200/content/application~1json/schema/$ref"
        )
        .and_then(Value::as_str),
        Some("#/components/schemas/SyncResponse")
    );
    // A rule is a preset or a protocol (with its port), never both.
    let variants = schemas["RuleInput"]["oneOf"].as_array().unwrap();
    assert_eq!(variants.len(), 4, "{}", schemas["RuleInput"]);
    assert_eq!(variants[0]["required"], json!(["preset"]));
    assert_eq!(variants[1]["required"], json!(["protocol", "port"]));
    assert!(variants
        .iter()
        .all(|v| v["additionalProperties"] == json!(false)));
    assert!(variants[1]["properties"]["port"]
        .to_string()
        .contains("8000-8100"));
    // Every authenticated operation documents 401 and 403; every one with a
    // body 400, 413, 415 and 422; every one with an object id 404.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let codes = op["responses"].as_object().unwrap();
            let has = |c: &str| codes.contains_key(c);
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(has("401") && has("403"), "{method} {path}: {codes:?}");
            }
            if op.get("requestBody").is_some() {
                for c in ["400", "413", "415", "422"] {
                    assert!(has(c), "{method} {path} lacks {c}");
                }
            }
            if path.contains("{id}") {
                assert!(has("404"), "{method} {path} lacks 404");
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                match p["name"].as_str().unwrap() {
                    "limit" => {
                        assert_eq!(
                            (
                                p["schema"]["minimum"].as_i64(),
                                p["schema"]["maximum"].as_i64()
                            ),
                            (Some(1), Some(1000))
                        );
                    }
                    "id" => assert_eq!(p["schema"]["minimum"], json!(1), "{path}"),
                    _ => {}
                }
            }
        }
    }
    // Unknown paths are JSON 404s.
    let r = t
        .call(Method::GET, "/v1/nope", None, None)
        .await
        .expect(404);
    assert!(r.message().contains("no such endpoint"));
}

async fn presets_and_rules_from_presets(b: Backend) {
    let t = TestPanel::start(b).await;
    let presets = t
        .call(Method::GET, "/v1/presets", None, None)
        .await
        .expect(200)
        .body;
    let ssh = presets
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "SSH")
        .expect("SSH preset");
    assert_eq!(ssh["protocol"], "tcp");
    assert_eq!(ssh["port"], "22");
    let (_, tok) = t.customer("acme").await;
    let fw = t.firewall(&tok, "web", json!([{"preset": "SSH"}, {"preset": "https", "sources": ["198.51.100.0/24"]}, {"preset": "Ping (ICMP)"}])).await;
    let body = t
        .get(&format!("/v1/firewalls/{fw}"), &tok)
        .await
        .expect(200)
        .body;
    let rules = body["rules"].as_array().unwrap();
    assert_eq!(
        (rules[0]["protocol"].as_str(), rules[0]["port"].as_str()),
        (Some("tcp"), Some("22"))
    );
    assert_eq!(
        (rules[1]["port"].as_str(), rules[1]["sources"][0].as_str()),
        (Some("443"), Some("198.51.100.0/24"))
    );
    assert_eq!(
        (rules[2]["protocol"].as_str(), rules[2]["port"].as_str()),
        (Some("icmp"), None)
    );
    let r = t
        .post(
            &format!("/v1/firewalls/{fw}/rules"),
            &tok,
            json!({"preset": "gopher"}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("preset"));
    assert!(
        r.message().contains("SSH"),
        "lists the known presets: {}",
        r.message()
    );
}

async fn customers_are_admin_only_crud(b: Backend) {
    let t = TestPanel::start(b).await;
    let a = t
        .post(
            "/v1/customers",
            &t.admin,
            json!({"name": "acme", "email": "ops@acme.example"}),
        )
        .await
        .expect(201)
        .body;
    let id = a["id"].as_i64().unwrap();
    assert_eq!(a["email"], "ops@acme.example");
    let dup = t
        .post("/v1/customers", &t.admin, json!({"name": "acme"}))
        .await
        .expect(409);
    assert_eq!(dup.field(), Some("name"));
    for i in 0..4 {
        t.post("/v1/customers", &t.admin, json!({"name": format!("c{i}")}))
            .await
            .expect(201);
    }
    let p1 = t
        .get("/v1/customers?limit=2", &t.admin)
        .await
        .expect(200)
        .body;
    assert_eq!(ids(&p1).len(), 2);
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let p2 = t
        .get(&format!("/v1/customers?limit=2&cursor={cursor}"), &t.admin)
        .await
        .expect(200)
        .body;
    let p3 = t
        .get(
            &format!(
                "/v1/customers?limit=2&cursor={}",
                p2["next_cursor"].as_str().unwrap()
            ),
            &t.admin,
        )
        .await
        .expect(200)
        .body;
    assert_eq!(ids(&p3).len(), 1);
    assert!(p3["next_cursor"].is_null());
    let all: Vec<i64> = [ids(&p1), ids(&p2), ids(&p3)].concat();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        t.get("/v1/customers?limit=0", &t.admin)
            .await
            .expect(400)
            .field(),
        Some("limit")
    );
    assert_eq!(
        t.get("/v1/customers?bogus=1", &t.admin)
            .await
            .expect(400)
            .field(),
        Some("bogus")
    );

    let renamed = t
        .patch(
            &format!("/v1/customers/{id}"),
            &t.admin,
            json!({"name": "acme-corp"}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(renamed["name"], "acme-corp");
    assert_eq!(
        t.get(&format!("/v1/customers/{id}"), &t.admin)
            .await
            .expect(200)
            .body["name"],
        "acme-corp"
    );

    // Customers cannot use provider endpoints.
    let (_, tok) = t.customer("other").await;
    t.get("/v1/customers", &tok).await.expect(403);
    t.post("/v1/customers", &tok, json!({"name": "x"}))
        .await
        .expect(403);
    t.delete(&format!("/v1/customers/{id}"), &tok)
        .await
        .expect(403);
    // No credentials: 401.
    let r = t
        .call(Method::GET, "/v1/customers", None, None)
        .await
        .expect(401);
    assert_eq!(r.field(), Some("Authorization"));
    t.call(Method::GET, "/v1/customers", Some("pwa_not-a-token"), None)
        .await
        .expect(401);

    // A customer with servers cannot be deleted; without, it can.
    let s = t.server(id, "vps1", "VPS", "fra1", json!({})).await;
    t.delete(&format!("/v1/customers/{id}"), &t.admin)
        .await
        .expect(409);
    t.delete(&format!("/v1/servers/{s}"), &t.admin)
        .await
        .expect(204);
    t.delete(&format!("/v1/customers/{id}"), &t.admin)
        .await
        .expect(204);
    t.get(&format!("/v1/customers/{id}"), &t.admin)
        .await
        .expect(404);
}

async fn users_are_admin_only(b: Backend) {
    let t = TestPanel::start(b).await;
    let (cid, tok) = t.customer("acme").await;
    let short = t
        .post(
            "/v1/users",
            &t.admin,
            json!({"login": "alice", "password": "short", "customer_id": cid}),
        )
        .await
        .expect(422);
    assert_eq!(short.field(), Some("password"));
    let u = t
        .post(
            "/v1/users",
            &t.admin,
            json!({"login": "alice", "password": "correct horse battery", "customer_id": cid}),
        )
        .await
        .expect(201)
        .body;
    assert!(u.get("password").is_none() && u.get("password_hash").is_none());
    t.post(
        "/v1/users",
        &t.admin,
        json!({"login": "alice", "password": "correct horse battery"}),
    )
    .await
    .expect(409);
    t.post(
        "/v1/users",
        &tok,
        json!({"login": "bob", "password": "correct horse battery"}),
    )
    .await
    .expect(403);
    let list = t.get("/v1/users", &t.admin).await.expect(200).body;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    t.delete(&format!("/v1/users/{}", u["id"]), &t.admin)
        .await
        .expect(204);
    t.delete(&format!("/v1/users/{}", u["id"]), &t.admin)
        .await
        .expect(404);
}

async fn servers_admin_registers_customer_sees_own(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let (bb, tb) = t.customer("b").await;
    let body = json!({"customer_id": a, "name": "web1", "type": "VPS", "zone": "fra1",
        "ipv4": ["203.0.113.10"], "ipv6": ["2001:db8::10"], "labels": {"env": "prod"}});
    let s = t
        .post("/v1/servers", &t.admin, body.clone())
        .await
        .expect(201)
        .body;
    assert_eq!(s["type"], "VPS");
    assert_eq!(s["ipv4"][0], "203.0.113.10");
    assert_eq!(s["labels"]["env"], "prod");
    let sid = s["id"].as_i64().unwrap();
    t.server(a, "db1", "VDS", "fra1", json!({})).await;
    t.server(bb, "b1", "Dedicated", "fra1", json!({})).await;
    // Customers cannot register servers.
    t.post("/v1/servers", &ta, body.clone()).await.expect(403);
    // Bad type / address / customer: 422 naming the field.
    let mut bad = body.clone();
    bad["type"] = json!("Mainframe");
    assert_eq!(
        t.post("/v1/servers", &t.admin, bad)
            .await
            .expect(422)
            .field(),
        Some("type")
    );
    let mut bad = body.clone();
    bad["ipv4"] = json!(["203.0.113.300"]);
    assert_eq!(
        t.post("/v1/servers", &t.admin, bad)
            .await
            .expect(422)
            .field(),
        Some("ipv4[0]")
    );
    let mut bad = body.clone();
    bad["customer_id"] = json!(9999);
    assert_eq!(
        t.post("/v1/servers", &t.admin, bad)
            .await
            .expect(422)
            .field(),
        Some("customer_id")
    );
    let mut bad = body;
    bad["labels"] = json!({"bad key": "x"});
    assert!(t
        .post("/v1/servers", &t.admin, bad)
        .await
        .expect(422)
        .field()
        .unwrap()
        .starts_with("labels"));

    assert_eq!(
        t.get("/v1/servers", &ta).await.expect(200).body["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        t.get("/v1/servers", &tb).await.expect(200).body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        t.get("/v1/servers", &t.admin).await.expect(200).body["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        t.get(&format!("/v1/servers?customer_id={bb}"), &t.admin)
            .await
            .expect(200)
            .body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A customer asking for another's servers is refused, the parameter named.
    assert_eq!(
        t.get(&format!("/v1/servers?customer_id={bb}"), &ta)
            .await
            .expect(403)
            .body["error"]["field"],
        "customer_id"
    );
    t.get(&format!("/v1/servers/{sid}"), &ta).await.expect(200);
    t.get(&format!("/v1/servers/{sid}"), &tb).await.expect(404);

    let moved = t
        .patch(
            &format!("/v1/servers/{sid}"),
            &t.admin,
            json!({"zone": "ams1", "ipv4": ["203.0.113.11"]}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(
        (moved["zone"].as_str(), moved["ipv4"][0].as_str()),
        (Some("ams1"), Some("203.0.113.11"))
    );
    t.delete(&format!("/v1/servers/{sid}"), &ta)
        .await
        .expect(403);
    t.delete(&format!("/v1/servers/{sid}"), &t.admin)
        .await
        .expect(204);
    t.get(&format!("/v1/servers/{sid}"), &ta).await.expect(404);
}

async fn customer_label_edits_and_forbidden_fields(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let s = t.server(a, "web1", "VPS", "fra1", json!({})).await;
    let r = t
        .patch(
            &format!("/v1/servers/{s}"),
            &ta,
            json!({"labels": {"env": "prod", "role": "web"}}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(r["labels"]["role"], "web");
    let before = t.get(&format!("/v1/servers/{s}"), &ta).await.body;
    let r = t
        .patch(&format!("/v1/servers/{s}"), &ta, json!({"zone": "ams1"}))
        .await
        .expect(403);
    assert_eq!(r.field(), Some("zone"));
    let r = t
        .patch(
            &format!("/v1/servers/{s}"),
            &ta,
            json!({"type": "Dedicated"}),
        )
        .await
        .expect(403);
    assert_eq!(r.field(), Some("type"));
    assert_eq!(
        t.get(&format!("/v1/servers/{s}"), &ta).await.body,
        before,
        "refused edits change nothing"
    );
}

async fn new_firewall_is_inactive_until_enabled(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let s = t.server(a, "web1", "VPS", "fra1", json!({})).await;
    let fw = t
        .post(
            "/v1/firewalls",
            &ta,
            json!({"name": "web", "rules": [{"protocol": "tcp", "port": "22"}]}),
        )
        .await
        .expect(201);
    assert_eq!(fw.body["status"], "inactive");
    let id = fw.body["id"].as_i64().unwrap();
    // The status cannot be set at creation.
    let r = t
        .post(
            "/v1/firewalls",
            &ta,
            json!({"name": "x", "status": "active"}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("status"));
    t.post(
        &format!("/v1/firewalls/{id}/assignments"),
        &ta,
        json!({"server_id": s}),
    )
    .await
    .expect(200);
    let policy = t
        .get(&format!("/v1/servers/{s}/policy"), &ta)
        .await
        .expect(200)
        .body;
    assert_eq!(
        policy["enforced"], false,
        "an inactive firewall does not filter"
    );
    assert!(policy["rules"].as_array().unwrap().is_empty());
    let on = t
        .post_empty(&format!("/v1/firewalls/{id}/enable"), &ta)
        .await
        .expect(200);
    assert_eq!(on.body["status"], "active");
    let policy = t
        .get(&format!("/v1/servers/{s}/policy"), &ta)
        .await
        .expect(200)
        .body;
    assert_eq!(policy["enforced"], true);
    assert_eq!(policy["rules"][0]["ports"], json!({"start": 22, "end": 22}));
    // Enabling twice changes nothing.
    let rev = t.revision().await;
    t.post_empty(&format!("/v1/firewalls/{id}/enable"), &ta)
        .await
        .expect(200);
    assert_eq!(t.revision().await, rev);
    let off = t
        .post_empty(&format!("/v1/firewalls/{id}/disable"), &ta)
        .await
        .expect(200);
    assert_eq!(off.body["status"], "inactive");
    assert_eq!(
        t.get(&format!("/v1/servers/{s}/policy"), &ta).await.body["enforced"],
        false
    );
}

async fn firewall_crud_and_pagination(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, ta) = t.customer("a").await;
    for i in 0..5 {
        t.post(
            "/v1/firewalls",
            &ta,
            json!({"name": format!("fw{i}"), "description": "d"}),
        )
        .await
        .expect(201);
    }
    let dup = t
        .post("/v1/firewalls", &ta, json!({"name": "fw0"}))
        .await
        .expect(409);
    assert_eq!(dup.field(), Some("name"));
    let p1 = t.get("/v1/firewalls?limit=3", &ta).await.expect(200).body;
    let p2 = t
        .get(
            &format!(
                "/v1/firewalls?limit=3&cursor={}",
                p1["next_cursor"].as_str().unwrap()
            ),
            &ta,
        )
        .await
        .expect(200)
        .body;
    assert_eq!(ids(&p1).len() + ids(&p2).len(), 5);
    assert!(p2["next_cursor"].is_null());
    assert_eq!(p1["items"][0]["rule_count"], 0);
    let id = ids(&p1)[0];
    let r = t
        .patch(
            &format!("/v1/firewalls/{id}"),
            &ta,
            json!({"name": "renamed", "description": "new"}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(
        (r["name"].as_str(), r["description"].as_str()),
        (Some("renamed"), Some("new"))
    );
    assert_eq!(
        t.patch(&format!("/v1/firewalls/{id}"), &ta, json!({"name": "fw1"}))
            .await
            .expect(409)
            .field(),
        Some("name")
    );
    t.delete(&format!("/v1/firewalls/{id}"), &ta)
        .await
        .expect(204);
    t.get(&format!("/v1/firewalls/{id}"), &ta).await.expect(404);
    t.delete(&format!("/v1/firewalls/{id}"), &ta)
        .await
        .expect(404);
    // Admins and edges do not act for customers.
    t.get("/v1/firewalls", &t.admin).await.expect(403);
}

async fn rules_add_edit_delete(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, ta) = t.customer("a").await;
    let fw = t.firewall(&ta, "web", json!([])).await;
    let path = format!("/v1/firewalls/{fw}/rules");
    let r = t.post(&path, &ta, json!({"protocol": "tcp", "port": "8000-8100", "sources": ["203.0.113.0/24", "2001:db8::/32"], "description": "app"})).await.expect(201);
    assert_eq!(r.body["rule"]["port"], "8000-8100");
    let rid = r.body["rule"]["id"].as_i64().unwrap();
    let r2 = t
        .post(&path, &ta, json!({"protocol": "udp", "port": 53}))
        .await
        .expect(201);
    assert_eq!(r2.body["rule"]["port"], "53");
    let r3 = t
        .post(&path, &ta, json!({"protocol": "any"}))
        .await
        .expect(201);
    assert_eq!(r3.body["rule"]["port"], Value::Null);
    let list = t.get(&path, &ta).await.expect(200).body;
    assert_eq!(list["rules"].as_array().unwrap().len(), 3);
    // Edit: change the port, then switch to icmp (which drops the port), disable it.
    let e = t
        .patch(&format!("{path}/{rid}"), &ta, json!({"port": "443"}))
        .await
        .expect(200)
        .body;
    assert_eq!(e["rules"][0]["port"], "443");
    assert_eq!(
        e["rules"][0]["sources"].as_array().unwrap().len(),
        2,
        "untouched fields stay"
    );
    let e = t
        .patch(
            &format!("{path}/{rid}"),
            &ta,
            json!({"protocol": "icmp", "enabled": false}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(
        (
            e["rules"][0]["protocol"].as_str(),
            e["rules"][0]["port"].as_str(),
            e["rules"][0]["enabled"].as_bool()
        ),
        (Some("icmp"), None, Some(false))
    );
    let bad = t
        .patch(&format!("{path}/{rid}"), &ta, json!({"port": "22"}))
        .await
        .expect(422);
    assert_eq!(bad.field(), Some("port"), "icmp has no ports");
    t.patch(&format!("{path}/99999"), &ta, json!({"enabled": true}))
        .await
        .expect(404);
    let d = t
        .delete(&format!("{path}/{rid}"), &ta)
        .await
        .expect(200)
        .body;
    assert_eq!(d["rules"].as_array().unwrap().len(), 2);
    t.delete(&format!("{path}/{rid}"), &ta).await.expect(404);
}

async fn put_rules_is_idempotent_and_keeps_ids(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, ta) = t.customer("a").await;
    let fw = t.firewall(&ta, "web", json!([])).await;
    let rules = json!({"rules": [{"preset": "SSH"}, {"protocol": "tcp", "port": "80"}, {"protocol": "tcp", "port": "443"}]});
    let first = t
        .put(&format!("/v1/firewalls/{fw}/rules"), &ta, rules.clone())
        .await
        .expect(200);
    let rev = t.revision().await;
    let again = t
        .put(&format!("/v1/firewalls/{fw}/rules"), &ta, rules)
        .await
        .expect(200);
    assert_eq!(
        first.body, again.body,
        "same list: same firewall, same rule ids"
    );
    assert_eq!(first.etag(), again.etag());
    assert_eq!(
        t.revision().await,
        rev,
        "an idempotent PUT does not advance the revision"
    );
    // Reorder and change one: kept rules keep their ids.
    let ids_before: Vec<i64> = first.body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    let next = t
        .put(&format!("/v1/firewalls/{fw}/rules"), &ta, json!({"rules": [{"protocol": "tcp", "port": "443"}, {"preset": "SSH"}, {"protocol": "udp", "port": "51820"}]}))
        .await
        .expect(200)
        .body;
    let ids_after: Vec<i64> = next["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids_after[0], ids_before[2]);
    assert_eq!(ids_after[1], ids_before[0]);
    assert!(!ids_before.contains(&ids_after[2]));
    assert!(t.revision().await > rev);
    // Empty list clears.
    let empty = t
        .put(
            &format!("/v1/firewalls/{fw}/rules"),
            &ta,
            json!({"rules": []}),
        )
        .await
        .expect(200)
        .body;
    assert!(empty["rules"].as_array().unwrap().is_empty());
}

fn tcp_packet(dst: &str, port: u16, src: &str) -> Packet {
    Packet {
        direction: model::Direction::In,
        protocol: PacketProtocol::Tcp,
        source: src.parse().unwrap(),
        destination: dst.parse().unwrap(),
        source_port: Some(40000),
        destination_port: Some(port),
        in_interface: None,
        out_interface: None,
        icmp_type: None,
        hop_limit: None,
        state: ConnState::New,
    }
}

async fn enforcement_union_and_evaluate(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let s = t.server(a, "web1", "VPS", "fra1", json!({})).await;
    let server = t.get(&format!("/v1/servers/{s}"), &ta).await.body;
    let addr = server["ipv4"][0].as_str().unwrap().to_string();
    let web = t
        .firewall(
            &ta,
            "web",
            json!([{"preset": "HTTPS"}, {"protocol": "tcp", "port": "8080", "enabled": false}]),
        )
        .await;
    let ssh = t
        .firewall(
            &ta,
            "ssh",
            json!([{"preset": "SSH", "sources": ["198.51.100.0/24"]}]),
        )
        .await;
    for fw in [web, ssh] {
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
    }
    let policy = t
        .get(&format!("/v1/servers/{s}/policy"), &ta)
        .await
        .expect(200)
        .body;
    assert_eq!(policy["enforced"], true);
    let rules = policy["rules"].as_array().unwrap();
    assert_eq!(
        rules.len(),
        2,
        "the union of the enabled rules of both active firewalls: {policy}"
    );
    let fw_ids: Vec<i64> = rules
        .iter()
        .map(|r| r["firewall_id"].as_i64().unwrap())
        .collect();
    assert!(fw_ids.contains(&web) && fw_ids.contains(&ssh));
    // What the union means, by the model's definition.
    let net_rules: Vec<NetworkRule> = rules
        .iter()
        .map(|r| NetworkRule {
            protocol: serde_json::from_value(r["protocol"].clone()).unwrap(),
            ports: serde_json::from_value(r["ports"].clone()).unwrap(),
            sources: serde_json::from_value(r["sources"].clone()).unwrap(),
            description: String::new(),
            enabled: true,
        })
        .collect();
    let rs = server_ruleset(&net_rules);
    let verdict = |port, src| evaluate(&rs, &tcp_packet(&addr, port, src)).decision;
    assert_eq!(verdict(443, "192.0.2.1"), Decision::Accept);
    assert_eq!(verdict(22, "198.51.100.9"), Decision::Accept);
    assert_eq!(
        verdict(22, "192.0.2.1"),
        Decision::Drop,
        "SSH only from 198.51.100.0/24"
    );
    assert_eq!(
        verdict(8080, "192.0.2.1"),
        Decision::Drop,
        "a disabled rule accepts nothing"
    );
    assert_eq!(
        verdict(25, "192.0.2.1"),
        Decision::Drop,
        "everything else is dropped"
    );
    // Disable one firewall: only the other's rules remain.
    t.post_empty(&format!("/v1/firewalls/{ssh}/disable"), &ta)
        .await
        .expect(200);
    let policy = t.get(&format!("/v1/servers/{s}/policy"), &ta).await.body;
    assert_eq!(policy["rules"].as_array().unwrap().len(), 1);
    assert_eq!(policy["rules"][0]["firewall_id"], web);
}

async fn dedicated_server_assignment_is_409(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let vps = t.server(a, "vps", "VPS", "fra1", json!({})).await;
    let ded = t.server(a, "metal", "Dedicated", "fra1", json!({})).await;
    let fw = t.firewall(&ta, "web", json!([{"preset": "SSH"}])).await;
    let before = t.get(&format!("/v1/firewalls/{fw}"), &ta).await.body;
    let rev = t.revision().await;
    let r = t
        .post(
            &format!("/v1/firewalls/{fw}/assignments"),
            &ta,
            json!({"server_id": ded}),
        )
        .await
        .expect(409);
    assert!(
        r.message().contains("Dedicated") && r.message().contains("VPS and VDS"),
        "{}",
        r.message()
    );
    assert_eq!(r.field(), Some("server_id"));
    // In a batch, one Dedicated server refuses the whole request.
    let r = t
        .post(
            &format!("/v1/firewalls/{fw}/assignments"),
            &ta,
            json!({"server_ids": [vps, ded]}),
        )
        .await
        .expect(409);
    assert_eq!(r.field(), Some("server_ids[1]"));
    assert_eq!(
        t.get(&format!("/v1/firewalls/{fw}"), &ta).await.body,
        before,
        "nothing stored"
    );
    assert_eq!(t.revision().await, rev);
    // A VDS is fine.
    let vds = t.server(a, "vds", "VDS", "fra1", json!({})).await;
    let ok = t
        .post(
            &format!("/v1/firewalls/{fw}/assignments"),
            &ta,
            json!({"server_ids": [vps, vds]}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(ok["firewall"]["servers"], json!([vps, vds]));
    // And an assigned VPS cannot become Dedicated.
    let r = t
        .patch(
            &format!("/v1/servers/{vps}"),
            &t.admin,
            json!({"type": "Dedicated"}),
        )
        .await
        .expect(409);
    assert_eq!(r.field(), Some("type"));
}

async fn selector_is_stored_and_applies_to_servers_labelled_later(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let (bb, _) = t.customer("b").await;
    let p1 = t
        .server(a, "p1", "VPS", "fra1", json!({"env": "prod"}))
        .await;
    let dev = t
        .server(a, "d1", "VPS", "fra1", json!({"env": "dev"}))
        .await;
    let metal = t
        .server(a, "m1", "Dedicated", "fra1", json!({"env": "prod"}))
        .await;
    let other = t
        .server(bb, "o1", "VPS", "fra1", json!({"env": "prod"}))
        .await;
    let fw = t.firewall(&ta, "prod", json!([{"preset": "HTTPS"}])).await;
    t.post_empty(&format!("/v1/firewalls/{fw}/enable"), &ta)
        .await
        .expect(200);
    let r = t
        .post(
            &format!("/v1/firewalls/{fw}/assignments"),
            &ta,
            json!({"selector": "env=prod"}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(
        r["assigned"],
        json!([p1]),
        "another customer's server never matches"
    );
    assert_eq!(r["skipped"][0]["server_id"], metal);
    assert!(r["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("Dedicated"));
    assert_eq!(r["firewall"]["selectors"][0]["selector"], "env=prod");
    let enforced = |s: i64| {
        let t = &t;
        async move {
            t.get(&format!("/v1/servers/{s}/policy"), &t.admin)
                .await
                .body["enforced"]
                .as_bool()
                .unwrap()
        }
    };
    assert!(enforced(p1).await);
    assert!(!enforced(dev).await);
    assert!(!enforced(metal).await);
    assert!(!enforced(other).await);
    // Labelled later: a new server, and a relabelled one.
    let p2 = t
        .server(a, "p2", "VDS", "fra1", json!({"env": "prod"}))
        .await;
    assert!(
        enforced(p2).await,
        "a server created later with matching labels is assigned"
    );
    let rev_before = t.get(&format!("/v1/servers/{dev}"), &ta).await.body["policy_revision"]
        .as_u64()
        .unwrap();
    t.patch(
        &format!("/v1/servers/{dev}"),
        &ta,
        json!({"labels": {"env": "prod"}}),
    )
    .await
    .expect(200);
    assert!(enforced(dev).await, "a relabelled server is assigned");
    assert!(
        t.get(&format!("/v1/servers/{dev}"), &ta).await.body["policy_revision"]
            .as_u64()
            .unwrap()
            > rev_before
    );
    let st = t
        .get(&format!("/v1/firewalls/{fw}/status"), &ta)
        .await
        .expect(200)
        .body;
    let mut servers: Vec<i64> = st["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["server_id"].as_i64().unwrap())
        .collect();
    servers.sort();
    assert_eq!(servers, vec![p1, dev, p2]);
    // Bad selectors name the field.
    let r = t
        .post(
            &format!("/v1/firewalls/{fw}/assignments"),
            &ta,
            json!({"selector": "env"}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("selector"));
    let r = t
        .post(
            &format!("/v1/firewalls/{fw}/assignments"),
            &ta,
            json!({"selector": "env=prod", "server_id": p1}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("server_id"));
}

async fn unassign_by_id_and_selector(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let s1 = t.server(a, "s1", "VPS", "fra1", json!({})).await;
    let s2 = t
        .server(a, "s2", "VPS", "fra1", json!({"role": "db"}))
        .await;
    let fw = t.firewall(&ta, "fw", json!([{"preset": "SSH"}])).await;
    t.post_empty(&format!("/v1/firewalls/{fw}/enable"), &ta)
        .await
        .expect(200);
    t.post(
        &format!("/v1/firewalls/{fw}/assignments"),
        &ta,
        json!({"server_id": s1}),
    )
    .await
    .expect(200);
    let r = t
        .post(
            &format!("/v1/firewalls/{fw}/assignments"),
            &ta,
            json!({"selector": "role=db"}),
        )
        .await
        .expect(200)
        .body;
    let sel = r["firewall"]["selectors"][0]["id"].as_i64().unwrap();
    // s2 is assigned through the selector: unassigning it by id says so.
    let r = t
        .delete(&format!("/v1/firewalls/{fw}/assignments/{s2}"), &ta)
        .await
        .expect(409);
    assert!(r.message().contains("selector"));
    let r = t
        .delete(&format!("/v1/firewalls/{fw}/assignments/{s1}"), &ta)
        .await
        .expect(200)
        .body;
    assert_eq!(r["servers"], json!([]));
    t.delete(&format!("/v1/firewalls/{fw}/assignments/{s1}"), &ta)
        .await
        .expect(404);
    assert_eq!(
        t.get(&format!("/v1/servers/{s1}/policy"), &ta).await.body["enforced"],
        false
    );
    let r = t
        .delete(&format!("/v1/firewalls/{fw}/selectors/{sel}"), &ta)
        .await
        .expect(200)
        .body;
    assert_eq!(r["selectors"], json!([]));
    assert_eq!(
        t.get(&format!("/v1/servers/{s2}/policy"), &ta).await.body["enforced"],
        false
    );
    t.delete(&format!("/v1/firewalls/{fw}/selectors/{sel}"), &ta)
        .await
        .expect(404);
}

async fn isolation_snapshot(
    t: &TestPanel,
    ta: &str,
    fw: i64,
    s: i64,
    fw_b: i64,
) -> (String, String, String, String, u16) {
    (
        t.get(&format!("/v1/firewalls/{fw}"), ta).await.text,
        t.get(&format!("/v1/servers/{s}"), ta).await.text,
        t.get(&format!("/v1/servers/{s}/status"), ta).await.text,
        t.get("/v1/tokens", ta).await.text,
        t.get(&format!("/v1/firewalls/{fw_b}"), &t.admin)
            .await
            .status
            .as_u16(),
    )
}

async fn tenant_isolation_on_every_endpoint(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let (_, tb) = t.customer("b").await;
    let s = t
        .server(a, "s1", "VPS", "fra1", json!({"env": "prod"}))
        .await;
    let fw = t.firewall(&ta, "fw", json!([{"preset": "SSH"}])).await;
    let r = t
        .post(
            &format!("/v1/firewalls/{fw}/assignments"),
            &ta,
            json!({"selector": "env=prod"}),
        )
        .await
        .expect(200)
        .body;
    let sel = r["firewall"]["selectors"][0]["id"].as_i64().unwrap();
    let rule = r["firewall"]["rules"][0]["id"].as_i64().unwrap();
    let token_a = t.get("/v1/tokens", &ta).await.body["items"][0]["id"]
        .as_i64()
        .unwrap();
    let fw_b = t.firewall(&tb, "mine", json!([])).await;

    let before = isolation_snapshot(&t, &ta, fw, s, fw_b).await;
    let rev = t.revision().await;
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/firewalls/{fw}"), None),
        (
            Method::PATCH,
            format!("/v1/firewalls/{fw}"),
            Some(json!({"name": "pwned"})),
        ),
        (Method::DELETE, format!("/v1/firewalls/{fw}"), None),
        (Method::POST, format!("/v1/firewalls/{fw}/enable"), None),
        (Method::POST, format!("/v1/firewalls/{fw}/disable"), None),
        (Method::GET, format!("/v1/firewalls/{fw}/rules"), None),
        (
            Method::POST,
            format!("/v1/firewalls/{fw}/rules"),
            Some(json!({"preset": "RDP"})),
        ),
        (
            Method::PUT,
            format!("/v1/firewalls/{fw}/rules"),
            Some(json!({"rules": []})),
        ),
        (
            Method::PATCH,
            format!("/v1/firewalls/{fw}/rules/{rule}"),
            Some(json!({"enabled": false})),
        ),
        (
            Method::DELETE,
            format!("/v1/firewalls/{fw}/rules/{rule}"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/firewalls/{fw}/assignments"),
            Some(json!({"server_id": s})),
        ),
        (
            Method::DELETE,
            format!("/v1/firewalls/{fw}/selectors/{sel}"),
            None,
        ),
        (Method::GET, format!("/v1/firewalls/{fw}/status"), None),
        (Method::GET, format!("/v1/servers/{s}"), None),
        (
            Method::PATCH,
            format!("/v1/servers/{s}"),
            Some(json!({"labels": {}})),
        ),
        (Method::GET, format!("/v1/servers/{s}/status"), None),
        (Method::GET, format!("/v1/servers/{s}/policy"), None),
        (Method::DELETE, format!("/v1/tokens/{token_a}"), None),
        // B's own firewall, but A's server.
        (
            Method::POST,
            format!("/v1/firewalls/{fw_b}/assignments"),
            Some(json!({"server_id": s})),
        ),
        (
            Method::DELETE,
            format!("/v1/firewalls/{fw_b}/assignments/{s}"),
            None,
        ),
    ];
    for (method, path, body) in calls {
        let r = t.call(method.clone(), &path, Some(&tb), body).await;
        assert_eq!(
            r.status.as_u16(),
            404,
            "{method} {path} with another customer's token: {}",
            r.text
        );
    }
    assert_eq!(
        isolation_snapshot(&t, &ta, fw, s, fw_b).await,
        before,
        "nothing changed"
    );
    assert_eq!(t.revision().await, rev, "no revision was used");
    // B's lists do not show A's objects.
    assert!(t.get("/v1/servers", &tb).await.body["items"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(ids(&t.get("/v1/firewalls", &tb).await.body), vec![fw_b]);
    let audit = t.get("/v1/audit?limit=1000", &tb).await.body;
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["target"] != format!("firewall/{fw}")));
}

async fn bad_input_names_the_field_and_stores_nothing(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, ta) = t.customer("a").await;
    let fw = t.firewall(&ta, "fw", json!([])).await;
    let rev = t.revision().await;
    let rules = format!("/v1/firewalls/{fw}/rules");
    let cases: Vec<(Method, &str, Value, u16, &str)> = vec![
        (
            Method::POST,
            "/v1/firewalls",
            json!({"name": "x", "rules": [{"protocol": "tcp", "port": "22", "sources": ["10.0.0.300/24"]}]}),
            422,
            "rules[0].sources[0]",
        ),
        (
            Method::POST,
            "/v1/firewalls",
            json!({"name": "x", "rules": [{"preset": "SSH"}, {"protocol": "tcp", "port": "70000"}]}),
            422,
            "rules[1].port",
        ),
        (
            Method::POST,
            "/v1/firewalls",
            json!({"name": "x", "rules": [{"protocol": "tcp", "port": "0"}]}),
            422,
            "rules[0].port",
        ),
        (
            Method::POST,
            "/v1/firewalls",
            json!({"name": "x", "rules": [{"protocol": "tcp", "port": "100-20"}]}),
            422,
            "rules[0].port",
        ),
        (
            Method::POST,
            "/v1/firewalls",
            json!({"name": "x", "rules": [{"protocol": "icmp", "port": "22"}]}),
            422,
            "rules[0].port",
        ),
        (
            Method::POST,
            "/v1/firewalls",
            json!({"name": "x", "rules": [{"protocol": "tcp"}]}),
            422,
            "rules[0].port",
        ),
        (
            Method::POST,
            "/v1/firewalls",
            json!({"name": "x", "rules": [{"protocol": "sctp", "port": "22"}]}),
            422,
            "rules[0].protocol",
        ),
        (
            Method::POST,
            "/v1/firewalls",
            json!({"name": "x", "rules": [{"protocol": "tcp", "port": "22", "bogus": 1}]}),
            422,
            "rules[0].bogus",
        ),
        (
            Method::POST,
            "/v1/firewalls",
            json!({"name": "x", "rules": [{"protocol": "tcp", "port": "22", "sources": ["10.1.2.3/8"]}]}),
            422,
            "rules[0].sources[0]",
        ),
        (
            Method::POST,
            "/v1/firewalls",
            json!({"name": "x", "colour": "red"}),
            422,
            "colour",
        ),
        (
            Method::POST,
            "/v1/firewalls",
            json!({"description": "no name"}),
            422,
            "name",
        ),
        (
            Method::POST,
            "/v1/firewalls",
            json!({"name": ""}),
            422,
            "name",
        ),
        (
            Method::POST,
            "/v1/firewalls",
            json!({"name": 5}),
            422,
            "name",
        ),
        (
            Method::POST,
            &rules,
            json!({"protocol": "udp", "port": "99999"}),
            422,
            "port",
        ),
        (
            Method::POST,
            &rules,
            json!({"protocol": "tcp", "port": "22", "sources": ["fe80::1::2"]}),
            422,
            "sources[0]",
        ),
        (
            Method::POST,
            &rules,
            json!({"protocol": "tcp", "port": "22", "description": "a\u{7}b"}),
            422,
            "description",
        ),
        (
            Method::PUT,
            &rules,
            json!({"rules": [{"preset": "SSH"}, {"protocol": "udp", "port": "-1"}]}),
            422,
            "rules[1].port",
        ),
        (Method::PUT, &rules, json!([{"preset": "SSH"}]), 422, "body"),
    ];
    for (method, path, body, status, field) in cases {
        let r = t
            .call(method.clone(), path, Some(&ta), Some(body.clone()))
            .await;
        assert_eq!(
            r.status.as_u16(),
            status,
            "{method} {path} {body}: {}",
            r.text
        );
        assert_eq!(r.field(), Some(field), "{method} {path} {body}: {}", r.text);
        assert!(!r.message().is_empty());
    }
    // Malformed JSON and wrong content type.
    let r = t
        .raw(
            Method::POST,
            "/v1/firewalls",
            &ta,
            "application/json",
            b"{\"name\": \"x\",".to_vec(),
        )
        .await
        .expect(400);
    assert_eq!(r.field(), Some("body"));
    assert!(r.message().contains("malformed JSON"));
    let r = t
        .raw(
            Method::POST,
            "/v1/firewalls",
            &ta,
            "application/json",
            b"{\"name\": \"x\"} trailing".to_vec(),
        )
        .await
        .expect(400);
    assert_eq!(r.field(), Some("body"));
    let r = t
        .raw(
            Method::POST,
            "/v1/firewalls",
            &ta,
            "text/plain",
            b"{\"name\": \"x\"}".to_vec(),
        )
        .await
        .expect(415);
    assert_eq!(r.field(), Some("Content-Type"));
    // Bad path parameters.
    assert_eq!(
        t.get("/v1/firewalls/abc", &ta).await.expect(400).field(),
        Some("path")
    );
    // Nothing was stored.
    assert_eq!(ids(&t.get("/v1/firewalls", &ta).await.body), vec![fw]);
    assert!(t.get(&rules, &ta).await.body["rules"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(t.revision().await, rev);
}

async fn oversized_body_is_413(b: Backend) {
    let config = panel::PanelConfig {
        max_body_bytes: 64 * 1024,
        ..Default::default()
    };
    let t = TestPanel::start_with(b, config).await;
    let (_, ta) = t.customer("a").await;
    let fw = t.firewall(&ta, "fw", json!([])).await;
    let rev = t.revision().await;
    let sources: Vec<String> = (0..10_000)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let r = t
        .put(
            &format!("/v1/firewalls/{fw}/rules"),
            &ta,
            json!({"rules": [{"protocol": "tcp", "port": "22", "sources": sources}]}),
        )
        .await
        .expect(413);
    assert_eq!(r.field(), Some("body"));
    assert!(
        t.get(&format!("/v1/firewalls/{fw}/rules"), &ta).await.body["rules"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(t.revision().await, rev);
}

async fn etag_and_if_match(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, ta) = t.customer("a").await;
    let fw = t.firewall(&ta, "fw", json!([{"preset": "SSH"}])).await;
    let path = format!("/v1/firewalls/{fw}");
    // Two clients read the same revision.
    let read1 = t.get(&path, &ta).await.expect(200);
    let read2 = t.get(&path, &ta).await.expect(200);
    let tag = read1.etag();
    assert!(tag.starts_with("\"r") && tag.ends_with('"'), "{tag}");
    assert_eq!(tag, read2.etag());
    // Client 1 updates with If-Match: fine, new ETag.
    let w1 = t
        .call_with(
            Method::PATCH,
            &path,
            Some(&ta),
            Some(json!({"description": "one"})),
            &[("if-match", &tag)],
        )
        .await
        .expect(200);
    assert_ne!(w1.etag(), tag);
    // Client 2's update based on the stale read is refused.
    let stale = read2.etag();
    for (method, p, body) in [
        (
            Method::PATCH,
            path.clone(),
            Some(json!({"description": "two"})),
        ),
        (
            Method::PUT,
            format!("{path}/rules"),
            Some(json!({"rules": []})),
        ),
        (
            Method::POST,
            format!("{path}/rules"),
            Some(json!({"preset": "HTTP"})),
        ),
        (Method::POST, format!("{path}/enable"), None),
        (Method::DELETE, path.clone(), None),
    ] {
        let r = t
            .call_with(method.clone(), &p, Some(&ta), body, &[("if-match", &stale)])
            .await;
        assert_eq!(r.status.as_u16(), 412, "{method} {p}: {}", r.text);
        assert_eq!(r.field(), Some("If-Match"));
        assert_eq!(r.etag(), w1.etag(), "the 412 tells the current ETag");
    }
    let now = t.get(&path, &ta).await.expect(200);
    assert_eq!(now.body["description"], "one");
    assert_eq!(now.body["rules"].as_array().unwrap().len(), 1);
    assert_eq!(now.etag(), w1.etag());
    // Garbage never matches; '*' always does.
    t.call_with(
        Method::PATCH,
        &path,
        Some(&ta),
        Some(json!({"description": "x"})),
        &[("if-match", "nonsense")],
    )
    .await
    .expect(412);
    t.call_with(
        Method::PATCH,
        &path,
        Some(&ta),
        Some(json!({"description": "star"})),
        &[("if-match", "*")],
    )
    .await
    .expect(200);
}

async fn revisions_advance_in_the_same_transaction(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let s = t.server(a, "s1", "VPS", "fra1", json!({})).await;
    let other = t.server(a, "s2", "VPS", "fra1", json!({})).await;
    let fw = t.firewall(&ta, "fw", json!([])).await;
    let srv_rev = |id: i64| {
        let t = &t;
        let ta = ta.clone();
        async move {
            t.get(&format!("/v1/servers/{id}"), &ta).await.body["policy_revision"]
                .as_u64()
                .unwrap()
        }
    };
    let other_rev = srv_rev(other).await;
    let mut last = t.revision().await;
    let steps: Vec<(Method, String, Option<Value>, bool)> = vec![
        (
            Method::POST,
            format!("/v1/firewalls/{fw}/assignments"),
            Some(json!({"server_id": s})),
            false,
        ),
        (
            Method::POST,
            format!("/v1/firewalls/{fw}/enable"),
            None,
            true,
        ),
        (
            Method::POST,
            format!("/v1/firewalls/{fw}/rules"),
            Some(json!({"preset": "SSH"})),
            true,
        ),
        (
            Method::PUT,
            format!("/v1/firewalls/{fw}/rules"),
            Some(json!({"rules": [{"preset": "HTTP"}]})),
            true,
        ),
        (
            Method::PATCH,
            format!("/v1/firewalls/{fw}"),
            Some(json!({"description": "d"})),
            false,
        ),
        (
            Method::POST,
            format!("/v1/firewalls/{fw}/disable"),
            None,
            true,
        ),
    ];
    for (method, path, body, affects_policy) in steps {
        let before_srv = srv_rev(s).await;
        let r = t.call(method.clone(), &path, Some(&ta), body).await;
        assert!(r.status.is_success(), "{method} {path}: {}", r.text);
        let now = t.revision().await;
        assert_eq!(
            now,
            last + 1,
            "{method} {path} advances the global revision by one"
        );
        let fwj = t.get(&format!("/v1/firewalls/{fw}"), &ta).await.body;
        assert_eq!(
            fwj["revision"].as_u64(),
            Some(now),
            "the firewall's revision is the global revision of its change"
        );
        let after_srv = srv_rev(s).await;
        if affects_policy {
            assert_eq!(
                after_srv, now,
                "{method} {path}: the server's policy_revision moved in the same commit"
            );
        } else {
            assert_eq!(
                after_srv, before_srv,
                "{method} {path} does not change the server's policy"
            );
        }
        last = now;
    }
    assert_eq!(
        srv_rev(other).await,
        other_rev,
        "an unrelated server's policy never moved"
    );
    // The audit entries carry the same revisions.
    let audit = t.get("/v1/audit?limit=6", &ta).await.body;
    let mut revs: Vec<u64> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["revision"].as_u64().unwrap())
        .collect();
    revs.reverse();
    assert_eq!(revs, ((last - 5)..=last).collect::<Vec<_>>());
}

async fn concurrent_changes_get_distinct_revisions(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, ta) = t.customer("a").await;
    let fw = t.firewall(&ta, "fw", json!([])).await;
    let start = t.revision().await;
    let mut tasks = Vec::new();
    for i in 0..16u16 {
        let (client, url, ta) = (t.client.clone(), t.url.clone(), ta.clone());
        tasks.push(tokio::spawn(async move {
            let r = common::call(
                &client,
                &url,
                Method::POST,
                &format!("/v1/firewalls/{fw}/rules"),
                Some(&ta),
                Some(json!({"protocol": "tcp", "port": 1000 + i})),
                &[],
            )
            .await;
            assert_eq!(r.status.as_u16(), 201, "{}", r.text);
            r.body["firewall"]["revision"].as_u64().unwrap()
        }));
    }
    let mut revs = Vec::new();
    for task in tasks {
        revs.push(task.await.unwrap());
    }
    revs.sort();
    assert_eq!(
        revs,
        ((start + 1)..=(start + 16)).collect::<Vec<_>>(),
        "one revision each, no gaps, no duplicates"
    );
    assert_eq!(
        t.get(&format!("/v1/firewalls/{fw}/rules"), &ta).await.body["rules"]
            .as_array()
            .unwrap()
            .len(),
        16
    );
}

async fn limits_are_generous_and_named(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let s = t.server(a, "s1", "VPS", "fra1", json!({})).await;
    let fw = t.firewall(&ta, "big", json!([])).await;
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
    // 10,000 rules naming 100,000 source networks together: accepted.
    let rules: Vec<Value> = (0..10_000u32)
        .map(|i| {
            let sources: Vec<String> = (0..10u32).map(|j| format!("10.{}.{}.{}/32", (i * 10 + j) / 65536, ((i * 10 + j) / 256) % 256, (i * 10 + j) % 256)).collect();
            json!({"protocol": if i % 2 == 0 { "tcp" } else { "udp" }, "port": (i % 65535 + 1).to_string(), "sources": sources})
        })
        .collect();
    let r = t
        .put(
            &format!("/v1/firewalls/{fw}/rules"),
            &ta,
            json!({"rules": rules}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["rules"].as_array().unwrap().len(), 10_000);
    let policy = t
        .get(&format!("/v1/servers/{s}/policy"), &ta)
        .await
        .expect(200)
        .body;
    assert_eq!(policy["rules"].as_array().unwrap().len(), 10_000);
    let rev = t.revision().await;
    // One more rule: refused, naming the limit.
    let r = t
        .post(
            &format!("/v1/firewalls/{fw}/rules"),
            &ta,
            json!({"preset": "SSH"}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("rules"));
    assert!(r.message().contains("10000"), "{}", r.message());
    // 10,001 rules in one list.
    let mut too_many = rules.clone();
    too_many.push(json!({"preset": "SSH"}));
    let r = t
        .put(
            &format!("/v1/firewalls/{fw}/rules"),
            &ta,
            json!({"rules": too_many}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("rules"));
    // One more source network: refused, naming the sources limit.
    let rid = t.get(&format!("/v1/firewalls/{fw}/rules"), &ta).await.body["rules"][0]["id"]
        .as_i64()
        .unwrap();
    let eleven: Vec<String> = (0..11).map(|i| format!("192.0.2.{i}")).collect();
    let r = t
        .patch(
            &format!("/v1/firewalls/{fw}/rules/{rid}"),
            &ta,
            json!({"sources": eleven}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("sources"));
    assert!(r.message().contains("100000"), "{}", r.message());
    let mut wide = vec![
        json!({"protocol": "tcp", "port": "22", "sources": (0..100_001u32).map(|i| format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)).collect::<Vec<_>>()}),
    ];
    let r = t
        .post(
            "/v1/firewalls",
            &ta,
            json!({"name": "wide", "rules": wide.clone()}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("sources"));
    wide.clear();
    assert_eq!(t.revision().await, rev, "refused changes store nothing");
}

async fn tokens_are_hashed_scoped_and_revocable(b: Backend) {
    let t = TestPanel::start(b).await;
    let (cid, tw) = t.customer("a").await;
    let created = t
        .post("/v1/tokens", &tw, json!({"name": "ro", "scope": "read"}))
        .await
        .expect(201)
        .body;
    let ro = created["token"].as_str().unwrap().to_string();
    assert!(ro.starts_with("pwc_") && ro.len() > 60);
    assert_eq!(created["customer_id"], cid);
    // The secret is not stored: only its hash.
    let stored: Vec<(String, String)> = {
        use sqlx::Row;
        sqlx::query("SELECT hash, prefix FROM tokens")
            .fetch_all(t.store().pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
            .collect()
    };
    assert!(stored
        .iter()
        .all(|(h, p)| h != &ro && !ro.starts_with(h.as_str()) && p.len() < 16));
    assert!(stored
        .iter()
        .any(|(h, _)| h == &panel::store::secret_hash(&ro)));
    // Listed without secrets.
    let list = t.get("/v1/tokens", &tw).await.expect(200);
    assert!(!list.text.contains(&ro));
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    // Read scope: GET only.
    t.get("/v1/firewalls", &ro).await.expect(200);
    let r = t
        .post("/v1/firewalls", &ro, json!({"name": "x"}))
        .await
        .expect(403);
    assert!(r.message().contains("read-only"));
    // Customers cannot mint admin or edge tokens, nor tokens of others.
    t.post("/v1/tokens", &tw, json!({"name": "x", "kind": "admin"}))
        .await
        .expect(403);
    t.post(
        "/v1/tokens",
        &tw,
        json!({"name": "x", "kind": "edge", "zone": "fra1"}),
    )
    .await
    .expect(403);
    let (other, _) = t.customer("b").await;
    t.post(
        "/v1/tokens",
        &tw,
        json!({"name": "x", "customer_id": other}),
    )
    .await
    .expect(404);
    // Admin validations.
    assert_eq!(
        t.post("/v1/tokens", &t.admin, json!({"name": "x"}))
            .await
            .expect(422)
            .field(),
        Some("customer_id")
    );
    assert_eq!(
        t.post("/v1/tokens", &t.admin, json!({"name": "x", "kind": "edge"}))
            .await
            .expect(422)
            .field(),
        Some("zone")
    );
    let admin2 = t
        .post(
            "/v1/tokens",
            &t.admin,
            json!({"name": "ops2", "kind": "admin"}),
        )
        .await
        .expect(201)
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(admin2.starts_with("pwa_"));
    t.get("/v1/customers", &admin2).await.expect(200);
    // Revoke: stops working at once; revoking again is fine.
    let id = created["id"].as_i64().unwrap();
    let r = t
        .delete(&format!("/v1/tokens/{id}"), &tw)
        .await
        .expect(200)
        .body;
    assert!(r["revoked_at"].is_string());
    t.get("/v1/firewalls", &ro).await.expect(401);
    t.delete(&format!("/v1/tokens/{id}"), &tw).await.expect(200);
    t.delete("/v1/tokens/99999", &tw).await.expect(404);
    // The admin sees every token.
    assert!(
        t.get("/v1/tokens?limit=1000", &t.admin).await.body["items"]
            .as_array()
            .unwrap()
            .len()
            >= 5
    );
}

async fn audit_log_records_who_changed_what(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let (_, tb) = t.customer("b").await;
    let fw = t.firewall(&ta, "fw", json!([])).await;
    t.post(
        &format!("/v1/firewalls/{fw}/rules"),
        &ta,
        json!({"preset": "SSH"}),
    )
    .await
    .expect(201);
    t.post_empty(&format!("/v1/firewalls/{fw}/enable"), &ta)
        .await
        .expect(200);
    t.firewall(&tb, "b-fw", json!([])).await;
    let log = t.get("/v1/audit", &ta).await.expect(200).body;
    let items = log["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..3],
        &["firewall.enable", "rule.create", "firewall.create"],
        "newest first"
    );
    let e = &items[0];
    assert_eq!(e["target"], format!("firewall/{fw}"));
    assert_eq!(e["actor_kind"], "token");
    assert!(e["actor"].as_str().unwrap().contains("token 'ci'"));
    assert!(e["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(e["customer_id"], a);
    assert!(
        items.iter().all(|e| e["customer_id"] == a),
        "a customer sees only its own entries"
    );
    // The admin's own actions are recorded as admin.
    let all = t
        .get("/v1/audit?limit=1000", &t.admin)
        .await
        .expect(200)
        .body;
    assert!(all["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "customer.create" && e["actor_kind"] == "admin"));
    assert!(all["items"].as_array().unwrap().len() > items.len());
    // Paginated.
    let p1 = t.get("/v1/audit?limit=2", &ta).await.body;
    let p2 = t
        .get(
            &format!(
                "/v1/audit?limit=2&cursor={}",
                p1["next_cursor"].as_str().unwrap()
            ),
            &ta,
        )
        .await
        .body;
    let (i1, i2) = (ids(&p1), ids(&p2));
    assert!(i1[1] > i2[0], "pages continue downwards");
    assert_eq!([i1, i2].concat(), ids(&log)[..4].to_vec());
}

async fn sessions_login_csrf_and_rate_limit(b: Backend) {
    let t = TestPanel::start(b).await;
    let (cid, _) = t.customer("a").await;
    t.post(
        "/v1/users",
        &t.admin,
        json!({"login": "alice", "password": "correct horse battery", "customer_id": cid}),
    )
    .await
    .expect(201);
    // JSON login.
    let r = t
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"login": "alice", "password": "correct horse battery"})),
        )
        .await
        .expect(200);
    let set_cookie = r
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        set_cookie.contains("HttpOnly")
            && set_cookie.contains("SameSite=Lax")
            && set_cookie.contains("Path=/"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let csrf = r.body["csrf_token"].as_str().unwrap().to_string();
    assert_eq!(r.body["customer_id"], cid);
    // Reads with the cookie alone.
    let with_cookie = |extra: &[(&'static str, String)]| {
        let mut h = vec![("cookie", cookie.clone())];
        h.extend(extra.iter().cloned());
        h
    };
    let h = with_cookie(&[]);
    let hr: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    t.call_with(Method::GET, "/v1/firewalls", None, None, &hr)
        .await
        .expect(200);
    assert_eq!(
        t.call_with(Method::GET, "/v1/auth/session", None, None, &hr)
            .await
            .expect(200)
            .body["csrf_token"],
        csrf
    );
    // Changes need the CSRF token.
    let r = t
        .call_with(
            Method::POST,
            "/v1/firewalls",
            None,
            Some(json!({"name": "web"})),
            &hr,
        )
        .await
        .expect(403);
    assert_eq!(r.field(), Some("X-CSRF-Token"));
    let h = with_cookie(&[("x-csrf-token", "wrong".into())]);
    let hr: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    t.call_with(
        Method::POST,
        "/v1/firewalls",
        None,
        Some(json!({"name": "web"})),
        &hr,
    )
    .await
    .expect(403);
    let h = with_cookie(&[("x-csrf-token", csrf.clone())]);
    let hr: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let fw = t
        .call_with(
            Method::POST,
            "/v1/firewalls",
            None,
            Some(json!({"name": "web"})),
            &hr,
        )
        .await
        .expect(201);
    let audit = t.get("/v1/audit?limit=1", &t.admin).await.body;
    assert_eq!(audit["items"][0]["actor"], "user alice");
    assert_eq!(
        audit["items"][0]["target"],
        format!("firewall/{}", fw.body["id"])
    );
    // Logout ends the session.
    t.call_with(Method::POST, "/v1/auth/logout", None, None, &hr)
        .await
        .expect(204);
    t.call_with(Method::GET, "/v1/firewalls", None, None, &hr)
        .await
        .expect(401);

    // The HTML form: 303 with the cookie, or back to /login.
    let form = |login: &str, pw: &str| {
        let (client, url) = (t.client.clone(), t.url.clone());
        let (login, pw) = (login.to_string(), pw.replace(' ', "+"));
        async move {
            let (cookie, token) = common::login_form_token(&client, &url).await;
            client
                .post(format!("{url}/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cookie", cookie)
                .body(format!(
                    "login={login}&password={pw}&next=%2Ffirewalls&csrf_token={token}"
                ))
                .send()
                .await
                .unwrap()
        }
    };
    let ok = form("alice", "correct horse battery").await;
    assert_eq!(ok.status().as_u16(), 303);
    assert_eq!(ok.headers()["location"], "/firewalls");
    let form_cookie = ok
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("portwall_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let session = t
        .call_with(
            Method::GET,
            "/v1/auth/session",
            None,
            None,
            &[("cookie", &form_cookie)],
        )
        .await
        .expect(200)
        .body;
    // Form logout needs the form's CSRF field.
    let logout = |csrf: String| {
        let (client, url, cookie) = (t.client.clone(), t.url.clone(), form_cookie.clone());
        async move {
            client
                .post(format!("{url}/logout"))
                .header("cookie", cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("csrf_token={csrf}"))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(logout("bad".into()).await.status().as_u16(), 403);
    assert_eq!(
        logout(session["csrf_token"].as_str().unwrap().to_string())
            .await
            .status()
            .as_u16(),
        303
    );
    t.call_with(
        Method::GET,
        "/v1/auth/session",
        None,
        None,
        &[("cookie", &form_cookie)],
    )
    .await
    .expect(401);

    let bad = form("alice", "wrong").await;
    assert_eq!(bad.headers()["location"], "/login?error=invalid");
    assert!(bad.headers().get("set-cookie").is_none());
    // Rate limit: after 5 failures for a login, even the right password is refused.
    for _ in 0..4 {
        t.call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"login": "alice", "password": "nope nope nope"})),
        )
        .await
        .expect(401);
    }
    let r = t
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"login": "alice", "password": "correct horse battery"})),
        )
        .await
        .expect(429);
    assert!(r.headers.get("retry-after").is_some());
    assert_eq!(
        form("alice", "correct horse battery").await.headers()["location"],
        "/login?error=locked"
    );
    // Unknown logins fail the same way.
    let r = t
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"login": "mallory", "password": "whatever1234"})),
        )
        .await
        .expect(401);
    assert_eq!(r.message(), "wrong login or password");
}

async fn server_and_firewall_apply_status(b: Backend) {
    let t = TestPanel::start(b).await;
    let (a, ta) = t.customer("a").await;
    let s = t.server(a, "s1", "VPS", "fra1", json!({})).await;
    let edge = t.edge_token("fra1").await;
    let fw = t.firewall(&ta, "fw", json!([{"preset": "SSH"}])).await;
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
    let st = t
        .get(&format!("/v1/servers/{s}/status"), &ta)
        .await
        .expect(200)
        .body;
    assert_eq!(st["status"], "pending");
    assert_eq!(st["enforced"], true);
    assert_eq!(st["firewalls"], json!([fw]));
    let rev = st["policy_revision"].as_u64().unwrap();
    let rule = t.get(&format!("/v1/firewalls/{fw}"), &ta).await.body["rules"][0]["id"]
        .as_i64()
        .unwrap();
    // The edge reports success, with counters.
    let report = json!({"edge": "edge-a", "zone": "fra1", "revision": rev, "servers": [{"server_id": s, "revision": rev}],
        "counters": [{"server_id": s, "rule_id": rule, "packets": 10, "bytes": 1000}, {"server_id": s, "packets": 3, "bytes": 120}]});
    let r = t
        .post("/v1/edge/report", &edge, report)
        .await
        .expect(200)
        .body;
    assert_eq!(r["recorded"], 1);
    let st = t.get(&format!("/v1/servers/{s}/status"), &ta).await.body;
    assert_eq!(st["status"], "applied");
    assert_eq!(st["edge"], "edge-a");
    assert_eq!(st["counters"].as_array().unwrap().len(), 2);
    assert!(st["counters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["rule_id"] == rule && c["packets"] == 10));
    assert!(st["counters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["rule_id"].is_null() && c["packets"] == 3));
    // A change makes it pending again; a failure shows the reason.
    t.post(
        &format!("/v1/firewalls/{fw}/rules"),
        &ta,
        json!({"preset": "HTTP"}),
    )
    .await
    .expect(201);
    assert_eq!(
        t.get(&format!("/v1/servers/{s}/status"), &ta).await.body["status"],
        "pending"
    );
    let rev2 = t.revision().await;
    let report = json!({"edge": "edge-a", "zone": "fra1", "revision": rev2, "servers": [{"server_id": s, "revision": rev2, "error": "nft: out of memory"}]});
    t.post("/v1/edge/report", &edge, report).await.expect(200);
    let st = t.get(&format!("/v1/servers/{s}/status"), &ta).await.body;
    assert_eq!(st["status"], "failed: nft: out of memory");
    assert_eq!(st["state"], "failed");
    let fst = t
        .get(&format!("/v1/firewalls/{fw}/status"), &ta)
        .await
        .expect(200)
        .body;
    assert_eq!(fst["servers"][0]["status"], "failed: nft: out of memory");
    // A later success clears the failure.
    let report = json!({"edge": "edge-a", "zone": "fra1", "revision": rev2, "servers": [{"server_id": s, "revision": rev2}]});
    t.post("/v1/edge/report", &edge, report).await.expect(200);
    assert_eq!(
        t.get(&format!("/v1/servers/{s}/status"), &ta).await.body["status"],
        "applied"
    );
    // Servers outside the edge's zone are ignored; another zone's report is refused.
    let (_, _) = t.customer("b").await;
    let elsewhere = t.server(a, "s2", "VPS", "ams1", json!({})).await;
    let r = t.post("/v1/edge/report", &edge, json!({"edge": "edge-a", "zone": "fra1", "revision": rev2, "servers": [{"server_id": elsewhere, "revision": rev2}]})).await.expect(200).body;
    assert_eq!(r["ignored"], json!([elsewhere]));
    assert_eq!(
        t.get(&format!("/v1/servers/{elsewhere}/status"), &ta)
            .await
            .body["status"],
        "pending"
    );
    let r = t
        .post(
            "/v1/edge/report",
            &edge,
            json!({"edge": "edge-a", "zone": "ams1", "revision": rev2, "servers": []}),
        )
        .await
        .expect(403);
    assert_eq!(r.field(), Some("zone"));
    // Customer tokens cannot report.
    t.post(
        "/v1/edge/report",
        &ta,
        json!({"edge": "x", "zone": "fra1", "revision": 1, "servers": []}),
    )
    .await
    .expect(403);
}

async fn inputs_of_the_wrong_kind_and_names_in_characters(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, ta) = t.customer("a").await;
    // A protocol that is not a word: 422 naming it, not "malformed JSON".
    for protocol in [json!(6), json!(["tcp"]), json!(true)] {
        let r = t
            .post(
                "/v1/firewalls",
                &ta,
                json!({"name": "fw", "rules": [{"protocol": protocol, "port": "22"}]}),
            )
            .await
            .expect(422);
        assert_eq!(
            r.field(),
            Some("rules[0].protocol"),
            "{protocol}: {}",
            r.text
        );
    }
    let fw = t.firewall(&ta, "fw", json!([])).await;
    let r = t
        .post(
            &format!("/v1/firewalls/{fw}/rules"),
            &ta,
            json!({"protocol": 6}),
        )
        .await
        .expect(422);
    assert_eq!(r.field(), Some("protocol"), "{}", r.text);
    // Bytes that are not JSON stay 400.
    let r = t
        .raw(
            Method::POST,
            "/v1/firewalls",
            &ta,
            "application/json",
            b"{\"name\": ".to_vec(),
        )
        .await
        .expect(400);
    assert_eq!(r.field(), Some("body"));
    // Names: 100 characters, counted as characters (not bytes).
    let long = "\u{e9}".repeat(100);
    let r = t
        .post("/v1/firewalls", &ta, json!({"name": long}))
        .await
        .expect(201);
    assert_eq!(r.body["name"], long.as_str());
    let r = t
        .post("/v1/firewalls", &ta, json!({"name": "\u{e9}".repeat(101)}))
        .await
        .expect(422);
    assert!(r.message().contains("1-100 characters"), "{}", r.text);
}

async fn customers_cannot_ask_for_another_customer(b: Backend) {
    let t = TestPanel::start(b).await;
    let (ca, ta) = t.customer("a").await;
    let (cb, _) = t.customer("b").await;
    t.server(cb, "theirs", "VPS", "fra1", json!({})).await;
    t.server(ca, "mine", "VPS", "fra1", json!({})).await;
    for path in [
        format!("/v1/servers?customer_id={cb}"),
        format!("/v1/servers?customer_id={ca}"),
        format!("/v1/audit?customer_id={cb}"),
    ] {
        let r = t.get(&path, &ta).await.expect(403);
        assert_eq!(r.field(), Some("customer_id"), "{path}");
    }
    let r = t.get("/v1/servers", &ta).await.expect(200);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    // The admin's filter still works.
    let r = t
        .get(&format!("/v1/servers?customer_id={cb}"), &t.admin)
        .await
        .expect(200);
    assert_eq!(r.body["items"][0]["name"], "theirs");
}

async fn if_match_lists_and_empty_cursors(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, ta) = t.customer("a").await;
    let fw = t.firewall(&ta, "fw", json!([])).await;
    let path = format!("/v1/firewalls/{fw}");
    let old = t.get(&path, &ta).await.expect(200).etag();
    let patch = |tags: Vec<String>| {
        let (t, path, ta) = (&t, path.clone(), ta.clone());
        async move {
            let headers: Vec<(&str, &str)> =
                tags.iter().map(|v| ("if-match", v.as_str())).collect();
            t.call_with(
                Method::PATCH,
                &path,
                Some(&ta),
                Some(json!({"description": "changed"})),
                &headers,
            )
            .await
        }
    };
    // Any one current tag in a list is enough (RFC 9110), in one header or several.
    let r = patch(vec![format!("\"r999999\", {old}, W/\"x\"")])
        .await
        .expect(200);
    let now = r.etag();
    assert_ne!(now, old);
    let r = patch(vec!["\"nonsense\"".into(), format!("W/{now}")])
        .await
        .expect(200);
    let now2 = r.etag();
    // A list without the current tag: 412, nothing changed.
    let r = patch(vec![format!("{old}, {now}, \"r999999\"")]).await;
    assert_eq!(r.status.as_u16(), 412, "{}", r.text);
    assert_eq!(r.etag(), now2);
    patch(vec!["*".into()]).await.expect(200);
    // Another customer's firewall stays 404 whatever If-Match lists.
    let (_, tb) = t.customer("b").await;
    let r = t
        .call_with(
            Method::PATCH,
            &path,
            Some(&tb),
            Some(json!({"description": "x"})),
            &[("if-match", &format!("{now2}, \"r1\""))],
        )
        .await;
    assert_eq!(r.status.as_u16(), 404, "{}", r.text);
    // An empty cursor is the first page, as the document says.
    let first = t.get("/v1/firewalls?cursor=", &ta).await.expect(200);
    assert_eq!(first.body["items"][0]["id"].as_i64(), Some(fw));
    t.get("/v1/firewalls?cursor=x", &ta).await.expect(400);
    for limit in ["0", "1001", "x"] {
        let r = t
            .get(&format!("/v1/firewalls?limit={limit}"), &ta)
            .await
            .expect(400);
        assert_eq!(r.field(), Some("limit"));
    }
}

/// A request refused before its body is read (here 401: no token) leaves
/// the keep-alive connection usable: the next request on it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_before_the_body_the_connection_stays_usable() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    type Reader = BufReader<tokio::net::tcp::OwnedReadHalf>;
    async fn response(read: &mut Reader) -> (u16, String, bool) {
        let mut status = String::new();
        read.read_line(&mut status).await.unwrap();
        let code = status
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .parse()
            .unwrap_or(0);
        let (mut length, mut close) = (0usize, false);
        loop {
            let mut line = String::new();
            read.read_line(&mut line).await.unwrap();
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            close |= line == "connection: close";
        }
        let mut body = vec![0; length];
        read.read_exact(&mut body).await.unwrap();
        (code, String::from_utf8_lossy(&body).into_owned(), close)
    }
    let t = TestPanel::start(Backend::Sqlite).await;
    let addr = t.url.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    // A 256 KiB body, sent after the headers, in pieces.
    let body = format!("{{\"name\": \"{}\"}}", "x".repeat(256 * 1024));
    let head = format!(
        "POST /v1/firewalls HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    write.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.as_bytes().chunks(16 * 1024) {
        write.write_all(chunk).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (code, text, close) = response(&mut read).await;
    assert_eq!(code, 401, "{text}");
    assert!(
        !close,
        "the panel closed the connection after an early refusal"
    );
    // The same connection, the next request.
    let next = format!("GET /v1/presets HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    write.write_all(next.as_bytes()).await.unwrap();
    let (code, text, _) =
        tokio::time::timeout(std::time::Duration::from_secs(30), response(&mut read))
            .await
            .expect("no answer to the second request on the kept-alive connection");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("SSH"), "{text}");
}
