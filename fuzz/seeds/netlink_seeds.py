#!/usr/bin/env python3
"""Seeds for the netlink_decode fuzz target: real kernel replies.

Run inside a fresh network namespace (never the machine's own), e.g.

    ip netns add pwfuzz-seeds
    ip netns exec pwfuzz-seeds python3 fuzz/seeds/netlink_seeds.py fuzz/corpus/netlink_decode
    ip netns del pwfuzz-seeds

It creates table `inet portwall` with sets of the key types portwall uses
(addresses, interval networks, port ranges, a concatenated address . protocol
. port interval set), dumps each set and its elements back from the kernel,
and writes one seed per set: the NEWSET message followed by the NEWSETELEM
messages, as they arrived. One more seed is the kernel's error
acknowledgement (with extended ack) for an element added twice.
"""
import os, socket, struct, sys

NETLINK_NETFILTER = 12
SOL_NETLINK, NETLINK_EXT_ACK = 270, 11
REQ, ACK, DUMP, CREATE = 0x1, 0x4, 0x300, 0x400
NFT = 10 << 8
NEWTABLE, NEWSET, GETSET, NEWSETELEM, GETSETELEM = NFT | 0, NFT | 9, NFT | 10, NFT | 12, NFT | 13
INET = 1
seq = 1


def attr(t, v):
    return struct.pack("=HH", 4 + len(v), t) + v + b"\0" * (-len(v) % 4)


def nest(t, *xs):
    return attr(t | 0x8000, b"".join(xs))


def s(t, text):
    return attr(t, text.encode() + b"\0")


def u32(t, v):
    return attr(t, struct.pack(">I", v))


def msg(ty, flags, family, body, res_id=0):
    global seq
    seq += 1
    payload = struct.pack("=BBH", family, 0, socket.htons(res_id)) + body
    return struct.pack("=IHHII", 16 + len(payload), ty, flags, seq, 0) + payload


def batch(*ms):
    return msg(0x10, REQ, 0, b"", NFT >> 8) + b"".join(ms) + msg(0x11, REQ, 0, b"", NFT >> 8)


def split(data):
    out, at = [], 0
    while at + 16 <= len(data):
        ln, ty = struct.unpack_from("=IH", data, at)
        out.append((ty, data[at:at + ln]))
        at += (ln + 3) & ~3
    return out


def talk(sock, data, acks=0):
    """Sends `data`; reads until NLMSG_DONE (a dump) or `acks` acknowledgements."""
    sock.send(data)
    got = []
    while True:
        ms = split(sock.recv(1 << 20))
        got.extend(ms)
        errors = [m for t, m in got if t == 2]
        if any(t == 3 for t, _ in ms) or (acks and len(errors) >= acks) \
                or any(struct.unpack_from("=i", m, 16)[0] != 0 for m in errors):
            return got


def elem(key, end=None, flags=0):
    parts = [nest(1, attr(1, key))]
    if flags:
        parts.append(u32(3, flags))
    if end is not None:
        parts.append(nest(10, attr(1, end)))
    return nest(1, *parts)


def ip4(a):
    return socket.inet_pton(socket.AF_INET, a)


def ip6(a):
    return socket.inet_pton(socket.AF_INET6, a)


def port(p):
    return struct.pack(">H", p)


def reg(b):
    return b + b"\0" * (-len(b) % 4)


SETS = [
    # name, flags, key type, key len, field lens, elements
    ("in_addrs", 0, 7, 4, [], [elem(ip4("192.0.2.1")), elem(ip4("198.51.100.7"))]),
    ("in_v6", 0, 8, 16, [], [elem(ip6("2001:db8::1"))]),
    ("in_nets", 0x4, 7, 4, [], [elem(ip4("10.0.0.0")), elem(ip4("11.0.0.0"), flags=1),
                               elem(ip4("203.0.113.0")), elem(ip4("203.0.114.0"), flags=1)]),
    ("in_ports", 0x4, 13, 2, [], [elem(port(22)), elem(port(23), flags=1),
                                 elem(port(60000)), elem(port(61001), flags=1)]),
    ("in_1", 0x84, (7 << 12) | (12 << 6) | 13, 12, [4, 1, 2],
     [elem(reg(ip4("10.0.0.0")) + reg(b"\x06") + reg(port(22)),
           end=reg(ip4("10.255.255.255")) + reg(b"\x06") + reg(port(22)))]),
]


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    table = s(1, "portwall")
    ms = [msg(NEWTABLE, REQ | ACK | CREATE, INET, table)]
    for i, (name, flags, kt, kl, fields, elems) in enumerate(SETS):
        desc = [u32(1, 64)]
        if fields:
            desc.append(nest(2, *[nest(1, u32(1, f)) for f in fields]))
        ms.append(msg(NEWSET, REQ | ACK | CREATE, INET, s(1, "portwall") + s(2, name)
                      + u32(3, flags) + u32(4, kt) + u32(5, kl) + u32(10, i + 1) + nest(9, *desc)))
        ms.append(msg(NEWSETELEM, REQ | ACK | CREATE, INET, s(1, "portwall") + s(2, name)
                      + nest(3, *elems)))
    for t, m in talk(sock, batch(*ms), len(ms)):
        if t == 2 and struct.unpack_from("=i", m, 16)[0] != 0:
            sys.exit(f"the kernel refused the batch: {struct.unpack_from('=i', m, 16)[0]}")
    sets = talk(sock, msg(GETSET, REQ | DUMP, INET, table))
    for name, *_ in SETS:
        set_msg = [m for t, m in sets if t == NEWSET and name.encode() + b"\0" in m]
        elems = talk(sock, msg(GETSETELEM, REQ | DUMP, INET, table + s(2, name)))
        seed = b"".join(set_msg + [m for t, m in elems if t == NEWSETELEM])
        open(os.path.join(out_dir, "kernel_" + name), "wb").write(seed)
    # An element added again with NLM_F_EXCL: the kernel blames it (extended ack).
    name, _, _, _, _, elems = SETS[0]
    dup = batch(msg(NEWSETELEM, REQ | ACK | CREATE | 0x200, INET,
                    s(1, "portwall") + s(2, name) + nest(3, elems[0])))
    errs = [m for t, m in talk(sock, dup, 1) if t == 2]
    # The set, then the refused message's error: describe_element's input.
    set_msg = [m for t, m in sets if t == NEWSET and name.encode() + b"\0" in m]
    open(os.path.join(out_dir, "kernel_error_ack"), "wb").write(b"".join(set_msg + errs))


if __name__ == "__main__":
    main(sys.argv[1])
