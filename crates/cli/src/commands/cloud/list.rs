//! `portwall cloud list ...`: the customer's IP lists in the panel (named
//! sets of IPv4 and IPv6 addresses and networks).
//!
//!     portwall cloud list create office --file office.txt
//!     portwall cloud list load office - < office.txt
//!     portwall cloud list add bans 198.51.100.7 203.0.113.0/24
//!     portwall cloud list del bans 198.51.100.7
//!     portwall cloud list ls | show office | delete office
//!
//! Lists are named by name (or id). Entries are checked with the model's
//! parsers before anything is sent: a file with [`parse_list_file`] (one
//! address or network per line, `#` comments; the first bad line is named by
//! its number, exit 2), entries on the command line with
//! [`model::parse_net`]. Every change is sent with `If-Match` and the ETag
//! of the read it is based on (or `--if-match`), so a concurrent change is
//! reported (exit 1), never overwritten. `--json` prints the panel's object.

use crate::exit;
use crate::output::{print_json, print_table, right_align, table};
use crate::panel_client::{Method, PanelClient, Reply};
use crate::Global;
use anyhow::Result;
use clap::{Args, Subcommand};
use model::list::parse_list_file;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;

#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// List your IP lists with their entry counts.
    Ls,
    /// Show a list: its entries, and how many kernel ranges they merge into.
    Show {
        /// The list: its name or id.
        #[arg(value_name = "NAME")]
        list: String,
    },
    /// Create a list, empty or with the entries of a file (`--file -`: standard input).
    Create {
        /// Its name: 1-26 lowercase letters, digits, '-' and '_', starting with a letter.
        name: String,
        /// A file of entries: one address or network per line, '#' comments.
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Replace all entries of a list with those of a file (`-`: standard input).
    Load {
        #[command(flatten)]
        target: ListTarget,
        /// One address or network per line, '#' comments; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: String,
    },
    /// Add entries: `add bans 198.51.100.7 203.0.113.0/24`.
    Add {
        #[command(flatten)]
        target: ListTarget,
        /// Addresses or networks (198.51.100.7, 203.0.113.0/24, 2001:db8::/32).
        #[arg(value_name = "ENTRY", required = true)]
        entries: Vec<String>,
    },
    /// Remove entries.
    Del {
        #[command(flatten)]
        target: ListTarget,
        /// Addresses or networks, as they are in the list.
        #[arg(value_name = "ENTRY", required = true)]
        entries: Vec<String>,
    },
    /// Delete a list.
    Delete(ListTarget),
}

/// A list, by name or id, and the ETag a change must be based on.
#[derive(Debug, Clone, Args)]
pub struct ListTarget {
    /// The list: its name or id.
    #[arg(value_name = "NAME")]
    pub list: String,
    /// Change only if the list is still at this revision: an ETag from
    /// `show --json` (`"r12"`, `r12`) or the revision number (12). Without it,
    /// the revision read just before the change.
    #[arg(long, value_name = "ETAG")]
    pub if_match: Option<String>,
}

/// A list as the panel shows it (what the human output needs).
#[derive(Debug, Clone, Deserialize)]
struct ListView {
    id: i64,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    revision: u64,
    #[serde(default)]
    entries: Vec<String>,
    #[serde(default)]
    entry_count: u64,
    #[serde(default)]
    range_count: u64,
    #[serde(default)]
    merged_away: u64,
}

impl ListView {
    fn label(&self) -> String {
        format!("list '{}' (id {})", self.name, self.id)
    }

    /// `6 entries, merged into 3 kernel ranges`.
    fn counts(&self) -> String {
        let mut s = format!(
            "{} {}",
            self.entry_count,
            plural(self.entry_count, "entry", "entries")
        );
        if self.entry_count > 0 {
            s.push_str(&format!(
                ", merged into {} kernel {}",
                self.range_count,
                plural(self.range_count, "range", "ranges")
            ));
        }
        s
    }
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// A list just read: the panel's object, the view of it, and its ETag.
struct ListRead {
    value: Value,
    view: ListView,
    etag: String,
}

impl ListRead {
    fn from_reply(reply: Reply) -> Result<ListRead> {
        let view: ListView = serde_json::from_value(reply.body.clone())
            .map_err(|e| anyhow::anyhow!("the panel's list is not what portwall expects: {e}"))?;
        let etag = reply
            .etag
            .unwrap_or_else(|| format!("\"r{}\"", view.revision));
        Ok(ListRead {
            value: reply.body,
            view,
            etag,
        })
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/lists/{}{rest}", self.view.id)
    }
}

/// The list named by `key`: an id (a list name never starts with a digit),
/// else a name.
fn fetch(client: &PanelClient, key: &str) -> Result<ListRead> {
    let id = match key.parse::<i64>() {
        Ok(id) => Some(id),
        Err(_) => client
            .list("/v1/lists")?
            .iter()
            .find(|v| v["name"].as_str() == Some(key))
            .and_then(|v| v["id"].as_i64()),
    };
    let not_found = || {
        exit::with_code(
            exit::FAILURE,
            format!("no list '{key}' in this account; see `portwall cloud list ls`"),
        )
    };
    let id = id.ok_or_else(not_found)?;
    match client.request(Method::GET, &format!("/v1/lists/{id}"), None, None) {
        Ok(r) => ListRead::from_reply(r),
        Err(e) if e.status() == Some(404) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

/// `--if-match` of a list command ([`super::if_match_value`]).
fn if_match_value(s: &str) -> Result<String> {
    super::if_match_value(s, "list's", "portwall cloud list show NAME --json")
}

/// A change to the list `t` names, sent with `If-Match` (`--if-match`, else
/// the ETag just read). A 412 is reported as a concurrent change.
fn change(
    client: &PanelClient,
    t: &ListTarget,
    method: Method,
    rest: &str,
    body: Option<&Value>,
) -> Result<(ListRead, Reply)> {
    let given = t.if_match.as_deref().map(if_match_value).transpose()?;
    let list = fetch(client, &t.list)?;
    let etag = given.unwrap_or_else(|| list.etag.clone());
    match client.request(method, &list.path(rest), body, Some(&etag)) {
        Ok(r) => Ok((list, r)),
        Err(e) if e.status() == Some(412) => Err(exit::with_code(
            exit::FAILURE,
            format!(
                "{} was changed by someone else since the revision this change is based on (ETag {etag}): nothing was changed (the panel says: {}); look at it again with `portwall cloud list show {}` and retry",
                list.view.label(),
                e.reason(),
                list.view.name
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

/// The entries of a file (`-`: standard input), read by the model's list-file
/// reader; a bad line is a usage error naming the file and the line.
fn read_entries(file: &str) -> Result<Vec<String>> {
    let (what, text) = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| exit::usage(format!("cannot read standard input: {e}")))?;
        ("standard input".to_string(), s)
    } else {
        let s = std::fs::read_to_string(Path::new(file))
            .map_err(|e| exit::usage(format!("cannot read {file}: {e}")))?;
        (file.to_string(), s)
    };
    let nets = parse_list_file(&text)
        .map_err(|e| exit::usage(format!("{what}, {e}; nothing was sent")))?;
    Ok(nets.iter().map(ToString::to_string).collect())
}

/// Entries from the command line, each read by the model's parser.
fn check_entries(entries: &[String]) -> Result<Vec<String>> {
    entries
        .iter()
        .map(|e| {
            model::parse_net(e.trim())
                .map(|n| n.to_string())
                .map_err(|reason| exit::usage(format!("{reason}; nothing was sent")))
        })
        .collect()
}

pub fn run(global: &Global, client: &PanelClient, cmd: &ListCommand) -> Result<u8> {
    match cmd {
        ListCommand::Ls => ls(global, client),
        ListCommand::Show { list } => show(global, client, list),
        ListCommand::Create {
            name,
            file,
            description,
        } => create(global, client, name, file.as_deref(), description),
        ListCommand::Load { target, file } => {
            let entries = read_entries(file)?;
            let (before, reply) = change(
                client,
                target,
                Method::PUT,
                "/entries",
                Some(&json!({ "entries": entries })),
            )?;
            report(global, &reply, |after| {
                format!(
                    "Loaded {} into {} (it held {}): {}, revision {}.",
                    count(entries.len()),
                    after.label(),
                    before.view.entry_count,
                    after.counts(),
                    after.revision
                )
            })
        }
        ListCommand::Add { target, entries } => {
            let entries = check_entries(entries)?;
            let (before, reply) = change(
                client,
                target,
                Method::POST,
                "/entries",
                Some(&json!({ "entries": entries })),
            )?;
            report(global, &reply, |after| {
                format!(
                    "Added {} to {}: {}, revision {}.",
                    count(after.entry_count.saturating_sub(before.view.entry_count) as usize),
                    after.label(),
                    after.counts(),
                    after.revision
                )
            })
        }
        ListCommand::Del { target, entries } => {
            let entries = check_entries(entries)?;
            let (before, reply) = change(
                client,
                target,
                Method::DELETE,
                "/entries",
                Some(&json!({ "entries": entries })),
            )?;
            report(global, &reply, |after| {
                format!(
                    "Removed {} from {}: {}, revision {}.",
                    count(before.view.entry_count.saturating_sub(after.entry_count) as usize),
                    after.label(),
                    after.counts(),
                    after.revision
                )
            })
        }
        ListCommand::Delete(target) => {
            let (list, _) = change(client, target, Method::DELETE, "", None)?;
            if global.json {
                print_json(&json!({ "deleted": list.value }))?;
            } else {
                println!(
                    "Deleted {} ({}).",
                    list.view.label(),
                    count(list.view.entry_count as usize)
                );
            }
            Ok(exit::OK)
        }
    }
}

fn count(n: usize) -> String {
    format!("{n} {}", plural(n as u64, "entry", "entries"))
}

/// Prints the list a change answered with: its JSON, or `say(list)`.
fn report(global: &Global, reply: &Reply, say: impl FnOnce(&ListView) -> String) -> Result<u8> {
    if global.json {
        print_json(&reply.body)?;
        return Ok(exit::OK);
    }
    let after: ListView = serde_json::from_value(reply.body.clone())
        .map_err(|e| anyhow::anyhow!("the panel's list is not what portwall expects: {e}"))?;
    println!("{}", say(&after));
    Ok(exit::OK)
}

fn ls(global: &Global, client: &PanelClient) -> Result<u8> {
    let items = client.list("/v1/lists")?;
    if global.json {
        print_json(&json!({ "items": items, "next_cursor": null }))?;
        return Ok(exit::OK);
    }
    if items.is_empty() {
        println!("No IP lists in this account; create one with `portwall cloud list create NAME`.");
        return Ok(exit::OK);
    }
    let mut t = table(["ID", "Name", "Entries", "Ranges", "Revision", "Description"]);
    for v in &items {
        t.add_row(vec![
            v["id"].to_string(),
            v["name"].as_str().unwrap_or_default().to_string(),
            v["entry_count"].to_string(),
            v["range_count"].to_string(),
            v["revision"].to_string(),
            v["description"].as_str().unwrap_or_default().to_string(),
        ]);
    }
    right_align(&mut t, &[0, 2, 3, 4]);
    print_table(&t);
    Ok(exit::OK)
}

fn show(global: &Global, client: &PanelClient, key: &str) -> Result<u8> {
    let list = fetch(client, key)?;
    if global.json {
        print_json(&list.value)?;
        return Ok(exit::OK);
    }
    let v = &list.view;
    println!(
        "List '{}' (id {}): {}, revision {}",
        v.name,
        v.id,
        v.counts(),
        v.revision
    );
    if v.merged_away > 0 {
        println!(
            "{} merged away (duplicates, networks inside others, adjacent networks joined).",
            count(v.merged_away as usize)
        );
    }
    if !v.description.is_empty() {
        println!("Description: {}", v.description);
    }
    if v.entries.is_empty() {
        println!("No entries.");
        return Ok(exit::OK);
    }
    println!();
    let mut t = table(["Entry", "Family"]);
    for e in &v.entries {
        let family = if e.contains(':') { "IPv6" } else { "IPv4" };
        t.add_row(vec![e.clone(), family.to_string()]);
    }
    print_table(&t);
    Ok(exit::OK)
}

fn create(
    global: &Global,
    client: &PanelClient,
    name: &str,
    file: Option<&str>,
    description: &str,
) -> Result<u8> {
    // Checked before anything is sent, as the panel checks it.
    model::list::ListName::parse(name).map_err(|e| exit::usage(e.to_string()))?;
    let entries = file.map(read_entries).transpose()?.unwrap_or_default();
    let body = json!({ "name": name, "description": description, "entries": entries });
    let list =
        ListRead::from_reply(client.request(Method::POST, "/v1/lists", Some(&body), None)?)?;
    if global.json {
        print_json(&list.value)?;
    } else {
        println!("Created {}: {}.", list.view.label(), list.view.counts());
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_etags_and_revisions() {
        for s in ["\"r12\"", "r12", "12", "W/\"r12\"", " r12 "] {
            assert_eq!(if_match_value(s).unwrap(), "\"r12\"", "{s}");
        }
        assert!(if_match_value("abc").is_err());
    }

    #[test]
    fn command_line_entries_are_checked_by_the_model() {
        assert_eq!(
            check_entries(&["198.51.100.7".into(), "2001:db8::/32".into()]).unwrap(),
            ["198.51.100.7/32", "2001:db8::/32"]
        );
        let e = check_entries(&["10.0.0.1/8".into()]).unwrap_err();
        assert!(e.to_string().contains("did you mean 10.0.0.0/8"), "{e}");
    }
}
