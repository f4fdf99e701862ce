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

    /// Creates a topic and a pull subscription on it.
    pub async fn topic_with_subscription(&self, project: &str, topic: &str, sub: &str) {
        let base = format!("http://{}/v1/projects/{project}", self.host);
        let r = self
            .http
            .put(format!("{base}/topics/{topic}"))
            .send()
            .await
            .expect("create topic");
        assert!(r.status().is_success(), "create topic: {}", r.status());
        let r = self
            .http
            .put(format!("{base}/subscriptions/{sub}"))
            .json(&json!({"topic": format!("projects/{project}/topics/{topic}"), "ackDeadlineSeconds": 30}))
            .send()
            .await
            .expect("create subscription");
        assert!(
            r.status().is_success(),
            "create subscription: {}",
            r.status()
        );
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
        let url = format!(
            "http://{}/v1/projects/{project}/subscriptions/{sub}:pull",
            self.host
        );
        let deadline = Instant::now() + timeout;
        loop {
            let r: Value = self
                .http
                .post(&url)
                .json(&json!({"maxMessages": 100, "returnImmediately": true}))
                .send()
                .await
                .expect("pull")
                .json()
                .await
                .expect("pull answer is JSON");
            let msgs = r["receivedMessages"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !msgs.is_empty() {
                let ack_ids: Vec<Value> = msgs.iter().map(|m| m["ackId"].clone()).collect();
                let ack = format!(
                    "http://{}/v1/projects/{project}/subscriptions/{sub}:acknowledge",
                    self.host
                );
                self.http
                    .post(ack)
                    .json(&json!({ "ackIds": ack_ids }))
                    .send()
                    .await
                    .expect("acknowledge");
            }
            if !msgs.is_empty() {
                return msgs
                    .iter()
                    .map(|m| {
                        let data = m["message"]["data"].as_str().unwrap_or_default();
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(data)
                            .expect("base64 data");
                        let entry: Value =
                            serde_json::from_slice(&bytes).expect("data is a JSON LogEntry");
                        (entry, m["message"]["attributes"].clone())
                    })
                    .collect();
            }
            if Instant::now() > deadline {
                return Vec::new();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
