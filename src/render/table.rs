//! The aligned cost table printed by `profile` and `report`: the top N nodes by one metric.

use crate::attrpath::{display_path, sanitize_text};
use crate::metric::{self, Metric};
use crate::report::Report;
use crate::units::{self, Unit};
use std::fmt::Write;

pub struct TableOptions {
    pub metric: &'static Metric,
    pub top: usize,
    /// Rank by inclusive cost (node plus descendants) instead of exclusive.
    pub inclusive: bool,
    /// Maximum line width; the path column is cut to fit.
    pub width: usize,
    pub color: bool,
}

/// Columns besides the ranking metric, in order.
const EXTRA_COLUMNS: &[&str] = &["wall", "thunks", "fncalls", "alloc"];

struct Row {
    rank_value: u64,
    cells: Vec<String>,
    kind: &'static str,
    path: String,
    error: bool,
}

pub fn render(report: &Report, opts: &TableOptions) -> String {
    let inclusive = report.inclusive_costs();
    let columns: Vec<&Metric> = std::iter::once(opts.metric)
        .chain(EXTRA_COLUMNS.iter().filter(|n| **n != opts.metric.name).map(|n| metric::find(n).expect("known metric")))
        .collect();
    let total = opts.metric.is_additive().then(|| opts.metric.value(&report.totals, &report.end, &report.sizes));
    let mut rows: Vec<Row> = report
        .nodes
        .iter()
        .map(|node| {
            let cost = if opts.inclusive { &inclusive[node.id as usize] } else { &node.cost };
            let values: Vec<u64> = columns.iter().map(|m| m.value(cost, &node.after, &report.sizes)).collect();
            let mut cells: Vec<String> = columns.iter().zip(&values).map(|(m, v)| units::format(*v, m.unit)).collect();
            cells.insert(1, share(values[0], total));
            Row { rank_value: values[0], cells, kind: node.kind.name(), path: display_path(&node.path), error: node.error.is_some() }
        })
        .collect();
    rows.sort_by(|a, b| b.rank_value.cmp(&a.rank_value).then_with(|| a.path.cmp(&b.path)));
    rows.truncate(opts.top);

    let mut header: Vec<String> = columns.iter().map(|m| m.name.to_string()).collect();
    header.insert(1, "share".into());
    if opts.inclusive {
        header[0] = format!("{} (incl)", header[0]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r.cells[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let kind_width = rows.iter().map(|r| r.kind.len()).chain([4]).max().unwrap_or(4);

    let mut out = String::new();
    let head = line(&header, &widths, &format!("{:kind_width$}", "kind"), "path", opts.width);
    let _ = writeln!(out, "{}", paint(&head, "1", opts.color));
    for row in &rows {
        let text = line(&row.cells, &widths, &format!("{:kind_width$}", row.kind), &row.path, opts.width);
        let _ = writeln!(out, "{}", if row.error { paint(&text, "31", opts.color) } else { text });
    }
    out
}

fn share(value: u64, total: Option<u64>) -> String {
    match total {
        Some(t) if t > 0 => format!("{:.1}%", value as f64 * 100.0 / t as f64),
        _ => "-".into(),
    }
}

fn line(cells: &[String], widths: &[usize], kind: &str, path: &str, max_width: usize) -> String {
    let mut s = String::new();
    for (cell, w) in cells.iter().zip(widths) {
        let _ = write!(s, "{cell:>w$}  ");
    }
    let _ = write!(s, "{kind}  ");
    let room = max_width.saturating_sub(s.chars().count()).max(12);
    s.push_str(&truncate(path, room));
    s
}

fn truncate(text: &str, room: usize) -> String {
    if text.chars().count() <= room {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(room.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn paint(text: &str, sgr: &str, color: bool) -> String {
    if color {
        format!("\x1b[{sgr}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// One-paragraph summary of a report: what was walked, errors, totals and the unattributed share.
pub fn summary(report: &Report) -> String {
    let m = &report.meta;
    let flake = m.flake.as_ref().map_or_else(|| "(no flake)".to_string(), |f| sanitize_text(&f.original_ref));
    let derivations = report.nodes.iter().filter(|n| n.is_derivation).count();
    let t = &report.totals;
    let unattributed = if t.wall_ns > 0 { report.unattributed.wall_ns as f64 * 100.0 / t.wall_ns as f64 } else { 0.0 };
    let mut s = format!(
        "{flake}: {} nodes ({derivations} derivations), {} errors{}\n",
        report.nodes.len(),
        report.error_count(),
        if m.complete { "" } else { ", INTERRUPTED (partial report)" },
    );
    let _ = write!(
        s,
        "totals: wall {}, cpu {}, {} thunks, {} function calls, {} primop calls, {} allocated; {unattributed:.0}% of wall time outside the outputs (start-up, fetch, lock)",
        units::format(t.wall_ns, Unit::Nanoseconds),
        units::format(t.cpu_ns, Unit::Nanoseconds),
        units::count(t.thunks),
        units::count(t.function_calls),
        units::count(t.primop_calls),
        units::bytes(t.gc_bytes),
    );
    s
}
