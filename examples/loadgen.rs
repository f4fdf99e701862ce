//! Load generator for `serve`: POSTs wrapped Pub/Sub push deliveries (Cloud Audit Log `SetIamPolicy`
//! entries with a `REMOVE` delta) to `/pubsub/push` on loopback, spread over a list of projects, with a
//! share of duplicates (the same `messageId` and data re-sent with the next `deliveryAttempt`, as Pub/Sub's
//! at-least-once delivery does).
//! Bounded in count (`--deliveries`), concurrency (`--concurrency`) and time (`--max-seconds`).
//!
//! ```sh
//! cargo build --release --example loadgen
//! target/release/examples/loadgen --url http://127.0.0.1:8080/pubsub/push \
//!     --projects-file projects.txt --deliveries 10000 --duplicates 0.3 --concurrency 64 --max-seconds 120
//! ```
//!
//! `projects.txt` holds one project id per line. Prints one JSON document on stdout:
//! `{"sent":N,"unique":U,"duplicates":D,"elapsed_ms":..,"deliveries_per_s":..,"latency_ms":{"p50":..,
//! "p90":..,"p99":..,"max":..},"status":{"204":N,..},"transport_errors":N,"timed_out":bool}`.
//! Only loopback URLs are accepted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

struct Args {
    url: String,
    projects: Vec<String>,
    deliveries: usize,
    duplicates: f64,
    concurrency: usize,
    max_seconds: u64,
    seed: u64,
    role: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen --url http://127.0.0.1:PORT/pubsub/push (--projects-file FILE | --project ID ...)\n\
         \x20              [--deliveries 10000] [--duplicates 0.3] [--concurrency 64] [--max-seconds 120]\n\
         \x20              [--seed 1] [--role roles/container.serviceAgent]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        projects: Vec::new(),
        deliveries: 10_000,
        duplicates: 0.3,
        concurrency: 64,
        max_seconds: 120,
        seed: 1,
        role: "roles/container.serviceAgent".to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || match it.next() {
            Some(v) => v,
            None => usage(),
        };
        match flag.as_str() {
            "--url" => a.url = value(),
            "--project" => a.projects.push(value()),
            "--projects-file" => {
                let path = value();
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    eprintln!("loadgen: cannot read {path}: {e}");
                    std::process::exit(2)
                });
                a.projects.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
            }
            "--deliveries" => a.deliveries = value().parse().unwrap_or_else(|_| usage()),
            "--duplicates" => a.duplicates = value().parse().unwrap_or_else(|_| usage()),
            "--concurrency" => a.concurrency = value().parse().unwrap_or_else(|_| usage()),
            "--max-seconds" => a.max_seconds = value().parse().unwrap_or_else(|_| usage()),
            "--seed" => a.seed = value().parse().unwrap_or_else(|_| usage()),
            "--role" => a.role = value(),
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("loadgen: unknown argument {flag}");
                usage()
            }
        }
    }
    let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"];
    if !loopback.iter().any(|p| a.url.starts_with(p)) {
        eprintln!(
            "loadgen: --url must be a loopback http URL, got `{}`",
            a.url
        );
        std::process::exit(2)
    }
    if a.projects.is_empty()
        || a.concurrency == 0
        || a.deliveries > 1_000_000
        || a.max_seconds > 3600
        || !(0.0..1.0).contains(&a.duplicates)
    {
        usage()
    }
    a
}

/// A Cloud Audit Log entry: `member` removed from `role` on `project` by someone else.
fn removal_entry(insert_id: &str, role: &str, member: &str, project: &str) -> Value {
    json!({
        "insertId": insert_id,
        "logName": format!("projects/{project}/logs/cloudaudit.googleapis.com%2Factivity"),
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "mallory@example.com"},
            "methodName": "SetIamPolicy",
            "resourceName": format!("projects/{project}"),
            "serviceName": "cloudresourcemanager.googleapis.com",
            "serviceData": {
                "@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
                "policyDelta": {"bindingDeltas": [{"action": "REMOVE", "role": role, "member": member}]}
            },
            "status": {}
        },
        "resource": {"type": "project", "labels": {"project_id": project}},
        "severity": "NOTICE",
        "timestamp": "2026-11-29T00:31:00.123456Z"
    })
}

/// The wrapped push body Pub/Sub sends for one message, on its `attempt`-th delivery (a subscription
/// with a dead-letter policy, as Terraform sets up, numbers deliveries).
fn push_body(message_id: &str, entry: &Value, attempt: u32) -> Vec<u8> {
    let data = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(entry).expect("entry serializes"));
    serde_json::to_vec(&json!({
        "message": {
            "attributes": {"logging.googleapis.com/timestamp": "2026-11-29T00:31:00.123456Z"},
            "data": data,
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": "2026-11-29T00:31:01.5Z",
            "publish_time": "2026-11-29T00:31:01.5Z"
        },
        "subscription": "projects/ops-project/subscriptions/loadgen",
        "deliveryAttempt": attempt
    }))
    .expect("body serializes")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let mut rng = StdRng::seed_from_u64(args.seed);

    // The delivery plan: unique messages, and duplicates re-sending an earlier message's exact body.
    let mut bodies: Vec<Arc<Vec<u8>>> = Vec::new();
    // The same messages as Pub/Sub redelivers them (same id and data, the next attempt number).
    let mut redeliveries: Vec<Arc<Vec<u8>>> = Vec::new();
    let mut plan: Vec<Arc<Vec<u8>>> = Vec::with_capacity(args.deliveries);
    let mut duplicates = 0usize;
    for i in 0..args.deliveries {
        if !bodies.is_empty() && rng.random::<f64>() < args.duplicates {
            let j = rng.random_range(0..bodies.len());
            plan.push(redeliveries[j].clone());
            duplicates += 1;
        } else {
            let project = &args.projects[rng.random_range(0..args.projects.len())];
            let member = format!("serviceAccount:gke-nodes@{project}.iam.gserviceaccount.com");
            let entry = removal_entry(&format!("lg-{i}"), &args.role, &member, project);
            let id = format!("lg-{}-{i}", args.seed);
            let body = Arc::new(push_body(&id, &entry, 1));
            redeliveries.push(Arc::new(push_body(&id, &entry, 2)));
            bodies.push(body.clone());
            plan.push(body);
        }
    }

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(args.max_seconds.max(1)))
        .build()
        .expect("HTTP client");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.max_seconds);
    let url = Arc::new(args.url.clone());
    let results: Vec<Option<(Result<u16, String>, f64)>> = futures::stream::iter(plan)
        .map(|body| {
            let http = http.clone();
            let url = url.clone();
            async move {
                if Instant::now() >= deadline {
                    return None; // Out of time: not sent.
                }
                let t = Instant::now();
                let r = http
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body.as_ref().clone())
                    .send()
                    .await;
                let status = match r {
                    Ok(resp) => {
                        let s = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        Ok(s)
                    }
                    Err(e) => Err(e.to_string()),
                };
                Some((status, t.elapsed().as_secs_f64() * 1000.0))
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed();

    let mut status: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut transport_errors = 0u64;
    let mut not_sent = 0u64;
    let mut first_error = None;
    for r in results {
        match r {
            None => not_sent += 1,
            Some((Ok(code), ms)) => {
                *status.entry(code.to_string()).or_default() += 1;
                latencies.push(ms);
            }
            Some((Err(e), ms)) => {
                transport_errors += 1;
                latencies.push(ms);
                first_error.get_or_insert(e);
            }
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let sent = latencies.len();
    let doc = json!({
        "sent": sent,
        "planned": args.deliveries,
        "not_sent": not_sent,
        "unique": args.deliveries - duplicates,
        "duplicates": duplicates,
        "projects": args.projects.len(),
        "concurrency": args.concurrency,
        "elapsed_ms": elapsed.as_millis() as u64,
        "deliveries_per_s": (sent as f64 / elapsed.as_secs_f64().max(1e-9)).round(),
        "latency_ms": {
            "p50": (percentile(&latencies, 50.0) * 10.0).round() / 10.0,
            "p90": (percentile(&latencies, 90.0) * 10.0).round() / 10.0,
            "p99": (percentile(&latencies, 99.0) * 10.0).round() / 10.0,
            "max": (latencies.last().copied().unwrap_or(0.0) * 10.0).round() / 10.0,
        },
        "status": status,
        "transport_errors": transport_errors,
        "first_transport_error": first_error,
        "timed_out": not_sent > 0,
    });
    println!("{doc}");
}
