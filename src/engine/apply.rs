//! Apply: decides what a project's findings allow (the pure core's plan, the flapping count) and
//! makes those writes alone, each etag-guarded, recorded in the ledger as an intent before and a
//! restoration after, re-read, re-evaluated and re-planned on `409 ABORTED`, within the run's write
//! budget. It never writes anything a plan did not decide.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::flap::FlapSource;
use super::remediate::Core;
use crate::domain::evaluate::Finding;
use crate::domain::iam::{Member, ProjectId, ResourceRef, Role};
use crate::domain::plan::{self, Action, DecideContext, Plan};
use crate::domain::report::{ActionReport, Failure, Outcome};
use crate::domain::state::ProjectState;
use crate::ports::ProjectInfo;

mod intents;

/// A write not made: the binding reached the flapping limit in the shared ledger.
fn escalated_by_ledger(action: &Action) -> ActionReport {
    not_written(
        action,
        Outcome::Escalated,
        Failure::Permanent(
            "restored as often as limits.max_restorations_per_binding allows within the window (counted across every instance sharing the state): not restored again".to_owned(),
        ),
    )
}

/// A write not made: its intent could not be recorded (every limit fails closed).
fn intent_unrecorded(action: &Action, e: &crate::ports::StateError) -> ActionReport {
    not_written(
        action,
        Outcome::Failed,
        Failure::Transient(format!(
            "not written: the state store cannot record the write's intent ({e})"
        )),
    )
}

fn not_written(action: &Action, outcome: Outcome, why: Failure) -> ActionReport {
    ActionReport {
        action: action.clone(),
        outcome,
        etag_before: None,
        etag_after: None,
        attempts: 0,
        error: Some(why),
    }
}

/// How many `setIamPolicy` writes a run (a scan, a sweep, a job) may still make.
#[derive(Debug)]
pub struct WriteBudget {
    used: AtomicU32,
    max: u32,
}

impl WriteBudget {
    /// A budget of `max` writes.
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU32::new(0),
            max,
        })
    }

    /// Writes made or under way.
    pub fn used(&self) -> u32 {
        self.used.load(Ordering::SeqCst)
    }

    /// Reserves one write, if any is left; the reservation goes back unless [`Reservation::keep`]
    /// says the write happened.
    pub fn reserve(self: &Arc<Self>) -> Option<Reservation> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Reservation {
                budget: self.clone(),
                kept: false,
            })
    }
}

/// One reserved write (RAII): returned to the budget when dropped without [`Reservation::keep`].
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<WriteBudget>,
    kept: bool,
}

impl Reservation {
    /// The write happened: it stays counted.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            self.budget.used.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The apply stage of one remediator: decides and writes what the plan allows.
#[derive(Clone, Copy)]
pub struct Applier<'a> {
    core: &'a Core,
}

impl<'a> Applier<'a> {
    /// The stage over a remediator's shared parts.
    pub(super) fn new(core: &'a Core) -> Self {
        Self { core }
    }
}

impl std::ops::Deref for Applier<'_> {
    type Target = Core;

    fn deref(&self) -> &Core {
        self.core
    }
}

impl Applier<'_> {
    pub(super) fn decide(&self, findings: &[Finding], state: &ProjectState) -> Plan {
        self.decide_counting(findings, state, 0)
    }

    /// Decides with `held` writes of this project already reserved (they do not count against it).
    fn decide_counting(&self, findings: &[Finding], state: &ProjectState, held: u32) -> Plan {
        let done = self.budget.used().saturating_sub(held);
        let limits = &self.options.settings.policy.limits;
        let ctx = DecideContext {
            policy: &self.options.settings.policy,
            state,
            writes_remaining: limits.max_writes_per_run.saturating_sub(done),
            restorations: &state.restorations,
        };
        plan::decide(findings, &ctx)
    }

    /// Counts the remediator's own restorations within the policy's window (only when a write is
    /// planned): the shared record when it can be read, else what this process made, and says which.
    /// The shared record is read once per project per window, and again only when a planned grant
    /// would reach the limit (other instances may have restored it meanwhile).
    pub(super) async fn read_restorations(
        &self,
        state: &mut ProjectState,
        grants: &[(Role, Member)],
    ) -> FlapSource {
        // A store this instance alone uses counts this instance's restorations only: Cloud Audit
        // Logs stay the record every instance shares.
        let shared = self
            .options
            .context
            .state
            .as_ref()
            .is_some_and(|s| s.info().shared);
        if !shared {
            return self.read_restorations_audit(state, grants).await;
        }
        match self.ledger_counts(&state.project_id, grants).await {
            None => self.read_restorations_audit(state, grants).await,
            Some(Ok((counts, history)))
                if history || self.options.settings.self_email.is_none() =>
            {
                state.restorations = counts;
                FlapSource::Ledger
            }
            Some(Ok((counts, _))) => {
                // Nothing in the ledger yet: restorations made before it existed are only in
                // Cloud Audit Logs (a bootstrap; the larger count of the two decides).
                let source = self.read_restorations_audit(state, grants).await;
                let audit = std::mem::take(&mut state.restorations);
                let mut merged = counts.clone();
                for (k, n) in audit {
                    let e = merged.entry(k).or_insert(0);
                    *e = (*e).max(n);
                }
                let from_audit = merged != counts;
                state.restorations = merged;
                if from_audit {
                    source
                } else {
                    FlapSource::Ledger
                }
            }
            Some(Err(e)) => {
                // The write's intent cannot be recorded either: no write will be made.
                tracing::warn!(project = %state.project_id, error = %e, "the state store cannot be read for the flapping count");
                self.read_restorations_audit(state, grants).await
            }
        }
    }

    /// The flapping count from Cloud Audit Logs and this process's own record.
    async fn read_restorations_audit(
        &self,
        state: &mut ProjectState,
        grants: &[(Role, Member)],
    ) -> FlapSource {
        let window =
            Duration::from_secs(u64::from(self.options.settings.policy.limits.window_minutes) * 60);
        let limit = self
            .options
            .settings
            .policy
            .limits
            .max_restorations_per_binding;
        let ledger = &self.options.context.flap;
        if let Some(counts) = ledger.cached(&state.project_id, window) {
            let far_from_limit = grants.iter().all(|(r, m)| {
                counts
                    .get(&(r.clone(), m.clone()))
                    .copied()
                    .unwrap_or(0)
                    .saturating_add(1)
                    < limit
            });
            if far_from_limit {
                state.restorations = counts;
                return FlapSource::AuditLog;
            }
        }
        let Some(me) = &self.options.settings.self_email else {
            state.restorations = ledger.local(&state.project_id, window);
            return FlapSource::InstanceOnly {
                reason: "the remediator's own identity is unknown (REMEDIATOR_SELF_EMAIL)"
                    .to_owned(),
            };
        };
        match ledger
            .read_shared(
                &self.gcp,
                &state.project_id,
                me,
                window,
                &self.options.context.clock,
            )
            .await
        {
            Ok(counts) => {
                state.restorations = counts;
                FlapSource::AuditLog
            }
            Err(e) => {
                tracing::warn!(
                    project = %state.project_id,
                    error = %e,
                    "cannot read past restorations from Cloud Audit Logs: the flapping limit counts this instance's restorations only"
                );
                state.restorations = ledger.local(&state.project_id, window);
                FlapSource::InstanceOnly {
                    reason: format!("Cloud Audit Logs could not be read: {e}"),
                }
            }
        }
    }

    pub(super) async fn apply(
        &self,
        info: &ProjectInfo,
        state: &mut ProjectState,
        findings: &mut Vec<Finding>,
        plan: &mut Plan,
    ) -> Vec<ActionReport> {
        let mut reports = Vec::new();
        if plan.grants().next().is_some() {
            reports.extend(
                self.apply_grants(&info.project_id, state, findings, plan)
                    .await,
            );
        }
        for action in plan
            .actions
            .iter()
            .filter(|a| !matches!(a, Action::Grant { .. }))
        {
            let intent = [(action.clone(), intents::finding_of(action, findings))];
            match self.begin(&info.project_id, &intent).await {
                Ok(refused) if refused.is_empty() => {}
                Ok(_) => {
                    reports.push(escalated_by_ledger(action));
                    continue;
                }
                Err(e) => {
                    reports.push(intent_unrecorded(action, &e));
                    continue;
                }
            }
            let result = match action {
                Action::EnableService { service } => {
                    self.gcp.enable_service(&info.project_id, service).await
                }
                Action::EnableServiceAccount { email } => {
                    self.gcp.enable_service_account(email).await
                }
                Action::UndeleteServiceAccount { unique_id, .. } => {
                    self.gcp.undelete_service_account(unique_id).await
                }
                Action::Grant { .. } => continue,
            };
            self.finish(&info.project_id, &intent, None, result.is_ok())
                .await;
            reports.push(ActionReport {
                action: action.clone(),
                outcome: if result.is_ok() {
                    Outcome::Restored
                } else {
                    Outcome::Failed
                },
                etag_before: None,
                etag_after: None,
                attempts: 1,
                error: result.err().map(|e| super::error::failure(&e)),
            });
        }
        reports
    }

    /// The grants of the plan, each recorded in the ledger as an intent before the write and as a
    /// restoration after it; a grant whose binding reached the flapping limit meanwhile (another
    /// instance restored it) is not written but escalated.
    async fn apply_grants(
        &self,
        project: &ProjectId,
        state: &mut ProjectState,
        findings: &mut Vec<Finding>,
        plan: &mut Plan,
    ) -> Vec<ActionReport> {
        let intents: Vec<(Action, Option<String>)> = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Grant { .. }))
            .map(|a| (a.clone(), intents::finding_of(a, findings)))
            .collect();
        let refused = match self.begin(project, &intents).await {
            Ok(refused) => refused,
            Err(e) => {
                return intents
                    .iter()
                    .map(|(a, _)| intent_unrecorded(a, &e))
                    .collect();
            }
        };
        if !refused.is_empty() {
            // Nothing was recorded: record the others alone.
            plan.actions.retain(|a| !refused.contains(a));
            let rest: Vec<(Action, Option<String>)> = intents
                .iter()
                .filter(|(a, _)| !refused.contains(a))
                .cloned()
                .collect();
            let mut reports: Vec<ActionReport> = refused.iter().map(escalated_by_ledger).collect();
            if !rest.is_empty() {
                match self.begin(project, &rest).await {
                    Ok(again) if again.is_empty() => {
                        reports.extend(
                            self.write_grants(project, state, findings, plan, &rest)
                                .await,
                        );
                    }
                    Ok(again) => reports.extend(again.iter().map(escalated_by_ledger)),
                    Err(e) => reports.extend(rest.iter().map(|(a, _)| intent_unrecorded(a, &e))),
                }
            }
            return reports;
        }
        self.write_grants(project, state, findings, plan, &intents)
            .await
    }

    /// [`Self::write_policy`], then the intents' outcomes into the ledger.
    async fn write_grants(
        &self,
        project: &ProjectId,
        state: &mut ProjectState,
        findings: &mut Vec<Finding>,
        plan: &mut Plan,
        intents: &[(Action, Option<String>)],
    ) -> Vec<ActionReport> {
        let reports = self.write_policy(project, state, findings, plan).await;
        let made: Vec<(Action, Option<String>)> = intents
            .iter()
            .filter(|(a, _)| {
                reports
                    .iter()
                    .any(|r| &r.action == a && r.outcome == Outcome::Restored)
            })
            .cloned()
            .collect();
        let etag = reports.iter().find_map(|r| r.etag_after.clone());
        let unmade: Vec<(Action, Option<String>)> = intents
            .iter()
            .filter(|i| !made.contains(i))
            .cloned()
            .collect();
        if !made.is_empty() {
            self.finish(project, &made, etag, true).await;
        }
        if !unmade.is_empty() {
            self.finish(project, &unmade, None, false).await;
        }
        reports
    }

    /// One etag-guarded read-modify-write of the project policy for every grant of the plan; on 409
    /// ABORTED: re-read, re-evaluate, re-plan and retry with jittered backoff.
    async fn write_policy(
        &self,
        project: &ProjectId,
        state: &mut ProjectState,
        findings: &mut Vec<Finding>,
        plan: &mut Plan,
    ) -> Vec<ActionReport> {
        let first_grants: Vec<Action> = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Grant { .. }))
            .cloned()
            .collect();
        let etag_before = state.policy.etag.clone();
        let max_attempts = self
            .options
            .settings
            .policy
            .limits
            .max_write_attempts
            .max(1);
        let mut attempt = 0;
        // Held while a write is under way; dropped (returned to the budget) unless the write happened.
        let mut reservation: Option<Reservation> = None;
        let report = |outcome, etag_after: Option<String>, attempts, error: Option<Failure>| {
            first_grants
                .iter()
                .map(|a| ActionReport {
                    action: a.clone(),
                    outcome,
                    etag_before: etag_before.clone(),
                    etag_after: etag_after.clone(),
                    attempts,
                    error: error.clone(),
                })
                .collect::<Vec<_>>()
        };
        loop {
            attempt += 1;
            let mut desired = state.policy.clone();
            let added = plan::apply_grants(&mut desired, plan);
            if added == 0 {
                // Someone else restored it meanwhile (another instance, a person): nothing to
                // write (the reservation goes back) and nothing of ours to announce.
                return report(Outcome::Healthy, state.policy.etag.clone(), attempt, None);
            }
            if reservation.is_none() {
                reservation = self.budget.reserve();
            }
            if reservation.is_none() {
                return report(
                    Outcome::NotAllowed,
                    None,
                    attempt,
                    Some(Failure::Permanent(
                        "the run's write limit (limits.max_writes_per_run) is reached".to_owned(),
                    )),
                );
            }
            match self.gcp.set_project_iam_policy(project, &desired).await {
                Ok(written) => {
                    if let Some(r) = reservation.take() {
                        r.keep();
                    }
                    let grants: Vec<(Role, Member)> =
                        plan.grants().map(|(r, m)| (r.clone(), m.clone())).collect();
                    for (role, member) in &grants {
                        self.options.context.flap.record(project, role, member);
                    }
                    return match self.confirm(project, &grants).await {
                        Ok(()) => report(Outcome::Restored, written.etag, attempt, None),
                        Err(e) => report(Outcome::Failed, written.etag, attempt, Some(e)),
                    };
                }
                Err(e) if e.is_conflict() && attempt < max_attempts => {
                    tracing::info!(%project, attempt, "policy changed concurrently; re-reading and re-planning");
                    tokio::time::sleep(self.options.settings.write_backoff.backoff(attempt)).await;
                    match self
                        .gcp
                        .get_iam_policy(&ResourceRef::Project(project.clone()))
                        .await
                    {
                        Ok(p) => state.policy = p,
                        Err(e) => {
                            return report(
                                Outcome::Failed,
                                None,
                                attempt,
                                Some(super::error::failure(&e)),
                            );
                        }
                    }
                    *findings = super::verify::Verifier::new(self.core)
                        .evaluate(state)
                        .await;
                    // The write reserved for this project is kept for the retry.
                    *plan = self.decide_counting(findings, state, u32::from(reservation.is_some()));
                }
                Err(e) if e.is_conflict() => {
                    return report(
                        Outcome::Failed,
                        None,
                        attempt,
                        Some(Failure::Transient(format!(
                            "gave up after {attempt} read-modify-write attempts: the policy kept changing ({e})"
                        ))),
                    );
                }
                Err(e) => {
                    return report(
                        Outcome::Failed,
                        None,
                        attempt,
                        Some(super::error::failure(&e)),
                    );
                }
            }
        }
    }

    /// Reads the policy back until every grant is visible (IAM is eventually consistent), bounded.
    async fn confirm(&self, project: &ProjectId, grants: &[(Role, Member)]) -> Result<(), Failure> {
        let resource = ResourceRef::Project(project.clone());
        let mut last = String::new();
        for attempt in 0..self.options.settings.write_backoff.max_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.options.settings.write_backoff.backoff(attempt)).await;
            }
            match self.gcp.get_iam_policy(&resource).await {
                Ok(p) if grants.iter().all(|(r, m)| p.grants_unconditionally(r, m)) => {
                    return Ok(());
                }
                Ok(_) => last = "the new binding is not visible yet".to_owned(),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Failure::Transient(format!(
            "write not confirmed by reading the policy back: {last}"
        )))
    }
}
