//! PostgreSQL: one store for a fleet of CI machines. Ingests take a transaction-scoped
//! advisory lock, so concurrent ingests from many machines serialise their daily-aggregate
//! updates and lose nothing; readers never wait.

use super::packed::PackedOutput;
use super::{
    PendingSlice, daily_row, merged_rows, Aggs, SeriesKey, column, groups, pack, packed_samples, unpack, PathCache, sql, Dialect, SCHEMA_V1, pending_evaluation, store_and_aggregate, evaluation_columns, metric_columns, too_new, weight_of, DailyRow, Engine, EvaluationQuery, EvaluationRow, Result, Sample, Selection,
    StoreError, MIGRATIONS, SCHEMA_VERSION,
};
use crate::record::{Evaluation, Output, METRICS};
use postgres::types::ToSql;
use postgres::{Client, NoTls};
use std::collections::{BTreeMap, HashMap};

pub struct Postgres {
    client: Client,
    paths: PathCache,
    /// Prepared at the first ingest.
    statements: Option<IngestStatements>,
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
            if !step.is_empty() {
                tx.batch_execute(&sql(step, &DIALECT))?;
            }
            if *to == 3 {
                pack_outputs(&mut tx)?;
            }
            if *to == 5 {
                tx.batch_execute(BLOBS_AS_IS)?;
            }
            tx.execute("UPDATE meta SET value = $1 WHERE key = 'schema_version'", &[&to.to_string()])?;
        }
        tx.commit()?;
        let mut postgres = Postgres { client, paths: PathCache::default(), statements: None };
        postgres.finish_migrations()?;
        Ok(postgres)
    }
}

/// Migration 5: the packed costs and the gzipped reports are stored as they come, out of
/// line and uncompressed (`STORAGE EXTERNAL`; rows stored before stay as they are). By
/// default PostgreSQL compresses every value over 2 KB with pglz: for a 2000-output report's
/// 36 KB of packed costs that took 1.3 of the database's 2.0 ms of CPU per ingest (perf, serve
/// benchmark), and halved the value; a gzipped report does not compress at all. SQLite stores
/// both as they come too.
const BLOBS_AS_IS: &str = "ALTER TABLE costs ALTER COLUMN outputs SET STORAGE EXTERNAL;
     ALTER TABLE documents ALTER COLUMN report SET STORAGE EXTERNAL";

/// Migration 3: the rows of `outputs` packed into `costs`, one value per evaluation, a
/// thousand evaluations per round trip; then `outputs` goes.
fn pack_outputs(tx: &mut postgres::Transaction) -> Result<()> {
    let ids: Vec<i64> = tx.query("SELECT DISTINCT evaluation_id FROM outputs ORDER BY 1", &[])?.iter().map(|r| r.get(0)).collect();
    let read = tx.prepare(&format!("SELECT evaluation_id, path_id, error, {} FROM outputs WHERE evaluation_id = ANY($1)", metric_columns()))?;
    for chunk in ids.chunks(1000) {
        let mut by_evaluation: HashMap<i64, Vec<PackedOutput>> = HashMap::new();
        for r in tx.query(&read, &[&chunk])? {
            by_evaluation.entry(r.get(0)).or_default().push(PackedOutput { path_id: r.get(1), error: r.get(2), values: std::array::from_fn(|i| r.get(3 + i)) });
        }
        let (ids, values): (Vec<i64>, Vec<Vec<u8>>) = by_evaluation.into_iter().map(|(id, outputs)| (id, super::packed::encode(outputs))).unzip();
        tx.execute("INSERT INTO costs (evaluation_id, outputs) SELECT * FROM unnest($1::bigint[], $2::bytea[])", &[&ids, &values])?;
    }
    tx.batch_execute("DROP TABLE outputs")?;
    Ok(())
}

/// Names the path ids `missing` in `cache`, from committed rows, in one round trip.
fn name_paths(client: &mut impl postgres::GenericClient, cache: &mut PathCache, missing: &[i64]) -> Result<()> {
    if !missing.is_empty() {
        for r in client.query("SELECT id, path FROM paths WHERE id = ANY($1)", &[&missing])? {
            cache.learn(r.get(0), r.get(1));
        }
    }
    Ok(())
}

/// The outputs of a packed value, named.
fn named_outputs(client: &mut impl postgres::GenericClient, cache: &mut PathCache, bytes: &[u8]) -> Result<Vec<Output>> {
    let packed = unpack(bytes)?;
    let unnamed = cache.unnamed(&packed);
    name_paths(client, cache, &unnamed)?;
    cache.outputs(packed)
}

/// The ids of `paths` that the store holds, with their paths.
fn ids_of(client: &mut Client, cache: &mut PathCache, paths: &[String]) -> Result<HashMap<i64, String>> {
    let unknown: Vec<&str> = paths.iter().map(String::as_str).filter(|p| cache.id(p).is_none()).collect();
    if !unknown.is_empty() {
        for r in client.query("SELECT id, path FROM paths WHERE path = ANY($1)", &[&unknown])? {
            cache.learn(r.get(0), r.get(1));
        }
    }
    Ok(paths.iter().filter_map(|p| cache.id(p).map(|id| (id, p.clone()))).collect())
}

/// The statements of an ingest, prepared once per connection: each is one round trip for a
/// whole batch (arrays and `unnest`), not one per report.
#[derive(Clone)]
struct IngestStatements {
    evaluations: postgres::Statement,
    documents: postgres::Statement,
    new_paths: postgres::Statement,
    path_ids: postgres::Statement,
    costs: postgres::Statement,
}

impl IngestStatements {
    fn prepare(client: &mut Client) -> Result<IngestStatements> {
        let arrays = (0..METRICS.len()).map(|i| format!("${}::bigint[]", i + 12)).collect::<Vec<_>>().join(", ");
        let aggregated = METRICS.len() + 12;
        Ok(IngestStatements {
            evaluations: client.prepare(&format!(
                "INSERT INTO evaluations (digest, started_at, flake, revision, command, mode, hostname, nix_version, complete, errors, sample_rate, {}, aggregated)
                 SELECT *, ${aggregated}::boolean FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                   $9::boolean[], $10::bigint[], $11::float8[], {arrays})
                 ON CONFLICT (digest) DO NOTHING RETURNING id, digest",
                metric_columns()
            ))?,
            documents: client.prepare("INSERT INTO documents (evaluation_id, report) SELECT * FROM unnest($1::bigint[], $2::bytea[])")?,
            new_paths: client.prepare("INSERT INTO paths (path) SELECT unnest($1::text[]) ON CONFLICT (path) DO NOTHING")?,
            path_ids: client.prepare("SELECT id, path FROM paths WHERE path = ANY($1)")?,
            costs: client.prepare("INSERT INTO costs (evaluation_id, outputs) SELECT * FROM unnest($1::bigint[], $2::bytea[])")?,
        })
    }
}

/// The evaluations of `batch` not stored yet, with their documents and packed outputs, in five
/// statements whatever the batch's size (a report's three round trips were the writer's wait
/// under load). Returns their indices in `batch`, and the path ids this transaction learned
/// (to be remembered once it commits).
fn insert_rows(tx: &mut postgres::Transaction, statements: &IngestStatements, batch: &[(Evaluation, Vec<Output>)], aggregated: bool, known: &PathCache) -> Result<(Vec<usize>, HashMap<String, i64>)> {
    let inserted = insert_evaluations(tx, &statements.evaluations, batch, aggregated)?;
    // A digest given twice in one batch is stored once: its first report is the new one.
    let mut ids: HashMap<&str, i64> = inserted.iter().map(|(id, digest)| (digest.as_str(), *id)).collect();
    let fresh: Vec<(usize, i64)> = batch.iter().enumerate().filter_map(|(i, (e, _))| ids.remove(e.digest.as_str()).map(|id| (i, id))).collect();
    if fresh.is_empty() {
        return Ok((Vec::new(), HashMap::new()));
    }
    let documents: Vec<&[u8]> = fresh.iter().map(|&(i, _)| batch[i].0.document.as_slice()).collect();
    let fresh_ids: Vec<i64> = fresh.iter().map(|&(_, id)| id).collect();
    tx.execute(&statements.documents, &[&fresh_ids, &documents])?;
    let mut unknown: Vec<&str> = fresh.iter().flat_map(|&(i, _)| batch[i].1.iter().map(|o| o.path.as_str())).filter(|p| known.id(p).is_none()).collect();
    unknown.sort_unstable();
    unknown.dedup();
    let mut learned: HashMap<String, i64> = HashMap::new();
    if !unknown.is_empty() {
        tx.execute(&statements.new_paths, &[&unknown])?;
        for r in tx.query(&statements.path_ids, &[&unknown])? {
            learned.insert(r.get(1), r.get(0));
        }
    }
    let id_of = |path: &str| Ok(known.id(path).or_else(|| learned.get(path).copied()).expect("every path was looked up"));
    let packed: Vec<Vec<u8>> = fresh.iter().map(|&(i, _)| pack(&batch[i].1, id_of)).collect::<Result<_>>()?;
    tx.execute(&statements.costs, &[&fresh_ids, &packed])?;
    Ok((fresh.into_iter().map(|(i, _)| i).collect(), learned))
}

/// Inserts the evaluations of `batch` whose digest the store does not hold, in one statement
/// (a column per array); returns the (id, digest) of those inserted.
fn insert_evaluations(tx: &mut postgres::Transaction, statement: &postgres::Statement, batch: &[(Evaluation, Vec<Output>)], aggregated: bool) -> Result<Vec<(i64, String)>> {
    let evaluations: Vec<&Evaluation> = batch.iter().map(|(e, _)| e).collect();
    let text = |f: fn(&Evaluation) -> &str| evaluations.iter().map(|e| f(e)).collect::<Vec<&str>>();
    let (digest, flake, revision, command, mode, hostname, nix_version) =
        (text(|e| &e.digest), text(|e| &e.flake), text(|e| &e.revision), text(|e| &e.command), text(|e| &e.mode), text(|e| &e.hostname), text(|e| &e.nix_version));
    let started_at: Vec<i64> = evaluations.iter().map(|e| e.started_at).collect();
    let complete: Vec<bool> = evaluations.iter().map(|e| e.complete).collect();
    let errors: Vec<i64> = evaluations.iter().map(|e| e.errors).collect();
    let sample_rate: Vec<f64> = evaluations.iter().map(|e| e.sample_rate).collect();
    let values: Vec<Vec<i64>> = (0..METRICS.len()).map(|m| evaluations.iter().map(|e| e.values[m]).collect()).collect();
    let mut p: Vec<&(dyn ToSql + Sync)> = vec![&digest, &started_at, &flake, &revision, &command, &mode, &hostname, &nix_version, &complete, &errors, &sample_rate];
    p.extend(values.iter().map(|v| v as &(dyn ToSql + Sync)));
    p.push(&aggregated);
    Ok(tx.query(statement, &p)?.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Merges `added` into the stored daily aggregates: each (day, flake) group read in one query,
/// all written in one statement. The caller holds the advisory lock.
fn merge_daily(tx: &mut postgres::Transaction, added: BTreeMap<SeriesKey, Aggs>) -> Result<()> {
    let mut stored: HashMap<SeriesKey, Vec<u8>> = HashMap::new();
    for (day, flake) in groups(&added) {
        for r in tx.query("SELECT path, aggs FROM daily WHERE day = $1 AND flake = $2", &[&day, &flake])? {
            stored.insert((day, flake.clone(), r.get(0)), r.get(1));
        }
    }
    let mut rows: (Vec<i64>, Vec<String>, Vec<String>, Vec<Vec<u8>>) = Default::default();
    for ((day, flake, path), aggs) in merged_rows(added, &stored)? {
        rows.0.push(day);
        rows.1.push(flake);
        rows.2.push(path);
        rows.3.push(aggs);
    }
    tx.execute(
        "INSERT INTO daily (day, flake, path, aggs) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[])
         ON CONFLICT (day, flake, path) DO UPDATE SET aggs = EXCLUDED.aggs",
        &[&rows.0, &rows.1, &rows.2, &rows.3],
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
    /// Few round trips: the batch's reports go in five prepared statements (arrays, `unnest`:
    /// `insert_rows`), and its aggregates are read per (day, flake) group and written in one
    /// statement.
    fn ingest(&mut self, batch: &[(Evaluation, Vec<Output>)], defer: bool) -> Result<Vec<usize>> {
        if self.statements.is_none() {
            self.statements = Some(IngestStatements::prepare(&mut self.client)?);
        }
        let statements = self.statements.clone().expect("prepared above");
        let known = &self.paths;
        let mut tx = self.client.transaction()?;
        let (fresh, learned) = if defer {
            insert_rows(&mut tx, &statements, batch, false, known)?
        } else {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
            let mut learned = HashMap::new();
            let (fresh, added) = store_and_aggregate(batch, || {
                let (fresh, paths) = insert_rows(&mut tx, &statements, batch, true, known)?;
                learned = paths;
                Ok::<_, StoreError>(fresh)
            })?;
            merge_daily(&mut tx, added)?;
            (fresh, learned)
        };
        tx.commit()?;
        for (path, id) in learned {
            self.paths.learn(id, path);
        }
        Ok(fresh)
    }

    fn pending_slice(&mut self, limit: i64) -> Result<PendingSlice> {
        // A repeatable-read transaction: one snapshot, no lock.
        let mut tx = self.client.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true).start()?;
        let sql = format!("SELECT id, started_at, flake, errors, sample_rate, {} FROM evaluations WHERE NOT aggregated ORDER BY id LIMIT $1", metric_columns());
        let rows = tx.query(&sql, &[&limit])?;
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let mut batch: Vec<(Evaluation, Vec<Output>)> =
            rows.iter().map(|r| (pending_evaluation(r.get(1), r.get(2), r.get(3), r.get(4), std::array::from_fn(|i| r.get(5 + i))), Vec::new())).collect();
        let position: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        for r in tx.query("SELECT evaluation_id, outputs FROM costs WHERE evaluation_id = ANY($1)", &[&ids])? {
            batch[position[&r.get::<_, i64>(0)]].1 = named_outputs(&mut tx, &mut self.paths, r.get(1))?;
        }
        tx.commit()?;
        Ok((ids, batch))
    }

    fn apply_slice(&mut self, ids: &[i64], added: BTreeMap<SeriesKey, Aggs>) -> Result<bool> {
        let mut tx = self.client.transaction()?;
        // One merger at a time.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
        let marked = tx.execute("UPDATE evaluations SET aggregated = TRUE WHERE id = ANY($1) AND NOT aggregated", &[&ids])?;
        if marked as usize != ids.len() {
            return Ok(false); // dropping the transaction rolls it back
        }
        merge_daily(&mut tx, added)?;
        tx.commit()?;
        Ok(true)
    }

    fn rebuild_pending(&mut self) -> Result<bool> {
        Ok(self.client.query_one("SELECT count(*) FROM meta WHERE key = 'rebuild_daily'", &[])?.get::<_, i64>(0) > 0)
    }

    fn clear_rebuild_mark(&mut self) -> Result<()> {
        self.client.execute("DELETE FROM meta WHERE key = 'rebuild_daily'", &[])?;
        Ok(())
    }

    fn daily(&mut self, s: &Selection) -> Result<Vec<DailyRow>> {
        let (from, until) = (s.from.div_euclid(86_400), (s.until - 1).div_euclid(86_400));
        let paths: Vec<String> = s.paths.clone().unwrap_or_else(|| vec![String::new()]);
        let flake = s.flake.clone().unwrap_or_default();
        // `$4 = ''` switches the flake filter off: one statement either way.
        let rows = self.client.query(
            "SELECT day, flake, path, aggs FROM daily WHERE day >= $1 AND day <= $2 AND path = ANY($3) AND ($4 = '' OR flake = $4)",
            &[&from, &until, &paths, &flake],
        )?;
        rows.iter().map(|r| daily_row(r.get(0), r.get(1), r.get(2), r.get(3), s.metric)).collect()
    }

    fn samples(&mut self, s: &Selection) -> Result<Vec<Sample>> {
        let col = column(s.metric);
        let pending = if s.pending_only { " AND NOT e.aggregated" } else { "" };
        // `$3 = ''` switches the flake filter off: one statement either way.
        let filter = format!("WHERE e.started_at >= $1 AND e.started_at < $2 AND ($3 = '' OR e.flake = $3){pending}");
        let flake = s.flake.clone().unwrap_or_default();
        let params: [&(dyn ToSql + Sync); 3] = [&s.from, &s.until, &flake];
        match &s.paths {
            None => {
                let sql = format!("SELECT e.started_at, e.flake, e.errors > 0, e.{col}, e.sample_rate FROM evaluations e {filter}");
                let rows = self.client.query(&sql, &params)?;
                Ok(rows.iter().map(|r| Sample { started_at: r.get(0), flake: r.get(1), path: String::new(), error: r.get(2), value: r.get(3), weight: weight_of(r.get(4)) }).collect())
            }
            Some(paths) => {
                let wanted = ids_of(&mut self.client, &mut self.paths, paths)?;
                let mut out = Vec::new();
                if wanted.is_empty() {
                    return Ok(out);
                }
                let sql = format!("SELECT e.started_at, e.flake, e.sample_rate, c.outputs FROM evaluations e JOIN costs c ON c.evaluation_id = e.id {filter}");
                for r in self.client.query(&sql, &params)? {
                    packed_samples(r.get(3), &wanted, s.metric, r.get(0), r.get(1), r.get(2), &mut out)?;
                }
                Ok(out)
            }
        }
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
        tx.execute("DELETE FROM costs WHERE evaluation_id IN (SELECT id FROM evaluations WHERE started_at < $1)", &[&(day * 86_400)])?;
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
        let mut outputs = match self.client.query_opt("SELECT outputs FROM costs WHERE evaluation_id = $1", &[&id])? {
            Some(r) => named_outputs(&mut self.client, &mut self.paths, r.get(0))?,
            None => Vec::new(),
        };
        outputs.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Some((evaluation_row(&row), outputs)))
    }

    fn document(&mut self, id: i64) -> Result<Option<Vec<u8>>> {
        Ok(self.client.query_opt("SELECT report FROM documents WHERE evaluation_id = $1", &[&id])?.map(|r| r.get(0)))
    }

    fn latest_nix_version(&mut self) -> Result<String> {
        Ok(self.client.query_opt("SELECT nix_version FROM evaluations ORDER BY started_at DESC LIMIT 1", &[])?.map(|r| r.get(0)).unwrap_or_default())
    }
}
