//! `--format json`: the merged rows with every statistic, plus where the runs came from.

use super::View;
use crate::attrpath::display_path;
use crate::stats::Stats;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct Merged<'a> {
    schema: &'static str,
    runs: usize,
    metric: &'static str,
    stat: &'static str,
    inclusive: bool,
    depth: Option<usize>,
    sources: Vec<Source<'a>>,
    totals: BTreeMap<&'static str, Stats>,
    unattributed: BTreeMap<&'static str, Stats>,
    rows: Vec<Row<'a>>,
}

#[derive(Serialize)]
struct Source<'a> {
    file: &'a str,
    flake: Option<&'a crate::report::FlakeMeta>,
    nix_version: &'a str,
    hostname: &'a str,
    started_at: &'a str,
    complete: bool,
}

#[derive(Serialize)]
struct Row<'a> {
    path: &'a [String],
    display_path: String,
    kind: &'static str,
    errors: usize,
    stats: BTreeMap<&'static str, Stats>,
}

pub fn render(view: &View) -> String {
    let by_metric = |stats: &[Stats]| view.metrics().iter().map(|m| m.name).zip(stats.iter().copied()).collect();
    let merged = Merged {
        schema: "nix-evalcost/merged-v1",
        runs: view.runs(),
        metric: view.metrics()[0].name,
        stat: view.stat.name(),
        inclusive: view.merged.inclusive,
        depth: view.merged.depth,
        sources: view
            .merged
            .runs
            .iter()
            .map(|r| Source {
                file: &r.file,
                flake: r.meta.flake.as_ref(),
                nix_version: &r.meta.nix_version,
                hostname: &r.meta.hostname,
                started_at: &r.meta.started_at,
                complete: r.meta.complete,
            })
            .collect(),
        totals: by_metric(&view.merged.totals),
        unattributed: by_metric(&view.merged.unattributed),
        rows: view
            .rows
            .iter()
            .map(|r| Row {
                path: &r.path,
                display_path: display_path(&r.path),
                kind: r.kind.name(),
                errors: r.errors,
                stats: by_metric(&r.stats),
            })
            .collect(),
    };
    let mut out = serde_json::to_string_pretty(&merged).expect("serializing to memory");
    out.push('\n');
    out
}
