//! A self-contained HTML report: one file, inline CSS and JS, no network. A sortable, filterable
//! cost table, the walked output tree as an icicle, and flamegraphs embedded as images. Used for
//! `report`, `profile` and `compare` (regressions first).
//!
//! Attribute names are data: they travel as JSON inside a `<script type="application/json">`
//! element (with `<`, `>`, `&` and the line separators escaped, so nothing can close it), and the
//! page's script inserts them with `textContent` only.

use crate::compare::{Comparison, Presence};
use crate::merge::Merged;
use crate::stats::Stat;
use base64::Engine;
use serde::Serialize;

/// What the page shows.
#[derive(Serialize)]
pub struct Page {
    pub title: String,
    pub subtitle: String,
    /// Column headers of the table; the first two are the path and the kind (or status).
    pub columns: Vec<String>,
    /// Per column after the first two: the unit (`count`, `bytes`, `ns`, `%`, `text`).
    pub units: Vec<&'static str>,
    pub rows: Vec<PageRow>,
    /// Which column the table is sorted by at first, descending.
    pub sort: usize,
    /// The icicle: exclusive values of the first metric by path (children are summed in).
    pub tree_metric: String,
    pub tree: Vec<(Vec<String>, f64)>,
    /// Headline facts, shown above the table.
    pub facts: Vec<String>,
}

#[derive(Serialize)]
pub struct PageRow {
    pub path: Vec<String>,
    pub label: String,
    /// Numbers for numeric columns (null when absent), text for text columns.
    pub cells: Vec<serde_json::Value>,
    /// Highlighted (an error, a regression).
    pub alert: bool,
}

fn unit_name(unit: crate::units::Unit) -> &'static str {
    match unit {
        crate::units::Unit::Count => "count",
        crate::units::Unit::Bytes => "bytes",
        crate::units::Unit::Nanoseconds => "ns",
    }
}

/// Adds, for `metric`, each isolated output's standalone and shared cost as two more columns
/// (`profile --isolate --html`); other rows have none.
pub fn add_isolated_columns(page: &mut Page, report: &crate::report::Report, metric: &crate::metric::Metric) {
    let rows = crate::isolate::rows(report);
    let by_path: std::collections::HashMap<&[String], &crate::isolate::IsolatedRow> = rows.iter().map(|r| (r.path.as_slice(), r)).collect();
    page.columns.push(format!("{} alone", metric.name));
    page.columns.push(format!("{} shared", metric.name));
    page.units.push(unit_name(metric.unit));
    page.units.push(unit_name(metric.unit));
    let value = |c: &crate::cost::Cost| metric.value(c, &Default::default(), &report.sizes);
    for row in &mut page.rows {
        let (alone, shared) = match by_path.get(row.path.as_slice()) {
            Some(r) => (serde_json::json!(value(&r.standalone)), serde_json::json!(value(&r.shared))),
            None => (serde_json::Value::Null, serde_json::Value::Null),
        };
        row.cells.push(alone);
        row.cells.push(shared);
    }
    let shared: u64 = rows.iter().map(|r| value(&r.shared)).sum();
    page.facts.push(format!("{} outputs evaluated alone; work they share: {} {}", rows.len(), crate::units::format(shared, metric.unit), metric.name));
}

/// The page of merged reports (`report`, `profile`): medians per path.
pub fn merged_page(merged: &Merged, title: &str) -> Page {
    let mut columns = vec!["path".to_string(), "kind".into()];
    columns.extend(merged.metrics.iter().map(|m| format!("{} ({})", m.name, Stat::Median.name())));
    let units = merged.metrics.iter().map(|m| unit_name(m.unit)).collect();
    let rows = merged
        .rows
        .iter()
        .map(|r| PageRow {
            path: r.path.clone(),
            label: r.kind.name().into(),
            cells: r.stats.iter().map(|s| serde_json::json!(s.median)).collect(),
            alert: r.errors > 0,
        })
        .collect();
    let tree = merged.rows.iter().map(|r| (r.path.clone(), r.stats[0].median as f64)).collect();
    let failing = merged.rows.iter().filter(|r| r.errors > 0).count();
    Page {
        title: title.to_string(),
        subtitle: format!("{} run(s), {} paths, {} failing", merged.runs.len(), merged.rows.len(), failing),
        columns,
        units,
        rows,
        sort: 2,
        tree_metric: merged.metrics[0].name.into(),
        tree,
        facts: merged.runs.iter().take(5).map(|r| format!("{} ({})", r.file, r.revision())).collect(),
    }
}

/// The page of a comparison: the first metric's change per output, regressions first.
pub fn comparison_page(c: &Comparison, title: &str, broken: &[String]) -> Page {
    let metric = c.metrics[0];
    let columns = vec![
        "path".to_string(),
        "status".into(),
        format!("{} before", metric.name),
        "after".into(),
        "change".into(),
        "relative %".into(),
    ];
    let unit = unit_name(metric.unit);
    let rows = c
        .paths
        .iter()
        .map(|p| {
            let status = match p.presence {
                Presence::Appeared => "appeared",
                Presence::Disappeared => "disappeared",
                Presence::Both if p.started_failing() => "started failing",
                Presence::Both if p.stopped_failing() => "stopped failing",
                Presence::Both => "",
            };
            let (cells, alert) = match p.changes.first() {
                Some(ch) => (
                    vec![
                        serde_json::json!(ch.before),
                        serde_json::json!(ch.after),
                        serde_json::json!(ch.delta),
                        serde_json::json!(ch.relative.map(|r| r * 100.0)),
                    ],
                    ch.delta > 0.0,
                ),
                None => (vec![serde_json::Value::Null; 4], p.presence == Presence::Appeared),
            };
            PageRow { path: p.path.clone(), label: status.into(), cells, alert: alert || p.started_failing() }
        })
        .collect();
    let tree = c
        .paths
        .iter()
        .filter_map(|p| p.changes.first().map(|ch| (p.path.clone(), ch.after)))
        .collect();
    let mut facts: Vec<String> = broken.iter().map(|b| format!("broken: {b}")).collect();
    if !c.totals_comparable() {
        facts.push("outputs were added or removed: the totals do not compare one to one".into());
    }
    for ch in &c.totals {
        let rel = ch.relative.map_or("-".into(), |r| format!("{:+.1}%", r * 100.0));
        let show = |v: f64| crate::units::format(v.round().max(0.0) as u64, ch.metric.unit);
        facts.push(format!("total {}: {} → {} ({rel})", ch.metric.name, show(ch.before), show(ch.after)));
    }
    Page {
        title: title.to_string(),
        subtitle: format!("BASE {} run(s) → NEW {} run(s)", c.base_runs, c.new_runs),
        columns,
        units: vec![unit, unit, unit, "%"],
        rows,
        sort: 4,
        tree_metric: format!("{} after", metric.name),
        tree,
        facts,
    }
}

/// JSON that can sit inside a `<script>` element: nothing in it can end the element or the
/// document's parsing.
fn script_safe_json(page: &Page) -> String {
    let json = serde_json::to_string(page).expect("a page serialises");
    json.replace('&', "\\u0026").replace('<', "\\u003c").replace('>', "\\u003e").replace('\u{2028}', "\\u2028").replace('\u{2029}', "\\u2029")
}

/// HTML text: `&`, `<`, `>`, `"` and `'` as entities.
fn text(s: &str) -> String {
    crate::attrpath::sanitize_text(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The page, with `svgs` (title, SVG bytes) embedded as images.
pub fn render(page: &Page, svgs: &[(String, Vec<u8>)]) -> String {
    let images: String = svgs
        .iter()
        .map(|(title, svg)| {
            format!(
                "<figure><figcaption>{}</figcaption><img alt=\"{}\" src=\"data:image/svg+xml;base64,{}\"></figure>\n",
                text(title),
                text(title),
                base64::engine::general_purpose::STANDARD.encode(svg)
            )
        })
        .collect();
    fill(TEMPLATE, &[("{{TITLE}}", &text(&page.title)), ("{{FLAMEGRAPHS}}", &images), ("{{DATA}}", &script_safe_json(page))])
}

/// The template with each marker replaced by its value, in one pass: a value that happens to
/// contain a marker is not filled in again.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    while let Some((at, marker, value)) =
        values.iter().filter_map(|(m, v)| rest.find(m).map(|i| (i, *m, *v))).min_by_key(|(i, _, _)| *i)
    {
        out.push_str(&rest[..at]);
        out.push_str(value);
        rest = &rest[at + marker.len()..];
    }
    out.push_str(rest);
    out
}

const TEMPLATE: &str = include_str!("html_template.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cannot_close_its_script_element() {
        let page = Page {
            title: "</title><script>alert(1)</script>".into(),
            subtitle: String::new(),
            columns: vec!["path".into(), "kind".into()],
            units: vec![],
            rows: vec![PageRow { path: vec!["</script><img src=x onerror=alert(1)>".into()], label: "x".into(), cells: vec![], alert: false }],
            sort: 0,
            tree_metric: String::new(),
            tree: vec![],
            facts: vec![],
        };
        let html = render(&page, &[]);
        assert_eq!(html.matches("</script>").count(), TEMPLATE.matches("</script>").count(), "no script closed early");
        assert!(!html.contains("<img src=x"));
        assert!(html.contains("<title>&lt;/title&gt;&lt;script&gt;"));
    }
}
