//! Hosts: an IP address literal, or a name resolved to every address it has.

use crate::ProbeError;
use std::net::IpAddr;

const ACCEPTED_HOST: &str = "expected an IPv4 address (203.0.113.10), an IPv6 address (2001:db8::10) or a hostname (server.example)";

/// A host as the user wrote it, checked for syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    Addr(IpAddr),
    Name(String),
}

fn bad(host: &str, reason: impl Into<String>) -> ProbeError {
    ProbeError::BadHost {
        host: host.to_string(),
        reason: reason.into(),
    }
}

/// Checks the syntax of `host`: an IP literal (IPv6 optionally in brackets) or a DNS
/// name (letters, digits, `-` and `_`, dot-separated labels of at most 63 bytes, at
/// most 253 bytes in all).
pub(crate) fn parse_host(host: &str) -> Result<Host, ProbeError> {
    let h = host.trim();
    if h.is_empty() {
        return Err(bad(host, format!("empty host: {ACCEPTED_HOST}")));
    }
    let unbracketed = h
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(h);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        if ip.is_unspecified() {
            return Err(bad(
                host,
                "the unspecified address cannot be probed: give the address of a host",
            ));
        }
        return Ok(Host::Addr(ip));
    }
    if h.contains(':') {
        if h.matches(':').count() == 1 {
            return Err(bad(
                host,
                "give the port separately, not as host:port (e.g. `portwall probe 203.0.113.10 22`)",
            ));
        }
        return Err(bad(
            host,
            format!("not a valid IPv6 address: {ACCEPTED_HOST}"),
        ));
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    if name.len() > 253 {
        return Err(bad(host, "a hostname is at most 253 characters long"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels
        .iter()
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    {
        // All-numeric: meant as an IPv4 address, and not a valid one (the C resolver
        // would read `10.1` or `167772161` as an address, which surprises everyone).
        return Err(bad(
            host,
            format!("not a valid IPv4 address: {ACCEPTED_HOST}"),
        ));
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad(host, format!("not a valid hostname: {ACCEPTED_HOST}")));
        }
    }
    Ok(Host::Name(name.to_string()))
}

/// The addresses of `host`: the address itself for an IP literal, or every address
/// (IPv4 and IPv6) the resolver returns for a name, without duplicates and in the
/// resolver's order.
pub async fn resolve(host: &str) -> Result<Vec<IpAddr>, ProbeError> {
    match parse_host(host)? {
        Host::Addr(ip) => Ok(vec![ip]),
        Host::Name(name) => {
            let found = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(|e| ProbeError::Resolve {
                    host: host.to_string(),
                    reason: e.to_string(),
                })?;
            let mut out: Vec<IpAddr> = Vec::new();
            for sa in found {
                let ip = match sa.ip() {
                    // Normalise v4-mapped answers to plain IPv4.
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                    v4 => v4,
                };
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
            if out.is_empty() {
                return Err(ProbeError::Resolve {
                    host: host.to_string(),
                    reason: "the name has no IPv4 or IPv6 address".into(),
                });
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(
            parse_host("203.0.113.10").unwrap(),
            Host::Addr("203.0.113.10".parse().unwrap())
        );
        assert_eq!(
            parse_host("2001:db8::10").unwrap(),
            Host::Addr("2001:db8::10".parse().unwrap())
        );
        assert_eq!(
            parse_host("[2001:db8::10]").unwrap(),
            Host::Addr("2001:db8::10".parse().unwrap())
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            parse_host("server.example").unwrap(),
            Host::Name("server.example".into())
        );
        assert_eq!(
            parse_host("server.example.").unwrap(),
            Host::Name("server.example".into())
        );
        assert_eq!(
            parse_host("my_host-1").unwrap(),
            Host::Name("my_host-1".into())
        );
    }

    #[test]
    fn bad_hosts_say_why() {
        for (h, want) in [
            ("", "empty host"),
            ("203.0.113.300", "not a valid IPv4 address"),
            ("10.1", "not a valid IPv4 address"),
            ("203.0.113.10:22", "give the port separately"),
            ("2001:db8::zz", "not a valid IPv6 address"),
            ("bad host", "not a valid hostname"),
            ("-x.example", "not a valid hostname"),
            ("a..b", "not a valid hostname"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
        ] {
            let e = parse_host(h).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, ProbeError::BadHost { .. }), "{h}: {msg}");
            assert!(msg.contains(want), "{h}: {msg}");
            assert!(msg.contains(&format!("{h:?}")), "names the input: {msg}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(parse_host(&long).is_err());
    }
}
