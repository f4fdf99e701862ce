//! Verify -> decide -> apply -> outcome, per project: the orchestration between the ports and the
//! pure core.
//!
//! Owns the per-run caches (role definitions, ancestor policies, folder parents: each fetched once per
//! run, even under concurrency), the run's write budget, and the etag-guarded read-modify-write with
//! re-read, re-evaluate and re-plan on `409 ABORTED`. It never writes anything a plan did not decide.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Mutex, OnceCell};

use super::deny_cache::DenyPolicyCache;
use super::flap::{FlapLedger, FlapSource};

mod access;
mod intents;
use crate::domain::deny::DenyPolicy;
use crate::domain::evaluate::{self, Finding, Status};
use crate::domain::iam::{Member, Policy, ProjectId, ResourceRef, Role, ServiceAccountEmail};
use crate::domain::plan::{self, Action, DecideContext, Decision, Plan};
use crate::domain::report::{self, ActionReport, Failure, FindingReport, Outcome, ProjectReport};
use crate::domain::requirements::{NODE_SA_USUAL_ROLES, RequirementId};
use crate::domain::rules::{Mode, RemediationPolicy};
use crate::domain::state::{
    AccessFacts, AccountState, ApiState, ProjectState, RoleCatalog, RoleLookup, Troubleshot,
};
use crate::ports::{Api, ApiError, Cloud, ClusterList, ProjectInfo, RetryPolicy, ServiceAccount};

/// The report of a project that could not be read at all.
fn failed_report(info: &ProjectInfo, error: &ApiError) -> ProjectReport {
    ProjectReport {
        project_number: info.project_number.to_string(),
        ..ProjectReport::failed(info.project_id.to_string(), super::error::failure(error))
    }
}

/// Options of one remediator.
#[derive(Clone, Debug)]
pub struct Options {
    /// The remediation policy.
    pub policy: RemediationPolicy,
    /// Requirements to check.
    pub checks: BTreeSet<RequirementId>,
    /// Whether writes are wanted at all (`scan --apply`); the policy's mode must also be `enforce`.
    pub apply: bool,
    /// Ask the Policy Troubleshooter to settle `unknown` permissions.
    pub troubleshooter: bool,
    /// Projects verified concurrently.
    pub concurrency: usize,
    /// Backoff for write conflicts and write confirmation.
    pub write_backoff: RetryPolicy,
    /// The remediator's own identity: its past restorations are counted from Cloud Audit Logs before
    /// writing (without it, only this process's own restorations count, and reports say so).
    pub self_email: Option<String>,
    /// This process's flapping counts (shared by every run of an engine).
    pub flap: Arc<FlapLedger>,
    /// This process's deny-policy reads (shared by every run of an engine or a scan), used while
    /// younger than `limits.deny_policy_max_age_minutes`.
    pub deny_cache: Arc<DenyPolicyCache>,
    /// The IAM v2 reads this one-shot run makes in all, when it has such a budget (`scan`,
    /// `explain`, `job --sweep`): a sweep's plan of deny reads makes at most that many
    /// ([`super::deny_plan`]).
    pub deny_read_budget: Option<u32>,
    /// The write budget to draw from when it is shared (every project of one sweep); else the run
    /// has its own of `limits.max_writes_per_run`.
    pub budget: Option<Arc<WriteBudget>>,
    /// The wall clock IAM conditions are evaluated against (the system's; tests move it forward).
    pub clock: crate::clock::Clock,
    /// The shared state: the flapping count is read from its ledger, and every write is recorded
    /// there as an intent before it is made and as a restoration after. `None`: this process's
    /// record and Cloud Audit Logs (one-shot commands).
    pub state: Option<Arc<super::shared::SharedState>>,
    /// Projects named to [`Remediator::resolve`] read ahead: their first round, beside the lookup,
    /// the policy and the clusters, also lists their service accounts, reads their own deny policies
    /// and the definitions of [`NODE_SA_USUAL_ROLES`], so a project whose node accounts hold the usual
    /// roles is verified in one round of API latency instead of two. A few of those reads may turn
    /// out unneeded (a project without clusters needs no deny policies), so this is for commands that
    /// name few projects and wait for the answer (`scan --project`, `explain`), not for `serve`,
    /// whose hints from earlier runs do the same without the waste.
    pub read_ahead: bool,
    /// [`Remediator::resolve`] reads a named project's policy and clusters while it looks it up,
    /// for this remediator's own run of it (`scan`, `explain`). Off for a remediator that only
    /// resolves (an engine's sweep, whose runs are another remediator's): the lookup alone.
    pub lookup_reads_state: bool,
}

impl Options {
    /// Defaults for a policy: every requirement checked except the opt-in Google APIs service agent
    /// (removing `roles/editor` from it is a common hardening) unless the policy restores it.
    pub fn new(policy: RemediationPolicy) -> Self {
        let mut checks: BTreeSet<RequirementId> = RequirementId::ALL
            .into_iter()
            .filter(|r| *r != RequirementId::GoogleApisServiceAgent)
            .collect();
        checks.extend(policy.restore.iter().copied());
        Self {
            policy,
            checks,
            apply: false,
            troubleshooter: false,
            concurrency: 16,
            write_backoff: RetryPolicy {
                max_attempts: 5,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
            },
            self_email: None,
            flap: Arc::default(),
            deny_cache: Arc::default(),
            deny_read_budget: None,
            budget: None,
            clock: crate::clock::Clock::default(),
            read_ahead: false,
            lookup_reads_state: true,
            state: None,
        }
    }

    /// True if this run writes.
    pub fn writes(&self) -> bool {
        self.apply && self.policy.mode == Mode::Enforce
    }
}

type Shared<T> = Arc<OnceCell<T>>;

/// Why an ancestor (or deny policies) could not be read, and whether trying again later could help.
#[derive(Clone, Debug)]
pub(crate) struct Unreadable {
    /// What happened.
    pub(crate) message: String,
    /// A transient failure: the run fails and is retried.
    pub(crate) transient: bool,
    /// The IAM v2 read quota was spent (nothing was sent): not read now, worth asking again later.
    pub(crate) quota: bool,
}

impl Unreadable {
    /// Worth asking again within the same run.
    fn retry_later(&self) -> bool {
        self.transient || self.quota
    }
}

impl From<ApiError> for Unreadable {
    fn from(e: ApiError) -> Self {
        Self {
            transient: e.is_transient(),
            quota: e.is_read_quota_spent(),
            message: e.to_string(),
        }
    }
}
type Cache<K, T> = Mutex<HashMap<K, Shared<T>>>;

/// What a run may reuse: role definitions, ancestor policies and folder parents, each fetched once.
/// A scan uses one set for its whole run; the event engine shares one set across project runs for a
/// short time (and drops it when a folder or organization policy changes). A project's own policy is
/// never cached: it is always read fresh, and it is the one the write is guarded by.
#[derive(Default)]
pub struct RunCaches {
    roles: Cache<Role, RoleLookup>,
    policies: Cache<ResourceRef, Result<Policy, Unreadable>>,
    parents: Cache<String, Result<Option<ResourceRef>, Unreadable>>,
    access: access::AccessCaches,
    /// Projects whose last read found node accounts of their own: their next run lists the
    /// project's service accounts in its first round, beside the policy and clusters (a hint about
    /// what to read when, never about a verdict).
    lists_accounts: std::sync::Mutex<HashSet<ProjectId>>,
}

/// The remediator: caches and budget for one run.
pub struct Remediator {
    gcp: Arc<dyn Cloud>,
    options: Options,
    caches: Arc<RunCaches>,
    budget: Arc<WriteBudget>,
    /// A project's first-round reads started while [`Remediator::resolve`] looked the project up,
    /// taken (once) by the project's first read of live state.
    prefetched: std::sync::Mutex<HashMap<ProjectId, OwnReads>>,
    /// Names this run's write intents in the ledger.
    run: String,
}

/// A project's first-round reads: its own policy, its clusters and, when its last read found node
/// accounts of its own or it reads ahead, its service accounts; when it reads ahead, its own deny
/// policies too (with when that read started).
struct OwnReads {
    policy: Result<Policy, ApiError>,
    clusters: Result<ClusterList, ApiError>,
    accounts: Option<Result<Vec<ServiceAccount>, ApiError>>,
    deny: Option<OwnDenyRead>,
}

/// A read of the project's own deny policies made before its number was known (by project id).
pub(super) type OwnDenyRead = (tokio::time::Instant, Result<Vec<DenyPolicy>, ApiError>);

/// What was read about a project's node service accounts, before it is interpreted with every policy
/// (a deleted account's unique id is read from the `deleted:` members of the project's and its
/// ancestors' policies).
enum AccountReads {
    /// Existence is not checked (or there are no node accounts): every account counts as active.
    Unchecked(Vec<ServiceAccountEmail>),
    /// Each account and what its read returned.
    Read(
        Vec<(
            ServiceAccountEmail,
            Result<Option<ServiceAccount>, ApiError>,
        )>,
    ),
}

async fn cell<K: std::hash::Hash + Eq + Clone, T>(
    map: &Mutex<HashMap<K, Shared<T>>>,
    key: &K,
) -> Shared<T> {
    map.lock().await.entry(key.clone()).or_default().clone()
}

async fn forget<K: std::hash::Hash + Eq, T>(map: &Mutex<HashMap<K, Shared<T>>>, key: &K) {
    map.lock().await.remove(key);
}

impl Remediator {
    /// A remediator over the Google ports.
    pub fn new(gcp: Arc<dyn Cloud>, options: Options) -> Self {
        Self::with_caches(gcp, options, Arc::default())
    }

    /// A remediator reusing caches from earlier runs.
    pub fn with_caches(gcp: Arc<dyn Cloud>, options: Options, caches: Arc<RunCaches>) -> Self {
        let budget = options
            .budget
            .clone()
            .unwrap_or_else(|| WriteBudget::new(options.policy.limits.max_writes_per_run));
        Self {
            gcp,
            options,
            caches,
            budget,
            prefetched: std::sync::Mutex::default(),
            run: format!("r{:016x}", rand::random::<u64>()),
        }
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Resolves `--project`, `--folder` and `--organization` into projects (deduplicated, sorted by id).
    ///
    /// A folder or organization that does not exist or cannot be read is an error (a typo must not
    /// look like a healthy, empty scope). A project that cannot be looked up becomes a failed report
    /// of its own, so the rest are still checked and printed.
    pub async fn resolve(
        &self,
        projects: &[String],
        roots: &[ResourceRef],
    ) -> Result<(Vec<ProjectInfo>, Vec<ProjectReport>), ApiError> {
        // Every root's walk and every named project's lookup run at once (the client's rate limits pace
        // them); a named project's policy and clusters are read while it is looked up, for its run.
        let walks = futures::future::join_all(roots.iter().map(|root| self.walk(root)));
        // Boxed with owned keys: the future stays `Send` for every caller (an engine's sweep
        // request runs inside a message's handling).
        let lookups = futures::stream::iter(projects.iter().cloned())
            .map(
                |p| -> futures::future::BoxFuture<'_, (String, Result<ProjectInfo, ApiError>)> {
                    Box::pin(self.look_up(p))
                },
            )
            .buffer_unordered(self.options.concurrency.max(1))
            .collect::<Vec<_>>();
        let (walks, lookups) = tokio::join!(walks, lookups);
        let mut out: BTreeMap<String, ProjectInfo> = BTreeMap::new();
        for walk in walks {
            for p in walk? {
                out.insert(p.project_id.to_string(), p);
            }
        }
        let mut failures = Vec::new();
        for (id, p) in lookups {
            if out.contains_key(&id) {
                // Also under a root: the root's listing stands (as if it was never looked up alone).
                continue;
            }
            match p {
                Ok(p) => {
                    out.insert(p.project_id.to_string(), p);
                }
                Err(e) => failures.push(ProjectReport::failed(id, super::error::failure(&e))),
            }
        }
        failures.sort_by(|a, b| a.project_id.cmp(&b.project_id));
        Ok((out.into_values().collect(), failures))
    }

    /// Every project under a root, after checking the root itself can be read (concurrently: the
    /// check's error, if any, is the one reported).
    async fn walk(&self, root: &ResourceRef) -> Result<Vec<ProjectInfo>, ApiError> {
        let check = async {
            match root {
                ResourceRef::Folder(id) => self.gcp.get_folder_parent(id).await.map(drop),
                ResourceRef::Organization(_) => self.gcp.get_iam_policy(root).await.map(drop),
                ResourceRef::Project(_) => Ok(()),
            }
        };
        let (check, listed) = tokio::join!(check, self.gcp.list_projects_under(root));
        check?;
        listed
    }

    /// A named project's lookup, with its first-round reads started alongside and kept for its run.
    async fn look_up(&self, key: String) -> (String, Result<ProjectInfo, ApiError>) {
        let id = match ProjectId::parse(&key) {
            Ok(id) if self.options.lookup_reads_state => id,
            _ => {
                let info = self.gcp.get_project(&key).await;
                return (key, info);
            }
        };
        let (info, own) = tokio::join!(
            self.gcp.get_project(&key),
            self.read_own_first_round(&id, self.options.read_ahead)
        );
        if info.as_ref().is_ok_and(|i| i.project_id == id) {
            self.prefetched
                .lock()
                .expect("prefetch lock")
                .insert(id, own);
        }
        (key, info)
    }

    /// Verifies and (if allowed) restores every project, `concurrency` at a time, in input order,
    /// after the sweep's deny-policy reads are planned and made ([`Self::plan_deny_reads`]).
    pub async fn run(&self, projects: &[ProjectInfo]) -> Vec<ProjectReport> {
        let reads = self
            .plan_deny_reads(&super::deny_plan::PlanProject::of(projects, &[]))
            .await;
        let runs = futures::stream::iter(projects)
            .map(|p| self.remediate(p))
            .buffered(self.options.concurrency.max(1))
            .collect();
        tokio::join!(reads, runs).1
    }

    async fn role(&self, role: &Role) -> RoleLookup {
        let c = cell(&self.caches.roles, role).await;
        let lookup = c.get_or_init(|| self.gcp.get_role(role)).await.clone();
        if matches!(lookup, RoleLookup::Unreadable(_)) {
            // Possibly transient: do not let later runs reuse it.
            forget(&self.caches.roles, role).await;
        }
        lookup
    }

    async fn ancestor_policy(&self, resource: &ResourceRef) -> Result<Policy, Unreadable> {
        let c = cell(&self.caches.policies, resource).await;
        let result = c
            .get_or_init(|| async {
                self.gcp
                    .get_iam_policy(resource)
                    .await
                    .map_err(Unreadable::from)
            })
            .await
            .clone();
        if result.as_ref().is_err_and(|e| e.transient) {
            forget(&self.caches.policies, resource).await;
        }
        result
    }

    async fn folder_parent(&self, folder: &str) -> Result<Option<ResourceRef>, Unreadable> {
        let key = folder.to_owned();
        let c = cell(&self.caches.parents, &key).await;
        let result = c
            .get_or_init(|| async {
                self.gcp
                    .get_folder_parent(folder)
                    .await
                    .map_err(Unreadable::from)
            })
            .await
            .clone();
        if result.as_ref().is_err_and(|e| e.transient) {
            forget(&self.caches.parents, &key).await;
        }
        result
    }

    /// The folders and organization above a project, nearest first, with their policies, and what could
    /// not be read. Each level's policy and parent are read at once (both cached per run), so a chain
    /// of N levels takes N rounds.
    async fn ancestry(
        &self,
        parent: Option<ResourceRef>,
    ) -> Result<(Vec<ResourceRef>, Vec<(ResourceRef, Policy)>, Vec<String>), ApiError> {
        let mut chain: Vec<ResourceRef> = Vec::new();
        let mut policies = Vec::new();
        let mut unreadable_parents = Vec::new();
        let mut unreadable_policies = Vec::new();
        let mut next = parent;
        while let Some(resource) = next {
            if chain.contains(&resource) || chain.len() > 12 {
                break;
            }
            let parent_of = async {
                match &resource {
                    ResourceRef::Folder(f) => Some(self.folder_parent(f).await),
                    _ => None,
                }
            };
            let (policy, parent) = tokio::join!(self.ancestor_policy(&resource), parent_of);
            next = match parent {
                Some(Ok(p)) => p,
                Some(Err(e)) if e.transient => return Err(ancestor_error(e.message)),
                Some(Err(e)) => {
                    unreadable_parents.push(format!("the parent of {resource} ({})", e.message));
                    None
                }
                None => None,
            };
            match policy {
                Ok(p) => policies.push((resource.clone(), p)),
                Err(e) if e.transient => return Err(ancestor_error(e.message)),
                Err(e) => {
                    unreadable_policies.push(format!("the policy of {resource} ({})", e.message))
                }
            }
            chain.push(resource);
        }
        unreadable_parents.append(&mut unreadable_policies);
        Ok((chain, policies, unreadable_parents))
    }

    /// The project's own policy and clusters, read at once, with what the hints or `read_ahead` add.
    async fn read_own_first_round(&self, project: &ProjectId, read_ahead: bool) -> OwnReads {
        let resource = ResourceRef::Project(project.clone());
        let checks_accounts = self.options.checks.contains(&RequirementId::NodeSaExists);
        let accounts = async {
            let speculate = checks_accounts
                && (read_ahead
                    || self
                        .caches
                        .lists_accounts
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(project));
            match speculate {
                true => Some(self.gcp.list_service_accounts(project).await),
                false => None,
            }
        };
        let deny = async {
            if !read_ahead {
                return None;
            }
            let started = tokio::time::Instant::now();
            let point = format!("projects/{project}");
            // Never waits for an IAM v2 turn: without one now, the read is made when needed.
            let read = self.gcp.list_deny_policies_now(&point).await?;
            Some((started, read))
        };
        let roles = async {
            if read_ahead {
                let usual: Vec<Role> = NODE_SA_USUAL_ROLES
                    .iter()
                    .filter_map(|r| Role::parse(r).ok())
                    .collect();
                self.prefetch(&usual).await;
            }
        };
        let (policy, clusters, accounts, deny, ()) = tokio::join!(
            self.gcp.get_iam_policy(&resource),
            self.gcp.list_clusters(project),
            accounts,
            deny,
            roles
        );
        OwnReads {
            policy,
            clusters,
            accounts,
            deny,
        }
    }

    /// Reads live state for a project (the policy read is the one the write will be guarded by).
    ///
    /// Two rounds of API latency when the ancestors are cached or absent: first the project's policy
    /// and clusters (each ancestor's policy and parent alongside, level by level); then, as soon as
    /// those two are known, its node service accounts and the role definitions its policy grants
    /// them, at once.
    pub async fn read_state(&self, info: &ProjectInfo) -> Result<ProjectState, ApiError> {
        // The ancestors beside the project's own two rounds; the chain is handed to the second round,
        // which reads the deny policies of the project and of every ancestor at once.
        let (chain_tx, chain_rx) = tokio::sync::oneshot::channel();
        let ancestry = async {
            let ancestry = self.ancestry(info.parent.clone()).await;
            let _ = chain_tx.send(ancestry.as_ref().ok().map(|(chain, _, _)| chain.clone()));
            ancestry
        };
        let (own, ancestry) = tokio::join!(self.read_own(info, chain_rx), ancestry);
        let (mut state, accounts, access) = own?;
        let (chain, ancestors, mut unreadable) = ancestry?;
        state.access = access;
        state.folders = chain
            .iter()
            .filter_map(|r| match r {
                ResourceRef::Folder(f) => Some(f.clone()),
                _ => None,
            })
            .collect();
        state.ancestors = ancestors;
        state.unreadable.append(&mut unreadable);
        state.accounts = self.interpret_accounts(&state, accounts)?;
        Ok(state)
    }

    /// The project's own state: round one (policy, clusters; possibly prefetched), then round two
    /// (node accounts, role definitions), without ancestors.
    async fn read_own(
        &self,
        info: &ProjectInfo,
        chain: tokio::sync::oneshot::Receiver<Option<Vec<ResourceRef>>>,
    ) -> Result<(ProjectState, AccountReads, AccessFacts), ApiError> {
        let prefetched = self
            .prefetched
            .lock()
            .expect("prefetch lock")
            .remove(&info.project_id);
        let OwnReads {
            policy,
            clusters,
            accounts: listed,
            deny: own_deny,
        } = match prefetched {
            Some(reads) => reads,
            None => self.read_own_first_round(&info.project_id, false).await,
        };
        let policy = policy?;
        let (container_api, clusters) = match clusters {
            Ok(list) => (ApiState::Enabled, list),
            Err(e) if e.is_service_disabled() => (ApiState::Disabled, Default::default()),
            Err(e) => return Err(e),
        };
        let state = ProjectState {
            project_id: info.project_id.clone(),
            project_number: info.project_number.clone(),
            folders: Vec::new(),
            container_api,
            clusters: clusters.clusters,
            missing_zones: clusters.missing_zones,
            policy,
            ancestors: Vec::new(),
            accounts: BTreeMap::new(),
            troubleshooter: BTreeMap::new(),
            restorations: BTreeMap::new(),
            unreadable: Vec::new(),
            read_at: self.options.clock.now(),
            access: Default::default(),
        };
        // Deny rules bear only on node accounts' permissions: a project without clusters needs none
        // (one read ahead is kept for later runs all the same).
        let access = async {
            if state.clusters.is_empty() {
                if let Some(read) = own_deny {
                    self.keep_own_deny_read(info, read).await;
                }
                return Ok(AccessFacts::default());
            }
            match chain.await {
                Ok(Some(chain)) => Ok(self.read_access(info, &chain, own_deny).await?.0),
                // The ancestors could not be read: that error is the one reported.
                _ => Ok(AccessFacts::default()),
            }
        };
        let (accounts, (), access) = tokio::join!(
            self.read_accounts(&state, listed),
            self.prefetch_roles(&state),
            access
        );
        Ok((state, accounts?, access?))
    }

    /// Starts fetching the role definitions the project's own policy grants its node accounts and
    /// groups (into the run's cache, where [`Self::evaluate`] finds them; an unreadable one is left
    /// for it to see once, as if it had fetched it itself).
    async fn prefetch_roles(&self, state: &ProjectState) {
        let needed: Vec<Role> = evaluate::roles_needed(state).into_iter().collect();
        self.prefetch(&needed).await;
    }

    /// Fetches these role definitions into the run's cache, at once (one read per role per run).
    async fn prefetch(&self, roles: &[Role]) {
        futures::future::join_all(roles.iter().map(|role| async move {
            let c = cell(&self.caches.roles, role).await;
            c.get_or_init(|| self.gcp.get_role(role)).await;
        }))
        .await;
    }

    /// Reads the node service accounts (one list for the project's own, unless the first round
    /// listed them already; one get for each other), at once.
    async fn read_accounts(
        &self,
        state: &ProjectState,
        listed: Option<Result<Vec<ServiceAccount>, ApiError>>,
    ) -> Result<AccountReads, ApiError> {
        let node_sas: Vec<ServiceAccountEmail> = evaluate::node_service_accounts(state)
            .into_iter()
            .map(|n| n.email)
            .collect();
        if node_sas.is_empty() || !self.options.checks.contains(&RequirementId::NodeSaExists) {
            return Ok(AccountReads::Unchecked(node_sas));
        }
        let own_domain = format!("@{}.iam.gserviceaccount.com", state.project_id);
        let compute_default = ServiceAccountEmail::compute_default(&state.project_number);
        let local =
            |e: &ServiceAccountEmail| e.as_str().ends_with(&own_domain) || e == &compute_default;
        let any_local = node_sas.iter().any(local);
        {
            let mut hint = self
                .caches
                .lists_accounts
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if any_local {
                hint.insert(state.project_id.clone());
            } else {
                hint.remove(&state.project_id);
            }
        }
        let list = async {
            match (any_local, listed) {
                (false, _) => Ok(Vec::new()),
                (true, Some(listed)) => listed,
                (true, None) => self.gcp.list_service_accounts(&state.project_id).await,
            }
        };
        let others =
            futures::future::join_all(node_sas.iter().filter(|e| !local(e)).map(|e| async move {
                (e.clone(), self.gcp.get_service_account(e.as_str()).await)
            }));
        let (listed, mut others) = tokio::join!(list, others);
        let listed = listed?;
        let mut out = Vec::new();
        for email in node_sas {
            let found = if local(&email) {
                Ok(listed
                    .iter()
                    .find(|a| a.email.eq_ignore_ascii_case(email.as_str()))
                    .cloned())
            } else {
                let at = others
                    .iter()
                    .position(|(e, _)| *e == email)
                    .expect("every other account was read");
                others.swap_remove(at).1
            };
            out.push((email, found));
        }
        Ok(AccountReads::Read(out))
    }

    /// What the account reads mean, given every policy (project and ancestors).
    fn interpret_accounts(
        &self,
        state: &ProjectState,
        reads: AccountReads,
    ) -> Result<BTreeMap<ServiceAccountEmail, AccountState>, ApiError> {
        let reads = match reads {
            AccountReads::Unchecked(emails) => {
                return Ok(emails
                    .into_iter()
                    .map(|e| (e, AccountState::Active { unique_id: None }))
                    .collect());
            }
            AccountReads::Read(reads) => reads,
        };
        let policies: Vec<&Policy> = std::iter::once(&state.policy)
            .chain(state.ancestors.iter().map(|(_, p)| p))
            .collect();
        let deleted = evaluate::deleted_accounts(&policies);
        let mut out = BTreeMap::new();
        for (email, found) in reads {
            let account = match found {
                Ok(Some(a)) if a.disabled => AccountState::Disabled {
                    unique_id: a.unique_id,
                },
                Ok(Some(a)) => AccountState::Active {
                    unique_id: a.unique_id,
                },
                Ok(None) => AccountState::Deleted {
                    unique_id: deleted.get(&email).cloned(),
                },
                Err(e) if deleted.contains_key(&email) => {
                    tracing::debug!(error = %e, "account unreadable, deleted per policy");
                    AccountState::Deleted {
                        unique_id: deleted.get(&email).cloned(),
                    }
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => AccountState::Unknown {
                    reason: e.to_string(),
                },
            };
            out.insert(email, account);
        }
        Ok(out)
    }

    /// The definitions of `roles`, through this run's cache (`explain` reads the roles bound to the
    /// account it explains besides those evaluation needs).
    pub async fn role_catalog(&self, roles: BTreeSet<Role>) -> RoleCatalog {
        let lookups = futures::future::join_all(roles.iter().map(|r| self.role(r))).await;
        let mut catalog = RoleCatalog::default();
        for (role, lookup) in roles.into_iter().zip(lookups) {
            catalog.insert(role, lookup);
        }
        catalog
    }

    /// Evaluates state, fetching any role definitions it needs (cached per run) and asking the
    /// troubleshooter when enabled.
    pub async fn evaluate(&self, state: &mut ProjectState) -> Vec<Finding> {
        let needed = evaluate::roles_needed(state);
        let lookups = futures::future::join_all(needed.iter().map(|r| self.role(r))).await;
        let mut catalog = RoleCatalog::default();
        for (role, lookup) in needed.into_iter().zip(lookups) {
            catalog.insert(role, lookup);
        }
        let mut findings = evaluate::evaluate(state, &catalog, &self.options.checks);
        if self.resolve_groups(state, &catalog, &findings).await {
            findings = evaluate::evaluate(state, &catalog, &self.options.checks);
        }
        if self.read_default_account_cause(state, &findings).await {
            findings = evaluate::evaluate(state, &catalog, &self.options.checks);
        }
        if self.options.troubleshooter {
            let mut asked = false;
            for f in findings
                .iter()
                .filter(|f| f.status == Status::Unknown && !f.unknown_permissions.is_empty())
            {
                let Some(email) = f
                    .principal
                    .as_ref()
                    .and_then(|m| m.as_str().strip_prefix("serviceAccount:"))
                else {
                    continue;
                };
                let Ok(email) = ServiceAccountEmail::parse(email) else {
                    continue;
                };
                for perm in &f.unknown_permissions {
                    let answer = self
                        .gcp
                        .troubleshoot(email.as_str(), &state.project_id, perm)
                        .await
                        .unwrap_or(Troubleshot::Unknown);
                    state
                        .troubleshooter
                        .insert((email.clone(), perm.clone()), answer);
                    asked = true;
                }
            }
            if asked {
                findings = evaluate::evaluate(state, &catalog, &self.options.checks);
            }
        }
        findings
    }

    fn decide(&self, findings: &[Finding], state: &ProjectState) -> Plan {
        self.decide_counting(findings, state, 0)
    }

    /// Decides with `held` writes of this project already reserved (they do not count against it).
    fn decide_counting(&self, findings: &[Finding], state: &ProjectState, held: u32) -> Plan {
        let done = self.budget.used().saturating_sub(held);
        let limits = &self.options.policy.limits;
        let ctx = DecideContext {
            policy: &self.options.policy,
            state,
            writes_remaining: limits.max_writes_per_run.saturating_sub(done),
            restorations: &state.restorations,
        };
        plan::decide(findings, &ctx)
    }

    /// Counts the remediator's own restorations within the policy's window (only when a write is
    /// planned): the shared record when it can be read, else what this process made, and says which.
    /// The shared record is read once per project per window, and again only when a planned grant
    /// would reach the limit (other instances may have restored it meanwhile).
    async fn read_restorations(
        &self,
        state: &mut ProjectState,
        grants: &[(Role, Member)],
    ) -> FlapSource {
        // A store this instance alone uses counts this instance's restorations only: Cloud Audit
        // Logs stay the record every instance shares.
        let shared = self.options.state.as_ref().is_some_and(|s| s.info().shared);
        if !shared {
            return self.read_restorations_audit(state, grants).await;
        }
        match self.ledger_counts(&state.project_id, grants).await {
            None => self.read_restorations_audit(state, grants).await,
            Some(Ok((counts, history))) if history || self.options.self_email.is_none() => {
                state.restorations = counts;
                FlapSource::Ledger
            }
            Some(Ok((counts, _))) => {
                // Nothing in the ledger yet: restorations made before it existed are only in
                // Cloud Audit Logs (a bootstrap; the larger count of the two decides).
                let source = self.read_restorations_audit(state, grants).await;
                let audit = std::mem::take(&mut state.restorations);
                let mut merged = counts.clone();
                for (k, n) in audit {
                    let e = merged.entry(k).or_insert(0);
                    *e = (*e).max(n);
                }
                let from_audit = merged != counts;
                state.restorations = merged;
                if from_audit {
                    source
                } else {
                    FlapSource::Ledger
                }
            }
            Some(Err(e)) => {
                // The write's intent cannot be recorded either: no write will be made.
                tracing::warn!(project = %state.project_id, error = %e, "the state store cannot be read for the flapping count");
                self.read_restorations_audit(state, grants).await
            }
        }
    }

    /// The flapping count from Cloud Audit Logs and this process's own record.
    async fn read_restorations_audit(
        &self,
        state: &mut ProjectState,
        grants: &[(Role, Member)],
    ) -> FlapSource {
        let window = Duration::from_secs(u64::from(self.options.policy.limits.window_minutes) * 60);
        let limit = self.options.policy.limits.max_restorations_per_binding;
        let ledger = &self.options.flap;
        if let Some(counts) = ledger.cached(&state.project_id, window) {
            let far_from_limit = grants.iter().all(|(r, m)| {
                counts
                    .get(&(r.clone(), m.clone()))
                    .copied()
                    .unwrap_or(0)
                    .saturating_add(1)
                    < limit
            });
            if far_from_limit {
                state.restorations = counts;
                return FlapSource::AuditLog;
            }
        }
        let Some(me) = &self.options.self_email else {
            state.restorations = ledger.local(&state.project_id, window);
            return FlapSource::InstanceOnly {
                reason: "the remediator's own identity is unknown (REMEDIATOR_SELF_EMAIL)"
                    .to_owned(),
            };
        };
        match ledger
            .read_shared(&self.gcp, &state.project_id, me, window)
            .await
        {
            Ok(counts) => {
                state.restorations = counts;
                FlapSource::AuditLog
            }
            Err(e) => {
                tracing::warn!(
                    project = %state.project_id,
                    error = %e,
                    "cannot read past restorations from Cloud Audit Logs: the flapping limit counts this instance's restorations only"
                );
                state.restorations = ledger.local(&state.project_id, window);
                FlapSource::InstanceOnly {
                    reason: format!("Cloud Audit Logs could not be read: {e}"),
                }
            }
        }
    }

    /// Verify, decide and (when enabled) restore one project.
    ///
    /// When an account was undeleted or enabled, or an API enabled, what the first pass concluded
    /// about the permissions depending on it is stale: the project is verified again (once) and the
    /// report is the second pass's, keeping the first pass's restorations.
    pub async fn remediate(&self, info: &ProjectInfo) -> ProjectReport {
        let first = self.pass(info).await;
        let revived = first
            .actions
            .iter()
            .any(|a| a.outcome == Outcome::Restored && !matches!(a.action, Action::Grant { .. }));
        if !revived || first.error.is_some() {
            return first;
        }
        let mut second = self.pass(info).await;
        if second.error.is_some() {
            return first;
        }
        for f in &mut second.findings {
            let earlier = first.findings.iter().find(|e| {
                e.finding.requirement == f.finding.requirement
                    && e.finding.principal == f.finding.principal
            });
            if let Some(e) = earlier
                && e.outcome == Outcome::Restored
                && f.outcome == Outcome::Healthy
            {
                f.decision = e.decision.clone();
                f.outcome = Outcome::Restored;
            }
        }
        let mut actions = first.actions;
        actions.append(&mut second.actions);
        second.actions = actions;
        second.flap_guard = second.flap_guard.or(first.flap_guard);
        second
    }

    /// One verify -> decide -> apply pass.
    async fn pass(&self, info: &ProjectInfo) -> ProjectReport {
        let mut state = match self.read_state(info).await {
            Ok(s) => s,
            Err(e) => return failed_report(info, &e),
        };
        let mut findings = self.evaluate(&mut state).await;
        let mut plan = self.decide(&findings, &state);
        let mut flap_guard = None;
        if self.options.writes() && plan.grants().next().is_some() {
            let grants: Vec<(Role, Member)> =
                plan.grants().map(|(r, m)| (r.clone(), m.clone())).collect();
            flap_guard = Some(self.read_restorations(&mut state, &grants).await);
            plan = self.decide(&findings, &state);
        }
        let mut actions = Vec::new();
        if !plan.is_empty() {
            if self.options.writes() {
                actions = self.apply(info, &mut state, &mut findings, &mut plan).await;
            } else {
                actions = plan
                    .actions
                    .iter()
                    .map(|a| ActionReport {
                        action: a.clone(),
                        outcome: Outcome::WouldRestore,
                        etag_before: state.policy.etag.clone(),
                        etag_after: None,
                        attempts: 0,
                        error: None,
                    })
                    .collect();
            }
        }
        let outcomes: BTreeMap<&Action, Outcome> =
            actions.iter().map(|a| (&a.action, a.outcome)).collect();
        let reports = findings
            .iter()
            .zip(&plan.decisions)
            .map(|(finding, decision)| FindingReport {
                finding: finding.clone(),
                decision: decision.clone(),
                outcome: match decision {
                    Decision::Healthy => report::healthy_outcome(
                        finding,
                        state.read_at,
                        self.options.policy.limits.expiry_warning_days,
                    ),
                    Decision::Restore { action } => {
                        outcomes.get(action).copied().unwrap_or(Outcome::Failed)
                    }
                    Decision::NotAllowed { .. } | Decision::Blocked { .. } => Outcome::NotAllowed,
                    Decision::NeedsReview { .. } => Outcome::Unknown,
                    Decision::Escalate { .. } => Outcome::Escalated,
                },
            })
            .collect();
        ProjectReport {
            project_id: info.project_id.to_string(),
            project_number: info.project_number.to_string(),
            gke: evaluate::is_gke_project(&state),
            folders: state.folders.clone(),
            policy_etag: actions
                .iter()
                .rev()
                .find_map(|a| a.etag_after.clone())
                .or_else(|| state.policy.etag.clone()),
            flap_guard,
            findings: reports,
            actions,
            error: None,
        }
    }

    async fn apply(
        &self,
        info: &ProjectInfo,
        state: &mut ProjectState,
        findings: &mut Vec<Finding>,
        plan: &mut Plan,
    ) -> Vec<ActionReport> {
        let mut reports = Vec::new();
        if plan.grants().next().is_some() {
            reports.extend(
                self.apply_grants(&info.project_id, state, findings, plan)
                    .await,
            );
        }
        for action in plan
            .actions
            .iter()
            .filter(|a| !matches!(a, Action::Grant { .. }))
        {
            let intent = [(action.clone(), intents::finding_of(action, findings))];
            match self.begin(&info.project_id, &intent).await {
                Ok(refused) if refused.is_empty() => {}
                Ok(_) => {
                    reports.push(escalated_by_ledger(action));
                    continue;
                }
                Err(e) => {
                    reports.push(intent_unrecorded(action, &e));
                    continue;
                }
            }
            let result = match action {
                Action::EnableService { service } => {
                    self.gcp.enable_service(&info.project_id, service).await
                }
                Action::EnableServiceAccount { email } => {
                    self.gcp.enable_service_account(email).await
                }
                Action::UndeleteServiceAccount { unique_id, .. } => {
                    self.gcp.undelete_service_account(unique_id).await
                }
                Action::Grant { .. } => continue,
            };
            self.finish(&info.project_id, &intent, None, result.is_ok())
                .await;
            reports.push(ActionReport {
                action: action.clone(),
                outcome: if result.is_ok() {
                    Outcome::Restored
                } else {
                    Outcome::Failed
                },
                etag_before: None,
                etag_after: None,
                attempts: 1,
                error: result.err().map(|e| super::error::failure(&e)),
            });
        }
        reports
    }

    /// The grants of the plan, each recorded in the ledger as an intent before the write and as a
    /// restoration after it; a grant whose binding reached the flapping limit meanwhile (another
    /// instance restored it) is not written but escalated.
    async fn apply_grants(
        &self,
        project: &ProjectId,
        state: &mut ProjectState,
        findings: &mut Vec<Finding>,
        plan: &mut Plan,
    ) -> Vec<ActionReport> {
        let intents: Vec<(Action, Option<String>)> = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Grant { .. }))
            .map(|a| (a.clone(), intents::finding_of(a, findings)))
            .collect();
        let refused = match self.begin(project, &intents).await {
            Ok(refused) => refused,
            Err(e) => {
                return intents
                    .iter()
                    .map(|(a, _)| intent_unrecorded(a, &e))
                    .collect();
            }
        };
        if !refused.is_empty() {
            // Nothing was recorded: record the others alone.
            plan.actions.retain(|a| !refused.contains(a));
            let rest: Vec<(Action, Option<String>)> = intents
                .iter()
                .filter(|(a, _)| !refused.contains(a))
                .cloned()
                .collect();
            let mut reports: Vec<ActionReport> = refused.iter().map(escalated_by_ledger).collect();
            if !rest.is_empty() {
                match self.begin(project, &rest).await {
                    Ok(again) if again.is_empty() => {
                        reports.extend(
                            self.write_grants(project, state, findings, plan, &rest)
                                .await,
                        );
                    }
                    Ok(again) => reports.extend(again.iter().map(escalated_by_ledger)),
                    Err(e) => reports.extend(rest.iter().map(|(a, _)| intent_unrecorded(a, &e))),
                }
            }
            return reports;
        }
        self.write_grants(project, state, findings, plan, &intents)
            .await
    }

    /// [`Self::write_policy`], then the intents' outcomes into the ledger.
    async fn write_grants(
        &self,
        project: &ProjectId,
        state: &mut ProjectState,
        findings: &mut Vec<Finding>,
        plan: &mut Plan,
        intents: &[(Action, Option<String>)],
    ) -> Vec<ActionReport> {
        let reports = self.write_policy(project, state, findings, plan).await;
        let made: Vec<(Action, Option<String>)> = intents
            .iter()
            .filter(|(a, _)| {
                reports
                    .iter()
                    .any(|r| &r.action == a && r.outcome == Outcome::Restored)
            })
            .cloned()
            .collect();
        let etag = reports.iter().find_map(|r| r.etag_after.clone());
        let unmade: Vec<(Action, Option<String>)> = intents
            .iter()
            .filter(|i| !made.contains(i))
            .cloned()
            .collect();
        if !made.is_empty() {
            self.finish(project, &made, etag, true).await;
        }
        if !unmade.is_empty() {
            self.finish(project, &unmade, None, false).await;
        }
        reports
    }

    /// One etag-guarded read-modify-write of the project policy for every grant of the plan; on 409
    /// ABORTED: re-read, re-evaluate, re-plan and retry with jittered backoff.
    async fn write_policy(
        &self,
        project: &ProjectId,
        state: &mut ProjectState,
        findings: &mut Vec<Finding>,
        plan: &mut Plan,
    ) -> Vec<ActionReport> {
        let first_grants: Vec<Action> = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Grant { .. }))
            .cloned()
            .collect();
        let etag_before = state.policy.etag.clone();
        let max_attempts = self.options.policy.limits.max_write_attempts.max(1);
        let mut attempt = 0;
        // Held while a write is under way; dropped (returned to the budget) unless the write happened.
        let mut reservation: Option<Reservation> = None;
        let report = |outcome, etag_after: Option<String>, attempts, error: Option<Failure>| {
            first_grants
                .iter()
                .map(|a| ActionReport {
                    action: a.clone(),
                    outcome,
                    etag_before: etag_before.clone(),
                    etag_after: etag_after.clone(),
                    attempts,
                    error: error.clone(),
                })
                .collect::<Vec<_>>()
        };
        loop {
            attempt += 1;
            let mut desired = state.policy.clone();
            let added = plan::apply_grants(&mut desired, plan);
            if added == 0 {
                // Someone else restored it meanwhile (another instance, a person): nothing to
                // write (the reservation goes back) and nothing of ours to announce.
                return report(Outcome::Healthy, state.policy.etag.clone(), attempt, None);
            }
            if reservation.is_none() {
                reservation = self.budget.reserve();
            }
            if reservation.is_none() {
                return report(
                    Outcome::NotAllowed,
                    None,
                    attempt,
                    Some(Failure::Permanent(
                        "the run's write limit (limits.max_writes_per_run) is reached".to_owned(),
                    )),
                );
            }
            match self.gcp.set_project_iam_policy(project, &desired).await {
                Ok(written) => {
                    if let Some(r) = reservation.take() {
                        r.keep();
                    }
                    let grants: Vec<(Role, Member)> =
                        plan.grants().map(|(r, m)| (r.clone(), m.clone())).collect();
                    for (role, member) in &grants {
                        self.options.flap.record(project, role, member);
                    }
                    return match self.confirm(project, &grants).await {
                        Ok(()) => report(Outcome::Restored, written.etag, attempt, None),
                        Err(e) => report(Outcome::Failed, written.etag, attempt, Some(e)),
                    };
                }
                Err(e) if e.is_conflict() && attempt < max_attempts => {
                    tracing::info!(%project, attempt, "policy changed concurrently; re-reading and re-planning");
                    tokio::time::sleep(self.options.write_backoff.backoff(attempt)).await;
                    match self
                        .gcp
                        .get_iam_policy(&ResourceRef::Project(project.clone()))
                        .await
                    {
                        Ok(p) => state.policy = p,
                        Err(e) => {
                            return report(
                                Outcome::Failed,
                                None,
                                attempt,
                                Some(super::error::failure(&e)),
                            );
                        }
                    }
                    *findings = self.evaluate(state).await;
                    // The write reserved for this project is kept for the retry.
                    *plan = self.decide_counting(findings, state, u32::from(reservation.is_some()));
                }
                Err(e) if e.is_conflict() => {
                    return report(
                        Outcome::Failed,
                        None,
                        attempt,
                        Some(Failure::Transient(format!(
                            "gave up after {attempt} read-modify-write attempts: the policy kept changing ({e})"
                        ))),
                    );
                }
                Err(e) => {
                    return report(
                        Outcome::Failed,
                        None,
                        attempt,
                        Some(super::error::failure(&e)),
                    );
                }
            }
        }
    }

    /// Reads the policy back until every grant is visible (IAM is eventually consistent), bounded.
    async fn confirm(&self, project: &ProjectId, grants: &[(Role, Member)]) -> Result<(), Failure> {
        let resource = ResourceRef::Project(project.clone());
        let mut last = String::new();
        for attempt in 0..self.options.write_backoff.max_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.options.write_backoff.backoff(attempt)).await;
            }
            match self.gcp.get_iam_policy(&resource).await {
                Ok(p) if grants.iter().all(|(r, m)| p.grants_unconditionally(r, m)) => {
                    return Ok(());
                }
                Ok(_) => last = "the new binding is not visible yet".to_owned(),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Failure::Transient(format!(
            "write not confirmed by reading the policy back: {last}"
        )))
    }
}

/// A write not made: the binding reached the flapping limit in the shared ledger.
fn escalated_by_ledger(action: &Action) -> ActionReport {
    not_written(
        action,
        Outcome::Escalated,
        Failure::Permanent(
            "restored as often as limits.max_restorations_per_binding allows within the window (counted across every instance sharing the state): not restored again".to_owned(),
        ),
    )
}

/// A write not made: its intent could not be recorded (every limit fails closed).
fn intent_unrecorded(action: &Action, e: &crate::ports::StateError) -> ActionReport {
    not_written(
        action,
        Outcome::Failed,
        Failure::Transient(format!(
            "not written: the state store cannot record the write's intent ({e})"
        )),
    )
}

fn not_written(action: &Action, outcome: Outcome, why: Failure) -> ActionReport {
    ActionReport {
        action: action.clone(),
        outcome,
        etag_before: None,
        etag_after: None,
        attempts: 0,
        error: Some(why),
    }
}

fn ancestor_error(message: String) -> ApiError {
    ApiError::Transport {
        api: Api::ResourceManager,
        method: "ancestors",
        message,
    }
}

/// How many `setIamPolicy` writes a run (a scan, a sweep, a job) may still make.
#[derive(Debug)]
pub struct WriteBudget {
    used: AtomicU32,
    max: u32,
}

impl WriteBudget {
    /// A budget of `max` writes.
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU32::new(0),
            max,
        })
    }

    /// Writes made or under way.
    pub fn used(&self) -> u32 {
        self.used.load(Ordering::SeqCst)
    }

    /// Reserves one write, if any is left; the reservation goes back unless [`Reservation::keep`]
    /// says the write happened.
    pub fn reserve(self: &Arc<Self>) -> Option<Reservation> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Reservation {
                budget: self.clone(),
                kept: false,
            })
    }
}

/// One reserved write (RAII): returned to the budget when dropped without [`Reservation::keep`].
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<WriteBudget>,
    kept: bool,
}

impl Reservation {
    /// The write happened: it stays counted.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            self.budget.used.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// What a Cloud Asset Inventory sweep ([`super::snapshot`]) shares with the per-project path of the
/// same run: the Google ports, role definitions and the policies of ancestors above the snapshot's
/// scope, each read at most once per run whichever path asks first.
impl Remediator {
    /// The Google ports.
    pub(crate) fn cloud(&self) -> &Arc<dyn Cloud> {
        &self.gcp
    }

    /// A role definition through the run's cache.
    pub(crate) async fn cached_role(&self, role: &Role) -> RoleLookup {
        self.role(role).await
    }

    /// An ancestor's policy through the run's cache, or why it cannot be read.
    pub(crate) async fn cached_ancestor_policy(
        &self,
        resource: &ResourceRef,
    ) -> Result<Policy, String> {
        self.ancestor_policy(resource).await.map_err(|e| e.message)
    }
}
