//! The rule parser (`model::parse_rule`, `model::parse_rule_args`) on
//! arbitrary text.
//!
//! Properties: every accepted rule is valid and its text reads back as itself
//! (parse -> Display -> parse); an error's caret display (which slices the
//! input by the error's span) never panics; a text without quotes reads the
//! same whole as split into shell words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::{parse_rule, parse_rule_args};
use portwall_fuzz::{check_rule, services};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let whole = parse_rule(text, services());
    match &whole {
        Ok(rules) => {
            assert!(!rules.is_empty(), "{text:?} gave no rule");
            for rule in rules {
                check_rule(rule, &text);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if !text.contains(['\'', '"']) {
        let words: Vec<&str> = text.split_whitespace().collect();
        let split = parse_rule_args(&words, services());
        match (&whole, &split) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?} whole and as words"),
            (Err(_), Err(e)) => {
                let _ = e.to_string();
            }
            _ => panic!("{text:?}: whole {whole:?}, as words {split:?}"),
        }
    }
});
