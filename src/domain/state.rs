//! Live state of one project as the adapters read it: the input of evaluation.
//!
//! Plain data, filled by `remediate` from the Google APIs (or the simulator). No I/O here.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::iam::{Policy, ProjectId, ProjectNumber, ResourceRef, Role, ServiceAccountEmail};

/// One node pool and the service account its nodes run as (raw API value: an email or `"default"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePool {
    /// Node pool name.
    pub name: String,
    /// `config.serviceAccount` as the API returned it.
    pub service_account: String,
}

/// One GKE cluster, reduced to what the IAM checks need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Cluster name.
    pub name: String,
    /// Region or zone.
    pub location: String,
    /// Autopilot cluster.
    pub autopilot: bool,
    /// Standard node pools (Autopilot clusters list theirs too; they are checked as well).
    pub node_pools: Vec<NodePool>,
    /// `autoscaling.autoprovisioningNodePoolDefaults.serviceAccount` when Autopilot or node
    /// auto-provisioning is on.
    pub autoprovisioning_service_account: Option<String>,
}

/// Whether `container.googleapis.com` is enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApiState {
    /// Enabled.
    Enabled,
    /// Disabled.
    Disabled,
    /// Could not be determined.
    Unknown,
}

/// What is known about a service account's existence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountState {
    /// Exists and is enabled.
    Active {
        /// Numeric unique id.
        unique_id: Option<String>,
    },
    /// Exists but is disabled.
    Disabled {
        /// Numeric unique id (needed to enable by id).
        unique_id: Option<String>,
    },
    /// Deleted (seen as `deleted:serviceAccount:EMAIL?uid=N` in a policy, or absent from its project).
    Deleted {
        /// Unique id, needed to undelete within 30 days.
        unique_id: Option<String>,
    },
    /// Could not be read (for example it lives in another project we cannot read).
    Unknown {
        /// Why.
        reason: String,
    },
}

/// A role definition lookup result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleLookup {
    /// The role exists with these permissions.
    Found(BTreeSet<String>),
    /// The role does not exist (deleted custom role, typo): it grants nothing.
    NotFound,
    /// The role could not be read (no permission, transient): its grants are unknown.
    Unreadable(String),
}

/// Role definitions fetched during a run, shared across projects.
#[derive(Clone, Debug, Default)]
pub struct RoleCatalog {
    roles: BTreeMap<Role, RoleLookup>,
}

impl RoleCatalog {
    /// Records a lookup.
    pub fn insert(&mut self, role: Role, lookup: RoleLookup) {
        self.roles.insert(role, lookup);
    }

    /// The lookup for a role; a role never fetched is `Unreadable`.
    pub fn get(&self, role: &Role) -> RoleLookup {
        self.roles
            .get(role)
            .cloned()
            .unwrap_or_else(|| RoleLookup::Unreadable("not fetched".to_owned()))
    }

    /// True if the role was fetched already.
    pub fn contains(&self, role: &Role) -> bool {
        self.roles.contains_key(role)
    }
}

/// An answer of the Policy Troubleshooter for (service account, permission).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Troubleshot {
    /// `CAN_ACCESS`.
    Granted,
    /// `CANNOT_ACCESS`.
    NotGranted,
    /// `UNKNOWN_INFO` / `UNKNOWN_CONDITIONAL`.
    Unknown,
}

/// How many times the remediator restored each binding (role, member) within the flapping window.
pub type Restorations = BTreeMap<(Role, super::iam::Member), u32>;

/// Everything evaluation needs to know about one project.
#[derive(Clone, Debug)]
pub struct ProjectState {
    /// Project id.
    pub project_id: ProjectId,
    /// Project number.
    pub project_number: ProjectNumber,
    /// Folder ids above the project, nearest first.
    pub folders: Vec<String>,
    /// Container API state.
    pub container_api: ApiState,
    /// Clusters in all locations.
    pub clusters: Vec<Cluster>,
    /// `missingZones` from the clusters list: a partial result.
    pub missing_zones: Vec<String>,
    /// The project's own policy (read at version 3).
    pub policy: Policy,
    /// Ancestor policies, nearest first.
    pub ancestors: Vec<(ResourceRef, Policy)>,
    /// Existence of the node service accounts.
    pub accounts: BTreeMap<ServiceAccountEmail, AccountState>,
    /// Troubleshooter answers, when asked.
    pub troubleshooter: BTreeMap<(ServiceAccountEmail, String), Troubleshot>,
    /// How often the remediator itself restored each (role, member) within the policy's window, read
    /// from Cloud Audit Logs (shared by every instance). Empty when not read.
    pub restorations: Restorations,
    /// Ancestors whose policy (or parent) could not be read: a grant there is possible but unknown, so
    /// nothing that could come from them is reported `missing`.
    pub unreadable: Vec<String>,
    /// When the state was read: IAM conditions on time are evaluated at this instant.
    pub read_at: std::time::SystemTime,
    /// Deny policies, the org policy on default-account grants, and group memberships.
    pub access: AccessFacts,
}

/// The effective `iam.automaticIamGrantsForDefaultServiceAccounts` of a project, when read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OrgPolicyFact {
    /// Not read (not needed).
    #[default]
    NotRead,
    /// Enforced: default service accounts are created without roles.
    Enforced,
    /// Not enforced.
    NotEnforced,
    /// Could not be read.
    Unreadable(String),
}

/// What IAM v2 deny policies, Org Policy and Cloud Identity say about a project. Empty by default.
#[derive(Clone, Debug, Default)]
pub struct AccessFacts {
    /// Deny policies of the project, its folders and its organization.
    pub deny_policies: Vec<super::deny::DenyPolicy>,
    /// Attachment points whose deny policies could not be read, with why: a verdict that would be
    /// `ok` is `incomplete` then.
    pub deny_unreadable: Vec<String>,
    /// The constraint that keeps the Compute Engine default account without roles.
    pub automatic_grants: OrgPolicyFact,
    /// Cloud Identity transitive memberships: (group, member email) -> member.
    pub memberships: super::deny::Memberships,
}

/// The boolean constraint that, enforced, creates default service accounts without roles.
pub const AUTOMATIC_GRANTS_CONSTRAINT: &str = "iam.automaticIamGrantsForDefaultServiceAccounts";
