//! The `portwall` binary: arguments in, library calls, rendering out. No policy
//! logic lives here; see the crates `model`, `netfilter`, `inspect` and `probe`.

mod backend;
mod commands;
mod exit;
mod output;
mod panel_client;

use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::OsString;

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
    /// A temporary rule or list entry, gone after DURATION (30s, 10m, 2h, 1d; at most 30d) even if portwall never runs again: `allow 22/tcp from 198.51.100.7 --for 30m`.
    #[arg(long = "for", global = true, value_name = "DURATION")]
    pub lifetime: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Allow traffic: `allow 22/tcp from 203.0.113.0/24`, `allow http,https`.
    Allow(commands::firewall::RuleArgs),
    /// Drop traffic silently (the sender sees a timeout).
    Deny(commands::firewall::RuleArgs),
    /// Refuse traffic (TCP reset / ICMP port unreachable).
    Reject(commands::firewall::RuleArgs),
    /// Allow, but refuse a source's 6th new connection within 30 s (`limit ssh`; `limit ssh rate 10/60s`).
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
    /// What is accepted before any rule, as UFW does (ping, ICMP errors, DHCP, mDNS, UPnP): `builtin ping off`.
    Builtin(commands::firewall::BuiltinArgs),
    /// UFW's application profiles rules may name (`allow OpenSSH`): `app list`, `app info NAME`.
    App(commands::app::AppArgs),
    /// Named address lists rules share (`deny from @blocklist`): `list create|add|del|load|show|ls|delete`.
    List(commands::list::ListArgs),
    /// Show the rules in force, read from the kernel.
    Status(commands::status::StatusArgs),
    /// The rules' counters for Prometheus (node_exporter's textfile format): `metrics --output FILE.prom`.
    Metrics(commands::metrics::MetricsArgs),
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
    /// (packaging) man pages or bash/zsh/fish completions from these definitions: `generate man DIR`.
    #[command(hide = true)]
    Generate(cli_docs::GenerateArgs),
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    use commands::firewall;
    let g = &cli.global;
    let takes_lifetime = matches!(
        cli.command,
        Command::Allow(_)
            | Command::Deny(_)
            | Command::Reject(_)
            | Command::Limit(_)
            | Command::Route(_)
            | Command::Insert(_)
            | Command::List(_)
    );
    if g.lifetime.is_some() && !takes_lifetime {
        return Err(exit::usage(
            "--for applies to rules (allow, deny, reject, limit, route, insert) and to 'list add'",
        ));
    }
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
        Command::Builtin(a) => firewall::builtin(g, a),
        Command::App(a) => commands::app::run(g, a),
        Command::List(a) => commands::list::run(g, a),
        Command::Status(a) => commands::status::run(g, a),
        Command::Metrics(a) => commands::metrics::run(g, a),
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
        Command::Generate(a) => generate(g, a),
    }
}

/// `portwall generate man|completions DIR`: what `scripts/package` installs.
fn generate(g: &Global, a: &cli_docs::GenerateArgs) -> anyhow::Result<u8> {
    let files = cli_docs::generate(<Cli as clap::CommandFactory>::command(), "8", a)?;
    if g.json {
        output::print_json(&files)?;
    } else {
        for f in &files {
            println!("{}", f.display());
        }
    }
    Ok(exit::OK)
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

/// The commands whose rule words take the rest of the line.
const RULE_COMMANDS: [&str; 7] = [
    "allow", "deny", "reject", "limit", "route", "insert", "delete",
];

/// `portwall allow 8080/tcp --json`: portwall's own flags typed among the
/// rule words (which take the rest of the line) are moved before the
/// command, where they are read as typed before it. A rule word never starts
/// with `--`; after a bare `--` every word is a rule word. A flag's value
/// moves with it (`--confirm 60`); an unknown flag moves too, so it is
/// refused as a flag, by name.
fn flags_before_rule_words(args: Vec<OsString>) -> Vec<OsString> {
    let command = Cli::command();
    // The global options that take a value, by long name.
    let takes_value = |name: &str| {
        command
            .get_arguments()
            .any(|a| a.get_long() == Some(name) && a.get_action().takes_values())
    };
    let is_flag = |a: &OsString| a.to_str().is_some_and(|s| s.starts_with("--") && s != "--");
    // The command: the first word that is not an option (or an option's value).
    let mut i = 1;
    while i < args.len() && args[i].to_str().is_some_and(|s| s.starts_with('-')) {
        let word = args[i].to_str().unwrap_or_default();
        let name = word.trim_start_matches('-');
        i += if !name.contains('=') && takes_value(name) {
            2
        } else {
            1
        };
    }
    if !args
        .get(i)
        .and_then(|c| c.to_str())
        .is_some_and(|c| RULE_COMMANDS.contains(&c))
    {
        return args;
    }
    let (head, rest) = args.split_at(i);
    let (mut flags, mut words) = (Vec::new(), Vec::new());
    let mut rest = rest.iter();
    words.extend(rest.next().cloned()); // the command
    while let Some(word) = rest.next() {
        if word == "--" {
            words.push(word.clone());
            words.extend(rest.by_ref().cloned());
        } else if is_flag(word) && word != "--help" {
            flags.push(word.clone());
            let name = word.to_str().unwrap_or_default().trim_start_matches('-');
            if !name.contains('=') && takes_value(name) {
                flags.extend(rest.next().cloned());
            }
        } else {
            words.push(word.clone());
        }
    }
    head.iter().cloned().chain(flags).chain(words).collect()
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
    let cli = match Cli::try_parse_from(flags_before_rule_words(std::env::args_os().collect())) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Cli {
        let args = std::iter::once("portwall")
            .chain(line.split(' '))
            .map(OsString::from)
            .collect();
        Cli::try_parse_from(flags_before_rule_words(args)).unwrap()
    }

    fn words(cli: &Cli) -> &[String] {
        match &cli.command {
            Command::Allow(a) | Command::Deny(a) => &a.words,
            Command::Insert(a) => &a.words,
            Command::Delete(a) => &a.words,
            other => panic!("{other:?}"),
        }
    }

    /// Flags after the rule are the command's flags, not rule words.
    #[test]
    fn flags_are_read_anywhere_on_the_line() {
        let c = parse("allow 8080/tcp --json");
        assert!(c.global.json);
        assert_eq!(words(&c), ["8080/tcp"]);
        let c = parse("allow 22/tcp --confirm 60 from 203.0.113.0/24");
        assert_eq!(c.global.confirm, Some(60));
        assert_eq!(words(&c), ["22/tcp", "from", "203.0.113.0/24"]);
        let c = parse("deny 22/tcp --force --confirm=30");
        assert!(c.global.force);
        assert_eq!(c.global.confirm, Some(30));
        let c = parse("--json insert 1 deny from 198.51.100.7 --backend iptables");
        assert!(c.global.json);
        assert_eq!(c.global.backend, "iptables");
        assert_eq!(words(&c), ["deny", "from", "198.51.100.7"]);
        let c = parse("--config-dir /tmp/x delete 3 --json");
        assert!(c.global.json);
        assert_eq!(c.global.config_dir, std::path::Path::new("/tmp/x"));
        assert_eq!(words(&c), ["3"]);
        // A single hyphen is a rule word (a comment may start with one).
        let c = parse("allow 22/tcp comment -office");
        assert_eq!(words(&c), ["22/tcp", "comment", "-office"]);
        // After `--`, every word is a rule word.
        let c = parse("allow 22/tcp -- --json");
        assert!(!c.global.json);
        assert_eq!(words(&c), ["22/tcp", "--", "--json"]);
    }

    /// An unknown flag among the rule words is refused as a flag, by name.
    #[test]
    fn an_unknown_flag_is_refused_by_name() {
        let args = ["portwall", "allow", "22/tcp", "--jsn"]
            .map(OsString::from)
            .to_vec();
        let e = Cli::try_parse_from(flags_before_rule_words(args)).unwrap_err();
        assert!(e.to_string().contains("--jsn"), "{e}");
    }
}
