//! Real traffic for tests: listeners that accept everything, and probes that tell
//! what a firewall did to one connection attempt (accepted, refused, or dropped).

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::Netns;

/// What happened to a connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Seen {
    /// Connected (TCP) or answered (UDP).
    Open,
    /// TCP reset or ICMP unreachable.
    Refused,
    /// No answer within the timeout (one try: the differential tests confirm
    /// it with a second before they call it a drop).
    Timeout,
    /// This host's own output rules stopped it before it left: `send()` failed
    /// with EPERM, which is what a local application sees when an output rule
    /// drops or rejects a datagram.
    Blocked,
}

/// TCP and UDP listeners for a set of ports inside a namespace; TCP accepts and
/// closes, UDP echoes. TCP listens on `[::]` (dual-stack); UDP binds each given
/// address, so a reply leaves from the address the request went to. Stopped when
/// dropped.
pub struct Listeners {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Listeners {
    pub fn start(ns: &Netns, addrs: &[IpAddr], ports: &[u16]) -> Listeners {
        let stop = Arc::new(AtomicBool::new(false));
        let ports = ports.to_vec();
        let addrs = addrs.to_vec();
        let stop2 = stop.clone();
        let threads = ns.run(move || {
            let mut threads = Vec::new();
            for &p in &ports {
                let tcp =
                    TcpListener::bind(("::", p)).unwrap_or_else(|e| panic!("listen tcp {p}: {e}"));
                tcp.set_nonblocking(true).expect("nonblocking");
                let s = stop2.clone();
                threads.push(std::thread::spawn(move || {
                    while !s.load(Ordering::Relaxed) {
                        match tcp.accept() {
                            Ok((c, _)) => drop(c),
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                }));
                for &a in &addrs {
                    let udp =
                        UdpSocket::bind((a, p)).unwrap_or_else(|e| panic!("bind udp {a}:{p}: {e}"));
                    udp.set_read_timeout(Some(Duration::from_millis(50)))
                        .expect("timeout");
                    let s = stop2.clone();
                    threads.push(std::thread::spawn(move || {
                        let mut buf = [0u8; 1500];
                        while !s.load(Ordering::Relaxed) {
                            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                                let _ = udp.send_to(&buf[..n], from);
                            }
                        }
                    }));
                }
            }
            threads
        });
        Listeners { stop, threads }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn domain(ip: IpAddr) -> Domain {
    if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

/// One TCP connection attempt from `src` (address and port) to `dst`. Call it on
/// a thread inside the sending namespace.
pub fn tcp(src: SocketAddr, dst: SocketAddr, timeout: Duration) -> Seen {
    let s = Socket::new(domain(dst.ip()), Type::STREAM, Some(Protocol::TCP)).expect("socket");
    s.set_reuse_address(true).ok();
    s.bind(&SockAddr::from(src))
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    match s.connect_timeout(&SockAddr::from(dst), timeout) {
        Ok(()) => Seen::Open,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Seen::Refused,
        Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
            Seen::Timeout
        }
        // ICMP unreachable (reject of non-TCP style) also counts as refused.
        Err(e) if matches!(e.raw_os_error(), Some(113) | Some(101) | Some(13)) => Seen::Refused,
        // EPERM: this host's own output rules stopped the SYN.
        Err(e) if e.raw_os_error() == Some(1) => Seen::Blocked,
        Err(e) => panic!("connect {src} -> {dst}: {e}"),
    }
}

/// One UDP exchange from `src` to `dst`: a datagram, then wait for the echo.
pub fn udp(src: SocketAddr, dst: SocketAddr, timeout: Duration) -> Seen {
    let s = Socket::new(domain(dst.ip()), Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    s.set_reuse_address(true).ok();
    s.bind(&SockAddr::from(src))
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    s.connect(&SockAddr::from(dst)).expect("connect udp");
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(timeout)).expect("timeout");
    if let Err(e) = s.send(b"portwall-test") {
        if e.kind() == ErrorKind::ConnectionRefused {
            return Seen::Refused;
        }
        // EPERM: this host's own output rules dropped or rejected the datagram
        // (the local stack says so at once); it never left.
        if e.raw_os_error() == Some(1) {
            return Seen::Blocked;
        }
        panic!("send {src} -> {dst}: {e}");
    }
    let mut buf = [0u8; 64];
    match s.recv(&mut buf) {
        Ok(_) => Seen::Open,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Seen::Refused,
        Err(e) if matches!(e.raw_os_error(), Some(113) | Some(101) | Some(13)) => Seen::Refused,
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
            Seen::Timeout
        }
        Err(e) => panic!("recv {src} -> {dst}: {e}"),
    }
}

/// One ICMP (or ICMPv6) echo request from `src` to `dst` through a raw socket,
/// as `ping -c 1` sends it: whether the echo reply came within `timeout`.
/// Call it inside the sending namespace.
pub fn ping(src: IpAddr, dst: IpAddr, timeout: Duration) -> bool {
    let (proto, request, reply) = match dst {
        IpAddr::V4(_) => (Protocol::ICMPV4, 8u8, 0u8),
        IpAddr::V6(_) => (Protocol::ICMPV6, 128, 129),
    };
    let s = Socket::new(domain(dst), Type::RAW, Some(proto)).expect("raw socket");
    s.bind(&SockAddr::from(SocketAddr::new(src, 0)))
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    // An identifier of this process and call, so that other tests' replies
    // (a raw socket sees every ICMP packet) are not taken for this one's.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let id = (std::process::id() as u16) ^ NEXT.fetch_add(1, Ordering::Relaxed).rotate_left(8);
    let mut msg = vec![request, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1];
    msg.extend_from_slice(b"portwall-ping");
    if dst.is_ipv4() {
        // ICMPv6's checksum the kernel fills in; ICMP's is the sender's.
        let sum = internet_checksum(&msg);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    s.send_to(&msg, &SockAddr::from(SocketAddr::new(dst, 0)))
        .unwrap_or_else(|e| panic!("send echo request {src} -> {dst}: {e}"));
    let s: UdpSocket = s.into();
    // A raw IPv4 socket gets the IP header too; an ICMPv6 one does not.
    receive_until(&s, timeout, &format!("echo reply from {dst}"), |packet| {
        let icmp = if dst.is_ipv4() {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            &packet[ihl.min(packet.len())..]
        } else {
            packet
        };
        icmp.len() >= 8 && icmp[0] == reply && u16::from_be_bytes([icmp[4], icmp[5]]) == id
    })
}

/// Receives on `s` until a datagram `wanted` takes comes (true) or `timeout`
/// passes (false); other datagrams are skipped.
fn receive_until(
    s: &UdpSocket,
    timeout: Duration,
    what: &str,
    wanted: impl Fn(&[u8]) -> bool,
) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.recv(&mut buf) {
            Ok(n) if wanted(&buf[..n]) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                return false
            }
            Err(e) => panic!("receiving the {what}: {e}"),
        }
    }
}

/// RFC 1071's checksum.
fn internet_checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A UDP socket in `ns` bound to `port` on every address of `dst`'s family,
/// joined to `dst`'s group on interface `ifindex` when `dst` is multicast: the
/// receiving end of [`datagram_arrives`].
pub fn datagram_receiver(
    ns: &Netns,
    dst: IpAddr,
    port: u16,
    ifindex: u32,
    local: IpAddr,
) -> UdpSocket {
    ns.run(|| {
        let any: IpAddr = match dst {
            IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        };
        let s = Socket::new(domain(dst), Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.set_reuse_address(true).ok();
        if dst.is_ipv6() {
            s.set_only_v6(true).ok();
        }
        s.bind(&SockAddr::from(SocketAddr::new(any, port)))
            .unwrap_or_else(|e| panic!("bind port {port}: {e}"));
        match (dst, local) {
            (IpAddr::V4(g), IpAddr::V4(l)) if g.is_multicast() => {
                s.join_multicast_v4(&g, &l).expect("join group")
            }
            (IpAddr::V6(g), _) if g.is_multicast() => {
                s.join_multicast_v6(&g, ifindex).expect("join group")
            }
            _ => {}
        }
        s.into()
    })
}

/// Sends one datagram from `src` (in the calling namespace) to `dst` (a
/// multicast group goes out of interface `ifindex`, or the one of address
/// `src` for IPv4) and says whether `receiver` got it within `timeout`.
pub fn datagram_arrives(
    receiver: &UdpSocket,
    src: SocketAddr,
    dst: SocketAddr,
    ifindex: u32,
    timeout: Duration,
) -> bool {
    let s = Socket::new(domain(dst.ip()), Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    s.set_reuse_address(true).ok();
    s.bind(&SockAddr::from(src))
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    match (dst.ip(), src.ip()) {
        (IpAddr::V4(g), IpAddr::V4(l)) if g.is_multicast() => {
            s.set_multicast_if_v4(&l).expect("multicast interface")
        }
        (IpAddr::V6(g), _) if g.is_multicast() => {
            s.set_multicast_if_v6(ifindex).expect("multicast interface")
        }
        _ => {}
    }
    let token = format!("portwall-{}-{}", src, dst);
    s.send_to(token.as_bytes(), &SockAddr::from(dst))
        .unwrap_or_else(|e| panic!("send {src} -> {dst}: {e}"));
    receive_until(receiver, timeout, &format!("datagram to {dst}"), |d| {
        d == token.as_bytes()
    })
}
