//! CPU cost of intake per push delivery: `parse_push` (envelope, base64) plus `classify` (the message)
//! over the push-envelope fuzz seeds and the classify-data seeds wrapped as pushes, timed in a loop on one
//! thread. No timing assertion anywhere: it prints nanoseconds per delivery for each body and their mean,
//! so two builds can be compared on the same machine.
//!
//! ```sh
//! cargo build --locked --release --example parse_cost
//! target/release/examples/parse_cost [--iterations 20000] [--seeds fuzz/seeds]
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine as _;
use gke_iam_remediator::intake::{classify, parse_push};

fn main() {
    let mut iterations = 20_000usize;
    let mut seeds = PathBuf::from("fuzz/seeds");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--iterations", Some(v)) => iterations = v.parse().expect("--iterations N"),
            ("--seeds", Some(v)) => seeds = PathBuf::from(v),
            _ => {
                eprintln!("usage: parse_cost [--iterations N] [--seeds DIR]");
                std::process::exit(2);
            }
        }
    }
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, body) in read_dir(&seeds.join("push_envelope")) {
        if name.contains("unwrapped") {
            continue;
        }
        bodies.push((name, body));
    }
    for (name, data) in read_dir(&seeds.join("classify_data")) {
        let envelope = serde_json::json!({
            "message": {
                "data": base64::engine::general_purpose::STANDARD.encode(&data),
                "messageId": "1234567890123456",
                "publishTime": "2025-06-02T09:15:04.000Z",
                "attributes": {"logging.googleapis.com/timestamp": "2025-06-02T09:15:03.118273Z"},
            },
            "subscription": "projects/ops-project/subscriptions/gke-iam-events",
        });
        bodies.push((
            format!("wrapped {name}"),
            serde_json::to_vec(&envelope).expect("json"),
        ));
    }
    if bodies.is_empty() {
        eprintln!("no seeds under {}", seeds.display());
        std::process::exit(2);
    }
    let headers = http::HeaderMap::new();
    let mut total_ns = 0f64;
    println!("{:>10}  {:>7}  body", "ns/push", "bytes");
    for (name, body) in &bodies {
        // Warm up, then time.
        let mut sink = 0usize;
        for _ in 0..iterations / 10 + 1 {
            sink += run_once(body, &headers);
        }
        let start = Instant::now();
        for _ in 0..iterations {
            sink += run_once(body, &headers);
        }
        let ns = start.elapsed().as_nanos() as f64 / iterations as f64;
        total_ns += ns;
        println!("{ns:>10.0}  {:>7}  {name}  (sink {})", body.len(), sink % 7);
    }
    println!(
        "{:>10.0}  {:>7}  mean over {} bodies, {iterations} iterations each",
        total_ns / bodies.len() as f64,
        "",
        bodies.len()
    );
}

/// One delivery's intake; returns something derived from the result so the loop is not optimised away.
fn run_once(body: &[u8], headers: &http::HeaderMap) -> usize {
    match parse_push(body, Some("application/json"), headers) {
        Ok(message) => match classify(&message) {
            Ok(c) => match std::hint::black_box(c) {
                gke_iam_remediator::intake::Classification::Hints(h) => h.len(),
                gke_iam_remediator::intake::Classification::Ignored { reason } => {
                    reason.len() % 3 + 1
                }
            },
            Err(e) => std::hint::black_box(e.to_string().len()) % 3 + 10,
        },
        Err(e) => std::hint::black_box(e.to_string().len()) % 3 + 100,
    }
}

fn read_dir(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let body = std::fs::read(e.path()).ok()?;
                    Some((e.file_name().to_string_lossy().into_owned(), body))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
