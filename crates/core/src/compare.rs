//! Comparing two sets of runs (BASE and NEW), per output and in total, for every metric.
//!
//! Deterministic counters (calls, thunks, allocations, …) are compared exactly: a difference is
//! a difference, and a counter that differs between runs of the *same* side is reported as
//! non-determinism. Noisy metrics (wall and CPU time, memory gauges) with at least two runs a
//! side get a Mann-Whitney U test and a Hodges-Lehmann shift with its confidence interval
//! ([`crate::ranktest`]); with one run a side, no test is possible and the comparison says so.

use crate::merge::{Merged, Row};
use crate::metric::{Metric, Source};
use crate::ranktest::{self, RankTest};
use crate::report::Kind;
use crate::units::Unit;

/// Whether a metric varies from run to run of the same evaluation.
pub fn is_noisy(metric: &Metric) -> bool {
    metric.unit == Unit::Nanoseconds || matches!(metric.source, Source::Gauge(_))
}

/// One metric of one path (or of the totals), before and after.
#[derive(Clone, Debug)]
pub struct Change {
    pub metric: &'static Metric,
    /// The median over the side's runs (the value itself for a deterministic metric).
    pub before: f64,
    pub after: f64,
    /// `after - before`; for a noisy metric with a test, the Hodges-Lehmann shift.
    pub delta: f64,
    /// `delta / before`, when `before` is not 0.
    pub relative: Option<f64>,
    /// The rank test, for a noisy metric with at least two runs a side.
    pub test: Option<RankTest>,
    /// A deterministic counter whose runs of one side disagree: (base, new).
    pub nondeterministic: (bool, bool),
}

/// How a path fares between the sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Both,
    /// Only in NEW.
    Appeared,
    /// Only in BASE.
    Disappeared,
}

#[derive(Clone, Debug)]
pub struct PathChange {
    pub path: Vec<String>,
    pub presence: Presence,
    pub kind: Kind,
    /// Whether it failed in any run of BASE, of NEW.
    pub failed: (bool, bool),
    /// Per metric; empty unless the path is on both sides.
    pub changes: Vec<Change>,
}

impl PathChange {
    pub fn started_failing(&self) -> bool {
        self.presence == Presence::Both && !self.failed.0 && self.failed.1
    }
    pub fn stopped_failing(&self) -> bool {
        self.presence == Presence::Both && self.failed.0 && !self.failed.1
    }
}

#[derive(Clone, Debug)]
pub struct Comparison {
    pub metrics: Vec<&'static Metric>,
    pub base_runs: usize,
    pub new_runs: usize,
    pub confidence: f64,
    pub totals: Vec<Change>,
    /// Every path of either side, in path order.
    pub paths: Vec<PathChange>,
}

impl Comparison {
    /// Outputs were added or removed: the totals then measure different sets of outputs.
    pub fn totals_comparable(&self) -> bool {
        self.paths.iter().all(|p| p.presence == Presence::Both)
    }
}

/// Compares the merged BASE and NEW (merged with the same metrics and options).
pub fn compare(base: &Merged, new: &Merged, confidence: f64) -> Comparison {
    let metrics = base.metrics.clone();
    let tester = &mut ranktest::Tester::new(confidence);
    let totals = metrics.iter().enumerate().map(|(i, &m)| change(m, &base.total_samples[i], &new.total_samples[i], tester)).collect();
    let mut paths = Vec::new();
    let (mut b, mut n) = (base.rows.iter().peekable(), new.rows.iter().peekable());
    // Both sides' rows are sorted by path: walk them together.
    loop {
        let next = match (b.peek(), n.peek()) {
            (None, None) => break,
            (Some(x), Some(y)) if x.path == y.path => {
                let (x, y) = (b.next().unwrap(), n.next().unwrap());
                both(x, y, &metrics, tester)
            }
            (Some(x), Some(y)) if x.path < y.path => one_side(b.next().unwrap(), Presence::Disappeared),
            (Some(_), None) => one_side(b.next().unwrap(), Presence::Disappeared),
            _ => one_side(n.next().unwrap(), Presence::Appeared),
        };
        paths.push(next);
    }
    Comparison { metrics, base_runs: base.runs.len(), new_runs: new.runs.len(), confidence, totals, paths }
}

fn both(base: &Row, new: &Row, metrics: &[&'static Metric], tester: &mut ranktest::Tester) -> PathChange {
    PathChange {
        path: new.path.clone(),
        presence: Presence::Both,
        kind: if new.kind == Kind::Error { base.kind } else { new.kind },
        failed: (base.errors > 0, new.errors > 0),
        changes: metrics.iter().enumerate().map(|(i, &m)| change(m, base.samples(i), new.samples(i), tester)).collect(),
    }
}

fn one_side(row: &Row, presence: Presence) -> PathChange {
    let failed = row.errors > 0;
    let failed = if presence == Presence::Appeared { (false, failed) } else { (failed, false) };
    PathChange { path: row.path.clone(), presence, kind: row.kind, failed, changes: Vec::new() }
}

fn median(sorted: &[u64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2] as f64,
        n => (sorted[n / 2 - 1] as f64 + sorted[n / 2] as f64) / 2.0,
    }
}

/// One metric's change between sorted samples.
fn change(metric: &'static Metric, base: &[u64], new: &[u64], tester: &mut ranktest::Tester) -> Change {
    let (before, after) = (median(base), median(new));
    let varies = |s: &[u64]| s.first() != s.last();
    let noisy = is_noisy(metric);
    let test = if noisy {
        let as_f64 = |s: &[u64]| s.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        tester.compare(&as_f64(base), &as_f64(new))
    } else {
        None
    };
    let delta = test.map_or(after - before, |t| t.shift);
    Change {
        metric,
        before,
        after,
        delta,
        relative: (before != 0.0).then(|| delta / before),
        test,
        nondeterministic: if noisy { (false, false) } else { (varies(base), varies(new)) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::{merge_files, MergeOptions};
    use crate::metric;
    use crate::report::tests::{node, report};
    use crate::report::Report;

    /// The reports merged as `compare` merges a side: written to files, then merge_files.
    fn merged(reports: &[Report]) -> Merged {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<_> = reports
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let file = dir.path().join(format!("r{i}.json"));
                crate::report_io::write_report(&file, r).unwrap();
                file
            })
            .collect();
        let metrics = vec![metric::find("thunks").unwrap(), metric::find("wall").unwrap()];
        merge_files(&files, &MergeOptions { metrics, allow_mixed: true, ..MergeOptions::default() }).unwrap()
    }

    /// A run: `a` costs `a_thunks`, wall `wall` ns; `b` (if any) 10 thunks.
    fn run(a_thunks: u64, wall: u64, with_b: bool, a_fails: bool) -> Report {
        let mut nodes = vec![node(0, None, &["a"], a_thunks)];
        nodes[0].cost.wall_ns = wall;
        nodes[0].error = a_fails.then(|| "boom".to_string());
        if with_b {
            nodes.push(node(1, None, &["b"], 10));
        }
        let mut r = report(nodes);
        r.totals.thunks = a_thunks + if with_b { 10 } else { 0 };
        r.totals.wall_ns = wall;
        r
    }

    #[test]
    fn counters_are_compared_exactly_and_paths_apart() {
        let base = merged(&[run(100, 5, true, false), run(100, 6, true, false)]);
        let new = merged(&[run(130, 5, false, true), run(130, 7, false, true)]);
        let c = compare(&base, &new, 0.95);
        assert_eq!((c.base_runs, c.new_runs), (2, 2));
        let a = &c.paths[0];
        assert_eq!((a.path.join("."), a.presence), ("a".into(), Presence::Both));
        let thunks = &a.changes[0];
        assert_eq!((thunks.before, thunks.after, thunks.delta), (100.0, 130.0, 30.0));
        assert_eq!(thunks.relative, Some(0.3));
        assert!(thunks.test.is_none(), "counters are exact: no test");
        assert_eq!(thunks.nondeterministic, (false, false));
        assert!(a.started_failing() && !a.stopped_failing());
        assert_eq!(c.paths[1].presence, Presence::Disappeared);
        assert!(!c.totals_comparable());
    }

    #[test]
    fn a_counter_that_varies_within_a_side_is_non_determinism() {
        let base = merged(&[run(100, 5, false, false), run(101, 5, false, false)]);
        let new = merged(&[run(100, 5, false, false), run(100, 6, false, false)]);
        let c = compare(&base, &new, 0.95);
        assert_eq!(c.paths[0].changes[0].nondeterministic, (true, false));
        assert!(c.totals_comparable());
    }

    #[test]
    fn noisy_metrics_are_tested_when_both_sides_have_runs() {
        let base = merged(&[run(1, 100, false, false), run(1, 101, false, false), run(1, 99, false, false)]);
        let new = merged(&[run(1, 150, false, false), run(1, 149, false, false), run(1, 152, false, false)]);
        let c = compare(&base, &new, 0.95);
        let wall = &c.totals[1];
        let t = wall.test.expect("three runs a side");
        assert!(t.exact);
        assert_eq!(wall.delta, 50.0, "the Hodges-Lehmann shift");
        assert!((t.p - 0.1).abs() < 1e-12, "exact: 2/C(6,3) = 0.1, the smallest p with 3 runs a side: {}", t.p);
        let single = compare(&merged(&[run(1, 100, false, false)]), &merged(&[run(1, 150, false, false)]), 0.95);
        assert!(single.totals[1].test.is_none(), "one run a side: no test possible");
        assert_eq!(single.totals[1].delta, 50.0);
    }
}
