//! The ports: one small async trait per Google API the core uses, and one for the notification sink.
//!
//! The engine only ever sees these traits; `gcp/` implements them over REST, `pubsub` implements the
//! sink, and the scenario tests implement them with a recording fake. Every method returns a boxed
//! future so the traits stay object-safe (`Arc<dyn Cloud>`), and every failure is an [`ApiError`]
//! the engine classifies (transient, conflict, not found, denied) without knowing the transport.

pub mod access;
pub mod assets;
pub mod error;
pub mod model;
pub mod retry;
pub mod state;

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use crate::domain::iam::{Policy, ProjectId, ResourceRef, Role};
use crate::domain::state::{Restorations, RoleLookup, Troubleshot};
use crate::notify::Notification;

pub use access::{DenyPolicies, GroupMembership, OrgPolicies};
pub use assets::{Asset, AssetBody, AssetContent, AssetInventory, AssetPage};
pub use error::{Api, ApiError};
pub use model::{
    ClusterList, DIAGNOSIS_RECOMMENDER, NODE_SA_SUBTYPE, OwnRestoration, ProjectInfo,
    Recommendation, RecommendationMark, RecommendationState, ServiceAccount,
};
pub use retry::RetryPolicy;
pub use state::{Collection, StateError, StateStore, StoreInfo, Stored, Version, WriteFlags};

/// Resource Manager: projects, folders and the hierarchy.
pub trait Projects: Send + Sync {
    /// A project by id.
    fn get_project<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ProjectInfo, ApiError>>;
    /// A project by id or number (audit logs name projects either way).
    fn get_project_by_id_or_number<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<ProjectInfo, ApiError>>;
    /// The parent of a folder (`None` when it has none the caller may see).
    fn get_folder_parent<'a>(
        &'a self,
        folder_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResourceRef>, ApiError>>;
    /// Every active project under a folder or organization, through sub-folders.
    fn list_projects_under<'a>(
        &'a self,
        root: &'a ResourceRef,
    ) -> BoxFuture<'a, Result<Vec<ProjectInfo>, ApiError>>;
}

/// IAM policies of projects, folders and organizations (read at version 3).
pub trait Policies: Send + Sync {
    /// The policy of a resource, with its etag.
    fn get_iam_policy<'a>(
        &'a self,
        resource: &'a ResourceRef,
    ) -> BoxFuture<'a, Result<Policy, ApiError>>;
    /// Writes a project's policy guarded by the etag it carries; a stale etag is a conflict.
    fn set_project_iam_policy<'a>(
        &'a self,
        project: &'a ProjectId,
        policy: &'a Policy,
    ) -> BoxFuture<'a, Result<Policy, ApiError>>;
}

/// IAM role definitions (predefined and custom).
pub trait Roles: Send + Sync {
    /// A role's permissions, or why they cannot be known.
    fn get_role<'a>(&'a self, role: &'a Role) -> BoxFuture<'a, RoleLookup>;
}

/// The Container API: clusters and node pools.
pub trait Clusters: Send + Sync {
    /// Every cluster of a project in every location (`missing_zones` lists locations that did not answer).
    fn list_clusters<'a>(
        &'a self,
        project: &'a ProjectId,
    ) -> BoxFuture<'a, Result<ClusterList, ApiError>>;
}

/// IAM service accounts.
pub trait ServiceAccounts: Send + Sync {
    /// Every service account of a project, including disabled ones.
    fn list_service_accounts<'a>(
        &'a self,
        project: &'a ProjectId,
    ) -> BoxFuture<'a, Result<Vec<ServiceAccount>, ApiError>>;
    /// One account by email (`None` when it does not exist).
    fn get_service_account<'a>(
        &'a self,
        email: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, ApiError>>;
    /// Enables a disabled account.
    fn enable_service_account<'a>(&'a self, email: &'a str) -> BoxFuture<'a, Result<(), ApiError>>;
    /// Undeletes a deleted account by its unique id.
    fn undelete_service_account<'a>(
        &'a self,
        unique_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// Service Usage.
pub trait Services: Send + Sync {
    /// Whether a service is enabled on a project.
    fn service_enabled<'a>(
        &'a self,
        project: &'a ProjectId,
        service: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>>;
    /// Enables a service (waits for the operation).
    fn enable_service<'a>(
        &'a self,
        project: &'a ProjectId,
        service: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// The Recommender (GKE's `NODE_SA_MISSING_PERMISSIONS` diagnosis).
pub trait Recommendations: Send + Sync {
    /// Active and claimed node-SA recommendations of a project in one location.
    fn list_node_sa_recommendations<'a>(
        &'a self,
        project: &'a ProjectId,
        location: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Recommendation>, ApiError>>;
    /// One recommendation by name.
    fn get_recommendation<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Recommendation, ApiError>>;
    /// Marks a recommendation (etag-guarded); returns it with its new etag.
    fn mark_recommendation<'a>(
        &'a self,
        name: &'a str,
        mark: RecommendationMark,
        etag: &'a str,
        metadata: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Recommendation, ApiError>>;
}

/// Cloud Audit Logs as the shared record of our own restorations.
pub trait AuditLog: Send + Sync {
    /// Every binding `self_email` added to the project since `since` (RFC 3339), newest first.
    fn own_restorations<'a>(
        &'a self,
        project: &'a ProjectId,
        self_email: &'a str,
        since: &'a str,
    ) -> BoxFuture<'a, Result<Vec<OwnRestoration>, ApiError>>;

    /// How many times `self_email` restored each binding on each of `projects` (at most
    /// [`AUDIT_LOG_BATCH`]) since `since` (RFC 3339), in one read. Every project asked for is in the
    /// answer, with no counts when it has none.
    fn count_own_restorations<'a>(
        &'a self,
        projects: &'a [ProjectId],
        self_email: &'a str,
        since: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<ProjectId, Restorations>, ApiError>>;
}

/// The most projects one read of the audit log names (Cloud Logging allows 100 `resourceNames`).
pub const AUDIT_LOG_BATCH: usize = 100;

/// The Policy Troubleshooter (permissions that reach a principal through groups).
pub trait Troubleshooter: Send + Sync {
    /// Whether `email` holds `permission` on the project, as IAM decides.
    fn troubleshoot<'a>(
        &'a self,
        email: &'a str,
        project: &'a ProjectId,
        permission: &'a str,
    ) -> BoxFuture<'a, Result<Troubleshot, ApiError>>;
}

/// Every Google port at once: what the engine holds as `Arc<dyn Cloud>`.
pub trait Cloud:
    Projects
    + Policies
    + Roles
    + Clusters
    + ServiceAccounts
    + Services
    + Recommendations
    + AuditLog
    + Troubleshooter
    + DenyPolicies
    + OrgPolicies
    + GroupMembership
    + AssetInventory
{
}

impl<T> Cloud for T where
    T: Projects
        + Policies
        + Roles
        + Clusters
        + ServiceAccounts
        + Services
        + Recommendations
        + AuditLog
        + Troubleshooter
        + DenyPolicies
        + OrgPolicies
        + GroupMembership
        + AssetInventory
{
}

/// A notification could not be published (the work that produced it must be retried or recorded).
#[derive(Debug, thiserror::Error)]
#[error("publishing to {destination} failed: {message}")]
pub struct PublishError {
    /// Where it was going (a topic name).
    pub destination: String,
    /// Why.
    pub message: String,
}

/// Where notifications go (the notifications topic).
pub trait NotificationSink: Send + Sync {
    /// Publishes one notification; returns the message id.
    fn publish<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<String, PublishError>>;
    /// Sends everything buffered (on shutdown).
    fn flush(&self) -> BoxFuture<'_, ()>;
}
