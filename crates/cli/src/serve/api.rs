//! The board's JSON API (`/api/v1`, versioned: fields are only ever added) and its pages.
//! Every list is bounded (`limit` <= 500, `days` <= 3660) and paged (`offset`); metrics come
//! from an allow-list (the history's), and anything else is a 400 naming the allowed ones.

use super::{ApiError, App};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use nix_evalcost_store::calendar::{self, Bucket};
use nix_evalcost_store::engine::{EvaluationQuery, EvaluationRow};
use nix_evalcost_store::record::{self, display_stored, path_components, METRICS};
use nix_evalcost_store::{PredictQuery, ShowQuery};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub const MAX_LIMIT: i64 = 500;
pub const MAX_DAYS: i64 = 3660;
const MAX_OFFSET: i64 = 1_000_000;

type Params = Query<HashMap<String, String>>;

/// The page's scripts are files of this server, inline data is JSON, nothing is fetched from
/// elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn metric_param(params: &HashMap<String, String>, default: &str) -> Result<usize, ApiError> {
    let name = params.get("metric").map_or(default, String::as_str);
    record::history_metric(name).map_err(|_| ApiError::bad(format!("unknown metric {name:?}; allowed: {}", METRICS.join(", "))))
}

fn int_param(params: &HashMap<String, String>, name: &str, default: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    let Some(text) = params.get(name) else { return Ok(default) };
    match text.parse::<i64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ApiError::bad(format!("{name}={text:?}: give a whole number from {min} to {max}"))),
    }
}

fn flake_param(params: &HashMap<String, String>) -> Option<String> {
    params.get("flake").filter(|f| !f.is_empty()).cloned()
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn metrics_object(values: &[i64; 8]) -> Value {
    Value::Object(METRICS.iter().zip(values).map(|(m, v)| (m.to_string(), json!(v))).collect())
}

fn evaluation_json(row: &EvaluationRow) -> Value {
    let e = &row.evaluation;
    json!({
        "id": row.id, "digest": e.digest, "started_at": rfc3339(e.started_at), "flake": e.flake, "revision": e.revision,
        "command": e.command, "mode": e.mode, "hostname": e.hostname, "nix_version": e.nix_version,
        "complete": e.complete, "errors": e.errors, "sample_rate": e.sample_rate, "metrics": metrics_object(&e.values),
    })
}

/// `GET /api/v1`: what the API offers.
pub async fn index() -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"), "api": 1, "metrics": METRICS,
        "buckets": Bucket::ALL.iter().map(|b| b.name()).collect::<Vec<_>>(),
        "limits": { "limit": MAX_LIMIT, "days": MAX_DAYS },
        "endpoints": ["/api/v1/evaluations", "/api/v1/evaluations/{id}", "/api/v1/history", "/api/v1/predictions", "/api/v1/alerts", "/api/v1/reports (POST)", "/metrics", "/healthz"],
    }))
}

/// `GET /api/v1/evaluations?metric=&days=&limit=&offset=&flake=`: the most expensive
/// evaluations of the last `days`, by `metric`.
pub async fn evaluations(State(app): State<Arc<App>>, uri: Uri, Query(p): Params) -> Result<Json<Arc<Value>>, ApiError> {
    cached(&app, &uri, evaluations_answer(&app, p)).await
}

/// The answer for `uri`: from the cache while the store is unchanged, else computed by
/// `answer` (not run when cached) and kept.
async fn cached(app: &App, uri: &Uri, answer: impl std::future::Future<Output = Result<Json<Value>, ApiError>>) -> Result<Json<Arc<Value>>, ApiError> {
    let key = uri.to_string();
    if let Some(hit) = app.answers.get(&key) {
        return Ok(Json(hit));
    }
    let generation = app.answers.now();
    let value = Arc::new(answer.await?.0);
    app.answers.put(key, generation, value.clone());
    Ok(Json(value))
}

async fn evaluations_answer(app: &App, p: HashMap<String, String>) -> Result<Json<Value>, ApiError> {
    let metric = metric_param(&p, "wall")?;
    let days = int_param(&p, "days", 7, 1, MAX_DAYS)?;
    let limit = int_param(&p, "limit", 50, 1, MAX_LIMIT)?;
    let offset = int_param(&p, "offset", 0, 0, MAX_OFFSET)?;
    let now = now();
    let query = EvaluationQuery { metric, from: now - days * 86_400, until: now + 1, flake: flake_param(&p), limit, offset };
    let (total, rows) = app.read(move |store| store.engine().evaluations(&query)).await?;
    let next = (offset + (rows.len() as i64) < total).then_some(offset + rows.len() as i64);
    Ok(Json(json!({
        "metric": METRICS[metric], "days": days, "limit": limit, "offset": offset, "total": total, "next_offset": next,
        "evaluations": rows.iter().map(|e| { let mut v = evaluation_json(e); v["value"] = json!(e.evaluation.values[metric]); v }).collect::<Vec<_>>(),
    })))
}

fn id_param(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().ok().filter(|&i| i > 0).ok_or_else(|| ApiError::bad(format!("evaluation id {id:?} is not a positive whole number")))
}

fn not_found(id: i64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no evaluation {id}"))
}

/// `GET /api/v1/evaluations/{id}`: one evaluation and its walked output graph: every node
/// with its path, its parent (the longest stored prefix of its path) and its exclusive costs.
pub async fn evaluation(State(app): State<Arc<App>>, uri: Uri, Path(id): Path<String>) -> Result<Json<Arc<Value>>, ApiError> {
    cached(&app, &uri, evaluation_answer(&app, id)).await
}

async fn evaluation_answer(app: &App, id: String) -> Result<Json<Value>, ApiError> {
    let id = id_param(&id)?;
    // One pooled connection for the evaluation and whether its report is kept.
    let found = app
        .read(move |store| {
            let Some(evaluation) = store.engine().evaluation(id)? else { return Ok(None) };
            let kept = store.engine().document(id)?.is_some();
            Ok(Some((evaluation, kept)))
        })
        .await?;
    let ((row, outputs), has_report) = found.ok_or_else(|| not_found(id))?;
    let paths: Vec<Vec<String>> = outputs.iter().map(|o| path_components(&o.path)).collect();
    let index: HashMap<&[String], usize> = paths.iter().enumerate().map(|(i, p)| (p.as_slice(), i)).collect();
    let nodes: Vec<Value> = outputs
        .iter()
        .zip(&paths)
        .enumerate()
        .map(|(i, (o, path))| {
            let parent = (1..path.len()).rev().find_map(|n| index.get(&path[..n]).copied());
            json!({ "id": i, "parent": parent, "path": path, "name": display_stored(&o.path), "error": o.error, "metrics": metrics_object(&o.values) })
        })
        .collect();
    Ok(Json(json!({ "evaluation": evaluation_json(&row), "nodes": nodes, "report_page": has_report.then(|| format!("/evaluations/{id}")) })))
}

/// `GET /api/v1/history?metric=&bucket=&days=&flake=&path=`: one metric bucketed over time,
/// for whole evaluations, or for one output (`path`: its attribute names as a JSON array).
pub async fn history(State(app): State<Arc<App>>, uri: Uri, Query(p): Params) -> Result<Json<Arc<Value>>, ApiError> {
    cached(&app, &uri, history_answer(&app, p)).await
}

async fn history_answer(app: &App, p: HashMap<String, String>) -> Result<Json<Value>, ApiError> {
    let metric = metric_param(&p, "wall")?;
    let days = int_param(&p, "days", 30, 1, MAX_DAYS)?;
    let bucket_name = p.get("bucket").map_or("day", String::as_str);
    let bucket = *Bucket::ALL
        .iter()
        .find(|b| b.name() == bucket_name)
        .ok_or_else(|| ApiError::bad(format!("unknown bucket {bucket_name:?}; allowed: hour, day, week, month")))?;
    let output = match p.get("path").filter(|t| !t.is_empty()) {
        Some(text) => {
            let names: Vec<String> = serde_json::from_str(text).map_err(|_| ApiError::bad("path: give the output's attribute names as a JSON array of strings"))?;
            Some(serde_json::to_string(&names).expect("strings serialise"))
        }
        None => None,
    };
    let now = now();
    let query = ShowQuery { bucket, from: now - days * 86_400, until: now + 1, flake: flake_param(&p), glob: None, output, metric };
    let rows = app.read(move |store| store.show(&query)).await?;
    Ok(Json(json!({
        "metric": METRICS[metric], "bucket": bucket.name(), "days": days,
        "buckets": rows.iter().map(|r| json!({
            "start": calendar::format_start(r.start, bucket), "start_epoch": r.start, "flake": r.flake,
            "output": (!r.path.is_empty()).then(|| display_stored(&r.path)),
            "n": r.agg.n, "estimated_evaluations": r.agg.estimated, "min": r.agg.min, "p50": r.agg.quantile(0.5),
            "p95": r.agg.quantile(0.95), "max": r.agg.max, "mean": r.agg.mean(), "errors": r.agg.errors,
        })).collect::<Vec<_>>(),
    })))
}

/// `GET /api/v1/predictions?metric=&quantile=&window=&flake=&per_output=`: as `history predict`.
pub async fn predictions(State(app): State<Arc<App>>, uri: Uri, Query(p): Params) -> Result<Json<Arc<Value>>, ApiError> {
    cached(&app, &uri, predictions_answer(&app, p)).await
}

async fn predictions_answer(app: &App, p: HashMap<String, String>) -> Result<Json<Value>, ApiError> {
    let metric = metric_param(&p, "peak-rss")?;
    let quantile = match p.get("quantile") {
        Some(q) => q.parse::<f64>().ok().filter(|q| (0.0..=1.0).contains(q)).ok_or_else(|| ApiError::bad(format!("quantile={q:?}: give a number from 0 to 1")))?,
        None => 0.95,
    };
    let window = match p.get("window") {
        Some(w) => calendar::parse_duration(w).map_err(|e| ApiError::bad(format!("window: {e}")))?.min(MAX_DAYS * 86_400),
        None => 7 * 86_400,
    };
    let per_output = matches!(p.get("per_output").map(String::as_str), Some("true" | "1"));
    let now = now();
    let query = PredictQuery { metric, quantile, window, now, flake: flake_param(&p), per_output };
    let predictions = app.read(move |store| store.predict(&query)).await?;
    Ok(Json(json!({
        "metric": METRICS[metric], "quantile": quantile, "window_seconds": window, "generated_at": now,
        "predictions": predictions.iter().map(|p| json!({
            "flake": p.flake, "output": p.output.as_deref().map(display_stored), "n": p.n, "value": p.value, "max": p.max,
        })).collect::<Vec<_>>(),
    })))
}

/// `GET /api/v1/alerts?flake=`: the server's `--rule`s evaluated now.
pub async fn alerts(State(app): State<Arc<App>>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let rules = app.rules.clone();
    let flake = flake_param(&p);
    let now = now();
    let alerts = app.read(move |store| store.check(&rules, flake.as_deref(), now)).await?;
    Ok(Json(json!({ "rules": app.rules.iter().map(|r| r.text.clone()).collect::<Vec<_>>(), "generated_at": now, "alerts": alerts })))
}

fn page(html: String) -> Response {
    ([(header::CONTENT_SECURITY_POLICY, CSP), (header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// `GET /`: the board.
pub async fn board() -> Response {
    page(include_str!("assets/board.html").to_string())
}

pub async fn board_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("assets/board.js")).into_response()
}

pub async fn board_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("assets/board.css")).into_response()
}

/// `GET /evaluations/{id}`: the evaluation's own HTML report (the renderer of `profile
/// --html`): its cost table, its output tree as an icicle, and its flamegraphs when the
/// report has call stacks. Drawn from the report as ingested.
pub async fn evaluation_page(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = id_param(&id)?;
    let document = app.read(move |store| store.engine().document(id)).await?.ok_or_else(|| not_found(id))?;
    let html = tokio::task::spawn_blocking(move || crate::cmd::profile::html_of_document(&document, id)).await.map_err(ApiError::internal)?.map_err(ApiError::internal)?;
    Ok(page(html))
}
