//! What the remediator reads beyond allow policies, each in its own function: deny policies of the
//! project and its ancestors, the effective `iam.automaticIamGrantsForDefaultServiceAccounts` (only
//! to explain a Compute Engine default account that lacks or is denied its permissions), and Cloud
//! Identity memberships (only for groups that would settle an `unknown` verdict, cached per run). A
//! caller that may not read deny policies or Cloud Identity is told once per run; its verdicts say
//! what could not be read.
//!
//! **Deny policies and Google's IAM v2 quota** (5 reads per consumer project per minute). Every
//! attachment point (the project, its folders, the organization) is read through the process-wide
//! [`DenyPolicyCache`](crate::engine::deny_cache::DenyPolicyCache): a read younger than
//! `limits.deny_policy_max_age_minutes` is used, and only a missing or older entry costs a read.
//! Ancestors are also kept per run (with any refusal, said once). When the client has no turn for a
//! read (`serve` and `job`: none free now; `scan` and `explain`: their budget spent) the adapter
//! answers at once that the quota is spent, and those deny policies are *not read*, exactly like
//! deny policies the caller may not read: a verdict that would be `ok` is `incomplete` and names the
//! attachment point and the quota, a missing binding is still restored (a deny rule can only take
//! access away, and a grant that a deny rule blocks changes nothing). Who gets the budget first: in
//! a sweep, its plan ([`crate::engine::deny_plan`]: the organization, folders by the projects with
//! clusters beneath them, then projects; never-read points before old ones), made beside the
//! sweep's runs and polled first; elsewhere folders and organizations (few, shared by every project
//! beneath them, cached), because a read of a project's own deny policies leaves the last slot of
//! each minute to them (the adapter's reserve).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Cache, OwnDenyRead, Unreadable, Verifier, cell, forget};
use crate::domain::deny::DenyPolicy;
use crate::domain::evaluate::{self, Finding, Status};
use crate::domain::iam::{ResourceRef, ServiceAccountEmail};
use crate::domain::state::{
    AUTOMATIC_GRANTS_CONSTRAINT, AccessFacts, OrgPolicyFact, ProjectState, RoleCatalog,
};
use crate::engine::deny_plan::{self, PlanOutcome, PlanProject, Point};
use crate::ports::{ApiError, ProjectInfo};

/// Per-run caches of the access reads.
#[derive(Default)]
pub struct AccessCaches {
    deny: Cache<String, Result<Vec<DenyPolicy>, Unreadable>>,
    members: Cache<(String, String), Option<bool>>,
    deny_warned: AtomicBool,
    identity_unavailable: AtomicBool,
}

impl Verifier<'_> {
    /// The deny policies of the project and of its folders and organization, all through the
    /// process's cache (ancestors through the run's too). A transient failure fails the read (the run
    /// is retried); a refusal or a spent IAM v2 quota is recorded in `deny_unreadable` and said once
    /// per run. Also says whether every deny policy not read was left unread by the quota.
    ///
    /// `own_deny` is a read of the project's own deny policies already made (read ahead), used
    /// unless the process's cache holds a younger one. In a sweep that keeps a deny-read order, the
    /// reads wait for the project's turn and are made one after another, the ancestors outermost
    /// first and then the project's own; otherwise all at once.
    pub(in crate::engine) async fn read_access(
        &self,
        info: &ProjectInfo,
        chain: &[ResourceRef],
        own_deny: Option<OwnDenyRead>,
    ) -> Result<(AccessFacts, bool), ApiError> {
        // A sweep's plan of reads goes first ([`Self::plan_deny_reads`]).
        self.options.context.deny_cache.after_plan().await;
        let mut facts = AccessFacts::default();
        let points: Vec<String> = std::iter::once(format!("projects/{}", info.project_number))
            .chain(chain.iter().map(ResourceRef::to_string))
            .collect();
        let own = async {
            match own_deny {
                Some(read) => self.use_own_deny_read(&points[0], read).await,
                None => self.fresh_deny_policies(&points[0]).await,
            }
        };
        let ancestors = futures::future::join_all(
            points[1..]
                .iter()
                .map(|point| self.cached_deny_policies(point)),
        );
        let (own, ancestors) = tokio::join!(own, ancestors);
        // The answers are taken in the points' order.
        let mut quota_only = true;
        let results = std::iter::once(own).chain(ancestors);
        for (point, result) in points.into_iter().zip(results) {
            match result {
                Ok(mut policies) => facts.deny_policies.append(&mut policies),
                Err(e) if e.transient => {
                    return Err(ApiError::Transport {
                        api: crate::ports::Api::Iam,
                        method: "policies.listPolicies",
                        message: e.message,
                    });
                }
                Err(e) => {
                    self.deny_not_read(&point, &e);
                    quota_only &= e.quota;
                    facts
                        .deny_unreadable
                        .push(format!("the deny policies of {point} ({})", e.message));
                }
            }
        }
        Ok((facts, quota_only))
    }

    /// Says, once per run, that deny policies were not read and what that does to verdicts.
    pub(in crate::engine) fn deny_not_read(&self, point: &str, e: &Unreadable) {
        if self.caches.access.deny_warned.swap(true, Ordering::Relaxed) {
            return;
        }
        if e.quota {
            tracing::warn!(
                attachment = %point,
                error = %e.message,
                "IAM deny policies not read: the IAM v2 read quota is spent; accounts granted everything are ok with a deny check naming what was not read (ok*), missing bindings are still restored"
            );
        } else {
            tracing::warn!(
                attachment = %point,
                error = %e.message,
                "cannot read IAM deny policies (iam.denypolicies.list): accounts granted everything are ok with a deny check naming what was not read (ok*)"
            );
        }
    }

    /// The longest a deny-policy read is used.
    fn deny_max_age(&self) -> Duration {
        Duration::from_secs(
            60 * u64::from(
                self.options
                    .settings
                    .policy
                    .limits
                    .deny_policy_max_age_minutes
                    .max(1),
            ),
        )
    }

    /// The deny policies of `point` through the process's cache: a fresh-enough read, else a read
    /// now (never a wait for the IAM v2 quota).
    pub(super) async fn fresh_deny_policies(
        &self,
        point: &str,
    ) -> Result<Vec<DenyPolicy>, Unreadable> {
        self.options
            .context
            .deny_cache
            .get_or_read(point, self.deny_max_age(), || {
                self.gcp.list_deny_policies(point)
            })
            .await
            .map_err(Unreadable::from)
    }

    /// A read ahead of the project's own deny policies, through the process's cache under the
    /// project's number (a younger entry there wins).
    async fn use_own_deny_read(
        &self,
        point: &str,
        (started, result): OwnDenyRead,
    ) -> Result<Vec<DenyPolicy>, Unreadable> {
        self.options
            .context
            .deny_cache
            .get_or_use(point, self.deny_max_age(), started, result)
            .await
            .map_err(Unreadable::from)
    }

    /// Keeps a read ahead of the project's own deny policies that its run did not need (no
    /// clusters) for later runs of the process.
    pub(super) async fn keep_own_deny_read(&self, info: &ProjectInfo, read: OwnDenyRead) {
        let point = format!("projects/{}", info.project_number);
        let _ = self.use_own_deny_read(&point, read).await;
    }

    /// An ancestor's deny policies through the run's cache (one answer per run, a refusal included)
    /// over the process's. A transient failure or a spent quota is forgotten: the next project of the
    /// run asks again.
    pub(super) async fn cached_deny_policies(
        &self,
        point: &str,
    ) -> Result<Vec<DenyPolicy>, Unreadable> {
        let key = point.to_owned();
        let c = cell(&self.caches.access.deny, &key).await;
        let result = c
            .get_or_init(|| self.fresh_deny_policies(point))
            .await
            .clone();
        if result.as_ref().is_err_and(Unreadable::retry_later) {
            forget(&self.caches.access.deny, &key).await;
        }
        result
    }

    /// Resolves, through Cloud Identity, the groups that would settle an `unknown` verdict of a node
    /// account. Returns true when something new was learnt (evaluate again).
    pub(super) async fn resolve_groups(
        &self,
        state: &mut ProjectState,
        catalog: &RoleCatalog,
        findings: &[Finding],
    ) -> bool {
        let mut learnt = false;
        for f in findings.iter().filter(|f| {
            f.status == Status::Unknown
                || f.denied_by.iter().any(|b| b.uncertain.is_some())
                || (f.status == Status::Missing && !f.unknown_permissions.is_empty())
        }) {
            if self
                .caches
                .access
                .identity_unavailable
                .load(Ordering::Relaxed)
            {
                return learnt;
            }
            let Some(email) = f
                .principal
                .as_ref()
                .and_then(|m| m.as_str().strip_prefix("serviceAccount:"))
                .and_then(|e| ServiceAccountEmail::parse(e).ok())
            else {
                continue;
            };
            let mut wanted = f.unknown_permissions.clone();
            wanted.extend(f.denied_by.iter().map(|b| b.permission.clone()));
            for group in evaluate::groups_to_resolve(state, catalog, &email, &wanted) {
                let member = email.as_str().to_ascii_lowercase();
                if let Some(answer) = self.membership(&group, &member).await {
                    state.access.memberships.insert((group, member), answer);
                    learnt = true;
                }
            }
        }
        learnt
    }

    async fn membership(&self, group: &str, member: &str) -> Option<bool> {
        let key = (group.to_owned(), member.to_owned());
        let c = cell(&self.caches.access.members, &key).await;
        let answer = *c
            .get_or_init(|| async {
                match self.gcp.is_transitive_member(group, member).await {
                    Ok(m) => Some(m),
                    Err(e) => {
                        if !e.is_transient()
                            && !self
                                .caches
                                .access
                                .identity_unavailable
                                .swap(true, Ordering::Relaxed)
                        {
                            tracing::warn!(
                                error = %e,
                                "cannot check group membership through Cloud Identity: group grants fall back to the Policy Troubleshooter (--troubleshooter) or stay unknown"
                            );
                        }
                        None
                    }
                }
            })
            .await;
        if answer.is_none() {
            forget(&self.caches.access.members, &key).await;
        }
        answer
    }

    /// Reads the effective `iam.automaticIamGrantsForDefaultServiceAccounts` when the Compute Engine
    /// default account lacks (or is denied) its permissions, so the finding can name the cause.
    /// Returns true when it was read (evaluate again).
    pub(super) async fn read_default_account_cause(
        &self,
        state: &mut ProjectState,
        findings: &[Finding],
    ) -> bool {
        if state.access.automatic_grants != OrgPolicyFact::NotRead {
            return false;
        }
        let default_account = format!(
            "serviceAccount:{}",
            ServiceAccountEmail::compute_default(&state.project_number)
        );
        let needed = findings.iter().any(|f| {
            f.requirement == crate::domain::requirements::RequirementId::NodeSaPermissions
                && matches!(f.status, Status::Missing | Status::Denied)
                && f.principal
                    .as_ref()
                    .is_some_and(|p| p.as_str() == default_account)
        });
        if !needed {
            return false;
        }
        let resource = format!("projects/{}", state.project_id);
        state.access.automatic_grants = match self
            .gcp
            .boolean_constraint_enforced(&resource, AUTOMATIC_GRANTS_CONSTRAINT)
            .await
        {
            Ok(true) => OrgPolicyFact::Enforced,
            Ok(false) => OrgPolicyFact::NotEnforced,
            Err(e) => {
                tracing::debug!(error = %e, "effective org policy unreadable");
                OrgPolicyFact::Unreadable(e.to_string())
            }
        };
        true
    }
}

impl<'a> Verifier<'a> {
    /// Plans a sweep's deny-policy reads ([`deny_plan`]) and returns the reads its IAM v2 budget
    /// allows, to be run beside (and polled before) the sweep's projects: their first poll takes the
    /// budget and holds each point's cache entry, so a project that needs a planned point waits for
    /// its read, and a point left out finds the quota spent (its node accounts are `ok` with
    /// `deny_check`). Without a budget (`serve`, `job --subscription`) the plan takes the turns
    /// free now and never waits.
    pub(crate) async fn plan_deny_reads(
        self,
        projects: &[PlanProject],
    ) -> impl std::future::Future<Output = PlanOutcome> + use<'a> {
        // Until its reads are made, no run of this process reads deny policies: the plan's reads
        // take the IAM v2 budget first, whatever the runs beside it do.
        let planning = self.options.context.deny_cache.plan_lock().await;
        let max_age = self.deny_max_age();
        // A project's own deny policies read ahead while it was looked up are its run's to use.
        let read_ahead: std::collections::HashSet<&str> = {
            let prefetched = self.prefetched.lock().expect("prefetch lock");
            projects
                .iter()
                .filter(|p| {
                    prefetched
                        .get(&p.project)
                        .is_some_and(|own| own.deny.is_some())
                })
                .map(|p| p.point.as_str())
                .collect()
        };
        let mut found = deny_plan::points(projects);
        found.retain(|(name, _, _)| !read_ahead.contains(name.as_str()));
        let known = futures::future::join_all(
            found
                .iter()
                .map(|(name, _, _)| self.options.context.deny_cache.known(name, max_age)),
        )
        .await;
        let points: Vec<Point> = found
            .into_iter()
            .zip(known)
            .map(|((name, tier, gke_projects), known)| Point {
                name,
                tier,
                gke_projects,
                known,
            })
            .collect();
        let all = points.len();
        let planned = deny_plan::order(points);
        let fresh = all - planned.len();
        // With a budget (one-shot runs), one point after another in the plan's order: a point's read
        // is its list and then a get per policy, all within the budget, so a point is read whole or
        // not at all, and the first read the quota refuses ends the plan (nothing later could be
        // read either; a refusal of another kind, no permission there, does not). Without one (the
        // service, whose window refuses at once), all at once.
        let one_by_one = self.options.settings.deny_read_budget.is_some();
        async move {
            let (mut read, mut left) = (0, Vec::new());
            if one_by_one {
                let mut spent = false;
                for p in &planned {
                    if spent {
                        left.push(p.name.clone());
                        continue;
                    }
                    match self.cached_deny_policies(&p.name).await {
                        Ok(_) => read += 1,
                        Err(e) => {
                            spent = e.quota;
                            left.push(p.name.clone());
                        }
                    }
                }
            } else {
                let reads = futures::future::join_all(
                    planned.iter().map(|p| self.cached_deny_policies(&p.name)),
                )
                .await;
                for (p, r) in planned.iter().zip(reads) {
                    match r {
                        Ok(_) => read += 1,
                        Err(_) => left.push(p.name.clone()),
                    }
                }
            }
            let outcome = PlanOutcome {
                points: all,
                fresh,
                read,
                left,
            };
            if all > 0 {
                tracing::info!(
                    attachment_points = outcome.points,
                    fresh = outcome.fresh,
                    read = outcome.read,
                    left = outcome.left.len(),
                    next = outcome.left.first().map(String::as_str).unwrap_or("-"),
                    "deny-policy reads planned"
                );
            }
            drop(planning);
            outcome
        }
    }
}
