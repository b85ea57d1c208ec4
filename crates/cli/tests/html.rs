//! The HTML report in a real headless browser (Debian's chromium, installed by scripts/nix-env):
//! it loads with no script error, sorting and filtering work (the page's `#selftest` drives
//! its own table and reports into the DOM), hostile attribute names stay text, and a
//! screenshot is taken to look at.

#[path = "common/browser.rs"]
mod browser;
#[path = "common/fixtures.rs"]
mod fixtures;
use browser::{chromium, headless};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cli(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nix-evalcost")).args(args).current_dir(cwd).output().unwrap()
}

/// The page's DOM after its scripts ran, loaded with `#selftest`.
fn selftest(page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = headless(profile.path()).arg("--dump-dom").arg(format!("file://{}#selftest", page.display())).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screenshot(page: &Path, png: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let out = headless(profile.path())
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1400,1000")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(png.is_file(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_report_page_works_in_a_browser_and_keeps_hostile_names_inert() {
    if chromium().is_none() {
        eprintln!("skipped: no chromium (scripts/nix-env installs Debian's; the HTML is checked in a real browser there)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    fixtures::write_runs(d.path(), 3);
    let out = cli(&["report", ".", "--format", "html", "-o", "report.html"], d.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = d.path().join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.len() < 2 << 20);
    assert!(!html.contains("<script>alert"), "the hostile name is not markup in the file");

    let dom = selftest(&page);
    assert!(dom.contains("data-selftest=\"ok\""), "the page's self-test: {}", dom.lines().find(|l| l.contains("data-selftest")).unwrap_or(&dom[..dom.len().min(2000)]));
    // The hostile name is in the table as text (escaped by the DOM serialiser), never as markup.
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", &dom[..dom.len().min(3000)]);
    assert!(!dom.contains("<script>alert(1)"));

    let png = std::env::var_os("EVALCOST_SCREENSHOTS").map_or_else(|| d.path().join("report.png"), |dir| PathBuf::from(dir).join("report.png"));
    screenshot(&page, &png);
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000, "a real picture");
}

#[test]
fn the_comparison_page_puts_regressions_first() {
    if chromium().is_none() {
        eprintln!("skipped: no chromium (scripts/nix-env installs Debian's)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    for side in ["base", "new"] {
        std::fs::create_dir(d.path().join(side)).unwrap();
    }
    fixtures::write_runs(&d.path().join("base"), 2);
    for k in 0..2u64 {
        let mut r = fixtures::report(k);
        for n in r.nodes.iter_mut().filter(|n| n.path.last().is_some_and(|p| p == "hello")) {
            n.cost.function_calls *= 3;
        }
        nix_evalcost_core::report_io::write_report(&d.path().join(format!("new/run-{k}.json")), &r).unwrap();
    }
    let out = cli(&["compare", "base", "new", "--format", "html", "-o", "compare.html"], d.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = d.path().join("compare.html");
    let dom = selftest(&page);
    assert!(dom.contains("data-selftest=\"ok\""), "{}", dom.lines().find(|l| l.contains("data-selftest")).unwrap_or(""));
    // Sorted by change, descending: the output that grew is the first row.
    let first_row = dom.split("<tbody id=\"rows\">").nth(1).and_then(|t| t.split("</tr>").next()).unwrap_or("");
    assert!(first_row.contains("packages.x86_64-linux.hello"), "{first_row}");
    assert!(dom.contains("differential flamegraph"), "the flamegraph is embedded");
    if let Some(dir) = std::env::var_os("EVALCOST_SCREENSHOTS") {
        screenshot(&page, &PathBuf::from(dir).join("compare.png"));
    }
}
