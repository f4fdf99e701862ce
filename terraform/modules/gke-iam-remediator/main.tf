# Shared lookups and values. Resources are split by concern: service_accounts.tf, iam.tf, pubsub.tf,
# run.tf, state.tf, logging.tf, secrets.tf, monitoring.tf, dashboard.tf, scheduler.tf, asset_feed.tf.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  project_number = data.google_project.this.number

  # The watched resource (sink parent, grant level, default sweep scope).
  sink_parent_id  = var.sink_parent_id != "" ? var.sink_parent_id : var.project_id
  organization_id = var.organization_id != "" ? var.organization_id : (var.sink_level == "organization" ? local.sink_parent_id : "")
  sink_parent = {
    project      = "projects/${local.sink_parent_id}"
    folder       = "folders/${local.sink_parent_id}"
    organization = "organizations/${local.sink_parent_id}"
  }[var.sink_level]
  sweep_scope = length(var.sweep_scope) > 0 ? var.sweep_scope : [local.sink_parent]

  # Cloud Run's deterministic URL of the service. It is known before the service exists, so the service
  # can verify the push token's audience itself (REMEDIATOR_PUSH_AUDIENCE) without a dependency cycle;
  # it is also listed in the service's custom_audiences so Cloud Run's own check accepts it.
  push_audience = "https://${var.name}-${local.project_number}.${var.region}.run.app"

  labels = merge({ "app" = "gke-iam-remediator", "managed-by" = "terraform" }, var.labels)

  apis = toset(concat(
    [
      "run.googleapis.com",
      "pubsub.googleapis.com",
      "logging.googleapis.com",
      "monitoring.googleapis.com",
      "secretmanager.googleapis.com",
      "cloudscheduler.googleapis.com",
      "iam.googleapis.com",
      "cloudresourcemanager.googleapis.com",
      "serviceusage.googleapis.com",
      "container.googleapis.com",
      "recommender.googleapis.com",
      "orgpolicy.googleapis.com",
      "firestore.googleapis.com", # the state database (state.tf)
    ],
    var.enable_asset_feed || var.sink_level != "project" ? ["cloudasset.googleapis.com"] : [],
    var.policy_troubleshooter ? ["policytroubleshooter.googleapis.com"] : [],
  ))
}

resource "google_project_service" "this" {
  for_each = var.enable_apis ? local.apis : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
