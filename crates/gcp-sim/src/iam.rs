//! IAM v1: `roles.get` (predefined, project and organization custom roles) and service accounts (get by
//! email or unique id, list, disable, enable, delete, undelete within 30 days). Deleting an account turns
//! its members into `deleted:serviceAccount:EMAIL?uid=N` in every policy; undeleting reverts them.
//! Enabled accounts have no `disabled` key (proto3 JSON omits false).

use std::time::SystemTime;

use base64::Engine;
use http::Method;
use serde_json::{Value, json};

use super::audit::{AuditRecord, authz};
use super::error::{ApiError, ApiResult};
use super::paging;
use super::roles::RoleDef;
use super::server::{Ctx, Route, endpoint};
use super::state::{SaState, UNDELETE_WINDOW, stable_hash};

const API: &str = "iam";

/// Routes IAM paths.
pub fn route(method: &Method, segs: &[&str], verb: Option<&str>) -> Option<Route> {
    match (method.as_str(), segs, verb) {
        ("GET", ["v1", "roles"], None) => {
            endpoint(API, "iam.roles.list", |c, _| list_roles(c, None))
        }
        ("GET", ["v1", kind @ ("projects" | "organizations"), parent, "roles"], None) => {
            let parent = format!("{kind}/{parent}");
            endpoint(API, "iam.roles.list", move |c, _| {
                list_roles(c, Some(&parent))
            })
        }
        ("GET", ["v1", "roles", id], None) => {
            let name = format!("roles/{id}");
            endpoint(API, "iam.roles.get", move |c, _| get_role(c, &name))
        }
        (
            "GET",
            [
                "v1",
                kind @ ("projects" | "organizations"),
                parent,
                "roles",
                id,
            ],
            None,
        ) => {
            let name = format!("{kind}/{parent}/roles/{id}");
            endpoint(API, "iam.roles.get", move |c, _| get_role(c, &name))
        }
        ("GET", ["v1", "projects", p, "serviceAccounts"], None) => {
            let p = p.to_string();
            endpoint(API, "iam.serviceAccounts.list", move |c, _| list_sas(c, &p))
        }
        ("GET", ["v1", "projects", p, "serviceAccounts", key], None) => {
            let (p, key) = (p.to_string(), key.to_string());
            endpoint(API, "iam.serviceAccounts.get", move |c, _| {
                get_sa(c, &p, &key)
            })
        }
        (
            "POST",
            ["v1", "projects", p, "serviceAccounts", key],
            Some(v @ ("disable" | "enable" | "undelete")),
        ) => {
            let (p, key) = (p.to_string(), key.to_string());
            match v {
                "disable" => endpoint(API, "iam.serviceAccounts.disable", move |c, _| {
                    set_disabled(c, &p, &key, true)
                }),
                "enable" => endpoint(API, "iam.serviceAccounts.enable", move |c, _| {
                    set_disabled(c, &p, &key, false)
                }),
                _ => endpoint(API, "iam.serviceAccounts.undelete", move |c, _| {
                    undelete(c, &p, &key)
                }),
            }
        }
        ("DELETE", ["v1", "projects", p, "serviceAccounts", key], None) => {
            let (p, key) = (p.to_string(), key.to_string());
            endpoint(API, "iam.serviceAccounts.delete", move |c, _| {
                delete(c, &p, &key)
            })
        }
        _ => None,
    }
}

fn role_json(r: &RoleDef, predefined: bool) -> Value {
    let etag = if predefined {
        "AA==".to_owned()
    } else {
        base64::engine::general_purpose::STANDARD.encode(stable_hash(&r.name).to_be_bytes())
    };
    let mut v = json!({
        "name": r.name,
        "title": r.title,
        "includedPermissions": r.included_permissions,
        "stage": r.stage,
        "etag": etag,
    });
    if !r.description.is_empty() {
        v["description"] = json!(r.description);
    }
    v
}

fn get_role(c: &mut Ctx<'_>, name: &str) -> ApiResult<Value> {
    c.require("iam.roles.get")?;
    let predefined = name.starts_with("roles/");
    let r =
        c.st.role(name)
            .ok_or_else(|| ApiError::not_found(format!("The role named {name} was not found.")))?;
    Ok(role_json(r, predefined))
}

/// `roles.list`: predefined roles (no parent) or a project's / organization's custom roles; `view=FULL`
/// includes the permissions, `BASIC` (the default) leaves them out.
fn list_roles(c: &mut Ctx<'_>, parent: Option<&str>) -> ApiResult<Value> {
    c.require("iam.roles.list")?;
    let full = match c.q("view") {
        None | Some("") | Some("BASIC") => false,
        Some("FULL") => true,
        Some(v) => {
            return Err(ApiError::invalid(format!(
                "Invalid value at 'view' (type.googleapis.com/google.iam.admin.v1.RoleView), \"{v}\""
            )));
        }
    };
    let defs: Vec<&RoleDef> = match parent {
        None => c.st.predefined.values().collect(),
        Some(p) => match p.split_once('/') {
            Some(("projects", id)) => {
                let i = c.st.project_idx(id).ok_or_else(|| {
                    ApiError::not_found(format!("Project {id} not found or deleted."))
                })?;
                c.st.projects[i].custom_roles.values().collect()
            }
            _ => c
                .st
                .org
                .as_ref()
                .filter(|o| format!("organizations/{}", o.id) == p)
                .ok_or_else(|| ApiError::denied_or_missing("The caller does not have permission"))?
                .custom_roles
                .values()
                .collect(),
        },
    };
    let roles: Vec<Value> = defs
        .into_iter()
        .map(|r| {
            let mut v = role_json(r, parent.is_none());
            if !full && let Some(o) = v.as_object_mut() {
                o.remove("includedPermissions");
            }
            v
        })
        .collect();
    paging::page(
        c.q("pageSize"),
        c.q("pageToken"),
        roles,
        "roles",
        paging::Limits {
            default: 300,
            max: 1000,
        },
    )
}

/// ServiceAccount JSON.
fn sa_json(project: &str, s: &SaState) -> Value {
    let mut v = json!({
        "name": format!("projects/{project}/serviceAccounts/{}", s.email),
        "projectId": project,
        "uniqueId": s.unique_id,
        "email": s.email,
        "etag": "MDEwMjE5MjA=",
        "oauth2ClientId": s.unique_id,
    });
    if let Some(d) = &s.display_name {
        v["displayName"] = json!(d);
    }
    if s.disabled {
        v["disabled"] = json!(true);
    }
    v
}

/// Finds a live account; `deleted` selects deleted ones instead. Errors as Google answers.
fn find(c: &Ctx<'_>, project: &str, key: &str, deleted: bool) -> ApiResult<(usize, usize)> {
    let only = if project == "-" {
        None
    } else {
        Some(c.st.project_idx(project).ok_or_else(|| {
            ApiError::not_found(format!("Project {project} not found or deleted."))
        })?)
    };
    c.st.accounts(key)
        .into_iter()
        .find(|&(pi, si)| {
            only.is_none_or(|p| p == pi)
                && c.st.projects[pi].service_accounts[si].deleted_at.is_some() == deleted
        })
        .ok_or_else(|| {
            if project == "-" {
                // Google cannot check a permission on an account it cannot place in a project: an
                // unknown account read through `projects/-` is refused, not reported missing.
                ApiError::denied_or_missing(format!(
                    "Permission 'iam.serviceAccounts.get' denied on resource (or it may not exist): projects/-/serviceAccounts/{key}."
                ))
            } else {
                ApiError::not_found(format!("Unknown service account {key}."))
            }
        })
}

fn get_sa(c: &mut Ctx<'_>, project: &str, key: &str) -> ApiResult<Value> {
    c.require("iam.serviceAccounts.get")?;
    let (pi, si) = find(c, project, key, false)?;
    let p = &c.st.projects[pi];
    Ok(sa_json(&p.id, &p.service_accounts[si]))
}

fn list_sas(c: &mut Ctx<'_>, project: &str) -> ApiResult<Value> {
    c.require("iam.serviceAccounts.list")?;
    let pi = c
        .st
        .project_idx(project)
        .ok_or_else(|| ApiError::not_found(format!("Project {project} not found or deleted.")))?;
    let p = &c.st.projects[pi];
    let accounts: Vec<Value> = p
        .service_accounts
        .iter()
        .filter(|s| s.deleted_at.is_none())
        .map(|s| sa_json(&p.id, s))
        .collect();
    paging::page(
        c.q("pageSize"),
        c.q("pageToken"),
        accounts,
        "accounts",
        paging::Limits {
            default: 20,
            max: 100,
        },
    )
}

fn record(
    c: &mut Ctx<'_>,
    pi: usize,
    si: usize,
    method: &str,
    permission: &str,
    request_name: String,
    response: Value,
) {
    let p = &c.st.projects[pi];
    let s = &p.service_accounts[si];
    let resource = format!("projects/-/serviceAccounts/{}", s.unique_id);
    c.audit.push(AuditRecord {
        log_parent: format!("projects/{}", p.id),
        service_name: "iam.googleapis.com".into(),
        method_name: format!("google.iam.admin.v1.{method}"),
        resource_name: resource.clone(),
        caller: c.caller.clone(),
        user_agent: c.user_agent.clone(),
        authorization: vec![authz(&resource, permission, json!({"name": resource}))],
        request: Some(json!({"@type": format!("type.googleapis.com/google.iam.admin.v1.{method}Request"), "name": request_name})),
        response: Some(response),
        resource: json!({"type": "service_account", "labels": {"project_id": p.id, "unique_id": s.unique_id, "email_id": s.email}}),
        ..Default::default()
    });
}

fn set_disabled(c: &mut Ctx<'_>, project: &str, key: &str, disabled: bool) -> ApiResult<Value> {
    let permission = if disabled {
        "iam.serviceAccounts.disable"
    } else {
        "iam.serviceAccounts.enable"
    };
    c.require(permission)?;
    let (pi, si) = find(c, project, key, false)?;
    c.st.projects[pi].service_accounts[si].disabled = disabled;
    let method = if disabled {
        "DisableServiceAccount"
    } else {
        "EnableServiceAccount"
    };
    record(
        c,
        pi,
        si,
        method,
        permission,
        format!("projects/{project}/serviceAccounts/{key}"),
        json!({"@type": "type.googleapis.com/google.protobuf.Empty"}),
    );
    Ok(json!({}))
}

fn delete(c: &mut Ctx<'_>, project: &str, key: &str) -> ApiResult<Value> {
    c.require("iam.serviceAccounts.delete")?;
    let (pi, si) = find(c, project, key, false)?;
    let s = &mut c.st.projects[pi].service_accounts[si];
    s.deleted_at = Some(SystemTime::now());
    let (email, uid) = (s.email.clone(), s.unique_id.clone());
    c.st.rewrite_members(
        &format!("serviceAccount:{email}"),
        &format!("deleted:serviceAccount:{email}?uid={uid}"),
        true,
    );
    record(
        c,
        pi,
        si,
        "DeleteServiceAccount",
        "iam.serviceAccounts.delete",
        format!("projects/{project}/serviceAccounts/{key}"),
        json!({"@type": "type.googleapis.com/google.protobuf.Empty"}),
    );
    Ok(json!({}))
}

fn undelete(c: &mut Ctx<'_>, project: &str, key: &str) -> ApiResult<Value> {
    c.require("iam.serviceAccounts.undelete")?;
    if !key.bytes().all(|b| b.is_ascii_digit()) || key.is_empty() {
        return Err(ApiError::invalid(format!(
            "Invalid unique id {key}: undelete takes the numeric unique id of the account."
        )));
    }
    let (pi, si) = match find(c, project, key, true) {
        Ok(found) => found,
        Err(e) => {
            // An active account is "restored" as is.
            return match find(c, project, key, false) {
                Ok((pi, si)) => {
                    let p = &c.st.projects[pi];
                    Ok(json!({"restoredAccount": sa_json(&p.id, &p.service_accounts[si])}))
                }
                Err(_) => Err(e),
            };
        }
    };
    let s = &c.st.projects[pi].service_accounts[si];
    let expired = s
        .deleted_at
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > UNDELETE_WINDOW);
    if expired {
        return Err(ApiError::precondition(
            "Account deleted more than 30 days ago cannot be undeleted.",
        ));
    }
    let email = s.email.clone();
    if c.st.live_account(&email).is_some() {
        return Err(ApiError::precondition(format!(
            "Cannot undelete: an account with email {email} already exists."
        )));
    }
    let s = &mut c.st.projects[pi].service_accounts[si];
    s.deleted_at = None;
    let uid = s.unique_id.clone();
    c.st.rewrite_members(
        &format!("deleted:serviceAccount:{email}?uid={uid}"),
        &format!("serviceAccount:{email}"),
        true,
    );
    let p = &c.st.projects[pi];
    let restored = sa_json(&p.id, &p.service_accounts[si]);
    let mut response =
        json!({"@type": "type.googleapis.com/google.iam.admin.v1.UndeleteServiceAccountResponse"});
    response["restoredAccount"] = restored.clone();
    record(
        c,
        pi,
        si,
        "UndeleteServiceAccount",
        "iam.serviceAccounts.undelete",
        format!("projects/{project}/serviceAccounts/{key}"),
        response,
    );
    Ok(json!({ "restoredAccount": restored }))
}
