//! The `nix-evalcost` command: argument parsing and dispatch. Each subcommand has its module in
//! `cmd/`; running `nix` with the plugin is [`nixrun`]; everything else is the core's
//! (`nix_evalcost_core`).

mod cmd {
    pub mod bench;
    pub mod compare;
    pub mod doctor;
    pub mod flamegraph;
    pub mod functions;
    pub mod graph;
    pub mod history;
    pub mod info;
    pub mod inputs;
    pub mod isolate;
    pub mod merge;
    pub mod parallel;
    pub mod profile;
    pub mod report;
}
pub mod nixrun;
mod serve;
mod svg;

use cmd::{bench, compare, doctor, flamegraph, functions, graph, history, info, merge, profile, report};

use nix_evalcost_core::merge::MergeOptions;
use nix_evalcost_core::metric::{self, Metric};
use nix_evalcost_core::pathglob::PathGlob;
use nix_evalcost_core::render::table::TableOptions;
use nix_evalcost_core::stats::Stat;
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
    /// Join the reports of a split walk (`profile --shard I/N` on several machines) into one.
    Merge(merge::MergeArgs),
    /// Show one report's walked output tree with its costs, like `nix flake show`.
    Graph(graph::GraphArgs),
    /// Show what is in reports: meta, phases, totals, errors.
    Info(info::InfoArgs),
    /// Draw a flamegraph (SVG or folded stacks) of reports, or the difference between two sets.
    Flamegraph(flamegraph::FlamegraphArgs),
    /// Tables of reports' call stacks (`profile --stacks`) per function or per file, with self
    /// and total costs; export to speedscope.
    Functions(functions::FunctionsArgs),
    /// Compare two sets of reports (before and after a change), per output; gate with --fail-on.
    Compare(compare::CompareArgs),
    /// Profile two flake refs (alternating runs) and compare them: the one-command CI check.
    Bench(bench::BenchArgs),
    /// Check this machine: which nix, its version, whether it loads the plugin, what to do.
    Doctor(doctor::DoctorArgs),
    /// Remember every evaluation (SQLite, or PostgreSQL for a fleet): trends, predictions, drift alerts.
    History(history::HistoryArgs),
    /// Serve the history to a team: a board, a JSON API, authenticated ingest, /metrics.
    Serve(serve::ServeArgs),
}

/// Which costs a table shows and how it is ranked (shared by `profile` and `report`).
#[derive(clap::Args, Clone)]
pub struct SelectArgs {
    #[arg(long, default_value = "wall", value_parser = parse_metric, help = metric_help("Metric to rank by"))]
    pub(crate) metric: &'static Metric,
    /// Further metrics to show, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "wall,thunks,fncalls,alloc", value_parser = parse_metric)]
    columns: Vec<&'static Metric>,
    /// Rows to show.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Statistic across runs to rank by.
    #[arg(long, default_value = "median", value_parser = choice(&Stat::ALL, Stat::name))]
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

pub(crate) fn parse_metric_name(name: &str) -> Result<&'static Metric, String> {
    parse_metric(name)
}

/// `what`, and every metric's name: the list is the core's one table, never written by hand.
fn metric_help(what: &str) -> String {
    format!("{what}: {}", metric::names().join(", "))
}

/// A value parser for a core enum (the core does not depend on clap): its names are the
/// possible values, listed in --help and in errors.
fn choice<T: Copy + Send + Sync + 'static>(
    all: &'static [T],
    name: fn(T) -> &'static str,
) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(all.iter().map(|&v| name(v)))
        .map(move |s| *all.iter().find(|&&v| name(v) == s).expect("clap accepted one of the possible values"))
}

impl SelectArgs {
    fn merge_options(&self, allow_mixed: bool) -> MergeOptions {
        let mut metrics = vec![self.metric];
        metrics.extend(self.columns.iter().filter(|m| m.name != self.metric.name));
        MergeOptions { metrics, inclusive: self.inclusive, depth: self.depth, filters: self.filter.clone(), allow_mixed, group_by: None }
    }

    /// The summary table `profile` prints of the report at `file`, on this terminal.
    fn summary_spec(&self, file: &std::path::Path) -> nix_evalcost_core::summary::SummarySpec {
        nix_evalcost_core::summary::SummarySpec::new(&self.merge_options(true), self.sort, self.top, &table_options(), file)
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
            Some(path) => Ok(nix_evalcost_core::report_io::write_atomically(path, |w| w.write_all(text.as_bytes()))?),
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

/// Bad input given by the user (not a failure of Nix or of the tool): exit status 2. Reports
/// and merges of the user's files that fail ([`ReportError`], [`MergeError`]) are bad input too;
/// every other failure (writing output, running nix, a report the plugin just wrote) exits 1.
///
/// [`ReportError`]: nix_evalcost_core::report_io::ReportError
/// [`MergeError`]: nix_evalcost_core::merge::MergeError
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

pub const EXIT_BAD_INPUT: i32 = 2;
/// The tool, Nix or the machine failed.
pub const EXIT_FAILURE: i32 = 1;

/// `--cost exclusive|standalone|shared` (shared by `report`, `graph`, `compare`).
#[derive(clap::Args, Clone, Copy)]
pub struct CostArgs {
    /// Which cost of each output to show: `exclusive` (in the walk), `standalone` (evaluated
    /// alone) or `shared` (standalone minus exclusive: the work it shares with others).
    /// `standalone` and `shared` need a report made with `profile --isolate`.
    #[arg(long = "cost", default_value = "exclusive", value_parser = choice(&nix_evalcost_core::isolate::CostView::ALL, nix_evalcost_core::isolate::CostView::name))]
    pub view: nix_evalcost_core::isolate::CostView,
}

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
        Command::Merge(args) => merge::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Info(args) => info::run(args),
        Command::Flamegraph(args) => flamegraph::run(args),
        Command::Functions(args) => functions::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::History(args) => history::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(status) => status,
        Err(e) => {
            let message = nix_evalcost_core::attrpath::sanitize_text(&format!("{e:#}")).replace('\n', " ");
            eprintln!("nix-evalcost: error: {message}");
            if is_bad_input(&e) { EXIT_BAD_INPUT } else { EXIT_FAILURE }
        }
    }
}

fn is_bad_input(e: &anyhow::Error) -> bool {
    e.downcast_ref::<nix_evalcost_core::report_io::ReportError>().is_some()

        || e.downcast_ref::<nix_evalcost_core::merge::MergeError>().is_some()
        || e.downcast_ref::<BadInput>().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_lists_every_metric() {
        let mut cli = Cli::command();
        for command in ["report", "profile", "graph", "flamegraph", "compare"] {
            let mut sub = cli.find_subcommand_mut(command).unwrap().clone().term_width(0);
            let help = sub.render_long_help().to_string();
            assert!(help.contains(&metric::names().join(", ")), "{command} --help lacks the metric list:\n{help}");
        }
        assert!(metric::names().contains(&"calls"));
    }

    #[test]
    fn write_failures_are_not_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputArgs { output: Some(dir.path().join("missing-dir/out.txt")) };
        let err = out.emit("x").unwrap_err();
        assert!(!is_bad_input(&err), "{err:#}");
        assert!(err.to_string().starts_with("cannot write"), "{err:#}");
        let missing = nix_evalcost_core::report_io::read_report(&dir.path().join("nope.json")).unwrap_err();
        assert!(is_bad_input(&missing.into()));
    }
}
