//! The simulator's own IAM wire model (`google.iam.v1.Policy`, `Binding`, `Expr`) and the name rules it
//! checks: it shares nothing with the client it serves, so a round-trip bug in a client's model shows up
//! as a difference on the wire instead of being hidden by a shared type.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Maximum principal occurrences in one allow policy (Resource Manager documentation).
pub const MAX_PRINCIPALS_PER_POLICY: usize = 1500;

/// `google.type.Expr`: the condition of a binding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// CEL expression.
    #[serde(default)]
    pub expression: String,
    /// Title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Location (for error messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// `google.iam.v1.Binding`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// Role name.
    #[serde(default)]
    pub role: String,
    /// Members in member form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Condition of a conditional binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

/// `google.iam.v1.Policy` as the simulator stores and serves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// 1, or 3 when conditions are present (0 in a request means "not set").
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: i32,
    /// Etag (base64 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Bindings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<Binding>,
    /// Audit configs, stored verbatim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_configs: Vec<Value>,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

impl Policy {
    /// True if any binding has a condition.
    pub fn has_conditions(&self) -> bool {
        self.bindings.iter().any(|b| b.condition.is_some())
    }

    /// Principal occurrences over all bindings (what Google limits to 1,500).
    pub fn principal_count(&self) -> usize {
        self.bindings.iter().map(|b| b.members.len()).sum()
    }

    /// True if `member` holds `role` through an unconditional binding.
    pub fn grants_unconditionally(&self, role: impl AsRef<str>, member: impl AsRef<str>) -> bool {
        let (role, member) = (role.as_ref(), member.as_ref());
        self.bindings.iter().any(|b| {
            b.condition.is_none() && b.role == role && b.members.iter().any(|m| m == member)
        })
    }

    /// Adds `member` to the unconditional binding of `role` (created at the end if absent).
    pub fn add_member(&mut self, role: &str, member: &str) {
        if self.grants_unconditionally(role, member) {
            return;
        }
        match self
            .bindings
            .iter_mut()
            .find(|b| b.condition.is_none() && b.role == role)
        {
            Some(b) => b.members.push(member.to_owned()),
            None => self.bindings.push(Binding {
                role: role.to_owned(),
                members: vec![member.to_owned()],
                condition: None,
            }),
        }
    }
}

/// `roles/ID`, `projects/P/roles/ID` or `organizations/O/roles/ID`.
pub fn is_role(s: &str) -> bool {
    if s.contains(char::is_whitespace) {
        return false;
    }
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        ["roles", id] => !id.is_empty(),
        ["projects" | "organizations", parent, "roles", id] => !parent.is_empty() && !id.is_empty(),
        _ => false,
    }
}

/// Member prefixes IAM accepts in a binding.
const MEMBER_PREFIXES: [&str; 10] = [
    "serviceAccount:",
    "user:",
    "group:",
    "domain:",
    "deleted:",
    "principal://",
    "principalSet://",
    "projectOwner:",
    "projectEditor:",
    "projectViewer:",
];

/// A member in member form (`serviceAccount:EMAIL`, `user:EMAIL`, ..., `allUsers`).
pub fn is_member(s: &str) -> bool {
    if s.is_empty() || s.contains(char::is_whitespace) {
        return false;
    }
    s == "allUsers"
        || s == "allAuthenticatedUsers"
        || MEMBER_PREFIXES
            .iter()
            .any(|p| s.len() > p.len() && s.starts_with(p))
}

/// `local@domain.tld` (no whitespace, one `@`, a dot in the domain).
pub fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// A project id: lower-case letters, digits and hyphens, starting with a letter (legacy `domain:id` too).
pub fn is_project_id(s: &str) -> bool {
    let id = s.rsplit(':').next().unwrap_or(s);
    (1..=63).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_iam_forms() {
        assert!(is_role("roles/viewer"));
        assert!(is_role("projects/p/roles/x"));
        assert!(!is_role("roles/"));
        assert!(!is_role("viewer"));
        assert!(is_member("serviceAccount:a@b.iam.gserviceaccount.com"));
        assert!(is_member("allUsers"));
        assert!(!is_member("a@b.com"));
        assert!(!is_member("user:"));
        assert!(is_email("a@b.c"));
        assert!(!is_email("a@b"));
        assert!(is_project_id("demo-project"));
        assert!(!is_project_id("Demo"));
    }

    #[test]
    fn policies_round_trip_and_refuse_unknown_fields() {
        let text = r#"{"version":3,"etag":"BwY=","bindings":[{"role":"roles/viewer","members":["user:a@x.com"],"condition":{"expression":"true","title":"t"}}],"auditConfigs":[{"service":"allServices"}]}"#;
        let p: Policy = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), text);
        assert!(serde_json::from_str::<Policy>(r#"{"bogus":1}"#).is_err());
    }
}
