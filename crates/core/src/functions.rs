//! Per-function and per-file tables from a report's call stacks (`stacks.rs`), and their
//! export to speedscope's file format.
//!
//! A frame is what Nix's hook names: on Nix 2.30+ (`eval-profiler`) the called function and
//! its position (`fib /src/flake.nix:5:13`, or `«lambda» …`); on Nix 2.26
//! (`trace-function-calls`) the call site's position alone (`/src/flake.nix:14:8`). Grouping
//! by function keeps each frame name apart; grouping by file joins the frames of one file.
//!
//! Self cost is what a group's frames cost while innermost. Total cost is what they cost with
//! everything they called, counted once per stack: a recursive function's inner calls are
//! already inside its outermost call, so they add to its calls and self cost, not again to its
//! total (the rule of profilers such as perf and speedscope's "total").

use crate::cost::Cost;
use crate::stacks::Stacks;
use rustc_hash::FxHashMap;

/// How frames are grouped into rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    Function,
    File,
}

impl Grouping {
    pub const ALL: [Grouping; 2] = [Grouping::Function, Grouping::File];

    pub fn name(self) -> &'static str {
        match self {
            Grouping::Function => "function",
            Grouping::File => "file",
        }
    }
}

/// A frame name taken apart. `file`, `line` and `column` are None for frames without a
/// position (`[truncated]`, `[folded: …]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub function: Option<&'a str>,
    pub file: Option<&'a str>,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

/// `name` taken apart: `FUNCTION POSITION` (Nix 2.30+, and 2.26 frames named from the source
/// at their call site), or a bare `POSITION` (2.26 frames that could not be named, and 2.26
/// reports from before naming), which starts with its file's absolute path.
pub fn parse_frame<'a>(name: &'a str, _source: &str) -> Frame<'a> {
    let (function, position) = match name.split_once(' ') {
        Some((function, position)) if !name.starts_with(['[', '/']) => (Some(function), position),
        _ => (None, name),
    };
    let mut parts = position.rsplitn(3, ':');
    let (column, line, file) = (parts.next(), parts.next(), parts.next());
    match (file, line.and_then(|l| l.parse().ok()), column.and_then(|c| c.parse().ok())) {
        (Some(file), Some(line), Some(column)) => Frame { function, file: Some(file), line: Some(line), column: Some(column) },
        _ => Frame { function, file: None, line: None, column: None },
    }
}

/// One row: a function (frame name) or a file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// The frame name, or the file (`(no position)` for frames without one).
    pub key: String,
    /// Times its frames were entered.
    pub calls: u64,
    /// Calls in its outermost frames' subtrees, its own included.
    pub total_calls: u64,
    pub self_cost: Cost,
    pub total_cost: Cost,
}

/// The key a frame is grouped under.
fn key_of(name: &str, source: &str, grouping: Grouping) -> String {
    match grouping {
        Grouping::Function => name.to_string(),
        Grouping::File => parse_frame(name, source).file.unwrap_or("(no position)").to_string(),
    }
}

/// Adds the rows of `stacks` to `rows` (keyed by [`Row::key`]): several reports' stacks add up.
pub fn add_rows(stacks: &Stacks, grouping: Grouping, rows: &mut FxHashMap<String, Row>) {
    let mut keys: Vec<String> = Vec::new();
    let mut index: FxHashMap<String, usize> = FxHashMap::default();
    let frame_key: Vec<usize> = stacks
        .frames
        .iter()
        .map(|name| {
            let key = key_of(name, &stacks.source, grouping);
            *index.entry(key.clone()).or_insert_with(|| {
                keys.push(key);
                keys.len() - 1
            })
        })
        .collect();
    let inclusive = stacks.inclusive();
    let mut inclusive_calls: Vec<u64> = stacks.nodes.iter().map(|n| n.calls).collect();
    for (i, node) in stacks.nodes.iter().enumerate().rev() {
        if let Some(parent) = node.parent {
            inclusive_calls[parent as usize] = inclusive_calls[parent as usize].saturating_add(inclusive_calls[i]);
        }
    }
    let mut children: Vec<Vec<u32>> = vec![Vec::new(); stacks.nodes.len()];
    let mut roots = Vec::new();
    for (i, node) in stacks.nodes.iter().enumerate() {
        match node.parent {
            Some(parent) => children[parent as usize].push(i as u32),
            None => roots.push(i as u32),
        }
    }
    let mut group: Vec<Row> = keys.iter().map(|k| Row { key: k.clone(), ..Row::default() }).collect();
    // Depth-first, counting each key's frames on the current stack: only a key's outermost
    // frame adds to its totals. (Iterative: stacks run a thousand frames deep.)
    let mut on_stack = vec![0u32; keys.len()];
    let mut work: Vec<(u32, bool)> = roots.into_iter().rev().map(|r| (r, true)).collect();
    while let Some((node, entering)) = work.pop() {
        let key = frame_key[stacks.nodes[node as usize].frame as usize];
        if !entering {
            on_stack[key] -= 1;
            continue;
        }
        let n = &stacks.nodes[node as usize];
        let row = &mut group[key];
        row.calls = row.calls.saturating_add(n.calls);
        row.self_cost.add(&n.cost);
        if on_stack[key] == 0 {
            row.total_cost.add(&inclusive[node as usize]);
            row.total_calls = row.total_calls.saturating_add(inclusive_calls[node as usize]);
        }
        on_stack[key] += 1;
        work.push((node, false));
        work.extend(children[node as usize].iter().rev().map(|&c| (c, true)));
    }
    for row in group {
        let into = rows.entry(row.key.clone()).or_insert_with(|| Row { key: row.key.clone(), ..Row::default() });
        into.calls = into.calls.saturating_add(row.calls);
        into.total_calls = into.total_calls.saturating_add(row.total_calls);
        into.self_cost.add(&row.self_cost);
        into.total_cost.add(&row.total_cost);
    }
}

pub mod speedscope {
    //! speedscope's file format (its `file-format-spec.ts`, schema
    //! `https://www.speedscope.app/file-format-schema.json`): frames shared by every profile,
    //! and one sampled profile per metric, each tree node a sample weighted by its
    //! exclusive cost, its stack the walked output's path and then its frames.

    use super::parse_frame;
    use crate::metric::Metric;
    use crate::units::Unit;
    use crate::report::Report;
    use serde_json::{json, Value};

    pub const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

    /// speedscope's unit for ours (it has no count unit: counts are `none`).
    fn unit(metric: &Metric) -> &'static str {
        match metric.unit {
            Unit::Nanoseconds => "nanoseconds",
            Unit::Bytes => "bytes",
            _ => "none",
        }
    }

    /// The speedscope document of `report`'s stacks, one profile per metric (additive ones;
    /// the caller checks). None when the report has no stacks.
    pub fn document(report: &Report, name: &str, metrics: &[&Metric]) -> Option<Value> {
        let stacks = report.stacks.as_ref()?;
        let mut frames: Vec<Value> = stacks
            .frames
            .iter()
            .map(|f| {
                let parsed = parse_frame(f, &stacks.source);
                let mut frame = json!({ "name": f });
                if let (Some(file), Some(line), Some(column)) = (parsed.file, parsed.line, parsed.column) {
                    frame["file"] = json!(file);
                    frame["line"] = json!(line);
                    frame["col"] = json!(column);
                }
                frame
            })
            .collect();
        // The walked outputs are frames too, at the bottom of their stacks.
        let mut output_frame = std::collections::HashMap::new();
        let mut stacks_of: Vec<Vec<u32>> = Vec::with_capacity(stacks.nodes.len());
        for node in &stacks.nodes {
            let stack = match node.parent {
                Some(parent) => {
                    let mut s = stacks_of[parent as usize].clone();
                    s.push(node.frame);
                    s
                }
                None => {
                    let mut s = Vec::new();
                    if let Some(walked) = node.walk_node.and_then(|w| report.nodes.get(w as usize)) {
                        let id = *output_frame.entry(walked.id).or_insert_with(|| {
                            frames.push(json!({ "name": crate::attrpath::display_path(&walked.path) }));
                            (frames.len() - 1) as u32
                        });
                        s.push(id);
                    }
                    s.push(node.frame);
                    s
                }
            };
            stacks_of.push(stack);
        }
        let profiles: Vec<Value> = metrics
            .iter()
            .map(|metric| {
                let (mut samples, mut weights) = (Vec::new(), Vec::new());
                for (node, stack) in stacks.nodes.iter().zip(&stacks_of) {
                    let weight = metric.value(&node.cost, &Default::default(), &report.sizes);
                    if weight > 0 {
                        samples.push(stack.clone());
                        weights.push(weight);
                    }
                }
                let end: u64 = weights.iter().fold(0u64, |a, w| a.saturating_add(*w));
                json!({
                    "type": "sampled", "name": format!("{name}: {}", metric.name), "unit": unit(metric),
                    "startValue": 0, "endValue": end, "samples": samples, "weights": weights,
                })
            })
            .collect();
        Some(json!({
            "$schema": SCHEMA,
            "shared": { "frames": frames },
            "profiles": profiles,
            "name": name,
            "activeProfileIndex": 0,
            "exporter": format!("nix-evalcost {}", env!("CARGO_PKG_VERSION")),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stacks::{CallCost, CallTree};

    fn at(t: u64) -> CallCost {
        CallCost { wall_ns: t, function_calls: t, ..CallCost::default() }
    }

    /// `fib n` as a call tree: fib calls itself twice for n >= 2, one time unit per call.
    fn fib_stacks(n: u32, source: &str, frame: &str) -> Stacks {
        fn call(tree: &mut CallTree, n: u32, clock: &mut u64, frame: &str) {
            tree.enter_named(Some(0), frame, at(*clock));
            *clock += 1;
            if n >= 2 {
                call(tree, n - 1, clock, frame);
                call(tree, n - 2, clock, frame);
            }
            tree.exit(at(*clock));
        }
        let mut tree = CallTree::default();
        let mut clock = 0;
        tree.enter_named(Some(0), "main /f.nix:1:1", at(clock));
        clock += 1;
        call(&mut tree, n, &mut clock, frame);
        tree.exit(at(clock));
        tree.finish(at(clock), source)
    }

    fn rows(stacks: &Stacks, grouping: Grouping) -> Vec<Row> {
        let mut rows = FxHashMap::default();
        add_rows(stacks, grouping, &mut rows);
        let mut rows: Vec<Row> = rows.into_values().collect();
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        rows
    }

    #[test]
    fn frames_are_taken_apart_by_their_source() {
        let f = parse_frame("fib /src/flake.nix:5:13", "eval-profiler");
        assert_eq!(f, Frame { function: Some("fib"), file: Some("/src/flake.nix"), line: Some(5), column: Some(13) });
        let f = parse_frame("/a b/flake.nix:14:8", "trace-function-calls");
        assert_eq!(f, Frame { function: None, file: Some("/a b/flake.nix"), line: Some(14), column: Some(8) });
        assert_eq!(parse_frame("[truncated]", "eval-profiler").file, None);
        assert_eq!(parse_frame("[folded: the call tree was full]", "eval-profiler").function, None);
        assert_eq!(parse_frame("«lambda» «string»:1:2", "eval-profiler").file, Some("«string»"));
        let named = parse_frame("lib.mapAttrs /src/flake.nix:14:8", "trace-function-calls");
        assert_eq!((named.function, named.file, named.line), (Some("lib.mapAttrs"), Some("/src/flake.nix"), Some(14)));
    }

    #[test]
    fn a_recursion_counts_every_call_and_its_total_once() {
        // fib 10 makes 177 calls (fib(n) calls: 2 fib(n+1) - 1 = 2 * 89 - 1).
        let stacks = fib_stacks(10, "eval-profiler", "fib /f.nix:5:13");
        let rows = rows(&stacks, Grouping::Function);
        let fib = rows.iter().find(|r| r.key == "fib /f.nix:5:13").unwrap();
        let main = rows.iter().find(|r| r.key == "main /f.nix:1:1").unwrap();
        assert_eq!((fib.calls, fib.total_calls), (177, 177));
        assert_eq!(fib.self_cost.wall_ns, 177, "one unit per call");
        assert_eq!(fib.total_cost.wall_ns, 177, "the outermost call holds every inner one, counted once");
        assert_eq!((main.calls, main.total_calls, main.self_cost.wall_ns, main.total_cost.wall_ns), (1, 178, 1, 178));
        let files = super::tests::rows(&stacks, Grouping::File);
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].key.as_str(), files[0].calls, files[0].total_cost.wall_ns), ("/f.nix", 178, 178));
    }

    #[test]
    fn speedscope_samples_are_the_tree_nodes_under_their_outputs() {
        use crate::report::{Kind, Node, Report};
        let stacks = fib_stacks(3, "eval-profiler", "fib /f.nix:5:13");
        let node = Node {
            id: 0,
            parent: None,
            path: vec!["packages".into(), "x".into()],
            kind: Kind::Derivation,
            is_derivation: true,
            drv_path: None,
            system: None,
            error: None,
            calls: 1,
            cost: Cost::default(),
            after: Default::default(),
        };
        let report = Report {
            schema: crate::report::SCHEMA.into(),
            schema_version: crate::report::SCHEMA_VERSION,
            meta: Default::default(),
            sizes: Default::default(),
            totals: Cost::default(),
            unattributed: Cost::default(),
            end: Default::default(),
            phases: vec![],
            nodes: vec![node],
            stacks: Some(stacks.clone()),
            isolated: Vec::new(),
        };
        let wall = crate::metric::find("wall").unwrap();
        let doc = speedscope::document(&report, "r", &[wall]).unwrap();
        let frames = doc["shared"]["frames"].as_array().unwrap();
        assert_eq!(frames.last().unwrap()["name"], "packages.x", "the walked output is a frame");
        assert_eq!(frames[0]["file"], "/f.nix");
        let profile = &doc["profiles"][0];
        let weights: u64 = profile["weights"].as_array().unwrap().iter().map(|w| w.as_u64().unwrap()).sum();
        assert_eq!(weights, stacks.inclusive()[0].wall_ns, "conserved");
        assert_eq!(profile["endValue"].as_u64(), Some(weights));
        let output = (frames.len() - 1) as u64;
        assert!(profile["samples"].as_array().unwrap().iter().all(|s| s[0].as_u64() == Some(output)));
    }
}
