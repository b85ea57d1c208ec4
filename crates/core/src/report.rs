//! The report schema (documented in docs/report-schema.md). One report is one evaluation: the
//! walked nodes with their exclusive costs, the unattributed bucket, phases and process totals.

use crate::cost::{Cost, Gauges, Sizes};
use serde::{Deserialize, Serialize};

/// The `schema` field of every report.
pub const SCHEMA: &str = "nix-evalcost/report";
/// Bumped on any change a reader of the previous version would misread.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub schema_version: u32,
    pub meta: Meta,
    /// `sizeof` of Nix's structures, to turn counts into Nix's byte accounting.
    pub sizes: Sizes,
    /// Cumulative counters of the Nix process when the report was taken.
    pub totals: Cost,
    /// Cost outside every node: start-up, fetching, locking, calling the flake's outputs.
    pub unattributed: Cost,
    /// Gauges when the report was taken.
    pub end: Gauges,
    pub phases: Vec<Phase>,
    /// Nodes in walk order (pre-order): a parent always comes before its children.
    pub nodes: Vec<Node>,
    /// Call stacks under the nodes, when the walk profiled them (`profile --stacks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacks: Option<crate::stacks::Stacks>,
    /// `profile --isolate`: each unit's cost evaluated alone, in a fresh evaluator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isolated: Vec<Isolated>,
}

/// What evaluating one output alone costs (`profile --isolate`): its subtree's cost in a walk of
/// only that output, in a fresh `nix`. Its cost in the shared walk (the subtree's exclusive costs)
/// subtracted from it is the work it shares with outputs walked before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Isolated {
    /// The node (`nodes` id).
    pub node: u32,
    /// Its subtree's cost in the walk of it alone.
    pub standalone: Cost,
    /// The gauges when that walk left it.
    #[serde(default)]
    pub after: Gauges,
    /// The error of the walk of it alone, if it had one of its own (a failing `nix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    pub tool_version: String,
    pub nix_version: String,
    /// "walk" (builtins.evalcostWalk), "measure" (builtins.evalcostMeasure only) or "passive"
    /// (any evaluating `nix` command, with the plugin configured in nix.conf).
    pub mode: String,
    pub flake: Option<FlakeMeta>,
    /// Systems walked; empty with `all_systems`.
    pub systems: Vec<String>,
    pub all_systems: bool,
    pub force_drv_paths: bool,
    pub hostname: String,
    pub argv: Vec<String>,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// False if the walk was interrupted (Ctrl-C): the nodes are those reached so far.
    pub complete: bool,
    /// Passive reports: the command (`nix build`, `nix-instantiate`, ...).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// Passive reports: the installables, attribute paths or files the command line names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entry_points: Vec<String>,
    /// Passive reports: the probability with which this process was measured (its
    /// `evalcost-sample-rate`); one report stands for 1/rate processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    /// A shard's report (`profile --shard I/N`): which part of the split walk it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::walk_policy::Shard>,
    /// A walk of one output alone (`profile --isolate` runs one per output): its path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<String>>,
    /// A worker's report (`profile -j N`): which run it was and how it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerMeta>,
    /// A joined report (`nix-evalcost merge` of shards, `profile -j N`): the processes that
    /// walked it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
}

/// A worker of a parallel walk, as its own report records it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerMeta {
    /// The worker run (1, 2, …; a replaced worker's successor has a new run).
    pub run: u32,
    /// Units it walked.
    pub units: u32,
    /// It stopped taking units because its resident memory exceeded `--max-memory`.
    pub retired: bool,
}

/// One process of a joined walk. Its costs are conserved on their own:
/// `totals = unattributed + shared + Σ cost of the nodes it alone walked`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Part {
    /// `shard 2/3`, `worker 3`.
    pub name: String,
    pub hostname: String,
    pub started_at: String,
    /// False if this part's walk was interrupted.
    pub complete: bool,
    /// The process's cumulative counters when it wrote its report.
    pub totals: Cost,
    pub unattributed: Cost,
    /// What this process spent on nodes several parts walked (the structure above the units,
    /// e.g. `packages.x86_64-linux`); the joined node's cost is the sum over parts.
    pub shared: Cost,
    pub end: Gauges,
    /// The nodes (ids of the joined report) this part alone walked.
    pub nodes: Vec<u32>,
    /// How the process ended, when not by finishing its part: `replaced: over the memory
    /// budget`, `killed by SIGKILL while walking packages.x86_64-linux.big`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlakeMeta {
    /// The reference as given (`.`, `github:owner/repo`, …).
    pub original_ref: String,
    pub locked_url: String,
    pub rev: Option<String>,
    pub dirty_rev: Option<String>,
    pub nar_hash: Option<String>,
    pub last_modified: Option<i64>,
}

/// A phase of the run and what it cost, inclusive of the nodes evaluated during it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `fetch-lock`, `outputs`, `walk` or `total`.
    pub name: String,
    pub cost: Cost,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Derivation,
    Attrset,
    Function,
    App,
    List,
    String,
    Number,
    Bool,
    Null,
    Path,
    External,
    Error,
    /// A `builtins.evalcostMeasure` label.
    Measure,
    /// A passive report's entry: everything the command evaluated (its installables).
    Command,
    /// Being evaluated when the walk was stopped (Ctrl-C, a signal): its cost is what it had
    /// cost so far. Nodes never reached are not in the report.
    Interrupted,
    /// A value the walk could not classify.
    #[default]
    #[serde(other)]
    Unknown,
}

impl Kind {
    pub const ALL: [Kind; 16] = [
        Kind::Derivation,
        Kind::Attrset,
        Kind::Function,
        Kind::App,
        Kind::List,
        Kind::String,
        Kind::Number,
        Kind::Bool,
        Kind::Null,
        Kind::Path,
        Kind::External,
        Kind::Error,
        Kind::Measure,
        Kind::Command,
        Kind::Interrupted,
        Kind::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Derivation => "derivation",
            Kind::Attrset => "attrset",
            Kind::Function => "function",
            Kind::App => "app",
            Kind::List => "list",
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Bool => "bool",
            Kind::Null => "null",
            Kind::Path => "path",
            Kind::External => "external",
            Kind::Error => "error",
            Kind::Measure => "measure",
            Kind::Command => "command",
            Kind::Interrupted => "interrupted",
            Kind::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Index in `nodes`.
    pub id: u32,
    pub parent: Option<u32>,
    /// Attribute path from the flake's outputs (or measure labels under their parent).
    pub path: Vec<String>,
    pub kind: Kind,
    pub is_derivation: bool,
    #[serde(default)]
    pub drv_path: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    /// The evaluation error, ANSI escapes stripped.
    #[serde(default)]
    pub error: Option<String>,
    /// How many times the node was evaluated (more than 1 only for measure labels).
    pub calls: u64,
    /// Exclusive cost: charged while this node was the innermost one being evaluated.
    pub cost: Cost,
    /// Gauges when the node was left.
    pub after: Gauges,
}

/// Checks that a file is a report of the version this build reads.
pub fn check_schema(schema: &str, version: u32) -> Result<(), String> {
    if schema != SCHEMA {
        return Err(format!("not a nix-evalcost report (schema {:?})", crate::attrpath::sanitize_text(schema)));
    }
    if version != SCHEMA_VERSION {
        return Err(format!(
            "report schema version {version} is not supported by this nix-evalcost (it reads version {SCHEMA_VERSION})"
        ));
    }
    Ok(())
}

impl Part {
    /// What this part's nodes (in the joined report's `nodes`), its unattributed cost and its
    /// share of nodes walked by several parts add up to: equal to its `totals` when costs are
    /// conserved.
    pub fn charged_sum(&self, nodes: &[Node]) -> Cost {
        let mut sum = self.unattributed;
        sum.add(&self.shared);
        for &id in &self.nodes {
            sum.add(&nodes[id as usize].cost);
        }
        sum
    }
}

impl Report {
    /// Checks the structural promises readers rely on: ids are indexes, parents come first.
    pub fn validate(&self) -> Result<(), String> {
        check_schema(&self.schema, self.schema_version)?;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.id as usize != i {
                return Err(format!("node {i} has id {}", node.id));
            }
            if let Some(parent) = node.parent {
                if parent as usize >= i {
                    return Err(format!("node {i} names parent {parent}, which does not come before it"));
                }
            }
        }
        if let Some(stacks) = &self.stacks {
            stacks.validate(self.nodes.len())?;
        }
        Ok(())
    }

    /// Inclusive cost of every node: its own plus all its descendants'.
    pub fn inclusive_costs(&self) -> Vec<Cost> {
        crate::cost::inclusive_costs(self.nodes.iter().map(|n| (n.parent, &n.cost)))
    }

    /// Every node's exclusive cost plus the unattributed bucket: equal to `totals` when costs
    /// are conserved (what the tests check on every walk).
    pub fn charged_sum(&self) -> Cost {
        let mut sum = self.unattributed;
        for n in &self.nodes {
            sum.add(&n.cost);
        }
        sum
    }

    pub fn error_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.error.is_some()).count()
    }

    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn node(id: u32, parent: Option<u32>, path: &[&str], thunks: u64) -> Node {
        Node {
            id,
            parent,
            path: path.iter().map(|s| s.to_string()).collect(),
            kind: Kind::Attrset,
            is_derivation: false,
            drv_path: None,
            system: None,
            error: None,
            calls: 1,
            cost: Cost { thunks, ..Cost::default() },
            after: Gauges::default(),
        }
    }

    pub(crate) fn report(nodes: Vec<Node>) -> Report {
        Report {
            schema: SCHEMA.into(),
            schema_version: SCHEMA_VERSION,
            meta: Meta::default(),
            sizes: Sizes::default(),
            totals: Cost::default(),
            unattributed: Cost::default(),
            end: Gauges::default(),
            phases: vec![],
            nodes,
            stacks: None,
            isolated: Vec::new(),
        }
    }

    #[test]
    fn inclusive_is_exclusive_plus_children() {
        let r = report(vec![
            node(0, None, &["a"], 1),
            node(1, Some(0), &["a", "b"], 10),
            node(2, Some(1), &["a", "b", "c"], 100),
            node(3, Some(0), &["a", "d"], 1000),
            node(4, None, &["e"], 5),
        ]);
        let inc: Vec<u64> = r.inclusive_costs().iter().map(|c| c.thunks).collect();
        assert_eq!(inc, vec![1111, 110, 100, 1000, 5]);
    }

    #[test]
    fn validate_rejects_parents_after_children() {
        let r = report(vec![node(0, Some(1), &["a"], 1), node(1, None, &["b"], 1)]);
        assert!(r.validate().unwrap_err().contains("parent 1"));
        let mut ok = report(vec![node(0, None, &["a"], 1)]);
        assert!(ok.validate().is_ok());
        ok.schema_version = 99;
        assert!(ok.validate().unwrap_err().contains("version 99"));
    }

    #[test]
    fn kind_names_are_the_json_names() {
        for kind in Kind::ALL {
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{}\"", kind.name()));
            assert_eq!(serde_json::from_str::<Kind>(&format!("\"{}\"", kind.name())).unwrap(), kind);
        }
        assert_eq!(serde_json::from_str::<Kind>("\"thunk\"").unwrap(), Kind::Unknown, "unknown names read as unknown");
    }
}
