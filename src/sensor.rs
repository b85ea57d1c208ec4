//! Where the plugin's readings come from: Nix's counters (read by the shim), the wall clock
//! since the plugin was loaded, and the process's CPU time and memory. The one place where the
//! shim's raw counters become the core's [`Cost`].

use crate::bridge::ffi;
use crate::probe;
use nix_evalcost_core::cost::{Cost, Gauges, Sizes};
use nix_evalcost_core::session::{Reading, Sensor};
use nix_evalcost_core::stacks::CallCost;
use std::sync::OnceLock;
use std::time::Instant;

/// The one clock origin of every report: the moment Nix loaded the plugin (it calls the entry
/// point right after loading it). Wall and CPU time both count from there, so the
/// unattributed wall and CPU time cover the same span.
struct Origin {
    wall: Instant,
    cpu_ns: u64,
}

static ORIGIN: OnceLock<Origin> = OnceLock::new();

fn origin() -> &'static Origin {
    ORIGIN.get_or_init(|| Origin { wall: Instant::now(), cpu_ns: probe::usage().cpu_ns })
}

/// Sets the clock origin to now (at load).
pub fn start_clock() {
    origin();
}

fn wall_ns() -> u64 {
    origin().wall.elapsed().as_nanos() as u64
}

/// Process CPU time since the origin.
fn cpu_ns(usage: &probe::Usage) -> u64 {
    usage.cpu_ns.saturating_sub(origin().cpu_ns)
}

/// A cumulative reading of Nix's counters, with `wall_ns` and `cpu_ns`.
#[inline]
fn cost_of(raw: &ffi::RawCounters, wall_ns: u64, cpu_ns: u64) -> Cost {
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
        wall_ns,
        cpu_ns,
    }
}

/// Nix's structure sizes, as the core names them.
pub fn sizes() -> Sizes {
    let s = ffi::nix_sizes();
    Sizes { value: s.value, env: s.env, bindings: s.bindings, attr: s.attr, pointer: s.pointer }
}

/// What a call frame needs at every Nix call while stacks are profiled: Nix's counters and the
/// wall clock (no syscall, no GC lock).
pub fn call_reading() -> CallCost {
    CallCost::of(&cost_of(&ffi::read_call_counters(), wall_ns(), 0))
}

/// CPU time and peak RSS are read again only after this much wall time (or at the end).
const USAGE_EVERY_NS: u64 = 250_000;

/// The session's sensor. CPU time and peak RSS cost a getrusage syscall (~3 µs in a VM; Linux
/// has no vDSO for process CPU clocks), which at two readings per node was a tenth of a big
/// walk's time: they are read again only when Nix did some work since the last reading and at
/// least [`USAGE_EVERY_NS`] of wall time has passed. So a node shorter than that is charged the
/// CPU time of the last quarter millisecond when its reading falls due, or none; larger nodes and
/// the totals are what getrusage says. Readings stay monotonic, so conservation holds.
#[derive(Default)]
pub struct NixSensor {
    last: Option<(ffi::RawCounters, probe::Usage, u64)>,
}

impl Sensor for NixSensor {
    fn read(&mut self) -> Reading {
        let raw = ffi::read_counters();
        let now = wall_ns();
        let (usage, read_at) = match self.last {
            Some((previous, usage, at)) if previous == raw || now.saturating_sub(at) < USAGE_EVERY_NS => (usage, at),
            _ => (probe::usage(), now),
        };
        self.last = Some((raw, usage, read_at));
        let gauges = Gauges { gc_heap_bytes: raw.gc_heap_bytes, rss_bytes: probe::rss_bytes(), peak_rss_bytes: usage.peak_rss_bytes };
        Reading { cost: cost_of(&raw, now, cpu_ns(&usage)), gauges }
    }

    fn read_final(&mut self) -> Reading {
        self.last = None;
        self.read()
    }

    fn gauges_at_exit(&mut self) -> Gauges {
        Gauges { gc_heap_bytes: 0, rss_bytes: probe::rss_bytes(), peak_rss_bytes: probe::usage().peak_rss_bytes }
    }
}
