//! Container (GKE) v1: clusters list (all locations with `missingZones`, a concrete location, legacy
//! `zones/`), cluster get, node pools list/get/create, and operations get. Literal API values as Google
//! returns them: `"autopilot": {}` on Standard clusters, `{"enabled": true}` on Autopilot,
//! `"serviceAccount": "default"` for the Compute Engine default account. A project without
//! `container.googleapis.com` enabled answers 403 `SERVICE_DISABLED`.

use http::Method;
use serde_json::{Value, json};

use super::audit::{AuditRecord, authz, operation_id};
use super::error::{ApiError, ApiResult};
use super::server::{Ctx, Route, endpoint};
use super::state::{now_rfc3339, stable_hash};
use super::world::{WorldCluster, WorldNodePool};

const API: &str = "container";
const VERSION: &str = "1.33.5-gke.1201000";
const SCOPES: [&str; 1] = ["https://www.googleapis.com/auth/cloud-platform"];

/// Routes Container paths.
pub fn route(method: &Method, segs: &[&str], verb: Option<&str>) -> Option<Route> {
    let owned = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match (method.as_str(), segs, verb) {
        ("GET", ["v1", "projects", _, "locations" | "zones", _, "clusters"], None) => {
            let a = owned(segs);
            endpoint(API, "container.clusters.list", move |c, _| {
                list_clusters(c, &a[2], &a[4])
            })
        }
        ("GET", ["v1", "projects", _, "locations" | "zones", _, "clusters", _], None) => {
            let a = owned(segs);
            endpoint(API, "container.clusters.get", move |c, _| {
                get_cluster(c, &a[2], &a[4], &a[6])
            })
        }
        (
            "GET",
            [
                "v1",
                "projects",
                _,
                "locations" | "zones",
                _,
                "clusters",
                _,
                "nodePools",
            ],
            None,
        ) => {
            let a = owned(segs);
            endpoint(API, "container.nodePools.list", move |c, _| {
                list_pools(c, &a[2], &a[4], &a[6])
            })
        }
        (
            "GET",
            [
                "v1",
                "projects",
                _,
                "locations" | "zones",
                _,
                "clusters",
                _,
                "nodePools",
                _,
            ],
            None,
        ) => {
            let a = owned(segs);
            endpoint(API, "container.nodePools.get", move |c, _| {
                get_pool(c, &a[2], &a[4], &a[6], &a[8])
            })
        }
        (
            "POST",
            [
                "v1",
                "projects",
                _,
                "locations" | "zones",
                _,
                "clusters",
                _,
                "nodePools",
            ],
            None,
        ) => {
            let a = owned(segs);
            endpoint(API, "container.nodePools.create", move |c, b| {
                create_pool(c, &a[2], &a[4], &a[6], b)
            })
        }
        (
            "GET",
            [
                "v1",
                "projects",
                _,
                "locations" | "zones",
                _,
                "operations",
                _,
            ],
            None,
        ) => {
            let a = owned(segs);
            endpoint(API, "container.operations.get", move |c, _| {
                get_operation(c, &a[2], &a[6])
            })
        }
        _ => None,
    }
}

/// Project index after the existence and API-enabled checks.
fn project(c: &Ctx<'_>, p: &str) -> ApiResult<usize> {
    let i = c.st.project_idx(p).ok_or_else(|| {
        ApiError::denied_or_missing(format!("Permission denied on resource project {p}."))
    })?;
    let proj = &c.st.projects[i];
    if !proj.services.contains("container.googleapis.com") {
        return Err(ApiError::service_disabled(
            "container.googleapis.com",
            "Kubernetes Engine API",
            &proj.number,
        ));
    }
    Ok(i)
}

fn zones_of(location: &str) -> Vec<String> {
    let is_zone = location.rsplit('-').next().is_some_and(|s| s.len() == 1);
    if is_zone {
        vec![location.to_owned()]
    } else {
        ["a", "b", "c"]
            .iter()
            .map(|z| format!("{location}-{z}"))
            .collect()
    }
}

fn pool_json(project: &str, cl: &WorldCluster, np: &WorldNodePool) -> Value {
    json!({
        "name": np.name,
        "config": {
            "machineType": "e2-medium",
            "diskSizeGb": 100,
            "oauthScopes": SCOPES,
            "imageType": "COS_CONTAINERD",
            "serviceAccount": np.service_account,
            "diskType": "pd-balanced"
        },
        "initialNodeCount": 1,
        "locations": zones_of(&cl.location),
        "management": {"autoRepair": true, "autoUpgrade": true},
        "selfLink": format!("https://container.googleapis.com/v1/projects/{project}/locations/{}/clusters/{}/nodePools/{}", cl.location, cl.name, np.name),
        "status": "RUNNING",
        "version": VERSION,
        "upgradeSettings": {"maxSurge": 1, "strategy": "SURGE"},
        "etag": format!("{:016x}", stable_hash(&format!("{project}/{}/{}", cl.name, np.name))),
    })
}

/// A cluster in the Container v1 `Cluster` shape (also Cloud Asset's `resource.data`).
pub fn cluster_json(project: &str, cl: &WorldCluster) -> Value {
    let h = stable_hash(&format!("{project}/{}/{}", cl.location, cl.name));
    let mut v = json!({
        "name": cl.name,
        "location": cl.location,
        "zone": cl.location,
        "locations": zones_of(&cl.location),
        "status": cl.status.clone().unwrap_or_else(|| "RUNNING".into()),
        "selfLink": format!("https://container.googleapis.com/v1/projects/{project}/locations/{}/clusters/{}", cl.location, cl.name),
        "currentMasterVersion": VERSION,
        "currentNodeVersion": VERSION,
        "initialClusterVersion": VERSION,
        "createTime": "2025-03-01T10:00:00+00:00",
        "network": "default",
        "subnetwork": "default",
        "releaseChannel": {"channel": "REGULAR"},
        "id": format!("{h:016x}{:016x}", stable_hash(&cl.name)),
        "etag": format!("{:08x}-sim", h >> 32),
    });
    let defaults = || {
        json!({
            "serviceAccount": cl.autoprovisioning_service_account.clone().unwrap_or_else(|| "default".into()),
            "oauthScopes": SCOPES,
            "management": {"autoRepair": true, "autoUpgrade": true},
            "imageType": "COS_CONTAINERD",
            "upgradeSettings": {"maxSurge": 1, "strategy": "SURGE"}
        })
    };
    if cl.autopilot {
        v["autopilot"] = json!({"enabled": true});
        v["autoscaling"] = json!({
            "enableNodeAutoprovisioning": true,
            "autoprovisioningNodePoolDefaults": defaults(),
            "autoscalingProfile": "OPTIMIZE_UTILIZATION"
        });
    } else {
        v["autopilot"] = json!({});
        // `autoprovisioning_service_account` on a Standard cluster means NAP is on with that account.
        let nap = cl.node_auto_provisioning || cl.autoprovisioning_service_account.is_some();
        v["autoscaling"] = if nap {
            json!({"enableNodeAutoprovisioning": true, "autoprovisioningNodePoolDefaults": defaults(), "autoscalingProfile": "BALANCED"})
        } else {
            json!({"autoscalingProfile": "BALANCED"})
        };
    }
    v["loggingService"] = json!("logging.googleapis.com/kubernetes");
    v["monitoringService"] = json!("monitoring.googleapis.com/kubernetes");
    v["endpoint"] = json!(format!(
        "34.{}.{}.{}",
        (h >> 16) & 0xff,
        (h >> 8) & 0xff,
        (h & 0xfe) + 1
    ));
    if let Some(first) = cl.node_pools.first() {
        // Deprecated but still served: the first node pool's config.
        v["nodeConfig"] = pool_json(project, cl, first)["config"].clone();
    }
    if !cl.node_pools.is_empty() {
        v["nodePools"] = Value::Array(
            cl.node_pools
                .iter()
                .map(|np| pool_json(project, cl, np))
                .collect(),
        );
    }
    v
}

fn list_clusters(c: &mut Ctx<'_>, p: &str, loc: &str) -> ApiResult<Value> {
    c.require("container.clusters.list")?;
    let i = project(c, p)?;
    let proj = &c.st.projects[i];
    let clusters: Vec<Value> = proj
        .clusters
        .iter()
        .filter(|cl| loc == "-" || cl.location == loc)
        .map(|cl| cluster_json(&proj.id, cl))
        .collect();
    let mut v = json!({});
    if !clusters.is_empty() {
        v["clusters"] = Value::Array(clusters);
    }
    if loc == "-" && !proj.missing_zones.is_empty() {
        v["missingZones"] = json!(proj.missing_zones);
    }
    Ok(v)
}

fn cluster_idx(c: &Ctx<'_>, i: usize, loc: &str, name: &str) -> ApiResult<usize> {
    let proj = &c.st.projects[i];
    proj.clusters
        .iter()
        .position(|cl| cl.name == name && (loc == "-" || cl.location == loc))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Not found: projects/{}/locations/{loc}/clusters/{name}.",
                proj.id
            ))
        })
}

fn get_cluster(c: &mut Ctx<'_>, p: &str, loc: &str, name: &str) -> ApiResult<Value> {
    c.require("container.clusters.get")?;
    let i = project(c, p)?;
    let ci = cluster_idx(c, i, loc, name)?;
    let proj = &c.st.projects[i];
    Ok(cluster_json(&proj.id, &proj.clusters[ci]))
}

fn list_pools(c: &mut Ctx<'_>, p: &str, loc: &str, name: &str) -> ApiResult<Value> {
    c.require("container.clusters.get")?;
    let i = project(c, p)?;
    let ci = cluster_idx(c, i, loc, name)?;
    let proj = &c.st.projects[i];
    let cl = &proj.clusters[ci];
    let pools: Vec<Value> = cl
        .node_pools
        .iter()
        .map(|np| pool_json(&proj.id, cl, np))
        .collect();
    Ok(if pools.is_empty() {
        json!({})
    } else {
        json!({ "nodePools": pools })
    })
}

fn get_pool(c: &mut Ctx<'_>, p: &str, loc: &str, name: &str, pool: &str) -> ApiResult<Value> {
    c.require("container.clusters.get")?;
    let i = project(c, p)?;
    let ci = cluster_idx(c, i, loc, name)?;
    let proj = &c.st.projects[i];
    let cl = &proj.clusters[ci];
    let np = cl
        .node_pools
        .iter()
        .find(|np| np.name == pool)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Not found: projects/{}/locations/{loc}/clusters/{name}/nodePools/{pool}.",
                proj.id
            ))
        })?;
    Ok(pool_json(&proj.id, cl, np))
}

fn create_pool(c: &mut Ctx<'_>, p: &str, loc: &str, name: &str, body: &Value) -> ApiResult<Value> {
    c.require("container.clusters.update")?;
    let i = project(c, p)?;
    let ci = cluster_idx(c, i, loc, name)?;
    let spec = body
        .get("nodePool")
        .filter(|v| v.is_object())
        .ok_or_else(|| ApiError::invalid("Invalid argument: nodePool must be specified."))?;
    let pool_name = spec
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 40 && n.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'))
        .ok_or_else(|| ApiError::invalid("Invalid argument: nodePool.name must be a valid name (lower-case letters, digits, hyphens)."))?
        .to_owned();
    let sa = match spec.pointer("/config/serviceAccount") {
        None | Some(Value::Null) => "default".to_owned(),
        Some(Value::String(s)) if s == "default" || crate::model::is_email(s) => s.clone(),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Invalid argument: nodePool.config.serviceAccount {other} is not a service account."
            )));
        }
    };
    let (project_id, number) = (c.st.projects[i].id.clone(), c.st.projects[i].number.clone());
    let cl = &mut c.st.projects[i].clusters[ci];
    if cl.autopilot {
        return Err(ApiError::precondition(
            "Autopilot clusters do not support node pool creation.",
        ));
    }
    if cl.node_pools.iter().any(|np| np.name == pool_name) {
        return Err(ApiError::already_exists(format!(
            "Already exists: projects/{project_id}/locations/{loc}/clusters/{name}/nodePools/{pool_name}."
        )));
    }
    cl.node_pools.push(WorldNodePool {
        name: pool_name.clone(),
        service_account: sa,
    });
    let cluster_location = cl.location.clone();
    let op_name = format!(
        "operation-{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
        operation_id("")
    );
    let now = now_rfc3339();
    let base = format!(
        "https://container.googleapis.com/v1/projects/{number}/locations/{cluster_location}"
    );
    let op = json!({
        "name": op_name,
        "zone": cluster_location,
        "operationType": "CREATE_NODE_POOL",
        "status": "DONE",
        "selfLink": format!("{base}/operations/{op_name}"),
        "targetLink": format!("{base}/clusters/{name}/nodePools/{pool_name}"),
        "startTime": now,
        "endTime": now,
    });
    let answered = c.st.start_operation(
        &format!("container/{project_id}/{op_name}"),
        running_op(&op),
        op.clone(),
        None,
    );
    let cluster_res = format!("projects/{project_id}/zones/{cluster_location}/clusters/{name}");
    let resource_name = format!("{cluster_res}/nodePools/{pool_name}");
    let resource = json!({"type": "gke_nodepool", "labels": {"cluster_name": name, "location": cluster_location, "nodepool_name": pool_name, "project_id": project_id}});
    let mut response = op.clone();
    response["@type"] = json!("type.googleapis.com/google.container.v1alpha1.Operation");
    response["status"] = json!("PENDING");
    let first = AuditRecord {
        log_parent: format!("projects/{project_id}"),
        service_name: "container.googleapis.com".into(),
        method_name: "google.container.v1.ClusterManager.CreateNodePool".into(),
        resource_name: resource_name.clone(),
        caller: c.caller.clone(),
        user_agent: c.user_agent.clone(),
        authorization: vec![authz(
            &cluster_res,
            "container.clusters.update",
            json!({"name": cluster_res, "service": "container.googleapis.com", "type": "container.googleapis.com/Cluster"}),
        )],
        request: Some(json!({
            "@type": "type.googleapis.com/google.container.v1alpha1.CreateNodePoolRequest",
            "nodePool": spec,
            "parent": format!("projects/{project_id}/locations/{cluster_location}/clusters/{name}")
        })),
        response: Some(response),
        resource_location: Some(json!({"currentLocations": [cluster_location]})),
        resource: resource.clone(),
        operation: Some(
            json!({"id": op_name, "producer": "container.googleapis.com", "first": true}),
        ),
        ..Default::default()
    };
    let last = AuditRecord {
        request: None,
        response: None,
        authorization: Vec::new(),
        metadata: Some(
            json!({"operationType": "CREATE_NODE_POOL", "requestID": format!("0x{:016x}", stable_hash(&op_name))}),
        ),
        operation: Some(
            json!({"id": op_name, "producer": "container.googleapis.com", "last": true}),
        ),
        system: true,
        ..first.clone()
    };
    c.audit.push(first);
    c.audit.push(last);
    Ok(answered)
}

/// A container operation as it looks while running.
fn running_op(done: &Value) -> Value {
    let mut op = done.clone();
    op["status"] = json!("RUNNING");
    if let Some(o) = op.as_object_mut() {
        o.remove("endTime");
    }
    op
}

fn get_operation(c: &mut Ctx<'_>, p: &str, op: &str) -> ApiResult<Value> {
    c.require("container.operations.get")?;
    let i = project(c, p)?;
    let key = format!("container/{}/{op}", c.st.projects[i].id);
    c.st.poll_operation(&key, running_op)
        .ok_or_else(|| ApiError::not_found(format!("Not found: operation {op}.")))
}
