//! The web pages in a real browser: Debian's headless Chromium, driven by
//! Playwright (`tests/browser/panel.mjs`), against a panel started here on
//! SQLite. The script logs in, creates a firewall, adds the SSH preset,
//! enables it, assigns a VPS and sees its status "pending", creates an IP
//! list and pastes its entries (a bad line first: the error names it and
//! nothing is stored), then checks that
//! a login `next` with a tab (dropped by browsers) never leads off the panel
//! (no open redirect); this test then
//! checks the store through the API, and keeps a full-page screenshot in
//! `<target>/test-artifacts/panel-browser.png` (and the IP list page in
//! `panel-browser-list.png`).
//!
//! Needs `/usr/bin/chromium` (Debian package `chromium`, installed by
//! `scripts/deps`) and Node.js 20+ with npm; runs `npm ci` in
//! `tests/browser` when `node_modules` is missing. Without them the test
//! fails with CI=true and is skipped (with a message) otherwise.

mod common;

use common::{Backend, TestPanel};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const LOGIN: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
const SERVER: &str = "web-1";

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// `<target>/test-artifacts`: next to cargo's per-test scratch directory.
fn artifacts_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-artifacts")
}

/// The version of a tool, or None when it does not run.
fn version(tool: &str) -> Option<String> {
    let out = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What is missing to run the browser, if anything.
fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    if version(CHROMIUM).is_none() {
        missing.push(format!(
            "{CHROMIUM} does not run: install Debian's chromium (`bash scripts/deps`, or `apt-get install -y chromium`)"
        ));
    }
    match version("node") {
        None => missing.push("node is not installed: Node.js 20 or later is needed".into()),
        Some(v) => {
            let major: u32 = v
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if major < 20 {
                missing.push(format!(
                    "node {v} is too old: Node.js 20 or later is needed"
                ));
            }
        }
    }
    if !script_dir().join("node_modules/playwright-core").is_dir() && version("npm").is_none() {
        missing.push("npm is not installed (needed once for `npm ci` in tests/browser)".into());
    }
    missing
}

/// Installs playwright-core from the lock file when node_modules is missing.
fn npm_ci() {
    let dir = script_dir();
    if dir.join("node_modules/playwright-core").is_dir() {
        return;
    }
    eprintln!("running npm ci in {}", dir.display());
    let out = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .output()
        .expect("run npm");
    assert!(
        out.status.success(),
        "npm ci failed in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_sets_up_a_firewall_in_headless_chromium() {
    let missing = missing_prerequisites();
    if !missing.is_empty() {
        let msg = format!(
            "the browser test cannot run:\n  - {}",
            missing.join("\n  - ")
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED (CI is not true): {msg}");
        return;
    }
    npm_ci();

    let t = TestPanel::start(Backend::Sqlite).await;
    let (cid, token) = t.customer("acme").await;
    t.post(
        "/v1/users",
        &t.admin,
        json!({"login": LOGIN, "password": PASSWORD, "customer_id": cid}),
    )
    .await
    .expect(201);
    let server = t.server(cid, SERVER, "VPS", "z1", json!({})).await;

    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("panel-browser.png");
    let _ = std::fs::remove_file(&shot);

    let child = tokio::process::Command::new("node")
        .arg("panel.mjs")
        .arg(&t.url)
        .arg(LOGIN)
        .arg(PASSWORD)
        .arg(&shot)
        .arg(SERVER)
        .current_dir(script_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the browser script did not finish within 180 s")
        .expect("wait for node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- panel.mjs ---\n{stderr}");
    assert!(
        out.status.success(),
        "panel.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("panel.mjs printed no result ({e}): {stdout}"));
    let fw_id = result["firewall_id"].as_i64().expect("firewall_id");
    assert_eq!(result["server_id"].as_i64(), Some(server));

    // What the browser did is really in the store (read through the API).
    let fw = t
        .get(&format!("/v1/firewalls/{fw_id}"), &token)
        .await
        .expect(200)
        .body;
    assert_eq!(fw["name"], "web-frontends");
    assert_eq!(fw["status"], "active");
    let rules = fw["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{fw}");
    assert_eq!(rules[0]["protocol"], "tcp");
    assert_eq!(rules[0]["port"], "22");
    assert_eq!(rules[0]["sources"], json!(["203.0.113.0/24"]));
    assert_eq!(rules[0]["description"], "admin access");
    assert_eq!(rules[0]["enabled"], true);
    assert_eq!(fw["servers"], json!([server]));
    let status = t
        .get(&format!("/v1/servers/{server}/status"), &token)
        .await
        .expect(200)
        .body;
    assert_eq!(status["status"], "pending", "{status}");
    assert_eq!(status["enforced"], true);
    assert_eq!(status["firewalls"], json!([fw_id]));
    // ... done by the logged-in user, and the bad rule was never stored.
    let audit = t.get("/v1/audit", &token).await.expect(200).body;
    let actions: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    for action in [
        "firewall.create",
        "rule.create",
        "firewall.enable",
        "assignment.create",
    ] {
        assert!(
            actions.contains(&(action, "user alice")),
            "{action} by user alice missing: {actions:?}"
        );
    }
    assert_eq!(
        actions.iter().filter(|(a, _)| *a == "rule.create").count(),
        1
    );

    // The IP list the browser pasted: exactly the good block, stored once (the
    // block with a bad line changed nothing).
    let list_id = result["list_id"].as_i64().expect("list_id");
    let list = t
        .get(&format!("/v1/lists/{list_id}"), &token)
        .await
        .expect(200)
        .body;
    assert_eq!(list["name"], "office");
    assert_eq!(list["description"], "our offices");
    assert_eq!(
        list["entries"],
        json!([
            "198.51.100.7",
            "203.0.113.0/25",
            "203.0.113.128/25",
            "2001:db8::/32"
        ])
    );
    assert_eq!(list["entry_count"], 4);
    assert_eq!(list["range_count"], 3);
    for action in ["list.create", "list.entries.replace"] {
        assert_eq!(
            actions
                .iter()
                .filter(|a| **a == (action, "user alice"))
                .count(),
            1,
            "{action} once, by user alice: {actions:?}"
        );
    }

    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a real screenshot: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
    t.panel.stop().await.unwrap();
}
