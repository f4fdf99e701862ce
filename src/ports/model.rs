//! What the Google ports return: the few facts the core reads about projects, service accounts,
//! clusters and recommendations, independent of any wire format.

use serde::Deserialize;

use crate::domain::iam::{Member, ProjectId, ProjectNumber, ResourceRef, Role};
use crate::domain::state::Cluster;

/// A project as listed or fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectInfo {
    /// Project id.
    pub project_id: ProjectId,
    /// Project number.
    pub project_number: ProjectNumber,
    /// Direct parent (folder or organization).
    pub parent: Option<ResourceRef>,
    /// The folders and organization above the project, nearest first (the direct parent first), as
    /// far as the listing that found it knew them: a walk from a folder or organization knows the
    /// whole chain up to its root; a single lookup knows the parent alone.
    pub ancestors: Vec<ResourceRef>,
}

impl ProjectInfo {
    /// The same project with its direct parent as the one ancestor known (a single lookup).
    pub fn with_parent_as_ancestor(mut self) -> Self {
        self.ancestors = self.parent.iter().cloned().collect();
        self
    }
}

/// A service account as IAM returns it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccount {
    /// Email.
    pub email: String,
    /// Numeric unique id.
    #[serde(default)]
    pub unique_id: Option<String>,
    /// Absent (false) for enabled accounts.
    #[serde(default)]
    pub disabled: bool,
}

/// The result of listing clusters in all locations.
#[derive(Clone, Debug, Default)]
pub struct ClusterList {
    /// Clusters.
    pub clusters: Vec<Cluster>,
    /// Zones that could not be listed.
    pub missing_zones: Vec<String>,
}

/// The recommender that reports node service accounts missing permissions.
pub const DIAGNOSIS_RECOMMENDER: &str = "google.container.DiagnosisRecommender";
/// Its subtype for missing node service account permissions.
pub const NODE_SA_SUBTYPE: &str = "NODE_SA_MISSING_PERMISSIONS";

/// A Recommender recommendation (the fields we use).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// Full resource name.
    pub name: String,
    /// Etag, with literal double quotes.
    #[serde(default)]
    pub etag: String,
    /// Subtype.
    #[serde(default)]
    pub recommender_subtype: String,
    /// State (`ACTIVE`, `CLAIMED`, ...).
    #[serde(default)]
    pub state_info: RecommendationState,
    /// Target resources (clusters).
    #[serde(default)]
    pub target_resources: Vec<String>,
}

/// `stateInfo`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct RecommendationState {
    /// State name.
    #[serde(default)]
    pub state: String,
}

/// The state-changing verbs on a recommendation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecommendationMark {
    /// `markClaimed`.
    Claimed,
    /// `markSucceeded`.
    Succeeded,
    /// `markFailed`.
    Failed,
}

/// One binding the remediator itself added, as Cloud Audit Logs recorded its `SetIamPolicy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnRestoration {
    /// The role granted.
    pub role: Role,
    /// The member granted.
    pub member: Member,
    /// The policy etag the write produced (`response.etag`), when recorded.
    pub etag_after: Option<String>,
    /// When (RFC 3339).
    pub timestamp: String,
}
