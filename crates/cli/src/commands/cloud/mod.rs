//! `portwall cloud`: the provider's network firewall through the panel's REST
//! API, from the command line.
//!
//!     portwall cloud firewall create web
//!     portwall cloud firewall add-rule web tcp 443 --from 203.0.113.0/24 --description https
//!     portwall cloud firewall add-rule web --preset ssh
//!     portwall cloud firewall enable web
//!     portwall cloud firewall assign web vps1
//!     portwall cloud firewall status web
//!
//! Firewalls are named by id or by name, servers too. Every change is sent with
//! `If-Match` and the ETag of the read it is based on (or `--if-match`), so a
//! concurrent change is reported (exit 1), never overwritten. A rule is checked
//! with the model's types before anything is sent (exit 2 when it is bad). An
//! error of the panel is shown with the field and the reason it gives (exit 1).
//! `--json` prints the panel's object.
//!
//! All HTTP goes through [`crate::panel_client`].

mod firewall;
pub mod list;
pub mod rule;
mod server;

use crate::panel_client::PanelArgs;
use crate::Global;
use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct CloudArgs {
    #[command(flatten)]
    pub panel: PanelArgs,
    #[command(subcommand)]
    pub command: CloudCommand,
}

#[derive(Debug, Subcommand)]
pub enum CloudCommand {
    /// Network firewalls: create, list, show, rules, enable/disable, assign, status.
    #[command(subcommand)]
    Firewall(FirewallCommand),
    /// Your servers, as the panel knows them.
    #[command(subcommand)]
    Server(ServerCommand),
    /// IP lists: named sets of addresses and networks (ls, show, create, load, add, del, delete).
    #[command(subcommand)]
    List(list::ListCommand),
}

/// A firewall, by id or name, and the ETag a change must be based on.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The firewall: its id or its name.
    #[arg(value_name = "FIREWALL")]
    pub firewall: String,
    /// Change only if the firewall is still at this revision: an ETag from
    /// `show --json` (`"r12"`, `r12`) or the revision number (12). Without it,
    /// the revision read just before the change.
    #[arg(long, value_name = "ETAG")]
    pub if_match: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum FirewallCommand {
    /// Create a firewall (inactive until enabled).
    Create {
        /// Its name (unique in your account).
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List your firewalls.
    List,
    /// Show a firewall: its rules, servers and selectors.
    Show {
        /// The firewall: its id or its name.
        #[arg(value_name = "FIREWALL")]
        firewall: String,
    },
    /// Add a rule: `add-rule web tcp 443 --from 203.0.113.0/24`, `add-rule web --preset ssh`.
    AddRule(AddRuleArgs),
    /// Delete a rule by its id (see `show`).
    DeleteRule {
        #[command(flatten)]
        target: Target,
        /// The rule's id.
        rule: i64,
    },
    /// Enable: from now on every inbound packet to its servers is dropped unless a rule accepts it.
    Enable(Target),
    /// Disable: its rules stop applying.
    Disable(Target),
    /// Assign to servers (ids or names) or to a label selector (`--selector env=prod`).
    Assign(AssignArgs),
    /// Unassign servers (ids or names) or remove a selector.
    Unassign(AssignArgs),
    /// Per server: applied, pending, or failed with the edge's reason.
    Status {
        /// The firewall: its id or its name.
        #[arg(value_name = "FIREWALL")]
        firewall: String,
    },
    /// Delete a firewall.
    Delete(Target),
}

#[derive(Debug, Args)]
pub struct AddRuleArgs {
    #[command(flatten)]
    pub target: Target,
    /// tcp, udp, icmp or any (omit with --preset).
    pub protocol: Option<String>,
    /// Port, range or service name: 443, 8000-8100, https (none for icmp).
    pub port: Option<String>,
    /// A preset instead of protocol and port: ssh, http, https, "dns (udp)", ... (see /v1/presets).
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// A source address or network (repeat, or comma-separate); none: from anywhere.
    #[arg(long = "from", value_name = "ADDRESS", value_delimiter = ',')]
    pub from: Vec<String>,
    #[arg(long, default_value = "")]
    pub description: String,
    /// Add the rule disabled.
    #[arg(long)]
    pub disabled: bool,
}

#[derive(Debug, Args)]
pub struct AssignArgs {
    #[command(flatten)]
    pub target: Target,
    /// Servers: ids or names.
    #[arg(value_name = "SERVER")]
    pub servers: Vec<String>,
    /// A label selector, `key=value[,key=value]`: stored, so servers labelled later match too.
    #[arg(long, value_name = "SELECTOR")]
    pub selector: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// List your servers with their addresses, zone and labels.
    List,
}

/// `portwall cloud`.
pub fn run(global: &Global, args: &CloudArgs) -> Result<u8> {
    let client = args.panel.client()?;
    match &args.command {
        CloudCommand::Firewall(cmd) => firewall::run(global, &client, cmd),
        CloudCommand::Server(ServerCommand::List) => server::list(global, &client),
        CloudCommand::List(cmd) => list::run(global, &client, cmd),
    }
}

/// An `If-Match` value from `--if-match`: `"r12"`, `r12`, `W/"r12"` or `12`;
/// the error names `whose` revision it should be and the command (`show`)
/// that prints it.
fn if_match_value(s: &str, whose: &str, show: &str) -> Result<String> {
    let t = s.trim().trim_start_matches("W/").trim_matches('"');
    match t.strip_prefix('r').unwrap_or(t).parse::<u64>() {
        Ok(n) => Ok(format!("\"r{n}\"")),
        Err(_) => Err(crate::exit::usage(format!(
            "--if-match '{s}' is not an ETag: give the {whose} revision (12) or its ETag (\"r12\") from `{show}`"
        ))),
    }
}
