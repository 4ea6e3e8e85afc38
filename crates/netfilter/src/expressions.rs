//! The nftables expressions and statements portwall's tables are built of,
//! once for both of them: the host's table ([`crate::compile`]) and the edge's
//! (crate `edge`, which keeps only its own layout of sets per server).
//!
//! They are the typed values of the `nftables` crate: the netlink encoder
//! ([`crate::netlink`]) writes them to the kernel, and the `nft` fallback
//! serializes them as `nft -j` reads them.

use ipnet::IpNet;
use model::PortRange;
use nftables::expr::{self, Expression, NamedExpression};
use nftables::stmt::{self, Statement};
use std::borrow::Cow;
use std::net::IpAddr;

/// IP protocol numbers the tables name.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// A field of a packet header: `ip saddr`, `th dport`, `icmpv6 type`, ...
pub fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(expr::Payload::PayloadField(
        expr::PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

/// `meta KEY`.
pub fn meta(key: expr::MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(expr::Meta { key }))
}

/// A field of the conntrack entry's original tuple (`ct original ip daddr`).
pub fn original_ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(expr::CT {
        key: Cow::Borrowed(key),
        family: None,
        dir: Some(expr::CTDir::Original),
    }))
}

/// `LEFT == RIGHT`.
pub fn matches(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(stmt::Match {
        left,
        right,
        op: stmt::Operator::EQ,
    })
}

/// `ct state S` or `ct state S1,S2`. Several states need the `in` operator
/// (any of these flags): with `==`, nft 1.0.6 reads a JSON list as the
/// bitwise OR of the states and compares for equality, which no packet ever
/// matches.
pub fn ct_state(states: &[&'static str]) -> Statement<'static> {
    let left = Expression::Named(NamedExpression::CT(expr::CT {
        key: Cow::Borrowed("state"),
        family: None,
        dir: None,
    }));
    if states.len() == 1 {
        return matches(left, Expression::String(Cow::Borrowed(states[0])));
    }
    Statement::Match(stmt::Match {
        left,
        right: Expression::List(
            states
                .iter()
                .map(|s| Expression::String(Cow::Borrowed(s)))
                .collect(),
        ),
        op: stmt::Operator::IN,
    })
}

/// An anonymous counter.
pub fn counter() -> Statement<'static> {
    Statement::Counter(stmt::Counter::Anonymous(None))
}

/// `icmpv6 type` within the neighbour-discovery types
/// ([`model::evaluate::ND_TYPES`]), which both tables let pass.
pub fn neighbour_discovery() -> Statement<'static> {
    matches(
        payload("icmpv6", "type"),
        Expression::Range(Box::new(expr::Range {
            range: [
                Expression::Number(*model::evaluate::ND_TYPES.start() as u32),
                Expression::Number(*model::evaluate::ND_TYPES.end() as u32),
            ],
        })),
    )
}

/// `LEFT @SET`: a lookup of one field, or of the concatenation of several.
pub fn in_set(mut left: Vec<Expression<'static>>, set: &str) -> Statement<'static> {
    let left = if left.len() == 1 {
        left.pop().expect("one expression")
    } else {
        Expression::Named(NamedExpression::Concat(left))
    };
    matches(left, Expression::String(Cow::Owned(format!("@{set}"))))
}

/// An IP protocol as nft names it (a number when it has no name).
pub fn proto_value(p: u8) -> Expression<'static> {
    match p {
        PROTO_TCP => Expression::String(Cow::Borrowed("tcp")),
        PROTO_UDP => Expression::String(Cow::Borrowed("udp")),
        PROTO_ICMP => Expression::String(Cow::Borrowed("icmp")),
        PROTO_ICMPV6 => Expression::String(Cow::Borrowed("ipv6-icmp")),
        n => Expression::Number(n as u32),
    }
}

/// An address.
pub fn addr_value(a: IpAddr) -> Expression<'static> {
    Expression::String(Cow::Owned(a.to_string()))
}

/// An address, or a prefix when the network is wider than one address.
pub fn net_value(n: &IpNet) -> Expression<'static> {
    if n.prefix_len() == n.max_prefix_len() {
        addr_value(n.addr())
    } else {
        Expression::Named(NamedExpression::Prefix(expr::Prefix {
            addr: Box::new(Expression::String(Cow::Owned(n.network().to_string()))),
            len: n.prefix_len() as u32,
        }))
    }
}

/// A port, or a range of ports.
pub fn ports_value(r: &PortRange) -> Expression<'static> {
    if r.start == r.end {
        Expression::Number(r.start as u32)
    } else {
        Expression::Range(Box::new(expr::Range {
            range: [
                Expression::Number(r.start as u32),
                Expression::Number(r.end as u32),
            ],
        }))
    }
}

/// A set element's value: one part as it is, several concatenated.
pub fn element_value(mut parts: Vec<Expression<'static>>) -> Expression<'static> {
    if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        Expression::Named(NamedExpression::Concat(parts))
    }
}
