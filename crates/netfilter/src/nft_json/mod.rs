//! nft's JSON language spoken over netlink, where JSON is the interface:
//! a JSON batch given as input ([`crate::Kernel::apply_json`]), and the
//! listing `nft -j list table` prints, which the oracle tests compare with
//! the `nft` binary's. portwall's own tables never go through here: they are
//! typed from the compiled table to the netlink bytes and back
//! ([`crate::netlink`]).

pub mod decode;
pub mod encode;
pub(crate) mod values;

use crate::netlink::types::family_number;
use crate::netlink::{apply_with, open, Error};
use serde_json::Value;

/// Applies an nft JSON batch (`{"nftables": [...]}`) in one transaction
/// over netlink. JSON outside the subset portwall uses is
/// [`Error::Unsupported`] ([`crate::Kernel::apply_json`] then runs `nft`).
pub fn try_apply_json(batch: &Value) -> Result<(), Error> {
    let cmds = batch
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Invalid("the batch has no 'nftables' array".into()))?;
    apply_with(encode::tables_named(cmds), |b| {
        for c in cmds {
            b.command(c)?;
        }
        Ok(())
    })
}

/// [`try_apply_json`].
pub fn apply_json(batch: &Value) -> Result<(), Error> {
    try_apply_json(batch)
}

/// `nft -j list table FAMILY NAME` through netlink: the same JSON, or `None`
/// when the table does not exist.
pub fn list_table(family: &str, name: &str) -> Result<Option<Value>, Error> {
    let fam = family_number(family)
        .ok_or_else(|| Error::Invalid(format!("'{family}' is not a family")))?;
    let mut sock = open()?;
    decode::list_table(&mut sock, fam, name)
}
