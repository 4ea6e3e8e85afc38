//! TCP connect probes and their scheduler.
//!
//! The scheduler runs as one *shard* per runtime worker, so that the work (which is
//! mostly the kernel's: a socket, a SYN, an answer) is spread over the CPUs. Shards
//! share one queue of jobs, one window and one set of round-trip estimates behind a
//! mutex that is never held across a system call, and send their verdicts in batches
//! to the caller's task, which reports progress and assembles the report.
//!
//! A probe first tries the *fast path*: on a fast link (the same host, a LAN, two
//! namespaces) the kernel has often processed the answer before `connect()` returns,
//! so the socket's error (`SO_ERROR`) or peer address already tells the verdict; the
//! socket is then never registered with the reactor, and a refused socket is reused
//! for the next port (a failed `connect()` leaves it unbound and closed, and Linux
//! lets it connect again), which saves a socket and a close per closed port. Only
//! probes still waiting become futures polled by the shard.

use crate::icmp;
use crate::timing::{fd_budget, RttEstimator, SharedTimeout, Window};
use crate::{
    printable_first_line, service_name, AddressError, EngineOutput, PortResult, PortState,
    ProbeError, ProbeSpec, Progress, Protocol, Reason, ScanStats, Timeouts,
    DEFAULT_MAX_CONCURRENCY, INITIAL_WINDOW,
};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use nix::libc;
use socket2::{Domain, SockRef, Socket, Type};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

/// How one connect attempt ended.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// The target (or something on the way) answered.
    Answered {
        state: PortState,
        reason: Reason,
        rtt: Duration,
        banner: Option<String>,
    },
    /// Nothing came back within the timeout.
    Silent,
    /// This machine ran out of something (descriptors, buffers, local ports): the
    /// attempt did not happen and should be made again later.
    Resource(io::Error),
    /// This address cannot be probed from here (no route, address family not
    /// configured, a local firewall forbids it).
    Local(io::Error),
}

fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EADDRNOTAVAIL
                | libc::EAGAIN
        )
    )
}

fn local(e: io::Error) -> Attempt {
    if is_resource_error(&e) {
        Attempt::Resource(e)
    } else {
        Attempt::Local(e)
    }
}

/// While the timeout is still the initial guess, waiting probes look again this
/// often, so that the first measured round trips shorten their wait.
const RECHECK: Duration = Duration::from_millis(50);
/// Jobs a shard takes from the queue at once.
const TAKE: usize = 64;
/// Sockets kept for reuse per shard and family.
const POOL: usize = 16;
/// A shard hands its verdicts over when it has this many, or when this long has
/// passed, or when it has nothing else to do.
const FLUSH_EVERY: usize = 512;
const FLUSH_AFTER: Duration = Duration::from_millis(50);

fn new_socket(v6: bool) -> io::Result<Socket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let sock = Socket::new(
        domain,
        Type::STREAM.nonblocking(),
        Some(socket2::Protocol::TCP),
    )?;
    // ICMP errors with their type, code and sender.
    icmp::enable_recverr(&sock, v6)?;
    Ok(sock)
}

/// What a failed connect says about the port. `immediate`: `connect()` itself
/// failed, before any packet could come back, so anything but a refusal is local.
fn connect_failed<F: std::os::fd::AsRawFd>(
    e: io::Error,
    fd: &F,
    target: IpAddr,
    rtt: Duration,
    immediate: bool,
) -> Attempt {
    connect_failed_icmp(e, fd, target, rtt, immediate).0
}

/// [`connect_failed`], and whether an ICMP error was involved.
fn connect_failed_icmp<F: std::os::fd::AsRawFd>(
    e: io::Error,
    fd: &F,
    target: IpAddr,
    rtt: Duration,
    immediate: bool,
) -> (Attempt, bool) {
    let errno = e.raw_os_error();
    if let Ok(Some(icmp)) = icmp::read_error_queue(fd) {
        let a = match icmp::classify(&icmp, target) {
            Some((state, reason)) => Attempt::Answered {
                state,
                reason,
                rtt,
                banner: None,
            },
            None => Attempt::Silent,
        };
        return (a, true);
    }
    (connect_failed_errno(e, errno, rtt, immediate), false)
}

fn connect_failed_errno(
    e: io::Error,
    errno: Option<i32>,
    rtt: Duration,
    immediate: bool,
) -> Attempt {
    let answered = |state, reason| Attempt::Answered {
        state,
        reason,
        rtt,
        banner: None,
    };
    match errno {
        Some(libc::ECONNREFUSED) => answered(PortState::Closed, Reason::Reset),
        Some(libc::ETIMEDOUT) => Attempt::Silent,
        _ if immediate => local(e),
        Some(libc::EHOSTUNREACH) => answered(PortState::Filtered, Reason::HostUnreachable),
        Some(libc::ENETUNREACH) => answered(PortState::Filtered, Reason::NetUnreachable),
        Some(libc::EACCES) => answered(PortState::Closed, Reason::AdminProhibited),
        _ if is_resource_error(&e) => Attempt::Resource(e),
        _ => answered(PortState::Filtered, Reason::Unreachable),
    }
}

type Pending = Pin<Box<dyn Future<Output = (Job, Attempt)> + Send>>;

enum Started {
    /// Decided at once; the socket may be reused.
    Done(Attempt, Option<Socket>),
    /// Waiting for an answer (or for a banner).
    Waiting(Pending),
}

/// Starts one probe: connect, and see whether the answer is already in.
fn start(
    job: Job,
    target: SocketAddr,
    recycled: Option<Socket>,
    timeout: Arc<SharedTimeout>,
    banner_wait: Duration,
) -> Started {
    let reused = recycled.is_some();
    let sock = match recycled {
        Some(s) => s,
        None => match new_socket(target.is_ipv6()) {
            Ok(s) => s,
            Err(e) => return Started::Done(local(e), None),
        },
    };
    let sent = Instant::now();
    let addr = target.into();
    let mut r = sock.connect(&addr);
    if reused && matches!(&r, Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED)) {
        // The first call on a reused socket only resets it from its failed connect.
        r = sock.connect(&addr);
    }
    match r {
        Ok(()) => {
            return Started::Waiting(Box::pin(opened(job, sock, sent.elapsed(), banner_wait)))
        }
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        // A reused socket that will not connect again: start over with a new one.
        Err(e) if reused && e.raw_os_error() != Some(libc::ECONNREFUSED) => {
            return start(job, target, None, timeout, banner_wait);
        }
        Err(e) => {
            let refused = e.raw_os_error() == Some(libc::ECONNREFUSED);
            let (a, icmp) = connect_failed_icmp(e, &sock, target.ip(), sent.elapsed(), true);
            return Started::Done(a, recyclable(refused && !icmp, sock));
        }
    }
    // The fast path: the answer may be in already.
    match sock.take_error() {
        Ok(Some(e)) => {
            let refused = e.raw_os_error() == Some(libc::ECONNREFUSED);
            let (a, icmp) = connect_failed_icmp(e, &sock, target.ip(), sent.elapsed(), false);
            return Started::Done(a, recyclable(refused && !icmp, sock));
        }
        Ok(None) => {}
        Err(e) => return Started::Done(local(e), None),
    }
    if sock.peer_addr().is_ok() {
        return Started::Waiting(Box::pin(opened(job, sock, sent.elapsed(), banner_wait)));
    }
    Started::Waiting(Box::pin(async move {
        (job, wait(sock, target, sent, timeout, banner_wait).await)
    }))
}

/// A socket whose connect was refused by a RST is closed and unbound, and can connect
/// again. One refused by an ICMP error may not be: an ICMP error that arrives while
/// `connect()` holds the socket is only a "soft" error (`SO_ERROR` reports it, the
/// kernel keeps trying), so such sockets are closed, not reused. (Should one slip
/// through, its next `connect()` fails and [`start`] takes a new socket.)
fn recyclable(refused_by_reset: bool, sock: Socket) -> Option<Socket> {
    refused_by_reset.then_some(sock)
}

/// A connection that was accepted `rtt` after its SYN: read the banner, then close
/// with a RST.
async fn opened(job: Job, sock: Socket, rtt: Duration, banner_wait: Duration) -> (Job, Attempt) {
    let std_stream: std::net::TcpStream = sock.into();
    let banner = match TcpStream::from_std(std_stream) {
        Ok(mut stream) => {
            let b = if banner_wait.is_zero() {
                None
            } else {
                read_banner(&mut stream, banner_wait).await
            };
            close_with_reset(&stream);
            b
        }
        Err(_) => None,
    };
    (
        job,
        Attempt::Answered {
            state: PortState::Open,
            reason: Reason::SynAck,
            rtt,
            banner,
        },
    )
}

/// Closing with `SO_LINGER 0` sends a RST: no TIME_WAIT here, no half-open
/// connection left on the server.
fn close_with_reset(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Waits for the answer to a connect in progress.
async fn wait(
    sock: Socket,
    target: SocketAddr,
    sent: Instant,
    timeout: Arc<SharedTimeout>,
    banner_wait: Duration,
) -> Attempt {
    let std_stream: std::net::TcpStream = sock.into();
    let mut stream = match TcpStream::from_std(std_stream) {
        Ok(s) => s,
        Err(e) => return local(e),
    };
    let provisional = !timeout.measured();
    loop {
        let now = Instant::now();
        let deadline = sent + timeout.get();
        if now >= deadline {
            return Attempt::Silent;
        }
        let wake = if provisional {
            deadline.min(now + RECHECK)
        } else {
            deadline
        };
        tokio::select! {
            biased;
            r = stream.writable() => {
                if let Err(e) = r {
                    return local(e);
                }
                break;
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    let rtt = sent.elapsed();
    match stream.take_error() {
        Ok(None) => {}
        Ok(Some(e)) | Err(e) => return connect_failed(e, &stream, target.ip(), rtt, false),
    }
    let banner = if banner_wait.is_zero() {
        None
    } else {
        read_banner(&mut stream, banner_wait).await
    };
    close_with_reset(&stream);
    Attempt::Answered {
        state: PortState::Open,
        reason: Reason::SynAck,
        rtt,
        banner,
    }
}

/// Reads until the first newline, 512 bytes, the end of the stream or `wait`,
/// whichever comes first.
async fn read_banner(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    let _ = tokio::time::timeout(wait, async {
        let mut chunk = [0u8; 512];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.contains(&b'\n') || buf.len() >= 512 {
                        break;
                    }
                }
            }
        }
    })
    .await;
    printable_first_line(&buf)
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Job {
    addr: usize,
    port: usize,
    /// 0 for the first try.
    attempt: u8,
}

/// Per-address round-trip estimates, published to the probes in flight.
struct Clocks {
    bounds: Timeouts,
    per_addr: Vec<RttEstimator>,
    global: RttEstimator,
    shared: Vec<Arc<SharedTimeout>>,
}

impl Clocks {
    fn new(n: usize, bounds: Timeouts) -> Clocks {
        Clocks {
            bounds,
            per_addr: vec![RttEstimator::default(); n],
            global: RttEstimator::default(),
            shared: (0..n)
                .map(|_| Arc::new(SharedTimeout::new(bounds.initial)))
                .collect(),
        }
    }

    fn sample(&mut self, addr: usize, rtt: Duration) {
        self.per_addr[addr].sample(rtt);
        self.global.sample(rtt);
        for (i, est) in self.per_addr.iter().enumerate() {
            // An address without answers of its own borrows the others' estimate.
            let src = if est.samples() > 0 { est } else { &self.global };
            self.shared[i].set(src.timeout(&self.bounds), src.samples() > 0);
        }
    }

    fn timeout(&self, addr: usize) -> Duration {
        self.shared[addr].get()
    }
}

/// A verdict on its way from a shard to the caller's task.
enum Verdict {
    Port {
        addr: usize,
        port: usize,
        state: PortState,
        reason: Reason,
        rtt: Option<Duration>,
        banner: Option<String>,
    },
    AddressFailed {
        addr: usize,
        error: String,
    },
}

/// What the shards share.
struct Shared {
    addrs: Vec<IpAddr>,
    ports: Vec<u16>,
    tries: u8,
    banner_wait: Duration,
    sched: Mutex<Sched>,
    /// Signalled when jobs or window room may have appeared, or everything ended.
    wake: Notify,
}

struct Sched {
    total: usize,
    next_fresh: usize,
    retry: VecDeque<Job>,
    in_flight: usize,
    window: Window,
    clocks: Clocks,
    failed: Vec<bool>,
    stats: ScanStats,
    shortage_streak: u32,
    fatal: Option<io::Error>,
}

impl Sched {
    fn finished(&self) -> bool {
        self.fatal.is_some()
            || (self.next_fresh >= self.total && self.retry.is_empty() && self.in_flight == 0)
    }

    /// Takes up to `max` jobs the window has room for.
    fn take(&mut self, max: usize, n: usize, out: &mut Vec<Job>) {
        while out.len() < max && self.in_flight < self.window.allowed() && self.fatal.is_none() {
            let job = if let Some(j) = self.retry.pop_front() {
                j
            } else if self.next_fresh < self.total {
                self.next_fresh += 1;
                Job {
                    addr: (self.next_fresh - 1) / n,
                    port: (self.next_fresh - 1) % n,
                    attempt: 0,
                }
            } else {
                break;
            };
            if self.failed[job.addr] {
                continue;
            }
            self.in_flight += 1;
            self.stats.probes += 1;
            out.push(job);
        }
        self.window.note_in_flight(self.in_flight);
    }

    /// Books the outcome of one attempt. Returns true when the caller should pause
    /// (the system is out of resources and nothing is in flight to free them).
    fn book(&mut self, job: Job, outcome: Attempt, tries: u8, out: &mut Vec<Verdict>) -> bool {
        self.in_flight -= 1;
        if self.failed[job.addr] {
            return false;
        }
        if !matches!(outcome, Attempt::Resource(_)) {
            self.shortage_streak = 0;
        }
        match outcome {
            Attempt::Answered {
                state,
                reason,
                rtt,
                banner,
            } => {
                self.clocks.sample(job.addr, rtt);
                if job.attempt > 0 {
                    let t = self.clocks.timeout(job.addr);
                    self.window.on_loss(t);
                } else {
                    self.window.on_success();
                }
                out.push(Verdict::Port {
                    addr: job.addr,
                    port: job.port,
                    state,
                    reason,
                    rtt: Some(rtt),
                    banner,
                });
            }
            Attempt::Silent if job.attempt + 1 < tries => {
                self.stats.retransmissions += 1;
                self.retry.push_back(Job {
                    attempt: job.attempt + 1,
                    ..job
                });
            }
            Attempt::Silent => {
                self.window.on_success();
                out.push(Verdict::Port {
                    addr: job.addr,
                    port: job.port,
                    state: PortState::Filtered,
                    reason: Reason::NoResponse,
                    rtt: None,
                    banner: None,
                });
            }
            Attempt::Resource(e) => {
                self.stats.probes -= 1;
                self.window.on_resource_shortage(self.in_flight + 1);
                self.retry.push_front(job);
                if self.in_flight == 0 {
                    self.shortage_streak += 1;
                    if self.shortage_streak > 200 {
                        self.fatal = Some(e);
                    }
                    return true;
                }
            }
            Attempt::Local(e) => {
                self.failed[job.addr] = true;
                out.push(Verdict::AddressFailed {
                    addr: job.addr,
                    error: e.to_string(),
                });
            }
        }
        false
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One shard: takes jobs, starts probes, books their outcomes.
async fn shard(shared: Arc<Shared>, tx: mpsc::UnboundedSender<Vec<Verdict>>) {
    let n = shared.ports.len();
    let mut waiting: FuturesUnordered<Pending> = FuturesUnordered::new();
    let mut pools: [Vec<Socket>; 2] = [Vec::new(), Vec::new()];
    let mut jobs = Vec::with_capacity(TAKE);
    let mut outcomes: Vec<(Job, Attempt)> = Vec::new();
    let mut verdicts: Vec<Verdict> = Vec::new();
    let mut last_flush = Instant::now();
    loop {
        let timeouts: Vec<Arc<SharedTimeout>>;
        {
            let mut s = shared.lock();
            s.take(TAKE, n, &mut jobs);
            timeouts = if jobs.is_empty() {
                Vec::new()
            } else {
                s.clocks.shared.clone()
            };
        }
        let took = !jobs.is_empty();
        for job in jobs.drain(..) {
            let target = SocketAddr::new(shared.addrs[job.addr], shared.ports[job.port]);
            let pool = &mut pools[usize::from(target.is_ipv6())];
            match start(
                job,
                target,
                pool.pop(),
                timeouts[job.addr].clone(),
                shared.banner_wait,
            ) {
                Started::Done(a, sock) => {
                    if let (Some(sock), true) = (sock, pool.len() < POOL) {
                        pool.push(sock);
                    }
                    outcomes.push((job, a));
                }
                Started::Waiting(f) => waiting.push(f),
            }
        }
        while let Some(Some(o)) = waiting.next().now_or_never() {
            outcomes.push(o);
        }
        if !outcomes.is_empty() {
            let pause = {
                let mut s = shared.lock();
                let mut pause = false;
                for (job, a) in outcomes.drain(..) {
                    pause |= s.book(job, a, shared.tries, &mut verdicts);
                }
                pause
            };
            shared.wake.notify_waiters();
            if verdicts.len() >= FLUSH_EVERY || last_flush.elapsed() >= FLUSH_AFTER {
                last_flush = Instant::now();
                if tx.send(std::mem::take(&mut verdicts)).is_err() {
                    return;
                }
            }
            if pause {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            continue;
        }
        if took {
            continue;
        }
        // Nothing to do right now: hand over the verdicts, then block.
        if !verdicts.is_empty() {
            last_flush = Instant::now();
            if tx.send(std::mem::take(&mut verdicts)).is_err() {
                return;
            }
        }
        if !waiting.is_empty() {
            let notified = shared.wake.notified();
            tokio::select! {
                o = waiting.next() => outcomes.extend(o),
                // Another shard freed window room or queued a retry.
                _ = notified => {}
            }
            continue;
        }
        let notified = shared.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let s = shared.lock();
            if s.finished() {
                break;
            }
            if s.in_flight < s.window.allowed() && (!s.retry.is_empty() || s.next_fresh < s.total) {
                continue;
            }
        }
        notified.await;
    }
    shared.wake.notify_waiters();
    if !verdicts.is_empty() {
        let _ = tx.send(verdicts);
    }
}

/// Probes `ports` on every address over TCP.
pub(crate) async fn scan(
    addrs: &[IpAddr],
    ports: &[u16],
    spec: &ProbeSpec,
    progress: &Progress<'_>,
) -> Result<EngineOutput, ProbeError> {
    let n = ports.len();
    let total = addrs.len() * n;
    let limit = spec
        .max_concurrency
        .unwrap_or(DEFAULT_MAX_CONCURRENCY)
        .min(fd_budget());
    let shared = Arc::new(Shared {
        addrs: addrs.to_vec(),
        ports: ports.to_vec(),
        tries: spec.tries(),
        banner_wait: spec.banner_wait,
        sched: Mutex::new(Sched {
            total,
            next_fresh: 0,
            retry: VecDeque::new(),
            in_flight: 0,
            window: Window::new(INITIAL_WINDOW, limit),
            clocks: Clocks::new(addrs.len(), spec.timeouts),
            failed: vec![false; addrs.len()],
            stats: ScanStats::default(),
            shortage_streak: 0,
            fatal: None,
        }),
        wake: Notify::new(),
    });
    let shards = tokio::runtime::Handle::current()
        .metrics()
        .num_workers()
        .clamp(1, 8);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handles: Vec<_> = (0..shards)
        .map(|_| tokio::spawn(shard(shared.clone(), tx.clone())))
        .collect();
    drop(tx);

    let mut results: Vec<Option<PortResult>> = vec![None; total];
    let mut failed: Vec<Option<String>> = vec![None; addrs.len()];
    while let Some(batch) = rx.recv().await {
        let mut decided = 0;
        for v in batch {
            match v {
                Verdict::Port {
                    addr,
                    port,
                    state,
                    reason,
                    rtt,
                    banner,
                } => {
                    if failed[addr].is_some() {
                        continue;
                    }
                    results[addr * n + port] = Some(PortResult {
                        address: addrs[addr],
                        port: ports[port],
                        protocol: Protocol::Tcp,
                        state,
                        reason,
                        rtt,
                        banner,
                        service: service_name(ports[port], Protocol::Tcp),
                    });
                    decided += 1;
                }
                Verdict::AddressFailed { addr, error } => {
                    // The ports of this address not decided yet will never be.
                    decided += results[addr * n..(addr + 1) * n]
                        .iter()
                        .filter(|r| r.is_none())
                        .count();
                    failed[addr] = Some(error);
                }
            }
        }
        if decided > 0 {
            progress.add(decided);
        }
    }
    for h in handles {
        if let Err(e) = h.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("probe shard cancelled: {e}");
        }
    }

    let mut s = shared.lock();
    if let Some(e) = s.fatal.take() {
        return Err(ProbeError::Resources(e));
    }
    let mut stats = std::mem::take(&mut s.stats);
    stats.losses = s.window.losses;
    stats.max_in_flight = s.window.max_seen;
    stats.concurrency_limit = s.window.limit();
    stats.srtt = s.clocks.global.srtt();
    stats.timeout = (0..addrs.len())
        .map(|a| s.clocks.timeout(a))
        .max()
        .unwrap_or(spec.timeouts.initial);
    drop(s);
    let mut unreachable = Vec::new();
    let mut out = Vec::with_capacity(total);
    for (a, f) in failed.into_iter().enumerate() {
        match f {
            Some(error) => unreachable.push(AddressError {
                address: addrs[a],
                error,
            }),
            None => out.extend(
                results[a * n..(a + 1) * n]
                    .iter_mut()
                    .map(|r| r.take().expect("every port decided")),
            ),
        }
    }
    Ok(EngineOutput {
        results: out,
        unreachable,
        stats,
    })
}
