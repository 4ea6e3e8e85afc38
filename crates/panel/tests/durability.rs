//! Durability: the real `portwall-panel` binary on SQLite and on PostgreSQL,
//! 32 concurrent writers over four customers (so that on PostgreSQL writes of
//! different customers commit in parallel), `kill -9` in the middle,
//! restart: every write that got a 2xx is there.

mod common;

use common::Backend;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Running {
    child: Child,
    url: String,
    admin: Option<String>,
}

impl Drop for Running {
    /// Never leave a panel behind, even when an assertion fails.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the panel keeps its data: a SQLite directory or a PostgreSQL URL.
enum Database {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

fn start(db: &Database) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portwall-panel"));
    cmd.args(["--listen", "127.0.0.1:0"]);
    match db {
        Database::Sqlite(dir) => cmd.arg("--data-dir").arg(dir.path()),
        Database::Postgres(url) => cmd.args(["--database-url", url]),
    };
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start portwall-panel");
    // First start: the admin token line, then the URL line; later starts: the URL line.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut admin = None;
    let url = loop {
        let line = lines
            .next()
            .expect("portwall-panel printed its URL")
            .unwrap();
        if let Some(t) = line.split_whitespace().find(|w| w.starts_with("pwa_")) {
            admin = Some(t.to_string());
        }
        if let Some(u) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break u.to_string();
        }
    };
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    Running { child, url, admin }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls::ClientTls::default().config().unwrap())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
) -> Result<(u16, Value), reqwest::Error> {
    let r = c.post(url).bearer_auth(token).json(&body).send().await?;
    let status = r.status().as_u16();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, body))
}

const CUSTOMERS: usize = 4;
const WRITERS_PER_CUSTOMER: u16 = 8;
const WRITES_PER_WRITER: u16 = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9_sqlite() {
    acknowledged_writes_survive_kill_9(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9_postgres() {
    acknowledged_writes_survive_kill_9(Backend::Postgres).await
}

async fn acknowledged_writes_survive_kill_9(backend: Backend) {
    let db = match backend {
        Backend::Sqlite => Database::Sqlite(tempfile::tempdir().unwrap()),
        Backend::Postgres => Database::Postgres(common::pg::fresh_database().await),
    };
    let mut panel = start(&db);
    let admin = panel
        .admin
        .clone()
        .expect("first start prints an admin token");
    let c = client();
    // Per customer: a write token and a firewall.
    let mut targets = Vec::new();
    for n in 0..CUSTOMERS {
        let (s, cust) = post(
            &c,
            &format!("{}/v1/customers", panel.url),
            &admin,
            json!({"name": format!("acme-{n}")}),
        )
        .await
        .unwrap();
        assert_eq!(s, 201);
        let (s, tok) = post(
            &c,
            &format!("{}/v1/tokens", panel.url),
            &admin,
            json!({"name": "load", "customer_id": cust["id"], "scope": "write"}),
        )
        .await
        .unwrap();
        assert_eq!(s, 201);
        let token = tok["token"].as_str().unwrap().to_string();
        let (s, fw) = post(
            &c,
            &format!("{}/v1/firewalls", panel.url),
            &token,
            json!({"name": "load"}),
        )
        .await
        .unwrap();
        assert_eq!(s, 201);
        targets.push((token, fw["id"].as_i64().unwrap()));
    }

    // Writers add rules (ports are unique per firewall) until the panel
    // dies; each records the (firewall, port) whose POST got a 2xx.
    let acked: Arc<Mutex<Vec<(i64, u16)>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut writers = Vec::new();
    for (token, fw) in &targets {
        for w in 0..WRITERS_PER_CUSTOMER {
            let (c, url, token, acked, fw) = (
                c.clone(),
                format!("{}/v1/firewalls/{fw}/rules", panel.url),
                token.clone(),
                acked.clone(),
                *fw,
            );
            writers.push(tokio::spawn(async move {
                for i in 0..WRITES_PER_WRITER {
                    if Instant::now() > deadline {
                        break;
                    }
                    let port = 1 + w * WRITES_PER_WRITER + i;
                    match post(&c, &url, &token, json!({"protocol": "tcp", "port": port})).await {
                        Ok((201, _)) => acked.lock().unwrap().push((fw, port)),
                        Ok((status, body)) => panic!("write refused: {status} {body}"),
                        Err(_) => break, // the panel is gone
                    }
                }
            }));
        }
    }
    // Kill -9 once a good number of writes went through, while they go on.
    let load_start = Instant::now();
    while acked.lock().unwrap().len() < 600 && load_start.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panel.child.kill().unwrap(); // SIGKILL
    panel.child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 150,
        "the load ran ({} acknowledged writes)",
        acked.len()
    );

    // Restart on the same database: no new admin token, every acked write present.
    let mut again = start(&db);
    assert!(
        again.admin.is_none(),
        "the admin token is created on first start only"
    );
    let mut present_total = 0;
    for (token, fw) in &targets {
        let r = c
            .get(format!("{}/v1/firewalls/{fw}/rules", again.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.unwrap();
        let present: std::collections::HashSet<u16> = body["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["port"].as_str().unwrap().parse().unwrap())
            .collect();
        present_total += present.len();
        let mine: Vec<u16> = acked
            .iter()
            .filter(|(f, _)| f == fw)
            .map(|(_, p)| *p)
            .collect();
        let lost: Vec<u16> = mine
            .iter()
            .copied()
            .filter(|p| !present.contains(p))
            .collect();
        assert!(
            lost.is_empty(),
            "firewall {fw}: {} acknowledged writes lost after kill -9: {lost:?}",
            lost.len()
        );
        // The firewall's revision is the global one of its last change.
        let fwj: Value = c
            .get(format!("{}/v1/firewalls/{fw}", again.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(fwj["revision"].as_u64().unwrap() >= mine.len() as u64);
    }
    // At most the writes in flight at the kill exist without an acknowledgement.
    let writers_total = CUSTOMERS * WRITERS_PER_CUSTOMER as usize;
    assert!(
        present_total <= acked.len() + writers_total,
        "{present_total} present, {} acknowledged",
        acked.len()
    );
    again.child.kill().unwrap();
    again.child.wait().unwrap();
}
