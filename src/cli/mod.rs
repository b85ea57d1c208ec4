//! The `nix-evalcost` command: argument parsing and dispatch. Each subcommand has its module.

mod flamegraph;
mod graph;
mod info;
mod inputs;
mod profile;
mod report;

use crate::merge::MergeOptions;
use crate::metric::{self, Metric};
use crate::pathglob::PathGlob;
use crate::render::table::TableOptions;
use crate::stats::Stat;
use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "nix-evalcost", version, about = "What evaluating each output of a Nix flake costs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate a flake's outputs in Nix with the plugin loaded and report what each cost.
    Profile(profile::ProfileArgs),
    /// Merge reports (files, directories, globs) into a cost table per attribute path.
    Report(report::ReportArgs),
    /// Show one report's walked output tree with its costs, like `nix flake show`.
    Graph(graph::GraphArgs),
    /// Show what is in reports: meta, phases, totals, errors.
    Info(info::InfoArgs),
    /// Draw a flamegraph (SVG or folded stacks) of reports, or the difference between two sets.
    Flamegraph(flamegraph::FlamegraphArgs),
}

/// Which costs a table shows and how it is ranked (shared by `profile` and `report`).
#[derive(clap::Args, Clone)]
pub struct SelectArgs {
    /// Metric to rank by: wall, cpu, thunks, fncalls, primops, lookups, values, envs,
    /// attrsets, listelems, updates, alloc, nixbytes, values-bytes, envs-bytes,
    /// attrsets-bytes, lists-bytes, gc-cycles, heap, rss, peak-rss.
    #[arg(long, default_value = "wall", value_parser = parse_metric)]
    metric: &'static Metric,
    /// Further metrics to show, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "wall,thunks,fncalls,alloc", value_parser = parse_metric)]
    columns: Vec<&'static Metric>,
    /// Rows to show.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Statistic across runs to rank by.
    #[arg(long, value_enum, default_value = "median")]
    sort: Stat,
    /// Inclusive costs: a node and everything below it.
    #[arg(long)]
    inclusive: bool,
    /// Show paths down to this depth, with everything below folded into them (inclusive).
    #[arg(long)]
    depth: Option<usize>,
    /// Only paths matching this glob, e.g. 'packages.*.*' or 'legacyPackages.**' (repeatable).
    #[arg(long, value_parser = PathGlob::parse)]
    filter: Vec<PathGlob>,
}

fn parse_metric(name: &str) -> Result<&'static Metric, String> {
    metric::find(name)
}

impl SelectArgs {
    fn merge_options(&self, allow_mixed: bool) -> MergeOptions {
        let mut metrics = vec![self.metric];
        metrics.extend(self.columns.iter().filter(|m| m.name != self.metric.name));
        MergeOptions { metrics, inclusive: self.inclusive, depth: self.depth, filters: self.filter.clone(), allow_mixed }
    }
}

/// Table layout for this terminal (or none).
fn table_options() -> TableOptions {
    let tty = std::io::stdout().is_terminal();
    // Only a terminal has a width; piped output keeps every path whole.
    let width = if tty { console::Term::stdout().size_checked().map_or(120, |(_, w)| w as usize) } else { usize::MAX };
    TableOptions { width, color: tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
}

/// Where output goes: stdout, or a file written atomically (never half-written).
#[derive(clap::Args, Clone)]
pub struct OutputArgs {
    /// Write to this file instead of stdout (atomically).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

impl OutputArgs {
    fn emit(&self, text: &str) -> anyhow::Result<()> {
        match &self.output {
            Some(path) => Ok(crate::report_io::write_atomically(path, |w| w.write_all(text.as_bytes()))?),
            None => {
                let mut out = std::io::stdout().lock();
                // A closed pipe (`| head`) is not an error worth reporting.
                match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// clap's messages span lines (usage, hints); keep what says what is wrong, on one line.
fn one_line_usage_error(message: &str) -> String {
    let kept: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .collect();
    kept.join(" ") + " (see --help)"
}

/// Bad input given by the user (not a failure of Nix or of the tool): exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

pub const EXIT_BAD_INPUT: i32 = 2;

/// Runs the command line; returns the process exit status. Errors are printed as one line.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            eprintln!("nix-evalcost: {}", one_line_usage_error(&e.to_string()));
            return EXIT_BAD_INPUT;
        }
    };
    let result = match cli.command {
        Command::Profile(args) => profile::run(args),
        Command::Report(args) => report::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Info(args) => info::run(args),
        Command::Flamegraph(args) => flamegraph::run(args),
    };
    match result {
        Ok(status) => status,
        Err(e) => {
            let message = crate::attrpath::sanitize_text(&format!("{e:#}")).replace('\n', " ");
            eprintln!("nix-evalcost: error: {message}");
            let bad_input = e.downcast_ref::<crate::report_io::ReportError>().is_some()
                || e.downcast_ref::<crate::merge::MergeError>().is_some()
                || e.downcast_ref::<BadInput>().is_some();
            if bad_input { EXIT_BAD_INPUT } else { 1 }
        }
    }
}
