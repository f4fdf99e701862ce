//! Several real `serve` (and `job`) processes on one shared state store (the official Firestore
//! emulator), the simulator publishing its audit-log entries to the official Pub/Sub emulator, and
//! a pusher standing in for Pub/Sub push: it pulls what the simulator published and posts each
//! message, in a push envelope, to the instance a test names. Notifications are read back from a
//! pull subscription on the notifications topic (created before anything is published).
//!
//! `MEMORY_TESTS_UNSHARED=N` gives the instance (or job run) numbered `N` the default unshared
//! state (`REMEDIATOR_STATE=memory`) instead of the shared store: the memory tests must fail then
//! (it is how they are checked to test the shared state, not something else).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gcp_sim::SimHandle;
use serde_json::{Value, json};

use super::binary::{Run, Serve, job};
use super::firestore::FirestoreEmulator;
use super::pubsub::decode;
use super::service::{
    EVENTS_TOPIC, NOTIFY_SUB, NOTIFY_TOPIC, OPS, SELF, audit_log_message, audit_log_sim,
    notifying_env,
};
use super::{Api, PubsubEmulator, TempFile};

/// The pull subscription the pusher reads audit-log entries from.
const EVENTS_SUB: &str = "iam-events-pull";

/// A Firestore location no other test uses, on the shared emulator.
pub fn fresh_store_location() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "firestore://projects/demo-memory-{}-{}/databases/(default)",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// `REMEDIATOR_STATE` for the instance or run numbered `n`: the shared location, unless
/// `MEMORY_TESTS_UNSHARED=n` asks for the unshared default.
pub fn state_for(n: usize, shared: &str) -> String {
    match std::env::var("MEMORY_TESTS_UNSHARED") {
        Ok(v) if v.trim() == n.to_string() => {
            eprintln!("instance {n}: REMEDIATOR_STATE=memory (MEMORY_TESTS_UNSHARED)");
            "memory".to_owned()
        }
        _ => shared.to_owned(),
    }
}

/// The simulator, the Pub/Sub emulator with the topics, and the shared store's location.
pub struct Fleet {
    /// The official Pub/Sub emulator.
    pub pubsub: PubsubEmulator,
    /// The simulator (in-process).
    pub sim: SimHandle,
    /// `REMEDIATOR_STATE` of the shared store.
    pub state: String,
    /// The Firestore emulator's `host:port`.
    pub firestore_host: String,
    /// The policy file every instance reads.
    policy: TempFile,
    http: reqwest::Client,
    pushed: AtomicU64,
}

impl Fleet {
    /// Starts everything but the instances. `notify_topic`: create the notifications topic (and
    /// its pull subscription) now.
    pub async fn start(world: &str, policy: &str, notify_topic: bool) -> Fleet {
        let firestore = FirestoreEmulator::shared().await;
        let pubsub = PubsubEmulator::start().await;
        pubsub
            .topic_with_subscription(OPS, EVENTS_TOPIC, EVENTS_SUB)
            .await;
        if notify_topic {
            pubsub
                .topic_with_subscription(OPS, NOTIFY_TOPIC, NOTIFY_SUB)
                .await;
        }
        let sim = audit_log_sim(world, &pubsub).await;
        Fleet {
            pubsub,
            sim,
            state: fresh_store_location(),
            firestore_host: firestore.host.clone(),
            policy: TempFile::new(policy),
            http: reqwest::Client::new(),
            pushed: AtomicU64::new(0),
        }
    }

    /// The environment of instance (or run) `n`.
    pub fn env(&self, n: usize) -> Vec<(&'static str, String)> {
        let mut env = notifying_env(&self.sim, &self.pubsub);
        env.extend([
            ("REMEDIATOR_POLICY", self.policy.arg().to_owned()),
            ("REMEDIATOR_STATE", state_for(n, &self.state)),
            ("FIRESTORE_EMULATOR_HOST", self.firestore_host.clone()),
        ]);
        env
    }

    /// Starts `serve` instance `n` (on a port of its own).
    pub async fn serve(&self, n: usize) -> Serve {
        Serve::start(&self.env(n)).await
    }

    /// Runs `job ARGS` as run `n`, within 120 s.
    pub async fn job(&self, n: usize, args: &[&str]) -> Run {
        job(args, &self.env(n)).await
    }

    /// Creates the notifications topic and its pull subscription (when the test started without).
    pub async fn create_notify_topic(&self) {
        self.pubsub
            .topic_with_subscription(OPS, NOTIFY_TOPIC, NOTIFY_SUB)
            .await;
    }

    /// Removes `member` from `role` on `project` as `actor` (an email) would (read, edit, write
    /// with the etag): the simulator records it and publishes its audit-log entry. `false` when
    /// the member did not hold the role (nothing written).
    pub async fn remove_binding(
        &self,
        actor: &str,
        project: &str,
        role: &str,
        member: &str,
    ) -> bool {
        let api = Api::new(&self.sim).as_caller(actor);
        let (s, mut policy) = api
            .post(
                &format!("v1/projects/{project}:getIamPolicy"),
                json!({"options": {"requestedPolicyVersion": 3}}),
            )
            .await;
        assert_eq!(s, 200, "getIamPolicy {project}: {policy}");
        let mut removed = false;
        for b in policy["bindings"].as_array_mut().into_iter().flatten() {
            if b["role"] == role && b.get("condition").is_none() {
                let members = b["members"].as_array_mut().expect("members");
                let before = members.len();
                members.retain(|m| m != member);
                removed |= members.len() != before;
            }
        }
        if !removed {
            return false;
        }
        policy["bindings"]
            .as_array_mut()
            .expect("bindings")
            .retain(|b| b["members"].as_array().is_some_and(|m| !m.is_empty()));
        let (s, body) = api
            .post(
                &format!("v1/projects/{project}:setIamPolicy"),
                json!({"policy": policy}),
            )
            .await;
        assert_eq!(s, 200, "setIamPolicy {project}: {body}");
        true
    }

    /// Every audit-log message the simulator published so far (flushed first), as Pub/Sub
    /// messages (`data` base64, `attributes`, `messageId`), acknowledged.
    pub async fn audit_messages(&self) -> Vec<Value> {
        self.sim.flush_audit_logs().await;
        let mut out = Vec::new();
        loop {
            let got = self.pubsub.pull_once(OPS, EVENTS_SUB).await;
            if got.is_empty() {
                return out;
            }
            out.extend(got);
        }
    }

    /// A Pub/Sub message carrying `entry` (a message id of its own), as a log sink would publish.
    pub fn message_of(&self, entry: &Value) -> Value {
        let n = self.pushed.fetch_add(1, Ordering::SeqCst);
        let mut m = audit_log_message(entry);
        m["messageId"] = json!(format!("test-{}-{n}", std::process::id()));
        m
    }

    /// Pushes `message` to `serve` as Pub/Sub push does (wrapped); the HTTP status, or `None` when
    /// the connection failed (the instance died).
    pub async fn push(&self, serve_url: &str, message: &Value) -> Option<u16> {
        push_to(&self.http, serve_url, message).await
    }

    /// Notifications published within `wait` (pulled and acknowledged), in arrival order.
    pub async fn notifications(&self, wait: Duration) -> Vec<Value> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            for m in self.pubsub.pull_once(OPS, NOTIFY_SUB).await {
                out.push(decode(&m).0);
            }
            if Instant::now() > deadline {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Our writes so far: the simulator's journal of setIamPolicy calls by the remediator that
    /// succeeded.
    pub fn our_writes(&self) -> usize {
        self.sim
            .journal()
            .iter()
            .filter(|e| {
                e.endpoint == "cloudresourcemanager.projects.setIamPolicy"
                    && e.caller == format!("serviceAccount:{SELF}")
                    && e.status == 200
            })
            .count()
    }

    /// Whether `member` holds `role` on `project` unconditionally.
    pub fn holds(&self, project: &str, role: &str, member: &str) -> bool {
        self.sim
            .policy(&format!("projects/{project}"))
            .is_some_and(|p| p.grants_unconditionally(role, member))
    }
}

/// Posts `message` wrapped in a push envelope; the status, `None` if the connection failed.
pub async fn push_to(http: &reqwest::Client, serve_url: &str, message: &Value) -> Option<u16> {
    let body = json!({
        "message": message,
        "subscription": format!("projects/{OPS}/subscriptions/iam-events-push"),
    });
    http.post(format!("{serve_url}/pubsub/push"))
        .json(&body)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// The `outcome` of each notification, in order.
pub fn outcomes(notes: &[Value]) -> Vec<String> {
    notes
        .iter()
        .map(|n| n["outcome"].as_str().unwrap_or("?").to_owned())
        .collect()
}
