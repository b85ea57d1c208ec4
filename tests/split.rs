//! Split walks on real Nix: `profile --shard I/N` on each shard, joined by `nix-evalcost merge`,
//! against one walk of everything.

mod common;
use common::*;
use nix_evalcost_core::report::Report;
use std::collections::BTreeSet;

/// Packages that share nothing (each computes its own fib), a configuration-like entry, lib
/// entries and a failing package: enough units for every shard of 3 to get some.
fn split_flake() -> Flake {
    let system = current_system();
    let packages: Vec<String> = (0..12).map(|i| format!("p{i} = {{ type = \"derivation\"; v = fib {}; }};", 5 + i % 6)).collect();
    flake_with(
        FIB,
        &format!(
            "{{ packages.{system} = {{ {} bad = throw \"no\"; }}; lib = {{ a = fib 9; b = fib 7; c = fib 3; }}; \
             checks.{system}.t = fib 4; formatter.{system} = fib 2; }}",
            packages.join(" ")
        ),
    )
}

fn node_set(report: &Report) -> BTreeSet<String> {
    report.nodes.iter().map(|n| n.path.join(".")).collect()
}

fn merge(args: &[&std::path::Path], extra: &[&str]) -> std::process::Output {
    cli().arg("merge").args(args).args(extra).output().unwrap()
}

#[test]
fn shards_joined_equal_the_whole_walk() {
    let flake = split_flake();
    let whole = profile(&flake.url(), &[]);
    whole.assert_success();
    let whole = whole.report();
    let shards: Vec<Run> = (1..=3).map(|i| profile(&flake.url(), &["--shard", &format!("{i}/3")])).collect();
    let mut units_seen = BTreeSet::new();
    for (i, run) in shards.iter().enumerate() {
        run.assert_success();
        let report = run.report();
        assert_eq!(report.meta.shard.map(|s| s.to_string()), Some(format!("{}/3", i + 1)));
        // Each shard is conserved on its own, like any walk.
        assert_eq!(report.charged_sum(), report.totals, "shard {}", i + 1);
        let units: BTreeSet<String> = report.nodes.iter().filter(|n| nix_evalcost_core::walk_policy::is_unit(&n.path)).map(|n| n.path.join(".")).collect();
        assert!(!units.is_empty(), "shard {} walked no unit", i + 1);
        assert!(units_seen.is_disjoint(&units), "a unit in two shards: {units:?}");
        units_seen.extend(units);
    }

    let dir = tempfile::tempdir().unwrap();
    let joined_path = dir.path().join("joined.json");
    let paths: Vec<&std::path::Path> = shards.iter().rev().map(|r| r.report_path.as_path()).collect();
    let out = merge(&paths, &["-o", joined_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let joined = nix_evalcost_core::report_io::read_report(&joined_path).unwrap();
    joined.validate().unwrap();
    assert_eq!(node_set(&joined), node_set(&whole));
    assert!(joined.meta.complete);
    assert_eq!(joined.meta.parts.len(), 3);
    assert_eq!(joined.charged_sum(), joined.totals);
    // Outputs that share nothing cost the same wherever they were walked; the failing one
    // stays an error.
    for path in ["lib.a", "lib.b", "checks.x86_64-linux.t"].iter().map(|p| p.replace("x86_64-linux", &current_system())) {
        assert_eq!(node(&joined, &path).cost.function_calls, node(&whole, &path).cost.function_calls, "{path}");
        assert_eq!(node(&joined, &path).cost.primop_calls, node(&whole, &path).cost.primop_calls, "{path}");
    }
    let bad = format!("packages.{}.bad", current_system());
    assert!(node(&joined, &bad).error.as_deref().unwrap_or("").contains("no"));
    // Each part is conserved against its own process's totals.
    for (part, shard) in joined.meta.parts.iter().zip(&shards) {
        let shard = shard.report();
        assert_eq!(part.totals, shard.totals, "{}", part.name);
        assert_eq!(part.charged_sum(&joined.nodes), part.totals, "{}", part.name);
    }

    // `report` joins shards itself: the same rows as the joined report.
    let table = |files: &[&std::path::Path]| {
        let out = cli().arg("report").args(files).args(["--format", "csv", "--top", "100", "--metric", "fncalls"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(table(&paths), table(&[joined_path.as_path()]));
}

#[test]
fn merge_refuses_missing_and_foreign_shards_with_one_line() {
    let flake = split_flake();
    let one = profile(&flake.url(), &["--shard", "1/2"]);
    one.assert_success();
    let out = merge(&[one.report_path.as_path()], &["-o", "/dev/null/never"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("shard 2/2 is missing") && stderr.contains("--allow-missing"), "{stderr}");

    // The other shard of an edited flake: a different revision.
    std::fs::write(flake.path("flake.nix"), std::fs::read_to_string(flake.path("flake.nix")).unwrap().replace("fib 9", "fib 10")).unwrap();
    let two = profile(&flake.url(), &["--shard", "2/2"]);
    two.assert_success();
    let dir = tempfile::tempdir().unwrap();
    let joined = dir.path().join("joined.json");
    let out = merge(&[one.report_path.as_path(), two.report_path.as_path()], &["-o", joined.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("walked different flakes"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_file_absent(&joined);

    // A partial join when asked: marked incomplete.
    let out = merge(&[one.report_path.as_path()], &["--allow-missing", "-o", joined.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!nix_evalcost_core::report_io::read_report(&joined).unwrap().meta.complete);

    let bad = profile(&flake.url(), &["--shard", "3/2"]);
    assert_eq!(bad.output.status.code(), Some(2));
    assert!(bad.stderr().contains("invalid shard '3/2'"), "{}", bad.stderr());
}

/// Per output path: (function calls, primop calls), for nodes with no error.
fn counters(report: &Report) -> std::collections::BTreeMap<String, (u64, u64)> {
    report.nodes.iter().filter(|n| n.error.is_none()).map(|n| (n.path.join("."), (n.cost.function_calls, n.cost.primop_calls))).collect()
}

/// Each part is conserved against its own process's totals.
fn assert_parts_conserved(joined: &Report) {
    assert_eq!(joined.charged_sum(), joined.totals);
    for part in &joined.meta.parts {
        assert_eq!(part.charged_sum(&joined.nodes), part.totals, "{}", part.name);
    }
}

#[test]
fn parallel_walks_equal_the_sequential_one() {
    let flake = split_flake();
    let one = profile(&flake.url(), &["-j", "1"]);
    one.assert_success();
    let two = profile(&flake.url(), &["-j", "2"]);
    two.assert_success();
    let whole = profile(&flake.url(), &[]);
    whole.assert_success();
    let (one, two, whole) = (one.report(), two.report(), whole.report());
    assert_eq!(node_set(&one), node_set(&whole));
    assert_eq!(node_set(&two), node_set(&whole));
    // Units share nothing here: each costs the same whichever worker walked it. Structure nodes
    // (walked by every worker) add up over the workers, so compare units only.
    let units = |r: &Report| -> std::collections::BTreeMap<String, (u64, u64)> {
        counters(r).into_iter().filter(|(p, _)| nix_evalcost_core::walk_policy::is_unit(&p.split('.').map(str::to_string).collect::<Vec<_>>())).collect()
    };
    assert_eq!(units(&one), units(&whole));
    assert_eq!(units(&two), units(&whole));
    assert!(two.meta.complete && two.meta.parts.len() >= 2, "{:?}", two.meta.parts.iter().map(|p| &p.name).collect::<Vec<_>>());
    // -j 1's one worker wrote the joined report itself: one part that walked every node, in
    // the order one walk visits them.
    assert_eq!(one.meta.parts.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["worker 1"]);
    assert_eq!(one.meta.parts[0].nodes, (0..one.nodes.len() as u32).collect::<Vec<_>>());
    assert!(one.meta.worker.is_none() && one.meta.complete);
    let in_order = |r: &Report| r.nodes.iter().map(|n| n.path.join(".")).collect::<Vec<_>>();
    assert_eq!(in_order(&one), in_order(&whole));
    assert_parts_conserved(&one);
    assert_parts_conserved(&two);
    // Every unit was walked by exactly one worker, and the report says which.
    let mut owners = std::collections::BTreeMap::new();
    for part in &two.meta.parts {
        for &id in &part.nodes {
            assert!(owners.insert(id, part.name.clone()).is_none());
        }
    }
    for node in two.nodes.iter().filter(|n| nix_evalcost_core::walk_policy::is_unit(&n.path)) {
        assert!(owners.contains_key(&node.id), "{} has no worker", node.path.join("."));
    }
}

#[test]
fn a_killed_worker_loses_only_its_output() {
    // Evaluating lib.killer SIGKILLs the nix evaluating it, as the kernel's OOM killer would.
    let system = current_system();
    let flake = flake_with(
        FIB,
        &format!(
            "{{ lib = {{ a = fib 9; b = fib 7; killer = builtins.exec [ \"sh\" \"-c\" \"kill -9 $PPID\" ]; m = fib 5; z = fib 3; }}; \
             packages.{system} = {{ p = fib 6; q = fib 8; }}; }}"
        ),
    );
    let run = profile(&flake.url(), &["-j", "2", "--", "--option", "allow-unsafe-native-code-during-evaluation", "true"]);
    run.assert_success();
    assert!(run.stderr().contains("was killed by SIGKILL"), "{}", run.stderr());
    let report = run.report();
    assert!(report.meta.complete);
    let killer = node(&report, "lib.killer");
    assert!(killer.error.as_deref().unwrap_or("").contains("killed by SIGKILL"), "{killer:?}");
    for path in ["lib.a", "lib.b", "lib.m", "lib.z", &format!("packages.{system}.p"), &format!("packages.{system}.q")] {
        let n = node(&report, path);
        assert!(n.error.is_none(), "{path}: {:?}", n.error);
        assert!(n.cost.function_calls > 0, "{path} was not walked");
    }
    assert_eq!(node(&report, "lib.a").cost.function_calls, 109, "fib 9 makes 2*F(10)-1 = 109 calls");
    assert_parts_conserved(&report);
    // `info` says which processes walked it.
    let info = cli().arg("info").arg(&run.report_path).output().unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("processes walked it") && info.contains("worker "), "{info}");
}

#[test]
fn a_worker_over_its_memory_budget_is_replaced() {
    let flake = flake_with(FIB, "{ lib = { a = fib 9; b = fib 7; c = fib 5; }; }");
    // Any worker is over 1 MiB: each walks one output, which is then recorded as over budget.
    let run = profile(&flake.url(), &["-j", "1", "--max-memory", "1MiB"]);
    run.assert_success();
    let report = run.report();
    for path in ["lib.a", "lib.b", "lib.c"] {
        let error = node(&report, path).error.clone().unwrap_or_default();
        assert!(error.contains("out of memory budget") && error.contains("(--max-memory "), "{path}: {error}");
    }
    assert_eq!(node(&report, "lib.a").cost.function_calls, 109);
    let replaced = report.meta.parts.iter().filter(|p| p.ended.as_deref().is_some_and(|e| e.contains("memory budget"))).count();
    assert_eq!(replaced, 3, "{:?}", report.meta.parts.iter().map(|p| (&p.name, &p.ended)).collect::<Vec<_>>());
    assert_parts_conserved(&report);
    let bad = profile(&flake.url(), &["--max-memory", "lots"]);
    assert_eq!(bad.output.status.code(), Some(2));
}

#[test]
fn isolate_gives_each_output_its_standalone_cost_and_the_work_it_shares() {
    // lib.a, walked first, is charged fib 15 (1973 calls); lib.b reads the same value.
    let lets = format!("{FIB} shared = fib 15;");
    let flake = flake_with(&lets, "{ lib = { a = shared + 1; b = shared + 2; c = fib 5; }; }");
    // One walker: with -j 2, lib.b could go to another worker, which would compute `shared` again.
    let run = profile(&flake.url(), &["--isolate"]);
    run.assert_success();
    let report = run.report();
    let rows = nix_evalcost_core::isolate::rows(&report);
    let by_path: std::collections::BTreeMap<String, (u64, u64, u64)> =
        rows.iter().map(|r| (r.path.join("."), (r.in_walk.function_calls, r.standalone.function_calls, r.shared.function_calls))).collect();
    assert_eq!(by_path["lib.a"], (1973, 1973, 0));
    assert_eq!(by_path["lib.b"], (0, 1973, 1973));
    assert_eq!(by_path["lib.c"], (15, 15, 0));
    assert!(run.stdout().contains("shared"), "{}", run.stdout());

    // Standalone is what a walk of that output alone costs: a flake with only lib.b.
    let alone = flake_with(&lets, "{ lib = { b = shared + 2; }; }");
    let alone_run = profile(&alone.url(), &[]);
    alone_run.assert_success();
    let alone_report = alone_run.report();
    let alone_b = node(&alone_report, "lib.b");
    let isolated_b = rows.iter().find(|r| r.path.join(".") == "lib.b").unwrap();
    assert_eq!(isolated_b.standalone.function_calls, alone_b.cost.function_calls);
    assert_eq!(isolated_b.standalone.primop_calls, alone_b.cost.primop_calls);
    assert_eq!(isolated_b.standalone.lookups, alone_b.cost.lookups);
    if thunks_readable(&report) {
        assert_eq!(isolated_b.standalone.thunks, alone_b.cost.thunks);
    }

    // The shared cost in report, graph and compare.
    let csv = cli().args(["report", "--cost", "shared", "--format", "csv", "--metric", "fncalls", "--columns", "fncalls"]).arg(&run.report_path).output().unwrap();
    assert!(csv.status.success(), "{}", String::from_utf8_lossy(&csv.stderr));
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("lib.b,") && l.contains(",1973")), "{csv}");
    let graph = cli().args(["graph", "--cost", "standalone", "--metric", "fncalls"]).arg(&run.report_path).output().unwrap();
    assert!(graph.status.success() && String::from_utf8_lossy(&graph.stdout).contains('b'), "{}", String::from_utf8_lossy(&graph.stderr));
    let compare = cli().args(["compare", "--cost", "shared"]).arg(&run.report_path).arg(&run.report_path).output().unwrap();
    assert!(compare.status.success(), "{}", String::from_utf8_lossy(&compare.stderr));

    // Without --isolate there is no standalone cost to show: one line saying how to get it.
    let plain = cli().args(["report", "--cost", "shared"]).arg(&alone_run.report_path).output().unwrap();
    assert_eq!(plain.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&plain.stderr).contains("profile --isolate"), "{}", String::from_utf8_lossy(&plain.stderr));
}
