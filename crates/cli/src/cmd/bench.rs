//! `nix-evalcost bench BASE_REF NEW_REF --runs N`: profiles two flake refs, alternating the
//! runs (so that a machine getting busier slows both alike), then compares them as `compare`
//! does. The one-command CI check.

use super::compare::{compare_files, CompareOptions};
use super::profile::{exit_status_for, stopped, walk_to, Finished, WalkArgs, Walked};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The flake before the change, e.g. `git+file:.?rev=<base>`.
    base_ref: String,
    /// The flake after the change, e.g. `.`.
    new_ref: String,
    /// Runs of each ref (at least 2 for a test of noisy metrics; 5 or more for a useful one).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    /// Where the reports go: DIR/base/run-K.json and DIR/new/run-K.json (emptied first).
    #[arg(long, default_value = "evalcost-bench")]
    dir: PathBuf,
    #[command(flatten)]
    compare: CompareOptions,
    #[command(flatten)]
    walk: WalkArgs,
}

pub fn run(args: BenchArgs) -> Result<i32> {
    let sides = [("base", args.base_ref.as_str()), ("new", args.new_ref.as_str())];
    let mut files: [Vec<PathBuf>; 2] = [Vec::new(), Vec::new()];
    for (side, _) in sides {
        prepare(&args.dir.join(side))?;
    }
    for k in 0..args.runs {
        // Alternate who goes first: base, new; new, base; …
        let order: [usize; 2] = if k % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (side, flake) = sides[i];
            let output = std::env::current_dir()?.join(&args.dir).join(side).join(format!("run-{k}.json"));
            eprintln!("bench: {side} run {}/{}: {flake}", k + 1, args.runs);
            match walk_to(&args.walk, flake, &output, None)? {
                Walked::Done(Finished { report, .. }) => {
                    // Read back: no summary was asked for.
                    let errors = report.as_ref().map_or(0, |r| r.error_count());
                    if errors > 0 && k == 0 {
                        eprintln!("bench: {side}: {} failed to evaluate (see the comparison)", nix_evalcost_core::units::plural(errors, "output"));
                    }
                    files[i].push(output);
                }
                Walked::Partial(_, signal) | Walked::Stopped(signal) => {
                    eprintln!("nix-evalcost: bench {}; the reports so far are in {}", stopped(signal), args.dir.display());
                    return Ok(exit_status_for(signal));
                }
            }
        }
    }
    compare_files(&files[0], &files[1], &args.compare)
}

/// An empty directory for one side's reports (earlier runs' reports would mix revisions).
fn prepare(dir: &Path) -> Result<()> {
    if dir.exists() {
        let stray = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).find(|e| !e.file_name().to_string_lossy().ends_with(".json"));
        if let Some(stray) = stray {
            bail!("{} holds {}, not only reports; give bench its own --dir", dir.display(), stray.file_name().to_string_lossy());
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}
