//! `portwall lab`: a small provider on this machine, in network namespaces, to
//! try both firewall layers by hand.
//!
//! `up` creates the namespaces of [`topology::HOSTS`] (documentation address
//! ranges only, wired as [`topology::WIRES`] says), makes a throwaway CA and a
//! certificate for the panel (rcgen), starts the panel (`portwall-panel`,
//! HTTPS, SQLite in the lab directory, on 127.0.0.1 of this machine), starts
//! the lab's service process ([`serve`]: the servers' services and the relay
//! that makes the panel reachable at [`topology::PANEL_V4`], an address of the
//! lab's own network, as a provider's API address), registers a customer with
//! a web login and the three servers, creates an edge token, and starts
//! `portwall-edge` inside `pwlab-edge`, verifying the panel against the lab's
//! CA. Nothing is added to this machine's own network namespace: no address,
//! no route, no firewall rule.
//!
//! Inside the lab ([`exec`]), `PORTWALL_PANEL_URL`, `PORTWALL_PANEL_CA` and
//! `PORTWALL_TOKEN` name the panel at its lab address, so `portwall audit` and
//! `explain` on a server show the network firewall next to the OS firewall.
//!
//! Everything created is recorded in `LAB_DIR/lab.json` as it is created, so
//! [`down`] removes it all (processes by recorded pid and start time, anything
//! left inside the lab's namespaces, the namespaces, the directory), also after
//! a crash halfway through `up`.
//!
//! The lab does not link the panel or the edge: it runs their binaries and
//! reads the edge's state with `portwall-edge status --json`. The panel's API
//! is reached through [`PanelApi`], which the caller provides (the CLI's one
//! panel client).

pub mod process;
pub mod serve;
pub mod topology;

pub use process::Proc;
pub use topology::{Host, Role, HOSTS, PANEL_PORT, PANEL_V4, PREFIX};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The zone of the lab's servers and edge.
pub const ZONE: &str = "lab";
/// The customer's web login and password.
pub const LOGIN: &str = "customer";
pub const PASSWORD: &str = "portwall-lab";
const STATE_FILE: &str = "lab.json";

/// Why a lab command failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the lab needs root (it creates network namespaces)")]
    NeedRoot,
    #[error("'{host}' is not a lab host: {known}")]
    UnknownHost { host: String, known: String },
    #[error("a lab is already {state} in {} ({namespaces} namespaces); run `portwall lab down` first", dir.display())]
    AlreadyUp {
        state: &'static str,
        dir: PathBuf,
        namespaces: usize,
    },
    #[error("{0}")]
    Failed(String),
}

impl LabError {
    /// A mistake in how the command was called (exit 2), not a failure.
    pub fn is_usage(&self) -> bool {
        matches!(self, LabError::NeedRoot | LabError::UnknownHost { .. })
    }
}

fn failed(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.to_string();
    move |e| LabError::Failed(format!("{what}: {e}"))
}

/// The panel's API, as the lab needs it: a JSON POST with the client's token.
pub trait PanelApi {
    fn post(&self, path: &str, body: &Value) -> Result<Value, String>;
}

/// Makes a [`PanelApi`] for (panel URL, token, CA file).
pub type ConnectPanel<'a> = &'a dyn Fn(&str, &str, &Path) -> Result<Box<dyn PanelApi>, String>;

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
    /// The panel from this machine: `https://127.0.0.1:PORT`.
    pub panel_url: Option<String>,
    /// The panel from inside the lab: `https://203.0.113.254`.
    #[serde(default)]
    pub lab_panel_url: Option<String>,
    /// The lab CA's certificate, which both URLs verify against.
    #[serde(default)]
    pub panel_ca: Option<PathBuf>,
    pub admin_token: Option<String>,
    pub customer_id: Option<i64>,
    pub customer_token: Option<String>,
    pub servers: Vec<LabServer>,
    /// True once `up` finished.
    pub complete: bool,
}

impl LabState {
    /// The environment that points `portwall` inside the lab at the panel,
    /// as the customer.
    pub fn panel_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(u) = &self.lab_panel_url {
            env.push(("PORTWALL_PANEL_URL", u.clone()));
        }
        if let Some(ca) = &self.panel_ca {
            env.push(("PORTWALL_PANEL_CA", ca.display().to_string()));
        }
        if let Some(t) = &self.customer_token {
            env.push(("PORTWALL_TOKEN", t.clone()));
        }
        env
    }
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// The lab's state in `dir`, None when no lab is there.
pub fn load_state(dir: &Path) -> Result<Option<LabState>, LabError> {
    let path = state_path(dir);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            LabError::Failed(format!("{} is not a lab state file: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(failed(format!("reading {}", path.display()))(e)),
    }
}

/// Writes the state atomically: a temporary file in `dir`, renamed over it.
fn save_state(dir: &Path, st: &LabState) -> Result<(), LabError> {
    let path = state_path(dir);
    let bytes = serde_json::to_vec_pretty(st).expect("the lab state serializes");
    tempfile::NamedTempFile::new_in(dir)
        .and_then(|mut tmp| {
            std::io::Write::write_all(&mut tmp, &bytes)?;
            tmp.persist(&path).map_err(|e| e.error)
        })
        .map(|_| ())
        .map_err(failed(format!("writing {}", path.display())))
}

pub fn need_root() -> Result<(), LabError> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(LabError::NeedRoot)
    }
}

/// The host named `name`, or a usage error listing the hosts.
pub fn host(name: &str) -> Result<&'static Host, LabError> {
    HOSTS
        .iter()
        .find(|h| h.name == name)
        .ok_or_else(|| LabError::UnknownHost {
            host: name.to_string(),
            known: HOSTS.iter().map(|h| h.name).collect::<Vec<_>>().join(", "),
        })
}

// ---- up ---------------------------------------------------------------------

/// Builds the lab in `dir`; the panel listens on 127.0.0.1:`panel_port` (0:
/// any free port). `progress` hears each step. On failure everything made so
/// far is removed again.
pub fn up(
    dir: &Path,
    panel_port: u16,
    connect: ConnectPanel<'_>,
    progress: &dyn Fn(&str),
) -> Result<LabState, LabError> {
    need_root()?;
    if let Some(st) = load_state(dir)? {
        return Err(LabError::AlreadyUp {
            state: if st.complete { "up" } else { "half built" },
            dir: dir.to_path_buf(),
            namespaces: st.namespaces.len(),
        });
    }
    if let Some(h) = HOSTS.iter().find(|h| topology::exists(&h.namespace())) {
        return Err(LabError::Failed(format!(
            "namespace {} exists but no lab state is in {}; run `portwall lab down` to remove it",
            h.namespace(),
            dir.display()
        )));
    }
    let bins = Binaries {
        panel: process::find_binary("portwall-panel")?,
        edge: process::find_binary("portwall-edge")?,
        me: std::env::current_exe().map_err(failed("finding the running portwall binary"))?,
    };
    std::fs::create_dir_all(dir).map_err(failed(format!("creating {}", dir.display())))?;
    let mut st = LabState::default();
    save_state(dir, &st)?;
    match build(dir, panel_port, &mut st, &bins, connect, progress) {
        Ok(()) => {
            st.complete = true;
            save_state(dir, &st)?;
            progress("the lab is up");
            Ok(st)
        }
        Err(e) => {
            eprintln!("portwall: lab up failed: {e}; removing what was created");
            teardown(dir, &st);
            Err(e)
        }
    }
}

struct Binaries {
    panel: PathBuf,
    edge: PathBuf,
    me: PathBuf,
}

fn build(
    dir: &Path,
    panel_port: u16,
    st: &mut LabState,
    bins: &Binaries,
    connect: ConnectPanel<'_>,
    progress: &dyn Fn(&str),
) -> Result<(), LabError> {
    progress("creating namespaces and wiring internet — edge — servers");
    topology::build(|name| {
        st.namespaces.push(name.to_string());
        save_state(dir, st)
    })?;

    progress("making the lab's CA and the panel's certificate");
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir).map_err(failed(format!("creating {}", tls_dir.display())))?;
    let ca = tls::authority::Authority::new("portwall lab CA")
        .and_then(|ca| ca.issue_files(&tls_dir, "panel", &["127.0.0.1", PANEL_V4, "localhost"]))
        .map_err(|e| LabError::Failed(e.to_string()))?;
    st.panel_ca = Some(ca.ca.clone());

    progress("starting the panel (HTTPS)");
    let port = if panel_port == 0 {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(failed("finding a free port for the panel"))?
            .port()
    } else {
        panel_port
    };
    let mut cmd = Command::new(&bins.panel);
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.join("panel"))
        .arg("--tls-cert")
        .arg(&ca.cert)
        .arg("--tls-key")
        .arg(&ca.key)
        .env("RUST_LOG", "info,sqlx=warn");
    let panel = Proc::spawn(dir, "panel", cmd).map_err(failed("starting the panel"))?;
    st.processes.push(panel.clone());
    save_state(dir, st)?;
    let token = process::wait_for("the panel's admin token", Duration::from_secs(60), || {
        if !panel.alive() {
            return Some(None);
        }
        let text = std::fs::read_to_string(&panel.log).ok()?;
        text.lines()
            .find_map(|l| l.split_once("admin token (shown once, keep it safe): "))
            .map(|(_, t)| Some(t.trim().to_string()))
    })?
    .ok_or_else(|| LabError::Failed(format!("the panel exited; see {}", panel.log.display())))?;
    let url = format!("https://127.0.0.1:{port}");
    st.panel_url = Some(url.clone());
    st.lab_panel_url = Some(if PANEL_PORT == 443 {
        format!("https://{PANEL_V4}")
    } else {
        format!("https://{PANEL_V4}:{PANEL_PORT}")
    });
    st.admin_token = Some(token.clone());
    save_state(dir, st)?;

    progress("starting the servers' services and the panel's address in the lab");
    let mut cmd = Command::new(&bins.me);
    cmd.arg("lab")
        .arg("--dir")
        .arg(dir)
        .args(["serve", "--panel-port", &port.to_string()]);
    let _ = std::fs::remove_file(dir.join(serve::READY_FILE));
    let services = Proc::spawn(dir, "serve", cmd).map_err(failed("starting lab serve"))?;
    st.processes.push(services.clone());
    save_state(dir, st)?;
    process::wait_for("the lab services", Duration::from_secs(20), || {
        if !services.alive() {
            return Some(false);
        }
        dir.join(serve::READY_FILE).exists().then_some(true)
    })?
    .then_some(())
    .ok_or_else(|| {
        LabError::Failed(format!(
            "the lab service process exited; see {}",
            services.log.display()
        ))
    })?;

    progress("registering the customer, its servers and the edge");
    let etoken = register(st, &url, &token, &ca.ca, connect)?;
    save_state(dir, st)?;

    progress("starting the edge agent in pwlab-edge");
    let edge_state = dir.join("edge");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &topology::namespace("edge")])
        .arg(&bins.edge)
        .arg("run")
        .arg("--panel-url")
        .arg(st.lab_panel_url.as_deref().unwrap_or_default())
        .arg("--panel-ca")
        .arg(&ca.ca)
        .args(["--zone", ZONE, "--mode", "forward", "--name", "lab-edge"])
        .args(["--counters-every", "10", "--backoff-max", "5"])
        .arg("--state-dir")
        .arg(&edge_state)
        .env("PORTWALL_EDGE_TOKEN", &etoken)
        .env("RUST_LOG", "info");
    let agent = Proc::spawn(dir, "edge", cmd).map_err(failed("starting the edge agent"))?;
    st.processes.push(agent.clone());
    save_state(dir, st)?;
    process::wait_for("the edge's first sync", Duration::from_secs(30), || {
        if !agent.alive() {
            return Some(false);
        }
        let s = edge_status(&bins.edge, &edge_state)?;
        let note = &s["agent"];
        (note["panel_reachable"] == true && note["revision"].is_u64()).then_some(true)
    })?
    .then_some(())
    .ok_or_else(|| {
        LabError::Failed(format!(
            "the edge agent exited; see {}",
            agent.log.display()
        ))
    })
}

/// Registers the lab's customer (web login, API token), its servers and an
/// edge token; returns the edge token.
fn register(
    st: &mut LabState,
    url: &str,
    admin_token: &str,
    ca: &Path,
    connect: ConnectPanel<'_>,
) -> Result<String, LabError> {
    let admin = connect(url, admin_token, ca).map_err(LabError::Failed)?;
    let api = |path: &str, body: Value| {
        admin
            .post(path, &body)
            .map_err(|e| LabError::Failed(format!("panel API {path}: {e}")))
    };
    let customer = api(
        "/v1/customers",
        json!({"name": "Lab Customer", "email": "customer@example.com"}),
    )?;
    let cid = customer["id"]
        .as_i64()
        .ok_or_else(|| LabError::Failed("the panel's customer has no id".into()))?;
    st.customer_id = Some(cid);
    api(
        "/v1/users",
        json!({"login": LOGIN, "password": PASSWORD, "customer_id": cid}),
    )?;
    for h in HOSTS.iter() {
        let Some(kind) = h.kind() else { continue };
        let s = api(
            "/v1/servers",
            json!({"customer_id": cid, "name": h.name, "type": kind, "ipv4": [h.v4], "ipv6": [h.v6], "zone": ZONE}),
        )?;
        st.servers.push(LabServer {
            name: h.name.to_string(),
            id: s["id"]
                .as_i64()
                .ok_or_else(|| LabError::Failed("the panel's server has no id".into()))?,
            kind: kind.to_string(),
            ipv4: h.v4.to_string(),
            ipv6: h.v6.to_string(),
        });
    }
    let ctoken = api(
        "/v1/tokens",
        json!({"name": "lab customer", "kind": "customer", "scope": "write", "customer_id": cid}),
    )?;
    st.customer_token = ctoken["token"].as_str().map(String::from);
    let etoken = api(
        "/v1/tokens",
        json!({"name": "lab edge", "kind": "edge", "zone": ZONE}),
    )?;
    etoken["token"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| LabError::Failed("the panel's edge token has no secret".into()))
}

/// `portwall-edge status --json` inside `pwlab-edge` (None when it cannot
/// run or says nothing).
fn edge_status(edge_bin: &Path, state_dir: &Path) -> Option<Value> {
    let out = Command::new("ip")
        .args(["netns", "exec", &topology::namespace("edge")])
        .arg(edge_bin)
        .args(["status", "--json", "--mode", "forward", "--state-dir"])
        .arg(state_dir)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

// ---- down -------------------------------------------------------------------

/// Removes everything the lab created; best effort, never stops halfway.
fn teardown(dir: &Path, st: &LabState) {
    // The edge first (it keeps the last policy in force; the namespace goes anyway).
    for p in st.processes.iter().rev() {
        p.stop();
    }
    let mut names: Vec<String> = st.namespaces.clone();
    for h in &HOSTS {
        if !names.contains(&h.namespace()) {
            names.push(h.namespace());
        }
    }
    for n in &names {
        topology::remove(n);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// What `down` did.
#[derive(Debug, Serialize)]
pub struct DownReport {
    /// Whether there was anything to remove.
    pub removed: bool,
    /// Namespaces that could not be removed.
    pub left: Vec<String>,
}

pub fn down(dir: &Path) -> Result<DownReport, LabError> {
    need_root()?;
    let st = load_state(dir)?.unwrap_or_default();
    let had = !st.namespaces.is_empty()
        || HOSTS.iter().any(|h| topology::exists(&h.namespace()))
        || dir.exists();
    teardown(dir, &st);
    let left = HOSTS
        .iter()
        .map(|h| h.namespace())
        .filter(|n| topology::exists(n))
        .collect();
    Ok(DownReport { removed: had, left })
}

// ---- status -----------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct Component {
    pub name: String,
    pub state: String,
    pub detail: String,
}

impl Component {
    pub fn is_ok(&self) -> bool {
        self.state == "ok" || self.state == "running"
    }
}

/// The lab's state and the health of each part.
#[derive(Debug)]
pub struct Status {
    pub state: LabState,
    pub components: Vec<Component>,
}

impl Status {
    pub fn healthy(&self) -> bool {
        self.state.complete && self.components.iter().all(Component::is_ok)
    }
}

fn reachable(url: &str) -> bool {
    let host_port = url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let addr = host_port
        .parse::<SocketAddr>()
        .or_else(|_| format!("{host_port}:443").parse::<SocketAddr>());
    addr.is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

/// None when no lab is up in `dir`.
pub fn status(dir: &Path) -> Result<Option<Status>, LabError> {
    let Some(st) = load_state(dir)? else {
        return Ok(None);
    };
    let mut rows = Vec::new();
    for n in &st.namespaces {
        rows.push(Component {
            name: n.clone(),
            state: if topology::exists(n) { "ok" } else { "MISSING" }.into(),
            detail: "network namespace".into(),
        });
    }
    for p in &st.processes {
        rows.push(Component {
            name: p.name.clone(),
            state: if p.alive() { "running" } else { "STOPPED" }.into(),
            detail: format!("pid {}, log {}", p.pid, p.log.display()),
        });
    }
    if let Some(url) = &st.panel_url {
        rows.push(Component {
            name: "panel-api".into(),
            state: if reachable(url) { "ok" } else { "UNREACHABLE" }.into(),
            detail: url.clone(),
        });
    }
    let edge = process::find_binary("portwall-edge")
        .ok()
        .and_then(|b| edge_status(&b, &dir.join("edge")));
    if let Some(s) = edge.filter(|s| s["agent"].is_object()) {
        let note = &s["agent"];
        rows.push(Component {
            name: "edge-sync".into(),
            state: if note["panel_reachable"] == true {
                "ok"
            } else {
                "PANEL UNREACHABLE"
            }
            .into(),
            detail: format!(
                "revision {}, {} enforced server(s){}",
                note["revision"]
                    .as_u64()
                    .map_or("-".into(), |r| r.to_string()),
                s["enforced"].as_u64().unwrap_or(0),
                note["last_error"]
                    .as_str()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            ),
        });
    }
    Ok(Some(Status {
        state: st,
        components: rows,
    }))
}

// ---- exec -------------------------------------------------------------------

/// Replaces this process with `command` run on lab host `host`, with its own
/// OS-firewall state directory, portwall's binaries on PATH, and the panel at
/// its lab address ([`LabState::panel_env`]; variables already set win).
/// Returns only on error.
pub fn exec(dir: &Path, host_name: &str, command: &[String]) -> LabError {
    use std::os::unix::process::CommandExt;
    if let Err(e) = need_root() {
        return e;
    }
    let host = match host(host_name) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let name = host.namespace();
    if !topology::exists(&name) {
        return LabError::Failed(format!("{name} does not exist: `portwall lab up` first"));
    }
    let config = dir.join("hosts").join(host.name);
    if let Err(e) = std::fs::create_dir_all(&config) {
        return failed(format!("creating {}", config.display()))(e);
    }
    let mut path = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.as_os_str().to_owned()))
        .unwrap_or_default();
    if let Some(p) = std::env::var_os("PATH") {
        path.push(":");
        path.push(p);
    }
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &name])
        .args(command)
        .env("PATH", path)
        .env("PORTWALL_CONFIG_DIR", &config);
    if let Ok(Some(st)) = load_state(dir) {
        for (k, v) in st.panel_env() {
            if std::env::var_os(k).is_none() {
                cmd.env(k, v);
            }
        }
    }
    let err = cmd.exec();
    LabError::Failed(format!("cannot run ip netns exec: {err}"))
}
