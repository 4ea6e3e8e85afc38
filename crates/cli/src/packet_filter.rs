//! The CLI's chosen backend ([`Filter`]) as the host library's seam to the
//! kernel ([`host::PacketFilter`]): the same methods, their errors kept whole.

use crate::backend::Filter;
use host::{KernelError, PacketFilter};
use model::Ruleset;
use netfilter::{ApplyReport, Counters};

fn kernel(e: anyhow::Error) -> KernelError {
    KernelError::new(e)
}

impl PacketFilter for Filter {
    fn apply(
        &self,
        desired: &Ruleset,
        previous: Option<&Ruleset>,
    ) -> Result<ApplyReport, KernelError> {
        Filter::apply(*self, desired, previous).map_err(kernel)
    }

    fn is_loaded(&self) -> Result<bool, KernelError> {
        Filter::is_loaded(*self).map_err(kernel)
    }

    fn remove(&self) -> Result<bool, KernelError> {
        Filter::remove(*self).map_err(kernel)
    }

    fn drift(&self, ruleset: &Ruleset) -> Result<Option<Vec<String>>, KernelError> {
        Filter::drift(*self, ruleset).map_err(kernel)
    }

    fn counters(&self, ruleset: &Ruleset) -> Result<Option<Counters>, KernelError> {
        Filter::counters(*self, ruleset).map_err(kernel)
    }

    fn drift_and_counters(
        &self,
        ruleset: &Ruleset,
    ) -> Result<Option<(Vec<String>, Counters)>, KernelError> {
        Filter::drift_and_counters(*self, ruleset).map_err(kernel)
    }

    fn zero_counters(&self, ruleset: &Ruleset) -> Result<(), KernelError> {
        Filter::zero_counters(*self, ruleset).map_err(kernel)
    }
}
