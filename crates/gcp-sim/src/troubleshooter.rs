//! Policy Troubleshooter v3 `POST /v3/iam:troubleshoot`: explains whether a principal has a permission on
//! a project (or folder / organization), from the world's allow policies of the resource and its
//! ancestors and from role definitions. Groups resolve through the world's `groups` key (a group not
//! listed has no members), so `MEMBERSHIP_UNKNOWN_INFO` is never needed. Conditions are evaluated by the
//! simulator's own reading of time-bound CEL (`cel.rs`): an expired grant is not access, a live one is;
//! any other condition is `UNKNOWN_CONDITIONAL`. Deny policies of the resource and its ancestors apply
//! before allow policies (`denyPolicyExplanation`).

use http::Method;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};
use super::server::{Ctx, Route, endpoint};
use super::state::{PolicyRef, State};

const API: &str = "policytroubleshooter";

/// Routes the troubleshooter path.
pub fn route(method: &Method, segs: &[&str], verb: Option<&str>) -> Option<Route> {
    match (method.as_str(), segs, verb) {
        ("POST", ["v3", "iam"], Some("troubleshoot")) => {
            endpoint(API, "policytroubleshooter.iam.troubleshoot", |c, b| {
                troubleshoot(c, b)
            })
        }
        // gcloud 528's `policy-troubleshoot iam` calls v2alpha1 (same shape as v1): answer from the
        // same explanation with the older enum names.
        ("POST", ["v1" | "v2alpha1", "iam"], Some("troubleshoot")) => {
            endpoint(API, "policytroubleshooter.iam.troubleshoot", |c, b| {
                troubleshoot(c, b).map(|v3| to_v1(&v3))
            })
        }
        _ => None,
    }
}

/// True if `member` (a binding member) includes the principal email, following groups.
pub fn member_matches(st: &State, member: &str, email: &str, depth: u32) -> bool {
    if depth > 8 {
        return false;
    }
    let lower = member.to_ascii_lowercase();
    match lower.split_once(':') {
        Some(("user" | "serviceaccount", e)) => e == email,
        Some(("group", g)) => st
            .groups
            .get(g)
            .is_some_and(|ms| ms.iter().any(|m| member_matches(st, m, email, depth + 1))),
        Some(("domain", d)) => email.rsplit_once('@').is_some_and(|(_, ed)| ed == d),
        _ => matches!(member, "allUsers" | "allAuthenticatedUsers"),
    }
}

fn fqdn(permission: &str) -> String {
    match permission.split_once('.') {
        Some((service, rest)) if !permission.contains('/') => {
            format!("{service}.googleapis.com/{rest}")
        }
        _ => permission.to_owned(),
    }
}

fn troubleshoot(c: &mut Ctx<'_>, body: &Value) -> ApiResult<Value> {
    let tuple = body
        .get("accessTuple")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ApiError::invalid("Request contains an invalid argument: accessTuple is required.")
        })?;
    let field = |k: &str| {
        tuple
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "Request contains an invalid argument: accessTuple.{k} is required."
                ))
            })
    };
    let principal = field("principal")?.to_ascii_lowercase();
    let resource = field("fullResourceName")?.to_owned();
    let permission = field("permission")?.to_owned();
    if !principal.contains('@') || principal.contains(':') {
        return Err(ApiError::invalid(
            "Request contains an invalid argument: principal must be an email address.",
        ));
    }
    // `//service.googleapis.com/projects/P[/...]`, or folders / organizations.
    let path = resource
        .strip_prefix("//")
        .and_then(|r| r.split_once('/'))
        .map(|(_, p)| p)
        .ok_or_else(|| ApiError::invalid(format!("Invalid full resource name {resource}.")))?;
    let mut parts = path.split('/');
    let target = match (parts.next(), parts.next()) {
        (Some("projects"), Some(p)) => c.st.project_idx(p).map(|i| c.st.ancestors(i)),
        (Some("folders"), Some(f)) if c.st.folders.contains_key(f) => {
            // Walk the folder chain.
            let mut chain = vec![PolicyRef::Folder(f.to_owned())];
            let mut cur = c.st.folders.get(f).map(|x| x.parent.clone());
            while let Some(p) = cur.take() {
                if chain.len() > 100 {
                    break;
                }
                if let Some(id) = p.strip_prefix("folders/") {
                    chain.push(PolicyRef::Folder(id.to_owned()));
                    cur = c.st.folders.get(id).map(|x| x.parent.clone());
                } else if c.st.org.is_some() {
                    chain.push(PolicyRef::Organization);
                }
            }
            Some(chain)
        }
        (Some("organizations"), Some(o)) if c.st.org.as_ref().is_some_and(|org| org.id == o) => {
            Some(vec![PolicyRef::Organization])
        }
        _ => None,
    };
    let chain =
        target.ok_or_else(|| ApiError::not_found(format!("Resource {resource} not found.")))?;
    let mut explained = Vec::new();
    let mut overall_granted = false;
    let mut overall_conditional = false;
    for r in &chain {
        let Some(policy) = c.st.policy(r) else {
            continue;
        };
        let name = c.st.resource_name(r);
        let mut bindings = Vec::new();
        let mut policy_state = "ALLOW_ACCESS_STATE_NOT_GRANTED";
        for b in &policy.bindings {
            let role_perm = match c.st.role(b.role.as_str()) {
                Some(def) if def.included_permissions.iter().any(|p| p == &permission) => {
                    "ROLE_PERMISSION_INCLUDED"
                }
                Some(_) => "ROLE_PERMISSION_NOT_INCLUDED",
                None => "ROLE_PERMISSION_UNKNOWN_INFO",
            };
            let mut memberships = Map::new();
            let mut any = false;
            for m in &b.members {
                let matched = member_matches(c.st, m.as_str(), &principal, 0);
                any |= matched;
                memberships.insert(
                    m.to_string(),
                    json!({"membership": if matched { "MEMBERSHIP_MATCHED" } else { "MEMBERSHIP_NOT_MATCHED" },
                           "relevance": if matched { "HEURISTIC_RELEVANCE_HIGH" } else { "HEURISTIC_RELEVANCE_NORMAL" }}),
                );
            }
            let included = role_perm == "ROLE_PERMISSION_INCLUDED";
            let truth = b
                .condition
                .as_ref()
                .map(|cond| super::cel::evaluate_now(&cond.expression));
            let state = match (included && any, truth) {
                (true, None | Some(super::cel::Truth::True)) => "ALLOW_ACCESS_STATE_GRANTED",
                (true, Some(super::cel::Truth::Unknown)) => {
                    "ALLOW_ACCESS_STATE_UNKNOWN_CONDITIONAL"
                }
                _ => "ALLOW_ACCESS_STATE_NOT_GRANTED",
            };
            let upgrades = state == "ALLOW_ACCESS_STATE_GRANTED"
                || (state == "ALLOW_ACCESS_STATE_UNKNOWN_CONDITIONAL"
                    && policy_state != "ALLOW_ACCESS_STATE_GRANTED");
            if upgrades {
                policy_state = state;
            }
            let relevance = if included || any {
                "HEURISTIC_RELEVANCE_HIGH"
            } else {
                "HEURISTIC_RELEVANCE_NORMAL"
            };
            let mut e = json!({
                "allowAccessState": state,
                "role": b.role,
                "rolePermission": role_perm,
                "rolePermissionRelevance": if included { "HEURISTIC_RELEVANCE_HIGH" } else { "HEURISTIC_RELEVANCE_NORMAL" },
                "memberships": memberships,
                "combinedMembership": {"membership": if any { "MEMBERSHIP_MATCHED" } else { "MEMBERSHIP_NOT_MATCHED" }, "relevance": relevance},
                "relevance": relevance,
            });
            if let Some(cond) = &b.condition {
                e["condition"] = serde_json::to_value(cond).unwrap_or(Value::Null);
                match truth {
                    Some(super::cel::Truth::True) => {
                        e["conditionExplanation"] = json!({"value": true});
                    }
                    Some(super::cel::Truth::False) => {
                        e["conditionExplanation"] = json!({"value": false});
                    }
                    _ => {}
                }
            }
            bindings.push(e);
        }
        overall_granted |= policy_state == "ALLOW_ACCESS_STATE_GRANTED";
        overall_conditional |= policy_state == "ALLOW_ACCESS_STATE_UNKNOWN_CONDITIONAL";
        explained.push(json!({
            "allowAccessState": policy_state,
            "fullResourceName": format!("//cloudresourcemanager.googleapis.com/{name}"),
            "policy": policy,
            "bindingExplanations": bindings,
            "relevance": if policy_state == "ALLOW_ACCESS_STATE_NOT_GRANTED" { "HEURISTIC_RELEVANCE_NORMAL" } else { "HEURISTIC_RELEVANCE_HIGH" },
        }));
    }
    let deny = super::access::deny_state(c.st, &chain, &principal, &fqdn(&permission));
    let (deny_state, deny_resources) = match &deny {
        super::access::DenyState::NotDenied => ("DENY_ACCESS_STATE_NOT_DENIED", Vec::new()),
        super::access::DenyState::Denied(key, name) => (
            "DENY_ACCESS_STATE_DENIED",
            vec![
                json!({"denyAccessState": "DENY_ACCESS_STATE_DENIED", "fullResourceName": format!("//cloudresourcemanager.googleapis.com/{key}"), "explainedPolicies": [{"denyAccessState": "DENY_ACCESS_STATE_DENIED", "policy": {"name": name}}]}),
            ],
        ),
        super::access::DenyState::Conditional(key, name) => (
            "DENY_ACCESS_STATE_UNKNOWN_CONDITIONAL",
            vec![
                json!({"denyAccessState": "DENY_ACCESS_STATE_UNKNOWN_CONDITIONAL", "fullResourceName": format!("//cloudresourcemanager.googleapis.com/{key}"), "explainedPolicies": [{"denyAccessState": "DENY_ACCESS_STATE_UNKNOWN_CONDITIONAL", "policy": {"name": name}}]}),
            ],
        ),
    };
    let (overall, allow) = if overall_granted {
        ("CAN_ACCESS", "ALLOW_ACCESS_STATE_GRANTED")
    } else if overall_conditional {
        (
            "UNKNOWN_CONDITIONAL",
            "ALLOW_ACCESS_STATE_UNKNOWN_CONDITIONAL",
        )
    } else {
        ("CANNOT_ACCESS", "ALLOW_ACCESS_STATE_NOT_GRANTED")
    };
    let overall = match deny {
        super::access::DenyState::Denied(..) => "CANNOT_ACCESS",
        super::access::DenyState::Conditional(..) if overall == "CAN_ACCESS" => {
            "UNKNOWN_CONDITIONAL"
        }
        _ => overall,
    };
    Ok(json!({
        "accessTuple": {"principal": principal, "fullResourceName": resource, "permission": permission, "permissionFqdn": fqdn(&permission)},
        "overallAccessState": overall,
        "allowPolicyExplanation": {"allowAccessState": allow, "explainedPolicies": explained, "relevance": "HEURISTIC_RELEVANCE_HIGH"},
        "denyPolicyExplanation": {"denyAccessState": deny_state, "permissionDeniable": true, "explainedResources": deny_resources, "relevance": if deny_resources.is_empty() { "HEURISTIC_RELEVANCE_NORMAL" } else { "HEURISTIC_RELEVANCE_HIGH" }},
    }))
}

/// Renames a v3 enum value to its v1 / v2alpha1 spelling.
fn v1_enum(s: &str) -> String {
    match s {
        "CAN_ACCESS" | "ALLOW_ACCESS_STATE_GRANTED" => "GRANTED".into(),
        "CANNOT_ACCESS" | "ALLOW_ACCESS_STATE_NOT_GRANTED" => "NOT_GRANTED".into(),
        "UNKNOWN_CONDITIONAL" | "ALLOW_ACCESS_STATE_UNKNOWN_CONDITIONAL" => {
            "UNKNOWN_CONDITIONAL".into()
        }
        "MEMBERSHIP_MATCHED" => "MEMBERSHIP_INCLUDED".into(),
        "MEMBERSHIP_NOT_MATCHED" => "MEMBERSHIP_NOT_INCLUDED".into(),
        "ROLE_PERMISSION_UNKNOWN_INFO" => "ROLE_PERMISSION_UNKNOWN_INFO_DENIED".into(),
        "HEURISTIC_RELEVANCE_HIGH" => "HIGH".into(),
        "HEURISTIC_RELEVANCE_NORMAL" => "NORMAL".into(),
        other => other.into(),
    }
}

/// The v1 / v2alpha1 `TroubleshootIamPolicyResponse` for a v3 answer.
fn to_v1(v3: &Value) -> Value {
    let binding = |b: &Value| {
        let mut out = json!({
            "access": v1_enum(b["allowAccessState"].as_str().unwrap_or_default()),
            "role": b["role"],
            "rolePermission": v1_enum(b["rolePermission"].as_str().unwrap_or_default()),
            "rolePermissionRelevance": v1_enum(b["rolePermissionRelevance"].as_str().unwrap_or_default()),
            "relevance": v1_enum(b["relevance"].as_str().unwrap_or_default()),
        });
        let mut memberships = Map::new();
        if let Some(ms) = b["memberships"].as_object() {
            for (k, m) in ms {
                memberships.insert(
                    k.clone(),
                    json!({"membership": v1_enum(m["membership"].as_str().unwrap_or_default()),
                           "relevance": v1_enum(m["relevance"].as_str().unwrap_or_default())}),
                );
            }
        }
        out["memberships"] = Value::Object(memberships);
        if let Some(c) = b.get("condition") {
            out["condition"] = c.clone();
        }
        out
    };
    let policies: Vec<Value> = v3["allowPolicyExplanation"]["explainedPolicies"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    json!({
                        "access": v1_enum(p["allowAccessState"].as_str().unwrap_or_default()),
                        "fullResourceName": p["fullResourceName"],
                        "policy": p["policy"],
                        "bindingExplanations": p["bindingExplanations"].as_array().map(|bs| bs.iter().map(binding).collect::<Vec<_>>()).unwrap_or_default(),
                        "relevance": v1_enum(p["relevance"].as_str().unwrap_or_default()),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "access": v1_enum(v3["overallAccessState"].as_str().unwrap_or_default()),
        "explainedPolicies": policies,
    })
}
