//! The edge against the real kernel, with real traffic, in namespaces this test
//! creates: client 198.51.100.20 — gateway (the edge) — server 203.0.113.10
//! (IPv6 2001:db8:1::20 — 2001:db8:2::10). Nothing touches this machine's own
//! namespace.

use edge::agent::{self, AgentConfig};
use edge::compile::{Mode, SetId, TableSpec};
use edge::engine::{self, ApplyMode, Engine, EngineOptions};
use model::network::sync::{EdgeRule, ServerPolicy, SyncResponse};
use model::network::NetworkProtocol;
use model::PortRange;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use testns::traffic::{tcp, udp, Listeners, Seen};
use testns::{Netns, Routed};

const SHORT: Duration = Duration::from_millis(400);

fn rule(id: i64, protocol: NetworkProtocol, port: Option<u16>, sources: &[&str]) -> EdgeRule {
    EdgeRule {
        firewall_id: 1,
        rule_id: id,
        protocol,
        ports: port.map(PortRange::single),
        sources: sources.iter().map(|s| s.parse().unwrap()).collect(),
    }
}

fn policy(r: &Routed, enforced: bool, rules: Vec<EdgeRule>, revision: u64) -> ServerPolicy {
    ServerPolicy {
        server_id: 1,
        name: "vps1".into(),
        addresses: vec![
            r.server_addr.v4.parse().unwrap(),
            r.server_addr.v6.parse().unwrap(),
        ],
        revision,
        enforced,
        rules,
    }
}

struct Probe<'a> {
    r: &'a Routed,
}

impl Probe<'_> {
    /// TCP from the client to the server's port, IPv4 and IPv6.
    fn tcp(&self, port: u16) -> (Seen, Seen) {
        let (c, s) = (&self.r.client_addr, &self.r.server_addr);
        let v4 = (
            SocketAddr::new(c.v4.parse().unwrap(), 0),
            SocketAddr::new(s.v4.parse().unwrap(), port),
        );
        let v6 = (
            SocketAddr::new(c.v6.parse().unwrap(), 0),
            SocketAddr::new(s.v6.parse().unwrap(), port),
        );
        self.r
            .client
            .run(move || (tcp(v4.0, v4.1, SHORT), tcp(v6.0, v6.1, SHORT)))
    }
    fn udp(&self, port: u16) -> Seen {
        let (c, s) = (&self.r.client_addr, &self.r.server_addr);
        let src = SocketAddr::new(c.v4.parse().unwrap(), 0);
        let dst = SocketAddr::new(s.v4.parse().unwrap(), port);
        self.r.client.run(move || udp(src, dst, SHORT))
    }
    /// The server's own outbound connection to the client.
    fn outbound(&self, port: u16) -> Seen {
        let (c, s) = (&self.r.client_addr, &self.r.server_addr);
        let src = SocketAddr::new(s.v4.parse().unwrap(), 0);
        let dst = SocketAddr::new(c.v4.parse().unwrap(), port);
        self.r.server.run(move || tcp(src, dst, SHORT))
    }
}

fn listeners(r: &Routed) -> (Listeners, Listeners) {
    let s: Vec<IpAddr> = vec![
        r.server_addr.v4.parse().unwrap(),
        r.server_addr.v6.parse().unwrap(),
    ];
    let c: Vec<IpAddr> = vec![r.client_addr.v4.parse().unwrap()];
    (
        Listeners::start(&r.server, &s, &[22, 53, 80]),
        Listeners::start(&r.client, &c, &[8080]),
    )
}

fn apply(
    r: &Routed,
    e: &mut Engine,
    resp: SyncResponse,
) -> Result<engine::ApplyOutcome, edge::EdgeError> {
    r.gateway.run(|| e.apply(&resp))
}

/// One ICMP / ICMPv6 echo request; whether the reply came back. Call it on a
/// thread inside the sending namespace.
fn echo(dst: IpAddr, timeout: Duration) -> bool {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    // A new identifier each time: conntrack would take a repeated one for the
    // same (established) flow.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let id: u16 =
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) ^ (std::process::id() as u16);
    let (sock, mut msg) = if dst.is_ipv4() {
        (
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap(),
            vec![8u8, 0, 0, 0],
        )
    } else {
        (
            Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).unwrap(),
            vec![128u8, 0, 0, 0],
        )
    };
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&[0, 1]);
    msg.extend_from_slice(b"portwall-edge");
    if dst.is_ipv4() {
        // The kernel computes the checksum of ICMPv6 only.
        let mut sum: u32 = 0;
        for c in msg.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        msg[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
    sock.send_to(&msg, &SockAddr::from(SocketAddr::new(dst, 0)))
        .unwrap();
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            return false;
        };
        let data: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        // IPv4 raw sockets see the IP header; IPv6 ones do not.
        let icmp = if dst.is_ipv4() {
            &data[((data[0] & 0x0f) as usize) * 4..]
        } else {
            &data[..]
        };
        let reply = if dst.is_ipv4() { 0 } else { 129 };
        if from.as_socket().map(|a| a.ip()) == Some(dst)
            && icmp.len() >= 8
            && icmp[0] == reply
            && icmp[4..6] == id.to_be_bytes()
        {
            return true;
        }
    }
}

const OPEN: (Seen, Seen) = (Seen::Open, Seen::Open);
const FILTERED: (Seen, Seen) = (Seen::Timeout, Seen::Timeout);

#[test]
fn enforcement_follows_the_policy() {
    let r = Routed::new();
    let _l = listeners(&r);
    let probe = Probe { r: &r };
    let mut e = Engine::new(TableSpec::new(Mode::Forward), EngineOptions::default());

    // Assigned but inactive: nothing filtered.
    let out = apply(
        &r,
        &mut e,
        SyncResponse::Snapshot {
            revision: 1,
            servers: vec![policy(
                &r,
                false,
                vec![rule(10, NetworkProtocol::Tcp, Some(22), &[])],
                1,
            )],
        },
    )
    .unwrap();
    assert_eq!(out.mode, ApplyMode::Replace);
    assert!(out.verified);
    assert_eq!(probe.tcp(22), OPEN);
    assert_eq!(probe.tcp(80), OPEN);

    // Enforced: 22 open, 80 filtered (timeout, not refused), v4 and v6.
    let out = apply(
        &r,
        &mut e,
        SyncResponse::Delta {
            from: 1,
            revision: 2,
            changed: vec![policy(
                &r,
                true,
                vec![
                    rule(10, NetworkProtocol::Tcp, Some(22), &[]),
                    rule(11, NetworkProtocol::Udp, Some(53), &["198.51.100.0/24"]),
                ],
                2,
            )],
            removed: vec![],
        },
    )
    .unwrap();
    assert_eq!(out.mode, ApplyMode::Elements);
    assert_eq!(out.servers, vec![(1, 2)]);
    assert_eq!(probe.tcp(22), OPEN);
    assert_eq!(probe.tcp(80), FILTERED);
    assert_eq!(probe.udp(53), Seen::Open);
    // The server's own outbound connections and their replies pass.
    assert_eq!(probe.outbound(8080), Seen::Open);

    // A change is one small element delta: 80 opens, 22 closes.
    let out = apply(
        &r,
        &mut e,
        SyncResponse::Delta {
            from: 2,
            revision: 3,
            changed: vec![policy(
                &r,
                true,
                vec![
                    rule(12, NetworkProtocol::Tcp, Some(80), &[]),
                    rule(11, NetworkProtocol::Udp, Some(53), &["198.51.100.0/24"]),
                ],
                3,
            )],
            removed: vec![],
        },
    )
    .unwrap();
    assert_eq!((out.added, out.removed), (2, 2), "{out:?}");
    assert_eq!(probe.tcp(80), OPEN);
    assert_eq!(probe.tcp(22), FILTERED);

    // Counters: the drops of the server and the accepts of rule 12.
    let counters = r.gateway.run(|| e.counters()).unwrap();
    let dropped = counters
        .iter()
        .find(|c| c.server_id == 1 && c.rule_id.is_none())
        .unwrap();
    assert!(dropped.packets >= 2, "{counters:?}");
    let accepted = counters.iter().find(|c| c.rule_id == Some(12)).unwrap();
    assert!(accepted.packets >= 2, "{counters:?}");

    // A malformed snapshot is rejected whole; the previous rules stay.
    let mut bad = policy(&r, true, vec![rule(13, NetworkProtocol::Tcp, None, &[])], 4);
    bad.server_id = 2;
    let err = apply(
        &r,
        &mut e,
        SyncResponse::Snapshot {
            revision: 4,
            servers: vec![policy(&r, false, vec![], 4), bad],
        },
    )
    .unwrap_err();
    assert!(matches!(err, edge::EdgeError::Invalid(_)), "{err}");
    assert_eq!(e.policy().revision, 3);
    assert_eq!(probe.tcp(22), FILTERED);
    assert_eq!(probe.tcp(80), OPEN);

    // A delta that does not follow what is applied is refused too.
    let err = apply(
        &r,
        &mut e,
        SyncResponse::Delta {
            from: 1,
            revision: 5,
            changed: vec![],
            removed: vec![1],
        },
    )
    .unwrap_err();
    assert!(matches!(err, edge::EdgeError::Gap { .. }), "{err}");

    // Removing enforcement restores access.
    apply(
        &r,
        &mut e,
        SyncResponse::Delta {
            from: 3,
            revision: 6,
            changed: vec![policy(
                &r,
                false,
                vec![rule(12, NetworkProtocol::Tcp, Some(80), &[])],
                6,
            )],
            removed: vec![],
        },
    )
    .unwrap();
    assert_eq!(probe.tcp(22), OPEN);
    let kernel = r
        .gateway
        .run(|| engine::read_kernel(e.table()))
        .unwrap()
        .unwrap();
    assert!(kernel.elements.is_empty(), "{:?}", kernel.elements);

    // Enforced again, then the server is removed from the zone: open.
    apply(
        &r,
        &mut e,
        SyncResponse::Delta {
            from: 6,
            revision: 7,
            changed: vec![policy(&r, true, vec![], 7)],
            removed: vec![],
        },
    )
    .unwrap();
    assert_eq!(probe.tcp(22), FILTERED);
    apply(
        &r,
        &mut e,
        SyncResponse::Delta {
            from: 7,
            revision: 8,
            changed: vec![],
            removed: vec![1],
        },
    )
    .unwrap();
    assert_eq!(probe.tcp(22), OPEN);
}

#[test]
fn a_snapshot_on_a_loaded_table_changes_only_what_differs_and_survives_hand_edits() {
    let r = Routed::new();
    let _l = listeners(&r);
    let probe = Probe { r: &r };
    let mut e = Engine::new(TableSpec::new(Mode::Forward), EngineOptions::default());
    let p = |rev| {
        policy(
            &r,
            true,
            vec![rule(10, NetworkProtocol::Tcp, Some(22), &[])],
            rev,
        )
    };
    apply(
        &r,
        &mut e,
        SyncResponse::Snapshot {
            revision: 1,
            servers: vec![p(1)],
        },
    )
    .unwrap();
    let out = apply(
        &r,
        &mut e,
        SyncResponse::Snapshot {
            revision: 2,
            servers: vec![p(2)],
        },
    )
    .unwrap();
    assert_eq!(out.mode, ApplyMode::Unchanged);
    // Someone removes an element by hand; the next delta that touches it is
    // refused by the kernel and the engine replaces the table instead.
    r.gateway.exec_ok(&[
        "nft",
        "delete",
        "element",
        "inet",
        "portwall_edge",
        "exact_v4",
        "{ 203.0.113.10 . tcp . 22 }",
    ]);
    assert_eq!(probe.tcp(22), (Seen::Timeout, Seen::Open));
    let out = apply(
        &r,
        &mut e,
        SyncResponse::Delta {
            from: 2,
            revision: 3,
            changed: vec![policy(
                &r,
                true,
                vec![rule(11, NetworkProtocol::Tcp, Some(80), &[])],
                3,
            )],
            removed: vec![],
        },
    )
    .unwrap();
    assert_eq!(out.mode, ApplyMode::Replace);
    assert_eq!(probe.tcp(80), OPEN);
    assert_eq!(probe.tcp(22), FILTERED);
}

#[test]
fn icmp_and_any_protocol_rules() {
    let r = Routed::new();
    let _l = listeners(&r);
    let probe = Probe { r: &r };
    let mut e = Engine::new(TableSpec::new(Mode::Forward), EngineOptions::default());
    let ping = |r: &Routed, v6: bool| {
        let dst: IpAddr = if v6 {
            r.server_addr.v6.parse().unwrap()
        } else {
            r.server_addr.v4.parse().unwrap()
        };
        r.client.run(move || echo(dst, Duration::from_millis(500)))
    };
    apply(
        &r,
        &mut e,
        SyncResponse::Snapshot {
            revision: 1,
            servers: vec![policy(&r, true, vec![], 1)],
        },
    )
    .unwrap();
    assert!(!ping(&r, false) && !ping(&r, true));
    apply(
        &r,
        &mut e,
        SyncResponse::Delta {
            from: 1,
            revision: 2,
            changed: vec![policy(
                &r,
                true,
                vec![rule(1, NetworkProtocol::Icmp, None, &[])],
                2,
            )],
            removed: vec![],
        },
    )
    .unwrap();
    assert!(ping(&r, false) && ping(&r, true));
    assert_eq!(probe.tcp(22), FILTERED);
    // any, no port: everything from that network.
    apply(
        &r,
        &mut e,
        SyncResponse::Delta {
            from: 2,
            revision: 3,
            changed: vec![policy(
                &r,
                true,
                vec![rule(2, NetworkProtocol::Any, None, &["198.51.100.0/24"])],
                3,
            )],
            removed: vec![],
        },
    )
    .unwrap();
    assert_eq!(probe.tcp(22), (Seen::Open, Seen::Timeout));
    assert_eq!(probe.udp(53), Seen::Open);
    assert!(ping(&r, false) && !ping(&r, true));
}

#[test]
fn restart_from_disk_before_the_panel_is_reachable() {
    let r = Routed::new();
    let _l = listeners(&r);
    let probe = Probe { r: &r };
    let dir = tempfile::tempdir().unwrap();
    let servers = vec![policy(
        &r,
        true,
        vec![rule(10, NetworkProtocol::Tcp, Some(22), &[])],
        5,
    )];
    edge::store::save_policy(
        dir.path(),
        "z1",
        Mode::Forward,
        "portwall_edge",
        5,
        &servers,
    )
    .unwrap();
    assert_eq!(probe.tcp(80), OPEN);
    // Nothing listens on 127.0.0.1:9 in the gateway: the panel is unreachable.
    let mut cfg = AgentConfig::new(
        "http://127.0.0.1:9",
        "t",
        "z1",
        TableSpec::new(Mode::Forward),
        dir.path().to_path_buf(),
    );
    cfg.backoff_initial = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(200);
    let note = r.gateway.run(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let h = agent::start(cfg).await.unwrap();
            let restored = h.restored.clone();
            assert!(matches!(restored, Some(Ok(_))), "{restored:?}");
            assert_eq!(h.policy.borrow().revision, 5);
            // Let it fail to reach the panel a few times.
            tokio::time::sleep(Duration::from_millis(600)).await;
            let note = edge::store::load_note(dir.path());
            h.stop().await;
            note
        })
    });
    let note = note.expect("the agent writes its note");
    assert!(!note.panel_reachable);
    assert!(note
        .last_error
        .unwrap_or_default()
        .contains("cannot be reached"));
    // Enforcing what was saved, although the agent stopped and never reached a panel.
    assert_eq!(probe.tcp(22), OPEN);
    assert_eq!(probe.tcp(80), FILTERED);
    let st = r
        .gateway
        .run(|| edge::status::collect(dir.path(), None))
        .unwrap();
    assert!(st.loaded && st.drift.is_empty(), "{:?}", st.drift);
    assert_eq!((st.revision, st.enforced, st.rules), (Some(5), 1, 1));
    assert!(
        st.server_rows[0].dropped_packets >= 2,
        "{:?}",
        st.server_rows
    );
}

#[test]
fn bridge_mode_filters_on_a_hypervisor_bridge() {
    // client — [bridge host: br0 with two ports] — server, one subnet.
    let client = Netns::new();
    let hv = Netns::new();
    let server = Netns::new();
    let veth = |a: &Netns, b: &Netns, an: &str, bn: &str| {
        let (ta, tb) = (
            format!("pwe{}a", std::process::id() % 10000),
            format!("pwe{}b", std::process::id() % 10000),
        );
        std::process::Command::new("ip")
            .args([
                "link",
                "add",
                &ta,
                "netns",
                a.name(),
                "type",
                "veth",
                "peer",
                "name",
                &tb,
                "netns",
                b.name(),
            ])
            .status()
            .unwrap();
        a.ip(&["link", "set", &ta, "name", an]).unwrap();
        b.ip(&["link", "set", &tb, "name", bn]).unwrap();
    };
    veth(&client, &hv, "eth0", "p1");
    veth(&server, &hv, "eth0", "p2");
    hv.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
    for p in ["p1", "p2"] {
        hv.ip(&["link", "set", p, "master", "br0", "up"]).unwrap();
    }
    hv.ip(&["link", "set", "br0", "up"]).unwrap();
    for (ns, v4, v6) in [
        (&client, "198.51.100.20/24", "2001:db8::20/64"),
        (&server, "198.51.100.10/24", "2001:db8::10/64"),
    ] {
        ns.ip(&["addr", "add", v4, "dev", "eth0"]).unwrap();
        ns.ip(&["addr", "add", v6, "dev", "eth0", "nodad"]).unwrap();
        ns.ip(&["link", "set", "eth0", "up"]).unwrap();
    }
    let _l = Listeners::start(
        &server,
        &[
            "198.51.100.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ],
        &[22, 80],
    );
    let try_tcp = |dst: &str, port: u16| {
        let dst: IpAddr = dst.parse().unwrap();
        let src: IpAddr = if dst.is_ipv4() {
            "198.51.100.20".parse().unwrap()
        } else {
            "2001:db8::20".parse().unwrap()
        };
        client.run(move || {
            tcp(
                SocketAddr::new(src, 0),
                SocketAddr::new(dst, port),
                Duration::from_millis(1500),
            )
        })
    };
    // Wait for the bridge ports to forward (STP is off; carrier may lag).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while try_tcp("198.51.100.10", 80) != Seen::Open {
        assert!(
            std::time::Instant::now() < deadline,
            "the bridge never forwarded"
        );
    }
    let p = ServerPolicy {
        server_id: 9,
        name: "vm".into(),
        addresses: vec![
            "198.51.100.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ],
        revision: 1,
        enforced: true,
        rules: vec![rule(1, NetworkProtocol::Tcp, Some(22), &[])],
    };
    let snapshot = SyncResponse::Snapshot {
        revision: 1,
        servers: vec![p],
    };
    let mut bridge = Engine::new(TableSpec::new(Mode::Bridge), EngineOptions::default());
    let mode = match hv.run(|| bridge.apply(&snapshot)) {
        Ok(out) => {
            assert!(out.verified);
            Mode::Bridge
        }
        // A kernel without bridge conntrack (this VM's): the error says what to
        // do instead, nothing was loaded, and forward mode with br_netfilter
        // filters the bridge.
        Err(edge::EdgeError::NoBridgeConntrack(_)) => {
            assert_eq!(try_tcp("198.51.100.10", 80), Seen::Open);
            hv.sysctl("net.bridge.bridge-nf-call-iptables", "1")
                .unwrap();
            hv.sysctl("net.bridge.bridge-nf-call-ip6tables", "1")
                .unwrap();
            let mut fwd = Engine::new(TableSpec::new(Mode::Forward), EngineOptions::default());
            hv.run(|| fwd.apply(&snapshot)).unwrap();
            Mode::Forward
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(try_tcp("198.51.100.10", 22), Seen::Open, "{mode:?}");
    assert_eq!(try_tcp("2001:db8::10", 22), Seen::Open, "{mode:?}");
    assert_eq!(try_tcp("198.51.100.10", 80), Seen::Timeout, "{mode:?}");
    assert_eq!(try_tcp("2001:db8::10", 80), Seen::Timeout, "{mode:?}");
    let kernel = hv
        .run(|| engine::read_kernel(&TableSpec::new(mode)))
        .unwrap()
        .unwrap();
    assert!(
        kernel
            .elements
            .iter()
            .any(|k| k.set == SetId::EnforcedV4 && k.packets > 0),
        "{mode:?}"
    );
}
