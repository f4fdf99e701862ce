//! Bundled predefined roles: real permission lists for the GKE roles (JSON dumps in `roles/`, crawled
//! from `roles.get`), hand-written lists for the common roles worlds use (below), and the catalog of
//! the other predefined roles a GKE platform team meets (`roles/catalog.json`, written by
//! `tools/role-catalog.py`, every entry `approximate: true`). A role in none of them does not exist:
//! `roles.get` answers 404, `setIamPolicy` 400, and a world file binding it fails to load.
//!
//! Hand-written lists are approximations of the real (much longer) lists: they contain a representative
//! subset, and every permission this project's checks look at is stated deliberately:
//! - `roles/owner` and `roles/editor` include `logging.logEntries.create`, `monitoring.timeSeries.create`,
//!   `monitoring.metricDescriptors.create` and `autoscaling.sites.writeMetrics` (basic write roles carry
//!   the write permissions of these services; this is why the Compute Engine default account with
//!   `roles/editor` works as a node account).
//! - `roles/viewer` and `roles/monitoring.viewer` include none of the four (they are read-only).
//! - `roles/logging.logWriter`, `roles/monitoring.metricWriter`, `roles/autoscaling.metricsWriter` each
//!   include exactly their part of the four, as in Google's lists.

use serde::Deserialize;

/// A predefined role as the simulator knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleDef {
    /// `roles/X`, `projects/P/roles/X` or `organizations/O/roles/X`.
    pub name: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Launch stage.
    pub stage: String,
    /// Permissions.
    pub included_permissions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleDump {
    name: String,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    stage: Option<String>,
    included_permissions: Vec<String>,
}

/// One entry of `roles/catalog.json`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CatalogEntry {
    name: String,
    title: String,
    description: String,
    stage: String,
    /// Always true: the list is an approximation of Google's.
    #[allow(dead_code)]
    approximate: bool,
    included_permissions: Vec<String>,
}

const CATALOG: &str = include_str!("roles/catalog.json");

const DUMPS: [&str; 4] = [
    include_str!("roles/container.defaultNodeServiceAccount.json"),
    include_str!("roles/container.defaultNodeServiceAgent.json"),
    include_str!("roles/container.nodeServiceAgent.json"),
    include_str!("roles/container.serviceAgent.json"),
];

const VIEWER: &[&str] = &[
    "compute.instances.get",
    "compute.instances.list",
    "compute.projects.get",
    "container.clusters.get",
    "container.clusters.list",
    "container.nodes.get",
    "container.nodes.list",
    "container.operations.get",
    "container.operations.list",
    "iam.roles.get",
    "iam.roles.list",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.list",
    "logging.logEntries.list",
    "logging.logs.list",
    "monitoring.metricDescriptors.get",
    "monitoring.metricDescriptors.list",
    "monitoring.timeSeries.list",
    "pubsub.topics.get",
    "pubsub.topics.list",
    "recommender.containerDiagnosisRecommendations.get",
    "recommender.containerDiagnosisRecommendations.list",
    "resourcemanager.projects.get",
    "resourcemanager.projects.getIamPolicy",
    "serviceusage.services.get",
    "serviceusage.services.list",
    "storage.buckets.list",
];

const EDITOR_EXTRA: &[&str] = &[
    "autoscaling.sites.writeMetrics",
    "compute.instances.create",
    "compute.instances.delete",
    "container.clusters.create",
    "container.clusters.delete",
    "container.clusters.update",
    "iam.serviceAccounts.actAs",
    "iam.serviceAccounts.create",
    "iam.serviceAccounts.delete",
    "iam.serviceAccounts.disable",
    "iam.serviceAccounts.enable",
    "iam.serviceAccounts.undelete",
    "iam.serviceAccounts.update",
    "logging.logEntries.create",
    "monitoring.metricDescriptors.create",
    "monitoring.timeSeries.create",
    "pubsub.topics.create",
    "pubsub.topics.publish",
    "recommender.containerDiagnosisRecommendations.update",
    "serviceusage.services.disable",
    "serviceusage.services.enable",
    "serviceusage.services.use",
    "storage.objects.create",
    "storage.objects.get",
];

const OWNER_EXTRA: &[&str] = &[
    "iam.roles.create",
    "iam.roles.delete",
    "iam.roles.update",
    "iam.serviceAccounts.getIamPolicy",
    "iam.serviceAccounts.setIamPolicy",
    "resourcemanager.projects.delete",
    "resourcemanager.projects.setIamPolicy",
];

/// Hand-written roles: (name, title, description, permissions). See the module doc for approximations.
const HANDWRITTEN: &[(&str, &str, &str, &[&str])] = &[
    (
        "roles/logging.logWriter",
        "Logs Writer",
        "Provides the permissions to write log entries.",
        &["logging.logEntries.create", "logging.logEntries.route"],
    ),
    (
        "roles/monitoring.metricWriter",
        "Monitoring Metric Writer",
        "Provides write-only access to metrics. This provides exactly the permissions needed by the Cloud Monitoring agent and other systems that send metrics.",
        &[
            "monitoring.metricDescriptors.create",
            "monitoring.metricDescriptors.get",
            "monitoring.metricDescriptors.list",
            "monitoring.monitoredResourceDescriptors.get",
            "monitoring.monitoredResourceDescriptors.list",
            "monitoring.timeSeries.create",
        ],
    ),
    (
        "roles/monitoring.viewer",
        "Monitoring Viewer",
        "Provides read-only access to get and list information about all monitoring data and configurations.",
        &[
            "monitoring.alertPolicies.get",
            "monitoring.alertPolicies.list",
            "monitoring.dashboards.get",
            "monitoring.dashboards.list",
            "monitoring.groups.get",
            "monitoring.groups.list",
            "monitoring.metricDescriptors.get",
            "monitoring.metricDescriptors.list",
            "monitoring.monitoredResourceDescriptors.get",
            "monitoring.monitoredResourceDescriptors.list",
            "monitoring.timeSeries.list",
            "resourcemanager.projects.get",
        ],
    ),
    (
        "roles/autoscaling.metricsWriter",
        "Autoscaling Metrics Writer",
        "Grants access to write autoscaling metrics.",
        &["autoscaling.sites.writeMetrics"],
    ),
    (
        "roles/stackdriver.resourceMetadata.writer",
        "Stackdriver Resource Metadata Writer",
        "Write-only access to resource metadata.",
        &["stackdriver.resourceMetadata.write"],
    ),
    (
        "roles/iam.serviceAccountUser",
        "Service Account User",
        "Run operations as the service account.",
        &[
            "iam.serviceAccounts.actAs",
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.list",
            "resourcemanager.projects.get",
            "resourcemanager.projects.list",
        ],
    ),
    (
        "roles/iam.serviceAccountAdmin",
        "Service Account Admin",
        "Create and manage service accounts.",
        &[
            "iam.serviceAccounts.create",
            "iam.serviceAccounts.delete",
            "iam.serviceAccounts.disable",
            "iam.serviceAccounts.enable",
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.getIamPolicy",
            "iam.serviceAccounts.list",
            "iam.serviceAccounts.setIamPolicy",
            "iam.serviceAccounts.undelete",
            "iam.serviceAccounts.update",
            "resourcemanager.projects.get",
            "resourcemanager.projects.list",
        ],
    ),
    (
        "roles/iam.securityReviewer",
        "Security Reviewer",
        "Security reviewer role, with permissions to get any IAM policy.",
        &[
            "iam.roles.get",
            "iam.roles.list",
            "iam.serviceAccounts.getIamPolicy",
            "iam.serviceAccounts.list",
            "resourcemanager.folders.getIamPolicy",
            "resourcemanager.organizations.getIamPolicy",
            "resourcemanager.projects.getIamPolicy",
        ],
    ),
    (
        "roles/resourcemanager.projectIamAdmin",
        "Project IAM Admin",
        "Access and administer a project IAM policies.",
        &[
            "iam.policybindings.get",
            "iam.policybindings.list",
            "resourcemanager.projects.get",
            "resourcemanager.projects.getIamPolicy",
            "resourcemanager.projects.setIamPolicy",
        ],
    ),
    (
        "roles/browser",
        "Browser",
        "Read access to browse the hierarchy for a project, including the folder, organization, and allow policy.",
        &[
            "resourcemanager.folders.get",
            "resourcemanager.folders.list",
            "resourcemanager.organizations.get",
            "resourcemanager.projects.get",
            "resourcemanager.projects.getIamPolicy",
            "resourcemanager.projects.list",
        ],
    ),
    (
        "roles/compute.serviceAgent",
        "Compute Engine Service Agent",
        "Gives Compute Engine Service Account access to assert service account authority.",
        // Approximation: the real list has hundreds of compute.* permissions and none of the four node ones.
        &[
            "compute.disks.create",
            "compute.instances.create",
            "compute.instances.get",
            "compute.instances.list",
            "compute.instances.setMetadata",
            "iam.serviceAccounts.actAs",
            "iam.serviceAccounts.get",
            "resourcemanager.projects.get",
            "serviceusage.services.use",
        ],
    ),
    (
        "roles/container.admin",
        "Kubernetes Engine Admin",
        "Provides access to full management of clusters and their Kubernetes API objects.",
        // Approximation of the container.* list; includes the Recommender permissions it really has.
        &[
            "container.clusters.create",
            "container.clusters.delete",
            "container.clusters.get",
            "container.clusters.list",
            "container.clusters.update",
            "container.operations.get",
            "container.operations.list",
            "recommender.containerDiagnosisInsights.get",
            "recommender.containerDiagnosisInsights.list",
            "recommender.containerDiagnosisInsights.update",
            "recommender.containerDiagnosisRecommendations.get",
            "recommender.containerDiagnosisRecommendations.list",
            "recommender.containerDiagnosisRecommendations.update",
            "resourcemanager.projects.get",
            "resourcemanager.projects.list",
        ],
    ),
    (
        "roles/container.viewer",
        "Kubernetes Engine Viewer",
        "Provides read-only access to resources within GKE clusters.",
        &[
            "container.clusters.get",
            "container.clusters.list",
            "container.operations.get",
            "container.operations.list",
            "resourcemanager.projects.get",
            "resourcemanager.projects.list",
        ],
    ),
    (
        "roles/pubsub.publisher",
        "Pub/Sub Publisher",
        "Provides access to publish messages to a topic.",
        &["pubsub.topics.publish"],
    ),
    (
        "roles/storage.objectViewer",
        "Storage Object Viewer",
        "Grants access to view objects and their metadata, excluding ACLs.",
        &[
            "resourcemanager.projects.get",
            "storage.folders.get",
            "storage.objects.get",
            "storage.objects.list",
        ],
    ),
    (
        "roles/artifactregistry.reader",
        "Artifact Registry Reader",
        "Access to read repository items.",
        &[
            "artifactregistry.repositories.downloadArtifacts",
            "artifactregistry.repositories.get",
        ],
    ),
];

fn sorted(mut perms: Vec<String>) -> Vec<String> {
    perms.sort();
    perms.dedup();
    perms
}

/// Every bundled predefined role.
pub fn bundled() -> Vec<RoleDef> {
    let mut out = Vec::new();
    // Later entries win: catalog approximations, then the dumps and hand-written lists.
    for e in serde_json::from_str::<Vec<CatalogEntry>>(CATALOG).unwrap_or_default() {
        out.push(RoleDef {
            name: e.name,
            title: e.title,
            description: e.description,
            stage: e.stage,
            included_permissions: e.included_permissions,
        });
    }
    for text in DUMPS {
        // The dumps are compiled in; a broken one is a build mistake caught by the unit test below.
        if let Ok(d) = serde_json::from_str::<RoleDump>(text) {
            out.push(RoleDef {
                name: d.name,
                title: d.title,
                description: d.description,
                stage: d.stage.unwrap_or_else(|| "GA".into()),
                included_permissions: d.included_permissions,
            });
        }
    }
    for (name, title, description, perms) in HANDWRITTEN {
        out.push(RoleDef {
            name: (*name).into(),
            title: (*title).into(),
            description: (*description).into(),
            stage: "GA".into(),
            included_permissions: sorted(perms.iter().map(|p| (*p).to_owned()).collect()),
        });
    }
    let viewer: Vec<String> = VIEWER.iter().map(|p| (*p).to_owned()).collect();
    let editor: Vec<String> = viewer
        .iter()
        .cloned()
        .chain(EDITOR_EXTRA.iter().map(|p| (*p).to_owned()))
        .collect();
    let owner: Vec<String> = editor
        .iter()
        .cloned()
        .chain(OWNER_EXTRA.iter().map(|p| (*p).to_owned()))
        .collect();
    out.push(RoleDef {
        name: "roles/viewer".into(),
        title: "Viewer".into(),
        description: "View most Google Cloud resources. See the list of included permissions."
            .into(),
        stage: "GA".into(),
        included_permissions: sorted(viewer),
    });
    out.push(RoleDef {
        name: "roles/editor".into(),
        title: "Editor".into(),
        description: "View, create, update, and delete most Google Cloud resources. See the list of included permissions.".into(),
        stage: "GA".into(),
        included_permissions: sorted(editor),
    });
    out.push(RoleDef {
        name: "roles/owner".into(),
        title: "Owner".into(),
        description:
            "Full access to most Google Cloud resources. See the list of included permissions."
                .into(),
        stage: "GA".into(),
        included_permissions: sorted(owner),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE_FOUR: [&str; 4] = [
        "autoscaling.sites.writeMetrics",
        "logging.logEntries.create",
        "monitoring.metricDescriptors.create",
        "monitoring.timeSeries.create",
    ];

    #[test]
    fn bundled_roles_carry_the_node_permissions_where_expected() {
        let roles = bundled();
        assert_eq!(
            serde_json::from_str::<Vec<CatalogEntry>>(CATALOG)
                .unwrap()
                .len(),
            89
        );
        for name in [
            "roles/compute.viewer",
            "roles/container.developer",
            "roles/resourcemanager.folderViewer",
            "roles/resourcemanager.organizationAdmin",
            "roles/pubsub.subscriber",
            "roles/run.invoker",
            "roles/secretmanager.secretAccessor",
            "roles/serviceusage.serviceUsageConsumer",
            "roles/iam.workloadIdentityUser",
            "roles/logging.viewer",
            "roles/monitoring.editor",
        ] {
            assert!(roles.iter().any(|r| r.name == name), "{name}");
        }
        assert!(
            roles
                .iter()
                .filter(|r| r.name.starts_with("roles/container."))
                .count()
                >= 12
        );
        let has = |role: &str, perm: &str| {
            roles
                .iter()
                .find(|r| r.name == role)
                .is_some_and(|r| r.included_permissions.iter().any(|p| p == perm))
        };
        for p in NODE_FOUR {
            assert!(has("roles/container.defaultNodeServiceAccount", p));
            assert!(has("roles/owner", p));
            assert!(has("roles/editor", p));
            assert!(!has("roles/viewer", p));
        }
        assert!(has("roles/logging.logWriter", "logging.logEntries.create"));
        assert!(has(
            "roles/monitoring.metricWriter",
            "monitoring.timeSeries.create"
        ));
        assert!(has(
            "roles/autoscaling.metricsWriter",
            "autoscaling.sites.writeMetrics"
        ));
    }
}
