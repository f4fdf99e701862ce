//! Request-body field checks: Google's front end rejects a JSON body that names a field the request
//! message does not have (`400 Invalid JSON payload received. Unknown name "bogus" at 'policy': Cannot
//! find field.`), in lowerCamelCase or the proto's snake_case spelling. Each endpoint names the message
//! its body is; fields of free-form messages (`Struct`, maps, a node pool spec) are not checked.
//!
//! Query parameters likewise: a parameter the method's discovery document does not declare, other
//! than the standard system parameters, is refused with `400 Invalid JSON payload received. Unknown
//! name "x": Cannot bind query parameter. Field 'x' could not be found in request message.`

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// The shape of one field's value.
#[derive(Clone, Copy)]
pub enum Kind {
    /// A scalar, a list of scalars, or anything not checked further.
    Any,
    /// A message (or a list of messages) with these fields.
    Msg(&'static [(&'static str, Kind)]),
}

const EXPR: &[(&str, Kind)] = &[
    ("expression", Kind::Any),
    ("title", Kind::Any),
    ("description", Kind::Any),
    ("location", Kind::Any),
];
const BINDING: &[(&str, Kind)] = &[
    ("role", Kind::Any),
    ("members", Kind::Any),
    ("condition", Kind::Msg(EXPR)),
];
const AUDIT_LOG_CONFIG: &[(&str, Kind)] = &[("logType", Kind::Any), ("exemptedMembers", Kind::Any)];
const AUDIT_CONFIG: &[(&str, Kind)] = &[
    ("service", Kind::Any),
    ("auditLogConfigs", Kind::Msg(AUDIT_LOG_CONFIG)),
];
const POLICY: &[(&str, Kind)] = &[
    ("version", Kind::Any),
    ("etag", Kind::Any),
    ("bindings", Kind::Msg(BINDING)),
    ("auditConfigs", Kind::Msg(AUDIT_CONFIG)),
];
const SET_IAM_POLICY: &[(&str, Kind)] = &[("policy", Kind::Msg(POLICY)), ("updateMask", Kind::Any)];
const OPTIONS: &[(&str, Kind)] = &[("requestedPolicyVersion", Kind::Any)];
const GET_IAM_POLICY: &[(&str, Kind)] = &[("options", Kind::Msg(OPTIONS))];
const TEST_IAM_PERMISSIONS: &[(&str, Kind)] = &[("permissions", Kind::Any)];
const EMPTY: &[(&str, Kind)] = &[];
const LIST_LOG_ENTRIES: &[(&str, Kind)] = &[
    ("resourceNames", Kind::Any),
    ("projectIds", Kind::Any),
    ("filter", Kind::Any),
    ("orderBy", Kind::Any),
    ("pageSize", Kind::Any),
    ("pageToken", Kind::Any),
];
const MARK: &[(&str, Kind)] = &[("etag", Kind::Any), ("stateMetadata", Kind::Any)];
const MARK_DISMISSED: &[(&str, Kind)] = &[("etag", Kind::Any)];
const DISABLE_SERVICE: &[(&str, Kind)] = &[
    ("disableDependentServices", Kind::Any),
    ("checkIfServiceHasUsage", Kind::Any),
];
const ACCESS_TUPLE: &[(&str, Kind)] = &[
    ("principal", Kind::Any),
    ("fullResourceName", Kind::Any),
    ("permission", Kind::Any),
    ("conditionContext", Kind::Any),
];
const TROUBLESHOOT: &[(&str, Kind)] = &[("accessTuple", Kind::Msg(ACCESS_TUPLE))];
const CREATE_NODE_POOL: &[(&str, Kind)] = &[
    ("nodePool", Kind::Any),
    ("projectId", Kind::Any),
    ("zone", Kind::Any),
    ("clusterId", Kind::Any),
    ("parent", Kind::Any),
];
const SEARCH_ORGANIZATIONS_V1: &[(&str, Kind)] = &[
    ("filter", Kind::Any),
    ("pageSize", Kind::Any),
    ("pageToken", Kind::Any),
];

/// The request message of an endpoint's body (`None`: the endpoint takes no body, or is not checked).
pub fn body_of(endpoint: &str) -> Option<&'static [(&'static str, Kind)]> {
    let tail = endpoint.rsplit('.').next().unwrap_or("");
    Some(match (endpoint, tail) {
        (_, "setIamPolicy") => SET_IAM_POLICY,
        (_, "getIamPolicy") => GET_IAM_POLICY,
        (_, "testIamPermissions") => TEST_IAM_PERMISSIONS,
        ("logging.entries.list", _) => LIST_LOG_ENTRIES,
        (_, "markClaimed" | "markSucceeded" | "markFailed") => MARK,
        (_, "markDismissed") => MARK_DISMISSED,
        ("serviceusage.services.disable", _) => DISABLE_SERVICE,
        (
            "serviceusage.services.enable"
            | "cloudresourcemanager.projects.getAncestry"
            | "iam.serviceAccounts.undelete"
            | "iam.serviceAccounts.enable"
            | "iam.serviceAccounts.disable",
            _,
        ) => EMPTY,
        ("policytroubleshooter.iam.troubleshoot", _) => TROUBLESHOOT,
        ("container.nodePools.create", _) => CREATE_NODE_POOL,
        ("cloudresourcemanager.organizations.search", _) => SEARCH_ORGANIZATIONS_V1,
        _ => return None,
    })
}

/// The standard parameters every discovery document declares (`$`-prefixed as GAPIC REST clients send
/// them, e.g. `$alt=json;enum-encoding=int`, or plain).
const SYSTEM_PARAMETERS: &[&str] = &[
    "$.xgafv",
    "access_token",
    "alt",
    "callback",
    "fields",
    "key",
    "oauth_token",
    "prettyPrint",
    "quotaUser",
    "upload_protocol",
    "uploadType",
];

const PAGE: &[&str] = &["pageSize", "pageToken"];
const FILTER_PAGE: &[&str] = &["filter", "pageSize", "pageToken"];
const QUERY_PAGE: &[&str] = &["query", "pageSize", "pageToken"];
const PARENT_PAGE_DELETED: &[&str] = &["parent", "pageSize", "pageToken", "showDeleted"];

/// The query parameters an endpoint's method declares in its discovery document, besides the system
/// parameters. `segs` is the request path (version first), which tells v1 from v3 and Container's
/// `projects/*/zones/*` methods from its `projects/*/locations/*` ones. Methods whose request is the
/// whole body (`body: "*"`: every POST here) and `get`s named by their path declare none.
pub fn query_of(endpoint: &str, segs: &[&str]) -> &'static [&'static str] {
    let version = segs.first().copied().unwrap_or("");
    let zones = segs.get(3) == Some(&"zones");
    match endpoint {
        "cloudresourcemanager.projects.list" if version == "v1" => FILTER_PAGE,
        "cloudresourcemanager.projects.list" | "cloudresourcemanager.folders.list" => {
            PARENT_PAGE_DELETED
        }
        "cloudresourcemanager.projects.search" => QUERY_PAGE,
        "cloudresourcemanager.organizations.search" | "cloudresourcemanager.folders.search"
            if version == "v3" =>
        {
            QUERY_PAGE
        }
        "iam.roles.list" if segs.len() == 2 => {
            &["parent", "pageSize", "pageToken", "view", "showDeleted"]
        }
        "iam.roles.list" => &["pageSize", "pageToken", "view", "showDeleted"],
        "iam.serviceAccounts.list" | "iam.policies.listPolicies" => PAGE,
        "container.clusters.list" | "container.nodePools.list" if zones => &["parent"],
        "container.clusters.get" | "container.nodePools.get" | "container.operations.get"
            if zones =>
        {
            &["name"]
        }
        "container.clusters.list" => &["projectId", "zone"],
        "container.clusters.get" | "container.nodePools.list" => {
            &["projectId", "zone", "clusterId"]
        }
        "container.nodePools.get" => &["projectId", "zone", "clusterId", "nodePoolId"],
        "container.operations.get" => &["projectId", "zone", "operationId"],
        "recommender.recommendations.list" | "serviceusage.services.list" => FILTER_PAGE,
        "cloudasset.assets.list" => &[
            "assetTypes",
            "contentType",
            "pageSize",
            "pageToken",
            "readTime",
            "relationshipTypes",
        ],
        "cloudidentity.groups.lookup" => &["groupKey.id", "groupKey.namespace"],
        "cloudidentity.groups.memberships.checkTransitiveMembership" => &["query"],
        _ => &[],
    }
}

/// `pageSize` -> `page_size`, `groupKey.id` -> `group_key.id`: the proto spelling Google also binds.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for ch in name.chars() {
        if ch.is_ascii_uppercase() {
            out.push('_');
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Checks every query parameter against the method's `declared` ones and the system parameters, and
/// renames a declared one given in its proto spelling to the discovery (lowerCamelCase) spelling the
/// handlers read.
pub fn check_query(query: &mut [(String, String)], declared: &[&'static str]) -> ApiResult<()> {
    for (name, _) in query.iter_mut() {
        let bare = name.strip_prefix('$').unwrap_or(name);
        if SYSTEM_PARAMETERS.contains(&name.as_str()) || SYSTEM_PARAMETERS.contains(&bare) {
            continue;
        }
        match declared
            .iter()
            .find(|d| **d == name.as_str() || snake(d) == *name)
        {
            Some(d) => *name = (*d).to_owned(),
            None => {
                let message = format!(
                    "Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter. Field '{name}' could not be found in request message."
                );
                let mut e = ApiError::invalid(message.clone());
                e.details.push(serde_json::json!({
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"description": message}],
                }));
                return Err(e);
            }
        }
    }
    Ok(())
}

fn known(fields: &[(&str, Kind)], name: &str) -> Option<Kind> {
    let squash = |s: &str| s.replace('_', "").to_ascii_lowercase();
    let n = squash(name);
    fields
        .iter()
        .find(|(f, _)| *f == name || squash(f) == n)
        .map(|(_, k)| *k)
}

/// Checks that every field of `body` exists in the message.
pub fn check(body: &Value, fields: &[(&str, Kind)]) -> ApiResult<()> {
    walk(body, fields, "")
}

fn walk(v: &Value, fields: &[(&str, Kind)], at: &str) -> ApiResult<()> {
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, fields, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, child) in map {
                match known(fields, k) {
                    None => {
                        let location = if at.is_empty() {
                            String::new()
                        } else {
                            format!(" at '{at}'")
                        };
                        return Err(ApiError::invalid(format!(
                            "Invalid JSON payload received. Unknown name \"{k}\"{location}: Cannot find field."
                        )));
                    }
                    Some(Kind::Msg(sub)) => {
                        let path = if at.is_empty() {
                            k.clone()
                        } else {
                            format!("{at}.{k}")
                        };
                        walk(child, sub, &path)?;
                    }
                    Some(Kind::Any) => {}
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_names_are_reported_with_their_location() {
        let ok = json!({"policy": {"bindings": [{"role": "roles/viewer", "members": ["user:a@b.c"]}], "etag": "x"}, "update_mask": "bindings"});
        assert!(check(&ok, SET_IAM_POLICY).is_ok());
        let e = check(&json!({"bogus": 1}), SET_IAM_POLICY).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid JSON payload received. Unknown name \"bogus\": Cannot find field."
        );
        let e = check(
            &json!({"policy": {"bindings": [{"role": "r"}, {"role": "r", "bogus": true}]}}),
            SET_IAM_POLICY,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "Invalid JSON payload received. Unknown name \"bogus\" at 'policy.bindings[1]': Cannot find field."
        );
        assert!(body_of("cloudresourcemanager.projects.setIamPolicy").is_some());
        assert!(body_of("cloudresourcemanager.projects.get").is_none());
    }
}
