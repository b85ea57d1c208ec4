//! Helpers for the integration tests: temporary flakes, and runs of the real `nix` with the
//! real plugin, through the CLI or directly.
#![allow(dead_code)]

use nix_evalcost_core::nix_version::NixVersion;
use nix_evalcost_core::report::{Node, Report};
use nix_evalcost_core::report_io::read_report;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// target/<profile>/deps, where this test binary is.
fn deps_dir() -> PathBuf {
    std::env::current_exe().unwrap().parent().unwrap().to_path_buf()
}

/// The CLI built by this `cargo test` (it is another package of the workspace, built and
/// copied to target/<profile>/ because its own integration tests need it).
pub fn bin() -> PathBuf {
    let bin = deps_dir().parent().unwrap().join("nix-evalcost");
    assert!(bin.is_file(), "{} is missing: run the tests from the workspace root (`cargo test --release`), which builds it", bin.display());
    bin
}

/// The plugin as users name it, built by this `cargo test`: the loader, which loads the plugin
/// build beside it (both in target/<profile>/deps: cargo does not copy a cdylib up to
/// target/<profile>/ when testing, so the ones there may be stale).
pub fn plugin() -> PathBuf {
    deps_dir().join("libnix_evalcost.so")
}

/// The plugin build for this environment's Nix (what the loader loads).
pub fn plugin_build() -> PathBuf {
    deps_dir().join("libnix_evalcost_plugin.so")
}

/// `nix-evalcost` with the plugin of this build.
pub fn cli() -> Command {
    let mut command = Command::new(bin());
    command.env("NIX_EVALCOST_PLUGIN", plugin());
    command
}

pub struct Flake {
    pub dir: tempfile::TempDir,
}

impl Flake {
    /// A flake whose flake.nix is `source`; further files from `files`.
    pub fn new(source: &str, files: &[(&str, &str)]) -> Flake {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flake.nix"), source).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Flake { dir }
    }

    pub fn url(&self) -> String {
        format!("path:{}", self.dir.path().display())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A flake with `outputs = { self }: let <lets> in <outputs>`.
pub fn flake_with(lets: &str, outputs: &str) -> Flake {
    Flake::new(&format!("{{ outputs = {{ self }}: let {lets} in {outputs}; }}"), &[])
}

pub const FIB: &str = "fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2);";

pub fn mk_drv(system: &str, name: &str) -> String {
    format!("derivation {{ name = \"{name}\"; system = \"{system}\"; builder = \"/bin/sh\"; }}")
}

pub struct Run {
    pub output: Output,
    pub report_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn report(&self) -> Report {
        read_report(&self.report_path).unwrap_or_else(|e| panic!("{e}\nstderr:\n{}", self.stderr()))
    }
    pub fn assert_success(&self) -> &Self {
        assert!(self.output.status.success(), "status {:?}\nstdout:\n{}\nstderr:\n{}", self.output.status, self.stdout(), self.stderr());
        self
    }
}

/// `nix-evalcost profile FLAKE ARGS... -o <tmp>/report.json --no-progress`.
pub fn profile(flake: &str, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let output = cli()
        .arg("profile")
        .arg(flake)
        .arg("-o")
        .arg(&report_path)
        .arg("--no-progress")
        .args(args)
        .output()
        .unwrap();
    Run { output, report_path, _dir: dir }
}

/// Runs `nix eval --expr EXPR` with the plugin loaded and NIX_SHOW_STATS on; returns the
/// output and the stats JSON. `{report}` in EXPR is replaced by a fresh report path.
pub fn nix_eval_with_stats(expr: &str, env: &[(&str, &str)]) -> (Run, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let stats_path = dir.path().join("stats.json");
    let expr = expr.replace("{report}", &report_path.display().to_string());
    let output = Command::new("nix")
        .args(["--option", "plugin-files"])
        .arg(plugin())
        .args(["--extra-experimental-features", "nix-command flakes", "eval", "--json", "--expr", &expr])
        .env("NIX_SHOW_STATS", "1")
        .env("NIX_SHOW_STATS_PATH", &stats_path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stats = std::fs::read_to_string(&stats_path)
        .map(|s| serde_json::from_str(&s).unwrap())
        .unwrap_or(serde_json::Value::Null);
    (Run { output, report_path, _dir: dir }, stats)
}

pub fn walk_expr(flake: &Flake, extra: &str) -> String {
    format!("builtins.evalcostWalk {{ flake = \"{}\"; report = \"{{report}}\"; {extra} }}", flake.url())
}

pub fn node<'a>(report: &'a Report, path: &str) -> &'a Node {
    report
        .nodes
        .iter()
        .find(|n| n.path.join(".") == path)
        .unwrap_or_else(|| panic!("no node {path}; have {:?}", paths(report)))
}

pub fn paths(report: &Report) -> Vec<String> {
    report.nodes.iter().map(|n| n.path.join(".")).collect()
}

pub fn current_system() -> String {
    let out = Command::new("nix")
        .args(["--extra-experimental-features", "nix-command", "eval", "--raw", "--impure", "--expr", "builtins.currentSystem"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

pub fn assert_file_absent(path: &Path) {
    assert!(!path.exists(), "{} should not exist", path.display());
}

/// Whether this Nix exposes its thunk counter (up to 2.31; from 2.32 it is file-static).
pub fn thunks_readable(report: &Report) -> bool {
    NixVersion::parse(&report.meta.nix_version).is_some_and(|v| !v.at_least(2, 32))
}

// ---- a flake in git, two commits -------------------------------------------------------

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn fib_flake_source(a: u32) -> String {
    format!("{{ outputs = {{ self }}: let {FIB} in {{ lib.a = fib {a}; lib.b = fib 10; lib.c = fib 12; }}; }}")
}

/// A git flake whose second commit makes `lib.a` compute fib 16 instead of fib 15; returns the
/// repository and the first commit.
pub fn two_commits() -> (tempfile::TempDir, String) {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    git(r, &["init", "-q"]);
    std::fs::write(r.join("flake.nix"), fib_flake_source(15)).unwrap();
    git(r, &["add", "flake.nix"]);
    git(r, &["commit", "-q", "-m", "base"]);
    let base_rev = git(r, &["rev-parse", "HEAD"]);
    std::fs::write(r.join("flake.nix"), fib_flake_source(16)).unwrap();
    git(r, &["commit", "-q", "-a", "-m", "grow a"]);
    (repo, base_rev)
}


// ---- file systems that fail ------------------------------------------------------------

/// A tmpfs of `size` mounted at a fresh directory (the tests run as root in their own mount
/// namespace: scripts/nix-env). Unmounted on drop.
pub struct Mount(tempfile::TempDir);

impl Mount {
    pub fn tmpfs(options: &str) -> Option<Mount> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(dir.path()).status().is_ok_and(|s| s.success());
        ok.then_some(Mount(dir))
    }
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

