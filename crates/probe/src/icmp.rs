//! ICMP errors, read from a socket's error queue (`IP_RECVERR` / `IPV6_RECVERR`), and
//! what they say about a port.
//!
//! The kernel reports an ICMP error for a socket as a bare errno (`ECONNREFUSED`,
//! `EHOSTUNREACH`, ...) that does not tell "administratively prohibited" (a reject
//! rule) from "host unreachable" (a router gave up). With `IP_RECVERR` set, it also
//! queues the ICMP type, code and sender, which is what we classify.

use crate::{PortState, Reason};
use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage};
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};

/// One ICMP error the kernel queued for a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IcmpError {
    pub v6: bool,
    pub icmp_type: u8,
    pub code: u8,
    /// Who sent the ICMP message.
    pub offender: Option<IpAddr>,
    /// The destination of the datagram or segment that caused it.
    pub original: Option<SocketAddr>,
    /// The start of that datagram's payload (UDP), as quoted by the ICMP message.
    pub quoted: [u8; 16],
    pub quoted_len: usize,
}

/// `SO_EE_ORIGIN_ICMP` and `SO_EE_ORIGIN_ICMP6` from `<linux/errqueue.h>`.
const ORIGIN_ICMP: u8 = 2;
const ORIGIN_ICMP6: u8 = 3;

/// Asks the kernel to queue ICMP errors with their details on this socket.
pub(crate) fn enable_recverr<F: AsFd>(fd: &F, v6: bool) -> std::io::Result<()> {
    let r = if v6 {
        socket::setsockopt(fd, sockopt::Ipv6RecvErr, &true)
    } else {
        socket::setsockopt(fd, sockopt::Ipv4RecvErr, &true)
    };
    r.map_err(std::io::Error::from)
}

/// Reads one entry of the error queue without blocking. `Ok(None)`: the queue is
/// empty. Entries that are not ICMP errors (local errors) are skipped.
pub(crate) fn read_error_queue<F: AsRawFd>(fd: &F) -> std::io::Result<Option<IcmpError>> {
    loop {
        let mut data = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut data)];
        let mut cmsg = nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in6);
        let msg = match socket::recvmsg::<SockaddrStorage>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let original = msg.address.as_ref().and_then(storage_to_socketaddr);
        let quoted_len = msg.bytes.min(16);
        let mut found = None;
        for c in msg.cmsgs().map_err(std::io::Error::from)? {
            match c {
                ControlMessageOwned::Ipv4RecvErr(ee, from) if ee.ee_origin == ORIGIN_ICMP => {
                    found = Some(IcmpError {
                        v6: false,
                        icmp_type: ee.ee_type,
                        code: ee.ee_code,
                        offender: from
                            .map(|s| IpAddr::V4(Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr)))),
                        original,
                        quoted: [0; 16],
                        quoted_len,
                    });
                }
                ControlMessageOwned::Ipv6RecvErr(ee, from) if ee.ee_origin == ORIGIN_ICMP6 => {
                    found = Some(IcmpError {
                        v6: true,
                        icmp_type: ee.ee_type,
                        code: ee.ee_code,
                        offender: from.map(|s| IpAddr::V6(Ipv6Addr::from(s.sin6_addr.s6_addr))),
                        original,
                        quoted: [0; 16],
                        quoted_len,
                    });
                }
                _ => {}
            }
        }
        if let Some(mut f) = found {
            f.quoted[..quoted_len].copy_from_slice(&data[..quoted_len]);
            return Ok(Some(f));
        }
    }
}

fn storage_to_socketaddr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::new(IpAddr::V4(v4.ip()), v4.port()));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::new(IpAddr::V6(v6.ip()), v6.port()))
}

/// What an ICMP error about a probe to `target` means, or `None` when it is no
/// verdict (e.g. "fragmentation needed": the probe goes on).
///
/// - port unreachable: closed (nothing listens, or a `reject` rule answered);
/// - administratively prohibited (and the other "prohibited" codes): closed, a reject
///   rule answered (nmap calls this "filtered"; we follow the definition "actively
///   refused");
/// - protocol unreachable: closed, the host does not speak the protocol;
/// - host or network unreachable sent by the target itself: closed, since a host
///   that answers is reachable and that answer is a reject rule's; sent by a router:
///   filtered, the host behind it may be down or the route cut, as nmap says;
/// - anything else (time exceeded, ...): filtered.
pub(crate) fn classify(e: &IcmpError, target: IpAddr) -> Option<(PortState, Reason)> {
    use PortState::*;
    let from_target = e.offender == Some(target);
    let unreach = |reason| Some((if from_target { Closed } else { Filtered }, reason));
    if !e.v6 {
        match (e.icmp_type, e.code) {
            (3, 3) => Some((Closed, Reason::PortUnreachable)),
            (3, 2) => Some((Closed, Reason::ProtocolUnreachable)),
            (3, 9 | 10 | 13 | 14 | 15) => Some((Closed, Reason::AdminProhibited)),
            (3, 0 | 6 | 8 | 11) => unreach(Reason::NetUnreachable),
            (3, 1 | 5 | 7 | 12) => unreach(Reason::HostUnreachable),
            (3, 4) => None,
            (11, _) => Some((Filtered, Reason::TimeExceeded)),
            _ => Some((Filtered, Reason::Unreachable)),
        }
    } else {
        match (e.icmp_type, e.code) {
            (1, 4) => Some((Closed, Reason::PortUnreachable)),
            (1, 1 | 5 | 6) => Some((Closed, Reason::AdminProhibited)),
            (1, 0) => unreach(Reason::NetUnreachable),
            (1, 2 | 3) => unreach(Reason::HostUnreachable),
            (2, _) => None,
            (3, _) => Some((Filtered, Reason::TimeExceeded)),
            (4, 1) => Some((Closed, Reason::ProtocolUnreachable)),
            _ => Some((Filtered, Reason::Unreachable)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(v6: bool, t: u8, c: u8, from: &str) -> IcmpError {
        IcmpError {
            v6,
            icmp_type: t,
            code: c,
            offender: Some(from.parse().unwrap()),
            original: None,
            quoted: [0; 16],
            quoted_len: 0,
        }
    }

    #[test]
    fn classification() {
        let tgt: IpAddr = "203.0.113.10".parse().unwrap();
        let router = "198.51.100.1";
        assert_eq!(
            classify(&e(false, 3, 3, router), tgt),
            Some((PortState::Closed, Reason::PortUnreachable))
        );
        assert_eq!(
            classify(&e(false, 3, 13, router), tgt),
            Some((PortState::Closed, Reason::AdminProhibited))
        );
        assert_eq!(
            classify(&e(false, 3, 1, router), tgt),
            Some((PortState::Filtered, Reason::HostUnreachable))
        );
        assert_eq!(
            classify(&e(false, 3, 1, "203.0.113.10"), tgt),
            Some((PortState::Closed, Reason::HostUnreachable))
        );
        assert_eq!(classify(&e(false, 3, 4, router), tgt), None);
        assert_eq!(
            classify(&e(false, 11, 0, router), tgt),
            Some((PortState::Filtered, Reason::TimeExceeded))
        );
        let tgt6: IpAddr = "2001:db8::10".parse().unwrap();
        assert_eq!(
            classify(&e(true, 1, 4, "2001:db8::10"), tgt6),
            Some((PortState::Closed, Reason::PortUnreachable))
        );
        assert_eq!(
            classify(&e(true, 1, 1, "2001:db8::1"), tgt6),
            Some((PortState::Closed, Reason::AdminProhibited))
        );
        assert_eq!(
            classify(&e(true, 1, 3, "2001:db8::1"), tgt6),
            Some((PortState::Filtered, Reason::HostUnreachable))
        );
        assert_eq!(classify(&e(true, 2, 0, "2001:db8::1"), tgt6), None);
    }
}
