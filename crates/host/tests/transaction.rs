//! The change transaction against the real kernel, in network namespaces:
//! applied then saved, saved only when disabled, the old ruleset back in
//! force when saving fails, and a change that would cut a live SSH session
//! refused with nothing changed.

use host::transaction::{self, ChangeOptions};
use host::{ConfigDir, HostError};
use model::{HostConfig, Services};
use std::net::{TcpListener, TcpStream};
use testns::{Netns, Pair};

/// nftables over netlink, as the `portwall` binary chooses it by default.
const KERNEL: netfilter::Kernel = netfilter::Kernel::Netlink;

fn config(enabled: bool, rules: &[&str]) -> HostConfig {
    let list: Vec<String> = rules.iter().map(|r| format!("\"{r}\"")).collect();
    let text = format!("enabled = {enabled}\nrules = [{}]\n", list.join(", "));
    HostConfig::from_toml(&text, &Services::builtin()).unwrap()
}

fn no_watchdog(_: &host::PendingConfirmation) -> std::io::Result<()> {
    unreachable!("no change here asks for a confirmation")
}

fn forced() -> ChangeOptions {
    ChangeOptions {
        force: true,
        ..ChangeOptions::default()
    }
}

#[test]
fn a_change_is_applied_then_saved() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    ns.run(|| {
        let st = ConfigDir::lock(dir.path()).unwrap();
        let old = st.load().unwrap();
        let new = config(true, &["allow 22/tcp", "allow 80/tcp"]);
        let r = transaction::change(&st, &KERNEL, &old, &new, forced(), &no_watchdog).unwrap();
        assert!(r.applied.is_some());
        assert_eq!((r.before.enabled, r.before.loaded), (false, false));
        assert_eq!((r.after.enabled, r.after.loaded), (true, true));
        assert_eq!(st.load().unwrap(), new);
        assert_eq!(st.applied().unwrap().unwrap(), new.ruleset);
        assert_eq!(KERNEL.drift(&new.ruleset).unwrap(), Some(vec![]));
    });
}

#[test]
fn a_disabled_host_saves_without_loading() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    ns.run(|| {
        let st = ConfigDir::lock(dir.path()).unwrap();
        let old = st.load().unwrap();
        let new = config(false, &["allow 22/tcp"]);
        let r = transaction::change(&st, &KERNEL, &old, &new, forced(), &no_watchdog).unwrap();
        assert!(r.applied.is_none());
        assert_eq!((r.after.enabled, r.after.loaded), (false, false));
        assert!(!KERNEL.is_loaded().unwrap());
        assert_eq!(st.load().unwrap(), new);
        assert!(st.applied().unwrap().is_none());
    });
}

/// When `rules.toml` cannot be written after the kernel took the new
/// ruleset, the old one is put back: the kernel never runs rules the file
/// does not have.
#[test]
fn a_failed_save_puts_the_old_ruleset_back() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    ns.run(|| {
        let st = ConfigDir::lock(dir.path()).unwrap();
        let first = config(true, &["allow 22/tcp"]);
        let none = st.load().unwrap();
        transaction::change(&st, &KERNEL, &none, &first, forced(), &no_watchdog).unwrap();
        let old = st.load().unwrap();
        // rules.toml becomes a directory that a file cannot be renamed onto.
        std::fs::remove_file(st.rules_path()).unwrap();
        std::fs::create_dir_all(st.rules_path().join("in-the-way")).unwrap();
        let new = config(true, &["deny 22/tcp", "allow 80/tcp"]);
        let e = transaction::change(&st, &KERNEL, &old, &new, forced(), &no_watchdog).unwrap_err();
        assert!(matches!(e, HostError::Io { .. }), "{e}");
        assert_eq!(KERNEL.drift(&old.ruleset).unwrap(), Some(vec![]));
        assert_eq!(st.applied().unwrap().unwrap(), old.ruleset);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(left.is_empty(), "staged files left: {left:?}");
    });
}

/// A change that would cut a live SSH session is refused, naming the
/// session, and nothing is applied or saved; `force` applies it.
#[test]
fn a_change_that_cuts_a_session_is_refused_unless_forced() {
    let pair = Pair::new();
    let listener = pair.server.run(|| TcpListener::bind("[::]:22").unwrap());
    let addr = format!("{}:22", pair.server_addr.v4);
    let _client = pair.client.run(|| TcpStream::connect(addr).unwrap());
    let _accepted = listener.accept().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::env::remove_var("SSH_CONNECTION");
    pair.server.run(|| {
        let st = ConfigDir::lock(dir.path()).unwrap();
        let old = st.load().unwrap();
        // Enabled with the default "deny incoming" and nothing for SSH.
        let new = config(true, &["allow 80/tcp"]);
        let e = transaction::change(
            &st,
            &KERNEL,
            &old,
            &new,
            ChangeOptions::default(),
            &no_watchdog,
        )
        .unwrap_err();
        let HostError::LockedOut(message) = &e else {
            panic!("{e}")
        };
        assert!(message.contains(&pair.client_addr.v4), "{message}");
        assert!(message.contains("default policy"), "{message}");
        assert!(!KERNEL.is_loaded().unwrap());
        assert_eq!(st.load().unwrap(), old);
        transaction::change(&st, &KERNEL, &old, &new, forced(), &no_watchdog).unwrap();
        assert!(KERNEL.is_loaded().unwrap());
    });
}

/// A run killed between applying and saving leaves the kernel ahead of
/// `applied.toml`; a declarative change (`apply`) still makes the kernel
/// match the new state, though the files say it already does.
#[test]
fn a_declarative_change_makes_the_kernel_match_whatever_the_files_say() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    ns.run(|| {
        let st = ConfigDir::lock(dir.path()).unwrap();
        let none = st.load().unwrap();
        let wanted = config(true, &["allow 22/tcp", "allow 80/tcp"]);
        transaction::change(&st, &KERNEL, &none, &wanted, forced(), &no_watchdog).unwrap();
        // The killed run: the kernel took another ruleset, the files did not.
        let other = config(true, &["allow 22/tcp", "allow 8080/tcp"]);
        KERNEL
            .apply(
                &other.ruleset,
                Some(&wanted.ruleset),
                netfilter::ApplyOptions::default(),
            )
            .unwrap();
        assert_ne!(KERNEL.drift(&wanted.ruleset).unwrap(), Some(vec![]));
        let old = st.load().unwrap();
        let declarative = ChangeOptions {
            declarative: true,
            ..forced()
        };
        let r =
            transaction::change(&st, &KERNEL, &old, &wanted, declarative, &no_watchdog).unwrap();
        assert_eq!(r.applied.unwrap().mode, netfilter::ApplyMode::Replace);
        assert_eq!(KERNEL.drift(&wanted.ruleset).unwrap(), Some(vec![]));
        // Once they agree, the same change leaves the kernel as it is.
        let r =
            transaction::change(&st, &KERNEL, &old, &wanted, declarative, &no_watchdog).unwrap();
        assert_eq!(r.applied.unwrap().mode, netfilter::ApplyMode::Unchanged);
    });
}
