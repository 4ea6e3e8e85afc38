//! The host's desired state as a human-editable TOML document.
//!
//! Rules are stored as rule-syntax strings, exactly as `portwall status` prints them,
//! so an admin can edit the file by hand:
//!
//! ```toml
//! enabled = true
//! logging = "on"
//!
//! [defaults]
//! incoming = "deny"
//! outgoing = "allow"
//! routed = "deny"
//!
//! rules = [
//!     "allow 22/tcp from 203.0.113.0/24 comment 'office'",
//!     "allow 80,443/tcp",
//! ]
//! ```
//!
//! Reading it validates every rule; one bad line rejects the whole file, naming the
//! line, so an invalid rule is never applied. This module only converts text; the
//! CLI does the file I/O.

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
    rules: Vec<String>,
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
    pub fn from_toml(text: &str, services: &Services) -> Result<HostConfig, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, line) in file.rules.iter().enumerate() {
            let parsed = parse_rule(line, services).map_err(|e| ConfigError::Rule {
                index: i + 1,
                text: line.clone(),
                message: e.message.clone(),
            })?;
            rules.extend(parsed);
        }
        Ok(HostConfig {
            enabled: file.enabled,
            ruleset: Ruleset {
                rules,
                defaults: file.defaults,
                logging: file.logging,
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
        out
    }
}

/// Appends `s` as a TOML string, exactly as `toml::Value::String(s)` is
/// written: a plain string (printable ASCII without quote or backslash, what
/// nearly every rule is) as a basic string `"..."` directly, any other
/// through `toml`, which picks the quoting and escapes.
fn push_toml_string(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
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

    /// The rules of a long file keep their order, and the error names the
    /// first bad line by position.
    #[test]
    fn a_long_file_parses_in_order_and_names_its_first_bad_line() {
        let services = Services::builtin();
        let lines: Vec<String> = (0..20_000)
            .map(|i| format!("allow {}/tcp", 1 + i % 60_000))
            .collect();
        let file = |lines: &[String]| {
            let quoted: Vec<String> = lines.iter().map(|l| format!("\"{l}\"")).collect();
            format!("rules = [{}]\n", quoted.join(", "))
        };
        let config = HostConfig::from_toml(&file(&lines), &services).unwrap();
        let texts: Vec<String> = config.ruleset.rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(texts, lines);
        let mut bad = lines.clone();
        bad[9_000] = "allow 70000/tcp".into();
        bad[10_500] = "allow 80/tcpp".into();
        match HostConfig::from_toml(&file(&bad), &services) {
            Err(ConfigError::Rule { index, text, .. }) => {
                assert_eq!((index, text.as_str()), (9_001, "allow 70000/tcp"));
            }
            other => panic!("{other:?}"),
        }
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
