//! Address-list benchmarks (#16), printed as one table with ratios (run as
//! root: `cargo bench -p portwall --bench lists`). Everything runs in network
//! namespaces this benchmark creates and removes; the machine's own firewall
//! is never touched. Loops are bounded in count, and every command in time.
//!
//! The list: 1,000,000 entries made by a seeded RNG (the same every run):
//! ~90 % IPv4 /32, ~8 % IPv4 networks /16-/30, ~2 % IPv6 /48-/64, none
//! overlapping the addresses of testns's `Routed` hosts (nor 192.0.2.0/24
//! and 2001:db8::/32). The whole run takes 5-7 minutes on a 2-core VM.
//!
//! 1. Loading it: `portwall list load` end to end (the real binary, the list
//!    named by a rule, portwall enabled) vs `ipset restore -exist` into two
//!    `hash:net` sets (v4, v6) vs `nft -f` of a hand-written `table inet` with
//!    two `auto-merge` interval sets (and one rule looking each up).
//! 2. Replacing it with a version where 1 % changed (1 % removed, 1 % new):
//!    `portwall list load` vs the atomic replacement ipset users do (restore a
//!    new set, `ipset swap`, destroy the old) vs the atomic one with nft
//!    (`flush set` + `add element` of the whole new list in one `nft -f`).
//! 3. One entry added to the 1,000,000-entry list: `portwall list add` vs
//!    `ipset add` vs `nft add element`, median of 20 each.
//! 4. Forwarding rate through a gateway whose OS firewall has `deny routed
//!    from @block` with the 1,000,000-entry list, vs the same gateway with no
//!    rules (the UDP flood of the `os_firewall` bench: every packet is `new`
//!    to conntrack, so every packet goes through the set lookups).
//!
//! Competing tools that run past their time bound are killed and shown as
//! "> N s". Progress goes to stderr, the table to stdout.
//! `cargo bench -p portwall --bench lists -- lists|forwarding` runs one part.

#[path = "os_firewall.rs"]
#[allow(dead_code)]
mod os_firewall;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testns::{Netns, Routed};

const PORTWALL: &str = env!("CARGO_BIN_EXE_portwall");

/// The list's size, and the share of it that changes in measurement 2.
const ENTRIES: usize = 1_000_000;
const CHANGED: usize = ENTRIES / 100;
/// The RNG's seed: the same list every run.
const SEED: u64 = 16;
/// Rounds of the full loads (the tools take turns), and of the 1 % change.
const LOAD_RUNS: usize = 3;
const CHANGE_RUNS: usize = 3;
/// Single-entry additions per tool (the median is printed).
const ADDS: usize = 20;
/// Floods per gateway (the median is printed); each is bounded to 2 s.
const FLOODS: usize = 9;
/// Bounds: one load or replacement (and one `portwall list add`: portwall is
/// not killed mid-change at the competitors' bound); one single-entry addition
/// of ipset or nft; all the single-entry additions of one tool together.
const LOAD_LIMIT: Duration = Duration::from_secs(120);
const ADD_LIMIT: Duration = Duration::from_secs(10);
const ADDS_BUDGET: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The data

/// One list entry: an address (IPv4 in the low 32 bits) and a prefix length.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Net {
    v6: bool,
    addr: u128,
    len: u8,
}

impl Net {
    fn text(&self) -> String {
        if self.v6 {
            format!("{}/{}", Ipv6Addr::from(self.addr), self.len)
        } else if self.len == 32 {
            Ipv4Addr::from(self.addr as u32).to_string()
        } else {
            format!("{}/{}", Ipv4Addr::from(self.addr as u32), self.len)
        }
    }

    /// Whether it overlaps `other` (of the same family).
    fn overlaps(&self, other: &Net) -> bool {
        let len = self.len.min(other.len);
        let bits = if self.v6 { 128 } else { 32 };
        let mask = |a: u128| if len == 0 { 0 } else { a >> (bits - len) };
        self.v6 == other.v6 && mask(self.addr) == mask(other.addr)
    }
}

fn v4(a: [u8; 4], len: u8) -> Net {
    Net {
        v6: false,
        addr: u32::from_be_bytes(a) as u128,
        len,
    }
}

/// The networks of testns's `Routed` hosts (and the documentation ranges),
/// which the list must not cover: the forwarding flood comes from there.
fn reserved() -> [Net; 4] {
    [
        v4([198, 51, 100, 0], 24),
        v4([203, 0, 113, 0], 24),
        v4([192, 0, 2, 0], 24),
        Net {
            v6: true,
            addr: 0x2001_0db8u128 << 96,
            len: 32,
        },
    ]
}

/// One random entry: ~90 % IPv4 /32, ~8 % IPv4 /16-/30, ~2 % IPv6 /48-/64,
/// host bits cleared, never in a reserved network.
fn random_net(rng: &mut StdRng) -> Net {
    loop {
        let kind = rng.gen_range(0..100);
        let net = if kind < 98 {
            let len = if kind < 90 {
                32
            } else {
                rng.gen_range(16..=30)
            };
            let a: u32 = rng.gen();
            // Unicast, not 0/8 and not loopback.
            let first = a >> 24;
            if first == 0 || first == 127 || first >= 224 {
                continue;
            }
            let a = if len == 32 { a } else { a & !(u32::MAX >> len) };
            Net {
                v6: false,
                addr: a as u128,
                len,
            }
        } else {
            let len = rng.gen_range(48..=64);
            // Global unicast, 2000::/3.
            let a: u128 = (rng.gen::<u128>() >> 3) | (1u128 << 125);
            Net {
                v6: true,
                addr: a & !(u128::MAX >> len),
                len,
            }
        };
        if !reserved().iter().any(|r| r.overlaps(&net)) {
            return net;
        }
    }
}

/// The three lists the benchmark uses: the base list, the same with 1 %
/// removed and 1 % new, and IPv4 /32s in neither, nor in a network of
/// either (for single additions).
struct Data {
    base: Vec<Net>,
    changed: Vec<Net>,
    singles: Vec<Net>,
}

fn generate() -> Data {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut seen = HashSet::with_capacity(ENTRIES + CHANGED + ADDS);
    let mut fresh = |rng: &mut StdRng, v4_host: bool| loop {
        let n = random_net(rng);
        if (!v4_host || (!n.v6 && n.len == 32)) && seen.insert(n) {
            return n;
        }
    };
    let base: Vec<Net> = (0..ENTRIES).map(|_| fresh(&mut rng, false)).collect();
    let mut gone = HashSet::with_capacity(CHANGED);
    while gone.len() < CHANGED {
        gone.insert(rng.gen_range(0..ENTRIES));
    }
    let mut changed: Vec<Net> = base
        .iter()
        .enumerate()
        .filter(|(i, _)| !gone.contains(i))
        .map(|(_, n)| *n)
        .collect();
    changed.extend((0..CHANGED).map(|_| fresh(&mut rng, false)));
    // A single addition must change the kernel's set for every tool: an
    // address inside a network of either list would leave portwall's merged
    // ranges and nft's auto-merged set as they are.
    let networks: Vec<Net> = base
        .iter()
        .chain(&changed[ENTRIES - CHANGED..])
        .filter(|n| !n.v6 && n.len < 32)
        .copied()
        .collect();
    let mut singles = Vec::with_capacity(ADDS);
    while singles.len() < ADDS {
        let n = fresh(&mut rng, true);
        if !networks.iter().any(|w| w.overlaps(&n)) {
            singles.push(n);
        }
    }
    Data {
        base,
        changed,
        singles,
    }
}

/// The files each tool loads, written once.
struct Files {
    /// `portwall list load`: one entry a line.
    pw_base: PathBuf,
    pw_changed: PathBuf,
    /// `ipset restore`: the sets created and filled.
    ipset_base: PathBuf,
    /// `ipset restore`: a new set filled, swapped in, the old one destroyed.
    ipset_swap_changed: PathBuf,
    ipset_swap_base: PathBuf,
    /// `nft -f`: the hand-written table.
    nft_base: PathBuf,
    /// `nft -f`: `flush set` + `add element` of the whole list.
    nft_swap_changed: PathBuf,
    nft_swap_base: PathBuf,
}

const IPSET_OPTS: &str = "hashsize 1048576 maxelem 4194304";

fn ipset_fill(s: &mut String, v4: &str, v6: &str, nets: &[Net]) {
    writeln!(s, "create {v4} hash:net family inet {IPSET_OPTS}").unwrap();
    writeln!(s, "create {v6} hash:net family inet6 {IPSET_OPTS}").unwrap();
    for n in nets {
        let set = if n.v6 { v6 } else { v4 };
        // ipset's hash:net takes /32 written out.
        if n.v6 || n.len != 32 {
            writeln!(s, "add {set} {}", n.text()).unwrap();
        } else {
            writeln!(s, "add {set} {}/32", n.text()).unwrap();
        }
    }
}

fn nft_elements(s: &mut String, nets: &[Net], v6: bool) {
    let mut first = true;
    for n in nets.iter().filter(|n| n.v6 == v6) {
        if !first {
            s.push_str(",\n");
        }
        first = false;
        s.push_str(&n.text());
    }
    s.push('\n');
}

fn write_files(dir: &Path, data: &Data) -> Files {
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let pw = |nets: &[Net]| {
        let mut s = String::with_capacity(nets.len() * 16);
        for n in nets {
            s.push_str(&n.text());
            s.push('\n');
        }
        s
    };
    let mut ipset_base = String::new();
    ipset_fill(&mut ipset_base, "block4", "block6", &data.base);
    let ipset_swap = |nets: &[Net]| {
        let mut s = String::new();
        ipset_fill(&mut s, "block4-new", "block6-new", nets);
        s.push_str("swap block4-new block4\nswap block6-new block6\n");
        s.push_str("destroy block4-new\ndestroy block6-new\n");
        s
    };
    let mut nft_base = String::from("table inet hand {\n");
    for (name, ty, v6) in [
        ("block4", "ipv4_addr", false),
        ("block6", "ipv6_addr", true),
    ] {
        writeln!(
            nft_base,
            "  set {name} {{\n    type {ty}\n    flags interval\n    auto-merge\n    elements = {{"
        )
        .unwrap();
        nft_elements(&mut nft_base, &data.base, v6);
        nft_base.push_str("    }\n  }\n");
    }
    nft_base.push_str(
        "  chain input {\n    type filter hook input priority 0; policy accept;\n    ip saddr @block4 drop\n    ip6 saddr @block6 drop\n  }\n}\n",
    );
    let nft_swap = |nets: &[Net]| {
        let mut s = String::from("flush set inet hand block4\nflush set inet hand block6\n");
        for (name, v6) in [("block4", false), ("block6", true)] {
            writeln!(s, "add element inet hand {name} {{").unwrap();
            nft_elements(&mut s, nets, v6);
            s.push_str("}\n");
        }
        s
    };
    Files {
        pw_base: write("base.list", pw(&data.base)),
        pw_changed: write("changed.list", pw(&data.changed)),
        ipset_base: write("base.ipset", ipset_base),
        ipset_swap_changed: write("swap-changed.ipset", ipset_swap(&data.changed)),
        ipset_swap_base: write("swap-base.ipset", ipset_swap(&data.base)),
        nft_base: write("base.nft", nft_base),
        nft_swap_changed: write("swap-changed.nft", nft_swap(&data.changed)),
        nft_swap_base: write("swap-base.nft", nft_swap(&data.base)),
    }
}

// ---------------------------------------------------------------------------
// Running things, bounded

/// What one timed command did.
#[derive(Clone, Debug)]
enum Outcome {
    Took(Duration),
    /// Killed at its bound.
    TimedOut(Duration),
    /// Exited with an error: its message.
    Failed(String),
}

impl Outcome {
    fn time(&self) -> Option<Duration> {
        match self {
            Outcome::Took(d) => Some(*d),
            _ => None,
        }
    }
}

/// Runs `c` (stdin empty, output captured) and times it until it exits, or
/// kills it at `limit`.
fn timed(c: &mut Command, limit: Duration) -> Outcome {
    timed_output(c, limit).0
}

/// A timed `portwall --json ...` (see [`portwall`]): its outcome, and how it
/// reached the kernel (`applied.mode` of its JSON: elements, replace, ...)
/// pushed on `modes`.
fn timed_portwall(c: &mut Command, limit: Duration, modes: &mut Vec<String>) -> Outcome {
    let (o, stdout) = timed_output(c, limit);
    if let Outcome::Took(_) = o {
        let mode = serde_json::from_str::<serde_json::Value>(&stdout)
            .ok()
            .and_then(|v| {
                let applied = v.get("applied")?;
                Some(match applied.get("mode").and_then(|m| m.as_str()) {
                    Some(m) => m.to_string(),
                    None => "kernel unchanged".into(),
                })
            })
            .unwrap_or_else(|| "?".into());
        modes.push(mode);
    }
    o
}

/// How many times each mode: "elements x19, replace x1".
fn mode_counts(modes: &[String]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for m in modes {
        match counts.iter_mut().find(|(k, _)| k == m) {
            Some((_, n)) => *n += 1,
            None => counts.push((m.clone(), 1)),
        }
    }
    let parts: Vec<String> = counts.iter().map(|(m, n)| format!("{m} x{n}")).collect();
    parts.join(", ")
}

fn timed_output(c: &mut Command, limit: Duration) -> (Outcome, String) {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = match c.spawn() {
        Ok(child) => child,
        Err(e) => return (Outcome::Failed(format!("{c:?}: {e}")), String::new()),
    };
    let pid = child.id() as i32;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let outcome = match rx.recv_timeout(limit) {
        Ok(status) => {
            let took = start.elapsed();
            match status {
                Ok(s) if s.success() => Outcome::Took(took),
                Ok(s) => Outcome::Failed(format!("{s}")),
                Err(e) => Outcome::Failed(e.to_string()),
            }
        }
        Err(_) => {
            // `ip netns exec` execs the program: this is its pid.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = rx.recv();
            Outcome::TimedOut(limit)
        }
    };
    let (stdout, stderr) = (readers.0.join().unwrap(), readers.1.join().unwrap());
    let outcome = match outcome {
        Outcome::Failed(status) => Outcome::Failed(format!(
            "{c:?} failed ({status}): {}{}",
            stdout.trim(),
            stderr.trim()
        )),
        o => o,
    };
    (outcome, stdout)
}

/// Runs `c`, which must succeed (setup, not measured).
fn run_ok(c: &mut Command) -> String {
    let out = c.stdin(Stdio::null()).output().expect("run");
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (up to 10 s) until the machine is idle: a deleted namespace is torn
/// down by the kernel in the background, which with a million-element set in
/// it takes a core for a while, and would slow whatever is timed meanwhile.
fn settle() {
    fn busy_idle() -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let idle = cpu[3] + cpu.get(4).copied().unwrap_or(0);
        (cpu.iter().sum::<u64>() - idle, idle)
    }
    let start = Instant::now();
    loop {
        let (b0, i0) = busy_idle();
        std::thread::sleep(Duration::from_millis(250));
        let (b1, i1) = busy_idle();
        let (busy, idle) = (b1 - b0, i1 - i0);
        if busy * 10 <= (busy + idle) || start.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    if start.elapsed() > Duration::from_secs(2) {
        eprintln!(
            "  (waited {:.1} s for the machine to settle)",
            secs(start.elapsed())
        );
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The median of the times of `runs`; a timeout or failure sorts last.
fn median(runs: &[Outcome]) -> Outcome {
    let mut v = runs.to_vec();
    let key = |o: &Outcome| match o {
        Outcome::Took(d) => (0, *d),
        Outcome::TimedOut(d) => (1, *d),
        Outcome::Failed(_) => (2, Duration::ZERO),
    };
    v.sort_by_key(key);
    v[v.len() / 2].clone()
}

fn show(o: &Outcome, unit_ms: bool) -> String {
    match o {
        Outcome::Took(d) if unit_ms => format!("{:.1} ms", secs(*d) * 1000.0),
        Outcome::Took(d) => format!("{:.2} s", secs(*d)),
        Outcome::TimedOut(d) => format!("> {:.0} s", secs(*d)),
        Outcome::Failed(_) => "failed".into(),
    }
}

/// portwall / other, as text ("< x" when the other ran into its bound).
fn ratio(pw: &Outcome, other: &Outcome) -> String {
    match (pw, other) {
        (Outcome::Took(a), Outcome::Took(b)) => format!("{:.2}", secs(*a) / secs(*b)),
        (Outcome::Took(a), Outcome::TimedOut(b)) => format!("< {:.3}", secs(*a) / secs(*b)),
        _ => "n/a".into(),
    }
}

fn progress(what: &str, o: &Outcome) {
    match o {
        Outcome::Failed(e) => eprintln!("  {what}: FAILED: {e}"),
        o => eprintln!("  {what}: {}", show(o, true)),
    }
}

// ---------------------------------------------------------------------------
// The tools

/// A namespace with portwall enabled and one rule naming the (empty) list
/// `block`; its config directory.
fn portwall_host(ns: &Netns, cfg: &Path, rules: &[&[&str]]) {
    std::fs::create_dir_all(cfg).unwrap();
    for args in rules {
        run_ok(
            ns.command(PORTWALL)
                .arg("--config-dir")
                .arg(cfg)
                .args(*args),
        );
    }
}

/// `portwall --json --config-dir CFG` in `ns`.
fn portwall(ns: &Netns, cfg: &Path) -> Command {
    let mut c = ns.command(PORTWALL);
    c.arg("--json").arg("--config-dir").arg(cfg);
    c
}

/// Everything a measurement keeps: one namespace per tool, with the list
/// loaded, and portwall's config directory.
struct Loaded {
    pw: Netns,
    cfg: PathBuf,
    ipset: Netns,
    nft: Netns,
}

struct Row {
    what: String,
    pw: String,
    ipset: String,
    other: String,
    ratio: String,
    target: String,
    met: String,
    /// How portwall reached the kernel in the runs of this row.
    modes: Option<String>,
}

fn loads(files: &Files, dir: &Path, rows: &mut Vec<Row>) -> Loaded {
    eprintln!(
        "[1/4] loading {ENTRIES} entries: portwall, ipset, nft take turns, {LOAD_RUNS} rounds"
    );
    let (mut pw, mut ipset, mut nft, mut modes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut kept = None;
    for round in 0..LOAD_RUNS {
        settle();
        let ns_pw = Netns::new();
        let cfg = dir.join(format!("cfg-{round}"));
        portwall_host(
            &ns_pw,
            &cfg,
            &[
                &["list", "create", "block"],
                &["deny", "from", "@block"],
                &["enable"],
            ],
        );
        settle();
        let o = timed_portwall(
            portwall(&ns_pw, &cfg)
                .args(["list", "load", "block"])
                .arg(&files.pw_base),
            LOAD_LIMIT,
            &mut modes,
        );
        progress(&format!("round {round}: portwall list load"), &o);
        pw.push(o);
        settle();
        let ns_ipset = Netns::new();
        let o = timed(
            ns_ipset
                .command("ipset")
                .args(["-exist", "restore", "-file"])
                .arg(&files.ipset_base),
            LOAD_LIMIT,
        );
        progress(&format!("round {round}: ipset restore"), &o);
        ipset.push(o);
        settle();
        let ns_nft = Netns::new();
        let o = timed(
            ns_nft.command("nft").arg("-f").arg(&files.nft_base),
            LOAD_LIMIT,
        );
        progress(&format!("round {round}: nft -f"), &o);
        nft.push(o);
        // The last round's namespaces stay for the next measurements.
        kept = Some(Loaded {
            pw: ns_pw,
            cfg,
            ipset: ns_ipset,
            nft: ns_nft,
        });
    }
    let (pw, ipset, nft) = (median(&pw), median(&ipset), median(&nft));
    let met = match (pw.time(), nft.time(), &nft) {
        (Some(p), Some(n), _) => p <= Duration::from_secs(2) && p <= n,
        (Some(p), None, Outcome::TimedOut(_)) => p <= Duration::from_secs(2),
        _ => false,
    };
    rows.push(Row {
        what: format!("1. load {ENTRIES} entries (median of {LOAD_RUNS})"),
        pw: show(&pw, false),
        ipset: show(&ipset, false),
        other: show(&nft, false),
        ratio: format!("{} / {}", ratio(&pw, &ipset), ratio(&pw, &nft)),
        target: "<= 2 s, <= nft".into(),
        met: yes(met),
        modes: Some(mode_counts(&modes)),
    });
    kept.expect("ran")
}

fn yes(met: bool) -> String {
    if met { "yes" } else { "NO" }.into()
}

fn change(files: &Files, l: &Loaded, rows: &mut Vec<Row>) {
    eprintln!("[2/4] replacing the list with 1 % changed ({CHANGED} out, {CHANGED} in), {CHANGE_RUNS} times each, alternating with the way back");
    let (mut pw, mut ipset, mut nft, mut modes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..CHANGE_RUNS {
        let forth = run % 2 == 0;
        let pick = |changed: &PathBuf, base: &PathBuf| if forth { changed } else { base }.clone();
        settle();
        let o = timed_portwall(
            portwall(&l.pw, &l.cfg)
                .args(["list", "load", "block"])
                .arg(pick(&files.pw_changed, &files.pw_base)),
            LOAD_LIMIT,
            &mut modes,
        );
        progress(&format!("run {run}: portwall list load"), &o);
        pw.push(o);
        settle();
        let o = timed(
            l.ipset
                .command("ipset")
                .args(["-exist", "restore", "-file"])
                .arg(pick(&files.ipset_swap_changed, &files.ipset_swap_base)),
            LOAD_LIMIT,
        );
        progress(&format!("run {run}: ipset restore + swap"), &o);
        ipset.push(o);
        settle();
        let o = timed(
            l.nft
                .command("nft")
                .arg("-f")
                .arg(pick(&files.nft_swap_changed, &files.nft_swap_base)),
            LOAD_LIMIT,
        );
        progress(&format!("run {run}: nft -f flush + add"), &o);
        nft.push(o);
    }
    let (pw, ipset, nft) = (median(&pw), median(&ipset), median(&nft));
    rows.push(Row {
        what: format!("2. replace, 1 % changed (median of {CHANGE_RUNS})"),
        pw: show(&pw, true),
        ipset: show(&ipset, true),
        other: show(&nft, true),
        ratio: format!("{} / {}", ratio(&pw, &ipset), ratio(&pw, &nft)),
        target: "<= 150 ms".into(),
        met: yes(pw.time().is_some_and(|t| t <= Duration::from_millis(150))),
        modes: Some(mode_counts(&modes)),
    });
}

/// Runs `one(i)` for i in 0..ADDS, each bounded by `limit`, all by
/// ADDS_BUDGET; stops at the first timeout or failure. The median of what ran.
/// `modes`: where to record portwall's apply modes (portwall's runs only).
fn adds(
    what: &str,
    limit: Duration,
    mut modes: Option<&mut Vec<String>>,
    mut one: impl FnMut(usize) -> Command,
) -> (Outcome, usize) {
    let start = Instant::now();
    let mut runs = Vec::new();
    for i in 0..ADDS {
        let o = match modes.as_deref_mut() {
            Some(m) => timed_portwall(&mut one(i), limit, m),
            None => timed(&mut one(i), limit),
        };
        let stop = !matches!(o, Outcome::Took(_));
        if let Outcome::Failed(e) = &o {
            eprintln!("  {what}: FAILED: {e}");
        }
        runs.push(o);
        if stop {
            break;
        }
        if start.elapsed() > ADDS_BUDGET {
            eprintln!(
                "  {what}: stopped after {} (over {:.0} s)",
                i + 1,
                secs(ADDS_BUDGET)
            );
            break;
        }
    }
    let last = runs.last().cloned().unwrap();
    let n = runs.len();
    let m = if matches!(last, Outcome::Took(_)) {
        median(&runs)
    } else {
        last
    };
    eprintln!("  {what}: median {} ({n} run(s))", show(&m, true));
    (m, n)
}

fn add_one(data: &Data, l: &Loaded, rows: &mut Vec<Row>) {
    eprintln!("[3/4] adding one entry to the {ENTRIES}-entry list, {ADDS} times each");
    settle();
    let mut modes = Vec::new();
    let (pw, n_pw) = adds("portwall list add", LOAD_LIMIT, Some(&mut modes), |i| {
        let mut c = portwall(&l.pw, &l.cfg);
        c.args(["list", "add", "block", &data.singles[i].text()]);
        c
    });
    settle();
    let (ipset, n_ipset) = adds("ipset add", ADD_LIMIT, None, |i| {
        let mut c = l.ipset.command("ipset");
        c.args(["add", "block4", &data.singles[i].text()]);
        c
    });
    settle();
    let (nft, n_nft) = adds("nft add element", ADD_LIMIT, None, |i| {
        let mut c = l.nft.command("nft");
        c.args([
            "add",
            "element",
            "inet",
            "hand",
            "block4",
            &format!("{{ {} }}", data.singles[i].text()),
        ]);
        c
    });
    let counts = if (n_pw, n_ipset, n_nft) == (ADDS, ADDS, ADDS) {
        format!("median of {ADDS}")
    } else {
        format!("median of {n_pw} / {n_ipset} / {n_nft}")
    };
    rows.push(Row {
        what: format!("3. add 1 entry to {ENTRIES} ({counts})"),
        pw: show(&pw, true),
        ipset: show(&ipset, true),
        other: show(&nft, true),
        ratio: format!("{} / {}", ratio(&pw, &ipset), ratio(&pw, &nft)),
        target: "<= 10 ms".into(),
        met: yes(pw.time().is_some_and(|t| t <= Duration::from_millis(10))),
        modes: Some(mode_counts(&modes)),
    });
}

fn forwarding(files: &Files, dir: &Path, rows: &mut Vec<Row>) {
    eprintln!("[4/4] forwarding: a gateway with `deny routed from @block` ({ENTRIES} entries) vs one with no rules");
    settle();
    // Both gateways: portwall enabled, routed traffic allowed by default.
    let with_list = Routed::new();
    let cfg = dir.join("gateway-list");
    portwall_host(
        &with_list.gateway,
        &cfg,
        &[
            &["default", "allow", "routed"],
            &["list", "create", "block"],
            &["list", "load", "block", files.pw_base.to_str().unwrap()],
            &["deny", "routed", "from", "@block"],
        ],
    );
    let t = Instant::now();
    let out = run_ok(portwall(&with_list.gateway, &cfg).args(["enable"]));
    eprintln!(
        "  gateway with the list: `portwall enable` took {:.2} s: {}",
        secs(t.elapsed()),
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    let no_rules = Routed::new();
    let cfg0 = dir.join("gateway-none");
    portwall_host(
        &no_rules.gateway,
        &cfg0,
        &[&["default", "allow", "routed"], &["enable"]],
    );
    settle();
    // Turn by turn: the VM's speed drifts over minutes.
    let (mut list_rates, mut none_rates) = (Vec::new(), Vec::new());
    for run in 0..FLOODS {
        let (_, _, a) = os_firewall::flood_rate(&with_list);
        let (_, _, b) = os_firewall::flood_rate(&no_rules);
        eprintln!(
            "  run {run}: with the list {:.0} kpps, no rules {:.0} kpps",
            a / 1000.0,
            b / 1000.0
        );
        list_rates.push(a);
        none_rates.push(b);
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (med(list_rates), med(none_rates));
    rows.push(Row {
        what: format!("4. forwarding, deny routed from @block (median of {FLOODS})"),
        pw: format!("{:.0} kpps", a / 1000.0),
        ipset: "-".into(),
        other: format!("{:.0} kpps", b / 1000.0),
        ratio: format!("{:.3}", a / b),
        target: ">= 0.95".into(),
        met: yes(a / b >= 0.95),
        modes: None,
    });
}

fn print_table(rows: &[Row]) {
    let head = Row {
        what: "measurement".into(),
        pw: "portwall".into(),
        ipset: "ipset".into(),
        other: "nft (4.: none)".into(),
        ratio: "ratio pw/ipset / pw/nft (4.: pw/none)".into(),
        target: "target".into(),
        met: "met?".into(),
        modes: None,
    };
    let cols = |r: &Row| {
        [
            r.what.clone(),
            r.pw.clone(),
            r.ipset.clone(),
            r.other.clone(),
            r.ratio.clone(),
            r.target.clone(),
            r.met.clone(),
        ]
    };
    let mut width = [0usize; 7];
    for r in std::iter::once(&head).chain(rows) {
        for (w, c) in width.iter_mut().zip(cols(r)) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [String; 7]| {
        let mut s = String::from("|");
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            if i == 0 || i >= 5 {
                write!(s, " {c:<w$} |").unwrap();
            } else {
                write!(s, " {c:>w$} |").unwrap();
            }
        }
        println!("{s}");
    };
    println!();
    println!("## Address lists: {ENTRIES} entries (~90 % IPv4 /32, ~8 % IPv4 /16-/30, ~2 % IPv6 /48-/64; seed {SEED})\n");
    line(cols(&head));
    line(width.map(|w| "-".repeat(w)));
    for r in rows {
        line(cols(r));
    }
    println!();
    println!("portwall: the CLI end to end (the list named by a rule, portwall enabled). ipset: hash:net sets ({IPSET_OPTS}), `ipset -exist restore`; 2. restores a new set and swaps it in; 3. `ipset add`. nft: a hand-written table inet with auto-merge interval sets; 2. `flush set` + `add element` of the whole list in one `nft -f`; 3. `nft add element`.");
    println!("4.: UDP flood (18-byte datagrams, up to 2 s per run), gateways taking turns; both gateways run portwall with routed traffic allowed by default, one with the rule and list, one without rules.");
    println!("reference (published, not measured): firewalld, 19,000 ipset entries in 78 minutes (firewalld issue 881).");
    for r in rows {
        if let Some(m) = &r.modes {
            let n = r.what.split(' ').next().unwrap_or("");
            println!("portwall's runs of {n} reached the kernel as (`--json` applied.mode): {m}");
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let start = Instant::now();
    eprintln!("generating {ENTRIES} entries (seed {SEED})");
    let data = generate();
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &data);
    eprintln!("  done in {:.1} s", secs(start.elapsed()));
    let mut rows = Vec::new();
    if want("lists") {
        let loaded = loads(&files, dir.path(), &mut rows);
        change(&files, &loaded, &mut rows);
        add_one(&data, &loaded, &mut rows);
        drop(loaded);
    }
    if want("forwarding") {
        forwarding(&files, dir.path(), &mut rows);
    }
    print_table(&rows);
    eprintln!("total {:.0} s", secs(start.elapsed()));
}
