//! `nix-evalcost profile [FLAKEREF]`: runs `nix eval` with the plugin loaded, has it walk the
//! flake's outputs, then prints the cost table of the report it wrote.

use crate::nixrun::{self, EarlyReport, NixOutcome, NixRun, ReadEarly, Walk, WalkSystems};
use crate::SelectArgs;
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nix_evalcost_core::merge::merge_report;
use nix_evalcost_core::protocol;
use nix_evalcost_core::report::Report;
use nix_evalcost_core::summary::SummarySpec;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args)]
pub struct ProfileArgs {
    /// Flake reference, as for `nix flake show` (a path, `github:owner/repo`, …).
    #[arg(default_value = ".")]
    flake: String,
    /// Where to write the report (`.json`, or `.json.gz` to gzip it).
    #[arg(short, long, default_value = "evalcost-report.json")]
    output: PathBuf,
    /// Also write a self-contained HTML page of the report here (table, output tree,
    /// flamegraphs).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Walk with N worker `nix` processes, which hand the outputs out among themselves as they
    /// go; their reports are joined into one.
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: Option<u16>,
    /// With -j: a worker whose resident memory exceeds SIZE (e.g. 4GiB) after an output takes
    /// no more and is replaced; an output that alone takes a fresh worker past it is recorded
    /// as an error. Implies -j 1 without -j.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// After the walk, evaluate each output alone in a fresh `nix` (N at a time with -j N): the
    /// report then has each output's standalone cost and the work it shares with others
    /// (`report --cost standalone|shared`).
    #[arg(long)]
    isolate: bool,
    #[command(flatten)]
    walk: WalkArgs,
    #[command(flatten)]
    select: SelectArgs,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let bytes = nix_evalcost_core::gate::quantity(text, nix_evalcost_core::units::Unit::Bytes)?;
    if bytes < 1.0 {
        return Err(format!("invalid size '{text}': give a positive size such as 4GiB"));
    }
    Ok(bytes as u64)
}

/// How a walk is run (shared by `profile` and `bench`).
#[derive(clap::Args)]
pub struct WalkArgs {
    /// The plugin to load [default: libnix_evalcost.so next to this binary].
    #[arg(long, env = "NIX_EVALCOST_PLUGIN")]
    pub(crate) plugin: Option<PathBuf>,
    /// The `nix` to run.
    #[arg(long, env = "NIX_EVALCOST_NIX", default_value = "nix")]
    pub(crate) nix: PathBuf,
    /// Systems to walk, comma-separated, or `all` [default: the current system].
    #[arg(long, value_delimiter = ',')]
    pub(crate) systems: Vec<String>,
    /// Do not force `drvPath` of derivations (no .drv files are written; derivations then cost
    /// only their attribute set).
    #[arg(long)]
    pub(crate) no_drv_paths: bool,
    /// Also profile call stacks (every Nix call, exact) and write time and memory flamegraphs
    /// next to the report (`<name>.wall.svg`, `<name>.alloc.svg`).
    #[arg(long)]
    pub(crate) stacks: bool,
    /// With --stacks: the most distinct call stacks kept (call-tree nodes, about 0.5 KB each).
    /// Calls beyond are charged to their callers, and the report says how many.
    #[arg(long, value_name = "N", default_value_t = nix_evalcost_core::stacks::NODE_CAP)]
    pub(crate) stacks_nodes: usize,
    /// Walk only shard I of N of the outputs (a deterministic split by attribute path, the same
    /// on every machine), e.g. one job of a CI matrix each; `nix-evalcost merge` joins the
    /// shards' reports into one.
    #[arg(long, value_name = "I/N", value_parser = nix_evalcost_core::walk_policy::Shard::parse)]
    pub(crate) shard: Option<nix_evalcost_core::walk_policy::Shard>,
    /// Never show the progress bar.
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// Extra arguments for `nix eval` (after `--`), e.g. `-- --option max-call-depth 20000`.
    #[arg(last = true)]
    pub(crate) nix_args: Vec<String>,
}

impl WalkArgs {
    /// The plugin to load and the walk of `flake` these arguments describe, writing `report`
    /// (shared by a single walk, the workers of `-j` and the walks of `--isolate`).
    pub(crate) fn prepare(&self, flake: &str, report: PathBuf) -> Result<(PathBuf, Walk)> {
        let exe = std::env::current_exe().context("cannot locate the nix-evalcost binary")?;
        let plugin = nixrun::find_plugin(self.plugin.as_deref(), &exe)?;
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let walk = Walk {
            flake: nixrun::local_path_ref(flake, &cwd),
            base_dir: cwd,
            report,
            systems: WalkSystems::from_args(&self.systems),
            force_drv_paths: !self.no_drv_paths,
            stacks: self.stacks,
            stacks_nodes: self.stacks_nodes,
            argv: std::env::args().collect(),
            shard: self.shard,
            worker: None,
            only: None,
            summary: None,
        };
        Ok((plugin, walk))
    }
}

/// A walk's report, written at the output path.
pub struct Finished {
    /// The report, unless all that was asked of it is its summary and the plugin rendered it.
    pub report: Option<Report>,
    /// The summary table, when the walk was asked for it and rendered it beside nix's exit.
    pub summary: Option<String>,
}

/// The summary table a walk prints, and whether that is all the caller needs of its report
/// (then the plugin renders it, and a complete report is not read back).
#[derive(Clone)]
pub struct Summarize {
    pub spec: SummarySpec,
    pub only_this: bool,
}

/// What one walk gave.
pub enum Walked {
    /// The whole report.
    Done(Finished),
    /// A partial report: the walk was stopped by this signal.
    Partial(Finished, i32),
    /// Stopped by this signal before the flake's outputs were reached: no report.
    Stopped(i32),
}

pub fn run(args: ProfileArgs) -> Result<i32> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let output = cwd.join(&args.output);
    // The summary of the walk's report as it is; --isolate adds to it first. Flamegraphs and
    // the HTML page need the report itself.
    let only_this = !args.walk.stacks && args.html.is_none();
    let summarize = (!args.isolate).then(|| Summarize { spec: args.select.summary_spec(&output), only_this });
    let walked = match (args.jobs, args.max_memory) {
        (None, None) => walk_to(&args.walk, &args.flake, &output, summarize)?,
        (jobs, max_rss) => {
            let parallel = super::parallel::Parallel { jobs: usize::from(jobs.unwrap_or(1)), max_rss };
            super::parallel::walk_parallel(&args.walk, &args.flake, &output, parallel, summarize)?
        }
    };
    let Finished { report, summary } = match walked {
        Walked::Done(finished) => finished,
        Walked::Partial(Finished { report, summary }, signal) => {
            print_summary(report.as_ref(), &output, &args.select, summary);
            eprintln!("{}: the report holds the nodes walked so far; the node being walked is marked interrupted", stopped(signal));
            return Ok(exit_status_for(signal));
        }
        Walked::Stopped(signal) => {
            eprintln!("nix-evalcost: {} before the flake's outputs were reached; no report written", stopped(signal));
            return Ok(exit_status_for(signal));
        }
    };
    let Some(report) = report else {
        // The plugin rendered the summary of the complete report, and nothing else needs it.
        print_summary(None, &output, &args.select, summary);
        return Ok(0);
    };
    let mut report = report;
    if args.isolate {
        let jobs = usize::from(args.jobs.unwrap_or(1));
        let stop = super::isolate::isolate(&args.walk, &args.flake, &output, &mut report, jobs)?;
        nix_evalcost_core::report_io::write_report(&output, &report)?;
        if let Some(signal) = stop {
            print_summary(Some(&report), &output, &args.select, None);
            print_isolated(&report, args.select.metric);
            eprintln!("{}: the report holds the outputs evaluated alone so far", stopped(signal));
            return Ok(exit_status_for(signal));
        }
    }
    print_summary(Some(&report), &output, &args.select, summary);
    if args.isolate {
        print_isolated(&report, args.select.metric);
    }
    if let Some(stacks) = &report.stacks {
        if stacks.folded_calls > 0 {
            eprintln!(
                "call stacks: the tree holds its cap of {} distinct stacks; {} beyond it were charged to their callers (--stacks-nodes N keeps more, ~0.5 KB each)",
                stacks.node_cap,
                nix_evalcost_core::units::plural(stacks.folded_calls as usize, "call")
            );
        }
    }
    // Drawn once, for the files beside the report and for the HTML page.
    let flamegraphs = if report.stacks.is_some() || args.html.is_some() { draw_flamegraphs(&report)? } else { Vec::new() };
    if report.stacks.is_some() {
        for path in write_flamegraphs(&flamegraphs, &output)? {
            eprintln!("flamegraph written to {}", path.display());
        }
    }
    if let Some(html) = &args.html {
        write_html(&report, &output, html, &args.select, &flamegraphs)?;
        eprintln!("HTML report written to {}", html.display());
    }
    // The process ends here: freeing a large report node by node would only delay the exit
    // (15 ms for 20 000 outputs).
    std::mem::forget(report);
    Ok(0)
}

/// The report as a self-contained page, with its flamegraphs (from [`draw_flamegraphs`]).
fn write_html(report: &Report, output: &Path, html: &Path, select: &SelectArgs, flamegraphs: &[Flamegraph]) -> Result<()> {
    let merged = merge_report(report, output, &select.merge_options(true));
    let flake = report.meta.flake.as_ref().map_or("(no flake)".to_string(), |f| f.original_ref.clone());
    let mut page = nix_evalcost_core::render::html::merged_page(&merged, &format!("nix-evalcost: {flake}"));
    if !report.isolated.is_empty() {
        nix_evalcost_core::render::html::add_isolated_columns(&mut page, report, select.metric);
    }
    let svgs: Vec<(String, Vec<u8>)> = flamegraphs.iter().map(|(metric, svg)| (format!("flamegraph: {metric}"), svg.clone())).collect();
    let text = nix_evalcost_core::render::html::render(&page, &svgs);
    nix_evalcost_core::report_io::write_atomically(html, |w| std::io::Write::write_all(w, text.as_bytes()))?;
    Ok(())
}

/// Each isolated output's cost in the walk, alone, and shared, by `metric`, most shared first.
fn print_isolated(report: &Report, metric: &'static nix_evalcost_core::metric::Metric) {
    use nix_evalcost_core::attrpath::{display_path, sanitize_text};
    use nix_evalcost_core::units::format;
    let value = |c: &nix_evalcost_core::cost::Cost| metric.value(c, &Default::default(), &report.sizes);
    let mut rows = nix_evalcost_core::isolate::rows(report);
    rows.sort_by(|a, b| value(&b.shared).cmp(&value(&a.shared)).then_with(|| a.path.cmp(&b.path)));
    let width = rows.iter().map(|r| sanitize_text(&display_path(&r.path)).chars().count()).max().unwrap_or(4).max(6);
    println!("\n{:<width$}  {:>12}  {:>12}  {:>12}   ({}: evaluated alone vs in the walk)", "output", "in walk", "alone", "shared", metric.name);
    for row in &rows {
        let path = sanitize_text(&display_path(&row.path));
        let note = row.error.as_deref().map_or(String::new(), |e| format!("  ({})", sanitize_text(e)));
        println!(
            "{path:<width$}  {:>12}  {:>12}  {:>12}{note}",
            format(value(&row.in_walk), metric.unit),
            format(value(&row.standalone), metric.unit),
            format(value(&row.shared), metric.unit)
        );
    }
}

/// The summary and the table of `report` (`text`: rendered already, by the plugin or beside
/// the read).
fn print_summary(report: Option<&Report>, output: &Path, select: &SelectArgs, text: Option<String>) {
    let text = text.or_else(|| report.and_then(|r| nixrun::render_summary(&select.summary_spec(output), r)));
    if let Some(text) = text {
        print!("{text}");
    }
    eprintln!("report written to {}", output.display());
}

/// Walks `flake` in a `nix` process with the plugin and writes the report at `output`
/// (atomically: a staging file renamed when the plugin has written it), with the summary table
/// `summarize` asks for, if given.
pub fn walk_to(args: &WalkArgs, flake: &str, output: &Path, summarize: Option<Summarize>) -> Result<Walked> {
    let staging = nixrun::staging_path(output)?;
    let (plugin, mut walk) = args.prepare(flake, staging.clone())?;
    walk.summary = summarize.as_ref().filter(|s| s.only_this).map(|s| s.spec.clone());

    let expression = walk.expression();
    let run = NixRun { nix: &args.nix, plugin: &plugin, expression: &expression, extra_args: &args.nix_args };
    let bar = progress_bar(args.no_progress);
    let mut early = EarlyReport::default().moving_to(output);
    if let Some(summarize) = summarize {
        early = early.summarizing(summarize.spec);
    }
    let outcome = run.run(
        |line| {
            if early.read_if_written(&line, &staging) {
                return early.summarized();
            }
            bar.set_position(line.nodes);
            bar.set_message(line.path);
            false
        },
        // nix's messages pass through, above the progress bar.
        |line| bar.suspend(|| eprintln!("{}", nix_evalcost_core::attrpath::sanitize_text(line))),
    );
    bar.finish_and_clear();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(e);
        }
    };
    if early.moved_to().is_none() {
        if !staging.exists() {
            return no_report(args, flake, &plugin, &outcome);
        }
        nix_evalcost_core::report_io::replace_file(&staging, output).with_context(|| format!("cannot move the report to {}", output.display()))?;
    }

    // The plugin wrote this report a moment ago: failing to read it is the tool's failure, not
    // bad input (exit 1).
    let ReadEarly { report, summary } = early.or_read(output).map_err(|e| anyhow!("reading the report nix just wrote: {e}"))?;
    let finished = Finished { report, summary };
    // A report not read back is complete: the plugin renders only a complete walk's summary.
    Ok(match finished.report.as_ref().is_none_or(|r| r.meta.complete) {
        true => Walked::Done(finished),
        false => Walked::Partial(finished, outcome.stopped_by.unwrap_or(libc::SIGINT)),
    })
}

/// nix wrote no report: say why, once, without blaming the flake for what was not its fault.
fn no_report(args: &WalkArgs, flake: &str, plugin: &Path, outcome: &NixOutcome) -> Result<Walked> {
    if let Some(signal) = outcome.stopped_by {
        return Ok(Walked::Stopped(signal));
    }
    if let Some(signal) = outcome.signal() {
        let at = outcome.last_path.as_deref().map_or(String::new(), |p| format!(" while walking {p} (the last output it reported)"));
        let hint = if signal == libc::SIGKILL { " (the out-of-memory killer?)" } else { "" };
        bail!("nix was killed by {}{hint}{at}; no report was written", nixrun::signal_name(signal));
    }
    if let Some(reason) = outcome.error.as_deref().and_then(|e| e.strip_prefix(protocol::PLUGIN_ERROR_PREFIX)) {
        if let Some(write) = reason.strip_prefix(protocol::REPORT_WRITE_FAILURE) {
            bail!("the evaluation finished, but the report could not be written{write}");
        }
    }
    // Explain a plugin that Nix could not load or use before blaming the flake. (Checked only
    // after a failure: it costs a `nix --version` run and a scan of the plugin.)
    nixrun::check_plugin_matches(plugin, &nixrun::nix_version(&args.nix)?)?;
    let reason = outcome.error.clone().unwrap_or_else(|| outcome.exit_description());
    bail!("nix could not evaluate flake '{flake}': {reason}")
}

/// "interrupted" (SIGINT), or "stopped by SIGTERM".
pub fn stopped(signal: i32) -> String {
    if signal == libc::SIGINT {
        "interrupted".into()
    } else {
        format!("stopped by {}", nixrun::signal_name(signal))
    }
}

/// The exit status a shell reports for a process killed by `signal`: 130 for SIGINT, 143 for
/// SIGTERM, 129 for SIGHUP.
pub fn exit_status_for(signal: i32) -> i32 {
    128 + signal
}

/// A drawn flamegraph: the metric's name and the SVG.
type Flamegraph = (&'static str, Vec<u8>);

/// Time and memory flamegraphs of a report (call stacks above each output when it has them,
/// else its attribute paths), drawn in parallel: a recursive evaluation can have hundreds of
/// thousands of distinct stacks.
fn draw_flamegraphs(report: &Report) -> Result<Vec<Flamegraph>> {
    use crate::svg::{svg, SvgOptions, INVISIBLE};
    use nix_evalcost_core::render::flamegraph::{folded_above, title};
    let subtitle = report.stacks.as_ref().map(|_| format!("call stacks under each flake output; {}", frames_are(report)));
    let draw = |name: &'static str| -> Result<Flamegraph> {
        let metric = nix_evalcost_core::metric::find(name).map_err(|e| anyhow!(e))?;
        let options = SvgOptions { title: title(std::slice::from_ref(report), metric), subtitle: subtitle.clone(), metric, width: 1600 };
        Ok((name, svg(&folded_above(std::slice::from_ref(report), metric, INVISIBLE), &options)?))
    };
    std::thread::scope(|scope| {
        let memory = scope.spawn(|| draw("alloc"));
        let time = draw("wall");
        Ok(vec![time?, memory.join().map_err(|_| anyhow!("drawing the memory flamegraph failed"))??])
    })
}

/// The flamegraphs beside the report: `<name>.wall.svg`, `<name>.alloc.svg` (`<name>` is the
/// report's file name without `.json[.gz]`).
fn write_flamegraphs(flamegraphs: &[Flamegraph], output: &Path) -> Result<Vec<PathBuf>> {
    let name = output.file_name().and_then(|n| n.to_str()).unwrap_or("evalcost-report");
    let stem = name.trim_end_matches(".gz").trim_end_matches(".json");
    let mut written = Vec::new();
    for (metric, bytes) in flamegraphs {
        let path = output.with_file_name(format!("{stem}.{metric}.svg"));
        nix_evalcost_core::report_io::write_atomically(&path, |w| std::io::Write::write_all(w, bytes))?;
        written.push(path);
    }
    Ok(written)
}

/// What a frame of the report's call stacks is (it depends on the Nix that sensed them).
fn frames_are(report: &Report) -> &'static str {
    match report.stacks.as_ref().map(|s| s.source.as_str()) {
        Some("eval-profiler") => "frames are the called functions",
        _ => "frames are the called functions at their call sites",
    }
}

pub(crate) fn progress_bar(disabled: bool) -> ProgressBar {
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

/// The HTML report of a stored report (gzipped JSON, as the history keeps it): what `serve`
/// shows for one evaluation. The same page as `--html`, with the default columns.
pub(crate) fn html_of_document(gz: &[u8], id: i64) -> Result<String> {
    let mut json = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut json).context("the stored report does not inflate")?;
    let name = PathBuf::from(format!("evaluation-{id}"));
    let report = nix_evalcost_core::report_io::report_from_bytes(&name, &json, nix_evalcost_core::report_io::MAX_REPORT_BYTES)?;
    let names = ["wall", "thunks", "fncalls", "alloc"];
    let metrics = names.iter().map(|n| nix_evalcost_core::metric::find(n).map_err(|e| anyhow!(e))).collect::<Result<Vec<_>>>()?;
    let options = nix_evalcost_core::merge::MergeOptions { metrics, allow_mixed: true, ..Default::default() };
    let merged = merge_report(&report, &name, &options);
    let flake = report.meta.flake.as_ref().map_or("(no flake)".to_string(), |f| f.original_ref.clone());
    let page = nix_evalcost_core::render::html::merged_page(&merged, &format!("nix-evalcost: {flake}, evaluation {id}"));
    let flamegraphs = if report.stacks.is_some() { draw_flamegraphs(&report)? } else { Vec::new() };
    let svgs: Vec<(String, Vec<u8>)> = flamegraphs.into_iter().map(|(metric, svg)| (format!("flamegraph: {metric}"), svg)).collect();
    Ok(nix_evalcost_core::render::html::render(&page, &svgs))
}
