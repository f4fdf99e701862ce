//! Conclude: a project run's report -> the ledger -> the outbox -> the notifications topic.
//!
//! In one commit of the project's ledger: every finding is compared with what the ledger knew and
//! only transitions become notifications ([`ProjectLedger::observe`]); every restoration of ours
//! not yet announced (this run's, or one whose run died after its write) becomes one `restored`;
//! a write intent whose run died before recording its outcome is resolved from the live state this
//! run read; and the outbox entries no live claim holds are claimed. Then the claimed notifications
//! are published and a second commit (at the version the first produced: no read) takes them out.
//! A notification whose publication failed stays in the outbox for whoever runs the project next.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::ledger::{self, Announce, Cause, Intent, ProjectLedger, Restoration, Rules};
use super::shared::SharedState;
use crate::domain::plan::Decision;
use crate::domain::report::{Failure, FindingReport, Outcome, ProjectReport};
use crate::domain::rules::Mode;
use crate::intake::Hint;
use crate::notify::{self, Evidence, Notification};
use crate::ports::{NotificationSink, StateError};

/// What concluding a report came to.
#[derive(Debug, Default)]
pub struct Concluded {
    /// Notifications published now (this project's, including any left by earlier runs).
    pub published: Vec<Notification>,
    /// Ids of notifications still in the outbox after this attempt, with why.
    pub unpublished: Vec<(String, String)>,
    /// Writes another run recorded the intent of and has not finished (nor died, as far as the
    /// lease tells): whether they were made is not known yet, so neither is what to announce.
    pub open_intents: usize,
    /// Problems open in the project's ledger after this run.
    pub open_problems: usize,
    /// The ledger holds writes only a run of the project can settle (a drain's answer).
    pub unsettled_writes: bool,
}

/// Settings of the conclude stage.
#[derive(Clone, Debug)]
pub struct ConcludeSettings {
    /// The remediation mode in force.
    pub mode: Mode,
    /// Announce a finding's first `healthy` too.
    pub notify_healthy: bool,
    /// The flapping window: restorations older than it are forgotten once announced.
    pub window: Duration,
    /// How often open problems are re-announced; `None`: never.
    pub reminder: Option<Duration>,
}

/// What one conclusion is about besides the report.
pub struct Occasion<'a> {
    /// The hint whose run it was (a sweep's own for sweeps).
    pub hint: &'a Hint,
    /// The trace of the request, if any.
    pub trace_id: Option<&'a str>,
    /// A transient failure will be retried by a redelivery: not announced.
    pub failures_retried: bool,
    /// Now.
    pub now: SystemTime,
}

/// The conclude stage: one per engine.
pub struct Conclude {
    state: Arc<SharedState>,
    publisher: Option<Arc<dyn NotificationSink>>,
    settings: ConcludeSettings,
    /// Names this process's claims.
    instance: String,
    /// Makes every conclusion's claim name unique within the process.
    seq: std::sync::atomic::AtomicU64,
}

impl Conclude {
    /// The stage over a state and a sink (`None`: notifications are only logged, and leave the
    /// outbox as if published).
    pub fn new(
        state: Arc<SharedState>,
        publisher: Option<Arc<dyn NotificationSink>>,
        settings: ConcludeSettings,
        instance: String,
    ) -> Self {
        Self {
            state,
            publisher,
            settings,
            instance,
            seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A name for one conclusion's claims, unique across instances and within this one.
    fn claim_name(&self, now_ms: i64) -> String {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{now_ms}-{n}", self.instance)
    }

    /// Records a report and publishes what changed (and whatever the project's outbox held).
    pub async fn report(
        &self,
        report: &ProjectReport,
        occasion: &Occasion<'_>,
    ) -> Result<Concluded, StateError> {
        let now_ms = crate::clock::epoch_ms(occasion.now);
        let window_ms = crate::clock::span_ms(self.settings.window);
        let run = self.claim_name(now_ms);
        let rules = Rules {
            notify_healthy: self.settings.notify_healthy,
            failures_retried: occasion.failures_retried,
        };
        let snapshot = self.state.load(&report.project_id).await?;
        let (claimed, snapshot) = self
            .state
            .commit(snapshot, |doc| {
                self.record(doc, report, occasion, rules, now_ms);
                doc.prune(now_ms - window_ms);
                doc.claim(&run, now_ms, now_ms + ledger::CLAIM_MS)
            })
            .await?;
        let open_intents = snapshot.ledger.intents.len();
        let open_problems = snapshot.ledger.open_problems();
        let mut done = self.publish(snapshot, &run, claimed).await?;
        done.open_intents = open_intents;
        done.open_problems = open_problems;
        Ok(done)
    }

    /// Publishes whatever a project's outbox holds that no live claim holds (a drain).
    pub async fn drain(&self, project: &str, now: SystemTime) -> Result<Concluded, StateError> {
        let now_ms = crate::clock::epoch_ms(now);
        let run = self.claim_name(now_ms);
        let snapshot = self.state.load(project).await?;
        let (claimed, snapshot) = self
            .state
            .commit(snapshot, |doc| {
                doc.claim(&run, now_ms, now_ms + ledger::CLAIM_MS)
            })
            .await?;
        let unsettled_writes = snapshot.ledger.has_unsettled_writes();
        let mut done = self.publish(snapshot, &run, claimed).await?;
        done.unsettled_writes = unsettled_writes;
        Ok(done)
    }

    async fn publish(
        &self,
        snapshot: super::shared::Snapshot,
        run: &str,
        claimed: Vec<Notification>,
    ) -> Result<Concluded, StateError> {
        let mut out = Concluded::default();
        let mut done = Vec::new();
        for n in claimed {
            tracing::info!(
                project = %n.project_id,
                requirement = %n.requirement,
                principal = n.principal.as_deref().unwrap_or("-"),
                outcome = %n.outcome,
                notification_id = %n.id,
                "finding outcome"
            );
            match &self.publisher {
                None => {
                    done.push(n.id.clone());
                    out.published.push(n);
                }
                Some(p) => match p.publish(&n).await {
                    Ok(_) => {
                        done.push(n.id.clone());
                        out.published.push(n);
                    }
                    Err(e) => {
                        tracing::warn!(notification_id = %n.id, error = %e, "notification not published: it stays in the outbox");
                        out.unpublished.push((n.id.clone(), e.to_string()));
                    }
                },
            }
        }
        // Out of the outbox (and this run's other claims released, so the next run retries them).
        let (_, snapshot) = self
            .state
            .commit(snapshot, |doc| doc.published(run, &done))
            .await?;
        for e in &snapshot.ledger.outbox {
            if !out
                .unpublished
                .iter()
                .any(|(id, _)| id == &e.notification.id)
            {
                out.unpublished.push((
                    e.notification.id.clone(),
                    "claimed by another publisher".to_owned(),
                ));
            }
        }
        Ok(out)
    }

    /// The pure part: the report's transitions into the ledger and its outbox.
    fn record(
        &self,
        doc: &mut ProjectLedger,
        report: &ProjectReport,
        occasion: &Occasion<'_>,
        rules: Rules,
        now_ms: i64,
    ) {
        let project = report.project_id.as_str();
        let keys: Vec<String> = report.findings.iter().map(ledger::finding_key).collect();
        for (finding, key) in report.findings.iter().zip(&keys) {
            let transient =
                finding.outcome == Outcome::Failed && failed_transiently(report, finding);
            let (announce, n) = doc.observe(finding, transient, rules, now_ms);
            match announce {
                Announce::Nothing => {}
                // Restorations are announced from their records below (once each, whoever runs);
                // one the ledger never recorded (found in Cloud Audit Logs, or written without a
                // ledger) is announced from the report, its id from the etag it produced.
                Announce::Outcome(Outcome::Restored) if !doc.has_restoration_of(key) => {
                    let etag = report
                        .actions
                        .iter()
                        .filter(|a| a.outcome == Outcome::Restored)
                        .find_map(|a| a.etag_after.clone())
                        .unwrap_or_default();
                    let id = ledger::notification_id(project, key, Outcome::Restored, 0, &etag);
                    doc.enqueue(self.build(report, finding, Outcome::Restored, occasion, id));
                }
                Announce::Outcome(Outcome::Restored) => {}
                Announce::Outcome(o) => {
                    let id = ledger::notification_id(project, key, o, n, "");
                    let mut notification = self.build(report, finding, o, occasion, id);
                    if o == Outcome::Escalated
                        && let Some(why) = repeated_cause(doc, key, &notification.evidence)
                    {
                        notification.detail = format!("{} {why}", notification.detail);
                    }
                    doc.enqueue(notification);
                }
            }
        }
        // Intents whose run died before it recorded the write's outcome: the live state this run
        // read says whether the write was made (the binding holds) or not.
        for intent in doc.stale_intents(now_ms) {
            // A restoration of the same binding recorded after the intent means a later run found
            // it missing and wrote it: the dead run's write was not made (or was undone).
            let superseded = doc
                .restorations
                .iter()
                .any(|r| r.action == intent.action && r.at_ms >= intent.at_ms);
            let holds = intent.finding.as_ref().and_then(|k| {
                keys.iter()
                    .position(|x| x == k)
                    .map(|i| report.findings[i].outcome == Outcome::Healthy)
            });
            let holds = holds.filter(|_| !superseded);
            doc.finish(
                &intent.run,
                &intent.action,
                (holds == Some(true)).then(|| restoration_of(&intent, now_ms)),
            );
        }
        // Every restoration not yet announced, this run's or a dead run's.
        let unannounced: Vec<usize> = (0..doc.restorations.len())
            .filter(|&i| !doc.restorations[i].notified)
            .collect();
        for i in unannounced {
            let r = doc.restorations[i].clone();
            let Some((key, finding)) = r.finding.as_ref().and_then(|k| {
                keys.iter()
                    .position(|x| x == k)
                    .map(|p| (k, &report.findings[p]))
            }) else {
                continue;
            };
            let id = ledger::notification_id(
                project,
                key,
                Outcome::Restored,
                0,
                &format!("{}\u{1f}{}\u{1f}{}", r.run, r.action, r.at_ms),
            );
            let mut n = self.build(report, finding, Outcome::Restored, occasion, id);
            if n.actions.is_empty() {
                // Announced by a later run than the one that wrote: its report has no action.
                n.actions.push(action_of(&r));
            }
            let cause = Cause {
                actor: n.evidence.actor.clone(),
                tool: n.evidence.tool.clone(),
            };
            doc.enqueue(n);
            doc.restorations[i].notified = true;
            doc.restorations[i].cause = Some(cause).filter(|c| c.actor.is_some());
        }
        doc.forget_except(&keys);
        self.remind(doc, report, occasion, now_ms);
    }

    /// Re-announces every open problem when the reminder interval has passed since the last
    /// reminder (or since the first problem was announced): never on every run.
    fn remind(
        &self,
        doc: &mut ProjectLedger,
        report: &ProjectReport,
        occasion: &Occasion<'_>,
        now_ms: i64,
    ) {
        if doc.open_problems() == 0 {
            doc.reminded_at_ms = None;
            return;
        }
        let Some(every) = self.settings.reminder else {
            return;
        };
        let every_ms = crate::clock::span_ms(every);
        let last = *doc.reminded_at_ms.get_or_insert(now_ms);
        if now_ms - last < every_ms {
            return;
        }
        doc.reminded_at_ms = Some(now_ms);
        let reminder = Hint {
            evidence: crate::intake::Evidence {
                source: crate::intake::Source::Sweep,
                ..occasion.hint.evidence.clone()
            },
            ..occasion.hint.clone()
        };
        let occasion = Occasion {
            hint: &reminder,
            ..*occasion
        };
        for finding in &report.findings {
            let key = ledger::finding_key(finding);
            let Some(entry) = doc.findings.get(&key) else {
                continue;
            };
            if !ledger::is_problem(entry.outcome) {
                continue;
            }
            let outcome = entry.outcome;
            let id = ledger::notification_id(
                &report.project_id,
                &key,
                outcome,
                entry.announced,
                &format!("reminder-{now_ms}"),
            );
            let mut n = self.build(report, finding, outcome, &occasion, id);
            n.evidence.source = "reminder".to_owned();
            doc.enqueue(n);
        }
    }

    fn build(
        &self,
        report: &ProjectReport,
        finding: &FindingReport,
        outcome: Outcome,
        occasion: &Occasion<'_>,
        id: String,
    ) -> Notification {
        let mut shown = finding.clone();
        shown.outcome = outcome;
        let evidence = evidence_for(occasion.hint, finding);
        let mut n = notify::build(
            report,
            &shown,
            self.settings.mode,
            &evidence,
            occasion.trace_id,
            occasion.now,
        );
        n.id = id;
        n
    }
}

/// When every restoration of a finding in the window, and the removal that escalated it, were
/// caused by the same principal with the same kind of tool: says so, and where to fix it.
fn repeated_cause(doc: &ProjectLedger, key: &str, now: &notify::Evidence) -> Option<String> {
    let actor = now.actor.as_deref()?;
    let kind = now.tool.as_ref().map(|t| t.kind);
    let earlier: Vec<&Cause> = doc
        .restorations
        .iter()
        .filter(|r| r.finding.as_deref() == Some(key))
        .filter_map(|r| r.cause.as_ref())
        .collect();
    if earlier.is_empty()
        || !earlier
            .iter()
            .all(|c| c.actor.as_deref() == Some(actor) && c.tool.as_ref().map(|t| t.kind) == kind)
    {
        return None;
    }
    let times = earlier.len() + 1;
    let who = now.who();
    let fix = match kind {
        Some(crate::intake::tool::ToolKind::Terraform) => {
            "This comes from Terraform: the next apply removes it again. Fix the configuration: add the member to the authoritative google_project_iam_binding or google_project_iam_policy (or grant it with google_project_iam_member), keep the role, and run `gke-iam-remediator check-plan` on `terraform show -json` in CI so the next removal is stopped at review time."
        }
        Some(k) if k.is_infrastructure_as_code() => {
            "This comes from infrastructure as code: the next reconcile removes it again. Add the member to the resource that manages this role there, and keep the role."
        }
        _ => "Ask who made the change why, and fix the process or script that removes it.",
    };
    Some(format!(
        "Removed {times} times within the window, every time by {who}. {fix}"
    ))
}

fn restoration_of(intent: &Intent, now_ms: i64) -> Restoration {
    Restoration {
        action: intent.action.clone(),
        finding: intent.finding.clone(),
        at_ms: intent.at_ms.min(now_ms),
        run: intent.run.clone(),
        etag_after: None,
        notified: false,
        cause: None,
    }
}

/// The action of a restoration record, as a notification lists it.
fn action_of(r: &Restoration) -> notify::NotifiedAction {
    let mut parts = r.action.splitn(3, '|');
    let kind = parts.next().unwrap_or_default().to_owned();
    let (role, member) = match (kind.as_str(), parts.next(), parts.next()) {
        ("grant", Some(role), Some(member)) => (Some(role.to_owned()), Some(member.to_owned())),
        ("enable-service", Some(service), _) => (None, Some(service.to_owned())),
        (_, Some(email), _) => (None, Some(format!("serviceAccount:{email}"))),
        _ => (None, None),
    };
    notify::NotifiedAction {
        kind,
        role,
        member,
        outcome: Outcome::Restored.as_str().to_owned(),
        etag_before: None,
        etag_after: r.etag_after.clone(),
        error: None,
    }
}

/// Whether a failed finding's action failed for a cause that may pass.
fn failed_transiently(report: &ProjectReport, finding: &FindingReport) -> bool {
    let Decision::Restore { action } = &finding.decision else {
        return false;
    };
    report
        .actions
        .iter()
        .filter(|a| &a.action == action)
        .any(|a| matches!(a.error, Some(Failure::Transient(_))))
}

/// The evidence a notification of `finding` carries: the hint's whole evidence when the hint is
/// about that finding (its principal was removed or named, or its requirement named), else only
/// where the check came from: an unrelated change's actor is never named as the cause.
pub fn evidence_for(hint: &Hint, finding: &FindingReport) -> Evidence {
    let e = &hint.evidence;
    let principal = finding.finding.principal.as_ref();
    let named_principal = principal.is_some_and(|p| {
        e.removed.iter().any(|(_, m)| m == p)
            || hint
                .node_service_accounts
                .iter()
                .any(|sa| p.to_string() == format!("serviceAccount:{sa}"))
    });
    let named_requirement = hint.requirements.contains(&finding.finding.requirement)
        && e.removed.is_empty()
        && hint.node_service_accounts.is_empty();
    let related = named_principal || named_requirement;
    Evidence {
        source: serde_json::to_value(e.source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        actor: e.actor.clone().filter(|_| related),
        tool: e.tool.clone().filter(|_| related),
        method: e.method.clone().filter(|_| related),
        insert_id: e.insert_id.clone().filter(|_| related),
        log_timestamp: e.log_timestamp.clone().filter(|_| related),
        recommendation: e.recommendation.as_ref().map(|r| r.name.clone()),
        message_id: e.message_id.clone(),
    }
}
