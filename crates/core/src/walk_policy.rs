//! Which parts of a flake's outputs the walk visits, modelled on `nix flake show --legacy` and
//! nix-eval-jobs. The C++ walker asks [`plan_children`] at every attribute set it reaches that is
//! not a derivation; derivations are always leaves.
//!
//! | output                                   | visited                                             |
//! |------------------------------------------|-----------------------------------------------------|
//! | `packages` `checks` `devShells` `apps` `bundlers` `legacyPackages` `formatter` `defaultPackage` `devShell` `defaultApp` | selected systems only |
//! | `<per-system>.<system>.<name>`           | every name (leaves)                                 |
//! | `legacyPackages.<system>.…` deeper       | attribute sets with `recurseForDerivations = true`  |
//! | `hydraJobs.…`                            | every nested attribute set                          |
//! | `nixosConfigurations.<n>`, `darwinConfigurations.<n>` | `config.system.build.toplevel`         |
//! | `homeConfigurations.<n>`                 | `activationPackage`                                 |
//! | `lib` `overlays` `*Modules` `templates`  | each entry, to weak head normal form                |
//! | anything else                            | only where `recurseForDerivations = true`           |

use serde::{Deserialize, Serialize};

/// Outputs whose second level is a system name.
pub const PER_SYSTEM: &[&str] = &[
    "packages",
    "legacyPackages",
    "checks",
    "devShells",
    "apps",
    "bundlers",
    "formatter",
    "defaultPackage",
    "devShell",
    "defaultApp",
];

/// Per-system outputs whose `<system>` level is itself a set of named entries.
const PER_SYSTEM_SETS: &[&str] = &["packages", "legacyPackages", "checks", "devShells", "apps", "bundlers"];

/// Outputs whose entries are visited one level deep, to weak head normal form.
const ENTRY_SETS: &[&str] = &[
    "lib",
    "overlays",
    "nixosModules",
    "darwinModules",
    "homeModules",
    "homeManagerModules",
    "flakeModules",
    "templates",
];

const NIXOS_TOPLEVEL: &[&str] = &["config", "system", "build", "toplevel"];

/// Which systems the walk visits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Systems {
    All,
    Only(Vec<String>),
}

impl Systems {
    fn includes(&self, system: &str) -> bool {
        match self {
            Systems::All => true,
            Systems::Only(list) => list.iter().any(|s| s == system),
        }
    }
}

/// The children of one attribute set that the walk visits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Names to visit, in the order given.
    pub visit: Vec<String>,
    /// Visit them only if the set has `recurseForDerivations = true`.
    pub only_if_recurse_for_derivations: bool,
    /// Attribute path to select inside each child before classifying it.
    pub select: Vec<String>,
}

impl Plan {
    fn all(names: Vec<String>) -> Plan {
        Plan { visit: names, ..Plan::default() }
    }
    fn none() -> Plan {
        Plan::default()
    }
    fn if_recurse(names: Vec<String>) -> Plan {
        Plan { visit: names, only_if_recurse_for_derivations: true, select: Vec::new() }
    }
    fn selecting(names: Vec<String>, select: &[&str]) -> Plan {
        Plan { visit: names, only_if_recurse_for_derivations: false, select: select.iter().map(|s| s.to_string()).collect() }
    }
}

/// Plans the children of the attribute set at `path` (empty: the outputs themselves).
/// `recurseForDerivations` is metadata, never a child.
pub fn plan_children(path: &[String], mut names: Vec<String>, systems: &Systems) -> Plan {
    names.retain(|n| n != "recurseForDerivations");
    let Some(output) = path.first().map(String::as_str) else {
        return Plan::all(names);
    };
    let depth = path.len();
    if PER_SYSTEM.contains(&output) {
        return match depth {
            1 => Plan::all(names.into_iter().filter(|s| systems.includes(s)).collect()),
            2 if PER_SYSTEM_SETS.contains(&output) => Plan::all(names),
            _ if output == "legacyPackages" => Plan::if_recurse(names),
            _ => Plan::none(),
        };
    }
    match (output, depth) {
        ("hydraJobs", _) => Plan::all(names),
        ("nixosConfigurations" | "darwinConfigurations", 1) => Plan::selecting(names, NIXOS_TOPLEVEL),
        ("homeConfigurations", 1) => Plan::selecting(names, &["activationPackage"]),
        ("nixosConfigurations" | "darwinConfigurations" | "homeConfigurations", _) => Plan::none(),
        (o, 1) if ENTRY_SETS.contains(&o) => Plan::all(names),
        (o, _) if ENTRY_SETS.contains(&o) => Plan::none(),
        _ => Plan::if_recurse(names),
    }
}

/// How deep a *unit* of `output` lies: the level at which a split walk hands out work
/// (`packages.<system>.<name>`, `nixosConfigurations.<name>`, `lib.<name>`, `formatter.<system>`).
/// Levels above it (`packages`, `packages.<system>`) are structure, walked by every part.
pub fn unit_depth(output: &str) -> usize {
    if PER_SYSTEM_SETS.contains(&output) {
        3
    } else {
        2
    }
}

/// Whether `path` is a unit of a split walk (see [`unit_depth`]).
pub fn is_unit(path: &[String]) -> bool {
    path.first().is_some_and(|output| path.len() == unit_depth(output))
}

/// Whether the child `name` of the set at `parent` is a unit, without building its path (the
/// walk asks at every node).
pub fn child_is_unit(parent: &[String], name: &str) -> bool {
    let output = parent.first().map_or(name, String::as_str);
    parent.len() + 1 == unit_depth(output)
}

/// One part of a deterministic split of the walk: shard `index` (1-based) of `count`. A unit
/// belongs to the shard `1 + fmix64(fnv1a64(path)) mod count`: FNV-1a over the path's
/// components, each followed by a zero byte, then MurmurHash3's 64-bit finalizer (FNV's low bits
/// alone split similar names unevenly). The same flake gives the same split on every machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// More shards than this is a typo, not a CI matrix.
pub const MAX_SHARDS: u32 = 10_000;

impl Shard {
    /// Parses `I/N` (1 ≤ I ≤ N ≤ [`MAX_SHARDS`]).
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("invalid shard '{}': expected I/N with 1 <= I <= N <= {MAX_SHARDS}, e.g. 2/3", crate::attrpath::sanitize_text(text));
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = index.trim().parse().map_err(|_| bad())?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if index == 0 || index > count || count > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard (1-based) that walks the unit at `path`.
    pub fn of_unit(path: &[String], count: u32) -> u32 {
        Self::of_components(path.iter().map(String::as_str), count)
    }

    fn of_components<'a>(path: impl Iterator<Item = &'a str>, count: u32) -> u32 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in path.flat_map(|c| c.as_bytes().iter().chain(std::iter::once(&0u8))) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        hash ^= hash >> 33;
        1 + (hash % u64::from(count)) as u32
    }

    /// Whether this shard walks the child `name` of the set at `parent`: every structure node,
    /// and the units that hash to it.
    pub fn walks(&self, parent: &[String], name: &str) -> bool {
        let child = parent.iter().map(String::as_str).chain(std::iter::once(name));
        !child_is_unit(parent, name) || Shard::of_components(child, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Whether a walk of only `only` visits the child `name` of the set at `parent`: the sets on
/// the way to it, it, and everything below it.
pub fn on_the_way(parent: &[String], name: &str, only: &[String]) -> bool {
    let depth = parent.len() + 1;
    let same_prefix = parent.iter().zip(only).all(|(a, b)| a == b);
    same_prefix && (depth > only.len() || only[depth - 1] == name)
}

/// The system a node belongs to, for nodes under a per-system output.
pub fn system_of(path: &[String]) -> Option<&str> {
    match path {
        [output, system, ..] if PER_SYSTEM.contains(&output.as_str()) => Some(system),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(path: &str) -> Vec<String> {
        if path.is_empty() {
            return vec![];
        }
        path.split('.').map(str::to_string).collect()
    }
    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }
    fn linux() -> Systems {
        Systems::Only(names(&["x86_64-linux"]))
    }

    #[test]
    fn top_level_visits_every_output() {
        let plan = plan_children(&p(""), names(&["packages", "lib", "weird"]), &linux());
        assert_eq!(plan, Plan::all(names(&["packages", "lib", "weird"])));
    }

    #[test]
    fn per_system_outputs_keep_selected_systems() {
        let all = names(&["aarch64-darwin", "x86_64-linux"]);
        assert_eq!(plan_children(&p("packages"), all.clone(), &linux()).visit, names(&["x86_64-linux"]));
        assert_eq!(plan_children(&p("formatter"), all.clone(), &Systems::All).visit, all);
        assert_eq!(plan_children(&p("packages.x86_64-linux"), names(&["a", "b"]), &linux()).visit, names(&["a", "b"]));
        assert_eq!(plan_children(&p("packages.x86_64-linux.a"), names(&["x"]), &linux()), Plan::none());
        assert_eq!(plan_children(&p("formatter.x86_64-linux"), names(&["x"]), &linux()), Plan::none());
    }

    #[test]
    fn legacy_packages_descend_only_with_recurse_for_derivations() {
        let plan = plan_children(&p("legacyPackages.x86_64-linux"), names(&["hello", "set"]), &linux());
        assert!(!plan.only_if_recurse_for_derivations);
        let nested = plan_children(&p("legacyPackages.x86_64-linux.set"), names(&["a", "recurseForDerivations"]), &linux());
        assert!(nested.only_if_recurse_for_derivations);
        assert_eq!(nested.visit, names(&["a"]));
        assert!(plan_children(&p("weird"), names(&["a"]), &linux()).only_if_recurse_for_derivations);
    }

    #[test]
    fn configurations_select_their_toplevel() {
        let plan = plan_children(&p("nixosConfigurations"), names(&["host"]), &linux());
        assert_eq!(plan.select, names(&["config", "system", "build", "toplevel"]));
        assert_eq!(plan_children(&p("homeConfigurations"), names(&["me"]), &linux()).select, names(&["activationPackage"]));
    }

    #[test]
    fn entry_sets_go_one_level_deep() {
        assert_eq!(plan_children(&p("lib"), names(&["f"]), &linux()).visit, names(&["f"]));
        assert_eq!(plan_children(&p("lib.strings"), names(&["f"]), &linux()), Plan::none());
        assert_eq!(plan_children(&p("hydraJobs.a.b"), names(&["c"]), &linux()).visit, names(&["c"]));
    }

    #[test]
    fn shards_parse_and_reject_nonsense() {
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
        assert_eq!(Shard::parse("1/1").unwrap().to_string(), "1/1");
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", "1/20000", "-1/3", ""] {
            let e = Shard::parse(bad).unwrap_err();
            assert!(e.contains("expected I/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn units_are_the_entries_of_each_output() {
        assert!(is_unit(&p("packages.x86_64-linux.hello")));
        assert!(!is_unit(&p("packages.x86_64-linux")));
        assert!(is_unit(&p("formatter.x86_64-linux")));
        assert!(is_unit(&p("nixosConfigurations.host")));
        assert!(is_unit(&p("lib.f")));
        assert!(!is_unit(&p("lib")));
        assert!(!is_unit(&p("hydraJobs.a.b")));
        assert!(child_is_unit(&p("packages.x86_64-linux"), "hello"));
        assert!(!child_is_unit(&p("packages"), "x86_64-linux"));
        assert!(child_is_unit(&p("lib"), "f"));
        assert!(!child_is_unit(&[], "lib"));
    }

    #[test]
    fn every_unit_goes_to_exactly_one_shard_and_structure_to_all() {
        let shards: Vec<Shard> = (1..=3).map(|index| Shard { index, count: 3 }).collect();
        let parent = p("packages.x86_64-linux");
        let mut per_shard = [0usize; 3];
        for i in 0..300 {
            let name = format!("pkg{i}");
            let owners: Vec<&Shard> = shards.iter().filter(|s| s.walks(&parent, &name)).collect();
            assert_eq!(owners.len(), 1, "{name}");
            per_shard[owners[0].index as usize - 1] += 1;
        }
        // Similar names spread evenly enough: no shard gets less than a fifth of 300 (114, 101
        // and 85 by the Python check below).
        assert!(per_shard.iter().all(|&n| n > 60), "{per_shard:?}");
        assert!(shards.iter().all(|s| s.walks(&p("packages"), "x86_64-linux")));
        assert!(shards.iter().all(|s| s.walks(&[], "packages")));
        // Known answer, so that a change of the split (which would re-split every CI matrix) is
        // deliberate: fmix64(FNV-1a 64 of b"lib\0f\0") is 0x791bcb1b60bb6427 (computed
        // independently in Python from the FNV spec's offset basis and prime and MurmurHash3's
        // fmix64 constants); mod 1000003 that is 393765.
        assert_eq!(Shard::of_unit(&p("lib.f"), 1_000_003), 393_766);
    }

    #[test]
    fn a_walk_of_one_output_visits_the_way_to_it_and_below() {
        let only = p("packages.x86_64-linux.hello");
        assert!(on_the_way(&[], "packages", &only));
        assert!(!on_the_way(&[], "lib", &only));
        assert!(on_the_way(&p("packages"), "x86_64-linux", &only));
        assert!(!on_the_way(&p("packages.x86_64-linux"), "other", &only));
        assert!(on_the_way(&p("packages.x86_64-linux"), "hello", &only));
        assert!(on_the_way(&p("packages.x86_64-linux.hello"), "anything", &only));
        assert!(!on_the_way(&p("packages.aarch64-linux.hello"), "x", &only));
    }

    #[test]
    fn system_of_per_system_nodes() {
        assert_eq!(system_of(&p("packages.x86_64-linux.hello")), Some("x86_64-linux"));
        assert_eq!(system_of(&p("packages")), None);
        assert_eq!(system_of(&p("lib.x86_64-linux")), None);
    }
}
