//! `import` of UFW's files on arbitrary text (`import::ufw::from_files`): the
//! input is split at NULs into `user.rules`, `user6.rules`,
//! `/etc/default/ufw` and `ufw.conf` (missing parts are absent files); the
//! first part is also read as `ufw status` output (`import::ufw::from_status`).
//!
//! Properties as for iptables
//! ([`portwall_fuzz::import_checks::check_import`]).
#![no_main]

use import::ufw;
use libfuzzer_sys::fuzz_target;
use portwall_fuzz::import_checks::check_import;

const NAMES: [&str; 4] = [
    "user.rules",
    "user6.rules",
    "/etc/default/ufw",
    "/etc/ufw/ufw.conf",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(4, '\0');
    let mut file = |i: usize| parts.next().map(|t| (NAMES[i], t));
    let files = ufw::Files {
        user_rules: file(0),
        user6_rules: file(1),
        default_file: file(2),
        ufw_conf: file(3),
    };
    let inputs: Vec<(&str, &str)> = [
        files.user_rules,
        files.user6_rules,
        files.default_file,
        files.ufw_conf,
    ]
    .into_iter()
    .flatten()
    .collect();
    check_import(&ufw::from_files(&files), &ufw::from_files(&files), &inputs);
    let first = files.user_rules.map_or("", |(_, t)| t);
    check_import(
        &ufw::from_status(first),
        &ufw::from_status(first),
        &[("ufw status", first)],
    );
});
