//! Organization and folder sweeps through Cloud Asset Inventory: discovery in a few dozen paged
//! calls instead of a walk and three reads per project.
//!
//! A sweep of a folder or organization first lists, under each root, the IAM policies of projects,
//! folders and the organization (`contentType=IAM_POLICY`) and the projects, clusters with their node
//! pools, service accounts, enabled services and custom roles (`contentType=RESOURCE`), in pages of up
//! to 1,000. Every project is then evaluated from that snapshot with the same pure evaluation the
//! per-project path uses ([`evaluate::evaluate`], [`plan::decide`]). A project the snapshot shows
//! healthy, with everything it needed present, is reported from it; every other one (broken, unknown,
//! conditional, anything the snapshot cannot decide, and every project when the snapshot is older than
//! it may be) is a *suspect*, which the caller re-verifies through the normal per-project path. That
//! path reads live state and alone may write: nothing here writes, and a snapshot never decides a
//! write.
//!
//! What the snapshot does not hold is read live through the run's caches (predefined role
//! definitions, the policies of ancestors above a folder root) or makes the project a suspect (custom
//! roles not in the snapshot, node service accounts of projects outside it, undecodable assets).
//!
//! IAM deny policies are not Cloud Asset assets: they are read live for every project with clusters
//! exactly as the per-project path reads them (its folders' and organization's through the run's and
//! the process's caches, then its own; a project without clusters has no node account a deny rule
//! could block, and neither path reads any for it), through the same IAM v2 read budget. The
//! snapshot knows every project's ancestors and clusters, so it plans the sweep's deny reads
//! ([`crate::engine::deny_plan`]) before judging: the organization, then folders by the projects
//! with clusters beneath them. Deny policies the budget leaves unread keep a would-be-`ok` node
//! account `ok` with `deny_check` naming them, reported from the snapshot (re-verifying it live could
//! read no more). A project is never called healthy
//! from the snapshot on a guess about its deny policies.
//! When Cloud Asset Inventory cannot be read at all (403 without `cloudasset.assets.list*`, the API
//! disabled, or any other failure), [`survey`] fails and the caller falls back to the per-project path.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::deny_plan::PlanProject;
use super::remediate::Remediator;
use crate::domain::condition;
use crate::domain::evaluate;
use crate::domain::iam::{Policy, ProjectId, ResourceRef, Role, ServiceAccountEmail};
use crate::domain::plan::{self, DecideContext, Decision};
use crate::domain::report::{FindingReport, Outcome, ProjectReport};
use crate::domain::requirements::RequirementId;
use crate::domain::state::{
    AccountState, ApiState, Cluster, ProjectState, RoleCatalog, RoleLookup,
};
use crate::ports::assets::asset_types;
use crate::ports::{ApiError, AssetBody, AssetContent, AssetPage, ProjectInfo, ServiceAccount};

/// The largest page `assets.list` serves.
pub const PAGE_SIZE: u32 = 1000;

/// How old a snapshot may be before every project in it counts as a suspect.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// The Container API, whose state decides whether a project is in scope.
const CONTAINER: &str = "container.googleapis.com";

/// Settings of a snapshot sweep.
#[derive(Clone, Debug)]
pub struct SnapshotSettings {
    /// Assets per page (at most [`PAGE_SIZE`]).
    pub page_size: u32,
    /// A snapshot older than this is stale: every project is re-verified live.
    pub max_age: Duration,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        Self {
            page_size: PAGE_SIZE,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// A project the snapshot could not call healthy, and why.
#[derive(Clone, Debug)]
pub struct Suspect {
    /// The project, as the snapshot names it.
    pub info: ProjectInfo,
    /// Why it is re-verified live.
    pub reason: String,
}

/// The result of a snapshot sweep's discovery and evaluation.
#[derive(Clone, Debug, Default)]
pub struct Survey {
    /// The snapshot time (the oldest `readTime` of its pages).
    pub read_time: Option<String>,
    /// Projects reported from the snapshot, exactly as the per-project path writes them: those it
    /// shows healthy, and those healthy but for deny policies the IAM v2 read quota left unread
    /// (`incomplete`, naming the attachment points and the quota).
    pub reports: Vec<ProjectReport>,
    /// Projects to re-verify live.
    pub suspects: Vec<Suspect>,
    /// `assets.list` calls made.
    pub pages: u32,
}

impl Survey {
    /// Of `projects` (named explicitly beside the roots), those the snapshot neither showed healthy
    /// nor sent to be re-verified: they are resolved live by the caller.
    pub fn uncovered(&self, projects: &[String]) -> Vec<String> {
        let known: BTreeSet<&str> = self
            .reports
            .iter()
            .map(|r| r.project_id.as_str())
            .chain(self.suspects.iter().map(|s| s.info.project_id.as_str()))
            .collect();
        projects
            .iter()
            .filter(|p| !known.contains(p.as_str()))
            .cloned()
            .collect()
    }
}

/// Which path a scan or sweep used to discover and check projects (written in its output).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "path", rename_all = "kebab-case")]
pub enum Discovery {
    /// Cloud Asset Inventory: a snapshot, with the suspects re-verified live.
    CloudAssetInventory {
        /// The snapshot time.
        #[serde(skip_serializing_if = "Option::is_none")]
        read_time: Option<String>,
        /// `assets.list` calls.
        asset_calls: u32,
        /// Projects reported from the snapshot (healthy, or incomplete only for deny policies the IAM
        /// v2 read quota left unread).
        from_snapshot: usize,
        /// Projects re-verified live.
        reverified: usize,
    },
    /// Every project read live (no folder or organization in scope, or Cloud Asset Inventory
    /// unavailable).
    PerProject {
        /// Why Cloud Asset Inventory was not used, when it was tried or turned off.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl Discovery {
    /// The discovery of a survey whose suspects were re-verified.
    pub fn of(survey: &Survey) -> Self {
        Self::CloudAssetInventory {
            read_time: survey.read_time.clone(),
            asset_calls: survey.pages,
            from_snapshot: survey.reports.len(),
            reverified: survey.suspects.len(),
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Self::CloudAssetInventory {
                read_time,
                asset_calls,
                from_snapshot,
                reverified,
            } => format!(
                "discovery: Cloud Asset Inventory snapshot{} in {asset_calls} call(s): {from_snapshot} project(s) reported from the snapshot, {reverified} re-verified live",
                read_time
                    .as_deref()
                    .map(|t| format!(" of {t}"))
                    .unwrap_or_default()
            ),
            Self::PerProject { reason: Some(r) } => {
                format!("discovery: per project (Cloud Asset Inventory not used: {r})")
            }
            Self::PerProject { reason: None } => "discovery: per project".to_owned(),
        }
    }
}

/// Everything the listings held, indexed for evaluation.
#[derive(Default)]
struct Snapshot {
    /// IAM policies by `projects/NUMBER`, `folders/N`, `organizations/N`.
    policies: HashMap<String, Policy>,
    /// Active projects by id, with their ancestors (closest first, the project itself first) and the
    /// root whose listing held them.
    projects: BTreeMap<String, (ProjectInfo, Vec<String>, usize)>,
    /// Projects listed but not active.
    inactive: HashSet<String>,
    /// Clusters by project id.
    clusters: HashMap<String, Vec<Cluster>>,
    /// Service accounts by lower-case email.
    accounts: HashMap<String, (ProjectId, ServiceAccount)>,
    /// Enabled services as (project number, service).
    services: HashSet<(String, String)>,
    /// Custom roles.
    roles: HashMap<Role, RoleLookup>,
    /// Resources (first ancestor of an asset) an undecodable asset was about, with the reason.
    undecodable: HashMap<String, String>,
    /// Oldest `readTime`.
    read_time: Option<(SystemTime, String)>,
    /// A page without `readTime`.
    read_time_missing: bool,
    pages: u32,
}

impl Snapshot {
    fn note_read_time(&mut self, read_time: Option<&str>) {
        match read_time.and_then(|t| condition::parse_timestamp(t).map(|at| (at, t))) {
            Some((at, t)) => {
                if self.read_time.as_ref().is_none_or(|(old, _)| at < *old) {
                    self.read_time = Some((at, t.to_owned()));
                }
            }
            None => self.read_time_missing = true,
        }
    }

    fn add(&mut self, asset: crate::ports::Asset, root: usize) {
        let first = asset.ancestors.first().cloned().unwrap_or_default();
        match asset.body {
            AssetBody::IamPolicy(p) => {
                if !first.is_empty() {
                    self.policies.insert(first, p);
                }
            }
            AssetBody::Project { info, active } => {
                if active {
                    self.projects.entry(info.project_id.to_string()).or_insert((
                        info,
                        asset.ancestors,
                        root,
                    ));
                } else {
                    self.inactive.insert(info.project_id.to_string());
                }
            }
            AssetBody::Cluster {
                project_id,
                cluster,
            } => self
                .clusters
                .entry(project_id.to_string())
                .or_default()
                .push(cluster),
            AssetBody::ServiceAccount {
                project_id,
                account,
            } => {
                self.accounts
                    .insert(account.email.to_ascii_lowercase(), (project_id, account));
            }
            AssetBody::Service {
                project_number,
                service,
                enabled,
            } => {
                if enabled {
                    self.services.insert((project_number, service));
                }
            }
            AssetBody::Role {
                role,
                permissions,
                deleted,
            } => {
                let lookup = if deleted {
                    RoleLookup::NotFound
                } else {
                    RoleLookup::Found(permissions)
                };
                self.roles.insert(role, lookup);
            }
            AssetBody::Undecodable { reason } => {
                tracing::warn!(asset = %asset.name, %reason, "a Cloud Asset Inventory asset could not be decoded; its project is re-verified live");
                self.undecodable
                    .insert(first, format!("the asset {} ({reason})", asset.name));
            }
            AssetBody::Other => {}
        }
    }
}

/// The asset types listed with `contentType=IAM_POLICY`.
const POLICY_TYPES: [&str; 3] = [
    asset_types::PROJECT,
    asset_types::FOLDER,
    asset_types::ORGANIZATION,
];

/// The asset types listed with `contentType=RESOURCE`.
const RESOURCE_TYPES: [&str; 5] = [
    asset_types::PROJECT,
    asset_types::CLUSTER,
    asset_types::SERVICE_ACCOUNT,
    asset_types::SERVICE,
    asset_types::ROLE,
];

/// Lists every page of one content type under a root into a snapshot of its own, each page added
/// as it arrives.
async fn list_into(
    remediator: &Remediator,
    root: &ResourceRef,
    root_index: usize,
    content: AssetContent,
    types: &[&str],
    page_size: u32,
) -> Result<Snapshot, ApiError> {
    let mut snapshot = Snapshot::default();
    let mut add = |page: AssetPage| {
        snapshot.note_read_time(page.read_time.as_deref());
        for asset in page.assets {
            snapshot.add(asset, root_index);
        }
    };
    let pages = remediator
        .cloud()
        .list_asset_pages(root, content, types, page_size, &mut add)
        .await?;
    snapshot.pages = pages;
    Ok(snapshot)
}

fn merge(into: &mut Snapshot, from: Snapshot) {
    into.policies.extend(from.policies);
    for (k, v) in from.projects {
        into.projects.entry(k).or_insert(v);
    }
    into.inactive.extend(from.inactive);
    for (k, mut v) in from.clusters {
        into.clusters.entry(k).or_default().append(&mut v);
    }
    into.accounts.extend(from.accounts);
    into.services.extend(from.services);
    into.roles.extend(from.roles);
    into.undecodable.extend(from.undecodable);
    if let Some((_, t)) = from.read_time {
        into.note_read_time(Some(&t));
    }
    into.read_time_missing |= from.read_time_missing;
    into.pages += from.pages;
}

/// The projects of a scan or a `job --sweep`, and how they were found.
#[derive(Debug)]
pub struct Discovered {
    /// Projects to check live: the named ones a snapshot does not cover, then its suspects.
    pub live: Vec<ProjectInfo>,
    /// Named projects that cannot be found or read, as reports.
    pub failures: Vec<ProjectReport>,
    /// Projects reported from a snapshot (healthy, or incomplete only for deny policies the IAM v2
    /// quota left unread), with their reports.
    pub reports: Vec<ProjectReport>,
    /// How they were discovered.
    pub discovery: Discovery,
}

/// Discovers the projects of `projects` and `roots`: folders and organizations through a Cloud Asset
/// Inventory snapshot first (unless `asset_inventory` is off), whose projects it can report come with
/// their reports and whose suspects are checked live; without Cloud Asset access every project is checked
/// live, and that is said once in the log.
pub async fn discover(
    remediator: &Remediator,
    projects: &[String],
    roots: &[ResourceRef],
    asset_inventory: bool,
) -> Result<Discovered, ApiError> {
    let per_project = |live, failures, reason| Discovered {
        live,
        failures,
        reports: Vec::new(),
        discovery: Discovery::PerProject { reason },
    };
    if roots.is_empty() || !asset_inventory {
        let (live, failures) = remediator.resolve(projects, roots).await?;
        let reason = (!roots.is_empty()).then(|| "turned off".to_owned());
        return Ok(per_project(live, failures, reason));
    }
    match survey(remediator, roots, &SnapshotSettings::default()).await {
        Ok(survey) => {
            let discovery = Discovery::of(&survey);
            let explicit = survey.uncovered(projects);
            let (mut live, failures) = remediator.resolve(&explicit, &[]).await?;
            for s in survey.suspects {
                tracing::debug!(project = %s.info.project_id, reason = %s.reason, "re-verifying live");
                live.push(s.info);
            }
            Ok(Discovered {
                live,
                failures,
                reports: survey.reports,
                discovery,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "Cloud Asset Inventory cannot be read: every project is checked live");
            let (live, failures) = remediator.resolve(projects, roots).await?;
            Ok(per_project(live, failures, Some(e.to_string())))
        }
    }
}

/// Reads the Cloud Asset Inventory snapshot of every root and evaluates each of its projects.
///
/// Fails when a listing fails (after the client's retries): the caller then uses the per-project
/// path for every project, as if no snapshot had been read.
pub async fn survey(
    remediator: &Remediator,
    roots: &[ResourceRef],
    settings: &SnapshotSettings,
) -> Result<Survey, ApiError> {
    let page_size = settings.page_size.clamp(1, PAGE_SIZE);
    let mut snapshot = Snapshot::default();
    for (i, root) in roots.iter().enumerate() {
        let (policies, resources) = futures::future::join(
            list_into(
                remediator,
                root,
                i,
                AssetContent::IamPolicy,
                &POLICY_TYPES,
                page_size,
            ),
            list_into(
                remediator,
                root,
                i,
                AssetContent::Resource,
                &RESOURCE_TYPES,
                page_size,
            ),
        )
        .await;
        merge(&mut snapshot, policies?);
        merge(&mut snapshot, resources?);
    }
    let now = remediator.options().context.clock.now();
    let stale = if snapshot.read_time_missing {
        Some("a snapshot page carried no readTime".to_owned())
    } else {
        snapshot.read_time.as_ref().and_then(|(at, t)| {
            let age = now.duration_since(*at).unwrap_or_default();
            (age > settings.max_age).then(|| {
                format!(
                    "the snapshot of {t} is {}s old (more than {}s)",
                    age.as_secs(),
                    settings.max_age.as_secs()
                )
            })
        })
    };
    let mut survey = Survey {
        read_time: snapshot.read_time.as_ref().map(|(_, t)| t.clone()),
        pages: snapshot.pages,
        ..Survey::default()
    };
    let projects = std::mem::take(&mut snapshot.projects);
    if let Some(reason) = &stale {
        survey.suspects = projects
            .into_values()
            .map(|(info, _, _)| Suspect {
                info,
                reason: reason.clone(),
            })
            .collect();
    } else {
        // Projects are judged concurrently (the live reads they need go through the client's rate
        // limits), beside the sweep's planned deny reads (polled first, so they take the budget).
        use futures::StreamExt;
        let snapshot = &snapshot;
        let plan: Vec<PlanProject> = projects
            .values()
            .map(|(info, ancestors, _)| PlanProject {
                project: info.project_id.clone(),
                point: format!("projects/{}", info.project_number),
                ancestors: ancestors
                    .iter()
                    .skip(1)
                    .filter_map(|a| ResourceRef::parse(a).ok())
                    .collect(),
                clusters: Some(
                    snapshot
                        .clusters
                        .get(info.project_id.as_str())
                        .is_some_and(|c| !c.is_empty()),
                ),
            })
            .collect();
        let reads = remediator.plan_deny_reads(&plan).await;
        let mut judged = futures::stream::iter(projects.into_values())
            .map(|(info, ancestors, root)| async move {
                let verdict =
                    judge(remediator, snapshot, &roots[root], &info, &ancestors, now).await;
                (info, verdict)
            })
            .buffered(remediator.options().settings.concurrency.max(1));
        let judge_all = async {
            while let Some((info, verdict)) = judged.next().await {
                match verdict {
                    Ok(report) => survey.reports.push(report),
                    Err(reason) => survey.suspects.push(Suspect { info, reason }),
                }
            }
        };
        tokio::join!(reads, judge_all);
    }
    tracing::info!(
        pages = survey.pages,
        from_snapshot = survey.reports.len(),
        suspects = survey.suspects.len(),
        read_time = survey.read_time.as_deref().unwrap_or("-"),
        "Cloud Asset Inventory snapshot evaluated"
    );
    Ok(survey)
}

/// The project's report from the snapshot when it is healthy and everything it needed was there;
/// otherwise why it must be re-verified live.
async fn judge(
    remediator: &Remediator,
    snapshot: &Snapshot,
    root: &ResourceRef,
    info: &ProjectInfo,
    ancestors: &[String],
    now: SystemTime,
) -> Result<ProjectReport, String> {
    let own = format!("projects/{}", info.project_number);
    if let Some(why) = ancestors
        .iter()
        .chain(std::iter::once(&own))
        .find_map(|a| snapshot.undecodable.get(a))
    {
        return Err(format!("{why} could not be decoded"));
    }
    let policy = snapshot
        .policies
        .get(&own)
        .cloned()
        .ok_or_else(|| "its IAM policy is not in the snapshot".to_owned())?;
    // Ancestors up to the root are in the snapshot (a resource without a policy asset has an empty
    // policy); above a folder root they are read live through the run's cache.
    let root_name = root.to_string();
    let mut in_scope = true;
    let mut chain = Vec::new();
    for name in ancestors.iter().skip(1) {
        let resource = ResourceRef::parse(name)
            .map_err(|e| format!("the ancestor {name} is not understood: {e}"))?;
        let policy = if in_scope {
            snapshot.policies.get(name).cloned().unwrap_or_default()
        } else {
            remediator
                .cached_ancestor_policy(&resource)
                .await
                .map_err(|e| format!("the policy of {name} could not be read: {e}"))?
        };
        if *name == root_name {
            in_scope = false;
        }
        chain.push((resource, policy));
    }
    if in_scope && !matches!(root, ResourceRef::Organization(_)) && !chain.is_empty() {
        return Err(format!("its ancestors in the snapshot do not reach {root}"));
    }
    let listed_clusters = snapshot
        .clusters
        .get(info.project_id.as_str())
        .is_some_and(|c| !c.is_empty());
    let container_api = if snapshot
        .services
        .contains(&(info.project_number.to_string(), CONTAINER.to_owned()))
    {
        ApiState::Enabled
    } else if listed_clusters {
        // A partial asset set: clusters without the service that runs them. Never "not using GKE".
        return Err(format!(
            "the snapshot lists clusters of {} but not {CONTAINER} among its enabled services",
            info.project_id
        ));
    } else if snapshot.services.is_empty() {
        // No enabled-service asset at all: whether the Container API is on cannot be told.
        return Err("the snapshot holds no enabled-service assets".to_owned());
    } else {
        ApiState::Disabled
    };
    let clusters = match container_api {
        // The per-project path sees no clusters when the API is off (the list call is refused).
        ApiState::Enabled => snapshot
            .clusters
            .get(info.project_id.as_str())
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let folders = chain
        .iter()
        .filter_map(|(r, _)| match r {
            ResourceRef::Folder(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    let mut state = ProjectState {
        project_id: info.project_id.clone(),
        project_number: info.project_number.clone(),
        folders,
        container_api,
        clusters,
        missing_zones: Vec::new(),
        policy,
        ancestors: chain,
        accounts: BTreeMap::new(),
        troubleshooter: BTreeMap::new(),
        restorations: BTreeMap::new(),
        unreadable: Vec::new(),
        read_at: now,
        access: Default::default(),
    };
    // Deny policies are not assets: they are read live exactly as the per-project path reads them
    // (through the run's cache and the process's, in the sweep's deny-read order if it keeps one),
    // for a project with clusters only (deny rules bear only on node accounts). As there, deny
    // policies not read make verdicts that would be `ok` incomplete. `quota_only`: every deny policy
    // not read was left unread by the IAM v2 read quota.
    let mut quota_only = true;
    if !state.clusters.is_empty() {
        let chain: Vec<ResourceRef> = state.ancestors.iter().map(|(r, _)| r.clone()).collect();
        let (facts, only_quota) = remediator
            .verifier()
            .read_access(info, &chain, None)
            .await
            .map_err(|e| format!("its deny policies could not be read: {e}"))?;
        state.access.deny_policies = facts.deny_policies;
        state.access.deny_unreadable = facts.deny_unreadable;
        quota_only = only_quota;
    }
    let options = remediator.options();
    state.accounts = accounts(snapshot, &state, &options.settings.checks)?;
    let mut catalog = RoleCatalog::default();
    for role in evaluate::roles_needed(&state) {
        let lookup = if role.as_str().starts_with("roles/") {
            remediator.cached_role(&role).await
        } else {
            snapshot
                .roles
                .get(&role)
                .cloned()
                .ok_or_else(|| format!("the custom role {role} is not in the snapshot"))?
        };
        if let RoleLookup::Unreadable(why) = &lookup {
            return Err(format!("the role {role} could not be read: {why}"));
        }
        catalog.insert(role, lookup);
    }
    let findings = evaluate::evaluate(&state, &catalog, &options.settings.checks);
    // Healthy but for deny policies the IAM v2 quota left unread: reported from the snapshot as
    // `incomplete`, as the per-project path reports it when the same budget is spent (re-verifying
    // live could read no more within the quota, and would cost a few calls per project).
    let unread_by_quota = !state.access.deny_unreadable.is_empty()
        && quota_only
        && healthy_if_read(&state, &catalog, &options.settings.checks);
    if !unread_by_quota && let Some(f) = findings.iter().find(|f| f.status != evaluate::Status::Ok)
    {
        return Err(format!(
            "the snapshot shows {} {} for {}",
            f.requirement.as_str(),
            f.status,
            f.principal
                .as_ref()
                .map(|p| p.as_str())
                .unwrap_or("the project")
        ));
    }
    let restorations = BTreeMap::new();
    let plan = plan::decide(
        &findings,
        &DecideContext {
            policy: &options.settings.policy,
            state: &state,
            writes_remaining: options.settings.policy.limits.max_writes_per_run,
            restorations: &restorations,
        },
    );
    let settled = |d: &Decision| match d {
        Decision::Healthy => true,
        Decision::NeedsReview { .. } => unread_by_quota,
        _ => false,
    };
    if !plan.actions.is_empty() || !plan.decisions.iter().all(settled) {
        return Err("the snapshot's plan is not empty".to_owned());
    }
    Ok(ProjectReport {
        project_id: info.project_id.to_string(),
        project_number: info.project_number.to_string(),
        gke: evaluate::is_gke_project(&state),
        folders: state.folders.clone(),
        policy_etag: state.policy.etag.clone(),
        flap_guard: None,
        findings: findings
            .into_iter()
            .zip(plan.decisions)
            .map(|(finding, decision)| FindingReport {
                outcome: match decision {
                    // As the per-project path reports a finding that needs review.
                    Decision::NeedsReview { .. } => Outcome::Unknown,
                    _ => Outcome::Healthy,
                },
                finding,
                decision,
            })
            .collect(),
        actions: Vec::new(),
        error: None,
    })
}

/// Whether every finding would be `ok` if the deny policies not read had been read and denied
/// nothing (the best they can do: a deny rule only takes access away).
fn healthy_if_read(
    state: &ProjectState,
    catalog: &RoleCatalog,
    checks: &BTreeSet<RequirementId>,
) -> bool {
    let ok = |s: &ProjectState| {
        evaluate::evaluate(s, catalog, checks)
            .iter()
            .all(|f| f.status == evaluate::Status::Ok)
    };
    if state.access.deny_unreadable.is_empty() {
        return ok(state);
    }
    let mut read = state.clone();
    read.access.deny_unreadable.clear();
    ok(&read)
}

/// The node service accounts' existence as the per-project path would find it, from the snapshot:
/// an account of a project in the snapshot is there or deleted; one of any other project is not
/// decidable (the project is a suspect).
fn accounts(
    snapshot: &Snapshot,
    state: &ProjectState,
    checks: &BTreeSet<RequirementId>,
) -> Result<BTreeMap<ServiceAccountEmail, AccountState>, String> {
    let node_sas = evaluate::node_service_accounts(state);
    let mut out = BTreeMap::new();
    if node_sas.is_empty() || !checks.contains(&RequirementId::NodeSaExists) {
        for sa in node_sas {
            out.insert(sa.email, AccountState::Active { unique_id: None });
        }
        return Ok(out);
    }
    let policies: Vec<&Policy> = std::iter::once(&state.policy)
        .chain(state.ancestors.iter().map(|(_, p)| p))
        .collect();
    let deleted = evaluate::deleted_accounts(&policies);
    for sa in node_sas {
        let email = sa.email.as_str().to_ascii_lowercase();
        let account = match snapshot.accounts.get(&email) {
            Some((_, a)) if a.disabled => AccountState::Disabled {
                unique_id: a.unique_id.clone(),
            },
            Some((_, a)) => AccountState::Active {
                unique_id: a.unique_id.clone(),
            },
            None => {
                let home = email
                    .split_once('@')
                    .and_then(|(_, d)| d.strip_suffix(".iam.gserviceaccount.com"));
                let compute_default = ServiceAccountEmail::compute_default(&state.project_number);
                let listed = sa.email == compute_default
                    || home.is_some_and(|p| snapshot.projects.contains_key(p));
                if !listed {
                    return Err(format!(
                        "the node service account {email} belongs to a project outside the snapshot"
                    ));
                }
                AccountState::Deleted {
                    unique_id: deleted.get(&sa.email).cloned(),
                }
            }
        };
        out.insert(sa.email, account);
    }
    Ok(out)
}
