//! Differential fidelity: for random rulesets and random packets, the verdict of
//! real packets through the kernel (between two namespaces) equals what
//! `model::evaluate` says. 50 rulesets × 100 packets, 0 mismatches.
//!
//! The generator, the traffic and the comparison live in `common` (shared with
//! the iptables backend's test). The seed is printed; `PORTWALL_SEED=N` replays
//! a run.

mod common;

use netfilter::{apply_atomically, ApplyOptions};

#[test]
fn kernel_verdicts_equal_evaluate() {
    common::kernel_verdicts_equal_evaluate(
        "differential test",
        common::RULESETS,
        |server, rs| {
            server
                .run(|| apply_atomically(rs, None, ApplyOptions::default()))
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
        |_, rs| rs,
    );
}
