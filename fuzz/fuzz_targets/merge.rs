//! One report's JSON merged as `report` merges files, then rendered in every format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nix_evalcost_core::merge::{merge_json, GroupBy, MergeOptions};
use nix_evalcost_core::render::{csv, json, markdown, openmetrics, table, View};
use nix_evalcost_core::{metric, stats::Stat};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the options, the rest is the report.
    let Some((&pick, json_bytes)) = data.split_first() else { return };
    let opts = MergeOptions {
        metrics: ["wall", "thunks", "rss", "calls"].iter().map(|m| metric::find(m).unwrap()).collect(),
        inclusive: pick & 1 != 0,
        depth: (pick & 2 != 0).then_some((pick >> 4) as usize),
        filters: Vec::new(),
        allow_mixed: false,
        group_by: (pick & 8 != 0).then_some(GroupBy::Command),
    };
    let Ok(merged) = merge_json("fuzz.json", json_bytes, &opts) else { return };
    let view = View::new(&merged, Stat::ALL[(pick as usize >> 2) % Stat::ALL.len()], 20);
    let _ = table::render(&view, &table::TableOptions { width: 80, color: true });
    let _ = table::merged_summary(&view);
    let _ = markdown::render(&view);
    let _ = csv::render(&view);
    let _ = json::render(&view);
    let _ = openmetrics::render(&view);
});
