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

/// The clock of call frames, read at every Nix call and return while stacks are profiled.
///
/// Where the CPU's time-stamp counter is invariant (x86-64, CPUID says so) and the kernel keeps
/// time by it (clocksource `tsc`, when /sys says), frames read the counter itself: about 10 ns,
/// against 31-38 ns for `Instant::elapsed` through the vDSO, which was a third of the plugin's
/// per-call work on Nix 2.35 (measured: docs/benchmarks.md). The frames' wall time is then in
/// ticks until [`CallClock::ns_per_tick`] turns it into nanoseconds, by the ratio of the two
/// clocks over the profile's life. Anywhere else a tick is a nanosecond of [`wall_ns`].
pub struct CallClock {
    tsc: bool,
    start_ticks: u64,
    start_ns: u64,
}

impl CallClock {
    pub fn start() -> CallClock {
        let tsc = tsc_is_a_clock();
        let (start_ticks, start_ns) = if tsc { (tsc_ticks(), wall_ns()) } else { (0, 0) };
        CallClock { tsc, start_ticks, start_ns }
    }

    #[inline]
    fn ticks(&self) -> u64 {
        if self.tsc {
            tsc_ticks()
        } else {
            wall_ns()
        }
    }

    /// What a call frame needs: Nix's counters (no syscall, no GC lock) and this clock.
    #[inline]
    pub fn reading(&self) -> CallCost {
        CallCost::of(&cost_of(&ffi::read_call_counters(), self.ticks(), 0))
    }

    /// Nanoseconds per tick, measured from the start to now (1 when ticks are nanoseconds).
    pub fn ns_per_tick(&self) -> f64 {
        if !self.tsc {
            return 1.0;
        }
        let ticks = tsc_ticks().saturating_sub(self.start_ticks);
        let ns = wall_ns().saturating_sub(self.start_ns);
        if ticks == 0 {
            1.0
        } else {
            ns as f64 / ticks as f64
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn tsc_ticks() -> u64 {
    // SAFETY: RDTSC exists on every x86-64 CPU and has no preconditions.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn tsc_ticks() -> u64 {
    wall_ns()
}

/// The time-stamp counter ticks at a constant rate on every core (CPUID's invariant TSC bit),
/// and the kernel did not set it aside as a clocksource (a kernel that found the cores out of
/// step switches away from it). Without /sys (a chroot), the CPUID bit decides.
#[cfg(target_arch = "x86_64")]
fn tsc_is_a_clock() -> bool {
    use core::arch::x86_64::__cpuid;
    // SAFETY: CPUID exists on every x86-64 CPU; leaf 0x8000_0007 is asked only if it exists.
    // `unsafe` for the rust-version (1.85); later compilers know CPUID is safe.
    #[allow(unused_unsafe)]
    let invariant = unsafe { __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0 };
    let kernel = std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource");
    invariant && kernel.map_or(true, |name| name.trim() == "tsc")
}

#[cfg(not(target_arch = "x86_64"))]
fn tsc_is_a_clock() -> bool {
    false
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
