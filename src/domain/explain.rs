//! `explain`: for one service account, why each required node permission is (or is not) held: which
//! role grants it, in which binding, at which level, under which condition and what that condition is
//! now, which group it may come through, and the one `gcloud` command that would fix it.
//!
//! Pure, and built from the same [`ProjectState`] and role catalog the verdicts use: the verdict of
//! every permission is read off [`evaluate::node_permissions`] (what `scan` reports), and the trace
//! only says why, so an explanation can never disagree with a scan of the same state.

use std::collections::BTreeSet;
use std::time::SystemTime;

use serde::Serialize;

use super::condition;
use super::deny::DeniedBy;
use super::evaluate::{self, Finding, Status};
use super::iam::{Member, MemberKind, ResourceRef, Role, ServiceAccountEmail};
use super::plan::Action;
use super::requirements::{NODE_SA_PERMISSIONS, RequirementId};
use super::state::{ProjectState, RoleCatalog, RoleLookup, Troubleshot};

/// Where in the resource hierarchy a binding sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// On the project itself.
    Project,
    /// On a folder above it (inherited).
    Folder,
    /// On the organization (inherited).
    Organization,
}

impl Level {
    fn of(resource: &ResourceRef) -> Self {
        match resource {
            ResourceRef::Project(_) => Self::Project,
            ResourceRef::Folder(_) => Self::Folder,
            ResourceRef::Organization(_) => Self::Organization,
        }
    }

    /// As written in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Project => "project",
            Self::Folder => "folder",
            Self::Organization => "organization",
        }
    }
}

/// What a binding's condition is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConditionNow {
    /// True now (and for good, unless `expires_at` says when it ends).
    True,
    /// False now: an expired (or not yet started) grant grants nothing.
    False,
    /// The evaluator cannot decide it: the grant is "conditional, needs review".
    Unknown,
}

/// A binding's IAM condition and what it evaluates to at the time the state was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConditionTrace {
    /// The condition's title, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The CEL expression.
    pub expression: String,
    /// What it is now.
    pub now: ConditionNow,
    /// When a condition true now stops holding (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// What one binding contributes to one permission now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// It grants the permission now.
    Grants,
    /// It grants it now, until its condition's `expires_at`.
    GrantsUntil,
    /// It grants nothing now (its condition is false: expired or not started).
    Nothing,
    /// Under a condition that cannot be decided: needs review.
    Conditional,
    /// Through a group whose membership is not known (or a role that could not be read).
    Unknown,
}

/// One binding that names the account (or a group) with a role that grants the permission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrantTrace {
    /// The role bound.
    pub role: String,
    /// The resource whose policy holds the binding (`projects/p`, `folders/1`, `organizations/1`).
    pub resource: String,
    /// Project, folder or organization.
    pub level: Level,
    /// The binding's position in that policy's `bindings` (0-based), to find it in `get-iam-policy`.
    pub binding: usize,
    /// The member of the binding that matched: the account itself or a group.
    pub member: String,
    /// The group it would come through (`group:EMAIL`), when it is not granted directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_group: Option<String>,
    /// The binding's condition, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionTrace>,
    /// What it contributes now.
    pub effect: Effect,
    /// Why, when it is not simply a grant (an unreadable role definition, unknown membership).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The trace of one required permission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PermissionTrace {
    /// The permission (`logging.logEntries.create`).
    pub permission: String,
    /// The verdict, as `scan` reports it for this permission: `ok`, `missing`, `conditional`,
    /// `unknown`, `denied` (a deny rule blocks it) or `incomplete` (deny policies unreadable).
    pub verdict: Status,
    /// Every binding that could grant it, nearest level first.
    pub grants: Vec<GrantTrace>,
    /// The deny rules that block it (or may: `uncertain` says why), as `scan` found them.
    pub denied_by: Vec<DeniedBy>,
    /// The Policy Troubleshooter's answer, when it was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub troubleshooter: Option<&'static str>,
    /// The one command that would fix it, when a grant can (not for `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The explanation for one account in one project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Project id.
    pub project_id: String,
    /// Project number.
    pub project_number: String,
    /// The account in member form.
    pub member: String,
    /// Clusters whose nodes run as it (`location/name`), if any.
    pub clusters: Vec<String>,
    /// The verdict on `node-sa-permissions`, the same as `scan`'s.
    pub status: Status,
    /// `scan`'s sentence for it.
    pub detail: String,
    /// When the time-bound grant it relies on ends (RFC 3339), if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Ancestors whose policies could not be read (a grant there is possible but unknown).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// One trace per required permission, in requirement-list order.
    pub permissions: Vec<PermissionTrace>,
}

/// Roles whose definitions an explanation of `email` needs: those of bindings naming it or a group
/// (on the project and its ancestors), besides what evaluation needs.
pub fn roles_needed(state: &ProjectState, email: &ServiceAccountEmail) -> BTreeSet<Role> {
    let mut roles = evaluate::roles_needed(state);
    roles.extend(
        evaluate::all_policies(state)
            .flat_map(|(_, p)| p.bindings.iter())
            .filter(|b| {
                b.members
                    .iter()
                    .any(|m| m.is_service_account(email) || m.kind() == MemberKind::Group)
            })
            .map(|b| b.role.clone()),
    );
    roles
}

/// The `gcloud` command a person would run for an action on a project.
pub fn gcloud_command(project: &str, action: &Action) -> String {
    match action {
        Action::Grant { role, member } => format!(
            "gcloud projects add-iam-policy-binding {project} --member={member} --role={role} --condition=None"
        ),
        Action::EnableService { service } => {
            format!("gcloud services enable {service} --project={project}")
        }
        Action::EnableServiceAccount { email } => {
            // The account's own project (`NAME@HOME.iam.gserviceaccount.com`), else the project's.
            let home = email
                .split_once('@')
                .and_then(|(_, d)| d.strip_suffix(".iam.gserviceaccount.com"))
                .unwrap_or(project);
            format!("gcloud iam service-accounts enable {email} --project={home}")
        }
        Action::UndeleteServiceAccount { unique_id, .. } => {
            format!("gcloud iam service-accounts undelete {unique_id}")
        }
    }
}

fn stamp(t: SystemTime) -> String {
    crate::clock::rfc3339(t, crate::clock::Precision::Millis)
}

fn condition_trace(c: &super::iam::Condition, now: SystemTime) -> ConditionTrace {
    let (now, expires_at) = match condition::evaluate(&c.expression, now) {
        condition::Verdict::True { expires_at } => (ConditionNow::True, expires_at.map(stamp)),
        condition::Verdict::False => (ConditionNow::False, None),
        condition::Verdict::Unknown => (ConditionNow::Unknown, None),
    };
    ConditionTrace {
        title: c.title.clone(),
        expression: c.expression.clone(),
        now,
        expires_at,
    }
}

/// The verdict `scan` gives one permission, read off its finding (which lists what is lacking).
fn verdict_of(finding: &Finding, permission: &str) -> Status {
    let has = |list: &[String]| list.iter().any(|p| p == permission);
    if has(&finding.denied_permissions) {
        Status::Denied
    } else if has(&finding.missing_permissions) {
        Status::Missing
    } else if has(&finding.conditional_permissions) {
        Status::Conditional
    } else if has(&finding.unknown_permissions) {
        Status::Unknown
    } else if finding.status == Status::Incomplete {
        Status::Incomplete
    } else {
        Status::Ok
    }
}

/// Explains, for `email` in the state's project, each required node permission (see the module
/// documentation). `roles` must hold the definitions [`roles_needed`] names.
pub fn explain(
    state: &ProjectState,
    roles: &RoleCatalog,
    email: &ServiceAccountEmail,
) -> Explanation {
    let finding = evaluate::node_permissions(state, roles, email);
    let member = Member::service_account(email);
    let clusters: Vec<String> = evaluate::node_service_accounts(state)
        .into_iter()
        .find(|n| &n.email == email)
        .map(|n| n.clusters.into_iter().collect())
        .unwrap_or_default();
    let project = state.project_id.to_string();
    let permissions = NODE_SA_PERMISSIONS
        .iter()
        .map(|permission| {
            trace_permission(state, roles, email, &member, &finding, &project, permission)
        })
        .collect();
    Explanation {
        project_id: project,
        project_number: state.project_number.to_string(),
        member: member.to_string(),
        clusters,
        status: finding.status,
        detail: finding.detail.clone(),
        expires_at: finding.expires_at.clone(),
        unreadable: state.unreadable.clone(),
        permissions,
    }
}

fn trace_permission(
    state: &ProjectState,
    roles: &RoleCatalog,
    email: &ServiceAccountEmail,
    member: &Member,
    finding: &Finding,
    project: &str,
    permission: &str,
) -> PermissionTrace {
    let mut grants = Vec::new();
    for (resource_name, policy) in evaluate::all_policies(state) {
        let resource = ResourceRef::parse(&resource_name).ok();
        let level = resource.as_ref().map_or(Level::Project, Level::of);
        for (index, binding) in policy.bindings.iter().enumerate() {
            let direct = binding.members.iter().find(|m| m.is_service_account(email));
            let groups: Vec<&Member> = binding
                .members
                .iter()
                .filter(|m| m.kind() == MemberKind::Group)
                .collect();
            if direct.is_none() && groups.is_empty() {
                continue;
            }
            let (grants_it, note) = match roles.get(&binding.role) {
                RoleLookup::Found(perms) => (perms.contains(permission), None),
                RoleLookup::NotFound => (false, None),
                RoleLookup::Unreadable(why) => (
                    true,
                    Some(format!("the role's definition could not be read: {why}")),
                ),
            };
            if !grants_it {
                continue;
            }
            let condition = binding
                .condition
                .as_ref()
                .map(|c| condition_trace(c, state.read_at));
            let by_condition = match condition.as_ref().map(|c| (c.now, c.expires_at.is_some())) {
                None | Some((ConditionNow::True, false)) => Effect::Grants,
                Some((ConditionNow::True, true)) => Effect::GrantsUntil,
                Some((ConditionNow::False, _)) => Effect::Nothing,
                Some((ConditionNow::Unknown, _)) => Effect::Conditional,
            };
            let readable = note.is_none();
            let mut push = |matched: &Member,
                            via_group: Option<String>,
                            member: Option<bool>,
                            note: Option<String>| {
                // A group grants what it grants to its members: known members as if direct, known
                // non-members nothing, and unknown membership (or an unreadable role) is unknown.
                let effect = match (member, readable) {
                    (Some(false), _) => Effect::Nothing,
                    _ if by_condition == Effect::Nothing => Effect::Nothing,
                    (Some(true), true) => by_condition,
                    (None, true) if via_group.is_none() => by_condition,
                    _ => Effect::Unknown,
                };
                grants.push(GrantTrace {
                    role: binding.role.to_string(),
                    resource: resource_name.clone(),
                    level,
                    binding: index,
                    member: matched.to_string(),
                    via_group,
                    condition: condition.clone(),
                    effect,
                    note,
                });
            };
            if let Some(m) = direct {
                push(m, None, None, note.clone());
            }
            for g in groups {
                let group = g.as_str().trim_start_matches("group:").to_ascii_lowercase();
                let known = state
                    .access
                    .memberships
                    .get(&(group, email.as_str().to_ascii_lowercase()));
                let why = match known {
                    Some(true) => "a member (Cloud Identity transitive membership)",
                    Some(false) => "not a member (Cloud Identity transitive membership)",
                    None => "membership not known (Cloud Identity not readable or not asked)",
                };
                push(
                    g,
                    Some(g.to_string()),
                    known.copied(),
                    note.clone().or_else(|| Some(why.to_owned())),
                );
            }
        }
    }
    let verdict = verdict_of(finding, permission);
    let troubleshooter = state
        .troubleshooter
        .get(&(email.clone(), permission.to_owned()))
        .map(|t| match t {
            Troubleshot::Granted => "CAN_ACCESS",
            Troubleshot::NotGranted => "CANNOT_ACCESS",
            Troubleshot::Unknown => "UNKNOWN",
        });
    // A grant fixes what is lacking; never a denied permission (a deny rule overrides every grant).
    let fix = matches!(
        verdict,
        Status::Missing | Status::Conditional | Status::Unknown
    )
    .then(|| RequirementId::NodeSaPermissions.restore_role())
    .flatten()
    .map(|role| {
        gcloud_command(
            project,
            &Action::Grant {
                role,
                member: member.clone(),
            },
        )
    });
    PermissionTrace {
        permission: permission.to_owned(),
        verdict,
        grants,
        denied_by: finding
            .denied_by
            .iter()
            .filter(|d| d.permission == permission)
            .cloned()
            .collect(),
        troubleshooter,
        fix,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::domain::iam::{Policy, ProjectId, ProjectNumber};
    use crate::domain::state::{ApiState, Cluster, NodePool};

    const NODE_ROLE: &str = "roles/container.defaultNodeServiceAccount";
    const NODES: &str = "nodes@shop.iam.gserviceaccount.com";

    fn policy(bindings: serde_json::Value) -> Policy {
        serde_json::from_value(
            serde_json::json!({"version": 3, "etag": "BwE=", "bindings": bindings}),
        )
        .unwrap()
    }

    fn at(s: &str) -> SystemTime {
        condition::parse_timestamp(s).unwrap()
    }

    fn state(project: Policy, ancestors: Vec<(&str, Policy)>) -> ProjectState {
        ProjectState {
            project_id: ProjectId::parse("shop").unwrap(),
            project_number: ProjectNumber::parse("123").unwrap(),
            folders: vec!["111".to_owned()],
            container_api: ApiState::Enabled,
            clusters: vec![Cluster {
                name: "c1".to_owned(),
                location: "us-central1".to_owned(),
                autopilot: false,
                node_pools: vec![NodePool {
                    name: "p".to_owned(),
                    service_account: NODES.to_owned(),
                }],
                autoprovisioning_service_account: None,
            }],
            missing_zones: Vec::new(),
            policy: project,
            ancestors: ancestors
                .into_iter()
                .map(|(r, p)| (ResourceRef::parse(r).unwrap(), p))
                .collect(),
            accounts: BTreeMap::new(),
            troubleshooter: BTreeMap::new(),
            restorations: BTreeMap::new(),
            unreadable: Vec::new(),
            read_at: at("2026-12-01T00:00:00Z"),
            access: Default::default(),
        }
    }

    fn catalog() -> RoleCatalog {
        let mut c = RoleCatalog::default();
        c.insert(
            Role::parse(NODE_ROLE).unwrap(),
            RoleLookup::Found(NODE_SA_PERMISSIONS.iter().map(|p| p.to_string()).collect()),
        );
        c.insert(
            Role::parse("roles/logging.logWriter").unwrap(),
            RoleLookup::Found(["logging.logEntries.create".to_owned()].into()),
        );
        c.insert(
            Role::parse("roles/monitoring.metricWriter").unwrap(),
            RoleLookup::Found(
                [
                    "monitoring.timeSeries.create".to_owned(),
                    "monitoring.metricDescriptors.create".to_owned(),
                ]
                .into(),
            ),
        );
        c
    }

    fn email() -> ServiceAccountEmail {
        ServiceAccountEmail::parse(NODES).unwrap()
    }

    #[test]
    fn a_folder_grant_an_expired_condition_and_a_group_are_each_traced_with_scans_verdict() {
        let member = format!("serviceAccount:{NODES}");
        let s = state(
            policy(serde_json::json!([
                {"role": NODE_ROLE, "members": [member],
                 "condition": {"title": "until june", "expression": "request.time < timestamp('2026-06-30T00:00:00Z')"}},
                {"role": "roles/monitoring.metricWriter", "members": ["group:ops@example.com"]},
            ])),
            vec![(
                "folders/111",
                policy(serde_json::json!([
                    {"role": "roles/logging.logWriter", "members": [member]},
                ])),
            )],
        );
        let e = explain(&s, &catalog(), &email());
        let scan = evaluate::node_permissions(&s, &catalog(), &email());
        assert_eq!(e.status, scan.status);
        assert_eq!(e.status, Status::Missing);
        let by: BTreeMap<&str, &PermissionTrace> = e
            .permissions
            .iter()
            .map(|p| (p.permission.as_str(), p))
            .collect();

        let logging = by["logging.logEntries.create"];
        assert_eq!(logging.verdict, Status::Ok);
        assert!(logging.fix.is_none());
        let folder = logging
            .grants
            .iter()
            .find(|g| g.level == Level::Folder)
            .expect("the folder grant");
        assert_eq!(folder.resource, "folders/111");
        assert_eq!(folder.role, "roles/logging.logWriter");
        assert_eq!(folder.effect, Effect::Grants);
        let expired = logging
            .grants
            .iter()
            .find(|g| g.level == Level::Project)
            .expect("the expired project grant");
        let c = expired.condition.as_ref().unwrap();
        assert_eq!(c.now, ConditionNow::False);
        assert_eq!(c.title.as_deref(), Some("until june"));
        assert_eq!(expired.effect, Effect::Nothing);
        assert_eq!(expired.binding, 0);

        let ts = by["monitoring.timeSeries.create"];
        assert_eq!(ts.verdict, Status::Unknown, "only through a group");
        let group = ts.grants.iter().find(|g| g.via_group.is_some()).unwrap();
        assert_eq!(group.via_group.as_deref(), Some("group:ops@example.com"));
        assert_eq!(group.effect, Effect::Unknown);
        assert_eq!(group.binding, 1);

        let autoscaling = by["autoscaling.sites.writeMetrics"];
        assert_eq!(autoscaling.verdict, Status::Missing);
        assert_eq!(
            autoscaling.fix.as_deref(),
            Some(
                "gcloud projects add-iam-policy-binding shop --member=serviceAccount:nodes@shop.iam.gserviceaccount.com --role=roles/container.defaultNodeServiceAccount --condition=None"
            )
        );
        assert_eq!(e.clusters, vec!["us-central1/c1"]);
    }

    #[test]
    fn a_live_time_bound_grant_is_traced_with_its_end_and_the_account_is_ok_until_then() {
        let member = format!("serviceAccount:{NODES}");
        let s = state(
            policy(serde_json::json!([
                {"role": NODE_ROLE, "members": [member],
                 "condition": {"expression": "request.time < timestamp('2027-03-31T00:00:00Z')"}},
            ])),
            vec![],
        );
        let e = explain(&s, &catalog(), &email());
        assert_eq!(e.status, Status::Ok);
        assert_eq!(e.expires_at.as_deref(), Some("2027-03-31T00:00:00.000Z"));
        for p in &e.permissions {
            assert_eq!(p.verdict, Status::Ok);
            assert_eq!(p.grants.len(), 1);
            assert_eq!(p.grants[0].effect, Effect::GrantsUntil);
            let c = p.grants[0].condition.as_ref().unwrap();
            assert_eq!(c.expires_at.as_deref(), Some("2027-03-31T00:00:00.000Z"));
        }
        // A year later the same state explains it missing, as a scan then would.
        let mut later = s.clone();
        later.read_at += Duration::from_secs(366 * 86_400);
        let e = explain(&later, &catalog(), &email());
        assert_eq!(e.status, Status::Missing);
        assert!(e.permissions.iter().all(|p| p.fix.is_some()));
    }

    #[test]
    fn an_undecidable_condition_is_conditional_and_an_unreadable_role_unknown() {
        let member = format!("serviceAccount:{NODES}");
        let s = state(
            policy(serde_json::json!([
                {"role": NODE_ROLE, "members": [member],
                 "condition": {"expression": "resource.name.startsWith('projects/_/buckets/x')"}},
                {"role": "roles/custom.secret", "members": [member]},
            ])),
            vec![],
        );
        let mut roles = catalog();
        roles.insert(
            Role::parse("roles/custom.secret").unwrap(),
            RoleLookup::Unreadable("403".to_owned()),
        );
        let e = explain(&s, &roles, &email());
        let scan = evaluate::node_permissions(&s, &roles, &email());
        assert_eq!(e.status, scan.status);
        for p in &e.permissions {
            assert_eq!(p.verdict, Status::Conditional, "{p:?}");
            assert!(p.grants.iter().any(|g| g.effect == Effect::Conditional));
            assert!(
                p.grants
                    .iter()
                    .any(|g| g.effect == Effect::Unknown && g.note.is_some())
            );
        }
    }
}
