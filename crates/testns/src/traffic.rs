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
