//! Service Usage v1: services get (project id or number), list, `:enable` and `:disable` returning
//! finished (`done: true`) operations, and `GET /v1/operations/…`. Disabling a service that is not
//! enabled answers 400 `FAILED_PRECONDITION`. Names and parents use the project NUMBER.

use http::Method;
use serde_json::{Value, json};

use super::audit::{AuditRecord, authz, operation_id};
use super::error::{ApiError, ApiResult};
use super::server::{Ctx, Route, endpoint};

const API: &str = "serviceusage";

/// Routes Service Usage paths.
pub fn route(method: &Method, segs: &[&str], verb: Option<&str>) -> Option<Route> {
    match (method.as_str(), segs, verb) {
        ("GET", ["v1", "projects", p, "services"], None) => {
            let p = p.to_string();
            endpoint(API, "serviceusage.services.list", move |c, _| list(c, &p))
        }
        ("GET", ["v1", "projects", p, "services", s], None) => {
            let (p, s) = (p.to_string(), s.to_string());
            endpoint(API, "serviceusage.services.get", move |c, _| get(c, &p, &s))
        }
        ("POST", ["v1", "projects", p, "services", s], Some(v @ ("enable" | "disable"))) => {
            let (p, s) = (p.to_string(), s.to_string());
            if v == "enable" {
                endpoint(API, "serviceusage.services.enable", move |c, b| {
                    change(c, &p, &s, true, b)
                })
            } else {
                endpoint(API, "serviceusage.services.disable", move |c, b| {
                    change(c, &p, &s, false, b)
                })
            }
        }
        ("GET", ["v1", "operations", rest @ ..], None) if !rest.is_empty() => {
            let name = format!("operations/{}", rest.join("/"));
            endpoint(API, "serviceusage.operations.get", move |c, _| {
                c.st.operations
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| ApiError::not_found(format!("Operation {name} not found.")))
            })
        }
        _ => None,
    }
}

fn title(service: &str) -> String {
    match service {
        "container.googleapis.com" => "Kubernetes Engine API".into(),
        "compute.googleapis.com" => "Compute Engine API".into(),
        "iam.googleapis.com" => "Identity and Access Management (IAM) API".into(),
        "cloudresourcemanager.googleapis.com" => "Cloud Resource Manager API".into(),
        "logging.googleapis.com" => "Cloud Logging API".into(),
        "monitoring.googleapis.com" => "Cloud Monitoring API".into(),
        "recommender.googleapis.com" => "Recommender API".into(),
        "serviceusage.googleapis.com" => "Service Usage API".into(),
        "pubsub.googleapis.com" => "Cloud Pub/Sub API".into(),
        "policytroubleshooter.googleapis.com" => "Policy Troubleshooter API".into(),
        other => format!("{} API", other.trim_end_matches(".googleapis.com")),
    }
}

fn service_json(number: &str, service: &str, enabled: bool) -> Value {
    json!({
        "name": format!("projects/{number}/services/{service}"),
        "parent": format!("projects/{number}"),
        "config": {"name": service, "title": title(service)},
        "state": if enabled { "ENABLED" } else { "DISABLED" },
    })
}

fn check(c: &Ctx<'_>, p: &str, s: &str, permission: &str) -> ApiResult<usize> {
    c.require(permission)?;
    let i =
        c.st.project_idx(p)
            .ok_or_else(|| ApiError::permission_denied(permission))?;
    if !s.ends_with(".googleapis.com") || s.len() <= ".googleapis.com".len() {
        return Err(ApiError::denied_or_missing(format!(
            "Not found or permission denied for service(s): {s}."
        )));
    }
    Ok(i)
}

fn get(c: &mut Ctx<'_>, p: &str, s: &str) -> ApiResult<Value> {
    let i = check(c, p, s, "serviceusage.services.get")?;
    let proj = &c.st.projects[i];
    Ok(service_json(&proj.number, s, proj.services.contains(s)))
}

fn list(c: &mut Ctx<'_>, p: &str) -> ApiResult<Value> {
    c.require("serviceusage.services.list")?;
    let i =
        c.st.project_idx(p)
            .ok_or_else(|| ApiError::permission_denied("serviceusage.services.list"))?;
    let proj = &c.st.projects[i];
    let services: Vec<Value> = proj
        .services
        .iter()
        .map(|s| service_json(&proj.number, s, true))
        .collect();
    Ok(if services.is_empty() {
        json!({})
    } else {
        json!({ "services": services })
    })
}

fn change(c: &mut Ctx<'_>, p: &str, s: &str, enable: bool, body: &Value) -> ApiResult<Value> {
    let permission = if enable {
        "serviceusage.services.enable"
    } else {
        "serviceusage.services.disable"
    };
    let i = check(c, p, s, permission)?;
    let proj = &mut c.st.projects[i];
    if !enable && !proj.services.contains(s) {
        return Err(ApiError::precondition(format!(
            "Service {s} is not enabled on project {}; it cannot be disabled.",
            proj.number
        )));
    }
    if enable {
        proj.services.insert(s.to_owned());
    } else {
        proj.services.remove(s);
    }
    let (id, number) = (proj.id.clone(), proj.number.clone());
    let (method, kind) = if enable {
        ("EnableService", "Enable")
    } else {
        ("DisableService", "Disable")
    };
    let service = service_json(&number, s, enable);
    let name = format!("operations/acf.p2-{number}-{}", operation_id(""));
    let response = json!({"@type": format!("type.googleapis.com/google.api.serviceusage.v1.{kind}ServiceResponse"), "service": service});
    let op = json!({"name": name, "metadata": {"@type": "type.googleapis.com/google.protobuf.Empty"}, "done": true, "response": response});
    c.st.operations.insert(name.clone(), op.clone());
    let full_method = format!("google.api.serviceusage.v1.ServiceUsage.{method}");
    let mut request = json!({"@type": format!("type.googleapis.com/google.api.serviceusage.v1.{kind}ServiceRequest"), "name": format!("projects/{p}/services/{s}")});
    if let Some(obj) = body.as_object() {
        for (k, v) in obj {
            request[k] = v.clone();
        }
    }
    c.audit.push(AuditRecord {
        log_parent: format!("projects/{id}"),
        service_name: "serviceusage.googleapis.com".into(),
        method_name: full_method.clone(),
        resource_name: format!("projects/{number}/services/{s}"),
        caller: c.caller.clone(),
        user_agent: c.user_agent.clone(),
        authorization: vec![
            authz(&format!("projectnumbers/{number}"), permission, json!({})),
            json!({"resource": format!("services/{s}"), "permission": "servicemanagement.services.bind", "granted": true, "permissionType": "DATA_WRITE", "resourceAttributes": {}}),
        ],
        request: Some(request),
        response: Some(response),
        resource: json!({"type": "audited_resource", "labels": {"project_id": id, "service": "serviceusage.googleapis.com", "method": full_method}}),
        operation: Some(json!({"id": name, "producer": "serviceusage.googleapis.com", "last": true})),
        ..Default::default()
    });
    Ok(op)
}
