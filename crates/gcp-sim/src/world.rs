//! The world file: the YAML (or JSON) description of an organization the simulator serves.
//!
//! Owns the file model (`deny_unknown_fields` everywhere), parsing with errors that name the file, line and
//! field, and reference validation. It does not hold runtime state: see `state.rs`.
//!
//! Notes on meaning:
//! - The Compute Engine default account `NUMBER-compute@developer.gserviceaccount.com` exists implicitly in
//!   every project; list it under `service_accounts` only to give it a unique id, disable or delete it.
//! - A service account with `deleted: true` is treated as deleted at load time (undeletable for 30 days);
//!   its `serviceAccount:` members in every policy are rewritten to `deleted:serviceAccount:EMAIL?uid=N`.
//! - `groups` lets the Policy Troubleshooter and Cloud Identity resolve `group:` members, nested groups
//!   included; a group not listed has no members.
//! - `deny_policies` (IAM v2) and `org_policies` (boolean constraints, Org Policy v2) sit on the
//!   organization, folders and projects; `access.rs` checks them and holds them at run time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::{is_email, is_member, is_project_id, is_role};

/// Error loading a world file. Displays as one line naming the file, line and field.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// The file could not be read.
    #[error("{origin}: cannot read world file: {source}")]
    Read {
        /// File name.
        origin: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a valid world document.
    #[error("{origin}:{line}:{column}: field `{field}`: {message}")]
    Parse {
        /// File name.
        origin: String,
        /// 1-based line (0 if unknown).
        line: usize,
        /// 1-based column (0 if unknown).
        column: usize,
        /// Path of the failing field, e.g. `projects[0].clusters[1].node_pools`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The document parses but is inconsistent (dangling reference, duplicate number, ...).
    #[error("{origin}:{line}: field `{field}`: {message}")]
    Invalid {
        /// File name.
        origin: String,
        /// Best-effort 1-based line of the offending value (0 if unknown).
        line: usize,
        /// Path of the failing field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Optional organization at the top of the hierarchy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldOrganization {
    /// Numeric organization id.
    pub id: String,
    /// Display name (domain), default `example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Organization IAM policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_policy: Option<WorldPolicy>,
    /// Organization-level custom roles (`organizations/O/roles/X`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_roles: Vec<WorldRole>,
    /// IAM v2 deny policies attached to the organization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_policies: Vec<WorldDenyPolicy>,
    /// Org Policy v2 policies of boolean constraints set on the organization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub org_policies: Vec<WorldOrgPolicy>,
}

/// A folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldFolder {
    /// Numeric folder id.
    pub id: String,
    /// `organizations/N` or `folders/N`.
    pub parent: String,
    /// Display name, default `folder-ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Folder IAM policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_policy: Option<WorldPolicy>,
    /// IAM v2 deny policies attached to the folder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_policies: Vec<WorldDenyPolicy>,
    /// Org Policy v2 policies set on the folder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub org_policies: Vec<WorldOrgPolicy>,
}

/// A role definition (predefined via `roles`, custom via `custom_roles`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldRole {
    /// Full role name.
    pub name: String,
    /// Title, default derived from the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Launch stage, default `GA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Permissions the role grants.
    #[serde(default)]
    pub included_permissions: Vec<String>,
}

/// An IAM policy as written in a world file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WorldPolicy {
    /// Role bindings.
    #[serde(default)]
    pub bindings: Vec<WorldBinding>,
    /// Audit configs, kept verbatim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_configs: Vec<serde_json::Value>,
}

/// One binding in a world policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldBinding {
    /// Role name.
    pub role: String,
    /// Members.
    #[serde(default)]
    pub members: Vec<String>,
    /// Optional condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<WorldCondition>,
}

/// An IAM condition in a world policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldCondition {
    /// Title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// CEL expression.
    pub expression: String,
}

/// A service account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldServiceAccount {
    /// Email.
    pub email: String,
    /// Numeric unique id (21 digits); derived from the email when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_id: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Disabled account.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Deleted account (undeletable for 30 days from load).
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
}

/// A GKE node pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldNodePool {
    /// Pool name.
    pub name: String,
    /// Node service account email, or `default` (the default when absent).
    #[serde(default = "default_sa")]
    pub service_account: String,
}

/// A GKE cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldCluster {
    /// Cluster name.
    pub name: String,
    /// Region or zone.
    pub location: String,
    /// Autopilot cluster.
    #[serde(default, skip_serializing_if = "is_false")]
    pub autopilot: bool,
    /// Node auto-provisioning on a Standard cluster.
    #[serde(default, skip_serializing_if = "is_false")]
    pub node_auto_provisioning: bool,
    /// Service account of auto-provisioned nodes (Autopilot / NAP); default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoprovisioning_service_account: Option<String>,
    /// Node pools (Standard).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_pools: Vec<WorldNodePool>,
    /// Cluster status, default `RUNNING`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A `google.container.DiagnosisRecommender` recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldRecommendation {
    /// Location (as the recommendation is listed under).
    pub location: String,
    /// `recommenderSubtype`, e.g. `NODE_SA_MISSING_PERMISSIONS`.
    pub subtype: String,
    /// Target cluster name.
    pub cluster: String,
    /// Id; derived when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `stateInfo.state`, default `ACTIVE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Etag without quotes (16 hex digits); derived when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `stateInfo.stateMetadata`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state_metadata: BTreeMap<String, String>,
}

/// A project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldProject {
    /// Project id.
    pub id: String,
    /// Project number (decimal string).
    pub number: String,
    /// Display name, default the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `folders/N` or `organizations/N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Enabled services.
    #[serde(default)]
    pub services: Vec<String>,
    /// Project IAM policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_policy: Option<WorldPolicy>,
    /// Custom roles `projects/ID/roles/X`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_roles: Vec<WorldRole>,
    /// Service accounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<WorldServiceAccount>,
    /// GKE clusters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<WorldCluster>,
    /// Zones reported in `missingZones` of an all-locations cluster list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_zones: Vec<String>,
    /// Recommendations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<WorldRecommendation>,
    /// IAM v2 deny policies attached to the project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_policies: Vec<WorldDenyPolicy>,
    /// Org Policy v2 policies set on the project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub org_policies: Vec<WorldOrgPolicy>,
}

/// A Google group and its members (for the Policy Troubleshooter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldGroup {
    /// Group email.
    pub email: String,
    /// Members in member form (`user:`, `serviceAccount:`, `group:`).
    #[serde(default)]
    pub members: Vec<String>,
}

/// An IAM v2 deny policy attached to the organization, a folder or a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldDenyPolicy {
    /// Policy id: 3-63 characters, lower-case letters, digits, `-` and `.`, starting with a letter.
    pub id: DenyPolicyId,
    /// Display name (at most 63 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The rules (at least one).
    pub rules: Vec<WorldDenyRule>,
}

/// One deny rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldDenyRule {
    /// A sentence (at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// v2 principal identifiers denied (at least one).
    pub denied_principals: Vec<DenyPrincipal>,
    /// v2 principal identifiers exempt (not `principalSet://goog/public:all`).
    #[serde(default)]
    pub exception_principals: Vec<DenyPrincipal>,
    /// Permissions denied, v2 form `SERVICE.googleapis.com/RESOURCE.VERB` (wildcards `*`).
    pub denied_permissions: Vec<DenyPermission>,
    /// Permissions exempt.
    #[serde(default)]
    pub exception_permissions: Vec<DenyPermission>,
    /// Optional condition: the rule applies when it is true or cannot be evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial_condition: Option<WorldCondition>,
}

/// A policy of a boolean constraint on one resource (Org Policy v2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldOrgPolicy {
    /// Constraint name without `constraints/`, e.g. `iam.automaticIamGrantsForDefaultServiceAccounts`.
    pub constraint: ConstraintName,
    /// The unconditional rule's `enforce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce: Option<bool>,
    /// `reset`: the constraint's default applies here, ignoring ancestors.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reset: bool,
    /// `inheritFromParent` with no rule: the policy exists but the parent's decides.
    #[serde(default, skip_serializing_if = "is_false")]
    pub inherit_from_parent: bool,
}

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(pub String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                $check(&s).map(|()| Self(s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

checked_string!(
    /// A deny policy id.
    DenyPolicyId,
    crate::access::check_policy_id
);
checked_string!(
    /// A v2 principal identifier of a deny rule.
    DenyPrincipal,
    crate::access::check_principal
);
checked_string!(
    /// A v2 permission of a deny rule.
    DenyPermission,
    crate::access::check_permission
);
checked_string!(
    /// A constraint name.
    ConstraintName,
    crate::access::check_constraint
);

/// A parsed and validated world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct World {
    /// `setIamPolicy` rejects members that do not exist, as Google does (default `true`); `false` opts
    /// into accepting any well-formed member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_members: Option<bool>,
    /// Policies may bind only roles that exist (default `true`); `false` lets a world bind a role nobody
    /// defines (as a policy can still name a purged custom role), answered 404 by `roles.get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_roles: Option<bool>,
    /// `operations.get` polls a new long-running operation needs before it is done (default 0: done at
    /// once). Also settable at run time with `PUT /_sim/operations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_polls: Option<u32>,
    /// The organization, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<WorldOrganization>,
    /// Folders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<WorldFolder>,
    /// Extra predefined roles (added to the bundled ones, or replacing one of the same name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<WorldRole>,
    /// Groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<WorldGroup>,
    /// Projects.
    #[serde(default)]
    pub projects: Vec<WorldProject>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_sa() -> String {
    "default".to_owned()
}

impl World {
    /// Parses and validates a world document (YAML or JSON). `origin` names the file in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<World, WorldError> {
        let parse_error =
            |line: usize, column: usize, field: String, message: String| WorldError::Parse {
                origin: origin.to_owned(),
                line,
                column,
                field,
                message,
            };
        // marked-yaml keeps a position on every node, so errors point at the offending key or value.
        let options = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
        let node = marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| {
            let (line, column) = load_error_position(&e);
            parse_error(line, column, ".".to_owned(), format!("malformed YAML: {e}"))
        })?;
        let world: World = marked_yaml::from_node(&node).map_err(|e| {
            let field = e.path().filter(|p| !p.is_empty()).unwrap_or(".").to_owned();
            let (line, column) = e.start_mark().map_or((0, 0), |m| (m.line(), m.column()));
            parse_error(line, column, field, e.into_inner().to_string())
        })?;
        world.validate(text, origin)?;
        Ok(world)
    }

    /// Reads and parses a world file.
    pub fn load(path: &Path) -> Result<World, WorldError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| WorldError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::from_yaml(&text, &origin)
    }

    fn validate(&self, text: &str, origin: &str) -> Result<(), WorldError> {
        let invalid = |field: String, needle: &str, message: String| WorldError::Invalid {
            origin: origin.to_owned(),
            line: line_of(text, needle),
            field,
            message,
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        // An empty set means "any role" (`strict_roles: false`).
        let mut known: BTreeSet<String> = BTreeSet::new();
        if self.strict_roles != Some(false) {
            known.extend(crate::roles::bundled().into_iter().map(|r| r.name));
            known.extend(self.roles.iter().map(|r| r.name.clone()));
            if let Some(org) = &self.organization {
                known.extend(org.custom_roles.iter().map(|r| r.name.clone()));
            }
            for p in &self.projects {
                known.extend(p.custom_roles.iter().map(|r| r.name.clone()));
            }
        }
        let mut containers: BTreeSet<String> = BTreeSet::new();
        if let Some(org) = &self.organization {
            if !digits(&org.id) {
                return Err(invalid(
                    "organization.id".into(),
                    &org.id,
                    format!("`{}` is not a numeric id", org.id),
                ));
            }
            containers.insert(format!("organizations/{}", org.id));
            if let Some(p) = &org.iam_policy {
                check_policy(p, "organization.iam_policy", &known, &invalid)?;
            }
            crate::access::check_node(
                &org.deny_policies,
                &org.org_policies,
                "organization",
                &invalid,
            )?;
            for (i, r) in org.custom_roles.iter().enumerate() {
                let prefix = format!("organizations/{}/roles/", org.id);
                if !r.name.starts_with(&prefix) || !is_role(&r.name) {
                    return Err(invalid(
                        format!("organization.custom_roles[{i}].name"),
                        &r.name,
                        format!("`{}` must be {prefix}ID", r.name),
                    ));
                }
            }
        }
        for (i, f) in self.folders.iter().enumerate() {
            if !digits(&f.id) {
                return Err(invalid(
                    format!("folders[{i}].id"),
                    &f.id,
                    format!("`{}` is not a numeric id", f.id),
                ));
            }
            if !containers.insert(format!("folders/{}", f.id)) {
                return Err(invalid(
                    format!("folders[{i}].id"),
                    &f.id,
                    format!("duplicate folder id {}", f.id),
                ));
            }
        }
        for (i, f) in self.folders.iter().enumerate() {
            if !containers.contains(&f.parent) || f.parent == format!("folders/{}", f.id) {
                return Err(invalid(
                    format!("folders[{i}].parent"),
                    &f.parent,
                    format!(
                        "parent `{}` is not an organization or folder of this world",
                        f.parent
                    ),
                ));
            }
            if let Some(p) = &f.iam_policy {
                check_policy(p, &format!("folders[{i}].iam_policy"), &known, &invalid)?;
            }
            crate::access::check_node(
                &f.deny_policies,
                &f.org_policies,
                &format!("folders[{i}]"),
                &invalid,
            )?;
        }
        // Folder parent chains must end at the organization (no cycles).
        for (i, f) in self.folders.iter().enumerate() {
            let mut cur = f.parent.clone();
            let mut steps = 0;
            while let Some(id) = cur.strip_prefix("folders/") {
                steps += 1;
                if steps > self.folders.len() {
                    return Err(invalid(
                        format!("folders[{i}].parent"),
                        &f.parent,
                        "folder parents form a cycle".into(),
                    ));
                }
                match self.folders.iter().find(|x| x.id == id) {
                    Some(x) => cur = x.parent.clone(),
                    None => break,
                }
            }
        }
        for (i, r) in self.roles.iter().enumerate() {
            if !r.name.starts_with("roles/") || !is_role(&r.name) {
                return Err(invalid(
                    format!("roles[{i}].name"),
                    &r.name,
                    format!("`{}` must be roles/ID", r.name),
                ));
            }
        }
        for (i, g) in self.groups.iter().enumerate() {
            if !is_email(&g.email) {
                return Err(invalid(
                    format!("groups[{i}].email"),
                    &g.email,
                    format!("`{}` is not an email", g.email),
                ));
            }
            for (j, m) in g.members.iter().enumerate() {
                if !is_member(m) {
                    return Err(invalid(
                        format!("groups[{i}].members[{j}]"),
                        m,
                        format!("`{m}` is not a member"),
                    ));
                }
            }
        }
        let mut ids = BTreeSet::new();
        let mut numbers = BTreeSet::new();
        let mut sa_emails = BTreeSet::new();
        let mut sa_ids = BTreeSet::new();
        for (i, p) in self.projects.iter().enumerate() {
            let at = |field: &str| format!("projects[{i}].{field}");
            if !is_project_id(&p.id) {
                return Err(invalid(
                    at("id"),
                    &p.id,
                    format!("`{}` is not a valid project id", p.id),
                ));
            }
            if !ids.insert(p.id.clone()) {
                return Err(invalid(
                    at("id"),
                    &p.id,
                    format!("duplicate project id {}", p.id),
                ));
            }
            if !digits(&p.number) {
                return Err(invalid(
                    at("number"),
                    &p.number,
                    format!("`{}` is not a project number", p.number),
                ));
            }
            if !numbers.insert(p.number.clone()) {
                return Err(invalid(
                    at("number"),
                    &p.number,
                    format!("duplicate project number {}", p.number),
                ));
            }
            if let Some(parent) = &p.parent
                && !containers.contains(parent)
            {
                return Err(invalid(
                    at("parent"),
                    parent,
                    format!("parent `{parent}` is not an organization or folder of this world"),
                ));
            }
            if let Some(pol) = &p.iam_policy {
                check_policy(pol, &at("iam_policy"), &known, &invalid)?;
            }
            crate::access::check_node(
                &p.deny_policies,
                &p.org_policies,
                &format!("projects[{i}]"),
                &invalid,
            )?;
            for (j, r) in p.custom_roles.iter().enumerate() {
                let prefix = format!("projects/{}/roles/", p.id);
                if !r.name.starts_with(&prefix) || !is_role(&r.name) {
                    return Err(invalid(
                        at(&format!("custom_roles[{j}].name")),
                        &r.name,
                        format!("`{}` must be {prefix}ID", r.name),
                    ));
                }
            }
            for (j, sa) in p.service_accounts.iter().enumerate() {
                if !is_email(&sa.email) {
                    return Err(invalid(
                        at(&format!("service_accounts[{j}].email")),
                        &sa.email,
                        format!("`{}` is not a service account email", sa.email),
                    ));
                }
                if !sa_emails.insert(sa.email.to_ascii_lowercase()) {
                    return Err(invalid(
                        at(&format!("service_accounts[{j}].email")),
                        &sa.email,
                        format!("duplicate service account {}", sa.email),
                    ));
                }
                if let Some(uid) = &sa.unique_id
                    && (!digits(uid) || !sa_ids.insert(uid.clone()))
                {
                    return Err(invalid(
                        at(&format!("service_accounts[{j}].unique_id")),
                        uid,
                        format!("`{uid}` is not a unique numeric id"),
                    ));
                }
            }
            let mut cluster_names = BTreeSet::new();
            for (j, c) in p.clusters.iter().enumerate() {
                if !cluster_names.insert((c.location.clone(), c.name.clone())) {
                    return Err(invalid(
                        at(&format!("clusters[{j}].name")),
                        &c.name,
                        format!("duplicate cluster {} in {}", c.name, c.location),
                    ));
                }
                let mut pools = BTreeSet::new();
                for (k, np) in c.node_pools.iter().enumerate() {
                    if !pools.insert(np.name.clone()) {
                        return Err(invalid(
                            at(&format!("clusters[{j}].node_pools[{k}].name")),
                            &np.name,
                            format!("duplicate node pool {}", np.name),
                        ));
                    }
                    if np.service_account != "default" && !is_email(&np.service_account) {
                        return Err(invalid(
                            at(&format!("clusters[{j}].node_pools[{k}].service_account")),
                            &np.service_account,
                            "expected `default` or a service account email".into(),
                        ));
                    }
                }
            }
            for (j, r) in p.recommendations.iter().enumerate() {
                if !p.clusters.iter().any(|c| c.name == r.cluster) {
                    return Err(invalid(
                        at(&format!("recommendations[{j}].cluster")),
                        &r.cluster,
                        format!("no cluster named `{}` in project {}", r.cluster, p.id),
                    ));
                }
                if let Some(s) = &r.state
                    && !matches!(
                        s.as_str(),
                        "ACTIVE" | "CLAIMED" | "SUCCEEDED" | "FAILED" | "DISMISSED"
                    )
                {
                    return Err(invalid(
                        at(&format!("recommendations[{j}].state")),
                        s,
                        "expected ACTIVE, CLAIMED, SUCCEEDED, FAILED or DISMISSED".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_policy<F>(
    policy: &WorldPolicy,
    at: &str,
    known: &BTreeSet<String>,
    invalid: &F,
) -> Result<(), WorldError>
where
    F: Fn(String, &str, String) -> WorldError,
{
    for (i, b) in policy.bindings.iter().enumerate() {
        if !is_role(&b.role) {
            return Err(invalid(
                format!("{at}.bindings[{i}].role"),
                &b.role,
                format!("`{}` is not a role name", b.role),
            ));
        }
        if !known.is_empty() && !known.contains(&b.role) {
            return Err(invalid(
                format!("{at}.bindings[{i}].role"),
                &b.role,
                format!(
                    "unknown role `{}`: not a predefined role the simulator knows, nor a custom role of this world (add it under `roles` or `custom_roles`)",
                    b.role
                ),
            ));
        }
        for (j, m) in b.members.iter().enumerate() {
            if !is_member(m) {
                return Err(invalid(
                    format!("{at}.bindings[{i}].members[{j}]"),
                    m,
                    format!("`{m}` is not a member"),
                ));
            }
        }
    }
    Ok(())
}

/// 1-based line of the first occurrence of `needle` in `text` (0 if absent or empty).
/// Where a YAML load error is, as (line, column).
fn load_error_position(e: &marked_yaml::LoadError) -> (usize, usize) {
    use marked_yaml::LoadError as L;
    let mark = match e {
        L::TopLevelMustBeMapping(m)
        | L::TopLevelMustBeSequence(m)
        | L::UnexpectedAnchor(m)
        | L::MappingKeyMustBeScalar(m)
        | L::UnexpectedTag(m)
        | L::ScanError(m, _) => Some(*m),
        L::DuplicateKey(d) => d.key.span().start().copied(),
    };
    mark.map_or((0, 0), |m| (m.line(), m.column()))
}

fn line_of(text: &str, needle: &str) -> usize {
    if needle.is_empty() {
        return 0;
    }
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_file_line_and_field() {
        let text = "projects:\n  - id: demo-project\n    number: \"1\"\n    clusterz: []\n";
        let err = World::from_yaml(text, "w.yaml").unwrap_err().to_string();
        assert!(err.starts_with("w.yaml:4:"), "{err}");
        assert!(err.contains("projects[0]"), "{err}");
        assert!(err.contains("clusterz"), "{err}");
    }

    #[test]
    fn unknown_roles_name_file_line_and_role() {
        let text = "projects:\n  - id: demo-project\n    number: \"1\"\n    iam_policy:\n      bindings:\n        - role: roles/compute.viewer\n          members: [user:a@example.com]\n        - role: roles/made.up\n          members: [user:a@example.com]\n";
        let err = World::from_yaml(text, "w.yaml").unwrap_err().to_string();
        assert!(err.starts_with("w.yaml:8:"), "{err}");
        assert!(
            err.contains("projects[0].iam_policy.bindings[1].role"),
            "{err}"
        );
        assert!(err.contains("roles/made.up"), "{err}");
        let custom = "projects:\n  - id: demo-project\n    number: \"1\"\n    custom_roles: [{name: projects/demo-project/roles/x}]\n    iam_policy:\n      bindings: [{role: projects/demo-project/roles/x, members: [user:a@example.com]}]\n";
        assert!(World::from_yaml(custom, "w.yaml").is_ok());
    }

    #[test]
    fn every_world_of_the_repository_loads_strictly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files: Vec<_> = std::fs::read_dir(root.join("infra/worlds"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.push(root.join("tests/conformance/world.yaml"));
        assert!(files.len() >= 10, "{files:?}");
        for f in files {
            let w = World::load(&f).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(w.strict_members, None, "{}", f.display());
            assert_eq!(w.strict_roles, None, "{}", f.display());
        }
    }

    #[test]
    fn a_malformed_deny_rule_or_org_policy_names_its_exact_line_column_and_field() {
        let text = "organization:\n  id: \"1\"\n  deny_policies:\n    - id: no-logs\n      rules:\n        - denied_principals: [principalSet://goog/public:all]\n          denied_permissions: [logging.logEntries.create]\n";
        let err = World::from_yaml(text, "w.yaml").unwrap_err().to_string();
        assert!(err.starts_with("w.yaml:7:32:"), "{err}");
        assert!(
            err.contains("organization.deny_policies[0].rules[0].denied_permissions[0]"),
            "{err}"
        );
        assert!(err.contains("not a v2 permission"), "{err}");
        let text = "folders:\n  - id: \"2\"\n    parent: organizations/1\n    org_policies:\n      - {constraint: iam.x, enforce: true, reset: true}\norganization: {id: \"1\"}\n";
        let err = World::from_yaml(text, "w.yaml").unwrap_err().to_string();
        assert!(err.starts_with("w.yaml:5:"), "{err}");
        assert!(err.contains("folders[0].org_policies[0]"), "{err}");
        let text = "organization:\n  id: \"1\"\n  deny_policies:\n    - id: x\n      rules: []\n";
        let err = World::from_yaml(text, "w.yaml").unwrap_err().to_string();
        assert!(err.starts_with("w.yaml:4:"), "{err}");
        assert!(err.contains("deny_policies[0].id"), "{err}");
    }

    #[test]
    fn dangling_parent_names_the_field() {
        let text = "projects:\n  - id: demo-project\n    number: \"1\"\n    parent: folders/9\n";
        let err = World::from_yaml(text, "w.yaml").unwrap_err().to_string();
        assert!(err.contains("w.yaml:4"), "{err}");
        assert!(err.contains("projects[0].parent"), "{err}");
    }
}
