//! Which packet filter the OS-firewall commands drive: one nftables table (the
//! default, over netlink, or through the `nft` binary) or portwall's own
//! iptables chains on hosts without nftables. Chosen once per process
//! ([`netfilter::Kernel`]): `--backend` / `PORTWALL_BACKEND` (`auto` detects),
//! and `PORTWALL_NFT_BACKEND=nft` to reach nftables through the `nft` binary
//! instead of netlink. The environment is read here, in the binary, not in a
//! library.

use crate::Global;
use anyhow::Result;
use model::Ruleset;
use netfilter::iptables::Backend;
use netfilter::{ApplyOptions, ApplyReport, Counters, Kernel};
use std::sync::OnceLock;

/// The kernel path chosen for this process.
#[derive(Debug, Clone, Copy)]
pub struct Filter(Kernel);

/// The choice, made at the first [`Filter::of`].
static CHOSEN: OnceLock<Kernel> = OnceLock::new();

impl Filter {
    pub fn of(global: &Global) -> Result<Filter> {
        if let Some(k) = CHOSEN.get() {
            return Ok(Filter(*k));
        }
        let nft_binary = std::env::var("PORTWALL_NFT_BACKEND").is_ok_and(|v| v == "nft");
        let kernel = match global.backend.as_str() {
            "auto" if nft_binary => {
                if netfilter::nft::works() || !netfilter::iptables::available() {
                    Kernel::NftBinary
                } else {
                    Kernel::Iptables
                }
            }
            "auto" => Kernel::detect(),
            other => match other.parse::<Backend>().map_err(crate::exit::usage)? {
                Backend::Iptables => Kernel::Iptables,
                Backend::Nftables if nft_binary => Kernel::NftBinary,
                Backend::Nftables => Kernel::detect_nftables(),
            },
        };
        Ok(Filter(*CHOSEN.get_or_init(|| kernel)))
    }

    /// Applies `desired`; with nftables, `previous` (what portwall applied last)
    /// lets an element-only change be sent as a delta.
    pub fn apply(self, desired: &Ruleset, previous: Option<&Ruleset>) -> Result<ApplyReport> {
        Ok(self.0.apply(desired, previous, ApplyOptions::default())?)
    }

    pub fn is_loaded(self) -> Result<bool> {
        Ok(self.0.is_loaded()?)
    }

    pub fn remove(self) -> Result<bool> {
        Ok(self.0.remove()?)
    }

    pub fn drift(self, ruleset: &Ruleset) -> Result<Option<Vec<String>>> {
        Ok(self.0.drift(ruleset)?)
    }

    pub fn counters(self, ruleset: &Ruleset) -> Result<Option<Counters>> {
        Ok(self.0.counters(ruleset)?)
    }

    /// [`Filter::drift`] and [`Filter::counters`] of the same ruleset, reading
    /// the kernel's table once where the backend can.
    pub fn drift_and_counters(self, ruleset: &Ruleset) -> Result<Option<(Vec<String>, Counters)>> {
        Ok(self.0.drift_and_counters(ruleset)?)
    }

    pub fn zero_counters(self, ruleset: &Ruleset) -> Result<()> {
        Ok(self.0.zero_counters(ruleset)?)
    }
}
