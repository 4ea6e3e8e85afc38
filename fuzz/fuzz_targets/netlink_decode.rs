//! The nf_tables netlink decoder on arbitrary bytes taken as one datagram
//! of kernel replies (netlink messages one after the other, as a dump or an
//! acknowledgement arrives).
//!
//! Calls, in `netfilter::netlink`: `socket::attrs` (the attribute walk) on
//! every payload, `socket::parse_error` on `NLMSG_ERROR` messages,
//! `decode::parse_set` on `NEWSET` messages, and `decode::describe_element`
//! (element key decode with the last set's key types) on every element nest
//! of a `NEWSETELEM` message. These are the public entry points that decode
//! a kernel reply; the rule-expression and element-list decoders behind
//! `list_table` are crate-private and read from a socket.
//!
//! Properties: the attribute walk yields slices that lie inside the buffer,
//! in order, without overlap; a decoded set has at least one key type; a
//! described element is a non-empty text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netfilter::netlink::decode::{describe_element, parse_set, KSet};
use netfilter::netlink::socket::{attrs, parse_error, Reply};
use netfilter::netlink::types::{
    NFTA_SET_ELEM_LIST_ELEMENTS, NFT_MSG_NEWSET, NFT_MSG_NEWSETELEM, NLMSG_ERROR,
};

/// `NFNL_SUBSYS_NFTABLES << 8`: the high byte of an nf_tables message type.
const NFTABLES: u16 = 10 << 8;

/// Walks the attributes of `b` and checks each lies after the previous one.
fn walk(b: &[u8]) {
    let (start, end) = (b.as_ptr() as usize, b.as_ptr() as usize + b.len());
    let mut at = start;
    for (_, v) in attrs(b) {
        let p = v.as_ptr() as usize;
        assert!(
            p >= at + 4 && p + v.len() <= end,
            "an attribute outside its buffer"
        );
        at = p + v.len();
        walk(v);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut last_set: Option<KSet> = None;
    let mut rest = data;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 16 || len > rest.len() {
            break;
        }
        let msg = &rest[..len];
        let reply = Reply {
            kind: u16::from_ne_bytes([msg[4], msg[5]]),
            flags: u16::from_ne_bytes([msg[6], msg[7]]),
            seq: u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]),
            payload: msg[16..].to_vec(),
        };
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        walk(reply.payload.get(4..).unwrap_or_default());
        if reply.kind == NLMSG_ERROR {
            let _ = parse_error(&reply);
        } else if reply.kind == NFTABLES | NFT_MSG_NEWSET {
            if let Some((_, set)) = parse_set(&reply.payload) {
                assert!(!set.types.is_empty(), "a set without key types: {set:?}");
                last_set = Some(set);
            }
        } else if reply.kind == NFTABLES | NFT_MSG_NEWSETELEM {
            let Some(set) = &last_set else { continue };
            let info = set.info();
            let Some(list) = attrs(msg.get(20..).unwrap_or_default())
                .find(|(t, _)| *t == NFTA_SET_ELEM_LIST_ELEMENTS)
                .map(|(_, v)| v)
            else {
                continue;
            };
            for (_, elem) in attrs(list) {
                // The nest's header, as the kernel's extended ack points at it.
                let offset = elem.as_ptr() as usize - 4 - msg.as_ptr() as usize;
                if let Some(text) = describe_element(&info, msg, offset) {
                    assert!(!text.is_empty(), "an element described as nothing");
                }
            }
        }
    }
});
