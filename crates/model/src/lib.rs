//! portwall's rule language: one model for both layers.
//!
//! A rule is written the way admins write UFW rules (`allow 22/tcp from
//! 203.0.113.0/24`, `limit ssh`, `reject out 25/tcp`) and is the same value whether
//! it came from the CLI, the config file, the panel or the API.
//!
//! - [`rule`]: the value ([`Rule`], [`PortRange`], [`Protocol`], ...) and its
//!   canonical text form.
//! - [`parse`]: UFW-compatible parsing with errors that point at the bad token.
//! - [`profiles`]: UFW's application profiles (`allow OpenSSH`).
//! - [`ruleset`]: ordered rules plus default policies, and the edits the CLI makes.
//! - [`evaluate()`]: **the definition of what a ruleset means**. Every enforcer
//!   (nftables, iptables, the edge) must agree with it packet for packet.
//! - [`diff()`]: what changes between two rulesets (`portwall plan`).
//! - [`builtins`]: what a host accepts before its rules, as UFW does, and the
//!   switches that turn each group off.
//! - [`config`]: the host's desired state as TOML.
//! - [`network`]: the provider's network firewall in the same language, and the
//!   panel↔edge sync wire types.
//!
//! This crate is pure: no I/O, no unsafe, no dependency on other portwall crates.

#![forbid(unsafe_code)]

pub mod builtins;
pub mod config;
pub mod diff;
pub mod evaluate;
pub mod exposure;
pub mod list;
pub mod network;
pub mod parse;
pub mod profiles;
pub mod rule;
pub mod ruleset;
pub mod safety;
pub mod services;

pub use config::{ConfigError, HostConfig};
pub use diff::{continued, diff, Change};
pub use evaluate::{
    evaluate, rule_matches, rule_matches_in, Builtin, ConnState, DecidedBy, Decision, Packet,
    PacketProtocol, Verdict,
};
pub use parse::{parse_net, parse_rule, parse_rule_args, ParseError};
pub use rule::{
    Action, Addresses, Direction, PortError, PortRange, Ports, Protocol, Rate, Rule, RuleError,
    PROTOCOLS,
};
pub use ruleset::{AddOutcome, Defaults, Logging, Policy, Ruleset, RulesetError};
pub use services::{risky_service, Services};
