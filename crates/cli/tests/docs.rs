//! The documentation's metric lists are the core's one table, in its order: a metric added to
//! the table and not to the docs (as `calls` once was) fails here.

use nix_evalcost_core::metric;
use std::path::Path;

/// The words of the first "Metrics: `...`" list in a document of the repository.
fn listed_metrics(doc: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let start = text.find("Metrics: `").unwrap_or_else(|| panic!("{doc} has no \"Metrics: `...`\" list")) + "Metrics: `".len();
    let end = start + text[start..].find('`').unwrap();
    text[start..end].split_whitespace().map(str::to_string).collect()
}

#[test]
fn readme_and_report_docs_list_every_metric() {
    for doc in ["README.md", "docs/report-cli.md"] {
        assert_eq!(listed_metrics(doc), metric::names(), "{doc}'s metric list differs from the core's table");
    }
}
