//! Test helpers shared by the test modules (a module never imports another test module's helpers):
//! start the simulator in-process, run the real `gcloud` against it with an isolated config, temp
//! files and directories owned by whoever needs them. One file per concern below. Nothing here reads
//! outside the repository; missing tools fail loudly (tests are never skipped).

#![allow(dead_code)]

pub mod binary;
pub mod emulator;
pub mod firestore;
pub mod fleet;
pub mod frontend;
pub mod oidc;
pub mod pubsub;
pub mod service;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gcp_sim::{self as sim, SimHandle, SimOptions, World};
use serde_json::Value;

pub use pubsub::PubsubEmulator;

use binary::Run;

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

/// The setIamPolicy calls on projects `sim` answered so far (anyone's).
pub fn project_policy_writes(sim: &SimHandle) -> u64 {
    sim.stats()
        .by_endpoint
        .get("cloudresourcemanager.projects.setIamPolicy")
        .copied()
        .unwrap_or(0)
}

/// Polls `f` every 20 ms for at most `timeout` (and once more at the end); how long it took to
/// hold, or `None` if it never did.
pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f().then(|| start.elapsed())
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

    /// The simulator's base URL (with trailing slash) this gcloud calls.
    pub fn base_url(&self) -> &str {
        &self.base_url
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
    pub async fn run(&self, args: &[&str]) -> Run {
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
        Run::from(out)
    }
}

/// A port on 127.0.0.1 that refuses connections for as long as this lives: a socket bound to it and
/// never listening holds it, so no other server of the test run can take it. For tests of what
/// happens when a peer is down.
pub struct RefusedPort(tokio::net::TcpSocket);

impl RefusedPort {
    /// Binds a socket to a port of the kernel's choosing, without listening.
    pub fn new() -> RefusedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind 127.0.0.1:0");
        RefusedPort(socket)
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        let addr = self.0.local_addr().expect("a bound socket has an address");
        format!("http://{addr}")
    }

    /// The peer comes back: a listener on the same port (from inside a runtime).
    pub fn listen(self) -> tokio::net::TcpListener {
        self.0.listen(128).expect("listen on the held port")
    }
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

    /// Reads `project`'s IAM policy (version 3), lets `edit` change it, and writes it back with its
    /// etag, both calls asserted to succeed; the policy written, as setIamPolicy answered it.
    pub async fn edit_project_policy(&self, project: &str, edit: impl FnOnce(&mut Value)) -> Value {
        let (status, mut policy) = self
            .post(
                &format!("v1/projects/{project}:getIamPolicy"),
                serde_json::json!({"options": {"requestedPolicyVersion": 3}}),
            )
            .await;
        assert_eq!(status, 200, "getIamPolicy {project}: {policy}");
        edit(&mut policy);
        let (status, written) = self
            .post(
                &format!("v1/projects/{project}:setIamPolicy"),
                serde_json::json!({ "policy": policy }),
            )
            .await;
        assert_eq!(status, 200, "setIamPolicy {project}: {written}");
        written
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
