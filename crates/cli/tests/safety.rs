//! Never lock the operator out: a simulated SSH session (a listener on 22 with an
//! established connection from a peer namespace) that a change would cut.

mod common;
use common::portwall;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use testns::Pair;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An "sshd" on the server's port 22 and one established session from the client.
fn ssh_session(pair: &Pair) -> (TcpStream, std::thread::JoinHandle<()>) {
    let listener = pair.server.run(|| TcpListener::bind("[::]:22").unwrap());
    let server = std::thread::spawn(move || {
        let mut held = Vec::new();
        if let Ok((s, _)) = listener.accept() {
            held.push(s);
            std::thread::sleep(Duration::from_secs(30));
        }
    });
    let addr = format!("{}:22", pair.server_addr.v4);
    let client = pair.client.run(|| TcpStream::connect(addr).unwrap());
    (client, server)
}

fn rule_actions(pair: &Pair, dir: &Path) -> Vec<String> {
    let o = portwall(&pair.server, dir, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_change_that_cuts_the_session_is_refused_unless_forced() {
    let pair = Pair::new();
    let _session = ssh_session(&pair);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Enabling with the default "deny incoming" and no rule for SSH would cut it.
    let o = portwall(&pair.server, d, &["enable"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains(pair.client_addr.v4.as_str())
            && t.contains(":22")
            && t.contains("default policy"),
        "{t}"
    );
    assert!(
        pair.server
            .exec(&["nft", "list", "table", "inet", "portwall"])
            .stdout
            .is_empty(),
        "nothing applied"
    );

    assert!(portwall(&pair.server, d, &["allow", "22/tcp"])
        .status
        .success());
    let o = portwall(&pair.server, d, &["enable"]);
    assert!(o.status.success(), "{}", text(&o));
    // A deny that replaces the SSH allow is refused, naming the rule.
    let o = portwall(&pair.server, d, &["deny", "22/tcp"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("rule 1 (deny 22/tcp)"), "{}", text(&o));
    assert_eq!(rule_actions(&pair, d), ["allow 22/tcp"]);
    let o = portwall(&pair.server, d, &["--force", "deny", "22/tcp"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(rule_actions(&pair, d), ["deny 22/tcp"]);
}

#[test]
fn an_unconfirmed_change_rolls_back_even_when_its_process_is_killed() {
    let pair = Pair::new();
    let _session = ssh_session(&pair);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(portwall(&pair.server, d, &["allow", "22/tcp"])
        .status
        .success());
    assert!(portwall(&pair.server, d, &["enable"]).status.success());

    // The risky change runs in its own process group, which is killed at once.
    let mut child = pair
        .server
        .command(env!("CARGO_BIN_EXE_portwall"))
        .env("PORTWALL_CONFIG_DIR", d)
        .env_remove("SSH_CONNECTION")
        .args(["--confirm", "5", "deny", "22/tcp"])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    assert!(child.wait().unwrap().success());
    let _ = std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{pgid}")])
        .status();
    assert_eq!(rule_actions(&pair, d), ["deny 22/tcp"], "applied at once");
    let status: serde_json::Value =
        serde_json::from_slice(&portwall(&pair.server, d, &["status", "--json"]).stdout).unwrap();
    assert!(
        status["pending_confirmation"]["deadline"].is_u64(),
        "{status}"
    );
    assert!(text(&portwall(&pair.server, d, &["status"])).contains("PENDING"));

    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        rule_actions(&pair, d),
        ["allow 22/tcp"],
        "rolled back at the deadline"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&portwall(&pair.server, d, &["status", "--json"]).stdout).unwrap();
    assert!(status["pending_confirmation"].is_null(), "{status}");
    assert!(
        status["kernel_drift"].as_array().unwrap().is_empty(),
        "{status}"
    );
}

#[test]
fn a_confirmed_change_stays() {
    let pair = Pair::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(portwall(&pair.server, d, &["--force", "enable"])
        .status
        .success());
    let o = portwall(&pair.server, d, &["--confirm", "5", "allow", "8080/tcp"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("portwall confirm"), "{}", text(&o));
    assert!(portwall(&pair.server, d, &["confirm"]).status.success());
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(rule_actions(&pair, d), ["allow 8080/tcp"]);
}

/// sshd on a port of its own is found by its process name: a session to
/// port 2222 of a process named `sshd` is protected, and one to another
/// process's port 2223 is not an SSH session.
#[test]
fn sshd_on_another_port_is_found_by_its_name() {
    let pair = Pair::new();
    // A process named sshd (its comm set with prctl) listening on 2222, and
    // one named otherd on 2223; each accepts one connection and holds it.
    let listener = |name: &str, port: u16| {
        let script = format!(
            "import ctypes, socket, sys, time\n\
             ctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)\n\
             s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('::', {port})); s.listen(8)\n\
             print('ready', flush=True)\n\
             c, _ = s.accept()\n\
             time.sleep(30)\n"
        );
        let mut child = pair
            .server
            .command("python3")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready");
        child
    };
    let mut sshd = listener("sshd", 2222);
    let mut other = listener("otherd", 2223);
    let connect = |port: u16| {
        let addr = format!("{}:{port}", pair.server_addr.v4);
        pair.client.run(|| TcpStream::connect(addr).unwrap())
    };
    let (_a, _b) = (connect(2222), connect(2223));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for port in ["2222/tcp", "2223/tcp"] {
        let o = portwall(&pair.server, d, &["allow", port]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = portwall(&pair.server, d, &["enable"]);
    assert!(o.status.success(), "{}", text(&o));
    // Closing 2223 cuts no SSH session; closing 2222 would.
    let o = portwall(&pair.server, d, &["deny", "2223/tcp"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = portwall(&pair.server, d, &["deny", "2222/tcp"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(":2222"), "{}", text(&o));
    for child in [&mut sshd, &mut other] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
