//! `history export --format openmetrics`: the store as a Prometheus textfile (node_exporter's
//! textfile collector). Histograms of wall time and peak RSS per flake, totals of the counters,
//! per-output wall time for the top N outputs plus `<other>`, and `nix_evalcost_build_info`.
//! Label cardinality is bounded: at most `top` flakes and `top` outputs, the rest `<other>`.

use crate::engine::Selection;
use crate::record::{display_stored, history_metric};
use crate::{Result, Store};
use nix_evalcost_core::attrpath::escape_quoted as label;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Upper bounds of the wall-time histogram, seconds.
const WALL_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Upper bounds of the peak-RSS histogram, bytes (256 MiB to 64 GiB).
const RSS_BUCKETS: [f64; 9] = [2.68435456e8, 5.36870912e8, 1.073741824e9, 2.147483648e9, 4.294967296e9, 8.589934592e9, 1.7179869184e10, 3.4359738368e10, 6.8719476736e10];

pub const OTHER: &str = "<other>";

/// The counters exported as totals: (history metric, family, scale to the family's unit).
/// OpenMetrics names a counter's family without `_total`; its samples carry it.
const COUNTERS: [(&str, &str, f64); 5] = [
    ("fncalls", "nix_evalcost_function_calls", 1.0),
    ("thunks", "nix_evalcost_thunks", 1.0),
    ("primops", "nix_evalcost_primop_calls", 1.0),
    ("alloc", "nix_evalcost_allocated_bytes", 1.0),
    ("cpu", "nix_evalcost_cpu_seconds", 1e-9),
];

/// Keeps the `top` keys by weight; the rest map to `<other>`.
fn bounded(weights: &BTreeMap<String, f64>, top: usize) -> impl Fn(&str) -> String {
    let mut ranked: Vec<(&String, &f64)> = weights.iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let kept: std::collections::HashSet<String> = ranked.into_iter().take(top).map(|(k, _)| k.clone()).collect();
    move |k: &str| if kept.contains(k) { k.to_string() } else { OTHER.to_string() }
}

/// The two text formats Prometheus scrapes. They differ here in three things: OpenMetrics
/// names a counter's family without `_total` (its samples carry it), has `# UNIT` lines, and
/// ends with `# EOF`; the Prometheus text format (0.0.4) names the family as its samples and
/// has neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    OpenMetrics,
    Prometheus,
}

impl Exposition {
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Exposition::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The name a counter family is declared under.
    fn counter_family(self, family: &str) -> String {
        match self {
            Exposition::OpenMetrics => family.to_string(),
            Exposition::Prometheus => format!("{family}_total"),
        }
    }
}

/// A counter of the exporting process itself (a server's ingests), appended to the store's.
pub struct ExtraCounter {
    pub family: &'static str,
    pub help: &'static str,
    /// (label name, label value, value).
    pub samples: Vec<(&'static str, String, f64)>,
}

/// `history export`: OpenMetrics.
pub fn openmetrics(store: &mut Store, from: i64, until: i64, top: usize) -> Result<String> {
    exposition(store, from, until, top, Exposition::OpenMetrics, &[])
}

pub fn exposition(store: &mut Store, from: i64, until: i64, top: usize, format: Exposition, extra: &[ExtraCounter]) -> Result<String> {
    let nix_version = store.engine().latest_nix_version()?;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP nix_evalcost_build_info The nix-evalcost that wrote these figures, and the Nix of the latest evaluation.");
    let _ = writeln!(out, "# TYPE nix_evalcost_build_info gauge");
    let _ = writeln!(out, "nix_evalcost_build_info{{version=\"{}\",nix_version=\"{}\"}} 1", label(env!("CARGO_PKG_VERSION")), label(&nix_version));
    let select = |metric: &str| Selection { metric: history_metric(metric).expect("a history metric"), from, until, ..Selection::default() };
    let wall = store.engine().samples(&select("wall"))?;
    let mut flake_weight: BTreeMap<String, f64> = BTreeMap::new();
    for s in &wall {
        *flake_weight.entry(s.flake.clone()).or_default() += s.value as f64;
    }
    let flake_of = bounded(&flake_weight, top);

    histogram(&mut out, format, "nix_evalcost_evaluation_wall_seconds", "Wall time of whole evaluations.", Some("seconds"), &WALL_BUCKETS, wall.iter().map(|s| (flake_of(&s.flake), s.value as f64 / 1e9)));
    let rss = store.engine().samples(&select("peak-rss"))?;
    histogram(&mut out, format, "nix_evalcost_evaluation_peak_rss_bytes", "Peak resident memory of whole evaluations.", Some("bytes"), &RSS_BUCKETS, rss.iter().map(|s| (flake_of(&s.flake), s.value as f64)));

    let mut evaluations: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in &wall {
        let e = evaluations.entry(flake_of(&s.flake)).or_default();
        e.0 += 1;
        e.1 += s.error as u64;
    }
    counter(&mut out, format, "nix_evalcost_evaluations", "Evaluations stored.", evaluations.iter().map(|(f, (n, _))| (f.clone(), *n as f64)));
    counter(&mut out, format, "nix_evalcost_evaluation_errors", "Stored evaluations with a failing output.", evaluations.iter().map(|(f, (_, e))| (f.clone(), *e as f64)));
    for (metric, family, scale) in COUNTERS {
        let mut totals: BTreeMap<String, f64> = BTreeMap::new();
        for s in store.engine().samples(&select(metric))? {
            *totals.entry(flake_of(&s.flake)).or_default() += s.value as f64 * scale;
        }
        counter(&mut out, format, family, &format!("Total {metric} of the stored evaluations."), totals.into_iter());
    }
    // Per output, from the daily aggregates: O(days x outputs), not O(reports).
    let paths = store.engine().paths()?;
    let per_path = Selection { paths: Some(paths), ..select("wall") };
    let mut daily: Vec<(String, String, i64)> = store.engine().daily(&per_path)?.into_iter().map(|r| (r.flake, r.path, r.agg.sum)).collect();
    // Evaluations not aggregated yet count from their raw rows.
    daily.extend(store.engine().samples(&Selection { pending_only: true, ..per_path })?.into_iter().map(|s| (s.flake, s.path, s.value)));
    let mut path_weight: BTreeMap<String, f64> = BTreeMap::new();
    for (_, path, sum) in &daily {
        *path_weight.entry(path.clone()).or_default() += *sum as f64;
    }
    let path_of = bounded(&path_weight, top);
    let mut per_output: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (flake, path, sum) in &daily {
        let path = path_of(path);
        let path = if path == OTHER { path } else { display_stored(&path) };
        *per_output.entry((flake_of(flake), path)).or_default() += *sum as f64 / 1e9;
    }
    let name = "nix_evalcost_output_wall_seconds";
    let _ = writeln!(out, "# HELP {} Exclusive wall time of each output over the stored evaluations (top outputs, the rest <other>).", format.counter_family(name));
    let _ = writeln!(out, "# TYPE {} counter", format.counter_family(name));
    for ((flake, path), v) in per_output {
        let _ = writeln!(out, "{name}_total{{flake=\"{}\",path=\"{}\"}} {v}", label(&flake), label(&path));
    }
    for c in extra {
        let _ = writeln!(out, "# HELP {} {}", format.counter_family(c.family), c.help);
        let _ = writeln!(out, "# TYPE {} counter", format.counter_family(c.family));
        for (name, value, v) in &c.samples {
            let _ = writeln!(out, "{}_total{{{name}=\"{}\"}} {v}", c.family, label(value));
        }
    }
    if format == Exposition::OpenMetrics {
        out.push_str("# EOF\n");
    }
    Ok(out)
}

fn counter(out: &mut String, format: Exposition, family: &str, help: &str, values: impl Iterator<Item = (String, f64)>) {
    let declared = format.counter_family(family);
    let _ = writeln!(out, "# HELP {declared} {help}");
    let _ = writeln!(out, "# TYPE {declared} counter");
    for (flake, v) in values {
        let _ = writeln!(out, "{family}_total{{flake=\"{}\"}} {v}", label(&flake));
    }
}

fn histogram(out: &mut String, format: Exposition, family: &str, help: &str, unit: Option<&str>, bounds: &[f64], values: impl Iterator<Item = (String, f64)>) {
    let _ = writeln!(out, "# HELP {family} {help}");
    let _ = writeln!(out, "# TYPE {family} histogram");
    if let (Some(unit), Exposition::OpenMetrics) = (unit, format) {
        let _ = writeln!(out, "# UNIT {family} {unit}");
    }
    let mut per_flake: BTreeMap<String, (Vec<u64>, f64, u64)> = BTreeMap::new();
    for (flake, v) in values {
        let e = per_flake.entry(flake).or_insert_with(|| (vec![0; bounds.len()], 0.0, 0));
        for (i, b) in bounds.iter().enumerate() {
            if v <= *b {
                e.0[i] += 1;
            }
        }
        e.1 += v;
        e.2 += 1;
    }
    for (flake, (counts, sum, n)) in per_flake {
        let f = label(&flake);
        for (b, c) in bounds.iter().zip(&counts) {
            let _ = writeln!(out, "{family}_bucket{{flake=\"{f}\",le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{family}_bucket{{flake=\"{f}\",le=\"+Inf\"}} {n}");
        let _ = writeln!(out, "{family}_sum{{flake=\"{f}\"}} {sum}");
        let _ = writeln!(out, "{family}_count{{flake=\"{f}\"}} {n}");
    }
}
