//! `nix-evalcost graph REPORT`: the output tree of one report with its costs.

use crate::{parse_metric, OutputArgs};
use nix_evalcost_core::metric::Metric;
use nix_evalcost_core::render::graph::{self, GraphFormat, GraphOptions};
use nix_evalcost_core::report_io::read_report;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct GraphArgs {
    /// The report (.json or .json.gz).
    report: PathBuf,
    #[arg(long, default_value = "wall", value_parser = parse_metric, help = crate::metric_help("Metric of the cost columns"))]
    metric: &'static Metric,
    /// Deepest level to show (1: the top-level outputs).
    #[arg(long)]
    depth: Option<usize>,
    /// Fold children whose inclusive share of the total is below P percent into one line.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    min_share: f64,
    #[arg(long, default_value = "text", value_parser = crate::choice(&GraphFormat::ALL, GraphFormat::name))]
    format: GraphFormat,
    /// Draw the tree with ASCII characters [default when the locale is not UTF-8].
    #[arg(long)]
    ascii: bool,
    #[command(flatten)]
    cost: crate::CostArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(args: GraphArgs) -> anyhow::Result<i32> {
    if !(0.0..=100.0).contains(&args.min_share) {
        return Err(crate::BadInput(format!("--min-share takes a percentage from 0 to 100, not {}", args.min_share)).into());
    }
    let report = read_report(&args.report)?;
    let report = nix_evalcost_core::isolate::checked_view(&report, args.cost.view, &args.report.display().to_string()).map_err(crate::BadInput)?;
    let opts = GraphOptions {
        metric: args.metric,
        depth: args.depth,
        min_share: args.min_share / 100.0,
        ascii: args.ascii || !utf8_locale(),
    };
    args.output.emit(&graph::render(&report, args.format, &opts))?;
    Ok(0)
}

fn utf8_locale() -> bool {
    let locale = ["LC_ALL", "LC_CTYPE", "LANG"].iter().find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
    locale.is_none_or(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("utf-8") || l.contains("utf8")
    })
}
