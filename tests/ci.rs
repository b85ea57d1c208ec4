//! The CI recipe of docs/ci.md: its script, scripts/ci/evalcost-pr, on a two-commit git flake,
//! as the workflow runs it (the CLI on PATH, a step summary file, rules from the environment).

mod common;
use common::*;
use std::process::Command;

#[test]
fn the_pull_request_check_writes_its_files_and_fails_on_a_regression() {
    let (repo, base_rev) = two_commits();
    let summary = tempfile::NamedTempFile::new().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ci/evalcost-pr");
    let path = format!("{}:{}", bin().parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let run = |rules: &str| {
        Command::new(&script)
            .args([base_rev.as_str(), "2"])
            .current_dir(repo.path())
            .env("PATH", &path)
            .env("NIX_EVALCOST_PLUGIN", plugin())
            .env("EVALCOST_FAIL_ON", rules)
            .env("GITHUB_STEP_SUMMARY", summary.path())
            .output()
            .unwrap()
    };

    let out = run("lib.*:fncalls:+10%\nwall:+1000%");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a rule broke: {stderr}");
    let ci = repo.path().join("evalcost-ci");
    let markdown = std::fs::read_to_string(ci.join("summary.md")).unwrap();
    assert!(markdown.starts_with("### nix-evalcost: **rules broken**"), "{markdown}");
    assert!(markdown.contains("| lib.a | fncalls 1.97k → 3.19k"), "{markdown}");
    assert_eq!(std::fs::read_to_string(summary.path()).unwrap(), markdown, "the step summary gets the Markdown");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(ci.join("comparison.json")).unwrap()).unwrap();
    assert_eq!((json["base_runs"].as_u64(), json["new_runs"].as_u64()), (Some(2), Some(2)));
    let svg = std::fs::read_to_string(ci.join("diff.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains(">a ("), "a differential flamegraph of the outputs:\n{}", &svg[..svg.len().min(3000)]);

    // No rule broken: the check passes, and the summary says so.
    let out = run("lib.*:fncalls:+100%");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let markdown = std::fs::read_to_string(ci.join("summary.md")).unwrap();
    assert!(markdown.starts_with("### nix-evalcost: no rule broken"), "{markdown}");
}
