//! IAM v2 deny policies, read-only: `GET /v2/policies/{attachment point}/denypolicies` (paged,
//! metadata only, as Google lists them) and `GET /v2/policies/{attachment point}/denypolicies/{id}`
//! (with the rules). The attachment point is one path segment, the URL-encoded full resource name
//! without `//`: `%2F` and the doubly encoded `%252F` that gcloud and Google's clients send are both
//! accepted; projects may be named by id or number; answers name them by number with one `%2F`.

use http::Method;
use serde_json::{Value, json};

use super::access::{self, DenyPolicyState};
use super::error::{ApiError, ApiResult};
use super::paging::{self, Limits};
use super::server::{Ctx, Route, endpoint};

const API: &str = "iam";
const CREATED: &str = "2026-01-05T09:30:00.000000Z";

/// Routes the IAM v2 paths.
pub fn route(method: &Method, segs: &[&str], verb: Option<&str>) -> Option<Route> {
    match (method.as_str(), segs, verb) {
        ("GET", ["v2", "policies", point, "denypolicies"], None) => {
            let point = (*point).to_owned();
            endpoint(API, "iam.policies.listPolicies", move |c, _| {
                list(c, &point)
            })
        }
        ("GET", ["v2", "policies", point, "denypolicies", id], None) => {
            let (point, id) = ((*point).to_owned(), (*id).to_owned());
            endpoint(API, "iam.policies.get", move |c, _| get(c, &point, &id))
        }
        _ => None,
    }
}

/// `cloudresourcemanager.googleapis.com/{kind}/{id}` (as decoded once) -> the node key.
fn attachment(c: &Ctx<'_>, segment: &str) -> ApiResult<String> {
    let decoded = segment.replace("%2F", "/").replace("%2f", "/");
    let bad = || {
        ApiError::invalid(format!(
            "Invalid attachment point {decoded}: expected cloudresourcemanager.googleapis.com/{{organizations|folders|projects}}/ID, URL-encoded."
        ))
    };
    let rest = decoded
        .strip_prefix("cloudresourcemanager.googleapis.com/")
        .ok_or_else(bad)?;
    let (kind, id) = rest.split_once('/').ok_or_else(bad)?;
    let missing = || {
        ApiError::denied_or_missing(format!(
            "Permission 'iam.denypolicies.list' denied on resource '{decoded}' (or it may not exist)."
        ))
    };
    match kind {
        "projects" => {
            c.st.project_idx(id)
                .map(|i| format!("projects/{}", c.st.projects[i].number))
                .ok_or_else(missing)
        }
        "folders" if c.st.folders.contains_key(id) => Ok(format!("folders/{id}")),
        "organizations" if c.st.org.as_ref().is_some_and(|o| o.id == id) => {
            Ok(format!("organizations/{id}"))
        }
        "folders" | "organizations" if id.bytes().all(|b| b.is_ascii_digit()) => Err(missing()),
        _ => Err(bad()),
    }
}

fn to_json(key: &str, p: &DenyPolicyState, with_rules: bool) -> Value {
    let mut v = json!({
        "name": access::policy_name(key, &p.world.id.0),
        "uid": p.uid,
        "kind": "DenyPolicy",
        "displayName": p.world.display_name.clone().unwrap_or_default(),
        "etag": p.etag,
        "createTime": CREATED,
        "updateTime": CREATED,
    });
    if with_rules {
        let rules: Vec<Value> = p
            .world
            .rules
            .iter()
            .map(|r| {
                let list = |xs: &[String]| Value::from(xs.to_vec());
                let mut deny = json!({
                    "deniedPrincipals": list(&r.denied_principals.iter().map(|x| x.0.clone()).collect::<Vec<_>>()),
                    "deniedPermissions": list(&r.denied_permissions.iter().map(|x| x.0.clone()).collect::<Vec<_>>()),
                });
                if !r.exception_principals.is_empty() {
                    deny["exceptionPrincipals"] = list(
                        &r.exception_principals.iter().map(|x| x.0.clone()).collect::<Vec<_>>(),
                    );
                }
                if !r.exception_permissions.is_empty() {
                    deny["exceptionPermissions"] = list(
                        &r.exception_permissions.iter().map(|x| x.0.clone()).collect::<Vec<_>>(),
                    );
                }
                if let Some(cond) = &r.denial_condition {
                    let mut e = json!({"expression": cond.expression});
                    if let Some(t) = &cond.title {
                        e["title"] = json!(t);
                    }
                    if let Some(d) = &cond.description {
                        e["description"] = json!(d);
                    }
                    deny["denialCondition"] = e;
                }
                let mut rule = json!({"denyRule": deny});
                if let Some(d) = &r.description {
                    rule["description"] = json!(d);
                }
                rule
            })
            .collect();
        v["rules"] = Value::from(rules);
    }
    v
}

fn list(c: &mut Ctx<'_>, point: &str) -> ApiResult<Value> {
    c.require("iam.denypolicies.list")?;
    let key = attachment(c, point)?;
    let items: Vec<Value> =
        c.st.access
            .deny
            .get(&key)
            .into_iter()
            .flatten()
            .map(|p| to_json(&key, p, false))
            .collect();
    let mut page = paging::page(
        c.q("pageSize"),
        c.q("pageToken"),
        items,
        "policies",
        // IAM documents that it ignores pageSize and uses 1000; the simulator honours smaller
        // sizes so clients' paging can be exercised.
        Limits {
            default: 1000,
            max: 1000,
        },
    )?;
    // Proto3 JSON omits an empty list: a resource without deny policies answers `{}`.
    if page["policies"].as_array().is_some_and(Vec::is_empty)
        && let Some(o) = page.as_object_mut()
    {
        o.remove("policies");
    }
    Ok(page)
}

fn get(c: &mut Ctx<'_>, point: &str, id: &str) -> ApiResult<Value> {
    c.require("iam.denypolicies.get")?;
    let key = attachment(c, point)?;
    c.st.access
        .deny
        .get(&key)
        .into_iter()
        .flatten()
        .find(|p| p.world.id.0 == id)
        .map(|p| to_json(&key, p, true))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Policy {} not found.",
                access::policy_name(&key, id)
            ))
        })
}
