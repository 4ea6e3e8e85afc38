//! The seam to the kernel's packet filter. The caller chooses the backend
//! once (nftables or iptables) and passes it in; the host code only calls
//! these methods, so it neither reads the environment nor knows which
//! backend it drives.

use model::Ruleset;
use netfilter::{ApplyReport, Counters};

/// What a backend reports when it fails: its own error, kept whole (its
/// message and its chain of causes).
#[derive(Debug)]
pub struct KernelError(pub Box<dyn std::error::Error + Send + Sync + 'static>);

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for KernelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl KernelError {
    pub fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> KernelError {
        KernelError(e.into())
    }
}

/// The kernel's packet filter as the host code uses it: one table (or set of
/// chains) of portwall's own, made to enforce a [`Ruleset`].
pub trait PacketFilter {
    /// Makes the kernel enforce `desired` in one transaction; `previous` (what
    /// portwall applied last, when the table still exists) lets an
    /// element-only change be sent as a delta.
    fn apply(
        &self,
        desired: &Ruleset,
        previous: Option<&Ruleset>,
    ) -> Result<ApplyReport, KernelError>;
    /// Whether portwall's table is loaded.
    fn is_loaded(&self) -> Result<bool, KernelError>;
    /// Removes portwall's table; whether there was one.
    fn remove(&self) -> Result<bool, KernelError>;
    /// How the loaded table differs from `ruleset` (`None`: no table).
    fn drift(&self, ruleset: &Ruleset) -> Result<Option<Vec<String>>, KernelError>;
    /// The loaded table's counters, mapped to `ruleset` (`None`: no table).
    fn counters(&self, ruleset: &Ruleset) -> Result<Option<Counters>, KernelError>;
    /// [`PacketFilter::drift`] and [`PacketFilter::counters`] in one read where the backend can.
    fn drift_and_counters(
        &self,
        ruleset: &Ruleset,
    ) -> Result<Option<(Vec<String>, Counters)>, KernelError>;
    /// Resets the loaded table's counters.
    fn zero_counters(&self, ruleset: &Ruleset) -> Result<(), KernelError>;
}

/// The backend the binaries choose once ([`netfilter::Kernel`]) is the seam's
/// real implementation.
impl PacketFilter for netfilter::Kernel {
    fn apply(
        &self,
        desired: &Ruleset,
        previous: Option<&Ruleset>,
    ) -> Result<ApplyReport, KernelError> {
        netfilter::Kernel::apply(*self, desired, previous, netfilter::ApplyOptions::default())
            .map_err(KernelError::new)
    }

    fn is_loaded(&self) -> Result<bool, KernelError> {
        netfilter::Kernel::is_loaded(*self).map_err(KernelError::new)
    }

    fn remove(&self) -> Result<bool, KernelError> {
        netfilter::Kernel::remove(*self).map_err(KernelError::new)
    }

    fn drift(&self, ruleset: &Ruleset) -> Result<Option<Vec<String>>, KernelError> {
        netfilter::Kernel::drift(*self, ruleset).map_err(KernelError::new)
    }

    fn counters(&self, ruleset: &Ruleset) -> Result<Option<Counters>, KernelError> {
        netfilter::Kernel::counters(*self, ruleset).map_err(KernelError::new)
    }

    fn drift_and_counters(
        &self,
        ruleset: &Ruleset,
    ) -> Result<Option<(Vec<String>, Counters)>, KernelError> {
        netfilter::Kernel::drift_and_counters(*self, ruleset).map_err(KernelError::new)
    }

    fn zero_counters(&self, ruleset: &Ruleset) -> Result<(), KernelError> {
        netfilter::Kernel::zero_counters(*self, ruleset).map_err(KernelError::new)
    }
}
