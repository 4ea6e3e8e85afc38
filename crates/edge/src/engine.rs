//! The policy the edge enforces, and keeping the kernel equal to it.
//!
//! An [`Engine`] holds the servers' policies at one revision, their compiled
//! elements grouped by destination address, and whether the kernel's table is
//! known to hold exactly those elements. It changes only through
//! [`Engine::apply`] (a panel answer) and [`Engine::restore`] (the snapshot on
//! disk), and only after the kernel accepted the change:
//!
//! - Everything is validated first ([`ServerPolicy::validate`]); one invalid
//!   policy rejects the whole answer and nothing changes.
//! - A delta recompiles only the addresses of the servers it touches and sends
//!   one transaction with exactly the elements that differ; its cost does not
//!   depend on how many other servers there are.
//! - A snapshot is diffed the same way when the kernel is known to hold the
//!   previous state, and otherwise replaces the table whole, also in one
//!   transaction.
//! - If the kernel refuses a delta (someone removed an element by hand), the
//!   engine falls back to replacing the whole table with the new state; if that
//!   is refused too, the previous table stays in force and the error is returned.
//!
//! Blocking: `apply` talks to the kernel (netlink, or `nft`); call it from a
//! blocking thread.

use crate::compile::{self, Element, KernelTable, Key, Owner, SetId, TableSpec};
use crate::EdgeError;
use model::network::sync::{RuleCounter, ServerPolicy, SyncResponse};
use netfilter::Kernel;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The servers' policies at one revision, shared cheaply (a watch value).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySnapshot {
    pub revision: u64,
    pub servers: Arc<BTreeMap<i64, Arc<ServerPolicy>>>,
}

impl PolicySnapshot {
    pub fn rule_count(&self) -> usize {
        self.servers
            .values()
            .filter(|s| s.enforced)
            .map(|s| s.rules.len())
            .sum()
    }
    pub fn enforced_count(&self) -> usize {
        self.servers.values().filter(|s| s.enforced).count()
    }
}

/// How a change reached the kernel (the host's modes, shared).
pub use netfilter::ApplyMode;

/// What [`Engine::apply`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyOutcome {
    pub revision: u64,
    pub mode: ApplyMode,
    pub added: usize,
    pub removed: usize,
    /// Elements in the table now.
    pub elements: usize,
    /// (server id, policy revision) of every server this change realized.
    pub servers: Vec<(i64, u64)>,
    /// Whether the table was read back and matched.
    pub verified: bool,
    #[serde(skip)]
    pub took: Duration,
}

/// Options of the engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Read the table back after a full replace when it has at most this many
    /// elements (a netlink dump reads 100k elements in well under a second;
    /// `nft -j list`, the fallback, takes several).
    pub verify_limit: usize,
    /// How the kernel is reached: netlink (the default) or the `nft` binary;
    /// the binary chooses ([`netfilter::Kernel::detect_nftables`], or its
    /// flag).
    pub kernel: Kernel,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            verify_limit: 20_000,
            kernel: Kernel::Netlink,
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Engine {
    table: TableSpec,
    opts: EngineOptions,
    policy: PolicySnapshot,
    /// Enforced servers per address.
    by_addr: HashMap<IpAddr, BTreeSet<i64>>,
    /// Compiled elements per address.
    elements: HashMap<IpAddr, Vec<Element>>,
    element_count: usize,
    /// Whether the kernel is known to hold exactly `elements`.
    in_kernel: bool,
}

fn validate_all<'a>(servers: impl IntoIterator<Item = &'a ServerPolicy>) -> Result<(), EdgeError> {
    let mut errors = Vec::new();
    for s in servers {
        if let Err(e) = s.validate() {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(EdgeError::Invalid(errors.join("; ")))
    }
}

fn addresses(s: &ServerPolicy) -> impl Iterator<Item = IpAddr> + '_ {
    s.enforced
        .then_some(s.addresses.iter().copied())
        .into_iter()
        .flatten()
}

impl Engine {
    pub fn new(table: TableSpec, opts: EngineOptions) -> Engine {
        Engine {
            table,
            opts,
            policy: PolicySnapshot::default(),
            by_addr: HashMap::new(),
            elements: HashMap::new(),
            element_count: 0,
            in_kernel: false,
        }
    }

    pub fn table(&self) -> &TableSpec {
        &self.table
    }

    /// The policy in force.
    pub fn policy(&self) -> &PolicySnapshot {
        &self.policy
    }

    /// The revision in force, `None` before anything was applied.
    pub fn revision(&self) -> Option<u64> {
        self.in_kernel.then_some(self.policy.revision)
    }

    pub fn element_count(&self) -> usize {
        self.element_count
    }

    /// Every compiled element.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.elements.values().flatten()
    }

    /// Records that nothing changed up to `revision` (an `Unchanged` answer).
    pub fn advance(&mut self, revision: u64) {
        if self.in_kernel && revision > self.policy.revision {
            self.policy.revision = revision;
        }
    }

    /// Replaces the table whole with `servers` at `revision` (start-up, from the
    /// snapshot on disk).
    pub fn restore(
        &mut self,
        revision: u64,
        servers: Vec<ServerPolicy>,
    ) -> Result<ApplyOutcome, EdgeError> {
        self.in_kernel = false;
        self.apply(&SyncResponse::Snapshot { revision, servers })
    }

    /// Applies a panel answer. On error nothing changed (in memory or in the
    /// kernel), except that after an unexpected kernel refusal the engine
    /// replaces the whole table at the next change.
    pub fn apply(&mut self, resp: &SyncResponse) -> Result<ApplyOutcome, EdgeError> {
        let start = Instant::now();
        let mut outcome = match resp {
            SyncResponse::Unchanged { revision } => ApplyOutcome {
                revision: *revision,
                mode: ApplyMode::Unchanged,
                added: 0,
                removed: 0,
                elements: self.element_count,
                servers: Vec::new(),
                verified: false,
                took: Duration::ZERO,
            },
            SyncResponse::Snapshot { revision, servers } => {
                self.apply_snapshot(*revision, servers)?
            }
            SyncResponse::Delta {
                from,
                revision,
                changed,
                removed,
            } => {
                if !self.in_kernel || *from != self.policy.revision {
                    return Err(EdgeError::Gap {
                        from: *from,
                        applied: self.revision(),
                    });
                }
                self.apply_delta(*revision, changed, removed)?
            }
        };
        outcome.took = start.elapsed();
        Ok(outcome)
    }

    fn apply_snapshot(
        &mut self,
        revision: u64,
        servers: &[ServerPolicy],
    ) -> Result<ApplyOutcome, EdgeError> {
        validate_all(servers)?;
        let mut map: BTreeMap<i64, Arc<ServerPolicy>> = BTreeMap::new();
        for s in servers {
            if map.insert(s.server_id, Arc::new(s.clone())).is_some() {
                return Err(EdgeError::Invalid(format!(
                    "server {} appears twice in the snapshot",
                    s.server_id
                )));
            }
        }
        let elements = compile::compile_all(map.values().map(|s| s.as_ref()));
        let count: usize = elements.values().map(Vec::len).sum();
        let realized: Vec<(i64, u64)> = map.values().map(|s| (s.server_id, s.revision)).collect();
        let mut by_addr: HashMap<IpAddr, BTreeSet<i64>> = HashMap::new();
        for s in map.values() {
            for a in addresses(s) {
                by_addr.entry(a).or_default().insert(s.server_id);
            }
        }
        let (mode, added, removed, verified) = if self.in_kernel {
            let mut removed_keys = Vec::new();
            let mut added_elems = Vec::new();
            let empty = Vec::new();
            let addrs: HashSet<&IpAddr> = self.elements.keys().chain(elements.keys()).collect();
            for a in addrs {
                let (r, ad) = compile::diff(
                    self.elements.get(a).unwrap_or(&empty),
                    elements.get(a).unwrap_or(&empty),
                );
                removed_keys.extend(r);
                added_elems.extend(ad);
            }
            let (mode, verified) = self.send_delta(&removed_keys, &added_elems, &elements)?;
            (mode, added_elems.len(), removed_keys.len(), verified)
        } else {
            let verified = self.replace(&elements)?;
            (ApplyMode::Replace, count, 0, verified)
        };
        self.policy = PolicySnapshot {
            revision,
            servers: Arc::new(map),
        };
        self.by_addr = by_addr;
        self.elements = elements;
        self.element_count = count;
        self.in_kernel = true;
        Ok(ApplyOutcome {
            revision,
            mode,
            added,
            removed,
            elements: count,
            servers: realized,
            verified,
            took: Duration::ZERO,
        })
    }

    fn apply_delta(
        &mut self,
        revision: u64,
        changed: &[ServerPolicy],
        removed: &[i64],
    ) -> Result<ApplyOutcome, EdgeError> {
        validate_all(changed)?;
        let mut changes: BTreeMap<i64, Option<&ServerPolicy>> = BTreeMap::new();
        for id in removed {
            changes.insert(*id, None);
        }
        for s in changed {
            if changes.insert(s.server_id, Some(s)).is_some() {
                return Err(EdgeError::Invalid(format!(
                    "server {} appears twice in the delta",
                    s.server_id
                )));
            }
        }
        // Addresses whose elements may change: old and new ones of every server
        // the delta touches.
        let mut affected: BTreeSet<IpAddr> = BTreeSet::new();
        for (id, new) in &changes {
            if let Some(old) = self.policy.servers.get(id) {
                affected.extend(addresses(old));
            }
            if let Some(new) = new {
                affected.extend(addresses(new));
            }
        }
        // The enforced servers of each affected address after the change.
        let mut new_by_addr: BTreeMap<IpAddr, BTreeSet<i64>> = BTreeMap::new();
        for a in &affected {
            let mut ids: BTreeSet<i64> = self
                .by_addr
                .get(a)
                .map(|ids| {
                    ids.iter()
                        .copied()
                        .filter(|id| !changes.contains_key(id))
                        .collect()
                })
                .unwrap_or_default();
            for (id, new) in &changes {
                if let Some(new) = new {
                    if addresses(new).any(|x| x == *a) {
                        ids.insert(*id);
                    }
                }
            }
            new_by_addr.insert(*a, ids);
        }
        let lookup = |id: &i64| -> Option<&ServerPolicy> {
            match changes.get(id) {
                Some(Some(s)) => Some(*s),
                Some(None) => None,
                None => self.policy.servers.get(id).map(|s| s.as_ref()),
            }
        };
        let mut new_elements: HashMap<IpAddr, Vec<Element>> = HashMap::new();
        let mut removed_keys = Vec::new();
        let mut added_elems = Vec::new();
        let empty = Vec::new();
        for (a, ids) in &new_by_addr {
            let servers: Vec<&ServerPolicy> = ids.iter().filter_map(lookup).collect();
            let elems = compile::compile_address(*a, &servers);
            let (r, ad) = compile::diff(self.elements.get(a).unwrap_or(&empty), &elems);
            removed_keys.extend(r);
            added_elems.extend(ad);
            new_elements.insert(*a, elems);
        }
        // The state after the change, built before the kernel sees it so that a
        // fallback full replace has it.
        let mut elements = std::mem::take(&mut self.elements);
        let mut previous: HashMap<IpAddr, Option<Vec<Element>>> = HashMap::new();
        for (a, elems) in new_elements {
            let old = if elems.is_empty() {
                elements.remove(&a)
            } else {
                elements.insert(a, elems)
            };
            previous.insert(a, old);
        }
        let result = self.send_delta(&removed_keys, &added_elems, &elements);
        let (mode, verified) = match result {
            Ok(r) => r,
            Err(e) => {
                // Put the previous elements back: nothing changed.
                for (a, old) in previous {
                    match old {
                        Some(v) => {
                            elements.insert(a, v);
                        }
                        None => {
                            elements.remove(&a);
                        }
                    }
                }
                self.elements = elements;
                return Err(e);
            }
        };
        self.elements = elements;
        self.element_count = self.elements.values().map(Vec::len).sum();
        let servers = Arc::make_mut(&mut self.policy.servers);
        let mut realized = Vec::new();
        for (id, new) in changes {
            match new {
                Some(s) => {
                    realized.push((id, s.revision));
                    servers.insert(id, Arc::new(s.clone()));
                }
                None => {
                    servers.remove(&id);
                }
            }
        }
        for (a, ids) in new_by_addr {
            if ids.is_empty() {
                self.by_addr.remove(&a);
            } else {
                self.by_addr.insert(a, ids);
            }
        }
        self.policy.revision = revision;
        Ok(ApplyOutcome {
            revision,
            mode,
            added: added_elems.len(),
            removed: removed_keys.len(),
            elements: self.element_count,
            servers: realized,
            verified,
            took: Duration::ZERO,
        })
    }

    /// Sends an element delta; if the kernel refuses it, replaces the table
    /// whole with `all` (the state after the change).
    fn send_delta(
        &mut self,
        removed: &[(SetId, Key)],
        added: &[Element],
        all: &HashMap<IpAddr, Vec<Element>>,
    ) -> Result<(ApplyMode, bool), EdgeError> {
        if removed.is_empty() && added.is_empty() {
            return Ok((ApplyMode::Unchanged, false));
        }
        let batch = compile::delta_batch(&self.table, removed, added);
        let json = || netfilter::nft::json_with_set_counters(&batch);
        match self.opts.kernel.apply_batch(&batch, true, json) {
            Ok(()) => Ok((ApplyMode::Elements, false)),
            Err(e) => {
                tracing::warn!(error = %e, "the kernel refused an element delta; replacing the table");
                self.in_kernel = false;
                let verified = self.replace(all)?;
                self.in_kernel = true;
                Ok((ApplyMode::Replace, verified))
            }
        }
    }

    /// Replaces the table whole; reads it back when that is cheap.
    fn replace(&self, elements: &HashMap<IpAddr, Vec<Element>>) -> Result<bool, EdgeError> {
        let batch = compile::full_batch(&self.table, elements.values().flatten());
        let json = || netfilter::nft::json_with_set_counters(&batch);
        match self.opts.kernel.apply_batch(&batch, true, json) {
            Err(netfilter::NftError::Rejected(m))
                if self.table.mode == crate::Mode::Bridge && m.contains("Protocol error") =>
            {
                return Err(EdgeError::NoBridgeConntrack(m));
            }
            r => r?,
        }
        let count: usize = elements.values().map(Vec::len).sum();
        if count > self.opts.verify_limit {
            return Ok(false);
        }
        let kernel = self.read_kernel()?.ok_or_else(|| {
            EdgeError::Verify(format!(
                "table {} does not exist after loading it",
                self.table.name
            ))
        })?;
        let diffs = kernel.differences(elements.values().flatten());
        if diffs.is_empty() {
            Ok(true)
        } else {
            Err(EdgeError::Verify(diffs.join("; ")))
        }
    }

    /// The kernel's table, `None` if it does not exist.
    pub fn read_kernel(&self) -> Result<Option<KernelTable>, EdgeError> {
        read_kernel_with(self.opts.kernel, &self.table)
    }

    /// The hit counters of the table in force, per rule and (rule None) dropped
    /// per server.
    pub fn counters(&self) -> Result<Vec<RuleCounter>, EdgeError> {
        let Some(kernel) = self.read_kernel()? else {
            return Ok(Vec::new());
        };
        Ok(counters_of(&kernel, self.elements()))
    }
}

/// Reads the edge table from the kernel, reached as
/// [`Kernel::detect_nftables`] finds (for readers without an engine).
pub fn read_kernel(table: &TableSpec) -> Result<Option<KernelTable>, EdgeError> {
    read_kernel_with(Kernel::detect_nftables(), table)
}

/// Reads the edge table from the kernel through `kernel`, decoded into the
/// edge's keys.
pub fn read_kernel_with(
    kernel: Kernel,
    table: &TableSpec,
) -> Result<Option<KernelTable>, EdgeError> {
    Ok(kernel
        .read_table(table.mode.family_name(), &table.name)?
        .map(|t| KernelTable::from_table(&t)))
}

/// Sums the kernel's element counters per owner of `elements`. Every enforced
/// server and every rule of one appears, with zeros if nothing matched.
pub fn counters_of<'a>(
    kernel: &KernelTable,
    elements: impl IntoIterator<Item = &'a Element>,
) -> Vec<RuleCounter> {
    let mut owners: HashMap<(SetId, &Key), Owner> = HashMap::new();
    let mut sums: BTreeMap<Owner, (u64, u64)> = BTreeMap::new();
    for e in elements {
        owners.insert((e.set, &e.key), e.owner);
        sums.entry(e.owner).or_default();
    }
    for ke in &kernel.elements {
        let Some(key) = &ke.key else { continue };
        if let Some(owner) = owners.get(&(ke.set, key)) {
            let s = sums.entry(*owner).or_default();
            s.0 += ke.packets;
            s.1 += ke.bytes;
        }
    }
    sums.into_iter()
        .map(|(o, (packets, bytes))| RuleCounter {
            server_id: o.server_id,
            rule_id: o.rule_id,
            packets,
            bytes,
        })
        .collect()
}
