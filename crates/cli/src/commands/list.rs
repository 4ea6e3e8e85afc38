//! `portwall list ...`: named address lists that rules share (`deny from
//! @blocklist`, `allow 22/tcp from @office`).
//!
//! A list lives in its own file ([`host::lists`]). Changing one writes the
//! file, then sends the kernel only the elements that differ, in one
//! transaction ([`host::transaction::apply`] over the ruleset with the old
//! and the new list): no moment without the list, and the counters of the
//! other elements keep counting. If the kernel refuses, the old file is put
//! back: nothing is half-applied.

use crate::exit;
use crate::output::{print_json, print_table, right_align, table};
use crate::Global;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use host::ConfigDir;
use model::list::{parse_list_file, Deadline, Interval, ListEntry, ListName, Segments};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(subcommand)]
    pub command: ListCommand,
}

#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// Create an empty list: `list create office`.
    Create {
        /// 1-26 characters: lowercase letters, digits, '-' and '_', starting with a letter.
        name: String,
    },
    /// Add addresses or networks, IPv4 and IPv6 (temporary ones with --for 1h).
    Add {
        name: String,
        /// Addresses or networks: 203.0.113.0/24 2001:db8::/32 192.0.2.9
        #[arg(required = true, value_name = "ENTRY")]
        entries: Vec<String>,
    },
    /// Remove entries (an entry that is not in the list is reported, not an error).
    Del {
        name: String,
        #[arg(required = true, value_name = "ENTRY")]
        entries: Vec<String>,
    },
    /// Replace the whole list from a file (- for stdin): one address or CIDR per line, '#' comments.
    Load {
        name: String,
        /// The file, or - for standard input.
        file: PathBuf,
    },
    /// A list's entries, how they merge into kernel ranges, and what they matched.
    Show { name: String },
    /// Every list, with its size and the rules that use it.
    Ls,
    /// Delete a list (refused while a rule uses it).
    Delete { name: String },
}

/// The most a temporary rule or entry may last.
pub const LIFETIME_MAX: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Time left, in the two largest units (`29m 49s`, `2h 5m`, `3d 4h`).
pub fn left_text(secs: u64) -> String {
    let units = [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)];
    for (i, (unit, per)) in units.iter().enumerate() {
        if secs >= *per || *unit == "s" {
            let mut out = format!("{}{unit}", secs / per);
            if let Some((next, nper)) = units.get(i + 1) {
                let rest = (secs % per) / nper;
                if rest > 0 {
                    out.push_str(&format!(" {rest}{next}"));
                }
            }
            return out;
        }
    }
    unreachable!("the unit of seconds matches")
}

/// `--for DURATION` as a deadline from now, if given.
pub fn deadline(global: &Global) -> Result<Option<Deadline>> {
    let Some(text) = &global.lifetime else {
        return Ok(None);
    };
    let d = model::list::parse_lifetime(text, LIFETIME_MAX)
        .map_err(|e| exit::usage(format!("--for: {e}")))?;
    Ok(Some(Deadline::after(host::lists::now(), d)))
}

fn list_name(text: &str) -> Result<ListName> {
    // `@office` is read as `office`: the name as a rule writes it.
    ListName::parse(text.strip_prefix('@').unwrap_or(text)).map_err(|e| exit::usage(e.to_string()))
}

fn parse_entries(args: &[String], until: Option<Deadline>) -> Result<Vec<ListEntry>> {
    args.iter()
        .map(|a| {
            model::parse_net(a)
                .map(|net| ListEntry { net, until })
                .map_err(|e| exit::usage(format!("entry '{a}': {e}")))
        })
        .collect()
}

/// What a list command did.
#[derive(Debug, Serialize)]
struct Changed {
    list: ListName,
    added: usize,
    removed: usize,
    /// Entries asked to be removed that were not in the list.
    not_found: Vec<String>,
    entries: usize,
    ranges: usize,
    /// Whether the kernel's sets changed (a rule in force uses the list).
    applied: Option<netfilter::ApplyReport>,
}

pub fn run(global: &Global, args: &ListArgs) -> Result<u8> {
    if global.lifetime.is_some() && !matches!(args.command, ListCommand::Add { .. }) {
        return Err(exit::usage(
            "--for applies to 'list add' (and to rules: allow, deny, reject, limit)",
        ));
    }
    match &args.command {
        ListCommand::Create { name } => create(global, &list_name(name)?),
        ListCommand::Add { name, entries } => {
            let until = deadline(global)?;
            let new = parse_entries(entries, until)?;
            change(global, &list_name(name)?, |old| {
                let mut entries = old.to_vec();
                let mut added = 0;
                for e in new {
                    match entries.iter().position(|x| x.net == e.net) {
                        // A temporary entry over a permanent one leaves it permanent.
                        Some(i) if entries[i].until.is_none() => {}
                        Some(i) => {
                            if entries[i].until != e.until {
                                entries[i].until = e.until;
                                added += 1;
                            }
                        }
                        None => {
                            entries.push(e);
                            added += 1;
                        }
                    }
                }
                Ok((entries, added, 0, Vec::new()))
            })
        }
        ListCommand::Del { name, entries } => {
            let gone = parse_entries(entries, None)?;
            change(global, &list_name(name)?, |old| {
                let nets: HashSet<_> = gone.iter().map(|e| e.net).collect();
                let kept: Vec<ListEntry> = old
                    .iter()
                    .filter(|e| !nets.contains(&e.net))
                    .copied()
                    .collect();
                let present: HashSet<_> = old.iter().map(|e| e.net).collect();
                let not_found = gone
                    .iter()
                    .filter(|e| !present.contains(&e.net))
                    .map(|e| e.to_string())
                    .collect();
                let removed = old.len() - kept.len();
                Ok((kept, 0, removed, not_found))
            })
        }
        ListCommand::Load { name, file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
            } else {
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let nets = tracing::debug_span!("parse file")
                .in_scope(|| parse_list_file(&text))
                .map_err(|e| exit::usage(format!("{}: {e}", file.display())))?;
            change(global, &list_name(name)?, |old| {
                // Sorted and merged side by side: hashing a million networks
                // twice took half a second.
                let mut nets = nets;
                nets.sort_unstable();
                nets.dedup();
                let mut before: Vec<_> = old.iter().map(|e| e.net).collect();
                before.sort_unstable();
                before.dedup();
                let (added, removed) = sorted_differences(&before, &nets);
                let entries = nets
                    .into_iter()
                    .map(|net| ListEntry { net, until: None })
                    .collect();
                Ok((entries, added, removed, Vec::new()))
            })
        }
        ListCommand::Show { name } => show(global, &list_name(name)?),
        ListCommand::Ls => ls(global),
        ListCommand::Delete { name } => delete(global, &list_name(name)?),
    }
}

/// How many of `new` are not in `old`, and how many of `old` not in `new`
/// (both sorted, without repeats).
fn sorted_differences<T: Ord>(old: &[T], new: &[T]) -> (usize, usize) {
    let (mut i, mut j, mut added, mut removed) = (0, 0, 0, 0);
    while i < old.len() && j < new.len() {
        match old[i].cmp(&new[j]) {
            std::cmp::Ordering::Less => {
                removed += 1;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                added += 1;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    (added + new.len() - j, removed + old.len() - i)
}

fn create(global: &Global, name: &ListName) -> Result<u8> {
    let st = ConfigDir::lock(&global.config_dir)?;
    if st.list_exists(name) {
        return Err(exit::usage(format!("list '@{name}' exists already")));
    }
    st.write_list(name, &[])?;
    if global.json {
        print_json(&serde_json::json!({ "list": name, "created": true }))?;
    } else {
        println!(
            "List @{name} created (empty). Add to it with 'portwall list add {name} ADDRESS...'."
        );
    }
    Ok(exit::OK)
}

/// A change of one list: `edit` turns the old entries into (the new ones,
/// how many were added, how many removed, what was not found). The file is
/// written, then the kernel gets the element delta; a refusal puts the old
/// file back.
fn change<F>(global: &Global, name: &ListName, edit: F) -> Result<u8>
where
    F: FnOnce(&[ListEntry]) -> Result<(Vec<ListEntry>, usize, usize, Vec<String>)>,
{
    let st = ConfigDir::lock(&global.config_dir)?;
    let old = tracing::debug_span!("read list").in_scope(|| st.read_list(name))?;
    let (new, added, removed, not_found) = tracing::debug_span!("edit").in_scope(|| edit(&old))?;
    if new.len() > host::lists::LIST_ENTRIES_MAX {
        return Err(exit::usage(format!(
            "list '@{name}' would hold {} entries: the limit is {}",
            new.len(),
            host::lists::LIST_ENTRIES_MAX
        )));
    }
    let segments = tracing::debug_span!("merge").in_scope(|| Segments::of(&new));
    let mut applied = None;
    if added + removed > 0 {
        tracing::debug_span!("write list").in_scope(|| st.write_list(name, &new))?;
        match apply_list(global, &st, name, &old, &segments) {
            Ok(a) => applied = a,
            Err(e) => {
                // Nothing half-applied: the file as it was.
                st.write_list(name, &old)?;
                return Err(e);
            }
        }
    }
    let changed = Changed {
        list: name.clone(),
        added,
        removed,
        not_found,
        entries: new.len(),
        ranges: segments.segments().len(),
        applied,
    };
    if global.json {
        print_json(&changed)?;
        return Ok(exit::OK);
    }
    println!(
        "List @{name}: {} added, {} removed; {} entries in {} range(s).",
        changed.added, changed.removed, changed.entries, changed.ranges
    );
    for n in &changed.not_found {
        println!("Not in the list: {n}");
    }
    match &changed.applied {
        Some(a) if a.mode != netfilter::ApplyMode::Unchanged => println!(
            "Applied to the kernel ({}).",
            match a.mode {
                netfilter::ApplyMode::Elements => "set elements changed",
                _ => "table replaced",
            }
        ),
        Some(_) => {}
        None if added + removed > 0 => {
            println!("No rule in force uses @{name}: the kernel is unchanged.")
        }
        None => {}
    }
    Ok(exit::OK)
}

/// Sends the kernel the change of one list, when a rule in force names it.
fn apply_list(
    global: &Global,
    st: &ConfigDir,
    name: &ListName,
    old: &[ListEntry],
    new: &Segments,
) -> Result<Option<netfilter::ApplyReport>> {
    let config = st.load()?;
    if !config.enabled
        || !config
            .ruleset
            .rules
            .iter()
            .any(|r| r.lists().any(|l| l == name))
    {
        return Ok(None);
    }
    let kernel = crate::backend::kernel(global)?;
    if !kernel.is_loaded()? {
        return Ok(None);
    }
    let mut desired = config.ruleset.clone();
    desired.lists.0.insert(name.clone(), Arc::new(new.clone()));
    let mut previous = config.ruleset;
    previous
        .lists
        .0
        .insert(name.clone(), Arc::new(Segments::of(old)));
    Ok(Some(host::transaction::apply(
        st,
        &kernel,
        &desired,
        Some(&previous),
    )?))
}

#[derive(Debug, Serialize)]
struct Shown {
    list: ListName,
    entries: Vec<ShownEntry>,
    /// Entries after merging: overlapping and adjacent networks of one
    /// lifetime become one range.
    ranges: usize,
    /// How many entries the merge saved.
    merged_away: usize,
    /// The rules that name the list (1-based numbers).
    used_by: Vec<usize>,
    /// What the list's kernel sets matched (absent when no rule in force uses it).
    kernel: Option<KernelCounts>,
}

#[derive(Debug, Serialize)]
struct ShownEntry {
    entry: String,
    /// RFC 3339, for a temporary entry.
    until: Option<String>,
    /// Seconds left, for a temporary entry.
    seconds_left: Option<u64>,
}

#[derive(Debug, Serialize)]
struct KernelCounts {
    /// The elements of its sets (each merged range as its fewest CIDR blocks).
    elements: usize,
    /// What the rules that name the list matched.
    packets: u64,
    bytes: u64,
}

fn show(global: &Global, name: &ListName) -> Result<u8> {
    let st = ConfigDir::lock(&global.config_dir)?;
    let entries = st.read_list(name)?;
    let config = st.load()?;
    let segments = Segments::of(&entries);
    let used_by = users(&config.ruleset, name);
    // What the rules that name the list counted (a dump of a large list's
    // set would take the kernel minutes: see netfilter's verify module).
    let kernel = if used_by.is_empty() || !config.enabled {
        None
    } else {
        crate::backend::kernel(global)?
            .counters(&config.ruleset)?
            .map(|c| {
                let (packets, bytes) = used_by
                    .iter()
                    .filter_map(|n| c.rules.get(n - 1))
                    .fold((0, 0), |(p, b), x| (p + x.packets, b + x.bytes));
                KernelCounts {
                    elements: segments
                        .segments()
                        .iter()
                        .map(|s| s.interval.to_networks().len())
                        .sum(),
                    packets,
                    bytes,
                }
            })
    };
    let now = host::lists::now();
    let shown = Shown {
        list: name.clone(),
        ranges: segments.segments().len(),
        merged_away: entries.len().saturating_sub(segments.segments().len()),
        entries: entries
            .iter()
            .map(|e| ShownEntry {
                entry: ListEntry { until: None, ..*e }.to_string(),
                until: e.until.map(|d| d.to_string()),
                seconds_left: e.until.map(|d| d.left(now).as_secs()),
            })
            .collect(),
        used_by,
        kernel,
    };
    if global.json {
        print_json(&shown)?;
        return Ok(exit::OK);
    }
    println!(
        "List @{name}: {} entries, merged into {} range(s) ({} merged away).",
        shown.entries.len(),
        shown.ranges,
        shown.merged_away
    );
    match &shown.kernel {
        Some(k) => println!(
            "In the kernel: {} element(s); its rules matched {} packets, {} bytes.",
            k.elements, k.packets, k.bytes
        ),
        None if shown.used_by.is_empty() => println!("No rule uses it."),
        None => println!(
            "Not loaded in the kernel (portwall is disabled, or the backend cannot read it)."
        ),
    }
    if !shown.used_by.is_empty() {
        println!(
            "Used by rule(s): {}",
            shown
                .used_by
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut t = table(["ENTRY", "EXPIRES"]);
    for e in &shown.entries {
        let expires = match e.seconds_left {
            Some(s) => format!(
                "in {} ({})",
                left_text(s),
                e.until.as_deref().unwrap_or_default()
            ),
            None => "never".to_string(),
        };
        t.add_row([e.entry.clone(), expires]);
    }
    if !shown.entries.is_empty() {
        print_table(&t);
    }
    Ok(exit::OK)
}

/// The 1-based numbers of the rules that name `name`.
fn users(ruleset: &model::Ruleset, name: &ListName) -> Vec<usize> {
    ruleset
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.lists().any(|l| l == name))
        .map(|(i, _)| i + 1)
        .collect()
}

#[derive(Debug, Serialize)]
struct Listed {
    list: ListName,
    entries: usize,
    temporary: usize,
    ipv4_ranges: usize,
    ipv6_ranges: usize,
    used_by: Vec<usize>,
}

fn ls(global: &Global) -> Result<u8> {
    let st = ConfigDir::lock(&global.config_dir)?;
    let config = st.load()?;
    let mut rows = Vec::new();
    for name in st.list_names()? {
        let entries = st.read_list(&name)?;
        let segments = Segments::of(&entries);
        let v4 = segments
            .segments()
            .iter()
            .filter(|s| matches!(s.interval, Interval::V4 { .. }))
            .count();
        rows.push(Listed {
            used_by: users(&config.ruleset, &name),
            entries: entries.len(),
            temporary: entries.iter().filter(|e| e.until.is_some()).count(),
            ipv4_ranges: v4,
            ipv6_ranges: segments.segments().len() - v4,
            list: name,
        });
    }
    if global.json {
        print_json(&rows)?;
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        println!("No lists. Create one with 'portwall list create NAME'.");
        return Ok(exit::OK);
    }
    let mut t = table([
        "LIST",
        "ENTRIES",
        "TEMPORARY",
        "IPV4 RANGES",
        "IPV6 RANGES",
        "USED BY RULES",
    ]);
    for r in &rows {
        t.add_row([
            format!("@{}", r.list),
            r.entries.to_string(),
            r.temporary.to_string(),
            r.ipv4_ranges.to_string(),
            r.ipv6_ranges.to_string(),
            if r.used_by.is_empty() {
                "-".to_string()
            } else {
                r.used_by
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            },
        ]);
    }
    right_align(&mut t, &[1, 2, 3, 4]);
    print_table(&t);
    Ok(exit::OK)
}

fn delete(global: &Global, name: &ListName) -> Result<u8> {
    let st = ConfigDir::lock(&global.config_dir)?;
    if !st.list_exists(name) {
        return Err(st.no_such_list(name).into());
    }
    let config = st.load()?;
    if let Some(&number) = users(&config.ruleset, name).first() {
        return Err(host::HostError::ListInUse {
            name: name.clone(),
            number,
            rule: config.ruleset.rules[number - 1].to_string(),
        }
        .into());
    }
    st.remove_list(name)?;
    if global.json {
        print_json(&serde_json::json!({ "list": name, "deleted": true }))?;
    } else {
        println!("List @{name} deleted.");
    }
    Ok(exit::OK)
}
