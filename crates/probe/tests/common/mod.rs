//! A server namespace with listeners, drop rules and reject rules, a client namespace
//! to probe it from, and nmap's opinion for comparison.

#![allow(dead_code)]

use probe::{PortResult, PortState, Protocol};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use testns::{Netns, Pair};

pub const BANNER: &str = "SSH-2.0-OpenSSH_9.2p1 portwall-test";

/// Opens `port` for TCP on both families, answering every connection with `banner`
/// (or keeping it open silently, like an HTTP server waiting for a request).
pub fn tcp_listen(ns: &Netns, port: u16, banner: Option<&'static str>) {
    let l: TcpListener = ns.run(|| TcpListener::bind(("::", port)).expect("bind TCP listener"));
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        for mut s in l.incoming().flatten() {
            if let Some(b) = banner {
                let _ = s.write_all(format!("{b}\r\n").as_bytes());
            }
            keep.push(s);
            if keep.len() > 64 {
                keep.remove(0);
            }
        }
    });
}

/// Opens `port` for UDP on both families. `echo`: answer every datagram (a DNS or
/// NTP server answers its query); otherwise read nothing, never answer.
pub fn udp_listen(ns: &Netns, port: u16, echo: bool) {
    let s: UdpSocket = ns.run(|| UdpSocket::bind(("::", port)).expect("bind UDP socket"));
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        loop {
            if !echo {
                // Keep the socket bound, read nothing.
                std::thread::sleep(Duration::from_secs(3600));
                continue;
            }
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                let reply = if n == 0 { &b"pong"[..] } else { &buf[..n] };
                let _ = s.send_to(reply, from);
            }
        }
    });
}

/// Puts back Linux's default ICMP error rate limits in `ns` (testns lifts them so that
/// other tests get every refusal at once): after a burst of 6, about one error per
/// second per peer over IPv4, one per 25 ms over IPv6 (a /64 route), 1000/s in all.
/// This is what a real server does to a UDP probe.
pub fn linux_icmp_limits(ns: &Netns) {
    for (k, v) in [
        ("net.ipv4.icmp_ratelimit", "1000"),
        ("net.ipv6.icmp.ratelimit", "100"),
        // Linux's default masks: which ICMP types the limits apply to
        // (testns clears them in every test namespace).
        ("net.ipv4.icmp_ratemask", "6168"),
        ("net.ipv6.icmp.ratemask", "0-1,3-127"),
        ("net.ipv4.icmp_msgs_burst", "50"),
        ("net.ipv4.icmp_msgs_per_sec", "1000"),
    ] {
        ns.sysctl(k, v)
            .unwrap_or_else(|e| panic!("sysctl {k}={v}: {e}"));
    }
}

static RULESET: AtomicU32 = AtomicU32::new(0);

/// Loads `ruleset` (nft syntax) into `ns`, and only there.
pub fn nft(ns: &Netns, ruleset: &str) {
    let path = std::env::temp_dir().join(format!(
        "probe-test-{}-{}.nft",
        std::process::id(),
        RULESET.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, ruleset).unwrap();
    ns.exec_ok(&["nft", "-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
}

/// The runtime the CLI uses: multi-threaded, 2 workers. Build it inside the client
/// namespace so its threads (and sockets) live there.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// nmap's verdict per port: `nmap -n -Pn -sT|-sU -p PORTS -oX - ADDR`, run in `ns`.
pub fn nmap(
    ns: &Netns,
    addr: IpAddr,
    protocol: Protocol,
    ports: &str,
    extra: &[&str],
) -> BTreeMap<u16, String> {
    let mut argv = vec![
        "nmap",
        "-n",
        "-Pn",
        if protocol == Protocol::Tcp {
            "-sT"
        } else {
            "-sU"
        },
    ];
    if addr.is_ipv6() {
        argv.push("-6");
    }
    argv.extend_from_slice(extra);
    let a = addr.to_string();
    argv.extend_from_slice(&["-p", ports, "-oX", "-", &a]);
    let xml = ns.exec_ok(&argv);
    parse_nmap_xml(&xml, protocol)
}

/// Ports and states from nmap's XML output: the `<port>` elements, and the ports
/// nmap folds into `<extraports>` (listed by range in its `<extrareasons>`).
pub fn parse_nmap_xml(xml: &str, protocol: Protocol) -> BTreeMap<u16, String> {
    // The value of attribute `name` in the first tag of `s`, which starts inside a
    // tag (just after `<tagname `).
    fn attr<'a>(s: &'a str, name: &str) -> Option<&'a str> {
        let tag = &s[..s.find('>')?];
        let key = format!("{name}=\"");
        let i = tag
            .split(' ')
            .find_map(|kv| kv.strip_prefix(key.as_str()))?;
        i.strip_suffix('"').or_else(|| i.split('"').next())
    }
    let mut out = BTreeMap::new();
    for chunk in xml.split("<extraports ").skip(1) {
        let chunk = &chunk[..chunk.find("</extraports>").unwrap_or(chunk.len())];
        let state = attr(chunk, "state").expect("extraports state");
        for reasons in chunk.split("<extrareasons ").skip(1) {
            if attr(reasons, "proto") != Some(protocol.as_str()) {
                continue;
            }
            let ports: probe::PortList = attr(reasons, "ports")
                .expect("extrareasons ports")
                .parse()
                .unwrap();
            for p in ports.iter() {
                out.insert(p, state.to_string());
            }
        }
    }
    let tag = format!("<port protocol=\"{}\" ", protocol.as_str());
    for chunk in xml.split(&tag).skip(1) {
        let port: u16 = attr(chunk, "portid").unwrap().parse().unwrap();
        let state = chunk
            .split("<state ")
            .nth(1)
            .and_then(|st| attr(st, "state").map(str::to_string));
        out.insert(port, state.expect("port state"));
    }
    out
}

/// Our verdicts for one address, as nmap spells them.
pub fn ours(results: &[PortResult], addr: IpAddr) -> BTreeMap<u16, String> {
    results
        .iter()
        .filter(|r| r.address == addr)
        .map(|r| (r.port, r.state.as_str().to_string()))
        .collect()
}

pub fn state_of(results: &[PortResult], addr: IpAddr, port: u16) -> &PortResult {
    results
        .iter()
        .find(|r| r.address == addr && r.port == port)
        .unwrap_or_else(|| panic!("no result for {addr} port {port}"))
}

pub fn addrs(pair: &Pair) -> [IpAddr; 2] {
    [
        pair.server_addr.v4.parse().unwrap(),
        pair.server_addr.v6.parse().unwrap(),
    ]
}

pub fn expect_states(
    results: &[PortResult],
    addr: IpAddr,
    want: &[(u16, PortState, probe::Reason)],
) {
    let mut wrong = Vec::new();
    for &(port, state, reason) in want {
        let r = state_of(results, addr, port);
        if r.state != state || r.reason != reason {
            wrong.push(format!(
                "{addr} {port}: got {} ({}), want {state} ({reason})",
                r.state, r.reason
            ));
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}
