//! Fixed reports for the report CLI's tests: deterministic, with an error node and a hostile
//! attribute name, written with the real writer.
#![allow(dead_code)] // shared by test files that each use some of them

use nix_evalcost_core::cost::{Cost, Gauges, Sizes};
use nix_evalcost_core::report::{FlakeMeta, Kind, Meta, Node, Phase, Report, SCHEMA, SCHEMA_VERSION};
use std::path::{Path, PathBuf};

/// An attribute name built to break every format it lands in.
pub const HOSTILE: &str = "evil\"name\n\x1b[31m=cmd|' /C calc'!A0<script>alert(1)</script>|*_`${x}";

fn cost(wall_ms: u64, thunks: u64, calls: u64, alloc: u64) -> Cost {
    Cost { wall_ns: wall_ms * 1_000_000, cpu_ns: wall_ms * 900_000, thunks, function_calls: calls, gc_bytes: alloc, values: thunks * 2, ..Cost::default() }
}

/// Run `run` (0, 1, 2, …) of the fixture flake: same shape, wall times that vary by run.
pub fn report(run: u64) -> Report {
    let w = |base: u64| base + run * 2;
    type Spec<'a> = (Option<u32>, Vec<&'a str>, Kind, Option<&'a str>, Cost); // parent, path, kind, error, cost
    let spec: Vec<Spec> = vec![
        (None, vec!["packages"], Kind::Attrset, None, cost(0, 1, 0, 32)),
        (Some(0), vec!["packages", "x86_64-linux"], Kind::Attrset, None, cost(1, 3, 1, 64)),
        (Some(1), vec!["packages", "x86_64-linux", "hello"], Kind::Derivation, None, cost(w(10), 120, 40, 4096)),
        (Some(1), vec!["packages", "x86_64-linux", "big"], Kind::Derivation, None, cost(w(300), 90_000, 60_000, 8 << 20)),
        (Some(1), vec!["packages", "x86_64-linux", "broken"], Kind::Error, Some("packages.broken is broken on purpose"), cost(2, 5, 2, 512)),
        (Some(1), vec!["packages", "x86_64-linux", HOSTILE], Kind::Derivation, None, cost(w(20), 300, 100, 16384)),
        (None, vec!["lib"], Kind::Attrset, None, cost(0, 0, 0, 0)),
        (Some(6), vec!["lib", "fib"], Kind::Function, None, cost(0, 0, 0, 0)),
        (None, vec!["legacyPackages"], Kind::Attrset, None, cost(0, 1, 0, 32)),
        (Some(8), vec!["legacyPackages", "x86_64-linux"], Kind::Attrset, None, cost(3, 30, 10, 2048)),
        (Some(9), vec!["legacyPackages", "x86_64-linux", "tools"], Kind::Attrset, None, cost(1, 4, 1, 128)),
        (Some(10), vec!["legacyPackages", "x86_64-linux", "tools", "fmt"], Kind::Derivation, None, cost(w(40), 700, 250, 65536)),
    ];
    let nodes: Vec<Node> = spec
        .into_iter()
        .enumerate()
        .map(|(i, (parent, path, kind, error, cost))| Node {
            id: i as u32,
            parent,
            system: path.get(1).filter(|s| s.contains("linux")).map(|s| s.to_string()),
            path: path.into_iter().map(str::to_string).collect(),
            is_derivation: kind == Kind::Derivation,
            drv_path: (kind == Kind::Derivation).then(|| format!("/nix/store/{i:032}-x.drv")),
            kind,
            error: error.map(str::to_string),
            calls: 1,
            cost,
            after: Gauges { gc_heap_bytes: 64 << 20, rss_bytes: (100 + i as u64) << 20, peak_rss_bytes: 120 << 20 },
        })
        .collect();
    let unattributed = cost(w(50), 40, 6, 1 << 20);
    let mut totals = unattributed;
    for n in &nodes {
        totals.add(&n.cost);
    }
    Report {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        meta: Meta {
            tool_version: "0.1.0".into(),
            nix_version: "2.26.3".into(),
            mode: "walk".into(),
            flake: Some(FlakeMeta {
                original_ref: "github:example/flake".into(),
                locked_url: "github:example/flake/0123456789abcdef0123456789abcdef01234567".into(),
                rev: Some("0123456789abcdef0123456789abcdef01234567".into()),
                dirty_rev: None,
                nar_hash: Some("sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
                last_modified: Some(1_700_000_000),
            }),
            systems: vec!["x86_64-linux".into()],
            all_systems: false,
            force_drv_paths: true,
            hostname: format!("builder-{run}"),
            argv: vec!["nix-evalcost".into(), "profile".into()],
            started_at: format!("2026-11-2{run}T10:00:00Z"),
            complete: true,
            ..Meta::default()
        },
        sizes: Sizes { value: 24, env: 16, bindings: 16, attr: 16, pointer: 8 },
        totals,
        unattributed,
        end: Gauges { gc_heap_bytes: 64 << 20, rss_bytes: 130 << 20, peak_rss_bytes: 140 << 20 },
        phases: vec![Phase { name: "total".into(), cost: totals }],
        nodes,
        stacks: None,
        isolated: Vec::new(),
    }
}

/// Writes runs 0..n into `dir` as run-<k>.json; returns their paths.
pub fn write_runs(dir: &Path, n: u64) -> Vec<PathBuf> {
    (0..n)
        .map(|k| {
            let p = dir.join(format!("run-{k}.json"));
            nix_evalcost_core::report_io::write_report(&p, &report(k)).unwrap();
            p
        })
        .collect()
}
