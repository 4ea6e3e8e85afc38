//! The only code that talks to the kernel's packet filter.
//!
//! In the style of mullvad's talpid firewall: a pure policy value goes in
//! ([`model::Ruleset`]), one atomic nftables transaction comes out
//! ([`compile`]), and the kernel is read back to verify ([`readback`]).
//!
//! - Everything portwall enforces lives in one table, `inet portwall`; nothing
//!   outside it is touched, so Docker, libvirt or other tools keep their rules.
//! - A change is one transaction: the whole table is replaced, or, when only set
//!   elements differ from the ruleset last applied, just those elements are added
//!   and removed (a single-rule change on a 100k-rule ruleset). A refused
//!   transaction leaves the previous ruleset in force.
//! - After a full replace the table is read back and compared with what was sent;
//!   a mismatch is an error and the previous ruleset is restored. The
//!   structure is read back whole and every element of a set of up to 16k;
//!   a larger set is checked on a random sample of its elements, since
//!   dumping a set costs the kernel the square of its size (see
//!   [`netlink::verify`]; [`ApplyOptions::full_readback`] reads every
//!   element). After an element change only the changed elements are read
//!   back.
//! - The kernel is reached over nf_tables netlink ([`netlink`]): one batch in,
//!   dumps out, no process spawned; the `nft` binary is the fallback ([`nft`]).

pub mod compile;
pub mod iptables;
pub mod netlink;
pub mod nft;
pub mod readback;

use compile::{compile, CompiledTable, Origin, TABLE};
use model::{Direction, Ruleset};
use readback::KernelTable;
use serde::Serialize;
use std::collections::HashMap;

pub use nft::NftError;

/// What went wrong talking to the packet filter.
#[derive(Debug, thiserror::Error)]
pub enum NetfilterError {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error("the kernel's table differs from what was sent ({}); the previous ruleset was restored", .0.join("; "))]
    VerifyFailed(Vec<String>),
}

/// How a ruleset was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyMode {
    /// The table was replaced whole.
    Replace,
    /// Only set elements changed.
    Elements,
    /// The kernel already held it.
    Unchanged,
}

/// The result of [`apply_atomically`].
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub mode: ApplyMode,
    pub chains: usize,
    pub nft_rules: usize,
    pub sets: usize,
    pub elements: usize,
    /// Whether the kernel was read back and matched.
    pub verified: bool,
    /// Whether that read-back compared every element; `false` when a set
    /// larger than [`netlink::verify::FULL_READBACK_ELEMENTS`] was checked
    /// on a sample of its elements.
    pub every_element: bool,
}

/// Options of [`apply_atomically`].
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// Read the table back after a full replace and compare.
    pub verify: bool,
    /// Compare every element of every set, however large, instead of a
    /// sample of the large ones.
    pub full_readback: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            verify: true,
            full_readback: false,
        }
    }
}

/// Makes the kernel enforce `desired` in one transaction.
///
/// `previous` is the ruleset portwall applied last (if any, and if the table still
/// exists): when only set elements differ, only those change, which keeps
/// counters and takes milliseconds on any size of ruleset.
pub fn apply_atomically(
    desired: &Ruleset,
    previous: Option<&Ruleset>,
    opts: ApplyOptions,
) -> Result<ApplyReport, NetfilterError> {
    // The two compiles are independent: at 100k rules each takes a good
    // part of a one-rule change, so the previous ruleset is compiled on a
    // second thread.
    let _span = tracing::debug_span!("apply_atomically", rules = desired.rules.len()).entered();
    let (compiled, prev_compiled) = tracing::debug_span!("compile").in_scope(|| {
        std::thread::scope(|scope| {
            let prev = previous.map(|p| scope.spawn(move || compile(p, TABLE)));
            let compiled = compile(desired, TABLE);
            let prev = prev.map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
            (compiled, prev)
        })
    });
    let table_exists = tracing::debug_span!("table exists")
        .in_scope(|| nft::list_table_names("inet"))?
        .iter()
        .any(|t| t == TABLE);
    let (chains, nft_rules, sets, elements) = (
        compiled.chains.len(),
        compiled.chains.iter().map(|c| c.rules.len()).sum(),
        compiled.sets.len(),
        compiled.element_count(),
    );
    let sampled = !opts.full_readback && compiled.sets.iter().any(netlink::verify::is_sampled);
    let report = |mode, verified: bool| ApplyReport {
        mode,
        chains,
        nft_rules,
        sets,
        elements,
        verified,
        // An element delta reads back every element it changed.
        every_element: verified && (mode == ApplyMode::Elements || !sampled),
    };
    if let (true, Some(prev)) = (table_exists, &prev_compiled) {
        let delta = tracing::debug_span!("delta").in_scope(|| compiled.delta_batch(prev));
        if let Some(delta) = delta {
            if delta.objects.is_empty() {
                return Ok(report(ApplyMode::Unchanged, false));
            }
            // A delta that the kernel refuses (someone edited the table by hand),
            // or whose elements do not read back, falls through to a full
            // replace.
            if nft::run(&delta).is_ok() {
                match opts.verify.then(|| verify_delta(&delta)) {
                    None => return Ok(report(ApplyMode::Elements, false)),
                    Some(Some(true)) => return Ok(report(ApplyMode::Elements, true)),
                    Some(None) => return Ok(report(ApplyMode::Elements, false)),
                    Some(Some(false)) => {}
                }
            }
        }
    }
    replace(&compiled)?;
    if opts.verify {
        let diffs = if opts.full_readback {
            verify(&compiled)?
        } else {
            verify_applied(&compiled)?
        };
        if !diffs.is_empty() {
            match prev_compiled.as_ref() {
                Some(prev) => replace(prev)?,
                None => {
                    nft::delete_table("inet", TABLE)?;
                }
            }
            return Err(NetfilterError::VerifyFailed(diffs));
        }
    }
    Ok(report(ApplyMode::Replace, opts.verify))
}

/// Replaces the table whole with `compiled` in one transaction.
///
/// Over netlink the sets' elements are written straight from the compiled
/// elements (no nft expression in between).
#[tracing::instrument(level = "debug", skip_all)]
fn replace(compiled: &CompiledTable) -> Result<(), NftError> {
    if nft::backend() == nft::Backend::Netlink {
        let skeleton =
            tracing::debug_span!("skeleton").in_scope(|| compiled.replace_batch_typed(false));
        let by_set: HashMap<&str, &[compile::Element]> = compiled
            .sets
            .iter()
            .map(|s| (s.name.as_str(), s.elements.as_slice()))
            .collect();
        match netlink::try_apply_compiled(&skeleton, &by_set) {
            Ok(()) => return Ok(()),
            Err(e) if !e.use_nft_instead() => return Err(e.into()),
            Err(_) => {}
        }
    }
    nft::run_nft(&compiled.full_batch().to_string())
}

/// Whether an applied element delta reads back: `None` when that cannot be
/// told (the `nft` backend).
fn verify_delta(delta: &nftables::schema::Nftables<'_>) -> Option<bool> {
    if nft::backend() != nft::Backend::Netlink {
        return None;
    }
    netlink::try_verify_delta(delta).ok().map(|d| d.is_empty())
}

/// [`verify`] as an apply reads back: the structure whole, every element of
/// the sets of up to 16k elements, a sample of larger ones
/// ([`netlink::verify`]).
#[tracing::instrument(level = "debug", skip_all)]
pub fn verify_applied(compiled: &CompiledTable) -> Result<Vec<String>, NetfilterError> {
    match verify_over_netlink(compiled, netlink::try_verify_applied)? {
        Some(d) => Ok(d),
        None => verify(compiled),
    }
}

/// Compares the kernel's table with `compiled`, every element; empty when
/// they agree.
#[tracing::instrument(level = "debug", skip_all)]
pub fn verify(compiled: &CompiledTable) -> Result<Vec<String>, NetfilterError> {
    if let Some(d) = verify_over_netlink(compiled, netlink::try_verify_compiled)? {
        return Ok(d);
    }
    match nft::list_table("inet", &compiled.table)? {
        None => Ok(vec![missing_table(compiled)]),
        Some(v) => Ok(readback::differences(compiled, &KernelTable::from_json(&v))),
    }
}

/// The differences `read` finds over netlink; `None` when the `nft` binary
/// is to be used instead.
fn verify_over_netlink(
    compiled: &CompiledTable,
    read: fn(&CompiledTable) -> Result<Option<Vec<String>>, netlink::Error>,
) -> Result<Option<Vec<String>>, NetfilterError> {
    if nft::backend() != nft::Backend::Netlink {
        return Ok(None);
    }
    match read(compiled) {
        Ok(Some(d)) => Ok(Some(d)),
        Ok(None) => Ok(Some(vec![missing_table(compiled)])),
        Err(e) if !e.use_nft_instead() => Err(NftError::from(e).into()),
        Err(_) => Ok(None),
    }
}

fn missing_table(compiled: &CompiledTable) -> String {
    format!("table inet {} does not exist", compiled.table)
}

/// How the kernel's table differs from `ruleset` (someone ran `nft` by hand);
/// `None` when there is no portwall table.
pub fn drift(ruleset: &Ruleset) -> Result<Option<Vec<String>>, NetfilterError> {
    let compiled = compile(ruleset, TABLE);
    // Over netlink, compared on the elements' bytes as `verify` does: at 100k
    // elements several times cheaper than building and parsing nft's JSON.
    if nft::backend() == nft::Backend::Netlink {
        match netlink::try_verify_compiled(&compiled) {
            Ok(d) => return Ok(d),
            Err(e) if !e.use_nft_instead() => return Err(NftError::from(e).into()),
            Err(_) => {}
        }
    }
    match nft::list_table("inet", TABLE)? {
        None => Ok(None),
        Some(v) => Ok(Some(readback::differences(
            &compiled,
            &KernelTable::from_json(&v),
        ))),
    }
}

/// Removes portwall's table (`portwall disable`). Returns whether it existed.
pub fn remove() -> Result<bool, NetfilterError> {
    Ok(nft::delete_table("inet", TABLE)?)
}

/// Whether portwall's table is loaded.
pub fn is_loaded() -> Result<bool, NetfilterError> {
    Ok(nft::list_table_names("inet")?.iter().any(|t| t == TABLE))
}

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for Count {
    fn add_assign(&mut self, o: Count) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

/// Counters read from the kernel, mapped back to the model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Per model rule, in order.
    pub rules: Vec<Count>,
    /// What each direction's default policy decided.
    pub policies: HashMap<Direction, Count>,
    /// The built-in rules (established, invalid, loopback, neighbour-discovery).
    pub builtins: HashMap<String, Count>,
}

impl Counters {
    /// All zero, for a ruleset of `rules` model rules.
    pub(crate) fn for_rules(rules: usize) -> Counters {
        Counters {
            rules: vec![Count::default(); rules],
            ..Default::default()
        }
    }

    /// Adds the count `n` of a compiled nft rule to what it stands for: a
    /// model rule, a default policy or a built-in. The helpers of `reject`
    /// and `limit` rules count what their model rule already counts.
    pub(crate) fn add_rule(&mut self, origin: &Origin, n: Count) {
        match origin {
            Origin::Rule(i) if *i < self.rules.len() => self.rules[*i] += n,
            Origin::Policy(d) => *self.policies.entry(*d).or_default() += n,
            Origin::Builtin(b) if !b.starts_with("reject") && *b != "limit" => {
                *self.builtins.entry(b.to_string()).or_default() += n
            }
            _ => {}
        }
    }
}

/// Reads the counters of the loaded table for `ruleset` (which should be the
/// ruleset that is loaded; see [`drift`]). `None` when no table is loaded.
pub fn counters(ruleset: &Ruleset) -> Result<Option<Counters>, NetfilterError> {
    let compiled = compile(ruleset, TABLE);
    // Over netlink, matched on the elements' bytes: no JSON of 100k elements
    // to build and parse again.
    if nft::backend() == nft::Backend::Netlink {
        match netlink::counters::read_counters(&compiled, ruleset.rules.len()) {
            Ok(c) => return Ok(c),
            Err(e) if !e.use_nft_instead() => return Err(NftError::from(e).into()),
            Err(_) => {}
        }
    }
    let Some(v) = nft::list_table("inet", TABLE)? else {
        return Ok(None);
    };
    Ok(Some(counters_from_json(ruleset, &v)))
}

/// [`drift`] and [`counters`] of one ruleset (the one that is loaded), from
/// one read of the table where netlink is used: `status --verbose` wants
/// both, and at 100k elements each read of a set costs a good part of a
/// second. `None` when no table is loaded.
pub fn drift_and_counters(
    ruleset: &Ruleset,
) -> Result<Option<(Vec<String>, Counters)>, NetfilterError> {
    if nft::backend() == nft::Backend::Netlink {
        let compiled = compile(ruleset, TABLE);
        match netlink::counters::differences_and_counters(&compiled, ruleset.rules.len()) {
            Ok(both) => return Ok(both),
            Err(e) if !e.use_nft_instead() => return Err(NftError::from(e).into()),
            Err(_) => {}
        }
    }
    match (drift(ruleset)?, counters(ruleset)?) {
        (Some(d), Some(c)) => Ok(Some((d, c))),
        _ => Ok(None),
    }
}

/// The counters of `ruleset`'s table in `v`, the table as `nft -j list
/// table` prints it (the path of the `nft` backend).
pub fn counters_from_json(ruleset: &Ruleset, v: &serde_json::Value) -> Counters {
    let compiled = compile(ruleset, TABLE);
    let kernel = KernelTable::from_json(v);
    let mut c = Counters::for_rules(ruleset.rules.len());
    for set in compiled.sets.iter().filter(|s| s.counts_rules) {
        let Some(kelems) = kernel.sets.get(&set.name) else {
            continue;
        };
        let owner: HashMap<&[compile::Dim], usize> = set
            .elements
            .iter()
            .map(|e| (e.key.as_slice(), e.rule))
            .collect();
        for (key, packets, bytes) in readback::decoded_elements(set, kelems) {
            if let Some(&rule) = key.as_deref().and_then(|k| owner.get(k)) {
                c.rules[rule] += Count { packets, bytes };
            }
        }
    }
    for (chain, kchain) in compiled.chains.iter().filter_map(|ch| {
        kernel
            .chains
            .iter()
            .find(|k| k.name == ch.name)
            .map(|k| (ch, k))
    }) {
        for (spec, krule) in chain.rules.iter().zip(&kchain.rules) {
            let n = Count {
                packets: krule.packets,
                bytes: krule.bytes,
            };
            c.add_rule(&spec.origin, n);
        }
    }
    c
}

/// Sets every counter to zero by replacing the table with itself in one
/// transaction (nft 1.0.6 cannot reset anonymous rule counters in place).
pub fn zero_counters(ruleset: &Ruleset) -> Result<(), NetfilterError> {
    replace(&compile(ruleset, TABLE))?;
    Ok(())
}
