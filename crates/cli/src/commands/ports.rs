//! `portwall ports`: which sockets listen and which processes own them, like
//! `netstat -tulpen`.
//!
//! The columns and address forms are netstat's: `0.0.0.0:22`, `:::22` (IPv6
//! without brackets, as `netstat -tulpen` prints it), `*` for no port, an
//! empty State for unconnected UDP. Differences: the User column shows the
//! name (the uid when the name is unknown), Send-Q of a listening TCP socket
//! is its backlog (as `ss` shows it; netstat shows 0), and a socket shared by
//! several processes lists all of them. `--json` prints the sockets as the
//! `inspect` crate returns them.

use crate::exit;
use crate::output::{print_json, print_table, right_align, table};
use crate::Global;
use anyhow::Result;
use clap::Args;
use inspect::{netstat_addr, Socket, SocketQuery, State};

#[derive(Debug, Args)]
pub struct PortsArgs {
    /// Sockets in every state (connections too), not only listening ones.
    #[arg(short, long)]
    pub all: bool,
    /// TCP sockets (with neither -t nor -u: TCP and UDP).
    #[arg(short, long)]
    pub tcp: bool,
    /// UDP sockets (with neither -t nor -u: TCP and UDP).
    #[arg(short, long)]
    pub udp: bool,
    /// Only sockets whose local port is N.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Only sockets held by a process of this name (as in /proc/PID/comm).
    #[arg(long, value_name = "NAME")]
    pub process: Option<String>,
}

impl PortsArgs {
    fn query(&self) -> SocketQuery {
        let both = !self.tcp && !self.udp;
        SocketQuery {
            tcp: self.tcp || both,
            udp: self.udp || both,
            listening_only: !self.all,
            port: self.port,
            process: self.process.clone(),
        }
    }
}

const HEADER: [&str; 9] = [
    "Proto",
    "Recv-Q",
    "Send-Q",
    "Local Address",
    "Foreign Address",
    "State",
    "User",
    "Inode",
    "PID/Program name",
];

pub fn run(global: &Global, args: &PortsArgs) -> Result<u8> {
    let mut sockets = inspect::list_sockets(&args.query())?;
    // The library's order already is this one; keep it explicit.
    sockets
        .sort_by(|a, b| (a.proto_label(), a.local.port()).cmp(&(b.proto_label(), b.local.port())));
    if global.json {
        print_json(&sockets)?;
    } else {
        let mut t = table(HEADER);
        for s in &sockets {
            t.add_row(row(s));
        }
        right_align(&mut t, &[1, 2]);
        print_table(&t);
    }
    Ok(exit::OK)
}

/// One line of the table, in [`HEADER`]'s order.
fn row(s: &Socket) -> [String; 9] {
    [
        s.proto_label().to_string(),
        s.recv_q.to_string(),
        s.send_q.to_string(),
        netstat_addr(&s.local),
        netstat_addr(&s.remote),
        state_cell(s.state),
        s.user.clone().unwrap_or_else(|| s.uid.to_string()),
        s.inode.to_string(),
        owners_cell(s),
    ]
}

/// netstat leaves the state of an unconnected UDP socket empty.
fn state_cell(state: State) -> String {
    match state {
        State::Unconnected => String::new(),
        other => other.to_string(),
    }
}

/// `1234/sshd`, `1234/nginx,1235/nginx` when shared, `-` when no owner is known.
fn owners_cell(s: &Socket) -> String {
    if s.owners.is_empty() {
        return "-".to_string();
    }
    s.owners
        .iter()
        .map(|o| format!("{}/{}", o.pid, o.name))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use inspect::{Family, Owner, Protocol};

    fn socket() -> Socket {
        Socket {
            protocol: Protocol::Tcp,
            family: Family::V6,
            local: "[::]:22".parse().unwrap(),
            remote: "[::]:0".parse().unwrap(),
            state: State::Listen,
            recv_q: 0,
            send_q: 128,
            uid: 0,
            user: Some("root".into()),
            inode: 1234,
            owners: vec![Owner {
                pid: 700,
                name: "sshd".into(),
            }],
        }
    }

    #[test]
    fn rows_look_like_netstat() {
        assert_eq!(
            row(&socket()),
            ["tcp6", "0", "128", ":::22", ":::*", "LISTEN", "root", "1234", "700/sshd"]
        );
        let mut udp = socket();
        udp.protocol = Protocol::Udp;
        udp.family = Family::V4;
        udp.local = "127.0.0.1:53".parse().unwrap();
        udp.remote = "0.0.0.0:0".parse().unwrap();
        udp.state = State::Unconnected;
        udp.user = None;
        udp.uid = 4242;
        udp.owners.clear();
        assert_eq!(
            row(&udp),
            [
                "udp",
                "0",
                "128",
                "127.0.0.1:53",
                "0.0.0.0:*",
                "",
                "4242",
                "1234",
                "-"
            ]
        );
    }

    #[test]
    fn shared_sockets_list_every_owner() {
        let mut s = socket();
        s.owners.push(Owner {
            pid: 701,
            name: "sshd".into(),
        });
        assert_eq!(owners_cell(&s), "700/sshd,701/sshd");
    }

    #[test]
    fn flags_to_query() {
        let args = |all, tcp, udp| PortsArgs {
            all,
            tcp,
            udp,
            port: Some(22),
            process: Some("sshd".into()),
        };
        let q = args(false, false, false).query();
        assert!(q.tcp && q.udp && q.listening_only);
        assert_eq!((q.port, q.process.as_deref()), (Some(22), Some("sshd")));
        let q = args(true, true, false).query();
        assert!(q.tcp && !q.udp && !q.listening_only);
        let q = args(false, false, true).query();
        assert!(!q.tcp && q.udp);
        let q = args(false, true, true).query();
        assert!(q.tcp && q.udp);
    }
}
