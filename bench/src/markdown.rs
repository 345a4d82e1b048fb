//! The report's Markdown pieces, shared by its sections: sizes, times and
//! tables.

use std::fmt::Write;

/// A reply size: whole KB as such, any other in bytes.
pub fn kb(size: u64) -> String {
    if size.is_multiple_of(1024) {
        format!("{} KB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// A time in µs (ms from 10 ms on); "—" for none.
pub fn us(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v >= 10_000.0 => format!("{:.1} ms", v / 1000.0),
        Some(v) => format!("{v:.0} µs"),
    }
}

/// A Markdown table, or a line saying the part did not run when there are
/// no rows.
pub fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        out.push_str("_Not run in this bench (see `--only`)._\n\n");
        return;
    }
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}
