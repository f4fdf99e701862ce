//! Request-body field checks: Google's front end rejects a JSON body that names a field the request
//! message does not have (`400 Invalid JSON payload received. Unknown name "bogus" at 'policy': Cannot
//! find field.`), in lowerCamelCase or the proto's snake_case spelling. Each endpoint names the message
//! its body is; fields of free-form messages (`Struct`, maps, a node pool spec) are not checked.

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
