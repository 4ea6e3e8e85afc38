//! Network namespaces for portwall's tests and benchmarks.
//!
//! Every test that touches netfilter, sockets between hosts or routing runs inside
//! namespaces made here and removed when the [`Netns`] value is dropped, so nothing
//! a test does reaches the firewall or the network of the machine it runs on.
//!
//! Names are `pwt-<pid>-<n>`, unique per process; [`Netns::new`] first removes
//! leftovers of earlier test processes that died without cleaning up (their pid no
//! longer exists), so a crashed run cannot leak namespaces into the next one.
//!
//! The namespaces are created with `ip netns add`, so they can also be entered by
//! hand (`ip netns exec pwt-... nft list ruleset`) while debugging a test.

pub mod traffic;

use std::fs::File;
use std::os::fd::AsFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The sysctls set in every test namespace so that the kernel never
/// rate-limits the ICMP errors (port unreachable, rejects) a test waits for:
/// per-destination limits off, no ICMP type in the rate-limited masks, and a
/// host-wide bucket no test can drain.
pub const ICMP_UNLIMITED: [(&str, &str); 6] = [
    ("net.ipv4.icmp_ratelimit", "0"),
    ("net.ipv6.icmp.ratelimit", "0"),
    ("net.ipv4.icmp_ratemask", "0"),
    ("net.ipv6.icmp.ratemask", ""),
    ("net.ipv4.icmp_msgs_per_sec", "1000000"),
    ("net.ipv4.icmp_msgs_burst", "1000000"),
];

/// A network namespace owned by the test that created it. Dropping it kills the
/// processes left inside and deletes it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

/// `ip ARGS` (iproute2), with its stderr in the error.
pub fn run_ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e} (is iproute2 installed?)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Removes namespaces named `pwt-<pid>-*` whose process is gone.
fn cleanup_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("pwt-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_in(&name);
            let _ = run_ip(&["netns", "delete", &name]);
        }
    }
}

/// Kills (SIGKILL) every process inside the namespace `name`.
pub fn kill_all_in(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Netns {
    /// Creates a fresh namespace with its loopback up.
    ///
    /// Panics with a clear message when namespaces cannot be made (not root, no
    /// iproute2): such a test cannot run meaningfully, and silently skipping it
    /// would make it a test that cannot fail.
    pub fn new() -> Netns {
        Self::try_new().unwrap_or_else(|e| panic!("cannot create a test network namespace: {e}"))
    }

    pub fn try_new() -> Result<Netns, String> {
        cleanup_stale();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Self::named(&format!("pwt-{}-{}", std::process::id(), n))
    }

    /// Creates the namespace `name` (set up like [`Netns::new`]); dropping it
    /// deletes it unless [`Netns::persist`] is called. For namespaces that
    /// outlive the process (the lab's `pwlab-*`).
    pub fn named(name: &str) -> Result<Netns, String> {
        let name = name.to_string();
        run_ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        // IPv6 duplicate address detection would delay every address by ~2 s.
        let _ = ns.sysctl("net.ipv6.conf.all.accept_dad", "0");
        let _ = ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
        // Tests send many rejected packets at once; the kernel's ICMP error rate
        // limits (per destination, and the host-wide token bucket) would turn
        // some "refused" answers into silence. All of these are per network
        // namespace (the tests check that the machine's own values stay), and
        // a namespace where they cannot be set would make flaky tests: fail.
        for (key, value) in ICMP_UNLIMITED {
            ns.sysctl(key, value).map_err(|e| {
                format!("cannot lift the ICMP rate limit {key} in {}: {e}", ns.name)
            })?;
        }
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leaves the namespace in place when this value goes; returns its name.
    pub fn persist(self) -> String {
        let me = std::mem::ManuallyDrop::new(self);
        me.name.clone()
    }

    /// `ip ARGS` inside this namespace.
    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ip(&full)
    }

    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), String> {
        let out = self.exec(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `argv` inside this namespace and returns its output.
    pub fn exec(&self, argv: &[&str]) -> Output {
        let mut c = self.command(argv[0]);
        c.args(&argv[1..]).stdin(Stdio::null());
        c.output()
            .unwrap_or_else(|e| panic!("cannot run {:?} in {}: {e}", argv, self.name))
    }

    /// Runs `argv` inside this namespace; panics with its stderr when it fails.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "{:?} in {} failed ({}): {}{}",
            argv,
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a new OS thread that has entered this namespace. Sockets opened
    /// and processes spawned by `f` live in the namespace; the calling thread and
    /// the rest of the process stay where they are.
    pub fn run<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = File::open(format!("/run/netns/{}", self.name))
            .unwrap_or_else(|e| panic!("cannot open namespace {}: {e}", self.name));
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("setns into the test namespace");
                f()
            })
            .join()
            .expect("thread inside the namespace panicked")
        })
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_all_in(&self.name);
        let _ = run_ip(&["netns", "delete", &self.name]);
    }
}

/// Addresses of one end of a link.
#[derive(Debug, Clone)]
pub struct Addrs {
    pub v4: String,
    pub v6: String,
}

/// Connects `a` and `b` with a veth pair named `ifname` on both sides and gives each
/// end an IPv4 /24 and an IPv6 /64 address (the part before the prefix length is
/// what [`Addrs`] returns).
pub fn link(
    a: &Netns,
    b: &Netns,
    ifname: &str,
    a_addr: (&str, &str),
    b_addr: (&str, &str),
) -> (Addrs, Addrs) {
    link_named(a, b, (ifname, ifname), a_addr, b_addr)
}

/// Two hosts on one link: a `client` and a `server`.
#[derive(Debug)]
pub struct Pair {
    pub client: Netns,
    pub server: Netns,
    pub client_addr: Addrs,
    pub server_addr: Addrs,
}

impl Pair {
    /// client 198.51.100.20 / 2001:db8::20 — server 198.51.100.10 / 2001:db8::10, on `eth0`.
    pub fn new() -> Pair {
        let client = Netns::new();
        let server = Netns::new();
        let (client_addr, server_addr) = link(
            &client,
            &server,
            "eth0",
            ("198.51.100.20/24", "2001:db8::20/64"),
            ("198.51.100.10/24", "2001:db8::10/64"),
        );
        Pair {
            client,
            server,
            client_addr,
            server_addr,
        }
    }
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}

/// Three hosts in a line: `client` — `gateway` — `server`, with forwarding on the
/// gateway, for the forward path (routed rules, the edge, forwarding benchmarks).
#[derive(Debug)]
pub struct Routed {
    pub client: Netns,
    pub gateway: Netns,
    pub server: Netns,
    pub client_addr: Addrs,
    pub server_addr: Addrs,
}

impl Routed {
    /// client 198.51.100.20 — gw 198.51.100.1 | 203.0.113.1 — server 203.0.113.10
    /// (IPv6 2001:db8:1::20 — 2001:db8:1::1 | 2001:db8:2::1 — 2001:db8:2::10).
    pub fn new() -> Routed {
        let client = Netns::new();
        let gateway = Netns::new();
        let server = Netns::new();
        let (client_addr, _) = link(
            &client,
            &gateway,
            "eth0",
            ("198.51.100.20/24", "2001:db8:1::20/64"),
            ("198.51.100.1/24", "2001:db8:1::1/64"),
        );
        let (_, server_addr) = link_named(
            &gateway,
            &server,
            ("eth1", "eth0"),
            ("203.0.113.1/24", "2001:db8:2::1/64"),
            ("203.0.113.10/24", "2001:db8:2::10/64"),
        );
        gateway
            .sysctl("net.ipv4.ip_forward", "1")
            .expect("ipv4 forwarding");
        gateway
            .sysctl("net.ipv6.conf.all.forwarding", "1")
            .expect("ipv6 forwarding");
        client
            .ip(&["route", "add", "default", "via", "198.51.100.1"])
            .expect("client v4 route");
        client
            .ip(&["-6", "route", "add", "default", "via", "2001:db8:1::1"])
            .expect("client v6 route");
        server
            .ip(&["route", "add", "default", "via", "203.0.113.1"])
            .expect("server v4 route");
        server
            .ip(&["-6", "route", "add", "default", "via", "2001:db8:2::1"])
            .expect("server v6 route");
        Routed {
            client,
            gateway,
            server,
            client_addr,
            server_addr,
        }
    }
}

impl Default for Routed {
    fn default() -> Self {
        Self::new()
    }
}

/// Like [`link`], with a different interface name on each side.
pub fn link_named(
    a: &Netns,
    b: &Netns,
    ifnames: (&str, &str),
    a_addr: (&str, &str),
    b_addr: (&str, &str),
) -> (Addrs, Addrs) {
    try_link_named(a, b, ifnames, Some(a_addr), Some(b_addr))
        .unwrap_or_else(|e| panic!("cannot link {} and {}: {e}", a.name(), b.name()));
    let strip = |s: &str| s.split('/').next().unwrap().to_string();
    (
        Addrs {
            v4: strip(a_addr.0),
            v6: strip(a_addr.1),
        },
        Addrs {
            v4: strip(b_addr.0),
            v6: strip(b_addr.1),
        },
    )
}

/// A veth pair between `a` and `b`, named `ifnames` on each side, up, with
/// carrier; each end gets its (IPv4/len, IPv6/len) addresses when given (a
/// bridge port gets none). Errors instead of panicking.
pub fn try_link_named(
    a: &Netns,
    b: &Netns,
    (a_if, b_if): (&str, &str),
    a_addr: Option<(&str, &str)>,
    b_addr: Option<(&str, &str)>,
) -> Result<(), String> {
    let tmp_a = format!("pwa{}", COUNTER.fetch_add(1, Ordering::SeqCst));
    let tmp_b = format!("pwb{}", COUNTER.fetch_add(1, Ordering::SeqCst));
    run_ip(&[
        "link",
        "add",
        &tmp_a,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        &tmp_b,
        "netns",
        b.name(),
    ])?;
    for (ns, tmp, ifname, addrs) in [(a, &tmp_a, a_if, a_addr), (b, &tmp_b, b_if, b_addr)] {
        ns.ip(&["link", "set", tmp, "name", ifname])?;
        if let Some((v4, v6)) = addrs {
            ns.ip(&["addr", "add", v4, "dev", ifname])?;
            ns.ip(&["-6", "addr", "add", v6, "dev", ifname, "nodad"])?;
        }
        ns.ip(&["link", "set", ifname, "up"])?;
    }
    // The kernel reports carrier asynchronously (linkwatch, up to ~1 s); IPv6
    // does not use a link without it, so wait for both ends.
    for (ns, ifname) in [(a, a_if), (b, b_if)] {
        wait_for_carrier(ns, ifname)?;
    }
    Ok(())
}

fn wait_for_carrier(ns: &Netns, ifname: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let out = Command::new("ip")
            .args(["-n", ns.name(), "link", "show", ifname])
            .output();
        if let Ok(o) = out {
            let text = String::from_utf8_lossy(&o.stdout);
            if text.contains("LOWER_UP")
                && !text.contains("NO-CARRIER")
                && text.contains("state UP")
            {
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "{ifname} in {} has no carrier after 5 s",
                ns.name()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Moves the calling thread into the namespace `name` (`/run/netns/NAME`), for
/// good: sockets it opens from now on live there. For long-lived service
/// threads; [`Netns::run`] is the scoped form.
pub fn enter(name: &str) -> std::io::Result<()> {
    let file = File::open(format!("/run/netns/{name}"))?;
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(std::io::Error::from)
}

/// The seed of a randomized test's run: `PORTWALL_SEED` when set (to replay a
/// run), else one from the clock; printed either way, with `test`'s name.
pub fn seed(test: &str) -> u64 {
    let seed: u64 = std::env::var("PORTWALL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            // Mixed, so that runs started in the same second differ.
            (t.as_nanos() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ u64::from(std::process::id())
        });
    eprintln!("{test} seed: {seed} (PORTWALL_SEED={seed} replays it)");
    seed
}
