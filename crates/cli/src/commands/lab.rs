//! `portwall lab`: the command-line side of crate `lab` (a small provider in
//! network namespaces, see its docs): flags, progress, and the output of
//! `up`, `down` and `status`. The panel's API goes through the CLI's one
//! panel client ([`crate::panel_client`]).

use crate::panel_client::{Method, PanelClient};
use crate::{exit, output, Global};
use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
    /// Where the lab keeps its state, logs, certificates, panel database and edge state.
    #[arg(
        long,
        env = "PORTWALL_LAB_DIR",
        default_value = "/run/portwall-lab",
        global = true
    )]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab: namespaces, panel (HTTPS), edge, servers, customer.
    Up(UpArgs),
    /// Remove everything the lab created.
    Down,
    /// What the lab runs, and whether it is healthy.
    Status,
    /// Run a command on a lab host: `lab exec vps1 -- portwall audit`.
    Exec(ExecArgs),
    /// The lab's service process (started by `up`).
    #[command(hide = true)]
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The panel's port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub panel_port: u16,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// internet, edge, vps1, vps2 or dedi1.
    pub host: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long)]
    pub panel_port: u16,
}

pub fn run(g: &Global, a: &LabArgs) -> Result<u8> {
    match &a.command {
        LabCommand::Up(u) => up(g, &a.dir, u),
        LabCommand::Down => down(g, &a.dir),
        LabCommand::Status => status(g, &a.dir),
        LabCommand::Exec(e) => Err(lab_error(lab::exec(&a.dir, &e.host, &e.command))),
        LabCommand::Serve(s) => {
            lab::serve::serve(&a.dir, s.panel_port).map_err(lab_error)?;
            Ok(exit::OK)
        }
    }
}

fn lab_error(e: lab::LabError) -> anyhow::Error {
    let code = if e.is_usage() {
        exit::USAGE
    } else {
        exit::FAILURE
    };
    exit::ExitError {
        code,
        message: e.to_string(),
    }
    .into()
}

impl lab::PanelApi for PanelClient {
    fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.request(Method::POST, path, Some(body), None)
            .map(|r| r.body)
            .map_err(|e| e.to_string())
    }
}

fn connect(url: &str, token: &str, ca: &Path) -> Result<Box<dyn lab::PanelApi>, String> {
    let tls = tls::ClientTls {
        ca_file: Some(ca.to_path_buf()),
        insecure_http: false,
    };
    PanelClient::new(url, token, &tls)
        .map(|c| Box::new(c) as Box<dyn lab::PanelApi>)
        .map_err(|e| format!("{e:#}"))
}

fn up(g: &Global, dir: &Path, a: &UpArgs) -> Result<u8> {
    let started = Instant::now();
    let show = !g.json && std::io::stderr().is_terminal();
    let progress = |what: &str| {
        if show {
            eprintln!("  [{:>5.1}s] {what}", started.elapsed().as_secs_f64());
        }
    };
    let st = lab::up(dir, a.panel_port, &connect, &progress).map_err(lab_error)?;
    print_up(g, dir, &st)?;
    Ok(exit::OK)
}

fn print_up(g: &Global, dir: &Path, st: &lab::LabState) -> Result<()> {
    if g.json {
        let mut v = serde_json::to_value(st)?;
        v["login"] = json!({"login": lab::LOGIN, "password": lab::PASSWORD});
        v["dir"] = json!(dir);
        return output::print_json(&v);
    }
    let url = st.panel_url.as_deref().unwrap_or("-");
    let ca = st
        .panel_ca
        .as_ref()
        .map_or("-".into(), |p| p.display().to_string());
    println!("The lab is up ({}).", dir.display());
    println!();
    println!(
        "  panel        {url}   (admin token: {})",
        st.admin_token.as_deref().unwrap_or("-")
    );
    println!("  panel CA     {ca}");
    println!("  web login    {} / {}", lab::LOGIN, lab::PASSWORD);
    println!(
        "  API token    {}   (the customer's, write)",
        st.customer_token.as_deref().unwrap_or("-")
    );
    println!();
    println!("Inside the lab (set by `portwall lab exec`), the panel is at its lab address:");
    for (k, v) in st.panel_env() {
        println!("  {k}={v}");
    }
    println!();
    let mut t = output::table(["HOST", "TYPE", "IPV4", "IPV6", "SERVER ID"]);
    for h in &lab::HOSTS {
        let id = st
            .servers
            .iter()
            .find(|s| s.name == h.name)
            .map_or("-".into(), |s| s.id.to_string());
        let kind = match h.role {
            lab::Role::Server(k) => k,
            lab::Role::Edge => "edge (router)",
            lab::Role::Internet => "client",
        };
        t.add_row(vec![
            h.name.to_string(),
            kind.to_string(),
            h.v4.to_string(),
            h.v6.to_string(),
            id,
        ]);
    }
    output::print_table(&t);
    let tok = st.customer_token.as_deref().unwrap_or("TOKEN");
    println!();
    println!("Try:");
    println!("  portwall lab exec internet -- portwall probe 203.0.113.11 22,80");
    println!("  portwall lab exec vps1 -- portwall allow 80/tcp");
    println!(
        "  PORTWALL_PANEL_URL={url} PORTWALL_PANEL_CA={ca} PORTWALL_TOKEN={tok} \\\n      portwall cloud firewall create web"
    );
    println!("  portwall cloud firewall add-rule web --preset ssh      (same variables)");
    println!("  portwall cloud firewall assign web vps1 && portwall cloud firewall enable web");
    println!("  portwall lab exec vps1 -- portwall audit      (both layers, side by side)");
    println!(
        "  portwall lab exec edge -- portwall-edge status --mode forward --state-dir {}",
        dir.join("edge").display()
    );
    println!("  portwall lab status        portwall lab down");
    Ok(())
}

fn down(g: &Global, dir: &Path) -> Result<u8> {
    let r = lab::down(dir).map_err(lab_error)?;
    if g.json {
        output::print_json(&r)?;
    } else if r.removed {
        println!(
            "The lab is down: processes stopped, namespaces and {} removed.",
            dir.display()
        );
    } else {
        println!("No lab was up.");
    }
    if !r.left.is_empty() {
        anyhow::bail!("could not remove {}", r.left.join(", "));
    }
    Ok(exit::OK)
}

fn status(g: &Global, dir: &Path) -> Result<u8> {
    let Some(s) = lab::status(dir).map_err(lab_error)? else {
        if g.json {
            output::print_json(&json!({"up": false}))?;
        } else {
            println!(
                "No lab is up (nothing in {}). `portwall lab up` builds one.",
                dir.display()
            );
        }
        return Ok(exit::FAILURE);
    };
    let healthy = s.healthy();
    let st = &s.state;
    if g.json {
        output::print_json(&json!({
            "up": st.complete,
            "healthy": healthy,
            "panel_url": st.panel_url,
            "lab_panel_url": st.lab_panel_url,
            "panel_ca": st.panel_ca,
            // The lab's own throwaway credentials, for scripts (scripts/lab).
            "admin_token": st.admin_token,
            "customer_token": st.customer_token,
            "components": s.components,
            "servers": st.servers,
        }))?;
    } else {
        println!(
            "The lab is {} ({}).",
            if !st.complete {
                "half built"
            } else if healthy {
                "up"
            } else {
                "up but unhealthy"
            },
            dir.display()
        );
        let mut t = output::table(["COMPONENT", "STATE", "DETAIL"]);
        for r in &s.components {
            t.add_row(vec![r.name.clone(), r.state.clone(), r.detail.clone()]);
        }
        output::print_table(&t);
    }
    Ok(if healthy { exit::OK } else { exit::FAILURE })
}
