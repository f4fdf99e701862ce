//! IAM v2 deny policies and Org Policy v2 boolean policies: their world-file checks, their run-time
//! state, and the two evaluations other APIs share (does a deny rule block a permission for a
//! principal; is a boolean constraint enforced on a resource). The HTTP surfaces are `iam_v2`,
//! `orgpolicy` and `cloudidentity`; the Policy Troubleshooter uses [`deny_state`].

use std::collections::BTreeMap;

use crate::cel::{self, Truth};
use crate::state::{PolicyRef, State, stable_hash};
use crate::world::{World, WorldDenyPolicy, WorldError, WorldOrgPolicy};

/// Policy id: 3-63 characters, lower-case letters, digits, `-` and `.`, starting with a letter.
pub fn check_policy_id(s: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    ok.then_some(()).ok_or_else(|| {
        format!(
            "`{s}` is not a deny policy id (3-63 of a-z, 0-9, `-`, `.`, starting with a letter)"
        )
    })
}

/// A v2 principal identifier (the forms of `DenyRule.deniedPrincipals`).
pub fn check_principal(s: &str) -> Result<(), String> {
    let email = |e: &str| crate::model::is_email(e);
    let ok = if let Some(e) =
        s.strip_prefix("principal://iam.googleapis.com/projects/-/serviceAccounts/")
    {
        email(e) || (!e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))
    } else if let Some(e) = s
        .strip_prefix("principal://goog/subject/")
        .or_else(|| s.strip_prefix("principalSet://goog/group/"))
    {
        email(e)
    } else if let Some(rest) = s.strip_prefix("principalSet://cloudresourcemanager.googleapis.com/")
    {
        let parts: Vec<&str> = rest.split('/').collect();
        matches!(parts.as_slice(), [kind, id, "type", t]
            if matches!(*kind, "projects" | "folders" | "organizations")
                && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
                && matches!(*t, "ServiceAccount" | "ServiceAgent"))
    } else if let Some(c) = s.strip_prefix("principalSet://goog/cloudIdentityCustomerId/") {
        !c.is_empty() && c.chars().all(|c| c.is_ascii_alphanumeric())
    } else {
        s == "principalSet://goog/public:all"
            || s.starts_with("principal://iam.googleapis.com/locations/global/workforcePools/")
            || s.starts_with("principalSet://iam.googleapis.com/locations/global/workforcePools/")
    };
    ok.then_some(()).ok_or_else(|| {
        format!(
            "`{s}` is not a v2 principal identifier (e.g. principal://iam.googleapis.com/projects/-/serviceAccounts/EMAIL, principalSet://goog/group/EMAIL, principalSet://goog/public:all)"
        )
    })
}

/// A v2 permission `SERVICE.googleapis.com/RESOURCE.VERB`, `*` allowed for RESOURCE and VERB.
pub fn check_permission(s: &str) -> Result<(), String> {
    let word =
        |w: &str| w == "*" || (!w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric()));
    let ok = match s.split_once('/') {
        Some((service, rest)) => {
            service.ends_with(".googleapis.com")
                && service
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
                && rest
                    .split_once('.')
                    .is_some_and(|(r, v)| word(r) && word(v))
        }
        None => false,
    };
    ok.then_some(()).ok_or_else(|| {
        format!("`{s}` is not a v2 permission (SERVICE.googleapis.com/RESOURCE.VERB, e.g. logging.googleapis.com/logEntries.create)")
    })
}

/// A constraint name without the `constraints/` prefix.
pub fn check_constraint(s: &str) -> Result<(), String> {
    let ok = s.split_once('.').is_some_and(|(svc, rest)| {
        !svc.is_empty()
            && !rest.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
    });
    ok.then_some(()).ok_or_else(|| {
        format!("`{s}` is not a constraint name (SERVICE.NAME without `constraints/`, e.g. iam.automaticIamGrantsForDefaultServiceAccounts)")
    })
}

/// Checks the deny and org policies of one node of the hierarchy (`at` names it in errors).
pub fn check_node<F>(
    deny: &[WorldDenyPolicy],
    org: &[WorldOrgPolicy],
    at: &str,
    invalid: &F,
) -> Result<(), WorldError>
where
    F: Fn(String, &str, String) -> WorldError,
{
    let mut ids = std::collections::BTreeSet::new();
    for (i, p) in deny.iter().enumerate() {
        let field = format!("{at}.deny_policies[{i}]");
        if !ids.insert(p.id.0.clone()) {
            return Err(invalid(
                format!("{field}.id"),
                &p.id.0,
                format!("duplicate deny policy id {}", p.id.0),
            ));
        }
        if p.rules.is_empty() {
            return Err(invalid(
                format!("{field}.rules"),
                &p.id.0,
                "a deny policy needs at least one rule".into(),
            ));
        }
        for (j, r) in p.rules.iter().enumerate() {
            let rf = format!("{field}.rules[{j}]");
            if r.denied_principals.is_empty() || r.denied_permissions.is_empty() {
                return Err(invalid(
                    rf,
                    &p.id.0,
                    "a deny rule needs denied_principals and denied_permissions".into(),
                ));
            }
            if let Some(k) = r
                .exception_principals
                .iter()
                .position(|x| x.0 == "principalSet://goog/public:all")
            {
                return Err(invalid(
                    format!("{rf}.exception_principals[{k}]"),
                    "exception_principals",
                    "principalSet://goog/public:all cannot be an exception".into(),
                ));
            }
        }
    }
    let mut constraints = std::collections::BTreeSet::new();
    for (i, p) in org.iter().enumerate() {
        let field = format!("{at}.org_policies[{i}]");
        if !constraints.insert(p.constraint.0.clone()) {
            return Err(invalid(
                format!("{field}.constraint"),
                &p.constraint.0,
                format!("duplicate policy for {}", p.constraint.0),
            ));
        }
        let set = usize::from(p.enforce.is_some())
            + usize::from(p.reset)
            + usize::from(p.inherit_from_parent);
        if set != 1 {
            return Err(invalid(
                field,
                &p.constraint.0,
                "give exactly one of `enforce`, `reset: true` or `inherit_from_parent: true`"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// One deny policy as served.
#[derive(Debug, Clone)]
pub struct DenyPolicyState {
    /// The world's definition.
    pub world: WorldDenyPolicy,
    /// `uid`.
    pub uid: String,
    /// `etag`.
    pub etag: String,
}

/// Deny and org policies by node: `organizations/N`, `folders/N`, `projects/NUMBER`.
#[derive(Debug, Clone, Default)]
pub struct AccessState {
    /// Deny policies per attachment point.
    pub deny: BTreeMap<String, Vec<DenyPolicyState>>,
    /// Org policies per resource.
    pub org: BTreeMap<String, Vec<WorldOrgPolicy>>,
}

fn uuid_like(seed: &str) -> String {
    let a = stable_hash(seed);
    let b = stable_hash(&format!("{seed}#"));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

impl AccessState {
    /// From a validated world.
    pub fn from_world(world: &World) -> Self {
        let mut st = Self::default();
        let mut add = |key: String, deny: &[WorldDenyPolicy], org: &[WorldOrgPolicy]| {
            if !deny.is_empty() {
                let policies = deny
                    .iter()
                    .map(|p| {
                        let seed = format!("{key}/{}", p.id.0);
                        let etag = base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            (stable_hash(&seed) % 10_000_000_000_000_000_000).to_string(),
                        );
                        DenyPolicyState {
                            world: p.clone(),
                            uid: uuid_like(&seed),
                            etag,
                        }
                    })
                    .collect();
                st.deny.insert(key.clone(), policies);
            }
            if !org.is_empty() {
                st.org.insert(key, org.to_vec());
            }
        };
        if let Some(o) = &world.organization {
            add(
                format!("organizations/{}", o.id),
                &o.deny_policies,
                &o.org_policies,
            );
        }
        for f in &world.folders {
            add(
                format!("folders/{}", f.id),
                &f.deny_policies,
                &f.org_policies,
            );
        }
        for p in &world.projects {
            add(
                format!("projects/{}", p.number),
                &p.deny_policies,
                &p.org_policies,
            );
        }
        st
    }

    /// The world's deny policies of a node (for dumps).
    pub fn deny_of(&self, key: &str) -> Vec<WorldDenyPolicy> {
        self.deny
            .get(key)
            .map(|ps| ps.iter().map(|p| p.world.clone()).collect())
            .unwrap_or_default()
    }

    /// The world's org policies of a node (for dumps).
    pub fn org_of(&self, key: &str) -> Vec<WorldOrgPolicy> {
        self.org.get(key).cloned().unwrap_or_default()
    }
}

/// The node key (`projects/NUMBER`, `folders/N`, `organizations/N`) of a policy reference.
pub fn node_key(st: &State, r: &PolicyRef) -> String {
    match r {
        PolicyRef::Project(i) => format!(
            "projects/{}",
            st.projects.get(*i).map(|p| p.number.as_str()).unwrap_or("")
        ),
        other => st.resource_name(other),
    }
}

/// The resource and its ancestors, nearest first, for `projects/X`, `folders/N`, `organizations/N`.
pub fn chain(st: &State, kind: &str, id: &str) -> Option<Vec<PolicyRef>> {
    match kind {
        "projects" => st.project_idx(id).map(|i| st.ancestors(i)),
        "folders" if st.folders.contains_key(id) => {
            let mut out = vec![PolicyRef::Folder(id.to_owned())];
            let mut cur = st.folders.get(id).map(|f| f.parent.clone());
            while let Some(p) = cur.take() {
                if out.len() > 100 {
                    break;
                }
                if let Some(f) = p.strip_prefix("folders/") {
                    out.push(PolicyRef::Folder(f.to_owned()));
                    cur = st.folders.get(f).map(|x| x.parent.clone());
                } else if st.org.is_some() {
                    out.push(PolicyRef::Organization);
                }
            }
            Some(out)
        }
        "organizations" if st.org.as_ref().is_some_and(|o| o.id == id) => {
            Some(vec![PolicyRef::Organization])
        }
        _ => None,
    }
}

/// Whether the boolean `constraint` is enforced at the first node of `chain` (closest policy wins;
/// `reset` is the default, not enforced; `inherit_from_parent` defers to the parent).
pub fn enforced(st: &State, chain: &[PolicyRef], constraint: &str) -> bool {
    for r in chain {
        let key = node_key(st, r);
        if let Some(p) = st
            .access
            .org
            .get(&key)
            .and_then(|ps| ps.iter().find(|p| p.constraint.0 == constraint))
        {
            if p.reset {
                return false;
            }
            if let Some(e) = p.enforce {
                return e;
            }
        }
    }
    false
}

fn principal_includes(st: &State, principal: &str, email: &str) -> bool {
    let email = email.to_ascii_lowercase();
    if principal == "principalSet://goog/public:all" {
        return true;
    }
    if let Some(e) = principal
        .strip_prefix("principal://iam.googleapis.com/projects/-/serviceAccounts/")
        .or_else(|| principal.strip_prefix("principal://goog/subject/"))
    {
        if e.eq_ignore_ascii_case(&email) {
            return true;
        }
        return st.live_account(&email).is_some_and(|sa| sa.unique_id == e);
    }
    if let Some(g) = principal.strip_prefix("principalSet://goog/group/") {
        return crate::troubleshooter::member_matches(st, &format!("group:{g}"), &email, 0);
    }
    if let Some(rest) =
        principal.strip_prefix("principalSet://cloudresourcemanager.googleapis.com/")
    {
        let parts: Vec<&str> = rest.split('/').collect();
        let [kind, id, "type", t] = parts.as_slice() else {
            return false;
        };
        let Some((pi, _)) = st.accounts(&email).into_iter().next() else {
            return false;
        };
        let agent =
            email.starts_with("service-") || email.ends_with("cloudservices.gserviceaccount.com");
        if (*t == "ServiceAgent") != agent {
            return false;
        }
        let key = format!("{kind}/{id}");
        return st.ancestors(pi).iter().any(|r| node_key(st, r) == key);
    }
    false
}

fn permission_listed(pattern: &str, fqdn: &str) -> bool {
    let (Some((ps, pr)), Some((ws, wr))) = (pattern.split_once('/'), fqdn.split_once('/')) else {
        return false;
    };
    let (Some((pres, pverb)), Some((wres, wverb))) = (pr.rsplit_once('.'), wr.rsplit_once('.'))
    else {
        return false;
    };
    ps == ws && (pres == "*" || pres == wres) && (pverb == "*" || pverb == wverb)
}

/// How deny policies bear on (email, permission in v2 form) over a resource chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyState {
    /// No rule applies.
    NotDenied,
    /// A rule applies: (attachment key, policy name).
    Denied(String, String),
    /// A rule applies only if its condition holds, which cannot be evaluated.
    Conditional(String, String),
}

/// The full name of a deny policy on a node.
pub fn policy_name(key: &str, id: &str) -> String {
    format!(
        "policies/cloudresourcemanager.googleapis.com%2F{}/denypolicies/{id}",
        key.replace('/', "%2F")
    )
}

/// Whether the deny policies on `chain` deny `fqdn` (v2 form) to `email` now.
pub fn deny_state(st: &State, chain: &[PolicyRef], email: &str, fqdn: &str) -> DenyState {
    let mut conditional = None;
    for r in chain {
        let key = node_key(st, r);
        for p in st.access.deny.get(&key).into_iter().flatten() {
            for rule in &p.world.rules {
                let listed = rule
                    .denied_permissions
                    .iter()
                    .any(|x| permission_listed(&x.0, fqdn))
                    && !rule
                        .exception_permissions
                        .iter()
                        .any(|x| permission_listed(&x.0, fqdn));
                let who = rule
                    .denied_principals
                    .iter()
                    .any(|x| principal_includes(st, &x.0, email))
                    && !rule
                        .exception_principals
                        .iter()
                        .any(|x| principal_includes(st, &x.0, email));
                if !(listed && who) {
                    continue;
                }
                let name = policy_name(&key, &p.world.id.0);
                match rule
                    .denial_condition
                    .as_ref()
                    .map_or(Truth::True, |c| cel::evaluate_now(&c.expression))
                {
                    Truth::True => return DenyState::Denied(key, name),
                    Truth::Unknown if conditional.is_none() => {
                        conditional = Some((key.clone(), name))
                    }
                    _ => {}
                }
            }
        }
    }
    conditional.map_or(DenyState::NotDenied, |(k, n)| DenyState::Conditional(k, n))
}
