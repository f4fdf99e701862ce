# Least privilege for the runtime account.
#
# 1. A read-only custom role with exactly the permissions src/gcp/apis.rs uses for reading (one per
#    Google method it calls), bound at the watched level (project, folder or organization).
# 2. A second custom role with exactly the two permissions a restoration calls,
#    resourcemanager.projects.getIamPolicy and resourcemanager.projects.setIamPolicy, bound at the same
#    level WITH an IAM condition on `iam.googleapis.com/modifiedGrantsByRole`: a setIamPolicy call may only
#    add or remove grants of the roles the enabled requirements restore. The remediator only ever writes
#    project policies (projects.setIamPolicy), so even at folder or organization level the project
#    permission is enough: bound on a folder or organization it is inherited by the projects below and
#    never lets the remediator change the folder's or organization's own policy. No predefined role is
#    used here: roles/resourcemanager.projectIamAdmin also carries the policy-binding permissions
#    (iam.policybindings.*, resourcemanager.projects.createPolicyBinding, ...), which the condition does
#    not restrict. Created only in `enforce` mode.
# 3. A third custom role with the permissions of the opt-in requirements (service enable, service-account
#    enable/undelete), created only when one of them is enabled and the mode is `enforce`.
#
# No primitive role (owner, editor, viewer) is granted to the runtime account anywhere; roles/editor may
# appear only inside the IAM condition, as a role the remediator may grant to the Google APIs service agent.
# Residual power of each grant: see "Least privilege" in this module's README.md.

locals {
  # The requirement list's restore roles (src/domain/requirements.rs, RequirementId::restore_role); the
  # consistency test (tests/api/deployment.rs) checks this map against the code.
  requirement_restore_roles = {
    "node-sa-permissions"       = "roles/container.defaultNodeServiceAccount"
    "gke-service-agent"         = "roles/container.serviceAgent"
    "gke-node-service-agent"    = "roles/container.defaultNodeServiceAgent"
    "google-apis-service-agent" = "roles/editor"
  }

  # The roles the enabled requirements restore: the only roles the conditional grant lets it change.
  restorable_roles = sort(distinct([for r in var.restore_requirements : local.requirement_restore_roles[r]]))

  set_iam_policy_condition = "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([${join(", ", [for r in local.restorable_roles : "'${r}'"])}])"

  grant_set_iam_policy = var.mode == "enforce" && length(local.restorable_roles) > 0

  # Exactly the calls a restoration makes (src/gcp/apis.rs): read the project policy, write it back.
  set_iam_policy_permissions = [
    "resourcemanager.projects.getIamPolicy",
    "resourcemanager.projects.setIamPolicy",
  ]

  # Read permissions, one per method in src/gcp/apis.rs (the permission each call names).
  reader_permissions_project = [
    "resourcemanager.projects.get",                         # projects.get (v1, v3)
    "resourcemanager.projects.getIamPolicy",                # projects.getIamPolicy
    "iam.roles.get",                                        # roles.get (predefined and custom roles)
    "iam.serviceAccounts.get",                              # serviceAccounts.get
    "iam.serviceAccounts.list",                             # serviceAccounts.list
    "container.clusters.list",                              # locations/-/clusters
    "serviceusage.services.get",                            # services.get (container.googleapis.com)
    "recommender.containerDiagnosisRecommendations.list",   # recommendations.list
    "recommender.containerDiagnosisRecommendations.get",    # recommendations.get
    "recommender.containerDiagnosisRecommendations.update", # markClaimed / markSucceeded / markFailed
    "logging.logEntries.list",                              # entries.list: its own restorations (flapping limit)
    "iam.denypolicies.list",                                # IAM v2 policies.listPolicies (deny policies)
    "iam.denypolicies.get",                                 # IAM v2 policies.get (their rules)
    "orgpolicy.policy.get",                                 # Org Policy v2 getEffectivePolicy
  ]
  # Permissions that only exist above a project (they cannot be part of a project-level custom role).
  reader_permissions_hierarchy = [
    "resourcemanager.projects.list",              # v3 projects.list under a folder or organization
    "resourcemanager.folders.get",                # v3 folders.get (ancestry)
    "resourcemanager.folders.list",               # v3 folders.list under a folder or organization
    "resourcemanager.folders.getIamPolicy",       # inherited grants
    "resourcemanager.organizations.getIamPolicy", # inherited grants
  ]
  # Sweeps of a folder or organization start from a Cloud Asset Inventory snapshot (src/gcp/cloudasset.rs);
  # without these permissions they fall back to reading every project.
  reader_permissions_sweep = [
    "cloudasset.assets.listResource",  # assets.list contentType=RESOURCE
    "cloudasset.assets.listIamPolicy", # assets.list contentType=IAM_POLICY
  ]
  reader_permissions = var.sink_level == "project" ? local.reader_permissions_project : concat(local.reader_permissions_project, local.reader_permissions_hierarchy, local.reader_permissions_sweep)

  optin_permissions = concat(
    var.restore_container_api_enabled ? ["serviceusage.services.enable"] : [],
    var.restore_node_sa_exists ? ["iam.serviceAccounts.enable", "iam.serviceAccounts.undelete"] : [],
  )
  grant_optin = var.mode == "enforce" && length(local.optin_permissions) > 0

  role_id_prefix = replace(var.name, "-", "_")
}

# ---------------------------------------------------------------------------------------------------------
# Custom roles: in the watched project, or in the organization for folder/organization level.
# ---------------------------------------------------------------------------------------------------------

resource "google_project_iam_custom_role" "reader" {
  count = var.sink_level == "project" ? 1 : 0

  project     = local.sink_parent_id
  role_id     = "${local.role_id_prefix}_reader"
  title       = "gke-iam-remediator reader"
  description = "Read-only permissions gke-iam-remediator uses to verify GKE IAM requirements."
  permissions = local.reader_permissions
}

resource "google_organization_iam_custom_role" "reader" {
  count = var.sink_level == "project" ? 0 : 1

  org_id      = local.organization_id
  role_id     = "${local.role_id_prefix}_reader"
  title       = "gke-iam-remediator reader"
  description = "Read-only permissions gke-iam-remediator uses to verify GKE IAM requirements."
  permissions = local.reader_permissions

  lifecycle {
    precondition {
      condition     = local.organization_id != ""
      error_message = "sink_level = folder needs organization_id: custom roles are defined at the organization."
    }
    precondition {
      condition     = var.sink_level != "organization" || local.organization_id == local.sink_parent_id
      error_message = "sink_level = organization watches organization ${local.sink_parent_id}, but organization_id is ${local.organization_id}: leave organization_id empty or set it to the same organization (the custom roles must live where they are bound)."
    }
  }
}

resource "google_project_iam_custom_role" "set_iam_policy" {
  count = var.sink_level == "project" && local.grant_set_iam_policy ? 1 : 0

  project     = local.sink_parent_id
  role_id     = "${local.role_id_prefix}_restorer"
  title       = "gke-iam-remediator restorer"
  description = "Read and write project IAM policies; granted only under a condition that limits the roles changed."
  permissions = local.set_iam_policy_permissions
}

resource "google_organization_iam_custom_role" "set_iam_policy" {
  count = var.sink_level != "project" && local.grant_set_iam_policy ? 1 : 0

  org_id      = local.organization_id
  role_id     = "${local.role_id_prefix}_restorer"
  title       = "gke-iam-remediator restorer"
  description = "Read and write project IAM policies; granted only under a condition that limits the roles changed."
  permissions = local.set_iam_policy_permissions
}

resource "google_project_iam_custom_role" "optin" {
  count = var.sink_level == "project" && local.grant_optin ? 1 : 0

  project     = local.sink_parent_id
  role_id     = "${local.role_id_prefix}_optin"
  title       = "gke-iam-remediator opt-in restorations"
  description = "Service enable and service-account enable/undelete for the opt-in requirements of gke-iam-remediator."
  permissions = local.optin_permissions
}

resource "google_organization_iam_custom_role" "optin" {
  count = var.sink_level != "project" && local.grant_optin ? 1 : 0

  org_id      = local.organization_id
  role_id     = "${local.role_id_prefix}_optin"
  title       = "gke-iam-remediator opt-in restorations"
  description = "Service enable and service-account enable/undelete for the opt-in requirements of gke-iam-remediator."
  permissions = local.optin_permissions
}

locals {
  # Exactly one of each pair exists (or none for the opt-in role): pick it without indexing a missing one.
  reader_role         = one(concat(google_project_iam_custom_role.reader[*].id, google_organization_iam_custom_role.reader[*].id))
  set_iam_policy_role = one(concat(google_project_iam_custom_role.set_iam_policy[*].id, google_organization_iam_custom_role.set_iam_policy[*].id))
  optin_role          = one(concat(google_project_iam_custom_role.optin[*].id, google_organization_iam_custom_role.optin[*].id))
}

# ---------------------------------------------------------------------------------------------------------
# Project level
# ---------------------------------------------------------------------------------------------------------

resource "google_project_iam_member" "runtime_reader" {
  count = var.sink_level == "project" ? 1 : 0

  project = local.sink_parent_id
  role    = local.reader_role
  member  = local.runtime_member
}

resource "google_project_iam_member" "runtime_set_iam_policy" {
  count = var.sink_level == "project" && local.grant_set_iam_policy ? 1 : 0

  project = local.sink_parent_id
  role    = local.set_iam_policy_role
  member  = local.runtime_member

  condition {
    title       = "gke-required-roles-only"
    description = "Only grants of the roles the enabled gke-iam-remediator requirements restore may change."
    expression  = local.set_iam_policy_condition
  }
}

resource "google_project_iam_member" "runtime_optin" {
  count = var.sink_level == "project" && local.grant_optin ? 1 : 0

  project = local.sink_parent_id
  role    = local.optin_role
  member  = local.runtime_member
}

# ---------------------------------------------------------------------------------------------------------
# Folder level (inherited by every project below the folder)
# ---------------------------------------------------------------------------------------------------------

resource "google_folder_iam_member" "runtime_reader" {
  count = var.sink_level == "folder" ? 1 : 0

  folder = "folders/${local.sink_parent_id}"
  role   = local.reader_role
  member = local.runtime_member
}

resource "google_folder_iam_member" "runtime_set_iam_policy" {
  count = var.sink_level == "folder" && local.grant_set_iam_policy ? 1 : 0

  folder = "folders/${local.sink_parent_id}"
  role   = local.set_iam_policy_role
  member = local.runtime_member

  condition {
    title       = "gke-required-roles-only"
    description = "Only grants of the roles the enabled gke-iam-remediator requirements restore may change."
    expression  = local.set_iam_policy_condition
  }
}

resource "google_folder_iam_member" "runtime_optin" {
  count = var.sink_level == "folder" && local.grant_optin ? 1 : 0

  folder = "folders/${local.sink_parent_id}"
  role   = local.optin_role
  member = local.runtime_member
}

# ---------------------------------------------------------------------------------------------------------
# Organization level (inherited by every project of the organization)
# ---------------------------------------------------------------------------------------------------------

resource "google_organization_iam_member" "runtime_reader" {
  count = var.sink_level == "organization" ? 1 : 0

  org_id = local.sink_parent_id
  role   = local.reader_role
  member = local.runtime_member
}

resource "google_organization_iam_member" "runtime_set_iam_policy" {
  count = var.sink_level == "organization" && local.grant_set_iam_policy ? 1 : 0

  org_id = local.sink_parent_id
  role   = local.set_iam_policy_role
  member = local.runtime_member

  condition {
    title       = "gke-required-roles-only"
    description = "Only grants of the roles the enabled gke-iam-remediator requirements restore may change."
    expression  = local.set_iam_policy_condition
  }
}

resource "google_organization_iam_member" "runtime_optin" {
  count = var.sink_level == "organization" && local.grant_optin ? 1 : 0

  org_id = local.sink_parent_id
  role   = local.optin_role
  member = local.runtime_member
}
