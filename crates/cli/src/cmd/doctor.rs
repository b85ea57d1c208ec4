//! `nix-evalcost doctor`: can this machine profile? Which `nix`, which version, whether it
//! loads plugins, whether the installed plugin has a build for it, and what to do otherwise.

use crate::nixrun::{self, PLUGIN_FILE};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// The plugin to check [default: libnix_evalcost.so next to this binary].
    #[arg(long, env = "NIX_EVALCOST_PLUGIN")]
    plugin: Option<PathBuf>,
    /// The `nix` to check.
    #[arg(long, env = "NIX_EVALCOST_NIX", default_value = "nix")]
    nix: PathBuf,
}

/// One line of the diagnosis.
struct Check {
    ok: bool,
    what: String,
    /// What to do when not ok.
    fix: Option<String>,
}

impl Check {
    fn good(what: impl Into<String>) -> Check {
        Check { ok: true, what: what.into(), fix: None }
    }
    fn bad(what: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { ok: false, what: what.into(), fix: Some(fix.into()) }
    }
}

pub fn run(args: DoctorArgs) -> Result<i32> {
    let checks = diagnose(&args)?;
    for check in &checks {
        let mark = if check.ok { "ok " } else { "FAIL" };
        println!("[{mark}] {}", nix_evalcost_core::attrpath::sanitize_text(&check.what));
        if let Some(fix) = &check.fix {
            println!("       → {}", nix_evalcost_core::attrpath::sanitize_text(fix));
        }
    }
    Ok(if checks.iter().all(|c| c.ok) { 0 } else { 1 })
}

/// The checks in order; each needs the previous ones to pass, so the first failure ends them.
fn diagnose(args: &DoctorArgs) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    let nix = resolve(&args.nix);
    let version = match nixrun::nix_version(&args.nix) {
        Ok(v) => v,
        Err(e) => {
            checks.push(Check::bad(format!("nix: {e:#}"), "install Nix with shared libraries (README, \"Install from source\"), or pass --nix PATH"));
            return Ok(checks);
        }
    };
    checks.push(Check::good(format!("nix: {} is Nix {version}", nix.display())));

    let exe = std::env::current_exe().context("cannot locate the nix-evalcost binary")?;
    let plugin = match nixrun::find_plugin(args.plugin.as_deref(), &exe) {
        Ok(p) => p,
        Err(e) => {
            checks.push(Check::bad(format!("plugin: {e:#}"), format!("install {PLUGIN_FILE} beside nix-evalcost or in ../lib")));
            return Ok(checks);
        }
    };
    match nixrun::check_plugin_matches(&plugin, &version) {
        Ok(()) => checks.push(Check::good(format!("plugin: {} has a build for Nix {version}", plugin.display()))),
        Err(e) => {
            checks.push(Check::bad(format!("plugin: {e:#}"), "build nix-evalcost against this Nix (README, \"Install from source\")"));
            return Ok(checks);
        }
    }
    checks.push(loads(&args.nix, &plugin));
    Ok(checks)
}

/// `nix` on PATH as a path, for the report.
fn resolve(nix: &Path) -> PathBuf {
    if nix.components().count() > 1 {
        return nix.to_path_buf();
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join(nix)).find(|p| p.is_file()))
        .unwrap_or_else(|| nix.to_path_buf())
}

/// Loads the plugin into `nix` for real and asks for its builtins.
fn loads(nix: &Path, plugin: &Path) -> Check {
    let out = Command::new(nix)
        .arg("--option")
        .arg("plugin-files")
        .arg(plugin)
        .args(["--extra-experimental-features", "nix-command", "eval", "--expr", "builtins ? evalcostWalk"])
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => return Check::bad(format!("loading: cannot run {}: {e}", nix.display()), "pass --nix PATH"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first_line = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "true" {
        return Check::good("loading: nix loads the plugin and has builtins.evalcostWalk");
    }
    let no_symbols = stderr.contains(nix_evalcost_core::protocol::NO_NIX_SYMBOLS);
    if no_symbols || stderr.contains("undefined symbol: _ZN3nix") || stderr.contains("could not dynamically open plugin file") {
        return Check::bad(
            format!("loading: this Nix cannot load the plugin: {first_line}"),
            "a statically linked Nix (Debian's nix-bin, for one) exports no nix:: symbols and loads no plugins; use a Nix built with shared libraries",
        );
    }
    Check::bad(format!("loading: the builtins are missing: {first_line}"), "rebuild nix-evalcost against this Nix")
}
