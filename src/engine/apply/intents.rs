//! The remediator's side of the ledger: the flapping count read from it, and every write recorded
//! as an intent before it is made (refused in the same commit when the binding reached the
//! flapping limit, so instances sharing the store never exceed it together) and as a restoration
//! after it. Without a state (one-shot commands) nothing here runs.

use std::time::Duration;

use super::Applier;
use crate::domain::evaluate::Finding;
use crate::domain::iam::{Member, ProjectId, Role};
use crate::domain::plan::Action;
use crate::domain::state::Restorations;
use crate::engine::ledger::{self, Intent, Restoration};
use crate::ports::StateError;

/// The finding a write restores: the one whose role and principal it grants, or whose principal
/// (or requirement) the action concerns.
pub(super) fn finding_of(action: &Action, findings: &[Finding]) -> Option<String> {
    let found = findings.iter().find(|f| match action {
        Action::Grant { role, member } => {
            f.role.as_ref() == Some(role) && f.principal.as_ref() == Some(member)
        }
        Action::EnableService { .. } => {
            f.requirement == crate::domain::requirements::RequirementId::ContainerApiEnabled
        }
        Action::EnableServiceAccount { email } | Action::UndeleteServiceAccount { email, .. } => {
            f.requirement == crate::domain::requirements::RequirementId::NodeSaExists
                && f.principal
                    .as_ref()
                    .is_some_and(|p| p.to_string() == format!("serviceAccount:{email}"))
        }
    });
    found.map(ledger::key_of)
}

impl Applier<'_> {
    fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.options.settings.policy.limits.window_minutes) * 60)
    }

    fn since_ms(&self) -> i64 {
        let now = crate::clock::epoch_ms(self.options.context.clock.now());
        now - crate::clock::span_ms(self.window())
    }

    /// Our restorations of `grants` within the window, from the ledger (intents of writes under
    /// way included), and whether the ledger records any restoration of the project at all (if
    /// not, restorations made before it existed may only be in Cloud Audit Logs).
    pub(super) async fn ledger_counts(
        &self,
        project: &ProjectId,
        grants: &[(Role, Member)],
    ) -> Option<Result<(Restorations, bool), StateError>> {
        let state = self.options.context.state.as_ref()?;
        let since = self.since_ms();
        Some(state.load(project.as_str()).await.map(|snapshot| {
            let doc = &snapshot.ledger;
            let counts = grants
                .iter()
                .map(|(role, member)| {
                    let key = ledger::action_key(&Action::Grant {
                        role: role.clone(),
                        member: member.clone(),
                    });
                    (
                        (role.clone(), member.clone()),
                        doc.restorations_since(&key, since),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            let history = !doc.restorations.is_empty() || !doc.intents.is_empty();
            (counts, history)
        }))
    }

    /// Records the intent of each write, unless its binding reached the flapping limit: returns
    /// the actions refused (and then records none). `Ok(vec![])` without a state.
    pub(super) async fn begin(
        &self,
        project: &ProjectId,
        actions: &[(Action, Option<String>)],
    ) -> Result<Vec<Action>, StateError> {
        let Some(state) = &self.options.context.state else {
            return Ok(Vec::new());
        };
        let (since, limit) = (
            self.since_ms(),
            self.options
                .settings
                .policy
                .limits
                .max_restorations_per_binding,
        );
        let at_ms = crate::clock::epoch_ms(self.options.context.clock.now());
        let (refused, _) = state
            .update(project.as_str(), |doc| {
                let before = doc.intents.len();
                let refused: Vec<Action> = actions
                    .iter()
                    .filter(|(action, finding)| {
                        !doc.begin(
                            Intent {
                                action: ledger::action_key(action),
                                finding: finding.clone(),
                                run: self.run.clone(),
                                at_ms,
                            },
                            since,
                            limit,
                        )
                    })
                    .map(|(a, _)| a.clone())
                    .collect();
                if !refused.is_empty() {
                    doc.intents.truncate(before);
                }
                refused
            })
            .await?;
        Ok(refused)
    }

    /// A write is done: its intent becomes a restoration (`made`) or goes. A failure to record it
    /// leaves the intent, which a later run resolves from live state.
    pub(super) async fn finish(
        &self,
        project: &ProjectId,
        actions: &[(Action, Option<String>)],
        etag_after: Option<String>,
        made: bool,
    ) {
        let Some(state) = &self.options.context.state else {
            return;
        };
        let at_ms = crate::clock::epoch_ms(self.options.context.clock.now());
        let result = state
            .update(project.as_str(), |doc| {
                for (action, finding) in actions {
                    let key = ledger::action_key(action);
                    let restoration = made.then(|| Restoration {
                        action: key.clone(),
                        finding: finding.clone(),
                        at_ms,
                        run: self.run.clone(),
                        etag_after: etag_after.clone(),
                        notified: false,
                        cause: None,
                    });
                    doc.finish(&self.run, &key, restoration);
                }
            })
            .await;
        if let Err(e) = result {
            tracing::error!(%project, error = %e, "a write's outcome cannot be recorded in the state store: a later run resolves it from live state");
        }
    }
}
