//! The host's desired state on disk: `rules.toml` under the config directory
//! (`/etc/portwall`, or wherever the caller says), plus `applied.toml`, the
//! ruleset last applied to the kernel (what lets a one-rule change touch only
//! the set elements that differ), and `pending.json` (a change waiting for
//! confirmation, see [`crate::confirmation`]).
//!
//! Every change runs under an exclusive `flock` on `lock` ([`ConfigDir`]),
//! and files are written atomically ([`write_atomically`]: temp file, fsync,
//! rename, fsync of the directory), so two concurrent invocations never lose
//! a rule and a crash never leaves half a file. The temp files a killed run
//! left behind are removed by the next one to take the lock.

use crate::error::{HostError, Result};
use model::{HostConfig, Ruleset, Services};
use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const DEFAULT_DIR: &str = "/etc/portwall";

/// The config directory, locked for the lifetime of this value.
pub struct ConfigDir {
    dir: PathBuf,
    _lock: File,
    pub services: Services,
    /// The text of `rules.toml` as this process last read or wrote it: when
    /// `applied.toml` holds the same bytes (the usual case), its rules are the
    /// loaded ones and need not be parsed again (100k rules take a few hundred
    /// milliseconds). The lock keeps other processes from changing it.
    rules_text: std::cell::RefCell<Option<String>>,
}

impl ConfigDir {
    /// Opens (creating if needed) the directory, takes the exclusive lock and
    /// removes what a killed run staged and never renamed.
    pub fn lock(dir: &Path) -> Result<ConfigDir> {
        fs::create_dir_all(dir)
            .map_err(|e| HostError::io("create the config directory", dir, e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| HostError::io("open", &lock_path, e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| HostError::io("lock", &lock_path, e.into()))?;
        remove_stale_staged_files(dir);
        remove_stale_staged_files(&dir.join("lists"));
        Ok(ConfigDir {
            dir: dir.to_path_buf(),
            _lock: lock,
            services: services(),
            rules_text: std::cell::RefCell::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn rules_path(&self) -> PathBuf {
        self.dir.join("rules.toml")
    }

    fn applied_path(&self) -> PathBuf {
        self.dir.join("applied.toml")
    }

    /// The desired state; the default (disabled, no rules) when there is no file.
    pub fn load(&self) -> Result<HostConfig> {
        let Some(text) = read_text(&self.rules_path())? else {
            return Ok(HostConfig::default());
        };
        let config = parse_config(&self.rules_path(), &text, &self.services)?;
        *self.rules_text.borrow_mut() = Some(text);
        Ok(config)
    }

    pub fn save(&self, config: &HostConfig) -> Result<()> {
        self.save_toml(&config.to_toml())
    }

    /// [`ConfigDir::save`] of a config already written as TOML ([`HostConfig::to_toml`]).
    pub fn save_toml(&self, toml: &str) -> Result<()> {
        self.commit_rules(stage(&self.rules_path(), toml.as_bytes())?, toml)
    }

    /// Puts a staged `rules.toml` ([`stage_config`]) in place; `toml` is its text.
    pub fn commit_rules(&self, staged: StagedFile, toml: &str) -> Result<()> {
        // Unknown until the rename is known to have happened.
        *self.rules_text.borrow_mut() = None;
        staged.commit()?;
        *self.rules_text.borrow_mut() = Some(toml.to_string());
        Ok(())
    }

    /// The ruleset last applied to the kernel by portwall, if any.
    pub fn applied(&self) -> Result<Option<Ruleset>> {
        Ok(read_config(&self.applied_path(), &self.services)?.map(|c| c.ruleset))
    }

    /// [`ConfigDir::applied`], borrowed from `loaded` when `applied.toml` is
    /// byte for byte the current `rules.toml`. `loaded` must be what
    /// [`ConfigDir::load`] returned, with `rules.toml` unchanged since.
    pub fn applied_or_loaded<'a>(
        &self,
        loaded: &'a HostConfig,
    ) -> Result<Option<Cow<'a, Ruleset>>> {
        let rules_text = self.rules_text.borrow();
        read_applied(&self.dir, &self.services, rules_text.as_deref(), loaded)
    }

    pub fn set_applied(&self, ruleset: Option<&Ruleset>) -> Result<()> {
        let path = self.applied_path();
        match ruleset {
            Some(r) => write_atomically(
                &path,
                HostConfig {
                    enabled: true,
                    ruleset: r.clone(),
                }
                .to_toml()
                .as_bytes(),
            ),
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(HostError::io("remove", &path, e))
                }
                _ => Ok(()),
            },
        }
    }
}

/// The name a staged file of `path` takes: `.NAME.tmp-PID` next to it.
fn staged_name(path: &Path, pid: u32) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    dir.join(format!(
        ".{}.tmp-{pid}",
        path.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Removes the staged files (`.NAME.tmp-PID`) in `dir`: under the lock no
/// other process is staging, so any there were left by a run that was
/// killed between staging and renaming. Best effort: a file that cannot be
/// removed stays and harms nothing.
fn remove_stale_staged_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Where UFW's application profiles live.
pub const UFW_PROFILES_DIR: &str = "/etc/ufw/applications.d";

/// Service names: the built-in table overlaid with /etc/services; and
/// application profiles: Debian's, overlaid with the files of
/// [`UFW_PROFILES_DIR`] (in name order; a file that does not read is left
/// out with a warning on stderr, as UFW leaves it out).
pub fn services() -> Services {
    let mut s = match fs::read_to_string("/etc/services") {
        Ok(text) => Services::with_etc_services(&text),
        Err(_) => Services::builtin(),
    };
    let mut files: Vec<_> = fs::read_dir(UFW_PROFILES_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for path in files {
        let added = fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| s.add_profiles(&text).map_err(|e| e.to_string()));
        if let Err(e) = added {
            eprintln!(
                "portwall: warning: the application profiles of {} are left out: {e}",
                path.display()
            );
        }
    }
    s
}

/// Reads and validates a config file; `None` when it does not exist.
pub fn read_config(path: &Path, services: &Services) -> Result<Option<HostConfig>> {
    match read_text(path)? {
        Some(text) => parse_config(path, &text, services).map(Some),
        None => Ok(None),
    }
}

/// The ruleset in `dir`'s `applied.toml` (`None` when there is none),
/// borrowed from `rules` when the file holds `rules_text`, the bytes `rules`
/// was parsed from, and parsed otherwise.
pub fn read_applied<'a>(
    dir: &Path,
    services: &Services,
    rules_text: Option<&str>,
    rules: &'a HostConfig,
) -> Result<Option<Cow<'a, Ruleset>>> {
    let path = dir.join("applied.toml");
    let Some(text) = read_text(&path)? else {
        return Ok(None);
    };
    if rules_text == Some(text.as_str()) {
        return Ok(Some(Cow::Borrowed(&rules.ruleset)));
    }
    Ok(Some(Cow::Owned(
        parse_config(&path, &text, services)?.ruleset,
    )))
}

/// The text of a config file, `None` when there is none.
pub fn read_text(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HostError::io("read", path, e)),
    }
}

/// A config file's text as a config; an invalid one is bad input.
#[tracing::instrument(level = "debug", skip_all, fields(path = %path.display()))]
/// Temporary rules whose time has passed are left out: the kernel removed
/// them at their deadline.
pub fn parse_config(path: &Path, text: &str, services: &Services) -> Result<HostConfig> {
    let mut config = HostConfig::from_toml(text, services).map_err(|e| HostError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let now = crate::lists::now();
    config
        .ruleset
        .rules
        .retain(|r| !r.until.is_some_and(|d| d.passed(now)));
    Ok(config)
}

/// Writes `bytes` to `path` so that readers see the old or the new file, never a
/// part: temp file in the same directory, fsync, rename, fsync the directory.
/// The one atomic write of the config directory's files.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    stage(path, bytes)?.commit()
}

/// A file written and flushed to disk under a temporary name next to its
/// path: [`StagedFile::commit`] renames it into place (readers see the old
/// or the new file, never a part); dropped uncommitted, it is removed.
///
/// Staging is the slow half of a save (writing and flushing a 100k-rule file
/// takes milliseconds), so a change stages its files while the kernel applies
/// the ruleset, and commits them once the kernel has it.
#[must_use = "a staged file is removed unless committed"]
pub struct StagedFile {
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

/// Writes and flushes `bytes` as the staged new content of `path`.
#[tracing::instrument(level = "debug", skip_all, fields(path = %path.display()))]
pub fn stage(path: &Path, bytes: &[u8]) -> Result<StagedFile> {
    let staged = StagedFile {
        tmp: staged_name(path, std::process::id()),
        path: path.to_path_buf(),
        committed: false,
    };
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&staged.tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| HostError::io("write", path, e))?;
    Ok(staged)
}

impl StagedFile {
    /// Renames the file into place and flushes the directory.
    pub fn commit(mut self) -> Result<()> {
        self.put_in_place()?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| HostError::io("write", &self.path, e))
    }

    /// Renames the file into place without flushing the directory: a later
    /// [`StagedFile::commit`] in the same directory flushes both renames.
    pub fn rename(mut self) -> Result<()> {
        self.put_in_place()
    }

    fn put_in_place(&mut self) -> Result<()> {
        let result = fs::rename(&self.tmp, &self.path);
        // Renamed (or not): nothing is left to remove either way but the
        // temp file of a failed rename.
        self.committed = result.is_ok();
        result.map_err(|e| HostError::io("write", &self.path, e))
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// The staged `applied.toml` and `rules.toml` of a config that is both the
/// desired and the applied one, with its text: one rendering serves both.
pub struct StagedConfig {
    pub toml: String,
    pub applied: StagedFile,
    pub rules: StagedFile,
}

/// Renders `config` and stages it as both files of `dir`.
pub fn stage_config(dir: &Path, config: &HostConfig) -> Result<StagedConfig> {
    let toml = tracing::debug_span!("render toml").in_scope(|| config.to_toml());
    let applied = stage(&dir.join("applied.toml"), toml.as_bytes())?;
    let rules = stage(&dir.join("rules.toml"), toml.as_bytes())?;
    Ok(StagedConfig {
        toml,
        applied,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(line: &str, services: &Services) -> HostConfig {
        let text = format!("enabled = true\nrules = [\"{line}\"]\n");
        HostConfig::from_toml(&text, services).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A staged file is in place once committed and gone when dropped
    /// uncommitted; until then readers see the old file.
    #[test]
    fn a_staged_file_is_committed_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "old").unwrap();
        let staged = stage(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(names(dir.path()).len(), 2, "{:?}", names(dir.path()));
        drop(staged);
        assert_eq!(names(dir.path()), ["rules.toml"]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        stage(&path, b"new").unwrap().commit().unwrap();
        assert_eq!(names(dir.path()), ["rules.toml"]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    }

    /// What a killed run staged (and never renamed) is removed by the next
    /// process to take the lock; the files in place stay as they were.
    #[test]
    fn the_next_lock_removes_what_a_killed_run_staged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "enabled = false\n").unwrap();
        for name in ["rules.toml", "applied.toml", "pending.json"] {
            std::fs::write(staged_name(&dir.path().join(name), 4_000_000), "half").unwrap();
        }
        // A list's file, staged in lists/ (a killed 'list load').
        let lists = dir.path().join("lists");
        std::fs::create_dir(&lists).unwrap();
        std::fs::write(lists.join("blk.list"), "192.0.2.1\n").unwrap();
        std::fs::write(staged_name(&lists.join("blk.list"), 4_000_000), "half").unwrap();
        assert_eq!(names(dir.path()).len(), 5);
        let locked = ConfigDir::lock(dir.path()).unwrap();
        assert_eq!(names(dir.path()), ["lists", "lock", "rules.toml"]);
        assert_eq!(names(&lists), ["blk.list"]);
        assert!(!locked.load().unwrap().enabled);
    }

    /// `applied.toml` is taken from the loaded config only while it is the
    /// same text as the current `rules.toml`; after `rules.toml` is written
    /// anew it is parsed, never confused with the newer rules.
    #[test]
    fn applied_is_borrowed_only_while_it_is_the_current_rules_file() {
        let dir = tempfile::tempdir().unwrap();
        let st = ConfigDir::lock(dir.path()).unwrap();
        let a = config("allow 22/tcp", &st.services);
        let b = config("allow 80/tcp", &st.services);
        st.save(&a).unwrap();
        let loaded = st.load().unwrap();
        assert_eq!(loaded, a);
        write_atomically(&dir.path().join("applied.toml"), a.to_toml().as_bytes()).unwrap();
        let applied = st.applied_or_loaded(&loaded).unwrap().unwrap();
        assert!(matches!(applied, Cow::Borrowed(_)));
        assert_eq!(*applied, a.ruleset);
        // rules.toml changes; applied.toml still holds a.
        st.save(&b).unwrap();
        let applied = st.applied_or_loaded(&b).unwrap().unwrap();
        assert!(matches!(applied, Cow::Owned(_)));
        assert_eq!(*applied, a.ruleset);
        // Nothing applied: nothing to borrow.
        std::fs::remove_file(dir.path().join("applied.toml")).unwrap();
        assert!(st.applied_or_loaded(&b).unwrap().is_none());
    }

    /// An invalid config file is bad input, named with its path.
    #[test]
    fn an_invalid_config_is_bad_input_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "rules = [\"allow 22/tcpp\"]\n").unwrap();
        let e = read_config(&path, &Services::builtin()).unwrap_err();
        assert!(e.is_bad_input());
        assert!(
            e.to_string().contains("rules.toml") && e.to_string().contains("tcpp"),
            "{e}"
        );
    }
}
