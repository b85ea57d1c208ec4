//! PostgreSQL: one store for a fleet of CI machines. Ingests take a transaction-scoped
//! advisory lock, so concurrent ingests from many machines serialise their daily-aggregate
//! updates and lose nothing; readers never wait.

use super::{
    batch_aggregates, column, groups, sql, Dialect, SCHEMA_V1, pending_evaluation, store_and_aggregate, evaluation_columns, metric_columns, too_new, weight_of, DailyRow, Engine, EvaluationQuery, EvaluationRow, Result, Sample, Selection,
    StoreError, MIGRATIONS, SCHEMA_VERSION,
};
use crate::agg::Agg;
use crate::record::{Evaluation, Output, METRICS};
use postgres::types::ToSql;
use postgres::{Client, NoTls};
use std::collections::HashMap;

pub struct Postgres {
    client: Client,
    /// Path ids seen in committed transactions (paths are never deleted): an ingest looks up
    /// only paths it has not seen, not a report's 2000 every time.
    path_ids: HashMap<String, i64>,
}

/// The advisory lock key of ingests and migrations ("evalcost" in ASCII).
const LOCK: i64 = 0x6576_616c_636f_7374;

const DIALECT: Dialect = Dialect { serial: "BIGSERIAL PRIMARY KEY", int: "BIGINT", boolean: "BOOLEAN", real: "DOUBLE PRECISION", blob: "BYTEA", clustered: "" };

impl Postgres {
    pub fn connect(url: &str) -> Result<Postgres> {
        let mut client = Client::connect(url, NoTls)?;
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
        let has_meta: bool = tx.query_one("SELECT to_regclass('meta') IS NOT NULL", &[])?.get(0);
        if !has_meta {
            tx.batch_execute(&sql(SCHEMA_V1, &DIALECT))?;
            tx.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')", &[])?;
        }
        let version: String = tx.query_one("SELECT value FROM meta WHERE key = 'schema_version'", &[])?.get(0);
        let version: i64 = version.parse().unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(too_new(version));
        }
        for (to, step) in MIGRATIONS.iter().filter(|(to, _)| *to > version) {
            tx.batch_execute(&sql(step, &DIALECT))?;
            tx.execute("UPDATE meta SET value = $1 WHERE key = 'schema_version'", &[&to.to_string()])?;
        }
        tx.commit()?;
        let mut postgres = Postgres { client, path_ids: HashMap::new() };
        postgres.finish_migrations()?;
        Ok(postgres)
    }
}

/// The evaluations of `batch` not stored yet, with their documents and outputs; returns their
/// indices in `batch`.
/// Returns the indices of the new evaluations, and the path ids this transaction learned
/// (to be remembered once it commits).
fn insert_rows(
    tx: &mut postgres::Transaction,
    batch: &[(Evaluation, Vec<Output>)],
    aggregated: bool,
    known: &HashMap<String, i64>,
) -> Result<(Vec<usize>, HashMap<String, i64>)> {
    let placeholders = (0..METRICS.len()).map(|i| format!("${}", i + 12)).collect::<Vec<_>>().join(", ");
    let insert_eval = tx.prepare(&format!(
        "INSERT INTO evaluations (digest, started_at, flake, revision, command, mode, hostname, nix_version, complete, errors, sample_rate, {}, aggregated)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, {placeholders}, $20) ON CONFLICT (digest) DO NOTHING RETURNING id",
        metric_columns()
    ))?;
    let arrays = (0..METRICS.len()).map(|i| format!("${}::bigint[]", i + 4)).collect::<Vec<_>>().join(", ");
    let insert_outputs = tx.prepare(&format!(
        "INSERT INTO outputs (evaluation_id, path_id, error, {}) SELECT $1, * FROM unnest($2::bigint[], $3::bool[], {arrays}) ON CONFLICT DO NOTHING",
        metric_columns()
    ))?;
    let insert_document = tx.prepare("INSERT INTO documents (evaluation_id, report) VALUES ($1, $2)")?;
    let mut path_ids: HashMap<String, i64> = HashMap::new();
    let id_of = |path: &str, learned: &HashMap<String, i64>| known.get(path).or_else(|| learned.get(path)).copied();
    let mut fresh = Vec::new();
    for (i, (e, outputs)) in batch.iter().enumerate() {
        let mut p: Vec<&(dyn ToSql + Sync)> = vec![
            &e.digest, &e.started_at, &e.flake, &e.revision, &e.command, &e.mode, &e.hostname, &e.nix_version, &e.complete, &e.errors, &e.sample_rate,
        ];
        p.extend(e.values.iter().map(|v| v as &(dyn ToSql + Sync)));
        p.push(&aggregated);
        let Some(row) = tx.query_opt(&insert_eval, &p)? else { continue };
        let id: i64 = row.get(0);
        tx.execute(&insert_document, &[&id, &e.document])?;
        let unknown: Vec<&str> = outputs.iter().map(|o| o.path.as_str()).filter(|p| id_of(p, &path_ids).is_none()).collect();
        if !unknown.is_empty() {
            tx.execute("INSERT INTO paths (path) SELECT unnest($1::text[]) ON CONFLICT (path) DO NOTHING", &[&unknown])?;
            for r in tx.query("SELECT id, path FROM paths WHERE path = ANY($1)", &[&unknown])? {
                path_ids.insert(r.get(1), r.get(0));
            }
        }
        let ids: Vec<i64> = outputs.iter().map(|o| id_of(&o.path, &path_ids).expect("every path was looked up")).collect();
        let errors: Vec<bool> = outputs.iter().map(|o| o.error).collect();
        let columns: Vec<Vec<i64>> = (0..METRICS.len()).map(|m| outputs.iter().map(|o| o.values[m]).collect()).collect();
        let mut p: Vec<&(dyn ToSql + Sync)> = vec![&id, &ids, &errors];
        p.extend(columns.iter().map(|c| c as &(dyn ToSql + Sync)));
        tx.execute(&insert_outputs, &p)?;
        fresh.push(i);
    }
    Ok((fresh, path_ids))
}

/// Merges `added` into the stored daily aggregates: each (day, flake) group read in one query,
/// all written in one statement. The caller holds the advisory lock.
fn merge_daily(tx: &mut postgres::Transaction, added: std::collections::BTreeMap<(i64, String, String, String), Agg>) -> Result<()> {
    let mut stored: HashMap<(i64, String, String, String), String> = HashMap::new();
    for (day, flake) in groups(&added) {
        for r in tx.query("SELECT path, metric, agg FROM daily WHERE day = $1 AND flake = $2", &[&day, &flake])? {
            stored.insert((day, flake.clone(), r.get(0), r.get(1)), r.get(2));
        }
    }
    let mut rows: (Vec<i64>, Vec<String>, Vec<String>, Vec<String>, Vec<String>) = Default::default();
    for (key, added) in added {
        let mut agg = match stored.get(&key) {
            Some(json) => Agg::from_json(json).map_err(StoreError::Other)?,
            None => Agg::default(),
        };
        agg.merge(&added);
        let (day, flake, path, metric) = key;
        rows.0.push(day);
        rows.1.push(flake);
        rows.2.push(path);
        rows.3.push(metric);
        rows.4.push(agg.to_json());
    }
    tx.execute(
        "INSERT INTO daily (day, flake, path, metric, agg) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
         ON CONFLICT (day, flake, path, metric) DO UPDATE SET agg = EXCLUDED.agg",
        &[&rows.0, &rows.1, &rows.2, &rows.3, &rows.4],
    )?;
    Ok(())
}

fn evaluation_row(r: &postgres::Row) -> EvaluationRow {
    let evaluation = Evaluation {
        digest: r.get(1),
        started_at: r.get(2),
        flake: r.get(3),
        revision: r.get(4),
        command: r.get(5),
        mode: r.get(6),
        hostname: r.get(7),
        nix_version: r.get(8),
        complete: r.get(9),
        errors: r.get(10),
        sample_rate: r.get(11),
        values: std::array::from_fn(|i| r.get(12 + i)),
        document: Vec::new(),
    };
    EvaluationRow { id: r.get(0), evaluation }
}

impl Engine for Postgres {
    /// Few round trips: a report's outputs go in one statement (arrays, `unnest`), and the
    /// batch's aggregates are read per (day, flake) group and written in one statement.
    fn ingest(&mut self, batch: &[(Evaluation, Vec<Output>)], defer: bool) -> Result<Vec<usize>> {
        let known = &self.path_ids;
        let mut tx = self.client.transaction()?;
        let (fresh, learned) = if defer {
            insert_rows(&mut tx, batch, false, known)?
        } else {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
            let mut learned = HashMap::new();
            let (fresh, added) = store_and_aggregate(batch, || {
                let (fresh, paths) = insert_rows(&mut tx, batch, true, known)?;
                learned = paths;
                Ok::<_, StoreError>(fresh)
            })?;
            merge_daily(&mut tx, added)?;
            (fresh, learned)
        };
        tx.commit()?;
        self.path_ids.extend(learned);
        Ok(fresh)
    }

    fn aggregate_pending(&mut self, limit: i64) -> Result<usize> {
        let mut tx = self.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
        let sql = format!("SELECT id, started_at, flake, errors, sample_rate, {} FROM evaluations WHERE NOT aggregated ORDER BY id LIMIT $1", metric_columns());
        let rows = tx.query(&sql, &[&limit])?;
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let mut batch: Vec<(Evaluation, Vec<Output>)> =
            rows.iter().map(|r| (pending_evaluation(r.get(1), r.get(2), r.get(3), r.get(4), std::array::from_fn(|i| r.get(5 + i))), Vec::new())).collect();
        let position: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let sql = format!("SELECT o.evaluation_id, p.path, o.error, {} FROM outputs o JOIN paths p ON p.id = o.path_id WHERE o.evaluation_id = ANY($1)", metric_columns());
        for r in tx.query(&sql, &[&ids])? {
            let output = Output { path: r.get(1), error: r.get(2), values: std::array::from_fn(|i| r.get(3 + i)) };
            batch[position[&r.get::<_, i64>(0)]].1.push(output);
        }
        tx.execute("UPDATE evaluations SET aggregated = TRUE WHERE id = ANY($1)", &[&ids])?;
        merge_daily(&mut tx, batch_aggregates(&batch))?;
        tx.commit()?;
        Ok(ids.len())
    }

    fn rebuild_pending(&mut self) -> Result<bool> {
        Ok(self.client.query_one("SELECT count(*) FROM meta WHERE key = 'rebuild_daily'", &[])?.get::<_, i64>(0) > 0)
    }

    fn replace_daily(&mut self, rows: &[DailyRow]) -> Result<()> {
        let mut tx = self.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
        tx.execute("DELETE FROM daily", &[])?;
        let write = tx.prepare("INSERT INTO daily (day, flake, path, metric, agg) VALUES ($1, $2, $3, $4, $5)")?;
        for r in rows {
            tx.execute(&write, &[&r.day, &r.flake, &r.path, &r.metric, &r.agg.to_json()])?;
        }
        tx.execute("DELETE FROM meta WHERE key = 'rebuild_daily'", &[])?;
        tx.commit()?;
        Ok(())
    }

    fn daily(&mut self, s: &Selection) -> Result<Vec<DailyRow>> {
        let (from, until) = (s.from.div_euclid(86_400), (s.until - 1).div_euclid(86_400));
        let paths: Vec<String> = s.paths.clone().unwrap_or_else(|| vec![String::new()]);
        let metric = METRICS[s.metric].to_string();
        let rows = match &s.flake {
            Some(flake) => self.client.query(
                "SELECT day, flake, path, metric, agg FROM daily WHERE metric = $1 AND day >= $2 AND day <= $3 AND path = ANY($4) AND flake = $5",
                &[&metric, &from, &until, &paths, flake],
            )?,
            None => self.client.query(
                "SELECT day, flake, path, metric, agg FROM daily WHERE metric = $1 AND day >= $2 AND day <= $3 AND path = ANY($4)",
                &[&metric, &from, &until, &paths],
            )?,
        };
        rows.iter()
            .map(|r| Ok(DailyRow { day: r.get(0), flake: r.get(1), path: r.get(2), metric: r.get(3), agg: Agg::from_json(r.get(4)).map_err(StoreError::Other)? }))
            .collect()
    }

    fn samples(&mut self, s: &Selection) -> Result<Vec<Sample>> {
        let col = column(s.metric);
        let flake = if s.flake.is_some() { " AND e.flake = $3" } else { "" };
        let pending = if s.pending_only { " AND NOT e.aggregated" } else { "" };
        let flake = format!("{flake}{pending}");
        let rows = match &s.paths {
            None => {
                let sql = format!("SELECT e.started_at, e.flake, '', e.errors > 0, e.{col}, e.sample_rate FROM evaluations e WHERE e.started_at >= $1 AND e.started_at < $2{flake}");
                match &s.flake {
                    Some(f) => self.client.query(&sql, &[&s.from, &s.until, f])?,
                    None => self.client.query(&sql, &[&s.from, &s.until])?,
                }
            }
            Some(paths) => {
                let sql = format!(
                    "SELECT e.started_at, e.flake, p.path, o.error, o.{col}, e.sample_rate FROM outputs o JOIN evaluations e ON e.id = o.evaluation_id
                     JOIN paths p ON p.id = o.path_id WHERE e.started_at >= $1 AND e.started_at < $2 AND p.path = ANY($4){flake}"
                );
                let sql = if s.flake.is_none() { sql.replace("$4", "$3") } else { sql };
                match &s.flake {
                    Some(f) => self.client.query(&sql, &[&s.from, &s.until, f, paths])?,
                    None => self.client.query(&sql, &[&s.from, &s.until, paths])?,
                }
            }
        };
        Ok(rows.iter().map(|r| Sample { started_at: r.get(0), flake: r.get(1), path: r.get(2), error: r.get(3), value: r.get(4), weight: weight_of(r.get(5)) }).collect())
    }

    fn paths(&mut self) -> Result<Vec<String>> {
        Ok(self.client.query("SELECT path FROM paths ORDER BY path", &[])?.iter().map(|r| r.get(0)).collect())
    }

    fn flakes(&mut self) -> Result<Vec<String>> {
        Ok(self.client.query("SELECT DISTINCT flake FROM evaluations ORDER BY flake", &[])?.iter().map(|r| r.get(0)).collect())
    }

    fn delete_before_day(&mut self, day: i64) -> Result<u64> {
        let mut tx = self.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
        tx.execute("DELETE FROM outputs WHERE evaluation_id IN (SELECT id FROM evaluations WHERE started_at < $1)", &[&(day * 86_400)])?;
        let n = tx.execute("DELETE FROM evaluations WHERE started_at < $1", &[&(day * 86_400)])?;
        tx.execute("DELETE FROM daily WHERE day < $1", &[&day])?;
        tx.commit()?;
        Ok(n)
    }

    fn count_evaluations(&mut self) -> Result<i64> {
        Ok(self.client.query_one("SELECT count(*) FROM evaluations", &[])?.get(0))
    }

    fn evaluations(&mut self, q: &EvaluationQuery) -> Result<(i64, Vec<EvaluationRow>)> {
        let flake = q.flake.clone().unwrap_or_default();
        // `$3 = ''` switches the flake filter off: one statement either way.
        let where_ = "WHERE started_at >= $1 AND started_at < $2 AND ($3 = '' OR flake = $3)";
        let total: i64 = self.client.query_one(&format!("SELECT count(*) FROM evaluations {where_}"), &[&q.from, &q.until, &flake])?.get(0);
        let sql = format!("SELECT {} FROM evaluations {where_} ORDER BY {} DESC, id DESC LIMIT $4 OFFSET $5", evaluation_columns(), column(q.metric));
        let rows = self.client.query(&sql, &[&q.from, &q.until, &flake, &q.limit, &q.offset])?;
        Ok((total, rows.iter().map(evaluation_row).collect()))
    }

    fn evaluation(&mut self, id: i64) -> Result<Option<(EvaluationRow, Vec<Output>)>> {
        let Some(row) = self.client.query_opt(&format!("SELECT {} FROM evaluations WHERE id = $1", evaluation_columns()), &[&id])? else { return Ok(None) };
        let sql = format!("SELECT p.path, o.error, {} FROM outputs o JOIN paths p ON p.id = o.path_id WHERE o.evaluation_id = $1 ORDER BY p.path", metric_columns());
        let outputs = self
            .client
            .query(&sql, &[&id])?
            .iter()
            .map(|r| Output { path: r.get(0), error: r.get(1), values: std::array::from_fn(|i| r.get(2 + i)) })
            .collect();
        Ok(Some((evaluation_row(&row), outputs)))
    }

    fn document(&mut self, id: i64) -> Result<Option<Vec<u8>>> {
        Ok(self.client.query_opt("SELECT report FROM documents WHERE evaluation_id = $1", &[&id])?.map(|r| r.get(0)))
    }

    fn latest_nix_version(&mut self) -> Result<String> {
        Ok(self.client.query_opt("SELECT nix_version FROM evaluations ORDER BY started_at DESC LIMIT 1", &[])?.map(|r| r.get(0)).unwrap_or_default())
    }
}
