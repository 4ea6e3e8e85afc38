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
//!
//! A server can have tens of thousands of sockets, so the output is rendered
//! in blocks of lines, on one thread per core, and written in large writes
//! as the blocks are done (see [`write_blocks`]). The table is the one
//! `output::table` draws (comfy-table, borderless, numbers right-aligned),
//! laid out here directly when every cell is printable ASCII, as it nearly
//! always is: one byte is one column then. A user or program name with other
//! characters (wide, combining, control) goes through comfy-table, which
//! measures them. The JSON is the one `output::print_json` prints: each
//! socket written by serde_json's writer, in the same parallel blocks; tests
//! hold both to the originals.

use crate::exit;
use crate::output::{right_align, table};
use crate::Global;
use anyhow::Result;
use clap::Args;
use inspect::{netstat_addr, OwnerSource, Socket, SocketQuery, State};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

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
    /// Where owners are read from: kernel (the task-file iterator, BPF; needs
    /// root and a kernel with BTF), proc (a walk of /proc/*/fd, as ss -p
    /// does), auto (kernel where it can be used, proc where not), or none
    /// (the sockets alone, like ss -tuln).
    #[arg(
        long,
        value_name = "auto|kernel|proc|none",
        env = "PORTWALL_OWNERS",
        default_value = "auto"
    )]
    pub owners: OwnerSource,
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
            owners: self.owners,
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

/// The right-aligned columns: Recv-Q and Send-Q.
const RIGHT: [bool; 9] = [false, true, true, false, false, false, false, false, false];

/// Sockets per block of output: rendered by one thread, written at once.
const BLOCK: usize = 1024;

/// The most threads that render.
const MAX_THREADS: usize = 4;

pub fn run(global: &Global, args: &PortsArgs) -> Result<u8> {
    let mut sockets = inspect::list_sockets(&args.query())?;
    // The library's order already is this one; keep it explicit.
    sockets
        .sort_by(|a, b| (a.proto_label(), a.local.port()).cmp(&(b.proto_label(), b.local.port())));
    let mut stdout = std::io::stdout().lock();
    let written = if global.json {
        write_json(&mut stdout, &sockets)
    } else {
        write_text(&mut stdout, &sockets)
    };
    match written.and_then(|()| stdout.flush()) {
        // A reader that went away (`portwall ports | head`) is no error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    // The process ends here: freeing the sockets' tens of thousands of small
    // allocations one by one would only take time.
    std::mem::forget(sockets);
    Ok(exit::OK)
}

/// Writes `head`, the blocks of [`BLOCK`] sockets as `render` writes them
/// (given the number of the block), and `tail` to `out`.
///
/// The blocks are rendered by one thread per core (up to [`MAX_THREADS`]),
/// this one included, and written by this one in order as they are done.
/// A block is taken only when fewer than two per thread are ahead of the
/// writer, and buffers are reused: the memory used stays the same whatever
/// the number of sockets.
fn write_blocks<W: Write>(
    out: &mut W,
    head: &[u8],
    sockets: &[Socket],
    tail: &[u8],
    render: impl Fn(usize, &[Socket], &mut Vec<u8>) + Sync,
) -> std::io::Result<()> {
    out.write_all(head)?;
    let blocks: Vec<&[Socket]> = sockets.chunks(BLOCK).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(MAX_THREADS).min(blocks.len()).max(1);
    if threads == 1 {
        let mut buf = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            buf.clear();
            render(i, block, &mut buf);
            out.write_all(&buf)?;
        }
        return out.write_all(tail);
    }
    let pipeline = Pipeline {
        blocks: &blocks,
        window: 2 * threads,
        state: Mutex::new(Blocks {
            taken: 0,
            written: 0,
            done: (0..2 * threads).map(|_| None).collect(),
            spare: Vec::new(),
            stopped: false,
        }),
        changed: Condvar::new(),
        render: &render,
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            let started = std::thread::Builder::new()
                .name("ports-render".into())
                .spawn_scoped(scope, || pipeline.render_blocks());
            // Without more threads, the ones started render everything.
            if started.is_err() {
                break;
            }
        }
        let written = pipeline.write_blocks(out);
        // Whatever happened, the renderers stop.
        pipeline.lock().stopped = true;
        pipeline.changed.notify_all();
        written
    })?;
    out.write_all(tail)
}

/// The blocks of [`write_blocks`] and the threads rendering them.
struct Pipeline<'a, R> {
    blocks: &'a [&'a [Socket]],
    /// How many blocks can be rendered ahead of the writer.
    window: usize,
    state: Mutex<Blocks>,
    /// Signalled when a block is taken, rendered or written.
    changed: Condvar,
    render: &'a R,
}

struct Blocks {
    /// Blocks taken by a thread to render (all those before this number).
    taken: usize,
    /// Blocks written (all those before this number).
    written: usize,
    /// Rendered blocks waiting to be written: block `i` at `i % window`.
    done: Vec<Option<Vec<u8>>>,
    /// Buffers of written blocks, to render others into.
    spare: Vec<Vec<u8>>,
    /// The writer is done, or failed: no more rendering.
    stopped: bool,
}

impl<R: Fn(usize, &[Socket], &mut Vec<u8>) + Sync> Pipeline<'_, R> {
    fn lock(&self) -> MutexGuard<'_, Blocks> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the next block if it may be rendered now: returns its number
    /// and a buffer for it.
    fn take(&self, state: &mut Blocks) -> Option<(usize, Vec<u8>)> {
        let i = state.taken;
        if state.stopped || i == self.blocks.len() || i >= state.written + self.window {
            return None;
        }
        state.taken += 1;
        Some((i, state.spare.pop().unwrap_or_default()))
    }

    /// Renders block `i` into `buf` and hands it to the writer.
    fn render_block(&self, i: usize, mut buf: Vec<u8>) {
        buf.clear();
        (self.render)(i, self.blocks[i], &mut buf);
        self.lock().done[i % self.window] = Some(buf);
        self.changed.notify_all();
    }

    /// A rendering thread: takes blocks until none are left.
    fn render_blocks(&self) {
        let _stop = StopOnPanic(self);
        // Each turn renders a block or waits for one to be written.
        loop {
            let mut state = self.lock();
            let (i, buf) = loop {
                if let Some(next) = self.take(&mut state) {
                    break next;
                }
                if state.stopped || state.taken == self.blocks.len() {
                    return;
                }
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            };
            drop(state);
            self.render_block(i, buf);
        }
    }

    /// The writer: writes the blocks in order, rendering blocks itself while
    /// the next one to write is not done.
    fn write_blocks<W: Write>(&self, out: &mut W) -> std::io::Result<()> {
        let _stop = StopOnPanic(self);
        // Each turn writes a block, renders one, or waits for one to be
        // rendered by a thread that took it.
        loop {
            let mut state = self.lock();
            let next = state.written;
            if next == self.blocks.len() {
                return Ok(());
            }
            if state.stopped {
                // A renderer panicked: the scope passes its panic on.
                return Err(std::io::Error::other("a rendering thread failed"));
            }
            if let Some(buf) = state.done[next % self.window].take() {
                drop(state);
                out.write_all(&buf)?;
                let mut state = self.lock();
                state.written += 1;
                state.spare.push(buf);
                drop(state);
                self.changed.notify_all();
            } else if let Some((i, buf)) = self.take(&mut state) {
                drop(state);
                self.render_block(i, buf);
            } else {
                drop(
                    self.changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner),
                );
            }
        }
    }
}

/// Stops the pipeline if its thread panics, so that no other thread waits
/// for a block that will never come.
struct StopOnPanic<'p, 'a, R: Fn(usize, &[Socket], &mut Vec<u8>) + Sync>(&'p Pipeline<'a, R>);

impl<R: Fn(usize, &[Socket], &mut Vec<u8>) + Sync> Drop for StopOnPanic<'_, '_, R> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().stopped = true;
            self.0.changed.notify_all();
        }
    }
}

// ---- The table ----

/// Writes the table as `output::print_table` prints it: columns as wide as
/// their widest cell, two spaces apart, no trailing spaces.
fn write_text<W: Write>(out: &mut W, sockets: &[Socket]) -> std::io::Result<()> {
    let Some(widths) = column_widths(sockets) else {
        return out.write_all(&text_with_comfy_table(sockets));
    };
    let mut header = Vec::new();
    line(&mut header, &widths, |out, c| {
        out.extend_from_slice(HEADER[c].as_bytes())
    });
    write_blocks(out, &header, sockets, b"", |_, block, buf| {
        for s in block {
            line(buf, &widths, |out, c| push_cell(out, s, c));
        }
    })
}

/// The general path: comfy-table measures every character.
fn text_with_comfy_table(sockets: &[Socket]) -> Vec<u8> {
    let mut t = table(HEADER);
    for s in sockets {
        t.add_row(row(s));
    }
    let right: Vec<usize> = (0..RIGHT.len()).filter(|&c| RIGHT[c]).collect();
    right_align(&mut t, &right);
    let mut out = Vec::new();
    for line in t.to_string().lines() {
        out.extend_from_slice(line.strip_prefix(' ').unwrap_or(line).trim_end().as_bytes());
        out.push(b'\n');
    }
    out
}

/// The width of each column: its widest cell, the header's included, at
/// least 1 (as comfy-table has it); or `None` when a cell is not printable
/// ASCII (then its width is not its length).
fn column_widths(sockets: &[Socket]) -> Option<[usize; 9]> {
    let mut widths = HEADER.map(|h| h.len().max(1));
    for s in sockets {
        for (c, w) in widths.iter_mut().enumerate() {
            *w = (*w).max(cell_len(s, c)?);
        }
    }
    Some(widths)
}

/// Appends one line of the table: the cells that `cell` writes, aligned in
/// columns of `widths`, without trailing spaces.
fn line(out: &mut Vec<u8>, widths: &[usize; 9], cell: impl Fn(&mut Vec<u8>, usize)) {
    let start = out.len();
    for (c, &width) in widths.iter().enumerate() {
        if c > 0 {
            out.extend_from_slice(b"  ");
        }
        let before = out.len();
        cell(out, c);
        let len = out.len() - before;
        if RIGHT[c] {
            // Written where it starts, then moved right.
            out.resize(before + width, b' ');
            out.copy_within(before..before + len, before + width - len);
            out[before..before + width - len].fill(b' ');
        } else if c + 1 < widths.len() {
            out.resize(before + width, b' ');
        }
    }
    let kept = out[start..]
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| start + i + 1);
    out.truncate(kept);
    out.push(b'\n');
}

/// The length of the cell in column `c` of the row of `s`, as [`push_cell`]
/// writes it, or `None` when it is not printable ASCII.
fn cell_len(s: &Socket, c: usize) -> Option<usize> {
    Some(match c {
        0 => s.proto_label().len(),
        1 => decimal_len(u64::from(s.recv_q)),
        2 => decimal_len(u64::from(s.send_q)),
        3 => addr_len(&s.local),
        4 => addr_len(&s.remote),
        5 => state_cell_str(s.state).len(),
        6 => match &s.user {
            Some(user) => printable(user)?.len(),
            None => decimal_len(u64::from(s.uid)),
        },
        7 => decimal_len(s.inode),
        _ if s.owners.is_empty() => 1,
        _ => {
            let mut len = s.owners.len() - 1;
            for o in &s.owners {
                len += decimal_len(u64::from(o.pid)) + 1 + printable(&o.name)?.len();
            }
            len
        }
    })
}

/// Appends the cell in column `c` of the row of `s`: the text of [`row`].
fn push_cell(out: &mut Vec<u8>, s: &Socket, c: usize) {
    match c {
        0 => out.extend_from_slice(s.proto_label().as_bytes()),
        1 => push_decimal(out, u64::from(s.recv_q)),
        2 => push_decimal(out, u64::from(s.send_q)),
        3 => push_addr(out, &s.local, true),
        4 => push_addr(out, &s.remote, true),
        5 => out.extend_from_slice(state_cell_str(s.state).as_bytes()),
        6 => match &s.user {
            Some(user) => out.extend_from_slice(user.as_bytes()),
            None => push_decimal(out, u64::from(s.uid)),
        },
        7 => push_decimal(out, s.inode),
        _ if s.owners.is_empty() => out.push(b'-'),
        _ => {
            for (i, o) in s.owners.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_decimal(out, u64::from(o.pid));
                out.push(b'/');
                out.extend_from_slice(o.name.as_bytes());
            }
        }
    }
}

/// `s` when every character of it is printable ASCII (one column each).
fn printable(s: &str) -> Option<&str> {
    s.bytes().all(|b| (b' '..=b'~').contains(&b)).then_some(s)
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let start = out.len();
    out.resize(start + decimal_len(n), b'0');
    for digit in out[start..].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The length of [`netstat_addr`]`(addr)`.
fn addr_len(addr: &SocketAddr) -> usize {
    /// Counts what is written.
    struct Len(usize);
    impl std::fmt::Write for Len {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let ip = match addr.ip() {
        IpAddr::V4(ip) => {
            3 + ip
                .octets()
                .iter()
                .map(|&o| decimal_len(u64::from(o)))
                .sum::<usize>()
        }
        IpAddr::V6(ip) => {
            let mut len = Len(0);
            let _ = std::fmt::Write::write_fmt(&mut len, format_args!("{ip}"));
            len.0
        }
    };
    let port = match addr.port() {
        0 => 1,
        port => decimal_len(u64::from(port)),
    };
    ip + 1 + port
}

/// Appends `addr` as [`netstat_addr`] writes it (`netstat`: no brackets,
/// port 0 is `*`), or else as its `Display` does (as serde writes it).
fn push_addr(out: &mut Vec<u8>, addr: &SocketAddr, netstat: bool) {
    let ip = match addr {
        SocketAddr::V4(a) => *a.ip(),
        // Rarer: through the formatter.
        SocketAddr::V6(a) if netstat => {
            let _ = write!(out, "{}", a.ip());
            return push_port(out, a.port(), netstat);
        }
        SocketAddr::V6(a) => {
            let _ = write!(out, "{a}");
            return;
        }
    };
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_decimal(out, u64::from(octet));
    }
    push_port(out, addr.port(), netstat);
}

fn push_port(out: &mut Vec<u8>, port: u16, netstat: bool) {
    out.push(b':');
    match port {
        0 if netstat => out.push(b'*'),
        port => push_decimal(out, u64::from(port)),
    }
}

// ---- JSON ----

/// Writes what `output::print_json` prints for `sockets`: serde_json's
/// pretty form of them, followed by a newline. Each socket is written by
/// serde_json's writer, in blocks rendered in parallel as the table is.
fn write_json<W: Write>(out: &mut W, sockets: &[Socket]) -> std::io::Result<()> {
    if sockets.is_empty() {
        return out.write_all(b"[]\n");
    }
    write_blocks(out, b"[\n", sockets, b"\n]\n", |i, block, buf| {
        let mut one = Vec::with_capacity(512);
        for (j, s) in block.iter().enumerate() {
            if i > 0 || j > 0 {
                buf.extend_from_slice(b",\n");
            }
            one.clear();
            // Writing to a Vec fails only on a Serialize error, and a
            // Socket's has none.
            let _ = serde_json::to_writer_pretty(&mut one, s);
            indent_into(buf, &one);
        }
    })
}

/// `json` one level in, as serde_json's pretty printer writes an element of
/// the top-level array: two spaces before each line. (A JSON text has no raw
/// newline inside a string.)
fn indent_into(out: &mut Vec<u8>, json: &[u8]) {
    out.extend_from_slice(b"  ");
    for line in json.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line);
        if line.ends_with(b"\n") {
            out.extend_from_slice(b"  ");
        }
    }
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
    state_cell_str(state).to_string()
}

fn state_cell_str(state: State) -> &'static str {
    match state {
        State::Unconnected => "",
        other => other.as_str(),
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
    use inspect::Owner;
    use inspect::{Family, Protocol};

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
            owners: inspect::OwnerSource::Proc,
        };
        let q = args(false, false, false).query();
        assert!(q.tcp && q.udp && q.listening_only);
        assert_eq!(q.owners, inspect::OwnerSource::Proc);
        assert_eq!((q.port, q.process.as_deref()), (Some(22), Some("sshd")));
        let q = args(true, true, false).query();
        assert!(q.tcp && !q.udp && !q.listening_only);
        let q = args(false, false, true).query();
        assert!(!q.tcp && q.udp);
        let q = args(false, true, true).query();
        assert!(q.tcp && q.udp);
    }

    /// `n` sockets that differ in every way the output shows: families,
    /// addresses (IPv4-mapped, scoped link-local), ports 0 and 65535,
    /// states, queue lengths up to `u32::MAX`, known and unknown users, no,
    /// one or several owners, names with spaces, quotes and backslashes.
    /// With `unusual`, some names need more than ASCII (wide characters,
    /// accents, control characters, a newline).
    fn varied(n: usize, unusual: bool) -> Vec<Socket> {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        let addresses = [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "2001:db8::abcd:1",
            "::ffff:192.0.2.1",
        ];
        let mut names = vec![
            "sshd",
            "nginx",
            "a b",
            "x\"y",
            "back\\slash",
            "trail ",
            " lead",
            "systemd-resolve",
        ];
        if unusual {
            names.extend(["名前", "café", "tab\there", "new\nline", "bell\u{7}"]);
        }
        let states = [
            State::Listen,
            State::Established,
            State::Unconnected,
            State::TimeWait,
            State::Close,
        ];
        (0..n)
            .map(|i| {
                let addr = |next: &mut dyn FnMut(u64) -> u64| -> SocketAddr {
                    let ip: IpAddr = addresses[next(addresses.len() as u64) as usize]
                        .parse()
                        .unwrap();
                    let port = [0, 1, 22, 8080, 65535][next(5) as usize];
                    match ip {
                        IpAddr::V6(v6) if v6.segments()[0] == 0xfe80 => {
                            SocketAddr::V6(std::net::SocketAddrV6::new(v6, port, 0, 2))
                        }
                        ip => SocketAddr::new(ip, port),
                    }
                };
                let local = addr(&mut next);
                let remote = addr(&mut next);
                let queue = |next: &mut dyn FnMut(u64) -> u64| {
                    [0, 7, 128, 4096, u32::MAX][next(5) as usize]
                };
                let owners = (0..[0, 1, 1, 1, 3][next(5) as usize])
                    .map(|_| Owner {
                        pid: next(4_194_304) as u32,
                        name: names[next(names.len() as u64) as usize].to_string(),
                    })
                    .collect();
                Socket {
                    protocol: if next(2) == 0 {
                        Protocol::Tcp
                    } else {
                        Protocol::Udp
                    },
                    family: if local.is_ipv4() {
                        Family::V4
                    } else {
                        Family::V6
                    },
                    local,
                    remote,
                    state: states[next(states.len() as u64) as usize],
                    recv_q: queue(&mut next),
                    send_q: queue(&mut next),
                    uid: [0, 65534, 1000, u32::MAX][next(4) as usize],
                    user: match next(4) {
                        0 => None,
                        1 => Some("root".into()),
                        2 => Some(names[next(names.len() as u64) as usize].to_string()),
                        _ => Some("a-rather-long-user-name".into()),
                    },
                    inode: [0, 1, i as u64, u64::MAX][next(4) as usize],
                    owners,
                }
            })
            .collect()
    }

    #[test]
    fn the_table_is_comfy_tables() {
        for n in [0, 1, 2, 50, BLOCK, 9 * BLOCK + 3] {
            let sockets = varied(n, false);
            assert!(column_widths(&sockets).is_some());
            let ours = String::from_utf8(text(&sockets)).unwrap();
            let theirs = String::from_utf8(text_with_comfy_table(&sockets)).unwrap();
            assert_eq!(ours, theirs, "{n} sockets");
        }
        // netstat's look, one row.
        let sockets = vec![socket()];
        assert_eq!(
            String::from_utf8(text(&sockets)).unwrap(),
            "Proto  Recv-Q  Send-Q  Local Address  Foreign Address  State   User  Inode  PID/Program name\n\
             tcp6        0     128  :::22          :::*             LISTEN  root  1234   700/sshd\n"
        );
    }

    #[test]
    fn names_beyond_ascii_are_measured_by_comfy_table() {
        let sockets = varied(300, true);
        assert!(column_widths(&sockets).is_none());
        assert_eq!(text(&sockets), text_with_comfy_table(&sockets));
        let mut wide = socket();
        wide.owners[0].name = "名前".into();
        assert_eq!(cell_len(&wide, 8), None);
        wide.user = Some("café".into());
        assert_eq!(cell_len(&wide, 6), None);
    }

    #[test]
    fn cells_are_as_long_as_written() {
        for s in varied(500, false) {
            let cells = row(&s);
            for (c, cell) in cells.iter().enumerate() {
                let mut out = Vec::new();
                push_cell(&mut out, &s, c);
                assert_eq!(String::from_utf8(out).unwrap(), *cell);
                assert_eq!(cell_len(&s, c), Some(cell.len()), "{cell:?}");
            }
        }
    }

    #[test]
    fn the_json_is_serde_jsons() {
        for n in [0, 1, 2, 50, BLOCK, 9 * BLOCK + 3] {
            for unusual in [false, true] {
                let sockets = varied(n, unusual);
                let mut ours = Vec::new();
                write_json(&mut ours, &sockets).unwrap();
                let ours = String::from_utf8(ours).unwrap();
                let theirs = serde_json::to_string_pretty(&sockets).unwrap() + "\n";
                assert_eq!(ours, theirs, "{n} sockets");
            }
        }
    }

    fn text(sockets: &[Socket]) -> Vec<u8> {
        let mut out = Vec::new();
        write_text(&mut out, sockets).unwrap();
        out
    }

    /// A writer that takes a few bytes at a time and then fails, as a pipe
    /// whose reader went away.
    struct Closing(usize);

    impl Write for Closing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.0).min(100);
            self.0 -= n;
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_stops_the_renderers() {
        let sockets = varied(20 * BLOCK, false);
        for budget in [0, 10, 5000, 300_000] {
            let e = write_json(&mut Closing(budget), &sockets).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
            let e = write_text(&mut Closing(budget), &sockets).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
        }
    }

    #[test]
    fn a_panicking_renderer_does_not_hang_the_writer() {
        let sockets = varied(20 * BLOCK, false);
        for bad in [0, 1, 7, 19] {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut out = Vec::new();
                write_blocks(&mut out, b"", &sockets, b"", |i, _, buf| {
                    assert_ne!(i, bad, "block {i} cannot be rendered");
                    buf.push(b'.');
                })
            }));
            assert!(result.is_err(), "block {bad}");
        }
    }

    #[test]
    fn decimals() {
        for n in [0, 1, 9, 10, 99, 100, 65535, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
            assert_eq!(decimal_len(n), n.to_string().len());
        }
    }
}
