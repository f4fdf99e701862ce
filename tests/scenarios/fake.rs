//! A recording fake of every port: an in-memory Google (projects, policies with etags, roles,
//! clusters, service accounts, recommendations, the audit log of our own writes) with scripted
//! faults, latency on tokio's clock, a racing writer and a journal of every call. It behaves like
//! IAM where the engine depends on it: a write with a stale etag is `409 ABORTED`, a successful write
//! gets a new etag, and every binding our writes add is counted as a restoration in the audit log.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use gke_iam_remediator::domain::deny::DenyPolicy;
use gke_iam_remediator::domain::iam::{
    Binding, Member, Policy, ProjectId, ProjectNumber, ResourceRef, Role,
};
use gke_iam_remediator::domain::state::{Cluster, NodePool, Restorations, RoleLookup, Troubleshot};
use gke_iam_remediator::gcp::client::SlidingWindow;
use gke_iam_remediator::notify::Notification;
use gke_iam_remediator::ports::assets::asset_types;
use gke_iam_remediator::ports::{
    Api, ApiError, Asset, AssetBody, AssetContent, AssetInventory, AssetPage, AuditLog,
    ClusterList, Clusters, NotificationSink, OwnRestoration, Policies, ProjectInfo, Projects,
    PublishError, Recommendation, RecommendationMark, RecommendationState, Recommendations, Roles,
    ServiceAccount, ServiceAccounts, Services, Troubleshooter,
};
use gke_iam_remediator::ports::{DenyPolicies, GroupMembership, OrgPolicies};

/// The node-SA role and the four permissions GKE nodes need.
pub const NODE_ROLE: &str = "roles/container.defaultNodeServiceAccount";
/// The permissions of [`NODE_ROLE`].
pub const NODE_PERMISSIONS: [&str; 4] = [
    "logging.logEntries.create",
    "monitoring.timeSeries.create",
    "monitoring.metricDescriptors.create",
    "autoscaling.sites.writeMetrics",
];
/// The GKE service agent's role.
pub const AGENT_ROLE: &str = "roles/container.serviceAgent";
/// The GKE node service agent's role.
pub const NODE_AGENT_ROLE: &str = "roles/container.defaultNodeServiceAgent";

/// A scripted failure: the next calls of a method answer this HTTP status instead.
#[derive(Clone, Debug)]
pub struct Fault {
    /// HTTP status.
    pub code: u16,
    /// google.rpc status string.
    pub status: &'static str,
}

impl Fault {
    /// 429 RESOURCE_EXHAUSTED.
    pub const RATE_LIMITED: Self = Self {
        code: 429,
        status: "RESOURCE_EXHAUSTED",
    };
    /// 503 UNAVAILABLE.
    pub const UNAVAILABLE: Self = Self {
        code: 503,
        status: "UNAVAILABLE",
    };
    /// 403 PERMISSION_DENIED.
    pub const DENIED: Self = Self {
        code: 403,
        status: "PERMISSION_DENIED",
    };
    /// 409 ABORTED.
    pub const ABORTED: Self = Self {
        code: 409,
        status: "ABORTED",
    };
}

fn status_error(api: Api, method: &'static str, fault: &Fault) -> ApiError {
    ApiError::Status {
        api,
        method,
        code: fault.code,
        status: fault.status.to_owned(),
        message: format!("scripted {} {}", fault.code, fault.status),
        permission: None,
        reason: None,
    }
}

/// The fake's world; tests arrange and inspect it through [`FakeCloud`].
#[derive(Default)]
pub struct World {
    /// Projects by id.
    pub projects: BTreeMap<String, ProjectInfo>,
    /// Folder id -> parent.
    pub folder_parents: BTreeMap<String, Option<ResourceRef>>,
    /// Policies of projects, folders and organizations.
    pub policies: BTreeMap<ResourceRef, Policy>,
    /// Role definitions.
    pub roles: BTreeMap<Role, BTreeSet<String>>,
    /// Clusters per project id.
    pub clusters: BTreeMap<String, Vec<Cluster>>,
    /// Service accounts per project id.
    pub accounts: BTreeMap<String, Vec<ServiceAccount>>,
    /// Recommendations by name.
    pub recommendations: BTreeMap<String, Recommendation>,
    /// Bindings our writes added, per project, newest last (what Cloud Audit Logs records).
    pub restorations: BTreeMap<String, Vec<OwnRestoration>>,
    /// Troubleshooter answers by (email, permission).
    pub troubleshooter: BTreeMap<(String, String), Troubleshot>,
    /// Scripted faults per method name, consumed one per call.
    pub faults: BTreeMap<&'static str, VecDeque<Fault>>,
    /// Methods that always fail with this fault (denied permissions).
    pub broken: BTreeMap<&'static str, Fault>,
    /// Before each of the next N project policy writes, someone else writes first (the etag moves).
    pub racing_writes: u32,
    /// Before the next project policy write, someone else adds these (role, member) grants first.
    pub racing_adds: Vec<(String, String)>,
    /// Deleted service accounts by unique id (project, account), undeletable.
    pub deleted_accounts: BTreeMap<String, (String, ServiceAccount)>,
    /// Every call, in order: `method target`.
    pub journal: Vec<String>,
    /// Cloud Asset Inventory: a frozen snapshot (see [`FakeCloud::freeze_assets`]); `None` serves the
    /// live world.
    pub frozen_assets: Option<Vec<(AssetContent, Asset)>>,
    /// The `readTime` Cloud Asset Inventory answers (default: now).
    pub asset_read_time: Option<String>,
    /// IAM v2 deny policies by attachment point (`projects/NUMBER`, `folders/N`, `organizations/N`).
    pub deny_policies: BTreeMap<String, Vec<DenyPolicy>>,
    /// The client-side IAM v2 read window, when a test sets one: a list with no room in it answers
    /// at once that the quota is spent, as the REST adapter does (nothing sent, nothing journaled).
    pub iam_v2_window: Option<Arc<SlidingWindow>>,
    /// A one-shot run's IAM v2 read budget (total, left), when a test sets one: each deny-policy
    /// list takes one, and once none is left a list answers at once that the quota is spent, as the
    /// REST adapter of `scan` does.
    pub iam_v2_budget: Option<(u32, u32)>,
    /// Extra latency of calls on one target (a project id), to make calls finish out of order.
    pub slow_targets: BTreeMap<String, Duration>,
    /// Boolean constraints enforced, by (`projects/ID`, constraint).
    pub enforced_constraints: BTreeSet<(String, String)>,
    /// Cloud Identity groups: email -> members (emails, including nested group emails).
    pub groups: BTreeMap<String, BTreeSet<String>>,
    etag_seq: u64,
}

impl World {
    fn next_etag(&mut self) -> String {
        self.etag_seq += 1;
        format!("etag-{}", self.etag_seq)
    }

    fn fault(&mut self, method: &'static str) -> Option<Fault> {
        if let Some(f) = self.broken.get(method) {
            return Some(f.clone());
        }
        self.faults.get_mut(method).and_then(VecDeque::pop_front)
    }
}

/// The fake. Cheap to clone; clones share the world.
#[derive(Clone, Default)]
pub struct FakeCloud {
    world: Arc<Mutex<World>>,
    latency: Arc<Mutex<Duration>>,
}

impl FakeCloud {
    /// Runs `f` on the world.
    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.world.lock().unwrap())
    }

    /// Every call of the fake (tokio time) waits this long before answering.
    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().unwrap() = latency;
    }

    /// How many calls of `method` were made (optionally on `target`).
    pub fn calls(&self, method: &str) -> usize {
        self.with(|w| {
            w.journal
                .iter()
                .filter(|c| c.split(' ').next() == Some(method))
                .count()
        })
    }

    /// The journal.
    pub fn journal(&self) -> Vec<String> {
        self.with(|w| w.journal.clone())
    }

    /// The next `n` calls of `method` fail with `fault`.
    pub fn fail_next(&self, method: &'static str, fault: Fault, n: usize) {
        self.with(|w| {
            let q = w.faults.entry(method).or_default();
            for _ in 0..n {
                q.push_back(fault.clone());
            }
        });
    }

    /// Every call of `method` fails with `fault` (until [`Self::repair`]).
    pub fn break_method(&self, method: &'static str, fault: Fault) {
        self.with(|w| w.broken.insert(method, fault));
    }

    /// Undoes [`Self::break_method`].
    pub fn repair(&self, method: &'static str) {
        self.with(|w| w.broken.remove(method));
    }

    /// Adds a healthy GKE project: one cluster with one node pool running as
    /// `nodes@ID.iam.gserviceaccount.com`, which holds the node role; both GKE service agents hold
    /// theirs; the node account exists. `parent` is its folder or organization.
    pub fn add_healthy_project(&self, id: &str, number: &str, parent: Option<&str>) {
        let parent = parent.map(|p| ResourceRef::parse(p).expect("parent"));
        let node_sa = format!("nodes@{id}.iam.gserviceaccount.com");
        let policy = Policy {
            version: 3,
            etag: None,
            bindings: vec![
                binding("roles/owner", &["user:owner@example.com"]),
                binding(NODE_ROLE, &[&format!("serviceAccount:{node_sa}")]),
                binding(
                    AGENT_ROLE,
                    &[&format!(
                        "serviceAccount:service-{number}@container-engine-robot.iam.gserviceaccount.com"
                    )],
                ),
                binding(
                    NODE_AGENT_ROLE,
                    &[&format!(
                        "serviceAccount:service-{number}@gcp-sa-gkenode.iam.gserviceaccount.com"
                    )],
                ),
            ],
            ..Policy::default()
        };
        self.with(|w| {
            if let Some(ResourceRef::Organization(_)) = &parent {
                let org = parent.clone().expect("parent");
                if !w.policies.contains_key(&org) {
                    let etag = w.next_etag();
                    w.policies.insert(
                        org,
                        Policy {
                            etag: Some(etag),
                            ..Policy::default()
                        },
                    );
                }
            }
            let etag = w.next_etag();
            w.projects.insert(
                id.to_owned(),
                ProjectInfo {
                    project_id: ProjectId::parse(id).expect("project id"),
                    project_number: ProjectNumber::parse(number).expect("number"),
                    parent,
                    ancestors: Vec::new(),
                }
                .with_parent_as_ancestor(),
            );
            w.policies.insert(
                ResourceRef::Project(ProjectId::parse(id).expect("id")),
                Policy {
                    etag: Some(etag),
                    ..policy
                },
            );
            w.roles.insert(
                Role::parse(NODE_ROLE).expect("role"),
                NODE_PERMISSIONS.iter().map(|p| (*p).to_owned()).collect(),
            );
            w.roles.insert(
                Role::parse("roles/owner").expect("role"),
                ["resourcemanager.projects.setIamPolicy".to_owned()]
                    .into_iter()
                    .collect(),
            );
            w.clusters.insert(
                id.to_owned(),
                vec![Cluster {
                    name: "c1".to_owned(),
                    location: "us-central1".to_owned(),
                    autopilot: false,
                    node_pools: vec![NodePool {
                        name: "pool-1".to_owned(),
                        service_account: node_sa.clone(),
                    }],
                    autoprovisioning_service_account: None,
                }],
            );
            w.accounts.insert(
                id.to_owned(),
                vec![ServiceAccount {
                    email: node_sa,
                    unique_id: Some(format!("1{number}")),
                    disabled: false,
                }],
            );
        });
    }

    /// Adds a folder under `parent`.
    pub fn add_folder(&self, id: &str, parent: &str) {
        let parent = ResourceRef::parse(parent).expect("parent");
        let folder = ResourceRef::parse(&format!("folders/{id}")).expect("folder");
        self.with(|w| {
            if !w.policies.contains_key(&parent) {
                let etag = w.next_etag();
                w.policies.insert(
                    parent.clone(),
                    Policy {
                        etag: Some(etag),
                        ..Policy::default()
                    },
                );
            }
            w.folder_parents.insert(id.to_owned(), Some(parent));
            let etag = w.next_etag();
            w.policies.insert(
                folder,
                Policy {
                    etag: Some(etag),
                    ..Policy::default()
                },
            );
        });
    }

    /// Someone deletes a service account: it disappears and its bindings name it as deleted.
    pub fn delete_account(&self, project: &str, email: &str) {
        self.with(|w| {
            let accounts = w.accounts.entry(project.to_owned()).or_default();
            let Some(i) = accounts.iter().position(|a| a.email == email) else {
                return;
            };
            let account = accounts.remove(i);
            let uid = account.unique_id.clone().unwrap_or_default();
            let deleted = Member::parse(&format!("deleted:serviceAccount:{email}?uid={uid}"))
                .expect("member");
            let live = format!("serviceAccount:{email}");
            let etag = w.next_etag();
            for policy in w.policies.values_mut() {
                for b in &mut policy.bindings {
                    for m in &mut b.members {
                        if m.as_str() == live {
                            *m = deleted.clone();
                        }
                    }
                }
                policy.etag = Some(etag.clone());
            }
            w.deleted_accounts
                .insert(uid, (project.to_owned(), account));
        });
    }

    /// Someone else removes `member` from `role` on the project (as `gcloud remove-iam-policy-binding`).
    pub fn remove_binding(&self, project: &str, role: &str, member: &str) {
        self.with(|w| {
            let etag = w.next_etag();
            let policy = w
                .policies
                .get_mut(&project_ref(project))
                .expect("project policy");
            for b in &mut policy.bindings {
                if b.role.as_str() == role && b.condition.is_none() {
                    b.members.retain(|m| m.as_str() != member);
                }
            }
            policy.bindings.retain(|b| !b.members.is_empty());
            policy.etag = Some(etag);
        });
    }

    /// Someone else adds a binding (the etag moves).
    pub fn add_binding(&self, project: &str, role: &str, member: &str) {
        self.with(|w| {
            let etag = w.next_etag();
            let policy = w
                .policies
                .get_mut(&project_ref(project))
                .expect("project policy");
            policy.add_member(
                &Role::parse(role).expect("role"),
                &Member::parse(member).expect("member"),
            );
            policy.etag = Some(etag);
        });
    }

    /// The project's policy as stored now.
    pub fn policy(&self, project: &str) -> Policy {
        self.with(|w| w.policies[&project_ref(project)].clone())
    }

    /// Whether `member` holds `role` unconditionally on the project now.
    pub fn holds(&self, project: &str, role: &str, member: &str) -> bool {
        self.policy(project).grants_unconditionally(
            &Role::parse(role).expect("role"),
            &Member::parse(member).expect("member"),
        )
    }

    /// Adds an active node-SA recommendation for the project's cluster `c1`.
    pub fn add_recommendation(&self, project: &str, number: &str, name_suffix: &str) -> String {
        let name = format!(
            "projects/{number}/locations/us-central1/recommenders/google.container.DiagnosisRecommender/recommendations/{name_suffix}"
        );
        let rec = Recommendation {
            name: name.clone(),
            etag: "\"r-1\"".to_owned(),
            recommender_subtype: "NODE_SA_MISSING_PERMISSIONS".to_owned(),
            state_info: RecommendationState {
                state: "ACTIVE".to_owned(),
            },
            target_resources: vec![format!(
                "//container.googleapis.com/projects/{project}/locations/us-central1/clusters/c1"
            )],
        };
        self.with(|w| w.recommendations.insert(name.clone(), rec));
        name
    }

    /// A recommendation's state now.
    pub fn recommendation_state(&self, name: &str) -> String {
        self.with(|w| w.recommendations[name].state_info.state.clone())
    }

    async fn enter(&self, method: &'static str, target: &str) -> Option<Fault> {
        let latency = *self.latency.lock().unwrap()
            + self.with(|w| w.slow_targets.get(target).copied().unwrap_or_default());
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.with(|w| {
            w.journal.push(format!("{method} {target}"));
            w.fault(method)
        })
    }
}

/// A binding of `role` to `members`, unconditional.
pub fn binding(role: &str, members: &[&str]) -> Binding {
    serde_json::from_value(serde_json::json!({"role": role, "members": members})).expect("binding")
}

/// A binding of `role` to `members` under an IAM condition.
pub fn conditional_binding(role: &str, members: &[&str], expression: &str) -> Binding {
    serde_json::from_value(serde_json::json!({
        "role": role,
        "members": members,
        "condition": {"title": "scenario", "expression": expression},
    }))
    .expect("binding")
}

/// `ResourceRef` of a project id.
pub fn project_ref(id: &str) -> ResourceRef {
    ResourceRef::Project(ProjectId::parse(id).expect("project id"))
}

fn not_found(api: Api, method: &'static str, what: &str) -> ApiError {
    ApiError::Status {
        api,
        method,
        code: 404,
        status: "NOT_FOUND".to_owned(),
        message: format!("{what} not found"),
        permission: None,
        reason: None,
    }
}

impl Projects for FakeCloud {
    fn get_project<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ProjectInfo, ApiError>> {
        async move {
            if let Some(f) = self.enter("projects.get", id).await {
                return Err(status_error(Api::ResourceManager, "projects.get", &f));
            }
            self.with(|w| w.projects.get(id).cloned())
                .ok_or_else(|| not_found(Api::ResourceManager, "projects.get", id))
        }
        .boxed()
    }

    fn get_project_by_id_or_number<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<ProjectInfo, ApiError>> {
        async move {
            if let Some(f) = self.enter("projects.get", key).await {
                return Err(status_error(Api::ResourceManager, "projects.get", &f));
            }
            self.with(|w| {
                w.projects
                    .values()
                    .find(|p| p.project_id.as_str() == key || p.project_number.as_str() == key)
                    .cloned()
            })
            .ok_or_else(|| not_found(Api::ResourceManager, "projects.get", key))
        }
        .boxed()
    }

    fn get_folder_parent<'a>(
        &'a self,
        folder_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResourceRef>, ApiError>> {
        async move {
            if let Some(f) = self.enter("folders.get", folder_id).await {
                return Err(status_error(Api::ResourceManager, "folders.get", &f));
            }
            self.with(|w| w.folder_parents.get(folder_id).cloned())
                .ok_or_else(|| not_found(Api::ResourceManager, "folders.get", folder_id))
        }
        .boxed()
    }

    fn list_projects_under<'a>(
        &'a self,
        root: &'a ResourceRef,
    ) -> BoxFuture<'a, Result<Vec<ProjectInfo>, ApiError>> {
        async move {
            if let Some(f) = self.enter("projects.list", &root.to_string()).await {
                return Err(status_error(Api::ResourceManager, "projects.list", &f));
            }
            Ok(self.with(|w| {
                let under = |mut at: Option<ResourceRef>| {
                    for _ in 0..16 {
                        match at {
                            Some(ref r) if r == root => return true,
                            Some(ResourceRef::Folder(ref f)) => {
                                at = w.folder_parents.get(f.as_str()).cloned().flatten();
                            }
                            _ => return false,
                        }
                    }
                    false
                };
                w.projects
                    .values()
                    .filter(|p| under(p.parent.clone()))
                    .map(|p| {
                        // As the walk knows it: the chain up to the root.
                        let mut p = p.clone();
                        let mut at = p.parent.clone();
                        p.ancestors.clear();
                        while let Some(r) = at {
                            p.ancestors.push(r.clone());
                            at = match &r {
                                _ if &r == root => None,
                                ResourceRef::Folder(f) => {
                                    w.folder_parents.get(f.as_str()).cloned().flatten()
                                }
                                _ => None,
                            };
                        }
                        p
                    })
                    .collect()
            }))
        }
        .boxed()
    }
}

impl Policies for FakeCloud {
    fn get_iam_policy<'a>(
        &'a self,
        resource: &'a ResourceRef,
    ) -> BoxFuture<'a, Result<Policy, ApiError>> {
        async move {
            if let Some(f) = self.enter("getIamPolicy", &resource.to_string()).await {
                return Err(status_error(Api::ResourceManager, "getIamPolicy", &f));
            }
            self.with(|w| w.policies.get(resource).cloned())
                .ok_or_else(|| {
                    not_found(Api::ResourceManager, "getIamPolicy", &resource.to_string())
                })
        }
        .boxed()
    }

    fn set_project_iam_policy<'a>(
        &'a self,
        project: &'a ProjectId,
        policy: &'a Policy,
    ) -> BoxFuture<'a, Result<Policy, ApiError>> {
        async move {
            if let Some(f) = self.enter("setIamPolicy", project.as_str()).await {
                return Err(status_error(Api::ResourceManager, "setIamPolicy", &f));
            }
            let key = ResourceRef::Project(project.clone());
            self.with(|w| {
                if w.racing_writes > 0 {
                    // Someone else writes first: the etag we read is now stale.
                    w.racing_writes -= 1;
                    let etag = w.next_etag();
                    if let Some(p) = w.policies.get_mut(&key) {
                        p.etag = Some(etag);
                    }
                }
                if !w.racing_adds.is_empty() {
                    let adds = std::mem::take(&mut w.racing_adds);
                    let etag = w.next_etag();
                    if let Some(p) = w.policies.get_mut(&key) {
                        for (role, member) in adds {
                            p.add_member(
                                &Role::parse(&role).expect("role"),
                                &Member::parse(&member).expect("member"),
                            );
                        }
                        p.etag = Some(etag);
                    }
                }
                let stored = w.policies.get(&key).cloned().unwrap_or_default();
                if stored.etag != policy.etag {
                    return Err(status_error(
                        Api::ResourceManager,
                        "setIamPolicy",
                        &Fault::ABORTED,
                    ));
                }
                // Record what this write added as our restorations (as the audit log would).
                let etag = w.next_etag();
                let timestamp = gke_iam_remediator::clock::rfc3339(
                    std::time::SystemTime::now(),
                    gke_iam_remediator::clock::Precision::Millis,
                );
                let log = w.restorations.entry(project.to_string()).or_default();
                for b in policy.bindings.iter().filter(|b| b.condition.is_none()) {
                    for m in &b.members {
                        if !stored.grants_unconditionally(&b.role, m) {
                            log.push(OwnRestoration {
                                role: b.role.clone(),
                                member: m.clone(),
                                etag_after: Some(etag.clone()),
                                timestamp: timestamp.clone(),
                            });
                        }
                    }
                }
                let written = Policy {
                    etag: Some(etag),
                    ..policy.clone()
                };
                w.policies.insert(key, written.clone());
                Ok(written)
            })
        }
        .boxed()
    }
}

impl Roles for FakeCloud {
    fn get_role<'a>(&'a self, role: &'a Role) -> BoxFuture<'a, RoleLookup> {
        async move {
            if let Some(f) = self.enter("roles.get", role.as_str()).await {
                return RoleLookup::Unreadable(format!("scripted {}", f.code));
            }
            self.with(|w| w.roles.get(role).cloned())
                .map_or(RoleLookup::NotFound, RoleLookup::Found)
        }
        .boxed()
    }
}

impl Clusters for FakeCloud {
    fn list_clusters<'a>(
        &'a self,
        project: &'a ProjectId,
    ) -> BoxFuture<'a, Result<ClusterList, ApiError>> {
        async move {
            if let Some(f) = self.enter("clusters.list", project.as_str()).await {
                return Err(status_error(Api::Container, "clusters.list", &f));
            }
            Ok(ClusterList {
                clusters: self.with(|w| {
                    w.clusters
                        .get(project.as_str())
                        .cloned()
                        .unwrap_or_default()
                }),
                missing_zones: Vec::new(),
            })
        }
        .boxed()
    }
}

impl ServiceAccounts for FakeCloud {
    fn list_service_accounts<'a>(
        &'a self,
        project: &'a ProjectId,
    ) -> BoxFuture<'a, Result<Vec<ServiceAccount>, ApiError>> {
        async move {
            if let Some(f) = self.enter("serviceAccounts.list", project.as_str()).await {
                return Err(status_error(Api::Iam, "serviceAccounts.list", &f));
            }
            Ok(self.with(|w| {
                w.accounts
                    .get(project.as_str())
                    .cloned()
                    .unwrap_or_default()
            }))
        }
        .boxed()
    }

    fn get_service_account<'a>(
        &'a self,
        email: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, ApiError>> {
        async move {
            if let Some(f) = self.enter("serviceAccounts.get", email).await {
                return Err(status_error(Api::Iam, "serviceAccounts.get", &f));
            }
            Ok(self.with(|w| {
                w.accounts
                    .values()
                    .flatten()
                    .find(|a| a.email == email)
                    .cloned()
            }))
        }
        .boxed()
    }

    fn enable_service_account<'a>(&'a self, email: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        async move {
            if let Some(f) = self.enter("serviceAccounts.enable", email).await {
                return Err(status_error(Api::Iam, "serviceAccounts.enable", &f));
            }
            self.with(|w| {
                for a in w.accounts.values_mut().flatten() {
                    if a.email == email {
                        a.disabled = false;
                    }
                }
            });
            Ok(())
        }
        .boxed()
    }

    fn undelete_service_account<'a>(
        &'a self,
        unique_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        async move {
            if let Some(f) = self.enter("serviceAccounts.undelete", unique_id).await {
                return Err(status_error(Api::Iam, "serviceAccounts.undelete", &f));
            }
            self.with(|w| {
                let Some((project, account)) = w.deleted_accounts.remove(unique_id) else {
                    return Err(not_found(Api::Iam, "serviceAccounts.undelete", unique_id));
                };
                // As IAM does: the account's bindings come back under its own name.
                let deleted = format!("deleted:serviceAccount:{}?uid={unique_id}", account.email);
                let live =
                    Member::parse(&format!("serviceAccount:{}", account.email)).expect("member");
                for policy in w.policies.values_mut() {
                    for b in &mut policy.bindings {
                        for m in &mut b.members {
                            if m.as_str() == deleted {
                                *m = live.clone();
                            }
                        }
                    }
                }
                w.accounts.entry(project).or_default().push(account);
                Ok(())
            })
        }
        .boxed()
    }
}

impl Services for FakeCloud {
    fn service_enabled<'a>(
        &'a self,
        project: &'a ProjectId,
        service: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        async move {
            if let Some(f) = self
                .enter("services.get", &format!("{project}/{service}"))
                .await
            {
                return Err(status_error(Api::ServiceUsage, "services.get", &f));
            }
            Ok(true)
        }
        .boxed()
    }

    fn enable_service<'a>(
        &'a self,
        project: &'a ProjectId,
        service: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        async move {
            if let Some(f) = self
                .enter("services.enable", &format!("{project}/{service}"))
                .await
            {
                return Err(status_error(Api::ServiceUsage, "services.enable", &f));
            }
            Ok(())
        }
        .boxed()
    }
}

impl Recommendations for FakeCloud {
    fn list_node_sa_recommendations<'a>(
        &'a self,
        project: &'a ProjectId,
        location: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Recommendation>, ApiError>> {
        async move {
            if let Some(f) = self
                .enter("recommendations.list", &format!("{project}/{location}"))
                .await
            {
                return Err(status_error(Api::Recommender, "recommendations.list", &f));
            }
            let number = self.with(|w| {
                w.projects
                    .get(project.as_str())
                    .map(|p| p.project_number.to_string())
            });
            let prefix = format!(
                "projects/{}/locations/{location}/",
                number.unwrap_or_default()
            );
            Ok(self.with(|w| {
                w.recommendations
                    .values()
                    .filter(|r| r.name.starts_with(&prefix))
                    .cloned()
                    .collect()
            }))
        }
        .boxed()
    }

    fn get_recommendation<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Recommendation, ApiError>> {
        async move {
            if let Some(f) = self.enter("recommendations.get", name).await {
                return Err(status_error(Api::Recommender, "recommendations.get", &f));
            }
            self.with(|w| w.recommendations.get(name).cloned())
                .ok_or_else(|| not_found(Api::Recommender, "recommendations.get", name))
        }
        .boxed()
    }

    fn mark_recommendation<'a>(
        &'a self,
        name: &'a str,
        mark: RecommendationMark,
        etag: &'a str,
        _metadata: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Recommendation, ApiError>> {
        async move {
            let method = match mark {
                RecommendationMark::Claimed => "recommendations.markClaimed",
                RecommendationMark::Succeeded => "recommendations.markSucceeded",
                RecommendationMark::Failed => "recommendations.markFailed",
            };
            if let Some(f) = self.enter(method, name).await {
                return Err(status_error(Api::Recommender, method, &f));
            }
            self.with(|w| {
                let seq = w.next_etag();
                let rec = w
                    .recommendations
                    .get_mut(name)
                    .ok_or_else(|| not_found(Api::Recommender, method, name))?;
                if rec.etag != etag {
                    return Err(status_error(Api::Recommender, method, &Fault::ABORTED));
                }
                rec.state_info.state = match mark {
                    RecommendationMark::Claimed => "CLAIMED",
                    RecommendationMark::Succeeded => "SUCCEEDED",
                    RecommendationMark::Failed => "FAILED",
                }
                .to_owned();
                rec.etag = format!("\"{seq}\"");
                Ok(rec.clone())
            })
        }
        .boxed()
    }
}

impl AuditLog for FakeCloud {
    fn own_restorations<'a>(
        &'a self,
        project: &'a ProjectId,
        _self_email: &'a str,
        since: &'a str,
    ) -> BoxFuture<'a, Result<Vec<OwnRestoration>, ApiError>> {
        async move {
            if let Some(f) = self.enter("entries.list", project.as_str()).await {
                return Err(status_error(Api::Logging, "entries.list", &f));
            }
            Ok(self.with(|w| {
                let mut out: Vec<OwnRestoration> = w
                    .restorations
                    .get(project.as_str())
                    .into_iter()
                    .flatten()
                    .filter(|r| r.timestamp.as_str() >= since)
                    .cloned()
                    .collect();
                out.reverse();
                out
            }))
        }
        .boxed()
    }

    fn count_own_restorations<'a>(
        &'a self,
        projects: &'a [ProjectId],
        _self_email: &'a str,
        since: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<ProjectId, Restorations>, ApiError>> {
        async move {
            let names: Vec<&str> = projects.iter().map(ProjectId::as_str).collect();
            if let Some(f) = self.enter("entries.list", &names.join(",")).await {
                return Err(status_error(Api::Logging, "entries.list", &f));
            }
            Ok(self.with(|w| {
                projects
                    .iter()
                    .map(|p| {
                        let mut counts = Restorations::new();
                        for r in w.restorations.get(p.as_str()).into_iter().flatten() {
                            if r.timestamp.as_str() >= since {
                                *counts
                                    .entry((r.role.clone(), r.member.clone()))
                                    .or_default() += 1;
                            }
                        }
                        (p.clone(), counts)
                    })
                    .collect()
            }))
        }
        .boxed()
    }
}

impl Troubleshooter for FakeCloud {
    fn troubleshoot<'a>(
        &'a self,
        email: &'a str,
        _project: &'a ProjectId,
        permission: &'a str,
    ) -> BoxFuture<'a, Result<Troubleshot, ApiError>> {
        async move {
            if let Some(f) = self.enter("troubleshoot", email).await {
                return Err(status_error(Api::PolicyTroubleshooter, "troubleshoot", &f));
            }
            Ok(self.with(|w| {
                w.troubleshooter
                    .get(&(email.to_owned(), permission.to_owned()))
                    .cloned()
                    .unwrap_or(Troubleshot::Unknown)
            }))
        }
        .boxed()
    }
}

/// A notification sink that records what it is given, and can be made to fail.
#[derive(Clone, Default)]
pub struct RecordingSink {
    published: Arc<Mutex<Vec<Notification>>>,
    failing: Arc<Mutex<bool>>,
}

impl RecordingSink {
    /// Every notification published so far.
    pub fn published(&self) -> Vec<Notification> {
        self.published.lock().unwrap().clone()
    }

    /// Outcomes published so far, in order.
    pub fn outcomes(&self) -> Vec<String> {
        self.published()
            .iter()
            .map(|n| n.outcome.to_string())
            .collect()
    }

    /// While true, every publish fails.
    pub fn set_failing(&self, failing: bool) {
        *self.failing.lock().unwrap() = failing;
    }
}

impl NotificationSink for RecordingSink {
    fn publish<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<String, PublishError>> {
        async move {
            if *self.failing.lock().unwrap() {
                return Err(PublishError {
                    destination: "projects/test/topics/notifications".to_owned(),
                    message: "scripted publish failure".to_owned(),
                });
            }
            let mut published = self.published.lock().unwrap();
            published.push(notification.clone());
            Ok(format!("m-{}", published.len()))
        }
        .boxed()
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
}

// ---- Cloud Asset Inventory ----------------------------------------------------------------------

impl FakeCloud {
    /// Cloud Asset Inventory keeps serving the world as it is now, whatever changes live later (a
    /// snapshot lagging behind).
    pub fn freeze_assets(&self) {
        self.with(|w| {
            let assets = assets_of(w);
            w.frozen_assets = Some(assets);
        });
    }

    /// Cloud Asset Inventory answers this `readTime`.
    pub fn set_asset_read_time(&self, read_time: &str) {
        self.with(|w| w.asset_read_time = Some(read_time.to_owned()));
    }
}

/// `ancestors` of a resource with this parent: the resource first, then folders, then the org.
fn chain(w: &World, first: String, mut parent: Option<ResourceRef>) -> Vec<String> {
    let mut out = vec![first];
    for _ in 0..16 {
        match parent {
            Some(ResourceRef::Folder(f)) => {
                out.push(format!("folders/{f}"));
                parent = w.folder_parents.get(&f).cloned().flatten();
            }
            Some(ResourceRef::Organization(o)) => {
                out.push(format!("organizations/{o}"));
                break;
            }
            _ => break,
        }
    }
    out
}

/// Every asset of the world, both content types (the fake's Container API is on everywhere).
fn assets_of(w: &World) -> Vec<(AssetContent, Asset)> {
    let mut out = Vec::new();
    let crm = |r: &str| format!("//cloudresourcemanager.googleapis.com/{r}");
    let project_chain = |p: &ProjectInfo| {
        chain(
            w,
            format!("projects/{}", p.project_number),
            p.parent.clone(),
        )
    };
    for (resource, policy) in &w.policies {
        let (kind, ancestors) = match resource {
            ResourceRef::Project(id) => {
                let Some(p) = w.projects.get(id.as_str()) else {
                    continue;
                };
                (asset_types::PROJECT, project_chain(p))
            }
            ResourceRef::Folder(f) => (
                asset_types::FOLDER,
                chain(
                    w,
                    format!("folders/{f}"),
                    w.folder_parents.get(f).cloned().flatten(),
                ),
            ),
            ResourceRef::Organization(o) => (
                asset_types::ORGANIZATION,
                vec![format!("organizations/{o}")],
            ),
        };
        out.push((
            AssetContent::IamPolicy,
            Asset {
                name: crm(&ancestors[0]),
                asset_type: kind.to_owned(),
                ancestors,
                body: AssetBody::IamPolicy(policy.clone()),
            },
        ));
    }
    for p in w.projects.values() {
        let ancestors = project_chain(p);
        let resource = |name: String, kind: &str, body: AssetBody| {
            (
                AssetContent::Resource,
                Asset {
                    name,
                    asset_type: kind.to_owned(),
                    ancestors: ancestors.clone(),
                    body,
                },
            )
        };
        out.push(resource(
            crm(&ancestors[0]),
            asset_types::PROJECT,
            AssetBody::Project {
                info: p.clone(),
                active: true,
            },
        ));
        out.push(resource(
            format!(
                "//serviceusage.googleapis.com/{}/services/container.googleapis.com",
                ancestors[0]
            ),
            asset_types::SERVICE,
            AssetBody::Service {
                project_number: p.project_number.to_string(),
                service: "container.googleapis.com".to_owned(),
                enabled: true,
            },
        ));
        for c in w.clusters.get(p.project_id.as_str()).into_iter().flatten() {
            out.push(resource(
                format!(
                    "//container.googleapis.com/projects/{}/locations/{}/clusters/{}",
                    p.project_id, c.location, c.name
                ),
                asset_types::CLUSTER,
                AssetBody::Cluster {
                    project_id: p.project_id.clone(),
                    cluster: c.clone(),
                },
            ));
        }
        for a in w.accounts.get(p.project_id.as_str()).into_iter().flatten() {
            out.push(resource(
                format!(
                    "//iam.googleapis.com/projects/{}/serviceAccounts/{}",
                    p.project_id,
                    a.unique_id.clone().unwrap_or_default()
                ),
                asset_types::SERVICE_ACCOUNT,
                AssetBody::ServiceAccount {
                    project_id: p.project_id.clone(),
                    account: a.clone(),
                },
            ));
        }
        let own_roles = format!("projects/{}/roles/", p.project_id);
        for (role, permissions) in w
            .roles
            .iter()
            .filter(|(r, _)| r.as_str().starts_with(&own_roles))
        {
            out.push(resource(
                format!("//iam.googleapis.com/{role}"),
                asset_types::ROLE,
                AssetBody::Role {
                    role: role.clone(),
                    permissions: permissions.clone(),
                    deleted: false,
                },
            ));
        }
    }
    out
}

impl AssetInventory for FakeCloud {
    fn list_asset_pages<'a>(
        &'a self,
        scope: &'a ResourceRef,
        content: AssetContent,
        types: &'a [&'a str],
        page_size: u32,
        on_page: &'a mut (dyn FnMut(AssetPage) + Send),
    ) -> BoxFuture<'a, Result<u32, ApiError>> {
        async move {
            let mut token: Option<String> = None;
            let mut pages = 0;
            loop {
                let (page, next) = self
                    .asset_page(scope, content, types, page_size, token)
                    .await?;
                pages += 1;
                on_page(page);
                match next {
                    Some(next) => token = Some(next),
                    None => return Ok(pages),
                }
            }
        }
        .boxed()
    }
}

impl FakeCloud {
    /// One page of `assets.list` (one call, journaled and open to injected faults) and the token
    /// of the next; tokens are `page-OFFSET`.
    async fn asset_page(
        &self,
        scope: &ResourceRef,
        content: AssetContent,
        types: &[&str],
        page_size: u32,
        page_token: Option<String>,
    ) -> Result<(AssetPage, Option<String>), ApiError> {
        let label = match content {
            AssetContent::Resource => "RESOURCE",
            AssetContent::IamPolicy => "IAM_POLICY",
        };
        let target = format!(
            "{scope} {label} pageSize={page_size} pageToken={}",
            page_token.as_deref().unwrap_or("")
        );
        if let Some(f) = self.enter("assets.list", &target).await {
            return Err(status_error(Api::CloudAsset, "assets.list", &f));
        }
        self.with(|w| {
            let scope_name = match scope {
                ResourceRef::Project(id) => w
                    .projects
                    .get(id.as_str())
                    .map(|p| format!("projects/{}", p.project_number))
                    .unwrap_or_default(),
                other => other.to_string(),
            };
            let all = w.frozen_assets.clone().unwrap_or_else(|| assets_of(w));
            let selected: Vec<Asset> = all
                .into_iter()
                .filter(|(c, a)| {
                    *c == content
                        && types.contains(&a.asset_type.as_str())
                        && a.ancestors.contains(&scope_name)
                })
                .map(|(_, a)| a)
                .collect();
            let start: usize = page_token
                .as_deref()
                .and_then(|t| t.strip_prefix("page-"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let size = page_size.clamp(1, 1000) as usize;
            let end = (start + size).min(selected.len());
            let page = AssetPage {
                read_time: Some(w.asset_read_time.clone().unwrap_or_else(|| {
                    gke_iam_remediator::clock::rfc3339(
                        std::time::SystemTime::now(),
                        gke_iam_remediator::clock::Precision::Millis,
                    )
                })),
                assets: selected[start.min(end)..end].to_vec(),
            };
            Ok((page, (end < selected.len()).then(|| format!("page-{end}"))))
        })
    }
}

impl DenyPolicies for FakeCloud {
    fn list_deny_policies<'a>(
        &'a self,
        attachment: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DenyPolicy>, ApiError>> {
        async move {
            let window = self.with(|w| w.iam_v2_window.clone());
            if let Some(window) = window.filter(|w| !w.try_acquire(0)) {
                return Err(ApiError::ReadQuotaSpent {
                    api: Api::Iam,
                    method: "policies.listPolicies",
                    limit: window.limit(),
                    at_google: false,
                    budget: None,
                });
            }
            let spent = self.with(|w| match &mut w.iam_v2_budget {
                Some((total, 0)) => Some(*total),
                Some((_, left)) => {
                    *left -= 1;
                    None
                }
                None => None,
            });
            if let Some(budget) = spent {
                return Err(ApiError::ReadQuotaSpent {
                    api: Api::Iam,
                    method: "policies.listPolicies",
                    limit: 5,
                    at_google: false,
                    budget: Some(budget),
                });
            }
            if let Some(f) = self.enter("denypolicies.list", attachment).await {
                return Err(status_error(Api::Iam, "policies.listPolicies", &f));
            }
            Ok(self.with(|w| {
                // Google takes a project's id or its number here; policies are kept under the number.
                let by_number = attachment
                    .strip_prefix("projects/")
                    .and_then(|id| w.projects.get(id))
                    .map(|p| format!("projects/{}", p.project_number));
                let point = by_number.as_deref().unwrap_or(attachment);
                w.deny_policies.get(point).cloned().unwrap_or_default()
            }))
        }
        .boxed()
    }
}

impl OrgPolicies for FakeCloud {
    fn boolean_constraint_enforced<'a>(
        &'a self,
        resource: &'a str,
        constraint: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        async move {
            if let Some(f) = self.enter("orgpolicy.getEffectivePolicy", resource).await {
                return Err(status_error(
                    Api::OrgPolicy,
                    "policies.getEffectivePolicy",
                    &f,
                ));
            }
            Ok(self.with(|w| {
                w.enforced_constraints
                    .contains(&(resource.to_owned(), constraint.to_owned()))
            }))
        }
        .boxed()
    }
}

impl GroupMembership for FakeCloud {
    fn is_transitive_member<'a>(
        &'a self,
        group_email: &'a str,
        member_email: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        async move {
            if let Some(f) = self
                .enter("cloudidentity.checkTransitiveMembership", group_email)
                .await
            {
                return Err(status_error(
                    Api::CloudIdentity,
                    "groups.memberships.checkTransitiveMembership",
                    &f,
                ));
            }
            Ok(self.with(|w| {
                // Breadth-first through nested groups.
                let mut seen = BTreeSet::new();
                let mut queue = vec![group_email.to_ascii_lowercase()];
                while let Some(g) = queue.pop() {
                    if !seen.insert(g.clone()) {
                        continue;
                    }
                    for m in w.groups.get(&g).into_iter().flatten() {
                        if m.eq_ignore_ascii_case(member_email) {
                            return true;
                        }
                        queue.push(m.to_ascii_lowercase());
                    }
                }
                false
            }))
        }
        .boxed()
    }
}
