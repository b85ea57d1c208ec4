//! `nix-evalcost history`, end to end through the built binary, on SQLite and on a private
//! PostgreSQL server: ingest, show, predict, check with a webhook, export, bad input.

#[path = "common/fixtures.rs"]
mod fixtures;
#[path = "../../store/tests/pg/mod.rs"]
mod pg;

use fixtures::HOSTILE;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

fn cli(db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nix-evalcost")).arg("history").args(args).env("NIX_EVALCOST_DB", db).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn now_rfc3339(offset_s: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_s);
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// Runs `test` with a SQLite file and with a fresh PostgreSQL database.
fn on_both_engines(test: impl Fn(&str)) {
    let dir = tempfile::tempdir().unwrap();
    test(&dir.path().join("h.sqlite").display().to_string());
    test(&pg::server().database());
}

#[test]
fn ingest_is_idempotent_and_show_buckets_by_day() {
    on_both_engines(|db| {
        let dir = tempfile::tempdir().unwrap();
        fixtures::write_runs(dir.path(), 3);
        let first = cli(db, &["ingest", dir.path().to_str().unwrap()]);
        assert!(first.status.success(), "{:?}", text(&first));
        assert_eq!(text(&first).1.trim(), "3 reports read, 3 new");
        let again = cli(db, &["ingest", dir.path().to_str().unwrap()]);
        assert_eq!(text(&again).1.trim(), "3 reports read, 0 new");
        // The fixtures started on 2026-11-20, -21 and -22 at 10:00 UTC.
        let out = cli(db, &["show", "--since", "2026-11-01", "--metric", "fncalls", "--format", "csv"]);
        let (csv, err) = text(&out);
        assert!(out.status.success(), "{err}");
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows[0], "start,flake,output,metric,n,estimated,min,p50,p95,max,mean,errors");
        assert_eq!(rows.len(), 4, "{csv}");
        assert!(rows[1].starts_with("2026-11-20,github:example/flake,(evaluation),fncalls,1,"), "{csv}");
        // Per output, the hostile name is data: quoted in CSV, defused, one line per row.
        let out = cli(db, &["show", "--since", "2026-11-01", "--filter", "packages.x86_64-linux.*", "--format", "csv"]);
        let (csv, _) = text(&out);
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let outputs: Vec<String> = reader.records().map(|r| r.unwrap()[2].to_string()).collect();
        assert_eq!(outputs.len(), 4 * 3, "{csv}");
        assert!(outputs.iter().any(|o| o.contains("evil") && !o.starts_with('=')), "{outputs:?}");
        // The table is terminal-safe.
        let out = cli(db, &["show", "--since", "2026-11-01", "--filter", "packages.*.*", "--bucket", "month"]);
        let (table, _) = text(&out);
        assert!(!table.contains('\x1b') && table.contains("2026-11-01"), "{table}");
        let _ = HOSTILE;
    });
}

/// The number of whole evaluations `show` counts over the last day, and their estimate.
fn stored(db: &str) -> (i64, f64) {
    let out = cli(db, &["show", "--days", "1", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let rows = rows.as_array().cloned().unwrap_or_default();
    (rows.iter().map(|r| r["n"].as_i64().unwrap()).sum(), rows.iter().map(|r| r["estimated_evaluations"].as_f64().unwrap()).sum())
}

#[test]
fn watch_ingests_reports_as_they_appear_and_waits_for_half_written_ones() {
    on_both_engines(|db| {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = Command::new(env!("CARGO_BIN_EXE_nix-evalcost"))
            .args(["history", "ingest", "--watch", dir.path().to_str().unwrap(), "--interval", "0.1"])
            .env("NIX_EVALCOST_DB", db)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let wait_for = |want: i64| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while stored(db).0 != want && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            stored(db)
        };
        // A writer that does not rename: the first half of a report, then the rest.
        let mut r = fixtures::report(0);
        r.meta.started_at = now_rfc3339(-60);
        r.meta.sample_rate = Some(0.5);
        let json = serde_json::to_vec(&r).unwrap();
        let path = dir.path().join("slow.json");
        std::fs::write(&path, &json[..json.len() / 2]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert_eq!(stored(db).0, 0, "a half-written report is not stored");
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&json[json.len() / 2..]).unwrap();
        assert_eq!(wait_for(1), (1, 2.0), "completed, it is stored; sampled at 1/2 it stands for 2");
        // Reports written atomically later are picked up too.
        write_recent(dir.path(), 2);
        assert_eq!(wait_for(3).0, 3);
        unsafe { libc::kill(watcher.id() as i32, libc::SIGTERM) };
        let status = watcher.wait().unwrap();
        let mut err = String::new();
        watcher.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(status.success(), "SIGTERM stops the collector cleanly: {err}");
        assert!(!err.contains("skipped"), "the half-written report was waited for, not skipped: {err}");
    });
}

fn write_recent(dir: &Path, n: u64) {
    for k in 0..n {
        let mut r = fixtures::report(k);
        r.meta.started_at = now_rfc3339(-(k as i64) * 3600 - 60);
        r.end.peak_rss_bytes = (k + 1) << 20;
        nix_evalcost_core::report_io::write_report(&dir.join(format!("recent-{k}.json")), &r).unwrap();
    }
}

#[test]
fn predict_prints_json_a_scheduler_reads() {
    on_both_engines(|db| {
        let dir = tempfile::tempdir().unwrap();
        write_recent(dir.path(), 20);
        assert!(cli(db, &["ingest", dir.path().to_str().unwrap()]).status.success());
        let out = cli(db, &["predict", "--metric", "peak-rss", "--quantile", "0.95", "--window", "7d"]);
        let (json, err) = text(&out);
        assert!(out.status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["metric"], "peak-rss");
        let p = &v["predictions"][0];
        assert_eq!(p["flake"], "github:example/flake");
        assert_eq!(p["n"], 20);
        // Nearest rank: the 19th of 1..=20 MiB.
        assert_eq!(p["value"], 19 << 20);
    });
}

/// A one-shot HTTP receiver on loopback: returns its URL and a handle yielding the body.
fn receiver() -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        stream.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").unwrap();
        String::from_utf8(body).unwrap()
    });
    (url, handle)
}

#[test]
fn check_alerts_and_posts_them_to_a_webhook() {
    on_both_engines(|db| {
        let dir = tempfile::tempdir().unwrap();
        write_recent(dir.path(), 5);
        assert!(cli(db, &["ingest", dir.path().to_str().unwrap()]).status.success());
        let (url, body) = receiver();
        // The latest evaluation's peak RSS is 1 MiB; above 512 KiB + 0 fires, below does not.
        let out = cli(db, &["check", "--rule", "peak-rss above 512KiB 0", "--rule", "peak-rss below 512KiB 0", "--webhook", &url, "--format", "json"]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let alerts: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(alerts.as_array().unwrap().len(), 1);
        assert_eq!(alerts[0]["kind"], "above");
        let posted: serde_json::Value = serde_json::from_str(&body.join().unwrap()).unwrap();
        assert_eq!(posted["alerts"], alerts);
        // A receiver that is down is reported, not fatal: the exit status is the alerts'.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let out = cli(db, &["check", "--rule", "peak-rss above 512KiB 0", "--webhook", &format!("http://{closed}/hook")]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1));
        assert!(stdout.starts_with("ALERT peak-rss above 512KiB 0: github:example/flake is 1.00 MiB"), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("the webhook") && stderr.contains("failed"), "{stderr}");
        // No alert: exit 0.
        let out = cli(db, &["check", "--rule", "peak-rss above 1GiB 0"]);
        assert_eq!(out.status.code(), Some(0));
    });
}

#[test]
fn export_is_valid_openmetrics_with_bounded_labels() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite").display().to_string();
    let reports = tempfile::tempdir().unwrap();
    fixtures::write_runs(reports.path(), 3);
    assert!(cli(&db, &["ingest", reports.path().to_str().unwrap()]).status.success());
    let out = cli(&db, &["export", "--top", "2"]);
    let (metrics, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(metrics.ends_with("# EOF\n"));
    assert!(metrics.contains("nix_evalcost_build_info{version=\"0.1.0\",nix_version=\"2.26.3\"}"), "{metrics}");
    // At most 2 outputs, then <other>.
    let paths: std::collections::BTreeSet<&str> = metrics.lines().filter(|l| l.starts_with("nix_evalcost_output_wall_seconds_total{")).collect();
    assert_eq!(paths.len(), 3, "{metrics}");
    assert!(metrics.contains("path=\"<other>\""));
    // The reference parser (Python prometheus_client, OpenMetrics) accepts it.
    let parse = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\nfams = list(p(sys.stdin.read()))\nprint(len(fams), sorted(f.type for f in fams)[0])";
    let mut py = Command::new("python3").args(["-c", parse]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("python3");
    py.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let result = py.wait_with_output().unwrap();
    assert!(result.status.success(), "prometheus_client (apt-get install python3-prometheus-client; scripts/nix-env installs it) rejected it: {}\n{metrics}", String::from_utf8_lossy(&result.stderr));
    assert!(String::from_utf8_lossy(&result.stdout).starts_with("11 "), "{}", String::from_utf8_lossy(&result.stdout));
}

#[test]
fn bad_input_is_one_line_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite").display().to_string();
    let reports = tempfile::tempdir().unwrap();
    fixtures::write_runs(reports.path(), 2);
    std::fs::write(reports.path().join("zz-corrupt.json"), "{\"schema\":").unwrap();
    for (args, says) in [
        (vec!["ingest", reports.path().to_str().unwrap()], "zz-corrupt.json"),
        (vec!["check", "--rule", "peak-rss sideways 1 1"], "not a kind"),
        (vec!["show", "--metric", "envs"], "does not keep 'envs'"),
        (vec!["predict", "--window", "7x"], "not a duration"),
        (vec!["show", "--since", "2026-13-01"], "not a date"),
    ] {
        let out = cli(&db, &args);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // The corrupt file stopped the whole ingest: nothing of the good ones either.
    let out = cli(&db, &["show", "--since", "2026-11-01", "--format", "json"]);
    assert_eq!(text(&out).0.trim(), "[]");
    // A store that cannot be opened is named.
    let out = cli("postgres://nobody@127.0.0.1:1/none", &["show"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("cannot open the history store postgres://…@127.0.0.1:1/none"), "{err}");
}
