//! Which packet filter the OS-firewall commands drive: one nftables table (the
//! default) or portwall's own iptables chains on hosts without nftables. Chosen
//! with `--backend` / `PORTWALL_BACKEND` (`auto` detects). Both backends compile
//! the same `model::Ruleset`; this is only the dispatch.

use crate::Global;
use anyhow::Result;
use model::Ruleset;
use netfilter::iptables::{self, Backend};
use netfilter::{ApplyOptions, ApplyReport, Counters};

#[derive(Debug, Clone, Copy)]
pub struct Filter(Backend);

impl Filter {
    pub fn of(global: &Global) -> Result<Filter> {
        Ok(Filter(match global.backend.as_str() {
            "auto" => iptables::detect(),
            other => other.parse().map_err(crate::exit::usage)?,
        }))
    }

    /// Applies `desired`; with nftables, `previous` (what portwall applied last)
    /// lets an element-only change be sent as a delta.
    pub fn apply(self, desired: &Ruleset, previous: Option<&Ruleset>) -> Result<ApplyReport> {
        Ok(match self.0 {
            Backend::Nftables => {
                netfilter::apply_atomically(desired, previous, ApplyOptions::default())?
            }
            Backend::Iptables => iptables::apply_atomically(desired)?,
        })
    }

    pub fn is_loaded(self) -> Result<bool> {
        Ok(match self.0 {
            Backend::Nftables => netfilter::is_loaded()?,
            Backend::Iptables => iptables::is_loaded()?,
        })
    }

    pub fn remove(self) -> Result<bool> {
        Ok(match self.0 {
            Backend::Nftables => netfilter::remove()?,
            Backend::Iptables => iptables::remove()?,
        })
    }

    pub fn drift(self, ruleset: &Ruleset) -> Result<Option<Vec<String>>> {
        Ok(match self.0 {
            Backend::Nftables => netfilter::drift(ruleset)?,
            Backend::Iptables => iptables::drift(ruleset)?,
        })
    }

    pub fn counters(self, ruleset: &Ruleset) -> Result<Option<Counters>> {
        Ok(match self.0 {
            Backend::Nftables => netfilter::counters(ruleset)?,
            Backend::Iptables => iptables::counters(ruleset)?,
        })
    }

    /// [`Filter::drift`] and [`Filter::counters`] of the same ruleset, reading
    /// the kernel's table once where the backend can.
    pub fn drift_and_counters(self, ruleset: &Ruleset) -> Result<Option<(Vec<String>, Counters)>> {
        Ok(match self.0 {
            Backend::Nftables => netfilter::drift_and_counters(ruleset)?,
            Backend::Iptables => match (iptables::drift(ruleset)?, iptables::counters(ruleset)?) {
                (Some(d), Some(c)) => Some((d, c)),
                _ => None,
            },
        })
    }

    pub fn zero_counters(self, ruleset: &Ruleset) -> Result<()> {
        match self.0 {
            Backend::Nftables => netfilter::zero_counters(ruleset)?,
            Backend::Iptables => iptables::Iptables::default().zero_counters(ruleset)?,
        }
        Ok(())
    }
}
