//! `portwall app list | info NAME`: UFW's application profiles, as `ufw app`
//! shows them, read from /etc/ufw/applications.d over Debian's built-in set
//! (`model::profiles`); rules name them as `allow OpenSSH`.

use crate::exit;
use crate::output::{print_json, print_table, table};
use crate::Global;
use anyhow::Result;
use clap::{Args, Subcommand};
use model::profiles::ProfilePorts;

#[derive(Debug, Args)]
pub struct AppArgs {
    #[command(subcommand)]
    pub command: AppCommand,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// The profiles rules may name (`allow OpenSSH`).
    List,
    /// The ports of one profile: `app info 'WWW Full'`.
    Info {
        /// The profile's name (case matters, as in UFW).
        name: String,
    },
}

/// A profile's ports as rule text: `80,443/tcp`, `53` (TCP and UDP).
fn ports_text(ports: &ProfilePorts) -> Vec<String> {
    ports
        .iter()
        .map(|(p, ranges)| {
            let list: Vec<String> = ranges.iter().map(|r| r.to_string()).collect();
            match p {
                model::Protocol::Any => list.join(","),
                p => format!("{}/{}", list.join(","), p.as_str()),
            }
        })
        .collect()
}

pub fn run(global: &Global, args: &AppArgs) -> Result<u8> {
    let services = host::config_dir::services();
    match &args.command {
        AppCommand::List => {
            let profiles = services.profiles();
            if global.json {
                let list: Vec<_> = profiles
                    .iter()
                    .map(|(n, p)| serde_json::json!({ "name": n, "ports": ports_text(p) }))
                    .collect();
                print_json(&serde_json::json!({ "profiles": list }))?;
            } else {
                let mut t = table(["PROFILE", "PORTS"]);
                for (n, p) in profiles {
                    t.add_row(vec![n.clone(), ports_text(p).join(" ")]);
                }
                print_table(&t);
            }
            Ok(exit::OK)
        }
        AppCommand::Info { name } => {
            let Some(p) = services.profile(name) else {
                return Err(exit::usage(format!(
                    "'{name}' is not an application profile (see 'portwall app list')"
                )));
            };
            if global.json {
                print_json(&serde_json::json!({ "name": name, "ports": ports_text(p) }))?;
            } else {
                println!("Profile: {name}\nPorts:");
                for line in ports_text(p) {
                    println!("  {line}");
                }
            }
            Ok(exit::OK)
        }
    }
}
