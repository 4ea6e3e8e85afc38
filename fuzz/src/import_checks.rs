//! What must hold of every import: its ruleset passes
//! [`crate::check_ruleset`], every rule has one or two origins, every line
//! reference points into the input it names, and importing the same input
//! again gives the same result (no hash-map order leaks into it).

use import::Import;

/// `inputs` are the (name, text) pairs the import was given.
pub fn check_import(import: &Import, again: &Import, inputs: &[(&str, &str)]) {
    assert_eq!(import, again, "the same input imported twice differs");
    check_ruleset_of(import, inputs);
    assert_eq!(
        import.origins.len(),
        import.ruleset.rules.len(),
        "one origin list per rule"
    );
    let lines_of = |source: &str| -> usize {
        match inputs.iter().find(|(name, _)| *name == source) {
            Some((_, text)) => text.lines().count(),
            None => panic!("a reference to {source:?}, which is none of the inputs {inputs:?}"),
        }
    };
    for origins in &import.origins {
        assert!(
            (1..=2).contains(&origins.len()),
            "a rule with {} origins",
            origins.len()
        );
        for o in origins {
            let n = lines_of(&o.source);
            assert!(
                (1..=n).contains(&o.line_no),
                "origin line {} of {} ({n} lines)",
                o.line_no,
                o.source
            );
        }
    }
    for u in &import.untranslated {
        let n = lines_of(&u.source);
        assert!(
            (1..=n.max(1)).contains(&u.line_no),
            "untranslated line {} of {} ({n} lines): {u:?}",
            u.line_no,
            u.source
        );
        assert!(!u.reason.is_empty(), "untranslated without a reason: {u:?}");
    }
    for note in import.notes.iter().filter(|n| !n.lines.is_empty()) {
        let n = lines_of(&note.source);
        for &l in &note.lines {
            assert!(
                (1..=n).contains(&l),
                "note line {l} of {} ({n} lines): {note:?}",
                note.source
            );
        }
    }
}

fn check_ruleset_of(import: &Import, inputs: &[(&str, &str)]) {
    crate::check_ruleset(&import.ruleset, &inputs);
}
