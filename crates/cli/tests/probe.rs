//! `portwall probe` through the real binary, run in a client namespace against a
//! server namespace: output, `--json`, `--expect` exit codes, bad input, names with
//! IPv4 and IPv6 addresses. Runs as root; firewall rules go into the server
//! namespace only.

use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::process::Output;
use testns::{Netns, Pair};

const BANNER: &str = "SSH-2.0-OpenSSH_9.2p1 portwall-test";

/// TCP listener on both families; `banner`: the first line it sends.
fn tcp_listen(ns: &Netns, port: u16, banner: Option<&'static str>) {
    let l: TcpListener = ns.run(|| TcpListener::bind(("::", port)).expect("bind"));
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        for mut s in l.incoming().flatten() {
            if let Some(b) = banner {
                let _ = s.write_all(format!("{b}\r\n").as_bytes());
            }
            keep.push(s);
        }
    });
}

/// UDP socket on both families that never answers.
fn udp_silent(ns: &Netns, port: u16) {
    let s: UdpSocket = ns.run(|| UdpSocket::bind(("::", port)).expect("bind"));
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        let _ = s.local_addr();
    });
}

/// 22 open (with a banner), 80 open (silent), 9001 dropped, 9041 closed; UDP 7001
/// bound but silent, 7131 closed.
fn lab() -> Pair {
    let pair = Pair::new();
    tcp_listen(&pair.server, 22, Some(BANNER));
    tcp_listen(&pair.server, 80, None);
    udp_silent(&pair.server, 7001);
    let path = std::env::temp_dir().join(format!(
        "cli-probe-test-{}-{}.nft",
        std::process::id(),
        pair.server.name()
    ));
    std::fs::write(
        &path,
        "table inet t {\n chain input {\n  type filter hook input priority 0;\n  tcp dport 9001 drop\n }\n}\n",
    )
    .unwrap();
    pair.server.exec_ok(&["nft", "-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    pair
}

/// Runs `portwall ARGS` inside the client namespace.
fn portwall(ns: &Netns, args: &[&str]) -> Output {
    let mut c = ns.command(env!("CARGO_BIN_EXE_portwall"));
    c.args(args).stdin(std::process::Stdio::null());
    c.output().expect("run portwall")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn expect_sets_the_exit_code() {
    let pair = lab();
    let v4 = pair.server_addr.v4.as_str();
    let v6 = pair.server_addr.v6.as_str();
    let cases: &[(&[&str], i32)] = &[
        (&[v4, "22", "--expect", "open"], 0),
        (&[v6, "22", "--expect", "open"], 0),
        (&[v4, "22", "--expect", "closed"], 1),
        (&[v4, "9041", "--expect", "closed"], 0),
        // "closed" means "not open": a dropped port is not open.
        (&[v4, "9001", "--expect", "closed"], 0),
        (&[v4, "9001", "--expect", "filtered"], 0),
        (&[v4, "9041", "--expect", "filtered"], 1),
        (&[v4, "22,80,9041", "--expect", "open"], 1),
        (&[v6, "22,80", "--expect", "open"], 0),
        // A silent UDP port may be open: it is not "closed", it is open|filtered.
        (&[v4, "7001", "--udp", "--expect", "closed"], 1),
        (&[v4, "7001", "--udp", "--expect", "open|filtered"], 0),
        (&[v4, "7131", "--udp", "--expect", "closed"], 0),
        // No expectation: exit 0 whatever the ports look like.
        (&[v4, "9001,9041"], 0),
    ];
    for (args, code) in cases {
        let mut argv = vec!["probe"];
        argv.extend_from_slice(args);
        let out = portwall(&pair.client, &argv);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "portwall {}\nstdout:\n{}\nstderr:\n{}",
            argv.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    let out = portwall(&pair.client, &["probe", v4, "22", "--expect", "closed"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("expected not open") && err.contains(&format!("22/tcp on {v4} is open")),
        "{err}"
    );
    let out = portwall(
        &pair.client,
        &["probe", v4, "7001", "--udp", "--expect", "closed"],
    );
    assert!(
        text(&out.stderr).contains("--expect open|filtered"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn human_output_is_a_table_with_banner_and_summary() {
    let pair = lab();
    let v4 = pair.server_addr.v4.as_str();
    let out = portwall(&pair.client, &["probe", v4, "22,80,9001,9041"]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "HOST/ADDRESS",
            "PORT",
            "PROTO",
            "STATE",
            "RTT",
            "BANNER/SERVICE"
        ]
    );
    let row = |port: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(port))
            .unwrap_or_else(|| panic!("no row for {port}:\n{stdout}"))
            .to_string()
    };
    assert!(
        row("22").contains("open") && row("22").ends_with(BANNER),
        "{}",
        row("22")
    );
    assert!(row("22").contains(" ms "), "an RTT: {}", row("22"));
    assert!(
        row("80").contains(" open ") && row("80").ends_with("http"),
        "{}",
        row("80")
    );
    let filtered: Vec<String> = row("9001").split_whitespace().map(str::to_string).collect();
    assert_eq!(
        filtered[3..],
        ["filtered", "-"],
        "no answer, no RTT, no service"
    );
    assert!(row("9041").contains(" closed "), "{}", row("9041"));
    // Aligned: the STATE column starts at the same place on every line.
    let col = lines[0].find("STATE").unwrap();
    for l in &lines[1..5] {
        let state = &l[col..];
        assert!(
            ["open", "closed", "filtered"]
                .iter()
                .any(|s| state.starts_with(s)),
            "{l:?}"
        );
    }
    let summary = lines.last().unwrap();
    assert!(
        summary.starts_with(&format!(
            "{v4}: 2 open, 1 closed, 1 filtered (4 tcp ports on 1 address"
        )),
        "{summary}"
    );
    assert!(
        text(&out.stderr).is_empty(),
        "no progress bar outside a terminal: {}",
        text(&out.stderr)
    );
}

#[test]
fn all_ports_lists_what_is_not_closed() {
    let pair = lab();
    let v4 = pair.server_addr.v4.as_str();
    let out = portwall(&pair.client, &["probe", v4, "--all"]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    let rows: Vec<&str> = stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("Not shown"))
        .collect();
    let ports: Vec<&str> = rows
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(ports, ["22", "80", "9001"], "{stdout}");
    assert!(
        stdout.contains("Not shown: 65532 closed ports (--show-closed lists them)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 open, 65532 closed, 1 filtered (65535 tcp ports"),
        "{stdout}"
    );
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));

    let out = portwall(&pair.client, &["probe", v4, "9030-9060", "--show-closed"]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.contains(" closed ")).count(),
        31,
        "{stdout}"
    );
    assert!(!stdout.contains("Not shown"));
}

#[test]
fn large_groups_of_filtered_ports_are_folded_too() {
    let pair = Pair::new();
    tcp_listen(&pair.server, 9150, None);
    let path = std::env::temp_dir().join(format!("cli-probe-fold-{}.nft", std::process::id()));
    std::fs::write(
        &path,
        "table inet t {\n chain input {\n  type filter hook input priority 0;\n  tcp dport 9100-9199 tcp dport != 9150 drop\n  tcp dport 9300 drop\n }\n}\n",
    )
    .unwrap();
    pair.server.exec_ok(&["nft", "-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    let v4 = pair.server_addr.v4.as_str();
    let out = portwall(&pair.client, &["probe", v4, "9000-9300"]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    let rows: Vec<&str> = stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("Not shown"))
        .collect();
    // Only the open port: the 100 filtered ones (a large group, 9300 included) and
    // the 200 closed ones are folded.
    assert_eq!(rows.len(), 1, "{stdout}");
    assert!(
        rows[0].contains(" 9150 ") && rows[0].contains(" open "),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("Not shown: 200 closed ports, 100 filtered ports (--show-closed lists them)"),
        "{stdout}"
    );
    // A small group of filtered ports is listed.
    let out = portwall(&pair.client, &["probe", v4, "9190-9300"]);
    let stdout = text(&out.stdout);
    let listed: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        &listed[..11],
        ["9190", "9191", "9192", "9193", "9194", "9195", "9196", "9197", "9198", "9199", "9300"],
        "{stdout}"
    );
    assert!(
        stdout.contains("Not shown: 100 closed ports (--show-closed lists them)"),
        "{stdout}"
    );
    let out = portwall(&pair.client, &["probe", v4, "9000-9300", "--show-closed"]);
    assert_eq!(
        text(&out.stdout).lines().count(),
        1 + 301 + 1,
        "header, every port, summary"
    );
}

#[test]
fn json_is_one_document_with_the_expectation() {
    let pair = lab();
    let v4 = pair.server_addr.v4.as_str();
    let out = portwall(
        &pair.client,
        &["probe", v4, "22,9041", "--json", "--expect", "open"],
    );
    assert_exit(&out, 1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v["host"], v4);
    assert_eq!(v["protocol"], "tcp");
    assert_eq!(v["ports"], "22,9041");
    assert_eq!(v["results"][0]["state"], "open");
    assert_eq!(v["results"][0]["banner"], BANNER);
    assert_eq!(v["results"][0]["reason"], "syn-ack");
    assert!(v["results"][0]["rtt_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(v["results"][1]["state"], "closed");
    assert!(v["results"][1]["rtt_ms"].is_number());
    assert_eq!(v["summary"]["open"], 1);
    assert_eq!(v["expect"]["state"], "open");
    assert_eq!(v["expect"]["met"], false);
    assert_eq!(v["expect"]["failed"][0]["port"], 9041);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    let out = portwall(&pair.client, &["probe", v4, "22", "--json"]);
    assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("expect").is_none());
}

#[test]
fn bad_input_exits_2_and_says_what_is_accepted() {
    let pair = Pair::new();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["probe", "198.51.100.10", "70000"],
            &["port 70000 is out of range 1-65535"],
        ),
        (
            &["probe", "198.51.100.10", "a-b"],
            &["\"a-b\"", "8000-8100"],
        ),
        (
            &["probe", "198.51.100.10", "100-80"],
            &["reversed", "80-100"],
        ),
        (&["probe", "198.51.100.10", "22,,80"], &["empty item"]),
        (
            &["probe", "203.0.113.300", "22"],
            &["bad host \"203.0.113.300\"", "IPv4 address"],
        ),
        (
            &["probe", "203.0.113.10:22", "22"],
            &["give the port separately"],
        ),
        (
            &["probe", "host.invalid", "22"],
            &["cannot resolve \"host.invalid\""],
        ),
        (&["probe", "198.51.100.10"], &["--all"]),
        (
            &["probe", "198.51.100.10", "22", "--all"],
            &["cannot be used with"],
        ),
        (
            &["probe", "198.51.100.10", "22", "--expect", "shut"],
            &["\"shut\" is not a port state", "open|filtered"],
        ),
        (
            &["probe", "198.51.100.10", "22", "--timeout", "0"],
            &["--timeout"],
        ),
        (
            &["probe", "198.51.100.10", "22", "--udp", "--tcp"],
            &["cannot be used with"],
        ),
    ];
    for (argv, wants) in cases {
        let out = portwall(&pair.client, argv);
        let err = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "portwall {}: {err}",
            argv.join(" ")
        );
        for want in *wants {
            assert!(
                err.contains(want),
                "portwall {}: want {want:?} in {err}",
                argv.join(" ")
            );
        }
    }
    // With --json the error is a JSON document too.
    let out = portwall(&pair.client, &["probe", "198.51.100.10", "70000", "--json"]);
    assert_exit(&out, 2);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_code"], 2);
    assert!(v["error"].as_str().unwrap().contains("70000"));
}

/// A name with an IPv4 and an IPv6 address: both are probed. The name comes from
/// a hosts file that `ip netns exec` mounts over /etc/hosts for the client
/// namespace only (/etc/netns/NAME/hosts), removed when the test ends.
#[test]
fn a_name_is_probed_on_every_address() {
    struct HostsFile(std::path::PathBuf);
    impl Drop for HostsFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let pair = lab();
    let dir = std::path::Path::new("/etc/netns").join(pair.client.name());
    std::fs::create_dir_all(&dir).unwrap();
    let _guard = HostsFile(dir.clone());
    std::fs::write(
        dir.join("hosts"),
        format!(
            "127.0.0.1 localhost\n{} server.test\n{} server.test\n",
            pair.server_addr.v4, pair.server_addr.v6
        ),
    )
    .unwrap();

    let out = portwall(&pair.client, &["probe", "server.test", "22,9041", "--json"]);
    assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let addrs: Vec<&str> = v["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    assert!(
        addrs.contains(&pair.server_addr.v4.as_str())
            && addrs.contains(&pair.server_addr.v6.as_str())
    );
    assert_eq!(v["results"].as_array().unwrap().len(), 4);

    let out = portwall(
        &pair.client,
        &["probe", "server.test", "22", "--expect", "open"],
    );
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("server.test ({})", pair.server_addr.v4)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("server.test ({})", pair.server_addr.v6)),
        "{stdout}"
    );
    assert!(stdout.contains("on 2 addresses"), "{stdout}");
}
