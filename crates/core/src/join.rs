//! Joining the parts of one split walk into one report, as if one process had walked
//! everything: the shards of `profile --shard I/N` (one per CI job or machine), or the workers
//! of `profile -j N`.
//!
//! A unit (see [`walk_policy::unit_depth`]) is walked by exactly one shard; the structure above
//! the units (`packages`, `packages.x86_64-linux`) by every shard. A joined node walked by
//! several shards costs the sum of what each spent on it, and every shard becomes a
//! [`Part`] whose own costs stay conserved, so the joined report is conserved too:
//! `totals = Σ part totals = unattributed + Σ nodes`.
//!
//! [`walk_policy::unit_depth`]: crate::walk_policy::unit_depth

use crate::cost::{Cost, Gauges};
use crate::report::{Kind, Node, Part, Report};
use crate::stacks::{StackNode, Stacks};
use crate::walk_policy::Shard;
use std::collections::HashMap;
use std::path::PathBuf;

/// How strict the join is.
#[derive(Clone, Copy, Debug, Default)]
pub struct JoinOptions {
    /// Join even if shards are missing; the report is then marked incomplete.
    pub allow_missing: bool,
}

/// Why shards cannot be joined: each names the files and what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoinError {
    #[error("no reports to join")]
    Empty,
    #[error("{0} is not a shard's report (it was made without `profile --shard I/N`); join only the reports of one split walk")]
    NotAShard(String),
    #[error("{0} and {1} are shards of different splits ({2} and {3}); join the shards of one split walk")]
    CountsDiffer(String, String, String, String),
    #[error("{0} and {1} are both shard {2}; give each shard once")]
    Duplicate(String, String, String),
    #[error("{first} and {other} walked different {what} ({a} and {b}); join the shards of one revision and one walk")]
    Mismatch { first: String, other: String, what: &'static str, a: String, b: String },
    #[error("{} missing; give every shard's report, or --allow-missing to join a partial walk", missing_shards(.missing))]
    Missing { missing: Vec<String> },
}

/// "shard 2/3 is", "shards 1/3, 3/3 are".
fn missing_shards(missing: &[String]) -> String {
    match missing {
        [one] => format!("shard {one} is"),
        many => format!("shards {} are", many.join(", ")),
    }
}

/// One process's report in a join.
pub struct PartReport {
    /// `shard 2/3`, `worker 3`.
    pub name: String,
    /// How the process ended, when not by finishing its part.
    pub ended: Option<String>,
    pub report: Report,
}

/// Joins the shards' reports (each with the file it came from, for messages).
pub fn join_shards(mut shards: Vec<(PathBuf, Report)>, options: JoinOptions) -> Result<Report, JoinError> {
    let present = check_shards(&mut shards, options)?;
    let complete = shards.iter().all(|(_, r)| r.meta.complete) && present.len() as u32 == present[0].count;
    let parts: Vec<PartReport> =
        shards.into_iter().zip(&present).map(|((_, report), shard)| PartReport { name: format!("shard {shard}"), ended: None, report }).collect();
    let mut joined = join_parts(&parts, complete);
    joined.meta.shard = None;
    Ok(joined)
}

/// Joins the reports of a parallel walk's workers (`profile -j N`).
pub fn join_workers(parts: &[PartReport]) -> Report {
    let complete = parts.iter().all(|p| p.report.meta.complete);
    join_parts(parts, complete)
}

/// The report of a one-slot parallel walk's first worker ([`Worker::sole`]), joined as the
/// CLI would join it, so that the CLI need not read and write it again; a worker replaced over
/// its memory budget keeps its own report (the CLI joins it with its successors').
///
/// [`Worker::sole`]: crate::workers::Worker::sole
pub fn join_sole_worker(mut report: Report) -> Report {
    let Some(worker) = report.meta.worker.as_ref().filter(|w| !w.retired) else {
        return report;
    };
    // Its nodes are the joined nodes: moved, not copied (inside nix, this is the walk's last
    // cost before the report is written).
    let nodes = std::mem::take(&mut report.nodes);
    let part = PartReport { name: crate::workers::part_name(worker.run), ended: None, report };
    let mut joined = Joined::new(1);
    joined.add_sole(nodes);
    joined.finish(std::slice::from_ref(&part), part.report.meta.complete)
}

fn join_parts(parts: &[PartReport], complete: bool) -> Report {
    let mut joined = Joined::new(parts.len());
    for (i, part) in parts.iter().enumerate() {
        joined.add(i, &part.report);
    }
    joined.finish(parts, complete)
}

/// Checks that the shards belong together; sorts them by index and returns each one's shard.
fn check_shards(shards: &mut [(PathBuf, Report)], options: JoinOptions) -> Result<Vec<Shard>, JoinError> {
    let name = |p: &PathBuf| crate::attrpath::sanitize_text(&p.display().to_string());
    let shard_of = |(path, report): &(PathBuf, Report)| report.meta.shard.ok_or_else(|| JoinError::NotAShard(name(path)));
    let first = shards.first().ok_or(JoinError::Empty)?;
    let count = shard_of(first)?.count;
    for entry in shards.iter() {
        let shard = shard_of(entry)?;
        if shard.count != count {
            let a = shard_of(first)?;
            return Err(JoinError::CountsDiffer(name(&first.0), name(&entry.0), a.to_string(), shard.to_string()));
        }
        for (what, a, b) in walk_identity(&first.1).into_iter().zip(walk_identity(&entry.1)).map(|((w, a), (_, b))| (w, a, b)) {
            if a != b {
                return Err(JoinError::Mismatch { first: name(&first.0), other: name(&entry.0), what, a, b });
            }
        }
    }
    shards.sort_by_key(|(_, r)| r.meta.shard.map(|s| s.index));
    for pair in shards.windows(2) {
        if pair[0].1.meta.shard == pair[1].1.meta.shard {
            return Err(JoinError::Duplicate(name(&pair[0].0), name(&pair[1].0), shard_of(&pair[0])?.to_string()));
        }
    }
    let present: Vec<Shard> = shards.iter().map(shard_of).collect::<Result<_, _>>()?;
    let missing: Vec<String> = (1..=count).filter(|i| !present.iter().any(|s| s.index == *i)).map(|i| format!("{i}/{count}")).collect();
    if !missing.is_empty() && !options.allow_missing {
        return Err(JoinError::Missing { missing });
    }
    Ok(present)
}

/// What must be equal in every shard of one walk: the flake's revision, the Nix, the walk's
/// settings. (Locked URLs name the revision; a dirty tree's NAR hash changes with any edit.)
fn walk_identity(report: &Report) -> [(&'static str, String); 5] {
    let meta = &report.meta;
    let flake = meta.flake.as_ref().map_or(String::new(), |f| format!("{} {}", f.locked_url, f.nar_hash.as_deref().unwrap_or("")));
    let systems = if meta.all_systems { "all".to_string() } else { meta.systems.join(",") };
    let stacks = report.stacks.as_ref().map_or("none".to_string(), |s| s.source.clone());
    [
        ("flakes", flake),
        ("Nix versions", meta.nix_version.clone()),
        ("systems", systems),
        ("drvPath settings", meta.force_drv_paths.to_string()),
        ("call-stack settings", stacks),
    ]
}

/// Who walked a joined node.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walker {
    One(usize),
    Several,
}

#[derive(Default)]
struct Joined {
    nodes: Vec<Node>,
    walkers: Vec<Walker>,
    /// (path, is a measure label) → joined id; none when there is one part (nothing to match:
    /// `profile -j 1` joins its one worker inside nix, where this is the walk's last cost).
    index: Option<HashMap<(Vec<String>, bool), u32>>,
    /// Per part: its node ids in the joined report, in its own order.
    remaps: Vec<Vec<u32>>,
}

impl Joined {
    fn new(parts: usize) -> Joined {
        Joined { index: (parts > 1).then(HashMap::new), ..Joined::default() }
    }

    fn add(&mut self, part: usize, report: &Report) {
        let mut remap = Vec::with_capacity(report.nodes.len());
        for node in &report.nodes {
            let key = self.index.as_ref().map(|_| (node.path.clone(), node.kind == Kind::Measure));
            let id = match key.as_ref().and_then(|key| self.index.as_ref()?.get(key)) {
                Some(&id) => {
                    self.absorb(id, node);
                    id
                }
                None => {
                    let id = self.push(part, node.clone(), &remap);
                    if let (Some(index), Some(key)) = (&mut self.index, key) {
                        index.insert(key, id);
                    }
                    id
                }
            };
            remap.push(id);
        }
        self.remaps.push(remap);
    }

    /// The nodes of the only part of a one-part join (nothing to match them with). A valid
    /// report's nodes are numbered by their index, each after its parent (`Report::validate`),
    /// so they are their own joined nodes: the vector is kept, not moved node by node into a
    /// growing one (6 ms for 20 000 nodes, measured inside nix).
    fn add_sole(&mut self, nodes: Vec<Node>) {
        debug_assert!(self.index.is_none() && self.remaps.is_empty());
        debug_assert!(nodes.iter().enumerate().all(|(i, n)| n.id as usize == i && n.parent.is_none_or(|p| (p as usize) < i)));
        self.remaps.push((0..nodes.len() as u32).collect());
        self.walkers = vec![Walker::One(0); nodes.len()];
        self.nodes = nodes;
    }

    /// A node only `part` walked (so far), its parent renumbered by `remap`; its joined id.
    fn push(&mut self, part: usize, node: Node, remap: &[u32]) -> u32 {
        let id = self.nodes.len() as u32;
        let parent = node.parent.map(|p| remap[p as usize]);
        self.nodes.push(Node { id, parent, ..node });
        self.walkers.push(Walker::One(part));
        id
    }

    /// A node another shard walked too: its cost adds up; an error or an interruption in any
    /// shard stays visible.
    fn absorb(&mut self, id: u32, node: &Node) {
        let joined = &mut self.nodes[id as usize];
        joined.cost.add(&node.cost);
        joined.calls += node.calls;
        if joined.error.is_none() && node.error.is_some() {
            joined.error = node.error.clone();
            joined.kind = node.kind;
        }
        if node.kind == Kind::Interrupted {
            joined.kind = Kind::Interrupted;
        }
        self.walkers[id as usize] = Walker::Several;
    }

    fn finish(self, parts: &[PartReport], complete: bool) -> Report {
        let (nodes, new_id) = in_order(self.nodes);
        let reports: Vec<&Report> = parts.iter().map(|p| &p.report).collect();
        let described = parts.iter().enumerate().map(|(i, part)| part_of(i, part, &self.remaps[i], &self.walkers, &new_id)).collect::<Vec<_>>();
        let first = reports[0];
        let mut totals = Cost::default();
        let mut unattributed = Cost::default();
        let mut end = Gauges::default();
        for report in &reports {
            totals.add(&report.totals);
            unattributed.add(&report.unattributed);
            end = max_gauges(end, report.end);
        }
        let mut meta = first.meta.clone();
        meta.worker = None;
        meta.complete = complete;
        meta.parts = described;
        meta.started_at = reports.iter().map(|r| r.meta.started_at.clone()).min().unwrap_or_default();
        Report {
            schema: first.schema.clone(),
            schema_version: first.schema_version,
            meta,
            sizes: first.sizes,
            totals,
            unattributed,
            end,
            phases: summed_phases(&reports),
            nodes,
            stacks: joined_stacks(&reports, &self.remaps, &new_id),
            isolated: Vec::new(),
        }
    }
}

fn part_of(i: usize, part: &PartReport, remap: &[u32], walkers: &[Walker], new_id: &[u32]) -> Part {
    let report = &part.report;
    let mut shared = Cost::default();
    let mut alone = Vec::new();
    // The part's own nodes are read only for what it shares: a sole part's were moved out.
    for (k, &id) in remap.iter().enumerate() {
        match walkers[id as usize] {
            Walker::One(p) if p == i => alone.push(new_id[id as usize]),
            _ => shared.add(&report.nodes[k].cost),
        }
    }
    alone.sort_unstable();
    Part {
        name: part.name.clone(),
        hostname: report.meta.hostname.clone(),
        started_at: report.meta.started_at.clone(),
        complete: report.meta.complete,
        totals: report.totals,
        unattributed: report.unattributed,
        shared,
        end: report.end,
        nodes: alone,
        ended: part.ended.clone(),
    }
}

fn max_gauges(a: Gauges, b: Gauges) -> Gauges {
    Gauges {
        gc_heap_bytes: a.gc_heap_bytes.max(b.gc_heap_bytes),
        rss_bytes: a.rss_bytes.max(b.rss_bytes),
        peak_rss_bytes: a.peak_rss_bytes.max(b.peak_rss_bytes),
    }
}

/// Phases of the same name add up, in the order the first shard has them.
fn summed_phases(reports: &[&Report]) -> Vec<crate::report::Phase> {
    let mut phases: Vec<crate::report::Phase> = Vec::new();
    for report in reports {
        for phase in &report.phases {
            match phases.iter_mut().find(|p| p.name == phase.name) {
                Some(p) => p.cost.add(&phase.cost),
                None => phases.push(phase.clone()),
            }
        }
    }
    phases
}

/// `nodes` in [`preorder_by_name`]'s order, renumbered, with each old id's new id. A sole
/// worker's nodes are in that order already (its walk visited them so): they are kept as they
/// are, with no sort and no move (inside nix, where this is on the walk's last stretch).
fn in_order(nodes: Vec<Node>) -> (Vec<Node>, Vec<u32>) {
    if is_preorder_by_name(&nodes) {
        let identity = (0..nodes.len() as u32).collect();
        return (nodes, identity);
    }
    let order = preorder_by_name(&nodes);
    let mut new_id = vec![0u32; nodes.len()];
    for (new, &old) in order.iter().enumerate() {
        new_id[old as usize] = new as u32;
    }
    let mut taken: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let nodes = order
        .iter()
        .enumerate()
        .map(|(new, &old)| {
            let node = taken[old as usize].take().expect("a pre-order visits each node once");
            Node { id: new as u32, parent: node.parent.map(|p| new_id[p as usize]), ..node }
        })
        .collect();
    (nodes, new_id)
}

/// Siblings' order in a joined report: walked nodes by name, then measure labels by first
/// appearance (their ids).
fn sibling_order(a: &Node, b: &Node) -> std::cmp::Ordering {
    let measure = |n: &Node| n.kind == Kind::Measure;
    measure(a).cmp(&measure(b)).then_with(|| if measure(a) { a.id.cmp(&b.id) } else { a.path.last().cmp(&b.path.last()) })
}

/// Whether [`preorder_by_name`] of `nodes` is `nodes` as they are, in one pass: each node's id
/// is its index, its parent is on the path to the node before it, and it does not sort before
/// its previous sibling (equal siblings keep their order, as the stable sort does).
fn is_preorder_by_name(nodes: &[Node]) -> bool {
    let mut last_child: Vec<Option<u32>> = vec![None; nodes.len()];
    let mut last_root: Option<u32> = None;
    let mut path: Vec<u32> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if node.id as usize != i {
            return false;
        }
        while path.last().is_some_and(|&top| Some(top) != node.parent) {
            path.pop();
        }
        if path.last().copied() != node.parent {
            return false;
        }
        let previous = match node.parent {
            Some(p) => &mut last_child[p as usize],
            None => &mut last_root,
        };
        if previous.is_some_and(|prev| sibling_order(&nodes[prev as usize], node) == std::cmp::Ordering::Greater) {
            return false;
        }
        *previous = Some(node.id);
        path.push(node.id);
    }
    true
}

/// A pre-order of the joined tree with siblings sorted by name, as one walk visits them (Nix
/// lists attributes in byte order); measure labels keep their order of first appearance.
fn preorder_by_name(nodes: &[Node]) -> Vec<u32> {
    let mut children: Vec<Vec<u32>> = vec![Vec::new(); nodes.len()];
    let mut roots = Vec::new();
    for node in nodes {
        match node.parent {
            Some(p) => children[p as usize].push(node.id),
            None => roots.push(node.id),
        }
    }
    let sort = |ids: &mut Vec<u32>| ids.sort_by(|&a, &b| sibling_order(&nodes[a as usize], &nodes[b as usize]));
    sort(&mut roots);
    let mut order = Vec::with_capacity(nodes.len());
    let mut stack: Vec<u32> = roots.into_iter().rev().collect();
    while let Some(id) = stack.pop() {
        order.push(id);
        let kids = &mut children[id as usize];
        sort(kids);
        stack.extend(kids.iter().rev());
    }
    order
}

/// The shards' call trees side by side, frames and walked nodes renumbered. Equal stacks of
/// different shards stay separate tree nodes; every reader adds them up by frame path.
fn joined_stacks(reports: &[&Report], remaps: &[Vec<u32>], new_id: &[u32]) -> Option<Stacks> {
    let first = reports[0].stacks.as_ref()?;
    let mut joined = Stacks { source: first.source.clone(), ..Stacks::default() };
    let mut frame_ids: HashMap<String, u32> = HashMap::new();
    for (report, remap) in reports.iter().zip(remaps) {
        let Some(stacks) = &report.stacks else { continue };
        joined.depth_cap = joined.depth_cap.max(stacks.depth_cap);
        joined.node_cap += stacks.node_cap;
        joined.folded_calls += stacks.folded_calls;
        let frames: Vec<u32> = stacks
            .frames
            .iter()
            .map(|f| {
                let next = frame_ids.len() as u32;
                *frame_ids.entry(f.clone()).or_insert_with(|| {
                    joined.frames.push(f.clone());
                    next
                })
            })
            .collect();
        let offset = joined.nodes.len() as u32;
        joined.nodes.extend(stacks.nodes.iter().map(|n| StackNode {
            parent: n.parent.map(|p| p + offset),
            walk_node: n.walk_node.map(|w| new_id[remap[w as usize] as usize]),
            frame: frames[n.frame as usize],
            calls: n.calls,
            cost: n.cost,
        }));
    }
    Some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{node, report};

    fn shard(index: u32, count: u32, nodes: Vec<Node>, unattributed: u64) -> (PathBuf, Report) {
        let mut r = report(nodes);
        r.meta.shard = Some(Shard { index, count });
        r.meta.complete = true;
        r.unattributed = Cost { thunks: unattributed, ..Cost::default() };
        r.totals = r.charged_sum();
        (PathBuf::from(format!("s{index}.json")), r)
    }

    /// Two shards of `packages.x86_64-linux.{a,b,c}`: shard 1 walked a and c, shard 2 b.
    fn two() -> Vec<(PathBuf, Report)> {
        vec![
            shard(2, 2, vec![node(0, None, &["packages"], 1), node(1, Some(0), &["packages", "x86_64-linux"], 2), node(2, Some(1), &["packages", "x86_64-linux", "b"], 20)], 7),
            shard(
                1,
                2,
                vec![
                    node(0, None, &["packages"], 1),
                    node(1, Some(0), &["packages", "x86_64-linux"], 3),
                    node(2, Some(1), &["packages", "x86_64-linux", "a"], 10),
                    node(3, Some(1), &["packages", "x86_64-linux", "c"], 30),
                ],
                5,
            ),
        ]
    }

    #[test]
    fn join_orders_nodes_like_one_walk_and_conserves_costs() {
        let joined = join_shards(two(), JoinOptions::default()).unwrap();
        joined.validate().unwrap();
        let paths: Vec<String> = joined.nodes.iter().map(|n| n.path.join(".")).collect();
        assert_eq!(paths, ["packages", "packages.x86_64-linux", "packages.x86_64-linux.a", "packages.x86_64-linux.b", "packages.x86_64-linux.c"]);
        let thunks: Vec<u64> = joined.nodes.iter().map(|n| n.cost.thunks).collect();
        assert_eq!(thunks, [2, 5, 10, 20, 30]);
        assert_eq!(joined.charged_sum(), joined.totals);
        assert_eq!(joined.totals.thunks, 1 + 2 + 20 + 7 + 1 + 3 + 10 + 30 + 5);
        assert!(joined.meta.complete && joined.meta.shard.is_none());
        let [one, two] = &joined.meta.parts[..] else { panic!("{:?}", joined.meta.parts) };
        assert_eq!((one.name.as_str(), two.name.as_str()), ("shard 1/2", "shard 2/2"));
        assert_eq!(one.nodes, [2, 4]);
        assert_eq!(two.nodes, [3]);
        for part in [one, two] {
            assert_eq!(part.charged_sum(&joined.nodes), part.totals, "{}", part.name);
        }
    }

    /// A tree of `shape`'s nodes in id order: each entry picks a parent among the nodes before
    /// it (or none), a name from a small alphabet (so that siblings tie) and whether it is a
    /// measure label.
    fn tree(shape: &[(usize, u8, bool)]) -> Vec<Node> {
        let mut nodes: Vec<Node> = Vec::new();
        for (i, &(pick, name, measure)) in shape.iter().enumerate() {
            let parent = (pick % (i + 1)).checked_sub(1).map(|p| p as u32);
            let mut path = parent.map_or_else(Vec::new, |p| nodes[p as usize].path.clone());
            path.push(["a", "b", "c"][name as usize % 3].to_string());
            let names: Vec<&str> = path.iter().map(String::as_str).collect();
            let mut n = node(i as u32, parent, &names, 1);
            if measure {
                n.kind = Kind::Measure;
            }
            nodes.push(n);
        }
        nodes
    }

    proptest::proptest! {
        /// The one-pass check says "already in order" exactly when the sort would keep every
        /// node where it is; and nodes put in order pass it.
        #[test]
        fn the_order_check_agrees_with_the_sort(shape in proptest::collection::vec((0usize..64, 0u8..3, proptest::bool::weighted(0.2)), 0..40)) {
            let nodes = tree(&shape);
            let identity: Vec<u32> = (0..nodes.len() as u32).collect();
            proptest::prop_assert_eq!(is_preorder_by_name(&nodes), preorder_by_name(&nodes) == identity);
            let (sorted, _) = in_order(nodes);
            proptest::prop_assert!(is_preorder_by_name(&sorted));
            proptest::prop_assert_eq!(preorder_by_name(&sorted), identity);
        }
    }

    /// One worker's report of shard 1's nodes, walked out of name order (c before a), as a
    /// worker's claims may leave them.
    fn out_of_name_order() -> Report {
        let (_, mut report) = shard(1, 1, two().remove(1).1.nodes, 5);
        report.nodes.swap(2, 3);
        report.nodes[2].id = 2;
        report.nodes[3].id = 3;
        report.meta.shard = None;
        report
    }

    #[test]
    fn one_worker_joins_to_its_own_nodes_in_walk_order() {
        let report = out_of_name_order();
        let joined = join_workers(&[PartReport { name: "worker 1".into(), ended: None, report: report.clone() }]);
        joined.validate().unwrap();
        let paths: Vec<String> = joined.nodes.iter().map(|n| n.path.join(".")).collect();
        assert_eq!(paths, ["packages", "packages.x86_64-linux", "packages.x86_64-linux.a", "packages.x86_64-linux.c"]);
        assert_eq!(joined.nodes.iter().map(|n| n.cost.thunks).collect::<Vec<_>>(), [1, 3, 10, 30]);
        assert_eq!(joined.totals, report.totals);
        let [part] = &joined.meta.parts[..] else { panic!("{:?}", joined.meta.parts) };
        assert_eq!((part.name.as_str(), &part.nodes[..], part.shared), ("worker 1", &[0, 1, 2, 3][..], Cost::default()));
        assert_eq!(part.charged_sum(&joined.nodes), part.totals);
    }

    /// `profile -j 1`'s worker joins its own report inside nix, moving its nodes: the same
    /// report as the CLI's join of that one part, stacks included.
    #[test]
    fn a_sole_worker_joins_as_the_cli_joins_one_part() {
        let mut report = out_of_name_order();
        report.meta.worker = Some(crate::report::WorkerMeta { run: 1, units: 2, retired: false });
        report.stacks = Some(Stacks {
            source: "eval-profiler".into(),
            frames: vec!["f.nix:1:1".into()],
            nodes: vec![StackNode { parent: None, walk_node: Some(2), frame: 0, calls: 1, cost: Cost::default() }],
            ..Stacks::default()
        });
        let by_cli = join_workers(&[PartReport { name: "worker 1".into(), ended: None, report: report.clone() }]);
        let in_nix = join_sole_worker(report.clone());
        in_nix.validate().unwrap();
        assert_eq!(in_nix, by_cli);
        assert_eq!(in_nix.stacks.as_ref().unwrap().nodes[0].walk_node, Some(3), "c moved after a");
        // A worker replaced over its memory budget keeps its own report.
        report.meta.worker.as_mut().unwrap().retired = true;
        assert_eq!(join_sole_worker(report.clone()), report);
    }

    #[test]
    fn join_refuses_missing_duplicate_foreign_and_mismatched_shards() {
        let mut shards = two();
        shards.remove(0);
        let e = join_shards(shards.clone(), JoinOptions::default()).unwrap_err();
        assert_eq!(e.to_string(), "shard 2/2 is missing; give every shard's report, or --allow-missing to join a partial walk");
        let partial = join_shards(shards.clone(), JoinOptions { allow_missing: true }).unwrap();
        assert!(!partial.meta.complete);

        let mut twice = two();
        twice.push(twice[0].clone());
        assert!(matches!(join_shards(twice, JoinOptions::default()), Err(JoinError::Duplicate(..))));

        let mut foreign = two();
        foreign[1].1.meta.shard = None;
        assert_eq!(join_shards(foreign, JoinOptions::default()).unwrap_err(), JoinError::NotAShard("s1.json".into()));

        let mut three = two();
        three[1].1.meta.shard = Some(Shard { index: 1, count: 3 });
        assert!(matches!(join_shards(three, JoinOptions::default()), Err(JoinError::CountsDiffer(..))));

        let mut moved = two();
        moved[1].1.meta.flake = Some(crate::report::FlakeMeta { locked_url: "git+file:///src?rev=bbb".into(), ..Default::default() });
        let e = join_shards(moved, JoinOptions::default()).unwrap_err();
        assert!(e.to_string().starts_with("s2.json and s1.json walked different flakes"), "{e}");
    }

    #[test]
    fn stacks_are_renumbered_into_the_joined_nodes() {
        let mut shards = two();
        for (frame, (_, r)) in ["f.nix:1:1", "g.nix:2:2"].iter().zip(shards.iter_mut()) {
            let leaf = r.nodes.len() as u32 - 1;
            r.stacks = Some(Stacks {
                source: "eval-profiler".into(),
                frames: vec![frame.to_string()],
                nodes: vec![StackNode { parent: None, walk_node: Some(leaf), frame: 0, calls: 1, cost: Cost::default() }],
                ..Stacks::default()
            });
        }
        let joined = join_shards(shards, JoinOptions::default()).unwrap();
        joined.validate().unwrap();
        let stacks = joined.stacks.unwrap();
        let under: Vec<(String, String)> = stacks
            .nodes
            .iter()
            .map(|n| (stacks.frames[n.frame as usize].clone(), joined.nodes[n.walk_node.unwrap() as usize].path.join(".")))
            .collect();
        // Shard 1 (given second) comes first: its stack ran under c, shard 2's under b.
        assert_eq!(under, [("g.nix:2:2".into(), "packages.x86_64-linux.c".into()), ("f.nix:1:1".into(), "packages.x86_64-linux.b".into())]);
    }
}
