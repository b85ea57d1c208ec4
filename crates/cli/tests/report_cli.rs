//! The report commands on fixed reports (no Nix needed): every format snapshotted, hostile
//! names inert everywhere, bad input refused with one line and exit status 2.

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{write_runs, HOSTILE};
use std::path::Path;
use std::process::{Command, Output};

fn cli(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nix-evalcost")).args(args).current_dir(cwd).env("NO_COLOR", "1").output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Three runs in `runs/` of a temp dir.
fn runs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runs")).unwrap();
    write_runs(&dir.path().join("runs"), 3);
    dir
}

#[test]
fn table_snapshot() {
    let d = runs();
    insta::assert_snapshot!(ok(&cli(&["report", "runs", "--top", "6"], d.path())));
}

#[test]
fn single_run_table_snapshot() {
    let d = runs();
    insta::assert_snapshot!(ok(&cli(&["report", "runs/run-0.json", "--metric", "thunks", "--top", "5"], d.path())));
}

#[test]
fn markdown_snapshot() {
    let d = runs();
    insta::assert_snapshot!(ok(&cli(&["report", "runs", "--format", "markdown", "--top", "5"], d.path())));
}

#[test]
fn csv_snapshot() {
    let d = runs();
    insta::assert_snapshot!(ok(&cli(&["report", "runs", "--format", "csv", "--columns", "thunks", "--top", "5"], d.path())));
}

#[test]
fn json_snapshot() {
    let d = runs();
    let out = ok(&cli(&["report", "runs", "--format", "json", "--columns", "fncalls", "--top", "3"], d.path()));
    let out = out.replace(&d.path().display().to_string(), "TMP");
    insta::assert_snapshot!(out);
}

#[test]
fn openmetrics_snapshot() {
    let d = runs();
    insta::assert_snapshot!(ok(&cli(&["report", "runs", "--format", "openmetrics", "--columns", "alloc", "--top", "2"], d.path())));
}

#[test]
fn graph_text_snapshot() {
    let d = runs();
    insta::assert_snapshot!(ok(&cli(&["graph", "runs/run-0.json", "--metric", "thunks"], d.path())));
}

#[test]
fn graph_folded_ascii_snapshot() {
    let d = runs();
    insta::assert_snapshot!(ok(&cli(&["graph", "runs/run-0.json", "--min-share", "5", "--depth", "3", "--ascii"], d.path())));
}

#[test]
fn graph_ascii_is_ascii() {
    let d = runs();
    let mut r = fixtures::report(0);
    r.nodes.retain(|n| n.id < 5); // drop the hostile name, whose escapes are ASCII anyway
    nix_evalcost_core::report_io::write_report(&d.path().join("plain.json"), &r).unwrap();
    let out = ok(&cli(&["graph", "plain.json", "--ascii", "--min-share", "50"], d.path()));
    assert!(out.is_ascii(), "{out}");
    assert!(out.contains("`---") && out.contains("..."), "{out}");
}

#[test]
fn graph_dot_snapshot() {
    let d = runs();
    insta::assert_snapshot!(ok(&cli(&["graph", "runs/run-0.json", "--format", "dot", "--depth", "2"], d.path())));
}

#[test]
fn graph_json_snapshot() {
    let d = runs();
    insta::assert_snapshot!(ok(&cli(&["graph", "runs/run-0.json", "--format", "json", "--depth", "2", "--metric", "fncalls"], d.path())));
}

#[test]
fn info_snapshot() {
    let d = runs();
    insta::assert_snapshot!(ok(&cli(&["info", "runs/run-1.json"], d.path())));
}

#[test]
fn statistics_over_runs_are_exact() {
    let d = runs();
    let out = ok(&cli(&["report", "runs", "--format", "json", "--metric", "wall", "--columns", "thunks", "--filter", "packages.*.big"], d.path()));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = &v["rows"][0];
    assert_eq!(row["path"], serde_json::json!(["packages", "x86_64-linux", "big"]));
    // wall of `big` is 300, 302, 304 ms in runs 0, 1, 2.
    let wall = &row["stats"]["wall"];
    assert_eq!(wall["n"], 3);
    assert_eq!(wall["min"], 300_000_000);
    assert_eq!(wall["median"], 302_000_000);
    assert_eq!(wall["mean"], 302_000_000.0);
    assert_eq!(wall["p95"], 304_000_000);
    assert_eq!(wall["max"], 304_000_000);
    assert_eq!(row["stats"]["thunks"]["median"], 90_000);
    assert_eq!(v["rows"].as_array().unwrap().len(), 1);
}

#[test]
fn depth_folds_subtrees_into_inclusive_rows() {
    let d = runs();
    let out = ok(&cli(&["report", "runs/run-0.json", "--format", "json", "--metric", "thunks", "--depth", "1", "--top", "10"], d.path()));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let thunks = |p: &str| {
        v["rows"].as_array().unwrap().iter().find(|r| r["display_path"] == p).unwrap()["stats"]["thunks"]["median"].as_u64().unwrap()
    };
    assert_eq!(thunks("packages"), 1 + 3 + 120 + 90_000 + 5 + 300);
    assert_eq!(thunks("legacyPackages"), 1 + 30 + 4 + 700);
    assert_eq!(v["rows"].as_array().unwrap().len(), 3);
}

#[test]
fn hostile_names_are_inert_in_every_format() {
    let d = runs();
    for format in ["table", "markdown", "csv", "json", "openmetrics"] {
        let out = ok(&cli(&["report", "runs", "--format", format, "--top", "50"], d.path()));
        assert!(!out.contains('\x1b'), "{format}: raw ESC");
        assert_name_whole(&out, format);
        match format {
            "csv" => {
                let mut reader = csv::Reader::from_reader(out.as_bytes());
                let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
                assert!(rows.iter().all(|r| r.len() == rows[0].len()), "csv: ragged rows");
                assert!(rows.iter().all(|r| !r[0].starts_with(['=', '+', '-', '@'])), "csv: formula cell");
            }
            "json" => {
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                let names: Vec<&str> = v["rows"].as_array().unwrap().iter().filter_map(|r| r["path"][2].as_str()).collect();
                assert!(names.contains(&HOSTILE), "json keeps the name exactly");
            }
            "markdown" => {
                assert!(!out.contains("<script>"), "markdown: raw HTML");
                let columns = out.lines().find(|l| l.starts_with('|')).unwrap().matches('|').count();
                for l in out.lines().filter(|l| l.starts_with('|')) {
                    assert_eq!(l.replace("\\|", "").matches('|').count(), columns, "markdown: a name broke a row: {l}");
                }
            }
            "openmetrics" => {
                for l in out.lines().filter(|l| !l.starts_with('#')) {
                    let quotes = l.replace("\\\\", "").replace("\\\"", "").matches('"').count();
                    assert_eq!(quotes % 2, 0, "openmetrics: unbalanced quotes: {l}");
                }
            }
            _ => {}
        }
    }
    for format in ["text", "dot"] {
        let out = ok(&cli(&["graph", "runs/run-0.json", "--format", format], d.path()));
        assert!(!out.contains('\x1b'), "graph {format}: raw ESC");
        assert_name_whole(&out, format);
    }
    let out = ok(&cli(&["graph", "runs/run-0.json", "--format", "json"], d.path()));
    assert!(out.contains(&serde_json::to_string(HOSTILE).unwrap()), "graph json keeps the name exactly");
}

/// The hostile name holds a newline: it is shown, and never split over lines (every line with
/// its tail also has its head).
fn assert_name_whole(out: &str, format: &str) {
    let tails: Vec<&str> = out.lines().filter(|l| l.contains("alert")).collect();
    assert!(!tails.is_empty(), "{format}: the hostile row is missing");
    assert!(tails.iter().all(|l| l.contains("evil")), "{format}: the name was split over lines");
}

fn bad(args: &[&str], cwd: &Path) -> String {
    let out = cli(args, cwd);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "{args:?}: printed something");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    stderr
}

#[test]
fn bad_input_is_refused_with_one_line() {
    let d = runs();
    let p = d.path();
    let write = |name: &str, bytes: &[u8]| std::fs::write(p.join(name), bytes).unwrap();
    write("empty.json", b"");
    write("trunc.json", &std::fs::read(p.join("runs/run-0.json")).unwrap()[..300]);
    write("notreport.json", b"[1, 2, 3]");
    write("wrongschema.json", br#"{"schema": "other", "schema_version": 1, "meta": {}, "sizes": {"value":1,"env":1,"bindings":1,"attr":1,"pointer":1}, "totals": {}, "unattributed": {}, "end": {}, "nodes": []}"#);
    write("future.json", &std::fs::read(p.join("runs/run-0.json")).unwrap().replace_version());
    write("garbage.json.gz", &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]);
    let mut doubled = std::fs::read(p.join("runs/run-0.json")).unwrap();
    doubled.extend(b"{}");
    write("trailing.json", &doubled);
    let cases = [
        ("empty.json", "the file is empty"),
        ("trunc.json", "truncated at line 1"),
        ("notreport.json", "invalid type"),
        ("wrongschema.json", "not a nix-evalcost report"),
        ("future.json", "schema version 99 is not supported"),
        ("garbage.json.gz", "cannot decompress"),
        ("trailing.json", "trailing characters"),
        ("missing.json", "no such file"),
    ];
    for (file, expect) in cases {
        let line = bad(&["report", "runs", file], p);
        assert!(line.contains(file) && line.contains(expect), "{file}: {line}");
    }
    // graph and info read reports the same way.
    assert!(bad(&["graph", "trunc.json"], p).contains("trunc.json"));
    assert!(bad(&["info", "empty.json"], p).contains("empty.json"));
    // No output file is created when reading fails.
    bad(&["report", "empty.json", "-o", "out.md"], p);
    assert!(!p.join("out.md").exists());
    // Unknown metric, bad glob.
    assert!(bad(&["report", "runs", "--metric", "speed"], p).contains("choose one of"));
    assert!(bad(&["report", "runs", "--filter", "a..b"], p).contains("empty attribute name"));
    // info on a missing file says the OS error once.
    let missing = bad(&["info", "evalcost-report.json"], p);
    assert_eq!(missing.matches("No such file or directory").count(), 1, "{missing}");
}

#[test]
fn failing_to_write_output_is_a_failure_not_bad_input() {
    let d = runs();
    let out = cli(&["report", "runs", "-o", "no-such-dir/out.md"], d.path());
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot write") && stderr.contains("no-such-dir/out.md"), "{stderr}");
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
}

trait ReplaceVersion {
    fn replace_version(self) -> Vec<u8>;
}
impl ReplaceVersion for Vec<u8> {
    fn replace_version(self) -> Vec<u8> {
        String::from_utf8(self).unwrap().replace("\"schema_version\":1", "\"schema_version\":99").into_bytes()
    }
}

#[test]
fn mixed_revisions_are_refused_unless_asked() {
    let d = runs();
    let p = d.path();
    let mut other = fixtures::report(5);
    other.meta.flake.as_mut().unwrap().nar_hash = Some("sha256-BBBB".into());
    nix_evalcost_core::report_io::write_report(&p.join("runs/other-rev.json"), &other).unwrap();
    let line = bad(&["report", "runs"], p);
    assert!(line.contains("flake revisions") && line.contains("--allow-mixed"), "{line}");
    let out = ok(&cli(&["report", "runs", "--allow-mixed"], p));
    assert!(out.contains("4 runs of 2 revisions"), "{out}");
}

#[test]
fn output_file_is_written_whole() {
    let d = runs();
    let out = cli(&["report", "runs", "--format", "markdown", "-o", "summary.md"], d.path());
    assert!(out.status.success() && out.stdout.is_empty());
    let text = std::fs::read_to_string(d.path().join("summary.md")).unwrap();
    assert!(text.starts_with("### nix-evalcost"));
}
