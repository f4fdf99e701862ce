# One project watches itself: a project-level sink, grants on the project only. Starts in dry-run.

module "gke_iam_remediator" {
  source = "../../modules/gke-iam-remediator"

  project_id = var.project_id
  region     = var.region
  image      = var.image

  sink_level = "project"
  mode       = var.mode

  restore_requirements = ["node-sa-permissions", "gke-service-agent", "gke-node-service-agent"]
  grace_seconds        = 30

  notification_secrets               = ["slack-webhook-url"]
  notification_secrets_with_versions = var.secrets_with_versions
  alert_notification_channels        = var.alert_notification_channels

  sweep_schedule = "17 */6 * * *"

  labels = {
    team = "platform"
  }
}
