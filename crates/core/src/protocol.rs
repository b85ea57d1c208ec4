//! What the plugin and the CLI agree on, defined once: the progress pipe, the environment
//! variables the plugin reads, and the marker that names the Nix a plugin was built for.

use crate::attrpath::display_path;
use crate::nix_version::NixVersion;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `NIX_EVALCOST=0` (or false/off/no) turns the plugin into a no-op.
pub const ENABLE_VAR: &str = "NIX_EVALCOST";
/// Where `builtins.evalcostMeasure` outside a walk writes its report when Nix exits.
pub const MEASURE_REPORT_VAR: &str = "NIX_EVALCOST_REPORT";
/// The variable naming the progress pipe's file descriptor in the `nix` child.
pub const PROGRESS_FD_VAR: &str = "NIX_EVALCOST_PROGRESS_FD";
/// The descriptor the CLI gives the `nix` child for progress lines.
pub const PROGRESS_FD: i32 = 3;
/// Precedes the Nix version in the plugin binary: `nix-evalcost-built-for-nix=2.26.3\0`.
pub const BUILT_FOR_PREFIX: &str = "nix-evalcost-built-for-nix=";

/// How the plugin's errors begin in Nix's messages (`error: nix-evalcost: …`).
pub const PLUGIN_ERROR_PREFIX: &str = "nix-evalcost: ";
/// What the plugin says when the walk was done but its report could not be written; the CLI
/// tells that apart from an evaluation failure.
pub const REPORT_WRITE_FAILURE: &str = "writing the report";

/// Whether the plugin is enabled, given the value of [`ENABLE_VAR`] (unset: enabled).
pub fn enabled(value: Option<&str>) -> bool {
    let v = value.unwrap_or_default().to_ascii_lowercase();
    !matches!(v.as_str(), "0" | "false" | "off" | "no")
}

/// The progress line that says the walk's report is on disk: the CLI reads it while nix
/// exits (tearing down a large evaluator takes a while), instead of after. A tab and
/// [`WrittenFacts`] as JSON follow it.
pub const REPORT_WRITTEN: &str = "report-written";

/// What the plugin says of the report it has written, so that the CLI need not read it back
/// for these.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenFacts {
    /// The walk went to its end (`meta.complete`).
    pub complete: bool,
    /// The summary table the walk was asked for (`summary` of `builtins.evalcostWalk`),
    /// rendered from the report (see [`crate::summary`]); none if not asked or if it failed.
    pub summary: Option<String>,
}

/// One progress line: nodes walked so far and the path being walked (empty when done), or
/// [`REPORT_WRITTEN`].
#[derive(Debug, PartialEq, Eq)]
pub struct ProgressLine {
    pub nodes: u64,
    pub path: String,
    /// The report is written (nodes and path are then empty).
    pub written: bool,
    /// With `written`: what the plugin said of the report (none if it said nothing readable).
    pub facts: Option<WrittenFacts>,
}

impl ProgressLine {
    /// `<nodes>\t<path>` or [`REPORT_WRITTEN`]`\t<facts>`, as the plugin writes it (without
    /// the newline).
    pub fn parse(line: &str) -> ProgressLine {
        let (head, rest) = line.split_once('\t').unwrap_or((line, ""));
        if head == REPORT_WRITTEN {
            let facts = serde_json::from_str(rest).ok();
            return ProgressLine { nodes: 0, path: String::new(), written: true, facts };
        }
        ProgressLine { nodes: head.parse().unwrap_or(0), path: rest.to_string(), written: false, facts: None }
    }
}

/// The plugin's side of the progress pipe: `<nodes>\t<path>\n` at most every 100 ms.
pub struct ProgressPipe {
    out: File,
    last: Option<Instant>,
}

impl ProgressPipe {
    /// The pipe the CLI opened for this process, if [`PROGRESS_FD_VAR`] names an open
    /// descriptor (not stdin, stdout or stderr).
    pub fn from_env() -> Option<ProgressPipe> {
        let fd: i32 = std::env::var(PROGRESS_FD_VAR).ok()?.parse().ok()?;
        // SAFETY: fcntl only tells whether `fd` is open.
        if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return None;
        }
        // SAFETY: `fd` is open (checked above); the CLI opened it for us and nothing else in
        // the process uses it, so we own it from here on.
        Some(ProgressPipe { out: unsafe { File::from_raw_fd(fd) }, last: None })
    }
}

/// Where a session reports its progress.
pub trait Progress: Send {
    /// A node is entered: `nodes` so far, at `path`.
    fn tick(&mut self, nodes: usize, path: &[String]);
    /// The walk is over.
    fn done(&mut self, nodes: usize);
    /// The walk's report is written.
    fn written(&mut self, _facts: &WrittenFacts) {}
}

impl Progress for ProgressPipe {
    fn tick(&mut self, nodes: usize, path: &[String]) {
        if self.last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
            return;
        }
        self.last = Some(Instant::now());
        let _ = writeln!(self.out, "{nodes}\t{}", display_path(path));
    }

    fn done(&mut self, nodes: usize) {
        let _ = writeln!(self.out, "{nodes}\t");
    }

    fn written(&mut self, facts: &WrittenFacts) {
        // One write: the line is whole when the CLI reads it.
        let line = format!("{REPORT_WRITTEN}\t{}\n", serde_json::to_string(facts).unwrap_or_default());
        let _ = self.out.write_all(line.as_bytes());
    }
}

/// `head` then `tail`, NUL-padded to `N` bytes, at compile time: the markers the plugin and the
/// loader carry as statics (`N` must hold both).
pub const fn marker<const N: usize>(head: &str, tail: &str) -> [u8; N] {
    let (head, tail) = (head.as_bytes(), tail.as_bytes());
    let mut out = [0u8; N];
    let mut i = 0;
    while i < head.len() + tail.len() {
        out[i] = if i < head.len() { head[i] } else { tail[i - head.len()] };
        i += 1;
    }
    out
}

/// The Nix version recorded in a plugin binary's bytes, if it carries the marker.
pub fn built_for(binary: &[u8]) -> Option<String> {
    let prefix = BUILT_FOR_PREFIX.as_bytes();
    let at = memchr::memmem::find(binary, prefix)?;
    let rest = &binary[at + prefix.len()..];
    let end = rest.iter().take(64).position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The Nix version recorded in a plugin binary file, read in pieces: the loader runs inside
/// every `nix` process, where reading a 20 MB build whole would leave its mark on the heap.
pub fn built_for_file(path: &Path) -> Option<String> {
    use std::io::Read;
    const CHUNK: usize = 256 * 1024;
    // Enough overlap for a marker that straddles two chunks: the prefix and the version.
    let overlap = BUILT_FOR_PREFIX.len() + 64;
    let mut file = File::open(path).ok()?;
    let mut buf = vec![0u8; CHUNK + overlap];
    let mut kept = 0;
    loop {
        let n = file.read(&mut buf[kept..]).ok()?;
        if n == 0 {
            return None;
        }
        let filled = kept + n;
        if let Some(found) = built_for(&buf[..filled]) {
            return Some(found);
        }
        kept = overlap.min(filled);
        buf.copy_within(filled - kept..filled, 0);
    }
}

// ---- which plugin build the loader loads ------------------------------------------------
//
// `libnix_evalcost.so`, the file users name in `plugin-files`, is a loader with no link-time
// dependency on Nix. Beside it are plugin builds, each linked against one Nix:
// `libnix_evalcost_plugin.nix-<major>.<minor>.so` (installed side by side, one per Nix), or
// `libnix_evalcost_plugin.so` (what `cargo build` leaves, for the Nix it was built against).

/// The loader's file name.
pub const LOADER_FILE: &str = "libnix_evalcost.so";
/// In the loader binary, so that the CLI can tell it from a plugin build.
pub const LOADER_MARKER: &str = "nix-evalcost-loader-marker";

/// The loader's words for a process that exports no `nix::` symbols: a statically linked Nix
/// (Debian's `nix-bin`), or not Nix at all.
pub const NO_NIX_SYMBOLS: &str = "this process exports no nix:: symbols (a statically linked Nix?)";

/// Whether a binary's bytes are the loader's.
pub fn is_loader(binary: &[u8]) -> bool {
    memchr::memmem::find(binary, LOADER_MARKER.as_bytes()).is_some()
}
/// A plugin build's file name, as cargo leaves it.
pub const PLUGIN_BUILD_FILE: &str = "libnix_evalcost_plugin.so";

/// The file name of an installed build for Nix `series` (`2.26`).
pub fn versioned_build_file(series: &str) -> String {
    format!("libnix_evalcost_plugin.nix-{series}.so")
}

/// The series (`2.26`) an installed build's file name is for.
fn series_of_build_file(name: &str) -> Option<&str> {
    name.strip_prefix("libnix_evalcost_plugin.nix-")?.strip_suffix(".so")
}

/// The plugin build in `dir` for the running Nix `running`: the installed build for its series,
/// else cargo's build when its marker names the same minor release. The error names what was
/// found and what to do, in one line.
pub fn choose_plugin_build(dir: &Path, running: &NixVersion) -> Result<PathBuf, String> {
    let versioned = dir.join(versioned_build_file(&running.series()));
    if versioned.is_file() {
        return Ok(versioned);
    }
    let cargo_build = dir.join(PLUGIN_BUILD_FILE);
    let cargo_built_for = built_for_file(&cargo_build);
    if let Some(version) = &cargo_built_for {
        if NixVersion::parse(version).is_some_and(|v| v.same_minor(running)) {
            return Ok(cargo_build);
        }
    }
    let mut found: Vec<String> = cargo_built_for.into_iter().collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let names = entries.filter_map(|e| e.ok()?.file_name().into_string().ok());
        found.extend(names.filter_map(|n| series_of_build_file(&n).map(str::to_string)));
    }
    found.sort();
    let found = if found.is_empty() { "none".to_string() } else { found.join(", ") };
    Err(format!(
        "no plugin build for Nix {running} in {} (builds found for Nix: {found}); build nix-evalcost \
         against this Nix and install it there as {}. Nix goes on without nix-evalcost's builtins",
        dir.display(),
        versioned_build_file(&running.series())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_build(dir: &Path, name: &str, version: &str) {
        std::fs::write(dir.join(name), format!("\x7fELF..{BUILT_FOR_PREFIX}{version}\0..")).unwrap();
    }

    #[test]
    fn the_build_for_the_running_nix_is_chosen() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let v = |s: &str| NixVersion::parse(s).unwrap();
        // Cargo's build, for 2.26.
        fake_build(d, PLUGIN_BUILD_FILE, "2.26.3");
        assert_eq!(choose_plugin_build(d, &v("2.26.1")).unwrap(), d.join(PLUGIN_BUILD_FILE));
        let err = choose_plugin_build(d, &v("2.35.2")).unwrap_err();
        assert!(err.contains("no plugin build for Nix 2.35.2") && err.contains("builds found for Nix: 2.26.3"), "{err}");
        assert!(err.contains("libnix_evalcost_plugin.nix-2.35.so") && !err.contains('\n'), "{err}");
        // An installed build for 2.35 beside it wins for 2.35; 2.26 still gets cargo's.
        fake_build(d, &versioned_build_file("2.35"), "2.35.2");
        assert_eq!(choose_plugin_build(d, &v("2.35.0")).unwrap(), d.join("libnix_evalcost_plugin.nix-2.35.so"));
        assert_eq!(choose_plugin_build(d, &v("2.26.3")).unwrap(), d.join(PLUGIN_BUILD_FILE));
        let err = choose_plugin_build(d, &v("2.30.1")).unwrap_err();
        assert!(err.contains("2.26.3, 2.35"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert!(choose_plugin_build(empty.path(), &v("2.30.1")).unwrap_err().contains("builds found for Nix: none"));
    }

    #[test]
    fn progress_lines_round_trip() {
        let line = |nodes, path: &str, written| ProgressLine { nodes, path: path.into(), written, facts: None };
        assert_eq!(ProgressLine::parse("12\tpackages.x86_64-linux.hello"), line(12, "packages.x86_64-linux.hello", false));
        assert_eq!(ProgressLine::parse("40\t"), line(40, "", false));
        assert_eq!(ProgressLine::parse("junk"), line(0, "", false));
        // Facts that cannot be read are none: the CLI then reads the report.
        assert_eq!(ProgressLine::parse(REPORT_WRITTEN), line(0, "", true));
        assert_eq!(ProgressLine::parse(&format!("{REPORT_WRITTEN}\t{{junk")), line(0, "", true));
        // The facts, summary text with its newlines and tabs included, as the pipe carries them.
        let facts = WrittenFacts { complete: true, summary: Some("flake: 2 nodes\n\tpackages.a\u{1b}[1m".into()) };
        let text = format!("{REPORT_WRITTEN}\t{}", serde_json::to_string(&facts).unwrap());
        assert!(!text.contains('\n'));
        assert_eq!(ProgressLine::parse(&text), ProgressLine { facts: Some(facts), ..line(0, "", true) });
        // An attribute path is never mistaken for the written line: it follows a count.
        assert_eq!(ProgressLine::parse("3\treport-written"), line(3, "report-written", false));
    }

    #[test]
    fn markers_are_built_at_compile_time() {
        const M: [u8; 8] = marker("ab", "cde");
        assert_eq!(&M, b"abcde\0\0\0");
        assert_eq!(built_for(&marker::<40>(BUILT_FOR_PREFIX, "2.26.3")).as_deref(), Some("2.26.3"));
    }

    #[test]
    fn marker_is_found_in_binary_bytes() {
        let mut bytes = b"\x7fELF....".to_vec();
        bytes.extend_from_slice(BUILT_FOR_PREFIX.as_bytes());
        bytes.extend_from_slice(b"2.35.2\0rest");
        assert_eq!(built_for(&bytes).as_deref(), Some("2.35.2"));
        assert_eq!(built_for(b"no marker here"), None);
        // A marker without its terminator within 64 bytes is not trusted.
        let mut open = BUILT_FOR_PREFIX.as_bytes().to_vec();
        open.extend(std::iter::repeat_n(b'9', 100));
        assert_eq!(built_for(&open), None);
    }

    #[test]
    fn markers_are_found_across_read_chunks() {
        let dir = tempfile::tempdir().unwrap();
        // Every offset around the 256 KiB chunk boundary, and a file with none.
        for offset in [0usize, 100, 256 * 1024 - 30, 256 * 1024 - 5, 256 * 1024, 3 * 256 * 1024 + 7] {
            let mut bytes = vec![b'x'; offset];
            bytes.extend_from_slice(BUILT_FOR_PREFIX.as_bytes());
            bytes.extend_from_slice(b"2.35.2\0");
            bytes.extend(std::iter::repeat_n(b'y', 1000));
            let path = dir.path().join(format!("p{offset}"));
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(built_for_file(&path).as_deref(), Some("2.35.2"), "offset {offset}");
        }
        let none = dir.path().join("none");
        std::fs::write(&none, vec![b'z'; 600 * 1024]).unwrap();
        assert_eq!(built_for_file(&none), None);
        assert_eq!(built_for_file(&dir.path().join("missing")), None);
    }

    #[test]
    fn enable_switch() {
        assert!(enabled(None));
        assert!(enabled(Some("1")));
        for off in ["0", "false", "OFF", "no"] {
            assert!(!enabled(Some(off)), "{off}");
        }
    }
}
