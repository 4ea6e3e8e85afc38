//! Differential fidelity with address lists: random rulesets whose rules
//! name lists (`from @a`, `to @b`) next to plain ones, random lists of
//! addresses and networks (IPv4 and IPv6, overlapping and adjacent, some
//! temporary), real packets between two namespaces; the kernel's verdict
//! must equal `model::evaluate`'s. Between the two halves of each round's
//! packets the lists change (entries added and removed), sent as an element
//! delta only, and the second half is judged against the changed lists.
//!
//! The seed is printed; `PORTWALL_SEED=N` replays a run.

mod common;

use common::{addressed_pair, expected_seen, random_packets, random_ruleset, send_all_confirmed};
use model::list::{Deadline, ListEntry, ListName, Lists, Segments};
use model::{evaluate, parse_net, Ruleset, Services};
use netfilter::{ApplyMode, ApplyOptions, Kernel};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Duration;
use testns::traffic::Listeners;

const ROUNDS: usize = 20;

/// Entries a list may hold: single clients and servers, small networks
/// around them (overlapping and adjacent), of both families.
const CANDIDATES: [&str; 16] = [
    "198.51.100.20",
    "198.51.100.21",
    "198.51.100.22/31",
    "198.51.100.24/30",
    "198.51.100.20/30",
    "198.51.100.26",
    "198.51.100.10",
    "198.51.100.11",
    "2001:db8::20",
    "2001:db8::22/127",
    "2001:db8::24/126",
    "2001:db8::21",
    "2001:db8::26",
    "2001:db8::10",
    "2001:db8::11",
    "198.51.100.0/28",
];

fn random_entries(rng: &mut StdRng, now: u64) -> Vec<ListEntry> {
    let n = rng.gen_range(0..=6);
    CANDIDATES
        .choose_multiple(rng, n)
        .map(|t| ListEntry {
            net: parse_net(t).unwrap(),
            // Some temporary, far enough ahead to hold for the round.
            until: rng
                .gen_bool(0.3)
                .then(|| Deadline::after(now, Duration::from_secs(3600))),
        })
        .collect()
}

fn lists_of(entries: &[(ListName, Vec<ListEntry>)]) -> Lists {
    Lists(
        entries
            .iter()
            .map(|(n, e)| (n.clone(), Arc::new(Segments::of(e))))
            .collect(),
    )
}

#[test]
fn kernel_verdicts_equal_evaluate_with_lists_changing_between_packets() {
    run(Kernel::Netlink, ROUNDS, "lists differential test");
}

/// The iptables backend keeps lists in ipsets (`hash:net`), made anew with
/// the rules at each change.
#[test]
fn iptables_verdicts_equal_evaluate_with_lists_changing_between_packets() {
    run(
        Kernel::Iptables,
        ROUNDS / 2,
        "lists differential test (iptables)",
    );
}

fn run(kernel: Kernel, rounds: usize, name: &str) {
    let seed = testns::seed(name);
    let mut rng = StdRng::seed_from_u64(seed);
    let services = Services::builtin();
    let (pair, servers) = addressed_pair();
    let _listeners = Listeners::start(&pair.server, &servers, &common::PORTS);
    let names: Vec<ListName> = ["a", "b", "c"]
        .iter()
        .map(|n| ListName::parse(n).unwrap())
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut next_sport: u16 = 20000;
    let mut mismatches = Vec::new();
    let (mut by_list_rule, mut deltas) = (0usize, 0usize);
    for round in 0..rounds {
        let random = random_ruleset(&mut rng, &services);
        // Some rules name a list instead of their addresses.
        let mut rs = Ruleset {
            rules: Vec::new(),
            ..random.clone()
        };
        for mut r in random.rules {
            if rng.gen_bool(0.5) {
                r.source = model::Addresses::any();
                r.source_list = Some(names.choose(&mut rng).unwrap().clone());
            }
            if rng.gen_bool(0.2) {
                r.destination = model::Addresses::any();
                r.destination_list = Some(names.choose(&mut rng).unwrap().clone());
            }
            if r.validate().is_ok() {
                rs.add(r);
            }
        }
        let mut entries: Vec<(ListName, Vec<ListEntry>)> = names
            .iter()
            .map(|n| (n.clone(), random_entries(&mut rng, now)))
            .collect();
        rs.lists = lists_of(&entries);
        pair.server
            .run(|| kernel.apply(&rs, None, ApplyOptions::default()))
            .unwrap_or_else(|e| panic!("apply round {round}: {e}\n{rs}"));
        for half in 0..2 {
            if half == 1 {
                // Entries added and removed: an element delta.
                let previous = rs.clone();
                for (_, e) in &mut entries {
                    e.retain(|_| rng.gen_bool(0.6));
                    e.extend(random_entries(&mut rng, now).into_iter().take(2));
                    e.sort();
                    e.dedup_by_key(|x| x.net);
                }
                rs.lists = lists_of(&entries);
                let report = pair
                    .server
                    .run(|| kernel.apply(&rs, Some(&previous), ApplyOptions::default()))
                    .unwrap_or_else(|e| panic!("list change round {round}: {e}\n{rs}"));
                if kernel != Kernel::Iptables {
                    assert_ne!(
                        report.mode,
                        ApplyMode::Replace,
                        "a list change must not replace the table"
                    );
                }
                deltas += (report.mode == ApplyMode::Elements) as usize;
            }
            let packets = random_packets(&mut rng, &servers, common::PACKETS / 2, &mut next_sport);
            let expected: Vec<_> = packets
                .iter()
                .map(|p| expected_seen(evaluate(&rs, p).decision))
                .collect();
            let seen =
                send_all_confirmed(&pair.client, &packets, Duration::from_millis(600), |i| {
                    expected[i] != testns::traffic::Seen::Timeout
                });
            for (p, s) in packets.iter().zip(seen) {
                let v = evaluate(&rs, p);
                if let model::DecidedBy::Rule { number } = v.by {
                    by_list_rule += rs.rules[number - 1].lists().next().is_some() as usize;
                }
                if expected_seen(v.decision) != s {
                    mismatches.push(format!(
                        "round {round} half {half}: {:?} {}:{} -> {}:{}: kernel {s:?}, evaluate {:?} by {:?}\n{rs}\nlists: {entries:?}",
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
        }
    }
    // A run whose list rules never decide would prove nothing.
    assert!(
        by_list_rule >= rounds * 5 && (kernel == Kernel::Iptables || deltas >= rounds / 2),
        "list rules decided {by_list_rule} packets, {deltas} element deltas (seed {seed})"
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatch(es) (seed {seed}):\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
