//! The requirement list (DESIGN section 1): what GKE needs on a project, and how each need is restored.
//!
//! This is the only place that names roles the program may grant. Everything the remediator checks or
//! restores derives from this list and from live state; nothing from a message body can extend it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::iam::{ProjectNumber, Role, ServiceAccountEmail};

/// Identifier of one requirement, as used in the policy file, notifications and JSON output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequirementId {
    /// Every node service account holds the node permissions on the project.
    NodeSaPermissions,
    /// The GKE service agent holds `roles/container.serviceAgent`.
    GkeServiceAgent,
    /// The GKE node service agent holds `roles/container.defaultNodeServiceAgent`.
    GkeNodeServiceAgent,
    /// The Google APIs service agent holds `roles/editor` (opt-in).
    GoogleApisServiceAgent,
    /// `container.googleapis.com` is enabled (opt-in).
    ContainerApiEnabled,
    /// Every node service account exists and is enabled (opt-in).
    NodeSaExists,
}

impl RequirementId {
    /// Every requirement, in the order of the design's table.
    pub const ALL: [RequirementId; 6] = [
        Self::NodeSaPermissions,
        Self::GkeServiceAgent,
        Self::GkeNodeServiceAgent,
        Self::GoogleApisServiceAgent,
        Self::ContainerApiEnabled,
        Self::NodeSaExists,
    ];

    /// The id as written in files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeSaPermissions => "node-sa-permissions",
            Self::GkeServiceAgent => "gke-service-agent",
            Self::GkeNodeServiceAgent => "gke-node-service-agent",
            Self::GoogleApisServiceAgent => "google-apis-service-agent",
            Self::ContainerApiEnabled => "container-api-enabled",
            Self::NodeSaExists => "node-sa-exists",
        }
    }

    /// The role whose unconditional binding restores this requirement, if it is restored by a binding.
    pub fn restore_role(self) -> Option<Role> {
        let name = match self {
            Self::NodeSaPermissions => ROLE_DEFAULT_NODE_SA,
            Self::GkeServiceAgent => ROLE_GKE_SERVICE_AGENT,
            Self::GkeNodeServiceAgent => ROLE_GKE_NODE_SERVICE_AGENT,
            Self::GoogleApisServiceAgent => ROLE_EDITOR,
            Self::ContainerApiEnabled | Self::NodeSaExists => return None,
        };
        Some(Role::parse(name).expect("constant role names are valid"))
    }

    /// Restored automatically by the built-in default policy (the design's "default" column).
    pub fn restored_by_default(self) -> bool {
        matches!(
            self,
            Self::NodeSaPermissions | Self::GkeServiceAgent | Self::GkeNodeServiceAgent
        )
    }
}

impl fmt::Display for RequirementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequirementId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Self::ALL.iter().map(|r| r.as_str()).collect();
                format!(
                    "unknown requirement `{s}`, expected one of: {}",
                    known.join(", ")
                )
            })
    }
}

/// The role restored for node service accounts.
pub const ROLE_DEFAULT_NODE_SA: &str = "roles/container.defaultNodeServiceAccount";
/// The role of the GKE service agent.
pub const ROLE_GKE_SERVICE_AGENT: &str = "roles/container.serviceAgent";
/// The role of the GKE node service agent.
pub const ROLE_GKE_NODE_SERVICE_AGENT: &str = "roles/container.defaultNodeServiceAgent";
/// The role of the Google APIs service agent.
pub const ROLE_EDITOR: &str = "roles/editor";

/// The permissions every node service account needs on its project (from any role).
pub const NODE_SA_PERMISSIONS: [&str; 4] = [
    "logging.logEntries.create",
    "monitoring.timeSeries.create",
    "monitoring.metricDescriptors.create",
    "autoscaling.sites.writeMetrics",
];

/// The roles node service accounts usually hold for [`NODE_SA_PERMISSIONS`]: the restored role, the
/// older per-permission roles GKE documented before it, and the basic roles that contain them. A
/// command asked about projects by name reads these definitions beside a project's policy rather
/// than after it (a guess about what to read early, never about a verdict).
pub const NODE_SA_USUAL_ROLES: [&str; 6] = [
    ROLE_DEFAULT_NODE_SA,
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/autoscaling.metricsWriter",
    ROLE_EDITOR,
    "roles/owner",
];

/// The API whose enablement puts a project in scope.
pub const CONTAINER_API: &str = "container.googleapis.com";

/// Every role this program may ever grant: the restore roles of the requirement list.
pub fn restorable_roles() -> Vec<Role> {
    RequirementId::ALL
        .iter()
        .filter_map(|r| r.restore_role())
        .collect()
}

/// `service-NUMBER@container-engine-robot.iam.gserviceaccount.com`.
pub fn gke_service_agent(number: &ProjectNumber) -> ServiceAccountEmail {
    agent(format!(
        "service-{number}@container-engine-robot.iam.gserviceaccount.com"
    ))
}

/// `service-NUMBER@gcp-sa-gkenode.iam.gserviceaccount.com`.
pub fn gke_node_service_agent(number: &ProjectNumber) -> ServiceAccountEmail {
    agent(format!(
        "service-{number}@gcp-sa-gkenode.iam.gserviceaccount.com"
    ))
}

/// `NUMBER@cloudservices.gserviceaccount.com`.
pub fn google_apis_service_agent(number: &ProjectNumber) -> ServiceAccountEmail {
    agent(format!("{number}@cloudservices.gserviceaccount.com"))
}

fn agent(email: String) -> ServiceAccountEmail {
    ServiceAccountEmail::parse(&email).expect("agent emails built from a project number are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_ids_round_trip_through_their_names() {
        for id in RequirementId::ALL {
            assert_eq!(id.as_str().parse::<RequirementId>(), Ok(id));
            assert_eq!(
                serde_json::to_value(id).unwrap(),
                serde_json::json!(id.as_str())
            );
        }
        assert!(
            "owner"
                .parse::<RequirementId>()
                .unwrap_err()
                .contains("node-sa-permissions")
        );
    }

    #[test]
    fn only_requirement_roles_are_restorable_and_none_is_owner() {
        let roles = restorable_roles();
        assert_eq!(roles.len(), 4);
        assert!(roles.iter().all(|r| r.as_str() != "roles/owner"));
    }
}
