//! Times parsing and validating one report, as `profile`, `report` and the server's ingest do:
//!
//!     cargo run --release -p nix-evalcost-core --example parse_report -- REPORT [TIMES]
//!
//! Prints the mean over TIMES parses (default 20) of the file's bytes, read once.

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(std::path::PathBuf::from) else {
        eprintln!("usage: parse_report REPORT [TIMES]");
        std::process::exit(2);
    };
    let times: u32 = args.next().map_or(20, |s| s.parse().unwrap_or(20)).max(1);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("parse_report: cannot read {}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let start = std::time::Instant::now();
    for _ in 0..times {
        if let Err(e) = nix_evalcost_core::report_io::report_from_bytes(&path, &bytes, u64::MAX) {
            eprintln!("parse_report: {e}");
            std::process::exit(1);
        }
    }
    println!("{:.2} ms per parse ({} bytes, {times} parses)", start.elapsed().as_secs_f64() * 1e3 / f64::from(times), bytes.len());
}
