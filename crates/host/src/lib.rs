//! The host's OS firewall as a library: what the `portwall` binary's
//! firewall commands do, without the parsing and the rendering.
//!
//! - [`config_dir`]: the desired state on disk (`rules.toml`, `applied.toml`,
//!   `pending.json` under `/etc/portwall`), locked for the duration of a
//!   command, every file written atomically ([`config_dir::write_atomically`]).
//! - [`packet_filter`]: the seam to the kernel ([`PacketFilter`]), passed in
//!   by the caller, which chooses the backend once.
//! - [`lockout`]: never lock the operator out (the live SSH sessions checked
//!   against a new ruleset).
//! - [`confirmation`]: `--confirm SECONDS` (a pending change, confirmed or
//!   rolled back at its deadline).
//! - [`lists`]: address lists, one file each (`lists/NAME.list`).
//! - [`counting_since`]: since when each counter counts, recorded at every
//!   apply from what the kernel did to the counters.
//! - [`transaction`]: the change procedure, atomic or nothing: lockout check,
//!   confirmation, apply, save, and the old ruleset re-applied when saving
//!   fails; and [`HostState`], what every command reports as it leaves the host.

#![forbid(unsafe_code)]

pub mod config_dir;
pub mod confirmation;
pub mod counting_since;
pub mod error;
pub mod lists;
pub mod lockout;
pub mod packet_filter;
pub mod transaction;

pub use config_dir::{ConfigDir, DEFAULT_DIR};
pub use confirmation::PendingConfirmation;
pub use error::HostError;
pub use packet_filter::{KernelError, PacketFilter};
pub use transaction::{ChangeOptions, ChangeReport, HostState};
