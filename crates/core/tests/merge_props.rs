//! Properties of merging and of inclusive costs, on random report trees.

use nix_evalcost_core::cost::{Cost, Gauges, Sizes};
use nix_evalcost_core::merge::{merge_files, merge_report, MergeOptions};
use nix_evalcost_core::metric;
use nix_evalcost_core::report::{Kind, Meta, Node, Report, SCHEMA, SCHEMA_VERSION};
use proptest::prelude::*;

/// A random tree: each node's parent is an earlier node or none; costs are random.
fn arb_report() -> impl Strategy<Value = Report> {
    prop::collection::vec((any::<prop::sample::Index>(), any::<bool>(), 0u64..1000, 0u64..1_000_000), 1..25).prop_map(|spec| {
        let mut nodes: Vec<Node> = Vec::new();
        for (i, (parent_pick, is_root, thunks, wall)) in spec.into_iter().enumerate() {
            let parent = if i == 0 || is_root { None } else { Some(parent_pick.index(i) as u32) };
            let mut path = parent.map_or_else(Vec::new, |p| nodes[p as usize].path.clone());
            path.push(format!("n{i}")); // unique among siblings, as in Nix; shared across runs
            nodes.push(Node {
                id: i as u32,
                parent,
                path,
                kind: Kind::Attrset,
                is_derivation: false,
                drv_path: None,
                system: None,
                error: None,
                calls: 1,
                cost: Cost { thunks, wall_ns: wall, ..Cost::default() },
                after: Gauges::default(),
            });
        }
        let mut totals = Cost::default();
        nodes.iter().for_each(|n| totals.add(&n.cost));
        Report {
            schema: SCHEMA.into(),
            schema_version: SCHEMA_VERSION,
            meta: Meta { mode: "walk".into(), complete: true, ..Meta::default() },
            sizes: Sizes::default(),
            totals,
            unattributed: Cost::default(),
            end: Gauges::default(),
            phases: vec![],
            nodes,
            stacks: None,
            isolated: Vec::new(),
        }
    })
}

/// The same report with its nodes in the order of `key` (which must put parents first), ids
/// and parents renumbered.
fn reordered<K: Ord>(report: &Report, key: impl Fn(&Node) -> K) -> Report {
    let mut order: Vec<usize> = (0..report.nodes.len()).collect();
    order.sort_by_key(|&i| key(&report.nodes[i]));
    let mut new_id = vec![0u32; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_id[old] = new as u32;
    }
    let nodes = (order.iter())
        .map(|&old| {
            let n = &report.nodes[old];
            Node { id: new_id[old], parent: n.parent.map(|p| new_id[p as usize]), ..n.clone() }
        })
        .collect();
    Report { nodes, ..report.clone() }
}

fn options(inclusive: bool, depth: Option<usize>) -> MergeOptions {
    MergeOptions {
        metrics: vec![metric::find("thunks").unwrap(), metric::find("wall").unwrap()],
        inclusive,
        depth,
        filters: vec![],
        allow_mixed: false,
        group_by: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn inclusive_is_exclusive_plus_children(report in arb_report()) {
        let inclusive = report.inclusive_costs();
        for node in &report.nodes {
            let mut expect = node.cost;
            for child in report.nodes.iter().filter(|c| c.parent == Some(node.id)) {
                expect.add(&inclusive[child.id as usize]);
            }
            prop_assert_eq!(inclusive[node.id as usize], expect);
        }
        // The roots' inclusive costs add up to all the nodes' exclusive costs.
        let mut roots = Cost::default();
        report.nodes.iter().filter(|n| n.parent.is_none()).for_each(|n| roots.add(&inclusive[n.id as usize]));
        prop_assert_eq!(roots, report.totals);
    }

    #[test]
    fn merging_is_order_independent(
        reports in prop::collection::vec(arb_report(), 1..5),
        inclusive in any::<bool>(),
        depth in prop::option::of(1usize..4),
        seed in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<_> = reports.iter().enumerate().map(|(i, r)| {
            let p = dir.path().join(format!("r{i}.json"));
            nix_evalcost_core::report_io::write_report(&p, r).unwrap();
            p
        }).collect();
        let mut shuffled = files.clone();
        let n = shuffled.len();
        for i in 0..n {
            shuffled.swap(i, (seed as usize).wrapping_add(i * 7) % n);
        }
        shuffled.reverse();
        let a = merge_files(&files, &options(inclusive, depth)).unwrap();
        let b = merge_files(&shuffled, &options(inclusive, depth)).unwrap();
        prop_assert_eq!(&a.rows, &b.rows);
        prop_assert_eq!(&a.totals, &b.totals);
        prop_assert_eq!(&a.runs, &b.runs);
    }

    /// A walk's nodes come in path order, which the merge keeps without a map or a sort; in
    /// any other order it goes through the map: the rows are the same.
    #[test]
    fn rows_do_not_depend_on_the_nodes_order(report in arb_report(), inclusive in any::<bool>(), depth in prop::option::of(1usize..4)) {
        let in_path_order = reordered(&report, |n| n.path.clone());
        let depth_first_reversed = reordered(&report, |n| (n.path.len(), std::cmp::Reverse(n.path.clone())));
        let file = std::path::Path::new("r.json");
        let a = merge_report(&in_path_order, file, &options(inclusive, depth));
        let b = merge_report(&depth_first_reversed, file, &options(inclusive, depth));
        prop_assert_eq!(&a.rows, &b.rows);
        prop_assert_eq!(&a.totals, &b.totals);
        prop_assert!(a.rows.windows(2).all(|w| w[0].path < w[1].path));
    }

    #[test]
    fn folding_at_any_depth_loses_nothing(report in arb_report(), depth in 1usize..5) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.json");
        nix_evalcost_core::report_io::write_report(&file, &report).unwrap();
        let merged = merge_files(&[file], &options(false, Some(depth))).unwrap();
        // Rows above the cut hold their own cost, rows at the cut their whole subtree.
        let sum: u64 = merged.rows.iter().map(|r| r.stats[0].median).sum();
        prop_assert_eq!(sum, report.totals.thunks);
        prop_assert!(merged.rows.iter().all(|r| r.path.len() <= depth));
    }
}
