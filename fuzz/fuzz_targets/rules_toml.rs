//! The rules.toml reader (`model::HostConfig::from_toml`) on arbitrary text.
//!
//! `from_toml` reads a `rules` array laid out one plain string per line by
//! its own fast path and gives the rest of the document to `toml`; any other
//! layout goes to `toml` whole. Properties:
//! - the fast path and `toml` agree: the same text re-written by `toml`
//!   itself (`rules = ["...", ...]` on one line, which the fast path never
//!   takes) reads as the same config, or fails the same way (a TOML error
//!   both times, or the same bad rule by index and text);
//! - an accepted config is valid and survives `to_toml` -> `from_toml`
//!   ([`portwall_fuzz::check_ruleset`]).
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::{ConfigError, HostConfig};
use portwall_fuzz::{check_ruleset, services};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let read = HostConfig::from_toml(text, services());
    let whole = match toml::from_str::<toml::Table>(text) {
        Ok(table) => table,
        Err(_) => {
            // Not TOML: no reader may accept it.
            assert!(
                matches!(read, Err(ConfigError::Toml(_))),
                "{text:?} is not TOML, yet from_toml gave {read:?}"
            );
            return;
        }
    };
    if portwall_fuzz::has_long_quote_run(text) {
        return;
    }
    let rewritten = toml::to_string(&whole).expect("a parsed table writes");
    let by_toml = HostConfig::from_toml(&rewritten, services());
    match (&read, &by_toml) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?} and as toml writes it {rewritten:?}"),
        (Err(ConfigError::Toml(_)), Err(ConfigError::Toml(_))) => {}
        (
            Err(ConfigError::Rule { index, text: t, .. }),
            Err(ConfigError::Rule {
                index: i2,
                text: t2,
                ..
            }),
        ) => assert_eq!((index, t), (i2, t2), "{text:?} and {rewritten:?}"),
        _ => panic!("{text:?} reads as {read:?}, as toml writes it {rewritten:?} as {by_toml:?}"),
    }
    if let Ok(config) = read {
        check_ruleset(&config.ruleset, &text);
    }
});
