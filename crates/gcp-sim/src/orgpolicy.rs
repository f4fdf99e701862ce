//! Org Policy v2 for boolean constraints, read-only: `GET /v2/{projects|folders|organizations}/X/
//! policies/CONSTRAINT` (`policies.get`: the policy set on that node, 404 when none) and
//! `GET .../policies/CONSTRAINT:getEffectivePolicy` (the closest policy up the hierarchy wins;
//! `reset` means the default; `inheritFromParent` defers to the parent; no policy anywhere is the
//! default, not enforced). Projects may be named by id; answers name them by number.

use http::Method;
use serde_json::{Value, json};

use super::access;
use super::error::{ApiError, ApiResult};
use super::server::{Ctx, Route, endpoint};

const API: &str = "orgpolicy";
const UPDATED: &str = "2026-01-05T09:30:00.000000Z";

/// Routes the Org Policy v2 paths.
pub fn route(method: &Method, segs: &[&str], verb: Option<&str>) -> Option<Route> {
    match (method.as_str(), segs, verb) {
        (
            "GET",
            [
                "v2",
                kind @ ("projects" | "folders" | "organizations"),
                id,
                "policies",
                constraint,
            ],
            v @ (None | Some("getEffectivePolicy")),
        ) => {
            let (kind, id) = ((*kind).to_owned(), (*id).to_owned());
            let constraint = constraint.trim_start_matches("constraints/").to_owned();
            if v.is_some() {
                endpoint(API, "orgpolicy.policies.getEffectivePolicy", move |c, _| {
                    effective(c, &kind, &id, &constraint)
                })
            } else {
                endpoint(API, "orgpolicy.policies.get", move |c, _| {
                    get(c, &kind, &id, &constraint)
                })
            }
        }
        _ => None,
    }
}

fn resolve(c: &Ctx<'_>, kind: &str, id: &str) -> ApiResult<(String, Vec<super::state::PolicyRef>)> {
    let chain = access::chain(c.st, kind, id).ok_or_else(|| {
        ApiError::denied_or_missing(format!(
            "Permission 'orgpolicy.policy.get' denied on resource '{kind}/{id}' (or it may not exist)."
        ))
    })?;
    let key = access::node_key(c.st, &chain[0]);
    Ok((key, chain))
}

fn effective(c: &mut Ctx<'_>, kind: &str, id: &str, constraint: &str) -> ApiResult<Value> {
    c.require("orgpolicy.policy.get")?;
    let (key, chain) = resolve(c, kind, id)?;
    let enforce = access::enforced(c.st, &chain, constraint);
    Ok(json!({
        "name": format!("{key}/policies/{constraint}"),
        "spec": {"rules": [{"enforce": enforce}]},
    }))
}

fn get(c: &mut Ctx<'_>, kind: &str, id: &str, constraint: &str) -> ApiResult<Value> {
    c.require("orgpolicy.policy.get")?;
    let (key, _) = resolve(c, kind, id)?;
    let p =
        c.st.access
            .org
            .get(&key)
            .and_then(|ps| ps.iter().find(|p| p.constraint.0 == constraint))
            .ok_or_else(|| ApiError::not_found("Requested entity was not found."))?;
    let etag = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{key}/{constraint}"),
    );
    let mut spec = json!({"etag": etag, "updateTime": UPDATED});
    if p.reset {
        spec["reset"] = json!(true);
    } else if p.inherit_from_parent {
        spec["inheritFromParent"] = json!(true);
    } else {
        spec["rules"] = json!([{"enforce": p.enforce.unwrap_or(false)}]);
    }
    Ok(json!({"name": format!("{key}/policies/{constraint}"), "spec": spec}))
}
