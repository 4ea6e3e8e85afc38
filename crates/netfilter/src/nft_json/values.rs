//! nft's JSON values ↔ the bytes of a [`DataType`].

use crate::netlink::types::*;
use serde_json::{json, Value};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A [`DataType`]'s values as nft's JSON spells them.
pub(crate) trait JsonValues {
    /// Parses one value (no prefix or range) of nft's JSON into its `len()`
    /// bytes; a list of `ct state`s is the OR of its states.
    fn parse(self, v: &Value) -> Result<Vec<u8>, String>;
    /// A value as `nft -j` prints it.
    fn format(self, b: &[u8]) -> Value;
}

impl JsonValues for DataType {
    /// Parses one value (no prefix or range) of nft's JSON into its `len()`
    /// bytes; a list of `ct state`s is the OR of its states.
    fn parse(self, v: &Value) -> Result<Vec<u8>, String> {
        let bad = || format!("'{v}' is not a valid {}", self.name());
        fn scalar(v: &Value) -> Option<Scalar<'_>> {
            match v {
                Value::String(s) => Some(Scalar::Str(s)),
                Value::Number(n) => n.as_u64().map(Scalar::Num),
                _ => None,
            }
        }
        match (self, v) {
            (DataType::CtState, Value::Array(a)) => {
                let mut bits = 0u32;
                for s in a {
                    let b = self
                        .parse_scalar(scalar(s).ok_or_else(bad)?)
                        .map_err(|_| bad())?;
                    bits |= u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                }
                Ok(bits.to_ne_bytes().to_vec())
            }
            _ => self
                .parse_scalar(scalar(v).ok_or_else(bad)?)
                .map_err(|_| bad()),
        }
    }

    /// A value as `nft -j` prints it.
    fn format(self, b: &[u8]) -> Value {
        match self {
            DataType::Ipv4Addr if b.len() >= 4 => {
                Value::String(Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string())
            }
            DataType::Ipv6Addr if b.len() >= 16 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[..16]);
                Value::String(Ipv6Addr::from(o).to_string())
            }
            DataType::InetProto if !b.is_empty() => match proto_name(b[0]) {
                Some(n) => Value::String(n.to_string()),
                None => Value::from(b[0]),
            },
            DataType::InetService if b.len() >= 2 => Value::from(u16::from_be_bytes([b[0], b[1]])),
            DataType::EtherType if b.len() >= 2 => match u16::from_be_bytes([b[0], b[1]]) {
                0x0800 => json!("ip"),
                0x86dd => json!("ip6"),
                0x0806 => json!("arp"),
                0x8100 => json!("vlan"),
                n => json!(n),
            },
            DataType::Ifname => {
                let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
                json!(String::from_utf8_lossy(&b[..end]))
            }
            DataType::Mark if b.len() >= 4 => json!(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
            DataType::IcmpType | DataType::Icmpv6Type if !b.is_empty() => {
                let table = if self == DataType::IcmpType {
                    ICMP_TYPES
                } else {
                    ICMPV6_TYPES
                };
                match table.iter().find(|(n, _)| *n == b[0]) {
                    Some((_, name)) => json!(name),
                    None => json!(b[0]),
                }
            }
            DataType::CtState if b.len() >= 4 => {
                let bits = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                let names: Vec<&str> = CT_STATES
                    .iter()
                    .filter(|(bit, _)| bits & bit != 0)
                    .map(|(_, n)| *n)
                    .collect();
                if names.len() == 1 {
                    json!(names[0])
                } else {
                    json!(names)
                }
            }
            DataType::Nfproto if !b.is_empty() => match b[0] {
                2 => json!("ipv4"),
                10 => json!("ipv6"),
                n => json!(n),
            },
            _ => {
                let mut n: u64 = 0;
                for x in b.iter().take(8) {
                    n = (n << 8) | *x as u64;
                }
                json!(n)
            }
        }
    }
}
