//! Passive profiling in the plugin: the functions the shim calls when an evaluator is created
//! (`passive_begin`: configuration, the sampling decision, the session) and when its
//! evaluation is over (`passive_end`: the report, written atomically, and retention). The
//! decisions themselves are the core's (`nix_evalcost_core::passive`).
//!
//! Never in the way: every failure is one warning line on stderr, and Nix goes on as if the
//! plugin were not there. Nothing is written to stdout.

use crate::bridge::ffi;
use crate::calls::{flake_meta, lock, meta, new_session, publish_innermost, set_call_tree, take_stacks};
use crate::probe;
use crate::sensor::NixSensor;
use nix_evalcost_core::guard::guarded;
use nix_evalcost_core::passive::{self, PassiveConfig, RawSettings, DEFAULTS, SETTINGS};
use nix_evalcost_core::report::Kind;
use nix_evalcost_core::report_io::write_report;
use nix_evalcost_core::session::{Mode, Outcome, Session};
use nix_evalcost_core::stacks::{CallTree, NODE_CAP};
use nix_evalcost_core::walk_policy::Systems;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

fn warn(message: &str) {
    eprintln!("warning: nix-evalcost: {message}");
}

/// The settings the shim registers with Nix.
pub fn passive_setting_specs() -> Vec<ffi::SettingSpec> {
    SETTINGS
        .iter()
        .zip(DEFAULTS)
        .map(|((name, var, what), default)| ffi::SettingSpec {
            name: name.to_string(),
            default_value: default.to_string(),
            description: format!("nix-evalcost: {what} (overridden by ${var})."),
        })
        .collect()
}

/// The entry node of the passive session, and the configuration it was started with.
struct Passive {
    entry: u32,
    config: PassiveConfig,
}

static PASSIVE: Mutex<Option<Passive>> = Mutex::new(None);

/// An evaluator was created (once per process): measure this process or not.
pub fn passive_begin(settings: Vec<String>) -> ffi::PassiveStart {
    let off = ffi::PassiveStart { measured: false, stacks: false };
    let outcome = guarded("starting passive profiling", || {
        let raw: RawSettings = settings.try_into().map_err(|_| "the shim passed the wrong number of settings".to_string())?;
        let Some(config) = passive::resolve(&raw, |var| std::env::var(var).ok())? else { return Ok(off) };
        if !passive::sampled(config.sample_rate, passive::unit_interval(probe::random_u64())) {
            return Ok(off);
        }
        start(config)
    });
    outcome.unwrap_or_else(|message| {
        warn(&message);
        off
    })
}

fn start(config: PassiveConfig) -> Result<ffi::PassiveStart, String> {
    let mut guard = lock();
    if guard.is_some() {
        return Ok(ffi::PassiveStart { measured: false, stacks: false }); // a walk or measure session owns the evaluator
    }
    let argv: Vec<String> = std::env::args().collect();
    let command = passive::command_line(&argv);
    let mut meta = meta("passive", argv);
    let report = passive::report_file(&config.dir, &meta.started_at, &meta.hostname, std::process::id(), probe::random_u64() as u32, config.stacks);
    meta.all_systems = true;
    meta.sample_rate = Some(config.sample_rate);
    meta.entry_points = command.entry_points.clone();
    meta.command = command.command.clone();
    let mut session = new_session(Mode::Passive { report }, meta, Systems::All);
    let entry = session.begin_entry(&command.entry_label());
    let stacks = config.stacks;
    set_call_tree(stacks.then(|| CallTree::with_cap(NODE_CAP)));
    publish_innermost(&session);
    *guard = Some(session);
    *PASSIVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(Passive { entry, config });
    // SAFETY: registering a plain extern "C" function with no arguments.
    unsafe { libc::atexit(passive_at_exit) };
    Ok(ffi::PassiveStart { measured: true, stacks })
}

/// The measured evaluation locked a flake: the first one is the report's.
pub fn passive_flake(facts: ffi::FlakeFacts) {
    let _ = guarded("recording the flake", || {
        if let Some(session) = lock().as_mut().filter(|s| matches!(s.mode(), Mode::Passive { .. })) {
            if !session.has_flake() {
                session.record_flake(flake_meta(facts));
            }
        }
        Ok::<_, String>(())
    });
}

/// The passive session, if it still runs (a walk started later replaces it).
fn take_passive() -> Option<(Passive, Session<NixSensor>, PathBuf)> {
    let passive = PASSIVE.lock().unwrap_or_else(|p| p.into_inner()).take()?;
    let mut guard = lock();
    let Some(Mode::Passive { report }) = guard.as_ref().map(|s| s.mode().clone()) else { return None };
    Some((passive, guard.take()?, report))
}

/// The evaluation is over: write the report. `interrupted`: Nix was interrupted (Ctrl-C);
/// `failed`: the command is unwinding with an error.
pub fn passive_end(interrupted: bool, failed: bool) {
    let outcome = guarded("writing the passive report", || {
        let Some((passive, mut session, path)) = take_passive() else { return Ok(()) };
        if !interrupted {
            let (kind, error) = if failed { (Kind::Error, Some("the command failed (its error is in Nix's output)".to_string())) } else { (Kind::Command, None) };
            session.leave_node(passive.entry, Outcome { kind, drv_path: None, error }).map_err(|e| e.to_string())?;
        }
        let report = session.finish(!interrupted, take_stacks());
        set_call_tree(None);
        write(&path, &report, &passive.config)
    });
    if let Err(message) = outcome {
        warn(&message);
    }
}

/// The process exits while the evaluation was still being measured (Nix exited without
/// ending its evaluator): the report holds the last reading.
extern "C" fn passive_at_exit() {
    let outcome = guarded("writing the passive report", || {
        let Some((passive, session, path)) = take_passive() else { return Ok(()) };
        let report = session.finish_at_exit();
        write(&path, &report, &passive.config)
    });
    if let Err(message) = outcome {
        warn(&message);
    }
}

fn write(path: &Path, report: &nix_evalcost_core::report::Report, config: &PassiveConfig) -> Result<(), String> {
    std::fs::create_dir_all(&config.dir).map_err(|e| format!("cannot create {}: {e}", config.dir.display()))?;
    write_report(path, report).map_err(|e| e.to_string())?;
    enforce_retention(config);
    Ok(())
}

/// Removes the reports the retention limits expire. Best effort: another process may be
/// removing the same files.
fn enforce_retention(config: &PassiveConfig) {
    if config.keep.is_none() && config.keep_for.is_none() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(&config.dir) else { return };
    let reports: Vec<(String, SystemTime)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            passive::is_report_name(&name).then_some(())?;
            Some((name, e.metadata().ok()?.modified().ok()?))
        })
        .collect();
    for name in passive::expired(reports, config.keep, config.keep_for, SystemTime::now()) {
        let _ = std::fs::remove_file(PathBuf::from(&config.dir).join(name));
    }
}
