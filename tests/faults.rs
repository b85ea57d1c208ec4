//! `profile` as a CI system treats it: signals to the CLI alone and to its group, SIGKILL of the
//! CLI and of its nix, a full disk, a read-only directory, two runs writing the same report.
//! Each checks the exit status, the message, the report's validity and that nothing is left
//! behind (no staging file, no nix process).

mod common;
use common::*;
use nix_evalcost_core::report::Kind;
use nix_evalcost_core::report_io::read_report;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A flake of 40 slow outputs (~240 000 calls each) that announce themselves on stderr.
fn slow_flake() -> Flake {
    let sys = current_system();
    let outputs: String = (0..40)
        .map(|i| format!("p{i:02} = builtins.trace \"walking p{i:02}\" (builtins.seq (fib 25) ({}));", mk_drv(&sys, &format!("p{i}"))))
        .collect();
    flake_with(FIB, &format!("{{ packages.{sys} = {{ {outputs} }}; }}"))
}

/// `profile FLAKE -o DIR/NAME` in a process group of its own, as a shell runs a job.
fn spawn_profile(flake: &Flake, out: &Path) -> Child {
    cli()
        .args(["profile", &flake.url(), "--no-progress", "-o"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap()
}

/// Reads the child's stderr until the walk is under way; returns what was read and the rest
/// of the stream.
fn wait_for_walk(child: &mut Child) -> (String, BufReader<std::process::ChildStderr>) {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("walking p01") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the walk ended before it was interrupted:\n{seen}");
        seen.push_str(&line);
    }
    (seen, stderr)
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: sending a signal to a process (or group) this test started.
    unsafe { libc::kill(pid, signal) };
}

/// The pids of `nix` processes whose command line mentions `needle`.
fn nix_processes(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("evalcostWalk") && cmdline.contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

/// No file but `expected` in `dir` (no staging file, no temporary).
fn assert_only(dir: &Path, expected: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, expected, "files left in {}", dir.display());
}

/// The partial report of a stopped walk: valid, incomplete, conserved, with the node being
/// evaluated marked interrupted and nothing after it.
fn assert_partial(report_path: &Path) {
    let report = read_report(report_path).unwrap();
    assert!(!report.meta.complete);
    assert_eq!(report.charged_sum(), report.totals, "conservation");
    let interrupted: Vec<String> = report.nodes.iter().filter(|n| n.kind == Kind::Interrupted).map(|n| n.path.join(".")).collect();
    assert!(!interrupted.is_empty(), "the node being walked is marked interrupted");
    assert!(report.nodes.iter().all(|n| n.kind != Kind::Unknown), "no node left unclassified");
    let walked = report.nodes.iter().filter(|n| n.is_derivation).count();
    assert!(walked < 10, "the walk went on after the signal ({walked} outputs)");
}

fn stop_with(signal: i32, to_group: bool, expected_status: i32, says: &str) {
    let flake = slow_flake();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let mut child = spawn_profile(&flake, &out);
    let (mut seen, mut rest) = wait_for_walk(&mut child);
    let pid = child.id() as i32;
    kill(if to_group { -pid } else { pid }, signal);
    let started = Instant::now();
    rest.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(20), "stopping took {:?}", started.elapsed());
    assert_eq!(status.code(), Some(expected_status), "{seen}");
    assert!(seen.contains(says), "{seen}");
    assert_partial(&out);
    assert_only(dir.path(), &["r.json"]);
    assert!(nix_processes(&flake.url()).is_empty(), "nix outlived the CLI");
}

#[test]
fn sigint_to_the_cli_alone() {
    stop_with(libc::SIGINT, false, 130, "interrupted");
}

#[test]
fn sigint_to_the_group() {
    stop_with(libc::SIGINT, true, 130, "interrupted");
}

#[test]
fn sigterm_to_the_cli_alone() {
    stop_with(libc::SIGTERM, false, 143, "interrupted");
}

#[test]
fn sigterm_to_the_group() {
    stop_with(libc::SIGTERM, true, 143, "interrupted");
}

#[test]
fn sighup_to_the_cli_alone() {
    stop_with(libc::SIGHUP, false, 129, "interrupted");
}

#[test]
fn sighup_to_the_group() {
    stop_with(libc::SIGHUP, true, 129, "interrupted");
}

#[test]
fn sigkill_of_the_cli_leaves_no_nix_and_no_file() {
    let flake = slow_flake();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let mut child = spawn_profile(&flake, &out);
    let _ = wait_for_walk(&mut child);
    assert_eq!(nix_processes(&flake.url()).len(), 1, "nix is walking");
    kill(child.id() as i32, libc::SIGKILL);
    child.wait().unwrap();
    // PR_SET_PDEATHSIG: the kernel kills nix with its parent.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nix_processes(&flake.url()).is_empty() {
        assert!(Instant::now() < deadline, "nix outlived the SIGKILLed CLI: {:?}", nix_processes(&flake.url()));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_only(dir.path(), &[]);
}

#[test]
fn sigkill_of_nix_names_the_output_being_walked() {
    let flake = slow_flake();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let mut child = spawn_profile(&flake, &out);
    let (mut seen, mut rest) = wait_for_walk(&mut child);
    let nix = nix_processes(&flake.url());
    assert_eq!(nix.len(), 1);
    // Progress lines come at most every 100 ms: let one name the output being walked.
    std::thread::sleep(Duration::from_millis(300));
    kill(nix[0] as i32, libc::SIGKILL);
    rest.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{seen}");
    let last = seen.lines().last().unwrap_or("");
    assert!(last.starts_with("nix-evalcost: error: nix was killed by SIGKILL (the out-of-memory killer?) while walking packages."), "{seen}");
    assert!(last.ends_with("no report was written"), "{seen}");
    assert_only(dir.path(), &[]);
}

#[test]
fn a_full_disk_is_said_to_be_a_full_disk() {
    let Some(disk) = Mount::tmpfs("size=16k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root in a private mount namespace, as scripts/nix-env runs tests)");
        return;
    };
    // Fill what the report's directory has left.
    let _ = std::fs::write(disk.path().join("filler"), vec![0u8; 64 * 1024]);
    let flake = flake_with(FIB, "{ lib.a = fib 15; lib.b = fib 12; }");
    let out = cli().args(["profile", &flake.url(), "--no-progress", "-o"]).arg(disk.path().join("r.json")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(last.starts_with("nix-evalcost: error: the evaluation finished, but the report could not be written"), "{stderr}");
    assert_eq!(last.matches("No space left on device").count(), 1, "the OS error once: {last}");
    assert!(!last.contains("could not evaluate"), "{last}");
    assert_only(disk.path(), &["filler"]);
}

#[test]
fn a_read_only_directory_is_refused_with_the_reason() {
    let Some(ro) = Mount::tmpfs("ro,size=16k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root in a private mount namespace, as scripts/nix-env runs tests)");
        return;
    };
    let flake = flake_with("", "{ lib.a = 1; }");
    let out = cli().args(["profile", &flake.url(), "--no-progress", "-o"]).arg(ro.path().join("r.json")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(last.contains("report could not be written") && last.contains("Read-only file system"), "{stderr}");
    assert_eq!(last.matches("Read-only file system").count(), 1, "{last}");
    assert_only(ro.path(), &[]);
}

#[test]
fn two_runs_writing_the_same_report_both_succeed() {
    let flake = flake_with(FIB, "{ lib.a = fib 18; lib.b = fib 14; }");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let runs: Vec<Child> = (0..2)
        .map(|_| cli().args(["profile", &flake.url(), "--no-progress", "-o"]).arg(&out).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let report = read_report(&out).unwrap();
    assert!(report.meta.complete);
    assert_eq!(report.nodes.len(), 3);
    assert_only(dir.path(), &["r.json"]);
}

#[test]
fn sigint_stops_every_worker_of_a_parallel_walk() {
    let flake = slow_flake();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let mut child = cli()
        .args(["profile", &flake.url(), "--no-progress", "-j", "2", "-o"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let (mut seen, mut rest) = wait_for_walk(&mut child);
    kill(child.id() as i32, libc::SIGINT);
    let started = Instant::now();
    rest.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(20), "stopping took {:?}", started.elapsed());
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("interrupted"), "{seen}");
    // The workers' partial reports, joined: valid, incomplete, conserved per worker.
    let report = read_report(&out).unwrap();
    report.validate().unwrap();
    assert!(!report.meta.complete);
    assert_eq!(report.charged_sum(), report.totals, "conservation");
    assert!(!report.meta.parts.is_empty() && report.meta.parts.iter().all(|p| !p.complete), "{:?}", report.meta.parts);
    assert!(report.nodes.iter().any(|n| n.kind == Kind::Interrupted), "a worker's node being walked is marked interrupted");
    assert!(report.nodes.iter().filter(|n| n.is_derivation).count() < 20, "the walk went on after the signal");
    // Nothing left behind: no workers' scratch directory, no nix.
    assert_only(dir.path(), &["r.json"]);
    assert!(nix_processes(&flake.url()).is_empty(), "a worker outlived the CLI");
}
