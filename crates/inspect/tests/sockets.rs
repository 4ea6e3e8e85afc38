//! Listing the sockets of a namespace made for each test, against known
//! listeners and against what `ss` says about the same namespace.
//!
//! Needs root (namespaces, `setpriv`) and `/usr/bin/python3`; the listeners run
//! as `nobody`, under the program names `pwt-listener` and `pwt-forked`.

use inspect::{
    established_tcp, list_sockets, Family, Owner, OwnerSource, Protocol, Socket, SocketQuery, State,
};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Child, Stdio};
use testns::Netns;

/// The listeners. Before anything else, a TCP socket on 7010 is opened and the
/// process forks, so that it is shared by the parent (`pwt-listener`) and the
/// child (`pwt-forked`). Then the parent opens:
///
/// - TCP 0.0.0.0:7001 (backlog 17), 127.0.0.1:7002 (backlog 5), [::]:7003
///   (dual stack), [::1]:7004;
/// - UDP 0.0.0.0:7005, 127.0.0.1:7006, [::]:7007 (IPv6 only), [::1]:7008;
/// - one established TCP connection to 7002 (both ends in this process) and
///   one connected UDP socket to 127.0.0.1:7006;
/// - TCP 127.0.0.1:7020, listening but held by no process: its only
///   descriptor is in flight in an SCM_RIGHTS message that nobody receives.
///
/// It prints `ready PID CHILD_PID CLIENT_PORT UDP_CLIENT_PORT`, and exits when
/// its stdin closes (or after two minutes).
const LISTENERS: &str = r#"
import os, signal, socket, sys
signal.alarm(120)
def name(n):
    with open("/proc/self/comm", "w") as f:
        f.write(n)
name("pwt-listener")
shared = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
shared.bind(("0.0.0.0", 7010))
shared.listen(3)
r, w = os.pipe()
child = os.fork()
if child == 0:
    name("pwt-forked")
    os.close(w)
    os.read(r, 1)
    os._exit(0)
os.close(r)
keep = [shared]
def tcp(family, addr, backlog, v6only=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind(addr)
    s.listen(backlog)
    keep.append(s)
    return s
def udp(family, addr, v6only=None):
    s = socket.socket(family, socket.SOCK_DGRAM)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind(addr)
    keep.append(s)
    return s
tcp(socket.AF_INET, ("0.0.0.0", 7001), 17)
server = tcp(socket.AF_INET, ("127.0.0.1", 7002), 5)
tcp(socket.AF_INET6, ("::", 7003), 4, v6only=0)
tcp(socket.AF_INET6, ("::1", 7004), 4)
udp(socket.AF_INET, ("0.0.0.0", 7005))
udp(socket.AF_INET, ("127.0.0.1", 7006))
udp(socket.AF_INET6, ("::", 7007), v6only=1)
udp(socket.AF_INET6, ("::1", 7008))
client = socket.create_connection(("127.0.0.1", 7002))
accepted, _ = server.accept()
keep += [client, accepted]
uclient = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
uclient.connect(("127.0.0.1", 7006))
keep.append(uclient)
orphan = tcp(socket.AF_INET, ("127.0.0.1", 7020), 2)
keep.remove(orphan)
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
socket.send_fds(a, [b"x"], [orphan.fileno()])
orphan.close()
keep += [a, b]
print("ready", os.getpid(), child, client.getsockname()[1], uclient.getsockname()[1], flush=True)
sys.stdin.read()
os.close(w)
"#;

const PYTHON: &str = "/usr/bin/python3";
const NOBODY: u32 = 65534;

struct Listeners {
    process: Child,
    pid: u32,
    child_pid: u32,
    client_port: u16,
    udp_client_port: u16,
}

impl Listeners {
    fn start(ns: &Netns) -> Listeners {
        assert!(
            std::path::Path::new(PYTHON).exists(),
            "{PYTHON} is needed to start the test listeners"
        );
        let mut process = ns
            .command("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--",
                PYTHON,
                "-c",
                LISTENERS,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the listeners");
        let mut line = String::new();
        BufReader::new(process.stdout.take().expect("listener stdout"))
            .read_line(&mut line)
            .expect("read the listeners' ready line");
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words.first(),
            Some(&"ready"),
            "listeners did not start: {line:?}"
        );
        Listeners {
            pid: words[1].parse().unwrap(),
            child_pid: words[2].parse().unwrap(),
            client_port: words[3].parse().unwrap(),
            udp_client_port: words[4].parse().unwrap(),
            process,
        }
    }

    fn owner(&self) -> Owner {
        Owner {
            pid: self.pid,
            name: "pwt-listener".into(),
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        drop(self.process.stdin.take());
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn find<'a>(sockets: &'a [Socket], protocol: Protocol, local: &str) -> &'a Socket {
    let local = addr(local);
    let found: Vec<&Socket> = sockets
        .iter()
        .filter(|s| s.protocol == protocol && s.local == local)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {protocol:?} socket on {local}, found {found:#?}"
    );
    found[0]
}

fn local_ports(sockets: &[Socket]) -> Vec<(Protocol, u16)> {
    sockets
        .iter()
        .map(|s| (s.protocol, s.local.port()))
        .collect()
}

#[test]
fn listening_sockets_have_exact_rows() {
    let ns = Netns::new();
    let l = Listeners::start(&ns);
    let sockets = ns.run(|| list_sockets(&SocketQuery::default())).unwrap();

    // Sorted by protocol and family (tcp, tcp6, udp, udp6), then port.
    use Protocol::{Tcp, Udp};
    assert_eq!(
        local_ports(&sockets),
        vec![
            (Tcp, 7001),
            (Tcp, 7002),
            (Tcp, 7010),
            (Tcp, 7020),
            (Tcp, 7003),
            (Tcp, 7004),
            (Udp, 7005),
            (Udp, 7006),
            (Udp, 7007),
            (Udp, 7008),
        ]
    );

    let rows = [
        (
            Tcp,
            Family::V4,
            "0.0.0.0:7001",
            "0.0.0.0:0",
            State::Listen,
            17,
        ),
        (
            Tcp,
            Family::V4,
            "127.0.0.1:7002",
            "0.0.0.0:0",
            State::Listen,
            5,
        ),
        (Tcp, Family::V6, "[::]:7003", "[::]:0", State::Listen, 4),
        (Tcp, Family::V6, "[::1]:7004", "[::]:0", State::Listen, 4),
        (
            Udp,
            Family::V4,
            "0.0.0.0:7005",
            "0.0.0.0:0",
            State::Unconnected,
            0,
        ),
        (
            Udp,
            Family::V4,
            "127.0.0.1:7006",
            "0.0.0.0:0",
            State::Unconnected,
            0,
        ),
        (
            Udp,
            Family::V6,
            "[::]:7007",
            "[::]:0",
            State::Unconnected,
            0,
        ),
        (
            Udp,
            Family::V6,
            "[::1]:7008",
            "[::]:0",
            State::Unconnected,
            0,
        ),
    ];
    for (protocol, family, local, remote, state, send_q) in rows {
        let s = find(&sockets, protocol, local);
        let expected = Socket {
            protocol,
            family,
            local: addr(local),
            remote: addr(remote),
            state,
            recv_q: 0,
            send_q,
            uid: NOBODY,
            user: Some("nobody".into()),
            inode: s.inode,
            owners: vec![l.owner()],
        };
        assert_eq!(s, &expected);
        assert_ne!(s.inode, 0, "{local} has an inode");
        assert!(s.is_listening());
    }

    // Shared after fork: both processes, by pid.
    let shared = find(&sockets, Tcp, "0.0.0.0:7010");
    let mut both = vec![
        l.owner(),
        Owner {
            pid: l.child_pid,
            name: "pwt-forked".into(),
        },
    ];
    both.sort_by_key(|o| o.pid);
    assert_eq!(shared.owners, both);
    assert_eq!((shared.send_q, shared.uid), (3, NOBODY));

    // In flight in an SCM_RIGHTS message: no process holds it, so no owner
    // (and in particular not the process that sent it).
    let orphan = find(&sockets, Tcp, "127.0.0.1:7020");
    assert_eq!(orphan.state, State::Listen);
    assert_eq!(orphan.uid, NOBODY);
    assert_ne!(orphan.inode, 0);
    assert!(orphan.owners.is_empty(), "{orphan:#?}");

    // The JSON form reads back to the same values.
    let json = serde_json::to_string(&sockets).unwrap();
    let back: Vec<Socket> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sockets);
    assert!(json.contains(r#""state":"LISTEN""#) && json.contains(r#""state":"UNCONN""#));
}

#[test]
fn all_states_include_connections() {
    let ns = Netns::new();
    let l = Listeners::start(&ns);
    let all = ns
        .run(|| {
            list_sockets(&SocketQuery {
                listening_only: false,
                ..SocketQuery::default()
            })
        })
        .unwrap();
    let client_end = format!("127.0.0.1:{}", l.client_port);
    // The connecting end and the accepted end of the connection to 7002.
    let client = all
        .iter()
        .find(|s| s.protocol == Protocol::Tcp && s.local == addr(&client_end))
        .expect("the client end");
    assert_eq!(client.state, State::Established);
    assert_eq!(client.remote, addr("127.0.0.1:7002"));
    assert_eq!(client.owners, vec![l.owner()]);
    let accepted: Vec<&Socket> = all
        .iter()
        .filter(|s| s.local == addr("127.0.0.1:7002") && s.state == State::Established)
        .collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].remote, addr(&client_end));
    assert_eq!(accepted[0].owners, vec![l.owner()]);
    // The connected UDP socket.
    let uclient = find(
        &all,
        Protocol::Udp,
        &format!("127.0.0.1:{}", l.udp_client_port),
    );
    assert_eq!(uclient.state, State::Established);
    assert_eq!(uclient.remote, addr("127.0.0.1:7006"));
    assert!(!uclient.is_listening());
    // Listening sockets are there too.
    assert_eq!(
        find(&all, Protocol::Tcp, "0.0.0.0:7001").state,
        State::Listen
    );

    // The default (listening) query leaves the connections out.
    let listening = ns.run(|| list_sockets(&SocketQuery::default())).unwrap();
    assert!(listening.iter().all(|s| s.is_listening()), "{listening:#?}");
    assert_eq!(all.len(), listening.len() + 3);
}

#[test]
fn established_tcp_on_a_local_port() {
    let ns = Netns::new();
    let l = Listeners::start(&ns);
    let sessions = ns.run(|| established_tcp(7002, OwnerSource::Auto)).unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let s = &sessions[0];
    assert_eq!(s.local, addr("127.0.0.1:7002"));
    assert_eq!(s.remote, addr(&format!("127.0.0.1:{}", l.client_port)));
    assert_eq!(s.state, State::Established);
    assert_eq!(s.owners, vec![l.owner()]);
    // The client side, by its own local port.
    let client = ns
        .run(|| established_tcp(l.client_port, OwnerSource::Skip))
        .unwrap();
    assert_eq!(client.len(), 1);
    assert_eq!(client[0].remote, addr("127.0.0.1:7002"));
    // Skipped owners are empty, not guessed.
    assert_eq!(client[0].owners, vec![]);
    // A port with a listener but no connection has no established socket.
    assert!(ns
        .run(|| established_tcp(7001, OwnerSource::Auto))
        .unwrap()
        .is_empty());
}

#[test]
fn filters() {
    let ns = Netns::new();
    let l = Listeners::start(&ns);
    let query = |q: SocketQuery| ns.run(|| list_sockets(&q)).unwrap();

    let tcp = query(SocketQuery {
        udp: false,
        ..SocketQuery::default()
    });
    assert_eq!(tcp.len(), 6);
    assert!(tcp.iter().all(|s| s.protocol == Protocol::Tcp));

    let udp = query(SocketQuery {
        tcp: false,
        ..SocketQuery::default()
    });
    assert_eq!(udp.len(), 4);
    assert!(udp.iter().all(|s| s.protocol == Protocol::Udp));

    let none = query(SocketQuery {
        tcp: false,
        udp: false,
        ..SocketQuery::default()
    });
    assert!(none.is_empty());

    let on_7003 = query(SocketQuery {
        port: Some(7003),
        ..SocketQuery::default()
    });
    assert_eq!(local_ports(&on_7003), vec![(Protocol::Tcp, 7003)]);
    let nothing = query(SocketQuery {
        port: Some(9),
        ..SocketQuery::default()
    });
    assert!(nothing.is_empty());

    let forked = query(SocketQuery {
        process: Some("pwt-forked".into()),
        ..SocketQuery::default()
    });
    assert_eq!(local_ports(&forked), vec![(Protocol::Tcp, 7010)]);
    // The socket keeps all its owners, not only the one that matched.
    assert_eq!(forked[0].owners.len(), 2);

    let by_listener = query(SocketQuery {
        process: Some("pwt-listener".into()),
        ..SocketQuery::default()
    });
    // Everything but the orphan.
    assert_eq!(by_listener.len(), 9);
    assert!(by_listener.iter().all(|s| s.local.port() != 7020));
    assert!(by_listener
        .iter()
        .all(|s| s.owners.iter().any(|o| o.pid == l.pid)));

    let nobody_named_so = query(SocketQuery {
        process: Some("pwt".into()),
        ..SocketQuery::default()
    });
    assert!(nobody_named_so.is_empty());

    let port_and_all = query(SocketQuery {
        port: Some(7002),
        listening_only: false,
        ..SocketQuery::default()
    });
    let states: Vec<State> = port_and_all.iter().map(|s| s.state).collect();
    assert_eq!(states.len(), 2);
    assert!(states.contains(&State::Listen) && states.contains(&State::Established));
}

/// One socket as `ss -tulpenH` prints it: (protocol, local address, port, uid,
/// inode, pids).
type Row = (Protocol, IpAddr, u16, u32, u64, BTreeSet<u32>);

/// Parses `ss -tuapenH`-style output (`ss` omits `uid:` for root).
fn parse_ss(text: &str) -> BTreeSet<Row> {
    let mut rows = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let protocol = match fields[0] {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => panic!("unexpected netid {other:?} in {line:?}"),
        };
        let (ip, port) = parse_ss_addr(fields[4]);
        let mut uid = 0;
        let mut inode = None;
        let mut pids = BTreeSet::new();
        for f in &fields[6..] {
            if let Some(v) = f.strip_prefix("uid:") {
                uid = v.parse().unwrap();
            } else if let Some(v) = f.strip_prefix("ino:") {
                inode = Some(v.parse().unwrap());
            } else if f.starts_with("users:") {
                for part in f.split("pid=").skip(1) {
                    let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
                    pids.insert(digits.parse().unwrap());
                }
            }
        }
        let inode = inode.unwrap_or_else(|| panic!("no ino: in {line:?}"));
        rows.insert((protocol, ip, port, uid, inode, pids));
    }
    rows
}

/// `0.0.0.0:22`, `[::1]:22`, `*:22` (the IPv6 wildcard of a dual-stack
/// socket), `127.0.0.1%lo:53`.
fn parse_ss_addr(text: &str) -> (IpAddr, u16) {
    let (host, port) = text.rsplit_once(':').unwrap();
    let host = host.split('%').next().unwrap();
    let ip = match host {
        "*" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        h if h.starts_with('[') => IpAddr::V6(h.trim_matches(['[', ']']).parse().unwrap()),
        h => IpAddr::V4(h.parse::<Ipv4Addr>().unwrap()),
    };
    (ip, port.parse().unwrap())
}

fn rows(sockets: &[Socket]) -> BTreeSet<Row> {
    sockets
        .iter()
        .map(|s| {
            (
                s.protocol,
                s.local.ip(),
                s.local.port(),
                s.uid,
                s.inode,
                s.owners.iter().map(|o| o.pid).collect(),
            )
        })
        .collect()
}

#[test]
fn same_sockets_as_ss() {
    let ns = Netns::new();
    let l = Listeners::start(&ns);

    let ours = ns.run(|| list_sockets(&SocketQuery::default())).unwrap();
    let ss = parse_ss(&ns.exec_ok(&["ss", "-tulpenH"]));
    assert_eq!(rows(&ours), ss);
    assert_eq!(ss.len(), 10);

    let ours = ns
        .run(|| {
            list_sockets(&SocketQuery {
                listening_only: false,
                ..SocketQuery::default()
            })
        })
        .unwrap();
    let ss = parse_ss(&ns.exec_ok(&["ss", "-tuapenH"]));
    assert_eq!(rows(&ours), ss);
    assert_eq!(ss.len(), 13);

    // The pids ss saw are the listeners'.
    let pids: BTreeSet<u32> = ss.iter().flat_map(|r| r.5.iter().copied()).collect();
    assert_eq!(pids, BTreeSet::from([l.pid, l.child_pid]));
}

/// The kernel's task-file iterator and the /proc walk find the same owners,
/// the ones ss finds: the shared socket's two processes, and nobody for the
/// socket in flight.
#[test]
fn both_owner_sources_agree_with_ss() {
    let ns = Netns::new();
    let l = Listeners::start(&ns);
    let ss = parse_ss(&ns.exec_ok(&["ss", "-tuapenH"]));
    for owners in [OwnerSource::Kernel, OwnerSource::Proc, OwnerSource::Auto] {
        let ours = ns
            .run(|| {
                list_sockets(&SocketQuery {
                    listening_only: false,
                    owners,
                    ..SocketQuery::default()
                })
            })
            .unwrap_or_else(|e| panic!("owners from {owners:?}: {e}"));
        assert_eq!(rows(&ours), ss, "owners from {owners:?}");
        let shared = find(&ours, Protocol::Tcp, "0.0.0.0:7010");
        assert_eq!(shared.owners.len(), 2, "owners from {owners:?}");
        let in_flight = find(&ours, Protocol::Tcp, "127.0.0.1:7020");
        assert_eq!(in_flight.owners, vec![], "owners from {owners:?}");
        assert!(ours.iter().any(|s| s.owners.contains(&l.owner())));
    }
}

#[test]
fn an_empty_namespace_has_no_sockets() {
    let ns = Netns::new();
    let all = ns
        .run(|| {
            list_sockets(&SocketQuery {
                listening_only: false,
                ..SocketQuery::default()
            })
        })
        .unwrap();
    assert_eq!(all, vec![]);
}

#[test]
fn ss_parser() {
    let text = "\
tcp   LISTEN 0      17           0.0.0.0:7001       0.0.0.0:*    users:((\"pwt-listener\",pid=10,fd=4)) uid:65534 ino:111 sk:1 cgroup:/ <->
tcp   LISTEN 0      4                  *:7003             *:*    users:((\"a\",pid=10,fd=6),(\"b\",pid=12,fd=6)) uid:65534 ino:112 sk:2 v6only:0 <->
udp   UNCONN 0      0          127.0.0.1%lo:53      0.0.0.0:*    ino:113 sk:3 <->
udp   UNCONN 0      0              [::1]:7008          [::]:*    users:((\"x\",pid=10,fd=9)) uid:7 ino:114 sk:4 v6only:1 <->
";
    let rows = parse_ss(text);
    let expected: BTreeSet<Row> = [
        (
            Protocol::Tcp,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            7001,
            65534,
            111,
            BTreeSet::from([10]),
        ),
        (
            Protocol::Tcp,
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            7003,
            65534,
            112,
            BTreeSet::from([10, 12]),
        ),
        (
            Protocol::Udp,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            53,
            0,
            113,
            BTreeSet::new(),
        ),
        (
            Protocol::Udp,
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            7008,
            7,
            114,
            BTreeSet::from([10]),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(rows, expected);
}
