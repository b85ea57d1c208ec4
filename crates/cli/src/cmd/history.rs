//! `nix-evalcost history …`: the history of evaluations (crates/store): ingest reports, show
//! them over time, clean, predict, check drift rules, export for Prometheus.

use crate::cmd::inputs;
use crate::{choice, parse_metric_name, BadInput, OutputArgs};
use nix_evalcost_core::metric::Metric;
use nix_evalcost_core::pathglob::PathGlob;
use nix_evalcost_core::units;
use nix_evalcost_store::alerts::Rule;
use nix_evalcost_store::calendar::{self, Bucket};
use nix_evalcost_store::record::{self, display_stored, history_metric, Held, Interner};
use nix_evalcost_store::{export, Location, PredictQuery, ShowQuery, Store};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// The store: a SQLite file (`sqlite:PATH` or a path) or `postgres://…`. Default:
    /// $XDG_DATA_HOME/nix-evalcost/history.sqlite.
    #[arg(long, env = "NIX_EVALCOST_DB", global = true)]
    db: Option<String>,
    #[command(subcommand)]
    command: HistoryCommand,
}

#[derive(clap::Subcommand)]
enum HistoryCommand {
    /// Store reports (files, directories, globs); the same report twice is stored once.
    Ingest(IngestArgs),
    /// One metric over time, bucketed, with percentiles per bucket.
    Show(ShowArgs),
    /// Delete evaluations older than N days.
    Clean(CleanArgs),
    /// The quantile of a metric over a recent window, per flake (and output): what a scheduler
    /// reads to route heavy evaluations. JSON.
    Predict(PredictArgs),
    /// Evaluate drift rules on the latest evaluations; exit 1 if any alert.
    Check(CheckArgs),
    /// The store as Prometheus/OpenMetrics text (node_exporter's textfile collector).
    Export(ExportArgs),
}

#[derive(clap::Args)]
struct IngestArgs {
    /// Reports: files, directories, globs.
    inputs: Vec<PathBuf>,
    /// Keep ingesting reports as they appear in DIR (until interrupted).
    #[arg(long, value_name = "DIR")]
    watch: Option<PathBuf>,
    /// How often --watch looks, in seconds.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
}

#[derive(clap::Args)]
struct ShowArgs {
    #[arg(long, default_value = "day", value_parser = choice(&Bucket::ALL, Bucket::name))]
    bucket: Bucket,
    /// The last N days (default 30).
    #[arg(long, conflicts_with = "since")]
    days: Option<i64>,
    /// From this UTC date (YYYY-MM-DD) or RFC 3339 time.
    #[arg(long, value_parser = calendar::parse_since)]
    since: Option<i64>,
    /// Only this flake (as given: `path:/src/app`, `github:owner/repo`).
    #[arg(long)]
    flake: Option<String>,
    /// Outputs matching this glob (each its own series); without it, whole evaluations.
    #[arg(long, value_parser = PathGlob::parse)]
    filter: Option<PathGlob>,
    #[arg(long, default_value = "wall", value_parser = parse_history_metric)]
    metric: usize,
    #[arg(long, default_value = "table", value_parser = ["table", "json", "csv"])]
    format: String,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(clap::Args)]
struct CleanArgs {
    /// Delete evaluations that started before the UTC day N days ago.
    #[arg(long)]
    before_days: i64,
}

#[derive(clap::Args)]
struct PredictArgs {
    #[arg(long, default_value = "peak-rss", value_parser = parse_history_metric)]
    metric: usize,
    #[arg(long, default_value_t = 0.95)]
    quantile: f64,
    /// The window: 7d, 12h, 2w.
    #[arg(long, default_value = "7d", value_parser = calendar::parse_duration)]
    window: i64,
    #[arg(long)]
    flake: Option<String>,
    /// One prediction per output too.
    #[arg(long)]
    per_output: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// '[GLOB:]METRIC above|below|outside BASELINE DELTA' or '[GLOB:]METRIC shifted PERIOD [@p<A]'
    /// (repeatable), e.g. 'peak-rss above 4GiB +10%', 'packages.**:fncalls outside median(14d) 5%'.
    #[arg(long = "rule", required = true, value_parser = Rule::parse)]
    rules: Vec<Rule>,
    #[arg(long)]
    flake: Option<String>,
    /// POST the alerts as JSON to this URL (a failure is reported, not fatal).
    #[arg(long)]
    webhook: Option<String>,
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
}

#[derive(clap::Args)]
struct ExportArgs {
    #[arg(long, default_value = "openmetrics", value_parser = ["openmetrics"])]
    format: String,
    /// Only evaluations of the last N days (default: all).
    #[arg(long)]
    days: Option<i64>,
    /// The most flakes and outputs labelled; the rest are `<other>`.
    #[arg(long, default_value_t = 20)]
    top: usize,
    #[command(flatten)]
    output: OutputArgs,
}

fn parse_history_metric(name: &str) -> Result<usize, String> {
    parse_metric_name(name)?;
    history_metric(name)
}

fn now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn open(db: &Option<String>) -> anyhow::Result<Store> {
    let location = db.as_deref().map_or_else(Location::default_sqlite, Location::parse);
    Store::open(&location).map_err(|e| anyhow::anyhow!("cannot open the history store {}: {e}", location.describe()))
}

pub fn run(args: HistoryArgs) -> anyhow::Result<i32> {
    match args.command {
        HistoryCommand::Ingest(a) => ingest(&args.db, a),
        HistoryCommand::Show(a) => show(&args.db, a),
        HistoryCommand::Clean(a) => {
            let deleted = open(&args.db)?.clean(a.before_days, now())?;
            eprintln!("deleted {}", units::plural(deleted as usize, "evaluation"));
            Ok(0)
        }
        HistoryCommand::Predict(a) => predict(&args.db, a),
        HistoryCommand::Check(a) => check(&args.db, a),
        HistoryCommand::Export(a) => {
            let mut store = open(&args.db)?;
            let from = a.days.map_or(i64::MIN / 4, |d| now() - d * 86_400);
            let text = export::openmetrics(&mut store, from, i64::MAX / 4, a.top)?;
            a.output.emit(&text)?;
            Ok(0)
        }
    }
}

// ---- ingest --------------------------------------------------------------------------------

fn ingest(db: &Option<String>, args: IngestArgs) -> anyhow::Result<i32> {
    if args.inputs.is_empty() && args.watch.is_none() {
        return Err(BadInput("history ingest needs reports (files, directories, globs) or --watch DIR".into()).into());
    }
    let mut store = open(db)?;
    if !args.inputs.is_empty() {
        let files = inputs::expand(&args.inputs)?;
        // Every file is read and validated before anything is stored.
        let (held, interner) = read_all(&files)?;
        let read = held.len();
        let mut new = 0;
        let mut held = held.into_iter().peekable();
        while held.peek().is_some() {
            let chunk: Vec<_> = held.by_ref().take(INGEST_CHUNK).map(|h| h.release(&interner)).collect();
            new += store.ingest(&chunk)?;
        }
        eprintln!("{} read, {new} new", units::plural(read, "report"));
    }
    if let Some(dir) = args.watch {
        watch(&mut store, &dir, Duration::from_secs_f64(args.interval.max(0.05)))?;
    }
    Ok(0)
}

/// Reports unpacked for storing at a time: one store transaction's worth.
const INGEST_CHUNK: usize = 500;

/// Reads and validates `files` on every core (parsing is half of an ingest's work), in order,
/// and holds them packed until they are stored.
fn read_all(files: &[PathBuf]) -> Result<(Vec<Held>, Interner), BadInput> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len().max(1));
    let chunk = files.len().div_ceil(threads).max(1);
    let interner = std::sync::Mutex::new(Interner::default());
    let held = std::thread::scope(|scope| {
        let interner = &interner;
        let parts: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|f| nix_evalcost_store::read_record(f).map(|r| Held::hold(r, interner)).map_err(BadInput)).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut all = Vec::with_capacity(files.len());
        for part in parts {
            all.extend(part.join().expect("reading does not panic")?);
        }
        Ok::<_, BadInput>(all)
    })?;
    Ok((held, interner.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner())))
}

/// The collector: ingests reports as they appear in `dir` (store's `collector`), until SIGINT
/// or SIGTERM.
fn watch(store: &mut Store, dir: &std::path::Path, interval: Duration) -> anyhow::Result<()> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let mut collector = nix_evalcost_store::collector::Collector::default();
    eprintln!("watching {} (Ctrl-C to stop)", dir.display());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let found = collector.poll(dir);
        for e in &found.skipped {
            eprintln!("nix-evalcost: skipped {e}");
        }
        if !found.records.is_empty() {
            let new = store.ingest(&found.records)?;
            if new > 0 {
                eprintln!("ingested {}", units::plural(new, "report"));
            }
        }
        std::thread::sleep(interval);
    }
    Ok(())
}

// ---- show ----------------------------------------------------------------------------------

fn show(db: &Option<String>, args: ShowArgs) -> anyhow::Result<i32> {
    let mut store = open(db)?;
    let now = now();
    let from = args.since.unwrap_or_else(|| now - args.days.unwrap_or(30) * 86_400);
    let query = ShowQuery { bucket: args.bucket, from, until: now + 1, flake: args.flake, glob: args.filter, output: None, metric: args.metric };
    let rows = store.show(&query)?;
    let metric = record::metric(args.metric);
    let text = match args.format.as_str() {
        "json" => {
            let json: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "start": calendar::format_start(r.start, args.bucket), "flake": r.flake,
                        "output": (!r.path.is_empty()).then(|| display_stored(&r.path)),
                        "metric": metric.name, "n": r.agg.n, "estimated_evaluations": r.agg.estimated, "min": r.agg.min, "p50": r.agg.quantile(0.5),
                        "p95": r.agg.quantile(0.95), "max": r.agg.max, "mean": r.agg.mean(), "errors": r.agg.errors,
                    })
                })
                .collect();
            serde_json::to_string_pretty(&json)? + "\n"
        }
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["start", "flake", "output", "metric", "n", "estimated", "min", "p50", "p95", "max", "mean", "errors"])?;
            for r in &rows {
                let cells = [
                    calendar::format_start(r.start, args.bucket),
                    r.flake.clone(),
                    display_stored(&r.path),
                    metric.name.to_string(),
                    r.agg.n.to_string(),
                    format!("{:.1}", r.agg.estimated),
                    r.agg.min.to_string(),
                    r.agg.quantile(0.5).unwrap_or(0).to_string(),
                    r.agg.quantile(0.95).unwrap_or(0).to_string(),
                    r.agg.max.to_string(),
                    format!("{:.1}", r.agg.mean().unwrap_or(0.0)),
                    r.agg.errors.to_string(),
                ];
                w.write_record(cells.iter().map(|c| nix_evalcost_core::render::csv::defuse(c)))?;
            }
            String::from_utf8(w.into_inner()?)?
        }
        _ => table(&rows, args.bucket, metric),
    };
    crate::OutputArgs::emit(&args.output, &text)?;
    Ok(0)
}

fn table(rows: &[nix_evalcost_store::BucketRow], bucket: Bucket, metric: &Metric) -> String {
    use nix_evalcost_core::attrpath::sanitize_text;
    let fmt = |v: Option<i64>| v.map_or("-".into(), |v| units::format(v.max(0) as u64, metric.unit));
    // Sampled passive reports stand for more evaluations than were stored: say how many.
    let sampled = rows.iter().any(|r| (r.agg.estimated - r.agg.n as f64).abs() > 1e-6);
    let estimate = |r: &nix_evalcost_store::BucketRow| if sampled { format!(" {:>8}", format!("~{:.0}", r.agg.estimated)) } else { String::new() };
    let mut out = format!("{:<12} {:>6}{} {:>10} {:>10} {:>10} {:>10}  {}\n", bucket.name(), "n", if sampled { format!(" {:>8}", "est.") } else { String::new() }, "min", "p50", "p95", "max", "flake / output");
    for r in rows {
        let series = if r.path.is_empty() { r.flake.clone() } else { format!("{} / {}", r.flake, display_stored(&r.path)) };
        out += &format!(
            "{:<12} {:>6}{} {:>10} {:>10} {:>10} {:>10}  {}\n",
            calendar::format_start(r.start, bucket),
            r.agg.n,
            estimate(r),
            fmt(Some(r.agg.min)),
            fmt(r.agg.quantile(0.5)),
            fmt(r.agg.quantile(0.95)),
            fmt(Some(r.agg.max)),
            sanitize_text(&series)
        );
    }
    if rows.is_empty() {
        out += "(no evaluations in this range)\n";
    }
    if sampled {
        out += "est.: the evaluations the sampled passive reports stand for (each counts 1 / its sample rate)\n";
    }
    out
}

// ---- predict -------------------------------------------------------------------------------

fn predict(db: &Option<String>, args: PredictArgs) -> anyhow::Result<i32> {
    if !(0.0..=1.0).contains(&args.quantile) {
        return Err(BadInput(format!("--quantile {} is not between 0 and 1", args.quantile)).into());
    }
    let mut store = open(db)?;
    let query = PredictQuery { metric: args.metric, quantile: args.quantile, window: args.window, now: now(), flake: args.flake, per_output: args.per_output };
    let predictions = store.predict(&query)?;
    let metric = record::metric(args.metric);
    let json = serde_json::json!({
        "metric": metric.name,
        "unit": format!("{:?}", metric.unit).to_lowercase(),
        "quantile": args.quantile,
        "window_seconds": args.window,
        "generated_at": now(),
        "predictions": predictions.iter().map(|p| serde_json::json!({
            "flake": p.flake, "output": p.output.as_deref().map(display_stored), "n": p.n, "value": p.value, "max": p.max,
        })).collect::<Vec<_>>(),
    });
    args.output.emit(&(serde_json::to_string_pretty(&json)? + "\n"))?;
    Ok(0)
}

// ---- check ---------------------------------------------------------------------------------

fn check(db: &Option<String>, args: CheckArgs) -> anyhow::Result<i32> {
    let mut store = open(db)?;
    let now = now();
    let fired = store.check(&args.rules, args.flake.as_deref(), now)?;
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&fired)?),
        _ => {
            for a in &fired {
                let unit = record::metric(history_metric(&a.metric).unwrap_or(0)).unit;
                let f = |v: f64| units::format(v.max(0.0) as u64, unit);
                let what = a.output.as_deref().map_or(a.flake.clone(), |o| format!("{} / {o}", a.flake));
                println!(
                    "ALERT {}: {} is {} (band {}..{}{})",
                    nix_evalcost_core::attrpath::sanitize_text(&a.rule),
                    nix_evalcost_core::attrpath::sanitize_text(&what),
                    f(a.value),
                    f(a.low.max(0.0)),
                    f(a.high),
                    a.p.map_or(String::new(), |p| format!(", p = {p:.3}"))
                );
            }
            if fired.is_empty() {
                println!("no alerts ({} checked)", units::plural(args.rules.len(), "rule"));
            }
        }
    }
    if let Some(url) = &args.webhook {
        let body = serde_json::json!({ "source": "nix-evalcost", "generated_at": now, "alerts": fired });
        match ureq::post(url).timeout(Duration::from_secs(10)).send_json(body) {
            Ok(_) => eprintln!("sent {} to the webhook", units::plural(fired.len(), "alert")),
            Err(e) => eprintln!("nix-evalcost: warning: the webhook {url} failed: {e}; the alerts are above"),
        }
    }
    Ok(if fired.is_empty() { 0 } else { 1 })
}
