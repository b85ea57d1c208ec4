//! The `nix-evalcost` command on real Nix: the example flake, merged runs, bad input. (Stopping
//! it is tests/faults.rs.)

mod common;
use common::*;
use nix_evalcost_core::report::Kind;

fn example_flake() -> String {
    format!("path:{}/examples/flake", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn example_flake_profile_prints_a_table() {
    let html = tempfile::tempdir().unwrap();
    let page = html.path().join("report.html");
    let run = profile(&example_flake(), &["--metric", "fncalls", "--top", "5", "--html", page.to_str().unwrap()]);
    run.assert_success();
    // The HTML page of the same report: self-contained, with the outputs as data.
    let text = std::fs::read_to_string(&page).unwrap();
    assert!(text.starts_with("<!DOCTYPE html>") && text.contains("\"fib-table\"") && !text.contains("http"), "a self-contained page");
    assert!(text.contains("data:image/svg+xml;base64,"), "flamegraphs embedded");
    let stdout = run.stdout();
    let report = run.report();
    let sys = current_system();
    // The expensive output tops the table, the broken one is recorded, the hidden set is not walked.
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].ends_with("(12 derivations), 1 error"), "{stdout}");
    // The summary names the failing output and why.
    assert_eq!(lines[1], format!("  error: packages.{sys}.broken: packages.broken is broken on purpose"), "{stdout}");
    assert!(lines[3].starts_with("fncalls"), "{stdout}");
    assert!(lines[4].ends_with(&format!("packages.{sys}.fib-table")), "{stdout}");
    assert_eq!(lines.len(), 4 + 5, "{stdout}");
    assert!(node(&report, &format!("packages.{sys}.broken")).error.as_deref().unwrap().contains("broken on purpose"));
    assert_eq!(node(&report, &format!("apps.{sys}.hello")).kind, Kind::App);
    assert_eq!(node(&report, "lib.fib").kind, Kind::Function);
    assert_eq!(node(&report, &format!("legacyPackages.{sys}.tools.extra.profiler")).kind, Kind::Derivation);
    assert!(!paths(&report).iter().any(|p| p.contains("internal.helper")));
    assert!(!paths(&report).iter().any(|p| p.contains("aarch64-linux")));
    assert!(run.stderr().contains("report written to"));
}

/// `profile`'s table is the one `report` prints of the written file, wherever it was made: by
/// the plugin from the report in its memory (one nix, `-j 1`), or by the CLI from the file read
/// back (with `--html`, which needs the report; `-j 2`, whose report the CLI joins).
#[test]
fn the_table_profile_prints_is_the_table_of_the_written_report() {
    let table_of = |stdout: &str| stdout.lines().skip_while(|l| !l.starts_with("fncalls")).map(str::to_string).collect::<Vec<_>>();
    let pages = tempfile::tempdir().unwrap();
    let page = pages.path().join("r.html");
    let html = ["--html", page.to_str().unwrap()];
    for jobs in [&[][..], &["-j", "1"], &html, &["-j", "2"]] {
        let run = profile(&example_flake(), &[&["--metric", "fncalls", "--top", "6"], jobs].concat());
        run.assert_success();
        let printed = table_of(&run.stdout());
        let out = cli().args(["report", "--metric", "fncalls", "--top", "6"]).arg(&run.report_path).output().unwrap();
        assert!(out.status.success());
        let of_file = table_of(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(printed.len(), 1 + 6, "{jobs:?}: {printed:#?}");
        assert_eq!(printed, of_file, "{jobs:?}");
    }
}

#[test]
fn report_merges_real_runs() {
    let flake = flake_with(FIB, "{ lib.a = fib 10; lib.b = fib 5; }");
    let (first, second) = (profile(&flake.url(), &[]), profile(&flake.url(), &[]));
    first.assert_success();
    second.assert_success();
    let out = cli()
        .args(["report", "--metric", "fncalls"])
        .arg(&first.report_path)
        .arg(&second.report_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&format!("{}: 2 runs, 3 paths", flake.url())), "{stdout}");
    // fib 10 makes 177 calls in both runs: median, p95, min and max are all 177, n is 2.
    let row: Vec<&str> = stdout.lines().find(|l| l.ends_with("lib.a")).unwrap().split_whitespace().collect();
    assert_eq!(row[..5], ["177", "177", "177", "177", "2"], "{stdout}");
}

fn one_line_error(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let last = stderr.lines().last().unwrap_or("").to_string();
    assert!(last.starts_with("nix-evalcost: error: "), "{stderr}");
    last
}

#[test]
fn wrong_flake_ref_fails_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("r.json");
    let out = cli()
        .args(["profile", "path:/nonexistent/flake", "--no-progress", "-o"])
        .arg(&out_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_error(&out);
    // Nix's own words differ: "does not exist" (2.26), "opening file …: No such file" (2.35).
    let says_missing = line.contains("does not exist") || line.contains("No such file or directory");
    assert!(line.contains("path:/nonexistent/flake") && says_missing, "{line}");
    assert_file_absent(&out_file);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no staging file left");
}

#[test]
fn missing_plugin_and_missing_nix_are_explained() {
    let out = cli().args(["profile", "--plugin", "/nope/libnix_evalcost.so"]).output().unwrap();
    assert!(one_line_error(&out).contains("--plugin"));
    let out = cli().args(["profile", "--nix", "/nope/nix"]).output().unwrap();
    let line = one_line_error(&out);
    assert!(line.contains("/nope/nix") && line.contains("--nix"), "{line}");
    // A file that is not our plugin.
    let out = cli().args(["profile", "--plugin", "/bin/sh"]).output().unwrap();
    assert!(one_line_error(&out).contains("not a nix-evalcost plugin"));
}

#[test]
fn bad_reports_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"schema\": \"nix-evalcost/report\", \"schema_version\": 1, \"meta\": {").unwrap();
    let out = cli().arg("report").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let line = one_line_error(&out);
    assert!(line.contains("bad.json") && line.contains("truncated"), "{line}");
    assert!(out.stdout.is_empty());
    let out = cli().args(["report", "--metric", "bogus", "x.json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose one of: wall"));
}

