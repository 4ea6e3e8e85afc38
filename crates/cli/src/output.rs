//! Rendering shared by every command: aligned tables for people, JSON for programs.
//!
//! A command builds its result as a serde value; `--json` prints that value, and the
//! human form is an aligned table built from the same data, so the two never drift.

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};

/// An aligned, borderless table in the style of `netstat` and `iptables -nvL`.
pub fn table<I, S>(header: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header);
    t
}

/// Right-aligns the numeric columns given by index (counters, queues, ports).
pub fn right_align(t: &mut Table, columns: &[usize]) {
    for &c in columns {
        if let Some(col) = t.column_mut(c) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// Prints a table without the one-space padding comfy-table puts at line starts.
///
/// The lines go out in one write: stdout is line-buffered, and a `println!`
/// per row of a 100k-rule `status` was 100k system calls.
pub fn print_table(t: &Table) {
    use std::io::Write;
    let text = t.to_string();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(line.strip_prefix(' ').unwrap_or(line).trim_end());
        out.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    // A reader that went away ends the process quietly (SIGPIPE keeps its
    // default action, see `main`); any other failure is `println!`'s.
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .expect("failed printing to stdout");
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
