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

  notification_secrets               = ["slack-webhook-url", "smtp-password"]
  notification_secrets_with_versions = var.secrets_with_versions
  alert_notification_channels        = var.alert_notification_channels
  notifications = length(local.notification_channels) == 0 ? null : {
    channels = local.notification_channels
    routes   = local.notification_routes
  }

  sweep_schedule = "17 */6 * * *"

  labels = {
    team = "platform"
  }
}

# Notifications: a Slack channel that takes every outcome but `healthy`, and an email route for the
# outcomes that need a person (`email.outcomes`, default failed and escalated). A channel is configured
# only once the secret it reads has a version and is listed in secrets_with_versions (the module refuses
# a channel whose secret the service does not get); an email server without `username` needs no secret.
# Each channel is its own element of a tuple, so its numbers stay numbers in the rendered policy file.
locals {
  slack_ready = contains(var.secrets_with_versions, "slack-webhook-url")
  email_ready = var.email != null && (try(var.email.username, null) == null || contains(var.secrets_with_versions, "smtp-password"))

  slack_channel = local.slack_ready ? { name = "slack", type = "slack", url_env = "REMEDIATOR_SLACK_WEBHOOK_URL" } : null
  email_channel = local.email_ready ? merge(
    { name = "email", type = "email", host = var.email.host, port = var.email.port, from = var.email.from },
    [for u in [var.email.username] : { username = u, password_env = "REMEDIATOR_SMTP_PASSWORD" } if u != null]...
  ) : null

  notification_channels = [for c in [local.slack_channel, local.email_channel] : c if c != null]
  notification_routes = [for r in [
    local.slack_ready ? { channels = ["slack"] } : null,
    local.email_ready ? { outcomes = var.email.outcomes, channels = ["email"], to = var.email.to } : null,
  ] : r if r != null]
}
