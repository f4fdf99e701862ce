//! The state before the plan as the plan alone shows it (`--no-live`, and projects the plan
//! creates): the `before` values of every resource the plan knows, applied to an empty project,
//! plus what Google itself grants in a new project. Pure.
//!
//! What this cannot know is said, not guessed: grants the configuration does not manage, clusters
//! it does not manage (members of `roles/container.defaultNodeServiceAccount` are taken as node
//! accounts), a project's number when the plan does not show it (its GKE service agents are then
//! not identified), which folders a project is under (every folder and organization in the plan is
//! taken as above every project in it), role definitions other than the usual node roles.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde_json::Value;

use super::apply;
use super::changes::{self, Change, Scope, What};
use super::terraform::{Action, Plan, ResourceChange};
use crate::domain::iam::{
    Binding, Member, Policy, ProjectId, ProjectNumber, ResourceRef, Role, ServiceAccountEmail,
};
use crate::domain::requirements::{
    CONTAINER_API, NODE_SA_PERMISSIONS, ROLE_DEFAULT_NODE_SA, ROLE_EDITOR,
    ROLE_GKE_NODE_SERVICE_AGENT, ROLE_GKE_SERVICE_AGENT,
};
use crate::domain::state::{
    AccountState, ApiState, Cluster, NodePool, ProjectState, RoleCatalog, RoleLookup,
};

/// The node permissions of the roles usually granted for them, as Google defines them: what
/// `--no-live` knows without reading role definitions.
pub fn builtin_catalog() -> RoleCatalog {
    let all: BTreeSet<String> = NODE_SA_PERMISSIONS
        .iter()
        .map(|p| (*p).to_owned())
        .collect();
    let some = |ps: &[&str]| ps.iter().map(|p| (*p).to_owned()).collect::<BTreeSet<_>>();
    let mut c = RoleCatalog::default();
    for (role, perms) in [
        (ROLE_DEFAULT_NODE_SA, all.clone()),
        (ROLE_EDITOR, all.clone()),
        ("roles/owner", all),
        (
            "roles/logging.logWriter",
            some(&["logging.logEntries.create"]),
        ),
        (
            "roles/monitoring.metricWriter",
            some(&[
                "monitoring.timeSeries.create",
                "monitoring.metricDescriptors.create",
            ]),
        ),
        (
            "roles/autoscaling.metricsWriter",
            some(&["autoscaling.sites.writeMetrics"]),
        ),
        ("roles/viewer", BTreeSet::new()),
        (ROLE_GKE_SERVICE_AGENT, BTreeSet::new()),
        (ROLE_GKE_NODE_SERVICE_AGENT, BTreeSet::new()),
    ] {
        c.insert(
            Role::parse(role).expect("constant role"),
            RoleLookup::Found(perms),
        );
    }
    c
}

/// A catalog for `roles`: the built-in definitions, and "not read" for the others.
pub fn catalog_for(roles: impl IntoIterator<Item = Role>) -> RoleCatalog {
    let mut c = builtin_catalog();
    for r in roles {
        if !c.contains(&r) {
            c.insert(r, RoleLookup::Unreadable("not read (--no-live)".to_owned()));
        }
    }
    c
}

/// The project number a plan shows for a project: a `google_project` resource or data source, or
/// the number in its GKE service agents' or default accounts' emails granted on it.
pub fn number_of(plan: &Plan, project: &str, changes: &[Change]) -> Option<String> {
    for rc in &plan.changes {
        if rc.kind == "google_project" {
            for side in [&rc.after, &rc.before] {
                if side.get("project_id").and_then(Value::as_str) == Some(project)
                    && let Some(n) = side.get("number").and_then(Value::as_str)
                {
                    return Some(n.to_owned());
                }
            }
        }
    }
    for (kind, values) in plan.prior.values() {
        if kind == "google_project"
            && values.get("project_id").and_then(Value::as_str) == Some(project)
            && let Some(n) = values.get("number").and_then(Value::as_str)
        {
            return Some(n.to_owned());
        }
    }
    let mut found = BTreeSet::new();
    for c in changes.iter().filter(|c| c.project() == Some(project)) {
        for m in members_of(&c.what) {
            if let Some(n) = agent_number(m.as_str()) {
                found.insert(n);
            }
        }
    }
    (found.len() == 1).then(|| found.into_iter().next().expect("one"))
}

/// The project number in an agent's or default account's email.
fn agent_number(member: &str) -> Option<String> {
    let email = member.strip_prefix("serviceAccount:")?;
    let (local, domain) = email.split_once('@')?;
    let digits = match domain {
        "container-engine-robot.iam.gserviceaccount.com"
        | "gcp-sa-gkenode.iam.gserviceaccount.com" => local.strip_prefix("service-")?,
        "cloudservices.gserviceaccount.com" => local,
        "developer.gserviceaccount.com" => local.strip_suffix("-compute")?,
        _ => return None,
    };
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.to_owned())
}

fn members_of(what: &What) -> Vec<&Member> {
    match what {
        What::Policy { after: Some(p) } => p.bindings.iter().flat_map(|b| &b.members).collect(),
        What::Binding {
            after: Some((_, ms)),
            ..
        } => ms.iter().collect(),
        What::Member { before, after } => before
            .iter()
            .chain(after.iter())
            .map(|g| &g.member)
            .collect(),
        What::MemberRemove { grant } => vec![&grant.member],
        _ => Vec::new(),
    }
}

/// The plan's view of what exists before it: every resource with a `before` value, as if created.
pub fn before_changes(plan: &Plan) -> Vec<Change> {
    let existing: Vec<ResourceChange> = plan
        .changes
        .iter()
        .filter(|rc| !rc.before.is_null() && changes::KINDS.contains(&rc.kind.as_str()))
        .map(|rc| ResourceChange {
            action: Action::Create,
            after: rc.before.clone(),
            after_unknown: Value::Null,
            before: Value::Null,
            ..rc.clone()
        })
        .collect();
    let view = Plan {
        format_version: plan.format_version.clone(),
        terraform_version: plan.terraform_version.clone(),
        changes: existing,
        prior: plan.prior.clone(),
        config: plan.config.clone(),
    };
    changes::relevant(&view)
}

/// An empty project: nothing granted, nothing running, the Container API on.
pub fn empty_state(id: ProjectId, number: ProjectNumber) -> ProjectState {
    ProjectState {
        project_id: id,
        project_number: number,
        folders: Vec::new(),
        container_api: ApiState::Enabled,
        clusters: Vec::new(),
        missing_zones: Vec::new(),
        policy: Policy::default(),
        ancestors: Vec::new(),
        accounts: BTreeMap::new(),
        troubleshooter: BTreeMap::new(),
        restorations: BTreeMap::new(),
        unreadable: Vec::new(),
        read_at: SystemTime::now(),
        access: Default::default(),
    }
}

/// What Google grants in a new project once the Container API is enabled: the GKE service agents'
/// roles, `roles/editor` to the Google APIs service agent and (unless an org policy keeps it from
/// default accounts) to the Compute Engine default account.
pub fn google_grants(state: &mut ProjectState, default_account_editor: bool) {
    let n = &state.project_number;
    let mut grant = |role: &str, email: ServiceAccountEmail| {
        let role = Role::parse(role).expect("constant role");
        state
            .policy
            .add_member(&role, &Member::service_account(&email));
    };
    grant(
        ROLE_GKE_SERVICE_AGENT,
        crate::domain::requirements::gke_service_agent(n),
    );
    grant(
        ROLE_GKE_NODE_SERVICE_AGENT,
        crate::domain::requirements::gke_node_service_agent(n),
    );
    grant(
        ROLE_EDITOR,
        crate::domain::requirements::google_apis_service_agent(n),
    );
    if default_account_editor {
        grant(ROLE_EDITOR, ServiceAccountEmail::compute_default(n));
    }
    state.accounts.insert(
        ServiceAccountEmail::compute_default(n),
        AccountState::Active { unique_id: None },
    );
}

/// In a break of a project whose number is not known, its agents and default accounts (built from
/// the placeholder number) are written with `NUMBER` (`NUMBER-compute@developer.gserviceaccount.com`).
pub fn name_unknown_number(b: &mut super::verdict::Break) {
    fn fix(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < text.len() {
            let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
            let rest = &text[i..];
            let hit = ["0-compute@developer.", "0@cloudservices."]
                .iter()
                .find(|p| boundary && rest.starts_with(**p));
            if let Some(p) = hit {
                out.push_str("NUMBER");
                out.push_str(&p[1..]);
                i += p.len();
            } else if rest.starts_with("service-0@") {
                out.push_str("service-NUMBER@");
                i += "service-0@".len();
            } else {
                let c = rest.chars().next().expect("not at the end");
                out.push(c);
                i += c.len_utf8();
            }
        }
        out
    }
    b.principal = b.principal.as_deref().map(fix);
    b.change = fix(&b.change);
    b.detail = fix(&b.detail);
    b.fix = fix(&b.fix);
}

/// The project standing for any project under the folders and organizations a plan changes.
pub const ANY_PROJECT: &str = "any-project";

/// Placeholder number for a project whose number the plan does not show.
pub const UNKNOWN_NUMBER: &str = "0";

/// The ancestors the plan names (folders, then organizations), for `--no-live` states.
pub fn plan_ancestors(changes: &[Change]) -> Vec<ResourceRef> {
    let mut folders = BTreeSet::new();
    let mut orgs = BTreeSet::new();
    for c in changes {
        match &c.scope {
            Scope::Folder(f) => {
                folders.insert(f.clone());
            }
            Scope::Organization(o) => {
                orgs.insert(o.clone());
            }
            _ => {}
        }
    }
    folders
        .into_iter()
        .filter_map(|f| ResourceRef::parse(&format!("folders/{f}")).ok())
        .chain(
            orgs.into_iter()
                .filter_map(|o| ResourceRef::parse(&format!("organizations/{o}")).ok()),
        )
        .collect()
}

/// The state of `project` before the plan, from the plan alone; and what could not be known.
pub fn state_before(
    plan: &Plan,
    project: &str,
    befores: &[Change],
    all: &[Change],
    ancestors: &[ResourceRef],
) -> (ProjectState, Vec<String>) {
    let mut notes = Vec::new();
    let number = number_of(plan, project, all).or_else(|| number_of(plan, project, befores));
    let (id, number) = match (ProjectId::parse(project), number) {
        (Ok(id), Some(n)) => (id, n),
        (Ok(id), None) if project == ANY_PROJECT => (id, UNKNOWN_NUMBER.to_owned()),
        (Ok(id), None) => {
            notes.push(format!(
                "the number of project {project} is not in the plan: its GKE service agents (service-NUMBER@...) and Compute Engine default account could not be identified"
            ));
            (id, UNKNOWN_NUMBER.to_owned())
        }
        // Named by number (a deny policy's parent), or by something that is not an id: an id of
        // our own for it.
        (Err(_), number) => {
            let digits = project.bytes().all(|b| b.is_ascii_digit());
            let safe: String = project
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            (
                ProjectId::parse(&format!("project-{safe}")).expect("letters, digits and hyphens"),
                if digits {
                    project.to_owned()
                } else {
                    number.unwrap_or_else(|| UNKNOWN_NUMBER.to_owned())
                },
            )
        }
    };
    let number = ProjectNumber::parse(&number)
        .unwrap_or_else(|_| ProjectNumber::parse(UNKNOWN_NUMBER).expect("digits"));
    let mut state = empty_state(id, number);
    state.ancestors = ancestors
        .iter()
        .map(|r| (r.clone(), Policy::default()))
        .collect();
    // What Google grants once the Container API is on (the project is taken to use GKE), then what
    // the configuration manages, then the grants the plan removes one by one (they must exist).
    let assumed = state.project_number.as_str() != UNKNOWN_NUMBER;
    if assumed {
        google_grants(&mut state, true);
        notes.push(format!(
            "the live policy of project {} was not read: the GKE service agents and the Compute Engine default account are taken to hold what Google grants them",
            state.project_id
        ));
    }
    let applied = apply::apply(&state, befores);
    let mut state = applied.state;
    for c in all {
        if let What::MemberRemove { grant } = &c.what
            && apply::touches(&state, c)
        {
            state.policy.add_member(&grant.key.role, &grant.member);
        }
    }
    if assumed {
        // A grant the plan takes away on a folder or organization is taken to be the only one: the
        // project-level grant assumed above is not kept beside it.
        let own = format!("projects/{}", state.project_id);
        let effects = apply::apply(&state, all).effects;
        for (_, e) in effects {
            if let apply::Effect::RemovedGrant {
                resource,
                role,
                member,
                ..
            } = e
                && resource != own
            {
                for b in state.policy.bindings.iter_mut().filter(|b| b.role == role) {
                    b.members
                        .retain(|m| !m.as_str().eq_ignore_ascii_case(member.as_str()));
                }
                state.policy.bindings.retain(|b| !b.members.is_empty());
            }
        }
    }
    // Accounts the plan manages that exist before it.
    for c in befores {
        if let What::ServiceAccount {
            email: Some(e),
            disabled_after,
            ..
        } = &c.what
        {
            let s = if *disabled_after {
                AccountState::Disabled { unique_id: None }
            } else {
                AccountState::Active { unique_id: None }
            };
            state.accounts.insert(e.clone(), s);
        }
    }
    // Members of the node role are node accounts (their clusters are not in the plan).
    let role = Role::parse(ROLE_DEFAULT_NODE_SA).expect("constant role");
    let holders: BTreeSet<ServiceAccountEmail> = crate::domain::evaluate::all_policies(&state)
        .flat_map(|(_, p)| p.bindings.iter())
        .filter(|b: &&Binding| b.role == role)
        .flat_map(|b| b.members.iter())
        .filter_map(|m| m.as_str().strip_prefix("serviceAccount:"))
        .filter_map(|e| ServiceAccountEmail::parse(e).ok())
        .filter(|e| {
            !state.clusters.iter().any(|c| {
                c.node_pools
                    .iter()
                    .any(|p| p.service_account.eq_ignore_ascii_case(e.as_str()))
            })
        })
        .collect();
    if !holders.is_empty() {
        notes.push(format!(
            "clusters of project {} are not in the plan: the members of {ROLE_DEFAULT_NODE_SA} ({}) are taken as its node accounts",
            state.project_id,
            holders.iter().map(ServiceAccountEmail::as_str).collect::<Vec<_>>().join(", ")
        ));
        state.clusters.push(Cluster {
            name: "(not in the plan)".to_owned(),
            location: "-".to_owned(),
            autopilot: false,
            node_pools: holders
                .iter()
                .map(|e| NodePool {
                    name: format!("(a pool running as {e})"),
                    service_account: e.to_string(),
                })
                .collect(),
            autoprovisioning_service_account: None,
        });
    }
    if project != ANY_PROJECT {
        notes.push(format!(
            "grants to project {} that this configuration does not manage were not read",
            state.project_id
        ));
    }
    (state, notes)
}

/// Roles whose grants GKE may need: the requirement list's and those holding node permissions.
fn gke_role(role: &Role) -> bool {
    matches!(
        builtin_catalog().get(role),
        RoleLookup::Found(perms) if !perms.is_empty()
    ) || [ROLE_GKE_SERVICE_AGENT, ROLE_GKE_NODE_SERVICE_AGENT].contains(&role.as_str())
}

/// What the plan alone cannot settle about the changes applied to one project, and the deny rules
/// that would block any node account (the plan may not show which accounts run nodes).
pub fn plan_only_findings(
    applied: &apply::Applied,
    changes: &[Change],
    found: &[super::verdict::Break],
) -> (Vec<super::verdict::Break>, Vec<String>) {
    use crate::domain::deny::{self, DenyVerdict, Subject};
    let state = &applied.state;
    let mut breaks = Vec::new();
    let mut notes = Vec::new();
    let nodes: BTreeSet<ServiceAccountEmail> =
        crate::domain::evaluate::node_service_accounts(state)
            .into_iter()
            .map(|n| n.email)
            .collect();
    for &i in &applied.applied {
        let c = &changes[i];
        match &c.what {
            What::ServiceAccount {
                email: Some(e),
                deleted,
                disabled_after,
                disabled_before,
                ..
            } if (*deleted || (*disabled_after && !*disabled_before)) && !nodes.contains(e) => {
                notes.push(format!(
                    "{}: whether node pools run as {e} is not known without live state",
                    c.address
                ));
            }
            What::OrgPolicy {
                enforced_after: true,
            } if !found.iter().any(|b| b.address == c.address) => notes.push(format!(
                "{}: whether the Compute Engine default account of {} runs nodes without {ROLE_DEFAULT_NODE_SA} is not known without live state",
                c.address, state.project_id
            )),
            What::Binding {
                after: Some((key, _)),
                ..
            } if c.action == Action::Create && gke_role(&key.role) => notes.push(format!(
                "{}: authoritative for {} on {}: who holds it now and would lose it is not known without live state",
                c.address, key.role, c.scope
            )),
            What::Policy { .. } if c.action == Action::Create => notes.push(format!(
                "{}: replaces the whole policy of {}: who holds what now and would lose it is not known without live state",
                c.address, c.scope
            )),
            _ => {}
        }
    }
    // Deny rules: would they block an account of the project that runs nodes?
    let under: Vec<String> = std::iter::once(format!("projects/{}", state.project_number))
        .chain(state.ancestors.iter().map(|(r, _)| r.to_string()))
        .collect();
    let memberships = Default::default();
    let someone = ServiceAccountEmail::parse(&format!(
        "a-node-account@{}.iam.gserviceaccount.com",
        state.project_id
    ))
    .expect("a valid email");
    let subject = Subject {
        email: &someone,
        under: &under,
        memberships: &memberships,
        unique_id: None,
    };
    for (i, e) in &applied.effects {
        let c = &changes[*i];
        if *e == apply::Effect::ApiDisabled && !found.iter().any(|b| b.address == c.address) {
            breaks.push(super::verdict::Break {
                address: c.address.clone(),
                resource_type: c.kind.clone(),
                project: state.project_id.to_string(),
                requirement: crate::domain::requirements::RequirementId::ContainerApiEnabled,
                principal: None,
                before: Some(crate::domain::evaluate::Status::Ok),
                after: crate::domain::evaluate::Status::Missing,
                change: format!(
                    "disables container.googleapis.com on project {}",
                    state.project_id
                ),
                detail: format!(
                    "{CONTAINER_API} is disabled (whether project {} runs clusters is not known without live state; GKE cannot manage them without it)",
                    state.project_id
                ),
                fix: format!(
                    "keep container.googleapis.com enabled: set disable_on_destroy = false on {} and apply that before removing it, or forget it with a `removed` block (lifecycle {{ destroy = false }})",
                    c.address
                ),
                unknown_values: c.unknowns.clone(),
            });
        }
        let apply::Effect::DenyPolicy { name } = e else {
            continue;
        };
        let Some(policy) = state.access.deny_policies.iter().find(|p| &p.name == name) else {
            continue;
        };
        let mut denied = Vec::new();
        let mut maybe = Vec::new();
        for perm in NODE_SA_PERMISSIONS {
            match deny::evaluate(std::slice::from_ref(policy), &subject, perm, state.read_at) {
                DenyVerdict::Denied(by) => denied.push(by),
                DenyVerdict::Unknown(by) => maybe.push(by),
                DenyVerdict::NotDenied => {}
            }
        }
        if !denied.is_empty() && !found.iter().any(|b| b.address == c.address) {
            let perms: Vec<&str> = denied.iter().map(|d| d.permission.as_str()).collect();
            let rules: BTreeSet<String> = denied
                .iter()
                .map(|d| format!("rules[{}]", d.rule))
                .collect();
            breaks.push(super::verdict::Break {
                address: c.address.clone(),
                resource_type: c.kind.clone(),
                project: state.project_id.to_string(),
                requirement: crate::domain::requirements::RequirementId::NodeSaPermissions,
                principal: None,
                before: None,
                after: crate::domain::evaluate::Status::Denied,
                change: format!("creates or changes the deny policy {name}"),
                detail: format!(
                    "every node account of project {} not exempted is denied {} (which accounts run nodes is not known without live state)",
                    state.project_id,
                    perms.join(", ")
                ),
                fix: format!(
                    "exempt the node accounts: add \"principal://iam.googleapis.com/projects/-/serviceAccounts/EMAIL\" for each to exception_principals of {} in {}, or list {} in its exception_permissions",
                    rules.into_iter().collect::<Vec<_>>().join(", "),
                    c.address,
                    perms
                        .iter()
                        .map(|p| crate::domain::deny::v2_permission(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                unknown_values: c.unknowns.clone(),
            });
        } else if denied.is_empty() && !maybe.is_empty() {
            notes.push(format!(
                "{}: may deny node permissions ({}) to node accounts: {}",
                c.address,
                maybe
                    .iter()
                    .map(|d| d.permission.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                maybe[0]
                    .uncertain
                    .as_deref()
                    .unwrap_or("not known without live state")
            ));
        }
    }
    (breaks, notes)
}
