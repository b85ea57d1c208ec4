//! Exporters: one module per output format, each a function from a [`View`] to text.
//! Attribute names are data: every exporter escapes them for its format.

pub mod compare;
pub mod csv;
pub mod flamegraph;
pub mod functions;
pub mod graph;
pub mod html;
pub mod info;
pub mod json;
pub mod markdown;
pub mod openmetrics;
pub mod table;

use crate::merge::{Merged, Row};
use crate::metric::Metric;
use crate::stats::{Stat, Stats};

/// What an exporter shows: the chosen rows of a merge, ranked by `stat` of the first metric.
pub struct View<'a> {
    pub merged: &'a Merged,
    pub rows: Vec<&'a Row>,
    pub stat: Stat,
}

impl<'a> View<'a> {
    pub fn new(merged: &'a Merged, stat: Stat, top: usize) -> View<'a> {
        View { merged, rows: merged.top(stat, top), stat }
    }

    pub fn runs(&self) -> usize {
        self.merged.runs.len()
    }

    pub fn metrics(&self) -> &[&'static Metric] {
        &self.merged.metrics
    }

    /// `stat` of the ranking metric for a row, as a share of the same statistic of the totals
    /// (additive metrics only).
    pub fn share(&self, row: &Row) -> Option<f64> {
        let metric = self.metrics()[0];
        let total = self.merged.totals[0].get(self.stat);
        (metric.is_additive() && total > 0.0).then(|| row.stats[0].get(self.stat) / total)
    }

    /// The flake the runs evaluated (the first run's reference).
    pub fn flake(&self) -> String {
        self.merged
            .runs
            .first()
            .and_then(|r| r.meta.flake.as_ref())
            .map_or_else(|| "(no flake)".into(), |f| f.original_ref.clone())
    }
}

/// The value of `stat` as an integer in the metric's unit (means are rounded).
pub fn stat_value(stats: &Stats, stat: Stat) -> u64 {
    stats.get(stat).round() as u64
}

/// `text` cut to `width` characters, ending in `ellipsis` when cut.
pub fn cut(text: &str, width: usize, ellipsis: &str) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(ellipsis.chars().count())).collect();
    out.push_str(ellipsis);
    out
}
