//! `nix-evalcost report FILE...`: the cost table of each report.

use super::TableArgs;
use crate::render::table;
use crate::report_io::read_report;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Report files (.json or .json.gz).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    table: TableArgs,
}

pub fn run(args: ReportArgs) -> anyhow::Result<i32> {
    // Read everything first: a bad file fails the command before anything is printed.
    let reports = args.files.iter().map(|f| read_report(f)).collect::<Result<Vec<_>, _>>()?;
    let options = args.table.options();
    for (i, (file, report)) in args.files.iter().zip(&reports).enumerate() {
        if i > 0 {
            println!();
        }
        if reports.len() > 1 {
            println!("== {}", crate::attrpath::sanitize_text(&file.display().to_string()));
        }
        println!("{}", table::summary(report));
        print!("{}", table::render(report, &options));
    }
    Ok(0)
}
