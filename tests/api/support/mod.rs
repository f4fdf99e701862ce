//! Test helpers for the simulator scenarios: start the simulator in-process, run the real `gcloud`
//! against it with an isolated config, start the official Pub/Sub emulator. Nothing here reads outside
//! the repository; missing tools fail loudly (tests are never skipped).

#![allow(dead_code)]

pub mod firestore;
pub mod fleet;
pub mod frontend;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use gcp_sim::{self as sim, SimHandle, SimOptions, World};
use serde_json::{Value, json};

/// Reads a world shipped in `infra/worlds/`.
pub fn world_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("infra/worlds")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Starts the simulator on 127.0.0.1:0 with default options.
pub async fn start_sim(world_yaml: &str) -> SimHandle {
    start_sim_with(world_yaml, SimOptions::default()).await
}

/// Starts the simulator on 127.0.0.1:0.
pub async fn start_sim_with(world_yaml: &str, options: SimOptions) -> SimHandle {
    let world = World::from_yaml(world_yaml, "test world").expect("test world loads");
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    sim::start(world, listen, options)
        .await
        .expect("simulator starts")
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new(prefix: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Output of one gcloud run.
#[derive(Debug)]
pub struct GcloudOutput {
    /// Exit code (-1 if killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl GcloudOutput {
    /// Panics with both streams unless gcloud succeeded.
    pub fn ok(self) -> GcloudOutput {
        assert_eq!(
            self.code, 0,
            "gcloud failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("gcloud stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// The gcloud environment pointing every API at a simulator (reference §7.1).
pub struct Gcloud {
    config: TempDir,
    base_url: String,
    project: String,
}

/// APIs whose endpoint is overridden.
pub const OVERRIDDEN_APIS: [&str; 9] = [
    "LOGGING",
    "ORGPOLICY",
    "CLOUDIDENTITY",
    "CLOUDRESOURCEMANAGER",
    "IAM",
    "CONTAINER",
    "RECOMMENDER",
    "SERVICEUSAGE",
    "POLICYTROUBLESHOOTER",
];

impl Gcloud {
    /// gcloud against `base_url` (with trailing slash), default project `project`.
    pub fn new(base_url: &str, project: &str) -> Gcloud {
        Gcloud {
            config: TempDir::new("gcloud-config"),
            base_url: base_url.to_owned(),
            project: project.to_owned(),
        }
    }

    /// The environment variables this gcloud runs with.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "CLOUDSDK_CONFIG".to_owned(),
                self.config.path().display().to_string(),
            ),
            (
                "CLOUDSDK_AUTH_DISABLE_CREDENTIALS".to_owned(),
                "true".to_owned(),
            ),
            (
                "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING".to_owned(),
                "true".to_owned(),
            ),
            (
                "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK".to_owned(),
                "true".to_owned(),
            ),
            (
                "CLOUDSDK_SURVEY_DISABLE_PROMPTS".to_owned(),
                "true".to_owned(),
            ),
            ("CLOUDSDK_CORE_DISABLE_PROMPTS".to_owned(), "1".to_owned()),
            ("CLOUDSDK_CORE_PROJECT".to_owned(), self.project.clone()),
        ];
        for api in OVERRIDDEN_APIS {
            env.push((
                format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"),
                self.base_url.clone(),
            ));
        }
        env
    }

    /// Runs `gcloud ARGS...` and captures its output.
    pub async fn run(&self, args: &[&str]) -> GcloudOutput {
        let mut cmd = tokio::process::Command::new("gcloud");
        cmd.args(args)
            .env_remove("CLOUDSDK_AUTH_ACCESS_TOKEN")
            .stdin(Stdio::null());
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("gcloud finished within 120 s")
            .expect("gcloud is installed and runs (it is required by these tests)");
        GcloudOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The Cloud SDK root, from `gcloud info`.
pub fn sdk_root() -> PathBuf {
    let config = TempDir::new("gcloud-info");
    let out = Command::new("gcloud")
        .args(["info", "--format=value(installation.sdk_root)"])
        .env("CLOUDSDK_CONFIG", config.path())
        .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true")
        .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true")
        .output()
        .expect("gcloud is installed (required by these tests)");
    let root = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        !root.is_empty(),
        "gcloud info printed no sdk_root: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(root)
}

/// The official Pub/Sub emulator, killed on drop.
pub struct PubsubEmulator {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    http: reqwest::Client,
}

impl PubsubEmulator {
    /// Starts the emulator and waits until `GET /` answers. The port is picked free, but another
    /// server of the test run (a simulator, a `serve`, on an ephemeral port) may bind it before the
    /// emulator's JVM does; the emulator then neither answers nor exits. So an answer other than the
    /// emulator's, a connection that stays silent, or an exit means another port: the emulator is
    /// started again there (at most three times).
    pub async fn start() -> PubsubEmulator {
        let bin = sdk_root().join("platform/pubsub-emulator/bin/cloud-pubsub-emulator");
        assert!(
            bin.exists(),
            "the Pub/Sub emulator is missing at {} (install google-cloud-cli-pubsub-emulator)",
            bin.display()
        );
        let mut exits = Vec::new();
        for _ in 0..3 {
            match Self::start_on_a_free_port(&bin).await {
                Ok(emulator) => return emulator,
                Err(exit) => exits.push(exit),
            }
        }
        panic!("the Pub/Sub emulator could not be started, three times: {exits:?}");
    }

    /// One start; `Err` with why if the port turned out not to be the emulator's (it is killed).
    async fn start_on_a_free_port(bin: &Path) -> Result<PubsubEmulator, String> {
        let port = free_port();
        let data = TempDir::new("pubsub-data");
        let child = Command::new(bin)
            .args([
                "--host=127.0.0.1".to_owned(),
                format!("--port={port}"),
                format!("--data-dir={}", data.path().display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        std::mem::forget(data);
        let mut emulator = PubsubEmulator {
            child,
            host: format!("127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = emulator.child.try_wait() {
                return Err(format!("port {port}: exited, {status}"));
            }
            let answer = emulator
                .http
                .get(format!("http://{}/", emulator.host))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            match answer {
                Ok(r) if r.status().is_success() => return Ok(emulator),
                // Someone else holds the port (dropping the emulator kills it).
                Ok(r) => {
                    return Err(format!(
                        "port {port}: answered {} by another server",
                        r.status()
                    ));
                }
                Err(e) if e.is_timeout() => {
                    return Err(format!("port {port}: a connection nobody answers"));
                }
                // Not listening yet: the JVM is starting.
                Err(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "the Pub/Sub emulator did not answer within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
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

impl Drop for PubsubEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small HTTP client for calling the simulator directly.
pub struct Api {
    /// Base URL with trailing slash.
    pub base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Api {
    /// Client for a simulator.
    pub fn new(sim: &SimHandle) -> Api {
        Api {
            base: sim.base_url(),
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// Same client, calling as `EMAIL` (`Bearer sim:EMAIL`).
    pub fn as_caller(&self, email: &str) -> Api {
        Api {
            base: self.base.clone(),
            http: self.http.clone(),
            token: Some(format!("sim:{email}")),
        }
    }

    /// Sends a request; returns (status, JSON body).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{}", self.base, path.trim_start_matches('/'));
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request reaches the simulator");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        let json =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("answer is not JSON: {text}"));
        (status, json)
    }

    /// GET.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    /// PUT with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("PUT", path, Some(body)).await
    }
}

/// A file with the given text in the temp dir, removed on drop (policy files for the binary).
pub struct TempFile(PathBuf);

impl TempFile {
    /// Writes `text` to a fresh file.
    pub fn new(text: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("remediator-test-{}.yaml", rand::random::<u64>()));
        std::fs::write(&path, text).expect("temp file written");
        TempFile(path)
    }

    /// The path as a string argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every finding of a scan's JSON document.
pub fn findings(doc: &Value) -> Vec<&Value> {
    doc["projects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["findings"].as_array().unwrap())
        .collect()
}
