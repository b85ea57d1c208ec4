//! Passive profiling on real Nix: the plugin and its settings in a nix.conf of the test's own
//! (NIX_CONF_DIR), and plain `nix`, `nix-instantiate` and `nix-build` commands.

mod common;
use common::*;
use nix_evalcost_core::cost::Cost;
use nix_evalcost_core::report::{Kind, Report};
use nix_evalcost_core::report_io::read_report;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A nix.conf with the plugin and passive settings, and the report directory it names.
struct Passive {
    root: tempfile::TempDir,
    _store: Option<std::sync::RwLockReadGuard<'static, ()>>,
}

/// The Nix store's database: the test of 20 concurrent processes takes it alone (Nix 2.35 can
/// answer "database is busy" when many processes open it at once).
static NIX_STORE: std::sync::RwLock<()> = std::sync::RwLock::new(());

impl Passive {
    /// `settings`: extra nix.conf lines (`evalcost-dir` is set to [`Passive::reports`] unless
    /// `settings` sets it).
    fn new(settings: &[&str]) -> Passive {
        Passive::with(settings, Some(NIX_STORE.read().unwrap_or_else(|e| e.into_inner())))
    }

    /// For a test that holds the store alone.
    fn new_unlocked(settings: &[&str]) -> Passive {
        Passive::with(settings, None)
    }

    fn with(settings: &[&str], store: Option<std::sync::RwLockReadGuard<'static, ()>>) -> Passive {
        let root = tempfile::tempdir().unwrap();
        let passive = Passive { root, _store: store };
        std::fs::create_dir_all(passive.conf_dir()).unwrap();
        let mut conf = vec![
            "build-users-group =".to_string(),
            "experimental-features = nix-command flakes".into(),
            "sandbox = false".into(),
            "substituters =".into(),
            "flake-registry =".into(),
            format!("plugin-files = {}", plugin().display()),
        ];
        if !settings.iter().any(|s| s.starts_with("evalcost-dir")) {
            conf.push(format!("evalcost-dir = {}", passive.reports().display()));
        }
        conf.extend(settings.iter().map(|s| s.to_string()));
        std::fs::write(passive.conf_dir().join("nix.conf"), conf.join("\n") + "\n").unwrap();
        passive
    }

    fn conf_dir(&self) -> PathBuf {
        self.root.path().join("conf")
    }

    fn reports(&self) -> PathBuf {
        self.root.path().join("reports")
    }

    /// `program ARGS...` with this nix.conf, NIX_SHOW_STATS on (its JSON in the returned value).
    fn run(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> (Output, Value) {
        let stats = self.root.path().join(format!("stats-{}.json", rand_suffix()));
        let output = self.command(program, args).env("NIX_SHOW_STATS", "1").env("NIX_SHOW_STATS_PATH", &stats).envs(env.iter().copied()).output().unwrap();
        let stats = std::fs::read_to_string(&stats).map(|s| serde_json::from_str(&s).unwrap()).unwrap_or(Value::Null);
        (output, stats)
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args).env("NIX_CONF_DIR", self.conf_dir()).env_remove("NIX_EVALCOST_DIR").env_remove("NIX_SHOW_STATS");
        c
    }

    /// The reports written so far (never temporaries).
    fn written(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.reports()) else { return Vec::new() };
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        files
    }

    fn only_report(&self) -> Report {
        let files = self.written();
        assert_eq!(files.len(), 1, "exactly one report: {files:?}");
        read_report(&files[0]).unwrap()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn ok(output: &Output) {
    assert!(output.status.success(), "status {:?}\nstderr:\n{}", output.status, String::from_utf8_lossy(&output.stderr));
}

fn stat(stats: &Value, pointer: &str) -> u64 {
    stats.pointer(pointer).and_then(Value::as_u64).unwrap_or_else(|| panic!("no {pointer} in {stats}"))
}

/// Totals are the unattributed cost plus every node's (additive counters), and equal what
/// Nix printed for NIX_SHOW_STATS in the same process.
fn assert_conserved_against(report: &Report, stats: &Value) {
    let mut sum = report.unattributed;
    for n in &report.nodes {
        sum.add(&n.cost);
    }
    let t = &report.totals;
    let same = |a: &Cost, b: &Cost| (a.function_calls, a.primop_calls, a.lookups, a.values, a.envs, a.thunks, a.gc_bytes, a.wall_ns)
        == (b.function_calls, b.primop_calls, b.lookups, b.values, b.envs, b.thunks, b.gc_bytes, b.wall_ns);
    assert!(same(&sum, t), "conservation: {sum:?} vs {t:?}");
    assert_eq!(t.function_calls, stat(stats, "/nrFunctionCalls"));
    assert_eq!(t.primop_calls, stat(stats, "/nrPrimOpCalls"));
    assert_eq!(t.lookups, stat(stats, "/nrLookups"));
    assert_eq!(t.values, stat(stats, "/values/number"));
    assert_eq!(t.envs, stat(stats, "/envs/number"));
    assert_eq!(t.attrsets, stat(stats, "/sets/number"));
    if thunks_readable(report) {
        assert_eq!(t.thunks, stat(stats, "/nrThunks"));
    }
}

const FLAKE: &str = r#"{
  outputs = { self }: let
    fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2);
    system = builtins.currentSystem or "x86_64-linux";
    drv = name: derivation { inherit name system; builder = "/bin/sh"; args = [ "-c" "echo ${toString (fib 12)} > $out" ]; };
  in {
    lib.x = fib 15;
    packages.SYSTEM.default = drv "hello";
    checks.SYSTEM.fine = drv "check";
  };
}"#;

fn flake() -> Flake {
    // `nix flake check` evaluates the current system's outputs only; builtins.currentSystem is
    // not available in pure evaluation, so the system is written in.
    Flake::new(&FLAKE.replace("SYSTEM", &current_system()).replace("builtins.currentSystem or ", ""), &[("default.nix", &format!("let {FIB} in {{ x = fib 15; drv = derivation {{ name = \"d\"; system = \"{}\"; builder = \"/bin/sh\"; }}; }}", current_system()))])
}

fn one_report_per_command(program: &str, args: &[String], command: &str, entry: &str, has_flake: bool) {
    let p = Passive::new(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, stats) = p.run(program, &args, &[]);
    ok(&out);
    let report = p.only_report();
    assert_eq!(report.meta.mode, "passive");
    assert_eq!(report.meta.command, command);
    assert_eq!(report.meta.sample_rate, Some(1.0));
    assert_eq!(report.nodes.len(), 1, "{:?}", paths(&report));
    assert_eq!(report.nodes[0].path, [entry]);
    assert_eq!(report.nodes[0].kind, Kind::Command);
    assert!(report.nodes[0].cost.function_calls > 0, "the evaluation is charged to the entry");
    assert_eq!(report.meta.flake.is_some(), has_flake, "{:?}", report.meta.flake);
    if has_flake {
        assert!(report.meta.flake.as_ref().unwrap().nar_hash.as_deref().is_some_and(|h| h.starts_with("sha256-")));
    }
    assert_conserved_against(&report, &stats);
}

#[test]
fn nix_eval_writes_one_conserved_report() {
    let f = flake();
    let x = format!("{}#lib.x", f.url());
    one_report_per_command("nix", &["eval".into(), "--json".into(), x.clone()], "nix eval", &x, true);
}

#[test]
fn nix_build_dry_run_writes_one_conserved_report() {
    let f = flake();
    let x = format!("{}#default", f.url());
    one_report_per_command("nix", &["build".into(), "--dry-run".into(), "--no-link".into(), x.clone()], "nix build", &x, true);
}

#[test]
fn nix_flake_check_writes_one_conserved_report() {
    let f = flake();
    one_report_per_command("nix", &["flake".into(), "check".into(), "--no-build".into(), f.url()], "nix flake check", &f.url(), true);
}

#[test]
fn nix_instantiate_writes_one_conserved_report() {
    let f = flake();
    let file = f.path("default.nix").display().to_string();
    one_report_per_command("nix-instantiate", &["--eval".into(), "--strict".into(), file, "-A".into(), "x".into()], "nix-instantiate", "x", false);
}

#[test]
fn nix_build_legacy_dry_run_writes_one_conserved_report() {
    let f = flake();
    let file = f.path("default.nix").display().to_string();
    one_report_per_command("nix-build", &["--dry-run".into(), file, "-A".into(), "drv".into()], "nix-build", "drv", false);
}

#[test]
fn the_exact_calls_of_the_evaluation_are_charged() {
    let p = Passive::new(&[]);
    let (out, _) = p.run("nix", &["eval", "--expr", "let fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2); in fib 15"], &[]);
    ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "610\n");
    let report = p.only_report();
    assert_eq!(report.nodes[0].path, ["«expr»"]);
    // fib 15 makes 1973 calls (2 F(16) - 1); nothing else in `nix eval --expr` calls a lambda.
    assert_eq!(report.totals.function_calls, 1973);
}

/// What a command prints and exits with, without the plugin and with it measuring.
fn stdout_and_status(p: &Passive, args: &[&str], measuring: bool) -> (Vec<u8>, Option<i32>) {
    let mut c = p.command("nix", args);
    if !measuring {
        c.env("NIX_CONF_DIR", p.root.path().join("plain"));
    }
    let out = c.output().unwrap();
    (out.stdout, out.status.code())
}

#[test]
fn nix_output_and_status_are_untouched() {
    let p = Passive::new(&[]);
    let plain = p.root.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("nix.conf"), "experimental-features = nix-command flakes\nflake-registry =\nsubstituters =\nbuild-users-group =\n").unwrap();
    let f = flake();
    let ok_json = format!("{}#lib", f.url());
    for args in [
        vec!["eval", "--json", ok_json.as_str()],
        vec!["eval", "--json", "--expr", "{ a = [ 1 \"x\" ]; b.c = null; }"],
        vec!["eval", "--expr", "throw \"boom\""],
        vec!["eval", "--raw", "--expr", "\"no newline\""],
    ] {
        let before = p.written().len();
        let plain = stdout_and_status(&p, &args, false);
        let measured = stdout_and_status(&p, &args, true);
        assert_eq!(plain, measured, "{args:?}");
        assert_eq!(p.written().len(), before + 1, "{args:?} wrote one report");
    }
    // The failing one is recorded as failing.
    let failed: Vec<Report> = p.written().iter().map(|f| read_report(f).unwrap()).filter(|r| r.nodes[0].kind == Kind::Error).collect();
    assert_eq!(failed.len(), 1);
}

#[test]
fn unset_rate_zero_and_non_evaluating_commands_write_nothing() {
    // The plugin loaded without a directory.
    let unset = Passive::new(&["evalcost-dir ="]);
    ok(&unset.run("nix", &["eval", "--expr", "1 + 1"], &[]).0);
    assert!(!unset.reports().exists());
    // Rate 0.
    let zero = Passive::new(&["evalcost-sample-rate = 0"]);
    for _ in 0..5 {
        ok(&zero.run("nix", &["eval", "--expr", "1 + 1"], &[]).0);
    }
    assert!(zero.written().is_empty());
    // Commands that evaluate nothing.
    let p = Passive::new(&[]);
    ok(&p.run("nix", &["--version"], &[]).0);
    ok(&p.run("nix-store", &["--gc", "--print-dead"], &[]).0);
    ok(&p.run("nix", &["config", "show", "evalcost-dir"], &[]).0);
    assert!(p.written().is_empty(), "{:?}", p.written());
}

#[test]
fn settings_are_nix_settings() {
    let p = Passive::new(&["evalcost-sample-rate = 1", "evalcost-dri = /tmp/typo"]);
    // Nix knows them (nix config show prints the value from nix.conf) ...
    let out = p.command("nix", &["config", "show", "evalcost-dir"]).output().unwrap();
    ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), p.reports().display().to_string());
    // ... and a typo gets Nix's own warning.
    let out = p.command("nix", &["eval", "--expr", "1"]).output().unwrap();
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown setting 'evalcost-dri'"), "{stderr}");
}

#[test]
fn the_environment_overrides_nix_conf_for_one_command() {
    let p = Passive::new(&[]);
    let elsewhere = p.root.path().join("elsewhere");
    let dir = elsewhere.display().to_string();
    ok(&p.run("nix", &["eval", "--expr", "1"], &[("NIX_EVALCOST_DIR", &dir)]).0);
    assert!(p.written().is_empty());
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);
    ok(&p.run("nix", &["eval", "--expr", "1"], &[("NIX_EVALCOST_SAMPLE_RATE", "0")]).0);
    ok(&p.run("nix", &["eval", "--expr", "1"], &[("NIX_EVALCOST", "0")]).0);
    assert!(p.written().is_empty());
    // A bad value: one warning, nothing written, nix unaffected.
    let (out, _) = p.run("nix", &["eval", "--expr", "1"], &[("NIX_EVALCOST_SAMPLE_RATE", "often")]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("nix-evalcost").count(), 1, "{stderr}");
    assert!(stderr.contains("$NIX_EVALCOST_SAMPLE_RATE = 'often'"), "{stderr}");
    assert!(p.written().is_empty());
}

#[test]
fn half_the_processes_at_rate_one_half() {
    let p = Passive::new(&["evalcost-sample-rate = 0.5", "evalcost-keep = 0"]);
    const N: usize = 200;
    for _ in 0..N {
        ok(&p.command("nix", &["eval", "--expr", "1"]).output().unwrap());
    }
    let k = p.written().len();
    // Binomial(200, 0.5): mean 100, sd 7.07. [65, 135] is +-4.95 sd: a correct sampler falls
    // outside with probability below 1e-6.
    assert!((65..=135).contains(&k), "{k} of {N} sampled at rate 0.5");
    for f in p.written().iter().take(3) {
        assert_eq!(read_report(f).unwrap().meta.sample_rate, Some(0.5));
    }
}

#[test]
fn every_process_at_rate_one_and_retention_keeps_the_newest() {
    let p = Passive::new(&["evalcost-keep = 3"]);
    for i in 0..5 {
        ok(&p.command("nix", &["eval", "--expr", &format!("{i}")]).output().unwrap());
        assert_eq!(p.written().len(), (i + 1).min(3));
    }
    // The three newest survive: the last three commands' expressions.
    let mut argv: Vec<String> = p.written().iter().map(|f| read_report(f).unwrap().meta.argv.last().unwrap().clone()).collect();
    argv.sort();
    assert_eq!(argv, ["2", "3", "4"]);
}

#[test]
fn twenty_concurrent_processes_write_twenty_reports() {
    let _alone = NIX_STORE.write().unwrap_or_else(|e| e.into_inner());
    let p = Passive::new_unlocked(&["evalcost-keep = 0"]);
    let children: Vec<_> = (0..20).map(|i| p.command("nix", &["eval", "--expr", &format!("{i} + 1")]).stdout(std::process::Stdio::null()).spawn().unwrap()).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let files = p.written();
    assert_eq!(files.len(), 20, "{files:?}");
    let mut seen: Vec<String> = files.iter().map(|f| read_report(f).unwrap().meta.argv.last().unwrap().clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 20);
}

#[test]
fn a_read_only_directory_gives_one_warning_and_changes_nothing_else() {
    let Some(ro) = Mount::tmpfs("ro,size=16k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root in a private mount namespace, as scripts/nix-env runs tests)");
        return;
    };
    let p = Passive::new(&[&format!("evalcost-dir = {}", ro.path().display())]);
    for (args, status) in [(["eval", "--json", "--expr", "[ 1 2 ]"], 0), (["eval", "--json", "--expr", "throw \"x\""], 1)] {
        let out = p.command("nix", &args).output().unwrap();
        assert_eq!(out.status.code(), Some(status));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("nix-evalcost")).collect();
        assert_eq!(ours.len(), 1, "{stderr}");
        assert!(ours[0].starts_with("warning: nix-evalcost:") && ours[0].contains("Read-only file system"), "{}", ours[0]);
        if status == 0 {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "[1,2]\n");
        }
    }
    assert_eq!(std::fs::read_dir(ro.path()).unwrap().count(), 0);
}

#[test]
fn a_full_disk_gives_one_warning() {
    let Some(disk) = Mount::tmpfs("size=16k") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let _ = std::fs::write(disk.path().join("filler"), vec![0u8; 64 * 1024]);
    let p = Passive::new(&[&format!("evalcost-dir = {}", disk.path().display())]);
    let out = p.command("nix", &["eval", "--expr", "1"]).output().unwrap();
    ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().filter(|l| l.contains("nix-evalcost")).count(), 1, "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let names: Vec<_> = std::fs::read_dir(disk.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["filler"], "no temporary left behind");
}

#[test]
fn stacks_in_passive_reports() {
    let p = Passive::new(&["evalcost-stacks = true"]);
    let (out, _) = p.run("nix", &["eval", "--expr", "let fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2); in fib 10"], &[]);
    ok(&out);
    let files = p.written();
    assert_eq!(files.len(), 1);
    assert!(files[0].to_string_lossy().ends_with(".json.gz"), "{files:?}");
    let report = read_report(&files[0]).unwrap();
    let stacks = report.stacks.expect("stacks");
    // fib 10: 177 calls of fib, each under the one entry node.
    let calls: u64 = stacks.nodes.iter().map(|n| n.calls).sum::<u64>();
    assert!(calls >= 177, "{calls}");
}

#[test]
fn exec_of_a_shell_still_leaves_a_report() {
    // `nix shell` builds the package, then replaces itself with the command: the report is
    // written before the exec.
    let p = Passive::new(&[]);
    let f = flake();
    let out = p.command("nix", &["shell", &format!("{}#default", f.url()), "--command", "sh", "-c", "echo from-the-shell"]).output().unwrap();
    ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-the-shell\n");
    let report = p.only_report();
    assert_eq!(report.meta.command, "nix shell");
    assert!(report.totals.function_calls > 0);
}

#[test]
fn report_groups_passive_reports_by_command() {
    let p = Passive::new(&["evalcost-keep = 0"]);
    let f = flake();
    for _ in 0..2 {
        ok(&p.command("nix", &["eval", &format!("{}#lib.x", f.url())]).output().unwrap());
    }
    ok(&p.command("nix-instantiate", &["--eval", &f.path("default.nix").display().to_string(), "-A", "x"]).output().unwrap());
    let out = cli().args(["report", "--group-by", "command", "--format", "csv", "--columns", "fncalls"]).arg(p.reports()).output().unwrap();
    ok(&out);
    let csv = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    // A group name with a space is quoted like any path component.
    assert!(rows.iter().any(|r| r.starts_with(r#""""nix eval""",command,0,2,"#)), "{csv}");
    assert!(rows.iter().any(|r| r.starts_with("nix-instantiate,command,0,1,")), "{csv}");
    // Plain `report` reads them too: one row per entry point.
    let out = cli().args(["report", "--format", "csv", "--allow-mixed"]).arg(p.reports()).output().unwrap();
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("#lib.x"));
}

#[test]
fn profile_is_not_doubled_by_passive_settings() {
    // NIX_CONF_DIR with passive on: `nix-evalcost profile` writes its walk report only.
    let p = Passive::new(&[]);
    let f = flake_with(FIB, "{ lib.a = fib 10; }");
    let out = cli().args(["profile", &f.url(), "--no-progress", "-o"]).arg(p.root.path().join("walk.json")).env("NIX_CONF_DIR", p.conf_dir()).output().unwrap();
    ok(&out);
    assert!(p.written().is_empty(), "{:?}", p.written());
    assert!(Path::new(&p.root.path().join("walk.json")).is_file());
}

#[test]
fn ctrl_c_leaves_a_partial_report_and_nix_exits_as_it_would() {
    let p = Passive::new(&[]);
    // About 2 s of calls. Nix notices SIGINT only at its next interrupt check (2.26 checks none
    // while calling lambdas), so it may finish the evaluation first; then it fails as
    // interrupted all the same.
    let slow = "let fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2); in fib 35";
    let interrupt = |conf: &Path| {
        let mut child = p.command("nix", &["eval", "--expr", slow]).env("NIX_CONF_DIR", conf).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        child.wait().unwrap().code()
    };
    let plain = p.root.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("nix.conf"), "experimental-features = nix-command flakes\n").unwrap();
    let without = interrupt(&plain);
    let with = interrupt(&p.conf_dir());
    assert_eq!(with, without, "the same exit status with and without the plugin");
    let report = p.only_report();
    assert!(!report.meta.complete);
    assert_eq!(report.nodes[0].kind, Kind::Interrupted);
    assert!(report.nodes[0].cost.function_calls > 10_000, "it had been evaluating for a while");
}
