//! What the `portwall` binary's tests share: running the real binary with a
//! config directory of its own, isolated from the caller's environment.
#![allow(dead_code)] // each test file uses part of it

use std::path::Path;
use std::process::{Command, Output};
use testns::Netns;

/// `portwall` with its config in `dir`, inside `ns` (or in this namespace), and
/// nothing from the caller's environment that would change what it does: no
/// SSH session (the lockout check), no panel, no proxy.
pub fn portwall_command(ns: Option<&Netns>, dir: &Path) -> Command {
    let bin = env!("CARGO_BIN_EXE_portwall");
    let mut c = match ns {
        Some(ns) => ns.command(bin),
        None => Command::new(bin),
    };
    c.env("PORTWALL_CONFIG_DIR", dir)
        .env_remove("SSH_CONNECTION")
        .env_remove("PORTWALL_PANEL_URL")
        .env_remove("PORTWALL_PANEL_CA")
        .env_remove("PORTWALL_INSECURE_HTTP")
        .env_remove("PORTWALL_TOKEN");
    for p in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        c.env_remove(p);
    }
    c
}

/// Runs `portwall ARGS` inside `ns` with its config in `dir`.
pub fn portwall(ns: &Netns, dir: &Path, args: &[&str]) -> Output {
    portwall_command(Some(ns), dir)
        .args(args)
        .output()
        .expect("run portwall")
}

/// Runs `portwall ARGS`, which must succeed; its stdout.
#[track_caller]
pub fn ok(ns: &Netns, dir: &Path, args: &[&str]) -> String {
    let o = portwall(ns, dir, args);
    assert!(
        o.status.success(),
        "portwall {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// [`ok`] with the packet filter `backend` (`nft`, `iptables`) chosen.
#[track_caller]
pub fn ok_on(ns: &Netns, dir: &Path, backend: &str, args: &[&str]) -> String {
    let args: Vec<&str> = ["--backend", backend].iter().chain(args).copied().collect();
    ok(ns, dir, &args)
}
