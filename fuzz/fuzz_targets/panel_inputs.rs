//! The panel's JSON rule inputs (`panel::api::inputs`): arbitrary bytes
//! deserialized as a `RuleInput` and as a `RulePatch`, then validated
//! (`RuleInput::to_rule`, `RulePatch::apply` to a valid rule).
//!
//! Properties: an accepted rule is valid; written back as a request
//! (protocol, port as `"start-end"`, sources, description, enabled) it reads
//! as the same rule; its OS-firewall rules (`NetworkRule::to_rules`) are valid
//! and read back as themselves; a refusal names a field under the prefix it
//! was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::network::{NetworkProtocol, NetworkRule};
use model::PortRange;
use panel::api::inputs::{RuleInput, RulePatch};
use panel::store::StoreError;
use portwall_fuzz::check_rule;
use serde_json::json;

const PREFIX: &str = "rules[3].";

fn check_accepted(rule: &NetworkRule, from: &[u8]) {
    let from = String::from_utf8_lossy(from);
    if let Err(e) = rule.validate() {
        panic!("{from:?} gave an invalid rule {rule:?}: {e}");
    }
    let port = rule.ports.map(|p| format!("{}-{}", p.start, p.end));
    let sources: Vec<String> = rule.sources.iter().map(ToString::to_string).collect();
    let request = json!({
        "protocol": rule.protocol.as_str(),
        "port": port,
        "sources": sources,
        "description": rule.description,
        "enabled": rule.enabled,
    });
    let again: RuleInput = serde_json::from_value(request.clone())
        .unwrap_or_else(|e| panic!("{request} (from {from:?}) does not read: {e}"));
    match again.to_rule("") {
        Ok(back) => assert_eq!(&back, rule, "{request} (from {from:?})"),
        Err(e) => panic!("{request} (from {from:?}) is refused: {e}"),
    }
    for os_rule in rule.to_rules() {
        check_rule(&os_rule, &from);
    }
}

fn check_refused(e: &StoreError, prefix: &str, from: &[u8]) {
    match e {
        StoreError::Invalid { field, message } => {
            assert!(
                field.starts_with(prefix) && field.len() > prefix.len() && !message.is_empty(),
                "{:?}: field {field:?}, message {message:?}",
                String::from_utf8_lossy(from)
            );
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(from)),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = serde_json::from_slice::<RuleInput>(data) {
        match input.to_rule(PREFIX) {
            Ok(rule) => check_accepted(&rule, data),
            Err(e) => check_refused(&e, PREFIX, data),
        }
    }
    if let Ok(patch) = serde_json::from_slice::<RulePatch>(data) {
        let base = NetworkRule {
            protocol: NetworkProtocol::Tcp,
            ports: PortRange::new(8000, 8100),
            sources: vec!["203.0.113.0/24".parse().expect("a network")],
            description: "web".into(),
            enabled: true,
        };
        match patch.apply(base) {
            Ok(rule) => check_accepted(&rule, data),
            Err(e) => check_refused(&e, "", data),
        }
    }
});
