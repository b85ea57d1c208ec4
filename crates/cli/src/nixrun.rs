//! Running `nix` with the plugin: finding the plugin, checking it was built for this Nix,
//! building the `builtins.evalcostWalk` expression, and running `nix eval` with the progress
//! pipe. No terminal UI here: `cmd/profile.rs` draws progress and prints tables.

use anyhow::{anyhow, bail, Context, Result};
use nix_evalcost_core::attrpath::nix_string;
use nix_evalcost_core::nix_version::NixVersion;
use nix_evalcost_core::passive;
use nix_evalcost_core::protocol::{self, ProgressLine, WrittenFacts, PROGRESS_FD, PROGRESS_FD_VAR};
use nix_evalcost_core::summary::SummarySpec;
use nix_evalcost_core::report::Report;
use nix_evalcost_core::report_io::{read_open_report, read_report, ReportError};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The plugin's file name, looked for next to the `nix-evalcost` binary: the loader, which
/// loads the build for the running Nix from its directory.
pub const PLUGIN_FILE: &str = protocol::LOADER_FILE;

/// What to say when `nix` cannot be run at all.
fn cannot_run(nix: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow!("cannot run '{}' ({e}); install Nix with shared libraries (see README) or pass --nix PATH", nix.display())
}

/// The plugin to load: `explicit`, else `libnix_evalcost.so` beside `exe` or in `exe/../lib`.
pub fn find_plugin(explicit: Option<&Path>, exe: &Path) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("plugin {} does not exist; pass --plugin PATH to libnix_evalcost.so", path.display());
        }
        return Ok(path.canonicalize()?);
    }
    let dir = exe.parent().unwrap_or(Path::new("/"));
    for candidate in [dir.join(PLUGIN_FILE), dir.join("../lib").join(PLUGIN_FILE)] {
        if candidate.is_file() {
            return Ok(candidate.canonicalize()?);
        }
    }
    bail!(
        "cannot find the plugin {PLUGIN_FILE} next to {}; build it (`cargo build --release` builds both) or pass --plugin PATH or set NIX_EVALCOST_PLUGIN",
        exe.display()
    )
}

/// The version `nix --version` prints, e.g. "2.26.3".
pub fn nix_version(nix: &Path) -> Result<String> {
    let out = Command::new(nix).arg("--version").output().map_err(|e| cannot_run(nix, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    version_of_version_output(&text)
        .ok_or_else(|| anyhow!("'{} --version' printed {:?}, not a Nix version", nix.display(), text.trim()))
}

/// `nix (Nix) 2.26.3` → `2.26.3`.
fn version_of_version_output(text: &str) -> Option<String> {
    let last = text.split_whitespace().last()?;
    NixVersion::parse(last).map(|_| last.to_string())
}

/// The plugin is C++ linked against one Nix's libraries: explain another minor version
/// before Nix's unreadable linker error. `plugin` is the loader (then: is there a build for
/// this Nix beside it?) or a plugin build (then: was it built for this Nix?).
pub fn check_plugin_matches(plugin: &Path, nix_version: &str) -> Result<()> {
    let bytes = std::fs::read(plugin).with_context(|| format!("cannot read plugin {}", plugin.display()))?;
    if protocol::is_loader(&bytes) {
        let running = NixVersion::parse(nix_version).ok_or_else(|| anyhow!("cannot read the Nix version {nix_version:?}"))?;
        let dir = plugin.parent().unwrap_or(Path::new("."));
        return protocol::choose_plugin_build(dir, &running).map(drop).map_err(|e| anyhow!(e));
    }
    let built_for = protocol::built_for(&bytes)
        .ok_or_else(|| anyhow!("{} is not a nix-evalcost plugin; pass --plugin PATH to libnix_evalcost.so", plugin.display()))?;
    if !nix_evalcost_core::nix_version::same_minor(&built_for, nix_version) {
        let series = NixVersion::parse(&built_for).map_or(built_for.clone(), |v| v.series());
        bail!(
            "plugin {} was built for Nix {built_for} but `nix` is {nix_version}; rebuild nix-evalcost against this Nix \
             (see docs/development.md) or pass --nix PATH to a Nix {series}",
            plugin.display()
        );
    }
    Ok(())
}

/// Where nix writes the report before it is renamed to `output`: an interrupted or failed run
/// never replaces a previous report with nothing.
pub fn staging_path(output: &Path) -> Result<PathBuf> {
    let name = output.file_name().and_then(|n| n.to_str()).context("the report path has no file name")?;
    let dir = output.parent().unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("cannot write the report: directory {} does not exist", dir.display());
    }
    let gz = if name.ends_with(".gz") { ".gz" } else { "" };
    Ok(dir.join(format!(".{name}.{}.partial.json{gz}", std::process::id())))
}

/// `examples/flake` is a registry lookup of flake id `examples` to Nix; when a directory of that
/// name with a flake.nix exists (relative to `cwd`), the user meant the directory.
pub fn local_path_ref(flake: &str, cwd: &Path) -> String {
    let looks_like_path = flake.starts_with(['.', '/']) || flake.contains(':');
    if !looks_like_path && cwd.join(flake).join("flake.nix").is_file() {
        format!("./{flake}")
    } else {
        flake.to_string()
    }
}

/// Which systems a walk visits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalkSystems {
    /// Nix's own `system` setting (evaluation stays pure).
    Current,
    All,
    Only(Vec<String>),
}

impl WalkSystems {
    /// From `--systems a,b` or `--systems all` (empty: the current system).
    pub fn from_args(systems: &[String]) -> WalkSystems {
        if systems.iter().any(|s| s == "all") {
            WalkSystems::All
        } else if systems.is_empty() {
            WalkSystems::Current
        } else {
            WalkSystems::Only(systems.to_vec())
        }
    }
}

/// The arguments of one `builtins.evalcostWalk` call.
#[derive(Clone, Debug)]
pub struct Walk {
    pub flake: String,
    pub base_dir: PathBuf,
    pub report: PathBuf,
    pub systems: WalkSystems,
    pub force_drv_paths: bool,
    pub stacks: bool,
    /// The most call-tree nodes kept with `stacks`.
    pub stacks_nodes: usize,
    /// The command line recorded in the report.
    pub argv: Vec<String>,
    /// Walk only this shard of the outputs.
    pub shard: Option<nix_evalcost_core::walk_policy::Shard>,
    /// A worker of a parallel walk (`profile -j N`).
    pub worker: Option<WorkerWalk>,
    /// Walk only the output at this attribute path (`profile --isolate`).
    pub only: Option<Vec<String>>,
    /// The summary table the plugin renders when the report is written (see `EarlyReport`).
    pub summary: Option<SummarySpec>,
}

/// What makes a walk one worker of a parallel walk.
#[derive(Clone, Debug)]
pub struct WorkerWalk {
    /// The claims table all workers share.
    pub claims: PathBuf,
    /// This worker's run number (1, 2, …).
    pub run: u32,
    /// Its memory budget: it takes no more units past this resident size.
    pub max_rss: Option<u64>,
    /// The only slot of the walk (`-j 1`).
    pub sole: bool,
}

impl Walk {
    /// The Nix expression that runs this walk; every string is quoted as a Nix string literal.
    pub fn expression(&self) -> String {
        let systems = match &self.systems {
            WalkSystems::Current => String::new(),
            WalkSystems::All => "systems = \"all\"; ".into(),
            WalkSystems::Only(list) => format!("systems = {}; ", nix_list(list)),
        };
        // The arguments of split, single-output and worker walks, when they are such walks.
        let mut split = self.shard.map_or(String::new(), |s| format!("shard = \"{s}\"; "));
        if let Some(only) = &self.only {
            split.push_str(&format!("only = {}; ", nix_list(only)));
        }
        if let Some(summary) = &self.summary {
            split.push_str(&format!("summary = {}; ", nix_string(&summary.to_json())));
        }
        if let Some(worker) = &self.worker {
            split.push_str(&format!(
                "claims = {}; workerRun = {}; maxRss = {}; ",
                nix_string(&worker.claims.to_string_lossy()),
                worker.run,
                worker.max_rss.unwrap_or(0)
            ));
            if worker.sole {
                split.push_str("soleWorker = true; ");
            }
        }
        format!(
            "builtins.evalcostWalk {{ flake = {}; baseDir = {}; report = {}; {systems}forceDrvPaths = {}; stacks = {}; stacksNodes = {}; {split}argv = {}; }}",
            nix_string(&self.flake),
            nix_string(&self.base_dir.to_string_lossy()),
            nix_string(&self.report.to_string_lossy()),
            self.force_drv_paths,
            self.stacks,
            self.stacks_nodes,
            nix_list(&self.argv),
        )
    }
}

fn nix_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| nix_string(s)).collect();
    format!("[ {} ]", items.join(" "))
}

/// How to run `nix`.
pub struct NixRun<'a> {
    pub nix: &'a Path,
    pub plugin: &'a Path,
    pub expression: &'a str,
    /// Extra arguments for `nix eval`.
    pub extra_args: &'a [String],
}

/// What became of a `nix` run.
pub struct NixOutcome {
    /// nix's exit status; none if the caller had all it needed before nix exited (see
    /// [`NixRun::run`]).
    pub status: Option<std::process::ExitStatus>,
    /// The last `error:` line nix printed.
    pub error: Option<String>,
    /// The first stop signal (SIGINT, SIGTERM, SIGHUP) this process received while nix ran; it
    /// was passed on to nix, which stops the walk between nodes and writes a partial report.
    pub stopped_by: Option<i32>,
    /// The last attribute path the plugin reported walking.
    pub last_path: Option<String>,
}

impl NixOutcome {
    /// The signal that killed nix, if one did.
    pub fn signal(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(self.status.as_ref()?)
    }

    /// "nix exited with exit status: 1", for a failure nix said nothing about.
    pub fn exit_description(&self) -> String {
        match self.status {
            Some(status) => format!("nix exited with {status}"),
            None => "nix was still exiting".to_string(),
        }
    }
}

/// A walk's report, read as soon as the plugin says it is written (its `report-written`
/// progress line): tearing down a large evaluator, and then its address space, takes nix a
/// while, and the read overlaps it. The report is final once written, so it can be moved into
/// place then too. With a summary to print, the plugin rendered it from the report in its
/// memory and said it with the written line: a complete report is then not read at all (for a
/// 20 000-output walk, reading it back took the CLI longer than nix took to exit). Otherwise the
/// summary is rendered beside the read, on a thread of its own.
#[derive(Default)]
pub struct EarlyReport {
    /// Where the report goes as soon as it is written (else it stays where nix wrote it).
    move_to: Option<PathBuf>,
    /// The summary table to print (the walk passed it to the plugin too).
    summarize: Option<SummarySpec>,
    moved: bool,
    /// The summary the plugin rendered, for a complete report that need not be read.
    rendered: Option<String>,
    reading: Option<std::thread::JoinHandle<Result<ReadEarly, ReportError>>>,
}

/// What [`EarlyReport`] read or was told.
pub struct ReadEarly {
    /// The report; none when the plugin rendered the summary of a complete report, which is
    /// then all the caller needs.
    pub report: Option<Report>,
    /// The summary table, if it was asked for and rendered.
    pub summary: Option<String>,
}

impl EarlyReport {
    /// Moves the report to `path` as soon as it is written (atomically: a rename).
    pub fn moving_to(mut self, path: &Path) -> Self {
        self.move_to = Some(path.to_path_buf());
        self
    }

    /// Renders `spec` from the report, unless the plugin did (the walk must pass it the same).
    pub fn summarizing(mut self, spec: SummarySpec) -> Self {
        self.summarize = Some(spec);
        self
    }

    /// Starts reading the report at `path` if `line` says it is written; true if so (the line
    /// then carries no progress).
    pub fn read_if_written(&mut self, line: &ProgressLine, path: &Path) -> bool {
        if !line.written {
            return false;
        }
        let mut at = path.to_path_buf();
        if let Some(to) = &self.move_to {
            // If this fails, the caller's own rename after nix exits says why.
            if nix_evalcost_core::report_io::replace_file(path, to).is_ok() {
                (self.moved, at) = (true, to.clone());
            }
        }
        if self.summarize.is_some() {
            if let Some(WrittenFacts { complete: true, summary: Some(text) }) = &line.facts {
                self.rendered = Some(text.clone());
                return true;
            }
        }
        // Not opened: `or_read` reads it where it is then.
        if let Ok(file) = std::fs::File::open(&at) {
            let summarize = self.summarize.take();
            self.reading = Some(std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let report = read_open_report(file, &at, &mut bytes);
                // Freed aside: giving megabytes back to the kernel took 17 ms for 11 MB
                // (measured beside a nix tearing down), on the way to the table.
                std::thread::spawn(move || drop(bytes));
                let report = report?;
                let summary = summarize.and_then(|spec| render_summary(&spec, &report));
                Ok(ReadEarly { report: Some(report), summary })
            }));
        }
        true
    }

    /// Whether the plugin rendered the summary of a complete report: all the caller needs.
    pub fn summarized(&self) -> bool {
        self.rendered.is_some()
    }

    /// Where the report is now if it was moved (as [`Self::moving_to`] asked).
    pub fn moved_to(&self) -> Option<&Path> {
        self.move_to.as_deref().filter(|_| self.moved)
    }

    /// What was read or rendered early, or else the report read now from `path` (and its
    /// summary rendered, if asked).
    pub fn or_read(self, path: &Path) -> Result<ReadEarly, ReportError> {
        if let Some(text) = self.rendered {
            return Ok(ReadEarly { report: None, summary: Some(text) });
        }
        let early = self.reading.and_then(|reading| reading.join().ok());
        early.filter(Result::is_ok).unwrap_or_else(|| {
            let report = read_report(path)?;
            let summary = self.summarize.and_then(|spec| render_summary(&spec, &report));
            Ok(ReadEarly { report: Some(report), summary })
        })
    }
}

/// `spec` rendered from `report`, or none (with a warning) if it cannot be.
pub fn render_summary(spec: &SummarySpec, report: &Report) -> Option<String> {
    spec.render(report).map_err(|e| eprintln!("nix-evalcost: cannot print the summary: {e}")).ok()
}

/// The signals that stop a profile, as a shell, `timeout`, systemd or a CI runner sends them.
pub const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// A signal's name, for messages.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        other => format!("signal {other}"),
    }
}

/// Lines of stderr kept to find nix's last error.
const STDERR_TAIL: usize = 50;

impl NixRun<'_> {
    /// The `nix eval` command line, with the progress pipe announced at [`PROGRESS_FD`].
    pub fn command(&self) -> Command {
        let mut command = Command::new(self.nix);
        command
            .arg("--option")
            .arg("plugin-files")
            .arg(self.plugin)
            .args(["--extra-experimental-features", "nix-command flakes", "eval", "--json", "--expr", self.expression])
            .args(self.extra_args)
            .env(PROGRESS_FD_VAR, PROGRESS_FD.to_string())
            // The walk writes its own report: no passive one besides it, whatever nix.conf says.
            .env(passive::DIR_VAR, "")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Runs nix to the end, or until `on_progress` says it has all it needs. `on_progress` gets
    /// each progress line of the plugin, `on_stderr` each line nix prints, both on this thread.
    /// When `on_progress` returns true (the report is written, and all the caller needs of it
    /// is in hand), this returns without waiting for nix to exit: the teardown of a large
    /// evaluator and its address space (25-45 ms after a 20 000-output walk) is then no longer
    /// the user's wait. nix finishes exiting on its own (the plugin, once the report is written,
    /// lets it outlive us: `walk_finish` in src/calls.rs), and is reaped here if we are still
    /// running.
    ///
    /// A stop signal to this process (alone, or to its process group) is passed on to nix,
    /// and nix is waited for: it stops the walk between nodes and writes a partial report.
    /// Until its report is written, nix never outlives this process: it is killed if we die
    /// (PR_SET_PDEATHSIG), SIGKILL included.
    pub fn run(
        &self,
        mut on_progress: impl FnMut(ProgressLine) -> bool,
        mut on_stderr: impl FnMut(&str),
    ) -> Result<NixOutcome> {
        let (progress_reader, progress_writer) = os_pipe::pipe().context("cannot create a pipe")?;
        let progress_fd = progress_writer.as_raw_fd();
        // Registered before nix exists, so that no signal falls between the spawn and the
        // forwarding: the default action would kill us and leave nix running.
        let mut signals = signal_hook::iterator::Signals::new(STOP_SIGNALS).context("cannot handle signals")?;
        let mut command = self.command();
        // SAFETY: this pid, read before the fork, is what the child compares getppid() with.
        let parent = unsafe { libc::getpid() };
        // SAFETY: dup2, prctl and getppid are async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(progress_fd, PROGRESS_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Die with this process, even when it is SIGKILLed; and if it already died
                // between the fork and here, do not start.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("nix-evalcost exited while starting nix"));
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| cannot_run(self.nix, e))?;
        drop(progress_writer);
        let pid = child.id() as libc::pid_t;
        let stderr = child.stderr.take().expect("stderr is piped");
        let signal_handle = signals.handle();
        let forwarder = std::thread::spawn(move || {
            let mut first = None;
            for signal in signals.forever() {
                first = first.or(Some(signal));
                // SAFETY: kill only sends a signal; nix is our child and not yet reaped (the
                // waiter reaps it only once this thread is joined).
                unsafe { libc::kill(pid, signal) };
            }
            first
        });
        // The readers and the waiter own what they use: after a release they live on until
        // nix exits (or this process does).
        let (events, inbox) = std::sync::mpsc::channel();
        read_lines(stderr, events.clone(), NixEvent::Stderr);
        read_lines(progress_reader, events.clone(), NixEvent::Progress);
        let (may_reap, reap_allowed) = std::sync::mpsc::channel::<()>();
        let (reaped, reap_result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let exited = wait_keeping_zombie(pid);
            let _ = events.send(NixEvent::Exited(exited));
            if reap_allowed.recv().is_ok() {
                let _ = reaped.send(child.wait());
            }
        });
        let (mut tail, mut last_path) = (VecDeque::with_capacity(STDERR_TAIL), None);
        let (mut open_pipes, mut exited, mut released) = (2, None, false);
        while open_pipes > 0 || exited.is_none() {
            match inbox.recv() {
                Ok(NixEvent::Stderr(Some(line))) => {
                    on_stderr(&line);
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
                Ok(NixEvent::Progress(Some(line))) => {
                    let line = ProgressLine::parse(&line);
                    if !line.path.is_empty() {
                        last_path = Some(line.path.clone());
                    }
                    if on_progress(line) {
                        released = true;
                        break;
                    }
                }
                Ok(NixEvent::Stderr(None) | NixEvent::Progress(None)) => open_pipes -= 1,
                Ok(NixEvent::Exited(result)) => exited = Some(result),
                Err(_) => break, // every sender is gone: cannot happen before the waiter's event
            }
        }
        if released {
            // What nix printed before the report was written may still be on its way here.
            while let Ok(event) = inbox.try_recv() {
                if let NixEvent::Stderr(Some(line)) = event {
                    on_stderr(&line);
                    tail.push_back(line);
                }
            }
        }
        signal_handle.close();
        let stopped_by = forwarder.join().unwrap_or(None);
        let _ = may_reap.send(());
        let error = last_error(tail.iter().map(String::as_str));
        if released {
            return Ok(NixOutcome { status: None, error, stopped_by, last_path });
        }
        exited.unwrap_or_else(|| Err(std::io::Error::other("nix's waiter stopped"))).context("waiting for nix")?;
        let status = reap_result.recv().context("waiting for nix")?.context("waiting for nix")?;
        Ok(NixOutcome { status: Some(status), error, stopped_by, last_path })
    }
}

/// What the threads watching a nix run report: a line (none at the end of its pipe), or that
/// nix has exited (not yet reaped).
enum NixEvent {
    Stderr(Option<String>),
    Progress(Option<String>),
    Exited(std::io::Result<()>),
}

/// Sends each line of `pipe` as `event`, then `event(None)`, from a thread of its own.
fn read_lines(pipe: impl std::io::Read + Send + 'static, events: std::sync::mpsc::Sender<NixEvent>, event: fn(Option<String>) -> NixEvent) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if events.send(event(Some(line))).is_err() {
                return;
            }
        }
        let _ = events.send(event(None));
    });
}

/// Waits until `pid` has exited without reaping it (WNOWAIT): until it is reaped, its pid cannot
/// be reused, so the signal forwarder can never hit another process.
fn wait_keeping_zombie(pid: libc::pid_t) -> std::io::Result<()> {
    loop {
        // SAFETY: waitid fills `info`; WNOWAIT leaves the child to be reaped by Child::wait.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The message of the last `error:` line among `lines`.
fn last_error<'a>(lines: impl DoubleEndedIterator<Item = &'a str>) -> Option<String> {
    lines.rev().find_map(|l| l.trim_start().strip_prefix("error:").map(|e| e.trim().to_string()).filter(|e| !e.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk() -> Walk {
        Walk {
            flake: "path:/tmp/my flake".into(),
            base_dir: "/home/u".into(),
            report: "/tmp/r.json".into(),
            systems: WalkSystems::Current,
            force_drv_paths: true,
            stacks: false,
            stacks_nodes: 20_000,
            argv: vec!["nix-evalcost".into(), "profile".into()],
            shard: None,
            worker: None,
            only: None,
            summary: None,
        }
    }

    #[test]
    fn walk_expression_quotes_every_string() {
        assert_eq!(
            walk().expression(),
            "builtins.evalcostWalk { flake = \"path:/tmp/my flake\"; baseDir = \"/home/u\"; report = \"/tmp/r.json\"; \
             forceDrvPaths = true; stacks = false; stacksNodes = 20000; argv = [ \"nix-evalcost\" \"profile\" ]; }"
        );
        let hostile = Walk {
            flake: "x\"; y = ${builtins.abort \"no\"}".into(),
            systems: WalkSystems::Only(vec!["a\\b".into(), "${c}".into()]),
            stacks: true,
            force_drv_paths: false,
            ..walk()
        };
        let expr = hostile.expression();
        assert!(expr.contains(r#"flake = "x\"; y = \${builtins.abort \"no\"}";"#), "{expr}");
        assert!(expr.contains(r#"systems = [ "a\\b" "\${c}" ];"#), "{expr}");
        assert!(expr.contains("forceDrvPaths = false; stacks = true;"), "{expr}");
        let shard = Walk { shard: Some(nix_evalcost_core::walk_policy::Shard { index: 2, count: 3 }), ..walk() };
        assert!(shard.expression().contains("stacksNodes = 20000; shard = \"2/3\"; argv"), "{}", shard.expression());
        let all = Walk { systems: WalkSystems::All, ..walk() };
        assert!(all.expression().contains("systems = \"all\"; forceDrvPaths"));
        // The summary spec is JSON in a Nix string: a hostile report path stays data.
        let options = nix_evalcost_core::merge::MergeOptions {
            metrics: vec![nix_evalcost_core::metric::find("wall").unwrap()],
            inclusive: false,
            depth: None,
            filters: Vec::new(),
            allow_mixed: true,
            group_by: None,
        };
        let layout = nix_evalcost_core::render::table::TableOptions { width: 80, color: false };
        let spec = SummarySpec::new(&options, nix_evalcost_core::stats::Stat::Median, 5, &layout, Path::new("/r/${x}\".json"));
        let summarized = Walk { summary: Some(spec.clone()), ..walk() }.expression();
        let quoted = nix_string(&spec.to_json());
        assert!(summarized.contains(&format!("summary = {quoted}; argv")), "{summarized}");
        assert!(quoted.contains(r#"\${x}"#), "{quoted}");
    }

    #[test]
    fn systems_from_arguments() {
        assert_eq!(WalkSystems::from_args(&[]), WalkSystems::Current);
        assert_eq!(WalkSystems::from_args(&["x86_64-linux".into(), "all".into()]), WalkSystems::All);
        assert_eq!(WalkSystems::from_args(&["a".into()]), WalkSystems::Only(vec!["a".into()]));
    }

    #[test]
    fn version_output_is_parsed() {
        assert_eq!(version_of_version_output("nix (Nix) 2.26.3\n").as_deref(), Some("2.26.3"));
        assert_eq!(version_of_version_output("nix (Nix) 2.35.2pre20251101_dirty").as_deref(), Some("2.35.2pre20251101_dirty"));
        assert_eq!(version_of_version_output("command not found"), None);
        assert_eq!(version_of_version_output(""), None);
    }

    #[test]
    fn plugin_is_found_beside_the_binary_or_in_lib() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let exe = bin.join("nix-evalcost");
        let err = find_plugin(None, &exe).unwrap_err().to_string();
        assert!(err.contains("cannot find the plugin") && err.contains("--plugin"), "{err}");
        std::fs::create_dir_all(dir.path().join("lib")).unwrap();
        std::fs::write(dir.path().join("lib").join(PLUGIN_FILE), b"x").unwrap();
        assert_eq!(find_plugin(None, &exe).unwrap(), dir.path().join("lib").join(PLUGIN_FILE).canonicalize().unwrap());
        std::fs::write(bin.join(PLUGIN_FILE), b"x").unwrap();
        assert_eq!(find_plugin(None, &exe).unwrap(), bin.join(PLUGIN_FILE).canonicalize().unwrap());
        let missing = find_plugin(Some(&dir.path().join("nope.so")), &exe).unwrap_err().to_string();
        assert!(missing.contains("nope.so") && missing.contains("does not exist"), "{missing}");
    }

    #[test]
    fn plugin_version_is_checked_by_minor_release() {
        let dir = tempfile::tempdir().unwrap();
        let plugin = dir.path().join(PLUGIN_FILE);
        std::fs::write(&plugin, format!("ELF junk {}2.26.3\0 more", protocol::BUILT_FOR_PREFIX)).unwrap();
        check_plugin_matches(&plugin, "2.26.1").unwrap();
        let err = check_plugin_matches(&plugin, "2.35.2").unwrap_err().to_string();
        assert!(err.contains("built for Nix 2.26.3 but `nix` is 2.35.2") && err.contains("a Nix 2.26"), "{err}");
        std::fs::write(&plugin, b"not a plugin").unwrap();
        let err = check_plugin_matches(&plugin, "2.26.3").unwrap_err().to_string();
        assert!(err.contains("is not a nix-evalcost plugin"), "{err}");
        // The loader: is there a build for this Nix beside it?
        std::fs::write(&plugin, format!("ELF {}", protocol::LOADER_MARKER)).unwrap();
        let build = format!("ELF {}2.26.3\0", protocol::BUILT_FOR_PREFIX);
        std::fs::write(dir.path().join(protocol::PLUGIN_BUILD_FILE), build).unwrap();
        check_plugin_matches(&plugin, "2.26.3").unwrap();
        let err = check_plugin_matches(&plugin, "2.35.2").unwrap_err().to_string();
        assert!(err.contains("no plugin build for Nix 2.35.2") && err.contains("2.26.3"), "{err}");
    }

    #[test]
    fn directories_named_like_flake_ids_are_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("examples/flake")).unwrap();
        std::fs::write(dir.path().join("examples/flake/flake.nix"), "{}").unwrap();
        assert_eq!(local_path_ref("examples/flake", dir.path()), "./examples/flake");
        assert_eq!(local_path_ref("nixpkgs", dir.path()), "nixpkgs");
        assert_eq!(local_path_ref("github:o/r", dir.path()), "github:o/r");
        assert_eq!(local_path_ref("./x", dir.path()), "./x");
    }

    #[test]
    fn staging_is_a_hidden_sibling() {
        let dir = tempfile::tempdir().unwrap();
        let staged = staging_path(&dir.path().join("r.json.gz")).unwrap();
        assert_eq!(staged.parent(), Some(dir.path()));
        let name = staged.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".r.json.gz.") && name.ends_with(".partial.json.gz"), "{name}");
        let err = staging_path(&dir.path().join("missing/r.json")).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn the_last_error_line_is_kept() {
        let lines = ["warning: x", "error: first", "  … while evaluating", "error:   second  ", "done"];
        assert_eq!(last_error(lines.into_iter()).as_deref(), Some("second"));
        assert_eq!(last_error(["error:"].into_iter()), None);
    }

    #[test]
    fn command_announces_the_progress_pipe() {
        let args = vec!["--option".to_string(), "max-call-depth".into(), "20000".into()];
        let run = NixRun { nix: Path::new("nix"), plugin: Path::new("/p.so"), expression: "1", extra_args: &args };
        let command = run.command();
        let argv: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(&argv[..3], ["--option", "plugin-files", "/p.so"]);
        assert!(argv.ends_with(&["eval".into(), "--json".into(), "--expr".into(), "1".into(), "--option".into(), "max-call-depth".into(), "20000".into()]));
        let fd = command.get_envs().find(|(k, _)| *k == PROGRESS_FD_VAR).and_then(|(_, v)| v).unwrap();
        assert_eq!(fd, "3");
    }
}
