//! The functions the C++ shim calls (declared in `bridge.rs`): they translate the bridge's
//! types to the core's and drive the one measuring [`Session`] of this process.
//!
//! Every function runs behind [`guarded`]: an error or a panic becomes an `Err(String)`, which
//! cxx throws as `rust::Error` and the shim turns into a `nix::Error`. Nothing unwinds across the
//! bridge.

use crate::bridge::ffi;
use crate::probe;
use crate::sensor::{self, NixSensor};
use nix_evalcost_core::guard::guarded;
use nix_evalcost_core::protocol::{ProgressPipe, WrittenFacts, MEASURE_REPORT_VAR, REPORT_WRITE_FAILURE};
use nix_evalcost_core::report::{FlakeMeta, Kind, Meta, Report};
use nix_evalcost_core::report_io::write_report;
use nix_evalcost_core::session::{Mode, Outcome, Session};
use nix_evalcost_core::summary::SummarySpec;
use nix_evalcost_core::stacks::{parse_trace, CallTree, TraceEvent, NODE_CAP};
use nix_evalcost_core::walk_policy::{Shard, Systems};
use nix_evalcost_core::workers::{RunClaims, SharedClaims, Worker};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

static SESSION: Mutex<Option<Session<NixSensor>>> = Mutex::new(None);

// The call-stack profile lives outside the session lock: its hooks run at every Nix call, and
// the walk node they hang under is published here after every transition of the session. It
// belongs to the thread that started it (the evaluating thread): only that thread touches it,
// and calls on any other thread are not profiled. Not a thread-local: in a dlopen'ed library
// every access to one calls `__tls_get_addr`, about 10 ns at each of the two hooks of every call
// (perf, Nix 2.35).
static CALLS: CallStacks = CallStacks { owner: AtomicUsize::new(NO_OWNER), profile: RefCell::new(None), innermost: Cell::new(None) };

struct CallStacks {
    /// The thread the profile belongs to (`pthread_self`), or [`NO_OWNER`].
    owner: AtomicUsize,
    profile: RefCell<Option<Profile>>,
    innermost: Cell<Option<u32>>,
}

// SAFETY: `profile` and `innermost` are touched only through `CallStacks::mine`, on the thread
// that owns them. A thread takes ownership only when it is free (Acquire) and the owner gives
// it back (Release) when its profile ends, so no two threads ever touch them at once, and each
// owner sees what the previous one left.
unsafe impl Sync for CallStacks {}

/// glibc's `pthread_t` is the address of the thread's descriptor: never 0.
const NO_OWNER: usize = 0;

fn this_thread() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// A call tree being built, and the clock its frames are timed by.
struct Profile {
    tree: CallTree,
    clock: sensor::CallClock,
}

impl CallStacks {
    /// The profile's state, if this thread owns it.
    #[inline]
    fn mine(&self) -> Option<&CallStacks> {
        (self.owner.load(Ordering::Acquire) == this_thread()).then_some(self)
    }

    /// Starts a profile on this thread, unless another thread's profile runs (then this thread's
    /// calls are not profiled).
    fn start(&self, tree: CallTree) {
        let me = this_thread();
        let owned = match self.owner.compare_exchange(NO_OWNER, me, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(owner) => owner == me,
        };
        if owned {
            *self.profile.borrow_mut() = Some(Profile { tree, clock: sensor::CallClock::start() });
            self.innermost.set(None);
        }
    }

    /// Ends this thread's profile, if it has one, and gives the profile up.
    fn take(&self) -> Option<Profile> {
        let mine = self.mine()?;
        let profile = mine.profile.borrow_mut().take();
        mine.innermost.set(None);
        mine.owner.store(NO_OWNER, Ordering::Release);
        profile
    }
}

fn set_innermost(node: Option<u32>) {
    if let Some(calls) = CALLS.mine() {
        calls.innermost.set(node);
    }
}

pub(crate) fn lock() -> MutexGuard<'static, Option<Session<NixSensor>>> {
    SESSION.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f` on the session, then publishes its innermost node for the call-stack hooks.
fn with_session<T>(what: &str, f: impl FnOnce(&mut Session<NixSensor>) -> Result<T, String>) -> Result<T, String> {
    guarded(what, || {
        let mut guard = lock();
        let session = guard.as_mut().ok_or("no measurement is running")?;
        let result = f(session);
        set_innermost(session.innermost());
        result
    })
}

/// Starts (or stops) profiling call stacks on this thread, under the session's nodes.
pub(crate) fn set_call_tree(tree: Option<CallTree>) {
    match tree {
        Some(tree) => CALLS.start(tree),
        None => drop(CALLS.take()),
    }
}

/// Publishes the session's innermost node for the call-stack hooks.
pub(crate) fn publish_innermost(session: &Session<NixSensor>) {
    set_innermost(session.innermost());
}

/// Runs `f` on this thread's call tree, with its clock and the innermost walked node; None when
/// this thread profiles no stacks. Every hook goes through here.
fn with_call_tree<T>(f: impl FnOnce(&mut CallTree, &sensor::CallClock, Option<u32>) -> T) -> Option<T> {
    let calls = CALLS.mine()?;
    calls.profile.borrow_mut().as_mut().map(|p| f(&mut p.tree, &p.clock, calls.innermost.get()))
}

/// The stacks profiled so far, closed at the current reading.
pub(crate) fn take_stacks() -> Option<nix_evalcost_core::stacks::Stacks> {
    let Profile { tree, clock } = CALLS.take()?;
    let mut stacks = tree.finish(clock.reading(), ffi::stack_source());
    stacks.scale_wall(clock.ns_per_tick());
    if stacks.source == TRACE_SOURCE {
        // Nix 2.26 names only the call site: read what it calls from the source, while the
        // files are still where the positions say (the store, on this machine).
        nix_evalcost_core::callsite::name_call_sites(&mut stacks.frames, read_source);
    }
    Some(stacks)
}

/// The stack source whose frames are bare call sites (Nix up to 2.29).
const TRACE_SOURCE: &str = "trace-function-calls";

/// A Nix source file's text, if it is readable and of a sane size.
fn read_source(file: &str) -> Option<String> {
    const MAX_SOURCE_BYTES: u64 = 64 << 20;
    let meta = std::fs::metadata(file).ok()?;
    (meta.is_file() && meta.len() <= MAX_SOURCE_BYTES).then(|| std::fs::read_to_string(file).ok()).flatten()
}

fn parent_of(id: u32) -> Option<u32> {
    (id != ffi::NodeId::Root.repr).then_some(id)
}

fn kind_of(kind: ffi::NodeKind) -> Kind {
    match kind {
        ffi::NodeKind::Derivation => Kind::Derivation,
        ffi::NodeKind::Attrset => Kind::Attrset,
        ffi::NodeKind::Function => Kind::Function,
        ffi::NodeKind::App => Kind::App,
        ffi::NodeKind::List => Kind::List,
        ffi::NodeKind::String => Kind::String,
        ffi::NodeKind::Number => Kind::Number,
        ffi::NodeKind::Bool => Kind::Bool,
        ffi::NodeKind::Null => Kind::Null,
        ffi::NodeKind::Path => Kind::Path,
        ffi::NodeKind::External => Kind::External,
        ffi::NodeKind::Error => Kind::Error,
        _ => Kind::Unknown,
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// What every report says about the process and the tool.
pub(crate) fn meta(mode: &str, argv: Vec<String>) -> Meta {
    Meta {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        nix_version: ffi::nix_version(),
        mode: mode.into(),
        hostname: probe::hostname(),
        argv,
        started_at: probe::now_rfc3339(),
        ..Meta::default()
    }
}

pub(crate) fn new_session(mode: Mode, meta: Meta, systems: Systems) -> Session<NixSensor> {
    let progress = ProgressPipe::from_env().map(|p| Box::new(p) as _);
    Session::new(mode, meta, systems, sensor::sizes(), NixSensor::default(), progress)
}

// ---- builtins.evalcostWalk ---------------------------------------------------------------

pub fn walk_begin(request: ffi::WalkRequest) -> Result<(), String> {
    guarded("starting the walk", || {
        let systems = if request.all_systems { Systems::All } else { Systems::Only(request.systems.clone()) };
        let shard = if request.shard.is_empty() { None } else { Some(Shard::parse(&request.shard)?) };
        let argv = if request.argv.is_empty() { std::env::args().collect() } else { request.argv };
        let meta = Meta {
            systems: request.systems,
            all_systems: request.all_systems,
            force_drv_paths: request.force_drv_paths,
            shard,
            only: (!request.only.is_empty()).then(|| request.only.clone()),
            ..meta("walk", argv)
        };
        let mut session = new_session(Mode::Walk { report: PathBuf::from(request.report) }, meta, systems);
        if !request.claims.is_empty() {
            if request.worker_run == 0 {
                return Err("builtins.evalcostWalk: a worker (claims) needs its workerRun".to_string());
            }
            let shared = SharedClaims::open(std::path::Path::new(&request.claims))?;
            let claims = RunClaims { shared, run: request.worker_run };
            let max_rss = (request.max_rss > 0).then_some(request.max_rss);
            let sole = request.sole_worker && request.worker_run == 1;
            session.become_worker(Worker::new(Box::new(claims), max_rss, sole), request.worker_run);
        }
        let summary = if request.summary.is_empty() { None } else { Some(SummarySpec::from_json(&request.summary)?) };
        *SUMMARY.lock().unwrap_or_else(|p| p.into_inner()) = summary;
        let cap = if request.stacks_nodes == 0 { NODE_CAP } else { request.stacks_nodes as usize };
        set_call_tree(request.stacks.then(|| CallTree::with_cap(cap)));
        *lock() = Some(session);
        Ok::<_, String>(())
    })
}

pub fn walk_phase(name: &str) -> Result<(), String> {
    with_session("starting a phase", |s| {
        s.switch_phase(Some(name));
        Ok(())
    })
}

pub fn walk_flake(facts: ffi::FlakeFacts) -> Result<(), String> {
    with_session("recording the flake", |s| {
        s.record_flake(flake_meta(facts));
        Ok(())
    })
}

pub(crate) fn flake_meta(facts: ffi::FlakeFacts) -> FlakeMeta {
    FlakeMeta {
        original_ref: facts.original_ref,
        locked_url: facts.locked_url,
        rev: non_empty(facts.rev),
        dirty_rev: non_empty(facts.dirty_rev),
        nar_hash: non_empty(facts.nar_hash),
        last_modified: (facts.last_modified >= 0).then_some(facts.last_modified),
    }
}

/// The node's id, or `NodeId::Skip` for a unit another worker of a parallel walk has.
pub fn node_enter(parent: u32, name: &str) -> Result<u32, String> {
    with_session("entering a node", |s| Ok(s.enter_walk_node(parent_of(parent), name).unwrap_or(ffi::NodeId::Skip.repr)))
}

pub fn node_exit(node: u32, facts: &ffi::NodeFacts) -> Result<(), String> {
    with_session("leaving a node", |s| {
        let outcome = Outcome {
            kind: kind_of(facts.kind),
            drv_path: non_empty(facts.drv_path.clone()),
            error: non_empty(facts.error.clone()),
        };
        s.leave_node(node, outcome).map_err(|e| e.to_string())
    })
}

pub fn plan_children(node: u32, names: Vec<String>) -> Result<ffi::ChildPlan, String> {
    with_session("planning the walk", |s| {
        let plan = s.plan_children(parent_of(node), names);
        Ok(ffi::ChildPlan {
            names: plan.visit,
            only_if_recurse_for_derivations: plan.only_if_recurse_for_derivations,
            select: plan.select,
        })
    })
}

pub fn walk_finish(interrupted: bool) -> Result<ffi::WalkSummary, String> {
    guarded(REPORT_WRITE_FAILURE, || {
        let mut session = lock().take().ok_or("no walk is running")?;
        set_innermost(None);
        let Mode::Walk { report: path } = session.mode().clone() else {
            return Err("no walk is running".to_string());
        };
        let mut progress = session.take_progress();
        let report = session.finish(!interrupted, take_stacks());
        if let Some(progress) = &mut progress {
            progress.done(report.nodes.len());
        }
        let facts = write_and_summarize(&path, &report)?;
        if let Some(progress) = &mut progress {
            // The CLI set nix to be killed with it. Its report written, nix has done what the
            // CLI waits for, and the CLI may stop waiting and exit (nixrun's `run`): nix then
            // finishes exiting on its own instead of being killed in its teardown.
            // SAFETY: prctl only changes this process's parent-death signal.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0) };
            progress.written(&facts);
        }
        let summary = ffi::WalkSummary {
            report: path.display().to_string(),
            nodes: report.nodes.len() as u64,
            errors: report.error_count() as u64,
            interrupted,
        };
        drop_aside(report);
        Ok(summary)
    })
}

/// The summary table the walk was asked for (`summary` of `builtins.evalcostWalk`).
static SUMMARY: Mutex<Option<SummarySpec>> = Mutex::new(None);

/// Writes `report` at `path` and says what the CLI is told of it, with the summary table it
/// asked for if the walk is complete (the CLI reads a partial report anyway). The table is
/// rendered on a thread beside the writing: both take 10-25 ms for 20 000 outputs, and the CLI
/// waits idle meanwhile. A summary that cannot be rendered is left out: the CLI then reads the
/// report and renders it itself.
fn write_and_summarize(path: &Path, report: &Report) -> Result<WrittenFacts, String> {
    let spec = SUMMARY.lock().unwrap_or_else(|p| p.into_inner()).take().filter(|_| report.meta.complete);
    let Some(spec) = spec else {
        write_report(path, report).map_err(|e| e.to_string())?;
        return Ok(WrittenFacts { complete: report.meta.complete, summary: None });
    };
    let render = move || guarded("rendering the summary", || spec.render(report)).ok();
    std::thread::scope(|scope| {
        let rendering = std::thread::Builder::new().name("evalcost-summary".into()).spawn_scoped(scope, render.clone()).ok();
        write_report(path, report).map_err(|e| e.to_string())?;
        // No thread could start: rendered here.
        let summary = rendering.map_or_else(render, |handle| handle.join().ok().flatten());
        Ok(WrittenFacts { complete: report.meta.complete, summary })
    })
}

/// Frees `value` on a thread of its own: a 20 000-output report is some 100 000 allocations,
/// 6-25 ms of frees (measured in nix under `profile` and `-j 1`) between the report being
/// written and nix going on to exit. Nothing waits for the thread; should the process exit
/// first, the kernel takes the memory back all the same. If no thread can start, it is freed
/// here (the spawn error drops the closure).
fn drop_aside<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new().name("evalcost-free".into()).spawn(move || drop(value));
}

/// The flake could not be loaded: no report rather than a misleading one.
pub fn walk_abandon() {
    lock().take();
    SUMMARY.lock().unwrap_or_else(|p| p.into_inner()).take();
    set_call_tree(None);
}

// ---- call stacks ---------------------------------------------------------------------------

/// One `trace-function-calls` line, intercepted by the shim's logger (Nix up to 2.29). Called
/// for every Nix call while stacks are profiled, so it reads only Nix's counters and the clock.
pub fn stack_event(line: &str) {
    let _ = guarded("recording a call", || {
        with_call_tree(|tree, clock, innermost| match parse_trace(line) {
            Some(TraceEvent::Entered(frame)) => tree.enter_named(innermost, frame, clock.reading()),
            Some(TraceEvent::Exited) => tree.exit(clock.reading()),
            None => {}
        });
        Ok::<_, String>(())
    });
}

/// The id of a frame name (Nix 2.30+: the shim names each distinct callee once).
pub fn stack_frame(name: &str) -> u32 {
    guarded("naming a frame", || Ok::<_, String>(with_call_tree(|tree, _, _| tree.frame_id(name)).unwrap_or(0))).unwrap_or(0)
}

/// A call of frame `frame` starts (Nix 2.30+, from the EvalProfiler hook).
pub fn stack_enter(frame: u32) {
    let _ = guarded("recording a call", || {
        with_call_tree(|tree, clock, innermost| tree.enter(innermost, frame, clock.reading()));
        Ok::<_, String>(())
    });
}

/// The innermost call returns or unwinds (Nix 2.30+).
pub fn stack_exit() {
    let _ = guarded("recording a return", || {
        with_call_tree(|tree, clock, _| tree.exit(clock.reading()));
        Ok::<_, String>(())
    });
}

// ---- builtins.evalcostMeasure ----------------------------------------------------------------

pub fn measure_enter(label: &str) -> Result<u32, String> {
    guarded("entering a measurement", || {
        let mut guard = lock();
        let session = guard.get_or_insert_with(standalone_session);
        let id = session.enter_measure(label);
        set_innermost(session.innermost());
        Ok::<_, String>(id)
    })
}

pub fn measure_exit(node: u32, error: &str) -> Result<(), String> {
    with_session("leaving a measurement", |s| s.leave_measure(node, Some(error)).map_err(|e| e.to_string()))
}

/// A session for builtins.evalcostMeasure used without a walk (plain `nix eval` with the
/// plugin loaded). Its report is written at exit to $NIX_EVALCOST_REPORT, if set.
fn standalone_session() -> Session<NixSensor> {
    let report = std::env::var_os(MEASURE_REPORT_VAR).map(PathBuf::from);
    if report.is_some() {
        // SAFETY: registering a plain extern "C" function with no arguments.
        unsafe { libc::atexit(write_standalone_report) };
    }
    new_session(Mode::Measure { report }, meta("measure", std::env::args().collect()), Systems::All)
}

extern "C" fn write_standalone_report() {
    let outcome = guarded("writing the report", || {
        let Some(session) = lock().take() else { return Ok(()) };
        let Mode::Measure { report: Some(path) } = session.mode().clone() else { return Ok(()) };
        // The evaluator may be gone at exit: the last reading stands as the totals.
        let report = session.finish_at_exit();
        write_report(&path, &report).map_err(|e| e.to_string())
    });
    if let Err(message) = outcome {
        eprintln!("warning: nix-evalcost: {message}");
    }
}
