//! How long to wait for an answer, and how many probes to keep in flight.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bounds of the per-probe timeout. The timeout in force is `srtt + 4 * rttvar` of the
/// answers seen so far, clamped to `[min, max]`; before the first answer it is
/// `initial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    #[serde(serialize_with = "crate::ser_ms")]
    pub initial: Duration,
    #[serde(serialize_with = "crate::ser_ms")]
    pub min: Duration,
    #[serde(serialize_with = "crate::ser_ms")]
    pub max: Duration,
}

impl Default for Timeouts {
    /// 1 s before any answer, then between 100 ms and 2 s (nmap's defaults are
    /// similar: 1 s initial, 100 ms minimum).
    fn default() -> Self {
        Timeouts {
            initial: Duration::from_secs(1),
            min: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }
}

impl Timeouts {
    /// The default bounds for `protocol`. TCP: the minimum is 50 ms, not 100: an
    /// unanswered SYN is sent again before the port counts as filtered, so a SYN
    /// lost to congestion costs a retransmission, not a wrong verdict, and on a LAN,
    /// where answers take well under a millisecond, a filtered port then costs two
    /// 50 ms waits. UDP keeps [`Timeouts::default`]: its silence is read against the
    /// target's ICMP rate limiter, which does not speed up.
    pub fn for_protocol(protocol: crate::Protocol) -> Timeouts {
        match protocol {
            crate::Protocol::Tcp => Timeouts {
                min: Duration::from_millis(50),
                ..Timeouts::default()
            },
            crate::Protocol::Udp => Timeouts::default(),
        }
    }

    /// These bounds with the maximum lowered (or raised) to `max`; the initial and
    /// minimum timeouts are lowered to it when they exceed it.
    pub fn with_max(self, max: Duration) -> Timeouts {
        Timeouts {
            initial: self.initial.min(max),
            min: self.min.min(max),
            max,
        }
    }

    pub(crate) fn clamp(&self, d: Duration) -> Duration {
        d.clamp(self.min.min(self.max), self.max)
    }
}

/// Smoothed round-trip time and its variation (RFC 6298, as nmap and TCP do).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RttEstimator {
    srtt_us: f64,
    rttvar_us: f64,
    samples: u64,
}

impl RttEstimator {
    pub fn sample(&mut self, rtt: Duration) {
        let r = rtt.as_secs_f64() * 1e6;
        if self.samples == 0 {
            self.srtt_us = r;
            self.rttvar_us = r / 2.0;
        } else {
            let delta = r - self.srtt_us;
            self.srtt_us += delta / 8.0;
            self.rttvar_us += (delta.abs() - self.rttvar_us) / 4.0;
        }
        self.samples += 1;
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    pub fn srtt(&self) -> Option<Duration> {
        (self.samples > 0).then(|| Duration::from_secs_f64(self.srtt_us / 1e6))
    }

    /// `srtt + 4 * rttvar` clamped to the bounds, or the initial timeout before the
    /// first sample.
    pub fn timeout(&self, bounds: &Timeouts) -> Duration {
        if self.samples == 0 {
            return bounds.initial;
        }
        let t = Duration::from_secs_f64((self.srtt_us + 4.0 * self.rttvar_us).max(0.0) / 1e6);
        bounds.clamp(t)
    }
}

/// The timeout of one target, shared between the scan threads: they publish it
/// after answers and read it while probes wait.
#[derive(Debug)]
pub(crate) struct SharedTimeout {
    micros: AtomicU64,
}

impl SharedTimeout {
    pub fn new(initial: Duration) -> SharedTimeout {
        SharedTimeout {
            micros: AtomicU64::new(initial.as_micros() as u64),
        }
    }

    pub fn get(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }

    pub fn set(&self, timeout: Duration) {
        self.micros
            .store(timeout.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The congestion window: how many probes may be in flight at once.
///
/// It works like TCP's: it starts at `initial`, grows by one per completed probe
/// while below `ssthresh` (doubling every round trip), then by `1/cwnd`, and halves
/// when a probe is lost (it went unanswered, and its retransmission was answered),
/// at most once per timeout. It never exceeds `limit`, which comes from the
/// open-file budget and the caller's maximum and shrinks when the system runs out of
/// sockets, buffers or local ports.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    cwnd: f64,
    ssthresh: f64,
    limit: usize,
    last_decrease: Option<std::time::Instant>,
    pub max_seen: usize,
    pub losses: u64,
}

pub(crate) const MIN_WINDOW: usize = 8;

impl Window {
    pub fn new(initial: usize, limit: usize) -> Window {
        let limit = limit.max(1);
        Window {
            cwnd: initial.clamp(1, limit) as f64,
            ssthresh: f64::INFINITY,
            limit,
            last_decrease: None,
            max_seen: 0,
            losses: 0,
        }
    }

    pub fn allowed(&self) -> usize {
        (self.cwnd as usize).clamp(1, self.limit)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn note_in_flight(&mut self, n: usize) {
        self.max_seen = self.max_seen.max(n);
    }

    /// A probe finished without evidence of loss.
    pub fn on_success(&mut self) {
        if self.cwnd < self.ssthresh {
            self.cwnd += 1.0;
        } else {
            self.cwnd += 1.0 / self.cwnd;
        }
        self.cwnd = self.cwnd.min(self.limit as f64);
    }

    /// A probe was lost: back off, once per `timeout` at most (a burst of losses is
    /// one congestion event).
    pub fn on_loss(&mut self, timeout: Duration) {
        self.losses += 1;
        let now = std::time::Instant::now();
        if self
            .last_decrease
            .is_some_and(|t| now.duration_since(t) < timeout)
        {
            return;
        }
        self.last_decrease = Some(now);
        self.ssthresh = (self.cwnd / 2.0).max(MIN_WINDOW as f64);
        self.cwnd = self.ssthresh;
    }

    /// The system refused a socket or a local port: never again try more than
    /// three quarters of what is in flight now.
    pub fn on_resource_shortage(&mut self, in_flight: usize) {
        self.limit = (in_flight * 3 / 4).max(MIN_WINDOW).min(self.limit);
        self.cwnd = self.cwnd.min(self.limit as f64);
        self.ssthresh = self.ssthresh.min(self.cwnd);
    }
}

/// Sockets kept free for the rest of the process (stdio, the runtime, the resolver,
/// whatever the caller has open).
const FD_HEADROOM: u64 = 128;

/// How many sockets this process may open for probes: the open-file limit
/// (`RLIMIT_NOFILE`, whose soft limit is first raised to the hard limit) minus the
/// descriptors already open and a headroom (at least 8).
pub fn fd_budget() -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let mut soft = lim.current.unwrap_or(1 << 20);
    if lim.current.is_some() && lim.current != lim.maximum {
        let want = lim.maximum.unwrap_or(1 << 20);
        if setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: lim.maximum,
            },
        )
        .is_ok()
        {
            soft = want;
        }
    }
    let open_now = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(64);
    let budget = soft.saturating_sub(open_now + FD_HEADROOM.max(soft / 20));
    (budget as usize).max(MIN_WINDOW)
}

/// The least time an open port is given to send its first line.
const BANNER_FLOOR: Duration = Duration::from_millis(100);
/// Round trips of the connection an open port is given on top of the floor.
const BANNER_RTTS: u32 = 4;

/// How long to wait for the first line of a service whose connection was accepted
/// `rtt` after the SYN: services that talk first (SSH, SMTP, FTP) send it as soon as
/// they accept, so it arrives about one round trip later plus the time the server
/// takes to start the session. So the wait follows the connection's own round-trip
/// time, [`BANNER_FLOOR`] + [`BANNER_RTTS`] × `rtt`, and never exceeds `cap` (the
/// user's `--banner-wait`). A silent open port (HTTP, a database) costs this wait,
/// and on a fast network it decided the length of a full scan with a fixed 300 ms.
pub(crate) fn banner_wait(rtt: Duration, cap: Duration) -> Duration {
    (BANNER_FLOOR + rtt * BANNER_RTTS).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_follows_rtt_within_bounds() {
        let b = Timeouts::default();
        let mut e = RttEstimator::default();
        assert_eq!(e.timeout(&b), b.initial);
        e.sample(Duration::from_micros(200));
        assert_eq!(e.timeout(&b), b.min, "tiny RTTs clamp to the minimum");
        for _ in 0..50 {
            e.sample(Duration::from_millis(300));
        }
        let t = e.timeout(&b);
        assert!(
            t >= Duration::from_millis(300) && t < Duration::from_millis(400),
            "{t:?}"
        );
        e.sample(Duration::from_secs(30));
        assert_eq!(e.timeout(&b), b.max);
        let srtt = e.srtt().unwrap();
        assert!(srtt > Duration::from_millis(300), "{srtt:?}");
    }

    #[test]
    fn tcp_waits_less_than_udp() {
        let tcp = Timeouts::for_protocol(crate::Protocol::Tcp);
        let udp = Timeouts::for_protocol(crate::Protocol::Udp);
        assert_eq!(udp, Timeouts::default());
        assert_eq!(tcp.min, Duration::from_millis(50));
        assert_eq!((tcp.initial, tcp.max), (udp.initial, udp.max));
    }

    #[test]
    fn with_max_lowers_the_other_bounds() {
        let b = Timeouts::default().with_max(Duration::from_millis(50));
        assert_eq!(b.initial, Duration::from_millis(50));
        assert_eq!(b.min, Duration::from_millis(50));
        assert_eq!(b.clamp(Duration::from_secs(9)), Duration::from_millis(50));
    }

    #[test]
    fn window_grows_halves_and_respects_limits() {
        let mut w = Window::new(16, 100);
        assert_eq!(w.allowed(), 16);
        for _ in 0..200 {
            w.on_success();
        }
        assert_eq!(w.allowed(), 100, "slow start up to the limit");
        w.on_loss(Duration::from_secs(10));
        assert_eq!(w.allowed(), 50);
        w.on_loss(Duration::from_secs(10));
        assert_eq!(w.allowed(), 50, "one decrease per timeout");
        for _ in 0..50 {
            w.on_success();
        }
        assert!(
            w.allowed() < 52,
            "congestion avoidance grows slowly: {}",
            w.allowed()
        );
        w.on_resource_shortage(40);
        assert_eq!(w.limit(), 30);
        assert_eq!(w.allowed(), 30);
        w.on_resource_shortage(0);
        assert_eq!(w.limit(), MIN_WINDOW);
    }

    #[test]
    fn fd_budget_is_positive_and_below_the_limit() {
        let b = fd_budget();
        let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert!(b >= MIN_WINDOW);
        if let Some(cur) = lim.current {
            assert!((b as u64) < cur, "{b} < {cur}");
            assert_eq!(
                lim.current, lim.maximum,
                "soft limit raised to the hard one"
            );
        }
    }

    #[test]
    fn banner_wait_follows_the_connection_rtt_up_to_the_cap() {
        let cap = Duration::from_millis(300);
        assert_eq!(
            banner_wait(Duration::from_micros(100), cap),
            Duration::from_micros(100_400)
        );
        assert_eq!(
            banner_wait(Duration::from_millis(20), cap),
            Duration::from_millis(180)
        );
        assert_eq!(banner_wait(Duration::from_millis(80), cap), cap);
        assert_eq!(
            banner_wait(Duration::from_millis(1), Duration::from_millis(30)),
            Duration::from_millis(30)
        );
        assert_eq!(
            banner_wait(Duration::from_millis(1), Duration::ZERO),
            Duration::ZERO
        );
    }
}
