//! `--format markdown`: a GitHub table for a step summary or a PR comment. Attribute names are
//! escaped so that none can break the table, start markup or inject HTML.

use super::{stat_value, View};
use crate::attrpath::{display_path, sanitize_text};
use crate::units;
use std::fmt::Write;

pub fn render(view: &View) -> String {
    let metrics = view.metrics();
    let many = view.runs() > 1;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### nix-evalcost: {} ({} run{}, {} {} by {})\n",
        escape(&view.flake()),
        view.runs(),
        if many { "s" } else { "" },
        if view.merged.inclusive { "inclusive" } else { "exclusive" },
        metrics[0].name,
        view.stat.name(),
    );
    let mut header: Vec<String> = vec![metrics[0].name.to_string()];
    if many {
        header.extend(["p95", "max", "n"].map(String::from));
    }
    header.push("share".into());
    header.extend(metrics[1..].iter().map(|m| m.name.to_string()));
    header.extend(["kind", "path"].map(String::from));
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let align: Vec<&str> = header.iter().map(|h| if h == "kind" || h == "path" { ":---" } else { "---:" }).collect();
    let _ = writeln!(out, "|{}|", align.join("|"));
    for row in &view.rows {
        let s = &row.stats[0];
        let mut cells = vec![units::format(stat_value(s, view.stat), metrics[0].unit)];
        if many {
            cells.extend([s.p95, s.max].map(|v| units::format(v, metrics[0].unit)));
            cells.push(s.n.to_string());
        }
        cells.push(view.share(row).map_or_else(|| "-".into(), |f| format!("{:.1}%", f * 100.0)));
        for (m, st) in metrics.iter().zip(&row.stats).skip(1) {
            cells.push(units::format(stat_value(st, view.stat), m.unit));
        }
        let kind = if row.errors > 0 { format!("**{}**", row.kind.name()) } else { row.kind.name().to_string() };
        cells.push(kind);
        cells.push(escape(&display_path(&row.path)));
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// Escapes text for a Markdown table cell: markup characters get a backslash, HTML's
/// specials become entities, line breaks become spaces.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in sanitize_text(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' | '\t' => out.push(' '),
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '!' | '~' | '$' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}
