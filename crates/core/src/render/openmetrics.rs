//! `--format openmetrics`: Prometheus text exposition, also valid OpenMetrics, for a textfile
//! collector. Label cardinality is bounded: the top N paths, then one `<other>` series holding
//! the rest, and `<total>`. `<other>` and `<total>` cannot be real paths (a top-level attribute
//! with such a name is shown quoted).

use super::{stat_value, View};
use crate::attrpath::display_path;
use crate::stats::Stat;
use crate::units::Unit;
use std::fmt::Write;

const STATS: [(Stat, &str); 2] = [(Stat::Median, "median"), (Stat::P95, "p95")];

pub fn render(view: &View) -> String {
    let mut out = String::new();
    let first = view.merged.runs.first();
    let flake = first.and_then(|r| r.meta.flake.as_ref());
    let _ = writeln!(out, "# HELP nix_evalcost_info Provenance of the nix-evalcost figures.");
    let _ = writeln!(out, "# TYPE nix_evalcost_info gauge");
    let _ = writeln!(
        out,
        "nix_evalcost_info{{version=\"{}\",nix_version=\"{}\",flake=\"{}\",revision=\"{}\",runs=\"{}\"}} 1",
        label(env!("CARGO_PKG_VERSION")),
        label(first.map_or("", |r| &r.meta.nix_version)),
        label(flake.map_or("", |f| &f.original_ref)),
        label(flake.and_then(|f| f.rev.as_deref().or(f.nar_hash.as_deref())).unwrap_or("")),
        view.runs(),
    );
    let shown: Vec<String> = view.rows.iter().map(|r| label(&display_path(&r.path))).collect();
    for (i, metric) in view.metrics().iter().enumerate() {
        let (name, scale) = family(metric.name, metric.unit);
        let _ = writeln!(out, "# HELP {name} {} per flake output ({}).", metric.help, if view.merged.inclusive { "inclusive" } else { "exclusive" });
        let _ = writeln!(out, "# TYPE {name} gauge");
        if let Some(unit) = unit_name(metric.unit) {
            let _ = writeln!(out, "# UNIT {name} {unit}");
        }
        for (stat, stat_label) in STATS {
            for (row, path) in view.rows.iter().zip(&shown) {
                let _ = writeln!(out, "{name}{{path=\"{path}\",stat=\"{stat_label}\"}} {}", scale(stat_value(&row.stats[i], stat)));
            }
            if metric.is_additive() {
                let shown_sum: u64 = view.rows.iter().map(|r| stat_value(&r.stats[i], stat)).sum();
                let all_sum: u64 = view.merged.rows.iter().map(|r| stat_value(&r.stats[i], stat)).sum();
                let _ = writeln!(out, "{name}{{path=\"<other>\",stat=\"{stat_label}\"}} {}", scale(all_sum.saturating_sub(shown_sum)));
            }
            let _ = writeln!(out, "{name}{{path=\"<total>\",stat=\"{stat_label}\"}} {}", scale(stat_value(&view.merged.totals[i], stat)));
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Metric family name with its unit, and how to convert values to that unit.
fn family(metric: &str, unit: Unit) -> (String, fn(u64) -> String) {
    let base = format!("nix_evalcost_{}", metric.replace('-', "_"));
    match unit {
        Unit::Nanoseconds => (format!("{base}_seconds"), |v| format!("{:.9}", v as f64 / 1e9)),
        Unit::Bytes if !base.ends_with("_bytes") => (format!("{base}_bytes"), |v| v.to_string()),
        _ => (base, |v| v.to_string()),
    }
}

fn unit_name(unit: Unit) -> Option<&'static str> {
    match unit {
        Unit::Nanoseconds => Some("seconds"),
        Unit::Bytes => Some("bytes"),
        Unit::Count => None,
    }
}

/// A label value: controls made visible, then the exposition format's three escapes.
fn label(value: &str) -> String {
    crate::attrpath::escape_quoted(value)
}
