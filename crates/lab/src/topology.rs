//! The lab's network, as a table, and the code that builds it with `testns`.
//!
//! ```text
//!   internet ──eth0── edge ──br0──┬── vps1   203.0.113.11  2001:db8:113::11  (VPS)
//!   198.51.100.2     (router,     ├── vps2   203.0.113.12  2001:db8:113::12  (VPS)
//!   2001:db8:100::2   portwall-   └── dedi1  203.0.113.13  2001:db8:113::13  (Dedicated)
//!                     edge; the panel's address 203.0.113.254 on br0)
//! ```
//!
//! [`HOSTS`] says who is on the network, [`WIRES`] how each host is cabled to
//! the edge, [`BRIDGE_ADDRESSES`] what the edge answers on the servers' side
//! (their gateway and the panel's address), [`build`] turns the three into
//! namespaces, veth pairs, a bridge, addresses and routes.

use crate::LabError;
use testns::Netns;

/// Prefix of every namespace the lab creates.
pub const PREFIX: &str = "pwlab-";

/// What a host is in the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A client on the internet side.
    Internet,
    /// The router in front of the servers, where `portwall-edge` runs.
    Edge,
    /// A customer's server, of this panel type (`VPS`, `Dedicated`).
    Server(&'static str),
}

/// A host of the lab: its namespace is `pwlab-NAME`.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    pub name: &'static str,
    /// Its address on its link (the edge: on the servers' bridge).
    pub v4: &'static str,
    pub v6: &'static str,
    pub role: Role,
}

impl Host {
    /// The panel's server type; None for the internet host and the edge.
    pub fn kind(&self) -> Option<&'static str> {
        match self.role {
            Role::Server(k) => Some(k),
            _ => None,
        }
    }

    /// Its namespace.
    pub fn namespace(&self) -> String {
        namespace(self.name)
    }
}

pub fn namespace(host: &str) -> String {
    format!("{PREFIX}{host}")
}

const fn host(name: &'static str, v4: &'static str, v6: &'static str, role: Role) -> Host {
    Host { name, v4, v6, role }
}

pub const HOSTS: [Host; 5] = [
    host(
        "internet",
        "198.51.100.2",
        "2001:db8:100::2",
        Role::Internet,
    ),
    host("edge", "203.0.113.1", "2001:db8:113::1", Role::Edge),
    host(
        "vps1",
        "203.0.113.11",
        "2001:db8:113::11",
        Role::Server("VPS"),
    ),
    host(
        "vps2",
        "203.0.113.12",
        "2001:db8:113::12",
        Role::Server("VPS"),
    ),
    host(
        "dedi1",
        "203.0.113.13",
        "2001:db8:113::13",
        Role::Server("Dedicated"),
    ),
];

/// How the edge's end of a host's cable is set up.
#[derive(Debug, Clone, Copy)]
pub enum EdgeEnd {
    /// A routed interface with these addresses (IPv4/len, IPv6/len).
    Routed(&'static str, &'static str),
    /// A port of the servers' bridge.
    Bridged,
}

/// One veth cable: the host's `eth0` to the edge's `edge_if`; the host routes
/// everything through `gateway`.
#[derive(Debug, Clone, Copy)]
pub struct Wire {
    pub host: &'static str,
    pub edge_if: &'static str,
    pub edge_end: EdgeEnd,
    pub gateway: (&'static str, &'static str),
}

const fn bridged(host: &'static str, edge_if: &'static str) -> Wire {
    Wire {
        host,
        edge_if,
        edge_end: EdgeEnd::Bridged,
        gateway: ("203.0.113.1", "2001:db8:113::1"),
    }
}

pub const WIRES: [Wire; 4] = [
    Wire {
        host: "internet",
        edge_if: "eth0",
        edge_end: EdgeEnd::Routed("198.51.100.1/24", "2001:db8:100::1/64"),
        gateway: ("198.51.100.1", "2001:db8:100::1"),
    },
    bridged("vps1", "to-vps1"),
    bridged("vps2", "to-vps2"),
    bridged("dedi1", "to-dedi1"),
];

/// The servers' bridge in the edge.
pub const BRIDGE: &str = "br0";

/// The panel's address in the lab, as a provider's API or metadata address: on
/// the edge's bridge, reached by the servers without crossing the edge's
/// filter (it is the edge's own address), relayed to the panel.
pub const PANEL_V4: &str = "203.0.113.254";
/// Its HTTPS port.
pub const PANEL_PORT: u16 = 443;

/// The edge's addresses on the bridge: the servers' gateway, the panel.
pub const BRIDGE_ADDRESSES: [(&str, &str); 2] = [
    ("203.0.113.1/24", "2001:db8:113::1/64"),
    ("203.0.113.254/24", "2001:db8:113::fe/64"),
];

/// Sysctls of the edge: it routes.
const EDGE_SYSCTLS: [&str; 2] = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"];

fn step(what: String) -> impl FnOnce(String) -> LabError {
    move |e| LabError::Failed(format!("{what}: {e}"))
}

/// Creates the namespaces of [`HOSTS`] and wires them as [`WIRES`] and
/// [`BRIDGE_ADDRESSES`] say. `created` is called with each namespace's name
/// as it is made (so a crash halfway leaves a record). On error, what was
/// made here is deleted again.
pub fn build(mut created: impl FnMut(&str) -> Result<(), LabError>) -> Result<(), LabError> {
    let mut hosts: Vec<(&'static str, Netns)> = Vec::new();
    for h in &HOSTS {
        let name = h.namespace();
        created(&name)?;
        let ns = Netns::named(&name).map_err(step(format!("creating namespace {name}")))?;
        hosts.push((h.name, ns));
    }
    let find = |name: &str| -> &Netns {
        &hosts
            .iter()
            .find(|(n, _)| *n == name)
            .expect("every wire names a host of HOSTS")
            .1
    };
    let edge = find("edge");
    let e = step("setting up the edge's bridge".into());
    edge.ip(&["link", "add", BRIDGE, "type", "bridge"])
        .map_err(e)?;
    for (v4, v6) in BRIDGE_ADDRESSES {
        edge.ip(&["addr", "add", v4, "dev", BRIDGE])
            .map_err(step(format!("{v4} on the edge")))?;
        edge.ip(&["-6", "addr", "add", v6, "dev", BRIDGE, "nodad"])
            .map_err(step(format!("{v6} on the edge")))?;
    }
    edge.ip(&["link", "set", BRIDGE, "up"])
        .map_err(step("bridge up".into()))?;
    for key in EDGE_SYSCTLS {
        edge.sysctl(key, "1")
            .map_err(step(format!("{key} on the edge")))?;
    }
    for w in &WIRES {
        let h = HOSTS
            .iter()
            .find(|h| h.name == w.host)
            .expect("every wire names a host of HOSTS");
        let (v4, v6) = (format!("{}/24", h.v4), format!("{}/64", h.v6));
        let edge_addrs = match w.edge_end {
            EdgeEnd::Routed(a4, a6) => Some((a4, a6)),
            EdgeEnd::Bridged => None,
        };
        let host_ns = find(w.host);
        testns::try_link_named(
            host_ns,
            edge,
            ("eth0", w.edge_if),
            Some((&v4, &v6)),
            edge_addrs,
        )
        .map_err(step(format!("wiring {} to the edge", w.host)))?;
        if let EdgeEnd::Bridged = w.edge_end {
            edge.ip(&["link", "set", w.edge_if, "master", BRIDGE])
                .map_err(step(format!("{} into the bridge", w.edge_if)))?;
        }
        let route = step(format!("default routes of {}", w.host));
        host_ns
            .ip(&["route", "add", "default", "via", w.gateway.0])
            .map_err(route)?;
        host_ns
            .ip(&["-6", "route", "add", "default", "via", w.gateway.1])
            .map_err(step(format!("IPv6 default route of {}", w.host)))?;
    }
    for (_, ns) in hosts {
        ns.persist();
    }
    Ok(())
}

/// Whether the namespace exists.
pub fn exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Kills what runs inside the namespace and deletes it; best effort.
pub fn remove(name: &str) {
    if exists(name) {
        testns::kill_all_in(name);
        let _ = testns::run_ip(&["netns", "delete", name]);
    }
}
