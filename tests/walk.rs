//! The plugin's walk, on real Nix: exact counts, conservation against NIX_SHOW_STATS, errors,
//! the walk policy, systems, the report file.

mod common;
use common::*;
use nix_evalcost_core::cost::Cost;
use nix_evalcost_core::report::Kind;
use serde_json::Value;

/// Number of calls naive fib makes: 2*F(n+1) - 1.
fn fib_calls(n: u64) -> u64 {
    let (mut a, mut b) = (0u64, 1u64); // F(0), F(1)
    for _ in 0..n + 1 {
        (a, b) = (b, a + b);
    }
    2 * a - 1
}

#[test]
fn fib_output_is_charged_its_exact_calls() {
    let flake = flake_with(FIB, "{ lib.fib15 = fib 15; lib.fib10 = fib 10; }");
    let run = profile(&flake.url(), &[]);
    run.assert_success();
    let report = run.report();
    for (path, n) in [("lib.fib15", 15), ("lib.fib10", 10)] {
        let node = node(&report, path);
        let calls = fib_calls(n);
        assert_eq!(node.kind, Kind::Number);
        // every call evaluates `n < 2`; every inner call `n - 1` and `n - 2`: all are primops.
        assert_eq!(node.cost.function_calls, calls, "{path}");
        assert_eq!(node.cost.primop_calls, 2 * calls - 1, "{path}");
        // the arguments `n - 1` and `n - 2` of each inner call are thunks.
        if thunks_readable(&report) {
            assert_eq!(node.cost.thunks, calls - 1, "{path}");
        }
    }
    assert_eq!(fib_calls(15), 1973);
}

fn stat(stats: &Value, pointer: &str) -> u64 {
    stats.pointer(pointer).and_then(Value::as_u64).unwrap_or_else(|| panic!("no {pointer} in {stats}"))
}


#[test]
fn conservation_and_totals_match_nix_show_stats() {
    let flake = flake_with(
        &format!("{FIB} sys = \"x86_64-linux\";"),
        &format!(
            "{{ packages.x86_64-linux = {{ a = {}; b = {}; }}; lib.f = fib 12; lib.l = builtins.genList (x: x * 2) 100; \
              legacyPackages.x86_64-linux.s = {{ recurseForDerivations = true; c = {}; }}; lib.bad = throw \"no\"; }}",
            mk_drv("x86_64-linux", "a"),
            mk_drv("x86_64-linux", "b"),
            mk_drv("x86_64-linux", "c"),
        ),
    );
    let (run, stats) = nix_eval_with_stats(&walk_expr(&flake, "systems = [ \"x86_64-linux\" ];"), &[]);
    run.assert_success();
    let report = run.report();
    let t = &report.totals;
    let s = &report.sizes;

    // Totals are what Nix itself reports for the same process.
    if thunks_readable(&report) {
        assert_eq!(t.thunks, stat(&stats, "/nrThunks"));
    }
    assert_eq!(t.function_calls, stat(&stats, "/nrFunctionCalls"));
    assert_eq!(t.primop_calls, stat(&stats, "/nrPrimOpCalls"));
    assert_eq!(t.lookups, stat(&stats, "/nrLookups"));
    assert_eq!(t.values, stat(&stats, "/values/number"));
    assert_eq!(t.values_bytes(s), stat(&stats, "/values/bytes"));
    assert_eq!(t.envs, stat(&stats, "/envs/number"));
    assert_eq!(t.values_in_envs, stat(&stats, "/envs/elements"));
    assert_eq!(t.envs_bytes(s), stat(&stats, "/envs/bytes"));
    assert_eq!(t.list_elems, stat(&stats, "/list/elements"));
    assert_eq!(t.list_bytes(s), stat(&stats, "/list/bytes"));
    assert_eq!(t.list_concats, stat(&stats, "/list/concats"));
    assert_eq!(t.attrsets, stat(&stats, "/sets/number"));
    assert_eq!(t.attrs_in_attrsets, stat(&stats, "/sets/elements"));
    assert_eq!(t.attrsets_bytes(s), stat(&stats, "/sets/bytes"));
    assert_eq!(t.op_updates, stat(&stats, "/nrOpUpdates"));
    assert_eq!(t.op_update_values_copied, stat(&stats, "/nrOpUpdateValuesCopied"));
    assert_eq!(t.avoided, stat(&stats, "/nrAvoided"));
    // After the builtin returns, `nix eval --expr` roots its result (allocRootValue in the
    // InstallableAttrPath constructor, libcmd/installable-attr-path.cc): one 32-byte GC
    // allocation that happens after our last reading.
    assert_eq!(stat(&stats, "/gc/totalBytes") - t.gc_bytes, 32);
    assert_eq!(s.value, stat(&stats, "/sizes/Value"));
    assert_eq!(s.env, stat(&stats, "/sizes/Env"));

    // Conservation: every unit of every counter is charged exactly once.
    assert_eq!(report.charged_sum(), *t);
    // Gauges read at one moment: the peak resident size is never below the current one.
    for gauges in report.nodes.iter().map(|n| &n.after).chain([&report.end]) {
        assert!(gauges.rss_bytes > 0, "{gauges:?}");
        assert!(gauges.peak_rss_bytes >= gauges.rss_bytes, "{gauges:?}");
    }
    // The walk did real work and loading the flake is unattributed.
    assert!(node(&report, "lib.f").cost.function_calls == fib_calls(12));
    assert!(report.unattributed.values > 0);
    assert!(report.nodes.iter().all(|n| n.calls == 1));
}

#[test]
fn phases_cover_the_run() {
    let flake = flake_with(FIB, "{ lib.x = fib 10; }");
    let run = profile(&flake.url(), &[]);
    run.assert_success();
    let report = run.report();
    let names: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["fetch-lock", "outputs", "walk", "total"]);
    let walk = report.phase("walk").unwrap();
    assert_eq!(walk.cost.function_calls, fib_calls(10));
    let mut parts = Cost::default();
    for p in &report.phases[..3] {
        parts.add(&p.cost);
    }
    let total = report.phase("total").unwrap().cost;
    assert!(parts.function_calls <= total.function_calls && parts.wall_ns <= total.wall_ns);
    assert!(total.wall_ns <= report.totals.wall_ns);
    // One clock origin (plugin load) for wall and CPU time: the process cannot have spent more
    // CPU than wall time on all cores. (Counted from process start, unattributed CPU was 5x
    // the unattributed wall time on a small flake.)
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let (cpu, wall) = (report.unattributed.cpu_ns, report.unattributed.wall_ns);
    assert!(cpu <= wall * cores + 1_000_000, "unattributed cpu {cpu} ns against wall {wall} ns");
    assert!(report.totals.cpu_ns <= report.totals.wall_ns * cores + 1_000_000, "{:?}", report.totals);
}

#[test]
fn errors_are_recorded_and_the_walk_goes_on() {
    let sys = current_system();
    let good = mk_drv(&sys, "good");
    let flake = flake_with(
        "",
        &format!(
            "{{ packages.{sys} = {{ a-throw = throw \"boom\"; b-assert = assert 1 == 2; {good}; c-abort = abort \"stop\"; \
               d-missing = {{ }}.nope; e-loop = let x = x; in x; f-type = 1 + \"a\"; g-good = {good}; \
               h-drv-fails = derivation {{ name = \"h\"; system = \"{sys}\"; builder = throw \"no builder\"; }}; }}; }}"
        ),
    );
    let run = profile(&flake.url(), &[]);
    run.assert_success();
    let stdout = run.stdout();
    assert!(stdout.contains("7 errors"), "{stdout}");
    let report = run.report();
    let expect = [
        ("a-throw", "boom"),
        ("b-assert", "an integer with value '1' is not equal to an integer with value '2'"),
        ("c-abort", "evaluation aborted with the following error message: 'stop'"),
        ("d-missing", "attribute 'nope' missing"),
        ("e-loop", "infinite recursion encountered"),
        ("f-type", "cannot add a string to an integer"),
    ];
    for (name, message) in expect {
        let n = node(&report, &format!("packages.{sys}.{name}"));
        assert_eq!(n.kind, Kind::Error, "{name}");
        let error = n.error.as_deref().unwrap();
        assert!(error.contains(message), "{name}: {error}");
        assert!(!error.contains('\x1b'), "ANSI left in {error:?}");
    }
    let h = node(&report, &format!("packages.{sys}.h-drv-fails"));
    assert!(h.error.as_deref().unwrap().contains("no builder"));
    let g = node(&report, &format!("packages.{sys}.g-good"));
    assert_eq!(g.kind, Kind::Derivation);
    assert!(g.drv_path.as_deref().unwrap().ends_with("-good.drv"));
    assert_eq!(report.charged_sum(), report.totals);
}

#[test]
fn recurse_for_derivations_is_respected() {
    let sys = current_system();
    let d = |n: &str| mk_drv(&sys, n);
    let flake = flake_with(
        "",
        &format!(
            "{{ legacyPackages.{sys} = {{ top = {}; yes = {{ recurseForDerivations = true; p = {}; deeper = {{ recurseForDerivations = true; q = {}; }}; }}; \
               no = {{ p = {}; }}; off = {{ recurseForDerivations = false; p = {}; }}; }}; \
               other = {{ recurseForDerivations = true; r = {}; }}; plainset = {{ s = {}; }}; }}",
            d("top"), d("p"), d("q"), d("p"), d("p"), d("r"), d("s")
        ),
    );
    let run = profile(&flake.url(), &[]);
    run.assert_success();
    let mut got = paths(&run.report());
    got.sort();
    let lp = format!("legacyPackages.{sys}");
    let mut want = vec![
        "legacyPackages".to_string(),
        lp.clone(),
        format!("{lp}.no"),
        format!("{lp}.off"),
        format!("{lp}.top"),
        format!("{lp}.yes"),
        format!("{lp}.yes.deeper"),
        format!("{lp}.yes.deeper.q"),
        format!("{lp}.yes.p"),
        "other".into(),
        "other.r".into(),
        "plainset".into(),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn systems_are_selected() {
    let outputs = format!(
        "{{ packages.x86_64-linux.a = {}; packages.aarch64-darwin.a = {}; formatter.aarch64-darwin = {}; }}",
        mk_drv("x86_64-linux", "a"),
        mk_drv("aarch64-darwin", "a"),
        mk_drv("aarch64-darwin", "fmt")
    );
    let flake = flake_with("", &outputs);
    let systems_of = |args: &[&str]| {
        let run = profile(&flake.url(), args);
        run.assert_success();
        let mut s: Vec<String> = run.report().nodes.iter().filter_map(|n| n.system.clone()).collect();
        s.sort();
        s.dedup();
        s
    };
    assert_eq!(systems_of(&[]), vec![current_system()]);
    assert_eq!(systems_of(&["--systems", "aarch64-darwin"]), vec!["aarch64-darwin"]);
    assert_eq!(systems_of(&["--systems", "all"]), vec!["aarch64-darwin", "x86_64-linux"]);
    let run = profile(&flake.url(), &["--systems", "aarch64-darwin"]);
    let report = run.report();
    assert_eq!(report.meta.systems, vec!["aarch64-darwin"]);
    assert_eq!(node(&report, "formatter.aarch64-darwin").kind, Kind::Derivation);
}

#[test]
fn configurations_are_charged_their_toplevel() {
    let sys = current_system();
    let flake = flake_with(
        FIB,
        &format!(
            "{{ nixosConfigurations.host = {{ config.system.build.toplevel = builtins.seq (fib 8) ({}); }}; \
               nixosConfigurations.plain = {{ config.system.build.toplevel = {}; }}; \
               nixosConfigurations.nope = {{ config = {{ }}; }}; }}",
            mk_drv(&sys, "toplevel"),
            mk_drv(&sys, "toplevel"),
        ),
    );
    let run = profile(&flake.url(), &[]);
    run.assert_success();
    let report = run.report();
    let host = node(&report, "nixosConfigurations.host");
    assert_eq!(host.kind, Kind::Derivation);
    // The same derivation without fib is the baseline (the `derivation` wrapper makes calls too).
    let plain = node(&report, "nixosConfigurations.plain");
    assert_eq!(host.cost.function_calls, fib_calls(8) + plain.cost.function_calls);
    assert!(host.drv_path.as_deref().unwrap().ends_with("-toplevel.drv"));
    assert!(node(&report, "nixosConfigurations.nope").error.as_deref().unwrap().contains("'system' missing"));
}

#[test]
fn report_records_flake_and_meta_and_round_trips() {
    let flake = flake_with("", "{ lib.x = 1; }");
    let run = profile(&flake.url(), &[]);
    run.assert_success();
    let report = run.report();
    let f = report.meta.flake.as_ref().unwrap();
    assert_eq!(f.original_ref, flake.url());
    assert!(f.nar_hash.as_deref().unwrap().starts_with("sha256-"), "{f:?}");
    assert!(f.last_modified.is_some());
    assert!(f.locked_url.starts_with("path:"), "{}", f.locked_url);
    assert!(report.meta.complete);
    assert!(report.meta.nix_version.starts_with("2."));
    assert_eq!(report.meta.mode, "walk");
    assert!(report.meta.argv.iter().any(|a| a == "profile"));
    assert!(!report.meta.hostname.is_empty());
    // A report survives a write and read unchanged, gzipped or not.
    let dir = tempfile::tempdir().unwrap();
    for name in ["again.json", "again.json.gz"] {
        let p = dir.path().join(name);
        nix_evalcost_core::report_io::write_report(&p, &report).unwrap();
        assert_eq!(nix_evalcost_core::report_io::read_report(&p).unwrap(), report);
    }
}

#[test]
fn gzip_report_when_the_name_ends_in_gz() {
    let flake = flake_with("", "{ lib.x = 1; }");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json.gz");
    let status = cli()
        .args(["profile", &flake.url(), "--no-progress", "-o"])
        .arg(&out)
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    assert_eq!(&std::fs::read(&out).unwrap()[..2], &[0x1f, 0x8b]);
    assert_eq!(nix_evalcost_core::report_io::read_report(&out).unwrap().nodes.len(), 2);
    // Only the report is left behind: no staging files.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn measure_charges_a_label_and_returns_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("measure.json");
    let out = std::process::Command::new("nix")
        .args(["--option", "plugin-files"])
        .arg(plugin())
        .args(["eval", "--expr"])
        .arg(format!("let {FIB} in builtins.evalcostMeasure \"fib\" (fib 12) + builtins.evalcostMeasure \"fib\" (fib 11)"))
        .env("NIX_EVALCOST_REPORT", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "233"); // fib 12 + fib 11
    let report = nix_evalcost_core::report_io::read_report(&path).unwrap();
    assert_eq!(report.meta.mode, "measure");
    let fib = node(&report, "fib");
    assert_eq!(fib.calls, 2);
    assert_eq!(fib.kind, Kind::Measure);
    assert_eq!(fib.cost.function_calls, fib_calls(12) + fib_calls(11));
    assert_eq!(report.charged_sum(), report.totals);
}

#[test]
fn measure_keeps_errors_and_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("measure.json");
    let out = std::process::Command::new("nix")
        .args(["--option", "plugin-files"])
        .arg(plugin())
        .args(["eval", "--expr", "builtins.tryEval (builtins.evalcostMeasure \"x\" (throw \"inner\"))"])
        .env("NIX_EVALCOST_REPORT", &report_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{ success = false; value = false; }");
    // The measure node records the error it saw, and the caller still got it.
    let report = nix_evalcost_core::report_io::read_report(&report_path).unwrap();
    let x = node(&report, "x");
    assert_eq!(x.kind, Kind::Measure);
    let error = x.error.as_deref().expect("the measure node records its error");
    assert!(error.contains("inner"), "{error}");
    assert!(!error.contains('\x1b'), "no ANSI escapes: {error:?}");
}

#[test]
fn disabled_plugin_is_a_no_op() {
    let run = |expr: &str| {
        std::process::Command::new("nix")
            .args(["--option", "plugin-files"])
            .arg(plugin())
            .args(["--extra-experimental-features", "nix-command flakes", "eval", "--expr", expr])
            .env("NIX_EVALCOST", "0")
            .env("NIX_EVALCOST_REPORT", "/nonexistent/never-written.json")
            .output()
            .unwrap()
    };
    let out = run("builtins.evalcostMeasure \"x\" (1 + 2)");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    let out = run("builtins.evalcostWalk { flake = \"path:/\"; report = \"/tmp/x.json\"; }");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NIX_EVALCOST=0"));
}

/// Asked for a summary (what `profile` passes), the plugin says it with the report's written
/// line on the progress pipe, rendered from the report in its memory: the same text the core
/// renders from the written file, so the CLI need not read the report back.
#[test]
fn the_written_line_carries_the_summary_of_the_written_report() {
    use nix_evalcost_core::protocol::{ProgressLine, PROGRESS_FD, PROGRESS_FD_VAR};
    use nix_evalcost_core::summary::SummarySpec;
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;

    let flake = flake_with(FIB, "{ lib.fib15 = fib 15; lib.fib10 = fib 10; lib.\"it's \\\"odd\\\"\" = fib 3; }");
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let spec = SummarySpec {
        metrics: vec!["fncalls".into(), "thunks".into()],
        inclusive: false,
        depth: None,
        filters: vec!["lib.*".into()],
        sort: "median".into(),
        top: 2,
        file: report_path.display().to_string(),
        width: usize::MAX,
        color: false,
    };
    let quoted = nix_evalcost_core::attrpath::nix_string(&spec.to_json());
    let expr = walk_expr(&flake, &format!("summary = {quoted};")).replace("{report}", &report_path.display().to_string());
    let mut fds = [0; 2];
    // SAFETY: pipe fills two descriptors, owned below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let write_fd = writer.as_raw_fd();
    let mut command = std::process::Command::new("nix");
    command
        .args(["--option", "plugin-files"])
        .arg(plugin())
        .args(["--extra-experimental-features", "nix-command flakes", "eval", "--json", "--expr", &expr])
        .env(PROGRESS_FD_VAR, PROGRESS_FD.to_string());
    // SAFETY: dup2 is async-signal-safe.
    unsafe {
        command.pre_exec(move || if libc::dup2(write_fd, PROGRESS_FD) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    let mut child = command.spawn().unwrap();
    drop(writer);
    let mut lines = String::new();
    std::fs::File::from(reader).read_to_string(&mut lines).unwrap();
    assert!(child.wait().unwrap().success());
    let last = ProgressLine::parse(lines.lines().last().unwrap());
    assert!(last.written, "{lines}");
    let facts = last.facts.expect("the written line says what it wrote");
    assert!(facts.complete);
    let report = nix_evalcost_core::report_io::read_report(&report_path).unwrap();
    let rendered = spec.render(&report).unwrap();
    assert_eq!(facts.summary.as_deref(), Some(rendered.as_str()));
    // Ranked by fncalls, two rows: fib 15, then fib 10; the odd name is data, below the top.
    let rows: Vec<&str> = rendered.lines().filter(|l| l.contains("lib.")).collect();
    assert_eq!(rows.len(), 2, "{rendered}");
    assert!(rows[0].ends_with("lib.fib15") && rows[1].ends_with("lib.fib10"), "{rendered}");
}
