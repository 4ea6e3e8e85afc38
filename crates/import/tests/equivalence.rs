//! Equivalence of imports with the originals, against the real kernel.
//!
//! Rule sets are made by the real tools inside a network namespace the test
//! creates: `iptables`/`ip6tables` commands (the reference document's among
//! them), and `ufw` itself, run in its own mount namespace where `/etc/ufw` and
//! `/etc/default/ufw` are bind-mounted copies in a temporary directory, so UFW
//! writes its real `user.rules` there and loads its real chains into the
//! namespace's kernel (nothing of the host's UFW or firewall is touched). The
//! saved rules are imported, and for a sample of real connections between two
//! namespaces the verdict of the *original* rules in the kernel is compared with
//! `model::evaluate` on the imported ruleset: 0 mismatches.
//!
//! Connections decided by a `limit` rule are compared only for sources that
//! open at most 5 of them (both refuse the 6th of a burst, but UFW counts the
//! last 30 s exactly and portwall with a token bucket: a difference the import
//! reports as a note).

#[path = "../../netfilter/tests/common/mod.rs"]
mod common;

use import::{Family, Import};
use model::{evaluate, Packet};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use testns::traffic::{Listeners, Seen};
use testns::Netns;

const PACKETS: usize = 150;
/// Time to answer: more than the 1 s an IPv6 TCP connection rejected with
/// ICMPv6 port unreachable (not a reset) takes to be refused.
const ANSWER: std::time::Duration = std::time::Duration::from_millis(1500);

/// Compares the kernel's verdicts (`seen`) with `evaluate` on each import.
fn mismatches(
    label: &str,
    imported: &Import,
    packets: &[Packet],
    seen: &[Seen],
    limited: &mut HashMap<IpAddr, usize>,
) -> Vec<String> {
    // How many limit-decided connections each source opens (over the test).
    let mut out = Vec::new();
    let mut counted = HashMap::new();
    for p in packets {
        if evaluate(&imported.ruleset, p).rate_limited {
            *counted.entry(p.source).or_insert(0usize) += 1;
        }
    }
    for (src, n) in counted {
        *limited.entry(src).or_default() += n;
    }
    for (p, s) in packets.iter().zip(seen) {
        let v = evaluate(&imported.ruleset, p);
        if v.rate_limited && limited[&p.source] > 5 {
            continue;
        }
        if common::expected_seen(v.decision) != *s {
            out.push(format!(
                "{label}: {:?} {}:{} -> {}:{}: kernel {s:?}, imported rules {:?} by {:?}",
                p.protocol,
                p.source,
                p.source_port.unwrap(),
                p.destination,
                p.destination_port.unwrap(),
                v.decision,
                v.by
            ));
        }
    }
    out
}

/// Sends `packets` from `client`; a "no answer" where some import expects an
/// answer is confirmed by a second try before it counts.
fn send_confirmed(client: &Netns, packets: &[Packet], imports: &[&Import]) -> Vec<Seen> {
    common::send_all_confirmed(client, packets, ANSWER, |i| {
        imports.iter().any(|imp| {
            common::expected_seen(evaluate(&imp.ruleset, &packets[i]).decision) != Seen::Timeout
        })
    })
}

fn show(i: &Import) -> String {
    format!(
        "{}untranslated: {:#?}\nnotes: {:#?}",
        i.ruleset, i.untranslated, i.notes
    )
}

fn run_all(ns: &Netns, commands: &[&str]) {
    for c in commands {
        let argv: Vec<&str> = c.split_whitespace().collect();
        ns.exec_ok(&argv);
    }
}

fn saves(ns: &Netns) -> Import {
    let v4 = ns.exec_ok(&["iptables-save"]);
    let v6 = ns.exec_ok(&["ip6tables-save"]);
    import::iptables::from_saves(&[
        ("iptables-save", &v4, Some(Family::V4)),
        ("ip6tables-save", &v6, Some(Family::V6)),
    ])
}

#[test]
fn iptables_rules_import_equal_to_the_kernel() {
    let seed = common::seed("iptables import equivalence");
    let mut rng = StdRng::seed_from_u64(seed);
    let (pair, servers) = common::addressed_pair();
    let _l = Listeners::start(&pair.server, &servers, &common::PORTS);
    let mut next_sport = 20000;
    let mut limited = HashMap::new();

    // 1. The reference document's rules alone, on a host with open policies.
    run_all(
        &pair.server,
        &[
            "iptables -I INPUT -m state --state NEW -m tcp -p tcp --dport 8080 -j ACCEPT",
            "iptables -I INPUT -m state --state NEW -m tcp -p tcp --dport 5432 -j DROP",
        ],
    );
    let imported = saves(&pair.server);
    assert!(imported.untranslated.is_empty(), "{}", show(&imported));
    let texts: Vec<String> = imported
        .ruleset
        .rules
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(
        texts,
        [
            "deny 5432/tcp from 0.0.0.0/0",
            "allow 8080/tcp from 0.0.0.0/0"
        ],
        "{}",
        show(&imported)
    );
    let packets = common::random_packets(&mut rng, &servers, PACKETS, &mut next_sport);
    let seen = send_confirmed(&pair.client, &packets, &[&imported]);
    let mut bad = mismatches("reference", &imported, &packets, &seen, &mut limited);

    // 2. A hand-made ruleset: drop policy, user chain, reject kinds, both families.
    run_all(
        &pair.server,
        &[
            "iptables -F INPUT",
            "iptables -P INPUT DROP",
            "iptables -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "iptables -A INPUT -i lo -j ACCEPT",
            "iptables -A INPUT -m conntrack --ctstate INVALID -j DROP",
            "iptables -I INPUT -m state --state NEW -m tcp -p tcp --dport 8080 -j ACCEPT",
            "iptables -N web",
            "iptables -A web -p tcp -m multiport --dports 80,443 -j ACCEPT",
            "iptables -A web -j RETURN",
            "iptables -A INPUT -s 198.51.100.21 -j DROP",
            "iptables -A INPUT -p tcp -j web",
            "iptables -A INPUT -s 198.51.100.24/29 -p udp -m multiport --dports 53,60000:60500 -j REJECT",
            "iptables -A INPUT -d 198.51.100.11 -p tcp --dport 22 -j REJECT --reject-with tcp-reset",
            "iptables -A INPUT -p tcp --dport 22 -j ACCEPT",
            "iptables -A INPUT -m addrtype --dst-type MULTICAST -j DROP",
            "iptables -A INPUT -p icmp --icmp-type echo-request -j ACCEPT",
            "iptables -A INPUT -p udp --sport 20000:20199 -j ACCEPT",
            "iptables -A INPUT -p tcp --dport 5432 -j REJECT --reject-with tcp-reset",
            "ip6tables -P INPUT DROP",
            "ip6tables -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "ip6tables -A INPUT -i lo -j ACCEPT",
            "ip6tables -A INPUT -p ipv6-icmp --icmpv6-type 133 -j ACCEPT",
            "ip6tables -A INPUT -p ipv6-icmp --icmpv6-type 134 -j ACCEPT",
            "ip6tables -A INPUT -p ipv6-icmp --icmpv6-type 135 -j ACCEPT",
            "ip6tables -A INPUT -p ipv6-icmp --icmpv6-type 136 -j ACCEPT",
            "ip6tables -A INPUT -p ipv6-icmp --icmpv6-type 137 -j ACCEPT",
            "ip6tables -A INPUT -s 2001:db8::24/126 -j REJECT",
            "ip6tables -A INPUT -p udp -j ACCEPT",
            "ip6tables -A INPUT -p tcp -m multiport --dports 22,80,8080 -j ACCEPT",
        ],
    );
    let imported = saves(&pair.server);
    let reasons: Vec<&str> = imported
        .untranslated
        .iter()
        .map(|u| u.reason.as_str())
        .collect();
    assert_eq!(reasons.len(), 2, "{}", show(&imported));
    assert!(reasons[0].contains("addrtype") && reasons[1].contains("ICMP type"));
    let packets = common::random_packets(&mut rng, &servers, PACKETS, &mut next_sport);
    let seen = send_confirmed(&pair.client, &packets, &[&imported]);
    bad.extend(mismatches(
        "hand-made",
        &imported,
        &packets,
        &seen,
        &mut limited,
    ));
    assert!(
        bad.is_empty(),
        "{} mismatch(es) (seed {seed}):\n{}\n{}",
        bad.len(),
        bad.join("\n"),
        show(&imported)
    );
}

/// Runs `script` with UFW's configuration redirected into `dir`, inside `ns`.
fn ufw(ns: &Netns, dir: &Path, script: &str) {
    let etc = dir.join("etc-ufw");
    let default = dir.join("default-ufw");
    let full = format!(
        "set -e; mount --bind {} /etc/ufw; mount --bind {} /etc/default/ufw; {script}",
        etc.display(),
        default.display()
    );
    let out = ns
        .command("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &full])
        .output()
        .expect("run unshare");
    assert!(
        out.status.success(),
        "ufw script failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private copy of UFW's configuration (rules reset to UFW's installation
/// defaults inside the sandbox, no sysctl changes).
fn ufw_sandbox() -> tempfile::TempDir {
    assert!(
        Path::new("/etc/ufw").is_dir() && Path::new("/etc/default/ufw").is_file(),
        "UFW is not installed (apt-get install ufw): this test runs the real ufw"
    );
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .args(["-a", "/etc/ufw"])
        .arg(dir.path().join("etc-ufw"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(dir.path().join("empty-sysctl.conf"), "").unwrap();
    let default = std::fs::read_to_string("/etc/default/ufw").unwrap();
    let default: String = default
        .lines()
        .map(|l| {
            if l.starts_with("IPT_SYSCTL=") {
                format!(
                    "IPT_SYSCTL={}",
                    dir.path().join("empty-sysctl.conf").display()
                )
            } else if l.starts_with("IPV6=") {
                "IPV6=yes".to_string()
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(dir.path().join("default-ufw"), default).unwrap();
    dir
}

fn ufw_files(dir: &Path) -> Import {
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
    let (v4, v6, def, conf) = (
        read("etc-ufw/user.rules"),
        read("etc-ufw/user6.rules"),
        read("default-ufw"),
        read("etc-ufw/ufw.conf"),
    );
    import::ufw::from_files(&import::ufw::Files {
        user_rules: Some(("user.rules", &v4)),
        user6_rules: Some(("user6.rules", &v6)),
        default_file: Some(("default-ufw", &def)),
        ufw_conf: Some(("ufw.conf", &conf)),
    })
}

#[test]
fn ufw_rules_import_equal_to_the_kernel() {
    let seed = common::seed("ufw import equivalence");
    let mut rng = StdRng::seed_from_u64(seed);
    let (pair, servers) = common::addressed_pair();
    let _l = Listeners::start(&pair.server, &servers, &common::PORTS);
    let dir = ufw_sandbox();
    let mut next_sport = 20000;
    let mut limited = HashMap::new();
    let mut bad = Vec::new();
    let rounds = [
        "ufw --force reset >/dev/null; ufw default deny incoming; ufw allow 8080/tcp; ufw deny from 198.51.100.21; \
         ufw reject 5432; ufw allow from 198.51.100.16/29 to any port 53 proto udp; \
         ufw allow from 2001:db8::24/126 to any port 80,443 proto tcp; \
         ufw allow in on eth0 to any port 60000:60500 proto udp; ufw deny in on eth9 to any port 22; \
         ufw limit 22/tcp; ufw insert 1 reject from 198.51.100.26 to 198.51.100.11 port 443 proto tcp; \
         ufw allow out 53/udp; ufw --force enable",
        "ufw default reject incoming; ufw delete allow 8080/tcp; ufw allow 443/tcp; \
         ufw route allow in on eth0 out on eth1 to 203.0.113.10 port 80 proto tcp; ufw reload",
    ];
    for (round, script) in rounds.iter().enumerate() {
        ufw(&pair.server, dir.path(), script);
        // The rules as UFW records them, and as the kernel holds them.
        let from_ufw = ufw_files(dir.path());
        assert!(from_ufw.untranslated.is_empty(), "{}", show(&from_ufw));
        let from_kernel = saves(&pair.server);
        let packets = common::random_packets(&mut rng, &servers, PACKETS, &mut next_sport);
        let seen = send_confirmed(&pair.client, &packets, &[&from_ufw, &from_kernel]);
        let mut lim2 = limited.clone();
        bad.extend(mismatches(
            &format!("round {round} user.rules"),
            &from_ufw,
            &packets,
            &seen,
            &mut limited,
        ));
        bad.extend(mismatches(
            &format!("round {round} iptables-save"),
            &from_kernel,
            &packets,
            &seen,
            &mut lim2,
        ));
        if std::env::var_os("PORTWALL_SHOW_IMPORTS").is_some() {
            eprintln!(
                "round {round}\nuser.rules import:\n{}\niptables-save import:\n{}",
                show(&from_ufw),
                show(&from_kernel)
            );
        }
        if !bad.is_empty() {
            panic!(
                "{} mismatch(es) (seed {seed}):\n{}\nuser.rules import:\n{}\niptables-save import:\n{}",
                bad.len(),
                bad.join("\n"),
                show(&from_ufw),
                show(&from_kernel)
            );
        }
        assert!(from_ufw.notes.iter().any(|n| n.message.contains("6th")));
    }
}
