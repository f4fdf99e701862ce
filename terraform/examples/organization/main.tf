# One operations project watches a whole organization: an aggregated organization sink, the read role and
# the conditional setIamPolicy grant at the organization, the asset feed as a second trigger, all three
# notification secrets. Starts in dry-run.

module "gke_iam_remediator" {
  source = "../../modules/gke-iam-remediator"

  project_id = var.ops_project_id
  region     = var.region
  image      = var.image

  sink_level     = "organization"
  sink_parent_id = var.organization_id

  mode = var.mode
  restore_requirements = [
    "node-sa-permissions",
    "gke-service-agent",
    "gke-node-service-agent",
  ]
  restore_node_sa_exists        = true
  restore_container_api_enabled = false

  policy_scope = {
    include_projects = ["*"]
    exclude_projects = ["sandbox-*"]
    exclude_folders  = var.excluded_folder_ids
  }
  exempt_principals = ["serviceAccount:legacy-*@*"]
  limits = {
    max_writes_per_run           = 50
    max_restorations_per_binding = 3
    window_minutes               = 60
  }
  grace_seconds = 60

  enable_asset_feed = true

  max_instance_count   = 10
  max_concurrency      = 40
  ack_deadline_seconds = 180

  notification_secrets               = ["slack-webhook-url", "smtp-password", "webhook-hmac-key"]
  notification_secrets_with_versions = var.secrets_with_versions
  alert_notification_channels        = var.alert_notification_channels

  sweep_schedule  = "23 2 * * *"
  sweep_time_zone = "Europe/Berlin"

  labels = {
    team = "platform"
    env  = "prod"
  }
}
