//! Flamegraphs of reports as folded stacks (flamegraph.pl / inferno / speedscope format), with
//! their titles. The CLI draws them as SVGs (plain or differential) with inferno.
//!
//! Attribute-path flamegraphs: every node is a stack of its path's names, weighted by its
//! exclusive cost, so a frame's width is its inclusive cost. Several reports are averaged (mean
//! per run), so a differential between sets of different sizes compares like with like. Cost
//! outside every node is the `<unattributed>` frame, so the graph's total is the process's.

use crate::attrpath::display_path;
use crate::metric::Metric;
use crate::cost::{Cost, Gauges};
use crate::report::Report;
use crate::units::Unit;
use std::collections::BTreeMap;

/// Folded stacks of the mean cost per run: `frame;frame;frame value`, sorted by stack. With
/// call stacks in a report, each walked node's calls are frames above its path's frames, and
/// the node keeps only what it cost outside those calls.
pub fn folded(reports: &[Report], metric: &Metric) -> Vec<String> {
    folded_above(reports, metric, 0.0)
}

/// Like [`folded`], but a call whose inclusive cost is below `min_fraction` of its report's
/// total is folded into its caller's frame: widths of what remains are unchanged, and an SVG of
/// a deeply recursive evaluation does not draw hundreds of thousands of invisible frames.
pub fn folded_above(reports: &[Report], metric: &Metric, min_fraction: f64) -> Vec<String> {
    let mut sums: BTreeMap<String, u128> = BTreeMap::new();
    let mut add = |stack: String, value: u64| {
        if value > 0 {
            *sums.entry(stack).or_default() += value as u128;
        }
    };
    for report in reports {
        let value = |cost: &Cost, after: &Gauges| metric.value(cost, after, &report.sizes);
        // Per walked node (and for "outside any node": the last slot), the cost of its calls.
        let mut in_calls = vec![0u64; report.nodes.len() + 1];
        if let Some(stacks) = &report.stacks {
            let inclusive = stacks.inclusive();
            let names: Vec<String> = stacks.frames.iter().map(|f| frame_name(f)).collect();
            let walk_stacks: Vec<String> = report.nodes.iter().map(|n| stack_of(&n.path)).collect();
            let threshold = (value(&report.totals, &report.end) as f64 * min_fraction) as u64;
            // A call is drawn if it and all its callers are at least `threshold`; a call that is
            // not, under one that is, adds its inclusive cost to that caller's own.
            let mut shown = vec![false; stacks.nodes.len()];
            let mut self_value: Vec<u64> = stacks.nodes.iter().map(|n| value(&n.cost, &Gauges::default())).collect();
            for (i, node) in stacks.nodes.iter().enumerate() {
                let incl = value(&inclusive[i], &Gauges::default());
                let parent_shown = node.parent.is_none_or(|p| shown[p as usize]);
                shown[i] = parent_shown && incl >= threshold;
                if !shown[i] && parent_shown {
                    if let Some(p) = node.parent {
                        self_value[p as usize] += incl;
                    }
                }
            }
            let mut frames: Vec<&str> = Vec::new();
            for (i, node) in stacks.nodes.iter().enumerate() {
                if node.parent.is_none() && shown[i] {
                    let slot = node.walk_node.map_or(report.nodes.len(), |w| w as usize);
                    in_calls[slot] += value(&inclusive[i], &Gauges::default());
                }
                if !shown[i] {
                    continue;
                }
                frames.clear();
                let mut walk_node = None;
                let mut cur = Some(i as u32);
                while let Some(c) = cur {
                    let n = &stacks.nodes[c as usize];
                    frames.push(&names[n.frame as usize]);
                    walk_node = walk_node.or(n.walk_node);
                    cur = n.parent;
                }
                let mut stack = walk_node.map_or_else(|| UNATTRIBUTED.to_string(), |w| walk_stacks[w as usize].clone());
                for frame in frames.iter().rev() {
                    stack.push(';');
                    stack.push_str(frame);
                }
                add(stack, self_value[i]);
            }
        }
        for node in &report.nodes {
            add(stack_of(&node.path), value(&node.cost, &node.after).saturating_sub(in_calls[node.id as usize]));
        }
        // Start-up, fetching and locking: shown so that the whole graph is the process total.
        let outside = value(&report.unattributed, &Gauges::default());
        add(UNATTRIBUTED.to_string(), outside.saturating_sub(in_calls[report.nodes.len()]));
    }
    let runs = reports.len().max(1) as u128;
    sums.into_iter()
        .filter_map(|(stack, sum)| {
            let mean = (sum + runs / 2) / runs;
            (mean > 0).then(|| format!("{stack} {mean}"))
        })
        .collect()
}

/// The frame of cost outside every node. (No attribute is displayed as `<unattributed>`: such
/// a name would be quoted.)
const UNATTRIBUTED: &str = "<unattributed>";

/// A call frame as shown: store paths lose their hash (`fib /nix/store/<hash>-source/x.nix:3:4`
/// becomes `fib source/x.nix:3:4`), controls are made visible, `;` is escaped.
fn frame_name(frame: &str) -> String {
    let mut out = String::with_capacity(frame.len());
    let mut rest = frame;
    while let Some(at) = rest.find("/nix/store/") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "/nix/store/".len()..];
        match after.split_once('-') {
            Some((hash, tail)) if hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_alphanumeric()) => rest = tail,
            _ => {
                out.push_str("/nix/store/");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    crate::attrpath::sanitize_text(&out).replace(';', "\\x3b")
}

/// A path as a folded stack: each name shown as in Nix (quoted when needed, controls made
/// visible), with `;`, the frame separator, escaped.
fn stack_of(path: &[String]) -> String {
    let frames: Vec<String> = path.iter().map(|name| display_path(std::slice::from_ref(name)).replace(';', "\\x3b")).collect();
    frames.join(";")
}

/// The title of a flamegraph: the flake, the metric, what it means and its unit.
pub fn title(reports: &[Report], metric: &Metric) -> String {
    let flake = reports.first().and_then(|r| r.meta.flake.as_ref()).map_or("(no flake)", |f| f.original_ref.as_str());
    let unit = match metric.unit {
        Unit::Nanoseconds => "nanoseconds",
        Unit::Bytes => "bytes",
        Unit::Count => "count",
    };
    format!("{} — {}: {} ({unit})", crate::attrpath::sanitize_text(flake), metric.name, metric.help)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{node, report};
    use crate::stacks::CallTree;

    fn at(thunks: u64) -> crate::stacks::CallCost {
        crate::stacks::CallCost { thunks, ..Default::default() }
    }

    /// One output whose evaluation calls `big` (cost 1000) and `tiny` (cost 1) from `main`.
    fn with_stacks() -> Report {
        let mut tree = CallTree::default();
        tree.enter_named(Some(0), "main.nix:1:1", at(0));
        tree.enter_named(Some(0), "big.nix:2:2", at(10));
        tree.exit(at(1010));
        tree.enter_named(Some(0), "tiny.nix:3:3", at(1010));
        tree.exit(at(1011));
        tree.exit(at(1020));
        let mut r = report(vec![node(0, None, &["lib", "x"], 1030)]);
        r.totals.thunks = 1030;
        r.stacks = Some(tree.finish(at(1020), "test"));
        r
    }

    #[test]
    fn frame_names_lose_store_hashes() {
        let hash = "6vd4kqs57hpql99lz52gs0wkdr7a3h4a";
        assert_eq!(frame_name(&format!("/nix/store/{hash}-source/x.nix:3:4")), "source/x.nix:3:4");
        assert_eq!(frame_name(&format!("fib /nix/store/{hash}-source/f.nix:1:33")), "fib source/f.nix:1:33");
        assert_eq!(frame_name("/nix/store/short-x/y;z"), "/nix/store/short-x/y\\x3bz");
    }

    #[test]
    fn calls_sit_above_their_output_and_pruning_keeps_totals() {
        let thunks = crate::metric::find("thunks").unwrap();
        let r = [with_stacks()];
        let all = folded(&r, thunks);
        assert_eq!(
            all,
            vec![
                "lib;x 10".to_string(),
                "lib;x;main.nix:1:1 19".into(),
                "lib;x;main.nix:1:1;big.nix:2:2 1000".into(),
                "lib;x;main.nix:1:1;tiny.nix:3:3 1".into(),
            ]
        );
        // tiny (1 of 1030) is below 1%: it becomes main's own cost; the total is unchanged.
        let pruned = folded_above(&r, thunks, 0.01);
        assert_eq!(pruned, vec!["lib;x 10", "lib;x;main.nix:1:1 20", "lib;x;main.nix:1:1;big.nix:2:2 1000"]);
        let total = |lines: &[String]| lines.iter().map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap()).sum::<u64>();
        assert_eq!(total(&all), total(&pruned));
        assert_eq!(total(&all), 1030);
    }
}
