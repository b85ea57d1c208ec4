//! The shape the workspace promises (docs/architecture.md), checked on what was built:
//! only the plugin contains C++ and links Nix; the plugin depends on none of the CLI's crates;
//! the plugin says which Nix it was built for.

mod common;
use common::*;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

/// The shared libraries an ELF file needs (DT_NEEDED), by `readelf -d`.
fn needed(file: &Path) -> Vec<String> {
    let out = Command::new("readelf").arg("-d").arg(file).output().expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf -d {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1).map(|s| s.trim_end_matches(']').to_string()))
        .collect()
}

/// Whether `file` holds the cxx bridge's symbols (`evalcost$cxxbridge1$...`): the C++ shim.
fn contains_shim(file: &Path) -> bool {
    let bytes = std::fs::read(file).unwrap();
    let needle = b"evalcost$cxxbridge";
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn only_the_plugin_contains_cpp_and_links_nix() {
    let plugin = plugin_build();
    assert!(needed(&plugin).iter().any(|l| l.starts_with("libnixexpr")), "the plugin links Nix: {:?}", needed(&plugin));
    assert!(contains_shim(&plugin), "the plugin holds the shim");

    // The CLI, the loader (which must load into any Nix) and the test binaries.
    let this_test = std::env::current_exe().unwrap();
    for binary in [bin(), common::plugin(), this_test] {
        let libs = needed(&binary);
        assert!(!libs.iter().any(|l| l.starts_with("libnix")), "{} links Nix: {libs:?}", binary.display());
        assert!(!libs.iter().any(|l| l.starts_with("libstdc++")), "{} links C++: {libs:?}", binary.display());
        assert!(!contains_shim(&binary), "{} contains the C++ shim", binary.display());
    }
}

#[test]
fn the_plugin_names_the_nix_it_was_built_for() {
    let bytes = std::fs::read(plugin_build()).unwrap();
    let built_for = nix_evalcost_core::protocol::built_for(&bytes).expect("the plugin carries its marker");
    let out = Command::new("nix").arg("--version").output().unwrap();
    let nix = String::from_utf8_lossy(&out.stdout);
    assert!(nix.trim().ends_with(&built_for), "built for {built_for}, this environment's nix is {nix}");
}

/// `cargo metadata` of the workspace.
fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--filter-platform"])
        // This machine's platform only: other platforms' crates (Windows ones) are not fetched.
        .arg(format!("{}-unknown-linux-gnu", std::env::consts::ARCH))
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Package names reachable from `root` through normal and build dependencies: the tree
/// `cargo tree -e normal,build` shows (dev-dependencies are the tests').
fn dependency_tree(meta: &Value, root: &str) -> BTreeSet<String> {
    let (name_of, nodes) = graph(meta);
    let start = nodes.keys().find(|id| name_of[*id] == root).unwrap_or_else(|| panic!("no package {root}"));
    let mut seen = BTreeSet::new();
    let mut todo = vec![*start];
    while let Some(id) = todo.pop() {
        if !seen.insert(name_of[id].to_string()) {
            continue;
        }
        todo.extend(deps_of(nodes[id]).into_iter().map(|(dep, _)| dep));
    }
    seen
}

/// The packages `root` depends on directly through normal dependencies.
fn direct_dependencies(meta: &Value, root: &str) -> BTreeSet<String> {
    let (name_of, nodes) = graph(meta);
    let id = nodes.keys().find(|id| name_of[*id] == root).unwrap_or_else(|| panic!("no package {root}"));
    deps_of(nodes[id]).into_iter().filter(|(_, normal)| *normal).map(|(dep, _)| name_of[dep].to_string()).collect()
}

type Graph<'a> = (HashMap<&'a str, &'a str>, HashMap<&'a str, &'a Value>);

fn graph(meta: &Value) -> Graph<'_> {
    let name_of = meta["packages"].as_array().unwrap().iter().map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap())).collect();
    let nodes = meta["resolve"]["nodes"].as_array().unwrap().iter().map(|n| (n["id"].as_str().unwrap(), n)).collect();
    (name_of, nodes)
}

/// (package id, whether it is a normal dependency) of a node's non-dev dependencies.
fn deps_of(node: &Value) -> Vec<(&str, bool)> {
    let mut out = Vec::new();
    for dep in node["deps"].as_array().unwrap() {
        let kinds: Vec<Option<&str>> = dep["dep_kinds"].as_array().unwrap().iter().map(|k| k["kind"].as_str()).collect();
        if kinds.iter().any(|k| *k != Some("dev")) {
            out.push((dep["pkg"].as_str().unwrap(), kinds.contains(&None)));
        }
    }
    out
}

#[test]
fn the_plugin_depends_on_none_of_the_clis_crates() {
    let meta = metadata();
    let mut plugin = dependency_tree(&meta, "nix-evalcost-plugin");
    plugin.extend(dependency_tree(&meta, "nix-evalcost-loader"));
    let core = dependency_tree(&meta, "nix-evalcost-core");
    // The CLI's own crates: what it depends on directly that the core does not bring.
    let cli_only: BTreeSet<String> = direct_dependencies(&meta, "nix-evalcost").difference(&core).cloned().collect();
    for named in ["clap", "indicatif", "inferno", "signal-hook"] {
        assert!(cli_only.contains(named), "{named} should be a CLI crate: {cli_only:?}");
    }
    let leaked: Vec<&String> = cli_only.iter().filter(|c| plugin.contains(*c)).collect();
    assert!(leaked.is_empty(), "the plugin's or the loader's dependency tree holds CLI crates: {leaked:?}");
    // And the core needs no C++ toolchain, cxx or Nix.
    for forbidden in ["cxx", "cxx-build", "pkg-config", "cc", "nix-evalcost-plugin"] {
        assert!(!core.contains(forbidden), "the core depends on {forbidden}");
    }
}
