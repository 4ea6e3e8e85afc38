//! Applies rulesets inside a fresh namespace and reads them back.

mod common;

use common::ruleset;

use netfilter::{ApplyMode, ApplyOptions, Kernel};
use testns::Netns;

/// The kernel's table in `ns` is loaded and holds exactly `rs`.
fn assert_no_drift(ns: &Netns, rs: &model::Ruleset) {
    let drift = ns
        .run(|| Kernel::Netlink.drift(rs))
        .unwrap()
        .expect("table loaded");
    assert!(drift.is_empty(), "{drift:?}");
}

#[test]
fn every_shape_applies_and_reads_back_equal() {
    let ns = Netns::new();
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
        "deny from any",
    ]);
    let report = ns
        .run(|| Kernel::Netlink.apply(&rs, None, ApplyOptions::default()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.mode, ApplyMode::Replace);
    assert!(report.verified);
    assert_no_drift(&ns, &rs);
}

#[test]
fn element_change_is_a_delta_and_keeps_the_table() {
    let ns = Netns::new();
    let mut lines: Vec<String> = (0..2000)
        .map(|i| format!("deny from 10.0.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let before = ruleset(&refs);
    lines.push("deny from 10.9.9.9".into());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let after = ruleset(&refs);
    ns.run(|| Kernel::Netlink.apply(&before, None, ApplyOptions::default()))
        .unwrap();
    let r = ns
        .run(|| Kernel::Netlink.apply(&after, Some(&before), ApplyOptions::default()))
        .unwrap();
    assert_eq!(r.mode, ApplyMode::Elements);
    assert_no_drift(&ns, &after);
    let r = ns
        .run(|| Kernel::Netlink.apply(&after, Some(&after), ApplyOptions::default()))
        .unwrap();
    assert_eq!(r.mode, ApplyMode::Unchanged);
}

/// Hash sets are sized (their capacity is a limit in the kernel) by their
/// element count, rounded to a power of two: growing across such a step
/// replaces the table with a set sized anew; growing within one is an
/// element delta; every rule is in force afterwards.
#[test]
fn a_hash_set_that_outgrows_its_capacity_is_replaced_bigger() {
    let ns = Netns::new();
    let rules = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("deny from 10.1.{}.{}", i / 250, i % 250 + 1))
            .collect()
    };
    let set = |lines: &[String]| {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        ruleset(&refs)
    };
    let size_in_kernel = || {
        let listing = ns.exec_ok(&["nft", "list", "table", "inet", "portwall"]);
        listing
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("size ")
                    .map(|n| n.parse::<u32>().unwrap())
            })
            .expect("a sized set")
    };
    // 512 rules: capacity 512, which 1025 would not fit in.
    let small = set(&rules(512));
    ns.run(|| Kernel::Netlink.apply(&small, None, ApplyOptions::default()))
        .unwrap();
    assert_eq!(size_in_kernel(), 512);
    let full = set(&rules(1025));
    assert_eq!(
        netfilter::compile::compile(&full, "portwall").sets[0].capacity(),
        Some(2048)
    );
    let r = ns
        .run(|| Kernel::Netlink.apply(&full, Some(&small), ApplyOptions::default()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.mode,
        ApplyMode::Replace,
        "1025 elements need a bigger set"
    );
    assert!(r.verified);
    assert_eq!(size_in_kernel(), 2048);
    let one_more = set(&rules(1026));
    let r = ns
        .run(|| Kernel::Netlink.apply(&one_more, Some(&full), ApplyOptions::default()))
        .unwrap();
    assert_eq!(r.mode, ApplyMode::Elements);
    assert_no_drift(&ns, &one_more);
}

#[test]
fn a_refused_transaction_leaves_the_previous_ruleset() {
    let ns = Netns::new();
    let good = ruleset(&["allow 22/tcp"]);
    ns.run(|| Kernel::Netlink.apply(&good, None, ApplyOptions::default()))
        .unwrap();
    let before = ns.exec_ok(&["nft", "list", "table", "inet", "portwall"]);
    // The full replacement of a bigger ruleset, plus one rule the kernel refuses
    // (a lookup in a set that does not exist), sent as one transaction.
    let bigger = ruleset(&["allow 80/tcp", "deny from 198.51.100.7"]);
    let mut batch = netfilter::compile::compile(&bigger, "portwall").full_batch();
    batch["nftables"].as_array_mut().unwrap().push(serde_json::json!({"add": {"rule": {
        "family": "inet", "table": "portwall", "chain": "input",
        "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "@nonexistent"}}, {"accept": null}]
    }}}));
    let err = ns.run(|| Kernel::Netlink.apply_json(&batch)).unwrap_err();
    assert!(matches!(err, netfilter::NftError::Rejected(_)), "{err}");
    assert!(
        err.to_string().contains("No such file or directory"),
        "nft's reason is shown: {err}"
    );
    assert_eq!(
        before,
        ns.exec_ok(&["nft", "list", "table", "inet", "portwall"])
    );
}

/// The kernel's own listing of a representative ruleset (nftables-rs style golden
/// file): what an admin sees with `nft list table inet portwall`.
#[test]
fn golden_kernel_listing() {
    let ns = Netns::new();
    let rs = ruleset(&[
        "allow 22/tcp from 203.0.113.0/24",
        "allow http,https",
        "limit ssh",
        "reject out 25/tcp",
        "allow in on eth0 from 2001:db8::/32 to any port 443 proto tcp",
        "deny from 198.51.100.7",
        "deny routed 8080/tcp",
    ]);
    ns.run(|| Kernel::Netlink.apply(&rs, None, ApplyOptions::default()))
        .unwrap();
    insta::assert_snapshot!(ns.exec_ok(&["nft", "list", "table", "inet", "portwall"]));
}
