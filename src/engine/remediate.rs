//! The remediator of one run: discover ([`super::discover`]), verify ([`super::verify`]), apply
//! ([`super::apply`]), composed for one project at a time. Its settings ([`Options`]) and the parts
//! its stages share ([`Core`]: the ports, the run's caches and write budget) live here; what each
//! stage does lives in its own file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::apply::{Applier, WriteBudget};
use super::deny_cache::DenyPolicyCache;
use super::discover::Discoverer;
use super::flap::FlapLedger;
use super::verify::{OwnReads, RunCaches, Verifier};

use crate::domain::evaluate::{self, Finding};
use crate::domain::iam::{Member, Policy, ProjectId, ResourceRef, Role};
use crate::domain::plan::{Action, Decision};
use crate::domain::report::{self, ActionReport, FindingReport, Outcome, ProjectReport};
use crate::domain::requirements::RequirementId;
use crate::domain::rules::{Mode, RemediationPolicy};
use crate::domain::state::{ProjectState, RoleCatalog, RoleLookup};
use crate::ports::{ApiError, Cloud, ProjectInfo, RetryPolicy};

/// The report of a project that could not be read at all.
fn failed_report(info: &ProjectInfo, error: &ApiError) -> ProjectReport {
    ProjectReport {
        project_number: info.project_number.to_string(),
        ..ProjectReport::failed(info.project_id.to_string(), super::error::failure(error))
    }
}

/// What one remediator is given: its plain [`Settings`] and the [`RunContext`] of state it shares
/// with other runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Plain settings (values only).
    pub settings: Settings,
    /// Shared state (caches, ledgers, budget, clock).
    pub context: RunContext,
}

impl Options {
    /// Defaults for a policy ([`Settings::new`]) over a context of this run's own.
    pub fn new(policy: RemediationPolicy) -> Self {
        Self {
            settings: Settings::new(policy),
            context: RunContext::default(),
        }
    }

    /// True if this run writes.
    pub fn writes(&self) -> bool {
        self.settings.writes()
    }
}

/// The plain settings of one remediator: values, compared and copied freely.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The remediation policy.
    pub policy: RemediationPolicy,
    /// Requirements to check.
    pub checks: BTreeSet<RequirementId>,
    /// Whether writes are wanted at all (`scan --apply`); the policy's mode must also be `enforce`.
    pub apply: bool,
    /// Ask the Policy Troubleshooter to settle `unknown` permissions.
    pub troubleshooter: bool,
    /// Projects verified concurrently.
    pub concurrency: usize,
    /// Backoff for write conflicts and write confirmation.
    pub write_backoff: RetryPolicy,
    /// The remediator's own identity: its past restorations are counted from Cloud Audit Logs before
    /// writing (without it, only this process's own restorations count, and reports say so).
    pub self_email: Option<String>,
    /// The IAM v2 reads this one-shot run makes in all, when it has such a budget (`scan`,
    /// `explain`, `job --sweep`): a sweep's plan of deny reads makes at most that many
    /// ([`super::deny_plan`]).
    pub deny_read_budget: Option<u32>,
    /// Projects named to [`Remediator::resolve`] read ahead: their first round, beside the lookup,
    /// the policy and the clusters, also lists their service accounts, reads their own deny policies
    /// and the definitions of [`NODE_SA_USUAL_ROLES`], so a project whose node accounts hold the usual
    /// roles is verified in one round of API latency instead of two. A few of those reads may turn
    /// out unneeded (a project without clusters needs no deny policies), so this is for commands that
    /// name few projects and wait for the answer (`scan --project`, `explain`), not for `serve`,
    /// whose hints from earlier runs do the same without the waste.
    pub read_ahead: bool,
    /// [`Remediator::resolve`] reads a named project's policy and clusters while it looks it up,
    /// for this remediator's own run of it (`scan`, `explain`). Off for a remediator that only
    /// resolves (an engine's sweep, whose runs are another remediator's): the lookup alone.
    pub lookup_reads_state: bool,
}

impl Settings {
    /// Defaults for a policy: every requirement checked except the opt-in Google APIs service agent
    /// (removing `roles/editor` from it is a common hardening) unless the policy restores it.
    pub fn new(policy: RemediationPolicy) -> Self {
        let mut checks: BTreeSet<RequirementId> = RequirementId::ALL
            .into_iter()
            .filter(|r| *r != RequirementId::GoogleApisServiceAgent)
            .collect();
        checks.extend(policy.restore.iter().copied());
        Self {
            policy,
            checks,
            apply: false,
            troubleshooter: false,
            concurrency: 16,
            write_backoff: RetryPolicy {
                max_attempts: 5,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
            },
            self_email: None,
            deny_read_budget: None,
            read_ahead: false,
            lookup_reads_state: true,
        }
    }

    /// True if this run writes.
    pub fn writes(&self) -> bool {
        self.apply && self.policy.mode == Mode::Enforce
    }
}

/// The state one remediator shares with other runs: what every run of an engine (or a whole scan)
/// reads and records through.
#[derive(Clone, Debug, Default)]
pub struct RunContext {
    /// This process's flapping counts (shared by every run of an engine).
    pub flap: Arc<FlapLedger>,
    /// This process's deny-policy reads (shared by every run of an engine or a scan), used while
    /// younger than `limits.deny_policy_max_age_minutes`.
    pub deny_cache: Arc<DenyPolicyCache>,
    /// The write budget to draw from when it is shared (every project of one sweep); else the run
    /// has its own of `limits.max_writes_per_run`.
    pub budget: Option<Arc<WriteBudget>>,
    /// The clock every time of the run is taken from: IAM conditions are evaluated against it, and
    /// tests move it forward.
    pub clock: crate::clock::Clock,
    /// The shared state: the flapping count is read from its ledger, and every write is recorded
    /// there as an intent before it is made and as a restoration after. `None`: this process's
    /// record and Cloud Audit Logs (one-shot commands).
    pub state: Option<Arc<super::shared::SharedState>>,
}

/// The remediator of one run: its stages ([`Discoverer`], [`Verifier`], [`Applier`]) composed
/// for one project at a time over the parts they share.
pub struct Remediator {
    core: Core,
}

/// What the stages of one remediator share: the ports, the settings, the run's caches and write
/// budget, and the first-round reads a lookup started.
pub struct Core {
    pub(super) gcp: Arc<dyn Cloud>,
    pub(super) options: Options,
    pub(super) caches: Arc<RunCaches>,
    pub(super) budget: Arc<WriteBudget>,
    /// A project's first-round reads started while [`Remediator::resolve`] looked the project up,
    /// taken (once) by the project's first read of live state.
    pub(super) prefetched: std::sync::Mutex<HashMap<ProjectId, OwnReads>>,
    /// Names this run's write intents in the ledger.
    pub(super) run: String,
}

impl Remediator {
    /// A remediator over the Google ports.
    pub fn new(gcp: Arc<dyn Cloud>, options: Options) -> Self {
        Self::with_caches(gcp, options, Arc::default())
    }

    /// A remediator reusing caches from earlier runs.
    pub fn with_caches(gcp: Arc<dyn Cloud>, options: Options, caches: Arc<RunCaches>) -> Self {
        let budget =
            options.context.budget.clone().unwrap_or_else(|| {
                WriteBudget::new(options.settings.policy.limits.max_writes_per_run)
            });
        Self {
            core: Core {
                gcp,
                options,
                caches,
                budget,
                prefetched: std::sync::Mutex::default(),
                run: format!("r{:016x}", rand::random::<u64>()),
            },
        }
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.core.options
    }

    /// The discover stage.
    pub fn discoverer(&self) -> Discoverer<'_> {
        Discoverer::new(&self.core)
    }

    /// The verify stage.
    pub fn verifier(&self) -> Verifier<'_> {
        Verifier::new(&self.core)
    }

    /// The apply stage.
    pub fn applier(&self) -> Applier<'_> {
        Applier::new(&self.core)
    }

    /// Resolves `--project`, `--folder` and `--organization` into projects
    /// ([`Discoverer::resolve`]).
    pub async fn resolve(
        &self,
        projects: &[String],
        roots: &[ResourceRef],
    ) -> Result<(Vec<ProjectInfo>, Vec<ProjectReport>), ApiError> {
        self.discoverer().resolve(projects, roots).await
    }

    /// Reads live state for a project ([`Verifier::read_state`]).
    pub async fn read_state(&self, info: &ProjectInfo) -> Result<ProjectState, ApiError> {
        self.verifier().read_state(info).await
    }

    /// Evaluates state ([`Verifier::evaluate`]).
    pub async fn evaluate(&self, state: &mut ProjectState) -> Vec<Finding> {
        self.verifier().evaluate(state).await
    }

    /// The definitions of `roles` through this run's cache ([`Verifier::role_catalog`]).
    pub async fn role_catalog(&self, roles: BTreeSet<Role>) -> RoleCatalog {
        self.verifier().role_catalog(roles).await
    }

    /// Plans a sweep's deny-policy reads ([`Verifier::plan_deny_reads`]).
    pub(crate) async fn plan_deny_reads<'s>(
        &'s self,
        projects: &[super::deny_plan::PlanProject],
    ) -> impl std::future::Future<Output = super::deny_plan::PlanOutcome> + use<'s> {
        self.verifier().plan_deny_reads(projects).await
    }

    /// Verify, decide and (when enabled) restore one project.
    ///
    /// When an account was undeleted or enabled, or an API enabled, what the first pass concluded
    /// about the permissions depending on it is stale: the project is verified again (once) and the
    /// report is the second pass's, keeping the first pass's restorations.
    pub async fn remediate(&self, info: &ProjectInfo) -> ProjectReport {
        let first = self.pass(info).await;
        let revived = first
            .actions
            .iter()
            .any(|a| a.outcome == Outcome::Restored && !matches!(a.action, Action::Grant { .. }));
        if !revived || first.error.is_some() {
            return first;
        }
        let mut second = self.pass(info).await;
        if second.error.is_some() {
            return first;
        }
        for f in &mut second.findings {
            let earlier = first.findings.iter().find(|e| {
                e.finding.requirement == f.finding.requirement
                    && e.finding.principal == f.finding.principal
            });
            if let Some(e) = earlier
                && e.outcome == Outcome::Restored
                && f.outcome == Outcome::Healthy
            {
                f.decision = e.decision.clone();
                f.outcome = Outcome::Restored;
            }
        }
        let mut actions = first.actions;
        actions.append(&mut second.actions);
        second.actions = actions;
        second.flap_guard = second.flap_guard.or(first.flap_guard);
        second
    }

    /// One verify -> decide -> apply pass.
    async fn pass(&self, info: &ProjectInfo) -> ProjectReport {
        let mut state = match self.verifier().read_state(info).await {
            Ok(s) => s,
            Err(e) => return failed_report(info, &e),
        };
        let mut findings = self.verifier().evaluate(&mut state).await;
        let mut plan = self.applier().decide(&findings, &state);
        let mut flap_guard = None;
        if self.core.options.writes() && plan.grants().next().is_some() {
            let grants: Vec<(Role, Member)> =
                plan.grants().map(|(r, m)| (r.clone(), m.clone())).collect();
            flap_guard = Some(self.applier().read_restorations(&mut state, &grants).await);
            plan = self.applier().decide(&findings, &state);
        }
        let mut actions = Vec::new();
        if !plan.is_empty() {
            if self.core.options.writes() {
                actions = self
                    .applier()
                    .apply(info, &mut state, &mut findings, &mut plan)
                    .await;
            } else {
                actions = plan
                    .actions
                    .iter()
                    .map(|a| ActionReport {
                        action: a.clone(),
                        outcome: Outcome::WouldRestore,
                        etag_before: state.policy.etag.clone(),
                        etag_after: None,
                        attempts: 0,
                        error: None,
                    })
                    .collect();
            }
        }
        let outcomes: BTreeMap<&Action, Outcome> =
            actions.iter().map(|a| (&a.action, a.outcome)).collect();
        let reports = findings
            .iter()
            .zip(&plan.decisions)
            .map(|(finding, decision)| FindingReport {
                finding: finding.clone(),
                decision: decision.clone(),
                outcome: match decision {
                    Decision::Healthy => report::healthy_outcome(
                        finding,
                        state.read_at,
                        self.core.options.settings.policy.limits.expiry_warning_days,
                    ),
                    Decision::Restore { action } => {
                        outcomes.get(action).copied().unwrap_or(Outcome::Failed)
                    }
                    Decision::NotAllowed { .. } | Decision::Blocked { .. } => Outcome::NotAllowed,
                    Decision::NeedsReview { .. } => Outcome::Unknown,
                    Decision::Escalate { .. } => Outcome::Escalated,
                },
            })
            .collect();
        ProjectReport {
            project_id: info.project_id.to_string(),
            project_number: info.project_number.to_string(),
            gke: evaluate::is_gke_project(&state),
            folders: state.folders.clone(),
            policy_etag: actions
                .iter()
                .rev()
                .find_map(|a| a.etag_after.clone())
                .or_else(|| state.policy.etag.clone()),
            flap_guard,
            findings: reports,
            actions,
            error: None,
        }
    }
}

/// What a Cloud Asset Inventory sweep ([`super::snapshot`]) shares with the per-project path of the
/// same run: the Google ports, role definitions and the policies of ancestors above the snapshot's
/// scope, each read at most once per run whichever path asks first.
impl Remediator {
    /// The Google ports.
    pub(crate) fn cloud(&self) -> &Arc<dyn Cloud> {
        &self.core.gcp
    }

    /// A role definition through the run's cache.
    pub(crate) async fn cached_role(&self, role: &Role) -> RoleLookup {
        self.verifier().role(role).await
    }

    /// An ancestor's policy through the run's cache, or why it cannot be read.
    pub(crate) async fn cached_ancestor_policy(
        &self,
        resource: &ResourceRef,
    ) -> Result<Policy, String> {
        self.verifier()
            .ancestor_policy(resource)
            .await
            .map_err(|e| e.message)
    }
}
