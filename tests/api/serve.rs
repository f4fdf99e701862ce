//! `serve` end to end, here: the official Pub/Sub emulator, the simulator publishing audit-log entries
//! to it, the real `serve` binary behind a push subscription, and the real `gcloud` breaking IAM.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use gcp_sim::{Faults, Latency, SimHandle, SimOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{Api, Gcloud, PubsubEmulator, TempFile, start_sim_with};

/// The project hosting the remediator's topics in these tests.
pub const OPS: &str = "ops-project";
/// The remediator's own identity in these tests.
pub const SELF: &str = "gke-iam-remediator@ops-project.iam.gserviceaccount.com";
/// The GKE service agent of `acme-prod`.
pub const AGENT: &str =
    "serviceAccount:service-200000000001@container-engine-robot.iam.gserviceaccount.com";

/// A healthy one-project world.
pub const WORLD: &str = r#"
projects:
  - id: acme-prod
    number: "200000000001"
    services: [container.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/owner
          members: [user:owner@example.com]
        - role: roles/container.serviceAgent
          members: [serviceAccount:service-200000000001@container-engine-robot.iam.gserviceaccount.com]
        - role: roles/container.defaultNodeServiceAgent
          members: [serviceAccount:service-200000000001@gcp-sa-gkenode.iam.gserviceaccount.com]
        - role: roles/container.defaultNodeServiceAccount
          members: [serviceAccount:gke-nodes@acme-prod.iam.gserviceaccount.com]
    service_accounts:
      - {email: gke-nodes@acme-prod.iam.gserviceaccount.com, unique_id: "100000000000000000001"}
      - {email: bare@acme-prod.iam.gserviceaccount.com, unique_id: "100000000000000000002"}
    clusters:
      - name: c1
        location: us-central1
        node_pools:
          - {name: pool-1, service_account: gke-nodes@acme-prod.iam.gserviceaccount.com}
"#;

/// The running `serve` binary, killed on drop; its output (the address on stdout, JSON logs on
/// stderr) is collected.
pub struct Serve {
    child: tokio::process::Child,
    pub url: String,
    pub logs: Arc<Mutex<String>>,
    /// The policy file the process reads, removed with it.
    _policy: Option<TempFile>,
}

impl Serve {
    /// `serve` on `127.0.0.1`, on the port the system picks (the address it prints is read back), or
    /// on `PORT` when `env` sets it (an instance restarted where the last one listened).
    pub async fn start(env: &[(&str, String)]) -> Serve {
        Self::launch(env, None).await
    }

    /// `serve` as [`Serve::start`], with `policy` as its policy file.
    pub async fn with_policy(policy: &str, env: &[(&str, String)]) -> Serve {
        Self::launch(env, Some(TempFile::new(policy))).await
    }

    async fn launch(env: &[(&str, String)], policy: Option<TempFile>) -> Serve {
        let port = env
            .iter()
            .find(|(k, _)| *k == "PORT")
            .map_or("0", |(_, v)| v.as_str());
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gke-iam-remediator"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("REMEDIATOR_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(file) = &policy {
            cmd.env("REMEDIATOR_POLICY", file.arg());
        }
        let mut child = cmd.spawn().expect("serve starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let logs = Arc::new(Mutex::new(String::new()));
        let log_sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log_sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.to_owned());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let url = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("serve printed its address within 30 s")
            .expect("serve printed its address");
        Serve {
            child,
            url,
            logs,
            _policy: policy,
        }
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Value {
        reqwest::get(format!("{}/healthz", self.url))
            .await
            .expect("healthz answers")
            .json()
            .await
            .expect("healthz is JSON")
    }

    /// Waits (up to `within`) until `/healthz` counts at least `n` pushes answered 204; the count.
    pub async fn acked_pushes(&self, n: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let acked = self.health().await["pushes"]["acked"]
                .as_u64()
                .expect("healthz counts acknowledged pushes");
            if acked >= n || Instant::now() > deadline {
                return acked;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Waits for the process to exit, killing it after `grace` (as Cloud Run does after SIGTERM).
    pub async fn wait_exit(&mut self, grace: Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status.expect("wait for serve"),
            Err(_) => {
                let _ = self.child.kill().await;
                self.child.wait().await.expect("wait for serve")
            }
        }
    }

    /// The process id (for signals and /proc measurements).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("serve is running")
    }
}

pub struct Loop {
    pub emulator: PubsubEmulator,
    pub sim: SimHandle,
    pub serve: Serve,
    pub http: reqwest::Client,
}

impl Loop {
    /// Emulator + topics, simulator publishing audit logs, `serve`, push subscription to it.
    pub async fn start(world: &str, policy: &str) -> Loop {
        let emulator = PubsubEmulator::start().await;
        let http = reqwest::Client::new();
        let e = format!("http://{}/v1/projects/{OPS}", emulator.host);
        for topic in ["iam-events", "notifications"] {
            let r = http
                .put(format!("{e}/topics/{topic}"))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "create topic {topic}");
        }
        let r = http
            .put(format!("{e}/subscriptions/notifications-pull"))
            .json(&json!({"topic": format!("projects/{OPS}/topics/notifications"), "ackDeadlineSeconds": 60}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let sim = start_sim_with(
            world,
            SimOptions {
                audit_log_topic: Some(format!("projects/{OPS}/topics/iam-events")),
                pubsub_emulator_host: Some(emulator.host.clone()),
                default_principal: "user:admin@example.com".to_owned(),
            },
        )
        .await;
        let serve = Serve::with_policy(
            policy,
            &[
                ("REMEDIATOR_API_ENDPOINT", sim.base_url()),
                ("REMEDIATOR_ACCESS_TOKEN", format!("sim:{SELF}")),
                ("REMEDIATOR_SELF_EMAIL", SELF.to_owned()),
                (
                    "REMEDIATOR_NOTIFY_TOPIC",
                    format!("projects/{OPS}/topics/notifications"),
                ),
                ("PUBSUB_EMULATOR_HOST", emulator.host.clone()),
                ("REMEDIATOR_COALESCE_MS", "300".to_owned()),
            ],
        )
        .await;
        let r = http
            .put(format!("{e}/subscriptions/iam-events-push"))
            .json(&json!({
                "topic": format!("projects/{OPS}/topics/iam-events"),
                "pushConfig": {"pushEndpoint": format!("{}/pubsub/push", serve.url)},
                "ackDeadlineSeconds": 30,
            }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "create push subscription");
        Loop {
            emulator,
            sim,
            serve,
            http,
        }
    }

    pub async fn publish_event(&self, entry: &Value) {
        let data =
            base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(entry).unwrap());
        let r = self
            .http
            .post(format!("http://{}/v1/projects/{OPS}/topics/iam-events:publish", self.emulator.host))
            .json(&json!({"messages": [{"data": data, "attributes": {"logging.googleapis.com/timestamp": "2026-11-29T00:31:00Z"}}]}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// Notifications published so far (pulled and acknowledged).
    pub async fn notifications(&self, wait: Duration) -> Vec<Value> {
        let url = format!(
            "http://{}/v1/projects/{OPS}/subscriptions/notifications-pull",
            self.emulator.host
        );
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let r: Value = self
                .http
                .post(format!("{url}:pull"))
                .json(&json!({"maxMessages": 100, "returnImmediately": true}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let msgs = r["receivedMessages"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ack_ids: Vec<Value> = msgs.iter().map(|m| m["ackId"].clone()).collect();
            for m in &msgs {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(m["message"]["data"].as_str().unwrap_or_default())
                    .unwrap();
                let mut n: Value = serde_json::from_slice(&data).unwrap();
                n["_attributes"] = m["message"]["attributes"].clone();
                out.push(n);
            }
            if !ack_ids.is_empty() {
                self.http
                    .post(format!("{url}:acknowledge"))
                    .json(&json!({"ackIds": ack_ids}))
                    .send()
                    .await
                    .unwrap();
            }
            if Instant::now() > deadline {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn writes(&self) -> u64 {
        self.sim
            .stats()
            .by_endpoint
            .get("cloudresourcemanager.projects.setIamPolicy")
            .copied()
            .unwrap_or(0)
    }

    pub async fn stop(self) {
        self.serve.stop().await;
        self.sim.shutdown().await;
    }
}

/// Removes the GKE service agent's binding with the real gcloud, as a person would.
pub async fn remove_agent_binding(gcloud: &Gcloud) {
    let args = [
        "projects",
        "remove-iam-policy-binding",
        "acme-prod",
        "--member",
        AGENT,
        "--role",
        "roles/container.serviceAgent",
    ];
    let out = gcloud.run(&args).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
}

pub fn has(sim: &SimHandle, role: &str, member: &str) -> bool {
    let p = sim.policy("projects/acme-prod").unwrap();
    p.grants_unconditionally(role, member)
}

pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binding_removed_with_gcloud_is_restored_and_a_restored_notification_is_published() {
    let lp = Loop::start(WORLD, "mode: enforce\n").await;
    let gcloud = Gcloud::new(&lp.sim.base_url(), "acme-prod");

    let out = gcloud
        .run(&[
            "projects",
            "remove-iam-policy-binding",
            "acme-prod",
            "--member",
            AGENT,
            "--role",
            "roles/container.serviceAgent",
            "--format=json",
        ])
        .await;
    if out.code != 0 {
        let j: Value = lp
            .http
            .get(format!("{}_sim/journal", lp.sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        panic!("{}\n{j:#}", out.stderr);
    }
    let removed_at = Instant::now();

    let restored = wait_until(Duration::from_secs(30), || {
        has(&lp.sim, "roles/container.serviceAgent", AGENT)
    })
    .await;
    assert!(
        restored.is_some(),
        "not restored; serve logs:\n{}",
        lp.serve.logs.lock().unwrap()
    );
    eprintln!("removal -> restored policy: {:?}", removed_at.elapsed());
    let notes = lp.notifications(Duration::from_secs(3)).await;
    let restored: Vec<&Value> = notes
        .iter()
        .filter(|n| n["outcome"] == "restored")
        .collect();
    assert_eq!(restored.len(), 1, "{notes:#?}");
    let n = restored[0];
    assert_eq!(n["schema"], "gke-iam-remediator.notification/v1");
    assert_eq!(n["requirement"], "gke-service-agent");
    assert_eq!(n["principal"], AGENT);
    assert_eq!(n["evidence"]["actor"], "admin@example.com");
    assert_eq!(n["_attributes"]["outcome"], "restored");
    assert_eq!(n["_attributes"]["project_id"], "acme-prod");
    assert!(n["actions"][0]["etag_before"] != n["actions"][0]["etag_after"]);
    assert_eq!(
        lp.writes(),
        2,
        "gcloud's removal and exactly one restore (our own audit-log entry triggers nothing)"
    );
    lp.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_publishes_would_restore_and_writes_nothing() {
    let lp = Loop::start(WORLD, "mode: dry-run\n").await;
    let gcloud = Gcloud::new(&lp.sim.base_url(), "acme-prod");
    lp.sim.reset_stats();

    remove_agent_binding(&gcloud).await;

    let notes = lp.notifications(Duration::from_secs(8)).await;
    assert!(
        notes
            .iter()
            .any(|n| n["outcome"] == "would-restore" && n["principal"] == AGENT),
        "{notes:#?}"
    );
    assert_eq!(lp.writes(), 1, "only gcloud's own write");
    assert!(!has(&lp.sim, "roles/container.serviceAgent", AGENT));
    lp.stop().await;
}

/// A Cloud Audit Log entry (as a log sink exports it) saying `member` lost `role` on `project`.
pub fn removal_entry(insert_id: &str, role: &str, member: &str, project: &str) -> Value {
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

#[tokio::test(flavor = "multi_thread")]
async fn forged_events_asking_for_owner_grant_nothing_and_a_duplicate_burst_writes_once() {
    let lp = Loop::start(WORLD, "mode: enforce\n").await;
    let owner_before = lp.sim.policy("projects/acme-prod").unwrap();
    let acked_before = lp.serve.acked_pushes(0, Duration::ZERO).await;

    // Forged: "roles/owner was removed from mallory" -- the remediator re-verifies and finds nothing to do.
    lp.publish_event(&removal_entry(
        "forged-1",
        "roles/owner",
        "user:mallory@example.com",
        "acme-prod",
    ))
    .await;
    lp.publish_event(&removal_entry(
        "forged-2",
        "roles/owner",
        "user:mallory@example.com",
        "victim-project",
    ))
    .await;
    // Both handled to their verdict (acknowledged: nothing to restore) before writes are counted.
    let acked = lp
        .serve
        .acked_pushes(acked_before + 2, Duration::from_secs(30))
        .await;
    assert!(
        acked >= acked_before + 2,
        "the forged events were not both handled; logs:\n{}",
        lp.serve.logs.lock().unwrap()
    );
    assert_eq!(lp.writes(), 0, "a forged event caused a write");
    assert_eq!(
        lp.sim.policy("projects/acme-prod").unwrap().bindings,
        owner_before.bindings
    );

    // A real removal, then the same event delivered 20 times: one restore.
    let gcloud = Gcloud::new(&lp.sim.base_url(), "acme-prod");
    remove_agent_binding(&gcloud).await;
    for i in 0..20 {
        lp.publish_event(&removal_entry(
            &format!("dup-{i}"),
            "roles/container.serviceAgent",
            AGENT,
            "acme-prod",
        ))
        .await;
    }
    assert!(
        wait_until(Duration::from_secs(30), || has(
            &lp.sim,
            "roles/container.serviceAgent",
            AGENT
        ))
        .await
        .is_some()
    );
    // Every delivery handled before writes are counted: the 2 forged, gcloud's removal, the 20
    // duplicates and the entry of our own restore (ignored).
    let acked = lp
        .serve
        .acked_pushes(acked_before + 24, Duration::from_secs(30))
        .await;
    assert!(
        acked >= acked_before + 24,
        "not every delivery was handled: {}",
        lp.serve.health().await
    );
    assert_eq!(lp.writes(), 2, "gcloud's removal plus exactly one restore");
    let notes = lp.notifications(Duration::from_secs(1)).await;
    assert_eq!(
        notes.iter().filter(|n| n["outcome"] == "restored").count(),
        1,
        "{notes:#?}"
    );
    let owners: Vec<_> = lp
        .sim
        .policy("projects/acme-prod")
        .unwrap()
        .bindings
        .into_iter()
        .filter(|b| b.role.as_str() == "roles/owner")
        .flat_map(|b| b.members)
        .collect();
    assert_eq!(owners, vec!["user:owner@example.com".to_owned()]);
    lp.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_still_handled_at_the_push_deadline_is_answered_503_and_its_redelivery_gets_the_verdict()
 {
    let sim = start_sim_with(WORLD, SimOptions::default()).await;
    // Someone removed the agent's binding; then Google slows down to 700 ms a call, so one run of the
    // project takes several seconds.
    let admin = Api::new(&sim);
    let (status, mut policy) = admin
        .post(
            "v1/projects/acme-prod:getIamPolicy",
            json!({"options": {"requestedPolicyVersion": 3}}),
        )
        .await;
    assert_eq!(status, 200);
    policy["bindings"]
        .as_array_mut()
        .unwrap()
        .retain(|b| b["role"] != "roles/container.serviceAgent");
    let (status, body) = admin
        .post(
            "v1/projects/acme-prod:setIamPolicy",
            json!({"policy": policy}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    sim.set_faults(Faults {
        latency: Latency {
            fixed_ms: 700,
            jitter_ms: 0,
        },
        ..Faults::default()
    });
    let serve = Serve::with_policy(
        "mode: enforce\n",
        &[
            ("REMEDIATOR_API_ENDPOINT", sim.base_url()),
            ("REMEDIATOR_ACCESS_TOKEN", format!("sim:{SELF}")),
            ("REMEDIATOR_SELF_EMAIL", SELF.to_owned()),
            ("REMEDIATOR_PUSH_DEADLINE_SECS", "1".to_owned()),
        ],
    )
    .await;
    let entry = removal_entry("slow-1", "roles/container.serviceAgent", AGENT, "acme-prod");
    let delivery = json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(entry.to_string()),
            "messageId": "slow-1",
        },
        "subscription": "projects/ops-project/subscriptions/iam-events-push",
    });
    let http = reqwest::Client::new();
    let deliver = || async {
        let started = Instant::now();
        let status = http
            .post(format!("{}/pubsub/push", serve.url))
            .json(&delivery)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        (status, started.elapsed())
    };

    // Held no longer than the deadline: 503, so Pub/Sub redelivers.
    let (status, took) = deliver().await;
    assert_eq!(
        status,
        503,
        "answered after {took:?}; logs:\n{}",
        serve.logs.lock().unwrap()
    );
    assert!(
        took < Duration::from_secs(3),
        "held {took:?} past a 1 s deadline"
    );
    assert_eq!(serve.health().await["pushes"]["past_deadline"], 1);

    // The handling went on: redelivered as Pub/Sub would, the message is acknowledged once it is done,
    // restored by the one run the first delivery started.
    let redelivered = Instant::now();
    let mut answers = Vec::new();
    loop {
        let (status, _) = deliver().await;
        answers.push(status);
        if status == 204 {
            break;
        }
        assert_eq!(status, 503, "{answers:?}");
        assert!(
            redelivered.elapsed() < Duration::from_secs(60),
            "never acknowledged: {answers:?}; logs:\n{}",
            serve.logs.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(has(&sim, "roles/container.serviceAgent", AGENT));
    let writes = sim
        .stats()
        .by_endpoint
        .get("cloudresourcemanager.projects.setIamPolicy")
        .copied()
        .unwrap_or(0);
    assert_eq!(writes, 2, "the removal and exactly one restore");
    let health = serve.health().await;
    assert_eq!(health["project_runs"], 1, "{health}");
    serve.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_pool_created_with_a_bare_service_account_is_fixed_proactively() {
    let lp = Loop::start(WORLD, "mode: enforce\n").await;
    let bare = "serviceAccount:bare@acme-prod.iam.gserviceaccount.com";

    let (status, body) = crate::support::Api::new(&lp.sim)
        .post(
            "v1/projects/acme-prod/locations/us-central1/clusters/c1/nodePools",
            json!({"nodePool": {"name": "pool-2", "config": {"serviceAccount": "bare@acme-prod.iam.gserviceaccount.com"}, "initialNodeCount": 1}}),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");

    let fixed = wait_until(Duration::from_secs(30), || {
        has(&lp.sim, "roles/container.defaultNodeServiceAccount", bare)
    })
    .await;
    assert!(
        fixed.is_some(),
        "not fixed; serve logs:\n{}",
        lp.serve.logs.lock().unwrap()
    );
    lp.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_push_requests_get_a_clear_answer_and_the_service_keeps_serving() {
    let lp = Loop::start(WORLD, "mode: enforce\n").await;
    let url = format!("{}/pubsub/push", lp.serve.url);
    // Malformed data is acknowledged with a log line (redelivery cannot fix it) or refused with 400;
    // never a 5xx, never a crash.
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("application/json", b"{not json".to_vec(), &[204, 400]),
        (
            "application/json",
            br#"{"message":{"data":"!!!not base64","messageId":"1"}}"#.to_vec(),
            &[204, 400],
        ),
        (
            "application/json",
            br#"{"message":{"data":"eyJ0cnVuY2F0ZWQ","messageId":"2"}}"#.to_vec(),
            &[204],
        ),
        (
            "application/json",
            br#"{"message":{"data":"eyJ1bmtub3duIjogdHJ1ZX0=","messageId":"3"}}"#.to_vec(),
            &[204],
        ),
        ("text/html", b"<html>".to_vec(), &[415]),
        ("application/json", vec![b'['; 10_000], &[204, 400]),
        ("application/json", vec![0xff, 0xfe, 0x00], &[204, 400]),
    ];
    for (ct, body, want) in cases {
        let r = lp
            .http
            .post(&url)
            .header("content-type", ct)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let got = r.status().as_u16();
        assert!(
            want.contains(&got),
            "{ct} {:?}: {got}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
    }
    let huge = vec![b' '; 3 * 1024 * 1024];
    // A client of its own: serve closes this connection after its 413, and a pooled client could
    // otherwise hand the closed connection to the next request.
    let sent = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await;
    match sent {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        // serve answers 413 from the Content-Length alone and closes the connection; a client still
        // writing the body may see the close (EPIPE / reset) before it reads the answer.
        Err(e) => {
            let text = format!("{e:?}");
            assert!(
                text.contains("BrokenPipe") || text.contains("ConnectionReset"),
                "the oversized push failed some other way: {text}"
            );
        }
    }
    let r = lp.http.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let r = lp
        .http
        .get(format!("{}/healthz", lp.serve.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(lp.writes(), 0);
    lp.stop().await;
}

/// Serves a JWKS document on 127.0.0.1 (Google's key endpoint stand-in); stops with the test.
pub async fn key_server(jwks: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let body = jwks.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: public, max-age=3600\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/oauth2/v3/certs")
}

pub fn token(key_pem: &str, kid: &str, claims: Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_push_authentication_on_only_a_valid_google_token_of_an_allowed_pusher_gets_through() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc");
    let read = |f: &str| std::fs::read_to_string(fixtures.join(f)).unwrap();
    let keys_url = key_server(read("jwks.json")).await;
    let sim = start_sim_with(WORLD, SimOptions::default()).await;
    let audience = "https://remediator.example.run.app/pubsub/push";
    let pusher = "pubsub-pusher@ops-project.iam.gserviceaccount.com";
    let serve = Serve::start(&[
        ("REMEDIATOR_API_ENDPOINT", sim.base_url()),
        ("REMEDIATOR_PUSH_AUDIENCE", audience.to_owned()),
        ("REMEDIATOR_PUSH_ALLOWED_EMAILS", pusher.to_owned()),
        ("REMEDIATOR_OIDC_KEYS_URL", keys_url),
    ])
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |aud: &str, email: &str, exp: u64| {
        json!({"iss": "https://accounts.google.com", "aud": aud, "email": email, "email_verified": true,
               "sub": "1234567890", "iat": now - 10, "exp": exp})
    };
    let good = token(
        &read("signing-private.pem"),
        "test-signing-key-1",
        claims(audience, pusher, now + 600),
    );
    let cases = [
        (None, 401),
        (Some("Bearer not-a-jwt".to_owned()), 401),
        (
            Some(format!(
                "Bearer {}",
                token(
                    &read("other-private.pem"),
                    "test-signing-key-1",
                    claims(audience, pusher, now + 600)
                )
            )),
            401,
        ),
        (
            Some(format!(
                "Bearer {}",
                token(
                    &read("signing-private.pem"),
                    "test-signing-key-1",
                    claims("https://other", pusher, now + 600)
                )
            )),
            403,
        ),
        (
            Some(format!(
                "Bearer {}",
                token(
                    &read("signing-private.pem"),
                    "test-signing-key-1",
                    claims(audience, pusher, now - 600)
                )
            )),
            401,
        ),
        (
            Some(format!(
                "Bearer {}",
                token(
                    &read("signing-private.pem"),
                    "test-signing-key-1",
                    claims(audience, "evil@example.com", now + 600)
                )
            )),
            403,
        ),
        (Some(format!("Bearer {good}")), 204),
    ];
    let http = reqwest::Client::new();
    let body = json!({"message": {"data": base64::engine::general_purpose::STANDARD.encode(b"{\"sweep\": {\"projects\": [\"acme-prod\"]}}"), "messageId": "m-1"}, "subscription": "projects/ops-project/subscriptions/s"});
    for (auth, want) in cases {
        let mut req = http.post(format!("{}/pubsub/push", serve.url)).json(&body);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let got = req.send().await.unwrap().status().as_u16();
        assert_eq!(
            got,
            want,
            "authorization {:?}",
            auth.as_deref().map(|a| &a[..a.len().min(30)])
        );
    }
    serve.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binding_that_keeps_being_removed_is_escalated_after_the_limit_not_restored_forever() {
    let lp = Loop::start(
        WORLD,
        "mode: enforce\nlimits:\n  max_restorations_per_binding: 2\n  window_minutes: 60\n",
    )
    .await;
    let gcloud = Gcloud::new(&lp.sim.base_url(), "acme-prod");
    let remove = || async {
        remove_agent_binding(&gcloud).await;
    };

    for round in 1..=2 {
        remove().await;
        let back = wait_until(Duration::from_secs(30), || {
            has(&lp.sim, "roles/container.serviceAgent", AGENT)
        })
        .await;
        assert!(
            back.is_some(),
            "round {round} not restored; logs:\n{}",
            lp.serve.logs.lock().unwrap()
        );
    }
    remove().await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    assert!(
        !has(&lp.sim, "roles/container.serviceAgent", AGENT),
        "restored a third time despite the limit"
    );
    let notes = lp.notifications(Duration::from_secs(2)).await;
    let escalated: Vec<&Value> = notes
        .iter()
        .filter(|n| n["outcome"] == "escalated")
        .collect();
    assert_eq!(escalated.len(), 1, "{notes:#?}");
    assert_eq!(escalated[0]["severity"], "critical");
    assert_eq!(
        notes.iter().filter(|n| n["outcome"] == "restored").count(),
        2
    );
    lp.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grace_delay_lets_an_infrastructure_as_code_apply_finish_before_restoring() {
    let lp = Loop::start(WORLD, "mode: enforce\ngrace_seconds: 4\n").await;
    let gcloud = Gcloud::new(&lp.sim.base_url(), "acme-prod");

    remove_agent_binding(&gcloud).await;
    let removed = Instant::now();
    // The lower bound is safe to check: nothing may be restored before the grace has passed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let early = has(&lp.sim, "roles/container.serviceAgent", AGENT);

    let back = wait_until(Duration::from_secs(40), || {
        has(&lp.sim, "roles/container.serviceAgent", AGENT)
    })
    .await;
    assert!(
        !early,
        "restored during the grace period ({:?} after the removal)",
        removed.elapsed()
    );
    assert!(
        back.is_some(),
        "not restored after the grace; logs:\n{}",
        lp.serve.logs.lock().unwrap()
    );
    lp.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_serve_cleanly_within_the_grace() {
    let sim = start_sim_with(WORLD, SimOptions::default()).await;
    let mut serve = Serve::start(&[
        ("REMEDIATOR_API_ENDPOINT", sim.base_url()),
        ("REMEDIATOR_SHUTDOWN_GRACE_SECS", "3".to_owned()),
    ])
    .await;
    let pid = serve.child.id().expect("serve is running").to_string();

    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), serve.child.wait())
        .await
        .expect("serve stopped")
        .unwrap();

    assert!(exit.success(), "{exit:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        serve.logs.lock().unwrap().contains("\"stopped\""),
        "{}",
        serve.logs.lock().unwrap()
    );
    sim.shutdown().await;
}
