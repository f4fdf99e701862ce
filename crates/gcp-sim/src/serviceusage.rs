//! Service Usage v1: services get (project id or number), list (paged; every known service with its
//! state, or one state with `filter=state:ENABLED|DISABLED`), `:enable` and `:disable`
//! returning long-running operations (done at once unless the world sets `operation_polls`), and
//! `GET /v1/operations/…`. Names and parents use the project NUMBER.
//!
//! Services exist when they are in the simulator's catalog ([`KNOWN`]) or named by some project of the
//! world; anything else answers 403 `Not found or permission denied for service(s)` as Google does.
//! Enabling a service enables what it depends on ([`DEPENDS`], an approximation of Google's graph);
//! disabling a service an enabled one depends on answers 400 FAILED_PRECONDITION unless
//! `disableDependentServices` is set, which disables the dependents too. Disabling a service that is
//! not enabled answers 400 `FAILED_PRECONDITION`.

use http::Method;
use serde_json::{Value, json};

use super::audit::{AuditRecord, authz, operation_id};
use super::error::{ApiError, ApiResult};
use super::paging;
use super::server::{Ctx, Route, endpoint};
use super::state::ServiceChange;

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
                c.st.poll_operation(&name, running_op)
                    .ok_or_else(|| ApiError::not_found(format!("Operation {name} not found.")))
            })
        }
        _ => None,
    }
}

/// Services the simulator knows besides those a world names.
pub const KNOWN: [&str; 40] = [
    "artifactregistry.googleapis.com",
    "autoscaling.googleapis.com",
    "bigquery.googleapis.com",
    "binaryauthorization.googleapis.com",
    "certificatemanager.googleapis.com",
    "cloudasset.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudkms.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtrace.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "containeranalysis.googleapis.com",
    "containerfilesystem.googleapis.com",
    "containerregistry.googleapis.com",
    "dns.googleapis.com",
    "eventarc.googleapis.com",
    "gkebackup.googleapis.com",
    "gkeconnect.googleapis.com",
    "gkehub.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "mesh.googleapis.com",
    "monitoring.googleapis.com",
    "networkconnectivity.googleapis.com",
    "oslogin.googleapis.com",
    "policytroubleshooter.googleapis.com",
    "pubsub.googleapis.com",
    "recommender.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "serviceusage.googleapis.com",
    "sqladmin.googleapis.com",
    "stackdriver.googleapis.com",
    "storage-api.googleapis.com",
    "storage.googleapis.com",
];

/// `service` -> services it needs (enabled with it). An approximation of Google's dependency graph.
pub const DEPENDS: [(&str, &[&str]); 6] = [
    (
        "container.googleapis.com",
        &["compute.googleapis.com", "iamcredentials.googleapis.com"],
    ),
    ("compute.googleapis.com", &["oslogin.googleapis.com"]),
    ("gkehub.googleapis.com", &["gkeconnect.googleapis.com"]),
    ("cloudfunctions.googleapis.com", &["run.googleapis.com"]),
    ("run.googleapis.com", &["containerregistry.googleapis.com"]),
    (
        "containerregistry.googleapis.com",
        &["artifactregistry.googleapis.com"],
    ),
];

fn deps(service: &str) -> &'static [&'static str] {
    DEPENDS
        .iter()
        .find(|(s, _)| *s == service)
        .map(|(_, d)| *d)
        .unwrap_or(&[])
}

fn exists(c: &Ctx<'_>, s: &str) -> bool {
    KNOWN.contains(&s) || c.st.known_services.contains(s)
}

/// A Service Usage operation as it looks while running.
fn running_op(done: &Value) -> Value {
    json!({"name": done["name"], "metadata": done["metadata"], "done": false})
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
    if !exists(c, s) {
        let mut e = ApiError::denied_or_missing(format!(
            "Not found or permission denied for service(s): {s}."
        ));
        e.details.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "SERVICE_CONFIG_NOT_FOUND_OR_PERMISSION_DENIED",
            "domain": "serviceusage.googleapis.com",
            "metadata": {"services": s}
        }));
        return Err(e);
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
    // Like Google: without a filter every service the simulator knows, with its state; a
    // `state:ENABLED` / `state:DISABLED` filter selects one state.
    let want = match c.q("filter").map(|f| f.replace(' ', "")) {
        None => None,
        Some(f) if f.is_empty() => None,
        Some(f) if f == "state:ENABLED" => Some(true),
        Some(f) if f == "state:DISABLED" => Some(false),
        Some(f) => {
            return Err(ApiError::invalid(format!(
                "Invalid filter {f}: expected state:ENABLED or state:DISABLED."
            )));
        }
    };
    let proj = &c.st.projects[i];
    let mut all: std::collections::BTreeSet<&str> = KNOWN.iter().copied().collect();
    all.extend(c.st.known_services.iter().map(String::as_str));
    let services: Vec<Value> = all
        .into_iter()
        .map(|s| (s, proj.services.contains(s)))
        .filter(|(_, enabled)| want.is_none_or(|w| w == *enabled))
        .map(|(s, enabled)| service_json(&proj.number, s, enabled))
        .collect();
    paging::page(
        c.q("pageSize"),
        c.q("pageToken"),
        services,
        "services",
        paging::Limits {
            default: 50,
            max: 200,
        },
    )
}

fn change(c: &mut Ctx<'_>, p: &str, s: &str, enable: bool, body: &Value) -> ApiResult<Value> {
    let permission = if enable {
        "serviceusage.services.enable"
    } else {
        "serviceusage.services.disable"
    };
    let i = check(c, p, s, permission)?;
    let dependents_too = match body.get("disableDependentServices") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid value at 'disable_dependent_services' (TYPE_BOOL)",
            ));
        }
    };
    let proj = &c.st.projects[i];
    let mut change = ServiceChange {
        project: i,
        enable: Vec::new(),
        disable: Vec::new(),
    };
    if !enable && !proj.services.contains(s) {
        return Err(ApiError::precondition(format!(
            "Service {s} is not enabled on project {}; it cannot be disabled.",
            proj.number
        )));
    }
    if enable {
        // The service and, transitively, what it depends on.
        let mut todo = vec![s.to_owned()];
        while let Some(x) = todo.pop() {
            if change.enable.contains(&x) {
                continue;
            }
            if x == s || !proj.services.contains(&x) {
                todo.extend(deps(&x).iter().map(|d| (*d).to_owned()));
                change.enable.push(x);
            }
        }
    } else {
        // Enabled services that depend on `s`, transitively.
        let mut dependents: Vec<String> = Vec::new();
        let mut frontier = vec![s.to_owned()];
        while let Some(x) = frontier.pop() {
            for other in &proj.services {
                if deps(other).contains(&x.as_str()) && !dependents.contains(other) {
                    dependents.push(other.clone());
                    frontier.push(other.clone());
                }
            }
        }
        if !dependents.is_empty() && !dependents_too {
            return Err(ApiError::precondition(format!(
                "The service {s} is depended on by the following active service(s): {}; \
                 Please specify disable_dependent_services=true if you want to proceed with disabling all services.",
                dependents.join(",")
            )));
        }
        change.disable.push(s.to_owned());
        change.disable.extend(dependents);
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
    // The change takes effect when the operation is done (at once unless `operation_polls`).
    let answered =
        c.st.start_operation(&name, running_op(&op), op.clone(), Some(change));
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
    Ok(answered)
}
