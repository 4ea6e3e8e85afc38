//! One test per bug found in the importers (ripgrep's way): each names the
//! input that showed it and what was wrong.

use import::{iptables, Family};

/// Found by fuzzing (`fuzz/corpus/import_iptables/note_lines_of_the_other_family`):
/// a rule merged from IPv4 and IPv6 twins that never decides a packet was
/// noted under the IPv4 input's name with the line numbers of both inputs,
/// so a line could point past the end of `iptables-save`'s text.
#[test]
fn a_note_on_merged_twins_gives_each_input_its_own_lines() {
    let v4 = "*filter\n-A INPUT -j ACCEPT\n-A INPUT -j ACCEPT\nCOMMIT\n";
    let v6 = "# ip6tables-save\n*filter\n-A INPUT -j ACCEPT\n-A INPUT -j ACCEPT\nCOMMIT\n";
    let inputs = [
        ("iptables-save", v4, Some(Family::V4)),
        ("ip6tables-save", v6, Some(Family::V6)),
    ];
    let import = iptables::from_saves(&inputs);
    let mut never: Vec<(String, Vec<usize>)> = import
        .notes
        .iter()
        .filter(|n| n.message.starts_with("never decides a packet"))
        .map(|n| (n.source.clone(), n.lines.clone()))
        .collect();
    never.sort();
    assert_eq!(
        never,
        vec![
            ("ip6tables-save".to_string(), vec![4]),
            ("iptables-save".to_string(), vec![3]),
        ]
    );
    for note in &import.notes {
        let (_, text, _) = inputs
            .iter()
            .find(|(name, ..)| *name == note.source)
            .unwrap();
        for &line in &note.lines {
            assert!(
                (1..=text.lines().count()).contains(&line),
                "{note:?} points outside {}",
                note.source
            );
        }
    }
}
