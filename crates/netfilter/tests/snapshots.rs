//! The compiled form of representative rulesets, as insta snapshots of the nft
//! JSON batch: a review of any change to what portwall sends the kernel.

mod common;

use common::ruleset;

use model::Ruleset;
use netfilter::compile::{compile, TABLE};

#[test]
fn defaults_only() {
    insta::assert_json_snapshot!(compile(&Ruleset::default(), TABLE).full_batch());
}

#[test]
fn the_issue_examples() {
    let rs = common::issue_examples();
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
