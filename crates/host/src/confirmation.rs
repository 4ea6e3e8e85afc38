//! `--confirm SECONDS`: a change applied now and rolled back at its deadline
//! unless confirmed.
//!
//! Arming records the state to roll back to in `pending.json` (the last
//! confirmed state, when a confirmation is already pending) and has the
//! caller start a watchdog: a detached process (`setsid`, so it outlives the
//! terminal and the SSH connection) that runs [`wait_and_roll_back`].
//! [`confirm`] removes the record, and with it the rollback.

use crate::config_dir::{write_atomically, ConfigDir};
use crate::error::{HostError, Result};
use crate::packet_filter::PacketFilter;
use model::HostConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A change waiting for `portwall confirm` (the content of `pending.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingConfirmation {
    pub id: String,
    /// Unix seconds.
    pub deadline: u64,
    /// The state to restore, as rules.toml text.
    pub previous: String,
}

/// When a pending confirmation runs out: what `status` and a change report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Deadline {
    /// Unix seconds.
    pub deadline: u64,
    pub seconds_left: u64,
}

impl PendingConfirmation {
    pub fn deadline(&self) -> Deadline {
        Deadline {
            deadline: self.deadline,
            seconds_left: self.deadline.saturating_sub(now()),
        }
    }
}

fn pending_path(dir: &Path) -> PathBuf {
    dir.join("pending.json")
}

/// The pending confirmation of the config directory `dir`, if any.
pub fn read_pending(dir: &Path) -> Result<Option<PendingConfirmation>> {
    let path = pending_path(dir);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b).map_err(HostError::PendingUnreadable)?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HostError::io("read", &path, e)),
    }
}

/// The deadline of the pending confirmation, if there is a readable one.
pub fn pending_deadline(dir: &Path) -> Option<Deadline> {
    read_pending(dir).ok().flatten().map(|p| p.deadline())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Before a `--confirm` change: records what to roll back to (the last
/// confirmed state, if a confirmation is already pending) and starts the
/// watchdog with `start_watchdog` (given the record, whose `id` it passes on
/// to [`wait_and_roll_back`]).
pub fn arm(
    dir: &ConfigDir,
    old: &HostConfig,
    seconds: u64,
    start_watchdog: &dyn Fn(&PendingConfirmation) -> std::io::Result<()>,
) -> Result<PendingConfirmation> {
    let previous = match read_pending(dir.path())? {
        Some(p) => p.previous,
        None => old.to_toml(),
    };
    let pending = PendingConfirmation {
        id: format!("{}-{}", std::process::id(), now()),
        deadline: now() + seconds,
        previous,
    };
    let text = serde_json::to_string_pretty(&pending).map_err(HostError::PendingUnreadable)?;
    write_atomically(&pending_path(dir.path()), text.as_bytes())?;
    start_watchdog(&pending).map_err(|source| HostError::Io {
        what: "cannot start the rollback watchdog (setsid from util-linux)".into(),
        source,
    })?;
    Ok(pending)
}

/// `portwall confirm`: keeps the change that is waiting; whether there was one.
pub fn confirm(dir: &ConfigDir) -> Result<bool> {
    let pending = read_pending(dir.path())?;
    if pending.is_some() {
        let path = pending_path(dir.path());
        std::fs::remove_file(&path).map_err(|e| HostError::io("remove", &path, e))?;
    }
    Ok(pending.is_some())
}

/// The watchdog's work: waits for the deadline of the confirmation `id`,
/// then restores the state it recorded, unless the change was confirmed (or
/// superseded by another `--confirm`) meanwhile. Whether it rolled back.
pub fn wait_and_roll_back(dir: &Path, kernel: &impl PacketFilter, id: &str) -> Result<bool> {
    let Some(p) = read_pending(dir)? else {
        return Ok(false);
    };
    if p.id != id {
        return Ok(false);
    }
    std::thread::sleep(Duration::from_secs(p.deadline.saturating_sub(now())));
    let locked = ConfigDir::lock(dir)?;
    match read_pending(locked.path())? {
        Some(p) if p.id == id => {
            let previous =
                crate::config_dir::parse_config(&pending_path(dir), &p.previous, &locked.services)?;
            crate::transaction::put_back(&locked, kernel, &previous)?;
            let path = pending_path(locked.path());
            std::fs::remove_file(&path).map_err(|e| HostError::io("remove", &path, e))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}
