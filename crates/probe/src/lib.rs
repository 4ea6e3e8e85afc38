//! # probe: is a port reachable from here?
//!
//! `probe` answers what `telnet host port` answers, for many ports at once and for
//! UDP too. Every (address, port) gets one verdict:
//!
//! | state           | TCP                                   | UDP                                     |
//! |-----------------|---------------------------------------|-----------------------------------------|
//! | `open`          | the connection was accepted (SYN-ACK) | the service replied                      |
//! | `closed`        | actively refused: RST, or ICMP port unreachable / administratively prohibited (a reject rule answered) | ICMP port unreachable / administratively prohibited |
//! | `filtered`      | no answer within the timeout, twice: a firewall drops it (or an ICMP host/net unreachable from a router) | an ICMP host/net unreachable from a router |
//! | `open\|filtered` | —                                     | silence: UDP cannot tell a service that ignores the probe from a firewall that drops it |
//!
//! Each verdict carries a [`Reason`] (nmap's `--reason`), the round-trip time of the
//! answer and, for open TCP ports, the first line the service sends within a short
//! wait (an SSH banner, an SMTP greeting), as telnet would show it. Two deliberate
//! differences from nmap, both "a reject rule answered, so the host is reachable":
//! an ICMP "administratively prohibited" is `closed` here, and so is an ICMP host or
//! network unreachable sent by the target itself (`reject with icmpx
//! host-unreachable`; from a router it stays `filtered`); nmap says `filtered` for
//! both. The reason (`admin-prohibited`, `host-unreach`) says which it was.
//!
//! ## TCP: many non-blocking connects, bounded by the window
//!
//! A TCP probe is an ordinary non-blocking `connect()` (no raw sockets, no root): the
//! kernel sends the SYN and reports SYN-ACK (connected), RST (`ECONNREFUSED`) or an
//! ICMP error. Sockets get `IP_RECVERR`, so that an ICMP error comes with its type,
//! code and sender (see `icmp`), and an accepted connection is closed with
//! `SO_LINGER 0`, i.e. with a RST: no `TIME_WAIT` pile-up here, no half-open
//! connection left on the server.
//!
//! The cost of a scan is mostly the kernel's (a SYN and its answer, processed on
//! both ends), so the engine spends as little as it can around it. It runs on
//! threads of its own, one per CPU, each driving its own non-blocking sockets with
//! plain system calls and its own epoll instance: no task, future or allocation per
//! port. On a LAN or between namespaces the kernel has usually processed the answer
//! before `connect()` returns, so a second `connect()` on the socket tells the
//! verdict at once, and a socket refused by a RST is reused for the next port
//! (Linux lets a socket whose connect failed connect again), bound to its local
//! port so that the kernel does not look for a free one at every connect: a closed
//! port costs two system calls. Only probes still waiting are registered with epoll.
//! Threads share the job counter, the round-trip estimates and little else. A full
//! 65535-port scan of a host that answers every port is about 0.7 s of CPU on a
//! small VM, nearly all of it the kernel's.
//!
//! ## Concurrency adapts, and respects the open-file limit
//!
//! Each probe in flight holds a socket, so the ceiling is the open-file budget:
//! `RLIMIT_NOFILE` is read, its soft limit raised to the hard limit, and what is already
//! open plus a headroom is kept free ([`fd_budget`]); the caller may lower it further
//! ([`ProbeSpec::max_concurrency`]). Below that ceiling (shared out among the threads)
//! the window behaves like TCP congestion control: it starts at [`INITIAL_WINDOW`],
//! grows by one per completed probe (doubling every round trip) and is halved when a
//! probe is *lost* — unanswered, then answered on its retransmission — because losses
//! under load mean the path or the target is saturated. Silence on both tries is a
//! firewall's decision, not congestion, so it does not shrink the window: a host that
//! drops everything is scanned at full width. When the system refuses a socket, a buffer
//! or a local port (`EMFILE`, `ENOBUFS`, `EADDRNOTAVAIL`, ...) the probe is put back and
//! the ceiling lowered to three quarters of what is in flight.
//!
//! ## Timeouts adapt to round trips
//!
//! How long silence must last before it counts is not a fixed 3 s: like nmap and TCP
//! (RFC 6298), every answer's round trip updates a smoothed RTT and its variation, and
//! the timeout is `srtt + 4 * rttvar` clamped to [`Timeouts`] (by default 50 ms – 2 s
//! for TCP, 100 ms – 2 s for UDP). Before the first answer it is [`Timeouts::initial`]
//! (1 s), and probes already waiting re-read the timeout, so the first answers shorten
//! the wait of the whole first wave. A filtered port is retried once (nmap does the
//! same) so that a SYN dropped under load is not reported as "filtered": it costs two
//! timeouts, but they overlap with everything else in flight, so a scan costs about one
//! timeout per window of silent ports, not one per port. Each address keeps its own
//! estimate (the IPv4 and IPv6 addresses of one name may take different paths); over TCP
//! an address borrows the other addresses' estimate until it has answers of its own.
//!
//! ## UDP, and the ICMP rate limit
//!
//! UDP has no handshake: a probe is a datagram (empty, or a valid request for
//! well-known ports: a DNS query to 53, an NTP client request to 123, an SNMP
//! get-request to 161), a reply means open, an ICMP port unreachable means closed,
//! and silence means open|filtered. One unconnected socket per address sends every
//! probe; replies are matched by source port and ICMP errors are read from the
//! socket's error queue, which names the port of the datagram that caused them, so
//! even a 65535-port UDP scan needs one descriptor per address.
//!
//! Silence only means something if the target would have answered. Linux sends at
//! most about one ICMP error per second to a given peer after a burst of six
//! (`net.ipv4.icmp_ratelimit`, `icmp_msgs_per_sec`; IPv6 is laxer), and so do many
//! routers: probe 50 closed ports at once and 44 of them look silent. nmap slows down
//! when it notices; we *check*. A silent try only counts towards open|filtered when a
//! probe sent right after it (at most 20 ms later) drew an ICMP error, which proves
//! that the target was answering at that moment. Once a closed port is known, every
//! retransmission round ends with a probe to it (a *canary*); when the canary gets
//! no answer, the round proves nothing, the next round is half as large and waits
//! (50 ms doubling up to 1 s) for the limiter to refill. A port is open|filtered after
//! `1 + retries` counted silent tries (3 by default), or after four times as many
//! tries in all. The result: closed ports are reported as closed even behind a
//! 1/s limiter, at about the limiter's pace (nmap's pace too), and silence is
//! reported as open|filtered only when it was real.
//!
//! ## Names
//!
//! A hostname is resolved to every address it has (IPv4 and IPv6) and each address is
//! probed; an address that cannot be probed from here at all (no route, family not
//! configured) is reported in [`ProbeReport::unreachable`] rather than failing the
//! others.

mod icmp;
mod ports;
mod target;
mod tcp;
mod timing;
mod udp;

pub use ports::{PortList, PortListError};
pub use target::resolve;
pub use timing::{fd_budget, Timeouts};

use serde::{Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The window a scan starts with (probes in flight); it grows from there.
pub const INITIAL_WINDOW: usize = 256;
/// The most probes in flight unless [`ProbeSpec::max_concurrency`] says otherwise
/// (the open-file budget may lower it further).
pub const DEFAULT_MAX_CONCURRENCY: usize = 8192;
/// The longest an open TCP port is given to send its first line: the wait itself is
/// 100 ms plus four round trips of the connection, up to this.
pub const DEFAULT_BANNER_WAIT: Duration = Duration::from_millis(300);

/// The name of the service usually found on `port` over `protocol` (nmap's SERVICE
/// column): from `/etc/services` when it names the port, else from the built-in
/// table of [`model::Services`]. The file is read once per process.
pub fn service_name(port: u16, protocol: Protocol) -> Option<&'static str> {
    static SERVICES: OnceLock<model::Services> = OnceLock::new();
    let services = SERVICES.get_or_init(|| match std::fs::read_to_string("/etc/services") {
        Ok(text) => model::Services::with_etc_services(&text),
        Err(_) => model::Services::builtin(),
    });
    let protocol = match protocol {
        Protocol::Tcp => model::Protocol::Tcp,
        Protocol::Udp => model::Protocol::Udp,
    };
    services.name_of(port, protocol)
}

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a port looks like from here. See the crate documentation for the exact
/// definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PortState {
    /// A connection was accepted (TCP) or the service replied (UDP).
    #[serde(rename = "open")]
    Open,
    /// Actively refused: the host is reachable and nothing listens, or a reject rule
    /// answered (TCP RST, ICMP port unreachable or administratively prohibited).
    #[serde(rename = "closed")]
    Closed,
    /// No answer within the timeout, retransmission included: a firewall drops it.
    #[serde(rename = "filtered")]
    Filtered,
    /// UDP only: no answer, and UDP cannot tell a silent service from a drop.
    #[serde(rename = "open|filtered")]
    OpenFiltered,
}

impl PortState {
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::Filtered => "filtered",
            PortState::OpenFiltered => "open|filtered",
        }
    }
}

impl fmt::Display for PortState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a port got its state: the answer that decided it (nmap's `--reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// TCP: the connection was accepted.
    SynAck,
    /// TCP: the connection was refused with a RST.
    Reset,
    /// UDP: the service sent a datagram back.
    UdpResponse,
    /// ICMP port unreachable.
    PortUnreachable,
    /// ICMP protocol unreachable: the host does not speak TCP/UDP.
    ProtocolUnreachable,
    /// ICMP administratively prohibited (or another "prohibited" code): a reject rule.
    AdminProhibited,
    /// ICMP host unreachable.
    HostUnreachable,
    /// ICMP network unreachable.
    NetUnreachable,
    /// ICMP time exceeded: a routing loop or a TTL too small on the way.
    TimeExceeded,
    /// Another ICMP error.
    Unreachable,
    /// Nothing came back, retransmissions included.
    NoResponse,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SynAck => "syn-ack",
            Reason::Reset => "reset",
            Reason::UdpResponse => "udp-response",
            Reason::PortUnreachable => "port-unreach",
            Reason::ProtocolUnreachable => "proto-unreach",
            Reason::AdminProhibited => "admin-prohibited",
            Reason::HostUnreachable => "host-unreach",
            Reason::NetUnreachable => "net-unreach",
            Reason::TimeExceeded => "time-exceeded",
            Reason::Unreachable => "unreachable",
            Reason::NoResponse => "no-response",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to probe and how.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeSpec {
    /// An IPv4 or IPv6 address, or a hostname (every address it resolves to is
    /// probed).
    pub host: String,
    pub ports: PortList,
    pub protocol: Protocol,
    /// Bounds of the adaptive per-probe timeout ([`Timeouts::for_protocol`] by
    /// default).
    pub timeouts: Timeouts,
    /// The most probes in flight. `None`: [`DEFAULT_MAX_CONCURRENCY`]. Either way the
    /// open-file budget ([`fd_budget`]) caps it.
    pub max_concurrency: Option<usize>,
    /// The longest an open TCP port is given to send its first line (the wait is
    /// 100 ms plus four round trips of its connection, up to this); zero: do not wait.
    #[serde(serialize_with = "ser_ms")]
    pub banner_wait: Duration,
    /// Retransmissions of an unanswered probe before the port counts as filtered
    /// (TCP) or open|filtered (UDP). `None`: 1 for TCP (like nmap), 2 for UDP.
    pub retries: Option<u8>,
}

impl ProbeSpec {
    /// A probe of `ports` on `host` with the default timeouts, concurrency, banner
    /// wait and retries.
    pub fn new(host: impl Into<String>, ports: PortList, protocol: Protocol) -> ProbeSpec {
        ProbeSpec {
            host: host.into(),
            ports,
            protocol,
            timeouts: Timeouts::for_protocol(protocol),
            max_concurrency: None,
            banner_wait: DEFAULT_BANNER_WAIT,
            retries: None,
        }
    }

    pub(crate) fn tries(&self) -> u8 {
        let retries = self.retries.unwrap_or(match self.protocol {
            Protocol::Tcp => 1,
            Protocol::Udp => 2,
        });
        retries.saturating_add(1)
    }

    fn validate(&self) -> Result<(), ProbeError> {
        let t = &self.timeouts;
        let bad = |m: String| Err(ProbeError::InvalidSpec(m));
        if t.max.is_zero() {
            return bad("the maximum timeout must be more than 0 ms".into());
        }
        if t.min > t.max || t.initial > t.max || t.initial < t.min {
            return bad(format!(
                "timeouts must satisfy min <= initial <= max, got min {:?}, initial {:?}, max {:?}",
                t.min, t.initial, t.max
            ));
        }
        if t.max > Duration::from_secs(300) {
            return bad(format!(
                "a timeout of {:?} is too long: at most 300 s",
                t.max
            ));
        }
        if self.max_concurrency == Some(0) {
            return bad("max_concurrency must be at least 1".into());
        }
        if self.banner_wait > Duration::from_secs(60) {
            return bad(format!(
                "a banner wait of {:?} is too long: at most 60 s",
                self.banner_wait
            ));
        }
        Ok(())
    }
}

/// The verdict on one port of one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortResult {
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub state: PortState,
    pub reason: Reason,
    /// Round-trip time of the answer that decided the state (none for silence).
    #[serde(rename = "rtt_ms", serialize_with = "ser_opt_ms")]
    pub rtt: Option<Duration>,
    /// Open TCP ports: the first line the service sent within the banner wait, with
    /// control characters and invalid UTF-8 escaped (`\x1b`).
    pub banner: Option<String>,
    /// The well-known service on this port, if any ([`service_name`]).
    pub service: Option<&'static str>,
}

/// How many ports ended in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub open: usize,
    pub closed: usize,
    pub filtered: usize,
    pub open_filtered: usize,
}

impl Summary {
    pub fn of<'a>(results: impl IntoIterator<Item = &'a PortResult>) -> Summary {
        let mut s = Summary::default();
        for r in results {
            match r.state {
                PortState::Open => s.open += 1,
                PortState::Closed => s.closed += 1,
                PortState::Filtered => s.filtered += 1,
                PortState::OpenFiltered => s.open_filtered += 1,
            }
        }
        s
    }

    pub fn total(&self) -> usize {
        self.open + self.closed + self.filtered + self.open_filtered
    }
}

/// An address of the host that could not be probed from here at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressError {
    pub address: IpAddr,
    pub error: String,
}

/// How the scan went: useful to tune and to benchmark.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanStats {
    /// Probes sent, retransmissions and UDP canaries included.
    pub probes: u64,
    /// Probes sent again because the previous one went unanswered.
    pub retransmissions: u64,
    /// Probes lost: unanswered, then answered on a retransmission.
    pub losses: u64,
    /// The most probes that were in flight at once.
    pub max_in_flight: usize,
    /// The ceiling on probes in flight (caller's maximum, open-file budget, and
    /// whatever the system refused on the way).
    pub concurrency_limit: usize,
    /// The smoothed round-trip time at the end, over every address.
    #[serde(rename = "srtt_ms", serialize_with = "ser_opt_ms")]
    pub srtt: Option<Duration>,
    /// The per-probe timeout at the end.
    #[serde(rename = "timeout_ms", serialize_with = "ser_ms")]
    pub timeout: Duration,
}

/// Everything a probe found.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub host: String,
    /// The addresses probed (the host's address, or every address of the name).
    pub addresses: Vec<IpAddr>,
    pub protocol: Protocol,
    pub ports: PortList,
    /// One result per (address, port), by address in `addresses` order, then port.
    pub results: Vec<PortResult>,
    /// Addresses that could not be probed at all (no route, ...), with the reason.
    pub unreachable: Vec<AddressError>,
    pub summary: Summary,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
    pub stats: ScanStats,
}

/// Why a probe could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("bad host {host:?}: {reason}")]
    BadHost { host: String, reason: String },
    #[error("cannot resolve {host:?}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("invalid probe settings: {0}")]
    InvalidSpec(String),
    #[error("cannot probe any address of {host:?}: {}", details.iter().map(|e| format!("{}: {}", e.address, e.error)).collect::<Vec<_>>().join("; "))]
    Unreachable {
        host: String,
        details: Vec<AddressError>,
    },
    #[error("the system refuses to open more sockets: {0}")]
    Resources(#[source] std::io::Error),
}

impl ProbeError {
    /// True when the error is the caller's input (host, settings), not the network
    /// or the system.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ProbeError::BadHost { .. } | ProbeError::Resolve { .. } | ProbeError::InvalidSpec(_)
        )
    }
}

/// The caller's progress callback: `(done, total)`.
type ProgressFn<'a> = &'a mut (dyn FnMut(usize, usize) + Send);

/// Progress reporting shared by the engines: counts finished (address, port) pairs
/// and calls the caller's callback.
pub(crate) struct Progress<'a> {
    inner: Mutex<(usize, ProgressFn<'a>)>,
    total: usize,
}

impl<'a> Progress<'a> {
    fn new(total: usize, f: ProgressFn<'a>) -> Progress<'a> {
        Progress {
            inner: Mutex::new((0, f)),
            total,
        }
    }

    /// Counts `n` more decided pairs and tells the caller (also when `n` is 0: a
    /// sign of life during long silences).
    pub(crate) fn add(&self, n: usize) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += n;
        let done = g.0.min(self.total);
        (g.1)(done, self.total);
    }
}

/// What an engine hands back.
pub(crate) struct EngineOutput {
    pub results: Vec<PortResult>,
    pub unreachable: Vec<AddressError>,
    pub stats: ScanStats,
}

/// Probes every port of `spec` on every address of its host and returns what it
/// found. `progress(done, total)` is called as (address, port) pairs get their
/// verdict; `total` is the number of addresses times the number of ports.
///
/// Must run inside a tokio runtime (either flavour). It may raise the process's
/// soft `RLIMIT_NOFILE` to the hard limit (see [`fd_budget`]).
pub async fn probe<F>(spec: &ProbeSpec, mut progress: F) -> Result<ProbeReport, ProbeError>
where
    F: FnMut(usize, usize) + Send,
{
    spec.validate()?;
    let started = Instant::now();
    let addresses = resolve(&spec.host).await?;
    run(spec, addresses, started, &mut progress).await
}

/// Like [`probe`], for addresses the caller already has: `spec.host` is only a label
/// for the report and is not resolved. Duplicates in `addresses` are probed once.
pub async fn probe_addresses<F>(
    spec: &ProbeSpec,
    addresses: &[IpAddr],
    mut progress: F,
) -> Result<ProbeReport, ProbeError>
where
    F: FnMut(usize, usize) + Send,
{
    spec.validate()?;
    let mut unique: Vec<IpAddr> = Vec::with_capacity(addresses.len());
    for a in addresses {
        if !unique.contains(a) {
            unique.push(*a);
        }
    }
    if unique.is_empty() {
        return Err(ProbeError::InvalidSpec("no address to probe".into()));
    }
    if let Some(bad) = unique.iter().find(|a| a.is_unspecified()) {
        return Err(ProbeError::BadHost {
            host: bad.to_string(),
            reason: "the unspecified address cannot be probed: give the address of a host".into(),
        });
    }
    run(spec, unique, Instant::now(), &mut progress).await
}

async fn run(
    spec: &ProbeSpec,
    addresses: Vec<IpAddr>,
    started: Instant,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<ProbeReport, ProbeError> {
    let ports: Vec<u16> = spec.ports.iter().collect();
    let total = addresses.len() * ports.len();
    let progress = Progress::new(total, progress);
    let out = match spec.protocol {
        Protocol::Tcp => tcp::scan(&addresses, &ports, spec, &progress).await?,
        Protocol::Udp => udp::scan(&addresses, &ports, spec, &progress).await?,
    };
    if out.unreachable.len() == addresses.len() {
        return Err(ProbeError::Unreachable {
            host: spec.host.clone(),
            details: out.unreachable,
        });
    }
    let summary = Summary::of(&out.results);
    Ok(ProbeReport {
        host: spec.host.clone(),
        addresses,
        protocol: spec.protocol,
        ports: spec.ports.clone(),
        results: out.results,
        unreachable: out.unreachable,
        summary,
        elapsed: started.elapsed(),
        stats: out.stats,
    })
}

/// Durations as milliseconds (fractional) in JSON.
pub(crate) fn ser_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_ms(*d))
}

pub(crate) fn ser_opt_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&round_ms(*d)),
        None => s.serialize_none(),
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Makes the first line of what a service sent printable: up to the first newline
/// (CR stripped), at most 200 characters, control characters and invalid UTF-8
/// escaped as `\xNN` so that a hostile banner cannot drive the terminal. `None` when
/// nothing printable is left.
pub(crate) fn printable_first_line(bytes: &[u8]) -> Option<String> {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut out = String::new();
    let mut chars = 0;
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            if chars >= 200 {
                break;
            }
            if c.is_control() {
                if (c as u32) < 0x100 {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                } else {
                    out.push_str(&c.escape_unicode().to_string());
                }
            } else {
                out.push(c);
            }
            chars += 1;
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
            chars += 1;
        }
    }
    let t = out.trim();
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_reasons_serialize_like_nmap() {
        assert_eq!(
            serde_json::to_string(&PortState::OpenFiltered).unwrap(),
            "\"open|filtered\""
        );
        assert_eq!(
            serde_json::to_string(&PortState::Closed).unwrap(),
            "\"closed\""
        );
        assert_eq!(
            serde_json::to_string(&Reason::AdminProhibited).unwrap(),
            "\"admin-prohibited\""
        );
        assert_eq!(serde_json::to_string(&Protocol::Udp).unwrap(), "\"udp\"");
        let r = PortResult {
            address: "2001:db8::10".parse().unwrap(),
            port: 22,
            protocol: Protocol::Tcp,
            state: PortState::Open,
            reason: Reason::SynAck,
            rtt: Some(Duration::from_micros(1234)),
            banner: Some("SSH-2.0-OpenSSH_9.2".into()),
            service: Some("ssh"),
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["rtt_ms"], 1.234);
        assert_eq!(v["address"], "2001:db8::10");
        assert_eq!(v["state"], "open");
        assert_eq!(v["banner"], "SSH-2.0-OpenSSH_9.2");
    }

    #[test]
    fn banners_are_made_printable() {
        assert_eq!(
            printable_first_line(b"SSH-2.0-OpenSSH_9.2\r\nmore").as_deref(),
            Some("SSH-2.0-OpenSSH_9.2")
        );
        assert_eq!(
            printable_first_line(b"220 hi\x1b[31m\xff").as_deref(),
            Some("220 hi\\x1b[31m\\xff")
        );
        assert_eq!(
            printable_first_line(b"caf\xc3\xa9").as_deref(),
            Some("café")
        );
        assert_eq!(printable_first_line(b"\r\n"), None);
        assert_eq!(printable_first_line(b""), None);
        assert_eq!(printable_first_line(&[b'a'; 500]).unwrap().len(), 200);
    }

    #[test]
    fn spec_defaults_and_validation() {
        let mut s = ProbeSpec::new("203.0.113.10", PortList::single(22).unwrap(), Protocol::Tcp);
        assert_eq!(s.tries(), 2);
        s.protocol = Protocol::Udp;
        assert_eq!(s.tries(), 3);
        s.retries = Some(0);
        assert_eq!(s.tries(), 1);
        assert!(s.validate().is_ok());
        s.timeouts = Timeouts::default().with_max(Duration::ZERO);
        assert!(matches!(s.validate(), Err(ProbeError::InvalidSpec(_))));
        s.timeouts = Timeouts {
            initial: Duration::from_secs(3),
            ..Timeouts::default()
        };
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("min <= initial <= max"));
        s.timeouts = Timeouts::default();
        s.max_concurrency = Some(0);
        assert!(s.validate().is_err());
    }

    #[test]
    fn summary_counts() {
        let mk = |state| PortResult {
            address: "198.51.100.10".parse().unwrap(),
            port: 1,
            protocol: Protocol::Udp,
            state,
            reason: Reason::NoResponse,
            rtt: None,
            banner: None,
            service: None,
        };
        let rs = [
            mk(PortState::Open),
            mk(PortState::Closed),
            mk(PortState::Closed),
            mk(PortState::OpenFiltered),
        ];
        let s = Summary::of(&rs);
        assert_eq!(
            (s.open, s.closed, s.filtered, s.open_filtered, s.total()),
            (1, 2, 0, 1, 4)
        );
    }
}
