//! The local Google Cloud simulator (`gke-iam-remediator sim`): one HTTP server speaking the REST
//! surfaces this project uses (Resource Manager v1/v2/v3, IAM v1, Container v1, Recommender v1, Service
//! Usage v1, Policy Troubleshooter v1/v3, Logging v2, Cloud Asset v1 `assets.list`, IAM v2 deny policies,
//! Org Policy v2, Cloud Identity v1 groups) from a YAML world file, strict as Google by default
//! and checked by Google's own clients (`tests/conformance/`) and the real `gcloud`. Its own crate: it
//! shares no type with the client it serves.
//!
//! Module map: [`world`] (file model), `state` (live resources and their indexes), [`model`] (its own
//! IAM wire model), `server` (routing, callers, faults, journal), `schema` (unknown request fields
//! and query parameters), `paging`, `control` (`/_sim/` endpoints), one module per API (`crm`,
//! `iam`, `container`, `recommender`, `serviceusage`, `troubleshooter`, `logging` with `logfilter`,
//! `cloudasset` with `asset_types`, `iam_v2`, `orgpolicy`, `cloudidentity`), `access` (deny and org
//! policies: world checks, state, evaluation), `cel` (its own reading of time-bound IAM conditions),
//! `policy` (IAM policy semantics), `roles` (bundled role data and catalog), `faults`, `journal`,
//! `audit` (audit-log LogEntries to Pub/Sub), `error` (Google error JSON), `clock` (RFC 3339).
//!
//! Callers: `Authorization: Bearer sim:EMAIL` names the caller (`serviceAccount:EMAIL` when the email ends
//! in `gserviceaccount.com`, else `user:EMAIL`); no token or any other token means
//! [`SimOptions::default_principal`].

mod access;
mod asset_types;
mod audit;
mod cel;
mod clock;
mod cloudasset;
mod cloudidentity;
mod container;
mod control;
mod crm;
mod error;
mod faults;
mod iam;
mod iam_v2;
mod journal;
mod logfilter;
mod logging;
pub mod model;
mod orgpolicy;
mod paging;
mod policy;
mod recommender;
mod roles;
mod schema;
mod server;
mod serviceusage;
mod state;
mod troubleshooter;
pub mod world;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use error::ApiError;
pub use faults::{ConcurrentWriter, Faults, Latency};
pub use journal::{JournalEntry, Stats};
pub use model::{Binding, Condition, Policy};
pub use world::{World, WorldError};

use server::{Shared, lock};

/// Options of a simulator instance.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// `projects/P/topics/T` to publish audit-log entries to (on the Pub/Sub emulator).
    pub audit_log_topic: Option<String>,
    /// `HOST:PORT` of the Pub/Sub emulator (usually `$PUBSUB_EMULATOR_HOST`).
    pub pubsub_emulator_host: Option<String>,
    /// Caller when a request carries no `Bearer sim:EMAIL` token, in member form.
    pub default_principal: String,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            audit_log_topic: None,
            pubsub_emulator_host: None,
            default_principal: "user:admin@example.com".into(),
        }
    }
}

/// Error starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The default principal is not in member form.
    #[error("invalid default principal `{0}`: expected user:EMAIL or serviceAccount:EMAIL")]
    Principal(String),
}

/// A running simulator.
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Starts a simulator serving `world` on `listen` (port 0 picks a free port).
pub async fn start(
    world: World,
    listen: SocketAddr,
    options: SimOptions,
) -> Result<SimHandle, SimError> {
    if !model::is_member(&options.default_principal) || !options.default_principal.contains(':') {
        return Err(SimError::Principal(options.default_principal));
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: listen,
        source,
    })?;
    let shared = Arc::new(Shared {
        state: Mutex::new(state::State::from_world(&world)),
        world: Mutex::new(world),
        faults: Mutex::new(faults::FaultState::default()),
        journal: Mutex::new(journal::Journal::default()),
        audit: audit::AuditSink::start(
            options.audit_log_topic.clone(),
            options.pubsub_emulator_host.clone(),
        ),
        options,
    });
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let serving = shared.clone();
    let task = tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let shared = serving.clone();
                    let svc = service_fn(move |req| server::handle(shared.clone(), req));
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    let watched = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = watched.await {
                            tracing::debug!(error.message = %e, "connection ended with an error");
                        }
                    });
                }
                _ = &mut stop_rx => break,
            }
        }
        drop(listener);
        if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("simulator connections did not drain within 5 s");
        }
    });
    Ok(SimHandle {
        addr,
        shared,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/` (with the trailing slash gcloud's endpoint overrides need).
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Request counts since start or the last reset.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.journal).stats()
    }

    /// Clears the request counts.
    pub fn reset_stats(&self) {
        lock(&self.shared.journal).reset_stats();
    }

    /// The stored policy of `projects/ID`, `folders/N` or `organizations/N` (as getIamPolicy v3 would
    /// return it).
    pub fn policy(&self, resource: &str) -> Option<Policy> {
        let st = lock(&self.shared.state);
        st.policy_ref(resource).and_then(|r| st.policy(&r).cloned())
    }

    /// Replaces the faults (same as `PUT /_sim/faults`).
    pub fn set_faults(&self, faults: Faults) {
        server::set_faults(&self.shared, faults);
    }

    /// Sets or clears the concurrent writer (same as `PUT /_sim/concurrent-writer`).
    pub fn set_concurrent_writer(&self, writer: Option<ConcurrentWriter>) {
        server::set_writer(&self.shared, writer);
    }

    /// Loads a new world (same as `PUT /_sim/world`).
    pub fn load_world(&self, world: World) {
        control::load_world(&self.shared, world);
    }

    /// The request journal.
    pub fn journal(&self) -> Vec<JournalEntry> {
        lock(&self.shared.journal).entries()
    }

    /// The current state as a world.
    pub fn dump(&self) -> World {
        lock(&self.shared.state).to_world()
    }

    /// Waits until every emitted audit-log entry has been published.
    pub async fn flush_audit_logs(&self) {
        self.shared.audit.flush().await;
    }

    /// Stops accepting, drains connections, flushes audit logs.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.shared.audit.flush().await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Arguments of the `sim` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// World file (YAML or JSON).
    #[arg(long, value_name = "FILE")]
    pub world: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub listen: SocketAddr,
    /// Publish audit-log entries to this topic (`projects/P/topics/T`) on `$PUBSUB_EMULATOR_HOST`.
    #[arg(long, value_name = "projects/P/topics/T")]
    pub audit_log_topic: Option<String>,
    /// Caller of requests without a `Bearer sim:EMAIL` token.
    #[arg(long, value_name = "MEMBER", default_value = "user:admin@example.com")]
    pub default_principal: String,
    /// Enforce Google's IAM v2 read quota (deny policies): at most N reads per caller in any minute,
    /// the rest answered 429 RESOURCE_EXHAUSTED (Google's default is 5). Off by default; also the
    /// `iam_v2_reads_per_minute` of `PUT /_sim/faults`.
    #[arg(long, value_name = "N")]
    pub iam_v2_reads_per_minute: Option<u32>,
}

/// Runs the simulator until SIGINT or SIGTERM; prints `listening on http://ADDR` once ready.
pub async fn run_cli(args: SimArgs) -> anyhow::Result<()> {
    let world = World::load(&args.world)?;
    let options = SimOptions {
        audit_log_topic: args.audit_log_topic,
        pubsub_emulator_host: std::env::var("PUBSUB_EMULATOR_HOST")
            .ok()
            .filter(|h| !h.is_empty()),
        default_principal: args.default_principal,
    };
    let handle = start(world, args.listen, options).await?;
    if args.iam_v2_reads_per_minute.is_some() {
        handle.set_faults(Faults {
            iam_v2_reads_per_minute: args.iam_v2_reads_per_minute,
            ..Faults::default()
        });
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", handle.addr())?;
        out.flush()?;
    }
    wait_for_signal().await?;
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
