//! The iptables backend: the same [`model::Ruleset`], enforced through
//! `iptables-restore` / `ip6tables-restore` on hosts without a working `nft`
//! (legacy kernels, or hosts whose other tools speak only iptables).
//!
//! # What portwall owns
//!
//! Four chains in the `filter` table of each family — `portwall-input`,
//! `portwall-output`, `portwall-forward` and the helper `portwall-reject` —
//! hooked by one `-j` rule at position 1 of `INPUT`, `OUTPUT` and `FORWARD`,
//! plus `hash:net` ipsets named `pw<generation><direction><rule><side><family>`
//! for rules that name many addresses. Nothing else is touched: Docker's,
//! libvirt's or UFW's chains, and the built-in chains' other rules and policies,
//! stay as they are. Accepting is `-j RETURN` to the built-in chain (see
//! [`compile`](self::compile)), so, as with the nftables table, a packet must
//! pass portwall *and* whatever else the host runs.
//!
//! # One transaction per family, a rollback across them
//!
//! [`Iptables::apply_atomically`] compiles a typed value ([`rules`]) and sends it
//! as one `iptables-restore --noflush` transaction per family, which declares
//! (and so flushes) portwall's chains and refills them; the jump rules are added
//! in the same transaction only when missing. The kernel commits each
//! transaction whole or not at all. Because IPv4 and IPv6 are two transactions,
//! a refused IPv6 transaction puts back the IPv4 chains as they were read before
//! the change. The ipsets of a new ruleset are created under the other
//! *generation*'s names (`pwa…` / `pwb…`) with one `ipset restore` before the
//! rules, so the rules in force never see their sets change under them; the old
//! generation is destroyed once the new rules are in.
//!
//! After applying, both families are read back with `iptables-save` and compared
//! line by line with what was sent (the rendering is `iptables-save`'s canonical
//! form), and set members with `ipset save`; a difference restores the previous
//! chains and is an error. Every rule carries a `pw:rule:N` (or `pw:policy:DIR`,
//! `pw:builtin:NAME`) comment, by which [`Iptables::counters`] maps the kernel's
//! packet and byte counters back to model rule numbers.

pub mod compile;
pub mod rules;
pub mod save;

use crate::carry::CarriedCounts;
use crate::compile::Tagged;
use crate::{ApplyMode, ApplyReport, Count, Counters, CountersKept};
use compile::{chain_names, chain_of, compile_family, CHAIN_PREFIX, IPSET_PREFIX};
use model::{Direction, Ruleset};
use rules::{Family, FamilyTable};
use save::{parse_filter, SavedTable};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};

/// Which packet filter interface portwall drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One `inet portwall` table through `nft` (the default).
    Nftables,
    /// portwall's chains through `iptables-restore` / `ip6tables-restore`.
    Iptables,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Nftables => "nftables",
            Backend::Iptables => "iptables",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "nft" | "nftables" => Ok(Backend::Nftables),
            "iptables" | "ipt" => Ok(Backend::Iptables),
            _ => Err(format!(
                "'{s}' is not a backend: nftables (nft) or iptables"
            )),
        }
    }
}

/// What went wrong driving iptables.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("{tool} is not installed or cannot run ({error}); install the '{package}' package")]
    NotInstalled {
        tool: String,
        package: &'static str,
        error: String,
    },
    #[error("the kernel refused the {what}; the previous ruleset stays in force. {tool} said: {message}")]
    Rejected {
        tool: String,
        what: String,
        message: String,
    },
    #[error("{tool} failed: {message}")]
    Failed { tool: String, message: String },
    #[error("portwall's chains in the kernel differ from what was sent ({}); the previous ruleset was restored", .0.join("; "))]
    VerifyFailed(Vec<String>),
    #[error("applying failed ({cause}), and so did putting the previous ruleset back ({rollback}): run 'portwall reload'")]
    RollbackFailed { cause: String, rollback: String },
    /// A rule names a list whose entries were not given: its ipset would
    /// be empty, which would widen a deny. Nothing is applied.
    #[error("ipset {0} is of a list that was not loaded: nothing applied")]
    ListNotLoaded(String),
}

/// The programs this backend runs. [`Tools::system`] uses the names the system's
/// alternatives point to; [`Tools::legacy`] forces the x_tables (legacy) ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub restore_v4: String,
    pub restore_v6: String,
    pub save_v4: String,
    pub save_v6: String,
    pub ipset: String,
}

impl Tools {
    pub fn system() -> Tools {
        Tools {
            restore_v4: "iptables-restore".into(),
            restore_v6: "ip6tables-restore".into(),
            save_v4: "iptables-save".into(),
            save_v6: "ip6tables-save".into(),
            ipset: "ipset".into(),
        }
    }
    pub fn legacy() -> Tools {
        Tools {
            restore_v4: "iptables-legacy-restore".into(),
            restore_v6: "ip6tables-legacy-restore".into(),
            save_v4: "iptables-legacy-save".into(),
            save_v6: "ip6tables-legacy-save".into(),
            ipset: "ipset".into(),
        }
    }
    fn restore(&self, f: Family) -> &str {
        match f {
            Family::V4 => &self.restore_v4,
            Family::V6 => &self.restore_v6,
        }
    }
    fn save(&self, f: Family) -> &str {
        match f {
            Family::V4 => &self.save_v4,
            Family::V6 => &self.save_v6,
        }
    }
}

impl Default for Tools {
    fn default() -> Self {
        Tools::system()
    }
}

fn package_of(tool: &str) -> &'static str {
    if tool.starts_with("ipset") {
        "ipset"
    } else {
        "iptables"
    }
}

/// Runs `tool args`, feeding `input`; returns stdout, or stderr as the error.
fn run(
    tool: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<Result<String, String>, IptablesError> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| IptablesError::NotInstalled {
            tool: tool.to_string(),
            package: package_of(tool),
            error: e.to_string(),
        })?;
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        // A tool that exits early closes the pipe; its exit status says why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| IptablesError::Failed {
            tool: tool.to_string(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(Ok(String::from_utf8_lossy(&out.stdout).into_owned()))
    } else {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Ok(Err(if err.is_empty() {
            format!("exit status {}", out.status)
        } else {
            err
        }))
    }
}

/// Whether the iptables tools run on this host.
pub fn available() -> bool {
    Iptables::default().available()
}

/// Whether `name` is one of portwall's ipsets (`pwa…`/`pwb…`, see [`compile`]).
pub fn is_portwall_set(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(IPSET_PREFIX) else {
        return false;
    };
    let b = rest.as_bytes();
    // A list's sets: `pw` + generation + `l` + the list's name + family.
    if b.len() >= 4 && matches!(b[0], b'a' | b'b') && b[1] == b'l' {
        let (name, family) = rest[2..].split_at(rest.len() - 3);
        return matches!(family, "4" | "6") && model::list::ListName::parse(name).is_ok();
    }
    b.len() >= 5
        && matches!(b[0], b'a' | b'b')
        && matches!(b[1], b'i' | b'o' | b'r')
        && matches!(b[b.len() - 2], b's' | b'd')
        && matches!(b[b.len() - 1], b'4' | b'6')
        && b[2..b.len() - 2].iter().all(u8::is_ascii_digit)
        && b.len() > 4
}

/// The generation letter of the sets `table`'s portwall chains use, if any.
fn generation_in_use(tables: &[&SavedTable]) -> Option<char> {
    for t in tables {
        for c in &t.chains {
            if !c.name.starts_with(CHAIN_PREFIX) {
                continue;
            }
            for r in &c.rules {
                let mut it = r.text.split_whitespace();
                while let Some(tok) = it.next() {
                    if tok == "--match-set" {
                        if let Some(name) = it.next().filter(|n| is_portwall_set(n)) {
                            return name.chars().nth(IPSET_PREFIX.len());
                        }
                    }
                }
            }
        }
    }
    None
}

/// What portwall's chains should be for a ruleset (compiled with the set
/// generation in use), and what the kernel has (IPv4, IPv6).
type Loaded = (Vec<FamilyTable>, [SavedTable; 2]);

/// The iptables backend, with the programs it runs.
#[derive(Debug, Clone, Default)]
pub struct Iptables {
    pub tools: Tools,
}

impl Iptables {
    pub fn new(tools: Tools) -> Iptables {
        Iptables { tools }
    }

    /// Whether the restore and save programs of both families run.
    pub fn available(&self) -> bool {
        Family::ALL.iter().all(|f| {
            [self.tools.restore(*f), self.tools.save(*f)]
                .iter()
                .all(|t| matches!(run(t, &["--version"], None), Ok(Ok(_))))
        })
    }

    /// `iptables-save -c -t filter` of one family, parsed.
    pub fn read(&self, f: Family) -> Result<SavedTable, IptablesError> {
        let tool = self.tools.save(f);
        match run(tool, &["-c", "-t", "filter"], None)? {
            Ok(out) => Ok(parse_filter(&out)),
            Err(message) => Err(IptablesError::Failed {
                tool: tool.to_string(),
                message,
            }),
        }
    }

    fn restore(&self, f: Family, text: &str) -> Result<(), IptablesError> {
        let tool = self.tools.restore(f);
        // `--counters`: a rule may start with the `[packets:bytes]` it
        // carries over; the others start at zero.
        match run(tool, &["--noflush", "--counters", "--wait=10"], Some(text))? {
            Ok(_) => Ok(()),
            Err(message) => Err(IptablesError::Rejected {
                tool: tool.to_string(),
                what: format!("{} chains", if f == Family::V4 { "IPv4" } else { "IPv6" }),
                message,
            }),
        }
    }

    fn ipset(&self, args: &[&str], input: Option<&str>) -> Result<String, IptablesError> {
        match run(&self.tools.ipset, args, input)? {
            Ok(out) => Ok(out),
            Err(message) => Err(IptablesError::Rejected {
                tool: self.tools.ipset.clone(),
                what: "address sets".into(),
                message,
            }),
        }
    }

    /// The names of portwall's ipsets in the kernel. No `ipset` program means no
    /// sets (portwall only needs it for rules with many addresses).
    fn portwall_sets(&self) -> Result<Vec<String>, IptablesError> {
        match run(&self.tools.ipset, &["list", "-n"], None) {
            Ok(Ok(out)) => Ok(out
                .lines()
                .map(str::trim)
                .filter(|n| is_portwall_set(n))
                .map(str::to_string)
                .collect()),
            Ok(Err(message)) => Err(IptablesError::Failed {
                tool: self.tools.ipset.clone(),
                message,
            }),
            Err(IptablesError::NotInstalled { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn destroy_sets(&self, names: &[String]) -> Result<(), IptablesError> {
        if names.is_empty() {
            return Ok(());
        }
        let text: String = names.iter().map(|n| format!("destroy {n}\n")).collect();
        self.ipset(&["restore"], Some(&text)).map(|_| ())
    }

    /// The members of ipset `name` (`None` when it does not exist). `ipset`
    /// prints a host network without its prefix length.
    fn set_members(&self, name: &str) -> Result<Option<BTreeSet<ipnet::IpNet>>, IptablesError> {
        match run(&self.tools.ipset, &["save", name], None)? {
            Ok(out) => Ok(Some(
                out.lines()
                    .filter_map(|l| l.strip_prefix(&format!("add {name} ")))
                    .filter_map(|rest| rest.split_whitespace().next())
                    .filter_map(|m| {
                        m.parse::<ipnet::IpNet>()
                            .ok()
                            .or_else(|| m.parse::<std::net::IpAddr>().ok().map(Into::into))
                    })
                    .collect(),
            )),
            Err(_) => Ok(None),
        }
    }

    /// Makes the kernel enforce `desired` (see the module documentation).
    pub fn apply_atomically(&self, desired: &Ruleset) -> Result<ApplyReport, IptablesError> {
        self.apply_carrying(desired, None)
    }

    /// [`Iptables::apply_atomically`], and the rules of `desired` that were
    /// rules of `previous` (the ruleset loaded now) keep counting from where
    /// they were (see [`crate::carry`]).
    pub fn apply_carrying(
        &self,
        desired: &Ruleset,
        previous: Option<&Ruleset>,
    ) -> Result<ApplyReport, IptablesError> {
        let before = [self.read(Family::V4)?, self.read(Family::V6)?];
        let mut carried = previous
            .and_then(|prev| Some((prev, count_saved(&before, prev.rules.len())?)))
            .map(|(prev, counted)| CarriedCounts::new(prev, &counted, desired));
        let generation = match generation_in_use(&[&before[0], &before[1]]) {
            Some('a') => 'b',
            _ => 'a',
        };
        let tables: Vec<FamilyTable> = Family::ALL
            .iter()
            .map(|f| compile_family(desired, *f, generation))
            .collect();
        let sets: Vec<&rules::IpSet> = tables.iter().flat_map(|t| &t.sets).collect();
        if let Some(s) = sets.iter().find(|s| !s.known) {
            return Err(IptablesError::ListNotLoaded(s.name.clone()));
        }
        let existing_sets = self.portwall_sets()?;
        let gen_prefix = format!("{IPSET_PREFIX}{generation}");
        // Leftovers of this generation (an interrupted apply) are unused: the
        // rules in force use the other generation.
        let stale: Vec<String> = existing_sets
            .iter()
            .filter(|n| n.starts_with(&gen_prefix))
            .cloned()
            .collect();
        self.destroy_sets(&stale)?;
        if !sets.is_empty() {
            let text: String = tables.iter().map(FamilyTable::ipset_text).collect();
            self.ipset(&["restore"], Some(&text))?;
        }
        let new_sets: Vec<String> = sets.iter().map(|s| s.name.clone()).collect();
        let mut done: Vec<Family> = Vec::new();
        for (t, b) in tables.iter().zip(&before) {
            let missing: Vec<&str> = t
                .chains
                .iter()
                .filter_map(|c| c.hooked_from.map(|b| (b, c.name.as_str())))
                .filter(|(builtin, chain)| b.jumps(builtin, chain) == 0)
                .map(|(builtin, _)| builtin)
                .collect();
            let text = match carried.as_mut() {
                Some(counts) => t.restore_text_counted(&missing, |tag| counts.take_tagged(tag)),
                None => t.restore_text(&missing),
            };
            if let Err(e) = self.restore(t.family, &text) {
                return Err(self.undo(e, &done, &before, &new_sets));
            }
            done.push(t.family);
        }
        let mut diffs = Vec::new();
        for t in &tables {
            match self.read(t.family) {
                Ok(after) => diffs.extend(self.differences(t, &after)?),
                Err(e) => return Err(self.undo(e, &done, &before, &new_sets)),
            }
        }
        if !diffs.is_empty() {
            return Err(self.undo(
                IptablesError::VerifyFailed(diffs),
                &done,
                &before,
                &new_sets,
            ));
        }
        let old: Vec<String> = existing_sets
            .into_iter()
            .filter(|n| !n.starts_with(&gen_prefix))
            .collect();
        // The old generation is unreferenced now; a set that cannot be destroyed
        // is only clutter, never in force, so it does not fail the change.
        let _ = self.destroy_sets(&old);
        Ok(ApplyReport {
            mode: ApplyMode::Replace,
            counters: match carried {
                Some(_) => CountersKept::Carried,
                None => CountersKept::Restarted,
            },
            chains: tables.iter().map(|t| t.chains.len()).sum(),
            nft_rules: tables.iter().map(FamilyTable::rule_count).sum(),
            sets: sets.len(),
            elements: sets.iter().map(|s| s.members.len()).sum(),
            verified: true,
            every_element: true,
        })
    }

    /// Puts back portwall's chains of the families in `done` as they were in
    /// `before`, and removes the sets made for the failed change.
    fn undo(
        &self,
        cause: IptablesError,
        done: &[Family],
        before: &[SavedTable; 2],
        new_sets: &[String],
    ) -> IptablesError {
        let mut failures = Vec::new();
        for f in done {
            let b = &before[match f {
                Family::V4 => 0,
                Family::V6 => 1,
            }];
            if let Err(e) = self.restore(*f, &rollback_text(b)) {
                failures.push(e.to_string());
            }
        }
        if let Err(e) = self.destroy_sets(new_sets) {
            failures.push(e.to_string());
        }
        if failures.is_empty() {
            cause
        } else {
            IptablesError::RollbackFailed {
                cause: cause.to_string(),
                rollback: failures.join("; "),
            }
        }
    }

    /// How the kernel's chains (and sets) differ from `table`; empty when equal.
    fn differences(
        &self,
        table: &FamilyTable,
        kernel: &SavedTable,
    ) -> Result<Vec<String>, IptablesError> {
        let fam = if table.family == Family::V4 {
            "IPv4"
        } else {
            "IPv6"
        };
        let mut diffs = Vec::new();
        for chain in &table.chains {
            let Some(k) = kernel.chain(&chain.name) else {
                diffs.push(format!("{fam}: chain {} is missing", chain.name));
                continue;
            };
            let want = chain.rendered();
            let have: Vec<&str> = k.rules.iter().map(|r| r.text.as_str()).collect();
            if want.len() != have.len() {
                diffs.push(format!(
                    "{fam}: chain {} has {} rules, expected {}",
                    chain.name,
                    have.len(),
                    want.len()
                ));
            }
            if let Some((i, (w, h))) = want
                .iter()
                .zip(&have)
                .enumerate()
                .find(|(_, (w, h))| w.as_str() != **h)
            {
                diffs.push(format!(
                    "{fam}: chain {} rule {}: expected `{w}`, the kernel has `{h}`",
                    chain.name,
                    i + 1
                ));
            }
            if let Some(builtin) = chain.hooked_from {
                if kernel.jumps(builtin, &chain.name) == 0 {
                    diffs.push(format!("{fam}: {builtin} does not jump to {}", chain.name));
                }
            }
        }
        for set in &table.sets {
            if !set.known {
                // A list not loaded for this comparison.
                continue;
            }
            let want: BTreeSet<ipnet::IpNet> = set.members.iter().map(|m| m.trunc()).collect();
            match self.set_members(&set.name)? {
                None => diffs.push(format!("ipset {} is missing", set.name)),
                Some(have) if have != want => diffs.push(format!(
                    "ipset {} has {} members, expected {}",
                    set.name,
                    have.len(),
                    want.len()
                )),
                Some(_) => {}
            }
        }
        Ok(diffs)
    }

    fn compiled_as_loaded(&self, ruleset: &Ruleset) -> Result<Option<Loaded>, IptablesError> {
        let saved = [self.read(Family::V4)?, self.read(Family::V6)?];
        let input = chain_of(Direction::In).0;
        if saved.iter().all(|s| s.chain(input).is_none()) {
            return Ok(None);
        }
        let generation = generation_in_use(&[&saved[0], &saved[1]]).unwrap_or('a');
        let tables = Family::ALL
            .iter()
            .map(|f| compile_family(ruleset, *f, generation))
            .collect();
        Ok(Some((tables, saved)))
    }

    /// How the kernel's chains differ from `ruleset` (someone ran `iptables` by
    /// hand); `None` when portwall's chains are not loaded.
    pub fn drift(&self, ruleset: &Ruleset) -> Result<Option<Vec<String>>, IptablesError> {
        let Some((tables, saved)) = self.compiled_as_loaded(ruleset)? else {
            return Ok(None);
        };
        let mut diffs = Vec::new();
        for (t, s) in tables.iter().zip(&saved) {
            diffs.extend(self.differences(t, s)?);
        }
        Ok(Some(diffs))
    }

    /// Whether portwall's chains are loaded (in either family).
    pub fn is_loaded(&self) -> Result<bool, IptablesError> {
        let input = chain_of(Direction::In).0;
        for f in Family::ALL {
            if self.read(f)?.chain(input).is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes portwall's chains, jumps and ipsets; other chains stay. Returns
    /// whether anything of portwall's was loaded.
    pub fn remove(&self) -> Result<bool, IptablesError> {
        let mut existed = false;
        for f in Family::ALL {
            let saved = self.read(f)?;
            let ours: Vec<&str> = chain_names()
                .into_iter()
                .filter(|c| saved.chain(c).is_some())
                .collect();
            if ours.is_empty() {
                continue;
            }
            existed = true;
            self.restore(f, &removal_text(&saved, &ours))?;
        }
        let sets = self.portwall_sets()?;
        existed |= !sets.is_empty();
        self.destroy_sets(&sets)?;
        Ok(existed)
    }

    /// Counters of the loaded chains for `ruleset` (the ruleset that is loaded),
    /// both families added up; `None` when portwall's chains are not loaded.
    pub fn counters(&self, ruleset: &Ruleset) -> Result<Option<Counters>, IptablesError> {
        let saved = [self.read(Family::V4)?, self.read(Family::V6)?];
        Ok(count_saved(&saved, ruleset.rules.len()))
    }

    /// Zeroes portwall's counters by replacing its chains with themselves.
    pub fn zero_counters(&self, ruleset: &Ruleset) -> Result<(), IptablesError> {
        self.apply_atomically(ruleset).map(|_| ())
    }
}

/// The counters of portwall's chains in `saved` (both families added up),
/// for a ruleset of `rules` model rules; `None` when they are not loaded.
fn count_saved(saved: &[SavedTable; 2], rules: usize) -> Option<Counters> {
    let input = chain_of(Direction::In).0;
    if saved.iter().all(|s| s.chain(input).is_none()) {
        return None;
    }
    let mut c = Counters {
        rules: vec![Count::default(); rules],
        policies: HashMap::new(),
        builtins: HashMap::new(),
    };
    for s in saved {
        for chain in s.chains.iter().filter(|c| c.name.starts_with(CHAIN_PREFIX)) {
            for r in &chain.rules {
                let n = Count {
                    packets: r.packets,
                    bytes: r.bytes,
                };
                let Some(tag) = r.comment() else { continue };
                match Tagged::parse(&tag) {
                    Some(Tagged::Rule(i)) => {
                        if let Some(slot) = c.rules.get_mut(i) {
                            *slot += n;
                        }
                    }
                    Some(Tagged::Policy(d)) => *c.policies.entry(d).or_default() += n,
                    Some(Tagged::Builtin(name)) => {
                        *c.builtins.entry(name.to_string()).or_default() += n;
                    }
                    None => {}
                }
            }
        }
    }
    Some(c)
}

/// The restore transaction that puts portwall's chains back as `before` had
/// them (or removes them, and the jumps, when `before` had none).
fn rollback_text(before: &SavedTable) -> String {
    let mut s = String::from("*filter\n");
    for c in chain_names() {
        s.push_str(&format!(":{c} - [0:0]\n-F {c}\n"));
    }
    for c in chain_names() {
        if let Some(chain) = before.chain(c) {
            for r in &chain.rules {
                s.push_str(&r.text);
                s.push('\n');
            }
        }
    }
    for d in Direction::ALL {
        let (chain, builtin) = chain_of(d);
        if before.chain(chain).is_none() || before.jumps(builtin, chain) == 0 {
            // The failed change added this jump (or the chain): take it away.
            s.push_str(&format!("-D {builtin} -j {chain}\n"));
        }
    }
    for c in chain_names() {
        if before.chain(c).is_none() {
            s.push_str(&format!("-X {c}\n"));
        }
    }
    s.push_str("COMMIT\n");
    s
}

/// The restore transaction that removes portwall's chains `ours` and every
/// jump to them.
fn removal_text(saved: &SavedTable, ours: &[&str]) -> String {
    let mut s = String::from("*filter\n");
    for d in Direction::ALL {
        let (chain, builtin) = chain_of(d);
        for _ in 0..saved.jumps(builtin, chain) {
            s.push_str(&format!("-D {builtin} -j {chain}\n"));
        }
    }
    for c in ours {
        s.push_str(&format!("-F {c}\n"));
    }
    for c in ours {
        s.push_str(&format!("-X {c}\n"));
    }
    s.push_str("COMMIT\n");
    s
}

/// [`Iptables::apply_atomically`] with the system's tools.
pub fn apply_atomically(desired: &Ruleset) -> Result<ApplyReport, IptablesError> {
    Iptables::default().apply_atomically(desired)
}

/// [`Iptables::counters`] with the system's tools.
pub fn counters(ruleset: &Ruleset) -> Result<Option<Counters>, IptablesError> {
    Iptables::default().counters(ruleset)
}

/// [`Iptables::remove`] with the system's tools.
pub fn remove() -> Result<bool, IptablesError> {
    Iptables::default().remove()
}

/// [`Iptables::is_loaded`] with the system's tools.
pub fn is_loaded() -> Result<bool, IptablesError> {
    Iptables::default().is_loaded()
}

/// [`Iptables::drift`] with the system's tools.
pub fn drift(ruleset: &Ruleset) -> Result<Option<Vec<String>>, IptablesError> {
    Iptables::default().drift(ruleset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names_are_recognised_strictly() {
        assert!(is_portwall_set("pwai12s4"));
        assert!(is_portwall_set("pwbr3d6"));
        assert!(!is_portwall_set("pwaix"));
        assert!(!is_portwall_set("pwci1s4"));
        assert!(!is_portwall_set("docker-set"));
    }

    #[test]
    fn rollback_removes_what_a_failed_first_apply_added() {
        let t = rollback_text(&SavedTable::default());
        assert!(t.contains("-D INPUT -j portwall-input\n"));
        assert!(t.contains("-X portwall-reject\n"));
    }

    #[test]
    fn backend_names_parse() {
        assert_eq!("nft".parse::<Backend>(), Ok(Backend::Nftables));
        assert_eq!("iptables".parse::<Backend>(), Ok(Backend::Iptables));
        assert!("pf".parse::<Backend>().is_err());
    }
}
