//! `profile --isolate`: after the walk, each output (unit) is walked alone in a fresh `nix`
//! (`builtins.evalcostWalk { only = …; }`), N at a time with `-j N`, and its standalone cost is
//! added to the report (`nix_evalcost_core::isolate`).

use super::parallel::Scratch;
use super::profile::WalkArgs;
use crate::nixrun::{self, NixRun, Walk};
use anyhow::Result;
use nix_evalcost_core::cost::Cost;
use nix_evalcost_core::report::{Isolated, Report};
use nix_evalcost_core::report_io::read_report;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Walks each unit of `report` alone and records its standalone cost in `report.isolated`.
/// Returns the stop signal if one stopped it (the outputs isolated so far are kept).
pub fn isolate(args: &WalkArgs, flake: &str, output: &Path, report: &mut Report, jobs: usize) -> Result<Option<i32>> {
    let (plugin, walk) = args.prepare(flake, Default::default())?;
    // Each output alone, whatever part of the flake the walk covered, without call stacks.
    let base = Walk { stacks: false, shard: None, ..walk };
    let scratch = Scratch::new(output)?;
    let units: Vec<(u32, Vec<String>)> =
        report.nodes.iter().filter(|n| nix_evalcost_core::walk_policy::is_unit(&n.path)).map(|n| (n.id, n.path.clone())).collect();
    let bar = super::profile::progress_bar(args.no_progress);
    bar.set_length(units.len() as u64);
    bar.set_message("outputs evaluated alone");
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let stopped_by: Mutex<Option<i32>> = Mutex::new(None);
    let results: Mutex<Vec<Isolated>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                while !stop.load(Ordering::Acquire) {
                    let i = next.fetch_add(1, Ordering::AcqRel);
                    let Some((node, path)) = units.get(i) else { break };
                    let solo = scratch.0.join(format!("alone-{i}.json"));
                    let walk = Walk { report: solo.clone(), only: Some(path.clone()), ..base.clone() };
                    let expression = walk.expression();
                    let nix = NixRun { nix: &args.nix, plugin: &plugin, expression: &expression, extra_args: &args.nix_args };
                    let outcome = nix.run(|_| false, |_| {});
                    match outcome {
                        Ok(o) if o.stopped_by.is_some() => {
                            stopped_by.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(o.stopped_by.unwrap_or(libc::SIGINT));
                            stop.store(true, Ordering::Release);
                        }
                        outcome => {
                            let isolated = standalone(*node, path, &solo, outcome);
                            results.lock().unwrap_or_else(|p| p.into_inner()).push(isolated);
                            bar.inc(1);
                        }
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut isolated = results.into_inner().unwrap_or_else(|p| p.into_inner());
    isolated.sort_by_key(|i| i.node);
    report.isolated = isolated;
    Ok(stopped_by.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// The standalone cost of the unit `path` (node `node` of the shared walk) from the report of
/// its walk alone, or an isolated entry that says why there is none.
fn standalone(node: u32, path: &[String], solo: &Path, outcome: Result<nixrun::NixOutcome>) -> Isolated {
    let failed = |why: String| Isolated { node, standalone: Cost::default(), after: Default::default(), error: Some(why) };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return failed(format!("{e:#}")),
    };
    let report = match read_report(solo) {
        Ok(r) => r,
        Err(_) => {
            let why = match outcome.signal() {
                Some(signal) => format!("nix was killed by {} evaluating it alone", nixrun::signal_name(signal)),
                None => outcome.error.clone().unwrap_or_else(|| outcome.exit_description()),
            };
            return failed(why);
        }
    };
    let Some(alone) = report.nodes.iter().find(|n| n.path == path) else {
        return failed("the walk of it alone did not reach it".to_string());
    };
    let inclusive = report.inclusive_costs();
    Isolated { node, standalone: inclusive[alone.id as usize], after: alone.after, error: None }
}
