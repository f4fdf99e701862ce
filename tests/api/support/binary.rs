//! The real binary: one-shot commands (`scan`, `explain`, `check-plan`) run against a simulator, and
//! `serve` running on a port of its own choosing (`--listen 127.0.0.1:0`, the address read from what
//! it prints), killed on drop.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gcp_sim::SimHandle;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::TempFile;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_gke-iam-remediator");

/// The identity one-shot commands call Google as (a service account of `platform-ops`).
pub const SCANNER: &str = "gke-iam-remediator@platform-ops.iam.gserviceaccount.com";

/// What a run of the binary printed and returned.
#[derive(Debug)]
pub struct Run {
    /// The exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<std::process::Output> for Run {
    fn from(out: std::process::Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Itself, after a panic with both streams unless it exited 0.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "exit {}:\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// The last line of stdout parsed as JSON: a `job`'s summary (a panic with both streams if it
    /// is not JSON).
    pub fn summary(&self) -> Value {
        serde_json::from_str(self.stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
            panic!(
                "the last line is not a JSON summary ({e}): {}\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Stdout parsed as JSON (a panic with both streams if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// Runs the binary with `args` against `sim` as [`SCANNER`], without a policy file from the
/// environment, within 300 s.
pub async fn remediator(args: &[&str], sim: &SimHandle) -> Run {
    remediator_as(SCANNER, args, sim).await
}

/// Runs the binary with `args` against `sim` as `email`, without a policy file from the
/// environment, within 300 s.
pub async fn remediator_as(email: &str, args: &[&str], sim: &SimHandle) -> Run {
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(BIN)
            .args(args)
            .env("REMEDIATOR_API_ENDPOINT", sim.base_url())
            .env("REMEDIATOR_ACCESS_TOKEN", format!("sim:{email}"))
            .env_remove("REMEDIATOR_POLICY")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the binary finished within 300 s")
    .expect("the binary runs");
    Run::from(out)
}

/// Runs `job ARGS` with `env` (text logs; no policy file unless `env` names one) within 120 s.
pub async fn job(args: &[&str], env: &[(&str, String)]) -> Run {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("job")
        .args(args)
        .env("REMEDIATOR_LOG_FORMAT", "text")
        .env_remove("REMEDIATOR_POLICY")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the job finished within 120 s")
        .expect("the job runs");
    Run::from(out)
}

/// The running `serve` binary, killed on drop; its output (the address on stdout, JSON logs on
/// stderr) is collected.
pub struct Serve {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`, as it printed.
    pub url: String,
    /// Everything it printed so far, both streams.
    pub logs: Arc<Mutex<String>>,
    /// The policy file it reads (from [`Serve::with_policy`]), removed with it.
    _policy: Option<TempFile>,
}

impl Serve {
    /// Starts `serve` on 127.0.0.1, on a port the kernel picks, with `env` (JSON logs at `info`
    /// unless `env` says otherwise), and waits (at most 30 s) until it prints its address.
    pub async fn start(env: &[(&str, String)]) -> Serve {
        Self::launch(env, None).await
    }

    /// `serve` as [`Serve::start`], with `policy` as its policy file (`REMEDIATOR_POLICY`).
    pub async fn with_policy(policy: &str, env: &[(&str, String)]) -> Serve {
        Self::launch(env, Some(TempFile::new(policy))).await
    }

    async fn launch(env: &[(&str, String)], policy: Option<TempFile>) -> Serve {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
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
            .unwrap_or_else(|_| panic!("serve exited before listening: {}", logs.lock().unwrap()));
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

    /// Kills it (SIGKILL).
    pub async fn stop(mut self) {
        self.kill().await;
    }

    /// Kills it (SIGKILL) and waits for it; its logs stay readable.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM and waits for the process to exit, killing it after `grace` (as Cloud Run
    /// does); the exit status and how long it took to stop.
    pub async fn terminate(&mut self, grace: Duration) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM sent");
        let exit = self.wait_exit(grace).await;
        (exit, started.elapsed())
    }

    /// Waits for the process to exit, killing it after `grace` (as Cloud Run does after SIGTERM).
    async fn wait_exit(&mut self, grace: Duration) -> std::process::ExitStatus {
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

/// `scan ARGS` run in-process (`gke_iam_remediator::scan::run_to`) against `sim` as the scanner,
/// its output captured: the command as the binary runs it, without a process.
pub async fn scan_in_process(args: &[&str], sim: &SimHandle) -> (i32, String) {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        scan: gke_iam_remediator::scan::ScanArgs,
    }
    let token = format!("sim:{SCANNER}");
    let base = sim.base_url();
    let mut argv = vec!["scan", "--api-endpoint", &base, "--access-token", &token];
    argv.extend_from_slice(args);
    let cli = <Cli as clap::Parser>::try_parse_from(&argv).expect("scan arguments parse");
    let mut out = Vec::new();
    let code = gke_iam_remediator::scan::run_to(&cli.scan, &mut out, false).await;
    (code, String::from_utf8(out).expect("scan writes UTF-8"))
}
