//! The Cloud Asset Inventory port: a scope's assets (`assets.list`), listed page by page to the end
//! by the adapter and decoded into the few facts a sweep reads (IAM policies, projects, clusters,
//! service accounts, enabled services, custom roles), independent of the wire format.
//!
//! A snapshot is a discovery aid, never a basis for writing: it may lag the live state, so the engine
//! reports from it only what it can decide is healthy and re-verifies everything else live.

use std::collections::BTreeSet;

use futures::future::BoxFuture;

use super::error::ApiError;
use super::model::{ProjectInfo, ServiceAccount};
use crate::domain::iam::{Policy, ProjectId, ResourceRef, Role};
use crate::domain::state::Cluster;

/// What an `assets.list` call returns per asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssetContent {
    /// `contentType=RESOURCE`: the resource's data.
    Resource,
    /// `contentType=IAM_POLICY`: the resource's IAM policy.
    IamPolicy,
}

/// Asset types a sweep lists.
pub mod asset_types {
    /// An organization.
    pub const ORGANIZATION: &str = "cloudresourcemanager.googleapis.com/Organization";
    /// A folder.
    pub const FOLDER: &str = "cloudresourcemanager.googleapis.com/Folder";
    /// A project.
    pub const PROJECT: &str = "cloudresourcemanager.googleapis.com/Project";
    /// A GKE cluster.
    pub const CLUSTER: &str = "container.googleapis.com/Cluster";
    /// A service account.
    pub const SERVICE_ACCOUNT: &str = "iam.googleapis.com/ServiceAccount";
    /// A custom role.
    pub const ROLE: &str = "iam.googleapis.com/Role";
    /// An enabled service of a project.
    pub const SERVICE: &str = "serviceusage.googleapis.com/Service";
}

/// One asset, reduced to what a sweep reads.
#[derive(Clone, Debug)]
pub struct Asset {
    /// Full resource name (`//cloudresourcemanager.googleapis.com/projects/NUMBER`).
    pub name: String,
    /// Asset type.
    pub asset_type: String,
    /// Closest first, from the resource itself to the organization (`projects/NUMBER`, `folders/N`,
    /// `organizations/N`).
    pub ancestors: Vec<String>,
    /// The content.
    pub body: AssetBody,
}

/// The decoded content of an asset.
#[derive(Clone, Debug)]
pub enum AssetBody {
    /// The IAM policy of a project (`ancestors[0]` is `projects/NUMBER`), folder or organization.
    IamPolicy(Policy),
    /// A project.
    Project {
        /// Id, number and parent.
        info: ProjectInfo,
        /// `lifecycleState` is `ACTIVE`.
        active: bool,
    },
    /// A GKE cluster of a project.
    Cluster {
        /// The project (from the asset name).
        project_id: ProjectId,
        /// The cluster as the Container API describes it.
        cluster: Cluster,
    },
    /// A service account of a project (deleted accounts are not assets).
    ServiceAccount {
        /// The project (from the account's data).
        project_id: ProjectId,
        /// The account.
        account: ServiceAccount,
    },
    /// A service of a project.
    Service {
        /// Project number.
        project_number: String,
        /// Service name (`container.googleapis.com`).
        service: String,
        /// `state` is `ENABLED`.
        enabled: bool,
    },
    /// A custom role.
    Role {
        /// Full role name.
        role: Role,
        /// `includedPermissions`.
        permissions: BTreeSet<String>,
        /// `deleted`.
        deleted: bool,
    },
    /// An asset whose data could not be decoded: what it describes is unknown (the project it belongs
    /// to, per `ancestors`, cannot be decided from the snapshot).
    Undecodable {
        /// Why.
        reason: String,
    },
    /// Any other asset (types or content a sweep does not read).
    Other,
}

/// One page of `assets.list`.
#[derive(Clone, Debug, Default)]
pub struct AssetPage {
    /// The snapshot time (RFC 3339), when given.
    pub read_time: Option<String>,
    /// Assets.
    pub assets: Vec<Asset>,
}

/// Cloud Asset Inventory (`cloudasset.googleapis.com`).
pub trait AssetInventory: Send + Sync {
    /// Every asset of `asset_types` under `scope` (an organization, folder or project), read in pages
    /// of at most `page_size` (1..=1000), each handed to `on_page` as it arrives (a listing is not
    /// held whole); the pages read, one call each.
    ///
    /// Fails closed: a listing that would loop or never end is an error, never a short list. On an
    /// error, the pages already handed out are part of an incomplete listing: drop them.
    fn list_asset_pages<'a>(
        &'a self,
        scope: &'a ResourceRef,
        content: AssetContent,
        asset_types: &'a [&'a str],
        page_size: u32,
        on_page: &'a mut (dyn FnMut(AssetPage) + Send),
    ) -> BoxFuture<'a, Result<u32, ApiError>>;
}
