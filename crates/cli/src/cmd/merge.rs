//! `nix-evalcost merge SHARD... -o REPORT`: joins the reports of a split walk (`profile --shard
//! I/N`, one per CI job) into one report, as if one process had walked every output.

use crate::cmd::inputs;
use crate::BadInput;
use anyhow::Result;
use nix_evalcost_core::join::{join_shards, JoinOptions};
use nix_evalcost_core::report::Report;
use nix_evalcost_core::report_io::{read_report, write_report};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct MergeArgs {
    /// The shards' reports: files (.json, .json.gz), directories, or globs.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Where to write the joined report (`.json`, or `.json.gz` to gzip it).
    #[arg(short, long, default_value = "evalcost-report.json")]
    output: PathBuf,
    /// Join even if some shards are missing (the report is marked incomplete).
    #[arg(long)]
    allow_missing: bool,
}

pub fn run(args: MergeArgs) -> Result<i32> {
    let joined = read_and_join(&args.inputs, args.allow_missing)?;
    write_report(&args.output, &joined)?;
    let missing = if joined.meta.complete { String::new() } else { " (incomplete: a shard is missing or was interrupted)".to_string() };
    eprintln!(
        "joined {} shards, {} nodes{missing}: report written to {}",
        joined.meta.parts.len(),
        joined.nodes.len(),
        args.output.display()
    );
    Ok(0)
}

/// Reads the shards' reports named by `inputs` and joins them.
pub fn read_and_join(inputs: &[PathBuf], allow_missing: bool) -> Result<Report> {
    let files = inputs::expand(inputs)?;
    let shards = files.into_iter().map(|f| read_report(&f).map(|r| (f, r))).collect::<Result<Vec<_>, _>>()?;
    join_shards(shards, JoinOptions { allow_missing }).map_err(|e| BadInput(e.to_string()).into())
}
