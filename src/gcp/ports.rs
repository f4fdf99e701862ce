//! [`Gcp`] as the engine's ports: each trait method delegates to the typed REST method of the same name.

use std::collections::BTreeMap;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::Gcp;
use crate::domain::iam::{Policy, ProjectId, ResourceRef, Role};
use crate::domain::state::{Restorations, RoleLookup, Troubleshot};
use crate::ports::{
    ApiError, AuditLog, ClusterList, Clusters, OwnRestoration, Policies, ProjectInfo, Projects,
    Recommendation, RecommendationMark, Recommendations, Roles, ServiceAccount, ServiceAccounts,
    Services, Troubleshooter,
};

impl Projects for Gcp {
    fn get_project<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ProjectInfo, ApiError>> {
        Gcp::get_project(self, id).boxed()
    }
    fn get_project_by_id_or_number<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<ProjectInfo, ApiError>> {
        Gcp::get_project_by_id_or_number(self, key).boxed()
    }
    fn get_folder_parent<'a>(
        &'a self,
        folder_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResourceRef>, ApiError>> {
        Gcp::get_folder_parent(self, folder_id).boxed()
    }
    fn list_projects_under<'a>(
        &'a self,
        root: &'a ResourceRef,
    ) -> BoxFuture<'a, Result<Vec<ProjectInfo>, ApiError>> {
        Gcp::list_projects_under(self, root).boxed()
    }
}

impl Policies for Gcp {
    fn get_iam_policy<'a>(
        &'a self,
        resource: &'a ResourceRef,
    ) -> BoxFuture<'a, Result<Policy, ApiError>> {
        Gcp::get_iam_policy(self, resource).boxed()
    }
    fn set_project_iam_policy<'a>(
        &'a self,
        project: &'a ProjectId,
        policy: &'a Policy,
    ) -> BoxFuture<'a, Result<Policy, ApiError>> {
        Gcp::set_project_iam_policy(self, project, policy).boxed()
    }
}

impl Roles for Gcp {
    fn get_role<'a>(&'a self, role: &'a Role) -> BoxFuture<'a, RoleLookup> {
        Gcp::get_role(self, role).boxed()
    }
}

impl Clusters for Gcp {
    fn list_clusters<'a>(
        &'a self,
        project: &'a ProjectId,
    ) -> BoxFuture<'a, Result<ClusterList, ApiError>> {
        Gcp::list_clusters(self, project).boxed()
    }
}

impl ServiceAccounts for Gcp {
    fn list_service_accounts<'a>(
        &'a self,
        project: &'a ProjectId,
    ) -> BoxFuture<'a, Result<Vec<ServiceAccount>, ApiError>> {
        Gcp::list_service_accounts(self, project).boxed()
    }
    fn get_service_account<'a>(
        &'a self,
        email: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, ApiError>> {
        Gcp::get_service_account(self, email).boxed()
    }
    fn enable_service_account<'a>(&'a self, email: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        Gcp::enable_service_account(self, email).boxed()
    }
    fn undelete_service_account<'a>(
        &'a self,
        unique_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Gcp::undelete_service_account(self, unique_id).boxed()
    }
}

impl Services for Gcp {
    fn service_enabled<'a>(
        &'a self,
        project: &'a ProjectId,
        service: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        Gcp::service_enabled(self, project, service).boxed()
    }
    fn enable_service<'a>(
        &'a self,
        project: &'a ProjectId,
        service: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Gcp::enable_service(self, project, service).boxed()
    }
}

impl Recommendations for Gcp {
    fn list_node_sa_recommendations<'a>(
        &'a self,
        project: &'a ProjectId,
        location: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Recommendation>, ApiError>> {
        Gcp::list_node_sa_recommendations(self, project, location).boxed()
    }
    fn get_recommendation<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Recommendation, ApiError>> {
        Gcp::get_recommendation(self, name).boxed()
    }
    fn mark_recommendation<'a>(
        &'a self,
        name: &'a str,
        mark: RecommendationMark,
        etag: &'a str,
        metadata: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Recommendation, ApiError>> {
        Gcp::mark_recommendation(self, name, mark, etag, metadata).boxed()
    }
}

impl AuditLog for Gcp {
    fn own_restorations<'a>(
        &'a self,
        project: &'a ProjectId,
        self_email: &'a str,
        since: &'a str,
    ) -> BoxFuture<'a, Result<Vec<OwnRestoration>, ApiError>> {
        Gcp::own_restorations(self, project, self_email, since).boxed()
    }

    fn count_own_restorations<'a>(
        &'a self,
        projects: &'a [ProjectId],
        self_email: &'a str,
        since: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<ProjectId, Restorations>, ApiError>> {
        Gcp::count_own_restorations(self, projects, self_email, since).boxed()
    }
}

impl Troubleshooter for Gcp {
    fn troubleshoot<'a>(
        &'a self,
        email: &'a str,
        project: &'a ProjectId,
        permission: &'a str,
    ) -> BoxFuture<'a, Result<Troubleshot, ApiError>> {
        Gcp::troubleshoot(self, email, project, permission).boxed()
    }
}
