//! `cargo bench -p inspect --bench ports`: listing 20,000 listening sockets with
//! their owners, against `ss -tulpen` and `netstat -tulpen`.
//!
//! In a network namespace made for the run, Python children bind and listen
//! on 20,000 TCP ports of 127.0.0.1, then wait: 10,000 sockets per child, so
//! that each stays under a hard descriptor limit of 20,000 (this machine's,
//! which without `CAP_SYS_RESOURCE` cannot be raised). Each tool lists the namespace's sockets with owners several times
//! and the median is reported; `ss` and `netstat` run through
//! `ip netns exec`, as does the `portwall` binary when one is built (found as
//! `$PORTWALL_BIN`, or `portwall` in `$CARGO_TARGET_DIR/release`, `target/release`;
//! `portwall ports` for the table, `portwall ports --json` for the JSON).
//! The library and the binary are timed with owners from the kernel's
//! task-file iterator (the default) and from a `/proc` walk (`--owners
//! proc`, what `ss` and `netstat` do); `ss -tuln`, without owners, is the
//! floor.
//! The `/proc` walk sees every process of the machine, as `ss -p` does, so
//! other processes holding many descriptors make every tool slower.
//!
//! Besides the wall time, the CPU time (user + system, of every thread or
//! child process) is reported: on a machine shared with other work, wall times
//! of a parallel program vary with the cores left free, CPU time much less.
//!
//! Set `PORTWALL_BENCH_SOCKETS` to change the number of sockets.

use inspect::{OwnerSource, Protocol, SocketQuery, State};
use nix::sys::resource::{getrusage, UsageWho};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use testns::Netns;

/// Sockets per listener process.
const PER_PROCESS: usize = 10_000;

/// Binds COUNT listening TCP sockets on 127.0.0.1:FIRST.., says "ready", and
/// exits when its stdin closes or after 10 minutes, whichever comes first.
const LISTENER: &str = r#"
import resource, signal, socket, sys
first, count = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = count + 64
if hard != resource.RLIM_INFINITY and hard < want:
    sys.exit(f"the hard descriptor limit {hard} is below {want}")
resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
signal.alarm(600)
socks = []
for port in range(first, first + count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    socks.append(s)
print("ready", flush=True)
sys.stdin.read()
"#;

struct Listener {
    child: Child,
}

impl Listener {
    fn start(ns: &Netns, first_port: usize, count: usize) -> Listener {
        let mut child = ns
            .command("python3")
            .args(["-c", LISTENER, &first_port.to_string(), &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the python3 listener");
        let stdout = child.stdout.take().expect("listener stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listener's ready line");
        assert_eq!(line.trim(), "ready", "the listener did not start");
        Listener { child }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// User + system time used so far by this process (`Self_`) or by its waited-for
/// children (`Children`).
fn cpu(who: UsageWho) -> Duration {
    let usage = getrusage(who).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

/// Median wall time and median CPU time.
struct Timing {
    wall: Duration,
    cpu: Duration,
}

fn time_command(ns: &Netns, argv: &[&str], runs: usize) -> Option<Timing> {
    let mut times = Vec::with_capacity(runs);
    let mut cpus = Vec::with_capacity(runs);
    for _ in 0..runs {
        let cpu_start = cpu(UsageWho::RUSAGE_CHILDREN);
        let start = Instant::now();
        let out = ns
            .command(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        let elapsed = start.elapsed();
        if !out.success() {
            eprintln!("{argv:?} failed: {out}");
            return None;
        }
        times.push(elapsed);
        cpus.push(cpu(UsageWho::RUSAGE_CHILDREN) - cpu_start);
    }
    Some(Timing {
        wall: median(times),
        cpu: median(cpus),
    })
}

fn portwall_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PORTWALL_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut dirs = Vec::new();
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(t));
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    dirs.into_iter()
        .map(|d| d.join("release/portwall"))
        .find(|p| p.is_file())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too
    // (without it), and then a short run checks that the benchmark works.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("PORTWALL_BENCH_SOCKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 200 } else { 20_000 });
    let (lib_runs, tool_runs) = if quick { (3, 1) } else { (21, 7) };

    let ns = Netns::new();
    let setup = Instant::now();
    let listeners: Vec<Listener> = (0..n)
        .step_by(PER_PROCESS)
        .map(|first| Listener::start(&ns, 10_000 + first, PER_PROCESS.min(n - first)))
        .collect();
    let pids: Vec<u32> = listeners.iter().map(|l| l.child.id()).collect();
    println!(
        "{n} listening TCP sockets on 127.0.0.1, owned by pids {pids:?}, ready in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // The library call, on a thread inside the namespace, with owners from
    // the kernel's task-file iterator and from a /proc walk.
    let time_library = |owners: OwnerSource| {
        let query = SocketQuery {
            owners,
            ..SocketQuery::default()
        };
        ns.run(|| {
            let first = inspect::list_sockets(&query).expect("list sockets");
            let mut times = Vec::with_capacity(lib_runs);
            let mut cpus = Vec::with_capacity(lib_runs);
            for _ in 0..lib_runs {
                let cpu_start = cpu(UsageWho::RUSAGE_SELF);
                let start = Instant::now();
                let sockets = inspect::list_sockets(&query).expect("list sockets");
                times.push(start.elapsed());
                cpus.push(cpu(UsageWho::RUSAGE_SELF) - cpu_start);
                assert_eq!(sockets.len(), first.len());
            }
            let timing = Timing {
                wall: median(times),
                cpu: median(cpus),
            };
            (timing, first)
        })
    };
    let (lib, found) = time_library(OwnerSource::Kernel);
    let (lib_proc, found_proc) = time_library(OwnerSource::Proc);
    assert_eq!(
        found, found_proc,
        "both owner sources must give the same rows"
    );
    // The answer must be right, not just fast: every socket, with its owner.
    let ours: Vec<_> = found
        .iter()
        .filter(|s| s.protocol == Protocol::Tcp && s.state == State::Listen)
        .filter(|s| s.owners.len() == 1 && pids.contains(&s.owners[0].pid))
        .collect();
    assert_eq!(
        ours.len(),
        n,
        "every listener must be found with its owner (found {} sockets)",
        found.len()
    );

    let mut rows: Vec<(String, Timing)> =
        vec![("inspect::list_sockets, owners from /proc".into(), lib_proc)];
    if let Some(bin) = portwall_binary() {
        let bin = bin.to_string_lossy().into_owned();
        // The table, as a user reads it, and the JSON, as a program does.
        if let Some(t) = time_command(&ns, &[&bin, "ports"], tool_runs) {
            rows.push(("portwall ports (ip netns exec)".into(), t));
        }
        if let Some(t) = time_command(&ns, &[&bin, "ports", "--json"], tool_runs) {
            rows.push(("portwall ports --json (ip netns exec)".into(), t));
        }
        if let Some(t) = time_command(&ns, &[&bin, "ports", "--owners", "proc"], tool_runs) {
            rows.push(("portwall ports --owners proc (ip netns)".into(), t));
        }
    }
    for tool in ["ss", "netstat"] {
        match time_command(&ns, &[tool, "-tulpen"], tool_runs) {
            Some(t) => rows.push((format!("{tool} -tulpen (ip netns exec)"), t)),
            None => println!("{tool} could not run; left out"),
        }
    }
    // The floor: the sockets alone, without owners.
    if let Some(t) = time_command(&ns, &["ss", "-tuln"], tool_runs) {
        rows.push(("ss -tuln, no owners (ip netns exec)".into(), t));
    }
    drop(listeners);

    println!();
    println!(
        "{:<44} {:>10} {:>12} {:>10} {:>12}",
        "tool", "median ms", "vs portwall", "cpu ms", "cpu vs ptw"
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let lib_row = ("inspect::list_sockets, owners from kernel".to_string(), lib);
    for (name, t) in std::iter::once(&lib_row).chain(&rows) {
        println!(
            "{:<44} {:>10.1} {:>11.1}x {:>10.1} {:>11.1}x",
            name,
            ms(t.wall),
            ratio(t.wall, lib_row.1.wall),
            ms(t.cpu),
            ratio(t.cpu, lib_row.1.cpu),
        );
    }
    println!(
        "\n({lib_runs} runs of the library call, {tool_runs} of each command; medians; \
         load average before: {})",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
