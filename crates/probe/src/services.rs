//! Names of well-known services, for display next to a port (nmap's SERVICE column).

use crate::Protocol;

const TCP: &[(u16, &str)] = &[
    (21, "ftp"),
    (22, "ssh"),
    (23, "telnet"),
    (25, "smtp"),
    (53, "domain"),
    (80, "http"),
    (110, "pop3"),
    (111, "rpcbind"),
    (143, "imap"),
    (389, "ldap"),
    (443, "https"),
    (445, "microsoft-ds"),
    (465, "smtps"),
    (587, "submission"),
    (636, "ldaps"),
    (993, "imaps"),
    (995, "pop3s"),
    (1433, "ms-sql-s"),
    (1521, "oracle"),
    (2049, "nfs"),
    (2375, "docker"),
    (2376, "docker-tls"),
    (2379, "etcd"),
    (3306, "mysql"),
    (3389, "ms-wbt-server"),
    (5432, "postgresql"),
    (5672, "amqp"),
    (5900, "vnc"),
    (5984, "couchdb"),
    (6379, "redis"),
    (6443, "kubernetes"),
    (8080, "http-alt"),
    (8443, "https-alt"),
    (9000, "cslistener"),
    (9090, "zeus-admin"),
    (9200, "elasticsearch"),
    (10250, "kubelet"),
    (11211, "memcached"),
    (15672, "rabbitmq-mgmt"),
    (27017, "mongodb"),
];

const UDP: &[(u16, &str)] = &[
    (53, "domain"),
    (67, "dhcps"),
    (69, "tftp"),
    (123, "ntp"),
    (137, "netbios-ns"),
    (161, "snmp"),
    (500, "isakmp"),
    (514, "syslog"),
    (1194, "openvpn"),
    (1900, "upnp"),
    (4500, "nat-t-ike"),
    (5353, "mdns"),
    (11211, "memcached"),
    (51820, "wireguard"),
];

/// The usual service on `port`/`protocol`, if it is a well-known one.
pub fn service_name(port: u16, protocol: Protocol) -> Option<&'static str> {
    let table = match protocol {
        Protocol::Tcp => TCP,
        Protocol::Udp => UDP,
    };
    table
        .binary_search_by_key(&port, |&(p, _)| p)
        .ok()
        .map(|i| table[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_looked_up() {
        for t in [TCP, UDP] {
            assert!(
                t.windows(2).all(|w| w[0].0 < w[1].0),
                "sorted for binary search"
            );
        }
        assert_eq!(service_name(22, Protocol::Tcp), Some("ssh"));
        assert_eq!(service_name(123, Protocol::Udp), Some("ntp"));
        assert_eq!(service_name(123, Protocol::Tcp), None);
        assert_eq!(service_name(4, Protocol::Tcp), None);
    }
}
