//! End to end: the real panel (in this process, SQLite or PostgreSQL) and the
//! real `portwall-edge` binary, in namespaces this test creates:
//!
//! ```text
//! internet 198.51.100.20 ── edge (gateway, panel on its 127.0.0.1) ──┬── vps1 203.0.113.10
//!                                                                     └── vps2 192.0.2.10
//! ```
//! (dedi1, a Dedicated server, is registered only: it cannot be assigned.)

mod common;

use common::{call, eventually, start_panel, Api};
use edge::client::Method;
use model::{Defaults, Policy, Ruleset};
use panel::{DatabaseConfig, Panel};
use serde_json::{json, Value};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Stdio};
use std::time::Duration;
use testns::traffic::{tcp, Listeners, Seen};
use testns::{Netns, Routed};

const ZONE: &str = "z1";
const SHORT: Duration = Duration::from_millis(400);
const LIMIT: Duration = Duration::from_secs(20);
const VPS2: (&str, &str) = ("192.0.2.10", "2001:db8:3::10");

struct World {
    r: Routed,
    _vps2: Netns,
    rt: tokio::runtime::Runtime,
    db: DatabaseConfig,
    _db_dir: Option<tempfile::TempDir>,
    panels: Vec<Option<Panel>>,
    ports: Vec<u16>,
    admin: String,
    api: Option<Api>,
    state: tempfile::TempDir,
    edge: Option<Child>,
    _listeners: Vec<Listeners>,
}

impl World {
    fn new(postgres: bool, replicas: usize) -> World {
        let r = Routed::new();
        let vps2 = Netns::new();
        testns::link_named(
            &r.gateway,
            &vps2,
            ("eth2", "eth0"),
            ("192.0.2.1/24", "2001:db8:3::1/64"),
            ("192.0.2.10/24", "2001:db8:3::10/64"),
        );
        vps2.ip(&["route", "add", "default", "via", "192.0.2.1"])
            .unwrap();
        vps2.ip(&["-6", "route", "add", "default", "via", "2001:db8:3::1"])
            .unwrap();
        let listeners = vec![
            Listeners::start(
                &r.server,
                &[
                    r.server_addr.v4.parse().unwrap(),
                    r.server_addr.v6.parse().unwrap(),
                ],
                &[22, 80],
            ),
            Listeners::start(&vps2, &[VPS2.0.parse().unwrap()], &[22, 80]),
            Listeners::start(&r.client, &[r.client_addr.v4.parse().unwrap()], &[8080]),
        ];
        // Built on a thread inside the gateway: its threads, and so the panel's
        // sockets and the test's API calls, live there.
        let rt = r.gateway.run(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        });
        let (db, db_dir) = if postgres {
            // From this thread, in this machine's namespace: the throwaway
            // PostgreSQL must not live (and die) in a test namespace. Its unix
            // socket is reachable from every namespace.
            let url = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(common::pg::fresh_database());
            (DatabaseConfig::Postgres(url), None)
        } else {
            let d = tempfile::tempdir().unwrap();
            (DatabaseConfig::sqlite_in(d.path()), Some(d))
        };
        let mut w = World {
            _vps2: vps2,
            rt,
            db,
            _db_dir: db_dir,
            panels: Vec::new(),
            ports: Vec::new(),
            admin: String::new(),
            api: None,
            state: tempfile::tempdir().unwrap(),
            edge: None,
            _listeners: listeners,
            r,
        };
        for _ in 0..replicas {
            let p = w.block(start_panel(&w.db, 0));
            w.ports.push(p.addr.port());
            w.panels.push(Some(p));
        }
        let store = w.panels[0].as_ref().unwrap().state.store.clone();
        w.admin = w.block(async move { store.ensure_admin_token().await.unwrap().unwrap() });
        let url = w.url(0);
        let admin = w.admin.clone();
        w.api = Some(w.block(async move { Api::setup(&url, &admin, ZONE).await }));
        w
    }

    fn url(&self, replica: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[replica])
    }

    /// Runs a future on the runtime, from a thread inside the gateway.
    fn block<F: Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        self.r.gateway.run(|| self.rt.block_on(f))
    }

    fn api(&self) -> &Api {
        self.api.as_ref().unwrap()
    }

    fn customer(&self, method: Method, path: &str, body: Value) -> Value {
        let c = &self.api().customer;
        self.block(call(c, method, path, body))
    }

    fn customer_err(&self, path: &str, body: Value) -> String {
        match self.block(self.api().post(path, body)) {
            Ok(v) => panic!("{path} succeeded: {v}"),
            Err(e) => e.to_string(),
        }
    }

    fn stop_panel(&mut self, replica: usize) {
        if let Some(p) = self.panels[replica].take() {
            self.block(p.stop()).unwrap();
        }
    }

    fn start_panel(&mut self, replica: usize) {
        let p = self.block(start_panel(&self.db, self.ports[replica]));
        self.panels[replica] = Some(p);
    }

    fn start_edge(&mut self, urls: &str) {
        let log = std::fs::File::create(self.state.path().join("edge.log")).unwrap();
        let child = self
            .r
            .gateway
            .command(env!("CARGO_BIN_EXE_portwall-edge"))
            .args([
                "run",
                "--panel-url",
                urls,
                "--zone",
                ZONE,
                "--name",
                "e2e-edge",
                "--counters-every",
                "1",
                "--backoff-max",
                "1",
            ])
            .arg("--state-dir")
            .arg(self.state.path())
            .env("PORTWALL_EDGE_TOKEN", &self.api().edge_token)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start portwall-edge");
        self.edge = Some(child);
    }

    fn stop_edge(&mut self) {
        if let Some(mut c) = self.edge.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn note(&self) -> Option<edge::store::AgentNote> {
        edge::store::load_note(self.state.path())
    }

    fn wait_synced(&self) {
        self.block(eventually("the edge's first sync", LIMIT, || {
            self.note()
                .is_some_and(|n| n.panel_reachable && n.revision.is_some())
        }));
    }

    /// TCP from the internet host to `dst:port`.
    fn probe(&self, dst: &str, port: u16) -> Seen {
        let dst: IpAddr = dst.parse().unwrap();
        let src: IpAddr = if dst.is_ipv4() {
            self.r.client_addr.v4.parse().unwrap()
        } else {
            self.r.client_addr.v6.parse().unwrap()
        };
        self.r
            .client
            .run(move || tcp(SocketAddr::new(src, 0), SocketAddr::new(dst, port), SHORT))
    }

    fn vps1(&self, port: u16) -> (Seen, Seen) {
        (
            self.probe(&self.r.server_addr.v4, port),
            self.probe(&self.r.server_addr.v6, port),
        )
    }

    /// Waits until `vps1:port` (IPv4 and IPv6) is `want`.
    fn until(&self, port: u16, want: Seen, what: &str) {
        let deadline = std::time::Instant::now() + LIMIT;
        loop {
            let got = self.vps1(port);
            if got == (want, want) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: vps1:{port} is {got:?}, expected {want:?}\nedge log:\n{}",
                self.edge_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn edge_log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("edge.log")).unwrap_or_default()
    }

    /// The server's own outbound connection to the internet host.
    fn vps1_outbound(&self) -> Seen {
        let src: IpAddr = self.r.server_addr.v4.parse().unwrap();
        let dst: IpAddr = self.r.client_addr.v4.parse().unwrap();
        self.r
            .server
            .run(move || tcp(SocketAddr::new(src, 0), SocketAddr::new(dst, 8080), SHORT))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop_edge();
        for i in 0..self.panels.len() {
            self.stop_panel(i);
        }
    }
}

/// The OS firewall of vps1 (what `portwall allow/deny` inside it apply).
fn os_firewall(w: &World, rules: &[&str]) {
    let ruleset = Ruleset {
        rules: rules
            .iter()
            .flat_map(|r| model::parse_rule(r, &model::Services::builtin()).unwrap())
            .collect(),
        defaults: Defaults {
            incoming: Policy::Allow,
            outgoing: Policy::Allow,
            routed: Policy::Allow,
        },
        logging: Default::default(),
        builtins: Default::default(),
        lists: Default::default(),
    };
    w.r.server
        .run(|| {
            netfilter::Kernel::Netlink.apply(&ruleset, None, netfilter::ApplyOptions::default())
        })
        .expect("the OS firewall applies");
}

fn both_layers_and_fail_static(postgres: bool) {
    let mut w = World::new(postgres, 1);
    let vps1 = {
        let (a, b) = (w.r.server_addr.v4.clone(), w.r.server_addr.v6.clone());
        w.block(w.api().server("vps1", "VPS", &[&a], &[&b], ZONE))
    };
    let vps2 = w.block(w.api().server("vps2", "VPS", &[VPS2.0], &[VPS2.1], ZONE));
    let dedi1 = w.block(
        w.api()
            .server("dedi1", "Dedicated", &["203.0.113.13"], &[], ZONE),
    );
    w.start_edge(&w.url(0));
    w.wait_synced();
    let open = (Seen::Open, Seen::Open);

    // An inactive firewall, assigned: nothing filtered.
    let fw = w.block(w.api().firewall("web", json!([{"preset": "SSH"}])));
    w.customer(
        Method::POST,
        &format!("/v1/firewalls/{fw}/assignments"),
        json!({"server_id": vps1}),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(w.vps1(22), open);
    assert_eq!(w.vps1(80), open);

    // A Dedicated server cannot be assigned.
    let err = w.customer_err(
        &format!("/v1/firewalls/{fw}/assignments"),
        json!({"server_id": dedi1}),
    );
    assert!(err.contains("409") && err.contains("Dedicated"), "{err}");

    // Enabled: 80 filtered from the internet, 22 open; vps2 untouched; vps1's own
    // outbound connections work.
    w.customer(
        Method::POST,
        &format!("/v1/firewalls/{fw}/enable"),
        Value::Null,
    );
    w.until(80, Seen::Timeout, "enabled firewall");
    assert_eq!(w.vps1(22), open);
    assert_eq!(w.probe(VPS2.0, 80), Seen::Open);
    assert_eq!(w.vps1_outbound(), Seen::Open);
    // The panel learns that the edge applied it, and its counters.
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let st = w.customer(
            Method::GET,
            &format!("/v1/servers/{vps1}/status"),
            Value::Null,
        );
        if st["state"] == "applied" && st["counters"].as_array().is_some_and(|c| !c.is_empty()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the panel never showed vps1 applied with counters: {st}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // vps2 has no firewall: the panel says so.
    let st = w.customer(
        Method::GET,
        &format!("/v1/servers/{vps2}/status"),
        Value::Null,
    );
    assert_eq!(st["enforced"], false, "{st}");

    // Both layers. The network firewall allows 22, the OS firewall denies it:
    // filtered. The OS firewall allows 80, the network firewall does not:
    // filtered. Both allow 22 from the OS side again: open.
    os_firewall(&w, &["deny 22/tcp"]);
    assert_eq!(w.vps1(22), (Seen::Timeout, Seen::Timeout));
    os_firewall(&w, &["allow 80/tcp", "allow 22/tcp"]);
    assert_eq!(w.vps1(80), (Seen::Timeout, Seen::Timeout));
    assert_eq!(w.vps1(22), open);

    // The panel goes away: enforcement unchanged.
    w.stop_panel(0);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!w.note().unwrap().panel_reachable);
    assert_eq!(w.vps1(80), (Seen::Timeout, Seen::Timeout));
    assert_eq!(w.vps1(22), open);

    // The edge restarts while the panel is down, after a reboot that emptied the
    // kernel: it restores the saved policy from disk before anything else.
    w.stop_edge();
    w.r.gateway
        .exec_ok(&["nft", "delete", "table", "inet", "portwall_edge"]);
    assert_eq!(w.vps1(80), open);
    w.start_edge(&w.url(0));
    w.until(80, Seen::Timeout, "restored from disk");
    assert_eq!(w.vps1(22), open);

    // A change made while the edge's panel is down (through another replica of
    // the same database), then the panel comes back: the edge catches up.
    let other = w.block(start_panel(&w.db, 0));
    let via_other = w.api().via(&other.url(), &w.admin);
    w.block(call(
        &via_other.customer,
        Method::POST,
        &format!("/v1/firewalls/{fw}/rules"),
        json!({"protocol": "tcp", "port": "80"}),
    ));
    w.block(other.stop()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(w.vps1(80), (Seen::Timeout, Seen::Timeout));
    w.start_panel(0);
    w.until(80, Seen::Open, "caught up after the panel came back");

    // Unassigning restores access; so does disabling.
    w.customer(
        Method::POST,
        &format!("/v1/firewalls/{fw}/rules"),
        json!({"protocol": "udp", "port": "53"}),
    );
    let fw2 = w.block(w.api().firewall("ssh only", json!([{"preset": "SSH"}])));
    w.customer(
        Method::POST,
        &format!("/v1/firewalls/{fw2}/assignments"),
        json!({"server_id": vps1}),
    );
    w.customer(
        Method::POST,
        &format!("/v1/firewalls/{fw2}/enable"),
        Value::Null,
    );
    w.customer(
        Method::DELETE,
        &format!("/v1/firewalls/{fw}/assignments/{vps1}"),
        Value::Null,
    );
    w.until(80, Seen::Timeout, "only the ssh firewall is left");
    w.customer(
        Method::POST,
        &format!("/v1/firewalls/{fw2}/disable"),
        Value::Null,
    );
    w.until(80, Seen::Open, "disabled");
    assert_eq!(w.vps1(22), open);
}

#[test]
fn both_layers_and_fail_static_sqlite() {
    both_layers_and_fail_static(false);
}

#[test]
fn both_layers_and_fail_static_postgres() {
    both_layers_and_fail_static(true);
}

/// Two panel replicas on one PostgreSQL database; the edge polls one, changes
/// go through the other, and when its replica dies the edge moves on.
#[test]
fn scale_out_on_postgresql() {
    let mut w = World::new(true, 2);
    let vps1 = {
        let (a, b) = (w.r.server_addr.v4.clone(), w.r.server_addr.v6.clone());
        w.block(w.api().server("vps1", "VPS", &[&a], &[&b], ZONE))
    };
    w.start_edge(&format!("{},{}", w.url(0), w.url(1)));
    w.wait_synced();
    let via_b = w.api().via(&w.url(1), &w.admin);
    let fw = w.block(via_b.firewall("web", json!([{"preset": "SSH"}])));
    w.block(call(
        &via_b.customer,
        Method::POST,
        &format!("/v1/firewalls/{fw}/assignments"),
        json!({"server_id": vps1}),
    ));
    w.block(call(
        &via_b.customer,
        Method::POST,
        &format!("/v1/firewalls/{fw}/enable"),
        Value::Null,
    ));
    // The edge long-polls replica A; the commit on B wakes it (LISTEN/NOTIFY).
    let t = std::time::Instant::now();
    w.until(80, Seen::Timeout, "a change through replica B");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}: the poll on A was not woken",
        t.elapsed()
    );
    // Replica A goes away; the edge moves to B and still follows.
    w.stop_panel(0);
    w.block(call(
        &via_b.customer,
        Method::POST,
        &format!("/v1/firewalls/{fw}/rules"),
        json!({"protocol": "tcp", "port": "80"}),
    ));
    w.until(80, Seen::Open, "after moving to replica B");
    assert_eq!(w.vps1(22), (Seen::Open, Seen::Open));
}
