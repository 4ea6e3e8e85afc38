//! Full 65535-port TCP scans between two namespaces: portwall's probe against
//! `nmap -sT -p- -T4 -Pn` on the same server, in the same run.
//!
//!     cargo bench -p probe --bench full_scan
//!
//! Two servers: a *mixed* one (open listeners, a handful of ports behind a drop rule,
//! every other port closed) and an *answering* one (open or closed, nothing
//! filtered). Each scan of ours runs `RUNS` times (the best and the median are
//! shown, with the CPU time the process used); nmap runs once per server (it takes
//! seconds). Every port's verdict is compared between the two tools and mismatches
//! are printed. Runs as root. The machine's load average is printed first: both
//! tools are CPU-bound here (the kernel's work for a SYN and its answer, on both
//! ends, dominates), so other work on the machine shows in the numbers.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{nft, nmap, runtime, tcp_listen, BANNER};
use probe::{PortList, ProbeReport, ProbeSpec, Protocol};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use testns::Pair;

const RUNS: usize = 5;

/// Open ports: (port, banner). Services that talk first (SSH, SMTP, FTP) and services
/// that wait for a request (HTTP, databases), spread over the whole range.
const OPEN: &[(u16, Option<&str>)] = &[
    (21, Some("220 ftp ready")),
    (22, Some(BANNER)),
    (25, Some("220 mail.example ESMTP")),
    (80, None),
    (443, None),
    (3306, None),
    (5432, None),
    (6379, None),
    (8080, None),
    (8443, None),
    (9000, None),
    (27017, None),
    (30022, Some(BANNER)),
    (44444, None),
    (60000, Some("hello")),
    (65535, Some("+OK ready")),
];

/// Ports behind a drop rule in the mixed scenario (a typical "no Windows, no
/// databases from outside" rule set).
const DROPPED: &[u16] = &[135, 139, 445, 1433, 3389, 5900, 11211];

struct Measure {
    tool: String,
    times: Vec<Duration>,
}

fn verdicts_of(report: &ProbeReport, addr: IpAddr) -> BTreeMap<u16, String> {
    report
        .results
        .iter()
        .filter(|r| r.address == addr)
        .map(|r| (r.port, r.state.as_str().to_string()))
        .collect()
}

fn scenario(name: &str, dropped: &[u16]) -> (Vec<Measure>, usize) {
    let pair = Pair::new();
    for &(port, banner) in OPEN {
        tcp_listen(&pair.server, port, banner);
    }
    if !dropped.is_empty() {
        let list: Vec<String> = dropped.iter().map(|p| p.to_string()).collect();
        nft(
            &pair.server,
            &format!(
                "table inet t {{\n chain input {{\n  type filter hook input priority 0;\n  tcp dport {{ {} }} drop\n }}\n}}\n",
                list.join(", ")
            ),
        );
    }
    let addr: IpAddr = pair.server_addr.v4.parse().unwrap();
    let spec = ProbeSpec::new(addr.to_string(), PortList::all(), Protocol::Tcp);

    let mut ours = Measure {
        tool: "portwall probe --all".into(),
        times: Vec::new(),
    };
    let mut last = None;
    for _ in 0..RUNS {
        let cpu = cpu_seconds();
        let report = pair.client.run(|| {
            let rt = runtime();
            let t = Instant::now();
            let r = rt.block_on(probe::probe(&spec, |_, _| {})).expect("probe");
            (r, t.elapsed())
        });
        let cpu = cpu_seconds() - cpu;
        ours.times.push(report.1);
        let s = &report.0.stats;
        eprintln!(
            "  [{name}] portwall: {:.3} s ({cpu:.2} s CPU), {} probes, {} retransmissions, {} losses, max {} in flight (limit {}), timeout {:?}",
            report.1.as_secs_f64(),
            s.probes,
            s.retransmissions,
            s.losses,
            s.max_in_flight,
            s.concurrency_limit,
            s.timeout
        );
        last = Some(report.0);
    }
    let report = last.unwrap();
    let summary = report.summary;
    assert_eq!(
        summary.open,
        OPEN.len(),
        "[{name}] open ports found by portwall"
    );
    assert_eq!(
        summary.filtered,
        dropped.len(),
        "[{name}] filtered ports found by portwall"
    );

    let t = Instant::now();
    let theirs = nmap(&pair.client, addr, Protocol::Tcp, "1-65535", &["-T4"]);
    let nmap_time = t.elapsed();
    eprintln!("  [{name}] nmap: {:.3} s", nmap_time.as_secs_f64());
    let mine = verdicts_of(&report, addr);
    let mut mismatches = 0;
    for port in 1..=65535u16 {
        let a = mine.get(&port).map(String::as_str).unwrap_or("missing");
        let b = theirs.get(&port).map(String::as_str).unwrap_or("missing");
        if a != b {
            mismatches += 1;
            if mismatches <= 20 {
                println!("  [{name}] MISMATCH port {port}: portwall {a}, nmap {b}");
            }
        }
    }
    println!(
        "[{name}] {} open, {} closed, {} filtered per portwall; {} verdicts differ from nmap",
        summary.open, summary.closed, summary.filtered, mismatches
    );
    (
        vec![
            ours,
            Measure {
                tool: "nmap -sT -p- -T4 -Pn".into(),
                times: vec![nmap_time],
            },
        ],
        mismatches,
    )
}

/// CPU time (user + system) this process has used, from /proc (10 ms resolution).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // Clock ticks: 100 per second on Linux.
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

fn main() {
    let started = Instant::now();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at start: {} ({} CPUs)",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rows = Vec::new();
    let mut total_mismatches = 0;
    for (name, dropped) in [("mixed", DROPPED), ("answering", &[][..])] {
        let (measures, mismatches) = scenario(name, dropped);
        total_mismatches += mismatches;
        rows.push((name, measures));
    }
    println!();
    println!(
        "{:<10} {:<24} {:>9} {:>9} {:>8}",
        "SCENARIO", "TOOL", "BEST s", "MEDIAN s", "RATIO"
    );
    for (name, measures) in &rows {
        let nmap_t = median(&measures[1].times).as_secs_f64();
        for m in measures {
            let best = m.times.iter().min().unwrap().as_secs_f64();
            let med = median(&m.times).as_secs_f64();
            println!(
                "{:<10} {:<24} {:>9.3} {:>9.3} {:>7.1}x",
                name,
                m.tool,
                best,
                med,
                nmap_t / med
            );
        }
    }
    println!("(RATIO: nmap's time / this tool's median time; {RUNS} runs of portwall, 1 of nmap per scenario)");
    println!(
        "total verdict mismatches: {total_mismatches}; bench took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(total_mismatches, 0, "portwall and nmap disagree");
}
