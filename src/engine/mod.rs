//! The event engine shared by `serve` and `job`: message -> hints -> coalesced per-project
//! verify/decide/apply -> notifications -> an ack or a retry verdict.
//!
//! Owns de-duplication (message ids already handled, notification ids already published),
//! per-project coalescing (one run reads the policy for every hint that arrived before it started;
//! hints arriving during a run join the next one, so every hint is handled by a run that read state
//! after the hint arrived), the grace delay after removals, ignoring the remediator's own changes, and
//! marking recommendations. A message body never decides what is granted: hints only choose which
//! projects to re-verify.
//!
//! Layout: [`remediate`] verifies, decides and applies one project; [`error`] maps failures to the
//! verdict Pub/Sub gets; [`recommendation`] settles recommendations; [`deny_cache`] keeps deny
//! policies for every run of the process (IAM v2 allows 5 reads a minute). Everything reaches Google
//! only through [`crate::ports`].

pub mod apply;
pub mod coalesce;
pub mod conclude;
pub mod deny_cache;
pub mod deny_plan;
pub mod discover;
pub mod error;
pub mod flap;
pub mod ledger;
pub mod recommendation;
pub mod remediate;
pub mod shared;
pub mod snapshot;
pub mod sweep;
pub mod verify;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::domain::iam::ResourceRef;
use crate::domain::report::{FindingReport, Outcome, ProjectReport};
use crate::domain::rules::{Mode, RemediationPolicy};
use crate::intake::{self, Classification, Hint, Scope, Verdict};
use crate::ports::{ApiError, Cloud, NotificationSink, ProjectInfo};

pub use apply::WriteBudget;
pub use remediate::{Options, Remediator};
pub use verify::RunCaches;

/// How long project lookups, role definitions and ancestor policies are reused across project runs.
/// The project's own policy is never cached.
pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The remediation policy.
    pub policy: RemediationPolicy,
    /// The remediator's own identity (email); audit-log entries by it are ignored.
    pub self_email: Option<String>,
    /// How long the first hint for an idle project may wait for others before its run starts (zero:
    /// it starts at once; hints arriving during a run always join the next run).
    pub coalesce_window: Duration,
    /// Projects, folders and organizations a sweep request without a scope covers.
    pub sweep_scope: Vec<ResourceRef>,
    /// Publish `healthy` outcomes too.
    pub notify_healthy: bool,
    /// Ask the Policy Troubleshooter for group-granted permissions.
    pub troubleshooter: bool,
    /// Sweeps of folders and organizations start from a Cloud Asset Inventory snapshot (re-verifying
    /// live only what it cannot call healthy); off: every project is read live.
    pub asset_inventory: bool,
    /// The wall clock IAM conditions are evaluated against (the system's; tests move it forward).
    pub clock: crate::clock::Clock,
    /// The IAM v2 reads this process makes in all, when it has such a budget (`job --sweep` without
    /// a subscription): a sweep's plan of deny reads makes at most that many ([`deny_plan`]).
    pub deny_read_budget: Option<u32>,
    /// The delivery attempt at which the subscription gives a message to its dead-letter topic
    /// (Terraform's `max_delivery_attempts`): a transient failure on that attempt is announced,
    /// earlier ones are retried silently. `None`: every transient failure is retried.
    pub max_delivery_attempts: Option<u32>,
    /// How often open problems are re-announced (one notification per open finding, at most that
    /// often per project); `None`: never.
    pub reminder: Option<Duration>,
}

impl EngineConfig {
    /// Defaults for a policy.
    pub fn new(policy: RemediationPolicy) -> Self {
        Self {
            policy,
            self_email: None,
            coalesce_window: Duration::ZERO,
            sweep_scope: Vec::new(),
            notify_healthy: false,
            troubleshooter: false,
            asset_inventory: true,
            clock: crate::clock::Clock::default(),
            deny_read_budget: None,
            max_delivery_attempts: Some(5),
            reminder: None,
        }
    }
}

/// Counters for logs, `/healthz` and benchmarks.
#[derive(Debug, Default, Serialize)]
pub struct EngineStats {
    /// Messages received.
    pub messages: AtomicU64,
    /// Messages skipped as already handled (same message id).
    pub duplicates: AtomicU64,
    /// Messages that were malformed (acked).
    pub malformed: AtomicU64,
    /// Messages understood but irrelevant (acked).
    pub ignored: AtomicU64,
    /// Hints dropped because our own identity made the change.
    pub own_changes: AtomicU64,
    /// Project runs (policy reads).
    pub project_runs: AtomicU64,
    /// Notifications published.
    pub notifications: AtomicU64,
    /// Messages answered with a retry.
    pub retries: AtomicU64,
    /// Notifications that could not be published when first tried (they stay in the outbox).
    pub unpublished: AtomicU64,
}

/// Message ids already handled: the oldest forgotten first, at most 100,000 of them and 16 MiB of
/// keys (they come from clients).
type Recent = crate::bounded::BoundedMap<String, ()>;

fn recent() -> Recent {
    Recent::new(100_000).with_max_bytes(16 * 1024 * 1024, |k, _| 2 * k.len())
}

/// A project run's report, shared by every hint the run answers.
pub type RunResult = Arc<ProjectReport>;

/// One audit-log read of our own restorations on a project, made for removal hints whose principals a
/// run found healthy. It answers a later removal hint without a new read when that removal happened
/// no earlier than `since` and no later than `arrived` (when the hint that caused the read arrived:
/// before its run read state), for principals that run found healthy: whatever of ours restored such a
/// principal after such a removal did so before that state read, so before this read.
struct RecoveryRead {
    /// `since` of the read (microseconds since the epoch).
    since_us: i128,
    /// When the hint that caused the read arrived (microseconds since the epoch).
    arrived_us: i128,
    /// Principals healthy in that run.
    healthy: Vec<crate::domain::iam::Member>,
    /// What the read returned.
    own: Arc<Vec<crate::ports::OwnRestoration>>,
    /// When the read was made.
    at: Instant,
}

/// The engine.
pub struct Engine {
    gcp: Arc<dyn Cloud>,
    config: EngineConfig,
    publisher: Option<Arc<dyn NotificationSink>>,
    /// The per-project coalescing scheduler.
    coalescer: Arc<coalesce::Coalescer>,
    handled: Mutex<Recent>,
    /// Messages being handled now, by id: a second delivery of one waits for the first's verdict.
    in_flight: std::sync::Mutex<HashMap<String, tokio::sync::watch::Receiver<Option<Verdict>>>>,
    /// The shared state (ledgers, outboxes).
    state: Arc<shared::SharedState>,
    /// The conclude stage (transitions, outbox, publishing).
    concluder: conclude::Conclude,
    /// Notifications of this process's sweeps still unpublished, by id (why).
    unpublished: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// Per project, as its last conclusion here left its ledger: open problems and notifications
    /// pending (for the `ledger totals` line, without reading the store again).
    totals: std::sync::Mutex<HashMap<String, (usize, usize)>>,
    caches: Mutex<(Instant, Arc<RunCaches>)>,
    projects: Mutex<HashMap<String, (Instant, ProjectInfo)>>,
    flap: Arc<flap::FlapLedger>,
    /// Deny policies read by any run of this engine (sweeps' discovery too).
    deny_cache: Arc<deny_cache::DenyPolicyCache>,
    /// The last audit-log read of our own restorations per project (lost-notification recovery).
    recoveries: Mutex<HashMap<String, RecoveryRead>>,
    /// Restorations this instance notified: (project, role, member) -> when.
    notified:
        Mutex<HashMap<(String, crate::domain::iam::Role, crate::domain::iam::Member), Instant>>,
    /// Counters.
    pub stats: EngineStats,
}

impl Engine {
    /// A new engine with a state of its own in memory (nothing shared with other instances).
    /// `publisher` is `None` when no notifications topic is configured (notifications are then only
    /// logged).
    pub fn new(
        gcp: Arc<dyn Cloud>,
        config: EngineConfig,
        publisher: Option<Arc<dyn NotificationSink>>,
    ) -> Arc<Self> {
        Self::with_state(gcp, config, publisher, shared::SharedState::in_memory())
    }

    /// A new engine over a state store (shared by every instance that uses the same store).
    pub fn with_state(
        gcp: Arc<dyn Cloud>,
        config: EngineConfig,
        publisher: Option<Arc<dyn NotificationSink>>,
        state: Arc<shared::SharedState>,
    ) -> Arc<Self> {
        let instance = format!("{:08x}", rand::random::<u32>());
        let deny_cache = Arc::new(
            deny_cache::DenyPolicyCache::with_store(state.store().clone())
                .clocked(config.clock.clone()),
        );
        let concluder = conclude::Conclude::new(
            state.clone(),
            publisher.clone(),
            conclude::ConcludeSettings {
                mode: config.policy.mode,
                notify_healthy: config.notify_healthy,
                window: Duration::from_secs(u64::from(config.policy.limits.window_minutes) * 60),
                reminder: config.reminder,
            },
            instance,
        );
        let coalescer = coalesce::Coalescer::new(config.coalesce_window);
        Arc::new(Self {
            gcp,
            config,
            publisher,
            coalescer,
            handled: Mutex::new(recent()),
            in_flight: std::sync::Mutex::default(),
            state,
            concluder,
            unpublished: std::sync::Mutex::default(),
            totals: std::sync::Mutex::default(),
            caches: Mutex::new((Instant::now(), Arc::default())),
            projects: Mutex::default(),
            flap: Arc::default(),
            deny_cache,
            recoveries: Mutex::default(),
            notified: Mutex::default(),
            stats: EngineStats::default(),
        })
    }

    /// The notification sink, if any.
    pub fn publisher(&self) -> Option<&Arc<dyn NotificationSink>> {
        self.publisher.as_ref()
    }

    /// The mode actually in force.
    pub fn mode(&self) -> Mode {
        self.config.policy.mode
    }

    /// Handles one Pub/Sub message end to end.
    pub async fn handle(
        self: &Arc<Self>,
        message: &intake::Message,
        trace_id: Option<&str>,
    ) -> Verdict {
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        let id = message.message_id.clone();
        if !id.is_empty() && self.handled.lock().await.contains_key(id.as_str()) {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(message_id = %id, "duplicate delivery of a handled message");
            return Verdict::Ack;
        }
        // A delivery of a message another delivery is handling right now (Pub/Sub redelivers when an
        // ack is late) shares that handling's verdict instead of running it again.
        let (leader, waiting) = self.lead_or_follow(&id);
        if let Some(mut rx) = waiting {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(message_id = %id, "duplicate delivery of a message in flight: sharing its verdict");
            return match rx.wait_for(Option::is_some).await {
                Ok(v) => v.clone().unwrap_or(Verdict::Ack),
                Err(_) => Verdict::Retry("the delivery handling this message stopped".to_owned()),
            };
        }
        let verdict = self.handle_inner(message, trace_id).await;
        if let Some(leader) = &leader {
            leader.finish(verdict.clone());
        }
        match &verdict {
            Verdict::Ack if !id.is_empty() => {
                self.handled.lock().await.insert(id.clone(), ());
            }
            Verdict::Retry(reason) => {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message_id = %id, %reason, "asking Pub/Sub to redeliver");
            }
            _ => {}
        }
        verdict
    }

    async fn handle_inner(
        self: &Arc<Self>,
        message: &intake::Message,
        trace_id: Option<&str>,
    ) -> Verdict {
        let hints = match intake::classify(message) {
            Ok(Classification::Hints(h)) => h,
            Ok(Classification::Ignored { reason }) => {
                self.stats.ignored.fetch_add(1, Ordering::Relaxed);
                tracing::info!(message_id = %message.message_id, %reason, "message ignored");
                return Verdict::Ack;
            }
            Err(e) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message_id = %message.message_id, error = %e, "malformed message acknowledged");
                return Verdict::Ack;
            }
        };
        let mut work = Vec::new();
        for hint in hints {
            if self.is_own_change(&hint) {
                self.stats.own_changes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(message_id = %message.message_id, actor = hint.evidence.actor.as_deref().unwrap_or("-"), "change made by our own identity: ignored");
                continue;
            }
            work.push(hint);
        }
        // A sweep request goes through the one sweep driver `job --sweep` uses: the same
        // discovery, one write budget for the whole sweep, the same recommendation settlement.
        if !work.is_empty()
            && work
                .iter()
                .all(|h| h.evidence.source == intake::Source::Sweep)
        {
            return self.sweep_request(&work, trace_id).await;
        }
        let mut verdict = Verdict::Ack;
        for hint in &work {
            if let Verdict::Retry(r) = self.handle_hint(hint, trace_id).await {
                verdict = Verdict::Retry(r);
            }
        }
        verdict
    }

    /// A sweep request (Cloud Scheduler through Pub/Sub) as one sweep: its projects and roots (or
    /// the configured scope), through [`Self::sweep_in`]. Retried when the scope cannot be listed
    /// for a passing reason, when a project's run failed for one, or when notifications stay
    /// unpublished; a retried sweep announces nothing twice (the ledger).
    async fn sweep_request(self: &Arc<Self>, hints: &[Hint], trace_id: Option<&str>) -> Verdict {
        let mut projects = Vec::new();
        let mut roots = Vec::new();
        for hint in hints {
            if let Scope::Project(p) = &hint.scope {
                projects.push(p.clone());
                continue;
            }
            for r in self.scope_roots(&hint.scope) {
                match r {
                    ResourceRef::Project(p) => projects.push(p.to_string()),
                    other => roots.push(other),
                }
            }
        }
        let hint = hints.first().cloned().unwrap_or_else(sweep_hint);
        let sweep: futures::future::BoxFuture<'_, _> =
            Box::pin(self.sweep_in(&projects, &roots, &hint, trace_id, true));
        match sweep.await {
            Ok((reports, _, _)) => {
                let mut verdict = Verdict::Ack;
                for r in &reports {
                    if let Verdict::Retry(why) = error::error_policy(r) {
                        verdict = Verdict::Retry(why);
                    }
                }
                let unpublished = self.unpublished();
                if verdict == Verdict::Ack
                    && let Some((id, why)) = unpublished.first()
                {
                    verdict = Verdict::Retry(format!(
                        "{} notification(s) not published ({id}: {why})",
                        unpublished.len()
                    ));
                }
                verdict
            }
            Err(e) => {
                let verdict = error::scope_policy(&e);
                if verdict == Verdict::Ack {
                    tracing::warn!(error = %e, "the sweep's scope cannot be listed; acknowledged");
                }
                verdict
            }
        }
    }

    /// Registers a delivery of `id` as the one handling it, or returns the receiver of the verdict of
    /// the delivery already handling it. Messages without an id are always handled.
    fn lead_or_follow(
        self: &Arc<Self>,
        id: &str,
    ) -> (
        Option<Leader>,
        Option<tokio::sync::watch::Receiver<Option<Verdict>>>,
    ) {
        if id.is_empty() {
            return (None, None);
        }
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = in_flight.get(id) {
            return (None, Some(rx.clone()));
        }
        let (tx, rx) = tokio::sync::watch::channel(None);
        in_flight.insert(id.to_owned(), rx);
        (
            Some(Leader {
                engine: self.clone(),
                id: id.to_owned(),
                tx,
            }),
            None,
        )
    }

    fn is_own_change(&self, hint: &Hint) -> bool {
        match (&self.config.self_email, &hint.evidence.actor) {
            (Some(me), Some(actor)) => me.eq_ignore_ascii_case(actor),
            _ => false,
        }
    }

    /// A project by id or number; projects are remembered for [`CACHE_TTL`] (they rarely move).
    async fn project(&self, key: &str) -> Result<ProjectInfo, ApiError> {
        if let Some((at, info)) = self.projects.lock().await.get(key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(info.clone());
        }
        let info = self.gcp.get_project_by_id_or_number(key).await?;
        let mut projects = self.projects.lock().await;
        if projects.len() > 100_000 {
            projects.clear();
        }
        projects.insert(key.to_owned(), (Instant::now(), info.clone()));
        Ok(info)
    }

    /// Caches shared by project runs, renewed every [`CACHE_TTL`].
    async fn run_caches(&self) -> Arc<RunCaches> {
        let mut caches = self.caches.lock().await;
        if caches.0.elapsed() >= CACHE_TTL {
            *caches = (Instant::now(), Arc::default());
        }
        caches.1.clone()
    }

    /// Drops shared caches (an ancestor's policy changed).
    async fn drop_caches(&self) {
        *self.caches.lock().await = (Instant::now(), Arc::default());
    }

    /// Forgets the process's read of the deny policies attached to `scope` (a project by its number,
    /// which may need a lookup). A failed lookup is the hint's verdict, as for any other scope.
    async fn forget_deny_policies(&self, scope: &Scope) -> Result<(), Verdict> {
        let point = match scope {
            Scope::Project(key) => match self.project(key).await {
                Ok(info) => format!("projects/{}", info.project_number),
                Err(e) => {
                    let verdict = error::scope_policy(&e);
                    if verdict == Verdict::Ack {
                        tracing::warn!(scope = ?scope, error = %e, "cannot resolve the project whose deny policies changed; acknowledged");
                    }
                    return Err(verdict);
                }
            },
            Scope::Folder(id) => format!("folders/{id}"),
            Scope::Organization(id) => format!("organizations/{id}"),
            Scope::Configured => return Ok(()),
        };
        self.deny_cache.forget(&point).await;
        Ok(())
    }

    /// The resources a folder, organization or configured scope names (a project scope names none:
    /// it is looked up by id or number).
    fn scope_roots(&self, scope: &Scope) -> Vec<ResourceRef> {
        match scope {
            Scope::Project(_) => Vec::new(),
            Scope::Folder(id) => ResourceRef::parse(&format!("folders/{id}"))
                .into_iter()
                .collect(),
            Scope::Organization(id) => ResourceRef::parse(&format!("organizations/{id}"))
                .into_iter()
                .collect(),
            Scope::Configured => self.config.sweep_scope.clone(),
        }
    }

    /// The projects of a hint's scope, and a failure report for each project named in a configured
    /// sweep scope that cannot be looked up (the rest are still checked). A hint for one project, or
    /// a folder or organization that cannot be listed, fails as a whole.
    async fn resolve(&self, scope: &Scope) -> Result<(Vec<ProjectInfo>, Vec<RunResult>), ApiError> {
        if let Scope::Project(key) = scope {
            return Ok((vec![self.project(key).await?], Vec::new()));
        }
        let roots = self.scope_roots(scope);
        // Every root at once, the results in the roots' order.
        let listed = futures::future::try_join_all(roots.iter().map(|root| async move {
            match root {
                ResourceRef::Project(p) => Ok(match self.gcp.get_project(p.as_str()).await {
                    Ok(info) => (vec![info], None),
                    Err(e) => (
                        Vec::new(),
                        Some(Arc::new(ProjectReport::failed(
                            p.to_string(),
                            error::failure(&e),
                        ))),
                    ),
                }),
                _ => Ok((self.gcp.list_projects_under(root).await?, None)),
            }
        }))
        .await?;
        let (mut infos, mut failed) = (Vec::new(), Vec::new());
        for (found, failure) in listed {
            infos.extend(found);
            failed.extend(failure);
        }
        Ok((infos, failed))
    }

    async fn handle_hint(self: &Arc<Self>, hint: &Hint, trace_id: Option<&str>) -> Verdict {
        let arrived = self.config.clock.now();
        if matches!(hint.scope, Scope::Folder(_) | Scope::Organization(_)) {
            // An inherited grant may have changed: nothing cached about ancestors may be reused.
            self.drop_caches().await;
        }
        if hint.deny_policies_changed
            && let Err(verdict) = self.forget_deny_policies(&hint.scope).await
        {
            return verdict;
        }
        // An event never starts from a Cloud Asset Inventory snapshot (it may not show the change
        // the event reports yet); sweep requests go through the sweep driver.
        let (projects, from_snapshot) = match self.resolve(&hint.scope).await {
            Ok(found) => found,
            Err(e) => {
                let verdict = error::scope_policy(&e);
                if verdict == Verdict::Ack {
                    tracing::warn!(scope = ?hint.scope, error = %e, "cannot resolve the hint's scope; acknowledged");
                }
                return verdict;
            }
        };
        let delay = if hint.is_removal {
            Duration::from_secs(self.config.policy.grace_seconds)
        } else {
            Duration::ZERO
        };
        // A sweep (or any hint naming many projects) is one run for the write budget.
        let budget = (!matches!(hint.scope, Scope::Project(_)))
            .then(|| WriteBudget::new(self.config.policy.limits.max_writes_per_run));
        let runs = futures::future::join_all(
            projects
                .iter()
                .map(|p| self.run_coalesced_in(p.clone(), delay, budget.clone())),
        )
        .await;
        let mut verdict = Verdict::Ack;
        for report in runs.into_iter().chain(from_snapshot) {
            if let Verdict::Retry(r) = self.conclude(&report, hint, trace_id, arrived, true).await {
                verdict = Verdict::Retry(r);
            }
        }
        verdict
    }

    /// Options of a run that only resolves and surveys a scope: this engine's policy and its shared
    /// deny-policy cache (a snapshot's deny reads serve the live runs after it, and the other way).
    fn resolver_options(&self) -> Options {
        let mut options = Options::new(self.config.policy.clone());
        options.context.deny_cache = self.deny_cache.clone();
        options.settings.deny_read_budget = self.config.deny_read_budget;
        options.settings.lookup_reads_state = false;
        options
    }

    /// Joins (or starts) the next run for the project and waits for its report.
    ///
    /// Scheduled by the [`coalesce::Coalescer`]: at most one run of a project at a time, hints
    /// arriving during a run join the next.
    pub async fn run_coalesced(self: &Arc<Self>, info: ProjectInfo, delay: Duration) -> RunResult {
        self.run_coalesced_in(info, delay, None).await
    }

    async fn run_coalesced_in(
        self: &Arc<Self>,
        info: ProjectInfo,
        delay: Duration,
        budget: Option<Arc<WriteBudget>>,
    ) -> RunResult {
        let engine = self.clone();
        let run: coalesce::Run = Arc::new(move |info, budget| {
            let engine = engine.clone();
            Box::pin(async move { engine.run_once(info, budget).await })
        });
        self.coalescer.run(info, delay, budget, run).await
    }

    /// One run of a project (the coalescer decides when): a remediator over this engine's shared
    /// parts, writing within `budget` when a sweep shares one.
    async fn run_once(&self, info: ProjectInfo, budget: Option<Arc<WriteBudget>>) -> RunResult {
        self.stats.project_runs.fetch_add(1, Ordering::Relaxed);
        let mut options = Options::new(self.config.policy.clone());
        options.settings.apply = true;
        options.settings.troubleshooter = self.config.troubleshooter;
        options.settings.self_email = self.config.self_email.clone();
        options.context.flap = self.flap.clone();
        options.context.deny_cache = self.deny_cache.clone();
        options.context.clock = self.config.clock.clone();
        options.context.state = Some(self.state.clone());
        options.context.budget = budget;
        let remediator =
            Remediator::with_caches(self.gcp.clone(), options, self.run_caches().await);
        Arc::new(remediator.remediate(&info).await)
    }

    /// Sweeps projects and everything under folders or organizations exactly as a sweep message
    /// would be handled (one write budget for the whole sweep, every outcome logged and published),
    /// then settles the node-SA recommendations of every project checked live (enforce only).
    ///
    /// Folders and organizations are read from a Cloud Asset Inventory snapshot first
    /// ([`snapshot::survey`]): projects it shows healthy are reported from it, the rest are checked
    /// live (the only path that writes). Without Cloud Asset access every project is checked live, and
    /// the returned [`Discovery`](snapshot::Discovery) says so. Returns each project's report, how many
    /// recommendations were marked, and how projects were discovered.
    pub async fn sweep(
        self: &Arc<Self>,
        projects: &[String],
        roots: &[ResourceRef],
    ) -> Result<(Vec<RunResult>, usize, snapshot::Discovery), ApiError> {
        self.sweep_in(projects, roots, &sweep_hint(), None, false)
            .await
    }

    /// The sweep driver: [`Self::sweep`] for a `hint` (a sweep request's, or the engine's own),
    /// `redelivered` when a failed run's message comes back (its transient failures are not
    /// announced then).
    async fn sweep_in(
        self: &Arc<Self>,
        projects: &[String],
        roots: &[ResourceRef],
        hint: &Hint,
        trace_id: Option<&str>,
        redelivered: bool,
    ) -> Result<(Vec<RunResult>, usize, snapshot::Discovery), ApiError> {
        let snapshot::Discovered {
            live: infos,
            failures,
            reports: from_snapshot,
            discovery,
        } = self.discover(projects, roots).await?;
        for f in &failures {
            tracing::error!(project = %f.project_id, error = ?f.error, "project cannot be swept");
        }
        let budget = Some(WriteBudget::new(
            self.config.policy.limits.max_writes_per_run,
        ));
        let projects = sweep::SweepProject::discovered(infos, from_snapshot);
        let mut planner_options = self.resolver_options();
        // Every project at once: the client's rate limits pace the calls.
        planner_options.settings.concurrency = projects.len().max(1);
        let planner = Remediator::new(self.gcp.clone(), planner_options);
        let settle = self.config.policy.mode == Mode::Enforce;
        let mut reports: Vec<RunResult> = Vec::new();
        let marked = sweep::SweepDriver::new(&planner, settle)
            .drive(
                projects,
                roots,
                |info| self.run_coalesced_in(info, Duration::ZERO, budget.clone()),
                |report| {
                    reports.push(report);
                    Ok::<(), std::convert::Infallible>(())
                },
            )
            .await
            .unwrap_or_else(|never| match never {});
        reports.extend(failures.into_iter().map(Arc::new));
        for report in &reports {
            self.conclude(report, hint, trace_id, self.config.clock.now(), redelivered)
                .await;
        }
        reports.sort_by(|a, b| a.project_id.cmp(&b.project_id));
        self.log_ledger_totals(reports.iter().map(|r| r.project_id.as_str()));
        Ok((reports, marked, discovery))
    }

    /// The projects of a sweep to check live, those that cannot be found, how they were discovered,
    /// and the reports of projects a Cloud Asset Inventory snapshot showed healthy
    /// ([`snapshot::discover`]).
    async fn discover(
        &self,
        projects: &[String],
        roots: &[ResourceRef],
    ) -> Result<snapshot::Discovered, ApiError> {
        let resolver = Remediator::new(self.gcp.clone(), self.resolver_options());
        snapshot::discover(&resolver, projects, roots, self.config.asset_inventory).await
    }

    /// Records a report in the project's ledger and publishes what changed (and whatever its
    /// outbox held), marks the recommendation a message named, and turns failures into a verdict.
    /// `redelivered`: the report answers a message Pub/Sub delivers again when asked to retry.
    async fn conclude(
        &self,
        report: &ProjectReport,
        hint: &Hint,
        trace_id: Option<&str>,
        arrived: SystemTime,
        redelivered: bool,
    ) -> Verdict {
        if let Some(e) = &report.error {
            tracing::error!(project = %report.project_id, error = %e, "project check failed");
            return error::error_policy(report);
        }
        let mut verdict = error::error_policy(report);
        // Without a shared store, another instance's restoration is only known from the audit log.
        let recovered = if self.state.info().shared {
            None
        } else {
            match self.recover(report, hint, arrived).await {
                Ok(r) => r,
                Err(e) => {
                    return Verdict::Retry(format!(
                        "cannot tell whether a restoration of ours was notified: {e}"
                    ));
                }
            }
        };
        let report = recovered.as_ref().unwrap_or(report);
        let last_attempt = matches!(
            (hint.evidence.delivery_attempt, self.config.max_delivery_attempts),
            (Some(a), Some(max)) if a >= max
        );
        let occasion = conclude::Occasion {
            hint,
            trace_id,
            failures_retried: redelivered && !last_attempt,
            now: self.config.clock.now(),
        };
        match self.concluder.report(report, &occasion).await {
            Ok(done) => {
                {
                    let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
                    if totals.len() > 200_000 {
                        totals.clear();
                    }
                    totals.insert(
                        report.project_id.clone(),
                        (done.open_problems, done.unpublished.len()),
                    );
                }
                self.stats
                    .notifications
                    .fetch_add(done.published.len() as u64, Ordering::Relaxed);
                for f in report
                    .findings
                    .iter()
                    .filter(|f| f.outcome == Outcome::Restored)
                {
                    self.note_notified(report, f).await;
                }
                let mut unpublished = self.unpublished.lock().unwrap_or_else(|e| e.into_inner());
                unpublished.remove(&format!("ledger:{}", report.project_id));
                for n in &done.published {
                    unpublished.remove(&n.id);
                }
                if !done.unpublished.is_empty() {
                    self.stats
                        .unpublished
                        .fetch_add(done.unpublished.len() as u64, Ordering::Relaxed);
                    if redelivered {
                        verdict = Verdict::Retry(format!(
                            "{} notification(s) of project {} not published: {}",
                            done.unpublished.len(),
                            report.project_id,
                            done.unpublished[0].1
                        ));
                    }
                }
                for (id, why) in done.unpublished {
                    unpublished.insert(id, why);
                }
                if done.open_intents > 0 && redelivered && verdict == Verdict::Ack {
                    verdict = Verdict::Retry(format!(
                        "project {}: a write of another run is not recorded yet (it finishes, or its lease ends, before this is known)",
                        report.project_id
                    ));
                }
            }
            Err(e) => {
                tracing::error!(project = %report.project_id, error = %e, "the outcome cannot be recorded in the state store: nothing was announced");
                self.unpublished
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(format!("ledger:{}", report.project_id), e.to_string());
                verdict = Verdict::Retry(format!(
                    "the state store cannot record project {}: {e}",
                    report.project_id
                ));
            }
        }
        if let Some(rec) = &hint.evidence.recommendation
            && self.config.policy.mode == Mode::Enforce
        {
            recommendation::settle_named(self.gcp.as_ref(), &rec.name, report).await;
        }
        verdict
    }

    /// Notifications of this engine's sweeps that are still unpublished (id, why): a sweep that
    /// leaves any exits 1 and names them. An entry `ledger:PROJECT` is a project whose outcome
    /// could not be recorded at all.
    pub fn unpublished(&self) -> Vec<(String, String)> {
        self.unpublished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Logs one `ledger totals` line for `projects` (the dashboard's open findings and pending
    /// notifications), from what their last conclusions here left.
    pub fn log_ledger_totals<'a>(&self, projects: impl Iterator<Item = &'a str>) {
        let (mut open, mut pending, mut counted) = (0usize, 0usize, 0usize);
        {
            let totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
            for p in projects {
                if let Some((o, n)) = totals.get(p) {
                    open += o;
                    pending += n;
                    counted += 1;
                }
            }
        }
        let ops = &self.state.ops;
        tracing::info!(
            open_findings = open,
            pending_notifications = pending,
            projects = counted,
            state_reads = ops.reads.load(Ordering::Relaxed),
            state_writes = ops.writes.load(Ordering::Relaxed),
            "ledger totals"
        );
    }

    /// Where the state is kept, and whether every instance shares it.
    pub fn state_info(&self) -> crate::ports::StoreInfo {
        self.state.info()
    }

    /// The shared state (store operation counters, the channels' de-duplication).
    pub fn state(&self) -> &Arc<shared::SharedState> {
        &self.state
    }

    /// Publishes what earlier runs left in the outboxes of every project (at start-up): a
    /// notification recorded by a process that died, or whose publication failed, goes out now.
    /// Projects with a write intent or an unannounced restoration are run again, so their live
    /// state decides. Returns how many notifications were published.
    pub async fn drain(self: &Arc<Self>) -> Result<usize, crate::ports::StateError> {
        let projects = self.state.pending_projects().await?;
        let mut published = 0;
        for project in projects {
            let done = self
                .concluder
                .drain(&project, self.config.clock.now())
                .await?;
            published += done.published.len();
            self.stats
                .notifications
                .fetch_add(done.published.len() as u64, Ordering::Relaxed);
            if done.unsettled_writes {
                match self.project(&project).await {
                    Ok(info) => {
                        let report = self.run_coalesced(info, Duration::ZERO).await;
                        let hint = sweep_hint();
                        let done = self
                            .conclude(&report, &hint, None, self.config.clock.now(), false)
                            .await;
                        if let Verdict::Retry(why) = done {
                            tracing::warn!(%project, %why, "pending work of an earlier run not finished at start-up");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%project, error = %e, "a project with pending work of an earlier run cannot be looked up");
                    }
                }
            }
        }
        if published > 0 {
            tracing::info!(
                published,
                "notifications left by earlier runs published at start-up"
            );
        }
        Ok(published)
    }

    /// Remembers that this instance notified a restoration of a binding (a later stale hint about it
    /// then needs no audit-log read).
    async fn note_notified(&self, report: &ProjectReport, finding: &FindingReport) {
        if let (Some(role), Some(member)) = (&finding.finding.role, &finding.finding.principal) {
            let mut seen = self.notified.lock().await;
            if seen.len() > 100_000 {
                seen.clear();
            }
            seen.insert(
                (report.project_id.clone(), role.clone(), member.clone()),
                Instant::now(),
            );
        }
    }

    /// The outbox: a removal hint whose run found the binding healthy, with no write of its own, may
    /// be the redelivery of a message whose restoration was made (by this or another instance, which
    /// may have died or failed to publish) but never notified. Cloud Audit Logs record our writes with
    /// the etag they produced, so the `restored` notification is rebuilt with the same id (consumers
    /// de-duplicate on it). Returns the report with those findings restored, if any.
    async fn recover(
        &self,
        report: &ProjectReport,
        hint: &Hint,
        arrived: SystemTime,
    ) -> Result<Option<ProjectReport>, ApiError> {
        let (Some(me), Some(since)) = (
            self.config.self_email.as_deref(),
            hint.evidence.log_timestamp.as_deref(),
        ) else {
            return Ok(None);
        };
        if self.config.policy.mode != Mode::Enforce
            || !hint.is_removal
            || !report.actions.is_empty()
        {
            return Ok(None);
        }
        // A restoration whose notification was lost left its message unacknowledged, so that message
        // comes back as a redelivery. A first delivery (Pub/Sub says attempt 1, as it does with the
        // dead-letter policy Terraform sets) was never handed to an instance that could have died
        // after writing: there is nothing of ours to recover, and the audit log is not read. Without
        // the attempt number (no dead-letter policy, the pull job) every such hint is checked.
        if hint.evidence.delivery_attempt == Some(1) {
            return Ok(None);
        }
        let window = Duration::from_secs(u64::from(self.config.policy.limits.window_minutes) * 60);
        let candidates: Vec<usize> = {
            let seen = self.notified.lock().await;
            report
                .findings
                .iter()
                .enumerate()
                .filter(|(_, f)| f.outcome == Outcome::Healthy)
                // Only the principals the removal named: the rest were never broken by this event.
                .filter(|(_, f)| {
                    f.finding
                        .principal
                        .as_ref()
                        .is_some_and(|p| hint.evidence.removed.iter().any(|(_, m)| m == p))
                })
                .filter_map(|(i, f)| {
                    let key = (
                        report.project_id.clone(),
                        f.finding.role.clone()?,
                        f.finding.principal.clone()?,
                    );
                    let fresh = seen.get(&key).is_some_and(|at| at.elapsed() < window);
                    (!fresh).then_some(i)
                })
                .collect()
        };
        if candidates.is_empty() {
            return Ok(None);
        }
        let Ok(project) = crate::domain::iam::ProjectId::parse(&report.project_id) else {
            return Ok(None);
        };
        let since_us = crate::domain::condition::parse_rfc3339(since);
        let cached = match since_us {
            Some(s) => self
                .recoveries
                .lock()
                .await
                .get(&report.project_id)
                .and_then(|r| {
                    let covered = r.at.elapsed() < window
                        && r.since_us <= s
                        && s <= r.arrived_us
                        && candidates.iter().all(|&i| {
                            report.findings[i]
                                .finding
                                .principal
                                .as_ref()
                                .is_some_and(|p| r.healthy.contains(p))
                        });
                    covered.then(|| r.own.clone())
                }),
            None => None,
        };
        let own = match cached {
            Some(own) => own,
            None => {
                let own = match self.gcp.own_restorations(&project, me, since).await {
                    Ok(own) => Arc::new(own),
                    Err(e) if e.is_transient() => return Err(e),
                    Err(e) => {
                        tracing::warn!(project = %report.project_id, error = %e, "cannot read our own restorations from Cloud Audit Logs: a lost notification cannot be recovered");
                        return Ok(None);
                    }
                };
                if let Some(since_us) = since_us {
                    let arrived_us = arrived
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_micros() as i128);
                    let healthy = report
                        .findings
                        .iter()
                        .filter(|f| f.outcome == Outcome::Healthy)
                        .filter_map(|f| f.finding.principal.clone())
                        .collect();
                    let mut recoveries = self.recoveries.lock().await;
                    if recoveries.len() > 100_000 {
                        recoveries.clear();
                    }
                    recoveries.insert(
                        report.project_id.clone(),
                        RecoveryRead {
                            since_us,
                            arrived_us,
                            healthy,
                            own: own.clone(),
                            at: Instant::now(),
                        },
                    );
                }
                own
            }
        };
        let mut out = report.clone();
        let mut any = false;
        for i in candidates {
            let f = &mut out.findings[i];
            let (Some(role), Some(member)) = (f.finding.role.clone(), f.finding.principal.clone())
            else {
                continue;
            };
            // Newest first: the write that restored it after the removal.
            // (A reused read may hold restorations from before this removal: those do not count.)
            let after_removal = |r: &crate::ports::OwnRestoration| match since_us {
                Some(s) => {
                    crate::domain::condition::parse_rfc3339(&r.timestamp).is_none_or(|t| t >= s)
                }
                None => true,
            };
            let Some(r) = own
                .iter()
                .find(|r| r.role == role && r.member == member && after_removal(r))
            else {
                continue;
            };
            let action = crate::domain::plan::Action::Grant { role, member };
            out.actions.push(crate::domain::report::ActionReport {
                action: action.clone(),
                outcome: Outcome::Restored,
                etag_before: None,
                etag_after: r.etag_after.clone(),
                attempts: 1,
                error: None,
            });
            f.decision = crate::domain::plan::Decision::Restore { action };
            f.outcome = Outcome::Restored;
            any = true;
            tracing::info!(project = %report.project_id, requirement = %f.finding.requirement, "a restoration of ours found in the audit log without its notification");
        }
        Ok(any.then_some(out))
    }
}

/// The hint of a sweep run by the engine itself (`job --sweep`, the start-up drain).
fn sweep_hint() -> Hint {
    Hint {
        scope: Scope::Configured,
        requirements: Vec::new(),
        node_service_accounts: Vec::new(),
        is_removal: false,
        deny_policies_changed: false,
        evidence: intake::Evidence {
            source: intake::Source::Sweep,
            actor: None,
            tool: None,
            method: None,
            insert_id: None,
            log_timestamp: None,
            recommendation: None,
            message_id: None,
            removed: Vec::new(),
            delivery_attempt: None,
        },
    }
}

/// The delivery handling a message: it publishes its verdict to deliveries of the same message that
/// arrive meanwhile, and leaves the in-flight table when done (or dropped, for example cancelled).
struct Leader {
    engine: Arc<Engine>,
    id: String,
    tx: tokio::sync::watch::Sender<Option<Verdict>>,
}

impl Leader {
    fn finish(&self, verdict: Verdict) {
        self.tx.send_replace(Some(verdict));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.engine
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}
