//! Kernel dumps → [`KernelTable`]: a table's chains, rules (their comments
//! and counters) and set elements decoded by the sets' key types into the
//! typed values both the host and the edge compare, with no text in
//! between.

use super::decode::{
    counter_of, cstr, dump, get, interval_ranges, name_z, prefix_len, set_elements, table_names,
    table_sets, CountedRange, KSet,
};
use super::socket::{attrs, NfSocket};
use super::types::*;
use super::Error;
use crate::readback::{KernelChain, KernelElement, KernelRule, KernelTable, KeyPart};
use ipnet::IpNet;
use model::PortRange;
use std::net::{Ipv4Addr, Ipv6Addr};

/// One field `start..=end` of type `t` as a typed part; `None` for a type
/// portwall's sets do not have, or a range that is not one.
fn part(t: DataType, start: &[u8], end: &[u8]) -> Option<KeyPart> {
    match t {
        DataType::Ipv4Addr => {
            let a = Ipv4Addr::from(<[u8; 4]>::try_from(start).ok()?);
            let len = prefix_len(start, end.get(..4)?)?;
            IpNet::new(a.into(), len).ok().map(KeyPart::Net)
        }
        DataType::Ipv6Addr => {
            let a = Ipv6Addr::from(<[u8; 16]>::try_from(start).ok()?);
            let len = prefix_len(start, end.get(..16)?)?;
            IpNet::new(a.into(), len).ok().map(KeyPart::Net)
        }
        DataType::InetProto => (start == end).then(|| KeyPart::Proto(start[0])),
        DataType::InetService => {
            let port = |b: &[u8]| Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
            PortRange::new(port(start)?, port(end)?).map(KeyPart::Ports)
        }
        _ => None,
    }
}

/// The key `start..=end` of an element of `set`, part by part.
fn key(set: &KSet, start: &[u8], end: &[u8]) -> Option<Vec<KeyPart>> {
    let mut off = 0;
    let mut parts = Vec::with_capacity(set.types.len());
    for t in &set.types {
        let len = t.len();
        parts.push(part(
            *t,
            start.get(off..off + len)?,
            end.get(off..off + len)?,
        )?);
        off += if set.types.len() > 1 {
            reg_space(len)
        } else {
            len
        };
    }
    Some(parts)
}

fn element(set: &KSet, (start, end, counter): &CountedRange) -> KernelElement {
    let (packets, bytes) = counter.unwrap_or((0, 0));
    KernelElement {
        key: key(set, start, end),
        packets,
        bytes,
    }
}

/// The table `name` of `family`; `None` when it does not exist.
pub fn read_table(
    sock: &mut NfSocket,
    family: u8,
    name: &str,
) -> Result<Option<KernelTable>, Error> {
    if !table_names(sock, family)?.iter().any(|(n, _, _)| n == name) {
        return Ok(None);
    }
    let mut table = KernelTable::default();
    let tz = name_z(name);
    for set in table_sets(sock, family, name)? {
        if set.flags & NFT_SET_ANONYMOUS != 0 {
            continue;
        }
        let elems = set_elements(sock, family, &tz, &name_z(&set.name), set.size.is_none())?;
        let ranges: Vec<CountedRange> = if set.flags & NFT_SET_INTERVAL != 0 && set.types.len() == 1
        {
            interval_ranges(set.types[0].len(), elems)
        } else {
            elems
                .into_iter()
                .map(|e| {
                    let end = e.key_end.unwrap_or_else(|| e.key.clone());
                    (e.key, end, e.counter)
                })
                .collect()
        };
        let elements = ranges.iter().map(|r| element(&set, r)).collect();
        table.sets.insert(set.name, elements);
    }
    table.chains = chains(sock, family, name)?;
    Ok(Some(table))
}

/// The chains of the table `name`, in the kernel's order, each with its rules
/// (their comments and counters) in order.
pub(crate) fn chains(
    sock: &mut NfSocket,
    family: u8,
    name: &str,
) -> Result<Vec<KernelChain>, Error> {
    let tz = name_z(name);
    let mut chains = Vec::new();
    for r in dump(sock, NFT_MSG_GETCHAIN, family, &[])? {
        let Some(p) = r.payload.get(4..) else {
            continue;
        };
        let a: Vec<(u16, &[u8])> = attrs(p).collect();
        if get(&a, NFTA_CHAIN_TABLE).map(cstr).as_deref() != Some(name) {
            continue;
        }
        let hook: Option<Vec<(u16, &[u8])>> = get(&a, NFTA_CHAIN_HOOK).map(|h| attrs(h).collect());
        let hook = hook.as_deref();
        let number = |ha: &[(u16, &[u8])], t| {
            get(ha, t).map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
        };
        chains.push(KernelChain {
            name: get(&a, NFTA_CHAIN_NAME).map(cstr).unwrap_or_default(),
            hook: hook.and_then(|ha| {
                number(ha, NFTA_HOOK_HOOKNUM).map(|n| hook_name(family, n).to_string())
            }),
            prio: hook
                .and_then(|ha| number(ha, NFTA_HOOK_PRIORITY))
                .map(|p| p as i32 as i64),
            rules: Vec::new(),
        });
    }
    for r in dump(sock, NFT_MSG_GETRULE, family, &[(NFTA_RULE_TABLE, &tz)])? {
        let Some(p) = r.payload.get(4..) else {
            continue;
        };
        let a: Vec<(u16, &[u8])> = attrs(p).collect();
        if get(&a, NFTA_RULE_TABLE).map(cstr).as_deref() != Some(name) {
            continue;
        }
        let chain = get(&a, NFTA_RULE_CHAIN).map(cstr).unwrap_or_default();
        let (packets, bytes) = get(&a, NFTA_RULE_EXPRESSIONS)
            .and_then(|list| attrs(list).find_map(|(_, e)| counter_of(e)))
            .unwrap_or((0, 0));
        let rule = KernelRule {
            comment: get(&a, NFTA_RULE_USERDATA).and_then(rule_comment),
            packets,
            bytes,
        };
        if let Some(c) = chains.iter_mut().find(|c| c.name == chain) {
            c.rules.push(rule);
        }
    }
    Ok(chains)
}

/// The comment in a rule's user data (`NFTNL_UDATA_RULE_COMMENT`, type 0).
pub(crate) fn rule_comment(ud: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 2 <= ud.len() {
        let (ty, len) = (ud[i], ud[i + 1] as usize);
        if ty == 0 && i + 2 + len <= ud.len() {
            return Some(cstr(&ud[i + 2..i + 2 + len]));
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_read_from_their_first_and_last_address() {
        assert_eq!(prefix_len(&[10, 0, 0, 0], &[10, 255, 255, 255]), Some(8));
        assert_eq!(prefix_len(&[10, 0, 0, 1], &[10, 0, 0, 1]), Some(32));
        assert_eq!(prefix_len(&[10, 0, 0, 1], &[10, 0, 0, 2]), None);
        assert_eq!(
            part(DataType::InetService, &[0, 80], &[0, 90]),
            PortRange::new(80, 90).map(KeyPart::Ports)
        );
    }
}
