//! Differential fidelity: for random rulesets and random packets, the verdict of
//! real packets through the kernel (between two namespaces) equals what
//! `model::evaluate` says. 50 rulesets × 100 packets, 0 mismatches, for `in`
//! rules (applied on the receiver); 25 × 100 for `out` rules (applied on the
//! sender) and for `routed` rules (applied on a gateway between them).
//!
//! The generator, the traffic and the comparison live in `common` (shared with
//! the iptables backend's test). The seed is printed; `PORTWALL_SEED=N` replays
//! a run.

mod common;

use model::{Direction, Ruleset};
use netfilter::{ApplyOptions, Kernel};
use testns::Netns;

/// Applies `rs` with the nftables backend in `ns` (the receiver, the sender
/// or the gateway, by the rules' direction).
fn apply_in(ns: &Netns, rs: &Ruleset) -> Result<(), String> {
    ns.run(|| Kernel::Netlink.apply(rs, None, ApplyOptions::default()))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn kernel_verdicts_equal_evaluate() {
    common::kernel_verdicts_equal_evaluate(
        "differential test",
        common::RULESETS,
        apply_in,
        |_, rs| rs,
    );
}

#[test]
fn kernel_verdicts_equal_evaluate_for_outbound_rules() {
    common::kernel_verdicts_equal_evaluate_for(
        "outbound differential test",
        common::RULESETS / 2,
        Direction::Out,
        apply_in,
        |_, rs| rs,
    );
}

#[test]
fn kernel_verdicts_equal_evaluate_for_routed_rules() {
    common::kernel_verdicts_equal_evaluate_for(
        "routed differential test",
        common::RULESETS / 2,
        Direction::Routed,
        apply_in,
        |_, rs| rs,
    );
}
