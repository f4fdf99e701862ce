//! Cloud Audit Log emission: builds the LogEntry a log sink would export for a change made through the
//! simulator, and publishes it (one entry per message, attribute `logging.googleapis.com/timestamp`) to a
//! Pub/Sub topic on the emulator, from a background task with a queue and a few retries.
//!
//! Shapes follow the real captures (reference §2): `protoPayload` is a `google.cloud.audit.AuditLog`,
//! `logName` ends in `cloudaudit.googleapis.com%2Factivity`, IAM deltas sit in
//! `protoPayload.serviceData.policyDelta.bindingDeltas`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use super::state::{now_rfc3339, random_uuid};

/// What one audit-log entry says; turned into a LogEntry by [`AuditRecord::to_log_entry`].
#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    /// `projects/ID`, `folders/N` or `organizations/N`: where the log lives (`logName`).
    pub log_parent: String,
    /// `protoPayload.serviceName`.
    pub service_name: String,
    /// `protoPayload.methodName`.
    pub method_name: String,
    /// `protoPayload.resourceName`.
    pub resource_name: String,
    /// Caller in member form (`user:EMAIL` / `serviceAccount:EMAIL`).
    pub caller: String,
    /// Caller's user agent.
    pub user_agent: String,
    /// `authorizationInfo` entries.
    pub authorization: Vec<Value>,
    /// `protoPayload.request`.
    pub request: Option<Value>,
    /// `protoPayload.response`.
    pub response: Option<Value>,
    /// `protoPayload.serviceData`.
    pub service_data: Option<Value>,
    /// `protoPayload.metadata`.
    pub metadata: Option<Value>,
    /// `protoPayload.resourceLocation`.
    pub resource_location: Option<Value>,
    /// LogEntry `resource` (`{type, labels}`).
    pub resource: Value,
    /// LogEntry `operation`.
    pub operation: Option<Value>,
    /// Omit authentication/request metadata (an LRO's last entry).
    pub system: bool,
}

impl AuditRecord {
    /// The LogEntry JSON.
    pub fn to_log_entry(&self) -> Value {
        let now = now_rfc3339();
        let principal = self
            .caller
            .split_once(':')
            .map(|(_, e)| e)
            .unwrap_or(&self.caller);
        let mut proto = json!({
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "status": {},
            "serviceName": self.service_name,
            "methodName": self.method_name,
            "resourceName": self.resource_name,
        });
        if !self.system {
            proto["authenticationInfo"] =
                json!({"principalEmail": principal, "principalSubject": self.caller});
            proto["authorizationInfo"] = Value::Array(self.authorization.clone());
            proto["requestMetadata"] = json!({
                "callerIp": "127.0.0.1",
                "callerSuppliedUserAgent": format!("{},gzip(gfe)", self.user_agent),
                "requestAttributes": {"time": now, "auth": {}},
                "destinationAttributes": {}
            });
        }
        for (key, v) in [
            ("request", &self.request),
            ("response", &self.response),
            ("serviceData", &self.service_data),
            ("metadata", &self.metadata),
            ("resourceLocation", &self.resource_location),
        ] {
            if let Some(v) = v {
                proto[key] = v.clone();
            }
        }
        let id: u64 = rand::random();
        let mut entry = json!({
            "insertId": format!("{:012x}", id & 0xffff_ffff_ffff),
            "logName": format!("{}/logs/cloudaudit.googleapis.com%2Factivity", self.log_parent),
            "protoPayload": proto,
            "resource": self.resource,
            "severity": "NOTICE",
            "timestamp": now,
            "receiveTimestamp": now,
        });
        if let Some(op) = &self.operation {
            entry["operation"] = op.clone();
        }
        entry
    }
}

/// `authorizationInfo` entry.
pub fn authz(resource: &str, permission: &str, attributes: Value) -> Value {
    json!({"resource": resource, "permission": permission, "granted": true, "permissionType": "ADMIN_WRITE", "resourceAttributes": attributes})
}

/// A unique operation id for LRO audit entries.
pub fn operation_id(prefix: &str) -> String {
    format!("{prefix}{}", random_uuid())
}

struct Job {
    topic: String,
    entry: Value,
}

#[derive(Default)]
struct Progress {
    queued: AtomicU64,
    finished: AtomicU64,
    notify: Notify,
}

/// Queue of entries to publish; cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    tx: Option<mpsc::UnboundedSender<Job>>,
    topic: Option<String>,
    progress: Arc<Progress>,
}

impl AuditSink {
    /// Starts the publisher task when both a topic and an emulator host are given; otherwise entries are
    /// dropped (logged at debug).
    pub fn start(topic: Option<String>, emulator_host: Option<String>) -> AuditSink {
        let progress = Arc::new(Progress::default());
        let (Some(topic), Some(host)) = (topic.clone(), emulator_host) else {
            if topic.is_some() {
                tracing::warn!(
                    "--audit-log-topic is set but PUBSUB_EMULATOR_HOST is not: audit logs are not published"
                );
            }
            return AuditSink {
                tx: None,
                topic: None,
                progress,
            };
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let p = progress.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default();
            while let Some(job) = rx.recv().await {
                publish(&client, &host, &job).await;
                p.finished.fetch_add(1, Ordering::SeqCst);
                p.notify.notify_waiters();
            }
        });
        AuditSink {
            tx: Some(tx),
            topic: Some(topic),
            progress,
        }
    }

    /// Queues one LogEntry.
    pub fn emit(&self, entry: Value) {
        let (Some(tx), Some(topic)) = (&self.tx, &self.topic) else {
            tracing::debug!(entry = %entry, "audit log entry not published (no topic)");
            return;
        };
        self.progress.queued.fetch_add(1, Ordering::SeqCst);
        if tx
            .send(Job {
                topic: topic.clone(),
                entry,
            })
            .is_err()
        {
            self.progress.finished.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Waits until every queued entry has been published (or given up on).
    pub async fn flush(&self) {
        loop {
            let notified = self.progress.notify.notified();
            if self.progress.finished.load(Ordering::SeqCst)
                >= self.progress.queued.load(Ordering::SeqCst)
            {
                return;
            }
            // A timeout guards against a missed wake-up between the check and the wait.
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }
}

async fn publish(client: &reqwest::Client, host: &str, job: &Job) {
    let timestamp = job
        .entry
        .get("timestamp")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let data = base64::engine::general_purpose::STANDARD.encode(format!("{}\n", job.entry));
    let body = json!({"messages": [{"data": data, "attributes": {"logging.googleapis.com/timestamp": timestamp}}]});
    let url = format!("http://{host}/v1/{}:publish", job.topic);
    for attempt in 0..4u32 {
        match client.post(&url).json(&body).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::warn!(status = %r.status(), attempt, url, "audit log publish failed"),
            Err(e) => tracing::warn!(error.message = %e, attempt, url, "audit log publish failed"),
        }
        tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt))).await;
    }
    tracing::error!(url, "audit log entry dropped after retries");
}
