//! A load generator for `serve`'s benchmark (scripts/bench-serve): N client threads over
//! keep-alive connections, each request timed; prints one JSON line of throughput and latency
//! percentiles. Rust, not Python, so the client's own overhead stays out of the latencies.
//!
//!   loadgen get  CLIENTS REQUESTS URL...          (URLs taken round-robin)
//!   loadgen post CLIENTS TOKEN_FILE URL FILE...    (each file POSTed once, gzip bodies)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let clients: usize = args.get(1).and_then(|c| c.parse().ok()).expect("usage: loadgen get|post CLIENTS …");
    let (jobs, token, bodies): (Vec<String>, Option<String>, Vec<Vec<u8>>) = match args[0].as_str() {
        "get" => {
            let n: usize = args[2].parse().expect("REQUESTS");
            let urls = &args[3..];
            ((0..n).map(|i| urls[i % urls.len()].clone()).collect(), None, Vec::new())
        }
        "post" => {
            let token = std::fs::read_to_string(&args[2]).expect("TOKEN_FILE").trim().to_string();
            let files = &args[4..];
            let bodies: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).expect("a body file")).collect();
            (vec![args[3].clone(); bodies.len()], Some(token), bodies)
        }
        other => panic!("unknown mode {other}"),
    };
    let agent = ureq::AgentBuilder::new().max_idle_connections_per_host(clients).timeout(Duration::from_secs(60)).build();
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::with_capacity(jobs.len())));
    let jobs = Arc::new(jobs);
    let bodies = Arc::new(bodies);
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (agent, next, results, jobs, bodies, token) = (agent.clone(), next.clone(), results.clone(), jobs.clone(), bodies.clone(), token.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs.len() {
                    break;
                }
                let t = Instant::now();
                let response = match &token {
                    Some(token) => agent
                        .post(&jobs[i])
                        .set("Authorization", &format!("Bearer {token}"))
                        .set("Content-Type", "application/gzip")
                        .send_bytes(&bodies[i]),
                    None => agent.get(&jobs[i]).call(),
                };
                let status = match response {
                    Ok(r) => {
                        let status = r.status();
                        let _ = r.into_string();
                        status
                    }
                    Err(ureq::Error::Status(code, _)) => code,
                    Err(_) => 0,
                };
                results.lock().unwrap().push((t.elapsed(), status));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let results = results.lock().unwrap();
    let mut latencies: Vec<f64> = results.iter().map(|(d, _)| d.as_secs_f64() * 1000.0).collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| latencies[((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1];
    let mut statuses = std::collections::BTreeMap::new();
    for (_, s) in results.iter() {
        *statuses.entry(s.to_string()).or_insert(0) += 1;
    }
    println!(
        "{}",
        serde_json::json!({ "requests": results.len(), "seconds": elapsed, "per_second": results.len() as f64 / elapsed,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0), "statuses": statuses })
    );
}
