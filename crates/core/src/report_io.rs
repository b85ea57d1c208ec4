//! Reading and writing report files: JSON, gzipped when the name ends in `.gz`, written
//! atomically (a temporary file in the same directory, renamed into place).

use crate::report::Report;
use flate2::{read::MultiGzDecoder, write::GzEncoder, Compression};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

/// A report that cannot be read: the file names the report, the detail says what is wrong.
/// (The I/O error is part of the message, not a `source`, so that it is printed once.)
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: not a valid report: {detail}")]
    Invalid { path: String, detail: String },
}

fn io_error(path: &Path, error: std::io::Error) -> ReportError {
    ReportError::Io { path: path.display().to_string(), error }
}

/// A file that cannot be written: a failure of the machine (disk full, permissions), not of
/// the input.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {error}")]
pub struct WriteError {
    pub path: String,
    pub error: std::io::Error,
}

fn write_error(path: &Path, error: std::io::Error) -> WriteError {
    WriteError { path: path.display().to_string(), error }
}

/// The largest report read, as a file or decompressed: a hostile `.gz` of a few kilobytes can
/// inflate to any size. Real reports are far smaller (a walk with the call stacks of a
/// 450 000-call recursion is 45 MB).
pub const MAX_REPORT_BYTES: u64 = 2 << 30;

/// Reads and validates one report; gzip is recognised by its magic bytes, not the name.
pub fn read_report(path: &Path) -> Result<Report, ReportError> {
    read_open_report(File::open(path).map_err(|e| io_error(path, e))?, path, &mut Vec::new())
}

/// [`read_report`] of a file already open, which `path` names in errors (it may have been
/// renamed since it was opened), read into `bytes` (the caller decides when to free them).
pub fn read_open_report(file: File, path: &Path, bytes: &mut Vec<u8>) -> Result<Report, ReportError> {
    read_limited_file(file, path, bytes)?;
    report_from_bytes(path, bytes, MAX_REPORT_BYTES)
}

/// Reads a whole file of at most [`MAX_REPORT_BYTES`] into `out`.
fn read_limited(path: &Path, out: &mut Vec<u8>) -> Result<(), ReportError> {
    read_limited_file(File::open(path).map_err(|e| io_error(path, e))?, path, out)
}

fn read_limited_file(file: File, path: &Path, out: &mut Vec<u8>) -> Result<(), ReportError> {
    // `take` hides the file's size from read_to_end, which would grow the buffer step by step.
    let size = file.metadata().map_or(0, |m| m.len()).min(MAX_REPORT_BYTES + 1);
    out.reserve(usize::try_from(size).unwrap_or(0));
    file.take(MAX_REPORT_BYTES + 1).read_to_end(out).map_err(|e| io_error(path, e))?;
    if out.len() as u64 > MAX_REPORT_BYTES {
        let detail = format!("larger than {MAX_REPORT_BYTES} bytes, the most a report may be");
        return Err(ReportError::Invalid { path: path.display().to_string(), detail });
    }
    Ok(())
}

/// Parses and validates a report file's bytes (JSON, or gzipped JSON of at most `limit` bytes);
/// `path` names it in errors.
pub fn report_from_bytes(path: &Path, bytes: &[u8], limit: u64) -> Result<Report, ReportError> {
    let mut json = Vec::new();
    let json = if is_gzip(bytes) {
        inflate(path, bytes, &mut json, limit)?;
        json.as_slice()
    } else {
        bytes
    };
    let report: Report = parse_json(path, json)?;
    report.validate().map_err(|detail| ReportError::Invalid { path: path.display().to_string(), detail })?;
    Ok(report)
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Decompresses `gz` into `out`, refusing more than `limit` bytes of output.
fn inflate(path: &Path, gz: &[u8], out: &mut Vec<u8>, limit: u64) -> Result<(), ReportError> {
    let invalid = |detail: String| ReportError::Invalid { path: path.display().to_string(), detail };
    let read = MultiGzDecoder::new(gz).take(limit.saturating_add(1)).read_to_end(out);
    read.map_err(|e| invalid(format!("cannot decompress: {e}")))?;
    if out.len() as u64 > limit {
        return Err(invalid(format!("decompresses to more than {limit} bytes")));
    }
    Ok(())
}

/// Parses report JSON (whole or a lean view of it). sonic-rs (SIMD) parses about twice as fast
/// as serde_json; on a failure serde_json parses again for its precise "truncated at line L
/// column C" message.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(path: &Path, bytes: &'a [u8]) -> Result<T, ReportError> {
    sonic_rs::from_slice(bytes).or_else(|_| {
        serde_json::from_slice(bytes)
            .map_err(|e| ReportError::Invalid { path: path.display().to_string(), detail: describe_json_error(&e) })
    })
}

/// Reads a report file's JSON text into `out`, inflating gzip (through `scratch`). Both
/// buffers are reused between files by callers that read many.
pub fn read_bytes(path: &Path, out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Result<(), ReportError> {
    out.clear();
    scratch.clear();
    read_limited(path, scratch)?;
    if is_gzip(scratch) {
        inflate(path, scratch, out, MAX_REPORT_BYTES)?;
    } else {
        std::mem::swap(out, scratch);
    }
    Ok(())
}

fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof if e.line() <= 1 && e.column() == 0 => "the file is empty".into(),
        Category::Eof => format!("truncated at line {} column {}", e.line(), e.column()),
        _ => e.to_string(),
    }
}

/// Writes `report` to `path` atomically: readers see the old file or the whole new one.
pub fn write_report(path: &Path, report: &Report) -> Result<(), WriteError> {
    let gzip = path.extension().is_some_and(|e| e == "gz");
    // sonic-rs serialises about twice as fast as serde_json (a walk writes at its very end).
    // Reserved up front (a walk's node takes ~560 bytes): grown by doubling, the text was
    // copied and faulted in again at each step, 3.4 of the 25 ms that serialising a
    // 20 000-output walk's report took (medians of 10 fresh processes). A reservation the
    // system refuses only means growing as before.
    let mut json = Vec::new();
    let _ = json.try_reserve(report.nodes.len().saturating_mul(640).saturating_add(256 * 1024));
    sonic_rs::to_writer(&mut json, report).map_err(|e| write_error(path, std::io::Error::other(e)))?;
    json.push(b'\n');
    write_atomically(path, |out| {
        if gzip {
            let mut gz = GzEncoder::new(out, Compression::default());
            gz.write_all(&json)?;
            gz.finish()?;
        } else {
            out.write_all(&json)?;
        }
        Ok(())
    })
}

/// Puts the file at `from` in place at `to`, atomically, replacing what is there. An existing
/// `to` is swapped out (`renameat2` with `RENAME_EXCHANGE`) and then removed: renamed over, it
/// would make ext4 write `from`'s new blocks out first (its `auto_da_alloc`), 6-8 ms for an 11 MB
/// report against 2-3 ms (measured on this project's CI machine), on the way to `profile`'s
/// exit. Where the swap is not possible (no `to`, a file system without it), a rename.
pub fn replace_file(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    // Only a regular file is swapped out: a directory at `to` must make this fail, as rename does.
    let replaces_a_file = std::fs::symlink_metadata(to).is_ok_and(|m| m.file_type().is_file());
    let (true, Ok(c_from), Ok(c_to)) =
        (replaces_a_file, std::ffi::CString::new(from.as_os_str().as_bytes()), std::ffi::CString::new(to.as_os_str().as_bytes()))
    else {
        return std::fs::rename(from, to);
    };
    // SAFETY: two NUL-terminated paths, relative to the working directory as rename's are.
    let swapped = unsafe { libc::renameat2(libc::AT_FDCWD, c_from.as_ptr(), libc::AT_FDCWD, c_to.as_ptr(), libc::RENAME_EXCHANGE) } == 0;
    if !swapped {
        return std::fs::rename(from, to);
    }
    // `from` now holds what `to` held. Should this fail, a stray file is left, not a wrong one.
    let _ = std::fs::remove_file(from);
    Ok(())
}

/// Writes a file through `fill` into a temporary sibling, then renames it over `path`.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&File>) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new().prefix(".nix-evalcost-").tempfile_in(dir).map_err(|e| write_error(path, e))?;
    {
        let mut out = BufWriter::with_capacity(256 * 1024, tmp.as_file());
        fill(&mut out).map_err(|e| write_error(path, e))?;
        out.flush().map_err(|e| write_error(path, e))?;
    }
    // No fsync: the rename is what keeps readers from a half-written file, and a profile
    // report need not survive a power cut; fsync was a visible share of a short walk.
    tmp.persist(path).map_err(|e| write_error(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{node, report};

    #[test]
    fn replace_file_swaps_in_the_new_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let (new, out) = (dir.path().join(".new"), dir.path().join("out.json"));
        std::fs::write(&new, "first").unwrap();
        replace_file(&new, &out).unwrap(); // nothing to replace: a rename
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "first");
        std::fs::write(&new, "second").unwrap();
        replace_file(&new, &out).unwrap(); // swapped, the old one removed
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["out.json"]);
        assert!(replace_file(&dir.path().join("missing"), &out).is_err());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "second");
        // A directory in the way is an error, as for rename, and stays where it is.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(&new, "third").unwrap();
        assert!(replace_file(&new, &sub).is_err());
        assert!(sub.is_dir() && new.is_file());
    }

    #[test]
    fn round_trip_plain_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let r = report(vec![node(0, None, &["a"], 3), node(1, Some(0), &["a", "b.c"], 4)]);
        for name in ["r.json", "r.json.gz"] {
            let p = dir.path().join(name);
            write_report(&p, &r).unwrap();
            assert_eq!(read_report(&p).unwrap(), r);
        }
        let gz = std::fs::read(dir.path().join("r.json.gz")).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    }

    #[test]
    fn bad_files_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &[u8], &str)] = &[
            ("empty.json", b"", "empty"),
            ("trunc.json", b"{\"schema\": \"nix-evalcost/report\",\n \"schema_v", "truncated at line 2"),
            ("other.json", b"{\"hello\": 1}", "missing field"),
            ("gz.json.gz", &[0x1f, 0x8b, 0, 1, 2], "decompress"),
        ];
        for (name, bytes, expect) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let msg = read_report(&p).unwrap_err().to_string();
            assert!(msg.contains(name), "{msg}");
            assert!(msg.contains(expect), "{name}: {msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
        let missing = read_report(&dir.path().join("nope.json")).unwrap_err();
        let message = missing.to_string();
        assert!(message.contains("nope.json") && message.contains("No such file"), "{message}");
        assert!(std::error::Error::source(&missing).is_none(), "the OS error is said once, in the message");
    }

    #[test]
    fn decompression_is_bounded() {
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(&vec![b' '; 1 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 4096);
        let err = report_from_bytes(Path::new("bomb.json.gz"), &bomb, 1000).unwrap_err().to_string();
        assert!(err.contains("bomb.json.gz") && err.contains("more than 1000 bytes"), "{err}");
    }

    #[test]
    fn write_failures_name_the_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let r = report(vec![node(0, None, &["a"], 3)]);
        let err = write_report(&dir.path().join("no-such-dir/r.json"), &r).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("cannot write ") && message.contains("no-such-dir/r.json"), "{message}");
        assert_eq!(message.matches("No such file").count(), 1, "{message}");
        assert!(std::error::Error::source(&err).is_none());
    }
}
