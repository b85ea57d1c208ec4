//! The directory collector (`history ingest --watch`, `serve --watch`): each poll stores the
//! reports that appeared or changed in a directory since the last one.
//!
//! Writers should rename a finished report into place (the plugin does); one that writes in
//! place is survived: a file that does not parse yet is retried at each poll until it has not
//! changed for [`SETTLE`], then reported once and skipped.

use crate::record::{Evaluation, Output};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long an unreadable report may stay unchanged before it is given up on.
pub const SETTLE: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Collector {
    /// Files already handled, by (modification time, length): changed files are read again.
    seen: HashMap<PathBuf, (SystemTime, u64)>,
}

/// What one poll found.
#[derive(Default)]
pub struct Poll {
    pub records: Vec<(Evaluation, Vec<Output>)>,
    /// One line per report given up on.
    pub skipped: Vec<String>,
}

impl Collector {
    pub fn poll(&mut self, dir: &Path) -> Poll {
        let mut found = Poll::default();
        let mut files = Vec::new();
        report_files(dir, &mut files);
        for file in files {
            let Ok(meta) = std::fs::metadata(&file) else { continue };
            let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
            if self.seen.get(&file) == Some(&stamp) {
                continue;
            }
            match crate::read_record(&file) {
                Ok(record) => {
                    found.records.push(record);
                    self.seen.insert(file, stamp);
                }
                Err(e) if stamp.0.elapsed().is_ok_and(|age| age > SETTLE) => {
                    found.skipped.push(e);
                    self.seen.insert(file, stamp);
                }
                Err(_) => {} // still being written: next poll
            }
        }
        found
    }
}

/// `*.json` and `*.json.gz` under `dir` (not hidden: writers' temporary files are), sorted.
fn report_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            report_files(&path, files);
        } else if name.ends_with(".json") || name.ends_with(".json.gz") {
            files.push(path);
        }
    }
}
