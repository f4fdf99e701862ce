//! Resource Manager v1 and v3: projects (get, list, search, ancestry), folders, organizations, and
//! `getIamPolicy` / `setIamPolicy` on all three. Policy semantics are in `policy.rs`; this module maps
//! paths to them, writes audit records and answers Google's shapes (v1 `projectNumber` string and
//! `parent{type,id}`, v3 `name: projects/NUMBER`). Missing resources answer 403 as Google does.

use http::Method;
use serde_json::{Value, json};

use super::audit::{AuditRecord, authz};
use super::error::{ApiError, ApiResult};
use super::paging;
use super::policy::{self, RoleCheck, SetRequest};
use super::server::{Ctx, Route, endpoint};
use super::state::{PolicyRef, ProjectState, State};

const API: &str = "cloudresourcemanager";
const CREATE_TIME: &str = "2024-01-15T10:00:00.000Z";
const DIRECTORY_CUSTOMER: &str = "C0sim0001";

/// Routes Resource Manager paths.
pub fn route(method: &Method, segs: &[&str], verb: Option<&str>) -> Option<Route> {
    let m = method.as_str();
    match (m, segs, verb) {
        ("GET", ["v1", "projects"], None) => {
            endpoint(API, "cloudresourcemanager.projects.list", |c, _| list_v1(c))
        }
        ("GET", ["v1", "projects", id], None) => {
            let id = id.to_string();
            endpoint(API, "cloudresourcemanager.projects.get", move |c, _| {
                get_project(c, &id, 1)
            })
        }
        ("GET", ["v3", "projects", id], None) => {
            let id = id.to_string();
            endpoint(API, "cloudresourcemanager.projects.get", move |c, _| {
                get_project(c, &id, 3)
            })
        }
        ("GET", ["v3", "projects"], None) => {
            endpoint(API, "cloudresourcemanager.projects.list", |c, _| list_v3(c))
        }
        ("GET", ["v3", "projects"], Some("search")) => {
            endpoint(API, "cloudresourcemanager.projects.search", |c, _| {
                search_v3(c)
            })
        }
        ("POST", ["v1", "projects", id], Some("getAncestry")) => {
            let id = id.to_string();
            endpoint(
                API,
                "cloudresourcemanager.projects.getAncestry",
                move |c, _| ancestry(c, &id),
            )
        }
        (
            "POST",
            [
                v @ ("v1" | "v2" | "v3"),
                kind @ ("projects" | "folders" | "organizations"),
                id,
            ],
            Some(verb @ ("getIamPolicy" | "setIamPolicy")),
        ) => {
            // v1 has no folders; v2 only folders (gcloud get-ancestors-iam-policy uses v2 folders).
            if (*v == "v1" && *kind == "folders") || (*v == "v2" && *kind != "folders") {
                return None;
            }
            let resource = format!("{kind}/{id}");
            let v1 = *v == "v1";
            let kind = *kind;
            if verb == "getIamPolicy" {
                let key = match kind {
                    "projects" => "cloudresourcemanager.projects.getIamPolicy",
                    "folders" => "cloudresourcemanager.folders.getIamPolicy",
                    _ => "cloudresourcemanager.organizations.getIamPolicy",
                };
                endpoint(API, key, move |c, b| get_iam_policy(c, &resource, b))
            } else {
                let key = match kind {
                    "projects" => "cloudresourcemanager.projects.setIamPolicy",
                    "folders" => "cloudresourcemanager.folders.setIamPolicy",
                    _ => "cloudresourcemanager.organizations.setIamPolicy",
                };
                endpoint(API, key, move |c, b| set_iam_policy(c, &resource, b, v1))
            }
        }
        (
            "POST",
            [
                v @ ("v1" | "v2" | "v3"),
                kind @ ("projects" | "folders" | "organizations"),
                id,
            ],
            Some("testIamPermissions"),
        ) => {
            if (*v == "v1" && *kind == "folders") || (*v == "v2" && *kind != "folders") {
                return None;
            }
            let resource = format!("{kind}/{id}");
            let key = match *kind {
                "projects" => "cloudresourcemanager.projects.testIamPermissions",
                "folders" => "cloudresourcemanager.folders.testIamPermissions",
                _ => "cloudresourcemanager.organizations.testIamPermissions",
            };
            endpoint(API, key, move |c, b| test_permissions(c, &resource, b))
        }
        ("POST", ["v1", "organizations"], Some("search")) => {
            endpoint(API, "cloudresourcemanager.organizations.search", |c, b| {
                search_orgs(
                    c,
                    b.get("filter").and_then(Value::as_str).unwrap_or(""),
                    false,
                )
            })
        }
        ("GET", ["v3", "organizations"], Some("search")) => {
            endpoint(API, "cloudresourcemanager.organizations.search", |c, _| {
                let q = c.q("query").unwrap_or("").to_owned();
                search_orgs(c, &q, true)
            })
        }
        ("GET", ["v2", "folders"], None) => {
            endpoint(API, "cloudresourcemanager.folders.list", |c, _| {
                list_folders_v(c, true)
            })
        }
        ("POST", ["v2", "folders"], Some("search")) => {
            endpoint(API, "cloudresourcemanager.folders.search", |c, b| {
                let q = b
                    .get("query")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                search_folders(c, &q, true)
            })
        }
        ("GET", ["v3", "folders"], Some("search")) => {
            endpoint(API, "cloudresourcemanager.folders.search", |c, _| {
                let q = c.q("query").unwrap_or("").to_owned();
                search_folders(c, &q, false)
            })
        }
        ("GET", [v @ ("v2" | "v3"), "folders", id], None) => {
            let id = id.to_string();
            let v2 = *v == "v2";
            endpoint(API, "cloudresourcemanager.folders.get", move |c, _| {
                get_folder(c, &id, v2)
            })
        }
        ("GET", ["v3", "folders"], None) => {
            endpoint(API, "cloudresourcemanager.folders.list", |c, _| {
                list_folders_v(c, false)
            })
        }
        ("GET", [v @ ("v1" | "v3"), "organizations", id], None) => {
            let id = id.to_string();
            let v3 = *v == "v3";
            endpoint(
                API,
                "cloudresourcemanager.organizations.get",
                move |c, _| get_org(c, &id, v3),
            )
        }
        _ => None,
    }
}

fn missing() -> ApiError {
    ApiError::denied_or_missing("The caller does not have permission")
}

fn kind_of(resource: &str) -> &str {
    resource.split('/').next().unwrap_or("projects")
}

fn perm(resource: &str, action: &str) -> String {
    format!("resourcemanager.{}.{action}", kind_of(resource))
}

/// v1 `Project` JSON.
pub fn project_v1(p: &ProjectState) -> Value {
    let mut v = json!({
        "projectNumber": p.number,
        "projectId": p.id,
        "lifecycleState": "ACTIVE",
        "name": p.name.clone().unwrap_or_else(|| p.id.clone()),
        "createTime": CREATE_TIME,
    });
    if let Some((kind, id)) = p.parent.as_deref().and_then(|x| x.split_once('/')) {
        let t = if kind == "folders" {
            "folder"
        } else {
            "organization"
        };
        v["parent"] = json!({"type": t, "id": id});
    }
    v
}

/// v3 `Project` JSON.
pub fn project_v3(p: &ProjectState) -> Value {
    let mut v = json!({
        "name": format!("projects/{}", p.number),
        "projectId": p.id,
        "state": "ACTIVE",
        "displayName": p.name.clone().unwrap_or_else(|| p.id.clone()),
        "createTime": CREATE_TIME,
        "updateTime": CREATE_TIME,
        "etag": format!("W/\"{:016x}\"", super::state::stable_hash(&p.id)),
    });
    if let Some(parent) = &p.parent {
        v["parent"] = json!(parent);
    }
    v
}

fn get_project(c: &mut Ctx<'_>, id: &str, version: u8) -> ApiResult<Value> {
    c.require("resourcemanager.projects.get")?;
    // Both versions accept the project id or number (v1 documents the id; the live API takes both).
    let p = c.st.project_idx(id).ok_or_else(missing)?;
    let p = &c.st.projects[p];
    Ok(if version == 1 {
        project_v1(p)
    } else {
        project_v3(p)
    })
}

fn page(c: &Ctx<'_>, items: Vec<Value>, key: &str) -> ApiResult<Value> {
    paging::page(
        c.q("pageSize"),
        c.q("pageToken"),
        items,
        key,
        paging::Limits {
            default: 500,
            max: 1000,
        },
    )
}

/// Matches a project against one `key:value` / `key=value` filter term (v1 filter or v3 query).
fn term_matches(p: &ProjectState, term: &str) -> ApiResult<bool> {
    let (key, value) = term
        .split_once(':')
        .or_else(|| term.split_once('='))
        .ok_or_else(|| ApiError::invalid(format!("Invalid filter term: {term}")))?;
    let value = value.trim_matches('"');
    let (ptype, pid) = match p.parent.as_deref().and_then(|x| x.split_once('/')) {
        Some(("folders", id)) => ("folder", id),
        Some((_, id)) => ("organization", id),
        None => ("", ""),
    };
    Ok(match key.trim() {
        "parent.id" => pid == value,
        "parent.type" => ptype == value,
        "parent" => p.parent.as_deref() == Some(value),
        "id" | "projectId" => {
            p.id == value || (value.ends_with('*') && p.id.starts_with(value.trim_end_matches('*')))
        }
        "name" | "displayName" => p.name.as_deref().unwrap_or(&p.id) == value,
        "lifecycleState" | "state" => value == "ACTIVE",
        "projectNumber" => p.number == value,
        other => {
            return Err(ApiError::invalid(format!(
                "Request contains an invalid argument: unknown filter field `{other}`."
            )));
        }
    })
}

fn filtered(st: &State, filter: &str, v3: bool) -> ApiResult<Vec<Value>> {
    let terms: Vec<&str> = filter
        .split_whitespace()
        .filter(|t| !t.eq_ignore_ascii_case("AND"))
        .collect();
    let mut out = Vec::new();
    for p in &st.projects {
        let mut ok = true;
        for t in &terms {
            ok &= term_matches(p, t)?;
        }
        if ok {
            out.push(if v3 { project_v3(p) } else { project_v1(p) });
        }
    }
    Ok(out)
}

fn list_v1(c: &mut Ctx<'_>) -> ApiResult<Value> {
    c.require("resourcemanager.projects.list")?;
    let items = filtered(c.st, c.q("filter").unwrap_or(""), false)?;
    page(c, items, "projects")
}

fn list_v3(c: &mut Ctx<'_>) -> ApiResult<Value> {
    c.require("resourcemanager.projects.list")?;
    let parent = c.q("parent").ok_or_else(|| {
        ApiError::invalid("Request contains an invalid argument: parent is required.")
    })?;
    let items = filtered(c.st, &format!("parent:{parent}"), true)?;
    page(c, items, "projects")
}

fn search_v3(c: &mut Ctx<'_>) -> ApiResult<Value> {
    c.require("resourcemanager.projects.get")?;
    let items = filtered(c.st, c.q("query").unwrap_or(""), true)?;
    page(c, items, "projects")
}

fn ancestry(c: &mut Ctx<'_>, id: &str) -> ApiResult<Value> {
    c.require("resourcemanager.projects.get")?;
    let idx = c.st.project_idx(id).ok_or_else(missing)?;
    let ancestors: Vec<Value> = c
        .st
        .ancestors(idx)
        .into_iter()
        .map(|r| match r {
            PolicyRef::Project(i) => json!({"resourceId": {"type": "project", "id": c.st.projects[i].id}}),
            PolicyRef::Folder(f) => json!({"resourceId": {"type": "folder", "id": f}}),
            PolicyRef::Organization => {
                json!({"resourceId": {"type": "organization", "id": c.st.org.as_ref().map(|o| o.id.clone())}})
            }
        })
        .collect();
    Ok(json!({ "ancestor": ancestors }))
}

fn get_folder(c: &mut Ctx<'_>, id: &str, v2: bool) -> ApiResult<Value> {
    c.require("resourcemanager.folders.get")?;
    let f = c.st.folders.get(id).ok_or_else(missing)?;
    if v2 {
        return Ok(
            json!({"name": format!("folders/{}", f.id), "parent": f.parent,
            "displayName": f.display_name, "lifecycleState": "ACTIVE", "createTime": CREATE_TIME}),
        );
    }
    Ok(folder_json(f))
}

fn folder_json(f: &super::state::FolderState) -> Value {
    json!({
        "name": format!("folders/{}", f.id),
        "parent": f.parent,
        "displayName": f.display_name,
        "state": "ACTIVE",
        "createTime": CREATE_TIME,
        "updateTime": CREATE_TIME,
        "etag": format!("W/\"{:016x}\"", super::state::stable_hash(&f.id)),
    })
}

fn folder_v2(f: &super::state::FolderState) -> Value {
    json!({"name": format!("folders/{}", f.id), "parent": f.parent, "displayName": f.display_name,
           "lifecycleState": "ACTIVE", "createTime": CREATE_TIME})
}

fn list_folders_v(c: &mut Ctx<'_>, v2: bool) -> ApiResult<Value> {
    c.require("resourcemanager.folders.list")?;
    let parent = c.q("parent").ok_or_else(|| {
        ApiError::invalid("Request contains an invalid argument: parent is required.")
    })?;
    if c.st
        .policy_ref(parent)
        .is_none_or(|r| matches!(r, PolicyRef::Project(_)))
    {
        return Err(missing());
    }
    let items: Vec<Value> =
        c.st.folders
            .values()
            .filter(|f| f.parent == parent)
            .map(if v2 { folder_v2 } else { folder_json })
            .collect();
    page(c, items, "folders")
}

/// `KEY=VALUE` / `KEY:VALUE` terms joined by spaces or `AND` (folder and organization search queries).
fn query_terms(q: &str) -> ApiResult<Vec<(String, String)>> {
    q.split_whitespace()
        .filter(|t| !t.eq_ignore_ascii_case("AND"))
        .map(|t| {
            t.split_once('=')
                .or_else(|| t.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
                .ok_or_else(|| ApiError::invalid(format!("Invalid query term: {t}")))
        })
        .collect()
}

fn search_folders(c: &mut Ctx<'_>, q: &str, v2: bool) -> ApiResult<Value> {
    c.require("resourcemanager.folders.get")?;
    let terms = query_terms(q)?;
    let mut items = Vec::new();
    for f in c.st.folders.values() {
        let mut ok = true;
        for (k, v) in &terms {
            ok &= match k.as_str() {
                "parent" => &f.parent == v,
                "displayName" | "display_name" => v
                    .strip_suffix('*')
                    .map_or(&f.display_name == v, |p| f.display_name.starts_with(p)),
                "state" | "lifecycleState" => v == "ACTIVE",
                other => {
                    return Err(ApiError::invalid(format!(
                        "Request contains an invalid argument: unknown query field `{other}`."
                    )));
                }
            };
        }
        if ok {
            items.push(if v2 { folder_v2(f) } else { folder_json(f) });
        }
    }
    page(c, items, "folders")
}

fn search_orgs(c: &mut Ctx<'_>, q: &str, v3: bool) -> ApiResult<Value> {
    let terms = query_terms(q)?;
    let mut items = Vec::new();
    if let Some(o) = c.st.org.clone() {
        let mut ok = true;
        for (k, v) in &terms {
            ok &= match k.as_str() {
                "domain" | "displayName" | "display_name" => &o.display_name == v,
                "directoryCustomerId" | "directory_customer_id" | "owner.directoryCustomerId" => {
                    v == DIRECTORY_CUSTOMER
                }
                "state" | "lifecycleState" => v == "ACTIVE",
                other => {
                    return Err(ApiError::invalid(format!(
                        "Request contains an invalid argument: unknown filter field `{other}`."
                    )));
                }
            };
        }
        if ok {
            items.push(get_org(c, &o.id, v3)?);
        }
    }
    page(c, items, "organizations")
}

/// The caller's permissions on a resource: unconditional bindings of it and its ancestors whose
/// member includes the caller (groups followed), minus permissions the faults deny.
fn test_permissions(c: &mut Ctx<'_>, resource: &str, body: &Value) -> ApiResult<Value> {
    let r = c.st.policy_ref(resource).ok_or_else(missing)?;
    let requested: Vec<String> = match body.get("permissions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|p| {
                p.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::invalid("Invalid value at 'permissions' (TYPE_STRING)")
                })
            })
            .collect::<ApiResult<_>>()?,
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid value at 'permissions' (TYPE_STRING)",
            ));
        }
    };
    for p in &requested {
        let parts: Vec<&str> = p.split('.').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|x| x.is_empty() || x.contains(char::is_whitespace))
        {
            return Err(ApiError::invalid(format!(
                "Permission {p} is not valid for {resource}."
            )));
        }
    }
    let chain = match &r {
        PolicyRef::Project(i) => c.st.ancestors(*i),
        PolicyRef::Folder(id) => {
            let mut out = vec![PolicyRef::Folder(id.clone())];
            let mut parent = c.st.folders.get(id).map(|f| f.parent.clone());
            let mut guard = 0;
            while let Some(p) = parent.take() {
                guard += 1;
                if guard > 1000 {
                    break;
                }
                if let Some(fid) = p.strip_prefix("folders/") {
                    out.push(PolicyRef::Folder(fid.to_owned()));
                    parent = c.st.folders.get(fid).map(|f| f.parent.clone());
                } else if c.st.org.is_some() {
                    out.push(PolicyRef::Organization);
                }
            }
            out
        }
        PolicyRef::Organization => vec![PolicyRef::Organization],
    };
    let email = c
        .caller
        .split_once(':')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let mut granted = Vec::new();
    for p in &requested {
        if c.deny.contains(p) {
            continue;
        }
        let has = chain.iter().any(|r| {
            c.st.policy(r).is_some_and(|pol| {
                pol.bindings.iter().any(|b| {
                    b.condition.is_none()
                        && b.members
                            .iter()
                            .any(|m| super::troubleshooter::member_matches(c.st, m, &email, 0))
                        && c.st
                            .role(&b.role)
                            .is_some_and(|d| d.included_permissions.iter().any(|x| x == p))
                })
            })
        });
        if has && !granted.contains(p) {
            granted.push(p.clone());
        }
    }
    Ok(if granted.is_empty() {
        json!({})
    } else {
        json!({ "permissions": granted })
    })
}

fn get_org(c: &mut Ctx<'_>, id: &str, v3: bool) -> ApiResult<Value> {
    c.require("resourcemanager.organizations.get")?;
    let o =
        c.st.org
            .as_ref()
            .filter(|o| o.id == id)
            .ok_or_else(missing)?;
    Ok(if v3 {
        json!({"name": format!("organizations/{}", o.id), "displayName": o.display_name, "directoryCustomerId": DIRECTORY_CUSTOMER,
               "state": "ACTIVE", "createTime": CREATE_TIME, "updateTime": CREATE_TIME, "etag": "BwW3sim0001="})
    } else {
        json!({"name": format!("organizations/{}", o.id), "displayName": o.display_name,
               "owner": {"directoryCustomerId": DIRECTORY_CUSTOMER}, "creationTime": CREATE_TIME, "lifecycleState": "ACTIVE"})
    })
}

fn get_iam_policy(c: &mut Ctx<'_>, resource: &str, body: &Value) -> ApiResult<Value> {
    c.require(&perm(resource, "getIamPolicy"))?;
    let requested = policy::requested_version(body)?;
    let r = c.st.policy_ref(resource).ok_or_else(missing)?;
    let stored = c.st.policy(&r).ok_or_else(missing)?;
    let out = policy::render(stored, requested);
    if let PolicyRef::Project(i) = r {
        c.policy_read = Some(i);
    }
    serde_json::to_value(out).map_err(|e| ApiError::new(500, "INTERNAL", e.to_string()))
}

fn role_check(st: &State, role: &str) -> RoleCheck {
    match st.role(role) {
        Some(_) => RoleCheck::Ok,
        None if role.starts_with("roles/") => RoleCheck::UnknownPredefined,
        None => RoleCheck::UnknownCustom,
    }
}

fn set_iam_policy(c: &mut Ctx<'_>, resource: &str, body: &Value, v1: bool) -> ApiResult<Value> {
    c.require(&perm(resource, "setIamPolicy"))?;
    let req = policy::parse_set(body)?;
    let r = c.st.policy_ref(resource).ok_or_else(missing)?;
    let request_resource = if v1 && kind_of(resource) == "projects" {
        resource.trim_start_matches("projects/").to_owned()
    } else {
        resource.to_owned()
    };
    let stored = write_policy(c, &r, &req, &request_resource)?;
    serde_json::to_value(stored).map_err(|e| ApiError::new(500, "INTERNAL", e.to_string()))
}

/// The write path every policy change takes (API calls and the concurrent writer): validate, store
/// with a new etag, record the audit entry. Returns the stored policy.
pub fn write_policy(
    c: &mut Ctx<'_>,
    r: &PolicyRef,
    req: &SetRequest,
    request_resource: &str,
) -> ApiResult<crate::model::Policy> {
    let stored = c.st.policy(r).cloned().ok_or_else(missing)?;
    let mut next = policy::apply_set(
        &stored,
        req,
        |role| role_check(c.st, role),
        |member| c.st.missing_member(member),
    )?;
    next.etag = Some(c.st.next_etag());
    let slot = c.st.policy_mut(r).ok_or_else(missing)?;
    *slot = next.clone();
    let name = c.st.resource_name(r);
    let deltas = policy::binding_deltas(&stored, &next);
    let (kind, id) = name.split_once('/').unwrap_or(("projects", ""));
    let (rtype, label, service_type) = match kind {
        "projects" => (
            "project",
            "project_id",
            "cloudresourcemanager.googleapis.com/Project",
        ),
        "folders" => (
            "folder",
            "folder_id",
            "cloudresourcemanager.googleapis.com/Folder",
        ),
        _ => (
            "organization",
            "organization_id",
            "cloudresourcemanager.googleapis.com/Organization",
        ),
    };
    let mut request = json!({"@type": "type.googleapis.com/google.iam.v1.SetIamPolicyRequest", "resource": request_resource});
    if let Some(p) = req.raw.get("policy") {
        request["policy"] = p.clone();
    }
    if let Some(m) = req.raw.get("updateMask") {
        request["updateMask"] = m.clone();
    }
    let mut response = serde_json::to_value(&next).unwrap_or_else(|_| json!({}));
    response["@type"] = json!("type.googleapis.com/google.iam.v1.Policy");
    let mut policy_delta = json!({});
    if !deltas.is_empty() {
        policy_delta["bindingDeltas"] = Value::Array(deltas);
    }
    c.audit.push(AuditRecord {
        log_parent: name.clone(),
        service_name: "cloudresourcemanager.googleapis.com".into(),
        method_name: "SetIamPolicy".into(),
        resource_name: name.clone(),
        caller: c.caller.clone(),
        user_agent: c.user_agent.clone(),
        authorization: vec![authz(
            &name,
            &perm(&name, "setIamPolicy"),
            json!({"name": name, "service": "cloudresourcemanager.googleapis.com", "type": service_type}),
        )],
        request: Some(request),
        response: Some(response),
        service_data: Some(json!({"@type": "type.googleapis.com/google.iam.v1.logging.AuditData", "policyDelta": policy_delta})),
        resource: json!({"type": rtype, "labels": {label: id}}),
        ..Default::default()
    });
    Ok(next)
}

/// The concurrent writer's change: adds `member` to `role` on a project through [`write_policy`].
pub fn concurrent_add(c: &mut Ctx<'_>, idx: usize, role: &str, member: &str) -> bool {
    let r = PolicyRef::Project(idx);
    let Some(mut p) = c.st.policy(&r).cloned() else {
        return false;
    };
    if !crate::model::is_role(role) || !crate::model::is_member(member) {
        return false;
    }
    p.add_member(role, member);
    p.version = 3;
    let body = json!({"policy": p});
    let Ok(req) = policy::parse_set(&body) else {
        return false;
    };
    let id =
        c.st.projects
            .get(idx)
            .map(|p| p.id.clone())
            .unwrap_or_default();
    write_policy(c, &r, &req, &id).is_ok()
}
