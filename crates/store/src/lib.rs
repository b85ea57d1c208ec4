//! nix-evalcost-store: the history of evaluations. Reports in (idempotent ingest), statistics
//! out: time buckets with percentiles, predictions for schedulers, drift alerts, OpenMetrics.
//!
//! Two engines behind one interface ([`engine::Engine`]): SQLite, embedded, the default (a
//! file under the XDG data directory), and PostgreSQL for a fleet (`--db postgres://…`).
//! Everything here is written once over that interface.
//!
//! - [`record`]: what is kept of a report; [`agg`]: mergeable aggregates (DDSketch);
//! - [`engine`]: the schema and the two engines;
//! - [`calendar`]: UTC days and buckets; [`alerts`]: drift rules.

pub mod agg;
pub mod alerts;
pub mod calendar;
pub mod collector;
pub mod export;
pub mod engine;
pub mod record;

use agg::{exact_quantile, Agg};
use calendar::Bucket;
use engine::{Engine, Selection, StoreError};
use nix_evalcost_core::pathglob::PathGlob;
use nix_evalcost_core::report_io::{read_bytes, report_from_bytes, MAX_REPORT_BYTES};
use record::{Evaluation, Output};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use engine::Result;

/// Where the history lives: `postgres://…`/`postgresql://…`, `sqlite:PATH` or a plain path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    pub fn parse(text: &str) -> Location {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.to_string())
        } else {
            Location::Sqlite(PathBuf::from(text.strip_prefix("sqlite:").unwrap_or(text)))
        }
    }

    /// `$XDG_DATA_HOME/nix-evalcost/history.sqlite` (default `~/.local/share`).
    pub fn default_sqlite() -> Location {
        let base = std::env::var_os("XDG_DATA_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        Location::Sqlite(base.join("nix-evalcost").join("history.sqlite"))
    }

    /// For messages: never a password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(url) => match url.split_once('@') {
                Some((_, host)) => format!("postgres://…@{host}"),
                None => url.clone(),
            },
        }
    }
}

pub struct Store {
    engine: Box<dyn Engine>,
}

impl Store {
    pub fn open(location: &Location) -> Result<Store> {
        let engine: Box<dyn Engine> = match location {
            Location::Sqlite(path) => Box::new(engine::sqlite::Sqlite::open(path)?),
            Location::Postgres(url) => Box::new(engine::postgres::Postgres::connect(url)?),
        };
        Ok(Store { engine })
    }

    pub fn engine(&mut self) -> &mut dyn Engine {
        &mut *self.engine
    }

    /// Stores reports (parsed and validated first: a bad one stores nothing of itself). Returns
    /// how many were new.
    pub fn ingest(&mut self, reports: &[(Evaluation, Vec<Output>)]) -> Result<usize> {
        Ok(self.ingest_marked(reports)?.iter().filter(|&&new| new).count())
    }

    /// Like [`Store::ingest`], saying of each report whether it was new.
    pub fn ingest_marked(&mut self, reports: &[(Evaluation, Vec<Output>)]) -> Result<Vec<bool>> {
        self.ingest_with(reports, false)
    }

    /// Stores reports with their aggregates left pending: each call is one short transaction
    /// (a server answering ingests); [`Store::aggregate_pending`] merges them later, in bulk.
    /// Queries count pending evaluations all the same.
    pub fn ingest_deferred(&mut self, reports: &[(Evaluation, Vec<Output>)]) -> Result<Vec<bool>> {
        self.ingest_with(reports, true)
    }

    fn ingest_with(&mut self, reports: &[(Evaluation, Vec<Output>)], defer: bool) -> Result<Vec<bool>> {
        let mut marks = vec![false; reports.len()];
        for (c, chunk) in reports.chunks(INGEST_BATCH).enumerate() {
            for i in self.engine.ingest(chunk, defer)? {
                marks[c * INGEST_BATCH + i] = true;
            }
        }
        Ok(marks)
    }

    /// Merges every pending evaluation's aggregates, `slice` evaluations per transaction
    /// (a slice's outputs are held in memory: 2000 outputs take about 300 KB).
    pub fn aggregate_pending(&mut self, slice: usize) -> Result<usize> {
        let mut done = 0;
        loop {
            let n = self.engine.aggregate_pending(slice as i64)?;
            done += n;
            if n < slice {
                return Ok(done);
            }
        }
    }

    /// Time buckets of one metric: the whole evaluations (`glob: None`) or each output whose
    /// path matches. From the daily aggregates for day, week and month buckets (O(days)); from
    /// raw rows for hours.
    pub fn show(&mut self, query: &ShowQuery) -> Result<Vec<BucketRow>> {
        let paths = match &query.output {
            Some(path) => Some(vec![path.clone()]),
            None => self.matching_paths(query.glob.as_ref())?,
        };
        let selection = Selection { flake: query.flake.clone(), paths, metric: query.metric, from: query.from, until: query.until, pending_only: false };
        let mut series: BTreeMap<(i64, String, String), Agg> = BTreeMap::new();
        let raw = if query.bucket == Bucket::Hour {
            self.engine.samples(&selection)?
        } else {
            for row in self.engine.daily(&selection)? {
                series.entry((query.bucket.start_of(row.day * 86_400), row.flake, row.path)).or_default().merge(&row.agg);
            }
            // Evaluations stored but not aggregated yet count from their raw rows.
            self.engine.samples(&Selection { pending_only: true, ..selection })?
        };
        for s in raw {
            series.entry((query.bucket.start_of(s.started_at), s.flake, s.path)).or_default().add(s.value, s.error, s.weight);
        }
        Ok(series
            .into_iter()
            .map(|((start, flake, path), agg)| BucketRow { start, flake, path, agg })
            .collect())
    }

    /// The paths matching `glob`, or None (the whole evaluations) without one.
    fn matching_paths(&mut self, glob: Option<&PathGlob>) -> Result<Option<Vec<String>>> {
        let Some(glob) = glob else { return Ok(None) };
        let all = self.engine.paths()?;
        Ok(Some(all.into_iter().filter(|p| glob.matches(&record::path_components(p))).collect()))
    }

    /// The `quantile` of `metric` over the window, per flake (and per output when `per_output`):
    /// exact, from the raw rows of the window.
    pub fn predict(&mut self, query: &PredictQuery) -> Result<Vec<Prediction>> {
        let paths = if query.per_output { Some(self.engine.paths()?) } else { None };
        let selection = Selection { flake: query.flake.clone(), paths, metric: query.metric, from: query.now - query.window, until: query.now + 1, pending_only: false };
        let mut groups: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
        for s in self.engine.samples(&selection)? {
            groups.entry((s.flake, s.path)).or_default().push(s.value);
        }
        Ok(groups
            .into_iter()
            .map(|((flake, path), mut v)| Prediction {
                flake,
                output: (!path.is_empty()).then_some(path),
                n: v.len(),
                value: exact_quantile(&mut v, query.quantile).unwrap_or(0),
                max: v.iter().copied().max().unwrap_or(0),
            })
            .collect())
    }

    /// The alerts `rules` raise on the latest evaluation of each series (flake, and output for
    /// rules with a glob), against the history before it.
    pub fn check(&mut self, rules: &[alerts::Rule], flake: Option<&str>, now: i64) -> Result<Vec<alerts::Alert>> {
        let mut fired = Vec::new();
        for rule in rules {
            let paths = self.matching_paths(rule.glob.as_ref())?;
            let selection = Selection { flake: flake.map(str::to_string), paths, metric: rule.metric, from: now - rule.lookback() - 30 * 86_400, until: now + 1, pending_only: false };
            let mut series: BTreeMap<(String, String), Vec<engine::Sample>> = BTreeMap::new();
            for s in self.engine.samples(&selection)? {
                series.entry((s.flake.clone(), s.path.clone())).or_default().push(s);
            }
            for ((flake, path), mut samples) in series {
                samples.sort_by_key(|s| s.started_at);
                let output = (!path.is_empty()).then(|| record::display_stored(&path));
                fired.extend(alerts::evaluate(rule, &flake, output.as_deref(), &samples, now));
            }
        }
        Ok(fired)
    }

    /// Deletes evaluations that started before the UTC day `days` before `now`'s.
    pub fn clean(&mut self, days: i64, now: i64) -> Result<u64> {
        self.engine.delete_before_day(now.div_euclid(86_400) - days)
    }
}

/// Reports per ingest transaction: big enough that a directory of thousands is quick, small
/// enough that a crash loses little work (and a report's 16 000 daily aggregates are
/// merged once per batch and day, not once per report) (a transaction is all or nothing).
const INGEST_BATCH: usize = 500;

#[derive(Clone, Debug)]
pub struct ShowQuery {
    pub bucket: Bucket,
    pub from: i64,
    pub until: i64,
    pub flake: Option<String>,
    pub glob: Option<PathGlob>,
    /// One output, by its stored path (a JSON array of names): exact, where a glob would
    /// read names as patterns.
    pub output: Option<String>,
    pub metric: usize,
}

#[derive(Clone, Debug)]
pub struct BucketRow {
    /// Seconds since the epoch of the bucket's start (UTC).
    pub start: i64,
    pub flake: String,
    /// Empty: the whole evaluation.
    pub path: String,
    pub agg: Agg,
}

#[derive(Clone, Debug)]
pub struct PredictQuery {
    pub metric: usize,
    pub quantile: f64,
    /// Seconds.
    pub window: i64,
    pub now: i64,
    pub flake: Option<String>,
    pub per_output: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub flake: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Evaluations in the window.
    pub n: usize,
    /// The quantile: the number a scheduler reads.
    pub value: i64,
    /// The largest seen in the window.
    pub max: i64,
}

/// Reads and validates a report file into the history's rows.
pub fn read_record(path: &Path) -> std::result::Result<(Evaluation, Vec<Output>), String> {
    let (mut json, mut scratch) = (Vec::new(), Vec::new());
    read_bytes(path, &mut json, &mut scratch).map_err(|e| e.to_string())?;
    let report = report_from_bytes(path, &json, MAX_REPORT_BYTES).map_err(|e| e.to_string())?;
    // `scratch` holds the file as read when it was gzipped (read_bytes inflated it into `json`).
    let gz = scratch.starts_with(&[0x1f, 0x8b]).then_some(scratch.as_slice());
    record::records_with_document(&report, &json, gz).map_err(|e| format!("{}: {e}", path.display()))
}

impl From<String> for StoreError {
    fn from(s: String) -> Self {
        StoreError::Other(s)
    }
}
