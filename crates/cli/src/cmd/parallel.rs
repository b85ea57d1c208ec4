//! `profile -j N`: N worker `nix` processes walk the flake together, handing the units out
//! among themselves as they go (`nix_evalcost_core::workers`), and their reports are joined into
//! one (`nix_evalcost_core::join`).
//!
//! Each of the N slots runs one worker at a time. A worker that went over `--max-memory`
//! finishes its unit and stops; its slot starts a replacement, which takes the units nobody has
//! claimed yet. A worker the kernel kills (out of memory, SIGKILL) loses only the unit it was
//! walking, which its replacement records as an error node; the units it had finished are
//! walked again by the replacement, since their costs died with it. A stop signal (Ctrl-C) reaches every worker,
//! and the partial reports are joined into a partial report.

use super::profile::{Finished, WalkArgs, Walked};
use super::profile::Summarize;
use crate::nixrun::{self, EarlyReport, NixRun, ReadEarly, Walk, WorkerWalk};
use anyhow::{anyhow, bail, Context, Result};
use nix_evalcost_core::join::{join_workers, PartReport};
use nix_evalcost_core::report_io::write_report;
use nix_evalcost_core::workers::SharedClaims;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

/// How a parallel walk runs.
#[derive(Clone, Copy, Debug)]
pub struct Parallel {
    pub jobs: usize,
    pub max_rss: Option<u64>,
}

/// What the slots found, joined at the end.
#[derive(Default)]
struct Outcomes {
    /// Each worker run's report and where it is.
    parts: Vec<(u32, PartReport, PathBuf)>,
    /// The summary table of a sole worker's report, rendered while its nix exited.
    summary: Option<String>,
    /// Where a sole worker wrote the joined report of a complete walk, when its plugin rendered
    /// the summary and nothing else needs the report read back.
    rendered_whole: Option<PathBuf>,
    /// The first stop signal a worker was stopped by.
    stopped_by: Option<i32>,
    /// A worker failed for a reason that every worker would meet (the flake does not evaluate).
    failure: Option<anyhow::Error>,
}

/// Walks `flake` with `parallel.jobs` workers and writes the joined report at `output`
/// (merged with `summarize` for the summary table, if given).
pub fn walk_parallel(args: &WalkArgs, flake: &str, output: &Path, parallel: Parallel, summarize: Option<Summarize>) -> Result<Walked> {
    let (plugin, base) = args.prepare(flake, PathBuf::new())?;
    let scratch = Scratch::new(output)?;
    let claims_path = scratch.0.join("claims");
    let claims = SharedClaims::create(&claims_path).map_err(|e| anyhow!(e))?;
    let next_run = AtomicU32::new(1);
    let stop = AtomicBool::new(false);
    let outcomes = Mutex::new(Outcomes::default());
    let bar = super::profile::progress_bar(args.no_progress);
    let nodes_per_slot: Vec<std::sync::atomic::AtomicU64> = (0..parallel.jobs).map(|_| Default::default()).collect();
    // Each running worker's signals are forwarded to it by its NixRun; this one catches a stop
    // signal arriving between two workers of a slot (which would otherwise kill us outright)
    // and stops every slot from starting another.
    let mut signals = signal_hook::iterator::Signals::new(nixrun::STOP_SIGNALS).context("cannot handle signals")?;
    let signal_handle = signals.handle();
    std::thread::scope(|scope| {
        let (stop, outcomes) = (&stop, &outcomes);
        scope.spawn(move || {
            for signal in signals.forever() {
                stop.store(true, Ordering::Release);
                outcomes.lock().unwrap_or_else(|p| p.into_inner()).stopped_by.get_or_insert(signal);
            }
        });
        let mut slots = Vec::with_capacity(parallel.jobs);
        for slot in 0..parallel.jobs {
            let (base, claims, claims_path, scratch) = (&base, &claims, &claims_path, &scratch);
            let (next_run, bar, nodes_per_slot, plugin, summarize) = (&next_run, &bar, &nodes_per_slot, &plugin, &summarize);
            slots.push(scope.spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let run = next_run.fetch_add(1, Ordering::AcqRel);
                    let report = scratch.0.join(format!("worker-{run}.json"));
                    let sole = parallel.jobs == 1;
                    let worker = WorkerWalk { claims: claims_path.clone(), run, max_rss: parallel.max_rss, sole };
                    let mut walk = Walk { report: report.clone(), worker: Some(worker), ..base.clone() };
                    let mut early = EarlyReport::default();
                    // The first worker of a walk that cannot replace it writes the joined
                    // report, unless killed: then it wrote none.
                    if sole && run == 1 && parallel.max_rss.is_none() {
                        early = early.moving_to(output);
                        if let Some(summarize) = summarize {
                            early = early.summarizing(summarize.spec.clone());
                            walk.summary = summarize.only_this.then(|| summarize.spec.clone());
                        }
                    }
                    let expression = walk.expression();
                    let nix = NixRun { nix: &args.nix, plugin, expression: &expression, extra_args: &args.nix_args };
                    let outcome = nix.run(
                        |line| {
                            if early.read_if_written(&line, &report) {
                                return early.summarized();
                            }
                            nodes_per_slot[slot].store(line.nodes, Ordering::Relaxed);
                            bar.set_position(nodes_per_slot.iter().map(|n| n.load(Ordering::Relaxed)).sum());
                            bar.set_message(line.path);
                            false
                        },
                        |line| bar.suspend(|| eprintln!("{}", nix_evalcost_core::attrpath::sanitize_text(line))),
                    );
                    let again = settle(run, &report, early, outcome, claims, outcomes);
                    if !again {
                        break;
                    }
                }
                // A stop or a failure in one slot stops the others' next workers too.
                let o = outcomes.lock().unwrap_or_else(|p| p.into_inner());
                if o.stopped_by.is_some() || o.failure.is_some() {
                    stop.store(true, Ordering::Release);
                }
            }));
        }
        for slot in slots {
            let _ = slot.join();
        }
        signal_handle.close();
    });
    bar.finish_and_clear();
    let mut outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(failure) = outcomes.failure.take() {
        return Err(failure);
    }
    outcomes.parts.sort_by_key(|(run, ..)| *run);
    if outcomes.parts.is_empty() && outcomes.rendered_whole.is_none() {
        return Ok(Walked::Stopped(outcomes.stopped_by.unwrap_or(libc::SIGINT)));
    }
    let finished = if let Some(path) = outcomes.rendered_whole {
        if path != output {
            nix_evalcost_core::report_io::replace_file(&path, output).with_context(|| format!("cannot move the report to {}", output.display()))?;
        }
        Finished { report: None, summary: outcomes.summary }
    } else if outcomes.parts.len() == 1 && !outcomes.parts[0].1.report.meta.parts.is_empty() {
        // A sole worker that walked everything wrote the joined report itself (maybe moved
        // into place already).
        let (_, part, path) = outcomes.parts.remove(0);
        if path != output {
            nix_evalcost_core::report_io::replace_file(&path, output).with_context(|| format!("cannot move the report to {}", output.display()))?;
        }
        Finished { report: Some(part.report), summary: outcomes.summary }
    } else {
        let parts: Vec<PartReport> = outcomes.parts.into_iter().map(|(_, part, _)| part).collect();
        let joined = join_workers(&parts);
        write_report(output, &joined)?;
        Finished { report: Some(joined), summary: None }
    };
    // A report not read back is complete: the plugin renders only a complete walk's summary.
    let complete = finished.report.as_ref().is_none_or(|r| r.meta.complete);
    Ok(match outcomes.stopped_by {
        Some(signal) => Walked::Partial(finished, signal),
        None if !complete => Walked::Partial(finished, libc::SIGINT),
        None => Walked::Done(finished),
    })
}

/// Records what one worker run gave (`early`: its report, if read while its nix exited);
/// returns whether its slot should start another worker.
fn settle(
    run: u32,
    report: &Path,
    early: EarlyReport,
    outcome: Result<nixrun::NixOutcome>,
    claims: &SharedClaims,
    outcomes: &Mutex<Outcomes>,
) -> bool {
    let mut o = outcomes.lock().unwrap_or_else(|p| p.into_inner());
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            o.failure.get_or_insert(e);
            return false;
        }
    };
    if let Some(signal) = outcome.stopped_by {
        o.stopped_by.get_or_insert(signal);
    }
    let path = early.moved_to().unwrap_or(report).to_path_buf();
    if path.exists() {
        let ReadEarly { report, summary } = match early.or_read(&path) {
            Ok(r) => r,
            Err(e) => {
                o.failure.get_or_insert(anyhow!("reading the report a worker wrote: {e}"));
                return false;
            }
        };
        o.summary = summary;
        let Some(report) = report else {
            // A sole worker's complete walk, summarised by its plugin: nothing more to walk.
            o.rendered_whole = Some(path);
            return false;
        };
        let retired = report.meta.worker.is_some_and(|w| w.retired);
        let ended = retired.then(|| "replaced: over the memory budget (--max-memory)".to_string());
        o.parts.push((run, PartReport { name: nix_evalcost_core::workers::part_name(run), ended, report }, path));
        // A retired worker leaves its slot to a replacement, unless the walk is stopping.
        return retired && outcome.stopped_by.is_none();
    }
    if outcome.stopped_by.is_some() {
        return false;
    }
    match outcome.signal() {
        Some(signal) => {
            // Killed from outside (the kernel's OOM killer, SIGKILL): its finished units are
            // free again, the one it was on is lost; the replacement, walking from the start,
            // records it as an error and walks the rest.
            let lost = claims.table().release_dead(run, signal);
            let name = nixrun::signal_name(signal);
            let hint = if signal == libc::SIGKILL { " (out of memory?)" } else { "" };
            let at = lost.map_or(String::new(), |i| format!(" while walking output #{}", i + 1));
            eprintln!("nix-evalcost: worker {run} was killed by {name}{hint}{at}; a new worker goes on");
            true
        }
        None => {
            let reason = outcome.error.clone().unwrap_or_else(|| outcome.exit_description());
            o.failure.get_or_insert(anyhow!("a worker's nix could not evaluate the flake: {reason}"));
            false
        }
    }
}

/// Workers' reports and claims table, beside the output (same file system), removed when the
/// walk is over.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(output: &Path) -> Result<Scratch> {
        let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = output.file_name().and_then(|n| n.to_str()).unwrap_or("evalcost-report");
        let path = dir.join(format!(".{name}.scratch-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&path) {
            bail!("cannot create the scratch directory {}: {e}", path.display());
        }
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
