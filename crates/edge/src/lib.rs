//! The edge agent: enforces the network firewall outside the servers.
//!
//! An edge sits in front of the servers of one zone: a routed gateway (mode
//! `forward`, table `inet portwall_edge`) or a hypervisor's bridge (mode
//! `bridge`, table `bridge portwall_edge`). It follows the panel and makes the
//! kernel enforce, per server, what `model::network::server_ruleset` means:
//! when an active firewall is assigned, a new inbound connection passes only if
//! one of its rules accepts it; replies, the server's own outbound traffic and
//! servers without an active firewall are never filtered.
//!
//! - [`compile`]: policies → set elements (lookups keyed by destination ·
//!   protocol · port range · source prefix, with per-element counters) and the
//!   nftables transactions that load them. Pure.
//! - [`engine`]: the policy in force and the kernel kept equal to it: a change
//!   is one transaction with only the elements that differ; an invalid policy
//!   is rejected whole; nothing ever falls open.
//! - [`store`]: fail static. The last applied policy is written to disk
//!   atomically and applied at start-up before the panel is asked anything.
//! - [`client`]: the sync protocol of `model::network::sync` over HTTP.
//! - [`agent`]: the long-poll loop (a change arrives at once; an idle poll
//!   returns after ~30 s), reconnects with capped exponential backoff and
//!   jitter, reports what it applied and the hit counters, and publishes the
//!   last good policy in a `tokio::sync::watch` value.
//! - [`metrics`]: Prometheus metrics and health on `--metrics-listen`.
//! - [`config`]: the configuration file `/etc/portwall/edge.toml` and the log
//!   format.
//! - [`status`]: what the kernel enforces right now, with counters, for
//!   `portwall-edge status`.

pub mod agent;
pub mod client;
pub mod compile;
pub mod config;
pub mod engine;
pub mod metrics;
pub mod status;
pub mod store;

pub use compile::{Mode, TableSpec};
pub use engine::{ApplyMode, ApplyOutcome, Engine, EngineOptions, PolicySnapshot};

/// What can go wrong at the edge.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("invalid policy, rejected whole (the previous policy stays in force): {0}")]
    Invalid(String),
    #[error("a delta from revision {from} does not follow the applied revision ({}); a snapshot is needed", .applied.map_or("none".to_string(), |r| r.to_string()))]
    Gap { from: u64, applied: Option<u64> },
    #[error(transparent)]
    Nft(#[from] netfilter::NftError),
    #[error("this kernel cannot track connections on a bridge (CONFIG_NF_CONNTRACK_BRIDGE, module nf_conntrack_bridge), which mode bridge needs to let replies through; load the module, or use mode forward with br_netfilter (sysctl net.bridge.bridge-nf-call-iptables=1 and bridge-nf-call-ip6tables=1) ({0})")]
    NoBridgeConntrack(String),
    #[error("the kernel's table differs from what was sent: {0}")]
    Verify(String),
    #[error("{path}: {message}")]
    Store { path: String, message: String },
    #[error(transparent)]
    Client(#[from] client::ClientError),
}
