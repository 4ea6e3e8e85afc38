//! Crash trials of the edge (issue 18): `portwall-edge run` killed with
//! SIGKILL at a random moment of a snapshot apply, 200 times, in a gateway
//! namespace this test creates.
//!
//! Two policies alternate, A and B (300 servers each, differing in most of
//! their rules and in a tenth of their servers). Before each trial the state
//! directory is given the other policy than the kernel holds, as the agent
//! saves a policy it is about to enforce; the agent started on it restores it
//! at once (the panel is unreachable), and is killed somewhere in that apply.
//! After every kill:
//! - the kernel holds exactly A or exactly B, element for element (each
//!   compared with `status` against a copy of that policy): never a mix;
//! - `portwall-edge status` on the state directory says whether the kernel
//!   matches the saved policy, and names what differs when it does not;
//! - every file of the state directory decodes.
//!
//! The kills are spread over the whole apply: the delay is drawn between 0 and
//! 1.5 times the median time an uninterrupted start takes to enforce the
//! policy, measured first (and the window follows the machine's speed during
//! the run). A last uninterrupted run leaves no staged file
//! behind. The seed is printed; `PORTWALL_SEED=N` replays a run.

use edge::compile::Mode;
use model::network::sync::{EdgeRule, ServerPolicy};
use model::network::NetworkProtocol;
use model::PortRange;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use testns::Netns;

const TRIALS: usize = 200;
const SERVERS: i64 = 300;

/// Policy `which` (0: A, 1: B) at `revision`.
fn policy(which: u8) -> Vec<ServerPolicy> {
    (0..SERVERS)
        // B drops every tenth server of A and adds others.
        .filter(|i| which == 0 || i % 10 != 0)
        .chain(
            (which == 1)
                .then_some(SERVERS..SERVERS + SERVERS / 10)
                .into_iter()
                .flatten(),
        )
        .map(|i| {
            let addr = IpAddr::V4(Ipv4Addr::new(10, (i / 250) as u8 + 1, (i % 250) as u8, 10));
            let rules = (0..4)
                .map(|k| EdgeRule {
                    firewall_id: i,
                    rule_id: i * 10 + k,
                    protocol: if k % 2 == 0 {
                        NetworkProtocol::Tcp
                    } else {
                        NetworkProtocol::Udp
                    },
                    // A opens 1000+k, B 2000+k: most elements differ.
                    ports: Some(PortRange::single(1000 * (u16::from(which) + 1) + k as u16)),
                    sources: if k == 3 {
                        vec!["198.51.100.0/24".parse().unwrap()]
                    } else {
                        vec![]
                    },
                })
                .collect();
            ServerPolicy {
                server_id: i + 1,
                name: format!("vps{i}"),
                addresses: vec![addr],
                revision: 5 + u64::from(which),
                enforced: true,
                rules,
            }
        })
        .collect()
}

fn save(dir: &Path, which: u8) {
    edge::store::save_policy(
        dir,
        "z1",
        Mode::Forward,
        "portwall_edge",
        5 + u64::from(which),
        &policy(which),
    )
    .unwrap();
}

fn start(gw: &Netns, dir: &Path) -> Child {
    gw.command(env!("CARGO_BIN_EXE_portwall-edge"))
        .args([
            "run",
            "--panel-url",
            "http://127.0.0.1:9",
            "--insecure-http",
            "--zone",
            "z1",
            "--backoff-max",
            "1",
        ])
        .arg("--state-dir")
        .arg(dir)
        .env("PORTWALL_EDGE_TOKEN", "t")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start portwall-edge")
}

/// Whether the kernel holds exactly the policy saved in `dir`.
fn holds(gw: &Netns, dir: &Path) -> bool {
    let st = gw.run(|| edge::status::collect(dir, None)).unwrap();
    st.loaded && st.drift.is_empty()
}

fn kill(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// Stops the agent as its service manager does (SIGTERM), and waits.
fn stop(mut c: Child) {
    let pid = c.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let t = Instant::now();
    while c.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the agent did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts the agent on `work` and waits until the kernel holds what it saved;
/// the time that took. The agent is then stopped with SIGTERM (`graceful`) or
/// killed.
fn run_to_enforced(gw: &Netns, work: &Path, graceful: bool) -> Duration {
    let t = Instant::now();
    let child = start(gw, work);
    while !holds(gw, work) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the agent never enforced its saved policy"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = t.elapsed();
    if graceful {
        stop(child);
    } else {
        kill(child);
    }
    took
}

#[test]
fn a_killed_agent_leaves_one_whole_policy_in_the_kernel() {
    let seed = testns::seed("edge crash trials");
    let mut rng = StdRng::seed_from_u64(seed);
    let gw = Netns::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (work, a, b) = (dirs[0].path(), dirs[1].path(), dirs[2].path());
    save(a, 0);
    save(b, 1);
    // The kernel starts with A; the median of a few uninterrupted starts sets
    // the window the kills are drawn from.
    let mut held = 0u8;
    save(work, 0);
    run_to_enforced(&gw, work, false);
    let mut times = Vec::new();
    for _ in 0..4 {
        held ^= 1;
        save(work, held);
        times.push(run_to_enforced(&gw, work, false));
    }
    times.sort();
    let mut window = times[times.len() / 2].mul_f64(1.5);
    eprintln!(
        "an uninterrupted start enforces its policy in {:?} (median); kills within {window:?}",
        times[times.len() / 2]
    );

    let (mut old_kept, mut new_won) = (0, 0);
    // The window follows the machine's speed: ten kills in a row on the same
    // side of the apply stretch or shrink it.
    let mut streak: (u8, u32) = (2, 0);
    for trial in 0..TRIALS {
        let target = held ^ 1;
        save(work, target);
        let child = start(&gw, work);
        std::thread::sleep(window.mul_f64(rng.gen_range(0.0..1.0)));
        kill(child);
        let (in_a, in_b) = (holds(&gw, a), holds(&gw, b));
        assert!(
            in_a != in_b,
            "trial {trial} (seed {seed}): the kernel holds {}",
            if in_a {
                "both A and B"
            } else {
                "neither A nor B: a mix"
            }
        );
        let now = u8::from(in_b);
        // What status says of the state directory: a match, or what differs.
        let st = gw.run(|| edge::status::collect(work, None)).unwrap();
        assert_eq!(st.revision, Some(5 + u64::from(target)), "trial {trial}");
        if now == target {
            assert!(st.drift.is_empty(), "trial {trial}: {:?}", st.drift);
            new_won += 1;
        } else {
            assert!(
                !st.drift.is_empty(),
                "trial {trial}: status says nothing differs"
            );
            old_kept += 1;
        }
        assert!(
            edge::store::load_policy(work).unwrap().is_some(),
            "trial {trial}"
        );
        let won = u8::from(now == target);
        streak = if streak.0 == won {
            (won, streak.1 + 1)
        } else {
            (won, 1)
        };
        if streak.1 >= 10 {
            window = if won == 1 {
                window.mul_f64(0.7)
            } else {
                window.mul_f64(1.5)
            };
            streak.1 = 0;
        }
        held = now;
    }
    eprintln!(
        "{TRIALS} kills: the old policy kept {old_kept} times, the new one whole {new_won} times"
    );
    assert!(
        old_kept > 0 && new_won > 0,
        "the kills missed one side of the apply"
    );

    // An uninterrupted run enforces the saved policy and leaves no staged file.
    save(work, held ^ 1);
    run_to_enforced(&gw, work, true);
    let staged: Vec<String> = std::fs::read_dir(work)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(staged.is_empty(), "staged files left: {staged:?}");
}
