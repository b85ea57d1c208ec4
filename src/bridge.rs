//! The cxx bridge between the C++ shim (`cpp/`) and Rust. Declarations only: the Rust
//! functions are in `calls.rs` and `entry.rs`, the C++ ones in `cpp/*.cc`. Private to the
//! plugin.

// cxx resolves the extern "Rust" functions in `ffi`'s parent module: this one.
use crate::calls::{
    measure_enter, measure_exit, node_enter, node_exit, plan_children, stack_enter, stack_event, stack_exit,
    stack_frame, walk_abandon, walk_begin, walk_finish, walk_flake, walk_phase,
};
use crate::entry::plugin_enabled;
use crate::passive::{passive_begin, passive_end, passive_flake, passive_setting_specs};

#[cxx::bridge(namespace = "evalcost")]
pub(crate) mod ffi {
    /// Nix's cumulative counters at one instant, as the shim reads them (`cpp/counters.cc`).
    /// Converted to the core's `Cost` in one place, `sensor.rs`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    struct RawCounters {
        thunks: u64,
        function_calls: u64,
        primop_calls: u64,
        lookups: u64,
        values: u64,
        envs: u64,
        values_in_envs: u64,
        list_elems: u64,
        list_concats: u64,
        attrsets: u64,
        attrs_in_attrsets: u64,
        op_updates: u64,
        op_update_values_copied: u64,
        avoided: u64,
        gc_total_bytes: u64,
        gc_heap_bytes: u64,
        gc_cycles: u64,
    }

    /// `sizeof` of Nix's evaluator structures, for Nix's own byte accounting (the core's
    /// `Sizes`).
    #[derive(Clone, Copy, Debug)]
    struct NixSizes {
        value: u64,
        env: u64,
        bindings: u64,
        attr: u64,
        pointer: u64,
    }

    /// What a walked value is (the core's `report::Kind`, less `measure`, which the walker never
    /// produces).
    enum NodeKind {
        Unknown,
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
    }

    /// Node ids are indices; `Root` is the parent of the flake's top-level outputs.
    #[repr(u32)]
    enum NodeId {
        Root = 4294967295,
        /// What `node_enter` returns for a child another worker of a parallel walk has: skip it.
        Skip = 4294967294,
    }

    /// The arguments of `builtins.evalcostWalk`, as the shim read them.
    struct WalkRequest {
        flake: String,
        base_dir: String,
        report: String,
        systems: Vec<String>,
        all_systems: bool,
        force_drv_paths: bool,
        stacks: bool,
        /// The most call-tree nodes kept (0: the core's default).
        stacks_nodes: u64,
        argv: Vec<String>,
        /// `I/N`: walk only shard I of N (empty: the whole walk).
        shard: String,
        /// A worker of a parallel walk: the claims table it shares with the others (empty: not
        /// a worker), its run number and its memory budget in bytes (0: none).
        claims: String,
        worker_run: u32,
        max_rss: u64,
        /// The only worker slot (`-j 1`): its first worker, if it walks to the end, writes the
        /// joined report itself.
        sole_worker: bool,
        /// Walk only the output at this attribute path (empty: every output).
        only: Vec<String>,
        /// The summary table to render when the report is written, as a `SummarySpec` in JSON
        /// (empty: none).
        summary: String,
    }

    /// What the shim learned about the flake while locking it. Empty string: unknown.
    struct FlakeFacts {
        original_ref: String,
        locked_url: String,
        rev: String,
        dirty_rev: String,
        nar_hash: String,
        last_modified: i64,
    }

    /// What the shim observed about one walked node.
    struct NodeFacts {
        kind: NodeKind,
        drv_path: String,
        error: String,
    }

    /// Which children of an attribute set the walk visits, and what to select in each.
    struct ChildPlan {
        names: Vec<String>,
        only_if_recurse_for_derivations: bool,
        select: Vec<String>,
    }

    struct WalkSummary {
        report: String,
        nodes: u64,
        errors: u64,
        interrupted: bool,
    }

    /// One nix.conf setting the plugin registers (the core's `passive::SETTINGS`).
    struct SettingSpec {
        name: String,
        default_value: String,
        description: String,
    }

    /// Whether passive profiling measures this process, and with call stacks.
    #[derive(Clone, Copy)]
    struct PassiveStart {
        measured: bool,
        stacks: bool,
    }

    extern "Rust" {
        fn plugin_enabled() -> bool;
        fn passive_setting_specs() -> Vec<SettingSpec>;
        fn passive_begin(settings: Vec<String>) -> PassiveStart;
        fn passive_end(interrupted: bool, failed: bool);
        fn passive_flake(facts: FlakeFacts);
        fn walk_begin(request: WalkRequest) -> Result<()>;
        fn walk_phase(name: &str) -> Result<()>;
        fn walk_flake(facts: FlakeFacts) -> Result<()>;
        fn node_enter(parent: u32, name: &str) -> Result<u32>;
        fn node_exit(node: u32, facts: &NodeFacts) -> Result<()>;
        fn plan_children(node: u32, names: Vec<String>) -> Result<ChildPlan>;
        fn walk_finish(interrupted: bool) -> Result<WalkSummary>;
        fn walk_abandon();
        fn measure_enter(label: &str) -> Result<u32>;
        fn measure_exit(node: u32, error: &str) -> Result<()>;
        fn stack_event(line: &str);
        fn stack_frame(name: &str) -> u32;
        fn stack_enter(frame: u32);
        fn stack_exit();
    }

    unsafe extern "C++" {
        include!("nix-evalcost/cpp/shim.hh");
        fn read_counters() -> RawCounters;
        fn read_call_counters() -> RawCounters;
        fn nix_sizes() -> NixSizes;
        fn nix_version() -> String;
        fn register_primops() -> Result<()>;
        fn stack_source() -> &'static str;
        include!("nix-evalcost/cpp/passive.hh");
        fn register_passive_settings() -> Result<()>;
        fn install_passive_hooks() -> String;
    }
}
