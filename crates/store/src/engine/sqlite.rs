//! SQLite: the embedded default. One file; WAL, so readers never wait for an ingest; writers
//! take the lock at BEGIN IMMEDIATE and wait for each other (busy timeout), so concurrent
//! ingests serialise and lose nothing.

use super::packed::PackedOutput;
use super::{
    PendingSlice, daily_row, merged_rows, Aggs, SeriesKey, column, groups, pack, packed_samples, unpack, PathCache, sql, Dialect, SCHEMA_V1, pending_evaluation, store_and_aggregate, evaluation_columns, metric_columns, too_new, weight_of, DailyRow, Engine, EvaluationQuery, EvaluationRow, Result, Sample, Selection,
    StoreError, MIGRATIONS, SCHEMA_VERSION,
};
use crate::record::{Evaluation, Output, METRICS};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub struct Sqlite {
    conn: Connection,
    paths: PathCache,
}

const DIALECT: Dialect = Dialect { serial: "INTEGER PRIMARY KEY", int: "INTEGER", boolean: "INTEGER", real: "REAL", blob: "BLOB", clustered: " WITHOUT ROWID" };

impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Other(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(60))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // An ingest transaction of 200 big reports touches tens of MB of pages: with SQLite's
        // default 2 MB cache it spills and rereads them (half of ingest time, measured).
        conn.pragma_update(None, "cache_size", -65_536)?;
        migrate(&mut conn)?;
        let mut sqlite = Sqlite { conn, paths: PathCache::default() };
        sqlite.finish_migrations()?;
        Ok(sqlite)
    }
}

/// Creates the schema (version 1), then runs the migrations from the stored version to
/// [`SCHEMA_VERSION`], all in one write transaction: concurrent openers wait, then see a
/// migrated store.
fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let has_meta: bool = tx.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'meta'", [], |r| r.get::<_, i64>(0))? > 0;
    if !has_meta {
        tx.execute_batch(&sql(SCHEMA_V1, &DIALECT))?;
        tx.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')", [])?;
    }
    let version: i64 = tx.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get::<_, String>(0))?.parse().unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(too_new(version));
    }
    for (to, step) in MIGRATIONS.iter().filter(|(to, _)| *to > version) {
        tx.execute_batch(&sql(step, &DIALECT))?;
        if *to == 3 {
            pack_outputs(&tx)?;
        }
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'schema_version'", [to.to_string()])?;
    }
    tx.commit()?;
    Ok(())
}

/// Migration 3: the rows of `outputs` packed into `costs`, one value per evaluation; then
/// `outputs` goes.
fn pack_outputs(tx: &rusqlite::Transaction) -> Result<()> {
    {
        let mut read = tx.prepare(&format!("SELECT evaluation_id, path_id, error, {} FROM outputs ORDER BY evaluation_id", metric_columns()))?;
        let mut write = tx.prepare("INSERT INTO costs (evaluation_id, outputs) VALUES (?1, ?2)")?;
        let mut current: Option<(i64, Vec<PackedOutput>)> = None;
        let mut rows = read.query([])?;
        loop {
            let row = rows.next()?;
            let id = row.map(|r| r.get::<_, i64>(0)).transpose()?;
            if let Some((evaluation, outputs)) = current.take_if(|(evaluation, _)| Some(*evaluation) != id) {
                write.execute(params![evaluation, super::packed::encode(outputs)])?;
            }
            let (Some(r), Some(id)) = (row, id) else { break };
            let output = PackedOutput { path_id: r.get(1)?, error: r.get::<_, i64>(2)? != 0, values: std::array::from_fn(|i| r.get(3 + i).unwrap_or(0)) };
            current.get_or_insert_with(|| (id, Vec::new())).1.push(output);
        }
    }
    tx.execute_batch("DROP TABLE outputs")?;
    Ok(())
}

fn evaluation_row(r: &rusqlite::Row) -> rusqlite::Result<EvaluationRow> {
    let mut values = [0i64; 8];
    for (i, v) in values.iter_mut().enumerate() {
        *v = r.get(12 + i)?;
    }
    let evaluation = Evaluation {
        digest: r.get(1)?,
        started_at: r.get(2)?,
        flake: r.get(3)?,
        revision: r.get(4)?,
        command: r.get(5)?,
        mode: r.get(6)?,
        hostname: r.get(7)?,
        nix_version: r.get(8)?,
        complete: r.get::<_, i64>(9)? != 0,
        errors: r.get(10)?,
        sample_rate: r.get(11)?,
        values,
        document: Vec::new(),
    };
    Ok(EvaluationRow { id: r.get(0)?, evaluation })
}

/// The evaluations of `batch` not stored yet, with their documents and packed outputs.
/// Returns their indices in `batch`, and the paths this transaction added or looked up (to be
/// remembered once it commits).
fn insert_rows(tx: &rusqlite::Transaction, batch: &[(Evaluation, Vec<Output>)], aggregated: bool, known: &PathCache) -> Result<(Vec<usize>, HashMap<String, i64>)> {
    let placeholders = (0..METRICS.len()).map(|i| format!("?{}", i + 12)).collect::<Vec<_>>().join(", ");
    let mut insert_eval = tx.prepare_cached(&format!(
        "INSERT INTO evaluations (digest, started_at, flake, revision, command, mode, hostname, nix_version, complete, errors, sample_rate, {}, aggregated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, {placeholders}, ?20) ON CONFLICT (digest) DO NOTHING",
        metric_columns()
    ))?;
    let mut insert_costs = tx.prepare_cached("INSERT INTO costs (evaluation_id, outputs) VALUES (?1, ?2)")?;
    let mut learned: HashMap<String, i64> = HashMap::new();
    let mut find_path = tx.prepare_cached("SELECT id FROM paths WHERE path = ?1")?;
    let mut insert_path = tx.prepare_cached("INSERT INTO paths (path) VALUES (?1)")?;
    let mut insert_document = tx.prepare_cached("INSERT INTO documents (evaluation_id, report) VALUES (?1, ?2)")?;
    let mut fresh = Vec::new();
    for (i, (e, outputs)) in batch.iter().enumerate() {
        let v = &e.values;
        let new = insert_eval.execute(params![
            e.digest, e.started_at, e.flake, e.revision, e.command, e.mode, e.hostname, e.nix_version, e.complete as i64, e.errors, e.sample_rate,
            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], aggregated as i64
        ])?;
        if new == 0 {
            continue; // stored already
        }
        let id = tx.last_insert_rowid();
        insert_document.execute(params![id, e.document])?;
        let packed = pack(outputs, |path| {
            if let Some(id) = known.id(path).or_else(|| learned.get(path).copied()) {
                return Ok(id);
            }
            let id = match find_path.query_row([path], |r| r.get(0)).optional()? {
                Some(id) => id,
                None => {
                    insert_path.execute([path])?;
                    tx.last_insert_rowid()
                }
            };
            learned.insert(path.to_string(), id);
            Ok(id)
        })?;
        insert_costs.execute(params![id, packed])?;
        fresh.push(i);
    }
    Ok((fresh, learned))
}

/// Merges `added` into the stored daily aggregates: each (day, flake) group read in one query.
fn merge_daily(tx: &rusqlite::Transaction, added: BTreeMap<SeriesKey, Aggs>) -> Result<()> {
    let mut stored: HashMap<SeriesKey, Vec<u8>> = HashMap::new();
    let mut read = tx.prepare_cached("SELECT path, aggs FROM daily WHERE day = ?1 AND flake = ?2")?;
    for (day, flake) in groups(&added) {
        for row in read.query_map(params![day, flake], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))? {
            let (path, aggs) = row?;
            stored.insert((day, flake.clone(), path), aggs);
        }
    }
    let mut write = tx.prepare_cached("INSERT OR REPLACE INTO daily (day, flake, path, aggs) VALUES (?1, ?2, ?3, ?4)")?;
    for ((day, flake, path), aggs) in merged_rows(added, &stored)? {
        write.execute(params![day, flake, path, aggs])?;
    }
    Ok(())
}

/// Names the path ids `missing` in `cache`, from committed rows.
fn name_paths(conn: &Connection, cache: &mut PathCache, missing: &[i64]) -> Result<()> {
    let mut find = conn.prepare_cached("SELECT path FROM paths WHERE id = ?1")?;
    for &id in missing {
        if let Some(path) = find.query_row([id], |r| r.get::<_, String>(0)).optional()? {
            cache.learn(id, path);
        }
    }
    Ok(())
}

/// The outputs of a packed value, named.
fn named_outputs(conn: &Connection, cache: &mut PathCache, bytes: &[u8]) -> Result<Vec<Output>> {
    let packed = unpack(bytes)?;
    let unnamed = cache.unnamed(&packed);
    name_paths(conn, cache, &unnamed)?;
    cache.outputs(packed)
}

/// The ids of `paths` that the store holds, with their paths.
fn ids_of(conn: &Connection, cache: &mut PathCache, paths: &[String]) -> Result<HashMap<i64, String>> {
    let mut find = conn.prepare_cached("SELECT id FROM paths WHERE path = ?1")?;
    let mut out = HashMap::with_capacity(paths.len());
    for path in paths {
        let id = match cache.id(path) {
            Some(id) => Some(id),
            None => find.query_row([path], |r| r.get::<_, i64>(0)).optional()?,
        };
        if let Some(id) = id {
            cache.learn(id, path.clone());
            out.insert(id, path.clone());
        }
    }
    Ok(out)
}

impl Engine for Sqlite {
    fn ingest(&mut self, batch: &[(Evaluation, Vec<Output>)], defer: bool) -> Result<Vec<usize>> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let known = &self.paths;
        let (fresh, learned) = if defer {
            insert_rows(&tx, batch, false, known)?
        } else {
            let mut learned = HashMap::new();
            let (fresh, added) = store_and_aggregate(batch, || {
                let (fresh, paths) = insert_rows(&tx, batch, true, known)?;
                learned = paths;
                Ok::<_, StoreError>(fresh)
            })?;
            merge_daily(&tx, added)?;
            (fresh, learned)
        };
        tx.commit()?;
        for (path, id) in learned {
            self.paths.learn(id, path);
        }
        Ok(fresh)
    }

    fn pending_slice(&mut self, limit: i64) -> Result<PendingSlice> {
        // A read transaction: one snapshot, and WAL readers block no writer.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let mut batch: Vec<(Evaluation, Vec<Output>)> = Vec::new();
        let mut ids: Vec<i64> = Vec::new();
        {
            let sql = format!("SELECT id, started_at, flake, errors, sample_rate, {} FROM evaluations WHERE NOT aggregated ORDER BY id LIMIT ?1", metric_columns());
            let mut stmt = tx.prepare_cached(&sql)?;
            let rows = stmt.query_map([limit], |r| {
                let values: [i64; 8] = std::array::from_fn(|i| r.get(5 + i).unwrap_or(0));
                Ok((r.get::<_, i64>(0)?, pending_evaluation(r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, values)))
            })?;
            for row in rows {
                let (id, e) = row?;
                ids.push(id);
                batch.push((e, Vec::new()));
            }
            let mut costs = tx.prepare_cached("SELECT outputs FROM costs WHERE evaluation_id = ?1")?;
            for (id, (_, out)) in ids.iter().zip(batch.iter_mut()) {
                if let Some(bytes) = costs.query_row([id], |r| r.get::<_, Vec<u8>>(0)).optional()? {
                    *out = named_outputs(&tx, &mut self.paths, &bytes)?;
                }
            }
        }
        tx.commit()?;
        Ok((ids, batch))
    }

    fn apply_slice(&mut self, ids: &[i64], added: BTreeMap<SeriesKey, Aggs>) -> Result<bool> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut mark = tx.prepare_cached("UPDATE evaluations SET aggregated = 1 WHERE id = ?1 AND NOT aggregated")?;
            for id in ids {
                if mark.execute([id])? == 0 {
                    return Ok(false); // dropping the transaction rolls it back
                }
            }
        }
        merge_daily(&tx, added)?;
        tx.commit()?;
        Ok(true)
    }

    fn daily(&mut self, s: &Selection) -> Result<Vec<DailyRow>> {
        let (from, until) = (s.from.div_euclid(86_400), (s.until - 1).div_euclid(86_400));
        let paths: Vec<String> = s.paths.clone().unwrap_or_else(|| vec![String::new()]);
        let mut p: Vec<rusqlite::types::Value> = vec![from.into(), until.into()];
        let mut sql = "SELECT day, flake, path, aggs FROM daily WHERE day >= ?1 AND day <= ?2".to_string();
        if let Some(flake) = &s.flake {
            sql += " AND flake = ?3";
            p.push(flake.clone().into());
        }
        let first = p.len() + 1;
        sql += &format!(" AND path IN ({})", (0..paths.len()).map(|i| format!("?{}", first + i)).collect::<Vec<_>>().join(", "));
        p.extend(paths.into_iter().map(Into::into));
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(params_from_iter(p))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(daily_row(r.get(0)?, r.get(1)?, r.get(2)?, r.get_ref(3)?.as_blob().map_err(rusqlite::Error::from)?, s.metric)?);
        }
        Ok(out)
    }

    fn samples(&mut self, s: &Selection) -> Result<Vec<Sample>> {
        let col = column(s.metric);
        let flake = if s.flake.is_some() { " AND e.flake = ?3" } else { "" };
        let pending = if s.pending_only { " AND NOT e.aggregated" } else { "" };
        let filter = format!("WHERE e.started_at >= ?1 AND e.started_at < ?2{flake}{pending}");
        // Pending evaluations are few: found by their partial index, not by scanning the
        // window's (a year of them took 40 ms, measured).
        let evaluations = if s.pending_only { "evaluations e INDEXED BY evaluations_pending" } else { "evaluations e" };
        let mut p: Vec<rusqlite::types::Value> = vec![s.from.into(), s.until.into()];
        if let Some(f) = &s.flake {
            p.push(f.clone().into());
        }
        let mut out = Vec::new();
        match &s.paths {
            None => {
                let sql = format!("SELECT e.started_at, e.flake, e.errors > 0, e.{col}, e.sample_rate FROM {evaluations} {filter}");
                let mut stmt = self.conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(params_from_iter(p), |r| {
                    Ok(Sample { started_at: r.get(0)?, flake: r.get(1)?, path: String::new(), error: r.get::<_, i64>(2)? != 0, value: r.get(3)?, weight: weight_of(r.get(4)?) })
                })?;
                for row in rows {
                    out.push(row?);
                }
            }
            Some(paths) => {
                let wanted = ids_of(&self.conn, &mut self.paths, paths)?;
                if wanted.is_empty() {
                    return Ok(out);
                }
                let sql = format!("SELECT e.started_at, e.flake, e.sample_rate, c.outputs FROM {evaluations} JOIN costs c ON c.evaluation_id = e.id {filter}");
                let mut stmt = self.conn.prepare_cached(&sql)?;
                let mut rows = stmt.query(params_from_iter(p))?;
                while let Some(r) = rows.next()? {
                    let flake: String = r.get(1)?;
                    let bytes = r.get_ref(3)?.as_blob().map_err(rusqlite::Error::from)?;
                    packed_samples(bytes, &wanted, s.metric, r.get(0)?, &flake, r.get(2)?, &mut out)?;
                }
            }
        }
        Ok(out)
    }

    fn paths(&mut self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached("SELECT path FROM paths ORDER BY path")?;
        let rows = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(rows)
    }

    fn flakes(&mut self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached("SELECT DISTINCT flake FROM evaluations ORDER BY flake")?;
        let rows = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(rows)
    }

    fn delete_before_day(&mut self, day: i64) -> Result<u64> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM costs WHERE evaluation_id IN (SELECT id FROM evaluations WHERE started_at < ?1)", [day * 86_400])?;
        let n = tx.execute("DELETE FROM evaluations WHERE started_at < ?1", [day * 86_400])?;
        tx.execute("DELETE FROM daily WHERE day < ?1", [day])?;
        tx.commit()?;
        Ok(n as u64)
    }

    fn count_evaluations(&mut self) -> Result<i64> {
        Ok(self.conn.query_row("SELECT count(*) FROM evaluations", [], |r| r.get(0))?)
    }

    fn set_cache_mib(&mut self, mib: u32) -> Result<()> {
        self.conn.pragma_update(None, "cache_size", -1024 * i64::from(mib))?;
        Ok(())
    }

    fn rebuild_pending(&mut self) -> Result<bool> {
        Ok(self.conn.query_row("SELECT count(*) FROM meta WHERE key = 'rebuild_daily'", [], |r| r.get::<_, i64>(0))? > 0)
    }

    fn clear_rebuild_mark(&mut self) -> Result<()> {
        self.conn.execute("DELETE FROM meta WHERE key = 'rebuild_daily'", [])?;
        Ok(())
    }

    fn evaluations(&mut self, q: &EvaluationQuery) -> Result<(i64, Vec<EvaluationRow>)> {
        let flake = if q.flake.is_some() { " AND flake = ?3" } else { "" };
        let mut p: Vec<rusqlite::types::Value> = vec![q.from.into(), q.until.into()];
        if let Some(f) = &q.flake {
            p.push(f.clone().into());
        }
        let where_ = format!("WHERE started_at >= ?1 AND started_at < ?2{flake}");
        let total = self.conn.prepare_cached(&format!("SELECT count(*) FROM evaluations {where_}"))?.query_row(params_from_iter(p.clone()), |r| r.get(0))?;
        let n = p.len();
        p.extend([q.limit.into(), q.offset.into()]);
        let sql = format!("SELECT {} FROM evaluations {where_} ORDER BY {} DESC, id DESC LIMIT ?{} OFFSET ?{}", evaluation_columns(), column(q.metric), n + 1, n + 2);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(p), evaluation_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((total, rows))
    }

    fn evaluation(&mut self, id: i64) -> Result<Option<(EvaluationRow, Vec<Output>)>> {
        let sql = format!("SELECT {} FROM evaluations WHERE id = ?1", evaluation_columns());
        let Some(row) = self.conn.prepare_cached(&sql)?.query_row([id], evaluation_row).optional()? else { return Ok(None) };
        let bytes: Option<Vec<u8>> = self.conn.prepare_cached("SELECT outputs FROM costs WHERE evaluation_id = ?1")?.query_row([id], |r| r.get(0)).optional()?;
        let mut outputs = match bytes {
            Some(bytes) => named_outputs(&self.conn, &mut self.paths, &bytes)?,
            None => Vec::new(),
        };
        outputs.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Some((row, outputs)))
    }

    fn document(&mut self, id: i64) -> Result<Option<Vec<u8>>> {
        Ok(self.conn.prepare_cached("SELECT report FROM documents WHERE evaluation_id = ?1")?.query_row([id], |r| r.get(0)).optional()?)
    }

    fn latest_nix_version(&mut self) -> Result<String> {
        Ok(self.conn.query_row("SELECT nix_version FROM evaluations ORDER BY started_at DESC LIMIT 1", [], |r| r.get(0)).optional()?.unwrap_or_default())
    }
}
