//! What evaluation costs: additive counters ([`Cost`]) and point-in-time readings ([`Gauges`]).
//!
//! A `Cost` is either a cumulative reading of the process (Nix's counters since start) or the
//! difference of two readings. Every field is additive, which is what makes exact conservation
//! possible: node costs plus the unattributed bucket add up to the process totals.

use serde::{Deserialize, Serialize};

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Declares [`Cost`] once; the field list drives serialization, arithmetic and lookup by name.
macro_rules! cost_struct {
    ($( $(#[doc = $doc:literal])* $field:ident ),+ $(,)?) => {
        /// Additive evaluation counters. Counts are Nix's own; `*_ns` are nanoseconds.
        /// Zero fields are left out of JSON (most nodes do none of most things) and read as 0.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct Cost {
            $( $(#[doc = $doc])* #[serde(skip_serializing_if = "is_zero")] pub $field: u64, )+
        }

        impl Cost {
            /// Field names, in declaration order (the JSON names).
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),+];

            /// Value of a field by its JSON name.
            pub fn get(&self, field: &str) -> Option<u64> {
                match field {
                    $( stringify!($field) => Some(self.$field), )+
                    _ => None,
                }
            }

            /// `self - earlier`, field by field. Readings are monotonic, so saturation only guards
            /// against a corrupt input, never hides real cost.
            pub fn since(&self, earlier: &Cost) -> Cost {
                Cost { $( $field: self.$field.saturating_sub(earlier.$field), )+ }
            }

            /// `self += other`, field by field (saturating: a hostile report cannot overflow).
            pub fn add(&mut self, other: &Cost) {
                $( self.$field = self.$field.saturating_add(other.$field); )+
            }

            /// Pairs of (field name, value).
            pub fn fields(&self) -> [(&'static str, u64); Self::FIELDS.len()] {
                [$( (stringify!($field), self.$field), )+]
            }
        }
    };
}

cost_struct! {
    /// Thunks created.
    thunks,
    /// Calls of Nix lambdas.
    function_calls,
    /// Calls of builtins (including operators such as `-` and `<`, which are primops).
    primop_calls,
    /// Attribute selections (`a.b`) evaluated.
    lookups,
    /// Values allocated.
    values,
    /// Environments allocated.
    envs,
    /// Value slots in those environments.
    values_in_envs,
    /// List elements allocated.
    list_elems,
    /// List concatenations (`++`).
    list_concats,
    /// Attribute sets allocated.
    attrsets,
    /// Attributes in those sets.
    attrs_in_attrsets,
    /// `//` operations.
    op_updates,
    /// Values copied by `//`.
    op_update_values_copied,
    /// Allocations Nix avoided (reused values).
    avoided,
    /// Bytes allocated on the Boehm GC heap.
    gc_bytes,
    /// Garbage collections run.
    gc_cycles,
    /// Wall-clock time.
    wall_ns,
    /// CPU time of the process (user + system).
    cpu_ns,
}

/// `sizeof` of Nix's structures, which turn counts into Nix's own byte accounting
/// (the `bytes` fields of `NIX_SHOW_STATS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    pub value: u64,
    pub env: u64,
    pub bindings: u64,
    pub attr: u64,
    pub pointer: u64,
}

impl Cost {
    /// Bytes of values, as `NIX_SHOW_STATS` `values.bytes`.
    pub fn values_bytes(&self, s: &Sizes) -> u64 {
        self.values.saturating_mul(s.value)
    }
    /// Bytes of environments, as `NIX_SHOW_STATS` `envs.bytes`.
    pub fn envs_bytes(&self, s: &Sizes) -> u64 {
        self.envs.saturating_mul(s.env).saturating_add(self.values_in_envs.saturating_mul(s.pointer))
    }
    /// Bytes of list elements, as `NIX_SHOW_STATS` `list.bytes`.
    pub fn list_bytes(&self, s: &Sizes) -> u64 {
        self.list_elems.saturating_mul(s.pointer)
    }
    /// Bytes of attribute sets, as `NIX_SHOW_STATS` `sets.bytes`.
    pub fn attrsets_bytes(&self, s: &Sizes) -> u64 {
        self.attrsets.saturating_mul(s.bindings).saturating_add(self.attrs_in_attrsets.saturating_mul(s.attr))
    }
    /// All of Nix's own byte accounting together.
    pub fn nix_bytes(&self, s: &Sizes) -> u64 {
        [self.values_bytes(s), self.envs_bytes(s), self.list_bytes(s), self.attrsets_bytes(s)]
            .into_iter()
            .fold(0u64, u64::saturating_add)
    }
}

/// Inclusive costs of a tree stored parents first (each node after its parent): every node's
/// own cost plus all its descendants'. `nodes` yields (parent index, exclusive cost).
pub fn inclusive_costs<'a>(nodes: impl Iterator<Item = (Option<u32>, &'a Cost)>) -> Vec<Cost> {
    let (parents, mut inclusive): (Vec<Option<u32>>, Vec<Cost>) = nodes.map(|(p, c)| (p, *c)).unzip();
    for i in (0..inclusive.len()).rev() {
        if let Some(parent) = parents[i] {
            let child = inclusive[i];
            inclusive[parent as usize].add(&child);
        }
    }
    inclusive
}

/// Readings that are not additive: the state of the process at an instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gauges {
    /// Size of the Boehm GC heap.
    pub gc_heap_bytes: u64,
    /// Resident set size.
    pub rss_bytes: u64,
    /// Peak resident set size of the process so far.
    pub peak_rss_bytes: u64,
}

impl Gauges {
    /// The peak RSS and the current RSS come from different probes read at different moments
    /// (getrusage's high-water mark, /proc's current size); the peak so far is at least the
    /// current size, so a reader never sees a peak below it.
    pub fn consistent(self) -> Gauges {
        Gauges { peak_rss_bytes: self.peak_rss_bytes.max(self.rss_bytes), ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_add_are_inverse() {
        let a = Cost { thunks: 10, wall_ns: 5, gc_bytes: 100, ..Cost::default() };
        let b = Cost { thunks: 25, wall_ns: 9, gc_bytes: 164, ..Cost::default() };
        let mut d = b.since(&a);
        assert_eq!(d, Cost { thunks: 15, wall_ns: 4, gc_bytes: 64, ..Cost::default() });
        d.add(&a);
        assert_eq!(d, b);
    }

    #[test]
    fn get_knows_every_field() {
        let c = Cost { cpu_ns: 7, ..Cost::default() };
        for f in Cost::FIELDS {
            assert!(c.get(f).is_some(), "{f}");
        }
        assert_eq!(c.get("cpu_ns"), Some(7));
        assert_eq!(c.get("nope"), None);
    }

    #[test]
    fn bytes_follow_nix_formulas() {
        let s = Sizes { value: 16, env: 8, bindings: 16, attr: 16, pointer: 8 };
        let c = Cost { values: 3, envs: 2, values_in_envs: 5, list_elems: 4, attrsets: 1, attrs_in_attrsets: 2, ..Cost::default() };
        assert_eq!(c.values_bytes(&s), 48);
        assert_eq!(c.envs_bytes(&s), 2 * 8 + 5 * 8);
        assert_eq!(c.list_bytes(&s), 32);
        assert_eq!(c.attrsets_bytes(&s), 16 + 32);
        assert_eq!(c.nix_bytes(&s), 48 + 56 + 32 + 48);
    }
}
