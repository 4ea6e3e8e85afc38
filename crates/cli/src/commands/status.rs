//! `portwall status`: what is true in the kernel, in portwall's rule syntax.
//!
//! `--verbose` adds each rule's packet and byte counters (and since when they
//! count: [`host::counting_since`]) and what each default
//! policy decided, read from the kernel (like `iptables -nvL`), and `--zero`
//! resets them. The kernel's table is compared with what portwall applied, so a
//! hand edit with `nft` shows up here.

use crate::exit;
use crate::output::{print_json, print_table, right_align, table};
use crate::Global;
use anyhow::Result;
use clap::Args;
use host::config_dir::{self, ConfigDir};
use host::counting_since;
use model::{Direction, HostConfig, Ruleset};
use netfilter::Count;
use serde::Serialize;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Number the rules (for `delete N` and `insert N`).
    #[arg(long)]
    pub numbered: bool,
    /// Show packet and byte counters from the kernel, and for how long each has counted.
    #[arg(long, short)]
    pub verbose: bool,
    /// Reset the counters to zero.
    #[arg(long)]
    pub zero: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct RuleRow {
    pub(crate) number: usize,
    pub(crate) rule: String,
    #[serde(flatten)]
    pub(crate) value: model::Rule,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) counters: Option<Count>,
    /// Since when the counters count (Unix seconds), with `--verbose`, when
    /// portwall recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) counting_since: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PolicyRow {
    pub(crate) direction: &'static str,
    pub(crate) policy: model::Policy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) counters: Option<Count>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) counting_since: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Status {
    /// active: the table is loaded; inactive otherwise.
    pub(crate) status: &'static str,
    pub(crate) enabled: bool,
    pub(crate) loaded: bool,
    pub(crate) logging: model::Logging,
    pub(crate) defaults: Vec<PolicyRow>,
    pub(crate) rules: Vec<RuleRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) builtins: Option<std::collections::HashMap<String, Count>>,
    /// The saved rules differ from what is loaded (run `portwall reload`).
    pub(crate) saved_differs: bool,
    /// How the kernel's table differs from what portwall applied.
    pub(crate) kernel_drift: Vec<String>,
    /// A change made with --confirm that is rolled back at `deadline` (unix
    /// seconds) unless `portwall confirm` runs first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pending_confirmation: Option<host::confirmation::Deadline>,
    pub(crate) config_dir: String,
}

pub fn run(global: &Global, args: &StatusArgs) -> Result<u8> {
    let status = collect(global, args.verbose, args.zero)?;
    if global.json {
        print_json(&status)?;
        return Ok(exit::OK);
    }
    render(&status, args);
    Ok(exit::OK)
}

/// Reads the status from the kernel and the saved state; `verbose`: with the
/// counters; `zero`: reset them first. Also what `portwall metrics` exports.
pub(crate) fn collect(global: &Global, verbose: bool, zero: bool) -> Result<Status> {
    let services = config_dir::services();
    let rules_path = global.config_dir.join("rules.toml");
    let saved_text = config_dir::read_text(&rules_path)?;
    let saved = match &saved_text {
        Some(text) => config_dir::parse_config(&rules_path, text, &services)?,
        None => HostConfig::default(),
    };
    let filter = crate::backend::kernel(global)?;
    let loaded = filter.is_loaded()?;
    let applied: Option<Ruleset> = if loaded {
        config_dir::read_applied(&global.config_dir, &services, saved_text.as_deref(), &saved)?
            .map(std::borrow::Cow::into_owned)
    } else {
        None
    };
    // What the kernel enforces: the ruleset portwall applied, when the table is loaded.
    let shown = applied.clone().unwrap_or_else(|| saved.ruleset.clone());
    if zero {
        if !loaded {
            return Err(exit::with_code(
                exit::FAILURE,
                "no portwall table is loaded: there are no counters to reset",
            ));
        }
        let lock = ConfigDir::lock(&global.config_dir)?;
        // Zeroing makes the table anew: with the lists its rules name.
        let mut with_lists = shown.clone();
        with_lists.lists = lock.load_lists(&shown)?;
        filter.zero_counters(&with_lists)?;
        counting_since::restart(&global.config_dir, &shown, counting_since::now())?;
    }
    let (kernel_drift, counters) = match (&applied, loaded) {
        // What was applied is what is shown: one read of the table for both.
        (Some(a), true) if verbose => match filter.drift_and_counters(a)? {
            Some((drift, counters)) => (drift, Some(counters)),
            None => (vec![], None),
        },
        (Some(a), true) => (filter.drift(a)?.unwrap_or_default(), None),
        (None, true) => (
            vec!["the table was loaded outside portwall (no record of applying it)".to_string()],
            verbose
                .then(|| filter.counters(&shown))
                .transpose()?
                .flatten(),
        ),
        _ => (vec![], None),
    };
    // Since when they count: only for counters read from a table portwall
    // applied and recorded.
    let since = match (&counters, &applied) {
        (Some(_), Some(a)) => counting_since::read(&global.config_dir)
            .map(|r| (r.for_rules(a), r.table))
            .filter(|(times, _)| times.len() == shown.rules.len()),
        _ => None,
    };
    let rules = shown
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| RuleRow {
            number: i + 1,
            rule: r.to_string(),
            value: r.clone(),
            counters: counters.as_ref().map(|c| c.rules[i]),
            counting_since: since.as_ref().and_then(|(times, _)| times[i]),
        })
        .collect();
    let defaults = Direction::ALL
        .iter()
        .map(|d| PolicyRow {
            direction: d.policy_name(),
            policy: shown.defaults.get(*d),
            counters: counters
                .as_ref()
                .map(|c| c.policies.get(d).copied().unwrap_or_default()),
            counting_since: since.as_ref().map(|(_, table)| *table),
        })
        .collect();
    let status = Status {
        status: if loaded { "active" } else { "inactive" },
        enabled: saved.enabled,
        loaded,
        logging: shown.logging,
        defaults,
        rules,
        builtins: counters.as_ref().map(|c| c.builtins.clone()),
        saved_differs: applied.as_ref().is_some_and(|a| *a != saved.ruleset),
        kernel_drift,
        pending_confirmation: host::confirmation::pending_deadline(&global.config_dir),
        config_dir: global.config_dir.display().to_string(),
    };
    Ok(status)
}

/// How long a counter has counted, as `status --verbose` shows it: `42s`,
/// `17m`, `5h`, `3d` (the largest unit that fits), `-` when not recorded.
fn since_text(since: Option<u64>, now: u64) -> String {
    let Some(since) = since else {
        return "-".into();
    };
    let age = now.saturating_sub(since);
    match age {
        0..60 => format!("{age}s"),
        60..3600 => format!("{}m", age / 60),
        3600..86_400 => format!("{}h", age / 3600),
        _ => format!("{}d", age / 86_400),
    }
}

fn human_count(n: u64) -> String {
    // As iptables -nvL: K, M, G above 99999.
    const UNITS: [&str; 4] = ["", "K", "M", "G"];
    let mut v = n;
    let mut u = 0;
    while v > 99_999 && u < UNITS.len() - 1 {
        v /= 1000;
        u += 1;
    }
    format!("{v}{}", UNITS[u])
}

fn render(s: &Status, args: &StatusArgs) {
    match (s.loaded, s.enabled) {
        (true, _) => println!("Status: active"),
        (false, true) => {
            println!("Status: inactive (enabled, but no table is loaded: run 'portwall reload')")
        }
        (false, false) => println!("Status: inactive"),
    }
    println!("Logging: {}", s.logging.as_str());
    let d: Vec<String> = s
        .defaults
        .iter()
        .map(|p| format!("{} ({})", p.policy.as_str(), p.direction))
        .collect();
    println!("Default: {}", d.join(", "));
    if let Some(p) = &s.pending_confirmation {
        println!(
            "PENDING: the last change is rolled back {} unless you run 'portwall confirm'.",
            crate::commands::safety::deadline_text(p)
        );
    }
    if s.saved_differs {
        println!("Note: the saved rules differ from the loaded ones; 'portwall plan' shows how, 'portwall reload' applies them.");
    }
    for drift in &s.kernel_drift {
        println!("WARNING: the kernel's table differs from what portwall applied: {drift}");
    }
    println!();
    if s.rules.is_empty() && !args.verbose {
        println!("No rules.");
        return;
    }
    let verbose = args.verbose && s.loaded;
    let mut header: Vec<&str> = Vec::new();
    if args.numbered || verbose {
        header.push("#");
    }
    if verbose {
        header.extend(["pkts", "bytes", "counted for"]);
    }
    header.push("Rule");
    let temporary = s.rules.iter().any(|r| r.value.until.is_some());
    if temporary {
        header.push("Expires");
    }
    header.push("Comment");
    let now = counting_since::now();
    let mut t = table(header);
    for r in &s.rules {
        let mut row = Vec::new();
        if args.numbered || verbose {
            row.push(format!("[{}]", r.number));
        }
        if verbose {
            let c = r.counters.unwrap_or_default();
            row.push(human_count(c.packets));
            row.push(human_count(c.bytes));
            row.push(since_text(r.counting_since, now));
        }
        let mut text = r.value.clone();
        let comment = text.comment.take().unwrap_or_default();
        let until = text.until.take();
        row.push(text.to_string());
        if temporary {
            row.push(match until {
                Some(d) => format!(
                    "in {} ({d})",
                    crate::commands::list::left_text(d.left(host::lists::now()).as_secs())
                ),
                None => String::new(),
            });
        }
        row.push(comment);
        t.add_row(row);
    }
    if verbose {
        for p in &s.defaults {
            let c = p.counters.unwrap_or_default();
            t.add_row(vec![
                "".into(),
                human_count(c.packets),
                human_count(c.bytes),
                since_text(p.counting_since, now),
                format!("default {} {}", p.policy.as_str(), p.direction),
                "policy".into(),
            ]);
        }
        if let Some(b) = &s.builtins {
            let mut names: Vec<_> = b.keys().collect();
            names.sort();
            for n in names {
                let c = b[n];
                t.add_row(vec![
                    "".into(),
                    human_count(c.packets),
                    human_count(c.bytes),
                    since_text(s.defaults.first().and_then(|p| p.counting_since), now),
                    format!("built-in: {n}"),
                    match n.parse::<model::builtins::Switch>() {
                        Ok(_) => format!("before rules ('portwall builtin {n} off')"),
                        Err(_) => "always first".into(),
                    },
                ]);
            }
        }
        right_align(&mut t, &[1, 2, 3]);
    }
    print_table(&t);
}
