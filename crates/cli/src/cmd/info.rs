//! `nix-evalcost info REPORT...`: what a report holds (rendered by the core's `render::info`).

use crate::OutputArgs;
use nix_evalcost_core::render::info;
use nix_evalcost_core::report_io::read_report;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct InfoArgs {
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(args: InfoArgs) -> anyhow::Result<i32> {
    let mut parts = Vec::with_capacity(args.reports.len());
    for path in &args.reports {
        parts.push(info::render(&path.display().to_string(), &read_report(path)?));
    }
    args.output.emit(&parts.join("\n"))?;
    Ok(0)
}
