//! What can go wrong in a host operation, sorted by what the caller does
//! about it: bad input (nothing changed), a refusal (the lockout check), the
//! kernel, or the files.

use crate::packet_filter::KernelError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A config file that is not a valid config: bad input, nothing changed.
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    /// The change would cut a live SSH session (the message names it and
    /// the rule); nothing changed.
    #[error("{0}")]
    LockedOut(String),
    /// The kernel refused or could not be reached.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A file of the config directory could not be read or written.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// `pending.json` is not a pending confirmation.
    #[error("pending.json is unreadable")]
    PendingUnreadable(#[source] serde_json::Error),
    /// A rule or command names a list that does not exist.
    #[error("there is no list '@{name}': {existing}")]
    NoSuchList {
        name: model::list::ListName,
        existing: String,
    },
    /// A list a rule uses cannot be deleted.
    #[error("list '@{name}' is used by rule {number} ({rule}): delete the rule first")]
    ListInUse {
        name: model::list::ListName,
        number: usize,
        rule: String,
    },
    /// The live SSH sessions could not be read.
    #[error("cannot read the live SSH sessions")]
    Sessions(#[source] inspect::InspectError),
}

impl HostError {
    /// An I/O error on `path`, described as "cannot VERB PATH".
    pub(crate) fn io(verb: &str, path: &std::path::Path, source: std::io::Error) -> HostError {
        HostError::Io {
            what: format!("cannot {verb} {}", path.display()),
            source,
        }
    }

    /// Whether this is the caller's bad input (a config that is not valid).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            HostError::Config { .. } | HostError::NoSuchList { .. } | HostError::ListInUse { .. }
        )
    }
}

pub type Result<T, E = HostError> = std::result::Result<T, E>;
