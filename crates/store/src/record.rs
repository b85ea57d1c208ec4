//! What the history keeps of one report: the evaluation (process totals, provenance) and each
//! output's exclusive cost, for a fixed set of metrics.

use nix_evalcost_core::attrpath::display_path;

/// A stored path (a JSON array of attribute names; names may hold any character) as its
/// components.
pub fn path_components(stored: &str) -> Vec<String> {
    serde_json::from_str(stored).unwrap_or_default()
}

/// A stored path as users read it (`packages.x86_64-linux.hello`); the whole evaluation is
/// `(evaluation)`.
pub fn display_stored(stored: &str) -> String {
    if stored.is_empty() {
        "(evaluation)".into()
    } else {
        display_path(&path_components(stored))
    }
}
use nix_evalcost_core::metric::{self, Metric};
use nix_evalcost_core::report::Report;
use crate::engine::packed::{self, PackedOutput};
use sha2::{Digest, Sha256};

/// The metrics the history stores, per evaluation and per output (columns of the schema).
pub const METRICS: [&str; 8] = ["wall", "cpu", "thunks", "fncalls", "primops", "lookups", "alloc", "peak-rss"];

/// The metric named `name`, if the history stores it; else an error listing those it does.
pub fn history_metric(name: &str) -> Result<usize, String> {
    METRICS
        .iter()
        .position(|m| *m == name)
        .ok_or_else(|| format!("the history does not keep '{name}'; it keeps: {}", METRICS.join(", ")))
}

pub fn metric(i: usize) -> &'static Metric {
    history_metrics()[i]
}

/// The core metrics the history keeps, looked up once (reading a report asks 16 000 times).
fn history_metrics() -> &'static [&'static Metric; 8] {
    static FOUND: std::sync::OnceLock<[&'static Metric; 8]> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| std::array::from_fn(|i| metric::find(METRICS[i]).expect("history metrics are core metrics")))
}

/// The path of the row that stands for the whole evaluation (process totals).
pub const WHOLE: &str = "";

#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// SHA-256 of the report's JSON: the same report ingested twice is stored once.
    pub digest: String,
    /// Seconds since the epoch, UTC.
    pub started_at: i64,
    pub flake: String,
    pub revision: String,
    pub command: String,
    pub mode: String,
    pub hostname: String,
    pub nix_version: String,
    pub complete: bool,
    pub errors: i64,
    pub sample_rate: f64,
    pub values: [i64; 8],
    /// The report as ingested, gzipped: the board renders its graph and flamegraphs from it.
    pub document: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub path: String,
    pub error: bool,
    pub values: [i64; 8],
}

fn values(f: impl Fn(&Metric) -> u64) -> [i64; 8] {
    std::array::from_fn(|i| f(metric(i)).min(i64::MAX as u64) as i64)
}

/// The flake a report names: the reference as given, else `(no flake)`.
pub fn flake_of(report: &Report) -> String {
    report.meta.flake.as_ref().map_or_else(|| "(no flake)".into(), |f| f.original_ref.clone())
}

/// The history's rows for `report`, whose JSON is `json` (for the digest).
pub fn records(report: &Report, json: &[u8]) -> Result<(Evaluation, Vec<Output>), String> {
    records_with_document(report, json, None)
}

/// Like [`records`], with the report already gzipped by its writer (`gz` inflates to `json`):
/// kept as it came, not compressed again (a third of an ingest's CPU, measured).
pub fn records_with_document(report: &Report, json: &[u8], gz: Option<&[u8]>) -> Result<(Evaluation, Vec<Output>), String> {
    let started_at = parse_rfc3339(&report.meta.started_at)
        .ok_or_else(|| format!("meta.started_at '{}' is not an RFC 3339 time", report.meta.started_at))?;
    let flake = report.meta.flake.as_ref();
    let evaluation = Evaluation {
        digest: hex(&Sha256::digest(json)),
        started_at,
        flake: flake_of(report),
        revision: flake.map(|f| f.nar_hash.clone().unwrap_or_else(|| f.locked_url.clone())).unwrap_or_default(),
        command: if report.meta.command.is_empty() { format!("({})", report.meta.mode) } else { report.meta.command.clone() },
        mode: report.meta.mode.clone(),
        hostname: report.meta.hostname.clone(),
        nix_version: report.meta.nix_version.clone(),
        complete: report.meta.complete,
        errors: report.error_count() as i64,
        sample_rate: report.meta.sample_rate.unwrap_or(1.0),
        values: values(|m| m.value(&report.totals, &report.end, &report.sizes)),
        document: gz.map_or_else(|| gzip(json), <[u8]>::to_vec),
    };
    // A path twice (a damaged or hand-made report) counts once, as the store keeps it. A
    // walk's paths come strictly increasing (its pre-order over sorted names), so no path
    // repeats and no set of them is needed: hashing 2000 paths into one was 5% of the server's
    // CPU per ingest (perf, docs/benchmarks.md).
    let increasing = report.nodes.windows(2).all(|pair| pair[0].path < pair[1].path);
    let mut seen = rustc_hash::FxHashSet::default();
    let outputs = report
        .nodes
        .iter()
        .filter(|n| increasing || seen.insert(&n.path))
        .map(|n| Output {
            path: serde_json::to_string(&n.path).expect("strings serialise"),
            error: n.error.is_some(),
            values: values(|m| m.value(&n.cost, &n.after, &report.sizes)),
        })
        .collect();
    Ok((evaluation, outputs))
}

/// Paths interned across the reports an ingest holds: each path kept once, not once per
/// report.
#[derive(Default)]
pub struct Interner {
    ids: rustc_hash::FxHashMap<String, i64>,
    paths: Vec<String>,
}

/// A report held until it is stored: its outputs packed (`engine::packed`, the path ids this
/// ingest's [`Interner`]'s). `history ingest` validates every report before it stores any,
/// so it holds them all: 2000 outputs take about 40 KB packed, against 300 KB as `Output`s
/// (10 000 such reports held 5 GB, and allocating it was half the ingest's time, measured).
pub struct Held {
    pub evaluation: Evaluation,
    outputs: Vec<u8>,
}

impl Interner {
    fn intern(&mut self, path: String) -> i64 {
        if let Some(&id) = self.ids.get(&path) {
            return id;
        }
        let id = self.paths.len() as i64;
        self.paths.push(path.clone());
        self.ids.insert(path, id);
        id
    }
}

impl Held {
    /// `record` held, its paths interned in `interner` (shared by the threads that parse).
    pub fn hold((evaluation, outputs): (Evaluation, Vec<Output>), interner: &std::sync::Mutex<Interner>) -> Held {
        let mut interner = interner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let packed = outputs.into_iter().map(|o| PackedOutput { path_id: interner.intern(o.path), error: o.error, values: o.values }).collect();
        Held { evaluation, outputs: packed::encode(packed) }
    }

    /// The record again, to store.
    pub fn release(self, interner: &Interner) -> (Evaluation, Vec<Output>) {
        let outputs = packed::decode(&self.outputs)
            .expect("a value packed by `hold` decodes")
            .into_iter()
            .map(|o| Output { path: interner.paths[o.path_id as usize].clone(), error: o.error, values: o.values })
            .collect();
        (self.evaluation, outputs)
    }
}

/// Fast compression: a 2000-output report shrinks about tenfold in a millisecond or two.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 8), flate2::Compression::fast());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the epoch of an RFC 3339 time (`2026-11-24T10:39:28Z`, offsets allowed).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_seconds() {
        assert_eq!(parse_rfc3339("1970-01-02T00:00:00Z"), Some(86_400));
        assert_eq!(parse_rfc3339("1970-01-02T01:00:00+01:00"), Some(86_400));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn held_reports_come_back_whole_with_paths_shared() {
        let output = |path: &str, v: i64| Output { path: path.into(), error: v < 0, values: [v, 1, 2, 3, 4, 5, 6, i64::MAX] };
        let evaluation = |digest: &str| Evaluation {
            digest: digest.into(),
            started_at: 1,
            flake: "f".into(),
            revision: String::new(),
            command: String::new(),
            mode: "walk".into(),
            hostname: String::new(),
            nix_version: String::new(),
            complete: true,
            errors: 0,
            sample_rate: 1.0,
            values: [0; 8],
            document: vec![1, 2, 3],
        };
        let interner = std::sync::Mutex::new(Interner::default());
        let a = (evaluation("a"), vec![output("[\"b\"]", 7), output("[\"a\"]", -1)]);
        let b = (evaluation("b"), vec![output("[\"a\"]", 9), output("[\"c\"]", 0)]);
        let held = [Held::hold(a.clone(), &interner), Held::hold(b.clone(), &interner)];
        let interner = interner.into_inner().unwrap();
        assert_eq!(interner.paths, ["[\"b\"]", "[\"a\"]", "[\"c\"]"], "each path once");
        let [ha, hb] = held;
        assert_eq!(ha.release(&interner), a, "outputs in the order first interned");
        assert_eq!(hb.release(&interner).1, vec![output("[\"a\"]", 9), output("[\"c\"]", 0)], "by interned id: a before c");
    }

    /// A report whose nodes have these paths, each with its wall time.
    fn report_with_paths(paths: &[(&[&str], u64)]) -> Report {
        let nodes: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(i, (path, wall))| serde_json::json!({"id": i, "parent": null, "path": path, "kind": "derivation", "is_derivation": true, "calls": 1, "cost": {"wall_ns": wall}, "after": {}}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "schema": nix_evalcost_core::report::SCHEMA, "schema_version": nix_evalcost_core::report::SCHEMA_VERSION,
            "meta": {"tool_version": "0", "nix_version": "2.26.3", "mode": "walk", "started_at": "2026-12-01T00:00:00Z"},
            "sizes": {"value": 24, "env": 8, "bindings": 16, "attr": 16, "pointer": 8},
            "totals": {}, "unattributed": {}, "end": {}, "phases": [], "nodes": nodes
        }))
        .unwrap()
    }

    #[test]
    fn a_path_twice_counts_once_in_any_order() {
        let paths = |r: &Report| records(r, b"{}").unwrap().1.into_iter().map(|o| (o.path, o.values[0])).collect::<Vec<_>>();
        let walk = report_with_paths(&[(&["a"], 1), (&["a", "b"], 2), (&["a", "c"], 3), (&["b"], 4)]);
        assert_eq!(paths(&walk).len(), 4, "a walk's increasing paths: all kept");
        let damaged = report_with_paths(&[(&["a"], 1), (&["b"], 2), (&["a"], 3), (&["b"], 4), (&["c"], 5)]);
        assert_eq!(paths(&damaged), [("[\"a\"]".into(), 1), ("[\"b\"]".into(), 2), ("[\"c\"]".into(), 5)], "the first of each path");
        let adjacent = report_with_paths(&[(&["a"], 1), (&["a"], 2)]);
        assert_eq!(paths(&adjacent), [("[\"a\"]".into(), 1)], "equal neighbours are not increasing");
    }

    #[test]
    fn unknown_metrics_are_named_with_the_known_ones() {
        assert_eq!(history_metric("peak-rss"), Ok(7));
        assert!(history_metric("envs").unwrap_err().contains("wall, cpu"));
    }
}
