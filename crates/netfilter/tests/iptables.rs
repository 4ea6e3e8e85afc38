//! The iptables backend against the kernel, in namespaces the tests create:
//! read-back, counters mapped to rule numbers, jumps added once, other tools'
//! chains left alone, removal, rollback of a half-applied change, and `limit`.

mod common;

use common::ruleset;

use model::{parse_rule, Ruleset, Services};
use netfilter::iptables::{Iptables, Tools};
use std::net::SocketAddr;
use std::time::Duration;
use testns::traffic::{self, Listeners, Seen};
use testns::{Netns, Pair};

fn save(ns: &Netns, tool: &str) -> String {
    ns.exec_ok(&[tool, "-t", "filter"])
}

fn our_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("portwall"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_shape_applies_and_reads_back_equal() {
    let ns = Netns::new();
    let ipt = Iptables::default();
    let rs = ruleset(&[
        "allow 22/tcp from 203.0.113.0/24",
        "allow http,https",
        "allow 60000:61000/udp",
        "limit ssh",
        "reject out 25/tcp",
        "allow in on eth0 from 2001:db8::/32 to any port 443 proto tcp",
        "deny from 198.51.100.7",
        "allow proto icmp",
        "allow log 8443/tcp",
        "allow routed 443/tcp from 203.0.113.0/24",
        "deny routed 8080/tcp",
        "allow out 53/udp to 9.9.9.9",
        "allow from 192.0.2.0/24 port 53 to any port 1024:65535 proto udp",
        "deny from 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,2001:db8::1,2001:db8::2,2001:db8::3,2001:db8::4",
        "deny from any",
    ]);
    let report = ns
        .run(|| ipt.apply_atomically(&rs))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.verified);
    assert_eq!(report.sets, 2, "one ipset per family for the long list");
    assert!(ns.run(|| ipt.is_loaded()).unwrap());
    let drift = ns.run(|| ipt.drift(&rs)).unwrap().expect("loaded");
    assert!(drift.is_empty(), "{drift:?}");
    // A hand edit shows up as drift.
    ns.exec_ok(&["iptables", "-I", "portwall-input", "3", "-j", "DROP"]);
    let drift = ns.run(|| ipt.drift(&rs)).unwrap().expect("loaded");
    assert!(!drift.is_empty());
    // Applying again replaces the chains (and the set generation) cleanly.
    ns.run(|| ipt.apply_atomically(&rs)).unwrap();
    assert!(ns.run(|| ipt.drift(&rs)).unwrap().unwrap().is_empty());
    let sets = ns.exec_ok(&["ipset", "list", "-n"]);
    assert_eq!(
        sets.lines().count(),
        2,
        "the old generation is destroyed: {sets}"
    );
    assert!(sets.lines().all(|l| l.starts_with("pwb")), "{sets}");
}

#[test]
fn jumps_are_added_once_and_other_chains_stay() {
    let ns = Netns::new();
    let ipt = Iptables::default();
    // A Docker-like setup made before portwall.
    for args in [
        &["iptables", "-N", "DOCKER-USER"][..],
        &[
            "iptables",
            "-A",
            "DOCKER-USER",
            "-s",
            "192.0.2.1",
            "-j",
            "DROP",
        ],
        &["iptables", "-A", "DOCKER-USER", "-j", "RETURN"],
        &["iptables", "-A", "FORWARD", "-j", "DOCKER-USER"],
        &[
            "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "2375", "-j", "DROP",
        ],
        &["ip6tables", "-N", "OTHER6"],
        &["ip6tables", "-A", "OTHER6", "-j", "ACCEPT"],
        &["ipset", "create", "blocklist", "hash:ip"],
    ] {
        ns.exec_ok(args);
    }
    let before4 = save(&ns, "iptables-save");
    let before6 = save(&ns, "ip6tables-save");
    let rs = ruleset(&[
        "allow 22/tcp",
        "deny from 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4",
    ]);
    ns.run(|| ipt.apply_atomically(&rs)).unwrap();
    ns.run(|| ipt.apply_atomically(&ruleset(&["allow 80/tcp"])))
        .unwrap();
    let during = save(&ns, "iptables-save");
    for builtin in ["INPUT", "OUTPUT", "FORWARD"] {
        let jumps: Vec<&str> = during
            .lines()
            .filter(|l| l.starts_with(&format!("-A {builtin} -j portwall-")))
            .collect();
        assert_eq!(jumps.len(), 1, "{builtin}: {during}");
        let first = during
            .lines()
            .find(|l| l.starts_with(&format!("-A {builtin} ")))
            .unwrap();
        assert!(
            first.contains("-j portwall-"),
            "position 1 of {builtin}: {during}"
        );
    }
    assert!(during.contains("-A DOCKER-USER -s 192.0.2.1/32 -j DROP"));
    assert!(ns.run(|| ipt.remove()).unwrap());
    assert!(!ns.run(|| ipt.is_loaded()).unwrap());
    let strip = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(strip(&save(&ns, "iptables-save")), strip(&before4));
    assert_eq!(strip(&save(&ns, "ip6tables-save")), strip(&before6));
    assert_eq!(ns.exec_ok(&["ipset", "list", "-n"]).trim(), "blocklist");
    assert!(!ns.run(|| ipt.remove()).unwrap(), "nothing left to remove");
}

#[test]
fn counters_map_to_rule_numbers() {
    let pair = Pair::new();
    let ipt = Iptables::default();
    let rs = ruleset(&["deny 5432/tcp", "allow 8080/tcp", "allow 9090/tcp"]);
    pair.server.run(|| ipt.apply_atomically(&rs)).unwrap();
    let addrs = [
        "198.51.100.10".parse().unwrap(),
        "2001:db8::10".parse().unwrap(),
    ];
    let _l = Listeners::start(&pair.server, &addrs, &[5432, 8080]);
    let seen = pair.client.run(|| {
        let mut v = Vec::new();
        for (i, dst) in [
            "198.51.100.10:8080",
            "[2001:db8::10]:8080",
            "198.51.100.10:8080",
        ]
        .iter()
        .enumerate()
        {
            let src: SocketAddr = if dst.starts_with('[') {
                format!("[2001:db8::20]:{}", 30000 + i)
            } else {
                format!("198.51.100.20:{}", 30000 + i)
            }
            .parse()
            .unwrap();
            v.push(traffic::tcp(
                src,
                dst.parse().unwrap(),
                Duration::from_millis(500),
            ));
        }
        v.push(traffic::tcp(
            "198.51.100.20:30010".parse().unwrap(),
            "198.51.100.10:5432".parse().unwrap(),
            Duration::from_millis(300),
        ));
        v
    });
    assert_eq!(seen, [Seen::Open, Seen::Open, Seen::Open, Seen::Timeout]);
    let c = pair
        .server
        .run(|| ipt.counters(&rs))
        .unwrap()
        .expect("loaded");
    assert_eq!(
        c.rules[1].packets, 3,
        "three SYNs accepted by rule 2: {c:?}"
    );
    assert!(
        c.rules[0].packets >= 1,
        "the SYN (and retries) dropped by rule 1: {c:?}"
    );
    assert_eq!(c.rules[2].packets, 0);
    assert!(c.builtins["established"].packets > 0);
    // A rule inserted first renumbers every rule, and the chains are
    // replaced: the counts follow their rules (issue 17).
    let after = ruleset(&[
        "reject 25/tcp",
        "deny 5432/tcp",
        "allow 8080/tcp",
        "allow 9090/tcp",
    ]);
    pair.server
        .run(|| ipt.apply_carrying(&after, Some(&rs)))
        .unwrap();
    let carried = pair
        .server
        .run(|| ipt.counters(&after))
        .unwrap()
        .expect("loaded");
    assert_eq!(carried.rules[0].packets, 0, "{carried:?}");
    assert!(
        carried.rules[1].packets >= c.rules[0].packets,
        "{carried:?}"
    );
    assert_eq!(carried.rules[2], c.rules[1], "{carried:?}");
    assert_eq!(carried.rules[3].packets, 0);
    assert!(carried.builtins["established"].packets >= c.builtins["established"].packets);
}

#[test]
fn a_refused_ipv6_transaction_puts_ipv4_back() {
    let ns = Netns::new();
    let good = Iptables::default();
    let first = ruleset(&["allow 22/tcp"]);
    ns.run(|| good.apply_atomically(&first)).unwrap();
    let before = our_lines(&save(&ns, "iptables-save"));
    // An ip6tables-restore that always fails, after the IPv4 one succeeded.
    let broken = Iptables::new(Tools {
        restore_v6: "false".into(),
        ..Tools::system()
    });
    let err = ns
        .run(|| {
            broken.apply_atomically(&ruleset(&[
                "deny 22/tcp",
                "deny from 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4",
            ]))
        })
        .unwrap_err();
    assert!(err.to_string().contains("previous ruleset"), "{err}");
    assert_eq!(our_lines(&save(&ns, "iptables-save")), before);
    assert_eq!(
        ns.exec_ok(&["ipset", "list", "-n"]).trim(),
        "",
        "the new sets are gone"
    );
    // And on a host without portwall's chains, a failed first apply leaves none.
    let fresh = Netns::new();
    fresh.run(|| broken.apply_atomically(&first)).unwrap_err();
    assert!(our_lines(&save(&fresh, "iptables-save")).is_empty());
}

#[test]
fn limit_refuses_a_source_over_the_rate() {
    let pair = Pair::new();
    let ipt = Iptables::default();
    let rs = ruleset(&["limit 22/tcp"]);
    pair.server.run(|| ipt.apply_atomically(&rs)).unwrap();
    let _l = Listeners::start(&pair.server, &["198.51.100.10".parse().unwrap()], &[22]);
    let seen: Vec<Seen> = pair.client.run(|| {
        (0..8)
            .map(|i| {
                traffic::tcp(
                    format!("198.51.100.20:{}", 31000 + i).parse().unwrap(),
                    "198.51.100.10:22".parse().unwrap(),
                    Duration::from_millis(400),
                )
            })
            .collect()
    });
    // UFW's rate: five, then refused (ICMP port unreachable), as `ufw limit`.
    let allowed = model::Rate::UFW.connections as usize;
    assert!(seen[..allowed].iter().all(|s| *s == Seen::Open), "{seen:?}");
    assert!(
        seen[allowed..].iter().all(|s| *s == Seen::Refused),
        "{seen:?}"
    );
}

#[test]
fn a_large_ruleset_applies_and_verifies() {
    let ns = Netns::new();
    let ipt = Iptables::default();
    let mut rs = Ruleset::default();
    for i in 0..5000u32 {
        let mut r = model::Rule::new(model::Action::Deny, model::Direction::In);
        r.source = model::Addresses(vec![format!(
            "10.{}.{}.{}",
            i >> 16,
            (i >> 8) & 255,
            i & 255 | 1
        )
        .parse::<std::net::IpAddr>()
        .unwrap()
        .into()]);
        rs.rules.push(r);
    }
    rs.rules.push(
        parse_rule(
            "allow 22/tcp from 10.0.0.0/8,10.1.0.0/16,192.0.2.0/24,198.51.100.0/24,2001:db8::/32",
            &Services::builtin(),
        )
        .unwrap()
        .remove(0),
    );
    let t = std::time::Instant::now();
    let report = ns
        .run(|| ipt.apply_atomically(&rs))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "5001 rules: {} iptables rules applied and verified in {:?}",
        report.nft_rules,
        t.elapsed()
    );
    assert!(report.verified);
    let c = ns.run(|| ipt.counters(&rs)).unwrap().unwrap();
    assert_eq!(c.rules.len(), 5001);
}
