//! The table `profile` prints when a walk ends: what the user asked for ([`SummarySpec`], built
//! from the CLI's options) and its rendering from a report.
//!
//! The CLI hands the spec to the walk, and the plugin renders it from the report it has in memory
//! and says it with the report's `written` line ([`crate::protocol::WrittenFacts`]). Reading an
//! 11 MB report back to print 20 rows was the CLI's last ~100 ms after a 20 000-output walk,
//! longer than nix's own exit (perf timelines, docs/benchmarks.md). One function renders it on
//! both sides, so the table is the same wherever it was made.

use crate::merge::{merge_report, MergeOptions};
use crate::metric::{self, Metric};
use crate::pathglob::PathGlob;
use crate::render::table::{self, TableOptions};
use crate::render::View;
use crate::report::Report;
use crate::stats::Stat;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What the summary table shows, in plain values (names, globs), so that it crosses into a
/// `builtins.evalcostWalk` argument as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummarySpec {
    /// Metric names; the first ranks the rows.
    pub metrics: Vec<String>,
    pub inclusive: bool,
    pub depth: Option<usize>,
    /// Path globs (`--filter`).
    pub filters: Vec<String>,
    /// The statistic rows are ranked by (`--sort`).
    pub sort: String,
    pub top: usize,
    /// The report's path as the table's run names it (where the CLI puts the report).
    pub file: String,
    /// Line width; `usize::MAX` keeps paths whole.
    pub width: usize,
    pub color: bool,
}

impl SummarySpec {
    /// The spec of `options` (as `profile` merges: reports of anything, no grouping), ranked by
    /// `sort`, `top` rows, laid out by `layout`, naming the report `file`.
    pub fn new(options: &MergeOptions, sort: Stat, top: usize, layout: &TableOptions, file: &Path) -> SummarySpec {
        SummarySpec {
            metrics: options.metrics.iter().map(|m| m.name.to_string()).collect(),
            inclusive: options.inclusive,
            depth: options.depth,
            filters: options.filters.iter().map(|f| f.as_str().to_string()).collect(),
            sort: sort.name().to_string(),
            top,
            file: file.display().to_string(),
            width: layout.width,
            color: layout.color,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a summary spec is plain data")
    }

    pub fn from_json(text: &str) -> Result<SummarySpec, String> {
        serde_json::from_str(text).map_err(|e| format!("the summary spec is not valid ({e})"))
    }

    fn merge_options(&self) -> Result<MergeOptions, String> {
        let metrics: Vec<&'static Metric> = self.metrics.iter().map(|m| metric::find(m)).collect::<Result<_, _>>()?;
        if metrics.is_empty() {
            return Err("the summary spec names no metric".into());
        }
        let filters = self.filters.iter().map(|f| PathGlob::parse(f)).collect::<Result<_, _>>()?;
        Ok(MergeOptions { metrics, inclusive: self.inclusive, depth: self.depth, filters, allow_mixed: true, group_by: None })
    }

    fn stat(&self) -> Result<Stat, String> {
        Stat::ALL.into_iter().find(|s| s.name() == self.sort).ok_or_else(|| format!("unknown statistic {:?}", self.sort))
    }

    /// The report's one-paragraph summary and its table of the top rows, as printed.
    pub fn render(&self, report: &Report) -> Result<String, String> {
        let merged = merge_report(report, Path::new(&self.file), &self.merge_options()?);
        let view = View::new(&merged, self.stat()?, self.top);
        let layout = TableOptions { width: self.width, color: self.color };
        let text = format!("{}\n{}", table::summary(report), table::render(&view, &layout));
        // Freed row by row, a 20 000-row merge would only delay what waits for this text.
        std::mem::forget(merged);
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{node, report};

    fn spec() -> SummarySpec {
        let options = MergeOptions {
            metrics: vec![metric::find("thunks").unwrap(), metric::find("wall").unwrap()],
            inclusive: false,
            depth: None,
            filters: vec![PathGlob::parse("packages.**").unwrap()],
            allow_mixed: true,
            group_by: None,
        };
        SummarySpec::new(&options, Stat::Median, 2, &TableOptions { width: usize::MAX, color: false }, Path::new("/r/it's.json"))
    }

    #[test]
    fn the_spec_round_trips_through_json() {
        let s = spec();
        assert_eq!(SummarySpec::from_json(&s.to_json()).unwrap(), s);
        assert_eq!(s.metrics, ["thunks", "wall"]);
        assert!(SummarySpec::from_json("{\"metrics\":[]}").unwrap_err().contains("not valid"));
    }

    #[test]
    fn the_rendering_is_the_merged_tables_top_rows() {
        let nodes = vec![
            node(0, None, &["packages"], 1),
            node(1, Some(0), &["packages", "a"], 5),
            node(2, Some(0), &["packages", "b"], 9),
            node(3, Some(0), &["packages", "c"], 2),
        ];
        let r = report(nodes);
        let text = spec().render(&r).unwrap();
        let rows: Vec<&str> = text.lines().filter(|l| l.contains("packages.")).collect();
        // Ranked by thunks, two rows: b (9), then a (5); c is below the top.
        assert_eq!(rows.len(), 2, "{text}");
        assert!(rows[0].contains("packages.b") && rows[1].contains("packages.a"), "{text}");
        assert!(text.starts_with(&table::summary(&r)), "{text}");
    }

    #[test]
    fn a_bad_spec_is_an_error_not_a_panic() {
        let r = report(vec![node(0, None, &["packages"], 1)]);
        let mut s = spec();
        s.metrics = vec!["no-such-metric".into()];
        assert!(s.render(&r).is_err());
        let mut s = spec();
        s.sort = "mode".into();
        assert!(s.render(&r).unwrap_err().contains("mode"));
        let mut s = spec();
        s.metrics.clear();
        assert!(s.render(&r).is_err());
    }
}
