//! The two engines behind the store: SQLite (embedded, one file) and PostgreSQL (a fleet).
//! Same schema, same statements where the dialects agree; each engine is a small module.
//!
//! Schema version 1:
//! - `evaluations`: one row per report (digest unique), with its provenance and the process
//!   totals of the history's metrics (`m_<metric>` columns);
//! - `paths` and `outputs`: each output's exclusive cost, by interned path;
//! - `daily`: per UTC day, flake, path (`''`: the whole evaluation) and metric, an aggregate
//!   (`agg.rs`, JSON), kept in step with inserts in the same transaction.
//!
//! Version 2 adds `documents`: each evaluation's report, gzipped, for the board (its graph,
//! its flamegraphs). Version 3 packs each evaluation's output costs into one value of `costs`
//! (`packed.rs`) in place of the rows of `outputs`. Version 4 keeps one `daily` row per (day,
//! flake, path) with the aggregates of all metrics, not one row per metric. Version 5 stores
//! blobs uncompressed on PostgreSQL. [`MIGRATIONS`] takes a store from any
//! older version to this one; a fresh store is created at version 1 and migrated like any
//! other, so the steps are always run.

use crate::agg::Agg;
use crate::record::{Evaluation, Output, METRICS};
use packed::PackedOutput;
use std::collections::HashMap;

pub mod packed;
pub mod postgres;
pub mod sqlite;

pub const SCHEMA_VERSION: i64 = 5;

/// The steps from one schema version to the next: (the version it makes, its SQL in the
/// dialect-neutral form of [`sql`]). Run in order, each in the transaction that
/// records the new version.
pub const MIGRATIONS: [(i64, &str); 4] = [(
    2,
    // Version 2 also encodes aggregates compactly (agg.rs): version 1's are dropped, and
    // rebuilt from the raw rows when the store is opened (`finish_migrations`). And outputs
    // are keyed by (evaluation, path), clustered where the engine can (SQLite WITHOUT ROWID),
    // with no index by path: a report's outputs are appended in one B-tree, not three (no
    // query reads by path without a time window; that is what `daily` is for). Ingest took
    // half its time in those indexes, measured. Its foreign keys go too (PostgreSQL checked
    // them row by row, 4000 checks per report): the engines delete a retired evaluation's
    // outputs themselves. And an evaluation may be stored before its
    // aggregates (`aggregated` false): the server stores each ingest at once and merges
    // aggregates in big batches (`aggregate_pending`); queries add the pending rows' samples,
    // so they stay exact.
    "CREATE TABLE documents (
       evaluation_id BIGINT PRIMARY KEY REFERENCES evaluations (id) ON DELETE CASCADE,
       report {blob} NOT NULL);
     DELETE FROM daily;
     INSERT INTO meta (key, value) VALUES ('rebuild_daily', '1');
     CREATE TABLE outputs_v2 (
       evaluation_id BIGINT NOT NULL, path_id BIGINT NOT NULL, error {bool} NOT NULL{cols},
       PRIMARY KEY (evaluation_id, path_id)){clustered};
     INSERT INTO outputs_v2 SELECT * FROM outputs WHERE true ON CONFLICT DO NOTHING;
     DROP TABLE outputs;
     ALTER TABLE outputs_v2 RENAME TO outputs;
     ALTER TABLE evaluations ADD COLUMN aggregated {bool} NOT NULL DEFAULT TRUE;
     CREATE INDEX evaluations_pending ON evaluations (id) WHERE NOT aggregated",
), (
    3,
    // A report's output costs as one packed value (packed.rs): one row per ingest, not 2000.
    // The engines move the rows of `outputs` into it in the same transaction
    // (`pack_outputs`, which drops `outputs`).
    "CREATE TABLE costs (evaluation_id {int} PRIMARY KEY, outputs {blob} NOT NULL)",
), (
    4,
    // One daily row per series and day, its value the aggregates of every metric in
    // `METRICS` order, binary (`encode_aggs`; JSON was most of what was left): an ingest
    // writes a report's 2000 outputs' aggregates as 2000 rows, not 16 000, each in two
    // B-trees (most of an ingest's time, measured). Every
    // evaluation is marked pending and the rows are rebuilt in slices when the store is opened
    // (`finish_migrations`); queries are exact meanwhile, from the pending evaluations' rows.
    "DROP TABLE daily;
     CREATE TABLE daily (
       day {int} NOT NULL, flake TEXT NOT NULL, path TEXT NOT NULL, aggs {blob} NOT NULL,
       PRIMARY KEY (day, flake, path)){clustered};
     CREATE INDEX daily_series ON daily (path, day);
     UPDATE evaluations SET aggregated = FALSE;
     DELETE FROM meta WHERE key = 'rebuild_daily';
     INSERT INTO meta (key, value) VALUES ('rebuild_daily', '1')",
), (
    5,
    // No neutral SQL: PostgreSQL stores the two blob columns as they come, uncompressed
    // (`postgres::BLOBS_AS_IS`); SQLite always did. Compressing each report's packed costs
    // (pglz) was two thirds of PostgreSQL's CPU per ingest, measured.
    "",
)];

/// Version 1, as created: every store starts here and is migrated (`MIGRATIONS`). In the
/// dialect-neutral form of [`sql`].
pub const SCHEMA_V1: &str = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE evaluations (
       id {serial}, digest TEXT NOT NULL UNIQUE, started_at {int} NOT NULL,
       flake TEXT NOT NULL, revision TEXT NOT NULL, command TEXT NOT NULL, mode TEXT NOT NULL,
       hostname TEXT NOT NULL, nix_version TEXT NOT NULL, complete {bool} NOT NULL,
       errors {int} NOT NULL, sample_rate {real} NOT NULL{cols});
     CREATE INDEX evaluations_time ON evaluations (started_at);
     CREATE INDEX evaluations_flake_time ON evaluations (flake, started_at);
     CREATE TABLE paths (id {serial}, path TEXT NOT NULL UNIQUE);
     CREATE TABLE outputs (
       evaluation_id {int} NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
       path_id {int} NOT NULL REFERENCES paths (id), error {bool} NOT NULL{cols});
     CREATE INDEX outputs_path ON outputs (path_id, evaluation_id);
     CREATE INDEX outputs_evaluation ON outputs (evaluation_id);
     CREATE TABLE daily (
       day {int} NOT NULL, flake TEXT NOT NULL, path TEXT NOT NULL, metric TEXT NOT NULL,
       agg TEXT NOT NULL, PRIMARY KEY (day, flake, path, metric)){clustered};
     CREATE INDEX daily_series ON daily (path, metric, day);";

/// Where the two engines' SQL differs: their types, and how a table is clustered by its key.
pub struct Dialect {
    /// An auto-numbered primary key column's type and constraint.
    pub serial: &'static str,
    pub int: &'static str,
    pub boolean: &'static str,
    pub real: &'static str,
    pub blob: &'static str,
    /// After a table's definition: clustered by its primary key, where the engine can.
    pub clustered: &'static str,
}

/// `template` in one engine's dialect: `{serial}`, `{int}`, `{bool}`, `{real}`, `{blob}` its
/// types, `{cols}` the metric columns (`, m_x INT NOT NULL`), `{clustered}` its clustering.
pub fn sql(template: &str, d: &Dialect) -> String {
    let cols: String = (0..METRICS.len()).map(|m| format!(", {} {} NOT NULL", column(m), d.int)).collect();
    template
        .replace("{serial}", d.serial)
        .replace("{int}", d.int)
        .replace("{bool}", d.boolean)
        .replace("{real}", d.real)
        .replace("{blob}", d.blob)
        .replace("{cols}", &cols)
        .replace("{clustered}", d.clustered)
}

/// A store newer than this nix-evalcost: refused, never downgraded.
pub fn too_new(version: i64) -> StoreError {
    StoreError::Other(format!("the store has schema version {version}, newer than this nix-evalcost ({SCHEMA_VERSION}); upgrade nix-evalcost"))
}

/// The columns of an [`EvaluationRow`], in its order.
pub fn evaluation_columns() -> String {
    format!("id, digest, started_at, flake, revision, command, mode, hostname, nix_version, complete, errors, sample_rate, {}", metric_columns())
}

/// One stored evaluation, by its id (without its outputs or document).
#[derive(Clone, Debug, PartialEq)]
pub struct EvaluationRow {
    pub id: i64,
    pub evaluation: Evaluation,
}

/// The most expensive evaluations by one metric: a page of them.
#[derive(Clone, Debug, Default)]
pub struct EvaluationQuery {
    pub metric: usize,
    pub from: i64,
    pub until: i64,
    pub flake: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Metric column of `evaluations` and `outputs`.
pub fn column(metric: usize) -> String {
    format!("m_{}", METRICS[metric].replace('-', "_"))
}

pub fn metric_columns() -> String {
    (0..METRICS.len()).map(column).collect::<Vec<_>>().join(", ")
}

/// The aggregates of one series and day, one per history metric (`METRICS` order).
pub type Aggs = [Agg; 8];

/// A daily series: (UTC day, flake, path).
pub type SeriesKey = (i64, String, String);

/// The layout of a daily row's value (its first byte).
const AGGS_LAYOUT: u8 = 1;

/// A daily row's value as stored: the layout, then each metric's aggregate (`Agg::encode`).
pub fn encode_aggs(aggs: &Aggs) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(AGGS_LAYOUT);
    for agg in aggs {
        agg.encode(&mut out);
    }
    out
}

pub fn decode_aggs(bytes: &[u8]) -> Result<Aggs> {
    let mut r = packed::Reader::new(bytes);
    let unreadable = |e: String| StoreError::Other(format!("a stored daily aggregate is unreadable: {e}"));
    let layout = r.byte().map_err(unreadable)?;
    if layout != AGGS_LAYOUT {
        return Err(unreadable(format!("layout {layout}, this nix-evalcost reads {AGGS_LAYOUT}; upgrade nix-evalcost")));
    }
    let mut aggs = Aggs::default();
    for agg in aggs.iter_mut() {
        *agg = Agg::decode(&mut r).map_err(unreadable)?;
    }
    if r.remaining() != 0 {
        return Err(unreadable(format!("{} bytes after its last aggregate", r.remaining())));
    }
    Ok(aggs)
}

/// The stored daily values of `stored` merged with `added`, encoded for writing back.
pub fn merged_rows(added: std::collections::BTreeMap<SeriesKey, Aggs>, stored: &HashMap<SeriesKey, Vec<u8>>) -> Result<Vec<(SeriesKey, Vec<u8>)>> {
    added
        .into_iter()
        .map(|(key, added)| {
            let mut aggs = match stored.get(&key) {
                Some(bytes) => decode_aggs(bytes)?,
                None => Aggs::default(),
            };
            for (agg, added) in aggs.iter_mut().zip(added.iter()) {
                agg.merge(added);
            }
            Ok((key, encode_aggs(&aggs)))
        })
        .collect()
}

/// The `metric` aggregate of a stored daily row, as the per-metric row queries return.
pub fn daily_row(day: i64, flake: String, path: String, aggs: &[u8], metric: usize) -> Result<DailyRow> {
    let mut aggs = decode_aggs(aggs)?;
    Ok(DailyRow { day, flake, path, metric: METRICS[metric].to_string(), agg: std::mem::take(&mut aggs[metric]) })
}

/// One daily aggregate row.
#[derive(Clone, Debug)]
pub struct DailyRow {
    pub day: i64,
    pub flake: String,
    pub path: String,
    pub metric: String,
    pub agg: Agg,
}

/// One raw sample: an evaluation's total, or an output's cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub started_at: i64,
    pub flake: String,
    pub path: String,
    pub error: bool,
    pub value: i64,
    /// The evaluations this sample stands for: 1 / its report's sample rate.
    pub weight: f64,
}

/// 1 / a report's sample rate (a rate of 0 or less, never stored by the plugin, counts 1).
pub fn weight_of(sample_rate: f64) -> f64 {
    if sample_rate > 0.0 && sample_rate <= 1.0 { 1.0 / sample_rate } else { 1.0 }
}

/// Which rows a query reads. `paths: None`: the whole evaluations; `Some(list)`: those outputs.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub flake: Option<String>,
    pub paths: Option<Vec<String>>,
    pub metric: usize,
    /// Seconds since the epoch, inclusive start and exclusive end.
    pub from: i64,
    pub until: i64,
    /// Only evaluations whose aggregates are not merged into `daily` yet.
    pub pending_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Path ids and names this connection has seen committed (paths are never deleted, and an id
/// never changes): an ingest looks up only paths it has not seen, and a read names the ids of
/// a packed value without asking the database again.
#[derive(Default)]
pub struct PathCache {
    // foldhash, not SipHash: an ingest looks up every output's path here (SipHash was 8% of
    // the SQLite writer's time), and foldhash is seeded per process, so a client cannot aim
    // paths at one bucket.
    ids: foldhash::HashMap<String, i64>,
    names: foldhash::HashMap<i64, String>,
}

impl PathCache {
    /// Only what a committed transaction wrote, or a read saw: a rolled-back id may be reused.
    pub fn learn(&mut self, id: i64, path: String) {
        self.names.insert(id, path.clone());
        self.ids.insert(path, id);
    }

    pub fn id(&self, path: &str) -> Option<i64> {
        self.ids.get(path).copied()
    }

    pub fn name(&self, id: i64) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// The ids of `outputs` this cache cannot name, once each.
    pub fn unnamed(&self, outputs: &[PackedOutput]) -> Vec<i64> {
        let mut missing: Vec<i64> = outputs.iter().map(|o| o.path_id).filter(|id| !self.names.contains_key(id)).collect();
        missing.dedup();
        missing
    }

    /// The outputs of a packed value with their paths (every id named: see [`PathCache::unnamed`]).
    pub fn outputs(&self, packed: Vec<PackedOutput>) -> Result<Vec<Output>> {
        packed
            .into_iter()
            .map(|o| match self.name(o.path_id) {
                Some(path) => Ok(Output { path: path.to_string(), error: o.error, values: o.values }),
                None => Err(StoreError::Other(format!("packed output costs name path id {}, which the store does not hold: the store is damaged", o.path_id))),
            })
            .collect()
    }
}

/// A packed value (packed.rs) as read from the store.
pub fn unpack(bytes: &[u8]) -> Result<Vec<PackedOutput>> {
    packed::decode(bytes).map_err(StoreError::Other)
}

/// `outputs` packed, their paths as ids by `id_of`.
pub fn pack(outputs: &[Output], mut id_of: impl FnMut(&str) -> Result<i64>) -> Result<Vec<u8>> {
    let packed = outputs.iter().map(|o| Ok(PackedOutput { path_id: id_of(&o.path)?, error: o.error, values: o.values })).collect::<Result<Vec<_>>>()?;
    Ok(packed::encode(packed))
}

/// The samples of one evaluation's packed outputs whose ids are in `wanted` (id -> path).
pub fn packed_samples(bytes: &[u8], wanted: &HashMap<i64, String>, metric: usize, started_at: i64, flake: &str, sample_rate: f64, out: &mut Vec<Sample>) -> Result<()> {
    for o in unpack(bytes)? {
        if let Some(path) = wanted.get(&o.path_id) {
            out.push(Sample { started_at, flake: flake.to_string(), path: path.clone(), error: o.error, value: o.values[metric], weight: weight_of(sample_rate) });
        }
    }
    Ok(())
}

/// Evaluations per transaction when a migration rebuilds the daily aggregates.
const REBUILD_SLICE: i64 = 200;

/// Pending evaluations read for a merge: their ids, and each one's evaluation and outputs.
pub type PendingSlice = (Vec<i64>, Vec<(Evaluation, Vec<Output>)>);

/// What an engine does; the store's logic (lib.rs) is written once over it.
pub trait Engine: Send {
    /// Stores the batch in one transaction: evaluations not seen before (by digest), their
    /// outputs, and the daily aggregates merged with theirs, or, when `defer`, marked
    /// pending for [`Engine::aggregate_pending`]. Returns the indices of the new.
    fn ingest(&mut self, batch: &[(Evaluation, Vec<Output>)], defer: bool) -> Result<Vec<usize>>;
    /// Merges the aggregates of at most `limit` pending evaluations into `daily`; returns how
    /// many. Two phases, so that the write lock is held only briefly: the slice is read and
    /// added up holding no lock ([`Engine::pending_slice`]), then one short write transaction
    /// applies it ([`Engine::apply_slice`]). If another merger (a second process) took part of
    /// the slice meanwhile, nothing is applied and the next slice is read again.
    fn aggregate_pending(&mut self, limit: i64) -> Result<usize> {
        loop {
            let (ids, batch) = self.pending_slice(limit)?;
            if ids.is_empty() {
                return Ok(0);
            }
            let added = batch_aggregates(&batch);
            drop(batch);
            if self.apply_slice(&ids, added)? {
                return Ok(ids.len());
            }
        }
    }
    /// Up to `limit` evaluations not yet in the daily aggregates, with their outputs, read in one
    /// snapshot that no writer waits for.
    fn pending_slice(&mut self, limit: i64) -> Result<PendingSlice>;
    /// In one write transaction (one merger at a time), marks `ids` aggregated and merges
    /// `added` into `daily`; false, with nothing changed, if one of them was aggregated already.
    fn apply_slice(&mut self, ids: &[i64], added: std::collections::BTreeMap<SeriesKey, Aggs>) -> Result<bool>;
    fn daily(&mut self, selection: &Selection) -> Result<Vec<DailyRow>>;
    fn samples(&mut self, selection: &Selection) -> Result<Vec<Sample>>;
    /// Every output path stored.
    fn paths(&mut self) -> Result<Vec<String>>;
    /// Every flake stored.
    fn flakes(&mut self) -> Result<Vec<String>>;
    /// Deletes evaluations that started before `day` (a UTC day number) and their aggregates.
    fn delete_before_day(&mut self, day: i64) -> Result<u64>;
    /// Every daily aggregate recomputed from the raw rows (what `daily` must equal).
    fn recompute_daily(&mut self) -> Result<Vec<DailyRow>> {
        let mut all = Vec::new();
        for (m, name) in METRICS.iter().enumerate() {
            let everything = Selection { metric: m, from: i64::MIN / 2, until: i64::MAX / 2, ..Selection::default() };
            all.extend(self.samples(&everything)?.into_iter().map(|s| (s, name.to_string())));
            let outputs = Selection { paths: Some(self.paths()?), ..everything };
            all.extend(self.samples(&outputs)?.into_iter().map(|s| (s, name.to_string())));
        }
        Ok(aggregate_samples(all))
    }
    fn count_evaluations(&mut self) -> Result<i64>;
    /// Whether a migration left the daily aggregates to rebuild.
    fn rebuild_pending(&mut self) -> Result<bool>;
    /// Clears the mark of a rebuild once every evaluation is aggregated.
    fn clear_rebuild_mark(&mut self) -> Result<()>;
    /// Finishes what migrations could not do in SQL: the daily aggregates rebuilt from the
    /// raw rows, a slice of evaluations per transaction (a crash keeps the mark, and the next
    /// open goes on where this one stopped).
    fn finish_migrations(&mut self) -> Result<()> {
        if self.rebuild_pending()? {
            while self.aggregate_pending(REBUILD_SLICE)? > 0 {}
            self.clear_rebuild_mark()?;
        }
        Ok(())
    }
    /// A page of evaluations in the window, most expensive first by the query's metric (ties:
    /// newest first), and how many the window holds.
    fn evaluations(&mut self, query: &EvaluationQuery) -> Result<(i64, Vec<EvaluationRow>)>;
    /// One evaluation and its outputs, by id.
    fn evaluation(&mut self, id: i64) -> Result<Option<(EvaluationRow, Vec<Output>)>>;
    /// One evaluation's report, gzipped JSON as ingested.
    fn document(&mut self, id: i64) -> Result<Option<Vec<u8>>>;
    /// The page cache this connection may keep, in MiB (SQLite; PostgreSQL's is the
    /// server's). A server's pool of readers wants little each.
    fn set_cache_mib(&mut self, _mib: u32) -> Result<()> {
        Ok(())
    }
    /// The Nix version of the latest evaluation stored (empty when none).
    fn latest_nix_version(&mut self) -> Result<String>;
}

/// The aggregates a batch adds, keyed like `daily`: per (day, flake, path) with the metrics
/// side by side. This is the hot loop of an ingest (16 000 samples per 2000-output report),
/// and its cost is memory, not arithmetic: a day's aggregates of one flake take megabytes,
/// and adding report by report missed the cache on every sample (measured). So reports are
/// taken one (day, flake) group at a time, in blocks of [`BLOCK`], and each series gets its
/// block's samples in a row while its aggregates are in cache.
pub fn batch_aggregates<'a>(batch: impl IntoIterator<Item = &'a (Evaluation, Vec<Output>)>) -> std::collections::BTreeMap<SeriesKey, Aggs> {
    const BLOCK: usize = 64;
    let mut by_series: rustc_hash::FxHashMap<(i64, &str, &str), Aggs> = Default::default();
    fn group(e: &Evaluation) -> (i64, &str) {
        (e.started_at.div_euclid(86_400), e.flake.as_str())
    }
    let mut batch: Vec<&(Evaluation, Vec<Output>)> = batch.into_iter().collect();
    batch.sort_by_key(|(e, _)| group(e));
    // Per path: each sample's values, error flag and weight.
    type Samples<'a> = Vec<(&'a [i64; 8], bool, f64)>;
    let mut block: rustc_hash::FxHashMap<&str, Samples> = Default::default();
    for same_group in batch.chunk_by(|(a, _), (b, _)| group(a) == group(b)) {
        let (day, flake) = group(&same_group[0].0);
        for reports in same_group.chunks(BLOCK) {
            for (e, outputs) in reports {
                let weight = weight_of(e.sample_rate);
                block.entry("").or_default().push((&e.values, e.errors > 0, weight));
                for o in outputs {
                    block.entry(o.path.as_str()).or_default().push((&o.values, o.error, weight));
                }
            }
            for (path, samples) in block.drain() {
                let aggs = by_series.entry((day, flake, path)).or_default();
                for (m, agg) in aggs.iter_mut().enumerate() {
                    for (values, error, weight) in &samples {
                        agg.add(values[m], *error, *weight);
                    }
                }
            }
        }
    }
    by_series.into_iter().map(|((day, flake, path), aggs)| ((day, flake.to_string(), path.to_string()), aggs)).collect()
}

/// The aggregates of the evaluations of `batch` that `store` finds new (by index), computed
/// on a second thread while `store` writes the rows: the two halves of an ingest overlap.
/// The batch's aggregates are computed on the guess that every evaluation is new (the usual
/// case) and recomputed when some were not.
pub fn store_and_aggregate<E>(
    batch: &[(Evaluation, Vec<Output>)],
    store: impl FnOnce() -> std::result::Result<Vec<usize>, E>,
) -> std::result::Result<(Vec<usize>, std::collections::BTreeMap<SeriesKey, Aggs>), E> {
    let (fresh, guess) = std::thread::scope(|scope| {
        let guess = scope.spawn(|| batch_aggregates(batch));
        let fresh = store();
        (fresh, guess.join().expect("aggregating does not panic"))
    });
    let fresh = fresh?;
    let aggs = if fresh.len() == batch.len() { guess } else { batch_aggregates(fresh.iter().map(|&i| &batch[i])) };
    Ok((fresh, aggs))
}

/// A pending evaluation as read back for aggregation: what `batch_aggregates` reads of it.
pub fn pending_evaluation(started_at: i64, flake: String, errors: i64, sample_rate: f64, values: [i64; 8]) -> Evaluation {
    Evaluation {
        digest: String::new(),
        started_at,
        flake,
        revision: String::new(),
        command: String::new(),
        mode: String::new(),
        hostname: String::new(),
        nix_version: String::new(),
        complete: true,
        errors,
        sample_rate,
        values,
        document: Vec::new(),
    }
}

/// The (day, flake) groups of a batch's aggregates: an ingest reads each group's stored rows
/// in one query, not one per aggregate.
pub fn groups(aggs: &std::collections::BTreeMap<SeriesKey, Aggs>) -> Vec<(i64, String)> {
    let mut groups: Vec<(i64, String)> = aggs.keys().map(|(d, f, _)| (*d, f.clone())).collect();
    groups.dedup();
    groups
}

/// Daily rows from raw samples (for `recompute_daily`).
pub fn aggregate_samples(samples: impl IntoIterator<Item = (Sample, String)>) -> Vec<DailyRow> {
    let mut aggs: std::collections::BTreeMap<(i64, String, String, String), Agg> = Default::default();
    for (s, metric) in samples {
        aggs.entry((s.started_at.div_euclid(86_400), s.flake, s.path, metric)).or_default().add(s.value, s.error, s.weight);
    }
    aggs.into_iter().map(|((day, flake, path, metric), agg)| DailyRow { day, flake, path, metric, agg }).collect()
}
