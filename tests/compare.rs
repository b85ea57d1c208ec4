//! `compare` on real Nix: a flake in git whose second commit makes one output's `fib` bigger.
//! The comparison names exactly that output, with the exact call difference, and a gate fails.

mod common;
use common::*;

/// The fncalls change of `path` in a `compare --format json` document.
fn fncalls_delta(v: &serde_json::Value, path: &str) -> f64 {
    let p = v["paths"].as_array().unwrap().iter().find(|p| p["path"].as_array().unwrap().join_names() == path).unwrap();
    p["changes"][0]["delta"].as_f64().unwrap()
}

#[test]
fn bench_profiles_both_refs_alternately_and_gates() {
    let (repo, base_rev) = two_commits();
    let r = repo.path();
    let work = tempfile::tempdir().unwrap();
    let base = format!("git+file://{}?rev={base_rev}", r.display());
    let new = format!("git+file://{}", r.display());
    let out = cli()
        .args(["bench", &base, &new, "--runs", "2", "--dir", "b", "--format", "json", "--no-progress"])
        .current_dir(work.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let order: Vec<&str> = stderr.lines().filter_map(|l| l.strip_prefix("bench: ")).map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(order, ["base run 1/2", "new run 1/2", "new run 2/2", "base run 2/2"], "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["base_runs"].as_u64(), v["new_runs"].as_u64()), (Some(2), Some(2)));
    assert_eq!(fncalls_delta(&v, "lib.a"), 1220.0);
    assert_eq!(fncalls_delta(&v, "lib.b"), 0.0);
    let wall = v["totals"].as_array().unwrap().iter().find(|c| c["metric"] == "wall").unwrap();
    assert!(wall["p"].as_f64().is_some(), "two runs a side: wall time is tested");
    for side in ["base", "new"] {
        let mut reports: Vec<String> = std::fs::read_dir(work.path().join("b").join(side)).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        reports.sort();
        assert_eq!(reports, ["run-0.json", "run-1.json"]);
    }
    // The gate, in the same command.
    let out = cli()
        .args(["bench", &base, &new, "--runs", "1", "--dir", "b", "--fail-on", "lib.*:fncalls:+10%", "--no-progress"])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 broken rule:\n  lib.a: fncalls"));
}

#[test]
fn a_two_commit_flake_names_the_output_that_grew() {
    let (repo, base_rev) = two_commits();
    let r = repo.path();

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for (side, reference) in [("base", format!("git+file://{}?rev={base_rev}", r.display())), ("new", format!("git+file://{}", r.display()))] {
        std::fs::create_dir(w.join(side)).unwrap();
        let out = cli().args(["profile", &reference, "--no-progress", "-o"]).arg(w.join(side).join("r.json")).output().unwrap();
        assert!(out.status.success(), "{side}: {}", String::from_utf8_lossy(&out.stderr));
    }

    let out = cli().args(["compare", "base", "new", "--format", "json"]).current_dir(w).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fncalls = |path: &str| fncalls_delta(&v, path);
    // fib n makes 2·F(n+1) − 1 lambda calls: 3193 for fib 16, 1973 for fib 15.
    assert_eq!(fncalls("lib.a"), 1220.0);
    assert_eq!(fncalls("lib.b"), 0.0);
    assert_eq!(fncalls("lib.c"), 0.0);
    assert_eq!(v["totals_comparable"], true);
    assert_eq!(v["totals"][0]["delta"].as_f64(), Some(1220.0), "the totals moved by exactly lib.a's difference");

    // A gate over the outputs fails, naming lib.a only.
    let out = cli().args(["compare", "base", "new", "--fail-on", "lib.*:fncalls:+10%"]).current_dir(w).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 broken rule:\n  lib.a: fncalls 1.97k → 3.19k"), "{text}");
}

trait JoinNames {
    fn join_names(&self) -> String;
}

impl JoinNames for Vec<serde_json::Value> {
    fn join_names(&self) -> String {
        self.iter().map(|s| s.as_str().unwrap()).collect::<Vec<_>>().join(".")
    }
}
