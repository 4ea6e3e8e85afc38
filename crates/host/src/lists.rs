//! Address lists on disk: one file per list, `lists/NAME.list` under the
//! config directory, apart from `rules.toml`, so a large list costs nothing
//! to a rule change that does not need it (see [`model::list::Lists`]).
//!
//! A list file holds one entry per line as [`model::list::parse_stored_list`]
//! reads it (`203.0.113.0/24`, `192.0.2.9 until 2026-12-08T04:00:00Z`);
//! it is written atomically ([`crate::config_dir::write_atomically`]), and
//! entries whose time has passed are dropped when it is read. The kernel
//! removes them by itself at their deadline (element timeouts), so nothing
//! needs to run then.

use crate::config_dir::{read_text, write_atomically, ConfigDir};
use crate::error::{HostError, Result};
use model::list::{parse_stored_list, ListEntry, ListName, Lists, Segments};
use model::Ruleset;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The limit on the entries of one list.
pub const LIST_ENTRIES_MAX: usize = 2_000_000;

/// Seconds since the epoch by this machine's clock.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The list files of a config directory: what [`ConfigDir`]'s list methods
/// (under the lock) and [`read_lists`] (without it) both read.
struct ListFiles<'a>(&'a Path);

impl ListFiles<'_> {
    fn dir(&self) -> PathBuf {
        self.0.join("lists")
    }

    fn path(&self, name: &ListName) -> PathBuf {
        self.dir().join(format!("{name}.list"))
    }

    fn names(&self) -> Result<Vec<ListName>> {
        let dir = self.dir();
        let read = match fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HostError::io("read", &dir, e)),
        };
        let mut names = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| HostError::io("read", &dir, e))?;
            let file = entry.file_name();
            let Some(stem) = file.to_str().and_then(|f| f.strip_suffix(".list")) else {
                continue;
            };
            if let Ok(n) = ListName::parse(stem) {
                names.push(n);
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, name: &ListName) -> Result<Vec<ListEntry>> {
        let path = self.path(name);
        let Some(text) = read_text(&path)? else {
            return Err(self.no_such_list(name));
        };
        parse_stored_list(&text, now()).map_err(|e| HostError::Config {
            path,
            message: e.to_string(),
        })
    }

    fn no_such_list(&self, name: &ListName) -> HostError {
        let names = self.names().unwrap_or_default();
        let existing = if names.is_empty() {
            "there are no lists yet ('portwall list create NAME')".to_string()
        } else {
            format!(
                "the lists are: {}",
                names
                    .iter()
                    .map(|n| format!("@{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        HostError::NoSuchList {
            name: name.clone(),
            existing,
        }
    }

    fn load(&self, ruleset: &Ruleset) -> Result<Lists> {
        let mut lists = Lists::default();
        for name in ruleset.rules.iter().flat_map(|r| r.lists()) {
            if lists.0.contains_key(name) {
                continue;
            }
            let entries = self.read(name)?;
            lists
                .0
                .insert(name.clone(), Arc::new(Segments::of(&entries)));
        }
        Ok(lists)
    }
}

impl ConfigDir {
    fn list_files(&self) -> ListFiles<'_> {
        ListFiles(self.path())
    }

    /// The names of the lists that exist, in order.
    pub fn list_names(&self) -> Result<Vec<ListName>> {
        self.list_files().names()
    }

    pub fn list_exists(&self, name: &ListName) -> bool {
        self.list_files().path(name).is_file()
    }

    /// A list's entries (without those whose time has passed). A list that
    /// does not exist is an error naming the lists that do.
    pub fn read_list(&self, name: &ListName) -> Result<Vec<ListEntry>> {
        self.list_files().read(name)
    }

    /// The error for a list that does not exist: it names those that do.
    pub fn no_such_list(&self, name: &ListName) -> HostError {
        self.list_files().no_such_list(name)
    }

    /// Writes a list whole, atomically (creating it if needed).
    pub fn write_list(&self, name: &ListName, entries: &[ListEntry]) -> Result<()> {
        let files = self.list_files();
        let dir = files.dir();
        fs::create_dir_all(&dir).map_err(|e| HostError::io("create", &dir, e))?;
        write_atomically(
            &files.path(name),
            model::list::format_stored_list(entries).as_bytes(),
        )
    }

    /// Removes a list's file.
    pub fn remove_list(&self, name: &ListName) -> Result<()> {
        let path = self.list_files().path(name);
        fs::remove_file(&path).map_err(|e| HostError::io("remove", &path, e))
    }

    /// The lists `ruleset`'s rules name, read and merged: what a change
    /// that replaces the table needs ([`Ruleset::lists`]).
    pub fn load_lists(&self, ruleset: &Ruleset) -> Result<Lists> {
        self.list_files().load(ruleset)
    }
}

/// [`ConfigDir::load_lists`] for a command that only reads (`explain`,
/// `audit`), without taking the lock: each file is read whole, as it was
/// written atomically.
pub fn read_lists(dir: &Path, ruleset: &Ruleset) -> Result<Lists> {
    ListFiles(dir).load(ruleset)
}
