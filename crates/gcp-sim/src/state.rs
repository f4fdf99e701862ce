//! The simulator's live state: the world turned into mutable resources (policies with etags, service
//! accounts with deletion times, recommendations with etags, operations), plus conversion back to a world
//! for `GET /_sim/world`.
//!
//! Owns lookups (project by id or number, service account by email or unique id, ancestors) and the
//! write primitives every API shares (new etags, deleted-member rewrites). It knows nothing about HTTP.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use base64::Engine;
use serde_json::Value;

use super::roles::{self, RoleDef};
use super::world::{
    World, WorldBinding, WorldCluster, WorldCondition, WorldFolder, WorldGroup, WorldOrganization,
    WorldPolicy, WorldProject, WorldRecommendation, WorldRole, WorldServiceAccount,
};
use crate::model::{Binding, Condition, Policy, is_member, is_role};

/// How long a deleted service account can be undeleted.
pub const UNDELETE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// Services a Service Usage operation enables or disables in one project when it is done.
#[derive(Debug, Clone)]
pub struct ServiceChange {
    /// Index into `State::projects`.
    pub project: usize,
    /// Services to enable.
    pub enable: Vec<String>,
    /// Services to disable.
    pub disable: Vec<String>,
}

/// The organization.
#[derive(Debug, Clone)]
pub struct OrgState {
    /// Numeric id.
    pub id: String,
    /// Display name (domain).
    pub display_name: String,
    /// IAM policy.
    pub policy: Policy,
    /// Custom roles by full name.
    pub custom_roles: BTreeMap<String, RoleDef>,
}

/// A folder.
#[derive(Debug, Clone)]
pub struct FolderState {
    /// Numeric id.
    pub id: String,
    /// `folders/N` or `organizations/N`.
    pub parent: String,
    /// Display name.
    pub display_name: String,
    /// IAM policy.
    pub policy: Policy,
}

/// A service account.
#[derive(Debug, Clone)]
pub struct SaState {
    /// Email (lower case).
    pub email: String,
    /// Numeric unique id.
    pub unique_id: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Disabled flag.
    pub disabled: bool,
    /// When it was deleted, if it is.
    pub deleted_at: Option<SystemTime>,
}

/// A recommendation.
#[derive(Debug, Clone)]
pub struct RecState {
    /// Recommendation id.
    pub id: String,
    /// Location.
    pub location: String,
    /// Subtype.
    pub subtype: String,
    /// Target cluster.
    pub cluster: String,
    /// `stateInfo.state`.
    pub state: String,
    /// Etag without the surrounding quotes.
    pub etag: String,
    /// `stateInfo.stateMetadata`.
    pub state_metadata: BTreeMap<String, String>,
}

/// A project.
#[derive(Debug, Clone)]
pub struct ProjectState {
    /// Project id.
    pub id: String,
    /// Project number.
    pub number: String,
    /// Display name.
    pub name: Option<String>,
    /// Parent container.
    pub parent: Option<String>,
    /// Enabled services.
    pub services: BTreeSet<String>,
    /// IAM policy.
    pub policy: Policy,
    /// Custom roles by full name.
    pub custom_roles: BTreeMap<String, RoleDef>,
    /// Service accounts (including the implicit Compute Engine default account).
    pub service_accounts: Vec<SaState>,
    /// Clusters.
    pub clusters: Vec<WorldCluster>,
    /// Zones reported missing in all-location cluster lists.
    pub missing_zones: Vec<String>,
    /// Recommendations.
    pub recommendations: Vec<RecState>,
}

/// A resource that carries an IAM policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRef {
    /// Index into `State::projects`.
    Project(usize),
    /// Folder id.
    Folder(String),
    /// The organization.
    Organization,
}

/// All mutable simulator state.
#[derive(Debug, Clone)]
pub struct State {
    /// Organization.
    pub org: Option<OrgState>,
    /// Folders by id.
    pub folders: BTreeMap<String, FolderState>,
    /// Predefined roles by name.
    pub predefined: BTreeMap<String, RoleDef>,
    /// Roles the world added (kept for dumps).
    pub world_roles: Vec<WorldRole>,
    /// Groups: email -> members.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Every service some project of the world names (they exist, whatever the catalog says).
    pub known_services: BTreeSet<String>,
    /// `setIamPolicy` rejects members that name no principal (the world's `strict_members`).
    pub strict_members: bool,
    /// The world's `strict_roles` (kept for dumps).
    pub strict_roles: Option<bool>,
    /// Projects in world order.
    pub projects: Vec<ProjectState>,
    /// Finished long-running operations by name (Service Usage and Container).
    pub operations: BTreeMap<String, Value>,
    /// Operations still running: name -> (polls left, the finished operation, its deferred effect).
    pub running_operations: BTreeMap<String, (u32, Value, Option<ServiceChange>)>,
    /// `operations.get` polls a new operation needs before it is done (0: done at once).
    pub operation_polls: u32,
    /// Every audit-log entry the simulator wrote, oldest first (bounded), for `logging.entries.list`.
    pub log_entries: std::collections::VecDeque<(u64, Value)>,
    /// Sequence number of the last recorded log entry.
    pub log_seq: u64,
    /// IAM v2 deny policies and Org Policy v2 policies (read-only).
    pub access: crate::access::AccessState,
    etag_salt: u64,
    etag_seq: u64,
    /// Project position by id and by number.
    project_keys: HashMap<String, usize>,
    /// Service account positions (project, account) by lower-case email, live and deleted.
    sa_emails: HashMap<String, Vec<(usize, usize)>>,
    /// Service account position by unique id.
    sa_ids: HashMap<String, (usize, usize)>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A stable 64-bit hash (FNV-1a) for derived ids.
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn role_def(r: &WorldRole) -> RoleDef {
    let short = r.name.rsplit('/').next().unwrap_or(&r.name).to_owned();
    RoleDef {
        name: r.name.clone(),
        title: r.title.clone().unwrap_or(short),
        description: r.description.clone().unwrap_or_default(),
        stage: r.stage.clone().unwrap_or_else(|| "GA".into()),
        included_permissions: r.included_permissions.clone(),
    }
}

fn world_role(r: &RoleDef) -> WorldRole {
    WorldRole {
        name: r.name.clone(),
        title: Some(r.title.clone()),
        description: (!r.description.is_empty()).then(|| r.description.clone()),
        stage: Some(r.stage.clone()),
        included_permissions: r.included_permissions.clone(),
    }
}

/// Builds a domain policy from a world policy (names were validated when the world loaded).
fn to_policy(p: Option<&WorldPolicy>) -> Policy {
    let Some(p) = p else {
        return Policy {
            version: 1,
            ..Default::default()
        };
    };
    let bindings: Vec<Binding> = p
        .bindings
        .iter()
        .filter(|b| is_role(&b.role))
        .map(|b| Binding {
            role: b.role.clone(),
            members: b.members.iter().filter(|m| is_member(m)).cloned().collect(),
            condition: b.condition.as_ref().map(|c| Condition {
                expression: c.expression.clone(),
                title: c.title.clone(),
                description: c.description.clone(),
                location: None,
            }),
        })
        .collect();
    let mut policy = Policy {
        version: 1,
        bindings,
        audit_configs: p.audit_configs.clone(),
        ..Default::default()
    };
    super::policy::normalize(&mut policy);
    if policy.has_conditions() {
        policy.version = 3;
    }
    policy
}

fn from_policy(p: &Policy) -> Option<WorldPolicy> {
    if p.bindings.is_empty() && p.audit_configs.is_empty() {
        return None;
    }
    Some(WorldPolicy {
        bindings: p
            .bindings
            .iter()
            .map(|b| WorldBinding {
                role: b.role.to_string(),
                members: b.members.iter().map(|m| m.to_string()).collect(),
                condition: b.condition.as_ref().map(|c| WorldCondition {
                    title: c.title.clone(),
                    description: c.description.clone(),
                    expression: c.expression.clone(),
                }),
            })
            .collect(),
        audit_configs: p.audit_configs.clone(),
    })
}

/// Derived 21-digit unique id for a service account without one.
fn derived_unique_id(email: &str) -> String {
    let h = stable_hash(email);
    format!("1{:020}", h % 10_000_000_000_000_000_000)
}

impl State {
    /// Builds the live state from a validated world.
    pub fn from_world(world: &World) -> State {
        let mut st = State {
            org: None,
            folders: BTreeMap::new(),
            predefined: BTreeMap::new(),
            world_roles: world.roles.clone(),
            groups: world
                .groups
                .iter()
                .map(|g| (g.email.to_ascii_lowercase(), g.members.clone()))
                .collect(),
            strict_members: world.strict_members.unwrap_or(true),
            strict_roles: world.strict_roles,
            known_services: world
                .projects
                .iter()
                .flat_map(|p| p.services.iter().cloned())
                .collect(),
            projects: Vec::new(),
            operations: BTreeMap::new(),
            running_operations: BTreeMap::new(),
            operation_polls: world.operation_polls.unwrap_or(0),
            log_entries: std::collections::VecDeque::new(),
            log_seq: 0,
            access: crate::access::AccessState::from_world(world),
            etag_salt: rand::random(),
            etag_seq: 0,
            project_keys: HashMap::new(),
            sa_emails: HashMap::new(),
            sa_ids: HashMap::new(),
        };
        for r in roles::bundled() {
            st.predefined.insert(r.name.clone(), r);
        }
        for r in &world.roles {
            st.predefined.insert(r.name.clone(), role_def(r));
        }
        if let Some(o) = &world.organization {
            let mut policy = to_policy(o.iam_policy.as_ref());
            policy.etag = Some(st.next_etag());
            st.org = Some(OrgState {
                id: o.id.clone(),
                display_name: o
                    .display_name
                    .clone()
                    .unwrap_or_else(|| "example.com".into()),
                policy,
                custom_roles: o
                    .custom_roles
                    .iter()
                    .map(|r| (r.name.clone(), role_def(r)))
                    .collect(),
            });
        }
        for f in &world.folders {
            let mut policy = to_policy(f.iam_policy.as_ref());
            policy.etag = Some(st.next_etag());
            st.folders.insert(
                f.id.clone(),
                FolderState {
                    id: f.id.clone(),
                    parent: f.parent.clone(),
                    display_name: f
                        .display_name
                        .clone()
                        .unwrap_or_else(|| format!("folder-{}", f.id)),
                    policy,
                },
            );
        }
        let load_time = SystemTime::now();
        for p in &world.projects {
            let mut policy = to_policy(p.iam_policy.as_ref());
            policy.etag = Some(st.next_etag());
            let mut sas: Vec<SaState> = p
                .service_accounts
                .iter()
                .map(|s| SaState {
                    email: s.email.to_ascii_lowercase(),
                    unique_id: s
                        .unique_id
                        .clone()
                        .unwrap_or_else(|| derived_unique_id(&s.email.to_ascii_lowercase())),
                    display_name: s.display_name.clone(),
                    disabled: s.disabled,
                    deleted_at: s.deleted.then_some(load_time),
                })
                .collect();
            let compute = format!("{}-compute@developer.gserviceaccount.com", p.number);
            if !sas.iter().any(|s| s.email == compute) {
                sas.push(SaState {
                    unique_id: derived_unique_id(&compute),
                    email: compute,
                    display_name: Some("Compute Engine default service account".into()),
                    disabled: false,
                    deleted_at: None,
                });
            }
            let recommendations = p
                .recommendations
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let h = stable_hash(&format!("{}/{}/{}/{i}", p.id, r.location, r.cluster));
                    let h2 = splitmix(h);
                    RecState {
                        id: r.id.clone().unwrap_or_else(|| {
                            format!(
                                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                                h >> 32,
                                (h >> 16) & 0xffff,
                                h & 0xfff,
                                h2 >> 52,
                                h2 & 0xffff_ffff_ffff
                            )
                        }),
                        location: r.location.clone(),
                        subtype: r.subtype.clone(),
                        cluster: r.cluster.clone(),
                        state: r.state.clone().unwrap_or_else(|| "ACTIVE".into()),
                        etag: r
                            .etag
                            .clone()
                            .unwrap_or_else(|| format!("{:016x}", splitmix(h2))),
                        state_metadata: r.state_metadata.clone(),
                    }
                })
                .collect();
            st.projects.push(ProjectState {
                id: p.id.clone(),
                number: p.number.clone(),
                name: p.name.clone(),
                parent: p.parent.clone(),
                services: p.services.iter().cloned().collect(),
                policy,
                custom_roles: p
                    .custom_roles
                    .iter()
                    .map(|r| (r.name.clone(), role_def(r)))
                    .collect(),
                service_accounts: sas,
                clusters: p.clusters.clone(),
                missing_zones: p.missing_zones.clone(),
                recommendations,
            });
        }
        st.reindex();
        // Deleted accounts appear as deleted members everywhere.
        let deleted: Vec<(String, String)> = st
            .projects
            .iter()
            .flat_map(|p| p.service_accounts.iter())
            .filter(|s| s.deleted_at.is_some())
            .map(|s| (s.email.clone(), s.unique_id.clone()))
            .collect();
        for (email, uid) in deleted {
            st.rewrite_members(
                &format!("serviceAccount:{email}"),
                &format!("deleted:serviceAccount:{email}?uid={uid}"),
                false,
            );
        }
        st
    }

    /// The current state as a world document.
    pub fn to_world(&self) -> World {
        World {
            strict_members: (!self.strict_members).then_some(false),
            strict_roles: self.strict_roles,
            operation_polls: (self.operation_polls > 0).then_some(self.operation_polls),
            organization: self.org.as_ref().map(|o| WorldOrganization {
                id: o.id.clone(),
                display_name: Some(o.display_name.clone()),
                iam_policy: from_policy(&o.policy),
                custom_roles: o.custom_roles.values().map(world_role).collect(),
                deny_policies: self.access.deny_of(&format!("organizations/{}", o.id)),
                org_policies: self.access.org_of(&format!("organizations/{}", o.id)),
            }),
            folders: self
                .folders
                .values()
                .map(|f| WorldFolder {
                    id: f.id.clone(),
                    parent: f.parent.clone(),
                    display_name: Some(f.display_name.clone()),
                    iam_policy: from_policy(&f.policy),
                    deny_policies: self.access.deny_of(&format!("folders/{}", f.id)),
                    org_policies: self.access.org_of(&format!("folders/{}", f.id)),
                })
                .collect(),
            roles: self.world_roles.clone(),
            groups: self
                .groups
                .iter()
                .map(|(e, m)| WorldGroup {
                    email: e.clone(),
                    members: m.clone(),
                })
                .collect(),
            projects: self
                .projects
                .iter()
                .map(|p| WorldProject {
                    id: p.id.clone(),
                    number: p.number.clone(),
                    name: p.name.clone(),
                    parent: p.parent.clone(),
                    services: p.services.iter().cloned().collect(),
                    iam_policy: from_policy(&p.policy),
                    custom_roles: p.custom_roles.values().map(world_role).collect(),
                    service_accounts: p
                        .service_accounts
                        .iter()
                        .map(|s| WorldServiceAccount {
                            email: s.email.clone(),
                            unique_id: Some(s.unique_id.clone()),
                            display_name: s.display_name.clone(),
                            disabled: s.disabled,
                            deleted: s.deleted_at.is_some(),
                        })
                        .collect(),
                    clusters: p.clusters.clone(),
                    missing_zones: p.missing_zones.clone(),
                    recommendations: p
                        .recommendations
                        .iter()
                        .map(|r| WorldRecommendation {
                            location: r.location.clone(),
                            subtype: r.subtype.clone(),
                            cluster: r.cluster.clone(),
                            id: Some(r.id.clone()),
                            state: Some(r.state.clone()),
                            etag: Some(r.etag.clone()),
                            state_metadata: r.state_metadata.clone(),
                        })
                        .collect(),
                    deny_policies: self.access.deny_of(&format!("projects/{}", p.number)),
                    org_policies: self.access.org_of(&format!("projects/{}", p.number)),
                })
                .collect(),
        }
    }

    /// Records a new long-running operation and returns what the starting call answers: `done` when
    /// operations finish at once, else `running` (done after `operation_polls` `operations.get` calls).
    /// `change` takes effect when the operation is done.
    pub fn start_operation(
        &mut self,
        key: &str,
        running: Value,
        done: Value,
        change: Option<ServiceChange>,
    ) -> Value {
        if self.operation_polls == 0 {
            self.apply_change(change);
            self.operations.insert(key.to_owned(), done.clone());
            return done;
        }
        self.running_operations
            .insert(key.to_owned(), (self.operation_polls, done, change));
        running
    }

    fn apply_change(&mut self, change: Option<ServiceChange>) {
        let Some(c) = change else {
            return;
        };
        if let Some(p) = self.projects.get_mut(c.project) {
            for s in c.enable {
                p.services.insert(s);
            }
            for s in c.disable {
                p.services.remove(&s);
            }
        }
    }

    /// One `operations.get`: a running operation counts the poll down (and is done at zero).
    pub fn poll_operation(
        &mut self,
        key: &str,
        running: impl Fn(&Value) -> Value,
    ) -> Option<Value> {
        if let Some((left, done, _)) = self.running_operations.get_mut(key) {
            *left = left.saturating_sub(1);
            if *left > 0 {
                return Some(running(done));
            }
            let (_, done, change) = self.running_operations.remove(key)?;
            self.apply_change(change);
            self.operations.insert(key.to_owned(), done.clone());
            return Some(done);
        }
        self.operations.get(key).cloned()
    }

    /// A fresh IAM policy etag (base64 of 8 bytes, starting `Bw` like Google's).
    pub fn next_etag(&mut self) -> String {
        self.etag_seq += 1;
        let v = splitmix(self.etag_salt ^ self.etag_seq).to_be_bytes();
        let bytes = [0x07, 0x06, v[0], v[1], v[2], v[3], v[4], v[5]];
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// A fresh recommendation etag (16 hex digits, without quotes).
    pub fn next_rec_etag(&mut self) -> String {
        self.etag_seq += 1;
        format!(
            "{:016x}",
            splitmix(self.etag_salt.rotate_left(17) ^ self.etag_seq)
        )
    }

    /// Rebuilds the lookup indexes (projects by id and number, accounts by email and unique id).
    fn reindex(&mut self) {
        self.project_keys.clear();
        self.sa_emails.clear();
        self.sa_ids.clear();
        for (pi, p) in self.projects.iter().enumerate() {
            self.project_keys.insert(p.id.clone(), pi);
            self.project_keys.insert(p.number.clone(), pi);
            for (si, s) in p.service_accounts.iter().enumerate() {
                self.sa_emails
                    .entry(s.email.clone())
                    .or_default()
                    .push((pi, si));
                self.sa_ids.insert(s.unique_id.clone(), (pi, si));
            }
        }
    }

    /// Project index by id or number.
    pub fn project_idx(&self, id_or_number: &str) -> Option<usize> {
        self.project_keys.get(id_or_number).copied()
    }

    /// Positions (project, account) of the accounts with this email or unique id (live and deleted).
    pub fn accounts(&self, email_or_id: &str) -> Vec<(usize, usize)> {
        let key = email_or_id.to_ascii_lowercase();
        match self.sa_emails.get(&key) {
            Some(v) => v.clone(),
            None => self.sa_ids.get(&key).copied().into_iter().collect(),
        }
    }

    /// Google's "does not exist" message when `member` names no principal of this world: a
    /// `serviceAccount:` that is not a live account of a world project nor a provisioned service agent,
    /// or a `group:` the world does not list. `user:` and `domain:` members always exist (the simulator
    /// has no directory of Google accounts). `None` when it exists or the world is lenient.
    pub fn missing_member(&self, member: &str) -> Option<String> {
        if !self.strict_members {
            return None;
        }
        if let Some(email) = member.strip_prefix("serviceAccount:") {
            let e = email.to_ascii_lowercase();
            if self.live_account(&e).is_some() || self.service_agent_exists(&e) {
                return None;
            }
            return Some(format!("Service account {email} does not exist."));
        }
        if let Some(g) = member.strip_prefix("group:") {
            if self.groups.contains_key(&g.to_ascii_lowercase()) {
                return None;
            }
            return Some(format!("Group {g} does not exist."));
        }
        None
    }

    /// True for the Google-managed agents of a world project that exist: the Google APIs service agent
    /// (`NUMBER@cloudservices.gserviceaccount.com`, always) and `service-NUMBER@DOMAIN` agents whose
    /// service is enabled in that project (see [`agent_service`]).
    pub fn service_agent_exists(&self, email: &str) -> bool {
        let Some((local, domain)) = email.split_once('@') else {
            return false;
        };
        if domain == "cloudservices.gserviceaccount.com" {
            return self
                .project_idx(local)
                .is_some_and(|i| self.projects[i].number == local);
        }
        let Some(number) = local.strip_prefix("service-") else {
            return false;
        };
        let Some(service) = agent_service(domain) else {
            return false;
        };
        self.project_idx(number).is_some_and(|i| {
            self.projects[i].number == number && self.projects[i].services.contains(&service)
        })
    }

    /// The live account with this email, if any.
    pub fn live_account(&self, email: &str) -> Option<&SaState> {
        self.accounts(email)
            .into_iter()
            .map(|(pi, si)| &self.projects[pi].service_accounts[si])
            .find(|s| s.deleted_at.is_none())
    }

    /// Resolves `projects/X`, `folders/N` or `organizations/N`.
    pub fn policy_ref(&self, resource: &str) -> Option<PolicyRef> {
        match resource.split_once('/')? {
            ("projects", id) => self.project_idx(id).map(PolicyRef::Project),
            ("folders", id) => self
                .folders
                .contains_key(id)
                .then(|| PolicyRef::Folder(id.to_owned())),
            ("organizations", id) => self
                .org
                .as_ref()
                .filter(|o| o.id == id)
                .map(|_| PolicyRef::Organization),
            _ => None,
        }
    }

    /// The policy of a resource.
    pub fn policy(&self, r: &PolicyRef) -> Option<&Policy> {
        match r {
            PolicyRef::Project(i) => self.projects.get(*i).map(|p| &p.policy),
            PolicyRef::Folder(id) => self.folders.get(id).map(|f| &f.policy),
            PolicyRef::Organization => self.org.as_ref().map(|o| &o.policy),
        }
    }

    /// The policy of a resource, mutably.
    pub fn policy_mut(&mut self, r: &PolicyRef) -> Option<&mut Policy> {
        match r {
            PolicyRef::Project(i) => self.projects.get_mut(*i).map(|p| &mut p.policy),
            PolicyRef::Folder(id) => self.folders.get_mut(id).map(|f| &mut f.policy),
            PolicyRef::Organization => self.org.as_mut().map(|o| &mut o.policy),
        }
    }

    /// `projects/ID`, `folders/N` or `organizations/N` for a reference.
    pub fn resource_name(&self, r: &PolicyRef) -> String {
        match r {
            PolicyRef::Project(i) => format!(
                "projects/{}",
                self.projects.get(*i).map(|p| p.id.as_str()).unwrap_or("")
            ),
            PolicyRef::Folder(id) => format!("folders/{id}"),
            PolicyRef::Organization => format!(
                "organizations/{}",
                self.org.as_ref().map(|o| o.id.as_str()).unwrap_or("")
            ),
        }
    }

    /// The project, then its folders bottom-up, then the organization.
    pub fn ancestors(&self, project: usize) -> Vec<PolicyRef> {
        let mut out = vec![PolicyRef::Project(project)];
        let mut parent = self.projects.get(project).and_then(|p| p.parent.clone());
        let mut guard = 0;
        while let Some(p) = parent.take() {
            guard += 1;
            if guard > 1000 {
                break;
            }
            if let Some(id) = p.strip_prefix("folders/") {
                if let Some(f) = self.folders.get(id) {
                    out.push(PolicyRef::Folder(id.to_owned()));
                    parent = Some(f.parent.clone());
                }
            } else if p.starts_with("organizations/") && self.org.is_some() {
                out.push(PolicyRef::Organization);
            }
        }
        out
    }

    /// Looks up a role definition: predefined, project custom or organization custom.
    pub fn role(&self, name: &str) -> Option<&RoleDef> {
        if let Some(r) = self.predefined.get(name) {
            return Some(r);
        }
        let parts: Vec<&str> = name.split('/').collect();
        match parts.as_slice() {
            ["projects", p, "roles", _] => self
                .project_idx(p)
                .and_then(|i| self.projects[i].custom_roles.get(name)),
            ["organizations", o, "roles", _] => self
                .org
                .as_ref()
                .filter(|org| org.id == *o)
                .and_then(|org| org.custom_roles.get(name)),
            _ => None,
        }
    }

    /// Replaces member `from` by `to` in every policy; bumps the etag of each changed policy when `bump`.
    pub fn rewrite_members(&mut self, from: &str, to: &str, bump: bool) {
        let mut refs: Vec<PolicyRef> = (0..self.projects.len()).map(PolicyRef::Project).collect();
        refs.extend(self.folders.keys().cloned().map(PolicyRef::Folder));
        if self.org.is_some() {
            refs.push(PolicyRef::Organization);
        }
        if !is_member(to) {
            return;
        }
        for r in refs {
            let etag = if bump { Some(self.next_etag()) } else { None };
            if let Some(policy) = self.policy_mut(&r) {
                let mut changed = false;
                for b in &mut policy.bindings {
                    for m in &mut b.members {
                        if m.eq_ignore_ascii_case(from) {
                            *m = to.to_owned();
                            changed = true;
                        }
                    }
                }
                if changed {
                    super::policy::normalize(policy);
                    if let Some(e) = etag {
                        policy.etag = Some(e);
                    }
                }
            }
        }
    }
}

pub use crate::clock::now_rfc3339;

/// The service whose enablement provisions the agents of an `…iam.gserviceaccount.com` domain:
/// `container-engine-robot` and `gcp-sa-gkenode` (Kubernetes Engine), `compute-system` (Compute Engine),
/// `serverless-robot-prod` (Cloud Run), `containerregistry`, and `gcp-sa-X` -> `X.googleapis.com`.
pub fn agent_service(domain: &str) -> Option<String> {
    let sub = domain.strip_suffix(".iam.gserviceaccount.com")?;
    Some(match sub {
        "container-engine-robot" | "gcp-sa-gkenode" => "container.googleapis.com".to_owned(),
        "compute-system" => "compute.googleapis.com".to_owned(),
        "serverless-robot-prod" => "run.googleapis.com".to_owned(),
        "containerregistry" => "containerregistry.googleapis.com".to_owned(),
        other => format!("{}.googleapis.com", other.strip_prefix("gcp-sa-")?),
    })
}

/// A random UUID-shaped string.
pub fn random_uuid() -> String {
    let a: u64 = rand::random();
    let b: u64 = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}
