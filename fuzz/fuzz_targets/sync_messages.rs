//! The edge's sync messages (`model::network::sync`): arbitrary bytes
//! deserialized as the panel's answer to a poll (`SyncResponse`), as the
//! edge's report (`EdgeReport`) and as a poll's query (`SyncQuery`).
//!
//! Properties: a decoded message encodes and decodes back to itself; every
//! server policy the edge accepts (`ServerPolicy::validate`) has rules that,
//! as the panel's rules and then as OS-firewall rules, are valid and read
//! back as themselves (the edge compiles exactly what `model::evaluate`
//! means); a policy with an invalid rule is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::network::sync::{EdgeReport, ServerPolicy, SyncQuery, SyncResponse};
use model::network::NetworkRule;
use portwall_fuzz::check_rule;
use serde::{de::DeserializeOwned, Serialize};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let text = serde_json::to_string(value).expect("a decoded message encodes");
    let back: T = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{text} (from {value:?}) does not decode: {e}"));
    assert_eq!(&back, value, "{text}");
}

fn check_policy(policy: &ServerPolicy) {
    let valid = policy.validate().is_ok();
    let mut rules_valid = true;
    for r in &policy.rules {
        let rule = NetworkRule {
            protocol: r.protocol,
            ports: r.ports,
            sources: r.sources.clone(),
            description: String::new(),
            enabled: true,
        };
        if rule.validate().is_err() {
            rules_valid = false;
            continue;
        }
        for os_rule in rule.to_rules() {
            check_rule(&os_rule, policy);
        }
    }
    if valid {
        assert!(
            rules_valid,
            "a policy with an invalid rule passes: {policy:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(resp) = serde_json::from_slice::<SyncResponse>(data) {
        round_trip(&resp);
        match &resp {
            SyncResponse::Snapshot { servers, .. } => servers.iter().for_each(check_policy),
            SyncResponse::Delta { changed, .. } => changed.iter().for_each(check_policy),
            SyncResponse::Unchanged { .. } => {}
        }
    }
    if let Ok(report) = serde_json::from_slice::<EdgeReport>(data) {
        round_trip(&report);
    }
    if let Ok(query) = serde_json::from_slice::<SyncQuery>(data) {
        round_trip(&query);
    }
});
