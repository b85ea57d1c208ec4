//! The aligned, human-readable table (`--format table`, and what `profile` prints).

use super::{stat_value, View};
use crate::attrpath::{display_path, sanitize_text};
use crate::report::Report;
use crate::units::{self, plural, Unit};
use std::fmt::Write;

pub struct TableOptions {
    /// Maximum line width; the path column is cut to fit.
    pub width: usize,
    pub color: bool,
}

pub fn render(view: &View, opts: &TableOptions) -> String {
    let metrics = view.metrics();
    let many = view.runs() > 1;
    let ranked = metrics[0];
    let mut header: Vec<String> = vec![format!("{}{}", ranked.name, if view.merged.inclusive { " (incl)" } else { "" })];
    if many {
        header[0] = format!("{} {}", header[0], view.stat.name());
        header.extend(["p95", "min", "max", "n"].map(String::from));
    }
    header.push("share".into());
    header.extend(metrics[1..].iter().map(|m| m.name.to_string()));

    let rows: Vec<(Vec<String>, &str, String, bool)> = view
        .rows
        .iter()
        .map(|row| {
            let s = &row.stats[0];
            let mut cells = vec![units::format(stat_value(s, view.stat), ranked.unit)];
            if many {
                cells.extend([s.p95, s.min, s.max].map(|v| units::format(v, ranked.unit)));
                cells.push(s.n.to_string());
            }
            cells.push(view.share(row).map_or_else(|| "-".into(), |f| format!("{:.1}%", f * 100.0)));
            for (m, st) in metrics.iter().zip(&row.stats).skip(1) {
                cells.push(units::format(stat_value(st, view.stat), m.unit));
            }
            (cells, row.kind.name(), display_path(&row.path), row.errors > 0)
        })
        .collect();

    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r.0[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let kind_width = rows.iter().map(|r| r.1.len()).chain([4]).max().unwrap_or(4);
    let mut out = String::new();
    let head = line(&header, &widths, &format!("{:kind_width$}", "kind"), "path", opts.width);
    let _ = writeln!(out, "{}", paint(&head, "1", opts.color));
    for (cells, kind, path, error) in &rows {
        let text = line(cells, &widths, &format!("{kind:kind_width$}"), path, opts.width);
        let _ = writeln!(out, "{}", if *error { paint(&text, "31", opts.color) } else { text });
    }
    out
}

fn line(cells: &[String], widths: &[usize], kind: &str, path: &str, max_width: usize) -> String {
    let mut s = String::new();
    for (cell, w) in cells.iter().zip(widths) {
        let _ = write!(s, "{cell:>w$}  ");
    }
    let _ = write!(s, "{kind}  ");
    let room = max_width.saturating_sub(s.chars().count()).max(12);
    s.push_str(&super::cut(path, room, "…"));
    s.trim_end().to_string()
}



fn paint(text: &str, sgr: &str, color: bool) -> String {
    if color {
        format!("\x1b[{sgr}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// One-paragraph summary of a merge: how many runs of what, errors.
pub fn merged_summary(view: &View) -> String {
    let m = view.merged;
    let revisions = {
        let mut r: Vec<String> = m.runs.iter().map(|r| r.revision()).collect();
        r.sort();
        r.dedup();
        r.len()
    };
    let incomplete = m.runs.iter().filter(|r| !r.meta.complete).count();
    let failing = m.rows.iter().filter(|r| r.errors > 0).count();
    let sampled = match m.estimated_processes() {
        Some(n) => format!(" (sampled: about {n:.0} processes)"),
        None => String::new(),
    };
    format!(
        "{}: {}{sampled}{}, {}, {failing} failing ({} in all){}",
        sanitize_text(&view.flake()),
        plural(m.runs.len(), "run"),
        if revisions > 1 { format!(" of {revisions} revisions") } else { String::new() },
        plural(m.rows.len(), "path"),
        plural(m.error_runs(), "failure"),
        if incomplete > 0 { format!(", {incomplete} INTERRUPTED (partial)") } else { String::new() },
    )
}

/// Failing outputs listed in the summary; the rest are counted.
const FAILURES_SHOWN: usize = 3;

/// "error: PATH: first line of the message" for the first failing outputs, then a count of the
/// rest (`info` lists them all).
fn failures(report: &Report) -> String {
    let failing: Vec<_> = report.nodes.iter().filter(|n| n.error.is_some()).collect();
    let mut out = String::new();
    for n in failing.iter().take(FAILURES_SHOWN) {
        let first = n.error.as_deref().unwrap_or("").lines().next().unwrap_or("");
        let message = super::cut(&sanitize_text(first), 160, "…");
        let _ = writeln!(out, "  error: {}: {message}", display_path(&n.path));
    }
    if failing.len() > FAILURES_SHOWN {
        let rest = failing.len() - FAILURES_SHOWN;
        let _ = writeln!(out, "  … and {} (`nix-evalcost info REPORT` lists them all)", plural(rest, "more error"));
    }
    out
}

/// One-paragraph summary of a report: what was walked, errors, totals, time outside the outputs.
pub fn summary(report: &Report) -> String {
    let m = &report.meta;
    let flake = m.flake.as_ref().map_or_else(|| "(no flake)".to_string(), |f| sanitize_text(&f.original_ref));
    let derivations = report.nodes.iter().filter(|n| n.is_derivation).count();
    let t = &report.totals;
    let outside = if t.wall_ns > 0 { report.unattributed.wall_ns as f64 * 100.0 / t.wall_ns as f64 } else { 0.0 };
    let mut s = format!(
        "{flake}: {} ({}), {}{}\n",
        plural(report.nodes.len(), "node"),
        plural(derivations, "derivation"),
        plural(report.error_count(), "error"),
        if m.complete { "" } else { ", INTERRUPTED (partial report)" },
    );
    s.push_str(&failures(report));
    let _ = write!(
        s,
        "totals: wall {}, cpu {}, {} thunks, {} function calls, {} primop calls, {} allocated; {outside:.0}% of wall time outside the outputs (start-up, fetch, lock)",
        units::format(t.wall_ns, Unit::Nanoseconds),
        units::format(t.cpu_ns, Unit::Nanoseconds),
        units::count(t.thunks),
        units::count(t.function_calls),
        units::count(t.primop_calls),
        units::bytes(t.gc_bytes),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{node, report};

    #[test]
    fn the_summary_names_the_first_failures_and_counts_the_rest() {
        let mut nodes = vec![node(0, None, &["packages"], 1)];
        for i in 1..=5u32 {
            let mut n = node(i, Some(0), &["packages", &format!("p{i}")], 1);
            n.error = Some(format!("error: p{i} is broken\n       … while evaluating\x1b[31m"));
            nodes.push(n);
        }
        let mut r = report(nodes);
        r.meta.complete = true;
        let text = summary(&r);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "(no flake): 6 nodes (0 derivations), 5 errors");
        assert_eq!(lines[1], "  error: packages.p1: error: p1 is broken");
        assert_eq!(lines[3], "  error: packages.p3: error: p3 is broken");
        assert_eq!(lines[4], "  … and 2 more errors (`nix-evalcost info REPORT` lists them all)");
        assert!(lines[5].starts_with("totals:"));
        let mut one = report(vec![node(0, None, &["lib", "bad"], 1)]);
        one.nodes[0].error = Some("error: no".into());
        let one = summary(&one);
        assert!(one.contains("1 error, INTERRUPTED (partial report)\n  error: lib.bad: error: no\ntotals:"), "{one}");
    }
}
