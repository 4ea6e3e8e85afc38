//! UFW's default accepts (issue 18): ping, DHCP client replies and multicast
//! discovery pass before any user rule, as under UFW's before.rules, each
//! counted in `status --verbose` and each turned off by `portwall builtin
//! NAME off`; on both backends, with real packets between namespaces this
//! test creates, and with `model::evaluate` giving the same verdicts.

mod common;
use common::portwall;
use model::builtins::Switch;
use model::{evaluate, ConnState, DecidedBy, Decision, Direction, Packet, PacketProtocol};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use testns::traffic;
use testns::{Netns, Pair};

/// A packet that reaches the server without a reply.
const QUIET: Duration = Duration::from_millis(800);
/// Long enough for a packet the firewall passes on a loaded machine.
const ANSWERED: Duration = Duration::from_secs(5);

fn ifindex(ns: &Netns) -> u32 {
    let line = ns.exec_ok(&["ip", "-o", "link", "show", "eth0"]);
    line.split(':').next().unwrap().trim().parse().unwrap()
}

/// One kind of traffic a built-in accepts.
struct Probe {
    switch: Switch,
    what: &'static str,
    packet: Packet,
}

fn probes(pair: &Pair) -> Vec<Probe> {
    let c4: IpAddr = pair.client_addr.v4.parse().unwrap();
    let s4: IpAddr = pair.server_addr.v4.parse().unwrap();
    let c6: IpAddr = pair.client_addr.v6.parse().unwrap();
    let s6: IpAddr = pair.server_addr.v6.parse().unwrap();
    let packet = |protocol, source, destination, sport, dport, icmp_type| Packet {
        direction: Direction::In,
        in_interface: Some("eth0".into()),
        out_interface: None,
        protocol,
        source,
        destination,
        source_port: sport,
        destination_port: dport,
        icmp_type,
        hop_limit: None,
        state: ConnState::New,
    };
    let udp = |src, dst: &str, sport, dport| {
        packet(
            PacketProtocol::Udp,
            src,
            dst.parse().unwrap(),
            Some(sport),
            Some(dport),
            None,
        )
    };
    vec![
        Probe {
            switch: Switch::Ping,
            what: "ping",
            packet: packet(PacketProtocol::Icmp, c4, s4, None, None, Some(8)),
        },
        Probe {
            switch: Switch::Ping,
            what: "ping6",
            packet: packet(PacketProtocol::Icmpv6, c6, s6, None, None, Some(128)),
        },
        Probe {
            switch: Switch::Dhcp,
            what: "DHCP reply",
            packet: udp(c4, &s4.to_string(), 67, 68),
        },
        Probe {
            switch: Switch::Mdns,
            what: "mDNS",
            packet: udp(c4, "224.0.0.251", 5353, 5353),
        },
        Probe {
            switch: Switch::Mdns,
            what: "mDNS over IPv6",
            packet: udp(c6, "ff02::fb", 5353, 5353),
        },
        Probe {
            switch: Switch::Upnp,
            what: "SSDP",
            packet: udp(c4, "239.255.255.250", 41900, 1900),
        },
        Probe {
            switch: Switch::Upnp,
            what: "SSDP over IPv6",
            packet: udp(c6, "ff02::f", 41900, 1900),
        },
    ]
}

/// Sends the probe's packet from the client; whether the server got it
/// (for ping: whether the reply came back).
fn arrives(pair: &Pair, p: &Probe, timeout: Duration) -> bool {
    let k = &p.packet;
    if matches!(k.protocol, PacketProtocol::Icmp | PacketProtocol::Icmpv6) {
        return pair
            .client
            .run(|| traffic::ping(k.source, k.destination, timeout));
    }
    let server_local: IpAddr = match k.destination {
        IpAddr::V4(_) => pair.server_addr.v4.parse().unwrap(),
        IpAddr::V6(_) => pair.server_addr.v6.parse().unwrap(),
    };
    let dport = k.destination_port.unwrap();
    let rx = traffic::datagram_receiver(
        &pair.server,
        k.destination,
        dport,
        ifindex(&pair.server),
        server_local,
    );
    let out_if = ifindex(&pair.client);
    pair.client.run(|| {
        traffic::datagram_arrives(
            &rx,
            SocketAddr::new(k.source, k.source_port.unwrap()),
            SocketAddr::new(k.destination, dport),
            out_if,
            timeout,
        )
    })
}

fn ruleset(dir: &std::path::Path) -> model::Ruleset {
    let text = std::fs::read_to_string(dir.join("rules.toml")).unwrap();
    model::HostConfig::from_toml(&text, &model::Services::builtin())
        .unwrap()
        .ruleset
}

#[test]
fn ufw_defaults_pass_before_the_rules_and_each_switch_turns_its_own_off() {
    for backend in ["nft", "iptables"] {
        let pair = Pair::new();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        common::ok_on(&pair.server, d, backend, &["enable"]);
        // Under UFW a rule denying the client does not stop its ping or its
        // discovery traffic: the built-ins come first.
        common::ok_on(
            &pair.server,
            d,
            backend,
            &["deny", "from", &pair.client_addr.v4],
        );
        common::ok_on(
            &pair.server,
            d,
            backend,
            &["deny", "from", &pair.client_addr.v6],
        );
        let probes = probes(&pair);
        let rs = ruleset(d);
        for p in &probes {
            let v = evaluate(&rs, &p.packet);
            assert_eq!(
                (v.decision, v.by),
                (
                    Decision::Accept,
                    DecidedBy::Builtin {
                        builtin: p.switch.into()
                    }
                ),
                "{backend}: {}",
                p.what
            );
            assert!(
                arrives(&pair, p, ANSWERED),
                "{backend}: {} is accepted by default",
                p.what
            );
        }
        let status = common::ok_on(&pair.server, d, backend, &["status", "--verbose", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        for name in ["ping", "dhcp", "mdns", "upnp"] {
            let packets = v["builtins"][name]["packets"].as_u64();
            assert!(
                packets.is_some_and(|n| n > 0),
                "{backend}: {name} counted: {v}"
            );
        }

        for switch in [Switch::Ping, Switch::Dhcp, Switch::Mdns, Switch::Upnp] {
            let out = common::ok_on(
                &pair.server,
                d,
                backend,
                &["builtin", switch.as_str(), "off"],
            );
            assert!(
                out.contains(&format!("Built-in {switch} off (was on)")),
                "{out}"
            );
            let rs = ruleset(d);
            for p in &probes {
                let on = rs.builtins.get(p.switch);
                let v = evaluate(&rs, &p.packet);
                let expected = if on { Decision::Accept } else { Decision::Drop };
                assert_eq!(
                    v.decision, expected,
                    "{backend}: {} with {switch} off",
                    p.what
                );
                if !on && p.switch != switch {
                    continue; // off already, and seen not to arrive then
                }
                let timeout = if on { ANSWERED } else { QUIET };
                assert_eq!(
                    arrives(&pair, p, timeout),
                    on,
                    "{backend}: {} with {switch} off",
                    p.what
                );
            }
        }
        // Back on: the switch is a setting, not a one-way door.
        common::ok_on(&pair.server, d, backend, &["builtin", "ping", "on"]);
        assert!(
            arrives(&pair, &probes[0], ANSWERED),
            "{backend}: ping on again"
        );
        common::ok_on(&pair.server, d, backend, &["disable"]);
    }
}

#[test]
fn builtin_lists_the_switches_and_refuses_what_it_does_not_know() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = portwall(&ns, d, &["builtin", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v["builtins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, Switch::ALL.map(|s| s.as_str()));
    assert!(v["builtins"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["on"] == true));

    let o = portwall(&ns, d, &["builtin", "pong", "off"]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("'pong' is not a built-in: ping, icmp-errors"),
        "{e}"
    );
    let o = portwall(&ns, d, &["builtin", "ping", "maybe"]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("'maybe' is not a state of a built-in: on, off"),
        "{e}"
    );
    let o = portwall(&ns, d, &["builtin", "ping"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a name without a state is refused"
    );
    // Nothing was saved by the refused commands.
    assert!(!d.join("rules.toml").exists() || ruleset(d).builtins.ping);
}
