//! `nix-evalcost serve`, end to end over loopback: the built binary, a real SQLite file and a
//! private PostgreSQL server, real HTTP (ureq), the Python `prometheus_client` parsers for
//! /metrics, and Debian's chromium for the board.

#[path = "common/browser.rs"]
mod browser;
#[path = "common/fixtures.rs"]
mod fixtures;
#[path = "../../store/tests/pg/mod.rs"]
mod pg;

use browser::{chromium, headless};
use fixtures::HOSTILE;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

struct Server {
    child: Child,
    base: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on a free loopback port with the token in a file.
fn serve(db: &str, extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nix-evalcost"))
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-ttl", "0", "--token-file", token.to_str().unwrap()])
        .args(extra)
        .env("NIX_EVALCOST_DB", db)
        .env_remove("NIX_EVALCOST_TOKEN")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (base, log) = wait_listening(&mut child);
    Server { child, base, log, _dir: dir }
}

/// The server's address from its first line, then its log drained in the background.
fn wait_listening(child: &mut Child) -> (String, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut base = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.lock().unwrap().push_str(&(line.clone() + "\n"));
        if let Some(at) = line.find(" on http://") {
            base = Some(line[at + 4..].trim().to_string());
            break;
        }
    }
    let base = base.unwrap_or_else(|| panic!("serve did not start: {}", log.lock().unwrap()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    (base, log)
}

/// Runs `test` with a SQLite file and with a fresh PostgreSQL database.
fn on_both_engines(test: impl Fn(&str)) {
    let dir = tempfile::tempdir().unwrap();
    test(&dir.path().join("h.sqlite").display().to_string());
    test(&pg::server().database());
}

/// (status, body) of a request; 4xx and 5xx are answers too.
fn call(request: ureq::Request, body: Option<&[u8]>) -> (u16, String) {
    let result = match body {
        Some(b) => request.send_bytes(b),
        None => request.call(),
    };
    match result {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    }
}

fn get(server: &Server, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = call(ureq::get(&format!("{}{path}", server.base)), None);
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
}

fn post(server: &Server, body: &[u8], token: &str, content_type: &str) -> (u16, String) {
    let request = ureq::post(&format!("{}/api/v1/reports", server.base)).set("Authorization", &format!("Bearer {token}")).set("Content-Type", content_type);
    call(request, Some(body))
}

/// Reports of the fixture flake that started in the last hours (the board looks at recent days).
fn recent_reports(dir: &Path, n: u64) -> Vec<PathBuf> {
    (0..n)
        .map(|k| {
            let mut r = fixtures::report(k);
            let t = time::OffsetDateTime::now_utc() - time::Duration::seconds(3600 * k as i64 + 60);
            r.meta.started_at = t.format(&time::format_description::well_known::Rfc3339).unwrap();
            let path = dir.join(format!("run-{k}.json"));
            nix_evalcost_core::report_io::write_report(&path, &r).unwrap();
            path
        })
        .collect()
}

fn total(server: &Server) -> i64 {
    get(server, "/api/v1/evaluations?days=30").1["total"].as_i64().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn ingest_over_http_equals_history_ingest_of_the_same_files() {
    on_both_engines(|db| {
        let dir = tempfile::tempdir().unwrap();
        let files = recent_reports(dir.path(), 3);
        let server = serve(db, &[]);
        for (i, f) in files.iter().enumerate() {
            let json = std::fs::read(f).unwrap();
            // JSON and gzip are the same report.
            let (status, body) = if i == 0 { post(&server, &json, TOKEN, "application/json") } else { post(&server, &gzip(&json), TOKEN, "application/gzip") };
            assert_eq!(status, 201, "{body}");
        }
        let (again, body) = post(&server, &std::fs::read(&files[0]).unwrap(), TOKEN, "application/json");
        assert_eq!((again, body.contains("\"stored\":false")), (200, true), "the same report twice is stored once: {body}");
        assert_eq!(total(&server), 3);

        // The same files through `history ingest`, into a second store: the same evaluations.
        let other = tempfile::tempdir().unwrap();
        let other_db = other.path().join("cli.sqlite").display().to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_nix-evalcost")).args(["history", "--db", &other_db, "ingest"]).args(&files).output().unwrap();
        assert!(out.status.success());
        let cli_server = serve(&other_db, &[]);
        let digests = |s: &Server| {
            let page = get(s, "/api/v1/evaluations?days=30&metric=fncalls");
            let mut d: Vec<(String, i64)> = page.1["evaluations"].as_array().unwrap().iter().map(|e| (e["digest"].as_str().unwrap().to_string(), e["value"].as_i64().unwrap())).collect();
            d.sort();
            d
        };
        assert_eq!(digests(&server), digests(&cli_server));
        let history = |s: &Server| get(s, "/api/v1/history?metric=fncalls&bucket=day&days=2").1["buckets"].clone();
        assert_eq!(history(&server), history(&cli_server));
    });
}

#[test]
fn bad_requests_get_a_4xx_and_store_nothing() {
    on_both_engines(|db| {
        let dir = tempfile::tempdir().unwrap();
        let files = recent_reports(dir.path(), 1);
        let json = std::fs::read(&files[0]).unwrap();
        let server = serve(db, &["--max-body", "4KiB"]);
        let (status, body) = get(&server, "/api/v1/evaluations?metric=envs");
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("allowed: wall, cpu, thunks"), "{body}");
        for bad in ["limit=100000", "limit=0", "days=0", "days=99999", "offset=-1", "limit=abc"] {
            assert_eq!(get(&server, &format!("/api/v1/evaluations?{bad}")).0, 400, "{bad}");
        }
        assert_eq!(get(&server, "/api/v1/history?bucket=fortnight").0, 400);
        assert_eq!(get(&server, "/api/v1/history?path=packages.x").0, 400, "path is a JSON array");
        assert_eq!(get(&server, "/api/v1/predictions?quantile=2").0, 400);
        assert_eq!(get(&server, "/api/v1/evaluations/abc").0, 400);
        assert_eq!(get(&server, "/api/v1/evaluations/999999").0, 404);
        assert_eq!(get(&server, "/nothing/here").0, 404);

        let small = gzip(&json);
        assert!(small.len() < 4096, "the gzipped fixture fits the 4 KiB limit");
        assert_eq!(post(&server, &small, "wrong-token-wrong-token", "application/gzip").0, 401);
        assert_eq!(post(&server, &small, "", "application/gzip").0, 401);
        assert_eq!(post(&server, b"{\"schema\": \"nix-evalcost/report\", ", TOKEN, "application/json").0, 400, "malformed JSON");
        assert_eq!(post(&server, b"{}", TOKEN, "application/json").0, 400, "not a report");
        assert_eq!(post(&server, &small[..small.len() / 2], TOKEN, "application/gzip").0, 400, "truncated gzip");
        assert_eq!(post(&server, &small, TOKEN, "text/html").0, 415);
        assert_eq!(post(&server, &json, TOKEN, "application/json").0, 413, "{} bytes is over --max-body", json.len());
        let mut bomb = vec![b' '; 200 << 10];
        bomb.extend_from_slice(&json);
        assert!(gzip(&bomb).len() < 4096);
        assert_eq!(post(&server, &gzip(&bomb), TOKEN, "application/gzip").0, 413, "inflating beyond 16 x --max-body");
        assert_eq!(total(&server), 0, "nothing stored");
        assert_eq!(post(&server, &small, TOKEN, "application/gzip").0, 201, "and a good one still goes in");

        // Without a token configured, ingest is off.
        let dir2 = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_nix-evalcost"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db", &dir2.path().join("x.sqlite").display().to_string()])
            .env_remove("NIX_EVALCOST_TOKEN")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (base, _) = wait_listening(&mut child);
        let (status, body) = call(ureq::post(&format!("{base}/api/v1/reports")).set("Authorization", &format!("Bearer {TOKEN}")), Some(&small));
        let _ = child.kill();
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("--token-file"));
    });
}

#[test]
fn the_api_pages_evaluations_and_draws_graphs_histories_predictions_and_alerts() {
    on_both_engines(|db| {
        let dir = tempfile::tempdir().unwrap();
        let files = recent_reports(dir.path(), 5);
        let out = Command::new(env!("CARGO_BIN_EXE_nix-evalcost")).args(["history", "--db", db, "ingest"]).args(&files).output().unwrap();
        assert!(out.status.success());
        let server = serve(db, &["--rule", "peak-rss above 100MiB 0", "--rule", "fncalls below 1 0"]);
        assert_eq!(get(&server, "/healthz").0, 200);
        // Paging: the fixture's wall times grow with the run, so run 4 is the most expensive.
        let (_, first) = get(&server, "/api/v1/evaluations?metric=wall&days=2&limit=2");
        assert_eq!((first["total"].as_i64(), first["next_offset"].as_i64()), (Some(5), Some(2)));
        let walls: Vec<i64> = first["evaluations"].as_array().unwrap().iter().map(|e| e["value"].as_i64().unwrap()).collect();
        assert!(walls[0] > walls[1]);
        let (_, last) = get(&server, "/api/v1/evaluations?metric=wall&days=2&limit=2&offset=4");
        assert_eq!((last["evaluations"].as_array().unwrap().len(), last["next_offset"].is_null()), (1, true));

        // One evaluation: its graph, each node's parent by path, the hostile name as data.
        let id = first["evaluations"][0]["id"].as_i64().unwrap();
        let (_, e) = get(&server, &format!("/api/v1/evaluations/{id}"));
        let nodes = e["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 12);
        let by_name = |name: &str| nodes.iter().find(|n| n["name"] == name).unwrap_or_else(|| panic!("{name}"));
        let hello = by_name("packages.x86_64-linux.hello");
        assert_eq!(nodes[hello["parent"].as_u64().unwrap() as usize]["name"], "packages.x86_64-linux");
        assert_eq!(hello["metrics"]["fncalls"], 40);
        assert!(nodes.iter().any(|n| n["path"][2] == HOSTILE), "the hostile name is a JSON string");
        assert!(by_name("packages.x86_64-linux.broken")["error"].as_bool().unwrap());
        assert_eq!(e["report_page"], format!("/evaluations/{id}"));

        // One output's history, by its path as a JSON array.
        let path = serde_json::to_string(&["packages", "x86_64-linux", "hello"]).unwrap();
        let (_, h) = get(&server, &format!("/api/v1/history?metric=fncalls&days=2&bucket=month&path={}", urlencode(&path)));
        let buckets = h["buckets"].as_array().unwrap();
        assert_eq!(buckets.iter().map(|b| b["n"].as_i64().unwrap()).sum::<i64>(), 5);
        assert!(buckets.iter().all(|b| b["min"] == 40 && b["max"] == 40));

        let (_, p) = get(&server, "/api/v1/predictions?metric=peak-rss&quantile=0.5&window=1d");
        assert_eq!(p["predictions"][0]["value"].as_i64(), Some(140 << 20), "the fixture's peak RSS");
        let (_, a) = get(&server, "/api/v1/alerts");
        assert_eq!(a["rules"].as_array().unwrap().len(), 2);
        assert_eq!(a["alerts"].as_array().unwrap().len(), 1, "120 MiB is above 100 MiB; fncalls are not below 1: {a}");

        // The evaluation's own report page: the HTML report's renderer, inert names.
        let response = ureq::get(&format!("{}/evaluations/{id}", server.base)).call().unwrap();
        assert!(response.header("Content-Security-Policy").unwrap().contains("default-src 'none'"));
        assert!(response.header("Access-Control-Allow-Origin").is_none(), "CORS is off by default");
        let html = response.into_string().unwrap();
        assert!(html.contains("\"hello\"") && html.contains(&format!("evaluation {id}")) && !html.contains("<script>alert(1)"), "{}", &html[..html.len().min(3000)]);
    });
}

fn urlencode(text: &str) -> String {
    text.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Parses `text` with prometheus_client's parser for `format` ("text" or "openmetrics"), and
/// returns the samples as `name{labels} value` lines.
fn parse_metrics(text: &str, format: &str) -> Vec<String> {
    let parser = match format {
        "openmetrics" => "from prometheus_client.openmetrics.parser import text_string_to_metric_families",
        _ => "from prometheus_client.parser import text_string_to_metric_families",
    };
    let script = format!("import sys\n{parser}\nfor f in text_string_to_metric_families(sys.stdin.read()):\n    for s in f.samples:\n        print(s.name, sorted(s.labels.items()), s.value)\n");
    let mut child = Command::new("python3").args(["-c", &script]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "prometheus_client ({format}) rejected it: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    // One parser prints 2, the other 2.0.
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.strip_suffix(".0").unwrap_or(l).to_string()).collect()
}

#[test]
fn metrics_negotiate_prometheus_text_or_openmetrics_and_count_ingests() {
    on_both_engines(|db| {
        let dir = tempfile::tempdir().unwrap();
        let files = recent_reports(dir.path(), 2);
        let server = serve(db, &["--metrics-top", "1"]);
        for f in &files {
            assert_eq!(post(&server, &std::fs::read(f).unwrap(), TOKEN, "application/json").0, 201);
        }
        assert_eq!(post(&server, &std::fs::read(&files[0]).unwrap(), TOKEN, "application/json").0, 200);
        assert_eq!(post(&server, b"{}", TOKEN, "application/json").0, 400);
        let scrape = |accept: &str| {
            let r = ureq::get(&format!("{}/metrics", server.base)).set("Accept", accept).call().unwrap();
            (r.header("Content-Type").unwrap().to_string(), r.into_string().unwrap())
        };
        // What Prometheus sends: OpenMetrics first.
        let (ct, om) = scrape("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5");
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        assert!(om.ends_with("# EOF\n"));
        let samples = parse_metrics(&om, "openmetrics");
        let (ct, text) = scrape("text/plain");
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        assert!(!text.contains("# EOF"));
        let text_samples = parse_metrics(&text, "text");
        for s in [&samples, &text_samples] {
            assert!(s.contains(&"nix_evalcost_ingested_reports_total [('result', 'new')] 2".to_string()), "{s:?}");
            assert!(s.contains(&"nix_evalcost_ingested_reports_total [('result', 'duplicate')] 1".to_string()));
            assert!(s.contains(&"nix_evalcost_ingested_reports_total [('result', 'rejected')] 1".to_string()));
            assert!(s.contains(&"nix_evalcost_evaluations_total [('flake', 'github:example/flake')] 2".to_string()), "{s:?}");
            assert!(s.iter().any(|l| l.starts_with("nix_evalcost_build_info [('nix_version', '2.26.3'), ('version', ")));
            assert!(s.iter().any(|l| l.starts_with("nix_evalcost_evaluation_peak_rss_bytes_bucket")));
            // --metrics-top 1: one output named, the rest (the hostile one among them) <other>.
            let outputs: std::collections::BTreeSet<&str> = s.iter().filter(|l| l.starts_with("nix_evalcost_output_wall_seconds_total")).map(|l| l.as_str()).collect();
            assert_eq!(outputs.len(), 2, "{outputs:?}");
            assert!(outputs.iter().any(|l| l.contains("'<other>'")));
        }
    });
}

#[test]
fn the_collector_runs_inside_the_server_and_shutdown_finishes_ingests() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite").display().to_string();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let mut server = serve(&db, &["--watch", inbox.to_str().unwrap(), "--interval", "0.1"]);
    let reports = tempfile::tempdir().unwrap();
    let files = recent_reports(reports.path(), 12);
    std::fs::copy(&files[0], inbox.join("a.json")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while total(&server) < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(total(&server), 1, "collected from the directory");

    // Ingests in flight when SIGTERM arrives are finished: every 201 is in the store.
    let base = server.base.clone();
    let posts: Vec<_> = files[1..]
        .iter()
        .map(|f| {
            let (base, body) = (base.clone(), std::fs::read(f).unwrap());
            std::thread::spawn(move || {
                let request = ureq::post(&format!("{base}/api/v1/reports")).set("Authorization", &format!("Bearer {TOKEN}")).set("Content-Type", "application/json");
                match request.send_bytes(&body) {
                    Ok(r) => r.status(),
                    Err(ureq::Error::Status(code, _)) => code,
                    Err(_) => 0, // refused: the server had stopped accepting
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(30));
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let statuses: Vec<u16> = posts.into_iter().map(|p| p.join().unwrap()).collect();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "a clean stop: {}", server.log.lock().unwrap());
    // The log is drained by a thread of its own: give it the last lines.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log.lock().unwrap().contains("\"stopped\"") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.log.lock().unwrap().contains("\"stopped\""), "the JSON log says so");
    let created = statuses.iter().filter(|&&s| s == 201).count() as i64;
    assert!(statuses.iter().all(|&s| s == 201 || s == 0 || s == 503), "{statuses:?}");
    let stored = Command::new(env!("CARGO_BIN_EXE_nix-evalcost")).args(["history", "--db", &db, "show", "--days", "2", "--format", "json"]).output().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&stored.stdout).unwrap();
    let n: i64 = rows.as_array().unwrap().iter().map(|r| r["n"].as_i64().unwrap()).sum();
    assert_eq!(n, 1 + created, "{statuses:?}");
}

// ---- the board in a browser ------------------------------------------------------------------

/// Chromium's console messages and uncaught errors (with --enable-logging they are
/// `CONSOLE` lines on stderr).
fn console_errors(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr).lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).map(str::to_string).collect()
}

#[test]
fn the_board_works_in_a_browser_with_no_console_errors() {
    if chromium().is_none() {
        eprintln!("skipped: no chromium (scripts/nix-env installs Debian's)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite").display().to_string();
    let files = recent_reports(dir.path(), 6);
    assert!(Command::new(env!("CARGO_BIN_EXE_nix-evalcost")).args(["history", "--db", &db, "ingest"]).args(&files).status().unwrap().success());
    let server = serve(&db, &["--rule", "peak-rss above 100MiB 0"]);

    let profile = tempfile::tempdir().unwrap();
    let out = headless(profile.path()).arg("--dump-dom").arg(format!("{}/#selftest", server.base)).output().unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("data-selftest=\"ok\""), "the board's self-test: {}", dom.lines().find(|l| l.contains("data-selftest")).unwrap_or(&dom[..dom.len().min(2000)]));
    assert!(!dom.contains("data-errors"), "script errors: {dom}");
    assert_eq!(console_errors(&out.stderr), Vec::<String>::new());
    // The hostile name is text in the outputs table and the treemap, never markup.
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!dom.contains("<script>alert(1)"));
    assert!(dom.contains("<path d=\"M"), "the history chart is drawn");

    let shots = std::env::var_os("EVALCOST_SCREENSHOTS").map_or_else(|| dir.path().to_path_buf(), PathBuf::from);
    let id = get(&server, "/api/v1/evaluations?days=2&limit=1").1["evaluations"][0]["id"].as_i64().unwrap();
    for (name, url) in [("board.png", format!("{}/#first", server.base)), ("evaluation.png", format!("{}/evaluations/{id}", server.base))] {
        let profile = tempfile::tempdir().unwrap();
        let png = shots.join(name);
        let out = headless(profile.path()).arg(format!("--screenshot={}", png.display())).arg("--window-size=1400,1300").arg(&url).output().unwrap();
        assert!(std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0) > 20_000, "a real picture of {url}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(console_errors(&out.stderr), Vec::<String>::new(), "{url}");
    }
}
