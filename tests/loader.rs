//! libnix_evalcost.so, the loader: it loads the plugin build made for the running Nix, and with
//! none it warns once and Nix goes on (output and exit status unchanged). Every other
//! integration test loads the plugin through it too (`common::plugin()`).

mod common;
use common::*;
use nix_evalcost_core::nix_version::NixVersion;
use nix_evalcost_core::protocol::{self, versioned_build_file, BUILT_FOR_PREFIX, LOADER_FILE, PLUGIN_BUILD_FILE};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `nix eval --expr EXPR` with `plugin` in plugin-files.
fn eval_with(plugin: &Path, expr: &str) -> Output {
    Command::new("nix")
        .args(["--option", "plugin-files"])
        .arg(plugin)
        .args(["--extra-experimental-features", "nix-command", "eval", "--expr", expr])
        .output()
        .unwrap()
}

/// A directory holding a copy of the loader and the given (file name, bytes) builds.
fn install(builds: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let loader = dir.path().join(LOADER_FILE);
    std::fs::copy(plugin(), &loader).unwrap();
    for (name, bytes) in builds {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    (dir, loader)
}

fn running_nix() -> NixVersion {
    let out = Command::new("nix").arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    NixVersion::parse(text.split_whitespace().last().unwrap()).unwrap()
}

/// Nix printed `2` and exited 0, and its stderr is one nix-evalcost warning naming `expect`.
fn assert_nix_went_on_with_one_warning(out: &Output, expect: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one warning: {stderr}");
    assert!(lines[0].starts_with("warning: nix-evalcost: loading the plugin: no plugin build for Nix"), "{stderr}");
    for text in expect {
        assert!(lines[0].contains(text), "{text:?} missing: {stderr}");
    }
}

#[test]
fn the_cargo_build_beside_the_loader_is_loaded() {
    let (_dir, loader) = install(&[(PLUGIN_BUILD_FILE, std::fs::read(plugin_build()).unwrap())]);
    let out = eval_with(&loader, "builtins.evalcostMeasure \"x\" (1 + 2)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_installed_build_for_this_nix_is_loaded_by_its_name() {
    let name = versioned_build_file(&running_nix().series());
    let (_dir, loader) = install(&[(&name, std::fs::read(plugin_build()).unwrap())]);
    let out = eval_with(&loader, "builtins.evalcostMeasure \"x\" 5");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5");
}

#[test]
fn without_any_build_nix_goes_on_with_one_warning() {
    let (_dir, loader) = install(&[]);
    let out = eval_with(&loader, "1 + 1");
    assert_nix_went_on_with_one_warning(&out, &[&running_nix().to_string(), "builds found for Nix: none"]);
}

/// A real build whose marker is rewritten to say another Nix: the loader must not load it
/// (loading it would be as wrong as loading a build for another Nix).
#[test]
fn a_build_for_another_nix_is_not_loaded() {
    let mut bytes = std::fs::read(plugin_build()).unwrap();
    let built_for = protocol::built_for(&bytes).unwrap();
    let other: String = built_for.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect();
    let marker = format!("{BUILT_FOR_PREFIX}{built_for}");
    let at = bytes.windows(marker.len()).position(|w| w == marker.as_bytes()).unwrap();
    bytes[at + BUILT_FOR_PREFIX.len()..at + marker.len()].copy_from_slice(other.as_bytes());
    let (_dir, loader) = install(&[(PLUGIN_BUILD_FILE, bytes)]);
    let out = eval_with(&loader, "1 + 1");
    assert_nix_went_on_with_one_warning(&out, &[&format!("builds found for Nix: {other}")]);
}

/// The build this workspace made for the other supported Nix, if `--nix all` built it already
/// (the second version's run finds the first's; the first finds the second's on a later run).
fn build_for_the_other_nix() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let running = running_nix();
    [root.join("release/deps"), root.join("nix-2.35.2/release/deps")]
        .into_iter()
        .map(|d| d.join(PLUGIN_BUILD_FILE))
        .filter(|p| p.is_file())
        .find(|p| {
            let built_for = protocol::built_for(&std::fs::read(p).unwrap());
            built_for.and_then(|v| NixVersion::parse(&v)).is_some_and(|v| !v.same_minor(&running))
        })
}

#[test]
fn the_real_build_for_the_other_nix_breaks_nix_alone_but_not_through_the_loader() {
    let Some(other) = build_for_the_other_nix() else {
        eprintln!("skipped: no build for the other supported Nix in target/ yet (`scripts/nix-env --nix all run cargo test --release` builds both; the second run tests the first's build)");
        return;
    };
    // Named directly, Nix cannot even start: this is what the loader prevents.
    let direct = eval_with(&other, "1 + 1");
    assert_eq!(direct.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&direct.stderr).contains("could not dynamically open plugin file"));
    // Through the loader: Nix goes on.
    let (_dir, loader) = install(&[(PLUGIN_BUILD_FILE, std::fs::read(&other).unwrap())]);
    let out = eval_with(&loader, "1 + 1");
    assert_nix_went_on_with_one_warning(&out, &[&running_nix().to_string()]);
}

#[test]
fn the_cli_explains_a_loader_without_a_build_for_this_nix() {
    let (dir, loader) = install(&[]);
    let flake = flake_with("", "{ lib.x = 1; }");
    let out = Command::new(bin())
        .args(["profile", &flake.url(), "--no-progress", "-o"])
        .arg(dir.path().join("r.json"))
        .env("NIX_EVALCOST_PLUGIN", &loader)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or("");
    assert!(last.starts_with("nix-evalcost: error: no plugin build for Nix"), "{stderr}");
}

fn doctor(loader: &Path, nix: &str) -> (Option<i32>, String) {
    let out = Command::new(bin()).args(["doctor", "--nix", nix]).env("NIX_EVALCOST_PLUGIN", loader).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn doctor_against_a_matching_a_mismatched_and_a_missing_nix() {
    // Matching: this build beside the loader.
    let (_dir, loader) = install(&[(PLUGIN_BUILD_FILE, std::fs::read(plugin_build()).unwrap())]);
    let (code, out) = doctor(&loader, "nix");
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.matches("[ok ]").count(), 3, "{out}");
    assert!(out.contains(&format!("is Nix {}", running_nix().series())) && out.contains("has builtins.evalcostWalk"), "{out}");

    // Mismatched: no build for this Nix.
    let (_empty, lonely) = install(&[]);
    let (code, out) = doctor(&lonely, "nix");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("[FAIL] plugin: no plugin build for Nix") && out.contains("→ build nix-evalcost against this Nix"), "{out}");

    // Missing: no such nix.
    let (code, out) = doctor(&loader, "/nonexistent/nix");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("[FAIL] nix: cannot run '/nonexistent/nix'") && out.contains("→ install Nix"), "{out}");
    assert_eq!(out.lines().count(), 2, "the first failure ends the checks: {out}");
}

/// Debian's own `nix-bin`, linked statically, unpacked by scripts/nix-env beside the real Nix.
const STATIC_NIX: &str = "/opt/nix-static/usr/bin/nix";

#[test]
fn a_static_nix_goes_on_and_doctor_says_why_it_cannot_load_plugins() {
    if !Path::new(STATIC_NIX).is_file() {
        eprintln!("skipped: no static Nix at {STATIC_NIX} (scripts/nix-env unpacks Debian's nix-bin there)");
        return;
    }
    // The loader loads into it (it needs no nix:: symbols), says why it can do nothing, and
    // Nix goes on.
    let out = Command::new(STATIC_NIX)
        .args(["--option", "plugin-files"])
        .arg(plugin())
        .args(["--extra-experimental-features", "nix-command", "eval", "--expr", "1 + 1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("exports no nix:: symbols") && stderr.contains("shared libraries"), "{stderr}");
    // Named directly, a plugin build makes it fail; doctor explains either way.
    let (_dir, loader) = install(&[(PLUGIN_BUILD_FILE, std::fs::read(plugin_build()).unwrap())]);
    let (code, report) = doctor(&loader, STATIC_NIX);
    assert_eq!(code, Some(1), "{report}");
    let static_version = String::from_utf8_lossy(&Command::new(STATIC_NIX).arg("--version").output().unwrap().stdout).into_owned();
    if NixVersion::parse(static_version.split_whitespace().last().unwrap()).unwrap().same_minor(&running_nix()) {
        assert!(report.contains("[FAIL] loading: this Nix cannot load the plugin"), "{report}");
        assert!(report.contains("statically linked Nix"), "{report}");
    } else {
        // Debian's static Nix is another release than this environment's: no build for it.
        assert!(report.contains("[FAIL] plugin: no plugin build for Nix"), "{report}");
    }
}
