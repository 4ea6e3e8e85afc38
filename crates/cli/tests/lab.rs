//! The README's main job, `portwall lab`, as a newcomer runs it: the real
//! `portwall`, `portwall-panel` and `portwall-edge` binaries, the lab's own
//! namespaces (`pwlab-*`), the panel on HTTPS with the lab's own CA, a network
//! firewall made through the panel with `portwall cloud`, and a probe from the
//! lab's `internet` host that sees the port turn from open to filtered. Inside
//! vps1, `portwall audit` reaches the panel at its address in the lab (over
//! HTTPS, with the lab's CA) and shows the network firewall next to the OS
//! firewall. Then the lab's processes are killed, as a crash would, and `lab
//! down` must still remove everything.
//!
//! The lab's namespace names are fixed, so `lab up` refuses to run when a lab
//! is already up on this machine; this test then fails rather than touch it.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_portwall"))
        .parent()
        .expect("the binary's directory")
        .to_path_buf()
}

/// `lab up` starts the panel and the edge from next to `portwall`. A
/// workspace test run builds them; a run of this package alone may not have.
fn ensure_lab_binaries() {
    let dir = bin_dir();
    if ["portwall-panel", "portwall-edge"]
        .iter()
        .all(|b| dir.join(b).is_file())
    {
        return;
    }
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(["build", "--bins", "-p", "panel", "-p", "edge"]);
    if dir.ends_with("release") {
        c.arg("--release");
    }
    let st = c.status().expect("run cargo build");
    assert!(
        st.success(),
        "building portwall-panel and portwall-edge failed"
    );
}

/// The lab in `dir`; dropping it runs `lab down`, so a failed assertion leaves
/// nothing behind.
struct Lab {
    dir: tempfile::TempDir,
    config: tempfile::TempDir,
    up: Value,
}

impl Lab {
    fn command(&self) -> Command {
        let mut c = common::portwall_command(None, self.config.path());
        c.arg("lab").arg("--dir").arg(self.dir.path());
        c
    }

    fn lab(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("run portwall lab")
    }

    /// `portwall cloud ARGS` as the lab's customer.
    fn cloud(&self, args: &[&str]) -> Output {
        common::portwall_command(None, self.config.path())
            .env("PORTWALL_PANEL_URL", self.up["panel_url"].as_str().unwrap())
            .env("PORTWALL_PANEL_CA", self.up["panel_ca"].as_str().unwrap())
            .env(
                "PORTWALL_TOKEN",
                self.up["customer_token"].as_str().unwrap(),
            )
            .arg("cloud")
            .args(args)
            .output()
            .expect("run portwall cloud")
    }

    fn server_ip(&self, name: &str) -> String {
        self.up["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no server {name} in {}", self.up))["ipv4"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The states of `ports` of `ip`, probed from the lab's internet host.
    fn probe(&self, ip: &str, ports: &str) -> Vec<(u64, String)> {
        let me = env!("CARGO_BIN_EXE_portwall");
        let v = json(&self.lab(&["exec", "internet", "--", me, "probe", ip, ports, "--json"]));
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["port"].as_u64().unwrap(),
                    r["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.lab(&["down"]);
    }
}

#[track_caller]
fn success(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn json(o: &Output) -> Value {
    let out = success(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn pid_alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn lab_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("pwlab-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_lab_shows_both_layers_and_comes_down_after_a_crash() {
    ensure_lab_binaries();
    let dir = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let mut lab = Lab {
        dir,
        config,
        up: Value::Null,
    };
    lab.up = json(&lab.lab(&["up", "--json"]));
    let status = json(&lab.lab(&["status", "--json"]));
    assert_eq!(status["healthy"], true, "{status}");
    // The panel is on HTTPS, and inside the lab at an address of the lab's network.
    assert!(
        lab.up["panel_url"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{}",
        lab.up
    );
    assert_eq!(
        lab.up["lab_panel_url"], "https://203.0.113.254",
        "{}",
        lab.up
    );
    assert!(
        Path::new(lab.up["panel_ca"].as_str().unwrap()).is_file(),
        "{}",
        lab.up
    );
    let vps1 = lab.server_ip("vps1");

    // No network firewall yet: the lab's services on vps1 answer.
    let open = |p: u64| (p, "open".to_string());
    let filtered = |p: u64| (p, "filtered".to_string());
    assert_eq!(lab.probe(&vps1, "22,80"), vec![open(22), open(80)]);

    // A firewall that allows SSH only, made, assigned and enabled with
    // `portwall cloud`; a Dedicated server cannot have one.
    success(&lab.cloud(&["firewall", "create", "ssh-only"]));
    success(&lab.cloud(&["firewall", "add-rule", "ssh-only", "--preset", "ssh"]));
    success(&lab.cloud(&["firewall", "assign", "ssh-only", "vps1"]));
    let refused = lab.cloud(&["firewall", "assign", "ssh-only", "dedi1"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Dedicated"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    success(&lab.cloud(&["firewall", "enable", "ssh-only"]));

    // The edge enforces it: 80 turns filtered from the internet, 22 stays open.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = lab.probe(&vps1, "22,80");
        if seen == vec![open(22), filtered(80)] {
            break;
        }
        assert!(Instant::now() < deadline, "still {seen:?} after 15 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Inside vps1, `portwall audit` reaches the panel at its lab address over
    // HTTPS and shows both layers: the network firewall lets only SSH in, the
    // OS firewall (nothing configured) everything.
    let me = env!("CARGO_BIN_EXE_portwall");
    let audit = json(&lab.lab(&["exec", "vps1", "--", me, "audit", "--json"]));
    let net = &audit["network_firewall"];
    assert_eq!(net["state"], "enforced", "{audit}");
    assert_eq!(net["server"]["name"], "vps1", "{audit}");
    assert_eq!(net["firewalls"][0]["name"], "ssh-only", "{audit}");
    let finding = |port: u64| {
        audit["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| {
                f["port"] == port && f["proto"].as_str().is_some_and(|p| p.starts_with("tcp"))
            })
            .unwrap_or_else(|| panic!("no finding for tcp {port} in {audit}"))
            .clone()
    };
    let http = finding(80);
    assert_eq!(http["network_firewall"]["reach"], "nobody", "{http}");
    assert_eq!(http["os_firewall"]["reach"], "anyone", "{http}");
    assert_eq!(http["reachable_from"]["reach"], "nobody", "{http}");
    let ssh = finding(22);
    assert_eq!(ssh["network_firewall"]["reach"], "anyone", "{ssh}");
    assert_eq!(ssh["reachable_from"]["reach"], "anyone", "{ssh}");
    // The human form names both layers.
    let text = success(&lab.lab(&["exec", "vps1", "--", me, "audit"]));
    assert!(text.contains("ssh-only"), "{text}");

    // vps2 has no firewall: untouched.
    assert_eq!(lab.probe(&lab.server_ip("vps2"), "80"), vec![open(80)]);
    // And the panel says the edge applied it.
    let st = json(&lab.cloud(&["firewall", "status", "ssh-only", "--json"]));
    assert_eq!(st["servers"][0]["name"], "vps1", "{st}");
    assert_eq!(st["servers"][0]["status"], "applied", "{st}");

    // A crash: every process of the lab is killed, nothing is cleaned up.
    let pids: Vec<u64> = lab.up["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids.len(), 3, "{}", lab.up);
    for &pid in &pids {
        assert!(pid_alive(pid), "process {pid} of the lab is not running");
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let status = lab.lab(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&status.stdout).unwrap_or(Value::Null);
    assert_eq!(v["healthy"], false, "{v}");

    // `lab down` still removes everything: namespaces, processes, state.
    success(&lab.lab(&["down"]));
    assert_eq!(lab_namespaces(), Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| pid_alive(p)) {
        assert!(Instant::now() < deadline, "lab processes still running");
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = lab.lab(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&after.stdout).unwrap_or(Value::Null);
    assert_eq!(v["up"], false, "{v}");
}
