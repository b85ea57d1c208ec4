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
    fn system_of_per_system_nodes() {
        assert_eq!(system_of(&p("packages.x86_64-linux.hello")), Some("x86_64-linux"));
        assert_eq!(system_of(&p("packages")), None);
        assert_eq!(system_of(&p("lib.x86_64-linux")), None);
    }
}
