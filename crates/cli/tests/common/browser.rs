//! Debian's chromium, headless, for the tests of pages (scripts/nix-env installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Chromium's flags for a closed machine: no sandbox (root), no network chatter; console
/// messages on stderr (`--enable-logging`), and 8 s of virtual time for the page's scripts.
pub fn headless(profile: &Path) -> Command {
    let mut c = Command::new(chromium().expect("chromium is installed"));
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=8000",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}
