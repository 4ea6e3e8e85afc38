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

    /// The config as TOML text (rules in canonical syntax).
    pub fn to_toml(&self) -> String {
        let file = File {
            enabled: self.enabled,
            logging: self.ruleset.logging,
            defaults: self.ruleset.defaults,
            rules: self.ruleset.rules.iter().map(ToString::to_string).collect(),
        };
        let mut out = String::from("# portwall: the desired state of this host's firewall. Edit with care, then run 'portwall reload'.\n");
        // The top-level keys must come before the [defaults] table.
        out.push_str(&format!(
            "enabled = {}\nlogging = \"{}\"\n",
            file.enabled,
            file.logging.as_str()
        ));
        out.push_str("rules = [\n");
        for r in &file.rules {
            out.push_str("    ");
            out.push_str(&toml::Value::String(r.clone()).to_string());
            out.push_str(",\n");
        }
        out.push_str("]\n\n[defaults]\n");
        for (k, v) in [
            ("incoming", file.defaults.incoming),
            ("outgoing", file.defaults.outgoing),
            ("routed", file.defaults.routed),
        ] {
            out.push_str(&format!("{k} = \"{}\"\n", v.as_str()));
        }
        out
    }
}
