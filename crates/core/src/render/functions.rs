//! The per-function and per-file tables of `nix-evalcost functions` (rows: `functions.rs`),
//! in each output format. Frame names are data: sanitised for the terminal, escaped for
//! Markdown, defused for spreadsheets.

use super::csv::defuse;
use super::markdown::escape;
use crate::attrpath::sanitize_text;
use crate::functions::{Grouping, Row};
use crate::metric::Metric;
use crate::cost::Sizes;
use crate::units;
use std::fmt::Write;

/// The rows to show and how to read them.
pub struct FunctionsView<'a> {
    pub grouping: Grouping,
    pub rows: &'a [Row],
    /// The cost columns, self and total of each.
    pub metrics: &'a [&'static Metric],
    pub sizes: Sizes,
    /// Rows before `--top` and `--filter`.
    pub all: usize,
}

impl FunctionsView<'_> {
    fn value(&self, row: &Row, metric: &Metric, total: bool) -> u64 {
        metric.value(if total { &row.total_cost } else { &row.self_cost }, &Default::default(), &self.sizes)
    }

    fn header(&self) -> Vec<String> {
        let mut header = vec![self.grouping.name().to_string(), "calls".into(), "total calls".into()];
        for m in self.metrics {
            header.push(format!("self {}", m.name));
            header.push(format!("total {}", m.name));
        }
        header
    }

    fn cells(&self, row: &Row, human: bool) -> Vec<String> {
        let mut cells = vec![row.calls.to_string(), row.total_calls.to_string()];
        for m in self.metrics {
            for total in [false, true] {
                let v = self.value(row, m, total);
                cells.push(if human { units::format(v, m.unit) } else { v.to_string() });
            }
        }
        cells
    }
}

pub fn table(view: &FunctionsView) -> String {
    let header = view.header();
    let rows: Vec<(Vec<String>, String)> = view.rows.iter().map(|r| (view.cells(r, true), sanitize_text(&r.key))).collect();
    let widths: Vec<usize> = (1..header.len())
        .map(|i| rows.iter().map(|r| r.0[i - 1].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let line = |cells: &[String], name: &str| {
        let mut s = String::new();
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(s, "{cell:>w$}  ");
        }
        s.push_str(name);
        s
    };
    let _ = writeln!(out, "{}", line(&header[1..], &header[0]));
    for (cells, name) in &rows {
        let _ = writeln!(out, "{}", line(cells, name));
    }
    let _ = writeln!(out, "{} of {} {}s", view.rows.len(), view.all, view.grouping.name());
    out
}

pub fn markdown(view: &FunctionsView) -> String {
    let header = view.header();
    let mut out = format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()));
    for row in view.rows {
        let cells = view.cells(row, true);
        let _ = writeln!(out, "| {} | {} |", escape(&row.key), cells.join(" | "));
    }
    out
}

pub fn csv(view: &FunctionsView) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header: Vec<String> = view.header().iter().map(|h| h.replace(' ', "_")).collect();
    w.write_record(&header).expect("writing to memory");
    for row in view.rows {
        let mut record = vec![defuse(&row.key)];
        record.extend(view.cells(row, false));
        w.write_record(&record).expect("writing to memory");
    }
    String::from_utf8(w.into_inner().expect("writing to memory")).expect("csv of UTF-8 is UTF-8")
}

pub fn json(view: &FunctionsView) -> String {
    let rows: Vec<serde_json::Value> = view
        .rows
        .iter()
        .map(|row| {
            let mut cost = serde_json::Map::new();
            for m in view.metrics {
                cost.insert(m.name.to_string(), serde_json::json!({ "self": view.value(row, m, false), "total": view.value(row, m, true) }));
            }
            serde_json::json!({ view.grouping.name(): row.key, "calls": row.calls, "total_calls": row.total_calls, "cost": cost })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "grouping": view.grouping.name(), "rows": rows, "of": view.all })).expect("JSON serialises") + "\n"
}
