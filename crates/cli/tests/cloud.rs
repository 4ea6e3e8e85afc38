//! `portwall cloud` and the network-firewall layer of `portwall audit`, as a
//! user runs them: a real panel (the `panel` crate, in this process, on SQLite
//! in a temporary directory) and the real `portwall` binary talking to it.
//!
//! The `cloud` tests touch no packet filter, so they run where the test runs,
//! against a panel on 127.0.0.1. The `audit` test changes the OS firewall, so
//! it runs in a network namespace it creates: the panel listens on 127.0.0.1
//! of that namespace, and `portwall` runs there (`ip netns exec`).

mod common;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use testns::{Netns, Pair};

/// A panel in this process, listening on 127.0.0.1 of `ns` (or of this
/// process's namespace), with its admin token.
struct TestPanel<'a> {
    ns: Option<&'a Netns>,
    url: String,
    admin: String,
    panel: Option<panel::Panel>,
    rt: tokio::runtime::Runtime,
    _db: tempfile::TempDir,
}

impl<'a> TestPanel<'a> {
    fn start(ns: Option<&'a Netns>) -> TestPanel<'a> {
        let bind = || TcpListener::bind("127.0.0.1:0").expect("bind the panel's port");
        let listener = match ns {
            Some(ns) => ns.run(bind),
            None => bind(),
        };
        listener.set_nonblocking(true).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let db = tempfile::tempdir().unwrap();
        let config = panel::DatabaseConfig::sqlite_in(db.path());
        let (p, admin) = rt.block_on(async {
            let store = panel::Store::open(&config).await.expect("open the store");
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let p = panel::Panel::start(listener, store, panel::PanelConfig::default())
                .await
                .expect("start the panel");
            let admin = p
                .state
                .store
                .ensure_admin_token()
                .await
                .unwrap()
                .expect("a fresh panel has no admin token yet");
            (p, admin)
        });
        TestPanel {
            ns,
            url: p.url(),
            admin,
            panel: Some(p),
            rt,
            _db: db,
        }
    }

    /// One request to the panel's API (from inside the panel's namespace).
    fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let f = move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let c = reqwest::Client::builder()
                    .tls_backend_preconfigured(tls::ClientTls::default().config().unwrap())
                    .no_proxy()
                    .build()
                    .unwrap();
                let mut req = c.request(method, &url).bearer_auth(token);
                if let Some(b) = body {
                    req = req.json(&b);
                }
                let r = req.send().await.expect("the panel answers");
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::Null))
            })
        };
        match self.ns {
            Some(ns) => ns.run(f),
            None => f(),
        }
    }

    #[track_caller]
    fn ok(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, token, body);
        assert!((200..300).contains(&status), "{path}: {status} {v}");
        v
    }

    /// A customer and a write token for it.
    fn customer(&self, name: &str) -> (i64, String) {
        let c = self.ok(
            Method::POST,
            "/v1/customers",
            &self.admin,
            Some(json!({"name": name, "email": format!("{name}@example.com")})),
        );
        let id = c["id"].as_i64().unwrap();
        let t = self.ok(
            Method::POST,
            "/v1/tokens",
            &self.admin,
            Some(json!({"name": "cli", "customer_id": id, "scope": "write"})),
        );
        (id, t["token"].as_str().unwrap().to_string())
    }

    fn server(&self, customer: i64, name: &str, kind: &str, v4: &str, v6: &str) -> i64 {
        self.ok(
            Method::POST,
            "/v1/servers",
            &self.admin,
            Some(
                json!({"customer_id": customer, "name": name, "type": kind, "zone": "z1",
                "ipv4": [v4], "ipv6": [v6]}),
            ),
        )["id"]
            .as_i64()
            .unwrap()
    }

    fn edge_token(&self) -> String {
        self.ok(
            Method::POST,
            "/v1/tokens",
            &self.admin,
            Some(json!({"name": "edge-1", "kind": "edge", "zone": "z1"})),
        )["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn firewall(&self, token: &str, id: i64) -> Value {
        self.ok(Method::GET, &format!("/v1/firewalls/{id}"), token, None)
    }
}

impl Drop for TestPanel<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.panel.take() {
            let _ = self.rt.block_on(p.stop());
        }
    }
}

/// Runs `portwall ARGS` (in `ns` when given) with the panel's URL and `token`
/// in its environment (none when `token` is None).
fn portwall(ns: Option<&Netns>, dir: &Path, panel: Option<(&str, &str)>, args: &[&str]) -> Output {
    let mut c = common::portwall_command(ns, dir);
    if let Some((url, token)) = panel {
        c.env("PORTWALL_PANEL_URL", url)
            .env("PORTWALL_TOKEN", token);
    }
    c.args(args).output().expect("run portwall")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// stdout of a run that must succeed.
#[track_caller]
fn ok(o: Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The JSON on stdout of a run that must succeed.
#[track_caller]
fn ok_json(o: Output) -> Value {
    let out = ok(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// A run that must fail with `code`: its stderr.
#[track_caller]
fn fails(o: Output, code: i32) -> String {
    assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The column where `word` starts in the line that contains `line_has`.
fn column(out: &str, line_has: &str, word: &str) -> usize {
    let line = out
        .lines()
        .find(|l| l.contains(line_has))
        .unwrap_or_else(|| panic!("no line with '{line_has}' in:\n{out}"));
    line.find(word)
        .unwrap_or_else(|| panic!("'{word}' not in '{line}'"))
}

#[test]
fn cloud_firewall_from_create_to_status() {
    let t = TestPanel::start(None);
    let (a, ta) = t.customer("alice");
    let vps1 = t.server(a, "vps1", "VPS", "203.0.113.11", "2001:db8::11");
    let vps2 = t.server(a, "vps2", "VDS", "203.0.113.12", "2001:db8::12");
    t.server(a, "dedi1", "Dedicated", "203.0.113.13", "2001:db8::13");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = Some((t.url.as_str(), ta.as_str()));
    let pw = |args: &[&str]| portwall(None, d, env, args);

    // create
    let out = ok(pw(&[
        "cloud",
        "firewall",
        "create",
        "web",
        "--description",
        "web tier",
    ]));
    assert!(out.contains("Created firewall 'web' (id "), "{out}");
    assert!(out.contains("inactive"), "{out}");
    let db = ok_json(pw(&["cloud", "firewall", "create", "db", "--json"]));
    assert_eq!(db["name"], "db");
    assert_eq!(db["status"], "inactive");
    let db_id = db["id"].as_i64().unwrap();

    // add-rule: protocol and port with sources, a preset, icmp
    let out = ok(pw(&[
        "cloud",
        "firewall",
        "add-rule",
        "web",
        "tcp",
        "443",
        "--from",
        "203.0.113.0/24",
        "--from",
        "2001:db8::/32",
        "--description",
        "https",
    ]));
    assert!(
        out.contains("tcp 443 from 203.0.113.0/24, 2001:db8::/32 (https)"),
        "{out}"
    );
    assert!(out.contains("is inactive"), "{out}");
    let added = ok_json(pw(&[
        "cloud", "firewall", "add-rule", "web", "--preset", "ssh", "--json",
    ]));
    assert_eq!(added["rule"]["protocol"], "tcp");
    assert_eq!(added["rule"]["port"], "22");
    assert_eq!(added["firewall"]["rules"].as_array().unwrap().len(), 2);
    let ssh_rule = added["rule"]["id"].as_i64().unwrap();
    let icmp = ok_json(pw(&[
        "cloud", "firewall", "add-rule", "web", "icmp", "--json",
    ]));
    assert_eq!(icmp["rule"]["protocol"], "icmp");
    assert!(icmp["rule"]["port"].is_null());
    let web_id = icmp["firewall"]["id"].as_i64().unwrap();

    // list
    let out = ok(pw(&["cloud", "firewall", "list"]));
    assert!(out.lines().next().unwrap().starts_with("ID"), "{out}");
    assert!(out
        .lines()
        .any(|l| l.contains("web") && l.contains("inactive") && l.contains("web tier")));
    assert_eq!(
        column(&out, "Name", "Name"),
        column(&out, "web tier", "web")
    );
    let list = ok_json(pw(&["cloud", "firewall", "list", "--json"]));
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "db"]);
    assert_eq!(list["items"][0]["rule_count"], 3);

    // show, by name and by id
    let out = ok(pw(&["cloud", "firewall", "show", "web"]));
    assert!(
        out.starts_with(&format!("Firewall 'web' (id {web_id}): inactive")),
        "{out}"
    );
    assert!(out.contains("203.0.113.0/24, 2001:db8::/32"), "{out}");
    assert_eq!(column(&out, "Proto", "Port"), column(&out, "https", "443"));
    let shown = ok_json(pw(&[
        "cloud",
        "firewall",
        "show",
        &web_id.to_string(),
        "--json",
    ]));
    assert_eq!(shown, t.firewall(&ta, web_id));

    // enable
    let out = ok(pw(&["cloud", "firewall", "enable", "web"]));
    assert!(out.starts_with("Enabled firewall 'web'"), "{out}");
    assert!(out.contains("assigned to no server"), "{out}");
    let disabled = ok_json(pw(&["cloud", "firewall", "disable", "web", "--json"]));
    assert_eq!(disabled["status"], "inactive");
    let enabled = ok_json(pw(&["cloud", "firewall", "enable", "web", "--json"]));
    assert_eq!(enabled["status"], "active");

    // assign: by name, by id; a Dedicated server is refused with the panel's reason
    let out = ok(pw(&["cloud", "firewall", "assign", "web", "vps1"]));
    assert!(
        out.contains(&format!(
            "Assigned firewall 'web' (id {web_id}) to vps1 (id {vps1})"
        )),
        "{out}"
    );
    let assigned = ok_json(pw(&[
        "cloud",
        "firewall",
        "assign",
        "web",
        &vps2.to_string(),
        "--json",
    ]));
    assert_eq!(assigned["assigned"], json!([vps2]));
    assert_eq!(assigned["firewall"]["servers"], json!([vps1, vps2]));
    let err = fails(pw(&["cloud", "firewall", "assign", "web", "dedi1"]), 1);
    assert!(err.contains("409") && err.contains("server_id"), "{err}");
    let err = fails(pw(&["cloud", "firewall", "assign", "web", "nosuch"]), 1);
    assert!(err.contains("no server 'nosuch'"), "{err}");

    // status: pending until an edge reports; then applied, or failed with the reason
    let out = ok(pw(&["cloud", "firewall", "status", "web"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("vps1") && l.contains("pending")),
        "{out}"
    );
    let edge = t.edge_token();
    let rev = [vps1, vps2]
        .map(|s| {
            t.ok(Method::GET, &format!("/v1/servers/{s}"), &ta, None)["policy_revision"]
                .as_u64()
                .unwrap()
        })
        .into_iter()
        .max()
        .unwrap();
    t.ok(
        Method::POST,
        "/v1/edge/report",
        &edge,
        Some(
            json!({"edge": "edge-1", "zone": "z1", "revision": rev, "servers": [
            {"server_id": vps1, "revision": rev},
            {"server_id": vps2, "revision": rev, "error": "nft: out of memory"}]}),
        ),
    );
    let out = ok(pw(&["cloud", "firewall", "status", "web"]));
    assert!(
        out.starts_with(&format!("Firewall 'web' (id {web_id}): active")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("vps1") && l.contains("applied") && l.contains("edge-1")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("vps2") && l.contains("failed: nft: out of memory")),
        "{out}"
    );
    assert_eq!(
        column(&out, "Zone", "Status"),
        column(&out, "vps1", "applied")
    );
    let st = ok_json(pw(&["cloud", "firewall", "status", "web", "--json"]));
    let by_server = |id: i64| {
        st["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["server_id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(by_server(vps1), "applied");
    assert_eq!(by_server(vps2), "failed: nft: out of memory");

    // unassign
    let out = ok(pw(&["cloud", "firewall", "unassign", "web", "vps2"]));
    assert!(
        out.contains("Unassigned firewall 'web'") && out.contains("vps2"),
        "{out}"
    );
    let un = ok_json(pw(&[
        "cloud", "firewall", "unassign", "web", "vps1", "--json",
    ]));
    assert_eq!(un["servers"], json!([]));
    let err = fails(pw(&["cloud", "firewall", "unassign", "web", "vps1"]), 1);
    assert!(err.contains("not assigned"), "{err}");
    let out = ok(pw(&["cloud", "firewall", "status", "web"]));
    assert!(out.contains("applies to no server"), "{out}");

    // selectors: assign, then remove
    let sel = ok_json(pw(&[
        "cloud",
        "firewall",
        "assign",
        "db",
        "--selector",
        "env=prod",
        "--json",
    ]));
    assert_eq!(sel["firewall"]["selectors"][0]["selector"], "env=prod");
    let out = ok(pw(&[
        "cloud",
        "firewall",
        "unassign",
        "db",
        "--selector",
        "env=prod",
    ]));
    assert!(out.contains("selector env=prod"), "{out}");
    assert_eq!(t.firewall(&ta, db_id)["selectors"], json!([]));

    // delete-rule
    let out = ok(pw(&[
        "cloud",
        "firewall",
        "delete-rule",
        "web",
        &ssh_rule.to_string(),
    ]));
    assert!(
        out.starts_with(&format!("Deleted rule {ssh_rule} (tcp 22")),
        "{out}"
    );
    let fw = t.firewall(&ta, web_id);
    assert_eq!(fw["rules"].as_array().unwrap().len(), 2);
    let icmp_rule = icmp["rule"]["id"].as_i64().unwrap();
    let after = ok_json(pw(&[
        "cloud",
        "firewall",
        "delete-rule",
        "web",
        &icmp_rule.to_string(),
        "--json",
    ]));
    assert_eq!(after["rules"].as_array().unwrap().len(), 1);
    let err = fails(pw(&["cloud", "firewall", "delete-rule", "web", "99999"]), 1);
    assert!(err.contains("has no rule 99999"), "{err}");

    // server list
    let out = ok(pw(&["cloud", "server", "list"]));
    assert!(
        out.lines()
            .any(|l| l.contains("vps1") && l.contains("VPS") && l.contains("203.0.113.11")),
        "{out}"
    );
    let servers = ok_json(pw(&["cloud", "server", "list", "--json"]));
    assert_eq!(servers["items"].as_array().unwrap().len(), 3);

    // delete
    ok(pw(&["cloud", "firewall", "delete", "db"]));
    let (status, _) = t.call(Method::GET, &format!("/v1/firewalls/{db_id}"), &ta, None);
    assert_eq!(status, 404);
}

#[test]
fn bad_rules_exit_2_and_nothing_is_stored() {
    let t = TestPanel::start(None);
    let (_, ta) = t.customer("alice");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = Some((t.url.as_str(), ta.as_str()));
    let pw = |args: &[&str]| portwall(None, d, env, args);
    let fw = ok_json(pw(&["cloud", "firewall", "create", "web", "--json"]));
    let id = fw["id"].as_i64().unwrap();
    let before = t.firewall(&ta, id);

    let base = ["cloud", "firewall", "add-rule", "web"];
    let cases: [(&[&str], &[&str]); 6] = [
        (&["tcp", "70000"], &["'70000'", "1-65535"]),
        (
            &["tcp", "22", "--from", "10.0.0.300/8"],
            &["'10.0.0.300/8'", "203.0.113.0/24"],
        ),
        (
            &["tcp", "22", "--from", "10.0.0.1/8"],
            &["host bits", "10.0.0.0/8"],
        ),
        (&["icmp", "22"], &["'22' with icmp", "no ports"]),
        (&["sctp", "22"], &["'sctp'", "tcp, udp, icmp"]),
        (&["--preset", "gopher"], &["'gopher'", "SSH"]),
    ];
    for (args, says) in cases {
        let mut full = base.to_vec();
        full.extend_from_slice(args);
        let err = fails(pw(&full), 2);
        for s in says {
            assert!(err.contains(s), "{args:?}: '{s}' not in: {err}");
        }
        full.push("--json");
        let o = pw(&full);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["exit_code"], 2);
        assert!(v["error"].as_str().unwrap().contains(says[0]), "{v}");
    }
    // A bad --if-match is bad input too.
    fails(
        pw(&[
            "cloud",
            "firewall",
            "enable",
            "web",
            "--if-match",
            "yesterday",
        ]),
        2,
    );
    assert_eq!(t.firewall(&ta, id), before, "nothing was stored");

    // No panel configured: bad usage.
    let err = fails(portwall(None, d, None, &["cloud", "firewall", "list"]), 2);
    assert!(err.contains("PORTWALL_PANEL_URL"), "{err}");

    // Errors of the panel come with its field and reason, exit 1.
    let err = fails(pw(&["cloud", "firewall", "create", "web"]), 1);
    assert!(err.contains("409") && err.contains("name:"), "{err}");
    let err = fails(
        portwall(
            None,
            d,
            Some((&t.url, "pwc_wrong")),
            &["cloud", "firewall", "list"],
        ),
        1,
    );
    assert!(
        err.contains("401") && err.contains("Authorization"),
        "{err}"
    );
}

#[test]
fn another_customers_firewall_is_not_found() {
    let t = TestPanel::start(None);
    let (_, ta) = t.customer("alice");
    let (_, tb) = t.customer("bob");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bobs = ok_json(portwall(
        None,
        d,
        Some((&t.url, &tb)),
        &["cloud", "firewall", "create", "bobs", "--json"],
    ));
    let id = bobs["id"].as_i64().unwrap().to_string();
    let alice = Some((t.url.as_str(), ta.as_str()));
    for key in [id.as_str(), "bobs"] {
        for cmd in ["show", "enable", "status"] {
            let err = fails(
                portwall(None, d, alice, &["cloud", "firewall", cmd, key]),
                1,
            );
            assert!(err.contains(&format!("no firewall '{key}'")), "{err}");
        }
        let err = fails(
            portwall(
                None,
                d,
                alice,
                &["cloud", "firewall", "add-rule", key, "tcp", "22"],
            ),
            1,
        );
        assert!(err.contains("no firewall"), "{err}");
    }
    let err = fails(
        portwall(None, d, alice, &["cloud", "firewall", "show", &id]),
        1,
    );
    assert!(err.contains("not found"), "the panel's reason: {err}");
    let bobs_now = t.firewall(&tb, bobs["id"].as_i64().unwrap());
    assert_eq!(bobs_now["status"], "inactive");
    assert_eq!(bobs_now["rules"], json!([]));
}

#[test]
fn a_stale_etag_is_reported_and_nothing_is_overwritten() {
    let t = TestPanel::start(None);
    let (_, ta) = t.customer("alice");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = Some((t.url.as_str(), ta.as_str()));
    let pw = |args: &[&str]| portwall(None, d, env, args);
    ok(pw(&["cloud", "firewall", "create", "web"]));
    let read = ok_json(pw(&["cloud", "firewall", "show", "web", "--json"]));
    let seen = read["revision"].as_u64().unwrap().to_string();
    // Someone else changes it in between.
    ok(pw(&["cloud", "firewall", "add-rule", "web", "tcp", "80"]));
    let now = t.firewall(&ta, read["id"].as_i64().unwrap());
    for (args, form) in [
        (vec!["add-rule", "web", "tcp", "443"], seen.clone()),
        (vec!["enable", "web"], format!("\"r{seen}\"")),
        (
            vec!["delete-rule", "web", &now["rules"][0]["id"].to_string()],
            format!("r{seen}"),
        ),
    ] {
        let mut full = vec!["cloud", "firewall"];
        full.extend(args.iter().copied());
        full.extend(["--if-match", form.as_str()]);
        let err = fails(pw(&full), 1);
        assert!(
            err.contains("was changed by someone else") && err.contains("If-Match"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        t.firewall(&ta, read["id"].as_i64().unwrap()),
        now,
        "nothing changed"
    );
    // With the current ETag, the change goes through.
    let current = now["revision"].to_string();
    ok(pw(&[
        "cloud",
        "firewall",
        "enable",
        "web",
        "--if-match",
        &current,
    ]));
}

/// The network firewall in `audit`: both layers must let a source in.
#[test]
fn audit_combines_the_network_firewall_with_the_os_firewall() {
    // The server end of a link: 198.51.100.10, the address the panel knows it by.
    let pair = Pair::new();
    let ns = &pair.server;
    let t = TestPanel::start(Some(ns));
    let (a, ta) = t.customer("alice");
    t.server(a, "vps1", "VPS", &pair.server_addr.v4, "2001:db8::10");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = Some((t.url.as_str(), ta.as_str()));
    let pw = |args: &[&str]| portwall(Some(ns), d, env, args);

    // Sockets owned by this test, inside the namespace.
    let _socks = ns.run(|| {
        ["0.0.0.0:8443", "0.0.0.0:5432", "0.0.0.0:3306"].map(|a| TcpListener::bind(a).unwrap())
    });
    // The OS firewall lets anyone reach all three.
    for args in [
        &["--force", "enable"][..],
        &["allow", "8443/tcp"],
        &["allow", "5432/tcp"],
        &["allow", "3306/tcp"],
    ] {
        ok(portwall(Some(ns), d, None, args));
    }
    // Without a panel: the OS firewall alone, and one line saying so.
    let o = portwall(Some(ns), d, None, &["audit"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.matches("not configured").count(), 1, "{out}");
    assert!(out.contains("network firewall: not configured"), "{out}");
    assert!(!out.contains("Network firewall lets in"), "{out}");

    // The network firewall: 8443 from one network only, 5432 from anyone, 3306 not at all.
    ok(pw(&["cloud", "firewall", "create", "edge"]));
    ok(pw(&[
        "cloud",
        "firewall",
        "add-rule",
        "edge",
        "tcp",
        "8443",
        "--from",
        "198.51.100.0/24",
    ]));
    let pg = ok_json(pw(&[
        "cloud", "firewall", "add-rule", "edge", "tcp", "5432", "--json",
    ]));
    ok(pw(&["cloud", "firewall", "assign", "edge", "vps1"]));
    // Assigned but inactive: it filters nothing yet.
    let o = pw(&["audit", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["network_firewall"]["state"], "not_enforced", "{v}");
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["port"] == 3306)
        .unwrap();
    assert_eq!(f["network_firewall"]["reach"], "anyone", "{f}");
    assert_eq!(f["class"], "EXPOSED", "{f}");
    ok(pw(&["cloud", "firewall", "enable", "edge"]));

    let o = pw(&["audit", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "postgresql is open on both layers: {}",
        text(&o)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["network_firewall"]["state"], "enforced", "{v}");
    assert_eq!(v["network_firewall"]["server"]["name"], "vps1", "{v}");
    assert_eq!(v["network_firewall"]["firewalls"][0]["name"], "edge", "{v}");
    let finding = |port: u16| {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["port"] == port)
            .unwrap_or_else(|| panic!("{port} in {v}"))
            .clone()
    };
    let f = finding(8443);
    assert_eq!(f["class"], "RESTRICTED", "{f}");
    assert_eq!(f["os_firewall"]["reach"], "anyone", "{f}");
    assert_eq!(
        f["network_firewall"],
        json!({"reach": "some", "sources": ["198.51.100.0/24"]}),
        "{f}"
    );
    assert_eq!(f["reachable_from"], f["network_firewall"], "{f}");
    let f = finding(5432);
    assert_eq!(f["class"], "EXPOSED", "{f}");
    assert_eq!(f["risky"], "postgresql", "{f}");
    let f = finding(3306);
    assert_eq!(f["class"], "BLOCKED", "the network firewall drops it: {f}");
    assert_eq!(f["network_firewall"]["reach"], "nobody", "{f}");
    assert!(f["risky"].is_null(), "{f}");

    let o = pw(&["audit"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Network firewall lets in"), "{out}");
    let line = |port: &str| {
        out.lines()
            .find(|l| l.contains(&format!(":{port} ")))
            .unwrap_or_else(|| panic!("{port} in {out}"))
            .to_string()
    };
    assert!(line("8443").starts_with("RESTRICTED"), "{out}");
    assert!(line("8443").contains("198.51.100.0/24"), "{out}");
    assert!(line("5432").contains("RISK: postgresql"), "{out}");
    assert!(line("3306").starts_with("BLOCKED"), "{out}");
    assert_eq!(
        column(&out, "Class", "Network firewall lets in"),
        column(&out, ":8443 ", "198.51.100.0/24")
    );
    assert!(out.contains("network firewall: server 'vps1'"), "{out}");

    // Close 5432 at the network firewall: nothing risky is exposed any more.
    let rule = pg["rule"]["id"].to_string();
    ok(pw(&["cloud", "firewall", "delete-rule", "edge", &rule]));
    let o = pw(&["audit", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["risky_exposed"], 0, "{v}");
}

/// `portwall cloud list ...`: IP lists from a file, standard input and the
/// command line, each checked by the model before anything is sent; tables,
/// `--json`, stale ETags and another customer's list.
#[test]
fn cloud_lists_from_create_to_delete() {
    let t = TestPanel::start(None);
    let (_, ta) = t.customer("alice");
    let (_, tb) = t.customer("bob");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = Some((t.url.as_str(), ta.as_str()));
    let pw = |args: &[&str]| portwall(None, d, env, args);
    let file = d.join("office.txt");
    std::fs::write(
        &file,
        "# our offices\n203.0.113.0/25\n203.0.113.128/25   # annex\n\n198.51.100.7\n2001:db8::/32\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();

    // create, from a file and empty
    let out = ok(pw(&["cloud", "list", "create", "office", "--file", file]));
    assert!(out.starts_with("Created list 'office' (id "), "{out}");
    assert!(
        out.contains("4 entries, merged into 3 kernel ranges"),
        "{out}"
    );
    let bans = ok_json(pw(&["cloud", "list", "create", "bans", "--json"]));
    assert_eq!(bans["name"], "bans");
    assert_eq!(bans["entry_count"], 0);
    let bans_id = bans["id"].as_i64().unwrap();

    // A bad line of a file: named with its number, nothing sent.
    let bad = d.join("bad.txt");
    std::fs::write(&bad, "192.0.2.1\n# fine\nnot-an-address\n").unwrap();
    let err = fails(
        pw(&[
            "cloud",
            "list",
            "create",
            "broken",
            "--file",
            bad.to_str().unwrap(),
        ]),
        2,
    );
    assert!(
        err.contains("line 3: 'not-an-address' is not an address")
            && err.contains("nothing was sent"),
        "{err}"
    );
    let err = fails(
        pw(&["cloud", "list", "load", "bans", bad.to_str().unwrap()]),
        2,
    );
    assert!(err.contains("line 3"), "{err}");

    let err = fails(pw(&["cloud", "list", "create", "Office"]), 2);
    assert!(
        err.contains("'Office' is not a list name: 1-26 characters"),
        "{err}"
    );

    // add and del on the command line; a bad entry is refused before sending.
    let out = ok(pw(&[
        "cloud",
        "list",
        "add",
        "bans",
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.1",
    ]));
    assert!(
        out.starts_with(&format!(
            "Added 2 entries to list 'bans' (id {bans_id}): 2 entries"
        )),
        "{out}"
    );
    let err = fails(pw(&["cloud", "list", "add", "bans", "10.0.0.1/8"]), 2);
    assert!(err.contains("did you mean 10.0.0.0/8"), "{err}");
    let after = ok_json(pw(&["cloud", "list", "del", "bans", "192.0.2.1", "--json"]));
    assert_eq!(after["entries"], json!(["192.0.2.2"]));

    // load from standard input replaces everything.
    let mut child = common::portwall_command(None, d)
        .env("PORTWALL_PANEL_URL", &t.url)
        .env("PORTWALL_TOKEN", &ta)
        .args(["cloud", "list", "load", "bans", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"# from a feed\n198.51.100.0/24\n198.51.100.9\n2001:db8:1::1\n")
            .unwrap();
    }
    let out = ok(child.wait_with_output().unwrap());
    assert!(
        out.starts_with("Loaded 3 entries into list 'bans'") && out.contains("(it held 1)"),
        "{out}"
    );
    assert!(
        out.contains("3 entries, merged into 2 kernel ranges"),
        "{out}"
    );

    // ls: an aligned table, and --json.
    let out = ok(pw(&["cloud", "list", "ls"]));
    assert!(out.lines().next().unwrap().starts_with("ID"), "{out}");
    assert_eq!(
        column(&out, "Name", "Name"),
        column(&out, "office", "office")
    );
    let header_end = column(&out, "Name", "Entries") + "Entries".len();
    let office_line = out.lines().find(|l| l.contains("office")).unwrap();
    assert_eq!(
        office_line.find(" 4 ").map(|i| i + 2),
        Some(header_end),
        "entry counts are right-aligned under their header:\n{out}"
    );
    let all = ok_json(pw(&["cloud", "list", "ls", "--json"]));
    let names: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["office", "bans"]);
    assert_eq!(all["items"][1]["entry_count"], 3);

    // show: counts and entries; --json is the panel's object.
    let out = ok(pw(&["cloud", "list", "show", "office"]));
    assert!(
        out.starts_with("List 'office' (id ")
            && out.contains("4 entries, merged into 3 kernel ranges"),
        "{out}"
    );
    assert!(out.contains("1 entry merged away"), "{out}");
    assert!(
        out.contains("2001:db8::/32") && out.contains("IPv6"),
        "{out}"
    );
    let shown = ok_json(pw(&["cloud", "list", "show", "bans", "--json"]));
    assert_eq!(
        shown,
        t.ok(Method::GET, &format!("/v1/lists/{bans_id}"), &ta, None)
    );

    // A stale --if-match: reported, nothing changed.
    let seen = shown["revision"].to_string();
    ok(pw(&["cloud", "list", "add", "bans", "192.0.2.50"]));
    let err = fails(
        pw(&[
            "cloud",
            "list",
            "del",
            "bans",
            "192.0.2.50",
            "--if-match",
            &seen,
        ]),
        1,
    );
    assert!(err.contains("was changed by someone else"), "{err}");
    let err = fails(
        pw(&["cloud", "list", "delete", "bans", "--if-match", &seen]),
        1,
    );
    assert!(err.contains("was changed by someone else"), "{err}");

    // Another customer's list: not found by name or by id, and untouched.
    let bob = Some((t.url.as_str(), tb.as_str()));
    for args in [
        vec!["cloud", "list", "show", "office"],
        vec!["cloud", "list", "add", &bans_id.to_string(), "192.0.2.66"],
        vec!["cloud", "list", "delete", &bans_id.to_string()],
    ]
    .iter()
    .map(|a| a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = fails(portwall(None, d, bob, &args), 1);
        assert!(err.contains("no list"), "{args:?}: {err}");
    }
    assert_eq!(
        ok_json(pw(&["cloud", "list", "show", "bans", "--json"]))["entry_count"],
        4
    );

    // delete
    let out = ok(pw(&["cloud", "list", "delete", "bans"]));
    assert!(
        out.starts_with(&format!("Deleted list 'bans' (id {bans_id}) (4 entries).")),
        "{out}"
    );
    let all = ok_json(pw(&["cloud", "list", "ls", "--json"]));
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
}
