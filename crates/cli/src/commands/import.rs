//! `portwall import ufw|iptables`: reads another firewall's rules, prints them as
//! portwall rules with what could not be translated and why, and with
//! `--apply` installs them (as `portwall apply` does).
//!
//! The translation is the `import` crate's; this module only finds the input
//! (files, or `iptables-save` / `ip6tables-save` output, which only reads) and
//! renders the result.

use crate::exit;
use crate::output::{print_json, print_table, table};
use crate::Global;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use import::{Family, Import, NoteKind};
use model::list::{Deadline, ListEntry, ListName};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub source: ImportSource,
}

#[derive(Debug, Subcommand)]
pub enum ImportSource {
    /// UFW's rules: /etc/ufw/user.rules and user6.rules (with /etc/default/ufw and
    /// /etc/ufw/ufw.conf), or saved `ufw status [verbose]` output.
    Ufw(UfwArgs),
    /// iptables rules: the output of `iptables-save` and `ip6tables-save`.
    Iptables(IptablesArgs),
}

#[derive(Debug, Args)]
pub struct UfwArgs {
    /// A user.rules or user6.rules file (repeatable) instead of UFW's own.
    #[arg(long, value_name = "FILE", conflicts_with = "status_file")]
    pub file: Vec<PathBuf>,
    /// The default policies (UFW's /etc/default/ufw format).
    #[arg(long, value_name = "FILE", conflicts_with = "status_file")]
    pub defaults_file: Option<PathBuf>,
    /// Saved output of `ufw status` or `ufw status verbose`.
    #[arg(long, value_name = "FILE")]
    pub status_file: Option<PathBuf>,
    #[command(flatten)]
    pub apply: ApplyFlags,
}

#[derive(Debug, Args)]
pub struct IptablesArgs {
    /// Saved `iptables-save` / `ip6tables-save` output (repeatable) instead of
    /// running both.
    #[arg(long, value_name = "FILE")]
    pub file: Vec<PathBuf>,
    /// Saved `ipset save` output, for the ipsets the rules match (`-m set`),
    /// instead of running `ipset save`.
    #[arg(long, value_name = "FILE")]
    pub ipset_file: Option<PathBuf>,
    #[command(flatten)]
    pub apply: ApplyFlags,
}

#[derive(Debug, Args)]
pub struct ApplyFlags {
    /// Install the imported rules: they become the saved rules and are applied.
    #[arg(long)]
    pub apply: bool,
    /// With --apply: install even though some lines could not be translated.
    #[arg(long, requires = "apply")]
    pub force: bool,
}

const UFW_DIR: &str = "/etc/ufw";

/// A file's name and text.
type Named = (String, String);

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_if_exists(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The entries of an imported list, read from `ipset save` output.
#[derive(Debug, serde::Serialize)]
struct ListEntries {
    list: ListName,
    ipset: String,
    entries: Vec<String>,
    #[serde(skip)]
    parsed: Vec<ListEntry>,
}

/// The members of the ipsets `imported` matches, from `ipset save` output
/// (`--ipset-file`, or `ipset save` run now: it only reads). Only sets of
/// addresses (`hash:ip`, `hash:net`) can be lists; a member's `timeout`
/// becomes a temporary entry.
fn ipset_lists(imported: &Import, ipset_file: Option<&Path>) -> Result<Vec<ListEntries>> {
    if imported.lists.is_empty() {
        return Ok(Vec::new());
    }
    let text = match ipset_file {
        Some(f) => read(f)?,
        None => save_output_of("ipset", &["save"])?,
    };
    let now = host::lists::now();
    let mut out = Vec::new();
    for l in &imported.lists {
        let create = text
            .lines()
            .find(|line| {
                line.split_whitespace().nth(1) == Some(l.ipset.as_str())
                    && line.starts_with("create ")
            })
            .ok_or_else(|| {
                exit::usage(format!(
                    "the rules match ipset '{}', which 'ipset save' does not list",
                    l.ipset
                ))
            })?;
        let kind = create.split_whitespace().nth(2).unwrap_or_default();
        if !matches!(kind, "hash:ip" | "hash:net") {
            return Err(exit::usage(format!(
                "ipset '{}' is of type {kind}: only sets of addresses (hash:ip, hash:net) can become lists",
                l.ipset
            )));
        }
        let prefix = format!("add {} ", l.ipset);
        let mut parsed = Vec::new();
        for line in text.lines().filter_map(|x| x.strip_prefix(&prefix)) {
            let mut words = line.split_whitespace();
            let member = words.next().unwrap_or_default();
            let net = model::parse_net(member)
                .map_err(|e| exit::usage(format!("ipset '{}': {e}", l.ipset)))?;
            let mut until = None;
            while let Some(w) = words.next() {
                if w == "timeout" {
                    let secs: u64 = words.next().and_then(|t| t.parse().ok()).unwrap_or(0);
                    if secs > 0 {
                        until = Some(Deadline::after(now, std::time::Duration::from_secs(secs)));
                    }
                }
            }
            parsed.push(ListEntry { net, until });
        }
        out.push(ListEntries {
            list: l.list.clone(),
            ipset: l.ipset.clone(),
            entries: parsed.iter().map(ToString::to_string).collect(),
            parsed,
        });
    }
    Ok(out)
}

/// `portwall import ...`.
pub fn run(global: &Global, args: &ImportArgs) -> Result<u8> {
    let (from, imported, flags, lists) = match &args.source {
        ImportSource::Ufw(a) => {
            let (from, imp) = import_ufw(a)?;
            (from, imp, &a.apply, Vec::new())
        }
        ImportSource::Iptables(a) => {
            let (from, imp) = import_iptables(a)?;
            let lists = ipset_lists(&imp, a.ipset_file.as_deref())?;
            (from, imp, &a.apply, lists)
        }
    };
    if !global.json {
        render(&from, &imported);
        for l in &lists {
            println!(
                "List @{}: ipset '{}', {} entries",
                l.list,
                l.ipset,
                l.entries.len()
            );
        }
    }
    if !flags.apply {
        if global.json {
            print_json(&serde_json::json!({ "from": from, "import": imported, "lists": lists }))?;
        }
        return Ok(exit::OK);
    }
    if !imported.untranslated.is_empty() && !flags.force {
        if global.json {
            print_json(&serde_json::json!({ "from": from, "import": imported, "applied": null }))?;
        }
        return Err(exit::with_code(
            exit::FAILURE,
            format!(
                "{} line(s) could not be translated (listed above): nothing was applied. Review them, then add --force to apply the rest.",
                imported.untranslated.len()
            ),
        ));
    }
    // The lists first: the rules that name them need them.
    {
        let st = host::ConfigDir::lock(&global.config_dir)?;
        for l in &lists {
            st.write_list(&l.list, &l.parsed)?;
        }
    }
    if global.json {
        // One JSON document: what was imported and what applying it did.
        let applied =
            crate::commands::firewall::apply_ruleset_quietly(global, imported.ruleset.clone())?;
        print_json(
            &serde_json::json!({ "from": from, "import": imported, "lists": lists, "applied": applied }),
        )?;
        return Ok(exit::OK);
    }
    println!();
    crate::commands::firewall::apply_ruleset(global, imported.ruleset)
}

fn import_ufw(a: &UfwArgs) -> Result<(Vec<String>, Import)> {
    if let Some(f) = &a.status_file {
        let text = read(f)?;
        return Ok((
            vec![f.display().to_string()],
            import::ufw::from_status(&text),
        ));
    }
    let dir = Path::new(UFW_DIR);
    let rule_files: Vec<PathBuf> = if a.file.is_empty() {
        vec![dir.join("user.rules"), dir.join("user6.rules")]
    } else {
        a.file.clone()
    };
    let mut texts = Vec::new();
    for f in &rule_files {
        match read_if_exists(f)? {
            Some(t) => texts.push((f.display().to_string(), t)),
            None if a.file.is_empty() => {}
            None => return Err(exit::usage(format!("{}: no such file", f.display()))),
        }
    }
    if texts.is_empty() {
        return Err(exit::usage(format!(
            "no UFW rules found ({} and user6.rules do not exist): is UFW installed? --file or --status-file name saved rules",
            dir.join("user.rules").display()
        )));
    }
    let defaults_path = match (&a.defaults_file, a.file.is_empty()) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => Some(PathBuf::from("/etc/default/ufw")),
        (None, false) => None,
    };
    let defaults = match &defaults_path {
        Some(p) if a.defaults_file.is_some() => Some((p.display().to_string(), read(p)?)),
        Some(p) => read_if_exists(p)?.map(|t| (p.display().to_string(), t)),
        None => None,
    };
    let conf = if a.file.is_empty() {
        read_if_exists(&dir.join("ufw.conf"))?
            .map(|t| (dir.join("ufw.conf").display().to_string(), t))
    } else {
        None
    };
    // user6.rules holds the IPv6 rules; either file may come first.
    let (v6, v4): (Vec<&Named>, Vec<&Named>) =
        texts.iter().partition(|(n, _)| n.ends_with("user6.rules"));
    if v4.len() > 1 || v6.len() > 1 {
        return Err(exit::usage(
            "give at most one user.rules and one user6.rules",
        ));
    }
    let files = import::ufw::Files {
        user_rules: pick(&v4),
        user6_rules: pick(&v6),
        default_file: defaults.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
        ufw_conf: conf.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
    };
    let from = texts.iter().map(|(n, _)| n.clone()).collect();
    Ok((from, import::ufw::from_files(&files)))
}

fn pick<'a>(v: &[&'a Named]) -> Option<(&'a str, &'a str)> {
    v.first().map(|(n, t)| (n.as_str(), t.as_str()))
}

fn save_output(tool: &str) -> Result<String> {
    save_output_of(tool, &[])
}

fn save_output_of(tool: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {tool}: is it installed?"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn import_iptables(a: &IptablesArgs) -> Result<(Vec<String>, Import)> {
    let inputs: Vec<(String, String, Option<Family>)> = if a.file.is_empty() {
        vec![
            (
                "iptables-save".into(),
                save_output("iptables-save")?,
                Some(Family::V4),
            ),
            (
                "ip6tables-save".into(),
                save_output("ip6tables-save")?,
                Some(Family::V6),
            ),
        ]
    } else {
        a.file
            .iter()
            .map(|f| Ok((f.display().to_string(), read(f)?, None)))
            .collect::<Result<_>>()?
    };
    let refs: Vec<(&str, &str, Option<Family>)> = inputs
        .iter()
        .map(|(n, t, f)| (n.as_str(), t.as_str(), *f))
        .collect();
    let from = inputs.iter().map(|(n, _, _)| n.clone()).collect();
    Ok((from, import::iptables::from_saves(&refs)))
}

fn short(source: &str) -> &str {
    source.rsplit('/').next().unwrap_or(source)
}

fn render(from: &[String], imp: &Import) {
    let rs = &imp.ruleset;
    println!(
        "Imported {} rule(s) from {}",
        rs.rules.len(),
        from.join(", ")
    );
    println!(
        "Default: {} (incoming), {} (outgoing), {} (routed)",
        rs.defaults.incoming.as_str(),
        rs.defaults.outgoing.as_str(),
        rs.defaults.routed.as_str()
    );
    println!("Logging: {}", rs.logging.as_str());
    println!();
    if rs.rules.is_empty() {
        println!("No rules.");
    } else {
        let mut t = table(["#", "Rule", "From"]);
        for (i, (r, o)) in rs.rules.iter().zip(&imp.origins).enumerate() {
            let origin = o
                .iter()
                .map(|o| format!("{}:{}", short(&o.source), o.line_no))
                .collect::<Vec<_>>()
                .join(", ");
            t.add_row(vec![format!("[{}]", i + 1), r.to_string(), origin]);
        }
        print_table(&t);
    }
    if !imp.untranslated.is_empty() {
        println!();
        println!("Not translated ({}):", imp.untranslated.len());
        for u in &imp.untranslated {
            println!("  {}:{}  {}", short(&u.source), u.line_no, u.text);
            println!("      why: {}", u.reason);
        }
    }
    if !imp.notes.is_empty() {
        println!();
        println!("Notes:");
        for n in &imp.notes {
            let kind = match n.kind {
                NoteKind::Builtin => "built-in",
                NoteKind::Differs => "differs",
                NoteKind::Assumed => "assumed",
                NoteKind::Info => "info",
            };
            let lines = if n.lines.is_empty() {
                String::new()
            } else {
                format!(
                    " {}:{}",
                    short(&n.source),
                    n.lines
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            };
            println!("  [{kind}]{lines} {}", n.message);
        }
    }
}
