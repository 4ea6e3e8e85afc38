//! Crash trials (issue 18): `portwall` killed with SIGKILL at a random moment
//! of a change, 200 times, in a network namespace this test creates.
//!
//! After every kill, whatever the moment:
//! - the next command runs (the lock died with the process) and every file of
//!   the config directory decodes;
//! - every change that was acknowledged (exit 0 before the kill) is in
//!   `rules.toml`: nothing acknowledged is ever lost;
//! - `portwall reload` brings the kernel to the saved rules, after which
//!   the kernel's table equals what portwall applied (no drift) and the saved
//!   rules equal the applied ones;
//! - no staged temporary file is left in the config directory.
//!
//! The kills are spread over the whole length of a change: the delay is drawn
//! between 0 and 1.5 times the median time of an uninterrupted change,
//! measured first (and the window follows the machine's speed during the
//! run). The changes alternate between an element-only change (a
//! port added to an existing rule shape) and a change of structure (a rule
//! inserted first), so both apply paths are cut. The seed is printed;
//! `PORTWALL_SEED=N` replays a run.

mod common;

use common::{ok, portwall_command};
use model::{HostConfig, Services};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};
use testns::Netns;

const TRIALS: usize = 200;

fn saved_rules(dir: &Path) -> Vec<String> {
    let path = dir.join("rules.toml");
    let text = std::fs::read_to_string(&path).expect("rules.toml is readable");
    let config = HostConfig::from_toml(&text, &Services::builtin())
        .unwrap_or_else(|e| panic!("rules.toml does not decode: {e}\n{text}"));
    config
        .ruleset
        .rules
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn status(ns: &Netns, dir: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(ns, dir, &["status", "--json"])).expect("status JSON")
}

/// The change of trial `i`: even trials add a port to the shape the others
/// share (an element-only change), odd ones insert a rule of a new shape
/// first (the table is replaced).
fn change(i: usize) -> (Vec<String>, String) {
    if i.is_multiple_of(2) {
        let port = 20_000 + i;
        (
            vec!["allow".into(), format!("{port}/tcp")],
            format!("allow {port}/tcp"),
        )
    } else {
        let host = format!("198.51.{}.{}", 100 + i / 250, 1 + i % 250);
        (
            vec![
                "insert".into(),
                "1".into(),
                "deny".into(),
                "from".into(),
                host.clone(),
            ],
            format!("deny from {host}"),
        )
    }
}

#[test]
fn a_change_killed_at_any_moment_loses_nothing_acknowledged() {
    let seed = testns::seed("crash trials");
    let mut rng = StdRng::seed_from_u64(seed);
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&ns, d, &["--force", "enable"]);
    ok(&ns, d, &["allow", "22/tcp"]);
    // The median time of an uninterrupted change.
    let mut times: Vec<Duration> = (0..6)
        .map(|i| {
            let started = Instant::now();
            ok(&ns, d, &["allow", &format!("{}/udp", 30_000 + i)]);
            started.elapsed()
        })
        .collect();
    times.sort();
    let median = times[times.len() / 2];
    let mut acknowledged: Vec<String> = Vec::new();
    let (mut killed, mut completed) = (0, 0);
    // If the machine's speed changes during the run, the window follows it:
    // longer after a kill, shorter after a change that completed, so that
    // kills keep falling on both sides of a change's end.
    let mut scale = 1.0f64;
    for i in 0..TRIALS {
        let (args, rule) = change(i);
        let delay = median.mul_f64(rng.gen_range(0.0..1.5) * scale);
        let mut child = portwall_command(Some(&ns), d)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn portwall");
        std::thread::sleep(delay);
        let exited = child.try_wait().expect("wait");
        if exited.is_none() {
            let _ = child.kill();
        }
        child.wait().expect("wait");
        match exited {
            Some(s) if s.success() => {
                completed += 1;
                acknowledged.push(rule.clone());
                scale = (scale / 1.05).max(0.1);
            }
            Some(s) => panic!("trial {i} (seed {seed}): {args:?} failed on its own: {s}"),
            None => {
                killed += 1;
                scale = (scale * 1.05).min(20.0);
            }
        }
        // The next command runs, and nothing acknowledged is lost.
        let s = status(&ns, d);
        assert!(
            s["enabled"].as_bool().unwrap(),
            "trial {i} (seed {seed}): {s}"
        );
        let saved = saved_rules(d);
        for rule in &acknowledged {
            assert!(
                saved.contains(rule),
                "trial {i} (seed {seed}): the acknowledged '{rule}' is not in rules.toml: {saved:?}"
            );
        }
        // reload makes the kernel hold the saved rules.
        ok(&ns, d, &["reload"]);
        let s = status(&ns, d);
        assert_eq!(
            s["kernel_drift"],
            serde_json::json!([]),
            "trial {i} (seed {seed}): {s}"
        );
        assert_eq!(s["saved_differs"], false, "trial {i} (seed {seed}): {s}");
        assert_eq!(s["status"], "active", "trial {i} (seed {seed}): {s}");
        // A killed change's rule is either saved or not, never half: the
        // rules shown (applied) are the saved ones.
        let shown: Vec<String> = s["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(shown, saved_rules(d), "trial {i} (seed {seed})");
        let leftovers: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "trial {i} (seed {seed}): staged files left: {leftovers:?}"
        );
    }
    eprintln!(
        "crash trials: {TRIALS} changes, {killed} killed, {completed} completed, median change {median:?}"
    );
    // The kills fell on both sides of the end of a change.
    assert!(
        killed >= TRIALS / 10,
        "only {killed} of {TRIALS} were killed"
    );
    assert!(
        completed >= TRIALS / 10,
        "only {completed} of {TRIALS} completed"
    );
}
