//! `nix-evalcost flamegraph` on fixed reports: exact folded stacks, SVGs that parse as XML
//! with the expected frames, and a differential on two known inputs.

#[path = "common/fixtures.rs"]
mod fixtures;
use std::path::Path;
use std::process::{Command, Output};

fn cli(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nix-evalcost")).args(args).current_dir(cwd).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn runs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fixtures::write_runs(dir.path(), 3);
    dir
}

#[test]
fn folded_stacks_are_exact_means() {
    let d = runs();
    let out = ok(&cli(&["flamegraph", "run-0.json", "run-1.json", "run-2.json", "--metric", "thunks", "--folded"], d.path()));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"packages;x86_64-linux;big 90000"), "{out}");
    assert!(lines.contains(&"legacyPackages;x86_64-linux;tools;fmt 700"), "{out}");
    assert!(lines.contains(&"<unattributed> 40"), "{out}");
    // Zero-cost nodes (lib.fib) are left out; the hostile name is one frame on one line.
    assert!(!out.contains("fib"));
    assert_eq!(lines.iter().filter(|l| l.contains("evil")).count(), 1);
    // wall of `big` is 300, 302, 304 ms: the mean is drawn.
    let out = ok(&cli(&["flamegraph", ".", "--folded"], d.path()));
    assert!(out.lines().any(|l| l == "packages;x86_64-linux;big 302000000"), "{out}");
    // The total of the graph is the process total.
    let total: u64 = out.lines().map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap()).sum();
    let expect: u64 = (0..3).map(|r| fixtures::report(r).totals.wall_ns).sum::<u64>() / 3;
    assert!(total.abs_diff(expect) <= 12, "{total} vs {expect}"); // rounding, one unit per stack
}

fn frames(svg: &str) -> Vec<String> {
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() }; // inferno writes the SVG 1.1 DOCTYPE
    let doc = roxmltree::Document::parse_with_options(svg, options).expect("the SVG is well-formed XML");
    doc.descendants().filter(|n| n.has_tag_name("title")).filter_map(|n| n.text()).map(str::to_string).collect()
}

#[test]
fn svg_is_xml_with_the_expected_frames() {
    let d = runs();
    let svg = ok(&cli(&["flamegraph", ".", "--metric", "alloc"], d.path()));
    let titles = frames(&svg);
    assert!(titles.iter().any(|t| t.starts_with("big (") && t.contains("bytes")), "{titles:?}");
    assert!(titles.iter().any(|t| t.starts_with("<unattributed>")), "{titles:?}");
    // The hostile name survives as text: escaped in the XML, whole in the parsed title.
    assert!(titles.iter().any(|t| t.contains("<script>alert(1)</script>")), "{titles:?}");
    assert!(!svg.contains("<script>alert"), "raw markup in the SVG");
    assert!(svg.contains("github:example/flake — alloc: bytes allocated on the GC heap (bytes)"), "title names the flake, the metric and its unit");
    assert!(svg.contains("mean of 3 runs"));
}

#[test]
fn differential_marks_growth_and_shrinkage() {
    let d = runs();
    let mut grown = fixtures::report(0);
    let mut shrunk = fixtures::report(0);
    for node in &mut grown.nodes {
        if node.path.last().is_some_and(|n| n == "big") {
            node.cost.function_calls *= 2; // 60 000 → 120 000
        }
        if node.path.last().is_some_and(|n| n == "fmt") {
            node.cost.function_calls = 50; // 250 → 50
        }
    }
    shrunk.nodes.retain(|n| n.id < 12);
    nix_evalcost_core::report_io::write_report(&d.path().join("base.json"), &shrunk).unwrap();
    nix_evalcost_core::report_io::write_report(&d.path().join("new.json"), &grown).unwrap();
    let svg = ok(&cli(&["flamegraph", "--diff", "base.json", "new.json", "--metric", "fncalls"], d.path()));
    let titles = frames(&svg);
    let title = |name: &str| titles.iter().find(|t| t.starts_with(&format!("{name} ("))).unwrap_or_else(|| panic!("{name}: {titles:?}")).clone();
    assert!(title("big").contains("+"), "big grew: {}", title("big"));
    assert!(title("fmt").contains("-"), "fmt shrank: {}", title("fmt"));
    assert!(svg.contains("red grew, blue shrank"));
}

#[test]
fn bad_flamegraph_input() {
    let d = runs();
    let out = cli(&["flamegraph", ".", "--metric", "rss"], d.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gauge"));
    std::fs::write(d.path().join("bad.json"), "{").unwrap();
    let out = cli(&["flamegraph", "bad.json", "-o", "x.svg"], d.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(!d.path().join("x.svg").exists());
}
