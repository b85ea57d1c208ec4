//! Ingest over HTTP and from a directory. Every report is read and validated before it is
//! queued, and one writer thread stores what is queued in one transaction (group commit): a
//! burst of ingests costs one commit, and the daily aggregates of a day are merged once.

use super::{ApiError, App};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use nix_evalcost_store::record::{Evaluation, Output};
use nix_evalcost_store::Store;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};

type Record = (Evaluation, Vec<Output>);
type Reply = oneshot::Sender<Result<bool, String>>;

/// The most reports one transaction stores.
const GROUP: usize = 256;

/// The queue to the writer thread, and what it has done.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<(Record, Reply)>,
    pub counts: Arc<Counts>,
}

/// Reports ingested since the server started, for /metrics.
#[derive(Default)]
pub struct Counts {
    pub new: AtomicU64,
    pub duplicate: AtomicU64,
    pub rejected: AtomicU64,
}

impl Writer {
    /// `generation` is bumped after each commit that changes the store (cached answers go).
    /// `merger` is a second connection, on which the daily aggregates are merged off the
    /// writer's thread.
    pub fn start(mut store: Store, merger: Store, generation: Arc<AtomicU64>) -> (Writer, std::thread::JoinHandle<()>) {
        let (queue, mut rx) = mpsc::channel::<(Record, Reply)>(4 * GROUP);
        let counts = Arc::new(Counts::default());
        let thread_counts = counts.clone();
        let (stored, news) = std::sync::mpsc::channel::<usize>();
        let merger_generation = generation.clone();
        let merger = std::thread::Builder::new().name("aggregate-merger".into()).spawn(move || merge_loop(merger, news, merger_generation)).expect("a thread");
        let thread = std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut group = vec![first];
                    while group.len() < GROUP {
                        match rx.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    let (records, replies): (Vec<Record>, Vec<Reply>) = group.into_iter().unzip();
                    match store.ingest_deferred(&records) {
                        Ok(marks) => {
                            generation.fetch_add(1, Ordering::Release);
                            let mut new_count = 0;
                            for (new, reply) in marks.into_iter().zip(replies) {
                                let counter = if new { &thread_counts.new } else { &thread_counts.duplicate };
                                counter.fetch_add(1, Ordering::Relaxed);
                                new_count += new as usize;
                                let _ = reply.send(Ok(new));
                            }
                            let _ = stored.send(new_count);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, reports = records.len(), "storing failed; nothing of this group was stored");
                            for reply in replies {
                                let _ = reply.send(Err(e.to_string()));
                            }
                        }
                    }
                }
                // Shutting down: the merger merges what is pending, and ends.
                drop(stored);
                let _ = merger.join();
            })
            .expect("a thread");
        (Writer { queue, counts }, thread)
    }

    /// Stores `record`; true if it was new.
    pub async fn store(&self, record: Record) -> Result<bool, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((record, reply)).await.map_err(|_| shutting_down())?;
        answer.await.map_err(|_| shutting_down())?.map_err(ApiError::internal)
    }

    /// [`Writer::store`] from a thread outside the runtime (the collector).
    fn store_blocking(&self, record: Record) -> Result<bool, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.queue.blocking_send((record, reply)).map_err(|_| shutting_down())?;
        answer.blocking_recv().map_err(|_| shutting_down())?.map_err(ApiError::internal)
    }
}

fn shutting_down() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down")
}

/// Merges the daily aggregates of what the writer stored, on its own connection: in bulk, when
/// many are pending or ingest has been quiet a while, so that a burst of ingests is not slowed
/// by aggregate updates (16 000 per flake and day for 2000-output reports). The costly part of
/// a merge (reading a slice and adding it up) holds no lock, so the writer's commits go on
/// meanwhile; each slice ends in one short write transaction. Queries count pending
/// evaluations from their raw rows meanwhile, so answers do not change. `news` carries how
/// many new evaluations each commit stored; when the writer drops it, what is pending is merged
/// and the merger ends.
fn merge_loop(mut store: Store, news: std::sync::mpsc::Receiver<usize>, generation: Arc<AtomicU64>) {
    use std::sync::mpsc::RecvTimeoutError;
    /// Pending evaluations that start a merge at once.
    const MANY: usize = 2000;
    /// A quiet spell after which whatever is pending is merged.
    const QUIET: Duration = Duration::from_secs(2);
    /// Evaluations per merge transaction: bounds the merger's memory (~60 MB).
    const SLICE: usize = 200;
    let mut pending = 0usize;
    let mut last_news = std::time::Instant::now();
    let mut open = true;
    while open {
        let wait = if pending >= MANY { Duration::ZERO } else { QUIET.saturating_sub(last_news.elapsed()).max(Duration::from_millis(10)) };
        match news.recv_timeout(wait) {
            Ok(n) => {
                pending += n;
                last_news = std::time::Instant::now();
                while let Ok(n) = news.try_recv() {
                    pending += n;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        let due = pending >= MANY || (pending > 0 && last_news.elapsed() >= QUIET) || (!open && pending > 0);
        if !due {
            continue;
        }
        match store.aggregate_pending(SLICE) {
            Ok(0) => pending = 0,
            Ok(n) => {
                tracing::debug!(evaluations = n, "aggregated");
                pending = pending.saturating_sub(n);
                generation.fetch_add(1, Ordering::Release);
            }
            Err(e) => {
                tracing::error!(error = %e, "merging aggregates failed; they stay pending and are counted from raw rows");
                pending = 0;
            }
        }
        // Shutting down: merge every slice left, whatever this loop counted.
        if !open {
            while matches!(store.aggregate_pending(SLICE), Ok(n) if n > 0) {
                generation.fetch_add(1, Ordering::Release);
            }
        }
    }
}

/// `POST /api/v1/reports`: one report, JSON or gzipped JSON. 201 when stored, 200 when it was
/// stored already (same digest); 401/403 without the token, 413 too big, 400 invalid, 415 not
/// JSON. Nothing is stored unless the whole report is valid.
pub async fn post_report(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    authorize(&app, &headers)?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !matches!(ct.as_str(), "application/json" | "application/gzip" | "application/x-gzip" | "application/octet-stream") {
            app.writer.counts.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("Content-Type {ct:?}: send application/json (or gzip)")));
        }
    }
    let limit = (app.max_body as u64).saturating_mul(16).min(nix_evalcost_core::report_io::MAX_REPORT_BYTES);
    let record = match tokio::task::spawn_blocking(move || decode(&body, limit)).await.map_err(ApiError::internal)? {
        Ok(r) => r,
        Err(e) => {
            app.writer.counts.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    };
    let digest = record.0.digest.clone();
    let new = app.writer.store(record).await?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(serde_json::json!({ "digest": digest, "stored": new }))))
}

/// The bearer token, compared in constant time.
fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &app.token else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "ingest over HTTP is off: start serve with --token-file or NIX_EVALCOST_TOKEN"));
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if given.as_bytes().ct_eq(token).into() {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer …)"))
    }
}

/// The body's report as the history's rows: inflated (at most `limit` bytes), parsed and
/// validated like a file given to `history ingest`, so both store the same digest.
fn decode(body: &[u8], limit: u64) -> Result<Record, ApiError> {
    let mut inflated = Vec::with_capacity(inflated_size_hint(body, limit));
    let json: &[u8] = if body.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(body)
            .take(limit + 1)
            .read_to_end(&mut inflated)
            .map_err(|e| ApiError::bad(format!("the gzip body does not inflate: {e}")))?;
        if inflated.len() as u64 > limit {
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the report inflates beyond {limit} bytes")));
        }
        &inflated
    } else {
        body
    };
    let name = std::path::Path::new("request body");
    let report = nix_evalcost_core::report_io::report_from_bytes(name, json, limit).map_err(|e| ApiError::bad(e.to_string()))?;
    let gz = body.starts_with(&[0x1f, 0x8b]).then_some(body);
    nix_evalcost_store::record::records_with_document(&report, json, gz).map_err(ApiError::bad)
}

/// The size a gzip body inflates to, from its trailer (ISIZE: the last member's length modulo
/// 2^32), at most `limit` + 1: a hint for one allocation, where growing by doubling copied
/// the report twice over (memmove was a tenth of the server's CPU per ingest, perf). A wrong
/// trailer costs a reallocation, nothing more.
fn inflated_size_hint(body: &[u8], limit: u64) -> usize {
    if !body.starts_with(&[0x1f, 0x8b]) || body.len() < 18 {
        return 0;
    }
    let isize = u32::from_le_bytes(body[body.len() - 4..].try_into().expect("four bytes"));
    (isize as u64).min(limit.saturating_add(1)) as usize
}

/// The directory collector inside the server: polls, and queues what it finds to the writer.
pub struct Collector {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Collector {
    pub fn start(dir: PathBuf, interval: Duration, writer: Writer) -> Collector {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut collector = nix_evalcost_store::collector::Collector::default();
            while !flag.load(Ordering::Relaxed) {
                let found = collector.poll(&dir);
                for e in found.skipped {
                    tracing::warn!(error = %e, "skipped a report");
                }
                for record in found.records {
                    let digest = record.0.digest.clone();
                    match writer.store_blocking(record) {
                        Ok(true) => tracing::info!(digest = %digest, dir = %dir.display(), "collected"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e.message, "collecting failed"),
                    }
                }
                std::thread::sleep(interval);
            }
        });
        Collector { stop, thread }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzipped(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn the_size_hint_is_the_trailers_bounded_by_the_limit() {
        let body = gzipped(&[b'x'; 5000]);
        assert_eq!(inflated_size_hint(&body, 1 << 20), 5000);
        assert_eq!(inflated_size_hint(&body, 100), 101, "never more than the limit allows");
        assert_eq!(inflated_size_hint(b"{\"not\": \"gzip\"}", 1 << 20), 0);
        let mut hostile = body.clone();
        let n = hostile.len();
        hostile[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(inflated_size_hint(&hostile, 1 << 20), (1 << 20) + 1, "a lying trailer reserves at most the limit");
        assert_eq!(inflated_size_hint(&body[..10], 1 << 20), 0, "too short for a trailer");
    }
}
