//! `portwall cloud` and the panel over HTTPS, as a user runs them: a real
//! panel (in this process) serving a certificate of a throwaway CA, and the
//! real `portwall` binary trusting that CA with `--panel-ca` (or
//! `PORTWALL_PANEL_CA`). Another CA is refused with a clear error, and the API
//! token never goes over plain HTTP to an address that is not loopback: a
//! listener on such an address (in a test namespace) records whether anything
//! arrived.

mod common;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testns::Netns;

/// A panel on HTTPS on 127.0.0.1 of this process's namespace; its CA file and
/// a customer's token.
struct TlsPanel {
    url: String,
    token: String,
    files: tls::authority::IssuedFiles,
    panel: Option<panel::Panel>,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl TlsPanel {
    fn start() -> TlsPanel {
        let dir = tempfile::tempdir().unwrap();
        let files = tls::authority::Authority::new("cloud test CA")
            .unwrap()
            .issue_files(dir.path(), "panel", &["127.0.0.1"])
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = panel::DatabaseConfig::sqlite_in(dir.path());
        let (p, token) = rt.block_on(async {
            let store = panel::Store::open(&config).await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let tls = panel::serve::ServerTls::load(&files.cert, &files.key).unwrap();
            let p = panel::Panel::start_with_tls(
                listener,
                store.clone(),
                panel::PanelConfig::default(),
                Some(tls),
            )
            .await
            .unwrap();
            let admin = store.ensure_admin_token().await.unwrap().unwrap();
            let trust = tls::ClientTls {
                ca_file: Some(files.ca.clone()),
                insecure_http: false,
            };
            let http = reqwest::Client::builder()
                .tls_backend_preconfigured(trust.config().unwrap())
                .no_proxy()
                .build()
                .unwrap();
            let post = |path: &str, body: Value| {
                let req = http
                    .post(format!("{}{path}", p.url()))
                    .bearer_auth(&admin)
                    .json(&body);
                async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
            };
            let c = post("/v1/customers", serde_json::json!({"name": "acme"})).await;
            let t = post(
                "/v1/tokens",
                serde_json::json!({"name": "cli", "kind": "customer", "scope": "write", "customer_id": c["id"]}),
            )
            .await;
            (p, t["token"].as_str().unwrap().to_string())
        });
        TlsPanel {
            url: p.url(),
            token,
            files,
            panel: Some(p),
            rt,
            dir,
        }
    }

    fn cloud(&self, args: &[&str]) -> Output {
        common::portwall_command(None, self.dir.path())
            .env("PORTWALL_PANEL_URL", &self.url)
            .env("PORTWALL_TOKEN", &self.token)
            .arg("cloud")
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for TlsPanel {
    fn drop(&mut self) {
        if let Some(p) = self.panel.take() {
            let _ = self.rt.block_on(p.stop());
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn cloud_speaks_https_with_the_panels_ca_and_refuses_another() {
    let p = TlsPanel::start();
    assert!(p.url.starts_with("https://"), "{}", p.url);
    let ca = p.files.ca.display().to_string();
    let made = p.cloud(&["firewall", "create", "web", "--panel-ca", &ca, "--json"]);
    assert!(made.status.success(), "{}", text(&made));
    let v: Value = serde_json::from_slice(&made.stdout).unwrap();
    assert_eq!(v["name"], "web", "{v}");
    // The CA file from the environment works the same.
    let listed = common::portwall_command(None, p.dir.path())
        .env("PORTWALL_PANEL_URL", &p.url)
        .env("PORTWALL_TOKEN", &p.token)
        .env("PORTWALL_PANEL_CA", &ca)
        .args(["cloud", "firewall", "list", "--json"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("\"web\""));

    // Another CA: refused, saying which panel and why; exit 1.
    let other_dir = tempfile::tempdir().unwrap();
    let other = tls::authority::Authority::new("another CA")
        .unwrap()
        .issue_files(other_dir.path(), "x", &["127.0.0.1"])
        .unwrap();
    let refused = p.cloud(&["firewall", "list", "--panel-ca", other.ca.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&p.url) && err.contains("certificate") && err.contains("UnknownIssuer"),
        "{err}"
    );
    // Without --panel-ca the system's roots do not know the lab CA either.
    let refused = p.cloud(&["firewall", "list"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    // A CA file that does not exist is named.
    let missing = p.cloud(&["firewall", "list", "--panel-ca", "/nonexistent/ca.pem"]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/ca.pem"),
        "{}",
        text(&missing)
    );
}

/// A listener on `addr` inside `ns` that records every byte it receives and
/// answers 503 to a complete request.
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
                let mut all = sink.lock().unwrap();
                all.extend_from_slice(&buf[..n]);
                if all.windows(4).any(|w| w == b"\r\n\r\n") {
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
fn the_token_never_goes_over_plain_http_off_loopback() {
    let ns = Netns::new();
    ns.ip(&["addr", "add", "198.51.100.10/32", "dev", "lo"])
        .unwrap();
    let (port, seen) = recorder(&ns, "198.51.100.10");
    let url = format!("http://198.51.100.10:{port}");
    let config = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        common::portwall_command(Some(&ns), config.path())
            .env("PORTWALL_PANEL_URL", &url)
            .env("PORTWALL_TOKEN", "secret-token-123")
            .args(["cloud", "firewall", "list"])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = run(&[]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&url) && err.contains("--insecure-http"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        seen.lock().unwrap().is_empty(),
        "something reached {url}: {:?}",
        String::from_utf8_lossy(&seen.lock().unwrap())
    );
    // `audit` and `explain` use the same client: the network layer is
    // "unknown" with the same reason, and nothing is sent either.
    let audit = common::portwall_command(Some(&ns), config.path())
        .env("PORTWALL_PANEL_URL", &url)
        .env("PORTWALL_TOKEN", "secret-token-123")
        .args(["audit", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&audit.stdout).unwrap_or(Value::Null);
    assert_eq!(
        v["network_firewall"]["state"],
        "unknown",
        "{}",
        text(&audit)
    );
    assert!(seen.lock().unwrap().is_empty());

    // With --insecure-http the token does go there: the recorder works.
    let sent = run(&["--insecure-http"]);
    assert_eq!(sent.status.code(), Some(1), "{}", text(&sent));
    let got = String::from_utf8_lossy(&seen.lock().unwrap()).to_ascii_lowercase();
    assert!(
        got.contains("authorization: bearer secret-token-123"),
        "{got}"
    );
}
