//! `status --verbose` counters and `audit` classes, against the real kernel in
//! namespaces this test creates.

mod common;
use common::portwall;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use testns::{Netns, Pair};

fn json(ns: &Netns, dir: &Path, args: &[&str]) -> serde_json::Value {
    let o = portwall(ns, dir, args);
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn counters_count_the_packets_sent_and_zero_resets_them() {
    let pair = Pair::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for args in [
        &["enable"][..],
        &["allow", "5000/udp"],
        &["deny", "5001/udp"],
    ] {
        assert!(portwall(&pair.server, d, args).status.success());
    }
    let server = pair.server_addr.v4.clone();
    const PAYLOAD: usize = 100;
    pair.client.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..7 {
            s.send_to(&[0u8; PAYLOAD], format!("{server}:5000"))
                .unwrap();
        }
        for _ in 0..5 {
            s.send_to(&[0u8; PAYLOAD], format!("{server}:5001"))
                .unwrap();
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    let v = json(&pair.server, d, &["status", "--verbose", "--json"]);
    let rules = v["rules"].as_array().unwrap();
    assert_eq!(rules[0]["counters"]["packets"], 7, "{v}");
    assert_eq!(rules[0]["counters"]["bytes"], 7 * (20 + 8 + PAYLOAD), "{v}");
    assert_eq!(rules[1]["counters"]["packets"], 5, "{v}");
    let text = String::from_utf8_lossy(&portwall(&pair.server, d, &["status", "--verbose"]).stdout)
        .into_owned();
    assert!(
        text.contains("allow 5000/udp") && text.contains("default deny incoming"),
        "{text}"
    );
    assert!(portwall(&pair.server, d, &["status", "--zero"])
        .status
        .success());
    let v = json(&pair.server, d, &["status", "--verbose", "--json"]);
    assert_eq!(v["rules"][0]["counters"]["packets"], 0, "{v}");
}

/// Issue 17: the counters of unchanged rules survive a change, on both
/// backends. A rule inserted first renumbers every rule and changes the
/// table's structure (the nftables table is replaced, the iptables chains
/// restored); an unrelated `allow` afterwards is another change.
#[test]
fn counters_survive_changes_on_both_backends() {
    for backend in ["nft", "iptables"] {
        let pair = Pair::new();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let run = |args: &[&str]| common::ok_on(&pair.server, d, backend, args);
        for args in [
            &["enable"][..],
            &["allow", "5000/udp"],
            &["deny", "5001/udp"],
        ] {
            run(args);
        }
        let server = pair.server_addr.v4.clone();
        pair.client.run(|| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            for (port, times) in [(5000, 7), (5001, 5)] {
                for _ in 0..times {
                    s.send_to(&[0u8; 100], format!("{server}:{port}")).unwrap();
                }
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        // The `status --verbose --json` row of the rule whose text holds `text`.
        let row = |text: &str| {
            let v: serde_json::Value =
                serde_json::from_str(&run(&["status", "--verbose", "--json"])).unwrap();
            v["rules"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["rule"].as_str().is_some_and(|r| r.contains(text)))
                .unwrap_or_else(|| panic!("{backend}: {text} in {v}"))
                .clone()
        };
        let packets = |text: &str| row(text)["counters"]["packets"].as_u64().unwrap();
        assert_eq!(
            (packets("5000/udp"), packets("5001/udp")),
            (7, 5),
            "{backend}"
        );
        // Since when they count: a kept rule keeps its time, a new one
        // counts from its change (times in whole seconds, so a second
        // passes between the two).
        let since = |text: &str| {
            let r = row(text);
            r["counting_since"]
                .as_u64()
                .unwrap_or_else(|| panic!("{backend}: {text} has no counting_since in {r}"))
        };
        let enabled_at = since("5000/udp");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let inserted_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        run(&["insert", "1", "reject", "in", "on", "eth9", "25/tcp"]);
        assert_eq!(
            (packets("5000/udp"), packets("5001/udp")),
            (7, 5),
            "{backend}"
        );
        assert_eq!(since("5000/udp"), enabled_at, "{backend}");
        assert!(
            since("25/tcp") >= inserted_at && enabled_at < inserted_at,
            "{backend}"
        );
        run(&["allow", "6000/tcp", "from", "203.0.113.0/24"]);
        assert_eq!(
            (packets("5000/udp"), packets("5001/udp")),
            (7, 5),
            "{backend}"
        );
        assert_eq!(packets("6000/tcp"), 0, "{backend}");
        assert_eq!(since("5000/udp"), enabled_at, "{backend}");
        let text = run(&["status", "--verbose"]);
        assert!(text.contains("counted for"), "{backend}: {text}");
        run(&["disable"]);
    }
}

#[test]
fn audit_gives_the_four_classes_and_flags_exposed_databases() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Listeners owned by this test, inside the namespace.
    let _socks = ns.run(|| {
        [
            "0.0.0.0:5432",
            "0.0.0.0:22",
            "0.0.0.0:80",
            "127.0.0.1:6379",
            "0.0.0.0:3306",
        ]
        .map(|a| TcpListener::bind(a).unwrap())
    });
    for args in [
        &["--force", "enable"][..],
        &["deny", "5432/tcp"],
        &["allow", "22/tcp", "from", "203.0.113.0/24"],
        &["allow", "80/tcp"],
    ] {
        assert!(portwall(&ns, d, args).status.success(), "{args:?}");
    }
    let o = portwall(&ns, d, &["audit", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "3306 is blocked by the default policy: nothing risky is exposed"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let class = |port: u16| {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["port"] == port)
            .unwrap_or_else(|| panic!("{port} in {v}"))["class"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(class(5432), "BLOCKED");
    assert_eq!(class(22), "RESTRICTED");
    assert_eq!(class(80), "EXPOSED");
    assert_eq!(class(6379), "LOCAL-ONLY");
    assert!(portwall(&ns, d, &["allow", "3306/tcp"]).status.success());
    let o = portwall(&ns, d, &["audit"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "an exposed mysql: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("RISK: mysql"));
}

/// Socket owners come from the kernel's task-file iterator only where its
/// pids are the ones /proc shows (the initial pid namespace). In a child pid
/// namespace `--owners kernel` fails and says why, and the default finds the
/// same owner by walking /proc.
#[test]
fn ports_in_a_child_pid_namespace_take_owners_from_proc() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let _listener = ns.run(|| TcpListener::bind("127.0.0.1:7077").unwrap());
    let me = u64::from(std::process::id());
    let ports = |unshare: bool, owners: &str| {
        let bin = env!("CARGO_BIN_EXE_portwall");
        let args = ["ports", "--port", "7077", "--json", "--owners", owners];
        let mut c = if unshare {
            let mut c = ns.command("unshare");
            c.args(["--pid", "--fork", "--", bin]);
            c
        } else {
            ns.command(bin)
        };
        c.args(args)
            .env("PORTWALL_CONFIG_DIR", dir.path())
            .output()
            .unwrap()
    };
    let owner_pids = |o: &std::process::Output| -> Vec<u64> {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v[0]["owners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["pid"].as_u64().unwrap())
            .collect()
    };
    // The listener's descriptor is close-on-exec, but a process another
    // test thread forks holds it until its exec: such a passing owner is
    // seen now and then on a busy machine. The answer must settle on this
    // process alone (a few tries, bounded).
    let settles_on_me = |unshare: bool, owners: &str| {
        let mut seen = Vec::new();
        for _ in 0..10 {
            seen = owner_pids(&ports(unshare, owners));
            if seen == vec![me] {
                return;
            }
            assert!(seen.contains(&me), "--owners {owners}: {seen:?}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("--owners {owners} (unshare {unshare}): {seen:?}, not only {me}");
    };
    for owners in ["kernel", "proc", "auto"] {
        settles_on_me(false, owners);
    }
    let refused = ports(true, "kernel");
    assert_eq!(refused.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    let message = error["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("pid namespace") && message.contains("--owners proc"),
        "{error}"
    );
    settles_on_me(true, "auto");
    settles_on_me(true, "proc");
}

/// Without root the kernel refuses the iterator: `--owners kernel` says what
/// it needs, and the default lists the sockets with the owners a /proc walk
/// may see (none of root's: their descriptors are not another user's to read).
#[test]
fn ports_without_root_walk_proc_and_say_what_the_iterator_needs() {
    let ns = Netns::new();
    let _listener = ns.run(|| TcpListener::bind("127.0.0.1:7078").unwrap());
    let as_nobody = |owners: &str| {
        ns.command("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_portwall"))
            .args(["ports", "--port", "7078", "--json", "--owners", owners])
            .output()
            .unwrap()
    };
    let refused = as_nobody("kernel");
    assert_eq!(refused.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    let message = error["error"].as_str().unwrap_or_default();
    assert!(message.contains("CAP_BPF"), "{error}");
    let listed = as_nobody("auto");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["owners"], serde_json::json!([]), "{v}");
}
