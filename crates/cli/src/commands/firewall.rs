//! The OS firewall commands: rule edits (allow, deny, reject, limit, route,
//! insert, delete, default, logging) and the lifecycle (enable, disable, reload,
//! reset, restore, apply, plan).
//!
//! Every change follows one path, the host library's transaction
//! ([`host::transaction::change`]): edit the desired state in memory, apply it
//! to the kernel in one transaction (when enabled), and only then save it, all
//! under the config directory's lock. A refused ruleset is never saved. This
//! module parses the arguments and renders what the transaction did, ending
//! with the state the host is left in ([`HostState`]), once.

use crate::commands::safety;
use crate::exit;
use crate::output::{print_json, print_table, table};
use crate::Global;
use anyhow::Result;
use clap::Args;
use host::config_dir;
use host::transaction::{self, ChangeOptions, ChangeReport};
use host::{ConfigDir, HostState};
use model::{AddOutcome, Direction, HostConfig, Logging, Policy, Rule, Ruleset};
use netfilter::ApplyReport;
use serde::Serialize;
use std::path::PathBuf;

/// A rule in UFW syntax, e.g. `22/tcp from 203.0.113.0/24`.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// The rule after the action: PORT[/PROTO] | [in|out|routed] [on IF] [proto P] [from A [port P]] [to A [port P]] [comment 'TEXT']
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "RULE"
    )]
    pub words: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    /// ACTION and the rule: `allow in on eth0 out on eth1 to 10.0.0.2 port 80 proto tcp`
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "RULE"
    )]
    pub words: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InsertArgs {
    /// 1-based position the rule takes (see `status --numbered`).
    pub position: usize,
    /// ACTION and the rule, e.g. `deny from 198.51.100.7`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "RULE"
    )]
    pub words: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// A rule number (`delete 3`) or a whole rule (`delete allow 8080/tcp`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "NUMBER|RULE"
    )]
    pub words: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DefaultArgs {
    /// allow, deny or reject.
    pub policy: String,
    /// incoming, outgoing or routed.
    pub direction: String,
}

#[derive(Debug, Args)]
pub struct LoggingArgs {
    /// off (only rules marked `log`), on (also what default policies block), full (also every new connection).
    pub level: String,
}

#[derive(Debug, Args)]
pub struct BuiltinArgs {
    /// ping, icmp-errors, dhcp, mdns, upnp or ipv6-control (none: list them all).
    #[arg(requires = "state")]
    pub name: Option<String>,
    /// on or off.
    pub state: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Make the kernel match this file instead of the saved rules; on success it
    /// becomes the saved rules.
    #[arg(long, value_name = "rules.toml")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Plan for this file instead of the saved rules.
    #[arg(long, value_name = "rules.toml")]
    pub file: Option<PathBuf>,
}

fn parse_words(words: &[String], st: &ConfigDir) -> Result<Vec<Rule>> {
    model::parse_rule_args(words, &st.services).map_err(|e| exit::usage(e.to_string()))
}

/// What a command did, for `--json` and for the human report.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub changes: Vec<serde_json::Value>,
    pub enabled: bool,
    /// How the kernel was changed (absent when portwall is disabled).
    pub applied: Option<ApplyReport>,
    pub warnings: Vec<String>,
    /// The state the command leaves the host in.
    pub state: HostState,
    /// The state it found (not in the JSON: `changes` says what changed).
    #[serde(skip)]
    pub before: HostState,
    /// Lifecycle commands (enable, disable, reload, reset, apply) always say
    /// the state they leave; a rule edit only when it is not the usual one.
    #[serde(skip)]
    pub says_state: bool,
}

impl Outcome {
    fn new(changes: Vec<serde_json::Value>, report: &ChangeReport, warnings: Vec<String>) -> Self {
        Outcome {
            changes,
            enabled: report.after.enabled,
            applied: report.applied.clone(),
            warnings,
            state: report.after,
            before: report.before,
            says_state: false,
        }
    }
}

/// How a change is made, from the command line.
fn options(global: &Global) -> ChangeOptions {
    ChangeOptions {
        force: global.force,
        confirm: global.confirm,
        declarative: false,
    }
}

/// Makes the kernel match `new` (enabled) and saves it: `apply`, declarative.
fn commit(
    st: &ConfigDir,
    global: &Global,
    old: &HostConfig,
    new: &HostConfig,
) -> Result<ChangeReport> {
    let kernel = crate::backend::kernel(global)?;
    let opts = ChangeOptions {
        declarative: true,
        ..options(global)
    };
    Ok(transaction::change(
        st,
        &kernel,
        old,
        new,
        opts,
        &safety::start_watchdog(global),
    )?)
}

fn other_firewalls() -> Vec<String> {
    let mut w = Vec::new();
    if std::fs::read_to_string("/etc/ufw/ufw.conf")
        .is_ok_and(|t| t.lines().any(|l| l.trim() == "ENABLED=yes"))
    {
        w.push("UFW is enabled too: its rules and portwall's both apply (a packet must pass both). Consider 'ufw disable' after 'portwall import ufw'.".into());
    }
    if std::path::Path::new("/run/firewalld/firewalld.pid").exists()
        || std::path::Path::new("/var/run/firewalld.pid").exists()
    {
        w.push("firewalld is running too: its rules and portwall's both apply (a packet must pass both).".into());
    }
    w
}

fn render(global: &Global, outcome: &Outcome, human: &[String]) -> Result<u8> {
    if global.json {
        print_json(outcome)?;
        return Ok(exit::OK);
    }
    for line in human {
        println!("{line}");
    }
    if let Some(a) = &outcome.applied {
        if a.mode != netfilter::ApplyMode::Unchanged {
            println!("{}", kernel_line(a));
        }
    }
    if let Some(line) = state_line(outcome) {
        println!("{line}");
    }
    if let Some(p) = &outcome.state.pending_confirmation {
        println!(
            "Pending: the change is rolled back {} unless you run 'portwall confirm'.",
            safety::deadline_text(p)
        );
    }
    for w in &outcome.warnings {
        eprintln!("warning: {w}");
    }
    Ok(exit::OK)
}

/// How the kernel took a ruleset, in one line.
fn kernel_line(a: &ApplyReport) -> String {
    format!(
        "Applied to the kernel ({}): {} nft rules, {} sets, {} elements{}.",
        match a.mode {
            netfilter::ApplyMode::Replace => "table replaced",
            netfilter::ApplyMode::Elements => "set elements changed",
            netfilter::ApplyMode::Unchanged => "unchanged",
        },
        a.nft_rules,
        a.sets,
        a.elements,
        match (a.verified, a.every_element) {
            (true, true) => ", verified",
            (true, false) => ", verified (large sets on a sample of their elements)",
            (false, _) => "",
        }
    )
}

/// The one line on the state the host is left in: always after a lifecycle
/// command or a change of state; after a rule edit on a disabled host, that
/// the edit waits for `enable`; nothing after a rule edit in force.
fn state_line(outcome: &Outcome) -> Option<&'static str> {
    let after = &outcome.state;
    if outcome.says_state || after.differs_from(&outcome.before) {
        Some(after.sentence())
    } else if !after.enabled && !outcome.changes.is_empty() {
        Some("portwall is disabled: the change is saved and applies on 'portwall enable'.")
    } else {
        None
    }
}

fn describe(outcome: &AddOutcome, rule: &Rule) -> String {
    match outcome {
        AddOutcome::Added { number } => format!("Rule added ({number}): {rule}"),
        AddOutcome::Replaced { number, previous } => {
            format!("Rule updated ({number}): {rule} (was: {previous})")
        }
        AddOutcome::Unchanged { number } => {
            format!("Skipping: the rule exists already ({number}): {rule}")
        }
    }
}

fn edit<F>(global: &Global, f: F) -> Result<u8>
where
    F: FnOnce(&ConfigDir, &mut HostConfig) -> Result<(Vec<serde_json::Value>, Vec<String>)>,
{
    edit_saying(global, false, f)
}

/// [`edit`]; `says_state`: the command always reports the state it leaves.
fn edit_saying<F>(global: &Global, says_state: bool, f: F) -> Result<u8>
where
    F: FnOnce(&ConfigDir, &mut HostConfig) -> Result<(Vec<serde_json::Value>, Vec<String>)>,
{
    host::lockout::read_sessions_ahead(options(global).checks_lockout());
    let st = ConfigDir::lock(&global.config_dir)?;
    let old = st.load()?;
    let mut new = tracing::debug_span!("copy").in_scope(|| old.clone());
    let (changes, human) = tracing::debug_span!("edit").in_scope(|| f(&st, &mut new))?;
    let kernel = crate::backend::kernel(global)?;
    let report = transaction::change_if_needed(
        &st,
        &kernel,
        &old,
        &new,
        options(global),
        &safety::start_watchdog(global),
    )?;
    let mut outcome = Outcome::new(changes, &report, other_firewalls());
    outcome.says_state = says_state;
    render(global, &outcome, &human)
}

/// `portwall allow|deny|reject|limit RULE`.
pub fn add(global: &Global, action: &str, words: &[String]) -> Result<u8> {
    let mut full = vec![action.to_string()];
    full.extend_from_slice(words);
    add_words(global, &full, None)
}

/// `portwall route ACTION RULE` (UFW's form of routed rules).
pub fn route(global: &Global, words: &[String]) -> Result<u8> {
    let mut full = vec!["route".to_string()];
    full.extend_from_slice(words);
    add_words(global, &full, None)
}

/// `portwall insert N ACTION RULE`.
pub fn insert(global: &Global, args: &InsertArgs) -> Result<u8> {
    add_words(global, &args.words, Some(args.position))
}

fn add_words(global: &Global, words: &[String], position: Option<usize>) -> Result<u8> {
    let until = crate::commands::list::deadline(global)?;
    edit(global, |st, cfg| {
        let mut rules = parse_words(words, st)?;
        for rule in &mut rules {
            if let Some(d) = until {
                rule.until = Some(d);
                rule.validate().map_err(|e| exit::usage(e.to_string()))?;
            }
            for list in rule.lists() {
                if !st.list_exists(list) {
                    return Err(st.no_such_list(list).into());
                }
            }
        }
        let mut changes = Vec::new();
        let mut human = Vec::new();
        for (i, rule) in rules.into_iter().enumerate() {
            let outcome = match position {
                Some(p) => cfg
                    .ruleset
                    .insert(p + i, rule.clone())
                    .map_err(|e| exit::usage(e.to_string()))?,
                None => cfg.ruleset.add(rule.clone()),
            };
            human.push(describe(&outcome, &rule));
            changes.push(serde_json::json!({ "rule": rule.to_string(), "result": outcome }));
        }
        Ok((changes, human))
    })
}

/// `portwall delete N` or `portwall delete RULE`.
pub fn delete(global: &Global, args: &DeleteArgs) -> Result<u8> {
    edit(global, |st, cfg| {
        let removed: Vec<(usize, Rule)> = if let [n] = args.words.as_slice() {
            if let Ok(number) = n.parse::<usize>() {
                let r = cfg
                    .ruleset
                    .delete_number(number)
                    .map_err(|e| exit::usage(e.to_string()))?;
                vec![(number, r)]
            } else {
                delete_rules(st, cfg, &args.words)?
            }
        } else {
            delete_rules(st, cfg, &args.words)?
        };
        let human = removed
            .iter()
            .map(|(n, r)| format!("Rule deleted ({n}): {r}"))
            .collect();
        let changes = removed
            .iter()
            .map(|(n, r)| serde_json::json!({ "deleted": n, "rule": r.to_string() }))
            .collect();
        Ok((changes, human))
    })
}

fn delete_rules(
    st: &ConfigDir,
    cfg: &mut HostConfig,
    words: &[String],
) -> Result<Vec<(usize, Rule)>> {
    let rules = parse_words(words, st)?;
    rules
        .iter()
        .map(|r| {
            cfg.ruleset
                .delete_rule(r)
                .map_err(|e| exit::usage(e.to_string()))
        })
        .collect()
}

/// `portwall default POLICY DIRECTION`.
pub fn default(global: &Global, args: &DefaultArgs) -> Result<u8> {
    let policy: Policy = args.policy.parse().map_err(exit::usage)?;
    let direction: Direction = args.direction.parse().map_err(exit::usage)?;
    edit(global, |_, cfg| {
        let from = cfg.ruleset.defaults.get(direction);
        cfg.ruleset.defaults.set(direction, policy);
        let line = format!(
            "Default {} policy changed to '{}' (was '{}')",
            direction.policy_name(),
            policy.as_str(),
            from.as_str()
        );
        Ok((
            vec![
                serde_json::json!({ "direction": direction.policy_name(), "from": from, "to": policy }),
            ],
            vec![line],
        ))
    })
}

/// `portwall logging off|on|full`.
pub fn logging(global: &Global, args: &LoggingArgs) -> Result<u8> {
    let level: Logging = args.level.parse().map_err(exit::usage)?;
    edit(global, |_, cfg| {
        let from = cfg.ruleset.logging;
        cfg.ruleset.logging = level;
        Ok((
            vec![serde_json::json!({ "logging": level, "was": from })],
            vec![format!(
                "Logging {} (was {})",
                level.as_str(),
                from.as_str()
            )],
        ))
    })
}

/// `portwall builtin NAME on|off`; without arguments, the list of built-ins.
pub fn builtin(global: &Global, args: &BuiltinArgs) -> Result<u8> {
    use model::builtins::{parse_state, state_text, Switch};
    let (Some(name), Some(state)) = (&args.name, &args.state) else {
        let st = ConfigDir::lock(&global.config_dir)?;
        let switches = st.load()?.ruleset.builtins;
        if global.json {
            let list: Vec<_> = Switch::ALL
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "name": s,
                        "on": switches.get(*s),
                        "accepts": s.describe(),
                    })
                })
                .collect();
            crate::output::print_json(&serde_json::json!({ "builtins": list }))?;
        } else {
            let mut t = crate::output::table(["BUILT-IN", "STATE", "ACCEPTS"]);
            for s in Switch::ALL {
                t.add_row(vec![
                    s.to_string(),
                    state_text(switches.get(s)).to_string(),
                    s.describe().to_string(),
                ]);
            }
            crate::output::print_table(&t);
        }
        return Ok(exit::OK);
    };
    let switch: Switch = name.parse().map_err(exit::usage)?;
    let on = parse_state(state).map_err(exit::usage)?;
    edit(global, |_, cfg| {
        let was = cfg.ruleset.builtins.get(switch);
        cfg.ruleset.builtins.set(switch, on);
        Ok((
            vec![serde_json::json!({ "builtin": switch, "on": on, "was": was })],
            vec![format!(
                "Built-in {switch} {} (was {})",
                state_text(on),
                state_text(was)
            )],
        ))
    })
}

/// `portwall enable`.
pub fn enable(global: &Global) -> Result<u8> {
    edit_saying(global, true, |_, cfg| {
        let was = cfg.enabled;
        cfg.enabled = true;
        Ok((
            vec![serde_json::json!({ "enabled": true, "was": was })],
            vec![],
        ))
    })
}

/// `portwall disable`: removes portwall's table; other tables are untouched.
pub fn disable(global: &Global) -> Result<u8> {
    let st = ConfigDir::lock(&global.config_dir)?;
    let old = st.load()?;
    let cfg = HostConfig {
        enabled: false,
        ..old.clone()
    };
    let (removed, before, after) =
        transaction::unload(&st, &crate::backend::kernel(global)?, &old, &cfg)?;
    let outcome = Outcome {
        changes: vec![
            serde_json::json!({ "enabled": false, "was": old.enabled, "table_removed": removed }),
        ],
        enabled: false,
        applied: None,
        warnings: vec![],
        state: after,
        before,
        says_state: true,
    };
    render(global, &outcome, &[])
}

/// `portwall reload`: re-reads the saved rules (after a hand edit) and replaces the
/// kernel's table with them.
pub fn reload(global: &Global) -> Result<u8> {
    let st = ConfigDir::lock(&global.config_dir)?;
    let (_, report) =
        transaction::reapply(&st, &crate::backend::kernel(global)?, Some(options(global)))?;
    let Some(report) = report else {
        return Err(exit::with_code(
            exit::FAILURE,
            "portwall is disabled; 'portwall enable' applies the rules",
        ));
    };
    let mut outcome = Outcome::new(vec![], &report, other_firewalls());
    outcome.says_state = true;
    render(global, &outcome, &["Firewall reloaded".into()])
}

/// `portwall restore`: what the boot unit runs. Applies the saved rules when
/// enabled, does nothing otherwise; never prompts.
pub fn restore(global: &Global) -> Result<u8> {
    let st = ConfigDir::lock(&global.config_dir)?;
    let kernel = crate::backend::kernel(global)?;
    let (cfg, report) = transaction::reapply(&st, &kernel, None)?;
    let Some(report) = report else {
        let state = transaction::current_state(st.path(), false, &kernel)?;
        let outcome = Outcome {
            changes: vec![],
            enabled: false,
            applied: None,
            warnings: vec![],
            state,
            before: state,
            says_state: false,
        };
        return render(
            global,
            &outcome,
            &["portwall is disabled: nothing to restore".into()],
        );
    };
    let outcome = Outcome::new(vec![], &report, vec![]);
    render(
        global,
        &outcome,
        &[format!("Restored {} rule(s)", cfg.ruleset.rules.len())],
    )
}

/// `portwall reset`: back to the defaults (disabled, no rules, default policies).
pub fn reset(global: &Global) -> Result<u8> {
    let st = ConfigDir::lock(&global.config_dir)?;
    let old = st.load()?;
    let (removed, before, after) = transaction::unload(
        &st,
        &crate::backend::kernel(global)?,
        &old,
        &HostConfig::default(),
    )?;
    let outcome = Outcome {
        changes: vec![
            serde_json::json!({ "reset": true, "rules_removed": old.ruleset.rules.len(), "table_removed": removed }),
        ],
        enabled: false,
        applied: None,
        warnings: vec![],
        state: after,
        before,
        says_state: true,
    };
    render(
        global,
        &outcome,
        &[format!(
            "Reset: {} rule(s) removed, defaults restored",
            old.ruleset.rules.len()
        )],
    )
}

fn read_file(path: &std::path::Path) -> Result<HostConfig> {
    config_dir::read_config(path, &config_dir::services())?
        .ok_or_else(|| exit::usage(format!("{}: no such file", path.display())))
}

/// Makes `ruleset` the saved rules and applies it (used by `import --apply`).
pub fn apply_ruleset(global: &Global, ruleset: Ruleset) -> Result<u8> {
    install(global, Some(ruleset))
}

/// Like [`apply_ruleset`], but returns what it did instead of printing it, for
/// a command that reports it inside its own JSON document.
pub fn apply_ruleset_quietly(global: &Global, ruleset: Ruleset) -> Result<Outcome> {
    Ok(install_outcome(global, Some(ruleset))?.0)
}

/// `portwall apply [--file F]`: make the kernel match a file (declarative).
pub fn apply(global: &Global, args: &ApplyArgs) -> Result<u8> {
    host::lockout::read_sessions_ahead(options(global).checks_lockout());
    match &args.file {
        Some(f) => install(global, Some(read_file(f)?.ruleset)),
        None => install(global, None),
    }
}

/// Enables portwall with `ruleset` (or the saved rules) in force.
fn install(global: &Global, ruleset: Option<Ruleset>) -> Result<u8> {
    let (outcome, summary) = install_outcome(global, ruleset)?;
    render(global, &outcome, &[summary])
}

/// [`install`]'s work: the outcome and its one-line summary.
fn install_outcome(global: &Global, ruleset: Option<Ruleset>) -> Result<(Outcome, String)> {
    let st = ConfigDir::lock(&global.config_dir)?;
    let old = st.load()?;
    let new = HostConfig {
        enabled: true,
        ruleset: ruleset.unwrap_or_else(|| old.ruleset.clone()),
    };
    let diff = tracing::debug_span!("diff").in_scope(|| model::diff(&old.ruleset, &new.ruleset));
    let n = diff.len();
    // Only --json prints the changes; a person gets their number. (Turning 10k
    // changes into JSON values was a sixth of `apply`'s time.)
    let changes: Vec<serde_json::Value> = if global.json {
        diff.into_iter()
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .collect()
    } else {
        Vec::new()
    };
    let report = commit(&st, global, &old, &new)?;
    let mut outcome = Outcome::new(changes, &report, other_firewalls());
    outcome.says_state = true;
    let summary = format!(
        "{} rule(s) in force; {n} change(s) to the saved rules",
        new.ruleset.rules.len()
    );
    Ok((outcome, summary))
}

#[derive(Debug, Serialize)]
struct Plan<'a> {
    enabled: bool,
    loaded: bool,
    changes: Vec<model::Change<'a>>,
    /// How the kernel's table differs from what portwall applied last.
    kernel_drift: Vec<String>,
}

/// `portwall plan [--file F]`: what applying would change, without applying.
pub fn plan(global: &Global, args: &PlanArgs) -> Result<u8> {
    let st = ConfigDir::lock(&global.config_dir)?;
    let desired = match &args.file {
        Some(f) => read_file(f)?,
        None => st.load()?,
    };
    let filter = crate::backend::kernel(global)?;
    let loaded = filter.is_loaded()?;
    // The saved rules' own parse serves when applied.toml is the same file.
    let current: std::borrow::Cow<'_, Ruleset> = match (loaded, &args.file) {
        (false, _) => Default::default(),
        (true, None) => st.applied_or_loaded(&desired)?.unwrap_or_default(),
        (true, Some(_)) => std::borrow::Cow::Owned(st.applied()?.unwrap_or_default()),
    };
    let kernel_drift = if loaded {
        filter.drift(&current)?.unwrap_or_default()
    } else {
        vec![]
    };
    // Without a table, applying starts from nothing (but the same defaults).
    let nothing = Ruleset {
        defaults: desired.ruleset.defaults,
        logging: desired.ruleset.logging,
        builtins: desired.ruleset.builtins,
        rules: vec![],
        lists: Default::default(),
    };
    let changes = model::diff(if loaded { &current } else { &nothing }, &desired.ruleset);
    let plan = Plan {
        enabled: desired.enabled,
        loaded,
        changes,
        kernel_drift,
    };
    if global.json {
        print_json(&plan)?;
        return Ok(exit::OK);
    }
    if !loaded {
        println!(
            "No portwall table is loaded: applying creates it with {} rule(s).",
            desired.ruleset.rules.len()
        );
    }
    if plan.changes.is_empty() && plan.kernel_drift.is_empty() {
        println!("No changes: the kernel already enforces the saved rules.");
    } else {
        let mut t = table(["Change", "#", "Rule"]);
        for c in &plan.changes {
            match c {
                model::Change::Add { number, rule } => t.add_row(vec![
                    "+ add".to_string(),
                    number.to_string(),
                    rule.to_string(),
                ]),
                model::Change::Remove { number, rule } => t.add_row(vec![
                    "- remove".to_string(),
                    number.to_string(),
                    rule.to_string(),
                ]),
                model::Change::Default {
                    direction,
                    from,
                    to,
                } => t.add_row(vec![
                    "~ default".to_string(),
                    String::new(),
                    format!(
                        "{}: {} -> {}",
                        direction.policy_name(),
                        from.as_str(),
                        to.as_str()
                    ),
                ]),
                model::Change::Logging { from, to } => t.add_row(vec![
                    "~ logging".to_string(),
                    String::new(),
                    format!("{} -> {}", from.as_str(), to.as_str()),
                ]),
                model::Change::Builtin { builtin, from, to } => t.add_row(vec![
                    format!("~ builtin {builtin}"),
                    String::new(),
                    format!(
                        "{} -> {}",
                        model::builtins::state_text(*from),
                        model::builtins::state_text(*to)
                    ),
                ]),
                model::Change::Reorder => t.add_row(vec![
                    "~ reorder".to_string(),
                    String::new(),
                    "the same rules in another order".to_string(),
                ]),
            };
        }
        print_table(&t);
        for d in &plan.kernel_drift {
            println!("kernel differs: {d} (applying replaces it)");
        }
    }
    Ok(exit::OK)
}
