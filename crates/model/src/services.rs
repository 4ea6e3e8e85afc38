//! Service names (`ssh`, `http`, `postgresql`) and the ports they stand for.
//!
//! The parser resolves names through a [`Services`] table: the built-in one below,
//! overlaid with `/etc/services` when the caller reads it (this crate does no I/O;
//! [`Services::with_etc_services`] takes the file's text). The built-in table makes
//! rules mean the same on hosts whose `/etc/services` is missing or trimmed. The same
//! table names the service usually found on a port ([`Services::name_of`]), for
//! display next to a port number (nmap's SERVICE column, `netstat`'s names).

use crate::profiles::{parse_profiles, ProfileError, ProfilePorts, Profiles, DEBIAN_PROFILES};
use crate::rule::Protocol;
use std::collections::HashMap;

/// Which transports a service name covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Transports {
    pub tcp: bool,
    pub udp: bool,
}

impl Transports {
    pub const TCP: Transports = Transports {
        tcp: true,
        udp: false,
    };
    pub const UDP: Transports = Transports {
        tcp: false,
        udp: true,
    };
    pub const BOTH: Transports = Transports {
        tcp: true,
        udp: true,
    };
}

/// A table of service names.
#[derive(Debug, Clone)]
pub struct Services {
    by_name: HashMap<String, (u16, Transports)>,
    /// The usual name of each (port, TCP or UDP): the first one listed.
    by_port: HashMap<(u16, Protocol), String>,
    /// UFW's application profiles ([`crate::profiles`]).
    profiles: Profiles,
}

/// The built-in table: (name, port, transports). The first name listed for a port
/// and transport is the one [`Services::name_of`] gives.
const BUILTIN: &[(&str, u16, Transports)] = &[
    ("ftp", 21, Transports::TCP),
    ("ssh", 22, Transports::TCP),
    ("telnet", 23, Transports::TCP),
    ("smtp", 25, Transports::TCP),
    ("domain", 53, Transports::BOTH),
    ("dns", 53, Transports::BOTH),
    ("bootps", 67, Transports::UDP),
    ("tftp", 69, Transports::UDP),
    ("http", 80, Transports::TCP),
    ("www", 80, Transports::TCP),
    ("pop3", 110, Transports::TCP),
    ("sunrpc", 111, Transports::BOTH),
    ("rpcbind", 111, Transports::BOTH),
    ("ntp", 123, Transports::UDP),
    ("netbios-ns", 137, Transports::UDP),
    ("imap", 143, Transports::TCP),
    ("imap2", 143, Transports::TCP),
    ("snmp", 161, Transports::UDP),
    ("ldap", 389, Transports::TCP),
    ("https", 443, Transports::TCP),
    ("microsoft-ds", 445, Transports::TCP),
    ("smtps", 465, Transports::TCP),
    ("submissions", 465, Transports::TCP),
    ("isakmp", 500, Transports::UDP),
    ("syslog", 514, Transports::UDP),
    ("submission", 587, Transports::TCP),
    ("ldaps", 636, Transports::TCP),
    ("imaps", 993, Transports::TCP),
    ("pop3s", 995, Transports::TCP),
    ("openvpn", 1194, Transports::UDP),
    ("ms-sql-s", 1433, Transports::TCP),
    ("mssql", 1433, Transports::TCP),
    ("oracle", 1521, Transports::TCP),
    ("ssdp", 1900, Transports::UDP),
    ("nfs", 2049, Transports::BOTH),
    ("docker", 2375, Transports::TCP),
    ("docker-tls", 2376, Transports::TCP),
    ("etcd", 2379, Transports::TCP),
    ("mysql", 3306, Transports::TCP),
    ("ms-wbt-server", 3389, Transports::TCP),
    ("rdp", 3389, Transports::TCP),
    ("ipsec-nat-t", 4500, Transports::UDP),
    ("mdns", 5353, Transports::UDP),
    ("postgresql", 5432, Transports::TCP),
    ("postgres", 5432, Transports::TCP),
    ("amqp", 5672, Transports::TCP),
    ("vnc", 5900, Transports::TCP),
    ("couchdb", 5984, Transports::TCP),
    ("kubernetes", 6443, Transports::TCP),
    ("redis", 6379, Transports::TCP),
    ("http-alt", 8080, Transports::TCP),
    ("https-alt", 8443, Transports::TCP),
    ("elasticsearch", 9200, Transports::TCP),
    ("kubelet", 10250, Transports::TCP),
    ("memcached", 11211, Transports::TCP),
    ("rabbitmq-mgmt", 15672, Transports::TCP),
    ("mongodb", 27017, Transports::TCP),
    ("wireguard", 51820, Transports::UDP),
];

impl Default for Services {
    fn default() -> Self {
        Services::builtin()
    }
}

impl Services {
    /// The built-in table only.
    pub fn builtin() -> Services {
        let by_name = BUILTIN
            .iter()
            .map(|&(n, p, t)| (n.to_string(), (p, t)))
            .collect();
        let mut by_port = HashMap::new();
        for &(name, port, t) in BUILTIN {
            for (covered, proto) in [(t.tcp, Protocol::Tcp), (t.udp, Protocol::Udp)] {
                if covered {
                    by_port
                        .entry((port, proto))
                        .or_insert_with(|| name.to_string());
                }
            }
        }
        let profiles = parse_profiles(DEBIAN_PROFILES).expect("the built-in profiles read");
        Services {
            by_name,
            by_port,
            profiles,
        }
    }

    /// Adds the profiles of one file of `/etc/ufw/applications.d` (a profile of
    /// the same name replaces the built-in one); a file that does not read
    /// adds nothing and says why.
    pub fn add_profiles(&mut self, text: &str) -> Result<(), ProfileError> {
        self.profiles.extend(parse_profiles(text)?);
        Ok(())
    }

    /// The ports of the application profile `name` (case matters, as in UFW).
    pub fn profile(&self, name: &str) -> Option<&ProfilePorts> {
        self.profiles.get(name)
    }

    /// The name of a profile that `name` names but for its case.
    pub fn profile_named_like(&self, name: &str) -> Option<&str> {
        self.profiles
            .keys()
            .find(|n| n.eq_ignore_ascii_case(name))
            .map(String::as_str)
    }

    /// Every profile, by name.
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// The built-in table overlaid with the entries of an `/etc/services` text
    /// (`name port/proto [aliases...] [# comment]`). Lines that do not parse are
    /// skipped, as every other reader of that file does.
    pub fn with_etc_services(text: &str) -> Services {
        let mut s = Services::builtin();
        let mut seen: HashMap<String, (u16, Transports)> = HashMap::new();
        let mut names: HashMap<(u16, Protocol), String> = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            let (Some(name), Some(portproto)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some((port, proto)) = portproto.split_once('/') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            if port == 0 {
                continue;
            }
            let (t, p) = match proto {
                "tcp" => (Transports::TCP, Protocol::Tcp),
                "udp" => (Transports::UDP, Protocol::Udp),
                _ => continue,
            };
            names.entry((port, p)).or_insert_with(|| name.to_string());
            for n in std::iter::once(name).chain(fields) {
                let e = seen.entry(n.to_string()).or_insert((
                    port,
                    Transports {
                        tcp: false,
                        udp: false,
                    },
                ));
                if e.0 == port {
                    e.1.tcp |= t.tcp;
                    e.1.udp |= t.udp;
                }
            }
        }
        s.by_name.extend(seen);
        s.by_port.extend(names);
        s
    }

    /// The port and transports of a service name.
    pub fn lookup(&self, name: &str) -> Option<(u16, Transports)> {
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    /// A port, a range (`A:B` or `A-B`, [`crate::PortRange`]'s grammar) or
    /// a service name, as one range; the error names the text and what is
    /// accepted.
    pub fn port_range(&self, text: &str) -> Result<crate::PortRange, String> {
        if text.contains([':', '-']) || text.bytes().all(|c| c.is_ascii_digit()) {
            return text.parse().map_err(|e: crate::PortError| e.to_string());
        }
        self.lookup(text)
            .map(|(p, _)| crate::PortRange::single(p))
            .ok_or_else(|| {
                format!("'{text}' is not a port, port range (A:B or A-B) or known service name (ssh, http, https, ...)")
            })
    }

    /// The name of the service usually found on `port` over `protocol` (TCP or UDP;
    /// `None` for the others): the first name `/etc/services` gives it, else the
    /// built-in one.
    pub fn name_of(&self, port: u16, protocol: Protocol) -> Option<&str> {
        self.by_port.get(&(port, protocol)).map(String::as_str)
    }
}

/// Services that must not be reachable from the whole internet: databases, caches,
/// container and admin APIs. `audit` flags them when they are EXPOSED.
const RISKY: &[(u16, &str)] = &[
    (23, "telnet"),
    (111, "rpcbind"),
    (445, "smb"),
    (1433, "mssql"),
    (1521, "oracle"),
    (2049, "nfs"),
    (2375, "docker API"),
    (2376, "docker API (TLS)"),
    (2379, "etcd"),
    (3306, "mysql"),
    (3389, "rdp"),
    (5432, "postgresql"),
    (5900, "vnc"),
    (5984, "couchdb"),
    (6379, "redis"),
    (6443, "kubernetes API"),
    (8086, "influxdb"),
    (9000, "php-fpm / admin"),
    (9090, "prometheus / cockpit"),
    (9200, "elasticsearch"),
    (9300, "elasticsearch transport"),
    (10250, "kubelet API"),
    (11211, "memcached"),
    (15672, "rabbitmq admin"),
    (27017, "mongodb"),
];

/// The name of a well-known risky service on `port`, if it is one.
pub fn risky_service(port: u16) -> Option<&'static str> {
    RISKY.iter().find(|(p, _)| *p == port).map(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_ports() {
        let s = Services::builtin();
        assert_eq!(s.name_of(22, Protocol::Tcp), Some("ssh"));
        assert_eq!(s.name_of(53, Protocol::Udp), Some("domain"));
        assert_eq!(
            s.name_of(80, Protocol::Tcp),
            Some("http"),
            "the first name listed"
        );
        assert_eq!(s.name_of(1433, Protocol::Tcp), Some("ms-sql-s"));
        assert_eq!(s.name_of(123, Protocol::Tcp), None, "ntp is UDP only");
        assert_eq!(s.name_of(123, Protocol::Udp), Some("ntp"));
        assert_eq!(s.name_of(22, Protocol::Any), None);
        assert_eq!(s.name_of(4, Protocol::Tcp), None);
        // Every built-in name has a port that names it back, over one of its transports.
        for &(name, port, t) in BUILTIN {
            assert_eq!(s.lookup(name), Some((port, t)), "{name}");
            let back = [(t.tcp, Protocol::Tcp), (t.udp, Protocol::Udp)]
                .into_iter()
                .filter(|(covered, _)| *covered)
                .filter_map(|(_, p)| s.name_of(port, p));
            assert!(back.count() > 0, "{name}");
        }
    }

    #[test]
    fn etc_services_names_come_first() {
        let s = Services::with_etc_services(
            "# comment\nsubmissions 465/tcp ssmtp smtps\nhttp 80/tcp www\nwebcache 8080/tcp http-alt\nmyapp 4000/udp\nother 4000/udp\n",
        );
        assert_eq!(s.name_of(465, Protocol::Tcp), Some("submissions"));
        assert_eq!(s.name_of(8080, Protocol::Tcp), Some("webcache"));
        assert_eq!(
            s.name_of(4000, Protocol::Udp),
            Some("myapp"),
            "the first line wins"
        );
        assert_eq!(s.name_of(4000, Protocol::Tcp), None);
        assert_eq!(
            s.name_of(22, Protocol::Tcp),
            Some("ssh"),
            "built-in fallback"
        );
    }
}
