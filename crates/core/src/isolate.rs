//! `profile --isolate`: each output's standalone cost (evaluated alone, in a fresh evaluator),
//! its cost in the shared walk, and the difference, the work it shares with the outputs walked
//! before it. Costs in a shared walk are exclusive: shared work is charged to whichever output
//! forces it first, so an output's cost there depends on the walk order; its standalone cost
//! does not.

use crate::cost::{Cost, Gauges};
use crate::report::Report;

/// Which cost of each output `report`, `graph`, `compare` and the HTML page show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CostView {
    /// Exclusive costs in the walk (the default).
    #[default]
    Exclusive,
    /// What evaluating each output alone costs.
    Standalone,
    /// Standalone minus the output's cost in the walk: the work it shares with others.
    Shared,
}

impl CostView {
    pub const ALL: [CostView; 3] = [CostView::Exclusive, CostView::Standalone, CostView::Shared];

    pub fn name(self) -> &'static str {
        match self {
            CostView::Exclusive => "exclusive",
            CostView::Standalone => "standalone",
            CostView::Shared => "shared",
        }
    }
}

/// One isolated output's three costs.
#[derive(Clone, Debug, PartialEq)]
pub struct IsolatedRow {
    pub node: u32,
    pub path: Vec<String>,
    /// Its subtree's exclusive costs in the shared walk.
    pub in_walk: Cost,
    pub standalone: Cost,
    /// `standalone - in_walk`, per field (never below 0: timing noise can make an output cost
    /// more in the walk than alone).
    pub shared: Cost,
    pub error: Option<String>,
}

/// The isolated outputs of `report`, in node order.
pub fn rows(report: &Report) -> Vec<IsolatedRow> {
    let inclusive = report.inclusive_costs();
    let mut rows: Vec<IsolatedRow> = report
        .isolated
        .iter()
        .filter_map(|i| {
            let node = report.nodes.get(i.node as usize)?;
            let in_walk = inclusive[i.node as usize];
            Some(IsolatedRow { node: i.node, path: node.path.clone(), in_walk, standalone: i.standalone, shared: i.standalone.since(&in_walk), error: i.error.clone() })
        })
        .collect();
    rows.sort_by_key(|r| r.node);
    rows
}

/// Checks for `--cost standalone|shared`: the report must have been made with `--isolate`.
pub fn check_viewable(report: &Report, view: CostView, name: &str) -> Result<(), String> {
    if view != CostView::Exclusive && report.isolated.is_empty() {
        return Err(format!("{name} has no standalone costs: make it with `profile --isolate` to see {} costs", view.name()));
    }
    Ok(())
}

/// [`view`] of `report` (named `name` in the error), once [`check_viewable`] allows it.
pub fn checked_view(report: &Report, cost: CostView, name: &str) -> Result<Report, String> {
    check_viewable(report, cost, name)?;
    Ok(view(report, cost))
}

/// `report` as seen through `view`: each isolated output's node costs its standalone (or
/// shared) cost, and nothing else costs anything (the other nodes, the unattributed bucket), so
/// tables, graphs and comparisons show those costs per output. Exclusive: unchanged.
pub fn view(report: &Report, view: CostView) -> Report {
    if view == CostView::Exclusive {
        return report.clone();
    }
    let mut out = report.clone();
    for node in &mut out.nodes {
        node.cost = Cost::default();
        node.after = Gauges::default();
    }
    for row in rows(report) {
        let node = &mut out.nodes[row.node as usize];
        node.cost = if view == CostView::Standalone { row.standalone } else { row.shared };
        if view == CostView::Standalone {
            node.after = report.isolated.iter().find(|i| i.node == row.node).map_or_else(Gauges::default, |i| i.after);
        }
    }
    out.unattributed = Cost::default();
    out.totals = out.charged_sum();
    out.phases.clear();
    out.stacks = None;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{node, report};
    use crate::report::Isolated;

    /// `lib.a` forces the shared work (10 thunks) in the walk; `lib.b` then costs 1, alone 11.
    fn isolated() -> Report {
        let mut r = report(vec![node(0, None, &["lib"], 1), node(1, Some(0), &["lib", "a"], 11), node(2, Some(0), &["lib", "b"], 1)]);
        let standalone = |thunks| Cost { thunks, ..Cost::default() };
        r.isolated = vec![
            Isolated { node: 1, standalone: standalone(11), after: Gauges::default(), error: None },
            Isolated { node: 2, standalone: standalone(11), after: Gauges::default(), error: None },
        ];
        r
    }

    #[test]
    fn shared_work_is_standalone_minus_the_walk() {
        let rows = rows(&isolated());
        let thunks: Vec<(u64, u64, u64)> = rows.iter().map(|r| (r.in_walk.thunks, r.standalone.thunks, r.shared.thunks)).collect();
        assert_eq!(thunks, [(11, 11, 0), (1, 11, 10)]);
    }

    #[test]
    fn views_put_one_cost_on_each_output() {
        let r = isolated();
        let costs = |v| view(&r, v).nodes.iter().map(|n| n.cost.thunks).collect::<Vec<_>>();
        assert_eq!(costs(CostView::Exclusive), [1, 11, 1]);
        assert_eq!(costs(CostView::Standalone), [0, 11, 11]);
        assert_eq!(costs(CostView::Shared), [0, 0, 10]);
        let shared = view(&r, CostView::Shared);
        assert_eq!(shared.charged_sum(), shared.totals);
        let plain = report(vec![node(0, None, &["lib"], 1)]);
        assert!(check_viewable(&plain, CostView::Shared, "r.json").unwrap_err().contains("profile --isolate"));
        assert!(check_viewable(&plain, CostView::Exclusive, "r.json").is_ok());
    }
}
