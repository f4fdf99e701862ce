//! The resource changes of a plan that bear on what GKE needs, typed: IAM policies, bindings and
//! members (project, folder, organization), service accounts, the Container API, deny policies, the
//! org policy on default-account grants, clusters and node pools, projects. Pure.
//!
//! A value Terraform knows only after apply is named (an [`Unknown`]) and replaced by the worst case
//! for GKE's requirements: an authoritative list that may drop anyone, a grant that adds nothing, a
//! deny rule that denies everyone, a node pool running as an account that holds nothing. A service
//! account's email, known only after apply, is first worked out from the configuration's references
//! (`google_service_account.X.email` or `.member`, through module variables and outputs): it is
//! `ACCOUNT_ID@PROJECT.iam.gserviceaccount.com`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::terraform::{Action, Field, Plan, ResourceChange, View, parent_module};
use crate::domain::deny::{DenyRule, v2_permission};
use crate::domain::iam::{Binding, Condition, Member, Policy, Role, ServiceAccountEmail};
use crate::domain::requirements::{CONTAINER_API, NODE_SA_PERMISSIONS};
use crate::domain::state::{AUTOMATIC_GRANTS_CONSTRAINT, Cluster, NodePool};

/// Where a change applies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// A project, by id (or number).
    Project(String),
    /// A folder, by number.
    Folder(String),
    /// An organization, by number.
    Organization(String),
    /// Known only after apply: assumed to be every project checked.
    Unknown,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Project(p) => write!(f, "projects/{p}"),
            Self::Folder(id) => write!(f, "folders/{id}"),
            Self::Organization(id) => write!(f, "organizations/{id}"),
            Self::Unknown => f.write_str("(a project known only after apply)"),
        }
    }
}

/// A value known only after apply, and what the check assumed in its place.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Unknown {
    /// The resource.
    pub address: String,
    /// The attribute (`members`, `node_config[0].service_account`).
    pub attribute: String,
    /// What was assumed (the worst case for GKE's requirements).
    pub assumed: String,
}

/// A role, with the condition of its binding.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleKey {
    /// The role.
    pub role: Role,
    /// The binding's condition, if conditional.
    pub condition: Option<Condition>,
}

/// One grant (role, member, condition).
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// Role and condition.
    pub key: RoleKey,
    /// The member.
    pub member: Member,
}

/// What a change does, by resource kind.
#[derive(Clone, Debug)]
pub enum What {
    /// `google_{project,folder,organization}_iam_policy`: the whole allow policy.
    Policy {
        /// The policy after (`None`: deleted, which empties the policy).
        after: Option<Policy>,
    },
    /// `google_*_iam_binding`: authoritative for one role (and condition).
    Binding {
        /// The binding before, if it existed and its role or condition changed.
        before: Option<RoleKey>,
        /// The binding after with its exact members (`None`: deleted).
        after: Option<(RoleKey, Vec<Member>)>,
    },
    /// `google_*_iam_member`: one grant.
    Member {
        /// The grant before.
        before: Option<Grant>,
        /// The grant after.
        after: Option<Grant>,
    },
    /// `google_project_iam_member_remove`: a grant that must not exist.
    MemberRemove {
        /// The role and member removed.
        grant: Grant,
    },
    /// `google_service_account`.
    ServiceAccount {
        /// The account's email.
        email: Option<ServiceAccountEmail>,
        /// Its unique id before, when known.
        unique_id: Option<String>,
        /// Deleted (or replaced: a new account under the same email holds none of the old grants).
        deleted: bool,
        /// Exists after the plan.
        exists_after: bool,
        /// Disabled after the plan.
        disabled_after: bool,
        /// Disabled before the plan.
        disabled_before: bool,
    },
    /// `google_project_service` for `container.googleapis.com`.
    ContainerApi {
        /// The API is disabled by this change.
        disables: bool,
        /// What decides it (for people).
        why: String,
    },
    /// `google_iam_deny_policy`.
    DenyPolicy {
        /// The policy id (`name`).
        id: String,
        /// The encoded attachment point (`parent`).
        parent: String,
        /// The rules after (`None`: deleted).
        after: Option<Vec<DenyRule>>,
        /// Display name.
        display_name: String,
    },
    /// An organization policy on `iam.automaticIamGrantsForDefaultServiceAccounts`.
    OrgPolicy {
        /// Enforced after the plan by this resource.
        enforced_after: bool,
    },
    /// `google_container_cluster`.
    Cluster {
        /// The cluster before.
        before: Option<Cluster>,
        /// The cluster after.
        after: Option<Cluster>,
        /// The inline node pools after are all known (pools not listed are removed).
        pools_known: bool,
    },
    /// `google_container_node_pool`.
    NodePool {
        /// Cluster name.
        cluster: String,
        /// Cluster location, when known.
        location: Option<String>,
        /// The pool before.
        before: Option<NodePool>,
        /// The pool after.
        after: Option<NodePool>,
    },
    /// `google_project`: a project created (or deleted).
    Project {
        /// Project id.
        project_id: String,
        /// Number, when known.
        number: Option<String>,
        /// Parent (`folders/N` or `organizations/N`), when known.
        parent: Option<String>,
        /// Created by the plan.
        created: bool,
    },
    /// `google_project_default_service_accounts`: `DEPRIVILEGE`, `DISABLE` or `DELETE` the default
    /// accounts.
    DefaultAccounts {
        /// The action.
        action: String,
    },
}

/// One relevant change.
#[derive(Clone, Debug)]
pub struct Change {
    /// Terraform address.
    pub address: String,
    /// Resource type.
    pub kind: String,
    /// What Terraform does.
    pub action: Action,
    /// Where it applies.
    pub scope: Scope,
    /// What it does.
    pub what: What,
    /// Values known only after apply, and what was assumed.
    pub unknowns: Vec<Unknown>,
}

impl Change {
    /// True if the change can take something away from GKE (anything but adding a grant, creating
    /// an account or enabling an API): only such changes make the check read live state.
    pub fn can_break(&self) -> bool {
        match &self.what {
            What::Member { before, after } => before.is_some() && before != after,
            What::ServiceAccount {
                deleted,
                disabled_after,
                disabled_before,
                ..
            } => *deleted || (*disabled_after && !*disabled_before),
            What::ContainerApi { disables, .. } => *disables,
            What::OrgPolicy { enforced_after } => *enforced_after,
            What::Project { .. } => false,
            _ => true,
        }
    }

    /// The project the change names, when it is a project-level change.
    pub fn project(&self) -> Option<&str> {
        match &self.scope {
            Scope::Project(p) => Some(p),
            _ => None,
        }
    }
}

/// Builds the relevant changes of a plan, in the plan's order.
pub fn relevant(plan: &Plan) -> Vec<Change> {
    let resolver = Resolver::new(plan);
    plan.changes
        .iter()
        .filter(|c| c.action != Action::None)
        .filter_map(|c| classify(c, &resolver))
        .collect()
}

/// The resource types the guard interprets.
pub const KINDS: [&str; 21] = [
    "google_project_iam_policy",
    "google_project_iam_binding",
    "google_project_iam_member",
    "google_project_iam_member_remove",
    "google_folder_iam_policy",
    "google_folder_iam_binding",
    "google_folder_iam_member",
    "google_organization_iam_policy",
    "google_organization_iam_binding",
    "google_organization_iam_member",
    "google_service_account",
    "google_project_service",
    "google_iam_deny_policy",
    "google_org_policy_policy",
    "google_project_organization_policy",
    "google_folder_organization_policy",
    "google_organization_policy",
    "google_container_cluster",
    "google_container_node_pool",
    "google_project",
    "google_project_default_service_accounts",
];

/// Works out values known only after apply from the configuration's references.
pub struct Resolver<'a> {
    plan: &'a Plan,
    /// `(module instance, resource name)` -> `(address, email)` of planned service accounts.
    accounts: BTreeMap<(String, String), Vec<PlannedAccount>>,
}

/// A planned service account: its address and email (when it can be known).
type PlannedAccount = (String, Option<String>);

impl<'a> Resolver<'a> {
    /// Indexes the plan's service accounts.
    pub fn new(plan: &'a Plan) -> Self {
        let mut accounts: BTreeMap<(String, String), Vec<PlannedAccount>> = BTreeMap::new();
        for c in plan
            .changes
            .iter()
            .filter(|c| c.kind == "google_service_account")
        {
            let email = planned_account_email(plan, c);
            accounts
                .entry((c.module_address.clone(), c.name.clone()))
                .or_default()
                .push((c.address.clone(), email));
        }
        // Accounts the plan leaves as they are are in the prior state, with their email.
        for (address, (kind, values)) in &plan.prior {
            if kind != "google_service_account" {
                continue;
            }
            let (module, name) = split_address(address);
            let entry = accounts.entry((module, name)).or_default();
            if !entry.iter().any(|(a, _)| a == address) {
                let email = values
                    .get("email")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                entry.push((address.clone(), email));
            }
        }
        Self { plan, accounts }
    }

    /// The service-account email an attribute known only after apply will hold, from the
    /// references of its expression.
    pub fn account_email(&self, rc: &ResourceChange, path: &[&str]) -> Option<String> {
        let refs = self
            .plan
            .config
            .references(&rc.module_address, &rc.kind, &rc.name, path);
        let own_key = index_key(&rc.address);
        self.emails_of(&rc.module_address, &refs, own_key.as_deref(), 0)
    }

    fn emails_of(
        &self,
        module: &str,
        refs: &[String],
        own_key: Option<&str>,
        depth: usize,
    ) -> Option<String> {
        if depth > 8 {
            return None;
        }
        let mut found: Vec<String> = Vec::new();
        for r in refs {
            let email = if let Some(rest) = r.strip_prefix("google_service_account.") {
                self.account_ref(module, rest, own_key)
            } else if let Some(var) = r.strip_prefix("var.") {
                parent_module(module).and_then(|parent| {
                    let up = self.plan.config.variable_references(module, var);
                    self.emails_of(&parent, &up, None, depth + 1)
                })
            } else if let Some((child, output)) = r
                .strip_prefix("module.")
                .and_then(|rest| rest.split_once('.'))
            {
                let child = child.split('[').next().unwrap_or(child);
                let child_module = if module.is_empty() {
                    format!("module.{child}")
                } else {
                    format!("{module}.module.{child}")
                };
                let down = self.plan.config.output_references(&child_module, output);
                self.emails_of(&child_module, &down, None, depth + 1)
            } else {
                None
            };
            if let Some(e) = email
                && !found.contains(&e)
            {
                found.push(e);
            }
        }
        // One account named: that one. None or several: not known.
        (found.len() == 1).then(|| found.remove(0))
    }

    /// The cluster a node pool's `cluster`, known only after apply, refers to: `google_container_cluster.X`
    /// (`.id`, `.name`) in the pool's module, as (project, location, name) from its planned values.
    pub fn cluster(&self, rc: &ResourceChange) -> Option<(Option<String>, Option<String>, String)> {
        let refs =
            self.plan
                .config
                .references(&rc.module_address, &rc.kind, &rc.name, &["cluster"]);
        let mut found = Vec::new();
        for r in &refs {
            let Some(rest) = r.strip_prefix("google_container_cluster.") else {
                continue;
            };
            let name = rest.split(['.', '[']).next().unwrap_or(rest);
            for c in self.plan.changes.iter().filter(|c| {
                c.kind == "google_container_cluster"
                    && c.name == name
                    && c.module_address == rc.module_address
            }) {
                let side = if c.action.has_after() {
                    &c.after
                } else {
                    &c.before
                };
                let get = |k: &str| side.get(k).and_then(Value::as_str).map(str::to_owned);
                if let Some(cluster) = get("name") {
                    let project = get("project").or_else(|| {
                        self.plan
                            .config
                            .provider_project(&c.module_address, &c.kind, &c.name)
                    });
                    let found_one = (project, get("location"), cluster);
                    if !found.contains(&found_one) {
                        found.push(found_one);
                    }
                }
            }
        }
        (found.len() == 1).then(|| found.remove(0))
    }

    /// `NAME.ATTR`, `NAME[KEY].ATTR` or `NAME` of a `google_service_account` in `module`.
    fn account_ref(&self, module: &str, rest: &str, own_key: Option<&str>) -> Option<String> {
        let name_end = rest.find(['.', '[']).unwrap_or(rest.len());
        let name = &rest[..name_end];
        let key = rest[name_end..]
            .strip_prefix('[')
            .and_then(|k| k.split_once(']'))
            .map(|(k, _)| k.to_owned());
        // `module` may lack instance keys (a module output followed down): the one instance of it.
        let instances = self
            .accounts
            .get(&(module.to_owned(), name.to_owned()))
            .or_else(|| {
                let mut found = self
                    .accounts
                    .iter()
                    .filter(|((m, n), _)| n == name && without_keys(m) == without_keys(module));
                match (found.next(), found.next()) {
                    (Some((_, v)), None) => Some(v),
                    _ => None,
                }
            })?;
        let pick = |k: &str| {
            instances
                .iter()
                .find(|(a, _)| index_key(a).as_deref() == Some(k))
        };
        let chosen = match (key.as_deref(), instances.as_slice()) {
            (Some(k), _) => pick(k),
            (None, [one]) => Some(one),
            (None, _) => own_key.and_then(pick),
        }?;
        chosen.1.clone()
    }
}

/// `module.a.google_x.y[0]` -> (`module.a`, `y`).
fn split_address(address: &str) -> (String, String) {
    let base = match address.rfind(']') {
        Some(_) if address.ends_with(']') => {
            &address[..address.rfind('[').unwrap_or(address.len())]
        }
        _ => address,
    };
    let mut parts: Vec<&str> = base.rsplitn(3, '.').collect();
    parts.reverse();
    match parts.as_slice() {
        [module, _kind, name] if module.starts_with("module.") => {
            ((*module).to_owned(), (*name).to_owned())
        }
        [_, name] | [_, _, name] => (String::new(), (*name).to_owned()),
        _ => (String::new(), base.to_owned()),
    }
}

/// A module address without instance keys (`module.a["x"].module.b[0]` -> `module.a.module.b`).
fn without_keys(module: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in module.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The index key of an address (`x[0]` -> `0`, `x["a"]` -> `"a"`).
fn index_key(address: &str) -> Option<String> {
    if !address.ends_with(']') {
        return None;
    }
    let open = address.rfind('[')?;
    Some(address[open + 1..address.len() - 1].to_owned())
}

/// The email a planned `google_service_account` has: known, or `ACCOUNT_ID@PROJECT.iam...`.
fn planned_account_email(plan: &Plan, c: &ResourceChange) -> Option<String> {
    let side = if c.action.has_after() {
        View::new(&c.after, &c.after_unknown)
    } else {
        View::new(&c.before, &Value::Null)
    };
    if let Field::Known(e) = side.str("email") {
        return Some(e.to_ascii_lowercase());
    }
    let account_id = side.str("account_id").known()?;
    let project = side.str("project").known().or_else(|| {
        plan.config
            .provider_project(&c.module_address, &c.kind, &c.name)
    })?;
    Some(format!("{account_id}@{project}.iam.gserviceaccount.com").to_ascii_lowercase())
}

fn strip<'s>(value: &'s str, prefix: &str) -> &'s str {
    value.strip_prefix(prefix).unwrap_or(value)
}

struct Ctx<'a, 'r> {
    rc: &'a ResourceChange,
    resolver: &'r Resolver<'r>,
    unknowns: Vec<Unknown>,
}

impl<'a> Ctx<'a, '_> {
    fn unknown(&mut self, attribute: &str, assumed: impl Into<String>) {
        self.unknowns.push(Unknown {
            address: self.rc.address.clone(),
            attribute: attribute.to_owned(),
            assumed: assumed.into(),
        });
    }

    fn before(&self) -> Option<View<'a>> {
        self.rc
            .action
            .has_before()
            .then(|| View::new(&self.rc.before, &NULL))
    }

    fn after(&self) -> Option<View<'a>> {
        self.rc
            .action
            .has_after()
            .then(|| View::new(&self.rc.after, &self.rc.after_unknown))
    }

    /// The project of a project-level resource: its `project`; unset (or computed and not in the
    /// configuration), the provider's default project; known only after apply, the project before
    /// the plan, else every project checked.
    fn project(&mut self, attr: &str) -> Scope {
        let rc = self.rc;
        let side = self.after().or_else(|| self.before());
        let value = side.map(|s| s.str(attr)).unwrap_or(Field::Null);
        if let Field::Known(p) = value {
            return Scope::Project(strip(&p, "projects/").to_owned());
        }
        let config = &self.resolver.plan.config;
        let configured = config.has_expression(&rc.module_address, &rc.kind, &rc.name, attr);
        if !configured
            && let Some(p) = config.provider_project(&rc.module_address, &rc.kind, &rc.name)
        {
            return Scope::Project(strip(&p, "projects/").to_owned());
        }
        if let Some(Field::Known(p)) = self.before().map(|b| b.str(attr)) {
            self.unknown(attr, "the project of the resource before the plan");
            return Scope::Project(strip(&p, "projects/").to_owned());
        }
        self.unknown(attr, "every project checked");
        Scope::Unknown
    }
}

const NULL: Value = Value::Null;

fn classify(rc: &ResourceChange, resolver: &Resolver<'_>) -> Option<Change> {
    let mut cx = Ctx {
        rc,
        resolver,
        unknowns: Vec::new(),
    };
    let kind = rc.kind.as_str();
    let (scope, what) = match kind {
        "google_project_iam_policy"
        | "google_folder_iam_policy"
        | "google_organization_iam_policy" => {
            let scope = level_scope(&mut cx)?;
            (scope, policy_change(&mut cx))
        }
        "google_project_iam_binding"
        | "google_folder_iam_binding"
        | "google_organization_iam_binding" => {
            let scope = level_scope(&mut cx)?;
            (scope, binding_change(&mut cx)?)
        }
        "google_project_iam_member"
        | "google_folder_iam_member"
        | "google_organization_iam_member" => {
            let scope = level_scope(&mut cx)?;
            (scope, member_change(&mut cx)?)
        }
        "google_project_iam_member_remove" => {
            let scope = cx.project("project");
            let after = cx.after()?;
            let role = Role::parse(&after.str("role").known()?).ok()?;
            let member = match after.str("member") {
                Field::Known(m) => Member::parse(&m).ok()?,
                _ => match cx.resolver.account_email(rc, &["member"]) {
                    Some(e) => Member::parse(&format!("serviceAccount:{e}")).ok()?,
                    None => {
                        cx.unknown("member", "not removing anyone GKE needs");
                        return None;
                    }
                },
            };
            (
                scope,
                What::MemberRemove {
                    grant: Grant {
                        key: RoleKey {
                            role,
                            condition: None,
                        },
                        member,
                    },
                },
            )
        }
        "google_service_account" => account_change(&mut cx)?,
        "google_project_service" => service_change(&mut cx)?,
        "google_iam_deny_policy" => deny_change(&mut cx)?,
        "google_org_policy_policy"
        | "google_project_organization_policy"
        | "google_folder_organization_policy"
        | "google_organization_policy" => org_policy_change(&mut cx)?,
        "google_container_cluster" => cluster_change(&mut cx)?,
        "google_container_node_pool" => node_pool_change(&mut cx)?,
        "google_project" => project_change(&mut cx)?,
        "google_project_default_service_accounts" => {
            let scope = cx.project("project");
            let after = cx.after()?;
            let action = match after.str("action") {
                Field::Known(a) => a.to_ascii_uppercase(),
                _ => {
                    cx.unknown("action", "DELETE");
                    "DELETE".to_owned()
                }
            };
            if !matches!(action.as_str(), "DEPRIVILEGE" | "DISABLE" | "DELETE") {
                return None;
            }
            (scope, What::DefaultAccounts { action })
        }
        _ => return None,
    };
    Some(Change {
        address: rc.address.clone(),
        kind: rc.kind.clone(),
        action: rc.action,
        scope,
        what,
        unknowns: cx.unknowns,
    })
}

fn level_scope(cx: &mut Ctx<'_, '_>) -> Option<Scope> {
    let kind = cx.rc.kind.as_str();
    if kind.starts_with("google_project_") {
        return Some(cx.project("project"));
    }
    let (attr, folder) = if kind.starts_with("google_folder_") {
        ("folder", true)
    } else {
        ("org_id", false)
    };
    let side = cx.after().or_else(|| cx.before())?;
    match side.str(attr) {
        Field::Known(v) => {
            let id = strip(strip(&v, "folders/"), "organizations/").to_owned();
            Some(if folder {
                Scope::Folder(id)
            } else {
                Scope::Organization(id)
            })
        }
        _ => {
            if let Some(Field::Known(v)) = cx.before().map(|b| b.str(attr)) {
                let id = strip(strip(&v, "folders/"), "organizations/").to_owned();
                return Some(if folder {
                    Scope::Folder(id)
                } else {
                    Scope::Organization(id)
                });
            }
            cx.unknown(attr, "an ancestor of every project checked");
            Some(Scope::Unknown)
        }
    }
}

fn condition_of(side: &View<'_>) -> Option<Condition> {
    let c = side.get("condition").at(0);
    if c.is_null() {
        return None;
    }
    let expression = c.str("expression").known().unwrap_or_default();
    Some(Condition {
        expression,
        title: c.str("title").known(),
        description: c.str("description").known(),
        location: None,
    })
}

fn policy_change(cx: &mut Ctx<'_, '_>) -> What {
    let Some(after) = cx.after() else {
        return What::Policy { after: None };
    };
    let policy = match after.str("policy_data") {
        Field::Known(text) => match serde_json::from_str::<Policy>(&text) {
            Ok(p) => p,
            Err(e) => {
                cx.unknown(
                    "policy_data",
                    format!("an empty policy (the policy data is not an IAM policy: {e})"),
                );
                Policy::default()
            }
        },
        _ => {
            cx.unknown("policy_data", "an empty policy");
            Policy::default()
        }
    };
    What::Policy {
        after: Some(policy),
    }
}

fn role_key(side: &View<'_>) -> Option<RoleKey> {
    Some(RoleKey {
        role: Role::parse(&side.str("role").known()?).ok()?,
        condition: condition_of(side),
    })
}

fn binding_change(cx: &mut Ctx<'_, '_>) -> Option<What> {
    let before = cx.before().and_then(|b| role_key(&b));
    let after = match cx.after() {
        None => None,
        Some(a) => {
            let key = match role_key(&a) {
                Some(k) => k,
                None => {
                    // The role is known only after apply: the binding may be any role's.
                    cx.unknown("role", "not granting anything");
                    return Some(What::Binding {
                        before,
                        after: None,
                    });
                }
            };
            let mut members: Vec<Member> = Vec::new();
            match a.strs("members") {
                Field::Known((known, unknown)) => {
                    members.extend(known.iter().filter_map(|m| Member::parse(m).ok()));
                    if !unknown.is_empty() {
                        let resolved = cx.resolver.account_email(cx.rc, &["members"]);
                        match resolved {
                            Some(e) if unknown.len() == 1 => {
                                members.extend(Member::parse(&format!("serviceAccount:{e}")).ok())
                            }
                            _ => cx.unknown(
                                "members",
                                format!(
                                    "{} member(s) known only after apply grant nothing",
                                    unknown.len()
                                ),
                            ),
                        }
                    }
                }
                Field::Unknown => {
                    cx.unknown("members", "the binding lists none of the members GKE needs")
                }
                Field::Null => {}
            }
            Some((key, members))
        }
    };
    let before = before.filter(|b| after.as_ref().is_none_or(|(a, _)| a != b));
    Some(What::Binding { before, after })
}

fn grant_of(cx: &mut Ctx<'_, '_>, side: &View<'_>, after: bool) -> Option<Grant> {
    let key = match role_key(side) {
        Some(k) => k,
        None => {
            if after {
                cx.unknown("role", "not granting anything");
            }
            return None;
        }
    };
    let member = match side.str("member") {
        Field::Known(m) => Member::parse(&m).ok()?,
        Field::Unknown => match cx.resolver.account_email(cx.rc, &["member"]) {
            Some(e) => Member::parse(&format!("serviceAccount:{e}")).ok()?,
            None => {
                cx.unknown("member", "not granting anyone GKE needs");
                return None;
            }
        },
        Field::Null => return None,
    };
    Some(Grant { key, member })
}

fn member_change(cx: &mut Ctx<'_, '_>) -> Option<What> {
    let before = match cx.before() {
        Some(b) => grant_of(cx, &b, false),
        None => None,
    };
    let after = match cx.after() {
        Some(a) => {
            // Copy out: `a` borrows the change, `grant_of` the context.
            let a = View::new(a.raw(), &cx.rc.after_unknown);
            grant_of(cx, &a, true)
        }
        None => None,
    };
    if before.is_none() && after.is_none() && cx.unknowns.is_empty() {
        return None;
    }
    Some(What::Member { before, after })
}

fn account_change(cx: &mut Ctx<'_, '_>) -> Option<(Scope, What)> {
    let rc = cx.rc;
    let scope = cx.project("project");
    let email = planned_account_email(cx.resolver.plan, rc)
        .and_then(|e| ServiceAccountEmail::parse(&e).ok());
    let disabled_before = cx
        .before()
        .is_some_and(|b| b.bool("disabled").known() == Some(true));
    let unique_id = cx.before().and_then(|b| b.str("unique_id").known());
    let disabled_after = match cx.after() {
        None => false,
        Some(a) => match a.bool("disabled") {
            Field::Known(d) => d,
            Field::Null => false,
            Field::Unknown => {
                cx.unknown("disabled", "true (the account is disabled)");
                true
            }
        },
    };
    let deleted = matches!(rc.action, Action::Delete | Action::Replace);
    Some((
        scope,
        What::ServiceAccount {
            email,
            unique_id,
            deleted,
            exists_after: rc.action.has_after(),
            disabled_after,
            disabled_before,
        },
    ))
}

fn service_change(cx: &mut Ctx<'_, '_>) -> Option<(Scope, What)> {
    let rc = cx.rc;
    let before_service = cx.before().and_then(|b| b.str("service").known());
    let after_service = cx.after().and_then(|a| a.str("service").known());
    if before_service.as_deref() != Some(CONTAINER_API)
        && after_service.as_deref() != Some(CONTAINER_API)
    {
        return None;
    }
    let scope = cx.project("project");
    // The API goes when the resource that enabled it is destroyed (deleted or replaced).
    let destroyed = matches!(rc.action, Action::Delete | Action::Replace)
        && before_service.as_deref() == Some(CONTAINER_API);
    let (disables, why) = match cx.before() {
        Some(b) if destroyed => {
            let abandoned = b.str("deletion_policy").known().as_deref() == Some("ABANDON");
            match b.bool("disable_on_destroy") {
                _ if abandoned => (false, "deletion_policy = \"ABANDON\"".to_owned()),
                Field::Known(true) => (true, "disable_on_destroy = true".to_owned()),
                Field::Known(false) => (false, "disable_on_destroy = false".to_owned()),
                _ => (
                    true,
                    "disable_on_destroy is unset, and google provider versions before 7.0 disable the service on destroy".to_owned(),
                ),
            }
        }
        _ => (false, "the API stays enabled".to_owned()),
    };
    Some((scope, What::ContainerApi { disables, why }))
}

/// `cloudresourcemanager.googleapis.com%2Fprojects%2Fp` -> `Scope::Project("p")`.
pub fn deny_scope(parent: &str) -> Option<Scope> {
    let decoded = percent_decode(parent);
    let point = decoded
        .strip_prefix("cloudresourcemanager.googleapis.com/")
        .unwrap_or(&decoded);
    match point.split_once('/')? {
        ("projects", p) => Some(Scope::Project(p.to_owned())),
        ("folders", f) => Some(Scope::Folder(f.to_owned())),
        ("organizations", o) => Some(Scope::Organization(o.to_owned())),
        _ => None,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    let once = String::from_utf8_lossy(&out).into_owned();
    if once.contains('%') && once != s {
        percent_decode(&once)
    } else {
        once
    }
}

fn deny_change(cx: &mut Ctx<'_, '_>) -> Option<(Scope, What)> {
    let side = cx.after().or_else(|| cx.before())?;
    let (parent, id) = match (side.str("parent"), side.str("name")) {
        (Field::Known(p), Field::Known(n)) => (p, n),
        _ => {
            cx.unknown("parent", "attached to every project checked");
            (String::new(), side.str("name").known().unwrap_or_default())
        }
    };
    let scope = if parent.is_empty() {
        Scope::Unknown
    } else {
        deny_scope(&parent)?
    };
    let display_name = side.str("display_name").known().unwrap_or_default();
    let after = match cx.after() {
        None => None,
        Some(a) => {
            let a = View::new(a.raw(), &cx.rc.after_unknown);
            if a.get("rules").is_unknown() {
                cx.unknown("rules", "a rule denying every node permission to everyone");
                Some(vec![worst_rule()])
            } else {
                let mut rules = Vec::new();
                for (i, r) in a.get("rules").items().iter().enumerate() {
                    let d = r.get("deny_rule").at(0);
                    if d.is_null() {
                        continue;
                    }
                    let mut list =
                        |attr: &str, worst: Vec<String>, assumed: &str| match d.strs(attr) {
                            Field::Known((known, unknown)) if unknown.is_empty() => known,
                            Field::Null => Vec::new(),
                            _ => {
                                cx.unknown(&format!("rules[{i}].deny_rule[0].{attr}"), assumed);
                                worst
                            }
                        };
                    let denied_principals = list(
                        "denied_principals",
                        vec!["principalSet://goog/public:all".to_owned()],
                        "everyone",
                    );
                    let exception_principals = list("exception_principals", Vec::new(), "none");
                    let denied_permissions = list(
                        "denied_permissions",
                        NODE_SA_PERMISSIONS
                            .iter()
                            .map(|p| v2_permission(p))
                            .collect(),
                        "every node permission",
                    );
                    let exception_permissions = list("exception_permissions", Vec::new(), "none");
                    let cond = d.get("denial_condition").at(0);
                    let denial_condition = match cond.str("expression") {
                        Field::Known(e) if !e.trim().is_empty() => Some(e),
                        Field::Unknown => {
                            cx.unknown(
                                &format!("rules[{i}].deny_rule[0].denial_condition"),
                                "no condition (the rule always applies)",
                            );
                            None
                        }
                        _ => None,
                    };
                    rules.push(DenyRule {
                        denied_principals,
                        exception_principals,
                        denied_permissions,
                        exception_permissions,
                        denial_condition,
                    });
                }
                Some(rules)
            }
        }
    };
    Some((
        scope,
        What::DenyPolicy {
            id,
            parent,
            after,
            display_name,
        },
    ))
}

fn worst_rule() -> DenyRule {
    DenyRule {
        denied_principals: vec!["principalSet://goog/public:all".to_owned()],
        denied_permissions: NODE_SA_PERMISSIONS
            .iter()
            .map(|p| v2_permission(p))
            .collect(),
        ..DenyRule::default()
    }
}

fn org_policy_change(cx: &mut Ctx<'_, '_>) -> Option<(Scope, What)> {
    let rc = cx.rc;
    let side = cx.after().or_else(|| cx.before())?;
    let (constraint, scope) = if rc.kind == "google_org_policy_policy" {
        let name = side.str("name").known()?;
        let constraint = name.rsplit('/').next()?.to_owned();
        let scope = match side.str("parent").known()?.split_once('/')? {
            ("projects", p) => Scope::Project(p.to_owned()),
            ("folders", f) => Scope::Folder(f.to_owned()),
            ("organizations", o) => Scope::Organization(o.to_owned()),
            _ => return None,
        };
        (constraint, scope)
    } else {
        let constraint = strip(&side.str("constraint").known()?, "constraints/").to_owned();
        let scope = match rc.kind.as_str() {
            "google_project_organization_policy" => cx.project("project"),
            "google_folder_organization_policy" => {
                Scope::Folder(strip(&side.str("folder").known()?, "folders/").to_owned())
            }
            _ => Scope::Organization(
                strip(&side.str("org_id").known()?, "organizations/").to_owned(),
            ),
        };
        (constraint, scope)
    };
    if constraint != AUTOMATIC_GRANTS_CONSTRAINT {
        return None;
    }
    let enforced_after = match cx.after() {
        None => false,
        Some(a) => {
            let a = View::new(a.raw(), &cx.rc.after_unknown);
            if rc.kind == "google_org_policy_policy" {
                let spec = a.get("spec").at(0);
                if spec.is_unknown() || spec.get("rules").is_unknown() {
                    cx.unknown("spec", "enforced");
                    true
                } else if spec.bool("reset").known() == Some(true)
                    || spec.bool("inherit_from_parent").known() == Some(true)
                {
                    false
                } else {
                    let mut enforced = false;
                    for (i, r) in spec.get("rules").items().iter().enumerate() {
                        match r.str("enforce") {
                            Field::Known(v) if v.eq_ignore_ascii_case("true") => enforced = true,
                            Field::Unknown => {
                                cx.unknown(&format!("spec[0].rules[{i}].enforce"), "TRUE");
                                enforced = true;
                            }
                            _ => {}
                        }
                    }
                    enforced
                }
            } else {
                let b = a.get("boolean_policy").at(0);
                match b.bool("enforced") {
                    Field::Known(e) => e,
                    Field::Unknown => {
                        cx.unknown("boolean_policy[0].enforced", "true");
                        true
                    }
                    Field::Null => false,
                }
            }
        }
    };
    Some((scope, What::OrgPolicy { enforced_after }))
}

/// A node pool's service account: known, worked out from references, or the worst case.
fn pool_account(cx: &mut Ctx<'_, '_>, config: &View<'_>, path: &[&str], label: &str) -> String {
    if config.is_unknown() {
        return unknown_account(cx, path, label);
    }
    match config.str("service_account") {
        Field::Known(sa) => sa,
        Field::Null => "default".to_owned(),
        Field::Unknown => unknown_account(cx, path, label),
    }
}

fn unknown_account(cx: &mut Ctx<'_, '_>, path: &[&str], label: &str) -> String {
    let mut full: Vec<&str> = path.to_vec();
    full.push("service_account");
    match cx.resolver.account_email(cx.rc, &full) {
        Some(e) => e,
        None => {
            cx.unknown(
                label,
                "a service account that holds no grant (its node permissions are missing)",
            );
            UNKNOWN_ACCOUNT.to_owned()
        }
    }
}

/// The account assumed for a node pool whose service account is known only after apply.
pub const UNKNOWN_ACCOUNT: &str = "known-after-apply@unknown.invalid";

fn cluster_of(cx: &mut Ctx<'_, '_>, side: &View<'_>, after: bool) -> (Cluster, bool) {
    let name = side
        .str("name")
        .known()
        .unwrap_or_else(|| "(unknown)".to_owned());
    let location = side
        .str("location")
        .known()
        .unwrap_or_else(|| "(unknown)".to_owned());
    let autopilot = side.bool("enable_autopilot").known() == Some(true);
    let mut pools = Vec::new();
    let inline = side.get("node_pool");
    let mut pools_known = !inline.is_unknown();
    for (i, p) in inline.items().iter().enumerate() {
        let pool_name = p.str("name").known().unwrap_or_else(|| format!("pool-{i}"));
        let sa = if after {
            let i_s = i.to_string();
            let path = ["node_pool", i_s.as_str(), "node_config", "0"];
            let label = format!("node_pool[{i}].node_config[0].service_account");
            pool_account(cx, &p.get("node_config").at(0), &path, &label)
        } else {
            p.get("node_config")
                .at(0)
                .str("service_account")
                .known()
                .unwrap_or_else(|| "default".to_owned())
        };
        pools.push(NodePool {
            name: pool_name,
            service_account: sa,
        });
    }
    let removes_default = side.bool("remove_default_node_pool").known() == Some(true);
    if !autopilot && pools.is_empty() && !removes_default && (after || !inline.is_null()) {
        // No inline pool: the cluster's default pool, with `node_config`.
        let sa = if after {
            pool_account(
                cx,
                &side.get("node_config").at(0),
                &["node_config", "0"],
                "node_config[0].service_account",
            )
        } else {
            side.get("node_config")
                .at(0)
                .str("service_account")
                .known()
                .unwrap_or_else(|| "default".to_owned())
        };
        pools.push(NodePool {
            name: "default-pool".to_owned(),
            service_account: sa,
        });
        pools_known = false;
    }
    let scaling = side.get("cluster_autoscaling").at(0);
    let nap = scaling.bool("enabled").known() == Some(true);
    let defaults = scaling.get("auto_provisioning_defaults").at(0);
    let autoprovisioning_service_account = if autopilot || nap {
        Some(match defaults.str("service_account") {
            Field::Known(sa) => sa,
            Field::Unknown if after => unknown_account(
                cx,
                &[
                    "cluster_autoscaling",
                    "0",
                    "auto_provisioning_defaults",
                    "0",
                ],
                "cluster_autoscaling[0].auto_provisioning_defaults[0].service_account",
            ),
            _ => "default".to_owned(),
        })
    } else {
        None
    };
    (
        Cluster {
            name,
            location,
            autopilot,
            node_pools: pools,
            autoprovisioning_service_account,
        },
        pools_known,
    )
}

fn cluster_change(cx: &mut Ctx<'_, '_>) -> Option<(Scope, What)> {
    let scope = cx.project("project");
    let before = cx.before().map(|b| {
        let b = View::new(b.raw(), &NULL);
        cluster_of(cx, &b, false).0
    });
    let (after, pools_known) = match cx.after() {
        Some(a) => {
            let a = View::new(a.raw(), &cx.rc.after_unknown);
            let (c, known) = cluster_of(cx, &a, true);
            (Some(c), known)
        }
        None => (None, true),
    };
    Some((
        scope,
        What::Cluster {
            before,
            after,
            pools_known,
        },
    ))
}

fn node_pool_change(cx: &mut Ctx<'_, '_>) -> Option<(Scope, What)> {
    let side = cx.after().or_else(|| cx.before())?;
    let side = View::new(side.raw(), &NULL);
    // `cluster` is a name or `projects/P/locations/L/clusters/C`.
    let cluster_attr = side.str("cluster").known();
    let (id_project, id_location, cluster) = match cluster_attr.as_deref().map(|c| {
        let parts: Vec<&str> = c.split('/').collect();
        match parts.as_slice() {
            ["projects", p, "locations", l, "clusters", c] => (
                Some((*p).to_owned()),
                Some((*l).to_owned()),
                (*c).to_owned(),
            ),
            _ => (None, None, c.to_owned()),
        }
    }) {
        Some(x) => x,
        None => match cx.resolver.cluster(cx.rc) {
            // `google_container_cluster.X.id` of a cluster the same plan creates.
            Some((project, location, name)) => (project, location, name),
            None => {
                cx.unknown("cluster", "a cluster of every project checked");
                (None, None, "(unknown)".to_owned())
            }
        },
    };
    let mut scope = cx.project("project");
    if let (Scope::Unknown, Some(p)) = (&scope, id_project) {
        cx.unknowns.retain(|u| u.attribute != "project");
        scope = Scope::Project(p);
    }
    let location = side.str("location").known().or(id_location);
    let pool_name = side
        .str("name")
        .known()
        .unwrap_or_else(|| "(known after apply)".to_owned());
    let before = cx.before().map(|b| NodePool {
        name: b.str("name").known().unwrap_or_else(|| pool_name.clone()),
        service_account: b
            .get("node_config")
            .at(0)
            .str("service_account")
            .known()
            .unwrap_or_else(|| "default".to_owned()),
    });
    let after = match cx.after() {
        Some(a) => {
            let a = View::new(a.raw(), &cx.rc.after_unknown);
            let sa = pool_account(
                cx,
                &a.get("node_config").at(0),
                &["node_config", "0"],
                "node_config[0].service_account",
            );
            Some(NodePool {
                name: pool_name,
                service_account: sa,
            })
        }
        None => None,
    };
    Some((
        scope,
        What::NodePool {
            cluster,
            location,
            before,
            after,
        },
    ))
}

fn project_change(cx: &mut Ctx<'_, '_>) -> Option<(Scope, What)> {
    let side = cx.after().or_else(|| cx.before())?;
    let project_id = side.str("project_id").known()?;
    let number = side.str("number").known();
    let parent = match (side.str("folder_id").known(), side.str("org_id").known()) {
        (Some(f), _) if !f.is_empty() => Some(format!("folders/{}", strip(&f, "folders/"))),
        (_, Some(o)) if !o.is_empty() => Some(format!("organizations/{o}")),
        _ => None,
    };
    let created = cx.rc.action == Action::Create;
    if !created {
        return None;
    }
    Some((
        Scope::Project(project_id.clone()),
        What::Project {
            project_id,
            number,
            parent,
            created,
        },
    ))
}

/// Whether two bindings' conditions are the same for the provider, which keys an authoritative
/// binding by role and condition (title, description and expression).
pub fn same_condition(a: Option<&Condition>, b: Option<&Condition>) -> bool {
    let text = |v: &Option<String>| v.as_deref().unwrap_or_default().to_owned();
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.expression.trim() == b.expression.trim()
                && text(&a.title) == text(&b.title)
                && text(&a.description) == text(&b.description)
        }
        _ => false,
    }
}

/// Builds a binding.
pub fn binding(key: &RoleKey, members: Vec<Member>) -> Binding {
    Binding {
        role: key.role.clone(),
        members,
        condition: key.condition.clone(),
        other: serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan_guard::terraform;
    use serde_json::json;

    fn plan(doc: Value) -> Plan {
        terraform::parse(doc.to_string().as_bytes(), "plan.json").unwrap()
    }

    #[test]
    fn an_unknown_member_is_the_planned_account_it_references_through_a_module_output() {
        let doc = json!({
            "format_version": "1.2",
            "resource_changes": [
                {"address": "module.sa.google_service_account.nodes", "module_address": "module.sa",
                 "mode": "managed", "type": "google_service_account", "name": "nodes",
                 "change": {"actions": ["create"], "before": null,
                            "after": {"account_id": "gke-nodes", "project": "shop"},
                            "after_unknown": {"email": true, "member": true}}},
                {"address": "google_project_iam_member.nodes", "mode": "managed",
                 "type": "google_project_iam_member", "name": "nodes",
                 "change": {"actions": ["create"], "before": null,
                            "after": {"project": "shop", "role": "roles/container.defaultNodeServiceAccount", "condition": []},
                            "after_unknown": {"member": true}}}
            ],
            "configuration": {"root_module": {
                "resources": [{"address": "google_project_iam_member.nodes", "mode": "managed",
                    "type": "google_project_iam_member", "name": "nodes",
                    "expressions": {"member": {"references": ["module.sa.member", "module.sa"]}}}],
                "module_calls": {"sa": {"module": {
                    "outputs": {"member": {"expression": {"references": ["google_service_account.nodes.member", "google_service_account.nodes"]}}},
                    "resources": [{"address": "google_service_account.nodes", "mode": "managed",
                        "type": "google_service_account", "name": "nodes", "expressions": {}}]}}}
            }}
        });
        let changes = relevant(&plan(doc));
        let member = changes
            .iter()
            .find_map(|c| match &c.what {
                What::Member { after: Some(g), .. } => Some(g.member.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            member.as_str(),
            "serviceAccount:gke-nodes@shop.iam.gserviceaccount.com"
        );
        assert!(changes.iter().all(|c| c.unknowns.is_empty()));
        assert!(changes.iter().all(|c| !c.can_break()));
    }

    #[test]
    fn deny_parents_are_decoded_once_or_twice() {
        assert_eq!(
            deny_scope("cloudresourcemanager.googleapis.com%2Fprojects%2Fshop"),
            Some(Scope::Project("shop".to_owned()))
        );
        assert_eq!(
            deny_scope("cloudresourcemanager.googleapis.com%252Ffolders%252F111"),
            Some(Scope::Folder("111".to_owned()))
        );
        assert_eq!(
            deny_scope("cloudresourcemanager.googleapis.com/organizations/1"),
            Some(Scope::Organization("1".to_owned()))
        );
    }

    #[test]
    fn addresses_split_into_module_and_name() {
        assert_eq!(
            split_address("module.a.google_service_account.n[0]"),
            ("module.a".to_owned(), "n".to_owned())
        );
        assert_eq!(
            split_address("google_service_account.n"),
            (String::new(), "n".to_owned())
        );
        assert_eq!(index_key("x.y[\"a\"]").as_deref(), Some("\"a\""));
    }
}
