//! Fail static: the last applied policy on disk.
//!
//! After every change the agent writes the whole policy in force to
//! `STATE_DIR/policy.json`: to a temporary file, fsync, rename over the old one,
//! fsync the directory. A crash at any point leaves either the old or the new
//! file, never a torn one. At start-up the agent applies this file before it
//! talks to the panel, so an edge that reboots while the panel is down enforces
//! what it enforced before.
//!
//! `STATE_DIR/agent.json` is a small note of how the agent is doing (last sync,
//! last error), for `portwall-edge status`; it is written the same way.

use crate::compile::Mode;
use crate::EdgeError;
use model::network::sync::ServerPolicy;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file name of the saved policy.
pub const POLICY_FILE: &str = "policy.json";
/// The file name of the agent's note.
pub const AGENT_FILE: &str = "agent.json";
/// Version of the saved format.
pub const FORMAT: u32 = 1;

/// The policy the edge last applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPolicy {
    pub format: u32,
    pub zone: String,
    pub mode: Mode,
    pub table: String,
    pub revision: u64,
    /// Milliseconds since the Unix epoch.
    pub saved_at_ms: u64,
    pub servers: Vec<ServerPolicy>,
}

#[derive(Serialize)]
struct SavedPolicyRef<'a> {
    format: u32,
    zone: &'a str,
    mode: Mode,
    table: &'a str,
    revision: u64,
    saved_at_ms: u64,
    servers: Vec<&'a ServerPolicy>,
}

/// How the agent is doing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentNote {
    pub pid: u32,
    pub panel_url: String,
    pub zone: String,
    pub edge: String,
    /// The revision in force.
    pub revision: Option<u64>,
    /// When the panel last answered (ms since the epoch).
    pub last_sync_ms: Option<u64>,
    /// Whether the last poll reached the panel.
    pub panel_reachable: bool,
    /// The last error (unreachable panel, rejected policy, ...), if any.
    pub last_error: Option<String>,
    pub updated_ms: u64,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn store_err(path: &Path, e: impl std::fmt::Display) -> EdgeError {
    EdgeError::Store {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The prefix of the staged files [`write_atomic`] writes (`tempfile`'s).
const STAGED_PREFIX: &str = ".tmp";

/// Removes the staged files an agent killed in the middle of a
/// [`write_atomic`] left in `dir` (the agent that starts is the only writer
/// of its state directory); how many there were.
pub fn remove_staged(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(STAGED_PREFIX))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Writes `bytes` to `dir/name` atomically and durably: a temporary file in
/// the same directory (`tempfile`, removed if anything fails), flushed,
/// renamed into place, then the directory flushed.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), EdgeError> {
    std::fs::create_dir_all(dir).map_err(|e| store_err(dir, e))?;
    let path = dir.join(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(STAGED_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| store_err(dir, e))?;
    tmp.write_all(bytes).map_err(|e| store_err(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| store_err(tmp.path(), e))?;
    tmp.persist(&path).map_err(|e| store_err(&path, e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| store_err(dir, e))?;
    Ok(())
}

/// Saves the policy in force.
pub fn save_policy<'a>(
    dir: &Path,
    zone: &str,
    mode: Mode,
    table: &str,
    revision: u64,
    servers: impl IntoIterator<Item = &'a ServerPolicy>,
) -> Result<(), EdgeError> {
    let value = SavedPolicyRef {
        format: FORMAT,
        zone,
        mode,
        table,
        revision,
        saved_at_ms: now_ms(),
        servers: servers.into_iter().collect(),
    };
    let bytes = serde_json::to_vec(&value).map_err(|e| store_err(dir, e))?;
    write_atomic(dir, POLICY_FILE, &bytes)
}

/// The saved policy, `None` if there is none yet.
pub fn load_policy(dir: &Path) -> Result<Option<SavedPolicy>, EdgeError> {
    let path = policy_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(store_err(&path, e)),
    };
    let saved: SavedPolicy = serde_json::from_slice(&bytes)
        .map_err(|e| store_err(&path, format!("not a saved edge policy: {e}")))?;
    if saved.format != FORMAT {
        return Err(store_err(
            &path,
            format!(
                "format {} is not supported (expected {FORMAT})",
                saved.format
            ),
        ));
    }
    Ok(Some(saved))
}

pub fn policy_path(dir: &Path) -> PathBuf {
    dir.join(POLICY_FILE)
}

pub fn save_note(dir: &Path, note: &AgentNote) -> Result<(), EdgeError> {
    let bytes = serde_json::to_vec_pretty(note).map_err(|e| store_err(dir, e))?;
    write_atomic(dir, AGENT_FILE, &bytes)
}

pub fn load_note(dir: &Path) -> Option<AgentNote> {
    let bytes = std::fs::read(dir.join(AGENT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
