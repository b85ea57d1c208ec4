//! The metrics a user can sort, filter and draw by: a closed list, each with its unit and
//! how to read it from a node.

use crate::cost::{Cost, Gauges, Sizes};
use crate::units::Unit;

#[derive(Clone, Copy)]
pub enum Source {
    /// An additive cost: exclusive per node, summed for inclusive.
    Cost(fn(&Cost, &Sizes) -> u64),
    /// A gauge read when the node was left: not additive.
    Gauge(fn(&Gauges) -> u64),
}

#[derive(Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    pub help: &'static str,
    pub source: Source,
}

impl Metric {
    pub fn is_additive(&self) -> bool {
        matches!(self.source, Source::Cost(_))
    }

    /// The value for one node given its cost (exclusive or inclusive) and gauges.
    pub fn value(&self, cost: &Cost, after: &Gauges, sizes: &Sizes) -> u64 {
        match self.source {
            Source::Cost(f) => f(cost, sizes),
            Source::Gauge(f) => f(after),
        }
    }
}

macro_rules! cost_metric {
    ($name:literal, $unit:ident, $help:literal, |$c:ident, $s:ident| $e:expr) => {
        Metric { name: $name, unit: Unit::$unit, help: $help, source: Source::Cost(|$c, $s| { let _ = $s; $e }) }
    };
}

pub const METRICS: &[Metric] = &[
    cost_metric!("wall", Nanoseconds, "wall-clock time", |c, s| c.wall_ns),
    cost_metric!("cpu", Nanoseconds, "CPU time (user + system)", |c, s| c.cpu_ns),
    cost_metric!("thunks", Count, "thunks created", |c, s| c.thunks),
    cost_metric!("fncalls", Count, "Nix function calls", |c, s| c.function_calls),
    cost_metric!("primops", Count, "builtin (primop) calls", |c, s| c.primop_calls),
    cost_metric!("calls", Count, "calls of Nix functions and builtins", |c, s| c.function_calls.saturating_add(c.primop_calls)),
    cost_metric!("lookups", Count, "attribute selections", |c, s| c.lookups),
    cost_metric!("values", Count, "values allocated", |c, s| c.values),
    cost_metric!("envs", Count, "environments allocated", |c, s| c.envs),
    cost_metric!("attrsets", Count, "attribute sets allocated", |c, s| c.attrsets),
    cost_metric!("listelems", Count, "list elements allocated", |c, s| c.list_elems),
    cost_metric!("updates", Count, "`//` operations", |c, s| c.op_updates),
    cost_metric!("alloc", Bytes, "bytes allocated on the GC heap", |c, s| c.gc_bytes),
    cost_metric!("nixbytes", Bytes, "bytes by Nix's own accounting (values, envs, lists, sets)", |c, s| c.nix_bytes(s)),
    cost_metric!("values-bytes", Bytes, "bytes of values (Nix's accounting)", |c, s| c.values_bytes(s)),
    cost_metric!("envs-bytes", Bytes, "bytes of environments (Nix's accounting)", |c, s| c.envs_bytes(s)),
    cost_metric!("attrsets-bytes", Bytes, "bytes of attribute sets (Nix's accounting)", |c, s| c.attrsets_bytes(s)),
    cost_metric!("lists-bytes", Bytes, "bytes of list elements (Nix's accounting)", |c, s| c.list_bytes(s)),
    cost_metric!("gc-cycles", Count, "garbage collections", |c, s| c.gc_cycles),
    Metric { name: "heap", unit: Unit::Bytes, help: "GC heap size after the node", source: Source::Gauge(|g| g.gc_heap_bytes) },
    Metric { name: "rss", unit: Unit::Bytes, help: "resident memory after the node", source: Source::Gauge(|g| g.rss_bytes) },
    Metric { name: "peak-rss", unit: Unit::Bytes, help: "peak resident memory after the node", source: Source::Gauge(|g| g.peak_rss_bytes) },
];

impl std::fmt::Debug for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

pub fn names() -> Vec<&'static str> {
    METRICS.iter().map(|m| m.name).collect()
}

/// Looks a metric up by name; the error lists the valid names.
pub fn find(name: &str) -> Result<&'static Metric, String> {
    METRICS
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| format!("unknown metric '{}'; choose one of: {}", crate::attrpath::sanitize_text(name), names().join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_rejects_unknown_names_with_the_list() {
        assert_eq!(find("thunks").unwrap().name, "thunks");
        let err = find("bogus").unwrap_err();
        assert!(err.contains("bogus") && err.contains("wall, cpu, thunks"), "{err}");
    }

    #[test]
    fn names_are_unique() {
        let mut n = names();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), METRICS.len());
    }
}
