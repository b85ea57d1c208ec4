//! Turning `report` arguments into report files: files, directories (searched recursively for
//! `*.json` and `*.json.gz`) and globs (for shells that pass them through unexpanded).

use crate::BadInput;
use std::path::{Path, PathBuf};

pub fn expand(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, BadInput> {
    let mut files = Vec::new();
    for input in inputs {
        let before = files.len();
        if input.is_dir() {
            collect_dir(input, &mut files).map_err(|e| BadInput(format!("{}: {e}", input.display())))?;
        } else if input.exists() {
            files.push(input.clone());
        } else {
            let pattern = input.to_string_lossy();
            let matches = glob::glob(&pattern).map_err(|e| BadInput(format!("{pattern}: {e}")))?;
            files.extend(matches.filter_map(Result::ok).filter(|p| p.is_file()));
            if files.len() == before {
                return Err(BadInput(format!("{pattern}: no such file, and no report matches it as a glob")));
            }
        }
        if files.len() == before {
            return Err(BadInput(format!("{}: no reports (*.json, *.json.gz) in this directory", input.display())));
        }
    }
    Ok(files)
}

fn is_report_name(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    !name.starts_with('.') && (name.ends_with(".json") || name.ends_with(".json.gz"))
}

fn collect_dir(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_dir(&path, files)?;
        } else if is_report_name(&path) {
            files.push(path);
        }
    }
    Ok(())
}

/// Merges `files` as `merge_files` does, seeing each report's costs through `view`
/// (`--cost standalone|shared` needs reports made with `profile --isolate`).
pub fn merge_viewed(
    files: &[PathBuf],
    options: &nix_evalcost_core::merge::MergeOptions,
    view: nix_evalcost_core::isolate::CostView,
) -> anyhow::Result<nix_evalcost_core::merge::Merged> {
    use nix_evalcost_core::isolate::{checked_view, CostView};
    if view == CostView::Exclusive {
        return Ok(nix_evalcost_core::merge::merge_files(files, options)?);
    }
    let mut viewed = Vec::with_capacity(files.len());
    for file in files {
        let report = nix_evalcost_core::report_io::read_report(file)?;
        viewed.push((file.clone(), checked_view(&report, view, &file.display().to_string()).map_err(BadInput)?));
    }
    Ok(nix_evalcost_core::merge::merge_reports(&viewed, options)?)
}
