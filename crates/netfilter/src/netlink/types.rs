//! nf_tables constants, named as in the uapi headers
//! (linux/netfilter/nf_tables.h and its neighbours), and the data types of
//! nft's language that portwall uses: how a value of each type is written to
//! the kernel and shown as text (nft's JSON spelling is
//! [`crate::nft_json`]'s).

use std::net::{Ipv4Addr, Ipv6Addr};

// ---- netlink and nfnetlink ------------------------------------------------------

pub const NETLINK_NETFILTER: isize = 12;
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub const NFNL_MSG_BATCH_END: u16 = 0x11;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
pub const NLMSG_ERROR: u16 = 0x2;
pub const NLMSG_DONE: u16 = 0x3;
pub const NLM_F_ACK_TLVS: u16 = 0x200;
pub const NLMSGERR_ATTR_MSG: u16 = 1;
pub const NLMSGERR_ATTR_OFFS: u16 = 2;
pub const NLA_F_NESTED: u16 = 0x8000;

// ---- message types (NFT_MSG_*) -----------------------------------------------------

pub const NFT_MSG_NEWTABLE: u16 = 0;
pub const NFT_MSG_GETTABLE: u16 = 1;
pub const NFT_MSG_DELTABLE: u16 = 2;
pub const NFT_MSG_NEWCHAIN: u16 = 3;
pub const NFT_MSG_GETCHAIN: u16 = 4;
pub const NFT_MSG_DELCHAIN: u16 = 5;
pub const NFT_MSG_NEWRULE: u16 = 6;
pub const NFT_MSG_GETRULE: u16 = 7;
pub const NFT_MSG_DELRULE: u16 = 8;
pub const NFT_MSG_NEWSET: u16 = 9;
pub const NFT_MSG_GETSET: u16 = 10;
pub const NFT_MSG_DELSET: u16 = 11;
pub const NFT_MSG_NEWSETELEM: u16 = 12;
pub const NFT_MSG_GETSETELEM: u16 = 13;
pub const NFT_MSG_DELSETELEM: u16 = 14;
pub const NFT_MSG_DESTROYTABLE: u16 = 26;

// ---- attributes ------------------------------------------------------------------

pub const NFTA_LIST_ELEM: u16 = 1;

pub const NFTA_TABLE_NAME: u16 = 1;
pub const NFTA_TABLE_FLAGS: u16 = 2;
pub const NFTA_TABLE_HANDLE: u16 = 4;

pub const NFTA_CHAIN_TABLE: u16 = 1;
pub const NFTA_CHAIN_HANDLE: u16 = 2;
pub const NFTA_CHAIN_NAME: u16 = 3;
pub const NFTA_CHAIN_HOOK: u16 = 4;
pub const NFTA_CHAIN_POLICY: u16 = 5;
pub const NFTA_CHAIN_TYPE: u16 = 7;
pub const NFTA_HOOK_HOOKNUM: u16 = 1;
pub const NFTA_HOOK_PRIORITY: u16 = 2;
pub const NFTA_HOOK_DEV: u16 = 3;

pub const NFTA_RULE_TABLE: u16 = 1;
pub const NFTA_RULE_CHAIN: u16 = 2;
pub const NFTA_RULE_HANDLE: u16 = 3;
pub const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub const NFTA_RULE_USERDATA: u16 = 7;
pub const NFTA_EXPR_NAME: u16 = 1;
pub const NFTA_EXPR_DATA: u16 = 2;

pub const NFTA_SET_TABLE: u16 = 1;
pub const NFTA_SET_NAME: u16 = 2;
pub const NFTA_SET_FLAGS: u16 = 3;
pub const NFTA_SET_KEY_TYPE: u16 = 4;
pub const NFTA_SET_KEY_LEN: u16 = 5;
pub const NFTA_SET_POLICY: u16 = 8;
pub const NFTA_SET_DESC: u16 = 9;
pub const NFTA_SET_ID: u16 = 10;
pub const NFTA_SET_TIMEOUT: u16 = 11;
pub const NFTA_SET_GC_INTERVAL: u16 = 12;
pub const NFTA_SET_USERDATA: u16 = 13;
pub const NFTA_SET_HANDLE: u16 = 16;
pub const NFTA_SET_EXPR: u16 = 17;
pub const NFTA_SET_EXPRESSIONS: u16 = 18;
pub const NFTA_SET_DESC_SIZE: u16 = 1;
pub const NFTA_SET_DESC_CONCAT: u16 = 2;
pub const NFTA_SET_FIELD_LEN: u16 = 1;

pub const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
pub const NFTA_SET_ELEM_KEY: u16 = 1;
pub const NFTA_SET_ELEM_FLAGS: u16 = 3;
pub const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
pub const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
pub const NFTA_SET_ELEM_USERDATA: u16 = 6;
pub const NFTA_SET_ELEM_EXPR: u16 = 7;
pub const NFTA_SET_ELEM_KEY_END: u16 = 10;
pub const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;
pub const NFT_SET_ELEM_INTERVAL_END: u32 = 1;

pub const NFTA_DATA_VALUE: u16 = 1;
pub const NFTA_DATA_VERDICT: u16 = 2;
pub const NFTA_VERDICT_CODE: u16 = 1;
pub const NFTA_VERDICT_CHAIN: u16 = 2;

// ---- set flags ---------------------------------------------------------------------

pub const NFT_SET_ANONYMOUS: u32 = 0x1;
pub const NFT_SET_CONSTANT: u32 = 0x2;
pub const NFT_SET_INTERVAL: u32 = 0x4;
pub const NFT_SET_MAP: u32 = 0x8;
pub const NFT_SET_TIMEOUT: u32 = 0x10;
pub const NFT_SET_EVAL: u32 = 0x20;
pub const NFT_SET_CONCAT: u32 = 0x80;

// ---- verdicts ----------------------------------------------------------------------

pub const NF_DROP: i32 = 0;
pub const NF_ACCEPT: i32 = 1;
pub const NFT_CONTINUE: i32 = -1;
pub const NFT_JUMP: i32 = -3;
pub const NFT_GOTO: i32 = -4;
pub const NFT_RETURN: i32 = -5;

// ---- expressions (linux/netfilter/nf_tables.h) -------------------------------------

/// Registers: the verdict register, the first 128-bit register, the first
/// 32-bit one (`enum nft_registers`).
pub const NFT_REG_VERDICT: u32 = 0;
pub const NFT_REG_1: u32 = 1;
pub const NFT_REG32_00: u32 = 8;

pub const NFTA_IMMEDIATE_DREG: u16 = 1;
pub const NFTA_IMMEDIATE_DATA: u16 = 2;

/// `enum nft_counter_attributes`: a counter's value, both big-endian u64.
pub const NFTA_COUNTER_BYTES: u16 = 1;
pub const NFTA_COUNTER_PACKETS: u16 = 2;

pub const NFTA_CMP_SREG: u16 = 1;
pub const NFTA_CMP_OP: u16 = 2;
pub const NFTA_CMP_DATA: u16 = 3;
pub const NFT_CMP_EQ: u32 = 0;
pub const NFT_CMP_NEQ: u32 = 1;
pub const NFT_CMP_LT: u32 = 2;
pub const NFT_CMP_LTE: u32 = 3;
pub const NFT_CMP_GT: u32 = 4;
pub const NFT_CMP_GTE: u32 = 5;

pub const NFTA_RANGE_SREG: u16 = 1;
pub const NFTA_RANGE_OP: u16 = 2;
pub const NFTA_RANGE_FROM_DATA: u16 = 3;
pub const NFTA_RANGE_TO_DATA: u16 = 4;
pub const NFT_RANGE_NEQ: u32 = 1;

pub const NFTA_BITWISE_SREG: u16 = 1;
pub const NFTA_BITWISE_DREG: u16 = 2;
pub const NFTA_BITWISE_LEN: u16 = 3;
pub const NFTA_BITWISE_MASK: u16 = 4;
pub const NFTA_BITWISE_XOR: u16 = 5;

pub const NFTA_BYTEORDER_SREG: u16 = 1;
pub const NFTA_BYTEORDER_DREG: u16 = 2;
pub const NFTA_BYTEORDER_OP: u16 = 3;
pub const NFTA_BYTEORDER_LEN: u16 = 4;
pub const NFTA_BYTEORDER_SIZE: u16 = 5;
pub const NFT_BYTEORDER_HTON: u32 = 1;

pub const NFTA_PAYLOAD_DREG: u16 = 1;
pub const NFTA_PAYLOAD_BASE: u16 = 2;
pub const NFTA_PAYLOAD_OFFSET: u16 = 3;
pub const NFTA_PAYLOAD_LEN: u16 = 4;
pub const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
pub const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;

pub const NFTA_META_DREG: u16 = 1;
pub const NFTA_META_KEY: u16 = 2;
pub const NFT_META_PROTOCOL: u32 = 1;
pub const NFT_META_MARK: u32 = 3;
pub const NFT_META_IIFNAME: u32 = 6;
pub const NFT_META_OIFNAME: u32 = 7;
pub const NFT_META_NFPROTO: u32 = 15;
pub const NFT_META_L4PROTO: u32 = 16;

pub const NFTA_CT_DREG: u16 = 1;
pub const NFTA_CT_KEY: u16 = 2;
pub const NFTA_CT_DIRECTION: u16 = 3;
pub const NFT_CT_STATE: u32 = 0;
pub const NFT_CT_MARK: u32 = 3;
pub const NFT_CT_L3PROTOCOL: u32 = 7;
pub const NFT_CT_PROTOCOL: u32 = 10;
pub const NFT_CT_PROTO_SRC: u32 = 11;
pub const NFT_CT_PROTO_DST: u32 = 12;
pub const NFT_CT_SRC_IP: u32 = 19;
pub const NFT_CT_DST_IP: u32 = 20;
pub const NFT_CT_SRC_IP6: u32 = 21;
pub const NFT_CT_DST_IP6: u32 = 22;
/// `enum ip_conntrack_dir` (linux/netfilter/nf_conntrack_tuple_common.h).
pub const IP_CT_DIR_ORIGINAL: u8 = 0;
pub const IP_CT_DIR_REPLY: u8 = 1;

pub const NFTA_LOOKUP_SET: u16 = 1;
pub const NFTA_LOOKUP_SREG: u16 = 2;
pub const NFTA_LOOKUP_SET_ID: u16 = 4;
pub const NFTA_LOOKUP_FLAGS: u16 = 5;
pub const NFT_LOOKUP_F_INV: u32 = 1;

pub const NFTA_DYNSET_SET_NAME: u16 = 1;
pub const NFTA_DYNSET_SET_ID: u16 = 2;
pub const NFTA_DYNSET_OP: u16 = 3;
pub const NFTA_DYNSET_SREG_KEY: u16 = 4;
pub const NFTA_DYNSET_EXPR: u16 = 7;
pub const NFT_DYNSET_OP_ADD: u32 = 0;

pub const NFTA_LIMIT_RATE: u16 = 1;
pub const NFTA_LIMIT_UNIT: u16 = 2;
pub const NFTA_LIMIT_BURST: u16 = 3;
pub const NFTA_LIMIT_TYPE: u16 = 4;
pub const NFTA_LIMIT_FLAGS: u16 = 5;
pub const NFT_LIMIT_PKTS: u32 = 0;
pub const NFT_LIMIT_F_INV: u32 = 1;

pub const NFTA_LOG_PREFIX: u16 = 2;
pub const NFTA_LOG_LEVEL: u16 = 5;
pub const NFTA_LOG_FLAGS: u16 = 6;
/// Log flags (linux/netfilter/nf_log.h).
pub const NF_LOG_TCPSEQ: u32 = 0x01;
pub const NF_LOG_TCPOPT: u32 = 0x02;
pub const NF_LOG_IPOPT: u32 = 0x04;
pub const NF_LOG_UID: u32 = 0x08;
pub const NF_LOG_MACDECODE: u32 = 0x20;
pub const NF_LOG_MASK: u32 = 0x2f;

pub const NFTA_REJECT_TYPE: u16 = 1;
pub const NFTA_REJECT_ICMP_CODE: u16 = 2;
pub const NFT_REJECT_TCP_RST: u32 = 1;
pub const NFT_REJECT_ICMPX_UNREACH: u32 = 2;
pub const NFT_REJECT_ICMPX_NO_ROUTE: u8 = 0;
pub const NFT_REJECT_ICMPX_PORT_UNREACH: u8 = 1;
pub const NFT_REJECT_ICMPX_HOST_UNREACH: u8 = 2;
pub const NFT_REJECT_ICMPX_ADMIN_PROHIBITED: u8 = 3;

/// `NFPROTO_*` (linux/netfilter.h): the families.
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_ARP: u8 = 3;
pub const NFPROTO_NETDEV: u8 = 5;
pub const NFPROTO_BRIDGE: u8 = 7;
pub const NFPROTO_IPV6: u8 = 10;

/// EtherTypes (linux/if_ether.h).
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

/// IP protocol numbers (linux/in.h).
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

// ---- families, hooks ---------------------------------------------------------------

/// nft's family name → NFPROTO_* number.
pub fn family_number(name: &str) -> Option<u8> {
    Some(match name {
        "ip" => 2,
        "inet" => 1,
        "ip6" => 10,
        "bridge" => 7,
        "arp" => 3,
        "netdev" => 5,
        _ => return None,
    })
}

pub fn family_name(n: u8) -> &'static str {
    match n {
        2 => "ip",
        1 => "inet",
        10 => "ip6",
        7 => "bridge",
        3 => "arp",
        5 => "netdev",
        _ => "unknown",
    }
}

pub fn hook_number(name: &str) -> Option<u32> {
    Some(match name {
        "prerouting" | "ingress" => 0,
        "input" => 1,
        "forward" => 2,
        "output" => 3,
        "postrouting" => 4,
        _ => return None,
    })
}

pub fn hook_name(family: u8, n: u32) -> &'static str {
    match (family, n) {
        (5, 0) => "ingress",
        (_, 0) => "prerouting",
        (_, 1) => "input",
        (_, 2) => "forward",
        (_, 3) => "output",
        (_, 4) => "postrouting",
        _ => "unknown",
    }
}

// ---- data types --------------------------------------------------------------------

/// The byte order nft records for a set key (`NFTNL_UDATA_SET_KEYBYTEORDER`).
pub const BYTEORDER_INVALID: u32 = 0;
pub const BYTEORDER_HOST: u32 = 1;
pub const BYTEORDER_BIG: u32 = 2;

/// One value of a match or a set element: a name or a number, as both the
/// typed statements and nft's JSON give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar<'a> {
    Str(&'a str),
    Num(u64),
}

impl std::fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Str(s) => write!(f, "{s}"),
            Scalar::Num(n) => write!(f, "{n}"),
        }
    }
}

/// A data type of nft's language (a subset: what portwall's tables use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Ipv4Addr,
    Ipv6Addr,
    InetProto,
    InetService,
    Ifname,
    Mark,
    EtherType,
    IcmpType,
    Icmpv6Type,
    CtState,
    Nfproto,
    Integer(u8),
}

impl DataType {
    /// nft's type number (`TYPE_*`), as written in `NFTA_SET_KEY_TYPE`.
    pub fn id(self) -> u32 {
        match self {
            DataType::Integer(_) => 4,
            DataType::Nfproto => 2,
            DataType::Ipv4Addr => 7,
            DataType::Ipv6Addr => 8,
            DataType::EtherType => 10,
            DataType::InetProto => 12,
            DataType::InetService => 13,
            DataType::IcmpType => 14,
            DataType::Mark => 19,
            DataType::CtState => 26,
            DataType::Icmpv6Type => 29,
            DataType::Ifname => 41,
        }
    }

    pub fn from_id(id: u32, len: usize) -> Option<DataType> {
        Some(match id {
            2 => DataType::Nfproto,
            4 => DataType::Integer(len.min(16) as u8),
            7 => DataType::Ipv4Addr,
            8 => DataType::Ipv6Addr,
            10 => DataType::EtherType,
            12 => DataType::InetProto,
            13 => DataType::InetService,
            14 => DataType::IcmpType,
            19 => DataType::Mark,
            26 => DataType::CtState,
            29 => DataType::Icmpv6Type,
            41 => DataType::Ifname,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::Ipv4Addr => "ipv4_addr",
            DataType::Ipv6Addr => "ipv6_addr",
            DataType::InetProto => "inet_proto",
            DataType::InetService => "inet_service",
            DataType::Ifname => "ifname",
            DataType::Mark => "mark",
            DataType::EtherType => "ether_type",
            DataType::IcmpType => "icmp_type",
            DataType::Icmpv6Type => "icmpv6_type",
            DataType::CtState => "ct_state",
            DataType::Nfproto => "nf_proto",
            DataType::Integer(_) => "integer",
        }
    }

    pub fn from_name(name: &str) -> Option<DataType> {
        Some(match name {
            "ipv4_addr" => DataType::Ipv4Addr,
            "ipv6_addr" => DataType::Ipv6Addr,
            "inet_proto" => DataType::InetProto,
            "inet_service" => DataType::InetService,
            "ifname" => DataType::Ifname,
            "mark" => DataType::Mark,
            "ether_type" => DataType::EtherType,
            "icmp_type" => DataType::IcmpType,
            "icmpv6_type" => DataType::Icmpv6Type,
            "ct_state" => DataType::CtState,
            _ => return None,
        })
    }

    /// Length of a value in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        match self {
            DataType::Ipv4Addr | DataType::Mark | DataType::CtState => 4,
            DataType::Ipv6Addr | DataType::Ifname => 16,
            DataType::InetProto | DataType::IcmpType | DataType::Icmpv6Type | DataType::Nfproto => {
                1
            }
            DataType::InetService | DataType::EtherType => 2,
            DataType::Integer(n) => n as usize,
        }
    }

    /// The byte order nft records in a set's user data for a key of this type.
    pub fn byteorder(self) -> u32 {
        match self {
            DataType::Ipv4Addr
            | DataType::Ipv6Addr
            | DataType::InetService
            | DataType::EtherType => BYTEORDER_BIG,
            DataType::Mark | DataType::CtState | DataType::Ifname => BYTEORDER_HOST,
            _ => BYTEORDER_INVALID,
        }
    }

    /// Whether nft prints an interval of this type as a prefix when it is one.
    pub fn prefixes(self) -> bool {
        matches!(
            self,
            DataType::Ipv4Addr | DataType::Ipv6Addr | DataType::Mark
        )
    }

    /// Whether values are host-endian in registers (a concatenated interval key
    /// converts them with a `byteorder` expression).
    pub fn host_endian(self) -> bool {
        matches!(
            self,
            DataType::InetProto | DataType::Mark | DataType::CtState
        )
    }

    /// Parses one value (no prefix or range) into its `len()` bytes.
    pub fn parse_scalar(self, v: Scalar<'_>) -> Result<Vec<u8>, String> {
        let bad = || format!("'{v}' is not a valid {}", self.name());
        let as_str = || match v {
            Scalar::Str(s) => Some(s),
            Scalar::Num(_) => None,
        };
        let as_u64 = || match v {
            Scalar::Num(n) => Some(n),
            Scalar::Str(_) => None,
        };
        match self {
            DataType::Ipv4Addr => {
                let a: Ipv4Addr = as_str().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                Ok(a.octets().to_vec())
            }
            DataType::Ipv6Addr => {
                let a: Ipv6Addr = as_str().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                Ok(a.octets().to_vec())
            }
            DataType::InetProto => {
                let n = match v {
                    Scalar::Str(s) => proto_number(s).ok_or_else(bad)?,
                    Scalar::Num(n) => u8::try_from(n).map_err(|_| bad())?,
                };
                Ok(vec![n])
            }
            DataType::InetService | DataType::EtherType => {
                let n: u16 = match v {
                    Scalar::Str(s) => match (self, s) {
                        (DataType::EtherType, "ip") => 0x0800,
                        (DataType::EtherType, "ip6") => 0x86dd,
                        (DataType::EtherType, "arp") => 0x0806,
                        (DataType::EtherType, "vlan") => 0x8100,
                        _ => s.parse().ok().or_else(|| service_port(s)).ok_or_else(bad)?,
                    },
                    Scalar::Num(n) => u16::try_from(n).map_err(|_| bad())?,
                };
                Ok(n.to_be_bytes().to_vec())
            }
            DataType::Ifname => {
                let s = as_str().ok_or_else(bad)?;
                if s.len() >= 16 || s.ends_with('*') {
                    return Err(bad());
                }
                let mut b = vec![0u8; 16];
                b[..s.len()].copy_from_slice(s.as_bytes());
                Ok(b)
            }
            DataType::Mark => {
                let n = as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(bad)?;
                Ok(n.to_ne_bytes().to_vec())
            }
            DataType::IcmpType | DataType::Icmpv6Type => {
                let n = match v {
                    Scalar::Str(s) => {
                        let table = if self == DataType::IcmpType {
                            ICMP_TYPES
                        } else {
                            ICMPV6_TYPES
                        };
                        table
                            .iter()
                            .find(|(_, name)| *name == s)
                            .map(|(n, _)| *n)
                            .or_else(|| s.parse().ok())
                            .ok_or_else(bad)?
                    }
                    Scalar::Num(n) => u8::try_from(n).map_err(|_| bad())?,
                };
                Ok(vec![n])
            }
            DataType::CtState => {
                let s = as_str().ok_or_else(bad)?;
                let bits = CT_STATES
                    .iter()
                    .find(|(_, name)| *name == s)
                    .map(|(b, _)| *b)
                    .ok_or_else(bad)?;
                Ok(bits.to_ne_bytes().to_vec())
            }
            DataType::Nfproto => {
                let n = match v {
                    Scalar::Str("ipv4") => 2,
                    Scalar::Str("ipv6") => 10,
                    _ => as_u64()
                        .and_then(|n| u8::try_from(n).ok())
                        .ok_or_else(bad)?,
                };
                Ok(vec![n])
            }
            DataType::Integer(len) => {
                let n = as_u64().ok_or_else(bad)?;
                let b = n.to_be_bytes();
                Ok(b[8 - len as usize..].to_vec())
            }
        }
    }

    /// A value in nft's text syntax, as `nft list` prints it.
    pub fn text(self, b: &[u8]) -> String {
        match self {
            DataType::Ipv4Addr if b.len() >= 4 => Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
            DataType::Ipv6Addr if b.len() >= 16 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[..16]);
                Ipv6Addr::from(o).to_string()
            }
            DataType::InetProto if !b.is_empty() => match proto_name(b[0]) {
                Some(n) => n.to_string(),
                None => b[0].to_string(),
            },
            DataType::InetService if b.len() >= 2 => u16::from_be_bytes([b[0], b[1]]).to_string(),
            DataType::EtherType if b.len() >= 2 => match u16::from_be_bytes([b[0], b[1]]) {
                ETH_P_IP => "ip".into(),
                ETH_P_IPV6 => "ip6".into(),
                0x0806 => "arp".into(),
                0x8100 => "vlan".into(),
                n => n.to_string(),
            },
            DataType::Ifname => {
                let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
                String::from_utf8_lossy(&b[..end]).into_owned()
            }
            DataType::Mark if b.len() >= 4 => {
                u32::from_ne_bytes([b[0], b[1], b[2], b[3]]).to_string()
            }
            DataType::IcmpType | DataType::Icmpv6Type if !b.is_empty() => {
                let table = if self == DataType::IcmpType {
                    ICMP_TYPES
                } else {
                    ICMPV6_TYPES
                };
                match table.iter().find(|(n, _)| *n == b[0]) {
                    Some((_, name)) => name.to_string(),
                    None => b[0].to_string(),
                }
            }
            DataType::CtState if b.len() >= 4 => {
                let bits = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                let names: Vec<&str> = CT_STATES
                    .iter()
                    .filter(|(bit, _)| bits & bit != 0)
                    .map(|(_, n)| *n)
                    .collect();
                names.join(",")
            }
            DataType::Nfproto if !b.is_empty() => match b[0] {
                NFPROTO_IPV4 => "ipv4".into(),
                NFPROTO_IPV6 => "ipv6".into(),
                n => n.to_string(),
            },
            _ => b
                .iter()
                .take(8)
                .fold(0u64, |n, x| (n << 8) | *x as u64)
                .to_string(),
        }
    }
}

/// Bit values of `ct state`.
pub const CT_STATES: &[(u32, &str)] = &[
    (1, "invalid"),
    (2, "established"),
    (4, "related"),
    (8, "new"),
    (64, "untracked"),
];

/// ICMP types by the names nft prints.
pub const ICMP_TYPES: &[(u8, &str)] = &[
    (0, "echo-reply"),
    (3, "destination-unreachable"),
    (4, "source-quench"),
    (5, "redirect"),
    (8, "echo-request"),
    (9, "router-advertisement"),
    (10, "router-solicitation"),
    (11, "time-exceeded"),
    (12, "parameter-problem"),
    (13, "timestamp-request"),
    (14, "timestamp-reply"),
    (15, "info-request"),
    (16, "info-reply"),
    (17, "address-mask-request"),
    (18, "address-mask-reply"),
];

/// ICMPv6 types by the names nft prints.
pub const ICMPV6_TYPES: &[(u8, &str)] = &[
    (1, "destination-unreachable"),
    (2, "packet-too-big"),
    (3, "time-exceeded"),
    (4, "parameter-problem"),
    (128, "echo-request"),
    (129, "echo-reply"),
    (130, "mld-listener-query"),
    (131, "mld-listener-report"),
    (132, "mld-listener-done"),
    (133, "nd-router-solicit"),
    (134, "nd-router-advert"),
    (135, "nd-neighbor-solicit"),
    (136, "nd-neighbor-advert"),
    (137, "nd-redirect"),
    (138, "router-renumbering"),
    (141, "ind-neighbor-solicit"),
    (142, "ind-neighbor-advert"),
    (143, "mld2-listener-report"),
];

/// IP protocol names as /etc/protocols (and so nft) spells them.
const PROTOCOLS: &[(u8, &str)] = &[
    (0, "ip"),
    (1, "icmp"),
    (2, "igmp"),
    (4, "ipencap"),
    (6, "tcp"),
    (17, "udp"),
    (41, "ipv6"),
    (47, "gre"),
    (50, "esp"),
    (51, "ah"),
    (58, "ipv6-icmp"),
    (132, "sctp"),
    (136, "udplite"),
];

pub fn proto_name(n: u8) -> Option<&'static str> {
    PROTOCOLS.iter().find(|(p, _)| *p == n).map(|(_, s)| *s)
}

pub fn proto_number(s: &str) -> Option<u8> {
    if s == "icmpv6" {
        return Some(58);
    }
    PROTOCOLS
        .iter()
        .find(|(_, name)| *name == s)
        .map(|(p, _)| *p)
        .or_else(|| s.parse().ok())
}

/// The few service names nft resolves without /etc/services that portwall's
/// tables could carry (it writes port numbers).
fn service_port(s: &str) -> Option<u16> {
    Some(match s {
        "ssh" => 22,
        "http" => 80,
        "https" => 443,
        "domain" => 53,
        "smtp" => 25,
        _ => return None,
    })
}

/// Rounds a length in bytes up to whole 32-bit registers.
pub fn reg_space(len: usize) -> usize {
    len.div_ceil(4) * 4
}
