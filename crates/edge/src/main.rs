//! `portwall-edge`: the edge agent (`run`) and what it enforces (`status`).
//!
//! Configuration by flags or environment (`PORTWALL_EDGE_*`); the token is best
//! given through the environment or a file, not on the command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use comfy_table::{presets, CellAlignment, Table};
use edge::agent::{self, AgentConfig};
use edge::{Mode, TableSpec};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "portwall-edge",
    version,
    about = "Enforces the panel's network firewalls on this gateway or hypervisor, fail-static."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Restore the saved policy, then follow the panel (runs until stopped).
    Run(RunArgs),
    /// What the kernel enforces now: revision, servers, rules, hit counters.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
struct TableArgs {
    /// forward (a routed gateway: table inet) or bridge (a hypervisor's bridge: table bridge).
    #[arg(long, env = "PORTWALL_EDGE_MODE", value_parser = parse_mode)]
    mode: Option<Mode>,
    /// The name of the edge's nftables table.
    #[arg(long, env = "PORTWALL_EDGE_TABLE", default_value = edge::compile::TABLE)]
    table: String,
    /// Where the last applied policy is kept.
    #[arg(
        long,
        env = "PORTWALL_EDGE_STATE_DIR",
        default_value = "/var/lib/portwall-edge"
    )]
    state_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The panel's base URL, e.g. http://panel.example:8080; several replicas
    /// separated by commas.
    #[arg(long, env = "PORTWALL_EDGE_PANEL_URL")]
    panel_url: String,
    /// The edge token (kind edge, for this zone).
    #[arg(
        long,
        env = "PORTWALL_EDGE_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding the edge token.
    #[arg(long, env = "PORTWALL_EDGE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The zone whose servers this edge enforces.
    #[arg(long, env = "PORTWALL_EDGE_ZONE")]
    zone: String,
    /// This edge's name in reports (default: the host name).
    #[arg(long, env = "PORTWALL_EDGE_NAME")]
    name: Option<String>,
    #[command(flatten)]
    table: TableArgs,
    /// Seconds the panel may hold an idle poll.
    #[arg(long, env = "PORTWALL_EDGE_WAIT", default_value_t = 30)]
    wait: u64,
    /// Seconds between hit-counter reports (0: never).
    #[arg(long, env = "PORTWALL_EDGE_COUNTERS_EVERY", default_value_t = 60)]
    counters_every: u64,
    /// Longest pause between retries when the panel is unreachable, in seconds.
    #[arg(long, env = "PORTWALL_EDGE_BACKOFF_MAX", default_value_t = 15)]
    backoff_max: u64,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    #[command(flatten)]
    table: TableArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse()
}

fn table_spec(a: &TableArgs) -> Option<TableSpec> {
    a.mode.map(|mode| TableSpec {
        mode,
        name: a.table.clone(),
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn run(a: RunArgs) -> anyhow::Result<()> {
    let token = match (&a.token, &a.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the token file {}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => {
            anyhow::bail!("no edge token: give --token, --token-file or PORTWALL_EDGE_TOKEN")
        }
    };
    let table = TableSpec {
        mode: a.table.mode.unwrap_or(Mode::Forward),
        name: a.table.table.clone(),
    };
    let mut cfg = AgentConfig::new(
        &a.panel_url,
        &token,
        &a.zone,
        table,
        a.table.state_dir.clone(),
    );
    if let Some(n) = a.name {
        cfg.edge_name = n;
    }
    cfg.wait = Duration::from_secs(a.wait);
    cfg.counters_every = Duration::from_secs(a.counters_every);
    cfg.backoff_max = Duration::from_secs(a.backoff_max.max(1));
    // How the kernel is reached, chosen once here: netlink unless the kernel
    // has none, or `PORTWALL_NFT_BACKEND=nft` (the `nft` binary).
    cfg.engine.kernel = match std::env::var("PORTWALL_NFT_BACKEND").as_deref() {
        Ok("nft") => netfilter::Kernel::NftBinary,
        _ => netfilter::Kernel::detect_nftables(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        tracing::info!(panel = %cfg.panel_urls.join(","), zone = %cfg.zone, mode = cfg.table.mode.as_str(), table = %cfg.table.name, state_dir = %cfg.state_dir.display(), "starting");
        let handle = agent::start(cfg).await?;
        shutdown_signal().await;
        tracing::info!("stopping; the kernel keeps enforcing the policy in force");
        handle.stop().await;
        Ok::<(), anyhow::Error>(())
    })
}

fn fmt_time(ms: Option<u64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) => {
            let age = edge::store::now_ms().saturating_sub(ms) / 1000;
            format!("{age} s ago")
        }
    }
}

fn table(header: &[&str], right: &[usize]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_header(header.to_vec());
    for &c in right {
        if let Some(col) = t.column_mut(c) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

fn print_table(t: &Table) {
    for line in t.to_string().lines() {
        println!("{}", line.strip_prefix(' ').unwrap_or(line).trim_end());
    }
}

fn status(a: StatusArgs) -> anyhow::Result<u8> {
    let st = edge::status::collect(&a.table.state_dir, table_spec(&a.table))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(if st.drift.is_empty() { 0 } else { 1 });
    }
    println!(
        "table:     {} {} ({})",
        st.family,
        st.table,
        if st.loaded { "loaded" } else { "NOT loaded" }
    );
    println!(
        "zone:      {}   revision: {}   saved: {}",
        st.zone.as_deref().unwrap_or("-"),
        st.revision.map_or("-".into(), |r| r.to_string()),
        fmt_time(st.saved_at_ms)
    );
    println!(
        "servers:   {} ({} enforced)   rules: {}   elements: {} loaded / {} expected",
        st.servers, st.enforced, st.rules, st.elements_loaded, st.elements_expected
    );
    match &st.agent {
        Some(n) => println!(
            "agent:     {} (pid {}), panel {} {}, last sync {}{}",
            if st.agent_running {
                "running"
            } else {
                "not running"
            },
            n.pid,
            n.panel_url,
            if n.panel_reachable {
                "reachable"
            } else {
                "UNREACHABLE"
            },
            fmt_time(n.last_sync_ms),
            n.last_error
                .as_ref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        ),
        None => println!("agent:     no note in {}", a.table.state_dir.display()),
    }
    for d in &st.drift {
        println!("DRIFT:     {d}");
    }
    if !st.server_rows.is_empty() {
        println!();
        let mut t = table(
            &[
                "ID",
                "SERVER",
                "ADDRESSES",
                "ENFORCED",
                "REV",
                "RULES",
                "DROPPED PKTS",
                "DROPPED BYTES",
            ],
            &[0, 4, 5, 6, 7],
        );
        for s in &st.server_rows {
            let addrs: Vec<String> = s.addresses.iter().map(|a| a.to_string()).collect();
            t.add_row(vec![
                s.server_id.to_string(),
                s.name.clone(),
                addrs.join(","),
                if s.enforced { "yes" } else { "no" }.to_string(),
                s.revision.to_string(),
                s.rules.to_string(),
                s.dropped_packets.to_string(),
                s.dropped_bytes.to_string(),
            ]);
        }
        print_table(&t);
    }
    if !st.rule_rows.is_empty() {
        println!();
        let mut t = table(
            &["SERVER", "FIREWALL", "RULE", "MATCH", "PKTS", "BYTES"],
            &[1, 2, 4, 5],
        );
        for r in &st.rule_rows {
            t.add_row(vec![
                r.server.clone(),
                r.firewall_id.to_string(),
                r.rule_id.to_string(),
                r.rule.clone(),
                r.packets.to_string(),
                r.bytes.to_string(),
            ]);
        }
        print_table(&t);
    }
    Ok(if st.drift.is_empty() { 0 } else { 1 })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let r = match cli.command {
        Cmd::Run(a) => run(a).map(|_| 0),
        Cmd::Status(a) => status(a),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("portwall-edge: {e:#}");
            ExitCode::from(1)
        }
    }
}
