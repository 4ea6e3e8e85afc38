//! The kernel side: `inet_diag` dumps over a `NETLINK_SOCK_DIAG` socket.
//!
//! The request (`struct inet_diag_req_v2`) and the answers (`struct
//! inet_diag_msg` plus attributes) are the types of `netlink-packet-sock-diag`;
//! `netlink-packet-core` frames them and `netlink-sys` opens the socket. The
//! answers are read with `recv(MSG_TRUNC)` into one 64 KiB buffer reused for
//! every datagram (the kernel fills at most 32 KiB per dump datagram), so a
//! truncated datagram is detected instead of silently losing sockets. Each
//! answer is framed in place ([`NetlinkBuffer`]) and only its fixed header
//! ([`InetResponseHeader`]) is decoded: the attributes the kernel appends
//! are not used, and decoding them would allocate for every socket. Control
//! messages (`NLMSG_DONE`, `NLMSG_ERROR`) are decoded in full.

use crate::{Family, InspectError, Protocol, Socket, State};
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, Parseable, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_packet_sock_diag::{SockDiagMessage, SOCK_DIAG_BY_FAMILY};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use rustix::net::RecvFlags;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// Every TCP state `netstat -a` / `ss -a` shows (`TCP_ESTABLISHED` ..
/// `TCP_CLOSING`; asking for `SYN_RECV` makes the kernel include pending
/// connection requests). Bound-but-inactive sockets are left out, as netstat
/// leaves them out.
pub(crate) const ALL_TCP_STATES: u32 = 0x0ffe;
/// UDP sockets are either unconnected (`TCP_CLOSE`) or connected
/// (`TCP_ESTABLISHED`).
pub(crate) const ALL_UDP_STATES: u32 = (1 << 7) | (1 << 1);

/// Size of the receive buffer: more than the largest dump datagram.
const RECV_BUFFER: usize = 64 * 1024;

/// The `idiag_states` bitmask selecting `states` (bit N = kernel state N).
pub(crate) fn states_mask(states: &[State]) -> u32 {
    states
        .iter()
        .map(|s| match s {
            State::Established => 1 << 1,
            State::SynSent => 1 << 2,
            State::SynRecv => 1 << 3,
            State::FinWait1 => 1 << 4,
            State::FinWait2 => 1 << 5,
            State::TimeWait => 1 << 6,
            State::Close | State::Unconnected => 1 << 7,
            State::CloseWait => 1 << 8,
            State::LastAck => 1 << 9,
            State::Listen => 1 << 10,
            State::Closing => 1 << 11,
            State::NewSynRecv => 1 << 12,
            State::BoundInactive => 1 << 13,
            State::Unknown => 0,
        })
        .fold(0, |acc, bit| acc | bit)
}

/// One dump request: one protocol over one family, in some states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dump {
    protocol: Protocol,
    family: Family,
    states: u32,
}

impl Dump {
    pub(crate) fn new(protocol: Protocol, family: Family, states: u32) -> Dump {
        Dump {
            protocol,
            family,
            states,
        }
    }

    /// `tcp`, `tcp6`, `udp`, `udp6`: how errors name this dump.
    fn what(&self) -> &'static str {
        match (self.protocol, self.family) {
            (Protocol::Tcp, Family::V4) => "tcp",
            (Protocol::Tcp, Family::V6) => "tcp6",
            (Protocol::Udp, Family::V4) => "udp",
            (Protocol::Udp, Family::V6) => "udp6",
        }
    }

    /// The kernel module that answers this dump, for error messages.
    fn module(&self) -> &'static str {
        match self.protocol {
            Protocol::Tcp => "tcp_diag",
            Protocol::Udp => "udp_diag",
        }
    }

    fn request(&self, sequence: u32) -> NetlinkMessage<SockDiagMessage> {
        let (family, socket_id) = match self.family {
            Family::V4 => (AF_INET, SocketId::new_v4()),
            Family::V6 => (AF_INET6, SocketId::new_v6()),
        };
        let protocol = match self.protocol {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
        };
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = sequence;
        let mut message = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol,
                extensions: ExtensionFlags::empty(),
                states: StateFlags::from_bits_retain(self.states),
                socket_id,
            })
            .into(),
        );
        message.finalize();
        message
    }
}

/// Runs `dumps` one after the other on one netlink socket and returns the
/// sockets (without owners or user names), keeping only those whose local
/// port is `port` when given.
pub(crate) fn dump_all(dumps: &[Dump], port: Option<u16>) -> Result<Vec<Socket>, InspectError> {
    if dumps.is_empty() {
        return Ok(Vec::new());
    }
    let mut socket =
        netlink_sys::Socket::new(NETLINK_SOCK_DIAG).map_err(InspectError::NetlinkOpen)?;
    socket.bind_auto().map_err(InspectError::NetlinkOpen)?;
    socket
        .connect(&netlink_sys::SocketAddr::new(0, 0))
        .map_err(InspectError::NetlinkOpen)?;
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut out = Vec::new();
    for (n, dump) in dumps.iter().enumerate() {
        let sequence = n as u32 + 1;
        send(&socket, dump, sequence, &mut buf)?;
        receive(&socket, dump, sequence, port, &mut buf, &mut out)?;
    }
    Ok(out)
}

fn send(
    socket: &netlink_sys::Socket,
    dump: &Dump,
    sequence: u32,
    buf: &mut [u8],
) -> Result<(), InspectError> {
    let request = dump.request(sequence);
    let len = request.buffer_len();
    request.serialize(&mut buf[..len]);
    let sent = socket
        .send(&buf[..len], 0)
        .map_err(|error| InspectError::NetlinkSend {
            what: dump.what(),
            error,
        })?;
    if sent != len {
        return Err(InspectError::NetlinkSend {
            what: dump.what(),
            error: std::io::Error::other(format!("sent {sent} of {len} bytes")),
        });
    }
    Ok(())
}

/// Reads the answer to one dump until `NLMSG_DONE`.
fn receive(
    socket: &netlink_sys::Socket,
    dump: &Dump,
    sequence: u32,
    port: Option<u16>,
    buf: &mut [u8],
    out: &mut Vec<Socket>,
) -> Result<(), InspectError> {
    let what = dump.what();
    loop {
        let (_, len) = rustix::net::recv(socket, &mut *buf, RecvFlags::TRUNC).map_err(|e| {
            InspectError::NetlinkRecv {
                what,
                error: e.into(),
            }
        })?;
        if len > buf.len() {
            return Err(InspectError::NetlinkRecv {
                what,
                error: std::io::Error::other(format!(
                    "a {len}-byte datagram does not fit the {}-byte buffer",
                    buf.len()
                )),
            });
        }
        let mut offset = 0;
        while offset < len {
            let frame = NetlinkBuffer::new_checked(&buf[offset..len]).map_err(|e| {
                InspectError::Decode {
                    what,
                    detail: e.to_string(),
                }
            })?;
            // At least a header long: `new_checked` says so.
            let message_start = offset;
            offset += align4(frame.length() as usize);
            if frame.sequence_number() != sequence {
                // An answer to an earlier request (cannot happen on this
                // socket, which sends one request at a time): not ours.
                continue;
            }
            if frame.message_type() == SOCK_DIAG_BY_FAMILY {
                // One socket. Its fixed header (`struct inet_diag_msg`) is all
                // that is used, so the attributes after it are not decoded:
                // nothing is allocated per socket.
                let header = InetResponseHeader::parse(frame.payload()).map_err(|e| {
                    InspectError::Decode {
                        what,
                        detail: e.to_string(),
                    }
                })?;
                let s = to_socket(dump, &header)?;
                if !matches!(port, Some(p) if p != s.local.port()) {
                    out.push(s);
                }
                continue;
            }
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[message_start..len])
                .map_err(|e| InspectError::Decode {
                    what,
                    detail: e.to_string(),
                })?;
            match message.payload {
                NetlinkPayload::Done(done) => {
                    return if done.code < 0 {
                        Err(kernel_error(dump, -done.code))
                    } else {
                        Ok(())
                    };
                }
                NetlinkPayload::Error(error) => {
                    // An error message without a code is an acknowledgement.
                    if let Some(code) = error.code {
                        return Err(kernel_error(dump, -code.get()));
                    }
                }
                NetlinkPayload::Noop => {}
                NetlinkPayload::Overrun(_) => {
                    return Err(InspectError::NetlinkRecv {
                        what,
                        error: std::io::Error::other("the kernel reported a buffer overrun"),
                    })
                }
                other => {
                    return Err(InspectError::Decode {
                        what,
                        detail: format!("unexpected message {other:?}"),
                    })
                }
            }
        }
    }
}

fn kernel_error(dump: &Dump, errno: i32) -> InspectError {
    InspectError::Kernel {
        what: dump.what(),
        module: dump.module(),
        error: std::io::Error::from_raw_os_error(errno),
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One answer of the kernel as a [`Socket`], without owners or user name.
fn to_socket(dump: &Dump, h: &InetResponseHeader) -> Result<Socket, InspectError> {
    let family = match h.family {
        AF_INET => Family::V4,
        AF_INET6 => Family::V6,
        other => {
            return Err(InspectError::Decode {
                what: dump.what(),
                detail: format!("a socket of address family {other}"),
            })
        }
    };
    let id = &h.socket_id;
    Ok(Socket {
        protocol: dump.protocol,
        family,
        local: socket_addr(id.source_address, id.source_port, id.interface_id),
        remote: socket_addr(id.destination_address, id.destination_port, id.interface_id),
        state: State::from_kernel(dump.protocol, h.state),
        recv_q: h.recv_queue,
        send_q: h.send_queue,
        uid: h.uid,
        user: None,
        inode: u64::from(h.inode),
        owners: Vec::new(),
    })
}

/// An address as the kernel reports it. A link-local IPv6 address keeps the
/// interface the socket is bound to as its scope, since it means nothing
/// without one.
fn socket_addr(ip: IpAddr, port: u16, interface: u32) -> SocketAddr {
    match ip {
        IpAddr::V6(v6) if is_unicast_link_local(&v6) => {
            SocketAddr::V6(SocketAddrV6::new(v6, port, 0, interface))
        }
        IpAddr::V4(v4) => SocketAddr::from((v4, port)),
        IpAddr::V6(v6) => SocketAddr::from((v6, port)),
    }
}

fn is_unicast_link_local(ip: &Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn unspecified(family: Family) -> IpAddr {
        match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }

    #[test]
    fn masks() {
        assert_eq!(states_mask(&[State::Listen]), 1 << 10);
        assert_eq!(states_mask(&[State::Unconnected]), 1 << 7);
        assert_eq!(
            states_mask(&[State::Established, State::Close]),
            ALL_UDP_STATES
        );
        assert_eq!(states_mask(&[]), 0);
        // ALL_TCP_STATES is ESTABLISHED..=CLOSING.
        let all = states_mask(&[
            State::Established,
            State::SynSent,
            State::SynRecv,
            State::FinWait1,
            State::FinWait2,
            State::TimeWait,
            State::Close,
            State::CloseWait,
            State::LastAck,
            State::Listen,
            State::Closing,
        ]);
        assert_eq!(all, ALL_TCP_STATES);
    }

    #[test]
    fn request_bytes() {
        // struct nlmsghdr (16) + struct inet_diag_req_v2 (56).
        let dump = Dump::new(Protocol::Udp, Family::V6, states_mask(&[State::Listen]));
        let msg = dump.request(7);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        assert_eq!(buf.len(), 72);
        assert_eq!(u32::from_ne_bytes(buf[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(buf[4..6].try_into().unwrap()), 20); // SOCK_DIAG_BY_FAMILY
        assert_eq!(
            u16::from_ne_bytes(buf[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_DUMP
        );
        assert_eq!(u32::from_ne_bytes(buf[8..12].try_into().unwrap()), 7);
        assert_eq!(buf[16], AF_INET6);
        assert_eq!(buf[17], IPPROTO_UDP);
        assert_eq!(buf[18], 0); // no extensions
        assert_eq!(u32::from_ne_bytes(buf[20..24].try_into().unwrap()), 1 << 10);
    }

    fn header(family: u8, state: u8, src: IpAddr, sport: u16, dst: IpAddr) -> InetResponseHeader {
        InetResponseHeader {
            family,
            state,
            timer: None,
            socket_id: SocketId {
                source_port: sport,
                destination_port: 0,
                source_address: src,
                destination_address: dst,
                interface_id: 3,
                cookie: [0; 8],
            },
            recv_queue: 1,
            send_queue: 128,
            uid: 65534,
            inode: 4242,
        }
    }

    #[test]
    fn answers_become_sockets() {
        let tcp6 = Dump::new(Protocol::Tcp, Family::V6, ALL_TCP_STATES);
        let h = header(
            AF_INET6,
            10,
            unspecified(Family::V6),
            22,
            unspecified(Family::V6),
        );
        let s = to_socket(&tcp6, &h).unwrap();
        assert_eq!(s.protocol, Protocol::Tcp);
        assert_eq!(s.family, Family::V6);
        assert_eq!(s.local, "[::]:22".parse().unwrap());
        assert_eq!(s.remote, "[::]:0".parse().unwrap());
        assert_eq!(s.state, State::Listen);
        assert_eq!((s.recv_q, s.send_q, s.uid, s.inode), (1, 128, 65534, 4242));
        assert!(s.owners.is_empty() && s.user.is_none());

        let udp = Dump::new(Protocol::Udp, Family::V4, ALL_UDP_STATES);
        let h = header(
            AF_INET,
            7,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            53,
            unspecified(Family::V4),
        );
        let s = to_socket(&udp, &h).unwrap();
        assert_eq!(s.local, "127.0.0.1:53".parse().unwrap());
        assert_eq!(s.state, State::Unconnected);

        let bad = header(
            1,
            7,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            53,
            unspecified(Family::V4),
        );
        assert!(matches!(
            to_socket(&udp, &bad),
            Err(InspectError::Decode { what: "udp", .. })
        ));
    }

    #[test]
    fn link_local_keeps_its_interface() {
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        match socket_addr(IpAddr::V6(ll), 53, 3) {
            SocketAddr::V6(a) => assert_eq!((a.scope_id(), a.port()), (3, 53)),
            other => panic!("{other}"),
        }
        match socket_addr(IpAddr::V6(Ipv6Addr::LOCALHOST), 53, 3) {
            SocketAddr::V6(a) => assert_eq!(a.scope_id(), 0),
            other => panic!("{other}"),
        }
        assert_eq!(
            socket_addr(IpAddr::V4(Ipv4Addr::LOCALHOST), 80, 3),
            "127.0.0.1:80".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn alignment() {
        assert_eq!(align4(0), 0);
        assert_eq!(align4(1), 4);
        assert_eq!(align4(4), 4);
        assert_eq!(align4(73), 76);
    }
}
