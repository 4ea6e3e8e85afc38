//! The panel's sync protocol over HTTP (`model::network::sync`), and a small
//! JSON client for the panel's REST API (the tests use it).
//!
//! HTTPS with rustls (ring), verified against the system's roots or the CA
//! file of [`tls::ClientTls`] (`--panel-ca`). The edge token is sent over
//! plain HTTP only to a panel on loopback, or with `--insecure-http`
//! ([`tls::ClientTls::check_url`]); [`PanelClient::with_tls`] refuses the
//! URL otherwise, before anything is sent.

use model::network::sync::{EdgeReport, SyncResponse, REPORT_PATH, SYNC_PATH};
use serde_json::Value;
use std::time::Duration;

/// A request to the panel that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the panel at {url} cannot be reached: {message}")]
    Unreachable { url: String, message: String },
    #[error("the panel answered {status} to {what}: {message}")]
    Status {
        status: u16,
        what: String,
        message: String,
    },
    #[error("the panel's answer to {what} is not what the protocol says: {message}")]
    Decode { what: String, message: String },
    #[error("'{0}' is not a panel URL (expected https://HOST[:PORT])")]
    BadUrl(String),
    /// The URL is refused (plain HTTP off loopback), or the TLS setup failed
    /// (an unreadable CA file).
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

impl ClientError {
    /// 401/403: the token is wrong or for another zone; retrying soon won't help.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            ClientError::Status {
                status: 401 | 403,
                ..
            }
        )
    }
}

/// A client of one panel with one bearer token.
#[derive(Debug, Clone)]
pub struct PanelClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            let e = &v["error"];
            let msg = e["message"].as_str()?;
            Some(match e["field"].as_str() {
                Some(f) => format!("{f}: {msg}"),
                None => msg.to_string(),
            })
        })
        .unwrap_or_else(|| body.chars().take(300).collect())
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl PanelClient {
    /// A client that trusts the system's roots (plain HTTP: loopback only).
    pub fn new(base: &str, token: &str) -> Result<PanelClient, ClientError> {
        Self::with_tls(base, token, &tls::ClientTls::default())
    }

    /// A client that trusts and reaches the panel as `tls` says.
    pub fn with_tls(
        base: &str,
        token: &str,
        tls: &tls::ClientTls,
    ) -> Result<PanelClient, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BadUrl(base));
        }
        tls.check_url(&base)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.config()?)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::Unreachable {
                url: base.clone(),
                message: e.to_string(),
            })?;
        Ok(PanelClient {
            http,
            base,
            token: token.to_string(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        let mut message = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            message = format!("{message}: {s}");
            src = s.source();
        }
        ClientError::Unreachable {
            url: self.base.clone(),
            message,
        }
    }

    /// One long-poll: the changes since `since` (a snapshot when `None`), or
    /// `Unchanged` after up to `wait`.
    pub async fn sync(
        &self,
        zone: &str,
        since: Option<u64>,
        wait: Duration,
    ) -> Result<SyncResponse, ClientError> {
        let mut url = format!(
            "{}{SYNC_PATH}?zone={}&wait={}",
            self.base,
            encode(zone),
            wait.as_secs()
        );
        if let Some(s) = since {
            url.push_str(&format!("&since={s}"));
        }
        let resp = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            // The panel holds the poll up to `wait`; give it some slack.
            .timeout(wait + Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            return Err(ClientError::Status {
                status: status.as_u16(),
                what: "sync".into(),
                message: error_message(&body),
            });
        }
        serde_json::from_str(&body).map_err(|e| ClientError::Decode {
            what: "sync".into(),
            message: e.to_string(),
        })
    }

    /// Reports what the edge applied.
    pub async fn report(&self, report: &EdgeReport) -> Result<(), ClientError> {
        self.request(
            reqwest::Method::POST,
            REPORT_PATH,
            Some(&serde_json::to_value(report).unwrap_or_default()),
        )
        .await
        .map(|_| ())
    }

    /// Any JSON request to the panel's API; the answer's JSON (Null when empty).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let what = format!("{method} {path}");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            return Err(ClientError::Status {
                status: status.as_u16(),
                what,
                message: error_message(&text),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ClientError::Decode {
            what,
            message: e.to_string(),
        })
    }
}

pub use reqwest::Method;
