//! UDP probes: one socket per address, rounds of retransmissions, and ICMP-verified
//! silence (see the crate documentation for why).

use crate::icmp::{self, IcmpError};
use crate::timing::RttEstimator;
use crate::{
    service_name, AddressError, EngineOutput, PortResult, PortState, ProbeError, ProbeSpec,
    Progress, Protocol, Reason, ScanStats,
};
use nix::libc;
use socket2::{Domain, Socket, Type};
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Probes awaiting an answer at once, per address.
const WINDOW: usize = 512;
/// A canary probe goes out after this many probes of a retransmission round.
const CANARY_EVERY: usize = 64;
/// A silent try counts only if a probe sent at most this much later drew an ICMP
/// error (the ICMP rate limiter had a token then, so it had one for our probe too).
const VERIFY_SPAN: Duration = Duration::from_millis(20);
/// Pause between rounds when a canary went unanswered (the target's ICMP limiter is
/// empty): starts here, doubles, and stays below [`GAP_MAX`].
const GAP_MIN: Duration = Duration::from_millis(50);
const GAP_MAX: Duration = Duration::from_secs(1);
/// After this many rounds in a row without a single ICMP error, canaries included,
/// the target is taken to have stopped sending them.
const MAX_SILENT_ROUNDS: u32 = 5;

/// What to send to `port`: a valid request for services that only answer those,
/// an empty datagram otherwise.
pub(crate) fn payload(port: u16) -> &'static [u8] {
    const DNS: &[u8] = &[
        0x70, 0x77, // id
        0x01, 0x00, // standard query, recursion desired
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // one question
        0x00, // the root
        0x00, 0x02, 0x00, 0x01, // NS, IN
    ];
    const NTP: &[u8] = &[
        0xe3, 0x00, 0x04,
        0xfa, // LI unsynchronised, version 4, client; stratum 0; poll 4; precision
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, // root delay, root dispersion
        0, 0, 0, 0, // reference id
        0, 0, 0, 0, 0, 0, 0, 0, // reference timestamp
        0, 0, 0, 0, 0, 0, 0, 0, // origin timestamp
        0, 0, 0, 0, 0, 0, 0, 0, // receive timestamp
        0xc5, 0x4f, 0x23, 0x4b, 0x71, 0xb1, 0x52, 0xf3, // transmit timestamp
    ];
    const SNMP: &[u8] = &[
        0x30, 0x29, // SEQUENCE
        0x02, 0x01, 0x01, // version: 2c
        0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', // community
        0xa0, 0x1c, // GetRequest
        0x02, 0x04, 0x70, 0x77, 0x61, 0x6c, // request id
        0x02, 0x01, 0x00, // error status
        0x02, 0x01, 0x00, // error index
        0x30, 0x0e, 0x30, 0x0c, // varbinds
        0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, // sysDescr.0
        0x05, 0x00, // NULL
    ];
    match port {
        53 => DNS,
        123 => NTP,
        161 => SNMP,
        _ => &[],
    }
}

/// A canary's payload: a marker and its sequence number, so that the ICMP error that
/// quotes it says which canary it answers.
fn canary_payload(seq: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(CANARY_MARK);
    p[8..].copy_from_slice(&seq.to_be_bytes());
    p
}

const CANARY_MARK: &[u8; 8] = b"pwcanary";

fn canary_seq(quoted: &[u8]) -> Option<u64> {
    let rest = quoted.strip_prefix(CANARY_MARK)?;
    Some(u64::from_be_bytes(rest.get(..8)?.try_into().ok()?))
}

#[derive(Debug, Clone, Default)]
struct Slot {
    tries: u8,
    /// Silent tries that count (see [`VERIFY_SPAN`]).
    counted: u8,
    seq: u64,
    sent: Option<Instant>,
    round: u32,
    result: Option<(PortState, Reason, Option<Duration>)>,
}

/// The probing of one address.
struct AddrScan<'a, 'p> {
    target: IpAddr,
    ports: &'a [u16],
    sock: UdpSocket,
    slots: Vec<Slot>,
    est: RttEstimator,
    bounds: crate::Timeouts,
    progress: &'a Progress<'p>,
    seq: u64,
    round: u32,
    /// An ICMP error has come back from this address.
    icmp_seen: bool,
    /// A port known to answer with an ICMP error.
    canary: Option<u16>,
    /// ICMP-answered probes of the current round: (seq, sent).
    evidence: Vec<(u64, Instant)>,
    /// Canary probes of the current round: (seq, sent, answered).
    canaries: Vec<(u64, Instant, bool)>,
    stats: ScanStats,
}

fn open_socket(target: IpAddr) -> io::Result<UdpSocket> {
    let sock = Socket::new(
        Domain::for_address(SocketAddr::new(target, 0)),
        Type::DGRAM.nonblocking(),
        None,
    )?;
    icmp::enable_recverr(&sock, target.is_ipv6())?;
    let any: IpAddr = if target.is_ipv6() {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    sock.bind(&SocketAddr::new(any, 0).into())?;
    UdpSocket::from_std(sock.into())
}

/// Errors a send or receive reports on behalf of an earlier ICMP error (the details
/// are on the error queue).
fn is_icmp_errno(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EACCES
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::ENOPROTOOPT
                | libc::EPROTO
                | libc::EMSGSIZE
        )
    )
}

impl AddrScan<'_, '_> {
    fn index(&self, port: u16) -> Option<usize> {
        self.ports.binary_search(&port).ok()
    }

    fn resolve(&mut self, idx: usize, state: PortState, reason: Reason, rtt: Option<Duration>) {
        if self.slots[idx].result.is_none() {
            self.slots[idx].result = Some((state, reason, rtt));
            self.progress.add(1);
        }
    }

    fn timeout(&self) -> Duration {
        self.est.timeout(&self.bounds)
    }

    /// Sends one datagram to `port`. `Err`: this address cannot be probed from here.
    async fn send(&mut self, port: u16, data: &[u8]) -> io::Result<Instant> {
        let to = SocketAddr::new(self.target, port);
        let mut attempts = 0;
        loop {
            match self.sock.send_to(data, to).await {
                Ok(_) => {
                    self.stats.probes += 1;
                    self.seq += 1;
                    return Ok(Instant::now());
                }
                // The kernel hands a pending ICMP error to whichever call comes next:
                // read its details, then send again.
                Err(e) if is_icmp_errno(&e) && attempts < 8 => {
                    attempts += 1;
                    if self.drain_errors() == 0 {
                        return Err(e);
                    }
                }
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::ENOMEM))
                        && attempts < 100 =>
                {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads every reply and ICMP error available now. Returns how many ICMP errors
    /// were read.
    fn drain(&mut self) -> usize {
        let mut buf = [0u8; 2048];
        loop {
            match self.sock.try_recv_from(&mut buf) {
                Ok((_, from)) => self.on_reply(from),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_icmp_errno(&e) => continue,
                Err(_) => break,
            }
        }
        self.drain_errors()
    }

    /// Reads the error queue until it is empty. It is read directly, whatever tokio
    /// last saw (an error can be queued before the reactor hears of it); then the
    /// error readiness tokio holds is cleared, unless a newer event came in.
    fn drain_errors(&mut self) -> usize {
        let mut errors = Vec::new();
        while let Ok(Some(e)) = icmp::read_error_queue(&self.sock) {
            errors.push(e);
        }
        let _ = self.sock.try_io(Interest::ERROR, || {
            while let Ok(Some(e)) = icmp::read_error_queue(&self.sock) {
                errors.push(e);
            }
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
        let n = errors.len();
        for e in errors {
            self.on_icmp(e);
        }
        n
    }

    fn on_reply(&mut self, from: SocketAddr) {
        let from_ip = match from.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if from_ip != self.target {
            return;
        }
        let Some(idx) = self.index(from.port()) else {
            return;
        };
        let slot = &self.slots[idx];
        if slot.result.is_some() {
            return;
        }
        let rtt = slot.sent.map(|s| s.elapsed());
        if let (1, Some(rtt)) = (slot.tries, rtt) {
            self.est.sample(rtt);
        }
        self.resolve(idx, PortState::Open, Reason::UdpResponse, rtt);
    }

    fn on_icmp(&mut self, e: IcmpError) {
        let Some(orig) = e.original else { return };
        if orig.ip() != self.target {
            return;
        }
        let Some((state, reason)) = icmp::classify(&e, self.target) else {
            return;
        };
        self.icmp_seen = true;
        let now = Instant::now();
        if let Some(seq) = canary_seq(&e.quoted[..e.quoted_len]) {
            // The ICMP message quotes the canary's payload, which names the probe.
            if let Ok(i) = self.canaries.binary_search_by_key(&seq, |c| c.0) {
                let c = &mut self.canaries[i];
                if !c.2 {
                    c.2 = true;
                    self.evidence.push((c.0, c.1));
                    self.est.sample(now.duration_since(c.1));
                }
            }
            return;
        }
        let Some(idx) = self.index(orig.port()) else {
            return;
        };
        let slot = self.slots[idx].clone();
        if slot.result.is_some() {
            return;
        }
        if let Some(sent) = slot.sent {
            if slot.round == self.round {
                self.evidence.push((slot.seq, sent));
            }
            if slot.tries == 1 {
                self.est.sample(now.duration_since(sent));
            }
        }
        if state == PortState::Closed && self.canary.is_none() {
            self.canary = Some(orig.port());
        }
        self.resolve(idx, state, reason, slot.sent.map(|s| now.duration_since(s)));
    }

    /// Waits until `until`, reading answers as they come.
    async fn wait_until(&mut self, until: Instant) -> io::Result<()> {
        loop {
            if Instant::now() >= until {
                return Ok(());
            }
            tokio::select! {
                r = self.sock.ready(Interest::READABLE | Interest::ERROR) => {
                    r?;
                    self.drain();
                }
                _ = tokio::time::sleep_until(until.into()) => return Ok(()),
            }
        }
    }

    /// One round: probes `members` (and canaries, once a closed port is known), then
    /// waits for their answers. Returns whether every canary was answered (`None`:
    /// no canary was sent).
    async fn round(&mut self, members: &[usize]) -> io::Result<Option<bool>> {
        self.round += 1;
        self.evidence.clear();
        self.canaries.clear();
        let use_canary = self.canary.is_some();
        // What to send, in order: `Some(idx)` a port, `None` a canary.
        let mut queue: VecDeque<Option<usize>> =
            VecDeque::with_capacity(members.len() + members.len() / CANARY_EVERY + 1);
        for chunk in members.chunks(CANARY_EVERY) {
            queue.extend(chunk.iter().map(|&idx| Some(idx)));
            if use_canary {
                queue.push_back(None);
            }
        }
        // Probes out, in send order: (port index or canary, seq, sent).
        let mut outstanding: VecDeque<(Option<usize>, u64, Instant)> = VecDeque::new();
        loop {
            while outstanding.len() < WINDOW {
                let Some(item) = queue.pop_front() else { break };
                match item {
                    Some(idx) => {
                        if self.slots[idx].result.is_some() {
                            continue;
                        }
                        let seq = self.seq;
                        let port = self.ports[idx];
                        let sent = self.send(port, payload(port)).await?;
                        let slot = &mut self.slots[idx];
                        if slot.tries > 0 {
                            self.stats.retransmissions += 1;
                        }
                        slot.tries += 1;
                        slot.seq = seq;
                        slot.sent = Some(sent);
                        slot.round = self.round;
                        outstanding.push_back((Some(idx), seq, sent));
                    }
                    None => {
                        let seq = self.seq;
                        let port = self.canary.expect("canary known");
                        let sent = self.send(port, &canary_payload(seq)).await?;
                        self.canaries.push((seq, sent, false));
                        outstanding.push_back((None, seq, sent));
                    }
                }
            }
            self.drain();
            let timeout = self.timeout();
            let now = Instant::now();
            while let Some(&(item, seq, sent)) = outstanding.front() {
                let answered = match item {
                    Some(idx) => self.slots[idx].result.is_some(),
                    None => self
                        .canaries
                        .binary_search_by_key(&seq, |c| c.0)
                        .is_ok_and(|i| self.canaries[i].2),
                };
                if answered || now >= sent + timeout {
                    outstanding.pop_front();
                } else {
                    break;
                }
            }
            self.stats.max_in_flight = self.stats.max_in_flight.max(outstanding.len());
            match outstanding.front() {
                None if queue.is_empty() => break,
                None => continue,
                Some(&(_, _, sent)) => {
                    // The timeout is re-read on every wake-up, so answers shorten the
                    // wait of probes already out.
                    let wake = (sent + timeout).min(now + Duration::from_millis(50));
                    self.wait_until(wake).await?;
                }
            }
        }
        Ok(use_canary.then(|| self.canaries.iter().all(|c| c.2)))
    }

    /// Whether the silence of `slot` (its try in this round) counts: nothing has
    /// ever come back as ICMP from this address (there is nothing to doubt), or a
    /// probe sent just after it drew an ICMP error.
    fn silence_counts(&self, slot: &Slot, evidence: &[(u64, Instant)]) -> bool {
        if !self.icmp_seen {
            return true;
        }
        let (Some(sent), true) = (slot.sent, slot.round == self.round) else {
            return false;
        };
        let i = evidence.partition_point(|&(q, _)| q <= slot.seq);
        evidence
            .get(i)
            .is_some_and(|&(_, t)| t.saturating_duration_since(sent) <= VERIFY_SPAN)
    }

    async fn run(&mut self, tries: u8) -> io::Result<()> {
        let max_tries = tries.saturating_mul(4);
        let mut pending: VecDeque<usize> = (0..self.ports.len()).collect();
        let mut batch = usize::MAX;
        let mut gap = Duration::ZERO;
        let mut silent_rounds = 0;
        while !pending.is_empty() {
            let take = batch.min(pending.len());
            let members: Vec<usize> = pending.drain(..take).collect();
            let canaries_answered = self.round(&members).await?;
            self.progress.add(0);
            if canaries_answered.is_some() && self.evidence.is_empty() {
                // Not one ICMP error this round, canaries included: the target has
                // stopped answering (gone down, or a firewall now drops everything).
                // Silence cannot be checked against anything any more.
                silent_rounds += 1;
                if silent_rounds >= MAX_SILENT_ROUNDS {
                    self.canary = None;
                    self.icmp_seen = false;
                }
            } else {
                silent_rounds = 0;
            }
            let mut evidence = std::mem::take(&mut self.evidence);
            evidence.sort_unstable_by_key(|e| e.0);
            for &idx in &members {
                if self.slots[idx].result.is_some() {
                    continue;
                }
                if self.silence_counts(&self.slots[idx], &evidence) {
                    self.slots[idx].counted += 1;
                }
                let s = &self.slots[idx];
                if s.counted >= tries || s.tries >= max_tries {
                    self.resolve(idx, PortState::OpenFiltered, Reason::NoResponse, None);
                } else {
                    pending.push_back(idx);
                }
            }
            self.evidence = evidence;
            match canaries_answered {
                Some(true) => {
                    batch = batch.saturating_mul(2);
                    gap /= 2;
                    if gap < GAP_MIN {
                        gap = Duration::ZERO;
                    }
                }
                Some(false) => {
                    self.stats.losses += 1;
                    batch = (members.len() / 2).max(1);
                    gap = (gap * 2).clamp(GAP_MIN, GAP_MAX);
                }
                None => {}
            }
            if !pending.is_empty() && !gap.is_zero() {
                self.wait_until(Instant::now() + gap).await?;
            }
        }
        Ok(())
    }
}

/// Probes `ports` on every address over UDP, the addresses in parallel.
pub(crate) async fn scan(
    addrs: &[IpAddr],
    ports: &[u16],
    spec: &ProbeSpec,
    progress: &Progress<'_>,
) -> Result<EngineOutput, ProbeError> {
    let tries = spec.tries();
    let scans = addrs.iter().map(|&target| async move {
        let sock = match open_socket(target) {
            Ok(s) => s,
            Err(e) => return Err((target, e, 0)),
        };
        let mut s = AddrScan {
            target,
            ports,
            sock,
            slots: vec![Slot::default(); ports.len()],
            est: RttEstimator::default(),
            bounds: spec.timeouts,
            progress,
            seq: 0,
            round: 0,
            icmp_seen: false,
            canary: None,
            evidence: Vec::new(),
            canaries: Vec::new(),
            stats: ScanStats::default(),
        };
        if let Err(e) = s.run(tries).await {
            let undecided = s.slots.iter().filter(|sl| sl.result.is_none()).count();
            return Err((target, e, undecided));
        }
        let results: Vec<PortResult> = s
            .slots
            .iter()
            .zip(ports)
            .map(|(slot, &port)| {
                let (state, reason, rtt) = slot.result.expect("every port decided");
                PortResult {
                    address: target,
                    port,
                    protocol: Protocol::Udp,
                    state,
                    reason,
                    rtt,
                    banner: None,
                    service: service_name(port, Protocol::Udp),
                }
            })
            .collect();
        s.stats.srtt = s.est.srtt();
        s.stats.timeout = s.timeout();
        Ok((results, s.stats))
    });
    let outcomes = futures::future::join_all(scans).await;
    let mut out = EngineOutput {
        results: Vec::new(),
        unreachable: Vec::new(),
        stats: ScanStats::default(),
    };
    for o in outcomes {
        match o {
            Ok((results, st)) => {
                out.results.extend(results);
                let s = &mut out.stats;
                s.probes += st.probes;
                s.retransmissions += st.retransmissions;
                s.losses += st.losses;
                s.max_in_flight += st.max_in_flight;
                s.srtt = s.srtt.max(st.srtt);
                s.timeout = s.timeout.max(st.timeout);
            }
            Err((address, e, undecided)) => {
                progress.add(undecided);
                out.unreachable.push(AddressError {
                    address,
                    error: e.to_string(),
                });
            }
        }
    }
    out.stats.concurrency_limit = WINDOW * addrs.len();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_well_formed() {
        let dns = payload(53);
        assert_eq!(dns.len(), 17);
        assert_eq!(&dns[4..6], &[0, 1], "one question");
        let ntp = payload(123);
        assert_eq!(ntp.len(), 48);
        assert_eq!(ntp[0] & 0x07, 3, "client mode");
        assert_eq!((ntp[0] >> 3) & 0x07, 4, "version 4");
        let snmp = payload(161);
        assert_eq!(snmp[1] as usize, snmp.len() - 2, "outer length");
        assert_eq!(snmp[14] as usize, snmp.len() - 15, "PDU length");
        assert!(payload(9999).is_empty());
    }

    #[test]
    fn canary_payload_round_trips() {
        assert_eq!(canary_seq(&canary_payload(77)), Some(77));
        assert_eq!(canary_seq(&canary_payload(77)[..12]), None);
        assert_eq!(canary_seq(payload(53)), None);
    }
}
