//! The records the store returns. They serialize to the JSON the API shows.

use model::network::{NetworkProtocol, NetworkRule};
use model::PortRange;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use utoipa::ToSchema;

/// What kind of machine a server is. Only virtual servers can have network
/// firewalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ServerKind {
    #[serde(rename = "VPS")]
    Vps,
    #[serde(rename = "VDS")]
    Vds,
    #[serde(rename = "Dedicated")]
    Dedicated,
}

impl ServerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::Vps => "VPS",
            ServerKind::Vds => "VDS",
            ServerKind::Dedicated => "Dedicated",
        }
    }
    pub fn parse(s: &str) -> Option<ServerKind> {
        match s {
            "VPS" => Some(ServerKind::Vps),
            "VDS" => Some(ServerKind::Vds),
            "Dedicated" => Some(ServerKind::Dedicated),
            _ => None,
        }
    }
    /// Whether a network firewall can be assigned (VPS and VDS only).
    pub fn supports_firewall(self) -> bool {
        !matches!(self, ServerKind::Dedicated)
    }
}

/// A customer of the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Customer {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub created_at: String,
}

/// A server of a customer, as the provider registered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Server {
    pub id: i64,
    pub customer_id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ServerKind,
    #[schema(value_type = Vec<String>, example = json!(["203.0.113.10"]))]
    pub ipv4: Vec<Ipv4Addr>,
    #[schema(value_type = Vec<String>, example = json!(["2001:db8::10"]))]
    pub ipv6: Vec<Ipv6Addr>,
    /// The edge zone that carries this server's traffic.
    pub zone: String,
    pub labels: BTreeMap<String, String>,
    /// The global revision at which this server's effective network policy
    /// last changed.
    pub policy_revision: u64,
    pub created_at: String,
}

/// What the provider registers for a new server.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServer {
    pub customer_id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ServerKind,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub ipv4: Vec<Ipv4Addr>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub ipv6: Vec<Ipv6Addr>,
    pub zone: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A change to a server; absent fields stay as they are. Customers may change
/// `labels` only.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerPatch {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<ServerKind>,
    #[schema(value_type = Option<Vec<String>>)]
    pub ipv4: Option<Vec<Ipv4Addr>>,
    #[schema(value_type = Option<Vec<String>>)]
    pub ipv6: Option<Vec<Ipv6Addr>>,
    pub zone: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// Whether a firewall is enforced where it is assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FirewallStatus {
    Active,
    Inactive,
}

/// One rule of a firewall, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FirewallRule {
    pub id: i64,
    #[schema(value_type = String, example = "tcp")]
    pub protocol: NetworkProtocol,
    /// `"22"` or `"8000-8100"`; null for icmp and for any without ports.
    #[schema(example = "22")]
    pub port: Option<String>,
    /// Source networks; empty means from anywhere.
    #[schema(example = json!(["203.0.113.0/24"]))]
    pub sources: Vec<String>,
    pub description: String,
    pub enabled: bool,
}

impl FirewallRule {
    pub(crate) fn new(id: i64, rule: &NetworkRule) -> FirewallRule {
        FirewallRule {
            id,
            protocol: rule.protocol,
            port: rule.ports.map(format_port),
            sources: rule.sources.iter().map(ToString::to_string).collect(),
            description: rule.description.clone(),
            enabled: rule.enabled,
        }
    }

    /// The rule as the shared model value.
    pub fn to_network_rule(&self) -> NetworkRule {
        NetworkRule {
            protocol: self.protocol,
            ports: self.port.as_deref().and_then(|p| parse_port(p).ok()),
            sources: self.sources.iter().filter_map(|s| s.parse().ok()).collect(),
            description: self.description.clone(),
            enabled: self.enabled,
        }
    }
}

/// `22` or `8000-8100`.
pub fn format_port(p: PortRange) -> String {
    p.hyphenated()
}

/// Parses `22`, `8000-8100` (also `8000:8100`), each port in 1-65535:
/// [`PortRange`]'s grammar.
pub fn parse_port(s: &str) -> Result<PortRange, String> {
    let s = s.trim();
    s.parse()
        .map_err(|e: model::PortError| format!("'{s}': {e}"))
}

/// A label selector stored on a firewall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SelectorRecord {
    pub id: i64,
    /// `key=value[,key=value...]`: all pairs must match.
    pub selector: String,
}

/// A firewall with its rules and assignments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Firewall {
    pub id: i64,
    pub customer_id: i64,
    pub name: String,
    pub description: String,
    pub status: FirewallStatus,
    /// The global revision of this firewall's last change; also its ETag.
    pub revision: u64,
    pub rules: Vec<FirewallRule>,
    /// Servers assigned by id.
    pub servers: Vec<i64>,
    /// Stored label selectors: every VPS/VDS of the customer whose labels match
    /// is assigned, including servers labelled later.
    pub selectors: Vec<SelectorRecord>,
    pub created_at: String,
    pub updated_at: String,
}

impl Firewall {
    /// The strong ETag of this revision.
    pub fn etag(&self) -> String {
        etag(self.revision)
    }
}

/// The ETag of a firewall revision.
pub fn etag(revision: u64) -> String {
    format!("\"r{revision}\"")
}

/// A firewall in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FirewallSummary {
    pub id: i64,
    pub customer_id: i64,
    pub name: String,
    pub description: String,
    pub status: FirewallStatus,
    pub revision: u64,
    pub rule_count: u64,
    pub created_at: String,
    pub updated_at: String,
}

/// The result of an assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AssignOutcome {
    pub firewall: Firewall,
    /// Servers the request assigned (by id, or matched by the selector now).
    pub assigned: Vec<i64>,
    /// Servers the selector matched but that cannot have a network firewall.
    pub skipped: Vec<SkippedServer>,
}

/// A server an assignment left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SkippedServer {
    pub server_id: i64,
    pub reason: String,
}

/// One page of a list. Pass `next_cursor` back as `cursor` for the next page;
/// null means this is the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Which page of a list to read: ids after (or, for the audit log, before)
/// `cursor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<i64>,
}

impl<T> Page<T> {
    pub(crate) fn from_rows(
        mut items: Vec<T>,
        req: PageRequest,
        id: impl Fn(&T) -> i64,
    ) -> Page<T> {
        let next_cursor = if items.len() > req.limit as usize {
            items.truncate(req.limit as usize);
            items.last().map(|t| id(t).to_string())
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

/// Whose token or session made a change, for authorization and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Actor {
    pub kind: ActorKind,
    /// The token or user id.
    pub id: Option<i64>,
    /// The customer the actor acts for (None: the provider).
    pub customer_id: Option<i64>,
    /// Human-readable: `admin token 'ops' (#1)`, `user alice`, ...
    pub label: String,
}

impl Actor {
    /// The panel itself (bootstrap, maintenance).
    pub fn system() -> Actor {
        Actor {
            kind: ActorKind::System,
            id: None,
            customer_id: None,
            label: "panel".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A provider operator's admin token.
    Admin,
    /// A customer API token.
    Token,
    /// A user logged in with a browser session.
    User,
    /// An edge token.
    Edge,
    /// The panel itself.
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Admin => "admin",
            ActorKind::Token => "token",
            ActorKind::User => "user",
            ActorKind::Edge => "edge",
            ActorKind::System => "system",
        }
    }
}

/// Kinds of API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A customer's API token.
    Customer,
    /// A provider operator's token.
    Admin,
    /// An edge node's token, for one zone's sync endpoints.
    Edge,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Customer => "customer",
            TokenKind::Admin => "admin",
            TokenKind::Edge => "edge",
        }
    }
    pub fn parse(s: &str) -> Option<TokenKind> {
        match s {
            "customer" => Some(TokenKind::Customer),
            "admin" => Some(TokenKind::Admin),
            "edge" => Some(TokenKind::Edge),
            _ => None,
        }
    }
    /// The prefix of a token's secret, which tells the kind at a glance.
    pub fn secret_prefix(self) -> &'static str {
        match self {
            TokenKind::Customer => "pwc_",
            TokenKind::Admin => "pwa_",
            TokenKind::Edge => "pwe_",
        }
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// GET only.
    Read,
    /// Everything the owner may do.
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }
}

/// A token as listed; the secret is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub kind: TokenKind,
    pub customer_id: Option<i64>,
    /// For edge tokens: the zone it may sync.
    pub zone: Option<String>,
    pub scope: Scope,
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// A newly created token: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The secret, for `Authorization: Bearer`. Shown once.
    pub token: String,
}

/// A verified token, as the auth layer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAuth {
    pub id: i64,
    pub kind: TokenKind,
    pub customer_id: Option<i64>,
    pub zone: Option<String>,
    pub scope: Scope,
    pub name: String,
    pub last_used_at: Option<i64>,
}

/// A login for the web panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UserInfo {
    pub id: i64,
    pub login: String,
    /// None: a provider operator.
    pub customer_id: Option<i64>,
    pub created_at: String,
}

/// A browser session, found by its cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SessionInfo {
    pub id: i64,
    pub user_id: i64,
    pub login: String,
    pub customer_id: Option<i64>,
    /// Must accompany every state-changing request made with this session
    /// (`X-CSRF-Token` header, or the `csrf_token` form field).
    pub csrf_token: String,
    pub expires_at: String,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor_kind: String,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub customer_id: Option<i64>,
    /// `firewall.create`, `rule.update`, `assignment.create`, ...
    pub action: String,
    /// `firewall/12`, `server/3`, ...
    pub target: String,
    /// The global revision the change committed as, if it changed policy state.
    pub revision: Option<u64>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Where the edge stands on one server's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ServerStatus {
    pub server_id: i64,
    pub name: String,
    pub zone: String,
    /// `applied`, `pending` or `failed: REASON`.
    pub status: String,
    pub state: ApplyState,
    pub reason: Option<String>,
    /// The global revision of the server's current policy.
    pub policy_revision: u64,
    /// The highest revision the edge reported as applied for it.
    pub realized_revision: Option<u64>,
    pub edge: Option<String>,
    pub reported_at: Option<String>,
    /// Whether an active firewall is assigned (else its traffic is not filtered).
    pub enforced: bool,
    /// Firewalls assigned to it (by id or selector), active or not.
    pub firewalls: Vec<i64>,
    /// The edge's latest counters: per rule, and `rule_id` null for drops.
    pub counters: Vec<CounterInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApplyState {
    Applied,
    Pending,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CounterInfo {
    pub rule_id: Option<i64>,
    pub packets: u64,
    pub bytes: u64,
    pub updated_at: String,
}

/// Where a firewall stands on each server it is assigned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FirewallApplyStatus {
    pub firewall_id: i64,
    pub status: FirewallStatus,
    pub revision: u64,
    pub servers: Vec<ServerStatus>,
}

/// What the panel recorded from an edge report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReportOutcome {
    pub recorded: u64,
    /// Server ids the report named that are not in the edge's zone.
    pub ignored: Vec<i64>,
}

/// A customer's IP list: a named set of IPv4 and IPv6 addresses and
/// networks, with what its entries merge into in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IpList {
    pub id: i64,
    pub customer_id: i64,
    /// 1-26 characters: lowercase letters, digits, '-' and '_', starting with
    /// a letter.
    #[schema(example = "office")]
    pub name: String,
    pub description: String,
    /// The global revision of this list's last change; also its ETag.
    pub revision: u64,
    /// The entries, sorted (IPv4 first) and without duplicates: addresses
    /// (`198.51.100.7`) and networks (`203.0.113.0/24`).
    #[schema(example = json!(["198.51.100.7", "203.0.113.0/24", "2001:db8::/32"]))]
    pub entries: Vec<String>,
    /// How many entries the list holds.
    pub entry_count: u64,
    /// How many ranges the entries merge into in the kernel (overlapping and
    /// adjacent networks become one range).
    pub range_count: u64,
    /// How many entries the merge saved: `entry_count - range_count`.
    pub merged_away: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl IpList {
    /// The strong ETag of this revision.
    pub fn etag(&self) -> String {
        etag(self.revision)
    }
}

/// An IP list in a list of lists (without its entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IpListSummary {
    pub id: i64,
    pub customer_id: i64,
    pub name: String,
    pub description: String,
    pub revision: u64,
    pub entry_count: u64,
    /// How many ranges the entries merge into in the kernel.
    pub range_count: u64,
    pub created_at: String,
    pub updated_at: String,
}
