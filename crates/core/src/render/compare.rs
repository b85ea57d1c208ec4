//! A comparison for people (a terminal table, Markdown for pull requests) and for CI (JSON).
//! Broken rules come first, then the totals, the outputs that changed most, and the lists:
//! appeared, disappeared, started and stopped failing, non-deterministic counters.

use crate::attrpath::{display_path, sanitize_text};
use crate::compare::{Change, Comparison, PathChange, Presence};
use crate::gate::Violation;
use crate::units::{self, plural};
use serde::Serialize;
use std::fmt::Write;

/// Outputs listed per section at most (the JSON has them all).
pub const LISTED: usize = 20;

/// A signed amount in the metric's unit: `+1.2 MiB`, `-340 µs`, `+0`.
fn signed(value: f64, change: &Change) -> String {
    let magnitude = units::format(value.abs().round() as u64, change.metric.unit);
    if value > 0.0 {
        format!("+{magnitude}")
    } else if value < 0.0 {
        format!("-{magnitude}")
    } else {
        "0".into()
    }
}

fn relative(change: &Change) -> String {
    match change.relative {
        Some(r) => format!("{:+.1}%", r * 100.0),
        None if change.delta > 0.0 => "new".into(),
        None => "-".into(),
    }
}

/// What the statistics say of a change: exact, a p-value and interval, or why not.
fn evidence(change: &Change, runs: (usize, usize)) -> String {
    match (&change.test, change.nondeterministic) {
        (Some(t), _) => format!(
            "p={:.3}{} shift {}…{}",
            t.p,
            if t.exact { "" } else { "~" },
            signed(t.shift_low, change),
            signed(t.shift_high, change)
        ),
        (None, (false, false)) if !crate::compare::is_noisy(change.metric) => "exact".into(),
        (None, (b, n)) if b || n => "NON-DETERMINISTIC".into(),
        (None, _) if runs.0 < 2 || runs.1 < 2 => "no test (1 run a side)".into(),
        _ => "-".into(),
    }
}

fn value(v: f64, change: &Change) -> String {
    units::format(v.round().max(0.0) as u64, change.metric.unit)
}

/// The outputs on both sides whose first metric changed, largest relative change first.
pub fn changed(c: &Comparison) -> Vec<&PathChange> {
    let mut rows: Vec<&PathChange> = c.paths.iter().filter(|p| p.presence == Presence::Both && p.changes[0].delta != 0.0).collect();
    let key = |p: &PathChange| p.changes[0].relative.map_or(f64::INFINITY, f64::abs);
    rows.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| a.path.cmp(&b.path)));
    rows
}

fn lists(c: &Comparison) -> Vec<(&'static str, Vec<&PathChange>)> {
    let pick = |f: &dyn Fn(&PathChange) -> bool| c.paths.iter().filter(|p| f(p)).collect::<Vec<_>>();
    vec![
        ("started failing", pick(&|p| p.started_failing())),
        ("stopped failing", pick(&|p| p.stopped_failing())),
        ("appeared", pick(&|p| p.presence == Presence::Appeared)),
        ("disappeared", pick(&|p| p.presence == Presence::Disappeared)),
        ("non-deterministic counters", pick(&|p| p.changes.iter().any(|ch| ch.nondeterministic != (false, false)))),
    ]
}

fn headline(c: &Comparison) -> String {
    let mut s = format!("BASE {} → NEW {}", plural(c.base_runs, "run"), plural(c.new_runs, "run"));
    if !c.totals_comparable() {
        s.push_str("; outputs were added or removed, so the totals do not compare one to one");
    }
    s
}

/// A total's row: metric, before, after, change, relative change, evidence.
fn total_cells(c: &Comparison, ch: &Change) -> [String; 6] {
    [
        ch.metric.name.to_string(),
        value(ch.before, ch),
        value(ch.after, ch),
        signed(ch.delta, ch),
        relative(ch),
        evidence(ch, (c.base_runs, c.new_runs)),
    ]
}

fn rule_line(v: &Violation) -> (String, String) {
    let at = v.path.map_or("totals".to_string(), display_path);
    let what = format!(
        "{} {} → {} ({}, {})",
        v.change.metric.name,
        value(v.change.before, v.change),
        value(v.change.after, v.change),
        signed(v.change.delta, v.change),
        relative(v.change)
    );
    (at, format!("{what}: breaks {}", v.rule.text))
}

/// For a terminal (attribute names and messages made safe to print).
pub fn table(c: &Comparison, violations: &[Violation]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", headline(c));
    if !violations.is_empty() {
        let _ = writeln!(out, "\n{}:", plural(violations.len(), "broken rule"));
        for v in violations {
            let (at, what) = rule_line(v);
            let _ = writeln!(out, "  {}: {}", sanitize_text(&at), sanitize_text(&what));
        }
    }
    let _ = writeln!(out, "\ntotals:");
    for ch in &c.totals {
        let [name, before, after, delta, rel, evidence] = total_cells(c, ch);
        let _ = writeln!(out, "  {name:<14} {before:>10} → {after:>10}  {delta:>11} {rel:>8}  {evidence}");
    }
    let rows = changed(c);
    let _ = writeln!(out, "\n{} changed ({}):", plural(rows.len(), "output"), c.metrics[0].name);
    for p in rows.iter().take(LISTED) {
        let ch = &p.changes[0];
        let _ = writeln!(
            out,
            "  {:>10} → {:>10}  {:>11} {:>8}  {}  {}",
            value(ch.before, ch),
            value(ch.after, ch),
            signed(ch.delta, ch),
            relative(ch),
            evidence(ch, (c.base_runs, c.new_runs)),
            sanitize_text(&display_path(&p.path))
        );
    }
    more(&mut out, rows.len());
    for (name, paths) in lists(c) {
        if paths.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{name} ({}):", paths.len());
        for p in paths.iter().take(LISTED) {
            let _ = writeln!(out, "  {}", sanitize_text(&display_path(&p.path)));
        }
        more(&mut out, paths.len());
    }
    out
}

fn more(out: &mut String, shown_of: usize) {
    if shown_of > LISTED {
        let _ = writeln!(out, "  … and {} (--format json lists all)", plural(shown_of - LISTED, "more"));
    }
}

/// For a pull-request comment or a CI step summary.
pub fn markdown(c: &Comparison, violations: &[Violation]) -> String {
    use super::markdown::escape;
    let mut out = String::new();
    let verdict = if violations.is_empty() { "no rule broken" } else { "**rules broken**" };
    let _ = writeln!(out, "### nix-evalcost: {verdict}\n\n{}\n", escape(&headline(c)));
    if !violations.is_empty() {
        let _ = writeln!(out, "| output | change |\n|---|---|");
        for v in violations {
            let (at, what) = rule_line(v);
            let _ = writeln!(out, "| {} | {} |", escape(&at), escape(&what));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "| metric | before | after | change | | evidence |\n|---|---:|---:|---:|---:|---|");
    for ch in &c.totals {
        let cells = total_cells(c, ch).map(|cell| escape(&cell));
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    let rows = changed(c);
    if !rows.is_empty() {
        let _ = writeln!(out, "\n| output | {} before | after | change | |\n|---|---:|---:|---:|---:|", c.metrics[0].name);
        for p in rows.iter().take(LISTED) {
            let ch = &p.changes[0];
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                escape(&display_path(&p.path)),
                value(ch.before, ch),
                value(ch.after, ch),
                escape(&signed(ch.delta, ch)),
                relative(ch)
            );
        }
    }
    for (name, paths) in lists(c) {
        if !paths.is_empty() {
            let names: Vec<String> = paths.iter().take(LISTED).map(|p| escape(&display_path(&p.path))).collect();
            let _ = writeln!(out, "\n**{name}** ({}): {}", paths.len(), names.join(", "));
        }
    }
    out
}

#[derive(Serialize)]
struct JsonChange {
    metric: &'static str,
    before: f64,
    after: f64,
    delta: f64,
    relative: Option<f64>,
    p: Option<f64>,
    exact_p: Option<bool>,
    shift_low: Option<f64>,
    shift_high: Option<f64>,
    nondeterministic_base: bool,
    nondeterministic_new: bool,
}

impl From<&Change> for JsonChange {
    fn from(ch: &Change) -> Self {
        JsonChange {
            metric: ch.metric.name,
            before: ch.before,
            after: ch.after,
            delta: ch.delta,
            relative: ch.relative,
            p: ch.test.map(|t| t.p),
            exact_p: ch.test.map(|t| t.exact),
            shift_low: ch.test.map(|t| t.shift_low),
            shift_high: ch.test.map(|t| t.shift_high),
            nondeterministic_base: ch.nondeterministic.0,
            nondeterministic_new: ch.nondeterministic.1,
        }
    }
}

#[derive(Serialize)]
struct JsonPath<'a> {
    path: &'a [String],
    presence: &'static str,
    kind: &'static str,
    failed_base: bool,
    failed_new: bool,
    changes: Vec<JsonChange>,
}

#[derive(Serialize)]
struct JsonViolation<'a> {
    rule: &'a str,
    path: Option<&'a [String]>,
    change: JsonChange,
}

#[derive(Serialize)]
struct JsonComparison<'a> {
    base_runs: usize,
    new_runs: usize,
    confidence: f64,
    totals_comparable: bool,
    violations: Vec<JsonViolation<'a>>,
    totals: Vec<JsonChange>,
    paths: Vec<JsonPath<'a>>,
}

/// Everything, for machines (attribute names are JSON strings, escaped by serde).
pub fn json(c: &Comparison, violations: &[Violation]) -> String {
    let doc = JsonComparison {
        base_runs: c.base_runs,
        new_runs: c.new_runs,
        confidence: c.confidence,
        totals_comparable: c.totals_comparable(),
        violations: violations.iter().map(|v| JsonViolation { rule: &v.rule.text, path: v.path, change: v.change.into() }).collect(),
        totals: c.totals.iter().map(JsonChange::from).collect(),
        paths: c
            .paths
            .iter()
            .map(|p| JsonPath {
                path: &p.path,
                presence: match p.presence {
                    Presence::Both => "both",
                    Presence::Appeared => "appeared",
                    Presence::Disappeared => "disappeared",
                },
                kind: p.kind.name(),
                failed_base: p.failed.0,
                failed_new: p.failed.1,
                changes: p.changes.iter().map(JsonChange::from).collect(),
            })
            .collect(),
    };
    serde_json::to_string_pretty(&doc).expect("a comparison serialises") + "\n"
}
