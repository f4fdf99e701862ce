//! The service end to end: the healthy one-project world it runs in, its identities and the
//! environment it runs with, the audit-log entries a log sink exports, and [`Loop`]: the official
//! Pub/Sub emulator pushing the simulator's audit-log entries to a real `serve`.

use std::time::{Duration, Instant};

use gcp_sim::{SimHandle, SimOptions};
use serde_json::{Value, json};

use super::binary::Serve;
use super::pubsub::{decode, message};
use super::{Gcloud, PubsubEmulator, TempFile, project_policy_writes, start_sim_with};

/// The project hosting the remediator's topics in these tests.
pub const OPS: &str = "ops-project";
/// The remediator's own identity in these tests.
pub const SELF: &str = "gke-iam-remediator@ops-project.iam.gserviceaccount.com";
/// The GKE service agent of `acme-prod`.
pub const AGENT: &str =
    "serviceAccount:service-200000000001@container-engine-robot.iam.gserviceaccount.com";
/// The topic (in [`OPS`]) the simulator publishes its audit-log entries to, as a log sink would.
pub const EVENTS_TOPIC: &str = "iam-events";
/// The topic (in [`OPS`]) the remediator publishes its notifications to.
pub const NOTIFY_TOPIC: &str = "notifications";
/// The pull subscription on [`NOTIFY_TOPIC`] tests read notifications from.
pub const NOTIFY_SUB: &str = "notifications-pull";

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

/// A Pub/Sub message carrying `entry`, as a log sink publishes it.
pub fn audit_log_message(entry: &Value) -> Value {
    message(
        entry,
        json!({"logging.googleapis.com/timestamp": "2026-11-29T00:31:00Z"}),
    )
}

/// The environment of `serve` (or `job`) calling the simulator `sim` as [`SELF`].
pub fn self_env(sim: &SimHandle) -> Vec<(&'static str, String)> {
    vec![
        ("REMEDIATOR_API_ENDPOINT", sim.base_url()),
        ("REMEDIATOR_ACCESS_TOKEN", format!("sim:{SELF}")),
        ("REMEDIATOR_SELF_EMAIL", SELF.to_owned()),
    ]
}

/// [`self_env`], publishing notifications to [`NOTIFY_TOPIC`] on `emulator`.
pub fn notifying_env(sim: &SimHandle, emulator: &PubsubEmulator) -> Vec<(&'static str, String)> {
    let mut env = self_env(sim);
    env.extend([
        (
            "REMEDIATOR_NOTIFY_TOPIC",
            format!("projects/{OPS}/topics/{NOTIFY_TOPIC}"),
        ),
        ("PUBSUB_EMULATOR_HOST", emulator.host.clone()),
    ]);
    env
}

/// The simulator on `world`, publishing its audit-log entries (of changes made, by default, by
/// `admin@example.com`) to [`EVENTS_TOPIC`] on `emulator` (the topic created by the caller).
pub async fn audit_log_sim(world: &str, emulator: &PubsubEmulator) -> SimHandle {
    start_sim_with(
        world,
        SimOptions {
            audit_log_topic: Some(format!("projects/{OPS}/topics/{EVENTS_TOPIC}")),
            pubsub_emulator_host: Some(emulator.host.clone()),
            default_principal: "user:admin@example.com".to_owned(),
        },
    )
    .await
}

/// Whether `member` holds `role` unconditionally on `acme-prod`.
pub fn has(sim: &SimHandle, role: &str, member: &str) -> bool {
    let p = sim.policy("projects/acme-prod").unwrap();
    p.grants_unconditionally(role, member)
}

/// Removes the GKE service agent's binding on `acme-prod` with the real gcloud, as a person would
/// (a failure shows the simulator's journal).
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
    if out.code != 0 {
        let journal = reqwest::get(format!("{}_sim/journal", gcloud.base_url()))
            .await
            .expect("the simulator answers")
            .text()
            .await
            .unwrap_or_default();
        panic!(
            "gcloud failed ({}): {}\nsimulator journal: {journal}",
            out.code, out.stderr
        );
    }
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
        emulator.topic(OPS, EVENTS_TOPIC).await;
        emulator
            .topic_with_subscription(OPS, NOTIFY_TOPIC, NOTIFY_SUB)
            .await;
        let sim = audit_log_sim(world, &emulator).await;
        let policy = TempFile::new(policy);
        let mut env = notifying_env(&sim, &emulator);
        env.extend([
            ("REMEDIATOR_POLICY", policy.arg().to_owned()),
            ("REMEDIATOR_COALESCE_MS", "300".to_owned()),
        ]);
        let serve = Serve::start(&env).await;
        emulator
            .push_subscription(
                OPS,
                PUSH_SUB,
                EVENTS_TOPIC,
                &format!("{}/pubsub/push", serve.url),
                30,
            )
            .await;
        Loop {
            emulator,
            sim,
            serve,
            http: reqwest::Client::new(),
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
        self.emulator
            .repoint_push(OPS, PUSH_SUB, &format!("{}/pubsub/push", self.serve.url))
            .await;
    }

    /// Publishes `entry` on the events topic, as a log sink would.
    pub async fn publish_event(&self, entry: &Value) {
        self.emulator
            .publish(OPS, EVENTS_TOPIC, vec![audit_log_message(entry)])
            .await;
    }

    /// Notifications published within `wait` (pulled and acknowledged), each with its Pub/Sub
    /// attributes under `_attributes`.
    pub async fn notifications(&self, wait: Duration) -> Vec<Value> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            for m in self.emulator.pull_once(OPS, NOTIFY_SUB).await {
                let (mut n, attributes) = decode(&m);
                n["_attributes"] = attributes;
                out.push(n);
            }
            if Instant::now() > deadline {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The setIamPolicy calls the simulator answered so far (anyone's).
    pub fn writes(&self) -> u64 {
        project_policy_writes(&self.sim)
    }

    /// Kills `serve` and stops the simulator.
    pub async fn stop(self) {
        self.serve.stop().await;
        self.sim.shutdown().await;
    }
}
