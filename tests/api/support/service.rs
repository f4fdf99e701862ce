//! The service end to end: the healthy one-project world it runs in, its identities, the audit-log
//! entries a log sink exports, and [`Loop`]: the official Pub/Sub emulator pushing the simulator's
//! audit-log entries to a real `serve`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use gcp_sim::{SimHandle, SimOptions};
use serde_json::{Value, json};

use super::binary::Serve;
use super::{PubsubEmulator, TempFile, start_sim_with};

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

/// The push subscription delivering audit-log entries to `serve`.
const PUSH_SUB: &str = "iam-events-push";

/// The emulator with the topics, the simulator publishing its audit-log entries to it, `serve`, and
/// a push subscription from the events topic to `serve`.
pub struct Loop {
    /// The official Pub/Sub emulator.
    pub emulator: PubsubEmulator,
    /// The simulator (in-process).
    pub sim: SimHandle,
    /// The instance the push subscription delivers to.
    pub serve: Serve,
    /// A client for the emulator and `serve`.
    pub http: reqwest::Client,
    /// The environment `serve` runs with (again after [`Loop::restart_serve`]).
    env: Vec<(&'static str, String)>,
    /// The policy file `serve` reads, removed with the loop.
    _policy: TempFile,
}

impl Loop {
    /// Emulator + topics, simulator publishing audit logs, `serve` with `policy`, push
    /// subscription to it.
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
        let policy = TempFile::new(policy);
        let env = vec![
            ("REMEDIATOR_API_ENDPOINT", sim.base_url()),
            ("REMEDIATOR_ACCESS_TOKEN", format!("sim:{SELF}")),
            ("REMEDIATOR_SELF_EMAIL", SELF.to_owned()),
            (
                "REMEDIATOR_NOTIFY_TOPIC",
                format!("projects/{OPS}/topics/notifications"),
            ),
            ("PUBSUB_EMULATOR_HOST", emulator.host.clone()),
            ("REMEDIATOR_POLICY", policy.arg().to_owned()),
            ("REMEDIATOR_COALESCE_MS", "300".to_owned()),
        ];
        let serve = Serve::start(&env).await;
        let r = http
            .put(format!("{e}/subscriptions/{PUSH_SUB}"))
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
            env,
            _policy: policy,
        }
    }

    /// A new `serve` in place of the current one (killed first if it still runs), with the same
    /// environment, on a port of its own: the push subscription is pointed at it, so what Pub/Sub
    /// redelivers goes there.
    pub async fn restart_serve(&mut self) {
        self.serve.kill().await;
        self.serve = Serve::start(&self.env).await;
        let r = self
            .http
            .post(format!(
                "http://{}/v1/projects/{OPS}/subscriptions/{PUSH_SUB}:modifyPushConfig",
                self.emulator.host
            ))
            .json(
                &json!({"pushConfig": {"pushEndpoint": format!("{}/pubsub/push", self.serve.url)}}),
            )
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "point the push subscription at the new serve: {}",
            r.status()
        );
    }

    /// Publishes `entry` on the events topic, as a log sink would.
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

    /// Notifications published within `wait` (pulled and acknowledged), each with its Pub/Sub
    /// attributes under `_attributes`.
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

    /// The setIamPolicy calls the simulator answered so far (anyone's).
    pub fn writes(&self) -> u64 {
        self.sim
            .stats()
            .by_endpoint
            .get("cloudresourcemanager.projects.setIamPolicy")
            .copied()
            .unwrap_or(0)
    }

    /// Kills `serve` and stops the simulator.
    pub async fn stop(self) {
        self.serve.stop().await;
        self.sim.shutdown().await;
    }
}
