//! Differential fidelity of the iptables backend: for random rulesets and random
//! packets, the verdict of real packets through the kernel (between two
//! namespaces) equals what `model::evaluate` says. 50 rulesets × 100 packets,
//! 0 mismatches, through the system's `iptables-restore` (nf_tables flavour
//! here), and a shorter run through the x_tables (legacy) tools.
//!
//! The rulesets are those of the nftables test, with some sources widened into
//! lists of more than `IPSET_MIN` networks so that the ipset path is exercised
//! too. The seed is printed; `PORTWALL_SEED=N` replays a run.

mod common;

use ipnet::IpNet;
use model::Ruleset;
use netfilter::iptables::compile::IPSET_MIN;
use netfilter::iptables::{Iptables, Tools};
use rand::rngs::StdRng;
use rand::Rng;

/// Widens a third of the rules that name a single source network into a list
/// of that network plus other client addresses of its family.
fn widen_sources(rng: &mut StdRng, mut rs: Ruleset) -> Ruleset {
    for rule in &mut rs.rules {
        if rule.source.0.len() != 1 || !rng.gen_bool(0.35) {
            continue;
        }
        let v4 = matches!(rule.source.0[0], IpNet::V4(_));
        let extra = IPSET_MIN + rng.gen_range(0..3);
        for _ in 0..extra {
            let i = rng.gen_range(0..8);
            let a = if v4 {
                common::client_v4(i)
            } else {
                common::client_v6(i)
            };
            rule.source.0.push(IpNet::from(a));
        }
    }
    rs
}

fn run(name: &str, rulesets: usize, tools: Tools) {
    let ipt = Iptables::new(tools);
    common::kernel_verdicts_equal_evaluate(
        name,
        rulesets,
        |server, rs| {
            server
                .run(|| ipt.apply_atomically(rs))
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
        widen_sources,
    );
}

#[test]
fn kernel_verdicts_equal_evaluate_iptables() {
    run(
        "iptables differential test",
        common::RULESETS,
        Tools::system(),
    );
}

#[test]
fn kernel_verdicts_equal_evaluate_iptables_legacy() {
    run("iptables-legacy differential test", 10, Tools::legacy());
}
