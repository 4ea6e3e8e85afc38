//! The edge's `--metrics-listen`: `/metrics` parsed with an OpenMetrics text
//! parser (`openmetrics-parser`, strict) and `/healthz`, from the real `portwall-edge`
//! binary and the real panel, in namespaces this test creates:
//!
//! ```text
//! internet 198.51.100.20 ── edge (gateway: panel and metrics on its 127.0.0.1) ── vps1 203.0.113.10
//! ```
//!
//! The edge starts while the panel is down (not enforcing: 503, sync
//! failures), then the panel comes up (a reconnect, the first apply, 200);
//! a firewall change moves the applied revision and the apply histogram;
//! traffic through the gateway moves the per-rule packets and the dropped
//! packets. Also the edge's configuration file (precedence and unknown keys).

mod common;
#[path = "../../panel/tests/common/scrape.rs"]
mod scrape;
use scrape::samples;

use common::{call, start_panel, Api};
use edge::client::Method;
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use panel::{DatabaseConfig, Panel};
use serde_json::json;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testns::traffic::{tcp, Listeners, Seen};
use testns::Routed;

type Scrape = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

const ZONE: &str = "z1";
const METRICS: &str = "127.0.0.1:9187";
const LIMIT: Duration = Duration::from_secs(30);

struct World {
    r: Routed,
    rt: tokio::runtime::Runtime,
    db: DatabaseConfig,
    _db_dir: tempfile::TempDir,
    panel: Option<Panel>,
    port: u16,
    api: Api,
    state: tempfile::TempDir,
    edge: Option<Child>,
    http: reqwest::Client,
    _listeners: Listeners,
}

impl World {
    fn new() -> World {
        let r = Routed::new();
        let listeners =
            Listeners::start(&r.server, &[r.server_addr.v4.parse().unwrap()], &[22, 80]);
        let rt = r.gateway.run(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        });
        let dir = tempfile::tempdir().unwrap();
        let db = DatabaseConfig::sqlite_in(dir.path());
        let panel = r.gateway.run(|| rt.block_on(start_panel(&db, 0)));
        let port = panel.addr.port();
        let store = panel.state.store.clone();
        let url = format!("http://127.0.0.1:{port}");
        let api = r.gateway.run(|| {
            rt.block_on(async {
                let admin = store.ensure_admin_token().await.unwrap().unwrap();
                Api::setup(&url, &admin, ZONE).await
            })
        });
        let http = r.gateway.run(|| {
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls::ClientTls::default().config().unwrap())
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap()
        });
        World {
            r,
            rt,
            db,
            _db_dir: dir,
            panel: Some(panel),
            port,
            api,
            state: tempfile::tempdir().unwrap(),
            edge: None,
            http,
            _listeners: listeners,
        }
    }

    fn block<F: Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        self.r.gateway.run(|| self.rt.block_on(f))
    }

    fn stop_panel(&mut self) {
        if let Some(p) = self.panel.take() {
            self.block(p.stop()).unwrap();
        }
    }

    fn start_panel(&mut self) {
        self.panel = Some(self.block(start_panel(&self.db, self.port)));
    }

    fn start_edge(&mut self) {
        let log = std::fs::File::create(self.state.path().join("edge.log")).unwrap();
        // An empty configuration file: nothing from this machine's /etc.
        let config = self.state.path().join("edge.toml");
        std::fs::write(&config, "").unwrap();
        let child = self
            .r
            .gateway
            .command(env!("CARGO_BIN_EXE_portwall-edge"))
            .args(["run", "--zone", ZONE, "--name", "metrics-edge"])
            .args(["--counters-every", "1", "--backoff-max", "1"])
            .args(["--metrics-listen", METRICS, "--log-format", "json"])
            .arg("--panel-url")
            .arg(format!("http://127.0.0.1:{}", self.port))
            .arg("--state-dir")
            .arg(self.state.path())
            .arg("--config")
            .arg(&config)
            .env("PORTWALL_EDGE_TOKEN", &self.api.edge_token)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start portwall-edge");
        self.edge = Some(child);
    }

    fn edge_log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("edge.log")).unwrap_or_default()
    }

    /// GET on the edge's metrics listener: (status, body); None while it
    /// does not answer yet.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://{METRICS}{path}");
        let http = self.http.clone();
        self.block(async move {
            let r = http.get(url).send().await.ok()?;
            let status = r.status().as_u16();
            Some((status, r.text().await.ok()?))
        })
    }

    fn scrape(&self) -> Scrape {
        let (status, text) = self.get("/metrics").expect("the metrics listener answers");
        assert_eq!(status, 200, "{text}");
        openmetrics_parser::openmetrics::parse_openmetrics(&text)
            .unwrap_or_else(|e| panic!("not an OpenMetrics exposition ({e:?}):\n{text}"))
    }

    fn health(&self) -> Option<(u16, serde_json::Value)> {
        let (status, body) = self.get("/healthz")?;
        Some((status, serde_json::from_str(&body).expect("JSON health")))
    }

    /// Waits until `f` holds of a scrape; returns that scrape.
    fn until(&self, what: &str, f: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some((200, _)) = self.get("/metrics") {
                let s = self.scrape();
                if f(&s) {
                    return s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\nmetrics:\n{}\nedge log:\n{}",
                self.get("/metrics").map(|x| x.1).unwrap_or_default(),
                self.edge_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn revision(&self) -> u64 {
        let store = self.panel.as_ref().unwrap().state.store.clone();
        self.block(async move { store.revision().await.unwrap() })
    }

    fn customer(&self, method: Method, path: &str, body: serde_json::Value) -> serde_json::Value {
        let c = &self.api.customer;
        self.block(call(c, method, path, body))
    }

    fn connect(&self, port: u16) -> Seen {
        let src: IpAddr = self.r.client_addr.v4.parse().unwrap();
        let dst: IpAddr = self.r.server_addr.v4.parse().unwrap();
        self.r.client.run(move || {
            tcp(
                SocketAddr::new(src, 0),
                SocketAddr::new(dst, port),
                Duration::from_millis(400),
            )
        })
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut c) = self.edge.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop_panel();
    }
}

fn number(v: &OpenMetricsValue) -> Option<f64> {
    match v {
        OpenMetricsValue::Counter(c) => Some(c.value.as_f64()),
        OpenMetricsValue::Gauge(n) => Some(n.as_f64()),
        _ => None,
    }
}

/// The one counter or gauge `name{labels}` (a counter's family has no `_total`).
fn scalar(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(s, name, labels).first().and_then(|v| number(v))
}

/// The sum of every sample of `name` with these labels.
fn sum(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(s, name, labels)
        .into_iter()
        .filter_map(number)
        .sum()
}

/// Applies observed by the apply histogram, all modes together.
fn applies(s: &Scrape) -> f64 {
    samples(s, "portwall_edge_apply_duration_seconds", &[])
        .into_iter()
        .filter_map(|v| match v {
            OpenMetricsValue::Histogram(h) => h.count.map(|c| c as f64),
            _ => None,
        })
        .sum()
}

#[test]
fn edge_metrics_and_health_follow_the_agent() {
    let mut w = World::new();
    let (v4, v6) = (w.r.server_addr.v4.clone(), w.r.server_addr.v6.clone());
    let vps1 = w.block(w.api.server("vps1", "VPS", &[&v4], &[&v6], ZONE));
    let vps1_label = vps1.to_string();

    // The panel is down: the edge enforces nothing yet, and says so.
    w.stop_panel();
    w.start_edge();
    let s = w.until("a failed sync", |s| {
        scalar(s, "portwall_edge_sync_failures", &[]).is_some_and(|v| v >= 1.0)
    });
    assert_eq!(applies(&s), 0.0);
    let (status, h) = w.health().unwrap();
    assert_eq!(status, 503, "{h}");
    assert_eq!(h["enforcing"], false);
    assert_eq!(h["panel_reachable"], false);

    // The panel comes back: a reconnect, the first snapshot applied.
    w.start_panel();
    let rev = w.revision();
    let s = w.until("the first apply", |s| {
        scalar(s, "portwall_edge_applied_revision", &[]) == Some(rev as f64)
    });
    assert!(scalar(&s, "portwall_edge_reconnects", &[]).unwrap() >= 1.0);
    assert_eq!(
        scalar(&s, "portwall_edge_panel_revision", &[]),
        Some(rev as f64)
    );
    assert_eq!(scalar(&s, "portwall_edge_revision_lag", &[]), Some(0.0));
    assert!(applies(&s) >= 1.0);
    let (status, h) = w.health().unwrap();
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["enforcing"], true);
    assert_eq!(h["revision"], rev);
    assert!(h["applied_seconds_ago"].as_f64().unwrap() < 600.0);
    let applies_before = applies(&s);

    // A firewall change: the applied revision and the histogram move.
    let fw = w.block(w.api.firewall("ssh", json!([{"preset": "SSH"}])));
    w.customer(
        Method::POST,
        &format!("/v1/firewalls/{fw}/assignments"),
        json!({"server_id": vps1}),
    );
    w.customer(
        Method::POST,
        &format!("/v1/firewalls/{fw}/enable"),
        serde_json::Value::Null,
    );
    let rev = w.revision();
    let s = w.until("the change applied", |s| {
        scalar(s, "portwall_edge_applied_revision", &[]) == Some(rev as f64)
    });
    assert!(applies(&s) > applies_before, "the apply histogram moved");
    let rule_id = w.customer(
        Method::GET,
        &format!("/v1/firewalls/{fw}"),
        serde_json::Value::Null,
    )["rules"][0]["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let rule = [
        ("server_id", vps1_label.as_str()),
        ("rule_id", rule_id.as_str()),
    ];
    let s = w.until("the rule's counter", |s| {
        scalar(s, "portwall_edge_rule_packets", &rule).is_some()
    });
    let packets0 = scalar(&s, "portwall_edge_rule_packets", &rule).unwrap();
    let bytes0 = scalar(&s, "portwall_edge_rule_bytes", &rule).unwrap();
    let dropped0 = sum(
        &s,
        "portwall_edge_server_dropped_packets",
        &[("server", "vps1")],
    );

    // Traffic through the gateway: SSH passes (the rule counts it), 80 is
    // dropped (the server's drop counts it).
    for _ in 0..3 {
        assert_eq!(w.connect(22), Seen::Open);
    }
    assert_eq!(w.connect(80), Seen::Timeout);
    let s = w.until("the counters to move", |s| {
        scalar(s, "portwall_edge_rule_packets", &rule).is_some_and(|p| p >= packets0 + 3.0)
            && sum(
                s,
                "portwall_edge_server_dropped_packets",
                &[("server", "vps1")],
            ) > dropped0
    });
    assert!(scalar(&s, "portwall_edge_rule_bytes", &rule).unwrap() > bytes0);
    assert!(scalar(&s, "portwall_edge_counters_timestamp_seconds", &[]).is_some());
    // The JSON log format is in effect: every line of the log is an object.
    let log = w.edge_log();
    assert!(
        log.lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{log}"
    );
}

/// `portwall-edge run --print-config` with a file, environment and flags.
fn print_config(file: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portwall-edge"));
    cmd.arg("--config")
        .arg(file)
        .arg("run")
        .args(args)
        .arg("--print-config");
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTWALL_EDGE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run portwall-edge");
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
    let file = dir.path().join("edge.toml");
    std::fs::write(
        &file,
        "panel_url = \"https://panel.example\"\nzone = \"fra1\"\nwait = 10\n\
         counters_every = 5\nmetrics_listen = \"127.0.0.1:9187\"\nmode = \"bridge\"\n",
    )
    .unwrap();
    let table = |text: &str| -> toml::Table { toml::from_str(text).unwrap() };
    let (code, text) = print_config(&file, &[], &[]);
    assert_eq!(code, 0, "{text}");
    let t = table(&text);
    assert_eq!(t["zone"].as_str(), Some("fra1"));
    assert_eq!(t["wait"].as_integer(), Some(10));
    assert_eq!(t["mode"].as_str(), Some("bridge"));
    assert_eq!(t["backoff_max"].as_integer(), Some(15), "a default");

    let env = [("PORTWALL_EDGE_ZONE", "ams1"), ("PORTWALL_EDGE_WAIT", "20")];
    let (code, text) = print_config(&file, &env, &[]);
    assert_eq!(code, 0, "{text}");
    let t = table(&text);
    assert_eq!(t["zone"].as_str(), Some("ams1"));
    assert_eq!(t["wait"].as_integer(), Some(20));
    assert_eq!(t["counters_every"].as_integer(), Some(5), "from the file");

    let (code, text) = print_config(
        &file,
        &env,
        &["--wait", "25", "--metrics-listen", "[::1]:9000"],
    );
    assert_eq!(code, 0, "{text}");
    let t = table(&text);
    assert_eq!(t["wait"].as_integer(), Some(25));
    assert_eq!(t["zone"].as_str(), Some("ams1"), "from the environment");
    assert_eq!(t["metrics_listen"].as_str(), Some("[::1]:9000"));
}

#[test]
fn an_unknown_key_or_a_bad_value_stops_the_edge_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edge.toml");
    std::fs::write(
        &file,
        "zone = \"fra1\"\npanel = \"https://panel.example\"\n",
    )
    .unwrap();
    let (code, text) = print_config(&file, &[], &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(
        text.contains("line 2") && text.contains("`panel`"),
        "{text}"
    );
    assert!(text.contains("`panel_url`"), "{text}");

    std::fs::write(&file, "mode = \"router\"\n").unwrap();
    let (code, text) = print_config(&file, &[], &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("key 'mode'") && text.contains("forward"),
        "{text}"
    );
}
