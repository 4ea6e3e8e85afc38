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
//! - Which program reaches the kernel is one value, [`Kernel`], chosen once by
//!   the binary and passed down: nf_tables netlink ([`netlink`]: one batch
//!   in, dumps out, no process spawned), the `nft` binary ([`nft`]) where the
//!   kernel has no nf_tables netlink, or iptables ([`iptables`]) on hosts
//!   without nftables. No function here reads the environment.

pub mod carry;
pub mod compile;
pub mod expressions;
pub mod iptables;
pub mod kernel;
pub mod netlink;
pub mod nft;
pub mod nft_json;
pub mod readback;

use compile::{compile, CompiledTable, Origin, TABLE};
use model::{Direction, Ruleset};
use readback::KernelTable;
use serde::Serialize;
use std::collections::HashMap;

pub use kernel::Kernel;
pub use nft::NftError;

/// What went wrong talking to the packet filter.
#[derive(Debug, thiserror::Error)]
pub enum NetfilterError {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Iptables(#[from] iptables::IptablesError),
    #[error("the kernel's table differs from what was sent ({}); the previous ruleset was restored", .0.join("; "))]
    VerifyFailed(Vec<String>),
    /// The table must be replaced, and a list the rules name was compiled
    /// without its entries: the caller loads the lists and applies again.
    #[error("the table must be replaced, and the lists it uses were not loaded")]
    ListsNotLoaded,
    #[error(
        "the iptables backend does not support {0} yet: use the nftables backend (--backend nft)"
    )]
    Unsupported(&'static str),
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

/// What an apply did to the counters of the rules it kept (see [`carry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CountersKept {
    /// The table stayed in place: its counters went on counting.
    InPlace,
    /// The table was replaced and created with the counts of the old one.
    Carried,
    /// A new table, or a replacement whose old counts could not be read:
    /// every counter starts at zero.
    Restarted,
}

/// The result of [`Kernel::apply`].
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub mode: ApplyMode,
    /// What became of the counters of the rules that stayed.
    pub counters: CountersKept,
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

/// Options of [`Kernel::apply`].
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

/// The counters of `ruleset`'s table in `v`, the table as `nft -j list
/// table` prints it.
pub fn counters_from_json(ruleset: &Ruleset, v: &serde_json::Value) -> Counters {
    counters_from_table(
        &compile(ruleset, TABLE),
        ruleset.rules.len(),
        &KernelTable::from_json(v),
    )
}

/// The counters of the table `kernel` read back, mapped to the `rules`
/// model rules `compiled` was built from (the path of the `nft` binary; over
/// netlink, [`netlink::counters`] matches the elements on their bytes).
pub(crate) fn counters_from_table(
    compiled: &CompiledTable,
    rules: usize,
    kernel: &KernelTable,
) -> Counters {
    let mut c = Counters::for_rules(rules);
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
