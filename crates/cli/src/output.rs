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
pub fn print_table(t: &Table) {
    for line in t.to_string().lines() {
        println!("{}", line.strip_prefix(' ').unwrap_or(line).trim_end());
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
