//! OS-firewall benchmarks, printed as tables with ratios (run as root:
//! `cargo bench -p portwall --bench os_firewall`). Everything runs in network
//! namespaces this benchmark creates; loops are bounded in count and time.
//!
//! 1. Apply time for 1k, 10k and 100k rules: `portwall apply` (end to end, the
//!    real binary) vs `iptables-restore` of the equivalent rules vs the same rules
//!    added through `ufw` (in a namespace whose /etc/ufw is its own, through
//!    `ip netns exec`'s /etc/netns bind mounts; ufw is measured up to a bounded
//!    number of rules, since each `ufw` call reloads everything).
//! 2. A single-rule change on a 100k-rule ruleset: the CLI end to end, and the
//!    library's element delta alone.
//! 3. Forwarding rate through a namespace gateway with 10k routed rules vs none
//!    (and vs no portwall table at all).
//!
//! portwall talks to the kernel over nf_tables netlink; `PORTWALL_NFT_BACKEND=nft`
//! measures the `nft` binary instead (the numbers before the netlink backend).
//! `PORTWALL_BENCH_NO_UFW=1` skips the (slow) ufw measurement.

use model::{parse_rule, Ruleset, Services};
use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testns::{Netns, Routed};

const PORTWALL: &str = env!("CARGO_BIN_EXE_portwall");

fn addr(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn rule_line(i: usize) -> String {
    format!("allow {}/tcp from {}", 1024 + (i % 60000), addr(i))
}

fn write_rules(path: &Path, n: usize, extra: Option<&str>) {
    let mut s = String::from("rules = [\n");
    for i in 0..n {
        writeln!(s, "  \"{}\",", rule_line(i)).unwrap();
    }
    if let Some(e) = extra {
        writeln!(s, "  \"{e}\",").unwrap();
    }
    s.push_str("]\n");
    std::fs::write(path, s).unwrap();
}

fn time<F: FnMut()>(mut f: F) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Runs of each apply-time measurement.
const APPLY_RUNS: usize = 5;

/// The median of a list of times.
fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// One timed load into a namespace made for it.
///
/// The kernel tears a deleted namespace down in the background, which takes
/// a core for milliseconds (more with a large table in it); a load timed
/// meanwhile is slowed by it. So each load starts after a pause that lets
/// any earlier teardown finish, and its namespace is kept (by the caller)
/// until the round of loads is done.
fn timed_load(c: impl FnOnce(&Netns) -> Command) -> (Duration, Netns) {
    std::thread::sleep(Duration::from_millis(300));
    let ns = Netns::new();
    let mut cmd = c(&ns);
    (time(|| run_ok(&mut cmd)), ns)
}

fn run_ok(c: &mut Command) {
    let out = c.stdin(Stdio::null()).output().expect("run");
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How the library reaches the kernel: netlink, or the `nft` binary with
/// `PORTWALL_NFT_BACKEND=nft` (read here, in the benchmark's binary).
fn kernel() -> netfilter::Kernel {
    match std::env::var("PORTWALL_NFT_BACKEND").as_deref() {
        Ok("nft") => netfilter::Kernel::NftBinary,
        _ => netfilter::Kernel::Netlink,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn apply_times() {
    println!(
        "\n## Apply time (a fresh namespace each, after a pause; the tools take turns; median of {APPLY_RUNS}; backend: {:?})\n",
        kernel()
    );
    println!("| rules | portwall apply (end to end) | iptables-restore | ufw (per rule x n) | iptables/portwall | ufw/portwall | nft -f, one set, no counters | nft -f, one set, counters |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let dir = tempfile::tempdir().unwrap();
    // ufw: measure the cost per rule added on top of a ruleset of UFW_RULES rules.
    let ufw_per_rule = if std::env::var_os("PORTWALL_BENCH_NO_UFW").is_some() {
        None
    } else {
        ufw_cost_per_rule(200)
    };
    for n in [1_000usize, 10_000, 100_000] {
        let file = dir.path().join(format!("rules{n}.toml"));
        write_rules(&file, n, None);
        let mut text = String::from("*filter\n:INPUT ACCEPT [0:0]\n");
        for i in 0..n {
            writeln!(
                text,
                "-A INPUT -s {}/32 -p tcp -m tcp --dport {} -j ACCEPT",
                addr(i),
                1024 + (i % 60000)
            )
            .unwrap();
        }
        text.push_str("COMMIT\n");
        let ipt_file = dir.path().join(format!("ipt{n}"));
        std::fs::write(&ipt_file, text).unwrap();
        // The floor the kernel sets: the same rules as one hand-written set,
        // loaded by nft, without and with a counter per element (portwall
        // keeps one per rule, for `status --verbose`).
        let set_file = |counters: bool| {
            let path = dir.path().join(format!("set{n}{counters}.nft"));
            std::fs::write(&path, nft_set_file(n, counters)).unwrap();
            path
        };
        let (plain_file, counted_file) = (set_file(false), set_file(true));
        // Each tool loads into a fresh namespace, APPLY_RUNS times, the
        // tools taking turns round by round: this VM's speed drifts by tens
        // of percent over minutes, and turns give every tool the same drift.
        // The median of each is printed.
        let (mut pw, mut ipt, mut plain, mut counted) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut last = None;
        for run in 0..APPLY_RUNS {
            let cfg = dir.path().join(format!("cfg{n}-{run}"));
            let (t, ns) = timed_load(|ns| {
                let mut c = ns.command(PORTWALL);
                c.env("PORTWALL_CONFIG_DIR", &cfg).args([
                    "apply",
                    "--file",
                    file.to_str().unwrap(),
                ]);
                c
            });
            pw.push(t);
            let kept_pw = (ns, cfg);
            let (t, kept_ipt) = timed_load(|ns| {
                let mut c = ns.command("iptables-restore");
                c.arg(&ipt_file);
                c
            });
            ipt.push(t);
            let (t, kept_plain) = timed_load(|ns| {
                let mut c = ns.command("nft");
                c.arg("-f").arg(&plain_file);
                c
            });
            plain.push(t);
            let (t, kept_counted) = timed_load(|ns| {
                let mut c = ns.command("nft");
                c.arg("-f").arg(&counted_file);
                c
            });
            counted.push(t);
            drop((kept_ipt, kept_plain, kept_counted));
            last = Some(kept_pw);
        }
        let (ns, cfg) = last.expect("ran");
        let (pw, ipt, nft_plain, nft_counted) =
            (median(pw), median(ipt), median(plain), median(counted));
        let ufw = ufw_per_rule.map(|d| d * n as u32);
        println!(
            "| {n} | {} | {} | {} | {:.1}x | {} | {} | {} |",
            ms(pw),
            ms(ipt),
            ufw.map(|d| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_else(|| "n/a".into()),
            ipt.as_secs_f64() / pw.as_secs_f64(),
            ufw.map(|d| format!("{:.0}x", d.as_secs_f64() / pw.as_secs_f64()))
                .unwrap_or_else(|| "n/a".into()),
            ms(nft_plain),
            ms(nft_counted),
        );
        if n == 100_000 {
            println!("\ntargets: 10,000 rules <= 60 ms, 100,000 rules <= 500 ms end to end, >= 100x faster than ufw");
            single_change(&ns, &cfg, n);
        }
    }
}

/// The benchmark's rules as one nft set of `address . port` elements and one
/// rule that looks it up, as an admin would write them by hand.
fn nft_set_file(n: usize, counters: bool) -> String {
    let mut s =
        String::from("table inet hand {\n  set allowed {\n    type ipv4_addr . inet_service\n");
    if counters {
        s.push_str("    counter\n");
    }
    s.push_str("    elements = {\n");
    for i in 0..n {
        writeln!(s, "      {} . {},", addr(i), 1024 + (i % 60000)).unwrap();
    }
    s.push_str(
        "    }\n  }\n  chain input {\n    type filter hook input priority 0; policy drop;\n",
    );
    s.push_str("    ip saddr . tcp dport @allowed accept\n  }\n}\n");
    s
}

/// The time of one `ufw allow` on top of `base` existing rules, in a namespace
/// with its own /etc/ufw. UFW rewrites and reloads its whole ruleset on every
/// change, so adding n rules costs n times this (and more as n grows).
fn ufw_cost_per_rule(base: usize) -> Option<Duration> {
    if Command::new("ufw").arg("version").output().is_err() {
        return None;
    }
    let ns = Netns::new();
    let etc = Path::new("/etc/netns").join(ns.name());
    std::fs::create_dir_all(&etc).unwrap();
    run_ok(Command::new("cp").args(["-a", "/etc/ufw", etc.to_str().unwrap()]));
    let ufw = |args: &[&str]| {
        let mut c = ns.command("ufw");
        c.args(args);
        run_ok(&mut c);
    };
    ufw(&["--force", "reset"]);
    ufw(&["--force", "enable"]);
    for i in 0..base {
        ufw(&[
            "allow",
            "from",
            &addr(i),
            "to",
            "any",
            "port",
            &(1024 + i).to_string(),
            "proto",
            "tcp",
        ]);
    }
    let k = 20;
    let t = time(|| {
        for i in base..base + k {
            ufw(&[
                "allow",
                "from",
                &addr(i),
                "to",
                "any",
                "port",
                &(1024 + i).to_string(),
                "proto",
                "tcp",
            ]);
        }
    });
    let _ = std::fs::remove_dir_all(&etc);
    println!("(ufw: {:.0} ms per `ufw allow` on top of {base} rules; n rules cost at least n times that)", t.as_secs_f64() * 1000.0 / k as f64);
    Some(t / k as u32)
}

fn single_change(ns: &Netns, cfg: &Path, n: usize) {
    println!("\n## One rule added to a {n}-rule ruleset\n");
    let cli = time(|| {
        run_ok(ns.command(PORTWALL).env("PORTWALL_CONFIG_DIR", cfg).args([
            "allow",
            "443/tcp",
            "from",
            "192.0.2.1",
        ]))
    });
    // The library path alone: compile both, diff, send only the changed elements.
    let services = Services::builtin();
    let mut rs = Ruleset::default();
    for i in 0..n {
        rs.rules
            .push(parse_rule(&rule_line(i), &services).unwrap().remove(0));
    }
    let before = rs.clone();
    rs.rules.push(
        parse_rule("allow 443/tcp from 192.0.2.2", &services)
            .unwrap()
            .remove(0),
    );
    // The library's element delta alone: what one transaction and the read-back
    // of just the changed elements cost on a table of n rules.
    let (compiled, prev) = (
        netfilter::compile::compile(&rs, netfilter::compile::TABLE),
        netfilter::compile::compile(&before, netfilter::compile::TABLE),
    );
    let delta = compiled.delta_batch(&prev).expect("an element-only change");
    let (apply, verify) = ns.run(|| {
        let t = Instant::now();
        let json = || serde_json::to_string(&delta).unwrap();
        kernel()
            .apply_batch(&delta, false, json)
            .expect("the delta applies");
        let applied = t.elapsed();
        if kernel() == netfilter::Kernel::Netlink {
            let diffs = netfilter::netlink::try_verify_delta(&delta).expect("read back");
            assert!(diffs.is_empty(), "{diffs:?}");
        }
        (applied, t.elapsed() - applied)
    });
    // Back to `before`, so that apply_atomically below makes the same change.
    let undo = prev.delta_batch(&compiled).unwrap();
    let json = || serde_json::to_string(&undo).unwrap();
    ns.run(|| kernel().apply_batch(&undo, false, json)).unwrap();
    let mut mode = None;
    let lib = time(|| {
        let r = ns
            .run(|| kernel().apply(&rs, Some(&before), netfilter::ApplyOptions::default()))
            .unwrap();
        mode = Some(r.mode);
    });
    println!("| path | time | how |");
    println!("|---|---:|---|");
    println!("| `portwall allow` (CLI: read+parse {n} rules, compile, delta, save) | {} | set elements |", ms(cli));
    println!(
        "| netfilter::apply_atomically (compile both, diff, delta, read back) | {} | {:?} |",
        ms(lib),
        mode.unwrap()
    );
    println!(
        "| the delta alone: one transaction + read-back of the changed elements | {} + {} = {} | set elements |",
        ms(apply),
        ms(verify),
        ms(apply + verify)
    );
    println!("target: the kernel's change (the delta and its read-back) <= 10 ms; the CLI also reads, parses and rewrites the {n}-rule file");
}

/// One bounded UDP flood from the client to the server's port 9999 through the
/// gateway: packets received per second at the server (also used by the
/// `lists` bench).
pub(crate) fn flood_rate(net: &Routed) -> (u64, u64, f64) {
    let server_addr: SocketAddr = format!("{}:9999", net.server_addr.v4).parse().unwrap();
    let recv = net.server.run(|| UdpSocket::bind(server_addr).unwrap());
    recv.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let counter = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut n = 0u64;
        while recv.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    let limit = Duration::from_secs(2);
    let sent = net.client.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect(server_addr).unwrap();
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < 200_000 && start.elapsed() < limit {
            for _ in 0..256 {
                if s.send(&[0u8; 18]).is_ok() {
                    sent += 1;
                }
            }
        }
        (sent, start.elapsed())
    });
    let received = counter.join().unwrap();
    (sent.0, received, received as f64 / sent.1.as_secs_f64())
}

/// Three gateways: no portwall table at all; portwall with `default deny routed`
/// and the one rule that lets the flood through; the same with 10,000 routed deny
/// rules before it. The server never answers, so every packet of the flow is
/// `new` to conntrack and goes through the whole chain, set lookups included.
/// The ratio the target is about is 10k rules vs none (the same table without
/// the 10,000 rules): grouping rules into set lookups keeps it near 1. The ratio
/// against no table at all is the whole cost of a stateful firewall (connection
/// tracking included), which no rule layout avoids.
fn forwarding() {
    const RUNS: usize = 5;
    println!("\n## Forwarding rate through a gateway (UDP, 18-byte datagrams, bounded flood; the gateways take turns; median of {RUNS})\n");
    println!("| gateway | packets sent | received | rate (kpps) | vs no table | vs no rules |");
    println!("|---|---:|---:|---:|---:|---:|");
    let gateways = [
        ("no portwall table", false, 0usize),
        ("portwall, 1 rule (allow routed 9999/udp)", true, 0),
        ("portwall, 10,000 rules + that one", true, 10_000),
    ];
    let dir = tempfile::tempdir().unwrap();
    let nets: Vec<Routed> = gateways
        .iter()
        .enumerate()
        .map(|(g, &(_, table, n))| {
            let net = Routed::new();
            if table {
                let cfg = dir.path().join(format!("gateway{g}"));
                std::fs::create_dir_all(&cfg).unwrap();
                let file = cfg.join("rules.toml");
                let mut s = String::from("rules = [\n");
                for i in 0..n {
                    writeln!(s, "  \"deny routed from {}\",", addr(i)).unwrap();
                }
                s.push_str("  \"allow routed 9999/udp\",\n]\n[defaults]\nrouted = \"deny\"\n");
                std::fs::write(&file, s).unwrap();
                run_ok(
                    net.gateway
                        .command(PORTWALL)
                        .env("PORTWALL_CONFIG_DIR", &cfg)
                        .args(["apply", "--file", file.to_str().unwrap()]),
                );
            }
            net
        })
        .collect();
    // Round by round, each gateway gets one flood: the VM's speed drifts
    // over minutes, and turns give every gateway the same drift.
    let mut runs: Vec<Vec<(u64, u64, f64)>> = vec![Vec::new(); gateways.len()];
    for _ in 0..RUNS {
        for (g, net) in nets.iter().enumerate() {
            runs[g].push(flood_rate(net));
        }
    }
    let mut rates = Vec::new();
    for ((what, _, _), mut r) in gateways.iter().zip(runs) {
        r.sort_by(|a, b| a.2.total_cmp(&b.2));
        rates.push((what, r[RUNS / 2]));
    }
    let no_table = rates[0].1 .2;
    let no_rules = rates[1].1 .2;
    for (i, (what, (sent, received, rate))) in rates.iter().enumerate() {
        let vs_rules = if i == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", rate / no_rules)
        };
        println!(
            "| {what} | {sent} | {received} | {:.0} | {:.2} | {vs_rules} |",
            rate / 1000.0,
            rate / no_table
        );
    }
    println!("target: 10,000 rules vs none (the last column) >= 0.95");
}

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if only.as_deref().is_none_or(|o| o == "apply") {
        apply_times();
    }
    if only.as_deref().is_none_or(|o| o == "forwarding") {
        forwarding();
    }
}
