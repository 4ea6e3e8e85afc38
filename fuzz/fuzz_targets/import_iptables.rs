//! `import` of `iptables-save` / `ip6tables-save` output on arbitrary text
//! (`import::iptables::from_save`, and `from_saves` with both families when
//! the input holds a NUL: IPv4 text before it, IPv6 text after).
//!
//! Properties ([`portwall_fuzz::import_checks::check_import`]): every
//! imported rule is valid and reads back as itself, the ruleset survives
//! rules.toml, line references point into the input, and the import is
//! deterministic.
#![no_main]

use import::{iptables, Family};
use libfuzzer_sys::fuzz_target;
use portwall_fuzz::import_checks::check_import;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.split_once('\0') {
        None => {
            let import = iptables::from_save(text);
            check_import(&import, &iptables::from_save(text), &[("input", text)]);
        }
        Some((v4, v6)) => {
            let inputs = [
                ("iptables-save", v4, Some(Family::V4)),
                ("ip6tables-save", v6, Some(Family::V6)),
            ];
            let import = iptables::from_saves(&inputs);
            check_import(
                &import,
                &iptables::from_saves(&inputs),
                &[("iptables-save", v4), ("ip6tables-save", v6)],
            );
        }
    }
});
