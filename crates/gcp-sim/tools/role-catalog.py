#!/usr/bin/env python3
"""Writes src/roles/catalog.json: the predefined roles a GKE platform team meets that the simulator has no
crawled dump for. Every list here is an APPROXIMATION of Google's (usually much longer) list, built from
each role's documented scope as service.resource.verb permissions; `approximate: true` says so in the data.
Roles with real lists live in src/roles/*.json dumps (crawled from roles.get) and src/roles.rs.

Invariant kept on purpose: only roles whose real list has them carry the four node permissions
(logging.logEntries.create, monitoring.metricDescriptors.create, monitoring.timeSeries.create,
autoscaling.sites.writeMetrics). Usage: python3 tools/role-catalog.py > src/roles/catalog.json
"""

import json
import sys

READ = ["get", "list"]
WRITE = ["create", "delete", "get", "list", "update"]
IAM = ["getIamPolicy", "setIamPolicy"]


def p(service, resources, verbs):
    return [f"{service}.{r}.{v}" for r in resources for v in verbs]


PROJECT_READ = ["resourcemanager.projects.get", "resourcemanager.projects.list"]

GKE = ["clusters", "operations", "nodes", "pods", "deployments", "services", "configMaps", "namespaces",
       "jobs", "cronJobs", "daemonSets", "statefulSets", "replicaSets", "ingresses", "events", "serviceAccounts"]
GKE_SECRETS = ["secrets"]
GKE_RBAC = ["roles", "roleBindings", "clusterRoles", "clusterRoleBindings"]
CE = ["instances", "disks", "images", "instanceGroups", "instanceTemplates", "machineTypes", "zones", "regions",
      "snapshots", "projects"]
NET = ["networks", "subnetworks", "firewalls", "routes", "routers", "addresses", "forwardingRules",
       "backendServices", "healthChecks", "targetHttpProxies", "urlMaps", "sslCertificates"]
RECS = ["recommender.containerDiagnosisRecommendations", "recommender.containerDiagnosisInsights"]

ROLES = []


def role(name, title, description, perms, stage="GA"):
    ROLES.append({"name": name, "title": title, "description": description, "stage": stage,
                  "approximate": True, "includedPermissions": sorted(set(perms))})


# Kubernetes Engine.
role("roles/container.clusterAdmin", "Kubernetes Engine Cluster Admin",
     "Provides access to management of clusters.",
     p("container", ["clusters"], WRITE + ["getCredentials"]) + p("container", ["operations"], READ) + PROJECT_READ)
role("roles/container.clusterViewer", "Kubernetes Engine Cluster Viewer",
     "Provides access to get and list GKE clusters.",
     p("container", ["clusters"], READ) + PROJECT_READ)
role("roles/container.developer", "Kubernetes Engine Developer",
     "Provides access to Kubernetes API objects inside clusters.",
     p("container", ["clusters"], READ + ["getCredentials"]) + p("container", GKE[2:] + GKE_SECRETS, WRITE)
     + PROJECT_READ)
role("roles/container.hostServiceAgentUser", "Kubernetes Engine Host Service Agent User",
     "Allows the Kubernetes Engine service account in the host project to configure shared network resources.",
     ["compute.firewalls.create", "compute.firewalls.delete", "compute.firewalls.get", "compute.firewalls.list",
      "compute.firewalls.update", "compute.subnetworks.use", "compute.subnetworks.useExternalIp",
      "compute.subnetworks.get", "compute.networks.use"])
role("roles/container.securityAdmin", "Kubernetes Engine Security Admin",
     "Provides access to manage RBAC and security policies of clusters.",
     p("container", GKE_RBAC, WRITE + ["bind", "escalate"]) + p("container", ["clusters"], READ) + PROJECT_READ)
role("roles/container.nodeServiceAccount", "Kubernetes Engine Node Service Account",
     "Deprecated: use roles/container.defaultNodeServiceAccount.",
     ["autoscaling.sites.writeMetrics", "logging.logEntries.create", "monitoring.metricDescriptors.create",
      "monitoring.metricDescriptors.list", "monitoring.timeSeries.create", "monitoring.timeSeries.list",
      "resourcemanager.projects.get", "storage.objects.get", "storage.objects.list"], stage="DEPRECATED")

# Compute Engine basics.
role("roles/compute.viewer", "Compute Viewer",
     "Read-only access to get and list Compute Engine resources, without being able to read the data stored on them.",
     p("compute", CE + NET, READ) + PROJECT_READ)
role("roles/compute.admin", "Compute Admin", "Full control of all Compute Engine resources.",
     p("compute", CE + NET, WRITE) + p("compute", ["instances", "disks", "images", "snapshots"], IAM)
     + ["compute.instances.setMetadata", "compute.instances.setServiceAccount", "compute.instances.start",
        "compute.instances.stop", "compute.subnetworks.use", "iam.serviceAccounts.actAs"] + PROJECT_READ)
role("roles/compute.instanceAdmin.v1", "Compute Instance Admin (v1)",
     "Full control of Compute Engine instances, instance groups, disks, snapshots, and images.",
     p("compute", ["instances", "instanceGroups", "instanceTemplates", "disks", "snapshots", "images"], WRITE)
     + ["compute.instances.setMetadata", "compute.instances.start", "compute.instances.stop",
        "compute.subnetworks.use"] + PROJECT_READ)
role("roles/compute.instanceAdmin", "Compute Instance Admin (beta)",
     "Permissions to create, modify, and delete virtual machine instances.",
     p("compute", ["instances", "instanceGroups", "instanceTemplates", "disks"], WRITE) + PROJECT_READ,
     stage="BETA")
role("roles/compute.networkAdmin", "Compute Network Admin",
     "Permissions to create, modify, and delete networking resources, except for firewall rules and SSL certificates.",
     p("compute", [n for n in NET if n not in ("firewalls", "sslCertificates")], WRITE)
     + p("compute", ["firewalls", "sslCertificates"], READ) + PROJECT_READ)
role("roles/compute.networkUser", "Compute Network User", "Provides access to a shared VPC network.",
     p("compute", ["networks", "subnetworks"], READ) + ["compute.networks.use", "compute.subnetworks.use",
                                                       "compute.subnetworks.useExternalIp"] + PROJECT_READ)
role("roles/compute.networkViewer", "Compute Network Viewer", "Read-only access to Compute Engine networking resources.",
     p("compute", NET, READ) + PROJECT_READ)
role("roles/compute.securityAdmin", "Compute Security Admin",
     "Permissions to create, modify, and delete firewall rules and SSL certificates.",
     p("compute", ["firewalls", "sslCertificates", "securityPolicies"], WRITE) + PROJECT_READ)
role("roles/compute.storageAdmin", "Compute Storage Admin", "Permissions to create, modify, and delete disks, images, and snapshots.",
     p("compute", ["disks", "images", "snapshots"], WRITE) + PROJECT_READ)
role("roles/compute.loadBalancerAdmin", "Compute Load Balancer Admin",
     "Permissions to create, modify, and delete load balancers and associate resources.",
     p("compute", ["forwardingRules", "backendServices", "healthChecks", "targetHttpProxies", "urlMaps"], WRITE)
     + PROJECT_READ)
role("roles/compute.osLogin", "Compute OS Login", "Access to log in to a Compute Engine instance as a standard user.",
     ["compute.instances.get", "compute.instances.list", "compute.instances.osLogin", "compute.projects.get"])
role("roles/compute.osAdminLogin", "Compute OS Admin Login",
     "Access to log in to a Compute Engine instance as an administrator user.",
     ["compute.instances.get", "compute.instances.list", "compute.instances.osAdminLogin",
      "compute.instances.osLogin", "compute.projects.get"])

# IAM.
SA = ["iam.serviceAccounts"]
role("roles/iam.serviceAccountTokenCreator", "Service Account Token Creator",
     "Impersonate service accounts (create OAuth2 access tokens, sign blobs or JWTs, etc).",
     ["iam.serviceAccounts.get", "iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.getOpenIdToken",
      "iam.serviceAccounts.implicitDelegation", "iam.serviceAccounts.list", "iam.serviceAccounts.signBlob",
      "iam.serviceAccounts.signJwt"] + PROJECT_READ)
role("roles/iam.serviceAccountKeyAdmin", "Service Account Key Admin", "Create and manage (and rotate) service account keys.",
     p("iam", ["serviceAccountKeys"], ["create", "delete", "disable", "enable", "get", "list"])
     + ["iam.serviceAccounts.get", "iam.serviceAccounts.list"] + PROJECT_READ)
role("roles/iam.serviceAccountCreator", "Create Service Accounts", "Access to create service accounts.",
     ["iam.serviceAccounts.create"] + PROJECT_READ)
role("roles/iam.serviceAccountDeleter", "Delete Service Accounts", "Access to delete service accounts.",
     ["iam.serviceAccounts.delete"] + PROJECT_READ)
role("roles/iam.serviceAccountViewer", "View Service Accounts", "Read access to service accounts, metadata, and keys.",
     ["iam.serviceAccountKeys.get", "iam.serviceAccountKeys.list", "iam.serviceAccounts.get",
      "iam.serviceAccounts.getIamPolicy", "iam.serviceAccounts.list"] + PROJECT_READ)
role("roles/iam.workloadIdentityUser", "Workload Identity User",
     "Impersonate service accounts from GKE Workloads.",
     ["iam.serviceAccounts.get", "iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.getOpenIdToken",
      "iam.serviceAccounts.list"])
role("roles/iam.securityAdmin", "Security Admin",
     "Security admin role, with permissions to get and set any IAM policy.",
     ["iam.roles.get", "iam.roles.list", "iam.serviceAccounts.getIamPolicy", "iam.serviceAccounts.list",
      "iam.serviceAccounts.setIamPolicy", "resourcemanager.folders.getIamPolicy",
      "resourcemanager.folders.setIamPolicy", "resourcemanager.organizations.getIamPolicy",
      "resourcemanager.organizations.setIamPolicy", "resourcemanager.projects.getIamPolicy",
      "resourcemanager.projects.setIamPolicy"] + PROJECT_READ)
role("roles/iam.roleAdmin", "Role Administrator", "Provides access to all custom roles in the project.",
     p("iam", ["roles"], WRITE + ["undelete"]) + PROJECT_READ)
role("roles/iam.roleViewer", "Role Viewer", "Provides read access to all custom roles in the project.",
     p("iam", ["roles"], READ) + PROJECT_READ)
role("roles/iam.organizationRoleAdmin", "Organization Role Administrator",
     "Provides access to administer all custom roles in the organization and the projects below it.",
     p("iam", ["roles"], WRITE + ["undelete"]) + ["resourcemanager.organizations.get"] + PROJECT_READ)
role("roles/iam.organizationRoleViewer", "Organization Role Viewer",
     "Provides read access to all custom roles in the organization and the projects below it.",
     p("iam", ["roles"], READ) + ["resourcemanager.organizations.get"] + PROJECT_READ)
role("roles/iam.denyAdmin", "Deny Admin", "Access to create, modify, and delete deny policies.",
     p("iam", ["denypolicies"], WRITE))
role("roles/iam.denyReviewer", "Deny Reviewer", "Read access to deny policies.", p("iam", ["denypolicies"], READ))

# Logging.
LOGS = ["logs", "sinks", "buckets", "views", "exclusions", "logMetrics"]
role("roles/logging.admin", "Logging Admin", "Access to all logging permissions, and dependent permissions.",
     p("logging", LOGS, WRITE) + ["logging.logEntries.create", "logging.logEntries.list", "logging.logEntries.route",
                                  "logging.privateLogEntries.list", "logging.views.access"] + PROJECT_READ)
role("roles/logging.viewer", "Logs Viewer",
     "Provides access to view logs, except private logs such as Data Access audit logs.",
     p("logging", LOGS, READ) + ["logging.logEntries.list"] + PROJECT_READ)
role("roles/logging.privateLogViewer", "Private Logs Viewer",
     "Provides permissions of the Logs Viewer role and in addition, read-only access to log entries in private logs.",
     p("logging", LOGS, READ) + ["logging.logEntries.list", "logging.privateLogEntries.list"] + PROJECT_READ)
role("roles/logging.configWriter", "Logs Configuration Writer",
     "Provides permissions to read and write the configurations of logs-based metrics and sinks for exporting logs.",
     p("logging", ["sinks", "logMetrics", "buckets", "views", "exclusions"], WRITE) + PROJECT_READ)
role("roles/logging.bucketWriter", "Logs Bucket Writer", "Ability to write logs to a log bucket.",
     ["logging.buckets.write"])
role("roles/logging.viewAccessor", "Logs View Accessor", "Ability to read logs in a view.",
     ["logging.views.access", "logging.views.get", "logging.views.list", "logging.logEntries.list"])

# Monitoring.
MON = ["alertPolicies", "dashboards", "groups", "notificationChannels", "uptimeCheckConfigs", "services"]
role("roles/monitoring.admin", "Monitoring Admin", "Provides full access to Cloud Monitoring.",
     p("monitoring", MON, WRITE) + ["monitoring.metricDescriptors.create", "monitoring.metricDescriptors.delete",
                                    "monitoring.metricDescriptors.get", "monitoring.metricDescriptors.list",
                                    "monitoring.timeSeries.create", "monitoring.timeSeries.list"] + PROJECT_READ)
role("roles/monitoring.editor", "Monitoring Editor", "Provides full access to information about all monitoring data and configurations.",
     p("monitoring", MON, WRITE) + ["monitoring.metricDescriptors.create", "monitoring.metricDescriptors.get",
                                    "monitoring.metricDescriptors.list", "monitoring.timeSeries.create",
                                    "monitoring.timeSeries.list"] + PROJECT_READ)
role("roles/monitoring.alertPolicyEditor", "Monitoring AlertPolicy Editor", "Read/write access to alerting policies.",
     p("monitoring", ["alertPolicies"], WRITE))
role("roles/monitoring.alertPolicyViewer", "Monitoring AlertPolicy Viewer", "Read-only access to alerting policies.",
     p("monitoring", ["alertPolicies"], READ))
role("roles/monitoring.dashboardEditor", "Monitoring Dashboard Configuration Editor", "Read/write access to dashboard configurations.",
     p("monitoring", ["dashboards"], WRITE) + PROJECT_READ)
role("roles/monitoring.dashboardViewer", "Monitoring Dashboard Configuration Viewer", "Read-only access to dashboard configurations.",
     p("monitoring", ["dashboards"], READ) + PROJECT_READ)

# Resource Manager.
role("roles/resourcemanager.organizationAdmin", "Organization Administrator",
     "Access to administer all resources belonging to the organization.",
     ["resourcemanager.organizations.get", "resourcemanager.organizations.getIamPolicy",
      "resourcemanager.organizations.setIamPolicy", "resourcemanager.folders.get", "resourcemanager.folders.list",
      "resourcemanager.folders.getIamPolicy", "resourcemanager.folders.setIamPolicy",
      "resourcemanager.projects.getIamPolicy", "resourcemanager.projects.setIamPolicy",
      "resourcemanager.projects.update", "iam.roles.get", "iam.roles.list"] + PROJECT_READ)
role("roles/resourcemanager.organizationViewer", "Organization Viewer", "Access to view an organization.",
     ["resourcemanager.organizations.get"])
role("roles/resourcemanager.folderAdmin", "Folder Admin", "Provides all available permissions for working with folders.",
     p("resourcemanager", ["folders"], WRITE + IAM + ["move", "undelete"]) + ["resourcemanager.projects.getIamPolicy",
                                                                              "resourcemanager.projects.setIamPolicy"]
     + PROJECT_READ)
role("roles/resourcemanager.folderEditor", "Folder Editor", "Provides permission to modify folders as well as view a folder's IAM policy.",
     p("resourcemanager", ["folders"], ["get", "list", "update", "getIamPolicy"]) + PROJECT_READ)
role("roles/resourcemanager.folderViewer", "Folder Viewer", "Provides permission to get a folder and list the folders and projects below a resource.",
     ["resourcemanager.folders.get", "resourcemanager.folders.list"] + PROJECT_READ)
role("roles/resourcemanager.folderIamAdmin", "Folder IAM Admin", "Provides permissions to administer allow policies on folders.",
     ["resourcemanager.folders.get", "resourcemanager.folders.getIamPolicy", "resourcemanager.folders.setIamPolicy"])
role("roles/resourcemanager.projectCreator", "Project Creator", "Provides access to create new projects.",
     ["resourcemanager.projects.create", "resourcemanager.organizations.get"])
role("roles/resourcemanager.projectDeleter", "Project Deleter", "Provides access to delete Google Cloud projects.",
     ["resourcemanager.projects.delete"])
role("roles/resourcemanager.projectMover", "Project Mover", "Provides access to update and move projects.",
     ["resourcemanager.projects.get", "resourcemanager.projects.move", "resourcemanager.projects.update",
      "resourcemanager.folders.get", "resourcemanager.folders.list"])
role("roles/resourcemanager.tagUser", "Tag User", "Access to list and attach tags to resources.",
     ["resourcemanager.tagKeys.get", "resourcemanager.tagKeys.list", "resourcemanager.tagValues.get",
      "resourcemanager.tagValues.list", "resourcemanager.tagValueBindings.create",
      "resourcemanager.tagValueBindings.delete"])
role("roles/resourcemanager.tagViewer", "Tag Viewer", "Access to list tags and their associations with resources.",
     ["resourcemanager.tagKeys.get", "resourcemanager.tagKeys.list", "resourcemanager.tagValues.get",
      "resourcemanager.tagValues.list"])
role("roles/resourcemanager.tagAdmin", "Tag Administrator", "Administrator of tags.",
     p("resourcemanager", ["tagKeys", "tagValues"], WRITE + IAM))

# Service Usage.
role("roles/serviceusage.serviceUsageAdmin", "Service Usage Admin",
     "Ability to enable, disable, and inspect service states, inspect operations, and consume quota and billing.",
     ["serviceusage.services.disable", "serviceusage.services.enable", "serviceusage.services.get",
      "serviceusage.services.list", "serviceusage.services.use", "serviceusage.operations.get",
      "serviceusage.operations.list", "serviceusage.quotas.get", "serviceusage.quotas.update"] + PROJECT_READ)
role("roles/serviceusage.serviceUsageConsumer", "Service Usage Consumer",
     "Ability to inspect service states and operations, and consume quota and billing for a consumer project.",
     ["serviceusage.services.get", "serviceusage.services.list", "serviceusage.services.use",
      "serviceusage.operations.get", "serviceusage.operations.list", "serviceusage.quotas.get"] + PROJECT_READ)
role("roles/serviceusage.serviceUsageViewer", "Service Usage Viewer",
     "Ability to inspect service states and operations for a consumer project.",
     ["serviceusage.services.get", "serviceusage.services.list", "serviceusage.operations.get",
      "serviceusage.operations.list", "serviceusage.quotas.get"] + PROJECT_READ)
role("roles/serviceusage.apiKeysAdmin", "API Keys Admin", "Ability to create, delete, update, get and list API keys for a project.",
     p("apikeys", ["keys"], WRITE + ["getKeyString"]))

# Pub/Sub.
role("roles/pubsub.admin", "Pub/Sub Admin", "Provides full access to topics and subscriptions.",
     p("pubsub", ["topics", "subscriptions", "snapshots", "schemas"], WRITE + IAM)
     + ["pubsub.topics.publish", "pubsub.topics.attachSubscription", "pubsub.subscriptions.consume"] + PROJECT_READ)
role("roles/pubsub.editor", "Pub/Sub Editor", "Provides access to modify topics and subscriptions, access to publish and consume messages.",
     p("pubsub", ["topics", "subscriptions", "snapshots"], WRITE)
     + ["pubsub.topics.publish", "pubsub.topics.attachSubscription", "pubsub.subscriptions.consume"] + PROJECT_READ)
role("roles/pubsub.subscriber", "Pub/Sub Subscriber", "Provides access to consume messages from a subscription and to attach subscriptions to a topic.",
     ["pubsub.subscriptions.consume", "pubsub.topics.attachSubscription", "pubsub.snapshots.seek"])
role("roles/pubsub.viewer", "Pub/Sub Viewer", "Provides access to view topics and subscriptions.",
     p("pubsub", ["topics", "subscriptions", "snapshots", "schemas"], READ) + PROJECT_READ)
role("roles/pubsub.serviceAgent", "Cloud Pub/Sub Service Agent", "Grants the Cloud Pub/Sub service account access to manage resources.",
     ["iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.getOpenIdToken", "pubsub.topics.publish",
      "pubsub.subscriptions.consume"])

# Cloud Run.
role("roles/run.admin", "Cloud Run Admin", "Full control over all Cloud Run resources.",
     p("run", ["services", "jobs", "executions", "revisions", "routes", "configurations"], WRITE + IAM)
     + ["run.jobs.run", "run.executions.cancel", "run.routes.invoke", "run.operations.get", "run.operations.list"]
     + PROJECT_READ)
role("roles/run.developer", "Cloud Run Developer", "Read and write access to all Cloud Run resources.",
     p("run", ["services", "jobs", "executions", "revisions", "routes", "configurations"], WRITE)
     + ["run.services.getIamPolicy", "run.jobs.run", "run.operations.get", "run.operations.list"] + PROJECT_READ)
role("roles/run.invoker", "Cloud Run Invoker", "Invoke Cloud Run services and execute Cloud Run jobs.",
     ["run.routes.invoke", "run.jobs.run", "run.jobs.runWithOverrides"])
role("roles/run.viewer", "Cloud Run Viewer", "Can view the state of all Cloud Run resources, including IAM policies.",
     p("run", ["services", "jobs", "executions", "revisions", "routes", "configurations"], READ)
     + ["run.services.getIamPolicy", "run.jobs.getIamPolicy"] + PROJECT_READ)
role("roles/run.serviceAgent", "Cloud Run Service Agent", "Gives Cloud Run service account access to manage your resources.",
     ["artifactregistry.repositories.downloadArtifacts", "iam.serviceAccounts.actAs",
      "iam.serviceAccounts.getAccessToken", "logging.logEntries.create", "monitoring.timeSeries.create",
      "pubsub.topics.publish", "storage.objects.get"])

# Secret Manager.
role("roles/secretmanager.admin", "Secret Manager Admin", "Full access to administer Secret Manager resources.",
     p("secretmanager", ["secrets"], WRITE + IAM) + p("secretmanager", ["versions"], ["access", "add", "destroy",
                                                                                     "disable", "enable", "get", "list"])
     + PROJECT_READ)
role("roles/secretmanager.secretAccessor", "Secret Manager Secret Accessor", "Allows accessing the payload of secrets.",
     ["secretmanager.versions.access"])
role("roles/secretmanager.secretVersionAdder", "Secret Manager Secret Version Adder", "Allows adding versions to existing secrets.",
     ["secretmanager.versions.add"])
role("roles/secretmanager.secretVersionManager", "Secret Manager Secret Version Manager",
     "Allows creating and managing versions of existing secrets.",
     p("secretmanager", ["versions"], ["add", "destroy", "disable", "enable", "get", "list"]) + PROJECT_READ)
role("roles/secretmanager.viewer", "Secret Manager Viewer", "Allows viewing metadata of all Secret Manager resources.",
     p("secretmanager", ["secrets", "versions", "locations"], READ) + PROJECT_READ)

# Others a GKE team meets.
role("roles/artifactregistry.writer", "Artifact Registry Writer", "Access to read and write repository items.",
     ["artifactregistry.repositories.downloadArtifacts", "artifactregistry.repositories.get",
      "artifactregistry.repositories.list", "artifactregistry.repositories.uploadArtifacts",
      "artifactregistry.tags.create", "artifactregistry.tags.update"])
role("roles/artifactregistry.admin", "Artifact Registry Administrator", "Administrator access to create and manage repositories.",
     p("artifactregistry", ["repositories", "tags", "versions", "packages"], WRITE + IAM)
     + ["artifactregistry.repositories.downloadArtifacts", "artifactregistry.repositories.uploadArtifacts"])
role("roles/storage.admin", "Storage Admin", "Grants full control of buckets and objects.",
     p("storage", ["buckets", "objects"], WRITE + IAM) + PROJECT_READ)
role("roles/storage.objectAdmin", "Storage Object Admin", "Grants full control over objects, including listing, creating, viewing, and deleting objects.",
     p("storage", ["objects"], WRITE + IAM) + PROJECT_READ)
role("roles/storage.objectCreator", "Storage Object Creator", "Allows users to create objects. Does not give permission to view, delete, or replace objects.",
     ["storage.objects.create", "storage.multipartUploads.create"])
role("roles/cloudasset.viewer", "Cloud Asset Viewer", "Read-only access to Cloud Asset Inventory.",
     ["cloudasset.assets.listResource", "cloudasset.assets.searchAllIamPolicies",
      "cloudasset.assets.searchAllResources", "cloudasset.assets.analyzeIamPolicy"])
role("roles/orgpolicy.policyViewer", "Organization Policy Viewer", "Access to view Organization Policies on resources.",
     ["orgpolicy.constraints.list", "orgpolicy.policies.list", "orgpolicy.policy.get"])
role("roles/recommender.viewer", "Recommender Viewer", "Read access to all recommendations.",
     [x + "." + v for x in RECS for v in READ])
role("roles/recommender.containerDiagnosisAdmin", "Kubernetes Engine Diagnosis Recommender Admin",
     "Admin permissions for GKE diagnosis recommendations and insights.",
     [x + "." + v for x in RECS for v in READ + ["update"]])
role("roles/bigquery.dataEditor", "BigQuery Data Editor", "Access to edit all the contents of datasets.",
     p("bigquery", ["datasets", "tables"], WRITE) + ["bigquery.tables.getData", "bigquery.tables.updateData"])
role("roles/cloudbuild.builds.editor", "Cloud Build Editor", "Provides access to create and cancel builds.",
     p("cloudbuild", ["builds"], ["create", "get", "list", "update"]) + PROJECT_READ)
role("roles/gkehub.admin", "GKE Hub Admin", "Full access to GKE Hub and related resources.",
     p("gkehub", ["memberships", "features"], WRITE) + PROJECT_READ)
role("roles/cloudkms.cryptoKeyEncrypterDecrypter", "Cloud KMS CryptoKey Encrypter/Decrypter",
     "Provides ability to use Cloud KMS resources for encrypt and decrypt operations only.",
     ["cloudkms.cryptoKeyVersions.useToDecrypt", "cloudkms.cryptoKeyVersions.useToEncrypt"])
role("roles/dns.admin", "DNS Administrator", "Provides read-write access to all Cloud DNS resources.",
     p("dns", ["managedZones", "resourceRecordSets", "changes", "policies"], WRITE) + PROJECT_READ)
role("roles/iap.tunnelResourceAccessor", "IAP-secured Tunnel User", "Access Tunnel Resources which use IAP.",
     ["iap.tunnelInstances.accessViaIAP"])

json.dump(ROLES, sys.stdout, indent=1)
sys.stdout.write("\n")
