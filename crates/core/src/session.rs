//! One measuring session of the plugin: a walk (`builtins.evalcostWalk`) or the labels of
//! `builtins.evalcostMeasure`, from its first reading to its report.
//!
//! The session knows nothing of Nix. The plugin hands it a [`Sensor`] (Nix's counters, the
//! clock, the process's memory), Nix's structure sizes and version; the session decides which
//! node is charged ([`Ledger`]), names nodes, keeps phases and assembles the [`Report`]. So all
//! of it is unit-tested here with a scripted sensor.

use crate::accounting::Ledger;
use crate::cost::{Cost, Gauges, Sizes};
use crate::protocol::Progress;
use crate::report::{FlakeMeta, Kind, Meta, Node, Phase, Report, WorkerMeta, SCHEMA, SCHEMA_VERSION};
use crate::workers::{Claim, Worker};
use crate::stacks::Stacks;
use crate::walk_policy::{self, Plan, Systems};
use std::collections::HashMap;
use std::path::PathBuf;

/// A cumulative reading of the process at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// Everything additive, cumulative since the process started (wall time since the plugin
    /// was loaded).
    pub cost: Cost,
    pub gauges: Gauges,
}

/// Where a session's readings come from: in the plugin, Nix's counters and the process.
pub trait Sensor {
    /// A cumulative reading now. Readings must be monotonic in every additive field.
    fn read(&mut self) -> Reading;
    /// The last reading of a session, for its totals: nothing in it may be stale (a sensor may
    /// sample costly probes in [`Sensor::read`]).
    fn read_final(&mut self) -> Reading {
        self.read()
    }
    /// The process's gauges when Nix exits: the evaluator may be gone, so no counters are read
    /// and the last reading's costs stand as the totals.
    fn gauges_at_exit(&mut self) -> Gauges;
}

/// Where the report goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `builtins.evalcostWalk`: the report goes to `report` when the walk finishes.
    Walk { report: PathBuf },
    /// `builtins.evalcostMeasure` outside a walk: the report goes to `report`, if any, when
    /// Nix exits.
    Measure { report: Option<PathBuf> },
    /// Passive profiling: the report goes to `report` when the evaluation is over.
    Passive { report: PathBuf },
}

/// What the walker observed about a node when it left it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub kind: Kind,
    pub drv_path: Option<String>,
    /// Nix's error message (ANSI colours are stripped here).
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("node {0} is not open")]
pub struct NotOpen(pub u32);

/// The state of one session; see the module documentation.
pub struct Session<S: Sensor> {
    mode: Mode,
    meta: Meta,
    systems: Systems,
    sizes: Sizes,
    sensor: S,
    ledger: Ledger,
    /// The report's nodes as they are walked: their costs are the ledger's until the session
    /// closes, when they are filled in place (a second vector of 20 000 nodes, and moving them
    /// into it, was half of closing a big walk, measured inside nix).
    nodes: Vec<Node>,
    /// Measure labels are one node per (parent, label), however often they are evaluated.
    measure_nodes: HashMap<(Option<u32>, String), u32>,
    /// Finished phases, and the open one with its starting reading.
    phases: Vec<Phase>,
    open_phase: Option<(String, Cost)>,
    started: Cost,
    progress: Option<Box<dyn Progress>>,
    /// A worker of a parallel walk: the units it claimed, by node id.
    worker: Option<Worker>,
    worker_units: HashMap<u32, u32>,
}

impl<S: Sensor> Session<S> {
    /// Starts a session at the sensor's current reading: everything before it is unattributed.
    pub fn new(mode: Mode, meta: Meta, systems: Systems, sizes: Sizes, mut sensor: S, progress: Option<Box<dyn Progress>>) -> Self {
        let start = sensor.read().cost;
        Session {
            mode,
            meta,
            systems,
            sizes,
            sensor,
            ledger: Ledger::new(start),
            nodes: Vec::new(),
            measure_nodes: HashMap::new(),
            phases: Vec::new(),
            open_phase: None,
            started: start,
            progress,
            worker: None,
            worker_units: HashMap::new(),
        }
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The node being evaluated now (the innermost open one).
    pub fn innermost(&self) -> Option<u32> {
        self.ledger.innermost().map(|n| n as u32)
    }

    pub fn record_flake(&mut self, flake: FlakeMeta) {
        self.meta.flake = Some(flake);
    }

    pub fn has_flake(&self) -> bool {
        self.meta.flake.is_some()
    }

    /// Makes this walk a worker of a parallel walk: it walks only the units it claims.
    pub fn become_worker(&mut self, worker: Worker, run: u32) {
        self.worker = Some(worker);
        self.meta.worker = Some(WorkerMeta { run, ..WorkerMeta::default() });
    }

    /// Takes the progress pipe out of the session: its owner then says when the walk is done
    /// and when the report is written, which happens after the session is finished.
    pub fn take_progress(&mut self) -> Option<Box<dyn Progress>> {
        self.progress.take()
    }

    /// Which children of `parent`'s attribute set the walk visits (see [`walk_policy`]); a
    /// shard's walk keeps only its own units, a retired worker nothing more.
    pub fn plan_children(&self, parent: Option<u32>, names: Vec<String>) -> Plan {
        let path = self.path_of(parent);
        let mut plan = walk_policy::plan_children(path, names, &self.systems);
        if let Some(shard) = self.meta.shard {
            plan.visit.retain(|name| shard.walks(path, name));
        }
        if let Some(only) = &self.meta.only {
            plan.visit.retain(|name| walk_policy::on_the_way(path, name, only));
        }
        if self.worker.as_ref().is_some_and(|w| w.retired) {
            plan.visit.clear();
        }
        plan
    }

    /// Like [`Session::enter_node`] for the walker: `None` when the child is a unit that
    /// another worker of a parallel walk has (or this one is retired), and is skipped.
    pub fn enter_walk_node(&mut self, parent: Option<u32>, name: &str) -> Option<u32> {
        let is_unit = self.worker.is_some() && walk_policy::child_is_unit(self.path_of(parent), name);
        if let (true, Some(worker)) = (is_unit, &mut self.worker) {
            if worker.retired {
                return None;
            }
            let index = worker.units_seen;
            worker.units_seen += 1;
            match worker.claims.claim(index) {
                Claim::Mine => {}
                Claim::Taken => return None,
                Claim::Lost(signal) => {
                    // Its worker died on it: an error node, costing nothing, not evaluated.
                    let id = self.add_node(parent, name, Kind::Error);
                    self.nodes[id as usize].error = Some(crate::workers::lost_message(signal));
                    return None;
                }
            }
            let id = self.enter_node(parent, name);
            self.worker_units.insert(id, index);
            return Some(id);
        }
        Some(self.enter_node(parent, name))
    }

    /// Ends the open phase (if any) and starts `next` (if any), at a fresh reading.
    pub fn switch_phase(&mut self, next: Option<&str>) {
        let now = self.sensor.read().cost;
        self.switch_phase_at(next, now);
    }

    fn switch_phase_at(&mut self, next: Option<&str>, now: Cost) {
        self.ledger.checkpoint(now);
        if let Some((name, start)) = self.open_phase.take() {
            self.phases.push(Phase { name, cost: now.since(&start) });
        }
        self.open_phase = next.map(|n| (n.to_string(), now));
    }

    /// A walked node `name` under `parent` starts being evaluated; returns its id.
    pub fn enter_node(&mut self, parent: Option<u32>, name: &str) -> u32 {
        let id = self.add_node(parent, name, Kind::Unknown);
        self.enter(id);
        id
    }

    /// The walked node `id` is done; `outcome` says what it was.
    pub fn leave_node(&mut self, id: u32, outcome: Outcome) -> Result<(), NotOpen> {
        self.leave(id)?;
        let error = outcome.error.as_deref().map(clean_error).filter(|e| !e.is_empty());
        let node = &mut self.nodes[id as usize];
        node.kind = outcome.kind;
        node.drv_path = outcome.drv_path;
        node.error = error;
        if let Some(index) = self.worker_units.remove(&id) {
            self.unit_done(id, index);
        }
        Ok(())
    }

    /// A worker finished a unit: it is walked, and the worker retires if it is over its memory
    /// budget. A unit that took a fresh worker over the budget alone is an error.
    fn unit_done(&mut self, id: u32, index: u32) {
        let Some(worker) = &mut self.worker else { return };
        worker.claims.done(index);
        worker.units_walked += 1;
        let rss = self.nodes[id as usize].after.rss_bytes;
        let Some(budget) = worker.max_rss.filter(|&b| rss > b) else { return };
        worker.retired = true;
        let node = &mut self.nodes[id as usize];
        if worker.units_walked == 1 && node.error.is_none() {
            node.error = Some(format!(
                "out of memory budget: walking this output alone took the worker to {} resident (--max-memory {})",
                crate::units::bytes(rss),
                crate::units::bytes(budget)
            ));
        }
    }

    /// Passive profiling: the whole evaluation is one entry node, `label`, evaluated in the phase
    /// `evaluation`. Returns its id.
    pub fn begin_entry(&mut self, label: &str) -> u32 {
        self.switch_phase(Some("evaluation"));
        self.enter_node(None, label)
    }

    /// A measure label starts being evaluated, under the node being evaluated now. One node per
    /// (parent, label): evaluating a label again charges the same node.
    pub fn enter_measure(&mut self, label: &str) -> u32 {
        let parent = self.innermost();
        let key = (parent, label.to_string());
        let id = match self.measure_nodes.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.add_node(parent, label, Kind::Measure);
                self.measure_nodes.insert(key, id);
                id
            }
        };
        self.enter(id);
        id
    }

    /// The measure label `id` is done, with Nix's error if evaluating it failed.
    pub fn leave_measure(&mut self, id: u32, error: Option<&str>) -> Result<(), NotOpen> {
        self.leave(id)?;
        if let Some(message) = error.map(clean_error).filter(|e| !e.is_empty()) {
            self.nodes[id as usize].error = Some(message);
        }
        Ok(())
    }

    /// Closes every open node and phase at a fresh reading and produces the report.
    /// `complete` is false when the walk was interrupted: the nodes open then are closed with
    /// what they cost so far.
    pub fn finish(mut self, complete: bool, stacks: Option<Stacks>) -> Report {
        let reading = self.sensor.read_final();
        self.switch_phase_at(None, reading.cost);
        let sole = self.worker.as_ref().is_some_and(|w| w.sole);
        let report = self.close(reading.cost, reading.gauges, complete, stacks);
        if sole {
            crate::join::join_sole_worker(report)
        } else {
            report
        }
    }

    /// Like [`Session::finish`], at process exit: Nix's counters are not read again (the
    /// evaluator may be gone), so the last reading stands as the totals.
    pub fn finish_at_exit(mut self) -> Report {
        let last = *self.ledger.totals();
        self.open_phase = None;
        let end = self.sensor.gauges_at_exit();
        self.close(last, end, true, None)
    }

    fn path_of(&self, node: Option<u32>) -> &[String] {
        node.map_or(&[], |n| &self.nodes[n as usize].path)
    }

    fn add_node(&mut self, parent: Option<u32>, name: &str, kind: Kind) -> u32 {
        let mut path = self.path_of(parent).to_vec();
        path.push(name.to_string());
        let id = self.ledger.add_node() as u32;
        debug_assert_eq!(id as usize, self.nodes.len());
        self.nodes.push(Node {
            id,
            parent,
            system: walk_policy::system_of(&path).map(str::to_string),
            path,
            kind,
            is_derivation: false,
            drv_path: None,
            error: None,
            calls: 0,
            cost: Cost::default(),
            after: Gauges::default(),
        });
        id
    }

    fn enter(&mut self, id: u32) {
        let now = self.sensor.read().cost;
        self.ledger.enter(id as usize, now);
        self.nodes[id as usize].calls += 1;
        if let Some(progress) = &mut self.progress {
            progress.tick(self.nodes.len(), &self.nodes[id as usize].path);
        }
    }

    fn leave(&mut self, id: u32) -> Result<(), NotOpen> {
        let reading = self.sensor.read();
        if (id as usize) >= self.nodes.len() || !self.ledger.exit(id as usize, reading.cost) {
            return Err(NotOpen(id));
        }
        self.nodes[id as usize].after = reading.gauges.consistent();
        Ok(())
    }

    fn close(mut self, now: Cost, end: Gauges, complete: bool, stacks: Option<Stacks>) -> Report {
        if !complete {
            // What was being evaluated when the walk stopped says so (measure labels keep
            // their kind: they are labels, not values).
            for &open in self.ledger.open_nodes() {
                let node = &mut self.nodes[open];
                if node.kind != Kind::Measure {
                    node.kind = Kind::Interrupted;
                }
            }
        }
        self.ledger.close_all(now);
        self.phases.push(Phase { name: "total".into(), cost: now.since(&self.started) });
        self.meta.complete = complete;
        if let (Some(meta), Some(worker)) = (&mut self.meta.worker, &self.worker) {
            meta.units = worker.units_walked;
            meta.retired = worker.retired;
        }
        if let Some(progress) = &mut self.progress {
            progress.done(self.nodes.len());
        }
        let ledger = &self.ledger;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            node.cost = *ledger.charged(i);
            node.is_derivation = node.kind == Kind::Derivation;
        }
        Report {
            schema: SCHEMA.into(),
            schema_version: SCHEMA_VERSION,
            meta: self.meta,
            sizes: self.sizes,
            totals: *ledger.totals(),
            unattributed: *ledger.unattributed(),
            end: end.consistent(),
            phases: self.phases,
            nodes: self.nodes,
            stacks,
            isolated: Vec::new(),
        }
    }
}

/// Nix error messages carry ANSI colours; reports hold plain text.
fn clean_error(message: &str) -> String {
    strip_ansi_escapes::strip_str(message).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sensor whose readings the test scripts: every read advances thunks by `step` and wall
    /// time by 1 µs, and reports the RSS and peak it is told.
    #[derive(Clone, Default)]
    struct Script(Arc<Mutex<ScriptState>>);

    #[derive(Default)]
    struct ScriptState {
        now: Cost,
        step: u64,
        rss: u64,
        peak: u64,
        reads: u64,
    }

    impl Script {
        fn stepping(step: u64) -> Script {
            let s = Script::default();
            s.0.lock().unwrap().step = step;
            s
        }
        fn set_memory(&self, rss: u64, peak: u64) {
            let mut s = self.0.lock().unwrap();
            (s.rss, s.peak) = (rss, peak);
        }
        fn now(&self) -> Cost {
            self.0.lock().unwrap().now
        }
    }

    impl Sensor for Script {
        fn read(&mut self) -> Reading {
            let mut s = self.0.lock().unwrap();
            s.reads += 1;
            let step = s.step;
            s.now.thunks += step;
            s.now.wall_ns += 1000;
            Reading { cost: s.now, gauges: Gauges { gc_heap_bytes: 1 << 20, rss_bytes: s.rss, peak_rss_bytes: s.peak } }
        }
        fn gauges_at_exit(&mut self) -> Gauges {
            let s = self.0.lock().unwrap();
            Gauges { gc_heap_bytes: 0, rss_bytes: s.rss, peak_rss_bytes: s.peak }
        }
    }

    #[derive(Clone, Default)]
    struct Ticks(Arc<Mutex<Vec<String>>>);

    impl Progress for Ticks {
        fn tick(&mut self, nodes: usize, path: &[String]) {
            self.0.lock().unwrap().push(format!("{nodes} {}", path.join(".")));
        }
        fn done(&mut self, nodes: usize) {
            self.0.lock().unwrap().push(format!("done {nodes}"));
        }
    }

    fn sizes() -> Sizes {
        Sizes { value: 16, env: 8, bindings: 16, attr: 16, pointer: 8 }
    }

    fn walk(sensor: Script) -> Session<Script> {
        let meta = Meta { nix_version: "2.26.3".into(), mode: "walk".into(), ..Meta::default() };
        Session::new(Mode::Walk { report: "r.json".into() }, meta, Systems::All, sizes(), sensor, None)
    }


    #[test]
    fn nodes_get_paths_exclusive_costs_and_outcomes() {
        let sensor = Script::stepping(10);
        let mut s = walk(sensor.clone());
        s.switch_phase(Some("walk"));
        let packages = s.enter_node(None, "packages");
        let hello = s.enter_node(Some(packages), "hello");
        let drv = Outcome { kind: Kind::Derivation, drv_path: Some("/nix/store/x.drv".into()), error: None };
        s.leave_node(hello, drv).unwrap();
        s.leave_node(packages, Outcome { kind: Kind::Attrset, ..Outcome::default() }).unwrap();
        let report = s.finish(true, None);

        assert_eq!(report.nodes.len(), 2);
        let (p, h) = (&report.nodes[0], &report.nodes[1]);
        assert_eq!(h.path, ["packages", "hello"]);
        assert_eq!(h.parent, Some(0));
        assert!(h.is_derivation && h.kind == Kind::Derivation);
        assert_eq!(h.drv_path.as_deref(), Some("/nix/store/x.drv"));
        // Reads: start, phase, enter p, enter h, leave h, leave p, phase end, final.
        // hello is charged the one step between its enter and leave; packages the step into
        // hello and the one out of it.
        assert_eq!(h.cost.thunks, 10);
        assert_eq!(p.cost.thunks, 20);
        assert_eq!(report.totals, sensor.now());
        assert_eq!(report.charged_sum(), report.totals, "conservation");
        let names: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["walk", "total"]);
        assert!(report.meta.complete);
        assert_eq!(report.sizes, sizes());
        assert_eq!(report.meta.nix_version, "2.26.3");
    }

    #[test]
    fn errors_are_recorded_without_colours() {
        let mut s = walk(Script::stepping(1));
        let a = s.enter_node(None, "broken");
        let outcome = Outcome { kind: Kind::Error, error: Some("\x1b[31;1merror:\x1b[0m boom \n".into()), ..Outcome::default() };
        s.leave_node(a, outcome).unwrap();
        let b = s.enter_node(None, "fine");
        s.leave_node(b, Outcome { kind: Kind::Bool, error: Some(String::new()), ..Outcome::default() }).unwrap();
        let report = s.finish(true, None);
        assert_eq!(report.nodes[0].error.as_deref(), Some("error: boom"));
        assert_eq!(report.nodes[1].error, None);
        assert_eq!(report.error_count(), 1);
    }

    #[test]
    fn measure_labels_are_one_node_per_parent_and_label() {
        let sensor = Script::stepping(5);
        let meta = Meta { mode: "measure".into(), ..Meta::default() };
        let mut s = Session::new(Mode::Measure { report: None }, meta, Systems::All, sizes(), sensor.clone(), None);
        for _ in 0..3 {
            let id = s.enter_measure("part");
            let inner = s.enter_measure("inner");
            s.leave_measure(inner, None).unwrap();
            s.leave_measure(id, None).unwrap();
        }
        let top_inner = s.enter_measure("inner"); // same label, other parent: another node
        s.leave_measure(top_inner, Some("error: no")).unwrap();
        let report = s.finish_at_exit();
        let paths: Vec<String> = report.nodes.iter().map(|n| n.path.join(".")).collect();
        assert_eq!(paths, ["part", "part.inner", "inner"]);
        assert_eq!(report.nodes[0].calls, 3);
        assert_eq!(report.nodes[1].calls, 3);
        assert_eq!(report.nodes[1].parent, Some(0));
        assert_eq!(report.nodes[2].error.as_deref(), Some("error: no"));
        assert!(report.nodes.iter().all(|n| n.kind == Kind::Measure));
        // At exit no counters are read: the totals are the last reading taken.
        assert_eq!(report.totals, sensor.now());
        assert_eq!(report.charged_sum(), report.totals);
        assert!(report.phases.iter().any(|p| p.name == "total"));
    }

    #[test]
    fn an_interrupted_walk_closes_open_nodes_with_their_cost_so_far() {
        let sensor = Script::stepping(7);
        let mut s = walk(sensor.clone());
        let done = s.enter_node(None, "done");
        s.leave_node(done, Outcome { kind: Kind::Bool, ..Outcome::default() }).unwrap();
        let a = s.enter_node(None, "a");
        let b = s.enter_node(Some(a), "b");
        assert_eq!(s.innermost(), Some(b));
        let report = s.finish(false, None);
        assert!(!report.meta.complete);
        assert_eq!(report.nodes[2].cost.thunks, 7, "b: until the final reading (one, for the phase and the totals)");
        let kinds: Vec<Kind> = report.nodes.iter().map(|n| n.kind).collect();
        assert_eq!(kinds, [Kind::Bool, Kind::Interrupted, Kind::Interrupted], "a finished node keeps its kind");
        assert_eq!(report.charged_sum(), report.totals);
        assert_eq!(report.totals, sensor.now());
    }

    #[test]
    fn leaving_a_node_that_is_not_open_is_an_error() {
        let mut s = walk(Script::stepping(1));
        let a = s.enter_node(None, "a");
        s.leave_node(a, Outcome::default()).unwrap();
        assert_eq!(s.leave_node(a, Outcome::default()), Err(NotOpen(a)));
        assert_eq!(s.leave_node(99, Outcome::default()), Err(NotOpen(99)));
        assert_eq!(s.leave_measure(42, None), Err(NotOpen(42)));
    }

    #[test]
    fn peak_rss_is_never_below_rss() {
        let sensor = Script::stepping(1);
        // The peak was read a moment before the current RSS, which has grown past it since.
        sensor.set_memory(50 << 20, 40 << 20);
        let mut s = walk(sensor.clone());
        let a = s.enter_node(None, "a");
        s.leave_node(a, Outcome::default()).unwrap();
        let report = s.finish(true, None);
        for gauges in [report.nodes[0].after, report.end] {
            assert_eq!(gauges.rss_bytes, 50 << 20);
            assert_eq!(gauges.peak_rss_bytes, 50 << 20);
        }
    }

    #[test]
    fn children_are_planned_by_the_parents_path() {
        let meta = Meta::default();
        let mut s = Session::new(Mode::Walk { report: "r".into() }, meta, Systems::Only(vec!["x86_64-linux".into()]), sizes(), Script::stepping(1), None);
        let packages = s.enter_node(None, "packages");
        let plan = s.plan_children(Some(packages), vec!["aarch64-linux".into(), "x86_64-linux".into()]);
        assert_eq!(plan.visit, ["x86_64-linux"]);
        let top = s.plan_children(None, vec!["packages".into(), "lib".into()]);
        assert_eq!(top.visit, ["packages", "lib"], "top-level outputs: all, in the order given");
    }

    #[test]
    fn progress_ticks_at_every_node_and_says_when_done() {
        let ticks = Ticks::default();
        let meta = Meta::default();
        let mut s = Session::new(Mode::Walk { report: "r".into() }, meta, Systems::All, sizes(), Script::stepping(1), Some(Box::new(ticks.clone())));
        let a = s.enter_node(None, "a");
        let b = s.enter_node(Some(a), "b");
        s.leave_node(b, Outcome::default()).unwrap();
        s.leave_node(a, Outcome::default()).unwrap();
        s.finish(true, None);
        assert_eq!(*ticks.0.lock().unwrap(), ["1 a", "2 a.b", "done 2"]);
    }
}
