//! The official Pub/Sub emulator: topics, subscriptions, and pulling what was published.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::emulator::{Emulator, EmulatorKind};

/// The Pub/Sub emulator: `--host --port --data-dir`.
const PUBSUB: EmulatorKind = EmulatorKind {
    name: "Pub/Sub",
    bin: "platform/pubsub-emulator/bin/cloud-pubsub-emulator",
    component: "google-cloud-cli-pubsub-emulator",
    scratch: true,
    args: |port, scratch| {
        let data = scratch.expect("the Pub/Sub emulator is given a directory");
        vec![
            "--host=127.0.0.1".to_owned(),
            format!("--port={port}"),
            format!("--data-dir={}", data.display()),
        ]
    },
};

/// The official Pub/Sub emulator, ended on drop (or with the test process).
pub struct PubsubEmulator {
    emulator: Emulator,
    /// `127.0.0.1:PORT`.
    pub host: String,
    http: reqwest::Client,
}

impl PubsubEmulator {
    /// Starts an emulator of its own and waits (at most 60 s) until it answers.
    pub async fn start() -> PubsubEmulator {
        let emulator = Emulator::start(&PUBSUB).await;
        PubsubEmulator {
            host: emulator.host.clone(),
            emulator,
            http: reqwest::Client::new(),
        }
    }

    /// Sends `body` with `method` to `path` under `project` (a topic or a subscription, and an
    /// action); the answer (`null` if empty), asserting it succeeded.
    async fn call(&self, method: reqwest::Method, project: &str, path: &str, body: Value) -> Value {
        let url = format!("http://{}/v1/projects/{project}/{path}", self.host);
        let r = self
            .http
            .request(method.clone(), url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"))
    }

    /// `PUT` (creates a topic or a subscription).
    async fn put(&self, project: &str, path: &str, body: Value) {
        self.call(reqwest::Method::PUT, project, path, body).await;
    }

    /// `POST` (an action on a topic or a subscription); the answer.
    async fn post(&self, project: &str, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, project, path, body).await
    }

    /// Creates a topic.
    pub async fn topic(&self, project: &str, topic: &str) {
        self.put(project, &format!("topics/{topic}"), json!({}))
            .await;
    }

    /// Creates a topic and a pull subscription on it.
    pub async fn topic_with_subscription(&self, project: &str, topic: &str, sub: &str) {
        self.topic(project, topic).await;
        self.put(
            project,
            &format!("subscriptions/{sub}"),
            json!({"topic": format!("projects/{project}/topics/{topic}"), "ackDeadlineSeconds": 30}),
        )
        .await;
    }

    /// Creates a push subscription `sub` on `topic` delivering to `endpoint` (a full URL).
    pub async fn push_subscription(
        &self,
        project: &str,
        sub: &str,
        topic: &str,
        endpoint: &str,
        ack_deadline_secs: u32,
    ) {
        self.put(
            project,
            &format!("subscriptions/{sub}"),
            json!({
                "topic": format!("projects/{project}/topics/{topic}"),
                "pushConfig": {"pushEndpoint": endpoint},
                "ackDeadlineSeconds": ack_deadline_secs,
            }),
        )
        .await;
    }

    /// Points the push subscription `sub` at `endpoint` (a full URL) from now on.
    pub async fn repoint_push(&self, project: &str, sub: &str, endpoint: &str) {
        self.post(
            project,
            &format!("subscriptions/{sub}:modifyPushConfig"),
            json!({"pushConfig": {"pushEndpoint": endpoint}}),
        )
        .await;
    }

    /// Publishes `messages` (Pub/Sub messages: `data` base64, `attributes`) on `topic`.
    pub async fn publish(&self, project: &str, topic: &str, messages: Vec<Value>) {
        self.post(
            project,
            &format!("topics/{topic}:publish"),
            json!({ "messages": messages }),
        )
        .await;
    }

    /// One pull (at most 100 messages, returning at once), acknowledged: the messages as Pub/Sub
    /// holds them (`data` base64, `attributes`, `messageId`).
    pub async fn pull_once(&self, project: &str, sub: &str) -> Vec<Value> {
        let r = self
            .post(
                project,
                &format!("subscriptions/{sub}:pull"),
                json!({"maxMessages": 100, "returnImmediately": true}),
            )
            .await;
        let msgs = r["receivedMessages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !msgs.is_empty() {
            let ack_ids: Vec<Value> = msgs.iter().map(|m| m["ackId"].clone()).collect();
            self.post(
                project,
                &format!("subscriptions/{sub}:acknowledge"),
                json!({ "ackIds": ack_ids }),
            )
            .await;
        }
        msgs.into_iter().map(|m| m["message"].clone()).collect()
    }

    /// Pulls (and acknowledges) until `n` messages arrived or the timeout passed.
    pub async fn pull_n(
        &self,
        project: &str,
        sub: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<(Value, Value)> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            out.extend(
                self.pull(
                    project,
                    sub,
                    deadline.saturating_duration_since(Instant::now()),
                )
                .await,
            );
        }
        out
    }

    /// Pulls (and acknowledges) until at least one message arrives or the timeout passes; returns
    /// (decoded data, attributes) per message.
    pub async fn pull(&self, project: &str, sub: &str, timeout: Duration) -> Vec<(Value, Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let msgs = self.pull_once(project, sub).await;
            if !msgs.is_empty() {
                return msgs.iter().map(decode).collect();
            }
            if Instant::now() > deadline {
                return Vec::new();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A Pub/Sub message's data (base64 of JSON) decoded, and its attributes.
pub fn decode(message: &Value) -> (Value, Value) {
    let data = message["data"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64 data");
    let data: Value = serde_json::from_slice(&bytes).expect("message data is JSON");
    (data, message["attributes"].clone())
}

/// A Pub/Sub message carrying `data` (as JSON) with `attributes`, as a publisher sends it.
pub fn message(data: &Value, attributes: Value) -> Value {
    json!({
        "data": base64::engine::general_purpose::STANDARD.encode(data.to_string()),
        "attributes": attributes,
    })
}
