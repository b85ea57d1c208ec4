//! A report file's bytes (JSON or gzip), read as `info`, `graph` and `flamegraph` read it, then
//! rendered: no panic, no hang, bounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nix_evalcost_core::metric;
use nix_evalcost_core::render::{flamegraph, graph, info, table};
use std::path::Path;

/// Decompressed reports above this are refused (the product's limit is larger; libFuzzer's
/// memory limit is 2 GiB).
const LIMIT: u64 = 64 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(report) = nix_evalcost_core::report_io::report_from_bytes(Path::new("fuzz.json"), data, LIMIT) else { return };
    let wall = metric::find("wall").unwrap();
    let _ = info::render("fuzz.json", &report);
    let _ = table::summary(&report);
    for format in graph::GraphFormat::ALL {
        let opts = graph::GraphOptions { metric: wall, depth: Some(3), min_share: 0.01, ascii: false };
        let _ = graph::render(&report, format, &opts);
    }
    let _ = flamegraph::folded(std::slice::from_ref(&report), metric::find("alloc").unwrap());
});
