//! The state the host is left in, said once by every command (enabled or
//! not, loaded or not, a pending confirmation), and portwall's own flags
//! typed after the rule words.

mod common;
use common::{ok, portwall};
use testns::Netns;

/// The lines of `portwall ARGS`' stdout that speak of the host's state.
fn state_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.starts_with("Firewall is") || l.starts_with("portwall is disabled"))
        .collect()
}

fn status(ns: &Netns, dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&ok(ns, dir, &["status", "--json"])).unwrap()
}

const ACTIVE: &str = "Firewall is active and enabled on system startup";
const INACTIVE: &str = "Firewall is inactive and disabled on system startup";
const SAVED_ONLY: &str =
    "portwall is disabled: the change is saved and applies on 'portwall enable'.";

#[test]
fn each_transition_says_the_state_it_leaves_once() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // A rule edit on a never-enabled host is saved, not loaded.
    let out = ok(&ns, d, &["allow", "22/tcp"]);
    assert_eq!(state_lines(&out), [SAVED_ONLY], "{out}");
    assert_eq!(status(&ns, d)["loaded"], false);

    // `apply` makes the kernel match the file: it loads and enables.
    let file = d.join("wanted.toml");
    std::fs::write(&file, "rules = [\"allow 22/tcp\", \"allow 80/tcp\"]\n").unwrap();
    let out = ok(&ns, d, &["apply", "--file", file.to_str().unwrap()]);
    assert_eq!(state_lines(&out), [ACTIVE], "{out}");
    let s = status(&ns, d);
    assert_eq!((&s["enabled"], &s["loaded"]), (&true.into(), &true.into()));

    // `enable` on an enabled host says so, once, and nothing about "disabled".
    let out = ok(&ns, d, &["enable"]);
    assert_eq!(state_lines(&out), [ACTIVE], "{out}");

    // A rule edit in force says how the kernel took it, not the state.
    let out = ok(&ns, d, &["allow", "443/tcp"]);
    assert!(out.contains("Applied to the kernel"), "{out}");
    assert!(state_lines(&out).is_empty(), "{out}");

    let out = ok(&ns, d, &["disable"]);
    assert_eq!(state_lines(&out), [INACTIVE], "{out}");
    assert_eq!(status(&ns, d)["loaded"], false);

    let out = ok(&ns, d, &["deny", "23/tcp"]);
    assert_eq!(state_lines(&out), [SAVED_ONLY], "{out}");

    let out = ok(&ns, d, &["restore"]);
    assert_eq!(
        state_lines(&out),
        ["portwall is disabled: nothing to restore"],
        "{out}"
    );

    let out = ok(&ns, d, &["enable"]);
    assert_eq!(state_lines(&out), [ACTIVE], "{out}");
    let out = ok(&ns, d, &["reload"]);
    assert_eq!(state_lines(&out), [ACTIVE], "{out}");

    // The same state in the JSON of every command.
    let v: serde_json::Value =
        serde_json::from_str(&ok(&ns, d, &["--json", "logging", "on"])).unwrap();
    assert_eq!(
        v["state"],
        serde_json::json!({ "enabled": true, "loaded": true })
    );
    assert_eq!(v["enabled"], true);

    let out = ok(&ns, d, &["reset"]);
    assert!(out.contains("Reset: 4 rule(s) removed"), "{out}");
    assert_eq!(state_lines(&out), [INACTIVE], "{out}");
    let s = status(&ns, d);
    assert_eq!(
        (&s["enabled"], &s["loaded"]),
        (&false.into(), &false.into())
    );
}

#[test]
fn flags_are_accepted_after_the_rule_words() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&ns, d, &["allow", "22/tcp"]);
    ok(&ns, d, &["enable"]);

    let v: serde_json::Value =
        serde_json::from_str(&ok(&ns, d, &["allow", "8080/tcp", "--json"])).unwrap();
    assert_eq!(v["changes"][0]["rule"], "allow 8080/tcp");

    let out = ok(&ns, d, &["deny", "8081/tcp", "--force"]);
    assert!(out.contains("Rule added"), "{out}");

    // --confirm after the rule: the deadline as a local time and a countdown.
    let out = ok(&ns, d, &["allow", "8082/tcp", "--confirm", "120"]);
    let pending = out
        .lines()
        .find(|l| l.starts_with("Pending: the change is rolled back at "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        pending.contains(" (in ") && pending.contains(" min "),
        "{pending}"
    );
    assert!(
        !pending
            .split(|c: char| !c.is_ascii_digit())
            .any(|n| n.len() >= 9),
        "a Unix timestamp: {pending}"
    );
    let status = ok(&ns, d, &["status"]);
    assert!(
        status.contains("PENDING: the last change is rolled back at "),
        "{status}"
    );
    let out = ok(&ns, d, &["confirm", "--json"]);
    assert!(out.contains("\"confirmed\": true"), "{out}");

    // An unknown flag after the rule is refused by name (usage: exit 2).
    let o = portwall(&ns, d, &["allow", "9090/tcp", "--jsn"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--jsn"));
}
