//! `nix-evalcost flamegraph`: attribute-path flamegraphs of reports, plain or differential.

use crate::cmd::inputs;
use crate::{parse_metric, BadInput, OutputArgs};
use nix_evalcost_core::metric::Metric;
use crate::svg::{self, SvgOptions};
use nix_evalcost_core::render::flamegraph;
use nix_evalcost_core::report::Report;
use nix_evalcost_core::report_io::read_report;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct FlamegraphArgs {
    /// Reports (files, directories, globs); their mean cost per run is drawn.
    #[arg(required_unless_present = "diff")]
    inputs: Vec<PathBuf>,
    /// Differential flamegraph: BASE and NEW are each a report, directory or glob. Frames of NEW
    /// are red where they cost more than in BASE, blue where they cost less.
    #[arg(long, num_args = 2, value_names = ["BASE", "NEW"], conflicts_with = "inputs")]
    diff: Option<Vec<PathBuf>>,
    #[arg(long, default_value = "wall", value_parser = parse_metric, help = crate::metric_help("The metric frames are sized by"))]
    metric: &'static Metric,
    /// Print folded stacks (flamegraph.pl, inferno, speedscope) instead of an SVG.
    #[arg(long)]
    folded: bool,
    /// Width of the SVG in pixels.
    #[arg(long, default_value_t = 1600)]
    width: usize,
    #[command(flatten)]
    output: OutputArgs,
}

fn load(input: &[PathBuf]) -> anyhow::Result<Vec<Report>> {
    let files = inputs::expand(input)?;
    Ok(files.iter().map(|f| read_report(f)).collect::<Result<_, _>>()?)
}

pub fn run(args: FlamegraphArgs) -> anyhow::Result<i32> {
    if !args.metric.is_additive() {
        return Err(BadInput(format!("--metric {} is a gauge, not a cost: a flamegraph needs a cost that adds up", args.metric.name)).into());
    }
    let options = |reports: &[Report], subtitle: Option<String>| SvgOptions {
        title: flamegraph::title(reports, args.metric),
        subtitle,
        metric: args.metric,
        width: args.width,
    };
    let svg = match &args.diff {
        Some(pair) => {
            if args.folded {
                return Err(BadInput("--folded prints one profile; a differential is drawn as an SVG".into()).into());
            }
            let (base, new) = (load(&pair[..1])?, load(&pair[1..])?);
            let subtitle = format!(
                "{} → {}: red grew, blue shrank (means of {} and {} runs)",
                pair[0].display(),
                pair[1].display(),
                base.len(),
                new.len()
            );
            let (before, after) = (flamegraph::folded(&base, args.metric), flamegraph::folded(&new, args.metric));
            // (Not pruned: a frame too narrow in one set may be what grew in the other.)
            svg::diff_svg(&before, &after, &options(&new, Some(nix_evalcost_core::attrpath::sanitize_text(&subtitle))))?
        }
        None => {
            let reports = load(&args.inputs)?;
            if args.folded {
                let lines = flamegraph::folded(&reports, args.metric);
                args.output.emit(&lines.iter().map(|l| format!("{l}\n")).collect::<String>())?;
                return Ok(0);
            }
            // Calls too narrow to see are folded into their callers before drawing.
            let lines = flamegraph::folded_above(&reports, args.metric, svg::INVISIBLE);
            let subtitle = (reports.len() > 1).then(|| format!("mean of {} runs", reports.len()));
            svg::svg(&lines, &options(&reports, subtitle))?
        }
    };
    args.output.emit(&String::from_utf8(svg)?)?;
    Ok(0)
}
