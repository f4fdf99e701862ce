//! Starting an official gcloud emulator (Pub/Sub, Firestore): the one place a test picks a port for
//! a process, because these emulators must be told their port (they cannot bind port 0 and say which
//! port they got, as the simulator and `serve` do).
//!
//! The port is picked free, but another server of the test run (a simulator, a `serve`, on an
//! ephemeral port) may bind it before the emulator's JVM does; the emulator then neither answers nor
//! exits. So an answer other than the emulator's, a connection that stays silent, or an exit means
//! another port: the emulator is started again there (at most three times).
//!
//! Each emulator runs under a small watchdog shell that leads its own process group: the watchdog
//! kills the whole group (itself, the emulator's wrapper script, the JVM) as soon as the test process
//! is gone or the emulator has exited, and dropping an [`Emulator`] kills the group at once. (The
//! Firestore emulator's wrapper does not `exec` its JVM, and a shared emulator lives in a static,
//! which Rust never drops.)

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, sdk_root};

/// Kills the process group it leads once the test process (`$1`) or the emulator is gone.
const WATCHDOG: &str = r#"
parent=$1; shift
"$@" &
emulator=$!
while kill -0 "$parent" 2>/dev/null && kill -0 "$emulator" 2>/dev/null; do sleep 0.5; done
kill -KILL 0
"#;

/// How many ports a start tries before it gives up.
const ATTEMPTS: usize = 3;

/// Which emulator, and how it is told its port.
pub struct EmulatorKind {
    /// Its name in messages (`Pub/Sub`).
    pub name: &'static str,
    /// Its launcher, relative to the Cloud SDK root.
    pub bin: &'static str,
    /// The gcloud component that installs it (named when it is missing).
    pub component: &'static str,
    /// Whether it needs a directory of its own (for its data), removed with it.
    pub scratch: bool,
    /// Its arguments for a port (and its directory, when it has one).
    pub args: fn(port: u16, scratch: Option<&Path>) -> Vec<String>,
}

/// A running emulator, its process group killed on drop (or by its watchdog when the test process
/// ends); its directory, if it has one, removed on drop.
pub struct Emulator {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The directory this start gave it (the Pub/Sub emulator keeps its data there).
    _scratch: Option<TempDir>,
}

impl Emulator {
    /// Starts `kind` and waits (at most 60 s a port) until `GET /` answers, on another port when the
    /// picked one turned out to be someone else's (at most [`ATTEMPTS`] ports).
    pub async fn start(kind: &EmulatorKind) -> Emulator {
        let bin = sdk_root().join(kind.bin);
        assert!(
            bin.exists(),
            "the {} emulator is missing at {} (install {})",
            kind.name,
            bin.display(),
            kind.component
        );
        let mut failures = Vec::new();
        for _ in 0..ATTEMPTS {
            match Self::start_on_a_free_port(kind, &bin).await {
                Ok(emulator) => {
                    if !failures.is_empty() {
                        eprintln!(
                            "the {} emulator needed another port: {failures:?}",
                            kind.name
                        );
                    }
                    return emulator;
                }
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "the {} emulator could not be started on {ATTEMPTS} ports: {failures:?}",
            kind.name
        );
    }

    /// One start; `Err` with why if the port turned out not to be the emulator's (it is killed).
    async fn start_on_a_free_port(kind: &EmulatorKind, bin: &Path) -> Result<Emulator, String> {
        let port = unused_port();
        let scratch = kind.scratch.then(|| TempDir::new("emulator"));
        let started = Instant::now();
        let child = Command::new("bash")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("emulator-watchdog")
            .arg(std::process::id().to_string())
            .arg(bin)
            .args((kind.args)(port, scratch.as_ref().map(TempDir::path)))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut emulator = Emulator {
            child,
            host: format!("127.0.0.1:{port}"),
            _scratch: scratch,
        };
        // A client of this start only: a shared emulator outlives the runtime that started it.
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
                    eprintln!(
                        "the {} emulator on {} answered after {:?}",
                        kind.name,
                        emulator.host,
                        started.elapsed()
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
                "the {} emulator did not answer within 60 s",
                kind.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Emulator {
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

/// A port nothing listened on a moment ago: the kernel's pick for a listener that is closed at
/// once. Only for the emulators, which must be given a port; [`Emulator::start`] retries when
/// someone took it in between.
fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
