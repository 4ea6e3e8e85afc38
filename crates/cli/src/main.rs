//! The `portwall` binary: arguments in, library calls, rendering out. No policy
//! logic lives here; see the crates `model`, `netfilter`, `inspect` and `probe`.

mod backend;
mod commands;
mod exit;
mod output;
mod packet_filter;
mod panel_client;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: reading, compiling and encoding a
/// large ruleset makes millions of small allocations, and glibc's allocator
/// was a sixth of a 100k-rule apply.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "portwall",
    version,
    about = "Who may reach which port of this server."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Where the desired state lives.
    #[arg(long, global = true, env = "PORTWALL_CONFIG_DIR", default_value = host::DEFAULT_DIR, value_name = "DIR")]
    pub config_dir: std::path::PathBuf,
    /// The packet filter: nftables, iptables, or auto (nftables when `nft` works).
    #[arg(
        long,
        global = true,
        env = "PORTWALL_BACKEND",
        default_value = "auto",
        value_name = "BACKEND"
    )]
    pub backend: String,
    /// Apply even if the change would cut a live SSH session.
    #[arg(long, global = true)]
    pub force: bool,
    /// Apply now and roll back automatically unless `portwall confirm` runs within SECONDS.
    #[arg(long, global = true, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(5..=86400))]
    pub confirm: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Allow traffic: `allow 22/tcp from 203.0.113.0/24`, `allow http,https`.
    Allow(commands::firewall::RuleArgs),
    /// Drop traffic silently (the sender sees a timeout).
    Deny(commands::firewall::RuleArgs),
    /// Refuse traffic (TCP reset / ICMP port unreachable).
    Reject(commands::firewall::RuleArgs),
    /// Allow, but drop a source opening more than 6 connections in 30 s (`limit ssh`).
    Limit(commands::firewall::RuleArgs),
    /// A rule for forwarded traffic, in UFW's form: `route allow in on eth0 out on eth1 ...`.
    Route(commands::firewall::RouteArgs),
    /// Insert a rule at a position: `insert 1 deny from 198.51.100.7`.
    Insert(commands::firewall::InsertArgs),
    /// Delete a rule by number (`delete 3`) or by its text (`delete allow 8080/tcp`).
    Delete(commands::firewall::DeleteArgs),
    /// Set a default policy: `default deny incoming`, `default allow outgoing`.
    Default(commands::firewall::DefaultArgs),
    /// Log what the default policies block (on), and new connections (full).
    Logging(commands::firewall::LoggingArgs),
    /// Show the rules in force, read from the kernel.
    Status(commands::status::StatusArgs),
    /// Apply the saved rules and keep them applied at boot.
    Enable,
    /// Remove portwall's rules from the kernel (other tools' rules stay).
    Disable,
    /// Re-read the saved rules (after editing rules.toml) and apply them.
    Reload,
    /// Back to the defaults: no rules, disabled.
    Reset,
    /// Apply the saved rules if enabled (what the boot unit runs).
    Restore,
    /// Make the kernel match a rules file (declarative).
    Apply(commands::firewall::ApplyArgs),
    /// Show what applying would change, without applying.
    Plan(commands::firewall::PlanArgs),
    /// What is actually exposed: every listening socket, who can reach it, and the risky ones (exit 3).
    Audit(commands::audit::AuditArgs),
    /// Keep a change made with --confirm (otherwise it is rolled back at the deadline).
    Confirm,
    /// (internal) the detached process that rolls back an unconfirmed change.
    #[command(hide = true)]
    RollbackWatchdog {
        #[arg(long)]
        id: String,
    },
    /// Is a port reachable from here? open / closed / filtered, TCP or UDP.
    Probe(commands::probe::ProbeArgs),
    /// Which sockets listen and which processes own them (`netstat -tulpen`).
    Ports(commands::ports::PortsArgs),
    /// Import UFW or iptables rules as portwall rules (`--apply` installs them).
    Import(commands::import::ImportArgs),
    /// Why a packet is accepted or dropped, layer by layer.
    Explain(commands::explain::ExplainArgs),
    /// The provider's network firewall, through the panel's API: `cloud firewall add-rule web tcp 443`.
    Cloud(commands::cloud::CloudArgs),
    /// A provider in network namespaces to try both layers: `lab up`, `lab exec vps1 -- portwall allow 80/tcp`.
    Lab(commands::lab::LabArgs),
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    use commands::firewall;
    let g = &cli.global;
    match &cli.command {
        Command::Allow(a) => firewall::add(g, "allow", &a.words),
        Command::Deny(a) => firewall::add(g, "deny", &a.words),
        Command::Reject(a) => firewall::add(g, "reject", &a.words),
        Command::Limit(a) => firewall::add(g, "limit", &a.words),
        Command::Route(a) => firewall::route(g, &a.words),
        Command::Insert(a) => firewall::insert(g, a),
        Command::Delete(a) => firewall::delete(g, a),
        Command::Default(a) => firewall::default(g, a),
        Command::Logging(a) => firewall::logging(g, a),
        Command::Status(a) => commands::status::run(g, a),
        Command::Enable => firewall::enable(g),
        Command::Disable => firewall::disable(g),
        Command::Reload => firewall::reload(g),
        Command::Reset => firewall::reset(g),
        Command::Restore => firewall::restore(g),
        Command::Apply(a) => firewall::apply(g, a),
        Command::Plan(a) => firewall::plan(g, a),
        Command::Confirm => commands::safety::confirm(g),
        Command::Audit(a) => commands::audit::run(g, a),
        Command::RollbackWatchdog { id } => commands::safety::rollback_watchdog(g, id),
        Command::Probe(a) => commands::probe::run(g, a),
        Command::Ports(a) => commands::ports::run(g, a),
        Command::Import(a) => commands::import::run(g, a),
        Command::Explain(a) => commands::explain::run(g, a),
        Command::Lab(a) => commands::lab::run(g, a),
        Command::Cloud(a) => commands::cloud::run(g, a),
    }
}

/// With `PORTWALL_LOG` set (a `tracing` filter such as `debug`), each phase
/// of a command prints its time to stderr when it ends (parse, compile, the
/// kernel batch, the read-back, the saves): where a slow apply spends it.
fn trace_phases() {
    let Ok(filter) = std::env::var("PORTWALL_LOG") else {
        return;
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .init();
}

/// The exit code of a failed command: the one its error carries, 2 for bad
/// input found by the host library (an invalid config file), 1 otherwise.
fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(e) = err.downcast_ref::<exit::ExitError>() {
        return e.code;
    }
    match err.downcast_ref::<host::HostError>() {
        Some(e) if e.is_bad_input() => exit::USAGE,
        _ => exit::FAILURE,
    }
}

fn main() -> ExitCode {
    // `portwall ports | head` ends quietly when the reader goes away, as
    // coreutils do, instead of panicking on a broken pipe.
    // SAFETY: called first in main, before any thread exists; SIG_DFL installs
    // no handler code.
    let _ = unsafe {
        use nix::sys::signal::{signal, SigHandler, Signal};
        signal(Signal::SIGPIPE, SigHandler::SigDfl)
    };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    trace_phases();
    let json = cli.global.json;
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = exit_code(&err);
            if json {
                let body = serde_json::json!({ "error": format!("{err:#}"), "exit_code": code });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&body).unwrap_or_default()
                );
            } else {
                eprintln!("portwall: {err:#}");
            }
            ExitCode::from(code)
        }
    }
}
