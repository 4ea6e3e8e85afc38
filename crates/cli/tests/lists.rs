//! Address lists and temporary access from the command line (issue 16),
//! with real connections between namespaces: a rule naming a list follows
//! the list's changes; bad input names what is wrong and changes nothing; a
//! temporary rule and a temporary list entry stop matching at their deadline
//! with portwall not running, and leave `status` and `list show`.

mod common;
use common::portwall;
use std::time::{Duration, Instant};
use testns::traffic::{self, Listeners, Seen};
use testns::Pair;

/// A TCP connection from `src` (an address of the client) to the server's
/// `port`.
fn connect(pair: &Pair, src: &str, port: u16) -> Seen {
    let dst = format!("{}:{port}", pair.server_addr.v4).parse().unwrap();
    let src = format!("{src}:0").parse().unwrap();
    pair.client
        .run(|| traffic::tcp(src, dst, Duration::from_millis(800)))
}

/// [`connect`] until it sees `want`, at most until `deadline`: when it
/// changed, or `None` if it never did.
fn first_seen(pair: &Pair, src: &str, port: u16, want: Seen, deadline: Instant) -> Option<Instant> {
    while Instant::now() < deadline {
        if connect(pair, src, port) == want {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_rule_naming_a_list_follows_the_list() {
    for backend in ["nft", "iptables"] {
        follows(backend);
    }
}

/// On the iptables backend a list is a `hash:net` ipset per family.
fn follows(backend: &str) {
    let pair = Pair::new();
    for a in ["198.51.100.21/24", "198.51.100.22/24"] {
        pair.client.ip(&["addr", "add", a, "dev", "eth0"]).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| common::ok_on(&pair.server, d, backend, args);
    let _l = Listeners::start(
        &pair.server,
        &[pair.server_addr.v4.parse().unwrap()],
        &[2200],
    );
    run(&["list", "create", "office"]);
    run(&["list", "add", "office", "198.51.100.20", "2001:db8::/32"]);
    run(&["allow", "2200/tcp", "from", "@office"]);
    run(&["enable"]);
    assert_eq!(connect(&pair, "198.51.100.20", 2200), Seen::Open);
    assert_eq!(connect(&pair, "198.51.100.21", 2200), Seen::Timeout);
    // Added: let in; an element delta, not a new table.
    let out = run(&["list", "add", "office", "198.51.100.21"]);
    if backend == "nft" {
        assert!(out.contains("set elements changed"), "{out}");
    }
    assert_eq!(connect(&pair, "198.51.100.21", 2200), Seen::Open);
    // Replaced from a file: .20 and .21 out, a network with .22 in.
    let file = d.join("office.txt");
    std::fs::write(
        &file,
        "# the office\n198.51.100.22/31\n\n2001:db8::/32 # v6\n",
    )
    .unwrap();
    let out = run(&["list", "load", "office", file.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["added"].as_u64(), v["removed"].as_u64()),
        (Some(1), Some(2)),
        "{v}"
    );
    assert_eq!(connect(&pair, "198.51.100.20", 2200), Seen::Timeout);
    assert_eq!(connect(&pair, "198.51.100.22", 2200), Seen::Open);
    let show = run(&["list", "show", "office", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v["used_by"], serde_json::json!([1]), "{v}");
    assert!(v["kernel"]["packets"].as_u64().unwrap() >= 1, "{v}");
    let ls = run(&["list", "ls"]);
    assert!(ls.contains("@office") && ls.contains("ENTRIES"), "{ls}");
    // A list a rule uses is not deleted; the rule is named.
    let o = portwall(
        &pair.server,
        d,
        &["--backend", backend, "list", "delete", "office"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr_of(&o).contains("used by rule 1 (allow 2200/tcp from @office)"),
        "{}",
        stderr_of(&o)
    );
    // The rule reads back from the kernel as it was written.
    let status = run(&["status"]);
    assert!(status.contains("allow 2200/tcp from @office"), "{status}");
    run(&["delete", "allow", "2200/tcp", "from", "@office"]);
    run(&["list", "delete", "office"]);
    assert!(run(&["list", "ls"]).contains("No lists"));
    run(&["disable"]);
}

#[test]
fn bad_list_input_names_what_is_wrong_and_changes_nothing() {
    let ns = testns::Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| portwall(&ns, d, args);
    assert!(run(&["list", "create", "office"]).status.success());
    assert!(run(&["list", "add", "office", "203.0.113.0/24"])
        .status
        .success());
    let before = std::fs::read_to_string(d.join("lists/office.list")).unwrap();
    let file = d.join("bad.txt");
    std::fs::write(&file, "192.0.2.1\n192.0.2.0/33\n").unwrap();
    for (args, says) in [
        (
            vec!["list", "load", "office", file.to_str().unwrap()],
            "line 2:",
        ),
        (vec!["list", "add", "office", "10.0.0.1/8"], "host bits set"),
        (
            vec!["list", "add", "office", "example.com"],
            "entry 'example.com'",
        ),
        (vec!["list", "create", "Office"], "is not a list name"),
        (vec!["list", "create", "office"], "exists already"),
        (
            vec!["list", "add", "nosuch", "10.0.0.1"],
            "the lists are: @office",
        ),
        (
            vec!["allow", "22/tcp", "from", "@nosuch"],
            "the lists are: @office",
        ),
        (
            vec!["allow", "22/tcp", "from", "@office,10.0.0.1"],
            "is not a list name",
        ),
        (vec!["allow", "22/tcp", "--for", "30x"], "is not a duration"),
        (
            vec!["allow", "22/tcp", "--for", "31d"],
            "longer than the limit of 30d",
        ),
        (
            vec!["allow", "from", "any", "--for", "1h"],
            "a temporary rule needs",
        ),
        (vec!["status", "--for", "1h"], "--for applies to rules"),
        (
            vec!["list", "del", "office", "10.0.0.1", "--for", "1h"],
            "--for applies to 'list add'",
        ),
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr_of(&o));
        assert!(stderr_of(&o).contains(says), "{args:?}: {}", stderr_of(&o));
    }
    assert_eq!(
        std::fs::read_to_string(d.join("lists/office.list")).unwrap(),
        before
    );
    assert!(!d.join("rules.toml").exists(), "no rule was saved");
}

/// A temporary rule and a temporary list entry stop matching at their
/// deadline (± 2 s) although no portwall process runs then: the kernel's
/// element timeouts end them. Afterwards `status` and `list show` leave
/// them out.
#[test]
fn temporary_access_ends_at_its_deadline_without_portwall() {
    let pair = Pair::new();
    pair.client
        .ip(&["addr", "add", "198.51.100.21/24", "dev", "eth0"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| common::ok_on(&pair.server, d, "nft", args);
    let _l = Listeners::start(
        &pair.server,
        &[pair.server_addr.v4.parse().unwrap()],
        &[2201, 2202],
    );
    run(&["enable"]);
    run(&["list", "create", "visitors"]);
    run(&["allow", "2202/tcp", "from", "@visitors"]);
    let start = Instant::now();
    run(&["allow", "2201/tcp", "from", "198.51.100.20", "--for", "6s"]);
    run(&["list", "add", "visitors", "198.51.100.21", "--for", "8s"]);
    let status = run(&["status"]);
    assert!(
        status.contains("Expires") && status.contains("in "),
        "{status}"
    );
    assert_eq!(connect(&pair, "198.51.100.20", 2201), Seen::Open);
    assert_eq!(connect(&pair, "198.51.100.21", 2202), Seen::Open);
    // No portwall process from here on: only the kernel ends them.
    let bound = start + Duration::from_secs(20);
    let rule_ended = first_seen(&pair, "198.51.100.20", 2201, Seen::Timeout, bound)
        .expect("the temporary rule never ended");
    let entry_ended = first_seen(&pair, "198.51.100.21", 2202, Seen::Timeout, bound)
        .expect("the temporary entry never ended");
    let near = |t: Instant, secs: f64| {
        let at = t.duration_since(start).as_secs_f64();
        // The deadline is whole seconds from when the command ran (within
        // `start` and its end); a probe takes up to 0.8 s to see a drop.
        assert!(
            (secs - 2.0..=secs + 2.0 + 0.8).contains(&at),
            "ended at {at:.1} s, deadline {secs} s"
        );
    };
    near(rule_ended, 6.0);
    near(entry_ended, 8.0);
    let status = run(&["status"]);
    assert!(
        !status.contains("2201/tcp"),
        "the expired rule left status: {status}"
    );
    let show = run(&["list", "show", "visitors", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v["entries"], serde_json::json!([]), "{v}");
    // A change after the deadline goes through as an element delta or a
    // replacement, never an error about the element the kernel removed.
    run(&["allow", "2203/tcp"]);
    run(&["disable"]);
}

/// `portwall import iptables` keeps the ipsets its rules match as lists,
/// with their members (a member's timeout as a temporary entry).
#[test]
fn import_keeps_ipset_references_as_lists() {
    let ns = testns::Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rules = d.join("rules.v4");
    std::fs::write(
        &rules,
        "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A INPUT -m set --match-set Blocked_v4 src -j DROP\n\
         -A INPUT -p tcp -m set --match-set office src -m tcp --dport 22 -j ACCEPT\n\
         COMMIT\n",
    )
    .unwrap();
    let sets = d.join("ipsets");
    std::fs::write(
        &sets,
        "create Blocked_v4 hash:net family inet hashsize 1024 maxelem 65536 timeout 0\n\
         add Blocked_v4 192.0.2.0/24 timeout 0\n\
         add Blocked_v4 198.51.100.7 timeout 3600\n\
         create office hash:ip family inet hashsize 1024 maxelem 65536\n\
         add office 203.0.113.5\n",
    )
    .unwrap();
    let (r, s) = (rules.to_str().unwrap(), sets.to_str().unwrap());
    let out = common::ok(
        &ns,
        d,
        &[
            "import",
            "iptables",
            "--file",
            r,
            "--ipset-file",
            s,
            "--apply",
        ],
    );
    assert!(
        out.contains("List @blocked_v4: ipset 'Blocked_v4', 2 entries"),
        "{out}"
    );
    let status = common::ok(&ns, d, &["status"]);
    assert!(status.contains("deny from @blocked_v4"), "{status}");
    assert!(status.contains("allow 22/tcp from @office"), "{status}");
    let show = common::ok(&ns, d, &["list", "show", "blocked_v4", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{v}");
    assert!(entries[1]["seconds_left"].as_u64().unwrap() > 3500, "{v}");
    // An ipset of address and port pairs is no list: refused, nothing applied.
    std::fs::write(
        &sets,
        "create office hash:ip,port family inet\ncreate Blocked_v4 hash:net family inet\n",
    )
    .unwrap();
    let o = portwall(
        &ns,
        d,
        &["import", "iptables", "--file", r, "--ipset-file", s],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr_of(&o).contains("only sets of addresses"),
        "{}",
        stderr_of(&o)
    );
    common::ok(&ns, d, &["disable"]);
}
