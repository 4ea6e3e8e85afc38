//! nf_tables over netlink: what the `nft` binary does for portwall (apply a
//! batch, list a table) without spawning it ([`crate::Kernel::Netlink`]).
//!
//! **Why.** `nft -j -f` spends most of a 100k-element load parsing JSON and
//! evaluating it, and `nft -j list table` as long again printing it; portwall's
//! targets (100k rules applied and read back in 0.5 s, a one-rule change in
//! 10 ms) leave no room for either. The kernel's side of both is fast: one
//! netlink batch in, a few netlink dumps out.
//!
//! **Design.** Typed from end to end: no text between the compiled table
//! and the kernel's bytes, either way.
//!
//! - [`try_apply_typed`] / [`try_apply_compiled`] write the `nftables`
//!   crate's typed commands (tables, base and regular chains, named sets with
//!   concatenated and interval keys and a `counter` statement, elements, rules
//!   with meta/payload/ct matches, lookups, counters, verdicts, limit, log,
//!   reject and meters) as nf_tables messages ([`encode`]), all in ONE batch
//!   (`NFNL_MSG_BATCH_BEGIN` … `END`) with `NLM_F_ACK` on each message: the
//!   kernel commits all of it or none of it. Every message is what nft 1.0.6
//!   sends for the same table (expressions, registers, the dependencies nft
//!   adds such as `meta nfproto ipv4` before `ip saddr`, set flags, key types
//!   and the user data nft reads back), so `nft list` prints the same text.
//!   A compiled table's 100k elements are written straight from their keys.
//! - An error acknowledgement is mapped back to the message it answers; with the
//!   extended ack the kernel also names the attribute, so the error names the
//!   object and, for elements, the element (`add element inet portwall in_2 {
//!   10.0.0.0/8 . tcp . 22 }: File exists`).
//! - Reading back: [`verify`] compares the kernel's element bytes with the
//!   compiled ones, [`counters`] matches counters on those bytes, and
//!   [`read`] decodes a table into the typed [`crate::readback::KernelTable`]
//!   (the edge's read-back, and any table through [`crate::Kernel::read_table`]).
//! - nft's JSON, where it is the interface (JSON given as input, the listing
//!   the oracle tests compare with `nft -j`), is [`crate::nft_json`]'s.
//!
//! Every call opens its own socket on the calling thread: a netlink socket
//! belongs to the network namespace of the thread that opens it.

pub mod counters;
pub mod decode;
pub mod encode;
pub mod read;
pub mod socket;
pub mod types;
pub mod verify;

use encode::{Batch, SetInfo};
use nftables::schema::{NfCmd, NfListObject, NfObject, Nftables};
use socket::NfSocket;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use types::*;

/// What can go wrong in the netlink backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The JSON uses something this backend does not translate (the `nft`
    /// binary can still apply it).
    #[error("not supported by the netlink backend: {0}")]
    Unsupported(String),
    /// The batch is wrong before the kernel sees it (as nft's own refusals).
    #[error("{0}")]
    Invalid(String),
    /// This kernel has no nf_tables over netlink: the socket family or the
    /// nf_tables subsystem is missing (`EPROTONOSUPPORT`, `EAFNOSUPPORT`).
    #[error("this kernel has no nf_tables netlink: {0}")]
    NoNfTables(std::io::Error),
    /// Not allowed to open the socket (`EPERM`, `EACCES`): the `nft` binary
    /// would be refused as well.
    #[error("not permitted to talk to nf_tables ({0}); run as root (CAP_NET_ADMIN)")]
    NotPermitted(std::io::Error),
    /// Opening the socket failed for another reason (out of file
    /// descriptors or memory).
    #[error("cannot open an nf_tables netlink socket: {0}")]
    Socket(std::io::Error),
    /// The kernel refused a message of the batch.
    #[error("Could not process rule: {detail}: {what}")]
    Kernel {
        errno: i32,
        what: String,
        detail: String,
    },
    #[error("netlink: {0}")]
    Io(std::io::Error),
}

/// Why the `nft` binary is used instead of netlink (see [`Error::fallback`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The kernel has no nf_tables over netlink ([`Error::NoNfTables`], or
    /// the kernel answers `EPROTONOSUPPORT` / `EAFNOSUPPORT`).
    NoNfTables,
    /// A JSON batch given as input uses what the netlink encoder does not
    /// translate ([`Error::Unsupported`]).
    UntranslatedJson,
}

const EPERM: i32 = 1;
const EACCES: i32 = 13;
const EPROTONOSUPPORT: i32 = 93;
const EAFNOSUPPORT: i32 = 97;

impl Error {
    /// Whether the `nft` binary can do what netlink could not, and why; `None`
    /// when the error stands (a refusal, a bad batch, no permission).
    pub fn fallback(&self) -> Option<Fallback> {
        match self {
            Error::NoNfTables(_) => Some(Fallback::NoNfTables),
            Error::Kernel { errno, .. } if matches!(*errno, EPROTONOSUPPORT | EAFNOSUPPORT) => {
                Some(Fallback::NoNfTables)
            }
            Error::Unsupported(_) => Some(Fallback::UntranslatedJson),
            _ => None,
        }
    }
}

/// The message of an errno, as `strerror` says it.
pub fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A sequence number unique in this process (and unlikely to repeat across
/// processes, which have their own sockets anyway).
pub(crate) fn next_seq() -> u32 {
    let base = SEQ.load(Ordering::Relaxed);
    if base == 0 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        let _ = SEQ.compare_exchange(0, t.max(1), Ordering::Relaxed, Ordering::Relaxed);
    }
    SEQ.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn next_seq_advance(n: u32) {
    SEQ.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn open() -> Result<NfSocket, Error> {
    NfSocket::open().map_err(|e| match e.raw_os_error() {
        Some(EPROTONOSUPPORT | EAFNOSUPPORT) => Error::NoNfTables(e),
        Some(EPERM | EACCES) => Error::NotPermitted(e),
        _ => Error::Socket(e),
    })
}

/// Whether nf_tables answers over netlink here: opens a socket and lists the
/// tables of family `inet` (what [`crate::Kernel::detect`] asks once).
pub fn probe() -> Result<(), Error> {
    try_list_table_names("inet").map(drop)
}

/// The sets of the kernel's tables a batch uses without creating them
/// (elements added to an existing set, lookups in one), by (family, table):
/// read before the batch is encoded, so that encoding never waits on the
/// kernel.
pub(crate) type KernelSets = HashMap<(u8, String), Vec<SetInfo>>;

/// Reads the sets of `tables` (those that do not exist have none).
fn read_sets(
    sock: &mut NfSocket,
    tables: impl IntoIterator<Item = (u8, String)>,
) -> Result<KernelSets, Error> {
    let mut out = KernelSets::new();
    for (family, table) in tables {
        if !out.contains_key(&(family, table.clone())) {
            let sets = decode::table_sets(sock, family, &table)?;
            out.insert((family, table), sets.iter().map(|s| s.info()).collect());
        }
    }
    Ok(out)
}

/// Writes a batch with `fill`, sends it, and maps a refusal to the object.
/// `tables`: the tables whose sets the batch uses without creating them.
pub(crate) fn apply_with(
    tables: impl IntoIterator<Item = (u8, String)>,
    fill: impl FnOnce(&mut Batch) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut sock = tracing::debug_span!("open socket").in_scope(open)?;
    let kernel_sets =
        tracing::debug_span!("kernel sets").in_scope(|| read_sets(&mut sock, tables))?;
    let encode = tracing::debug_span!("encode batch").entered();
    let (buf, msgs, first) = {
        // Reserve the batch's sequence numbers.
        let first_seq = next_seq();
        let mut batch = Batch::new(first_seq, kernel_sets);
        fill(&mut batch)?;
        let (buf, msgs, first) = batch.finish();
        SEQ.fetch_add(msgs.len() as u32 + 2, Ordering::Relaxed);
        (buf, msgs, first)
    };
    drop(encode);
    if msgs.is_empty() {
        return Ok(());
    }
    let nacks = tracing::debug_span!("kernel batch", messages = msgs.len(), bytes = buf.len())
        .in_scope(|| sock.send_batch(&buf, msgs.len() as u32, first))
        .map_err(Error::Io)?;
    let Some(n) = nacks.iter().min_by_key(|n| n.seq) else {
        return Ok(());
    };
    let mut what = "the transaction".to_string();
    if let Some(m) = msgs.iter().find(|m| m.seq == n.seq) {
        what = m.what.clone();
        if let (Some(set), Some(off)) = (&m.set, n.offset) {
            let end = buf
                .get(m.start..m.start + 4)
                .map(|l| u32::from_ne_bytes([l[0], l[1], l[2], l[3]]) as usize)
                .unwrap_or(0);
            if let Some(el) = buf
                .get(m.start..m.start + end)
                .and_then(|msg| decode::describe_element(set, msg, off as usize))
            {
                what = format!("{what} {{ {el} }}");
            }
        }
    }
    let mut detail = strerror(n.errno);
    if let Some(msg) = &n.msg {
        detail = format!("{detail} ({msg})");
    }
    if nacks.len() > 1 {
        what = format!("{what} (and {} more error(s))", nacks.len() - 1);
    }
    Err(Error::Kernel {
        errno: n.errno,
        what,
        detail,
    })
}

/// Applies a typed batch in one transaction. With `set_counters`, every set it
/// adds gets a `counter` statement (each element its own counter), which the
/// `nftables` crate's `Set` cannot express.
pub fn try_apply_typed(batch: &Nftables<'_>, set_counters: bool) -> Result<(), Error> {
    apply_typed_with(batch, set_counters, None)
}

/// [`try_apply_typed`] for a compiled table's batch whose sets were left
/// empty: their elements are written straight from `elements` (by set name),
/// which saves turning 100k elements into text and back; `counters` gives
/// the counter values some elements start with (by set name, then element
/// index; see [`crate::carry`]).
pub fn try_apply_compiled(
    batch: &Nftables<'_>,
    elements: &HashMap<&str, &[crate::compile::Element]>,
    counters: Option<&HashMap<String, encode::ElementCounters>>,
) -> Result<(), Error> {
    apply_typed_with(
        batch,
        true,
        Some(encode::CompiledElements { elements, counters }),
    )
}

fn apply_typed_with(
    batch: &Nftables<'_>,
    set_counters: bool,
    compiled: Option<encode::CompiledElements<'_>>,
) -> Result<(), Error> {
    apply_with(encode::tables_used(batch), |b| {
        for obj in batch.objects.iter() {
            b.typed(obj, set_counters, compiled)?;
        }
        Ok(())
    })
}

/// [`try_apply_typed`].
pub fn apply_typed(batch: &Nftables<'_>, set_counters: bool) -> Result<(), Error> {
    try_apply_typed(batch, set_counters)
}

/// Deletes a table in one transaction.
pub fn try_delete_table(family: &str, name: &str) -> Result<(), Error> {
    let family = match family {
        "inet" => nftables::types::NfFamily::INet,
        "ip" => nftables::types::NfFamily::IP,
        "ip6" => nftables::types::NfFamily::IP6,
        "bridge" => nftables::types::NfFamily::Bridge,
        "arp" => nftables::types::NfFamily::ARP,
        "netdev" => nftables::types::NfFamily::NetDev,
        other => return Err(Error::Invalid(format!("'{other}' is not a family"))),
    };
    let table = nftables::schema::Table {
        family,
        name: name.to_string().into(),
        handle: None,
    };
    let batch = Nftables {
        objects: vec![NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(
            table,
        )))]
        .into(),
    };
    try_apply_typed(&batch, false)
}

/// The table decoded into typed values ([`crate::readback::KernelTable`]);
/// `None` when it does not exist.
pub fn try_read_table(
    family: &str,
    name: &str,
) -> Result<Option<crate::readback::KernelTable>, Error> {
    let fam = family_number(family)
        .ok_or_else(|| Error::Invalid(format!("'{family}' is not a family")))?;
    let mut sock = open()?;
    read::read_table(&mut sock, fam, name)
}

/// The names of the tables of one family.
pub fn try_list_table_names(family: &str) -> Result<Vec<String>, Error> {
    let fam = family_number(family)
        .ok_or_else(|| Error::Invalid(format!("'{family}' is not a family")))?;
    let mut sock = open()?;
    Ok(decode::table_names(&mut sock, fam)?
        .into_iter()
        .map(|(n, _, _)| n)
        .collect())
}

/// How the kernel's table differs from `compiled`, compared on the elements'
/// bytes ([`verify::verify_compiled`]); `None` when the table does not exist.
pub fn try_verify_compiled(
    compiled: &crate::compile::CompiledTable,
) -> Result<Option<Vec<String>>, Error> {
    verify::verify_compiled(compiled)
}

/// How the kernel's table differs from `compiled` as an apply reads it back:
/// large sets by sample ([`verify::verify_applied`]); `None` when the table
/// does not exist.
pub fn try_verify_applied(
    compiled: &crate::compile::CompiledTable,
) -> Result<Option<Vec<String>>, Error> {
    verify::verify_applied(compiled)
}

/// Whether the elements an element-only change added are in the kernel and
/// those it removed are not ([`verify::verify_delta`]).
pub fn try_verify_delta(batch: &Nftables<'_>) -> Result<Vec<String>, Error> {
    verify::verify_delta(batch)
}
