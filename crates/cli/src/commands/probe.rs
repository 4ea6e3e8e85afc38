//! `portwall probe HOST PORTS`: is a port reachable from here? (what `telnet host
//! port` answers, for many ports at once, TCP or UDP, with nmap's verdicts).

use crate::output::{print_json, print_table, right_align, table};
use crate::{exit, Global};
use anyhow::{Context, Result};
use probe::{PortList, PortResult, PortState, ProbeError, ProbeReport, ProbeSpec, Protocol};
use serde::Serialize;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Scans of more than this many ports leave closed ports (and large groups of
/// filtered ones) out of the table, like nmap's "Not shown: N closed ports", unless
/// `--show-closed`.
const LIST_CLOSED_UP_TO: usize = 25;
/// The progress bar appears only once a probe has run this long.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
#[command(after_help = "\
States: open (the connection was accepted, or the UDP service replied); closed (actively \
refused: TCP reset, or ICMP port unreachable / administratively prohibited); filtered (no \
answer, retry included: a firewall drops it); open|filtered (UDP only: silence, which UDP \
cannot tell from a service that ignores the probe).

Exit status: 0 probed (and every --expect met), 1 an expectation failed or nothing could be \
probed, 2 bad input.

Examples:
  portwall probe 203.0.113.10 22
  portwall probe server.example 22,80,443,8000-8100
  portwall probe 2001:db8::10 --all
  portwall probe 203.0.113.10 53,123 --udp
  portwall probe 203.0.113.10 5432 --expect closed")]
pub struct ProbeArgs {
    /// The host: an IPv4 or IPv6 address, or a name (every address it resolves to,
    /// IPv4 and IPv6, is probed).
    pub host: String,
    /// The ports: 22, or 22,80,443,8000-8100 (or --all).
    #[arg(conflicts_with = "all")]
    pub ports: Option<String>,
    /// Probe all 65535 ports.
    #[arg(long)]
    pub all: bool,
    /// Probe UDP ports.
    #[arg(long, conflicts_with = "tcp")]
    pub udp: bool,
    /// Probe TCP ports (the default).
    #[arg(long)]
    pub tcp: bool,
    /// The longest a probe waits for an answer, in milliseconds. Below it the wait
    /// adapts to the measured round trips (default: 2000).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=300_000))]
    pub timeout: Option<u64>,
    /// Exit 1 unless every probed port is in this state. `open`; `closed` means
    /// "not open": refused (closed) or unanswered (filtered) — a silent UDP port
    /// (open|filtered) may be open, so it does not count; `filtered`;
    /// `open|filtered` (UDP silence).
    #[arg(long, value_name = "STATE", value_parser = parse_expect)]
    pub expect: Option<Expect>,
    /// List every port. Scans of more than 25 ports leave out closed ports, and
    /// filtered or open|filtered ones when there are more than 25 of them.
    #[arg(long)]
    pub show_closed: bool,
    /// The longest an open TCP port may take to send its first line, in
    /// milliseconds (0: do not wait). The wait adapts below it: 100 ms plus four
    /// round trips of the connection.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = probe::DEFAULT_BANNER_WAIT.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(0..=60_000)
    )]
    pub banner_wait: u64,
}

/// What `--expect` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    Open,
    /// Not open: closed or filtered.
    Closed,
    Filtered,
    #[serde(rename = "open|filtered")]
    OpenFiltered,
}

impl Expect {
    /// Whether a port in `state` meets the expectation.
    pub fn met_by(self, state: PortState) -> bool {
        match self {
            Expect::Open => state == PortState::Open,
            Expect::Closed => matches!(state, PortState::Closed | PortState::Filtered),
            Expect::Filtered => state == PortState::Filtered,
            Expect::OpenFiltered => state == PortState::OpenFiltered,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Expect::Open => "open",
            Expect::Closed => "not open (closed or filtered)",
            Expect::Filtered => "filtered",
            Expect::OpenFiltered => "open|filtered",
        }
    }
}

fn parse_expect(s: &str) -> Result<Expect, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "open" => Ok(Expect::Open),
        "closed" | "not-open" | "not open" => Ok(Expect::Closed),
        "filtered" => Ok(Expect::Filtered),
        "open|filtered" | "open-filtered" => Ok(Expect::OpenFiltered),
        _ => Err(format!(
            "{s:?} is not a port state: expected open, closed (= not open), filtered or open|filtered"
        )),
    }
}

/// The outcome of `--expect`, in the JSON output.
#[derive(Debug, Serialize)]
struct ExpectOutcome {
    state: Expect,
    met: bool,
    /// The ports that did not meet it.
    failed: Vec<Unmet>,
}

#[derive(Debug, Serialize)]
struct Unmet {
    address: IpAddr,
    port: Option<u16>,
    state: String,
}

#[derive(Serialize)]
struct JsonOut<'a> {
    #[serde(flatten)]
    report: &'a ProbeReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    expect: Option<ExpectOutcome>,
}

pub fn run(global: &Global, args: &ProbeArgs) -> Result<u8> {
    let ports = match (&args.ports, args.all) {
        (_, true) => PortList::all(),
        (Some(p), false) => p
            .parse::<PortList>()
            .map_err(|e| exit::usage(format!("bad port list: {e}")))?,
        (None, false) => {
            return Err(exit::usage(
                "give the ports to probe (22, or 22,80,443,8000-8100) or --all",
            ))
        }
    };
    let protocol = if args.udp {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let mut spec = ProbeSpec::new(args.host.clone(), ports, protocol);
    if let Some(ms) = args.timeout {
        spec.timeouts = spec.timeouts.with_max(Duration::from_millis(ms));
    }
    spec.banner_wait = Duration::from_millis(args.banner_wait);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut bar = ProgressBar::new(!global.json);
    let report = runtime.block_on(probe::probe(&spec, |done, total| bar.update(done, total)));
    bar.finish();
    let report = match report {
        Ok(r) => r,
        Err(e) if e.is_bad_input() => return Err(exit::usage(e.to_string())),
        Err(e @ ProbeError::Unreachable { .. }) => {
            return Err(exit::with_code(exit::FAILURE, e.to_string()))
        }
        Err(e) => return Err(e.into()),
    };

    let expect = args.expect.map(|want| check(want, &report));
    let met = !matches!(expect, Some(ExpectOutcome { met: false, .. }));
    if global.json {
        print_json(&JsonOut {
            report: &report,
            expect,
        })?;
        return Ok(if met { exit::OK } else { exit::FAILURE });
    }
    render(&report, args);
    match expect {
        Some(e) if !e.met => Err(exit::with_code(exit::FAILURE, unmet_message(&e, &report))),
        _ => Ok(exit::OK),
    }
}

/// Checks every probed (address, port) against `want`. An address that could not
/// be probed at all does not meet any expectation.
fn check(want: Expect, report: &ProbeReport) -> ExpectOutcome {
    let mut failed: Vec<Unmet> = report
        .results
        .iter()
        .filter(|r| !want.met_by(r.state))
        .map(|r| Unmet {
            address: r.address,
            port: Some(r.port),
            state: r.state.to_string(),
        })
        .collect();
    failed.extend(report.unreachable.iter().map(|u| Unmet {
        address: u.address,
        port: None,
        state: format!("not probed: {}", u.error),
    }));
    ExpectOutcome {
        state: want,
        met: failed.is_empty(),
        failed,
    }
}

fn unmet_message(e: &ExpectOutcome, report: &ProbeReport) -> String {
    let proto = report.protocol;
    let shown: Vec<String> = e
        .failed
        .iter()
        .take(5)
        .map(|u| match u.port {
            Some(p) => format!("{p}/{proto} on {} is {}", u.address, u.state),
            None => format!("{} was {}", u.address, u.state),
        })
        .collect();
    let more = e.failed.len().saturating_sub(shown.len());
    let mut msg = format!("expected {}, but {}", e.state.describe(), shown.join("; "));
    if more > 0 {
        msg.push_str(&format!(" (and {more} more)"));
    }
    if e.state == Expect::Closed && e.failed.iter().any(|u| u.state == "open|filtered") {
        msg.push_str(": a silent UDP port may be open; --expect open|filtered accepts silence");
    }
    msg
}

fn render(report: &ProbeReport, args: &ProbeArgs) {
    for u in &report.unreachable {
        eprintln!("portwall: cannot probe {}: {}", u.address, u.error);
    }
    let folded = folded_states(report, args);
    let named = report
        .host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
        .is_err();
    let mut t = table([
        "HOST/ADDRESS",
        "PORT",
        "PROTO",
        "STATE",
        "RTT",
        "BANNER/SERVICE",
    ]);
    let mut rows = 0;
    for r in report.results.iter().filter(|r| !folded.contains(&r.state)) {
        rows += 1;
        t.add_row(row(r, named.then_some(report.host.as_str())));
    }
    right_align(&mut t, &[1, 4]);
    if rows > 0 {
        print_table(&t);
    }
    let not_shown: Vec<String> = folded
        .iter()
        .map(|&st| (st, report.results.iter().filter(|r| r.state == st).count()))
        .filter(|&(_, n)| n > 0)
        .map(|(st, n)| format!("{n} {st} port{}", if n == 1 { "" } else { "s" }))
        .collect();
    if !not_shown.is_empty() {
        println!(
            "Not shown: {} (--show-closed lists them)",
            not_shown.join(", ")
        );
    }
    println!("{}", summary_line(report));
}

/// The states left out of the table: in scans of more than [`LIST_CLOSED_UP_TO`]
/// ports (and with `--all`), closed ports, and filtered or open|filtered ports when
/// there are more than that many of them (like nmap's "Not shown: N filtered
/// ports"). Open ports are always listed; `--show-closed` lists everything.
fn folded_states(report: &ProbeReport, args: &ProbeArgs) -> Vec<PortState> {
    if args.show_closed || !(args.all || report.ports.len() > LIST_CLOSED_UP_TO) {
        return Vec::new();
    }
    let s = &report.summary;
    let mut folded = vec![PortState::Closed];
    if s.filtered > LIST_CLOSED_UP_TO {
        folded.push(PortState::Filtered);
    }
    if s.open_filtered > LIST_CLOSED_UP_TO {
        folded.push(PortState::OpenFiltered);
    }
    folded
}

fn row(r: &PortResult, host: Option<&str>) -> Vec<String> {
    let who = match host {
        Some(h) => format!("{h} ({})", r.address),
        None => r.address.to_string(),
    };
    let detail = r
        .banner
        .clone()
        .or_else(|| r.service.map(str::to_string))
        .unwrap_or_default();
    vec![
        who,
        r.port.to_string(),
        r.protocol.to_string(),
        r.state.to_string(),
        r.rtt.map(format_rtt).unwrap_or_else(|| "-".into()),
        detail,
    ]
}

fn format_rtt(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

fn summary_line(report: &ProbeReport) -> String {
    let s = &report.summary;
    let mut parts = vec![
        format!("{} open", s.open),
        format!("{} closed", s.closed),
        format!("{} filtered", s.filtered),
    ];
    if report.protocol == Protocol::Udp || s.open_filtered > 0 {
        parts.push(format!("{} open|filtered", s.open_filtered));
    }
    let probed = report.addresses.len() - report.unreachable.len();
    format!(
        "{}: {} ({} {} port{} on {} address{}, {:.2} s)",
        report.host,
        parts.join(", "),
        report.ports.len(),
        report.protocol,
        if report.ports.len() == 1 { "" } else { "s" },
        probed,
        if probed == 1 { "" } else { "es" },
        report.elapsed.as_secs_f64()
    )
}

/// A progress bar on stderr for long runs only: it appears after
/// [`PROGRESS_AFTER`], and only when both stdout and stderr are terminals (not in
/// pipes, logs or `--json`).
struct ProgressBar {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    shown: bool,
}

impl ProgressBar {
    fn new(wanted: bool) -> ProgressBar {
        let tty = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let bar = (wanted && tty).then(|| {
            let b = indicatif::ProgressBar::hidden();
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {pos}/{len} ports decided [{bar:40}] {percent}% {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        ProgressBar {
            bar,
            started: Instant::now(),
            shown: false,
        }
    }

    fn update(&mut self, done: usize, total: usize) {
        let Some(b) = &self.bar else { return };
        if !self.shown {
            if self.started.elapsed() < PROGRESS_AFTER || done >= total {
                return;
            }
            b.set_length(total as u64);
            b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            b.enable_steady_tick(Duration::from_millis(100));
            self.shown = true;
        }
        b.set_position(done as u64);
    }

    fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_semantics() {
        use PortState::*;
        assert!(Expect::Open.met_by(Open));
        assert!(!Expect::Open.met_by(OpenFiltered));
        assert!(Expect::Closed.met_by(Closed) && Expect::Closed.met_by(Filtered));
        assert!(!Expect::Closed.met_by(Open) && !Expect::Closed.met_by(OpenFiltered));
        assert!(Expect::Filtered.met_by(Filtered) && !Expect::Filtered.met_by(Closed));
        assert!(
            Expect::OpenFiltered.met_by(OpenFiltered) && !Expect::OpenFiltered.met_by(Filtered)
        );
    }

    #[test]
    fn expect_parsing() {
        assert_eq!(parse_expect("closed"), Ok(Expect::Closed));
        assert_eq!(parse_expect("not-open"), Ok(Expect::Closed));
        assert_eq!(parse_expect("OPEN"), Ok(Expect::Open));
        assert_eq!(parse_expect("open|filtered"), Ok(Expect::OpenFiltered));
        let e = parse_expect("shut").unwrap_err();
        assert!(e.contains("\"shut\"") && e.contains("open, closed"), "{e}");
    }

    #[test]
    fn rtt_format() {
        assert_eq!(format_rtt(Duration::from_micros(123)), "0.12 ms");
        assert_eq!(format_rtt(Duration::from_millis(42)), "42 ms");
        assert_eq!(format_rtt(Duration::from_millis(1500)), "1.50 s");
    }
}
