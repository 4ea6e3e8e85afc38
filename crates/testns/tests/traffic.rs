//! The traffic helpers see what a firewall-free host does: everything open.

use std::net::SocketAddr;
use std::time::Duration;
use testns::traffic::{self, Listeners, Seen};
use testns::Pair;

#[test]
fn open_ports_are_open_and_closed_ports_refuse() {
    let pair = Pair::new();
    let _l = Listeners::start(
        &pair.server,
        &[
            "198.51.100.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ],
        &[8080],
    );
    let t = Duration::from_millis(500);
    for (src, dst) in [
        ("198.51.100.20:30001", "198.51.100.10:8080"),
        ("[2001:db8::20]:30002", "[2001:db8::10]:8080"),
    ] {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        let closed = SocketAddr::new(dst.ip(), 8081);
        let (a, b, c, d) = pair.client.run(|| {
            (
                traffic::tcp(src, dst, t),
                traffic::udp(SocketAddr::new(src.ip(), src.port() + 10), dst, t),
                traffic::tcp(SocketAddr::new(src.ip(), src.port() + 20), closed, t),
                traffic::udp(SocketAddr::new(src.ip(), src.port() + 30), closed, t),
            )
        });
        assert_eq!(
            (a, b, c, d),
            (Seen::Open, Seen::Open, Seen::Refused, Seen::Refused),
            "{src} -> {dst}"
        );
    }
}

/// The machine's own value of a sysctl (this test process runs in the
/// machine's namespace).
fn host_sysctl(key: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/")))
        .unwrap_or_else(|e| panic!("read {key}: {e}"))
        .trim()
        .to_string()
}

#[test]
fn icmp_rate_limits_are_lifted_in_test_namespaces_only() {
    let before: Vec<String> = testns::ICMP_UNLIMITED
        .iter()
        .map(|(k, _)| host_sysctl(k))
        .collect();
    let pair = Pair::new();
    for ((key, value), host) in testns::ICMP_UNLIMITED.iter().zip(&before) {
        let inside = pair.server.exec_ok(&["sysctl", "-n", key]);
        assert_eq!(inside.trim(), *value, "{key} inside the namespace");
        assert_eq!(
            host_sysctl(key),
            *host,
            "{key} of the machine changed: it is not per namespace"
        );
    }
    // A burst of datagrams to a closed port: every one is refused (with the
    // kernel's default limits, most would go unanswered).
    let t = Duration::from_millis(1500);
    for (base, dst) in [
        ("198.51.100.20", "198.51.100.10:9"),
        ("2001:db8::20", "[2001:db8::10]:9"),
    ] {
        let dst: SocketAddr = dst.parse().unwrap();
        let seen: Vec<Seen> = pair.client.run(|| {
            let threads: Vec<_> = (0..100u16)
                .map(|i| {
                    let src = SocketAddr::new(base.parse().unwrap(), 40000 + i);
                    std::thread::spawn(move || traffic::udp(src, dst, t))
                })
                .collect();
            threads.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let refused = seen.iter().filter(|s| **s == Seen::Refused).count();
        assert_eq!(refused, seen.len(), "{dst}: {seen:?}");
    }
}
