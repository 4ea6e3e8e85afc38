//! nftables JSON: one transaction in, the kernel's answer out.
//!
//! Every function here talks to the kernel through [`crate::netlink`] (one
//! netlink batch, netlink dumps), and falls back to the `nft` binary when netlink
//! cannot do it: no nf_tables netlink (`EPROTONOSUPPORT`, ...) or JSON outside the
//! subset the netlink backend translates. `PORTWALL_NFT_BACKEND=nft` selects the
//! `nft` binary always. Either way the whole batch is one transaction: the kernel
//! commits all of it or none of it, so a rejected batch leaves the previous
//! ruleset in force. This module is the only place that spawns `nft`.

use nftables::helper::{self, NftablesError};
use nftables::schema::Nftables;
use serde_json::Value;

/// An `nft` invocation that failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft is not installed or cannot run ({0}); install the 'nftables' package")]
    NotInstalled(String),
    #[error("the kernel refused the ruleset; the previous ruleset stays in force. nft said: {0}")]
    Rejected(String),
    #[error("cannot read nft's output: {0}")]
    Output(String),
}

fn map_err(e: NftablesError) -> NftError {
    match e {
        NftablesError::NftExecution { inner, .. } => NftError::NotInstalled(inner.to_string()),
        NftablesError::NftFailed { stderr, stdout, .. } => {
            let msg = if stderr.trim().is_empty() {
                stdout
            } else {
                stderr
            };
            NftError::Rejected(msg.trim().to_string())
        }
        other => NftError::Output(other.to_string()),
    }
}

/// Which program talks to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// nf_tables netlink directly (the default).
    Netlink,
    /// The `nft` binary (`PORTWALL_NFT_BACKEND=nft`).
    Nft,
}

/// The backend in use: `PORTWALL_NFT_BACKEND=nft` selects the `nft` binary.
pub fn backend() -> Backend {
    match std::env::var("PORTWALL_NFT_BACKEND").as_deref() {
        Ok("nft") => Backend::Nft,
        _ => Backend::Netlink,
    }
}

/// The netlink attempt's result: `None` when the `nft` binary should be used.
fn via_netlink<T>(
    f: impl FnOnce() -> Result<T, crate::netlink::Error>,
) -> Option<Result<T, NftError>> {
    if backend() == Backend::Nft {
        return None;
    }
    match f() {
        Ok(v) => Some(Ok(v)),
        Err(e) if e.use_nft_instead() => None,
        Err(e) => Some(Err(e.into())),
    }
}

/// Applies `batch` as one transaction.
pub fn run(batch: &Nftables<'_>) -> Result<(), NftError> {
    if let Some(r) = via_netlink(|| crate::netlink::try_apply_typed(batch, false)) {
        return r;
    }
    let payload = serde_json::to_string(batch).map_err(|e| NftError::Output(e.to_string()))?;
    run_nft(&payload)
}

/// Applies a typed batch as one transaction, giving every set it adds a
/// `counter` statement (so each element has its own counter).
pub fn run_with_set_counters(
    batch: &Nftables<'_>,
    json: impl FnOnce() -> String,
) -> Result<(), NftError> {
    if let Some(r) = via_netlink(|| crate::netlink::try_apply_typed(batch, true)) {
        return r;
    }
    run_nft(&json())
}

/// Applies a JSON batch (as built by [`crate::compile`]) as one transaction.
pub fn run_value(batch: &Value) -> Result<(), NftError> {
    if let Some(r) = via_netlink(|| crate::netlink::try_apply_json(batch)) {
        return r;
    }
    run_nft(&batch.to_string())
}

/// Applies an already serialized JSON batch as one transaction.
pub fn run_json(payload: &str) -> Result<(), NftError> {
    if backend() == Backend::Netlink {
        let v: Value =
            serde_json::from_str(payload).map_err(|e| NftError::Output(e.to_string()))?;
        if let Some(r) = via_netlink(|| crate::netlink::try_apply_json(&v)) {
            return r;
        }
    }
    run_nft(payload)
}

/// `nft -j -f -` with `payload`.
///
/// Spawned here rather than through the `nftables` crate's helper, which leaves
/// nft's stderr (where its reason for refusing goes) unread.
pub fn run_nft(payload: &str) -> Result<(), NftError> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NftError::NotInstalled(e.to_string()))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let written = stdin.write_all(payload.as_bytes());
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| NftError::Output(e.to_string()))?;
    if out.status.success() {
        written.map_err(|e| NftError::Output(e.to_string()))?;
        return Ok(());
    }
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Err(NftError::Rejected(msg.trim().to_string()))
}

/// `nft -j list table FAMILY NAME`, or `None` when the table does not exist.
pub fn list_table(family: &str, name: &str) -> Result<Option<Value>, NftError> {
    if let Some(r) = via_netlink(|| crate::netlink::try_list_table(family, name)) {
        return r;
    }
    list_table_nft(family, name)
}

/// `nft -j list table FAMILY NAME` by running `nft`.
pub fn list_table_nft(family: &str, name: &str) -> Result<Option<Value>, NftError> {
    match helper::get_current_ruleset_raw(None::<&str>, ["list", "table", family, name]) {
        Ok(out) => serde_json::from_str(&out)
            .map(Some)
            .map_err(|e| NftError::Output(e.to_string())),
        Err(NftablesError::NftFailed { stderr, .. })
            if stderr.contains("No such file or directory") =>
        {
            Ok(None)
        }
        Err(e) => Err(map_err(e)),
    }
}

/// Deletes the table if it exists; returns whether it did.
pub fn delete_table(family: &str, name: &str) -> Result<bool, NftError> {
    if list_table_names(family)?.iter().any(|n| n == name) {
        let payload = serde_json::json!({"nftables": [{"delete": {"table": {"family": family, "name": name}}}]});
        run_json(&payload.to_string())?;
        Ok(true)
    } else {
        Ok(false)
    }
}

/// The names of the tables of one family.
pub fn list_table_names(family: &str) -> Result<Vec<String>, NftError> {
    if let Some(r) = via_netlink(|| crate::netlink::try_list_table_names(family)) {
        return r;
    }
    let out = helper::get_current_ruleset_raw(None::<&str>, ["list", "tables", family])
        .map_err(map_err)?;
    let v: Value = serde_json::from_str(&out).map_err(|e| NftError::Output(e.to_string()))?;
    Ok(v["nftables"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["table"]["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}
