//! TCP connect probes and their scheduler.
//!
//! The scan runs on threads of its own, one per CPU (at most [`MAX_THREADS`], fewer
//! for small scans), each with its own sockets and its own epoll instance, driven
//! with plain system calls: no task, future or allocation per port. Threads take
//! ports from a shared counter in chunks and share only the round-trip estimates
//! (behind a mutex taken once per batch of answers) and the per-address "cannot be
//! probed" flags. They report progress to the caller's task over a channel and hand
//! their verdicts over when they are done.
//!
//! **The fast path.** Between namespaces, on the same host or on a LAN, the kernel
//! usually processes the answer to a SYN inside the `connect()` call that sent it.
//! A second `connect()` on the socket then tells the verdict without any waiting:
//! `0` (connected: open), an error (`ECONNREFUSED` for a RST) or `EALREADY` (still
//! waiting). A failed `connect()` also resets the socket, and Linux lets it connect
//! again, so a socket refused by a RST is used for the next port: a closed port
//! costs two system calls and no socket, no epoll registration, no close. A socket
//! kept for reuse is bound to an explicit local address and port, which spares the
//! kernel the search for a free ephemeral port and the bind-table updates that
//! every `connect()` of an unbound socket does.
//!
//! Only probes still waiting are registered with epoll (edge-triggered, once per
//! socket: the registration stays while the socket is reused); on an event, one more
//! `connect()` tells the verdict. On a real network, where answers take longer than
//! a system call, the second `connect()` can only say "still waiting": after a run
//! of probes that all had to wait, a thread makes it only for one probe in
//! [`SLOW_AFTER`], to notice when answers come at once again.
//!
//! **ICMP errors.** With `IP_RECVERR` the kernel queues the ICMP type, code and
//! sender of an error, which `icmp` classifies. An ICMP error that arrives while a
//! `connect()` holds the socket is only a "soft" error: the socket keeps waiting
//! (and retransmits a second later) and only `SO_ERROR` reports it; so a probe still
//! waiting after the second `connect()`, or woken by `EPOLLERR` (a queued ICMP
//! error), looks at `SO_ERROR`.
//! A refusal reported by the second `connect()` itself is taken as a RST without
//! reading the error queue: an ICMP port unreachable arriving in the microseconds
//! between the two calls would be reported with reason `reset` (the state, closed,
//! is the same). Error-queue entries are matched to the probe's destination when
//! they are read, so an entry left on a reused socket never decides another port.

use crate::icmp::{self, IcmpError};
use crate::timing::{banner_wait, fd_budget, RttEstimator, SharedTimeout, Window};
use crate::{
    printable_first_line, service_name, AddressError, EngineOutput, PortResult, PortState,
    ProbeError, ProbeSpec, Progress, Protocol, Reason, ScanStats, Timeouts,
    DEFAULT_MAX_CONCURRENCY, INITIAL_WINDOW,
};
use rustix::buffer::spare_capacity;
use rustix::event::{epoll, Timespec};
use rustix::io::Errno;
use rustix::net::{self, ipproto, AddressFamily, RecvFlags, SocketFlags, SocketType};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The most scan threads.
const MAX_THREADS: usize = 8;
/// A scan gets one thread per this many probes (and per CPU).
const PROBES_PER_THREAD: usize = 1024;
/// Fresh jobs a thread takes from the shared counter at once.
const CHUNK: usize = 32;
/// Probes a thread starts between two looks at its epoll instance.
const LAUNCH_BATCH: usize = 64;
/// Sockets kept for reuse per thread and address.
const POOL: usize = 64;
/// The longest a thread sleeps: progress is reported, and a cancelled scan noticed,
/// at least this often.
const TICK: Duration = Duration::from_millis(20);
/// After this many probes in a row that had to wait for their answer, a thread stops
/// looking for answers inside `connect()` but for one probe in this many (a power
/// of two).
const SLOW_AFTER: u32 = 32;
const _: () = assert!(SLOW_AFTER.is_power_of_two());
/// A banner is read up to its first newline or this many bytes.
const BANNER_MAX: usize = 512;
/// Sockets per thread and address that learn their local address, to be bound to it
/// when kept for reuse (a bound socket stays bound: the budget only runs out when
/// kept sockets are used up, by open or filtered ports).
const BIND_BUDGET: u32 = 4 * POOL as u32;
/// Events read per `epoll_wait`.
const EVENTS: usize = 256;
/// Consecutive resource shortages with nothing in flight before giving up.
const SHORTAGE_LIMIT: u32 = 200;

/// How one connect attempt ended.
#[derive(Debug)]
enum Attempt {
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

fn answered(state: PortState, reason: Reason, rtt: Duration) -> Attempt {
    Attempt::Answered {
        state,
        reason,
        rtt,
        banner: None,
    }
}

fn is_resource_error(e: Errno) -> bool {
    matches!(
        e,
        Errno::MFILE
            | Errno::NFILE
            | Errno::NOBUFS
            | Errno::NOMEM
            | Errno::ADDRNOTAVAIL
            | Errno::AGAIN
    )
}

fn local(e: Errno) -> Attempt {
    if is_resource_error(e) {
        Attempt::Resource(e.into())
    } else {
        Attempt::Local(e.into())
    }
}

/// What a connect error says about the port. `immediate`: `connect()` itself failed,
/// before any packet could come back, so anything but a refusal is local.
fn from_errno(e: Errno, rtt: Duration, immediate: bool) -> Attempt {
    use PortState::{Closed, Filtered};
    match e {
        Errno::CONNREFUSED => answered(Closed, Reason::Reset, rtt),
        Errno::TIMEDOUT => Attempt::Silent,
        _ if immediate => local(e),
        Errno::HOSTUNREACH => answered(Filtered, Reason::HostUnreachable, rtt),
        Errno::NETUNREACH => answered(Filtered, Reason::NetUnreachable, rtt),
        Errno::ACCESS => answered(Closed, Reason::AdminProhibited, rtt),
        _ if is_resource_error(e) => Attempt::Resource(e.into()),
        _ => answered(Filtered, Reason::Unreachable, rtt),
    }
}

/// The first ICMP error queued on `fd` about a segment sent to `target`. Entries
/// about other destinations (left by an earlier probe on a reused socket) are
/// dropped.
fn icmp_about(fd: &OwnedFd, target: SocketAddr) -> Option<IcmpError> {
    for _ in 0..16 {
        match icmp::read_error_queue(fd) {
            Ok(Some(e)) => {
                let ours = match e.original {
                    Some(o) => o.ip() == target.ip() && o.port() == target.port(),
                    None => true,
                };
                if ours {
                    return Some(e);
                }
            }
            Ok(None) | Err(_) => return None,
        }
    }
    None
}

/// What a failed connect says, from the ICMP error behind it when there is one.
/// Also tells whether the socket may be reused: only after a plain RST (a socket
/// refused by an ICMP error may still be waiting for its retransmission).
fn connect_failed(
    fd: &OwnedFd,
    e: Errno,
    target: SocketAddr,
    rtt: Duration,
    immediate: bool,
) -> (Attempt, bool) {
    if let Some(icmp) = icmp_about(fd, target) {
        let a = match icmp::classify(&icmp, target.ip()) {
            Some((state, reason)) => answered(state, reason, rtt),
            None => Attempt::Silent,
        };
        return (a, false);
    }
    (from_errno(e, rtt, immediate), e == Errno::CONNREFUSED)
}

/// One probe: the `attempt`-th try of (address, port) number `idx` (address-major).
#[derive(Debug, Clone, Copy)]
struct Job {
    idx: u32,
    /// 0 for the first try.
    attempt: u8,
}

/// A verdict, compact, as a thread hands it over.
#[derive(Debug, Clone, Copy)]
struct Decided {
    idx: u32,
    state: PortState,
    reason: Reason,
    rtt: Option<Duration>,
}

/// Round-trip estimates per address; published to the threads through
/// [`SharedTimeout`]s.
struct Clocks {
    bounds: Timeouts,
    per_addr: Vec<RttEstimator>,
    global: RttEstimator,
}

impl Clocks {
    fn sample(&mut self, addr: usize, rtt: Duration) {
        self.per_addr[addr].sample(rtt);
        self.global.sample(rtt);
    }

    fn publish(&self, out: &[SharedTimeout]) {
        for (est, t) in self.per_addr.iter().zip(out) {
            // An address without answers of its own borrows the others' estimate.
            let src = if est.samples() > 0 { est } else { &self.global };
            t.set(src.timeout(&self.bounds));
        }
    }
}

/// What the threads share.
struct Shared {
    addrs: Vec<IpAddr>,
    ports: Vec<u16>,
    total: usize,
    tries: u8,
    banner_wait: Duration,
    /// The next fresh job.
    next: AtomicUsize,
    clocks: Mutex<Clocks>,
    timeouts: Vec<SharedTimeout>,
    /// Addresses that cannot be probed from here: their remaining jobs are skipped.
    failed: Vec<AtomicBool>,
    /// Set when the scan is abandoned (the caller went away, or a thread gave up).
    stop: AtomicBool,
}

impl Shared {
    fn clocks(&self) -> MutexGuard<'_, Clocks> {
        self.clocks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn timeout(&self, addr: usize) -> Duration {
        self.timeouts[addr].get()
    }
}

/// From a thread to the caller's task.
enum Msg {
    /// This many more (address, port) pairs are decided.
    Progress(usize),
    Done(Box<Output>),
}

/// What a thread found.
#[derive(Default)]
struct Output {
    decided: Vec<Decided>,
    banners: Vec<(u32, String)>,
    failed: Vec<(usize, String)>,
    stats: ScanStats,
    fatal: Option<io::Error>,
}

/// A socket of a thread.
struct Sock {
    fd: OwnedFd,
    /// Registered with the thread's epoll instance (edge-triggered, data = fd).
    registered: bool,
    /// The local address and port the kernel chose for its first connect, to bind
    /// it to (once) when it is kept for reuse: then it keeps them.
    local: Option<SocketAddr>,
    /// Has connected before: its next `connect()` may first only report the end of
    /// the previous attempt (`ECONNABORTED`).
    used: bool,
}

enum Phase {
    Free,
    /// Waiting for the answer to the SYN.
    Connecting,
    /// Connected `rtt` after the SYN; reading what the service sends first.
    Banner {
        rtt: Duration,
        buf: Vec<u8>,
    },
}

/// A probe in flight.
struct Slot {
    sock: Option<Sock>,
    job: Job,
    target: SocketAddr,
    sent: Instant,
    /// Tells a deadline of this probe from one of an earlier probe in the same slot.
    gen: u32,
    phase: Phase,
}

/// How starting a probe went.
enum Started {
    /// Decided at once; the socket may be kept for the next probe.
    Done(Attempt, Option<Sock>),
    /// In flight.
    Waiting,
}

/// One scan thread.
struct Worker {
    sh: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
    ep: OwnedFd,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slot (plus one) of each descriptor in flight, indexed by descriptor.
    by_fd: Vec<u32>,
    /// Sockets kept for reuse, per address.
    pools: Vec<Vec<Sock>>,
    /// How many more new sockets, per address, learn their local address.
    bind_budget: Vec<u32>,
    /// Probes in a row, per address, whose answer was not in right after `connect()`.
    misses: Vec<u32>,
    fresh: std::ops::Range<usize>,
    retry: VecDeque<Job>,
    window: Window,
    in_flight: usize,
    /// Probes waiting for an answer, per address, in the order they were sent (which
    /// is the order of their deadlines: every probe to an address has the same
    /// timeout): (sent, slot, gen).
    waits: Vec<VecDeque<(Instant, u32, u32)>>,
    /// Open ports reading their banner, by deadline: (deadline, slot, gen).
    banners: VecDeque<(Instant, u32, u32)>,
    samples: Vec<(usize, Duration)>,
    unreported: usize,
    last_report: Instant,
    shortage_streak: u32,
    out: Output,
}

impl Worker {
    fn new(sh: Arc<Shared>, tx: mpsc::UnboundedSender<Msg>, window: Window) -> io::Result<Worker> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let n = sh.addrs.len();
        Ok(Worker {
            sh,
            tx,
            ep,
            slots: Vec::new(),
            free: Vec::new(),
            by_fd: Vec::new(),
            pools: (0..n).map(|_| Vec::new()).collect(),
            bind_budget: vec![BIND_BUDGET; n],
            misses: vec![0; n],
            fresh: 0..0,
            retry: VecDeque::new(),
            window,
            in_flight: 0,
            waits: (0..n).map(|_| VecDeque::new()).collect(),
            banners: VecDeque::new(),
            samples: Vec::with_capacity(LAUNCH_BATCH),
            unreported: 0,
            last_report: Instant::now(),
            shortage_streak: 0,
            out: Output::default(),
        })
    }

    fn run(mut self) {
        // Not in `self`: an event holds a raw pointer, so it may not cross threads.
        let mut events: Vec<epoll::Event> = Vec::with_capacity(EVENTS);
        loop {
            if self.sh.stop.load(Ordering::Relaxed) {
                break;
            }
            let mut pause = false;
            let mut launched = 0;
            while launched < LAUNCH_BATCH && self.in_flight < self.window.allowed() {
                let Some(job) = self.next_job() else { break };
                launched += 1;
                if self.launch(job) {
                    pause = true;
                    break;
                }
            }
            if self.out.fatal.is_some() {
                self.sh.stop.store(true, Ordering::Relaxed);
                break;
            }
            let more = !pause && self.in_flight < self.window.allowed() && self.has_jobs();
            if self.in_flight > 0 {
                let wait = if more {
                    Duration::ZERO
                } else {
                    self.next_deadline()
                };
                self.poll(&mut events, wait);
                self.expire();
            } else if pause {
                std::thread::sleep(Duration::from_millis(10));
            } else if !more {
                break;
            }
            self.flush(false);
        }
        self.flush(true);
        self.stop_in_flight();
        let out = std::mem::take(&mut self.out);
        let mut out = Box::new(out);
        out.stats.losses = self.window.losses;
        out.stats.max_in_flight = self.window.max_seen;
        out.stats.concurrency_limit = self.window.limit();
        let _ = self.tx.send(Msg::Done(out));
    }

    fn has_jobs(&self) -> bool {
        !self.retry.is_empty()
            || !self.fresh.is_empty()
            || self.sh.next.load(Ordering::Relaxed) < self.sh.total
    }

    fn next_job(&mut self) -> Option<Job> {
        if let Some(j) = self.retry.pop_front() {
            return Some(j);
        }
        if self.fresh.is_empty() {
            let start = self.sh.next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= self.sh.total {
                return None;
            }
            self.fresh = start..(start + CHUNK).min(self.sh.total);
        }
        self.fresh.next().map(|i| Job {
            idx: i as u32,
            attempt: 0,
        })
    }

    fn addr_of(&self, job: Job) -> usize {
        job.idx as usize / self.sh.ports.len()
    }

    /// Starts `job`, or books it when it is decided at once. True: pause (the system
    /// is out of resources and nothing is in flight to free them).
    fn launch(&mut self, job: Job) -> bool {
        let addr = self.addr_of(job);
        if self.sh.failed[addr].load(Ordering::Relaxed) {
            self.unreported += 1;
            return false;
        }
        let port = self.sh.ports[job.idx as usize % self.sh.ports.len()];
        let target = SocketAddr::new(self.sh.addrs[addr], port);
        self.out.stats.probes += 1;
        match self.start(job, addr, target, true) {
            Started::Waiting => false,
            Started::Done(a, sock) => {
                if let Some(sock) = sock {
                    self.keep(addr, sock);
                }
                self.book(job, a)
            }
        }
    }

    fn new_socket(&self, target: SocketAddr) -> Result<Sock, Errno> {
        let family = if target.is_ipv6() {
            AddressFamily::INET6
        } else {
            AddressFamily::INET
        };
        let fd = net::socket_with(
            family,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            Some(ipproto::TCP),
        )?;
        // ICMP errors with their type, code and sender.
        icmp::enable_recverr(&fd, target.is_ipv6())
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::INVAL))?;
        Ok(Sock {
            fd,
            registered: false,
            local: None,
            used: false,
        })
    }

    /// Sends the SYN and, on a fast path, looks whether the answer is in already.
    /// `reuse`: a socket kept from an earlier probe may be used.
    fn start(&mut self, job: Job, addr: usize, target: SocketAddr, reuse: bool) -> Started {
        let pooled = if reuse { self.pools[addr].pop() } else { None };
        let recycled = pooled.is_some();
        let mut sock = match pooled {
            Some(s) => s,
            None => match self.new_socket(target) {
                Ok(s) => s,
                Err(e) => return Started::Done(local(e), None),
            },
        };
        let sent = Instant::now();
        let mut r = net::connect(&sock.fd, &target);
        if sock.used && r == Err(Errno::CONNABORTED) {
            // This call only reset the socket from its previous attempt.
            r = net::connect(&sock.fd, &target);
        }
        sock.used = true;
        match r {
            Ok(()) => return self.opened(job, target, sock, sent, sent.elapsed()),
            Err(Errno::INPROGRESS) => {}
            // A kept socket that will not connect again (or whose local port is
            // taken towards this port): start over with a new one.
            Err(e) if recycled && e != Errno::CONNREFUSED => {
                drop(sock);
                return self.start(job, addr, target, false);
            }
            Err(e) => {
                let (a, reusable) = connect_failed(&sock.fd, e, target, sent.elapsed(), true);
                return Started::Done(a, reusable.then_some(sock));
            }
        }
        if !recycled && self.bind_budget[addr] > 0 {
            self.bind_budget[addr] -= 1;
            sock.local = net::getsockname(&sock.fd)
                .ok()
                .and_then(|a| SocketAddr::try_from(a).ok());
        }
        // Look for the answer at once while answers come inside connect(); after a
        // run of probes that all had to wait, only now and then.
        let misses = self.misses[addr];
        if misses < SLOW_AFTER || misses & (SLOW_AFTER - 1) == 0 {
            let r = net::connect(&sock.fd, &target);
            if r != Err(Errno::ALREADY) && r != Err(Errno::INPROGRESS) {
                self.misses[addr] = 0;
            }
            match r {
                Ok(()) | Err(Errno::ISCONN) => {
                    return self.opened(job, target, sock, sent, sent.elapsed())
                }
                Err(Errno::ALREADY) | Err(Errno::INPROGRESS) => {
                    // Still waiting; unless an ICMP error came while connect() held
                    // the socket, which only SO_ERROR tells.
                    match net::sockopt::socket_error(&sock.fd) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            self.misses[addr] = 0;
                            let (a, reusable) =
                                connect_failed(&sock.fd, e, target, sent.elapsed(), false);
                            return Started::Done(a, reusable.then_some(sock));
                        }
                        Err(e) => return Started::Done(local(e), None),
                    }
                }
                Err(Errno::CONNREFUSED) => {
                    let a = answered(PortState::Closed, Reason::Reset, sent.elapsed());
                    return Started::Done(a, Some(sock));
                }
                Err(e) => {
                    let (a, _) = connect_failed(&sock.fd, e, target, sent.elapsed(), false);
                    return Started::Done(a, None);
                }
            }
        }
        self.misses[addr] = self.misses[addr].saturating_add(1);
        if let Err(e) = self.register(&mut sock) {
            return Started::Done(local(e), None);
        }
        let gen = self.occupy(sock, job, target, sent, Phase::Connecting);
        self.waits[addr].push_back((sent, gen.0, gen.1));
        Started::Waiting
    }

    fn register(&self, sock: &mut Sock) -> Result<(), Errno> {
        if !sock.registered {
            let fd = sock.fd.as_raw_fd();
            epoll::add(
                &self.ep,
                &sock.fd,
                epoll::EventData::new_u64(fd as u64),
                epoll::EventFlags::IN
                    | epoll::EventFlags::OUT
                    | epoll::EventFlags::RDHUP
                    | epoll::EventFlags::ET,
            )?;
            sock.registered = true;
        }
        Ok(())
    }

    /// Puts a probe in flight. Returns its slot and generation.
    fn occupy(
        &mut self,
        sock: Sock,
        job: Job,
        target: SocketAddr,
        sent: Instant,
        phase: Phase,
    ) -> (u32, u32) {
        let fd = sock.fd.as_raw_fd() as usize;
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    sock: None,
                    job,
                    target,
                    sent,
                    gen: 0,
                    phase: Phase::Free,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[i as usize];
        s.sock = Some(sock);
        s.job = job;
        s.target = target;
        s.sent = sent;
        s.gen = s.gen.wrapping_add(1);
        s.phase = phase;
        let gen = s.gen;
        if self.by_fd.len() <= fd {
            self.by_fd.resize(fd + 1, 0);
        }
        self.by_fd[fd] = i + 1;
        self.in_flight += 1;
        self.window.note_in_flight(self.in_flight);
        (i, gen)
    }

    /// Takes a probe out of flight, with its socket.
    fn vacate(&mut self, slot: u32) -> (Job, SocketAddr, Option<Sock>, Phase) {
        let s = &mut self.slots[slot as usize];
        let sock = s.sock.take();
        let phase = std::mem::replace(&mut s.phase, Phase::Free);
        if let Some(sock) = &sock {
            self.by_fd[sock.fd.as_raw_fd() as usize] = 0;
        }
        self.free.push(slot);
        self.in_flight -= 1;
        (s.job, s.target, sock, phase)
    }

    /// The connection was accepted `rtt` after the SYN: read the banner, or close.
    fn opened(
        &mut self,
        job: Job,
        target: SocketAddr,
        mut sock: Sock,
        sent: Instant,
        rtt: Duration,
    ) -> Started {
        if self.sh.banner_wait.is_zero() {
            close_with_reset(sock);
            return Started::Done(answered(PortState::Open, Reason::SynAck, rtt), None);
        }
        let mut buf = Vec::new();
        if read_some(&sock.fd, &mut buf) {
            close_with_reset(sock);
            return Started::Done(open_with_banner(rtt, &buf), None);
        }
        if let Err(e) = self.register(&mut sock) {
            // No banner then; the port is open all the same.
            let _ = e;
            close_with_reset(sock);
            return Started::Done(open_with_banner(rtt, &buf), None);
        }
        let (slot, gen) = self.occupy(sock, job, target, sent, Phase::Banner { rtt, buf });
        self.banners.push_back((
            Instant::now() + banner_wait(rtt, self.sh.banner_wait),
            slot,
            gen,
        ));
        Started::Waiting
    }

    /// Keeps a socket refused by a RST for the next probe to `addr`. The refusal
    /// released its local port; it is bound to it again, explicitly this time (the
    /// port the kernel chose, which honours the local port range and the reserved
    /// ports), so that it keeps it from now on. If someone took the port meanwhile,
    /// it stays unbound and gets a new port at each connect, as before.
    fn keep(&mut self, addr: usize, mut sock: Sock) {
        if self.pools[addr].len() >= POOL {
            return;
        }
        if let Some(local) = sock.local.take() {
            let _ = net::bind(&sock.fd, &local);
        }
        self.pools[addr].push(sock);
    }

    /// Books the outcome of one attempt. True: pause (see [`Worker::launch`]).
    fn book(&mut self, job: Job, outcome: Attempt) -> bool {
        let addr = self.addr_of(job);
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
                self.samples.push((addr, rtt));
                if job.attempt > 0 {
                    let t = self.sh.timeout(addr);
                    self.window.on_loss(t);
                } else {
                    self.window.on_success();
                }
                self.decide(job, state, reason, Some(rtt), banner);
            }
            Attempt::Silent if job.attempt + 1 < self.sh.tries => {
                self.out.stats.retransmissions += 1;
                self.retry.push_back(Job {
                    attempt: job.attempt + 1,
                    ..job
                });
            }
            Attempt::Silent => {
                self.window.on_success();
                self.decide(job, PortState::Filtered, Reason::NoResponse, None, None);
            }
            Attempt::Resource(e) => {
                self.out.stats.probes -= 1;
                self.window.on_resource_shortage(self.in_flight + 1);
                self.retry.push_front(job);
                if self.in_flight == 0 {
                    self.shortage_streak += 1;
                    if self.shortage_streak > SHORTAGE_LIMIT {
                        self.out.fatal = Some(e);
                    }
                    return true;
                }
            }
            Attempt::Local(e) => {
                if !self.sh.failed[addr].swap(true, Ordering::Relaxed) {
                    self.out.failed.push((addr, e.to_string()));
                }
                self.unreported += 1;
            }
        }
        false
    }

    fn decide(
        &mut self,
        job: Job,
        state: PortState,
        reason: Reason,
        rtt: Option<Duration>,
        banner: Option<String>,
    ) {
        self.out.decided.push(Decided {
            idx: job.idx,
            state,
            reason,
            rtt,
        });
        if let Some(b) = banner {
            self.out.banners.push((job.idx, b));
        }
        self.unreported += 1;
    }

    /// When the next probe in flight times out (or a banner wait ends), from now,
    /// at most [`TICK`].
    fn next_deadline(&self) -> Duration {
        let now = Instant::now();
        let mut wake = now + TICK;
        for (addr, q) in self.waits.iter().enumerate() {
            if let Some(&(sent, _, _)) = q.front() {
                wake = wake.min(sent + self.sh.timeout(addr));
            }
        }
        if let Some(&(deadline, _, _)) = self.banners.front() {
            wake = wake.min(deadline);
        }
        wake.saturating_duration_since(now)
    }

    fn poll(&mut self, events: &mut Vec<epoll::Event>, wait: Duration) {
        events.clear();
        let ts = Timespec {
            tv_sec: wait.as_secs() as _,
            tv_nsec: wait.subsec_nanos() as _,
        };
        match epoll::wait(&self.ep, spare_capacity(events), Some(&ts)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => {
                self.out.fatal = Some(e.into());
                return;
            }
        }
        for ev in events.iter() {
            let (data, flags) = (ev.data, ev.flags);
            let fd = data.u64() as usize;
            match self.by_fd.get(fd) {
                Some(&s) if s > 0 => self.on_event(s - 1, flags.contains(epoll::EventFlags::ERR)),
                // A socket kept for reuse, or an event that came in late.
                _ => {}
            }
        }
    }

    /// Something happened on the socket of `slot`. `error`: the socket reports an
    /// error (`EPOLLERR`), possibly only a queued ICMP error.
    fn on_event(&mut self, slot: u32, error: bool) {
        let s = &self.slots[slot as usize];
        match s.phase {
            Phase::Free => {}
            Phase::Connecting => {
                let (target, sent) = (s.target, s.sent);
                let Some(sock) = &s.sock else { return };
                let mut r = net::connect(&sock.fd, &target);
                if error && matches!(r, Err(Errno::ALREADY | Errno::INPROGRESS)) {
                    // Still waiting, with an error: an ICMP error that came while
                    // connect() held the socket, which only SO_ERROR tells.
                    match net::sockopt::socket_error(&sock.fd) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) | Err(e) => r = Err(e),
                    }
                }
                let failure = match r {
                    Err(e) if !matches!(e, Errno::ALREADY | Errno::INPROGRESS | Errno::ISCONN) => {
                        Some(connect_failed(&sock.fd, e, target, sent.elapsed(), false))
                    }
                    _ => None,
                };
                match r {
                    Ok(()) | Err(Errno::ISCONN) => {
                        let (job, target, sock, _) = self.vacate(slot);
                        let rtt = sent.elapsed();
                        match self.opened(job, target, sock.expect("in flight"), sent, rtt) {
                            Started::Waiting => {}
                            Started::Done(a, _) => {
                                self.book(job, a);
                            }
                        }
                    }
                    // Not yet: an event of an earlier use of this socket.
                    Err(Errno::ALREADY) | Err(Errno::INPROGRESS) => {}
                    Err(_) => {
                        let (a, reusable) = failure.expect("a failure");
                        let (job, _, sock, _) = self.vacate(slot);
                        if let (true, Some(sock)) = (reusable, sock) {
                            let addr = self.addr_of(job);
                            self.keep(addr, sock);
                        }
                        self.book(job, a);
                    }
                }
            }
            Phase::Banner { .. } => {
                let s = &mut self.slots[slot as usize];
                let (Some(sock), Phase::Banner { buf, .. }) = (&s.sock, &mut s.phase) else {
                    return;
                };
                if read_some(&sock.fd, buf) {
                    self.banner_done(slot);
                }
            }
        }
    }

    fn banner_done(&mut self, slot: u32) {
        let (job, _, sock, phase) = self.vacate(slot);
        if let Some(sock) = sock {
            close_with_reset(sock);
        }
        if let Phase::Banner { rtt, buf } = phase {
            self.book(job, open_with_banner(rtt, &buf));
        }
    }

    /// Ends the probes whose time is up.
    fn expire(&mut self) {
        let now = Instant::now();
        for addr in 0..self.waits.len() {
            let timeout = self.sh.timeout(addr);
            while let Some(&(sent, slot, gen)) = self.waits[addr].front() {
                let s = &self.slots[slot as usize];
                if s.gen != gen || !matches!(s.phase, Phase::Connecting) {
                    self.waits[addr].pop_front();
                    continue;
                }
                if now < sent + timeout {
                    break;
                }
                self.waits[addr].pop_front();
                let (job, _, sock, _) = self.vacate(slot);
                drop(sock);
                self.book(job, Attempt::Silent);
            }
        }
        while let Some(&(deadline, slot, gen)) = self.banners.front() {
            let s = &self.slots[slot as usize];
            if s.gen != gen || !matches!(s.phase, Phase::Banner { .. }) {
                self.banners.pop_front();
                continue;
            }
            if now < deadline {
                break;
            }
            self.banners.pop_front();
            self.banner_done(slot);
        }
    }

    /// Publishes round-trip samples, and progress every [`TICK`] (or now, `last`).
    fn flush(&mut self, last: bool) {
        if !self.samples.is_empty() {
            let mut c = self.sh.clocks();
            for &(addr, rtt) in &self.samples {
                c.sample(addr, rtt);
            }
            c.publish(&self.sh.timeouts);
            drop(c);
            self.samples.clear();
        }
        if self.unreported > 0 && (last || self.last_report.elapsed() >= TICK) {
            let _ = self.tx.send(Msg::Progress(self.unreported));
            self.unreported = 0;
            self.last_report = Instant::now();
        }
    }

    /// A scan that stops early still leaves no half-open connection behind.
    fn stop_in_flight(&mut self) {
        for s in &mut self.slots {
            if let (Some(sock), Phase::Banner { .. }) = (s.sock.take(), &s.phase) {
                close_with_reset(sock);
            }
        }
    }
}

/// Reads what is there without waiting. True when the banner is complete: a
/// newline, [`BANNER_MAX`] bytes, the end of the stream or an error.
fn read_some(fd: &OwnedFd, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; BANNER_MAX];
    // Each read returns at least one byte or ends the loop.
    for _ in 0..=BANNER_MAX {
        let room = BANNER_MAX - buf.len();
        match net::recv(fd, &mut chunk[..room], RecvFlags::DONTWAIT) {
            Ok((0, _)) => return true,
            Ok((n, _)) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.contains(&b'\n') || buf.len() >= BANNER_MAX {
                    return true;
                }
            }
            Err(Errno::AGAIN) => return false,
            Err(Errno::INTR) => {}
            Err(_) => return true,
        }
    }
    true
}

fn open_with_banner(rtt: Duration, buf: &[u8]) -> Attempt {
    Attempt::Answered {
        state: PortState::Open,
        reason: Reason::SynAck,
        rtt,
        banner: printable_first_line(buf),
    }
}

/// Closing with `SO_LINGER 0` sends a RST: no TIME_WAIT here, no half-open
/// connection left on the server.
fn close_with_reset(sock: Sock) {
    let _ = net::sockopt::set_socket_linger(&sock.fd, Some(Duration::ZERO));
}

/// Sets the stop flag when the scan's future is dropped, so its threads end.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
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
    assert!(total <= u32::MAX as usize, "at most 2^32 probes");
    let limit = spec
        .max_concurrency
        .unwrap_or(DEFAULT_MAX_CONCURRENCY)
        .min(fd_budget())
        .max(1);
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads = cpus
        .min(MAX_THREADS)
        .min(total.div_ceil(PROBES_PER_THREAD))
        .min(limit)
        .max(1);
    let shared = Arc::new(Shared {
        addrs: addrs.to_vec(),
        ports: ports.to_vec(),
        total,
        tries: spec.tries(),
        banner_wait: spec.banner_wait,
        next: AtomicUsize::new(0),
        clocks: Mutex::new(Clocks {
            bounds: spec.timeouts,
            per_addr: vec![RttEstimator::default(); addrs.len()],
            global: RttEstimator::default(),
        }),
        timeouts: addrs
            .iter()
            .map(|_| SharedTimeout::new(spec.timeouts.initial))
            .collect(),
        failed: addrs.iter().map(|_| AtomicBool::new(false)).collect(),
        stop: AtomicBool::new(false),
    });
    let _stop = StopOnDrop(shared.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut handles = Vec::with_capacity(threads);
    for _ in 0..threads {
        let window = Window::new((INITIAL_WINDOW / threads).max(1), (limit / threads).max(1));
        let started = Worker::new(shared.clone(), tx.clone(), window).and_then(|w| {
            std::thread::Builder::new()
                .name("probe-tcp".into())
                .spawn(move || w.run())
        });
        match started {
            Ok(h) => handles.push(h),
            Err(e) if handles.is_empty() => return Err(ProbeError::Resources(e)),
            // Fewer threads then.
            Err(_) => break,
        }
    }
    drop(tx);

    let mut outputs = Vec::with_capacity(handles.len());
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Progress(k) => progress.add(k),
            Msg::Done(o) => outputs.push(o),
        }
    }
    for h in handles {
        // Each thread has sent its output and ends: this does not wait.
        if let Err(p) = h.join() {
            std::panic::resume_unwind(p);
        }
    }

    let mut stats = ScanStats::default();
    let mut cells: Vec<Option<Decided>> = vec![None; total];
    let mut banners: HashMap<u32, String> = HashMap::new();
    let mut failed: Vec<Option<String>> = vec![None; addrs.len()];
    for o in outputs {
        if let Some(e) = o.fatal {
            return Err(ProbeError::Resources(e));
        }
        for d in o.decided {
            cells[d.idx as usize] = Some(d);
        }
        banners.extend(o.banners);
        for (a, e) in o.failed {
            failed[a].get_or_insert(e);
        }
        stats.probes += o.stats.probes;
        stats.retransmissions += o.stats.retransmissions;
        stats.losses += o.stats.losses;
        stats.max_in_flight += o.stats.max_in_flight;
        stats.concurrency_limit += o.stats.concurrency_limit;
    }
    {
        let c = shared.clocks();
        stats.srtt = c.global.srtt();
    }
    stats.timeout = (0..addrs.len())
        .map(|a| shared.timeout(a))
        .max()
        .unwrap_or(spec.timeouts.initial);

    let mut unreachable = Vec::new();
    let mut results = Vec::with_capacity(total);
    for (a, f) in failed.into_iter().enumerate() {
        if let Some(error) = f {
            unreachable.push(AddressError {
                address: addrs[a],
                error,
            });
            continue;
        }
        for (p, &port) in ports.iter().enumerate() {
            let idx = a * n + p;
            let d = cells[idx].expect("every port decided");
            results.push(PortResult {
                address: addrs[a],
                port,
                protocol: Protocol::Tcp,
                state: d.state,
                reason: d.reason,
                rtt: d.rtt,
                banner: banners.remove(&(idx as u32)),
                service: service_name(port, Protocol::Tcp),
            });
        }
    }
    Ok(EngineOutput {
        results,
        unreachable,
        stats,
    })
}
