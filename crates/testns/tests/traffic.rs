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
