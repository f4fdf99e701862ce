//! Typed adapters for the Google REST methods the remediator calls, over [`Client`].
//!
//! Wire models follow the discovery documents (field names exactly as Google's); each method names
//! the permission it needs so a 403 can say which one the caller lacks.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::client::{Call, Client};
use super::pages::{MAX_PAGES, Page, PageCap, pages};
use crate::bounded::BoundedMap;
use crate::domain::iam::{Member, Policy, ProjectId, ProjectNumber, ResourceRef, Role};
use crate::domain::state::{Cluster, NodePool, Restorations, RoleLookup, Troubleshot};
use crate::ports::{
    AUDIT_LOG_BATCH, Api, ApiError, ClusterList, DIAGNOSIS_RECOMMENDER, NODE_SA_SUBTYPE,
    OwnRestoration, ProjectInfo, Recommendation, RecommendationMark, ServiceAccount,
};

// The recommender's wire verbs for each mark (a wire detail, so kept here).
impl RecommendationMark {
    fn verb(self) -> &'static str {
        match self {
            Self::Claimed => "markClaimed",
            Self::Succeeded => "markSucceeded",
            Self::Failed => "markFailed",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Self::Claimed => "recommendations.markClaimed",
            Self::Succeeded => "recommendations.markSucceeded",
            Self::Failed => "recommendations.markFailed",
        }
    }
}

/// A Container v1 `Cluster` (the fields the checks read), from `clusters.list` or a Cloud Asset
/// `resource.data`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Config {
    #[serde(default)]
    service_account: String,
}
#[derive(Deserialize)]
pub(super) struct Pool {
    name: String,
    #[serde(default)]
    config: Config,
}
#[derive(Deserialize, Default)]
pub(super) struct Autopilot {
    #[serde(default)]
    enabled: bool,
}
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Autoscaling {
    #[serde(default)]
    enable_node_autoprovisioning: bool,
    #[serde(default)]
    autoprovisioning_node_pool_defaults: Option<Config>,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawCluster {
    name: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    autopilot: Autopilot,
    #[serde(default)]
    autoscaling: Autoscaling,
    #[serde(default)]
    node_pools: Vec<Pool>,
}

impl RawCluster {
    /// The cluster reduced to what the checks read.
    pub(super) fn into_cluster(self) -> Cluster {
        let autopilot = self.autopilot.enabled;
        let nap = self.autoscaling.enable_node_autoprovisioning || autopilot;
        Cluster {
            name: self.name,
            location: self.location,
            autopilot,
            node_pools: self
                .node_pools
                .into_iter()
                .map(|p| NodePool {
                    name: p.name,
                    service_account: p.config.service_account,
                })
                .collect(),
            autoprovisioning_service_account: if nap {
                Some(
                    self.autoscaling
                        .autoprovisioning_node_pool_defaults
                        .unwrap_or_default()
                        .service_account,
                )
            } else {
                None
            },
        }
    }
}

/// The Google APIs the remediator uses.
#[derive(Clone, Debug)]
pub struct Gcp {
    client: Arc<Client>,
    /// Cloud Identity group ids by group email (`groups:lookup` answers), shared by clones; the
    /// oldest forgotten past [`GROUP_ID_CACHE`](super::access::GROUP_ID_CACHE) groups.
    pub(crate) group_ids: Arc<std::sync::Mutex<BoundedMap<String, String>>>,
}

pub(super) fn get(
    api: Api,
    method: &'static str,
    permission: &'static str,
    path: String,
) -> Call<'static, ()> {
    Call {
        api,
        method,
        permission,
        http_method: Method::GET,
        path,
        query: Vec::new(),
        body: None,
    }
}

fn post<'a, B: serde::Serialize>(
    api: Api,
    method: &'static str,
    permission: &'static str,
    path: String,
    body: &'a B,
) -> Call<'a, B> {
    Call {
        api,
        method,
        permission,
        http_method: Method::POST,
        path,
        query: Vec::new(),
        body: Some(body),
    }
}

fn parse_parent(kind: &str, id: &str) -> Option<ResourceRef> {
    match kind {
        "folder" | "folders" => ResourceRef::parse(&format!("folders/{id}")).ok(),
        "organization" | "organizations" => ResourceRef::parse(&format!("organizations/{id}")).ok(),
        _ => None,
    }
}

fn parse_parent_name(name: &str) -> Option<ResourceRef> {
    let (kind, id) = name.split_once('/')?;
    parse_parent(kind, id)
}

fn bad(api: Api, method: &'static str, message: String) -> ApiError {
    ApiError::Decode {
        api,
        method,
        message,
    }
}

impl Gcp {
    /// Wraps a client.
    pub fn new(client: Arc<Client>) -> Self {
        Self {
            client,
            group_ids: Arc::new(std::sync::Mutex::new(BoundedMap::new(
                super::access::GROUP_ID_CACHE,
            ))),
        }
    }

    /// The underlying client (for counters).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `GET v1/projects/{id}`: number and parent.
    pub async fn get_project(&self, id: &str) -> Result<ProjectInfo, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Parent {
            r#type: String,
            id: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Project {
            project_id: String,
            project_number: String,
            #[serde(default)]
            parent: Option<Parent>,
        }
        const M: &str = "projects.get";
        let p: Project = self
            .client
            .send(get(
                Api::ResourceManager,
                M,
                "resourcemanager.projects.get",
                format!("v1/projects/{id}"),
            ))
            .await?;
        Ok(ProjectInfo {
            project_id: ProjectId::parse(&p.project_id)
                .map_err(|e| bad(Api::ResourceManager, M, e.to_string()))?,
            project_number: ProjectNumber::parse(&p.project_number)
                .map_err(|e| bad(Api::ResourceManager, M, e.to_string()))?,
            parent: p.parent.and_then(|p| parse_parent(&p.r#type, &p.id)),
            ancestors: Vec::new(),
        }
        .with_parent_as_ancestor())
    }

    /// A project by id (v1 `projects.get`) or by number (v3 `projects.get`, which names it
    /// `projects/NUMBER`).
    pub async fn get_project_by_id_or_number(&self, key: &str) -> Result<ProjectInfo, ApiError> {
        if !key.bytes().all(|b| b.is_ascii_digit()) {
            return self.get_project(key).await;
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Project {
            name: String,
            project_id: String,
            #[serde(default)]
            parent: String,
        }
        const M: &str = "projects.get";
        let p: Project = self
            .client
            .send(get(
                Api::ResourceManager,
                M,
                "resourcemanager.projects.get",
                format!("v3/projects/{key}"),
            ))
            .await?;
        let number = p.name.strip_prefix("projects/").unwrap_or(&p.name);
        Ok(ProjectInfo {
            project_id: ProjectId::parse(&p.project_id)
                .map_err(|e| bad(Api::ResourceManager, M, e.to_string()))?,
            project_number: ProjectNumber::parse(number)
                .map_err(|e| bad(Api::ResourceManager, M, e.to_string()))?,
            parent: parse_parent_name(&p.parent),
            ancestors: Vec::new(),
        }
        .with_parent_as_ancestor())
    }

    /// `GET v3/folders/{id}`: the folder's parent.
    pub async fn get_folder_parent(
        &self,
        folder_id: &str,
    ) -> Result<Option<ResourceRef>, ApiError> {
        #[derive(Deserialize)]
        struct Folder {
            #[serde(default)]
            parent: String,
        }
        let f: Folder = self
            .client
            .send(get(
                Api::ResourceManager,
                "folders.get",
                "resourcemanager.folders.get",
                format!("v3/folders/{folder_id}"),
            ))
            .await?;
        Ok(parse_parent_name(&f.parent))
    }

    /// Every project under a folder or organization, recursively (v3 `projects.list` and
    /// `folders.list` with `parent=`).
    pub async fn list_projects_under(
        &self,
        root: &ResourceRef,
    ) -> Result<Vec<ProjectInfo>, ApiError> {
        // Level by level: every folder of a level is listed at once (projects and subfolders of each
        // concurrently, at most WALK_CONCURRENCY folders in flight; the client's rate limits pace the
        // calls), in a fixed order, so the result does not depend on which answer came first.
        const WALK_CONCURRENCY: usize = 16;
        let mut out: Vec<ProjectInfo> = Vec::new();
        let mut level = vec![root.clone()];
        let mut seen = std::collections::HashSet::new();
        // Each folder found, with the parent it was listed under: every project's chain up to the root.
        let mut parent_of: std::collections::HashMap<ResourceRef, ResourceRef> =
            std::collections::HashMap::new();
        while !level.is_empty() {
            let listed: Vec<_> = futures::stream::iter(std::mem::take(&mut level))
                .map(|parent| async move {
                    let (projects, folders) = futures::future::try_join(
                        self.list_direct_projects(&parent),
                        self.list_direct_folders(&parent),
                    )
                    .await?;
                    Ok::<_, ApiError>((parent, projects, folders))
                })
                .buffered(WALK_CONCURRENCY)
                .collect()
                .await;
            let mut next = Vec::new();
            for result in listed {
                let (parent, projects, folders) = result?;
                out.extend(projects);
                for f in folders.into_iter().filter(|f| seen.insert(f.clone())) {
                    parent_of.insert(f.clone(), parent.clone());
                    next.push(f);
                }
            }
            level = next;
        }
        for p in &mut out {
            let mut chain: Vec<ResourceRef> = p.parent.iter().cloned().collect();
            while let Some(up) = chain.last().and_then(|last| parent_of.get(last)) {
                if chain.contains(up) || chain.len() > 32 {
                    break;
                }
                chain.push(up.clone());
            }
            p.ancestors = chain;
        }
        Ok(out)
    }

    async fn list_direct_projects(
        &self,
        parent: &ResourceRef,
    ) -> Result<Vec<ProjectInfo>, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Project {
            name: String,
            project_id: String,
            #[serde(default)]
            parent: String,
            #[serde(default)]
            state: String,
        }
        const M: &str = "projects.list";
        let projects: Vec<Project> = self
            .list_all(
                || {
                    let mut c = get(
                        Api::ResourceManager,
                        M,
                        "resourcemanager.projects.list",
                        "v3/projects".to_owned(),
                    );
                    c.query = vec![
                        ("parent", parent.to_string()),
                        ("pageSize", "500".to_owned()),
                    ];
                    c
                },
                "projects",
            )
            .await?;
        let mut out = Vec::new();
        for p in projects
            .into_iter()
            .filter(|p| p.state.is_empty() || p.state == "ACTIVE")
        {
            let number = p.name.strip_prefix("projects/").unwrap_or(&p.name);
            out.push(
                ProjectInfo {
                    project_id: ProjectId::parse(&p.project_id)
                        .map_err(|e| bad(Api::ResourceManager, M, e.to_string()))?,
                    project_number: ProjectNumber::parse(number)
                        .map_err(|e| bad(Api::ResourceManager, M, e.to_string()))?,
                    parent: parse_parent_name(&p.parent),
                    ancestors: Vec::new(),
                }
                .with_parent_as_ancestor(),
            );
        }
        Ok(out)
    }

    async fn list_direct_folders(
        &self,
        parent: &ResourceRef,
    ) -> Result<Vec<ResourceRef>, ApiError> {
        #[derive(Deserialize)]
        struct Folder {
            name: String,
        }
        let folders: Vec<Folder> = self
            .list_all(
                || {
                    let mut c = get(
                        Api::ResourceManager,
                        "folders.list",
                        "resourcemanager.folders.list",
                        "v3/folders".to_owned(),
                    );
                    c.query = vec![
                        ("parent", parent.to_string()),
                        ("pageSize", "500".to_owned()),
                    ];
                    c
                },
                "folders",
            )
            .await?;
        Ok(folders
            .iter()
            .filter_map(|f| ResourceRef::parse(&f.name).ok())
            .collect())
    }

    /// Every page of a `GET` list call ([`pages`], its `pageToken` in the query), collecting the
    /// `items` array of each.
    async fn list_all<T: serde::de::DeserializeOwned>(
        &self,
        call: impl Fn() -> Call<'static, ()>,
        items: &'static str,
    ) -> Result<Vec<T>, ApiError> {
        let (api, method) = {
            let c = call();
            (c.api, c.method)
        };
        pages(api, method, PageCap::Fail(MAX_PAGES), |token| {
            let mut c = call();
            if let Some(token) = token {
                c.query.push(("pageToken", token));
            }
            async move {
                let mut page: serde_json::Value = self.client.send(c).await?;
                let items: Vec<T> = match page.get_mut(items).map(serde_json::Value::take) {
                    Some(list) => serde_json::from_value(list)
                        .map_err(|e| bad(api, method, format!("at `{items}`: {e}")))?,
                    None => Vec::new(),
                };
                let next = page
                    .get("nextPageToken")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned);
                Ok(Page { items, next })
            }
        })
        .await
    }

    /// `getIamPolicy` at version 3 on a project (v1), folder (v3) or organization (v1).
    pub async fn get_iam_policy(&self, resource: &ResourceRef) -> Result<Policy, ApiError> {
        let body = json!({"options": {"requestedPolicyVersion": 3}});
        let (path, permission) = match resource {
            ResourceRef::Project(p) => (
                format!("v1/projects/{p}:getIamPolicy"),
                "resourcemanager.projects.getIamPolicy",
            ),
            ResourceRef::Folder(f) => (
                format!("v3/folders/{f}:getIamPolicy"),
                "resourcemanager.folders.getIamPolicy",
            ),
            ResourceRef::Organization(o) => (
                format!("v1/organizations/{o}:getIamPolicy"),
                "resourcemanager.organizations.getIamPolicy",
            ),
        };
        self.client
            .send(post(
                Api::ResourceManager,
                "getIamPolicy",
                permission,
                path,
                &body,
            ))
            .await
    }

    /// `setIamPolicy` on a project with the policy's etag and version 3.
    pub async fn set_project_iam_policy(
        &self,
        project: &ProjectId,
        policy: &Policy,
    ) -> Result<Policy, ApiError> {
        let mut policy = policy.clone();
        policy.version = 3;
        let body = json!({"policy": policy});
        self.client
            .send(post(
                Api::ResourceManager,
                "projects.setIamPolicy",
                "resourcemanager.projects.setIamPolicy",
                format!("v1/projects/{project}:setIamPolicy"),
                &body,
            ))
            .await
    }

    /// `roles.get` for a predefined or custom role. 404 means the role does not exist.
    pub async fn get_role(&self, role: &Role) -> RoleLookup {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct RoleDef {
            #[serde(default)]
            included_permissions: Vec<String>,
            #[serde(default)]
            deleted: bool,
        }
        let result: Result<RoleDef, ApiError> = self
            .client
            .send(get(
                Api::Iam,
                "roles.get",
                "iam.roles.get",
                format!("v1/{role}"),
            ))
            .await;
        match result {
            Ok(def) if def.deleted => RoleLookup::NotFound,
            Ok(def) => RoleLookup::Found(def.included_permissions.into_iter().collect()),
            Err(e) if e.is_not_found() => RoleLookup::NotFound,
            Err(e) => RoleLookup::Unreadable(e.to_string()),
        }
    }

    /// Every service account of a project (deleted accounts are not listed).
    pub async fn list_service_accounts(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<ServiceAccount>, ApiError> {
        self.list_all(
            || {
                let mut c = get(
                    Api::Iam,
                    "serviceAccounts.list",
                    "iam.serviceAccounts.list",
                    format!("v1/projects/{project}/serviceAccounts"),
                );
                c.query = vec![("pageSize", "100".to_owned())];
                c
            },
            "accounts",
        )
        .await
    }

    /// `serviceAccounts.get` under `projects/-`; `None` when it does not exist (404, or 403 which IAM
    /// answers for a missing account under `projects/-`).
    pub async fn get_service_account(
        &self,
        email: &str,
    ) -> Result<Option<ServiceAccount>, ApiError> {
        let read = |project: &str| {
            self.client.send::<(), ServiceAccount>(get(
                Api::Iam,
                "serviceAccounts.get",
                "iam.serviceAccounts.get",
                format!("v1/projects/{project}/serviceAccounts/{email}"),
            ))
        };
        match read("-").await {
            Ok(sa) => Ok(Some(sa)),
            Err(e) if e.is_not_found() => Ok(None),
            // Through `projects/-` Google answers 403 for an account that does not exist (it
            // cannot check a permission on it): ask again in the account's own project, where
            // absence is 404 and a 403 is a real refusal.
            Err(e) if e.code() == Some(403) => match project_of_account(email) {
                Some(project) => match read(&project).await {
                    Ok(sa) => Ok(Some(sa)),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                },
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// `serviceAccounts.enable`.
    pub async fn enable_service_account(&self, email: &str) -> Result<(), ApiError> {
        let _: serde_json::Value = self
            .client
            .send(post(
                Api::Iam,
                "serviceAccounts.enable",
                "iam.serviceAccounts.enable",
                format!("v1/projects/-/serviceAccounts/{email}:enable"),
                &json!({}),
            ))
            .await?;
        Ok(())
    }

    /// `serviceAccounts.undelete` by unique id.
    pub async fn undelete_service_account(&self, unique_id: &str) -> Result<(), ApiError> {
        let _: serde_json::Value = self
            .client
            .send(post(
                Api::Iam,
                "serviceAccounts.undelete",
                "iam.serviceAccounts.undelete",
                format!("v1/projects/-/serviceAccounts/{unique_id}:undelete"),
                &json!({}),
            ))
            .await?;
        Ok(())
    }

    /// Clusters in all locations (`locations/-`). A 403 `SERVICE_DISABLED` is returned as an error the
    /// caller can recognise with [`ApiError::is_service_disabled`].
    pub async fn list_clusters(&self, project: &ProjectId) -> Result<ClusterList, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct List {
            #[serde(default)]
            clusters: Vec<RawCluster>,
            #[serde(default)]
            missing_zones: Vec<String>,
        }
        let list: List = self
            .client
            .send(get(
                Api::Container,
                "clusters.list",
                "container.clusters.list",
                format!("v1/projects/{project}/locations/-/clusters"),
            ))
            .await?;
        let clusters = list
            .clusters
            .into_iter()
            .map(RawCluster::into_cluster)
            .collect();
        Ok(ClusterList {
            clusters,
            missing_zones: list.missing_zones,
        })
    }

    /// Whether a service is enabled (`services.get`).
    pub async fn service_enabled(
        &self,
        project: &ProjectId,
        service: &str,
    ) -> Result<bool, ApiError> {
        #[derive(Deserialize)]
        struct Service {
            #[serde(default)]
            state: String,
        }
        let s: Service = self
            .client
            .send(get(
                Api::ServiceUsage,
                "services.get",
                "serviceusage.services.get",
                format!("v1/projects/{project}/services/{service}"),
            ))
            .await?;
        Ok(s.state == "ENABLED")
    }

    /// `services.enable`: the answer is a long-running operation, polled (`operations.get`, up to 60
    /// times, 1 s apart) until it is done; the service is enabled only then. A done operation carrying
    /// an `error` is a failure.
    pub async fn enable_service(&self, project: &ProjectId, service: &str) -> Result<(), ApiError> {
        let mut op: serde_json::Value = self
            .client
            .send(post(
                Api::ServiceUsage,
                "services.enable",
                "serviceusage.services.enable",
                format!("v1/projects/{project}/services/{service}:enable"),
                &json!({}),
            ))
            .await?;
        for _ in 0..60 {
            if op["done"] == true {
                break;
            }
            let Some(name) = op["name"].as_str().map(str::to_owned) else {
                return Err(bad(
                    Api::ServiceUsage,
                    "services.enable",
                    "operation without a name".into(),
                ));
            };
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            op = self
                .client
                .send(get(
                    Api::ServiceUsage,
                    "operations.get",
                    "serviceusage.services.enable",
                    format!("v1/{name}"),
                ))
                .await?;
        }
        if op["done"] != true {
            return Err(bad(
                Api::ServiceUsage,
                "services.enable",
                "the operation was not done after 60 polls".into(),
            ));
        }
        if let Some(e) = op.get("error") {
            return Err(bad(
                Api::ServiceUsage,
                "services.enable",
                format!("the operation failed: {e}"),
            ));
        }
        Ok(())
    }

    /// Policy Troubleshooter v3: can `email` use `permission` on the project?
    pub async fn troubleshoot(
        &self,
        email: &str,
        project: &ProjectId,
        permission: &str,
    ) -> Result<Troubleshot, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            #[serde(default)]
            overall_access_state: String,
        }
        let body = json!({"accessTuple": {
            "principal": email,
            "fullResourceName": format!("//cloudresourcemanager.googleapis.com/projects/{project}"),
            "permission": permission,
        }});
        let a: Answer = self
            .client
            .send(post(
                Api::PolicyTroubleshooter,
                "iam.troubleshoot",
                "iam.roles.get",
                "v3/iam:troubleshoot".to_owned(),
                &body,
            ))
            .await?;
        Ok(match a.overall_access_state.as_str() {
            "CAN_ACCESS" => Troubleshot::Granted,
            "CANNOT_ACCESS" => Troubleshot::NotGranted,
            _ => Troubleshot::Unknown,
        })
    }

    /// `recommendations.list` of `google.container.DiagnosisRecommender` in one location.
    pub async fn list_node_sa_recommendations(
        &self,
        project: &ProjectId,
        location: &str,
    ) -> Result<Vec<Recommendation>, ApiError> {
        let all: Vec<Recommendation> = self
            .list_all(
                || {
                    let mut c = get(
                        Api::Recommender,
                        "recommendations.list",
                        "recommender.containerDiagnosisRecommendations.list",
                        format!(
                            "v1/projects/{project}/locations/{location}/recommenders/{DIAGNOSIS_RECOMMENDER}/recommendations"
                        ),
                    );
                    c.query = vec![("filter", format!("recommenderSubtype = {NODE_SA_SUBTYPE}"))];
                    c
                },
                "recommendations",
            )
            .await?;
        Ok(all
            .into_iter()
            .filter(|r| r.recommender_subtype == NODE_SA_SUBTYPE)
            .collect())
    }

    /// `recommendations.get`.
    pub async fn get_recommendation(&self, name: &str) -> Result<Recommendation, ApiError> {
        recommendation_name(name, "recommendations.get")?;
        self.client
            .send(get(
                Api::Recommender,
                "recommendations.get",
                "recommender.containerDiagnosisRecommendations.get",
                format!("v1/{name}"),
            ))
            .await
    }

    /// `recommendations.markClaimed` / `markSucceeded` / `markFailed` with the etag read.
    pub async fn mark_recommendation(
        &self,
        name: &str,
        verb: RecommendationMark,
        etag: &str,
        metadata: &[(&str, &str)],
    ) -> Result<Recommendation, ApiError> {
        recommendation_name(name, "recommendations.mark")?;
        let state_metadata: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let body = json!({"etag": etag, "stateMetadata": state_metadata});
        self.client
            .send(post(
                Api::Recommender,
                verb.method(),
                "recommender.containerDiagnosisRecommendations.update",
                format!("v1/{name}:{}", verb.verb()),
                &body,
            ))
            .await
    }

    /// The bindings the remediator itself added to a project since `since` (RFC 3339), newest first,
    /// from the project's Admin Activity audit log (`logging.entries.list`): a record shared by every
    /// instance, so the flapping limit holds across a scaled-out service and a restoration whose
    /// notification was lost can be found again.
    pub async fn own_restorations(
        &self,
        project: &ProjectId,
        self_email: &str,
        since: &str,
    ) -> Result<Vec<OwnRestoration>, ApiError> {
        // Newest first: when there are more pages than the cap, the newest are the ones needed.
        let mut read = self
            .own_restorations_in(
                std::slice::from_ref(project),
                self_email,
                since,
                PageCap::Keep(MAX_AUDIT_PAGES),
            )
            .await?;
        Ok(read.remove(project).unwrap_or_default())
    }

    /// How many times `self_email` restored each binding of each project since `since`: one
    /// `entries.list` per [`AUDIT_LOG_BATCH`] projects (their names in `resourceNames`, their audit
    /// logs OR-ed in the filter). An answer cut short by the page cap is an error, never a count
    /// lower than the log's.
    pub async fn count_own_restorations(
        &self,
        projects: &[ProjectId],
        self_email: &str,
        since: &str,
    ) -> Result<BTreeMap<ProjectId, Restorations>, ApiError> {
        let mut out = BTreeMap::new();
        for batch in projects.chunks(AUDIT_LOG_BATCH) {
            let read = self
                .own_restorations_in(batch, self_email, since, PageCap::Fail(MAX_AUDIT_PAGES))
                .await?;
            for project in batch {
                let mut counts = Restorations::new();
                for r in read.get(project).into_iter().flatten() {
                    *counts
                        .entry((r.role.clone(), r.member.clone()))
                        .or_default() += 1;
                }
                out.insert(project.clone(), counts);
            }
        }
        Ok(out)
    }

    /// Our own restorations on each of `projects` (at most [`AUDIT_LOG_BATCH`]), newest first, from
    /// at most `cap` pages.
    async fn own_restorations_in(
        &self,
        projects: &[ProjectId],
        self_email: &str,
        since: &str,
        cap: PageCap,
    ) -> Result<BTreeMap<ProjectId, Vec<OwnRestoration>>, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct WirePage {
            #[serde(default)]
            entries: Vec<serde_json::Value>,
            #[serde(default)]
            next_page_token: String,
        }
        let logs: Vec<String> = projects
            .iter()
            .map(|p| format!("logName=\"projects/{p}/logs/cloudaudit.googleapis.com%2Factivity\""))
            .collect();
        let filter = format!(
            "({}) AND protoPayload.methodName=\"SetIamPolicy\" AND \
             protoPayload.authenticationInfo.principalEmail=\"{self_email}\" AND timestamp>=\"{since}\"",
            logs.join(" OR ")
        );
        let resource_names: Vec<String> =
            projects.iter().map(|p| format!("projects/{p}")).collect();
        let (filter, resource_names) = (&filter, &resource_names);
        let restorations = pages(Api::Logging, "entries.list", cap, |token| async move {
            let mut body = json!({
                "resourceNames": resource_names,
                "filter": filter,
                "orderBy": "timestamp desc",
                "pageSize": 1000,
            });
            if let Some(token) = token {
                body["pageToken"] = json!(token);
            }
            let page: WirePage = self
                .client
                .send(post(
                    Api::Logging,
                    "entries.list",
                    "logging.logEntries.list",
                    "v2/entries:list".to_owned(),
                    &body,
                ))
                .await?;
            Ok(Page {
                items: page
                    .entries
                    .iter()
                    .flat_map(|entry| restorations_of(entry, projects))
                    .collect(),
                next: Some(page.next_page_token),
            })
        })
        .await?;
        let mut out: BTreeMap<ProjectId, Vec<OwnRestoration>> = BTreeMap::new();
        for (project, restoration) in restorations {
            out.entry(project).or_default().push(restoration);
        }
        Ok(out)
    }
}

/// The bindings one `SetIamPolicy` audit-log entry added, on the project (one of `projects`) whose
/// audit log holds it.
fn restorations_of(
    entry: &serde_json::Value,
    projects: &[ProjectId],
) -> Vec<(ProjectId, OwnRestoration)> {
    // The project whose audit log holds the entry (`projects/P/logs/...`).
    let Some(project) = entry["logName"]
        .as_str()
        .and_then(|n| n.strip_prefix("projects/"))
        .and_then(|n| n.split('/').next())
        .and_then(|p| projects.iter().find(|q| q.as_str() == p))
    else {
        return Vec::new();
    };
    let payload = &entry["protoPayload"];
    let etag_after = payload
        .pointer("/response/etag")
        .and_then(|e| e.as_str())
        .map(str::to_owned);
    let timestamp = entry["timestamp"].as_str().unwrap_or_default().to_owned();
    let deltas = payload
        .pointer("/serviceData/policyDelta/bindingDeltas")
        .or_else(|| payload.pointer("/metadata/policyDelta/bindingDeltas"))
        .and_then(|d| d.as_array());
    let mut out = Vec::new();
    for d in deltas.into_iter().flatten() {
        if d["action"] != "ADD" {
            continue;
        }
        let (Some(role), Some(member)) = (d["role"].as_str(), d["member"].as_str()) else {
            continue;
        };
        if let (Ok(role), Ok(member)) = (Role::parse(role), Member::parse(member)) {
            out.push((
                project.clone(),
                OwnRestoration {
                    role,
                    member,
                    etag_after: etag_after.clone(),
                    timestamp: timestamp.clone(),
                },
            ));
        }
    }
    out
}

/// Pages of 1,000 entries one audit-log read follows at most.
const MAX_AUDIT_PAGES: u32 = 20;

/// The project a service account's email names: `NAME@PROJECT.iam.gserviceaccount.com`,
/// `PROJECT@appspot.gserviceaccount.com`, `NUMBER-compute@developer.gserviceaccount.com`.
fn project_of_account(email: &str) -> Option<String> {
    let (local, domain) = email.split_once('@')?;
    let project = if let Some(p) = domain.strip_suffix(".iam.gserviceaccount.com") {
        p
    } else if domain == "appspot.gserviceaccount.com" {
        local
    } else if domain == "developer.gserviceaccount.com" {
        local.strip_suffix("-compute")?
    } else {
        return None;
    };
    (!project.is_empty()
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    .then(|| project.to_owned())
}

#[cfg(test)]
mod account_tests {
    use super::project_of_account;

    #[test]
    fn an_accounts_project_is_read_from_its_email() {
        assert_eq!(
            project_of_account("nodes@shop-prod.iam.gserviceaccount.com").as_deref(),
            Some("shop-prod")
        );
        assert_eq!(
            project_of_account("123-compute@developer.gserviceaccount.com").as_deref(),
            Some("123")
        );
        assert_eq!(
            project_of_account("shop@appspot.gserviceaccount.com").as_deref(),
            Some("shop")
        );
        assert_eq!(
            project_of_account("service-1@container-engine-robot.iam.gserviceaccount.com")
                .as_deref(),
            Some("container-engine-robot")
        );
        assert_eq!(project_of_account("x@example.com"), None);
        assert_eq!(project_of_account("a@p/../q.iam.gserviceaccount.com"), None);
    }
}

/// A recommendation's full name as Google writes it (`{projects|folders|organizations|billingAccounts}/
/// ID/locations/L/recommenders/R/recommendations/ID`), or why it is refused before anything is sent:
/// a name from a message must not be able to name another method (`:verb`) or resource.
fn recommendation_name(name: &str, method: &'static str) -> Result<(), ApiError> {
    let parts: Vec<&str> = name.split('/').collect();
    let shaped = parts.len() == 8
        && matches!(
            parts[0],
            "projects" | "folders" | "organizations" | "billingAccounts"
        )
        && parts[2] == "locations"
        && parts[4] == "recommenders"
        && parts[6] == "recommendations"
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && *p != "."
                && *p != ".."
        });
    match shaped {
        true => Ok(()),
        false => Err(ApiError::Invalid {
            api: Api::Recommender,
            method,
            message: format!("not a recommendation name: {name:?}"),
        }),
    }
}

#[cfg(test)]
mod recommendation_name_tests {
    use super::recommendation_name;

    #[test]
    fn only_a_recommendation_name_as_google_writes_it_reaches_a_url() {
        let good = "projects/shop-prod/locations/global/recommenders/google.container.DiagnosisRecommender/recommendations/abc-123";
        assert!(recommendation_name(good, "m").is_ok());
        for bad in [
            "projects/shop-prod/locations/global/recommenders/r/recommendations/x:markSucceeded",
            "projects/shop-prod/locations/global/recommenders/r/recommendations/x/extra",
            "projects/shop-prod/locations/global/recommenders/r/recommendations/..",
            "projects/shop-prod/locations/global/recommenders/r/recommendations/x?y=1",
            "users/me/locations/global/recommenders/r/recommendations/x",
            "projects/shop-prod/zones/global/recommenders/r/recommendations/x",
        ] {
            assert!(recommendation_name(bad, "m").is_err(), "{bad}");
        }
    }
}
