//! The host's desired state on disk: `rules.toml` under the config directory
//! (`/etc/portwall`, or `--config-dir` / `PORTWALL_CONFIG_DIR`), plus `applied.toml`,
//! the ruleset last applied to the kernel (what lets a one-rule change touch only
//! the set elements that differ).
//!
//! Every change runs under an exclusive `flock` on `lock`, and files are written
//! atomically (temp file, fsync, rename, fsync of the directory), so two concurrent
//! invocations never lose a rule and a crash never leaves half a file.

use anyhow::{Context, Result};
use model::{HostConfig, Ruleset, Services};
use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const DEFAULT_DIR: &str = "/etc/portwall";

/// The config directory, locked for the lifetime of this value.
pub struct State {
    dir: PathBuf,
    _lock: File,
    pub services: Services,
    /// The text of `rules.toml` as this process last read or wrote it: when
    /// `applied.toml` holds the same bytes (the usual case), its rules are the
    /// loaded ones and need not be parsed again (100k rules take a few hundred
    /// milliseconds). The lock keeps other processes from changing it.
    rules_text: std::cell::RefCell<Option<String>>,
}

impl State {
    /// Opens (creating if needed) the directory and takes the exclusive lock.
    pub fn lock(dir: &Path) -> Result<State> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the config directory {}", dir.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .with_context(|| format!("cannot open {}", dir.join("lock").display()))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", dir.join("lock").display()))?;
        Ok(State {
            dir: dir.to_path_buf(),
            _lock: lock,
            services: services(),
            rules_text: std::cell::RefCell::new(None),
        })
    }

    pub fn dir(&self) -> &Path {
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

    /// [`State::save`] of a config already written as TOML ([`HostConfig::to_toml`]).
    pub fn save_toml(&self, toml: &str) -> Result<()> {
        // Unknown until the write is known to have happened.
        *self.rules_text.borrow_mut() = None;
        write_atomically(&self.rules_path(), toml.as_bytes())?;
        *self.rules_text.borrow_mut() = Some(toml.to_string());
        Ok(())
    }

    /// Records what was applied, as the TOML of an enabled config with that ruleset
    /// (what [`State::set_applied`] writes): a commit that just wrote the desired
    /// config's TOML passes the same text instead of turning every rule into TOML
    /// again.
    pub fn set_applied_toml(&self, toml: &str) -> Result<()> {
        write_atomically(&self.applied_path(), toml.as_bytes())
    }

    /// The ruleset last applied to the kernel by portwall, if any.
    pub fn applied(&self) -> Result<Option<Ruleset>> {
        Ok(read_config(&self.applied_path(), &self.services)?.map(|c| c.ruleset))
    }

    /// [`State::applied`], borrowed from `loaded` when `applied.toml` is byte
    /// for byte the current `rules.toml`. `loaded` must be what
    /// [`State::load`] returned, with `rules.toml` unchanged since.
    pub fn applied_or_loaded<'a>(
        &self,
        loaded: &'a HostConfig,
    ) -> Result<Option<Cow<'a, Ruleset>>> {
        let rules_text = self.rules_text.borrow();
        read_applied(&self.dir, &self.services, rules_text.as_deref(), loaded)
    }

    pub fn set_applied(&self, ruleset: Option<&Ruleset>) -> Result<()> {
        match ruleset {
            Some(r) => write_atomically(
                &self.applied_path(),
                HostConfig {
                    enabled: true,
                    ruleset: r.clone(),
                }
                .to_toml()
                .as_bytes(),
            ),
            None => match fs::remove_file(self.applied_path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            },
        }
    }
}

/// Service names: the built-in table overlaid with /etc/services.
pub fn services() -> Services {
    match fs::read_to_string("/etc/services") {
        Ok(text) => Services::with_etc_services(&text),
        Err(_) => Services::builtin(),
    }
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
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A config file's text as a config; an invalid one is bad input (exit 2).
#[tracing::instrument(level = "debug", skip_all, fields(path = %path.display()))]
pub fn parse_config(path: &Path, text: &str, services: &Services) -> Result<HostConfig> {
    HostConfig::from_toml(text, services)
        .map_err(|e| crate::exit::usage(format!("{}: {e}", path.display())))
}

/// Writes `bytes` to `path` so that readers see the old or the new file, never a
/// part: temp file in the same directory, fsync, rename, fsync the directory.
#[tracing::instrument(level = "debug", skip_all, fields(path = %path.display()))]
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write()
        .with_context(|| format!("cannot write {}", path.display()))
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(line: &str, services: &Services) -> HostConfig {
        let text = format!("enabled = true\nrules = [\"{line}\"]\n");
        HostConfig::from_toml(&text, services).unwrap()
    }

    /// `applied.toml` is taken from the loaded config only while it is the
    /// same text as the current `rules.toml`; after `rules.toml` is written
    /// anew it is parsed, never confused with the newer rules.
    #[test]
    fn applied_is_borrowed_only_while_it_is_the_current_rules_file() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::lock(dir.path()).unwrap();
        let a = config("allow 22/tcp", &st.services);
        let b = config("allow 80/tcp", &st.services);
        st.save(&a).unwrap();
        let loaded = st.load().unwrap();
        assert_eq!(loaded, a);
        st.set_applied_toml(&a.to_toml()).unwrap();
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
}
