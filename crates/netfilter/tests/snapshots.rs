//! The compiled form of representative rulesets, as insta snapshots of the nft
//! JSON batch: a review of any change to what portwall sends the kernel.

use model::{parse_rule, Logging, Policy, Ruleset, Services};
use netfilter::compile::{compile, TABLE};

fn ruleset(lines: &[&str]) -> Ruleset {
    let services = Services::builtin();
    let mut rs = Ruleset::default();
    for l in lines {
        for r in parse_rule(l, &services).unwrap_or_else(|e| panic!("{e}")) {
            rs.add(r);
        }
    }
    rs
}

#[test]
fn defaults_only() {
    insta::assert_json_snapshot!(compile(&Ruleset::default(), TABLE).full_batch());
}

#[test]
fn the_issue_examples() {
    let mut rs = ruleset(&[
        "allow 8080/tcp",
        "allow 22/tcp from 203.0.113.0/24",
        "allow http,https",
        "allow 60000:61000/udp",
        "limit ssh",
        "reject out 25/tcp",
        "allow in on eth0 from 2001:db8::/32 to any port 443 proto tcp",
        "deny from 198.51.100.7",
        "allow log 8443/tcp",
        "deny routed 8080/tcp",
        "allow routed 443/tcp from 203.0.113.0/24",
    ]);
    rs.defaults.routed = Policy::Reject;
    rs.logging = Logging::On;
    insta::assert_json_snapshot!(compile(&rs, TABLE).full_batch());
}

#[test]
fn consecutive_rules_share_one_set_and_overlaps_split_runs() {
    let rs = ruleset(&[
        "deny from 198.51.100.1",
        "deny from 198.51.100.2",
        "deny from 198.51.100.0/24",
        "allow 22/tcp",
        "deny from 198.51.100.3",
    ]);
    let c = compile(&rs, TABLE);
    let names: Vec<(&str, usize)> = c
        .sets
        .iter()
        .map(|s| (s.name.as_str(), s.elements.len()))
        .collect();
    // 1 and 2 share a set; 3 overlaps them and starts a new one; 4 allows; 5 is a new run.
    assert_eq!(names, [("in_1", 2), ("in_2", 1), ("in_3", 1), ("in_4", 1)]);
}

#[test]
fn a_delta_touches_only_changed_elements() {
    let before = ruleset(&["deny from 198.51.100.1", "deny from 198.51.100.2"]);
    let after = ruleset(&["deny from 198.51.100.1", "deny from 198.51.100.9"]);
    let delta = compile(&after, TABLE)
        .delta_batch(&compile(&before, TABLE))
        .expect("same structure");
    insta::assert_json_snapshot!(delta);
    let other = ruleset(&["allow 22/tcp"]);
    assert!(
        compile(&other, TABLE)
            .delta_batch(&compile(&before, TABLE))
            .is_none(),
        "another structure needs a replace"
    );
}
