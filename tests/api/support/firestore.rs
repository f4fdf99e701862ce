//! The official Firestore emulator for the state-store tests: one per test process, started by the
//! first test that asks (about 2 s), each test in a project of its own (`demo-state-N`) so tests
//! never see each other's documents. A missing emulator fails loudly (tests are never skipped).
//!
//! Tests of the shared emulator run on one shared runtime ([`run`]): the service's HTTP client pools
//! connections process-wide, and a connection to the emulator opened on one test's runtime would
//! be dead ("runtime dropped the dispatch task") for the next test once the first one's runtime is
//! gone.
//!
//! The emulator is a shell wrapper that starts a JVM, and the shared one lives in a static, which
//! Rust never drops. So it runs under a small watchdog shell that leads its own process group: the
//! watchdog kills the whole group (itself, the wrapper, the JVM) as soon as the test process is gone
//! or the emulator has exited, and dropping an emulator kills the group at once.

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gke_iam_remediator::gcp::FirestoreStore;

use super::{free_port, sdk_root};

/// Kills the process group it leads once the test process (`$1`) or the emulator is gone.
const WATCHDOG: &str = r#"
parent=$1; shift
"$@" &
emulator=$!
while kill -0 "$parent" 2>/dev/null && kill -0 "$emulator" 2>/dev/null; do sleep 0.5; done
kill -KILL 0
"#;

/// Runs a test of the shared emulator on the runtime all of them share (two workers, never
/// dropped), blocking the test's thread until it ends.
pub fn run<F: Future>(test: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the Firestore tests")
        })
        .block_on(test)
}

/// The official Firestore emulator, its process group killed on drop (or by its watchdog when the
/// test process ends).
pub struct FirestoreEmulator {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// How long it took to answer.
    pub started_in: Duration,
}

impl FirestoreEmulator {
    /// The emulator this test process shares, started on first use (from inside [`run`] only).
    pub async fn shared() -> &'static FirestoreEmulator {
        static SHARED: tokio::sync::OnceCell<FirestoreEmulator> =
            tokio::sync::OnceCell::const_new();
        SHARED.get_or_init(Self::start).await
    }

    /// Starts an emulator of its own and waits (at most 60 s) until `GET /` answers. As for the
    /// Pub/Sub emulator, a port that another server of the test run took first means another try
    /// on another port (at most three).
    pub async fn start() -> FirestoreEmulator {
        let bin = sdk_root().join("platform/cloud-firestore-emulator/cloud_firestore_emulator");
        assert!(
            bin.exists(),
            "the Firestore emulator is missing at {} (install google-cloud-cli-firestore-emulator)",
            bin.display()
        );
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::start_on_a_free_port(&bin).await {
                Ok(emulator) => return emulator,
                Err(why) => failures.push(why),
            }
        }
        panic!("the Firestore emulator could not be started, three times: {failures:?}");
    }

    /// One start; `Err` with why if the port turned out not to be the emulator's (it is killed).
    async fn start_on_a_free_port(bin: &Path) -> Result<FirestoreEmulator, String> {
        let port = free_port();
        let started = Instant::now();
        let child = Command::new("bash")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("firestore-emulator-watchdog")
            .arg(std::process::id().to_string())
            .arg(bin)
            .args([
                "start".to_owned(),
                "--host=127.0.0.1".to_owned(),
                format!("--port={port}"),
            ])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut emulator = FirestoreEmulator {
            child,
            host: format!("127.0.0.1:{port}"),
            started_in: Duration::ZERO,
        };
        // A client of this start only: the shared emulator outlives the runtime that started it.
        let http = reqwest::Client::new();
        let deadline = started + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = emulator.child.try_wait() {
                return Err(format!("port {port}: exited, {status}"));
            }
            let answer = http
                .get(format!("http://{}/", emulator.host))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            match answer {
                Ok(r) if r.status().is_success() => {
                    emulator.started_in = started.elapsed();
                    eprintln!(
                        "the Firestore emulator on {} answered after {:?}",
                        emulator.host, emulator.started_in
                    );
                    return Ok(emulator);
                }
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
                "the Firestore emulator did not answer within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A store on this emulator in a project no other test uses, connected as the service connects
    /// (`FIRESTORE_EMULATOR_HOST`), listing pending documents `page_size` at a time.
    pub fn store(&self, page_size: u32) -> Arc<FirestoreStore> {
        static N: AtomicU64 = AtomicU64::new(0);
        let project = format!("demo-state-{}", N.fetch_add(1, Ordering::SeqCst));
        let location = format!("firestore://projects/{project}/databases/(default)");
        let store = FirestoreStore::connect_to(&location, Some(&self.host))
            .unwrap_or_else(|e| panic!("a store on the emulator: {e}"));
        Arc::new(store.with_page_size(page_size))
    }
}

impl Drop for FirestoreEmulator {
    fn drop(&mut self) {
        // The watchdog leads the group: the group id is its pid.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
