//! `nix-evalcost profile [FLAKEREF]`: runs `nix eval` with the plugin loaded, has it walk the
//! flake's outputs, then prints the cost table of the report it wrote.

use super::{table_options, SelectArgs};
use crate::attrpath::nix_string;
use crate::plugin::BUILT_FOR_PREFIX;
use crate::merge::merge_report;
use crate::render::{table, View};
use crate::report_io::read_report;
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, IsTerminal};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The plugin's file name, looked for next to the `nix-evalcost` binary.
const PLUGIN_FILE: &str = "libnix_evalcost.so";
/// Exit status after Ctrl-C, as a shell reports a SIGINT death.
const EXIT_INTERRUPTED: i32 = 130;

#[derive(clap::Args)]
pub struct ProfileArgs {
    /// Flake reference, as for `nix flake show` (a path, `github:owner/repo`, …).
    #[arg(default_value = ".")]
    flake: String,
    /// Where to write the report (`.json`, or `.json.gz` to gzip it).
    #[arg(short, long, default_value = "evalcost-report.json")]
    output: PathBuf,
    /// The plugin to load [default: libnix_evalcost.so next to this binary].
    #[arg(long, env = "NIX_EVALCOST_PLUGIN")]
    plugin: Option<PathBuf>,
    /// The `nix` to run.
    #[arg(long, env = "NIX_EVALCOST_NIX", default_value = "nix")]
    nix: PathBuf,
    /// Systems to walk, comma-separated, or `all` [default: the current system].
    #[arg(long, value_delimiter = ',')]
    systems: Vec<String>,
    /// Do not force `drvPath` of derivations (no .drv files are written; derivations then cost
    /// only their attribute set).
    #[arg(long)]
    no_drv_paths: bool,
    /// Also profile call stacks (every Nix call, exact) and write time and memory flamegraphs
    /// next to the report (`<name>.wall.svg`, `<name>.alloc.svg`).
    #[arg(long)]
    stacks: bool,
    /// Never show the progress bar.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    select: SelectArgs,
    /// Extra arguments for `nix eval` (after `--`), e.g. `-- --option max-call-depth 20000`.
    #[arg(last = true)]
    nix_args: Vec<String>,
}

pub fn run(args: ProfileArgs) -> Result<i32> {
    let plugin = find_plugin(args.plugin.as_deref())?;

    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let output = cwd.join(&args.output);
    let staging = staging_path(&output)?;
    let flake = local_path_ref(&args.flake);
    let expr = walk_expression(&args, &flake, &cwd, &staging);

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        // Ctrl-C reaches nix too (same process group); we wait for it to write a partial report.
        let interrupted = interrupted.clone();
        let _ = ctrlc::set_handler(move || interrupted.store(true, Ordering::SeqCst));
    }
    let outcome = run_nix(&args, &plugin, &expr);
    let staged = staging.exists();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(e);
        }
    };
    if !staged {
        if interrupted.load(Ordering::SeqCst) {
            bail!("interrupted before the flake's outputs were reached; no report written");
        }
        // Explain a plugin that Nix could not load or use before blaming the flake. (Checked
        // only after a failure: it costs a `nix --version` run and a scan of the plugin.)
        check_plugin_matches(&plugin, &nix_version(&args.nix)?)?;
        let reason = outcome.error.unwrap_or_else(|| format!("nix exited with {}", outcome.status));
        bail!("nix could not evaluate flake '{}': {reason}", args.flake);
    }
    std::fs::rename(&staging, &output).with_context(|| format!("cannot move the report to {}", output.display()))?;

    let report = read_report(&output)?;
    let merged = merge_report(&report, &output, &args.select.merge_options(true));
    let view = View::new(&merged, args.select.sort, args.select.top);
    println!("{}", table::summary(&report));
    print!("{}", table::render(&view, &table_options()));
    eprintln!("report written to {}", output.display());
    if report.stacks.is_some() {
        for svg in write_flamegraphs(&report, &output)? {
            eprintln!("flamegraph written to {}", svg.display());
        }
    }
    if !report.meta.complete {
        eprintln!("interrupted: the report holds the nodes walked so far");
        return Ok(EXIT_INTERRUPTED);
    }
    Ok(0)
}

/// Time and memory flamegraphs of a report with stacks, beside it: `<name>.wall.svg`,
/// `<name>.alloc.svg` (`<name>` is the report's file name without `.json[.gz]`), drawn in
/// parallel (a recursive evaluation can have hundreds of thousands of distinct stacks).
fn write_flamegraphs(report: &crate::report::Report, output: &Path) -> Result<Vec<PathBuf>> {
    use crate::render::flamegraph::{folded_above, svg, SvgOptions, INVISIBLE};
    let name = output.file_name().and_then(|n| n.to_str()).unwrap_or("evalcost-report");
    let stem = name.trim_end_matches(".gz").trim_end_matches(".json");
    let draw = |metric: &str| -> Result<PathBuf> {
        let metric = crate::metric::find(metric).map_err(|e| anyhow!(e))?;
        let options = SvgOptions {
            title: crate::render::flamegraph::title(std::slice::from_ref(report), metric),
            subtitle: Some("call stacks under each flake output; frames are call sites".into()),
            metric,
            width: 1600,
        };
        let bytes = svg(&folded_above(std::slice::from_ref(report), metric, INVISIBLE), &options)?;
        let path = output.with_file_name(format!("{stem}.{}.svg", metric.name));
        crate::report_io::write_atomically(&path, |w| std::io::Write::write_all(w, &bytes))?;
        Ok(path)
    };
    std::thread::scope(|scope| {
        let memory = scope.spawn(|| draw("alloc"));
        let time = draw("wall");
        Ok(vec![time?, memory.join().map_err(|_| anyhow!("drawing the memory flamegraph failed"))??])
    })
}

fn find_plugin(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("plugin {} does not exist; pass --plugin PATH to libnix_evalcost.so", path.display());
        }
        return Ok(path.canonicalize()?);
    }
    let exe = std::env::current_exe().context("cannot locate the nix-evalcost binary")?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    for candidate in [dir.join(PLUGIN_FILE), dir.join("../lib").join(PLUGIN_FILE)] {
        if candidate.is_file() {
            return Ok(candidate.canonicalize()?);
        }
    }
    bail!(
        "cannot find the plugin {PLUGIN_FILE} next to {}; pass --plugin PATH or set NIX_EVALCOST_PLUGIN",
        exe.display()
    )
}

/// `nix --version`, e.g. "2.26.3".
fn nix_version(nix: &Path) -> Result<String> {
    let out = Command::new(nix).arg("--version").output().map_err(|e| {
        anyhow!("cannot run '{}' ({e}); install Nix 2.26 with shared libraries or pass --nix PATH", nix.display())
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .last()
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("'{} --version' printed {:?}, not a Nix version", nix.display(), text.trim()))
}

fn major_minor(version: &str) -> &str {
    let end = version.match_indices('.').nth(1).map_or(version.len(), |(i, _)| i);
    &version[..end]
}

/// The plugin is C++ linked against one Nix's libraries: refuse another minor version before
/// Nix fails to load it with an unreadable linker error.
fn check_plugin_matches(plugin: &Path, nix_version: &str) -> Result<()> {
    let bytes = std::fs::read(plugin).with_context(|| format!("cannot read plugin {}", plugin.display()))?;
    let prefix = BUILT_FOR_PREFIX.as_bytes();
    let built_for = bytes
        .windows(prefix.len())
        .position(|w| w == prefix)
        .map(|at| {
            let rest = &bytes[at + prefix.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(0).min(32);
            String::from_utf8_lossy(&rest[..end]).into_owned()
        })
        .ok_or_else(|| anyhow!("{} is not a nix-evalcost plugin; pass --plugin PATH to libnix_evalcost.so", plugin.display()))?;
    if major_minor(&built_for) != major_minor(nix_version) {
        bail!(
            "plugin {} was built for Nix {built_for} but `nix` is {nix_version}; rebuild nix-evalcost against this Nix \
             (see docs/development.md) or pass --nix PATH to a Nix {}",
            plugin.display(),
            major_minor(&built_for)
        );
    }
    Ok(())
}

/// Where nix writes the report before it is renamed to `output`: an interrupted or failed run
/// never replaces a previous report with nothing.
fn staging_path(output: &Path) -> Result<PathBuf> {
    let name = output.file_name().and_then(|n| n.to_str()).context("the report path has no file name")?;
    let dir = output.parent().unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("cannot write the report: directory {} does not exist", dir.display());
    }
    let gz = if name.ends_with(".gz") { ".gz" } else { "" };
    Ok(dir.join(format!(".{name}.{}.partial.json{gz}", std::process::id())))
}

fn nix_list(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| nix_string(&s)).collect();
    format!("[ {} ]", items.join(" "))
}

/// `examples/flake` is a registry lookup of flake id `examples` to Nix; when a directory of that
/// name with a flake.nix exists, the user meant the directory.
fn local_path_ref(flake: &str) -> String {
    let looks_like_path = flake.starts_with(['.', '/']) || flake.contains(':');
    if !looks_like_path && Path::new(flake).join("flake.nix").is_file() {
        format!("./{flake}")
    } else {
        flake.to_string()
    }
}

fn walk_expression(args: &ProfileArgs, flake: &str, cwd: &Path, report: &Path) -> String {
    // Without `systems` the plugin walks Nix's own `system` setting (evaluation stays pure).
    let systems = if args.systems.iter().any(|s| s == "all") {
        "systems = \"all\";".to_string()
    } else if args.systems.is_empty() {
        String::new()
    } else {
        format!("systems = {};", nix_list(args.systems.iter().cloned()))
    };
    format!(
        "builtins.evalcostWalk {{ flake = {}; baseDir = {}; report = {}; {systems} forceDrvPaths = {}; stacks = {}; argv = {}; }}",
        nix_string(flake),
        nix_string(&cwd.to_string_lossy()),
        nix_string(&report.to_string_lossy()),
        !args.no_drv_paths,
        args.stacks,
        nix_list(std::env::args()),
    )
}

struct NixOutcome {
    status: std::process::ExitStatus,
    /// The last `error:` line nix printed.
    error: Option<String>,
}

fn run_nix(args: &ProfileArgs, plugin: &Path, expr: &str) -> Result<NixOutcome> {
    let (progress_reader, progress_writer) = os_pipe::pipe().context("cannot create a pipe")?;
    let progress_fd = progress_writer.as_raw_fd();
    let mut command = Command::new(&args.nix);
    command
        .arg("--option")
        .arg("plugin-files")
        .arg(plugin)
        .args(["--extra-experimental-features", "nix-command flakes", "eval", "--json", "--expr", expr])
        .args(&args.nix_args)
        .env("NIX_EVALCOST_PROGRESS_FD", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: dup2 is async-signal-safe; it gives the child the pipe's write end as fd 3.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(progress_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| {
        anyhow!("cannot run '{}' ({e}); install Nix 2.26 with shared libraries or pass --nix PATH", args.nix.display())
    })?;
    drop(progress_writer);

    let bar = progress_bar(args.no_progress);
    let progress = {
        let bar = bar.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(progress_reader).lines().map_while(Result::ok) {
                let (count, path) = line.split_once('\t').unwrap_or((&line, ""));
                bar.set_position(count.parse().unwrap_or(0));
                bar.set_message(path.to_string());
            }
        })
    };
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let relay = {
        let (bar, tail) = (bar.clone(), tail.clone());
        let stderr = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || relay_stderr(stderr, &bar, &tail))
    };
    let status = child.wait().context("waiting for nix")?;
    let _ = relay.join();
    let _ = progress.join();
    bar.finish_and_clear();
    let error = tail.lock().unwrap_or_else(|p| p.into_inner()).iter().rev().find_map(|l: &String| {
        l.trim_start().strip_prefix("error:").map(|e| e.trim().to_string()).filter(|e| !e.is_empty())
    });
    Ok(NixOutcome { status, error })
}

/// Passes nix's messages through, above the progress bar, keeping the last ones for errors.
fn relay_stderr(stderr: impl std::io::Read, bar: &ProgressBar, tail: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let line = crate::attrpath::sanitize_text(&line);
        bar.suspend(|| eprintln!("{line}"));
        let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
        if tail.len() == 50 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

fn progress_bar(disabled: bool) -> ProgressBar {
    if disabled || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {pos:>7} nodes  {wide_msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_minor() {
        assert_eq!(major_minor("2.26.3"), "2.26");
        assert_eq!(major_minor("2.26"), "2.26");
        assert_eq!(major_minor("2.34.8pre"), "2.34");
    }
}
