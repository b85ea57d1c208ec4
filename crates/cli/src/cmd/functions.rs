//! `nix-evalcost functions REPORT...`: the call stacks of reports (`profile --stacks`) as
//! tables per function or per file, and their export to speedscope.

use crate::cmd::inputs;
use crate::{choice, parse_metric, BadInput, OutputArgs};
use nix_evalcost_core::functions::{add_rows, speedscope, Grouping, Row};
use nix_evalcost_core::metric::Metric;
use nix_evalcost_core::render::functions::{self as render, FunctionsView};
use nix_evalcost_core::report_io::{read_report, write_atomically};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Csv,
    Json,
}

/// What rows are ranked by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sort {
    /// --metric while the group's frames are innermost.
    #[value(name = "self")]
    SelfCost,
    /// --metric with everything the group's frames called.
    Total,
    /// Times the group's frames were called.
    Calls,
}

#[derive(clap::Args)]
pub struct FunctionsArgs {
    /// Reports with call stacks (`profile --stacks`): files, directories or globs. Their
    /// stacks add up.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// One row per function (the frame: the called function on Nix >= 2.30, the called function per call site on
    /// 2.26) or per file.
    #[arg(long, default_value = "function", value_parser = choice(&Grouping::ALL, Grouping::name))]
    by: Grouping,
    #[arg(long, default_value = "wall", value_parser = parse_metric, help = crate::metric_help("The cost to rank by"))]
    metric: &'static Metric,
    #[arg(long, value_enum, default_value = "self")]
    sort: Sort,
    /// Further costs to show, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "wall,alloc", value_parser = parse_metric)]
    columns: Vec<&'static Metric>,
    /// Rows to show.
    #[arg(long, default_value_t = 30)]
    top: usize,
    /// Only rows whose function or file matches this glob (`*` any text, `?` one character;
    /// repeatable).
    #[arg(long)]
    filter: Vec<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Also write the stacks in speedscope's format here (open it at speedscope.app, offline
    /// too): one profile per shown cost. Takes one report.
    #[arg(long, value_name = "FILE")]
    speedscope: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(args: FunctionsArgs) -> anyhow::Result<i32> {
    let mut metrics = vec![args.metric];
    metrics.extend(args.columns.iter().copied().filter(|m| m.name != args.metric.name));
    if let Some(gauge) = metrics.iter().find(|m| !m.is_additive()) {
        return Err(BadInput(format!("{} is a gauge, not a cost: stacks carry costs (wall, alloc, fncalls, …)", gauge.name)).into());
    }
    let filters = args
        .filter
        .iter()
        .map(|f| glob::Pattern::new(f).map_err(|e| BadInput(format!("--filter '{f}' is not a glob: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let files = inputs::expand(&args.inputs)?;
    if args.speedscope.is_some() && files.len() > 1 {
        return Err(BadInput("--speedscope takes one report".into()).into());
    }
    let mut rows = rustc_hash::FxHashMap::default();
    let mut sizes = None;
    for file in &files {
        let report = read_report(file)?;
        let Some(stacks) = &report.stacks else {
            return Err(BadInput(format!("{} has no call stacks; profile with --stacks", file.display())).into());
        };
        add_rows(stacks, args.by, &mut rows);
        sizes.get_or_insert(report.sizes);
        if let Some(path) = &args.speedscope {
            let name = file.file_name().map_or_else(|| "report".into(), |n| n.to_string_lossy().into_owned());
            let doc = speedscope::document(&report, &name, &metrics).expect("the report has stacks");
            write_atomically(path, |w| serde_json::to_writer(w, &doc).map_err(std::io::Error::from))?;
        }
    }
    let mut rows: Vec<Row> = rows.into_values().collect();
    let all = rows.len();
    rows.retain(|r| filters.is_empty() || filters.iter().any(|f| f.matches(&r.key)));
    let sizes = sizes.unwrap_or_default();
    let rank = |r: &Row| match args.sort {
        Sort::SelfCost => args.metric.value(&r.self_cost, &Default::default(), &sizes),
        Sort::Total => args.metric.value(&r.total_cost, &Default::default(), &sizes),
        Sort::Calls => r.calls,
    };
    rows.sort_by(|a, b| rank(b).cmp(&rank(a)).then_with(|| a.key.cmp(&b.key)));
    rows.truncate(args.top);
    let view = FunctionsView { grouping: args.by, rows: &rows, metrics: &metrics, sizes, all };
    let text = match args.format {
        Format::Table => render::table(&view),
        Format::Markdown => render::markdown(&view),
        Format::Csv => render::csv(&view),
        Format::Json => render::json(&view),
    };
    args.output.emit(&text)?;
    Ok(0)
}
