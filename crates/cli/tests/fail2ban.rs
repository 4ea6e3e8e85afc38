//! fail2ban bans into a portwall list (issue 16): the real fail2ban (Debian's
//! package) with the action of `packaging/fail2ban/action.d/portwall.conf`,
//! in namespaces this test creates.
//!
//! The `server` namespace runs fail2ban-server (its own config directory,
//! socket, pid file and database, under a temporary directory; its actions run
//! this build's `portwall` on a config directory of the test's), a listener on
//! port 2222, and stands in for a Docker host: port 8080 is published
//! Docker-style (DNAT in iptables-nft's `nat` table) to a `container`
//! namespace's port 80. A `client` namespace has three addresses.
//!
//! Two jails on log files the test writes, both on Debian's stock jail.conf:
//! `Test-Login` (`banaction = portwall`, as the README shows; 3 failures, a
//! ban of 10 s, list `f2b-test-login`: the jail's name lowercased) and
//! `forever` (`bantime = -1`, the list named by the action's `portwall_list`).
//! Checked with real connections:
//!   - 3 failures get a client banned: its connections to the server and to
//!     the published port time out, another client is still served; the list
//!     entry's deadline is the jail's ban time;
//!   - at the ban time the client is served again, and the list no longer
//!     holds it;
//!   - a ban of `bantime = -1` is a permanent entry; `fail2ban-client unban`
//!     removes it (actionunban);
//!   - stopping fail2ban empties the lists in one change (actionflush) and
//!     leaves the lists and the jails' rules in place (actionstop).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testns::traffic::{tcp, Listeners, Seen};
use testns::{link_named, Netns};

const SERVER: &str = "203.0.113.1";
/// Banned by `Test-Login` for the ban time.
const BANNED: &str = "203.0.113.5";
/// Never failing until the end; banned last, to see the flush at stop.
const OTHER: &str = "203.0.113.6";
/// Banned by `forever` (`bantime = -1`).
const FOREVER: &str = "203.0.113.7";
const CONTAINER: &str = "172.17.0.2";
/// The server's own listener (an sshd, say).
const SSH_PORT: u16 = 2222;
/// Published Docker-style: DNAT to the container's port 80.
const PUBLISHED: u16 = 8080;

const JAIL: &str = "Test-Login";
/// The list the action derives from the jail's name.
const LIST: &str = "f2b-test-login";
const FOREVER_LIST: &str = "f2b-forever";
const MAXRETRY: usize = 3;
/// The jail's ban time, in seconds: short, yet long enough for the checks
/// made while the client is banned (two 1 s timeouts) on a loaded machine.
const BANTIME: u64 = 10;
/// A connection attempt that gets no answer within this is dropped.
const CONNECT: Duration = Duration::from_secs(1);
/// The longest any wait for fail2ban may take (its polling backend reads the
/// log once a second; a loaded 2-core machine may be much slower).
const WAIT: Duration = Duration::from_secs(30);

/// Docker's rules for a container at 172.17.0.2 publishing 8080->80, as
/// `iptables-save` shows them (trimmed; see docker.rs for the full set).
const DOCKER_RULES: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-USER -j RETURN
COMMIT
";

/// The client, the server (a Docker host) and its container.
struct Net {
    client: Netns,
    server: Netns,
    _container: Netns,
    _listeners: Vec<Listeners>,
}

impl Net {
    fn new() -> Net {
        let client = Netns::new();
        let server = Netns::new();
        let container = Netns::new();
        link_named(
            &client,
            &server,
            ("eth0", "eth0"),
            ("203.0.113.5/24", "2001:db8:1::5/64"),
            ("203.0.113.1/24", "2001:db8:1::1/64"),
        );
        for a in [OTHER, FOREVER] {
            client
                .ip(&["addr", "add", &format!("{a}/24"), "dev", "eth0"])
                .unwrap();
        }
        // The container's veth; its host end plays docker0.
        link_named(
            &server,
            &container,
            ("docker0", "eth0"),
            ("172.17.0.1/16", "2001:db8:17::1/64"),
            ("172.17.0.2/16", "2001:db8:17::2/64"),
        );
        container
            .ip(&["route", "add", "default", "via", "172.17.0.1"])
            .unwrap();
        server.sysctl("net.ipv4.ip_forward", "1").unwrap();
        let mut restore = server.command("iptables-nft-restore");
        restore.stdin(Stdio::piped());
        let mut child = restore.spawn().expect("run iptables-nft-restore");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(DOCKER_RULES.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "Docker's rules load");
        let listeners = vec![
            Listeners::start(&server, &[SERVER.parse().unwrap()], &[SSH_PORT]),
            Listeners::start(&container, &[CONTAINER.parse().unwrap()], &[80]),
        ];
        Net {
            client,
            server,
            _container: container,
            _listeners: listeners,
        }
    }

    /// A connection from the client's address `from` to the server's `port`.
    fn connect(&self, from: &str, port: u16) -> Seen {
        let src = SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0);
        let dst = SocketAddr::new(SERVER.parse().unwrap(), port);
        self.client.run(move || tcp(src, dst, CONNECT))
    }
}

/// fail2ban-server running in the server namespace, in the foreground, as a
/// child of the test; killed when dropped (the namespace's removal would kill
/// it too).
struct Fail2ban {
    child: Child,
    dir: PathBuf,
}

impl Fail2ban {
    fn conf(&self) -> PathBuf {
        self.dir.join("conf")
    }

    /// `fail2ban-client ARGS` on this server's socket: its output and whether
    /// it succeeded.
    fn client(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("fail2ban-client")
            .arg("-c")
            .arg(self.conf())
            .arg("-s")
            .arg(self.dir.join("fail2ban.sock"))
            .arg("-p")
            .arg(self.dir.join("fail2ban.pid"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run fail2ban-client");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// fail2ban's own log and what the server printed, for failure messages.
    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- fail2ban.log\n{}--- fail2ban-server output\n{}",
            read("fail2ban.log"),
            read("server.out")
        )
    }

    /// Appends `n` failed logins of `ip` to the log file `log`.
    fn fail(&self, log: &str, ip: &str, n: usize) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join(log))
            .unwrap();
        for _ in 0..n {
            writeln!(f, "auth failure from {ip}").unwrap();
        }
    }
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails with a clear message when fail2ban is missing: the test must not
/// pass by running nothing.
fn require_fail2ban() {
    let found = Command::new("fail2ban-server")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "fail2ban is not installed: this test runs the real fail2ban-server \
         (Debian package fail2ban; `bash scripts/deps` installs it)"
    );
}

/// A fail2ban config directory under `dir`: Debian's stock jail.conf, the
/// action under test, and the test's filter, jails and paths.
fn write_config(dir: &Path, portwall_dir: &Path) {
    let conf = dir.join("conf");
    std::fs::create_dir_all(conf.join("action.d")).unwrap();
    std::fs::create_dir_all(conf.join("filter.d")).unwrap();
    for f in ["jail.conf", "paths-common.conf", "paths-debian.conf"] {
        let from = Path::new("/etc/fail2ban").join(f);
        std::fs::copy(&from, conf.join(f)).unwrap_or_else(|e| {
            panic!(
                "cannot copy {} (fail2ban's stock config): {e}",
                from.display()
            )
        });
    }
    let action = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/fail2ban/action.d/portwall.conf");
    std::fs::copy(&action, conf.join("action.d/portwall.conf"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", action.display()));
    // The action's parameters, set as an admin would (action.d/portwall.local).
    std::fs::write(
        conf.join("action.d/portwall.local"),
        format!(
            "[Init]\nportwall = {}\nportwall_config_dir = {}\nportwall_options = --backend nft\n",
            env!("CARGO_BIN_EXE_portwall"),
            portwall_dir.display()
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("filter.d/portwall-test.conf"),
        "[Definition]\nfailregex = ^auth failure from <HOST>$\n# The lines carry no time: \
         fail2ban takes the time it reads them.\ndatepattern = {NONE}\n",
    )
    .unwrap();
    let d = dir.display();
    std::fs::write(
        conf.join("fail2ban.conf"),
        format!(
            "[Definition]\nloglevel = INFO\nlogtarget = {d}/fail2ban.log\nsyslogsocket = auto\n\
             socket = {d}/fail2ban.sock\npidfile = {d}/fail2ban.pid\nallowipv6 = auto\n\
             dbfile = {d}/fail2ban.sqlite3\ndbpurgeage = 1d\n"
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("jail.local"),
        format!(
            "[DEFAULT]\n\
             backend = polling\n\
             maxretry = {MAXRETRY}\n\
             findtime = 10m\n\
             \n\
             [{JAIL}]\n\
             enabled = true\n\
             filter = portwall-test\n\
             logpath = {d}/auth.log\n\
             bantime = {BANTIME}\n\
             banaction = portwall\n\
             \n\
             [forever]\n\
             enabled = true\n\
             filter = portwall-test\n\
             logpath = {d}/forever.log\n\
             bantime = -1\n\
             action = portwall[portwall_list=\"{FOREVER_LIST}\"]\n"
        ),
    )
    .unwrap();
    for log in ["auth.log", "forever.log"] {
        std::fs::write(dir.join(log), "").unwrap();
    }
}

fn start_fail2ban(ns: &Netns, dir: &Path) -> Fail2ban {
    let out = std::fs::File::create(dir.join("server.out")).unwrap();
    let mut c = ns.command("fail2ban-server");
    c.arg("-f")
        .arg("-x")
        .arg("-c")
        .arg(dir.join("conf"))
        .arg("-s")
        .arg(dir.join("fail2ban.sock"))
        .arg("-p")
        .arg(dir.join("fail2ban.pid"))
        .arg("start")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    // Its actions run portwall: nothing of the caller's environment that
    // would change what portwall does (as common::portwall_command).
    for var in [
        "SSH_CONNECTION",
        "PORTWALL_CONFIG_DIR",
        "PORTWALL_BACKEND",
        "PORTWALL_PANEL_URL",
        "PORTWALL_TOKEN",
        "PORTWALL_LOG",
    ] {
        c.env_remove(var);
    }
    Fail2ban {
        child: c.spawn().expect("start fail2ban-server"),
        dir: dir.to_path_buf(),
    }
}

/// Polls `check` until it returns `Some`, for at most `limit`.
#[track_caller]
fn wait_for<T>(
    limit: Duration,
    what: &str,
    logs: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `portwall list show NAME --json`.
fn list_show(ns: &Netns, dir: &Path, name: &str) -> serde_json::Value {
    let out = common::ok_on(ns, dir, "nft", &["list", "show", name, "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("list show JSON: {e}: {out}"))
}

/// The list's entry for `ip`, if it holds one.
fn entry(list: &serde_json::Value, ip: &str) -> Option<serde_json::Value> {
    list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["entry"] == ip)
        .cloned()
}

#[test]
fn fail2ban_bans_into_a_list_for_the_ban_time() {
    require_fail2ban();
    let net = Net::new();
    let tmp = tempfile::tempdir().unwrap();
    let pw = tmp.path().join("portwall");
    let f2b_dir = tmp.path().join("fail2ban");
    std::fs::create_dir_all(&f2b_dir).unwrap();
    let (ns, dir) = (&net.server, pw.as_path());

    // The server's firewall: the listener allowed, routed traffic left to
    // Docker's rules, as on a Docker host.
    common::ok_on(ns, dir, "nft", &["allow", &format!("{SSH_PORT}/tcp")]);
    common::ok_on(ns, dir, "nft", &["default", "allow", "routed"]);
    common::ok_on(ns, dir, "nft", &["enable"]);
    for from in [BANNED, OTHER, FOREVER] {
        assert_eq!(net.connect(from, SSH_PORT), Seen::Open, "{from} before");
        assert_eq!(net.connect(from, PUBLISHED), Seen::Open, "{from} before");
    }

    write_config(&f2b_dir, dir);
    let mut f2b = start_fail2ban(ns, &f2b_dir);
    let logs = || f2b.logs();
    // Both jails up, and their actionstart done: each list exists, named by
    // two rules (inbound and routed).
    wait_for(WAIT, "fail2ban's jails start", logs, || {
        (f2b.client(&["status", JAIL]).0 && f2b.client(&["status", "forever"]).0).then_some(())
    });
    wait_for(WAIT, "the actions create the lists and rules", logs, || {
        [LIST, FOREVER_LIST]
            .iter()
            .all(|l| {
                let o = common::portwall(ns, dir, &["list", "show", l, "--json"]);
                o.status.success()
                    && serde_json::from_slice::<serde_json::Value>(&o.stdout)
                        .map(|v| v["used_by"].as_array().map_or(0, |u| u.len()) == 2)
                        .unwrap_or(false)
            })
            .then_some(())
    });
    let status = common::ok_on(ns, dir, "nft", &["status"]);
    for rule in [
        format!("deny from @{LIST}"),
        format!("deny routed from @{LIST}"),
        format!("deny from @{FOREVER_LIST}"),
        format!("deny routed from @{FOREVER_LIST}"),
    ] {
        assert!(status.contains(&rule), "'{rule}' in:\n{status}");
    }

    // N failures: banned, for the jail's ban time. fail2ban reads the lines
    // after this instant, so neither its unban nor the kernel's deadline can
    // come less than the ban time after it.
    let written = Instant::now();
    f2b.fail("auth.log", BANNED, MAXRETRY);
    let banned = wait_for(WAIT, "the ban reaches the list", logs, || {
        entry(&list_show(ns, dir, LIST), BANNED)
    });
    let until: jiff::Timestamp = banned["until"]
        .as_str()
        .unwrap_or_else(|| panic!("a temporary entry: {banned}"))
        .parse()
        .expect("until is RFC 3339");
    let left = banned["seconds_left"].as_u64().expect("seconds_left");
    assert!(
        (1..=BANTIME).contains(&left),
        "the entry lasts the ban time ({BANTIME} s): {banned}"
    );
    assert_eq!(
        net.connect(BANNED, SSH_PORT),
        Seen::Timeout,
        "a banned client's connections are dropped"
    );
    assert_eq!(
        net.connect(BANNED, PUBLISHED),
        Seen::Timeout,
        "and to the published port (routed, DNAT to the container)"
    );
    assert_eq!(net.connect(OTHER, SSH_PORT), Seen::Open, "others served");
    assert_eq!(net.connect(OTHER, PUBLISHED), Seen::Open, "others served");

    // Meanwhile `forever` (bantime = -1): a permanent entry.
    f2b.fail("forever.log", FOREVER, MAXRETRY);
    let forever = wait_for(WAIT, "the permanent ban reaches its list", logs, || {
        entry(&list_show(ns, dir, FOREVER_LIST), FOREVER)
    });
    assert!(forever["until"].is_null(), "permanent: {forever}");
    assert_eq!(net.connect(FOREVER, SSH_PORT), Seen::Timeout);

    // The ban time: served again, on both ports, not before the ban time and
    // not long after the entry's deadline; the list no longer holds it.
    let served = |from: &str| {
        net.connect(from, SSH_PORT) == Seen::Open && net.connect(from, PUBLISHED) == Seen::Open
    };
    wait_for(
        Duration::from_secs(BANTIME) + WAIT,
        "the banned client is served again at the ban time",
        logs,
        || served(BANNED).then_some(()),
    );
    let banned_for = written.elapsed();
    assert!(
        banned_for >= Duration::from_secs(BANTIME) - Duration::from_millis(500),
        "served again {banned_for:?} after the failures: before the ban time ({BANTIME} s)"
    );
    let late = jiff::Timestamp::now().duration_since(until).as_secs_f64();
    assert!(
        late <= 15.0,
        "served again {late:.1} s after the ban's deadline {until}\n{}",
        f2b.logs()
    );
    wait_for(WAIT, "the list lets the banned address go", logs, || {
        entry(&list_show(ns, dir, LIST), BANNED)
            .is_none()
            .then_some(())
    });
    // fail2ban's own unban at the ban time (actionunban, which finds the entry
    // gone when the kernel's deadline came first).
    wait_for(WAIT, "fail2ban unbans", logs, || {
        let (ok, out) = f2b.client(&["status", JAIL]);
        (ok && out.contains("Currently banned:\t0")).then_some(())
    });
    assert!(
        net.connect(FOREVER, SSH_PORT) == Seen::Timeout,
        "the permanent ban holds"
    );

    // An unban by hand: actionunban removes the entry.
    let (ok, out) = f2b.client(&["set", "forever", "unbanip", FOREVER]);
    assert!(ok, "fail2ban-client unbanip: {out}");
    wait_for(WAIT, "unbanip empties the list", logs, || {
        entry(&list_show(ns, dir, FOREVER_LIST), FOREVER)
            .is_none()
            .then_some(())
    });
    assert!(served(FOREVER), "served once unbanned");

    // Stopping fail2ban lifts its bans in one change (actionflush), and
    // leaves the lists and their rules (actionstop).
    f2b.fail("auth.log", OTHER, MAXRETRY);
    wait_for(WAIT, "the second ban reaches the list", logs, || {
        entry(&list_show(ns, dir, LIST), OTHER)
    });
    assert_eq!(net.connect(OTHER, SSH_PORT), Seen::Timeout);
    let (ok, out) = f2b.client(&["stop"]);
    assert!(ok, "fail2ban-client stop: {out}\n{}", f2b.logs());
    wait_for(
        WAIT,
        "fail2ban-server exits",
        || std::fs::read_to_string(f2b_dir.join("fail2ban.log")).unwrap_or_default(),
        || f2b.child.try_wait().unwrap(),
    );
    let list = list_show(ns, dir, LIST);
    assert!(
        entry(&list, OTHER).is_none(),
        "stop flushed the list: {list}"
    );
    assert!(served(OTHER), "served once fail2ban stopped");
    let status = common::ok_on(ns, dir, "nft", &["status"]);
    for rule in [
        format!("deny from @{LIST}"),
        format!("deny routed from @{LIST}"),
        format!("deny from @{FOREVER_LIST}"),
    ] {
        assert!(status.contains(&rule), "'{rule}' kept at stop:\n{status}");
    }
    let log = std::fs::read_to_string(f2b_dir.join("fail2ban.log")).unwrap();
    assert!(
        !log.contains(" ERROR "),
        "fail2ban logged errors (an action failed?):\n{log}"
    );
}
