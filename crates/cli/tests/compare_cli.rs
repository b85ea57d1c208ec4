//! `nix-evalcost compare` on fixed reports (no Nix needed): exact differences, lists apart,
//! gates and their exit statuses 0/1/2, Markdown and JSON snapshots, hostile names inert.

#[path = "common/fixtures.rs"]
mod fixtures;
use nix_evalcost_core::report::Report;
use std::path::Path;
use std::process::{Command, Output};

fn cli(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nix-evalcost")).args(args).current_dir(cwd).env("NO_COLOR", "1").output().unwrap()
}

/// The NEW side: `big` makes 10% more function calls, the hostile name 1% more, `hello` is
/// gone, `extra` appeared, `broken` is fixed (deterministic counters otherwise unchanged).
fn changed(run: u64) -> Report {
    let mut r = fixtures::report(run);
    for n in &mut r.nodes {
        if n.path.last().is_some_and(|p| p == "big") {
            n.cost.function_calls += 6_000;
            r.totals.function_calls += 6_000;
        }
        if n.path.last().is_some_and(|p| p == fixtures::HOSTILE) {
            n.cost.function_calls += 1; // a hostile name in every list it can reach
            r.totals.function_calls += 1;
        }
        if n.path.last().is_some_and(|p| p == "broken") {
            n.error = None;
            n.kind = nix_evalcost_core::report::Kind::Derivation;
        }
        if n.path.last().is_some_and(|p| p == "hello") {
            n.path = vec!["packages".into(), "x86_64-linux".into(), "extra".into()];
        }
    }
    r
}

/// base/ and new/, three runs each.
fn sides() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for side in ["base", "new"] {
        std::fs::create_dir(dir.path().join(side)).unwrap();
    }
    fixtures::write_runs(&dir.path().join("base"), 3);
    for k in 0..3 {
        nix_evalcost_core::report_io::write_report(&dir.path().join(format!("new/run-{k}.json")), &changed(k)).unwrap();
    }
    dir
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn the_output_that_grew_is_named_with_its_exact_difference() {
    let d = sides();
    let out = cli(&["compare", "base", "new"], d.path());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    assert!(text.starts_with("BASE 3 runs → NEW 3 runs; outputs were added or removed"), "{text}");
    let grew: Vec<&str> = text.lines().filter(|l| l.ends_with("packages.x86_64-linux.big")).collect();
    assert_eq!(grew.len(), 1, "{text}");
    for part in ["60.0k →      66.0k", "+6.00k", "+10.0%", "exact"] {
        assert!(grew[0].contains(part), "{part}: {}", grew[0]);
    }
    assert!(text.contains("2 outputs changed (fncalls)"), "{text}");
    assert!(!text.contains('\x1b'), "controls in names are made visible");
    assert!(text.contains("stopped failing (1):\n  packages.x86_64-linux.broken"), "{text}");
    assert!(text.contains("appeared (1):\n  packages.x86_64-linux.extra"), "{text}");
    assert!(text.contains("disappeared (1):\n  packages.x86_64-linux.hello"), "{text}");
    // Wall time: three runs a side, tested (exact p, since there are no ties).
    let wall = text.lines().find(|l| l.trim_start().starts_with("wall")).unwrap();
    assert!(wall.contains("p=") && wall.contains("shift"), "{wall}");
}

#[test]
fn gates_exit_1_and_list_the_offending_outputs_first() {
    let d = sides();
    let out = cli(&["compare", "base", "new", "--fail-on", "packages.*.*:fncalls:+5%", "--fail-on", "fncalls:+50%"], d.path());
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    assert!(text.contains("1 broken rule:\n  packages.x86_64-linux.big: fncalls 60.0k → 66.0k (+6.00k, +10.0%): breaks packages.*.*:fncalls:+5%\n"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 rule broken"));
    // Not past the limit: exit 0.
    let out = cli(&["compare", "base", "new", "--fail-on", "packages.*.*:fncalls:+10.5%"], d.path());
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn bad_rules_and_untestable_rules_exit_2_with_one_line() {
    let d = sides();
    let out = cli(&["compare", "base", "new", "--fail-on", "fncalls:5%"], d.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("bad rule 'fncalls:5%'"), "{stderr}");
    // A significance with one run a side cannot be judged: said, not passed.
    let out = cli(&["compare", "base/run-0.json", "new/run-0.json", "--fail-on", "wall:+1%@p<0.05"], d.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs at least 2 runs a side"));
    assert!(out.stdout.is_empty());
}

#[test]
fn markdown_snapshot() {
    let d = sides();
    let out = cli(&["compare", "base", "new", "--metrics", "fncalls,thunks,alloc", "--format", "markdown", "--fail-on", "packages.*.*:fncalls:+5%"], d.path());
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(!text.contains("<script>") && !text.contains('\x1b'), "hostile names are inert");
    insta::assert_snapshot!(text);
}

#[test]
fn json_snapshot() {
    let d = sides();
    let out = cli(&["compare", "base", "new", "--metrics", "fncalls,alloc", "--format", "json"], d.path());
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["totals_comparable"], false);
    // The exact difference, in the JSON.
    let big = v["paths"].as_array().unwrap().iter().find(|p| p["path"][2] == "big").unwrap();
    assert_eq!((big["changes"][0]["before"].as_f64(), big["changes"][0]["delta"].as_f64()), (Some(60_000.0), Some(6_000.0)));
    insta::assert_snapshot!(text);
}
