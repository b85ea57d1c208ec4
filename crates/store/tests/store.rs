//! The history store on both engines: SQLite (a temporary file) and PostgreSQL (a private
//! server started by the tests, `pg/mod.rs`). Every test runs on both.

mod pg;

use nix_evalcost_core::cost::{Cost, Gauges, Sizes};
use nix_evalcost_core::pathglob::PathGlob;
use nix_evalcost_core::report::{FlakeMeta, Kind, Meta, Node, Report, SCHEMA, SCHEMA_VERSION};
use nix_evalcost_store::alerts::{self, Rule};
use nix_evalcost_store::calendar::Bucket;
use nix_evalcost_store::engine::{EvaluationQuery, Selection};
use nix_evalcost_store::record::{self, history_metric, Evaluation, Output};
use nix_evalcost_store::{Location, PredictQuery, ShowQuery, Store};

/// A report started at `t` (seconds since the epoch) of `flake`, with outputs (path, calls).
fn report(t: i64, flake: &str, outputs: &[(&str, u64)], peak_rss: u64) -> Report {
    let nodes: Vec<Node> = outputs
        .iter()
        .enumerate()
        .map(|(i, (path, calls))| Node {
            id: i as u32,
            parent: None,
            path: path.split('.').map(str::to_string).collect(),
            kind: Kind::Derivation,
            is_derivation: true,
            drv_path: None,
            system: None,
            error: None,
            calls: 1,
            cost: Cost { function_calls: *calls, wall_ns: calls * 1000, ..Cost::default() },
            after: Gauges { peak_rss_bytes: peak_rss, rss_bytes: peak_rss, gc_heap_bytes: 0 },
        })
        .collect();
    let mut totals = Cost { function_calls: 5, wall_ns: 5000, ..Cost::default() };
    for n in &nodes {
        totals.add(&n.cost);
    }
    let started = time::OffsetDateTime::from_unix_timestamp(t).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
    Report {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        meta: Meta {
            mode: "walk".into(),
            flake: Some(FlakeMeta { original_ref: flake.into(), locked_url: flake.into(), ..FlakeMeta::default() }),
            started_at: started,
            complete: true,
            hostname: "h".into(),
            ..Meta::default()
        },
        sizes: Sizes { value: 24, env: 16, bindings: 16, attr: 16, pointer: 8 },
        totals,
        unattributed: Cost { function_calls: 5, wall_ns: 5000, ..Cost::default() },
        end: Gauges { peak_rss_bytes: peak_rss, rss_bytes: peak_rss, gc_heap_bytes: 0 },
        phases: vec![],
        nodes,
        stacks: None,
        isolated: Vec::new(),
    }
}

fn rows(r: &Report) -> (Evaluation, Vec<Output>) {
    let json = serde_json::to_vec(r).unwrap();
    record::records(r, &json).unwrap()
}

const DAY: i64 = 86_400;
/// 2026-01-30T00:00:00Z: month boundaries are two days away.
const T0: i64 = 1_769_731_200;

/// Runs `test` on a fresh SQLite store and a fresh PostgreSQL database.
fn on_both_engines(test: impl Fn(&Location)) {
    let dir = tempfile::tempdir().unwrap();
    test(&Location::Sqlite(dir.path().join("history.sqlite")));
    test(&Location::parse(&pg::server().database()));
}

fn whole(metric: &str, from: i64, until: i64) -> Selection {
    Selection { metric: history_metric(metric).unwrap(), from, until, ..Selection::default() }
}

#[test]
fn ingesting_the_same_report_twice_stores_it_once() {
    on_both_engines(|db| {
        let mut store = Store::open(db).unwrap();
        let r = rows(&report(T0, "f", &[("packages.a", 10), ("packages.b", 20)], 100));
        assert_eq!(store.ingest(std::slice::from_ref(&r)).unwrap(), 1);
        assert_eq!(store.ingest(&[r.clone(), r.clone()]).unwrap(), 0);
        assert_eq!(store.engine().count_evaluations().unwrap(), 1);
        let daily = store.engine().daily(&whole("fncalls", T0, T0 + DAY)).unwrap();
        assert_eq!(daily.len(), 1);
        assert_eq!((daily[0].agg.n, daily[0].agg.sum), (1, 35));
        // Reopening migrates nothing and keeps everything.
        drop(store);
        let mut store = Store::open(db).unwrap();
        assert_eq!(store.engine().count_evaluations().unwrap(), 1);
        // A new report given twice in one batch: its first copy is the new one.
        let other = rows(&report(T0 + 60, "f", &[("packages.c", 5), ("packages.a", 1)], 100));
        let marks = store.ingest_deferred(&[r.clone(), other.clone(), other.clone()]).unwrap();
        assert_eq!(marks, vec![false, true, false]);
        assert_eq!(store.engine().count_evaluations().unwrap(), 2);
        let (_, page) = store.engine().evaluations(&EvaluationQuery { from: 0, until: i64::MAX / 4, limit: 10, ..Default::default() }).unwrap();
        let id = page.iter().find(|row| row.evaluation.digest == other.0.digest).expect("the new report is listed").id;
        let (_, outputs) = store.engine().evaluation(id).unwrap().unwrap();
        assert_eq!(outputs.iter().map(|o| o.path.as_str()).collect::<Vec<_>>(), [r#"["packages","a"]"#, r#"["packages","c"]"#]);
        assert!(store.engine().document(id).unwrap().is_some());
    });
}

#[test]
fn concurrent_ingests_lose_nothing() {
    on_both_engines(|db| {
        Store::open(db).unwrap(); // the schema, once
        let threads: Vec<_> = (0..4)
            .map(|w| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let mut store = Store::open(&db).unwrap();
                    for i in 0..25 {
                        let r = rows(&report(T0 + (w * 100 + i) as i64, "f", &[("packages.a", 10 + i as u64)], 100));
                        store.ingest(&[r]).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut store = Store::open(db).unwrap();
        assert_eq!(store.engine().count_evaluations().unwrap(), 100);
        let daily = store.engine().daily(&whole("fncalls", T0, T0 + DAY)).unwrap();
        assert_eq!(daily[0].agg.n, 100, "the daily aggregate saw every insert");
    });
}

#[test]
fn concurrent_mergers_add_every_evaluation_once() {
    // A server's merger and a `history ingest` in another process may merge at the same time:
    // each slice is added up outside the lock, so two may read the same one; only one applies it.
    on_both_engines(|db| {
        let mut store = Store::open(db).unwrap();
        let batch: Vec<_> = (0..120i64).map(|i| rows(&report(T0 + i * 60, "f", &[("packages.a", 10 + i as u64)], 100))).collect();
        assert_eq!(store.ingest_deferred(&batch).unwrap().len(), 120);
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let mut store = Store::open(&db).unwrap();
                    let mut merged = 0;
                    loop {
                        match store.aggregate_pending(7).unwrap() {
                            0 => return merged,
                            n => merged += n,
                        }
                    }
                })
            })
            .collect();
        let merged: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(merged, 120, "every evaluation merged by exactly one merger");
        let daily = store.engine().daily(&whole("fncalls", T0, T0 + DAY)).unwrap();
        assert_eq!(daily[0].agg.n, 120);
        let fresh = store.engine().recompute_daily().unwrap();
        let fncalls: Vec<_> = fresh.iter().filter(|r| r.metric == "fncalls" && r.path.is_empty()).collect();
        assert_eq!(fncalls[0].agg.fingerprint(), daily[0].agg.fingerprint());
    });
}

#[test]
fn daily_aggregates_equal_a_full_recomputation() {
    on_both_engines(|db| {
        let mut store = Store::open(db).unwrap();
        let mut batch = Vec::new();
        for i in 0..60i64 {
            let flake = if i % 3 == 0 { "a" } else { "b" };
            let outputs = [("packages.x", 100 + (i * 37 % 50) as u64), ("packages.y", 7 * i as u64 + 1)];
            let mut r = report(T0 + i * 7 * 3600, flake, &outputs, 1000 + i as u64 * 10);
            if i % 4 == 0 {
                r.meta.sample_rate = Some(0.25); // a passive report standing for 4 evaluations
            }
            batch.push(rows(&r));
        }
        // In two ingests, one of them overlapping the other.
        store.ingest(&batch[..40]).unwrap();
        store.ingest(&batch[30..]).unwrap();
        let mut kept: Vec<_> = Vec::new();
        for m in record::METRICS {
            let everything = Selection { metric: history_metric(m).unwrap(), from: 0, until: i64::MAX / 4, flake: None, paths: None, pending_only: false };
            kept.extend(store.engine().daily(&everything).unwrap());
            let outputs = Selection { paths: Some(store.engine().paths().unwrap()), ..everything };
            kept.extend(store.engine().daily(&outputs).unwrap());
        }
        let fresh = store.engine().recompute_daily().unwrap();
        let key = |r: &nix_evalcost_store::engine::DailyRow| (r.day, r.flake.clone(), r.path.clone(), r.metric.clone());
        let mut kept: Vec<_> = kept.iter().map(|r| (key(r), r.agg.fingerprint())).collect();
        let mut fresh: Vec<_> = fresh.iter().map(|r| (key(r), r.agg.fingerprint())).collect();
        kept.sort();
        fresh.sort();
        let mut day_flakes: Vec<(i64, String)> = batch.iter().map(|(e, _)| (e.started_at.div_euclid(DAY), e.flake.clone())).collect();
        day_flakes.sort();
        day_flakes.dedup();
        assert_eq!(kept.len(), day_flakes.len() * 3 * 8, "(day, flake) x (whole, x, y) x metrics");
        assert_eq!(kept, fresh);
        // 15 reports sampled at 1/4 stand for 60 evaluations, the other 45 for themselves.
        let wall = store.engine().daily(&whole("wall", 0, i64::MAX / 4)).unwrap();
        let (n, estimated) = wall.iter().fold((0, 0.0), |(n, e), r| (n + r.agg.n, e + r.agg.estimated));
        assert_eq!((n, estimated), (60, 105.0));
    });
}

#[test]
fn buckets_across_month_boundaries_in_utc() {
    on_both_engines(|db| {
        let mut store = Store::open(db).unwrap();
        // One evaluation a day from Jan 30 to Feb 2, 23:30 UTC each (a local time zone east of
        // UTC would put them on the next day).
        let batch: Vec<_> = (0..4).map(|d| rows(&report(T0 + d * DAY + 23 * 3600 + 1800, "f", &[("packages.a", 10 * (d as u64 + 1))], 1))).collect();
        store.ingest(&batch).unwrap();
        let q = |bucket| ShowQuery { bucket, from: T0, until: T0 + 10 * DAY, flake: None, glob: None, output: None, metric: history_metric("fncalls").unwrap() };
        let months = store.show(&q(Bucket::Month)).unwrap();
        assert_eq!(months.len(), 2);
        assert_eq!(months[0].start, T0 - 29 * DAY, "January 1");
        assert_eq!((months[0].agg.n, months[1].agg.n), (2, 2));
        assert_eq!(months[1].agg.sum, (30 + 5) + (40 + 5));
        let days = store.show(&q(Bucket::Day)).unwrap();
        assert_eq!(days.iter().map(|r| r.start).collect::<Vec<_>>(), (0..4).map(|d| T0 + d * DAY).collect::<Vec<_>>());
        let hours = store.show(&q(Bucket::Hour)).unwrap();
        assert_eq!(hours.len(), 4);
        assert_eq!(hours[0].start, T0 + 23 * 3600);
        // Per output, by glob.
        let mut per_output = q(Bucket::Month);
        per_output.glob = Some(PathGlob::parse("packages.*").unwrap());
        let rows = store.show(&per_output).unwrap();
        assert_eq!(rows.iter().map(|r| record::display_stored(&r.path)).collect::<Vec<_>>(), ["packages.a", "packages.a"]);
        assert_eq!(rows[0].agg.quantile(0.5), Some(10), "p50 of January's [10, 20] (nearest rank within 1%)");
    });
}

#[test]
fn retention_removes_whole_days() {
    on_both_engines(|db| {
        let mut store = Store::open(db).unwrap();
        let batch: Vec<_> = (0..10).map(|d| rows(&report(T0 + d * DAY + 60, "f", &[("packages.a", 1)], 1))).collect();
        store.ingest(&batch).unwrap();
        let now = T0 + 9 * DAY + 3600;
        assert_eq!(store.clean(3, now).unwrap(), 6, "days 0..5 go; 6, 7, 8, 9 stay");
        assert_eq!(store.engine().count_evaluations().unwrap(), 4);
        let daily = store.engine().daily(&whole("fncalls", 0, now + DAY)).unwrap();
        assert_eq!(daily.len(), 4);
        assert_eq!(store.engine().recompute_daily().unwrap().len(), 4 * 8 * 2);
        assert_eq!(raw_count(db, "SELECT count(*) FROM costs"), 4, "the retired evaluations' outputs go with them");
        assert_eq!(raw_count(db, "SELECT count(*) FROM documents"), 4);
    });
}

fn raw_count(db: &Location, sql: &str) -> i64 {
    match db {
        Location::Sqlite(path) => rusqlite::Connection::open(path).unwrap().query_row(sql, [], |r| r.get(0)).unwrap(),
        Location::Postgres(url) => postgres::Client::connect(url, postgres::NoTls).unwrap().query_one(sql, &[]).unwrap().get(0),
    }
}

#[test]
fn predictions_are_exact_quantiles_of_the_window() {
    on_both_engines(|db| {
        let mut store = Store::open(db).unwrap();
        // peak RSS 1..=20 MiB over 20 hours in flake a; one old huge value outside the window.
        let mut batch: Vec<_> = (1..=20).map(|i| rows(&report(T0 + i * 3600, "a", &[("packages.x", 1)], (i as u64) << 20))).collect();
        batch.push(rows(&report(T0 - 30 * DAY, "a", &[("packages.x", 1)], 1 << 40)));
        batch.push(rows(&report(T0 + 3600, "b", &[("packages.x", 1)], 7)));
        store.ingest(&batch).unwrap();
        let q = PredictQuery { metric: history_metric("peak-rss").unwrap(), quantile: 0.95, window: 7 * DAY, now: T0 + 21 * 3600, flake: None, per_output: false };
        let p = store.predict(&q).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].flake.as_str(), p[0].n, p[0].value, p[0].max), ("a", 20, 19 << 20, 20 << 20), "nearest rank: the 19th of 20");
        assert_eq!((p[1].flake.as_str(), p[1].value), ("b", 7));
        let per_output = store.predict(&PredictQuery { per_output: true, flake: Some("a".into()), ..q }).unwrap();
        assert_eq!(per_output.len(), 1);
        assert_eq!(per_output[0].output.as_deref().map(record::display_stored).as_deref(), Some("packages.x"));
    });
}

#[test]
fn drift_alerts_on_stored_series() {
    on_both_engines(|db| {
        let mut store = Store::open(db).unwrap();
        let calls = [100, 102, 98, 101, 99, 100, 150];
        let batch: Vec<_> = calls.iter().enumerate().map(|(i, &c)| rows(&report(T0 + i as i64 * 3600, "f", &[("packages.a", c), ("packages.b", 50)], 1))).collect();
        store.ingest(&batch).unwrap();
        let now = T0 + 7 * 3600;
        let rule = Rule::parse("packages.*:fncalls outside median(1d) 10%").unwrap();
        let paths: Vec<String> = store.engine().paths().unwrap();
        let samples = store.engine().samples(&Selection { paths: Some(paths), metric: rule.metric, from: now - rule.lookback() - 1, until: now + 1, flake: None, pending_only: false }).unwrap();
        let mut fired = Vec::new();
        for path in ["[\"packages\",\"a\"]", "[\"packages\",\"b\"]"] {
            let mut series: Vec<_> = samples.iter().filter(|s| s.path == path).cloned().collect();
            series.sort_by_key(|s| s.started_at);
            fired.extend(alerts::evaluate(&rule, "f", Some(path), &series, now));
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!((fired[0].value, fired[0].baseline), (150.0, 100.0));
    });
}

/// Runs SQL on the store behind `db` with the engine's own client (for the migration test).
fn raw_sql(db: &Location, sql: &str) {
    match db {
        Location::Sqlite(path) => rusqlite::Connection::open(path).unwrap().execute_batch(sql).unwrap(),
        Location::Postgres(url) => postgres::Client::connect(url, postgres::NoTls).unwrap().batch_execute(sql).unwrap(),
    }
}

/// SQL that puts back what versions 1 and 2 stored of outputs: one row per output, here
/// the outputs of evaluation 1 (`outputs`, its paths already stored with ids 1, 2, ...).
fn output_rows_sql(outputs: &[Output]) -> String {
    let columns: String = record::METRICS.iter().map(|m| format!(", m_{} BIGINT NOT NULL", m.replace('-', "_"))).collect();
    let mut sql = format!("DROP TABLE costs; CREATE TABLE outputs (evaluation_id BIGINT NOT NULL, path_id BIGINT NOT NULL, error BOOLEAN NOT NULL{columns});");
    for (i, o) in outputs.iter().enumerate() {
        let values: String = o.values.iter().map(|v| format!(", {v}")).collect();
        sql += &format!("INSERT INTO outputs VALUES (1, {}, {}{values});", i + 1, o.error);
    }
    sql
}

/// PostgreSQL: how many of the two blob columns (packed costs, gzipped reports) are stored
/// uncompressed (`STORAGE EXTERNAL`).
fn uncompressed_blob_columns(db: &Location) -> i64 {
    raw_count(
        db,
        "SELECT count(*) FROM pg_attribute WHERE attstorage = 'e' AND
           ((attrelid = 'costs'::regclass AND attname = 'outputs') OR (attrelid = 'documents'::regclass AND attname = 'report'))",
    )
}

#[test]
fn postgresql_stores_packed_costs_uncompressed() {
    let db = Location::parse(&pg::server().database());
    let mut store = Store::open(&db).unwrap();
    assert_eq!(uncompressed_blob_columns(&db), 2, "a fresh store is migrated to version 5 too");
    // Costs that pglz would halve (the same output 400 times over): stored as they come.
    let outputs: Vec<(String, u64)> = (0..400).map(|i| (format!("packages.p{i:03}"), 1000)).collect();
    let named: Vec<(&str, u64)> = outputs.iter().map(|(p, v)| (p.as_str(), *v)).collect();
    store.ingest(&[rows(&report(T0, "f", &named, 1000))]).unwrap();
    let stored = raw_count(&db, "SELECT pg_column_size(outputs)::bigint - length(outputs)::bigint FROM costs");
    assert!(stored >= 0, "a packed value is stored uncompressed ({stored} bytes under its length)");
    let (_, read) = store.engine().evaluation(1).unwrap().unwrap();
    assert_eq!(read.len(), 400, "and read back whole");
}

#[test]
fn a_version_1_store_is_migrated_and_a_newer_one_refused() {
    on_both_engines(|db| {
        let mut store = Store::open(db).unwrap();
        let first = rows(&report(T0, "a", &[("packages.x", 10), ("packages.y", 20)], 1000));
        store.ingest(std::slice::from_ref(&first)).unwrap();
        drop(store);
        // Back to what version 1 wrote: no documents, no pending aggregates, aggregates in
        // another encoding and one row per metric, and outputs as rows.
        raw_sql(db, &format!("DROP TABLE documents; DROP INDEX evaluations_pending; ALTER TABLE evaluations DROP COLUMN aggregated;
                     UPDATE meta SET value = '1' WHERE key = 'schema_version';
                     DROP TABLE daily;
                     CREATE TABLE daily (day BIGINT NOT NULL, flake TEXT NOT NULL, path TEXT NOT NULL, metric TEXT NOT NULL, agg TEXT NOT NULL,
                       PRIMARY KEY (day, flake, path, metric));
                     CREATE INDEX daily_series ON daily (path, metric, day);
                     INSERT INTO daily VALUES (1, 'a', '', 'wall', '{{\"n\": 1, \"sketch\": {{\"config\": {{}}}}}}'); {}", output_rows_sql(&first.1)));
        let mut store = Store::open(db).unwrap();
        assert_eq!(store.engine().count_evaluations().unwrap(), 1, "the migration keeps what was stored");
        let wall = store.engine().daily(&whole("wall", 0, i64::MAX / 4)).unwrap();
        assert_eq!((wall.len(), wall[0].agg.n, wall[0].agg.sum), (1, 1, 35_000), "aggregates rebuilt from the raw rows");
        assert!(!store.engine().rebuild_pending().unwrap());
        let (_, outputs) = store.engine().evaluation(1).unwrap().unwrap();
        assert_eq!(outputs, first.1, "the output rows, packed by migration 3");
        assert_eq!(raw_count(db, "SELECT count(*) FROM costs"), 1);
        let new = rows(&report(T0 + 60, "a", &[("packages.x", 110)], 1000));
        store.ingest(&[new]).unwrap();
        let (_, page) = store.engine().evaluations(&EvaluationQuery { metric: 3, from: 0, until: i64::MAX / 4, limit: 10, ..Default::default() }).unwrap();
        assert_eq!(page.len(), 2);
        assert!(store.engine().document(page[0].id).unwrap().is_some(), "version 2 keeps documents");
        assert!(store.engine().document(page[1].id).unwrap().is_none(), "stored under version 1: none");
        assert_eq!(raw_count(db, "SELECT count(*) FROM meta WHERE key = 'schema_version' AND value = '5'"), 1);
        if let Location::Postgres(_) = db {
            assert_eq!(uncompressed_blob_columns(db), 2, "migration 5 stores both blob columns as they come");
        }
        drop(store);
        raw_sql(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version';");
        let err = Store::open(db).err().expect("a newer store is refused").to_string();
        assert!(err.contains("schema version 99") && err.contains("upgrade nix-evalcost"), "{err}");
    });
}

#[test]
fn evaluations_page_by_metric_and_keep_their_outputs_and_report() {
    on_both_engines(|db| {
        let mut store = Store::open(db).unwrap();
        let batch: Vec<_> = (0..7i64).map(|i| rows(&report(T0 + i * 60, if i % 2 == 0 { "a" } else { "b" }, &[("packages.x", 10 * i as u64), ("packages.y", 3)], 1000))).collect();
        store.ingest(&batch).unwrap();
        let fncalls = history_metric("fncalls").unwrap();
        let q = EvaluationQuery { metric: fncalls, from: 0, until: i64::MAX / 4, limit: 3, offset: 0, flake: None };
        let (total, first) = store.engine().evaluations(&q).unwrap();
        assert_eq!(total, 7);
        // Totals are 5 + 10i + 3: the most expensive is i = 6.
        assert_eq!(first.iter().map(|e| e.evaluation.values[fncalls]).collect::<Vec<_>>(), [68, 58, 48]);
        let (_, second) = store.engine().evaluations(&EvaluationQuery { offset: 3, ..q.clone() }).unwrap();
        assert_eq!(second.iter().map(|e| e.evaluation.values[fncalls]).collect::<Vec<_>>(), [38, 28, 18]);
        let (total_a, _) = store.engine().evaluations(&EvaluationQuery { flake: Some("a".into()), ..q.clone() }).unwrap();
        assert_eq!(total_a, 4);
        let (row, outputs) = store.engine().evaluation(first[0].id).unwrap().unwrap();
        assert_eq!((row.evaluation.flake.as_str(), outputs.len(), outputs[0].values[fncalls]), ("a", 2, 60));
        let gz = store.engine().document(first[0].id).unwrap().unwrap();
        let mut json = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut json).unwrap();
        assert_eq!(json, serde_json::to_vec(&report(T0 + 6 * 60, "a", &[("packages.x", 60), ("packages.y", 3)], 1000)).unwrap(), "the report as ingested");
        assert!(store.engine().evaluation(999_999).unwrap().is_none());
    });
}

#[test]
fn deferred_aggregates_are_counted_before_and_after_they_are_merged() {
    on_both_engines(|db| {
        let batch: Vec<_> = (0..30i64).map(|i| rows(&report(T0 + i * 5 * 3600, "a", &[("packages.x", 100 + i as u64), ("packages.y", 7)], 1000))).collect();
        let show = |store: &mut Store| {
            let q = ShowQuery { bucket: Bucket::Day, from: T0, until: T0 + 10 * DAY, flake: None, glob: Some(PathGlob::parse("packages.*").unwrap()), output: None, metric: history_metric("fncalls").unwrap() };
            store.show(&q).unwrap().iter().map(|r| (r.start, r.path.clone(), r.agg.fingerprint())).collect::<Vec<_>>()
        };
        let mut store = Store::open(db).unwrap();
        store.ingest_deferred(&batch[..20]).unwrap();
        store.ingest(&batch[20..]).unwrap();
        let before = show(&mut store);
        assert!(store.engine().daily(&whole("fncalls", 0, i64::MAX / 4)).unwrap().iter().map(|r| r.agg.n).sum::<i64>() == 10, "20 pending, 10 merged");
        assert_eq!(store.aggregate_pending(7).unwrap(), 20, "in slices of 7");
        assert_eq!(store.aggregate_pending(7).unwrap(), 0);
        assert_eq!(show(&mut store), before, "the same answer from raw pending rows as from merged aggregates");
        assert_eq!(before.iter().map(|(_, _, f)| f.0).sum::<i64>(), 60, "30 evaluations x 2 outputs");
        let fresh = store.engine().recompute_daily().unwrap();
        let mut kept = Vec::new();
        for m in record::METRICS {
            let everything = Selection { metric: history_metric(m).unwrap(), from: 0, until: i64::MAX / 4, ..Selection::default() };
            kept.extend(store.engine().daily(&everything).unwrap());
            let paths = store.engine().paths().unwrap();
            kept.extend(store.engine().daily(&Selection { paths: Some(paths), ..everything }).unwrap());
        }
        let key = |r: &nix_evalcost_store::engine::DailyRow| (r.day, r.flake.clone(), r.path.clone(), r.metric.clone(), r.agg.fingerprint());
        let (mut kept, mut fresh): (Vec<_>, Vec<_>) = (kept.iter().map(key).collect(), fresh.iter().map(key).collect());
        kept.sort();
        fresh.sort();
        assert_eq!(kept, fresh);
    });
}
