//! The edge and the panel over HTTPS, end to end: a real panel (in this
//! process) serving a certificate of a throwaway CA, the `portwall-edge`
//! binary trusting that CA with `--panel-ca` and enforcing what a customer
//! enables; an edge given another CA is refused with a clear error; and the
//! edge token never goes over plain HTTP to an address that is not loopback
//! (a listener on such an address records whether anything arrived).
//!
//! Everything runs inside a test namespace: the panel, the API calls and the
//! edge's kernel table.

mod common;

use common::{call, eventually, Api};
use edge::client::{Method, PanelClient};
use panel::{DatabaseConfig, Panel, PanelConfig, Store};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testns::Netns;

const ZONE: &str = "tls";
const LIMIT: Duration = Duration::from_secs(20);
/// A non-loopback address of the test namespace.
const OTHER: &str = "198.51.100.10";

struct World {
    ns: Netns,
    rt: tokio::runtime::Runtime,
    panel: Option<Panel>,
    api: Api,
    ca: tls::authority::IssuedFiles,
    _dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let ns = Netns::new();
        ns.ip(&["addr", "add", &format!("{OTHER}/32"), "dev", "lo"])
            .unwrap();
        let rt = ns.run(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        });
        let dir = tempfile::tempdir().unwrap();
        let ca = tls::authority::Authority::new("edge test CA")
            .unwrap()
            .issue_files(dir.path(), "panel", &["127.0.0.1"])
            .unwrap();
        let db = DatabaseConfig::sqlite_in(dir.path());
        let (cert, key, ca_file) = (ca.cert.clone(), ca.key.clone(), ca.ca.clone());
        let (panel, api) = ns.run(|| {
            rt.block_on(async move {
                let store = Store::open(&db).await.unwrap();
                let admin = store.ensure_admin_token().await.unwrap().unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let tls = panel::serve::ServerTls::load(&cert, &key).unwrap();
                let panel =
                    Panel::start_with_tls(listener, store, PanelConfig::default(), Some(tls))
                        .await
                        .unwrap();
                let url = panel.url();
                assert!(url.starts_with("https://"), "{url}");
                let trust = tls::ClientTls {
                    ca_file: Some(ca_file),
                    insecure_http: false,
                };
                let api = Api::setup_with(&url, &admin, ZONE, &trust).await;
                (panel, api)
            })
        });
        World {
            ns,
            rt,
            panel: Some(panel),
            api,
            ca,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        self.panel.as_ref().unwrap().url()
    }

    fn block<F: std::future::Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        self.ns.run(|| self.rt.block_on(f))
    }

    /// `portwall-edge run ARGS` inside the namespace, with the edge token.
    fn edge(&self, state: &std::path::Path, args: &[&str]) -> Command {
        let mut c = self.ns.command(env!("CARGO_BIN_EXE_portwall-edge"));
        c.args([
            "run",
            "--zone",
            ZONE,
            "--backoff-max",
            "1",
            "--counters-every",
            "0",
        ])
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env("PORTWALL_EDGE_TOKEN", &self.api.edge_token)
        .env_remove("PORTWALL_EDGE_PANEL_CA")
        .env_remove("PORTWALL_EDGE_INSECURE_HTTP")
        .stdin(Stdio::null());
        c
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(p) = self.panel.take() {
            let _ = self.block(p.stop());
        }
    }
}

struct Edge(std::process::Child);

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_edge_follows_the_panel_over_https_and_refuses_another_ca() {
    let w = World::new();
    let sid = w.block(w.api.server("vps1", "VPS", &["203.0.113.10"], &[], ZONE));
    let fw = w.block(
        w.api
            .firewall("web", json!([{"protocol": "tcp", "port": 443}])),
    );

    let state = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(state.path().join("edge.log")).unwrap();
    let ca = w.ca.ca.display().to_string();
    let _edge = Edge(
        w.edge(state.path(), &["--panel-url", &w.url(), "--panel-ca", &ca])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let note = || edge::store::load_note(state.path());
    let edge_log = || std::fs::read_to_string(state.path().join("edge.log")).unwrap_or_default();
    w.block(eventually(
        "the edge's first sync over HTTPS",
        LIMIT,
        || note().is_some_and(|n| n.panel_reachable && n.revision.is_some()),
    ));
    // A change made through the API is enforced and reported back, over TLS.
    let c = &w.api.customer;
    w.block(call(
        c,
        Method::POST,
        &format!("/v1/firewalls/{fw}/assignments"),
        json!({"server_id": sid}),
    ));
    w.block(call(
        c,
        Method::POST,
        &format!("/v1/firewalls/{fw}/enable"),
        serde_json::Value::Null,
    ));
    let status_path = format!("/v1/firewalls/{fw}/status");
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let st = w.block(call(c, Method::GET, &status_path, serde_json::Value::Null));
        if st["servers"][0]["status"] == "applied" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not applied: {st}\nedge log:\n{}",
            edge_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // An edge that trusts another CA does not talk to this panel, and says why.
    let other_dir = tempfile::tempdir().unwrap();
    let other = tls::authority::Authority::new("another CA")
        .unwrap()
        .issue_files(other_dir.path(), "x", &["127.0.0.1"])
        .unwrap();
    let wrong = PanelClient::with_tls(
        &w.url(),
        &w.api.edge_token,
        &tls::ClientTls {
            ca_file: Some(other.ca.clone()),
            insecure_http: false,
        },
    )
    .unwrap();
    let e = w
        .block(wrong.sync(ZONE, None, Duration::ZERO))
        .expect_err("a panel whose CA is not trusted is refused")
        .to_string();
    assert!(
        e.contains(&w.url()) && e.contains("certificate") && e.contains("UnknownIssuer"),
        "{e}"
    );
    // The binary, too: it keeps retrying and notes the reason.
    let state2 = tempfile::tempdir().unwrap();
    let other_ca = other.ca.display().to_string();
    let _wrong_edge = Edge(
        w.edge(
            state2.path(),
            &["--panel-url", &w.url(), "--panel-ca", &other_ca],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    w.block(eventually("the refused edge's note", LIMIT, || {
        edge::store::load_note(state2.path()).is_some_and(|n| {
            !n.panel_reachable
                && n.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("UnknownIssuer"))
        })
    }));
}

/// A TCP listener on `addr` inside `ns` that records every byte it receives.
fn recorder(ns: &Netns, addr: &str) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = ns.run(|| TcpListener::bind((addr, 0)).unwrap());
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            conn.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut buf = [0u8; 4096];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
                if sink.lock().unwrap().windows(4).any(|w| w == b"\r\n\r\n") {
                    let _ = conn.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    break;
                }
            }
        }
    });
    (port, seen)
}

#[test]
fn the_edge_token_never_goes_over_plain_http_off_loopback() {
    let w = World::new();
    let (port, seen) = recorder(&w.ns, OTHER);
    let url = format!("http://{OTHER}:{port}");
    let state = tempfile::tempdir().unwrap();

    // The binary refuses at once, naming the URL and the flag; nothing was sent.
    let out: Output = w
        .edge(state.path(), &["--panel-url", &url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&url) && err.contains("--insecure-http"),
        "{err}"
    );
    // The library refuses before sending anything, too.
    let e = PanelClient::new(&url, "secret-token")
        .unwrap_err()
        .to_string();
    assert!(e.contains(&url) && e.contains("--insecure-http"), "{e}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        seen.lock().unwrap().is_empty(),
        "something reached {url}: {:?}",
        String::from_utf8_lossy(&seen.lock().unwrap())
    );

    // With --insecure-http the token does go there: the recorder works.
    let mut child = Edge(
        w.edge(state.path(), &["--panel-url", &url, "--insecure-http"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let token = format!("authorization: bearer {}", w.api.edge_token);
    w.block(eventually("the insecure request", LIMIT, || {
        String::from_utf8_lossy(&seen.lock().unwrap())
            .to_ascii_lowercase()
            .contains(&token.to_ascii_lowercase())
    }));
    let _ = child.0.kill();
}
