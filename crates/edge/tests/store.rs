//! Fail-static storage and retry pacing, without a kernel.

use edge::agent::backoff_delay;
use edge::compile::Mode;
use edge::store;
use model::network::sync::{EdgeRule, ServerPolicy};
use model::network::NetworkProtocol;
use std::time::Duration;

fn servers() -> Vec<ServerPolicy> {
    vec![ServerPolicy {
        server_id: 7,
        name: "vps7".into(),
        addresses: vec!["203.0.113.7".parse().unwrap()],
        revision: 12,
        enforced: true,
        rules: vec![EdgeRule {
            firewall_id: 1,
            rule_id: 2,
            protocol: NetworkProtocol::Tcp,
            ports: Some(model::PortRange::single(22)),
            sources: vec!["198.51.100.0/24".parse().unwrap()],
        }],
    }]
}

#[test]
fn the_saved_policy_round_trips_and_replaces_atomically() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(store::load_policy(dir.path()).unwrap(), None);
    store::save_policy(
        dir.path(),
        "z",
        Mode::Forward,
        "portwall_edge",
        12,
        &servers(),
    )
    .unwrap();
    let saved = store::load_policy(dir.path()).unwrap().unwrap();
    assert_eq!(
        (saved.revision, saved.zone.as_str(), saved.mode),
        (12, "z", Mode::Forward)
    );
    assert_eq!(saved.servers, servers());
    store::save_policy(dir.path(), "z", Mode::Forward, "portwall_edge", 13, &[]).unwrap();
    assert_eq!(
        store::load_policy(dir.path()).unwrap().unwrap().revision,
        13
    );
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![store::POLICY_FILE.to_string()]);
}

#[test]
fn a_damaged_or_foreign_file_is_an_error_not_an_empty_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        store::policy_path(dir.path()),
        b"{\"format\": 1, \"zone\": ",
    )
    .unwrap();
    let err = store::load_policy(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not a saved edge policy"), "{err}");
    store::save_policy(dir.path(), "z", Mode::Bridge, "t", 1, &servers()).unwrap();
    let text = std::fs::read_to_string(store::policy_path(dir.path())).unwrap();
    std::fs::write(
        store::policy_path(dir.path()),
        text.replace("\"format\":1", "\"format\":99"),
    )
    .unwrap();
    let err = store::load_policy(dir.path()).unwrap_err().to_string();
    assert!(err.contains("format 99"), "{err}");
}

#[test]
fn backoff_grows_is_capped_and_jittered() {
    let (init, max) = (Duration::from_millis(100), Duration::from_secs(2));
    for attempt in 1..40 {
        let cap = (init * 2u32.saturating_pow(attempt - 1).min(1 << 20)).min(max);
        let d = backoff_delay(attempt, init, max);
        assert!(
            d >= cap / 2 && d <= cap,
            "attempt {attempt}: {d:?} not in [{:?}, {cap:?}]",
            cap / 2
        );
    }
    let samples: std::collections::HashSet<Duration> =
        (0..50).map(|_| backoff_delay(10, init, max)).collect();
    assert!(samples.len() > 10, "no jitter: {samples:?}");
}
