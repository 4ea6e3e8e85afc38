//! The change procedure, atomic or nothing, and the host's state as every
//! command leaves it.
//!
//! [`change`] is the one path of every edit: the lockout check, the
//! confirmation (when asked for), the new ruleset applied to the kernel in
//! one transaction (when enabled), and only then the files saved, all under
//! the config directory's lock. A refused ruleset is never saved; when
//! saving fails after the kernel took the new ruleset, the old one is
//! applied again, so the kernel never runs rules the file does not have.
//!
//! `apply` on a disabled host: [`change`] with `enabled` set, so it loads the
//! rules and enables portwall (the kernel matches the file afterwards, as
//! `plan` promises); a rule edit on a disabled host only saves.

use crate::config_dir::{self, ConfigDir};
use crate::confirmation::{self, Deadline, PendingConfirmation};
use crate::counting_since;
use crate::error::Result;
use crate::lockout;
use crate::packet_filter::PacketFilter;
use model::{HostConfig, Ruleset};
use netfilter::ApplyReport;
use serde::Serialize;

/// Where the host stands: enabled or not (the saved state, what boot
/// restores), loaded or not (portwall's table in the kernel), and a change
/// waiting for confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HostState {
    pub enabled: bool,
    pub loaded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_confirmation: Option<Deadline>,
}

impl HostState {
    /// The state in one sentence, for a person.
    pub fn sentence(&self) -> &'static str {
        match (self.enabled, self.loaded) {
            (true, true) => "Firewall is active and enabled on system startup",
            (false, false) => "Firewall is inactive and disabled on system startup",
            (true, false) => {
                "Firewall is enabled on system startup but not loaded: run 'portwall reload'"
            }
            (false, true) => "Firewall is disabled on system startup, but a portwall table is loaded (not by portwall): 'portwall disable' removes it",
        }
    }

    /// Whether enabled or loaded differ (a pending confirmation aside).
    pub fn differs_from(&self, other: &HostState) -> bool {
        (self.enabled, self.loaded) != (other.enabled, other.loaded)
    }
}

/// How a change is made.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChangeOptions {
    /// Apply even if the change would cut a live SSH session.
    pub force: bool,
    /// Apply now and roll back after this many seconds unless confirmed.
    pub confirm: Option<u64>,
    /// The kernel must match the new state whatever `applied.toml` says
    /// (`apply`, as `plan` promises): when `applied.toml` already holds the
    /// new ruleset, the kernel's table is compared with it and replaced
    /// whole if it differs (a run killed between applying and saving leaves
    /// the kernel ahead of the file).
    pub declarative: bool,
}

impl ChangeOptions {
    /// Whether the lockout check runs (`--force` and `--confirm` skip it).
    pub fn checks_lockout(&self) -> bool {
        !self.force && self.confirm.is_none()
    }
}

/// What a change did.
#[derive(Debug, Clone)]
pub struct ChangeReport {
    /// How the kernel was changed (`None`: not touched).
    pub applied: Option<ApplyReport>,
    /// The confirmation this change armed.
    pub confirmation: Option<PendingConfirmation>,
    pub before: HostState,
    pub after: HostState,
}

/// Starts the detached rollback watchdog of an armed confirmation.
pub type StartWatchdog<'a> = &'a dyn Fn(&PendingConfirmation) -> std::io::Result<()>;

/// Makes `new` the host's state (from `old`, what `dir` holds): checks the
/// lockout, arms the confirmation, applies `new` when enabled and saves it.
/// Runs even when `new == old`: the kernel is brought to `new` again.
pub fn change(
    dir: &ConfigDir,
    kernel: &impl PacketFilter,
    old: &HostConfig,
    new: &HostConfig,
    opts: ChangeOptions,
    start_watchdog: StartWatchdog<'_>,
) -> Result<ChangeReport> {
    tracing::debug_span!("ssh lockout check")
        .in_scope(|| lockout::check_lockout(opts.checks_lockout(), old, new))?;
    let confirmation = match (opts.confirm, new != old) {
        (Some(seconds), true) => Some(confirmation::arm(dir, old, seconds, start_watchdog)?),
        _ => None,
    };
    let loaded = kernel.is_loaded()?;
    let before = HostState {
        enabled: old.enabled,
        loaded,
        pending_confirmation: None,
    };
    let pending = || {
        confirmation
            .as_ref()
            .map(PendingConfirmation::deadline)
            .or_else(|| confirmation::pending_deadline(dir.path()))
    };
    if !new.enabled {
        dir.save(new)?;
        return Ok(ChangeReport {
            applied: None,
            before,
            after: HostState {
                enabled: false,
                loaded,
                pending_confirmation: pending(),
            },
            confirmation,
        });
    }
    let previous = if loaded {
        dir.applied_or_loaded(old)?
    } else {
        None
    };
    // The delta from what was applied last is empty: only the kernel's own
    // table says whether it holds the new ruleset.
    let previous = match previous {
        Some(p)
            if opts.declarative
                && *p == new.ruleset
                && kernel.drift(&new.ruleset)?.is_none_or(|d| !d.is_empty()) =>
        {
            None
        }
        p => p,
    };
    // The files are rendered and written (flushed, under temporary names)
    // on another core while the kernel takes the ruleset, and renamed into
    // place once it has: at 100k rules that hides 40 ms. One rendering
    // serves both files: when enabled, the applied ruleset's file is the
    // desired config's byte for byte.
    let (report, staged) = std::thread::scope(|scope| {
        let path = dir.path();
        let stager = scope.spawn(move || config_dir::stage_config(path, new));
        let report = apply(dir, kernel, &new.ruleset, previous.as_deref());
        let staged = stager
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (report, staged)
    });
    // A refused ruleset: the staged files are dropped, so removed.
    let report = report?;
    // Both renames, then one flush of their directory.
    let saved = staged.and_then(|s| {
        s.applied.rename()?;
        dir.commit_rules(s.rules, &s.toml)
    });
    if let Err(e) = saved {
        // The kernel must not run rules the file does not have.
        if old.enabled {
            if let Ok(back) = apply(dir, kernel, &old.ruleset, Some(&new.ruleset)) {
                note_counters(dir.path(), Some(&new.ruleset), &old.ruleset, &back);
            } else {
                let _ = counting_since::forget(dir.path());
            }
            let _ = dir.set_applied(Some(&old.ruleset));
        } else if !loaded {
            let _ = kernel.remove();
            let _ = dir.set_applied(None);
            let _ = counting_since::forget(dir.path());
        }
        return Err(e);
    }
    note_counters(dir.path(), previous.as_deref(), &new.ruleset, &report);
    Ok(ChangeReport {
        applied: Some(report),
        before,
        after: HostState {
            enabled: true,
            loaded: true,
            pending_confirmation: pending(),
        },
        confirmation,
    })
}

/// [`change`] when there is something to do: `new` differs from `old`, or
/// it is enabled and its table is not loaded. Otherwise only the state is
/// read.
pub fn change_if_needed(
    dir: &ConfigDir,
    kernel: &impl PacketFilter,
    old: &HostConfig,
    new: &HostConfig,
    opts: ChangeOptions,
    start_watchdog: StartWatchdog<'_>,
) -> Result<ChangeReport> {
    if new != old {
        return change(dir, kernel, old, new, opts, start_watchdog);
    }
    let loaded = kernel.is_loaded()?;
    if new.enabled && !loaded {
        return change(dir, kernel, old, new, opts, start_watchdog);
    }
    let state = HostState {
        enabled: new.enabled,
        loaded,
        pending_confirmation: confirmation::pending_deadline(dir.path()),
    };
    Ok(ChangeReport {
        applied: None,
        confirmation: None,
        before: state,
        after: state,
    })
}

/// Removes portwall's table and saves `config` (disabled) as the desired
/// state: `disable` and `reset`. Whether a table was removed, and the
/// states before and after.
pub fn unload(
    dir: &ConfigDir,
    kernel: &impl PacketFilter,
    old: &HostConfig,
    config: &HostConfig,
) -> Result<(bool, HostState, HostState)> {
    let removed = kernel.remove()?;
    let _ = counting_since::forget(dir.path());
    dir.set_applied(None)?;
    dir.save(config)?;
    let pending_confirmation = confirmation::pending_deadline(dir.path());
    let before = HostState {
        enabled: old.enabled,
        loaded: removed,
        pending_confirmation,
    };
    let after = HostState {
        enabled: config.enabled,
        loaded: false,
        pending_confirmation,
    };
    Ok((removed, before, after))
}

/// Replaces the kernel's table with the saved rules, whole (not a delta: this
/// is how a hand-edited table is brought back): `reload` and `restore`.
/// `None` when portwall is disabled (nothing is applied). `opts` are the
/// lockout check's (against what was applied last); `None`: no check, as at
/// boot.
pub fn reapply(
    dir: &ConfigDir,
    kernel: &impl PacketFilter,
    opts: Option<ChangeOptions>,
) -> Result<(HostConfig, Option<ChangeReport>)> {
    let config = dir.load()?;
    if !config.enabled {
        return Ok((config, None));
    }
    if let Some(opts) = opts {
        let loaded = HostConfig {
            enabled: true,
            ruleset: dir.applied()?.unwrap_or_default(),
        };
        lockout::check_lockout(opts.checks_lockout(), &loaded, &config)?;
    }
    let loaded = kernel.is_loaded()?;
    let applied = apply(dir, kernel, &config.ruleset, None)?;
    note_counters(dir.path(), None, &config.ruleset, &applied);
    dir.set_applied(Some(&config.ruleset))?;
    let pending_confirmation = confirmation::pending_deadline(dir.path());
    let report = ChangeReport {
        applied: Some(applied),
        confirmation: None,
        before: HostState {
            enabled: true,
            loaded,
            pending_confirmation,
        },
        after: HostState {
            enabled: true,
            loaded: true,
            pending_confirmation,
        },
    };
    Ok((config, Some(report)))
}

/// Makes the kernel enforce `desired` ([`PacketFilter::apply`]), loading
/// the lists its rules name when the kernel needs them: a change is sent
/// first with the lists left alone (an element delta leaves their sets as
/// they are, whatever their size), and again with them loaded when the
/// table must be replaced.
pub fn apply(
    dir: &ConfigDir,
    kernel: &impl PacketFilter,
    desired: &Ruleset,
    previous: Option<&Ruleset>,
) -> Result<netfilter::ApplyReport> {
    let needs_lists = |e: &crate::KernelError| {
        matches!(
            e.0.downcast_ref::<netfilter::NetfilterError>(),
            Some(netfilter::NetfilterError::ListsNotLoaded)
        )
    };
    match kernel.apply(desired, previous) {
        Err(e) if needs_lists(&e) => {
            let mut desired = desired.clone();
            desired.lists = dir.load_lists(&desired)?;
            let previous = previous.map(|p| {
                let mut p = p.clone();
                p.lists = desired.lists.clone();
                for name in p.rules.iter().flat_map(|r| r.lists()) {
                    if p.lists.get(name).is_none() {
                        if let Ok(entries) = dir.read_list(name) {
                            p.lists.0.insert(
                                name.clone(),
                                std::sync::Arc::new(model::list::Segments::of(&entries)),
                            );
                        }
                    }
                }
                p
            });
            Ok(kernel.apply(&desired, previous.as_ref())?)
        }
        other => Ok(other?),
    }
}

/// Puts `previous` back in force, the kernel and the files (a rollback).
pub fn put_back(dir: &ConfigDir, kernel: &impl PacketFilter, previous: &HostConfig) -> Result<()> {
    if previous.enabled {
        let report = apply(dir, kernel, &previous.ruleset, None)?;
        note_counters(dir.path(), None, &previous.ruleset, &report);
        dir.set_applied(Some(&previous.ruleset))?;
    } else {
        kernel.remove()?;
        let _ = counting_since::forget(dir.path());
        dir.set_applied(None)?;
    }
    dir.save(previous)
}

/// Records since when the counters of `desired` count after an apply over
/// `previous` ([`counting_since`]). The change itself is done and saved: a
/// record that cannot be written is removed rather than left wrong.
fn note_counters(
    dir: &std::path::Path,
    previous: Option<&Ruleset>,
    desired: &Ruleset,
    report: &ApplyReport,
) {
    let now = counting_since::now();
    if let Err(e) = counting_since::record(dir, previous, desired, report.counters, now) {
        tracing::warn!(error = %e, "cannot record since when the counters count");
        let _ = counting_since::forget(dir);
    }
}

/// The host's state now: the saved config's `enabled`, the kernel's table.
pub fn current_state(
    dir: &std::path::Path,
    enabled: bool,
    kernel: &impl PacketFilter,
) -> Result<HostState> {
    Ok(HostState {
        enabled,
        loaded: kernel.is_loaded()?,
        pending_confirmation: confirmation::pending_deadline(dir),
    })
}
