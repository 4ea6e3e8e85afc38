//! The `nft` binary: nftables JSON in (`nft -j -f -`), the kernel's tables
//! out (`nft -j list table`).
//!
//! [`crate::Kernel::NftBinary`] reaches the kernel through here; the default,
//! [`crate::Kernel::Netlink`], does not spawn anything. The whole batch is one
//! transaction: the kernel commits all of it or none of it, so a rejected
//! batch leaves the previous ruleset in force. This module is the only place
//! that spawns `nft`.

use nftables::helper::{self, NftablesError};
use nftables::schema::{self, NfCmd, NfListObject, NfObject, Nftables};
use serde::Serialize;
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

/// Whether `nft list tables` runs and succeeds here.
pub fn works() -> bool {
    std::process::Command::new("nft")
        .args(["list", "tables"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The batch as the JSON `nft -j -f` reads, with a `counter` statement on
/// every set it adds: each element then gets its own counter, also the ones
/// added later.
///
/// The set's `stmt` property is the one thing the `nftables` crate's schema
/// lacks, so it is added to the serialized value. (Per-element `counter`
/// keys, which the schema has, are ignored by nft 1.0.6's JSON parser.)
pub fn json_with_set_counters(batch: &Nftables<'_>) -> String {
    #[derive(Serialize)]
    struct Batch<'b, 'a> {
        nftables: Vec<Obj<'b, 'a>>,
    }
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Obj<'b, 'a> {
        Typed(&'b NfObject<'a>),
        Set { add: AddSet<'b, 'a> },
    }
    #[derive(Serialize)]
    struct AddSet<'b, 'a> {
        set: SetWithCounter<'b, 'a>,
    }
    #[derive(Serialize)]
    struct SetWithCounter<'b, 'a> {
        #[serde(flatten)]
        set: &'b schema::Set<'a>,
        stmt: [Value; 1],
    }
    let objs = batch
        .objects
        .iter()
        .map(|o| match o {
            NfObject::CmdObject(NfCmd::Add(NfListObject::Set(set))) => Obj::Set {
                add: AddSet {
                    set: SetWithCounter {
                        set,
                        stmt: [serde_json::json!({ "counter": null })],
                    },
                },
            },
            other => Obj::Typed(other),
        })
        .collect();
    serde_json::to_string(&Batch { nftables: objs }).expect("an nftables batch serializes")
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

/// Deletes the table (which must exist).
pub fn delete_table(family: &str, name: &str) -> Result<(), NftError> {
    let payload =
        serde_json::json!({"nftables": [{"delete": {"table": {"family": family, "name": name}}}]});
    run_nft(&payload.to_string())
}

/// The names of the tables of one family.
pub fn list_table_names(family: &str) -> Result<Vec<String>, NftError> {
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
