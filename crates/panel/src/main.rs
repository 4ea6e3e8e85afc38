//! `portwall-panel`: the provider's network-firewall control plane.
//!
//! With no arguments it serves on 127.0.0.1:8080 with SQLite in
//! `./portwall-data`, and on first start creates an admin token and prints it
//! with the URL.

use anyhow::Context;
use clap::{Parser, Subcommand};
use panel::{DatabaseConfig, Panel, PanelConfig, Store};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "portwall-panel",
    version,
    about = "portwall's panel: network firewalls for the provider's customers, REST API and edge sync",
    disable_help_subcommand = true
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "PORTWALL_PANEL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the SQLite database (when no --database-url is given).
    #[arg(
        long,
        env = "PORTWALL_PANEL_DATA_DIR",
        default_value = "./portwall-data"
    )]
    data_dir: PathBuf,
    /// postgres://user@host/db to share one database between replicas, or
    /// sqlite:///path/panel.db.
    #[arg(long, env = "PORTWALL_PANEL_DATABASE_URL")]
    database_url: Option<String>,
    /// Mark the session cookie Secure (serve the panel over HTTPS).
    #[arg(long, env = "PORTWALL_PANEL_SECURE_COOKIES")]
    secure_cookies: bool,
    /// Largest request body in bytes.
    #[arg(long, env = "PORTWALL_PANEL_MAX_BODY_BYTES", default_value_t = panel::state::DEFAULT_MAX_BODY)]
    max_body_bytes: usize,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(PanelCommand::Generate(g)) = &args.command {
        let command = <Args as clap::CommandFactory>::command();
        for file in cli_docs::generate(command, "8", g)? {
            println!("{}", file.display());
        }
        return Ok(());
    }
    let db = match &args.database_url {
        Some(url) => DatabaseConfig::from_url(url).map_err(anyhow::Error::msg)?,
        None => DatabaseConfig::sqlite_in(&args.data_dir),
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
    let admin = store.ensure_admin_token().await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let config = PanelConfig {
        secure_cookies: args.secure_cookies,
        max_body_bytes: args.max_body_bytes,
        ..PanelConfig::default()
    };
    let panel = Panel::start(listener, store, config).await?;
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
