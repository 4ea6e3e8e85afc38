//! The edge's configuration file, `/etc/portwall/edge.toml` (another with
//! `--config FILE` or `PORTWALL_EDGE_CONFIG`), and the log format.
//!
//! Every setting of `portwall-edge run`'s flags has a key of the same name
//! (`--counters-every` is `counters_every`); `status` reads the keys it shares
//! with `run` (`mode`, `table`, `state_dir`). Precedence, lowest first: the
//! built-in default, the file, the environment (`PORTWALL_EDGE_*`), the flag.
//! An unknown key or a bad value is an error that names the file, the key and
//! what is accepted, and the edge does not start (fail closed; the kernel
//! keeps what it enforces). A missing default file is not an error; a missing
//! file given with `--config` is.
//!
//! The commented example shipped as a conffile is `packaging/edge.toml`.

use crate::compile::Mode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the edge looks for its file when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/portwall/edge.toml";
/// `--state-dir`'s default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/portwall-edge";
/// `--wait`'s default, in seconds.
pub const DEFAULT_WAIT: u64 = 30;
/// `--counters-every`'s default, in seconds.
pub const DEFAULT_COUNTERS_EVERY: u64 = 60;
/// `--backoff-max`'s default, in seconds.
pub const DEFAULT_BACKOFF_MAX: u64 = 15;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (for a log shipper).
    Json,
}

/// Installs the global `tracing` subscriber: `RUST_LOG` (any `tracing`
/// filter) or `default_filter`, written to stderr in `format`.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn de_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mode>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

fn ser_mode<S: Serializer>(m: &Option<Mode>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.serialize_str(m.as_str()),
        None => s.serialize_none(),
    }
}

/// The edge's settings, as the file, the environment or the flags give them:
/// `None` is "not given here".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panel_url: Option<String>,
    /// A PEM file of the CA certificates the panel's certificate must chain to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panel_ca: Option<PathBuf>,
    /// Allow the token over plain http:// to a panel not on loopback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_http: Option<bool>,
    /// The edge token itself (prefer token_file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_mode",
        serialize_with = "ser_mode",
        skip_serializing_if = "Option::is_none"
    )]
    pub mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters_every: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl EdgeSettings {
    /// Reads `path`, or [`DEFAULT_PATH`] when None (then a missing file means
    /// no settings).
    pub fn load(path: Option<&Path>) -> Result<EdgeSettings, ConfigError> {
        let (file, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(file) {
            Ok(text) => EdgeSettings::parse(&text, file),
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(EdgeSettings::default())
            }
            Err(e) => Err(ConfigError {
                path: file.display().to_string(),
                message: format!("cannot read the configuration file: {e}"),
            }),
        }
    }

    /// Parses the text of the file at `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<EdgeSettings, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError {
            path: path.display().to_string(),
            message: describe_toml_error(&e, text),
        })
    }

    /// These settings with every one `higher` gives replaced by its value.
    pub fn overlay(self, higher: EdgeSettings) -> EdgeSettings {
        EdgeSettings {
            panel_url: higher.panel_url.or(self.panel_url),
            panel_ca: higher.panel_ca.or(self.panel_ca),
            insecure_http: higher.insecure_http.or(self.insecure_http),
            // A token given above replaces a token file below, and the
            // other way round: the higher layer says where the token is.
            token: if higher.token.is_some() || higher.token_file.is_some() {
                higher.token.clone()
            } else {
                self.token.clone()
            },
            token_file: if higher.token.is_some() || higher.token_file.is_some() {
                higher.token_file.clone()
            } else {
                self.token_file.clone()
            },
            zone: higher.zone.or(self.zone),
            name: higher.name.or(self.name),
            mode: higher.mode.or(self.mode),
            table: higher.table.or(self.table),
            state_dir: higher.state_dir.or(self.state_dir),
            wait: higher.wait.or(self.wait),
            counters_every: higher.counters_every.or(self.counters_every),
            backoff_max: higher.backoff_max.or(self.backoff_max),
            metrics_listen: higher.metrics_listen.or(self.metrics_listen),
            log_format: higher.log_format.or(self.log_format),
        }
    }

    /// Every setting that has a built-in default filled in with it.
    pub fn with_defaults(self) -> EdgeSettings {
        EdgeSettings {
            table: Some(
                self.table
                    .unwrap_or_else(|| crate::compile::TABLE.to_string()),
            ),
            state_dir: Some(
                self.state_dir
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            ),
            wait: Some(self.wait.unwrap_or(DEFAULT_WAIT)),
            counters_every: Some(self.counters_every.unwrap_or(DEFAULT_COUNTERS_EVERY)),
            backoff_max: Some(self.backoff_max.unwrap_or(DEFAULT_BACKOFF_MAX)),
            log_format: Some(self.log_format.unwrap_or_default()),
            ..self
        }
    }

    /// The settings as a configuration file (what `--print-config` shows);
    /// the token itself is replaced by `"(hidden)"`.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.token.is_some() {
            shown.token = Some("(hidden)".into());
        }
        toml::to_string(&shown).unwrap_or_default()
    }
}

/// toml's message with the line and key it is about, in one line:
/// `line 3, key 'wait': invalid type: string "x", expected u64`.
pub fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim_end_matches('\n').to_string();
    let Some(span) = e.span() else {
        return message;
    };
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    let key = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    match key {
        Some(k) => format!("line {line}, key '{k}': {message}"),
        None => format!("line {line}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EdgeSettings, String> {
        EdgeSettings::parse(text, Path::new("/etc/portwall/edge.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn every_key_parses_and_prints_back() {
        let s = parse(
            "panel_url = \"https://panel.example:8443\"\ntoken_file = \"/etc/portwall/edge.token\"\n\
             panel_ca = \"/etc/portwall/panel-ca.pem\"\ninsecure_http = false\n\
             zone = \"fra1\"\nname = \"gw1\"\nmode = \"bridge\"\ntable = \"pw\"\n\
             state_dir = \"/var/lib/x\"\nwait = 20\ncounters_every = 10\nbackoff_max = 5\n\
             metrics_listen = \"127.0.0.1:9187\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        assert_eq!(s.mode, Some(Mode::Bridge));
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9187".parse().unwrap()));
        assert_eq!(parse(&s.to_toml()).unwrap(), s);
    }

    #[test]
    fn an_unknown_key_names_the_file_the_key_and_the_accepted_keys() {
        let e = parse("zone = \"z\"\npanel = \"http://x\"\n").unwrap_err();
        assert!(e.starts_with("/etc/portwall/edge.toml: line 2"), "{e}");
        assert!(e.contains("`panel`") && e.contains("`panel_url`"), "{e}");
    }

    #[test]
    fn a_bad_value_names_the_key_and_what_is_accepted() {
        let e = parse("mode = \"router\"\n").unwrap_err();
        assert!(e.contains("key 'mode'") && e.contains("forward"), "{e}");
        let e = parse("wait = -1\n").unwrap_err();
        assert!(e.contains("key 'wait'"), "{e}");
        let e = parse("metrics_listen = \"9187\"\n").unwrap_err();
        assert!(e.contains("key 'metrics_listen'"), "{e}");
    }

    #[test]
    fn a_token_above_replaces_a_token_file_below() {
        let file = parse("token_file = \"/etc/t\"\nzone = \"a\"\n").unwrap();
        let env = EdgeSettings {
            token: Some("secret".into()),
            ..Default::default()
        };
        let s = file.overlay(env).with_defaults();
        assert_eq!(s.token.as_deref(), Some("secret"));
        assert_eq!(s.token_file, None);
        assert_eq!(s.zone.as_deref(), Some("a"));
        assert_eq!(s.wait, Some(DEFAULT_WAIT));
        assert!(!s.to_toml().contains("secret"));
    }

    /// The commented example shipped in packaging/ parses as is, and with
    /// every setting uncommented: it names every key, each with a valid value.
    #[test]
    fn the_shipped_example_names_every_key() {
        let example = include_str!("../../../packaging/edge.toml");
        assert_eq!(parse(example).unwrap(), EdgeSettings::default());
        let uncommented: String = example
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let all = parse(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        // Exhaustive: a new setting does not compile here until it is checked.
        let EdgeSettings {
            panel_url,
            panel_ca,
            insecure_http,
            token,
            token_file,
            zone,
            name,
            mode,
            table,
            state_dir,
            wait,
            counters_every,
            backoff_max,
            metrics_listen,
            log_format,
        } = all;
        assert!(panel_url.is_some() && token.is_some() && token_file.is_some());
        assert!(panel_ca.is_some() && insecure_http.is_some());
        assert!(zone.is_some() && name.is_some() && mode.is_some() && table.is_some());
        assert!(state_dir.is_some() && wait.is_some() && counters_every.is_some());
        assert!(backoff_max.is_some() && metrics_listen.is_some() && log_format.is_some());
    }
}
