//! `nix-evalcost report INPUT...`: merge reports into per-path statistics, in one format.

use crate::cmd::inputs;
use crate::{choice, table_options, OutputArgs, SelectArgs};
use nix_evalcost_core::merge::{merge_report, GroupBy, MergeOptions};
use nix_evalcost_core::render::{self, View};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Csv,
    Json,
    Openmetrics,
    /// One self-contained page: sortable table, output tree, no network.
    Html,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Reports: files (.json, .json.gz), directories, or globs.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[command(flatten)]
    select: SelectArgs,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Merge reports of different flake revisions, system selections or modes anyway.
    #[arg(long)]
    allow_mixed: bool,
    /// One row per command or per flake, of whole-process costs (passive reports of a day's
    /// commands, say). Reports of anything merge then.
    #[arg(long, value_parser = choice(&GroupBy::ALL, GroupBy::name))]
    group_by: Option<GroupBy>,
    #[command(flatten)]
    cost: crate::CostArgs,
    /// With the shards of a split walk: join them even if some are missing.
    #[arg(long)]
    allow_missing: bool,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(args: ReportArgs) -> anyhow::Result<i32> {
    let files = inputs::expand(&args.inputs)?;
    let options = MergeOptions { group_by: args.group_by, ..args.select.merge_options(args.allow_mixed) };
    let mut merged = inputs::merge_viewed(&files, &options, args.cost.view)?;
    if merged.runs.iter().any(|r| r.meta.shard.is_some()) {
        // The shards of one split walk are parts of one run, not runs of their own.
        let joined = crate::cmd::merge::read_and_join(&files, args.allow_missing)?;
        let name = Path::new("(joined shards)");
        let viewed = nix_evalcost_core::isolate::checked_view(&joined, args.cost.view, "the joined shards").map_err(crate::BadInput)?;
        merged = merge_report(&viewed, name, &options);
    }
    let view = View::new(&merged, args.select.sort, args.select.top);
    let text = match args.format {
        Format::Table => {
            let table = render::table::render(&view, &table_options());
            format!("{}\n{table}", render::table::merged_summary(&view))
        }
        Format::Markdown => render::markdown::render(&view),
        Format::Csv => render::csv::render(&view),
        Format::Json => render::json::render(&view),
        Format::Openmetrics => render::openmetrics::render(&view),
        Format::Html => render::html::render(&render::html::merged_page(&merged, &format!("nix-evalcost: {}", view.flake())), &[]),
    };
    args.output.emit(&text)?;
    Ok(0)
}
