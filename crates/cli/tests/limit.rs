//! `limit` as `ufw limit` (issue 18): a source's new connections over the
//! rate are refused (ICMP port unreachable, so the client sees "connection
//! refused" at once, not a timeout), UFW's rate by default (five in 30 s,
//! the sixth refused), and a rate of the rule's own (`rate 3/10s`); per
//! source; on both backends, with real connections between namespaces.

mod common;
use common::portwall;
use std::time::{Duration, Instant};
use testns::traffic::{self, Listeners, Seen};
use testns::Pair;

/// `count` TCP connections in a row from `src` to the server's `port`: what
/// each saw, and how long they took.
fn connect(
    pair: &Pair,
    src: &str,
    port: u16,
    count: u16,
    first_sport: u16,
) -> (Vec<Seen>, Duration) {
    let dst = format!("{}:{port}", pair.server_addr.v4).parse().unwrap();
    let t = Instant::now();
    let seen = pair.client.run(|| {
        (0..count)
            .map(|i| {
                let src = format!("{src}:{}", first_sport + i).parse().unwrap();
                traffic::tcp(src, dst, Duration::from_secs(3))
            })
            .collect()
    });
    (seen, t.elapsed())
}

/// The first `n` open, then refusals (a token comes back every `seconds / n`:
/// a slow machine may let one more through per such interval it took).
#[track_caller]
fn check(seen: &[Seen], took: Duration, n: usize, seconds: u64, what: &str) {
    let refill = (took.as_secs_f64() * n as f64 / seconds as f64).floor() as usize;
    let open = seen.iter().filter(|s| **s == Seen::Open).count();
    assert!(
        seen[..n].iter().all(|s| *s == Seen::Open),
        "{what}: {seen:?}"
    );
    assert!(
        open <= n + refill,
        "{what}: {open} open in {took:?}: {seen:?}"
    );
    assert!(
        seen.iter().all(|s| matches!(s, Seen::Open | Seen::Refused)),
        "{what}: the client is refused, never left waiting: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&Seen::Refused), "{what}: {seen:?}");
}

#[test]
fn limit_refuses_connections_over_the_rate_on_both_backends() {
    for backend in ["nft", "iptables"] {
        let pair = Pair::new();
        pair.client
            .ip(&["addr", "add", "198.51.100.21/24", "dev", "eth0"])
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let run = |args: &[&str]| common::ok_on(&pair.server, d, backend, args);
        run(&["enable"]);
        run(&["limit", "2222/tcp"]);
        run(&["limit", "2223/tcp", "rate", "3/10s"]);
        let status = run(&["status"]);
        assert!(status.contains("limit 2223/tcp rate 3/10s"), "{status}");
        assert!(
            !status.contains("2222/tcp rate"),
            "UFW's rate is not written: {status}"
        );
        let _l = Listeners::start(
            &pair.server,
            &[pair.server_addr.v4.parse().unwrap()],
            &[2222, 2223],
        );
        let (seen, took) = connect(&pair, "198.51.100.20", 2222, 8, 41000);
        check(&seen, took, 5, 30, &format!("{backend}: limit 2222/tcp"));
        let (seen, took) = connect(&pair, "198.51.100.20", 2223, 6, 42000);
        check(
            &seen,
            took,
            3,
            10,
            &format!("{backend}: limit 2223/tcp rate 3/10s"),
        );
        // Per source: another address has its own count.
        let (seen, _) = connect(&pair, "198.51.100.21", 2223, 1, 43000);
        assert_eq!(seen, [Seen::Open], "{backend}: another source");
        run(&["disable"]);
    }
}

#[test]
fn a_rate_is_refused_where_it_means_nothing() {
    let ns = testns::Netns::new();
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            &["allow", "22/tcp", "rate", "3/10s"][..],
            "'rate' belongs to 'limit' rules",
        ),
        (&["limit", "22/tcp", "rate", "0/10s"], "is not a rate"),
        (&["limit", "22/tcp", "rate", "ten"], "is not a rate"),
        (
            &["limit", "22/tcp", "rate", "3/10s", "rate", "4/10s"],
            "given twice",
        ),
    ] {
        let o = portwall(&ns, dir.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(says), "{args:?}: {e}");
    }
    assert!(!dir.path().join("rules.toml").exists(), "nothing was saved");
}
