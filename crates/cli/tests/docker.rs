//! Docker-published ports and portwall's routed rules, in namespaces this test
//! creates.
//!
//! The `host` namespace stands in for a Docker host: a `docker0` bridge with a
//! `container` namespace behind it, and the rules Docker writes through
//! iptables-nft (DNAT of published ports in `nat DOCKER`, `FORWARD` policy DROP
//! with `DOCKER-USER`, the conntrack accept, `DOCKER` accepts per published port,
//! accept of container egress, MASQUERADE). A `client` namespace has two
//! addresses, one inside 203.0.113.0/24 and one outside it; it also serves as the
//! internet the container connects out to.
//!
//! UFW's input rules never see a published port, since the packet is routed to
//! the container. portwall's forward chain runs before Docker's and matches the
//! connection as the client opened it (the published port, before DNAT), so
//! `deny routed 8080/tcp` and `allow routed 443/tcp from 203.0.113.0/24` restrict
//! published ports, while Docker's rules stay as they were and containers still
//! reach out.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use testns::traffic::{tcp, Listeners, Seen};
use testns::{link_named, Netns};

mod common;

const HOST_INSIDE: &str = "203.0.113.1";
const HOST_OUTSIDE: &str = "198.51.100.1";
const CLIENT_INSIDE: &str = "203.0.113.5";
const CLIENT_OUTSIDE: &str = "198.51.100.7";
const CONTAINER: &str = "172.17.0.2";
/// The port the container connects out to, on the client ("the internet").
const EGRESS_PORT: u16 = 9000;

/// Docker's rules for a container at 172.17.0.2 publishing 8080->80 and
/// 443->443, as `iptables-save` shows them on a Docker host (trimmed to what
/// the traffic here touches).
const DOCKER_RULES: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 443 -j DNAT --to-destination 172.17.0.2:443
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 443 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
";

struct DockerHost {
    client: Netns,
    host: Netns,
    container: Netns,
    _listeners: Vec<Listeners>,
}

impl DockerHost {
    fn new() -> DockerHost {
        let client = Netns::new();
        let host = Netns::new();
        let container = Netns::new();
        link_named(
            &client,
            &host,
            ("eth0", "eth0"),
            ("203.0.113.5/24", "2001:db8:1::5/64"),
            ("203.0.113.1/24", "2001:db8:1::1/64"),
        );
        client
            .ip(&["addr", "add", "198.51.100.7/24", "dev", "eth0"])
            .unwrap();
        host.ip(&["addr", "add", "198.51.100.1/24", "dev", "eth0"])
            .unwrap();
        // The container's veth, its host end enslaved to docker0 as Docker does.
        link_named(
            &host,
            &container,
            ("vethc0", "eth0"),
            ("192.0.2.254/32", "2001:db8:ff::fe/128"),
            ("172.17.0.2/16", "2001:db8:17::2/64"),
        );
        host.ip(&["addr", "flush", "dev", "vethc0"]).unwrap();
        host.ip(&["link", "add", "docker0", "type", "bridge"])
            .unwrap();
        host.ip(&["addr", "add", "172.17.0.1/16", "dev", "docker0"])
            .unwrap();
        host.ip(&["link", "set", "vethc0", "master", "docker0"])
            .unwrap();
        host.ip(&["link", "set", "docker0", "up"]).unwrap();
        container
            .ip(&["route", "add", "default", "via", "172.17.0.1"])
            .unwrap();
        host.sysctl("net.ipv4.ip_forward", "1").unwrap();
        let mut restore = host.command("iptables-nft-restore");
        restore.stdin(std::process::Stdio::piped());
        let mut child = restore.spawn().expect("run iptables-nft-restore");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(DOCKER_RULES.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "Docker's rules load");
        let container_ip: IpAddr = CONTAINER.parse().unwrap();
        let client_ip: IpAddr = CLIENT_INSIDE.parse().unwrap();
        let listeners = vec![
            Listeners::start(&container, &[container_ip], &[80, 443]),
            Listeners::start(&client, &[client_ip], &[EGRESS_PORT]),
        ];
        DockerHost {
            client,
            host,
            container,
            _listeners: listeners,
        }
    }

    /// A connection from the client's address `from` to the host's `to:port`.
    fn connect(&self, from: &str, to: &str, port: u16) -> Seen {
        let src = SocketAddr::new(from.parse().unwrap(), 0);
        let dst = SocketAddr::new(to.parse().unwrap(), port);
        self.client
            .run(move || tcp(src, dst, Duration::from_millis(800)))
    }

    /// A connection from the container out to the client (the internet).
    fn egress(&self) -> Seen {
        let src = SocketAddr::new(CONTAINER.parse().unwrap(), 0);
        let dst = SocketAddr::new(CLIENT_INSIDE.parse().unwrap(), EGRESS_PORT);
        self.container
            .run(move || tcp(src, dst, Duration::from_millis(800)))
    }

    fn docker_rules(&self) -> String {
        self.host.exec_ok(&["iptables-nft-save"])
    }
}

/// Runs `portwall --backend BACKEND ARGS`, which must succeed.
fn ok(ns: &Netns, dir: &Path, backend: &str, args: &[&str]) {
    let mut with_backend = vec!["--backend", backend];
    with_backend.extend_from_slice(args);
    common::ok(ns, dir, &with_backend);
}

/// Docker's rules without the counters, which traffic changes.
fn without_counters(save: &str) -> Vec<String> {
    save.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.split_once(" [") {
            Some((head, _)) if l.starts_with(':') => head.to_string(),
            _ => l.to_string(),
        })
        .collect()
}

#[test]
fn deny_routed_closes_a_published_port_and_docker_keeps_working() {
    deny_routed_case("nft");
}

#[test]
fn deny_routed_closes_a_published_port_with_the_iptables_backend() {
    deny_routed_case("iptables");
}

fn deny_routed_case(backend: &str) {
    let d = DockerHost::new();
    // Docker as it is: every published port answers, from anywhere.
    assert_eq!(d.connect(CLIENT_INSIDE, HOST_INSIDE, 8080), Seen::Open);
    assert_eq!(d.connect(CLIENT_OUTSIDE, HOST_OUTSIDE, 443), Seen::Open);
    assert_eq!(d.egress(), Seen::Open);
    let before = without_counters(&d.docker_rules());

    let dir = tempfile::tempdir().unwrap();
    ok(
        &d.host,
        dir.path(),
        backend,
        &["default", "allow", "routed"],
    );
    ok(
        &d.host,
        dir.path(),
        backend,
        &["deny", "routed", "8080/tcp"],
    );
    ok(&d.host, dir.path(), backend, &["enable"]);

    assert_eq!(
        d.connect(CLIENT_INSIDE, HOST_INSIDE, 8080),
        Seen::Timeout,
        "deny routed 8080/tcp drops the published port (DNAT to :80)"
    );
    assert_eq!(d.connect(CLIENT_OUTSIDE, HOST_OUTSIDE, 8080), Seen::Timeout);
    assert_eq!(d.connect(CLIENT_INSIDE, HOST_INSIDE, 443), Seen::Open);
    assert_eq!(d.egress(), Seen::Open, "the container still reaches out");
    if backend == "nft" {
        assert_eq!(
            without_counters(&d.docker_rules()),
            before,
            "Docker's own rules are untouched"
        );
    } else {
        // The iptables backend adds only its own chains and one jump per
        // built-in chain; Docker's rules stay, in their order.
        let now: Vec<String> = without_counters(&d.docker_rules())
            .into_iter()
            .filter(|l| !l.contains("portwall"))
            .collect();
        let before: Vec<String> = before
            .into_iter()
            .filter(|l| !l.contains("portwall"))
            .collect();
        assert_eq!(now, before, "Docker's own rules are untouched");
    }

    // The counters say which rule dropped it.
    let out = common::portwall(
        &d.host,
        dir.path(),
        &["--backend", backend, "status", "--verbose", "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let rules = v["rules"].as_array().expect("rules");
    let deny = rules
        .iter()
        .find(|r| r["rule"].as_str().unwrap_or("").contains("8080"))
        .unwrap_or_else(|| panic!("rule 8080 in {v}"));
    assert!(
        deny["counters"]["packets"].as_u64().unwrap_or(0) >= 2,
        "the deny rule counted the dropped SYNs: {deny}"
    );

    // Disabling portwall gives Docker's behaviour back.
    ok(&d.host, dir.path(), backend, &["disable"]);
    assert_eq!(d.connect(CLIENT_INSIDE, HOST_INSIDE, 8080), Seen::Open);
}

#[test]
fn allow_routed_from_a_network_restricts_a_published_port() {
    let d = DockerHost::new();
    let dir = tempfile::tempdir().unwrap();
    // Routed traffic is denied by default: containers' own egress must be
    // allowed, as on any router; published ports only as the rules say.
    ok(&d.host, dir.path(), "nft", &["default", "deny", "routed"]);
    ok(
        &d.host,
        dir.path(),
        "nft",
        &["route", "allow", "in", "on", "docker0"],
    );
    ok(
        &d.host,
        dir.path(),
        "nft",
        &["allow", "routed", "443/tcp", "from", "203.0.113.0/24"],
    );
    ok(&d.host, dir.path(), "nft", &["enable"]);

    assert_eq!(d.connect(CLIENT_INSIDE, HOST_INSIDE, 443), Seen::Open);
    assert_eq!(
        d.connect(CLIENT_OUTSIDE, HOST_OUTSIDE, 443),
        Seen::Timeout,
        "443 only from 203.0.113.0/24"
    );
    assert_eq!(
        d.connect(CLIENT_INSIDE, HOST_INSIDE, 8080),
        Seen::Timeout,
        "8080 is published by Docker but not allowed"
    );
    assert_eq!(d.egress(), Seen::Open, "container egress is allowed");
    // Only the original (published) port counts: the container's port 80 is
    // not what the rule names.
    ok(&d.host, dir.path(), "nft", &["allow", "routed", "80/tcp"]);
    assert_eq!(d.connect(CLIENT_INSIDE, HOST_INSIDE, 8080), Seen::Timeout);
}
