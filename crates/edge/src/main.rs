//! `portwall-edge`: the edge agent (`run`) and what it enforces (`status`).
//!
//! Configuration by flags, environment (`PORTWALL_EDGE_*`) or the file
//! `/etc/portwall/edge.toml` (see `edge::config`); the token is best given
//! through a file (`token_file`) or the environment, not on the command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use comfy_table::{presets, CellAlignment, Table};
use edge::agent::{self, AgentConfig};
use edge::config::{EdgeSettings, LogFormat};
use edge::{Mode, TableSpec};
use std::net::SocketAddr;
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
    /// The configuration file [default: /etc/portwall/edge.toml, if it exists].
    /// Its keys are the flags' names; flags and environment override it.
    #[arg(long, global = true, env = "PORTWALL_EDGE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log lines as text or JSON objects [default: text].
    #[arg(long, global = true, env = "PORTWALL_EDGE_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Restore the saved policy, then follow the panel (runs until stopped).
    Run(Box<RunArgs>),
    /// What the kernel enforces now: revision, servers, rules, hit counters.
    Status(StatusArgs),
    /// (packaging) man pages or bash/zsh/fish completions from these definitions: `generate man DIR`.
    #[command(hide = true)]
    Generate(cli_docs::GenerateArgs),
}

#[derive(Debug, clap::Args)]
struct TableArgs {
    /// forward (a routed gateway: table inet) or bridge (a hypervisor's bridge: table bridge).
    #[arg(long, env = "PORTWALL_EDGE_MODE", value_parser = parse_mode)]
    mode: Option<Mode>,
    /// The name of the edge's nftables table [default: portwall_edge].
    #[arg(long, env = "PORTWALL_EDGE_TABLE")]
    table: Option<String>,
    /// Where the last applied policy is kept [default: /var/lib/portwall-edge].
    #[arg(long, env = "PORTWALL_EDGE_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The panel's base URL, e.g. https://panel.example; several replicas
    /// separated by commas.
    #[arg(long, env = "PORTWALL_EDGE_PANEL_URL")]
    panel_url: Option<String>,
    /// Trust only the CA certificates in this PEM file for the panel
    /// [default: the system's roots].
    #[arg(long, env = "PORTWALL_EDGE_PANEL_CA", value_name = "FILE")]
    panel_ca: Option<PathBuf>,
    /// Allow sending the edge token over plain http:// to a panel that is not
    /// on loopback.
    #[arg(long, env = "PORTWALL_EDGE_INSECURE_HTTP", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    insecure_http: Option<bool>,
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
    zone: Option<String>,
    /// This edge's name in reports (default: the host name).
    #[arg(long, env = "PORTWALL_EDGE_NAME")]
    name: Option<String>,
    #[command(flatten)]
    table: TableArgs,
    /// Seconds the panel may hold an idle poll [default: 30].
    #[arg(long, env = "PORTWALL_EDGE_WAIT")]
    wait: Option<u64>,
    /// Seconds between hit-counter reads and reports (0: never) [default: 60].
    #[arg(long, env = "PORTWALL_EDGE_COUNTERS_EVERY")]
    counters_every: Option<u64>,
    /// Longest pause between retries when the panel is unreachable, in seconds
    /// [default: 15].
    #[arg(long, env = "PORTWALL_EDGE_BACKOFF_MAX")]
    backoff_max: Option<u64>,
    /// Serve Prometheus metrics (/metrics) and health (/healthz) on this
    /// address, e.g. 127.0.0.1:9187 [default: off].
    #[arg(long, env = "PORTWALL_EDGE_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Print the effective configuration (file, environment and flags merged)
    /// as TOML, and exit.
    #[arg(long)]
    print_config: bool,
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

impl TableArgs {
    fn settings(&self) -> EdgeSettings {
        EdgeSettings {
            mode: self.mode,
            table: self.table.clone(),
            state_dir: self.state_dir.clone(),
            ..Default::default()
        }
    }
}

impl RunArgs {
    fn settings(&self) -> EdgeSettings {
        EdgeSettings {
            panel_url: self.panel_url.clone(),
            panel_ca: self.panel_ca.clone(),
            insecure_http: self.insecure_http,
            token: self.token.clone(),
            token_file: self.token_file.clone(),
            zone: self.zone.clone(),
            name: self.name.clone(),
            wait: self.wait,
            counters_every: self.counters_every,
            backoff_max: self.backoff_max,
            metrics_listen: self.metrics_listen,
            ..self.table.settings()
        }
    }
}

/// The table `status` reads: the one the settings name, else the saved one's.
fn table_spec(s: &EdgeSettings) -> Option<TableSpec> {
    s.mode.map(|mode| TableSpec {
        mode,
        name: s
            .table
            .clone()
            .unwrap_or_else(|| edge::compile::TABLE.into()),
    })
}

fn state_dir(s: &EdgeSettings) -> PathBuf {
    s.state_dir
        .clone()
        .unwrap_or_else(|| edge::config::DEFAULT_STATE_DIR.into())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn run(a: EdgeSettings) -> anyhow::Result<()> {
    let (Some(panel_url), Some(zone)) = (&a.panel_url, &a.zone) else {
        anyhow::bail!(
            "no {}: give --panel-url and --zone, PORTWALL_EDGE_PANEL_URL and PORTWALL_EDGE_ZONE, or panel_url and zone in {}",
            if a.panel_url.is_none() { "panel URL" } else { "zone" },
            edge::config::DEFAULT_PATH
        );
    };
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
        mode: a.mode.unwrap_or(Mode::Forward),
        name: a
            .table
            .clone()
            .unwrap_or_else(|| edge::compile::TABLE.into()),
    };
    let mut cfg = AgentConfig::new(panel_url, &token, zone, table, state_dir(&a));
    if let Some(n) = a.name {
        cfg.edge_name = n;
    }
    cfg.tls = tls::ClientTls {
        ca_file: a.panel_ca.clone(),
        insecure_http: a.insecure_http.unwrap_or(false),
    };
    cfg.wait = Duration::from_secs(a.wait.unwrap_or(edge::config::DEFAULT_WAIT));
    cfg.counters_every = Duration::from_secs(
        a.counters_every
            .unwrap_or(edge::config::DEFAULT_COUNTERS_EVERY),
    );
    cfg.backoff_max = Duration::from_secs(
        a.backoff_max
            .unwrap_or(edge::config::DEFAULT_BACKOFF_MAX)
            .max(1),
    );
    // How the kernel is reached, chosen once here: netlink unless the kernel
    // has none, or `PORTWALL_NFT_BACKEND=nft` (the `nft` binary).
    cfg.engine.kernel = match std::env::var("PORTWALL_NFT_BACKEND").as_deref() {
        Ok("nft") => netfilter::Kernel::NftBinary,
        _ => netfilter::Kernel::detect_nftables(),
    };
    let metrics_listen = a.metrics_listen;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        tracing::info!(panel = %cfg.panel_urls.join(","), zone = %cfg.zone, mode = cfg.table.mode.as_str(), table = %cfg.table.name, state_dir = %cfg.state_dir.display(), "starting");
        let handle = agent::start(cfg).await?;
        let (metrics_stop, metrics_stopped) = tokio::sync::watch::channel(false);
        if let Some(addr) = metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen {addr}: cannot listen"))?;
            tracing::info!(%addr, "serving /metrics and /healthz");
            tokio::spawn(edge::metrics::serve(listener, handle.metrics.clone(), metrics_stopped));
        }
        // The saved policy is in force: under systemd (Type=notify) the
        // boot goes on to bring the network up only now.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        shutdown_signal().await;
        let _ = metrics_stop.send(true);
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

fn status(a: StatusArgs, s: EdgeSettings) -> anyhow::Result<u8> {
    let dir = state_dir(&s);
    let st = edge::status::collect(&dir, table_spec(&s))?;
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
        None => println!("agent:     no note in {}", dir.display()),
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
    let given = match &cli.command {
        Cmd::Run(a) => a.settings(),
        Cmd::Status(a) => a.table.settings(),
        Cmd::Generate(g) => {
            let command = <Cli as clap::CommandFactory>::command();
            return match cli_docs::generate(command, "8", g) {
                Ok(files) => {
                    files.iter().for_each(|f| println!("{}", f.display()));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("portwall-edge: {e}");
                    ExitCode::from(1)
                }
            };
        }
    };
    let settings = match EdgeSettings::load(cli.config.as_deref()) {
        Ok(file) => file
            .overlay(EdgeSettings {
                log_format: cli.log_format,
                ..given
            })
            .with_defaults(),
        Err(e) => {
            eprintln!("portwall-edge: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(&cli.command, Cmd::Run(a) if a.print_config) {
        print!("{}", settings.to_toml());
        return ExitCode::SUCCESS;
    }
    edge::config::init_logging(settings.log_format.unwrap_or_default(), "info");
    let r = match cli.command {
        Cmd::Run(_) => run(settings).map(|_| 0),
        Cmd::Status(a) => status(a, settings),
        Cmd::Generate(_) => unreachable!("generate returned above"),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("portwall-edge: {e:#}");
            ExitCode::from(1)
        }
    }
}
