//! Decide: `(findings, remediation policy, live policy) -> Plan`. Pure.
//!
//! A plan only ever adds: unconditional bindings of roles from the requirement list to the principal
//! the finding names (derived from live state), or opt-in enable/undelete actions. It never removes or
//! edits a binding, never grants a role outside the list, and is empty on a healthy project.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::evaluate::{Finding, Status};
use super::iam::{MAX_PRINCIPALS_PER_POLICY, Member, Policy, Role};
use super::requirements::{CONTAINER_API, RequirementId, restorable_roles};
use super::rules::RemediationPolicy;
use super::state::{AccountState, ProjectState};

/// One change the plan makes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// Add `member` to the unconditional binding of `role` on the project.
    Grant {
        /// Role from the requirement list.
        role: Role,
        /// Principal derived from live state.
        member: Member,
    },
    /// Enable an API (opt-in: `container-api-enabled`).
    EnableService {
        /// Service name.
        service: String,
    },
    /// Enable a disabled service account (opt-in: `node-sa-exists`).
    EnableServiceAccount {
        /// Account email.
        email: String,
    },
    /// Undelete a deleted service account by unique id (opt-in: `node-sa-exists`).
    UndeleteServiceAccount {
        /// Account email.
        email: String,
        /// Numeric unique id.
        unique_id: String,
    },
}

/// What the plan does about one finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// The requirement holds.
    Healthy,
    /// The plan restores it with this action.
    Restore {
        /// The action.
        action: Action,
    },
    /// The remediation policy does not allow restoring it.
    NotAllowed {
        /// Why.
        reason: String,
    },
    /// Needs a person: conditional, unknown or incomplete.
    NeedsReview {
        /// Why.
        reason: String,
    },
    /// Cannot be restored safely now.
    Blocked {
        /// Why.
        reason: String,
    },
    /// Restored too often within the policy's window: a person must find out who keeps removing it.
    Escalate {
        /// Why.
        reason: String,
    },
}

/// The plan for one project: decisions per finding (same order) and the distinct actions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// One decision per finding, in the findings' order.
    pub decisions: Vec<Decision>,
    /// Distinct actions, grants first.
    pub actions: Vec<Action>,
}

impl Plan {
    /// True if nothing is to be done.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The grants, as (role, member) pairs.
    pub fn grants(&self) -> impl Iterator<Item = (&Role, &Member)> {
        self.actions.iter().filter_map(|a| match a {
            Action::Grant { role, member } => Some((role, member)),
            _ => None,
        })
    }
}

/// Inputs that are not findings.
pub struct DecideContext<'a> {
    /// The remediation policy.
    pub policy: &'a RemediationPolicy,
    /// The live state the findings came from.
    pub state: &'a ProjectState,
    /// Writes still allowed in this run (`limits.max_writes_per_run` minus writes done).
    pub writes_remaining: u32,
    /// How often each (role, member) was restored by the remediator within the policy's window (from
    /// a source shared by every instance, e.g. Cloud Audit Logs). Empty when unknown.
    pub restorations: &'a BTreeMap<(Role, Member), u32>,
}

/// Decides what to do about each finding.
pub fn decide(findings: &[Finding], ctx: &DecideContext<'_>) -> Plan {
    let in_scope = ctx
        .policy
        .scope
        .contains(ctx.state.project_id.as_str(), &ctx.state.folders);
    let allowed_roles: BTreeSet<Role> = restorable_roles().into_iter().collect();
    let mut plan = Plan::default();
    let mut actions = BTreeSet::new();
    let mut new_principals = 0usize;
    for finding in findings {
        let decision = decide_one(finding, ctx, in_scope, &allowed_roles);
        let decision = match decision {
            Decision::Restore { action } => {
                let is_new = !actions.contains(&action);
                let is_grant = matches!(action, Action::Grant { .. });
                if is_new && ctx.writes_remaining == 0 {
                    Decision::Blocked {
                        reason: "the run's write limit (limits.max_writes_per_run) is reached"
                            .to_owned(),
                    }
                } else if is_new
                    && is_grant
                    && ctx.state.policy.principal_count() + new_principals + 1
                        > MAX_PRINCIPALS_PER_POLICY
                {
                    Decision::Blocked {
                        reason: format!(
                            "the project policy would exceed {MAX_PRINCIPALS_PER_POLICY} principals"
                        ),
                    }
                } else {
                    if is_new && is_grant {
                        new_principals += 1;
                    }
                    actions.insert(action.clone());
                    Decision::Restore { action }
                }
            }
            other => other,
        };
        plan.decisions.push(decision);
    }
    // Grants first (one policy write), then the other actions.
    let (grants, others): (Vec<_>, Vec<_>) = actions
        .into_iter()
        .partition(|a| matches!(a, Action::Grant { .. }));
    plan.actions = grants.into_iter().chain(others).collect();
    plan
}

fn decide_one(
    finding: &Finding,
    ctx: &DecideContext<'_>,
    in_scope: bool,
    allowed_roles: &BTreeSet<Role>,
) -> Decision {
    match finding.status {
        Status::Ok => return Decision::Healthy,
        Status::Conditional => {
            return Decision::NeedsReview {
                reason: "granted only under an IAM condition; conditions are never rewritten"
                    .to_owned(),
            };
        }
        Status::Unknown => {
            return Decision::NeedsReview {
                reason: finding.detail.clone(),
            };
        }
        Status::Incomplete => {
            return Decision::NeedsReview {
                reason: finding.detail.clone(),
            };
        }
        Status::Denied => {
            // A deny rule overrides every grant: granting would change nothing and hide the cause.
            return Decision::NotAllowed {
                reason: finding.detail.clone(),
            };
        }
        Status::Missing => {}
    }
    if !ctx.policy.restore.contains(&finding.requirement) {
        return Decision::NotAllowed {
            reason: format!(
                "requirement {} is not in the policy's `restore` list",
                finding.requirement
            ),
        };
    }
    if !in_scope {
        return Decision::NotAllowed {
            reason: format!(
                "project {} is outside the policy's scope",
                ctx.state.project_id
            ),
        };
    }
    if let Some(member) = &finding.principal
        && ctx.policy.is_exempt(member)
    {
        return Decision::NotAllowed {
            reason: format!("{member} is exempt (exempt_principals)"),
        };
    }
    match finding.requirement {
        RequirementId::ContainerApiEnabled => Decision::Restore {
            action: Action::EnableService {
                service: CONTAINER_API.to_owned(),
            },
        },
        RequirementId::NodeSaExists => existence_action(finding, ctx),
        _ => grant_action(finding, ctx, allowed_roles),
    }
}

fn grant_action(
    finding: &Finding,
    ctx: &DecideContext<'_>,
    allowed_roles: &BTreeSet<Role>,
) -> Decision {
    let (Some(role), Some(member)) = (&finding.role, &finding.principal) else {
        return Decision::Blocked {
            reason: "no role or principal to grant".to_owned(),
        };
    };
    if !allowed_roles.contains(role) {
        return Decision::Blocked {
            reason: format!("{role} is not a role of the requirement list"),
        };
    }
    let limits = &ctx.policy.limits;
    let count = ctx
        .restorations
        .get(&(role.clone(), member.clone()))
        .copied()
        .unwrap_or(0);
    if count >= limits.max_restorations_per_binding {
        return Decision::Escalate {
            reason: format!(
                "{role} for {member} was already restored {count} time(s) in the last {} minutes \
                 (limits.max_restorations_per_binding = {}); something keeps removing it",
                limits.window_minutes, limits.max_restorations_per_binding
            ),
        };
    }
    if finding.requirement == RequirementId::NodeSaPermissions {
        let email = member.as_str().trim_start_matches("serviceAccount:");
        let state = ctx
            .state
            .accounts
            .iter()
            .find(|(e, _)| e.as_str().eq_ignore_ascii_case(email))
            .map(|(_, s)| s);
        match state {
            Some(AccountState::Deleted { .. }) => {
                return Decision::Blocked {
                    reason: format!(
                        "{email} does not exist; restore the account first (node-sa-exists)"
                    ),
                };
            }
            Some(AccountState::Unknown { reason }) => {
                return Decision::Blocked {
                    reason: format!("could not confirm {email} exists: {reason}"),
                };
            }
            _ => {}
        }
    }
    Decision::Restore {
        action: Action::Grant {
            role: role.clone(),
            member: member.clone(),
        },
    }
}

fn existence_action(finding: &Finding, ctx: &DecideContext<'_>) -> Decision {
    let Some(member) = &finding.principal else {
        return Decision::Blocked {
            reason: "no account named".to_owned(),
        };
    };
    let email = member
        .as_str()
        .trim_start_matches("serviceAccount:")
        .to_owned();
    let state = ctx
        .state
        .accounts
        .iter()
        .find(|(e, _)| e.as_str() == email)
        .map(|(_, s)| s);
    match state {
        Some(AccountState::Disabled { .. }) => Decision::Restore {
            action: Action::EnableServiceAccount { email },
        },
        Some(AccountState::Deleted {
            unique_id: Some(uid),
        }) => Decision::Restore {
            action: Action::UndeleteServiceAccount {
                email,
                unique_id: uid.clone(),
            },
        },
        _ => Decision::Blocked {
            reason: format!("{email} cannot be restored: its unique id is unknown"),
        },
    }
}

/// Applies the plan's grants to a policy, touching nothing else. Returns how many members were added.
pub fn apply_grants(policy: &mut Policy, plan: &Plan) -> usize {
    plan.grants()
        .filter(|(role, member)| policy.add_member(role, member))
        .count()
}
