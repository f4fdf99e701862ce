//! Cloud Asset Inventory v1: `assets.list` (`GET /v1/{scope}/assets`) over the live state, for scopes
//! `organizations/N`, `folders/N` and `projects/ID|NUMBER`, with `contentType` `RESOURCE` / `IAM_POLICY`
//! (names or the integers GAPIC sends), `assetTypes` (repeated or comma-separated, RE2 patterns
//! anchored as Google anchors them; a pattern matching no type Google supports for the content type
//! is Google's 400, see `asset_types`), paging (`pageSize` default 100, at most 1,000) and `readTime`.
//! Parameters given in their proto spelling (`page_size`) arrive renamed by `schema::check_query`.
//!
//! The snapshot is the live state at the time of the call (the simulator keeps no history): a policy
//! written through `setIamPolicy` shows up in the next listing. Asset names, `ancestors` and the
//! resource payloads follow `reference/gcp-wire-formats-2.md` §3 (projects named by number, clusters
//! and service accounts by project id, clusters in the Container v1 `Cluster` shape). Only resources
//! whose IAM policy has a binding or an audit config have an `IAM_POLICY` asset.
//!
//! Access: `cloudasset.assets.listResource` / `listIamPolicy` (a denied permission answers Google's
//! 403), and the Cloud Asset API must be enabled in the consumer project: the project of the calling
//! service account when it is a project of the world (`cloudasset.googleapis.com` in its `services`),
//! else 403 `SERVICE_DISABLED`. Callers that are not service accounts of a world project have no
//! consumer project the world models, and are served.

use std::time::{Duration, SystemTime};

use http::Method;
use serde_json::{Value, json};

use super::asset_types;
use super::clock;
use super::container::cluster_json;
use super::error::{ApiError, ApiResult};
use super::paging;
use super::policy;
use super::server::{Ctx, Route, endpoint};
use super::state::{PolicyRef, State, now_rfc3339};

const API: &str = "cloudasset";
const SERVICE: &str = "cloudasset.googleapis.com";

const ORGANIZATION: &str = "cloudresourcemanager.googleapis.com/Organization";
const FOLDER: &str = "cloudresourcemanager.googleapis.com/Folder";
const PROJECT: &str = "cloudresourcemanager.googleapis.com/Project";
const CLUSTER: &str = "container.googleapis.com/Cluster";
const ROLE: &str = "iam.googleapis.com/Role";
const SERVICE_ACCOUNT: &str = "iam.googleapis.com/ServiceAccount";
const SERVICE_USAGE: &str = "serviceusage.googleapis.com/Service";

/// Every asset type the simulator holds, in the order listings return them (by type name).
const TYPES: [&str; 7] = [
    FOLDER,
    ORGANIZATION,
    PROJECT,
    CLUSTER,
    ROLE,
    SERVICE_ACCOUNT,
    SERVICE_USAGE,
];

/// The asset types that carry an IAM policy in the simulator.
const POLICY_TYPES: [&str; 3] = [FOLDER, ORGANIZATION, PROJECT];

/// Routes Cloud Asset paths.
pub fn route(method: &Method, segs: &[&str], verb: Option<&str>) -> Option<Route> {
    match (method.as_str(), segs, verb) {
        (
            "GET",
            [
                "v1",
                kind @ ("organizations" | "folders" | "projects"),
                id,
                "assets",
            ],
            None,
        ) => {
            let scope = format!("{kind}/{id}");
            endpoint(API, "cloudasset.assets.list", move |c, _| list(c, &scope))
        }
        _ => None,
    }
}

/// What the listing carries for each asset.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Content {
    /// Names only (`CONTENT_TYPE_UNSPECIFIED`).
    Names,
    /// `resource`.
    Resource,
    /// `iamPolicy`.
    IamPolicy,
    /// A content type the simulator holds no assets of (org policies, access policies, ...).
    Unmodelled(&'static str),
}

fn content(raw: Option<&str>) -> ApiResult<Content> {
    Ok(match raw.unwrap_or("") {
        "" | "0" | "CONTENT_TYPE_UNSPECIFIED" => Content::Names,
        "1" | "RESOURCE" => Content::Resource,
        "2" | "IAM_POLICY" => Content::IamPolicy,
        "4" | "ORG_POLICY" => Content::Unmodelled("ORG_POLICY"),
        "5" | "ACCESS_POLICY" => Content::Unmodelled("ACCESS_POLICY"),
        "6" | "OS_INVENTORY" => Content::Unmodelled("OS_INVENTORY"),
        "7" | "RELATIONSHIP" => Content::Unmodelled("RELATIONSHIP"),
        other => {
            return Err(ApiError::invalid(format!(
                "Invalid value at 'content_type' (type.googleapis.com/google.cloud.asset.v1.ContentType), \"{other}\""
            )));
        }
    })
}

/// The asset types selected by `assetTypes` (all when absent), in listing order. Each pattern must
/// match a type Google supports for the content type (see [`asset_types`]), else Google's 400.
fn selected_types(c: &Ctx<'_>, content: Content, scope: &str) -> ApiResult<Vec<&'static str>> {
    let patterns: Vec<String> = c
        .query
        .iter()
        .filter(|(k, _)| k == "assetTypes")
        .flat_map(|(_, v)| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if patterns.is_empty() {
        return Ok(TYPES.to_vec());
    }
    let (label, supported) = match content {
        Content::IamPolicy => ("IAM_POLICY", asset_types::IAM_POLICY),
        Content::Unmodelled(name) => (name, asset_types::RESOURCE),
        Content::Names | Content::Resource => ("RESOURCE", asset_types::RESOURCE),
    };
    let mut matchers = Vec::new();
    for p in &patterns {
        let re = regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
            ApiError::invalid(format!(
                "Invalid regular expression in asset_types: {p}: {e}"
            ))
        })?;
        if !supported.iter().any(|t| re.is_match(t)) {
            let message = format!(
                "No {label} found that matches asset type {p} for consumer project: {}. For a list of supported content types and asset types, see https://cloud.google.com/asset-inventory/docs/supported-asset-types",
                consumer_number(c, scope)
            );
            let mut e = ApiError::invalid(message.clone());
            e.details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "asset_types", "description": message}],
            }));
            return Err(e);
        }
        matchers.push(re);
    }
    Ok(TYPES
        .iter()
        .copied()
        .filter(|t| matchers.iter().any(|m| m.is_match(t)))
        .collect())
}

/// The number of the project Google bills the call to: the calling service account's project, else
/// the project listed, else the world's first project (a user's quota project is not modelled).
fn consumer_number(c: &Ctx<'_>, scope: &str) -> String {
    let own = c
        .caller
        .strip_prefix("serviceAccount:")
        .and_then(|e| e.split_once('@'))
        .and_then(|(_, d)| d.strip_suffix(".iam.gserviceaccount.com"));
    let listed = scope.strip_prefix("projects/");
    own.and_then(|p| c.st.project_idx(p))
        .or_else(|| listed.and_then(|p| c.st.project_idx(p)))
        .or_else(|| (!c.st.projects.is_empty()).then_some(0))
        .map_or_else(|| "0".to_owned(), |i| c.st.projects[i].number.clone())
}

/// `readTime`: at most 35 days back and not in the future (the simulator serves the live state).
fn read_time(c: &Ctx<'_>) -> ApiResult<String> {
    let Some(raw) = c.q("readTime").filter(|t| !t.is_empty()) else {
        return Ok(now_rfc3339());
    };
    let invalid = || ApiError::invalid(format!("Invalid value for read_time: \"{raw}\""));
    let nanos = clock::parse_instant(raw).ok_or_else(invalid)?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128;
    let window = Duration::from_secs(35 * 24 * 3600).as_nanos() as i128;
    if nanos > now + 5_000_000_000 || nanos < now - window {
        return Err(ApiError::invalid(
            "read_time must be between 35 days ago and now.",
        ));
    }
    Ok(raw.to_owned())
}

/// One asset of the listing, before rendering.
#[derive(Clone, Copy)]
enum Item {
    Organization,
    Folder(usize),
    Project(usize),
    Cluster(usize, usize),
    Role(Option<usize>, usize),
    ServiceAccount(usize, usize),
    Service(usize, usize),
}

/// Which resources a scope holds.
struct Scope {
    /// The organization itself.
    org: bool,
    /// Folder ids (sorted), the scope folder and every folder below it.
    folders: Vec<String>,
    /// Project indexes.
    projects: Vec<usize>,
}

fn scope_of(st: &State, scope: &str) -> ApiResult<Scope> {
    let missing = || {
        ApiError::denied_or_missing(format!(
            "The caller does not have permission on {scope} (or it may not exist)."
        ))
    };
    let under = |ancestors: &[PolicyRef], root: &PolicyRef| ancestors.contains(root);
    match scope.split_once('/').ok_or_else(missing)? {
        ("organizations", id) => {
            st.org.as_ref().filter(|o| o.id == id).ok_or_else(missing)?;
            Ok(Scope {
                org: true,
                folders: st.folders.keys().cloned().collect(),
                projects: (0..st.projects.len()).collect(),
            })
        }
        ("folders", id) => {
            if !st.folders.contains_key(id) {
                return Err(missing());
            }
            let root = PolicyRef::Folder(id.to_owned());
            let folders = st
                .folders
                .keys()
                .filter(|f| folder_chain(st, f).contains(&root))
                .cloned()
                .collect();
            let projects = (0..st.projects.len())
                .filter(|i| under(&st.ancestors(*i), &root))
                .collect();
            Ok(Scope {
                org: false,
                folders,
                projects,
            })
        }
        ("projects", key) => {
            let i = st.project_idx(key).ok_or_else(missing)?;
            Ok(Scope {
                org: false,
                folders: Vec::new(),
                projects: vec![i],
            })
        }
        _ => Err(missing()),
    }
}

/// A folder, then its parents bottom-up, then the organization.
fn folder_chain(st: &State, folder: &str) -> Vec<PolicyRef> {
    let mut out = Vec::new();
    let mut next = Some(format!("folders/{folder}"));
    while let Some(p) = next.take() {
        if out.len() > 1000 {
            break;
        }
        if let Some(id) = p.strip_prefix("folders/") {
            if let Some(f) = st.folders.get(id) {
                out.push(PolicyRef::Folder(id.to_owned()));
                next = Some(f.parent.clone());
            }
        } else if p.starts_with("organizations/") && st.org.is_some() {
            out.push(PolicyRef::Organization);
        }
    }
    out
}

fn ancestor_names(st: &State, chain: &[PolicyRef]) -> Vec<String> {
    chain
        .iter()
        .map(|r| match r {
            PolicyRef::Project(i) => format!("projects/{}", st.projects[*i].number),
            other => st.resource_name(other),
        })
        .collect()
}

fn has_policy(p: &super::model::Policy) -> bool {
    !p.bindings.is_empty() || !p.audit_configs.is_empty()
}

/// Every asset of the scope of the selected types and content, in listing order.
fn items(st: &State, scope: &Scope, types: &[&str], content: Content) -> Vec<Item> {
    let mut out = Vec::new();
    for t in types {
        if content == Content::IamPolicy && !POLICY_TYPES.contains(t) {
            continue;
        }
        let policy_ok = |p: &super::model::Policy| content != Content::IamPolicy || has_policy(p);
        match *t {
            ORGANIZATION if scope.org && st.org.as_ref().is_some_and(|o| policy_ok(&o.policy)) => {
                out.push(Item::Organization);
            }
            FOLDER => out.extend(
                scope
                    .folders
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| st.folders.get(*f).is_some_and(|f| policy_ok(&f.policy)))
                    .map(|(i, _)| Item::Folder(i)),
            ),
            PROJECT => out.extend(
                scope
                    .projects
                    .iter()
                    .filter(|i| policy_ok(&st.projects[**i].policy))
                    .map(|i| Item::Project(*i)),
            ),
            CLUSTER => {
                for &i in &scope.projects {
                    out.extend((0..st.projects[i].clusters.len()).map(|k| Item::Cluster(i, k)));
                }
            }
            ROLE => {
                if scope.org {
                    let n = st.org.as_ref().map_or(0, |o| o.custom_roles.len());
                    out.extend((0..n).map(|k| Item::Role(None, k)));
                }
                for &i in &scope.projects {
                    out.extend(
                        (0..st.projects[i].custom_roles.len()).map(|k| Item::Role(Some(i), k)),
                    );
                }
            }
            SERVICE_ACCOUNT => {
                for &i in &scope.projects {
                    out.extend(
                        st.projects[i]
                            .service_accounts
                            .iter()
                            .enumerate()
                            .filter(|(_, s)| s.deleted_at.is_none())
                            .map(|(k, _)| Item::ServiceAccount(i, k)),
                    );
                }
            }
            SERVICE_USAGE => {
                for &i in &scope.projects {
                    out.extend((0..st.projects[i].services.len()).map(|k| Item::Service(i, k)));
                }
            }
            _ => {}
        }
    }
    out
}

fn crm_name(resource: &str) -> String {
    format!("//cloudresourcemanager.googleapis.com/{resource}")
}

fn render(
    st: &State,
    scope: &Scope,
    item: Item,
    content: Content,
    update_time: &str,
) -> Option<Value> {
    let resource = |discovery: &str, uri: &str, parent: Option<String>, data: Value| {
        let mut r = json!({
            "version": "v1",
            "discoveryDocumentUri": uri,
            "discoveryName": discovery,
            "data": data,
        });
        if let Some(p) = parent {
            r["parent"] = json!(p);
        }
        r
    };
    let crm_doc = "https://cloudresourcemanager.googleapis.com/$discovery/rest";
    let project_parent = |i: usize| crm_name(&format!("projects/{}", st.projects[i].number));
    let (name, asset_type, ancestors, policy, res) = match item {
        Item::Organization => {
            let o = st.org.as_ref()?;
            let data = json!({
                "name": format!("organizations/{}", o.id),
                "displayName": o.display_name,
                "lifecycleState": "ACTIVE",
                "creationTime": "2024-01-15T10:00:00.000Z",
                "owner": {"directoryCustomerId": "C0sim0001"},
            });
            (
                crm_name(&format!("organizations/{}", o.id)),
                ORGANIZATION,
                vec![format!("organizations/{}", o.id)],
                Some(&o.policy),
                resource("Organization", crm_doc, None, data),
            )
        }
        Item::Folder(k) => {
            let f = st.folders.get(scope.folders.get(k)?)?;
            let chain = folder_chain(st, &f.id);
            let data = json!({
                "name": format!("folders/{}", f.id),
                "parent": f.parent,
                "displayName": f.display_name,
                "lifecycleState": "ACTIVE",
                "createTime": "2024-01-15T10:00:00.000Z",
            });
            (
                crm_name(&format!("folders/{}", f.id)),
                FOLDER,
                ancestor_names(st, &chain),
                Some(&f.policy),
                resource("Folder", crm_doc, Some(crm_name(&f.parent)), data),
            )
        }
        Item::Project(i) => {
            let p = &st.projects[i];
            (
                project_parent(i),
                PROJECT,
                ancestor_names(st, &st.ancestors(i)),
                Some(&p.policy),
                resource(
                    "Project",
                    crm_doc,
                    p.parent.as_deref().map(crm_name),
                    super::crm::project_v1(p),
                ),
            )
        }
        Item::Cluster(i, k) => {
            let p = &st.projects[i];
            let cl = p.clusters.get(k)?;
            let mut r = resource(
                "Cluster",
                "https://container.googleapis.com/$discovery/rest",
                Some(project_parent(i)),
                cluster_json(&p.id, cl),
            );
            r["location"] = json!(cl.location);
            (
                format!(
                    "//container.googleapis.com/projects/{}/locations/{}/clusters/{}",
                    p.id, cl.location, cl.name
                ),
                CLUSTER,
                ancestor_names(st, &st.ancestors(i)),
                None,
                r,
            )
        }
        Item::Role(owner, k) => {
            let (role, parent, chain) = match owner {
                None => {
                    let o = st.org.as_ref()?;
                    (
                        o.custom_roles.values().nth(k)?,
                        crm_name(&format!("organizations/{}", o.id)),
                        vec![PolicyRef::Organization],
                    )
                }
                Some(i) => (
                    st.projects[i].custom_roles.values().nth(k)?,
                    project_parent(i),
                    st.ancestors(i),
                ),
            };
            let data = json!({
                "name": role.name,
                "title": role.title,
                "description": role.description,
                "includedPermissions": role.included_permissions,
                "stage": role.stage,
                "etag": format!("{:016x}", super::state::stable_hash(&role.name)),
            });
            (
                format!("//iam.googleapis.com/{}", role.name),
                ROLE,
                ancestor_names(st, &chain),
                None,
                resource(
                    "Role",
                    "https://iam.googleapis.com/$discovery/rest",
                    Some(parent),
                    data,
                ),
            )
        }
        Item::ServiceAccount(i, k) => {
            let p = &st.projects[i];
            let sa = p.service_accounts.get(k)?;
            let mut data = json!({
                "name": format!("projects/{}/serviceAccounts/{}", p.id, sa.email),
                "projectId": p.id,
                "uniqueId": sa.unique_id,
                "email": sa.email,
                "oauth2ClientId": sa.unique_id,
            });
            if let Some(d) = &sa.display_name {
                data["displayName"] = json!(d);
            }
            if sa.disabled {
                data["disabled"] = json!(true);
            }
            (
                format!(
                    "//iam.googleapis.com/projects/{}/serviceAccounts/{}",
                    p.id, sa.unique_id
                ),
                SERVICE_ACCOUNT,
                ancestor_names(st, &st.ancestors(i)),
                None,
                resource(
                    "ServiceAccount",
                    "https://iam.googleapis.com/$discovery/rest",
                    Some(project_parent(i)),
                    data,
                ),
            )
        }
        Item::Service(i, k) => {
            let p = &st.projects[i];
            let service = p.services.iter().nth(k)?;
            let data = json!({
                "name": format!("projects/{}/services/{service}", p.number),
                "parent": format!("projects/{}", p.number),
                "config": {"name": service},
                "state": "ENABLED",
            });
            (
                format!(
                    "//serviceusage.googleapis.com/projects/{}/services/{service}",
                    p.number
                ),
                SERVICE_USAGE,
                ancestor_names(st, &st.ancestors(i)),
                None,
                resource(
                    "Service",
                    "https://serviceusage.googleapis.com/$discovery/rest",
                    Some(project_parent(i)),
                    data,
                ),
            )
        }
    };
    let mut v = json!({
        "name": name,
        "assetType": asset_type,
        "ancestors": ancestors,
        "updateTime": update_time,
    });
    match content {
        Content::Resource => v["resource"] = res,
        Content::IamPolicy => {
            let p = policy::render(policy?, 3);
            v["iamPolicy"] = serde_json::to_value(p).ok()?;
        }
        Content::Names | Content::Unmodelled(_) => {}
    }
    Some(v)
}

/// The consumer project's Cloud Asset API must be enabled (see the module notes).
fn check_enabled(c: &Ctx<'_>) -> ApiResult<()> {
    let Some(email) = c.caller.strip_prefix("serviceAccount:") else {
        return Ok(());
    };
    let Some(project) = email
        .split_once('@')
        .and_then(|(_, d)| d.strip_suffix(".iam.gserviceaccount.com"))
    else {
        return Ok(());
    };
    let Some(i) = c.st.project_idx(project) else {
        return Ok(());
    };
    let p = &c.st.projects[i];
    if p.id == project && !p.services.contains(SERVICE) {
        return Err(ApiError::service_disabled(
            SERVICE,
            "Cloud Asset API",
            &p.number,
        ));
    }
    Ok(())
}

fn list(c: &mut Ctx<'_>, scope: &str) -> ApiResult<Value> {
    let content = content(c.q("contentType"))?;
    c.require(match content {
        Content::IamPolicy => "cloudasset.assets.listIamPolicy",
        _ => "cloudasset.assets.listResource",
    })?;
    check_enabled(c)?;
    let types = selected_types(c, content, scope)?;
    let read_time = read_time(c)?;
    let sc = scope_of(c.st, scope)?;
    let all = if matches!(content, Content::Unmodelled(_)) {
        Vec::new()
    } else {
        items(c.st, &sc, &types, content)
    };
    let (range, next) = paging::window(
        c.q("pageSize"),
        c.q("pageToken"),
        all.len(),
        paging::Limits {
            default: 100,
            max: 1000,
        },
    )?;
    let assets: Vec<Value> = all[range]
        .iter()
        .filter_map(|item| render(c.st, &sc, *item, content, &read_time))
        .collect();
    let mut v = json!({"readTime": read_time});
    if !assets.is_empty() {
        v["assets"] = Value::Array(assets);
    }
    if let Some(t) = next {
        v["nextPageToken"] = json!(t);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::parse_query;
    use std::collections::BTreeSet;

    const WORLD: &str = r#"
organization:
  id: "100"
  iam_policy:
    bindings:
      - role: roles/viewer
        members: ["user:admin@example.com"]
  custom_roles:
    - name: organizations/100/roles/nodeMinimal
      included_permissions: [logging.logEntries.create]
folders:
  - id: "200"
    parent: organizations/100
    iam_policy:
      bindings:
        - role: roles/container.defaultNodeServiceAccount
          members: ["serviceAccount:nodes@shop.iam.gserviceaccount.com"]
  - id: "201"
    parent: folders/200
projects:
  - id: shop
    number: "300"
    parent: folders/201
    services: [container.googleapis.com, cloudasset.googleapis.com]
    iam_policy:
      bindings:
        - role: roles/owner
          members: ["user:admin@example.com"]
    service_accounts:
      - email: nodes@shop.iam.gserviceaccount.com
    clusters:
      - name: c1
        location: us-central1
        node_pools:
          - name: pool-1
            service_account: nodes@shop.iam.gserviceaccount.com
      - name: ap
        location: europe-west1
        autopilot: true
  - id: ops
    number: "301"
    parent: organizations/100
    iam_policy:
      bindings:
        - role: roles/owner
          members: ["user:admin@example.com"]
"#;

    fn state() -> State {
        State::from_world(&crate::world::World::from_yaml(WORLD, "t.yaml").unwrap())
    }

    fn call(
        st: &mut State,
        caller: &str,
        path: &str,
        query: &str,
        deny: &[&str],
    ) -> ApiResult<Value> {
        let deny: BTreeSet<String> = deny.iter().map(|s| s.to_string()).collect();
        let mut ctx = Ctx {
            st,
            caller: caller.to_owned(),
            user_agent: "t".into(),
            deny: &deny,
            query: parse_query(query),
            audit: Vec::new(),
            policy_read: None,
        };
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let route = route(&Method::GET, &segs, None).expect("routed");
        (route.run)(&mut ctx, &json!({}))
    }

    fn names(v: &Value) -> Vec<String> {
        v["assets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    }

    const ADMIN: &str = "user:admin@example.com";

    #[test]
    fn iam_policies_of_the_organization_folders_and_projects_are_listed_with_ancestors() {
        let mut st = state();
        let v = call(
            &mut st,
            ADMIN,
            "/v1/organizations/100/assets",
            "contentType=IAM_POLICY&assetTypes=cloudresourcemanager.googleapis.com/Project,cloudresourcemanager.googleapis.com/Folder&assetTypes=cloudresourcemanager.googleapis.com/Organization",
            &[],
        )
        .unwrap();
        // Folder 201 has no policy: no IAM_POLICY asset.
        assert_eq!(
            names(&v),
            [
                "//cloudresourcemanager.googleapis.com/folders/200",
                "//cloudresourcemanager.googleapis.com/organizations/100",
                "//cloudresourcemanager.googleapis.com/projects/300",
                "//cloudresourcemanager.googleapis.com/projects/301",
            ]
        );
        let shop = &v["assets"][2];
        assert_eq!(
            shop["ancestors"],
            json!([
                "projects/300",
                "folders/201",
                "folders/200",
                "organizations/100"
            ])
        );
        assert_eq!(shop["iamPolicy"]["bindings"][0]["role"], "roles/owner");
        assert_eq!(shop["iamPolicy"]["etag"], json!(st.projects[0].policy.etag));
        assert!(v["readTime"].is_string());
        assert!(v.get("nextPageToken").is_none());
    }

    #[test]
    fn clusters_come_in_the_container_api_shape_with_their_node_pools() {
        let mut st = state();
        let v = call(
            &mut st,
            ADMIN,
            "/v1/projects/shop/assets",
            "contentType=1&assetTypes=container.googleapis.com%2FCluster",
            &[],
        )
        .unwrap();
        assert_eq!(v["assets"].as_array().unwrap().len(), 2);
        let c1 = &v["assets"][0];
        assert_eq!(
            c1["name"],
            "//container.googleapis.com/projects/shop/locations/us-central1/clusters/c1"
        );
        assert_eq!(
            c1["resource"]["data"]["nodePools"][0]["config"]["serviceAccount"],
            "nodes@shop.iam.gserviceaccount.com"
        );
        assert_eq!(c1["resource"]["data"]["autopilot"], json!({}));
        assert_eq!(
            c1["resource"]["parent"],
            "//cloudresourcemanager.googleapis.com/projects/300"
        );
        assert_eq!(
            v["assets"][1]["resource"]["data"]["autopilot"]["enabled"],
            true
        );
    }

    #[test]
    fn a_folder_scope_holds_only_what_is_below_it_and_regexes_select_types() {
        let mut st = state();
        let v = call(
            &mut st,
            ADMIN,
            "/v1/folders/200/assets",
            "contentType=RESOURCE&assetTypes=cloudresourcemanager.googleapis.com/.*&assetTypes=iam.googleapis.com/Role",
            &[],
        )
        .unwrap();
        assert_eq!(
            names(&v),
            [
                "//cloudresourcemanager.googleapis.com/folders/200",
                "//cloudresourcemanager.googleapis.com/folders/201",
                "//cloudresourcemanager.googleapis.com/projects/300",
            ]
        );
        assert_eq!(v["assets"][2]["resource"]["data"]["projectId"], "shop");
    }

    #[test]
    fn pages_hold_page_size_assets_and_the_last_has_no_token() {
        let mut st = state();
        let mut seen = Vec::new();
        let mut token = String::new();
        for _ in 0..20 {
            let q = format!("contentType=RESOURCE&pageSize=2&pageToken={token}");
            let v = call(&mut st, ADMIN, "/v1/organizations/100/assets", &q, &[]).unwrap();
            let page = names(&v);
            assert!(page.len() <= 2);
            seen.extend(page);
            match v["nextPageToken"].as_str() {
                Some(t) => token = t.to_owned(),
                None => break,
            }
        }
        // 1 org + 2 folders + 2 projects + 2 clusters + 1 role + 1 SA + 2 compute SAs + 2 services.
        assert_eq!(seen.len(), 13, "{seen:?}");
        let unique: BTreeSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len());
    }

    #[test]
    fn a_policy_written_through_set_iam_policy_shows_up_in_the_next_listing() {
        let mut st = state();
        st.projects[1].policy.bindings.clear();
        let v = call(
            &mut st,
            ADMIN,
            "/v1/organizations/100/assets",
            "contentType=IAM_POLICY&assetTypes=cloudresourcemanager.googleapis.com/Project",
            &[],
        )
        .unwrap();
        assert_eq!(
            names(&v),
            ["//cloudresourcemanager.googleapis.com/projects/300"]
        );
    }

    #[test]
    fn a_caller_without_the_permission_or_with_the_api_disabled_gets_google_403() {
        let mut st = state();
        let e = call(
            &mut st,
            ADMIN,
            "/v1/organizations/100/assets",
            "contentType=IAM_POLICY",
            &["cloudasset.assets.listIamPolicy"],
        )
        .unwrap_err();
        assert_eq!((e.code, e.status), (403, "PERMISSION_DENIED"));
        assert_eq!(
            e.details[0]["metadata"]["permission"],
            "cloudasset.assets.listIamPolicy"
        );
        // ops has no cloudasset.googleapis.com: its service accounts' calls are refused.
        let e = call(
            &mut st,
            "serviceAccount:remediator@ops.iam.gserviceaccount.com",
            "/v1/organizations/100/assets",
            "contentType=RESOURCE",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(e.details[0]["reason"], "SERVICE_DISABLED");
        assert_eq!(e.details[0]["metadata"]["consumer"], "projects/301");
        // shop has it enabled.
        call(
            &mut st,
            "serviceAccount:remediator@shop.iam.gserviceaccount.com",
            "/v1/organizations/100/assets",
            "contentType=RESOURCE",
            &[],
        )
        .unwrap();
    }

    #[test]
    fn bad_arguments_are_invalid_and_unknown_scopes_are_denied() {
        let mut st = state();
        for q in [
            "contentType=BOGUS",
            "assetTypes=Cluster",
            "assetTypes=container.googleapis.com/(",
            "pageSize=-1",
            "pageToken=nope",
            "readTime=2001-01-01T00:00:00Z",
        ] {
            let e = call(&mut st, ADMIN, "/v1/organizations/100/assets", q, &[]).unwrap_err();
            assert_eq!(e.code, 400, "{q}");
        }
        let e = call(&mut st, ADMIN, "/v1/folders/999/assets", "", &[]).unwrap_err();
        assert_eq!(e.code, 403);
        let v = call(
            &mut st,
            ADMIN,
            "/v1/organizations/100/assets",
            "assetTypes=compute.googleapis.com/Instance",
            &[],
        )
        .unwrap();
        assert!(v.get("assets").is_none());
    }
}
