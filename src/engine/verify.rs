//! Verify: a project's live state read through the ports (its policy, clusters, node accounts,
//! ancestors, role definitions, deny policies, org policy, group memberships), each at most once per
//! run through the run's caches, and evaluated by the pure core into findings. It never writes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{Mutex, OnceCell};

use super::remediate::Core;
use crate::domain::deny::DenyPolicy;
use crate::domain::evaluate::{self, Finding, Status};
use crate::domain::iam::{Policy, ProjectId, ResourceRef, Role, ServiceAccountEmail};
use crate::domain::requirements::{NODE_SA_USUAL_ROLES, RequirementId};
use crate::domain::state::{
    AccessFacts, AccountState, ApiState, ProjectState, RoleCatalog, RoleLookup, Troubleshot,
};
use crate::ports::{Api, ApiError, ClusterList, ProjectInfo, ServiceAccount};

mod access;

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

/// A project's first-round reads: its own policy, its clusters and, when its last read found node
/// accounts of its own or it reads ahead, its service accounts; when it reads ahead, its own deny
/// policies too (with when that read started).
pub(super) struct OwnReads {
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

fn ancestor_error(message: String) -> ApiError {
    ApiError::Transport {
        api: Api::ResourceManager,
        method: "ancestors",
        message,
    }
}

/// The verify stage of one remediator: reads and evaluates, never writes.
#[derive(Clone, Copy)]
pub struct Verifier<'a> {
    core: &'a Core,
}

impl<'a> Verifier<'a> {
    /// The stage over a remediator's shared parts.
    pub(super) fn new(core: &'a Core) -> Self {
        Self { core }
    }
}

impl std::ops::Deref for Verifier<'_> {
    type Target = Core;

    fn deref(&self) -> &Core {
        self.core
    }
}

impl Verifier<'_> {
    pub(super) async fn role(&self, role: &Role) -> RoleLookup {
        let c = cell(&self.caches.roles, role).await;
        let lookup = c.get_or_init(|| self.gcp.get_role(role)).await.clone();
        if matches!(lookup, RoleLookup::Unreadable(_)) {
            // Possibly transient: do not let later runs reuse it.
            forget(&self.caches.roles, role).await;
        }
        lookup
    }

    pub(super) async fn ancestor_policy(
        &self,
        resource: &ResourceRef,
    ) -> Result<Policy, Unreadable> {
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
    pub(super) async fn read_own_first_round(
        &self,
        project: &ProjectId,
        read_ahead: bool,
    ) -> OwnReads {
        let resource = ResourceRef::Project(project.clone());
        let checks_accounts = self
            .options
            .settings
            .checks
            .contains(&RequirementId::NodeSaExists);
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
            read_at: self.options.context.clock.now(),
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
        if node_sas.is_empty()
            || !self
                .options
                .settings
                .checks
                .contains(&RequirementId::NodeSaExists)
        {
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
        let mut findings = evaluate::evaluate(state, &catalog, &self.options.settings.checks);
        if self.resolve_groups(state, &catalog, &findings).await {
            findings = evaluate::evaluate(state, &catalog, &self.options.settings.checks);
        }
        if self.read_default_account_cause(state, &findings).await {
            findings = evaluate::evaluate(state, &catalog, &self.options.settings.checks);
        }
        if self.options.settings.troubleshooter {
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
                findings = evaluate::evaluate(state, &catalog, &self.options.settings.checks);
            }
        }
        findings
    }
}
