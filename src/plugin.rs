//! The plugin's Rust side: the functions the C++ shim calls (declared in `bridge.rs`), the
//! measuring session they share, and the `nix_plugin_entry` Nix calls after loading us.
//!
//! Every function the shim calls runs behind [`guarded`]: an error or a panic becomes an
//! `Err(String)` that cxx throws as `rust::Error`, which the shim turns into a `nix::Error`.
//! Nothing unwinds across the bridge.

use crate::accounting::Ledger;
use crate::attrpath::display_path;
use crate::bridge::{ffi, ROOT};
use crate::cost::{Cost, Gauges, Sizes};
use crate::probe;
use crate::report::{FlakeMeta, Kind, Meta, Node, Phase, Report, SCHEMA, SCHEMA_VERSION};
use crate::report_io::write_report;
use crate::walk_policy::{self, Systems};
use anyhow::{anyhow, Context};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The Nix version this plugin was compiled against, findable in the binary by the CLI.
#[used]
#[no_mangle]
pub static NIX_EVALCOST_BUILT_FOR: [u8; BUILT_FOR_MARKER.len()] = marker_bytes();
pub const BUILT_FOR_PREFIX: &str = "nix-evalcost-built-for-nix=";
const BUILT_FOR_MARKER: &str = concat!("nix-evalcost-built-for-nix=", env!("EVALCOST_NIX_VERSION"), "\0");
const fn marker_bytes() -> [u8; BUILT_FOR_MARKER.len()] {
    let bytes = BUILT_FOR_MARKER.as_bytes();
    let mut out = [0u8; BUILT_FOR_MARKER.len()];
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

static SESSION: Mutex<Option<Session>> = Mutex::new(None);
static LOADED_AT: OnceLock<Instant> = OnceLock::new();

/// Called by Nix right after it loads the plugin (`plugin-files`).
#[no_mangle]
pub extern "C" fn nix_plugin_entry() {
    let outcome = guarded("loading the plugin", || {
        LOADED_AT.get_or_init(Instant::now);
        let runtime = ffi::nix_version();
        let built_for = env!("EVALCOST_NIX_VERSION");
        if minor_version(&runtime) != minor_version(built_for) {
            return Err(anyhow!(
                "built for Nix {built_for} but loaded into Nix {runtime}; rebuild it against this Nix. \
                 Its builtins are not registered"
            ));
        }
        ffi::register_primops().map_err(|e| anyhow!("registering builtins: {e}"))
    });
    if let Err(message) = outcome {
        eprintln!("warning: nix-evalcost: {message}");
    }
}

fn minor_version(version: &str) -> Option<(&str, &str)> {
    let mut parts = version.split(['.', 'p', 'r', '-', '+']);
    Some((parts.next()?, parts.next()?))
}

/// `NIX_EVALCOST=0` (or false/off/no) turns the plugin into a no-op.
pub fn plugin_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        let v = std::env::var("NIX_EVALCOST").unwrap_or_default().to_ascii_lowercase();
        !matches!(v.as_str(), "0" | "false" | "off" | "no")
    })
}

/// Runs `f`, turning errors and panics into a one-line message for the shim.
fn guarded<T>(what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e:#}")),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("{what}: internal error (please report): {detail}"))
        }
    }
}

fn lock() -> MutexGuard<'static, Option<Session>> {
    SESSION.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn with_session<T>(what: &str, f: impl FnOnce(&mut Session) -> anyhow::Result<T>) -> Result<T, String> {
    guarded(what, || {
        let mut guard = lock();
        let session = guard.as_mut().context("no measurement is running")?;
        f(session)
    })
}

/// The cumulative reading of every additive counter, plus the gauges that come with it.
#[derive(Clone, Copy)]
struct Reading {
    raw: ffi::RawCounters,
    cost: Cost,
    peak_rss_bytes: u64,
}

impl Reading {
    /// Reads everything now.
    fn now() -> Reading {
        Reading::after(None)
    }

    /// Reads Nix's counters and the clock; the CPU time and peak RSS (one getrusage syscall,
    /// costly at thousands of nodes) are taken from `previous` when Nix has done nothing since
    /// (as between two sibling nodes). Readings stay monotonic, so conservation is unaffected.
    fn after(previous: Option<&Reading>) -> Reading {
        let raw = ffi::read_counters();
        let (cpu_ns, peak_rss_bytes) = match previous {
            Some(p) if p.raw == raw => (p.cost.cpu_ns, p.peak_rss_bytes),
            _ => {
                let usage = probe::usage();
                (usage.cpu_ns, usage.peak_rss_bytes)
            }
        };
        Reading { raw, cost: cost_of(&raw, cpu_ns), peak_rss_bytes }
    }

    /// What a call frame needs: Nix's counters and the wall clock, cheap enough for every call.
    fn counters_and_clock() -> crate::stacks::CallCost {
        let raw = ffi::read_call_counters();
        crate::stacks::CallCost {
            wall_ns: LOADED_AT.get_or_init(Instant::now).elapsed().as_nanos() as u64,
            function_calls: raw.function_calls,
            primop_calls: raw.primop_calls,
            thunks: raw.thunks,
            lookups: raw.lookups,
            values: raw.values,
            envs: raw.envs,
            values_in_envs: raw.values_in_envs,
            list_elems: raw.list_elems,
            attrsets: raw.attrsets,
            attrs_in_attrsets: raw.attrs_in_attrsets,
            gc_bytes: raw.gc_total_bytes,
        }
    }

    fn gauges(&self) -> Gauges {
        Gauges { gc_heap_bytes: self.raw.gc_heap_bytes, rss_bytes: probe::rss_bytes(), peak_rss_bytes: self.peak_rss_bytes }
    }
}

/// A cumulative reading from Nix's counters, the wall clock since load, and `cpu_ns`.
fn cost_of(raw: &ffi::RawCounters, cpu_ns: u64) -> Cost {
    Cost {
        thunks: raw.thunks,
        function_calls: raw.function_calls,
        primop_calls: raw.primop_calls,
        lookups: raw.lookups,
        values: raw.values,
        envs: raw.envs,
        values_in_envs: raw.values_in_envs,
        list_elems: raw.list_elems,
        list_concats: raw.list_concats,
        attrsets: raw.attrsets,
        attrs_in_attrsets: raw.attrs_in_attrsets,
        op_updates: raw.op_updates,
        op_update_values_copied: raw.op_update_values_copied,
        avoided: raw.avoided,
        gc_bytes: raw.gc_total_bytes,
        gc_cycles: raw.gc_cycles,
        wall_ns: LOADED_AT.get_or_init(Instant::now).elapsed().as_nanos() as u64,
        cpu_ns,
    }
}

#[derive(Debug)]
enum Mode {
    /// builtins.evalcostWalk: the report goes to `report` when the walk finishes.
    Walk { report: PathBuf },
    /// builtins.evalcostMeasure outside a walk: the report goes to $NIX_EVALCOST_REPORT at exit.
    Measure { report: Option<PathBuf> },
}

struct NodeRecord {
    parent: Option<u32>,
    path: Vec<String>,
    kind: Kind,
    drv_path: Option<String>,
    error: Option<String>,
    calls: u64,
    after: Gauges,
}

struct Session {
    mode: Mode,
    meta: Meta,
    systems: Systems,
    sizes: Sizes,
    ledger: Ledger,
    nodes: Vec<NodeRecord>,
    /// Measure labels are one node per (parent, label), however often they are evaluated.
    measure_nodes: HashMap<(Option<u32>, String), u32>,
    /// Finished phases, and the open one with its starting reading.
    phases: Vec<Phase>,
    open_phase: Option<(String, Cost)>,
    started: Cost,
    last: Reading,
    progress: Option<Progress>,
}

// The call-stack profile lives outside the session lock: its hooks run at every Nix call (on the
// evaluating thread), and the walk node they hang under is published here by the ledger.
thread_local! {
    static CALL_TREE: std::cell::RefCell<Option<crate::stacks::CallTree>> = const { std::cell::RefCell::new(None) };
    static INNERMOST_NODE: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

fn with_call_tree<T>(f: impl FnOnce(&mut crate::stacks::CallTree) -> T) -> Option<T> {
    CALL_TREE.with(|tree| tree.borrow_mut().as_mut().map(f))
}

impl Session {
    fn new(mode: Mode, meta: Meta, systems: Systems) -> Session {
        let reading = Reading::now();
        let now = reading.cost;
        let s = ffi::nix_sizes();
        Session {
            mode,
            meta,
            systems,
            sizes: Sizes { value: s.value, env: s.env, bindings: s.bindings, attr: s.attr, pointer: s.pointer },
            ledger: Ledger::new(now),
            nodes: Vec::new(),
            measure_nodes: HashMap::new(),
            phases: Vec::new(),
            open_phase: None,
            started: now,
            last: reading,
            progress: Progress::from_env(),
        }
    }

    fn path_of(&self, node: Option<u32>) -> &[String] {
        node.map_or(&[], |n| &self.nodes[n as usize].path)
    }

    fn add_node(&mut self, parent: Option<u32>, name: &str, kind: Kind) -> u32 {
        let mut path = self.path_of(parent).to_vec();
        path.push(name.to_string());
        let id = self.ledger.add_node() as u32;
        self.nodes.push(NodeRecord { parent, path, kind, drv_path: None, error: None, calls: 0, after: Gauges::default() });
        id
    }

    /// A reading, reusing the last one's CPU time when Nix has done nothing since.
    fn read(&mut self) -> Reading {
        self.last = Reading::after(Some(&self.last));
        self.last
    }

    fn enter(&mut self, id: u32) {
        let now = self.read().cost;
        self.ledger.enter(id as usize, now);
        INNERMOST_NODE.with(|n| n.set(Some(id)));
        self.nodes[id as usize].calls += 1;
        if let Some(progress) = &mut self.progress {
            progress.tick(self.nodes.len(), &self.nodes[id as usize].path);
        }
    }

    fn exit(&mut self, id: u32, error: Option<&str>) -> anyhow::Result<()> {
        let reading = self.read();
        if !self.ledger.exit(id as usize, reading.cost) {
            return Err(anyhow!("node {id} is not open"));
        }
        INNERMOST_NODE.with(|n| n.set(self.ledger.innermost().map(|i| i as u32)));
        let node = &mut self.nodes[id as usize];
        node.after = reading.gauges();
        if let Some(message) = error.filter(|m| !m.is_empty()) {
            node.error = Some(clean_error(message));
        }
        Ok(())
    }

    fn switch_phase(&mut self, next: Option<&str>) {
        let now = self.read().cost;
        self.ledger.checkpoint(now);
        if let Some((name, start)) = self.open_phase.take() {
            self.phases.push(Phase { name, cost: now.since(&start) });
        }
        self.open_phase = next.map(|n| (n.to_string(), now));
    }

    /// Closes everything at a fresh reading and produces the report.
    fn finish(mut self, complete: bool) -> Report {
        self.switch_phase(None);
        let reading = self.read();
        self.close(reading.cost, complete, reading.gauges())
    }

    /// Like `finish`, but without reading Nix's counters: at exit the EvalState may be gone,
    /// so the last reading stands as the totals.
    fn finish_at_exit(mut self) -> Report {
        let last = *self.ledger.totals();
        self.open_phase = None;
        let end = Gauges { rss_bytes: probe::rss_bytes(), peak_rss_bytes: probe::usage().peak_rss_bytes, gc_heap_bytes: 0 };
        self.close(last, true, end)
    }

    fn close(mut self, now: Cost, complete: bool, end: Gauges) -> Report {
        self.ledger.close_all(now);
        let stacks = CALL_TREE.with(|t| t.borrow_mut().take()).map(|tree| tree.finish(Reading::counters_and_clock(), ffi::stack_source()));
        INNERMOST_NODE.with(|n| n.set(None));
        self.phases.push(Phase { name: "total".into(), cost: now.since(&self.started) });
        self.meta.complete = complete;
        if let Some(progress) = &mut self.progress {
            progress.done(self.nodes.len());
        }
        let ledger = &self.ledger;
        let nodes = self
            .nodes
            .into_iter()
            .enumerate()
            .map(|(i, n)| Node {
                id: i as u32,
                parent: n.parent,
                system: walk_policy::system_of(&n.path).map(str::to_string),
                path: n.path,
                is_derivation: n.kind == Kind::Derivation,
                kind: n.kind,
                drv_path: n.drv_path,
                error: n.error,
                calls: n.calls,
                cost: *ledger.charged(i),
                after: n.after,
            })
            .collect();
        Report {
            schema: SCHEMA.into(),
            schema_version: SCHEMA_VERSION,
            meta: self.meta,
            sizes: self.sizes,
            totals: *ledger.totals(),
            unattributed: *ledger.unattributed(),
            end,
            phases: self.phases,
            nodes,
            stacks,
        }
    }
}

/// Nix error messages carry ANSI colours; reports hold plain text.
fn clean_error(message: &str) -> String {
    let plain = strip_ansi_escapes::strip_str(message);
    plain.trim().to_string()
}

/// Progress lines for `nix-evalcost profile`: "<nodes>\t<path>\n" on the file descriptor named
/// by NIX_EVALCOST_PROGRESS_FD, at most every 100 ms.
struct Progress {
    out: File,
    last: Option<Instant>,
}

impl Progress {
    fn from_env() -> Option<Progress> {
        let fd: i32 = std::env::var("NIX_EVALCOST_PROGRESS_FD").ok()?.parse().ok()?;
        // SAFETY: fcntl only tells whether `fd` is open; we own it from here on (the CLI opened
        // it for us and nothing else in Nix uses it).
        if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return None;
        }
        // SAFETY: `fd` is open (checked above) and not used elsewhere in this process.
        Some(Progress { out: unsafe { File::from_raw_fd(fd) }, last: None })
    }

    fn tick(&mut self, nodes: usize, path: &[String]) {
        if self.last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
            return;
        }
        self.last = Some(Instant::now());
        let _ = writeln!(self.out, "{nodes}\t{}", display_path(path));
    }

    fn done(&mut self, nodes: usize) {
        let _ = writeln!(self.out, "{nodes}\t");
    }
}

// ---- the functions the shim calls ---------------------------------------------------------

pub fn walk_begin(request: ffi::WalkRequest) -> Result<(), String> {
    guarded("starting the walk", || {
        let systems = if request.all_systems { Systems::All } else { Systems::Only(request.systems.clone()) };
        let argv = if request.argv.is_empty() { std::env::args().collect() } else { request.argv };
        let meta = Meta {
            tool_version: env!("CARGO_PKG_VERSION").into(),
            nix_version: ffi::nix_version(),
            mode: "walk".into(),
            flake: None,
            systems: request.systems,
            all_systems: request.all_systems,
            force_drv_paths: request.force_drv_paths,
            hostname: probe::hostname(),
            argv,
            started_at: probe::now_rfc3339(),
            complete: false,
        };
        let report = PathBuf::from(request.report);
        let session = Session::new(Mode::Walk { report }, meta, systems);
        CALL_TREE.with(|t| *t.borrow_mut() = request.stacks.then(crate::stacks::CallTree::default));
        INNERMOST_NODE.with(|n| n.set(None));
        *lock() = Some(session);
        Ok(())
    })
}

pub fn walk_phase(name: &str) -> Result<(), String> {
    with_session("starting a phase", |s| {
        s.switch_phase(Some(name));
        Ok(())
    })
}

pub fn walk_flake(facts: ffi::FlakeFacts) -> Result<(), String> {
    let some = |s: String| (!s.is_empty()).then_some(s);
    with_session("recording the flake", |s| {
        s.meta.flake = Some(FlakeMeta {
            original_ref: facts.original_ref,
            locked_url: facts.locked_url,
            rev: some(facts.rev),
            dirty_rev: some(facts.dirty_rev),
            nar_hash: some(facts.nar_hash),
            last_modified: (facts.last_modified >= 0).then_some(facts.last_modified),
        });
        Ok(())
    })
}

fn parent_of(id: u32) -> Option<u32> {
    (id != ROOT).then_some(id)
}

pub fn node_enter(parent: u32, name: &str) -> Result<u32, String> {
    with_session("entering a node", |s| {
        let id = s.add_node(parent_of(parent), name, Kind::Unknown);
        s.enter(id);
        Ok(id)
    })
}

pub fn node_exit(node: u32, facts: &ffi::NodeFacts) -> Result<(), String> {
    with_session("leaving a node", |s| {
        s.exit(node, Some(&facts.error))?;
        let record = &mut s.nodes[node as usize];
        record.kind = Kind::from_walker(&facts.kind);
        record.drv_path = (!facts.drv_path.is_empty()).then(|| facts.drv_path.clone());
        Ok(())
    })
}

pub fn plan_children(node: u32, names: Vec<String>) -> Result<ffi::ChildPlan, String> {
    with_session("planning the walk", |s| {
        let plan = walk_policy::plan_children(s.path_of(parent_of(node)), names, &s.systems);
        Ok(ffi::ChildPlan {
            names: plan.visit,
            only_if_recurse_for_derivations: plan.only_if_recurse_for_derivations,
            select: plan.select,
        })
    })
}

pub fn walk_finish(interrupted: bool) -> Result<ffi::WalkSummary, String> {
    guarded("writing the report", || {
        let session = lock().take().context("no walk is running")?;
        let Mode::Walk { report: path } = &session.mode else {
            return Err(anyhow!("no walk is running"));
        };
        let path = path.clone();
        let report = session.finish(!interrupted);
        write_report(&path, &report)?;
        Ok(ffi::WalkSummary {
            report: path.display().to_string(),
            nodes: report.nodes.len() as u64,
            errors: report.error_count() as u64,
            interrupted,
        })
    })
}

/// One `trace-function-calls` line, intercepted by the shim's logger (Nix 2.26). Called for
/// every Nix call while stacks are profiled, so it reads only Nix's counters and the clock.
pub fn stack_event(line: &str) {
    let _ = guarded("recording a call", || {
        let now = Reading::counters_and_clock();
        with_call_tree(|tree| match crate::stacks::parse_trace(line) {
            Some(crate::stacks::TraceEvent::Entered(frame)) => tree.enter_named(INNERMOST_NODE.with(|n| n.get()), frame, now),
            Some(crate::stacks::TraceEvent::Exited) => tree.exit(now),
            None => {}
        });
        Ok(())
    });
}

/// The id of a frame name (Nix 2.30+: the shim names each distinct callee once).
pub fn stack_frame(name: &str) -> u32 {
    guarded("naming a frame", || Ok(with_call_tree(|tree| tree.frame_id(name)).unwrap_or(0))).unwrap_or(0)
}

/// A call of frame `frame` starts (Nix 2.30+, from the EvalProfiler hook).
pub fn stack_enter(frame: u32) {
    let _ = guarded("recording a call", || {
        let now = Reading::counters_and_clock();
        with_call_tree(|tree| tree.enter(INNERMOST_NODE.with(|n| n.get()), frame, now));
        Ok(())
    });
}

/// The innermost call returns or unwinds (Nix 2.30+).
pub fn stack_exit() {
    let _ = guarded("recording a return", || {
        let now = Reading::counters_and_clock();
        with_call_tree(|tree| tree.exit(now));
        Ok(())
    });
}

pub fn walk_abandon() {
    lock().take();
    CALL_TREE.with(|t| t.borrow_mut().take());
}

pub fn measure_enter(label: &str) -> Result<u32, String> {
    guarded("entering a measurement", || {
        let mut guard = lock();
        let session = guard.get_or_insert_with(standalone_session);
        let parent = session.ledger.innermost().map(|n| n as u32);
        let key = (parent, label.to_string());
        let id = match session.measure_nodes.get(&key) {
            Some(&id) => id,
            None => {
                let id = session.add_node(parent, label, Kind::Measure);
                session.measure_nodes.insert(key, id);
                id
            }
        };
        session.enter(id);
        Ok(id)
    })
}

pub fn measure_exit(node: u32, error: &str) -> Result<(), String> {
    with_session("leaving a measurement", |s| s.exit(node, Some(error)))
}

/// A session for builtins.evalcostMeasure used without a walk (plain `nix eval` with the
/// plugin loaded). Its report is written at exit to $NIX_EVALCOST_REPORT, if set.
fn standalone_session() -> Session {
    let report = std::env::var_os("NIX_EVALCOST_REPORT").map(PathBuf::from);
    if report.is_some() {
        // SAFETY: registering a plain extern "C" function with no arguments.
        unsafe { libc::atexit(write_standalone_report) };
    }
    let meta = Meta {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        nix_version: ffi::nix_version(),
        mode: "measure".into(),
        hostname: probe::hostname(),
        argv: std::env::args().collect(),
        started_at: probe::now_rfc3339(),
        ..Meta::default()
    };
    Session::new(Mode::Measure { report }, meta, Systems::All)
}

extern "C" fn write_standalone_report() {
    let outcome = guarded("writing the report", || {
        let Some(session) = lock().take() else { return Ok(()) };
        let Mode::Measure { report: Some(path) } = &session.mode else { return Ok(()) };
        let path = path.clone();
        // The evaluator may be gone at exit: keep the last reading as the totals.
        let report = session.finish_at_exit();
        write_report(&path, &report).map_err(Into::into)
    });
    if let Err(message) = outcome {
        eprintln!("warning: nix-evalcost: {message}");
    }
}
