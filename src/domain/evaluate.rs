//! Evaluation: does live state satisfy each requirement? Pure; produces [`Finding`]s.
//!
//! Effective permissions come from the project's policy and its ancestors' policies through role
//! definitions. Conditional bindings are never counted as granted. A principal reached only through a
//! group is `unknown`, never `missing`. A finding says exactly which permissions or binding are absent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::Serialize;

use super::condition;
use super::deny::{self, DeniedBy, DenyVerdict, Subject};
use super::iam::{Member, MemberKind, Policy, ResourceRef, Role, ServiceAccountEmail};
use super::requirements::{self as req, CONTAINER_API, NODE_SA_PERMISSIONS, RequirementId};
use super::state::{
    AUTOMATIC_GRANTS_CONSTRAINT, AccountState, ApiState, OrgPolicyFact, ProjectState, RoleCatalog,
    RoleLookup, Troubleshot,
};

/// The verdict on one requirement for one principal.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Satisfied.
    Ok,
    /// Not satisfied: something is absent.
    Missing,
    /// Only satisfied through a conditional binding.
    Conditional,
    /// Cannot be decided from IAM alone (group membership, unreadable role or account).
    Unknown,
    /// The data read was partial (for example `missingZones`, or deny policies that could not be read).
    Incomplete,
    /// An IAM deny policy blocks a required permission: no grant can restore it.
    Denied,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Status {
    /// The status as written in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Missing => "missing",
            Self::Conditional => "conditional",
            Self::Unknown => "unknown",
            Self::Incomplete => "incomplete",
            Self::Denied => "denied",
        }
    }
}

/// The result of checking one requirement for one principal of one project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which requirement.
    pub requirement: RequirementId,
    /// The principal in member form (`serviceAccount:EMAIL`), if the requirement is about one.
    pub principal: Option<Member>,
    /// The verdict.
    pub status: Status,
    /// Required permissions the principal lacks (node-sa-permissions).
    pub missing_permissions: Vec<String>,
    /// Required permissions granted only under a condition.
    pub conditional_permissions: Vec<String>,
    /// Required permissions that may come through a group or an unreadable role.
    pub unknown_permissions: Vec<String>,
    /// The role whose binding restores the requirement, if any.
    pub role: Option<Role>,
    /// Clusters that use this principal (`location/name`).
    pub clusters: Vec<String>,
    /// Node pools that use this principal (`location/cluster/pool`).
    pub node_pools: Vec<String>,
    /// Where the grant comes from when satisfied (`roles/x on folders/1`).
    pub granted_via: Vec<String>,
    /// A sentence for people.
    pub detail: String,
    /// When a grant that holds now only for a time ends (RFC 3339): the finding is `ok` until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Required permissions an IAM deny policy blocks (status `denied`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denied_permissions: Vec<String>,
    /// The deny rules that block (or may block, `uncertain`) a required permission.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denied_by: Vec<DeniedBy>,
    /// An organization policy constraint that explains the gap (the Compute Engine default account
    /// created without roles under `iam.automaticIamGrantsForDefaultServiceAccounts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_policy: Option<String>,
    /// `ok` on the allow side, with deny policies that could not be read (Google's IAM v2 quota, no
    /// permission): which, and why. Not a problem: a deny rule can only take access away, and the
    /// next read (cached across runs) settles it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny_check: Option<DenyCheck>,
    /// What is known of the node service account (`node-sa-exists`, `node-sa-permissions`): enabled,
    /// disabled, deleted (with its unique id when known) or unreadable; `None` for other findings.
    /// Not in the JSON document (its `detail` says it); it picks the fix a person is shown.
    #[serde(skip)]
    pub account: Option<AccountState>,
}

/// Deny policies an `ok` verdict did not see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DenyCheck {
    /// Each attachment point not read, with why (`the deny policies of folders/1 (...)`).
    pub unread: Vec<String>,
}

impl Finding {
    fn new(
        requirement: RequirementId,
        principal: Option<Member>,
        status: Status,
        detail: String,
    ) -> Self {
        Self {
            requirement,
            principal,
            status,
            missing_permissions: Vec::new(),
            conditional_permissions: Vec::new(),
            unknown_permissions: Vec::new(),
            role: requirement.restore_role(),
            clusters: Vec::new(),
            node_pools: Vec::new(),
            granted_via: Vec::new(),
            detail,
            expires_at: None,
            denied_permissions: Vec::new(),
            denied_by: Vec::new(),
            org_policy: None,
            deny_check: None,
            account: None,
        }
    }
}

/// A node service account and where it is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeServiceAccount {
    /// The account (with `"default"` resolved to the Compute Engine default account).
    pub email: ServiceAccountEmail,
    /// Clusters using it (`location/name`).
    pub clusters: BTreeSet<String>,
    /// Node pools using it (`location/cluster/pool`).
    pub node_pools: BTreeSet<String>,
}

/// Every node service account of the project's clusters, resolving `"default"`.
pub fn node_service_accounts(state: &ProjectState) -> Vec<NodeServiceAccount> {
    let mut by_email: BTreeMap<ServiceAccountEmail, NodeServiceAccount> = BTreeMap::new();
    let resolve = |raw: &str| -> Option<ServiceAccountEmail> {
        if raw.is_empty() || raw == "default" {
            Some(ServiceAccountEmail::compute_default(&state.project_number))
        } else {
            ServiceAccountEmail::parse(raw).ok()
        }
    };
    for cluster in &state.clusters {
        let cluster_key = format!("{}/{}", cluster.location, cluster.name);
        let mut add = |raw: &str, pool: Option<&str>| {
            if let Some(email) = resolve(raw) {
                let entry = by_email
                    .entry(email.clone())
                    .or_insert_with(|| NodeServiceAccount {
                        email,
                        clusters: BTreeSet::new(),
                        node_pools: BTreeSet::new(),
                    });
                entry.clusters.insert(cluster_key.clone());
                if let Some(pool) = pool {
                    entry.node_pools.insert(format!("{cluster_key}/{pool}"));
                }
            }
        };
        for pool in &cluster.node_pools {
            add(&pool.service_account, Some(&pool.name));
        }
        if let Some(sa) = &cluster.autoprovisioning_service_account {
            add(sa, None);
        } else if cluster.autopilot {
            add("default", None);
        }
    }
    by_email.into_values().collect()
}

/// Roles whose definitions evaluation needs: roles of bindings that name a node service account or a
/// group, on the project and its ancestors.
pub fn roles_needed(state: &ProjectState) -> BTreeSet<Role> {
    let accounts: Vec<ServiceAccountEmail> = node_service_accounts(state)
        .into_iter()
        .map(|n| n.email)
        .collect();
    all_policies(state)
        .flat_map(|(_, p)| p.bindings.iter())
        .filter(|b| {
            b.members.iter().any(|m| {
                m.kind() == MemberKind::Group || accounts.iter().any(|a| m.is_service_account(a))
            })
        })
        .map(|b| b.role.clone())
        .collect()
}

/// The project's policy and its ancestors', nearest first, with the resource name of each.
pub fn all_policies(state: &ProjectState) -> impl Iterator<Item = (String, &Policy)> {
    std::iter::once((format!("projects/{}", state.project_id), &state.policy))
        .chain(state.ancestors.iter().map(|(r, p)| (r.to_string(), p)))
}

/// Whether the project is a GKE project (in scope of the checks).
pub fn is_gke_project(state: &ProjectState) -> bool {
    state.container_api == ApiState::Enabled || !state.clusters.is_empty()
}

/// Evaluates every requirement in `checks` for the project.
pub fn evaluate(
    state: &ProjectState,
    roles: &RoleCatalog,
    checks: &BTreeSet<RequirementId>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let robot = req::gke_service_agent(&state.project_number);
    match state.container_api {
        ApiState::Enabled => {
            if checks.contains(&RequirementId::ContainerApiEnabled) {
                findings.push(Finding::new(
                    RequirementId::ContainerApiEnabled,
                    None,
                    Status::Ok,
                    format!("{CONTAINER_API} is enabled"),
                ));
            }
        }
        ApiState::Disabled => {
            // The GKE service agent's binding outlives the API: its presence shows the project used GKE.
            let used_gke = all_policies(state)
                .flat_map(|(_, p)| p.bindings.iter())
                .any(|b| b.members.iter().any(|m| m.is_service_account(&robot)));
            if used_gke && checks.contains(&RequirementId::ContainerApiEnabled) {
                findings.push(Finding::new(
                    RequirementId::ContainerApiEnabled,
                    None,
                    Status::Missing,
                    format!("{CONTAINER_API} is disabled but the project has the GKE service agent: GKE cannot manage its clusters"),
                ));
            }
            if !is_gke_project(state) {
                return findings;
            }
        }
        ApiState::Unknown => {
            findings.push(Finding::new(
                RequirementId::ContainerApiEnabled,
                None,
                Status::Unknown,
                format!("could not determine whether {CONTAINER_API} is enabled"),
            ));
            return findings;
        }
    }
    if !is_gke_project(state) {
        return findings;
    }

    for (id, email) in [
        (RequirementId::GkeServiceAgent, robot),
        (
            RequirementId::GkeNodeServiceAgent,
            req::gke_node_service_agent(&state.project_number),
        ),
        (
            RequirementId::GoogleApisServiceAgent,
            req::google_apis_service_agent(&state.project_number),
        ),
    ] {
        if checks.contains(&id) {
            findings.push(evaluate_role_binding(state, id, &email));
        }
    }

    if !state.missing_zones.is_empty() && checks.contains(&RequirementId::NodeSaPermissions) {
        findings.push(Finding::new(
            RequirementId::NodeSaPermissions,
            None,
            Status::Incomplete,
            format!(
                "clusters in zones {} could not be listed; their node service accounts were not checked",
                state.missing_zones.join(", ")
            ),
        ));
    }

    for node_sa in node_service_accounts(state) {
        let member = Member::service_account(&node_sa.email);
        let account = state.accounts.get(&node_sa.email);
        if checks.contains(&RequirementId::NodeSaExists) {
            let mut f = evaluate_existence(&node_sa, account, &member);
            f.account = account.cloned();
            f.clusters = node_sa.clusters.iter().cloned().collect();
            f.node_pools = node_sa.node_pools.iter().cloned().collect();
            findings.push(f);
        }
        if checks.contains(&RequirementId::NodeSaPermissions) {
            let mut f = evaluate_permissions(state, roles, &node_sa.email, account);
            f.account = account.cloned();
            f.clusters = node_sa.clusters.iter().cloned().collect();
            f.node_pools = node_sa.node_pools.iter().cloned().collect();
            findings.push(f);
        }
    }
    findings
}

fn evaluate_existence(
    node_sa: &NodeServiceAccount,
    account: Option<&AccountState>,
    member: &Member,
) -> Finding {
    let email = &node_sa.email;
    let (status, detail) = match account {
        Some(AccountState::Active { .. }) => (Status::Ok, format!("{email} exists and is enabled")),
        Some(AccountState::Disabled { .. }) => (
            Status::Missing,
            format!("{email} is disabled: nodes cannot authenticate"),
        ),
        Some(AccountState::Deleted { unique_id }) => (
            Status::Missing,
            match unique_id {
                Some(uid) => format!(
                    "{email} was deleted (unique id {uid}); it can be undeleted within 30 days"
                ),
                None => format!("{email} does not exist"),
            },
        ),
        Some(AccountState::Unknown { reason }) => {
            (Status::Unknown, format!("could not read {email}: {reason}"))
        }
        None => (
            Status::Unknown,
            format!("existence of {email} was not checked"),
        ),
    };
    Finding::new(
        RequirementId::NodeSaExists,
        Some(member.clone()),
        status,
        detail,
    )
}

#[derive(Default)]
struct PermissionTally {
    granted: BTreeMap<String, Vec<String>>,
    /// Per permission granted only through time-bound grants: the latest end among them.
    until: BTreeMap<String, SystemTime>,
    conditional: BTreeSet<String>,
    unknown: BTreeSet<String>,
    /// Permissions a time-bound grant gave until it ended (or will give once it starts).
    lapsed: BTreeSet<String>,
}

/// How a binding's condition bears on its grant now.
enum Grant {
    /// No condition, or one that holds now for good.
    Always,
    /// Holds now, until then.
    Until(SystemTime),
    /// False now (expired, or not started): grants nothing.
    Never,
    /// Undecidable: needs review.
    Conditional,
}

fn grant_of(binding: &super::iam::Binding, now: SystemTime) -> Grant {
    match &binding.condition {
        None => Grant::Always,
        Some(c) => match condition::evaluate(&c.expression, now) {
            condition::Verdict::True { expires_at: None } => Grant::Always,
            condition::Verdict::True {
                expires_at: Some(t),
            } => Grant::Until(t),
            condition::Verdict::False => Grant::Never,
            condition::Verdict::Unknown => Grant::Conditional,
        },
    }
}

fn stamp(t: SystemTime) -> String {
    crate::clock::rfc3339(t, crate::clock::Precision::Millis)
}

/// The `node-sa-permissions` verdict for one service account of the project (node account or not):
/// what `scan` reports for a node account, without its clusters.
pub fn node_permissions(
    state: &ProjectState,
    roles: &RoleCatalog,
    email: &ServiceAccountEmail,
) -> Finding {
    evaluate_permissions(state, roles, email, state.accounts.get(email))
}

fn evaluate_permissions(
    state: &ProjectState,
    roles: &RoleCatalog,
    email: &ServiceAccountEmail,
    account: Option<&AccountState>,
) -> Finding {
    let member = Member::service_account(email);
    let mut tally = PermissionTally::default();
    for (resource, policy) in all_policies(state) {
        for binding in &policy.bindings {
            let (through, via_group) = group_grant(binding, email, &state.access.memberships);
            let direct =
                binding.members.iter().any(|m| m.is_service_account(email)) || through.is_some();
            if !direct && !via_group {
                continue;
            }
            let via_text = match &through {
                Some(g) if !binding.members.iter().any(|m| m.is_service_account(email)) => {
                    format!(" through {g}")
                }
                _ => String::new(),
            };
            let relevant: Vec<String> = match roles.get(&binding.role) {
                RoleLookup::Found(perms) => NODE_SA_PERMISSIONS
                    .iter()
                    .filter(|p| perms.contains(**p))
                    .map(|p| p.to_string())
                    .collect(),
                RoleLookup::NotFound => Vec::new(),
                RoleLookup::Unreadable(_) => {
                    tally
                        .unknown
                        .extend(NODE_SA_PERMISSIONS.iter().map(|p| p.to_string()));
                    Vec::new()
                }
            };
            let grant = grant_of(binding, state.read_at);
            for perm in relevant {
                if !direct {
                    tally.unknown.insert(perm);
                    continue;
                }
                match grant {
                    Grant::Always => {
                        tally.until.remove(&perm);
                        tally
                            .granted
                            .entry(perm)
                            .or_default()
                            .push(format!("{} on {resource}{via_text}", binding.role));
                    }
                    Grant::Until(t) => {
                        let permanent =
                            tally.granted.contains_key(&perm) && !tally.until.contains_key(&perm);
                        if !permanent {
                            let end = tally.until.entry(perm.clone()).or_insert(t);
                            *end = (*end).max(t);
                        }
                        tally.granted.entry(perm).or_default().push(format!(
                            "{} on {resource}{via_text} until {}",
                            binding.role,
                            stamp(t)
                        ));
                    }
                    Grant::Never => {
                        tally.lapsed.insert(perm);
                    }
                    Grant::Conditional => {
                        tally.conditional.insert(perm);
                    }
                }
            }
        }
    }
    let mut missing = Vec::new();
    let mut conditional = Vec::new();
    let mut unknown = Vec::new();
    let mut via = BTreeSet::new();
    for perm in NODE_SA_PERMISSIONS {
        let answer = state.troubleshooter.get(&(email.clone(), perm.to_owned()));
        if let Some(sources) = tally.granted.get(perm) {
            via.extend(sources.iter().cloned());
        } else if answer == Some(&Troubleshot::Granted) {
            via.insert("Policy Troubleshooter: CAN_ACCESS".to_owned());
        } else if tally.conditional.contains(perm) {
            conditional.push(perm.to_owned());
        } else if tally.unknown.contains(perm) && answer != Some(&Troubleshot::NotGranted) {
            unknown.push(perm.to_owned());
        } else {
            missing.push(perm.to_owned());
        }
    }
    let gone = matches!(account, Some(AccountState::Deleted { .. }));
    if !state.unreadable.is_empty() && !gone {
        // A grant may sit in a policy we could not read: never call that missing.
        unknown.append(&mut missing);
    }
    // Deny policies override every grant: a denied permission is denied whatever was found above.
    let unique_id = match account {
        Some(
            AccountState::Active { unique_id }
            | AccountState::Disabled { unique_id }
            | AccountState::Deleted { unique_id },
        ) => unique_id.as_deref(),
        _ => None,
    };
    let (denied, denied_by) = deny_pass(
        state,
        email,
        unique_id,
        &mut missing,
        &mut conditional,
        &mut unknown,
    );
    let (status, detail) = if !denied.is_empty() {
        let policies: BTreeSet<&str> = denied_by
            .iter()
            .filter(|b| b.uncertain.is_none())
            .map(|b| b.policy.as_str())
            .collect();
        let mut d = format!(
            "{email} is denied {} by the IAM deny policy {}: a deny rule overrides every grant, so granting a role cannot restore it",
            denied.join(", "),
            policies.into_iter().collect::<Vec<_>>().join(", ")
        );
        if !missing.is_empty() {
            d.push_str(&format!("; it also lacks {}", missing.join(", ")));
        }
        (Status::Denied, d)
    } else if !missing.is_empty() {
        let mut d = format!("{email} lacks {}", missing.join(", "));
        if gone {
            d.push_str(" (the account is deleted)");
        } else if missing.iter().any(|p| tally.lapsed.contains(p)) {
            d.push_str(" (a time-bound grant of it is not in effect now: expired or not started; it is left as it is)");
        }
        (Status::Missing, d)
    } else if !conditional.is_empty() {
        (
            Status::Conditional,
            format!(
                "{email} holds {} only under an IAM condition",
                conditional.join(", ")
            ),
        )
    } else if let Some(by) = denied_by
        .iter()
        .find(|b| b.uncertain.is_some() && unknown.contains(&b.permission))
    {
        let maybe: Vec<&str> = denied_by
            .iter()
            .filter(|b| b.uncertain.is_some() && unknown.contains(&b.permission))
            .map(|b| b.permission.as_str())
            .collect();
        (
            Status::Unknown,
            format!(
                "{email} is granted {}, but the IAM deny policy {} may block it: {}",
                maybe.join(", "),
                by.policy,
                by.uncertain.as_deref().unwrap_or_default()
            ),
        )
    } else if !unknown.is_empty() {
        let why = if state.unreadable.is_empty() {
            "only through a group or an unreadable role".to_owned()
        } else {
            format!(
                "only through a group, an unreadable role, or {}",
                state.unreadable.join(", ")
            )
        };
        (
            Status::Unknown,
            format!("{email} may hold {} {why}", unknown.join(", ")),
        )
    } else if !state.access.deny_unreadable.is_empty() {
        (
            Status::Ok,
            format!(
                "{email} holds every node permission; not checked against deny policies that could not be read: {}",
                state.access.deny_unreadable.join(", ")
            ),
        )
    } else {
        (Status::Ok, format!("{email} holds every node permission"))
    };
    let mut f = Finding::new(
        RequirementId::NodeSaPermissions,
        Some(member),
        status,
        detail,
    );
    f.denied_permissions = denied;
    f.denied_by = denied_by;
    if status == Status::Ok && !state.access.deny_unreadable.is_empty() {
        f.deny_check = Some(DenyCheck {
            unread: state.access.deny_unreadable.clone(),
        });
    }
    org_policy_cause(state, email, &mut f);
    if status == Status::Ok {
        // Time-bound: the permissions hold until the first of them ends.
        f.expires_at = tally.until.values().min().map(|t| stamp(*t));
        if let Some(end) = &f.expires_at {
            f.detail = format!("{} until {end} (a time-bound grant)", f.detail);
        }
    }
    f.missing_permissions = missing;
    f.conditional_permissions = conditional;
    f.unknown_permissions = unknown;
    f.granted_via = via.into_iter().collect();
    f
}

/// Whether a binding reaches `email` through a group: the group known (Cloud Identity) to contain
/// it, and whether some other group of the binding may.
fn group_grant(
    binding: &super::iam::Binding,
    email: &ServiceAccountEmail,
    memberships: &deny::Memberships,
) -> (Option<String>, bool) {
    let mut through = None;
    let mut maybe = false;
    for m in binding
        .members
        .iter()
        .filter(|m| m.kind() == MemberKind::Group)
    {
        let group = m.as_str().trim_start_matches("group:").to_ascii_lowercase();
        match memberships.get(&(group, email.as_str().to_ascii_lowercase())) {
            Some(true) => through = Some(m.to_string()),
            Some(false) => {}
            None => maybe = true,
        }
    }
    (through, maybe)
}

/// The resources an account of the checked project lives under (`projects/NUMBER`, its folders, its
/// organization); empty for accounts of other projects (where they live is not known here).
fn account_home(state: &ProjectState, email: &ServiceAccountEmail) -> Vec<String> {
    let own = email
        .as_str()
        .ends_with(&format!("@{}.iam.gserviceaccount.com", state.project_id))
        || *email == ServiceAccountEmail::compute_default(&state.project_number);
    if !own {
        return Vec::new();
    }
    std::iter::once(format!("projects/{}", state.project_number))
        .chain(state.ancestors.iter().map(|(r, _)| r.to_string()))
        .collect()
}

/// Applies the deny policies to the required permissions: a denied permission leaves every other
/// list; one that may be denied is no longer counted as held. Returns the denied permissions and
/// the rules involved.
fn deny_pass(
    state: &ProjectState,
    email: &ServiceAccountEmail,
    unique_id: Option<&str>,
    missing: &mut Vec<String>,
    conditional: &mut Vec<String>,
    unknown: &mut Vec<String>,
) -> (Vec<String>, Vec<DeniedBy>) {
    let mut denied = Vec::new();
    let mut by = Vec::new();
    if state.access.deny_policies.is_empty() {
        return (denied, by);
    }
    let under = account_home(state, email);
    let subject = Subject {
        email,
        under: &under,
        memberships: &state.access.memberships,
        unique_id,
    };
    for perm in NODE_SA_PERMISSIONS {
        match deny::evaluate(&state.access.deny_policies, &subject, perm, state.read_at) {
            DenyVerdict::NotDenied => {}
            DenyVerdict::Denied(rule) => {
                missing.retain(|p| p != perm);
                conditional.retain(|p| p != perm);
                unknown.retain(|p| p != perm);
                denied.push(perm.to_owned());
                by.push(rule);
            }
            DenyVerdict::Unknown(mut rule) => {
                let held = ![&*missing, &*conditional, &*unknown]
                    .iter()
                    .any(|l| l.iter().any(|p| p == perm));
                // The Policy Troubleshooter (v3) answers with allow and deny policies applied: for a
                // permission the allow policies grant, CAN_ACCESS means no deny rule applies and
                // CANNOT_ACCESS that one does.
                match (
                    held,
                    state.troubleshooter.get(&(email.clone(), perm.to_owned())),
                ) {
                    (true, Some(Troubleshot::Granted)) => {}
                    (true, Some(Troubleshot::NotGranted)) => {
                        rule.uncertain = None;
                        denied.push(perm.to_owned());
                        by.push(rule);
                    }
                    (true, _) => {
                        unknown.push(perm.to_owned());
                        by.push(rule);
                    }
                    (false, _) => by.push(rule),
                }
            }
        }
    }
    (denied, by)
}

/// Names the org policy that left the Compute Engine default account without roles, when it is
/// enforced and that account lacks (or is denied) what it needs.
fn org_policy_cause(state: &ProjectState, email: &ServiceAccountEmail, f: &mut Finding) {
    let default_account = *email == ServiceAccountEmail::compute_default(&state.project_number);
    if default_account
        && matches!(f.status, Status::Missing | Status::Denied)
        && state.access.automatic_grants == OrgPolicyFact::Enforced
    {
        f.detail.push_str(&format!(
            " (the organization policy constraint {AUTOMATIC_GRANTS_CONSTRAINT} is enforced on this project: the Compute Engine default service account was created without any role and needs {} granted explicitly)",
            f.role.as_ref().map_or("its roles", |r| r.as_str())
        ));
        f.org_policy = Some(format!("constraints/{AUTOMATIC_GRANTS_CONSTRAINT}"));
    }
}

fn evaluate_role_binding(
    state: &ProjectState,
    id: RequirementId,
    email: &ServiceAccountEmail,
) -> Finding {
    let role = id
        .restore_role()
        .expect("agent requirements are restored by a role");
    let member = Member::service_account(email);
    let mut via = Vec::new();
    let mut conditional = false;
    let mut until: Option<SystemTime> = None;
    let mut permanent = false;
    for (resource, policy) in all_policies(state) {
        for b in policy
            .bindings
            .iter()
            .filter(|b| b.role == role && b.members.contains(&member))
        {
            match grant_of(b, state.read_at) {
                Grant::Always => {
                    permanent = true;
                    via.push(format!("{role} on {resource}"));
                }
                Grant::Until(t) => {
                    until = Some(until.map_or(t, |u| u.max(t)));
                    via.push(format!("{role} on {resource} until {}", stamp(t)));
                }
                Grant::Never => {}
                Grant::Conditional => conditional = true,
            }
        }
    }
    let expires_at = until.filter(|_| !permanent).map(stamp);
    let (status, detail) = if !via.is_empty() {
        match &expires_at {
            Some(end) => (
                Status::Ok,
                format!("{email} holds {role} until {end} (a time-bound grant)"),
            ),
            None => (Status::Ok, format!("{email} holds {role}")),
        }
    } else if conditional {
        (
            Status::Conditional,
            format!("{email} holds {role} only under an IAM condition"),
        )
    } else if !state.unreadable.is_empty() {
        let unread = state.unreadable.join(", ");
        (
            Status::Unknown,
            format!("{email} lacks {role} on the project; {unread} could not be read"),
        )
    } else {
        (Status::Missing, format!("{email} lacks the binding {role}"))
    };
    let mut f = Finding::new(id, Some(member), status, detail);
    f.granted_via = via;
    f.expires_at = expires_at;
    f
}

/// Groups whose (transitive) membership of `email` would settle an `unknown` verdict and is not
/// known yet: groups bound to a role granting one of `permissions` (or a role that could not be
/// read) on the project or an ancestor, and groups the deny rules name. Lower case, sorted.
pub fn groups_to_resolve(
    state: &ProjectState,
    roles: &RoleCatalog,
    email: &ServiceAccountEmail,
    permissions: &[String],
) -> Vec<String> {
    let mut out: BTreeSet<String> = all_policies(state)
        .flat_map(|(_, p)| p.bindings.iter())
        .filter(|b| match roles.get(&b.role) {
            RoleLookup::Found(perms) => permissions.iter().any(|p| perms.contains(p)),
            RoleLookup::NotFound => false,
            RoleLookup::Unreadable(_) => true,
        })
        .flat_map(|b| b.members.iter())
        .filter(|m| m.kind() == MemberKind::Group)
        .map(|m| m.as_str().trim_start_matches("group:").to_ascii_lowercase())
        .collect();
    out.extend(deny::groups_named(&state.access.deny_policies));
    let who = email.as_str().to_ascii_lowercase();
    out.into_iter()
        .filter(|g| {
            !state
                .access
                .memberships
                .contains_key(&(g.clone(), who.clone()))
        })
        .collect()
}

/// Unique ids of deleted service accounts, from `deleted:serviceAccount:EMAIL?uid=N` members.
pub fn deleted_accounts(policies: &[&Policy]) -> BTreeMap<ServiceAccountEmail, String> {
    policies
        .iter()
        .flat_map(|p| p.bindings.iter().flat_map(|b| b.members.iter()))
        .filter_map(|m| {
            let (email, uid) = m.deleted_service_account()?;
            Some((ServiceAccountEmail::parse(email).ok()?, uid.to_owned()))
        })
        .collect()
}

/// A resource and its policy, for callers building [`ProjectState::ancestors`].
pub type AncestorPolicy = (ResourceRef, Policy);
