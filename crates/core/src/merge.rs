//! Merging reports: per attribute path, statistics of each chosen metric across runs.
//!
//! Reports stream in: each is parsed (borrowing its strings from the file's bytes), folded
//! into per-path samples of the chosen metrics and dropped. Memory grows with paths × runs ×
//! chosen metrics, never with whole reports. Files are read by one thread per core; merging is
//! order-independent (samples are sorted before statistics are taken).

use crate::cost::{Cost, Gauges, Sizes};
use crate::metric::Metric;
use crate::pathglob::PathGlob;
use crate::report::{Kind, Meta};
use crate::report_io::{read_bytes, ReportError};
use crate::stats::{Stat, Stats};
use serde::Deserialize;
use std::borrow::Cow;
use rustc_hash::FxHashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How reports are merged.
#[derive(Clone, Default)]
pub struct MergeOptions {
    /// Metrics to compute; the first is the one tables are ranked by.
    pub metrics: Vec<&'static Metric>,
    /// Inclusive costs (a node plus its subtree) instead of exclusive.
    pub inclusive: bool,
    /// Fold everything below this depth into its ancestor at this depth (inclusive there).
    pub depth: Option<usize>,
    /// Keep only paths matching one of these (all if empty).
    pub filters: Vec<PathGlob>,
    /// Merge reports of different flake revisions, systems or modes anyway.
    pub allow_mixed: bool,
    /// One row per command or per flake, of whole-process costs (passive reports of many
    /// commands); reports of anything are merged then.
    pub group_by: Option<GroupBy>,
}

/// What `report --group-by` puts in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// The command (`nix build`, `nix flake check`, ...; walks are `nix-evalcost profile`).
    Command,
    /// The flake as given (`path:/src/app`, `github:owner/repo`), whatever its revision.
    Flake,
}

impl GroupBy {
    pub const ALL: [GroupBy; 2] = [GroupBy::Command, GroupBy::Flake];

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Command => "command",
            GroupBy::Flake => "flake",
        }
    }

    /// The row a report of `meta` falls in.
    pub fn key(self, meta: &Meta) -> String {
        match self {
            GroupBy::Command if !meta.command.is_empty() => meta.command.clone(),
            GroupBy::Command => match meta.mode.as_str() {
                "walk" => "nix-evalcost profile".into(),
                other => format!("({other})"),
            },
            GroupBy::Flake => meta.flake.as_ref().map_or_else(|| "(no flake)".into(), |f| f.original_ref.clone()),
        }
    }
}

/// One merged attribute path.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub path: Vec<String>,
    pub kind: Kind,
    /// Runs in which evaluating this path failed.
    pub errors: usize,
    /// Per metric, in `Merged::metrics` order.
    pub stats: Vec<Stats>,
    /// Per metric, the value in each run that has this path, sorted (what `stats` summarise;
    /// `compare` tests them): metric by metric in one allocation, see [`Row::samples`].
    samples: Vec<u64>,
}

impl Row {
    /// The sorted values of metric `i` (in `Merged::metrics` order), one per run that has
    /// this path.
    pub fn samples(&self, i: usize) -> &[u64] {
        let runs = self.samples.len() / self.stats.len().max(1);
        &self.samples[i * runs..(i + 1) * runs]
    }
}

/// What one report was, for the merged output's provenance and the compatibility check.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    pub file: String,
    pub meta: Meta,
}

impl RunInfo {
    /// The flake content this run evaluated: its narHash (a dirty Git tree has no rev, and its
    /// locked URL stays the same across edits), else its locked URL.
    pub fn revision(&self) -> String {
        self.meta.flake.as_ref().map_or_else(|| "(no flake)".into(), |f| f.nar_hash.clone().unwrap_or_else(|| f.locked_url.clone()))
    }
    pub fn systems(&self) -> String {
        if self.meta.all_systems { "all".into() } else { self.meta.systems.join(",") }
    }
}

#[derive(Debug)]
pub struct Merged {
    pub metrics: Vec<&'static Metric>,
    pub inclusive: bool,
    pub depth: Option<usize>,
    pub runs: Vec<RunInfo>,
    pub rows: Vec<Row>,
    pub totals: Vec<Stats>,
    /// Per metric, the process totals of every run, sorted.
    pub total_samples: Vec<Vec<u64>>,
    pub unattributed: Vec<Stats>,
}

impl Merged {
    /// The `top` rows by `stat` of the first metric, largest first (ties by path).
    pub fn top(&self, stat: Stat, top: usize) -> Vec<&Row> {
        let ranked = |a: &&Row, b: &&Row| b.stats[0].get(stat).total_cmp(&a.stats[0].get(stat)).then_with(|| a.path.cmp(&b.path));
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        // The top few of a 20 000-output walk: selected, then only they are sorted (sorting all
        // of them took 2-4 ms of `profile`'s last moments, selecting 0.2-0.35 ms).
        if top < rows.len() {
            rows.select_nth_unstable_by(top, ranked);
            rows.truncate(top);
        }
        rows.sort_by(ranked);
        rows
    }

    /// How many processes the runs stand for, when some were sampled (passive reports at a
    /// sample rate below 1): each run counts 1/rate (the Horvitz-Thompson estimate). None when
    /// no run was sampled.
    pub fn estimated_processes(&self) -> Option<f64> {
        let rates = self.runs.iter().map(|r| r.meta.sample_rate.filter(|&p| p > 0.0).unwrap_or(1.0));
        let sampled = self.runs.iter().any(|r| r.meta.sample_rate.is_some_and(|p| p < 1.0));
        sampled.then(|| rates.map(|p| 1.0 / p).sum())
    }

    pub fn error_runs(&self) -> usize {
        self.rows.iter().map(|r| r.errors).sum()
    }
}

// ---- the lean view of a report file --------------------------------------------------------

#[derive(Deserialize)]
struct LeanReport<'a> {
    #[serde(borrow)]
    schema: Cow<'a, str>,
    schema_version: u32,
    meta: Meta,
    sizes: Sizes,
    totals: Cost,
    unattributed: Cost,
    end: Gauges,
    #[serde(borrow)]
    nodes: Vec<LeanNode<'a>>,
}

#[derive(Deserialize)]
struct LeanNode<'a> {
    parent: Option<u32>,
    #[serde(borrow)]
    path: Vec<Cow<'a, str>>,
    kind: Kind,
    #[serde(default, borrow)]
    error: Option<Cow<'a, str>>,
    #[serde(default)]
    cost: Cost,
    #[serde(default)]
    after: Gauges,
}

fn parse_lean<'a>(path: &Path, bytes: &'a [u8]) -> Result<LeanReport<'a>, ReportError> {
    let invalid = |detail: String| ReportError::Invalid { path: path.display().to_string(), detail };
    let report: LeanReport = crate::report_io::parse_json(path, bytes)?;
    crate::report::check_schema(&report.schema, report.schema_version).map_err(invalid)?;
    for (i, node) in report.nodes.iter().enumerate() {
        if node.parent.is_some_and(|p| p as usize >= i) {
            return Err(invalid(format!("node {i} names a parent that does not come before it")));
        }
    }
    Ok(report)
}

// ---- accumulation --------------------------------------------------------------------------

struct PathSamples {
    path: Vec<String>,
    kind: Kind,
    errors: usize,
    /// Run by run (each run that has this path), the metrics' values: one allocation per
    /// path, whatever the number of metrics (a 20 000-output report has as many paths).
    samples: Vec<u64>,
}

impl PathSamples {
    fn new(path: Vec<String>, kind: Kind, metric_count: usize) -> PathSamples {
        PathSamples { path, kind, errors: 0, samples: Vec::with_capacity(metric_count) }
    }

    /// One more run's sample of this path.
    fn add(&mut self, node: &LeanNode, values: &[u64]) {
        if node.error.is_some() {
            self.errors += 1;
            self.kind = Kind::Error;
        }
        self.samples.extend_from_slice(values);
    }
}

/// `path`'s components joined by [`SEP`], into `key` (the map's key of a path).
fn path_key<S: AsRef<str>>(path: &[S], key: &mut String) {
    key.clear();
    for (i, c) in path.iter().enumerate() {
        if i > 0 {
            key.push(SEP);
        }
        key.push_str(c.as_ref());
    }
}

struct Accumulator {
    metric_count: usize,
    /// Keyed by the path with components joined by NUL. FxHash: the keys are not adversarial
    /// in a way that matters (a report's author can only slow down their own merge).
    paths: FxHashMap<String, PathSamples>,
    /// The first report's rows when its paths came strictly increasing (a walk's pre-order
    /// over sorted attribute names does): kept in order, with no keys, no map and no sort.
    /// Moved into `paths` as soon as a second report comes.
    ordered: Vec<PathSamples>,
    totals: Vec<Vec<u64>>,
    unattributed: Vec<Vec<u64>>,
    runs: Vec<RunInfo>,
}

/// Separates path components in map keys: attribute names cannot contain NUL.
const SEP: char = '\0';

impl Accumulator {
    fn new(metric_count: usize) -> Self {
        Accumulator {
            metric_count,
            paths: FxHashMap::default(),
            ordered: Vec::new(),
            totals: vec![Vec::new(); metric_count],
            unattributed: vec![Vec::new(); metric_count],
            runs: Vec::new(),
        }
    }

    fn add(&mut self, file: &Path, report: LeanReport, opts: &MergeOptions) {
        if let Some(group_by) = opts.group_by {
            return self.add_process(file, report, group_by, opts);
        }
        let values = NodeValues::of(&report, opts);
        let rows: Vec<(&LeanNode, &[u64])> = (report.nodes.iter().enumerate())
            .filter_map(|(i, node)| Some((node, values.row(i, node.path.len(), opts)?)))
            .filter(|(node, _)| opts.filters.is_empty() || opts.filters.iter().any(|g| g.matches(&node.path)))
            .collect();
        let first = self.runs.is_empty();
        if first && rows.windows(2).all(|pair| pair[0].0.path < pair[1].0.path) {
            self.ordered = rows.iter().map(|(node, values)| self.samples_of(node, values)).collect();
        } else {
            self.spill_ordered();
            let mut key = String::new();
            for (node, values) in rows {
                path_key(&node.path, &mut key);
                match self.paths.get_mut(key.as_str()) {
                    Some(entry) => entry.add(node, values),
                    None => {
                        let samples = self.samples_of(node, values);
                        self.paths.insert(key.clone(), samples);
                    }
                }
            }
        }
        for (i, m) in opts.metrics.iter().enumerate() {
            self.totals[i].push(m.value(&report.totals, &report.end, &report.sizes));
            self.unattributed[i].push(m.value(&report.unattributed, &Gauges::default(), &report.sizes));
        }
        self.runs.push(RunInfo { file: file.display().to_string(), meta: report.meta });
    }

    /// One sample of the whole process (its totals and end gauges) in its group's row.
    fn add_process(&mut self, file: &Path, report: LeanReport, group_by: GroupBy, opts: &MergeOptions) {
        let key = group_by.key(&report.meta);
        if opts.filters.is_empty() || opts.filters.iter().any(|g| g.matches(std::slice::from_ref(&key))) {
            let failed = report.nodes.iter().any(|n| n.error.is_some());
            let name = key.replace(SEP, " ");
            let metric_count = self.metric_count;
            let entry = self.paths.entry(name.clone()).or_insert_with(|| PathSamples::new(vec![name], Kind::Command, metric_count));
            if failed {
                entry.errors += 1;
                entry.kind = Kind::Error;
            }
            entry.samples.extend(opts.metrics.iter().map(|m| m.value(&report.totals, &report.end, &report.sizes)));
        }
        for (i, m) in opts.metrics.iter().enumerate() {
            self.totals[i].push(m.value(&report.totals, &report.end, &report.sizes));
            self.unattributed[i].push(0);
        }
        self.runs.push(RunInfo { file: file.display().to_string(), meta: report.meta });
    }

    /// A new row of `node`, with its values as its first sample.
    fn samples_of(&self, node: &LeanNode, values: &[u64]) -> PathSamples {
        let mut samples = PathSamples::new(node.path.iter().map(|c| c.to_string()).collect(), node.kind, self.metric_count);
        samples.add(node, values);
        samples
    }

    /// Moves the ordered rows into the map, keyed like the rows of any other report.
    fn spill_ordered(&mut self) {
        let mut key = String::new();
        for samples in std::mem::take(&mut self.ordered) {
            path_key(&samples.path, &mut key);
            self.paths.insert(key.clone(), samples);
        }
    }

    fn absorb(&mut self, mut other: Accumulator) {
        // A thread that read one file, or none: nothing to key (the one report stays in order).
        if other.runs.is_empty() {
            return;
        }
        if self.runs.is_empty() {
            *self = other;
            return;
        }
        self.spill_ordered();
        other.spill_ordered();
        for (key, theirs) in other.paths {
            match self.paths.get_mut(&key) {
                None => {
                    self.paths.insert(key, theirs);
                }
                Some(ours) => {
                    ours.errors += theirs.errors;
                    if theirs.kind == Kind::Error {
                        ours.kind = Kind::Error;
                    }
                    ours.samples.extend(theirs.samples);
                }
            }
        }
        for (a, b) in self.totals.iter_mut().zip(other.totals) {
            a.extend(b);
        }
        for (a, b) in self.unattributed.iter_mut().zip(other.unattributed) {
            a.extend(b);
        }
        self.runs.extend(other.runs);
    }

    fn finish(self, opts: &MergeOptions) -> Merged {
        let stats = |mut v: Vec<u64>| Stats::of(&mut v);
        // Stats::of sorts the samples in place: keep them, sorted.
        let stats_and_samples = |samples: Vec<Vec<u64>>| -> (Vec<Stats>, Vec<Vec<u64>>) {
            samples.into_iter().map(|mut v| (Stats::of(&mut v), v)).unzip()
        };
        let metric_count = self.metric_count;
        // Ordered rows are already sorted by path (and the map is then empty).
        let in_order = !self.ordered.is_empty();
        let mut rows: Vec<Row> = (self.ordered.into_iter())
            .chain(self.paths.into_values())
            .map(|p| {
                let mut samples = metric_major(p.samples, metric_count);
                let runs = samples.len() / metric_count.max(1);
                let stats = samples.chunks_mut(runs.max(1)).map(Stats::of).collect();
                Row { path: p.path, kind: p.kind, errors: p.errors, stats, samples }
            })
            .collect();
        if !in_order {
            rows.sort_by(|a, b| a.path.cmp(&b.path));
        }
        let mut runs = self.runs;
        runs.sort_by(|a, b| a.file.cmp(&b.file));
        let (total_stats, total_samples) = stats_and_samples(self.totals);
        Merged {
            metrics: opts.metrics.clone(),
            inclusive: opts.inclusive,
            depth: opts.depth,
            runs,
            rows,
            totals: total_stats,
            total_samples,
            unattributed: self.unattributed.into_iter().map(stats).collect(),
        }
    }
}

/// Run-major samples (each run's metrics in turn) laid out metric by metric.
fn metric_major(samples: Vec<u64>, metric_count: usize) -> Vec<u64> {
    let runs = samples.len() / metric_count.max(1);
    if runs <= 1 {
        return samples;
    }
    (0..metric_count).flat_map(|m| (0..runs).map(move |r| (m, r))).map(|(m, r)| samples[r * metric_count + m]).collect()
}

/// The chosen metrics' values for every node of one report, in flat tables (one allocation
/// per report, not per node): each node's own values and, when needed, its subtree's.
/// Subtree values sum additive metrics and take the maximum of gauges.
struct NodeValues {
    width: usize,
    own: Vec<u64>,
    subtree: Option<Vec<u64>>,
}

impl NodeValues {
    fn of(report: &LeanReport, opts: &MergeOptions) -> NodeValues {
        let width = opts.metrics.len();
        let mut own = Vec::with_capacity(report.nodes.len() * width);
        for n in &report.nodes {
            own.extend(opts.metrics.iter().map(|m| m.value(&n.cost, &n.after, &report.sizes)));
        }
        let subtree = (opts.inclusive || opts.depth.is_some()).then(|| {
            let mut acc = own.clone();
            for i in (0..report.nodes.len()).rev() {
                if let Some(parent) = report.nodes[i].parent {
                    let (head, tail) = acc.split_at_mut(i * width);
                    let parent_values = &mut head[parent as usize * width..(parent as usize + 1) * width];
                    for ((p, c), m) in parent_values.iter_mut().zip(&tail[..width]).zip(&opts.metrics) {
                        *p = if m.is_additive() { p.saturating_add(*c) } else { (*p).max(*c) };
                    }
                }
            }
            acc
        });
        NodeValues { width, own, subtree }
    }

    /// The values node `i` (at `depth`) contributes as a row, or None below the depth cut.
    fn row(&self, i: usize, depth: usize, opts: &MergeOptions) -> Option<&[u64]> {
        let range = i * self.width..(i + 1) * self.width;
        match opts.depth {
            Some(d) if depth > d => None,
            Some(d) if depth == d => self.subtree.as_ref().map(|s| &s[range]),
            _ if opts.inclusive => self.subtree.as_ref().map(|s| &s[range]),
            _ => Some(&self.own[range]),
        }
    }
}

// ---- entry point ---------------------------------------------------------------------------

/// Merges `files`, reading them on all cores. Any bad file fails the whole merge.
pub fn merge_files(files: &[PathBuf], opts: &MergeOptions) -> Result<Merged, MergeError> {
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<(usize, ReportError)>> = Mutex::new(None);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len().max(1));
    let partials: Vec<Accumulator> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut acc = Accumulator::new(opts.metrics.len());
                    // Buffers reused from file to file: no fresh megabytes (and page faults) each time.
                    let (mut bytes, mut scratch) = (Vec::new(), Vec::new());
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(file) = files.get(i) else { break };
                        let outcome = read_bytes(file, &mut bytes, &mut scratch).and_then(|()| parse_lean(file, &bytes));
                        match outcome {
                            Ok(report) => acc.add(file, report, opts),
                            Err(e) => {
                                let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                                // Report the first bad file in command-line order, whatever the threads did.
                                if slot.as_ref().is_none_or(|(j, _)| i < *j) {
                                    *slot = Some((i, e));
                                }
                                next.store(files.len(), Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                    acc
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("merge worker panicked")).collect()
    });
    if let Some((_, e)) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(MergeError::Report(e));
    }
    let mut all = Accumulator::new(opts.metrics.len());
    for partial in partials {
        all.absorb(partial);
    }
    let merged = all.finish(opts);
    if !opts.allow_mixed && opts.group_by.is_none() {
        check_compatible(&merged.runs)?;
    }
    Ok(merged)
}

/// Merges the JSON text of one report (named `name` in errors): the lean parse, validation and
/// accumulation of [`merge_files`], without files or threads (for fuzzing and tests).
pub fn merge_json(name: &str, json: &[u8], opts: &MergeOptions) -> Result<Merged, MergeError> {
    let path = Path::new(name);
    let report = parse_lean(path, json)?;
    let mut acc = Accumulator::new(opts.metrics.len());
    acc.add(path, report, opts);
    Ok(acc.finish(opts))
}

/// Merges one report already in memory (what `profile` prints).
pub fn merge_report(report: &crate::report::Report, file: &Path, opts: &MergeOptions) -> Merged {
    let mut acc = Accumulator::new(opts.metrics.len());
    acc.add(file, lean_of(report), opts);
    acc.finish(opts)
}

/// Merges reports already in memory (each with its file, for provenance), checking that they
/// are compatible like [`merge_files`].
pub fn merge_reports(reports: &[(PathBuf, crate::report::Report)], opts: &MergeOptions) -> Result<Merged, MergeError> {
    let mut acc = Accumulator::new(opts.metrics.len());
    for (file, report) in reports {
        acc.add(file, lean_of(report), opts);
    }
    let merged = acc.finish(opts);
    if !opts.allow_mixed && opts.group_by.is_none() {
        check_compatible(&merged.runs)?;
    }
    Ok(merged)
}

fn lean_of(report: &crate::report::Report) -> LeanReport<'_> {
    LeanReport {
        schema: Cow::Borrowed(&report.schema),
        schema_version: report.schema_version,
        meta: report.meta.clone(),
        sizes: report.sizes,
        totals: report.totals,
        unattributed: report.unattributed,
        end: report.end,
        nodes: report
            .nodes
            .iter()
            .map(|n| LeanNode {
                parent: n.parent,
                path: n.path.iter().map(|c| Cow::Borrowed(c.as_str())).collect(),
                kind: n.kind,
                error: n.error.as_deref().map(Cow::Borrowed),
                cost: n.cost,
                after: n.after,
            })
            .collect(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{0}")]
    Mixed(String),
}

/// Refuses to merge runs whose costs do not describe the same thing.
pub fn check_compatible(runs: &[RunInfo]) -> Result<(), MergeError> {
    type Check = (&'static str, fn(&RunInfo) -> String);
    let checks: [Check; 3] = [
        ("flake revisions", RunInfo::revision),
        ("system selections", RunInfo::systems),
        ("modes", |r: &RunInfo| r.meta.mode.clone()),
    ];
    for (what, key) in checks {
        let mut seen: Vec<(String, &str)> = Vec::new();
        for run in runs {
            let k = key(run);
            if !seen.iter().any(|(s, _)| *s == k) {
                seen.push((k, &run.file));
            }
        }
        if seen.len() > 1 {
            let examples: Vec<String> = seen.iter().take(2).map(|(k, f)| format!("{k} in {f}")).collect();
            return Err(MergeError::Mixed(crate::attrpath::sanitize_text(&format!(
                "the reports differ in {what} ({} different: {}); merging would mix unlike costs. \
                 Pass --allow-mixed to merge them anyway",
                seen.len(),
                examples.join(", ")
            ))));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{node, report};

    #[test]
    fn samples_are_kept_per_metric_sorted_across_runs() {
        let run = |thunks: u64, calls: u64| {
            let mut n = node(0, None, &["a"], thunks);
            n.cost.function_calls = calls;
            report(vec![n])
        };
        let reports: Vec<(PathBuf, crate::report::Report)> =
            [(5, 70), (3, 90), (4, 80)].into_iter().enumerate().map(|(i, (t, c))| (PathBuf::from(format!("r{i}.json")), run(t, c))).collect();
        let metrics = ["thunks", "fncalls"].iter().map(|m| crate::metric::find(m).unwrap()).collect();
        let merged = merge_reports(&reports, &MergeOptions { metrics, allow_mixed: true, ..Default::default() }).unwrap();
        let [row] = &merged.rows[..] else { panic!("{} rows", merged.rows.len()) };
        assert_eq!(row.samples(0), [3, 4, 5]);
        assert_eq!(row.samples(1), [70, 80, 90]);
        assert_eq!((row.stats[0].median, row.stats[1].median, row.stats[1].n), (4, 80, 3));
    }

    #[test]
    fn the_top_rows_are_the_first_of_the_whole_ranking() {
        // Few distinct values among many rows, so ties are decided by path, as in the sort.
        let rows: Vec<Row> = (0..5000u64)
            .map(|i| {
                let value = (i * 7919) % 97;
                let stats = Stats { n: 1, min: value, median: value, mean: value as f64, p95: value, max: value };
                Row { path: vec![format!("p{:05}", (i * 104729) % 10007)], kind: Kind::Derivation, errors: 0, stats: vec![stats], samples: vec![value] }
            })
            .collect();
        let merged = Merged {
            metrics: vec![crate::metric::find("thunks").unwrap()],
            inclusive: false,
            depth: None,
            runs: Vec::new(),
            rows,
            totals: Vec::new(),
            total_samples: Vec::new(),
            unattributed: Vec::new(),
        };
        let mut sorted: Vec<&Row> = merged.rows.iter().collect();
        sorted.sort_by(|a, b| b.stats[0].median.cmp(&a.stats[0].median).then_with(|| a.path.cmp(&b.path)));
        for top in [0, 1, 5, 20, 100, 4999, 5000, 9000] {
            let paths = |rows: &[&Row]| rows.iter().map(|r| r.path.clone()).collect::<Vec<_>>();
            assert_eq!(paths(&merged.top(Stat::Median, top)), paths(&sorted[..top.min(5000)]), "top {top}");
        }
    }
}
