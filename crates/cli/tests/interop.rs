//! `portwall import` and `portwall explain` as a user runs them, in namespaces
//! this test creates: import saved UFW and iptables rules (and apply them), and
//! explain packets layer by layer, with a stand-in panel for the network layer.

mod common;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::path::Path;
use std::process::Output;
use testns::traffic::Listeners;
use testns::{Netns, Pair};

/// Runs `portwall ARGS` inside `ns` with `env` set.
fn portwall(ns: &Netns, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    common::portwall_command(Some(ns), dir)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run portwall")
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

const USER_RULES: &str = "*filter\n### RULES ###\n\n### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 22 -j ACCEPT\n\n### tuple ### deny any 5432 0.0.0.0/0 any 198.51.100.0/24 in\n\n### tuple ### allow sctp any 0.0.0.0/0 any 0.0.0.0/0 in\n\n### tuple ### allow gre any 0.0.0.0/0 any 0.0.0.0/0 in\n### END RULES ###\n";
const USER6_RULES: &str = "### tuple ### allow tcp 22 ::/0 any ::/0 in\n";

#[test]
fn import_prints_rules_and_what_it_cannot_translate() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("user.rules"), USER_RULES).unwrap();
    std::fs::write(d.join("user6.rules"), USER6_RULES).unwrap();
    std::fs::write(d.join("ufw"), "DEFAULT_INPUT_POLICY=\"DROP\"\nDEFAULT_OUTPUT_POLICY=\"ACCEPT\"\nDEFAULT_FORWARD_POLICY=\"DROP\"\n").unwrap();
    let u = d.join("user.rules");
    let u6 = d.join("user6.rules");
    let def = d.join("ufw");
    let args = [
        "import",
        "ufw",
        "--file",
        u.to_str().unwrap(),
        "--file",
        u6.to_str().unwrap(),
        "--defaults-file",
        def.to_str().unwrap(),
    ];
    let o = portwall(&ns, d, &args, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("allow 22/tcp"), "{text}");
    assert!(text.contains("deny 5432 from 198.51.100.0/24"), "{text}");
    assert!(
        text.contains("Not translated (1)") && text.contains("protocol sctp"),
        "{text}"
    );
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let v = json(&portwall(&ns, d, &with_json, &[]));
    assert!(text.contains("allow proto gre"), "{text}");
    assert_eq!(v["import"]["ruleset"]["rules"].as_array().unwrap().len(), 3);
    assert_eq!(v["import"]["untranslated"][0]["line_no"], 9);

    // --apply refuses while something is untranslated, unless forced.
    let mut apply = args.to_vec();
    apply.push("--apply");
    let o = portwall(&ns, d, &apply, &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert!(!d.join("rules.toml").exists(), "nothing was saved");
    apply.push("--force");
    let o = portwall(&ns, d, &apply, &[]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let saved = std::fs::read_to_string(d.join("rules.toml")).unwrap();
    assert!(saved.contains("deny 5432 from 198.51.100.0/24"), "{saved}");
    let table = ns.exec_ok(&["nft", "list", "table", "inet", "portwall"]);
    assert!(table.contains("5432"), "{table}");
}

#[test]
fn import_iptables_reads_the_kernels_rules() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    for c in [
        "iptables -I INPUT -m state --state NEW -m tcp -p tcp --dport 8080 -j ACCEPT",
        "iptables -A OUTPUT -m owner --uid-owner 0 -j ACCEPT",
    ] {
        let argv: Vec<&str> = c.split_whitespace().collect();
        ns.exec_ok(&argv);
    }
    let o = portwall(&ns, dir.path(), &["import", "iptables", "--json"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json(&o);
    let rules = v["import"]["ruleset"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{v}");
    assert_eq!(
        rules[0]["destination_ports"],
        serde_json::json!([{"start": 8080, "end": 8080}])
    );
    let untranslated = v["import"]["untranslated"].as_array().unwrap();
    assert_eq!(untranslated.len(), 1, "{v}");
    assert!(untranslated[0]["reason"]
        .as_str()
        .unwrap()
        .contains("-m owner"));
    assert_eq!(v["from"][0], "iptables-save");
}

/// A stand-in for the panel's REST API, inside `ns` on 127.0.0.1.
fn fake_panel(ns: &Netns) -> String {
    let listener = ns.run(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut auth = false;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
                auth |= h
                    .to_ascii_lowercase()
                    .starts_with("authorization: bearer t0k");
            }
            let path = request.split_whitespace().nth(1).unwrap_or_default();
            let (status, body) = if !auth {
                (
                    "401 Unauthorized",
                    r#"{"error":{"field":"","message":"no token"}}"#.to_string(),
                )
            } else if path.starts_with("/v1/servers?") {
                ("200 OK", r#"{"items":[{"id":7,"customer_id":1,"name":"db1","type":"VPS","ipv4":["198.51.100.10"],"ipv6":[],"zone":"z","labels":{},"policy_revision":3,"created_at":"now"}],"next_cursor":null}"#.to_string())
            } else if path == "/v1/servers/7/policy" {
                ("200 OK", r#"{"server_id":7,"name":"db1","addresses":["198.51.100.10"],"revision":3,"enforced":true,"rules":[{"firewall_id":2,"rule_id":11,"protocol":"tcp","ports":{"start":22,"end":22},"sources":[]},{"firewall_id":2,"rule_id":12,"protocol":"tcp","ports":{"start":5432,"end":5432},"sources":["203.0.113.0/24"]}]}"#.to_string())
            } else if path == "/v1/firewalls/2" {
                ("200 OK", r#"{"id":2,"name":"web"}"#.to_string())
            } else {
                (
                    "404 Not Found",
                    r#"{"error":{"field":"","message":"no"}}"#.to_string(),
                )
            };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn explain_tells_layer_by_layer() {
    let pair = Pair::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("rules.toml"),
        "enabled = true\nrules = [\"deny 5432/tcp\", \"allow 22/tcp\", \"allow 8080/tcp\"]\n",
    )
    .unwrap();
    let server: IpAddr = pair.server_addr.v4.parse().unwrap();
    let _l = Listeners::start(&pair.server, &[server], &[22]);
    let explain = |to: &str, from: &str, env: &[(&str, &str)]| {
        let o = portwall(
            &pair.server,
            d,
            &[
                "explain",
                "--from",
                from,
                "--to",
                &format!("{server}:{to}"),
                "--json",
            ],
            env,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        json(&o)
    };

    let v = explain("5432/tcp", "198.51.100.7", &[]);
    assert_eq!(
        v["answer"], "DROPPED by the OS firewall rule 1 (deny 5432/tcp)",
        "{v}"
    );
    assert_eq!(v["layers"][0]["outcome"], "not_configured");
    assert_eq!(v["layers"][1]["verdict"]["by"]["number"], 1);

    let v = explain("22/tcp", "198.51.100.7", &[]);
    assert_eq!(v["result"], "accepted", "{v}");
    assert_eq!(v["layers"][2]["outcome"], "listening", "{v}");

    let v = explain("8080/tcp", "198.51.100.7", &[]);
    assert_eq!(v["result"], "refused", "{v}");
    assert_eq!(v["layers"][2]["outcome"], "nothing_listens");

    let v = explain("9999/udp", "198.51.100.7", &[]);
    assert_eq!(
        v["answer"], "DROPPED by the OS firewall default policy (deny incoming)",
        "{v}"
    );

    // The network firewall, from a stand-in panel.
    let url = fake_panel(&pair.server);
    let env = [
        ("PORTWALL_PANEL_URL", url.as_str()),
        ("PORTWALL_TOKEN", "t0k"),
    ];
    let v = explain("5432/tcp", "198.51.100.7", &env);
    assert_eq!(v["result"], "dropped", "{v}");
    assert!(
        v["answer"]
            .as_str()
            .unwrap()
            .starts_with("DROPPED by the network firewall"),
        "{v}"
    );
    let v = explain("5432/tcp", "203.0.113.5", &env);
    assert_eq!(v["layers"][0]["outcome"], "passes", "{v}");
    assert!(
        v["layers"][0]["detail"].as_str().unwrap().contains("'web'"),
        "{v}"
    );
    assert_eq!(
        v["answer"],
        "DROPPED by the OS firewall rule 1 (deny 5432/tcp)"
    );
    let v = explain("22/tcp", "198.51.100.7", &env);
    assert_eq!(v["result"], "accepted", "{v}");
    let bad = [
        ("PORTWALL_PANEL_URL", url.as_str()),
        ("PORTWALL_TOKEN", "wrong"),
    ];
    let v = explain("22/tcp", "198.51.100.7", &bad);
    assert_eq!(v["layers"][0]["outcome"], "unknown", "{v}");
    assert_eq!(v["result"], "unknown", "{v}");

    // Human output: the answer first, then the layers.
    let o = portwall(
        &pair.server,
        d,
        &[
            "explain",
            "--from",
            "198.51.100.7",
            "--to",
            &format!("{server}:5432/tcp"),
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("DROPPED by the OS firewall rule 1 (deny 5432/tcp)")
    );
    assert!(
        text.contains("1. network firewall: not configured"),
        "{text}"
    );
    assert!(
        text.contains("2. OS firewall: dropped by rule 1 (deny 5432/tcp)"),
        "{text}"
    );
}
