//! The `nix-evalcost` command: argument parsing and dispatch. Each subcommand has its module.

mod profile;
mod report;

use crate::metric::{self, Metric};
use crate::render::table::TableOptions;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;

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
    /// Print the cost table of one or more reports.
    Report(report::ReportArgs),
}

/// How a cost table is chosen and printed (shared by `profile` and `report`).
#[derive(clap::Args)]
pub struct TableArgs {
    /// Rows to show.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Metric to rank by: wall, cpu, thunks, fncalls, primops, lookups, values, envs, attrsets,
    /// listelems, updates, alloc, nixbytes, values-bytes, envs-bytes, attrsets-bytes,
    /// lists-bytes, gc-cycles, heap, rss, peak-rss.
    #[arg(long, default_value = "wall", value_parser = parse_metric)]
    metric: &'static Metric,
    /// Rank by inclusive cost (a node and everything below it).
    #[arg(long)]
    inclusive: bool,
}

fn parse_metric(name: &str) -> Result<&'static Metric, String> {
    metric::find(name)
}

impl TableArgs {
    fn options(&self) -> TableOptions {
        let stdout = std::io::stdout();
        let tty = stdout.is_terminal();
        let width = if tty { console::Term::stdout().size_checked().map_or(120, |(_, w)| w as usize) } else { 160 };
        TableOptions {
            metric: self.metric,
            top: self.top,
            inclusive: self.inclusive,
            width,
            color: tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }
}

/// Exit status for bad input (unreadable or invalid reports, bad arguments).
pub const EXIT_BAD_INPUT: i32 = 2;

/// Runs the command line; returns the process exit status. Errors are printed as one line.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Profile(args) => profile::run(args),
        Command::Report(args) => report::run(args),
    };
    match result {
        Ok(status) => status,
        Err(e) => {
            let message = crate::attrpath::sanitize_text(&format!("{e:#}")).replace('\n', " ");
            eprintln!("nix-evalcost: error: {message}");
            if e.downcast_ref::<crate::report_io::ReportError>().is_some() {
                EXIT_BAD_INPUT
            } else {
                1
            }
        }
    }
}
