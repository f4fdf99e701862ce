//! IAM vocabulary: newtypes for roles, members and resource names, and the IAM `Policy` wire model.
//!
//! Owns parsing of IAM names (parse, don't validate) and a policy model that round-trips every field it
//! does not understand, so that a read-modify-write never drops an audit config, a condition or a future
//! field. It performs no I/O.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Error for a string that is not a valid IAM name of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} `{value}`: {reason}")]
pub struct NameError {
    /// What was being parsed (`role`, `member`, ...).
    pub kind: &'static str,
    /// The rejected input.
    pub value: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

fn name_error(kind: &'static str, value: &str, reason: &'static str) -> NameError {
    NameError {
        kind,
        value: value.to_owned(),
        reason,
    }
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The name as it appears on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(
    /// An IAM role name: `roles/X`, `projects/P/roles/X` or `organizations/O/roles/X`.
    Role
);

impl Role {
    /// Parses a role name, accepting the predefined and custom forms Google uses.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let ok = match value.split('/').collect::<Vec<_>>().as_slice() {
            ["roles", id] => !id.is_empty(),
            ["projects" | "organizations", parent, "roles", id] => {
                !parent.is_empty() && !id.is_empty()
            }
            _ => false,
        };
        if ok && !value.contains(char::is_whitespace) {
            Ok(Self(value.to_owned()))
        } else {
            Err(name_error(
                "role",
                value,
                "expected roles/ID, projects/P/roles/ID or organizations/O/roles/ID",
            ))
        }
    }

    /// True for `roles/...` (Google-managed) roles.
    pub fn is_predefined(&self) -> bool {
        self.0.starts_with("roles/")
    }

    /// True for the basic roles `roles/owner`, `roles/editor` and `roles/viewer`.
    pub fn is_basic(&self) -> bool {
        matches!(
            self.0.as_str(),
            "roles/owner" | "roles/editor" | "roles/viewer"
        )
    }
}

string_newtype!(
    /// An IAM principal in member form: `serviceAccount:EMAIL`, `user:EMAIL`, `group:EMAIL`,
    /// `deleted:serviceAccount:EMAIL?uid=N`, `domain:D`, `principal://...`, ...
    Member
);

/// The kinds of member this program distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberKind {
    /// `serviceAccount:EMAIL`.
    ServiceAccount,
    /// `user:EMAIL`.
    User,
    /// `group:EMAIL`: membership cannot be expanded from IAM alone.
    Group,
    /// `domain:DOMAIN`: membership cannot be expanded from IAM alone.
    Domain,
    /// `deleted:...`: a principal that was deleted; its bindings grant nothing.
    Deleted,
    /// Principal sets and workforce/workload identities (`principal://`, `principalSet://`), and
    /// `allUsers` / `allAuthenticatedUsers`.
    Other,
}

impl Member {
    /// Parses a member string as found in a policy binding.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        if value.is_empty() || value.contains(char::is_whitespace) {
            return Err(name_error("member", value, "empty or contains whitespace"));
        }
        let known_prefix = [
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
        ]
        .iter()
        .any(|p| value.starts_with(p) && value.len() > p.len());
        if known_prefix || value == "allUsers" || value == "allAuthenticatedUsers" {
            Ok(Self(value.to_owned()))
        } else {
            Err(name_error(
                "member",
                value,
                "expected a prefix such as serviceAccount:, user: or group:",
            ))
        }
    }

    /// `serviceAccount:EMAIL` for a service account email.
    pub fn service_account(email: &ServiceAccountEmail) -> Self {
        Self(format!("serviceAccount:{}", email.as_str()))
    }

    /// What kind of principal this is.
    pub fn kind(&self) -> MemberKind {
        let v = self.0.as_str();
        if v.starts_with("serviceAccount:") {
            MemberKind::ServiceAccount
        } else if v.starts_with("user:") {
            MemberKind::User
        } else if v.starts_with("group:") {
            MemberKind::Group
        } else if v.starts_with("domain:") {
            MemberKind::Domain
        } else if v.starts_with("deleted:") {
            MemberKind::Deleted
        } else {
            MemberKind::Other
        }
    }

    /// For `deleted:serviceAccount:EMAIL?uid=N`, the email and unique id of the deleted account.
    pub fn deleted_service_account(&self) -> Option<(&str, &str)> {
        let rest = self.0.strip_prefix("deleted:serviceAccount:")?;
        let (email, uid) = rest.split_once("?uid=")?;
        Some((email, uid))
    }

    /// True if this member names exactly the given service account (case-insensitive email match, as
    /// IAM normalises emails to lower case).
    pub fn is_service_account(&self, email: &ServiceAccountEmail) -> bool {
        self.0
            .strip_prefix("serviceAccount:")
            .is_some_and(|e| e.eq_ignore_ascii_case(email.as_str()))
    }
}

string_newtype!(
    /// A service account email, e.g. `gke-nodes@P.iam.gserviceaccount.com`.
    ServiceAccountEmail
);

impl ServiceAccountEmail {
    /// Parses an email address of a service account (any `local@domain` with a dot in the domain).
    pub fn parse(value: &str) -> Result<Self, NameError> {
        match value.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && domain.contains('.')
                    && !value.contains(char::is_whitespace)
                    && !domain.contains('@') =>
            {
                Ok(Self(value.to_ascii_lowercase()))
            }
            _ => Err(name_error(
                "service account email",
                value,
                "expected NAME@DOMAIN",
            )),
        }
    }

    /// The Compute Engine default service account of a project, which node pools name as `"default"`.
    pub fn compute_default(number: &ProjectNumber) -> Self {
        Self(format!(
            "{}-compute@developer.gserviceaccount.com",
            number.as_str()
        ))
    }
}

string_newtype!(
    /// A project ID such as `demo-project`.
    ProjectId
);

impl ProjectId {
    /// Parses a project ID: 6-30 characters, lower-case letters, digits and hyphens, starting with a
    /// letter. (Legacy domain-scoped IDs `example.com:p` are accepted too.)
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let id = value.rsplit(':').next().unwrap_or(value);
        let ok = (1..=63).contains(&id.len())
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(name_error(
                "project id",
                value,
                "expected lower-case letters, digits and hyphens",
            ))
        }
    }
}

string_newtype!(
    /// A project number (decimal string, as Resource Manager v1 returns it).
    ProjectNumber
);

impl ProjectNumber {
    /// Parses a decimal project number.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        if !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(value.to_owned()))
        } else {
            Err(name_error(
                "project number",
                value,
                "expected decimal digits",
            ))
        }
    }
}

/// A Resource Manager resource that carries an IAM policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceRef {
    /// `projects/ID`.
    Project(ProjectId),
    /// `folders/NUMBER`.
    Folder(String),
    /// `organizations/NUMBER`.
    Organization(String),
}

impl ResourceRef {
    /// Parses `projects/ID`, `folders/N` or `organizations/N`.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        match value.split_once('/') {
            Some(("projects", id)) => Ok(Self::Project(ProjectId::parse(id)?)),
            Some(("folders", id)) if ProjectNumber::parse(id).is_ok() => {
                Ok(Self::Folder(id.to_owned()))
            }
            Some(("organizations", id)) if ProjectNumber::parse(id).is_ok() => {
                Ok(Self::Organization(id.to_owned()))
            }
            _ => Err(name_error(
                "resource",
                value,
                "expected projects/ID, folders/N or organizations/N",
            )),
        }
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Project(p) => write!(f, "projects/{p}"),
            Self::Folder(id) => write!(f, "folders/{id}"),
            Self::Organization(id) => write!(f, "organizations/{id}"),
        }
    }
}

/// An IAM condition attached to a binding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Condition {
    /// CEL expression.
    #[serde(default)]
    pub expression: String,
    /// Title shown in the console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Optional description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Optional location (for error messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// One role binding of a policy. Unknown fields are kept as they were read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    /// The role granted.
    pub role: Role,
    /// The members granted the role, in the order Google returned them.
    #[serde(default)]
    pub members: Vec<Member>,
    /// The condition, if this is a conditional binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// Fields this program does not model, preserved on write.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// An IAM policy as returned by `getIamPolicy`. Unknown fields (and `auditConfigs`) are preserved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Policy version: 1, or 3 when conditions are present.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: i32,
    /// Opaque etag guarding concurrent writes (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Role bindings in Google's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<Binding>,
    /// Audit logging configuration, never interpreted, always preserved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_configs: Vec<Value>,
    /// Fields this program does not model, preserved on write.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

impl Policy {
    /// True if any binding carries a condition.
    pub fn has_conditions(&self) -> bool {
        self.bindings.iter().any(|b| b.condition.is_some())
    }

    /// Number of principal occurrences across all bindings (the quantity Google limits to 1,500).
    pub fn principal_count(&self) -> usize {
        self.bindings.iter().map(|b| b.members.len()).sum()
    }

    /// True if `member` holds `role` through an unconditional binding.
    pub fn grants_unconditionally(&self, role: &Role, member: &Member) -> bool {
        self.bindings
            .iter()
            .any(|b| b.condition.is_none() && &b.role == role && b.members.contains(member))
    }

    /// Adds `member` to the unconditional binding of `role`, creating the binding at the end if absent.
    /// Returns false (and changes nothing) if the member was already there. Nothing else is touched.
    pub fn add_member(&mut self, role: &Role, member: &Member) -> bool {
        if self.grants_unconditionally(role, member) {
            return false;
        }
        match self
            .bindings
            .iter_mut()
            .find(|b| b.condition.is_none() && &b.role == role)
        {
            Some(binding) => binding.members.push(member.clone()),
            None => self.bindings.push(Binding {
                role: role.clone(),
                members: vec![member.clone()],
                condition: None,
                other: Map::new(),
            }),
        }
        true
    }
}

/// Maximum principal occurrences in one policy, per the Resource Manager documentation.
pub const MAX_PRINCIPALS_PER_POLICY: usize = 1500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_round_trips_unknown_fields_and_audit_configs() {
        let json = r#"{"version":3,"etag":"BwYnObHBOBA=","bindings":[{"role":"roles/viewer","members":["user:a@example.com"],"condition":{"title":"t","expression":"true"},"futureField":1}],"auditConfigs":[{"service":"allServices","auditLogConfigs":[{"logType":"DATA_READ"}]}],"newTopLevel":{"x":1}}"#;
        let policy: Policy = serde_json::from_str(json).unwrap();
        let back: Value = serde_json::to_value(&policy).unwrap();
        let original: Value = serde_json::from_str(json).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn add_member_appends_to_the_unconditional_binding_only() {
        let role = Role::parse("roles/container.serviceAgent").unwrap();
        let a = Member::parse("serviceAccount:a@p.iam.gserviceaccount.com").unwrap();
        let b = Member::parse("serviceAccount:b@p.iam.gserviceaccount.com").unwrap();
        let mut policy = Policy {
            bindings: vec![
                Binding {
                    role: role.clone(),
                    members: vec![a.clone()],
                    condition: Some(Condition {
                        expression: "true".into(),
                        ..Default::default()
                    }),
                    other: Map::new(),
                },
                Binding {
                    role: role.clone(),
                    members: vec![a.clone()],
                    condition: None,
                    other: Map::new(),
                },
            ],
            ..Default::default()
        };
        assert!(policy.add_member(&role, &b));
        assert_eq!(policy.bindings[0].members, vec![a.clone()]);
        assert_eq!(policy.bindings[1].members, vec![a, b.clone()]);
        assert!(!policy.add_member(&role, &b));
    }

    #[test]
    fn deleted_service_account_members_are_understood() {
        let m =
            Member::parse("deleted:serviceAccount:gke@p.iam.gserviceaccount.com?uid=123").unwrap();
        assert_eq!(m.kind(), MemberKind::Deleted);
        assert_eq!(
            m.deleted_service_account(),
            Some(("gke@p.iam.gserviceaccount.com", "123"))
        );
    }

    #[test]
    fn malformed_names_are_rejected_with_the_reason() {
        assert!(Role::parse("owner").is_err());
        assert!(Member::parse("alice@example.com").is_err());
        assert!(ServiceAccountEmail::parse("no-at-sign").is_err());
        assert!(ProjectNumber::parse("12a").is_err());
        assert!(ResourceRef::parse("folders/abc").is_err());
    }
}
