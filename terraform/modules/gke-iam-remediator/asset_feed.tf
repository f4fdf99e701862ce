# Optional: Cloud Asset Inventory feed of project IAM policies (TemporalAsset JSON) to the events topic, a
# near-real-time alternative trigger to the audit-log sink (intake compares priorAsset and asset).

locals {
  asset_feed_id          = "${var.name}-iam"
  asset_feed_types       = ["cloudresourcemanager.googleapis.com/Project"]
  asset_feed_destination = google_pubsub_topic.events.id
}

# The Cloud Asset service agent of the billing project publishes the feed's messages.
resource "google_project_service_identity" "cloudasset" {
  count    = var.enable_asset_feed ? 1 : 0
  provider = google-beta

  project = var.project_id
  service = "cloudasset.googleapis.com"

  depends_on = [google_project_service.this]
}

resource "google_pubsub_topic_iam_member" "events_asset_agent" {
  count = var.enable_asset_feed ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.events.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_project_service_identity.cloudasset[0].email}"
}

resource "google_cloud_asset_project_feed" "this" {
  count = var.enable_asset_feed && var.sink_level == "project" ? 1 : 0

  project         = local.sink_parent_id
  billing_project = var.project_id
  feed_id         = local.asset_feed_id
  content_type    = "IAM_POLICY"
  asset_types     = local.asset_feed_types

  feed_output_config {
    pubsub_destination {
      topic = local.asset_feed_destination
    }
  }

  depends_on = [google_pubsub_topic_iam_member.events_asset_agent]
}

resource "google_cloud_asset_folder_feed" "this" {
  count = var.enable_asset_feed && var.sink_level == "folder" ? 1 : 0

  folder          = local.sink_parent_id
  billing_project = var.project_id
  feed_id         = local.asset_feed_id
  content_type    = "IAM_POLICY"
  asset_types     = local.asset_feed_types

  feed_output_config {
    pubsub_destination {
      topic = local.asset_feed_destination
    }
  }

  depends_on = [google_pubsub_topic_iam_member.events_asset_agent]
}

resource "google_cloud_asset_organization_feed" "this" {
  count = var.enable_asset_feed && var.sink_level == "organization" ? 1 : 0

  org_id          = local.sink_parent_id
  billing_project = var.project_id
  feed_id         = local.asset_feed_id
  content_type    = "IAM_POLICY"
  asset_types     = local.asset_feed_types

  feed_output_config {
    pubsub_destination {
      topic = local.asset_feed_destination
    }
  }

  depends_on = [google_pubsub_topic_iam_member.events_asset_agent]
}
