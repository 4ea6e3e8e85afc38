//! The one HTTP client of the provider's panel (its REST API under `/v1`),
//! used by every command that talks to it: `cloud`, `explain` and `audit` (the
//! network-firewall layer) and `lab` (registering the lab's customer).
//!
//! The panel is named by `--panel-url` / `PORTWALL_PANEL_URL` and the API token
//! by `--token` / `PORTWALL_TOKEN` ([`PanelArgs`]). `https://` is verified
//! (rustls with ring) against the system's roots, or only against the CA file
//! of `--panel-ca` / `PORTWALL_PANEL_CA`. The token goes over plain `http://`
//! only to a panel on loopback, or with `--insecure-http`
//! ([`tls::ClientTls::check_url`]); otherwise nothing is sent and the command
//! fails naming the URL and the flag (exit 2).
//!
//! The panel answers errors as `{"error": {"field": ..., "message": ...}}`;
//! [`PanelError::Status`] keeps the status, the field and the message, so a
//! command can say exactly what the panel refused (and exit 1). Firewalls carry
//! an `ETag`; [`Reply::etag`] returns it and [`PanelClient::request`] sends
//! `If-Match`, so a change based on a stale read is refused (412), never applied
//! over someone else's.

use crate::exit;
use anyhow::Result;
use clap::Args;
use model::network::sync::ServerPolicy;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

pub use reqwest::Method;

/// Where the panel is and the token to use. Flattened into every command that
/// talks to the panel.
#[derive(Debug, Clone, Default, Args)]
pub struct PanelArgs {
    /// The provider's panel (`https://panel.example.net`), for the network firewall.
    #[arg(long, global = true, env = "PORTWALL_PANEL_URL", value_name = "URL")]
    pub panel_url: Option<String>,
    /// API token for the panel.
    #[arg(
        long,
        global = true,
        env = "PORTWALL_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Trust only the CA certificates in this PEM file for the panel (default: the system's roots).
    #[arg(long, global = true, env = "PORTWALL_PANEL_CA", value_name = "FILE")]
    pub panel_ca: Option<std::path::PathBuf>,
    /// Allow sending the token over plain http:// to a panel that is not on loopback.
    #[arg(long, global = true, env = "PORTWALL_INSECURE_HTTP")]
    pub insecure_http: bool,
}

impl PanelArgs {
    /// Both the URL and the token are given (and not empty).
    pub fn is_configured(&self) -> bool {
        self.url().is_some() && self.token().is_some()
    }

    fn url(&self) -> Option<&str> {
        self.panel_url.as_deref().filter(|s| !s.trim().is_empty())
    }

    fn token(&self) -> Option<&str> {
        self.token.as_deref().filter(|s| !s.trim().is_empty())
    }

    /// A client, or a usage error (exit 2) naming what is missing.
    pub fn client(&self) -> Result<PanelClient> {
        let url = self.url().ok_or_else(|| {
            exit::usage(
                "no panel given: pass --panel-url URL or set PORTWALL_PANEL_URL (and --token / PORTWALL_TOKEN)",
            )
        })?;
        let token = self.token().ok_or_else(|| {
            exit::usage("no API token given: pass --token TOKEN or set PORTWALL_TOKEN")
        })?;
        PanelClient::new(url, token, &self.tls())
    }

    /// Whom the client trusts, and whether plain HTTP off loopback is allowed.
    pub fn tls(&self) -> tls::ClientTls {
        tls::ClientTls {
            ca_file: self.panel_ca.clone(),
            insecure_http: self.insecure_http,
        }
    }
}

/// A request to the panel that did not succeed.
#[derive(Debug)]
pub enum PanelError {
    /// No connection, a timeout, or TLS failed.
    Unreachable { url: String, message: String },
    /// The panel answered with an error status.
    Status {
        method: String,
        path: String,
        status: u16,
        reason: String,
        field: Option<String>,
        message: String,
    },
    /// The answer is not the JSON portwall expects.
    Decode { what: String, message: String },
}

impl PanelError {
    /// The HTTP status, when the panel answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            PanelError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The panel's reason: `field: message`, or the message alone.
    pub fn reason(&self) -> String {
        match self {
            PanelError::Status { field, message, .. } => match field {
                Some(f) if !f.is_empty() => format!("{f}: {message}"),
                _ => message.clone(),
            },
            PanelError::Unreachable { message, .. } | PanelError::Decode { message, .. } => {
                message.clone()
            }
        }
    }
}

impl std::fmt::Display for PanelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PanelError::Unreachable { url, message } => {
                write!(f, "cannot reach the panel at {url}: {message}")
            }
            PanelError::Status {
                method,
                path,
                status,
                reason,
                ..
            } => write!(
                f,
                "the panel answered {status} {reason} to {method} {path}: {}",
                self.reason()
            ),
            PanelError::Decode { what, message } => write!(
                f,
                "the panel's answer to {what} is not what portwall expects: {message}"
            ),
        }
    }
}

impl std::error::Error for PanelError {}

/// A successful answer: status, `ETag` (firewalls have one) and JSON body
/// (`Null` when empty).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub etag: Option<String>,
    pub body: Value,
}

/// A client of one panel with one bearer token. Blocking: it runs its own
/// single-threaded runtime, so call it from synchronous code only.
pub struct PanelClient {
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    base: String,
    token: String,
}

impl PanelClient {
    /// A client of the panel at `base`, trusting it as `tls` says. A URL that
    /// is not one, or plain HTTP off loopback without `--insecure-http`, is a
    /// usage error (exit 2); an unreadable CA file an error (exit 1).
    pub fn new(base: &str, token: &str, tls: &tls::ClientTls) -> Result<PanelClient> {
        let base = base.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://"))
            || base.len() <= "https://".len()
        {
            return Err(exit::usage(format!(
                "'{base}' is not a panel URL: write https://HOST[:PORT] (http:// only for a panel on loopback)"
            )));
        }
        tls.check_url(&base)
            .map_err(|e| exit::usage(e.to_string()))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.config()?)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build an HTTP client: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(PanelClient {
            http,
            rt,
            base,
            token: token.trim().to_string(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Any JSON request. `if_match` is sent as `If-Match` (an ETag from an
    /// earlier read); an error status becomes [`PanelError::Status`].
    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, PanelError> {
        self.rt.block_on(self.send(method, path, body, if_match))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, PanelError> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(tag) = if_match {
            req = req.header(reqwest::header::IF_MATCH, tag);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |e: reqwest::Error| {
            let mut message = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                message = format!("{message}: {s}");
                src = s.source();
            }
            PanelError::Unreachable {
                url: self.base.clone(),
                message,
            }
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.map_err(unreachable)?;
        if !status.is_success() {
            let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let err = &parsed["error"];
            let (field, message) = match err["message"].as_str() {
                Some(m) => (err["field"].as_str().map(str::to_string), m.to_string()),
                None => (None, text.trim().chars().take(300).collect()),
            };
            return Err(PanelError::Status {
                method: method.to_string(),
                path: path.to_string(),
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or_default().to_string(),
                field,
                message,
            });
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| PanelError::Decode {
                what: format!("{method} {path}"),
                message: e.to_string(),
            })?
        };
        Ok(Reply {
            status: status.as_u16(),
            etag,
            body,
        })
    }

    /// `GET path`, decoded.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, PanelError> {
        let reply = self.request(Method::GET, path, None, None)?;
        decode(&format!("GET {path}"), reply.body)
    }

    /// Every item of a paginated list (`{"items": [...], "next_cursor": ...}`),
    /// following the cursors.
    pub fn list(&self, path: &str) -> Result<Vec<Value>, PanelError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let sep = if path.contains('?') { '&' } else { '?' };
        loop {
            let page_path = match &cursor {
                Some(c) => format!("{path}{sep}limit=1000&cursor={c}"),
                None => format!("{path}{sep}limit=1000"),
            };
            let page: Page = self.get(&page_path)?;
            items.extend(page.items);
            match page.next_cursor {
                Some(c) if !c.is_empty() => cursor = Some(c),
                _ => return Ok(items),
            }
        }
    }

    /// The servers this token sees (a customer's own).
    pub fn servers(&self) -> Result<Vec<PanelServer>, PanelError> {
        self.list("/v1/servers")?
            .into_iter()
            .map(|v| decode("GET /v1/servers", v))
            .collect()
    }

    /// The network firewall of the first server `matches` accepts: the server,
    /// its effective policy (what the edge enforces) and the names of the
    /// firewalls its rules come from. `None` when no server matches.
    pub fn network_of(
        &self,
        matches: impl Fn(&PanelServer) -> bool,
    ) -> Result<Option<ServerNetwork>, PanelError> {
        let Some(server) = self.servers()?.into_iter().find(|s| matches(s)) else {
            return Ok(None);
        };
        let policy: ServerPolicy = self.get(&format!("/v1/servers/{}/policy", server.id))?;
        let mut ids: Vec<i64> = policy.rules.iter().map(|r| r.firewall_id).collect();
        ids.sort();
        ids.dedup();
        let mut firewall_names = Vec::new();
        for id in ids {
            // Names only make the output friendlier; the decision does not need them.
            if let Ok(v) = self.get::<Value>(&format!("/v1/firewalls/{id}")) {
                if let Some(n) = v["name"].as_str() {
                    firewall_names.push((id, n.to_string()));
                }
            }
        }
        Ok(Some(ServerNetwork {
            server,
            policy,
            firewall_names,
        }))
    }
}

fn decode<T: DeserializeOwned>(what: &str, v: Value) -> Result<T, PanelError> {
    serde_json::from_value(v).map_err(|e| PanelError::Decode {
        what: what.to_string(),
        message: e.to_string(),
    })
}

#[derive(Debug, Deserialize)]
struct Page {
    items: Vec<Value>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// A server as the panel lists it (`GET /v1/servers`).
#[derive(Debug, Clone, Deserialize)]
pub struct PanelServer {
    pub id: i64,
    pub name: String,
    /// `VPS`, `VDS` or `Dedicated`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub ipv4: Vec<IpAddr>,
    #[serde(default)]
    pub ipv6: Vec<IpAddr>,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl PanelServer {
    /// Every address of the server, IPv4 first.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ipv4.iter().chain(self.ipv6.iter()).copied()
    }

    /// Whether a network firewall can apply to it (not to Dedicated servers).
    pub fn is_dedicated(&self) -> bool {
        self.kind.eq_ignore_ascii_case("dedicated")
    }
}

/// What the network firewall does for one server.
#[derive(Debug, Clone)]
pub struct ServerNetwork {
    pub server: PanelServer,
    /// What the edge enforces (`GET /v1/servers/{id}/policy`).
    pub policy: ServerPolicy,
    /// (firewall id, name) of the firewalls the policy's rules come from.
    pub firewall_names: Vec<(i64, String)>,
}

impl ServerNetwork {
    /// `firewall 'web' (id 3)`, or `firewall 3` when the name is unknown.
    pub fn firewall_label(&self, id: i64) -> String {
        self.firewall_names
            .iter()
            .find(|(i, _)| *i == id)
            .map_or(format!("firewall {id}"), |(_, n)| {
                format!("firewall '{n}' (id {id})")
            })
    }
}

impl ServerNetwork {
    /// The policy as a ruleset ([`model::network::server_ruleset`], the same
    /// conversion the edge uses), and for each of its rules the index of the
    /// policy rule it comes from (an icmp rule becomes two).
    pub fn ruleset(&self) -> (model::Ruleset, Vec<usize>) {
        let rules: Vec<model::network::NetworkRule> = self
            .policy
            .rules
            .iter()
            .map(|r| model::network::NetworkRule {
                protocol: r.protocol,
                ports: r.ports,
                sources: r.sources.clone(),
                description: String::new(),
                enabled: true,
            })
            .collect();
        let mut owner = Vec::new();
        for (i, nr) in rules.iter().enumerate() {
            owner.extend(std::iter::repeat_n(i, nr.to_rules().len()));
        }
        (model::network::server_ruleset(&rules), owner)
    }

    /// How many distinct firewalls the policy's rules come from.
    pub fn firewall_count(&self) -> usize {
        let mut ids: Vec<i64> = self.policy.rules.iter().map(|r| r.firewall_id).collect();
        ids.sort();
        ids.dedup();
        ids.len()
    }
}
