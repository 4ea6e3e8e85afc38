//! The host's desired state as a human-editable TOML document.
//!
//! Rules are stored as rule-syntax strings, exactly as `portwall status` prints them,
//! so an admin can edit the file by hand:
//!
//! ```toml
//! enabled = true
//! logging = "on"
//! rules = [
//!     "allow 22/tcp from 203.0.113.0/24 comment 'office'",
//!     "allow 80,443/tcp",
//! ]
//!
//! [defaults]
//! incoming = "deny"
//! outgoing = "allow"
//! routed = "deny"
//!
//! [builtins]
//! ping = true
//! icmp-errors = true
//! dhcp = true
//! mdns = false
//! upnp = false
//! ipv6-control = true
//! ```
//!
//! (`rules` comes before `[defaults]`: after it, TOML makes it a key of that
//! table, which is refused.)
//!
//! Reading it validates every rule; one bad line rejects the whole file, naming the
//! line, so an invalid rule is never applied. This module only converts text; the
//! `host` crate does the file I/O.
//!
//! A file laid out as portwall writes it (the `rules` array one plain string
//! a line) is read by a fast path (`split_plain_rules`) instead of `toml`
//! alone, which `toml` checks (the rest of the document, and every layout
//! the fast path does not take, go to `toml`). The measured reason: at 100k
//! rules `toml` alone took 30 ms of the 500 ms budget of a 100k-rule apply
//! (`cargo bench -p portwall --bench os_firewall`, whose phases
//! `PORTWALL_LOG=debug` times), and the rules, parsed on every core once
//! split off, 60 ms on one.

use crate::builtins::{Switch, Switches};
use crate::parse::parse_rule;
use crate::ruleset::{Defaults, Logging, Ruleset};
use crate::services::Services;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    logging: Logging,
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    builtins: Switches,
    /// `None` when the key is absent (so that the fast path can tell a
    /// second `rules` from none).
    #[serde(default)]
    rules: Option<Vec<String>>,
}

/// The desired state of a host: whether portwall is enabled, and the ruleset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HostConfig {
    pub enabled: bool,
    pub ruleset: Ruleset,
}

/// A config text that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Toml(String),
    #[error("rule {index} ({text:?}) is invalid: {message}")]
    Rule {
        index: usize,
        text: String,
        message: String,
    },
}

impl HostConfig {
    /// Parses and validates a config text.
    ///
    /// Large files are read the fast way: the `rules` array, when written
    /// one plain string per line as portwall writes it, is split off by
    /// [`split_plain_rules`] and the rest of the document goes to `toml`;
    /// the rules are then parsed on every core. At 100k rules `toml` alone
    /// took 30 ms of a 500 ms budget and the rules 60 ms on one core.
    pub fn from_toml(text: &str, services: &Services) -> Result<HostConfig, ConfigError> {
        let toml_err = |e: toml::de::Error| ConfigError::Toml(e.to_string());
        if let Some((rest, lines)) = split_plain_rules(text) {
            let file: File = toml::from_str(&rest).map_err(toml_err)?;
            // With `rules` given twice, `toml` reading the whole text says so.
            if file.rules.is_none() {
                return Self::assemble(&file, lines, services);
            }
        }
        let file: File = toml::from_str(text).map_err(toml_err)?;
        let lines = file.rules.iter().flatten().map(String::as_str).collect();
        Self::assemble(&file, lines, services)
    }

    fn assemble(
        file: &File,
        lines: Vec<&str>,
        services: &Services,
    ) -> Result<HostConfig, ConfigError> {
        Ok(HostConfig {
            enabled: file.enabled,
            ruleset: Ruleset {
                rules: parse_rules(&lines, services)?,
                defaults: file.defaults,
                logging: file.logging,
                builtins: file.builtins,
                lists: Default::default(),
            },
        })
    }

    /// The config as TOML text (rules in canonical syntax). Writing 100k rules
    /// through `toml`'s value encoder took ~100 ms, so plain strings are
    /// written here ([`push_toml_string`]).
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# portwall: the desired state of this host's firewall. Edit with care, then run 'portwall reload'.\n");
        // The top-level keys must come before the [defaults] table.
        out.push_str(&format!(
            "enabled = {}\nlogging = \"{}\"\n",
            self.enabled,
            self.ruleset.logging.as_str()
        ));
        out.push_str("rules = [\n");
        let mut text = String::new();
        for rule in &self.ruleset.rules {
            use std::fmt::Write as _;
            text.clear();
            write!(text, "{rule}").expect("writing to a String");
            out.push_str("    ");
            push_toml_string(&mut out, &text);
            out.push_str(",\n");
        }
        out.push_str("]\n\n[defaults]\n");
        for (k, v) in [
            ("incoming", self.ruleset.defaults.incoming),
            ("outgoing", self.ruleset.defaults.outgoing),
            ("routed", self.ruleset.defaults.routed),
        ] {
            out.push_str(&format!("{k} = \"{}\"\n", v.as_str()));
        }
        // Written whole, so that an admin sees every switch there is.
        out.push_str("\n# Accepted before any rule, as UFW does by default ('portwall builtin NAME on/off').\n[builtins]\n");
        for s in Switch::ALL {
            out.push_str(&format!("{s} = {}\n", self.ruleset.builtins.get(s)));
        }
        out
    }
}

/// Below this many rules one core parses them: a thread costs more than it saves.
const PARALLEL_RULES: usize = 4_096;

/// Parses rule lines in order, on every core for a long list; the error names
/// the first bad line.
fn parse_rules(lines: &[&str], services: &Services) -> Result<Vec<crate::Rule>, ConfigError> {
    let parse_chunk = |first: usize, chunk: &[&str]| -> Result<Vec<crate::Rule>, ConfigError> {
        let mut rules = Vec::with_capacity(chunk.len());
        for (i, line) in chunk.iter().enumerate() {
            let parsed = parse_rule(line, services).map_err(|e| ConfigError::Rule {
                index: first + i + 1,
                text: line.to_string(),
                message: e.message.clone(),
            })?;
            rules.extend(parsed);
        }
        Ok(rules)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if lines.len() < PARALLEL_RULES || threads < 2 {
        return parse_chunk(0, lines);
    }
    let per = lines.len().div_ceil(threads);
    let parts: Vec<Result<Vec<crate::Rule>, ConfigError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = lines
            .chunks(per)
            .enumerate()
            .skip(1)
            .map(|(k, chunk)| scope.spawn(move || parse_chunk(k * per, chunk)))
            .collect();
        // The first chunk on this thread.
        let mut parts = vec![parse_chunk(0, &lines[..per.min(lines.len())])];
        parts.extend(handles.into_iter().map(|h| {
            h.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }));
        parts
    });
    let mut rules = Vec::with_capacity(lines.len());
    for part in parts {
        rules.extend(part?);
    }
    Ok(rules)
}

/// The `rules` array of a config text, when it is written as portwall writes
/// it: a top-level `rules = [` line, then one plain string per line
/// (printable ASCII without quote or backslash, followed by a comma but for
/// the last), blank and comment lines allowed, and a `]` line. Returns the
/// text without the array (for `toml` to read the rest) and the strings;
/// `None` for any other layout, which `toml` then reads whole.
///
/// Only what TOML itself accepts is taken: lines are trimmed of TOML's
/// whitespace (space, tab) and line ending only, a comment has no control
/// character, and the text before `rules = [` must be a TOML document by
/// itself, so that the line is not inside a multi-line string or array.
fn split_plain_rules(text: &str) -> Option<(String, Vec<&str>)> {
    let mut offset = 0;
    let mut start = None;
    for line in text.split_inclusive('\n') {
        let t = toml_trim(line);
        if t.starts_with('[') {
            // A table header: `rules` would belong to that table.
            return None;
        }
        if let Some(rest) = t.strip_prefix("rules") {
            if toml_trim(rest.trim_start_matches([' ', '\t']).strip_prefix('=')?) == "[" {
                start = Some((offset, offset + line.len()));
                break;
            }
            return None;
        }
        offset += line.len();
    }
    let (array_start, mut at) = start?;
    if toml::from_str::<toml::Table>(&text[..array_start]).is_err() {
        return None;
    }
    let mut lines = Vec::new();
    // Whether the last string had no comma after it, so only `]` may follow.
    let mut closed = false;
    for line in text[at..].split_inclusive('\n') {
        let t = toml_trim(line);
        at += line.len();
        if t == "]" {
            let mut rest = String::with_capacity(text.len() - (at - array_start));
            rest.push_str(&text[..array_start]);
            rest.push_str(&text[at..]);
            return Some((rest, lines));
        }
        if t.is_empty() {
            continue;
        }
        if let Some(comment) = t.strip_prefix('#') {
            if comment.chars().any(|c| c.is_control() && c != '\t') {
                return None;
            }
            continue;
        }
        if closed {
            return None;
        }
        let (body, comma) = match t.strip_suffix(',') {
            Some(b) => (b.trim_end_matches([' ', '\t']), true),
            None => (t, false),
        };
        let inner = body.strip_prefix('"')?.strip_suffix('"')?;
        if !is_plain(inner) {
            return None;
        }
        lines.push(inner);
        closed = !comma;
    }
    None
}

/// A line without its line ending (`\n` or `\r\n`) and TOML's whitespace
/// (space and tab) around it; other characters, even other Unicode spaces,
/// are left for the caller to refuse.
fn toml_trim(line: &str) -> &str {
    let line = line
        .strip_suffix("\r\n")
        .or_else(|| line.strip_suffix('\n'))
        .unwrap_or(line);
    line.trim_matches([' ', '\t'])
}

/// Whether `s` is written as a TOML basic string as it is: printable ASCII
/// without quote or backslash (what nearly every rule is).
fn is_plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
}

/// Appends `s` as a TOML string, exactly as `toml::Value::String(s)` is
/// written: a plain string (printable ASCII without quote or backslash, what
/// nearly every rule is) as a basic string `"..."` directly, any other
/// through `toml`, which picks the quoting and escapes.
fn push_toml_string(out: &mut String, s: &str) {
    if is_plain(s) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&toml::Value::String(s.to_string()).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20,000 rules laid out by `file` read back in order; with two bad lines
    /// put in (`bad`, 0-based), the error names the first by its number.
    fn check_long_file(file: impl Fn(&[String]) -> String, bad: [(usize, &str); 2]) {
        let services = Services::builtin();
        let lines: Vec<String> = (0..20_000)
            .map(|i| format!("allow {}/tcp", 1 + i % 60_000))
            .collect();
        let config = HostConfig::from_toml(&file(&lines), &services).unwrap();
        let texts: Vec<String> = config.ruleset.rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(texts, lines);
        let mut bad_lines = lines.clone();
        for (at, line) in bad {
            bad_lines[at] = line.into();
        }
        let (first, text) = bad[0];
        match HostConfig::from_toml(&file(&bad_lines), &services) {
            Err(ConfigError::Rule { index, text: t, .. }) => {
                assert_eq!((index, t.as_str()), (first + 1, text));
            }
            other => panic!("{other:?}"),
        }
    }

    /// The rules of a long file keep their order, and the error names the
    /// first bad line by position.
    #[test]
    fn a_long_file_parses_in_order_and_names_its_first_bad_line() {
        let file = |lines: &[String]| {
            let quoted: Vec<String> = lines.iter().map(|l| format!("\"{l}\"")).collect();
            format!("rules = [{}]\n", quoted.join(", "))
        };
        check_long_file(
            file,
            [(9_000, "allow 70000/tcp"), (10_500, "allow 80/tcpp")],
        );
    }

    /// A file laid out as portwall writes it is read by the fast path, and
    /// reads exactly as `toml` reads it.
    #[test]
    fn the_fast_path_reads_what_toml_reads() {
        let services = Services::builtin();
        let mut config = HostConfig {
            enabled: true,
            ..Default::default()
        };
        config.ruleset.logging = Logging::Full;
        config.ruleset.defaults.outgoing = crate::Policy::Deny;
        config.ruleset.builtins.set(Switch::Upnp, false);
        for line in [
            "allow 22/tcp from 203.0.113.0/24 comment 'office VPN'",
            "deny in on eth0 from 2001:db8::/32 to any port 443 proto tcp",
            "limit ssh",
            "reject out 25/tcp",
            "allow routed 60000:61000/udp log",
        ] {
            config
                .ruleset
                .rules
                .extend(parse_rule(line, &services).unwrap());
        }
        let text = config.to_toml();
        let (rest, lines) = split_plain_rules(&text).expect("portwall's own layout");
        assert_eq!(lines.len(), config.ruleset.rules.len());
        assert!(!rest.contains("rules"), "{rest}");
        let whole: File = toml::from_str(&text).unwrap();
        assert_eq!(
            lines,
            whole
                .rules
                .iter()
                .flatten()
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
        assert_eq!(HostConfig::from_toml(&text, &services).unwrap(), config);
        // Hand edits that keep the layout: blank lines, comments, no comma
        // after the last string, other indentation.
        let edited = "# mine\nenabled = true\nrules = [\n\n  # ssh\n\t\"allow 22/tcp\" ,\n\"allow 80/tcp\"\n]\n[defaults]\nincoming = \"reject\"\n";
        let (_, lines) = split_plain_rules(edited).unwrap();
        assert_eq!(lines, ["allow 22/tcp", "allow 80/tcp"]);
        let read = HostConfig::from_toml(edited, &services).unwrap();
        assert_eq!(read.ruleset.rules.len(), 2);
        assert_eq!(read.ruleset.defaults.incoming, crate::Policy::Reject);
        assert_eq!(
            read.ruleset.builtins,
            Switches::default(),
            "no [builtins]: all on, as UFW"
        );
        let unknown = format!("{edited}[builtins]\npong = false\n");
        let e = HostConfig::from_toml(&unknown, &services)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pong") && e.contains("icmp-errors"), "{e}");
    }

    /// Anything outside that layout goes to `toml` whole, which reads it or
    /// says what is wrong.
    #[test]
    fn other_layouts_go_to_toml() {
        let services = Services::builtin();
        for (text, rules) in [
            // One line, escapes, a literal string, a comment after a value.
            ("rules = [\"allow 22/tcp\", \"allow 80/tcp\"]\n", Some(2)),
            (
                "rules = [\n  \"allow 22/tcp comment 'a \\\"b\\\"'\",\n]\n",
                Some(1),
            ),
            ("rules = [\n  'allow 22/tcp',\n]\n", Some(1)),
            ("rules = [\n  \"allow 22/tcp\", # ssh\n]\n", Some(1)),
            // Not TOML: a missing comma, `rules` twice, `rules` in a table.
            (
                "rules = [\n  \"allow 22/tcp\"\n  \"allow 80/tcp\"\n]\n",
                None,
            ),
            ("rules = [\n  \"allow 22/tcp\",\n]\nrules = []\n", None),
            ("[defaults]\nrules = [\n  \"allow 22/tcp\",\n]\n", None),
        ] {
            match (HostConfig::from_toml(text, &services), rules) {
                (Ok(c), Some(n)) => assert_eq!(c.ruleset.rules.len(), n, "{text}"),
                (Err(ConfigError::Toml(_)), None) => {}
                (other, _) => panic!("{text}: {other:?}"),
            }
        }
        // The ones the fast path takes are exactly those `toml` agrees on.
        assert!(split_plain_rules("rules = [\"allow 22/tcp\"]\n").is_none());
        assert!(split_plain_rules("rules = [\n  'allow 22/tcp',\n]\n").is_none());
    }

    /// Found by the rules_toml fuzz target: the fast path took texts that
    /// TOML refuses (a control character in a comment inside the array,
    /// Unicode spaces around its lines, `rules = [` inside an array or a
    /// multi-line string), so `from_toml` accepted them. Now such a text
    /// goes to `toml`, which refuses it, and what TOML accepts still reads
    /// the same.
    #[test]
    fn the_fast_path_takes_only_what_toml_accepts() {
        let services = Services::builtin();
        // Valid TOML whose `rules = [` is inside a multi-line string: toml
        // reads no rules there, so the fast path must not read any either.
        let in_a_string = "logging = \"\"\"\nrules = [\n\"allow 22/tcp\",\n]\n\"\"\"\n";
        assert!(split_plain_rules(in_a_string).is_none());
        assert!(HostConfig::from_toml(in_a_string, &services)
            .map_or(true, |c| c.ruleset.rules.is_empty()));
        for text in [
            "rules = [\n #\"a\0llow 22/tcp\",\n]\n",
            "rules = [\n # a\rb\n]\n",
            "rules = [\n\u{3000}\"allow 22/tcp\",\n]\n",
            "rules = [\n\"allow 22/tcp\"\u{a0},\n]\n",
            "\u{2003}rules = [\n\"allow 22/tcp\",\n]\n",
            "rules\u{3000}= [\n\"allow 22/tcp\",\n]\n",
            "rules = [\n\"allow 22/tcp\",\n]\r",
            "defaults = [\nrules = [\n\"allow 22/tcp\",\n]\n]\n",
        ] {
            assert!(toml::from_str::<toml::Table>(text).is_err(), "{text:?}");
            assert!(split_plain_rules(text).is_none(), "{text:?}");
            assert!(
                matches!(
                    HostConfig::from_toml(text, &services),
                    Err(ConfigError::Toml(_))
                ),
                "{text:?}"
            );
        }
        let fine =
            "enabled = true # yes\r\nrules = [\r\n\t# ssh\t\r\n  \"allow 22/tcp\" ,\r\n]\r\n";
        assert_eq!(split_plain_rules(fine).unwrap().1, ["allow 22/tcp"]);
        assert_eq!(
            HostConfig::from_toml(fine, &services)
                .unwrap()
                .ruleset
                .rules
                .len(),
            1
        );
    }

    /// In a file read by the fast path, the rules keep their order across
    /// the threads that parse them, and the first bad line is named.
    #[test]
    fn a_long_plain_file_parses_in_order_and_names_its_first_bad_line() {
        let file = |lines: &[String]| {
            let mut t = String::from("rules = [\n");
            for l in lines {
                t.push_str(&format!("    \"{l}\",\n"));
            }
            t.push_str("]\n");
            assert!(split_plain_rules(&t).is_some());
            t
        };
        check_long_file(
            file,
            [(12_345, "allow 80/tcpp"), (19_999, "allow 70000/tcp")],
        );
    }

    /// The fast path writes what `toml` writes, and TOML reads it back.
    #[test]
    fn strings_are_written_as_toml_writes_them() {
        for s in [
            "allow 22/tcp",
            "allow 22/tcp comment 'web server'",
            "allow 80/tcp comment 'say \"hi\"'",
            "deny from 2001:db8::/32 comment 'back\\slash'",
            "allow 443/tcp comment 'caf\u{e9}'",
            "allow 8080/tcp comment 'tab\there'",
            "",
            "~ !#$%&()*+,-./:;<=>?@[]^_`{|}",
        ] {
            let mut ours = String::new();
            push_toml_string(&mut ours, s);
            assert_eq!(ours, toml::Value::String(s.to_string()).to_string(), "{s}");
            let back: toml::Value = toml::from_str(&format!("v = {ours}")).unwrap();
            assert_eq!(back["v"].as_str(), Some(s));
        }
    }
}
