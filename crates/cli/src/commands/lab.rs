//! `portwall lab`: a small provider on this machine, in network namespaces, to
//! try both firewall layers by hand.
//!
//! ```text
//!   internet ──eth0── edge ──br0──┬── vps1   203.0.113.11  2001:db8:113::11  (VPS)
//!   198.51.100.2     (router,     ├── vps2   203.0.113.12  2001:db8:113::12  (VPS)
//!   2001:db8:100::2   portwall-   └── dedi1  203.0.113.13  2001:db8:113::13  (Dedicated)
//!                     edge)
//! ```
//!
//! `lab up` creates the namespaces `pwlab-internet`, `pwlab-edge`, `pwlab-vps1`,
//! `pwlab-vps2` and `pwlab-dedi1` (documentation address ranges only), starts a
//! panel (`portwall-panel`, SQLite in the lab directory, on 127.0.0.1 of this
//! machine), registers a customer with a web login and the three servers, creates
//! an edge token, and starts `portwall-edge` inside `pwlab-edge`, where it filters
//! what the edge routes to the servers. Nothing is added to this machine's own
//! network namespace: no address, no route, no firewall rule. The edge reaches
//! the panel through a relay that the lab's service process (`lab serve`, hidden)
//! keeps: a socket listening on 127.0.0.1:8080 *inside* `pwlab-edge`, whose
//! connections it forwards to the panel on this machine's 127.0.0.1. The same
//! process runs small TCP services in the servers (22: an SSH-like banner, 80
//! and 443: an HTTP answer) and a UDP echo on 53.
//!
//! Everything created is recorded in `LAB_DIR/lab.json` as it is created, so
//! `lab down` removes it all (processes by recorded pid and start time, anything
//! left inside the lab's namespaces, the namespaces, the directory), also after
//! a crash halfway through `lab up`.

use crate::{output, Global};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{IsTerminal, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Prefix of every namespace the lab creates.
pub const PREFIX: &str = "pwlab-";
/// The zone of the lab's servers and edge.
pub const ZONE: &str = "lab";
/// The port of the panel relay inside `pwlab-edge`.
pub const RELAY_PORT: u16 = 8080;
/// The customer's web login and password.
pub const LOGIN: &str = "customer";
pub const PASSWORD: &str = "portwall-lab";
const STATE_FILE: &str = "lab.json";
const READY_FILE: &str = "serve.ready";

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
    /// Where the lab keeps its state, logs, panel database and edge state.
    #[arg(
        long,
        env = "PORTWALL_LAB_DIR",
        default_value = "/run/portwall-lab",
        global = true
    )]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab: namespaces, panel, edge, servers, customer.
    Up(UpArgs),
    /// Remove everything the lab created.
    Down,
    /// What the lab runs, and whether it is healthy.
    Status,
    /// Run a command on a lab host: `lab exec vps1 -- portwall allow 80/tcp`.
    Exec(ExecArgs),
    /// The lab's service process (started by `up`).
    #[command(hide = true)]
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The panel's port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub panel_port: u16,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// internet, edge, vps1, vps2 or dedi1.
    pub host: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long)]
    pub panel_port: u16,
}

/// A host of the lab.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    pub name: &'static str,
    pub v4: &'static str,
    pub v6: &'static str,
    /// The panel's server type; None for the internet host and the edge.
    pub kind: Option<&'static str>,
}

pub const HOSTS: [Host; 5] = [
    Host {
        name: "internet",
        v4: "198.51.100.2",
        v6: "2001:db8:100::2",
        kind: None,
    },
    Host {
        name: "edge",
        v4: "203.0.113.1",
        v6: "2001:db8:113::1",
        kind: None,
    },
    Host {
        name: "vps1",
        v4: "203.0.113.11",
        v6: "2001:db8:113::11",
        kind: Some("VPS"),
    },
    Host {
        name: "vps2",
        v4: "203.0.113.12",
        v6: "2001:db8:113::12",
        kind: Some("VPS"),
    },
    Host {
        name: "dedi1",
        v4: "203.0.113.13",
        v6: "2001:db8:113::13",
        kind: Some("Dedicated"),
    },
];
const EDGE_OUTSIDE: (&str, &str) = ("198.51.100.1", "2001:db8:100::1");
/// TCP services in the servers.
const TCP_PORTS: [u16; 3] = [22, 80, 443];
const UDP_PORTS: [u16; 1] = [53];

fn ns(host: &str) -> String {
    format!("{PREFIX}{host}")
}

/// A process the lab started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proc {
    pub name: String,
    pub pid: u32,
    /// Start time in clock ticks (/proc/PID/stat field 22): a recycled pid has another.
    pub start_time: u64,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabServer {
    pub name: String,
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub ipv4: String,
    pub ipv6: String,
}

/// Everything the lab created, written as it is created.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabState {
    pub namespaces: Vec<String>,
    pub processes: Vec<Proc>,
    pub panel_url: Option<String>,
    pub admin_token: Option<String>,
    pub customer_id: Option<i64>,
    pub customer_token: Option<String>,
    pub servers: Vec<LabServer>,
    /// True once `up` finished.
    pub complete: bool,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

fn load_state(dir: &Path) -> Result<Option<LabState>> {
    match std::fs::read(state_path(dir)) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
            format!("{} is not a lab state file", state_path(dir).display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", state_path(dir).display())),
    }
}

fn save_state(dir: &Path, st: &LabState) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(st)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, state_path(dir))?;
    Ok(())
}

pub fn run(g: &Global, a: &LabArgs) -> Result<u8> {
    match &a.command {
        LabCommand::Up(u) => up(g, &a.dir, u),
        LabCommand::Down => down(g, &a.dir),
        LabCommand::Status => status(g, &a.dir),
        LabCommand::Exec(e) => exec(&a.dir, e),
        LabCommand::Serve(s) => serve(&a.dir, s),
    }
}

// ---- helpers ----------------------------------------------------------------

fn need_root() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!(crate::exit::ExitError {
            code: crate::exit::USAGE,
            message: "the lab needs root (it creates network namespaces)".into(),
        });
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run ip (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn in_ns(name: &str, argv: &[&str]) -> Result<()> {
    let mut full = vec!["netns", "exec", name];
    full.extend_from_slice(argv);
    ip(&full)
}

fn ns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Finds a binary next to the running `portwall`, or on PATH.
fn find_binary(name: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    bail!("{name} not found next to portwall or on PATH (cargo build --bins builds it)")
}

fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn alive(p: &Proc) -> bool {
    proc_start_time(p.pid) == Some(p.start_time)
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Stops a recorded process: SIGTERM, then SIGKILL after 5 s.
fn stop_proc(p: &Proc) {
    if !alive(p) {
        return;
    }
    signal(p.pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(p) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(p) {
        signal(p.pid, rustix::process::Signal::KILL);
    }
}

/// Kills whatever still runs inside a lab namespace.
fn kill_inside(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<u32>() {
                signal(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

struct Progress {
    on: bool,
    started: Instant,
}

impl Progress {
    fn new(json: bool) -> Progress {
        Progress {
            on: !json && std::io::stderr().is_terminal(),
            started: Instant::now(),
        }
    }
    fn step(&self, what: &str) {
        if self.on {
            eprintln!("  [{:>5.1}s] {what}", self.started.elapsed().as_secs_f64());
        }
    }
}

fn spawn_logged(dir: &Path, name: &str, mut cmd: Command, env: &[(&str, &str)]) -> Result<Proc> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = logs.join(format!("{name}.log"));
    let out = std::fs::File::create(&log)?;
    let err = out.try_clone()?;
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let pid = child.id();
    // Not waited for: it outlives this command (and is reparented to init when
    // this command exits). Its start time identifies it later.
    drop(child);
    let start_time = proc_start_time(pid).unwrap_or(0);
    Ok(Proc {
        name: name.to_string(),
        pid,
        start_time,
        log,
    })
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {} s waiting for {what}", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A JSON request to the panel's API, through the CLI's one panel client.
fn api(
    client: &crate::panel_client::PanelClient,
    method: crate::panel_client::Method,
    path: &str,
    body: Value,
) -> Result<Value> {
    Ok(client
        .request(method, path, Some(&body), None)
        .with_context(|| format!("panel API {path}"))?
        .body)
}

// ---- up ---------------------------------------------------------------------

fn up(g: &Global, dir: &Path, a: &UpArgs) -> Result<u8> {
    need_root()?;
    if let Some(st) = load_state(dir)? {
        bail!(crate::exit::ExitError {
            code: crate::exit::FAILURE,
            message: format!(
                "a lab is already {} in {} ({} namespaces); run `portwall lab down` first",
                if st.complete { "up" } else { "half built" },
                dir.display(),
                st.namespaces.len()
            ),
        });
    }
    if let Some(h) = HOSTS.iter().find(|h| ns_exists(&ns(h.name))) {
        bail!(
            "namespace {} exists but no lab state is in {}; run `portwall lab down` to remove it",
            ns(h.name),
            dir.display()
        );
    }
    let panel_bin = find_binary("portwall-panel")?;
    let edge_bin = find_binary("portwall-edge")?;
    let me = std::env::current_exe().context("cannot find the running portwall binary")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut st = LabState::default();
    save_state(dir, &st)?;
    let progress = Progress::new(g.json);
    match build(dir, a, &mut st, &progress, &panel_bin, &edge_bin, &me) {
        Ok(()) => {
            st.complete = true;
            save_state(dir, &st)?;
            progress.step("the lab is up");
            print_up(g, dir, &st)?;
            Ok(crate::exit::OK)
        }
        Err(e) => {
            eprintln!("portwall: lab up failed: {e:#}; removing what was created");
            teardown(dir, &st);
            Err(e)
        }
    }
}

fn build(
    dir: &Path,
    a: &UpArgs,
    st: &mut LabState,
    progress: &Progress,
    panel_bin: &Path,
    edge_bin: &Path,
    me: &Path,
) -> Result<()> {
    progress.step("creating namespaces");
    for h in &HOSTS {
        let name = ns(h.name);
        st.namespaces.push(name.clone());
        save_state(dir, st)?;
        ip(&["netns", "add", &name])?;
        in_ns(&name, &["ip", "link", "set", "lo", "up"])?;
        in_ns(
            &name,
            &["sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0"],
        )?;
        in_ns(
            &name,
            &["sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0"],
        )?;
    }
    progress.step("wiring internet — edge — servers");
    let (inet, edge) = (ns("internet"), ns("edge"));
    ip(&[
        "link", "add", "pwlab-i0", "netns", &inet, "type", "veth", "peer", "name", "pwlab-e0",
        "netns", &edge,
    ])?;
    ip(&["-n", &inet, "link", "set", "pwlab-i0", "name", "eth0"])?;
    ip(&["-n", &edge, "link", "set", "pwlab-e0", "name", "eth0"])?;
    let internet = HOSTS[0];
    ip(&[
        "-n",
        &inet,
        "addr",
        "add",
        &format!("{}/24", internet.v4),
        "dev",
        "eth0",
    ])?;
    ip(&[
        "-n",
        &inet,
        "addr",
        "add",
        &format!("{}/64", internet.v6),
        "dev",
        "eth0",
        "nodad",
    ])?;
    ip(&[
        "-n",
        &edge,
        "addr",
        "add",
        &format!("{}/24", EDGE_OUTSIDE.0),
        "dev",
        "eth0",
    ])?;
    ip(&[
        "-n",
        &edge,
        "addr",
        "add",
        &format!("{}/64", EDGE_OUTSIDE.1),
        "dev",
        "eth0",
        "nodad",
    ])?;
    ip(&["-n", &inet, "link", "set", "eth0", "up"])?;
    ip(&["-n", &edge, "link", "set", "eth0", "up"])?;
    ip(&[
        "-n",
        &inet,
        "route",
        "add",
        "default",
        "via",
        EDGE_OUTSIDE.0,
    ])?;
    ip(&[
        "-n",
        &inet,
        "-6",
        "route",
        "add",
        "default",
        "via",
        EDGE_OUTSIDE.1,
    ])?;
    ip(&["-n", &edge, "link", "add", "br0", "type", "bridge"])?;
    let gw = HOSTS[1];
    ip(&[
        "-n",
        &edge,
        "addr",
        "add",
        &format!("{}/24", gw.v4),
        "dev",
        "br0",
    ])?;
    ip(&[
        "-n",
        &edge,
        "addr",
        "add",
        &format!("{}/64", gw.v6),
        "dev",
        "br0",
        "nodad",
    ])?;
    ip(&["-n", &edge, "link", "set", "br0", "up"])?;
    in_ns(&edge, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
    in_ns(
        &edge,
        &["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"],
    )?;
    for h in HOSTS.iter().filter(|h| h.kind.is_some()) {
        let name = ns(h.name);
        let (a_if, b_if) = (format!("pwlab-s-{}", h.name), format!("to-{}", h.name));
        ip(&[
            "link", "add", &a_if, "netns", &name, "type", "veth", "peer", "name", &b_if, "netns",
            &edge,
        ])?;
        ip(&["-n", &name, "link", "set", &a_if, "name", "eth0"])?;
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{}/24", h.v4),
            "dev",
            "eth0",
        ])?;
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{}/64", h.v6),
            "dev",
            "eth0",
            "nodad",
        ])?;
        ip(&["-n", &name, "link", "set", "eth0", "up"])?;
        ip(&["-n", &edge, "link", "set", &b_if, "master", "br0", "up"])?;
        ip(&["-n", &name, "route", "add", "default", "via", gw.v4])?;
        ip(&["-n", &name, "-6", "route", "add", "default", "via", gw.v6])?;
    }

    progress.step("starting the panel");
    let port = if a.panel_port == 0 {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port()
    } else {
        a.panel_port
    };
    let mut cmd = Command::new(panel_bin);
    cmd.args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &dir.join("panel").display().to_string(),
    ]);
    let panel = spawn_logged(dir, "panel", cmd, &[("RUST_LOG", "info,sqlx=warn")])?;
    let panel_log = panel.log.clone();
    let panel_proc = panel.clone();
    st.processes.push(panel);
    save_state(dir, st)?;
    let token = wait_for("the panel's admin token", Duration::from_secs(60), || {
        if !alive(&panel_proc) {
            return Some(None);
        }
        let text = std::fs::read_to_string(&panel_log).ok()?;
        text.lines()
            .find_map(|l| l.split_once("admin token (shown once, keep it safe): "))
            .map(|(_, t)| Some(t.trim().to_string()))
    })?
    .with_context(|| format!("the panel exited; see {}", panel_log.display()))?;
    let url = format!("http://127.0.0.1:{port}");
    st.panel_url = Some(url.clone());
    st.admin_token = Some(token.clone());
    save_state(dir, st)?;

    progress.step("starting the servers' services and the edge's link to the panel");
    let mut cmd = Command::new(me);
    cmd.args([
        "lab",
        "--dir",
        &dir.display().to_string(),
        "serve",
        "--panel-port",
        &port.to_string(),
    ]);
    let _ = std::fs::remove_file(dir.join(READY_FILE));
    let serve = spawn_logged(dir, "serve", cmd, &[])?;
    let serve_proc = serve.clone();
    st.processes.push(serve);
    save_state(dir, st)?;
    wait_for("the lab services", Duration::from_secs(20), || {
        if !alive(&serve_proc) {
            return Some(false);
        }
        dir.join(READY_FILE).exists().then_some(true)
    })?
    .then_some(())
    .with_context(|| {
        format!(
            "the lab service process exited; see {}",
            serve_proc.log.display()
        )
    })?;

    progress.step("registering the customer, its servers and the edge");
    let admin = crate::panel_client::PanelClient::new(&url, &token)?;
    use crate::panel_client::Method;
    let customer = api(
        &admin,
        Method::POST,
        "/v1/customers",
        json!({"name": "Lab Customer", "email": "customer@example.com"}),
    )?;
    let cid = customer["id"]
        .as_i64()
        .context("the panel's customer has no id")?;
    st.customer_id = Some(cid);
    api(
        &admin,
        Method::POST,
        "/v1/users",
        json!({"login": LOGIN, "password": PASSWORD, "customer_id": cid}),
    )?;
    for h in HOSTS.iter().filter(|h| h.kind.is_some()) {
        let s = api(
            &admin,
            Method::POST,
            "/v1/servers",
            json!({"customer_id": cid, "name": h.name, "type": h.kind, "ipv4": [h.v4], "ipv6": [h.v6], "zone": ZONE}),
        )?;
        st.servers.push(LabServer {
            name: h.name.to_string(),
            id: s["id"].as_i64().context("the panel's server has no id")?,
            kind: h.kind.unwrap_or_default().to_string(),
            ipv4: h.v4.to_string(),
            ipv6: h.v6.to_string(),
        });
    }
    let ctoken = api(
        &admin,
        Method::POST,
        "/v1/tokens",
        json!({"name": "lab customer", "kind": "customer", "scope": "write", "customer_id": cid}),
    )?;
    st.customer_token = ctoken["token"].as_str().map(String::from);
    let etoken = api(
        &admin,
        Method::POST,
        "/v1/tokens",
        json!({"name": "lab edge", "kind": "edge", "zone": ZONE}),
    )?;
    let etoken = etoken["token"]
        .as_str()
        .context("the panel's edge token has no secret")?
        .to_string();
    save_state(dir, st)?;

    progress.step("starting the edge agent in pwlab-edge");
    let edge_state = dir.join("edge");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &edge]).arg(edge_bin).args([
        "run",
        "--panel-url",
        &format!("http://127.0.0.1:{RELAY_PORT}"),
        "--zone",
        ZONE,
        "--mode",
        "forward",
        "--name",
        "lab-edge",
        "--counters-every",
        "10",
        "--backoff-max",
        "5",
        "--state-dir",
        &edge_state.display().to_string(),
    ]);
    let agent = spawn_logged(
        dir,
        "edge",
        cmd,
        &[("PORTWALL_EDGE_TOKEN", &etoken), ("RUST_LOG", "info")],
    )?;
    let agent_proc = agent.clone();
    st.processes.push(agent);
    save_state(dir, st)?;
    wait_for("the edge's first sync", Duration::from_secs(30), || {
        if !alive(&agent_proc) {
            return Some(false);
        }
        edge::store::load_note(&edge_state)
            .filter(|n| n.panel_reachable && n.revision.is_some())
            .map(|_| true)
    })?
    .then_some(())
    .with_context(|| format!("the edge agent exited; see {}", agent_proc.log.display()))?;
    Ok(())
}

fn print_up(g: &Global, dir: &Path, st: &LabState) -> Result<()> {
    if g.json {
        let mut v = serde_json::to_value(st)?;
        v["login"] = json!({"login": LOGIN, "password": PASSWORD});
        v["dir"] = json!(dir);
        return output::print_json(&v);
    }
    let url = st.panel_url.as_deref().unwrap_or("-");
    println!("The lab is up ({}).", dir.display());
    println!();
    println!(
        "  panel        {url}   (admin token: {})",
        st.admin_token.as_deref().unwrap_or("-")
    );
    println!("  web login    {LOGIN} / {PASSWORD}");
    println!(
        "  API token    {}   (the customer's, write)",
        st.customer_token.as_deref().unwrap_or("-")
    );
    println!();
    let mut t = output::table(["HOST", "TYPE", "IPV4", "IPV6", "SERVER ID"]);
    for h in &HOSTS {
        let id = st
            .servers
            .iter()
            .find(|s| s.name == h.name)
            .map(|s| s.id.to_string())
            .unwrap_or_else(|| "-".into());
        let kind = h.kind.unwrap_or(if h.name == "edge" {
            "edge (router)"
        } else {
            "client"
        });
        t.add_row(vec![
            h.name.to_string(),
            kind.to_string(),
            h.v4.to_string(),
            h.v6.to_string(),
            id,
        ]);
    }
    output::print_table(&t);
    let vps1 = st
        .servers
        .iter()
        .find(|s| s.name == "vps1")
        .map_or(0, |s| s.id);
    let tok = st.customer_token.as_deref().unwrap_or("TOKEN");
    println!();
    println!("Try:");
    println!("  portwall lab exec internet -- portwall probe 203.0.113.11 22,80");
    println!("  portwall lab exec vps1 -- portwall allow 80/tcp");
    println!("  curl -s -H 'Authorization: Bearer {tok}' -H 'Content-Type: application/json' \\");
    println!(
        "       -d '{{\"name\":\"web\",\"rules\":[{{\"preset\":\"SSH\"}}]}}' {url}/v1/firewalls"
    );
    println!("  curl -s -H 'Authorization: Bearer {tok}' -H 'Content-Type: application/json' \\");
    println!("       -d '{{\"server_id\":{vps1}}}' {url}/v1/firewalls/FIREWALL_ID/assignments");
    println!(
        "  curl -s -X POST -H 'Authorization: Bearer {tok}' {url}/v1/firewalls/FIREWALL_ID/enable"
    );
    println!(
        "  portwall lab exec edge -- portwall-edge status --state-dir {}",
        dir.join("edge").display()
    );
    println!("  portwall lab status        portwall lab down");
    Ok(())
}

// ---- down -------------------------------------------------------------------

/// Removes everything the lab created; best effort, never stops halfway.
fn teardown(dir: &Path, st: &LabState) {
    // The edge first (it keeps the last policy in force; the namespace goes anyway).
    for p in st.processes.iter().rev() {
        stop_proc(p);
    }
    let mut names: Vec<String> = st.namespaces.clone();
    for h in &HOSTS {
        let n = ns(h.name);
        if !names.contains(&n) {
            names.push(n);
        }
    }
    for n in &names {
        if ns_exists(n) {
            kill_inside(n);
            let _ = ip(&["netns", "delete", n]);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn down(g: &Global, dir: &Path) -> Result<u8> {
    need_root()?;
    let st = load_state(dir)?.unwrap_or_default();
    let had =
        !st.namespaces.is_empty() || HOSTS.iter().any(|h| ns_exists(&ns(h.name))) || dir.exists();
    teardown(dir, &st);
    let left: Vec<String> = HOSTS
        .iter()
        .map(|h| ns(h.name))
        .filter(|n| ns_exists(n))
        .collect();
    if g.json {
        output::print_json(&json!({"removed": had, "left": left}))?;
    } else if had {
        println!(
            "The lab is down: processes stopped, namespaces and {} removed.",
            dir.display()
        );
    } else {
        println!("No lab was up.");
    }
    if !left.is_empty() {
        bail!("could not remove {}", left.join(", "));
    }
    Ok(crate::exit::OK)
}

// ---- status -----------------------------------------------------------------

#[derive(Debug, Serialize)]
struct Component {
    name: String,
    state: String,
    detail: String,
}

fn status(g: &Global, dir: &Path) -> Result<u8> {
    let Some(st) = load_state(dir)? else {
        if g.json {
            output::print_json(&json!({"up": false}))?;
        } else {
            println!(
                "No lab is up (nothing in {}). `portwall lab up` builds one.",
                dir.display()
            );
        }
        return Ok(crate::exit::FAILURE);
    };
    let mut rows = Vec::new();
    for n in &st.namespaces {
        rows.push(Component {
            name: n.clone(),
            state: if ns_exists(n) { "ok" } else { "MISSING" }.into(),
            detail: "network namespace".into(),
        });
    }
    for p in &st.processes {
        rows.push(Component {
            name: p.name.clone(),
            state: if alive(p) { "running" } else { "STOPPED" }.into(),
            detail: format!("pid {}, log {}", p.pid, p.log.display()),
        });
    }
    if let Some(url) = &st.panel_url {
        let healthy = TcpStream::connect_timeout(
            &url.trim_start_matches("http://").parse::<SocketAddr>()?,
            Duration::from_secs(1),
        )
        .is_ok();
        rows.push(Component {
            name: "panel-api".into(),
            state: if healthy { "ok" } else { "UNREACHABLE" }.into(),
            detail: url.clone(),
        });
    }
    let note = edge::store::load_note(&dir.join("edge"));
    let saved = edge::store::load_policy(&dir.join("edge")).ok().flatten();
    if let Some(n) = &note {
        let enforced = saved
            .as_ref()
            .map_or(0, |s| s.servers.iter().filter(|x| x.enforced).count());
        rows.push(Component {
            name: "edge-sync".into(),
            state: if n.panel_reachable {
                "ok"
            } else {
                "PANEL UNREACHABLE"
            }
            .into(),
            detail: format!(
                "revision {}, {} enforced server(s){}",
                n.revision.map_or("-".into(), |r| r.to_string()),
                enforced,
                n.last_error
                    .as_ref()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            ),
        });
    }
    let healthy = st.complete && rows.iter().all(|r| r.state == "ok" || r.state == "running");
    if g.json {
        output::print_json(&json!({
            "up": st.complete,
            "healthy": healthy,
            "panel_url": st.panel_url,
            // The lab's own throwaway credentials, for scripts (scripts/lab).
            "admin_token": st.admin_token,
            "customer_token": st.customer_token,
            "components": rows,
            "servers": st.servers,
        }))?;
    } else {
        println!(
            "The lab is {} ({}).",
            if !st.complete {
                "half built"
            } else if healthy {
                "up"
            } else {
                "up but unhealthy"
            },
            dir.display()
        );
        let mut t = output::table(["COMPONENT", "STATE", "DETAIL"]);
        for r in &rows {
            t.add_row(vec![r.name.clone(), r.state.clone(), r.detail.clone()]);
        }
        output::print_table(&t);
    }
    Ok(if healthy {
        crate::exit::OK
    } else {
        crate::exit::FAILURE
    })
}

// ---- exec -------------------------------------------------------------------

fn exec(dir: &Path, a: &ExecArgs) -> Result<u8> {
    need_root()?;
    let Some(host) = HOSTS.iter().find(|h| h.name == a.host) else {
        let names: Vec<&str> = HOSTS.iter().map(|h| h.name).collect();
        bail!(crate::exit::ExitError {
            code: crate::exit::USAGE,
            message: format!("'{}' is not a lab host: {}", a.host, names.join(", ")),
        });
    };
    let name = ns(host.name);
    if !ns_exists(&name) {
        bail!("{name} does not exist: `portwall lab up` first");
    }
    // Each host has its own OS-firewall state, and finds portwall's binaries.
    let config = dir.join("hosts").join(host.name);
    std::fs::create_dir_all(&config)?;
    let mut path = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.as_os_str().to_owned()))
        .unwrap_or_default();
    if let Some(p) = std::env::var_os("PATH") {
        path.push(":");
        path.push(p);
    }
    let err = Command::new("ip")
        .args(["netns", "exec", &name])
        .args(&a.command)
        .env("PATH", path)
        .env("PORTWALL_CONFIG_DIR", &config)
        .exec();
    bail!("cannot run ip netns exec: {err}")
}

// ---- serve (the lab's service process) ----------------------------------------

fn enter(host: &str) -> std::io::Result<()> {
    let f = std::fs::File::open(Path::new("/run/netns").join(ns(host)))?;
    rustix::thread::move_into_link_name_space(
        f.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(std::io::Error::from)
}

fn tcp_service(host: &'static str, port: u16) -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let bound = enter(host).and_then(|_| TcpListener::bind(("::", port)));
        let listener = match bound {
            Ok(l) => {
                let _ = tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        for mut conn in listener.incoming().flatten() {
            let banner = match port {
                22 => format!("SSH-2.0-portwall-lab {host}\r\n"),
                _ => format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello from {host} port {port}\n"
                ),
            };
            let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = conn.write_all(banner.as_bytes());
        }
    });
    rx.recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("listener thread died")))
}

fn udp_echo(host: &'static str, port: u16) -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let sock = match enter(host).and_then(|_| UdpSocket::bind(("::", port))) {
            Ok(s) => {
                let _ = tx.send(Ok(()));
                s
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    rx.recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("echo thread died")))
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn serve(dir: &Path, a: &ServeArgs) -> Result<u8> {
    need_root()?;
    for h in HOSTS.iter().filter(|h| h.kind.is_some()) {
        for p in TCP_PORTS {
            tcp_service(h.name, p).with_context(|| format!("tcp {p} in {}", h.name))?;
        }
        for p in UDP_PORTS {
            udp_echo(h.name, p).with_context(|| format!("udp {p} in {}", h.name))?;
        }
    }
    // The panel relay: a listener inside pwlab-edge; connections are handed to
    // this (main) thread, which is in this machine's namespace and connects to
    // the panel on its loopback.
    let (tx, rx) = std::sync::mpsc::channel::<TcpStream>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let listener = match enter("edge")
            .and_then(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, RELAY_PORT)))
        {
            Ok(l) => {
                let _ = ready_tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        for conn in listener.incoming().flatten() {
            if tx.send(conn).is_err() {
                return;
            }
        }
    });
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("relay thread died")))
        .context("the panel relay in pwlab-edge")?;
    std::fs::write(dir.join(READY_FILE), std::process::id().to_string())?;
    eprintln!(
        "lab services ready; relaying pwlab-edge 127.0.0.1:{RELAY_PORT} to 127.0.0.1:{}",
        a.panel_port
    );
    let panel = SocketAddr::from((Ipv4Addr::LOCALHOST, a.panel_port));
    for inbound in rx {
        match TcpStream::connect_timeout(&panel, Duration::from_secs(5)) {
            Ok(upstream) => {
                let _ = inbound.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let (i2, u2) = match (inbound.try_clone(), upstream.try_clone()) {
                    (Ok(i), Ok(u)) => (i, u),
                    _ => continue,
                };
                std::thread::spawn(move || pipe(inbound, upstream));
                std::thread::spawn(move || pipe(u2, i2));
            }
            Err(e) => eprintln!("cannot reach the panel: {e}"),
        }
    }
    Ok(crate::exit::OK)
}
