//! Call-stack profiles: a tree of call frames under each walked node, aggregated as calls happen.
//!
//! Memory is bounded, never by the number of calls: each call either finds its (parent, frame)
//! child or adds it once, and the tree holds at most `node_cap` nodes (`NODE_CAP` by default).
//! Once it is full, a call whose stack is not in the tree yet is charged to its caller's node
//! (it *folds* into its parent), and the report counts those calls: counts stay exact for every
//! stack in the tree, and costs stay conserved. Past `DEPTH_CAP` frames below a walked node,
//! deeper calls are charged to one `[truncated]` frame, so deep recursion costs neither
//! unbounded memory nor an unreadable graph.

use crate::cost::Cost;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Frames kept below a walked node; deeper calls are charged to a `[truncated]` frame.
pub const DEPTH_CAP: usize = 1000;
pub const TRUNCATED: &str = "[truncated]";
/// The default most tree nodes (distinct stacks) kept. About 0.5 KB each through the report's
/// writing: a naive `fib 24` (450 000 distinct call-site stacks) stays under 64 MiB.
pub const NODE_CAP: usize = 20_000;
/// The frame first calls under a walked node fold into once the tree is full.
pub const FOLDED: &str = "[folded: the call tree was full]";

/// The call stacks of one report (schema: docs/report-schema.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stacks {
    /// How the frames were sensed: "trace-function-calls" (Nix 2.26: frames are call sites) or
    /// "eval-profiler" (Nix 2.30+: frames are the called functions).
    pub source: String,
    pub depth_cap: usize,
    /// The most tree nodes kept (0 in reports from before the cap).
    #[serde(default)]
    pub node_cap: usize,
    /// Calls charged to their caller's node because the tree was full.
    #[serde(default)]
    pub folded_calls: u64,
    /// Frame names: call sites `file:line:column` (or `[truncated]`).
    pub frames: Vec<String>,
    /// Tree nodes in creation order: a parent precedes its children.
    pub nodes: Vec<StackNode>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StackNode {
    /// Parent frame, or None for a first frame under a walked node (or outside any).
    pub parent: Option<u32>,
    /// The walked node (report `nodes` id) the stack runs under, for first frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk_node: Option<u32>,
    pub frame: u32,
    pub calls: u64,
    /// Exclusive: while this frame was the innermost call.
    pub cost: Cost,
}

/// Declares [`CallCost`]: a compact [`Cost`] with the fields that make sense per call (the shim's
/// `read_call_counters` in cpp/counters.cc reads exactly these), because
/// it is read, copied and differenced at every call and return.
macro_rules! call_cost_struct {
    ($($field:ident),+ $(,)?) => {
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct CallCost {
            $(pub $field: u64,)+
        }

        impl CallCost {
            fn since(&self, earlier: &CallCost) -> CallCost {
                CallCost { $($field: self.$field.saturating_sub(earlier.$field),)+ }
            }
            fn add(&mut self, other: &CallCost) {
                $(self.$field = self.$field.saturating_add(other.$field);)+
            }
            fn to_cost(self) -> Cost {
                Cost { $($field: self.$field,)+ ..Cost::default() }
            }
            /// The per-call fields of a cumulative reading. (Inlined into the plugin's per-call
            /// hook, where the fields it does not keep are never computed.)
            #[inline]
            pub fn of(cost: &Cost) -> CallCost {
                CallCost { $($field: cost.$field,)+ }
            }
        }
    };
}

call_cost_struct!(
    wall_ns, function_calls, primop_calls, thunks, lookups, values, envs, values_in_envs, list_elems, attrsets,
    attrs_in_attrsets, gc_bytes,
);

/// Where a new frame hangs: under a frame, or first under a walked node (or none).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Parent {
    Frame(u32),
    Walk(Option<u32>),
}

/// A call under way.
#[derive(Clone, Copy)]
struct OpenCall {
    /// The tree node charged.
    node: u32,
    /// The reading when the call started.
    start: CallCost,
    /// Frames below the walked node.
    depth: usize,
    /// Charged to `node` because the tree was full (so is every call inside it).
    folded: bool,
}

/// The tree being built during a walk.
pub struct CallTree {
    node_cap: usize,
    folded_calls: u64,
    frame_ids: FxHashMap<Box<str>, u32>,
    frames: Vec<Box<str>>,
    nodes: Vec<Building>,
    children: FxHashMap<(Parent, u32), u32>,
    /// Open calls: tree node, reading at entry, depth below the walked node.
    open: Vec<OpenCall>,
}

struct Building {
    parent: Option<u32>,
    walk_node: Option<u32>,
    frame: u32,
    calls: u64,
    inclusive: CallCost,
    /// The node's first children, (frame, node), found by a scan before the hash map: most
    /// frames call few distinct functions, and the map's probe was 2.5% of a stacks walk's time
    /// on Nix 2.35 (perf, fib 27). Children past these are in `CallTree::children`.
    near: [(u32, u32); NEAR_CHILDREN],
    near_len: u8,
}

const NEAR_CHILDREN: usize = 4;

impl Default for CallTree {
    fn default() -> Self {
        CallTree::with_cap(NODE_CAP)
    }
}

impl CallTree {
    /// A tree of at most `node_cap` nodes (a few more: one `[folded]` node per walked node).
    pub fn with_cap(node_cap: usize) -> CallTree {
        CallTree {
            node_cap,
            folded_calls: 0,
            frame_ids: FxHashMap::default(),
            frames: Vec::new(),
            nodes: Vec::new(),
            children: FxHashMap::default(),
            open: Vec::new(),
        }
    }

    /// The id of a frame name, added on first sight.
    pub fn frame_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.frame_ids.get(name) {
            return id;
        }
        let id = self.frames.len() as u32;
        self.frames.push(name.into());
        self.frame_ids.insert(name.into(), id);
        id
    }

    /// A call of the frame named `frame` starts (Nix 2.26: a call site from the trace).
    pub fn enter_named(&mut self, walk_node: Option<u32>, frame: &str, now: CallCost) {
        let frame = self.frame_id(frame);
        self.enter(walk_node, frame, now);
    }

    /// A call of frame `frame` (an id from [`CallTree::frame_id`]) starts; `walk_node` is the
    /// walked node being evaluated.
    pub fn enter(&mut self, walk_node: Option<u32>, frame: u32, now: CallCost) {
        let (parent, depth) = match self.open.last() {
            // Inside a folded call, every call folds too: charged to the same node, it never
            // lands on a node of another (shorter) stack, so kept counts stay exact.
            Some(&top) if top.folded => {
                self.folded_calls += 1;
                self.open.push(OpenCall { start: now, depth: top.depth + 1, ..top });
                return;
            }
            // A stack opened under another walked node (a measure label, a nested walk node)
            // continues under its innermost frame: the walk node frames are its ancestors.
            Some(top) => (Parent::Frame(top.node), top.depth + 1),
            None => (Parent::Walk(walk_node), 1),
        };
        let node = if depth > DEPTH_CAP {
            // Stay on the [truncated] frame: it absorbs every deeper call.
            let truncated = self.frame_id(TRUNCATED);
            match parent {
                Parent::Frame(n) if self.nodes[n as usize].frame == truncated => n,
                _ => self.child(parent, truncated, walk_node),
            }
        } else if let Some(known) = self.known_child(parent, frame) {
            known
        } else if self.nodes.len() < self.node_cap {
            self.child(parent, frame, walk_node)
        } else {
            // The tree is full: the call is charged to its caller's node (re-opened, as for
            // [truncated], so that only the outer opening adds its time), or, first under a
            // walked node, to that node's [folded] frame.
            self.folded_calls += 1;
            let folded = match parent {
                Parent::Frame(n) => n,
                Parent::Walk(_) => {
                    let frame = self.frame_id(FOLDED);
                    self.child(parent, frame, walk_node)
                }
            };
            self.open.push(OpenCall { node: folded, start: now, depth, folded: true });
            return;
        };
        self.nodes[node as usize].calls += 1;
        self.open.push(OpenCall { node, start: now, depth, folded: false });
    }

    fn known_child(&self, parent: Parent, frame: u32) -> Option<u32> {
        if let Parent::Frame(n) = parent {
            let near = &self.nodes[n as usize];
            if let Some(&(_, id)) = near.near[..near.near_len as usize].iter().find(|(f, _)| *f == frame) {
                return Some(id);
            }
            if (near.near_len as usize) < NEAR_CHILDREN {
                return None;
            }
        }
        self.children.get(&(parent, frame)).copied()
    }

    fn child(&mut self, parent: Parent, frame: u32, walk_node: Option<u32>) -> u32 {
        if let Some(id) = self.known_child(parent, frame) {
            return id;
        }
        let id = self.nodes.len() as u32;
        let (parent_node, walk) = match parent {
            Parent::Frame(n) => (Some(n), None),
            Parent::Walk(w) => (None, w.or(walk_node)),
        };
        self.nodes.push(Building {
            parent: parent_node,
            walk_node: walk,
            frame,
            calls: 0,
            inclusive: CallCost::default(),
            near: [(0, 0); NEAR_CHILDREN],
            near_len: 0,
        });
        match parent {
            Parent::Frame(n) if (self.nodes[n as usize].near_len as usize) < NEAR_CHILDREN => {
                let near = &mut self.nodes[n as usize];
                near.near[near.near_len as usize] = (frame, id);
                near.near_len += 1;
            }
            _ => {
                self.children.insert((parent, frame), id);
            }
        }
        id
    }

    /// The innermost call returns (or unwinds).
    pub fn exit(&mut self, now: CallCost) {
        if let Some(OpenCall { node, start, .. }) = self.open.pop() {
            // Only the outermost opening of a [truncated] frame adds its time (it is re-entered
            // for every deeper call).
            let truncated_inner = self.open.last().is_some_and(|outer| outer.node == node);
            if !truncated_inner {
                self.nodes[node as usize].inclusive.add(&now.since(&start));
            }
        }
    }

    /// Closes calls left open (an interrupted walk) and computes exclusive costs.
    pub fn finish(mut self, now: CallCost, source: &str) -> Stacks {
        while !self.open.is_empty() {
            self.exit(now);
        }
        let mut exclusive: Vec<CallCost> = self.nodes.iter().map(|n| n.inclusive).collect();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(p) = n.parent {
                exclusive[p as usize] = exclusive[p as usize].since(&self.nodes[i].inclusive);
            }
        }
        Stacks {
            source: source.into(),
            depth_cap: DEPTH_CAP,
            node_cap: self.node_cap,
            folded_calls: self.folded_calls,
            frames: self.frames.into_iter().map(String::from).collect(),
            nodes: self
                .nodes
                .into_iter()
                .zip(exclusive)
                .map(|(n, cost)| StackNode { parent: n.parent, walk_node: n.walk_node, frame: n.frame, calls: n.calls, cost: cost.to_cost() })
                .collect(),
        }
    }
}

/// A Nix 2.26 trace line: `function-trace entered POS at NS` or `function-trace exited ...`.
pub enum TraceEvent<'a> {
    Entered(&'a str),
    Exited,
}

pub fn parse_trace(line: &str) -> Option<TraceEvent<'_>> {
    if let Some(rest) = line.strip_prefix("function-trace entered ") {
        // `POS at NS`: the last space, then " at" before it (a char search, not a substring
        // search: this runs for every call).
        let pos = rest.rsplit_once(' ').and_then(|(pos, _)| pos.strip_suffix(" at")).unwrap_or(rest);
        Some(TraceEvent::Entered(pos))
    } else if line.starts_with("function-trace exited ") {
        Some(TraceEvent::Exited)
    } else {
        None
    }
}

impl Stacks {
    /// Checks what readers index by: every tree node's parent comes before it, its frame exists,
    /// and its walked node is one of the report's `walk_nodes` nodes.
    pub fn validate(&self, walk_nodes: usize) -> Result<(), String> {
        for (i, node) in self.nodes.iter().enumerate() {
            if node.parent.is_some_and(|p| p as usize >= i) {
                return Err(format!("stack node {i} names a parent that does not come before it"));
            }
            if node.frame as usize >= self.frames.len() {
                return Err(format!("stack node {i} names frame {}, of {}", node.frame, self.frames.len()));
            }
            if node.walk_node.is_some_and(|w| w as usize >= walk_nodes) {
                return Err(format!("stack node {i} names walked node {}, of {walk_nodes}", node.walk_node.unwrap_or(0)));
            }
        }
        Ok(())
    }

    /// Turns wall times counted in clock ticks (the plugin's per-call clock) into nanoseconds.
    pub fn scale_wall(&mut self, ns_per_tick: f64) {
        if ns_per_tick == 1.0 || !ns_per_tick.is_finite() || ns_per_tick <= 0.0 {
            return;
        }
        for node in &mut self.nodes {
            node.cost.wall_ns = (node.cost.wall_ns as f64 * ns_per_tick).round() as u64;
        }
    }

    /// Inclusive cost of every tree node.
    pub fn inclusive(&self) -> Vec<Cost> {
        crate::cost::inclusive_costs(self.nodes.iter().map(|n| (n.parent, &n.cost)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: u64) -> CallCost {
        CallCost { thunks: t, wall_ns: t, ..CallCost::default() }
    }

    #[test]
    fn a_frame_with_many_callees_keeps_one_node_per_callee() {
        // Past the first few children of a node, its children are found in the hash map.
        let mut tree = CallTree::default();
        tree.enter_named(Some(0), "f", at(0));
        for round in 0..3 {
            for g in 0..9 {
                tree.enter_named(Some(0), &format!("g{g}"), at(round * 100 + g));
                tree.exit(at(round * 100 + g + 1));
            }
        }
        tree.exit(at(300));
        let s = tree.finish(at(300), "test");
        assert_eq!(s.nodes.len(), 10, "f and its nine callees");
        assert!(s.nodes[1..].iter().all(|n| n.parent == Some(0) && n.calls == 3 && n.cost.thunks == 3));
        let names: Vec<&str> = s.nodes[1..].iter().map(|n| s.frames[n.frame as usize].as_str()).collect();
        assert_eq!(names, ["g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8"]);
    }

    #[test]
    fn ticks_become_nanoseconds_and_nothing_else_changes() {
        let mut tree = CallTree::default();
        tree.enter_named(Some(0), "f.nix:1:1", at(10));
        tree.exit(at(30));
        let mut s = tree.finish(at(30), "test");
        s.scale_wall(0.25);
        assert_eq!((s.nodes[0].cost.wall_ns, s.nodes[0].cost.thunks), (5, 20), "20 ticks at 0.25 ns each; counts untouched");
        s.scale_wall(f64::NAN);
        assert_eq!(s.nodes[0].cost.wall_ns, 5, "a ratio that is not a number leaves the times as they are");
    }

    #[test]
    fn aggregates_by_stack_and_computes_exclusive() {
        let mut tree = CallTree::default();
        // f calls g twice; g's cost is 2 each time; f's own 3.
        tree.enter_named(Some(7), "f.nix:1:1", at(0));
        tree.enter_named(Some(7), "g.nix:2:2", at(1));
        tree.exit(at(3));
        tree.enter_named(Some(7), "g.nix:2:2", at(3));
        tree.exit(at(5));
        tree.exit(at(7));
        let s = tree.finish(at(7), "test");
        assert_eq!(s.nodes.len(), 2);
        assert_eq!((s.nodes[0].calls, s.nodes[0].cost.thunks, s.nodes[0].walk_node), (1, 3, Some(7)));
        assert_eq!((s.nodes[1].calls, s.nodes[1].cost.thunks, s.nodes[1].parent), (2, 4, Some(0)));
        assert_eq!(s.inclusive()[0].thunks, 7);
    }

    #[test]
    fn deep_recursion_is_truncated_and_bounded() {
        let mut tree = CallTree::default();
        let depth = DEPTH_CAP + 5000;
        for i in 0..depth {
            tree.enter_named(None, "rec.nix:1:1", at(i as u64));
        }
        for i in 0..depth {
            tree.exit(at((depth + i) as u64));
        }
        let s = tree.finish(at(2 * depth as u64), "test");
        assert_eq!(s.nodes.len(), DEPTH_CAP + 1);
        let last = s.nodes.last().unwrap();
        assert_eq!(s.frames[last.frame as usize], TRUNCATED);
        assert_eq!(last.calls, 5000);
        // Conservation: the root's inclusive is the whole recursion.
        assert_eq!(s.inclusive()[0].thunks, 2 * depth as u64 - 1);
    }

    #[test]
    fn a_full_tree_folds_new_stacks_into_their_callers_and_stays_exact_and_conserved() {

        // f calls g, h and i once each (cost 2 each), then g again; its own cost is 4.
        let run = |cap: usize| {
            let mut tree = CallTree::with_cap(cap);
            tree.enter_named(Some(0), "f", at(0));
            for (k, callee) in ["g", "h", "i", "g"].iter().enumerate() {
                let t = 1 + 2 * k as u64;
                tree.enter_named(Some(0), callee, at(t));
                tree.exit(at(t + 2));
            }
            tree.exit(at(12));
            tree.finish(at(12), "test")
        };
        let full = run(100);
        assert_eq!((full.nodes.len(), full.folded_calls), (4, 0));
        // Room for f and g only: h and i fold into f; g's second call finds its node.
        let capped = run(2);
        assert_eq!(capped.node_cap, 2);
        assert_eq!(capped.nodes.len(), 2);
        assert_eq!(capped.folded_calls, 2);
        let (f, g) = (&capped.nodes[0], &capped.nodes[1]);
        assert_eq!((f.calls, g.calls), (1, 2), "counts of kept stacks are exact");
        assert_eq!(g.cost.thunks, 4);
        assert_eq!(f.cost.thunks, 4 + 2 + 2, "f keeps its own cost and the folded calls");
        assert_eq!(capped.inclusive()[0].thunks, 12, "conserved: the root still holds everything");
        assert_eq!(capped.validate(1), Ok(()));
    }

    #[test]
    fn calls_inside_a_folded_call_fold_too() {
        // f calls g (kept), then h, which is folded and calls g: that g is not f's g.
        let mut tree = CallTree::with_cap(2);
        tree.enter_named(Some(0), "f", at(0));
        tree.enter_named(Some(0), "g", at(1));
        tree.exit(at(2));
        tree.enter_named(Some(0), "h", at(2));
        tree.enter_named(Some(0), "g", at(3));
        tree.exit(at(5));
        tree.exit(at(6));
        tree.exit(at(7));
        let s = tree.finish(at(7), "test");
        assert_eq!(s.nodes[1].calls, 1, "g under f was called once");
        assert_eq!(s.nodes[1].cost.thunks, 1);
        assert_eq!(s.folded_calls, 2);
        assert_eq!(s.nodes[0].cost.thunks, 6, "f: its own 2 and h's 4");
        assert_eq!(s.inclusive()[0].thunks, 7);
    }

    #[test]
    fn a_full_tree_folds_first_calls_under_a_walked_node_into_one_frame() {
        let mut tree = CallTree::with_cap(1);
        tree.enter_named(Some(0), "a", at(0));
        tree.exit(at(1));
        for w in 1..4u32 {
            tree.enter_named(Some(w), "b", at(10 * w as u64));
            tree.enter_named(Some(w), "c", at(10 * w as u64 + 1));
            tree.exit(at(10 * w as u64 + 3));
            tree.exit(at(10 * w as u64 + 4));
        }
        let s = tree.finish(at(50), "test");
        assert_eq!(s.nodes.len(), 1 + 3, "one [folded] node per walked node");
        assert!(s.nodes[1..].iter().all(|n| s.frames[n.frame as usize] == FOLDED && n.calls == 0));
        assert_eq!(s.folded_calls, 6);
        let inclusive = s.inclusive();
        assert!(s.nodes[1..].iter().zip(&inclusive[1..]).all(|(_, c)| c.thunks == 4));
    }

    #[test]
    fn validation_refuses_dangling_indices() {
        let mut tree = CallTree::default();
        tree.enter_named(Some(0), "f.nix:1:1", at(0));
        tree.enter_named(Some(0), "g.nix:2:2", at(1));
        let good = tree.finish(at(2), "test");
        assert_eq!(good.validate(1), Ok(()));
        assert!(good.validate(0).unwrap_err().contains("walked node 0, of 0"));
        let mut bad = good.clone();
        bad.nodes[0].parent = Some(1);
        assert!(bad.validate(1).unwrap_err().contains("parent"));
        let mut bad = good.clone();
        bad.nodes[1].frame = 9;
        assert!(bad.validate(1).unwrap_err().contains("frame 9"));
    }

    #[test]
    fn parse_trace_lines() {
        assert!(matches!(parse_trace("function-trace entered /a b/f.nix:3:4 at 123"), Some(TraceEvent::Entered("/a b/f.nix:3:4"))));
        assert!(matches!(parse_trace("function-trace exited «string»:1:2 at 9"), Some(TraceEvent::Exited)));
        assert!(parse_trace("something else").is_none());
        // A path may hold " at " and spaces; only the last " at NS" is the time.
        assert!(matches!(parse_trace("function-trace entered /x at y/a b.nix:1:2 at 77"), Some(TraceEvent::Entered("/x at y/a b.nix:1:2"))));
        assert!(matches!(parse_trace("function-trace entered /a b/f.nix:3:4"), Some(TraceEvent::Entered("/a b/f.nix:3:4"))));
    }
}
