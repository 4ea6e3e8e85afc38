//! Sockets and the processes that own them: what `netstat -tulpen` and
//! `ss -tulpen` show, as data.
//!
//! # How it works
//!
//! A call to [`list_sockets`] does two things at the same time, reading the
//! sockets (1) and their owners (2, or 3 where 2 cannot be used; or neither
//! with [`OwnerSource::Skip`]):
//!
//! 1. **Sockets, from the kernel** (on the calling thread). One
//!    `NETLINK_SOCK_DIAG` socket sends up to four `inet_diag` dump requests
//!    (`SOCK_DIAG_BY_FAMILY` for TCP and UDP, each over `AF_INET` and
//!    `AF_INET6`), the way `ss` does; nothing parses the text of
//!    `/proc/net/tcp`. The states asked for travel in the request's
//!    `idiag_states` bitmask, so a listening-only query makes the kernel skip
//!    established connections instead of sending them to be thrown away. The
//!    request and answer types come from the `netlink-packet-sock-diag` crate,
//!    framed by `netlink-packet-core` and carried by a `netlink-sys` socket;
//!    nothing of the protocol is hand-rolled here (see the `diag` module).
//!    Only the fixed header of each answer is decoded, in place. The
//!    local-port filter is applied as each answer is decoded; the sockets
//!    are then sorted and named while the walk goes on.
//! 2. **Owners, from the kernel** (on a helper thread, at the same time).
//!    The kernel's answer carries each socket's inode but not its processes.
//!    A BPF iterator over every task's open files (`iter/task_file`) writes
//!    one (inode, pid) record per socket descriptor: the kernel visits the
//!    descriptors for well under a microsecond each (see the `task_files`
//!    module, and `btf` for how the program fits the running kernel). It
//!    needs root (`CAP_BPF`), a kernel with BTF, and the initial pid
//!    namespace; without them, [`OwnerSource::Auto`] falls back to:
//! 3. **Owners, from `/proc`** (on helper threads, one per core, which the
//!    calling thread joins once the dump is done). One walk of
//!    `/proc/*/fd` (`readlinkat` of every descriptor, looking for
//!    `socket:[INODE]`) finds them, as `ss -p` and `netstat -p` do. The walk
//!    is written against `rustix` with fixed buffers: no allocation per
//!    descriptor, non-numeric entries skipped, and processes that exit or
//!    hide their descriptors mid-walk skipped (see the `procfs` module).
//!    Reading a descriptor link costs a few microseconds in the kernel (a
//!    path lookup in `/proc`), so the walk costs about three times the
//!    iterator's CPU (118 vs 38 ms for 20,000 sockets in `benches/ports.rs`); the threads share the descriptors of large processes too, so it
//!    takes about its CPU time divided by the number of cores.
//!
//! Either way, the (inode, pid) pairs are sorted and merged with the sockets
//! sorted by inode, so the cost is one pass whatever the number of sockets. A
//! socket can be shared by several processes (after `fork`); all of them are
//! kept. A socket whose owner cannot be found (a kernel socket, a descriptor
//! in flight in a unix socket, a process of another user when not root, a
//! process that exited) has no owner, never a guessed one.
//! `benches/ports.rs` measures both sources against `ss -tulpen` and
//! `netstat -tulpen`.
//!
//! User names come from the system's user database (`getpwuid_r`, so NSS
//! sources count as they do for `ls -l`), looked up once per uid.
//!
//! # Namespaces
//!
//! Netlink sockets belong to the network namespace of the thread that opens
//! them, so these functions list the sockets of the calling thread's network
//! namespace. Both owner sources see every process of the machine, like
//! `ss -p` does; socket inodes are unique across namespaces, so a process in
//! another namespace can only match a socket it really holds.
//!
//! # Example
//!
//! ```no_run
//! let query = inspect::SocketQuery { port: Some(22), ..inspect::SocketQuery::default() };
//! for s in inspect::list_sockets(&query)? {
//!     println!("{} {} {:?}", s.proto_label(), inspect::netstat_addr(&s.local), s.owners);
//! }
//! # Ok::<(), inspect::InspectError>(())
//! ```

mod btf;
mod diag;
mod procfs;
mod task_files;
mod users;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The transport protocol of a socket.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// The address family of a socket. A dual-stack socket listening on `::` is
/// `V6`, as `netstat` shows it (`tcp6`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

/// The state of a socket, named as `netstat` and `ss` name it.
///
/// TCP sockets have the kernel's TCP states. A UDP socket is either
/// [`State::Unconnected`] (receiving from anyone: what "listening" means for
/// UDP; `ss` shows `UNCONN`, `netstat` an empty column) or
/// [`State::Established`] (after `connect`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    /// A connection request not yet accepted (the kernel's `TCP_NEW_SYN_RECV`).
    NewSynRecv,
    /// A TCP socket that is bound but neither listening nor connected.
    BoundInactive,
    /// A UDP socket without a connected peer.
    #[serde(rename = "UNCONN")]
    Unconnected,
    /// A state number this crate does not know (a newer kernel).
    Unknown,
}

impl State {
    /// The name `netstat` and `ss` print (`LISTEN`, `ESTABLISHED`, `UNCONN`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Established => "ESTABLISHED",
            State::SynSent => "SYN_SENT",
            State::SynRecv => "SYN_RECV",
            State::FinWait1 => "FIN_WAIT1",
            State::FinWait2 => "FIN_WAIT2",
            State::TimeWait => "TIME_WAIT",
            State::Close => "CLOSE",
            State::CloseWait => "CLOSE_WAIT",
            State::LastAck => "LAST_ACK",
            State::Listen => "LISTEN",
            State::Closing => "CLOSING",
            State::NewSynRecv => "NEW_SYN_RECV",
            State::BoundInactive => "BOUND_INACTIVE",
            State::Unconnected => "UNCONN",
            State::Unknown => "UNKNOWN",
        }
    }

    /// The state of a socket of `protocol` from the kernel's state number
    /// (`TCP_ESTABLISHED` = 1 ... `TCP_BOUND_INACTIVE` = 13). UDP sockets use
    /// `TCP_CLOSE` for "not connected".
    pub fn from_kernel(protocol: Protocol, state: u8) -> State {
        match (protocol, state) {
            (Protocol::Udp, 7) => State::Unconnected,
            (_, 1) => State::Established,
            (_, 2) => State::SynSent,
            (_, 3) => State::SynRecv,
            (_, 4) => State::FinWait1,
            (_, 5) => State::FinWait2,
            (_, 6) => State::TimeWait,
            (_, 7) => State::Close,
            (_, 8) => State::CloseWait,
            (_, 9) => State::LastAck,
            (_, 10) => State::Listen,
            (_, 11) => State::Closing,
            (_, 12) => State::NewSynRecv,
            (_, 13) => State::BoundInactive,
            _ => State::Unknown,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A process that holds a socket (a descriptor of it is in `/proc/PID/fd`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub pid: u32,
    /// The program name from `/proc/PID/comm` (at most 15 bytes, as the kernel
    /// keeps it).
    pub name: String,
}

/// One socket, as one line of `netstat -tulpen`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Socket {
    pub protocol: Protocol,
    pub family: Family,
    /// Local address and port. A wildcard listener has `0.0.0.0` or `::`.
    pub local: SocketAddr,
    /// Peer address and port; `0.0.0.0:0` / `[::]:0` when there is no peer.
    pub remote: SocketAddr,
    pub state: State,
    /// Bytes waiting to be read; for a listening TCP socket, the connections
    /// waiting in the accept queue.
    pub recv_q: u32,
    /// Bytes not yet acknowledged by the peer; for a listening TCP socket, the
    /// accept queue's maximum length (the `listen` backlog).
    pub send_q: u32,
    /// The uid that created the socket.
    pub uid: u32,
    /// The name of `uid`, if the user database has one.
    pub user: Option<String>,
    /// The socket's inode number (`socket:[INODE]` in `/proc/PID/fd`); 0 for
    /// sockets that have none (TIME_WAIT and pending connection requests).
    pub inode: u64,
    /// The processes holding the socket, by pid; empty when none can be found.
    pub owners: Vec<Owner>,
}

impl Socket {
    /// The protocol as `netstat` labels it: `tcp`, `tcp6`, `udp` or `udp6`.
    pub fn proto_label(&self) -> &'static str {
        match (self.protocol, self.family) {
            (Protocol::Tcp, Family::V4) => "tcp",
            (Protocol::Tcp, Family::V6) => "tcp6",
            (Protocol::Udp, Family::V4) => "udp",
            (Protocol::Udp, Family::V6) => "udp6",
        }
    }

    /// Listening TCP socket or unconnected UDP socket: the sockets
    /// `netstat -l` shows.
    pub fn is_listening(&self) -> bool {
        matches!(self.state, State::Listen | State::Unconnected)
    }
}

/// Formats an address the way `netstat -n` does: `0.0.0.0:22`, `:::22`,
/// `::1:631`, and `*` for port 0 (`0.0.0.0:*`). IPv6 addresses have no
/// brackets, exactly as `netstat -tulpen` prints them.
pub fn netstat_addr(addr: &SocketAddr) -> String {
    let ip: IpAddr = addr.ip();
    if addr.port() == 0 {
        format!("{ip}:*")
    } else {
        format!("{ip}:{}", addr.port())
    }
}

/// What to list. The default is what `netstat -tulpen` shows: listening TCP
/// sockets and unconnected UDP sockets of both families.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketQuery {
    /// Include TCP sockets.
    pub tcp: bool,
    /// Include UDP sockets.
    pub udp: bool,
    /// Only listening TCP sockets and unconnected UDP sockets (`netstat -l`);
    /// `false` lists every state (`netstat -a`).
    pub listening_only: bool,
    /// Only sockets whose local port is this one.
    pub port: Option<u16>,
    /// Only sockets held by a process of this name (as in `/proc/PID/comm`;
    /// a name longer than the kernel's 15 bytes matches its first 15 bytes).
    pub process: Option<String>,
    /// Where the sockets' owners are read from.
    pub owners: OwnerSource,
}

impl Default for SocketQuery {
    fn default() -> Self {
        SocketQuery {
            tcp: true,
            udp: true,
            listening_only: true,
            port: None,
            process: None,
            owners: OwnerSource::default(),
        }
    }
}

/// Where the owners of sockets are read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnerSource {
    /// The kernel's task-file iterator when it can be used, `/proc` when not.
    #[default]
    Auto,
    /// The kernel's task-file iterator; an error when it cannot be used.
    Kernel,
    /// One walk of `/proc/*/fd`, as `ss -p` does.
    Proc,
    /// None: the sockets alone, each with no owner (`ss -tuln`), for callers
    /// that need only addresses and states.
    Skip,
}

impl std::str::FromStr for OwnerSource {
    type Err = String;

    fn from_str(s: &str) -> Result<OwnerSource, String> {
        match s {
            "auto" => Ok(OwnerSource::Auto),
            "kernel" => Ok(OwnerSource::Kernel),
            "proc" => Ok(OwnerSource::Proc),
            "none" => Ok(OwnerSource::Skip),
            other => Err(format!(
                "'{other}' is not a socket-owner source: auto, kernel, proc, none"
            )),
        }
    }
}

/// What went wrong, naming the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot open a NETLINK_SOCK_DIAG socket: {0}")]
    NetlinkOpen(std::io::Error),
    #[error("cannot send the sock_diag dump request for {what} sockets: {error}")]
    NetlinkSend {
        what: &'static str,
        error: std::io::Error,
    },
    #[error("cannot receive the sock_diag answer for {what} sockets: {error}")]
    NetlinkRecv {
        what: &'static str,
        error: std::io::Error,
    },
    #[error("the kernel refused to dump {what} sockets: {error} (is the {module} kernel module available?)")]
    Kernel {
        what: &'static str,
        module: &'static str,
        error: std::io::Error,
    },
    #[error("cannot decode the sock_diag answer for {what} sockets: {detail}")]
    Decode { what: &'static str, detail: String },
    #[error("cannot read {path} while looking for socket owners: {error}")]
    Proc { path: String, error: std::io::Error },
    #[error("cannot list socket owners through the kernel's task-file iterator: {reason} (the `proc` owner source, `portwall ports --owners proc`, walks /proc instead)")]
    Iterator { reason: String },
}

/// Lists the sockets that `query` selects, with their owners, sorted by
/// protocol (`tcp`, `tcp6`, `udp`, `udp6`), then local port, local address,
/// peer and inode.
pub fn list_sockets(query: &SocketQuery) -> Result<Vec<Socket>, InspectError> {
    let mut dumps = Vec::with_capacity(4);
    let tcp_states = if query.listening_only {
        diag::states_mask(&[State::Listen])
    } else {
        diag::ALL_TCP_STATES
    };
    let udp_states = if query.listening_only {
        diag::states_mask(&[State::Close])
    } else {
        diag::ALL_UDP_STATES
    };
    if query.tcp {
        dumps.push(diag::Dump::new(Protocol::Tcp, Family::V4, tcp_states));
        dumps.push(diag::Dump::new(Protocol::Tcp, Family::V6, tcp_states));
    }
    if query.udp {
        dumps.push(diag::Dump::new(Protocol::Udp, Family::V4, udp_states));
        dumps.push(diag::Dump::new(Protocol::Udp, Family::V6, udp_states));
    }
    collect(&dumps, query.port, query.process.as_deref(), query.owners)
}

/// Every listening TCP socket and unconnected UDP socket, with owners: the
/// sockets reachable from outside if the firewall lets packets through.
pub fn listening_sockets() -> Result<Vec<Socket>, InspectError> {
    list_sockets(&SocketQuery::default())
}

/// The established TCP connections (both families) whose local port is
/// `local_port`, with their peers and their owners from `owners`: the
/// sessions that a rule on that port would cut (for example the SSH sessions
/// on port 22).
pub fn established_tcp(local_port: u16, owners: OwnerSource) -> Result<Vec<Socket>, InspectError> {
    let states = diag::states_mask(&[State::Established]);
    let dumps = [
        diag::Dump::new(Protocol::Tcp, Family::V4, states),
        diag::Dump::new(Protocol::Tcp, Family::V6, states),
    ];
    collect(&dumps, Some(local_port), None, owners)
}

/// Every listening and every established TCP socket (both families), without
/// owners, from one dump per family (the kernel walks its listening and its
/// connection tables once each).
///
/// Each dump walks the kernel's whole listening and connection tables, shared
/// by every namespace and sized by the machine's memory (262,144 buckets
/// here, 2 ms a walk), so the two run on two threads. A new thread starts in
/// its creator's network namespace.
pub fn tcp_listening_and_established() -> Result<Vec<Socket>, InspectError> {
    let states = diag::states_mask(&[State::Listen, State::Established]);
    let v4 = [diag::Dump::new(Protocol::Tcp, Family::V4, states)];
    let v6 = [diag::Dump::new(Protocol::Tcp, Family::V6, states)];
    let (v4, v6) = std::thread::scope(|scope| {
        let v6 = scope.spawn(|| diag::dump_all(&v6, None));
        let v4 = diag::dump_all(&v4, None);
        let v6 = v6
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (v4, v6)
    });
    let mut all = v4?;
    all.extend(v6?);
    sort(&mut all);
    let mut names = users::UserNames::default();
    for s in &mut all {
        s.user = names.name(s.uid);
    }
    Ok(all)
}

/// The inodes of the sockets that processes named `name` hold (their
/// `/proc/PID/comm`), read from those processes' descriptors only.
pub fn sockets_held_by(name: &str) -> Result<Vec<u64>, InspectError> {
    procfs::sockets_of_named(name)
}

fn collect(
    dumps: &[diag::Dump],
    port: Option<u16>,
    process: Option<&str>,
    source: OwnerSource,
) -> Result<Vec<Socket>, InspectError> {
    // Without root the kernel refuses BPF programs: walking /proc at once
    // lets the walk overlap the dump.
    let source = match source {
        OwnerSource::Auto if !rustix::process::geteuid().is_root() => OwnerSource::Proc,
        source => source,
    };
    if source == OwnerSource::Skip {
        let sockets = dump_sorted(dumps, port)?;
        // Without owners, no process name can match.
        return Ok(if process.is_some() {
            Vec::new()
        } else {
            sockets
        });
    }
    let (mut sockets, seen, proc_dir) = if source == OwnerSource::Proc {
        dump_and_walk(dumps, port)?
    } else {
        // The netlink dump on this thread (netlink sockets belong to the
        // calling thread's network namespace), the iterator on another.
        let (dumped, from_kernel) = std::thread::scope(|scope| {
            let iterator = std::thread::Builder::new()
                .name("inspect-owners".into())
                .spawn_scoped(scope, task_files::owners);
            let dumped = dump_sorted(dumps, port);
            let from_kernel = match iterator {
                Ok(thread) => thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(e) => task_files::owners()
                    .map_err(|why| task_files::Unavailable(format!("{} (no thread: {e})", why.0))),
            };
            (dumped, from_kernel)
        });
        let sockets = dumped?;
        match from_kernel {
            Ok(seen) => (sockets, seen, procfs::open_proc()?),
            Err(why) if source == OwnerSource::Kernel => {
                return Err(InspectError::Iterator { reason: why.0 })
            }
            // No socket to give an owner: no walk.
            Err(_) if sockets.is_empty() => return Ok(sockets),
            Err(_) => {
                let walk = procfs::Walk::start()?;
                let seen = walk_with_helpers(&walk)?;
                (sockets, seen, walk.into_proc_dir())
            }
        }
    };
    if sockets.is_empty() {
        return Ok(sockets);
    }
    procfs::assign_owners(&proc_dir, &seen, &mut sockets);
    if let Some(name) = process {
        sockets.retain(|s| s.owners.iter().any(|o| comm_matches(&o.name, name)));
    }
    Ok(sockets)
}

/// The dumped sockets, sorted and with their users' names.
fn dump_sorted(dumps: &[diag::Dump], port: Option<u16>) -> Result<Vec<Socket>, InspectError> {
    let mut sockets = diag::dump_all(dumps, port)?;
    sort(&mut sockets);
    let mut names = users::UserNames::default();
    for s in &mut sockets {
        s.user = names.name(s.uid);
    }
    Ok(sockets)
}

/// The dump and a `/proc` walk at the same time: the sockets, the walk's
/// (inode, pid) pairs (sorted, each once) and the `/proc` it read.
fn dump_and_walk(
    dumps: &[diag::Dump],
    port: Option<u16>,
) -> Result<(Vec<Socket>, Vec<procfs::Seen>, rustix::fd::OwnedFd), InspectError> {
    let walk = procfs::Walk::start()?;
    // The netlink dump (on this thread) and the /proc walk (on helper
    // threads) run at the same time; once the dump is done and its sockets
    // sorted and named, this thread helps the walk.
    let (dumped, seen) = std::thread::scope(|scope| {
        let helpers = start_helpers(scope, &walk);
        let dumped = dump_sorted(dumps, port);
        if !matches!(&dumped, Ok(sockets) if !sockets.is_empty()) {
            walk.stop();
        }
        (dumped, join_walk(&walk, helpers))
    });
    let sockets = dumped?;
    let seen = if sockets.is_empty() {
        Vec::new()
    } else {
        seen?
    };
    Ok((sockets, seen, walk.into_proc_dir()))
}

/// A whole `/proc` walk, by this thread and one helper per other core.
fn walk_with_helpers(walk: &procfs::Walk) -> Result<Vec<procfs::Seen>, InspectError> {
    std::thread::scope(|scope| {
        let helpers = start_helpers(scope, walk);
        join_walk(walk, helpers)
    })
}

type WalkThread<'scope> =
    std::thread::ScopedJoinHandle<'scope, Result<Vec<procfs::Seen>, InspectError>>;

fn start_helpers<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    walk: &'env procfs::Walk,
) -> Vec<WalkThread<'scope>> {
    (0..procfs::helper_threads())
        .map_while(|_| {
            std::thread::Builder::new()
                .name("inspect-proc".into())
                .spawn_scoped(scope, || walk.work())
                // Without more threads, the ones started walk alone.
                .ok()
        })
        .collect()
}

/// This thread's share of the walk, then every helper's, merged: sorted,
/// each (inode, pid) once.
fn join_walk(
    walk: &procfs::Walk,
    helpers: Vec<WalkThread<'_>>,
) -> Result<Vec<procfs::Seen>, InspectError> {
    let mut seen = walk.work();
    for helper in helpers {
        let theirs = helper
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        seen = match (seen, theirs) {
            (Ok(mut mine), Ok(theirs)) => {
                mine.extend(theirs);
                Ok(mine)
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
    }
    // Each thread's part is sorted: this merges them.
    seen.map(|mut seen| {
        seen.sort();
        seen.dedup();
        seen
    })
}

/// Sorts sockets by protocol (`tcp`, `tcp6`, `udp`, `udp6`), then local port,
/// local address, peer and inode; sockets equal in all of these keep the
/// kernel's order.
///
/// A socket is large, so the sort moves small keys (the leading part of the
/// order, packed in a `u64`, and the socket's index) and then each socket
/// once.
fn sort(sockets: &mut [Socket]) {
    let mut keys: Vec<(u64, usize)> = sockets
        .iter()
        .enumerate()
        .map(|(i, s)| (sort_prefix(s), i))
        .collect();
    keys.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| order(&sockets[a.1], &sockets[b.1]))
            .then(a.1.cmp(&b.1))
    });
    let from: Vec<usize> = keys.into_iter().map(|(_, i)| i).collect();
    permute(sockets, &from);
}

/// The order of [`sort`].
fn order(a: &Socket, b: &Socket) -> std::cmp::Ordering {
    (a.protocol, a.family, a.local.port())
        .cmp(&(b.protocol, b.family, b.local.port()))
        .then_with(|| a.local.ip().cmp(&b.local.ip()))
        .then_with(|| a.remote.cmp(&b.remote))
        .then_with(|| a.inode.cmp(&b.inode))
}

/// The leading part of [`order`] as a number: protocol, family, local port,
/// whether the local address is IPv6, and its first 32 bits. Sockets with
/// different prefixes are in the order of their prefixes.
fn sort_prefix(s: &Socket) -> u64 {
    let (v6, ip) = match s.local.ip() {
        IpAddr::V4(ip) => (0, u32::from(ip)),
        IpAddr::V6(ip) => {
            let o = ip.octets();
            (1, u32::from_be_bytes([o[0], o[1], o[2], o[3]]))
        }
    };
    (s.protocol as u64) << 50
        | (s.family as u64) << 49
        | u64::from(s.local.port()) << 33
        | v6 << 32
        | u64::from(ip)
}

/// Reorders `items` so that item `i` is the one that was at `from[i]`
/// (`from` is a permutation), moving each item once, in place.
fn permute<T>(items: &mut [T], from: &[usize]) {
    let mut done = vec![false; items.len()];
    for start in 0..items.len() {
        // Each cycle of the permutation is followed once.
        let mut at = start;
        while !done[at] {
            done[at] = true;
            let source = from[at];
            if source == start {
                break;
            }
            items.swap(at, source);
            at = source;
        }
    }
}

/// The kernel keeps at most this many bytes of a program's name in `comm`.
const COMM_LEN: usize = 15;

/// Whether the `comm` of a process matches the name asked for: equal, or
/// equal to the first 15 bytes of a longer name (the kernel truncates).
fn comm_matches(comm: &str, wanted: &str) -> bool {
    comm == wanted || (wanted.len() > COMM_LEN && comm.as_bytes() == &wanted.as_bytes()[..COMM_LEN])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    #[test]
    fn netstat_addresses() {
        let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 22));
        assert_eq!(netstat_addr(&v4), "0.0.0.0:22");
        let any4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        assert_eq!(netstat_addr(&any4), "0.0.0.0:*");
        let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 22));
        assert_eq!(netstat_addr(&v6), ":::22");
        let lo6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 631));
        assert_eq!(netstat_addr(&lo6), "::1:631");
        let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0));
        assert_eq!(netstat_addr(&any6), ":::*");
        let scoped = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 2));
        assert_eq!(netstat_addr(&scoped), "fe80::1:53");
    }

    #[test]
    fn kernel_states() {
        assert_eq!(State::from_kernel(Protocol::Tcp, 10), State::Listen);
        assert_eq!(State::from_kernel(Protocol::Tcp, 1), State::Established);
        assert_eq!(State::from_kernel(Protocol::Tcp, 7), State::Close);
        assert_eq!(State::from_kernel(Protocol::Udp, 7), State::Unconnected);
        assert_eq!(State::from_kernel(Protocol::Udp, 1), State::Established);
        assert_eq!(State::from_kernel(Protocol::Tcp, 12), State::NewSynRecv);
        assert_eq!(State::from_kernel(Protocol::Tcp, 0), State::Unknown);
        assert_eq!(State::from_kernel(Protocol::Tcp, 200), State::Unknown);
    }

    #[test]
    fn state_names_match_serde() {
        for s in [
            State::Established,
            State::SynSent,
            State::SynRecv,
            State::FinWait1,
            State::FinWait2,
            State::TimeWait,
            State::Close,
            State::CloseWait,
            State::LastAck,
            State::Listen,
            State::Closing,
            State::NewSynRecv,
            State::BoundInactive,
            State::Unconnected,
            State::Unknown,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<State>(&json).unwrap(), s);
        }
    }

    #[test]
    fn proto_labels_and_listening() {
        let mut s = Socket {
            protocol: Protocol::Udp,
            family: Family::V6,
            local: SocketAddr::from((Ipv6Addr::UNSPECIFIED, 53)),
            remote: SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
            state: State::Unconnected,
            recv_q: 0,
            send_q: 0,
            uid: 0,
            user: Some("root".into()),
            inode: 1,
            owners: vec![],
        };
        assert_eq!(s.proto_label(), "udp6");
        assert!(s.is_listening());
        s.state = State::Established;
        assert!(!s.is_listening());
        s.protocol = Protocol::Tcp;
        s.family = Family::V4;
        assert_eq!(s.proto_label(), "tcp");
    }

    #[test]
    fn sorting_keys_agree_with_the_order() {
        let ips = [
            "0.0.0.0",
            "127.0.0.1",
            "127.0.0.2",
            "10.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "2001:db8::1",
        ];
        let mut seed: u64 = 88172645463325252;
        let mut next = move |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        for n in [0, 1, 2, 3, 10, 1000] {
            let sockets: Vec<Socket> = (0..n)
                .map(|i| {
                    let ip: IpAddr = ips[next(ips.len())].parse().unwrap();
                    let peer: IpAddr = ips[next(ips.len())].parse().unwrap();
                    Socket {
                        protocol: if next(2) == 0 {
                            Protocol::Tcp
                        } else {
                            Protocol::Udp
                        },
                        family: if ip.is_ipv4() { Family::V4 } else { Family::V6 },
                        local: SocketAddr::new(ip, [0, 22, 80, 65535][next(4)]),
                        remote: SocketAddr::new(peer, [0, 1][next(2)]),
                        state: State::Listen,
                        // Which of the equal sockets came first.
                        recv_q: i as u32,
                        send_q: 0,
                        uid: 0,
                        user: None,
                        inode: [0, 5, 7][next(3)],
                        owners: vec![],
                    }
                })
                .collect();
            let mut ours = sockets.clone();
            sort(&mut ours);
            let mut stable = sockets;
            stable.sort_by(order);
            assert_eq!(ours, stable, "{n} sockets");
        }
    }

    #[test]
    fn permutations() {
        let mut items = vec!['a', 'b', 'c', 'd', 'e'];
        permute(&mut items, &[2, 0, 1, 4, 3]);
        assert_eq!(items, vec!['c', 'a', 'b', 'e', 'd']);
        let mut items = vec![1, 2, 3];
        permute(&mut items, &[0, 1, 2]);
        assert_eq!(items, vec![1, 2, 3]);
        let mut none: Vec<u8> = vec![];
        permute(&mut none, &[]);
        assert!(none.is_empty());
    }

    #[test]
    fn owner_sources_by_name() {
        for (name, source) in [
            ("auto", OwnerSource::Auto),
            ("kernel", OwnerSource::Kernel),
            ("proc", OwnerSource::Proc),
            ("none", OwnerSource::Skip),
        ] {
            assert_eq!(name.parse::<OwnerSource>(), Ok(source));
        }
        let err = "bpf".parse::<OwnerSource>().unwrap_err();
        assert!(
            err.contains("'bpf'") && err.contains("auto, kernel, proc, none"),
            "{err}"
        );
    }

    #[test]
    fn comm_matching() {
        assert!(comm_matches("sshd", "sshd"));
        assert!(!comm_matches("sshd", "ssh"));
        assert!(!comm_matches("ssh", "sshd"));
        // The kernel keeps 15 bytes of "systemd-resolved".
        assert!(comm_matches("systemd-resolve", "systemd-resolved"));
        assert!(comm_matches("systemd-resolve", "systemd-resolve"));
        assert!(!comm_matches("systemd-resolve", "systemd-resolvX"));
        // Names are compared as bytes: a long multi-byte name cannot panic.
        assert!(!comm_matches("ééééééé", "éééééééé"));
        assert!(comm_matches("nginx: ü", "nginx: ü"));
    }
}
