//! `nix-evalcost compare BASE NEW`: what got more (or less) expensive, per output and in total,
//! and `--fail-on` gates for CI (exit 1 when a rule breaks).

use crate::cmd::inputs;
use crate::{parse_metric, BadInput, OutputArgs};
use nix_evalcost_core::compare::compare;
use nix_evalcost_core::gate::{self, Rule};
use nix_evalcost_core::merge::MergeOptions;
use nix_evalcost_core::metric::Metric;
use nix_evalcost_core::render;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Json,
    /// One self-contained page: regressions first, the output tree, a differential flamegraph.
    Html,
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The reports before the change: a file, a directory of reports, or a glob.
    base: PathBuf,
    /// The reports after the change, likewise.
    new: PathBuf,
    #[command(flatten)]
    options: CompareOptions,
}

/// How a comparison is made and shown (shared by `compare` and `bench`).
#[derive(clap::Args)]
pub struct CompareOptions {
    #[arg(long, value_delimiter = ',', default_value = "fncalls,thunks,alloc,wall,cpu,peak-rss", value_parser = parse_metric,
          help = crate::metric_help("Metrics to compare, comma-separated (the first ranks the changed outputs)"))]
    metrics: Vec<&'static Metric>,
    /// Fail (exit 1) when a rule breaks, e.g. `fncalls:+5%`, `alloc:+64MiB`,
    /// `wall:+10%@p<0.05`, `packages.*.*:thunks:+1%` (repeatable; see docs/compare.md).
    #[arg(long = "fail-on", value_name = "RULE", value_parser = Rule::parse)]
    fail_on: Vec<Rule>,
    /// Confidence level of the shift intervals of noisy metrics.
    #[arg(long, default_value_t = 0.95, value_parser = parse_confidence)]
    confidence: f64,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    #[command(flatten)]
    cost: crate::CostArgs,
    #[command(flatten)]
    output: OutputArgs,
}

fn parse_confidence(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(c) if c > 0.0 && c < 1.0 => Ok(c),
        _ => Err(format!("'{text}' is not a confidence level between 0 and 1 (e.g. 0.95)")),
    }
}

pub fn run(args: CompareArgs) -> anyhow::Result<i32> {
    let base = inputs::expand(std::slice::from_ref(&args.base))?;
    let new = inputs::expand(std::slice::from_ref(&args.new))?;
    compare_files(&base, &new, &args.options)
}

/// Compares two sets of report files, prints the comparison, and returns the exit status: 1
/// when a rule broke.
pub fn compare_files(base: &[PathBuf], new: &[PathBuf], args: &CompareOptions) -> anyhow::Result<i32> {
    // The rules' metrics are compared too, after the ones asked for.
    let mut metrics = args.metrics.clone();
    for rule in &args.fail_on {
        if !metrics.iter().any(|m| m.name == rule.metric.name) {
            metrics.push(rule.metric);
        }
    }
    let opts = MergeOptions { metrics, ..MergeOptions::default() };
    let (base_files, new_files) = (base, new);
    let base = super::inputs::merge_viewed(base_files, &opts, args.cost.view)?;
    let new = super::inputs::merge_viewed(new_files, &opts, args.cost.view)?;
    gate::check_testable(&args.fail_on, base.runs.len(), new.runs.len()).map_err(BadInput)?;
    let comparison = compare(&base, &new, args.confidence);
    let violations = gate::violations(&args.fail_on, &comparison);
    let text = match args.format {
        Format::Table => render::compare::table(&comparison, &violations),
        Format::Markdown => render::compare::markdown(&comparison, &violations),
        Format::Json => render::compare::json(&comparison, &violations),
        Format::Html => html(&comparison, &violations, base_files, new_files)?,
    };
    args.output.emit(&text)?;
    if violations.is_empty() {
        Ok(0)
    } else {
        eprintln!("nix-evalcost: {} broken", nix_evalcost_core::units::plural(violations.len(), "rule"));
        Ok(crate::EXIT_FAILURE)
    }
}

/// The comparison as a page, with a differential flamegraph of the first metric (when it adds
/// up) drawn from the full reports.
fn html(c: &nix_evalcost_core::compare::Comparison, violations: &[gate::Violation], base: &[PathBuf], new: &[PathBuf]) -> anyhow::Result<String> {
    use nix_evalcost_core::render::flamegraph::{folded, title};
    use nix_evalcost_core::report_io::read_report;
    let broken: Vec<String> = violations
        .iter()
        .map(|v| format!("{} at {}", v.rule.text, v.path.map_or("totals".into(), nix_evalcost_core::attrpath::display_path)))
        .collect();
    let page = render::html::comparison_page(c, "nix-evalcost: comparison", &broken);
    let metric = c.metrics[0];
    let mut svgs = Vec::new();
    if metric.is_additive() {
        let load = |files: &[PathBuf]| files.iter().map(|f| read_report(f)).collect::<Result<Vec<_>, _>>();
        let (before, after) = (load(base)?, load(new)?);
        let options = crate::svg::SvgOptions { title: title(&after, metric), subtitle: Some("NEW against BASE: red grew, blue shrank".into()), metric, width: 1600 };
        let svg = crate::svg::diff_svg(&folded(&before, metric), &folded(&after, metric), &options)?;
        svgs.push((format!("differential flamegraph: {}", metric.name), svg));
    }
    Ok(render::html::render(&page, &svgs))
}
