//! Call-stack profiles on real Nix. Nix 2.26 (`trace-function-calls` consumed in-process): frames
//! are call sites, and the source text at a frame's position tells which lambda or operator it
//! calls. Nix 2.30+ (`EvalProfiler`): frames name the callee (`fib …:4:13`, `primop lessThan`).
//! Either way per-lambda counts can be checked against NIX_COUNT_CALLS.

mod common;
use common::*;
use nix_evalcost_core::report::Report;
use std::collections::BTreeMap;

const SOURCE: &str = r#"{
  outputs = { self }:
    let
      fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2);
      isEven = n: if n == 0 then true else isOdd (n - 1);
      isOdd = n: if n == 0 then false else isEven (n - 1);
      count = n: if n == 0 then 0 else 1 + count (n - 1);
      failing = n: if n == 0 then throw "deep failure" else failing (n - 1);
    in {
      lib.fib = fib 15;
      lib.even = isEven 301;
      lib.folded = builtins.foldl' (acc: x: acc + x) 0 (builtins.genList (x: x) 100);
      lib.zdeep = count 1500;
      lib.yfails = failing 40;
      lib.zz-after = fib 5;
    };
}
"#;

fn stacked_walk(extra_env: &[(&str, &str)]) -> (Flake, Report, serde_json::Value) {
    let flake = Flake::new(SOURCE, &[]);
    let expr = walk_expr(&flake, "stacks = true;");
    let (run, stats) = nix_eval_with_stats(&expr, extra_env);
    run.assert_success();
    assert!(!run.stderr().contains("function-trace"), "trace lines leaked to stderr");
    (flake, run.report(), stats)
}

/// Calls per frame (summed over the tree) under the walked node at `path`.
fn calls_by_frame(report: &Report, path: &str) -> BTreeMap<String, u64> {
    let stacks = report.stacks.as_ref().expect("the report has stacks");
    let walk = node(report, path).id;
    let mut under = vec![false; stacks.nodes.len()];
    let mut out = BTreeMap::new();
    for (i, n) in stacks.nodes.iter().enumerate() {
        under[i] = match n.parent {
            None => n.walk_node == Some(walk),
            Some(p) => under[p as usize],
        };
        if under[i] {
            *out.entry(stacks.frames[n.frame as usize].clone()).or_default() += n.calls;
        }
    }
    out
}

/// The source text at a frame `…/flake.nix:LINE:COL`.
fn text_at(frame: &str) -> Option<&'static str> {
    let mut parts = frame.rsplitn(3, ':');
    let (col, line) = (parts.next()?.parse::<usize>().ok()?, parts.next()?.parse::<usize>().ok()?);
    let line = SOURCE.lines().nth(line - 1)?;
    line.get(col - 1..)
}

/// Which function a frame calls: named by the frame (2.30+), or read from the source at the call
/// site (2.26).
fn callee(frame: &str) -> String {
    if let Some(primop) = frame.strip_prefix("primop ") {
        return format!("__{primop}");
    }
    if !frame.starts_with('/') && !frame.starts_with('«') {
        return frame.split(' ').next().unwrap().to_string(); // "fib /nix/store/…:4:13"
    }
    match text_at(frame) {
        Some(t) if t.starts_with('<') => "__lessThan".into(),
        Some(t) if t.starts_with('-') => "__sub".into(),
        Some(t) => t.split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '.').next().unwrap().to_string(),
        None => frame.to_string(),
    }
}

fn fib_calls(n: u64) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..=n {
        (a, b) = (b, a + b);
    }
    2 * a - 1
}

#[test]
fn fib_frames_have_exact_counts() {
    let (_, report, _) = stacked_walk(&[]);
    let by_callee = calls_by_frame(&report, "lib.fib").into_iter().fold(BTreeMap::new(), |mut m: BTreeMap<String, u64>, (f, c)| {
        *m.entry(callee(&f)).or_default() += c;
        m
    });
    let calls = fib_calls(15); // 1973
    let inner = (calls - 1) / 2; // calls that recurse: 986
    assert_eq!(by_callee.get("fib"), Some(&calls), "{by_callee:?}");
    assert_eq!(by_callee.get("__lessThan"), Some(&calls), "{by_callee:?}");
    assert_eq!(by_callee.get("__sub"), Some(&(2 * inner)), "{by_callee:?}");
    // Every call of the node is a frame: calls + primop calls, as the node's cost says.
    let n = node(&report, "lib.fib");
    let traced: u64 = calls_by_frame(&report, "lib.fib").values().sum();
    assert_eq!(traced, n.cost.function_calls + n.cost.primop_calls);
}

/// A user's own `--trace-function-calls` works as before around a walk with stacks: on Nix
/// 2.26 the plugin takes the trace from FunctionCallTrace itself while it profiles, and hands
/// every other trace back to Nix, whose messages then still reach stderr, balanced.
#[test]
fn a_users_own_function_trace_still_prints_around_a_stacks_walk() {
    let flake = Flake::new(SOURCE, &[]);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let walk = walk_expr(&flake, "stacks = true;").replace("{report}", &report.display().to_string());
    let expr = format!("builtins.seq ({walk}) ((x: x + 1) 41)");
    let output = std::process::Command::new("nix")
        .args(["--option", "plugin-files"])
        .arg(plugin())
        .args(["--extra-experimental-features", "nix-command flakes", "eval", "--trace-function-calls", "--json", "--expr", &expr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "42");
    let entered = stderr.matches("function-trace entered").count();
    let exited = stderr.matches("function-trace exited").count();
    // The call after the walk, at its position in the expression, went to Nix's own trace.
    let after = format!("function-trace entered «string»:1:{} at", expr.find("(x: x + 1) 41").unwrap() + 1);
    assert!(stderr.contains(&after), "no `{after}` in:\n{stderr}");
    assert_eq!(entered, exited, "every traced call entered and left");
    let report: Report = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let fib: u64 = calls_by_frame(&report, "lib.fib").iter().filter(|(f, _)| callee(f) == "fib").map(|(_, c)| c).sum();
    assert_eq!(fib, fib_calls(15), "the walk's own stacks are exact");
}

/// The frames' wall time is in nanoseconds of the nodes' clock, whichever clock timed the calls
/// (the plugin times frames by the CPU's time-stamp counter where it can, and converts at the
/// end): under a leaf node that is nearly all calls, the frames' time is most of the node's,
/// and never more.
#[test]
fn frame_wall_time_is_on_the_nodes_clock() {
    let (_, report, _) = stacked_walk(&[]);
    let stacks = report.stacks.as_ref().expect("the report has stacks");
    let n = node(&report, "lib.fib");
    let mut under = vec![false; stacks.nodes.len()];
    let mut frames_ns = 0;
    for (i, f) in stacks.nodes.iter().enumerate() {
        under[i] = match f.parent {
            None => f.walk_node == Some(n.id),
            Some(p) => under[p as usize],
        };
        if under[i] {
            frames_ns += f.cost.wall_ns;
        }
    }
    assert!(frames_ns <= n.cost.wall_ns, "the frames under lib.fib took {frames_ns} ns, more than the node's {} ns", n.cost.wall_ns);
    assert!(2 * frames_ns >= n.cost.wall_ns, "the frames under lib.fib took {frames_ns} ns, under half the node's {} ns", n.cost.wall_ns);
}

/// `frame` with its store path shortened to `source/` (the hash differs per machine).
fn without_store_hash(frame: &str) -> String {
    match (frame.find("/nix/store/"), frame.find("-source/")) {
        (Some(start), Some(end)) if start < end => format!("{}source/{}", &frame[..start], &frame[end + "-source/".len()..]),
        _ => frame.to_string(),
    }
}

/// The 1-based column of `needle` in SOURCE's 1-based `line` (Nix counts columns in bytes).
fn column(line: usize, needle: &str) -> usize {
    SOURCE.lines().nth(line - 1).unwrap().find(needle).unwrap() + 1
}

#[test]
fn frames_name_the_called_function_on_every_nix() {
    let (_, report, _) = stacked_walk(&[]);
    let frames: BTreeMap<String, u64> = calls_by_frame(&report, "lib.fib").into_iter().map(|(f, c)| (without_store_hash(&f), c)).collect();
    let (calls, inner) = (fib_calls(15), (fib_calls(15) - 1) / 2);
    let lambda = |at: String| format!("fib source/flake.nix:{at}");
    let expected: BTreeMap<String, u64> = match report.stacks.as_ref().unwrap().source.as_str() {
        // 2.30+: the callee, at the lambda's own position (`n: …`, line 4).
        "eval-profiler" => [(lambda(format!("4:{}", column(4, "n: if"))), calls)].into(),
        // 2.26: the called name at each call site: `fib 15` on line 10, and the two recursive
        // calls on line 4, 986 calls each.
        _ => [
            (lambda(format!("10:{}", column(10, "fib 15"))), 1),
            (lambda(format!("4:{}", column(4, "fib (n - 1)"))), inner),
            (lambda(format!("4:{}", column(4, "fib (n - 2)"))), inner),
        ]
        .into(),
    };
    let mut expected = expected;
    expected.insert("primop lessThan".into(), calls);
    expected.insert("primop sub".into(), 2 * inner);
    assert_eq!(frames, expected);
}

#[test]
fn per_lambda_counts_match_nix_count_calls() {
    let (_, report, stats) = stacked_walk(&[("NIX_COUNT_CALLS", "1")]);
    let functions = stats["functions"].as_array().expect("NIX_COUNT_CALLS functions[]");
    let counted = |name: &str| -> u64 {
        functions.iter().filter(|f| f["name"] == name).map(|f| f["count"].as_u64().unwrap()).sum()
    };
    let mut ours: BTreeMap<String, u64> = BTreeMap::new();
    for path in ["lib.fib", "lib.even", "lib.zdeep", "lib.yfails", "lib.zz-after"] {
        for (frame, calls) in calls_by_frame(&report, path) {
            *ours.entry(callee(&frame)).or_default() += calls;
        }
    }
    // Each of these lambdas is called only from call sites in SOURCE, one argument at a time.
    // (`count` recurses past the depth cap; its deeper calls are `[truncated]`: see below.)
    for lambda in ["fib", "isEven", "isOdd", "failing"] {
        assert_eq!(ours.get(lambda).copied().unwrap_or(0), counted(lambda), "{lambda}: ours {ours:?}");
    }
    assert_eq!(ours["isEven"] + ours["isOdd"], 302);

    let primops = &stats["primops"];
    assert_eq!(ours["__lessThan"], primops["lessThan"].as_u64().unwrap());
}

#[test]
fn foldl_calls_its_function_once_per_element() {
    let (_, report, _) = stacked_walk(&[]);
    let stacks = report.stacks.as_ref().unwrap();
    let walk = node(&report, "lib.folded").id;
    // foldl' is called from the source and calls its lambda from C++: on 2.26 that call has no
    // known site ("«none»"), on 2.30+ the frame is the lambda itself.
    let roots: Vec<usize> = (0..stacks.nodes.len()).filter(|&i| stacks.nodes[i].walk_node == Some(walk)).collect();
    let children = |of: usize| -> Vec<(String, u64)> {
        stacks.nodes.iter().filter(|n| n.parent == Some(of as u32)).map(|n| (stacks.frames[n.frame as usize].clone(), n.calls)).collect()
    };
    let is_foldl = |frame: &str| frame == "primop foldl'" || text_at(frame).is_some_and(|t| t.starts_with("builtins.foldl'"));
    let foldl = roots.iter().find(|&&r| is_foldl(&stacks.frames[stacks.nodes[r].frame as usize])).unwrap();
    let inside: u64 = children(*foldl).iter().filter(|(f, _)| f.starts_with("«")).map(|(_, c)| c).sum();
    assert_eq!(inside, 100, "{:?}", children(*foldl));
}

#[test]
fn deep_recursion_is_truncated_and_errors_leave_balanced_frames() {
    let flake = Flake::new(SOURCE, &[]);
    let run = profile(&flake.url(), &["--stacks", "--", "--option", "max-call-depth", "20000"]);
    run.assert_success();
    let report = run.report();
    let stacks = report.stacks.as_ref().unwrap();
    // count 1500 recurses 1500 deep: the tree stops at the cap with one [truncated] frame.
    let deep = calls_by_frame(&report, "lib.zdeep");
    assert!(deep.contains_key("[truncated]"), "{:?}", deep.keys().collect::<Vec<_>>());
    // Under lib.zdeep, one `count` and one `n - 1` frame per level down to the cap: bounded.
    let walk = node(&report, "lib.zdeep").id;
    let mut under = vec![false; stacks.nodes.len()];
    for (i, n) in stacks.nodes.iter().enumerate() {
        under[i] = n.parent.map_or(n.walk_node == Some(walk), |p| under[p as usize]);
    }
    let tree_nodes = under.iter().filter(|&&u| u).count();
    assert!(tree_nodes <= 2 * nix_evalcost_core::stacks::DEPTH_CAP + 2, "{tree_nodes} tree nodes");
    // Nothing is lost past the cap: count 1500 makes 1501 calls of `count` and 1500 of `-`.
    let zdeep = node(&report, "lib.zdeep");
    assert_eq!(zdeep.cost.function_calls + zdeep.cost.primop_calls, 1501 + 1500);
    assert_eq!(deep.values().sum::<u64>(), 1501 + 1500);
    // The failing recursion unwound through 41 frames; the next node starts from its own root.
    assert!(node(&report, "lib.yfails").error.as_deref().unwrap().contains("deep failure"));
    let after = node(&report, "lib.zz-after").id;
    let after_roots = stacks.nodes.iter().filter(|n| n.walk_node == Some(after)).count();
    assert!(after_roots >= 1, "lib.zz-after's calls hang under it, not under the failed stack");
    assert_eq!(calls_by_frame(&report, "lib.zz-after").values().sum::<u64>(), fib_calls(5) + fib_calls(5) + (fib_calls(5) - 1));
    // The flamegraphs were written next to the report and are SVG.
    for metric in ["wall", "alloc"] {
        let svg = std::fs::read_to_string(run.report_path.with_file_name(format!("report.{metric}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("zdeep"), "{metric}");
    }
    assert!(run.stderr().contains("flamegraph written to"));
}

/// The same walk with a call tree capped at `cap` nodes (`stacksNodes`).
fn capped_walk(cap: usize) -> Report {
    let flake = Flake::new(SOURCE, &[]);
    let (run, _) = nix_eval_with_stats(&walk_expr(&flake, &format!("stacks = true; stacksNodes = {cap};")), &[]);
    run.assert_success();
    run.report()
}

#[test]
fn a_capped_call_tree_folds_the_rest_and_stays_exact_and_conserved() {
    let (_flake, full, _) = stacked_walk(&[]);
    let full_stacks = full.stacks.as_ref().unwrap();
    assert_eq!(full_stacks.folded_calls, 0, "this walk fits the default cap");
    assert_eq!(full_stacks.node_cap, nix_evalcost_core::stacks::NODE_CAP);
    let cap = 40;
    let capped = capped_walk(cap);
    let stacks = capped.stacks.as_ref().unwrap();
    // Bounded: the cap, plus at most one [folded] node per walked node.
    assert!(stacks.nodes.len() <= cap + capped.nodes.len(), "{} nodes", stacks.nodes.len());
    assert!(stacks.folded_calls > 0);
    assert_eq!(stacks.node_cap, cap);
    // Every call is either a kept node's or folded: the same total as the full tree.
    let calls = |s: &nix_evalcost_core::stacks::Stacks| s.nodes.iter().map(|n| n.calls).sum::<u64>() + s.folded_calls;
    assert_eq!(calls(stacks), calls(full_stacks));
    // Conserved: the tree's costs add up to the same as the full tree's (function calls are
    // deterministic).
    let cost = |s: &nix_evalcost_core::stacks::Stacks| s.nodes.iter().map(|n| n.cost.function_calls).sum::<u64>();
    assert_eq!(cost(stacks), cost(full_stacks));
    // Exact where kept: the first frames under lib.even (walked first, so kept) count the
    // same calls as in the full tree.
    let first_under = |r: &Report| {
        let s = r.stacks.as_ref().unwrap();
        let walk = node(r, "lib.even").id;
        s.nodes.iter().filter(|n| n.parent.is_none() && n.walk_node == Some(walk)).map(|n| (s.frames[n.frame as usize].clone(), n.calls)).collect::<Vec<_>>()
    };
    assert_eq!(first_under(&capped), first_under(&full));
    assert_eq!(capped.charged_sum(), capped.totals, "the walk's conservation is untouched");
}

/// Where scripts/nix-env puts speedscope's file-format schema (from its npm package).
const SPEEDSCOPE_SCHEMA: &str = "/opt/speedscope/file-format-schema.json";

#[test]
fn functions_tables_count_a_recursion_exactly_and_export_valid_speedscope() {
    let (_flake, report, stats) = stacked_walk(&[("NIX_COUNT_CALLS", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    std::fs::write(&path, serde_json::to_vec(&report).unwrap()).unwrap();
    let speedscope = dir.path().join("profile.speedscope.json");
    let table = |by: &str, extra: &[&str]| -> serde_json::Value {
        let out = cli().args(["functions", path.to_str().unwrap(), "--by", by, "--format", "json", "--top", "100000"]).args(extra).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let functions = table("function", &["--speedscope", speedscope.to_str().unwrap()]);
    let rows = functions["rows"].as_array().unwrap();
    let calls_of = |keep: &dyn Fn(&str) -> bool, field: &str| -> u64 {
        rows.iter().filter(|r| keep(r["function"].as_str().unwrap())).map(|r| r[field].as_u64().unwrap()).sum()
    };
    // Every call of fib, whichever frame names it (the callee on 2.30+, the call sites on
    // 2.26), is counted once: what NIX_COUNT_CALLS counts for the lambda.
    let counted: u64 = stats["functions"].as_array().unwrap().iter().filter(|f| f["name"] == "fib").map(|f| f["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, fib_calls(15) + fib_calls(5));
    assert_eq!(calls_of(&|k| callee(k) == "fib", "calls"), counted);
    // Totals count a recursion once: the rows of the first frames under lib.fib and
    // lib.zz-after hold every call made under those outputs.
    let stacks = report.stacks.as_ref().unwrap();
    let walked = [node(&report, "lib.fib").id, node(&report, "lib.zz-after").id];
    let firsts: std::collections::BTreeSet<&str> = stacks
        .nodes
        .iter()
        .filter(|n| n.parent.is_none() && n.walk_node.is_some_and(|w| walked.contains(&w)))
        .map(|n| stacks.frames[n.frame as usize].as_str())
        .collect();
    let under: u64 = ["lib.fib", "lib.zz-after"].iter().map(|p| calls_by_frame(&report, p).values().sum::<u64>()).sum();
    assert_eq!(calls_of(&|k| firsts.contains(k), "total_calls"), under, "{firsts:?}");
    // By file, every call lands in one row.
    let files = table("file", &[]);
    let by_file: u64 = files["rows"].as_array().unwrap().iter().map(|r| r["calls"].as_u64().unwrap()).sum();
    assert_eq!(by_file, stacks.nodes.iter().map(|n| n.calls).sum::<u64>());
    // speedscope: valid against the format's schema, and the wall profile conserves the
    // stacks' wall time.
    let check = std::process::Command::new("python3")
        .args(["-c", "import json, sys, jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))"])
        .arg(&speedscope)
        .arg(SPEEDSCOPE_SCHEMA)
        .output()
        .unwrap();
    assert!(check.status.success(), "speedscope output invalid (schema from scripts/nix-env setup): {}", String::from_utf8_lossy(&check.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&speedscope).unwrap()).unwrap();
    let wall = doc["profiles"].as_array().unwrap().iter().find(|p| p["name"].as_str().unwrap().ends_with(": wall")).unwrap();
    let weights: u64 = wall["weights"].as_array().unwrap().iter().map(|w| w.as_u64().unwrap()).sum();
    assert_eq!(weights, stacks.nodes.iter().map(|n| n.cost.wall_ns).sum::<u64>());
    // A report without stacks is named, with what to do.
    let plain = dir.path().join("plain.json");
    let mut without = report.clone();
    without.stacks = None;
    std::fs::write(&plain, serde_json::to_vec(&without).unwrap()).unwrap();
    let out = cli().args(["functions", plain.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no call stacks; profile with --stacks"));
}
