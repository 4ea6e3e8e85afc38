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

/// The IPv4 elements of list `name` in the kernel's table, read with `nft`.
fn kernel_list_elements(ns: &Netns, name: &str) -> usize {
    let out = ns.exec_ok(&[
        "nft",
        "-j",
        "list",
        "set",
        "inet",
        "portwall",
        &format!("list_{name}_v4"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("nft JSON");
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["set"]["elem"].as_array())
        .map(Vec::len)
        .sum()
}

/// A list of `n` IPv4 entries, /32s and some networks, from `seed`.
fn list_version(seed: u64, n: usize) -> Vec<model::list::ListEntry> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let a: u32 = rng.gen_range(0x0100_0000..0xdf00_0000);
            let len = if rng.gen_bool(0.9) {
                32
            } else {
                rng.gen_range(16..31)
            };
            let net = ipnet::Ipv4Net::new(a.into(), len).unwrap().trunc();
            model::list::ListEntry {
                net: net.into(),
                until: None,
            }
        })
        .collect()
}

/// Crash trials of `list load` (issue 18, for issue 16's lists): a load of a
/// 20,000-entry list killed at any moment leaves the list file whole (the
/// old version or the new one, the new one if the load was acknowledged),
/// and `reload` brings the kernel's set to the file.
#[test]
fn a_list_load_killed_at_any_moment_leaves_one_whole_version() {
    const LOADS: usize = 40;
    let seed = testns::seed("list crash trials");
    let mut rng = StdRng::seed_from_u64(seed);
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Two versions, 10 % of the entries different.
    let a = list_version(1, 20_000);
    let mut b = list_version(1, 18_000);
    b.extend(list_version(2, 2_000));
    let mut files = Vec::new();
    for (name, v) in [("a.txt", &a), ("b.txt", &b)] {
        let path = d.join(name);
        std::fs::write(&path, model::list::format_stored_list(v)).unwrap();
        files.push(path);
    }
    let nets = |v: &[model::list::ListEntry]| {
        let mut n: Vec<ipnet::IpNet> = v.iter().map(|e| e.net).collect();
        n.sort();
        n.dedup();
        n
    };
    let versions = [nets(&a), nets(&b)];
    let elements = |v: &[model::list::ListEntry]| -> usize {
        model::list::Segments::of(v)
            .segments()
            .iter()
            .map(|s| s.interval.to_networks().len())
            .sum()
    };
    let kernel_elements = [elements(&a), elements(&b)];
    ok(&ns, d, &["--force", "enable"]);
    ok(&ns, d, &["list", "create", "blk"]);
    ok(&ns, d, &["deny", "from", "@blk"]);
    let load = |i: usize| {
        vec![
            "list".to_string(),
            "load".into(),
            "blk".into(),
            files[i % 2].to_str().unwrap().to_string(),
        ]
    };
    let mut times: Vec<Duration> = (0..4)
        .map(|i| {
            let started = Instant::now();
            let args = load(i);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ok(&ns, d, &args);
            started.elapsed()
        })
        .collect();
    times.sort();
    let median = times[times.len() / 2];
    let (mut killed, mut completed) = (0, 0);
    let mut scale = 1.0f64;
    for i in 0..LOADS {
        let delay = median.mul_f64(rng.gen_range(0.0..1.5) * scale);
        let mut child = portwall_command(Some(&ns), d)
            .args(load(i))
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
        let text = std::fs::read_to_string(d.join("lists/blk.list")).expect("the list file");
        let saved = nets(
            &model::list::parse_stored_list(&text, 0).unwrap_or_else(|e| {
                panic!("trial {i} (seed {seed}): the list file does not decode: {e}")
            }),
        );
        let which = versions
            .iter()
            .position(|v| *v == saved)
            .unwrap_or_else(|| panic!("trial {i} (seed {seed}): the list file is neither version"));
        match exited {
            Some(s) if s.success() => {
                completed += 1;
                assert_eq!(
                    which,
                    i % 2,
                    "trial {i} (seed {seed}): an acknowledged load is lost"
                );
                scale = (scale / 1.05).max(0.1);
            }
            Some(s) => panic!("trial {i} (seed {seed}): the load failed on its own: {s}"),
            None => {
                killed += 1;
                scale = (scale * 1.05).min(20.0);
            }
        }
        ok(&ns, d, &["reload"]);
        assert_eq!(
            kernel_list_elements(&ns, "blk"),
            kernel_elements[which],
            "trial {i} (seed {seed}): the kernel's set is not the saved list"
        );
        let leftovers: Vec<String> = std::fs::read_dir(d.join("lists"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "trial {i} (seed {seed}): {leftovers:?}"
        );
    }
    eprintln!("list crash trials: {LOADS} loads, {killed} killed, {completed} completed, median load {median:?}");
    assert!(killed >= LOADS / 10, "only {killed} of {LOADS} were killed");
    assert!(
        completed >= LOADS / 10,
        "only {completed} of {LOADS} completed"
    );
}
