//! `portwall-panel`: the provider's network-firewall control plane.
//!
//! With no arguments (and no /etc/portwall/panel.toml) it serves on
//! 127.0.0.1:8080 with SQLite in `./portwall-data`, and on first start creates
//! an admin token and prints it with the URL. Settings come from the flags,
//! the environment (`PORTWALL_PANEL_*`) and the file (see `panel::config`).
//! `--tls-cert`/`--tls-key` serve HTTPS (reloaded on SIGHUP); plain HTTP is
//! served only on loopback or with `--plain-http-behind-proxy` (see
//! `panel::serve`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use panel::config::{LogFormat, PanelSettings};
use panel::{DatabaseConfig, Panel, PanelConfig, Store};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "portwall-panel",
    version,
    about = "portwall's panel: network firewalls for the provider's customers, REST API and edge sync",
    disable_help_subcommand = true
)]
struct Args {
    /// The configuration file [default: /etc/portwall/panel.toml, if it exists].
    /// Its keys are these flags' names; flags and environment override it.
    #[arg(long, env = "PORTWALL_PANEL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "PORTWALL_PANEL_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory of the SQLite database (when no --database-url is given)
    /// [default: ./portwall-data].
    #[arg(long, env = "PORTWALL_PANEL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// postgres://user@host/db to share one database between replicas, or
    /// sqlite:///path/panel.db.
    #[arg(long, env = "PORTWALL_PANEL_DATABASE_URL")]
    database_url: Option<String>,
    /// Mark the session cookie Secure (implied by --tls-cert and
    /// --plain-http-behind-proxy).
    #[arg(long, env = "PORTWALL_PANEL_SECURE_COOKIES", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    secure_cookies: Option<bool>,
    #[command(flatten)]
    tls: panel::serve::TlsArgs,
    /// Largest request body in bytes [default: 16777216].
    #[arg(long, env = "PORTWALL_PANEL_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Count requests and serve /metrics (Prometheus) [default: true].
    #[arg(long, env = "PORTWALL_PANEL_METRICS", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    metrics: Option<bool>,
    /// Log lines as text or JSON objects [default: text].
    #[arg(long, env = "PORTWALL_PANEL_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Print the effective configuration (file, environment and flags merged)
    /// as TOML, and exit.
    #[arg(long)]
    print_config: bool,
    /// Create another admin token, print it, and exit (for a lost token).
    #[arg(long)]
    new_admin_token: bool,
    #[command(subcommand)]
    command: Option<PanelCommand>,
}

#[derive(Debug, Subcommand)]
enum PanelCommand {
    /// (packaging) man pages or bash/zsh/fish completions from these definitions: `generate man DIR`.
    #[command(hide = true)]
    Generate(cli_docs::GenerateArgs),
}

impl Args {
    /// The file's settings under the environment's and the flags'.
    fn settings(&self) -> Result<PanelSettings, panel::config::ConfigError> {
        let given = PanelSettings {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            tls_cert: self.tls.tls_cert.clone(),
            tls_key: self.tls.tls_key.clone(),
            plain_http_behind_proxy: self.tls.plain_http_behind_proxy.then_some(true),
            secure_cookies: self.secure_cookies,
            max_body_bytes: self.max_body_bytes,
            metrics: self.metrics,
            log_format: self.log_format,
        };
        Ok(PanelSettings::load(self.config.as_deref())?
            .overlay(given)
            .with_defaults())
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(PanelCommand::Generate(g)) = &args.command {
        let command = <Args as clap::CommandFactory>::command();
        for file in cli_docs::generate(command, "8", g)? {
            println!("{}", file.display());
        }
        return Ok(());
    }
    let settings = args.settings().unwrap_or_else(|e| {
        eprintln!("portwall-panel: {e}");
        std::process::exit(2)
    });
    if args.print_config {
        print!("{}", settings.to_toml());
        return Ok(());
    }
    panel::config::init_logging(settings.log_format.unwrap_or_default(), "info,sqlx=warn");
    let listen = settings.listen.context("no listen address")?;
    let db = match &settings.database_url {
        Some(url) => DatabaseConfig::from_url(url).map_err(anyhow::Error::msg)?,
        None => DatabaseConfig::sqlite_in(
            settings
                .data_dir
                .as_deref()
                .unwrap_or(Path::new(panel::config::DEFAULT_DATA_DIR)),
        ),
    };
    let where_ = match &db {
        DatabaseConfig::Sqlite(p) => format!("sqlite {}", p.display()),
        DatabaseConfig::Postgres(_) => "postgresql".to_string(),
    };
    let store = Store::open(&db)
        .await
        .with_context(|| format!("opening the database ({where_})"))?;
    if args.new_admin_token {
        let token = store
            .create_admin_token("admin token (--new-admin-token)")
            .await?;
        println!("new admin token (shown once): {token}");
        return Ok(());
    }
    let tls_args = panel::serve::TlsArgs {
        tls_cert: settings.tls_cert.clone(),
        tls_key: settings.tls_key.clone(),
        plain_http_behind_proxy: settings.plain_http_behind_proxy.unwrap_or(false),
    };
    if tls_args.tls_cert.is_some() != tls_args.tls_key.is_some() {
        anyhow::bail!("tls_cert and tls_key go together: give both (flags, environment or the configuration file) or neither");
    }
    let tls = tls_args.server(listen)?;
    if let Some(t) = &tls {
        t.reload_on_sighup()?;
    }
    let admin = store.ensure_admin_token().await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let config = PanelConfig {
        secure_cookies: settings.secure_cookies.unwrap_or(false) || tls_args.browsers_see_https(),
        max_body_bytes: settings
            .max_body_bytes
            .unwrap_or(panel::state::DEFAULT_MAX_BODY),
        metrics: settings.metrics.unwrap_or(true),
        ..PanelConfig::default()
    };
    let panel = Panel::start_with_tls(listener, store, config, tls).await?;
    {
        let mut out = std::io::stdout().lock();
        if let Some(token) = admin {
            writeln!(out, "admin token (shown once, keep it safe): {token}")?;
        }
        writeln!(
            out,
            "portwall-panel listening on {} ({where_})",
            panel.url()
        )?;
        out.flush()?;
    }
    tracing::info!(url = %panel.url(), "ready");
    panel.run_until(shutdown_signal()).await?;
    Ok(())
}
