//! The `portwall` binary against the real kernel, in namespaces this test creates:
//! open and close ports, and check with real TCP and UDP traffic over IPv4 and
//! IPv6 that allowed ports connect and denied ones do not (drop = timeout,
//! reject = refused).

mod common;
use common::{ok, portwall};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;
use testns::traffic::{self, Listeners, Seen};
use testns::{Netns, Pair};

static SPORT: AtomicU16 = AtomicU16::new(30000);

/// What the client sees on `port` over TCP and UDP, IPv4 and IPv6.
fn seen(pair: &Pair, port: u16) -> [Seen; 4] {
    let dsts: [IpAddr; 2] = [
        pair.server_addr.v4.parse().unwrap(),
        pair.server_addr.v6.parse().unwrap(),
    ];
    let srcs: [IpAddr; 2] = [
        pair.client_addr.v4.parse().unwrap(),
        pair.client_addr.v6.parse().unwrap(),
    ];
    pair.client.run(|| {
        let t = Duration::from_millis(400);
        let mut out = Vec::new();
        for (src, dst) in srcs.iter().zip(dsts) {
            let s = |_: ()| SocketAddr::new(*src, SPORT.fetch_add(1, Ordering::SeqCst));
            out.push(traffic::tcp(s(()), SocketAddr::new(dst, port), t));
            out.push(traffic::udp(s(()), SocketAddr::new(dst, port), t));
        }
        [out[0], out[1], out[2], out[3]]
    })
}

use Seen::{Open, Refused, Timeout};

#[test]
fn open_and_close_ports_with_real_traffic() {
    let pair = Pair::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addrs: Vec<IpAddr> = vec![
        pair.server_addr.v4.parse().unwrap(),
        pair.server_addr.v6.parse().unwrap(),
    ];
    let _l = Listeners::start(&pair.server, &addrs, &[8080, 8081, 5353, 9000]);
    // Another tool's table must survive everything portwall does.
    pair.server
        .exec_ok(&["nft", "add", "table", "inet", "othertool"]);

    assert_eq!(seen(&pair, 8080), [Open; 4], "no firewall yet");
    ok(&pair.server, d, &["enable"]);
    assert_eq!(
        seen(&pair, 8080),
        [Timeout; 4],
        "default deny incoming drops"
    );

    ok(&pair.server, d, &["allow", "8080/tcp"]);
    assert_eq!(seen(&pair, 8080), [Open, Timeout, Open, Timeout]);

    ok(&pair.server, d, &["deny", "8080/tcp"]);
    assert_eq!(
        seen(&pair, 8080),
        [Timeout; 4],
        "deny replaced the allow in place"
    );
    let status: serde_json::Value =
        serde_json::from_str(&ok(&pair.server, d, &["status", "--json"])).unwrap();
    assert_eq!(status["rules"].as_array().unwrap().len(), 1);

    ok(&pair.server, d, &["reject", "8081"]);
    assert_eq!(
        seen(&pair, 8081),
        [Refused; 4],
        "reject answers tcp and udp"
    );

    ok(
        &pair.server,
        d,
        &["allow", "5353/udp", "from", &pair.client_addr.v6],
    );
    assert_eq!(
        seen(&pair, 5353),
        [Timeout, Timeout, Timeout, Open],
        "only udp from the client's v6 address"
    );

    ok(&pair.server, d, &["allow", "9000"]);
    assert_eq!(seen(&pair, 9000), [Open; 4], "no protocol: tcp and udp");
    ok(&pair.server, d, &["delete", "allow", "9000"]);
    assert_eq!(seen(&pair, 9000), [Timeout; 4]);

    ok(&pair.server, d, &["default", "reject", "incoming"]);
    assert_eq!(seen(&pair, 9000), [Refused; 4]);

    ok(&pair.server, d, &["disable"]);
    assert_eq!(seen(&pair, 8080), [Open; 4], "disabled: nothing filtered");
    ok(&pair.server, d, &["enable"]);
    assert_eq!(
        seen(&pair, 8080),
        [Timeout, Refused, Timeout, Refused],
        "enabled again with the saved rules: tcp denied, udp by the default reject"
    );
    ok(&pair.server, d, &["reset"]);
    assert_eq!(seen(&pair, 8080), [Open; 4]);
    let tables = pair.server.exec_ok(&["nft", "list", "tables"]);
    assert!(
        tables.contains("othertool") && !tables.contains("portwall"),
        "{tables}"
    );
}

#[test]
fn bad_input_exits_2_and_changes_nothing() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&ns, d, &["enable"]);
    ok(&ns, d, &["allow", "22/tcp"]);
    let before = std::fs::read_to_string(d.join("rules.toml")).unwrap();
    let ruleset_before = ns.exec_ok(&["nft", "list", "table", "inet", "portwall"]);
    for args in [
        &["allow", "70000/tcp"][..],
        &["allow", "22/tcpp"],
        &["deny", "from", "10.0.0.300"],
        &["delete", "9"],
        &["default", "maybe", "incoming"],
        &["insert", "7", "allow", "80"],
    ] {
        let o = portwall(&ns, d, args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.stderr.is_empty());
    }
    let o = portwall(&ns, d, &["--json", "allow", "70000/tcp"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("out of range 1-65535"),
        "{v}"
    );
    assert_eq!(
        before,
        std::fs::read_to_string(d.join("rules.toml")).unwrap()
    );
    assert_eq!(
        ruleset_before,
        ns.exec_ok(&["nft", "list", "table", "inet", "portwall"])
    );
    // A hand-edited file with a bad line is refused whole by reload.
    std::fs::write(
        d.join("rules.toml"),
        before.replace("allow 22/tcp", "allow 22/tcp from nowhere"),
    )
    .unwrap();
    let o = portwall(&ns, d, &["reload"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("rule 1"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        ruleset_before,
        ns.exec_ok(&["nft", "list", "table", "inet", "portwall"])
    );
    // No file staged for a change is left behind.
    for entry in std::fs::read_dir(d).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(!name.to_string_lossy().contains(".tmp-"), "{name:?}");
    }
}

#[test]
fn concurrent_invocations_lose_no_rule() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    ok(&ns, &d, &["enable"]);
    std::thread::scope(|s| {
        for p in 0..8u16 {
            let (ns, d) = (&ns, &d);
            s.spawn(move || ok(ns, d, &["allow", &format!("{}/tcp", 10000 + p)]));
        }
    });
    let status: serde_json::Value =
        serde_json::from_str(&ok(&ns, &d, &["status", "--json"])).unwrap();
    assert_eq!(status["rules"].as_array().unwrap().len(), 8, "{status}");
    assert_eq!(status["kernel_drift"].as_array().unwrap().len(), 0);
}

#[test]
fn plan_apply_and_drift() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("desired.toml");
    std::fs::write(&file, "rules = [\"allow 22/tcp from 203.0.113.0/24\", \"allow http,https\"]\n[defaults]\nincoming = \"deny\"\n").unwrap();
    let plan: serde_json::Value = serde_json::from_str(&ok(
        &ns,
        d,
        &["plan", "--json", "--file", file.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(plan["changes"].as_array().unwrap().len(), 3, "{plan}");
    assert_eq!(plan["loaded"], false);
    ok(&ns, d, &["apply", "--file", file.to_str().unwrap()]);
    let plan: serde_json::Value = serde_json::from_str(&ok(&ns, d, &["plan", "--json"])).unwrap();
    assert_eq!(plan["changes"].as_array().unwrap().len(), 0, "{plan}");
    // Someone edits the table by hand: status and plan say so.
    ns.exec_ok(&[
        "nft", "add", "rule", "inet", "portwall", "input", "tcp", "dport", "23", "accept",
    ]);
    let status: serde_json::Value =
        serde_json::from_str(&ok(&ns, d, &["status", "--json"])).unwrap();
    assert!(
        !status["kernel_drift"].as_array().unwrap().is_empty(),
        "{status}"
    );
    let text = ok(&ns, d, &["status"]);
    assert!(
        text.contains("differs from what portwall applied"),
        "{text}"
    );
    ok(&ns, d, &["reload"]);
    let status: serde_json::Value =
        serde_json::from_str(&ok(&ns, d, &["status", "--json"])).unwrap();
    assert!(
        status["kernel_drift"].as_array().unwrap().is_empty(),
        "{status}"
    );
}

#[test]
fn the_iptables_backend_opens_and_closes_ports_too() {
    let pair = Pair::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addrs: Vec<IpAddr> = vec![
        pair.server_addr.v4.parse().unwrap(),
        pair.server_addr.v6.parse().unwrap(),
    ];
    let _l = Listeners::start(&pair.server, &addrs, &[8080, 8081]);
    let pw = |args: &[&str]| {
        let mut full = vec!["--backend", "iptables"];
        full.extend_from_slice(args);
        ok(&pair.server, d, &full)
    };
    pw(&["enable"]);
    pw(&["allow", "8080/tcp"]);
    pw(&["reject", "8081"]);
    assert_eq!(seen(&pair, 8080), [Open, Timeout, Open, Timeout]);
    assert_eq!(seen(&pair, 8081), [Refused; 4]);
    let save = pair.server.exec_ok(&["iptables-save", "-t", "filter"]);
    assert!(save.contains("portwall"), "{save}");
    assert!(
        pair.server
            .exec(&["nft", "list", "table", "inet", "portwall"])
            .stdout
            .is_empty(),
        "no nft table with --backend iptables"
    );
    let status: serde_json::Value = serde_json::from_str(&pw(&["status", "--json"])).unwrap();
    assert_eq!(status["loaded"], true, "{status}");
    assert!(
        status["kernel_drift"].as_array().unwrap().is_empty(),
        "{status}"
    );
    pw(&["disable"]);
    assert_eq!(seen(&pair, 8081), [Open; 4]);
}

/// Regression: the built-in "established, related" rule must match replies, or a
/// `default deny outgoing` host cannot answer the connections it accepts.
#[test]
fn replies_pass_with_default_deny_outgoing() {
    let pair = Pair::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addrs: Vec<IpAddr> = vec![
        pair.server_addr.v4.parse().unwrap(),
        pair.server_addr.v6.parse().unwrap(),
    ];
    let _l = Listeners::start(&pair.server, &addrs, &[8080]);
    ok(&pair.server, d, &["default", "deny", "outgoing"]);
    ok(&pair.server, d, &["allow", "8080"]);
    ok(&pair.server, d, &["enable"]);
    assert_eq!(seen(&pair, 8080), [Open; 4]);
    let status: serde_json::Value =
        serde_json::from_str(&ok(&pair.server, d, &["status", "--verbose", "--json"])).unwrap();
    assert!(
        status["builtins"]["established"]["packets"]
            .as_u64()
            .unwrap()
            > 0,
        "{status}"
    );
}
