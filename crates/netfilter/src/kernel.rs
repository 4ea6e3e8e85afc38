//! The one seam between portwall and the kernel's packet filter: [`Kernel`],
//! which program reaches it.
//!
//! A binary chooses it once at start-up ([`Kernel::detect`], then its own
//! flag or environment variable) and passes it down; no library reads the
//! environment. Every operation on portwall's table (apply, read back,
//! counters, remove) is a method of [`Kernel`], so "which code reached the
//! kernel?" has one answer: the variant that was chosen.
//!
//! **Falling back from netlink to `nft`.** It happens in one place,
//! [`Kernel::detect_nftables`], for the reasons [`netlink::Fallback`] names:
//! the kernel has no nf_tables over netlink (`EPROTONOSUPPORT`,
//! `EAFNOSUPPORT`). Any other netlink error stands: a refusal is the
//! kernel's answer, and a missing permission (`EPERM`, `EACCES`) would
//! refuse `nft` as well. The one other fallback is for JSON given as input
//! ([`Kernel::apply_json`]): what the netlink encoder does not translate
//! ([`netlink::Fallback::UntranslatedJson`]) is applied by `nft`.

use crate::carry::{self, Carried};
use crate::compile::{self, compile, CompiledTable, TABLE};
use crate::netlink::{self, Fallback};
use crate::nft::{self, NftError};
use crate::readback::{self, KernelTable};
use crate::{
    counters_from_table, iptables, ApplyMode, ApplyOptions, ApplyReport, Counters, CountersKept,
    NetfilterError,
};
use model::Ruleset;
use nftables::schema::Nftables;
use serde_json::Value;
use std::collections::HashMap;

/// Which program reaches the kernel's packet filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// nf_tables over netlink, with portwall's own encoder: one batch in,
    /// dumps out, no process spawned (the default).
    Netlink,
    /// The `nft` binary (`nft -j -f -`, `nft -j list table`): kernels without
    /// nf_tables netlink for portwall, or chosen by hand.
    NftBinary,
    /// portwall's chains through `iptables-restore` (hosts without nftables).
    Iptables,
}

impl std::str::FromStr for Kernel {
    type Err = String;
    fn from_str(s: &str) -> Result<Kernel, String> {
        match s.to_ascii_lowercase().as_str() {
            "netlink" => Ok(Kernel::Netlink),
            "nft" | "nft-binary" => Ok(Kernel::NftBinary),
            "iptables" | "ipt" => Ok(Kernel::Iptables),
            _ => Err(format!(
                "'{s}' is not a way to reach the kernel: netlink, nft or iptables"
            )),
        }
    }
}

impl From<netlink::Error> for NftError {
    fn from(e: netlink::Error) -> NftError {
        use netlink::Error as E;
        match e {
            E::Kernel { .. } | E::Invalid(_) | E::NotPermitted(_) => {
                NftError::Rejected(e.to_string())
            }
            E::NoNfTables(_) | E::Socket(_) => NftError::NotInstalled(e.to_string()),
            E::Unsupported(_) | E::Io(_) => NftError::Output(e.to_string()),
        }
    }
}

impl From<netlink::Error> for NetfilterError {
    fn from(e: netlink::Error) -> NetfilterError {
        NetfilterError::Nft(e.into())
    }
}

impl Kernel {
    pub fn as_str(self) -> &'static str {
        match self {
            Kernel::Netlink => "netlink",
            Kernel::NftBinary => "nft",
            Kernel::Iptables => "iptables",
        }
    }

    /// What this host has: nftables (over netlink, or through `nft` when the
    /// kernel has no nf_tables netlink: [`Kernel::detect_nftables`]), else
    /// iptables when its tools run.
    pub fn detect() -> Kernel {
        match Kernel::detect_nftables() {
            Kernel::NftBinary if !nft::works() && iptables::available() => Kernel::Iptables,
            k => k,
        }
    }

    /// nftables over netlink, or the `nft` binary when the kernel has no
    /// nf_tables netlink: the one place netlink falls back to `nft` (see the
    /// module docs). Any other netlink error keeps netlink, where the first
    /// operation reports it.
    pub fn detect_nftables() -> Kernel {
        match netlink::probe() {
            Err(e) if e.fallback() == Some(Fallback::NoNfTables) => {
                tracing::debug!(error = %e, "no nf_tables netlink; using the nft binary");
                Kernel::NftBinary
            }
            _ => Kernel::Netlink,
        }
    }

    fn nftables_only(self, what: &str) -> Result<(), NftError> {
        match self {
            Kernel::Iptables => Err(NftError::Rejected(format!(
                "{what} needs nftables; the iptables backend has no nftables table"
            ))),
            _ => Ok(()),
        }
    }

    // ---- nftables tables of any family and name (the host's and the edge's) ----

    /// Applies a typed batch as one transaction. With `set_counters`, every
    /// set it adds gets a `counter` statement (each element its own counter),
    /// which the `nftables` crate's `Set` cannot express; `json` is the batch
    /// as `nft -j -f` reads it, with those statements, for the `nft` binary.
    pub fn apply_batch(
        self,
        batch: &Nftables<'_>,
        set_counters: bool,
        json: impl FnOnce() -> String,
    ) -> Result<(), NftError> {
        self.nftables_only("applying an nftables batch")?;
        match self {
            Kernel::Netlink => Ok(netlink::try_apply_typed(batch, set_counters)?),
            _ => nft::run_nft(&json()),
        }
    }

    /// Applies an nft JSON batch (`{"nftables": [...]}`) as one transaction.
    /// Over netlink, what the encoder does not translate goes to `nft`
    /// ([`Fallback::UntranslatedJson`]).
    pub fn apply_json(self, batch: &Value) -> Result<(), NftError> {
        self.nftables_only("applying an nftables batch")?;
        if self == Kernel::Netlink {
            match crate::nft_json::try_apply_json(batch) {
                Err(e) if e.fallback() == Some(Fallback::UntranslatedJson) => {
                    tracing::debug!(error = %e, "applying with the nft binary");
                }
                r => return Ok(r?),
            }
        }
        nft::run_nft(&batch.to_string())
    }

    /// The names of the tables of one family.
    pub fn table_names(self, family: &str) -> Result<Vec<String>, NftError> {
        self.nftables_only("listing nftables tables")?;
        match self {
            Kernel::Netlink => Ok(netlink::try_list_table_names(family)?),
            _ => nft::list_table_names(family),
        }
    }

    /// Whether the table exists.
    pub fn has_table(self, family: &str, name: &str) -> Result<bool, NftError> {
        Ok(self.table_names(family)?.iter().any(|t| t == name))
    }

    /// Deletes the table if it exists; returns whether it did.
    pub fn delete_table(self, family: &str, name: &str) -> Result<bool, NftError> {
        if !self.has_table(family, name)? {
            return Ok(false);
        }
        match self {
            Kernel::Netlink => netlink::try_delete_table(family, name)?,
            _ => nft::delete_table(family, name)?,
        }
        Ok(true)
    }

    /// The table as the kernel holds it, decoded into typed values (chains,
    /// rules with their comments and counters, set elements by their key
    /// types); `None` when it does not exist.
    pub fn read_table(self, family: &str, name: &str) -> Result<Option<KernelTable>, NftError> {
        self.nftables_only("reading an nftables table")?;
        match self {
            Kernel::Netlink => Ok(netlink::try_read_table(family, name)?),
            _ => Ok(nft::list_table(family, name)?.map(|v| KernelTable::from_json(&v))),
        }
    }

    // ---- portwall's own table, `inet portwall` ----------------------------------

    /// Makes the kernel enforce `desired` in one transaction.
    ///
    /// `previous` is the ruleset portwall applied last (if any, and if the
    /// table still exists): when only set elements differ, only those change,
    /// which keeps counters and takes milliseconds on any size of ruleset.
    pub fn apply(
        self,
        desired: &Ruleset,
        previous: Option<&Ruleset>,
        opts: ApplyOptions,
    ) -> Result<ApplyReport, NetfilterError> {
        if self == Kernel::Iptables {
            iptables_supports(desired)?;
            return Ok(iptables::Iptables::default().apply_carrying(desired, previous)?);
        }
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
        let table_exists =
            tracing::debug_span!("table exists").in_scope(|| self.has_table("inet", TABLE))?;
        let (chains, nft_rules, sets, elements) = (
            compiled.chains.len(),
            compiled.chains.iter().map(|c| c.rules.len()).sum(),
            compiled.sets.len(),
            compiled.element_count(),
        );
        let sampled = !opts.full_readback && compiled.sets.iter().any(netlink::verify::is_sampled);
        let report = |mode, verified: bool, counters| ApplyReport {
            mode,
            counters,
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
                    return Ok(report(ApplyMode::Unchanged, false, CountersKept::InPlace));
                }
                // A delta that the kernel refuses (someone edited the table by
                // hand), or whose elements do not read back, falls through to a
                // full replace.
                let json = || serde_json::to_string(&delta).expect("the nft schema serializes");
                if self.apply_batch(&delta, false, json).is_ok() {
                    // Verified, not verified (`None`), or read back wrong (falls through).
                    let verified = opts.verify.then(|| self.verify_delta(&delta)).flatten();
                    if verified != Some(false) {
                        let ok = verified == Some(true);
                        return Ok(report(ApplyMode::Elements, ok, CountersKept::InPlace));
                    }
                }
            }
        }
        if compiled.lists_unloaded() {
            return Err(NetfilterError::ListsNotLoaded);
        }
        // A replacement starts a new table: it is created with the counts
        // the old one reached, rule by rule (see `carry`).
        let carried = match (self, table_exists, previous, &prev_compiled) {
            (Kernel::Netlink, true, Some(prev), Some(prev_compiled)) => {
                match netlink::counters::read_counters(prev_compiled, prev.rules.len()) {
                    Ok(Some(counted)) => Some(carry::plan(prev, &counted, desired, &compiled)),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::debug!(error = %e, "counters not read: the new table counts from zero");
                        None
                    }
                }
            }
            _ => None,
        };
        self.replace(&compiled, carried.as_ref())?;
        if opts.verify {
            let diffs = if opts.full_readback {
                self.verify(&compiled)?
            } else {
                self.verify_applied(&compiled)?
            };
            if !diffs.is_empty() {
                match prev_compiled.as_ref() {
                    Some(prev) => self.replace(prev, None)?,
                    None => {
                        self.delete_table("inet", TABLE)?;
                    }
                }
                return Err(NetfilterError::VerifyFailed(diffs));
            }
        }
        let counters = match carried {
            Some(_) => CountersKept::Carried,
            None => CountersKept::Restarted,
        };
        Ok(report(ApplyMode::Replace, opts.verify, counters))
    }

    /// Replaces the table whole with `compiled` in one transaction.
    ///
    /// Over netlink the sets' elements are written straight from the
    /// compiled elements (no nft expression in between).
    #[tracing::instrument(level = "debug", skip_all)]
    fn replace(self, compiled: &CompiledTable, carried: Option<&Carried>) -> Result<(), NftError> {
        if self != Kernel::Netlink {
            return nft::run_nft(&compiled.full_batch().to_string());
        }
        let mut skeleton =
            tracing::debug_span!("skeleton").in_scope(|| compiled.replace_batch_typed(false));
        if let Some(carried) = carried {
            carry::seed_rules(&mut skeleton, compiled, carried);
        }
        let by_set: HashMap<&str, &[compile::Element]> = compiled
            .sets
            .iter()
            .map(|s| (s.name.as_str(), s.elements.as_slice()))
            .collect();
        Ok(netlink::try_apply_compiled(
            &skeleton,
            &by_set,
            carried.map(|c| &c.elements),
        )?)
    }

    /// Whether an applied element delta reads back: `None` when that cannot
    /// be told (the `nft` binary).
    fn verify_delta(self, delta: &Nftables<'_>) -> Option<bool> {
        if self != Kernel::Netlink {
            return None;
        }
        netlink::try_verify_delta(delta).ok().map(|d| d.is_empty())
    }

    /// [`Kernel::verify`] as an apply reads back: the structure whole, every
    /// element of the sets of up to 16k elements, a sample of larger ones
    /// ([`netlink::verify`]); the `nft` binary reads every element.
    #[tracing::instrument(level = "debug", skip_all)]
    pub fn verify_applied(self, compiled: &CompiledTable) -> Result<Vec<String>, NetfilterError> {
        match self {
            Kernel::Netlink => Ok(netlink::try_verify_applied(compiled)?
                .unwrap_or_else(|| vec![missing_table(compiled)])),
            _ => self.verify(compiled),
        }
    }

    /// Compares the kernel's table with `compiled`, every element; empty
    /// when they agree.
    #[tracing::instrument(level = "debug", skip_all)]
    pub fn verify(self, compiled: &CompiledTable) -> Result<Vec<String>, NetfilterError> {
        Ok(self
            .differences(compiled)?
            .unwrap_or_else(|| vec![missing_table(compiled)]))
    }

    /// How the kernel's `inet` table differs from `compiled`, every element
    /// compared; `None` when it does not exist.
    fn differences(self, compiled: &CompiledTable) -> Result<Option<Vec<String>>, NetfilterError> {
        self.nftables_only("comparing the nftables table")?;
        match self {
            // Compared on the elements' bytes: at 100k elements several times
            // cheaper than decoding them.
            Kernel::Netlink => Ok(netlink::try_verify_compiled(compiled)?),
            _ => Ok(self
                .read_table("inet", &compiled.table)?
                .map(|k| readback::differences(compiled, &k))),
        }
    }

    /// How the kernel's table differs from `ruleset` (someone ran `nft` by
    /// hand); `None` when there is no portwall table.
    pub fn drift(self, ruleset: &Ruleset) -> Result<Option<Vec<String>>, NetfilterError> {
        if self == Kernel::Iptables {
            return Ok(iptables::drift(ruleset)?);
        }
        self.differences(&compile(ruleset, TABLE))
    }

    /// Removes portwall's table (`portwall disable`). Returns whether it
    /// existed.
    pub fn remove(self) -> Result<bool, NetfilterError> {
        match self {
            Kernel::Iptables => Ok(iptables::remove()?),
            _ => Ok(self.delete_table("inet", TABLE)?),
        }
    }

    /// Whether portwall's table is loaded.
    pub fn is_loaded(self) -> Result<bool, NetfilterError> {
        match self {
            Kernel::Iptables => Ok(iptables::is_loaded()?),
            _ => Ok(self.has_table("inet", TABLE)?),
        }
    }

    /// Reads the counters of the loaded table for `ruleset` (which should be
    /// the ruleset that is loaded; see [`Kernel::drift`]). `None` when no
    /// table is loaded.
    pub fn counters(self, ruleset: &Ruleset) -> Result<Option<Counters>, NetfilterError> {
        if self == Kernel::Iptables {
            return Ok(iptables::counters(ruleset)?);
        }
        let compiled = compile(ruleset, TABLE);
        match self {
            // Matched on the elements' bytes: nothing of 100k elements to
            // decode.
            Kernel::Netlink => Ok(netlink::counters::read_counters(
                &compiled,
                ruleset.rules.len(),
            )?),
            _ => Ok(self
                .read_table("inet", TABLE)?
                .map(|k| counters_from_table(&compiled, ruleset.rules.len(), &k))),
        }
    }

    /// [`Kernel::drift`] and [`Kernel::counters`] of one ruleset (the one
    /// that is loaded), from one read of the table over netlink:
    /// `status --verbose` wants both, and at 100k elements each read of a set
    /// costs a good part of a second. `None` when no table is loaded.
    pub fn drift_and_counters(
        self,
        ruleset: &Ruleset,
    ) -> Result<Option<(Vec<String>, Counters)>, NetfilterError> {
        if self == Kernel::Netlink {
            let compiled = compile(ruleset, TABLE);
            return Ok(netlink::counters::differences_and_counters(
                &compiled,
                ruleset.rules.len(),
            )?);
        }
        match (self.drift(ruleset)?, self.counters(ruleset)?) {
            (Some(d), Some(c)) => Ok(Some((d, c))),
            _ => Ok(None),
        }
    }

    /// Sets every counter to zero: with nftables by replacing the table with
    /// itself in one transaction (nft 1.0.6 cannot reset anonymous rule
    /// counters in place).
    pub fn zero_counters(self, ruleset: &Ruleset) -> Result<(), NetfilterError> {
        match self {
            Kernel::Iptables => {
                iptables_supports(ruleset)?;
                Ok(iptables::Iptables::default().zero_counters(ruleset)?)
            }
            _ => {
                let compiled = compile(ruleset, TABLE);
                if compiled.lists_unloaded() {
                    return Err(NetfilterError::ListsNotLoaded);
                }
                Ok(self.replace(&compiled, None)?)
            }
        }
    }
}

/// Refuses what the iptables backend cannot enforce yet (temporary rules),
/// and asks for the lists its rules name: never a rule applied without its
/// list.
fn iptables_supports(ruleset: &Ruleset) -> Result<(), NetfilterError> {
    // Every apply makes the ipsets anew (see `iptables`): the lists must be
    // loaded.
    if ruleset
        .rules
        .iter()
        .flat_map(|r| r.lists())
        .any(|l| ruleset.lists.get(l).is_none())
    {
        return Err(NetfilterError::ListsNotLoaded);
    }
    if ruleset.rules.iter().any(|r| r.until.is_some()) {
        return Err(NetfilterError::Unsupported("temporary rules (--for)"));
    }
    Ok(())
}

fn missing_table(compiled: &CompiledTable) -> String {
    format!("table inet {} does not exist", compiled.table)
}
