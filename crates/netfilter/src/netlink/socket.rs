//! The nf_tables netlink socket: sending one batch and collecting its
//! acknowledgements, and dump requests.
//!
//! `netlink-sys` opens the socket and `netlink-packet-core` frames what the
//! kernel answers. A socket belongs to the network namespace of the thread that
//! opens it, so every call opens its own socket on the calling thread.

use super::types::*;
use netlink_packet_core::NetlinkBuffer;
use netlink_sys::{Socket, SocketAddr};
use std::io;
use std::time::Duration;

/// The attributes of a netlink payload as (type without flags, value).
///
/// A plain walk of the 4-byte type-length headers, as `netlink-packet-core`'s
/// `NlasIterator` does but without a checked buffer and a `Result` per
/// attribute: reading back 100k set elements walks 1.5 million attributes.
/// It stops at the first malformed header, as that iterator does.
pub fn attrs(b: &[u8]) -> Attrs<'_> {
    Attrs { rest: b }
}

/// The iterator of [`attrs`].
#[derive(Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

/// `NLA_F_NESTED | NLA_F_NET_BYTEORDER`: flags, not part of the type.
const NLA_FLAGS: u16 = 0xc000;

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        let b = self.rest;
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let kind = u16::from_ne_bytes([b[2], b[3]]) & !NLA_FLAGS;
        if len < 4 || len > b.len() {
            self.rest = &[];
            return None;
        }
        self.rest = &b[len.next_multiple_of(4).min(b.len())..];
        Some((kind, &b[4..len]))
    }
}

/// One message the kernel sent: type, flags, sequence number, payload (after
/// the netlink header).
pub struct Reply {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: Vec<u8>,
}

/// An error acknowledgement: the errno, the sequence number it answers, the
/// kernel's extended message and the offset of the attribute it blames.
#[derive(Debug, Clone)]
pub struct Nack {
    pub errno: i32,
    pub seq: u32,
    pub msg: Option<String>,
    pub offset: Option<u32>,
}

pub struct NfSocket {
    /// `None` only while being dropped (see [`park`]).
    sock: Option<Socket>,
    buf: Vec<u8>,
}

impl std::ops::Deref for NfSocket {
    type Target = Socket;
    fn deref(&self) -> &Socket {
        self.sock.as_ref().expect("an open socket")
    }
}

impl Drop for NfSocket {
    fn drop(&mut self) {
        if let Some(sock) = self.sock.take() {
            park(sock);
        }
    }
}

/// Sockets dropped but not yet closed, oldest first.
static PARKED: std::sync::Mutex<Vec<Socket>> = std::sync::Mutex::new(Vec::new());

/// The most sockets [`park`] keeps open.
const PARKED_MAX: usize = 8;

/// Keeps a dropped socket open instead of closing it.
///
/// Closing an nf_tables socket right after a transaction commits blocks: the
/// kernel's release notifier (`nft_rcv_nl_event`) waits for the
/// transaction's deferred cleanup, which starts with an RCU grace period
/// (11-14 ms on this VM, a sixth of a 10k-rule apply), whenever that cleanup
/// has not started yet. So sockets are closed late: when the process exits
/// (the cleanup has long started by then), or, in a long-running process,
/// once more than [`PARKED_MAX`] are parked, oldest first.
fn park(sock: Socket) {
    let mut parked = PARKED.lock().unwrap_or_else(|p| p.into_inner());
    parked.push(sock);
    if parked.len() > PARKED_MAX {
        let oldest = parked.remove(0);
        drop(parked);
        drop(oldest);
    }
}

fn split(data: &[u8], out: &mut Vec<Reply>) {
    let mut at = 0;
    while at + 16 <= data.len() {
        let Ok(m) = NetlinkBuffer::new_checked(&data[at..]) else {
            break;
        };
        let len = m.length() as usize;
        out.push(Reply {
            kind: m.message_type(),
            flags: m.flags(),
            seq: m.sequence_number(),
            payload: m.payload().to_vec(),
        });
        at += len.div_ceil(4) * 4;
        if len == 0 {
            break;
        }
    }
}

/// Decodes an NLMSG_ERROR payload: `(errno, seq of the message it answers, ...)`.
pub fn parse_error(r: &Reply) -> Option<Nack> {
    let p = &r.payload;
    if p.len() < 4 + 16 {
        return None;
    }
    // The kernel sends -errno; i32::MIN has no errno and is no error reply.
    let errno = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]).checked_neg()?;
    let orig_len = u32::from_ne_bytes([p[4], p[5], p[6], p[7]]) as usize;
    let seq = u32::from_ne_bytes([p[12], p[13], p[14], p[15]]);
    let mut nack = Nack {
        errno,
        seq,
        msg: None,
        offset: None,
    };
    if r.flags & NLM_F_ACK_TLVS != 0 {
        // With NETLINK_CAP_ACK only the header of the original message is echoed.
        let skip = if r.flags & 0x100 != 0 {
            4 + 16
        } else {
            4 + orig_len.max(16).div_ceil(4) * 4
        };
        if skip <= p.len() {
            for (t, v) in attrs(&p[skip..]) {
                match t {
                    NLMSGERR_ATTR_MSG => {
                        let end = v.iter().position(|c| *c == 0).unwrap_or(v.len());
                        nack.msg = Some(String::from_utf8_lossy(&v[..end]).into_owned());
                    }
                    NLMSGERR_ATTR_OFFS if v.len() >= 4 => {
                        nack.offset = Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
                    }
                    _ => {}
                }
            }
        }
    }
    Some(nack)
}

impl NfSocket {
    /// Opens an nf_tables socket in the calling thread's network namespace.
    pub fn open() -> io::Result<NfSocket> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Errors name the attribute they blame; acks do not echo the request.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        rustix::net::sockopt::set_socket_timeout(
            &sock,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_secs(10)),
        )?;
        Ok(NfSocket {
            sock: Some(sock),
            buf: Vec::with_capacity(1 << 17),
        })
    }

    /// Makes the receive buffer hold at least `bytes` (as root, beyond
    /// `net.core.rmem_max`): the kernel drops what does not fit.
    pub fn reserve_receive_buffer(&self, bytes: usize) -> io::Result<()> {
        if bytes > 212_992 {
            rustix::net::sockopt::set_socket_recv_buffer_size_force(&**self, bytes)?;
        }
        Ok(())
    }

    /// Sends prepared messages.
    pub fn send_raw(&self, buf: &[u8]) -> io::Result<()> {
        self.send(buf, 0)?;
        Ok(())
    }

    /// Receives one datagram's messages (blocking, with the socket's timeout).
    pub fn recv_into(&mut self, out: &mut Vec<Reply>) -> io::Result<()> {
        self.recv(out)
    }

    fn recv(&mut self, out: &mut Vec<Reply>) -> io::Result<()> {
        self.buf.clear();
        let sock = self.sock.as_ref().expect("an open socket");
        sock.recv(&mut self.buf, 0)?;
        split(&self.buf, out);
        Ok(())
    }

    /// Sends one batch (BATCH_BEGIN ... BATCH_END, `inner` messages in between
    /// with NLM_F_ACK) and returns the error acknowledgements, if any.
    ///
    /// The kernel processes a batch inside `sendmsg`: when it returns, every
    /// acknowledgement is already queued on the socket, so they are read without
    /// waiting; one that is missing is an error (the receive buffer overflowed).
    pub fn send_batch(
        &mut self,
        batch: &[u8],
        inner: u32,
        first_seq: u32,
    ) -> io::Result<Vec<Nack>> {
        let want_snd = batch.len() + 4096;
        if want_snd > 212_992 {
            rustix::net::sockopt::set_socket_send_buffer_size_force(&**self, want_snd)?;
        }
        // Room for one ack per message (an skb each), and for the errors.
        self.reserve_receive_buffer((inner as usize + 64) * 2048)?;
        let sent = self.send(batch, 0)?;
        if sent != batch.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes of the batch",
                batch.len()
            )));
        }
        self.set_non_blocking(true)?;
        let mut replies = Vec::new();
        let mut acked = 0u32;
        let mut nacks = Vec::new();
        let result = loop {
            replies.clear();
            match self.recv(&mut replies) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(e),
            }
            for r in &replies {
                if r.kind != NLMSG_ERROR {
                    continue;
                }
                if let Some(n) = parse_error(r) {
                    if n.seq >= first_seq && n.seq < first_seq + inner {
                        acked += 1;
                    }
                    if n.errno != 0 {
                        nacks.push(n);
                    }
                }
            }
        };
        self.set_non_blocking(false)?;
        result?;
        if acked < inner && nacks.is_empty() {
            return Err(io::Error::other(format!(
                "the kernel acknowledged {acked} of {inner} messages (receive buffer overflow?)"
            )));
        }
        Ok(nacks)
    }

    /// Sends a dump request and returns the messages of the answer, or the
    /// errno the kernel answered with.
    pub fn dump(
        &mut self,
        msg_type: u16,
        family: u8,
        attrs: &[(u16, &[u8])],
        seq: u32,
    ) -> io::Result<Result<Vec<Reply>, i32>> {
        let mut w = super::encode::Writer::default();
        let start = w.begin_msg(
            (NFNL_SUBSYS_NFTABLES << 8) | msg_type,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            family,
            0,
        );
        for (t, v) in attrs {
            w.put(*t, v);
        }
        w.end_msg(start);
        self.send(&w.buf, 0)?;
        let mut out = Vec::new();
        let mut replies = Vec::new();
        // Bounded: a dump ends with NLMSG_DONE or an error; the receive timeout
        // ends a kernel that never answers.
        for _ in 0..10_000_000u32 {
            replies.clear();
            self.recv(&mut replies)?;
            for r in replies.drain(..) {
                if r.seq != seq {
                    continue;
                }
                match r.kind {
                    NLMSG_DONE => return Ok(Ok(out)),
                    NLMSG_ERROR => {
                        let n = parse_error(&r).map(|n| n.errno).unwrap_or(libc_eio());
                        if n == 0 {
                            return Ok(Ok(out));
                        }
                        return Ok(Err(n));
                    }
                    _ => out.push(r),
                }
            }
        }
        Err(io::Error::other("the dump did not end"))
    }
}

fn libc_eio() -> i32 {
    5
}

#[cfg(test)]
mod tests {
    use super::{attrs, parse_error, Reply};

    /// Fuzzing found it: an error field of i32::MIN overflowed the negation.
    #[test]
    fn an_error_reply_of_i32_min_is_refused_not_negated() {
        let mut payload = i32::MIN.to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0u8; 16]);
        let reply = Reply {
            kind: 2,
            flags: 0,
            seq: 0,
            payload,
        };
        assert!(parse_error(&reply).is_none());
        let mut ok = reply;
        ok.payload[..4].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(parse_error(&ok).map(|n| n.errno), Some(1));
    }

    /// Attributes come out with their flags cleared and their padding
    /// skipped; a header that claims more than is there ends the walk.
    #[test]
    fn attributes_are_walked_as_the_kernel_lays_them_out() {
        let mut b = Vec::new();
        // type 1, 5 bytes of value, 3 of padding
        b.extend_from_slice(&9u16.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(b"abcde\0\0\0");
        // type 2 | NLA_F_NESTED, holding type 3 with 4 bytes
        b.extend_from_slice(&12u16.to_ne_bytes());
        b.extend_from_slice(&(2u16 | 0x8000).to_ne_bytes());
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&3u16.to_ne_bytes());
        b.extend_from_slice(&[7, 7, 7, 7]);
        let got: Vec<(u16, Vec<u8>)> = attrs(&b).map(|(t, v)| (t, v.to_vec())).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (1, b"abcde".to_vec()));
        assert_eq!(got[1].0, 2);
        let inner: Vec<(u16, &[u8])> = attrs(&got[1].1).collect();
        assert_eq!(inner, [(3u16, &[7u8, 7, 7, 7][..])]);
        // A truncated attribute: the walk stops before it.
        let mut bad = b.clone();
        bad.extend_from_slice(&100u16.to_ne_bytes());
        bad.extend_from_slice(&4u16.to_ne_bytes());
        assert_eq!(attrs(&bad).count(), 2);
        // A length below the header's own: stops too.
        let mut bad = b[..12].to_vec();
        bad.extend_from_slice(&2u16.to_ne_bytes());
        bad.extend_from_slice(&4u16.to_ne_bytes());
        assert_eq!(attrs(&bad).count(), 1);
    }
}
