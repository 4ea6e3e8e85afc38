//! `/metrics`, `/healthz` and `/readyz`, on SQLite and PostgreSQL: every scrape
//! is parsed with an OpenMetrics text parser (`openmetrics-parser`, strict: a
//! malformed exposition fails the test), and the named
//! series must exist and move when traffic passes and when a change is
//! applied. Also the configuration file of `portwall-panel` (precedence file <
//! environment < flag, unknown keys refused), through the real binary.

mod common;
#[path = "common/scrape.rs"]
mod scrape;
use scrape::samples;

use common::{Backend, TestPanel};
use model::network::sync::{EdgeReport, ServerApplyResult, SYNC_PATH};
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use panel::PanelConfig;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

backend_tests! {
    requests_are_counted_by_route_template_and_status,
    revisions_servers_and_edges_move_with_changes,
    held_edge_polls_are_counted_per_zone,
    readiness_needs_the_database_and_every_migration,
}

type Scrape = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

async fn scrape(t: &TestPanel) -> Scrape {
    let resp = t
        .client
        .get(format!("{}/metrics", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = resp.text().await.unwrap();
    openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("not an OpenMetrics exposition ({e:?}):\n{text}"))
}

/// The value of the one counter or gauge sample `name{labels...}` (extra
/// labels allowed); `name` is the family (a counter's without `_total`).
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(s, name, labels).first().and_then(|v| match v {
        OpenMetricsValue::Counter(c) => Some(c.value.as_f64()),
        OpenMetricsValue::Gauge(n) => Some(n.as_f64()),
        _ => None,
    })
}

/// The count of a histogram's observations with these labels.
fn histogram_count(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(s, name, labels).first().and_then(|v| match v {
        OpenMetricsValue::Histogram(h) => h.count.map(|c| c as f64),
        _ => None,
    })
}

const REQUESTS: &str = "portwall_panel_http_requests";
const LATENCY: &str = "portwall_panel_http_request_duration_seconds";

async fn requests_are_counted_by_route_template_and_status(b: Backend) {
    let t = TestPanel::start(b).await;
    let (_, token) = t.customer("acme").await;
    let fw = t.firewall(&token, "web", json!([{"preset": "SSH"}])).await;
    let route = [
        ("method", "GET"),
        ("route", "/v1/firewalls/{id}"),
        ("status", "200"),
    ];
    let before = scrape(&t).await;
    let n0 = value(&before, REQUESTS, &route).unwrap_or(0.0);
    let h0 = histogram_count(&before, LATENCY, &route[..2]).unwrap_or(0.0);
    for _ in 0..3 {
        t.get(&format!("/v1/firewalls/{fw}"), &token)
            .await
            .expect(200);
    }
    t.get("/v1/firewalls/999999", &token).await.expect(404);
    t.get("/no/such/page", &token).await.expect(404);
    let after = scrape(&t).await;
    assert_eq!(value(&after, REQUESTS, &route), Some(n0 + 3.0));
    assert_eq!(
        histogram_count(&after, LATENCY, &route[..2]),
        Some(h0 + 4.0),
        "the latency histogram (by method and route) counts the three 200s and the 404"
    );
    assert_eq!(
        value(
            &after,
            REQUESTS,
            &[("route", "/v1/firewalls/{id}"), ("status", "404")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            REQUESTS,
            &[("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0)
    );
    // The raw path never becomes a label value.
    assert!(after.families[REQUESTS].iter_samples().all(|x| x
        .get_labelset()
        .unwrap()
        .get_label_value("route")
        .is_none_or(|r| !r.split('/').any(|segment| segment == fw.to_string()))));
    // The scrape itself is a request like any other.
    assert!(
        value(
            &after,
            REQUESTS,
            &[("route", "/metrics"), ("status", "200")]
        )
        .unwrap()
            >= 1.0
    );
    // The pool's gauges exist and are sane.
    let size = value(&after, "portwall_panel_db_pool_connections", &[]).unwrap();
    let idle = value(&after, "portwall_panel_db_pool_idle_connections", &[]).unwrap();
    assert!(size >= 1.0 && idle <= size, "pool {size} idle {idle}");

    // Turned off: no middleware, and /metrics is 404.
    let off = TestPanel::start_with(
        b,
        PanelConfig {
            metrics: false,
            ..PanelConfig::default()
        },
    )
    .await;
    let r = off.call(reqwest::Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, 404);
    assert!(off.panel.state.metrics.is_none());
}

async fn revisions_servers_and_edges_move_with_changes(b: Backend) {
    let t = TestPanel::start(b).await;
    let (c, token) = t.customer("acme").await;
    let s1 = t.server(c, "s1", "VPS", "fra1", json!({})).await;
    let s2 = t.server(c, "s2", "VPS", "fra1", json!({})).await;
    let fw = t.firewall(&token, "web", json!([{"preset": "SSH"}])).await;
    t.post(
        &format!("/v1/firewalls/{fw}/assignments"),
        &token,
        json!({"server_ids": [s1, s2]}),
    )
    .await
    .expect(200);
    let before = scrape(&t).await;
    let rev0 = value(&before, "portwall_panel_revision", &[]).unwrap();
    assert_eq!(rev0, t.revision().await as f64);
    let servers = "portwall_panel_servers";
    let fra1 = |state| [("zone", "fra1"), ("state", state)];
    assert_eq!(value(&before, servers, &fra1("pending")), Some(2.0));
    assert_eq!(value(&before, servers, &fra1("applied")), Some(0.0));
    assert_eq!(value(&before, servers, &fra1("failed")), Some(0.0));

    // A firewall change moves the revision.
    t.post_empty(&format!("/v1/firewalls/{fw}/enable"), &token)
        .await
        .expect(200);
    let changed = scrape(&t).await;
    let rev1 = value(&changed, "portwall_panel_revision", &[]).unwrap();
    assert!(rev1 > rev0, "revision {rev0} -> {rev1}");

    // An edge reports s1 applied and s2 failed.
    let edge = t.edge_token("fra1").await;
    let rev = t.revision().await;
    let report = EdgeReport {
        edge: "gw1".into(),
        zone: "fra1".into(),
        revision: rev,
        servers: vec![
            ServerApplyResult {
                server_id: s1,
                revision: rev,
                error: None,
            },
            ServerApplyResult {
                server_id: s2,
                revision: rev,
                error: Some("the kernel refused it".into()),
            },
        ],
        counters: vec![],
    };
    t.post(
        "/v1/edge/report",
        &edge,
        serde_json::to_value(&report).unwrap(),
    )
    .await
    .expect(200);
    let reported = scrape(&t).await;
    assert_eq!(value(&reported, servers, &fra1("applied")), Some(1.0));
    assert_eq!(value(&reported, servers, &fra1("failed")), Some(1.0));
    assert_eq!(value(&reported, servers, &fra1("pending")), Some(0.0));
    let gw1 = [("zone", "fra1"), ("edge", "gw1")];
    assert_eq!(
        value(&reported, "portwall_panel_edge_reported_revision", &gw1),
        Some(rev as f64)
    );
    let at = value(
        &reported,
        "portwall_panel_edge_last_report_timestamp_seconds",
        &gw1,
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - at).abs() < 600.0, "last report {at}, now {now}");
}

async fn held_edge_polls_are_counted_per_zone(b: Backend) {
    let t = TestPanel::start(b).await;
    let edge = t.edge_token("ams1").await;
    let polls = |s: &Scrape| value(s, "portwall_panel_edge_polls", &[("zone", "ams1")]);
    let since = t.revision().await;
    let poll = {
        let client = t.client.clone();
        let url = format!("{}{SYNC_PATH}?zone=ams1&since={since}&wait=30", t.url);
        let edge = edge.clone();
        tokio::spawn(async move { client.get(url).bearer_auth(edge).send().await })
    };
    // The poll is held (nothing changes in ams1); wait until it is counted.
    let mut seen = None;
    for _ in 0..200 {
        seen = polls(&scrape(&t).await);
        if seen == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, Some(1.0), "the held poll is counted");
    // A change in ams1 answers it, and the gauge goes back to zero.
    let (c, _) = t.customer("acme").await;
    t.server(c, "a1", "VPS", "ams1", json!({})).await;
    let resp = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("the poll was answered")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut now = None;
    for _ in 0..200 {
        now = polls(&scrape(&t).await);
        if now == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(now, Some(0.0));
}

async fn readiness_needs_the_database_and_every_migration(b: Backend) {
    let t = TestPanel::start(b).await;
    let alive = t.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(alive.status, 200);
    assert_eq!(alive.body["status"], "alive");
    let ready = t.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.body["ready"], true);
    assert_eq!(ready.body["revision"], t.revision().await);
    assert_eq!(
        ready.body["migrations_applied"],
        ready.body["migrations_expected"]
    );
    // A database behind this binary's migrations: not ready, naming them.
    let newest: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(t.store().pool())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM _sqlx_migrations WHERE version = {newest}"
    )))
    .execute(t.store().pool())
    .await
    .unwrap();
    let not = t.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(not.status, 503, "{}", not.text);
    assert_eq!(not.body["ready"], false);
    let reason = not.body["reason"].as_str().unwrap();
    assert!(
        reason.contains("migrations not applied") && reason.contains(&newest.to_string()),
        "{reason}"
    );
    // Still alive: liveness does not depend on the database.
    let alive = t.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(alive.status, 200);
}

/// `portwall-panel --print-config` with a file, environment and flags.
fn print_config(file: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portwall-panel"));
    cmd.arg("--config")
        .arg(file)
        .args(args)
        .arg("--print-config");
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTWALL_PANEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run portwall-panel");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn config_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("panel.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:7001\"\nmax_body_bytes = 1000\nmetrics = false\nlog_format = \"json\"\n",
    )
    .unwrap();
    let (code, text) = print_config(&file, &[], &[]);
    assert_eq!(code, 0, "{text}");
    let from_file: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(from_file["listen"].as_str(), Some("127.0.0.1:7001"));
    assert_eq!(from_file["max_body_bytes"].as_integer(), Some(1000));
    assert_eq!(from_file["metrics"].as_bool(), Some(false));
    assert_eq!(from_file["log_format"].as_str(), Some("json"));
    assert_eq!(
        from_file["secure_cookies"].as_bool(),
        Some(false),
        "a default"
    );

    let env = [
        ("PORTWALL_PANEL_LISTEN", "127.0.0.1:7002"),
        ("PORTWALL_PANEL_MAX_BODY_BYTES", "2000"),
        ("PORTWALL_PANEL_METRICS", "true"),
    ];
    let (code, text) = print_config(&file, &env, &[]);
    assert_eq!(code, 0, "{text}");
    let with_env: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(with_env["listen"].as_str(), Some("127.0.0.1:7002"));
    assert_eq!(with_env["max_body_bytes"].as_integer(), Some(2000));
    assert_eq!(with_env["metrics"].as_bool(), Some(true));
    assert_eq!(
        with_env["log_format"].as_str(),
        Some("json"),
        "from the file"
    );

    let (code, text) = print_config(
        &file,
        &env,
        &[
            "--listen",
            "127.0.0.1:7003",
            "--log-format",
            "text",
            "--metrics=false",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let with_flags: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(with_flags["listen"].as_str(), Some("127.0.0.1:7003"));
    assert_eq!(
        with_flags["max_body_bytes"].as_integer(),
        Some(2000),
        "from the environment"
    );
    assert_eq!(with_flags["log_format"].as_str(), Some("text"));
    assert_eq!(with_flags["metrics"].as_bool(), Some(false));
}

#[test]
fn an_unknown_key_or_a_bad_value_stops_the_panel_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("panel.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:7001\"\nport = 8080\n").unwrap();
    let (code, text) = print_config(&file, &[], &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("line 2") && text.contains("port"), "{text}");
    assert!(
        text.contains("expected one of") && text.contains("`listen`"),
        "{text}"
    );

    std::fs::write(&file, "log_format = \"xml\"\n").unwrap();
    let (code, text) = print_config(&file, &[], &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("key 'log_format'") && text.contains("`json`"),
        "{text}"
    );

    let missing = dir.path().join("nope.toml");
    let (code, text) = print_config(&missing, &[], &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("nope.toml"), "{text}");
}
