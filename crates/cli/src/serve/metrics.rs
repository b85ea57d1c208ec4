//! `/metrics`: the store's figures (the history's OpenMetrics export) and the server's own
//! ingest counters, in the Prometheus text format or OpenMetrics, whichever the scraper's
//! `Accept` asks for. Computing them reads the whole history, so a result is served again
//! for `--metrics-ttl` seconds.

use super::{ApiError, App};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use nix_evalcost_store::export::{exposition, Exposition, ExtraCounter};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Metrics {
    top: usize,
    ttl: Duration,
    /// The last text computed per format.
    cache: tokio::sync::Mutex<Vec<(Exposition, Instant, String)>>,
}

impl Metrics {
    pub fn new(top: usize, ttl: Duration) -> Metrics {
        Metrics { top, ttl, cache: Default::default() }
    }
}

/// OpenMetrics when the scraper accepts it (Prometheus asks for it first), else the text
/// format.
fn negotiate(headers: &HeaderMap) -> Exposition {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("application/openmetrics-text") {
        Exposition::OpenMetrics
    } else {
        Exposition::Prometheus
    }
}

pub async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    let format = negotiate(&headers);
    // Held while computing: concurrent scrapes wait for one computation, not run many.
    let mut cache = app.metrics.cache.lock().await;
    let fresh = cache.iter().find(|(f, at, _)| *f == format && at.elapsed() < app.metrics.ttl).map(|(_, _, text)| text.clone());
    let text = match fresh {
        Some(text) => text,
        None => {
            let counts = &app.writer.counts;
            let extra = vec![ExtraCounter {
                family: "nix_evalcost_ingested_reports",
                help: "Reports received by this server since it started, by result.",
                samples: vec![
                    ("result", "new".into(), counts.new.load(Ordering::Relaxed) as f64),
                    ("result", "duplicate".into(), counts.duplicate.load(Ordering::Relaxed) as f64),
                    ("result", "rejected".into(), counts.rejected.load(Ordering::Relaxed) as f64),
                ],
            }];
            let top = app.metrics.top;
            let text = app.read(move |store| exposition(store, i64::MIN / 4, i64::MAX / 4, top, format, &extra)).await?;
            cache.retain(|(f, _, _)| *f != format);
            cache.push((format, Instant::now(), text.clone()));
            text
        }
    };
    Ok(([(header::CONTENT_TYPE, format.content_type())], text))
}
