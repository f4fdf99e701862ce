//! Wiring for the long-running modes: `serve` and `job` read their configuration (environment first,
//! as on Cloud Run), validate it at start-up, build each client once, and run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::connect::{GcpArgs, IamV2Reads, open_store};
use crate::domain::iam::ResourceRef;
use crate::engine::{Engine, EngineConfig};
use crate::job::{self, JobSummary, PullOptions};
use crate::policy::PolicyFile;
use crate::ports::{Cloud, NotificationSink};
use crate::pubsub::NotificationPublisher;
use crate::server::{self, AppState, ServerConfig};
use crate::telemetry::{self, LogFormat};

/// Settings shared by `serve` and `job`.
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Remediation policy file (YAML). Without it: dry-run with the built-in defaults.
    #[arg(long, env = "REMEDIATOR_POLICY")]
    pub policy: Option<PathBuf>,
    /// Topic for notifications (`projects/P/topics/T`). Without it, outcomes are only logged.
    #[arg(long, env = "REMEDIATOR_NOTIFY_TOPIC")]
    pub notify_topic: Option<String>,
    /// The remediator's own service-account email: audit-log entries it caused are ignored.
    #[arg(long, env = "REMEDIATOR_SELF_EMAIL")]
    pub self_email: Option<String>,
    /// What a sweep request without a scope covers: comma-separated `projects/ID`, `folders/N`,
    /// `organizations/N`.
    #[arg(long, env = "REMEDIATOR_SWEEP_SCOPE", value_delimiter = ',')]
    pub sweep_scope: Vec<String>,
    /// Milliseconds the first event for an idle project waits for others before it is checked, the
    /// whole window every time (0: at once; events arriving during a check always join the next one).
    #[arg(long, env = "REMEDIATOR_COALESCE_MS", default_value_t = 0)]
    pub coalesce_ms: u64,
    /// Also publish `healthy` outcomes.
    #[arg(long, env = "REMEDIATOR_NOTIFY_HEALTHY")]
    pub notify_healthy: bool,
    /// Ask the Policy Troubleshooter to settle group-granted permissions.
    #[arg(long, env = "REMEDIATOR_TROUBLESHOOTER")]
    pub troubleshooter: bool,
    /// Sweep folders and organizations project by project, without first reading a Cloud Asset
    /// Inventory snapshot.
    #[arg(long, env = "REMEDIATOR_NO_ASSET_INVENTORY")]
    pub no_asset_inventory: bool,
    /// Hours between reminders of open problems (one notification per open finding, at most that
    /// often per project; 0: never). Default: 24 in enforce mode, never in dry-run.
    #[arg(long, env = "REMEDIATOR_REMINDER_HOURS")]
    pub reminder_hours: Option<u64>,
    /// The subscription's `max_delivery_attempts` (its dead-letter limit): a transient failure is
    /// announced as `failed` only on that attempt (earlier ones are redelivered and retried). 0: no
    /// dead-letter policy (every transient failure is retried silently).
    #[arg(long, env = "REMEDIATOR_MAX_DELIVERY_ATTEMPTS", default_value_t = 5)]
    pub max_delivery_attempts: u32,
    /// Log format.
    #[arg(
        long,
        env = "REMEDIATOR_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
    /// Project for trace correlation in logs (Cloud Run sets `GOOGLE_CLOUD_PROJECT`).
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
    pub trace_project: Option<String>,
    /// Google connection settings.
    #[command(flatten)]
    pub gcp: GcpArgs,
}

/// `serve` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Listen address; default `0.0.0.0:$PORT` (8080 without `PORT`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// How pushes are authenticated: `cloud-run` (behind Cloud Run's IAM invoker check), `signed`
    /// (verify Google's signature), `none` (local only). Unset: `signed` when the audience and the
    /// emails are set, `none` when neither is; anything partial refuses to start.
    #[arg(long, env = "REMEDIATOR_PUSH_AUTH")]
    pub push_auth: Option<String>,
    /// The audience every push token must carry.
    #[arg(long, env = "REMEDIATOR_PUSH_AUDIENCE")]
    pub push_audience: Option<String>,
    /// Service-account emails allowed to push (comma-separated).
    #[arg(long, env = "REMEDIATOR_PUSH_ALLOWED_EMAILS", value_delimiter = ',')]
    pub push_allowed_emails: Vec<String>,
    /// Where Google's token signing keys are fetched (JWKS).
    #[arg(
        long,
        env = "REMEDIATOR_OIDC_KEYS_URL",
        default_value = "https://www.googleapis.com/oauth2/v3/certs"
    )]
    pub oidc_keys_url: String,
    /// Seconds in-flight requests may finish after SIGTERM.
    #[arg(long, env = "REMEDIATOR_SHUTDOWN_GRACE_SECS", default_value_t = 8)]
    pub shutdown_grace_secs: u64,
    /// Largest accepted push body in bytes.
    #[arg(long, env = "REMEDIATOR_MAX_BODY_BYTES", default_value_t = crate::intake::MAX_PUSH_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Most connections served at once (at the limit, the one waiting longest for a request head is
    /// closed for a new one). Default: the open-file limit less 256, at most 4096.
    #[arg(long, env = "REMEDIATOR_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a request head may take from when the connection starts waiting for it (accepted, or
    /// its last response sent): a silent kept-alive connection is closed after as long.
    #[arg(long, env = "REMEDIATOR_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds a request body may take.
    #[arg(long, env = "REMEDIATOR_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub body_timeout_secs: u64,
    /// Seconds a push may be held before it is answered 503 (Pub/Sub redelivers; the handling goes on
    /// and the redelivery gets its verdict). Keep it below the subscription's ack deadline (120 s in
    /// the Terraform module).
    #[arg(long, env = "REMEDIATOR_PUSH_DEADLINE_SECS", default_value_t = 100)]
    pub push_deadline_secs: u64,
    /// Engine settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `job` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct JobArgs {
    /// Pull from this subscription (`projects/P/subscriptions/S`).
    #[arg(long, env = "REMEDIATOR_SUBSCRIPTION")]
    pub subscription: Option<String>,
    /// Stop after this many messages.
    #[arg(long, default_value_t = 1000)]
    pub max_messages: u64,
    /// Stop after this many seconds without a message.
    #[arg(long, default_value_t = 10)]
    pub idle_timeout: u64,
    /// Treat the pulled messages as Notification v1 (a subscription on the notifications topic) and
    /// deliver them to the policy's Slack / email / webhook channels.
    #[arg(long, env = "REMEDIATOR_DELIVER_NOTIFICATIONS")]
    pub deliver_notifications: bool,
    /// Run a full sweep of the scope (`--project`, `--folder`, `--organization`, else the sweep scope).
    #[arg(long)]
    pub sweep: bool,
    /// Sweep this project. Repeatable.
    #[arg(long = "project")]
    pub projects: Vec<String>,
    /// Sweep every project under this folder. Repeatable.
    #[arg(long = "folder")]
    pub folders: Vec<String>,
    /// Sweep every project of this organization. Repeatable.
    #[arg(long = "organization")]
    pub organizations: Vec<String>,
    /// Engine settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

fn load_policy(path: &Option<PathBuf>) -> anyhow::Result<PolicyFile> {
    Ok(match path {
        Some(p) => PolicyFile::load(p)?,
        None => PolicyFile::default(),
    })
}

/// What every mode is built from, read once at start-up: the policy file, the Google ports and the
/// Pub/Sub emulator host.
struct Runtime {
    policy: PolicyFile,
    cloud: Arc<dyn Cloud>,
    emulator_host: Option<String>,
    /// The deny reads of a one-shot sweep (`job --sweep` without a subscription).
    deny_read_budget: Option<u32>,
}

impl Runtime {
    /// `reads`: [`IamV2Reads::Window`] for a process that handles messages (their runs are on a
    /// message's critical path: deny reads never wait for the IAM v2 quota unless `--iam-v2-wait`
    /// says so); a one-shot sweep spends a budget, as `scan` does.
    fn load(args: &EngineArgs, reads: IamV2Reads) -> anyhow::Result<Self> {
        let policy = load_policy(&args.policy)?;
        let gcp = args.gcp.connect(reads)?;
        Ok(Self {
            deny_read_budget: gcp.client().iam_v2_budget(),
            policy,
            cloud: Arc::new(gcp),
            emulator_host: std::env::var("PUBSUB_EMULATOR_HOST")
                .ok()
                .filter(|h| !h.is_empty()),
        })
    }
}

fn parse_scope(items: &[String]) -> anyhow::Result<Vec<ResourceRef>> {
    items
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            ResourceRef::parse(s.trim()).map_err(|e| anyhow::anyhow!("REMEDIATOR_SWEEP_SCOPE: {e}"))
        })
        .collect()
}

async fn build_engine(args: &EngineArgs, runtime: &Runtime) -> anyhow::Result<Arc<Engine>> {
    let publisher: Option<Arc<dyn NotificationSink>> = match &args.notify_topic {
        Some(topic) => Some(Arc::new(
            NotificationPublisher::connect(topic, runtime.emulator_host.as_deref()).await?,
        )),
        None => None,
    };
    let mut config = EngineConfig::new(runtime.policy.remediation.clone());
    config.self_email = match &args.self_email {
        Some(email) => Some(email.clone()),
        None => own_identity().await,
    };
    match &config.self_email {
        Some(email) => {
            tracing::info!(self_email = %email, "our own identity: its changes are ignored, its restorations counted")
        }
        None => tracing::warn!(
            "our own identity is unknown (REMEDIATOR_SELF_EMAIL unset, no metadata server): the flapping limit counts this instance's restorations only"
        ),
    }
    config.sweep_scope = parse_scope(&args.sweep_scope)?;
    config.coalesce_window = Duration::from_millis(args.coalesce_ms);
    config.notify_healthy = args.notify_healthy;
    config.troubleshooter = args.troubleshooter;
    config.asset_inventory = !args.no_asset_inventory;
    config.deny_read_budget = runtime.deny_read_budget;
    config.reminder = reminder_interval(args.reminder_hours, config.policy.mode);
    config.max_delivery_attempts =
        (args.max_delivery_attempts > 0).then_some(args.max_delivery_attempts);
    let state = open_state(args.gcp.state.as_deref())?;
    Ok(Engine::with_state(
        runtime.cloud.clone(),
        config,
        publisher,
        state,
    ))
}

/// The reminder interval: the setting, else daily in enforce mode and never in dry-run.
fn reminder_interval(hours: Option<u64>, mode: crate::domain::rules::Mode) -> Option<Duration> {
    match hours {
        Some(0) => None,
        Some(h) => Some(Duration::from_secs(h.saturating_mul(3600))),
        None if mode == crate::domain::rules::Mode::Enforce => Some(Duration::from_secs(24 * 3600)),
        None => None,
    }
}

/// The state store `REMEDIATOR_STATE` names (memory when unset, with a warning on Cloud Run).
fn open_state(setting: Option<&str>) -> anyhow::Result<Arc<crate::engine::shared::SharedState>> {
    let store = open_store(setting, None).map_err(anyhow::Error::msg)?;
    let info = store.info();
    if info.shared {
        tracing::info!(state = %info.location, "state shared by every instance and run");
    } else if on_cloud_run() {
        tracing::warn!(state = %info.location, "no shared state (REMEDIATOR_STATE): on Cloud Run every guarantee (one notification per change, the flapping limit, nothing lost after a crash) holds per instance only; set REMEDIATOR_STATE=firestore://projects/P/databases/D");
    } else {
        tracing::info!(state = %info.location, "state kept by this process alone: guarantees hold per instance only");
    }
    Ok(crate::engine::shared::SharedState::new(store))
}

/// Runs `serve` until SIGTERM/SIGINT.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    telemetry::init(args.engine.log_format, args.engine.trace_project.clone());
    let runtime = Runtime::load(&args.engine, IamV2Reads::Window)?;
    let engine = build_engine(&args.engine, &runtime).await?;
    let deliverer = crate::notify::deliver::from_policy(&runtime.policy.notifications)?;
    if let Some(d) = &deliverer
        && engine.state_info().shared
    {
        d.share_record(engine.state().clone());
    }
    let auth = server::auth::resolve(
        args.push_auth.as_deref(),
        args.push_audience.as_deref(),
        &args.push_allowed_emails,
        &args.oidc_keys_url,
    )?;
    let oidc = match &auth.oidc {
        Some(config) => Some(push_verifier(config.clone())?),
        None => None,
    };
    if oidc.is_none() && deliverer.is_some() {
        tracing::warn!(
            "push authentication is off (REMEDIATOR_PUSH_AUTH=none): POST /pubsub/notify is refused (403); {}",
            server::notify_refusal()
        );
    }
    // What earlier runs left in the outbox goes out now (in the background: the port opens at once).
    {
        let engine = engine.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.drain().await {
                tracing::error!(error = %e, "the outbox cannot be drained at start-up: it is retried by the next run of each project");
            }
        });
    }
    let grace = runtime.policy.remediation.grace_seconds;
    if grace >= args.push_deadline_secs {
        tracing::warn!(
            grace_seconds = grace,
            push_deadline_secs = args.push_deadline_secs,
            "the policy's grace delay is not shorter than the push deadline: every removal's push is answered 503 and its verdict waits for a redelivery (raise REMEDIATOR_PUSH_DEADLINE_SECS, below the subscription's ack deadline)"
        );
    }
    let listen = args.listen.unwrap_or_else(server::listen_addr_from_env);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, mode = engine.mode().as_str(), push_auth = auth.mode.as_str(), max_connections = args.max_connections.unwrap_or_else(server::conn::default_max_connections), notification_channels = deliverer.as_ref().map_or(0, |d| d.config().channels.len()), "serving");
    // Signal handlers before the address is announced: a SIGTERM from then on is a graceful stop.
    let shutdown = server::shutdown_signal();
    println!("listening on http://{addr}");
    let state = Arc::new(AppState {
        engine,
        oidc,
        deliverer,
        pushes: server::PushStats::default(),
        config: ServerConfig {
            max_body_bytes: args.max_body_bytes,
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            trace_project: args.engine.trace_project.clone(),
            body_timeout: Duration::from_secs(args.body_timeout_secs),
            push_deadline: Duration::from_secs(args.push_deadline_secs),
            connections: server::conn::ConnLimits {
                max_connections: args
                    .max_connections
                    .unwrap_or_else(server::conn::default_max_connections),
                header_timeout: Duration::from_secs(args.header_timeout_secs),
            },
        },
    });
    server::run(listener, state, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Runs `job`; returns the exit code (0 ok, 1 failures, 2 error).
pub async fn job(args: JobArgs) -> anyhow::Result<i32> {
    telemetry::init(args.engine.log_format, args.engine.trace_project.clone());
    if args.subscription.is_none() && !args.sweep {
        anyhow::bail!("nothing to do: give --subscription and/or --sweep");
    }
    // A sweep alone is one-shot, like `scan`: it spends a budget of deny reads (what the window
    // allows in --iam-v2-wait, 0 by default: 5), in project order when that might not cover it.
    let reads = match args.subscription {
        None => IamV2Reads::Budget(Duration::ZERO),
        Some(_) => IamV2Reads::Window,
    };
    let runtime = Runtime::load(&args.engine, reads)?;
    let mut summary = JobSummary::default();
    let pull_options = PullOptions {
        max_outstanding: 64,
        max_messages: args.max_messages,
        idle: Duration::from_secs(args.idle_timeout),
    };
    if args.deliver_notifications {
        let Some(subscription) = &args.subscription else {
            anyhow::bail!(
                "--deliver-notifications needs --subscription (on the notifications topic)"
            );
        };
        if args.sweep {
            anyhow::bail!("--deliver-notifications cannot be combined with --sweep");
        }
        let deliverer = crate::notify::deliver::from_policy(&runtime.policy.notifications)?
            .ok_or_else(|| {
                anyhow::anyhow!("--deliver-notifications: the policy has no notifications channels")
            })?;
        let state = open_state(args.engine.gcp.state.as_deref())?;
        if state.info().shared {
            deliverer.share_record(state);
        }
        let handler: job::Handler = Arc::new(move |message| {
            let deliverer = deliverer.clone();
            Box::pin(async move { deliverer.handle(&message).await })
        });
        // A digest window holds each notification: many are leased at once so a burst collapses.
        let options = PullOptions {
            max_outstanding: 1000,
            ..pull_options
        };
        job::pull(
            subscription,
            runtime.emulator_host.as_deref(),
            &options,
            handler,
            &mut summary,
        )
        .await?;
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(if summary.failures > 0 { 1 } else { 0 });
    }
    let engine = build_engine(&args.engine, &runtime).await?;
    match engine.drain().await {
        Ok(n) => summary.drained = n,
        Err(e) => {
            tracing::error!(error = %e, "the outbox cannot be drained at start-up");
            summary.failures += 1;
        }
    }
    if let Some(subscription) = &args.subscription {
        let events = engine.clone();
        let handler: job::Handler = Arc::new(move |message| {
            let engine = events.clone();
            Box::pin(async move { engine.handle(&message, None).await })
        });
        job::pull(
            subscription,
            runtime.emulator_host.as_deref(),
            &pull_options,
            handler,
            &mut summary,
        )
        .await?;
    }
    if args.sweep {
        let mut roots: Vec<ResourceRef> = Vec::new();
        for f in &args.folders {
            roots.push(ResourceRef::parse(&format!(
                "folders/{}",
                f.trim_start_matches("folders/")
            ))?);
        }
        for o in &args.organizations {
            roots.push(ResourceRef::parse(&format!(
                "organizations/{}",
                o.trim_start_matches("organizations/")
            ))?);
        }
        let mut projects = args.projects.clone();
        if roots.is_empty() && projects.is_empty() {
            for r in parse_scope(&args.engine.sweep_scope)? {
                match r {
                    ResourceRef::Project(p) => projects.push(p.to_string()),
                    other => roots.push(other),
                }
            }
        }
        if roots.is_empty() && projects.is_empty() {
            anyhow::bail!(
                "--sweep needs --project, --folder, --organization or REMEDIATOR_SWEEP_SCOPE"
            );
        }
        job::sweep(&engine, &projects, &roots, &mut summary).await?;
    }
    if let Some(p) = engine.publisher() {
        p.flush().await;
    }
    println!("{}", serde_json::to_string(&summary)?);
    Ok(if summary.failures > 0 { 1 } else { 0 })
}

/// Builds the Google OIDC push verifier.
fn push_verifier(
    config: crate::server::oidc::OidcConfig,
) -> anyhow::Result<Box<dyn server::PushAuth>> {
    let http = crate::http::client().map_err(anyhow::Error::msg)?;
    Ok(Box::new(crate::server::oidc::OidcVerifier::new(
        config, http,
    )))
}

/// Whether this process runs on Cloud Run (a service sets `K_SERVICE`, a job `CLOUD_RUN_JOB`).
fn on_cloud_run() -> bool {
    std::env::var_os("K_SERVICE").is_some() || std::env::var_os("CLOUD_RUN_JOB").is_some()
}

/// On Cloud Run (a service sets `K_SERVICE`, a job `CLOUD_RUN_JOB`) the runtime identity is known to
/// the metadata server; elsewhere it is not guessed.
async fn own_identity() -> Option<String> {
    if !on_cloud_run() {
        return None;
    }
    let host = std::env::var("GCE_METADATA_HOST")
        .unwrap_or_else(|_| "metadata.google.internal".to_owned());
    match metadata_email(&host).await {
        Ok(email) => Some(email),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read our identity from the metadata server");
            None
        }
    }
}

/// The default service account's email from the metadata server at `host`.
async fn metadata_email(host: &str) -> Result<String, String> {
    let http = crate::http::client()?;
    let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/email");
    let response = http
        .get(&url)
        .timeout(Duration::from_secs(3))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let email = response.text().await.map_err(|e| e.to_string())?;
    let email = email.trim();
    crate::domain::iam::ServiceAccountEmail::parse(email)
        .map(|e| e.as_str().to_owned())
        .map_err(|e| format!("{url}: not a service account email: {e}"))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A metadata server that answers one request, and what it was asked.
    async fn metadata_server(body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(reply.as_bytes()).await.unwrap();
            request
        });
        (host, task)
    }

    #[tokio::test]
    async fn our_identity_is_read_from_the_metadata_server_with_its_header() {
        let (host, asked) = metadata_server("remediator@ops.iam.gserviceaccount.com\n").await;
        let email = super::metadata_email(&host).await.unwrap();
        assert_eq!(email, "remediator@ops.iam.gserviceaccount.com");
        let request = asked.await.unwrap().to_ascii_lowercase();
        assert!(request.contains("metadata-flavor: google"), "{request}");
        assert!(
            request.starts_with("get /computemetadata/v1/instance/service-accounts/default/email "),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_metadata_answer_that_is_not_a_service_account_is_refused() {
        let (host, _asked) = metadata_server("<html>captive portal</html>").await;
        assert!(super::metadata_email(&host).await.is_err());
    }
}
