//! The panel's configuration file, `/etc/portwall/panel.toml` (another with
//! `--config FILE` or `PORTWALL_PANEL_CONFIG`), and the log format.
//!
//! Every setting of `portwall-panel`'s flags has a key of the same name
//! (`--max-body-bytes` is `max_body_bytes`). Precedence, lowest first: the
//! built-in default, the file, the environment (`PORTWALL_PANEL_*`), the flag.
//! The file is read whole before anything starts: an unknown key or a bad
//! value is an error that names the file, the key and what is accepted, and
//! the panel does not start (fail closed). A missing default file is not an
//! error (the defaults apply); a missing file given with `--config` is.
//!
//! The commented example shipped as a conffile is `packaging/panel.toml`.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the panel looks for its file when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/portwall/panel.toml";
/// `--listen`'s default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// `--data-dir`'s default.
pub const DEFAULT_DATA_DIR: &str = "./portwall-data";

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

/// The panel's settings, as the file, the environment or the flags give them:
/// `None` is "not given here".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelSettings {
    /// Address to listen on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Directory of the SQLite database (when no database_url is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// postgres://… or sqlite:///path/panel.db.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// PEM certificate chain to serve HTTPS with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of tls_cert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Plain HTTP on a non-loopback address, behind a TLS-terminating proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plain_http_behind_proxy: Option<bool>,
    /// Mark the session cookie Secure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure_cookies: Option<bool>,
    /// Largest request body in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// Count requests and serve /metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<bool>,
    /// text or json.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl PanelSettings {
    /// Reads `path`, or [`DEFAULT_PATH`] when None (then a missing file means
    /// no settings).
    pub fn load(path: Option<&Path>) -> Result<PanelSettings, ConfigError> {
        let (file, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(file) {
            Ok(text) => PanelSettings::parse(&text, file),
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(PanelSettings::default())
            }
            Err(e) => Err(ConfigError::Read {
                path: file.display().to_string(),
                message: format!("cannot read the configuration file: {e}"),
            }),
        }
    }

    /// Parses the text of the file at `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<PanelSettings, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.display().to_string(),
            message: describe_toml_error(&e, text),
        })
    }

    /// These settings with every one `higher` gives replaced by its value.
    pub fn overlay(self, higher: PanelSettings) -> PanelSettings {
        PanelSettings {
            listen: higher.listen.or(self.listen),
            data_dir: higher.data_dir.or(self.data_dir),
            database_url: higher.database_url.or(self.database_url),
            tls_cert: higher.tls_cert.or(self.tls_cert),
            tls_key: higher.tls_key.or(self.tls_key),
            plain_http_behind_proxy: higher
                .plain_http_behind_proxy
                .or(self.plain_http_behind_proxy),
            secure_cookies: higher.secure_cookies.or(self.secure_cookies),
            max_body_bytes: higher.max_body_bytes.or(self.max_body_bytes),
            metrics: higher.metrics.or(self.metrics),
            log_format: higher.log_format.or(self.log_format),
        }
    }

    /// Every setting, with the built-in default where none was given.
    pub fn with_defaults(self) -> PanelSettings {
        PanelSettings {
            listen: Some(
                self.listen
                    .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address")),
            ),
            data_dir: Some(
                self.data_dir
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            ),
            database_url: self.database_url,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            plain_http_behind_proxy: Some(self.plain_http_behind_proxy.unwrap_or(false)),
            secure_cookies: Some(self.secure_cookies.unwrap_or(false)),
            max_body_bytes: Some(
                self.max_body_bytes
                    .unwrap_or(crate::state::DEFAULT_MAX_BODY),
            ),
            metrics: Some(self.metrics.unwrap_or(true)),
            log_format: Some(self.log_format.unwrap_or_default()),
        }
    }

    /// The settings as a configuration file (what `--print-config` shows).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// toml's message with the line and key it is about, in one line:
/// `line 3, key 'listen': invalid socket address syntax`.
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

    fn parse(text: &str) -> Result<PanelSettings, String> {
        PanelSettings::parse(text, Path::new("/etc/portwall/panel.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn every_key_parses() {
        let s = parse(
            "listen = \"0.0.0.0:9000\"\ndata_dir = \"/var/lib/portwall-panel\"\n\
             database_url = \"postgres://panel@db/panel\"\nsecure_cookies = true\n\
             max_body_bytes = 1024\nmetrics = false\nlog_format = \"json\"\n",
        )
        .unwrap();
        assert_eq!(s.listen, Some("0.0.0.0:9000".parse().unwrap()));
        assert_eq!(s.metrics, Some(false));
        assert_eq!(s.log_format, Some(LogFormat::Json));
        // What --print-config writes reads back the same.
        assert_eq!(parse(&s.to_toml()).unwrap(), s);
    }

    #[test]
    fn an_unknown_key_names_the_file_the_key_and_the_accepted_keys() {
        let e = parse("listen = \"127.0.0.1:1\"\nlisten_port = 80\n").unwrap_err();
        assert!(e.starts_with("/etc/portwall/panel.toml: line 2"), "{e}");
        assert!(e.contains("listen_port"), "{e}");
        assert!(e.contains("expected one of"), "{e}");
        assert!(e.contains("`max_body_bytes`"), "{e}");
    }

    #[test]
    fn a_bad_value_names_the_key_and_what_is_accepted() {
        let e = parse("log_format = \"yaml\"\n").unwrap_err();
        assert!(e.contains("key 'log_format'"), "{e}");
        assert!(e.contains("`text`") && e.contains("`json`"), "{e}");
        let e = parse("max_body_bytes = \"lots\"\n").unwrap_err();
        assert!(e.contains("key 'max_body_bytes'"), "{e}");
        let e = parse("listen = \"localhost\"\n").unwrap_err();
        assert!(e.contains("key 'listen'"), "{e}");
    }

    #[test]
    fn higher_layers_win_key_by_key() {
        let file = parse("listen = \"127.0.0.1:1\"\nmetrics = false\n").unwrap();
        let env_and_flags = PanelSettings {
            listen: Some("127.0.0.1:2".parse().unwrap()),
            ..Default::default()
        };
        let s = file.overlay(env_and_flags).with_defaults();
        assert_eq!(s.listen, Some("127.0.0.1:2".parse().unwrap()));
        assert_eq!(s.metrics, Some(false));
        assert_eq!(s.max_body_bytes, Some(crate::state::DEFAULT_MAX_BODY));
    }

    #[test]
    fn a_missing_default_file_is_no_settings_but_a_named_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("panel.toml");
        let e = PanelSettings::load(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("panel.toml") && e.contains("cannot read"), "{e}");
    }

    /// The commented example shipped in packaging/ parses as is, and with
    /// every setting uncommented: it names every key, each with a valid value.
    #[test]
    fn the_shipped_example_names_every_key() {
        let example = include_str!("../../../packaging/panel.toml");
        assert_eq!(parse(example).unwrap(), PanelSettings::default());
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
        let PanelSettings {
            listen,
            data_dir,
            database_url,
            tls_cert,
            tls_key,
            plain_http_behind_proxy,
            secure_cookies,
            max_body_bytes,
            metrics,
            log_format,
        } = all;
        assert!(tls_cert.is_some() && tls_key.is_some() && plain_http_behind_proxy.is_some());
        assert!(listen.is_some() && data_dir.is_some() && database_url.is_some());
        assert!(secure_cookies.is_some() && max_body_bytes.is_some());
        assert!(metrics.is_some() && log_format.is_some());
    }
}
