//! Breaks: a requirement that holds before the plan and not after (or a principal the plan makes a
//! node account that will lack what it needs), attributed to the resource changes whose effects
//! caused it, each with the change to make in the Terraform configuration. Pure.

use serde::Serialize;

use super::apply::{Applied, Effect};
use super::changes::{Change, UNKNOWN_ACCOUNT, Unknown, What};
use crate::domain::evaluate::{Finding, Status};
use crate::domain::iam::{Member, MemberKind, ServiceAccountEmail};
use crate::domain::requirements::{ROLE_DEFAULT_NODE_SA, RequirementId};
use crate::domain::state::{AUTOMATIC_GRANTS_CONSTRAINT, ProjectState, RoleCatalog, RoleLookup};

/// One break, caused by one resource change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Break {
    /// The Terraform address of the resource whose change breaks the requirement.
    pub address: String,
    /// Its resource type.
    pub resource_type: String,
    /// The project whose requirement breaks.
    pub project: String,
    /// The requirement.
    pub requirement: RequirementId,
    /// The principal (member form), when the requirement is about one.
    pub principal: Option<String>,
    /// The verdict before the plan (`null`: not a requirement before the plan, e.g. a node account
    /// the plan introduces).
    pub before: Option<Status>,
    /// The verdict after the plan.
    pub after: Status,
    /// What this resource's change does to it.
    pub change: String,
    /// The verdict's explanation after the plan.
    pub detail: String,
    /// The change to make in the configuration.
    pub fix: String,
    /// Values of this project's changes known only after apply, and what was assumed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_values: Vec<Unknown>,
}

fn severity(status: Status) -> u8 {
    match status {
        Status::Ok => 0,
        Status::Unknown | Status::Incomplete => 1,
        Status::Conditional => 2,
        Status::Missing | Status::Denied => 3,
    }
}

/// True if going from `before` to `after` breaks the requirement: worse than before, and either
/// not granted after (conditional, missing, denied) or no longer certainly ok.
pub fn is_break(before: Option<Status>, after: Status) -> bool {
    let a = severity(after);
    match before {
        None => a >= 2,
        Some(b) => {
            let b = severity(b);
            a > b && (a >= 2 || b == 0)
        }
    }
}

fn key(f: &Finding) -> (RequirementId, Option<&str>) {
    (f.requirement, f.principal.as_ref().map(Member::as_str))
}

/// The permissions a finding lacks (missing, conditional, unknown or denied).
fn lacking(f: &Finding) -> Vec<&str> {
    f.missing_permissions
        .iter()
        .chain(&f.conditional_permissions)
        .chain(&f.unknown_permissions)
        .chain(&f.denied_permissions)
        .map(String::as_str)
        .collect()
}

fn principal_email(f: &Finding) -> Option<ServiceAccountEmail> {
    f.principal
        .as_ref()
        .and_then(|m| m.as_str().strip_prefix("serviceAccount:"))
        .and_then(|e| ServiceAccountEmail::parse(e).ok())
}

/// True if `effect` bears on the finding `f` (after the plan; `new`: no such finding before).
fn bears(effect: &Effect, f: &Finding, new: bool, catalog: &RoleCatalog) -> bool {
    let email = principal_email(f);
    let is_principal = |m: &Member| {
        f.principal
            .as_ref()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case(m.as_str()))
    };
    match (effect, f.requirement) {
        (Effect::RemovedGrant { role, member, .. }, RequirementId::NodeSaPermissions) => {
            let through = is_principal(member)
                || matches!(
                    member.kind(),
                    MemberKind::Group | MemberKind::Domain | MemberKind::Other
                );
            through
                && match catalog.get(role) {
                    RoleLookup::Found(perms) => lacking(f).iter().any(|p| perms.contains(*p)),
                    RoleLookup::NotFound => false,
                    RoleLookup::Unreadable(_) => true,
                }
        }
        (
            Effect::RemovedGrant { role, member, .. },
            RequirementId::GkeServiceAgent
            | RequirementId::GkeNodeServiceAgent
            | RequirementId::GoogleApisServiceAgent,
        ) => f.role.as_ref() == Some(role) && is_principal(member),
        (
            Effect::AccountGone { email: gone, .. },
            RequirementId::NodeSaExists | RequirementId::NodeSaPermissions,
        ) => email.as_ref() == Some(gone),
        (Effect::ApiDisabled, RequirementId::ContainerApiEnabled) => true,
        (Effect::DenyPolicy { name }, RequirementId::NodeSaPermissions) => {
            f.denied_by.iter().any(|d| &d.policy == name)
        }
        (Effect::OrgPolicyEnforced, RequirementId::NodeSaPermissions) => f.org_policy.is_some(),
        (
            Effect::NodeAccount { email: node, .. },
            RequirementId::NodeSaPermissions | RequirementId::NodeSaExists,
        ) => new && email.as_ref() == Some(node),
        _ => false,
    }
}

/// The breaks of one project: findings before and after the plan, the applied changes and their
/// effects, the role definitions both evaluations used.
pub fn breaks(
    before: &[Finding],
    after: &[Finding],
    applied: &Applied,
    changes: &[Change],
    catalog: &RoleCatalog,
) -> Vec<Break> {
    let state = &applied.state;
    let unknowns: Vec<Unknown> = applied
        .applied
        .iter()
        .flat_map(|&i| changes[i].unknowns.iter().cloned())
        .collect();
    let mut out: Vec<Break> = Vec::new();
    for f in after {
        if f.principal.is_none() && f.requirement == RequirementId::NodeSaPermissions {
            continue;
        }
        let was = before.iter().find(|b| key(b) == key(f));
        let was_status = was.map(|b| b.status);
        if !is_break(was_status, f.status) {
            continue;
        }
        let mut causes: Vec<(usize, &Effect)> = applied
            .effects
            .iter()
            .filter(|(_, e)| bears(e, f, was.is_none(), catalog))
            .map(|(i, e)| (*i, e))
            .collect();
        if causes.is_empty() {
            // Nothing pins it down (joint effects, or a value known only after apply): every change
            // that applied to the project with a value not known, else every one that applied.
            let fallback: Vec<usize> = match applied
                .applied
                .iter()
                .copied()
                .filter(|&i| !changes[i].unknowns.is_empty())
                .collect::<Vec<_>>()
            {
                v if !v.is_empty() => v,
                _ => applied
                    .applied
                    .iter()
                    .copied()
                    .filter(|&i| changes[i].can_break())
                    .collect(),
            };
            for i in fallback {
                out.push(make(f, was_status, &changes[i], None, state, &unknowns));
            }
            continue;
        }
        causes.sort_by_key(|(i, _)| *i);
        let mut seen: Vec<usize> = Vec::new();
        for (i, e) in &causes {
            if seen.contains(i) {
                continue;
            }
            seen.push(*i);
            out.push(make(f, was_status, &changes[*i], Some(e), state, &unknowns));
        }
    }
    org_policy_breaks(before, after, applied, changes, &unknowns, &mut out);
    out.sort_by(|a, b| {
        (&a.address, a.requirement, &a.principal).cmp(&(&b.address, b.requirement, &b.principal))
    });
    out.dedup_by(|a, b| {
        a.address == b.address && a.requirement == b.requirement && a.principal == b.principal
    });
    out
}

/// Enforcing `iam.automaticIamGrantsForDefaultServiceAccounts` where the Compute Engine default
/// account is a node account without its role: default accounts created from then on get no role,
/// and this one's node permissions rest on a grant the constraint is there to stop.
fn org_policy_breaks(
    before: &[Finding],
    after: &[Finding],
    applied: &Applied,
    changes: &[Change],
    unknowns: &[Unknown],
    out: &mut Vec<Break>,
) {
    let state = &applied.state;
    let default = ServiceAccountEmail::compute_default(&state.project_number);
    let member = Member::service_account(&default);
    let Some(f) = after.iter().find(|f| {
        f.requirement == RequirementId::NodeSaPermissions && f.principal.as_ref() == Some(&member)
    }) else {
        return;
    };
    let role = crate::domain::iam::Role::parse(ROLE_DEFAULT_NODE_SA).expect("constant role");
    let holds_role = crate::domain::evaluate::all_policies(state)
        .any(|(_, p)| p.grants_unconditionally(&role, &member));
    if holds_role {
        return;
    }
    let was = before.iter().find(|b| key(b) == key(f)).map(|b| b.status);
    for (i, e) in &applied.effects {
        if *e != Effect::OrgPolicyEnforced {
            continue;
        }
        let c = &changes[*i];
        if out
            .iter()
            .any(|b| b.address == c.address && b.principal.as_deref() == Some(member.as_str()))
        {
            continue;
        }
        let mut b = make(f, was, c, Some(e), state, unknowns);
        if f.status == Status::Ok {
            b.detail = format!(
                "{}, but not through {ROLE_DEFAULT_NODE_SA}: with {AUTOMATIC_GRANTS_CONSTRAINT} enforced, a Compute Engine default account created from now on (a new project, or this one re-created) gets no role at all",
                f.detail
            );
        }
        out.push(b);
    }
}

fn level_word(kind: &str) -> &'static str {
    if kind.starts_with("google_folder_") {
        "folder"
    } else if kind.starts_with("google_organization_") {
        "organization"
    } else {
        "project"
    }
}

fn pools_of(f: &Finding) -> String {
    if !f.node_pools.is_empty() {
        f.node_pools.join(", ")
    } else if !f.clusters.is_empty() {
        f.clusters.join(", ")
    } else {
        "its node pools".to_owned()
    }
}

fn make(
    f: &Finding,
    before: Option<Status>,
    c: &Change,
    effect: Option<&Effect>,
    state: &ProjectState,
    unknowns: &[Unknown],
) -> Break {
    let principal = f.principal.as_ref().map(|m| m.as_str().to_owned());
    let who = principal
        .clone()
        .unwrap_or_else(|| format!("project {}", state.project_id));
    let role = f
        .role
        .as_ref()
        .map(|r| r.as_str().to_owned())
        .unwrap_or_else(|| ROLE_DEFAULT_NODE_SA.to_owned());
    let level = level_word(&c.kind);
    let addr = &c.address;
    let change = match effect {
        Some(Effect::RemovedGrant {
            resource,
            role,
            member,
            conditional,
        }) => format!(
            "removes {member} from {}{role} on {resource}",
            if *conditional {
                "a conditional grant of "
            } else {
                ""
            }
        ),
        Some(Effect::AccountGone { email, deleted }) => format!(
            "{} the service account {email}",
            if *deleted { "deletes" } else { "disables" }
        ),
        Some(Effect::ApiDisabled) => format!(
            "disables container.googleapis.com on project {}",
            state.project_id
        ),
        Some(Effect::DenyPolicy { name }) => format!("creates or changes the deny policy {name}"),
        Some(Effect::OrgPolicyEnforced) => {
            format!("enforces {AUTOMATIC_GRANTS_CONSTRAINT} on {}", c.scope)
        }
        Some(Effect::NodeAccount { email, pool }) => {
            format!("runs the nodes of {pool} as {email}")
        }
        None => format!("{} {}", action_word(c), c.kind),
    };
    let fix = match (&c.what, effect) {
        (
            What::Binding {
                after: Some((key, members)),
                ..
            },
            Some(Effect::RemovedGrant {
                member, role: lost, ..
            }),
        ) if key.condition.is_some()
            && &key.role == lost
            && members
                .iter()
                .any(|m| m.as_str().eq_ignore_ascii_case(member.as_str())) =>
        {
            format!(
                "grant {lost} to {member} without a condition: {addr} leaves it only under the condition \"{}\" (a condition IAM cannot decide now is not counted as a grant, an expired one grants nothing); keep an unconditional google_{level}_iam_binding or google_{level}_iam_member for it",
                key.condition
                    .as_ref()
                    .map(|k| k.expression.as_str())
                    .unwrap_or_default()
            )
        }
        (
            What::Binding {
                after: Some((key, _)),
                ..
            },
            Some(Effect::RemovedGrant {
                member, role: lost, ..
            }),
        ) if &key.role == lost => format!(
            "add \"{member}\" to members of {addr} (it is authoritative for {lost}: members it does not list lose the role), or grant it with google_{level}_iam_member and keep {lost} out of authoritative bindings"
        ),
        (
            What::Binding { .. },
            Some(Effect::RemovedGrant {
                member, role: lost, ..
            }),
        ) => format!(
            "keep {lost} for {member}: keep {addr}, or grant {lost} to {member} with google_{level}_iam_member before removing it"
        ),
        (
            What::Policy { after: Some(_) },
            Some(Effect::RemovedGrant {
                member, role: lost, ..
            }),
        ) => format!(
            "add \"{member}\" to the {lost} binding in the policy_data of {addr} (google_{level}_iam_policy replaces the whole policy: every grant it does not list is removed), or manage grants with google_{level}_iam_member instead"
        ),
        (
            What::Policy { after: None },
            Some(Effect::RemovedGrant {
                member, role: lost, ..
            }),
        ) => format!(
            "keep {addr}, or move its grants (at least {lost} for {member}) to google_{level}_iam_member first: deleting a google_{level}_iam_policy empties the policy"
        ),
        (
            What::Member { after: Some(g), .. },
            Some(Effect::RemovedGrant {
                member, role: lost, ..
            }),
        ) => format!(
            "keep a grant of {lost} to {member}: {addr} moves it to {} {}",
            g.member, g.key.role
        ),
        (
            What::Member { .. },
            Some(Effect::RemovedGrant {
                member, role: lost, ..
            }),
        ) => format!(
            "keep {addr} (it grants {lost} to {member}), or grant {lost} to {member} another way before removing it"
        ),
        (
            What::MemberRemove { .. },
            Some(Effect::RemovedGrant {
                member, role: lost, ..
            }),
        ) => format!("remove {addr}: it takes {lost} from {member}, which GKE needs"),
        (
            What::ServiceAccount {
                deleted: true,
                exists_after: true,
                ..
            },
            _,
        ) => format!(
            "avoid replacing {addr} (see what forces the replacement in the plan): the new account does not inherit the old one's grants; nodes of {} run as it; if it must be replaced, grant the new one {role} in the same configuration",
            pools_of(f)
        ),
        (What::ServiceAccount { deleted: true, .. }, _) => format!(
            "keep {addr}: nodes of {} run as it; move them to another account that holds {ROLE_DEFAULT_NODE_SA} first",
            pools_of(f)
        ),
        (What::ServiceAccount { .. }, _) => format!(
            "set disabled = false on {addr}: nodes of {} run as it",
            pools_of(f)
        ),
        (What::DefaultAccounts { action }, _) if action == "DEPRIVILEGE" => format!(
            "grant {ROLE_DEFAULT_NODE_SA} to {who} explicitly (google_project_iam_member) before {addr} removes roles/editor from it, or run {} as a dedicated service account",
            pools_of(f)
        ),
        (What::DefaultAccounts { action }, _) => format!(
            "run {} as a dedicated service account holding {ROLE_DEFAULT_NODE_SA} before {addr} applies {action} to the Compute Engine default account",
            pools_of(f)
        ),
        (What::ContainerApi { why, .. }, _) => format!(
            "keep container.googleapis.com enabled: set disable_on_destroy = false on {addr} and apply that before removing it, or forget it with a `removed` block (lifecycle {{ destroy = false }}); here {why}"
        ),
        (What::DenyPolicy { .. }, _) => {
            let email = principal_email(f)
                .map(|e| e.to_string())
                .unwrap_or_default();
            let rules: Vec<String> = f
                .denied_by
                .iter()
                .filter(
                    |d| matches!(effect, Some(Effect::DenyPolicy { name }) if *name == d.policy),
                )
                .map(|d| format!("rules[{}]", d.rule))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            format!(
                "exempt the node account: add \"principal://iam.googleapis.com/projects/-/serviceAccounts/{email}\" to exception_principals of {} in {addr}, or list the node permissions ({}) in its exception_permissions",
                if rules.is_empty() {
                    "the rule".to_owned()
                } else {
                    rules.join(", ")
                },
                lacking(f)
                    .iter()
                    .map(|p| crate::domain::deny::v2_permission(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        (What::OrgPolicy { .. }, _) => format!(
            "grant {ROLE_DEFAULT_NODE_SA} to {who} on project {} explicitly (google_project_iam_member) before {addr} enforces {AUTOMATIC_GRANTS_CONSTRAINT}, or run {} as a dedicated service account",
            state.project_id,
            pools_of(f)
        ),
        (What::Cluster { .. } | What::NodePool { .. }, _) if who.ends_with(UNKNOWN_ACCOUNT) => {
            format!(
                "the node service account of {addr} is known only after apply: grant it {ROLE_DEFAULT_NODE_SA} on project {} in the same configuration (google_project_iam_member with member = the account's `member`), and reference a google_service_account so check-plan can follow it",
                state.project_id
            )
        }
        (What::Cluster { .. } | What::NodePool { .. }, _)
            if f.requirement == RequirementId::NodeSaExists =>
        {
            format!(
                "{addr} runs nodes as {who}, which {}: create it (google_service_account) or use an account that exists",
                if f.status == Status::Missing {
                    "does not exist or is disabled"
                } else {
                    "may not exist"
                }
            )
        }
        (What::Cluster { .. } | What::NodePool { .. }, _) => format!(
            "grant {ROLE_DEFAULT_NODE_SA} to {who} on project {} (google_project_iam_member) in the same configuration as {addr}, or run the pool as an account that holds it",
            state.project_id
        ),
        _ => format!(
            "review {addr}: after the plan {who} is {} for {}",
            f.status, f.requirement
        ),
    };
    Break {
        address: c.address.clone(),
        resource_type: c.kind.clone(),
        project: state.project_id.to_string(),
        requirement: f.requirement,
        principal,
        before,
        after: f.status,
        change,
        detail: f.detail.clone(),
        fix,
        unknown_values: unknowns.to_vec(),
    }
}

fn action_word(c: &Change) -> &'static str {
    match c.action {
        super::terraform::Action::Create => "creates",
        super::terraform::Action::Update => "changes",
        super::terraform::Action::Delete => "deletes",
        super::terraform::Action::Replace => "replaces",
        super::terraform::Action::None => "keeps",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_break_is_a_worse_verdict_that_is_not_granted_or_no_longer_ok() {
        assert!(is_break(Some(Status::Ok), Status::Missing));
        assert!(is_break(Some(Status::Ok), Status::Conditional));
        assert!(is_break(Some(Status::Ok), Status::Unknown));
        assert!(is_break(Some(Status::Unknown), Status::Denied));
        assert!(is_break(None, Status::Missing));
        assert!(!is_break(None, Status::Unknown));
        assert!(!is_break(Some(Status::Missing), Status::Missing));
        assert!(!is_break(Some(Status::Missing), Status::Denied));
        assert!(!is_break(Some(Status::Conditional), Status::Unknown));
        assert!(!is_break(Some(Status::Ok), Status::Ok));
    }
}
