//! Applies a plan's changes to one project's state: the IAM state after the plan, and what each
//! change took away or introduced (its effects), for attributing a break. Pure.
//!
//! Terraform does not promise an order between unrelated resources, and authoritative resources
//! fight with additive ones. The worst order for GKE's requirements is the one applied: grants
//! added and removed one by one first, then whole policies, then authoritative bindings (each
//! setting its role's members exactly), then `google_project_iam_member_remove`; accounts, the
//! Container API, deny policies and org policies after.

use std::collections::BTreeSet;

use super::changes::{Change, Grant, RoleKey, Scope, What, binding, same_condition};
use crate::domain::deny::DenyPolicy;
use crate::domain::iam::{Member, Policy, ResourceRef, Role, ServiceAccountEmail};
use crate::domain::requirements::ROLE_EDITOR;
use crate::domain::state::{
    AccountState, ApiState, Cluster, NodePool, OrgPolicyFact, ProjectState,
};

/// Something a change took away from, or brought into, a project's GKE setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A member lost a role on a resource of the project's chain (conditional grants included).
    RemovedGrant {
        /// `projects/P`, `folders/N`, `organizations/N`.
        resource: String,
        /// The role.
        role: Role,
        /// The member.
        member: Member,
        /// The grant lost was conditional.
        conditional: bool,
    },
    /// A service account is deleted (`true`) or disabled.
    AccountGone {
        /// The account.
        email: ServiceAccountEmail,
        /// Deleted rather than disabled.
        deleted: bool,
    },
    /// `container.googleapis.com` is disabled.
    ApiDisabled,
    /// A deny policy is created or changed.
    DenyPolicy {
        /// Its full name.
        name: String,
    },
    /// `iam.automaticIamGrantsForDefaultServiceAccounts` is enforced on the project or an ancestor.
    OrgPolicyEnforced,
    /// A node pool (or Autopilot / auto-provisioning) runs as this account after the plan.
    NodeAccount {
        /// The account.
        email: ServiceAccountEmail,
        /// `location/cluster/pool` (or `location/cluster` for auto-provisioning).
        pool: String,
    },
}

/// The state after the plan, with each effect and the change (index) it comes from.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The state after the plan.
    pub state: ProjectState,
    /// `(change index, effect)`.
    pub effects: Vec<(usize, Effect)>,
    /// Indexes of the changes that applied to this project.
    pub applied: BTreeSet<usize>,
}

/// Where a scope falls in a project's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Own,
    Ancestor(usize),
}

fn places(state: &ProjectState, scope: &Scope, project_level: bool) -> Vec<Place> {
    match scope {
        Scope::Project(p) => {
            if p == state.project_id.as_str() || p == state.project_number.as_str() {
                vec![Place::Own]
            } else {
                Vec::new()
            }
        }
        Scope::Folder(f) => state
            .ancestors
            .iter()
            .position(|(r, _)| matches!(r, ResourceRef::Folder(id) if id == f))
            .map(Place::Ancestor)
            .into_iter()
            .collect(),
        Scope::Organization(o) => state
            .ancestors
            .iter()
            .position(|(r, _)| matches!(r, ResourceRef::Organization(id) if id == o))
            .map(Place::Ancestor)
            .into_iter()
            .collect(),
        Scope::Unknown if project_level => vec![Place::Own],
        Scope::Unknown => (0..state.ancestors.len()).map(Place::Ancestor).collect(),
    }
}

fn is_project_level(kind: &str) -> bool {
    !(kind.starts_with("google_folder_") || kind.starts_with("google_organization_"))
}

/// True if `change` bears on this project (its scope is the project or one of its ancestors, or
/// it is about an account or unknown).
pub fn touches(state: &ProjectState, change: &Change) -> bool {
    match &change.what {
        What::ServiceAccount { .. } => true,
        _ => !places(state, &change.scope, is_project_level(&change.kind)).is_empty(),
    }
}

fn same_member(a: &Member, b: &Member) -> bool {
    a.as_str().eq_ignore_ascii_case(b.as_str())
}

struct Editor<'s> {
    state: &'s mut ProjectState,
    effects: Vec<(usize, Effect)>,
    index: usize,
}

impl Editor<'_> {
    fn resource(&self, place: Place) -> String {
        match place {
            Place::Own => format!("projects/{}", self.state.project_id),
            Place::Ancestor(i) => self.state.ancestors[i].0.to_string(),
        }
    }

    fn policy(&mut self, place: Place) -> &mut Policy {
        match place {
            Place::Own => &mut self.state.policy,
            Place::Ancestor(i) => &mut self.state.ancestors[i].1,
        }
    }

    fn removed(&mut self, place: Place, role: &Role, member: &Member, conditional: bool) {
        let resource = self.resource(place);
        self.effects.push((
            self.index,
            Effect::RemovedGrant {
                resource,
                role: role.clone(),
                member: member.clone(),
                conditional,
            },
        ));
    }

    /// Removes `member` from the binding of `key`.
    fn remove_member(&mut self, place: Place, key: &RoleKey, member: &Member) {
        let policy = self.policy(place);
        let mut hit = false;
        for b in policy.bindings.iter_mut().filter(|b| {
            b.role == key.role && same_condition(b.condition.as_ref(), key.condition.as_ref())
        }) {
            let n = b.members.len();
            b.members.retain(|m| !same_member(m, member));
            hit |= b.members.len() != n;
        }
        policy.bindings.retain(|b| !b.members.is_empty());
        if hit {
            self.removed(place, &key.role, member, key.condition.is_some());
        }
    }

    fn add_member(&mut self, place: Place, key: &RoleKey, member: &Member) {
        let policy = self.policy(place);
        match policy.bindings.iter_mut().find(|b| {
            b.role == key.role && same_condition(b.condition.as_ref(), key.condition.as_ref())
        }) {
            Some(b) => {
                if !b.members.iter().any(|m| same_member(m, member)) {
                    b.members.push(member.clone());
                }
            }
            None => policy.bindings.push(binding(key, vec![member.clone()])),
        }
    }

    /// Sets the members of `key`'s binding exactly (an authoritative binding).
    fn set_binding(&mut self, place: Place, key: &RoleKey, members: &[Member]) {
        let policy = self.policy(place);
        let mut lost: Vec<Member> = Vec::new();
        for b in policy.bindings.iter().filter(|b| {
            b.role == key.role && same_condition(b.condition.as_ref(), key.condition.as_ref())
        }) {
            lost.extend(
                b.members
                    .iter()
                    .filter(|m| !members.iter().any(|n| same_member(m, n)))
                    .cloned(),
            );
        }
        policy.bindings.retain(|b| {
            !(b.role == key.role && same_condition(b.condition.as_ref(), key.condition.as_ref()))
        });
        if !members.is_empty() {
            policy.bindings.push(binding(key, members.to_vec()));
        }
        for m in lost {
            self.removed(place, &key.role, &m, key.condition.is_some());
        }
    }

    /// Replaces the whole policy's bindings.
    fn replace_policy(&mut self, place: Place, new: &Policy) {
        let old = std::mem::take(&mut self.policy(place).bindings);
        for b in &old {
            for m in &b.members {
                let kept = new.bindings.iter().any(|n| {
                    n.role == b.role
                        && same_condition(n.condition.as_ref(), b.condition.as_ref())
                        && n.members.iter().any(|x| same_member(x, m))
                });
                if !kept {
                    self.removed(place, &b.role, m, b.condition.is_some());
                }
            }
        }
        self.policy(place).bindings = new.bindings.clone();
    }

    /// `google_project_iam_member_remove`: the member leaves every binding of the role.
    fn remove_from_role(&mut self, place: Place, role: &Role, member: &Member) {
        let policy = self.policy(place);
        let mut lost = Vec::new();
        for b in policy.bindings.iter_mut().filter(|b| &b.role == role) {
            let n = b.members.len();
            b.members.retain(|m| !same_member(m, member));
            if b.members.len() != n {
                lost.push(b.condition.is_some());
            }
        }
        policy.bindings.retain(|b| !b.members.is_empty());
        for conditional in lost {
            self.removed(place, role, member, conditional);
        }
    }

    /// A deleted account's grants stay in policies as `deleted:serviceAccount:EMAIL?uid=N` and
    /// grant nothing.
    fn delete_account(&mut self, email: &ServiceAccountEmail, unique_id: Option<String>) {
        let uid = unique_id
            .clone()
            .or_else(|| match self.state.accounts.get(email) {
                Some(
                    AccountState::Active { unique_id }
                    | AccountState::Disabled { unique_id }
                    | AccountState::Deleted { unique_id },
                ) => unique_id.clone(),
                _ => None,
            });
        let deleted = Member::parse(&format!(
            "deleted:serviceAccount:{}?uid={}",
            email,
            uid.as_deref().unwrap_or("0")
        ))
        .expect("a deleted member built from an email is valid");
        let places: Vec<Place> = std::iter::once(Place::Own)
            .chain((0..self.state.ancestors.len()).map(Place::Ancestor))
            .collect();
        for place in places {
            let mut lost = Vec::new();
            for b in self.policy(place).bindings.iter_mut() {
                for m in b.members.iter_mut() {
                    if m.is_service_account(email) {
                        *m = deleted.clone();
                        lost.push((b.role.clone(), b.condition.is_some()));
                    }
                }
            }
            for (role, conditional) in lost {
                let member = Member::service_account(email);
                self.removed(place, &role, &member, conditional);
            }
        }
        self.state
            .accounts
            .insert(email.clone(), AccountState::Deleted { unique_id: uid });
        self.effects.push((
            self.index,
            Effect::AccountGone {
                email: email.clone(),
                deleted: true,
            },
        ));
    }

    fn disable_account(&mut self, email: &ServiceAccountEmail) {
        let unique_id = match self.state.accounts.get(email) {
            Some(AccountState::Active { unique_id } | AccountState::Disabled { unique_id }) => {
                unique_id.clone()
            }
            _ => None,
        };
        self.state
            .accounts
            .insert(email.clone(), AccountState::Disabled { unique_id });
        self.effects.push((
            self.index,
            Effect::AccountGone {
                email: email.clone(),
                deleted: false,
            },
        ));
    }

    fn node_account(&mut self, raw: &str, pool: String) {
        let email = if raw.is_empty() || raw == "default" {
            ServiceAccountEmail::compute_default(&self.state.project_number)
        } else {
            match ServiceAccountEmail::parse(raw) {
                Ok(e) => e,
                Err(_) => return,
            }
        };
        self.effects
            .push((self.index, Effect::NodeAccount { email, pool }));
    }
}

/// Which part of a change a step applies: what it takes away, then what it sets or adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Remove,
    Add,
}

/// The steps of a change, each with its phase (the worst order for GKE, see the module's header).
/// Within a kind, removals come before additions: a grant moved from one resource address to another
/// (a refactor without a `moved` block) is kept, as its net effect is.
fn steps(what: &What) -> Vec<(u8, Part)> {
    let split = |remove: u8| vec![(remove, Part::Remove), (remove + 1, Part::Add)];
    match what {
        What::Project { .. } => vec![(0, Part::Add)],
        What::Cluster { .. } => vec![(1, Part::Add)],
        What::NodePool { .. } => vec![(2, Part::Add)],
        What::Member { .. } => split(3),
        What::Policy { .. } => split(5),
        What::Binding { .. } => split(7),
        What::MemberRemove { .. } => vec![(9, Part::Add)],
        What::ServiceAccount { .. } | What::DefaultAccounts { .. } => vec![(10, Part::Add)],
        What::ContainerApi { .. } => vec![(11, Part::Add)],
        What::DenyPolicy { .. } => vec![(12, Part::Add)],
        What::OrgPolicy { .. } => vec![(13, Part::Add)],
    }
}

/// The state after applying `changes` (those that bear on it) to `before`.
pub fn apply(before: &ProjectState, changes: &[Change]) -> Applied {
    let mut state = before.clone();
    let mut order: Vec<(u8, usize, Part)> = changes
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            steps(&c.what)
                .into_iter()
                .map(move |(p, part)| (p, i, part))
        })
        .collect();
    order.sort();
    let mut effects = Vec::new();
    let mut applied = BTreeSet::new();
    for (_, i, part) in order {
        let change = &changes[i];
        if !touches(&state, change) {
            continue;
        }
        let mut ed = Editor {
            state: &mut state,
            effects: Vec::new(),
            index: i,
        };
        if apply_one(&mut ed, change, part) {
            applied.insert(i);
        }
        effects.append(&mut ed.effects);
    }
    Applied {
        state,
        effects,
        applied,
    }
}

/// Applies one change; false if it turned out not to bear on this project.
fn apply_one(ed: &mut Editor<'_>, change: &Change, part: Part) -> bool {
    let places = places(ed.state, &change.scope, is_project_level(&change.kind));
    match &change.what {
        What::Project { .. } => true,
        What::Policy { after } => {
            let empty = Policy::default();
            for &p in &places {
                match (part, after) {
                    (Part::Remove, None) => ed.replace_policy(p, &empty),
                    (Part::Add, Some(policy)) => ed.replace_policy(p, policy),
                    _ => {}
                }
            }
            !places.is_empty()
        }
        What::Binding { before, after } => {
            for &p in &places {
                match (part, before, after) {
                    (Part::Remove, Some(key), _) => ed.set_binding(p, key, &[]),
                    (Part::Add, _, Some((key, members))) => ed.set_binding(p, key, members),
                    _ => {}
                }
            }
            !places.is_empty()
        }
        What::Member { before, after } => {
            for &p in &places {
                match (part, before, after) {
                    (Part::Remove, Some(Grant { key, member }), _) if before != after => {
                        ed.remove_member(p, key, member)
                    }
                    (Part::Add, _, Some(Grant { key, member })) => ed.add_member(p, key, member),
                    _ => {}
                }
            }
            !places.is_empty()
        }
        What::MemberRemove { grant } => {
            for &p in &places {
                ed.remove_from_role(p, &grant.key.role, &grant.member);
            }
            true
        }
        What::ServiceAccount {
            email,
            unique_id,
            deleted,
            exists_after,
            disabled_after,
            disabled_before,
        } => {
            let Some(email) = email else {
                return false;
            };
            let known = ed.state.accounts.contains_key(email)
                || crate::domain::evaluate::all_policies(ed.state).any(|(_, p)| {
                    p.bindings
                        .iter()
                        .any(|b| b.members.iter().any(|m| m.is_service_account(email)))
                });
            if !known && places.is_empty() {
                return false;
            }
            if *deleted {
                ed.delete_account(email, unique_id.clone());
            }
            if *exists_after {
                if *disabled_after && (!*disabled_before || *deleted) {
                    ed.disable_account(email);
                } else if *deleted || !*disabled_after {
                    let unique_id = None;
                    ed.state
                        .accounts
                        .insert(email.clone(), AccountState::Active { unique_id });
                }
            }
            true
        }
        What::DefaultAccounts { action } => {
            if places.is_empty() {
                return false;
            }
            let email = ServiceAccountEmail::compute_default(&ed.state.project_number);
            match action.as_str() {
                "DEPRIVILEGE" => {
                    let editor = Role::parse(ROLE_EDITOR).expect("constant role");
                    ed.remove_from_role(Place::Own, &editor, &Member::service_account(&email));
                }
                "DISABLE" => ed.disable_account(&email),
                _ => ed.delete_account(&email, None),
            }
            true
        }
        What::ContainerApi { disables, .. } => {
            if places.is_empty() {
                return false;
            }
            if *disables {
                ed.state.container_api = ApiState::Disabled;
                ed.effects.push((ed.index, Effect::ApiDisabled));
            } else if ed.state.container_api == ApiState::Disabled {
                ed.state.container_api = ApiState::Enabled;
            }
            true
        }
        What::DenyPolicy {
            id,
            after,
            display_name,
            ..
        } => {
            if places.is_empty() {
                return false;
            }
            let point = match (&change.scope, places[0]) {
                (Scope::Folder(f), _) => format!("folders/{f}"),
                (Scope::Organization(o), _) => format!("organizations/{o}"),
                _ => format!("projects/{}", ed.state.project_number),
            };
            let suffix = format!("/denypolicies/{id}");
            ed.state
                .access
                .deny_policies
                .retain(|d| !(d.attached_to == point && d.name.ends_with(&suffix)));
            if let Some(rules) = after {
                let name = format!(
                    "policies/cloudresourcemanager.googleapis.com%2F{}{suffix}",
                    point.replace('/', "%2F")
                );
                ed.state.access.deny_policies.push(DenyPolicy {
                    name: name.clone(),
                    attached_to: point,
                    display_name: display_name.clone(),
                    rules: rules.clone(),
                });
                ed.effects.push((ed.index, Effect::DenyPolicy { name }));
            }
            true
        }
        What::OrgPolicy { enforced_after } => {
            if places.is_empty() {
                return false;
            }
            if *enforced_after {
                ed.state.access.automatic_grants = OrgPolicyFact::Enforced;
                ed.effects.push((ed.index, Effect::OrgPolicyEnforced));
            } else if places == [Place::Own] {
                ed.state.access.automatic_grants = OrgPolicyFact::NotEnforced;
            }
            true
        }
        What::Cluster {
            before,
            after,
            pools_known,
        } => {
            if places.is_empty() {
                return false;
            }
            apply_cluster(ed, before.as_ref(), after.as_ref(), *pools_known);
            true
        }
        What::NodePool {
            cluster,
            location,
            before,
            after,
        } => {
            if places.is_empty() {
                return false;
            }
            apply_pool(
                ed,
                cluster,
                location.as_deref(),
                before.as_ref(),
                after.as_ref(),
            );
            true
        }
    }
}

fn find_cluster<'a>(
    clusters: &'a mut [Cluster],
    name: &str,
    location: Option<&str>,
) -> Option<&'a mut Cluster> {
    clusters
        .iter_mut()
        .find(|c| c.name == name && location.is_none_or(|l| l == "(unknown)" || l == c.location))
}

fn apply_cluster(
    ed: &mut Editor<'_>,
    before: Option<&Cluster>,
    after: Option<&Cluster>,
    pools_known: bool,
) {
    let known = |l: &str| (l != "(unknown)").then(|| l.to_owned());
    match (before, after) {
        (Some(b), None) => {
            let loc = known(&b.location);
            ed.state
                .clusters
                .retain(|c| !(c.name == b.name && loc.as_ref().is_none_or(|l| *l == c.location)));
        }
        (b, Some(a)) => {
            let loc = known(&a.location);
            let existing = find_cluster(&mut ed.state.clusters, &a.name, loc.as_deref()).cloned();
            let replaced = b.is_some_and(|b| b.name != a.name || b.location != a.location);
            if replaced && let Some(b) = b {
                ed.state
                    .clusters
                    .retain(|c| !(c.name == b.name && c.location == b.location));
            }
            let mut next = match existing.filter(|_| b.is_some() && !replaced) {
                // An update: inline pools by name; pools managed by their own resources stay.
                Some(mut live) => {
                    for pool in &a.node_pools {
                        match live.node_pools.iter_mut().find(|p| p.name == pool.name) {
                            Some(p) => p.service_account = pool.service_account.clone(),
                            None => live.node_pools.push(pool.clone()),
                        }
                    }
                    if pools_known && let Some(b) = b {
                        live.node_pools.retain(|p| {
                            a.node_pools.iter().any(|x| x.name == p.name)
                                || !b.node_pools.iter().any(|x| x.name == p.name)
                        });
                    }
                    live.autopilot = a.autopilot;
                    live.autoprovisioning_service_account =
                        a.autoprovisioning_service_account.clone();
                    live
                }
                None => a.clone(),
            };
            if next.location == "(unknown)"
                && let Some(b) = b
            {
                next.location = b.location.clone();
            }
            ed.state
                .clusters
                .retain(|c| !(c.name == next.name && c.location == next.location));
            for pool in &next.node_pools {
                let was = b.and_then(|b| b.node_pools.iter().find(|p| p.name == pool.name));
                if was.is_none_or(|w| w.service_account != pool.service_account) {
                    let at = format!("{}/{}/{}", next.location, next.name, pool.name);
                    ed.node_account(&pool.service_account, at);
                }
            }
            if let Some(sa) = &next.autoprovisioning_service_account
                && b.and_then(|b| b.autoprovisioning_service_account.as_ref()) != Some(sa)
            {
                let at = format!("{}/{}", next.location, next.name);
                ed.node_account(sa, at);
            }
            ed.state.clusters.push(next);
        }
        (None, None) => {}
    }
}

fn apply_pool(
    ed: &mut Editor<'_>,
    cluster: &str,
    location: Option<&str>,
    before: Option<&NodePool>,
    after: Option<&NodePool>,
) {
    if find_cluster(&mut ed.state.clusters, cluster, location).is_none() {
        if after.is_none() {
            return;
        }
        // A cluster the live state does not show (created by the plan without being read, or in
        // zones that could not be listed): the pool is checked all the same.
        ed.state.clusters.push(Cluster {
            name: cluster.to_owned(),
            location: location.unwrap_or("(unknown)").to_owned(),
            autopilot: false,
            node_pools: Vec::new(),
            autoprovisioning_service_account: None,
        });
    }
    let c = find_cluster(&mut ed.state.clusters, cluster, location).expect("just ensured");
    if let Some(b) = before {
        c.node_pools.retain(|p| p.name != b.name);
    }
    let at = after.map(|a| format!("{}/{}/{}", c.location, c.name, a.name));
    if let Some(a) = after {
        c.node_pools.retain(|p| p.name != a.name);
        c.node_pools.push(a.clone());
    }
    if let (Some(a), Some(at)) = (after, at)
        && before.is_none_or(|b| b.service_account != a.service_account)
    {
        ed.node_account(&a.service_account, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::iam::{Condition, ProjectId, ProjectNumber};
    use crate::plan_guard::offline::empty_state;
    use crate::plan_guard::terraform::Action;

    const NODES: &str = "serviceAccount:nodes@p.iam.gserviceaccount.com";

    fn role(r: &str) -> Role {
        Role::parse(r).unwrap()
    }

    fn member(m: &str) -> Member {
        Member::parse(m).unwrap()
    }

    fn key(r: &str, condition: Option<&str>) -> RoleKey {
        RoleKey {
            role: role(r),
            condition: condition.map(|e| Condition {
                expression: e.to_owned(),
                ..Condition::default()
            }),
        }
    }

    fn change(address: &str, action: Action, what: What) -> Change {
        Change {
            address: address.to_owned(),
            kind: "google_project_iam_member".to_owned(),
            action,
            scope: Scope::Project("p".to_owned()),
            what,
            unknowns: Vec::new(),
        }
    }

    fn state() -> ProjectState {
        let mut s = empty_state(
            ProjectId::parse("p").unwrap(),
            ProjectNumber::parse("1").unwrap(),
        );
        s.policy.add_member(
            &role("roles/container.defaultNodeServiceAccount"),
            &member(NODES),
        );
        s
    }

    #[test]
    fn an_authoritative_binding_wins_over_a_grant_added_in_the_same_plan() {
        let node_role = key("roles/container.defaultNodeServiceAccount", None);
        let changes = vec![
            change(
                "google_project_iam_member.nodes",
                Action::Create,
                What::Member {
                    before: None,
                    after: Some(Grant {
                        key: node_role.clone(),
                        member: member(NODES),
                    }),
                },
            ),
            change(
                "google_project_iam_binding.nodes",
                Action::Create,
                What::Binding {
                    before: None,
                    after: Some((node_role.clone(), vec![member("user:a@example.com")])),
                },
            ),
        ];
        let applied = apply(&state(), &changes);
        assert!(
            !applied
                .state
                .policy
                .grants_unconditionally(&node_role.role, &member(NODES))
        );
        assert_eq!(
            applied.effects,
            vec![(
                1,
                Effect::RemovedGrant {
                    resource: "projects/p".to_owned(),
                    role: node_role.role,
                    member: member(NODES),
                    conditional: false,
                }
            )]
        );
    }

    #[test]
    fn a_grant_moved_to_another_address_is_kept() {
        let grant = Grant {
            key: key("roles/container.defaultNodeServiceAccount", None),
            member: member(NODES),
        };
        // The new address sorts first: its creation is in the plan before the old one's deletion.
        let changes = vec![
            change(
                "google_project_iam_member.a_new",
                Action::Create,
                What::Member {
                    before: None,
                    after: Some(grant.clone()),
                },
            ),
            change(
                "google_project_iam_member.z_old",
                Action::Delete,
                What::Member {
                    before: Some(grant.clone()),
                    after: None,
                },
            ),
        ];
        let applied = apply(&state(), &changes);
        assert!(
            applied
                .state
                .policy
                .grants_unconditionally(&grant.key.role, &grant.member)
        );
    }

    #[test]
    fn a_conditional_binding_is_authoritative_for_its_condition_only() {
        let changes = vec![change(
            "google_project_iam_binding.tagged",
            Action::Create,
            What::Binding {
                before: None,
                after: Some((
                    key(
                        "roles/container.defaultNodeServiceAccount",
                        Some("resource.matchTag('1/env', 'prod')"),
                    ),
                    vec![member("user:a@example.com")],
                )),
            },
        )];
        let applied = apply(&state(), &changes);
        assert!(applied.effects.is_empty());
        assert!(applied.state.policy.grants_unconditionally(
            &role("roles/container.defaultNodeServiceAccount"),
            &member(NODES)
        ));
        assert_eq!(applied.state.policy.bindings.len(), 2);
    }

    #[test]
    fn a_replaced_account_keeps_its_email_but_none_of_its_grants() {
        let email = ServiceAccountEmail::parse("nodes@p.iam.gserviceaccount.com").unwrap();
        let changes = vec![change(
            "google_service_account.nodes",
            Action::Replace,
            What::ServiceAccount {
                email: Some(email.clone()),
                unique_id: Some("42".to_owned()),
                deleted: true,
                exists_after: true,
                disabled_after: false,
                disabled_before: false,
            },
        )];
        let applied = apply(&state(), &changes);
        assert_eq!(
            applied.state.policy.bindings[0].members,
            vec![member(
                "deleted:serviceAccount:nodes@p.iam.gserviceaccount.com?uid=42"
            )]
        );
        assert_eq!(
            applied.state.accounts.get(&email),
            Some(&AccountState::Active { unique_id: None })
        );
    }

    #[test]
    fn changes_to_other_projects_and_folders_not_above_it_do_not_apply() {
        let mut other = change(
            "google_project_iam_member.elsewhere",
            Action::Delete,
            What::Member {
                before: Some(Grant {
                    key: key("roles/container.defaultNodeServiceAccount", None),
                    member: member(NODES),
                }),
                after: None,
            },
        );
        other.scope = Scope::Project("q".to_owned());
        let mut folder = other.clone();
        folder.kind = "google_folder_iam_member".to_owned();
        folder.scope = Scope::Folder("9".to_owned());
        let applied = apply(&state(), &[other, folder]);
        assert!(applied.applied.is_empty());
        assert!(applied.effects.is_empty());
    }
}
