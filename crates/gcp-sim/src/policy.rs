//! IAM policy semantics shared by every `getIamPolicy` / `setIamPolicy` endpoint: requested versions,
//! `_withcond_` rendering for old clients, update masks, validation with Google's errors, and binding
//! deltas for audit logs. Pure functions: no state, no I/O.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::state::stable_hash;
use crate::model::{Binding, MAX_PRINCIPALS_PER_POLICY, Policy, is_member};

/// Reads `options.requestedPolicyVersion` (0 when absent) and checks it is 0, 1 or 3.
pub fn requested_version(body: &Value) -> ApiResult<i64> {
    let v = match body.pointer("/options/requestedPolicyVersion") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| ApiError::invalid("Invalid requested policy version"))?,
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| ApiError::invalid("Invalid requested policy version"))?,
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid value at 'options.requested_policy_version' (TYPE_INT32)",
            ));
        }
    };
    if matches!(v, 0 | 1 | 3) {
        Ok(v)
    } else {
        Err(ApiError::invalid(format!(
            "Invalid requested policy version: {v}. Valid versions are 0, 1 and 3."
        )))
    }
}

/// The policy as `getIamPolicy` returns it for a requested version.
///
/// A policy without conditions is version 1. When conditions exist but the caller asked for less than 3,
/// each conditional binding comes back without its condition and with role `<role>_withcond_<hash>`.
pub fn render(stored: &Policy, requested: i64) -> Policy {
    let mut out = stored.clone();
    if !stored.has_conditions() {
        out.version = 1;
        return out;
    }
    if requested >= 3 {
        out.version = 3;
        return out;
    }
    out.version = 1;
    for b in &mut out.bindings {
        if let Some(c) = b.condition.take() {
            let h = stable_hash(&format!("{}|{}|{:?}", b.role, c.expression, c.title));
            let h2 = stable_hash(&format!("{h}{}", c.expression));
            let suffix = format!("{h:016x}{:04x}", h2 & 0xffff);
            b.role = format!("{}_withcond_{suffix}", b.role);
        }
    }
    out
}

/// A parsed `SetIamPolicyRequest`.
#[derive(Debug)]
pub struct SetRequest {
    /// The policy sent.
    pub policy: Policy,
    /// Update mask paths (default `bindings`, `etag`).
    pub mask: BTreeSet<String>,
    /// The raw request, for audit logs.
    pub raw: Value,
}

/// Parses a SetIamPolicy body, naming the failing field like Google's JSON errors do.
pub fn parse_set(body: &Value) -> ApiResult<SetRequest> {
    let Some(policy_json) = body.get("policy") else {
        return Err(ApiError::invalid(
            "Request contains an invalid argument: policy is required.",
        ));
    };
    let policy: Policy = serde_path_to_error::deserialize(policy_json.clone()).map_err(|e| {
        ApiError::invalid(format!(
            "Invalid JSON payload received. Invalid value at 'policy.{}': {}",
            e.path(),
            e.inner()
        ))
    })?;
    let mask_text = match body.get("updateMask") {
        None | Some(Value::Null) => "bindings,etag".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("paths")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid value at 'update_mask' (type.googleapis.com/google.protobuf.FieldMask)",
            ));
        }
    };
    let mut mask = BTreeSet::new();
    for p in mask_text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let p = match p {
            "audit_configs" => "auditConfigs",
            other => other,
        };
        if !matches!(p, "bindings" | "etag" | "auditConfigs" | "version") {
            return Err(ApiError::invalid(format!("Invalid update_mask path: {p}")));
        }
        mask.insert(p.to_owned());
    }
    Ok(SetRequest {
        policy,
        mask,
        raw: body.clone(),
    })
}

/// Compares etags as bytes: the etag is a `bytes` field, and clients such as gcloud (apitools) send it
/// back URL-safe base64 encoded (`-`, `_`) even when the server sent standard base64 (`+`, `/`).
pub fn etag_eq(a: &str, b: &str) -> bool {
    use base64::Engine;
    let decode = |s: &str| {
        let normal: String = s.trim_end_matches('=').replace('-', "+").replace('_', "/");
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(normal)
            .ok()
    };
    match (decode(a), decode(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// How a role name resolved for a binding.
pub enum RoleCheck {
    /// Known and grantable.
    Ok,
    /// Unknown predefined role.
    UnknownPredefined,
    /// Unknown custom role.
    UnknownCustom,
}

/// Sorts as IAM returns a policy: bindings by role, the unconditional binding of a role before its
/// conditional ones (by condition title, then expression); members sorted and de-duplicated.
pub fn normalize(policy: &mut Policy) {
    for b in &mut policy.bindings {
        b.members.sort();
        b.members.dedup();
    }
    policy.bindings.sort_by(|a, b| {
        let key = |x: &Binding| {
            (
                x.role.clone(),
                x.condition.is_some(),
                x.condition.as_ref().and_then(|c| c.title.clone()),
                x.condition.as_ref().map(|c| c.expression.clone()),
            )
        };
        key(a).cmp(&key(b))
    });
}

/// Validates a set request against the stored policy and builds the new stored policy (etag not set).
///
/// `missing_member` answers Google's "does not exist" message for a member that names no principal; it
/// is asked only about members the stored policy does not already hold (those exist by construction).
pub fn apply_set(
    stored: &Policy,
    req: &SetRequest,
    check_role: impl Fn(&str) -> RoleCheck,
    missing_member: impl Fn(&str) -> Option<String>,
) -> ApiResult<Policy> {
    let incoming = &req.policy;
    if !matches!(incoming.version, 0 | 1 | 3) {
        return Err(ApiError::invalid(format!(
            "Invalid policy version: {}. Valid versions are 0, 1 and 3.",
            incoming.version
        )));
    }
    if let Some(etag) = &incoming.etag
        && !stored.etag.as_deref().is_some_and(|s| etag_eq(s, etag))
    {
        return Err(ApiError::concurrent_policy_change());
    }
    let mut next = stored.clone();
    if req.mask.contains("bindings") {
        if incoming.has_conditions() && incoming.version < 3 {
            return Err(ApiError::invalid(format!(
                "Invalid argument: Conditional role bindings require policy version 3, but the policy has version {}. \
                 Set the policy version to 3 when using IAM Conditions.",
                incoming.version
            )));
        }
        if stored.has_conditions() && incoming.version < 3 && incoming.etag.is_some() {
            return Err(ApiError::invalid(
                "Invalid argument: the existing policy contains conditional role bindings; set the policy version to 3 to modify it.",
            ));
        }
        let mut bindings: Vec<Binding> = Vec::new();
        for b in &incoming.bindings {
            if b.role.as_str().contains("_withcond_") {
                return Err(ApiError::invalid(format!(
                    "Role {} is not supported for this resource.",
                    b.role
                )));
            }
            // A role already bound stays writable (only a `strict_roles: false` world can bind a role
            // nobody defines); a new one must exist.
            let already_bound = stored.bindings.iter().any(|x| x.role == b.role);
            match if already_bound {
                RoleCheck::Ok
            } else {
                check_role(b.role.as_str())
            } {
                RoleCheck::Ok => {}
                RoleCheck::UnknownPredefined => {
                    return Err(ApiError::invalid(format!(
                        "Role {} is not supported for this resource.",
                        b.role
                    )));
                }
                RoleCheck::UnknownCustom => {
                    return Err(ApiError::invalid(format!(
                        "Role ({}) does not exist in the resource's hierarchy.",
                        b.role
                    )));
                }
            }
            for m in &b.members {
                if !m.contains(':') && !matches!(m.as_str(), "allUsers" | "allAuthenticatedUsers") {
                    return Err(ApiError::invalid(
                        "Policy members must be of the form \"<type>:<value>\".",
                    ));
                }
                if !is_member(m) {
                    return Err(ApiError::invalid(format!(
                        "Invalid argument: The member {m} is of an unknown type. Please set a valid type prefix for the member."
                    )));
                }
                if matches!(m.as_str(), "allUsers" | "allAuthenticatedUsers") {
                    return Err(ApiError::invalid(format!(
                        "Invalid argument: The member {m} is of an unknown type. Please set a valid type prefix for the member."
                    )));
                }
            }
            for m in &b.members {
                let known = stored
                    .bindings
                    .iter()
                    .any(|x| x.members.iter().any(|y| y == m));
                if !known && let Some(message) = missing_member(m) {
                    return Err(ApiError::invalid(message));
                }
            }
            let mut members: Vec<String> = Vec::new();
            for m in &b.members {
                if !members.contains(m) {
                    members.push(m.clone());
                }
            }
            if members.is_empty() {
                continue;
            }
            // Bindings with the same role and condition are merged, as IAM does.
            match bindings
                .iter_mut()
                .find(|x| x.role == b.role && x.condition == b.condition)
            {
                Some(x) => {
                    for m in members {
                        if !x.members.contains(&m) {
                            x.members.push(m);
                        }
                    }
                }
                None => bindings.push(Binding {
                    members,
                    ..b.clone()
                }),
            }
        }
        next.bindings = bindings;
    }
    if req.mask.contains("auditConfigs") {
        next.audit_configs = incoming.audit_configs.clone();
    }
    let count = next.principal_count();
    if count > MAX_PRINCIPALS_PER_POLICY {
        return Err(ApiError::invalid(format!(
            "The number of members in the policy ({count}) is larger than the maximum allowed size {MAX_PRINCIPALS_PER_POLICY}."
        )));
    }
    next.version = if next.has_conditions() { 3 } else { 1 };
    normalize(&mut next);
    Ok(next)
}

fn triples(p: &Policy) -> Vec<(String, String, Option<Value>)> {
    let mut out = Vec::new();
    for b in &p.bindings {
        let cond = b
            .condition
            .as_ref()
            .and_then(|c| serde_json::to_value(c).ok());
        for m in &b.members {
            let t = (b.role.to_string(), m.to_string(), cond.clone());
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// `bindingDeltas` between two policies: REMOVE entries first, then ADD, in binding order.
pub fn binding_deltas(before: &Policy, after: &Policy) -> Vec<Value> {
    let b = triples(before);
    let a = triples(after);
    let mut out = Vec::new();
    for (action, from, other) in [("REMOVE", &b, &a), ("ADD", &a, &b)] {
        for t in from.iter().filter(|t| !other.contains(t)) {
            let mut d = json!({"action": action, "role": t.0, "member": t.1});
            if let Some(c) = &t.2 {
                d["condition"] = c.clone();
            }
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: Value) -> Policy {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn conditional_bindings_are_mangled_for_version_one() {
        let p = policy(json!({"version":3,"etag":"BwY=","bindings":[
            {"role":"roles/viewer","members":["user:a@x.com"],"condition":{"title":"t","expression":"true"}},
            {"role":"roles/owner","members":["user:b@x.com"]}]}));
        let v1 = render(&p, 1);
        assert_eq!(v1.version, 1);
        assert!(
            v1.bindings[0]
                .role
                .as_str()
                .starts_with("roles/viewer_withcond_")
        );
        assert!(v1.bindings[0].condition.is_none());
        assert_eq!(render(&p, 3), p);
    }

    #[test]
    fn etags_compare_as_bytes_across_base64_alphabets() {
        assert!(etag_eq("BwY+/w==", "BwY-_w=="));
        assert!(etag_eq("BwY+/w==", "BwY-_w"));
        assert!(!etag_eq("BwY+/w==", "BwY+/A=="));
    }

    #[test]
    fn stale_etag_is_aborted_and_missing_etag_overwrites() {
        let stored = policy(
            json!({"version":1,"etag":"BwYA","bindings":[{"role":"roles/viewer","members":["user:a@x.com"]}]}),
        );
        let req = parse_set(&json!({"policy":{"etag":"BwYB","bindings":[]}})).unwrap();
        assert_eq!(
            apply_set(&stored, &req, |_| RoleCheck::Ok, |_| None)
                .unwrap_err()
                .status,
            "ABORTED"
        );
        let req = parse_set(&json!({"policy":{"bindings":[]}})).unwrap();
        assert!(
            apply_set(&stored, &req, |_| RoleCheck::Ok, |_| None)
                .unwrap()
                .bindings
                .is_empty()
        );
    }
}
