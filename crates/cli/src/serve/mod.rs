//! `nix-evalcost serve`: a team's history store over HTTP. The board (a page and its JSON API
//! under `/api/v1`), authenticated ingest of reports (`POST /api/v1/reports`, and a directory
//! collector), `/metrics` for Prometheus, and `/healthz`.
//!
//! - [`api`]: the JSON API and the board's pages;
//! - [`ingest`]: the bearer token, request bodies, and the one writer (group commit);
//! - [`metrics`]: `/metrics`, Prometheus text or OpenMetrics by content negotiation.
//!
//! The store is synchronous (rusqlite, postgres): handlers run its calls on tokio's blocking
//! threads, readers from a pool of connections, writes through one writer thread that commits
//! whatever is queued in one transaction (many ingests, one commit).

mod api;
mod cache;
mod ingest;
mod metrics;

use crate::BadInput;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nix_evalcost_store::alerts::Rule;
use nix_evalcost_store::{Location, Store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The store: a SQLite file (`sqlite:PATH` or a path) or `postgres://…`. Default:
    /// $XDG_DATA_HOME/nix-evalcost/history.sqlite.
    #[arg(long, env = "NIX_EVALCOST_DB")]
    db: Option<String>,
    /// Address to listen on (loopback by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8484")]
    listen: SocketAddr,
    /// A file holding the bearer token that `POST /api/v1/reports` requires (or set
    /// NIX_EVALCOST_TOKEN). Without either, ingest over HTTP is off. Never on the command line.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The largest request body accepted (gzip counts compressed), e.g. 64MiB.
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    max_body: u64,
    /// Also ingest reports as they appear in DIR (the collector of `history ingest --watch`).
    #[arg(long, value_name = "DIR")]
    watch: Option<PathBuf>,
    /// How often --watch looks, in seconds.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Drift rules for `/api/v1/alerts` (as `history check --rule`; repeatable).
    #[arg(long = "rule", value_parser = Rule::parse)]
    rules: Vec<Rule>,
    /// The most flakes and outputs labelled in /metrics; the rest are `<other>`.
    #[arg(long, default_value_t = 20)]
    metrics_top: usize,
    /// Seconds a computed /metrics is served again before it is recomputed.
    #[arg(long, default_value_t = 10)]
    metrics_ttl: u64,
    /// Store connections for queries (ingest has its own).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    readers: u16,
    /// Answer cross-origin requests from this origin (CORS is off without it).
    #[arg(long)]
    cors_origin: Option<String>,
}

/// SQLite page caches of the writer and of each of `--readers` connections. With the
/// aggregation slice, they set the server's memory. Halving them (16 and 4 MiB, slices of
/// 100) took peak RSS from 312 to 212 MB but ingest from 241/s to 191/s with a p99 of
/// 713 ms (docs/benchmarks.md): throughput won.
const WRITER_CACHE_MIB: u32 = 64;
/// The aggregate merger's connection: it reads a slice and rewrites a day's aggregates.
const MERGER_CACHE_MIB: u32 = 16;
const READER_CACHE_MIB: u32 = 8;

fn parse_bytes(text: &str) -> Result<u64, String> {
    nix_evalcost_core::gate::quantity(text, nix_evalcost_core::units::Unit::Bytes).map(|b| b as u64)
}

/// An error response: a status and a one-line JSON `{"error": …}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the store failed; see the server's log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

/// What every handler shares.
pub struct App {
    readers: deadpool::unmanaged::Pool<Store>,
    /// Answers of the board's queries, by URL, valid until the store changes.
    answers: cache::Answers,
    writer: ingest::Writer,
    token: Option<Vec<u8>>,
    rules: Vec<Rule>,
    metrics: metrics::Metrics,
    max_body: usize,
}

impl App {
    /// Runs `f` on a pooled store connection, on a blocking thread.
    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&mut Store) -> nix_evalcost_store::Result<T> + Send + 'static) -> Result<T, ApiError> {
        let mut store = self.readers.get().await.map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(move || f(&mut store)).await.map_err(ApiError::internal)?.map_err(ApiError::internal)
    }
}

fn open(db: &Option<String>) -> anyhow::Result<(Location, Store)> {
    let location = db.as_deref().map_or_else(Location::default_sqlite, Location::parse);
    let store = Store::open(&location).map_err(|e| anyhow::anyhow!("cannot open the history store {}: {e}", location.describe()))?;
    Ok((location, store))
}

/// The token: from --token-file, else NIX_EVALCOST_TOKEN; surrounding whitespace dropped.
fn read_token(file: &Option<PathBuf>) -> anyhow::Result<Option<Vec<u8>>> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| BadInput(format!("--token-file {}: {e}", path.display())))?,
        None => match std::env::var("NIX_EVALCOST_TOKEN") {
            Ok(t) => t,
            Err(_) => return Ok(None),
        },
    };
    let token = text.trim();
    if token.len() < 16 {
        return Err(BadInput("the ingest token is shorter than 16 characters; use a long random one (openssl rand -hex 32)".into()).into());
    }
    Ok(Some(token.as_bytes().to_vec()))
}

pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    init_logging();
    let token = read_token(&args.token_file)?;
    let ingest = if token.is_some() { "on" } else { "off" };
    let (location, mut writer_store) = open(&args.db)?;
    writer_store.engine().set_cache_mib(WRITER_CACHE_MIB)?;
    let (_, mut merger_store) = open(&args.db)?;
    merger_store.engine().set_cache_mib(MERGER_CACHE_MIB)?;
    let readers = deadpool::unmanaged::Pool::new(args.readers as usize);
    for _ in 0..args.readers {
        let (_, mut store) = open(&args.db)?;
        store.engine().set_cache_mib(READER_CACHE_MIB)?;
        readers.try_add(store).map_err(|(_, e)| anyhow::anyhow!("{e}"))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| BadInput(format!("cannot listen on {}: {e}", args.listen)))?;
        let addr = listener.local_addr()?;
        let answers = cache::Answers::new(4096);
        let (writer, writer_thread) = ingest::Writer::start(writer_store, merger_store, answers.generation());
        let collector = args.watch.clone().map(|dir| ingest::Collector::start(dir, Duration::from_secs_f64(args.interval.max(0.05)), writer.clone()));
        let app = Arc::new(App {
            readers,
            answers,
            writer,
            token,
            rules: args.rules,
            metrics: metrics::Metrics::new(args.metrics_top, Duration::from_secs(args.metrics_ttl)),
            max_body: args.max_body.min(usize::MAX as u64) as usize,
        });
        let router = router(app, args.cors_origin.as_deref())?;
        tracing::info!(addr = %addr, store = %location.describe(), ingest, "listening");
        eprintln!("nix-evalcost: serving {} on http://{addr}", location.describe());
        axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await?;
        tracing::info!("shutting down: finishing queued ingests");
        if let Some(c) = collector {
            c.stop();
        }
        // The router is gone, and with it every sender but the collector's (stopped): the
        // writer drains its queue, commits, and ends.
        tokio::task::spawn_blocking(move || writer_thread.join()).await.ok();
        tracing::info!("stopped");
        anyhow::Ok(())
    })?;
    Ok(0)
}

fn router(app: Arc<App>, cors_origin: Option<&str>) -> anyhow::Result<axum::Router> {
    use axum::routing::{get, post};
    use tower_http::set_header::SetResponseHeaderLayer;
    use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
    let max_body = app.max_body;
    let mut router = axum::Router::new()
        .route("/", get(api::board))
        .route("/assets/board.js", get(api::board_js))
        .route("/assets/board.css", get(api::board_css))
        .route("/evaluations/{id}", get(api::evaluation_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1", get(api::index))
        .route("/api/v1/evaluations", get(api::evaluations))
        .route("/api/v1/evaluations/{id}", get(api::evaluation))
        .route("/api/v1/history", get(api::history))
        .route("/api/v1/predictions", get(api::predictions))
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/reports", post(ingest::post_report).layer(axum::extract::DefaultBodyLimit::max(max_body)))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such page; the API is under /api/v1") })
        .with_state(app)
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        );
    if let Some(origin) = cors_origin {
        let origin = HeaderValue::from_str(origin).map_err(|_| BadInput(format!("--cors-origin {origin:?} is not a header value")))?;
        router = router.layer(SetResponseHeaderLayer::overriding(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin));
    }
    Ok(router)
}

/// Structured logs: one JSON object per line on stderr; NIX_EVALCOST_LOG sets the filter
/// (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIX_EVALCOST_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().json().with_writer(std::io::stderr).with_env_filter(filter).try_init();
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
