//! Reading and writing report files: JSON, gzipped when the name ends in `.gz`, written
//! atomically (a temporary file in the same directory, renamed into place).

use crate::report::Report;
use flate2::{read::MultiGzDecoder, write::GzEncoder, Compression};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a valid report: {detail}")]
    Invalid { path: String, detail: String },
}

fn io_error(path: &Path, source: std::io::Error) -> ReportError {
    ReportError::Io { path: path.display().to_string(), source }
}

/// Reads and validates one report; gzip is recognised by its magic bytes, not the name.
pub fn read_report(path: &Path) -> Result<Report, ReportError> {
    let (mut json, mut scratch) = (Vec::new(), Vec::new());
    read_bytes(path, &mut json, &mut scratch)?;
    let report: Report = parse_json(path, &json)?;
    report.validate().map_err(|detail| ReportError::Invalid { path: path.display().to_string(), detail })?;
    Ok(report)
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
    File::open(path).and_then(|mut f| f.read_to_end(scratch)).map_err(|e| io_error(path, e))?;
    if scratch.starts_with(&[0x1f, 0x8b]) {
        MultiGzDecoder::new(scratch.as_slice()).read_to_end(out).map_err(|e| ReportError::Invalid {
            path: path.display().to_string(),
            detail: format!("cannot decompress: {e}"),
        })?;
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
pub fn write_report(path: &Path, report: &Report) -> Result<(), ReportError> {
    let gzip = path.extension().is_some_and(|e| e == "gz");
    // sonic-rs serialises about twice as fast as serde_json (a walk writes at its very end).
    let mut json = sonic_rs::to_vec(report).map_err(|e| io_error(path, std::io::Error::other(e)))?;
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

/// Writes a file through `fill` into a temporary sibling, then renames it over `path`.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&File>) -> std::io::Result<()>,
) -> Result<(), ReportError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new().prefix(".nix-evalcost-").tempfile_in(dir).map_err(|e| io_error(path, e))?;
    {
        let mut out = BufWriter::with_capacity(256 * 1024, tmp.as_file());
        fill(&mut out).map_err(|e| io_error(path, e))?;
        out.flush().map_err(|e| io_error(path, e))?;
    }
    // No fsync: the rename is what keeps readers from a half-written file, and a profile
    // report need not survive a power cut; fsync was a visible share of a short walk.
    tmp.persist(path).map_err(|e| io_error(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{node, report};

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
        let missing = read_report(&dir.path().join("nope.json")).unwrap_err().to_string();
        assert!(missing.contains("nope.json") && missing.contains("No such file"), "{missing}");
    }
}
